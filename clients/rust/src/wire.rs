//! The switch's JSON on the receiving connection: requests out, replies and pushes in.
//! Unknown reply fields are ignored, so fields a newer switch adds do not break this client.
//! A cluster's master stamps every reply with `epoch` and `sequence` and starts every push
//! batch with `{"type":"epoch","epoch":E}`.

use std::borrow::Cow;
use std::ops::Range;

use serde::Deserialize;

use crate::pushes::{Pushes, Span};
use crate::shared_str::SharedStr;
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

/// The text of request `id`: `names` are ports (or nodes, for QueryNode), `messages` the
/// messages of SendMsg; [`write_request`] into a new string (the client itself writes into
/// a buffer sized by its plan: [`crate::batch::Request::text`]).
pub fn request_text(
    op: Op,
    id: u64,
    names: &[String],
    messages: &[Message],
    subscribe: bool,
) -> String {
    let mut out = String::new();
    write_request(&mut out, op, id, names, messages, subscribe);
    out
}

/// A request's text written at the end of `out` (sized by the caller: a planned request
/// knows its size without another pass over its messages). Written by hand, with strings
/// that need no escape (nearly all) copied whole: serde's writer grew its buffer a few times
/// per request and went through the escape table byte by byte, the largest part of the
/// client's cost per message sent (issue 16). The output is serde_json's, byte for byte (the
/// tests compare).
pub fn write_request(
    out: &mut String,
    op: Op,
    id: u64,
    names: &[String],
    messages: &[Message],
    subscribe: bool,
) {
    out.push_str("{\"op\":\"");
    out.push_str(op.name());
    out.push_str("\",\"id\":");
    push_u64(out, id);
    match op {
        Op::RegPort | Op::UnRegPort | Op::QueryPort => {
            out.push_str(",\"ports\":");
            push_names(out, names);
        }
        Op::QueryNode => {
            out.push_str(",\"nodes\":");
            push_names(out, names);
        }
        Op::SendMsg => {
            out.push_str(",\"messages\":[");
            for (i, m) in messages.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_message(out, m);
            }
            out.push(']');
        }
        Op::Relet => {}
    }
    if op == Op::RegPort && subscribe {
        out.push_str(",\"subscribe\":true");
    }
    out.push('}');
}

/// `{"port":…,"ports":[…],"body":…}` with the fields a [`Message`] has, in its
/// declaration order (as its `Serialize` writes it).
fn push_message(out: &mut String, m: &Message) {
    out.push('{');
    if let Some(p) = &m.port {
        out.push_str("\"port\":");
        push_string(out, p);
        out.push(',');
    }
    if let Some(ps) = &m.ports {
        out.push_str("\"ports\":");
        push_names(out, ps);
        out.push(',');
    }
    out.push_str("\"body\":");
    push_string(out, &m.body);
    out.push('}');
}

fn push_names<S: AsRef<str>>(out: &mut String, names: &[S]) {
    out.push('[');
    for (i, n) in names.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_string(out, n.as_ref());
    }
    out.push(']');
}

/// `s` as a JSON string: copied whole when nothing in it needs an escape, else written by
/// serde_json (so escapes are exactly serde's).
fn push_string(out: &mut String, s: &str) {
    if plain_bytes(s.as_bytes()) {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    }
}

fn push_u64(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend(buf[i..].iter().map(|&b| b as char));
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

/// A push batch of `msg` elements (and a cluster master's `epoch` element), read without
/// serde by [`msg_batch`].
#[derive(Debug, Default)]
pub struct MsgBatch {
    /// One push per `msg`, in order (spans of the message, made into events as taken).
    pub pushes: Pushes,
    /// The highest `ack` of the messages (0: none asked for an acknowledgement).
    pub ack: u64,
    /// The `epoch` element's epoch.
    pub epoch: Option<u64>,
}

/// Read a push batch whose every element is `{"type":"msg","port":…,"body":…}` (with an
/// optional `"ack":N`) or one `{"type":"epoch","epoch":E}`, with strings that hold no
/// escape, the switch's usual batch under load. Anything else (another push type, another
/// field, an escape, a malformed batch) gives `None`: the caller parses it with [`parse`],
/// which decides what it means or rejects it. What this accepts is valid JSON and reads the
/// same as [`parse`] would.
///
/// Why: serde built a ~300-byte [`PushWire`] per message and grew their `Vec` as it went;
/// this goes straight from the text to the events (issue 16).
///
/// The spans are written into `spans` (cleared first), whose capacity is reused.
pub fn msg_batch(message: &SharedStr, mut spans: Vec<Span>) -> Option<MsgBatch> {
    let text = message.as_str();
    let mut r = Scan { s: text, i: 0 };
    // Where a field's string lies in the message; absent: empty.
    let range = |s: Option<&str>| {
        s.map_or(0..0, |s| {
            let at = s.as_ptr() as usize - text.as_ptr() as usize;
            at..at + s.len()
        })
    };
    r.ws();
    r.eat(b'[')?;
    spans.clear();
    if spans.capacity() == 0 {
        // A message takes at least ~40 bytes of the batch. (The client hands in vectors
        // that the application has emptied, so this is the first batches' case.)
        spans.reserve(text.len() / 40 + 1);
    }
    let (mut ack, mut epoch) = (0, None);
    r.ws();
    if r.eat(b']').is_none() {
        loop {
            r.ws();
            r.eat(b'{')?;
            if let Some((port, body)) = r.usual_msg() {
                spans.push(Span::new(port, body));
                r.ws();
                if r.eat(b',').is_some() {
                    continue;
                }
                r.eat(b']')?;
                break;
            }
            let (mut kind, mut port, mut body) = (None, None, None);
            let (mut msg_ack, mut msg_epoch) = (None, None);
            r.ws();
            if r.eat(b'}').is_none() {
                loop {
                    r.ws();
                    let key = r.plain_str()?;
                    r.ws();
                    r.eat(b':')?;
                    r.ws();
                    let slot_str = match key {
                        "type" => Some(&mut kind),
                        "port" => Some(&mut port),
                        "body" => Some(&mut body),
                        _ => None,
                    };
                    if let Some(slot) = slot_str {
                        if slot.replace(r.plain_str()?).is_some() {
                            return None; // a duplicate field: serde's error to give
                        }
                    } else {
                        let slot = match key {
                            "ack" => &mut msg_ack,
                            "epoch" => &mut msg_epoch,
                            _ => return None,
                        };
                        if slot.replace(r.number()?).is_some() {
                            return None;
                        }
                    }
                    r.ws();
                    if r.eat(b',').is_some() {
                        continue;
                    }
                    r.eat(b'}')?;
                    break;
                }
            }
            match kind? {
                "msg" => {
                    ack = ack.max(msg_ack.unwrap_or(0));
                    spans.push(Span::new(range(port), range(body)));
                }
                "epoch" if epoch.is_none() && msg_epoch.is_some() => epoch = msg_epoch,
                _ => return None,
            }
            r.ws();
            if r.eat(b',').is_some() {
                continue;
            }
            r.eat(b']')?;
            break;
        }
    }
    r.ws();
    (r.i == r.s.len()).then(|| MsgBatch {
        pushes: Pushes::new(message.clone(), spans),
        ack,
        epoch,
    })
}

/// The switch writes each push as `{"type":"msg","port":P,"body":B}`: that shape is read by
/// comparing its fixed parts whole ([`Scan::usual_msg`]); any other (field order, spacing,
/// an `ack`) by [`msg_batch`]'s field loop.
const MSG_HEAD: &[u8] = b"\"type\":\"msg\",\"port\":\"";
const MSG_BODY: &[u8] = b",\"body\":\"";

/// A cursor over a JSON text for [`msg_batch`]: every method gives `None` where the text is
/// not what it reads (or is more than it reads).
struct Scan<'a> {
    s: &'a str,
    i: usize,
}

/// Whether `c` must be escaped in a JSON string: a quote, a backslash or a control
/// character.
fn special(c: u8) -> bool {
    c < 0x20 || c == b'"' || c == b'\\'
}

/// The index of the first [`special`] byte of `b`. Sixteen bytes at a time: the test of a
/// whole chunk has no early exit, so the compiler turns it into a few vector compares. The
/// place of the first special byte in the chunk that holds one, and the test of the last
/// fewer-than-16 bytes, are word-at-a-time bit tests ([`special_bits`]): no byte loops.
fn first_special(b: &[u8]) -> Option<usize> {
    let n = b.len();
    let mut at = 0;
    while let Some(chunk) = b.get(at..at + 16) {
        // As an array, so that the compiler knows the length (and vectorises the fold).
        let chunk: &[u8; 16] = chunk.try_into().expect("a 16-byte slice");
        if chunk.iter().fold(false, |hit, &c| hit | special(c)) {
            let low = special_bits(word(&chunk[..8]));
            let lane = if low != 0 {
                first_lane(low)
            } else {
                8 + first_lane(special_bits(word(&chunk[8..])))
            };
            return Some(at + lane);
        }
        at += 16;
    }
    // Fewer than 16 bytes left, every byte before `at` plain. The windows below may overlap
    // bytes already read: those are plain, so a window's first special byte is a new one.
    if n >= 8 {
        if n - at >= 8 {
            let bits = special_bits(word(&b[at..]));
            if bits != 0 {
                return Some(at + first_lane(bits));
            }
        }
        let bits = special_bits(word(&b[n - 8..]));
        (at < n && bits != 0).then(|| n - 8 + first_lane(bits))
    } else if n >= 4 {
        // Two 4-byte windows, [0, 4) and [n - 4, n), as the two halves of one word: lane l
        // of the high half is byte l + n - 8.
        let low = u32::from_le_bytes(b[..4].try_into().expect("4 bytes"));
        let high = u32::from_le_bytes(b[n - 4..].try_into().expect("4 bytes"));
        let bits = special_bits(u64::from(low) | u64::from(high) << 32);
        (bits != 0).then(|| match first_lane(bits) {
            lane @ 0..4 => lane,
            lane => lane + n - 8,
        })
    } else {
        b.iter().position(|&c| special(c))
    }
}

const LANES_ONE: u64 = 0x0101_0101_0101_0101;
const LANES_HIGH: u64 = LANES_ONE * 0x80;

/// The little-endian word of the first 8 bytes of `b`.
fn word(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
}

/// The high bit of each byte of `w` that is [`special`] — exact for the lowest such byte;
/// bytes above it may be marked wrongly (a subtraction's borrow runs upward), so only
/// [`first_lane`] of the result is meaningful.
fn special_bits(w: u64) -> u64 {
    // A byte below 0x20 borrows in `w - 0x20…` and has its high bit clear in `w`; a byte
    // equal to the quote (backslash) is zero after the XOR and borrows in `- 0x01…`.
    let control = w.wrapping_sub(LANES_ONE * 0x20) & !w;
    let quote = w ^ (LANES_ONE * u64::from(b'"'));
    let backslash = w ^ (LANES_ONE * u64::from(b'\\'));
    let quote = quote.wrapping_sub(LANES_ONE) & !quote;
    let backslash = backslash.wrapping_sub(LANES_ONE) & !backslash;
    (control | quote | backslash) & LANES_HIGH
}

/// The byte index of the lowest byte marked in `bits` (from [`special_bits`]).
fn first_lane(bits: u64) -> usize {
    (bits.trailing_zeros() / 8) as usize
}

/// Whether `b` holds no byte a JSON string must escape.
fn plain_bytes(b: &[u8]) -> bool {
    first_special(b).is_none()
}

impl<'a> Scan<'a> {
    fn ws(&mut self) {
        while matches!(
            self.s.as_bytes().get(self.i),
            Some(b' ' | b'\t' | b'\n' | b'\r')
        ) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.s.as_bytes().get(self.i) == Some(&c)).then(|| self.i += 1)
    }

    /// Whether the text here is `lit` (then skipped).
    fn literal(&mut self, lit: &[u8]) -> bool {
        let here = self.s.as_bytes().get(self.i..self.i + lit.len()) == Some(lit);
        if here {
            self.i += lit.len();
        }
        here
    }

    /// After a `{`: the rest of a push exactly as the switch writes it,
    /// `"type":"msg","port":P,"body":B}` with plain strings, as the ranges of P and B. Reads
    /// nothing (`None`) if the text is anything else.
    fn usual_msg(&mut self) -> Option<(Range<usize>, Range<usize>)> {
        let at = self.i;
        let read = (|| {
            if !self.literal(MSG_HEAD) {
                return None;
            }
            let port = self.plain_str_after_quote()?;
            if !self.literal(MSG_BODY) {
                return None;
            }
            let body = self.plain_str_after_quote()?;
            self.eat(b'}')?;
            Some((port, body))
        })();
        if read.is_none() {
            self.i = at;
        }
        read
    }

    /// A string without escapes or control characters.
    fn plain_str(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let range = self.plain_str_after_quote()?;
        // Both ends are next to ASCII quotes: char boundaries, checked in O(1).
        self.s.get(range)
    }

    /// The range of a plain string's content, its opening quote read ([`first_special`]).
    /// `None` if the first special byte is not the closing quote (an escape or a control
    /// character) or the text ends first.
    fn plain_str_after_quote(&mut self) -> Option<Range<usize>> {
        let b = self.s.as_bytes();
        let start = self.i;
        let end = start + first_special(&b[start..])?;
        if b[end] != b'"' {
            return None;
        }
        self.i = end + 1;
        Some(start..end)
    }

    /// An unsigned integer as JSON writes it (no leading zero, no sign, fraction or
    /// exponent), within u64.
    fn number(&mut self) -> Option<u64> {
        let start = self.i;
        let mut v: u64 = 0;
        while let Some(&b @ b'0'..=b'9') = self.s.as_bytes().get(self.i) {
            v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
            self.i += 1;
        }
        let n = self.i - start;
        let fits = n > 0 && !(n > 1 && self.s.as_bytes()[start] == b'0');
        let more = matches!(self.s.as_bytes().get(self.i), Some(b'.' | b'e' | b'E'));
        (fits && !more).then_some(v)
    }
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
    use crate::types::Event;

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

    /// What serde writes for a request: the oracle of the hand-written [`request_text`].
    #[derive(serde::Serialize)]
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

    fn serde_text(
        op: Op,
        id: u64,
        names: &[String],
        messages: &[Message],
        subscribe: bool,
    ) -> String {
        serde_json::to_string(&RequestWire {
            op: op.name(),
            id,
            ports: matches!(op, Op::RegPort | Op::UnRegPort | Op::QueryPort).then_some(names),
            nodes: (op == Op::QueryNode).then_some(names),
            messages: (op == Op::SendMsg).then_some(messages),
            subscribe: op == Op::RegPort && subscribe,
        })
        .unwrap()
    }

    #[test]
    fn hand_written_requests_are_serdes_byte_for_byte() {
        let odd = [
            "",
            "plain",
            "q\"uote",
            "back\\slash",
            "nl\n tab\t cr\r",
            "\u{1}\u{1f}\u{7f}",
            "é ü 雪 🎉",
            "/slash/",
            "\u{8}\u{c}",
            "x\"\\\u{0}",
        ];
        let names: Vec<String> = odd.iter().map(|s| s.to_string()).collect();
        let mut messages: Vec<Message> = odd.iter().map(|s| Message::to(*s, *s)).collect();
        messages.push(Message::to_many(odd, "many"));
        messages.push(Message {
            port: Some("both".into()),
            ports: Some(vec!["a".into(), "b\"".into()]),
            body: "b".into(),
        });
        messages.push(Message {
            port: None,
            ports: None,
            body: "none".into(),
        });
        for op in [
            Op::RegPort,
            Op::UnRegPort,
            Op::SendMsg,
            Op::QueryPort,
            Op::QueryNode,
            Op::Relet,
        ] {
            for (id, sub) in [
                (0, false),
                (1, true),
                (u64::MAX, true),
                (1_000_000_007, false),
            ] {
                assert_eq!(
                    request_text(op, id, &names, &messages, sub),
                    serde_text(op, id, &names, &messages, sub),
                    "{op:?} {id} {sub}"
                );
                assert_eq!(
                    request_text(op, id, &[], &[], sub),
                    serde_text(op, id, &[], &[], sub)
                );
            }
        }
    }

    /// A batch's events, highest ack and epoch.
    type Read = (Vec<Event>, u64, Option<u64>);

    /// What [`parse`] makes of a push batch of `msg` and `epoch` elements (`None`: an error,
    /// or other elements).
    fn oracle(text: &str) -> Option<Read> {
        let Ok(Incoming::Pushes(batch)) = parse(text) else {
            return None;
        };
        let (mut events, mut ack, mut epoch) = (Vec::new(), 0, None);
        for p in batch {
            match p.kind.as_ref() {
                "msg" => {
                    ack = ack.max(p.ack.unwrap_or(0));
                    events.push(Event::Push {
                        port: p.port.into_owned().into(),
                        body: p.body.map(|b| b.into_owned()).unwrap_or_default().into(),
                    });
                }
                "epoch" => epoch = p.epoch.or(epoch),
                _ => return None,
            }
        }
        Some((events, ack, epoch))
    }

    fn batch(text: &str) -> Option<Read> {
        msg_batch(&SharedStr::from(text), Vec::new()).map(|b| (b.pushes.collect(), b.ack, b.epoch))
    }

    #[test]
    fn pushed_bodies_are_slices_of_the_message_and_short_strings_copies() {
        let long = "0123456789".repeat(4);
        let message = SharedStr::from(format!(
            r#"[{{"type":"msg","port":"inbox","body":"{long}"}},{{"type":"msg","body":"{long}x"}},{{"type":"msg","port":"p","body":"two"}}]"#
        ));
        let within = |s: &str| {
            let (m, p) = (message.as_ptr() as usize, s.as_ptr() as usize);
            p >= m && p + s.len() <= m + message.len()
        };
        let events: Vec<Event> = msg_batch(&message, Vec::new())
            .expect("a message batch")
            .pushes
            .collect();
        let [Event::Push { port, body }, Event::Push {
            port: none,
            body: body_x,
        }, Event::Push { port: p, body: two }] = &events[..]
        else {
            panic!("three pushes: {events:?}")
        };
        assert_eq!(
            (port.as_str(), body.as_str(), none.as_str(), body_x.as_str()),
            ("inbox", long.as_str(), "", format!("{long}x").as_str())
        );
        assert_eq!((p.as_str(), two.as_str()), ("p", "two"));
        // Both reading paths (the usual shape, and the field loop for a push without a
        // port): long bodies share the message, short strings are inline copies (no
        // reference count to take and give back).
        assert!(within(body) && within(body_x), "{events:?}");
        assert!(body.is_shared() && body_x.is_shared());
        assert!(![port, none, p, two].iter().any(|s| s.is_shared()));
    }

    #[test]
    fn a_batch_is_written_into_the_vector_handed_in() {
        let message = SharedStr::from(r#"[{"type":"msg","port":"p","body":"b"}]"#);
        let mut spare = msg_batch(&message, Vec::new())
            .expect("a batch")
            .pushes
            .into_spans();
        spare.reserve(100);
        let (at, capacity) = (spare.as_ptr(), spare.capacity());
        let pushes = msg_batch(&message, spare).expect("a batch").pushes;
        assert_eq!(pushes.len(), 1, "cleared first");
        let back = pushes.into_spans();
        assert_eq!(
            (back.as_ptr(), back.capacity()),
            (at, capacity),
            "no new allocation"
        );
    }

    #[test]
    fn message_batches_read_without_serde_read_as_serde_reads_them() {
        let fast = [
            r#"[]"#,
            r#"[{"type":"msg","port":"inbox","body":"0000000000000001xxxx"}]"#,
            r#"[{"type":"msg","port":"a","body":"x"},{"type":"msg","port":"","body":""}]"#,
            r#"[{"type":"epoch","epoch":3},{"type":"msg","port":"a","body":"é 雪 /"}]"#,
            r#"[{"type":"msg","port":"a","body":"x","ack":7},{"type":"msg","ack":0,"body":"y","port":"b"}]"#,
            " [ { \"type\" : \"msg\" , \"port\" : \"a\" , \"body\" : \"b\" } ]\n",
            r#"[{"type":"msg","port":"a"},{"type":"msg","body":"b"},{"body":"c","type":"msg"}]"#,
            r#"[{"type":"msg","port":"a","body":"x","ack":18446744073709551615}]"#,
            r#"[{"type":"msg","port":"a","body":"x","epoch":4}]"#,
        ];
        for t in fast {
            let got = batch(t);
            assert!(got.is_some(), "{t} is read without serde");
            assert_eq!(got, oracle(t), "{t}");
        }
        let slow = [
            r#"[{"type":"msg","port":"a","body":"q\"uote"}]"#,
            r#"[{"type":"msg","port":"a\u0041","body":"x"}]"#,
            r#"[{"type":"released","port":"a","reason":"unregistered"}]"#,
            r#"[{"type":"msg","port":"a","body":"x"},{"type":"session","session":4}]"#,
            r#"[{"type":"msg","port":"a","body":"x","extra":1}]"#,
            r#"[{"type":"msg","port":"a","port":"b","body":"x"}]"#,
            r#"[{"type":"msg","port":"a","body":"x","ack":01}]"#,
            r#"[{"type":"msg","port":"a","body":"x","ack":1.5}]"#,
            r#"[{"type":"msg","port":"a","body":"x","ack":-1}]"#,
            r#"[{"type":"msg","port":"a","body":"x","ack":18446744073709551616}]"#,
            r#"[{"type":"msg","port":"a","body":"x"}] x"#,
            r#"[{"type":"msg","port":"a","body":"x"},]"#,
            r#"[{"type":"msg","port":"a","body":"x"}"#,
            r#"[{"type":"msg","port":"a","body":"x",}]"#,
            r#"[{"port":"a","body":"x"}]"#,
            r#"[{"type":"msg","port":null,"body":"x"}]"#,
            r#"[{"type":"epoch"}]"#,
            r#"[{"type":"epoch","epoch":1},{"type":"epoch","epoch":2}]"#,
            "[{\"type\":\"msg\",\"port\":\"a\",\"body\":\"tab\there\"}]",
            r#"{"id":1,"registered":1,"failed":[]}"#,
            "",
        ];
        for t in slow {
            assert_eq!(batch(t), None, "{t} is left to serde");
        }
    }

    /// A xorshift64 sequence from `seed` (not 0): repeatable test data.
    fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    /// The first byte a JSON string must escape (a control character, a quote, a
    /// backslash), found one byte at a time: the oracle, written apart from `special`.
    fn naive_first_special(b: &[u8]) -> Option<usize> {
        b.iter().position(|&c| c < 0x20 || c == b'"' || c == b'\\')
    }

    #[test]
    fn the_string_scan_finds_the_first_of_several_special_bytes_among_high_and_edge_bytes() {
        // The word-at-a-time test marks bytes above the first special one wrongly when a
        // borrow runs on: strings dense in specials, bytes next to them in value and bytes
        // of 0x80 and over check that only the first mark is trusted.
        let alphabet = [
            0x00, 0x01, 0x1F, 0x20, 0x21, 0x22, 0x23, 0x5B, 0x5C, 0x5D, 0x7F, 0x80, 0x9F, 0xA0,
            0xA2, 0xDC, 0xFF, b'a',
        ];
        let mut next = xorshift(0x2545_F491_4F6C_DD1Du64);
        for _ in 0..50_000 {
            let len = (next() % 70) as usize;
            // Mostly plain bytes, so the first special one falls at every place.
            let density = 1 + next() % 24;
            let b: Vec<u8> = (0..len)
                .map(|_| {
                    if next() % density == 0 {
                        alphabet[(next() % alphabet.len() as u64) as usize]
                    } else {
                        [b'a', 0x80, 0xFF, 0x21, 0x23, 0x5D][(next() % 6) as usize]
                    }
                })
                .collect();
            assert_eq!(first_special(&b), naive_first_special(&b), "{b:?}");
        }
    }

    #[test]
    fn the_string_scan_finds_the_first_special_byte_wherever_it_is() {
        let mut next = xorshift(0x9E37_79B9_7F4A_7C15u64);
        // Lengths across memchr's 16- and 32-byte steps; bytes mostly plain, with a
        // special one (or one next to a special value) at a random place.
        for _ in 0..20_000 {
            let len = (next() % 80) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| b' ' + (next() % 95) as u8).collect();
            if len > 0 && next() % 2 == 0 {
                let at = (next() as usize) % len;
                b[at] = [b'"', b'\\', 0x1F, 0x00, 0x20, 0x21, 0x5B, 0x5D, 0x7F, 0xC3]
                    [(next() % 10) as usize];
            }
            assert_eq!(first_special(&b), naive_first_special(&b), "{b:?}");
            assert_eq!(plain_bytes(&b), naive_first_special(&b).is_none(), "{b:?}");
        }
        for len in 0..40 {
            let body = "é".repeat(len / 2) + &"x".repeat(len % 2);
            let ok = format!(r#"[{{"type":"msg","port":"p","body":"{body}"}}]"#);
            assert_eq!(batch(&ok), oracle(&ok));
            assert!(batch(&ok).is_some());
            for at in 0..=body.len() {
                if !body.is_char_boundary(at) {
                    continue;
                }
                for special in ["\\\"", "\\n", "\t"] {
                    let t = format!(
                        r#"[{{"type":"msg","port":"p","body":"{}{special}{}"}}]"#,
                        &body[..at],
                        &body[at..]
                    );
                    assert_eq!(batch(&t), None, "{t}");
                }
            }
        }
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
