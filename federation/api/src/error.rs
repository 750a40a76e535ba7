//! The admin API's errors, shared by gRPC, REST and the client: each maps to one gRPC
//! code and one HTTP status, and its message says what to fix. Over gRPC the whole error
//! also travels as JSON in the `isthmus-error-bin` trailer, so that a client gets the
//! typed error back (the field, the leader) and not only its text.

use serde::{Deserialize, Serialize};

use crate::status::{NodeId, NodeInfo};

/// The gRPC trailer that carries the typed error as JSON.
pub const ERROR_TRAILER: &str = "isthmus-error-bin";

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
    /// The request is well formed, but the catalog refuses it as it stands: it names an
    /// object that does not exist (a cluster in a policy or an export), or removes one
    /// that others still name. `field` names the part to change.
    #[error("field `{field}`: {message}")]
    Admission {
        /// Path of the field, for example `body.rules[0].from[1].cluster`.
        field: String,
        /// What is wrong and what to do.
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

    /// An admission refusal naming `field`.
    pub fn admission(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Admission {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The field this error names, if it names one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::InvalidArgument { field, .. } | Self::Admission { field, .. } => Some(field),
            _ => None,
        }
    }

    /// The same error with its field path changed by `rename` (a face whose messages
    /// nest or name fields differently).
    pub fn rename_field(self, rename: impl FnOnce(String) -> String) -> Self {
        match self {
            Self::InvalidArgument { field, message } => Self::InvalidArgument {
                field: rename(field),
                message,
            },
            Self::Admission { field, message } => Self::Admission {
                field: rename(field),
                message,
            },
            other => other,
        }
    }

    /// The same error with `prefix.` in front of its field path.
    pub fn within(self, prefix: &str) -> Self {
        self.rename_field(|field| format!("{prefix}.{field}"))
    }

    /// Whether the request certainly did not take effect: an error that came before the
    /// request reached Raft, so a write may be sent again (to another node).
    pub fn not_applied(&self) -> bool {
        match self {
            Self::NotLeader { .. } => true,
            Self::Timeout(_) | Self::Unavailable(_) | Self::Internal(_) => false,
            _ => true,
        }
    }

    /// The typed error a gRPC status carries: from its `isthmus-error-bin` trailer, or,
    /// from a server that sends none, from its code and message.
    pub fn from_status(status: &tonic::Status) -> Self {
        if let Some(value) = status.metadata().get_bin(ERROR_TRAILER)
            && let Ok(bytes) = value.to_bytes()
            && let Ok(error) = serde_json::from_slice::<ApiError>(&bytes)
        {
            return error;
        }
        let message = status.message().to_owned();
        match status.code() {
            tonic::Code::InvalidArgument => Self::invalid("request", message),
            tonic::Code::NotFound => Self::NotFound(message),
            tonic::Code::AlreadyExists => Self::AlreadyExists(message),
            tonic::Code::FailedPrecondition | tonic::Code::Aborted => {
                Self::FailedPrecondition(message)
            }
            tonic::Code::DeadlineExceeded => Self::Timeout(message),
            tonic::Code::ResourceExhausted => Self::TooLarge(message),
            tonic::Code::Unauthenticated => Self::Unauthenticated(message),
            tonic::Code::PermissionDenied => Self::PermissionDenied(message),
            tonic::Code::Unavailable => Self::Unavailable(message),
            _ => Self::Internal(message),
        }
    }

    /// The gRPC status of this error.
    pub fn grpc_code(&self) -> tonic::Code {
        match self {
            Self::InvalidArgument { .. } => tonic::Code::InvalidArgument,
            Self::Admission { .. } => tonic::Code::FailedPrecondition,
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
            Self::AlreadyExists(_) | Self::FailedPrecondition(_) | Self::Admission { .. } => 409,
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
            Self::Admission { .. } => "admission",
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

impl From<ApiError> for tonic::Status {
    fn from(err: ApiError) -> Self {
        let mut status = tonic::Status::new(err.grpc_code(), err.to_string());
        if let Ok(json) = serde_json::to_vec(&err) {
            status.metadata_mut().insert_bin(
                ERROR_TRAILER,
                tonic::metadata::MetadataValue::from_bytes(&json),
            );
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_carries_the_typed_error_back() {
        let errors = [
            ApiError::invalid("export.ports[0].port", "0 is not a port"),
            ApiError::admission("body.rules[0].from[0].cluster", "unknown cluster"),
            ApiError::NotLeader {
                leader: Some(Box::new((
                    2,
                    NodeInfo {
                        name: "n2".into(),
                        admin_addr: "127.0.0.1:2".into(),
                        ..NodeInfo::default()
                    },
                ))),
            },
            ApiError::Timeout("slow".into()),
        ];
        for error in errors {
            let status = tonic::Status::from(error.clone());
            assert_eq!(status.code(), error.grpc_code());
            assert_eq!(ApiError::from_status(&status), error);
        }
        let foreign = tonic::Status::unavailable("connection refused");
        assert_eq!(
            ApiError::from_status(&foreign),
            ApiError::Unavailable("connection refused".into())
        );
    }
}
