//! A typed client of the federation's admin API over gRPC: model types in and out,
//! a client certificate or a bearer token, every configured node tried in turn.
//!
//! What is retried, and where: a call goes to the node that answered last; a node that
//! cannot be reached, or that answers "not the leader", hands the call to the next node
//! (or to the leader it names). Reads are also retried after a timeout or an
//! unavailable node, since reading twice is harmless; writes only where the error proves
//! they were not applied, so that an acknowledged write is never made twice.

mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{Stream, StreamExt as _};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub use tls::{ClientTls, ClientTlsError, bundle_from_pem};

use crate::ApiError;
use crate::alerts::AlertList;
use crate::claims::Claim;
use crate::convert;
use crate::mesh::{DecisionWindow, GatewayReport, MeshEvent, MeshPicture};
use crate::model::{Cluster, ExportKey, Policy, ServiceExport, TrustBundleDoc};
use crate::proto;
use crate::proto::federation_admin_client::FederationAdminClient;
use crate::request::{
    AddMember, CreateCluster, DeleteClaim, DeleteCluster, DeleteExport, DeletePolicy,
    JoinTokenReply, Listed, PutClaim, PutCluster, PutExport, PutPolicy, RegisterGateway,
    RevokeCluster, SetTrustBundle, Written,
};
use crate::status::{Consistency, StatusReport};
use crate::watch::Watched;

/// Largest message a client accepts (a watch snapshot part, a long list).
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A federation node answered with this error.
    #[error("{code}: {0}", code = code_name(.0))]
    Api(ApiError),
    /// No node could be reached.
    #[error("no federation node answered (tried {tried}): {last}")]
    Unreachable {
        /// The addresses tried.
        tried: String,
        /// The last failure.
        last: String,
    },
    /// The client was given something it cannot use.
    #[error("{field}: {reason}")]
    Setup {
        /// The setting (`server`, `token`).
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

fn code_name(error: &ApiError) -> String {
    format!("{:?}", error.grpc_code())
}

impl ClientError {
    /// The federation's error, when one answered.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Self::Api(e) => Some(e),
            _ => None,
        }
    }
}

/// Adds `authorization: Bearer <token>` to every call when a token is set.
#[derive(Debug, Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

type Admin = FederationAdminClient<InterceptedService<Channel, Bearer>>;

#[derive(Debug, Clone)]
struct Node {
    addr: String,
    admin: Admin,
}

/// A client of one federation (any of its nodes).
#[derive(Debug, Clone)]
pub struct FederationClient {
    nodes: Arc<Vec<Node>>,
    tls: ClientTls,
    bearer: Bearer,
    /// The node that answered last: calls start there.
    preferred: Arc<AtomicUsize>,
    timeout: Option<Duration>,
}

/// Whether a call may be sent again after an unclear failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// A read: any node, any unavailability.
    Read,
    /// A write: only when it was certainly not applied.
    Write,
}

/// How one attempt on one node failed.
enum Attempt {
    /// Try the next node (or this address, the leader named).
    Next(String, Option<String>),
    /// Stop with this error.
    Fail(ClientError),
}

fn node(addr: &str, tls: &ClientTls, bearer: &Bearer) -> Result<Node, ClientError> {
    let channel =
        crate::channel::channel(addr, tls.0.clone(), None).map_err(|e| ClientError::Setup {
            field: "server",
            reason: format!("{addr}: {e}"),
        })?;
    let admin = FederationAdminClient::with_interceptor(channel, bearer.clone())
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    Ok(Node {
        addr: addr.to_owned(),
        admin,
    })
}

/// Whether a failed call certainly never reached a server: the connection was refused
/// or its TLS handshake failed, so nothing was sent.
fn never_sent(status: &tonic::Status) -> bool {
    if status
        .metadata()
        .get_bin(crate::error::ERROR_TRAILER)
        .is_some()
    {
        return false;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionRefused
                    | AddrNotAvailable
                    | NotFound
                    | HostUnreachable
                    | NetworkUnreachable
            ) || io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
            {
                return true;
            }
        }
        if e.is::<rustls::Error>() {
            return true;
        }
        source = e.source();
    }
    false
}

impl FederationClient {
    /// A client of the nodes at `servers` (`host:port` of their admin gRPC listeners),
    /// tried in order. Connects lazily: nothing is dialled until the first call.
    pub fn new<S: AsRef<str>>(
        servers: impl IntoIterator<Item = S>,
        tls: ClientTls,
    ) -> Result<Self, ClientError> {
        let bearer = Bearer::default();
        let nodes = servers
            .into_iter()
            .map(|s| node(s.as_ref(), &tls, &bearer))
            .collect::<Result<Vec<_>, _>>()?;
        if nodes.is_empty() {
            return Err(ClientError::Setup {
                field: "server",
                reason: "no federation node address given".into(),
            });
        }
        Ok(Self {
            nodes: Arc::new(nodes),
            tls,
            bearer,
            preferred: Arc::default(),
            timeout: None,
        })
    }

    /// Sends `token` as `authorization: Bearer <token>` with every call; when a client
    /// certificate is presented too, the token decides.
    pub fn with_token(mut self, token: &str) -> Result<Self, ClientError> {
        let value = format!("Bearer {}", token.trim())
            .parse()
            .map_err(|_| ClientError::Setup {
                field: "token",
                reason: "not a valid header value (printable ASCII only)".into(),
            })?;
        self.bearer = Bearer(Some(value));
        let addrs: Vec<String> = self.nodes.iter().map(|n| n.addr.clone()).collect();
        let nodes = addrs
            .iter()
            .map(|a| node(a, &self.tls, &self.bearer))
            .collect::<Result<Vec<_>, _>>()?;
        self.nodes = Arc::new(nodes);
        Ok(self)
    }

    /// Bounds every unary call (the watch is not bounded).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The configured nodes' addresses.
    pub fn servers(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(|n| n.addr.as_str())
    }

    fn admin_for(&self, addr: &str) -> Result<Admin, ClientError> {
        match self.nodes.iter().find(|n| n.addr == addr) {
            Some(n) => Ok(n.admin.clone()),
            None => node(addr, &self.tls, &self.bearer).map(|n| n.admin),
        }
    }

    /// Runs `call` on the preferred node, then on the others (and on a leader a node
    /// names), as `retry` allows.
    async fn call<Req, Resp, F, Fut>(
        &self,
        retry: Retry,
        request: Req,
        call: F,
    ) -> Result<Resp, ClientError>
    where
        Req: Clone,
        F: Fn(Admin, tonic::Request<Req>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let count = self.nodes.len();
        let start = self.preferred.load(Ordering::Relaxed) % count;
        let mut tried = Vec::new();
        let mut last = String::new();
        let mut hinted: Option<String> = None;
        let mut i = 0;
        while i < count || hinted.is_some() {
            let (addr, index) = match hinted.take() {
                Some(addr) => {
                    let index = self.nodes.iter().position(|n| n.addr == addr);
                    (addr, index)
                }
                None => {
                    let index = (start + i) % count;
                    i += 1;
                    (self.nodes[index].addr.clone(), Some(index))
                }
            };
            if tried.contains(&addr) {
                continue;
            }
            tried.push(addr.clone());
            let admin = self.admin_for(&addr)?;
            let mut message = tonic::Request::new(request.clone());
            if let Some(timeout) = self.timeout {
                message.set_timeout(timeout);
            }
            let outcome = match self.timeout {
                Some(bound) => match tokio::time::timeout(bound, call(admin, message)).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                        "no answer from {addr} within {bound:?}"
                    ))),
                },
                None => call(admin, message).await,
            };
            let status = match outcome {
                Ok(response) => {
                    if let Some(index) = index {
                        self.preferred.store(index, Ordering::Relaxed);
                    }
                    return Ok(response.into_inner());
                }
                Err(status) => status,
            };
            match judge(retry, &addr, &status) {
                Attempt::Next(why, leader) => {
                    last = why;
                    hinted = leader;
                }
                Attempt::Fail(e) => return Err(e),
            }
        }
        Err(ClientError::Unreachable {
            tried: tried.join(", "),
            last,
        })
    }

    /// The federation's status: the leader's view (with lags), or with
    /// [`Consistency::Stale`] the answering node's own.
    pub async fn status(&self, consistency: Consistency) -> Result<StatusReport, ClientError> {
        let request = proto::StatusRequest {
            consistency: convert::consistency_to_proto(consistency),
        };
        let status = self
            .call(Retry::Read, request, |mut c, r| async move {
                c.get_status(r).await
            })
            .await?;
        Ok(status.into())
    }

    /// Bootstraps a new federation with the first configured node as its only voter.
    pub async fn init(&self) -> Result<StatusReport, ClientError> {
        let status = self
            .call(Retry::Write, proto::InitRequest {}, |mut c, r| async move {
                c.init(r).await
            })
            .await?;
        Ok(status.into())
    }

    /// Adds a node (learner, catch up, voter).
    pub async fn add_member(&self, request: AddMember) -> Result<StatusReport, ClientError> {
        let request = proto::AddMemberRequest::from(request);
        let status = self
            .call(Retry::Write, request, |mut c, r| async move {
                c.add_member(r).await
            })
            .await?;
        Ok(status.into())
    }

    /// Removes a node.
    pub async fn remove_member(&self, node_id: u64) -> Result<StatusReport, ClientError> {
        let request = proto::RemoveMemberRequest { node_id };
        let status = self
            .call(Retry::Write, request, |mut c, r| async move {
                c.remove_member(r).await
            })
            .await?;
        Ok(status.into())
    }

    /// Every cluster.
    pub async fn clusters(&self, consistency: Consistency) -> Result<Listed<Cluster>, ClientError> {
        let request = list(consistency);
        let list = self
            .call(Retry::Read, request, |mut c, r| async move {
                c.list_clusters(r).await
            })
            .await?;
        decoded(list.try_into())
    }

    /// One cluster.
    pub async fn cluster(
        &self,
        name: &str,
        consistency: Consistency,
    ) -> Result<Cluster, ClientError> {
        let request = proto::GetClusterRequest {
            name: name.to_owned(),
            consistency: convert::consistency_to_proto(consistency),
        };
        let cluster = self
            .call(Retry::Read, request, |mut c, r| async move {
                c.get_cluster(r).await
            })
            .await?;
        decoded(cluster.try_into())
    }

    /// Creates or replaces a cluster.
    pub async fn put_cluster(&self, request: PutCluster) -> Result<Written, ClientError> {
        self.write(
            proto::PutClusterRequest::from(request),
            |mut c, r| async move { c.put_cluster(r).await },
        )
        .await
    }

    /// Deletes a cluster.
    pub async fn delete_cluster(&self, request: DeleteCluster) -> Result<Written, ClientError> {
        self.write(
            proto::DeleteClusterRequest::from(request),
            |mut c, r| async move { c.delete_cluster(r).await },
        )
        .await
    }

    /// Registers a pending cluster and returns its one-time join token.
    pub async fn create_cluster(
        &self,
        request: CreateCluster,
    ) -> Result<JoinTokenReply, ClientError> {
        let request = proto::CreateClusterRequest::from(request);
        let reply = self
            .call(Retry::Write, request, |mut c, r| async move {
                c.create_cluster(r).await
            })
            .await?;
        Ok(reply.into())
    }

    /// Cuts a cluster off.
    pub async fn revoke_cluster(&self, request: RevokeCluster) -> Result<Written, ClientError> {
        self.write(
            proto::RevokeClusterRequest::from(request),
            |mut c, r| async move { c.revoke_cluster(r).await },
        )
        .await
    }

    /// Adds or updates one gateway endpoint of an active cluster.
    pub async fn register_gateway(&self, request: RegisterGateway) -> Result<Written, ClientError> {
        self.write(
            proto::RegisterGatewayRequest::from(request),
            |mut c, r| async move { c.register_gateway(r).await },
        )
        .await
    }

    /// Every export.
    pub async fn exports(
        &self,
        consistency: Consistency,
    ) -> Result<Listed<ServiceExport>, ClientError> {
        let list = self
            .call(Retry::Read, list(consistency), |mut c, r| async move {
                c.list_exports(r).await
            })
            .await?;
        decoded(list.try_into())
    }

    /// One export.
    pub async fn export(
        &self,
        key: &ExportKey,
        consistency: Consistency,
    ) -> Result<ServiceExport, ClientError> {
        let request = proto::GetExportRequest {
            cluster: key.cluster.clone(),
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            consistency: convert::consistency_to_proto(consistency),
        };
        let export = self
            .call(Retry::Read, request, |mut c, r| async move {
                c.get_export(r).await
            })
            .await?;
        decoded(export.try_into())
    }

    /// Creates or replaces an export.
    pub async fn put_export(&self, request: PutExport) -> Result<Written, ClientError> {
        self.write(
            proto::PutExportRequest::from(request),
            |mut c, r| async move { c.put_export(r).await },
        )
        .await
    }

    /// Deletes an export.
    pub async fn delete_export(&self, request: DeleteExport) -> Result<Written, ClientError> {
        self.write(
            proto::DeleteExportRequest::from(request),
            |mut c, r| async move { c.delete_export(r).await },
        )
        .await
    }

    /// Every policy.
    pub async fn policies(&self, consistency: Consistency) -> Result<Listed<Policy>, ClientError> {
        let list = self
            .call(Retry::Read, list(consistency), |mut c, r| async move {
                c.list_policies(r).await
            })
            .await?;
        decoded(list.try_into())
    }

    /// One policy.
    pub async fn policy(
        &self,
        name: &str,
        consistency: Consistency,
    ) -> Result<Policy, ClientError> {
        let request = proto::GetPolicyRequest {
            name: name.to_owned(),
            consistency: convert::consistency_to_proto(consistency),
        };
        let policy = self
            .call(Retry::Read, request, |mut c, r| async move {
                c.get_policy(r).await
            })
            .await?;
        decoded(policy.try_into())
    }

    /// Creates or replaces a policy.
    pub async fn put_policy(&self, request: PutPolicy) -> Result<Written, ClientError> {
        self.write(
            proto::PutPolicyRequest::from(request),
            |mut c, r| async move { c.put_policy(r).await },
        )
        .await
    }

    /// Deletes a policy.
    pub async fn delete_policy(&self, request: DeletePolicy) -> Result<Written, ClientError> {
        self.write(
            proto::DeletePolicyRequest::from(request),
            |mut c, r| async move { c.delete_policy(r).await },
        )
        .await
    }

    /// Every traffic claim.
    pub async fn claims(&self, consistency: Consistency) -> Result<Listed<Claim>, ClientError> {
        let list = self
            .call(Retry::Read, list(consistency), |mut c, r| async move {
                c.list_claims(r).await
            })
            .await?;
        Ok(list.into())
    }

    /// Claims a host for a namespace.
    pub async fn put_claim(&self, request: PutClaim) -> Result<Written, ClientError> {
        self.write(
            proto::PutClaimRequest::from(request),
            |mut c, r| async move { c.put_claim(r).await },
        )
        .await
    }

    /// Gives up a claim.
    pub async fn delete_claim(&self, request: DeleteClaim) -> Result<Written, ClientError> {
        self.write(
            proto::DeleteClaimRequest::from(request),
            |mut c, r| async move { c.delete_claim(r).await },
        )
        .await
    }

    /// Every workload registration.
    pub async fn registrations(
        &self,
        consistency: Consistency,
    ) -> Result<Listed<crate::registration::Registration>, ClientError> {
        let list = self
            .call(Retry::Read, list(consistency), |mut c, r| async move {
                c.list_registrations(r).await
            })
            .await?;
        Ok(list.into())
    }

    /// Creates or replaces a workload registration.
    pub async fn put_registration(
        &self,
        request: crate::request::PutRegistration,
    ) -> Result<Written, ClientError> {
        self.write(
            proto::PutRegistrationRequest::from(request),
            |mut c, r| async move { c.put_registration(r).await },
        )
        .await
    }

    /// Deletes a workload registration.
    pub async fn delete_registration(
        &self,
        request: crate::request::DeleteRegistration,
    ) -> Result<Written, ClientError> {
        self.write(
            proto::DeleteRegistrationRequest::from(request),
            |mut c, r| async move { c.delete_registration(r).await },
        )
        .await
    }

    /// The trust bundle.
    pub async fn trust_bundle(
        &self,
        consistency: Consistency,
    ) -> Result<TrustBundleDoc, ClientError> {
        let request = proto::GetTrustBundleRequest {
            consistency: convert::consistency_to_proto(consistency),
        };
        let record = self
            .call(Retry::Read, request, |mut c, r| async move {
                c.get_trust_bundle(r).await
            })
            .await?;
        decoded(convert::bundle_record(record))
    }

    /// Replaces the trust bundle.
    pub async fn set_trust_bundle(&self, request: SetTrustBundle) -> Result<Written, ClientError> {
        let request = proto::SetTrustBundleRequest::try_from(request).map_err(ClientError::Api)?;
        self.write(
            request,
            |mut c, r| async move { c.set_trust_bundle(r).await },
        )
        .await
    }

    async fn write<Req, F, Fut>(&self, request: Req, call: F) -> Result<Written, ClientError>
    where
        Req: Clone,
        F: Fn(Admin, tonic::Request<Req>) -> Fut,
        Fut: std::future::Future<
                Output = Result<tonic::Response<proto::WriteResponse>, tonic::Status>,
            >,
    {
        let written = self.call(Retry::Write, request, call).await?;
        Ok(Written {
            revision: written.revision,
        })
    }

    /// Every change after revision `after`, in order (a full state first when the
    /// history no longer reaches back that far), from the first node that opens the
    /// watch. The stream ends when the node does; resume with the last revision seen.
    pub async fn watch(&self, after: u64) -> Result<WatchStream, ClientError> {
        let stream = self
            .call(
                Retry::Read,
                proto::WatchRequest {
                    after_revision: after,
                },
                |mut c, r| async move { c.watch(r).await },
            )
            .await?;
        let stream = stream.map(|item| match item {
            Ok(message) => convert::watch_from_proto_lenient(message).map_err(ClientError::Api),
            Err(status) => Err(ClientError::Api(ApiError::from_status(&status))),
        });
        Ok(WatchStream(Box::pin(stream)))
    }
}

impl FederationClient {
    /// Sends a gateway's status report to the node this client prefers (a gateway keeps
    /// one client per node and reports to each).
    pub async fn report_gateway_status(&self, report: GatewayReport) -> Result<(), ClientError> {
        self.call(
            Retry::Read,
            proto::GatewayReport::from(report),
            |mut c, r| async move { c.report_gateway_status(r).await },
        )
        .await?;
        Ok(())
    }

    /// The mesh's security status as the answering node holds it.
    pub async fn mesh(&self) -> Result<MeshPicture, ClientError> {
        let picture = self
            .call(
                Retry::Read,
                proto::GetMeshRequest {},
                |mut c, r| async move { c.get_mesh(r).await },
            )
            .await?;
        MeshPicture::try_from(picture).map_err(ClientError::Api)
    }

    /// The policy decisions of the last `window_seconds` (1 to 3600), per rule and edge.
    pub async fn decisions(&self, window_seconds: u64) -> Result<DecisionWindow, ClientError> {
        let window = self
            .call(
                Retry::Read,
                proto::GetDecisionsRequest { window_seconds },
                |mut c, r| async move { c.get_decisions(r).await },
            )
            .await?;
        Ok(window.into())
    }

    /// The alerts the answering node evaluated: firing, and resolved lately.
    pub async fn alerts(&self) -> Result<AlertList, ClientError> {
        let list = self
            .call(
                Retry::Read,
                proto::ListAlertsRequest {},
                |mut c, r| async move { c.list_alerts(r).await },
            )
            .await?;
        Ok(list.into())
    }

    /// The changes of the mesh's status from now on.
    pub async fn watch_mesh(&self) -> Result<MeshEvents, ClientError> {
        let stream = self
            .call(
                Retry::Read,
                proto::WatchMeshRequest {},
                |mut c, r| async move { c.watch_mesh(r).await },
            )
            .await?;
        let stream = stream.map(|item| match item {
            Ok(event) => MeshEvent::try_from(event).map_err(ClientError::Api),
            Err(status) => Err(ClientError::Api(ApiError::from_status(&status))),
        });
        Ok(MeshEvents(Box::pin(stream)))
    }
}

/// The changes of the mesh's status, typed.
pub struct MeshEvents(std::pin::Pin<Box<dyn Stream<Item = Result<MeshEvent, ClientError>> + Send>>);

impl std::fmt::Debug for MeshEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshEvents").finish_non_exhaustive()
    }
}

impl MeshEvents {
    /// The next change; `None` when the node ended the stream.
    pub async fn next(&mut self) -> Option<Result<MeshEvent, ClientError>> {
        self.0.next().await
    }
}

/// The messages of a watch, typed; a policy that does not read is listed apart, not an
/// error (see [`Watched`]).
pub struct WatchStream(std::pin::Pin<Box<dyn Stream<Item = Result<Watched, ClientError>> + Send>>);

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream").finish_non_exhaustive()
    }
}

impl WatchStream {
    /// The next message; `None` when the node ended the stream.
    pub async fn message(&mut self) -> Option<Result<Watched, ClientError>> {
        self.0.next().await
    }
}

fn list(consistency: Consistency) -> proto::ListRequest {
    proto::ListRequest {
        consistency: convert::consistency_to_proto(consistency),
    }
}

fn decoded<T>(result: Result<T, ApiError>) -> Result<T, ClientError> {
    result.map_err(|e| {
        ClientError::Api(ApiError::Internal(format!(
            "the federation's answer does not decode: {e}"
        )))
    })
}

fn judge(retry: Retry, addr: &str, status: &tonic::Status) -> Attempt {
    if never_sent(status) {
        return Attempt::Next(format!("{addr}: {}", status.message()), None);
    }
    let error = ApiError::from_status(status);
    match (&error, retry) {
        (ApiError::NotLeader { leader }, _) => Attempt::Next(
            format!("{addr}: {error}"),
            leader.as_ref().map(|l| l.1.admin_addr.clone()),
        ),
        (ApiError::Unavailable(_) | ApiError::Timeout(_), Retry::Read) => {
            Attempt::Next(format!("{addr}: {error}"), None)
        }
        _ => Attempt::Fail(ClientError::Api(error)),
    }
}
