//! API calls parsed into owned [`Call`]s (a cluster instance keeps a call across mesh round
//! trips), and the reply bodies of completed calls ([`response`]).

use std::borrow::Cow;
use std::sync::Arc;

use crate::api::{self, ApiError, ResponseBody};
use crate::auth::Grant;
use crate::batch::{PortNames, SendBatch};
use crate::listing::PageRequest;
use crate::request::{self, Parsed, Request, Str};
use crate::switch::{Reply, SwitchError};
use crate::watch::WatchRequest;

/// The refusal of a SendMsg with a message that names neither or both of `port` and `ports`.
const NEEDS_ONE_TARGET_LIST: &str = "each message needs exactly one of \"port\" or \"ports\"";

/// An API call, parsed, for the node a request acts for.
#[derive(Debug)]
pub enum Call {
    /// RegPort.
    RegPort {
        /// Node.
        node: String,
        /// Ports.
        ports: PortNames,
        /// Subscribe to failed ports' release.
        subscribe: bool,
        /// Compare-and-register: only where the owner is this (`Some(None)`: nobody).
        if_owner: Option<Option<String>>,
    },
    /// UnRegPort.
    UnRegPort {
        /// Node.
        node: String,
        /// Ports.
        ports: Vec<String>,
    },
    /// SendMsg.
    SendMsg {
        /// The batch.
        batch: SendBatch,
        /// Reply once the receivers acknowledged.
        ack: bool,
    },
    /// QueryPort.
    QueryPort(Vec<String>),
    /// QueryNode.
    QueryNode(Vec<String>),
    /// Relet.
    Relet {
        /// Node.
        node: String,
    },
    /// Watch.
    Watch {
        /// Node.
        node: String,
        /// The watch.
        request: WatchRequest,
    },
    /// Unwatch.
    Unwatch {
        /// Node.
        node: String,
        /// The watch.
        watch: u64,
    },
    /// Ports by prefix.
    ListPorts(PageRequest),
    /// Online nodes.
    ListNodes(PageRequest),
    /// A node's ports.
    NodePorts {
        /// Whose.
        node: String,
        /// The page (`after`, `limit`).
        page: PageRequest,
    },
    /// Handover.
    Handover {
        /// The giver.
        node: String,
        /// The receiver.
        to: String,
        /// The ports.
        ports: Vec<String>,
    },
    /// Ack.
    Ack {
        /// Node.
        node: String,
        /// Up to this push number.
        upto: u64,
    },
}

/// What is needed to build the reply body once a call completes.
#[derive(Debug)]
pub enum Shape {
    /// RegPort of these ports (shared with the instance, which keeps them to roll back).
    RegPort(Arc<PortNames>),
    /// UnRegPort of these ports.
    UnRegPort(Vec<String>),
    /// SendMsg.
    SendMsg,
    /// QueryPort of these ports.
    QueryPort(Vec<String>),
    /// QueryNode of these nodes.
    QueryNode(Vec<String>),
    /// `GET /v1/metrics`: the counters of every instance.
    Metrics,
    /// Watch.
    Watch,
    /// A listing.
    Listing,
    /// Handover of these ports.
    Handover(Vec<String>),
}

impl Call {
    /// The call of a parsed request for `node` (the acting node of node-scoped calls).
    pub fn from_request(node: &str, req: Request<'_>) -> Result<Call, ApiError> {
        let owned =
            |v: Vec<Str<'_>>| -> Vec<String> { v.into_iter().map(Cow::into_owned).collect() };
        Ok(match req {
            Request::RegPort {
                ports,
                subscribe,
                if_owner,
            } => Call::RegPort {
                node: node.to_string(),
                ports: {
                    let bytes = ports.iter().map(|p| p.len()).sum();
                    let mut names = PortNames::with_capacity(ports.len(), bytes);
                    for p in &ports {
                        names.push(p);
                    }
                    names
                },
                subscribe,
                if_owner: if_owner.map(|o| o.map(Cow::into_owned)),
            },
            Request::RegNames {
                ports,
                subscribe,
                if_owner,
            } => Call::RegPort {
                node: node.to_string(),
                ports,
                subscribe,
                if_owner: if_owner.map(|o| o.map(Cow::into_owned)),
            },
            Request::UnRegPort { ports } => Call::UnRegPort {
                node: node.to_string(),
                ports: owned(ports),
            },
            Request::SendMsg { messages, ack } => {
                let mut batch = SendBatch::with_capacity(messages.len());
                for m in &messages {
                    let Some(targets) = m.targets() else {
                        return Err(ApiError::BadRequest(NEEDS_ONE_TARGET_LIST.into()));
                    };
                    match targets {
                        [one] => batch.push_one(one, &m.body, m.escaping),
                        _ => batch.push_as(targets.iter().map(|t| t.as_ref()), &m.body, m.escaping),
                    }
                }
                Call::SendMsg { batch, ack }
            }
            Request::SendBatch {
                batch,
                targeted,
                ack,
            } => {
                if !targeted {
                    return Err(ApiError::BadRequest(NEEDS_ONE_TARGET_LIST.into()));
                }
                Call::SendMsg { batch, ack }
            }
            Request::QueryPort { ports } => Call::QueryPort(owned(ports)),
            Request::QueryNode { nodes } => Call::QueryNode(owned(nodes)),
            Request::Relet => Call::Relet {
                node: node.to_string(),
            },
            Request::Watch(spec) => Call::Watch {
                node: node.to_string(),
                request: api::watch_request(&spec),
            },
            Request::Unwatch { watch } => Call::Unwatch {
                node: node.to_string(),
                watch,
            },
            Request::ListPorts(page) => Call::ListPorts(api::page_request(&page)),
            Request::ListNodes(page) => Call::ListNodes(api::page_request(&page)),
            Request::NodePorts { node: of, page } => Call::NodePorts {
                node: of.into_owned(),
                page: api::page_request(&page),
            },
            Request::Handover { to, ports } => Call::Handover {
                node: node.to_string(),
                to: to.into_owned(),
                ports: owned(ports),
            },
            Request::Ack { upto } => Call::Ack {
                node: node.to_string(),
                upto,
            },
        })
    }

    /// The call of a parsed request and the session it names, if `grant` allows it.
    pub fn from_parsed(
        node: &str,
        parsed: Parsed<'_>,
        grant: &dyn Grant,
    ) -> Result<(Call, Option<u64>), ApiError> {
        authorize(node, &parsed.request, grant)?;
        let session = parsed.session;
        Ok((Call::from_request(node, parsed.request)?, session))
    }

    /// The call of a REST request.
    pub fn from_rest(
        route: &api::Route,
        body: &[u8],
        grant: &dyn Grant,
    ) -> Result<(Call, Option<u64>), ApiError> {
        let node = route.node().unwrap_or_default();
        Call::from_parsed(node, api::parse_rest(route, body)?, grant)
    }

    /// The call of a WebSocket request from `node`'s receiving connection, with its id (a
    /// SendMsg's messages read straight into its owned batch).
    pub fn from_ws(
        node: &str,
        text: &str,
        grant: &dyn Grant,
    ) -> (u64, Result<(Call, Option<u64>), ApiError>) {
        match request::parse_ws_owned(text) {
            Err(e) => (request::ws_id(text), Err(ApiError::BadJson(e.to_string()))),
            Ok((id, parsed)) => (
                id,
                Call::from_parsed(node, api::with_watch_id(id, parsed), grant),
            ),
        }
    }
}

/// Refuses a compare-and-register that would take ports from a node the caller's credentials
/// may not act for (handing ports over needs the giver's authority).
pub fn authorize(node: &str, request: &Request<'_>, grant: &dyn Grant) -> Result<(), ApiError> {
    if let Request::RegPort {
        if_owner: Some(Some(owner)),
        ..
    }
    | Request::RegNames {
        if_owner: Some(Some(owner)),
        ..
    } = request
    {
        if owner != node && !grant.may_act_for(owner) {
            return Err(ApiError::Forbidden(format!(
                "compare-and-register from node {owner:?} takes its ports: it needs a token that may act for {owner:?} too"
            )));
        }
    }
    Ok(())
}

/// The reply body of a completed call of shape `shape`.
pub fn response(shape: Shape, reply: Result<Reply, SwitchError>) -> Result<ResponseBody, ApiError> {
    let reply = reply?;
    Ok(match (shape, reply) {
        (Shape::RegPort(ports), Reply::RegPort(r)) => api::reg_port_response(&*ports, r),
        (Shape::UnRegPort(ports), Reply::UnRegPort(r)) => api::unreg_port_response(&ports, r),
        (Shape::SendMsg, Reply::SendMsg(r)) => api::send_msg_response(r),
        (Shape::SendMsg, Reply::SendAcked(r, a)) => api::send_acked_response(r, a),
        (Shape::QueryPort(ports), Reply::QueryPort(r)) => api::query_port_response(&ports, r),
        (Shape::QueryNode(nodes), Reply::QueryNode(r)) => api::query_node_response(&nodes, r),
        (Shape::Watch, Reply::Watch(w)) => api::watch_response(w),
        (Shape::Listing, Reply::ListPorts(l)) => api::list_ports_response(l),
        (Shape::Listing, Reply::ListNodes(l)) => api::list_nodes_response(l),
        (Shape::Listing, Reply::NodePorts(l)) => api::node_ports_response(l),
        (Shape::Handover(ports), Reply::Handover(h)) => api::handover_response(&ports, h),
        (shape, reply) => {
            tracing::error!(?shape, ?reply, "switch reply does not match its call");
            return Err(ApiError::BadRequest(
                "internal error: mismatched reply".into(),
            ));
        }
    })
}
