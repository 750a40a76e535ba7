//! The picture one node assembles from the gateways' reports, and the changes of
//! status between two moments. Pure: every function takes `now` (monotonic, for ages)
//! and `unix` (wall seconds, to compare with the gateways' timestamps).
//!
//! A gateway is `up` while its reports keep coming, `stale` after [`STALE_AFTER`]
//! without one and `lost` after [`LOST_AFTER`]. Edges come from the receiving side
//! (the gateway that verified the caller and decided); the cluster hop between two
//! clusters (no service) carries the handshake failures either end saw.

use std::collections::{BTreeMap, BTreeSet};
#[cfg(test)]
use std::time::Duration;
use std::time::Instant;

use isthmus_federation_api::mesh::{
    AppTlsCounts, DecisionCount, DecisionWindow, EdgeSecurity, FailureCount, GatewayReport,
    GatewayState, GatewayStatus, HandshakeSide, MeshEdge, MeshEvent, MeshPicture,
};
pub use isthmus_federation_api::mesh::{LOST_AFTER, STALE_AFTER};

use super::decisions::DecisionHistory;
/// Handshake failures this recent, with no connection since, make an edge `failing`.
pub const FAILING_WINDOW: i64 = 300;

/// Why a report was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// A report of the same run with a sequence not above the one held.
    #[error("an older report (sequence {got}, {held} held) of this gateway's run")]
    Old {
        /// Its sequence.
        got: u64,
        /// The sequence held.
        held: u64,
    },
    /// A report of an earlier run than the one held.
    #[error("a report of an earlier run (started {got}, {held} held)")]
    EarlierRun {
        /// Its start.
        got: i64,
        /// The start held.
        held: i64,
    },
}

#[derive(Debug, Clone)]
struct Held {
    report: GatewayReport,
    received: Instant,
}

/// The reports one node holds, and the statuses it last told watchers about.
#[derive(Debug, Clone, Default)]
pub struct Board {
    node: String,
    reports: BTreeMap<(String, String), Held>,
    revision: u64,
    told_gateways: BTreeMap<(String, String), GatewayState>,
    told_edges: BTreeMap<String, EdgeSecurity>,
    decisions: DecisionHistory,
}

impl Board {
    /// An empty board of node `node`.
    pub fn new(node: &str) -> Self {
        Self {
            node: node.to_owned(),
            ..Self::default()
        }
    }

    /// Takes a report (the caller has checked who sent it), and returns the changes of
    /// status it makes.
    pub fn record(
        &mut self,
        report: GatewayReport,
        now: Instant,
        unix: i64,
    ) -> Result<Vec<MeshEvent>, Refused> {
        let key = (report.cluster.clone(), report.gateway.clone());
        if let Some(held) = self.reports.get(&key) {
            let h = &held.report;
            if report.started_at < h.started_at {
                return Err(Refused::EarlierRun {
                    got: report.started_at,
                    held: h.started_at,
                });
            }
            if report.started_at == h.started_at && report.sequence <= h.sequence {
                return Err(Refused::Old {
                    got: report.sequence,
                    held: h.sequence,
                });
            }
        }
        self.reports.insert(
            key,
            Held {
                report,
                received: now,
            },
        );
        self.revision += 1;
        Ok(self.changes(now, unix))
    }

    /// The changes of status that time alone makes (gateways going stale and lost,
    /// failures ageing out).
    pub fn tick(&mut self, now: Instant, unix: i64) -> Vec<MeshEvent> {
        self.changes(now, unix)
    }

    fn changes(&mut self, now: Instant, unix: i64) -> Vec<MeshEvent> {
        let picture = self.picture(now, unix);
        let mut events = Vec::new();
        for g in &picture.gateways {
            let key = (g.cluster.clone(), g.gateway.clone());
            let previous = self.told_gateways.insert(key, g.state);
            if previous != Some(g.state) {
                events.push((previous.map(Change::Gateway), Item::Gateway(g.clone())));
            }
        }
        for e in &picture.edges {
            let previous = self.told_edges.insert(e.key(), e.security);
            if previous != Some(e.security) {
                events.push((previous.map(Change::Edge), Item::Edge(e.clone())));
            }
        }
        if events.is_empty() {
            return Vec::new();
        }
        self.revision += 1;
        let revision = self.revision;
        events
            .into_iter()
            .map(|(previous, item)| match item {
                Item::Gateway(gateway) => MeshEvent::Gateway {
                    revision,
                    previous: match previous {
                        Some(Change::Gateway(s)) => Some(s),
                        _ => None,
                    },
                    gateway,
                },
                Item::Edge(mut edge) => {
                    edge.age_seconds = 0.0;
                    MeshEvent::Edge {
                        revision,
                        previous: match previous {
                            Some(Change::Edge(s)) => Some(s),
                            _ => None,
                        },
                        edge,
                    }
                }
            })
            .collect()
    }

    /// Samples the policy decision counters (every [`super::decisions::SAMPLE_EVERY`]).
    pub fn sample_decisions(&mut self, unix: i64) {
        self.decisions
            .sample(unix, self.reports.values().map(|held| &held.report));
    }

    /// The policy decisions within the `seconds` before `unix`.
    pub fn decision_window(&self, unix: i64, seconds: u64) -> DecisionWindow {
        let (from, decisions) = self.decisions.window(unix, seconds);
        DecisionWindow {
            node: self.node.clone(),
            window_seconds: seconds,
            from,
            to: unix,
            decisions,
        }
    }

    /// The whole picture now.
    pub fn picture(&self, now: Instant, unix: i64) -> MeshPicture {
        let gateways = self
            .reports
            .values()
            .map(|held| status_of(held, now))
            .collect();
        MeshPicture {
            node: self.node.clone(),
            generated_at: unix,
            revision: self.revision,
            gateways,
            edges: self.edges(now, unix),
        }
    }

    fn edges(&self, now: Instant, unix: i64) -> Vec<MeshEdge> {
        let mut edges: BTreeMap<EdgeKey, MeshEdge> = BTreeMap::new();
        let mut decisions: BTreeMap<EdgeKey, BTreeMap<(String, String), u64>> = BTreeMap::new();
        let mut identities: BTreeMap<EdgeKey, BTreeSet<String>> = BTreeMap::new();
        let mut failures: BTreeMap<(String, String), Failures> = BTreeMap::new();
        for held in self.reports.values() {
            let r = &held.report;
            let age = now.saturating_duration_since(held.received).as_secs_f64();
            let by = format!("{}/{}", r.cluster, r.gateway);
            for e in &r.inbound {
                let key = (
                    e.source_cluster.clone(),
                    r.cluster.clone(),
                    Some(format!("{}.{}", e.service, e.namespace)),
                );
                let edge = edges
                    .entry(key.clone())
                    .or_insert_with(|| empty_edge(&key, age));
                edge.streams += e.streams;
                edge.connections += e.connections;
                edge.mutual_tls += e.mutual_tls;
                edge.active += e.active;
                edge.bytes_received += e.bytes_received;
                edge.bytes_sent += e.bytes_sent;
                edge.app_tls = add_app_tls(edge.app_tls, e.app_tls);
                edge.plaintext_on_tls += e.plaintext_on_tls;
                edge.last_connection_at = edge.last_connection_at.max(e.last_connection_at);
                edge.age_seconds = edge.age_seconds.min(age);
                if !edge.reported_by.contains(&by) {
                    edge.reported_by.push(by.clone());
                }
                let counts = decisions.entry(key.clone()).or_default();
                for d in &e.decisions {
                    *counts
                        .entry((d.decision.clone(), d.rule.clone()))
                        .or_default() += d.count;
                }
                identities
                    .entry(key)
                    .or_default()
                    .extend(e.peer_identities.iter().cloned());
            }
            for f in &r.handshake_failures {
                let pair = match f.side {
                    HandshakeSide::Accept => (f.peer_cluster.clone(), r.cluster.clone()),
                    HandshakeSide::Dial => (r.cluster.clone(), f.peer_cluster.clone()),
                };
                let key = (pair.0.clone(), pair.1.clone(), None);
                let edge = edges
                    .entry(key)
                    .or_insert_with(|| empty_edge(&(pair.0.clone(), pair.1.clone(), None), age));
                edge.age_seconds = edge.age_seconds.min(age);
                if !edge.reported_by.contains(&by) {
                    edge.reported_by.push(by.clone());
                }
                let slot = failures
                    .entry(pair)
                    .or_default()
                    .entry((f.side, f.reason.clone()))
                    .or_default();
                slot.0 += f.count;
                slot.1 = slot.1.max(f.last_at);
            }
        }
        // The latest connection carried between each pair of clusters, on any service.
        let mut carried: BTreeMap<(String, String), i64> = BTreeMap::new();
        for ((source, destination, _), edge) in &edges {
            if let Some(at) = edge.last_connection_at {
                let latest = carried
                    .entry((source.clone(), destination.clone()))
                    .or_insert(at);
                *latest = (*latest).max(at);
            }
        }
        let mut out = Vec::with_capacity(edges.len());
        for (key, mut edge) in edges {
            let pair = (key.0.clone(), key.1.clone());
            let pair_failures = failures.get(&pair);
            let last_failure = pair_failures
                .and_then(|f| f.values().map(|(_, at)| *at).max())
                .filter(|at| unix - at <= FAILING_WINDOW);
            if key.2.is_none() {
                edge.handshake_failures = pair_failures
                    .into_iter()
                    .flatten()
                    .map(|((side, reason), (count, last_at))| FailureCount {
                        side: *side,
                        reason: reason.clone(),
                        count: *count,
                        last_at: *last_at,
                    })
                    .collect();
                edge.last_connection_at = carried.get(&pair).copied();
            }
            edge.decisions = decisions
                .remove(&key)
                .into_iter()
                .flatten()
                .map(|((decision, rule), count)| DecisionCount {
                    decision,
                    rule,
                    count,
                })
                .collect();
            edge.peer_identities = identities.remove(&key).into_iter().flatten().collect();
            edge.security = security_of(&edge, last_failure);
            out.push(edge);
        }
        out
    }
}

/// Source cluster, destination cluster, service (none for the cluster hop).
type EdgeKey = (String, String, Option<String>);
/// Handshake failures of a cluster pair by side and reason: count, last second.
type Failures = BTreeMap<(HandshakeSide, String), (u64, i64)>;

enum Change {
    Gateway(GatewayState),
    Edge(EdgeSecurity),
}

enum Item {
    Gateway(GatewayStatus),
    Edge(MeshEdge),
}

fn status_of(held: &Held, now: Instant) -> GatewayStatus {
    let age = now.saturating_duration_since(held.received);
    let state = if age < STALE_AFTER {
        GatewayState::Up
    } else if age < LOST_AFTER {
        GatewayState::Stale
    } else {
        GatewayState::Lost
    };
    let r = &held.report;
    GatewayStatus {
        cluster: r.cluster.clone(),
        gateway: r.gateway.clone(),
        state,
        age_seconds: age.as_secs_f64(),
        started_at: r.started_at,
        sequence: r.sequence,
        catalog_revision: r.catalog_revision,
        catalog_age_seconds: r.catalog_age_seconds,
        certificates: r.certificates.clone(),
        active_roots: r.active_roots.clone(),
        retired_roots: r.retired_roots.clone(),
        peers: r.peers.clone(),
    }
}

fn empty_edge(key: &(String, String, Option<String>), age: f64) -> MeshEdge {
    MeshEdge {
        source_cluster: key.0.clone(),
        destination_cluster: key.1.clone(),
        service: key.2.clone(),
        security: EdgeSecurity::Unknown,
        peer_identities: Vec::new(),
        streams: 0,
        connections: 0,
        mutual_tls: 0,
        active: 0,
        bytes_received: 0,
        bytes_sent: 0,
        app_tls: AppTlsCounts::default(),
        plaintext_on_tls: 0,
        handshake_failures: Vec::new(),
        decisions: Vec::new(),
        last_connection_at: None,
        reported_by: Vec::new(),
        age_seconds: age,
    }
}

fn add_app_tls(a: AppTlsCounts, b: AppTlsCounts) -> AppTlsCounts {
    AppTlsCounts {
        passthrough: a.passthrough + b.passthrough,
        terminated: a.terminated + b.terminated,
        none: a.none + b.none,
    }
}

/// An edge fails while the latest handshake failure between its clusters (within the
/// window) is later than its latest connection; else it is as its connections were.
fn security_of(edge: &MeshEdge, last_failure: Option<i64>) -> EdgeSecurity {
    if let Some(failed) = last_failure
        && edge.last_connection_at.is_none_or(|ok| ok < failed)
    {
        return EdgeSecurity::Failing;
    }
    if edge.service.is_none() {
        // The cluster hop: mutual TLS once anything was carried over it.
        return if edge.last_connection_at.is_some() {
            EdgeSecurity::MutualTls
        } else {
            EdgeSecurity::Unknown
        };
    }
    if edge.streams == 0 && edge.connections == 0 {
        EdgeSecurity::Unknown
    } else if edge.mutual_tls < edge.connections || edge.plaintext_on_tls > 0 {
        // A plain leg to a port that speaks TLS is a client that skipped its TLS: the
        // hop is encrypted, the app's bytes are not.
        EdgeSecurity::Partial
    } else {
        EdgeSecurity::MutualTls
    }
}

#[cfg(test)]
mod tests {
    use isthmus_federation_api::mesh::{EdgeReport, HandshakeFailures};

    use super::*;

    fn report(cluster: &str, sequence: u64) -> GatewayReport {
        GatewayReport {
            cluster: cluster.into(),
            gateway: "ew".into(),
            started_at: 1000,
            sequence,
            catalog_revision: 7,
            catalog_age_seconds: 0.5,
            certificates: vec![],
            active_roots: vec!["aa".into()],
            retired_roots: vec![],
            peers: vec![],
            inbound: vec![],
            handshake_failures: vec![],
        }
    }

    fn edge(source: &str, connections: u64, mutual_tls: u64, at: Option<i64>) -> EdgeReport {
        EdgeReport {
            source_cluster: source.into(),
            namespace: "demo".into(),
            service: "echo".into(),
            peer_identities: vec![format!("spiffe://mesh.example/cluster/{source}/gateway/ew")],
            streams: connections,
            connections,
            mutual_tls,
            active: 1,
            bytes_received: 10 * connections,
            bytes_sent: 20 * connections,
            app_tls: AppTlsCounts {
                none: connections,
                ..AppTlsCounts::default()
            },
            plaintext_on_tls: 0,
            decisions: vec![DecisionCount {
                decision: "allow".into(),
                rule: "p/r".into(),
                count: connections,
            }],
            last_connection_at: at,
        }
    }

    #[test]
    fn a_gateway_goes_up_stale_lost_and_each_change_is_told_once() {
        let t0 = Instant::now();
        let mut board = Board::new("node-1");
        let events = board.record(report("west", 1), t0, 2000).expect("taken");
        assert!(matches!(
            &events[..],
            [MeshEvent::Gateway { previous: None, gateway, .. }] if gateway.state == GatewayState::Up
        ));
        assert!(board.tick(t0 + Duration::from_secs(1), 2001).is_empty());
        let stale = board.tick(t0 + STALE_AFTER, 2006);
        assert!(matches!(
            &stale[..],
            [MeshEvent::Gateway { previous: Some(GatewayState::Up), gateway, .. }] if gateway.state == GatewayState::Stale
        ));
        let lost = board.tick(t0 + LOST_AFTER, 2020);
        assert!(matches!(
            &lost[..],
            [MeshEvent::Gateway { previous: Some(GatewayState::Stale), gateway, .. }] if gateway.state == GatewayState::Lost
        ));
        assert!(board.tick(t0 + LOST_AFTER * 2, 2040).is_empty());
        // It comes back.
        let back = board
            .record(report("west", 2), t0 + LOST_AFTER * 2, 2040)
            .expect("taken");
        assert!(matches!(
            &back[..],
            [MeshEvent::Gateway {
                previous: Some(GatewayState::Lost),
                ..
            }]
        ));
    }

    #[test]
    fn late_and_earlier_run_reports_are_refused() {
        let t0 = Instant::now();
        let mut board = Board::new("n");
        board.record(report("west", 5), t0, 0).expect("taken");
        assert_eq!(
            board.record(report("west", 5), t0, 0),
            Err(Refused::Old { got: 5, held: 5 })
        );
        let mut earlier = report("west", 9);
        earlier.started_at = 999;
        assert!(matches!(
            board.record(earlier, t0, 0),
            Err(Refused::EarlierRun { .. })
        ));
        let mut restarted = report("west", 1);
        restarted.started_at = 1001;
        assert!(board.record(restarted, t0, 0).is_ok());
    }

    #[test]
    fn edges_merge_the_gateways_of_a_cluster_and_say_mutual_tls_or_partial() {
        let t0 = Instant::now();
        let mut board = Board::new("n");
        let mut a = report("west", 1);
        a.inbound = vec![edge("east", 3, 3, Some(1990))];
        let mut b = report("west", 1);
        b.gateway = "ew2".into();
        b.inbound = vec![
            edge("east", 2, 2, Some(1995)),
            edge("north", 4, 3, Some(1995)),
        ];
        board.record(a, t0, 2000).expect("taken");
        board.record(b, t0, 2000).expect("taken");
        let picture = board.picture(t0, 2000);
        let east = picture
            .edges
            .iter()
            .find(|e| e.source_cluster == "east")
            .expect("east → west");
        assert_eq!(east.service.as_deref(), Some("echo.demo"));
        assert_eq!((east.connections, east.mutual_tls, east.active), (5, 5, 2));
        assert_eq!(east.security, EdgeSecurity::MutualTls);
        assert_eq!(east.last_connection_at, Some(1995));
        assert_eq!(east.reported_by, vec!["west/ew", "west/ew2"]);
        assert_eq!(east.decisions[0].count, 5);
        assert_eq!(east.peer_identities.len(), 1);
        let north = picture
            .edges
            .iter()
            .find(|e| e.source_cluster == "north")
            .expect("north → west");
        assert_eq!(north.security, EdgeSecurity::Partial);
    }

    #[test]
    fn handshake_failures_make_the_cluster_hop_fail_until_a_connection_succeeds() {
        let t0 = Instant::now();
        let mut board = Board::new("n");
        let mut east = report("east", 1);
        east.handshake_failures = vec![HandshakeFailures {
            side: HandshakeSide::Accept,
            peer_cluster: "west".into(),
            reason: "unknown_root".into(),
            count: 4,
            last_at: 2000,
        }];
        let mut west = report("west", 1);
        west.handshake_failures = vec![HandshakeFailures {
            side: HandshakeSide::Dial,
            peer_cluster: "east".into(),
            reason: "refused_by_peer".into(),
            count: 2,
            last_at: 1999,
        }];
        board.record(east.clone(), t0, 2001).expect("taken");
        let events = board.record(west, t0, 2001).expect("taken");
        let picture = board.picture(t0, 2001);
        let hop = picture
            .edges
            .iter()
            .find(|e| e.service.is_none())
            .expect("the west → east hop");
        assert_eq!(
            (
                hop.source_cluster.as_str(),
                hop.destination_cluster.as_str()
            ),
            ("west", "east")
        );
        assert_eq!(hop.security, EdgeSecurity::Failing);
        assert_eq!(hop.handshake_failures.len(), 2);
        let accept = hop
            .handshake_failures
            .iter()
            .find(|f| f.side == HandshakeSide::Accept)
            .expect("east's side");
        assert_eq!((accept.reason.as_str(), accept.count), ("unknown_root", 4));
        assert!(
            events.iter().all(|e| !matches!(e, MeshEvent::Edge { .. })),
            "told with the first report"
        );
        // A connection after the failures heals the hop, and the change is told.
        east.sequence = 2;
        east.inbound = vec![edge("west", 1, 1, Some(2010))];
        let events = board.record(east, t0, 2011).expect("taken");
        let healed = events.iter().any(|e| {
            matches!(e,
            MeshEvent::Edge { previous: Some(EdgeSecurity::Failing), edge, .. }
                if edge.service.is_none() && edge.security == EdgeSecurity::MutualTls)
        });
        assert!(healed, "{events:?}");
        // Failures older than the window no longer fail an edge that never carried.
        let mut old = report("north", 1);
        old.handshake_failures = vec![HandshakeFailures {
            side: HandshakeSide::Dial,
            peer_cluster: "east".into(),
            reason: "timeout".into(),
            count: 1,
            last_at: 2011 - FAILING_WINDOW - 1,
        }];
        board.record(old, t0, 2011).expect("taken");
        let picture = board.picture(t0, 2011);
        let north = picture
            .edges
            .iter()
            .find(|e| e.source_cluster == "north")
            .expect("north → east");
        assert_eq!(north.security, EdgeSecurity::Unknown);
    }
}
