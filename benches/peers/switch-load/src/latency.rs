//! The latency mode: single-port RegPort (SETNX) round trips at a fixed rate.

use crate::*;
use std::time::{Duration, Instant};

pub(crate) fn latency(a: &Args) {
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
                            die(&format!(
                                "unexpected reply {}",
                                String::from_utf8_lossy(&ws.msg)
                            ));
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
