//! A blocking WebSocket client for the cluster tests, on a plain `TcpStream`: the upgrade
//! (whose refusal — a 307 to the master, a 503 during an election — comes back as it is),
//! text messages out (masked), text messages and the close frame in. Just what the tests
//! need to see what the switch answers, byte for byte.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::ws_client_frame;

/// An HTTP answer that was not `101 Switching Protocols`.
#[derive(Clone, Debug)]
pub struct Refused {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Refused {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What came in on an open WebSocket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    Text(String),
    Close(u16, String),
}

/// An open WebSocket.
pub struct RawWs {
    stream: TcpStream,
    buf: Vec<u8>,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl RawWs {
    /// Upgrades `target` (path and query) at `addr` with a bearer token.
    pub fn open(
        addr: SocketAddr,
        target: &str,
        token: &str,
        timeout: Duration,
    ) -> io::Result<Result<RawWs, Refused>> {
        let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        write!(
            stream,
            "GET {target} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
        )?;
        let deadline = Instant::now() + timeout;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            if let Some(at) = find(&buf, b"\r\n\r\n") {
                break at;
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no answer to the upgrade",
                ));
            }
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed during the upgrade",
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let rest = buf[head_end + 4..].to_vec();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        if status == 101 {
            return Ok(Ok(RawWs { stream, buf: rest }));
        }
        let length: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = rest;
        while body.len() < length && Instant::now() < deadline {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        Ok(Err(Refused {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }))
    }

    pub fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.stream
            .write_all(&ws_client_frame(0x81, text.as_bytes()))
    }

    /// The next text message or the close frame (pings and pongs skipped), within `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> io::Result<Incoming> {
        let deadline = Instant::now() + timeout;
        let mut chunk = [0u8; 65536];
        let mut message: Vec<u8> = Vec::new();
        loop {
            if let Some((fin, opcode, payload, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                match opcode {
                    0x8 => {
                        let code = payload
                            .get(..2)
                            .map_or(1005, |c| u16::from_be_bytes([c[0], c[1]]));
                        let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or(&[]));
                        return Ok(Incoming::Close(code, reason.into_owned()));
                    }
                    0x1 | 0x0 => {
                        message.extend_from_slice(&payload);
                        if fin {
                            return Ok(Incoming::Text(
                                String::from_utf8_lossy(&message).into_owned(),
                            ));
                        }
                    }
                    _ => {}
                }
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no message in time",
                ));
            }
            self.stream.set_read_timeout(Some(left))?;
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed",
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends a request and waits for the reply object with its id (pushes in between are
    /// returned too, in order): (reply, pushes).
    pub fn call(
        &mut self,
        request: &str,
        id: u64,
        timeout: Duration,
    ) -> io::Result<(String, Vec<String>)> {
        self.send_text(request)?;
        let deadline = Instant::now() + timeout;
        let mut pushes = Vec::new();
        loop {
            match self.recv(deadline.saturating_duration_since(Instant::now()))? {
                Incoming::Text(t) if t.starts_with('[') => pushes.push(t),
                Incoming::Text(t) if t.starts_with(&format!("{{\"id\":{id},")) => {
                    return Ok((t, pushes))
                }
                Incoming::Text(_) => {}
                Incoming::Close(code, reason) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        format!("closed {code}: {reason}"),
                    ))
                }
            }
        }
    }
}

/// (fin, opcode, payload, bytes used) of the first complete unmasked frame in `buf`.
fn parse_frame(buf: &[u8]) -> Option<(bool, u8, Vec<u8>, usize)> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    let (len, at) = match b1 & 0x7f {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => {
            let b: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(b) as usize, 10)
        }
        n => (n as usize, 2),
    };
    let payload = buf.get(at..at + len)?.to_vec();
    Some((b0 & 0x80 != 0, b0 & 0x0f, payload, at + len))
}
