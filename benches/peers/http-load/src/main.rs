//! `http-load`: the HTTP/1.1 load generator of benches/http_hello.sh (issue 18).
//!
//! One thread, mio (edge-triggered epoll), CONNS keep-alive connections, and nothing per request
//! that a server would not have to do too: one `write` per batch, one `read` per readiness
//! (a short read means the socket is drained, so no second `read` just to see `EAGAIN`), a
//! response parser that finds the head's end and `Content-Length`, one clock read per `read`.
//! It reports its own CPU time per request (`/proc/self/schedstat`, on-CPU ns of the thread), so
//! every figure can show that the client was not the bound.
//!
//! Modes:
//! - closed loop (default): every connection keeps DEPTH requests in flight; DEPTH 1 is plain
//!   keep-alive, DEPTH 16 writes 16 pipelined requests at once and the next 16 once all are
//!   answered (like wrk with benches/wrk/pipeline.lua). Latency = response − send.
//! - open loop (`--rate R`): requests are due at a fixed rate R/s whatever the server does; a
//!   due request goes out on an idle connection, or waits for one. Its latency is measured from
//!   the time it was due, not from when it could be sent, so a stalled server shows up in the
//!   percentiles instead of slowing the schedule (no coordinated omission). Between sends the
//!   loop sleeps in epoll while the next due time is ≥ 1 ms away and polls without sleeping
//!   otherwise, so its CPU figure then includes that polling.
//!
//! HTTPS (`--tls-ca CA.pem [--tls-name NAME]`): each connection runs a rustls client (TLS 1.3,
//! the ring provider, the server's certificate checked against CA.pem for NAME, default
//! `localhost`). The handshakes happen while the connections open, before the warm-up ends; the
//! CPU figure then includes the client's record sealing and opening, which a TLS server pays
//! too. Requests are written into rustls and its records flushed, responses read until the
//! socket says `EAGAIN` (a short plaintext read says nothing about the socket).
//!
//! Output: one `key=value` line on stdout (read by benches/lib.sh), a readable summary on stderr.
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: http-load --addr HOST:PORT [--path /] [--conns 64] [--depth 1] \
[--duration 10] [--warmup 1] [--rate REQ_PER_S (open loop)] [--host HEADER] [--server-pid PID] \
[--tls-ca CA.pem [--tls-name localhost]]";

struct Options {
    addr: SocketAddr,
    host: String,
    path: String,
    conns: usize,
    depth: usize,
    duration: Duration,
    warmup: Duration,
    rate: f64,
    /// Measure this server's CPU time in the same window: the process, its process group and
    /// its children (nginx's worker is a child of its master), like benches/lib.sh `cpu_ticks`.
    server_pid: Option<u32>,
    /// HTTPS: the client configuration and the name the certificate must carry.
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

/// A TLS 1.3 client configuration that trusts the certificates in `ca` (PEM).
fn tls_config(ca: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("--tls-ca {ca}: {e}"))? {
        let cert = cert.map_err(|e| format!("--tls-ca {ca}: {e}"))?;
        roots.add(cert).map_err(|e| format!("--tls-ca {ca}: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("--tls-ca {ca}: no certificate in it"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("TLS 1.3 with ring: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn parse_options() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let (mut addr, mut host, mut path) = (None, None, "/".to_string());
    let (mut conns, mut depth, mut duration, mut warmup, mut rate) = (64, 1, 10.0, 1.0, 0.0);
    let mut server_pid = None;
    let (mut tls_ca, mut tls_name) = (None, "localhost".to_string());
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value\n{USAGE}"));
        let num = |v: String| {
            v.parse::<f64>()
                .map_err(|_| format!("{flag}: {v:?} is not a number"))
        };
        match flag.as_str() {
            "--addr" => addr = Some(value()?),
            "--host" => host = Some(value()?),
            "--path" => path = value()?,
            "--conns" => conns = num(value()?)? as usize,
            "--depth" => depth = num(value()?)? as usize,
            "--duration" => duration = num(value()?)?,
            "--warmup" => warmup = num(value()?)?,
            "--rate" => rate = num(value()?)?,
            "--server-pid" => server_pid = Some(num(value()?)? as u32),
            "--tls-ca" => tls_ca = Some(value()?),
            "--tls-name" => tls_name = value()?,
            "-h" | "--help" => return Err(USAGE.into()),
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    let addr = addr.ok_or(format!("--addr is required\n{USAGE}"))?;
    let sock = addr
        .to_socket_addrs()
        .map_err(|e| format!("--addr {addr}: {e}"))?
        .next()
        .ok_or(format!("--addr {addr}: no address"))?;
    if conns == 0 || depth == 0 || duration <= 0.0 || warmup < 0.0 {
        return Err("--conns and --depth must be ≥ 1, --duration > 0, --warmup ≥ 0".into());
    }
    if rate > 0.0 && depth != 1 {
        return Err(
            "--rate (open loop) sends one request per connection at a time: drop --depth".into(),
        );
    }
    let tls = match tls_ca {
        Some(ca) => {
            let name = ServerName::try_from(tls_name.clone())
                .map_err(|e| format!("--tls-name {tls_name}: {e}"))?;
            Some((tls_config(&ca)?, name))
        }
        None => None,
    };
    Ok(Options {
        tls,
        host: host.unwrap_or_else(|| addr.clone()),
        addr: sock,
        path,
        conns,
        depth,
        duration: Duration::from_secs_f64(duration),
        warmup: Duration::from_secs_f64(warmup),
        rate,
        server_pid,
    })
}

/// On-CPU time of this thread in ns (`/proc/thread-self/schedstat`, first field): user and
/// system time at scheduler precision, unlike the 10 ms ticks of `/proc/self/stat`.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|f| f.parse().ok()))
        .unwrap_or(0)
}

/// utime+stime in clock ticks of `pid`, every process in its group and its children, from
/// `/proc/*/stat` (fields 14-15; fields 4 and 5 are the parent and the process group).
fn server_ticks(pid: u32) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut ticks = 0;
    for entry in dir.flatten() {
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(") ").map(|at| &stat[at + 2..]) else {
            continue;
        };
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|w| w.parse().unwrap_or(0))
            .collect();
        // rest starts at field 3: ppid = f[1], pgrp = f[2], utime = f[11], stime = f[12].
        if f.len() > 12 && (p == pid || f[1] == u64::from(pid) || f[2] == u64::from(pid)) {
            ticks += f[11] + f[12];
        }
    }
    ticks
}

/// A complete response at the start of `b`: `Ok(Some((length, status)))`, `Ok(None)` while it
/// is incomplete.
fn parse_response(b: &[u8]) -> Result<Option<(usize, u16)>, &'static str> {
    let Some(head_end) = memchr::memmem::find(b, b"\r\n\r\n") else {
        return if b.len() > 64 * 1024 {
            Err("response head over 64 KiB")
        } else {
            Ok(None)
        };
    };
    let head = &b[..head_end];
    if head.len() < 12 || !head.starts_with(b"HTTP/1.") {
        return Err("not an HTTP/1.x status line");
    }
    let status = head[9..12].iter().try_fold(0u16, |a, &d| {
        d.is_ascii_digit().then(|| a * 10 + u16::from(d - b'0'))
    });
    let status = status.ok_or("bad status code")?;
    let mut length = None;
    for line in head.split(|&c| c == b'\n').skip(1) {
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let name = &line[..colon];
        if name.eq_ignore_ascii_case(b"content-length") {
            let v = line[colon + 1..].trim_ascii();
            let n = std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<usize>().ok());
            length = Some(n.ok_or("bad Content-Length")?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Err("chunked responses are not supported: serve a Content-Length");
        }
    }
    let body = match (length, status) {
        (Some(n), _) => n,
        (None, 100..=199 | 204 | 304) => 0,
        (None, _) => return Err("response without Content-Length"),
    };
    let total = head_end + 4 + body;
    Ok((b.len() >= total).then_some((total, status)))
}

/// Writes what rustls has sealed until it has nothing more or the socket is full.
fn flush_tls(tls: &mut rustls::ClientConnection, sock: &mut TcpStream) -> std::io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(sock) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Plaintext from a TLS connection: what rustls has opened, else records read from the socket
/// and opened (the handshake's answers flushed on the way). `WouldBlock` once the socket is
/// drained; `Ok(0)` at the server's close_notify or the connection's end.
fn read_tls(
    tls: &mut rustls::ClientConnection,
    sock: &mut TcpStream,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    loop {
        match tls.reader().read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        if tls.read_tls(sock)? == 0 {
            return Ok(0);
        }
        tls.process_new_packets()
            .map_err(|e| std::io::Error::new(ErrorKind::InvalidData, e))?;
        flush_tls(tls, sock)?;
    }
}

struct Conn {
    sock: TcpStream,
    /// HTTPS: the connection's TLS state (its unsent records are its own buffer, not `unsent`).
    tls: Option<Box<rustls::ClientConnection>>,
    buf: Vec<u8>,
    len: usize,
    /// When each request in flight was sent (closed loop) or due (open loop), ns since start.
    started: VecDeque<u64>,
    /// Bytes of the last batch the socket did not take yet.
    unsent: Vec<u8>,
}

#[derive(Default)]
struct Counts {
    responses: u64,
    non_2xx: u64,
    errors: u64,
    reconnects: u64,
}

struct Load {
    opts: Options,
    poll: Poll,
    conns: Vec<Conn>,
    batch: Vec<u8>,
    single: Vec<u8>,
    base: Instant,
    counts: Counts,
    hist: Histogram<u64>,
    measuring: bool,
    /// Open loop: idle connections and requests due that found none (their due times).
    idle: Vec<usize>,
    backlog: VecDeque<u64>,
}

impl Load {
    fn connect(&mut self, i: usize) -> std::io::Result<Conn> {
        let std = std::net::TcpStream::connect(self.opts.addr)?;
        std.set_nodelay(true)?;
        std.set_nonblocking(true)?;
        let mut sock = TcpStream::from_std(std);
        self.poll.registry().register(
            &mut sock,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let tls = match &self.opts.tls {
            Some((config, name)) => Some(Box::new(
                rustls::ClientConnection::new(config.clone(), name.clone())
                    .map_err(std::io::Error::other)?,
            )),
            None => None,
        };
        Ok(Conn {
            sock,
            tls,
            buf: vec![0; 64 * 1024],
            len: 0,
            started: VecDeque::new(),
            unsent: Vec::new(),
        })
    }

    /// Writes `depth` requests (closed loop) or one (open loop) on connection `i`.
    fn send(&mut self, i: usize, started: u64, n: usize) -> std::io::Result<()> {
        let bytes = if n == 1 { &self.single } else { &self.batch };
        let c = &mut self.conns[i];
        c.started.extend(std::iter::repeat_n(started, n));
        if let Some(tls) = &mut c.tls {
            tls.writer().write_all(bytes)?;
            return flush_tls(tls, &mut c.sock);
        }
        if !c.unsent.is_empty() {
            c.unsent.extend_from_slice(bytes);
            return Ok(());
        }
        match c.sock.write(bytes) {
            Ok(w) => c.unsent.extend_from_slice(&bytes[w..]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => c.unsent.extend_from_slice(bytes),
            Err(e) => return Err(e),
        }
        Ok(())
    }

    fn flush(&mut self, i: usize) -> std::io::Result<()> {
        let c = &mut self.conns[i];
        if let Some(tls) = &mut c.tls {
            return flush_tls(tls, &mut c.sock);
        }
        while !c.unsent.is_empty() {
            match c.sock.write(&c.unsent) {
                Ok(w) => drop(c.unsent.drain(..w)),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads what connection `i` has, takes every complete response, sends what comes next.
    fn on_readable(&mut self, i: usize) -> Result<(), String> {
        loop {
            let c = &mut self.conns[i];
            if c.len == c.buf.len() {
                return Err("response larger than 64 KiB".into());
            }
            let space = c.buf.len() - c.len;
            let read = match &mut c.tls {
                Some(tls) => read_tls(tls, &mut c.sock, &mut c.buf[c.len..]),
                None => c.sock.read(&mut c.buf[c.len..]),
            };
            let n = match read {
                Ok(0) => return Err("server closed the connection".into()),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(format!("read: {e}")),
            };
            c.len += n;
            let now = self.base.elapsed().as_nanos() as u64;
            let mut at = 0;
            while let Some((len, status)) = parse_response(&c.buf[at..c.len])? {
                at += len;
                let started = c.started.pop_front().ok_or("a response to no request")?;
                if self.measuring {
                    self.counts.responses += 1;
                    if !(200..300).contains(&status) {
                        self.counts.non_2xx += 1;
                    }
                    let _ = self.hist.record(now.saturating_sub(started).max(1));
                }
            }
            c.buf.copy_within(at..c.len, 0);
            c.len -= at;
            if c.started.is_empty() {
                if self.opts.rate > 0.0 {
                    match self.backlog.pop_front() {
                        Some(due) => self.send(i, due, 1).map_err(|e| format!("write: {e}"))?,
                        None => self.idle.push(i),
                    }
                } else {
                    self.send(i, now, self.opts.depth)
                        .map_err(|e| format!("write: {e}"))?;
                }
            }
            // A short read drained the socket: the next bytes bring a new edge. (Not so for
            // TLS: a short plaintext read may leave records in the socket.)
            if n < space && self.conns[i].tls.is_none() {
                return Ok(());
            }
        }
    }

    fn on_event(&mut self, i: usize, readable: bool, writable: bool) {
        let mut result = if writable {
            self.flush(i).map_err(|e| format!("write: {e}"))
        } else {
            Ok(())
        };
        if result.is_ok() && readable {
            result = self.on_readable(i);
        }
        if let Err(e) = result {
            self.fail(i, &e);
        }
    }

    /// A connection failed: count its requests in flight as errors and open a new one.
    fn fail(&mut self, i: usize, why: &str) {
        if self.counts.errors < 5 {
            eprintln!("http-load: connection {i}: {why}; reconnecting");
        }
        self.counts.errors += 1 + self.conns[i].started.len() as u64;
        self.counts.reconnects += 1;
        let _ = self.poll.registry().deregister(&mut self.conns[i].sock);
        self.idle.retain(|&j| j != i);
        match self.connect(i) {
            Ok(c) => {
                self.conns[i] = c;
                self.start_conn(i);
            }
            Err(e) => {
                eprintln!("http-load: reconnect to {}: {e}", self.opts.addr);
                std::process::exit(1);
            }
        }
    }

    fn start_conn(&mut self, i: usize) {
        if self.opts.rate > 0.0 {
            self.idle.push(i);
        } else {
            let now = self.base.elapsed().as_nanos() as u64;
            if let Err(e) = self.send(i, now, self.opts.depth) {
                self.fail(i, &format!("write: {e}"));
            }
        }
    }
}

fn main() {
    let opts = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let single = format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", opts.path, opts.host).into_bytes();
    let batch = single.repeat(opts.depth);
    let mut load = Load {
        poll: Poll::new().expect("epoll"),
        conns: Vec::with_capacity(opts.conns),
        batch,
        single,
        base: Instant::now(),
        counts: Counts::default(),
        hist: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds"),
        measuring: false,
        idle: Vec::new(),
        backlog: VecDeque::new(),
        opts,
    };
    for i in 0..load.opts.conns {
        match load.connect(i) {
            Ok(c) => load.conns.push(c),
            Err(e) => {
                eprintln!("http-load: connect to {}: {e}", load.opts.addr);
                std::process::exit(1);
            }
        }
    }
    for i in 0..load.opts.conns {
        load.start_conn(i);
    }

    let mut events = Events::with_capacity(1024);
    let warmup_end = load.opts.warmup.as_nanos() as u64;
    let end = warmup_end + load.opts.duration.as_nanos() as u64;
    let interval = if load.opts.rate > 0.0 {
        (1e9 / load.opts.rate) as u64
    } else {
        0
    };
    let mut next_due = 0u64;
    let server_ticks_now = |pid: Option<u32>| pid.map_or(0, server_ticks);
    let (mut cpu0, mut t0, mut server0) = (cpu_ns(), 0u64, 0u64);
    let (mut max_backlog, mut now) = (0usize, 0u64);
    while now < end {
        let timeout = if interval > 0 {
            let wait = next_due.saturating_sub(now);
            // Sleep only when the next send is far enough that epoll's ms timeout cannot make it late.
            Some(Duration::from_nanos(if wait >= 2_000_000 {
                wait - 1_000_000
            } else {
                0
            }))
        } else {
            Some(Duration::from_nanos((end - now).min(100_000_000)))
        };
        if let Err(e) = load.poll.poll(&mut events, timeout) {
            if e.kind() != ErrorKind::Interrupted {
                eprintln!("http-load: epoll: {e}");
                std::process::exit(1);
            }
        }
        for ev in events.iter() {
            load.on_event(
                ev.token().0,
                ev.is_readable() || ev.is_read_closed(),
                ev.is_writable(),
            );
        }
        now = load.base.elapsed().as_nanos() as u64;
        if !load.measuring && now >= warmup_end {
            load.measuring = true;
            load.counts = Counts::default();
            load.hist.reset();
            server0 = server_ticks_now(load.opts.server_pid);
            cpu0 = cpu_ns();
            t0 = now;
            max_backlog = 0;
        }
        if interval > 0 {
            if next_due == 0 {
                next_due = now;
            }
            while next_due <= now {
                match load.idle.pop() {
                    Some(i) => {
                        if let Err(e) = load.send(i, next_due, 1) {
                            load.fail(i, &format!("write: {e}"));
                        }
                    }
                    None => load.backlog.push_back(next_due),
                }
                next_due += interval;
            }
            max_backlog = max_backlog.max(load.backlog.len());
        }
    }
    let cpu = cpu_ns().saturating_sub(cpu0);
    // The suite the servers chose (every connection asks for the same).
    let suite = load
        .conns
        .iter()
        .find_map(|c| c.tls.as_ref()?.negotiated_cipher_suite())
        .map_or("none".to_string(), |s| format!("{:?}", s.suite()));
    let server_cpu = server_ticks_now(load.opts.server_pid).saturating_sub(server0);
    let wall = now.saturating_sub(t0).max(1);
    // USER_HZ, the unit of /proc/PID/stat times, is 100 on Linux.
    let server_s = server_cpu as f64 / 100.0;
    let c = &load.counts;
    let n = c.responses.max(1);
    let q = |p: f64| load.hist.value_at_quantile(p) as f64 / 1e3;
    let mode = if interval > 0 {
        "open"
    } else if load.opts.depth > 1 {
        "pipeline"
    } else {
        "keepalive"
    };
    println!(
        "http-load mode={mode} conns={} depth={} rate={} duration_s={:.3} requests={} rps={:.0} \
         cpu_s={:.4} cpu_us_per_req={:.4} cpu_pct={:.1} p50_us={:.1} p90_us={:.1} p99_us={:.1} \
         p999_us={:.1} max_us={:.1} non2xx={} errors={} reconnects={} max_backlog={max_backlog} \
         server_cpu_s={server_s:.2} server_cpu_us_per_req={:.4} server_cpu_pct={:.1} tls={suite}",
        load.opts.conns,
        load.opts.depth,
        load.opts.rate,
        wall as f64 / 1e9,
        c.responses,
        c.responses as f64 * 1e9 / wall as f64,
        cpu as f64 / 1e9,
        cpu as f64 / 1e3 / n as f64,
        100.0 * cpu as f64 / wall as f64,
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        load.hist.max() as f64 / 1e3,
        c.non_2xx,
        c.errors,
        c.reconnects,
        server_s * 1e6 / n as f64,
        100.0 * server_s * 1e9 / wall as f64,
    );
    eprintln!(
        "{mode}: {} responses in {:.2} s = {:.0} req/s; own CPU {:.3} us/request ({:.0}% of a core); \
         latency p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us{}",
        c.responses,
        wall as f64 / 1e9,
        c.responses as f64 * 1e9 / wall as f64,
        cpu as f64 / 1e3 / n as f64,
        100.0 * cpu as f64 / wall as f64,
        q(0.5),
        q(0.99),
        q(0.999),
        if interval > 0 { " (from the due time: open loop)" } else { " (closed loop: from the send)" },
    );
}

#[cfg(test)]
mod tests {
    use super::parse_response;

    #[test]
    fn a_response_is_complete_only_with_its_whole_body() {
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        assert_eq!(parse_response(r), Ok(Some((r.len(), 200))));
        assert_eq!(parse_response(&r[..r.len() - 1]), Ok(None));
        assert_eq!(parse_response(&r[..20]), Ok(None));
    }

    #[test]
    fn pipelined_responses_are_taken_one_at_a_time() {
        let one = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec();
        let two = [one.clone(), one.clone()].concat();
        assert_eq!(parse_response(&two), Ok(Some((one.len(), 404))));
    }

    #[test]
    fn what_it_cannot_count_is_an_error() {
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert!(parse_response(b"SSH-2.0-OpenSSH_9\r\nxxxxxxxxxxxxxx\r\n\r\n").is_err());
        assert_eq!(
            parse_response(b"HTTP/1.1 204 No Content\r\n\r\n"),
            Ok(Some((27, 204)))
        );
    }
}
