//! The binary encoding of mesh records (see the module docs of [`crate::mesh`]).

use super::fields::{Dec, Enc, LEN_BYTES, TEXT_LEN_BYTES};
use super::outbox::MeshOut;
use super::*;

const REGISTER: u8 = 1;
const REGISTERED: u8 = 2;
const UNREGISTER: u8 = 3;
const UNREGISTERED: u8 = 4;
pub(super) const RESOLVE: u8 = 5;
const OWNERS: u8 = 6;
const DELIVER: u8 = 7;
const DELIVERED: u8 = 8;
const NODE_GONE: u8 = 9;
pub(super) const QUERY_PORTS: u8 = 10;
const QUERY_NODES: u8 = 11;
const NODE_INFOS: u8 = 12;
const QUERY_COUNTERS: u8 = 13;
const COUNTERS: u8 = 14;
pub(super) const RESOLVED: u8 = 15;
const WATCH_START: u8 = 16;
const WATCH_READY: u8 = 17;
const WATCH_STOP: u8 = 18;
const EVENT: u8 = 19;

/// Bytes of a Resolve record's fields per port: its name's length (the name in the text
/// block). The record: `[tag][op:u64][count:u32]`, then these.
const RESOLVE_NAME_BYTES: usize = 4;
/// Bytes of a Resolved record's run: `[owned:u8][home:u16][idx:u32][session:u64][count:u32]`
/// (the owner all zero when `owned` is 0). The record: `[tag][op:u64][runs:u32]`, then these;
/// no text.
const RESOLVED_RUN_BYTES: usize = 1 + 2 + 4 + 8 + 4;
/// Where a record's count (of ports or runs) is among the fields of a Resolve or Resolved
/// record: after the tag and op.
const RESOLVE_COUNT_AT: usize = 1 + 8;
/// The owner written for a run of ports without one.
const NO_NODE: NodeRef = NodeRef {
    home: 0,
    idx: 0,
    session: 0,
};

const ITEM_BROADCAST: u8 = 2;
const ITEM_RELEASED: u8 = 3;
const ITEM_MOVED: u8 = 4;
/// A run of [`Item::Unicast`]s to one node in one session with one [`Escaping`]: `[node:u32]
/// [session:u64][escaping:u8][count:u32]`, then `count` times `[port_len:u32][body_len:u32]`
/// (and each port and body in the text block). A SendMsg's messages to one receiver travel
/// as one run: 8 bytes of fields per message instead of 21, and one node to look up.
const ITEM_RUN: u8 = 6;

fn escaping_code(e: Escaping) -> u8 {
    match e {
        Escaping::Scan => 0,
        Escaping::Plain => 1,
    }
}

fn escaping_of(code: u8) -> Result<Escaping, MeshError> {
    Ok(match code {
        0 => Escaping::Scan,
        1 => Escaping::Plain,
        other => return Err(MeshError::UnknownTag(other)),
    })
}

/// The entries of a Deliver record: the items, with consecutive unicasts to one node in one
/// session and of one [`Escaping`] taken together as a run ([`ITEM_RUN`]).
fn entries<'x, 'a>(items: &'x [Item<'a>]) -> impl Iterator<Item = &'x [Item<'a>]> + 'x {
    let mut rest = items;
    std::iter::from_fn(move || {
        let (first, tail) = rest.split_first()?;
        let n = match first {
            Item::Unicast {
                node,
                session,
                escaping,
                ..
            } => {
                1 + tail
                    .iter()
                    .take_while(|i| {
                        matches!(i, Item::Unicast { node: n, session: s, escaping: e, .. }
                            if n == node && s == session && e == escaping)
                    })
                    .count()
            }
            _ => 1,
        };
        let (entry, after) = rest.split_at(n);
        rest = after;
        Some(entry)
    })
}

fn reason_code(r: ReleaseReason) -> u8 {
    match r {
        ReleaseReason::Unregistered => 1,
        ReleaseReason::NodeOffline => 2,
        ReleaseReason::Replaced => 3,
    }
}

fn reason_of(code: u8) -> Result<ReleaseReason, MeshError> {
    Ok(match code {
        1 => ReleaseReason::Unregistered,
        2 => ReleaseReason::NodeOffline,
        3 => ReleaseReason::Replaced,
        other => return Err(MeshError::Reason(other)),
    })
}

/// Starts a record at the end of `out`: room for `[len:u32][text_len:u32]`, which
/// [`end_record`] fills in. Returns where the record starts.
fn begin_record<O: MeshOut + ?Sized>(out: &mut O) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; LEN_BYTES + TEXT_LEN_BYTES]);
    start
}

/// Completes the record that starts at `start` and ends at the end of `out`, its text block
/// ending at `text_end`: writes its two lengths.
fn end_record<O: MeshOut + ?Sized>(out: &mut O, start: usize, text_end: usize) {
    let text_len = (text_end - start - LEN_BYTES - TEXT_LEN_BYTES) as u32;
    let len = (out.len() - start - LEN_BYTES) as u32;
    let mut lens = [0; LEN_BYTES + TEXT_LEN_BYTES];
    lens[..LEN_BYTES].copy_from_slice(&len.to_le_bytes());
    lens[LEN_BYTES..].copy_from_slice(&text_len.to_le_bytes());
    out.patch(start, &lens);
}

/// Completes a record whose text block `out` holds up to its end: appends its tag and fixed
/// fields (`fields`), then writes its two lengths ([`end_record`]). The writers that put the
/// text block into the outbox as they go and keep the fields aside finish this way.
fn end_record_with_fields<O: MeshOut + ?Sized>(out: &mut O, start: usize, fields: &[u8]) {
    let text_end = out.len();
    out.extend_from_slice(fields);
    end_record(out, start, text_end);
}

impl<'a> Msg<'a> {
    /// Appends this message as one record to `out`: `[len:u32][text_len:u32]`, the text block
    /// of `text_len` bytes, then `[tag:u8]` and the fixed-size fields (see [`crate::mesh`]).
    pub fn encode<O: MeshOut + ?Sized>(&self, out: &mut O) {
        let start = begin_record(out);
        self.write(&mut Enc { out, text: true });
        let text_end = out.len();
        self.write(&mut Enc { out, text: false });
        end_record(out, start, text_end);
    }

    /// One pass of [`Msg::encode`]: the tag and fields, or the text block.
    fn write<O: MeshOut + ?Sized>(&self, e: &mut Enc<'_, O>) {
        match self {
            Msg::Register {
                op,
                node,
                at_home,
                address,
                subscribe,
                if_owner,
                ports,
            } => {
                e.u8(REGISTER);
                e.u64(*op);
                e.str(node);
                e.node_ref(at_home);
                e.str(address);
                e.u8(u8::from(*subscribe));
                match if_owner {
                    None => e.u8(0),
                    Some(None) => e.u8(1),
                    Some(Some(x)) => {
                        e.u8(2);
                        e.str(x);
                    }
                }
                e.named(ports);
            }
            Msg::Registered {
                op,
                new,
                failed,
                full,
            } => {
                e.u8(REGISTERED);
                e.u64(*op);
                e.positions(new);
                e.u32(failed.len() as u32);
                for (p, o) in failed {
                    e.u32(*p);
                    e.owner(o);
                }
                e.u8(u8::from(*full));
            }
            Msg::Unregister { op, node, ports } => {
                e.u8(UNREGISTER);
                e.u64(*op);
                e.str(node);
                e.named(ports);
            }
            Msg::Unregistered {
                op,
                released,
                not_owned,
                unknown,
            } => {
                e.u8(UNREGISTERED);
                e.u64(*op);
                e.positions(released);
                e.positions(not_owned);
                e.positions(unknown);
            }
            Msg::Resolve { op, ports } => {
                // `[tag][op:u64][count:u32]`, then `[name_len:u32]` per port (RESOLVE_NAME_BYTES).
                e.u8(RESOLVE);
                e.u64(*op);
                e.u32(ports.len() as u32);
                for p in ports {
                    e.str(p);
                }
            }
            Msg::QueryPorts { op, ports } => {
                e.u8(QUERY_PORTS);
                e.u64(*op);
                e.named(ports);
            }
            Msg::Resolved { op, runs } => {
                // `[tag][op:u64][runs:u32]`, then per run `[owned:u8][home:u16][idx:u32]
                // [session:u64][count:u32]` (RESOLVED_RUN_BYTES; the owner zero if not owned).
                e.u8(RESOLVED);
                e.u64(*op);
                e.u32(runs.len() as u32);
                for (owner, count) in runs {
                    e.u8(u8::from(owner.is_some()));
                    e.node_ref(&owner.unwrap_or(NO_NODE));
                    e.u32(*count);
                }
            }
            Msg::Owners { op, owners } => {
                e.u8(OWNERS);
                e.u64(*op);
                e.u32(owners.len() as u32);
                for (p, o) in owners {
                    e.u32(*p);
                    e.owner(o);
                }
            }
            Msg::Deliver { op, ack, items } => {
                e.u8(DELIVER);
                e.u64(*op);
                e.u8(u8::from(*ack));
                let items: std::borrow::Cow<'_, [Item<'_>]> = match items {
                    Items::List(v) => v.as_slice().into(),
                    Items::Record(r) => r.clone().collect::<Vec<_>>().into(),
                };
                if e.text {
                    // The text block: each item's strings in order, runs or not.
                    for item in items.iter() {
                        match item {
                            Item::Unicast { port, body, .. } => {
                                e.str(port);
                                e.str(body);
                            }
                            Item::Broadcast { body } => e.str(body),
                            Item::Moved { port, to, .. } => {
                                e.str(port);
                                e.str(to);
                            }
                            Item::Released { port, .. } => e.str(port),
                        }
                    }
                    return;
                }
                // The number of entries, known once they are written.
                let count_at = e.out.len();
                e.u32(0);
                let mut count = 0u32;
                for entry in entries(&items) {
                    count += 1;
                    match entry {
                        [Item::Unicast {
                            node,
                            session,
                            escaping,
                            ..
                        }, ..] => {
                            e.u8(ITEM_RUN);
                            e.u32(*node);
                            e.u64(*session);
                            e.u8(escaping_code(*escaping));
                            e.u32(entry.len() as u32);
                            // The lengths of each port and body (the fields pass: `e.str`'s
                            // part), 8 bytes at a time.
                            e.out.reserve(entry.len() * 8);
                            for item in entry {
                                if let Item::Unicast { port, body, .. } = item {
                                    let mut lens = [0; 8];
                                    lens[..4].copy_from_slice(&(port.len() as u32).to_le_bytes());
                                    lens[4..].copy_from_slice(&(body.len() as u32).to_le_bytes());
                                    e.out.extend_from_slice(&lens);
                                }
                            }
                        }
                        [Item::Broadcast { body }] => {
                            e.u8(ITEM_BROADCAST);
                            e.str(body);
                        }
                        [Item::Moved {
                            node,
                            session,
                            port,
                            to,
                            seq,
                        }] => {
                            e.u8(ITEM_MOVED);
                            e.u32(*node);
                            e.u64(*session);
                            e.str(port);
                            e.str(to);
                            e.u64(*seq);
                        }
                        [Item::Released {
                            node,
                            session,
                            port,
                            reason,
                        }] => {
                            e.u8(ITEM_RELEASED);
                            e.u32(*node);
                            e.u64(*session);
                            e.str(port);
                            e.u8(reason_code(*reason));
                        }
                        // `entries` yields runs of unicasts and single other items only.
                        _ => {}
                    }
                }
                e.out.patch(count_at, &count.to_le_bytes());
            }
            Msg::Delivered {
                op,
                delivered,
                dropped,
            } => {
                e.u8(DELIVERED);
                e.u64(*op);
                e.u64(*delivered);
                e.u64(*dropped);
            }
            Msg::NodeGone {
                node,
                session,
                reason,
            } => {
                e.u8(NODE_GONE);
                e.str(node);
                e.u64(*session);
                e.u8(reason_code(*reason));
            }
            Msg::QueryCounters { op } => {
                e.u8(QUERY_COUNTERS);
                e.u64(*op);
            }
            Msg::Counters { op, values } => {
                e.u8(COUNTERS);
                e.u64(*op);
                e.u32(values.len() as u32);
                for v in values {
                    e.u64(*v);
                }
            }
            Msg::QueryNodes { op, nodes } => {
                e.u8(QUERY_NODES);
                e.u64(*op);
                e.named(nodes);
            }
            Msg::WatchStart {
                op,
                watch,
                kind,
                key,
                prefix,
                from,
            } => {
                e.u8(WATCH_START);
                e.u64(*op);
                e.watch_ref(watch);
                e.u8(kind.code());
                e.str(key);
                e.u8(u8::from(*prefix));
                e.u8(u8::from(from.is_some()));
                e.u64(from.unwrap_or(0));
            }
            Msg::WatchReady {
                op,
                watch,
                position,
                ahead,
                missed,
                events,
            } => {
                e.u8(WATCH_READY);
                e.u64(*op);
                e.watch_ref(watch);
                e.u64(*position);
                e.u8(u8::from(*ahead));
                e.u8(u8::from(missed.is_some()));
                let (a, b) = missed.unwrap_or((0, 0));
                e.u64(a);
                e.u64(b);
                e.u32(events.len() as u32);
                for (seq, event) in events {
                    e.u64(*seq);
                    e.event(event);
                }
            }
            Msg::WatchStop { kind, key, prefix } => {
                e.u8(WATCH_STOP);
                e.u8(kind.code());
                e.str(key);
                e.u8(u8::from(*prefix));
            }
            Msg::Event { seq, event } => {
                e.u8(EVENT);
                e.u64(*seq);
                e.event(event);
            }
            other @ (Msg::Acked { .. }
            | Msg::HandoverTo { .. }
            | Msg::Move { .. }
            | Msg::Moved { .. }
            | Msg::ListPorts { .. }
            | Msg::PortsListed { .. }
            | Msg::ListNodes { .. }
            | Msg::NodesListed { .. }
            | Msg::NodePorts { .. }
            | Msg::NodePortsListed { .. }) => super::coord::encode(other, e),
            Msg::NodeInfos { op, infos } => {
                e.u8(NODE_INFOS);
                e.u64(*op);
                e.u32(infos.len() as u32);
                for (p, i) in infos {
                    e.u32(*p);
                    e.home_info(i);
                }
            }
        }
    }

    /// Decodes one record body (text length, text, tag and fields, without the length
    /// prefix).
    pub fn decode(bytes: &'a [u8]) -> Result<Msg<'a>, MeshError> {
        let head = bytes
            .get(..TEXT_LEN_BYTES)
            .ok_or(MeshError::Truncated(bytes.len()))?;
        let text_len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let fields_start = TEXT_LEN_BYTES
            .checked_add(text_len)
            .filter(|&e| e <= bytes.len())
            .ok_or(MeshError::Truncated(bytes.len()))?;
        let text = std::str::from_utf8(&bytes[TEXT_LEN_BYTES..fields_start])
            .map_err(|_| MeshError::Utf8)?;
        let mut d = Dec {
            bytes: &bytes[fields_start..],
            pos: 0,
            text,
            text_pos: 0,
        };
        let msg = match d.u8()? {
            REGISTER => Msg::Register {
                op: d.u64()?,
                node: d.str()?,
                at_home: d.node_ref()?,
                address: d.str()?,
                subscribe: d.u8()? != 0,
                if_owner: match d.u8()? {
                    0 => None,
                    1 => Some(None),
                    2 => Some(Some(d.str()?)),
                    other => return Err(MeshError::UnknownTag(other)),
                },
                ports: d.named()?,
            },
            REGISTERED => {
                let op = d.u64()?;
                let new = d.positions()?;
                let n = d.count()?;
                let failed = (0..n)
                    .map(|_| Ok((d.u32()?, d.owner()?)))
                    .collect::<Result<_, MeshError>>()?;
                Msg::Registered {
                    op,
                    new,
                    failed,
                    full: d.u8()? != 0,
                }
            }
            UNREGISTER => Msg::Unregister {
                op: d.u64()?,
                node: d.str()?,
                ports: d.named()?,
            },
            UNREGISTERED => Msg::Unregistered {
                op: d.u64()?,
                released: d.positions()?,
                not_owned: d.positions()?,
                unknown: d.positions()?,
            },
            RESOLVE => {
                let op = d.u64()?;
                let n = d.count()?;
                let lens = d.take(
                    n.checked_mul(RESOLVE_NAME_BYTES)
                        .ok_or(MeshError::Truncated(d.pos))?,
                )?;
                // A plain loop, each name cut from the text not yet read (one character
                // boundary checked per name: its start is the previous name's end).
                let mut rest = d.text.get(d.text_pos..).unwrap_or_default();
                let mut ports = Vec::with_capacity(n);
                for len in lens.chunks_exact(RESOLVE_NAME_BYTES) {
                    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
                    let (name, after) = rest.split_at_checked(len).ok_or(if len > rest.len() {
                        MeshError::Truncated(d.bytes.len() + d.text.len() - rest.len())
                    } else {
                        MeshError::Utf8
                    })?;
                    ports.push(name);
                    rest = after;
                }
                Msg::Resolve { op, ports }
            }
            QUERY_PORTS => Msg::QueryPorts {
                op: d.u64()?,
                ports: d.named()?,
            },
            RESOLVED => {
                let op = d.u64()?;
                let n = d.count()?;
                let fields = d.take(
                    n.checked_mul(RESOLVED_RUN_BYTES)
                        .ok_or(MeshError::Truncated(d.pos))?,
                )?;
                let mut runs = Vec::with_capacity(n);
                for run in fields.chunks_exact(RESOLVED_RUN_BYTES) {
                    let mut r = Dec {
                        bytes: run,
                        pos: 0,
                        text: "",
                        text_pos: 0,
                    };
                    let owned = match r.u8()? {
                        0 => false,
                        1 => true,
                        other => return Err(MeshError::UnknownTag(other)),
                    };
                    let owner = r.node_ref()?;
                    runs.push((owned.then_some(owner), r.u32()?));
                }
                Msg::Resolved { op, runs }
            }
            OWNERS => {
                let op = d.u64()?;
                let n = d.count()?;
                let owners = (0..n)
                    .map(|_| Ok((d.u32()?, d.owner()?)))
                    .collect::<Result<_, MeshError>>()?;
                Msg::Owners { op, owners }
            }
            DELIVER => {
                let op = d.u64()?;
                let ack = d.u8()? != 0;
                let n = d.count()?;
                // Checked whole now; read item by item as they are handled.
                let items = ItemReader {
                    d: d.clone(),
                    entries: n,
                    run: None,
                };
                for _ in 0..n {
                    check_entry(&mut d)?;
                }
                Msg::Deliver {
                    op,
                    ack,
                    items: Items::Record(items),
                }
            }
            DELIVERED => Msg::Delivered {
                op: d.u64()?,
                delivered: d.u64()?,
                dropped: d.u64()?,
            },
            NODE_GONE => Msg::NodeGone {
                node: d.str()?,
                session: d.u64()?,
                reason: reason_of(d.u8()?)?,
            },
            QUERY_COUNTERS => Msg::QueryCounters { op: d.u64()? },
            COUNTERS => {
                let op = d.u64()?;
                let n = d.count()?;
                let values = (0..n).map(|_| d.u64()).collect::<Result<_, MeshError>>()?;
                Msg::Counters { op, values }
            }
            QUERY_NODES => Msg::QueryNodes {
                op: d.u64()?,
                nodes: d.named()?,
            },
            NODE_INFOS => {
                let op = d.u64()?;
                let n = d.count()?;
                let infos = (0..n)
                    .map(|_| Ok((d.u32()?, d.home_info()?)))
                    .collect::<Result<_, MeshError>>()?;
                Msg::NodeInfos { op, infos }
            }
            WATCH_START => Msg::WatchStart {
                op: d.u64()?,
                watch: d.watch_ref()?,
                kind: d.kind()?,
                key: d.str()?,
                prefix: d.u8()? != 0,
                from: {
                    let some = d.u8()? != 0;
                    let v = d.u64()?;
                    some.then_some(v)
                },
            },
            WATCH_READY => {
                let op = d.u64()?;
                let watch = d.watch_ref()?;
                let position = d.u64()?;
                let ahead = d.u8()? != 0;
                let some = d.u8()? != 0;
                let range = (d.u64()?, d.u64()?);
                let n = d.count()?;
                let events = (0..n)
                    .map(|_| Ok((d.u64()?, d.event()?)))
                    .collect::<Result<_, MeshError>>()?;
                Msg::WatchReady {
                    op,
                    watch,
                    position,
                    ahead,
                    missed: some.then_some(range),
                    events,
                }
            }
            WATCH_STOP => Msg::WatchStop {
                kind: d.kind()?,
                key: d.str()?,
                prefix: d.u8()? != 0,
            },
            EVENT => Msg::Event {
                seq: d.u64()?,
                event: d.event()?,
            },
            other => super::coord::decode(other, &mut d)?,
        };
        Ok(msg)
    }
}

/// Checks one entry of a Deliver record (see [`ItemReader`]) and moves past it.
fn check_entry(d: &mut Dec<'_>) -> Result<(), MeshError> {
    match d.u8()? {
        ITEM_RUN => {
            let _node = d.u32()?;
            let _session = d.u64()?;
            escaping_of(d.u8()?)?;
            let count = d.u32()? as usize;
            let lens = d.take(count.checked_mul(8).ok_or(MeshError::Truncated(d.pos))?)?;
            // A message's port and body at once: both ends within the text block and at
            // character boundaries (it is UTF-8 as a whole; a length that cuts a character is
            // corrupt). In `u64`, two `u32` lengths added to a position cannot overflow.
            let text = d.text.as_bytes();
            let boundary = |i: u64| text.get(i as usize).is_none_or(|&b| (b as i8) >= -0x40);
            let mut at = d.text_pos as u64;
            for pair in lens.chunks_exact(8) {
                let port = u32::from_le_bytes([pair[0], pair[1], pair[2], pair[3]]);
                let body = u32::from_le_bytes([pair[4], pair[5], pair[6], pair[7]]);
                let mid = at + u64::from(port);
                let end = mid + u64::from(body);
                if end > text.len() as u64 {
                    return Err(MeshError::Truncated(d.bytes.len() + at as usize));
                }
                if !(boundary(mid) && boundary(end)) {
                    return Err(MeshError::Utf8);
                }
                at = end;
            }
            d.text_pos = at as usize;
        }
        tag => {
            item(tag, d)?;
        }
    }
    Ok(())
}

/// An item other than a run, after its tag.
fn item<'a>(tag: u8, d: &mut Dec<'a>) -> Result<Item<'a>, MeshError> {
    Ok(match tag {
        ITEM_BROADCAST => Item::Broadcast { body: d.str()? },
        ITEM_MOVED => Item::Moved {
            node: d.u32()?,
            session: d.u64()?,
            port: d.str()?,
            to: d.str()?,
            seq: d.u64()?,
        },
        ITEM_RELEASED => Item::Released {
            node: d.u32()?,
            session: d.u64()?,
            port: d.str()?,
            reason: reason_of(d.u8()?)?,
        },
        other => return Err(MeshError::UnknownTag(other)),
    })
}

/// The items of a decoded Deliver record, read as they are handled: no list of them is
/// built. [`Msg::decode`] checked the record whole, so reading cannot fail; if it did
/// anyway, the items would end there.
#[derive(Clone, Debug)]
pub struct ItemReader<'a> {
    /// At the next entry (and, in the text block, at the next string).
    d: Dec<'a>,
    /// Entries not yet started.
    entries: usize,
    /// The run being read, if any.
    run: Option<Run<'a>>,
}

/// A run of unicasts being read: its target and the lengths of its ports and bodies not yet
/// read.
#[derive(Clone, Debug)]
struct Run<'a> {
    node: u32,
    session: u64,
    escaping: Escaping,
    lens: &'a [u8],
}

impl<'a> ItemReader<'a> {
    /// The port and body of the next message of the run being read (the node, session and
    /// escaping of the item [`Iterator::next`] returned last), if it has more.
    #[inline(always)]
    pub fn next_of_run(&mut self) -> Option<(&'a str, &'a str)> {
        let run = self.run.as_mut()?;
        let (lens, rest) = run.lens.split_first_chunk::<8>()?;
        run.lens = rest;
        let port_len = u32::from_le_bytes([lens[0], lens[1], lens[2], lens[3]]) as usize;
        let body_len = u32::from_le_bytes([lens[4], lens[5], lens[6], lens[7]]) as usize;
        // From the text not yet read: two cuts, each checked as a character boundary once.
        let rest = self.d.text.get(self.d.text_pos..)?;
        let (port, rest) = rest.split_at_checked(port_len)?;
        let body = rest.get(..body_len)?;
        self.d.text_pos += port_len + body_len;
        Some((port, body))
    }

    /// The next unicast of the run being read, if any.
    #[inline(always)]
    fn next_in_run(&mut self) -> Option<Item<'a>> {
        let (port, body) = self.next_of_run()?;
        let run = self.run.as_ref()?;
        Some(Item::Unicast {
            node: run.node,
            session: run.session,
            port,
            body,
            escaping: run.escaping,
        })
    }

    /// The first item of the next entry, if any.
    #[inline(never)]
    fn next_entry(&mut self) -> Option<Item<'a>> {
        loop {
            self.run = None;
            if self.entries == 0 {
                return None;
            }
            self.entries -= 1;
            let d = &mut self.d;
            match d.u8().ok()? {
                ITEM_RUN => {
                    let node = d.u32().ok()?;
                    let session = d.u64().ok()?;
                    let escaping = escaping_of(d.u8().ok()?).ok()?;
                    let count = d.u32().ok()? as usize;
                    let lens = d.take(count.checked_mul(8)?).ok()?;
                    self.run = Some(Run {
                        node,
                        session,
                        escaping,
                        lens,
                    });
                    if let Some(item) = self.next_in_run() {
                        return Some(item);
                    }
                }
                tag => return item(tag, d).ok(),
            }
        }
    }
}

impl<'a> Iterator for ItemReader<'a> {
    type Item = Item<'a>;

    #[inline]
    fn next(&mut self) -> Option<Item<'a>> {
        match self.next_in_run() {
            Some(item) => Some(item),
            None => self.next_entry(),
        }
    }
}

/// A Deliver record of unicasts and broadcasts written straight into an outbox as SendMsg's
/// phase two finds its items, without a list of them: each item's strings go to the outbox at
/// once (a record's text block comes before its fields), its fields to a side buffer that
/// [`DeliverWriter::finish`] appends. The bytes are those [`Msg::encode`] writes for the
/// same items. Nothing else may be written to the outbox between [`DeliverWriter::start`] and
/// [`DeliverWriter::finish`].
#[derive(Debug)]
pub struct DeliverWriter {
    /// Where the record starts in the outbox.
    start: usize,
    /// The tag and fields.
    fields: Vec<u8>,
    entries: u32,
    /// The open run: its node, session and escaping, where its count is in `fields`, and
    /// its count so far.
    run: Option<(u32, u64, Escaping, usize, u32)>,
}

/// Where a Deliver record's entry count is among its fields: after the tag, op and ack.
const DELIVER_ENTRIES_AT: usize = 1 + 8 + 1;

impl DeliverWriter {
    /// Starts a Deliver record in `out` (room for about `items` items).
    pub fn start<O: MeshOut + ?Sized>(
        out: &mut O,
        op: u64,
        ack: bool,
        items: usize,
    ) -> DeliverWriter {
        let start = begin_record(out);
        let mut fields = Vec::with_capacity(DELIVER_ENTRIES_AT + 4 + 18 + items * 8);
        fields.push(DELIVER);
        fields.extend_from_slice(&op.to_le_bytes());
        fields.push(u8::from(ack));
        fields.extend_from_slice(&0u32.to_le_bytes());
        DeliverWriter {
            start,
            fields,
            entries: 0,
            run: None,
        }
    }

    /// Ends the open run, if any: its count goes in its head.
    fn close_run(&mut self) {
        if let Some((_, _, _, at, count)) = self.run.take() {
            self.fields[at..at + 4].copy_from_slice(&count.to_le_bytes());
        }
    }

    /// Appends an [`Item::Unicast`].
    #[inline]
    pub fn unicast<O: MeshOut + ?Sized>(
        &mut self,
        out: &mut O,
        node: u32,
        session: u64,
        port: &str,
        body: &str,
        escaping: Escaping,
    ) {
        self.lens(node, session, escaping, port.len(), body.len());
        out.extend_from_slice(port.as_bytes());
        out.extend_from_slice(body.as_bytes());
    }

    /// Appends an [`Item::Unicast`] whose port and body lie one after the other in a string:
    /// `joined` is the port, `port_len` bytes, then the body, its text copied to the outbox at
    /// once. `joined` must be UTF-8 with a character boundary at `port_len` (bytes of a `str`
    /// cut at character boundaries), or the receiver refuses the record as corrupt.
    #[inline]
    pub fn unicast_joined<O: MeshOut + ?Sized>(
        &mut self,
        out: &mut O,
        node: u32,
        session: u64,
        joined: &[u8],
        port_len: usize,
        escaping: Escaping,
    ) {
        self.lens(
            node,
            session,
            escaping,
            port_len,
            joined.len().saturating_sub(port_len),
        );
        out.extend_from_slice(joined);
    }

    /// Appends an [`Item::Unicast`] to the open run (the last item appended was a unicast
    /// to the same node, session and escaping), its port and body side by side in `joined`
    /// as for [`DeliverWriter::unicast_joined`]; `false` (nothing appended) if no run is open.
    #[inline(always)]
    pub fn continue_run<O: MeshOut + ?Sized>(
        &mut self,
        out: &mut O,
        joined: &[u8],
        port_len: usize,
    ) -> bool {
        let Some((_, _, _, _, count)) = &mut self.run else {
            return false;
        };
        *count += 1;
        let body_len = joined.len().saturating_sub(port_len);
        let mut lens = [0; 8];
        lens[..4].copy_from_slice(&(port_len as u32).to_le_bytes());
        lens[4..].copy_from_slice(&(body_len as u32).to_le_bytes());
        self.fields.extend_from_slice(&lens);
        out.extend_from_slice(joined);
        true
    }

    /// The fields of a unicast: into the open run, or a new run, then its port and body
    /// lengths.
    #[inline(always)]
    fn lens(
        &mut self,
        node: u32,
        session: u64,
        escaping: Escaping,
        port_len: usize,
        body_len: usize,
    ) {
        match &mut self.run {
            Some((n, s, e, _, count)) if *n == node && *s == session && *e == escaping => {
                *count += 1;
            }
            _ => {
                self.close_run();
                self.entries += 1;
                self.fields.push(ITEM_RUN);
                self.fields.extend_from_slice(&node.to_le_bytes());
                self.fields.extend_from_slice(&session.to_le_bytes());
                self.fields.push(escaping_code(escaping));
                let at = self.fields.len();
                self.fields.extend_from_slice(&[0; 4]);
                self.run = Some((node, session, escaping, at, 1));
            }
        }
        let mut lens = [0; 8];
        lens[..4].copy_from_slice(&(port_len as u32).to_le_bytes());
        lens[4..].copy_from_slice(&(body_len as u32).to_le_bytes());
        self.fields.extend_from_slice(&lens);
    }

    /// Appends an [`Item::Broadcast`].
    pub fn broadcast<O: MeshOut + ?Sized>(&mut self, out: &mut O, body: &str) {
        self.close_run();
        self.entries += 1;
        self.fields.push(ITEM_BROADCAST);
        self.fields
            .extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(body.as_bytes());
    }

    /// Completes the record in `out`, which holds its text block now.
    pub fn finish<O: MeshOut + ?Sized>(mut self, out: &mut O) {
        self.close_run();
        let entries = self.entries.to_le_bytes();
        self.fields[DELIVER_ENTRIES_AT..DELIVER_ENTRIES_AT + 4].copy_from_slice(&entries);
        end_record_with_fields(out, self.start, &self.fields);
    }
}

/// A Resolve record written straight into an outbox as SendMsg's phase one meets the ports of
/// another shard: each name to the outbox at once (the text block comes first), its length to
/// a side buffer that [`ResolveWriter::finish`] appends. The bytes are those [`Msg::encode`]
/// writes for the same ports. Nothing else may be written to the outbox between
/// [`ResolveWriter::start`] and [`ResolveWriter::finish`].
#[derive(Debug)]
pub struct ResolveWriter {
    /// Where the record starts in the outbox.
    start: usize,
    /// The tag and fields.
    fields: Vec<u8>,
    count: u32,
}

impl ResolveWriter {
    /// Starts a Resolve record in `out` (room for about `ports` ports).
    pub fn start<O: MeshOut + ?Sized>(out: &mut O, op: u64, ports: usize) -> ResolveWriter {
        let start = begin_record(out);
        let mut fields = Vec::with_capacity(RESOLVE_COUNT_AT + 4 + ports * RESOLVE_NAME_BYTES);
        fields.push(RESOLVE);
        fields.extend_from_slice(&op.to_le_bytes());
        fields.extend_from_slice(&0u32.to_le_bytes());
        ResolveWriter {
            start,
            fields,
            count: 0,
        }
    }

    /// Appends a port.
    #[inline]
    pub fn port<O: MeshOut + ?Sized>(&mut self, out: &mut O, port: &str) {
        self.port_bytes(out, port.as_bytes());
    }

    /// [`ResolveWriter::port`] of a port given as the bytes of a `str` (cut from one on its
    /// character boundaries; other bytes would make a record that does not decode).
    #[inline]
    pub(crate) fn port_bytes<O: MeshOut + ?Sized>(&mut self, out: &mut O, port: &[u8]) {
        self.count += 1;
        self.fields
            .extend_from_slice(&(port.len() as u32).to_le_bytes());
        out.extend_from_slice(port);
    }

    /// Completes the record in `out`, which holds its text block now.
    pub fn finish<O: MeshOut + ?Sized>(mut self, out: &mut O) {
        self.fields[RESOLVE_COUNT_AT..RESOLVE_COUNT_AT + 4]
            .copy_from_slice(&self.count.to_le_bytes());
        end_record_with_fields(out, self.start, &self.fields);
    }
}

/// A Resolved record written straight into an outbox as a shard resolves a Resolve's ports in
/// order: a port with the owner of the one before it adds to that run. The bytes are those
/// [`Msg::encode`] writes for the same runs. Nothing else may be written to the outbox between
/// [`ResolvedWriter::start`] and [`ResolvedWriter::finish`].
#[derive(Debug)]
pub struct ResolvedWriter {
    /// Where the record starts in the outbox.
    start: usize,
    runs: u32,
    /// The open run: its owner, where its count is in the outbox, and its count so far.
    run: Option<(Option<NodeRef>, usize, u32)>,
}

impl ResolvedWriter {
    /// Starts a Resolved record in `out`.
    pub fn start<O: MeshOut + ?Sized>(out: &mut O, op: u64) -> ResolvedWriter {
        // Length, an empty text block, tag, op and the run count (patched by `finish`).
        let start = begin_record(out);
        out.push(RESOLVED);
        out.extend_from_slice(&op.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        ResolvedWriter {
            start,
            runs: 0,
            run: None,
        }
    }

    /// Ends the open run, if any: its count goes in its place.
    fn close_run<O: MeshOut + ?Sized>(&mut self, out: &mut O) {
        if let Some((_, at, count)) = self.run.take() {
            out.patch(at, &count.to_le_bytes());
        }
    }

    /// The owner of the next port (`None`: not registered).
    #[inline]
    pub fn owner<O: MeshOut + ?Sized>(&mut self, out: &mut O, owner: Option<NodeRef>) {
        match &mut self.run {
            Some((o, _, count)) if *o == owner => *count += 1,
            _ => {
                self.close_run(out);
                self.runs += 1;
                let r = owner.unwrap_or(NO_NODE);
                let mut head = [0; RESOLVED_RUN_BYTES];
                head[0] = u8::from(owner.is_some());
                head[1..3].copy_from_slice(&r.home.to_le_bytes());
                head[3..7].copy_from_slice(&r.idx.to_le_bytes());
                head[7..15].copy_from_slice(&r.session.to_le_bytes());
                out.extend_from_slice(&head);
                self.run = Some((owner, out.len() - 4, 1));
            }
        }
    }

    /// Completes the record in `out`.
    pub fn finish<O: MeshOut + ?Sized>(mut self, out: &mut O) {
        self.close_run(out);
        let runs_at = self.start + LEN_BYTES + TEXT_LEN_BYTES + RESOLVE_COUNT_AT;
        out.patch(runs_at, &self.runs.to_le_bytes());
        // The text block is empty.
        end_record(out, self.start, self.start + LEN_BYTES + TEXT_LEN_BYTES);
    }
}
