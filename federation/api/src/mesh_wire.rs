//! The mesh status values ([`crate::mesh`], [`crate::alerts`]) to and from their protobuf form. Decoding
//! refuses what the typed form cannot hold (an unknown enum value, a missing part),
//! naming the field; bounds are [`GatewayReport::check`]'s.

use crate::ApiError;
use crate::alerts::{AlertList, AlertRecord};
use crate::mesh::{
    AppTlsCounts, CertificateExpiry, DecisionCount, DecisionWindow, EdgeReport, EdgeSecurity,
    FailureCount, GatewayReport, GatewayState, GatewayStatus, HandshakeFailures, HandshakeSide,
    MeshEdge, MeshEvent, MeshPicture, PeerLink, WindowedDecision,
};
use crate::proto;

fn side_to(side: HandshakeSide) -> i32 {
    match side {
        HandshakeSide::Accept => proto::HandshakeSide::Accept as i32,
        HandshakeSide::Dial => proto::HandshakeSide::Dial as i32,
    }
}

fn side_from(field: &str, value: i32) -> Result<HandshakeSide, ApiError> {
    match proto::HandshakeSide::try_from(value) {
        Ok(proto::HandshakeSide::Accept) => Ok(HandshakeSide::Accept),
        Ok(proto::HandshakeSide::Dial) => Ok(HandshakeSide::Dial),
        Err(_) => Err(ApiError::invalid(field, format!("unknown side {value}"))),
    }
}

fn state_to(state: GatewayState) -> i32 {
    match state {
        GatewayState::Up => proto::GatewayState::Up as i32,
        GatewayState::Stale => proto::GatewayState::Stale as i32,
        GatewayState::Lost => proto::GatewayState::Lost as i32,
    }
}

fn state_from(field: &str, value: i32) -> Result<GatewayState, ApiError> {
    match proto::GatewayState::try_from(value) {
        Ok(proto::GatewayState::Up) => Ok(GatewayState::Up),
        Ok(proto::GatewayState::Stale) => Ok(GatewayState::Stale),
        Ok(proto::GatewayState::Lost) => Ok(GatewayState::Lost),
        Err(_) => Err(ApiError::invalid(field, format!("unknown state {value}"))),
    }
}

fn security_to(security: EdgeSecurity) -> i32 {
    match security {
        EdgeSecurity::Unknown => proto::EdgeSecurity::Unknown as i32,
        EdgeSecurity::MutualTls => proto::EdgeSecurity::MutualTls as i32,
        EdgeSecurity::Partial => proto::EdgeSecurity::Partial as i32,
        EdgeSecurity::Failing => proto::EdgeSecurity::Failing as i32,
    }
}

fn security_from(field: &str, value: i32) -> Result<EdgeSecurity, ApiError> {
    match proto::EdgeSecurity::try_from(value) {
        Ok(proto::EdgeSecurity::Unknown) => Ok(EdgeSecurity::Unknown),
        Ok(proto::EdgeSecurity::MutualTls) => Ok(EdgeSecurity::MutualTls),
        Ok(proto::EdgeSecurity::Partial) => Ok(EdgeSecurity::Partial),
        Ok(proto::EdgeSecurity::Failing) => Ok(EdgeSecurity::Failing),
        Err(_) => Err(ApiError::invalid(
            field,
            format!("unknown security {value}"),
        )),
    }
}

fn app_tls_to(c: AppTlsCounts) -> proto::AppTlsCounts {
    proto::AppTlsCounts {
        passthrough: c.passthrough,
        terminated: c.terminated,
        none: c.none,
    }
}

fn app_tls_from(c: Option<proto::AppTlsCounts>) -> AppTlsCounts {
    c.map_or_else(AppTlsCounts::default, |c| AppTlsCounts {
        passthrough: c.passthrough,
        terminated: c.terminated,
        none: c.none,
    })
}

fn decisions_to(d: Vec<DecisionCount>) -> Vec<proto::DecisionCount> {
    d.into_iter()
        .map(|d| proto::DecisionCount {
            decision: d.decision,
            rule: d.rule,
            count: d.count,
        })
        .collect()
}

fn decisions_from(d: Vec<proto::DecisionCount>) -> Vec<DecisionCount> {
    d.into_iter()
        .map(|d| DecisionCount {
            decision: d.decision,
            rule: d.rule,
            count: d.count,
        })
        .collect()
}

fn certs_to(c: Vec<CertificateExpiry>) -> Vec<proto::CertificateExpiry> {
    c.into_iter()
        .map(|c| proto::CertificateExpiry {
            kind: c.kind,
            not_after: c.not_after,
        })
        .collect()
}

fn certs_from(c: Vec<proto::CertificateExpiry>) -> Vec<CertificateExpiry> {
    c.into_iter()
        .map(|c| CertificateExpiry {
            kind: c.kind,
            not_after: c.not_after,
        })
        .collect()
}

fn peers_to(p: Vec<PeerLink>) -> Vec<proto::PeerLink> {
    p.into_iter()
        .map(|p| proto::PeerLink {
            cluster: p.cluster,
            connected: p.connected,
        })
        .collect()
}

fn peers_from(p: Vec<proto::PeerLink>) -> Vec<PeerLink> {
    p.into_iter()
        .map(|p| PeerLink {
            cluster: p.cluster,
            connected: p.connected,
        })
        .collect()
}

impl From<GatewayReport> for proto::GatewayReport {
    fn from(r: GatewayReport) -> Self {
        Self {
            cluster: r.cluster,
            gateway: r.gateway,
            started_at: r.started_at,
            sequence: r.sequence,
            catalog_revision: r.catalog_revision,
            catalog_age_seconds: r.catalog_age_seconds,
            certificates: certs_to(r.certificates),
            active_roots: r.active_roots,
            retired_roots: r.retired_roots,
            peers: peers_to(r.peers),
            inbound: r
                .inbound
                .into_iter()
                .map(|e| proto::EdgeReport {
                    source_cluster: e.source_cluster,
                    namespace: e.namespace,
                    service: e.service,
                    peer_identities: e.peer_identities,
                    streams: e.streams,
                    connections: e.connections,
                    mutual_tls: e.mutual_tls,
                    active: e.active,
                    bytes_received: e.bytes_received,
                    bytes_sent: e.bytes_sent,
                    app_tls: Some(app_tls_to(e.app_tls)),
                    plaintext_on_tls: e.plaintext_on_tls,
                    decisions: decisions_to(e.decisions),
                    last_connection_at: e.last_connection_at,
                })
                .collect(),
            handshake_failures: r
                .handshake_failures
                .into_iter()
                .map(|h| proto::HandshakeFailures {
                    side: side_to(h.side),
                    peer_cluster: h.peer_cluster,
                    reason: h.reason,
                    count: h.count,
                    last_at: h.last_at,
                })
                .collect(),
        }
    }
}

impl TryFrom<proto::GatewayReport> for GatewayReport {
    type Error = ApiError;

    fn try_from(r: proto::GatewayReport) -> Result<Self, ApiError> {
        let mut handshake_failures = Vec::with_capacity(r.handshake_failures.len());
        for (i, h) in r.handshake_failures.into_iter().enumerate() {
            handshake_failures.push(HandshakeFailures {
                side: side_from(&format!("handshake_failures[{i}].side"), h.side)?,
                peer_cluster: h.peer_cluster,
                reason: h.reason,
                count: h.count,
                last_at: h.last_at,
            });
        }
        Ok(Self {
            cluster: r.cluster,
            gateway: r.gateway,
            started_at: r.started_at,
            sequence: r.sequence,
            catalog_revision: r.catalog_revision,
            catalog_age_seconds: r.catalog_age_seconds,
            certificates: certs_from(r.certificates),
            active_roots: r.active_roots,
            retired_roots: r.retired_roots,
            peers: peers_from(r.peers),
            inbound: r
                .inbound
                .into_iter()
                .map(|e| EdgeReport {
                    source_cluster: e.source_cluster,
                    namespace: e.namespace,
                    service: e.service,
                    peer_identities: e.peer_identities,
                    streams: e.streams,
                    connections: e.connections,
                    mutual_tls: e.mutual_tls,
                    active: e.active,
                    bytes_received: e.bytes_received,
                    bytes_sent: e.bytes_sent,
                    app_tls: app_tls_from(e.app_tls),
                    plaintext_on_tls: e.plaintext_on_tls,
                    decisions: decisions_from(e.decisions),
                    last_connection_at: e.last_connection_at,
                })
                .collect(),
            handshake_failures,
        })
    }
}

fn gateway_to(g: GatewayStatus) -> proto::GatewayStatus {
    proto::GatewayStatus {
        cluster: g.cluster,
        gateway: g.gateway,
        state: state_to(g.state),
        age_seconds: g.age_seconds,
        started_at: g.started_at,
        sequence: g.sequence,
        catalog_revision: g.catalog_revision,
        catalog_age_seconds: g.catalog_age_seconds,
        certificates: certs_to(g.certificates),
        active_roots: g.active_roots,
        retired_roots: g.retired_roots,
        peers: peers_to(g.peers),
    }
}

fn gateway_from(field: &str, g: proto::GatewayStatus) -> Result<GatewayStatus, ApiError> {
    Ok(GatewayStatus {
        state: state_from(&format!("{field}.state"), g.state)?,
        cluster: g.cluster,
        gateway: g.gateway,
        age_seconds: g.age_seconds,
        started_at: g.started_at,
        sequence: g.sequence,
        catalog_revision: g.catalog_revision,
        catalog_age_seconds: g.catalog_age_seconds,
        certificates: certs_from(g.certificates),
        active_roots: g.active_roots,
        retired_roots: g.retired_roots,
        peers: peers_from(g.peers),
    })
}

fn edge_to(e: MeshEdge) -> proto::MeshEdge {
    proto::MeshEdge {
        source_cluster: e.source_cluster,
        destination_cluster: e.destination_cluster,
        service: e.service,
        security: security_to(e.security),
        peer_identities: e.peer_identities,
        streams: e.streams,
        connections: e.connections,
        mutual_tls: e.mutual_tls,
        active: e.active,
        bytes_received: e.bytes_received,
        bytes_sent: e.bytes_sent,
        app_tls: Some(app_tls_to(e.app_tls)),
        plaintext_on_tls: e.plaintext_on_tls,
        handshake_failures: e
            .handshake_failures
            .into_iter()
            .map(|f| proto::FailureCount {
                side: side_to(f.side),
                reason: f.reason,
                count: f.count,
                last_at: f.last_at,
            })
            .collect(),
        decisions: decisions_to(e.decisions),
        last_connection_at: e.last_connection_at,
        reported_by: e.reported_by,
        age_seconds: e.age_seconds,
    }
}

fn edge_from(field: &str, e: proto::MeshEdge) -> Result<MeshEdge, ApiError> {
    let mut handshake_failures = Vec::with_capacity(e.handshake_failures.len());
    for (i, f) in e.handshake_failures.into_iter().enumerate() {
        handshake_failures.push(FailureCount {
            side: side_from(&format!("{field}.handshake_failures[{i}].side"), f.side)?,
            reason: f.reason,
            count: f.count,
            last_at: f.last_at,
        });
    }
    Ok(MeshEdge {
        security: security_from(&format!("{field}.security"), e.security)?,
        source_cluster: e.source_cluster,
        destination_cluster: e.destination_cluster,
        service: e.service,
        peer_identities: e.peer_identities,
        streams: e.streams,
        connections: e.connections,
        mutual_tls: e.mutual_tls,
        active: e.active,
        bytes_received: e.bytes_received,
        bytes_sent: e.bytes_sent,
        app_tls: app_tls_from(e.app_tls),
        plaintext_on_tls: e.plaintext_on_tls,
        handshake_failures,
        decisions: decisions_from(e.decisions),
        last_connection_at: e.last_connection_at,
        reported_by: e.reported_by,
        age_seconds: e.age_seconds,
    })
}

impl From<MeshPicture> for proto::MeshPicture {
    fn from(p: MeshPicture) -> Self {
        Self {
            node: p.node,
            generated_at: p.generated_at,
            revision: p.revision,
            gateways: p.gateways.into_iter().map(gateway_to).collect(),
            edges: p.edges.into_iter().map(edge_to).collect(),
        }
    }
}

impl TryFrom<proto::MeshPicture> for MeshPicture {
    type Error = ApiError;

    fn try_from(p: proto::MeshPicture) -> Result<Self, ApiError> {
        Ok(Self {
            node: p.node,
            generated_at: p.generated_at,
            revision: p.revision,
            gateways: p
                .gateways
                .into_iter()
                .enumerate()
                .map(|(i, g)| gateway_from(&format!("gateways[{i}]"), g))
                .collect::<Result<_, _>>()?,
            edges: p
                .edges
                .into_iter()
                .enumerate()
                .map(|(i, e)| edge_from(&format!("edges[{i}]"), e))
                .collect::<Result<_, _>>()?,
        })
    }
}

impl From<MeshEvent> for proto::MeshEvent {
    fn from(e: MeshEvent) -> Self {
        match e {
            MeshEvent::Gateway {
                revision,
                previous,
                gateway,
            } => Self {
                revision,
                change: Some(proto::mesh_event::Change::Gateway(proto::GatewayChange {
                    previous: previous.map(state_to),
                    gateway: Some(gateway_to(gateway)),
                })),
            },
            MeshEvent::Edge {
                revision,
                previous,
                edge,
            } => Self {
                revision,
                change: Some(proto::mesh_event::Change::Edge(proto::EdgeChange {
                    previous: previous.map(security_to),
                    edge: Some(edge_to(edge)),
                })),
            },
        }
    }
}

impl TryFrom<proto::MeshEvent> for MeshEvent {
    type Error = ApiError;

    fn try_from(e: proto::MeshEvent) -> Result<Self, ApiError> {
        match e.change {
            Some(proto::mesh_event::Change::Gateway(g)) => Ok(Self::Gateway {
                revision: e.revision,
                previous: g
                    .previous
                    .map(|p| state_from("gateway.previous", p))
                    .transpose()?,
                gateway: gateway_from(
                    "gateway.gateway",
                    g.gateway
                        .ok_or_else(|| ApiError::invalid("gateway.gateway", "missing"))?,
                )?,
            }),
            Some(proto::mesh_event::Change::Edge(c)) => Ok(Self::Edge {
                revision: e.revision,
                previous: c
                    .previous
                    .map(|p| security_from("edge.previous", p))
                    .transpose()?,
                edge: edge_from(
                    "edge.edge",
                    c.edge
                        .ok_or_else(|| ApiError::invalid("edge.edge", "missing"))?,
                )?,
            }),
            None => Err(ApiError::invalid("change", "missing")),
        }
    }
}

impl From<DecisionWindow> for proto::DecisionWindow {
    fn from(w: DecisionWindow) -> Self {
        Self {
            node: w.node,
            window_seconds: w.window_seconds,
            from: w.from,
            to: w.to,
            decisions: w
                .decisions
                .into_iter()
                .map(|d| proto::WindowedDecision {
                    rule: d.rule,
                    decision: d.decision,
                    source_cluster: d.source_cluster,
                    destination_cluster: d.destination_cluster,
                    service: d.service,
                    count: d.count,
                })
                .collect(),
        }
    }
}

impl From<proto::DecisionWindow> for DecisionWindow {
    fn from(w: proto::DecisionWindow) -> Self {
        Self {
            node: w.node,
            window_seconds: w.window_seconds,
            from: w.from,
            to: w.to,
            decisions: w
                .decisions
                .into_iter()
                .map(|d| WindowedDecision {
                    rule: d.rule,
                    decision: d.decision,
                    source_cluster: d.source_cluster,
                    destination_cluster: d.destination_cluster,
                    service: d.service,
                    count: d.count,
                })
                .collect(),
        }
    }
}

fn alert_to(a: AlertRecord) -> proto::AlertRecord {
    proto::AlertRecord {
        alertname: a.alertname,
        severity: a.severity,
        labels: a.labels.into_iter().collect(),
        summary: a.summary,
        starts_at: a.starts_at,
        ends_at: a.ends_at,
        edge: a.edge,
    }
}

fn alert_from(a: proto::AlertRecord) -> AlertRecord {
    AlertRecord {
        alertname: a.alertname,
        severity: a.severity,
        labels: a.labels.into_iter().collect(),
        summary: a.summary,
        starts_at: a.starts_at,
        ends_at: a.ends_at,
        edge: a.edge,
    }
}

impl From<AlertList> for proto::AlertList {
    fn from(l: AlertList) -> Self {
        Self {
            node: l.node,
            delivering: l.delivering,
            evaluated_at: l.evaluated_at,
            firing: l.firing.into_iter().map(alert_to).collect(),
            resolved: l.resolved.into_iter().map(alert_to).collect(),
        }
    }
}

impl From<proto::AlertList> for AlertList {
    fn from(l: proto::AlertList) -> Self {
        Self {
            node: l.node,
            delivering: l.delivering,
            evaluated_at: l.evaluated_at,
            firing: l.firing.into_iter().map(alert_from).collect(),
            resolved: l.resolved.into_iter().map(alert_from).collect(),
        }
    }
}
