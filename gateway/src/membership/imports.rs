//! Imported services as the running gateway serves them: an address from the import
//! range per service, a listener on that address for each of its ports, and its DNS
//! records. Applied from each new catalog view; a service that appears gets its
//! listeners and name at once, one that disappears loses them (open connections finish).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::addresses::{AddressPool, Ipv4Range};
use crate::dns::{DnsTable, ServiceRecord};
use crate::gateway::Shared;
use crate::membership::choose;
use crate::membership::view::{GatewayView, Imported};
use crate::outbound::{RemoteService, serve_catalog_import};
use crate::peers::PeerHealth;

type Key = (String, String);

/// Who exports what now, read by each new connection.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    imports: BTreeMap<Key, Imported>,
    locality: Option<String>,
}

struct Listening {
    ports: BTreeMap<u16, CancellationToken>,
}

/// The live import state of one gateway.
pub(crate) struct ImportRuntime {
    shared: Arc<Shared>,
    pool: AddressPool<Key>,
    table: Arc<DnsTable>,
    listening: BTreeMap<Key, Listening>,
}

impl ImportRuntime {
    pub(crate) fn new(shared: Arc<Shared>, range: Ipv4Range, table: Arc<DnsTable>) -> Self {
        Self {
            pool: AddressPool::new(range),
            table,
            listening: BTreeMap::new(),
            shared,
        }
    }

    /// Brings listeners, addresses and DNS in line with `view`.
    pub(crate) async fn apply(&mut self, view: &GatewayView) {
        {
            let mut routes = self
                .shared
                .routes
                .federation
                .write()
                .unwrap_or_else(|p| p.into_inner());
            routes.imports = view.imports.clone();
            routes.locality = view.locality.clone();
        }
        let gone: Vec<Key> = self
            .listening
            .keys()
            .filter(|k| !view.imports.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(listening) = self.listening.remove(&key) {
                for stop in listening.ports.values() {
                    stop.cancel();
                }
            }
            self.table.remove(&key.0, &key.1);
            self.pool.release(&key);
            tracing::info!(namespace = %key.0, service = %key.1, "import removed");
        }
        for (key, imported) in &view.imports {
            let address = match self.pool.assign(key) {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(namespace = %key.0, service = %key.1, error = %e, "no address for an import");
                    continue;
                }
            };
            let listening = self
                .listening
                .entry(key.clone())
                .or_insert_with(|| Listening {
                    ports: BTreeMap::new(),
                });
            let wanted: Vec<u16> = imported.ports.iter().map(|(_, p)| *p).collect();
            listening.ports.retain(|port, stop| {
                let keep = wanted.contains(port);
                if !keep {
                    stop.cancel();
                }
                keep
            });
            for &port in &wanted {
                if listening.ports.contains_key(&port) {
                    continue;
                }
                let addr = SocketAddr::from((address, port));
                let listener = match TcpListener::bind(addr).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(%addr, namespace = %key.0, service = %key.1, error = %e, "cannot listen for an import");
                        continue;
                    }
                };
                let stop = CancellationToken::new();
                listening.ports.insert(port, stop.clone());
                let key2 = key.clone();
                self.shared.tunnels.spawn(serve_catalog_import(
                    listener,
                    self.shared.clone(),
                    stop,
                    move |shared: &Arc<Shared>| {
                        route(&shared.routes.federation, &key2, port, shared)
                    },
                ));
                tracing::info!(%addr, namespace = %key.0, service = %key.1, "import listening");
            }
            if listening.ports.is_empty() {
                // No listener could be bound: a name would only lead to refused
                // connections, so the service gets none until a later catalog change.
                self.table.remove(&key.0, &key.1);
                continue;
            }
            self.table.put(
                &key.0,
                &key.1,
                ServiceRecord {
                    address,
                    ports: imported
                        .ports
                        .iter()
                        .filter(|(_, p)| listening.ports.contains_key(p))
                        .cloned()
                        .collect(),
                },
            );
        }
    }
}

/// The ports of `key` imported now.
pub(crate) fn ports(routes: &RwLock<Routes>, key: &Key) -> Vec<u16> {
    let routes = routes.read().unwrap_or_else(|p| p.into_inner());
    routes
        .imports
        .get(key)
        .map(|imported| imported.ports.iter().map(|(_, p)| *p).collect())
        .unwrap_or_default()
}

/// The clusters one new connection to `key:port` tries, in order.
pub(crate) fn route(
    routes: &RwLock<Routes>,
    key: &Key,
    port: u16,
    shared: &Arc<Shared>,
) -> Option<RemoteService> {
    let routes = routes.read().unwrap_or_else(|p| p.into_inner());
    let imported = routes.imports.get(key)?;
    if !imported.ports.iter().any(|(_, p)| *p == port) {
        return None;
    }
    let clusters = choose::order(
        &imported.exporters,
        routes.locality.as_deref(),
        |c| match shared.connections.dialled().health(c) {
            PeerHealth::Up => false,
            PeerHealth::Down { probe_due } => {
                if probe_due && shared.connections.dialled().claim_probe(c) {
                    // Find out in the background whether it is back, so that no client
                    // waits on a gateway that is probably still down.
                    let shared = shared.clone();
                    let cluster = c.to_owned();
                    tokio::spawn(async move {
                        let _ = shared.connections.dialled().connection(&cluster).await;
                    });
                }
                true
            }
        },
        shared.sample(),
    );
    Some(RemoteService {
        namespace: key.0.clone(),
        name: key.1.clone(),
        port,
        clusters,
    })
}
