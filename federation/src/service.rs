//! The admin service layer that gRPC and REST both call: writes go through Raft on the
//! leader (a follower forwards them), reads are linearizable by default (a read index
//! confirmed by a quorum, then served from this node's applied state) or stale on
//! request, and watches stream the applied history.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use isthmus_ca::TrustDomain;
use openraft::error::{ChangeMembershipError, CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use isthmus_federation_api::ApiError;
use isthmus_federation_api::model::CatalogState;
use isthmus_federation_api::status::{Consistency, MemberStatus, StatusReport};
use isthmus_federation_api::watch::WatchMessage;

use crate::command::Command;
use crate::metrics::{ConsistencyLabels, FederationMetrics, ResultLabels};
use crate::network::Network;
use crate::raft::{NodeId, NodeInfo, Raft, Request, Response};
use crate::store::{CatalogView, WatchFrom};

/// A request a follower hands to the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardRequest {
    /// Propose a command.
    Write(Command),
    /// Confirm leadership with a quorum and return the log index a linearizable read
    /// must wait for.
    ReadIndex,
    /// The leader's view of the federation, with member lags.
    Status,
    /// Add a node (learner, catch up, voter).
    AddMember {
        /// Its id.
        id: NodeId,
        /// Its addresses.
        info: NodeInfo,
    },
    /// Remove a node.
    RemoveMember {
        /// Its id.
        id: NodeId,
    },
}

/// The leader's answer to a [`ForwardRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardReply {
    /// Applied at this revision.
    Written(u64),
    /// Wait for this index.
    ReadIndex(Option<u64>),
    /// A status report.
    Status(StatusReport),
}

/// Timeouts of the service layer.
#[derive(Debug, Clone, Copy)]
pub struct ServiceTimeouts {
    /// A write: proposal to applied.
    pub write: Duration,
    /// Confirming leadership for a linearizable read.
    pub read_index: Duration,
    /// A learner catching up before it is promoted.
    pub catch_up: Duration,
}

impl Default for ServiceTimeouts {
    fn default() -> Self {
        Self {
            write: Duration::from_secs(10),
            read_index: Duration::from_secs(3),
            catch_up: Duration::from_secs(60),
        }
    }
}

/// What a [`Federation`] is built from.
#[allow(missing_debug_implementations)] // openraft's `Raft` is not `Debug`
pub struct FederationParts {
    /// This node's Raft id.
    pub id: NodeId,
    /// Its name and addresses.
    pub info: NodeInfo,
    /// Its Raft handle.
    pub raft: Raft,
    /// Its applied catalog.
    pub view: CatalogView,
    /// Its network, for forwarding to the leader.
    pub net: Arc<Network>,
    /// The federation's trust domain.
    pub trust_domain: TrustDomain,
    /// Service-layer timeouts.
    pub timeouts: ServiceTimeouts,
    /// Cancelled when the node stops.
    pub stop: CancellationToken,
    /// This node's certificate chain: a new trust bundle must still trust it.
    pub own_chain: Vec<rustls_pki_types::CertificateDer<'static>>,
}

/// The federation as the admin API sees it.
pub struct Federation {
    id: NodeId,
    info: NodeInfo,
    own_chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    raft: Raft,
    view: CatalogView,
    net: Arc<Network>,
    trust_domain: TrustDomain,
    timeouts: ServiceTimeouts,
    stop: CancellationToken,
    reads: Arc<ReadBatch>,
    writes: mpsc::Sender<(Command, WriteReply)>,
    metrics: Arc<FederationMetrics>,
}

type WriteReply = tokio::sync::oneshot::Sender<Result<u64, ApiError>>;

/// Most commands in one log entry.
const MAX_BATCH: usize = 256;
/// Entries proposed but not yet applied, at most: while they are in flight, new writes
/// gather into the next entry. openraft 0.9 appends (and flushes) one entry at a time,
/// so more entries in flight only make them smaller; measured with 64 writers, 1 and 2
/// perform alike and 16 loses a third of the throughput.
const MAX_IN_FLIGHT: usize = 2;

/// Proposes writers' commands in batches: each proposal takes every command waiting
/// when it starts. openraft flushes one entry at a time, so batching is what lets
/// concurrent writers share a flush and a replication round.
async fn propose_batches(
    raft: Raft,
    mut queue: mpsc::Receiver<(Command, WriteReply)>,
    stop: CancellationToken,
) {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let first = tokio::select! {
            () = stop.cancelled() => return,
            first = queue.recv() => match first {
                Some(first) => first,
                None => return,
            },
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let (commands, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
            let count = commands.len();
            let results: Vec<Result<u64, ApiError>> =
                match raft.client_write(Request { commands }).await {
                    Ok(response) => match response.data {
                        Response::Applied(results) if results.len() == count => results
                            .into_iter()
                            .map(|r| r.map_err(ApiError::from))
                            .collect(),
                        other => {
                            let e = ApiError::Internal(format!(
                                "a batch of {count} applied as {other:?}"
                            ));
                            vec![Err(e); count]
                        }
                    },
                    Err(e) => vec![Err(write_error(e)); count],
                };
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
            drop(permit);
        });
    }
}

/// Linearizable reads arriving while a leadership confirmation is in flight wait for
/// the next one, so that many concurrent reads cost one quorum round, not one each. A
/// read is only answered by a confirmation that began after it arrived.
#[derive(Debug, Default)]
struct ReadBatch {
    state: std::sync::Mutex<ReadBatchState>,
}

type ReadIndexReply = Result<Option<u64>, ApiError>;

#[derive(Debug, Default)]
struct ReadBatchState {
    running: bool,
    waiting: Vec<tokio::sync::oneshot::Sender<ReadIndexReply>>,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Rough encoded size at which a watch snapshot starts a new message (clients' default
/// limit is 4 MiB per message).
const SNAPSHOT_PART_BYTES: usize = 1024 * 1024;
const EVENTS_PER_READ: usize = 256;

impl Federation {
    /// The service of one node; its watches end when `parts.stop` is cancelled.
    pub fn new(parts: FederationParts) -> Self {
        let FederationParts {
            id,
            info,
            raft,
            view,
            net,
            trust_domain,
            timeouts,
            stop,
            own_chain,
        } = parts;
        let (writes, queue) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(propose_batches(raft.clone(), queue, stop.clone()));
        Self {
            id,
            info,
            own_chain,
            raft,
            view,
            net,
            trust_domain,
            timeouts,
            stop: stop.clone(),
            reads: Arc::default(),
            writes,
            metrics: FederationMetrics::new(),
        }
    }

    /// This node's metrics.
    pub fn metrics(&self) -> &Arc<FederationMetrics> {
        &self.metrics
    }

    /// This node's Raft handle.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// This node's applied catalog.
    pub fn view(&self) -> &CatalogView {
        &self.view
    }

    /// The federation's trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// Bootstraps a new federation with this node as its only voter.
    pub async fn init(&self) -> Result<StatusReport, ApiError> {
        let members = BTreeMap::from([(self.id, self.info.clone())]);
        match self.raft.initialize(members).await {
            Ok(()) => {}
            Err(RaftError::APIError(e)) => {
                return Err(ApiError::FailedPrecondition(format!(
                    "cannot initialise: {e}; a federation is initialised once, on one node — add the others with `member add`"
                )));
            }
            Err(RaftError::Fatal(e)) => return Err(ApiError::Unavailable(e.to_string())),
        }
        // Wait until this node leads, so that the next call can write.
        let _ = self
            .raft
            .wait(Some(self.timeouts.write))
            .state(ServerState::Leader, "init")
            .await;
        Ok(self.local_status())
    }

    /// Applies `command` on the leader; returns the revision it produced.
    pub async fn write(&self, command: Command) -> Result<u64, ApiError> {
        let result = self.write_unmetered(command).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(
                ApiError::NotFound(_)
                | ApiError::AlreadyExists(_)
                | ApiError::FailedPrecondition(_),
            ) => "rejected",
            Err(_) => "error",
        };
        self.metrics
            .writes
            .get_or_create(&ResultLabels { result: outcome })
            .inc();
        result
    }

    async fn write_unmetered(&self, command: Command) -> Result<u64, ApiError> {
        command.validate(&self.trust_domain)?;
        if let Command::SetTrustBundle { trust_bundle, .. } = &command {
            // A bundle that no longer trusts the federation's own certificates would cut
            // the nodes off from each other and from every gateway at once.
            let bundle = isthmus_federation_api::validate::trust_bundle(
                trust_bundle,
                Some(&self.trust_domain),
            )?;
            if let Some(top) = self.own_chain.last() {
                if bundle.signer_of(top).is_err() {
                    return Err(ApiError::FailedPrecondition(format!(
                        "the new bundle does not trust the certificate of federation node {}; issue the nodes' certificates from a root of the new bundle (and restart them) before removing their root",
                        self.info.name
                    )));
                }
            }
        }
        match self.on_leader(ForwardRequest::Write(command)).await? {
            ForwardReply::Written(revision) => Ok(revision),
            other => Err(unexpected(&other)),
        }
    }

    /// Waits until this node may serve a read of `consistency`.
    pub async fn read_barrier(&self, consistency: Consistency) -> Result<(), ApiError> {
        if consistency == Consistency::Stale {
            return Ok(());
        }
        let index = match self.on_leader(ForwardRequest::ReadIndex).await? {
            ForwardReply::ReadIndex(index) => index,
            other => return Err(unexpected(&other)),
        };
        // On the leader the read index is applied already; skip the metrics wait then.
        let applied = self.view.last_applied_index();
        if let Some(index) = index
            && applied < Some(index)
        {
            self.raft
                .wait(Some(self.timeouts.read_index))
                .applied_index_at_least(Some(index), "linearizable read")
                .await
                .map_err(|e| ApiError::Unavailable(format!("this node is not catching up: {e}")))?;
        }
        Ok(())
    }

    /// Reads the catalog after a barrier of `consistency`.
    pub async fn read<T>(
        &self,
        consistency: Consistency,
        f: impl FnOnce(&CatalogState) -> T,
    ) -> Result<T, ApiError> {
        let labels = ConsistencyLabels {
            consistency: consistency.as_str(),
        };
        self.metrics.reads.get_or_create(&labels).inc();
        self.read_barrier(consistency).await?;
        Ok(self.view.read(f))
    }

    /// The federation's status: the leader's (with lags), or with `Stale` this node's
    /// own view (which answers even when there is no leader).
    pub async fn status(&self, consistency: Consistency) -> Result<StatusReport, ApiError> {
        if consistency == Consistency::Stale {
            return Ok(self.local_status());
        }
        match self.on_leader(ForwardRequest::Status).await {
            Ok(ForwardReply::Status(report)) => Ok(report),
            Ok(other) => Err(unexpected(&other)),
            Err(e) => Err(e),
        }
    }

    /// Adds node `id`: learner, catch up, voter.
    pub async fn add_member(&self, id: NodeId, info: NodeInfo) -> Result<StatusReport, ApiError> {
        match self
            .on_leader(ForwardRequest::AddMember { id, info })
            .await?
        {
            ForwardReply::Status(report) => Ok(report),
            other => Err(unexpected(&other)),
        }
    }

    /// Removes node `id`.
    pub async fn remove_member(&self, id: NodeId) -> Result<StatusReport, ApiError> {
        match self.on_leader(ForwardRequest::RemoveMember { id }).await? {
            ForwardReply::Status(report) => Ok(report),
            other => Err(unexpected(&other)),
        }
    }

    /// Runs `request` here if this node leads, else on the leader.
    async fn on_leader(&self, request: ForwardRequest) -> Result<ForwardReply, ApiError> {
        match self.on_known_leader(request.clone()).await {
            Err(ApiError::NotLeader { leader: None }) => {
                // An election is running or this node has just joined: wait (bounded)
                // until it knows a leader, then try once more.
                let bound = self.timeouts.read_index;
                let known = self
                    .raft
                    .wait(Some(bound))
                    .metrics(|m| m.current_leader.is_some(), "a known leader")
                    .await;
                match known {
                    Ok(_) => self.on_known_leader(request).await,
                    Err(_) => Err(ApiError::NotLeader { leader: None }),
                }
            }
            other => other,
        }
    }

    async fn on_known_leader(&self, request: ForwardRequest) -> Result<ForwardReply, ApiError> {
        match self.execute_local(request.clone()).await {
            Err(ApiError::NotLeader {
                leader: Some(known),
            }) if known.0 != self.id => {
                let (leader, info) = *known;
                let ttl = match request {
                    ForwardRequest::AddMember { .. } => {
                        self.timeouts.catch_up + self.timeouts.write
                    }
                    ForwardRequest::ReadIndex => self.timeouts.read_index,
                    _ => self.timeouts.write,
                } + Duration::from_secs(1);
                self.net.forward(leader, &info, &request, ttl).await
            }
            other => other,
        }
    }

    /// Runs a request another node forwarded, checked as if it had arrived here.
    pub async fn execute_forwarded(
        &self,
        request: ForwardRequest,
    ) -> Result<ForwardReply, ApiError> {
        match &request {
            ForwardRequest::Write(command) => command.validate(&self.trust_domain)?,
            ForwardRequest::AddMember { id, info } => {
                isthmus_federation_api::validate::member(*id, info)?
            }
            _ => {}
        }
        self.execute_local(request).await
    }

    /// Runs `request` on this node, which must be the leader (except `Status`). This is
    /// also what a leader runs for a follower's forwarded request: it never forwards
    /// again, so a request cannot loop.
    pub async fn execute_local(&self, request: ForwardRequest) -> Result<ForwardReply, ApiError> {
        match request {
            ForwardRequest::Write(command) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                self.writes
                    .send((command, tx))
                    .await
                    .map_err(|_| ApiError::Unavailable("this node is shutting down".into()))?;
                let written = tokio::time::timeout(self.timeouts.write, rx).await.map_err(|_| {
                    ApiError::Timeout(format!(
                        "the write was not applied within {:?} (is a quorum of federation nodes up?); it may still take effect: read before retrying",
                        self.timeouts.write
                    ))
                })?;
                let revision = written
                    .map_err(|_| ApiError::Unavailable("this node is shutting down".into()))??;
                Ok(ForwardReply::Written(revision))
            }
            ForwardRequest::ReadIndex => self.read_index().await.map(ForwardReply::ReadIndex),
            ForwardRequest::Status => {
                let report = self.local_status();
                if report.state == "leader" {
                    Ok(ForwardReply::Status(report))
                } else {
                    Err(self.not_leader())
                }
            }
            ForwardRequest::AddMember { id, info } => {
                if self.local_status().state != "leader" {
                    return Err(self.not_leader());
                }
                self.check_new_member(id, &info)?;
                let raft = self.raft.clone();
                let (catch_up, write) = (self.timeouts.catch_up, self.timeouts.write);
                // In its own task: a caller that gives up must not cancel a membership
                // change halfway (openraft changes membership in two steps).
                let change = tokio::spawn(async move {
                    match tokio::time::timeout(catch_up, raft.add_learner(id, info, true)).await {
                        Err(_) => {
                            return Err(ApiError::Timeout(format!(
                                "node {id} did not catch up within {catch_up:?} and stays a learner; check that it runs and that its raft address is reachable, then add it again or remove it"
                            )));
                        }
                        Ok(result) => result.map_err(write_error)?,
                    };
                    raft.change_membership(ChangeMembers::AddVoterIds([id].into()), false)
                        .await
                        .map_err(write_error)
                });
                self.await_membership(change, catch_up + write).await?;
                Ok(ForwardReply::Status(self.local_status()))
            }
            ForwardRequest::RemoveMember { id } => {
                if self.local_status().state != "leader" {
                    return Err(self.not_leader());
                }
                let membership = self.raft.metrics().borrow().membership_config.clone();
                let voter = membership.membership().voter_ids().any(|v| v == id);
                let known = membership.membership().nodes().any(|(n, _)| *n == id);
                if !known {
                    return Err(ApiError::NotFound(format!("node {id} is not a member")));
                }
                let change = if voter {
                    ChangeMembers::RemoveVoters([id].into())
                } else {
                    ChangeMembers::RemoveNodes([id].into())
                };
                let raft = self.raft.clone();
                let change = tokio::spawn(async move {
                    raft.change_membership(change, false)
                        .await
                        .map_err(write_error)
                });
                self.await_membership(change, self.timeouts.write).await?;
                Ok(ForwardReply::Status(self.local_status()))
            }
        }
    }

    /// Refuses an `add` that would silently keep different addresses for a known id
    /// (openraft keeps the first record of an id) or reuse another node's name.
    fn check_new_member(&self, id: NodeId, info: &NodeInfo) -> Result<(), ApiError> {
        let membership = self.raft.metrics().borrow().membership_config.clone();
        for (known, known_info) in membership.membership().nodes() {
            if *known == id && known_info != info {
                return Err(ApiError::FailedPrecondition(format!(
                    "node {id} is already a member as {} (raft {}, admin {}); remove it first to change its name or addresses",
                    known_info.name, known_info.raft_addr, known_info.admin_addr
                )));
            }
            if *known != id && known_info.name == info.name {
                return Err(ApiError::invalid(
                    "member.name",
                    format!("{:?} is already the name of node {known}", info.name),
                ));
            }
        }
        Ok(())
    }

    async fn await_membership(
        &self,
        change: tokio::task::JoinHandle<Result<impl Sized, ApiError>>,
        bound: Duration,
    ) -> Result<(), ApiError> {
        match tokio::time::timeout(bound, change).await {
            Err(_) => Err(ApiError::Timeout(format!(
                "the membership change did not finish within {bound:?}; it continues in the background: check `isthmus federation status`"
            ))),
            Ok(Err(e)) => Err(ApiError::Internal(format!(
                "membership change task failed: {e}"
            ))),
            Ok(Ok(result)) => result.map(|_| ()),
        }
    }

    /// Confirms leadership with a quorum, sharing the round with concurrent readers.
    async fn read_index(&self) -> Result<Option<u64>, ApiError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let start = {
            let mut state = self.reads.state.lock().unwrap_or_else(|p| p.into_inner());
            state.waiting.push(tx);
            !std::mem::replace(&mut state.running, true)
        };
        if start {
            let (raft, batch, bound) = (
                self.raft.clone(),
                self.reads.clone(),
                self.timeouts.read_index,
            );
            tokio::spawn(async move {
                loop {
                    let waiting = {
                        let mut state = batch.state.lock().unwrap_or_else(|p| p.into_inner());
                        if state.waiting.is_empty() {
                            state.running = false;
                            return;
                        }
                        std::mem::take(&mut state.waiting)
                    };
                    let reply = match tokio::time::timeout(bound, raft.ensure_linearizable()).await
                    {
                        Err(_) => Err(no_quorum("confirming leadership", bound)),
                        Ok(result) => result.map(|l| l.map(|l| l.index)).map_err(leader_error),
                    };
                    for tx in waiting {
                        let _ = tx.send(reply.clone());
                    }
                }
            });
        }
        rx.await
            .map_err(|_| ApiError::Unavailable("the read confirmation was dropped".into()))?
    }

    fn not_leader(&self) -> ApiError {
        let metrics = self.raft.metrics().borrow().clone();
        let leader = metrics.current_leader.and_then(|id| {
            metrics
                .membership_config
                .membership()
                .get_node(&id)
                .map(|info| Box::new((id, info.clone())))
        });
        ApiError::NotLeader { leader }
    }

    /// This node's own view.
    pub fn local_status(&self) -> StatusReport {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let last = metrics.last_log_index;
        let members = membership
            .nodes()
            .map(|(id, info)| {
                let lag = metrics.replication.as_ref().and_then(|r| {
                    let matched = r.get(id)?;
                    Some(
                        last.unwrap_or(0)
                            .saturating_sub(matched.map_or(0, |m| m.index)),
                    )
                });
                MemberStatus {
                    node_id: *id,
                    info: info.clone(),
                    voter: voters.contains(id),
                    lag: if *id == self.id && metrics.state == ServerState::Leader {
                        Some(0)
                    } else {
                        lag
                    },
                }
            })
            .collect();
        StatusReport {
            node_id: self.id,
            name: self.info.name.clone(),
            state: match metrics.state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            }
            .to_owned(),
            leader_id: metrics.current_leader,
            term: metrics.current_term,
            last_log_index: last,
            applied_index: metrics.last_applied.map(|l| l.index),
            revision: self.view.revision(),
            initialized: metrics.membership_config.log_id().is_some() || !voters.is_empty(),
            members,
        }
    }

    /// Streams every change after revision `after`: in order, no gaps, no duplicates;
    /// a full state first when the history no longer reaches back that far. The stream
    /// ends when the receiver is dropped.
    pub fn watch(&self, after: u64) -> mpsc::Receiver<Result<WatchMessage, ApiError>> {
        let (tx, rx) = mpsc::channel(64);
        let view = self.view.clone();
        let stop = self.stop.clone();
        let open = WatchGauge::open(self.metrics.clone());
        tokio::spawn(async move {
            let _open = open;
            let mut changed = view.subscribe();
            let mut after = after;
            loop {
                changed.borrow_and_update();
                let next = match view.since(after, EVENTS_PER_READ) {
                    Ok(next) => next,
                    Err(e) => {
                        let _ = tx.send(Err(ApiError::Internal(e.to_string()))).await;
                        return;
                    }
                };
                match next {
                    WatchFrom::Snapshot(state) => {
                        let parts = snapshot_parts(state.as_events());
                        let count = parts.len();
                        for (i, events) in parts.into_iter().enumerate() {
                            let message = WatchMessage::Snapshot {
                                revision: state.revision,
                                events,
                                done: i + 1 == count,
                            };
                            if !send(&tx, &stop, Ok(message)).await {
                                return;
                            }
                        }
                        after = state.revision;
                    }
                    WatchFrom::Events(list) if list.is_empty() => {
                        tokio::select! {
                            () = tx.closed() => return,
                            () = stop.cancelled() => {
                                let _ = tx.send(Err(ApiError::Unavailable("this node is shutting down; resume the watch on another node".into()))).await;
                                return;
                            }
                            changed = changed.changed() => if changed.is_err() { return },
                        }
                    }
                    WatchFrom::Events(list) => {
                        for events in list {
                            after = events.revision;
                            if !send(&tx, &stop, Ok(WatchMessage::Changes(events))).await {
                                return;
                            }
                        }
                    }
                }
            }
        });
        rx
    }

    /// The changes after revision `after` that are there now, waiting up to `wait` for
    /// the first when there are none (a blocking query, for clients that poll): the
    /// same messages, in the same order, as [`Self::watch`] would stream. At most
    /// [`EVENTS_PER_READ`] revisions, or one full state when the history no longer
    /// reaches back that far.
    pub async fn changes(&self, after: u64, wait: Duration) -> Result<Vec<WatchMessage>, ApiError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut changed = self.view.subscribe();
        loop {
            changed.borrow_and_update();
            let next = self
                .view
                .since(after, EVENTS_PER_READ)
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            match next {
                WatchFrom::Snapshot(state) => {
                    let parts = snapshot_parts(state.as_events());
                    let count = parts.len();
                    return Ok(parts
                        .into_iter()
                        .enumerate()
                        .map(|(i, events)| WatchMessage::Snapshot {
                            revision: state.revision,
                            events,
                            done: i + 1 == count,
                        })
                        .collect());
                }
                WatchFrom::Events(list) if !list.is_empty() => {
                    return Ok(list.into_iter().map(WatchMessage::Changes).collect());
                }
                WatchFrom::Events(_) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => return Ok(Vec::new()),
                        () = self.stop.cancelled() => return Ok(Vec::new()),
                        changed = changed.changed() => if changed.is_err() { return Ok(Vec::new()) },
                    }
                }
            }
        }
    }
}

/// Splits a full state into watch messages of about [`SNAPSHOT_PART_BYTES`] each
/// (at least one message, possibly empty).
fn snapshot_parts(
    events: Vec<isthmus_federation_api::model::Event>,
) -> Vec<Vec<isthmus_federation_api::model::Event>> {
    let mut parts = vec![Vec::new()];
    let mut size = 0;
    for event in events {
        // JSON length tracks the protobuf size closely enough: both are dominated by
        // names and PEM text.
        let bytes = serde_json::to_vec(&event).map_or(0, |b| b.len());
        if size + bytes > SNAPSHOT_PART_BYTES && parts.last().is_some_and(|p| !p.is_empty()) {
            parts.push(Vec::new());
            size = 0;
        }
        size += bytes;
        if let Some(last) = parts.last_mut() {
            last.push(event);
        }
    }
    parts
}

/// Counts an open watch stream for as long as it lives.
struct WatchGauge(Arc<FederationMetrics>);

impl WatchGauge {
    fn open(metrics: Arc<FederationMetrics>) -> Self {
        metrics.watches.inc();
        Self(metrics)
    }
}

impl Drop for WatchGauge {
    fn drop(&mut self) {
        self.0.watches.dec();
    }
}

/// Sends unless the receiver is gone or the node stops first.
async fn send(
    tx: &mpsc::Sender<Result<WatchMessage, ApiError>>,
    stop: &CancellationToken,
    message: Result<WatchMessage, ApiError>,
) -> bool {
    tokio::select! {
        () = stop.cancelled() => false,
        sent = tx.send(message) => sent.is_ok(),
    }
}

fn unexpected(reply: &ForwardReply) -> ApiError {
    ApiError::Internal(format!("unexpected reply from the leader: {reply:?}"))
}

fn no_quorum(what: &str, after: Duration) -> ApiError {
    ApiError::Unavailable(format!(
        "{what} did not complete within {after:?}: no quorum of federation nodes answered; check `isthmus federation status` and the nodes' logs"
    ))
}

fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>) -> ApiError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ApiError::NotLeader {
            leader: f.leader_id.zip(f.leader_node).map(Box::new),
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => match e {
            ChangeMembershipError::LearnerNotFound(e) => ApiError::NotFound(e.to_string()),
            other => ApiError::FailedPrecondition(other.to_string()),
        },
        RaftError::Fatal(e) => ApiError::Unavailable(format!("this node stopped: {e}")),
    }
}

fn leader_error(e: RaftError<NodeId, CheckIsLeaderError<NodeId, NodeInfo>>) -> ApiError {
    match e {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => ApiError::NotLeader {
            leader: f.leader_id.zip(f.leader_node).map(Box::new),
        },
        RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e)) => {
            ApiError::Unavailable(format!("no quorum confirms this leader: {e}"))
        }
        RaftError::Fatal(e) => ApiError::Unavailable(format!("this node stopped: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_federation_api::model::{Cluster, ClusterState, Event};

    fn big_cluster(i: usize) -> Event {
        Event::ClusterPut {
            cluster: Cluster {
                name: format!("c{i}"),
                gateways: vec![],
                intermediate_pem: Some("x".repeat(60 * 1024)),
                locality: None,
                join: None,
                state: ClusterState::Active,
                revision: 1,
            },
        }
    }

    #[test]
    fn snapshot_parts_stay_near_the_size_bound_and_keep_everything_in_order() {
        assert_eq!(snapshot_parts(vec![]), vec![Vec::<Event>::new()]);
        let events: Vec<_> = (0..50).map(big_cluster).collect();
        let parts = snapshot_parts(events.clone());
        assert!(parts.len() >= 3, "{} parts", parts.len());
        for part in &parts {
            let bytes: usize = part
                .iter()
                .map(|e| serde_json::to_vec(e).unwrap().len())
                .sum();
            assert!(bytes <= SNAPSHOT_PART_BYTES, "{bytes}");
        }
        assert_eq!(parts.concat(), events);
    }
}
