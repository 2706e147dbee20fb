//! Limits enforced by the switch and its API, with one typed error per limit.

/// Size limits. The defaults are sane for a production switch; every one is configurable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest port name in bytes (default 256).
    pub max_port_name_len: usize,
    /// Most ports in one RegPort / UnRegPort / QueryPort request (default 10,000).
    pub max_ports_per_request: usize,
    /// Most ports one node may hold across all shards (default 1,000,000).
    pub max_ports_per_node: usize,
    /// Largest message body in bytes (default 64 KiB).
    pub max_body_len: usize,
    /// Most bytes queued for one node before it is disconnected as a slow consumer (default 8 MiB).
    pub max_queued_bytes: usize,
    /// Most messages (counting every target port) in one SendMsg request (default 10,000).
    pub max_messages_per_request: usize,
    /// Most node ids in one QueryNode request (default 10,000).
    pub max_nodes_per_request: usize,
    /// Longest node id in bytes (default 256).
    pub max_node_id_len: usize,
    /// Longest node address in bytes (default 256).
    pub max_address_len: usize,
    /// Events each switch instance keeps for watches to resume from (default 100,000; 0
    /// keeps none, so every resumption is told it missed what happened meanwhile).
    pub watch_history: usize,
    /// Most watches one node may have (default 1,000).
    pub max_watches_per_node: usize,
    /// Most node-less watchers (`/v1/watch`) open at once over the whole switch (default
    /// 10,000; beyond it 503).
    pub max_watchers: usize,
    /// Most node-less watchers open at once with one token (default 1,000; beyond it 429).
    pub max_watchers_per_token: usize,
    /// Most entries in one page of a listing (default 1,000; a larger `limit` is cut to it).
    pub max_page: usize,
    /// How long an acknowledged SendMsg waits for its receivers' acknowledgements before it
    /// counts the rest as unacknowledged, ms (default 10,000).
    pub ack_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_port_name_len: 256,
            max_ports_per_request: 10_000,
            max_ports_per_node: 1_000_000,
            max_body_len: 64 * 1024,
            max_queued_bytes: 8 * 1024 * 1024,
            max_messages_per_request: 10_000,
            max_nodes_per_request: 10_000,
            max_node_id_len: 256,
            max_address_len: 256,
            watch_history: 100_000,
            max_watches_per_node: 1_000,
            max_watchers: 10_000,
            max_watchers_per_token: 1_000,
            max_page: 1_000,
            ack_timeout_ms: 10_000,
        }
    }
}

/// A limit was exceeded. The message names the limit and its value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// A port name is too long.
    #[error("port name is {len} bytes, the limit is {limit} bytes")]
    PortNameTooLong {
        /// Actual length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Too many ports in one request.
    #[error("request has {count} ports, the limit is {limit} ports per request")]
    TooManyPortsInRequest {
        /// Ports in the request.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// The node would hold too many ports.
    #[error("node would hold {count} ports, the limit is {limit} ports per node")]
    TooManyPortsForNode {
        /// Ports the node would hold.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A message body is too large.
    #[error("message body is {len} bytes, the limit is {limit} bytes")]
    BodyTooLarge {
        /// Actual size.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A node's outbound queue is full (slow consumer).
    #[error("queued bytes for the node would reach {queued}, the limit is {limit} bytes")]
    QueueFull {
        /// Bytes that would be queued.
        queued: usize,
        /// The limit.
        limit: usize,
    },
    /// Too many messages in one request.
    #[error("request has {count} messages, the limit is {limit} messages per request")]
    TooManyMessagesInRequest {
        /// Messages in the request.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// Too many nodes in one request.
    #[error("request has {count} nodes, the limit is {limit} nodes per request")]
    TooManyNodesInRequest {
        /// Nodes in the request.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A node id is too long.
    #[error("node id is {len} bytes, the limit is {limit} bytes")]
    NodeIdTooLong {
        /// Actual length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A node address is too long.
    #[error("node address is {len} bytes, the limit is {limit} bytes")]
    AddressTooLong {
        /// Actual length.
        len: usize,
        /// The limit.
        limit: usize,
    },
}

impl Limits {
    /// Check a port name's length.
    pub fn check_port_name(&self, name: &str) -> Result<(), LimitError> {
        self.check_port_name_len(name.len())
    }

    /// [`Limits::check_port_name`] of a name of `len` bytes.
    #[inline]
    pub fn check_port_name_len(&self, len: usize) -> Result<(), LimitError> {
        if len > self.max_port_name_len {
            return Err(LimitError::PortNameTooLong {
                len,
                limit: self.max_port_name_len,
            });
        }
        Ok(())
    }

    /// Check the number of ports in a request.
    pub fn check_ports_in_request(&self, count: usize) -> Result<(), LimitError> {
        if count > self.max_ports_per_request {
            return Err(LimitError::TooManyPortsInRequest {
                count,
                limit: self.max_ports_per_request,
            });
        }
        Ok(())
    }

    /// Check the number of messages in a request.
    pub fn check_messages_in_request(&self, count: usize) -> Result<(), LimitError> {
        if count > self.max_messages_per_request {
            return Err(LimitError::TooManyMessagesInRequest {
                count,
                limit: self.max_messages_per_request,
            });
        }
        Ok(())
    }

    /// Check the number of nodes in a request.
    pub fn check_nodes_in_request(&self, count: usize) -> Result<(), LimitError> {
        if count > self.max_nodes_per_request {
            return Err(LimitError::TooManyNodesInRequest {
                count,
                limit: self.max_nodes_per_request,
            });
        }
        Ok(())
    }

    /// Check a message body's size.
    pub fn check_body(&self, body: &str) -> Result<(), LimitError> {
        if body.len() > self.max_body_len {
            return Err(LimitError::BodyTooLarge {
                len: body.len(),
                limit: self.max_body_len,
            });
        }
        Ok(())
    }

    /// Check a node id's length.
    pub fn check_node_id(&self, id: &str) -> Result<(), LimitError> {
        if id.len() > self.max_node_id_len {
            return Err(LimitError::NodeIdTooLong {
                len: id.len(),
                limit: self.max_node_id_len,
            });
        }
        Ok(())
    }

    /// Check a node address's length.
    pub fn check_address(&self, address: &str) -> Result<(), LimitError> {
        if address.len() > self.max_address_len {
            return Err(LimitError::AddressTooLong {
                len: address.len(),
                limit: self.max_address_len,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_limit() {
        let l = Limits::default();
        let e = l.check_port_name(&"x".repeat(257)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "port name is 257 bytes, the limit is 256 bytes"
        );
        assert!(l.check_port_name(&"x".repeat(256)).is_ok());
        let e = l.check_body(&"x".repeat(65537)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "message body is 65537 bytes, the limit is 65536 bytes"
        );
        assert!(l.check_body(&"x".repeat(65536)).is_ok());
        assert!(l.check_ports_in_request(10_000).is_ok());
        assert_eq!(
            l.check_ports_in_request(10_001).unwrap_err().to_string(),
            "request has 10001 ports, the limit is 10000 ports per request"
        );
    }
}
