//! Clusters, their join tokens and gateway endpoints, and service exports.

use isthmus_federation_api::ApiError;
use isthmus_federation_api::model::{Cluster, ExportKey, ServiceExport};
use isthmus_federation_api::request::{
    CreateCluster, DeleteCluster, DeleteExport, JoinTokenReply, Listed, PutCluster, PutExport,
    RegisterGateway, RevokeCluster, Written,
};
use isthmus_federation_api::status::Consistency;
use isthmus_federation_api::validate;

use super::{Admin, found};
use crate::access::{Operation, Principal};
use crate::command::Command;

impl Admin {
    /// Every cluster.
    pub async fn list_clusters(
        &self,
        who: &Principal,
        consistency: Consistency,
    ) -> Result<Listed<Cluster>, ApiError> {
        who.may(&Operation::Read)?;
        self.federation
            .read(consistency, |s| Listed {
                revision: s.revision,
                items: s.clusters.values().cloned().collect(),
            })
            .await
    }

    /// One cluster.
    pub async fn get_cluster(
        &self,
        who: &Principal,
        name: &str,
        consistency: Consistency,
    ) -> Result<Cluster, ApiError> {
        who.may(&Operation::Read)?;
        validate::name("name", name)?;
        let cluster = self
            .federation
            .read(consistency, |s| s.clusters.get(name).cloned())
            .await?;
        found(cluster, || format!("cluster \"{name}\""))
    }

    /// Creates or replaces a cluster (platform admins).
    pub async fn put_cluster(
        &self,
        who: &Principal,
        request: PutCluster,
    ) -> Result<Written, ApiError> {
        who.may(&Operation::Platform)?;
        self.write(Command::PutCluster {
            cluster: request.cluster,
            expect: request.expect,
        })
        .await
    }

    /// Deletes a cluster (platform admins); refused while it exports or a policy names it.
    pub async fn delete_cluster(
        &self,
        who: &Principal,
        request: DeleteCluster,
    ) -> Result<Written, ApiError> {
        who.may(&Operation::Platform)?;
        self.write(Command::DeleteCluster {
            name: request.name,
            expect: request.expect,
        })
        .await
    }

    /// Registers a pending cluster and mints its one-time join token (platform admins).
    pub async fn create_cluster(
        &self,
        who: &Principal,
        request: CreateCluster,
    ) -> Result<JoinTokenReply, ApiError> {
        who.may(&Operation::Platform)?;
        let minted = self
            .enroller
            .create_cluster(
                &request.name,
                request.locality,
                request.ttl,
                std::time::SystemTime::now(),
            )
            .await?;
        Ok(JoinTokenReply {
            token: minted.token,
            expires_at: minted.expires_at,
            revision: minted.revision,
        })
    }

    /// Cuts a cluster off (platform admins).
    pub async fn revoke_cluster(
        &self,
        who: &Principal,
        request: RevokeCluster,
    ) -> Result<Written, ApiError> {
        who.may(&Operation::Platform)?;
        self.write(Command::RevokeCluster { name: request.name })
            .await
    }

    /// Adds or updates one gateway endpoint of an active cluster (its own gateways, or
    /// platform admins). An unchanged endpoint is no change: a gateway registers each
    /// time it connects, and must not bump the cluster's revision under an admin's
    /// compare-and-set.
    pub async fn register_gateway(
        &self,
        who: &Principal,
        request: RegisterGateway,
    ) -> Result<Written, ApiError> {
        who.may(&Operation::RegisterGateway {
            cluster: &request.cluster,
        })?;
        let RegisterGateway { cluster, gateway } = request;
        let unchanged = self
            .federation
            .read(Consistency::Linearizable, |s| {
                s.clusters.get(&cluster).and_then(|c| {
                    c.gateways
                        .iter()
                        .any(|g| g.name == gateway.name && g.address == gateway.address)
                        .then_some(s.revision)
                })
            })
            .await?;
        if let Some(revision) = unchanged {
            return Ok(Written { revision });
        }
        self.write(Command::SetGateway { cluster, gateway }).await
    }

    /// Every export.
    pub async fn list_exports(
        &self,
        who: &Principal,
        consistency: Consistency,
    ) -> Result<Listed<ServiceExport>, ApiError> {
        who.may(&Operation::Read)?;
        self.federation
            .read(consistency, |s| Listed {
                revision: s.revision,
                items: s.exports.values().cloned().collect(),
            })
            .await
    }

    /// One export.
    pub async fn get_export(
        &self,
        who: &Principal,
        key: &ExportKey,
        consistency: Consistency,
    ) -> Result<ServiceExport, ApiError> {
        who.may(&Operation::Read)?;
        validate::export_key(key)?;
        let export = self
            .federation
            .read(consistency, |s| s.exports.get(key).cloned())
            .await?;
        found(export, || format!("export {key}"))
    }

    /// Creates or replaces an export (its namespace's admins, its cluster's gateways,
    /// platform admins).
    pub async fn put_export(
        &self,
        who: &Principal,
        request: PutExport,
    ) -> Result<Written, ApiError> {
        who.may(&Operation::Export {
            cluster: &request.export.cluster,
            namespace: &request.export.namespace,
        })?;
        self.write(Command::PutExport {
            export: request.export,
            expect: request.expect,
        })
        .await
    }

    /// Deletes an export (as [`Self::put_export`]).
    pub async fn delete_export(
        &self,
        who: &Principal,
        request: DeleteExport,
    ) -> Result<Written, ApiError> {
        who.may(&Operation::Export {
            cluster: &request.key.cluster,
            namespace: &request.key.namespace,
        })?;
        self.write(Command::DeleteExport {
            key: request.key,
            expect: request.expect,
        })
        .await
    }
}
