//! Errors of the client. Each variant's `Display` text says what went wrong and what to do
//! about it.

use std::time::Duration;

/// What the switch (or the connection to it) refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// 401: the bearer token is missing or unknown to the switch.
    #[error(
        "unauthorized: {message}: pass a token declared in the topology's [[switch.token]] tables"
    )]
    Unauthorized {
        /// The switch's reason.
        message: String,
    },
    /// 403: the token may not act for this node.
    #[error("forbidden: {message}: use a token whose `nodes` list names this node id")]
    Forbidden {
        /// The switch's reason.
        message: String,
    },
    /// 400: the switch could not read a request (bad JSON, empty port name, bad node id).
    #[error("bad request ({code}): {message}: fix the request; the message names the field")]
    BadRequest {
        /// The switch's stable code.
        code: String,
        /// The switch's reason.
        message: String,
    },
    /// 409/413: a limit was exceeded (port name length, ports or messages per request, body
    /// size, ports per node). The whole request was rejected without change.
    #[error("limit exceeded: {message}: send less (Options::max_batch_* split batches) or raise the limit in the topology's [switch.limits]")]
    LimitExceeded {
        /// The switch's reason, naming the limit.
        message: String,
    },
    /// 429: the switch asked the client to slow down.
    #[error("rate limited: {message}: retry later")]
    RateLimited {
        /// The switch's reason.
        message: String,
    },
    /// 507: the port table is full.
    #[error(
        "port table full: {message}: release ports or give the switch more memory or instances"
    )]
    TableFull {
        /// The switch's reason.
        message: String,
    },
    /// 503: no member can serve now (an election is running, or the switch is busy).
    #[error("switch unavailable: {message}: the client retries by itself (after {retry_after:?})")]
    Unavailable {
        /// The switch's reason.
        message: String,
        /// The delay the switch asked for (`Retry-After`), if any.
        retry_after: Option<Duration>,
    },
    /// The member reached is not the master and named none to follow, or redirects looped.
    #[error("not master: {message}: list every member in the client's URLs")]
    NotMaster {
        /// What happened.
        message: String,
    },
    /// No member in the URL list could be reached.
    #[error("cannot connect: {message}: check the URLs and that the reaktor runs")]
    ConnectFailed {
        /// The last failure.
        message: String,
    },
    /// The call was in flight when the connection was lost: whether the switch ran it is
    /// unknown. Held registrations are restored by the client; a message may or may not have
    /// been delivered (the client never resends, so never twice).
    #[error("connection lost: {message}: retry the call if it is safe to repeat; registrations are restored by the client")]
    ConnectionLost {
        /// What happened.
        message: String,
    },
    /// 4000: another receiving connection for this node id replaced this one. The client
    /// does not reconnect (two processes would take turns forever).
    #[error("replaced: {message}: run one process per node id; this client is closed")]
    Replaced {
        /// The switch's reason.
        message: String,
    },
    /// 4001: the lease ran out before a renewal arrived; the node's ports were released. The
    /// client reconnects and restores them.
    #[error(
        "lease expired: {message}: keep the runtime responsive or raise lease_ms in the topology"
    )]
    LeaseExpired {
        /// The switch's reason.
        message: String,
    },
    /// 4002 (or the client's own event buffer staying full): pushes were not read fast
    /// enough; queued pushes were dropped and the ports released. The client reconnects and
    /// restores the ports; the pushes queued at the time are lost.
    #[error("slow consumer: {message}: read events faster or raise Options::max_buffered_events or the switch's max_queued_bytes")]
    SlowConsumer {
        /// What happened.
        message: String,
    },
    /// 4004: the token this client connected with was removed from the switch's topology
    /// (or no longer grants the node) and the switch reloaded its tokens. The client does not
    /// reconnect with it.
    #[error(
        "token revoked: {message}: connect with a token the switch's topology grants this node"
    )]
    TokenRevoked {
        /// The switch's reason.
        message: String,
    },
    /// 4003: the cluster member the client was connected to lost its master lease and
    /// dropped its port table. The client reconnects to the new master (following redirects)
    /// and registers its ports again; their fencing tokens change.
    #[error("master lost: {message}: the client follows the master by itself")]
    MasterLost {
        /// The switch's reason (names the master if the member knew it).
        message: String,
    },
    /// 1009: a request was larger than the switch's WebSocket message limit.
    #[error("message too big: {message}: lower Options::max_batch_bytes below the switch's ws max_message_size")]
    MessageTooBig {
        /// The switch's reason.
        message: String,
    },
    /// No reply within the call timeout.
    #[error("timed out after {0:?} waiting for a reply: raise Options::call_timeout or check the switch")]
    Timeout(Duration),
    /// The client was closed (by the application or after a terminal error).
    #[error("the client is closed: open a new one")]
    Closed,
    /// Any other refusal by the switch.
    #[error("switch error ({code}): {message}")]
    Other {
        /// The switch's stable code, or the HTTP status.
        code: String,
        /// The switch's reason.
        message: String,
    },
}

impl Error {
    /// The error of a reply `{"error":{"code":…,"message":…}}`.
    pub fn from_reply(code: &str, message: &str) -> Error {
        let message = message.to_string();
        match code {
            "unauthorized" => Error::Unauthorized { message },
            "forbidden" => Error::Forbidden { message },
            "bad_json" | "bad_request" | "empty_port" | "empty_node" | "not_found"
            | "method_not_allowed" | "bad_cursor" | "watch_exists" | "unknown_watch" => {
                Error::BadRequest {
                    code: code.to_string(),
                    message,
                }
            }
            "session_replaced" => Error::Other {
                code: code.to_string(),
                message,
            },
            "limit_exceeded" => Error::LimitExceeded { message },
            "shard_full" => Error::TableFull { message },
            _ => Error::Other {
                code: code.to_string(),
                message,
            },
        }
    }

    /// The error of a refused WaitMsg handshake.
    pub fn from_status(status: u16, body: &str, retry_after: Option<Duration>) -> Error {
        let message = if body.trim().is_empty() {
            format!("HTTP {status}")
        } else {
            body.trim().to_string()
        };
        match status {
            400 => Error::BadRequest {
                code: "400".into(),
                message,
            },
            401 => Error::Unauthorized { message },
            403 => Error::Forbidden { message },
            409 | 413 => Error::LimitExceeded { message },
            429 => Error::RateLimited { message },
            503 => Error::Unavailable {
                message,
                retry_after,
            },
            507 => Error::TableFull { message },
            _ => Error::Other {
                code: status.to_string(),
                message,
            },
        }
    }

    /// The error of a connection closed with WebSocket `code` and `reason`.
    pub fn from_close(code: Option<u16>, reason: &str) -> Error {
        let message = if reason.is_empty() {
            format!(
                "closed with code {}",
                code.map_or("none".into(), |c| c.to_string())
            )
        } else {
            reason.to_string()
        };
        match code {
            Some(4000) => Error::Replaced { message },
            Some(4001) => Error::LeaseExpired { message },
            Some(4002) => Error::SlowConsumer { message },
            Some(4003) => Error::MasterLost { message },
            Some(4004) => Error::TokenRevoked { message },
            Some(1009) => Error::MessageTooBig { message },
            _ => Error::ConnectionLost { message },
        }
    }

    /// Whether reconnecting cannot help (bad credentials, a replaced node).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Error::Unauthorized { .. }
                | Error::Forbidden { .. }
                | Error::BadRequest { .. }
                | Error::Replaced { .. }
                | Error::TokenRevoked { .. }
                | Error::Closed
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_to_do() {
        let e = Error::from_reply("limit_exceeded", "port name longer than 64 bytes");
        assert!(matches!(e, Error::LimitExceeded { .. }));
        let text = e.to_string();
        assert!(
            text.contains("64 bytes") && text.contains("[switch.limits]"),
            "{text}"
        );
        assert!(Error::from_status(403, "token may not act for n2", None)
            .to_string()
            .contains("`nodes`"));
        assert_eq!(
            Error::from_status(503, "", Some(Duration::from_secs(2))),
            Error::Unavailable {
                message: "HTTP 503".into(),
                retry_after: Some(Duration::from_secs(2))
            }
        );
        assert!(Error::from_close(Some(4000), "replaced").is_terminal());
        assert!(!Error::from_close(Some(4001), "lease").is_terminal());
        let lost = Error::from_close(Some(4003), "not master: the master is member 2 at x");
        assert!(matches!(lost, Error::MasterLost { .. }) && !lost.is_terminal());
        let revoked = Error::from_close(Some(4004), "token revoked");
        assert!(matches!(revoked, Error::TokenRevoked { .. }) && revoked.is_terminal());
        assert!(matches!(
            Error::from_close(Some(4002), "slow"),
            Error::SlowConsumer { .. }
        ));
        assert!(matches!(
            Error::from_close(None, ""),
            Error::ConnectionLost { .. }
        ));
    }
}
