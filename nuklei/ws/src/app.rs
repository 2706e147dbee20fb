//! The stream protocol between the ws nukleus and an application nukleus (echo, the port
//! switch, ...). One exchange per WebSocket connection: ws opens the *initial* stream (client
//! → app), the application answers on the *reply* stream (app → client).
//!
//! # ws → app (initial stream)
//!
//! * `BEGIN`, extension `[protocol len:u8][subprotocol][request head]`: the negotiated
//!   subprotocol (empty if none) then the http request head of the upgrade request, in the
//!   format of `nukleus_http::ext` (method, target with path and query, headers such as
//!   `Authorization`). ws pre-grants the reply window with a `WINDOW` on the reply stream
//!   right after the `BEGIN`.
//! * `DATA`: one fragment of a message. Flags: [`FLAG_INIT`] on a message's first fragment,
//!   [`FLAG_FIN`] on its last (a one-fragment message carries both; a fragment may be empty).
//!   Extension: one byte, the message kind ([`KIND_TEXT`] or [`KIND_BINARY`]). Text is
//!   valid UTF-8 once the message is complete (a fragment may end inside a code point). ws
//!   sends message bytes only within the window the application grants on this stream;
//!   client bytes it cannot forward stay unacknowledged toward http, which slows the client.
//! * `FLUSH` with extension [`PING`]: the client sent a ping (ws answers the pong itself);
//!   applications may use it as a heartbeat.
//! * `END`: the client closed the connection normally (close handshake).
//! * `ABORT`: the connection was lost or failed (protocol error, network failure).
//!
//! # app → ws (reply stream)
//!
//! * `BEGIN`: the application accepts the connection (extension ignored). ws sends the `101
//!   Switching Protocols` only now, so an application can still refuse the upgrade.
//! * `END` before any `BEGIN`, extension [`encode_refusal`] `[status:u16 LE][reason utf8]`:
//!   the application refuses the connection; the client gets that HTTP status (400 ..= 599,
//!   else 500) with the reason as a `text/plain` body, e.g. 401 for a missing token. Or
//!   [`encode_refusal_response`] `[status:u16 LE][0][header lines][empty line][body]`: a
//!   complete answer, 300 ..= 599, with the application's headers (a `307` with `Location`,
//!   a `503` with `Retry-After`) and body. `ABORT` before `BEGIN` (or no answer within ws's
//!   close timeout) is a 503.
//! * `DATA`: messages in the same format as above; ws writes each `DATA` as one WebSocket
//!   frame (text/binary on `FLAG_INIT`, continuation otherwise, FIN bit from `FLAG_FIN`). The
//!   application must stay within the window ws grants; ws grants it only as fast as http
//!   (hence the client) takes the bytes, so a client that stops reading slows the
//!   application and memory per connection stays bounded.
//! * `END`, optional extension `[code:u16 LE][reason utf8]` ([`encode_close_ext`]): ws sends
//!   that close frame (default 1000), waits for the client's close (bounded by a timeout) and
//!   closes the connection. Invalid codes are replaced by 1011.
//! * `ABORT`: ws closes the connection with 1011 (internal error).
//! * `RESET` on the initial stream: the application refuses further messages; ws closes the
//!   connection with 1011 too.
//!
//! If the client starts the close handshake while the reply stream is open, ws sends `END` on
//! the initial stream and answers the client's close once the application ends its reply (so
//! messages already in flight are still delivered), or after the close timeout.

pub use streams::frame::{FLAG_FIN, FLAG_INIT};

use crate::session::MessageKind;

/// DATA extension byte for a text message.
pub const KIND_TEXT: u8 = 1;
/// DATA extension byte for a binary message.
pub const KIND_BINARY: u8 = 2;
/// FLUSH extension on the initial stream: the client pinged.
pub const PING: &[u8] = b"ping";

/// The END extension that refuses a connection before accepting it: `[status:u16 LE][reason]`.
pub fn encode_refusal(out: &mut Vec<u8>, status: u16, reason: &str) {
    out.extend_from_slice(&status.to_le_bytes());
    out.extend_from_slice(reason.as_bytes());
}

/// The END extension that refuses a connection with a complete answer:
/// `[status:u16 LE][0]`, then `Name: value\n` per header, an empty line `\n`, and the body.
/// ws adds `Content-Length`; header lines with CR or LF in them are left out.
pub fn encode_refusal_response(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) {
    out.extend_from_slice(&status.to_le_bytes());
    out.push(0);
    for (name, value) in headers {
        let line_safe = |t: &str| !t.contains(['\r', '\n']);
        if !name.is_empty() && !name.contains(':') && line_safe(name) && line_safe(value) {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.push(b'\n');
        }
    }
    out.push(b'\n');
    out.extend_from_slice(body);
}

/// A refusal with a complete answer (see [`encode_refusal_response`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusalResponse {
    /// 300 ..= 599 (else 500).
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Parses a refusal extension in the complete-answer form; `None` for the short form (read
/// that with [`parse_refusal`]). A header line without `: ` is left out.
pub fn parse_refusal_response(ext: &[u8]) -> Option<RefusalResponse> {
    let [a, b, 0, rest @ ..] = ext else {
        return None;
    };
    let status = u16::from_le_bytes([*a, *b]);
    let status = if (300..=599).contains(&status) {
        status
    } else {
        500
    };
    let mut headers = Vec::new();
    let mut rest = rest;
    // Without an empty line, what there is, is the body.
    while let Some(end) = rest.iter().position(|&c| c == b'\n') {
        let (line, after) = (&rest[..end], &rest[end + 1..]);
        rest = after;
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = std::str::from_utf8(line)
            .ok()
            .and_then(|l| l.split_once(": "))
        {
            if !name.is_empty() && !name.contains([':', '\r']) && !value.contains('\r') {
                headers.push((name.to_string(), value.to_string()));
            }
        }
    }
    Some(RefusalResponse {
        status,
        headers,
        body: rest.to_vec(),
    })
}

/// Parses a refusal extension; a missing or out-of-range status reads as 500.
pub fn parse_refusal(ext: &[u8]) -> (u16, &str) {
    let status = match ext {
        [a, b, ..] => u16::from_le_bytes([*a, *b]),
        _ => 500,
    };
    let status = if (400..=599).contains(&status) {
        status
    } else {
        500
    };
    let reason = ext
        .get(2..)
        .and_then(|r| std::str::from_utf8(r).ok())
        .unwrap_or("");
    (status, reason)
}

/// The DATA extension for a message kind.
pub fn kind_ext(kind: MessageKind) -> &'static [u8] {
    match kind {
        MessageKind::Text => &[KIND_TEXT],
        MessageKind::Binary => &[KIND_BINARY],
    }
}

/// The message kind in a DATA extension; anything but [`KIND_TEXT`] is binary.
pub fn parse_kind(ext: &[u8]) -> MessageKind {
    match ext.first() {
        Some(&KIND_TEXT) => MessageKind::Text,
        _ => MessageKind::Binary,
    }
}

/// Appends the BEGIN extension ws sends to an application.
pub fn encode_begin(out: &mut Vec<u8>, protocol: Option<&str>, request_head: &[u8]) {
    let protocol = protocol.unwrap_or("").as_bytes();
    let protocol = &protocol[..protocol.len().min(255)];
    out.push(protocol.len() as u8);
    out.extend_from_slice(protocol);
    out.extend_from_slice(request_head);
}

/// A BEGIN extension from ws, read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BeginEx<'a> {
    /// The negotiated subprotocol, if any.
    pub protocol: Option<&'a str>,
    /// The upgrade request head; parse it with `nukleus_http::ext::RequestHead::parse`.
    pub request_head: &'a [u8],
}

impl<'a> BeginEx<'a> {
    /// `None` if the extension is malformed.
    pub fn parse(ext: &'a [u8]) -> Option<BeginEx<'a>> {
        let (&len, rest) = ext.split_first()?;
        let (protocol, request_head) = rest.split_at_checked(len as usize)?;
        let protocol = std::str::from_utf8(protocol).ok()?;
        Some(BeginEx {
            protocol: (!protocol.is_empty()).then_some(protocol),
            request_head,
        })
    }
}

/// Appends an END extension asking ws to close with `code` and `reason`.
pub fn encode_close_ext(out: &mut Vec<u8>, code: u16, reason: &str) {
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(reason.as_bytes());
}

/// Reads an END extension: `(code, reason)`; an empty extension means 1000. A code that may
/// not be sent on the wire becomes 1011; a reason that is not UTF-8 is dropped.
pub fn parse_close_ext(ext: &[u8]) -> (u16, &str) {
    let Some((code, reason)) = ext.split_at_checked(2) else {
        return (crate::close_code::NORMAL, "");
    };
    let code = u16::from_le_bytes([code[0], code[1]]);
    let code = if crate::is_valid_close_code(code) {
        code
    } else {
        crate::close_code::INTERNAL_ERROR
    };
    (code, std::str::from_utf8(reason).unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn begin_extensions_round_trip_with_and_without_subprotocol() {
        let mut out = Vec::new();
        encode_begin(&mut out, Some("chat"), b"\x01\x03GET");
        let ex = BeginEx::parse(&out).unwrap();
        assert_eq!(ex.protocol, Some("chat"));
        assert_eq!(ex.request_head, b"\x01\x03GET");
        out.clear();
        encode_begin(&mut out, None, b"head");
        let ex = BeginEx::parse(&out).unwrap();
        assert_eq!((ex.protocol, ex.request_head), (None, &b"head"[..]));
        assert_eq!(BeginEx::parse(&[5, b'a']), None);
        assert_eq!(BeginEx::parse(&[]), None);
    }

    #[test]
    fn close_extensions_default_to_1000_and_replace_invalid_codes() {
        assert_eq!(parse_close_ext(&[]), (1000, ""));
        let mut out = Vec::new();
        encode_close_ext(&mut out, 4001, "bye");
        assert_eq!(parse_close_ext(&out), (4001, "bye"));
        out.clear();
        encode_close_ext(&mut out, 1005, "");
        assert_eq!(parse_close_ext(&out).0, 1011);
        assert_eq!(parse_close_ext(&[0xE8, 0x03, 0xFF]), (1000, ""));
    }

    #[test]
    fn kinds_map_to_one_byte_extensions() {
        assert_eq!(parse_kind(kind_ext(MessageKind::Text)), MessageKind::Text);
        assert_eq!(
            parse_kind(kind_ext(MessageKind::Binary)),
            MessageKind::Binary
        );
        assert_eq!(parse_kind(&[]), MessageKind::Binary);
    }
}
