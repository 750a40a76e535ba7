//! Every QUIC connection this gateway has with its peers, both ways, in one registry:
//! the ones it dialled ([`PeerPool`], one per peer, reused by every stream) and the ones
//! peers dialled to it. A cluster that stops being a peer is cut in both directions at
//! once; after a bundle change both are checked against the new roots.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use isthmus_ca::TrustBundle;
use isthmus_ca::verify::PeerRole;

use crate::peers::PeerPool;

/// The peer connections of one gateway.
pub(crate) struct Connections {
    dialled: PeerPool,
    /// Connections peers opened to us, by QUIC stable id, with their cluster.
    accepted: Arc<Mutex<HashMap<usize, (String, quinn::Connection)>>>,
}

/// A peer's connection to us, registered until dropped.
pub(crate) struct Accepted {
    accepted: Arc<Mutex<HashMap<usize, (String, quinn::Connection)>>>,
    id: usize,
}

impl Drop for Accepted {
    fn drop(&mut self) {
        lock(&self.accepted).remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update is a single insert or remove: a poisoned map is still whole.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Connections {
    /// The registry over the connections `dialled` opens.
    pub(crate) fn new(dialled: PeerPool) -> Self {
        Self {
            dialled,
            accepted: Arc::default(),
        }
    }

    /// The connections this gateway dials (one per peer).
    pub(crate) fn dialled(&self) -> &PeerPool {
        &self.dialled
    }

    /// Registers a connection `cluster`'s gateway opened to us, for as long as the
    /// returned guard lives.
    pub(crate) fn accepted(&self, cluster: &str, connection: &quinn::Connection) -> Accepted {
        let id = connection.stable_id();
        lock(&self.accepted).insert(id, (cluster.to_owned(), connection.clone()));
        Accepted {
            accepted: self.accepted.clone(),
            id,
        }
    }

    /// The peer clusters with an open connection either way.
    pub(crate) fn connected(&self) -> std::collections::HashSet<String> {
        let mut connected: std::collections::HashSet<String> =
            self.dialled.connected().into_iter().collect();
        connected.extend(
            lock(&self.accepted)
                .values()
                .filter(|(_, c)| c.close_reason().is_none())
                .map(|(cluster, _)| cluster.clone()),
        );
        connected
    }

    /// Closes every connection with `cluster`'s gateways, both ways.
    pub(crate) async fn cut_cluster(&self, cluster: &str, reason: &str) {
        let cut: Vec<quinn::Connection> = lock(&self.accepted)
            .values()
            .filter(|(c, _)| c == cluster)
            .map(|(_, conn)| conn.clone())
            .collect();
        for conn in cut {
            conn.close(2u32.into(), reason.as_bytes());
        }
        self.dialled.close(cluster, reason).await;
    }

    /// After the bundle changed: retires our dialled connections whose peer no longer
    /// verifies (new streams dial afresh) and returns the accepted ones that no longer
    /// verify, for the caller to close after a grace period. Returns how many dialled
    /// ones were retired, too.
    pub(crate) async fn untrusted(
        &self,
        bundle: &TrustBundle,
    ) -> (usize, Vec<(String, quinn::Connection)>) {
        let retired = self.dialled.retire_untrusted(bundle).await;
        let stale = lock(&self.accepted)
            .values()
            .filter(|(cluster, conn)| {
                !crate::recheck::still_trusted(conn, bundle, cluster, PeerRole::Client)
            })
            .cloned()
            .collect();
        (retired, stale)
    }
}
