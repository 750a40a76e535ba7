//! The alerts a federation node holds ([`AlertList`]): every node evaluates the alert
//! rules on its own picture of the mesh (every gateway reports to every node, so the
//! pictures agree), and the leader alone delivers them. An alert's `edge` names the
//! mesh edge it is about ([`crate::mesh::MeshEdge::key`]), for a link to it. Pure
//! values.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How many resolved alerts a node keeps to show.
pub const RESOLVED_KEPT: usize = 100;

/// One alert, firing or resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AlertRecord {
    /// Its name (`IsthmusGatewayLost`, …), as in the Prometheus rule file.
    pub alertname: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// What it is about (`cluster`, `gateway`, `source_cluster`, `destination_service`,
    /// `peer_cluster`, `reason`, `rule`, `kind`), as in the rule file.
    pub labels: BTreeMap<String, String>,
    /// One line for a person: what changed.
    pub summary: String,
    /// Unix seconds when it fired.
    pub starts_at: i64,
    /// Unix seconds when it resolved; absent while it fires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<i64>,
    /// The mesh edge it is about (`east→west/echo.demo`, or `east→west` for the cluster
    /// hop), when it is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<String>,
}

/// The alerts one node holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AlertList {
    /// The answering node.
    pub node: String,
    /// Whether it leads, and so is the one delivering (webhooks, Alertmanager, the
    /// `isthmus_alerts_firing` metric).
    pub delivering: bool,
    /// Unix seconds of its last evaluation; absent before the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluated_at: Option<i64>,
    /// Firing now, most recent first.
    pub firing: Vec<AlertRecord>,
    /// Resolved since this node started, most recent first (at most 100).
    pub resolved: Vec<AlertRecord>,
}
