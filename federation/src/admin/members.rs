//! The federation itself: status, bootstrap, membership, and the trust bundle.

use isthmus_federation_api::ApiError;
use isthmus_federation_api::model::TrustBundleDoc;
use isthmus_federation_api::request::{AddMember, SetTrustBundle, Written};
use isthmus_federation_api::status::{Consistency, NodeId, StatusReport};
use isthmus_federation_api::validate;

use super::Admin;
use crate::access::{Operation, Principal};
use crate::command::Command;

impl Admin {
    /// Leader, term, members, applied index and each member's lag.
    pub async fn status(
        &self,
        who: &Principal,
        consistency: Consistency,
    ) -> Result<StatusReport, ApiError> {
        who.may(&Operation::Read)?;
        self.federation.status(consistency).await
    }

    /// Bootstraps a new federation with this node as its only voter (platform admins).
    pub async fn init(&self, who: &Principal) -> Result<StatusReport, ApiError> {
        who.may(&Operation::Platform)?;
        self.federation.init().await
    }

    /// Adds a node: learner, catch up, voter (platform admins).
    pub async fn add_member(
        &self,
        who: &Principal,
        request: AddMember,
    ) -> Result<StatusReport, ApiError> {
        who.may(&Operation::Platform)?;
        validate::member(request.node_id, &request.info)?;
        self.federation
            .add_member(request.node_id, request.info)
            .await
    }

    /// Removes a node (platform admins).
    pub async fn remove_member(
        &self,
        who: &Principal,
        node_id: NodeId,
    ) -> Result<StatusReport, ApiError> {
        who.may(&Operation::Platform)?;
        self.federation.remove_member(node_id).await
    }

    /// The trust bundle.
    pub async fn get_trust_bundle(
        &self,
        who: &Principal,
        consistency: Consistency,
    ) -> Result<TrustBundleDoc, ApiError> {
        who.may(&Operation::Read)?;
        let bundle = self
            .federation
            .read(consistency, |s| s.trust_bundle.clone())
            .await?;
        bundle.ok_or_else(|| ApiError::NotFound("no trust bundle has been set".into()))
    }

    /// Replaces the trust bundle (platform admins); refused if it would no longer
    /// trust the federation's own nodes.
    pub async fn set_trust_bundle(
        &self,
        who: &Principal,
        request: SetTrustBundle,
    ) -> Result<Written, ApiError> {
        who.may(&Operation::Platform)?;
        self.write(Command::SetTrustBundle {
            trust_bundle: request.bundle,
            expect: request.expect,
        })
        .await
    }
}
