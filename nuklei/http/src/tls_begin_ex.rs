//! The tls BEGIN extension, sent to the next nukleus (http) when a handshake completes: who
//! the peer is and what was negotiated.
//!
//! ```text
//! [listener:u16][remote len:u8][remote address text][sni len:u8][sni][alpn len:u8][alpn]
//! [has identity:u8] then, if 1:
//! [cn len:u16][cn][san count:u16]{[san len:u16][san]}
//! ```
//! Integers are little-endian. SANs are the verified certificate's DNS names, then its URIs.
//! `has identity` is 1 only when client authentication verified a certificate.

use std::net::SocketAddr;

/// What http (or any nukleus after tls) learns about a TLS connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsBeginEx {
    /// Index of the listener in the topology.
    pub listener: u16,
    /// The client's address (from tcp), if known.
    pub remote: Option<SocketAddr>,
    /// The server name the client asked for (SNI), lower-cased.
    pub sni: Option<String>,
    /// The negotiated ALPN protocol, e.g. `http/1.1`.
    pub alpn: Option<String>,
    /// The verified client certificate's identity (mTLS), absent otherwise.
    pub client: Option<ClientIdentity>,
}

/// The identity of a client whose certificate was verified.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientIdentity {
    /// Subject common name; empty if the certificate has none.
    pub common_name: String,
    /// subjectAltName DNS names then URIs.
    pub sans: Vec<String>,
}

fn put_short(out: &mut Vec<u8>, text: &str) {
    // Truncation at a byte boundary could split a UTF-8 character: cut at a char boundary.
    let mut end = text.len().min(255);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out.push(end as u8);
    out.extend_from_slice(&text.as_bytes()[..end]);
}

fn put_long(out: &mut Vec<u8>, text: &str) {
    let mut end = text.len().min(u16::MAX as usize);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_le_bytes());
    out.extend_from_slice(&text.as_bytes()[..end]);
}

/// Appends the encoding of `ex` to `out`.
pub fn encode_begin_ex(ex: &TlsBeginEx, out: &mut Vec<u8>) {
    out.extend_from_slice(&ex.listener.to_le_bytes());
    match ex.remote {
        Some(remote) => put_short(out, &remote.to_string()),
        None => out.push(0),
    }
    put_short(out, ex.sni.as_deref().unwrap_or(""));
    put_short(out, ex.alpn.as_deref().unwrap_or(""));
    match &ex.client {
        None => out.push(0),
        Some(client) => {
            out.push(1);
            put_long(out, &client.common_name);
            let count = client.sans.len().min(u16::MAX as usize);
            out.extend_from_slice(&(count as u16).to_le_bytes());
            for san in &client.sans[..count] {
                put_long(out, san);
            }
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.bytes(1)?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.bytes(2)?;
        Some(u16::from_le_bytes([b[0], b[1]]))
    }

    fn short(&mut self) -> Option<&'a str> {
        let n = self.u8()? as usize;
        std::str::from_utf8(self.bytes(n)?).ok()
    }

    fn long(&mut self) -> Option<&'a str> {
        let n = self.u16()? as usize;
        std::str::from_utf8(self.bytes(n)?).ok()
    }
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

/// Decodes an extension; `None` if it is malformed.
pub fn decode_begin_ex(bytes: &[u8]) -> Option<TlsBeginEx> {
    let mut r = Reader(bytes);
    let listener = r.u16()?;
    let remote = r.short()?;
    let remote = if remote.is_empty() {
        None
    } else {
        Some(remote.parse().ok()?)
    };
    let sni = non_empty(r.short()?);
    let alpn = non_empty(r.short()?);
    let client = match r.u8()? {
        0 => None,
        1 => {
            let common_name = r.long()?.to_owned();
            let count = r.u16()?;
            let mut sans = Vec::with_capacity(count as usize);
            for _ in 0..count {
                sans.push(r.long()?.to_owned());
            }
            Some(ClientIdentity { common_name, sans })
        }
        _ => return None,
    };
    Some(TlsBeginEx {
        listener,
        remote,
        sni,
        alpn,
        client,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_and_without_identity() {
        let anonymous = TlsBeginEx {
            listener: 2,
            remote: Some("[::1]:4433".parse().unwrap()),
            sni: Some("localhost".into()),
            alpn: Some("http/1.1".into()),
            client: None,
        };
        let mut out = Vec::new();
        encode_begin_ex(&anonymous, &mut out);
        assert_eq!(decode_begin_ex(&out), Some(anonymous.clone()));

        let verified = TlsBeginEx {
            client: Some(ClientIdentity {
                common_name: "node-1".into(),
                sans: vec!["node-1.reaktor.test".into(), "spiffe://x/y".into()],
            }),
            sni: None,
            ..anonymous
        };
        out.clear();
        encode_begin_ex(&verified, &mut out);
        assert_eq!(decode_begin_ex(&out), Some(verified));
    }

    #[test]
    fn truncated_or_foreign_bytes_are_rejected() {
        let ex = TlsBeginEx {
            client: Some(ClientIdentity {
                common_name: "a".into(),
                sans: vec!["b".into()],
            }),
            ..TlsBeginEx::default()
        };
        let mut out = Vec::new();
        encode_begin_ex(&ex, &mut out);
        for cut in 0..out.len() {
            assert_eq!(decode_begin_ex(&out[..cut]), None, "cut at {cut}");
        }
        let mut bad_flag = out.clone();
        bad_flag[5] = 7; // the identity flag after three empty short strings
        assert_eq!(decode_begin_ex(&bad_flag), None);
    }
}
