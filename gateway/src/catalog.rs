//! The runtime view of services and peers: what this gateway exports, and where peer
//! gateways are. Seeded from the config file; replaceable while running (a later
//! federation watch feeds it), so it lives apart from the immutable config.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use crate::authz::Authorization;
use crate::balancer::{Balancer, OutlierPolicy};
use crate::config::{Export, PeerEntry};

/// A service port of this cluster with its endpoints' balancer.
#[derive(Debug)]
pub struct ServicePort {
    /// Endpoint choice and health; locked briefly, never across an await.
    balancer: Mutex<Balancer>,
    /// The app speaks its own TLS on it.
    expects_tls: bool,
    /// Its callers must carry a workload identity.
    identity_required: bool,
}

impl ServicePort {
    /// Whether the app speaks its own TLS on this port (`app_protocol = "tls"`).
    pub fn expects_tls(&self) -> bool {
        self.expects_tls
    }

    /// Whether callers must carry a workload identity (`identity = "required"`).
    pub fn identity_required(&self) -> bool {
        self.identity_required
    }

    /// The balancer, locked. A poisoned lock still holds a consistent balancer: every
    /// method on it leaves it whole.
    pub fn balancer(&self) -> std::sync::MutexGuard<'_, Balancer> {
        self.balancer.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A host served for a namespace that holds no claim to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{host} is not claimed by namespace {namespace}; claim it first (isthmus federation claim put {host} --namespace {namespace})"
)]
pub struct Unclaimed {
    /// The host.
    pub host: String,
    /// The namespace serving it.
    pub namespace: String,
}

/// What is known now.
#[derive(Debug, Default)]
pub struct Catalog {
    exports: HashMap<(String, String, u16), Arc<ServicePort>>,
    peers: HashMap<String, SocketAddr>,
    authorization: Arc<Authorization>,
    /// Traffic claims, for a federation member (`None` when run from a static config,
    /// which has no federation to hold them).
    claims: Option<Arc<Vec<isthmus_federation_api::claims::Claim>>>,
    /// Clusters the federation revoked: no peers, but named when they still dial.
    revoked: Arc<std::collections::BTreeSet<String>>,
}

impl Catalog {
    /// A catalog of `exports` and `peers`, under `authorization`.
    pub fn new(
        exports: &[Export],
        peers: &[PeerEntry],
        outlier: OutlierPolicy,
        authorization: Authorization,
    ) -> Self {
        let mut catalog = Self {
            authorization: Arc::new(authorization),
            ..Self::default()
        };
        // A federation member holds no claim until the federation says otherwise.
        if matches!(*catalog.authorization, Authorization::Policies(_)) {
            catalog.claims = Some(Arc::default());
        }
        for export in exports {
            for port in &export.ports {
                let balancer = Balancer::new(&port.endpoints, export.policy, outlier);
                catalog.exports.insert(
                    (export.namespace.clone(), export.name.clone(), port.port),
                    Arc::new(ServicePort {
                        balancer: Mutex::new(balancer),
                        expects_tls: port.app_protocol == crate::config::AppProtocol::Tls,
                        identity_required: export.identity
                            == crate::config::IdentityRequirement::Required,
                    }),
                );
            }
        }
        catalog.peers = peers
            .iter()
            .map(|p| (p.cluster.clone(), p.address))
            .collect();
        catalog
    }

    /// The same exports (their balancers and counters kept) with `peers` instead.
    pub fn with_peers(&self, peers: impl IntoIterator<Item = (String, SocketAddr)>) -> Self {
        Self {
            exports: self.exports.clone(),
            peers: peers.into_iter().collect(),
            authorization: self.authorization.clone(),
            claims: self.claims.clone(),
            revoked: self.revoked.clone(),
        }
    }

    /// The same catalog, knowing the clusters the federation revoked.
    pub fn with_revoked(&self, revoked: std::collections::BTreeSet<String>) -> Self {
        Self {
            exports: self.exports.clone(),
            peers: self.peers.clone(),
            authorization: self.authorization.clone(),
            claims: self.claims.clone(),
            revoked: Arc::new(revoked),
        }
    }

    /// Whether the federation revoked `cluster`.
    pub fn is_revoked(&self, cluster: &str) -> bool {
        self.revoked.contains(cluster)
    }

    /// The same exports and peers under `authorization`.
    pub fn with_authorization(&self, authorization: Authorization) -> Self {
        Self {
            exports: self.exports.clone(),
            peers: self.peers.clone(),
            authorization: Arc::new(authorization),
            claims: self.claims.clone(),
            revoked: self.revoked.clone(),
        }
    }

    /// The same catalog with the federation's traffic claims in force.
    pub fn with_claims(&self, claims: Vec<isthmus_federation_api::claims::Claim>) -> Self {
        Self {
            exports: self.exports.clone(),
            peers: self.peers.clone(),
            authorization: self.authorization.clone(),
            claims: Some(Arc::new(claims)),
            revoked: self.revoked.clone(),
        }
    }

    /// Refuses a host (ingress host or egress entry) that `namespace` does not hold a
    /// claim for. Only a federation member checks: a static config has no claims.
    pub fn check_claim(
        &self,
        pattern: &isthmus_federation_api::claims::HostPattern,
        namespace: &str,
    ) -> Result<(), Unclaimed> {
        match &self.claims {
            None => Ok(()),
            Some(claims)
                if isthmus_federation_api::claims::covered(claims.iter(), pattern, namespace) =>
            {
                Ok(())
            }
            Some(_) => Err(Unclaimed {
                host: pattern.to_string(),
                namespace: namespace.to_owned(),
            }),
        }
    }

    /// Who may reach this gateway's exports.
    pub fn authorization(&self) -> &Authorization {
        &self.authorization
    }

    /// Healthy endpoints of `namespace/name` at `now`: the most any of its ports has
    /// (a client needs one port; the federation gets one number per service).
    pub fn export_health(&self, namespace: &str, name: &str, now: std::time::Instant) -> usize {
        self.exports
            .iter()
            .filter(|((ns, n, _), _)| ns == namespace && n == name)
            .map(|(_, port)| port.balancer().healthy(now))
            .max()
            .unwrap_or(0)
    }

    /// The exported service port `namespace/name:port`, if exported.
    pub fn export(&self, namespace: &str, name: &str, port: u16) -> Option<Arc<ServicePort>> {
        self.exports
            .get(&(namespace.to_owned(), name.to_owned(), port))
            .cloned()
    }

    /// The QUIC address of `cluster`'s gateway.
    pub fn peer(&self, cluster: &str) -> Option<SocketAddr> {
        self.peers.get(cluster).copied()
    }

    /// The peer clusters.
    pub fn peer_clusters(&self) -> impl Iterator<Item = &str> {
        self.peers.keys().map(String::as_str)
    }
}

/// The catalog in force, shared by every task; replaced as a whole.
#[derive(Debug, Clone, Default)]
pub struct SharedCatalog(Arc<RwLock<Arc<Catalog>>>);

impl SharedCatalog {
    /// Shares `catalog`.
    pub fn new(catalog: Catalog) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(catalog))))
    }

    /// The catalog now.
    pub fn current(&self) -> Arc<Catalog> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Puts `catalog` in force for later lookups.
    pub fn replace(&self, catalog: Catalog) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(catalog);
    }
}
