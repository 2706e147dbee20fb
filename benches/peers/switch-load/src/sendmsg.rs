//! The sendmsg mode: one sender, one receiver, order checked (switch or nats).

use crate::*;
use std::time::{Duration, Instant};

/// A body of `size` bytes whose first 16 are the decimal sequence number.
pub(crate) fn seq_body(out: &mut Vec<u8>, seq: u64, size: usize) {
    put_dec(out, seq, 16);
    out.resize(out.len() + size.saturating_sub(16), b'x');
}

pub(crate) fn sendmsg(a: &Args) {
    let c = Common::from(a);
    let proto = a.s("proto", "ws");
    let size: usize = a.get("size", 64);
    let window: u64 = a.get("window", 65536);
    let batch = c.batch as u64;
    // --total N (ws only): exactly N messages, no warm-up, then stop (for instruction counts).
    let total = c.total;
    if total > 0 && proto != "ws" {
        die("sendmsg --total is for --proto ws");
    }
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
            const EPOCH: &[u8] = b"{\"type\":\"epoch\",";
            const SESSION: &[u8] = b"{\"type\":\"session\",";
            let mut id = 0u64;
            let mut inflight_req = 0u64;
            meter = Meter::start(c.pid);
            deadline = meter.t0 + Duration::from_secs_f64(c.duration + c.warmup);
            let mut warm = (total == 0).then(|| meter.t0 + Duration::from_secs_f64(c.warmup));
            loop {
                let now = Instant::now();
                if warm.is_some_and(|w| now >= w) {
                    warm = None;
                    meter = Meter::start(c.pid);
                    base = got;
                    idle = Duration::ZERO;
                }
                let sending = if total > 0 {
                    sent < total
                } else {
                    now < deadline
                };
                let mut progress = false;
                loop {
                    // The last batch of a --total run may be short.
                    let next = if total > 0 {
                        batch.min(total - sent)
                    } else {
                        batch
                    };
                    if !sending
                        || next == 0
                        || sent + next > got + window
                        || inflight_req >= c.depth as u64
                    {
                        break;
                    }
                    progress = true;
                    id += 1;
                    buf.clear();
                    buf.extend_from_slice(b"{\"op\":\"sendmsg\",\"id\":");
                    buf.extend_from_slice(id.to_string().as_bytes());
                    buf.extend_from_slice(b",\"messages\":[");
                    for j in 0..next {
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
                    // A cluster member's batch starts with its epoch: {"type":"epoch","epoch":E}.
                    if m[p..].starts_with(EPOCH) {
                        p += m[p..]
                            .iter()
                            .position(|&c| c == b'}')
                            .map_or(m.len(), |e| e + 1);
                        if m.get(p) == Some(&b',') {
                            p += 1;
                        }
                    }
                    // The connection's first push names its session (issue 15).
                    if m[p..].starts_with(SESSION) {
                        continue;
                    }
                    while p < m.len() && m[p] != b']' {
                        if m[p] == b',' {
                            p += 1;
                        }
                        if !m[p..].starts_with(PREFIX) {
                            die(&format!(
                                "unexpected push: {}",
                                String::from_utf8_lossy(&m[p..m.len().min(p + 200)])
                            ));
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
                k.write_all_blocking(
                    b"CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":false}\r\n",
                );
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
                            die(&format!(
                                "nats: unexpected {}",
                                String::from_utf8_lossy(&rest[..e])
                            ));
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
pub(crate) fn nats_control(k: &mut Conn) {
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
