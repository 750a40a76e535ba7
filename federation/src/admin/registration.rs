//! Workload registrations: a namespace admin registers the workloads of its own
//! namespaces only. The entry a write replaces or deletes is read first and the write
//! is a compare-and-set on it, so that one moved to another namespace in between is not
//! overwritten.

use isthmus_federation_api::ApiError;
use isthmus_federation_api::model::Expect;
use isthmus_federation_api::registration::Registration;
use isthmus_federation_api::request::{DeleteRegistration, Listed, PutRegistration, Written};
use isthmus_federation_api::status::Consistency;

use super::Admin;
use crate::access::{Operation, Principal};
use crate::command::Command;

impl Admin {
    /// Every registration.
    pub async fn list_registrations(
        &self,
        who: &Principal,
        consistency: Consistency,
    ) -> Result<Listed<Registration>, ApiError> {
        who.may(&Operation::Read)?;
        self.federation
            .read(consistency, |s| Listed {
                revision: s.revision,
                items: s.registrations.values().cloned().collect(),
            })
            .await
    }

    /// The namespace and revision of the entry named `name`, if one exists.
    async fn registration_held(&self, name: &str) -> Result<Option<(String, u64)>, ApiError> {
        self.federation
            .read(Consistency::Linearizable, |s| {
                s.registrations
                    .get(name)
                    .map(|r| (r.namespace.clone(), r.revision))
            })
            .await
    }

    /// Creates or replaces a registration: the admins of its namespace (and of the
    /// namespace of the entry it replaces), or platform admins.
    pub async fn put_registration(
        &self,
        who: &Principal,
        request: PutRegistration,
    ) -> Result<Written, ApiError> {
        request.registration.check()?;
        let held = self.registration_held(&request.registration.name).await?;
        who.may(&Operation::Registration {
            namespace: &request.registration.namespace,
            held: held.as_ref().map(|(ns, _)| ns.as_str()),
        })?;
        let expect = match (request.expect, &held) {
            // What was read is what is replaced.
            (Expect::Any, Some((_, revision))) => Expect::Revision(*revision),
            (expect, _) => expect,
        };
        self.write(Command::PutRegistration {
            registration: request.registration,
            expect,
        })
        .await
    }

    /// Deletes a registration: its namespace's admins, or platform admins.
    pub async fn delete_registration(
        &self,
        who: &Principal,
        request: DeleteRegistration,
    ) -> Result<Written, ApiError> {
        isthmus_federation_api::validate::name("name", &request.name)?;
        let held = self.registration_held(&request.name).await?;
        let namespace = held.as_ref().map(|(ns, _)| ns.clone()).unwrap_or_default();
        who.may(&Operation::Registration {
            namespace: &namespace,
            held: held.as_ref().map(|(ns, _)| ns.as_str()),
        })?;
        let expect = match (request.expect, &held) {
            (Expect::Any, Some((_, revision))) => Expect::Revision(*revision),
            (expect, _) => expect,
        };
        self.write(Command::DeleteRegistration {
            name: request.name,
            expect,
        })
        .await
    }
}
