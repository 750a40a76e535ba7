//! The mesh's security status: what each gateway reports to the federation every few
//! seconds ([`GatewayReport`]), and the picture any federation node assembles from the
//! reports it holds ([`MeshPicture`]): per edge (source cluster → destination cluster
//! and service) whether the hop is mutual TLS with verified identities, what the app
//! legs are, connections, bytes, handshake failures and policy decisions; per gateway
//! its certificates, bundle roots, catalog age and peers. Soft state with an age, never
//! in the Raft log. [`MeshEvent`] is one change of an edge's or a gateway's status.
//!
//! Pure: values, their bounds ([`GatewayReport::check`]), no IO. The federation's board
//! (`isthmus-federation`'s `mesh` module) does the assembling.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ApiError;

/// A gateway reports every 2 s: a gateway silent this long (three missed reports) is
/// `stale`.
pub const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(6);
/// Silent this long (ten missed reports), it is `lost`.
pub const LOST_AFTER: std::time::Duration = std::time::Duration::from_secs(20);

/// Most inbound edges one report may carry.
pub const MAX_EDGES: usize = 4096;
/// Most entries of any other list in a report.
pub const MAX_ITEMS: usize = 256;
/// Longest text in a report (names, rules, SPIFFE IDs).
pub const MAX_TEXT: usize = 2048;

/// Counts by whether the app's own bytes were TLS (the access log's `app_tls`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppTlsCounts {
    /// The app spoke TLS end to end (carried undecrypted).
    #[serde(default)]
    pub passthrough: u64,
    /// A gateway terminated the app's TLS.
    #[serde(default)]
    pub terminated: u64,
    /// The app's bytes were not TLS.
    #[serde(default)]
    pub none: u64,
}

/// How many policy decisions of one kind one rule made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionCount {
    /// `allow`, `deny`, `shadow_deny`, `shadow_allow` or `rate_limited`.
    #[schemars(length(min = 1, max = 32))]
    pub decision: String,
    /// `policy/rule`, `policy/limit`, `default-deny`, `configured-peers`,
    /// `unusable-policies`.
    #[schemars(length(min = 1, max = 2048))]
    pub rule: String,
    /// How many.
    pub count: u64,
}

/// What a gateway saw of one source cluster's traffic to one of its services, since it
/// started (counters only grow while it runs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EdgeReport {
    /// The cluster the streams came from (verified by its gateway's certificate).
    #[schemars(schema_with = "crate::schema::label")]
    pub source_cluster: String,
    /// The service's namespace.
    #[schemars(schema_with = "crate::schema::label")]
    pub namespace: String,
    /// The service.
    #[schemars(schema_with = "crate::schema::label")]
    pub service: String,
    /// The verified SPIFFE IDs the streams came from (at most 256).
    #[serde(default)]
    #[schemars(schema_with = "crate::schema::identities")]
    pub peer_identities: Vec<String>,
    /// Streams decided (admitted or refused).
    #[serde(default)]
    pub streams: u64,
    /// Connections carried to an endpoint.
    #[serde(default)]
    pub connections: u64,
    /// Of those, how many on a mutual-TLS hop.
    #[serde(default)]
    pub mutual_tls: u64,
    /// Connections open now.
    #[serde(default)]
    pub active: u64,
    /// Bytes from the callers.
    #[serde(default)]
    pub bytes_received: u64,
    /// Bytes to the callers.
    #[serde(default)]
    pub bytes_sent: u64,
    /// The app legs.
    #[serde(default)]
    pub app_tls: AppTlsCounts,
    /// Connections whose app bytes were not TLS to a port declared `app_protocol =
    /// "tls"` (a client that skipped its TLS: the edge is `partial`).
    #[serde(default)]
    pub plaintext_on_tls: u64,
    /// Policy decisions by rule (at most 256).
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub decisions: Vec<DecisionCount>,
    /// Unix seconds of the last connection carried, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_connection_at: Option<i64>,
}

/// Which end of a handshake the reporting gateway was.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum HandshakeSide {
    /// It accepted the peer's connection.
    Accept,
    /// It dialled the peer.
    Dial,
}

/// Failed handshakes with one peer cluster for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HandshakeFailures {
    /// Which end.
    pub side: HandshakeSide,
    /// The peer cluster (on the accepting side, the one the certificate claims when it
    /// is a peer; `unknown` otherwise).
    #[schemars(length(min = 1, max = 63))]
    pub peer_cluster: String,
    /// The verifier's reason (`unknown_root`, `expired`, …) or `timeout`, `protocol`, …
    #[schemars(length(min = 1, max = 64))]
    pub reason: String,
    /// How many since the gateway started.
    pub count: u64,
    /// Unix seconds of the last one.
    pub last_at: i64,
}

/// When one kind of certificate in use expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateExpiry {
    /// `leaf`, `intermediate` or `root` (the earliest of that kind).
    #[schemars(length(min = 1, max = 32))]
    pub kind: String,
    /// Unix seconds.
    pub not_after: i64,
}

/// A peer cluster and whether a QUIC connection to its gateway is open either way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PeerLink {
    /// The peer cluster.
    #[schemars(schema_with = "crate::schema::label")]
    pub cluster: String,
    /// Whether a connection is open.
    pub connected: bool,
}

/// What one gateway reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayReport {
    /// Its cluster (a gateway may report only its own).
    #[schemars(schema_with = "crate::schema::label")]
    pub cluster: String,
    /// Its name within the cluster.
    #[schemars(schema_with = "crate::schema::label")]
    pub gateway: String,
    /// Unix seconds when it started: counters restart with it.
    pub started_at: i64,
    /// Grows with each report of one run: an older one arriving late is dropped.
    pub sequence: u64,
    /// The catalog revision it applied.
    #[serde(default)]
    pub catalog_revision: u64,
    /// Seconds since the federation last confirmed its catalog.
    #[serde(default)]
    #[schemars(range(min = 0.0))]
    pub catalog_age_seconds: f64,
    /// Its certificates' expiries.
    #[serde(default)]
    #[schemars(length(max = 8))]
    pub certificates: Vec<CertificateExpiry>,
    /// SHA-256 fingerprints of the bundle's roots in force.
    #[serde(default)]
    #[schemars(schema_with = "crate::schema::active_fingerprints")]
    pub active_roots: Vec<String>,
    /// SHA-256 fingerprints of retired roots.
    #[serde(default)]
    #[schemars(schema_with = "crate::schema::retired_fingerprints")]
    pub retired_roots: Vec<String>,
    /// Its peers.
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub peers: Vec<PeerLink>,
    /// Traffic it received from each source cluster, per service.
    #[serde(default)]
    #[schemars(length(max = 4096))]
    pub inbound: Vec<EdgeReport>,
    /// Failed handshakes, both ends.
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub handshake_failures: Vec<HandshakeFailures>,
}

impl GatewayReport {
    /// Checks the bounds the schema declares (the wire gives no other guarantee).
    pub fn check(&self) -> Result<(), ApiError> {
        crate::validate::name("cluster", &self.cluster)?;
        crate::validate::name("gateway", &self.gateway)?;
        let list = |field: &str, len: usize, max: usize| {
            if len > max {
                Err(ApiError::invalid(
                    field,
                    format!("at most {max} entries ({len} given)"),
                ))
            } else {
                Ok(())
            }
        };
        list("certificates", self.certificates.len(), 8)?;
        list("active_roots", self.active_roots.len(), 16)?;
        list("retired_roots", self.retired_roots.len(), MAX_ITEMS)?;
        list("peers", self.peers.len(), MAX_ITEMS)?;
        list("inbound", self.inbound.len(), MAX_EDGES)?;
        list(
            "handshake_failures",
            self.handshake_failures.len(),
            MAX_ITEMS,
        )?;
        if !self.catalog_age_seconds.is_finite() || self.catalog_age_seconds < 0.0 {
            return Err(ApiError::invalid(
                "catalog_age_seconds",
                "a number of seconds, 0 or more",
            ));
        }
        let text = |field: String, value: &str| {
            if value.is_empty() || value.len() > MAX_TEXT {
                Err(ApiError::invalid(
                    field,
                    format!("1 to {MAX_TEXT} characters"),
                ))
            } else {
                Ok(())
            }
        };
        let fingerprint = |field: String, value: &str| {
            let hex = value.len() == 64
                && value
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if hex {
                Ok(())
            } else {
                Err(ApiError::invalid(
                    field,
                    "a SHA-256 fingerprint: 64 lower-case hex digits",
                ))
            }
        };
        for (i, f) in self.active_roots.iter().enumerate() {
            fingerprint(format!("active_roots[{i}]"), f)?;
        }
        for (i, f) in self.retired_roots.iter().enumerate() {
            fingerprint(format!("retired_roots[{i}]"), f)?;
        }
        for (i, c) in self.certificates.iter().enumerate() {
            text(format!("certificates[{i}].kind"), &c.kind)?;
        }
        for (i, p) in self.peers.iter().enumerate() {
            crate::validate::name(&format!("peers[{i}].cluster"), &p.cluster)?;
        }
        for (i, e) in self.inbound.iter().enumerate() {
            let at = |f: &str| format!("inbound[{i}].{f}");
            crate::validate::name(&at("source_cluster"), &e.source_cluster)?;
            crate::validate::name(&at("namespace"), &e.namespace)?;
            crate::validate::name(&at("service"), &e.service)?;
            list(&at("peer_identities"), e.peer_identities.len(), MAX_ITEMS)?;
            list(&at("decisions"), e.decisions.len(), MAX_ITEMS)?;
            for (j, id) in e.peer_identities.iter().enumerate() {
                text(at(&format!("peer_identities[{j}]")), id)?;
            }
            for (j, d) in e.decisions.iter().enumerate() {
                text(at(&format!("decisions[{j}].decision")), &d.decision)?;
                text(at(&format!("decisions[{j}].rule")), &d.rule)?;
            }
        }
        for (i, h) in self.handshake_failures.iter().enumerate() {
            text(
                format!("handshake_failures[{i}].peer_cluster"),
                &h.peer_cluster,
            )?;
            text(format!("handshake_failures[{i}].reason"), &h.reason)?;
        }
        Ok(())
    }
}

/// Whether the federation hears from a gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GatewayState {
    /// Reported within the last few seconds.
    Up,
    /// Missed a few reports.
    Stale,
    /// Silent for long enough to be counted gone (stopped, cut off, or crashed).
    Lost,
}

/// One gateway as the answering node knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GatewayStatus {
    /// Its cluster.
    pub cluster: String,
    /// Its name.
    pub gateway: String,
    /// Up, stale or lost.
    pub state: GatewayState,
    /// Seconds since its last report reached this node.
    pub age_seconds: f64,
    /// Unix seconds when it started.
    pub started_at: i64,
    /// Its report's sequence number.
    pub sequence: u64,
    /// The catalog revision it applied.
    pub catalog_revision: u64,
    /// Seconds since the federation last confirmed its catalog (when it reported).
    pub catalog_age_seconds: f64,
    /// Its certificates' expiries.
    pub certificates: Vec<CertificateExpiry>,
    /// Fingerprints of the roots in force; more than one is a rotation in progress.
    pub active_roots: Vec<String>,
    /// Fingerprints of retired roots.
    pub retired_roots: Vec<String>,
    /// Its peers.
    pub peers: Vec<PeerLink>,
}

/// Whether an edge's hop is mutual TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EdgeSecurity {
    /// Every connection on a mutual-TLS hop with a verified identity, and no handshake
    /// failure since the last one.
    MutualTls,
    /// Some connections were not on a mutual-TLS hop, or carried plain bytes to a port
    /// declared TLS.
    Partial,
    /// Handshakes fail, and none succeeded since (or ever).
    Failing,
    /// Nothing carried yet.
    Unknown,
}

/// Handshake failures of an edge, by end and reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FailureCount {
    /// The end that saw them.
    pub side: HandshakeSide,
    /// The reason.
    pub reason: String,
    /// How many (since each reporting gateway started).
    pub count: u64,
    /// Unix seconds of the last one.
    pub last_at: i64,
}

/// Traffic from one cluster to another: to one service, or (with no `service`) the
/// cluster-to-cluster hop itself, where handshake failures belong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MeshEdge {
    /// The calling cluster.
    pub source_cluster: String,
    /// The serving cluster.
    pub destination_cluster: String,
    /// `<service>.<namespace>`, or absent for the cluster hop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The hop's security.
    pub security: EdgeSecurity,
    /// The verified SPIFFE IDs that called.
    pub peer_identities: Vec<String>,
    /// Streams decided.
    pub streams: u64,
    /// Connections carried.
    pub connections: u64,
    /// Of those, on a mutual-TLS hop.
    pub mutual_tls: u64,
    /// Open now.
    pub active: u64,
    /// Bytes from the callers.
    pub bytes_received: u64,
    /// Bytes to the callers.
    pub bytes_sent: u64,
    /// The app legs.
    pub app_tls: AppTlsCounts,
    /// Plain connections to a port declared TLS.
    #[serde(default)]
    pub plaintext_on_tls: u64,
    /// Handshake failures on this cluster pair (cluster hop only).
    pub handshake_failures: Vec<FailureCount>,
    /// Policy decisions by rule.
    pub decisions: Vec<DecisionCount>,
    /// Unix seconds of the last connection carried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_connection_at: Option<i64>,
    /// The gateways whose reports it comes from (`cluster/gateway`).
    pub reported_by: Vec<String>,
    /// Seconds since the newest of those reports reached this node.
    pub age_seconds: f64,
}

impl MeshEdge {
    /// What identifies the edge in events: `source→destination[/service]`.
    pub fn key(&self) -> String {
        match &self.service {
            Some(service) => format!(
                "{}→{}/{service}",
                self.source_cluster, self.destination_cluster
            ),
            None => format!("{}→{}", self.source_cluster, self.destination_cluster),
        }
    }
}

/// The whole picture as one node holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MeshPicture {
    /// The answering node.
    pub node: String,
    /// Unix seconds when it was assembled.
    pub generated_at: i64,
    /// Grows with every change this node has seen (a report or a status change).
    pub revision: u64,
    /// Every gateway that reported to this node since it started.
    pub gateways: Vec<GatewayStatus>,
    /// Every edge.
    pub edges: Vec<MeshEdge>,
}

/// One change of status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MeshEvent {
    /// A gateway appeared or changed state (up, stale, lost).
    Gateway {
        /// The picture's revision at the change.
        revision: u64,
        /// Its state before, absent when it is new.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous: Option<GatewayState>,
        /// The gateway now.
        gateway: GatewayStatus,
    },
    /// An edge appeared or its security changed.
    Edge {
        /// The picture's revision at the change.
        revision: u64,
        /// Its security before, absent when it is new.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous: Option<EdgeSecurity>,
        /// The edge now.
        edge: MeshEdge,
    },
}

/// The longest window [`DecisionWindow`] counts over (a node keeps its samples this long).
pub const DECISION_HISTORY: std::time::Duration = std::time::Duration::from_secs(3600);

/// How many connections one rule decided one way on one edge within a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WindowedDecision {
    /// `policy/rule`, `policy/limit`, `default-deny`, …
    pub rule: String,
    /// `allow`, `deny`, `shadow_deny`, `shadow_allow` or `rate_limited`.
    pub decision: String,
    /// The calling cluster.
    pub source_cluster: String,
    /// The serving cluster.
    pub destination_cluster: String,
    /// `<service>.<namespace>`.
    pub service: String,
    /// How many within the window.
    pub count: u64,
}

/// Policy decisions counted over a window ending now: the policy page's analytics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DecisionWindow {
    /// The answering node.
    pub node: String,
    /// The window asked for, in seconds.
    pub window_seconds: u64,
    /// Unix seconds the counts start from: later than `to - window_seconds` when this
    /// node has not held samples that long (it started, or the window is longer than
    /// the hour it keeps).
    pub from: i64,
    /// Unix seconds the counts end at.
    pub to: i64,
    /// Every rule, decision and edge with a count above zero in the window.
    pub decisions: Vec<WindowedDecision>,
}
