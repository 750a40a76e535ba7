//! One QUIC connection per peer gateway, opened on first use, reused by every stream,
//! and reopened with exponential backoff after it is lost.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use isthmus_ca::SharedBundle;
use isthmus_ca::verify::ExpectedIdentity;
use isthmus_ca::verify::tls::SpiffeVerifier;

use crate::backoff::{Backoff, Retry};
use crate::catalog::SharedCatalog;
use crate::live_cert::LiveCert;
use crate::metrics::{Metrics, Side};
use crate::quic::{quic_client_config, transport_config};

/// Redials of a peer whose gateway could not be reached.
const REDIAL: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
/// Longest wait for a peer's handshake; a dial holds its peer's slot meanwhile.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Why no connection to a peer could be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PeerError {
    /// The cluster is not a configured peer.
    #[error("cluster {0} is not a peer of this gateway")]
    UnknownPeer(String),
    /// Connecting failed.
    #[error("connecting to the gateway of {cluster} at {addr}: {reason}")]
    Connect {
        /// The peer cluster.
        cluster: String,
        /// Its address.
        addr: std::net::SocketAddr,
        /// Why.
        reason: String,
    },
    /// A recent attempt failed; the next one waits.
    #[error("the gateway of {cluster} is unreachable; next attempt in {wait:?}")]
    Backoff {
        /// The peer cluster.
        cluster: String,
        /// Time until the next attempt.
        wait: Duration,
    },
}

/// A peer gateway's standing, for choosing among exporting clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerHealth {
    /// Connected, or not yet tried, or being dialled.
    Up,
    /// Its last dial failed; `probe_due` once its backoff has passed.
    Down {
        /// Whether a new dial may be tried now.
        probe_due: bool,
    },
}

struct Slot {
    connection: Option<quinn::Connection>,
    redial: Retry,
    retry_at: Option<Instant>,
}

impl Default for Slot {
    fn default() -> Self {
        Self {
            connection: None,
            redial: Retry::new(REDIAL),
            retry_at: None,
        }
    }
}

/// The connections to peer gateways.
pub struct PeerPool {
    endpoint: quinn::Endpoint,
    catalog: SharedCatalog,
    bundle: SharedBundle,
    cert: Arc<LiveCert>,
    metrics: Arc<Metrics>,
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
    /// Peers whose last dial failed, with when the next dial may be tried. Kept apart
    /// from the slots so that it can be read while a dial holds a slot.
    down: Mutex<HashMap<String, Instant>>,
    /// The last connection dialled to each peer, readable without a slot's lock (for
    /// the `peer_connected` gauge); closed ones are skipped when read.
    live: Mutex<HashMap<String, quinn::Connection>>,
}

impl std::fmt::Debug for PeerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerPool").finish_non_exhaustive()
    }
}

impl PeerPool {
    /// A pool that dials from `endpoint`, presenting `cert`.
    pub fn new(
        endpoint: quinn::Endpoint,
        catalog: SharedCatalog,
        bundle: SharedBundle,
        cert: Arc<LiveCert>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            endpoint,
            catalog,
            bundle,
            cert,
            metrics,
            slots: Mutex::new(HashMap::new()),
            down: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
        }
    }

    /// The peers this gateway has an open dialled connection to.
    pub fn connected(&self) -> Vec<String> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.iter()
            .filter(|(_, c)| c.close_reason().is_none())
            .map(|(cluster, _)| cluster.clone())
            .collect()
    }

    /// The live connection to `cluster`'s gateway, opening one if needed.
    pub async fn connection(&self, cluster: &str) -> Result<quinn::Connection, PeerError> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.entry(cluster.to_owned()).or_default().clone()
        };
        // One dial at a time per peer; others wait and then share its connection.
        let mut slot = slot.lock().await;
        if let Some(connection) = &slot.connection {
            if connection.close_reason().is_none() {
                return Ok(connection.clone());
            }
            slot.connection = None;
        }
        let now = Instant::now();
        if let Some(retry_at) = slot.retry_at.filter(|t| *t > now) {
            return Err(PeerError::Backoff {
                cluster: cluster.to_owned(),
                wait: retry_at - now,
            });
        }
        let dialled = self.dial(cluster).await;
        self.metrics
            .peer_dials
            .get_or_create(&crate::metrics::DialLabels {
                peer_cluster: cluster.to_owned(),
                result: if dialled.is_ok() { "ok" } else { "failed" }.to_owned(),
            })
            .inc();
        match dialled {
            Ok(connection) => {
                slot.connection = Some(connection.clone());
                self.live
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(cluster.to_owned(), connection.clone());
                slot.redial.succeeded();
                slot.retry_at = None;
                self.down_map().remove(cluster);
                Ok(connection)
            }
            Err(err) => {
                self.failed(cluster, &mut slot);
                Err(err)
            }
        }
    }

    fn down_map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.down.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What is known of `cluster`'s gateway now: down from a failed dial until a dial
    /// succeeds, even while a new dial is in progress.
    pub fn health(&self, cluster: &str) -> PeerHealth {
        match self.down_map().get(cluster) {
            None => PeerHealth::Up,
            Some(next) => PeerHealth::Down {
                probe_due: *next <= Instant::now(),
            },
        }
    }

    /// Claims the next probe of a down peer: true for one caller once its backoff has
    /// passed (the next claim waits for this probe's dial to time out).
    pub fn claim_probe(&self, cluster: &str) -> bool {
        let mut down = self.down_map();
        match down.get_mut(cluster) {
            Some(next) if *next <= Instant::now() => {
                *next = Instant::now() + DIAL_TIMEOUT;
                true
            }
            _ => false,
        }
    }

    /// Records that reaching `cluster`'s gateway failed (a dial that its caller gave up
    /// on, for example), so that it counts as down until a dial succeeds.
    pub async fn mark_failed(&self, cluster: &str) {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.entry(cluster.to_owned()).or_default().clone()
        };
        let mut slot = slot.lock().await;
        if slot
            .connection
            .as_ref()
            .is_some_and(|c| c.close_reason().is_none())
        {
            return;
        }
        slot.connection = None;
        self.failed(cluster, &mut slot);
    }

    /// Counts a failure to reach `cluster`: it is down until a dial succeeds, and the
    /// next dial waits out its backoff.
    fn failed(&self, cluster: &str, slot: &mut Slot) {
        let retry_at = Instant::now() + slot.redial.failed();
        slot.retry_at = Some(retry_at);
        self.down_map().insert(cluster.to_owned(), retry_at);
    }

    /// Stops using connections whose peer no longer verifies against `bundle`: new
    /// streams dial afresh, and the old connection lives until its streams finish.
    /// Returns how many were retired.
    pub async fn retire_untrusted(&self, bundle: &isthmus_ca::TrustBundle) -> usize {
        let slots: Vec<(String, Arc<tokio::sync::Mutex<Slot>>)> = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(c, s)| (c.clone(), s.clone()))
            .collect();
        let mut retired = 0;
        for (cluster, slot) in slots {
            let mut slot = slot.lock().await;
            let stale = slot.connection.as_ref().is_some_and(|c| {
                !crate::recheck::still_trusted(
                    c,
                    bundle,
                    &cluster,
                    isthmus_ca::verify::PeerRole::Server,
                )
            });
            if stale {
                slot.connection = None;
                retired += 1;
            }
        }
        retired
    }

    /// Retires every connection (this gateway's own certificate chain changed): new
    /// streams dial afresh, streams in flight finish on the old one. Returns how many.
    pub async fn retire_all(&self) -> usize {
        let slots: Vec<Arc<tokio::sync::Mutex<Slot>>> = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let mut retired = 0;
        for slot in slots {
            if slot.lock().await.connection.take().is_some() {
                retired += 1;
            }
        }
        retired
    }

    /// Closes the connection to `cluster`, if any (it stopped being a peer).
    pub async fn close(&self, cluster: &str, reason: &str) {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(cluster);
        if let Some(slot) = slot {
            if let Some(connection) = slot.lock().await.connection.take() {
                connection.close(2u32.into(), reason.as_bytes());
            }
        }
    }

    /// Forgets `connection` if it has closed (the peer restarted, reset or timed out),
    /// so that the next call dials afresh without waiting for a backoff. Returns whether
    /// it was dead. A live connection is kept: one failed stream must not cut the others.
    pub async fn discard_if_dead(&self, cluster: &str, connection: &quinn::Connection) -> bool {
        if connection.close_reason().is_none() {
            return false;
        }
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(cluster)
            .cloned();
        if let Some(slot) = slot {
            let mut slot = slot.lock().await;
            if slot
                .connection
                .as_ref()
                .is_some_and(|c| c.stable_id() == connection.stable_id())
            {
                slot.connection = None;
            }
        }
        true
    }

    async fn dial(&self, cluster: &str) -> Result<quinn::Connection, PeerError> {
        let addr = self
            .catalog
            .current()
            .peer(cluster)
            .ok_or_else(|| PeerError::UnknownPeer(cluster.to_owned()))?;
        let fail = |reason: String| PeerError::Connect {
            cluster: cluster.to_owned(),
            addr,
            reason,
        };
        let metrics = self.metrics.clone();
        let verifier = SpiffeVerifier::with_observer(
            self.bundle.clone(),
            ExpectedIdentity::GatewayOf(cluster.to_owned()),
            Arc::new({
                let cluster = cluster.to_owned();
                move |e, _| metrics.handshake_failed(Side::Dial, &cluster, e.reason())
            }),
        );
        let mut config =
            quic_client_config(verifier, self.cert.clone()).map_err(|e| fail(e.to_string()))?;
        config.transport_config(transport_config());
        let connecting = self
            .endpoint
            .connect_with(config, addr, &format!("{cluster}.gateway.isthmus"))
            .map_err(|e| fail(e.to_string()))?;
        match tokio::time::timeout(DIAL_TIMEOUT, connecting).await {
            Err(_) => {
                self.metrics
                    .handshake_failed(Side::Dial, cluster, "timeout");
                Err(fail(format!("no handshake within {DIAL_TIMEOUT:?}")))
            }
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(err)) => {
                if let Some(reason) = crate::quic::failure_reason(&err) {
                    self.metrics.handshake_failed(Side::Dial, cluster, reason);
                }
                Err(fail(err.to_string()))
            }
        }
    }
}
