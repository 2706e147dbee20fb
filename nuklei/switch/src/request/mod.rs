//! Requests of the switch API, parsed in one pass from their JSON text ([`parse_ws`] for
//! WebSocket messages, [`parse_body`] for REST bodies) into [`Request`]s whose port names, node
//! ids and message bodies borrow from the text (owned only where the JSON string had escapes).
//!
//! The accepted shapes are those of the serde types in [`crate::api`] (`RegPortRequest`,
//! `WsRequest`, …), which stay the client-side description of the API: unknown fields are
//! ignored, a field given twice is an error, `port`/`ports` of a message may be `null`, and a
//! WebSocket request's `op` may come anywhere in the object (fields before it are checked for
//! syntax at once and read once the op is known, so the usual op-first request is read once).

use std::borrow::Cow;

use crate::batch::{PortNames, SendBatch};
use crate::json::{Escaping, JsonError, Reader};

/// A string of a request: borrowed from the request text unless it had escapes.
pub type Str<'a> = Cow<'a, str>;

/// The operations of the API.
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
    /// Heartbeat.
    Relet,
    /// Start a watch.
    Watch,
    /// End a watch.
    Unwatch,
    /// List ports by prefix.
    ListPorts,
    /// List online nodes.
    ListNodes,
    /// List a node's ports.
    NodePorts,
    /// Move ports to another node.
    Handover,
    /// Acknowledge pushes.
    Ack,
}

impl Op {
    pub(crate) const ALL: [Op; 13] = [
        Op::RegPort,
        Op::UnRegPort,
        Op::SendMsg,
        Op::QueryPort,
        Op::QueryNode,
        Op::Relet,
        Op::Watch,
        Op::Unwatch,
        Op::ListPorts,
        Op::ListNodes,
        Op::NodePorts,
        Op::Handover,
        Op::Ack,
    ];

    /// The `op` of a WebSocket request.
    pub fn name(self) -> &'static str {
        match self {
            Op::RegPort => "regport",
            Op::UnRegPort => "unregport",
            Op::SendMsg => "sendmsg",
            Op::QueryPort => "queryport",
            Op::QueryNode => "querynode",
            Op::Relet => "relet",
            Op::Watch => "watch",
            Op::Unwatch => "unwatch",
            Op::ListPorts => "listports",
            Op::ListNodes => "listnodes",
            Op::NodePorts => "nodeports",
            Op::Handover => "handover",
            Op::Ack => "ack",
        }
    }

    /// The op named `name`.
    pub fn from_name(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == name)
    }
}

/// One message of SendMsg.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message<'a> {
    /// Single target (`""`: broadcast); `null` reads as absent.
    pub port: Option<Str<'a>>,
    /// Several targets; `null` reads as absent.
    pub ports: Option<Vec<Str<'a>>>,
    /// Opaque body.
    pub body: Str<'a>,
    /// [`Escaping::Plain`] if the parser found `port` and `body` with no byte JSON escapes, so
    /// their pushes copy them without a scan; [`Escaping::Scan`] otherwise (always safe).
    pub escaping: Escaping,
}

impl<'a> Message<'a> {
    /// The targets: `ports` if given, else `[port]`; `None` unless exactly one was given.
    pub fn targets(&self) -> Option<&[Str<'a>]> {
        match (&self.port, &self.ports) {
            (None, Some(ports)) => Some(ports),
            (Some(port), None) => Some(std::slice::from_ref(port)),
            _ => None,
        }
    }
}

/// A watch to start: `ports` or `nodes` (a name, or a prefix with `prefix: true`), its id,
/// and where it resumes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchSpec<'a> {
    /// The watch's id (`None`: the request's id on a WebSocket, else a free one).
    pub watch: Option<u64>,
    /// Ports or nodes.
    pub kind: crate::watch::WatchKind,
    /// A name, or a prefix.
    pub key: Str<'a>,
    /// Whether `key` is a prefix.
    pub prefix: bool,
    /// The cursor to resume after.
    pub from: Option<Vec<u64>>,
}

/// One page of a listing: names starting with `prefix`, after `after`, at most `limit`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page<'a> {
    /// The prefix (default: everything).
    pub prefix: Str<'a>,
    /// The cursor of the previous page.
    pub after: Option<Str<'a>>,
    /// The most entries wanted (default and most: the `max_page` limit).
    pub limit: Option<u64>,
}

/// A parsed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// Register `ports`; subscribe to the release of those that fail.
    RegPort {
        /// The ports.
        ports: Vec<Str<'a>>,
        /// Subscribe (default false).
        subscribe: bool,
        /// Compare-and-register: register only where the current owner is this node
        /// (`Some(None)`: only free ports).
        if_owner: Option<Option<Str<'a>>>,
    },
    /// [`Request::RegPort`] with its ports read straight into an owned [`PortNames`]
    /// ([`parse_ws_owned`]: no list of strings first; the multi-instance switch keeps a
    /// RegPort's names until every shard answered).
    RegNames {
        /// The ports.
        ports: PortNames,
        /// Subscribe (default false).
        subscribe: bool,
        /// Compare-and-register, as [`Request::RegPort`]'s.
        if_owner: Option<Option<Str<'a>>>,
    },
    /// Release ports.
    UnRegPort {
        /// The ports.
        ports: Vec<Str<'a>>,
    },
    /// Send messages, in this order.
    SendMsg {
        /// The batch.
        messages: Vec<Message<'a>>,
        /// Reply once the receivers acknowledged them (default false).
        ack: bool,
    },
    /// Send messages, in this order, read straight into an owned batch ([`parse_ws_owned`]:
    /// no list of [`Message`]s first).
    SendBatch {
        /// The batch.
        batch: SendBatch,
        /// Every message named exactly one of `port` or `ports` (else the call is refused, as
        /// [`Message::targets`] refuses it).
        targeted: bool,
        /// Reply once the receivers acknowledged them (default false).
        ack: bool,
    },
    /// Owners of ports.
    QueryPort {
        /// The ports.
        ports: Vec<Str<'a>>,
    },
    /// State of nodes.
    QueryNode {
        /// Node ids.
        nodes: Vec<Str<'a>>,
    },
    /// Heartbeat.
    Relet,
    /// Start a watch.
    Watch(WatchSpec<'a>),
    /// End a watch.
    Unwatch {
        /// Its id.
        watch: u64,
    },
    /// Ports by prefix.
    ListPorts(Page<'a>),
    /// Online nodes by prefix.
    ListNodes(Page<'a>),
    /// A node's ports.
    NodePorts {
        /// The node.
        node: Str<'a>,
        /// The page (its prefix is not used).
        page: Page<'a>,
    },
    /// Move ports of the acting node to node `to`.
    Handover {
        /// The receiving node.
        to: Str<'a>,
        /// The ports.
        ports: Vec<Str<'a>>,
    },
    /// Acknowledge the acknowledged-delivery pushes numbered up to `upto`.
    Ack {
        /// The last push number acknowledged.
        upto: u64,
    },
}

/// A request and the session it names, if any (node-scoped calls may: a call for a replaced
/// session then fails instead of landing in the new one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// The request.
    pub request: Request<'a>,
    /// The session named.
    pub session: Option<u64>,
}

fn missing(r: &Reader<'_>, at: usize, field: &str) -> JsonError {
    r.error_at(at, format!("missing field `{field}`"))
}

fn duplicate(r: &Reader<'_>, field: &str) -> JsonError {
    r.error(format!("duplicate field `{field}`"))
}

/// Store a field's value once; a second occurrence is an error.
fn once<'a, T>(
    slot: &mut Option<T>,
    r: &mut Reader<'a>,
    field: &str,
    read: impl FnOnce(&mut Reader<'a>) -> Result<T, JsonError>,
) -> Result<(), JsonError> {
    if slot.is_some() {
        return Err(duplicate(r, field));
    }
    *slot = Some(read(r).map_err(|e| e.in_field(field))?);
    Ok(())
}

/// The body fields of all ops, filled as they are met.
#[derive(Default)]
struct Fields<'a> {
    ports: Option<Vec<Str<'a>>>,
    subscribe: Option<bool>,
    messages: Option<Vec<Message<'a>>>,
    /// Read `messages` into an owned batch instead ([`parse_ws_owned`]).
    owned: bool,
    batch: Option<(SendBatch, bool)>,
    /// A RegPort's `ports` when `owned`.
    names: Option<PortNames>,
    nodes: Option<Vec<Str<'a>>>,
    if_owner: Option<Option<Str<'a>>>,
    ack: Option<bool>,
    session: Option<u64>,
    watch: Option<u64>,
    /// `ports` / `nodes` of a watch (a string, not a list).
    watch_ports: Option<Str<'a>>,
    watch_nodes: Option<Str<'a>>,
    prefix_flag: Option<bool>,
    prefix: Option<Str<'a>>,
    from: Option<Vec<u64>>,
    after: Option<Option<Str<'a>>>,
    limit: Option<Option<u64>>,
    node: Option<Str<'a>>,
    to: Option<Str<'a>>,
    upto: Option<u64>,
}

fn u64s(r: &mut Reader<'_>) -> Result<Vec<u64>, JsonError> {
    let mut out = Vec::new();
    r.array(|r| {
        out.push(r.u64()?);
        Ok(())
    })?;
    Ok(out)
}

fn nullable_string<'a>(r: &mut Reader<'a>) -> Result<Option<Str<'a>>, JsonError> {
    Ok(if r.null()? { None } else { Some(r.string()?) })
}

/// Node-scoped ops, which may name the session they are for.
fn scoped(op: Op) -> bool {
    matches!(
        op,
        Op::RegPort | Op::UnRegPort | Op::Relet | Op::Watch | Op::Unwatch | Op::Handover | Op::Ack
    )
}

impl<'a> Fields<'a> {
    /// Read the value of `key` if it is a field of `op`; `Ok(false)` (nothing consumed) if not.
    fn read(&mut self, op: Op, key: &str, r: &mut Reader<'a>) -> Result<bool, JsonError> {
        match (op, key) {
            (Op::RegPort, "ports") if self.owned => once(&mut self.names, r, key, port_names)?,
            (Op::RegPort | Op::UnRegPort | Op::QueryPort, "ports") => {
                once(&mut self.ports, r, key, Reader::strings)?
            }
            (Op::RegPort, "subscribe") => once(&mut self.subscribe, r, key, Reader::bool)?,
            (Op::RegPort, "if_owner") => once(&mut self.if_owner, r, key, nullable_string)?,
            (Op::SendMsg, "messages") if self.owned => {
                once(&mut self.batch, r, key, owned_messages)?
            }
            (Op::SendMsg, "messages") => once(&mut self.messages, r, key, messages)?,
            (Op::SendMsg, "ack") => once(&mut self.ack, r, key, Reader::bool)?,
            (Op::QueryNode, "nodes") => once(&mut self.nodes, r, key, Reader::strings)?,
            (op, "session") if scoped(op) => once(&mut self.session, r, key, Reader::u64)?,
            (Op::Watch | Op::Unwatch, "watch") => once(&mut self.watch, r, key, Reader::u64)?,
            (Op::Watch, "ports") => once(&mut self.watch_ports, r, key, Reader::string)?,
            (Op::Watch, "nodes") => once(&mut self.watch_nodes, r, key, Reader::string)?,
            (Op::Watch, "prefix") => once(&mut self.prefix_flag, r, key, Reader::bool)?,
            (Op::Watch, "from") => once(&mut self.from, r, key, u64s)?,
            (Op::ListPorts | Op::ListNodes, "prefix") => {
                once(&mut self.prefix, r, key, Reader::string)?
            }
            (Op::ListPorts | Op::ListNodes | Op::NodePorts, "after") => {
                once(&mut self.after, r, key, nullable_string)?
            }
            (Op::ListPorts | Op::ListNodes | Op::NodePorts, "limit") => {
                once(&mut self.limit, r, key, |r| {
                    Ok(if r.null()? { None } else { Some(r.u64()?) })
                })?
            }
            (Op::NodePorts, "node") => once(&mut self.node, r, key, Reader::string)?,
            (Op::Handover, "to") => once(&mut self.to, r, key, Reader::string)?,
            (Op::Handover, "ports") => once(&mut self.ports, r, key, Reader::strings)?,
            (Op::Ack, "upto") => once(&mut self.upto, r, key, Reader::u64)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The request of `op`, once the whole object was read (`end`: its end offset).
    fn finish(self, op: Op, r: &Reader<'_>, end: usize) -> Result<Parsed<'a>, JsonError> {
        let need = |v: Option<Vec<Str<'a>>>, f: &str| v.ok_or_else(|| missing(r, end, f));
        let session = self.session;
        let page = |prefix: Option<Str<'a>>, after, limit| Page {
            prefix: prefix.unwrap_or_default(),
            after,
            limit,
        };
        let request = match op {
            Op::RegPort if self.owned => Request::RegNames {
                ports: self.names.ok_or_else(|| missing(r, end, "ports"))?,
                subscribe: self.subscribe.unwrap_or(false),
                if_owner: self.if_owner,
            },
            Op::RegPort => Request::RegPort {
                ports: need(self.ports, "ports")?,
                subscribe: self.subscribe.unwrap_or(false),
                if_owner: self.if_owner,
            },
            Op::UnRegPort => Request::UnRegPort {
                ports: need(self.ports, "ports")?,
            },
            Op::QueryPort => Request::QueryPort {
                ports: need(self.ports, "ports")?,
            },
            Op::QueryNode => Request::QueryNode {
                nodes: need(self.nodes, "nodes")?,
            },
            Op::SendMsg if self.owned => {
                let (batch, targeted) = self.batch.ok_or_else(|| missing(r, end, "messages"))?;
                Request::SendBatch {
                    batch,
                    targeted,
                    ack: self.ack.unwrap_or(false),
                }
            }
            Op::SendMsg => Request::SendMsg {
                messages: self.messages.ok_or_else(|| missing(r, end, "messages"))?,
                ack: self.ack.unwrap_or(false),
            },
            Op::Relet => Request::Relet,
            Op::Watch => {
                let (kind, key) = match (self.watch_ports, self.watch_nodes) {
                    (Some(k), None) => (crate::watch::WatchKind::Ports, k),
                    (None, Some(k)) => (crate::watch::WatchKind::Nodes, k),
                    _ => {
                        return Err(r.error_at(
                            end,
                            "a watch needs exactly one of `ports` or `nodes` (a name, or a prefix with `\"prefix\": true`)",
                        ))
                    }
                };
                Request::Watch(WatchSpec {
                    watch: self.watch,
                    kind,
                    key,
                    prefix: self.prefix_flag.unwrap_or(false),
                    from: self.from,
                })
            }
            Op::Unwatch => Request::Unwatch {
                watch: self.watch.ok_or_else(|| missing(r, end, "watch"))?,
            },
            Op::ListPorts => Request::ListPorts(page(
                self.prefix,
                self.after.flatten(),
                self.limit.flatten(),
            )),
            Op::ListNodes => Request::ListNodes(page(
                self.prefix,
                self.after.flatten(),
                self.limit.flatten(),
            )),
            Op::NodePorts => Request::NodePorts {
                node: self.node.ok_or_else(|| missing(r, end, "node"))?,
                page: page(None, self.after.flatten(), self.limit.flatten()),
            },
            Op::Handover => Request::Handover {
                to: self.to.ok_or_else(|| missing(r, end, "to"))?,
                ports: need(self.ports, "ports")?,
            },
            Op::Ack => Request::Ack {
                upto: self.upto.ok_or_else(|| missing(r, end, "upto"))?,
            },
        };
        Ok(Parsed { request, session })
    }
}

/// Most messages a batch's list is sized for up front (more grow it as usual).
const MAX_RESERVED_MESSAGES: usize = 16 * 1024;

/// How many items an array probably holds, from its first item (read from `first_start` up
/// to here) and the text left: batches tend to be uniform, so a list sized by this is not
/// grown (and copied) step by step. Capped: a tiny first item must not reserve for millions.
fn items_like_the_first(r: &Reader<'_>, first_start: usize) -> usize {
    let each = r.position() - first_start + 1;
    (r.remaining() / each + 1).min(MAX_RESERVED_MESSAGES)
}

fn messages<'a>(r: &mut Reader<'a>) -> Result<Vec<Message<'a>>, JsonError> {
    let mut out = Vec::new();
    r.array(|r| {
        let start = r.position();
        out.push(message(r)?);
        if out.len() == 1 {
            out.reserve(items_like_the_first(r, start));
        }
        Ok(())
    })?;
    Ok(out)
}

/// A RegPort's names read straight into an owned [`PortNames`], sized from the first name as
/// [`messages`] sizes its list: the same reading as [`Reader::strings`], without a list of
/// strings in between.
fn port_names(r: &mut Reader<'_>) -> Result<PortNames, JsonError> {
    let mut names = PortNames::default();
    r.array(|r| {
        let start = r.position();
        names.push(&r.string()?);
        if names.len() == 1 {
            let n = items_like_the_first(r, start);
            names.reserve(n, n * names.text_len());
        }
        Ok(())
    })?;
    Ok(names)
}

/// The messages of a SendMsg read straight into an owned batch, and whether every one named
/// exactly one of `port` or `ports`: the same reading as [`messages`], without a list of
/// [`Message`]s in between (the multi-instance switch owns a batch across mesh round trips).
fn owned_messages(r: &mut Reader<'_>) -> Result<(SendBatch, bool), JsonError> {
    let mut batch = SendBatch::default();
    let mut targeted = true;
    r.array(|r| {
        let start = r.position();
        if let Some((port, body)) = template_message(r) {
            batch.push_one(port, body, Escaping::Plain);
        } else {
            let m = message(r)?;
            match m.targets() {
                Some([one]) => batch.push_one(one, &m.body, m.escaping),
                Some(targets) => {
                    batch.push_as(targets.iter().map(|t| t.as_ref()), &m.body, m.escaping)
                }
                None => targeted = false,
            }
        }
        if batch.len() == 1 {
            let n = items_like_the_first(r, start);
            batch.reserve(n, n * batch.text_len());
        }
        Ok(())
    })?;
    Ok((batch, targeted))
}

/// A message of the usual shape, `{"port":"…","body":"…"}` with no escapes, read at once.
/// Inlined into both readers of messages (a call of its own costs ~30 instructions per
/// message).
#[inline(always)]
fn template_message<'a>(r: &mut Reader<'a>) -> Option<(&'a str, &'a str)> {
    r.template(br#"{"port":""#, br#"","body":""#, br#""}"#)
}

fn message<'a>(r: &mut Reader<'a>) -> Result<Message<'a>, JsonError> {
    if let Some((port, body)) = template_message(r) {
        return Ok(Message {
            port: Some(Cow::Borrowed(port)),
            ports: None,
            body: Cow::Borrowed(body),
            escaping: Escaping::Plain,
        });
    }
    let mut port = None;
    let mut ports = None;
    let mut body = None;
    r.object(|r, key| match &*key {
        "port" => once(&mut port, r, "port", |r| {
            Ok(if r.null()? { None } else { Some(r.string()?) })
        }),
        "ports" => once(&mut ports, r, "ports", |r| {
            Ok(if r.null()? { None } else { Some(r.strings()?) })
        }),
        "body" => once(&mut body, r, "body", Reader::string),
        _ => r.skip_value(),
    })?;
    Ok(Message {
        port: port.flatten(),
        ports: ports.flatten(),
        body: body.ok_or_else(|| missing(r, r.position(), "body"))?,
        escaping: Escaping::Scan,
    })
}

/// A REST request body of `op`: a JSON object with the op's fields (other fields ignored).
pub fn parse_body(op: Op, text: &str) -> Result<Parsed<'_>, JsonError> {
    let mut r = Reader::new(text);
    let mut fields = Fields::default();
    r.object(|r, key| {
        if !fields.read(op, &key, r)? {
            r.skip_value()?;
        }
        Ok(())
    })?;
    let end = r.position();
    r.end()?;
    fields.finish(op, &r, end)
}

/// A WebSocket request: `{"op":…,"id":…, …the op's fields}`; returns the id and the request.
pub fn parse_ws(text: &str) -> Result<(u64, Parsed<'_>), JsonError> {
    parse_ws_with(text, false)
}

fn parse_ws_with(text: &str, owned: bool) -> Result<(u64, Parsed<'_>), JsonError> {
    let mut r = Reader::new(text);
    let mut op = None;
    let mut id = None;
    let mut fields = Fields {
        owned,
        ..Fields::default()
    };
    // Fields met before `op`: (key, offset of the value), read once the op is known.
    let mut later: Vec<(Str<'_>, usize)> = Vec::new();
    r.object(|r, key| match &*key {
        "op" => once(&mut op, r, "op", |r| {
            let at = r.position();
            let name = r.string()?;
            Op::from_name(&name).ok_or_else(|| {
                let names: Vec<String> =
                    Op::ALL.iter().map(|o| format!("`{}`", o.name())).collect();
                r.error_at(
                    at,
                    format!("unknown op `{name}`, expected one of {}", names.join(", ")),
                )
            })
        }),
        "id" => once(&mut id, r, "id", Reader::u64),
        _ => {
            match op {
                Some(op) => {
                    if !fields.read(op, &key, r)? {
                        r.skip_value()?;
                    }
                }
                None => {
                    let at = r.position();
                    r.skip_value()?;
                    later.push((key, at));
                }
            }
            Ok(())
        }
    })?;
    let end = r.position();
    r.end()?;
    let op = op.ok_or_else(|| missing(&r, end, "op"))?;
    for (key, at) in later {
        fields.read(op, &key, &mut r.at(at))?;
    }
    let id = id.ok_or_else(|| missing(&r, end, "id"))?;
    Ok((id, fields.finish(op, &r, end)?))
}

/// [`parse_ws`] with a SendMsg's messages read straight into an owned batch
/// ([`Request::SendBatch`]) and a RegPort's ports into owned names ([`Request::RegNames`]):
/// what the multi-instance switch keeps across mesh round trips.
pub fn parse_ws_owned(text: &str) -> Result<(u64, Parsed<'_>), JsonError> {
    parse_ws_with(text, true)
}

/// Best effort, for the reply to a request that failed to parse: its `id` if the text is a
/// JSON object with exactly one unsigned-integer `id`, else 0.
pub fn ws_id(text: &str) -> u64 {
    let mut r = Reader::new(text);
    let mut id = None;
    let parsed = r.object(|r, key| {
        if key == "id" {
            once(&mut id, r, "id", Reader::u64)
        } else {
            r.skip_value()
        }
    });
    match (parsed, r.end(), id) {
        (Ok(()), Ok(()), Some(id)) => id,
        _ => 0,
    }
}

#[cfg(test)]
mod tests;
