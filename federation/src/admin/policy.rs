//! Authorization policies and traffic claims: the writes a namespace admin may make for
//! its own namespaces only. What a write governs is read first and the write is then a
//! compare-and-set on what was read, so that a document changed in between into another
//! namespace's is not overwritten.

use std::collections::BTreeSet;

use isthmus_federation_api::ApiError;
use isthmus_federation_api::claims::Claim;
use isthmus_federation_api::model::{Expect, Policy};
use isthmus_federation_api::policy::PolicyBody;
use isthmus_federation_api::request::{
    DeleteClaim, DeletePolicy, Listed, PutClaim, PutPolicy, Written,
};
use isthmus_federation_api::status::Consistency;
use isthmus_federation_api::validate;

use super::{Admin, found};
use crate::access::{Operation, Principal, Role};
use crate::command::Command;

impl Admin {
    /// Every policy.
    pub async fn list_policies(
        &self,
        who: &Principal,
        consistency: Consistency,
    ) -> Result<Listed<Policy>, ApiError> {
        who.may(&Operation::Read)?;
        self.federation
            .read(consistency, |s| Listed {
                revision: s.revision,
                items: s.policies.values().cloned().collect(),
            })
            .await
    }

    /// One policy.
    pub async fn get_policy(
        &self,
        who: &Principal,
        name: &str,
        consistency: Consistency,
    ) -> Result<Policy, ApiError> {
        who.may(&Operation::Read)?;
        validate::name("name", name)?;
        let policy = self
            .federation
            .read(consistency, |s| s.policies.get(name).cloned())
            .await?;
        found(policy, || format!("policy \"{name}\""))
    }

    /// Creates or replaces a policy: platform admins, or a namespace admin when the new
    /// document and the one it replaces govern only its namespaces.
    pub async fn put_policy(
        &self,
        who: &Principal,
        request: PutPolicy,
    ) -> Result<Written, ApiError> {
        let PutPolicy { policy, expect } = request;
        validate::name("name", &policy.name)?;
        let (namespaces, current) = self.policy_scope(&policy.name, Some(&policy.body)).await?;
        who.may(&Operation::Policy { namespaces })?;
        let expect = scoped_expect(who, expect, current)?;
        self.write(Command::PutPolicy { policy, expect }).await
    }

    /// Deletes a policy (as [`Self::put_policy`], for the document deleted).
    pub async fn delete_policy(
        &self,
        who: &Principal,
        request: DeletePolicy,
    ) -> Result<Written, ApiError> {
        validate::name("name", &request.name)?;
        let (namespaces, current) = self.policy_scope(&request.name, None).await?;
        who.may(&Operation::Policy { namespaces })?;
        let expect = scoped_expect(who, request.expect, current)?;
        self.write(Command::DeletePolicy {
            name: request.name,
            expect,
        })
        .await
    }

    /// The namespaces a policy write touches: those of the new document and of the one
    /// it replaces (or deletes), with that one's revision.
    async fn policy_scope(
        &self,
        name: &str,
        new_body: Option<&PolicyBody>,
    ) -> Result<(BTreeSet<String>, Option<u64>), ApiError> {
        let old = self
            .federation
            .read(Consistency::Linearizable, |s| {
                s.policies
                    .get(name)
                    .map(|p| (p.body.governed_namespaces(), p.revision))
            })
            .await?;
        let mut namespaces = new_body
            .map(PolicyBody::governed_namespaces)
            .unwrap_or_default();
        if let Some((old_namespaces, _)) = &old {
            namespaces.extend(old_namespaces.iter().cloned());
        }
        Ok((namespaces, old.map(|(_, r)| r)))
    }

    /// Every traffic claim.
    pub async fn list_claims(
        &self,
        who: &Principal,
        consistency: Consistency,
    ) -> Result<Listed<Claim>, ApiError> {
        who.may(&Operation::Read)?;
        self.federation
            .read(consistency, |s| Listed {
                revision: s.revision,
                items: s.claims.values().cloned().collect(),
            })
            .await
    }

    /// Claims a host for a namespace: that namespace's admins (unless another namespace
    /// holds exactly this host), or platform admins.
    pub async fn put_claim(&self, who: &Principal, request: PutClaim) -> Result<Written, ApiError> {
        let held = self.claim_holder(&request.claim.host).await?;
        who.may(&Operation::Claim {
            namespace: &request.claim.namespace,
            held: held.as_deref(),
        })?;
        self.write(Command::PutClaim {
            claim: request.claim,
            expect: request.expect,
        })
        .await
    }

    /// Gives up a claim: the holding namespace's admins, or platform admins.
    pub async fn delete_claim(
        &self,
        who: &Principal,
        request: DeleteClaim,
    ) -> Result<Written, ApiError> {
        let held = self.claim_holder(&request.host).await?;
        let namespace = held.clone().unwrap_or_default();
        who.may(&Operation::Claim {
            namespace: &namespace,
            held: held.as_deref(),
        })?;
        self.write(Command::DeleteClaim {
            host: request.host,
            expect: request.expect,
        })
        .await
    }

    /// The namespace holding the claim of exactly `host`, if any.
    async fn claim_holder(&self, host: &str) -> Result<Option<String>, ApiError> {
        self.federation
            .read(Consistency::Linearizable, |s| {
                s.claims.get(host).map(|c| c.namespace.clone())
            })
            .await
    }
}

/// The compare-and-set of a policy write: the caller's, or for a namespace admin the
/// revision whose namespaces were checked (none: must not exist).
fn scoped_expect(
    principal: &Principal,
    asked: Expect,
    checked: Option<u64>,
) -> Result<Expect, ApiError> {
    let Role::NamespaceAdmin(_) = principal.role else {
        return Ok(asked);
    };
    let checked = checked.unwrap_or(0);
    match asked.to_api() {
        Some(asked) if asked != checked => Err(ApiError::FailedPrecondition(format!(
            "expected revision {asked}, but the policy is at revision {checked} (0: absent); read it again"
        ))),
        _ => Ok(Expect::from_api(Some(checked))),
    }
}
