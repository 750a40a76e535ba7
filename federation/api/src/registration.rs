//! Workload registrations: which local callers of a cluster's gateway get which
//! workload identity from its SPIFFE Workload API. An entry names the identity
//! (`spiffe://TD/cluster/CLUSTER/ns/NAMESPACE/sa/SERVICE_ACCOUNT`) and the Unix
//! selectors a caller must all match (uid, gid, executable path), like SPIRE's unix
//! attestor. Pure: the value and its checks.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ApiError;

/// Longest executable path a selector may name.
pub const MAX_PATH: usize = 4096;

/// One registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// DNS-1123 label, unique in the federation.
    #[schemars(schema_with = "crate::schema::label")]
    pub name: String,
    /// The cluster whose gateway serves the identity.
    #[schemars(schema_with = "crate::schema::label")]
    pub cluster: String,
    /// The workload's namespace.
    #[schemars(schema_with = "crate::schema::label")]
    pub namespace: String,
    /// Its service account.
    #[schemars(schema_with = "crate::schema::label")]
    pub service_account: String,
    /// The caller's user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// The caller's group id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// The caller's executable (absolute path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 4096), regex(pattern = "^/"))]
    pub path: Option<String>,
    /// Revision of the last change (set by the federation; ignored on input).
    #[serde(default)]
    pub revision: u64,
}

impl Registration {
    /// Checks the entry, naming the field.
    pub fn check(&self) -> Result<(), ApiError> {
        crate::validate::name("name", &self.name)?;
        crate::validate::name("cluster", &self.cluster)?;
        crate::validate::name("namespace", &self.namespace)?;
        crate::validate::name("service_account", &self.service_account)?;
        if let Some(path) = &self.path
            && (!path.starts_with('/')
                || path.len() > MAX_PATH
                || path.len() < 2
                || path.contains('\0'))
        {
            return Err(ApiError::invalid(
                "path",
                format!("an absolute path to the executable, at most {MAX_PATH} bytes"),
            ));
        }
        if self.uid.is_none() && self.gid.is_none() && self.path.is_none() {
            return Err(ApiError::invalid(
                "uid",
                "at least one selector (uid, gid or path): an entry without one would give its identity to every local process",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Registration {
        Registration {
            name: "frontend".into(),
            cluster: "east".into(),
            namespace: "shop".into(),
            service_account: "frontend".into(),
            uid: Some(1000),
            gid: None,
            path: None,
            revision: 0,
        }
    }

    #[test]
    fn an_entry_needs_a_selector_and_names_its_bad_field() {
        assert!(entry().check().is_ok());
        let none = Registration {
            uid: None,
            ..entry()
        };
        assert!(
            matches!(none.check(), Err(ApiError::InvalidArgument { field, .. }) if field == "uid")
        );
        let relative = Registration {
            path: Some("bin/x".into()),
            ..entry()
        };
        assert!(
            matches!(relative.check(), Err(ApiError::InvalidArgument { field, .. }) if field == "path")
        );
        let bad = Registration {
            service_account: "Front_End".into(),
            ..entry()
        };
        assert!(
            matches!(bad.check(), Err(ApiError::InvalidArgument { field, .. }) if field == "service_account")
        );
    }
}
