//! Who a caller of the Workload API is: its Unix credentials (from the socket) matched
//! against the registrations, every selector of an entry having to match. Pure.

use std::path::PathBuf;

/// One registration: an identity and the selectors that earn it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// The workload's namespace.
    pub namespace: String,
    /// Its service account.
    pub service_account: String,
    /// The caller's user id, if selected on.
    pub uid: Option<u32>,
    /// The caller's group id, if selected on.
    pub gid: Option<u32>,
    /// The caller's executable, if selected on.
    pub path: Option<PathBuf>,
}

/// What the kernel says about a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Its user id.
    pub uid: u32,
    /// Its group id.
    pub gid: u32,
    /// Its executable, when it could be read (`/proc/<pid>/exe`).
    pub path: Option<PathBuf>,
}

impl Registration {
    fn matches(&self, caller: &Caller) -> bool {
        self.uid.is_none_or(|uid| uid == caller.uid)
            && self.gid.is_none_or(|gid| gid == caller.gid)
            && self
                .path
                .as_ref()
                .is_none_or(|path| caller.path.as_ref() == Some(path))
    }
}

/// The registrations `caller` matches (each gives it one SVID), in order.
pub fn attest<'a>(registrations: &'a [Registration], caller: &Caller) -> Vec<&'a Registration> {
    let mut found: Vec<&Registration> =
        registrations.iter().filter(|r| r.matches(caller)).collect();
    // Two entries for the same identity give one SVID.
    found.dedup_by(|a, b| a.namespace == b.namespace && a.service_account == b.service_account);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sa: &str, uid: Option<u32>, path: Option<&str>) -> Registration {
        Registration {
            namespace: "shop".into(),
            service_account: sa.into(),
            uid,
            gid: None,
            path: path.map(PathBuf::from),
        }
    }

    #[test]
    fn every_selector_of_an_entry_must_match() {
        let entries = [
            entry("frontend", Some(1000), None),
            entry("billing", Some(1000), Some("/usr/bin/billing")),
        ];
        let caller = |uid, path: Option<&str>| Caller {
            uid,
            gid: 100,
            path: path.map(PathBuf::from),
        };
        let names = |c: &Caller| {
            attest(&entries, c)
                .iter()
                .map(|r| r.service_account.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&caller(1000, Some("/usr/bin/python3"))), ["frontend"]);
        assert_eq!(
            names(&caller(1000, Some("/usr/bin/billing"))),
            ["frontend", "billing"]
        );
        assert!(
            names(&caller(1001, Some("/usr/bin/billing"))).is_empty(),
            "another user gets nothing"
        );
        assert_eq!(
            names(&caller(1000, None)),
            ["frontend"],
            "an unreadable path matches no path selector"
        );
    }
}
