//! One gateway's whole life, in one place. [`Gateway::start`] makes its identity —
//! certificate files (`[tls]`), or enrollment in a federation (`[federation]`); tests
//! and benchmarks may hand one over in memory — binds every listener the config names
//! and starts serving them; [`Gateway::run`] serves until told to stop, then drains.
//! The CLI only prints what `start` returns.
//!
//! ```text
//!   app ─TCP─▶ import listener ─┐                           ┌─▶ inbound stream ─TCP─▶ endpoint
//!   app ─TLS─▶ SNI listener ────┼─▶ peer pool ══QUIC══▶ peer │  (admission, endpoints)
//!   client ──▶ ingress ─────────┘                           peer ══QUIC══▶ this endpoint
//!   app ─────▶ egress ──▶ allow-listed host outside
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use isthmus_ca::verify::ExpectedIdentity;
use isthmus_ca::verify::tls::SpiffeVerifier;
use isthmus_ca::{SharedBundle, SpiffeId};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::access_log::AccessLog;
use crate::admission::{Admission, Refusal, Request, Source};
use crate::authz::{Authorization, Limiter};
use crate::catalog::{Catalog, SharedCatalog};
use crate::config::{GatewayConfig, ImportEntry, Timeouts};
use crate::connections::Connections;
use crate::identity::{GatewayIdentity, IdentityError};
use crate::ingress::IngressAddrs;
use crate::live_cert::LiveCert;
use crate::membership::MemberTasks;
use crate::membership::identity::MembershipError;
use crate::metrics::{KindLabels, Metrics, PeerLabels, Side, StateLabels};
use crate::peers::PeerPool;
use crate::quic::quic_server_config;

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A listener could not bind.
    #[error("cannot listen on {what} {addr}: {source}")]
    Bind {
        /// Which listener (config field).
        what: String,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TLS or QUIC configuration was refused.
    #[error("TLS/QUIC configuration: {0}")]
    Tls(String),
    /// The certificate files are unusable.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// Enrollment in the federation, or its certificates, failed.
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// The access log cannot be opened.
    #[error(transparent)]
    AccessLog(#[from] crate::access_log::AccessLogError),
    /// The trace exporter cannot be set up.
    #[error(transparent)]
    Tracing(#[from] crate::telemetry::TracingError),
    /// The Workload API's socket cannot be made.
    #[error(transparent)]
    WorkloadApi(#[from] crate::workload_api::SocketError),
    /// The config names no way to get an identity (built in code without `[tls]` or
    /// `[federation]`; a config file that does is refused when it is loaded).
    #[error("tls: neither certificate files nor a [federation] section")]
    NoIdentity,
}

/// Who this gateway is and how patient it is: fixed at start.
#[derive(Debug)]
pub(crate) struct Me {
    /// Its cluster.
    pub(crate) cluster: String,
    /// Its SPIFFE ID (stable across renewals).
    pub(crate) id: SpiffeId,
    /// Its timeouts.
    pub(crate) timeouts: Timeouts,
    /// Its bound QUIC address.
    pub(crate) quic: SocketAddr,
}

/// Where services that are not exported here are: the config's static imports, and
/// what the federation says (member gateways).
#[derive(Debug, Default)]
pub(crate) struct Routes {
    /// Static imports, for routes that name a service (ingress).
    pub(crate) imports: Vec<ImportEntry>,
    /// Who exports what, as the federation says.
    pub(crate) federation: std::sync::RwLock<crate::membership::imports::Routes>,
}

/// Every tunnelled connection's task, and the two signals drain gives them.
#[derive(Debug, Default)]
pub(crate) struct Tunnels {
    tracker: TaskTracker,
    /// Cancelled when the gateway stops accepting (drain begins).
    pub(crate) stop: CancellationToken,
    /// Cancelled at the drain deadline: live tunnels are cut.
    pub(crate) cut: CancellationToken,
}

impl Tunnels {
    /// Runs `task` as a tracked tunnel: drain waits for it.
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(task);
    }

    /// Tunnels open now.
    pub(crate) fn live(&self) -> usize {
        self.tracker.len()
    }
}

/// State shared by every task of a gateway, by concern.
pub(crate) struct Shared {
    /// Who it is.
    pub(crate) me: Me,
    /// The services and peers in force.
    pub(crate) catalog: SharedCatalog,
    /// Where services not exported here are.
    pub(crate) routes: Routes,
    /// Its peer connections, both ways.
    pub(crate) connections: Connections,
    /// Connection limits' buckets and counts.
    pub(crate) limiter: Arc<Limiter>,
    /// Its metrics.
    pub(crate) metrics: Arc<Metrics>,
    /// Its tunnels' tasks and drain signals.
    pub(crate) tunnels: Tunnels,
    /// Its access log.
    pub(crate) access_log: AccessLog,
    /// What it saw of each inbound edge, for the federation's picture.
    pub(crate) traffic: crate::traffic::Traffic,
    /// The tunnels open to its exports, decided again when the policy changes.
    pub(crate) open_tunnels: crate::open_tunnels::OpenTunnels,
    /// Its tracer.
    pub(crate) tracing: crate::telemetry::Tracing,
    request_ids: AtomicU64,
    random: AtomicU64,
}

impl Shared {
    pub(crate) fn next_request_id(&self) -> u64 {
        self.request_ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Admits `request` against what is in force now (the catalog, the policy, the
    /// limits), and counts and logs what the policy or a limit decided: the one decision
    /// for peers' streams and ingress requests. `request_id` is the stream's, for the log.
    pub(crate) fn admit(
        &self,
        request: &Request<'_>,
        request_id: Option<u64>,
    ) -> Result<Admission, Refusal> {
        let catalog = self.catalog.current();
        let here = crate::admission::Here {
            cluster: &self.me.cluster,
            trust_domain: self.me.id.trust_domain(),
            catalog: &catalog,
            limiter: &self.limiter,
        };
        let decided =
            crate::admission::admit(&here, request, std::time::Instant::now(), self.sample());
        let (label, verdict, limit) = match &decided {
            Ok(admitted) => (&admitted.label, Some(&admitted.verdict), None),
            Err(refused) => (
                &refused.label,
                refused.verdict.as_deref(),
                refused.limit.as_deref(),
            ),
        };
        let (source, identity) = match request.source {
            Source::Peer { cluster, identity } => (cluster, Some(identity)),
            Source::Ingress => (self.me.cluster.as_str(), None),
        };
        let http = request.http;
        if let Some(verdict) = verdict {
            self.metrics.count_verdict(source, label, verdict);
            if let Some(shadow) = &verdict.shadow {
                let would = if verdict.allowed { "deny" } else { "allow" };
                tracing::info!(request = request_id, source, identity = ?identity, service = %label, ?http, rule = %shadow, would, "shadow rule would decide otherwise");
            }
            if !verdict.allowed {
                tracing::warn!(request = request_id, source, identity = ?identity, service = %label, ?http, rule = %verdict.rule, "denied by authorization policy");
            }
        }
        if let Some(limit) = limit {
            self.metrics
                .count_decision(source, label, "rate_limited", limit);
        }
        decided
    }

    /// The header of a new stream to `target` from this gateway, in the trace `trace`.
    pub(crate) fn stream_header(
        &self,
        target: &crate::outbound::RemoteService,
        source: SpiffeId,
        trace: Option<crate::telemetry::TraceParent>,
    ) -> crate::header::StreamHeader {
        crate::header::StreamHeader {
            request_id: self.next_request_id(),
            namespace: target.namespace.clone(),
            service: target.name.clone(),
            port: target.port,
            source,
            trace,
        }
    }

    /// A cheap pseudo-random sample for load-balancing choices (xorshift).
    pub(crate) fn sample(&self) -> u64 {
        let mut x = self.random.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.random.store(x, Ordering::Relaxed);
        x
    }
}

/// Where a started gateway listens.
#[derive(Debug, Clone)]
pub struct Addresses {
    /// The QUIC endpoint (peers dial it).
    pub quic: SocketAddr,
    /// The metrics endpoint.
    pub metrics: Option<SocketAddr>,
    /// The SNI listener.
    pub sni: Option<SocketAddr>,
    /// The DNS server (UDP and TCP), for a member with `[dns]`.
    pub dns: Option<SocketAddr>,
    /// The workload mTLS listener, for a member with `[workload_api] mtls_listen`.
    pub workload_mtls: Option<SocketAddr>,
    /// Each static import with its bound address.
    pub imports: Vec<(ImportEntry, SocketAddr)>,
    /// The ingress listeners.
    pub ingress: Option<IngressAddrs>,
    /// The egress listeners, in config order.
    pub egress: Vec<SocketAddr>,
}

/// A running gateway.
pub struct Gateway {
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    tasks: TaskTracker,
    /// The watch, renewal and DNS of a federation member.
    member: Option<MemberTasks>,
    addresses: Addresses,
    revision: tokio::sync::watch::Receiver<u64>,
    drain: Duration,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("cluster", &self.shared.me.cluster)
            .field("addresses", &self.addresses)
            .finish_non_exhaustive()
    }
}

/// What a drain achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Whether every live connection finished before the deadline.
    pub completed: bool,
    /// Connections still open at the deadline (cut).
    pub cut: usize,
}

/// What a gateway presents and trusts, both replaceable while it runs.
#[derive(Debug, Clone)]
pub struct GatewayTls {
    /// The roots peers must chain to.
    pub bundle: SharedBundle,
    /// This gateway's certificate.
    pub cert: Arc<LiveCert>,
    /// Its SPIFFE ID (stable across renewals).
    pub id: SpiffeId,
    /// The stateless-reset key.
    pub reset_key: Arc<ring::hmac::Key>,
}

impl GatewayTls {
    /// From a fixed identity (certificate files).
    pub fn from_identity(identity: &GatewayIdentity) -> Result<Self, StartError> {
        Ok(Self {
            bundle: SharedBundle::new(identity.bundle.clone()),
            cert: LiveCert::new(identity.chain.clone(), &identity.key)
                .map_err(|e| StartError::Tls(e.to_string()))?,
            id: identity.id.clone(),
            reset_key: Arc::new(identity.reset_key()),
        })
    }
}

/// The cluster a refused certificate claims, when it is a peer of this gateway or a
/// revoked cluster; else `unknown` (the claim is unverified: it may only pick among
/// known label values).
fn claimed_peer(cert: &rustls_pki_types::CertificateDer<'_>, catalog: &Catalog) -> String {
    let cluster = isthmus_ca::CertFacts::parse(cert)
        .ok()
        .and_then(|facts| SpiffeId::parse(facts.uris.first()?).ok())
        .and_then(|id| match id.identity().ok()? {
            isthmus_ca::Identity::Gateway { cluster, .. }
            | isthmus_ca::Identity::Workload { cluster, .. } => Some(cluster),
            _ => None,
        });
    match cluster {
        Some(cluster) if catalog.peer(&cluster).is_some() || catalog.is_revoked(&cluster) => {
            cluster
        }
        _ => crate::admission::UNKNOWN.to_owned(),
    }
}

/// The certificates in use and the bundle in force, as the gauges and the status
/// report give them.
pub(crate) struct TlsFacts {
    /// `(kind, not_after, not_before)` of the earliest-expiring certificate of each kind.
    pub(crate) certificates: Vec<(&'static str, i64, i64)>,
    /// Fingerprints of the roots in force.
    pub(crate) active_roots: Vec<String>,
    /// Fingerprints of the retired roots.
    pub(crate) retired_roots: Vec<String>,
}

impl TlsFacts {
    pub(crate) fn read(cert: &LiveCert, bundle: &SharedBundle) -> Self {
        let validity = |der: &rustls_pki_types::CertificateDer<'_>| {
            isthmus_ca::CertFacts::parse(der)
                .ok()
                .map(|f| (f.not_after, f.not_before))
        };
        let chain = cert.chain();
        let bundle = bundle.current();
        let mut certificates = Vec::new();
        let mut earliest = |kind: &'static str, certs: Vec<(i64, i64)>| {
            if let Some((end, start)) = certs.into_iter().min() {
                certificates.push((kind, end, start));
            }
        };
        earliest(
            "leaf",
            chain.first().and_then(validity).into_iter().collect(),
        );
        earliest(
            "intermediate",
            chain.iter().skip(1).filter_map(validity).collect(),
        );
        earliest(
            "root",
            bundle
                .roots()
                .iter()
                .map(|r| (r.facts.not_after, r.facts.not_before))
                .collect(),
        );
        let prints = |roots: &[isthmus_ca::Root]| {
            roots
                .iter()
                .map(|r| isthmus_ca::fingerprint(&r.der))
                .collect()
        };
        Self {
            certificates,
            active_roots: prints(bundle.roots()),
            retired_roots: prints(bundle.retired()),
        }
    }
}

/// Sets the gauges that read live state: certificate expiries, bundle roots, peers
/// connected.
fn read_live_gauges(m: &Metrics, shared: &Shared, cert: &LiveCert, bundle: &SharedBundle) {
    let facts = TlsFacts::read(cert, bundle);
    for (kind, end, start) in &facts.certificates {
        let kind = KindLabels {
            kind: (*kind).into(),
        };
        m.certificate_not_after.get_or_create(&kind).set(*end);
        m.certificate_not_before.get_or_create(&kind).set(*start);
    }
    for (state, count) in [
        ("active", facts.active_roots.len()),
        ("retired", facts.retired_roots.len()),
    ] {
        m.trust_bundle_roots
            .get_or_create(&StateLabels {
                state: state.into(),
            })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
    let connected = shared.connections.connected();
    let catalog = shared.catalog.current();
    // Peers no longer in the catalog drop out of the gauge.
    m.peer_connected.clear();
    for peer in catalog.peer_clusters() {
        m.peer_connected
            .get_or_create(&PeerLabels {
                peer_cluster: peer.to_owned(),
            })
            .set(i64::from(connected.contains(peer)));
    }
}

async fn bind_tcp(what: String, addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let bound = TcpListener::bind(addr).await;
    let bind_err = |source| StartError::Bind {
        what: what.clone(),
        addr,
        source,
    };
    let listener = bound.map_err(bind_err)?;
    let local = listener.local_addr().map_err(bind_err)?;
    Ok((listener, local))
}

/// Binds the listeners the config names besides QUIC and starts serving each; the first
/// that cannot bind fails the whole start.
async fn serve_listeners(
    config: &GatewayConfig,
    shared: &Arc<Shared>,
    tasks: &TaskTracker,
    quic_addr: SocketAddr,
    base: &Path,
) -> Result<Addresses, StartError> {
    let mut addresses = Addresses {
        quic: quic_addr,
        metrics: None,
        sni: None,
        dns: None,
        workload_mtls: None,
        imports: Vec::new(),
        ingress: None,
        egress: Vec::new(),
    };
    for (i, import) in config.imports.iter().enumerate() {
        let (listener, local) = bind_tcp(format!("imports[{i}].listen"), import.listen).await?;
        addresses.imports.push((import.clone(), local));
        tasks.spawn(crate::outbound::serve_import(
            listener,
            import.clone(),
            shared.clone(),
        ));
    }
    if let Some(addr) = config.listen.sni {
        let (listener, local) = bind_tcp("listen.sni".into(), addr).await?;
        addresses.sni = Some(local);
        tasks.spawn(crate::outbound::serve_sni(
            listener,
            config.imports.clone(),
            shared.clone(),
        ));
    }
    if let Some(addr) = config.listen.metrics {
        let (listener, local) = bind_tcp("listen.metrics".into(), addr).await?;
        addresses.metrics = Some(local);
        let (stop, metrics) = (shared.tunnels.stop.clone(), shared.metrics.clone());
        tasks.spawn(async move {
            if let Err(e) = crate::metrics::serve(metrics, listener, stop).await {
                tracing::error!(error = %e, "metrics endpoint failed");
            }
        });
    }
    if let Some(settings) = &config.ingress {
        addresses.ingress = Some(crate::ingress::start(shared, settings, base).await?);
    }
    if let Some(settings) = &config.egress {
        addresses.egress = crate::egress::start(shared, settings, base).await?;
    }
    Ok(addresses)
}

impl Gateway {
    /// Starts the gateway of `config` (relative paths against `base`): its identity
    /// from its `[tls]` files or by enrollment in its federation, every listener bound,
    /// every task serving. A port-0 address is resolved in [`Self::addresses`].
    pub async fn start(config: GatewayConfig, base: &Path) -> Result<Self, StartError> {
        match (&config.tls, &config.federation) {
            (Some(files), _) => {
                let identity = GatewayIdentity::load(files, base, &config.cluster)?;
                Self::start_with_identity(config, identity, base).await
            }
            (None, Some(_)) => crate::membership::start(config, base).await,
            (None, None) => Err(StartError::NoIdentity),
        }
    }

    /// [`Self::start`] with an identity handed over in memory (tests, benchmarks).
    pub async fn start_with_identity(
        config: GatewayConfig,
        identity: GatewayIdentity,
        base: &Path,
    ) -> Result<Self, StartError> {
        Self::bind(config, GatewayTls::from_identity(&identity)?, base).await
    }

    /// Binds and serves everything but what membership adds (the watch, DNS).
    pub(crate) async fn bind(
        config: GatewayConfig,
        tls: GatewayTls,
        base: &Path,
    ) -> Result<Self, StartError> {
        let metrics = Metrics::new();
        // A federation member denies everything until the federation's policies arrive.
        let authorization = if config.federation.is_some() {
            Authorization::default()
        } else {
            Authorization::ConfiguredPeers
        };
        let catalog = SharedCatalog::new(Catalog::new(
            &config.exports,
            &config.peers,
            config.outlier,
            authorization,
        ));
        let server_verifier = SpiffeVerifier::with_observer(
            tls.bundle.clone(),
            ExpectedIdentity::AnyGateway,
            Arc::new({
                let (metrics, catalog) = (metrics.clone(), catalog.clone());
                move |e, cert| {
                    let claimed = claimed_peer(cert, &catalog.current());
                    metrics.handshake_failed(Side::Accept, &claimed, e.reason());
                }
            }),
        );
        let server_config = quic_server_config(server_verifier, tls.cert.clone())
            .map_err(|e| StartError::Tls(e.to_string()))?;
        let quic_err = |source| StartError::Bind {
            what: "listen.quic".into(),
            addr: config.listen.quic,
            source,
        };
        let socket = crate::quic::bind_udp(config.listen.quic).map_err(quic_err)?;
        let endpoint = crate::quic::endpoint(
            crate::quic::endpoint_config(tls.reset_key.clone()),
            Some(server_config),
            socket,
        )
        .map_err(quic_err)?;
        let quic_addr = endpoint.local_addr().map_err(quic_err)?;

        let seed = {
            let digest = ring::digest::digest(&ring::digest::SHA256, tls.id.as_str().as_bytes());
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&digest.as_ref()[..8]);
            u64::from_le_bytes(bytes) | 1
        };
        let access_log = match &config.access_log {
            Some(settings) => AccessLog::open(settings, base, metrics.access_log_dropped.clone())?,
            None => AccessLog::default(),
        };
        let tracing = match &config.tracing {
            Some(settings) => {
                crate::telemetry::Tracing::start(settings, &config.cluster, tls.id.as_str())?
            }
            None => crate::telemetry::Tracing::default(),
        };
        // Request ids start at random, so that ids from different gateways (and restarts)
        // do not collide in the logs that gather them.
        let first_request_id = {
            let mut bytes = [0u8; 8];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
                .map_err(|_| StartError::Tls("no system randomness".into()))?;
            u64::from_le_bytes(bytes) >> 1
        };
        let pool = PeerPool::new(
            endpoint.clone(),
            catalog.clone(),
            tls.bundle.clone(),
            tls.cert.clone(),
            metrics.clone(),
        );
        let shared = Arc::new(Shared {
            me: Me {
                cluster: config.cluster.clone(),
                id: tls.id.clone(),
                timeouts: config.timeouts,
                quic: quic_addr,
            },
            catalog,
            routes: Routes {
                imports: config.imports.clone(),
                federation: Default::default(),
            },
            connections: Connections::new(pool),
            limiter: Arc::default(),
            metrics: metrics.clone(),
            tunnels: Tunnels::default(),
            access_log,
            traffic: Default::default(),
            open_tunnels: Default::default(),
            tracing,
            request_ids: AtomicU64::new(first_request_id),
            random: AtomicU64::new(seed),
        });

        metrics.on_scrape(Box::new({
            let shared = Arc::downgrade(&shared);
            let (cert, bundle) = (tls.cert.clone(), tls.bundle.clone());
            move |m| {
                if let Some(shared) = shared.upgrade() {
                    read_live_gauges(m, &shared, &cert, &bundle);
                }
            }
        }));
        let tasks = TaskTracker::new();
        let addresses = match serve_listeners(&config, &shared, &tasks, quic_addr, base).await {
            Ok(addresses) => addresses,
            Err(e) => {
                // Whatever was bound already stops accepting and lets go of its port.
                shared.tunnels.stop.cancel();
                endpoint.close(0u32.into(), b"gateway failed to start");
                return Err(e);
            }
        };
        tasks.spawn(crate::inbound::serve(endpoint.clone(), shared.clone()));
        tracing::info!(cluster = %config.cluster, id = %tls.id, quic = %quic_addr, "gateway started");
        let (_, revision) = tokio::sync::watch::channel(0);
        Ok(Self {
            shared,
            endpoint,
            tasks,
            member: None,
            addresses,
            revision,
            drain: config.timeouts.drain,
        })
    }

    /// Makes this gateway a federation member: its watch and renewal tasks, its DNS.
    pub(crate) fn join(
        &mut self,
        member: MemberTasks,
        dns: Option<SocketAddr>,
        workload_mtls: Option<SocketAddr>,
        revision: tokio::sync::watch::Receiver<u64>,
    ) {
        self.member = Some(member);
        self.addresses.dns = dns;
        self.addresses.workload_mtls = workload_mtls;
        self.revision = revision;
    }

    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Where it listens.
    pub fn addresses(&self) -> &Addresses {
        &self.addresses
    }

    /// The bound QUIC address.
    pub fn quic_addr(&self) -> SocketAddr {
        self.addresses.quic
    }

    /// The gateway's metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    /// The runtime catalog, replaceable while running.
    pub fn catalog(&self) -> SharedCatalog {
        self.shared.catalog.clone()
    }

    /// This gateway's SPIFFE ID.
    pub fn id(&self) -> &SpiffeId {
        &self.shared.me.id
    }

    /// The federation catalog revision applied (stays 0 for a gateway that is no
    /// member).
    pub fn revision(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revision.clone()
    }

    /// Its access log (the CLI reopens it on SIGHUP).
    pub fn access_log(&self) -> AccessLog {
        self.shared.access_log.clone()
    }

    /// Tunnelled connections open now.
    pub fn live_connections(&self) -> usize {
        self.shared.tunnels.live()
    }

    /// Serves until `shutdown` resolves, then drains within the config's
    /// `timeouts.drain`.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> DrainReport {
        shutdown.await;
        let deadline = self.drain;
        self.drain(deadline).await
    }

    /// Stops accepting, lets live connections finish for up to `deadline`, cuts what is
    /// left, then closes everything. While draining, peers' new connections and streams
    /// are refused at once (not left to time out). A member first stops its watch,
    /// renewal and DNS.
    pub async fn drain(self, deadline: Duration) -> DrainReport {
        if let Some(member) = self.member {
            member.stop().await;
        }
        let tunnels = &self.shared.tunnels;
        tunnels.stop.cancel();
        tunnels.tracker.close();
        let completed = tokio::time::timeout(deadline, tunnels.tracker.wait())
            .await
            .is_ok();
        let cut = tunnels.live();
        tunnels.cut.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), tunnels.tracker.wait()).await;
        self.endpoint.close(0u32.into(), b"gateway shutting down");
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.tasks.wait()).await;
        let (log, tracing) = (self.shared.access_log.clone(), self.shared.tracing.clone());
        let _ = tokio::task::spawn_blocking(move || {
            log.flush();
            tracing.shutdown();
        })
        .await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        tracing::info!(cluster = %self.shared.me.cluster, completed, cut, "gateway stopped");
        DrainReport { completed, cut }
    }

    /// Stops at once, cutting live connections (for tests of restarts).
    pub async fn abort(self) {
        self.drain(Duration::ZERO).await;
    }
}
