//! The federation's own account of what happened: every revision's changes to the run's
//! keys, read at the end of the run from a watch opened at revision 0 on each node. The
//! necessary checks and the watch rules compare the clients' and the watchers' records
//! with it; the nodes' accounts must be equal.

use std::collections::BTreeMap;

use isthmus_federation_api::model::Event;

use super::history::Key;

/// One change to a key: its new value, or `None` for a delete.
pub type Change = (Key, Option<u64>);

/// The changes of each revision after `from`, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reference {
    /// The history starts after this revision (0: it is complete).
    pub from: u64,
    /// The state at `from` (empty when `from` is 0).
    pub base: BTreeMap<Key, u64>,
    /// Each revision's changes.
    pub revisions: BTreeMap<u64, Vec<Change>>,
}

impl Reference {
    /// The last revision recorded.
    pub fn last(&self) -> u64 {
        self.revisions
            .last_key_value()
            .map_or(self.from, |(revision, _)| *revision)
    }

    /// Whether `revision` is within the recorded history.
    pub fn covers(&self, revision: u64) -> bool {
        revision > self.from && revision <= self.last()
    }

    /// The keys' values just after `revision`.
    pub fn state_at(&self, revision: u64) -> BTreeMap<Key, u64> {
        let mut state = self.base.clone();
        for (_, changes) in self.revisions.range(..=revision) {
            apply(&mut state, changes);
        }
        state
    }
}

/// Applies `changes` to `state` in order.
pub fn apply(state: &mut BTreeMap<Key, u64>, changes: &[Change]) {
    for (key, value) in changes {
        match value {
            Some(value) => state.insert(*key, *value),
            None => state.remove(key),
        };
    }
}

/// The name of key `key`'s cluster.
pub fn cluster_name(key: Key) -> String {
    format!("k{key}")
}

/// The name of value `value`'s gateway.
pub fn gateway_name(value: u64) -> String {
    format!("v{value}")
}

/// The run's key and value in a catalog event; `Err` with a description for anything
/// else (the run writes nothing else, so anything else is a finding).
pub fn change_of<P>(event: &Event<P>) -> Result<Change, String> {
    match event {
        Event::ClusterPut { cluster } => {
            let key = key_of(&cluster.name)?;
            let value = match cluster.gateways.as_slice() {
                [gateway] => value_of(&gateway.name)?,
                other => {
                    return Err(format!(
                        "cluster {} has {} gateways",
                        cluster.name,
                        other.len()
                    ));
                }
            };
            Ok((key, Some(value)))
        }
        Event::ClusterDeleted { name } => Ok((key_of(name)?, None)),
        _ => Err("an event that is not a cluster's".to_owned()),
    }
}

/// The key of a cluster name `k<key>`.
pub fn key_of(name: &str) -> Result<Key, String> {
    name.strip_prefix('k')
        .and_then(|k| k.parse().ok())
        .ok_or_else(|| format!("cluster {name:?} is not one of the run's keys"))
}

/// The value of a gateway name `v<value>`.
pub fn value_of(name: &str) -> Result<u64, String> {
    name.strip_prefix('v')
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("gateway {name:?} is not one of the run's values"))
}
