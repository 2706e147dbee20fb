//! A minimal WebSocket client (RFC 6455 framing, masked client frames).

use crate::*;

pub(crate) struct Ws {
    pub(crate) c: Conn,
    pub(crate) msg: Vec<u8>,
    pub(crate) frag: Vec<u8>,
    pub(crate) frag_op: u8,
    pub(crate) rng: u64,
}

impl Ws {
    pub(crate) fn open(host: &str, port: u16, node: &str, token: &str) -> Ws {
        Ws::open_path(
            host,
            port,
            &format!("/v1/ws/{node}?address={node}:1"),
            node,
            token,
        )
    }

    /// A WebSocket at `path` (e.g. a watcher that is not a node, `/v1/ws/?ports=...`);
    /// `name` for messages and the mask's seed.
    pub(crate) fn open_path(host: &str, port: u16, path: &str, name: &str, token: &str) -> Ws {
        let node = name;
        let mut c = Conn::connect(host, port);
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Authorization: Bearer {token}\r\n\r\n"
        );
        c.write_all_blocking(req.as_bytes());
        let end = c.read_until(b"\r\n\r\n");
        let head = String::from_utf8_lossy(&c.data()[..end]).to_string();
        if !head.starts_with("HTTP/1.1 101") {
            die(&format!("WebSocket upgrade for {node} refused: {head}"));
        }
        c.consume(end);
        c.nonblocking();
        let rng = 0x9E37_79B9_7F4A_7C15 ^ (node.len() as u64) << 7 ^ std::process::id() as u64;
        Ws {
            c,
            msg: Vec::new(),
            frag: Vec::new(),
            frag_op: 0,
            rng,
        }
    }

    pub(crate) fn send(&mut self, op: u8, payload: &[u8]) {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let mask = (self.rng as u32).to_ne_bytes();
        let w = &mut self.c.wbuf;
        w.push(0x80 | op);
        let n = payload.len();
        if n < 126 {
            w.push(0x80 | n as u8);
        } else if n < 65536 {
            w.push(0x80 | 126);
            w.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            w.push(0x80 | 127);
            w.extend_from_slice(&(n as u64).to_be_bytes());
        }
        w.extend_from_slice(&mask);
        let start = w.len();
        w.extend_from_slice(payload);
        let m8 = u64::from_ne_bytes([
            mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
        ]);
        let body = &mut w[start..];
        let mut chunks = body.chunks_exact_mut(8);
        for ch in &mut chunks {
            let v = u64::from_ne_bytes(ch.try_into().unwrap()) ^ m8;
            ch.copy_from_slice(&v.to_ne_bytes());
        }
        for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }

    pub(crate) fn send_text(&mut self, payload: &[u8]) {
        self.send(1, payload)
    }

    /// The next complete data message (opcode; payload in `self.msg`), if buffered.
    pub(crate) fn next(&mut self) -> Option<u8> {
        loop {
            let d = self.c.data();
            if d.len() < 2 {
                return None;
            }
            let fin = d[0] & 0x80 != 0;
            let op = d[0] & 0x0f;
            let masked = d[1] & 0x80 != 0;
            let (len, mut hdr) = match d[1] & 0x7f {
                126 if d.len() >= 4 => (u16::from_be_bytes([d[2], d[3]]) as usize, 4),
                127 if d.len() >= 10 => (
                    u64::from_be_bytes(d[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                126 | 127 => return None,
                l => (l as usize, 2),
            };
            if masked {
                hdr += 4;
            }
            if d.len() < hdr + len {
                return None;
            }
            let payload = &d[hdr..hdr + len];
            match op {
                8 => {
                    let code = if len >= 2 {
                        u16::from_be_bytes([payload[0], payload[1]])
                    } else {
                        0
                    };
                    die(&format!(
                        "server closed the WebSocket: {code} {}",
                        String::from_utf8_lossy(payload.get(2..).unwrap_or_default())
                    ));
                }
                9 => {
                    let p = payload.to_vec();
                    self.c.consume(hdr + len);
                    self.send(10, &p);
                    continue;
                }
                10 => {
                    self.c.consume(hdr + len);
                    continue;
                }
                0 => {
                    self.frag.extend_from_slice(payload);
                    self.c.consume(hdr + len);
                    if fin {
                        std::mem::swap(&mut self.msg, &mut self.frag);
                        self.frag.clear();
                        return Some(self.frag_op);
                    }
                }
                _ => {
                    if fin {
                        self.msg.clear();
                        self.msg.extend_from_slice(payload);
                        self.c.consume(hdr + len);
                        return Some(op);
                    }
                    self.frag.clear();
                    self.frag.extend_from_slice(payload);
                    self.frag_op = op;
                    self.c.consume(hdr + len);
                }
            }
        }
    }

    /// Blocking round trip (setup only): send `payload`, wait for a reply object.
    pub(crate) fn call(&mut self, payload: &[u8]) -> Vec<u8> {
        self.send_text(payload);
        loop {
            self.c.flush();
            self.c.fill();
            while self.next().is_some() {
                if self.msg.first() == Some(&b'{') {
                    if find(&self.msg, b"\"error\"").is_some() {
                        die(&format!(
                            "error reply: {}",
                            String::from_utf8_lossy(&self.msg)
                        ));
                    }
                    return self.msg.clone();
                }
            }
        }
    }
}

pub(crate) fn check_reply(msg: &[u8]) {
    if find(msg, b"\"error\"").is_some() {
        die(&format!("error reply: {}", String::from_utf8_lossy(msg)));
    }
}
