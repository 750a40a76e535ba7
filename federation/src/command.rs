//! Catalog commands — what the Raft log carries — and their pure application to the
//! catalog. [`apply`] is deterministic: every node applies the same log to the same
//! state and reaches the same result, accepted or rejected. A rejected command changes
//! nothing and does not bump the revision.
//!
//! Stateless checks (names, ports, PEM, the policy language) happen before a command is
//! proposed ([`Command::validate`]); the checks that depend on the state happen here.
//! A command carries everything apply needs, already checked and typed: apply never
//! parses a policy document, so every version applies an entry alike. (The one text it
//! reads is a claim's host, a dot-separated label list with an optional `*.` in front,
//! to find overlapping claims; that grammar is part of the stored model, not of a
//! language that evolves.)

use isthmus_ca::TrustDomain;
use isthmus_federation_api::ApiError;
use isthmus_federation_api::claims::Claim;
use isthmus_federation_api::model::{
    CatalogState, Cluster, ClusterState, Event, Expect, ExpectMiss, ExportKey, GatewayEndpoint,
    JoinGrant, Policy, ServiceExport, TrustBundleDoc,
};
use isthmus_federation_api::validate;
use serde::{Deserialize, Serialize};

fn expected(expect: Expect, what: &str, current: Option<u64>) -> Result<(), Rejection> {
    expect.admits(current).map_err(|miss| match miss {
        ExpectMiss::Exists(revision) => Rejection::AlreadyExists {
            what: what.to_owned(),
            revision,
        },
        ExpectMiss::Missing => Rejection::NotFound {
            what: what.to_owned(),
        },
        ExpectMiss::Moved { expected, actual } => Rejection::RevisionMismatch {
            what: what.to_owned(),
            expected,
            actual,
        },
    })
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
        /// The new value, its document checked.
        policy: Policy,
        /// Compare-and-set.
        expect: Expect,
    },
    /// Claim a host for a namespace (refused if another namespace's claim overlaps).
    PutClaim {
        /// The claim (its revision is set on apply).
        claim: Claim,
        /// Compare-and-set.
        expect: Expect,
    },
    /// Gives up a host claim.
    DeleteClaim {
        /// The host.
        host: String,
        /// Compare-and-set.
        expect: Expect,
    },
    /// Deletes a policy.
    DeletePolicy {
        /// Its name.
        name: String,
        /// Compare-and-set.
        expect: Expect,
    },
    /// Create a pending cluster with a join token, or give a still-pending one a new
    /// token (the old one stops working).
    CreateCluster {
        /// The cluster name.
        name: String,
        /// Its locality, if known.
        locality: Option<String>,
        /// The token's id, secret hash and expiry.
        join: JoinGrant,
    },
    /// Spend a join token: the pending cluster becomes active with its first gateway and
    /// its intermediate.
    Enroll {
        /// The cluster named by the token.
        name: String,
        /// The token's id.
        token_id: String,
        /// SHA-256 (hex) of the secret presented.
        secret_sha256: String,
        /// The proposer's clock, Unix seconds (carried so that every node decides alike).
        now: u64,
        /// The enrolling gateway.
        gateway: GatewayEndpoint,
        /// The cluster's intermediate certificate (PEM), checked by the proposer.
        intermediate_pem: String,
    },
    /// Add or update one gateway endpoint of an active cluster.
    SetGateway {
        /// The cluster.
        cluster: String,
        /// The endpoint; replaces the one with the same name.
        gateway: GatewayEndpoint,
    },
    /// Cut a cluster off: it becomes revoked, its join token is void, and gateways
    /// refuse its gateways.
    RevokeCluster {
        /// The cluster.
        name: String,
    },
    /// Create or replace a workload registration (its cluster must exist).
    PutRegistration {
        /// The entry, checked.
        registration: isthmus_federation_api::registration::Registration,
        /// Compare-and-set.
        expect: Expect,
    },
    /// Delete a workload registration.
    DeleteRegistration {
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
    /// A join token was refused.
    #[error("join token refused: {reason}")]
    JoinRefused {
        /// Why, and what to do.
        reason: String,
    },
    /// The cluster is revoked.
    #[error(
        "cluster \"{cluster}\" is revoked; a revoked cluster cannot rejoin or change (delete it and create it anew)"
    )]
    Revoked {
        /// The cluster.
        cluster: String,
    },
    /// Another namespace holds an overlapping claim.
    #[error(
        "{host} is claimed by namespace \"{namespace}\" (claim {claim}); a host belongs to one namespace: ask its owners to give it up, or pick another host"
    )]
    Claimed {
        /// The host asked for.
        host: String,
        /// Who holds it.
        namespace: String,
        /// The claim that covers it.
        claim: String,
    },
    /// An admission check found a mistake in the object (what vet reports offline).
    #[error("field `{field}`: {message}")]
    Vet {
        /// The field, as the API names it.
        field: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A cluster still has exports.
    #[error("cluster \"{cluster}\" still exports {count} service(s); delete its exports first")]
    ClusterHasExports {
        /// The cluster.
        cluster: String,
        /// How many exports remain.
        count: usize,
    },
    /// The catalog is at the last revision a 64-bit counter holds: no change can get a
    /// revision of its own.
    #[error("the catalog is at revision {0}, the last there is; it takes no more changes")]
    RevisionsExhausted(u64),
}

/// The result of applying one command.
pub type Applied = Result<(u64, Vec<Event>), Rejection>;

/// Applies `command` to `state`. On success the state's revision is bumped by one, every
/// touched object carries the new revision, and the events of that revision are
/// returned with it. On rejection `state` is unchanged.
pub fn apply(state: &mut CatalogState, command: Command) -> Applied {
    let revision = state
        .revision
        .checked_add(1)
        .ok_or(Rejection::RevisionsExhausted(state.revision))?;
    let events = match command {
        Command::PutCluster {
            mut cluster,
            expect,
        } => {
            let what = format!("cluster \"{}\"", cluster.name);
            expected(
                expect,
                &what,
                state.clusters.get(&cluster.name).map(|c| c.revision),
            )?;
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
            expected(expect, &what, current)?;
            let count = state.exports.keys().filter(|k| k.cluster == name).count();
            if count > 0 {
                return Err(Rejection::ClusterHasExports {
                    cluster: name,
                    count,
                });
            }
            // A registration naming the cluster would give out identities of no cluster.
            if let Some(r) = state.registrations.values().find(|r| r.cluster == name) {
                return Err(Rejection::Vet {
                    field: "name".into(),
                    message: format!(
                        "registration \"{}\" gives identities of cluster \"{name}\"; delete it first",
                        r.name
                    ),
                });
            }
            // A policy naming the cluster would be left naming an unknown one.
            for policy in state.policies.values() {
                let named =
                    isthmus_federation_api::vet::policy_clusters(&policy.body, |c| c != name);
                if let Some(finding) = named.first() {
                    return Err(Rejection::Vet {
                        field: "name".into(),
                        message: format!(
                            "policy \"{}\" names cluster \"{name}\" ({}); change the policy first",
                            policy.name, finding.field
                        ),
                    });
                }
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
            expected(expect, &what, state.exports.get(&key).map(|e| e.revision))?;
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
            expected(expect, &what, current)?;
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
            expected(expect, "the trust bundle", current)?;
            trust_bundle.revision = revision;
            state.trust_bundle = Some(trust_bundle.clone());
            vec![Event::TrustBundleSet { trust_bundle }]
        }
        Command::PutPolicy { mut policy, expect } => {
            if let Some(finding) = isthmus_federation_api::vet::policy_clusters(&policy.body, |c| {
                state.clusters.contains_key(c)
            })
            .into_iter()
            .next()
            {
                return Err(Rejection::Vet {
                    field: finding.field,
                    message: finding.message,
                });
            }
            let what = format!("policy \"{}\"", policy.name);
            expected(
                expect,
                &what,
                state.policies.get(&policy.name).map(|p| p.revision),
            )?;
            policy.revision = revision;
            state.policies.insert(policy.name.clone(), policy.clone());
            vec![Event::PolicyPut { policy }]
        }
        Command::PutClaim { mut claim, expect } => {
            let what = format!("the claim of {}", claim.host);
            expected(
                expect,
                &what,
                state.claims.get(&claim.host).map(|c| c.revision),
            )?;
            if let Some(other) =
                isthmus_federation_api::claims::conflict(state.claims.values(), &claim)
            {
                return Err(Rejection::Claimed {
                    host: claim.host,
                    namespace: other.namespace.clone(),
                    claim: other.host.clone(),
                });
            }
            claim.revision = revision;
            state.claims.insert(claim.host.clone(), claim.clone());
            vec![Event::ClaimPut { claim }]
        }
        Command::DeleteClaim { host, expect } => {
            let what = format!("the claim of {host}");
            let current = state.claims.get(&host).map(|c| c.revision);
            if current.is_none() {
                return Err(Rejection::NotFound { what });
            }
            expected(expect, &what, current)?;
            state.claims.remove(&host);
            vec![Event::ClaimDeleted { host }]
        }
        Command::PutRegistration {
            mut registration,
            expect,
        } => {
            let what = format!("registration \"{}\"", registration.name);
            expected(
                expect,
                &what,
                state
                    .registrations
                    .get(&registration.name)
                    .map(|r| r.revision),
            )?;
            if !state.clusters.contains_key(&registration.cluster) {
                return Err(Rejection::UnknownCluster {
                    cluster: registration.cluster,
                });
            }
            registration.revision = revision;
            state
                .registrations
                .insert(registration.name.clone(), registration.clone());
            vec![Event::RegistrationPut { registration }]
        }
        Command::DeleteRegistration { name, expect } => {
            let what = format!("registration \"{name}\"");
            let current = state.registrations.get(&name).map(|r| r.revision);
            if current.is_none() {
                return Err(Rejection::NotFound { what });
            }
            expected(expect, &what, current)?;
            state.registrations.remove(&name);
            vec![Event::RegistrationDeleted { name }]
        }
        Command::DeletePolicy { name, expect } => {
            let what = format!("policy \"{name}\"");
            let current = state.policies.get(&name).map(|p| p.revision);
            if current.is_none() {
                return Err(Rejection::NotFound { what });
            }
            expected(expect, &what, current)?;
            state.policies.remove(&name);
            vec![Event::PolicyDeleted { name }]
        }
        Command::CreateCluster {
            name,
            locality,
            join,
        } => {
            let cluster = match state.clusters.get(&name) {
                None => Cluster {
                    name: name.clone(),
                    gateways: Vec::new(),
                    intermediate_pem: None,
                    state: ClusterState::Pending,
                    locality,
                    join: Some(join),
                    revision,
                },
                Some(c) if c.state == ClusterState::Pending => Cluster {
                    join: Some(join),
                    locality: locality.or_else(|| c.locality.clone()),
                    revision,
                    ..c.clone()
                },
                Some(c) if c.state == ClusterState::Revoked => {
                    return Err(Rejection::Revoked { cluster: name });
                }
                Some(c) => {
                    return Err(Rejection::AlreadyExists {
                        what: format!("active cluster \"{name}\""),
                        revision: c.revision,
                    });
                }
            };
            state.clusters.insert(name, cluster.clone());
            vec![Event::ClusterPut { cluster }]
        }
        Command::Enroll {
            name,
            token_id,
            secret_sha256,
            now,
            gateway,
            intermediate_pem,
        } => {
            let refused = |reason: &str| Rejection::JoinRefused {
                reason: reason.to_owned(),
            };
            let Some(current) = state.clusters.get(&name) else {
                return Err(refused(
                    "its cluster does not exist (deleted?); create a new token",
                ));
            };
            match current.state {
                ClusterState::Revoked => return Err(Rejection::Revoked { cluster: name }),
                ClusterState::Active => {
                    return Err(refused(
                        "it was already used: the cluster has joined; create a new cluster or reuse the enrolled gateway's data directory",
                    ));
                }
                ClusterState::Pending => {}
            }
            let Some(grant) = &current.join else {
                return Err(refused("the cluster has no outstanding token"));
            };
            if grant.token_id != token_id {
                return Err(refused(
                    "it was replaced by a newer token for the same cluster",
                ));
            }
            if grant.secret_sha256 != secret_sha256 {
                return Err(refused("its secret is wrong"));
            }
            if now > grant.expires_at {
                return Err(refused(
                    "it has expired; run `isthmus federation cluster create` again for a new one",
                ));
            }
            let cluster = Cluster {
                gateways: vec![gateway],
                intermediate_pem: Some(intermediate_pem),
                state: ClusterState::Active,
                join: None,
                revision,
                ..current.clone()
            };
            state.clusters.insert(name, cluster.clone());
            vec![Event::ClusterPut { cluster }]
        }
        Command::SetGateway { cluster, gateway } => {
            let Some(current) = state.clusters.get(&cluster) else {
                return Err(Rejection::UnknownCluster { cluster });
            };
            if current.state == ClusterState::Revoked {
                return Err(Rejection::Revoked { cluster });
            }
            let mut updated = current.clone();
            match updated.gateways.iter_mut().find(|g| g.name == gateway.name) {
                Some(existing) => *existing = gateway,
                None => updated.gateways.push(gateway),
            }
            updated.revision = revision;
            state.clusters.insert(cluster, updated.clone());
            vec![Event::ClusterPut { cluster: updated }]
        }
        Command::RevokeCluster { name } => {
            let Some(current) = state.clusters.get(&name) else {
                return Err(Rejection::NotFound {
                    what: format!("cluster \"{name}\""),
                });
            };
            let cluster = Cluster {
                state: ClusterState::Revoked,
                join: None,
                revision,
                ..current.clone()
            };
            state.clusters.insert(name, cluster.clone());
            vec![Event::ClusterPut { cluster }]
        }
    };
    state.revision = revision;
    Ok((revision, events))
}

impl Command {
    /// The stateless checks, made before the command is proposed, whichever face or
    /// node it came through; fields are named as the model names them.
    pub fn validate(&self, domain: &TrustDomain) -> Result<(), ApiError> {
        match self {
            Command::PutCluster { cluster: c, .. } => validate::cluster(c),
            Command::DeleteCluster { name: n, .. } => validate::name("name", n),
            Command::PutExport { export: e, .. } => validate::export(e),
            Command::DeleteExport { key, .. } => validate::export_key(key),
            Command::SetTrustBundle {
                trust_bundle: b, ..
            } => validate::trust_bundle(b, Some(domain)).map(|_| ()),
            Command::PutPolicy { policy: p, .. } => validate::policy(p),
            Command::DeletePolicy { name: n, .. } => validate::name("name", n),
            Command::PutClaim { claim, .. } => {
                isthmus_federation_api::claims::check(claim).map(|_| ())
            }
            Command::DeleteClaim { host, .. } => {
                isthmus_federation_api::claims::HostPattern::parse(host)
                    .map(|_| ())
                    .map_err(|e| ApiError::invalid("host", e.to_string()))
            }
            Command::CreateCluster {
                name: n,
                locality: l,
                ..
            } => {
                validate::name("name", n)?;
                l.as_deref()
                    .map_or(Ok(()), |l| validate::locality("locality", l))
            }
            Command::Enroll {
                name: n,
                gateway,
                intermediate_pem,
                ..
            } => {
                validate::name("cluster", n)?;
                validate::gateway_endpoint("gateway", gateway)?;
                validate::intermediate("intermediate_pem", intermediate_pem, n)
            }
            Command::SetGateway {
                cluster: c,
                gateway,
            } => {
                validate::name("cluster", c)?;
                validate::gateway_endpoint("gateway", gateway)
            }
            Command::RevokeCluster { name: n } => validate::name("name", n),
            Command::PutRegistration { registration, .. } => registration.check(),
            Command::DeleteRegistration { name: n, .. } => validate::name("name", n),
        }
    }
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> Self {
        let message = rejection.to_string();
        match rejection {
            Rejection::NotFound { .. } => Self::NotFound(message),
            Rejection::AlreadyExists { .. } | Rejection::Claimed { .. } => {
                Self::AlreadyExists(message)
            }
            Rejection::RevisionMismatch { .. }
            | Rejection::ClusterHasExports { .. }
            | Rejection::Revoked { .. }
            | Rejection::RevisionsExhausted(_) => Self::FailedPrecondition(message),
            Rejection::Vet { field, message } => Self::admission(field, message),
            Rejection::JoinRefused { .. } => Self::PermissionDenied(message),
            Rejection::UnknownCluster { cluster } => Self::admission(
                "cluster",
                format!("unknown cluster \"{cluster}\"; create the cluster first"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_federation_api::model::{EndpointHealth, ExportPort, PortProtocol};

    fn cluster(name: &str) -> Cluster {
        Cluster {
            name: name.into(),
            gateways: vec![],
            intermediate_pem: None,
            locality: None,
            join: None,
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
    fn the_last_revision_takes_no_more_changes() {
        let mut state = CatalogState {
            revision: u64::MAX,
            ..CatalogState::default()
        };
        let put = Command::PutCluster {
            cluster: cluster("east"),
            expect: Expect::Any,
        };
        assert_eq!(
            apply(&mut state, put),
            Err(Rejection::RevisionsExhausted(u64::MAX))
        );
        assert!(state.clusters.is_empty());
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
    fn a_registration_needs_its_cluster_and_holds_it() {
        let mut state = CatalogState::default();
        let entry = isthmus_federation_api::registration::Registration {
            name: "frontend".into(),
            cluster: "west".into(),
            namespace: "shop".into(),
            service_account: "frontend".into(),
            uid: Some(1000),
            gid: None,
            path: None,
            revision: 0,
        };
        let put =
            |r: &isthmus_federation_api::registration::Registration| Command::PutRegistration {
                registration: r.clone(),
                expect: Expect::Any,
            };
        assert!(matches!(
            apply(&mut state, put(&entry)),
            Err(Rejection::UnknownCluster { .. })
        ));
        apply(
            &mut state,
            Command::PutCluster {
                cluster: Cluster {
                    name: "west".into(),
                    gateways: vec![],
                    intermediate_pem: None,
                    state: ClusterState::Active,
                    locality: None,
                    join: None,
                    revision: 0,
                },
                expect: Expect::Any,
            },
        )
        .unwrap();
        apply(&mut state, put(&entry)).unwrap();
        assert_eq!(state.registrations["frontend"].revision, state.revision);
        let refused = apply(
            &mut state,
            Command::DeleteCluster {
                name: "west".into(),
                expect: Expect::Any,
            },
        );
        assert!(matches!(refused, Err(Rejection::Vet { .. })), "{refused:?}");
        apply(
            &mut state,
            Command::DeleteRegistration {
                name: "frontend".into(),
                expect: Expect::Any,
            },
        )
        .unwrap();
        assert!(state.registrations.is_empty());
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

    fn grant(id: &str, expires_at: u64) -> JoinGrant {
        JoinGrant {
            token_id: id.into(),
            secret_sha256: "aa".into(),
            expires_at,
        }
    }

    fn enroll(id: &str, secret: &str, now: u64) -> Command {
        Command::Enroll {
            name: "west".into(),
            token_id: id.into(),
            secret_sha256: secret.into(),
            now,
            gateway: GatewayEndpoint {
                name: "ew".into(),
                address: "127.0.0.1:1".into(),
            },
            intermediate_pem: "pem".into(),
        }
    }

    fn create(id: &str, expires_at: u64) -> Command {
        Command::CreateCluster {
            name: "west".into(),
            locality: None,
            join: grant(id, expires_at),
        }
    }

    fn refusal(state: &mut CatalogState, command: Command) -> String {
        let before = state.clone();
        let err = apply(state, command).unwrap_err().to_string();
        assert_eq!(*state, before, "a refusal changes nothing");
        err
    }

    #[test]
    fn a_join_token_is_spent_once_and_only_before_it_expires() {
        let mut state = CatalogState::default();
        apply(&mut state, create("t1", 100)).unwrap();
        assert_eq!(state.clusters["west"].state, ClusterState::Pending);
        assert!(refusal(&mut state, enroll("t1", "bb", 50)).contains("secret is wrong"));
        assert!(refusal(&mut state, enroll("t0", "aa", 50)).contains("replaced"));
        assert!(refusal(&mut state, enroll("t1", "aa", 101)).contains("expired"));
        // A new token replaces the old one.
        apply(&mut state, create("t2", 200)).unwrap();
        assert!(refusal(&mut state, enroll("t1", "aa", 150)).contains("replaced"));
        apply(&mut state, enroll("t2", "aa", 150)).unwrap();
        let west = &state.clusters["west"];
        assert_eq!(west.state, ClusterState::Active);
        assert_eq!(west.join, None);
        assert_eq!(west.intermediate_pem.as_deref(), Some("pem"));
        assert!(refusal(&mut state, enroll("t2", "aa", 150)).contains("already used"));
        assert!(refusal(&mut state, create("t3", 300)).contains("already exists"));
    }

    #[test]
    fn a_revoked_cluster_stays_revoked() {
        let mut state = CatalogState::default();
        apply(&mut state, create("t1", 100)).unwrap();
        apply(&mut state, enroll("t1", "aa", 1)).unwrap();
        let gateway = GatewayEndpoint {
            name: "ew2".into(),
            address: "127.0.0.1:2".into(),
        };
        apply(
            &mut state,
            Command::SetGateway {
                cluster: "west".into(),
                gateway: gateway.clone(),
            },
        )
        .unwrap();
        assert_eq!(state.clusters["west"].gateways.len(), 2);
        apply(
            &mut state,
            Command::RevokeCluster {
                name: "west".into(),
            },
        )
        .unwrap();
        assert_eq!(state.clusters["west"].state, ClusterState::Revoked);
        assert!(refusal(&mut state, create("t4", 100)).contains("revoked"));
        assert!(refusal(&mut state, enroll("t1", "aa", 1)).contains("revoked"));
        let set = Command::SetGateway {
            cluster: "west".into(),
            gateway,
        };
        assert!(refusal(&mut state, set).contains("revoked"));
        let missing = Command::RevokeCluster {
            name: "nope".into(),
        };
        assert!(refusal(&mut state, missing).contains("does not exist"));
    }
}
