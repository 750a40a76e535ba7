//! Raft between federation nodes over tonic with mutual TLS: the client side
//! ([`Network`], openraft's network factory, which also forwards admin requests to the
//! leader) and the server side ([`RaftRpc`]). Payloads are openraft's own types as JSON.
//!
//! Built with the `testing` feature, every outgoing call passes the harness's
//! [`crate::faults::LinkFaults`] first, which cut and delay links between particular
//! nodes; production builds have no such hook.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use isthmus_ca::verify::ExpectedIdentity;
use isthmus_ca::{Identity, TrustDomain};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::Channel;

use isthmus_federation_api::ApiError;

use crate::proto::RaftPayload;
use crate::proto::raft_client::RaftClient;
use crate::raft::{NodeId, NodeInfo, Raft, TypeConfig};
use crate::service::{Federation, ForwardReply, ForwardRequest};
use crate::tls::NodeTls;

/// Why a call to another node failed before it got an answer.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("{0}")]
    Network(String),
}

/// The client side of Raft RPC: one lazily connected channel per peer.
#[derive(Debug)]
pub struct Network {
    me: NodeId,
    tls: NodeTls,
    trust_domain: TrustDomain,
    /// Where calls leave from (`raft.source_address`).
    source: Option<IpAddr>,
    #[cfg(feature = "testing")]
    faults: crate::faults::LinkFaults,
    channels: Mutex<HashMap<(NodeId, String), RaftClient<Channel>>>,
}

/// Largest Raft message accepted (a snapshot chunk or a batch of entries).
pub const MAX_RAFT_MESSAGE: usize = 64 * 1024 * 1024;

impl Network {
    /// The network of node `me`, its calls leaving from `source` when given.
    pub fn new(
        me: NodeId,
        tls: NodeTls,
        source: Option<IpAddr>,
        #[cfg(feature = "testing")] faults: crate::faults::LinkFaults,
    ) -> Arc<Self> {
        let trust_domain = tls.id().trust_domain().clone();
        Arc::new(Self {
            me,
            tls,
            trust_domain,
            source,
            #[cfg(feature = "testing")]
            faults,
            channels: Mutex::new(HashMap::new()),
        })
    }

    fn client(&self, target: NodeId, node: &NodeInfo) -> Result<RaftClient<Channel>, CallError> {
        let key = (target, format!("{}|{}", node.name, node.raft_addr));
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = channels.get(&key) {
            return Ok(client.clone());
        }
        let expected = ExpectedIdentity::Exact(
            Identity::FederationNode {
                node: node.name.clone(),
            }
            .to_spiffe_id(&self.trust_domain),
        );
        let config = self
            .tls
            .client_config(expected)
            .map_err(|e| CallError::Network(e.to_string()))?;
        tracing::debug!(from = self.me, to = target, addr = %node.raft_addr, "raft channel");
        let channel = isthmus_federation_api::channel::channel_from(
            &node.raft_addr,
            config,
            None,
            self.source,
        )
        .map_err(|e| CallError::Unreachable(format!("{}: {e}", node.raft_addr)))?;
        let client = RaftClient::new(channel)
            .max_decoding_message_size(MAX_RAFT_MESSAGE)
            .max_encoding_message_size(MAX_RAFT_MESSAGE);
        channels.insert(key, client.clone());
        Ok(client)
    }

    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        target: NodeId,
        node: &NodeInfo,
        rpc: Rpc,
        request: &Req,
        ttl: Duration,
    ) -> Result<Resp, CallError> {
        #[cfg(feature = "testing")]
        self.faults
            .pass(self.me, target)
            .await
            .map_err(|e| CallError::Unreachable(e.to_string()))?;
        let mut client = self.client(target, node)?;
        let json = serde_json::to_vec(request).map_err(|e| CallError::Network(e.to_string()))?;
        let mut request = tonic::Request::new(RaftPayload { json });
        request.set_timeout(ttl);
        let call = async {
            match rpc {
                Rpc::AppendEntries => client.append_entries(request).await,
                Rpc::Vote => client.vote(request).await,
                Rpc::InstallSnapshot => client.install_snapshot(request).await,
                Rpc::Forward => client.forward(request).await,
            }
        };
        let reply = match tokio::time::timeout(ttl, call).await {
            Err(_) => return Err(CallError::Network(format!("no answer within {ttl:?}"))),
            Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
                return Err(CallError::Unreachable(status.message().to_owned()));
            }
            Ok(Err(status)) => return Err(CallError::Network(status.to_string())),
            Ok(Ok(reply)) => reply.into_inner(),
        };
        // The link may have been cut while the call was in flight.
        #[cfg(feature = "testing")]
        self.faults
            .pass(self.me, target)
            .await
            .map_err(|e| CallError::Unreachable(e.to_string()))?;
        serde_json::from_slice(&reply.json)
            .map_err(|e| CallError::Network(format!("undecodable reply from node {target}: {e}")))
    }

    /// Sends an admin request to the leader `target` and returns its answer.
    pub async fn forward(
        &self,
        target: NodeId,
        node: &NodeInfo,
        request: &ForwardRequest,
        ttl: Duration,
    ) -> Result<ForwardReply, ApiError> {
        let reply: Result<ForwardReply, ApiError> = self
            .call(target, node, Rpc::Forward, request, ttl)
            .await
            .map_err(|e| {
                ApiError::Unavailable(format!(
                    "cannot reach the leader, node {target} at {}: {e}",
                    node.raft_addr
                ))
            })?;
        reply
    }
}

#[derive(Debug, Clone, Copy)]
enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
    Forward,
}

/// openraft's network factory over [`Network`].
#[derive(Debug, Clone)]
pub struct NetworkFactory(pub Arc<Network>);

/// The connection from this node to one peer.
#[derive(Debug)]
pub struct PeerClient {
    net: Arc<Network>,
    target: NodeId,
    node: NodeInfo,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> PeerClient {
        PeerClient {
            net: self.0.clone(),
            target,
            node: node.clone(),
        }
    }
}

type RaftRpcError<E = openraft::error::Infallible> =
    RPCError<NodeId, NodeInfo, RaftError<NodeId, E>>;

impl PeerClient {
    async fn send<Req, Resp, E>(
        &self,
        rpc: Rpc,
        request: &Req,
        ttl: Duration,
    ) -> Result<Resp, RaftRpcError<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let reply: Result<Resp, RaftError<NodeId, E>> = self
            .net
            .call(self.target, &self.node, rpc, request, ttl)
            .await
            .map_err(|e| match e {
                CallError::Unreachable(_) => RPCError::Unreachable(Unreachable::new(&e)),
                CallError::Network(_) => RPCError::Network(NetworkError::new(&e)),
            })?;
        reply.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RaftRpcError> {
        self.send(Rpc::AppendEntries, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RaftRpcError<InstallSnapshotError>> {
        self.send(Rpc::InstallSnapshot, &rpc, option.hard_ttl())
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RaftRpcError> {
        self.send(Rpc::Vote, &rpc, option.hard_ttl()).await
    }
}

/// The server side of Raft RPC. The TLS layer admits only federation nodes.
#[derive(Clone)]
pub struct RaftRpc {
    raft: Raft,
    federation: Arc<Federation>,
}

impl std::fmt::Debug for RaftRpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftRpc").finish_non_exhaustive()
    }
}

impl RaftRpc {
    /// Serves `raft`, forwarding admin requests to `federation`.
    pub fn new(raft: Raft, federation: Arc<Federation>) -> Self {
        Self { raft, federation }
    }
}

/// Largest snapshot accepted from a leader.
pub const MAX_SNAPSHOT_BYTES: u64 = 256 * 1024 * 1024;
/// Largest forwarded admin request.
const MAX_FORWARD_BYTES: usize = 2 * crate::rest::MAX_BODY;

impl RaftRpc {
    /// The federation-node name of the caller, from its verified certificate.
    fn caller(request: &tonic::Request<RaftPayload>) -> Result<String, tonic::Status> {
        let certs = request.peer_certs();
        let id = crate::tls::peer_id(certs.as_deref().map(Vec::as_slice))
            .ok_or_else(|| tonic::Status::unauthenticated("no verified client certificate"))?;
        match id.identity() {
            Ok(Identity::FederationNode { node }) => Ok(node),
            _ => Err(tonic::Status::permission_denied(format!(
                "{id} is not a federation node"
            ))),
        }
    }

    /// Refuses callers that are not members. A node with no membership yet (being added
    /// as a learner) accepts any federation node: its first leader introduces itself.
    /// When `claimed` names the node the message speaks for (leader or candidate), the
    /// caller must be that node.
    fn authorize(&self, caller: &str, claimed: Option<NodeId>) -> Result<(), tonic::Status> {
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let mut nodes = membership.membership().nodes().peekable();
        if nodes.peek().is_none() {
            return Ok(());
        }
        let mut member = false;
        for (id, info) in nodes {
            if info.name == caller {
                member = true;
            }
            if Some(*id) == claimed && info.name != caller {
                return Err(tonic::Status::permission_denied(format!(
                    "{caller} speaks for node {id}, which is {}",
                    info.name
                )));
            }
        }
        if member {
            Ok(())
        } else {
            Err(tonic::Status::permission_denied(format!(
                "{caller} is not a member of this federation"
            )))
        }
    }
}

fn decode<T: DeserializeOwned>(request: tonic::Request<RaftPayload>) -> Result<T, tonic::Status> {
    serde_json::from_slice(&request.into_inner().json)
        .map_err(|e| tonic::Status::invalid_argument(format!("undecodable Raft payload: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<tonic::Response<RaftPayload>, tonic::Status> {
    let json = serde_json::to_vec(value).map_err(|e| tonic::Status::internal(e.to_string()))?;
    Ok(tonic::Response::new(RaftPayload { json }))
}

#[tonic::async_trait]
impl crate::proto::raft_server::Raft for RaftRpc {
    async fn append_entries(
        &self,
        request: tonic::Request<RaftPayload>,
    ) -> Result<tonic::Response<RaftPayload>, tonic::Status> {
        let caller = Self::caller(&request)?;
        self.authorize(&caller, None)?;
        let rpc: AppendEntriesRequest<TypeConfig> = decode(request)?;
        self.authorize(&caller, rpc.vote.leader_id().voted_for())?;
        encode(&self.raft.append_entries(rpc).await)
    }

    async fn vote(
        &self,
        request: tonic::Request<RaftPayload>,
    ) -> Result<tonic::Response<RaftPayload>, tonic::Status> {
        let caller = Self::caller(&request)?;
        self.authorize(&caller, None)?;
        let rpc: VoteRequest<NodeId> = decode(request)?;
        self.authorize(&caller, rpc.vote.leader_id().voted_for())?;
        encode(&self.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: tonic::Request<RaftPayload>,
    ) -> Result<tonic::Response<RaftPayload>, tonic::Status> {
        let caller = Self::caller(&request)?;
        self.authorize(&caller, None)?;
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(request)?;
        self.authorize(&caller, rpc.vote.leader_id().voted_for())?;
        let end = rpc.offset.saturating_add(rpc.data.len() as u64);
        if end > MAX_SNAPSHOT_BYTES {
            return Err(tonic::Status::invalid_argument(format!(
                "snapshot chunk ends at byte {end}, beyond the {MAX_SNAPSHOT_BYTES}-byte limit"
            )));
        }
        encode(&self.raft.install_snapshot(rpc).await)
    }

    async fn forward(
        &self,
        request: tonic::Request<RaftPayload>,
    ) -> Result<tonic::Response<RaftPayload>, tonic::Status> {
        let caller = Self::caller(&request)?;
        self.authorize(&caller, None)?;
        if request.get_ref().json.len() > MAX_FORWARD_BYTES {
            return Err(tonic::Status::invalid_argument(format!(
                "forwarded request larger than {MAX_FORWARD_BYTES} bytes"
            )));
        }
        let forwarded: ForwardRequest = decode(request)?;
        encode(&self.federation.execute_forwarded(forwarded).await)
    }
}
