//! The rules every watch opened during a run must keep, across the times it was
//! resumed on another node: revisions in order with no gap and no duplicate (each
//! revision is one change, so the next after `r` is `r + 1`), each revision's changes
//! exactly the reference's, a full state only when resuming from before the history,
//! and equal to the reference's state at its revision.

use std::collections::BTreeMap;

use super::history::Key;
use super::reference::{Change, Reference};

/// What a watcher received, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The watch was opened (or resumed) for the changes after `after`.
    Opened {
        /// The revision asked for.
        after: u64,
    },
    /// One revision's changes.
    Changes {
        /// The revision.
        revision: u64,
        /// Its changes to the run's keys.
        changes: Vec<Change>,
    },
    /// A whole state (all parts together).
    Snapshot {
        /// Its revision.
        revision: u64,
        /// The keys' values.
        state: BTreeMap<Key, u64>,
    },
    /// Something the watcher could not read as one of the run's changes.
    Unreadable(String),
    /// The stream ended or failed.
    Ended(String),
}

/// Checks one watcher's deliveries; each violation described.
pub fn check(deliveries: &[Delivery], reference: &Reference) -> Vec<String> {
    let mut violations = Vec::new();
    let mut last: Option<u64> = None;
    for delivery in deliveries {
        match delivery {
            Delivery::Opened { after } => {
                if last.is_some_and(|last| *after != last) {
                    violations.push(format!(
                        "resumed after {after}, not after the last revision seen ({last:?})"
                    ));
                }
                last = Some(*after);
            }
            Delivery::Changes { revision, changes } => {
                let expected = last.map_or(1, |l| l + 1);
                if *revision != expected {
                    violations.push(format!(
                        "revision {revision} delivered where {expected} was next ({})",
                        if *revision < expected {
                            "duplicate or out of order"
                        } else {
                            "gap"
                        }
                    ));
                }
                if reference.covers(*revision) && reference.revisions.get(revision) != Some(changes)
                {
                    violations.push(format!(
                        "revision {revision} delivered as {changes:?}, the reference has {:?}",
                        reference.revisions.get(revision)
                    ));
                }
                last = Some(*revision);
            }
            Delivery::Snapshot { revision, state } => {
                if last.is_some_and(|last| *revision < last) {
                    violations.push(format!(
                        "a full state at {revision}, older than revision {last:?} already seen"
                    ));
                }
                if *revision >= reference.from
                    && *revision <= reference.last()
                    && reference.state_at(*revision) != *state
                {
                    violations.push(format!(
                        "the full state at {revision} differs from the reference's"
                    ));
                }
                last = Some(*revision);
            }
            Delivery::Unreadable(what) => violations.push(format!("unreadable: {what}")),
            Delivery::Ended(_) => {}
        }
    }
    violations
}

/// The last revision a watcher reached.
pub fn reached(deliveries: &[Delivery]) -> u64 {
    deliveries
        .iter()
        .rev()
        .find_map(|d| match d {
            Delivery::Changes { revision, .. } | Delivery::Snapshot { revision, .. } => {
                Some(*revision)
            }
            Delivery::Opened { after } => Some(*after),
            _ => None,
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> Reference {
        Reference {
            from: 0,
            base: BTreeMap::new(),
            revisions: [
                (1, vec![(1, Some(10))]),
                (2, vec![(2, Some(20))]),
                (3, vec![(1, None)]),
            ]
            .into(),
        }
    }

    fn changes(revision: u64) -> Delivery {
        Delivery::Changes {
            revision,
            changes: reference().revisions[&revision].clone(),
        }
    }

    #[test]
    fn a_resumed_watch_without_gaps_keeps_the_rules() {
        let d = [
            Delivery::Opened { after: 0 },
            changes(1),
            Delivery::Ended("node killed".into()),
            Delivery::Opened { after: 1 },
            changes(2),
            changes(3),
        ];
        assert_eq!(check(&d, &reference()), Vec::<String>::new());
        assert_eq!(reached(&d), 3);
    }

    #[test]
    fn gaps_duplicates_and_wrong_changes_are_found() {
        let gap = [Delivery::Opened { after: 0 }, changes(1), changes(3)];
        assert_eq!(check(&gap, &reference()).len(), 1);
        let duplicate = [Delivery::Opened { after: 0 }, changes(1), changes(1)];
        assert_eq!(check(&duplicate, &reference()).len(), 1);
        let wrong = [
            Delivery::Opened { after: 0 },
            Delivery::Changes {
                revision: 1,
                changes: vec![(1, Some(11))],
            },
        ];
        assert_eq!(check(&wrong, &reference()).len(), 1);
        let resumed_late = [
            Delivery::Opened { after: 0 },
            changes(1),
            Delivery::Opened { after: 2 },
            changes(3),
        ];
        assert_eq!(check(&resumed_late, &reference()).len(), 1);
    }

    #[test]
    fn a_full_state_must_match_the_reference() {
        let good = [
            Delivery::Opened { after: 0 },
            Delivery::Snapshot {
                revision: 2,
                state: [(1, 10), (2, 20)].into(),
            },
            changes(3),
        ];
        assert!(check(&good, &reference()).is_empty());
        let bad = [
            Delivery::Opened { after: 0 },
            Delivery::Snapshot {
                revision: 2,
                state: [(1, 10)].into(),
            },
        ];
        assert_eq!(check(&bad, &reference()).len(), 1);
    }
}
