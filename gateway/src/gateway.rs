//! Wiring one gateway: the QUIC endpoint (serving peers and dialling them), the import
//! listeners, the SNI listener, the metrics endpoint, and drain on shutdown.
//!
//! ```text
//!   app ─TCP─▶ import listener ─┐                          ┌─▶ inbound stream ─TCP─▶ endpoint
//!   app ─TLS─▶ SNI listener ────┴─▶ peer pool ══QUIC══▶ peer │  (header, authz, LB)
//!                                                          peer ══QUIC══▶ this endpoint
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use isthmus_ca::SharedBundle;
use isthmus_ca::verify::ExpectedIdentity;
use isthmus_ca::verify::tls::SpiffeVerifier;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::authz::Authorization;
use crate::catalog::{Catalog, SharedCatalog};
use crate::config::{GatewayConfig, ImportEntry, Timeouts};
use crate::identity::GatewayIdentity;
use crate::live_cert::LiveCert;
use crate::metrics::Metrics;
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
}

/// State shared by every task of a gateway.
pub(crate) struct Shared {
    pub(crate) cluster: String,
    pub(crate) own_id: isthmus_ca::SpiffeId,
    pub(crate) catalog: SharedCatalog,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) timeouts: Timeouts,
    pub(crate) pool: PeerPool,
    /// Live tunnelled connections; drain waits for them.
    pub(crate) tunnels: TaskTracker,
    /// Cancelled when the gateway stops accepting (drain begins).
    pub(crate) stop: CancellationToken,
    /// Cancelled at the drain deadline: live tunnels are cut.
    pub(crate) cut: CancellationToken,
    /// Peer connections accepted and open, by stable id, so that a cluster that stops
    /// being a peer (revoked) is cut at once.
    pub(crate) inbound:
        std::sync::Mutex<std::collections::HashMap<usize, (String, quinn::Connection)>>,
    /// Connection limits' buckets and counts.
    pub(crate) limiter: Arc<crate::authz::Limiter>,
    /// The config's static imports, for routes that name a service (ingress).
    pub(crate) static_imports: Vec<ImportEntry>,
    /// Who exports what, as the federation says (member gateways).
    pub(crate) import_routes: Arc<std::sync::RwLock<crate::membership::imports::Routes>>,
    request_ids: AtomicU64,
    random: AtomicU64,
}

impl Shared {
    /// Closes every connection with `cluster`'s gateways, both ways.
    pub(crate) async fn cut_cluster(&self, cluster: &str, reason: &str) {
        let cut: Vec<quinn::Connection> = self
            .inbound
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|(c, _)| c == cluster)
            .map(|(_, conn)| conn.clone())
            .collect();
        for conn in cut {
            conn.close(2u32.into(), reason.as_bytes());
        }
        self.pool.close(cluster, reason).await;
    }

    pub(crate) fn next_request_id(&self) -> u64 {
        self.request_ids.fetch_add(1, Ordering::Relaxed)
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

/// A running gateway.
pub struct RunningGateway {
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    tasks: TaskTracker,
    /// The bound QUIC address.
    pub quic_addr: SocketAddr,
    /// The bound metrics address.
    pub metrics_addr: Option<SocketAddr>,
    /// The bound SNI listener address.
    pub sni_addr: Option<SocketAddr>,
    /// Each import with its bound address.
    pub imports: Vec<(ImportEntry, SocketAddr)>,
}

impl std::fmt::Debug for RunningGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningGateway")
            .field("cluster", &self.shared.cluster)
            .field("quic_addr", &self.quic_addr)
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
    pub id: isthmus_ca::SpiffeId,
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

/// Starts a gateway. Binding happens here, so a port-0 address is resolved in the result.
pub async fn start(
    config: GatewayConfig,
    identity: GatewayIdentity,
) -> Result<RunningGateway, StartError> {
    start_with(config, GatewayTls::from_identity(&identity)?).await
}

/// Starts a gateway with live TLS material.
pub async fn start_with(
    config: GatewayConfig,
    tls: GatewayTls,
) -> Result<RunningGateway, StartError> {
    let metrics = Metrics::new();
    let bundle = tls.bundle.clone();
    let observer_metrics = metrics.clone();
    let server_verifier = SpiffeVerifier::with_observer(
        bundle.clone(),
        ExpectedIdentity::AnyGateway,
        Arc::new(move |e| observer_metrics.handshake_failed(e.reason())),
    );
    let server_config = quic_server_config(server_verifier, tls.cert.clone())
        .map_err(|e| StartError::Tls(e.to_string()))?;
    let socket = crate::quic::bind_udp(config.listen.quic).map_err(|source| StartError::Bind {
        what: "listen.quic".into(),
        addr: config.listen.quic,
        source,
    })?;
    let endpoint_config = quinn::EndpointConfig::new(tls.reset_key.clone());
    let endpoint = quinn::Endpoint::new(
        endpoint_config,
        Some(server_config),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|source| StartError::Bind {
        what: "listen.quic".into(),
        addr: config.listen.quic,
        source,
    })?;
    let quic_addr = endpoint.local_addr().map_err(|source| StartError::Bind {
        what: "listen.quic".into(),
        addr: config.listen.quic,
        source,
    })?;

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
    let seed = {
        let digest = ring::digest::digest(&ring::digest::SHA256, tls.id.as_str().as_bytes());
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&digest.as_ref()[..8]);
        u64::from_le_bytes(bytes) | 1
    };
    let shared = Arc::new(Shared {
        cluster: config.cluster.clone(),
        own_id: tls.id.clone(),
        catalog: catalog.clone(),
        metrics: metrics.clone(),
        timeouts: config.timeouts,
        pool: PeerPool::new(
            endpoint.clone(),
            catalog,
            bundle,
            tls.cert.clone(),
            metrics.clone(),
        ),
        tunnels: TaskTracker::new(),
        stop: CancellationToken::new(),
        cut: CancellationToken::new(),
        inbound: std::sync::Mutex::new(std::collections::HashMap::new()),
        limiter: Arc::default(),
        static_imports: config.imports.clone(),
        import_routes: Arc::default(),
        request_ids: AtomicU64::new(1),
        random: AtomicU64::new(seed),
    });

    let bind = |what: String, addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { what, addr, source })
    };
    let tasks = TaskTracker::new();
    let mut imports = Vec::new();
    for (i, import) in config.imports.iter().enumerate() {
        let listener = bind(format!("imports[{i}].listen"), import.listen).await?;
        let local = listener.local_addr().map_err(|source| StartError::Bind {
            what: format!("imports[{i}].listen"),
            addr: import.listen,
            source,
        })?;
        imports.push((import.clone(), local));
        tasks.spawn(crate::outbound::serve_import(
            listener,
            import.clone(),
            shared.clone(),
        ));
    }
    let sni_addr = match config.listen.sni {
        Some(addr) => {
            let listener = bind("listen.sni".into(), addr).await?;
            let local = listener.local_addr().ok();
            tasks.spawn(crate::outbound::serve_sni(
                listener,
                config.imports.clone(),
                shared.clone(),
            ));
            local
        }
        None => None,
    };
    let metrics_addr = match config.listen.metrics {
        Some(addr) => {
            let listener = bind("listen.metrics".into(), addr).await?;
            let local = listener.local_addr().ok();
            let stop = shared.stop.clone();
            let metrics = metrics.clone();
            tasks.spawn(async move {
                if let Err(e) = crate::metrics::serve(metrics, listener, stop).await {
                    tracing::error!(error = %e, "metrics endpoint failed");
                }
            });
            local
        }
        None => None,
    };
    tasks.spawn(crate::inbound::serve(endpoint.clone(), shared.clone()));
    tracing::info!(cluster = %config.cluster, id = %tls.id, quic = %quic_addr, "gateway started");
    Ok(RunningGateway {
        shared,
        endpoint,
        tasks,
        quic_addr,
        metrics_addr,
        sni_addr,
        imports,
    })
}

impl RunningGateway {
    /// The gateway's metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    /// The runtime catalog, replaceable while running.
    pub fn catalog(&self) -> SharedCatalog {
        self.shared.catalog.clone()
    }

    /// This gateway's SPIFFE ID.
    pub fn id(&self) -> &isthmus_ca::SpiffeId {
        &self.shared.own_id
    }

    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Tunnelled connections open now.
    pub fn live_connections(&self) -> usize {
        self.shared.tunnels.len()
    }

    /// Stops accepting, lets live connections finish for up to `deadline`, cuts what is
    /// left, then closes everything. While draining, peers' new connections and streams
    /// are refused at once (not left to time out).
    pub async fn drain(self, deadline: Duration) -> DrainReport {
        self.shared.stop.cancel();
        self.shared.tunnels.close();
        let completed = tokio::time::timeout(deadline, self.shared.tunnels.wait())
            .await
            .is_ok();
        let cut = self.shared.tunnels.len();
        self.shared.cut.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.shared.tunnels.wait()).await;
        self.endpoint.close(0u32.into(), b"gateway shutting down");
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.tasks.wait()).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        tracing::info!(cluster = %self.shared.cluster, completed, cut, "gateway stopped");
        DrainReport { completed, cut }
    }

    /// Stops at once, cutting live connections (for tests of restarts).
    pub async fn abort(self) {
        self.drain(Duration::ZERO).await;
    }
}
