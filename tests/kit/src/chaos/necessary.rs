//! Fast checks that every linearizable history passes, in O(n log n), for histories too
//! long or too concurrent for the full search: no acknowledged write lost or put at
//! another revision than answered, no read of a value nobody wrote, no stale read (older
//! than a write acknowledged before the read began), no read going back in time (older
//! than a read that ended before it began).

use std::collections::BTreeMap;
use std::time::Duration;

use super::history::{Call, Key, Operation, Outcome};
use super::reference::Reference;

/// Everything the checks found; empty lists mean none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// Acknowledged writes missing from the reference at the revision answered.
    pub lost_writes: Vec<String>,
    /// Reads of a value the reference does not hold at the revision read.
    pub invented_reads: Vec<String>,
    /// Reads older than a write acknowledged before they began.
    pub stale_reads: Vec<String>,
    /// Reads older than a read that ended before they began.
    pub reads_back_in_time: Vec<String>,
}

impl Findings {
    /// How many violations in all.
    pub fn count(&self) -> usize {
        self.lost_writes.len()
            + self.invented_reads.len()
            + self.stale_reads.len()
            + self.reads_back_in_time.len()
    }
}

/// Where a call went and when, for a finding.
fn where_(op: &Operation) -> String {
    format!(
        "node {} over {:?}, client {}, at {:.3}s",
        op.node + 1,
        op.face,
        op.client,
        op.invoked.as_secs_f64()
    )
}

/// Whether the reference's changes at `revision` include `key` becoming `value`.
fn holds(reference: &Reference, revision: u64, key: Key, value: Option<u64>) -> bool {
    reference
        .revisions
        .get(&revision)
        .is_some_and(|changes| changes.contains(&(key, value)))
}

/// Whether the reference deletes `key` at some revision after `after`; also true when
/// the reference does not reach back to `after` and so cannot tell.
fn deleted_after(reference: &Reference, key: Key, after: u64) -> bool {
    after < reference.from
        || reference
            .revisions
            .range(after + 1..)
            .any(|(_, changes)| changes.contains(&(key, None)))
}

/// Runs every check of `history` against `reference`.
pub fn check(history: &[Operation], reference: &Reference) -> Findings {
    let mut findings = Findings::default();
    for op in history {
        match (op.call, op.outcome) {
            (Call::Put { value }, Outcome::Written { revision })
                if reference.covers(revision)
                    && !holds(reference, revision, op.key, Some(value)) =>
            {
                findings.lost_writes.push(format!(
                    "put k{}={value} acknowledged at revision {revision}, not there",
                    op.key
                ));
            }
            (Call::Delete, Outcome::Deleted { revision })
                if reference.covers(revision) && !holds(reference, revision, op.key, None) =>
            {
                findings.lost_writes.push(format!(
                    "delete k{} acknowledged at revision {revision}, not there",
                    op.key
                ));
            }
            (Call::Get, Outcome::Read(Some(seen)))
                if reference.covers(seen.revision)
                    && !holds(reference, seen.revision, op.key, Some(seen.value)) =>
            {
                findings.invented_reads.push(format!(
                    "read k{}={} at revision {}, which the reference does not hold",
                    op.key, seen.value, seen.revision
                ));
            }
            _ => {}
        }
    }
    let mut by_key: BTreeMap<Key, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        by_key.entry(op.key).or_default().push(op);
    }
    for (key, ops) in by_key {
        stale(key, &ops, reference, &mut findings);
        back_in_time(key, &ops, reference, &mut findings);
    }
    findings
}

/// Reads against the newest write acknowledged before each read began.
fn stale(key: Key, ops: &[&Operation], reference: &Reference, findings: &mut Findings) {
    // Acknowledged writes by answer time, each with the newest revision so far.
    let mut writes: Vec<(Duration, u64, bool)> = ops
        .iter()
        .filter_map(|op| {
            let revision = op.acknowledged_write()?;
            Some((op.completed?, revision, matches!(op.call, Call::Delete)))
        })
        .collect();
    writes.sort();
    let mut newest: Vec<(Duration, u64, bool)> = Vec::with_capacity(writes.len());
    for (at, revision, delete) in writes {
        let best = match newest.last() {
            Some(&(_, r, d)) if r > revision => (at, r, d),
            _ => (at, revision, delete),
        };
        newest.push(best);
    }
    for op in ops {
        let Outcome::Read(seen) = op.outcome else {
            continue;
        };
        let before = newest.partition_point(|(at, _, _)| *at < op.invoked);
        let Some(&(_, required, was_delete)) = before.checked_sub(1).map(|i| &newest[i]) else {
            continue;
        };
        match seen {
            Some(seen) if seen.revision < required => findings.stale_reads.push(format!(
                "read k{key} at revision {} after a write at revision {required} was acknowledged ({})",
                seen.revision,
                where_(op)
            )),
            None if !was_delete && !deleted_after(reference, key, required) => {
                findings.stale_reads.push(format!(
                    "read k{key} absent after a put at revision {required} was acknowledged, and nothing deleted it since ({})",
                    where_(op)
                ));
            }
            _ => {}
        }
    }
}

/// Reads against the newest read that ended before each began.
fn back_in_time(key: Key, ops: &[&Operation], reference: &Reference, findings: &mut Findings) {
    type Read<'a> = (Duration, Duration, Option<u64>, &'a Operation);
    let mut reads: Vec<Read> = ops
        .iter()
        .filter_map(|op| match op.outcome {
            Outcome::Read(seen) => Some((op.invoked, op.completed?, seen.map(|s| s.revision), *op)),
            _ => None,
        })
        .collect();
    let mut ended = reads.clone();
    ended.sort_by_key(|(_, completed, _, _)| *completed);
    reads.sort_by_key(|(invoked, completed, _, _)| (*invoked, *completed));
    let mut newest: Option<u64> = None;
    let mut next = 0;
    for (invoked, _, revision, op) in reads {
        while next < ended.len() && ended[next].1 < invoked {
            if let Some(r) = ended[next].2 {
                newest = newest.max(Some(r));
            }
            next += 1;
        }
        let Some(earlier) = newest else {
            continue;
        };
        match revision {
            Some(r) if r < earlier => findings.reads_back_in_time.push(format!(
                "read k{key} at revision {r} after a read at revision {earlier} had ended ({})",
                where_(op)
            )),
            None if !deleted_after(reference, key, earlier) => {
                findings.reads_back_in_time.push(format!(
                    "read k{key} absent after a read at revision {earlier} had ended, and nothing deleted it since ({})",
                    where_(op)
                ));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::chaos::history::{Face, Seen};

    fn op(call: Call, outcome: Outcome, from: u64, to: u64) -> Operation {
        Operation {
            client: 0,
            node: 0,
            face: Face::Rest,
            key: 1,
            call,
            outcome,
            invoked: Duration::from_millis(from),
            completed: Some(Duration::from_millis(to)),
        }
    }

    fn read(value: u64, revision: u64, from: u64, to: u64) -> Operation {
        op(
            Call::Get,
            Outcome::Read(Some(Seen { value, revision })),
            from,
            to,
        )
    }

    fn reference() -> Reference {
        Reference {
            from: 0,
            base: BTreeMap::new(),
            revisions: [(1, vec![(1, Some(10))]), (2, vec![(1, Some(20))])].into(),
        }
    }

    fn put(value: u64, revision: u64, from: u64, to: u64) -> Operation {
        op(Call::Put { value }, Outcome::Written { revision }, from, to)
    }

    #[test]
    fn a_consistent_history_has_no_findings() {
        let h = [
            put(10, 1, 0, 5),
            read(10, 1, 6, 7),
            put(20, 2, 8, 9),
            read(20, 2, 10, 11),
        ];
        assert_eq!(check(&h, &reference()), Findings::default());
    }

    #[test]
    fn each_kind_of_violation_is_found() {
        let f = check(&[put(30, 2, 0, 1)], &reference());
        assert_eq!(f.lost_writes.len(), 1, "{f:?}");
        let f = check(&[read(99, 2, 0, 1)], &reference());
        assert_eq!(f.invented_reads.len(), 1, "{f:?}");
        let f = check(&[put(20, 2, 0, 5), read(10, 1, 6, 7)], &reference());
        assert_eq!(f.stale_reads.len(), 1, "{f:?}");
        let f = check(&[read(20, 2, 0, 5), read(10, 1, 6, 7)], &reference());
        assert_eq!(f.reads_back_in_time.len(), 1, "{f:?}");
        let absent = op(Call::Get, Outcome::Read(None), 6, 7);
        let f = check(&[put(20, 2, 0, 5), absent], &reference());
        assert_eq!(f.stale_reads.len(), 1, "{f:?}");
    }

    #[test]
    fn a_reference_that_starts_late_judges_nothing_before_it() {
        // The delete at revision 3 is before the reference's start: "absent" is fine.
        let late = Reference {
            from: 3,
            base: BTreeMap::new(),
            revisions: [(4, vec![(2, Some(1))])].into(),
        };
        let absent = op(Call::Get, Outcome::Read(None), 6, 7);
        assert_eq!(check(&[put(20, 2, 0, 5), absent], &late).count(), 0);
    }

    #[test]
    fn overlapping_calls_are_not_findings() {
        // The read began before the write was acknowledged: either value is fine.
        let h = [put(20, 2, 0, 10), read(10, 1, 5, 15)];
        assert_eq!(check(&h, &reference()).count(), 0);
    }
}
