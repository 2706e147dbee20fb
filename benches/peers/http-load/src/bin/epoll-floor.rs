//! The floor of benches/http_hello.sh: the least a server can do per request on this kernel.
//! One thread, mio (edge-triggered epoll), `200 Hello, World!` (with a `Date` refreshed once a
//! second) for every request head; a pipelined batch is answered with one write. No parsing
//! beyond finding each head's end, no routing, no limits: not a server, a measuring stick.
//! Usage: `epoll-floor [ADDR]` (default 127.0.0.1:8083).
#[path = "../floor_response.rs"]
mod floor_response;
use floor_response::FloorResponse;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::io::{ErrorKind, Read, Write};

const LISTENER: Token = Token(usize::MAX);

struct Conn {
    sock: TcpStream,
    tail: usize, // bytes of an unfinished head kept from the last read (always < 4 KiB)
    unsent: Vec<u8>, // responses the socket did not take yet
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8083".into());
    let mut listener = TcpListener::bind(addr.parse().expect("ADDR is host:port"))?;
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(1024);
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let (mut buf, mut out) = (vec![0u8; 64 * 1024], Vec::with_capacity(64 * 1024));
    let mut response = FloorResponse::new();
    eprintln!("epoll-floor listening on {addr}");
    loop {
        poll.poll(&mut events, None)?;
        response.refresh();
        for ev in events.iter() {
            if ev.token() == LISTENER {
                while let Ok((mut sock, _)) = listener.accept() {
                    sock.set_nodelay(true)?;
                    let slot = conns
                        .iter()
                        .position(Option::is_none)
                        .unwrap_or(conns.len());
                    poll.registry().register(
                        &mut sock,
                        Token(slot),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    let conn = Some(Conn {
                        sock,
                        tail: 0,
                        unsent: Vec::new(),
                    });
                    if slot == conns.len() {
                        conns.push(conn)
                    } else {
                        conns[slot] = conn
                    }
                }
                continue;
            }
            let Some(c) = conns.get_mut(ev.token().0).and_then(Option::as_mut) else {
                continue;
            };
            if serve(c, &mut buf, &mut out, response.bytes()).is_err() {
                let _ = poll.registry().deregister(&mut c.sock);
                conns[ev.token().0] = None;
            }
        }
    }
}

/// Flushes what is unsent, then reads until a short read (edge-triggered: the socket is drained
/// then; more bytes bring a new edge) and answers every complete head in one write.
fn serve(c: &mut Conn, buf: &mut [u8], out: &mut Vec<u8>, resp: &[u8]) -> std::io::Result<()> {
    while !c.unsent.is_empty() {
        match c.sock.write(&c.unsent) {
            Ok(n) => drop(c.unsent.drain(..n)),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    loop {
        let n = match c.sock.read(&mut buf[c.tail..]) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        };
        let (end, mut start) = (c.tail + n, 0);
        for at in memchr::memmem::find_iter(&buf[..end], b"\r\n\r\n") {
            out.extend_from_slice(resp);
            start = at + 4;
        }
        c.tail = end - start;
        if c.tail >= 4096 {
            return Err(ErrorKind::InvalidData.into());
        }
        buf.copy_within(start..end, 0);
        if !out.is_empty() {
            match c.sock.write(out) {
                Ok(w) => c.unsent.extend_from_slice(&out[w..]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => c.unsent.extend_from_slice(out),
                Err(e) => return Err(e),
            }
            out.clear();
        }
        if !c.unsent.is_empty() || end < buf.len() {
            return Ok(());
        }
    }
}
