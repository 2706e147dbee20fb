//! The io_uring floor of benches/http_hello.sh: the least a server can do per request on this
//! kernel with the io_uring design of reaktor's `[tcp] transport = "io_uring"` — one multishot
//! accept, one multishot receive per connection into a ring of provided buffers, the sends of a
//! loop submitted together — and nothing else. Like `epoll-floor`: `200 Hello, World!` (a `Date`
//! refreshed once a second) for every request head, a pipelined batch answered with one send,
//! no parsing beyond finding each head's end. It drives `streams::uring` (reaktor's own safe
//! face on io_uring), so no `unsafe` is written here.
//!
//! Waiting: `--wait enter` (default) waits for completions inside the same `io_uring_enter`
//! that submits (one system call per loop); `--wait epoll` submits, then parks in `epoll_wait`
//! on the ring's descriptor, as a reaktor core does (two system calls per loop when it parks).
//! `--defer-taskrun`: the ring runs the kernel's completion work only inside this thread's
//! `io_uring_enter` (`IORING_SETUP_DEFER_TASKRUN`), not when the network stack finishes it.
//! Usage: `uring-floor [ADDR] [--wait enter|epoll] [--defer-taskrun]` (default 127.0.0.1:8085).
#[path = "../floor_response.rs"]
mod floor_response;
use floor_response::FloorResponse;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::net::TcpListener;
use std::os::fd::{AsFd, OwnedFd};
use streams::uring::{Completion, Uring, UringConfig};

/// The accept's tag; connections are tagged by their slot.
const LISTENER: u64 = (1 << 61) - 1;

struct Conn {
    sock: OwnedFd,
    tail: Vec<u8>,   // bytes of an unfinished head kept from the last receive (< 4 KiB)
    sending: bool,   // a send is in flight: answers gather in `unsent` meanwhile
    unsent: Vec<u8>, // answers (or a short send's rest) waiting for the send in flight
    closed: bool,    // the peer is gone: dropped once no send holds the socket
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut addr, mut wait_in_epoll, mut defer_taskrun) =
        ("127.0.0.1:8085".to_string(), false, false);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--wait" => match args.next().as_deref() {
                Some("enter") => wait_in_epoll = false,
                Some("epoll") => wait_in_epoll = true,
                _ => panic!("--wait takes enter or epoll"),
            },
            "--defer-taskrun" => defer_taskrun = true,
            other => addr = other.to_string(),
        }
    }
    if wait_in_epoll && defer_taskrun {
        // Deferred completion work runs only inside io_uring_enter: nothing would wake epoll.
        panic!("--defer-taskrun needs --wait enter");
    }
    let listener = TcpListener::bind(&addr)?;
    let mut uring = Uring::new(UringConfig {
        entries: 1024,
        buffers: 1024,
        buffer_size: 16 * 1024,
        defer_taskrun,
    })?;
    let poll = Poll::new()?;
    let ring_fd = uring.as_raw_fd();
    poll.registry()
        .register(&mut SourceFd(&ring_fd), Token(0), Interest::READABLE)?;
    let mut poll = poll;
    let mut events = Events::with_capacity(8);
    uring.accept_multishot(listener.as_fd(), LISTENER)?;
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut completions = Vec::new();
    let mut spare: Vec<Vec<u8>> = Vec::new();
    let mut response = FloorResponse::new();
    eprintln!(
        "uring-floor listening on {addr} (waiting in {})",
        if wait_in_epoll {
            "epoll_wait"
        } else {
            "io_uring_enter"
        }
    );
    loop {
        if wait_in_epoll {
            uring.submit()?;
            if !uring.has_completions() {
                poll.poll(&mut events, None)?;
            }
        } else {
            uring.submit_and_wait(1)?;
        }
        response.refresh();
        uring.completions(&mut completions);
        for completion in completions.drain(..) {
            match completion {
                Completion::Accepted { socket, more, .. } => {
                    if let Ok(sock) = socket {
                        let _ = set_nodelay(&sock);
                        let slot = conns
                            .iter()
                            .position(Option::is_none)
                            .unwrap_or(conns.len());
                        uring.recv_multishot(sock.as_fd(), slot as u64)?;
                        let conn = Some(Conn {
                            sock,
                            tail: Vec::new(),
                            sending: false,
                            unsent: Vec::new(),
                            closed: false,
                        });
                        if slot == conns.len() {
                            conns.push(conn)
                        } else {
                            conns[slot] = conn
                        }
                    }
                    if !more {
                        uring.accept_multishot(listener.as_fd(), LISTENER)?;
                    }
                }
                Completion::Received { tag, result, more } => {
                    let slot = tag as usize;
                    let Some(c) = conns.get_mut(slot).and_then(Option::as_mut) else {
                        if let Ok(Some(buffer)) = result {
                            uring.recycle(buffer);
                        }
                        continue;
                    };
                    match result {
                        Ok(Some(buffer)) => {
                            let heads = answer(&mut c.tail, uring.data(&buffer));
                            uring.recycle(buffer);
                            let Some(heads) = heads else {
                                // A head over 4 KiB: not a client of ours. The receive ends
                                // at the shutdown; the slot is freed then.
                                let stream = std::net::TcpStream::from(c.sock.try_clone()?);
                                let _ = stream.shutdown(std::net::Shutdown::Both);
                                continue;
                            };
                            for _ in 0..heads {
                                c.unsent.extend_from_slice(response.bytes());
                            }
                            if !c.sending && !c.unsent.is_empty() {
                                let mut out = spare.pop().unwrap_or_default();
                                std::mem::swap(&mut out, &mut c.unsent);
                                uring.send(c.sock.as_fd(), out, tag)?;
                                c.sending = true;
                            }
                            if !more {
                                // The buffers ran short (ENOBUFS ends it the same way): again.
                                uring.recv_multishot(c.sock.as_fd(), tag)?;
                            }
                        }
                        Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                            uring.recv_multishot(c.sock.as_fd(), tag)?;
                        }
                        Ok(None) | Err(_) => {
                            c.closed = true;
                            release(&mut conns, slot);
                        }
                    }
                }
                Completion::Sent {
                    tag,
                    result,
                    mut buffer,
                } => {
                    let slot = tag as usize;
                    let Some(c) = conns.get_mut(slot).and_then(Option::as_mut) else {
                        continue;
                    };
                    c.sending = false;
                    match result {
                        Ok(n) if n < buffer.len() => {
                            // A short send: its rest goes first, before what gathered meanwhile.
                            buffer.drain(..n);
                            buffer.extend_from_slice(&c.unsent);
                            c.unsent.clear();
                            uring.send(c.sock.as_fd(), buffer, tag)?;
                            c.sending = true;
                            continue;
                        }
                        Ok(_) => {}
                        Err(_) => c.closed = true,
                    }
                    buffer.clear();
                    if !c.closed && !c.unsent.is_empty() {
                        std::mem::swap(&mut buffer, &mut c.unsent);
                        uring.send(c.sock.as_fd(), buffer, tag)?;
                        c.sending = true;
                    } else {
                        spare.push(buffer);
                        release(&mut conns, slot);
                    }
                }
                Completion::Other => {}
            }
        }
    }
}

/// Counts the complete heads in `tail` + `data`, keeping an unfinished head's bytes in `tail`.
/// `None`: an unfinished head grew past 4 KiB.
fn answer(tail: &mut Vec<u8>, data: &[u8]) -> Option<usize> {
    if tail.is_empty() {
        let (heads, rest) = heads_in(data);
        tail.extend_from_slice(&data[rest..]);
        return (tail.len() < 4096).then_some(heads);
    }
    tail.extend_from_slice(data);
    let (heads, rest) = heads_in(tail);
    tail.drain(..rest);
    (tail.len() < 4096).then_some(heads)
}

/// The complete heads in `bytes` and where the unfinished rest starts.
fn heads_in(bytes: &[u8]) -> (usize, usize) {
    let (mut heads, mut rest) = (0, 0);
    for at in memchr::memmem::find_iter(bytes, b"\r\n\r\n") {
        heads += 1;
        rest = at + 4;
    }
    (heads, rest)
}

/// Drops a closed connection once no send holds its socket. `closed` is set only when its
/// receive ended (the peer's FIN or an error, which come without `more`) or a send failed.
fn release(conns: &mut [Option<Conn>], slot: usize) {
    if conns[slot].as_ref().is_some_and(|c| c.closed && !c.sending) {
        conns[slot] = None;
    }
}

fn set_nodelay(sock: &OwnedFd) -> std::io::Result<()> {
    let stream = std::net::TcpStream::from(sock.try_clone()?);
    stream.set_nodelay(true)
}
