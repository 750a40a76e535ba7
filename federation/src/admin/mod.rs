//! The admin operations, each written once: a function of (caller, typed request) →
//! typed answer that holds the authorization, the checks, the compare-and-set and the
//! wording of every refusal. The gRPC and REST faces only convert their wire forms and
//! call one of these; so does nothing else.
//!
//! ```text
//!  gRPC face ─┐                         ┌─ access: may this principal do it?
//!             ├─▶ authenticate ─▶ op ───┼─ validate: is the request well formed?
//!  REST face ─┘   (credentials)         └─ service: read (barrier) or write (Raft)
//! ```
//!
//! Authentication comes first on both faces (an anonymous caller learns nothing else);
//! then the face decodes its request; then the operation decides. The order inside each
//! operation is the same everywhere: what the caller may do, then the request's own
//! checks, then the state's (in the command, applied alike on every node).

mod catalog;
mod members;
mod mesh;
mod op;
mod policy;
mod registration;

pub use mesh::{MeshChange, MeshView, MeshWatch};
pub use op::Op;

use std::sync::Arc;

use isthmus_ca::SpiffeId;
use isthmus_federation_api::ApiError;
use isthmus_federation_api::model::ClusterState;
use isthmus_federation_api::request::Written;
use isthmus_federation_api::status::Consistency;
use isthmus_federation_api::watch::WatchMessage;
use tokio::sync::mpsc;

use crate::access::{AccessControl, Operation, Principal, Role};
use crate::command::Command;
use crate::enroll::Enroller;
use crate::service::Federation;

/// What a caller presented: the verified client certificate's SPIFFE ID (the TLS layer
/// checked the chain) and the `authorization` header as sent.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// The client certificate's identity, if a certificate was presented.
    pub peer: Option<SpiffeId>,
    /// The `authorization` header: its text, or `Err` when it is not text.
    pub authorization: Option<Result<String, ()>>,
}

/// The admin operations of one node.
#[derive(Debug, Clone)]
pub struct Admin {
    federation: Arc<Federation>,
    enroller: Arc<Enroller>,
    access: Arc<AccessControl>,
    mesh: Arc<crate::mesh::MeshStatus>,
    alerts: Arc<crate::alerts::book::AlertBook>,
}

/// The window of policy decisions counted when none is asked for (15 minutes).
pub const DEFAULT_DECISION_WINDOW: u64 = 900;

/// The longest a blocking watch query may wait for a change.
pub const MAX_WATCH_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl Admin {
    /// The operations over `federation`; `enroller` mints join tokens; `access` says
    /// who may call; `mesh` holds the gateways' status reports and `alerts` the alerts
    /// evaluated on them.
    pub fn new(
        federation: Arc<Federation>,
        enroller: Arc<Enroller>,
        access: Arc<AccessControl>,
        mesh: Arc<crate::mesh::MeshStatus>,
        alerts: Arc<crate::alerts::book::AlertBook>,
    ) -> Self {
        Self {
            federation,
            enroller,
            access,
            mesh,
            alerts,
        }
    }

    /// The service this layer runs on.
    pub fn federation(&self) -> &Arc<Federation> {
        &self.federation
    }

    /// Who is calling, from a client certificate or a bearer token; a gateway of a
    /// cluster that is not an active member is refused here, before any operation.
    pub async fn authenticate(&self, credentials: &Credentials) -> Result<Principal, ApiError> {
        let header = match &credentials.authorization {
            None => None,
            Some(Ok(text)) => Some(text.as_str()),
            Some(Err(())) => {
                return Err(ApiError::Unauthenticated(
                    "the authorization header is not text".into(),
                ));
            }
        };
        let principal = self.access.principal(credentials.peer.as_ref(), header)?;
        if let Role::Gateway(cluster) = &principal.role {
            let state = self
                .federation
                .read(Consistency::Stale, |s| {
                    s.clusters.get(cluster).map(|c| c.state)
                })
                .await?;
            if state != Some(ClusterState::Active) {
                return Err(ApiError::PermissionDenied(format!(
                    "cluster \"{cluster}\" is not an active member (state {state:?}); its gateways are refused"
                )));
            }
        }
        Ok(principal)
    }

    async fn write(&self, command: Command) -> Result<Written, ApiError> {
        let revision = self.federation.write(command).await?;
        Ok(Written { revision })
    }

    /// Every change after revision `after`, streamed (see `Federation::watch`).
    pub async fn watch(
        &self,
        who: &Principal,
        after: u64,
    ) -> Result<mpsc::Receiver<Result<WatchMessage, ApiError>>, ApiError> {
        who.may(&Operation::Read)?;
        Ok(self.federation.watch(after))
    }

    /// The changes after revision `after` available now, waiting up to `wait` (at most
    /// [`MAX_WATCH_WAIT`]) for one: the watch for clients that poll.
    pub async fn changes(
        &self,
        who: &Principal,
        after: u64,
        wait: std::time::Duration,
    ) -> Result<Vec<WatchMessage>, ApiError> {
        who.may(&Operation::Read)?;
        if wait > MAX_WATCH_WAIT {
            return Err(ApiError::invalid(
                "wait_seconds",
                format!(
                    "{} s; wait at most {} s, then ask again",
                    wait.as_secs(),
                    MAX_WATCH_WAIT.as_secs()
                ),
            ));
        }
        self.federation.changes(after, wait).await
    }
}

/// The object `found`, or a not-found error naming `what`.
fn found<T>(found: Option<T>, what: impl FnOnce() -> String) -> Result<T, ApiError> {
    found.ok_or_else(|| ApiError::NotFound(format!("{} does not exist", what())))
}
