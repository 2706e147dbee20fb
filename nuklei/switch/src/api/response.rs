//! Reply bodies from the switch's replies: what each call answers, by REST and WebSocket
//! alike (both engines and the cluster encode through these).

use super::body::*;
use crate::switch::{NodeInfo, PortOwner, RegPortReply, SendReport, UnRegPortReply};

/// The RegPort reply body for the request's `ports`.
pub fn reg_port_response<P>(ports: &P, reply: RegPortReply) -> ResponseBody
where
    P: std::ops::Index<usize> + ?Sized,
    P::Output: AsRef<str>,
{
    ResponseBody::RegPort(RegPortResponse {
        registered: reply.registered,
        failed: reply
            .failed
            .into_iter()
            .map(|f| FailedPortBody {
                port: ports[f.index].as_ref().to_string(),
                owner: announced(&f.owner),
                address: announced(&f.address),
            })
            .collect(),
    })
}

/// The UnRegPort reply body for the request's `ports`.
pub fn unreg_port_response<S: AsRef<str>>(ports: &[S], reply: UnRegPortReply) -> ResponseBody {
    let take = |v: Vec<usize>| -> Vec<String> {
        v.into_iter()
            .map(|i| ports[i].as_ref().to_string())
            .collect()
    };
    ResponseBody::UnRegPort(UnRegPortResponse {
        released: take(reply.released),
        not_owned: take(reply.not_owned),
        unknown: take(reply.unknown),
    })
}

/// The SendMsg reply body.
pub fn send_msg_response(report: SendReport) -> ResponseBody {
    ResponseBody::SendMsg(SendMsgResponse {
        delivered: report.delivered,
        dropped: report.dropped,
        ..SendMsgResponse::default()
    })
}

/// The reply body of an acknowledged SendMsg.
pub fn send_acked_response(report: SendReport, acks: crate::ack::AckReport) -> ResponseBody {
    ResponseBody::SendMsg(SendMsgResponse {
        delivered: report.delivered,
        dropped: report.dropped,
        acknowledged: Some(acks.acknowledged),
        unacknowledged: Some(acks.unacknowledged),
    })
}

/// The QueryPort reply body for the request's `ports`.
pub fn query_port_response<S: AsRef<str>>(
    ports: &[S],
    owners: Vec<Option<PortOwner>>,
) -> ResponseBody {
    ResponseBody::QueryPort(QueryPortResponse {
        ports: ports
            .iter()
            .zip(owners)
            .map(|(port, o)| PortInfoBody {
                port: port.as_ref().to_string(),
                owner: o.as_ref().map(|o| o.node.to_string()),
                address: o.as_ref().and_then(|o| announced(&o.address)),
            })
            .collect(),
    })
}

/// The QueryNode reply body for the request's `nodes`.
pub fn query_node_response<S: AsRef<str>>(
    nodes: &[S],
    infos: Vec<Option<NodeInfo>>,
) -> ResponseBody {
    ResponseBody::QueryNode(QueryNodeResponse {
        nodes: nodes
            .iter()
            .zip(infos)
            .map(|(node, info)| NodeInfoBody {
                node: node.as_ref().to_string(),
                online: info.is_some(),
                address: info.as_ref().and_then(|i| announced(&i.address)),
                ports: info.as_ref().map_or(0, |i| i.ports),
            })
            .collect(),
    })
}

/// A node's address as the API reports it: `None` (JSON `null`) when the node announced
/// none.
pub fn announced(address: &str) -> Option<String> {
    (!address.is_empty()).then(|| address.to_string())
}

/// The Relet reply body.
pub fn relet_response(lease_deadline: u64, lease_ms: u64) -> ResponseBody {
    ResponseBody::Relet(ReletResponse {
        lease_deadline,
        lease_ms,
    })
}
