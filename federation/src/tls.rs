//! Mutual TLS for every federation listener and client, on the CA's SPIFFE verifier:
//! the Raft port accepts only federation nodes; the admin ports accept federation
//! nodes and the configured admin identities. tonic and axum get already-handshaken
//! streams, so the verifier is ours, not webpki's (which rejects URI name constraints).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use isthmus_ca::verify::ExpectedIdentity;
use isthmus_ca::verify::tls::{SpiffeVerifier, client_config, server_config};
use isthmus_ca::{CertFacts, SharedBundle, SpiffeId, Svid};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress per listener. A new connection that finds them all taken
/// makes the oldest give way (see [`Pending`]), so idle unauthenticated sockets can
/// neither use up the process's descriptors nor lock clients out.
const MAX_HANDSHAKES: usize = 256;

/// A node's certificate, key and the trust bundle it checks peers against.
#[derive(Clone)]
pub struct NodeTls {
    bundle: SharedBundle,
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    id: SpiffeId,
    admin_clients: Vec<SpiffeId>,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTls")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A TLS setup problem (a key the provider refuses, for example).
#[derive(Debug, thiserror::Error)]
#[error("TLS: {0}")]
pub struct TlsError(#[from] rustls::Error);

impl NodeTls {
    /// From a checked federation-node SVID; `admin_clients` may also use the admin API.
    pub fn new(svid: Svid, admin_clients: Vec<SpiffeId>) -> Self {
        Self {
            bundle: SharedBundle::new(svid.bundle),
            chain: svid.chain,
            key: Arc::new(svid.key),
            id: svid.id,
            admin_clients,
        }
    }

    /// This node's SPIFFE ID.
    pub fn id(&self) -> &SpiffeId {
        &self.id
    }

    /// The live trust bundle.
    pub fn bundle(&self) -> &SharedBundle {
        &self.bundle
    }

    /// This node's certificate chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// Identities the admin listeners accept: the admin identities and any gateway
    /// (whose calls are then limited to its own cluster, see `access.rs`).
    pub fn admin_grpc_identities(&self) -> ExpectedIdentity {
        ExpectedIdentity::OneOf(vec![self.admin_identities(), ExpectedIdentity::AnyGateway])
    }

    /// A server config that asks for no client certificate, for the enrollment
    /// listener (enrolling gateways have none yet; the join token authenticates them).
    pub fn server_config_without_client_auth(
        &self,
        alpn: &[&[u8]],
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let mut config =
            rustls::ServerConfig::builder_with_provider(isthmus_ca::verify::tls::provider())
                .with_protocol_versions(&[&rustls::version::TLS13])?
                .with_no_client_auth()
                .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }

    /// Identities the admin listeners accept.
    pub fn admin_identities(&self) -> ExpectedIdentity {
        let mut options = vec![ExpectedIdentity::AnyFederationNode];
        options.extend(
            self.admin_clients
                .iter()
                .cloned()
                .map(ExpectedIdentity::Exact),
        );
        ExpectedIdentity::OneOf(options)
    }

    /// A server config for the admin listeners: a client may come without a
    /// certificate (it then needs a bearer token, which the API layer checks); one it
    /// presents must match `expected` and is verified in full.
    pub fn admin_server_config(
        &self,
        expected: ExpectedIdentity,
        alpn: &[&[u8]],
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let verifier = SpiffeVerifier::client_optional(self.bundle.clone(), expected);
        let config = server_config(verifier, self.chain.clone(), self.key.clone_key(), alpn)?;
        Ok(Arc::new(config))
    }

    /// A server config that accepts clients matching `expected`.
    pub fn server_config(
        &self,
        expected: ExpectedIdentity,
        alpn: &[&[u8]],
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let verifier = SpiffeVerifier::new(self.bundle.clone(), expected);
        let config = server_config(verifier, self.chain.clone(), self.key.clone_key(), alpn)?;
        Ok(Arc::new(config))
    }

    /// A client config that presents this node's certificate and accepts servers
    /// matching `expected`.
    pub fn client_config(
        &self,
        expected: ExpectedIdentity,
    ) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let verifier = SpiffeVerifier::new(self.bundle.clone(), expected);
        let config = client_config(verifier, self.chain.clone(), self.key.clone_key(), &[b"h2"])?;
        Ok(Arc::new(config))
    }
}

/// The handshakes in progress on one listener, oldest first, each with a handle that
/// cancels it. When a new connection finds every slot taken, the oldest gives way: a
/// real client finishes its handshake in milliseconds, so what gets dropped is the
/// socket that has sat longest without finishing. (New connections used to wait for a
/// free slot instead, and 256 idle sockets from anyone who could reach the port held
/// every client — and on the Raft port every peer — off for the 10 s timeout, again
/// and again.)
#[derive(Debug)]
struct Pending<H> {
    slots: usize,
    next: u64,
    order: std::collections::VecDeque<(u64, H)>,
}

impl<H> Pending<H> {
    fn new(slots: usize) -> Self {
        Self {
            slots: slots.max(1),
            next: 0,
            order: std::collections::VecDeque::new(),
        }
    }

    /// The id the next handshake will have.
    fn next_id(&self) -> u64 {
        self.next
    }

    /// Records the handshake `next_id()` names; returns the one it displaces, if any.
    fn admit(&mut self, handle: H) -> Option<H> {
        let evicted = if self.order.len() >= self.slots {
            self.order.pop_front().map(|(_, h)| h)
        } else {
            None
        };
        self.order.push_back((self.next, handle));
        self.next += 1;
        evicted
    }

    /// Handshake `id` finished (or failed, or was displaced).
    fn done(&mut self, id: u64) {
        if let Some(at) = self.order.iter().position(|(i, _)| *i == id) {
            self.order.remove(at);
        }
    }
}

/// Accepts TCP connections on `listener`, runs each TLS handshake in its own task
/// (bounded by a timeout, and by [`MAX_HANDSHAKES`] at once with the oldest giving way),
/// and yields the finished streams until `stop` is cancelled.
pub fn accept_tls(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    stop: CancellationToken,
) -> mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let pending = Arc::new(std::sync::Mutex::new(Pending::new(MAX_HANDSHAKES)));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let (tcp, remote) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            // Held while spawning, so that the task cannot report done before it is
            // admitted.
            let mut slots = pending.lock().unwrap_or_else(|p| p.into_inner());
            let id = slots.next_id();
            let finished = pending.clone();
            let task = tokio::spawn(async move {
                let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
                finished.lock().unwrap_or_else(|p| p.into_inner()).done(id);
                match handshake {
                    Ok(Ok(tls)) => {
                        let _ = tx.send((tls, remote)).await;
                    }
                    Ok(Err(e)) => tracing::info!(%remote, error = %e, "TLS handshake refused"),
                    Err(_) => tracing::info!(%remote, "TLS handshake timed out"),
                }
            });
            if let Some(oldest) = slots.admit(task.abort_handle()) {
                oldest.abort();
                tracing::info!(%remote, "handshake slots full: dropped the oldest unfinished handshake");
            }
        }
    });
    rx
}

/// The SPIFFE ID of a verified peer's leaf certificate.
pub fn peer_id(certs: Option<&[CertificateDer<'_>]>) -> Option<SpiffeId> {
    let leaf = certs?.first()?;
    let facts = CertFacts::parse(leaf).ok()?;
    SpiffeId::parse(facts.uris.first()?).ok()
}

#[cfg(test)]
mod pending_tests {
    use super::Pending;

    #[test]
    fn the_oldest_unfinished_handshake_gives_way() {
        let mut pending = Pending::new(2);
        assert_eq!(pending.admit("a"), None);
        assert_eq!(pending.admit("b"), None);
        assert_eq!(pending.admit("c"), Some("a"), "full: the oldest goes");
        pending.done(1); // "b" finished
        assert_eq!(pending.admit("d"), None, "a slot was free");
        assert_eq!(pending.admit("e"), Some("c"));
        pending.done(42); // unknown ids are ignored
        assert_eq!(pending.order.len(), 2);
    }
}
