//! A watcher's copy of the catalog, built from a watch stream. It enforces the stream's
//! guarantees — revisions in order, no gap, no duplicate, a snapshot whole before
//! changes resume — and refuses a message that breaks them, so a client never applies
//! a change out of order silently. Gateways keep their last known-good catalog in one.

use std::collections::BTreeMap;

use crate::model::{CatalogState, Event};
use crate::watch::{WatchMessage, Watched};

/// Why a watch message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MirrorError {
    /// A change did not follow the last revision by exactly one.
    #[error("watch out of order: revision {got} after {at} (a gap or a duplicate)")]
    OutOfOrder {
        /// The mirror's revision.
        at: u64,
        /// The message's.
        got: u64,
    },
    /// A snapshot older than what the mirror holds.
    #[error("watch travelled back in time: snapshot at {got} after {at}")]
    BackInTime {
        /// The mirror's revision.
        at: u64,
        /// The snapshot's.
        got: u64,
    },
    /// A change arrived before the snapshot in progress was complete.
    #[error("watch broke a snapshot at revision {revision} apart")]
    SplitSnapshot {
        /// The snapshot's revision.
        revision: u64,
    },
    /// A change carried no events.
    #[error("revision {0} carried no events")]
    Empty(u64),
}

/// The catalog as a watcher sees it.
#[derive(Debug, Clone, Default)]
pub struct CatalogMirror {
    state: CatalogState,
    /// Policies that exist but did not read: name → why.
    unreadable: BTreeMap<String, String>,
    pending: Option<(CatalogState, BTreeMap<String, String>)>,
    messages: u64,
}

impl CatalogMirror {
    /// An empty mirror (revision 0).
    pub fn new() -> Self {
        Self::default()
    }

    /// The revision the mirror is complete up to: resume a watch after it.
    pub fn revision(&self) -> u64 {
        self.state.revision
    }

    /// The mirrored catalog (complete up to [`Self::revision`]).
    pub fn state(&self) -> &CatalogState {
        &self.state
    }

    /// Policies in force that this client could not read (name → why): whoever decides
    /// by the policies must deny everything while there are any.
    pub fn unreadable_policies(&self) -> &BTreeMap<String, String> {
        &self.unreadable
    }

    /// Messages applied so far.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// Applies one message, or refuses it and changes nothing.
    pub fn apply(&mut self, message: WatchMessage) -> Result<(), MirrorError> {
        self.apply_watched(Watched {
            message,
            unreadable: Vec::new(),
        })
    }

    /// Applies one message and the policies in it that did not read, or refuses it and
    /// changes nothing.
    pub fn apply_watched(&mut self, watched: Watched) -> Result<(), MirrorError> {
        let Watched {
            message,
            unreadable,
        } = watched;
        match message {
            WatchMessage::Changes(changes) => {
                if let Some((pending, _)) = &self.pending {
                    return Err(MirrorError::SplitSnapshot {
                        revision: pending.revision,
                    });
                }
                // `checked_add`: a snapshot at u64::MAX must not make the next change
                // overflow (found by the `watch_message` fuzz target).
                if Some(changes.revision) != self.state.revision.checked_add(1) {
                    return Err(MirrorError::OutOfOrder {
                        at: self.state.revision,
                        got: changes.revision,
                    });
                }
                if changes.events.is_empty() && unreadable.is_empty() {
                    return Err(MirrorError::Empty(changes.revision));
                }
                for event in changes.events {
                    forget_unreadable(&mut self.unreadable, &event);
                    put(&mut self.state, event);
                }
                for policy in unreadable {
                    self.state.policies.remove(&policy.name);
                    self.unreadable.insert(policy.name, policy.reason);
                }
                self.state.revision = changes.revision;
            }
            WatchMessage::Snapshot {
                revision,
                events,
                done,
            } => {
                if revision < self.state.revision {
                    return Err(MirrorError::BackInTime {
                        at: self.state.revision,
                        got: revision,
                    });
                }
                // A snapshot at another revision than the unfinished one replaces it: the
                // stream that carried the first was cut, and a resumed watch starts over.
                if self
                    .pending
                    .as_ref()
                    .is_some_and(|(p, _)| p.revision != revision)
                {
                    self.pending = None;
                }
                let (pending, pending_unreadable) = self.pending.get_or_insert_with(|| {
                    (
                        CatalogState {
                            revision,
                            ..CatalogState::default()
                        },
                        BTreeMap::new(),
                    )
                });
                for event in events {
                    put(pending, event);
                }
                for policy in unreadable {
                    pending_unreadable.insert(policy.name, policy.reason);
                }
                if done {
                    let (state, unreadable) = self.pending.take().unwrap_or_default();
                    self.state = state;
                    self.unreadable = unreadable;
                }
            }
        }
        self.messages += 1;
        Ok(())
    }
}

/// A policy put or deleted is no longer unreadable.
fn forget_unreadable(unreadable: &mut BTreeMap<String, String>, event: &Event) {
    match event {
        Event::PolicyPut { policy } => {
            unreadable.remove(&policy.name);
        }
        Event::PolicyDeleted { name } => {
            unreadable.remove(name);
        }
        _ => {}
    }
}

fn put(state: &mut CatalogState, event: Event) {
    match event {
        Event::ClusterPut { cluster } => {
            state.clusters.insert(cluster.name.clone(), cluster);
        }
        Event::ClusterDeleted { name } => {
            state.clusters.remove(&name);
        }
        Event::ExportPut { export } => {
            state.exports.insert(export.key(), export);
        }
        Event::ExportDeleted {
            cluster,
            namespace,
            name,
        } => {
            state.exports.remove(&crate::model::ExportKey {
                cluster,
                namespace,
                name,
            });
        }
        Event::TrustBundleSet { trust_bundle } => state.trust_bundle = Some(trust_bundle),
        Event::PolicyPut { policy } => {
            state.policies.insert(policy.name.clone(), policy);
        }
        Event::PolicyDeleted { name } => {
            state.policies.remove(&name);
        }
        Event::ClaimPut { claim } => {
            state.claims.insert(claim.host.clone(), claim);
        }
        Event::RegistrationPut { registration } => {
            state
                .registrations
                .insert(registration.name.clone(), registration);
        }
        Event::RegistrationDeleted { name } => {
            state.registrations.remove(&name);
        }
        Event::ClaimDeleted { host } => {
            state.claims.remove(&host);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Cluster, ClusterState, RevisionEvents};

    fn put_cluster(revision: u64, name: &str) -> WatchMessage {
        WatchMessage::Changes(RevisionEvents {
            revision,
            events: vec![Event::ClusterPut {
                cluster: Cluster {
                    name: name.into(),
                    gateways: vec![],
                    intermediate_pem: None,
                    locality: None,
                    join: None,
                    state: ClusterState::Active,
                    revision,
                },
            }],
        })
    }

    #[test]
    fn gaps_duplicates_and_time_travel_are_refused() {
        let mut mirror = CatalogMirror::new();
        mirror.apply(put_cluster(1, "a")).unwrap();
        assert_eq!(
            mirror.apply(put_cluster(1, "a")),
            Err(MirrorError::OutOfOrder { at: 1, got: 1 })
        );
        assert_eq!(
            mirror.apply(put_cluster(3, "c")),
            Err(MirrorError::OutOfOrder { at: 1, got: 3 })
        );
        let old = WatchMessage::Snapshot {
            revision: 0,
            events: vec![],
            done: true,
        };
        assert_eq!(
            mirror.apply(old),
            Err(MirrorError::BackInTime { at: 1, got: 0 })
        );
        assert_eq!(mirror.revision(), 1);
        assert_eq!(mirror.state().clusters.len(), 1);
    }

    #[test]
    fn a_change_after_a_snapshot_at_the_last_revision_is_refused_not_a_panic() {
        // The `watch_message` fuzz target's crash: a whole snapshot at u64::MAX, then
        // any change, overflowed `revision + 1`.
        let mut mirror = CatalogMirror::new();
        let last = WatchMessage::Snapshot {
            revision: u64::MAX,
            events: vec![],
            done: true,
        };
        mirror.apply(last).unwrap();
        for revision in [0, 5, u64::MAX] {
            assert_eq!(
                mirror.apply(put_cluster(revision, "east")),
                Err(MirrorError::OutOfOrder {
                    at: u64::MAX,
                    got: revision
                })
            );
        }
        assert_eq!(mirror.revision(), u64::MAX);
    }

    #[test]
    fn a_snapshot_replaces_the_state_only_when_whole() {
        let mut mirror = CatalogMirror::new();
        mirror.apply(put_cluster(1, "gone")).unwrap();
        let part = |done, name: &str| WatchMessage::Snapshot {
            revision: 9,
            events: vec![
                Event::ClusterDeleted { name: "x".into() },
                match put_cluster(9, name) {
                    WatchMessage::Changes(c) => c.events[0].clone(),
                    WatchMessage::Snapshot { .. } => unreachable!(),
                },
            ],
            done,
        };
        mirror.apply(part(false, "a")).unwrap();
        assert_eq!(mirror.revision(), 1, "incomplete snapshot applied early");
        assert!(matches!(
            mirror.apply(put_cluster(10, "b")),
            Err(MirrorError::SplitSnapshot { .. })
        ));
        mirror.apply(part(true, "b")).unwrap();
        assert_eq!(mirror.revision(), 9);
        let names: Vec<_> = mirror.state().clusters.keys().cloned().collect();
        assert_eq!(names, ["a", "b"]);
        mirror.apply(put_cluster(10, "c")).unwrap();
    }

    #[test]
    fn a_policy_that_does_not_read_is_remembered_until_it_is_replaced_or_deleted() {
        use crate::watch::UnreadablePolicy;
        let mut mirror = CatalogMirror::new();
        mirror.apply(put_cluster(1, "a")).unwrap();
        let unreadable = Watched {
            message: WatchMessage::Changes(RevisionEvents {
                revision: 2,
                events: vec![],
            }),
            unreadable: vec![UnreadablePolicy {
                name: "new-language".into(),
                reason: "unknown field".into(),
            }],
        };
        mirror.apply_watched(unreadable).unwrap();
        assert_eq!(mirror.revision(), 2);
        assert!(mirror.unreadable_policies().contains_key("new-language"));
        let deleted = WatchMessage::Changes(RevisionEvents {
            revision: 3,
            events: vec![Event::PolicyDeleted {
                name: "new-language".into(),
            }],
        });
        mirror.apply(deleted).unwrap();
        assert!(mirror.unreadable_policies().is_empty());
    }
}
