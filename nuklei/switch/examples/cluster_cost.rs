//! CPU cost of fission: the same RegPort and SendMsg work done by one [`Switch`] and by 1, 2
//! and 4 cluster [`Instance`]s whose mesh records are passed in-process (encoded, decoded and
//! handled exactly as over rings, without the rings). One thread does the work of every
//! instance, so the figures are total CPU per operation summed over instances: the price of
//! splitting the switch, to set against the cores a split brings.
//!
//! `cargo run --release -p nukleus-switch --example cluster_cost -- [ports] [messages] [only]`
//!
//! `only` (`single`, or an instance count) runs just that configuration. Each measured phase
//! starts and ends with a call of `phase_mark`, so `valgrind --tool=callgrind
//! --dump-before='*phase_mark*'` writes one profile per phase: the 2nd is RegPort's, the 4th
//! SendMsg's (BENCHMARKS.md, issue 18).

use std::time::Instant;

use nukleus_switch::batch::{PortNames, SendBatch};
use nukleus_switch::cluster::{home_of, Instance, InstanceConfig};
use nukleus_switch::mesh::{MeshReader, Msg};
use nukleus_switch::switch::{Config, Output};
use nukleus_switch::Switch;

mod common;

use common::phase_mark;
use common::{limits, port, BATCH};

/// Passes every outbox to its peer until the mesh is quiet.
fn pump(instances: &mut [Instance], out: &mut Vec<Output>, reader: &mut MeshReader) {
    loop {
        let mut moved = false;
        for from in 0..instances.len() {
            for to in 0..instances.len() {
                if instances[from].outbox(to).is_empty() {
                    continue;
                }
                let mut bytes = std::mem::take(instances[from].outbox(to));
                moved = true;
                let target = &mut instances[to];
                reader.feed(&bytes, |r| {
                    target.on_mesh(from, Msg::decode(r).expect("valid record"), out)
                });
                // Hand the buffer back: the nukleus drains its outboxes in place and keeps their
                // capacity (mesh_io), so taking it away would measure reallocations it never does.
                bytes.clear();
                let outbox = instances[from].outbox(to);
                if outbox.is_empty() {
                    *outbox = bytes;
                }
            }
        }
        if !moved {
            return;
        }
    }
}

fn single(ports: usize, messages: usize) -> (f64, f64) {
    let mut s = Switch::new(Config {
        limits: limits(),
        ..Config::default()
    });
    let mut out = Vec::new();
    s.wait_msg("owner", "a:1", 1, 0, &mut out).unwrap();
    let names: Vec<String> = (0..ports).map(port).collect();
    phase_mark();
    let start = Instant::now();
    for chunk in names.chunks(BATCH) {
        s.reg_port("owner", chunk, false, &mut out).unwrap();
    }
    let reg = start.elapsed().as_nanos() as f64 / ports as f64;
    phase_mark();
    let idx = s.node_index("owner").unwrap();
    let body = "x".repeat(64);
    let batch: Vec<(Vec<String>, String)> = (0..BATCH)
        .map(|i| (vec![names[i % names.len()].clone()], body.clone()))
        .collect();
    let mut buf = Vec::new();
    phase_mark();
    let start = Instant::now();
    for _ in 0..messages / BATCH {
        s.send_msg(
            batch.iter().map(|(p, b)| (p.as_slice(), b.as_str())),
            &mut out,
        )
        .unwrap();
        buf.clear();
        while s.drain(idx, 1 << 20, &mut buf).remaining > 0 {}
        out.clear();
    }
    let send = start.elapsed().as_nanos() as f64 / (messages / BATCH * BATCH) as f64;
    phase_mark();
    (reg, send)
}

fn cluster(n: usize, ports: usize, messages: usize) -> (f64, f64) {
    let mut instances: Vec<Instance> = (0..n)
        .map(|me| {
            Instance::new(InstanceConfig {
                me,
                instances: n,
                lease_ms: 10_000,
                limits: limits(),
                incarnation: 0,
            })
        })
        .collect();
    let mut out = Vec::new();
    let mut reader = MeshReader::default();
    let owner = "owner";
    let home = home_of(owner, n);
    // The sender is a node at another instance (if there is one), as a client on another core.
    let front = (home + 1) % n;
    instances[home]
        .wait_msg(owner, "a:1", 1, 0, &mut out)
        .unwrap();
    let names: Vec<String> = (0..ports).map(port).collect();
    phase_mark();
    let start = Instant::now();
    for (k, chunk) in names.chunks(BATCH).enumerate() {
        let ports: PortNames = chunk.iter().collect();
        instances[home].reg_port(k as u64, owner, ports, false, None, &mut out);
        pump(&mut instances, &mut out, &mut reader);
        let done: Vec<_> = instances[home].take_done().collect();
        assert!(done.iter().all(|(_, r)| r.is_ok()));
    }
    let reg = start.elapsed().as_nanos() as f64 / ports as f64;
    phase_mark();
    let idx = instances[home].nodes().lookup(owner).unwrap();
    let body = "x".repeat(64);
    let batch: Vec<(Vec<String>, String)> = (0..BATCH)
        .map(|i| (vec![names[i % names.len()].clone()], body.clone()))
        .collect();
    let mut buf = Vec::new();
    // The owned batches a request parser would produce, built before the clock starts.
    let mut batches: Vec<SendBatch> = (0..messages / BATCH)
        .map(|_| batch.iter().map(|(t, b)| (t.clone(), b.as_str())).collect())
        .collect();
    phase_mark();
    let start = Instant::now();
    for (k, batch) in batches.drain(..).enumerate() {
        instances[front].send_msg(k as u64, batch, false, &mut out);
        pump(&mut instances, &mut out, &mut reader);
        let _ = instances[front].take_done().count();
        buf.clear();
        while instances[home].drain(idx, 1 << 20, &mut buf).remaining > 0 {}
        out.clear();
    }
    let send = start.elapsed().as_nanos() as f64 / (messages / BATCH * BATCH) as f64;
    phase_mark();
    (reg, send)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let ports: usize = args.next().map_or(1_000_000, |a| a.parse().expect("ports"));
    let messages: usize = args
        .next()
        .map_or(1_000_000, |a| a.parse().expect("messages"));
    let only = args.next();
    println!("{ports} ports registered in batches of {BATCH}; {messages} SendMsg of 64-byte bodies in batches of {BATCH}, drained");
    println!("total CPU per operation, all instances on one thread:");
    match only.as_deref() {
        Some("single") | None => {
            let (reg, send) = single(ports, messages);
            println!(
                "  Switch (one instance):   RegPort {reg:6.1} ns/port   SendMsg {send:6.1} ns/msg"
            );
            if only.is_some() {
                return;
            }
            for n in [1, 2, 4] {
                let (r, s) = cluster(n, ports, messages);
                println!(
                    "  cluster, {n} instance(s): RegPort {r:6.1} ns/port ({:.2}x)   SendMsg {s:6.1} ns/msg ({:.2}x)",
                    r / reg,
                    s / send
                );
            }
        }
        Some(n) => {
            let n = n.parse().expect("only: `single` or an instance count");
            let (r, s) = cluster(n, ports, messages);
            println!(
                "  cluster, {n} instance(s): RegPort {r:6.1} ns/port   SendMsg {s:6.1} ns/msg"
            );
        }
    }
}
