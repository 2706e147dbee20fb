//! The background mode (issue 15): the coordination load that runs beside a measured RegPort
//! or SendMsg load, so benches/switch.sh can compare the switch with it and without it.
//!
//! ```text
//! switch-load background --port P --stop FILE [--ready FILE]
//!   --list-ports 1000000   ports preloaded under "l:" by node l0 (in batches of 10,000)
//!   --watch-nodes 100      watcher nodes w0.. (WebSocket), each with
//!   --watches 100          watches on the prefix "w:" (10,000 watches in all)
//!   --node-less 0          1: the watchers are not nodes (WebSocket /v1/ws/, the first watch
//!                          in its query; the token needs watch_ports = ["w:"])
//!   --list-rate 50         pages per second of GET /v1/ports?prefix=l:&limit=LIMIT, paged
//!   --list-limit 1000      with the cursor through the whole listing, again and again
//!   --trickle-rate 1       events per second on "w:" (node t0 registers and unregisters
//!                          "w:trickle" in turn), each pushed to every watch
//!   --token bench-coord
//! ```
//!
//! With `--watch-nodes 0 --list-rate 0 --trickle-rate 0` only the ports are preloaded: the
//! "off" variant, with the same table. Writes "ready" to --ready once everything is set up,
//! runs until --stop exists, then prints `key=value` figures: pages and entries listed,
//! passes over the whole listing, trickle events, and the watch pushes received, which must
//! be every event for every watch (else it fails: the watches were not live).

use crate::*;
use std::time::{Duration, Instant};

struct Watcher {
    ws: Ws,
    pushes: u64,
}

/// Counts the watch pushes in a batch.
fn count_watch_pushes(msg: &[u8]) -> u64 {
    let mut n = 0;
    let mut rest = msg;
    while let Some(i) = find(rest, b"\"type\":\"watch\"") {
        n += 1;
        rest = &rest[i + 14..];
    }
    n
}

pub(crate) fn background(a: &Args) {
    let host = a.s("host", "127.0.0.1");
    let port: u16 = a.get("port", 0);
    let token = a.s("token", "bench-coord");
    let list_ports: u64 = a.get("list-ports", 1_000_000);
    let watch_nodes: usize = a.get("watch-nodes", 100);
    let watches: usize = a.get("watches", 100);
    let list_rate: f64 = a.get("list-rate", 50.0);
    let list_limit: usize = a.get("list-limit", 1000);
    let trickle_rate: f64 = a.get("trickle-rate", 1.0);
    let stop = a.s("stop", "");
    let ready = a.s("ready", "");
    if stop.is_empty() {
        die("background needs --stop FILE");
    }

    // The table: list_ports ports of node l0.
    let mut owner = Ws::open(&host, port, "l0", &token);
    let mut req = Vec::with_capacity(10_000 * 16 + 64);
    let mut n = 0u64;
    let mut id = 0u64;
    while n < list_ports {
        id += 1;
        req.clear();
        req.extend_from_slice(b"{\"op\":\"regport\",\"id\":");
        req.extend_from_slice(id.to_string().as_bytes());
        req.extend_from_slice(b",\"ports\":[");
        let upto = (n + 10_000).min(list_ports);
        for k in n..upto {
            if k > n {
                req.push(b',');
            }
            req.extend_from_slice(b"\"l:");
            put_dec(&mut req, k, 8);
            req.push(b'"');
        }
        req.extend_from_slice(b"]}");
        let reply = owner.call(&req);
        if num_after(&reply, b"\"registered\":") != Some(upto - n) {
            die(&format!(
                "preload: {}",
                String::from_utf8_lossy(&reply[..reply.len().min(200)])
            ));
        }
        n = upto;
    }

    // The watchers: nodes w0.., or (--node-less) watchers that are not nodes, whose first
    // watch is in the query of their WebSocket.
    let node_less = a.get("node-less", 0u8) == 1;
    let mut watchers: Vec<Watcher> = (0..watch_nodes)
        .map(|i| Watcher {
            ws: if node_less {
                let path = "/v1/ws/?ports=w%3A&prefix=true&watch=1";
                Ws::open_path(&host, port, path, &format!("watcher{i}"), &token)
            } else {
                Ws::open(&host, port, &format!("w{i}"), &token)
            },
            pushes: 0,
        })
        .collect();
    let first = usize::from(node_less);
    for w in &mut watchers {
        let mut replies = first;
        for k in first..watches {
            let body = format!(
                "{{\"op\":\"watch\",\"id\":{},\"ports\":\"w:\",\"prefix\":true}}",
                k + 1
            );
            w.ws.send_text(body.as_bytes());
        }
        while replies < watches {
            w.ws.c.flush();
            w.ws.c.fill();
            while w.ws.next().is_some() {
                if w.ws.msg.first() == Some(&b'{') {
                    check_reply(&w.ws.msg);
                    replies += 1;
                }
            }
        }
    }
    let mut trickler = (trickle_rate > 0.0).then(|| Ws::open(&host, port, "t0", &token));
    let mut lister = (list_rate > 0.0).then(|| {
        let c = Conn::connect(&host, port);
        c.nonblocking();
        c
    });
    if !ready.is_empty() {
        std::fs::write(&ready, "ready\n").unwrap_or_else(|e| fail("write --ready", e));
    }

    let t0 = Instant::now();
    let (mut pages, mut entries, mut passes, mut events) = (0u64, 0u64, 0u64, 0u64);
    let mut after: Option<Vec<u8>> = None;
    let mut page_pending = false;
    let mut next_page = t0;
    let mut next_event = t0;
    let mut next_stop_check = t0;
    let mut trickle_id = 0u64;
    loop {
        let now = Instant::now();
        if now >= next_stop_check {
            next_stop_check = now + Duration::from_millis(100);
            if std::path::Path::new(&stop).exists() {
                break;
            }
        }
        if let Some(t) = trickler.as_mut() {
            if now >= next_event {
                next_event += Duration::from_secs_f64(1.0 / trickle_rate);
                trickle_id += 1;
                let op = if trickle_id % 2 == 1 {
                    "regport"
                } else {
                    "unregport"
                };
                let body =
                    format!("{{\"op\":\"{op}\",\"id\":{trickle_id},\"ports\":[\"w:trickle\"]}}");
                t.send_text(body.as_bytes());
                events += 1;
            }
            t.c.flush();
            t.c.fill();
            while t.next().is_some() {
                if t.msg.first() == Some(&b'{') {
                    check_reply(&t.msg);
                }
            }
        }
        if let Some(l) = lister.as_mut() {
            if !page_pending && now >= next_page {
                next_page += Duration::from_secs_f64(1.0 / list_rate);
                let cursor = after
                    .as_deref()
                    .map(|c| format!("&after={}", String::from_utf8_lossy(c).replace(':', "%3A")))
                    .unwrap_or_default();
                let head = format!(
                    "GET /v1/ports?prefix=l%3A&limit={list_limit}{cursor} HTTP/1.1\r\nHost: {host}\r\n\
                     Authorization: Bearer {token}\r\n\r\n"
                );
                l.wbuf.extend_from_slice(head.as_bytes());
                page_pending = true;
            }
            l.flush();
            l.fill();
            if let Some((status, b, end)) = http_next(l) {
                let body = &l.data()[b..end];
                if status != 200 {
                    die(&format!(
                        "listing: HTTP {status}: {}",
                        String::from_utf8_lossy(body)
                    ));
                }
                let mut k = 0;
                let mut rest = body;
                while let Some(i) = find(rest, b"\"port\":") {
                    k += 1;
                    rest = &rest[i + 7..];
                }
                entries += k;
                pages += 1;
                // `"next":"l:00001000"}` or `"next":null}` at the end.
                after = find(body, b"\"next\":\"").map(|i| {
                    let s = &body[i + 8..];
                    s[..s.iter().position(|&c| c == b'"').unwrap_or(s.len())].to_vec()
                });
                if after.is_none() {
                    passes += 1;
                }
                l.consume(end);
                page_pending = false;
            }
        }
        for w in &mut watchers {
            w.ws.c.flush();
            if w.ws.c.fill() > 0 {
                while w.ws.next().is_some() {
                    if w.ws.msg.first() == Some(&b'[') {
                        w.pushes += count_watch_pushes(&w.ws.msg);
                    }
                }
            }
        }
        // The background must not take the load generator's core: a light loop.
        std::thread::sleep(Duration::from_millis(1));
    }
    // Let the last events arrive: until every watch has every event, for at most 5 s (a
    // server that got a fraction of its core through the run may still be fanning out the
    // last event when the run stops).
    let settle = Instant::now() + Duration::from_secs(5);
    let per_watcher = events * watches as u64;
    while Instant::now() < settle && watchers.iter().any(|w| w.pushes < per_watcher) {
        for w in &mut watchers {
            w.ws.c.fill();
            while w.ws.next().is_some() {
                if w.ws.msg.first() == Some(&b'[') {
                    w.pushes += count_watch_pushes(&w.ws.msg);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let pushes: u64 = watchers.iter().map(|w| w.pushes).sum();
    // Every event to every watch: `per_watcher` pushes on each watcher node's connection.
    let expected = per_watcher * watchers.len() as u64;
    let short = watchers.iter().filter(|w| w.pushes < per_watcher).count();
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "seconds={secs:.1} list_ports={list_ports} pages={pages} entries={entries} \
         entries_per_s={:.0} passes={passes} watches={} events={events} watch_pushes={pushes} \
         expected_pushes={expected}",
        entries as f64 / secs,
        watch_nodes * watches,
    );
    if short > 0 {
        die(&format!(
            "{short} watcher(s) got fewer than {per_watcher} watch pushes: the watches were not live"
        ));
    }
}
