//! What this gateway saw of each source cluster's traffic to each of its services since
//! it started: the part of the mesh's security status only the receiving side knows
//! (the verified caller, the policy's decision, the app leg). Folded from each inbound
//! stream's access-log line, sampled or not, and reported to the federation by a
//! member (`membership::report`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use isthmus_federation_api::mesh::{AppTlsCounts, DecisionCount, EdgeReport, MAX_EDGES, MAX_ITEMS};

use crate::access_log::entry::{AppTls, Entry, SecurityPolicy};

/// An edge as this gateway keys it: source cluster, namespace, service.
pub(crate) type EdgeKey = (String, String, String);

/// What is known of a carried connection once it ends, beyond its log line.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Carried {
    /// Its app bytes were not TLS though the export port is declared TLS.
    pub(crate) plaintext_on_tls: bool,
}

#[derive(Debug, Default)]
struct Tally {
    identities: BTreeSet<String>,
    streams: u64,
    connections: u64,
    mutual_tls: u64,
    active: u64,
    bytes_received: u64,
    bytes_sent: u64,
    app_tls: AppTlsCounts,
    plaintext_on_tls: u64,
    decisions: BTreeMap<(String, String), u64>,
    last_connection_at: Option<i64>,
}

impl Tally {
    /// A stream decided: its caller and the policy's decision.
    fn decided(&mut self, entry: &Entry) {
        self.streams += 1;
        if let Some(principal) = &entry.source_principal
            && self.identities.len() < MAX_ITEMS
        {
            self.identities.insert(principal.clone());
        }
        if let (Some(decision), Some(rule)) = (&entry.policy_decision, &entry.policy_rule) {
            let key = (decision.clone(), rule.clone());
            if self.decisions.len() < MAX_ITEMS || self.decisions.contains_key(&key) {
                *self.decisions.entry(key).or_default() += 1;
            }
        }
    }
}

/// The inbound edges' tallies.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    edges: Mutex<BTreeMap<EdgeKey, Tally>>,
}

impl Traffic {
    fn edges(&self) -> std::sync::MutexGuard<'_, BTreeMap<EdgeKey, Tally>> {
        // Each update is whole before the lock is released: a poisoned map is usable.
        self.edges.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The tally of `key`, unless the table is full (then the edge is not tallied: the
    /// key comes from peers' streams, and must not grow memory without bound).
    fn with(&self, key: &EdgeKey, f: impl FnOnce(&mut Tally)) {
        let mut edges = self.edges();
        if let Some(tally) = edges.get_mut(key) {
            return f(tally);
        }
        if edges.len() >= MAX_EDGES {
            return;
        }
        f(edges.entry(key.clone()).or_default());
    }

    /// A connection on `key` is open and carrying; `entry` is its access-log line so far.
    /// It counts from now (a long-lived connection shows on its edge while it is open).
    pub(crate) fn opened(&self, key: &EdgeKey, entry: &Entry) {
        self.with(key, |t| {
            t.active += 1;
            t.connections += 1;
            if entry.connection_security_policy == SecurityPolicy::MutualTls {
                t.mutual_tls += 1;
            }
            t.decided(entry);
            let at = entry
                .start_time
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            t.last_connection_at = t.last_connection_at.max(Some(at));
        });
    }

    /// A stream on `key` ended: `carried`, one [`Self::opened`] closed (its bytes and
    /// app leg are known now); else a stream refused.
    pub(crate) fn ended(&self, key: &EdgeKey, entry: &Entry, carried: Option<Carried>) {
        self.with(key, |t| {
            let Some(carried) = carried else {
                t.decided(entry);
                return;
            };
            if carried.plaintext_on_tls {
                t.plaintext_on_tls += 1;
            }
            t.active = t.active.saturating_sub(1);
            t.bytes_received += entry.bytes_received;
            t.bytes_sent += entry.bytes_sent;
            match entry.app_tls {
                AppTls::Passthrough => t.app_tls.passthrough += 1,
                AppTls::Terminated => t.app_tls.terminated += 1,
                AppTls::None => t.app_tls.none += 1,
            }
        });
    }

    /// Every edge's tally, as a report carries it.
    pub(crate) fn report(&self) -> Vec<EdgeReport> {
        self.edges()
            .iter()
            .map(|((source, namespace, service), t)| EdgeReport {
                source_cluster: source.clone(),
                namespace: namespace.clone(),
                service: service.clone(),
                peer_identities: t.identities.iter().cloned().collect(),
                streams: t.streams,
                connections: t.connections,
                mutual_tls: t.mutual_tls,
                active: t.active,
                bytes_received: t.bytes_received,
                bytes_sent: t.bytes_sent,
                app_tls: t.app_tls,
                plaintext_on_tls: t.plaintext_on_tls,
                decisions: t
                    .decisions
                    .iter()
                    .map(|((decision, rule), count)| DecisionCount {
                        decision: decision.clone(),
                        rule: rule.clone(),
                        count: *count,
                    })
                    .collect(),
                last_connection_at: t.last_connection_at,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access_log::entry::Direction;

    fn line(decision: &str, bytes: u64) -> Entry {
        let mut entry = Entry::new(Direction::Inbound, std::time::SystemTime::now());
        entry.source_principal = Some("spiffe://m/cluster/east/gateway/ew".into());
        entry.policy_decision = Some(decision.into());
        entry.policy_rule = Some("p/r".into());
        entry.connection_security_policy = SecurityPolicy::MutualTls;
        entry.bytes_received = bytes;
        entry.bytes_sent = 2 * bytes;
        entry.app_tls = AppTls::Passthrough;
        entry
    }

    #[test]
    fn carried_and_refused_streams_are_tallied_apart() {
        let traffic = Traffic::default();
        let key: EdgeKey = ("east".into(), "demo".into(), "echo".into());
        // Two connections open (one still is), one stream refused.
        traffic.opened(&key, &line("allow", 0));
        traffic.opened(&key, &line("allow", 0));
        traffic.ended(&key, &line("allow", 10), Some(Carried::default()));
        traffic.ended(&key, &line("deny", 0), None);
        let report = traffic.report();
        assert_eq!(report.len(), 1);
        let e = &report[0];
        assert_eq!(
            (e.streams, e.connections, e.mutual_tls, e.active),
            (3, 2, 2, 1)
        );
        assert_eq!((e.bytes_received, e.bytes_sent), (10, 20));
        assert_eq!(e.app_tls.passthrough, 1);
        assert_eq!(e.plaintext_on_tls, 0);
        traffic.ended(
            &key,
            &line("allow", 0),
            Some(Carried {
                plaintext_on_tls: true,
            }),
        );
        assert_eq!(traffic.report()[0].plaintext_on_tls, 1);
        assert_eq!(e.decisions.len(), 2);
        assert_eq!(e.peer_identities.len(), 1);
        assert!(e.last_connection_at.is_some());
    }

    #[test]
    fn the_table_stops_growing_at_its_bound() {
        let traffic = Traffic::default();
        for i in 0..MAX_EDGES + 10 {
            let key: EdgeKey = ("east".into(), "demo".into(), format!("s{i}"));
            traffic.ended(&key, &line("deny", 0), None);
        }
        assert_eq!(traffic.report().len(), MAX_EDGES);
    }
}
