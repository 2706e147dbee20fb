//! The API's JSON bodies (serde): requests as clients write them, replies as the switch
//! writes them. The switch reads requests with the borrowing parser of [`crate::request`];
//! these types describe them (and serve tests and clients).

use serde::{Deserialize, Serialize};

use super::error::{ApiError, ErrorBody};

/// `POST /v1/nodes/{node}/ports` and op `regport`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegPortRequest {
    /// Ports to register.
    pub ports: Vec<String>,
    /// Subscribe to release notifications of the ports that fail.
    #[serde(default)]
    pub subscribe: bool,
}

/// A port that failed to register, with its owner.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedPortBody {
    /// The port.
    pub port: String,
    /// The owner node id (`null`: a compare-and-register found the port free).
    pub owner: Option<String>,
    /// The owner's address (`null` if it announced none).
    pub address: Option<String>,
}

/// Reply to RegPort.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegPortResponse {
    /// Ports newly registered.
    pub registered: usize,
    /// Ports owned by another node.
    pub failed: Vec<FailedPortBody>,
}

/// A list of ports: `DELETE /v1/nodes/{node}/ports`, `POST /v1/ports/query`, ops `unregport`
/// and `queryport`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortsRequest {
    /// The ports.
    pub ports: Vec<String>,
}

/// Reply to UnRegPort.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnRegPortResponse {
    /// Released.
    pub released: Vec<String>,
    /// Owned by another node; left alone.
    pub not_owned: Vec<String>,
    /// Not registered.
    pub unknown: Vec<String>,
}

/// One message of SendMsg: `port` (unicast, `""` = broadcast) or `ports` (multicast).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageBody {
    /// Single target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// Several targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<String>>,
    /// Opaque body.
    pub body: String,
}

impl MessageBody {
    /// The targets: `ports` if given, else `[port]`.
    pub fn targets(&self) -> Result<&[String], ApiError> {
        match (&self.port, &self.ports) {
            (None, Some(ports)) => Ok(ports),
            (Some(port), None) => Ok(std::slice::from_ref(port)),
            _ => Err(ApiError::BadRequest(
                "each message needs exactly one of \"port\" or \"ports\"".into(),
            )),
        }
    }
}

/// `POST /v1/messages` and op `sendmsg`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendMsgRequest {
    /// The batch, delivered in this order.
    pub messages: Vec<MessageBody>,
}

/// Reply to SendMsg.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendMsgResponse {
    /// Pushes queued.
    pub delivered: u64,
    /// Targets dropped (unknown port or owner gone).
    pub dropped: u64,
    /// With `"ack": true`: pushes the receivers acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged: Option<u64>,
    /// With `"ack": true`: pushes not acknowledged (receiver offline, or no acknowledgement
    /// within a lease).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unacknowledged: Option<u64>,
}

/// One port of a QueryPort reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortInfoBody {
    /// The port.
    pub port: String,
    /// Owner node id, `null` if unregistered.
    pub owner: Option<String>,
    /// Owner address, `null` if unregistered or the owner announced none.
    pub address: Option<String>,
}

/// Reply to QueryPort.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryPortResponse {
    /// In request order.
    pub ports: Vec<PortInfoBody>,
}

/// `POST /v1/nodes/query` and op `querynode`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryNodeRequest {
    /// Node ids.
    pub nodes: Vec<String>,
}

/// One node of a QueryNode reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfoBody {
    /// Node id.
    pub node: String,
    /// Has a receiving connection.
    pub online: bool,
    /// Announced address (`null` when offline or none was announced).
    pub address: Option<String>,
    /// Ports held.
    pub ports: usize,
}

/// Reply to QueryNode.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryNodeResponse {
    /// In request order.
    pub nodes: Vec<NodeInfoBody>,
}

/// Reply to Relet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReletResponse {
    /// New lease deadline (ms, switch clock).
    pub lease_deadline: u64,
    /// Lease duration (ms).
    pub lease_ms: u64,
}

/// Any reply body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ResponseBody {
    /// RegPort.
    RegPort(RegPortResponse),
    /// UnRegPort.
    UnRegPort(UnRegPortResponse),
    /// SendMsg.
    SendMsg(SendMsgResponse),
    /// QueryPort.
    QueryPort(QueryPortResponse),
    /// QueryNode.
    QueryNode(QueryNodeResponse),
    /// Relet.
    Relet(ReletResponse),
    /// Watch.
    Watch(WatchResponse),
    /// Unwatch.
    Unwatch(UnwatchResponse),
    /// A page of ports.
    ListPorts(ListPortsResponse),
    /// A page of nodes.
    ListNodes(ListNodesResponse),
    /// A page of a node's ports.
    NodePorts(NodePortsResponse),
    /// Handover.
    Handover(HandoverResponse),
    /// Ack.
    Ack(AckResponse),
    /// Error.
    Error(ErrorBody),
}

/// A WebSocket request: `{"op":"regport","id":1,...}` (the client's view; the switch parses
/// with [`request::parse_ws`], which accepts the same shapes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum WsRequest {
    /// Register ports.
    Regport {
        /// Request id, echoed.
        id: u64,
        /// Body.
        #[serde(flatten)]
        body: RegPortRequest,
    },
    /// Release ports.
    Unregport {
        /// Request id, echoed.
        id: u64,
        /// Body.
        #[serde(flatten)]
        body: PortsRequest,
    },
    /// Send messages.
    Sendmsg {
        /// Request id, echoed.
        id: u64,
        /// Body.
        #[serde(flatten)]
        body: SendMsgRequest,
    },
    /// Query ports.
    Queryport {
        /// Request id, echoed.
        id: u64,
        /// Body.
        #[serde(flatten)]
        body: PortsRequest,
    },
    /// Query nodes.
    Querynode {
        /// Request id, echoed.
        id: u64,
        /// Body.
        #[serde(flatten)]
        body: QueryNodeRequest,
    },
    /// Heartbeat.
    Relet {
        /// Request id, echoed.
        id: u64,
    },
}

/// A WebSocket reply: `{"id":1, ...reply fields}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WsReply {
    /// The request id (0 if the request could not be parsed).
    pub id: u64,
    /// The reply.
    #[serde(flatten)]
    pub body: ResponseBody,
}

// The coordination calls' bodies (issue 15).

/// Reply to a watch: its id and where it stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchResponse {
    /// The watch's id (events carry it).
    pub watch: u64,
    /// Per switch instance, the sequence after which the watch's events follow.
    pub cursor: Vec<u64>,
}

/// Reply to an unwatch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnwatchResponse {
    /// The watch ended.
    pub unwatched: u64,
}

/// A port of a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedPortBody {
    /// The port.
    pub port: String,
    /// Its owner.
    pub owner: String,
    /// The owner's address, `null` if it announced none.
    pub address: Option<String>,
}

/// A page of ports by prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListPortsResponse {
    /// In name order.
    pub ports: Vec<ListedPortBody>,
    /// Pass as `after` for the next page; `null` after the last.
    pub next: Option<String>,
}

/// An online node of a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedNodeBody {
    /// Node id.
    pub node: String,
    /// Its address, `null` if it announced none.
    pub address: Option<String>,
    /// Ports it holds.
    pub ports: usize,
}

/// A page of online nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListNodesResponse {
    /// In id order.
    pub nodes: Vec<ListedNodeBody>,
    /// Pass as `after` for the next page; `null` after the last.
    pub next: Option<String>,
}

/// A page of a node's ports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePortsResponse {
    /// The ports.
    pub ports: Vec<String>,
    /// Pass as `after` for the next page; `null` after the last.
    pub next: Option<String>,
    /// The cursor's port had left the node: part of the listing started again (ports may
    /// repeat).
    pub restarted: bool,
}

/// Reply to a handover.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverResponse {
    /// Moved to the receiver.
    pub moved: Vec<String>,
    /// Not the giver's: left alone.
    pub not_owned: Vec<String>,
    /// Not registered.
    pub unknown: Vec<String>,
}

/// Reply to an ack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckResponse {
    /// Pushes this acknowledged.
    pub acknowledged: u64,
}
