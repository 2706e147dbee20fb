//! A non-blocking connection with its own read and write buffers, and byte helpers.

use crate::*;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;

pub(crate) struct Conn {
    pub(crate) s: TcpStream,
    pub(crate) rbuf: Vec<u8>,
    pub(crate) rstart: usize,
    pub(crate) rend: usize,
    pub(crate) wbuf: Vec<u8>,
    pub(crate) wpos: usize,
}

impl Conn {
    pub(crate) fn connect(host: &str, port: u16) -> Conn {
        let s = TcpStream::connect((host, port))
            .unwrap_or_else(|e| fail(&format!("connect {host}:{port}"), e));
        s.set_nodelay(true).ok();
        Conn {
            s,
            rbuf: vec![0; 1 << 20],
            rstart: 0,
            rend: 0,
            wbuf: Vec::with_capacity(1 << 20),
            wpos: 0,
        }
    }

    pub(crate) fn data(&self) -> &[u8] {
        &self.rbuf[self.rstart..self.rend]
    }

    pub(crate) fn consume(&mut self, n: usize) {
        self.rstart += n;
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        }
    }

    pub(crate) fn pending(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// Write what is buffered, as far as the socket takes it; whether anything was written.
    pub(crate) fn flush(&mut self) -> bool {
        let before = self.wpos;
        while self.wpos < self.wbuf.len() {
            match self.s.write(&self.wbuf[self.wpos..]) {
                Ok(0) => die("connection closed while writing"),
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => fail("write", e),
            }
        }
        let wrote = self.wpos > before;
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
        }
        wrote
    }

    /// Read what the socket has (non-blocking, or blocking before `nonblocking()`); bytes read.
    pub(crate) fn fill(&mut self) -> usize {
        if self.rstart > 0 && (self.rend == self.rbuf.len() || self.rstart > self.rbuf.len() / 2) {
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rend -= self.rstart;
            self.rstart = 0;
        }
        if self.rend == self.rbuf.len() {
            let n = self.rbuf.len() * 2;
            self.rbuf.resize(n, 0);
        }
        match self.s.read(&mut self.rbuf[self.rend..]) {
            Ok(0) => die("connection closed by the server"),
            Ok(n) => {
                self.rend += n;
                n
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => 0,
            Err(e) => fail("read", e),
        }
    }

    pub(crate) fn nonblocking(&self) {
        self.s
            .set_nonblocking(true)
            .unwrap_or_else(|e| fail("set_nonblocking", e));
    }

    /// Blocking: read until `pat` appears in the buffer; its end offset in `data()`.
    pub(crate) fn read_until(&mut self, pat: &[u8]) -> usize {
        loop {
            if let Some(i) = find(self.data(), pat) {
                return i + pat.len();
            }
            self.fill();
        }
    }

    pub(crate) fn write_all_blocking(&mut self, b: &[u8]) {
        self.s.write_all(b).unwrap_or_else(|e| fail("write", e));
    }
}

pub(crate) fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    if n.is_empty() || h.len() < n.len() {
        return None;
    }
    let first = n[0];
    let mut i = 0;
    while i + n.len() <= h.len() {
        match h[i..h.len() - n.len() + 1].iter().position(|&b| b == first) {
            None => return None,
            Some(p) => {
                i += p;
                if &h[i..i + n.len()] == n {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}

/// The unsigned decimal number right after `key` in `h`.
pub(crate) fn num_after(h: &[u8], key: &[u8]) -> Option<u64> {
    let i = find(h, key)? + key.len();
    let mut v = 0u64;
    let mut any = false;
    for &b in &h[i..] {
        if b.is_ascii_digit() {
            v = v * 10 + (b - b'0') as u64;
            any = true;
        } else {
            break;
        }
    }
    any.then_some(v)
}

/// Append `v` in decimal, zero-padded to `width` digits.
pub(crate) fn put_dec(out: &mut Vec<u8>, mut v: u64, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    let mut i = start + width;
    while v > 0 && i > start {
        i -= 1;
        out[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

pub(crate) fn parse_dec(b: &[u8]) -> u64 {
    b.iter()
        .fold(0, |v, &c| v * 10 + (c.wrapping_sub(b'0')) as u64)
}

/// A 16-byte port name: 2-byte run tag, 3-digit connection, 11-digit counter.
pub(crate) fn port_name(out: &mut Vec<u8>, tag: &[u8; 2], conn: usize, n: u64) {
    out.extend_from_slice(tag);
    put_dec(out, conn as u64, 3);
    put_dec(out, n, 11);
}
