//! Which alert conditions hold in a picture of the mesh. Pure: a picture (and the one
//! evaluated before it, for what is counted between two evaluations) in, conditions
//! out; nothing is remembered here ([`super::state`] does that).

use std::collections::BTreeMap;
use std::time::Duration;

use isthmus_federation_api::mesh::{
    EdgeSecurity, GatewayState, HandshakeSide, MeshEdge, MeshPicture,
};

/// How urgent an alert is (the rule file's `severity` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth a look.
    Info,
    /// Act soon.
    Warning,
    /// Act now.
    Critical,
}

impl Severity {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// One condition that holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// The alert's name (`IsthmusEdgeNotMutualTLS`, …).
    pub alertname: &'static str,
    /// How urgent.
    pub severity: Severity,
    /// What it is about (`source_cluster`, `destination_service`, …).
    pub labels: BTreeMap<String, String>,
    /// One line for a person.
    pub summary: String,
    /// How long it must hold before the alert fires.
    pub hold: Duration,
    /// The mesh edge it is about ([`MeshEdge::key`]), when it is about one.
    pub edge: Option<String>,
}

/// The thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// An intermediate or root expiring within this is a warning.
    pub expiry_warning: Duration,
    /// Within this, critical.
    pub expiry_critical: Duration,
    /// Two roots in force this long is a rotation left half done.
    pub rotation_half_done: Duration,
    /// Handshake failures this recent count.
    pub failure_window: Duration,
    /// Denials per second to one service, between two evaluations, that are a spike.
    pub denial_spike_per_second: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            expiry_warning: Duration::from_secs(7 * 86_400),
            expiry_critical: Duration::from_secs(86_400),
            rotation_half_done: Duration::from_secs(86_400),
            failure_window: Duration::from_secs(300),
            denial_spike_per_second: 0.5,
        }
    }
}

fn labels<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Every condition that holds in `picture`. `previous` is the picture of the last
/// evaluation, for what is counted between the two (shadow findings, denials).
pub fn conditions(
    picture: &MeshPicture,
    previous: Option<&MeshPicture>,
    settings: &Settings,
) -> Vec<Condition> {
    let now = picture.generated_at;
    let mut out = Vec::new();
    for g in &picture.gateways {
        let who = [
            ("cluster", g.cluster.as_str()),
            ("gateway", g.gateway.as_str()),
        ];
        match g.state {
            GatewayState::Up => {}
            GatewayState::Stale => out.push(Condition {
                alertname: "IsthmusGatewayStale",
                severity: Severity::Warning,
                labels: labels(who),
                summary: format!("The gateway {}/{} missed its reports", g.cluster, g.gateway),
                hold: Duration::ZERO,
                edge: None,
            }),
            GatewayState::Lost => out.push(Condition {
                alertname: "IsthmusGatewayLost",
                severity: Severity::Critical,
                labels: labels(who),
                summary: format!("The gateway {}/{} is lost", g.cluster, g.gateway),
                hold: Duration::ZERO,
                edge: None,
            }),
        }
        for c in g.certificates.iter().filter(|c| c.kind != "leaf") {
            let left = c.not_after - now;
            let (alertname, severity) = if left < secs(settings.expiry_critical) {
                ("IsthmusCertificateExpiringCritical", Severity::Critical)
            } else if left < secs(settings.expiry_warning) {
                ("IsthmusCertificateExpiring", Severity::Warning)
            } else {
                continue;
            };
            out.push(Condition {
                alertname,
                severity,
                labels: labels([who[0], who[1], ("kind", c.kind.as_str())]),
                summary: format!(
                    "The {} certificate of {}/{} expires in {} s",
                    c.kind, g.cluster, g.gateway, left
                ),
                hold: Duration::ZERO,
                edge: None,
            });
        }
        if g.active_roots.len() > 1 {
            out.push(Condition {
                alertname: "IsthmusRootRotationHalfDone",
                severity: Severity::Warning,
                labels: labels(who),
                summary: format!(
                    "{} roots have been in force at {}/{}",
                    g.active_roots.len(),
                    g.cluster,
                    g.gateway
                ),
                hold: settings.rotation_half_done,
                edge: None,
            });
        }
    }
    // Findings and denials are summed over the callers of each service, as the rule
    // file's `sum by (destination_service, rule)` does.
    let mut shadow: BTreeMap<(String, String, String), Growth> = BTreeMap::new();
    let mut denied: BTreeMap<(String, String), Growth> = BTreeMap::new();
    let elapsed = previous.map_or(1, |p| (picture.generated_at - p.generated_at).max(1));
    for e in &picture.edges {
        match &e.service {
            Some(service) => {
                if e.connections > 0
                    && matches!(e.security, EdgeSecurity::Partial | EdgeSecurity::Failing)
                {
                    out.push(Condition {
                        alertname: "IsthmusEdgeNotMutualTLS",
                        severity: Severity::Critical,
                        labels: labels([
                            ("cluster", e.destination_cluster.as_str()),
                            ("source_cluster", e.source_cluster.as_str()),
                            ("destination_service", service.as_str()),
                        ]),
                        summary: format!(
                            "{} → {service} is no longer all mutual TLS ({})",
                            e.source_cluster,
                            match e.security {
                                EdgeSecurity::Failing => "handshakes fail",
                                _ if e.mutual_tls < e.connections => {
                                    "some connections are not mutual TLS"
                                }
                                _ => "plain app bytes reached a port declared TLS",
                            }
                        ),
                        hold: Duration::ZERO,
                        edge: Some(e.key()),
                    });
                }
                // The first sight of an edge has no "since": its counts are history.
                let Some(before) =
                    previous.and_then(|p| p.edges.iter().find(|b| b.key() == e.key()))
                else {
                    continue;
                };
                for d in &e.decisions {
                    let earlier = before
                        .decisions
                        .iter()
                        .find(|x| x.decision == d.decision && x.rule == d.rule)
                        .map_or(0, |x| x.count);
                    let grown = d.count.saturating_sub(earlier);
                    if grown == 0 {
                        continue;
                    }
                    let at = (e.destination_cluster.clone(), service.clone());
                    match d.decision.as_str() {
                        "shadow_deny" => shadow
                            .entry((at.0, at.1, d.rule.clone()))
                            .or_default()
                            .add(grown, e),
                        "deny" => denied.entry(at).or_default().add(grown, e),
                        _ => {}
                    }
                }
            }
            None => {
                for f in &e.handshake_failures {
                    if now - f.last_at > secs(settings.failure_window) {
                        continue;
                    }
                    // The labels of the gateway that saw it, as its own metric has them.
                    let (side, cluster, peer) = match f.side {
                        HandshakeSide::Accept => {
                            ("accept", &e.destination_cluster, &e.source_cluster)
                        }
                        HandshakeSide::Dial => ("dial", &e.source_cluster, &e.destination_cluster),
                    };
                    if f.reason == REVOKED {
                        out.push(Condition {
                            alertname: "IsthmusRevokedClusterDialling",
                            severity: Severity::Critical,
                            labels: labels([
                                ("cluster", cluster.as_str()),
                                ("peer_cluster", peer.as_str()),
                            ]),
                            summary: format!(
                                "The revoked cluster {peer} still dials {cluster} ({} refused)",
                                f.count
                            ),
                            hold: Duration::ZERO,
                            edge: Some(e.key()),
                        });
                        continue;
                    }
                    out.push(Condition {
                        alertname: "IsthmusHandshakeFailures",
                        severity: Severity::Warning,
                        labels: labels([
                            ("cluster", cluster.as_str()),
                            ("side", side),
                            ("peer_cluster", peer.as_str()),
                            ("reason", f.reason.as_str()),
                        ]),
                        summary: format!(
                            "Handshakes with {peer} fail at {cluster} ({side} side): {}",
                            f.reason
                        ),
                        hold: Duration::ZERO,
                        edge: Some(e.key()),
                    });
                }
            }
        }
    }
    for ((cluster, service, rule), growth) in shadow {
        out.push(Condition {
            alertname: "IsthmusShadowPolicyFindings",
            severity: Severity::Info,
            labels: labels([
                ("cluster", cluster.as_str()),
                ("destination_service", service.as_str()),
                ("rule", rule.as_str()),
            ]),
            summary: format!(
                "Shadow rule {rule} would deny traffic to {service} ({} connections)",
                growth.count
            ),
            hold: Duration::ZERO,
            edge: growth.edge(),
        });
    }
    for ((cluster, service), growth) in denied {
        let rate = growth.count as f64 / elapsed as f64;
        if rate > settings.denial_spike_per_second {
            out.push(Condition {
                alertname: "IsthmusDenialSpike",
                severity: Severity::Warning,
                labels: labels([
                    ("cluster", cluster.as_str()),
                    ("destination_service", service.as_str()),
                ]),
                summary: format!("Denials of {service} jumped to {rate:.1}/s"),
                hold: Duration::ZERO,
                edge: growth.edge(),
            });
        }
    }
    out
}

/// The reason a gateway gives a handshake with a revoked cluster's gateway.
pub const REVOKED: &str = "revoked";

/// What grew on the edges to one service between two evaluations.
#[derive(Debug, Default)]
struct Growth {
    count: u64,
    edges: std::collections::BTreeSet<String>,
}

impl Growth {
    fn add(&mut self, n: u64, edge: &MeshEdge) {
        self.count += n;
        self.edges.insert(edge.key());
    }

    /// The edge to link to: the one caller's, when there is one.
    fn edge(&self) -> Option<String> {
        match self.edges.len() {
            1 => self.edges.first().cloned(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use isthmus_federation_api::mesh::{
        AppTlsCounts, CertificateExpiry, DecisionCount, FailureCount, GatewayStatus, HandshakeSide,
        MeshEdge,
    };

    use super::*;

    fn gateway(cluster: &str, state: GatewayState) -> GatewayStatus {
        GatewayStatus {
            cluster: cluster.into(),
            gateway: "ew".into(),
            state,
            age_seconds: 0.0,
            started_at: 0,
            sequence: 1,
            catalog_revision: 1,
            catalog_age_seconds: 0.0,
            certificates: vec![
                CertificateExpiry {
                    kind: "leaf".into(),
                    not_after: 1_000 + 3_600,
                },
                CertificateExpiry {
                    kind: "intermediate".into(),
                    not_after: 1_000 + 3 * 86_400,
                },
                CertificateExpiry {
                    kind: "root".into(),
                    not_after: 1_000 + 365 * 86_400,
                },
            ],
            active_roots: vec!["a".into()],
            retired_roots: vec![],
            peers: vec![],
        }
    }

    fn edge(service: Option<&str>, security: EdgeSecurity, decisions: &[(&str, u64)]) -> MeshEdge {
        MeshEdge {
            source_cluster: "east".into(),
            destination_cluster: "west".into(),
            service: service.map(str::to_owned),
            security,
            peer_identities: vec![],
            streams: 10,
            connections: 10,
            mutual_tls: 9,
            active: 0,
            bytes_received: 0,
            bytes_sent: 0,
            app_tls: AppTlsCounts::default(),
            plaintext_on_tls: 0,
            handshake_failures: vec![],
            decisions: decisions
                .iter()
                .map(|(d, n)| DecisionCount {
                    decision: (*d).into(),
                    rule: "p/r".into(),
                    count: *n,
                })
                .collect(),
            last_connection_at: Some(990),
            reported_by: vec![],
            age_seconds: 0.0,
        }
    }

    fn picture(at: i64, gateways: Vec<GatewayStatus>, edges: Vec<MeshEdge>) -> MeshPicture {
        MeshPicture {
            node: "n".into(),
            generated_at: at,
            revision: 1,
            gateways,
            edges,
        }
    }

    fn names(conditions: &[Condition]) -> Vec<&'static str> {
        let mut names: Vec<_> = conditions.iter().map(|c| c.alertname).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn a_healthy_mesh_raises_nothing_but_what_expires() {
        let mut ok = gateway("west", GatewayState::Up);
        ok.certificates.truncate(1);
        let p = picture(
            1_000,
            vec![ok],
            vec![edge(
                Some("echo.demo"),
                EdgeSecurity::MutualTls,
                &[("allow", 5)],
            )],
        );
        assert!(conditions(&p, None, &Settings::default()).is_empty());
        let expiring = picture(1_000, vec![gateway("west", GatewayState::Up)], vec![]);
        let found = conditions(&expiring, None, &Settings::default());
        assert_eq!(names(&found), ["IsthmusCertificateExpiring"]);
        assert_eq!(found[0].labels["kind"], "intermediate");
        let later = picture(
            1_000 + 2 * 86_400 + 1,
            vec![gateway("west", GatewayState::Up)],
            vec![],
        );
        assert_eq!(
            names(&conditions(&later, None, &Settings::default())),
            ["IsthmusCertificateExpiringCritical"]
        );
    }

    #[test]
    fn lost_gateways_broken_edges_failures_and_rotations_are_conditions() {
        let mut rotating = gateway("east", GatewayState::Stale);
        rotating.certificates.clear();
        rotating.active_roots.push("b".into());
        let mut lost = gateway("west", GatewayState::Lost);
        lost.certificates.clear();
        let mut hop = edge(None, EdgeSecurity::Failing, &[]);
        hop.handshake_failures = vec![
            FailureCount {
                side: HandshakeSide::Accept,
                reason: "unknown_root".into(),
                count: 3,
                last_at: 995,
            },
            FailureCount {
                side: HandshakeSide::Dial,
                reason: "timeout".into(),
                count: 1,
                last_at: 100,
            },
        ];
        let p = picture(
            1_000,
            vec![rotating, lost],
            vec![edge(Some("echo.demo"), EdgeSecurity::Partial, &[]), hop],
        );
        let found = conditions(&p, None, &Settings::default());
        assert_eq!(
            names(&found),
            [
                "IsthmusEdgeNotMutualTLS",
                "IsthmusGatewayLost",
                "IsthmusGatewayStale",
                "IsthmusHandshakeFailures",
                "IsthmusRootRotationHalfDone",
            ]
        );
        let failures = found
            .iter()
            .find(|c| c.alertname == "IsthmusHandshakeFailures")
            .unwrap();
        assert_eq!(
            failures.labels["reason"], "unknown_root",
            "the old timeout is outside the window"
        );
        let rotation = found
            .iter()
            .find(|c| c.alertname == "IsthmusRootRotationHalfDone")
            .unwrap();
        assert_eq!(rotation.hold, Duration::from_secs(86_400));
    }

    #[test]
    fn a_revoked_cluster_still_dialling_is_its_own_alert() {
        let mut hop = edge(None, EdgeSecurity::Failing, &[]);
        hop.source_cluster = "north".into();
        hop.handshake_failures = vec![FailureCount {
            side: HandshakeSide::Accept,
            reason: REVOKED.into(),
            count: 7,
            last_at: 999,
        }];
        let found = conditions(
            &picture(1_000, vec![], vec![hop]),
            None,
            &Settings::default(),
        );
        assert_eq!(names(&found), ["IsthmusRevokedClusterDialling"]);
        assert_eq!(found[0].labels["peer_cluster"], "north");
        assert_eq!(found[0].labels["cluster"], "west");
        assert_eq!(found[0].edge.as_deref(), Some("north→west"));
    }

    #[test]
    fn shadow_findings_and_denial_spikes_count_what_grew_since_the_last_evaluation() {
        let quiet = |at, shadow, deny| {
            picture(
                at,
                vec![],
                vec![edge(
                    Some("echo.demo"),
                    EdgeSecurity::MutualTls,
                    &[("shadow_deny", shadow), ("deny", deny)],
                )],
            )
        };
        let first = quiet(1_000, 4, 100);
        // The first sight is history, not news.
        assert!(conditions(&first, None, &Settings::default()).is_empty());
        let same = quiet(1_010, 4, 101);
        assert!(
            conditions(&same, Some(&first), &Settings::default()).is_empty(),
            "0.1 denials/s is no spike"
        );
        let busy = quiet(1_020, 6, 131);
        assert_eq!(
            names(&conditions(&busy, Some(&same), &Settings::default())),
            ["IsthmusDenialSpike", "IsthmusShadowPolicyFindings"]
        );
    }
}
