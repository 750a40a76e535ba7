//! Starting and stopping one federation node: its identity, storage, Raft, and the
//! three mutual-TLS listeners (Raft RPC, admin gRPC, admin REST).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use isthmus_ca::verify::ExpectedIdentity;
use isthmus_ca::{Identity, Svid, SvidFileError, SvidFiles, TrustBundle};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use isthmus_federation_api::proto::enrollment_server::EnrollmentServer;
use isthmus_federation_api::proto::federation_admin_server::FederationAdminServer;

use crate::admin::Admin;
use crate::config::{FederationConfig, FederationListen};
use crate::enroll::{Enroller, EnrollmentGrpc};
use crate::grpc::AdminGrpc;
use crate::network::{MAX_RAFT_MESSAGE, Network, NetworkFactory, RaftRpc};
use crate::proto::raft_server::RaftServer;
use crate::raft::{NodeId, NodeInfo, Raft};
use crate::rest::{MAX_BODY, TlsListener};
use crate::service::{Federation, FederationParts, ServiceTimeouts};
use crate::store::{self, StoreError};
use crate::tls::{NodeTls, TlsError, accept_tls};

/// Knobs for tests and embedding; production uses the defaults.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// Link faults (the test harness's; `testing` feature only).
    #[cfg(feature = "testing")]
    pub faults: crate::faults::LinkFaults,
    /// Service-layer timeouts.
    pub timeouts: ServiceTimeouts,
}

/// Why a node did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The certificate files are unusable.
    #[error(transparent)]
    Identity(#[from] SvidFileError),
    /// A listener could not bind.
    #[error("field `{field}`: cannot listen on {addr}: {source}")]
    Bind {
        /// The config field.
        field: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The data directory is unusable.
    #[error("field `data_dir`: {0}")]
    Store(#[from] StoreError),
    /// The data directory could not be created.
    #[error("field `data_dir`: cannot create {dir}: {source}")]
    DataDir {
        /// The directory.
        dir: String,
        /// Why.
        source: std::io::Error,
    },
    /// TLS setup failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Raft refused its config or failed to start.
    #[error("raft: {0}")]
    Raft(String),
    /// The root given for signing intermediates is unusable.
    #[error("field `enrollment.{field}`: {reason}")]
    EnrollmentRoot {
        /// `root_cert` or `root_key`.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

/// A running federation node.
pub struct RunningNode {
    /// Raft id.
    pub id: NodeId,
    /// Name and the addresses others use.
    pub info: NodeInfo,
    /// The bound listen addresses.
    pub listen: FederationListen,
    /// The service layer.
    pub federation: Arc<Federation>,
    /// Mints join tokens.
    pub enroller: Arc<Enroller>,
    /// The admin operations both faces call.
    pub admin: Arc<Admin>,
    raft: Raft,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for RunningNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningNode")
            .field("id", &self.id)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

async fn bind(
    field: &'static str,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), StartError> {
    let bind_err = |source| StartError::Bind {
        field,
        addr,
        source,
    };
    // A node restarted on its old addresses may find its previous sockets still closing
    // (connections draining in this process): wait for them, within a bound.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let listener = loop {
        match TcpListener::bind(addr).await {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && addr.port() != 0
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => break other.map_err(bind_err)?,
        }
    };
    let local = listener.local_addr().map_err(bind_err)?;
    Ok((listener, local))
}

/// Starts node `config`, resolving its relative paths against `base`.
pub async fn start(
    config: &FederationConfig,
    base: &Path,
    options: NodeOptions,
) -> Result<RunningNode, StartError> {
    let (bundle, cert, key) = (
        base.join(&config.tls.bundle),
        base.join(&config.tls.cert),
        base.join(&config.tls.key),
    );
    let files = SvidFiles {
        bundle: (&bundle, "tls.bundle"),
        cert: (&cert, "tls.cert"),
        key: (&key, "tls.key"),
    };
    let svid = Svid::load(files, &ExpectedIdentity::AnyFederationNode)?;
    let expected_id = Identity::FederationNode {
        node: config.name.clone(),
    }
    .to_spiffe_id(svid.id.trust_domain());
    if svid.id != expected_id {
        return Err(SvidFileError {
            file: cert.display().to_string(),
            field: "tls.cert",
            reason: format!(
                "the certificate is for {}, but this node's name is {:?} (expected {expected_id})",
                svid.id, config.name
            ),
        }
        .into());
    }
    let trust_domain = svid.id.trust_domain().clone();

    let (raft_listener, raft_addr) = bind("listen.raft", config.listen.raft).await?;
    let (admin_listener, admin_addr) = bind("listen.admin", config.listen.admin).await?;
    let (rest_listener, rest_addr) = bind("listen.rest", config.listen.rest).await?;
    let metrics_listener = match config.listen.metrics {
        Some(addr) => Some(bind("listen.metrics", addr).await?),
        None => None,
    };
    let enroll_listener = match config.listen.enroll {
        Some(addr) => Some(bind("listen.enroll", addr).await?),
        None => None,
    };
    let listen = FederationListen {
        raft: raft_addr,
        admin: admin_addr,
        rest: rest_addr,
        metrics: metrics_listener.as_ref().map(|(_, addr)| *addr),
        enroll: enroll_listener.as_ref().map(|(_, addr)| *addr),
    };
    let advertised = config.advertise.unwrap_or(listen);
    let info = NodeInfo {
        name: config.name.clone(),
        raft_addr: advertised.raft.to_string(),
        admin_addr: advertised.admin.to_string(),
        rest_addr: advertised.rest.to_string(),
        enroll_addr: advertised.enroll.or(listen.enroll).map(|a| a.to_string()),
    };
    let root = match &config.enrollment.root {
        Some((cert, key)) => {
            let read = |field: &'static str, path: &Path| {
                let path = base.join(path);
                std::fs::read_to_string(&path).map_err(|e| StartError::EnrollmentRoot {
                    field,
                    reason: format!("cannot read {}: {e}", path.display()),
                })
            };
            let (cert_pem, key_pem) = (read("root_cert", cert)?, read("root_key", key)?);
            let authority =
                isthmus_ca::Authority::from_pem(&cert_pem, &key_pem, Some(svid.id.trust_domain()))
                    .map_err(|e| StartError::EnrollmentRoot {
                        field: "root_cert",
                        reason: e.to_string(),
                    })?;
            if *authority.kind() != isthmus_ca::AuthorityKind::Root {
                return Err(StartError::EnrollmentRoot {
                    field: "root_cert",
                    reason: "not a root CA; intermediates are signed by the root".into(),
                });
            }
            Some(authority)
        }
        None => None,
    };

    let tls = NodeTls::new(svid, config.access.identities().to_vec());
    let access = Arc::new(config.access.clone());
    let data_dir = base.join(&config.data_dir);
    std::fs::create_dir_all(&data_dir).map_err(|source| StartError::DataDir {
        dir: data_dir.display().to_string(),
        source,
    })?;
    let (log, sm) = open_store(&data_dir, config.raft.watch_history).await?;
    let view = sm.view();
    let net = Network::new(
        config.node_id,
        tls.clone(),
        config.raft_source,
        #[cfg(feature = "testing")]
        options.faults.clone(),
    );
    let raft_config = config
        .raft
        .openraft_config(&format!("isthmus-{trust_domain}"))
        .map_err(|e| StartError::Raft(e.to_string()))?;
    let raft = Raft::new(
        config.node_id,
        Arc::new(raft_config),
        NetworkFactory(net.clone()),
        log,
        sm,
    )
    .await
    .map_err(|e| StartError::Raft(e.to_string()))?;
    let stop = CancellationToken::new();
    let federation = Arc::new(Federation::new(FederationParts {
        own_chain: tls.chain().to_vec(),
        id: config.node_id,
        info: info.clone(),
        raft: raft.clone(),
        view,
        net,
        trust_domain,
        timeouts: options.timeouts,
        stop: stop.clone(),
    }));

    let mut tasks = vec![tokio::spawn(follow_bundle(
        federation.view().clone(),
        tls.bundle().clone(),
        stop.clone(),
    ))];
    let incoming = |listener, config| {
        ReceiverStream::new(accept_tls(listener, config, stop.clone()))
            .map(|(stream, _)| Ok::<_, std::io::Error>(stream))
    };

    let raft_service = RaftServer::new(RaftRpc::new(raft.clone(), federation.clone()))
        .max_decoding_message_size(MAX_RAFT_MESSAGE)
        .max_encoding_message_size(MAX_RAFT_MESSAGE);
    let raft_incoming = incoming(
        raft_listener,
        tls.server_config(ExpectedIdentity::AnyFederationNode, &[b"h2"])?,
    );
    let shutdown = stop.clone().cancelled_owned();
    tasks.push(tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .add_service(raft_service)
            .serve_with_incoming_shutdown(raft_incoming, shutdown)
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "raft RPC server failed");
        }
    }));

    let enroller = Arc::new(Enroller::new(
        federation.clone(),
        tls.clone(),
        root,
        config.enrollment.intermediate_lifetime,
        config.enrollment.token_lifetime,
    ));
    if let Some((listener, _)) = enroll_listener {
        let service = EnrollmentServer::new(EnrollmentGrpc(enroller.clone()))
            .max_decoding_message_size(64 * 1024);
        let incoming = incoming(listener, tls.server_config_without_client_auth(&[b"h2"])?);
        let shutdown = stop.clone().cancelled_owned();
        tasks.push(tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "enrollment server failed");
            }
        }));
    }
    let mesh = Arc::new(crate::mesh::MeshStatus::new(&config.name));
    {
        let (mesh, stop) = (mesh.clone(), stop.clone());
        tasks.push(tokio::spawn(async move { mesh.tick(stop).await }));
    }
    let alerts = Arc::new(crate::alerts::book::AlertBook::default());
    let engine = crate::alerts::engine::AlertEngine {
        settings: config.alerts.clone(),
        mesh: mesh.clone(),
        metrics: federation.metrics().clone(),
        raft: raft.clone(),
        node_id: config.node_id,
        book: alerts.clone(),
    };
    tasks.push(tokio::spawn(engine.run(stop.clone())));
    let admin = Arc::new(Admin::new(
        federation.clone(),
        enroller.clone(),
        access.clone(),
        mesh,
        alerts,
    ));
    let admin_service = FederationAdminServer::new(AdminGrpc::new(admin.clone()))
        .max_decoding_message_size(MAX_BODY)
        .max_encoding_message_size(MAX_RAFT_MESSAGE);
    let admin_incoming = incoming(
        admin_listener,
        tls.admin_server_config(tls.admin_grpc_identities(), &[b"h2"])?,
    );
    let shutdown = stop.clone().cancelled_owned();
    tasks.push(tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .add_service(admin_service)
            .serve_with_incoming_shutdown(admin_incoming, shutdown)
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "admin gRPC server failed");
        }
    }));

    let rest_listener = TlsListener {
        incoming: accept_tls(
            rest_listener,
            tls.admin_server_config(tls.admin_grpc_identities(), &[b"http/1.1"])?,
            stop.clone(),
        ),
    };
    if let Some((listener, _)) = metrics_listener {
        let serve = crate::metrics::serve(
            federation.metrics().clone(),
            raft.clone(),
            federation.view().clone(),
            listener,
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "metrics server failed");
            }
        }));
    }
    let router = crate::rest::router(admin.clone());
    tasks.push(tokio::spawn(crate::rest::serve::serve(
        rest_listener,
        router,
        stop.clone(),
    )));

    tracing::info!(node = config.node_id, name = %config.name, raft = %raft_addr, admin = %admin_addr, rest = %rest_addr, "federation node started");
    Ok(RunningNode {
        id: config.node_id,
        info,
        listen,
        federation,
        enroller,
        admin,
        raft,
        stop,
        tasks,
    })
}

/// Keeps this node's trust bundle equal to the catalog's, once the catalog has one, so
/// that a root rotation reaches the nodes' own listeners and clients too.
async fn follow_bundle(
    view: crate::store::CatalogView,
    bundle: isthmus_ca::SharedBundle,
    stop: CancellationToken,
) {
    let mut changes = view.subscribe();
    let mut applied: Option<(String, String)> = None;
    loop {
        if let Some(doc) = view.read(|s| s.trust_bundle.clone()) {
            let key = (doc.roots_pem.clone(), doc.retired_pem.clone());
            if applied.as_ref() != Some(&key) {
                match isthmus_federation_api::validate::trust_bundle(&doc, None) {
                    Ok(new) => {
                        if applied.is_none() {
                            warn_of_dropped_roots(&bundle.current(), &new, doc.revision);
                        }
                        bundle.replace(new);
                        tracing::info!(
                            revision = doc.revision,
                            "trust bundle updated from the catalog"
                        );
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "the catalog's trust bundle is unusable; keeping the current one")
                    }
                }
                applied = Some(key);
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
    }
}

/// At start the catalog's bundle replaces the one in the node's files. When the catalog
/// this node has applied is behind (it missed the write that added a root), it refuses
/// peers that already present certificates from that root, and cannot catch up while
/// every peer does: say so, naming the roots.
fn warn_of_dropped_roots(file: &TrustBundle, catalog: &TrustBundle, revision: u64) {
    let dropped: Vec<String> = file
        .roots()
        .iter()
        .filter(|root| !catalog.roots().iter().any(|r| r.der == root.der))
        .map(|root| root.facts.subject.clone())
        .collect();
    if !dropped.is_empty() {
        tracing::warn!(
            revision,
            roots = ?dropped,
            "the catalog this node has applied does not trust roots its bundle file does; until it catches up it refuses peers with certificates from them"
        );
    }
}

/// Opens the store, waiting (bounded) for a previous holder of the directory in this
/// process to let go of sled's lock.
async fn open_store(
    dir: &Path,
    history: u64,
) -> Result<(store::LogStore, store::StateMachine), StoreError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match store::open(dir, history) {
            // sled reports a held lock as `Other` with this text; its background flusher
            // lets go of a closed database within its flush interval.
            Err(StoreError::Open {
                source: sled::Error::Io(e),
                ..
            }) if (e.kind() == std::io::ErrorKind::WouldBlock
                || e.to_string().contains("could not acquire lock"))
                && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

impl RunningNode {
    /// Stops serving, stops Raft and waits for the listeners to close, releasing the
    /// data directory.
    pub async fn shutdown(self) {
        self.stop.cancel();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not stop cleanly");
        }
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }

    /// Resolves when this node's Raft core has stopped on its own (a storage write
    /// failed: disk full, I/O error), with the reason. The API would go on answering
    /// from a catalog that no longer moves, so the process should exit and be restarted
    /// on its durable log, as etcd does on a failed write.
    pub async fn raft_failed(&self) -> String {
        let mut metrics = self.raft.metrics();
        loop {
            if let Err(fatal) = &metrics.borrow_and_update().running_state {
                return fatal.to_string();
            }
            if metrics.changed().await.is_err() {
                return "the Raft core is gone".to_owned();
            }
        }
    }

    /// A token cancelled when the node stops.
    pub fn stopped(&self) -> CancellationToken {
        self.stop.clone()
    }
}
