//! [`ApiError`]: what the API answers a request it cannot run, with its HTTP status and code.

use serde::{Deserialize, Serialize};

use crate::limits::LimitError;
use crate::switch::SwitchError;

/// API errors.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The body is not the JSON the route expects.
    #[error("invalid request body: {0}")]
    BadJson(String),
    /// The request is well-formed JSON but not a valid request.
    #[error("{0}")]
    BadRequest(String),
    /// No such route.
    #[error("no route for {0}")]
    NotFound(String),
    /// The route exists with other methods.
    #[error("method {method} not allowed for {path}")]
    MethodNotAllowed {
        /// The method.
        method: String,
        /// The path.
        path: String,
    },
    /// The credentials may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The switch refused.
    #[error(transparent)]
    Switch(#[from] SwitchError),
}

impl From<LimitError> for ApiError {
    fn from(e: LimitError) -> Self {
        ApiError::Switch(SwitchError::Limit(e))
    }
}

impl ApiError {
    /// HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadJson(_) | ApiError::BadRequest(_) => 400,
            ApiError::NotFound(_) => 404,
            ApiError::MethodNotAllowed { .. } => 405,
            ApiError::Forbidden(_) => 403,
            ApiError::Switch(e) => match e {
                SwitchError::Limit(LimitError::TooManyPortsForNode { .. }) => 409,
                SwitchError::Limit(LimitError::QueueFull { .. }) => 503,
                SwitchError::Limit(_) => 413,
                SwitchError::NotOnline(_)
                | SwitchError::ConnectionInUse { .. }
                | SwitchError::WatcherGone => 409,
                SwitchError::EmptyPortName | SwitchError::EmptyNodeId => 400,
                SwitchError::ShardFull => 507,
                SwitchError::Misdirected { .. } => 421,
                SwitchError::Watch(crate::switch::WatchError::Unknown(_)) => 404,
                SwitchError::Watch(_) | SwitchError::SessionReplaced { .. } => 409,
                SwitchError::BadCursor(_) | SwitchError::Invalid(_) => 400,
            },
        }
    }

    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadJson(_) => "bad_json",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Switch(e) => match e {
                SwitchError::Limit(_) => "limit_exceeded",
                SwitchError::NotOnline(_) => "node_not_online",
                SwitchError::WatcherGone => "watcher_gone",
                SwitchError::ConnectionInUse { .. } => "connection_in_use",
                SwitchError::EmptyPortName => "empty_port",
                SwitchError::EmptyNodeId => "empty_node",
                SwitchError::ShardFull => "shard_full",
                SwitchError::Misdirected { .. } => "misdirected",
                SwitchError::Watch(crate::switch::WatchError::Exists(_)) => "watch_exists",
                SwitchError::Watch(crate::switch::WatchError::TooMany { .. }) => "limit_exceeded",
                SwitchError::Watch(crate::switch::WatchError::Unknown(_)) => "unknown_watch",
                SwitchError::BadCursor(_) => "bad_cursor",
                SwitchError::Invalid(_) => "bad_request",
                SwitchError::SessionReplaced { .. } => "session_replaced",
            },
        }
    }

    /// The error as a reply body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code().to_string(),
                message: self.to_string(),
            },
        }
    }
}

/// Error details.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable machine-readable code.
    pub code: String,
    /// Human-readable message naming what was wrong (and the limit, for limits).
    pub message: String,
}

/// Error reply body: `{"error":{"code":…,"message":…}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}
