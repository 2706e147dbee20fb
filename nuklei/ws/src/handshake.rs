//! The server side of the opening handshake (RFC 6455 §4.2).
//!
//! [`negotiate`] validates an upgrade request given as its method, HTTP minor version and
//! header lines, and [`write_response`] / [`write_rejection`] write the reply head. Nothing
//! here allocates except appending to the caller's output buffer.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// The only protocol version this server speaks.
pub const WEBSOCKET_VERSION: &str = "13";

/// Appended to the client key before hashing (§1.3).
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why an upgrade request is refused. [`status`](Self::status) gives the HTTP status to
/// answer with, [`reason`](Self::reason) a short text for the response and the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("method must be GET")]
    MethodNotGet,
    #[error("HTTP/1.1 or later required")]
    HttpVersion,
    #[error("missing Upgrade: websocket")]
    NotWebSocketUpgrade,
    #[error("Connection header must contain the upgrade token")]
    MissingConnectionUpgrade,
    /// Answered with 426 and `Sec-WebSocket-Version: 13` so the client can retry (§4.4).
    #[error("unsupported or missing Sec-WebSocket-Version")]
    UnsupportedVersion,
    #[error("missing Sec-WebSocket-Key")]
    MissingKey,
    #[error("Sec-WebSocket-Key must be the base64 encoding of 16 bytes")]
    InvalidKey,
    #[error("more than one Sec-WebSocket-Key")]
    DuplicateKey,
}

impl HandshakeError {
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::UnsupportedVersion => 426,
            _ => 400,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            HandshakeError::MethodNotGet => "method must be GET",
            HandshakeError::HttpVersion => "HTTP/1.1 or later required",
            HandshakeError::NotWebSocketUpgrade => "missing Upgrade: websocket",
            HandshakeError::MissingConnectionUpgrade => "Connection must contain upgrade",
            HandshakeError::UnsupportedVersion => "unsupported Sec-WebSocket-Version",
            HandshakeError::MissingKey => "missing Sec-WebSocket-Key",
            HandshakeError::InvalidKey => "invalid Sec-WebSocket-Key",
            HandshakeError::DuplicateKey => "duplicate Sec-WebSocket-Key",
        }
    }
}

/// A validated upgrade: what goes into the 101 response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted<'p> {
    /// `Sec-WebSocket-Accept` value: base64(sha1(key ++ GUID)), always 28 ASCII bytes.
    pub accept: [u8; 28],
    /// The chosen subprotocol, borrowed from the server's configured list.
    pub protocol: Option<&'p str>,
}

impl Accepted<'_> {
    pub fn accept_str(&self) -> &str {
        // Base64 output is ASCII by construction.
        std::str::from_utf8(&self.accept).expect("base64 is ASCII")
    }
}

/// Validates a WebSocket upgrade request.
///
/// * `method`: the request method (case-sensitive, as HTTP methods are).
/// * `minor_version`: the HTTP/1.x minor version, as httparse reports it (1 for HTTP/1.1).
/// * `headers`: the header lines in order; repeated list headers (`Connection`,
///   `Sec-WebSocket-Protocol`, …) are combined as HTTP requires.
/// * `protocols`: the server's subprotocols in order of preference; the first one the client
///   also offers is chosen. With none configured, no subprotocol is selected.
///
/// `Sec-WebSocket-Extensions` is ignored on purpose: no extension (in particular
/// permessage-deflate) is negotiated, so the response never carries one.
pub fn negotiate<'h, 'p, I, P>(
    method: &str,
    minor_version: u8,
    headers: I,
    protocols: &'p [P],
) -> Result<Accepted<'p>, HandshakeError>
where
    I: IntoIterator<Item = (&'h str, &'h [u8])>,
    P: AsRef<str>,
{
    if method != "GET" {
        return Err(HandshakeError::MethodNotGet);
    }
    if minor_version < 1 {
        return Err(HandshakeError::HttpVersion);
    }
    let mut upgrade = false;
    let mut connection = false;
    let mut version_ok = false;
    let mut version_bad = false;
    let mut key: Option<&[u8]> = None;
    let mut duplicate_key = false;
    // Index into `protocols` of the best (most server-preferred) match so far.
    let mut best: Option<usize> = None;

    for (name, value) in headers {
        if name.eq_ignore_ascii_case("upgrade") {
            upgrade |= tokens(value).any(|t| t.eq_ignore_ascii_case(b"websocket"));
        } else if name.eq_ignore_ascii_case("connection") {
            connection |= tokens(value).any(|t| t.eq_ignore_ascii_case(b"upgrade"));
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            // Any value other than 13 (even alongside a 13) means a confused client.
            for t in tokens(value) {
                if t == WEBSOCKET_VERSION.as_bytes() {
                    version_ok = true;
                } else {
                    version_bad = true;
                }
            }
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            duplicate_key |= key.is_some();
            key = Some(trim(value));
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            for offered in tokens(value) {
                let found = protocols
                    .iter()
                    .position(|p| p.as_ref().as_bytes() == offered);
                if let Some(i) = found {
                    best = Some(best.map_or(i, |b| b.min(i)));
                }
            }
        }
    }

    if !upgrade {
        return Err(HandshakeError::NotWebSocketUpgrade);
    }
    if !connection {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    if !version_ok || version_bad {
        return Err(HandshakeError::UnsupportedVersion);
    }
    if duplicate_key {
        return Err(HandshakeError::DuplicateKey);
    }
    let key = key.ok_or(HandshakeError::MissingKey)?;
    if !is_valid_key(key) {
        return Err(HandshakeError::InvalidKey);
    }
    Ok(Accepted {
        accept: accept_key(key),
        protocol: best.map(|i| protocols[i].as_ref()),
    })
}

/// A valid key is 24 base64 characters that decode to exactly 16 bytes (§4.1).
fn is_valid_key(key: &[u8]) -> bool {
    let mut decoded = [0u8; 18];
    key.len() == 24 && matches!(STANDARD.decode_slice(key, &mut decoded), Ok(16))
}

/// Computes `Sec-WebSocket-Accept` for a client key (§4.2.2 step 5.4).
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key);
    sha.update(ACCEPT_GUID);
    let mut out = [0u8; 28];
    let n = STANDARD
        .encode_slice(sha.digest().bytes(), &mut out)
        .expect("20 bytes encode to 28");
    debug_assert_eq!(n, 28);
    out
}

/// Writes the complete `101 Switching Protocols` response head, blank line included.
pub fn write_response(accepted: &Accepted<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(&accepted.accept);
    if let Some(protocol) = accepted.protocol {
        out.extend_from_slice(b"\r\nSec-WebSocket-Protocol: ");
        out.extend_from_slice(protocol.as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
}

/// Writes a complete refusal (head and a one-line text body) for a failed handshake. The
/// connection should be closed afterwards, since the request may not have been understood.
pub fn write_rejection(error: &HandshakeError, out: &mut Vec<u8>) {
    let head: &[u8] = match error.status() {
        426 => b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n",
        _ => b"HTTP/1.1 400 Bad Request\r\n",
    };
    out.extend_from_slice(head);
    let reason = error.reason().as_bytes();
    out.extend_from_slice(b"Content-Type: text/plain\r\nConnection: close\r\nContent-Length: ");
    // Reasons are short; itoa would be a dependency for three digits.
    let len = reason.len() + 2;
    debug_assert!(len < 1000);
    if len >= 100 {
        out.push(b'0' + (len / 100) as u8);
    }
    if len >= 10 {
        out.push(b'0' + (len / 10 % 10) as u8);
    }
    out.push(b'0' + (len % 10) as u8);
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(reason);
    out.extend_from_slice(b"\r\n");
}

/// Splits a comma-separated header value into trimmed, non-empty tokens.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .filter(|t| !t.is_empty())
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const NO_PROTOCOLS: &[&str] = &[];

    fn request(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut h = vec![
            ("Host", "example.com"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", KEY),
            ("Sec-WebSocket-Version", "13"),
        ];
        for &(name, value) in extra {
            h.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            if !value.is_empty() {
                h.push((name, value));
            }
        }
        h
    }

    fn run<'p>(
        method: &str,
        version: u8,
        headers: &[(&str, &str)],
        protocols: &'p [&'p str],
    ) -> Result<Accepted<'p>, HandshakeError> {
        negotiate(
            method,
            version,
            headers.iter().map(|&(n, v)| (n, v.as_bytes())),
            protocols,
        )
    }

    #[test]
    fn valid_upgrade_computes_the_rfc_accept_key() {
        let accepted = run("GET", 1, &request(&[]), NO_PROTOCOLS).unwrap();
        // The example of RFC 6455 §1.3.
        assert_eq!(accepted.accept_str(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(
            accepted.accept_str(),
            tungstenite::handshake::derive_accept_key(KEY.as_bytes())
        );
        assert_eq!(accepted.protocol, None);
    }

    #[test]
    fn method_must_be_get_400() {
        let err = run("POST", 1, &request(&[]), NO_PROTOCOLS).unwrap_err();
        assert_eq!((err, err.status()), (HandshakeError::MethodNotGet, 400));
    }

    #[test]
    fn http_1_0_is_rejected_400() {
        let err = run("GET", 0, &request(&[]), NO_PROTOCOLS).unwrap_err();
        assert_eq!((err, err.status()), (HandshakeError::HttpVersion, 400));
    }

    #[test]
    fn upgrade_must_contain_websocket_case_insensitive_400() {
        for ok in ["WebSocket", "websocket", "h2c, WEBSOCKET"] {
            assert!(
                run("GET", 1, &request(&[("Upgrade", ok)]), NO_PROTOCOLS).is_ok(),
                "{ok}"
            );
        }
        for bad in ["", "h2c", "websockets"] {
            let err = run("GET", 1, &request(&[("Upgrade", bad)]), NO_PROTOCOLS).unwrap_err();
            assert_eq!(
                (err, err.status()),
                (HandshakeError::NotWebSocketUpgrade, 400),
                "{bad}"
            );
        }
    }

    #[test]
    fn connection_must_contain_upgrade_token_400() {
        for ok in ["upgrade", "keep-alive, Upgrade", "keep-alive,UPGRADE "] {
            assert!(
                run("GET", 1, &request(&[("Connection", ok)]), NO_PROTOCOLS).is_ok(),
                "{ok}"
            );
        }
        // Repeated Connection lines are one list.
        let mut h = request(&[("Connection", "keep-alive")]);
        h.push(("connection", "upgrade"));
        assert!(run("GET", 1, &h, NO_PROTOCOLS).is_ok());
        for bad in ["", "keep-alive", "upgraded"] {
            let err = run("GET", 1, &request(&[("Connection", bad)]), NO_PROTOCOLS).unwrap_err();
            assert_eq!(
                (err, err.status()),
                (HandshakeError::MissingConnectionUpgrade, 400)
            );
        }
    }

    #[test]
    fn version_other_than_13_or_missing_is_426_with_version_header() {
        for bad in ["", "8", "12, 13", "14"] {
            let err = run(
                "GET",
                1,
                &request(&[("Sec-WebSocket-Version", bad)]),
                NO_PROTOCOLS,
            )
            .unwrap_err();
            assert_eq!(
                (err, err.status()),
                (HandshakeError::UnsupportedVersion, 426),
                "{bad}"
            );
        }
        let mut out = Vec::new();
        write_rejection(&HandshakeError::UnsupportedVersion, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"));
    }

    #[test]
    fn key_must_be_base64_of_16_bytes_400() {
        let err = run(
            "GET",
            1,
            &request(&[("Sec-WebSocket-Key", "")]),
            NO_PROTOCOLS,
        )
        .unwrap_err();
        assert_eq!((err, err.status()), (HandshakeError::MissingKey, 400));
        for bad in [
            "dGhlIHNhbXBsZSBub25jZQ",   // unpadded
            "dGhlIHNhbXBsZSBub25jZXg=", // 17 bytes
            "dGhlIHNhbXBsZSBub25j",     // 15 bytes
            "dGhlIHNhbXBsZSBub25jZQ=!", // not base64
        ] {
            let err = run(
                "GET",
                1,
                &request(&[("Sec-WebSocket-Key", bad)]),
                NO_PROTOCOLS,
            )
            .unwrap_err();
            assert_eq!(
                (err, err.status()),
                (HandshakeError::InvalidKey, 400),
                "{bad}"
            );
        }
        let mut h = request(&[]);
        h.push(("Sec-WebSocket-Key", KEY));
        assert_eq!(
            run("GET", 1, &h, NO_PROTOCOLS),
            Err(HandshakeError::DuplicateKey)
        );
        // Surrounding whitespace is not part of the key.
        let padded = run(
            "GET",
            1,
            &request(&[("Sec-WebSocket-Key", " dGhlIHNhbXBsZSBub25jZQ== ")]),
            NO_PROTOCOLS,
        );
        assert_eq!(padded.unwrap().accept_str(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn subprotocol_is_the_first_server_preferred_match() {
        let server = &["chat.v2", "chat"];
        let h = request(&[("Sec-WebSocket-Protocol", "chat, chat.v2")]);
        assert_eq!(run("GET", 1, &h, server).unwrap().protocol, Some("chat.v2"));
        // Split across lines, still one list.
        let mut h = request(&[("Sec-WebSocket-Protocol", "x")]);
        h.push(("Sec-WebSocket-Protocol", "chat"));
        assert_eq!(run("GET", 1, &h, server).unwrap().protocol, Some("chat"));
        let h = request(&[("Sec-WebSocket-Protocol", "other")]);
        assert_eq!(run("GET", 1, &h, server).unwrap().protocol, None);
    }

    #[test]
    fn no_subprotocol_when_none_configured() {
        let h = request(&[("Sec-WebSocket-Protocol", "chat")]);
        assert_eq!(run("GET", 1, &h, NO_PROTOCOLS).unwrap().protocol, None);
    }

    #[test]
    fn permessage_deflate_is_declined_never_echoed() {
        let h = request(&[(
            "Sec-WebSocket-Extensions",
            "permessage-deflate; client_max_window_bits",
        )]);
        let accepted = run("GET", 1, &h, NO_PROTOCOLS).unwrap();
        let mut out = Vec::new();
        write_response(&accepted, &mut out);
        assert!(!String::from_utf8(out)
            .unwrap()
            .to_ascii_lowercase()
            .contains("extensions"));
    }

    #[test]
    fn response_head_is_a_complete_101() {
        let h = request(&[("Sec-WebSocket-Protocol", "chat")]);
        let accepted = run("GET", 1, &h, &["chat"]).unwrap();
        let mut out = b"prefix".to_vec();
        write_response(&accepted, &mut out);
        assert_eq!(
            out,
            b"prefixHTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
        );
    }

    #[test]
    fn rejection_is_a_complete_400_with_reason_body() {
        let mut out = Vec::new();
        write_rejection(&HandshakeError::InvalidKey, &mut out);
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert_eq!(body, "invalid Sec-WebSocket-Key\r\n");
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }
}
