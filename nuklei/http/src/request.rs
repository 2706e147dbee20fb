//! Parsing one request head with httparse and deciding everything the nukleus needs from it:
//! body framing, connection persistence, expectations, upgrade, route. Sans-I/O.

use crate::chunked::ChunkedDecoder;
use crate::ext;

/// Request limits, each answered with its own status when exceeded.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Request line plus headers; beyond it: 431.
    pub max_header_bytes: usize,
    /// Header fields; beyond it: 431.
    pub max_headers: usize,
    /// Request body (Content-Length or decoded chunked); beyond it: 413.
    pub max_body_bytes: u64,
    /// Requests in flight on one connection before http stops reading it (pipelining depth).
    pub max_pipelined: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_header_bytes: 8192,
            max_headers: 64,
            max_body_bytes: 8 << 20,
            max_pipelined: 32,
        }
    }
}

/// Hard cap for `max_headers`: the parser's header array lives on the stack.
pub const MAX_HEADERS_CAP: usize = 128;

/// An error answered by http itself, with a status and a short reason for the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub reason: &'static str,
}

const fn reject(status: u16, reason: &'static str) -> Rejection {
    Rejection { status, reason }
}

#[derive(Debug, Clone)]
pub enum Body {
    None,
    Length(u64),
    Chunked(ChunkedDecoder),
    /// After an accepted `Upgrade`: raw bytes until the connection ends.
    Tunnel,
}

/// What the nukleus needs to know about a parsed request head.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// Bytes of the head, including the blank line.
    pub consumed: usize,
    pub minor_version: u8,
    pub is_head: bool,
    pub body: Body,
    /// The connection must close after this response (`Connection: close`, or HTTP/1.0
    /// without keep-alive).
    pub close: bool,
    pub expect_continue: bool,
    pub upgrade: bool,
    /// Index of the matched route, `None` for 404.
    pub route: Option<usize>,
}

fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Parses a request head at the start of `bytes`. `Ok(None)`: incomplete, wait for more.
/// On success the BEGIN extension is appended to `extension` (cleared first).
pub fn parse_head(
    bytes: &[u8],
    limits: &HttpLimits,
    route: impl Fn(&str) -> Option<usize>,
    extension: &mut Vec<u8>,
) -> Result<Option<Parsed>, Rejection> {
    // Uninitialised storage: zeroing 128 headers per request was a visible cost.
    let mut storage =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_CAP];
    let mut request = httparse::Request::new(&mut []);
    let parsed = request.parse_with_uninit_headers(
        bytes,
        &mut storage[..limits.max_headers.min(MAX_HEADERS_CAP)],
    );
    let consumed = match parsed {
        Ok(httparse::Status::Complete(consumed)) => consumed,
        Ok(httparse::Status::Partial) => {
            if bytes.len() > limits.max_header_bytes {
                return Err(reject(431, "request header section too large"));
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(reject(431, "too many header fields")),
        Err(httparse::Error::Version) => {
            return Err(reject(505, "only HTTP/1.0 and HTTP/1.1 are supported"))
        }
        Err(httparse::Error::Token) => {
            return Err(reject(
                400,
                "malformed request: invalid token in method or header name",
            ))
        }
        Err(httparse::Error::NewLine) => {
            return Err(reject(400, "malformed request: bad line ending"))
        }
        Err(httparse::Error::HeaderName) => {
            return Err(reject(400, "malformed request: invalid header name"))
        }
        Err(httparse::Error::HeaderValue) => {
            return Err(reject(400, "malformed request: invalid header value"))
        }
        Err(_) => return Err(reject(400, "malformed request line")),
    };
    if consumed > limits.max_header_bytes {
        return Err(reject(431, "request header section too large"));
    }
    let method = request.method.unwrap_or("GET");
    let target = request.path.unwrap_or("/");
    // The BEGIN extension carries the method in at most 255 bytes and every other field in at
    // most 65535: longer ones are refused here rather than cut short on the way to the
    // application (caught by the http_request fuzz target's check, see FUZZING.md).
    if method.len() > ext::MAX_METHOD_LEN {
        return Err(reject(501, "request method longer than 255 bytes"));
    }
    if target.len() > ext::MAX_FIELD_LEN {
        return Err(reject(414, "request target longer than 65535 bytes"));
    }
    if request
        .headers
        .iter()
        .any(|h| h.name.len() > ext::MAX_FIELD_LEN || h.value.len() > ext::MAX_FIELD_LEN)
    {
        return Err(reject(431, "header field longer than 65535 bytes"));
    }
    let minor_version = request.version.unwrap_or(1);
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    let mut close = minor_version == 0;
    let mut expect_continue = false;
    let mut upgrade_header = false;
    let mut connection_upgrade = false;
    let mut host = false;
    for header in request.headers.iter() {
        let name = header.name;
        let value = header.value;
        if name.eq_ignore_ascii_case("content-length") {
            let text =
                std::str::from_utf8(value).map_err(|_| reject(400, "invalid Content-Length"))?;
            let length: u64 = text
                .trim()
                .parse()
                .map_err(|_| reject(400, "invalid Content-Length"))?;
            if content_length.is_some_and(|known| known != length) {
                return Err(reject(400, "conflicting Content-Length headers"));
            }
            content_length = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            // Only `chunked`, and it must be the final coding (RFC 9112 §6.1).
            let last = value
                .rsplit(|b| *b == b',')
                .next()
                .unwrap_or(b"")
                .trim_ascii();
            chunked = last.eq_ignore_ascii_case(b"chunked");
            if !chunked || value.split(|b| *b == b',').count() > 1 {
                return Err(reject(
                    501,
                    "unsupported Transfer-Encoding: only chunked is implemented",
                ));
            }
        } else if name.eq_ignore_ascii_case("connection") {
            if has_token(value, "close") {
                close = true;
            }
            if has_token(value, "keep-alive") && minor_version == 0 {
                close = false;
            }
            connection_upgrade |= has_token(value, "upgrade");
        } else if name.eq_ignore_ascii_case("expect") {
            if value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
                expect_continue = true;
            } else {
                return Err(Rejection {
                    status: 417,
                    reason: "only Expect: 100-continue is supported",
                });
            }
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade_header = true;
        } else if name.eq_ignore_ascii_case("host") {
            host = true;
        }
    }
    if minor_version == 1 && !host {
        return Err(reject(400, "HTTP/1.1 request without Host header"));
    }
    if transfer_encoding && content_length.is_some() {
        // Both framings at once is the classic request-smuggling vector: refuse.
        return Err(reject(
            400,
            "both Transfer-Encoding and Content-Length present",
        ));
    }
    if transfer_encoding && minor_version == 0 {
        return Err(reject(400, "Transfer-Encoding is not allowed in HTTP/1.0"));
    }
    if let Some(length) = content_length {
        if length > limits.max_body_bytes {
            return Err(reject(
                413,
                "request body larger than the configured max_body_bytes",
            ));
        }
    }
    let body = if chunked {
        Body::Chunked(ChunkedDecoder::default())
    } else {
        match content_length {
            Some(0) | None => Body::None,
            Some(length) => Body::Length(length),
        }
    };
    let upgrade = upgrade_header && connection_upgrade && minor_version == 1;
    extension.clear();
    ext::encode_request(
        extension,
        minor_version,
        method,
        target,
        request.headers.iter().map(|h| (h.name, h.value)),
    );
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    Ok(Some(Parsed {
        consumed,
        minor_version,
        is_head: method == "HEAD",
        body,
        close,
        expect_continue,
        upgrade,
        route: route(path),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<Parsed>, Rejection> {
        parse_head(
            text.as_bytes(),
            &HttpLimits::default(),
            |_| Some(0),
            &mut Vec::new(),
        )
    }

    /// Caught by the http_request fuzz target (fuzz/corpus/http_request/regress-*): fields longer than the BEGIN
    /// extension's length prefixes were cut short on the way to the application.
    #[test]
    fn fields_longer_than_the_extension_holds_are_refused_not_cut() {
        let limits = HttpLimits {
            max_header_bytes: 200_000,
            ..HttpLimits::default()
        };
        let parse = |head: String| {
            parse_head(head.as_bytes(), &limits, |_| Some(0), &mut Vec::new()).map(|p| p.is_some())
        };
        let method = "A".repeat(256);
        assert_eq!(
            parse(format!("{method} / HTTP/1.1\r\nHost: x\r\n\r\n")).unwrap_err(),
            reject(501, "request method longer than 255 bytes")
        );
        let target = format!("/{}", "t".repeat(65535));
        assert_eq!(
            parse(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n"))
                .unwrap_err()
                .status,
            414
        );
        let value = "v".repeat(65536);
        assert_eq!(
            parse(format!("GET / HTTP/1.1\r\nHost: x\r\nX: {value}\r\n\r\n"))
                .unwrap_err()
                .status,
            431
        );
        // At the edges, everything arrives whole.
        let method = "A".repeat(255);
        let value = "v".repeat(65535);
        let mut extension = Vec::new();
        let head = format!("{method} / HTTP/1.1\r\nHost: x\r\nX: {value}\r\n\r\n");
        parse_head(head.as_bytes(), &limits, |_| Some(0), &mut extension)
            .unwrap()
            .unwrap();
        let parsed = ext::RequestHead::parse(&extension).unwrap();
        assert_eq!(parsed.method, method);
        assert_eq!(parsed.header("x").unwrap().len(), 65535);
    }

    #[test]
    fn clients_cannot_forge_tls_identity_pseudo_headers() {
        let status = |text: &str| parse(text).unwrap_err().status;
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: x\r\n:tls-client-cn: admin\r\n\r\n"),
            400
        );
        assert_eq!(
            status("GET / HTTP/1.1\r\nHost: x\r\n:tls-client-san: a\r\n\r\n"),
            400
        );
    }

    #[test]
    fn incomplete_heads_wait_for_more_bytes() {
        assert!(parse("GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
    }

    #[test]
    fn keep_alive_is_the_default_for_1_1_and_opt_in_for_1_0() {
        assert!(
            !parse("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap()
                .unwrap()
                .close
        );
        assert!(
            parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap()
                .unwrap()
                .close
        );
        assert!(parse("GET / HTTP/1.0\r\n\r\n").unwrap().unwrap().close);
        assert!(
            !parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .unwrap()
                .unwrap()
                .close
        );
    }

    #[test]
    fn body_framing_comes_from_content_length_or_chunked() {
        let p = parse("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(matches!(p.body, Body::Length(5)));
        let p = parse("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(matches!(p.body, Body::Chunked(_)));
    }

    #[test]
    fn limits_and_malformed_input_map_to_their_status() {
        let status = |text: &str| parse(text).unwrap_err().status;
        assert_eq!(status("GET / HTTP/2.0\r\n\r\n"), 505);
        assert_eq!(status("G@T / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), 400, "missing Host");
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n"),
            413
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            400
        );
        assert_eq!(status("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"),
            501
        );
        let many: String = (0..65).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            status(&format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n")),
            431
        );
        let huge = format!("GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n", "a".repeat(9000));
        assert_eq!(status(&huge), 431, "partial head beyond the limit");
    }

    #[test]
    fn websocket_upgrade_needs_both_headers() {
        let p = parse("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n");
        assert!(p.unwrap().unwrap().upgrade);
        assert!(
            !parse("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n")
                .unwrap()
                .unwrap()
                .upgrade
        );
    }
}
