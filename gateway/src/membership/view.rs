//! What a gateway takes from the federation catalog (pure): which clusters are peers and
//! where their gateways are, which services other clusters export here, and the trust
//! bundle. A cluster that is not active (pending, revoked) is no peer, and its exports
//! are not imported.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use isthmus_federation_api::claims::Claim;
use isthmus_federation_api::model::{CatalogState, ClusterState, Policy, TrustBundleDoc};

/// One cluster's offer of an imported service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exporter {
    /// The exporting cluster.
    pub cluster: String,
    /// Its healthy endpoints, as it last reported.
    pub healthy: u32,
    /// Its locality (`region` or `region/zone`).
    pub locality: Option<String>,
}

/// A service imported from one or more clusters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// Port names and numbers (the union over exporters, by number).
    pub ports: Vec<(String, u16)>,
    /// Who exports it.
    pub exporters: Vec<Exporter>,
}

/// The catalog as this gateway uses it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GatewayView {
    /// Active clusters other than ours with a gateway address.
    pub peers: BTreeMap<String, SocketAddr>,
    /// Services exported by peers, by (namespace, name).
    pub imports: BTreeMap<(String, String), Imported>,
    /// The trust bundle, once set.
    pub bundle: Option<TrustBundleDoc>,
    /// Our cluster's locality.
    pub locality: Option<String>,
    /// Our cluster's intermediate as the catalog has it.
    pub own_intermediate: Option<String>,
    /// Whether our cluster is an active member.
    pub own_active: bool,
    /// Authorization policies by name.
    pub policies: BTreeMap<String, Policy>,
    /// Policies in force that did not read (name → why): everything is denied while
    /// there are any. Filled from the watch mirror, not from the state.
    pub unreadable_policies: BTreeMap<String, String>,
    /// Traffic claims.
    pub claims: Vec<Claim>,
    /// Clusters the federation revoked (their gateways are refused and named).
    pub revoked: std::collections::BTreeSet<String>,
    /// The workload registrations of our cluster.
    pub registrations: Vec<isthmus_federation_api::registration::Registration>,
}

/// Derives the view of `own` from `state`.
pub fn derive(state: &CatalogState, own: &str) -> GatewayView {
    let mut view = GatewayView {
        bundle: state.trust_bundle.clone(),
        policies: state.policies.clone(),
        claims: state.claims.values().cloned().collect(),
        registrations: state
            .registrations
            .values()
            .filter(|r| r.cluster == own)
            .cloned()
            .collect(),
        ..GatewayView::default()
    };
    if let Some(c) = state.clusters.get(own) {
        view.locality = c.locality.clone();
        view.own_intermediate = c.intermediate_pem.clone();
        view.own_active = c.state == ClusterState::Active;
    }
    for (name, cluster) in &state.clusters {
        if cluster.state == ClusterState::Revoked {
            view.revoked.insert(name.clone());
        }
        if name == own || cluster.state != ClusterState::Active {
            continue;
        }
        // Gateway addresses are host:port; only literal addresses are dialled for now.
        if let Some(addr) = cluster
            .gateways
            .iter()
            .find_map(|g| g.address.parse::<SocketAddr>().ok())
        {
            view.peers.insert(name.clone(), addr);
        }
    }
    for export in state.exports.values() {
        if !view.peers.contains_key(&export.cluster) {
            continue;
        }
        let entry = view
            .imports
            .entry((export.namespace.clone(), export.name.clone()))
            .or_insert_with(|| Imported {
                ports: Vec::new(),
                exporters: Vec::new(),
            });
        for port in &export.ports {
            if !entry.ports.iter().any(|(_, p)| *p == port.port) {
                entry.ports.push((port.name.clone(), port.port));
            }
        }
        entry.ports.sort_by_key(|(_, p)| *p);
        entry.exporters.push(Exporter {
            cluster: export.cluster.clone(),
            healthy: export.health.healthy,
            locality: state
                .clusters
                .get(&export.cluster)
                .and_then(|c| c.locality.clone()),
        });
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_federation_api::model::{
        Cluster, EndpointHealth, ExportPort, GatewayEndpoint, PortProtocol, ServiceExport,
    };

    fn cluster(name: &str, state: ClusterState, addr: &str) -> Cluster {
        Cluster {
            name: name.into(),
            gateways: vec![GatewayEndpoint {
                name: "ew".into(),
                address: addr.into(),
            }],
            intermediate_pem: None,
            state,
            locality: Some(format!("{name}-region")),
            join: None,
            revision: 1,
        }
    }

    fn export(cluster: &str, name: &str, port: u16, healthy: u32) -> ServiceExport {
        ServiceExport {
            cluster: cluster.into(),
            namespace: "demo".into(),
            name: name.into(),
            ports: vec![ExportPort {
                name: format!("p{port}"),
                port,
                protocol: PortProtocol::Tcp,
            }],
            health: EndpointHealth {
                healthy,
                total: healthy,
            },
            revision: 1,
        }
    }

    #[test]
    fn only_active_peers_are_dialled_and_imported() {
        let mut state = CatalogState::default();
        for c in [
            cluster("east", ClusterState::Active, "127.0.0.1:1"),
            cluster("west", ClusterState::Active, "127.0.0.1:2"),
            cluster("north", ClusterState::Revoked, "127.0.0.1:3"),
            cluster("south", ClusterState::Pending, "127.0.0.1:4"),
            cluster("far", ClusterState::Active, "gw.far.example:443"),
        ] {
            state.clusters.insert(c.name.clone(), c);
        }
        for e in [
            export("west", "echo", 80, 2),
            export("north", "echo", 80, 5),
            export("east", "mine", 80, 1),
            export("west", "echo2", 81, 1),
        ] {
            state.exports.insert(e.key(), e);
        }
        let view = derive(&state, "east");
        assert!(view.own_active);
        assert_eq!(view.locality.as_deref(), Some("east-region"));
        assert_eq!(view.peers.keys().collect::<Vec<_>>(), ["west"]);
        let echo = &view.imports[&("demo".to_owned(), "echo".to_owned())];
        assert_eq!(
            echo.exporters.len(),
            1,
            "the revoked cluster's export is not imported"
        );
        assert!(
            view.revoked.contains("north"),
            "a revoked cluster is known as one"
        );
        assert_eq!(echo.exporters[0].healthy, 2);
        assert_eq!(echo.ports, vec![("p80".to_owned(), 80)]);
        assert!(
            !view
                .imports
                .contains_key(&("demo".to_owned(), "mine".to_owned()))
        );
        assert_eq!(view.imports.len(), 2);
    }

    #[test]
    fn a_service_exported_by_two_clusters_merges_ports() {
        let mut state = CatalogState::default();
        for c in [
            cluster("a", ClusterState::Active, "127.0.0.1:1"),
            cluster("b", ClusterState::Active, "127.0.0.1:2"),
        ] {
            state.clusters.insert(c.name.clone(), c);
        }
        let mut two = export("b", "echo", 81, 3);
        two.ports.push(ExportPort {
            name: "p80".into(),
            port: 80,
            protocol: PortProtocol::Tcp,
        });
        for e in [export("a", "echo", 80, 1), two] {
            state.exports.insert(e.key(), e);
        }
        let view = derive(&state, "me");
        let echo = &view.imports[&("demo".to_owned(), "echo".to_owned())];
        assert_eq!(
            echo.ports,
            vec![("p80".to_owned(), 80), ("p81".to_owned(), 81)]
        );
        assert_eq!(echo.exporters.len(), 2);
        assert!(!view.own_active);
    }
}
