//! Protobuf ⇄ model, both ways, for the gRPC face and the client. Decoding checks what
//! the wire form cannot (enum values in range, ports that fit, required messages,
//! certificates that parse) and names the field as the protobuf message does, relative
//! to the message decoded; a request's decoder puts its own field in front
//! (`export.ports[1].port`).

use std::time::Duration;

use crate::ApiError;
use crate::claims::Claim;
use crate::model::{
    Cluster, ClusterState, EndpointHealth, Event, Expect, ExportKey, ExportPort, GatewayEndpoint,
    Policy, PortProtocol, RevisionEvents, ServiceExport, TrustBundleDoc,
};
use crate::proto;
use crate::registration::Registration;
use crate::request::{
    AddMember, CreateCluster, DeleteClaim, DeleteCluster, DeleteExport, DeletePolicy,
    DeleteRegistration, JoinTokenReply, Listed, PutClaim, PutCluster, PutExport, PutPolicy,
    PutRegistration, RegisterGateway, RevokeCluster, SetTrustBundle, Written,
};
use crate::status::{Consistency, MemberStatus, NodeInfo, StatusReport};
use crate::watch::{UnreadablePolicy, WatchMessage, Watched};

fn required<T>(value: Option<T>, field: &str) -> Result<T, ApiError> {
    value.ok_or_else(|| ApiError::invalid(field, "required"))
}

/// The model's consistency from its protobuf number.
pub fn consistency(value: i32) -> Result<Consistency, ApiError> {
    match proto::Consistency::try_from(value) {
        Ok(proto::Consistency::Linearizable) => Ok(Consistency::Linearizable),
        Ok(proto::Consistency::Stale) => Ok(Consistency::Stale),
        Err(_) => Err(ApiError::invalid(
            "consistency",
            format!("unknown value {value}; use CONSISTENCY_LINEARIZABLE or CONSISTENCY_STALE"),
        )),
    }
}

/// The protobuf number of a consistency.
pub fn consistency_to_proto(consistency: Consistency) -> i32 {
    match consistency {
        Consistency::Linearizable => proto::Consistency::Linearizable as i32,
        Consistency::Stale => proto::Consistency::Stale as i32,
    }
}

impl From<NodeInfo> for proto::Member {
    fn from(info: NodeInfo) -> Self {
        proto::Member {
            node_id: 0,
            name: info.name,
            raft_addr: info.raft_addr,
            admin_addr: info.admin_addr,
            rest_addr: info.rest_addr,
            enroll_addr: info.enroll_addr,
            voter: false,
            lag: None,
        }
    }
}

fn node_info(m: proto::Member) -> NodeInfo {
    NodeInfo {
        name: m.name,
        raft_addr: m.raft_addr,
        admin_addr: m.admin_addr,
        rest_addr: m.rest_addr,
        enroll_addr: m.enroll_addr,
    }
}

impl From<StatusReport> for proto::Status {
    fn from(report: StatusReport) -> Self {
        proto::Status {
            node_id: report.node_id,
            name: report.name,
            state: report.state,
            leader_id: report.leader_id,
            term: report.term,
            last_log_index: report.last_log_index,
            applied_index: report.applied_index,
            revision: report.revision,
            initialized: report.initialized,
            members: report
                .members
                .into_iter()
                .map(|m| proto::Member {
                    node_id: m.node_id,
                    voter: m.voter,
                    lag: m.lag,
                    ..proto::Member::from(m.info)
                })
                .collect(),
        }
    }
}

impl From<proto::Status> for StatusReport {
    fn from(s: proto::Status) -> Self {
        StatusReport {
            node_id: s.node_id,
            name: s.name,
            state: s.state,
            leader_id: s.leader_id,
            term: s.term,
            last_log_index: s.last_log_index,
            applied_index: s.applied_index,
            revision: s.revision,
            initialized: s.initialized,
            members: s
                .members
                .into_iter()
                .map(|m| MemberStatus {
                    node_id: m.node_id,
                    voter: m.voter,
                    lag: m.lag,
                    info: node_info(m),
                })
                .collect(),
        }
    }
}

fn cluster_state(value: i32) -> Result<ClusterState, ApiError> {
    match proto::ClusterState::try_from(value) {
        Ok(proto::ClusterState::Active) => Ok(ClusterState::Active),
        Ok(proto::ClusterState::Pending) => Ok(ClusterState::Pending),
        Ok(proto::ClusterState::Revoked) => Ok(ClusterState::Revoked),
        Err(_) => Err(ApiError::invalid("state", format!("unknown value {value}"))),
    }
}

impl TryFrom<proto::Cluster> for Cluster {
    type Error = ApiError;

    fn try_from(c: proto::Cluster) -> Result<Self, ApiError> {
        Ok(Cluster {
            state: cluster_state(c.state)?,
            name: c.name,
            gateways: c.gateways.into_iter().map(GatewayEndpoint::from).collect(),
            intermediate_pem: c.intermediate_pem,
            locality: c.locality,
            join: None,
            revision: c.revision,
        })
    }
}

impl From<Cluster> for proto::Cluster {
    fn from(c: Cluster) -> Self {
        proto::Cluster {
            name: c.name,
            gateways: c.gateways.into_iter().map(Into::into).collect(),
            intermediate_pem: c.intermediate_pem,
            state: match c.state {
                ClusterState::Active => proto::ClusterState::Active,
                ClusterState::Pending => proto::ClusterState::Pending,
                ClusterState::Revoked => proto::ClusterState::Revoked,
            } as i32,
            revision: c.revision,
            locality: c.locality,
        }
    }
}

impl From<proto::GatewayEndpoint> for GatewayEndpoint {
    fn from(g: proto::GatewayEndpoint) -> Self {
        GatewayEndpoint {
            name: g.name,
            address: g.address,
        }
    }
}

impl From<GatewayEndpoint> for proto::GatewayEndpoint {
    fn from(g: GatewayEndpoint) -> Self {
        proto::GatewayEndpoint {
            name: g.name,
            address: g.address,
        }
    }
}

impl TryFrom<proto::ServiceExport> for ServiceExport {
    type Error = ApiError;

    fn try_from(e: proto::ServiceExport) -> Result<Self, ApiError> {
        let mut ports = Vec::with_capacity(e.ports.len());
        for (i, p) in e.ports.into_iter().enumerate() {
            let port = u16::try_from(p.port).map_err(|_| {
                ApiError::invalid(
                    format!("ports[{i}].port"),
                    format!("{} is not a port; use 1..=65535", p.port),
                )
            })?;
            let protocol = match proto::PortProtocol::try_from(p.protocol) {
                Ok(proto::PortProtocol::Tcp) => PortProtocol::Tcp,
                Ok(proto::PortProtocol::Http) => PortProtocol::Http,
                Err(_) => {
                    return Err(ApiError::invalid(
                        format!("ports[{i}].protocol"),
                        format!("unknown value {}", p.protocol),
                    ));
                }
            };
            ports.push(ExportPort {
                name: p.name,
                port,
                protocol,
            });
        }
        let health = e
            .health
            .map_or(EndpointHealth::default(), |h| EndpointHealth {
                healthy: h.healthy,
                total: h.total,
            });
        Ok(ServiceExport {
            cluster: e.cluster,
            namespace: e.namespace,
            name: e.name,
            ports,
            health,
            revision: e.revision,
        })
    }
}

impl From<ServiceExport> for proto::ServiceExport {
    fn from(e: ServiceExport) -> Self {
        proto::ServiceExport {
            cluster: e.cluster,
            namespace: e.namespace,
            name: e.name,
            ports: e
                .ports
                .into_iter()
                .map(|p| proto::ExportPort {
                    name: p.name,
                    port: u32::from(p.port),
                    protocol: match p.protocol {
                        PortProtocol::Tcp => proto::PortProtocol::Tcp,
                        PortProtocol::Http => proto::PortProtocol::Http,
                    } as i32,
                })
                .collect(),
            health: Some(proto::EndpointHealth {
                healthy: e.health.healthy,
                total: e.health.total,
            }),
            revision: e.revision,
        }
    }
}

impl From<ExportKey> for proto::ExportKey {
    fn from(k: ExportKey) -> Self {
        proto::ExportKey {
            cluster: k.cluster,
            namespace: k.namespace,
            name: k.name,
        }
    }
}

/// The model's trust bundle from its protobuf form, every certificate checked; fields
/// are named as the protobuf names them (`roots[1]`).
pub fn bundle_from_proto(b: proto::TrustBundle) -> Result<TrustBundleDoc, ApiError> {
    let bundle = crate::bundle::from_proto(b).map_err(|e| match e {
        crate::bundle::BundleDecodeError::Certificate { field, source } => {
            ApiError::invalid(field, source.to_string())
        }
        crate::bundle::BundleDecodeError::NoRoots => {
            ApiError::invalid("roots", "a trust bundle needs at least one root")
        }
        other => ApiError::invalid("trust_domain", other.to_string()),
    })?;
    let pem =
        |roots: &[isthmus_ca::Root]| isthmus_ca::pem::certs_to_pem(roots.iter().map(|r| &r.der));
    Ok(TrustBundleDoc {
        trust_domain: bundle.trust_domain().to_string(),
        roots_pem: pem(bundle.roots()),
        retired_pem: pem(bundle.retired()),
        revision: 0,
    })
}

/// The protobuf form of a stored trust bundle.
pub fn bundle_to_proto(doc: &TrustBundleDoc) -> Result<proto::TrustBundleRecord, ApiError> {
    let bundle = crate::validate::trust_bundle(doc, None)
        .map_err(|e| ApiError::Internal(format!("stored trust bundle: {e}")))?;
    Ok(proto::TrustBundleRecord {
        bundle: Some(crate::bundle::to_proto(&bundle)),
        revision: doc.revision,
    })
}

/// The model's bundle (with its revision) from a protobuf record.
pub fn bundle_record(record: proto::TrustBundleRecord) -> Result<TrustBundleDoc, ApiError> {
    let bundle = required(record.bundle, "bundle")?;
    let mut doc = bundle_from_proto(bundle).map_err(|e| e.within("bundle"))?;
    doc.revision = record.revision;
    Ok(doc)
}

/// A field of the model's trust bundle as the protobuf message names it.
pub fn bundle_field(field: String) -> String {
    field
        .replace("roots_pem", "roots")
        .replace("retired_pem", "retired_roots")
}

impl TryFrom<proto::Policy> for Policy {
    type Error = ApiError;

    /// Parses and checks the document (`body.rules[0].name`).
    fn try_from(p: proto::Policy) -> Result<Self, ApiError> {
        Ok(Policy {
            body: crate::policy::parse(&p.body)?,
            name: p.name,
            revision: p.revision,
        })
    }
}

impl From<&Policy> for proto::Policy {
    fn from(p: &Policy) -> Self {
        proto::Policy {
            name: p.name.clone(),
            body: p.body.to_json(),
            revision: p.revision,
        }
    }
}

impl From<proto::Claim> for Claim {
    fn from(c: proto::Claim) -> Self {
        Claim {
            host: c.host,
            namespace: c.namespace,
            revision: c.revision,
        }
    }
}

impl From<&Claim> for proto::Claim {
    fn from(c: &Claim) -> Self {
        proto::Claim {
            host: c.host.clone(),
            namespace: c.namespace.clone(),
            revision: c.revision,
        }
    }
}

impl From<proto::Registration> for Registration {
    fn from(r: proto::Registration) -> Self {
        Registration {
            name: r.name,
            cluster: r.cluster,
            namespace: r.namespace,
            service_account: r.service_account,
            uid: r.uid,
            gid: r.gid,
            path: r.path,
            revision: r.revision,
        }
    }
}

impl From<&Registration> for proto::Registration {
    fn from(r: &Registration) -> Self {
        proto::Registration {
            name: r.name.clone(),
            cluster: r.cluster.clone(),
            namespace: r.namespace.clone(),
            service_account: r.service_account.clone(),
            uid: r.uid,
            gid: r.gid,
            path: r.path.clone(),
            revision: r.revision,
        }
    }
}

/// The protobuf form of an event.
pub fn event_to_proto(event: Event) -> Result<proto::Event, ApiError> {
    use proto::event::Kind;
    let kind = match event {
        Event::ClusterPut { cluster } => Kind::ClusterPut(cluster.into()),
        Event::ClusterDeleted { name } => Kind::ClusterDeleted(name),
        Event::ExportPut { export } => Kind::ExportPut(export.into()),
        Event::ExportDeleted {
            cluster,
            namespace,
            name,
        } => Kind::ExportDeleted(proto::ExportKey {
            cluster,
            namespace,
            name,
        }),
        Event::TrustBundleSet { trust_bundle } => {
            Kind::TrustBundleSet(bundle_to_proto(&trust_bundle)?)
        }
        Event::PolicyPut { policy } => Kind::PolicyPut((&policy).into()),
        Event::PolicyDeleted { name } => Kind::PolicyDeleted(name),
        Event::ClaimPut { claim } => Kind::ClaimPut((&claim).into()),
        Event::ClaimDeleted { host } => Kind::ClaimDeleted(host),
        Event::RegistrationPut { registration } => Kind::RegistrationPut((&registration).into()),
        Event::RegistrationDeleted { name } => Kind::RegistrationDeleted(name),
    };
    Ok(proto::Event { kind: Some(kind) })
}

/// The model form of a protobuf event (for clients of the watch).
pub fn event_from_proto(event: proto::Event) -> Result<Event, ApiError> {
    use proto::event::Kind;
    let kind = required(event.kind, "kind")?;
    Ok(match kind {
        Kind::ClusterPut(c) => Event::ClusterPut {
            cluster: c
                .try_into()
                .map_err(|e: ApiError| e.within("cluster_put"))?,
        },
        Kind::ClusterDeleted(name) => Event::ClusterDeleted { name },
        Kind::ExportPut(e) => Event::ExportPut {
            export: e.try_into().map_err(|e: ApiError| e.within("export_put"))?,
        },
        Kind::ExportDeleted(k) => Event::ExportDeleted {
            cluster: k.cluster,
            namespace: k.namespace,
            name: k.name,
        },
        Kind::TrustBundleSet(record) => Event::TrustBundleSet {
            trust_bundle: bundle_record(record).map_err(|e| e.within("trust_bundle_set"))?,
        },
        Kind::PolicyPut(p) => Event::PolicyPut {
            policy: p.try_into().map_err(|e: ApiError| e.within("policy_put"))?,
        },
        Kind::PolicyDeleted(name) => Event::PolicyDeleted { name },
        Kind::ClaimPut(c) => Event::ClaimPut { claim: c.into() },
        Kind::ClaimDeleted(host) => Event::ClaimDeleted { host },
        Kind::RegistrationPut(r) => Event::RegistrationPut {
            registration: r.into(),
        },
        Kind::RegistrationDeleted(name) => Event::RegistrationDeleted { name },
    })
}

/// The protobuf form of a watch message.
pub fn watch_to_proto(message: WatchMessage) -> Result<proto::WatchResponse, ApiError> {
    let (revision, events, snapshot, done) = match message {
        WatchMessage::Changes(changes) => (changes.revision, changes.events, false, false),
        WatchMessage::Snapshot {
            revision,
            events,
            done,
        } => (revision, events, true, done),
    };
    Ok(proto::WatchResponse {
        revision,
        events: events
            .into_iter()
            .map(event_to_proto)
            .collect::<Result<_, _>>()?,
        snapshot,
        snapshot_done: done,
    })
}

/// The model form of a protobuf watch message: every event must read.
pub fn watch_from_proto(message: proto::WatchResponse) -> Result<WatchMessage, ApiError> {
    let watched = watch_from_proto_lenient(message)?;
    match watched.unreadable.first() {
        None => Ok(watched.message),
        Some(p) => Err(ApiError::invalid(
            format!("policy {}", p.name),
            p.reason.clone(),
        )),
    }
}

/// The model form of a protobuf watch message for a client that must go on when a
/// policy does not read (a gateway, which then denies everything): such policies are
/// left out of the message and listed apart. Any other event that does not read is an
/// error.
pub fn watch_from_proto_lenient(message: proto::WatchResponse) -> Result<Watched, ApiError> {
    let mut events = Vec::with_capacity(message.events.len());
    let mut unreadable = Vec::new();
    for (i, event) in message.events.into_iter().enumerate() {
        if let Some(proto::event::Kind::PolicyPut(policy)) = &event.kind {
            if let Err(e) = Policy::try_from(policy.clone()) {
                unreadable.push(UnreadablePolicy {
                    name: policy.name.clone(),
                    reason: e.to_string(),
                });
                continue;
            }
        }
        events.push(event_from_proto(event).map_err(|err| err.within(&format!("events[{i}]")))?);
    }
    let message = watch_message(
        message.revision,
        events,
        message.snapshot,
        message.snapshot_done,
    );
    Ok(Watched {
        message,
        unreadable,
    })
}

fn watch_message(revision: u64, events: Vec<Event>, snapshot: bool, done: bool) -> WatchMessage {
    if snapshot {
        WatchMessage::Snapshot {
            revision,
            events,
            done,
        }
    } else {
        WatchMessage::Changes(RevisionEvents { revision, events })
    }
}

// Requests. Each decoder names fields from the request message down.

impl TryFrom<proto::PutClusterRequest> for PutCluster {
    type Error = ApiError;
    fn try_from(r: proto::PutClusterRequest) -> Result<Self, ApiError> {
        let cluster = required(r.cluster, "cluster")?;
        Ok(PutCluster {
            cluster: Cluster::try_from(cluster).map_err(|e| e.within("cluster"))?,
            expect: Expect::from_api(r.expect_revision),
        })
    }
}

impl From<PutCluster> for proto::PutClusterRequest {
    fn from(r: PutCluster) -> Self {
        proto::PutClusterRequest {
            cluster: Some(r.cluster.into()),
            expect_revision: r.expect.to_api(),
        }
    }
}

impl From<proto::DeleteClusterRequest> for DeleteCluster {
    fn from(r: proto::DeleteClusterRequest) -> Self {
        DeleteCluster {
            name: r.name,
            expect: Expect::from_api(r.expect_revision),
        }
    }
}

impl From<DeleteCluster> for proto::DeleteClusterRequest {
    fn from(r: DeleteCluster) -> Self {
        proto::DeleteClusterRequest {
            name: r.name,
            expect_revision: r.expect.to_api(),
        }
    }
}

impl From<proto::CreateClusterRequest> for CreateCluster {
    fn from(r: proto::CreateClusterRequest) -> Self {
        CreateCluster {
            name: r.name,
            locality: r.locality,
            ttl: r.ttl_seconds.map(Duration::from_secs),
        }
    }
}

impl From<CreateCluster> for proto::CreateClusterRequest {
    fn from(r: CreateCluster) -> Self {
        proto::CreateClusterRequest {
            name: r.name,
            locality: r.locality,
            ttl_seconds: r.ttl.map(|t| t.as_secs()),
        }
    }
}

impl From<JoinTokenReply> for proto::JoinTokenReply {
    fn from(r: JoinTokenReply) -> Self {
        proto::JoinTokenReply {
            token: r.token,
            expires_at: r.expires_at,
            revision: r.revision,
        }
    }
}

impl From<proto::JoinTokenReply> for JoinTokenReply {
    fn from(r: proto::JoinTokenReply) -> Self {
        JoinTokenReply {
            token: r.token,
            expires_at: r.expires_at,
            revision: r.revision,
        }
    }
}

impl From<proto::RevokeClusterRequest> for RevokeCluster {
    fn from(r: proto::RevokeClusterRequest) -> Self {
        RevokeCluster { name: r.name }
    }
}

impl From<RevokeCluster> for proto::RevokeClusterRequest {
    fn from(r: RevokeCluster) -> Self {
        proto::RevokeClusterRequest { name: r.name }
    }
}

impl TryFrom<proto::RegisterGatewayRequest> for RegisterGateway {
    type Error = ApiError;
    fn try_from(r: proto::RegisterGatewayRequest) -> Result<Self, ApiError> {
        Ok(RegisterGateway {
            gateway: required(r.gateway, "gateway")?.into(),
            cluster: r.cluster,
        })
    }
}

impl From<RegisterGateway> for proto::RegisterGatewayRequest {
    fn from(r: RegisterGateway) -> Self {
        proto::RegisterGatewayRequest {
            cluster: r.cluster,
            gateway: Some(r.gateway.into()),
        }
    }
}

impl TryFrom<proto::PutExportRequest> for PutExport {
    type Error = ApiError;
    fn try_from(r: proto::PutExportRequest) -> Result<Self, ApiError> {
        let export = required(r.export, "export")?;
        Ok(PutExport {
            export: ServiceExport::try_from(export).map_err(|e| e.within("export"))?,
            expect: Expect::from_api(r.expect_revision),
        })
    }
}

impl From<PutExport> for proto::PutExportRequest {
    fn from(r: PutExport) -> Self {
        proto::PutExportRequest {
            export: Some(r.export.into()),
            expect_revision: r.expect.to_api(),
        }
    }
}

impl From<proto::DeleteExportRequest> for DeleteExport {
    fn from(r: proto::DeleteExportRequest) -> Self {
        DeleteExport {
            key: ExportKey {
                cluster: r.cluster,
                namespace: r.namespace,
                name: r.name,
            },
            expect: Expect::from_api(r.expect_revision),
        }
    }
}

impl From<DeleteExport> for proto::DeleteExportRequest {
    fn from(r: DeleteExport) -> Self {
        proto::DeleteExportRequest {
            cluster: r.key.cluster,
            namespace: r.key.namespace,
            name: r.key.name,
            expect_revision: r.expect.to_api(),
        }
    }
}

impl TryFrom<proto::PutPolicyRequest> for PutPolicy {
    type Error = ApiError;
    fn try_from(r: proto::PutPolicyRequest) -> Result<Self, ApiError> {
        let policy = required(r.policy, "policy")?;
        Ok(PutPolicy {
            policy: Policy::try_from(policy).map_err(|e| e.within("policy"))?,
            expect: Expect::from_api(r.expect_revision),
        })
    }
}

impl From<PutPolicy> for proto::PutPolicyRequest {
    fn from(r: PutPolicy) -> Self {
        proto::PutPolicyRequest {
            policy: Some((&r.policy).into()),
            expect_revision: r.expect.to_api(),
        }
    }
}

impl From<proto::DeletePolicyRequest> for DeletePolicy {
    fn from(r: proto::DeletePolicyRequest) -> Self {
        DeletePolicy {
            name: r.name,
            expect: Expect::from_api(r.expect_revision),
        }
    }
}

impl From<DeletePolicy> for proto::DeletePolicyRequest {
    fn from(r: DeletePolicy) -> Self {
        proto::DeletePolicyRequest {
            name: r.name,
            expect_revision: r.expect.to_api(),
        }
    }
}

impl TryFrom<proto::PutClaimRequest> for PutClaim {
    type Error = ApiError;
    fn try_from(r: proto::PutClaimRequest) -> Result<Self, ApiError> {
        Ok(PutClaim {
            claim: required(r.claim, "claim")?.into(),
            expect: Expect::from_api(r.expect_revision),
        })
    }
}

impl From<PutClaim> for proto::PutClaimRequest {
    fn from(r: PutClaim) -> Self {
        proto::PutClaimRequest {
            claim: Some((&r.claim).into()),
            expect_revision: r.expect.to_api(),
        }
    }
}

impl TryFrom<proto::PutRegistrationRequest> for PutRegistration {
    type Error = ApiError;
    fn try_from(r: proto::PutRegistrationRequest) -> Result<Self, ApiError> {
        Ok(PutRegistration {
            registration: required(r.registration, "registration")?.into(),
            expect: Expect::from_api(r.expect_revision),
        })
    }
}

impl From<PutRegistration> for proto::PutRegistrationRequest {
    fn from(r: PutRegistration) -> Self {
        proto::PutRegistrationRequest {
            registration: Some((&r.registration).into()),
            expect_revision: r.expect.to_api(),
        }
    }
}

impl From<proto::DeleteRegistrationRequest> for DeleteRegistration {
    fn from(r: proto::DeleteRegistrationRequest) -> Self {
        DeleteRegistration {
            name: r.name,
            expect: Expect::from_api(r.expect_revision),
        }
    }
}

impl From<DeleteRegistration> for proto::DeleteRegistrationRequest {
    fn from(r: DeleteRegistration) -> Self {
        proto::DeleteRegistrationRequest {
            name: r.name,
            expect_revision: r.expect.to_api(),
        }
    }
}

impl From<proto::DeleteClaimRequest> for DeleteClaim {
    fn from(r: proto::DeleteClaimRequest) -> Self {
        DeleteClaim {
            host: r.host,
            expect: Expect::from_api(r.expect_revision),
        }
    }
}

impl From<DeleteClaim> for proto::DeleteClaimRequest {
    fn from(r: DeleteClaim) -> Self {
        proto::DeleteClaimRequest {
            host: r.host,
            expect_revision: r.expect.to_api(),
        }
    }
}

impl TryFrom<proto::SetTrustBundleRequest> for SetTrustBundle {
    type Error = ApiError;
    fn try_from(r: proto::SetTrustBundleRequest) -> Result<Self, ApiError> {
        let bundle = required(r.bundle, "bundle")?;
        Ok(SetTrustBundle {
            bundle: bundle_from_proto(bundle).map_err(|e| e.within("bundle"))?,
            expect: Expect::from_api(r.expect_revision),
        })
    }
}

impl TryFrom<SetTrustBundle> for proto::SetTrustBundleRequest {
    type Error = ApiError;
    fn try_from(r: SetTrustBundle) -> Result<Self, ApiError> {
        let bundle = crate::validate::trust_bundle(&r.bundle, None)?;
        Ok(proto::SetTrustBundleRequest {
            bundle: Some(crate::bundle::to_proto(&bundle)),
            expect_revision: r.expect.to_api(),
        })
    }
}

impl TryFrom<proto::AddMemberRequest> for AddMember {
    type Error = ApiError;
    fn try_from(r: proto::AddMemberRequest) -> Result<Self, ApiError> {
        Ok(AddMember {
            info: node_info(required(r.member, "member")?),
            node_id: r.node_id,
        })
    }
}

impl From<AddMember> for proto::AddMemberRequest {
    fn from(r: AddMember) -> Self {
        proto::AddMemberRequest {
            node_id: r.node_id,
            member: Some(proto::Member {
                node_id: r.node_id,
                voter: true,
                ..r.info.into()
            }),
        }
    }
}

impl From<Written> for proto::WriteResponse {
    fn from(w: Written) -> Self {
        proto::WriteResponse {
            revision: w.revision,
        }
    }
}

impl From<Listed<Cluster>> for proto::ClusterList {
    fn from(l: Listed<Cluster>) -> Self {
        proto::ClusterList {
            revision: l.revision,
            clusters: l.items.into_iter().map(Into::into).collect(),
        }
    }
}

impl TryFrom<proto::ClusterList> for Listed<Cluster> {
    type Error = ApiError;
    fn try_from(l: proto::ClusterList) -> Result<Self, ApiError> {
        Ok(Listed {
            revision: l.revision,
            items: l
                .clusters
                .into_iter()
                .enumerate()
                .map(|(i, c)| Cluster::try_from(c).map_err(|e| e.within(&format!("clusters[{i}]"))))
                .collect::<Result<_, _>>()?,
        })
    }
}

impl From<Listed<ServiceExport>> for proto::ExportList {
    fn from(l: Listed<ServiceExport>) -> Self {
        proto::ExportList {
            revision: l.revision,
            exports: l.items.into_iter().map(Into::into).collect(),
        }
    }
}

impl TryFrom<proto::ExportList> for Listed<ServiceExport> {
    type Error = ApiError;
    fn try_from(l: proto::ExportList) -> Result<Self, ApiError> {
        Ok(Listed {
            revision: l.revision,
            items: l
                .exports
                .into_iter()
                .enumerate()
                .map(|(i, e)| {
                    ServiceExport::try_from(e).map_err(|err| err.within(&format!("exports[{i}]")))
                })
                .collect::<Result<_, _>>()?,
        })
    }
}

impl From<Listed<Policy>> for proto::PolicyList {
    fn from(l: Listed<Policy>) -> Self {
        proto::PolicyList {
            revision: l.revision,
            policies: l.items.iter().map(Into::into).collect(),
        }
    }
}

impl TryFrom<proto::PolicyList> for Listed<Policy> {
    type Error = ApiError;
    fn try_from(l: proto::PolicyList) -> Result<Self, ApiError> {
        Ok(Listed {
            revision: l.revision,
            items: l
                .policies
                .into_iter()
                .enumerate()
                .map(|(i, p)| Policy::try_from(p).map_err(|e| e.within(&format!("policies[{i}]"))))
                .collect::<Result<_, _>>()?,
        })
    }
}

impl From<Listed<Claim>> for proto::ClaimList {
    fn from(l: Listed<Claim>) -> Self {
        proto::ClaimList {
            revision: l.revision,
            claims: l.items.iter().map(Into::into).collect(),
        }
    }
}

impl From<proto::ClaimList> for Listed<Claim> {
    fn from(l: proto::ClaimList) -> Self {
        Listed {
            revision: l.revision,
            items: l.claims.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<Listed<Registration>> for proto::RegistrationList {
    fn from(l: Listed<Registration>) -> Self {
        proto::RegistrationList {
            revision: l.revision,
            registrations: l.items.iter().map(Into::into).collect(),
        }
    }
}

impl From<proto::RegistrationList> for Listed<Registration> {
    fn from(l: proto::RegistrationList) -> Self {
        Listed {
            revision: l.revision,
            items: l.registrations.into_iter().map(Into::into).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_wire_values_name_their_field_from_the_request_down() {
        let mut export = proto::ServiceExport {
            cluster: "east".into(),
            namespace: "demo".into(),
            name: "echo".into(),
            ports: vec![proto::ExportPort {
                name: "http".into(),
                port: 70_000,
                protocol: 0,
            }],
            health: None,
            revision: 0,
        };
        let request = proto::PutExportRequest {
            export: Some(export.clone()),
            expect_revision: None,
        };
        let err = PutExport::try_from(request).unwrap_err();
        assert_eq!(err.field(), Some("export.ports[0].port"));
        export.ports[0].port = 80;
        export.ports[0].protocol = 9;
        let request = proto::PutExportRequest {
            export: Some(export),
            expect_revision: None,
        };
        let err = PutExport::try_from(request).unwrap_err();
        assert_eq!(err.field(), Some("export.ports[0].protocol"));
        let missing = proto::PutClusterRequest {
            cluster: None,
            expect_revision: None,
        };
        assert_eq!(
            PutCluster::try_from(missing).unwrap_err().field(),
            Some("cluster")
        );
        assert_eq!(consistency(7).unwrap_err().field(), Some("consistency"));
        let policy = proto::PutPolicyRequest {
            policy: Some(proto::Policy {
                name: "p".into(),
                body: "{\"rules\":[],\"x\":1}".into(),
                revision: 0,
            }),
            expect_revision: None,
        };
        assert_eq!(
            PutPolicy::try_from(policy).unwrap_err().field(),
            Some("policy.body.x")
        );
    }

    #[test]
    fn requests_round_trip_through_protobuf() {
        let put = PutExport {
            export: ServiceExport {
                cluster: "east".into(),
                namespace: "demo".into(),
                name: "echo".into(),
                ports: vec![ExportPort {
                    name: "http".into(),
                    port: 8080,
                    protocol: PortProtocol::Http,
                }],
                health: EndpointHealth {
                    healthy: 1,
                    total: 2,
                },
                revision: 0,
            },
            expect: Expect::Revision(4),
        };
        let back = PutExport::try_from(proto::PutExportRequest::from(put.clone())).unwrap();
        assert_eq!(back, put);
        let policy = Policy {
            name: "p".into(),
            body: crate::policy::parse(
                r#"{"rules":[{"name":"a","action":"allow","from":[{"cluster":"*"}],"to":{"namespace":"shop"}}]}"#,
            )
            .unwrap(),
            revision: 0,
        };
        let put = PutPolicy {
            policy,
            expect: Expect::Absent,
        };
        let back = PutPolicy::try_from(proto::PutPolicyRequest::from(put.clone())).unwrap();
        assert_eq!(back, put);
    }
}
