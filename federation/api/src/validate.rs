//! Stateless checks of admin input, run once before a command is proposed: names are
//! DNS-1123 labels, ports are in range and unique, PEM parses. Each failure names the
//! field. Checks that need the current state (unknown cluster, compare-and-set) are the
//! federation's, made as a command is applied, identically on every node.

use std::collections::HashSet;

use isthmus_ca::{CaRole, CertFacts, TrustBundle, TrustDomain, spiffe::dns_label};

use crate::error::ApiError;
use crate::model::{Cluster, ExportKey, GatewayEndpoint, Policy, ServiceExport, TrustBundleDoc};
use crate::status::{NodeId, NodeInfo};

/// Most gateways one cluster may list.
pub const MAX_GATEWAYS: usize = 64;
/// Most ports one export may list.
pub const MAX_PORTS: usize = 64;
/// Largest PEM text accepted in one field.
pub const MAX_PEM_BYTES: usize = 64 * 1024;
/// Largest policy body.
pub const MAX_POLICY_BYTES: usize = 64 * 1024;

/// Checks a DNS-1123 label in `field`.
pub fn name(field: &str, value: &str) -> Result<(), ApiError> {
    dns_label("name", value).map(|_| ()).map_err(|_| {
        ApiError::invalid(
            field,
            format!(
                "{value:?} is not a DNS-1123 label: use 1 to 63 lowercase letters, digits and '-', starting and ending with a letter or digit"
            ),
        )
    })
}

/// Checks a cluster.
pub fn cluster(cluster: &Cluster) -> Result<(), ApiError> {
    name("name", &cluster.name)?;
    if cluster.gateways.len() > MAX_GATEWAYS {
        return Err(ApiError::invalid(
            "gateways",
            format!(
                "{} gateways; at most {MAX_GATEWAYS}",
                cluster.gateways.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    for (i, gateway) in cluster.gateways.iter().enumerate() {
        gateway_endpoint(&format!("gateways[{i}]"), gateway)?;
        if !seen.insert(&gateway.name) {
            return Err(ApiError::invalid(
                format!("gateways[{i}].name"),
                format!("gateway {:?} is listed twice", gateway.name),
            ));
        }
    }
    if let Some(l) = &cluster.locality {
        locality("locality", l)?;
    }
    if cluster.join.is_some() {
        return Err(ApiError::invalid(
            "join",
            "join tokens are made by `isthmus federation cluster create`, not written; remove this field",
        ));
    }
    if let Some(pem) = &cluster.intermediate_pem {
        intermediate("intermediate_pem", pem, &cluster.name)?;
    }
    Ok(())
}

/// Checks a `host:port` address: an IP socket address, or a DNS name and a port 1-65535.
pub fn host_port(field: &str, value: &str) -> Result<(), ApiError> {
    let bad = || {
        ApiError::invalid(
            field,
            format!(
                "{value:?} is not host:port (for example 10.0.0.5:15443 or gw.east.example:15443)"
            ),
        )
    };
    if value.len() > crate::schema::MAX_HOST_PORT {
        return Err(ApiError::invalid(
            field,
            format!(
                "{} characters; an address is at most {}",
                value.len(),
                crate::schema::MAX_HOST_PORT
            ),
        ));
    }
    if value.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = value.rsplit_once(':').ok_or_else(bad)?;
    let port_ok = port.parse::<u16>().is_ok_and(|p| p != 0);
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| dns_label("host", l).is_ok());
    if port_ok && host_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// Checks a cluster intermediate certificate (PEM): exactly one CA certificate whose
/// subject names `cluster`.
pub fn intermediate(field: &str, pem: &str, cluster: &str) -> Result<(), ApiError> {
    if pem.len() > MAX_PEM_BYTES {
        return Err(ApiError::invalid(
            field,
            format!("{} bytes of PEM; at most {MAX_PEM_BYTES}", pem.len()),
        ));
    }
    let certs = isthmus_ca::pem::certs_from_pem(pem)
        .map_err(|e| ApiError::invalid(field, format!("not PEM certificates: {e}")))?;
    let [cert] = certs.as_slice() else {
        return Err(ApiError::invalid(
            field,
            format!("expected exactly one certificate, found {}", certs.len()),
        ));
    };
    let facts = CertFacts::parse(cert)
        .map_err(|e| ApiError::invalid(field, format!("not an X.509 certificate: {e}")))?;
    match facts.ca_role() {
        CaRole::Cluster(name) if facts.is_ca && name == cluster => Ok(()),
        _ => Err(ApiError::invalid(
            field,
            format!(
                "not the cluster intermediate of \"{cluster}\" (subject {}); issue one with `isthmus ca intermediate --cluster {cluster}`",
                facts.subject
            ),
        )),
    }
}

/// Checks an export.
pub fn export(export: &ServiceExport) -> Result<(), ApiError> {
    export_key(&export.key())?;
    if export.ports.is_empty() {
        return Err(ApiError::invalid(
            "ports",
            "an export needs at least one port",
        ));
    }
    if export.ports.len() > MAX_PORTS {
        return Err(ApiError::invalid(
            "ports",
            format!("{} ports; at most {MAX_PORTS}", export.ports.len()),
        ));
    }
    let mut names = HashSet::new();
    let mut numbers = HashSet::new();
    for (i, port) in export.ports.iter().enumerate() {
        name(&format!("ports[{i}].name"), &port.name)?;
        if port.port == 0 {
            return Err(ApiError::invalid(
                format!("ports[{i}].port"),
                "0 is not a port; use 1..=65535",
            ));
        }
        if !names.insert(&port.name) {
            return Err(ApiError::invalid(
                format!("ports[{i}].name"),
                format!("port name {:?} appears twice", port.name),
            ));
        }
        if !numbers.insert(port.port) {
            return Err(ApiError::invalid(
                format!("ports[{i}].port"),
                format!("port {} appears twice", port.port),
            ));
        }
    }
    if export.health.healthy > export.health.total {
        return Err(ApiError::invalid(
            "health.healthy",
            format!(
                "{} healthy of {} total; healthy cannot exceed total",
                export.health.healthy, export.health.total
            ),
        ));
    }
    Ok(())
}

/// Checks an export key.
pub fn export_key(key: &ExportKey) -> Result<(), ApiError> {
    name("cluster", &key.cluster)?;
    name("namespace", &key.namespace)?;
    name("name", &key.name)
}

/// Checks a trust bundle and returns it parsed. When the federation already knows its
/// trust domain, the bundle must be for that domain.
pub fn trust_bundle(
    doc: &TrustBundleDoc,
    federation_domain: Option<&TrustDomain>,
) -> Result<TrustBundle, ApiError> {
    let domain = TrustDomain::new(&doc.trust_domain)
        .map_err(|e| ApiError::invalid("trust_domain", e.to_string()))?;
    if let Some(expected) = federation_domain
        && expected != &domain
    {
        return Err(ApiError::invalid(
            "trust_domain",
            format!("this federation's trust domain is {expected}, not {domain}"),
        ));
    }
    for (field, pem) in [
        ("roots_pem", &doc.roots_pem),
        ("retired_pem", &doc.retired_pem),
    ] {
        if pem.len() > MAX_PEM_BYTES {
            return Err(ApiError::invalid(
                field,
                format!("{} bytes of PEM; at most {MAX_PEM_BYTES}", pem.len()),
            ));
        }
    }
    let mut bundle = TrustBundle::from_pem(domain, &doc.roots_pem)
        .map_err(|e| ApiError::invalid("roots_pem", e.to_string()))?;
    if !doc.retired_pem.is_empty() {
        let retired = isthmus_ca::pem::certs_from_pem(&doc.retired_pem)
            .map_err(|e| ApiError::invalid("retired_pem", e.to_string()))?;
        for (i, der) in retired.into_iter().enumerate() {
            bundle
                .add_retired(der)
                .map_err(|e| ApiError::invalid(format!("retired_pem[{i}]"), e.to_string()))?;
        }
    }
    Ok(bundle)
}

/// Checks one gateway endpoint.
pub fn gateway_endpoint(field: &str, gateway: &GatewayEndpoint) -> Result<(), ApiError> {
    name(&format!("{field}.name"), &gateway.name)?;
    host_port(&format!("{field}.address"), &gateway.address)
}

/// Checks a locality: `region` or `region/zone`, each a DNS-1123 label.
pub fn locality(field: &str, value: &str) -> Result<(), ApiError> {
    let parts: Vec<&str> = value.split('/').collect();
    if parts.len() > 2 || parts.iter().any(|p| name(field, p).is_err()) {
        return Err(ApiError::invalid(
            field,
            format!(
                "{value:?} is not `region` or `region/zone` (lowercase DNS labels, for example eu-west/a)"
            ),
        ));
    }
    Ok(())
}

/// Checks a new member's id and addresses.
pub fn member(node_id: NodeId, info: &NodeInfo) -> Result<(), ApiError> {
    if node_id == 0 {
        return Err(ApiError::invalid(
            "node_id",
            "0 is not a node id; use a positive integer",
        ));
    }
    name("member.name", &info.name)?;
    host_port("member.raft_addr", &info.raft_addr)?;
    host_port("member.admin_addr", &info.admin_addr)?;
    host_port("member.rest_addr", &info.rest_addr)?;
    match &info.enroll_addr {
        Some(addr) => host_port("member.enroll_addr", addr),
        None => Ok(()),
    }
}

/// Checks a policy: its name, its document's size, and the language's own checks (a
/// document built in code gets the same checks as a parsed one).
pub fn policy(policy: &Policy) -> Result<(), ApiError> {
    name("name", &policy.name)?;
    let size = policy.body.to_json().len();
    if size > MAX_POLICY_BYTES {
        return Err(ApiError::invalid(
            "body",
            format!("{size} bytes; at most {MAX_POLICY_BYTES}"),
        ));
    }
    crate::policy::check(&policy.body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ClusterState, EndpointHealth, ExportPort, PortProtocol};

    fn export_with(ports: Vec<(&str, u16)>) -> ServiceExport {
        ServiceExport {
            cluster: "east".into(),
            namespace: "shop".into(),
            name: "echo".into(),
            ports: ports
                .into_iter()
                .map(|(name, port)| ExportPort {
                    name: name.into(),
                    port,
                    protocol: PortProtocol::Tcp,
                })
                .collect(),
            health: EndpointHealth::default(),
            revision: 0,
        }
    }

    fn field_of(err: ApiError) -> String {
        match err {
            ApiError::InvalidArgument { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn export_problems_name_their_field() {
        let cases = [
            (export_with(vec![]), "ports"),
            (export_with(vec![("http", 0)]), "ports[0].port"),
            (
                export_with(vec![("http", 80), ("http", 81)]),
                "ports[1].name",
            ),
            (export_with(vec![("a", 80), ("b", 80)]), "ports[1].port"),
            (export_with(vec![("Bad_Name", 80)]), "ports[0].name"),
        ];
        for (export, field) in cases {
            assert_eq!(field_of(super::export(&export).unwrap_err()), field);
        }
        let mut bad_ns = export_with(vec![("http", 80)]);
        bad_ns.namespace = "-shop".into();
        assert_eq!(field_of(super::export(&bad_ns).unwrap_err()), "namespace");
        let mut too_healthy = export_with(vec![("http", 80)]);
        too_healthy.health = EndpointHealth {
            healthy: 3,
            total: 2,
        };
        assert_eq!(
            field_of(super::export(&too_healthy).unwrap_err()),
            "health.healthy"
        );
        assert!(super::export(&export_with(vec![("http", 80), ("grpc", 81)])).is_ok());
    }

    #[test]
    fn cluster_problems_name_their_field() {
        let base = Cluster {
            name: "east".into(),
            gateways: vec![GatewayEndpoint {
                name: "ew".into(),
                address: "127.0.0.1:15443".into(),
            }],
            intermediate_pem: None,
            locality: None,
            join: None,
            state: ClusterState::Active,
            revision: 0,
        };
        assert!(cluster(&base).is_ok());
        let mut named = base.clone();
        named.gateways[0].address = "gw.east.example:15443".into();
        assert!(cluster(&named).is_ok());
        let mut bad = base.clone();
        bad.name = "East".into();
        assert_eq!(field_of(cluster(&bad).unwrap_err()), "name");
        for address in ["127.0.0.1", "host:0", ":80", "bad host:1"] {
            let mut bad = base.clone();
            bad.gateways[0].address = address.into();
            assert_eq!(
                field_of(cluster(&bad).unwrap_err()),
                "gateways[0].address",
                "{address}"
            );
        }
        let mut twice = base.clone();
        twice.gateways.push(twice.gateways[0].clone());
        assert_eq!(field_of(cluster(&twice).unwrap_err()), "gateways[1].name");
        let mut pem = base;
        pem.intermediate_pem = Some("not pem".into());
        assert_eq!(field_of(cluster(&pem).unwrap_err()), "intermediate_pem");
    }
}
