//! The switch's JSON on the receiving connection: requests out, replies and pushes in.
//! Unknown reply fields are ignored, so fields a newer switch adds do not break this client.
//! A cluster's master stamps every reply with `epoch` and `sequence` and starts every push
//! batch with `{"type":"epoch","epoch":E}`.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::types::Message;

/// The operations of the API (WebSocket `op`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// Register ports.
    RegPort,
    /// Release ports.
    UnRegPort,
    /// Send messages.
    SendMsg,
    /// Owners of ports.
    QueryPort,
    /// State of nodes.
    QueryNode,
    /// Renew the lease.
    Relet,
}

impl Op {
    /// The `op` of a WebSocket request.
    pub fn name(self) -> &'static str {
        match self {
            Op::RegPort => "regport",
            Op::UnRegPort => "unregport",
            Op::SendMsg => "sendmsg",
            Op::QueryPort => "queryport",
            Op::QueryNode => "querynode",
            Op::Relet => "relet",
        }
    }
}

#[derive(Serialize)]
struct RequestWire<'a> {
    op: &'static str,
    id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ports: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nodes: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<&'a [Message]>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    subscribe: bool,
}

/// The text of request `id`: `names` are ports (or nodes, for QueryNode), `messages` the
/// messages of SendMsg.
pub fn request_text(
    op: Op,
    id: u64,
    names: &[String],
    messages: &[Message],
    subscribe: bool,
) -> String {
    let w = RequestWire {
        op: op.name(),
        id,
        ports: matches!(op, Op::RegPort | Op::UnRegPort | Op::QueryPort).then_some(names),
        nodes: (op == Op::QueryNode).then_some(names),
        messages: (op == Op::SendMsg).then_some(messages),
        subscribe: op == Op::RegPort && subscribe,
    };
    serde_json::to_string(&w).unwrap_or_default()
}

/// `{"code":…,"message":…}` of an error reply.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ErrorWire {
    /// Stable code.
    #[serde(default)]
    pub code: String,
    /// Reason.
    #[serde(default)]
    pub message: String,
}

/// A failed port of a RegPort reply.
#[derive(Clone, Debug, Deserialize)]
pub struct FailedWire {
    /// The port.
    pub port: String,
    /// Owner.
    pub owner: String,
    /// Owner address.
    #[serde(default)]
    pub address: Option<String>,
}

/// A port of a QueryPort reply.
#[derive(Clone, Debug, Deserialize)]
pub struct PortWire {
    /// The port.
    pub port: String,
    /// Owner.
    #[serde(default)]
    pub owner: Option<String>,
    /// Owner address.
    #[serde(default)]
    pub address: Option<String>,
}

/// A node of a QueryNode reply.
#[derive(Clone, Debug, Deserialize)]
pub struct NodeWire {
    /// Node id.
    pub node: String,
    /// Online.
    pub online: bool,
    /// Address.
    #[serde(default)]
    pub address: Option<String>,
    /// Ports held.
    #[serde(default)]
    pub ports: u64,
}

/// Any reply: the fields of every op, present or not.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Reply {
    /// The request id.
    #[serde(default)]
    pub id: u64,
    /// Set on errors.
    pub error: Option<ErrorWire>,
    /// RegPort.
    pub failed: Option<Vec<FailedWire>>,
    /// UnRegPort.
    pub released: Option<Vec<String>>,
    /// UnRegPort.
    pub not_owned: Option<Vec<String>>,
    /// SendMsg.
    pub delivered: Option<u64>,
    /// SendMsg.
    pub dropped: Option<u64>,
    /// QueryPort.
    pub ports: Option<Vec<PortWire>>,
    /// QueryNode.
    pub nodes: Option<Vec<NodeWire>>,
    /// Relet.
    pub lease_ms: Option<u64>,
    /// A cluster master's epoch.
    pub epoch: Option<u64>,
    /// The reply's sequence in the epoch (with `epoch`, a RegPort's fencing token).
    pub sequence: Option<u64>,
}

/// One push of a batch: `msg`, `released`, and the coordination pushes (`session`, `epoch`,
/// `watch`, `missed`, `handover`, `moved`).
#[derive(Debug, Deserialize)]
pub struct PushWire<'a> {
    /// Its type.
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// The port (`""` for pushes without one).
    #[serde(default, borrow)]
    pub port: Cow<'a, str>,
    /// The epoch of an `epoch` element (a cluster master's first element of a batch).
    #[serde(default)]
    pub epoch: Option<u64>,
    /// The acknowledged-delivery number of a message.
    #[serde(default)]
    pub ack: Option<u64>,
    /// `session`: the session of this connection.
    #[serde(default)]
    pub session: Option<u64>,
    /// `watch`, `missed`: the watch.
    #[serde(default)]
    pub watch: Option<u64>,
    /// `watch`, `missed`: the switch instance.
    #[serde(default)]
    pub instance: Option<u64>,
    /// `watch`, `handover`, `moved`: a sequence number.
    #[serde(default)]
    pub seq: Option<u64>,
    /// `watch`: what happened.
    #[serde(default, borrow)]
    pub event: Option<Cow<'a, str>>,
    /// `watch`: the node.
    #[serde(default, borrow)]
    pub node: Option<Cow<'a, str>>,
    /// `watch`: the owner.
    #[serde(default, borrow)]
    pub owner: Option<Cow<'a, str>>,
    /// `watch`: an address (`null`: none).
    #[serde(default, borrow)]
    pub address: Option<Cow<'a, str>>,
    /// The previous owner (`watch` moved, `handover`), or the first missed sequence
    /// (`missed`).
    #[serde(default)]
    pub from: Option<serde_json::Value>,
    /// The new owner (`moved`), or the last missed sequence (`missed`).
    #[serde(default)]
    pub to: Option<serde_json::Value>,
    /// Message body.
    #[serde(default, borrow)]
    pub body: Option<Cow<'a, str>>,
    /// Release reason.
    #[serde(default, borrow)]
    pub reason: Option<Cow<'a, str>>,
}

/// What arrived on the connection.
#[derive(Debug)]
pub enum Incoming<'a> {
    /// A reply (a JSON object).
    Reply(Box<Reply>),
    /// A batch of pushes (a JSON array).
    Pushes(Vec<PushWire<'a>>),
}

/// Parse a message from the switch.
pub fn parse(text: &str) -> Result<Incoming<'_>, serde_json::Error> {
    match text.trim_start().as_bytes().first() {
        Some(b'[') => serde_json::from_str(text).map(Incoming::Pushes),
        _ => serde_json::from_str(text).map(|r| Incoming::Reply(Box::new(r))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_the_switchs_ws_shapes() {
        let p = vec!["a".to_string(), "b\"".to_string()];
        assert_eq!(
            request_text(Op::RegPort, 3, &p, &[], true),
            r#"{"op":"regport","id":3,"ports":["a","b\""],"subscribe":true}"#
        );
        assert_eq!(
            request_text(Op::QueryNode, 4, &p[..1], &[], true),
            r#"{"op":"querynode","id":4,"nodes":["a"]}"#
        );
        let m = vec![Message::to("p", "x"), Message::to_many(["a", "b"], "y")];
        assert_eq!(
            request_text(Op::SendMsg, 5, &[], &m, false),
            r#"{"op":"sendmsg","id":5,"messages":[{"port":"p","body":"x"},{"ports":["a","b"],"body":"y"}]}"#
        );
        assert_eq!(
            request_text(Op::Relet, 6, &[], &[], false),
            r#"{"op":"relet","id":6}"#
        );
    }

    #[test]
    fn replies_and_pushes_are_told_apart_and_unknown_fields_ignored() {
        let Incoming::Reply(r) = parse(r#"{"id":7,"registered":1,"failed":[],"epoch":9}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!((r.id, r.failed.unwrap().len()), (7, 0));
        let Incoming::Pushes(p) = parse(
            r#"[{"type":"msg","port":"a","body":"hi"},{"type":"released","port":"b","reason":"unregistered"}]"#,
        )
        .unwrap() else {
            panic!()
        };
        assert!(matches!(p[0].port, Cow::Borrowed("a")));
        assert_eq!(p[1].reason.as_deref(), Some("unregistered"));
        assert!(parse("{nope").is_err());
        let Incoming::Pushes(p) =
            parse(r#"[{"type":"epoch","epoch":3},{"type":"msg","port":"a","body":"x"}]"#).unwrap()
        else {
            panic!()
        };
        assert_eq!((p[0].kind.as_ref(), p[0].epoch), ("epoch", Some(3)));
        let Incoming::Reply(r) =
            parse(r#"{"id":8,"registered":1,"failed":[],"epoch":9,"sequence":4}"#).unwrap()
        else {
            panic!()
        };
        assert_eq!((r.epoch, r.sequence), (Some(9), Some(4)));
    }
}
