//! Catalog commands — what the Raft log carries — and their pure application to the
//! catalog. [`apply`] is deterministic: every node applies the same log to the same
//! state and reaches the same result, accepted or rejected. A rejected command changes
//! nothing and does not bump the revision.
//!
//! Stateless checks (names, ports, PEM) happen before a command is proposed
//! (`validate.rs`); the checks that depend on the state happen here.

use serde::{Deserialize, Serialize};

use crate::model::{
    CatalogState, Cluster, Event, ExportKey, PolicyDoc, ServiceExport, TrustBundleDoc,
};

/// What the writer expects of the object's current revision (compare-and-set).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expect {
    /// No expectation: last writer wins.
    #[default]
    Any,
    /// The object must not exist (create).
    Absent,
    /// The object must exist with exactly this revision.
    Revision(u64),
}

impl Expect {
    /// From the API's `expect_revision`: absent means any, 0 means "must not exist".
    pub fn from_api(expect_revision: Option<u64>) -> Self {
        match expect_revision {
            None => Self::Any,
            Some(0) => Self::Absent,
            Some(r) => Self::Revision(r),
        }
    }

    fn check(self, what: &str, current: Option<u64>) -> Result<(), Rejection> {
        match (self, current) {
            (Self::Any, _) => Ok(()),
            (Self::Absent, None) => Ok(()),
            (Self::Absent, Some(actual)) => Err(Rejection::AlreadyExists {
                what: what.to_owned(),
                revision: actual,
            }),
            (Self::Revision(_), None) => Err(Rejection::NotFound {
                what: what.to_owned(),
            }),
            (Self::Revision(expected), Some(actual)) if expected == actual => Ok(()),
            (Self::Revision(expected), Some(actual)) => Err(Rejection::RevisionMismatch {
                what: what.to_owned(),
                expected,
                actual,
            }),
        }
    }
}

/// A change to the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Create or replace a cluster.
    PutCluster {
        /// The new value.
        cluster: Cluster,
        /// Compare-and-set.
        expect: Expect,
    },
    /// Delete a cluster (refused while it still exports services).
    DeleteCluster {
        /// Its name.
        name: String,
        /// Compare-and-set.
        expect: Expect,
    },
    /// Create or replace an export.
    PutExport {
        /// The new value.
        export: ServiceExport,
        /// Compare-and-set.
        expect: Expect,
    },
    /// Delete an export.
    DeleteExport {
        /// Which.
        key: ExportKey,
        /// Compare-and-set.
        expect: Expect,
    },
    /// Replace the trust bundle.
    SetTrustBundle {
        /// The new bundle.
        trust_bundle: TrustBundleDoc,
        /// Compare-and-set.
        expect: Expect,
    },
    /// Create or replace a policy.
    PutPolicy {
        /// The new value.
        policy: PolicyDoc,
        /// Compare-and-set.
        expect: Expect,
    },
    /// Delete a policy.
    DeletePolicy {
        /// Its name.
        name: String,
        /// Compare-and-set.
        expect: Expect,
    },
}

/// Why a command was not applied. Every variant says what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    /// The object does not exist.
    #[error("{what} does not exist")]
    NotFound {
        /// For example `cluster "east"`.
        what: String,
    },
    /// A create found the object already there.
    #[error(
        "{what} already exists (revision {revision}); to replace it, send expect_revision={revision}"
    )]
    AlreadyExists {
        /// The object.
        what: String,
        /// Its current revision.
        revision: u64,
    },
    /// Compare-and-set failed: someone else changed the object.
    #[error(
        "{what} is at revision {actual}, not {expected}: it changed since you read it; read it again and retry"
    )]
    RevisionMismatch {
        /// The object.
        what: String,
        /// What the writer sent.
        expected: u64,
        /// What the object has.
        actual: u64,
    },
    /// An export names a cluster that is not a member.
    #[error(
        "field `cluster`: unknown cluster \"{cluster}\"; create it first (PUT /v1/clusters/{cluster})"
    )]
    UnknownCluster {
        /// The name.
        cluster: String,
    },
    /// A cluster still has exports.
    #[error("cluster \"{cluster}\" still exports {count} service(s); delete its exports first")]
    ClusterHasExports {
        /// The cluster.
        cluster: String,
        /// How many exports remain.
        count: usize,
    },
}

/// The result of applying one command.
pub type Applied = Result<(u64, Vec<Event>), Rejection>;

/// Applies `command` to `state`. On success the state's revision is bumped by one, every
/// touched object carries the new revision, and the events of that revision are
/// returned with it. On rejection `state` is unchanged.
pub fn apply(state: &mut CatalogState, command: Command) -> Applied {
    let revision = state.revision + 1;
    let events = match command {
        Command::PutCluster {
            mut cluster,
            expect,
        } => {
            let what = format!("cluster \"{}\"", cluster.name);
            expect.check(&what, state.clusters.get(&cluster.name).map(|c| c.revision))?;
            cluster.revision = revision;
            state.clusters.insert(cluster.name.clone(), cluster.clone());
            vec![Event::ClusterPut { cluster }]
        }
        Command::DeleteCluster { name, expect } => {
            let what = format!("cluster \"{name}\"");
            let current = state.clusters.get(&name).map(|c| c.revision);
            if current.is_none() {
                return Err(Rejection::NotFound { what });
            }
            expect.check(&what, current)?;
            let count = state.exports.keys().filter(|k| k.cluster == name).count();
            if count > 0 {
                return Err(Rejection::ClusterHasExports {
                    cluster: name,
                    count,
                });
            }
            state.clusters.remove(&name);
            vec![Event::ClusterDeleted { name }]
        }
        Command::PutExport { mut export, expect } => {
            if !state.clusters.contains_key(&export.cluster) {
                return Err(Rejection::UnknownCluster {
                    cluster: export.cluster,
                });
            }
            let key = export.key();
            let what = format!("export {key}");
            expect.check(&what, state.exports.get(&key).map(|e| e.revision))?;
            export.revision = revision;
            state.exports.insert(key, export.clone());
            vec![Event::ExportPut { export }]
        }
        Command::DeleteExport { key, expect } => {
            let what = format!("export {key}");
            let current = state.exports.get(&key).map(|e| e.revision);
            if current.is_none() {
                return Err(Rejection::NotFound { what });
            }
            expect.check(&what, current)?;
            state.exports.remove(&key);
            vec![Event::ExportDeleted {
                cluster: key.cluster,
                namespace: key.namespace,
                name: key.name,
            }]
        }
        Command::SetTrustBundle {
            mut trust_bundle,
            expect,
        } => {
            let current = state.trust_bundle.as_ref().map(|b| b.revision);
            expect.check("the trust bundle", current)?;
            trust_bundle.revision = revision;
            state.trust_bundle = Some(trust_bundle.clone());
            vec![Event::TrustBundleSet { trust_bundle }]
        }
        Command::PutPolicy { mut policy, expect } => {
            let what = format!("policy \"{}\"", policy.name);
            expect.check(&what, state.policies.get(&policy.name).map(|p| p.revision))?;
            policy.revision = revision;
            state.policies.insert(policy.name.clone(), policy.clone());
            vec![Event::PolicyPut { policy }]
        }
        Command::DeletePolicy { name, expect } => {
            let what = format!("policy \"{name}\"");
            let current = state.policies.get(&name).map(|p| p.revision);
            if current.is_none() {
                return Err(Rejection::NotFound { what });
            }
            expect.check(&what, current)?;
            state.policies.remove(&name);
            vec![Event::PolicyDeleted { name }]
        }
    };
    state.revision = revision;
    Ok((revision, events))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ClusterState, EndpointHealth, ExportPort, PortProtocol};

    fn cluster(name: &str) -> Cluster {
        Cluster {
            name: name.into(),
            gateways: vec![],
            intermediate_pem: None,
            state: ClusterState::Active,
            revision: 0,
        }
    }

    fn export(cluster: &str, name: &str) -> ServiceExport {
        ServiceExport {
            cluster: cluster.into(),
            namespace: "shop".into(),
            name: name.into(),
            ports: vec![ExportPort {
                name: "http".into(),
                port: 80,
                protocol: PortProtocol::Http,
            }],
            health: EndpointHealth::default(),
            revision: 0,
        }
    }

    fn put_cluster(name: &str, expect: Expect) -> Command {
        Command::PutCluster {
            cluster: cluster(name),
            expect,
        }
    }

    #[test]
    fn each_accepted_change_bumps_one_revision_and_stamps_the_object() {
        let mut state = CatalogState::default();
        assert_eq!(
            apply(&mut state, put_cluster("east", Expect::Any))
                .unwrap()
                .0,
            1
        );
        let put = Command::PutExport {
            export: export("east", "echo"),
            expect: Expect::Absent,
        };
        let (revision, events) = apply(&mut state, put).unwrap();
        assert_eq!(revision, 2);
        assert_eq!(state.revision, 2);
        assert_eq!(state.clusters["east"].revision, 1);
        let Event::ExportPut { export } = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(export.revision, 2);
    }

    #[test]
    fn rejections_change_nothing() {
        let mut state = CatalogState::default();
        apply(&mut state, put_cluster("east", Expect::Any)).unwrap();
        let before = state.clone();
        let cases = [
            (
                put_cluster("east", Expect::Absent),
                "already exists (revision 1)",
            ),
            (
                put_cluster("east", Expect::Revision(7)),
                "at revision 1, not 7",
            ),
            (put_cluster("west", Expect::Revision(1)), "does not exist"),
            (
                Command::PutExport {
                    export: export("west", "echo"),
                    expect: Expect::Any,
                },
                "unknown cluster \"west\"",
            ),
            (
                Command::DeleteCluster {
                    name: "west".into(),
                    expect: Expect::Any,
                },
                "does not exist",
            ),
        ];
        for (command, message) in cases {
            let err = apply(&mut state, command).unwrap_err();
            assert!(err.to_string().contains(message), "{err}");
            assert_eq!(state, before);
        }
    }

    #[test]
    fn a_cluster_with_exports_cannot_be_deleted() {
        let mut state = CatalogState::default();
        apply(&mut state, put_cluster("east", Expect::Any)).unwrap();
        let put = Command::PutExport {
            export: export("east", "echo"),
            expect: Expect::Any,
        };
        apply(&mut state, put).unwrap();
        let delete = Command::DeleteCluster {
            name: "east".into(),
            expect: Expect::Any,
        };
        let err = apply(&mut state, delete.clone()).unwrap_err();
        assert_eq!(
            err,
            Rejection::ClusterHasExports {
                cluster: "east".into(),
                count: 1
            }
        );
        let key = export("east", "echo").key();
        let delete_export = Command::DeleteExport {
            key,
            expect: Expect::Revision(2),
        };
        apply(&mut state, delete_export).unwrap();
        assert_eq!(apply(&mut state, delete).unwrap().0, 4);
        assert!(state.clusters.is_empty());
    }

    #[test]
    fn compare_and_set_lets_exactly_one_of_two_concurrent_editors_win() {
        let mut state = CatalogState::default();
        apply(&mut state, put_cluster("east", Expect::Any)).unwrap();
        let read = state.clusters["east"].revision;
        assert!(apply(&mut state, put_cluster("east", Expect::Revision(read))).is_ok());
        assert!(matches!(
            apply(&mut state, put_cluster("east", Expect::Revision(read))),
            Err(Rejection::RevisionMismatch { .. })
        ));
    }
}
