//! The regport and memory modes: RegPort batches (SETNX for redis) from N connections.

use crate::*;
use std::io::Write;
use std::time::{Duration, Instant};

pub(crate) struct Common {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) pid: u32,
    pub(crate) duration: f64,
    pub(crate) nodes: usize,
    pub(crate) batch: usize,
    pub(crate) depth: usize,
    pub(crate) token: String,
    pub(crate) prefix: String,
    pub(crate) tag: [u8; 2],
    pub(crate) total: u64,
    pub(crate) warmup: f64,
    pub(crate) warmup_ports: u64,
    pub(crate) progress: bool,
}

impl Common {
    pub(crate) fn from(a: &Args) -> Common {
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
    pub(crate) fn node(&self, i: usize) -> String {
        format!("{}{}", self.prefix, i)
    }
}

/// Shared loop of `regport` and `memory`: every connection keeps `depth` batches in flight
/// until the deadline (or `total` ports issued); returns (ports acknowledged, failed).
/// With a `duration`, the first `c.warmup` seconds are not measured (the meter restarts and
/// the count is reset then), so first-touch page faults of the stream buffers are left out.
pub(crate) fn register_loop(
    c: &Common,
    proto: &str,
    total: u64,
    duration: Option<f64>,
) -> (u64, u64, Meter) {
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
            eprintln!(
                "  {:.0} ports/s, {} acked, server cpu {:.2}s",
                (acked - last_acked) as f64 / t,
                acked,
                cpu_s(c.pid)
            );
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
            let limit = if matches!(link, Link::Redis(_)) {
                c.depth * c.batch
            } else {
                c.depth
            };
            while (total == 0 || issued < total)
                && deadline.is_none_or(|d| Instant::now() < d)
                && inflight[i] < limit
            {
                let k = if total > 0 {
                    (total - issued).min(c.batch as u64) as usize
                } else {
                    c.batch
                };
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
                            _ => die(&format!(
                                "redis: {}",
                                String::from_utf8_lossy(&d[p..d.len().min(p + 200)])
                            )),
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

pub(crate) fn regport(a: &Args) {
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

pub(crate) fn memory(a: &Args) {
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
