//! The writing half's wire format: a response head from the application's BEGIN extension,
//! the body framing it implies, and the bytes each framing puts around body data.

use crate::ext::ResponseHead;
use crate::response;

/// How a response body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    None,
    /// `Content-Length`: the bytes still to send; more from the application are dropped.
    Length(u64),
    /// `Transfer-Encoding: chunked` (HTTP/1.1 without a length).
    Chunked,
    /// Body until the connection closes (HTTP/1.0 without Content-Length), or a tunnel.
    Raw,
}

/// What of the request a response head depends on.
pub(super) struct HeadFacts<'a> {
    pub is_head: bool,
    pub minor_version: u8,
    /// In: the connection closes after this response. Out: also when the body is delimited
    /// by the close.
    pub close_after: &'a mut bool,
}

/// Writes the status line and headers (hop-by-hop ones replaced by http's own, `Date` added);
/// returns how the body is framed. `upgrade`: a 101 taken, its headers pass as they are.
pub(super) fn write_response_head(
    out: &mut Vec<u8>,
    head: &ResponseHead<'_>,
    facts: HeadFacts<'_>,
    date: &[u8],
    upgrade: bool,
) -> Framing {
    let status = head.status;
    response::status_line(out, status);
    let mut content_length = None;
    for (name, value) in head.raw_headers() {
        if name.eq_ignore_ascii_case(b"content-length") {
            content_length = parse_decimal(value);
        }
        if !upgrade
            && (name.eq_ignore_ascii_case(b"connection")
                || name.eq_ignore_ascii_case(b"transfer-encoding"))
        {
            continue;
        }
        if name.eq_ignore_ascii_case(b"date") {
            continue;
        }
        response::header(out, name, value);
    }
    response::header(out, b"Date", date);
    let framing = if upgrade {
        Framing::Raw
    } else if (100..200).contains(&status) || status == 204 || status == 304 || facts.is_head {
        Framing::None
    } else if let Some(length) = content_length {
        Framing::Length(length)
    } else if facts.minor_version == 1 {
        response::header(out, b"Transfer-Encoding", b"chunked");
        Framing::Chunked
    } else {
        *facts.close_after = true;
        Framing::Raw
    };
    if !upgrade {
        if *facts.close_after {
            response::header(out, b"Connection", b"close");
        } else if facts.minor_version == 0 {
            response::header(out, b"Connection", b"keep-alive");
        }
    }
    out.extend_from_slice(b"\r\n");
    framing
}

/// Appends one chunk (size line, data, CRLF); an empty payload writes nothing (a zero-size
/// chunk would end the body).
pub(super) fn chunk(out: &mut Vec<u8>, payload: &[u8]) {
    if payload.is_empty() {
        return;
    }
    let mut hex = [0u8; 16];
    out.extend_from_slice(hex_len(payload.len(), &mut hex));
    out.extend_from_slice(b"\r\n");
    streams::copy::extend(out, payload);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk and the empty trailer section.
pub(super) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

fn hex_len(mut n: usize, buffer: &mut [u8; 16]) -> &[u8] {
    let mut at = buffer.len();
    loop {
        at -= 1;
        buffer[at] = b"0123456789abcdef"[n & 15];
        n >>= 4;
        if n == 0 {
            return &buffer[at..];
        }
    }
}

/// Parses a Content-Length value (digits with optional surrounding whitespace).
fn parse_decimal(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + (d - b'0') as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_carry_their_size_in_hex() {
        let mut out = Vec::new();
        chunk(&mut out, &[b'x'; 26]);
        chunk(&mut out, b"");
        assert_eq!(out, format!("1a\r\n{}\r\n", "x".repeat(26)).as_bytes());
    }

    #[test]
    fn content_length_values_parse_strictly() {
        assert_eq!(parse_decimal(b" 42 "), Some(42));
        assert_eq!(parse_decimal(b"4x"), None);
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"99999999999999999999"), None);
    }
}
