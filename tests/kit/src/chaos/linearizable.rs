//! Linearizability of a recorded history, key by key (a register per key is independent
//! of the others, so the history is linearizable exactly when each key's is). The search
//! is Wing and Gong's, with Lowe's memo of (operations linearized, state) as Porcupine
//! does it: walk the calls in time order, linearize one whose effect fits the model,
//! back up when an answer comes before its call could be placed.
//!
//! Writes with no answer may take effect at any point after their call, or never (their
//! window ends at infinity, and one placed last is as good as never). Failed reads are
//! left out: they observed nothing. A partition leaves hundreds of unanswered writes,
//! and each would double the orders to try; but the unanswered puts whose value nobody
//! read are interchangeable (each only makes the key present, with no end to its
//! window), as are the unanswered deletes, so the search places each such class in call
//! order only: whichever of them some linearization uses, the earliest-called ones do
//! as well.

use std::collections::{BTreeMap, HashSet};

use super::history::{Call, Key, Operation, Outcome};
use super::reference::Reference;

/// The register's state: the value under the key, if any.
type State = Option<u64>;

/// What the search found for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyVerdict {
    /// Some order of the key's operations respects real time and the register.
    Linearizable,
    /// None does.
    Violation,
    /// The search gave up after its step budget (neither proven nor refuted).
    Undecided,
}

/// The verdict of a whole history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Keys checked.
    pub keys: usize,
    /// Operations checked (failed reads left out).
    pub operations: usize,
    /// Keys with no linearization.
    pub violations: Vec<Key>,
    /// Keys the search gave up on.
    pub undecided: Vec<Key>,
}

/// Whether `outcome` of `call` can happen in `state`, and the state after it.
fn step(state: State, call: Call, outcome: Outcome) -> Option<State> {
    match (call, outcome) {
        (Call::Put { value }, Outcome::Written { .. } | Outcome::Unknown) => Some(Some(value)),
        (Call::Delete, Outcome::Deleted { .. }) => state.map(|_| None),
        (Call::Delete, Outcome::NotFound) => state.is_none().then_some(None),
        (Call::Delete, Outcome::Unknown) => Some(None),
        (Call::Get, Outcome::Read(seen)) => (state == seen.map(|s| s.value)).then_some(state),
        _ => None,
    }
}

/// Checks every key of `history`, each with at most `budget` search steps.
///
/// With a complete `reference` (the federation's own history from revision 0), the
/// unanswered writes it proves never took effect are left out first: a put whose value
/// it never holds, and the unanswered deletes of a key it deletes no more often than
/// clients were told it did. Without that, an unanswered delete could explain a read
/// of "absent" that no delete in the federation's history explains.
pub fn check(history: &[Operation], reference: Option<&Reference>, budget: u64) -> Verdict {
    let reference = reference.filter(|r| r.from == 0);
    let mut by_key: BTreeMap<Key, Vec<&Operation>> = BTreeMap::new();
    for op in history {
        if op.outcome != Outcome::ReadFailed {
            by_key.entry(op.key).or_default().push(op);
        }
    }
    if let Some(reference) = reference {
        for (key, ops) in by_key.iter_mut() {
            let held: HashSet<u64> = reference
                .revisions
                .values()
                .flatten()
                .filter_map(|(k, v)| if k == key { *v } else { None })
                .collect();
            let deletes = reference
                .revisions
                .values()
                .flatten()
                .filter(|(k, v)| k == key && v.is_none())
                .count();
            let acknowledged = ops
                .iter()
                .filter(|op| matches!(op.outcome, Outcome::Deleted { .. }))
                .count();
            ops.retain(|op| match (op.call, op.outcome) {
                (Call::Put { value }, Outcome::Unknown) => held.contains(&value),
                (Call::Delete, Outcome::Unknown) => deletes > acknowledged,
                _ => true,
            });
        }
    }
    let mut verdict = Verdict {
        keys: by_key.len(),
        ..Verdict::default()
    };
    for (key, ops) in by_key {
        verdict.operations += ops.len();
        let found = check_key(&ops, budget);
        match found {
            KeyVerdict::Linearizable => {}
            KeyVerdict::Violation => verdict.violations.push(key),
            KeyVerdict::Undecided => verdict.undecided.push(key),
        }
    }
    verdict
}

const NIL: usize = usize::MAX;

/// One call or answer in the time-ordered list the search walks.
struct Entry {
    /// The operation's index in the key's list.
    op: usize,
    /// For a call, its answer's entry; `NIL` for an answer.
    answer: usize,
    prev: usize,
    next: usize,
}

struct List(Vec<Entry>);

impl List {
    /// Entry 0 is the head; then every call and answer in time order, a call before an
    /// answer at the same instant (the two then overlap, the weaker claim).
    fn new(ops: &[&Operation]) -> Self {
        let mut events: Vec<(std::time::Duration, bool, usize)> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            events.push((op.invoked, false, i));
            events.push((op.end(), true, i));
        }
        events.sort();
        let mut entries = vec![Entry {
            op: NIL,
            answer: NIL,
            prev: NIL,
            next: NIL,
        }];
        let mut answer_at = vec![NIL; ops.len()];
        for (_, is_answer, op) in &events {
            let at = entries.len();
            entries.push(Entry {
                op: *op,
                answer: NIL,
                prev: at - 1,
                next: NIL,
            });
            entries[at - 1].next = at;
            if *is_answer {
                answer_at[*op] = at;
            }
        }
        for (at, entry) in entries.iter_mut().enumerate().skip(1) {
            if answer_at[entry.op] != at {
                entry.answer = answer_at[entry.op];
            }
        }
        Self(entries)
    }

    fn unlink(&mut self, at: usize) {
        let (prev, next) = (self.0[at].prev, self.0[at].next);
        self.0[prev].next = next;
        if next != NIL {
            self.0[next].prev = prev;
        }
    }

    fn relink(&mut self, at: usize) {
        let (prev, next) = (self.0[at].prev, self.0[at].next);
        self.0[prev].next = at;
        if next != NIL {
            self.0[next].prev = at;
        }
    }

    /// Takes a call and its answer out of the list.
    fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(self.0[call].answer);
    }

    /// Puts them back, in the reverse order.
    fn unlift(&mut self, call: usize) {
        self.relink(self.0[call].answer);
        self.relink(call);
    }
}

/// A value no client writes: the state after an interchangeable put.
const UNSEEN: u64 = u64::MAX;

/// For each operation, its interchangeable class (0: unanswered puts nobody read, 1:
/// unanswered deletes) and its rank in call order within it.
fn classes(ops: &[&Operation]) -> Vec<Option<(usize, usize)>> {
    let read: HashSet<u64> = ops
        .iter()
        .filter_map(|op| match op.outcome {
            Outcome::Read(Some(seen)) => Some(seen.value),
            _ => None,
        })
        .collect();
    let mut members: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
    for (i, op) in ops.iter().enumerate() {
        if op.outcome != Outcome::Unknown {
            continue;
        }
        match op.call {
            Call::Put { value } if !read.contains(&value) => members[0].push(i),
            Call::Delete => members[1].push(i),
            _ => {}
        }
    }
    let mut rank = vec![None; ops.len()];
    for (class, list) in members.iter_mut().enumerate() {
        list.sort_by_key(|&i| (ops[i].invoked, i));
        for (r, &i) in list.iter().enumerate() {
            rank[i] = Some((class, r));
        }
    }
    rank
}

fn check_key(ops: &[&Operation], budget: u64) -> KeyVerdict {
    let rank = classes(ops);
    let mut used = [0usize; 2];
    let mut list = List::new(ops);
    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut seen: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut placed: Vec<(usize, State)> = Vec::new();
    let mut state: State = None;
    let mut at = list.0[0].next;
    let mut steps = 0u64;
    while list.0[0].next != NIL {
        steps += 1;
        if steps > budget {
            return KeyVerdict::Undecided;
        }
        let entry = &list.0[at];
        if entry.answer != NIL {
            let op = ops[entry.op];
            let next = entry.next;
            let class = rank[entry.op];
            if class.is_some_and(|(c, r)| r != used[c]) {
                at = next;
                continue;
            }
            let call = match (class, op.call) {
                (Some((0, _)), Call::Put { .. }) => Call::Put { value: UNSEEN },
                (_, call) => call,
            };
            if let Some(after) = step(state, call, op.outcome) {
                let mut candidate = linearized.clone();
                candidate[entry.op / 64] |= 1 << (entry.op % 64);
                if seen.insert((candidate.clone(), after)) {
                    if let Some((c, _)) = class {
                        used[c] += 1;
                    }
                    placed.push((at, state));
                    state = after;
                    linearized = candidate;
                    list.lift(at);
                    at = list.0[0].next;
                    continue;
                }
            }
            at = next;
        } else {
            // An answer came before its call could be placed: undo the last placement.
            let Some((call, before)) = placed.pop() else {
                return KeyVerdict::Violation;
            };
            state = before;
            let op = list.0[call].op;
            if let Some((c, _)) = rank[op] {
                used[c] -= 1;
            }
            linearized[op / 64] &= !(1 << (op % 64));
            list.unlift(call);
            at = list.0[call].next;
        }
    }
    KeyVerdict::Linearizable
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use super::*;
    use crate::chaos::history::{Face, Seen};

    fn op(call: Call, outcome: Outcome, from: u64, to: Option<u64>) -> Operation {
        Operation {
            client: 0,
            node: 0,
            face: Face::Grpc,
            key: 1,
            call,
            outcome,
            invoked: Duration::from_millis(from),
            completed: to.map(Duration::from_millis),
        }
    }

    fn put(value: u64, from: u64, to: u64) -> Operation {
        op(
            Call::Put { value },
            Outcome::Written { revision: value },
            from,
            Some(to),
        )
    }

    fn get(value: Option<u64>, from: u64, to: u64) -> Operation {
        let seen = value.map(|value| Seen {
            value,
            revision: value,
        });
        op(Call::Get, Outcome::Read(seen), from, Some(to))
    }

    fn verdict(history: &[Operation]) -> KeyVerdict {
        let v = check(history, None, 1_000_000);
        if !v.undecided.is_empty() {
            KeyVerdict::Undecided
        } else if v.violations.is_empty() {
            KeyVerdict::Linearizable
        } else {
            KeyVerdict::Violation
        }
    }

    #[test]
    fn a_read_after_a_write_must_see_it() {
        assert_eq!(
            verdict(&[put(1, 0, 10), get(Some(1), 20, 30)]),
            KeyVerdict::Linearizable
        );
        assert_eq!(
            verdict(&[put(1, 0, 10), get(None, 20, 30)]),
            KeyVerdict::Violation
        );
    }

    #[test]
    fn overlapping_calls_may_take_either_order() {
        // The read overlaps both writes: it may see 1 (2 not yet) or 2.
        let base = [put(1, 0, 10), put(2, 5, 40)];
        for seen in [1, 2] {
            let mut h = base.to_vec();
            h.push(get(Some(seen), 20, 30));
            assert_eq!(verdict(&h), KeyVerdict::Linearizable, "saw {seen}");
        }
    }

    #[test]
    fn reads_do_not_go_back_in_time() {
        // Two writes overlap two reads in sequence: 2 then 1 is impossible once 2 was
        // read after 1 was written... unless 1 came last; then a later read of 2 is stale.
        let h = [
            put(1, 0, 100),
            put(2, 0, 100),
            get(Some(2), 10, 20),
            get(Some(1), 30, 40),
            get(Some(2), 50, 60),
        ];
        assert_eq!(verdict(&h), KeyVerdict::Violation);
        assert_eq!(verdict(&h[..4]), KeyVerdict::Linearizable);
    }

    #[test]
    fn a_write_without_an_answer_may_land_late_or_never() {
        let lost = op(Call::Put { value: 7 }, Outcome::Unknown, 0, None);
        assert_eq!(
            verdict(&[lost, get(None, 10, 20), get(Some(7), 30, 40)]),
            KeyVerdict::Linearizable
        );
        assert_eq!(
            verdict(&[lost, get(None, 10, 20)]),
            KeyVerdict::Linearizable
        );
        // But once seen it cannot be unseen.
        assert_eq!(
            verdict(&[lost, get(Some(7), 10, 20), get(None, 30, 40)]),
            KeyVerdict::Violation
        );
    }

    #[test]
    fn deletes_and_not_found() {
        let del = op(Call::Delete, Outcome::Deleted { revision: 9 }, 20, Some(30));
        let missing = op(Call::Delete, Outcome::NotFound, 0, Some(5));
        assert_eq!(
            verdict(&[missing, put(1, 10, 15), del, get(None, 40, 50)]),
            KeyVerdict::Linearizable
        );
        // A delete cannot succeed on a key nothing wrote.
        assert_eq!(verdict(&[del]), KeyVerdict::Violation);
        // "Not found" after an acknowledged write is a lost write.
        let late_missing = op(Call::Delete, Outcome::NotFound, 20, Some(25));
        assert_eq!(
            verdict(&[put(1, 0, 10), late_missing]),
            KeyVerdict::Violation
        );
    }

    #[test]
    fn the_budget_bounds_the_search() {
        // Many overlapping unknown writes and reads: more orders than a tiny budget covers.
        let mut h: Vec<Operation> = (0..12)
            .map(|v| op(Call::Put { value: v }, Outcome::Unknown, 0, None))
            .collect();
        h.push(get(Some(99), 1, 2));
        assert_eq!(
            check(&h, None, 5).undecided,
            vec![1],
            "gave up rather than answer"
        );
        assert_eq!(verdict(&h), KeyVerdict::Violation);
    }

    #[test]
    fn unread_writes_without_an_answer_do_not_blow_up_the_search() {
        // Forty unanswered writes nobody read, over an ordinary sequence of calls.
        let mut h: Vec<Operation> = (100..140)
            .map(|v| op(Call::Put { value: v }, Outcome::Unknown, 0, None))
            .collect();
        h.extend([put(1, 10, 20), get(Some(1), 30, 40)]);
        let v = check(&h, None, 10_000);
        assert!(v.undecided.is_empty() && v.violations.is_empty(), "{v:?}");
        // An unanswered write that was read still takes part.
        h.push(get(Some(120), 50, 60));
        h.push(get(Some(1), 70, 80));
        assert_eq!(check(&h, None, 1_000_000).violations, vec![1]);
    }

    #[test]
    fn the_federations_history_rules_out_writes_that_never_happened() {
        // An unanswered delete could explain the read of "absent"...
        let h = [
            put(1, 0, 10),
            op(Call::Delete, Outcome::Unknown, 5, None),
            get(None, 20, 30),
        ];
        assert!(check(&h, None, 1000).violations.is_empty());
        // ...unless the federation's history holds no delete of the key.
        let reference = Reference {
            from: 0,
            base: BTreeMap::new(),
            revisions: [(1, vec![(1, Some(1))])].into(),
        };
        assert_eq!(check(&h, Some(&reference), 1000).violations, vec![1]);
        // With the delete in it, the read is fine.
        let mut deleted = reference.clone();
        deleted.revisions.insert(2, vec![(1, None)]);
        assert!(check(&h, Some(&deleted), 1000).violations.is_empty());
    }

    #[test]
    fn keys_are_checked_apart() {
        let mut other = get(Some(1), 20, 30);
        other.key = 2;
        let v = check(&[put(1, 0, 10), other], None, 1000);
        assert_eq!(v.keys, 2);
        assert_eq!(v.violations, vec![2]);
    }
}
