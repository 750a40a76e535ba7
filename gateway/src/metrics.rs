//! The gateway's Prometheus metrics: one struct, typed labels, names documented in
//! `docs/metrics.md`. Served as text on `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Which way a tunnelled connection goes through this gateway.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Direction {
    /// From a local client to a remote service.
    Outbound,
    /// From a remote client to a local service.
    Inbound,
}

/// Which way bytes flow, seen from the client of the tunnelled connection.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Flow {
    /// Client to service.
    Request,
    /// Service to client.
    Response,
}

/// Which end of a handshake this gateway was.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub enum Side {
    /// It accepted a peer's connection.
    Accept,
    /// It dialled a peer.
    Dial,
}

impl Side {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accept => "accept",
            Self::Dial => "dial",
        }
    }
}

/// The security of the gateway-to-gateway hop, Istio's `connection_security_policy`;
/// always mutual TLS today (a hop is never anything else), a label so that dashboards
/// written now keep working if a mode is added.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Security {
    /// Both gateways authenticated by SVID.
    MutualTls,
}

impl Direction {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Outbound => "outbound",
            Self::Inbound => "inbound",
        }
    }
}

impl Flow {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Response => "response",
        }
    }
}

impl Security {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MutualTls => "mutual_tls",
        }
    }
}

macro_rules! label_value {
    ($($ty:ty),*) => {$(
        impl EncodeLabelValue for $ty {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
                std::fmt::Write::write_str(encoder, self.as_str())
            }
        }
    )*};
}
label_value!(Direction, Flow, Security, Side);

/// Labels of a tunnelled connection.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnLabels {
    /// Outbound or inbound.
    pub direction: Direction,
    /// The source cluster of the traffic.
    pub source_cluster: String,
    /// `<service>.<namespace>`.
    pub destination_service: String,
    /// Security of the hop.
    pub security: Security,
}

/// Labels of bytes.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByteLabels {
    /// Outbound or inbound.
    pub direction: Direction,
    /// Request or response bytes.
    pub flow: Flow,
    /// The source cluster of the traffic.
    pub source_cluster: String,
    /// `<service>.<namespace>`.
    pub destination_service: String,
    /// Security of the hop.
    pub security: Security,
}

/// Labels of refused streams.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// Outbound (refused by the peer) or inbound (refused here).
    pub direction: Direction,
    /// The status label (`unknown_service`, `no_healthy_endpoint`, ...).
    pub status: String,
    /// `<service>.<namespace>`.
    pub destination_service: String,
}

/// Labels of authorization decisions at the receiving gateway.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// The source cluster (a verified peer).
    pub source_cluster: String,
    /// `<service>.<namespace>` (exported here, or `unknown`).
    pub destination_service: String,
    /// `allow`, `deny`, `shadow_deny` (a shadow deny matched an allowed connection),
    /// `shadow_allow` (a shadow allow matched a denied one), or `rate_limited`.
    pub decision: String,
    /// `policy/rule` or `policy/limit`, `default-deny`, `configured-peers`,
    /// `unusable-policies`.
    pub rule: String,
}

/// Labels of open connections cut because the policy no longer allows them.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RevokedLabels {
    /// The source cluster.
    pub source_cluster: String,
    /// `<service>.<namespace>`.
    pub destination_service: String,
    /// The rule that now denies them (`policy/rule`, `default-deny`, …).
    pub rule: String,
}

/// Labels of ingress HTTP requests.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IngressLabels {
    /// The host (TLS server name) as configured clients asked for it.
    pub host: String,
    /// `<service>.<namespace>` of the route, or `none`.
    pub destination_service: String,
    /// The HTTP status code answered.
    pub code: String,
}

/// Labels of egress decisions.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EgressLabels {
    /// The allow-list entry (`api.example.com`, `*.example.com`), or `unlisted`.
    pub host: String,
    /// The external port.
    pub port: String,
    /// `allow` or `deny`.
    pub decision: String,
}

/// Labels of handshake failures.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeLabels {
    /// `accept` (a peer dialled us) or `dial`.
    pub side: Side,
    /// The peer's cluster: the one dialled, or the one an accepted certificate claims
    /// when that is a peer of this gateway or a revoked cluster (else `unknown`: a
    /// refused certificate's claims are unverified and must not mint label values).
    pub peer_cluster: String,
    /// The verifier's reason label, or `no_certificate`, `timeout`, `unknown_peer`,
    /// `revoked` (a gateway of a cluster the federation revoked, its chain valid),
    /// `refused_by_peer`, `protocol`, `other`.
    pub reason: String,
}

/// Labels of certificate expiries.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `leaf`, `intermediate` or `root`.
    pub kind: String,
}

/// Labels of trust-bundle roots.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// `active` (trusted) or `retired` (removed, refused with its own reason).
    pub state: String,
}

/// Labels of stream-open latency.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    /// The peer cluster.
    pub peer_cluster: String,
}

/// Labels of dials to peer gateways.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DialLabels {
    /// The peer cluster.
    pub peer_cluster: String,
    /// `ok` or `failed`.
    pub result: String,
}

/// Which handshake failures: the side, the peer cluster, the reason.
pub type HandshakeKey = (Side, String, String);
/// How many, and the Unix second of the last.
pub type Seen = (u64, i64);

/// Reads live state into gauges.
type ReadGauges = Box<dyn Fn(&Metrics) + Send + Sync>;

/// What reads live state into gauges before a scrape.
#[derive(Default)]
struct ScrapeHook(std::sync::OnceLock<ReadGauges>);

impl std::fmt::Debug for ScrapeHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScrapeHook")
    }
}

/// Every metric of a gateway.
#[derive(Debug)]
pub struct Metrics {
    /// Tunnelled connections opened.
    pub connections_opened: Family<ConnLabels, Counter>,
    /// Tunnelled connections closed.
    pub connections_closed: Family<ConnLabels, Counter>,
    /// Tunnelled connections open now.
    pub connections_active: Family<ConnLabels, Gauge>,
    /// Bytes carried.
    pub bytes: Family<ByteLabels, Counter>,
    /// Streams refused with a status.
    pub refusals: Family<RefusalLabels, Counter>,
    /// Authorization decisions for inbound connections, by deciding rule.
    pub decisions: Family<DecisionLabels, Counter>,
    /// Open inbound connections cut because a policy change no longer allows them.
    pub connections_revoked: Family<RevokedLabels, Counter>,
    /// HTTP requests answered by the ingress.
    pub ingress_requests: Family<IngressLabels, Counter>,
    /// Egress decisions.
    pub egress_decisions: Family<EgressLabels, Counter>,
    /// QUIC/TLS handshakes that failed.
    pub handshake_failures: Family<HandshakeLabels, Counter>,
    /// When the certificates in use expire (the earliest of each kind), Unix seconds.
    pub certificate_not_after: Family<KindLabels, Gauge>,
    /// When the certificates in use began (of the earliest-expiring of each kind), so
    /// that an alert can tell a late renewal by the share of the lifetime left.
    pub certificate_not_before: Family<KindLabels, Gauge>,
    /// Roots of the trust bundle in force, by state.
    pub trust_bundle_roots: Family<StateLabels, Gauge>,
    /// 1 for each peer cluster with an open QUIC connection either way, else 0.
    pub peer_connected: Family<PeerLabels, Gauge>,
    /// Seconds from opening a stream to the peer's answer.
    pub stream_open_seconds: Family<PeerLabels, Histogram>,
    /// QUIC connections dialled to peer gateways.
    pub peer_dials: Family<DialLabels, Counter>,
    /// Seconds since the federation last confirmed the catalog (0 before any contact is
    /// impossible to tell apart from fresh, so it counts from the gateway's start).
    pub catalog_age_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// The catalog revision applied.
    pub catalog_revision: Gauge,
    /// 1 while the catalog watch is open.
    pub federation_connected: Gauge,
    /// Services imported from other clusters now.
    pub imported_services: Gauge,
    /// Leaf certificates renewed.
    pub certificate_renewals: Counter,
    /// Trust bundle replacements applied from the federation.
    pub bundle_updates: Counter,
    /// Access-log lines dropped because the writer fell behind.
    pub access_log_dropped: Counter,
    /// Sets the gauges read from live state just before each scrape.
    on_scrape: ScrapeHook,
    /// The handshake failures again, with when the last of each happened (for the
    /// federation's picture; the counter family cannot be read back).
    handshakes: std::sync::Mutex<std::collections::BTreeMap<HandshakeKey, Seen>>,
    registry: Registry,
}

impl Metrics {
    /// Counts one authorization decision of `source` for `service` by `rule`.
    pub(crate) fn count_decision(&self, source: &str, service: &str, decision: &str, rule: &str) {
        self.decisions
            .get_or_create(&DecisionLabels {
                source_cluster: source.to_owned(),
                destination_service: service.to_owned(),
                decision: decision.to_owned(),
                rule: rule.to_owned(),
            })
            .inc();
    }

    /// Counts an open connection cut by `rule` (`policy_revoked`).
    pub(crate) fn count_revoked(&self, source: String, service: String, rule: String) {
        self.connections_revoked
            .get_or_create(&RevokedLabels {
                source_cluster: source,
                destination_service: service,
                rule,
            })
            .inc();
    }

    /// Counts a policy verdict: its shadow finding, if any, and the decision.
    pub(crate) fn count_verdict(
        &self,
        source: &str,
        service: &str,
        verdict: &crate::authz::Verdict,
    ) {
        if let Some(shadow) = &verdict.shadow {
            let decision = if verdict.allowed {
                "shadow_deny"
            } else {
                "shadow_allow"
            };
            self.count_decision(source, service, decision, shadow);
        }
        let decision = if verdict.allowed { "allow" } else { "deny" };
        self.count_decision(source, service, decision, &verdict.rule);
    }

    /// Creates and registers every metric.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("isthmus_gateway");
        let metrics = Self {
            connections_opened: Family::default(),
            connections_closed: Family::default(),
            connections_active: Family::default(),
            bytes: Family::default(),
            refusals: Family::default(),
            decisions: Family::default(),
            connections_revoked: Family::default(),
            ingress_requests: Family::default(),
            egress_decisions: Family::default(),
            handshake_failures: Family::default(),
            certificate_not_after: Family::default(),
            certificate_not_before: Family::default(),
            trust_bundle_roots: Family::default(),
            peer_connected: Family::default(),
            stream_open_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
            }),
            peer_dials: Family::default(),
            catalog_age_seconds: Gauge::default(),
            catalog_revision: Gauge::default(),
            federation_connected: Gauge::default(),
            imported_services: Gauge::default(),
            certificate_renewals: Counter::default(),
            bundle_updates: Counter::default(),
            access_log_dropped: Counter::default(),
            on_scrape: ScrapeHook::default(),
            handshakes: Default::default(),
            registry: Registry::default(),
        };
        registry.register(
            "catalog_age_seconds",
            "Seconds since the federation last confirmed this gateway's catalog",
            metrics.catalog_age_seconds.clone(),
        );
        registry.register(
            "catalog_revision",
            "Federation catalog revision applied",
            metrics.catalog_revision.clone(),
        );
        registry.register(
            "federation_connected",
            "1 while the catalog watch to the federation is open",
            metrics.federation_connected.clone(),
        );
        registry.register(
            "imported_services",
            "Services imported from other clusters",
            metrics.imported_services.clone(),
        );
        registry.register(
            "certificate_renewals",
            "Leaf certificates renewed",
            metrics.certificate_renewals.clone(),
        );
        registry.register(
            "trust_bundle_updates",
            "Trust bundle replacements applied from the federation",
            metrics.bundle_updates.clone(),
        );
        registry.register(
            "access_log_dropped",
            "Access-log lines dropped because the writer fell behind the traffic",
            metrics.access_log_dropped.clone(),
        );
        registry.register(
            "connections_opened",
            "Tunnelled TCP connections opened",
            metrics.connections_opened.clone(),
        );
        registry.register(
            "connections_closed",
            "Tunnelled TCP connections closed",
            metrics.connections_closed.clone(),
        );
        registry.register(
            "connections_active",
            "Tunnelled TCP connections open now",
            metrics.connections_active.clone(),
        );
        registry.register(
            "bytes",
            "Bytes carried through tunnels",
            metrics.bytes.clone(),
        );
        registry.register(
            "stream_refusals",
            "Tunnel streams refused with a status",
            metrics.refusals.clone(),
        );
        registry.register(
            "authorization_decisions",
            "Authorization decisions for inbound connections, by the rule or limit that decided",
            metrics.decisions.clone(),
        );
        registry.register(
            "connections_revoked",
            "Open inbound connections cut because a policy change no longer allows them, by the rule that now denies them",
            metrics.connections_revoked.clone(),
        );
        registry.register(
            "ingress_requests",
            "HTTP requests answered by the ingress, by host, service and status code",
            metrics.ingress_requests.clone(),
        );
        registry.register(
            "egress_decisions",
            "Egress connections allowed or denied, by allow-list entry and port",
            metrics.egress_decisions.clone(),
        );
        registry.register(
            "handshake_failures",
            "QUIC/TLS handshakes with peer gateways that failed, by reason",
            metrics.handshake_failures.clone(),
        );
        registry.register(
            "certificate_not_after_seconds",
            "When the certificates in use expire (the earliest of each kind), in Unix seconds",
            metrics.certificate_not_after.clone(),
        );
        registry.register(
            "certificate_not_before_seconds",
            "When the earliest-expiring certificate of each kind began, in Unix seconds",
            metrics.certificate_not_before.clone(),
        );
        registry.register(
            "trust_bundle_roots",
            "Roots of the trust bundle in force, by state (active or retired)",
            metrics.trust_bundle_roots.clone(),
        );
        registry.register(
            "peer_connected",
            "1 for each peer cluster with an open QUIC connection either way, else 0",
            metrics.peer_connected.clone(),
        );
        registry.register(
            "stream_open_seconds",
            "Seconds from opening a tunnel stream to the peer's answer",
            metrics.stream_open_seconds.clone(),
        );
        registry.register(
            "peer_dials",
            "QUIC connections dialled to peer gateways, by result",
            metrics.peer_dials.clone(),
        );
        Arc::new(Self {
            registry,
            ..metrics
        })
    }

    /// Counts a handshake failure with `peer_cluster` on `side`.
    pub fn handshake_failed(&self, side: Side, peer_cluster: &str, reason: &str) {
        self.handshake_failures
            .get_or_create(&HandshakeLabels {
                side,
                peer_cluster: peer_cluster.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let mut seen = self.handshakes.lock().unwrap_or_else(|p| p.into_inner());
        let slot = seen
            .entry((side, peer_cluster.to_owned(), reason.to_owned()))
            .or_default();
        slot.0 += 1;
        slot.1 = now;
    }

    /// Every handshake failure so far by side, peer cluster and reason: how many, and
    /// the Unix second of the last.
    pub fn handshake_failures_seen(&self) -> Vec<(HandshakeKey, Seen)> {
        let seen = self.handshakes.lock().unwrap_or_else(|p| p.into_inner());
        seen.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Sets how the gauges of live state are read before each scrape (once).
    pub(crate) fn on_scrape(&self, read: ReadGauges) {
        let _ = self.on_scrape.0.set(read);
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        if let Some(read) = self.on_scrape.0.get() {
            read(self);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Serves `/metrics` on `listener` until `stop` is cancelled.
pub async fn serve(
    metrics: Arc<Metrics>,
    listener: TcpListener,
    stop: CancellationToken,
) -> std::io::Result<()> {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics.encode(),
                )
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
}

/// Binds the metrics listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
