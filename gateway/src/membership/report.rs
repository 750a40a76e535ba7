//! The gateway's part of the mesh's security status: every [`EVERY`], and at once when
//! something it reports changes (the catalog revision, a peer connecting or going, a
//! new handshake failure), it sends a [`GatewayReport`] to every federation node over
//! the same mutual-TLS admin channel as its watch. Each node holds the reports it got,
//! so any node can answer `/v1/mesh`; a node that stops hearing from this gateway marks
//! it stale, then lost. A node that cannot be reached is retried on the next round.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use isthmus_ca::SharedBundle;
use isthmus_federation_api::client::{ClientTls, FederationClient};
use isthmus_federation_api::mesh::{
    CertificateExpiry, GatewayReport, HandshakeFailures, HandshakeSide, PeerLink,
};
use tokio_util::sync::CancellationToken;

use crate::gateway::{Shared, TlsFacts};
use crate::live_cert::LiveCert;
use crate::metrics::Side;

/// How often a report is sent when nothing changes.
pub(crate) const EVERY: Duration = Duration::from_secs(2);
/// How often the gateway looks for a change worth reporting at once.
const LOOK: Duration = Duration::from_millis(250);
/// The longest one report may take to one node.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// What reports go out with.
pub(crate) struct Reporter {
    pub(crate) shared: Arc<Shared>,
    pub(crate) cluster: String,
    pub(crate) gateway: String,
    pub(crate) admin_addrs: Vec<String>,
    pub(crate) bundle: SharedBundle,
    pub(crate) cert: Arc<LiveCert>,
    pub(crate) revision: tokio::sync::watch::Receiver<u64>,
}

fn unix(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Reporter {
    /// Reports until `stop`.
    pub(crate) async fn run(self, stop: CancellationToken) {
        let clients: Vec<(String, FederationClient)> = self
            .admin_addrs
            .iter()
            .filter_map(|addr| {
                let tls = ClientTls::live(self.bundle.clone(), self.cert.clone()).ok()?;
                let client = FederationClient::new([addr.as_str()], tls)
                    .ok()?
                    .with_timeout(SEND_TIMEOUT);
                Some((addr.clone(), client))
            })
            .collect();
        if clients.len() < self.admin_addrs.len() {
            tracing::warn!(nodes = ?self.admin_addrs, "some federation nodes cannot be reported to (bad address)");
        }
        let started_at = unix(SystemTime::now());
        let mut sequence = 0u64;
        let mut last_sent: Option<(Change, tokio::time::Instant)> = None;
        let mut failing = vec![false; clients.len()];
        let mut look = tokio::time::interval(LOOK);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = look.tick() => {}
            }
            let change = self.change();
            let due = match &last_sent {
                None => true,
                Some((sent, at)) => *sent != change || at.elapsed() >= EVERY,
            };
            if !due {
                continue;
            }
            sequence += 1;
            let report = self.report(started_at, sequence);
            let sends = clients
                .iter()
                .map(|(_, client)| client.report_gateway_status(report.clone()));
            let results = futures_util::future::join_all(sends).await;
            for (i, result) in results.into_iter().enumerate() {
                match result {
                    Ok(()) => failing[i] = false,
                    Err(e) if !failing[i] => {
                        failing[i] = true;
                        tracing::warn!(federation = %clients[i].0, error = %e, "status report not delivered; retrying each round");
                    }
                    Err(_) => {}
                }
            }
            last_sent = Some((change, tokio::time::Instant::now()));
        }
    }

    /// What, when it changes, is reported at once.
    fn change(&self) -> Change {
        let failures: u64 = self
            .shared
            .metrics
            .handshake_failures_seen()
            .iter()
            .map(|(_, (count, _))| count)
            .sum();
        let mut connected: Vec<String> = self.shared.connections.connected().into_iter().collect();
        connected.sort_unstable();
        Change {
            revision: *self.revision.borrow(),
            connected,
            failures,
        }
    }

    fn report(&self, started_at: i64, sequence: u64) -> GatewayReport {
        let facts = TlsFacts::read(&self.cert, &self.bundle);
        let connected = self.shared.connections.connected();
        let catalog = self.shared.catalog.current();
        let mut peers: Vec<PeerLink> = catalog
            .peer_clusters()
            .map(|cluster| PeerLink {
                cluster: cluster.to_owned(),
                connected: connected.contains(cluster),
            })
            .collect();
        peers.sort_by(|a, b| a.cluster.cmp(&b.cluster));
        GatewayReport {
            cluster: self.cluster.clone(),
            gateway: self.gateway.clone(),
            started_at,
            sequence,
            catalog_revision: *self.revision.borrow(),
            catalog_age_seconds: self.shared.metrics.catalog_age_seconds.get().max(0.0),
            certificates: facts
                .certificates
                .iter()
                .map(|(kind, not_after, _)| CertificateExpiry {
                    kind: (*kind).to_owned(),
                    not_after: *not_after,
                })
                .collect(),
            active_roots: facts.active_roots,
            retired_roots: facts.retired_roots,
            peers,
            inbound: self.shared.traffic.report(),
            handshake_failures: self
                .shared
                .metrics
                .handshake_failures_seen()
                .into_iter()
                .map(
                    |((side, peer_cluster, reason), (count, last_at))| HandshakeFailures {
                        side: match side {
                            Side::Accept => HandshakeSide::Accept,
                            Side::Dial => HandshakeSide::Dial,
                        },
                        peer_cluster,
                        reason,
                        count,
                        last_at,
                    },
                )
                .collect(),
        }
    }
}

/// The parts of a report whose change is sent at once.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Change {
    revision: u64,
    connected: Vec<String>,
    failures: u64,
}
