//! The admin API's errors, shared by gRPC and REST: each maps to one gRPC code and one
//! HTTP status, and its message says what to fix.

use crate::command::Rejection;
use serde::{Deserialize, Serialize};

use crate::raft::{NodeId, NodeInfo};

/// Why an admin request failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed; `field` names the part that is wrong.
    #[error("field `{field}`: {message}")]
    InvalidArgument {
        /// Path of the field, for example `ports[1].port`.
        field: String,
        /// What is wrong and what is accepted.
        message: String,
    },
    /// The object does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A create found the object already there.
    #[error("{0}")]
    AlreadyExists(String),
    /// The state does not allow this change (compare-and-set failed, object in use).
    #[error("{0}")]
    FailedPrecondition(String),
    /// This node is not the leader and could not forward the request.
    #[error("not the leader; the leader is {}", leader.as_deref().map_or("unknown (an election may be running; retry)".to_owned(), |(id, l)| format!("node {id} ({}) with admin API at {} and REST at {}", l.name, l.admin_addr, l.rest_addr)))]
    NotLeader {
        /// The leader's id and addresses, when known (boxed: errors stay small).
        leader: Option<Box<(NodeId, NodeInfo)>>,
    },
    /// The federation cannot answer now (no quorum, shutting down); retry later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The request is larger than the API accepts.
    #[error("request too large: {0}")]
    TooLarge(String),
    /// The request was handed to Raft but did not finish in time: it may or may not
    /// take effect. Read before retrying.
    #[error("outcome unknown: {0}")]
    Timeout(String),
    /// The caller presented no acceptable identity.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The caller's identity may not make this call.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// A fault inside the federation (storage); logged on the node.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// An invalid field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error with `prefix.` in front of its field path.
    pub fn within(self, prefix: &str) -> Self {
        match self {
            Self::InvalidArgument { field, message } => Self::InvalidArgument {
                field: format!("{prefix}.{field}"),
                message,
            },
            other => other,
        }
    }

    /// The gRPC status of this error.
    pub fn grpc_code(&self) -> tonic::Code {
        match self {
            Self::InvalidArgument { .. } => tonic::Code::InvalidArgument,
            Self::NotFound(_) => tonic::Code::NotFound,
            Self::AlreadyExists(_) => tonic::Code::AlreadyExists,
            Self::FailedPrecondition(_) => tonic::Code::FailedPrecondition,
            Self::NotLeader { .. } | Self::Unavailable(_) => tonic::Code::Unavailable,
            Self::Timeout(_) => tonic::Code::DeadlineExceeded,
            Self::TooLarge(_) => tonic::Code::ResourceExhausted,
            Self::Unauthenticated(_) => tonic::Code::Unauthenticated,
            Self::PermissionDenied(_) => tonic::Code::PermissionDenied,
            Self::Internal(_) => tonic::Code::Internal,
        }
    }

    /// The HTTP status of this error.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::InvalidArgument { .. } => 400,
            Self::NotFound(_) => 404,
            Self::AlreadyExists(_) | Self::FailedPrecondition(_) => 409,
            Self::NotLeader { .. } | Self::Unavailable(_) => 503,
            Self::Timeout(_) => 504,
            Self::TooLarge(_) => 413,
            Self::Unauthenticated(_) => 401,
            Self::PermissionDenied(_) => 403,
            Self::Internal(_) => 500,
        }
    }

    /// A short machine-readable name of the kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidArgument { .. } => "invalid_argument",
            Self::NotFound(_) => "not_found",
            Self::AlreadyExists(_) => "already_exists",
            Self::FailedPrecondition(_) => "failed_precondition",
            Self::NotLeader { .. } => "not_leader",
            Self::Unavailable(_) => "unavailable",
            Self::Timeout(_) => "timeout",
            Self::TooLarge(_) => "too_large",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::PermissionDenied(_) => "permission_denied",
            Self::Internal(_) => "internal",
        }
    }
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> Self {
        let message = rejection.to_string();
        match rejection {
            Rejection::NotFound { .. } => Self::NotFound(message),
            Rejection::AlreadyExists { .. } => Self::AlreadyExists(message),
            Rejection::RevisionMismatch { .. }
            | Rejection::ClusterHasExports { .. }
            | Rejection::Revoked { .. } => Self::FailedPrecondition(message),
            Rejection::Claimed { .. } => Self::AlreadyExists(message),
            Rejection::Vet { field, message } => Self::invalid(field, message),
            Rejection::JoinRefused { .. } => Self::PermissionDenied(message),
            Rejection::UnknownCluster { cluster } => Self::invalid(
                "cluster",
                format!("unknown cluster \"{cluster}\"; create the cluster first"),
            ),
        }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(err: ApiError) -> Self {
        tonic::Status::new(err.grpc_code(), err.to_string())
    }
}
