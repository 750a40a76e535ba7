//! The admin API over gRPC: each method authenticates its caller, decodes its message
//! ([`isthmus_federation_api::convert`]) and calls one operation of the admin layer.
//! Field paths in errors are those of the request message (`export.ports[1].port`).

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use isthmus_federation_api::convert::{self, bundle_field};
use isthmus_federation_api::mesh::GatewayReport;
use isthmus_federation_api::model::ExportKey;
use isthmus_federation_api::proto;
use isthmus_federation_api::proto::federation_admin_server::FederationAdmin;
use isthmus_federation_api::{ApiError, request};
use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status};

use crate::access::Principal;
use crate::admin::{Admin, Credentials, MeshChange, Op};

/// The gRPC face of the admin layer.
#[derive(Debug, Clone)]
pub struct AdminGrpc {
    admin: Arc<Admin>,
}

impl AdminGrpc {
    /// Serves `admin`.
    pub fn new(admin: Arc<Admin>) -> Self {
        Self { admin }
    }

    /// The caller, from the verified client certificate and the `authorization`
    /// metadata, refused at once if its role can never make a call of this kind.
    async fn caller<T>(&self, request: &Request<T>, op: Op) -> Result<Principal, Status> {
        let certs = request.peer_certs();
        let credentials = Credentials {
            peer: crate::tls::peer_id(certs.as_deref().map(Vec::as_slice)),
            authorization: request
                .metadata()
                .get("authorization")
                .map(|v| v.to_str().map(str::to_owned).map_err(|_| ())),
        };
        let principal = self.admin.authenticate(&credentials).await?;
        principal.may_attempt(op.grant())?;
        Ok(principal)
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// The operation's answer in its protobuf form.
fn reply<T, P: From<T>>(answer: Result<T, ApiError>) -> Reply<P> {
    Ok(Response::new(P::from(answer?)))
}

#[tonic::async_trait]
impl FederationAdmin for AdminGrpc {
    async fn get_status(&self, r: Request<proto::StatusRequest>) -> Reply<proto::Status> {
        let who = self.caller(&r, Op::GetStatus).await?;
        let consistency = convert::consistency(r.into_inner().consistency)?;
        reply(self.admin.status(&who, consistency).await)
    }

    async fn init(&self, r: Request<proto::InitRequest>) -> Reply<proto::Status> {
        let who = self.caller(&r, Op::Init).await?;
        reply(self.admin.init(&who).await)
    }

    async fn add_member(&self, r: Request<proto::AddMemberRequest>) -> Reply<proto::Status> {
        let who = self.caller(&r, Op::AddMember).await?;
        let request = request::AddMember::try_from(r.into_inner())?;
        reply(self.admin.add_member(&who, request).await)
    }

    async fn remove_member(&self, r: Request<proto::RemoveMemberRequest>) -> Reply<proto::Status> {
        let who = self.caller(&r, Op::RemoveMember).await?;
        reply(self.admin.remove_member(&who, r.into_inner().node_id).await)
    }

    async fn list_clusters(&self, r: Request<proto::ListRequest>) -> Reply<proto::ClusterList> {
        let who = self.caller(&r, Op::ListClusters).await?;
        let consistency = convert::consistency(r.into_inner().consistency)?;
        reply(self.admin.list_clusters(&who, consistency).await)
    }

    async fn get_cluster(&self, r: Request<proto::GetClusterRequest>) -> Reply<proto::Cluster> {
        let who = self.caller(&r, Op::GetCluster).await?;
        let r = r.into_inner();
        let consistency = convert::consistency(r.consistency)?;
        reply(self.admin.get_cluster(&who, &r.name, consistency).await)
    }

    async fn put_cluster(
        &self,
        r: Request<proto::PutClusterRequest>,
    ) -> Reply<proto::WriteResponse> {
        let who = self.caller(&r, Op::PutCluster).await?;
        let request = request::PutCluster::try_from(r.into_inner())?;
        reply(
            self.admin
                .put_cluster(&who, request)
                .await
                .map_err(|e| e.within("cluster")),
        )
    }

    async fn delete_cluster(
        &self,
        r: Request<proto::DeleteClusterRequest>,
    ) -> Reply<proto::WriteResponse> {
        let who = self.caller(&r, Op::DeleteCluster).await?;
        reply(self.admin.delete_cluster(&who, r.into_inner().into()).await)
    }

    async fn list_exports(&self, r: Request<proto::ListRequest>) -> Reply<proto::ExportList> {
        let who = self.caller(&r, Op::ListExports).await?;
        let consistency = convert::consistency(r.into_inner().consistency)?;
        reply(self.admin.list_exports(&who, consistency).await)
    }

    async fn get_export(&self, r: Request<proto::GetExportRequest>) -> Reply<proto::ServiceExport> {
        let who = self.caller(&r, Op::GetExport).await?;
        let r = r.into_inner();
        let consistency = convert::consistency(r.consistency)?;
        let key = ExportKey {
            cluster: r.cluster,
            namespace: r.namespace,
            name: r.name,
        };
        reply(self.admin.get_export(&who, &key, consistency).await)
    }

    async fn put_export(&self, r: Request<proto::PutExportRequest>) -> Reply<proto::WriteResponse> {
        let who = self.caller(&r, Op::PutExport).await?;
        let request = request::PutExport::try_from(r.into_inner())?;
        reply(
            self.admin
                .put_export(&who, request)
                .await
                .map_err(|e| e.within("export")),
        )
    }

    async fn delete_export(
        &self,
        r: Request<proto::DeleteExportRequest>,
    ) -> Reply<proto::WriteResponse> {
        let who = self.caller(&r, Op::DeleteExport).await?;
        reply(self.admin.delete_export(&who, r.into_inner().into()).await)
    }

    async fn list_policies(&self, r: Request<proto::ListRequest>) -> Reply<proto::PolicyList> {
        let who = self.caller(&r, Op::ListPolicies).await?;
        let consistency = convert::consistency(r.into_inner().consistency)?;
        reply(self.admin.list_policies(&who, consistency).await)
    }

    async fn get_policy(&self, r: Request<proto::GetPolicyRequest>) -> Reply<proto::Policy> {
        let who = self.caller(&r, Op::GetPolicy).await?;
        let r = r.into_inner();
        let consistency = convert::consistency(r.consistency)?;
        let policy = self.admin.get_policy(&who, &r.name, consistency).await?;
        Ok(Response::new((&policy).into()))
    }

    async fn put_policy(&self, r: Request<proto::PutPolicyRequest>) -> Reply<proto::WriteResponse> {
        let who = self.caller(&r, Op::PutPolicy).await?;
        let request = request::PutPolicy::try_from(r.into_inner())?;
        reply(
            self.admin
                .put_policy(&who, request)
                .await
                .map_err(|e| e.within("policy")),
        )
    }

    async fn delete_policy(
        &self,
        r: Request<proto::DeletePolicyRequest>,
    ) -> Reply<proto::WriteResponse> {
        let who = self.caller(&r, Op::DeletePolicy).await?;
        reply(self.admin.delete_policy(&who, r.into_inner().into()).await)
    }

    async fn list_claims(&self, r: Request<proto::ListRequest>) -> Reply<proto::ClaimList> {
        let who = self.caller(&r, Op::ListClaims).await?;
        let consistency = convert::consistency(r.into_inner().consistency)?;
        reply(self.admin.list_claims(&who, consistency).await)
    }

    async fn put_claim(&self, r: Request<proto::PutClaimRequest>) -> Reply<proto::WriteResponse> {
        let who = self.caller(&r, Op::PutClaim).await?;
        let request = request::PutClaim::try_from(r.into_inner())?;
        reply(
            self.admin
                .put_claim(&who, request)
                .await
                .map_err(|e| e.within("claim")),
        )
    }

    async fn delete_claim(
        &self,
        r: Request<proto::DeleteClaimRequest>,
    ) -> Reply<proto::WriteResponse> {
        let who = self.caller(&r, Op::DeleteClaim).await?;
        reply(self.admin.delete_claim(&who, r.into_inner().into()).await)
    }

    async fn list_registrations(
        &self,
        r: Request<proto::ListRequest>,
    ) -> Reply<proto::RegistrationList> {
        let who = self.caller(&r, Op::ListRegistrations).await?;
        let consistency = convert::consistency(r.into_inner().consistency)?;
        reply(self.admin.list_registrations(&who, consistency).await)
    }

    async fn put_registration(
        &self,
        r: Request<proto::PutRegistrationRequest>,
    ) -> Reply<proto::WriteResponse> {
        let who = self.caller(&r, Op::PutRegistration).await?;
        let request = request::PutRegistration::try_from(r.into_inner())?;
        reply(
            self.admin
                .put_registration(&who, request)
                .await
                .map_err(|e| e.within("registration")),
        )
    }

    async fn delete_registration(
        &self,
        r: Request<proto::DeleteRegistrationRequest>,
    ) -> Reply<proto::WriteResponse> {
        let who = self.caller(&r, Op::DeleteRegistration).await?;
        reply(
            self.admin
                .delete_registration(&who, r.into_inner().into())
                .await,
        )
    }

    async fn get_trust_bundle(
        &self,
        r: Request<proto::GetTrustBundleRequest>,
    ) -> Reply<proto::TrustBundleRecord> {
        let who = self.caller(&r, Op::GetTrustBundle).await?;
        let consistency = convert::consistency(r.into_inner().consistency)?;
        let bundle = self.admin.get_trust_bundle(&who, consistency).await?;
        Ok(Response::new(convert::bundle_to_proto(&bundle)?))
    }

    async fn set_trust_bundle(
        &self,
        r: Request<proto::SetTrustBundleRequest>,
    ) -> Reply<proto::WriteResponse> {
        let who = self.caller(&r, Op::SetTrustBundle).await?;
        let request = request::SetTrustBundle::try_from(r.into_inner())?;
        reply(
            self.admin
                .set_trust_bundle(&who, request)
                .await
                .map_err(|e| e.rename_field(bundle_field).within("bundle")),
        )
    }

    async fn create_cluster(
        &self,
        r: Request<proto::CreateClusterRequest>,
    ) -> Reply<proto::JoinTokenReply> {
        let who = self.caller(&r, Op::CreateCluster).await?;
        reply(self.admin.create_cluster(&who, r.into_inner().into()).await)
    }

    async fn revoke_cluster(
        &self,
        r: Request<proto::RevokeClusterRequest>,
    ) -> Reply<proto::WriteResponse> {
        let who = self.caller(&r, Op::RevokeCluster).await?;
        reply(self.admin.revoke_cluster(&who, r.into_inner().into()).await)
    }

    async fn register_gateway(
        &self,
        r: Request<proto::RegisterGatewayRequest>,
    ) -> Reply<proto::WriteResponse> {
        let who = self.caller(&r, Op::RegisterGateway).await?;
        let request = request::RegisterGateway::try_from(r.into_inner())?;
        reply(self.admin.register_gateway(&who, request).await)
    }

    type WatchStream = Pin<Box<dyn Stream<Item = Result<proto::WatchResponse, Status>> + Send>>;

    async fn watch(&self, r: Request<proto::WatchRequest>) -> Reply<Self::WatchStream> {
        let who = self.caller(&r, Op::Watch).await?;
        let rx = self
            .admin
            .watch(&who, r.into_inner().after_revision)
            .await?;
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx)
            .map(|item| item.and_then(convert::watch_to_proto).map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn report_gateway_status(
        &self,
        r: Request<proto::GatewayReport>,
    ) -> Reply<proto::ReportAck> {
        let who = self.caller(&r, Op::ReportGatewayStatus).await?;
        let report = GatewayReport::try_from(r.into_inner())?;
        self.admin.report_gateway_status(&who, report).await?;
        Ok(Response::new(proto::ReportAck {}))
    }

    async fn get_mesh(&self, r: Request<proto::GetMeshRequest>) -> Reply<proto::MeshPicture> {
        let who = self.caller(&r, Op::GetMesh).await?;
        reply(self.admin.mesh_picture(&who))
    }

    async fn get_decisions(
        &self,
        r: Request<proto::GetDecisionsRequest>,
    ) -> Reply<proto::DecisionWindow> {
        let who = self.caller(&r, Op::GetDecisions).await?;
        let window = match r.into_inner().window_seconds {
            0 => crate::admin::DEFAULT_DECISION_WINDOW,
            n => n,
        };
        reply(self.admin.decision_window(&who, window))
    }

    async fn list_alerts(&self, r: Request<proto::ListAlertsRequest>) -> Reply<proto::AlertList> {
        let who = self.caller(&r, Op::ListAlerts).await?;
        reply(self.admin.alerts(&who))
    }

    type WatchMeshStream = Pin<Box<dyn Stream<Item = Result<proto::MeshEvent, Status>> + Send>>;

    async fn watch_mesh(
        &self,
        r: Request<proto::WatchMeshRequest>,
    ) -> Reply<Self::WatchMeshStream> {
        let who = self.caller(&r, Op::WatchMesh).await?;
        let watch = self.admin.watch_mesh(&who)?;
        // Nothing follows a lost change: the stream ends with the error that says so.
        let stream = futures_util::stream::unfold(Some(watch), |watch| async move {
            let mut watch = watch?;
            match watch.next().await? {
                MeshChange::Event(event) => Some((Ok(proto::MeshEvent::from(*event)), Some(watch))),
                MeshChange::Lagged(n) => {
                    let lost = Status::data_loss(format!(
                        "this watcher fell {n} changes behind; read GetMesh again, then watch"
                    ));
                    Some((Err(lost), None))
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
