//! The tcp BEGIN extension: which listener accepted the connection (its index in the
//! topology) and the remote and local addresses, as
//! `[listener:u16][len:u8][remote address text][len:u8][local address text]`.

use std::net::SocketAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpBeginEx {
    pub listener: u16,
    pub remote: SocketAddr,
    pub local: Option<SocketAddr>,
}

/// Encodes into `out` (128 bytes always suffice) and returns the length used.
pub fn encode_begin_ex(ex: &TcpBeginEx, out: &mut [u8; 128]) -> usize {
    use std::io::Write;
    out[..2].copy_from_slice(&ex.listener.to_le_bytes());
    let mut cursor = std::io::Cursor::new(&mut out[..]);
    cursor.set_position(2);
    let mut put = |addr: Option<SocketAddr>| {
        let start = cursor.position() as usize;
        let _ = cursor.write_all(&[0]);
        if let Some(addr) = addr {
            let _ = write!(cursor, "{addr}");
        }
        let end = cursor.position() as usize;
        cursor.get_mut()[start] = (end - start - 1) as u8;
    };
    put(Some(ex.remote));
    put(ex.local);
    cursor.position() as usize
}

pub fn decode_begin_ex(bytes: &[u8]) -> Option<TcpBeginEx> {
    let (listener, rest) = bytes.split_at_checked(2)?;
    let (remote, rest) = take(rest)?;
    let (local, _) = take(rest)?;
    Some(TcpBeginEx {
        listener: u16::from_le_bytes([listener[0], listener[1]]),
        remote: remote.parse().ok()?,
        local: local.parse().ok(),
    })
}

fn take(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let (&len, rest) = bytes.split_first()?;
    let text = std::str::from_utf8(rest.get(..len as usize)?).ok()?;
    Some((text, &rest[len as usize..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_including_ipv6() {
        let ex = TcpBeginEx {
            listener: 3,
            remote: "[::1]:65535".parse().unwrap(),
            local: Some("127.0.0.1:8080".parse().unwrap()),
        };
        let mut out = [0u8; 128];
        let n = encode_begin_ex(&ex, &mut out);
        assert_eq!(decode_begin_ex(&out[..n]), Some(ex));
    }
}
