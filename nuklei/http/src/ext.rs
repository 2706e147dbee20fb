//! HTTP BEGIN extensions: the request head that http sends to an application nukleus, and
//! the response head an application sends back. Compact binary, read through flyweights:
//!
//! ```text
//! request:  [minor version:u8][method len:u8][method][target len:u16][target][count:u16]{header}
//! response: [status:u16][count:u16]{header}
//! header:   [name len:u16][name][value len:u16][value]
//! ```
//! Integers are little-endian. Names keep the case they arrived with; lookups ignore case.

/// Appends a request head to `out`.
pub fn encode_request<'h>(
    out: &mut Vec<u8>,
    minor_version: u8,
    method: &str,
    target: &str,
    headers: impl ExactSizeIterator<Item = (&'h str, &'h [u8])>,
) {
    out.push(minor_version);
    out.push(method.len().min(255) as u8);
    out.extend_from_slice(&method.as_bytes()[..method.len().min(255)]);
    put_bytes(out, target.as_bytes());
    out.extend_from_slice(&(headers.len() as u16).to_le_bytes());
    for (name, value) in headers {
        put_bytes(out, name.as_bytes());
        put_bytes(out, value);
    }
}

/// Appends headers to an encoded request head (e.g. pseudo-headers such as `:tls-client-cn`
/// that http adds after parsing); returns `false`, leaving `out` unchanged, if it is malformed.
pub fn append_request_headers<'h>(
    out: &mut Vec<u8>,
    headers: impl Iterator<Item = (&'h str, &'h [u8])>,
) -> bool {
    let Some(head) = RequestHead::parse(out) else {
        return false;
    };
    let at = 2 + head.method.len() + 2 + head.target.len();
    let mut count = head.headers.remaining;
    for (name, value) in headers {
        if count == u16::MAX {
            break;
        }
        put_bytes(out, name.as_bytes());
        put_bytes(out, value);
        count += 1;
    }
    out[at..at + 2].copy_from_slice(&count.to_le_bytes());
    true
}

/// Appends a response head to `out`.
pub fn encode_response<'h>(
    out: &mut Vec<u8>,
    status: u16,
    headers: impl ExactSizeIterator<Item = (&'h str, &'h [u8])>,
) {
    out.extend_from_slice(&status.to_le_bytes());
    out.extend_from_slice(&(headers.len() as u16).to_le_bytes());
    for (name, value) in headers {
        put_bytes(out, name.as_bytes());
        put_bytes(out, value);
    }
}

/// The longest method an encoded request head holds (its length is one byte).
pub const MAX_METHOD_LEN: usize = u8::MAX as usize;
/// The longest target, header name or value an encoded head holds (lengths are two bytes).
pub const MAX_FIELD_LEN: usize = u16::MAX as usize;

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let bytes = &bytes[..bytes.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn take_u16(bytes: &[u8]) -> Option<(u16, &[u8])> {
    let (head, rest) = bytes.split_at_checked(2)?;
    Some((u16::from_le_bytes([head[0], head[1]]), rest))
}

fn take_bytes(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (length, rest) = take_u16(bytes)?;
    rest.split_at_checked(length as usize)
}

/// Iterates `(name, value)` pairs of an encoded header block.
#[derive(Clone)]
pub struct Headers<'a> {
    remaining: u16,
    bytes: &'a [u8],
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let (name, rest) = take_bytes(self.bytes)?;
        let (value, rest) = take_bytes(rest)?;
        self.remaining -= 1;
        self.bytes = rest;
        Some((std::str::from_utf8(name).unwrap_or(""), value))
    }
}

/// Iterates `(name, value)` pairs as bytes, without the UTF-8 check of [`Headers`].
#[derive(Clone)]
pub struct RawHeaders<'a> {
    remaining: u16,
    bytes: &'a [u8],
}

impl<'a> Iterator for RawHeaders<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let (name, rest) = take_bytes(self.bytes)?;
        let (value, rest) = take_bytes(rest)?;
        self.remaining -= 1;
        self.bytes = rest;
        Some((name, value))
    }
}

/// Looks a header up by comparing raw bytes, skipping the UTF-8 check the iterator does.
fn find_header<'a>(headers: Headers<'a>, name: &str) -> Option<&'a [u8]> {
    let mut bytes = headers.bytes;
    for _ in 0..headers.remaining {
        let (n, rest) = take_bytes(bytes)?;
        let (value, rest) = take_bytes(rest)?;
        if n.eq_ignore_ascii_case(name.as_bytes()) {
            return Some(value);
        }
        bytes = rest;
    }
    None
}

fn validate_headers(bytes: &[u8]) -> Option<Headers<'_>> {
    let (count, mut rest) = take_u16(bytes)?;
    let headers = Headers {
        remaining: count,
        bytes: rest,
    };
    for _ in 0..count {
        let (_, r) = take_bytes(rest)?;
        let (_, r) = take_bytes(r)?;
        rest = r;
    }
    Some(headers)
}

/// The method and the path (the target without its query) of an encoded request head, as
/// bytes: a cheap first look for an application that routes on them alone. Neither the
/// header block nor UTF-8 is checked; use [`RequestHead::parse`] to read the rest.
pub fn request_line(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (_minor_version, rest) = bytes.split_first()?;
    let (&method_len, rest) = rest.split_first()?;
    let (method, rest) = rest.split_at_checked(method_len as usize)?;
    let (target, _) = take_bytes(rest)?;
    let path = target
        .iter()
        .position(|&b| b == b'?')
        .map_or(target, |end| &target[..end]);
    Some((method, path))
}

/// A request head, read in place.
#[derive(Clone)]
pub struct RequestHead<'a> {
    pub minor_version: u8,
    pub method: &'a str,
    pub target: &'a str,
    headers: Headers<'a>,
}

impl<'a> RequestHead<'a> {
    /// Parses an extension; `None` if it is malformed.
    pub fn parse(bytes: &'a [u8]) -> Option<RequestHead<'a>> {
        let (&minor_version, rest) = bytes.split_first()?;
        let (&method_len, rest) = rest.split_first()?;
        let (method, rest) = rest.split_at_checked(method_len as usize)?;
        let (target, rest) = take_bytes(rest)?;
        Some(RequestHead {
            minor_version,
            method: std::str::from_utf8(method).ok()?,
            target: std::str::from_utf8(target).ok()?,
            headers: validate_headers(rest)?,
        })
    }

    /// The target without its query string.
    pub fn path(&self) -> &'a str {
        self.target
            .split_once('?')
            .map_or(self.target, |(path, _)| path)
    }

    pub fn query(&self) -> Option<&'a str> {
        self.target.split_once('?').map(|(_, query)| query)
    }

    pub fn headers(&self) -> Headers<'a> {
        self.headers.clone()
    }

    /// The first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        find_header(self.headers.clone(), name)
    }

    /// Headers as raw bytes (names are not checked for UTF-8).
    pub fn raw_headers(&self) -> RawHeaders<'a> {
        RawHeaders {
            remaining: self.headers.remaining,
            bytes: self.headers.bytes,
        }
    }
}

/// A response head, read in place.
#[derive(Clone)]
pub struct ResponseHead<'a> {
    pub status: u16,
    headers: Headers<'a>,
}

impl<'a> ResponseHead<'a> {
    pub fn parse(bytes: &'a [u8]) -> Option<ResponseHead<'a>> {
        let (status, rest) = take_u16(bytes)?;
        Some(ResponseHead {
            status,
            headers: validate_headers(rest)?,
        })
    }

    pub fn headers(&self) -> Headers<'a> {
        self.headers.clone()
    }

    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        find_header(self.headers.clone(), name)
    }

    /// Headers as raw bytes (names are not checked for UTF-8).
    pub fn raw_headers(&self) -> RawHeaders<'a> {
        RawHeaders {
            remaining: self.headers.remaining,
            bytes: self.headers.bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads_round_trip() {
        let mut out = Vec::new();
        let headers = [("Host", &b"example"[..]), ("X-Empty", &b""[..])];
        encode_request(&mut out, 1, "POST", "/echo?x=1", headers.iter().copied());
        let head = RequestHead::parse(&out).unwrap();
        assert_eq!(
            (head.minor_version, head.method, head.path(), head.query()),
            (1, "POST", "/echo", Some("x=1"))
        );
        assert_eq!(
            request_line(&out),
            Some((&b"POST"[..], &b"/echo"[..])),
            "the cheap look agrees"
        );
        assert_eq!(head.header("host"), Some(&b"example"[..]));
        assert_eq!(head.headers().count(), 2);
    }

    #[test]
    fn appended_headers_follow_the_parsed_ones() {
        let mut out = Vec::new();
        encode_request(&mut out, 1, "GET", "/", [("Host", &b"h"[..])].into_iter());
        let extra = [
            (":tls-client-cn", &b"node-1"[..]),
            (":tls-client-san", &b"a"[..]),
        ];
        assert!(append_request_headers(&mut out, extra.iter().copied()));
        let head = RequestHead::parse(&out).unwrap();
        let names: Vec<_> = head.headers().map(|(n, _)| n).collect();
        assert_eq!(names, ["Host", ":tls-client-cn", ":tls-client-san"]);
        assert_eq!(head.header(":tls-client-cn"), Some(&b"node-1"[..]));
        let mut bad = vec![1, 9];
        assert!(!append_request_headers(&mut bad, extra.iter().copied()));
        assert_eq!(bad, [1, 9]);
    }

    #[test]
    fn truncated_heads_are_rejected() {
        let mut out = Vec::new();
        encode_response(
            &mut out,
            200,
            [("Content-Type", &b"text/plain"[..])].into_iter(),
        );
        assert_eq!(ResponseHead::parse(&out).unwrap().status, 200);
        for cut in 0..out.len() {
            assert!(ResponseHead::parse(&out[..cut]).is_none(), "cut at {cut}");
        }
        let mut request = Vec::new();
        encode_request(&mut request, 1, "GET", "/a?b", std::iter::empty());
        let line_end = 1 + 1 + 3 + 2 + 4;
        assert!(request_line(&request[..line_end]).is_some());
        for cut in 0..line_end {
            assert!(request_line(&request[..cut]).is_none(), "cut at {cut}");
        }
    }
}
