//! What the coordination load of issue 15 costs the switch, phase by phase, for instruction
//! counts (callgrind) that do not depend on how a shared machine schedules the server.
//!
//! `cargo run --release -p nukleus-switch --example coord_cost -- WATCHES [ports] [messages]`
//! with `WATCHES` one of `none`, `nodes` (100 watcher nodes x 100 watches on the prefix `w:`)
//! or `node-less` (the same watches on 100 node-less watchers). Each measured phase starts and
//! ends with a call of `phase_mark`, so `valgrind --tool=callgrind --dump-before='*phase_mark*'`
//! writes one profile per phase (`benches/coord_instructions.sh` runs it that way):
//!
//! 1. set-up: the watches, and a 1,000,000-port table under `l:` (as the wall-clock bench
//!    preloads in both variants);
//! 2. RegPort: `ports` fresh 16-byte ports (none under `w:`) in requests of 1,000;
//! 3. (between marks: building the SendMsg batches);
//! 4. SendMsg: `messages` 64-byte messages in requests of 1,000 to a port of a receiving node,
//!    its pushes drained as its connection would;
//! 5. a listing: 100 pages of 1,000 ports of the `l:` table, each from the last one's cursor;
//! 6. the trickle: 10 port events under `w:` (5 registrations, 5 releases), each fanned out
//!    to every watch, every watcher's pushes drained.

mod common;

use common::{phase_mark, BATCH};
use nukleus_switch::listing::PageRequest;
use nukleus_switch::switch::{Config, Switch};
use nukleus_switch::watch::{WatchKind, WatchRequest};

const WATCHERS: usize = 100;
const WATCHES_EACH: usize = 100;
const LISTED: usize = 1_000_000;
const PAGES: usize = 100;
const EVENTS: usize = 10;

fn watch_request() -> WatchRequest {
    WatchRequest {
        id: None,
        kind: WatchKind::Ports,
        key: "w:".into(),
        prefix: true,
        from: None,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let watches = args.get(1).map_or("none", String::as_str);
    let ports: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let messages: usize = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let (watchers, node_less) = match watches {
        "none" => (0, false),
        "nodes" => (WATCHERS, false),
        "node-less" => (WATCHERS, true),
        other => {
            eprintln!("coord_cost: WATCHES is none, nodes or node-less, not {other:?}");
            std::process::exit(2);
        }
    };

    // 1. Set-up.
    let mut sw = Switch::new(Config {
        shards: 1,
        ..Config::default()
    });
    let mut out = Vec::new();
    let mut rx_idx = 0;
    for (node, conn) in [("owner", 1), ("rx", 2), ("lister", 3)] {
        let s = sw
            .wait_msg(node, "10.0.0.1:7000", conn, 0, &mut out)
            .expect("online");
        if node == "rx" {
            rx_idx = s.node;
        }
    }
    let mut watcher_ids = Vec::new();
    for w in 0..watchers {
        let conn = 100 + w as u64;
        let idx = if node_less {
            let s = sw.open_watcher(conn);
            for _ in 0..WATCHES_EACH {
                sw.watcher_watch(s.node, watch_request(), &mut out)
                    .expect("watch");
            }
            s.node
        } else {
            let node = format!("w{w}");
            let s = sw.wait_msg(&node, "", conn, 0, &mut out).expect("online");
            for _ in 0..WATCHES_EACH {
                sw.watch(&node, watch_request(), &mut out).expect("watch");
            }
            s.node
        };
        watcher_ids.push(idx);
    }
    let listed: Vec<String> = (0..LISTED).map(|i| format!("l:{i:014}")).collect();
    for batch in listed.chunks(10_000) {
        sw.reg_port("lister", batch, false, &mut out)
            .expect("preload");
    }
    drop(listed);
    let rx = sw
        .reg_port("rx", &["inbox"], false, &mut out)
        .expect("inbox");
    assert_eq!(rx.registered, 1);
    let names: Vec<String> = (0..ports).map(|i| format!("p:{:014x}", i * 7919)).collect();
    out.clear();
    let mut drained = Vec::with_capacity(1 << 20);

    // 2. RegPort.
    phase_mark();
    for batch in names.chunks(BATCH) {
        let r = sw
            .reg_port("owner", batch, false, &mut out)
            .expect("regport");
        assert_eq!(r.registered, batch.len());
        out.clear();
    }
    phase_mark();

    // 3. The SendMsg batches.
    let body = "x".repeat(64);
    let inbox = ["inbox"];
    let batch: Vec<(&[&str], &str)> = (0..BATCH).map(|_| (&inbox[..], body.as_str())).collect();

    // 4. SendMsg.
    phase_mark();
    for _ in 0..messages / BATCH {
        let r = sw
            .send_msg(batch.iter().map(|&(p, b)| (p, b)), &mut out)
            .expect("sendmsg");
        assert_eq!(r.delivered, BATCH as u64, "every message reaches the inbox");
        drained.clear();
        sw.drain(rx_idx, usize::MAX, &mut drained);
        out.clear();
    }
    phase_mark();

    // 5. The listing.
    let mut after: Option<String> = None;
    for _ in 0..PAGES {
        let page = sw
            .list_ports(&PageRequest {
                prefix: "l:".into(),
                after: after.take(),
                limit: Some(BATCH as u64),
            })
            .expect("listing");
        assert_eq!(page.ports.len(), BATCH);
        after = page.next;
    }
    phase_mark();

    // 6. The trickle.
    for k in 0..EVENTS {
        if k % 2 == 0 {
            sw.reg_port("owner", &["w:trickle"], false, &mut out)
                .expect("trickle");
        } else {
            sw.unreg_port("owner", &["w:trickle"], &mut out)
                .expect("trickle");
        }
        for &idx in &watcher_ids {
            drained.clear();
            sw.drain(idx, usize::MAX, &mut drained);
        }
        out.clear();
    }
    phase_mark();
    println!(
        "watches={watches} ports={ports} messages={} pages={PAGES} events={EVENTS}",
        messages / BATCH * BATCH
    );
}
