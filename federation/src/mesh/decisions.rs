//! Policy decisions over time: the gateways' counters only grow while each runs, so a
//! node samples them every [`SAMPLE_EVERY`] and keeps, for the last hour, what grew
//! between two samples (sparse: only the counters that moved). A window's count is the
//! sum of the growth within it. Pure: every call takes `unix`.
//!
//! A counter first seen is history, not growth, unless its gateway's run started after
//! this node began sampling (a restarted gateway counts from zero). A run that ends
//! (the gateway restarted) leaves its growth behind in the samples, as it should.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use isthmus_federation_api::mesh::{DECISION_HISTORY, GatewayReport, WindowedDecision};

/// How often a node samples the decision counters.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Rule, decision, source cluster, destination cluster, service.
type Row = (String, String, String, String, String);
/// The reporting gateway's cluster, name and run, and the row.
type Counter = (String, String, i64, Row);

/// What grew between samples, for the last hour.
#[derive(Debug, Clone, Default)]
pub struct DecisionHistory {
    began: Option<i64>,
    last: BTreeMap<Counter, u64>,
    samples: VecDeque<(i64, Vec<(Row, u64)>)>,
}

impl DecisionHistory {
    /// Takes one sample of the counters in `reports`.
    pub fn sample<'a>(&mut self, unix: i64, reports: impl Iterator<Item = &'a GatewayReport>) {
        let began = *self.began.get_or_insert(unix);
        let mut now = BTreeMap::new();
        for r in reports {
            for e in &r.inbound {
                for d in &e.decisions {
                    let row = (
                        d.rule.clone(),
                        d.decision.clone(),
                        e.source_cluster.clone(),
                        r.cluster.clone(),
                        format!("{}.{}", e.service, e.namespace),
                    );
                    let counter = (r.cluster.clone(), r.gateway.clone(), r.started_at, row);
                    now.insert(counter, d.count);
                }
            }
        }
        let mut grown: BTreeMap<Row, u64> = BTreeMap::new();
        for (counter, count) in &now {
            let before = match self.last.get(counter) {
                Some(before) => *before,
                // A run that started after sampling began counted from zero here.
                None if counter.2 >= began => 0,
                None => *count,
            };
            let growth = count.saturating_sub(before);
            if growth > 0 {
                *grown.entry(counter.3.clone()).or_default() += growth;
            }
        }
        self.last = now;
        if !grown.is_empty() {
            self.samples.push_back((unix, grown.into_iter().collect()));
        }
        let horizon = unix - secs(DECISION_HISTORY);
        while self.samples.front().is_some_and(|(at, _)| *at <= horizon) {
            self.samples.pop_front();
        }
    }

    /// The decisions within the `seconds` before `unix`, and where the count really
    /// starts (no earlier than the first sample).
    pub fn window(&self, unix: i64, seconds: u64) -> (i64, Vec<WindowedDecision>) {
        let start = unix.saturating_sub(i64::try_from(seconds).unwrap_or(i64::MAX));
        let from = self.began.map_or(unix, |began| start.max(began));
        let mut counts: BTreeMap<&Row, u64> = BTreeMap::new();
        for (_, grown) in self.samples.iter().filter(|(at, _)| *at > start) {
            for (row, n) in grown {
                *counts.entry(row).or_default() += n;
            }
        }
        let decisions = counts
            .into_iter()
            .map(|(row, count)| WindowedDecision {
                rule: row.0.clone(),
                decision: row.1.clone(),
                source_cluster: row.2.clone(),
                destination_cluster: row.3.clone(),
                service: row.4.clone(),
                count,
            })
            .collect();
        (from, decisions)
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use isthmus_federation_api::mesh::{AppTlsCounts, DecisionCount, EdgeReport};

    use super::*;

    fn report(started_at: i64, shadow: u64, allow: u64) -> GatewayReport {
        GatewayReport {
            cluster: "west".into(),
            gateway: "ew".into(),
            started_at,
            sequence: 1,
            catalog_revision: 1,
            catalog_age_seconds: 0.0,
            certificates: vec![],
            active_roots: vec![],
            retired_roots: vec![],
            peers: vec![],
            inbound: vec![EdgeReport {
                source_cluster: "east".into(),
                namespace: "demo".into(),
                service: "echo".into(),
                peer_identities: vec![],
                streams: 0,
                connections: 0,
                mutual_tls: 0,
                active: 0,
                bytes_received: 0,
                bytes_sent: 0,
                app_tls: AppTlsCounts::default(),
                plaintext_on_tls: 0,
                decisions: vec![
                    DecisionCount {
                        decision: "shadow_deny".into(),
                        rule: "audit/r".into(),
                        count: shadow,
                    },
                    DecisionCount {
                        decision: "allow".into(),
                        rule: "open/r".into(),
                        count: allow,
                    },
                ],
                last_connection_at: None,
            }],
            handshake_failures: vec![],
        }
    }

    fn count(window: &[WindowedDecision], decision: &str) -> u64 {
        window
            .iter()
            .filter(|d| d.decision == decision)
            .map(|d| d.count)
            .sum()
    }

    #[test]
    fn a_window_counts_what_grew_within_it() {
        let mut h = DecisionHistory::default();
        // Counts held when the node starts are history.
        h.sample(1_000, [report(500, 40, 100)].iter());
        assert!(h.window(1_000, 300).1.is_empty());
        h.sample(1_010, [report(500, 43, 100)].iter());
        h.sample(1_200, [report(500, 45, 110)].iter());
        let (from, last_5m) = h.window(1_200, 300);
        assert_eq!(from, 1_000, "the node has sampled since 1000 only");
        assert_eq!(count(&last_5m, "shadow_deny"), 5);
        assert_eq!(count(&last_5m, "allow"), 10);
        let (from, last_minute) = h.window(1_200, 60);
        assert_eq!(from, 1_140);
        assert_eq!(count(&last_minute, "shadow_deny"), 2);
        let row = &last_minute[0];
        assert_eq!(
            (
                row.source_cluster.as_str(),
                row.destination_cluster.as_str()
            ),
            ("east", "west")
        );
        assert_eq!(row.service, "echo.demo");
    }

    #[test]
    fn a_restarted_gateway_counts_from_zero_and_old_samples_age_out() {
        let mut h = DecisionHistory::default();
        h.sample(1_000, [report(500, 40, 0)].iter());
        h.sample(1_010, [report(500, 42, 0)].iter());
        // It restarts at 1015: its counters start over.
        h.sample(1_020, [report(1_015, 3, 0)].iter());
        assert_eq!(count(&h.window(1_020, 300).1, "shadow_deny"), 5);
        // An hour later the growth of 1010 and 1020 is gone.
        h.sample(1_020 + 3_600, [report(1_015, 3, 0)].iter());
        assert!(h.window(1_020 + 3_600, 3_600).1.is_empty());
    }
}
