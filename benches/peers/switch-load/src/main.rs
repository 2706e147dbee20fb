//! switch-load: the load generator of benches/switch.sh (issue 4).
//!
//! One thread, non-blocking sockets polled in a loop (the process is meant to own a core), so
//! the client stays far below the servers' cost per operation. std only: a minimal WebSocket
//! client (RFC 6455 framing, masked client frames, fragmented server messages), pipelined
//! HTTP/1.1, RESP (redis) and the NATS text protocol.
//!
//! ```text
//! switch-load MODE [--key value]...
//!   regport  --proto ws|http|redis   N connections pipeline RegPort batches of 16-byte ports
//!                                    (redis: SETNX per key) for --duration s (or --total ports)
//!   sendmsg  --proto ws|nats         one sender -> one receiver, --size-byte bodies, order checked
//!   latency  --proto ws|redis        single-port RegPort (SETNX) round trips at --rate per second
//!   memory   --proto ws|redis        register --total ports, report RSS per port
//! common: --host 127.0.0.1 --port P --pid SERVER_PID --duration S --nodes N --batch B
//!         --depth D --token T --node-prefix b --tag XX --window W --size 64 --rate R
//!         --warmup S (regport/sendmsg: first S seconds not measured, default 1; latency: 0.5)
//!         --warmup-ports N (regport with --total: N more ports first, not measured)
//! ```
//!
//! Prints one line of `key=value` pairs, including the server's CPU time per operation
//! (utime+stime of --pid from /proc/PID/stat, before/after), the server's and this client's
//! share of a core over the run, and the load average. The client polls, so it always shows
//! ~100 % of its core; sendmsg also reports `client_idle_pct`, the share of the wall time spent
//! in loop turns that moved no bytes (waiting on the server): near 0 means the client, not the
//! server, is the bound.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::exit;
use std::str::FromStr;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// arguments

struct Args(HashMap<String, String>);

impl Args {
    fn parse(v: &[String]) -> Args {
        let mut m = HashMap::new();
        let mut i = 0;
        while i < v.len() {
            let k = v[i].strip_prefix("--").unwrap_or_else(|| die(&format!("bad argument {}", v[i])));
            let val = v.get(i + 1).unwrap_or_else(|| die(&format!("--{k} needs a value")));
            m.insert(k.to_string(), val.clone());
            i += 2;
        }
        Args(m)
    }
    fn get<T: FromStr>(&self, k: &str, default: T) -> T {
        match self.0.get(k) {
            Some(v) => v.parse().unwrap_or_else(|_| die(&format!("bad value for --{k}: {v}"))),
            None => default,
        }
    }
    fn s(&self, k: &str, default: &str) -> String {
        self.0.get(k).cloned().unwrap_or_else(|| default.to_string())
    }
}

fn die(msg: &str) -> ! {
    eprintln!("switch-load: {msg}");
    exit(2)
}

fn fail<T>(what: &str, e: io::Error) -> T {
    die(&format!("{what}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// /proc

fn clk_tck() -> f64 {
    std::env::var("CLK_TCK").ok().and_then(|v| v.parse().ok()).unwrap_or(100.0)
}

/// utime+stime of a process in seconds (all its threads, live and exited).
fn cpu_s(pid: u32) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    let rest = &s[s.rfind(')').map_or(0, |i| i + 2)..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3; utime is field 14, stime field 15.
    let t: f64 = f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0);
    t / clk_tck()
}

/// A `kB` line of /proc/PID/status, in bytes.
fn status_bytes(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    for line in s.lines() {
        if let Some(v) = line.strip_prefix(key).and_then(|v| v.strip_prefix(':')) {
            return v.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap_or(0) * 1024;
        }
    }
    0
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

/// CPU accounting of one measured interval: the server (--pid) and this process.
struct Meter {
    pid: u32,
    t0: Instant,
    srv0: f64,
    me0: f64,
}

impl Meter {
    fn start(pid: u32) -> Meter {
        Meter { pid, t0: Instant::now(), srv0: if pid > 0 { cpu_s(pid) } else { 0.0 }, me0: cpu_s(std::process::id()) }
    }
    /// `wall`, and the key=value fields for `ops` operations.
    fn report(&self, ops: u64, unit: &str) -> (f64, String) {
        let wall = self.t0.elapsed().as_secs_f64();
        let srv = if self.pid > 0 { cpu_s(self.pid) - self.srv0 } else { 0.0 };
        let me = cpu_s(std::process::id()) - self.me0;
        let per = if ops > 0 { srv * 1e9 / ops as f64 } else { 0.0 };
        let per_cpu_s = if srv > 0.0 { ops as f64 / srv } else { 0.0 };
        (
            wall,
            format!(
                "{unit}={ops} seconds={wall:.3} {unit}_per_s={:.0} server_cpu_s={srv:.2} server_ns_per_op={per:.0} \
                 {unit}_per_server_cpu_s={per_cpu_s:.0} server_pct={:.0} client_pct={:.0} load={}",
                ops as f64 / wall,
                100.0 * srv / wall,
                100.0 * me / wall,
                loadavg()
            ),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// a non-blocking connection with its own read and write buffers

struct Conn {
    s: TcpStream,
    rbuf: Vec<u8>,
    rstart: usize,
    rend: usize,
    wbuf: Vec<u8>,
    wpos: usize,
}

impl Conn {
    fn connect(host: &str, port: u16) -> Conn {
        let s = TcpStream::connect((host, port)).unwrap_or_else(|e| fail(&format!("connect {host}:{port}"), e));
        s.set_nodelay(true).ok();
        Conn { s, rbuf: vec![0; 1 << 20], rstart: 0, rend: 0, wbuf: Vec::with_capacity(1 << 20), wpos: 0 }
    }

    fn data(&self) -> &[u8] {
        &self.rbuf[self.rstart..self.rend]
    }

    fn consume(&mut self, n: usize) {
        self.rstart += n;
        if self.rstart == self.rend {
            self.rstart = 0;
            self.rend = 0;
        }
    }

    fn pending(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// Write what is buffered, as far as the socket takes it; whether anything was written.
    fn flush(&mut self) -> bool {
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
    fn fill(&mut self) -> usize {
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

    fn nonblocking(&self) {
        self.s.set_nonblocking(true).unwrap_or_else(|e| fail("set_nonblocking", e));
    }

    /// Blocking: read until `pat` appears in the buffer; its end offset in `data()`.
    fn read_until(&mut self, pat: &[u8]) -> usize {
        loop {
            if let Some(i) = find(self.data(), pat) {
                return i + pat.len();
            }
            self.fill();
        }
    }

    fn write_all_blocking(&mut self, b: &[u8]) {
        self.s.write_all(b).unwrap_or_else(|e| fail("write", e));
    }
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
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
fn num_after(h: &[u8], key: &[u8]) -> Option<u64> {
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
fn put_dec(out: &mut Vec<u8>, mut v: u64, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    let mut i = start + width;
    while v > 0 && i > start {
        i -= 1;
        out[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

fn parse_dec(b: &[u8]) -> u64 {
    b.iter().fold(0, |v, &c| v * 10 + (c.wrapping_sub(b'0')) as u64)
}

/// A 16-byte port name: 2-byte run tag, 3-digit connection, 11-digit counter.
fn port_name(out: &mut Vec<u8>, tag: &[u8; 2], conn: usize, n: u64) {
    out.extend_from_slice(tag);
    put_dec(out, conn as u64, 3);
    put_dec(out, n, 11);
}

// ---------------------------------------------------------------------------------------------
// WebSocket client

struct Ws {
    c: Conn,
    msg: Vec<u8>,
    frag: Vec<u8>,
    frag_op: u8,
    rng: u64,
}

impl Ws {
    fn open(host: &str, port: u16, node: &str, token: &str) -> Ws {
        let mut c = Conn::connect(host, port);
        let req = format!(
            "GET /v1/ws/{node}?address={node}:1 HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n\
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
        Ws { c, msg: Vec::new(), frag: Vec::new(), frag_op: 0, rng }
    }

    fn send(&mut self, op: u8, payload: &[u8]) {
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
        let m8 = u64::from_ne_bytes([mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3]]);
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

    fn send_text(&mut self, payload: &[u8]) {
        self.send(1, payload)
    }

    /// The next complete data message (opcode; payload in `self.msg`), if buffered.
    fn next(&mut self) -> Option<u8> {
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
                127 if d.len() >= 10 => (u64::from_be_bytes(d[2..10].try_into().unwrap()) as usize, 10),
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
                    let code = if len >= 2 { u16::from_be_bytes([payload[0], payload[1]]) } else { 0 };
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
    fn call(&mut self, payload: &[u8]) -> Vec<u8> {
        self.send_text(payload);
        loop {
            self.c.flush();
            self.c.fill();
            while self.next().is_some() {
                if self.msg.first() == Some(&b'{') {
                    if find(&self.msg, b"\"error\"").is_some() {
                        die(&format!("error reply: {}", String::from_utf8_lossy(&self.msg)));
                    }
                    return self.msg.clone();
                }
            }
        }
    }
}

fn check_reply(msg: &[u8]) {
    if find(msg, b"\"error\"").is_some() {
        die(&format!("error reply: {}", String::from_utf8_lossy(msg)));
    }
}

// ---------------------------------------------------------------------------------------------
// pipelined HTTP/1.1 responses

/// A complete response at the front of `c`'s buffer: (status, body start, total length).
fn http_next(c: &Conn) -> Option<(u16, usize, usize)> {
    let d = c.data();
    let head_end = find(d, b"\r\n\r\n")? + 4;
    let head = &d[..head_end];
    let status = parse_dec(&head[9..12]) as u16;
    let mut len = 0usize;
    for line in head.split(|&b| b == b'\n') {
        if line.len() > 15 && line[..15].eq_ignore_ascii_case(b"content-length:") {
            let v = line[15..].iter().filter(|b| b.is_ascii_digit()).copied().collect::<Vec<u8>>();
            len = parse_dec(&v) as usize;
        }
    }
    (d.len() >= head_end + len).then_some((status, head_end, head_end + len))
}

// ---------------------------------------------------------------------------------------------
// modes

struct Common {
    host: String,
    port: u16,
    pid: u32,
    duration: f64,
    nodes: usize,
    batch: usize,
    depth: usize,
    token: String,
    prefix: String,
    tag: [u8; 2],
    total: u64,
    warmup: f64,
    warmup_ports: u64,
    progress: bool,
}

impl Common {
    fn from(a: &Args) -> Common {
        let tag = a.s("tag", "aa");
        let tb = tag.as_bytes();
        if tb.len() != 2 {
            die("--tag must be 2 bytes");
        }
        Common {
            host: a.s("host", "127.0.0.1"),
            port: a.get("port", 0u16),
            pid: a.get("pid", 0u32),
            duration: a.get("duration", 5.0f64),
            nodes: a.get("nodes", 4usize),
            batch: a.get("batch", 1000usize),
            depth: a.get("depth", 8usize),
            token: a.s("token", "bench"),
            prefix: a.s("node-prefix", "b"),
            tag: [tb[0], tb[1]],
            total: a.get("total", 0u64),
            warmup: a.get("warmup", 1.0f64),
            warmup_ports: a.get("warmup-ports", 0u64),
            progress: a.get("progress", 0u8) != 0,
        }
    }
    fn node(&self, i: usize) -> String {
        format!("{}{}", self.prefix, i)
    }
}

/// Shared loop of `regport` and `memory`: every connection keeps `depth` batches in flight
/// until the deadline (or `total` ports issued); returns (ports acknowledged, failed).
/// With a `duration`, the first `c.warmup` seconds are not measured (the meter restarts and
/// the count is reset then), so first-touch page faults of the stream buffers are left out.
fn register_loop(c: &Common, proto: &str, total: u64, duration: Option<f64>) -> (u64, u64, Meter) {
    enum Link {
        Ws(Ws),
        Http(Conn, Ws),
        Redis(Conn),
    }
    let mut links: Vec<Link> = (0..c.nodes)
        .map(|i| match proto {
            "ws" => Link::Ws(Ws::open(&c.host, c.port, &c.node(i), &c.token)),
            "http" => {
                let ws = Ws::open(&c.host, c.port, &c.node(i), &c.token);
                let h = Conn::connect(&c.host, c.port);
                h.nonblocking();
                Link::Http(h, ws)
            }
            "redis" => {
                let r = Conn::connect(&c.host, c.port);
                r.nonblocking();
                Link::Redis(r)
            }
            p => die(&format!("unknown --proto {p} for regport")),
        })
        .collect();
    let n = links.len();
    let mut inflight = vec![0usize; n]; // batches (ws/http) or commands (redis)
    let mut counter = vec![0u64; n];
    let mut issued = 0u64;
    let mut acked = 0u64;
    let mut failed = 0u64;
    let mut id = 0u64;
    let mut body = Vec::with_capacity(c.batch * 20 + 64);
    let mut req = Vec::with_capacity(c.batch * 20 + 256);
    let nodes: Vec<String> = (0..n).map(|i| c.node(i)).collect();
    let mut meter = Meter::start(c.pid);
    let mut warm = duration.map(|_| meter.t0 + Duration::from_secs_f64(c.warmup));
    let mut deadline = duration.map(|d| meter.t0 + Duration::from_secs_f64(d + c.warmup));
    let total = if total > 0 { total + c.warmup_ports } else { 0 };
    let mut warm_ports = (total > 0 && c.warmup_ports > 0).then_some(c.warmup_ports);
    let mut base = 0u64;
    let mut spins = 0u32;
    let mut last = Instant::now();
    let mut last_acked = 0u64;
    loop {
        spins = spins.wrapping_add(1);
        if c.progress && spins % 1024 == 0 && last.elapsed() >= Duration::from_secs(1) {
            let t = last.elapsed().as_secs_f64();
            eprintln!("  {:.0} ports/s, {} acked, server cpu {:.2}s", (acked - last_acked) as f64 / t, acked, cpu_s(c.pid));
            last = Instant::now();
            last_acked = acked;
        }
        if warm.is_some_and(|w| Instant::now() >= w) || warm_ports.is_some_and(|w| acked >= w) {
            warm = None;
            warm_ports = None;
            meter = Meter::start(c.pid);
            base = acked;
            deadline = duration.map(|d| meter.t0 + Duration::from_secs_f64(d));
        }
        let sending = (total == 0 || issued < total)
            && deadline.is_none_or(|d| spins % 64 != 0 || Instant::now() < d);
        let mut done = !sending;
        for (i, link) in links.iter_mut().enumerate() {
            let limit = if matches!(link, Link::Redis(_)) { c.depth * c.batch } else { c.depth };
            while (total == 0 || issued < total)
                && deadline.is_none_or(|d| Instant::now() < d)
                && inflight[i] < limit
            {
                let k = if total > 0 { (total - issued).min(c.batch as u64) as usize } else { c.batch };
                match link {
                    Link::Ws(ws) => {
                        id += 1;
                        body.clear();
                        body.extend_from_slice(b"{\"op\":\"regport\",\"id\":");
                        body.extend_from_slice(id.to_string().as_bytes());
                        body.extend_from_slice(b",\"ports\":[");
                        for j in 0..k {
                            if j > 0 {
                                body.push(b',');
                            }
                            body.push(b'"');
                            port_name(&mut body, &c.tag, i, counter[i]);
                            counter[i] += 1;
                            body.push(b'"');
                        }
                        body.extend_from_slice(b"]}");
                        ws.send_text(&body);
                        inflight[i] += 1;
                    }
                    Link::Http(h, _) => {
                        body.clear();
                        body.extend_from_slice(b"{\"ports\":[");
                        for j in 0..k {
                            if j > 0 {
                                body.push(b',');
                            }
                            body.push(b'"');
                            port_name(&mut body, &c.tag, i, counter[i]);
                            counter[i] += 1;
                            body.push(b'"');
                        }
                        body.extend_from_slice(b"]}");
                        req.clear();
                        write!(
                            req,
                            "POST /v1/nodes/{}/ports HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
                             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                            nodes[i],
                            c.token,
                            body.len()
                        )
                        .unwrap();
                        h.wbuf.extend_from_slice(&req);
                        h.wbuf.extend_from_slice(&body);
                        inflight[i] += 1;
                    }
                    Link::Redis(r) => {
                        // k SETNX commands, like redis-benchmark -P k: "SETNX <16-byte key> b<conn>".
                        let val = nodes[i].as_bytes();
                        for _ in 0..k {
                            r.wbuf.extend_from_slice(b"*3\r\n$5\r\nSETNX\r\n$16\r\n");
                            port_name(&mut r.wbuf, &c.tag, i, counter[i]);
                            counter[i] += 1;
                            r.wbuf.extend_from_slice(b"\r\n$");
                            r.wbuf.extend_from_slice(val.len().to_string().as_bytes());
                            r.wbuf.extend_from_slice(b"\r\n");
                            r.wbuf.extend_from_slice(val);
                            r.wbuf.extend_from_slice(b"\r\n");
                        }
                        inflight[i] += k;
                    }
                }
                issued += k as u64;
            }
            match link {
                Link::Ws(ws) => {
                    ws.c.flush();
                    ws.c.fill();
                    while ws.next().is_some() {
                        if ws.msg.first() == Some(&b'{') {
                            check_reply(&ws.msg);
                            let reg = num_after(&ws.msg, b"\"registered\":").unwrap_or(0);
                            acked += reg;
                            if find(&ws.msg, b"\"failed\":[]").is_none() {
                                failed += 1;
                            }
                            inflight[i] -= 1;
                        }
                    }
                }
                Link::Http(h, ws) => {
                    h.flush();
                    h.fill();
                    while let Some((status, b, end)) = http_next(h) {
                        let d = &h.data()[b..end];
                        if status != 200 {
                            die(&format!("HTTP {status}: {}", String::from_utf8_lossy(d)));
                        }
                        acked += num_after(d, b"\"registered\":").unwrap_or(0);
                        if find(d, b"\"failed\":[]").is_none() {
                            failed += 1;
                        }
                        h.consume(end);
                        inflight[i] -= 1;
                    }
                    ws.c.flush();
                    ws.c.fill();
                    while ws.next().is_some() {}
                }
                Link::Redis(r) => {
                    r.flush();
                    r.fill();
                    // replies ":1\r\n" (set) or ":0\r\n" (exists)
                    let d = r.data();
                    let mut p = 0;
                    while p + 4 <= d.len() {
                        match &d[p..p + 4] {
                            b":1\r\n" => acked += 1,
                            b":0\r\n" => failed += 1,
                            _ => die(&format!("redis: {}", String::from_utf8_lossy(&d[p..d.len().min(p + 200)]))),
                        }
                        p += 4;
                        inflight[i] -= 1;
                    }
                    r.consume(p);
                }
            }
            if inflight[i] > 0 {
                done = false;
            }
        }
        if done {
            break;
        }
    }
    (acked - base, failed, meter)
}

fn regport(a: &Args) {
    let c = Common::from(a);
    let proto = a.s("proto", "ws");
    let duration = (c.total == 0).then_some(c.duration);
    let (acked, failed, meter) = register_loop(&c, &proto, c.total, duration);
    let (_, fields) = meter.report(acked, "ports");
    println!(
        "mode=regport proto={proto} conns={} batch={} depth={} {fields} failed={failed}",
        c.nodes, c.batch, c.depth
    );
    if failed > 0 {
        die("some registrations failed");
    }
}

fn memory(a: &Args) {
    let c = Common::from(a);
    let proto = a.s("proto", "ws");
    let total = if c.total == 0 { 10_000_000 } else { c.total };
    if c.pid == 0 {
        die("memory needs --pid");
    }
    let anon0 = status_bytes(c.pid, "RssAnon");
    let rss0 = status_bytes(c.pid, "VmRSS");
    let (acked, failed, meter) = register_loop(&c, &proto, total, None);
    let (_, fields) = meter.report(acked, "ports");
    std::thread::sleep(Duration::from_millis(300));
    let anon1 = status_bytes(c.pid, "RssAnon");
    let rss1 = status_bytes(c.pid, "VmRSS");
    let per = |a: u64, b: u64| (b as f64 - a as f64) / acked.max(1) as f64;
    println!(
        "mode=memory proto={proto} {fields} failed={failed} rss_anon_before={anon0} rss_anon_after={anon1} \
         vmrss_before={rss0} vmrss_after={rss1} anon_bytes_per_port={:.1} vmrss_bytes_per_port={:.1}",
        per(anon0, anon1),
        per(rss0, rss1)
    );
    if failed > 0 || acked != total {
        die(&format!("registered {acked} of {total}"));
    }
}

/// A body of `size` bytes whose first 16 are the decimal sequence number.
fn seq_body(out: &mut Vec<u8>, seq: u64, size: usize) {
    put_dec(out, seq, 16);
    out.resize(out.len() + size.saturating_sub(16), b'x');
}

fn sendmsg(a: &Args) {
    let c = Common::from(a);
    let proto = a.s("proto", "ws");
    let size: usize = a.get("size", 64);
    let window: u64 = a.get("window", 65536);
    let batch = c.batch as u64;
    let deadline;
    let mut base = 0u64; // messages received during the warm-up
    let mut sent = 0u64; // messages written
    let mut got = 0u64; // messages received, in order
    let mut frames = 0u64;
    let mut acks = 0u64;
    let mut buf = Vec::with_capacity(c.batch * (size + 64) + 64);
    let mut meter;
    // Time spent in loop turns that moved no bytes: the client waiting on the server.
    let mut idle = Duration::ZERO;
    match proto.as_str() {
        "ws" => {
            let mut rx = Ws::open(&c.host, c.port, &c.node(0), &c.token);
            rx.call(b"{\"op\":\"regport\",\"id\":0,\"ports\":[\"inbox\"]}");
            let mut tx = Ws::open(&c.host, c.port, &c.node(1), &c.token);
            const PREFIX: &[u8] = b"{\"type\":\"msg\",\"port\":\"inbox\",\"body\":\"";
            let mut id = 0u64;
            let mut inflight_req = 0u64;
            meter = Meter::start(c.pid);
            deadline = meter.t0 + Duration::from_secs_f64(c.duration + c.warmup);
            let mut warm = Some(meter.t0 + Duration::from_secs_f64(c.warmup));
            loop {
                let now = Instant::now();
                if warm.is_some_and(|w| now >= w) {
                    warm = None;
                    meter = Meter::start(c.pid);
                    base = got;
                    idle = Duration::ZERO;
                }
                let sending = now < deadline;
                let mut progress = false;
                while sending && sent + batch <= got + window && inflight_req < c.depth as u64 {
                    progress = true;
                    id += 1;
                    buf.clear();
                    buf.extend_from_slice(b"{\"op\":\"sendmsg\",\"id\":");
                    buf.extend_from_slice(id.to_string().as_bytes());
                    buf.extend_from_slice(b",\"messages\":[");
                    for j in 0..batch {
                        if j > 0 {
                            buf.push(b',');
                        }
                        buf.extend_from_slice(b"{\"port\":\"inbox\",\"body\":\"");
                        seq_body(&mut buf, sent, size);
                        sent += 1;
                        buf.extend_from_slice(b"\"}");
                    }
                    buf.extend_from_slice(b"]}");
                    tx.send_text(&buf);
                    inflight_req += 1;
                }
                progress |= tx.c.flush();
                progress |= tx.c.fill() > 0;
                while tx.next().is_some() {
                    if tx.msg.first() == Some(&b'{') {
                        check_reply(&tx.msg);
                        if num_after(&tx.msg, b"\"dropped\":") != Some(0) {
                            die(&format!("dropped: {}", String::from_utf8_lossy(&tx.msg)));
                        }
                        acks += num_after(&tx.msg, b"\"delivered\":").unwrap_or(0);
                        inflight_req -= 1;
                    }
                }
                progress |= rx.c.flush();
                progress |= rx.c.fill() > 0;
                if !progress {
                    idle += now.elapsed();
                }
                while rx.next().is_some() {
                    let m = &rx.msg;
                    if m.first() != Some(&b'[') {
                        continue;
                    }
                    frames += 1;
                    let mut p = 1;
                    while p < m.len() && m[p] != b']' {
                        if m[p] == b',' {
                            p += 1;
                        }
                        if !m[p..].starts_with(PREFIX) {
                            die(&format!("unexpected push: {}", String::from_utf8_lossy(&m[p..m.len().min(p + 200)])));
                        }
                        p += PREFIX.len();
                        let seq = parse_dec(&m[p..p + 16]);
                        if seq != got {
                            die(&format!("out of order: got {seq}, expected {got}"));
                        }
                        got += 1;
                        p += size + 2; // body, `"}`
                    }
                }
                if !sending && got == sent && inflight_req == 0 {
                    break;
                }
            }
        }
        "nats" => {
            let open = |c: &Common| {
                let mut k = Conn::connect(&c.host, c.port);
                let e = k.read_until(b"\r\n");
                k.consume(e); // INFO
                k.write_all_blocking(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":false}\r\n");
                k
            };
            let mut rx = open(&c);
            rx.write_all_blocking(b"SUB inbox 1\r\nPING\r\n");
            let e = rx.read_until(b"PONG\r\n");
            rx.consume(e);
            rx.nonblocking();
            let mut tx = open(&c);
            tx.write_all_blocking(b"PING\r\n");
            let e = tx.read_until(b"PONG\r\n");
            tx.consume(e);
            tx.nonblocking();
            let head = format!("PUB inbox {size}\r\n");
            let msg_head = format!("MSG inbox 1 {size}\r\n");
            let mh = msg_head.as_bytes();
            meter = Meter::start(c.pid);
            deadline = meter.t0 + Duration::from_secs_f64(c.duration + c.warmup);
            let mut warm = Some(meter.t0 + Duration::from_secs_f64(c.warmup));
            loop {
                let now = Instant::now();
                if warm.is_some_and(|w| now >= w) {
                    warm = None;
                    meter = Meter::start(c.pid);
                    base = got;
                    idle = Duration::ZERO;
                }
                let sending = now < deadline;
                let mut progress = false;
                // a batch per write, like a SendMsg batch; no more than `window` undelivered
                while sending && sent + batch <= got + window && tx.pending() < (1 << 20) {
                    progress = true;
                    for _ in 0..batch {
                        tx.wbuf.extend_from_slice(head.as_bytes());
                        seq_body(&mut tx.wbuf, sent, size);
                        tx.wbuf.extend_from_slice(b"\r\n");
                        sent += 1;
                    }
                    acks += batch;
                }
                progress |= tx.flush();
                progress |= tx.fill() > 0;
                nats_control(&mut tx);
                progress |= rx.flush();
                progress |= rx.fill() > 0;
                if !progress {
                    idle += now.elapsed();
                }
                let d = rx.data();
                let mut p = 0;
                let mut ping = false;
                loop {
                    let rest = &d[p..];
                    if rest.starts_with(mh) {
                        if rest.len() < mh.len() + size + 2 {
                            break;
                        }
                        let seq = parse_dec(&rest[mh.len()..mh.len() + 16]);
                        if seq != got {
                            die(&format!("nats out of order: got {seq}, expected {got}"));
                        }
                        got += 1;
                        p += mh.len() + size + 2;
                    } else if let Some(e) = find(rest, b"\r\n") {
                        if rest.starts_with(b"PING") {
                            ping = true;
                        } else if rest.starts_with(b"-ERR") {
                            die(&format!("nats: {}", String::from_utf8_lossy(&rest[..e])));
                        } else if !rest.starts_with(b"+OK") && !rest.starts_with(b"PONG") {
                            if rest.len() < mh.len() {
                                break;
                            }
                            die(&format!("nats: unexpected {}", String::from_utf8_lossy(&rest[..e])));
                        }
                        p += e + 2;
                    } else {
                        break;
                    }
                }
                rx.consume(p);
                if ping {
                    rx.wbuf.extend_from_slice(b"PONG\r\n");
                }
                if !sending && got == sent {
                    break;
                }
            }
            frames = 0;
        }
        p => die(&format!("unknown --proto {p} for sendmsg")),
    }
    let (wall, fields) = meter.report(got - base, "msgs");
    println!(
        "mode=sendmsg proto={proto} batch={batch} window={window} size={size} {fields} client_idle_pct={:.0} acked={acks} push_frames={frames} msgs_per_frame={:.1}",
        100.0 * idle.as_secs_f64() / wall,
        if frames > 0 { got as f64 / frames as f64 } else { 0.0 }
    );
}

/// Answer PINGs on a NATS publisher connection (and drop +OK/PONG).
fn nats_control(k: &mut Conn) {
    loop {
        let d = k.data();
        let Some(e) = find(d, b"\r\n") else { return };
        if d.starts_with(b"PING") {
            k.wbuf.extend_from_slice(b"PONG\r\n");
        } else if d.starts_with(b"-ERR") {
            die(&format!("nats: {}", String::from_utf8_lossy(&d[..e])));
        }
        k.consume(e + 2);
    }
}

fn latency(a: &Args) {
    let c = Common::from(a);
    let proto = a.s("proto", "ws");
    let rate: f64 = a.get("rate", 2000.0);
    let warmup: f64 = a.get("warmup", 0.5);
    let n = (rate * c.duration) as usize;
    let skip = (rate * warmup) as usize;
    let mut lat: Vec<u32> = Vec::with_capacity(n); // ns
    let mut due: Vec<Instant> = Vec::with_capacity(n);
    let mut body = Vec::with_capacity(128);
    let mut replies = 0usize;
    enum L {
        Ws(Ws),
        Redis(Conn),
    }
    let mut l = match proto.as_str() {
        "ws" => L::Ws(Ws::open(&c.host, c.port, &c.node(0), &c.token)),
        "redis" => {
            let r = Conn::connect(&c.host, c.port);
            r.nonblocking();
            L::Redis(r)
        }
        p => die(&format!("unknown --proto {p} for latency")),
    };
    let meter = Meter::start(c.pid);
    let t0 = Instant::now();
    let step = Duration::from_secs_f64(1.0 / rate);
    while replies < n {
        let now = Instant::now();
        // Latency counts from the scheduled send time (no coordinated omission).
        while due.len() < n && t0 + step * due.len() as u32 <= now {
            let i = due.len() as u64;
            due.push(t0 + step * due.len() as u32);
            body.clear();
            match &mut l {
                L::Ws(ws) => {
                    body.extend_from_slice(b"{\"op\":\"regport\",\"id\":");
                    body.extend_from_slice(i.to_string().as_bytes());
                    body.extend_from_slice(b",\"ports\":[\"");
                    port_name(&mut body, &c.tag, 999, i);
                    body.extend_from_slice(b"\"]}");
                    ws.send_text(&body);
                }
                L::Redis(r) => {
                    r.wbuf.extend_from_slice(b"*3\r\n$5\r\nSETNX\r\n$16\r\n");
                    port_name(&mut r.wbuf, &c.tag, 999, i);
                    r.wbuf.extend_from_slice(b"\r\n$2\r\nb0\r\n");
                }
            }
        }
        match &mut l {
            L::Ws(ws) => {
                ws.c.flush();
                ws.c.fill();
                while ws.next().is_some() {
                    if ws.msg.first() == Some(&b'{') {
                        let t = Instant::now();
                        check_reply(&ws.msg);
                        let id = num_after(&ws.msg, b"\"id\":").unwrap_or(u64::MAX) as usize;
                        if id != replies || num_after(&ws.msg, b"\"registered\":") != Some(1) {
                            die(&format!("unexpected reply {}", String::from_utf8_lossy(&ws.msg)));
                        }
                        lat.push((t - due[id]).as_nanos().min(u32::MAX as u128) as u32);
                        replies += 1;
                    }
                }
            }
            L::Redis(r) => {
                r.flush();
                r.fill();
                let t = Instant::now();
                let mut p = 0;
                let d = r.data();
                while p + 4 <= d.len() {
                    if &d[p..p + 4] != b":1\r\n" {
                        die("unexpected redis reply");
                    }
                    lat.push((t - due[replies]).as_nanos().min(u32::MAX as u128) as u32);
                    replies += 1;
                    p += 4;
                }
                r.consume(p);
            }
        }
    }
    let (_, fields) = meter.report(n as u64, "requests");
    let mut s: Vec<u32> = lat[skip.min(lat.len() - 1)..].to_vec();
    s.sort_unstable();
    let pct = |q: f64| s[((q * s.len() as f64) as usize).min(s.len() - 1)] as f64 / 1000.0;
    println!(
        "mode=latency proto={proto} rate={rate} samples={} p50_us={:.1} p90_us={:.1} p99_us={:.1} p999_us={:.1} max_us={:.1} {fields}",
        s.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(0.999),
        *s.last().unwrap() as f64 / 1000.0
    );
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let Some(mode) = argv.get(1) else {
        die("usage: switch-load regport|sendmsg|latency|memory [--key value]... (see src/main.rs)")
    };
    let a = Args::parse(&argv[2..]);
    match mode.as_str() {
        "regport" => regport(&a),
        "memory" => memory(&a),
        "sendmsg" => sendmsg(&a),
        "latency" => latency(&a),
        m => die(&format!("unknown mode {m}")),
    }
}
