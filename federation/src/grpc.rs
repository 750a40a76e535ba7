//! The admin API over gRPC: converts between protobuf and the model and calls the
//! service layer. Every decode failure names the field.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use tonic::{Request, Response, Status};

use std::collections::BTreeSet;

use crate::access::{AccessControl, Operation, Principal, Role, policy_namespaces};
use crate::claims::Claim;
use crate::command::{Command, Expect};
use crate::enroll::Enroller;
use crate::error::ApiError;
use crate::model::{
    Cluster, ClusterState, EndpointHealth, Event, ExportKey, ExportPort, GatewayEndpoint,
    PolicyDoc, PortProtocol, ServiceExport, TrustBundleDoc,
};
use crate::proto;
use crate::proto::federation_admin_server::FederationAdmin;
use crate::raft::NodeInfo;
use crate::service::{Consistency, Federation, StatusReport, WatchMessage};
use crate::validate;

/// The gRPC face of the admin service.
#[derive(Debug, Clone)]
pub struct AdminGrpc {
    federation: Arc<Federation>,
    enroller: Arc<Enroller>,
    access: Arc<AccessControl>,
}

impl AdminGrpc {
    /// Serves `federation`; `enroller` mints join tokens; `access` says who may call.
    pub fn new(
        federation: Arc<Federation>,
        enroller: Arc<Enroller>,
        access: Arc<AccessControl>,
    ) -> Self {
        Self {
            federation,
            enroller,
            access,
        }
    }

    /// Refuses the call unless its caller (client certificate or bearer token) has a
    /// role that grants `operation`. A gateway of a revoked or unknown cluster may do
    /// nothing.
    async fn authorize<T>(
        &self,
        request: &Request<T>,
        operation: Operation<'_>,
    ) -> Result<Principal, ApiError> {
        let certs = request.peer_certs();
        let peer = crate::tls::peer_id(certs.as_deref().map(Vec::as_slice));
        let header = match request.metadata().get("authorization") {
            Some(value) => Some(value.to_str().map_err(|_| {
                ApiError::Unauthenticated("the authorization header is not text".into())
            })?),
            None => None,
        };
        let principal = self.access.principal(peer.as_ref(), header)?;
        principal.may(&operation)?;
        if let Role::Gateway(cluster) = &principal.role {
            gateway_cluster_active(&self.federation, cluster).await?;
        }
        Ok(principal)
    }
}

/// The namespaces a policy write touches: those of the new document and of the one it
/// replaces (or deletes), with that one's revision for a compare-and-set so that the
/// check and the write see the same document.
pub(crate) async fn policy_scope(
    federation: &Federation,
    name: &str,
    new_body: Option<&str>,
) -> Result<(BTreeSet<String>, Option<u64>), ApiError> {
    let old = federation
        .read(Consistency::Linearizable, |s| {
            s.policies.get(name).map(|p| (p.body.clone(), p.revision))
        })
        .await?;
    let mut namespaces = new_body.map(policy_namespaces).unwrap_or_default();
    if let Some((body, _)) = &old {
        namespaces.extend(policy_namespaces(body));
    }
    Ok((namespaces, old.map(|(_, r)| r)))
}

/// The namespace holding the claim of exactly `host`, if any.
pub(crate) async fn claim_namespace(
    federation: &Federation,
    host: &str,
) -> Result<Option<String>, ApiError> {
    federation
        .read(Consistency::Linearizable, |s| {
            s.claims.get(host).map(|c| c.namespace.clone())
        })
        .await
}

/// The compare-and-set of a policy write: the caller's, or for a namespace admin the
/// revision whose namespaces were checked (none: must not exist), so that a policy
/// changed in between into another namespace's is not overwritten.
pub(crate) fn scoped_expect(
    principal: &Principal,
    asked: Option<u64>,
    checked: Option<u64>,
) -> Result<Expect, ApiError> {
    let Role::NamespaceAdmin(_) = principal.role else {
        return Ok(Expect::from_api(asked));
    };
    let checked = checked.unwrap_or(0);
    match asked {
        Some(asked) if asked != checked => Err(ApiError::FailedPrecondition(format!(
            "expected revision {asked}, but the policy is at revision {checked} (0: absent); read it again"
        ))),
        _ => Ok(Expect::from_api(Some(checked))),
    }
}

/// Refuses a gateway whose cluster is not an active member.
pub(crate) async fn gateway_cluster_active(
    federation: &Federation,
    cluster: &str,
) -> Result<(), ApiError> {
    let state = federation
        .read(Consistency::Stale, |s| {
            s.clusters.get(cluster).map(|c| c.state)
        })
        .await?;
    if state != Some(ClusterState::Active) {
        return Err(ApiError::PermissionDenied(format!(
            "cluster \"{cluster}\" is not an active member (state {state:?}); its gateways are refused"
        )));
    }
    Ok(())
}

fn consistency(value: i32) -> Result<Consistency, ApiError> {
    match proto::Consistency::try_from(value) {
        Ok(proto::Consistency::Linearizable) => Ok(Consistency::Linearizable),
        Ok(proto::Consistency::Stale) => Ok(Consistency::Stale),
        Err(_) => Err(ApiError::invalid(
            "consistency",
            format!("unknown value {value}; use CONSISTENCY_LINEARIZABLE or CONSISTENCY_STALE"),
        )),
    }
}

/// The protobuf form of a status report.
pub fn status_to_proto(report: StatusReport) -> proto::Status {
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
                name: m.info.name,
                raft_addr: m.info.raft_addr,
                admin_addr: m.info.admin_addr,
                rest_addr: m.info.rest_addr,
                enroll_addr: m.info.enroll_addr,
                voter: m.voter,
                lag: m.lag,
            })
            .collect(),
    }
}

/// The model form of a protobuf cluster.
pub fn cluster_from_proto(c: proto::Cluster) -> Result<Cluster, ApiError> {
    let state = match proto::ClusterState::try_from(c.state) {
        Ok(proto::ClusterState::Active) => ClusterState::Active,
        Ok(proto::ClusterState::Pending) => ClusterState::Pending,
        Ok(proto::ClusterState::Revoked) => ClusterState::Revoked,
        Err(_) => {
            return Err(ApiError::invalid(
                "cluster.state",
                format!("unknown value {}", c.state),
            ));
        }
    };
    Ok(Cluster {
        name: c.name,
        gateways: c
            .gateways
            .into_iter()
            .map(|g| GatewayEndpoint {
                name: g.name,
                address: g.address,
            })
            .collect(),
        intermediate_pem: c.intermediate_pem,
        state,
        locality: c.locality,
        join: None,
        revision: 0,
    })
}

/// The protobuf form of a cluster.
pub fn cluster_to_proto(c: Cluster) -> proto::Cluster {
    proto::Cluster {
        name: c.name,
        gateways: c
            .gateways
            .into_iter()
            .map(|g| proto::GatewayEndpoint {
                name: g.name,
                address: g.address,
            })
            .collect(),
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

/// The model form of a protobuf export.
pub fn export_from_proto(e: proto::ServiceExport) -> Result<ServiceExport, ApiError> {
    let mut ports = Vec::with_capacity(e.ports.len());
    for (i, p) in e.ports.into_iter().enumerate() {
        let port = u16::try_from(p.port).map_err(|_| {
            ApiError::invalid(
                format!("export.ports[{i}].port"),
                format!("{} is not a port; use 1..=65535", p.port),
            )
        })?;
        let protocol = match proto::PortProtocol::try_from(p.protocol) {
            Ok(proto::PortProtocol::Tcp) => PortProtocol::Tcp,
            Ok(proto::PortProtocol::Http) => PortProtocol::Http,
            Err(_) => {
                return Err(ApiError::invalid(
                    format!("export.ports[{i}].protocol"),
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
        revision: 0,
    })
}

/// The protobuf form of an export.
pub fn export_to_proto(e: ServiceExport) -> proto::ServiceExport {
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

/// The model form of a protobuf trust bundle (checked).
pub fn bundle_from_proto(b: proto::TrustBundle) -> Result<TrustBundleDoc, ApiError> {
    let bundle = crate::bundle::from_proto(b).map_err(|e| match e {
        crate::bundle::BundleDecodeError::Certificate { field, source } => {
            ApiError::invalid(format!("bundle.{field}"), source.to_string())
        }
        crate::bundle::BundleDecodeError::NoRoots => {
            ApiError::invalid("bundle.roots", "a trust bundle needs at least one root")
        }
        other => ApiError::invalid("bundle.trust_domain", other.to_string()),
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
    let bundle = validate::trust_bundle(doc, None)
        .map_err(|e| ApiError::Internal(format!("stored trust bundle: {e}")))?;
    Ok(proto::TrustBundleRecord {
        bundle: Some(crate::bundle::to_proto(&bundle)),
        revision: doc.revision,
    })
}

fn claim_to_proto(c: &Claim) -> proto::Claim {
    proto::Claim {
        host: c.host.clone(),
        namespace: c.namespace.clone(),
        revision: c.revision,
    }
}

fn policy_to_proto(p: &PolicyDoc) -> proto::Policy {
    proto::Policy {
        name: p.name.clone(),
        body: p.body.clone(),
        revision: p.revision,
    }
}

fn event_to_proto(event: Event) -> Result<proto::Event, ApiError> {
    use proto::event::Kind;
    let kind = match event {
        Event::ClusterPut { cluster } => Kind::ClusterPut(cluster_to_proto(cluster)),
        Event::ClusterDeleted { name } => Kind::ClusterDeleted(name),
        Event::ExportPut { export } => Kind::ExportPut(export_to_proto(export)),
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
        Event::PolicyPut { policy } => Kind::PolicyPut(proto::Policy {
            name: policy.name,
            body: policy.body,
            revision: policy.revision,
        }),
        Event::PolicyDeleted { name } => Kind::PolicyDeleted(name),
        Event::ClaimPut { claim } => Kind::ClaimPut(claim_to_proto(&claim)),
        Event::ClaimDeleted { host } => Kind::ClaimDeleted(host),
    };
    Ok(proto::Event { kind: Some(kind) })
}

/// The model form of a protobuf event (for clients of the watch).
pub fn event_from_proto(event: proto::Event) -> Result<Event, ApiError> {
    use proto::event::Kind;
    let kind = event
        .kind
        .ok_or_else(|| ApiError::invalid("kind", "an event without a kind"))?;
    Ok(match kind {
        Kind::ClusterPut(c) => {
            let revision = c.revision;
            let mut cluster = cluster_from_proto(c)?;
            cluster.revision = revision;
            Event::ClusterPut { cluster }
        }
        Kind::ClusterDeleted(name) => Event::ClusterDeleted { name },
        Kind::ExportPut(e) => {
            let revision = e.revision;
            let mut export = export_from_proto(e)?;
            export.revision = revision;
            Event::ExportPut { export }
        }
        Kind::ExportDeleted(k) => Event::ExportDeleted {
            cluster: k.cluster,
            namespace: k.namespace,
            name: k.name,
        },
        Kind::TrustBundleSet(record) => {
            let bundle = record
                .bundle
                .ok_or_else(|| ApiError::invalid("trust_bundle_set.bundle", "missing"))?;
            let mut trust_bundle = bundle_from_proto(bundle)?;
            trust_bundle.revision = record.revision;
            Event::TrustBundleSet { trust_bundle }
        }
        Kind::PolicyPut(p) => Event::PolicyPut {
            policy: PolicyDoc {
                name: p.name,
                body: p.body,
                revision: p.revision,
            },
        },
        Kind::PolicyDeleted(name) => Event::PolicyDeleted { name },
        Kind::ClaimPut(c) => Event::ClaimPut {
            claim: Claim {
                host: c.host,
                namespace: c.namespace,
                revision: c.revision,
            },
        },
        Kind::ClaimDeleted(host) => Event::ClaimDeleted { host },
    })
}

fn watch_to_proto(message: WatchMessage) -> Result<proto::WatchResponse, ApiError> {
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

/// The model form of a protobuf watch message (for clients of the watch).
pub fn watch_from_proto(message: proto::WatchResponse) -> Result<WatchMessage, ApiError> {
    let events = message
        .events
        .into_iter()
        .map(event_from_proto)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(if message.snapshot {
        WatchMessage::Snapshot {
            revision: message.revision,
            events,
            done: message.snapshot_done,
        }
    } else {
        WatchMessage::Changes(crate::model::RevisionEvents {
            revision: message.revision,
            events,
        })
    })
}

fn required<T>(value: Option<T>, field: &str) -> Result<T, ApiError> {
    value.ok_or_else(|| ApiError::invalid(field, "required"))
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl FederationAdmin for AdminGrpc {
    async fn get_status(&self, request: Request<proto::StatusRequest>) -> Reply<proto::Status> {
        self.authorize(&request, Operation::Read).await?;
        let consistency = consistency(request.into_inner().consistency)?;
        let report = self.federation.status(consistency).await?;
        Ok(Response::new(status_to_proto(report)))
    }

    async fn init(&self, request: Request<proto::InitRequest>) -> Reply<proto::Status> {
        self.authorize(&request, Operation::Platform).await?;
        Ok(Response::new(status_to_proto(
            self.federation.init().await?,
        )))
    }

    async fn add_member(&self, request: Request<proto::AddMemberRequest>) -> Reply<proto::Status> {
        self.authorize(&request, Operation::Platform).await?;
        let request = request.into_inner();
        let member = required(request.member, "member")?;
        let info = NodeInfo {
            name: member.name,
            raft_addr: member.raft_addr,
            admin_addr: member.admin_addr,
            rest_addr: member.rest_addr,
            enroll_addr: member.enroll_addr,
        };
        crate::validate::member(request.node_id, &info)?;
        Ok(Response::new(status_to_proto(
            self.federation.add_member(request.node_id, info).await?,
        )))
    }

    async fn remove_member(
        &self,
        request: Request<proto::RemoveMemberRequest>,
    ) -> Reply<proto::Status> {
        self.authorize(&request, Operation::Platform).await?;
        let id = request.into_inner().node_id;
        Ok(Response::new(status_to_proto(
            self.federation.remove_member(id).await?,
        )))
    }

    async fn list_clusters(
        &self,
        request: Request<proto::ListRequest>,
    ) -> Reply<proto::ClusterList> {
        self.authorize(&request, Operation::Read).await?;
        let consistency = consistency(request.into_inner().consistency)?;
        let list = self
            .federation
            .read(consistency, |s| proto::ClusterList {
                revision: s.revision,
                clusters: s.clusters.values().cloned().map(cluster_to_proto).collect(),
            })
            .await?;
        Ok(Response::new(list))
    }

    async fn get_cluster(
        &self,
        request: Request<proto::GetClusterRequest>,
    ) -> Reply<proto::Cluster> {
        self.authorize(&request, Operation::Read).await?;
        let request = request.into_inner();
        validate::name("name", &request.name)?;
        let found = self
            .federation
            .read(consistency(request.consistency)?, |s| {
                s.clusters.get(&request.name).cloned()
            })
            .await?;
        let cluster = found.ok_or_else(|| {
            ApiError::NotFound(format!("cluster \"{}\" does not exist", request.name))
        })?;
        Ok(Response::new(cluster_to_proto(cluster)))
    }

    async fn put_cluster(
        &self,
        request: Request<proto::PutClusterRequest>,
    ) -> Reply<proto::WriteResponse> {
        self.authorize(&request, Operation::Platform).await?;
        let request = request.into_inner();
        let cluster = cluster_from_proto(required(request.cluster, "cluster")?)?;
        let expect = Expect::from_api(request.expect_revision);
        // `write` validates every command; here its field paths get the message's prefix.
        let revision = self
            .federation
            .write(Command::PutCluster { cluster, expect })
            .await
            .map_err(|e| e.within("cluster"))?;
        Ok(Response::new(proto::WriteResponse { revision }))
    }

    async fn delete_cluster(
        &self,
        request: Request<proto::DeleteClusterRequest>,
    ) -> Reply<proto::WriteResponse> {
        self.authorize(&request, Operation::Platform).await?;
        let request = request.into_inner();
        let expect = Expect::from_api(request.expect_revision);
        let command = Command::DeleteCluster {
            name: request.name,
            expect,
        };
        let revision = self.federation.write(command).await?;
        Ok(Response::new(proto::WriteResponse { revision }))
    }

    async fn list_exports(&self, request: Request<proto::ListRequest>) -> Reply<proto::ExportList> {
        self.authorize(&request, Operation::Read).await?;
        let consistency = consistency(request.into_inner().consistency)?;
        let list = self
            .federation
            .read(consistency, |s| proto::ExportList {
                revision: s.revision,
                exports: s.exports.values().cloned().map(export_to_proto).collect(),
            })
            .await?;
        Ok(Response::new(list))
    }

    async fn get_export(
        &self,
        request: Request<proto::GetExportRequest>,
    ) -> Reply<proto::ServiceExport> {
        self.authorize(&request, Operation::Read).await?;
        let request = request.into_inner();
        let key = ExportKey {
            cluster: request.cluster,
            namespace: request.namespace,
            name: request.name,
        };
        validate::export_key(&key)?;
        let found = self
            .federation
            .read(consistency(request.consistency)?, |s| {
                s.exports.get(&key).cloned()
            })
            .await?;
        let export =
            found.ok_or_else(|| ApiError::NotFound(format!("export {key} does not exist")))?;
        Ok(Response::new(export_to_proto(export)))
    }

    async fn put_export(
        &self,
        request: Request<proto::PutExportRequest>,
    ) -> Reply<proto::WriteResponse> {
        let (cluster, namespace) = request
            .get_ref()
            .export
            .as_ref()
            .map(|e| (e.cluster.clone(), e.namespace.clone()))
            .unwrap_or_default();
        self.authorize(
            &request,
            Operation::Export {
                cluster: &cluster,
                namespace: &namespace,
            },
        )
        .await?;
        let request = request.into_inner();
        let export = export_from_proto(required(request.export, "export")?)?;
        let expect = Expect::from_api(request.expect_revision);
        let revision = self
            .federation
            .write(Command::PutExport { export, expect })
            .await
            .map_err(|e| e.within("export"))?;
        Ok(Response::new(proto::WriteResponse { revision }))
    }

    async fn delete_export(
        &self,
        request: Request<proto::DeleteExportRequest>,
    ) -> Reply<proto::WriteResponse> {
        let (cluster, namespace) = (
            request.get_ref().cluster.clone(),
            request.get_ref().namespace.clone(),
        );
        self.authorize(
            &request,
            Operation::Export {
                cluster: &cluster,
                namespace: &namespace,
            },
        )
        .await?;
        let request = request.into_inner();
        let key = ExportKey {
            cluster: request.cluster,
            namespace: request.namespace,
            name: request.name,
        };
        let expect = Expect::from_api(request.expect_revision);
        let revision = self
            .federation
            .write(Command::DeleteExport { key, expect })
            .await?;
        Ok(Response::new(proto::WriteResponse { revision }))
    }

    async fn list_policies(
        &self,
        request: Request<proto::ListRequest>,
    ) -> Reply<proto::PolicyList> {
        self.authorize(&request, Operation::Read).await?;
        let consistency = consistency(request.into_inner().consistency)?;
        let list = self
            .federation
            .read(consistency, |s| proto::PolicyList {
                revision: s.revision,
                policies: s.policies.values().map(policy_to_proto).collect(),
            })
            .await?;
        Ok(Response::new(list))
    }

    async fn get_policy(&self, request: Request<proto::GetPolicyRequest>) -> Reply<proto::Policy> {
        self.authorize(&request, Operation::Read).await?;
        let request = request.into_inner();
        validate::name("name", &request.name)?;
        let found = self
            .federation
            .read(consistency(request.consistency)?, |s| {
                s.policies.get(&request.name).map(policy_to_proto)
            })
            .await?;
        let policy = found.ok_or_else(|| {
            ApiError::NotFound(format!("policy \"{}\" does not exist", request.name))
        })?;
        Ok(Response::new(policy))
    }

    async fn put_policy(
        &self,
        request: Request<proto::PutPolicyRequest>,
    ) -> Reply<proto::WriteResponse> {
        let p = required(request.get_ref().policy.clone(), "policy")?;
        validate::name("policy.name", &p.name)?;
        let (namespaces, current) = policy_scope(&self.federation, &p.name, Some(&p.body)).await?;
        let principal = self
            .authorize(&request, Operation::Policy { namespaces })
            .await?;
        let request = request.into_inner();
        let policy = PolicyDoc {
            name: p.name,
            body: p.body,
            revision: 0,
        };
        let expect = scoped_expect(&principal, request.expect_revision, current)?;
        let revision = self
            .federation
            .write(Command::PutPolicy { policy, expect })
            .await
            .map_err(|e| e.within("policy"))?;
        Ok(Response::new(proto::WriteResponse { revision }))
    }

    async fn delete_policy(
        &self,
        request: Request<proto::DeletePolicyRequest>,
    ) -> Reply<proto::WriteResponse> {
        let name = request.get_ref().name.clone();
        validate::name("name", &name)?;
        let (namespaces, current) = policy_scope(&self.federation, &name, None).await?;
        let principal = self
            .authorize(&request, Operation::Policy { namespaces })
            .await?;
        let request = request.into_inner();
        let expect = scoped_expect(&principal, request.expect_revision, current)?;
        let revision = self
            .federation
            .write(Command::DeletePolicy {
                name: request.name,
                expect,
            })
            .await?;
        Ok(Response::new(proto::WriteResponse { revision }))
    }

    async fn list_claims(&self, request: Request<proto::ListRequest>) -> Reply<proto::ClaimList> {
        self.authorize(&request, Operation::Read).await?;
        let consistency = consistency(request.into_inner().consistency)?;
        let list = self
            .federation
            .read(consistency, |s| proto::ClaimList {
                revision: s.revision,
                claims: s.claims.values().map(claim_to_proto).collect(),
            })
            .await?;
        Ok(Response::new(list))
    }

    async fn put_claim(
        &self,
        request: Request<proto::PutClaimRequest>,
    ) -> Reply<proto::WriteResponse> {
        let c = required(request.get_ref().claim.clone(), "claim")?;
        let held = claim_namespace(&self.federation, &c.host).await?;
        self.authorize(
            &request,
            Operation::Claim {
                namespace: &c.namespace,
                held: held.as_deref(),
            },
        )
        .await?;
        let expect = Expect::from_api(request.into_inner().expect_revision);
        let claim = Claim {
            host: c.host,
            namespace: c.namespace,
            revision: 0,
        };
        let revision = self
            .federation
            .write(Command::PutClaim { claim, expect })
            .await
            .map_err(|e| e.within("claim"))?;
        Ok(Response::new(proto::WriteResponse { revision }))
    }

    async fn delete_claim(
        &self,
        request: Request<proto::DeleteClaimRequest>,
    ) -> Reply<proto::WriteResponse> {
        let host = request.get_ref().host.clone();
        let held = claim_namespace(&self.federation, &host).await?;
        let namespace = held.clone().unwrap_or_default();
        self.authorize(
            &request,
            Operation::Claim {
                namespace: &namespace,
                held: held.as_deref(),
            },
        )
        .await?;
        let expect = Expect::from_api(request.into_inner().expect_revision);
        let revision = self
            .federation
            .write(Command::DeleteClaim { host, expect })
            .await?;
        Ok(Response::new(proto::WriteResponse { revision }))
    }

    async fn get_trust_bundle(
        &self,
        request: Request<proto::GetTrustBundleRequest>,
    ) -> Reply<proto::TrustBundleRecord> {
        self.authorize(&request, Operation::Read).await?;
        let consistency = consistency(request.into_inner().consistency)?;
        let doc = self
            .federation
            .read(consistency, |s| s.trust_bundle.clone())
            .await?;
        let doc = doc.ok_or_else(|| ApiError::NotFound("no trust bundle has been set".into()))?;
        Ok(Response::new(bundle_to_proto(&doc)?))
    }

    async fn set_trust_bundle(
        &self,
        request: Request<proto::SetTrustBundleRequest>,
    ) -> Reply<proto::WriteResponse> {
        self.authorize(&request, Operation::Platform).await?;
        let request = request.into_inner();
        let trust_bundle = bundle_from_proto(required(request.bundle, "bundle")?)?;
        let expect = Expect::from_api(request.expect_revision);
        let command = Command::SetTrustBundle {
            trust_bundle,
            expect,
        };
        let revision = self.federation.write(command).await.map_err(|e| {
            // The model's PEM fields are `roots` and `retired_roots` in the protobuf.
            match e {
                ApiError::InvalidArgument { field, message } => {
                    let field = field
                        .replace("roots_pem", "roots")
                        .replace("retired_pem", "retired_roots");
                    ApiError::invalid(format!("bundle.{field}"), message)
                }
                other => other,
            }
        })?;
        Ok(Response::new(proto::WriteResponse { revision }))
    }

    async fn create_cluster(
        &self,
        request: Request<proto::CreateClusterRequest>,
    ) -> Reply<proto::JoinTokenReply> {
        self.authorize(&request, Operation::Platform).await?;
        let request = request.into_inner();
        let minted = self
            .enroller
            .create_cluster(
                &request.name,
                request.locality,
                request.ttl_seconds.map(std::time::Duration::from_secs),
                std::time::SystemTime::now(),
            )
            .await?;
        Ok(Response::new(proto::JoinTokenReply {
            token: minted.token,
            expires_at: minted.expires_at,
            revision: minted.revision,
        }))
    }

    async fn revoke_cluster(
        &self,
        request: Request<proto::RevokeClusterRequest>,
    ) -> Reply<proto::WriteResponse> {
        self.authorize(&request, Operation::Platform).await?;
        let name = request.into_inner().name;
        let revision = self
            .federation
            .write(Command::RevokeCluster { name })
            .await?;
        Ok(Response::new(proto::WriteResponse { revision }))
    }

    async fn register_gateway(
        &self,
        request: Request<proto::RegisterGatewayRequest>,
    ) -> Reply<proto::WriteResponse> {
        let cluster = request.get_ref().cluster.clone();
        self.authorize(&request, Operation::RegisterGateway { cluster: &cluster })
            .await?;
        let request = request.into_inner();
        let gateway = required(request.gateway, "gateway")?;
        // A gateway registers each time it connects; an unchanged endpoint is not a change
        // (and must not bump the cluster's revision under an admin's compare-and-set).
        let unchanged = self
            .federation
            .read(Consistency::Linearizable, |s| {
                s.clusters.get(&request.cluster).and_then(|c| {
                    c.gateways
                        .iter()
                        .any(|g| g.name == gateway.name && g.address == gateway.address)
                        .then_some(s.revision)
                })
            })
            .await?;
        if let Some(revision) = unchanged {
            return Ok(Response::new(proto::WriteResponse { revision }));
        }
        let revision = self
            .federation
            .write(Command::SetGateway {
                cluster: request.cluster,
                gateway: GatewayEndpoint {
                    name: gateway.name,
                    address: gateway.address,
                },
            })
            .await?;
        Ok(Response::new(proto::WriteResponse { revision }))
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<proto::WatchResponse, Status>> + Send>>;

    async fn watch(&self, request: Request<proto::WatchRequest>) -> Reply<Self::WatchStream> {
        self.authorize(&request, Operation::Read).await?;
        let after = request.into_inner().after_revision;
        let rx = self.federation.watch(after);
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx)
            .map(|item| item.and_then(watch_to_proto).map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }
}

use tokio_stream::StreamExt as _;
