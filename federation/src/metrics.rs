//! Prometheus metrics of a federation node, served as text on `listen.metrics`: the
//! Raft state (read from openraft's metrics at scrape time) and counters of admin
//! traffic. Names are listed in `docs/metrics.md`.

use std::sync::Arc;

use openraft::ServerState;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::raft::Raft;
use crate::store::CatalogView;

/// `result` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok`, `rejected` (the catalog refused it) or `error` (not applied: no leader,
    /// timeout, invalid input).
    pub result: &'static str,
}

/// `consistency` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsistencyLabels {
    /// `linearizable` or `stale`.
    pub consistency: &'static str,
}

/// `state` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// The metrics of one node.
#[derive(Debug)]
pub struct FederationMetrics {
    /// Writes by outcome.
    pub writes: Family<ResultLabels, Counter>,
    /// Reads by consistency.
    pub reads: Family<ConsistencyLabels, Counter>,
    /// Open watch streams.
    pub watches: Gauge,
    term: Gauge,
    leader: Gauge,
    state: Family<StateLabels, Gauge>,
    last_log_index: Gauge,
    applied_index: Gauge,
    revision: Gauge,
    voters: Gauge,
    learners: Gauge,
    /// Alerts firing, as this node (when it leads) evaluates them.
    pub alerts_firing: Family<AlertLabels, Gauge>,
    registry: Registry,
}

/// Labels of firing alerts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    /// The alert's name.
    pub alertname: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
}

const STATES: [&str; 5] = ["leader", "follower", "candidate", "learner", "shutdown"];

fn gauge(value: Option<u64>) -> i64 {
    value.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX))
}

impl FederationMetrics {
    /// Registers every metric.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("isthmus");
        let metrics = Self {
            writes: Family::default(),
            reads: Family::default(),
            watches: Gauge::default(),
            term: Gauge::default(),
            leader: Gauge::default(),
            state: Family::default(),
            last_log_index: Gauge::default(),
            applied_index: Gauge::default(),
            revision: Gauge::default(),
            voters: Gauge::default(),
            learners: Gauge::default(),
            alerts_firing: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "alerts_firing",
            "Alerts firing, by name and severity, as this node evaluates them while it leads (0 elsewhere)",
            metrics.alerts_firing.clone(),
        );
        registry.register(
            "federation_writes",
            "Admin writes by outcome",
            metrics.writes.clone(),
        );
        registry.register(
            "federation_reads",
            "Admin reads by consistency",
            metrics.reads.clone(),
        );
        registry.register(
            "federation_watch_streams",
            "Open watch streams",
            metrics.watches.clone(),
        );
        registry.register(
            "federation_raft_term",
            "Current Raft term",
            metrics.term.clone(),
        );
        registry.register(
            "federation_raft_is_leader",
            "1 when this node leads",
            metrics.leader.clone(),
        );
        registry.register(
            "federation_raft_state",
            "1 for this node's Raft role",
            metrics.state.clone(),
        );
        registry.register(
            "federation_raft_last_log_index",
            "Index of the last log entry (-1: none)",
            metrics.last_log_index.clone(),
        );
        registry.register(
            "federation_raft_applied_index",
            "Index of the last applied entry (-1: none)",
            metrics.applied_index.clone(),
        );
        registry.register(
            "federation_catalog_revision",
            "Catalog revision applied on this node",
            metrics.revision.clone(),
        );
        registry.register(
            "federation_raft_voters",
            "Voters in the membership",
            metrics.voters.clone(),
        );
        registry.register(
            "federation_raft_learners",
            "Learners in the membership",
            metrics.learners.clone(),
        );
        Arc::new(Self {
            registry,
            ..metrics
        })
    }

    /// The metrics in Prometheus text format, the Raft state read now.
    pub fn encode(&self, raft: &Raft, view: &CatalogView) -> String {
        let m = raft.metrics().borrow().clone();
        self.term.set(gauge(Some(m.current_term)));
        self.leader.set(i64::from(m.state == ServerState::Leader));
        let current = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        for state in STATES {
            self.state
                .get_or_create(&StateLabels { state })
                .set(i64::from(state == current));
        }
        self.last_log_index.set(gauge(m.last_log_index));
        self.applied_index
            .set(gauge(m.last_applied.map(|l| l.index)));
        self.revision.set(gauge(Some(view.revision())));
        let membership = m.membership_config.membership();
        let voters = membership.voter_ids().count();
        self.voters.set(i64::try_from(voters).unwrap_or(i64::MAX));
        let nodes = membership.nodes().count();
        self.learners
            .set(i64::try_from(nodes.saturating_sub(voters)).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Serves `/metrics` (plain HTTP: metrics carry no secrets) until `stop` is cancelled.
pub async fn serve(
    metrics: Arc<FederationMetrics>,
    raft: Raft,
    view: CatalogView,
    listener: TcpListener,
    stop: CancellationToken,
) -> std::io::Result<()> {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let text = metrics.encode(&raft, &view);
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    text,
                )
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}
