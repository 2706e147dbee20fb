//! The work of fission, counted the way the switch nukleus does it: the same WebSocket
//! RegPort and SendMsg requests (JSON text, parsed by the engine) handed to one
//! [`SingleEngine`] or to N [`ClusterEngine`]s whose mesh outboxes are fed to their peers
//! record by record (what `nukleus/mesh_io.rs` does with the rings' DATA frames, without the
//! rings). One thread does the work of every instance, so a phase's instructions are the
//! total over the instances: the CPU price of splitting the switch.
//!
//! `cargo run --release -p nukleus-switch --example fission_cost -- INSTANCES [ports] [messages]`
//! (`INSTANCES` 0: the [`SingleEngine`]). Each measured phase starts and ends with a call of
//! `phase_mark`, so `valgrind --tool=callgrind --dump-before='*phase_mark*'` writes one
//! profile per phase: the 2nd is RegPort's, the 4th SendMsg's. `benches/fission_instructions.sh`
//! runs it that way and prints instructions per operation (issue 18).
//!
//! The load: `ports` fresh 16-byte ports registered by one node in requests of 1,000; then
//! `messages` 64-byte messages in requests of 1,000 to ports of that node, sent by a node homed
//! at another instance (a client on another core), every push drained from the receiver's
//! queue as its connection would (`nukleus/push.rs`: a batch written into the frame, then
//! consumed; not `drain`, whose zero-filled `Vec` the connection does not use), each batch
//! placed where `streams::copy` takes its one `memcpy` in every configuration (see below).

use std::time::Instant;

use nukleus_switch::auth::AnyNode;
use nukleus_switch::cluster::{home_of, InstanceConfig};
use nukleus_switch::engine::cluster::ClusterEngine;
use nukleus_switch::engine::single::SingleEngine;
use nukleus_switch::engine::{Completion, SwitchEngine};
use nukleus_switch::mesh::{MeshReader, Msg};
use nukleus_switch::switch::Config;
use streams::copy::in_pieces;

mod common;

use common::phase_mark;
use common::{limits, port, BATCH};

const OWNER: &str = "owner";

/// Feeds every mesh outbox to its peer until the mesh is quiet, as the nuklei's rings would.
fn pump(engines: &mut [Box<dyn SwitchEngine>], reader: &mut MeshReader, bytes: &mut Vec<u8>) {
    loop {
        let mut moved = false;
        for from in 0..engines.len() {
            for to in 0..engines.len() {
                let Some(outbox) = engines[from].poll_transmit(to) else {
                    continue;
                };
                if outbox.is_empty() {
                    continue;
                }
                // The nukleus copies the outbox into the ring and drains it in place; the
                // peer reads the records from its ring. One copy here, the same count.
                bytes.clear();
                bytes.extend_from_slice(outbox);
                outbox.clear();
                moved = true;
                let target = &mut engines[to];
                reader.feed(bytes, |r| {
                    target.handle_mesh(from, Msg::decode(r).expect("valid record"))
                });
            }
        }
        if !moved {
            return;
        }
    }
}

/// A node id homed at instance `at` of `n`.
fn node_at(prefix: &str, at: usize, n: usize) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|id| home_of(id, n) == at)
        .expect("some id hashes to every instance")
}

fn json_list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = items.map(|p| format!("\"{p}\"")).collect();
    quoted.join(",")
}

/// Runs the load on `instances` engines (0: one [`SingleEngine`]); ns per RegPort and SendMsg.
fn run(instances: usize, ports: usize, messages: usize) -> (f64, f64) {
    let n = instances.max(1);
    let mut engines: Vec<Box<dyn SwitchEngine>> = if instances == 0 {
        vec![Box::new(SingleEngine::new(Config {
            limits: limits(),
            ..Config::default()
        }))]
    } else {
        (0..n)
            .map(|me| {
                Box::new(ClusterEngine::new(InstanceConfig {
                    me,
                    instances: n,
                    lease_ms: 10_000,
                    limits: limits(),
                    incarnation: 0,
                })) as Box<dyn SwitchEngine>
            })
            .collect()
    };
    let mut reader = MeshReader::default();
    let mut bytes = Vec::new();
    let home = home_of(OWNER, n);
    // The sender is a node at another instance (if there is one), as a client on another core.
    let front = (home + 1) % n;
    let sender = node_at("sender", front, n);
    let session = engines[home]
        .handle_wait_msg(OWNER, "a:1", 1, 0)
        .expect("owner online");
    pump(&mut engines, &mut reader, &mut bytes);
    let names: Vec<String> = (0..ports).map(port).collect();
    let regs: Vec<String> = names
        .chunks(BATCH)
        .enumerate()
        .map(|(k, chunk)| {
            let list = json_list(chunk.iter().map(String::as_str));
            format!(r#"{{"op":"regport","id":{k},"ports":[{list}]}}"#)
        })
        .collect();
    let mut token = 0;
    phase_mark();
    let start = Instant::now();
    for text in &regs {
        token += 1;
        engines[home].handle_ws(token, OWNER, text, 0, &AnyNode);
        pump(&mut engines, &mut reader, &mut bytes);
        match engines[home].poll_done() {
            Some((t, Completion::Ws(reply))) if t == token && !reply.contains("error") => {}
            other => panic!("RegPort {token} did not complete: {other:?}"),
        }
    }
    let reg = start.elapsed().as_nanos() as f64 / ports as f64;
    phase_mark();
    let body = "x".repeat(64);
    let sends: Vec<String> = (0..messages / BATCH)
        .map(|k| {
            let list: Vec<String> = (0..BATCH)
                .map(|i| {
                    let p = &names[(k * BATCH + i) % names.len()];
                    format!(r#"{{"port":"{p}","body":"{body}"}}"#)
                })
                .collect();
            format!(
                r#"{{"op":"sendmsg","id":{k},"messages":[{}]}}"#,
                list.join(",")
            )
        })
        .collect();
    // The receiving connection's frame: `nukleus/push.rs` writes a batch of pushes into a
    // claimed ring frame (memory written in place, not cleared per frame), then takes it off
    // the queue. Allocated and touched before the phase, as the ring is.
    // 4 KiB more, to place each batch where `streams::copy` copies it in one `memcpy`, as
    // it does into a ring frame but for 63 destination offsets in 4,096: which way it goes
    // otherwise depends on heap addresses, and callgrind counts the one `memcpy` (`rep movsb`)
    // an instruction per byte, the pieces far less (BENCHMARKS.md: the piece-copy trap).
    let mut frame = vec![0u8; (1 << 20) + 4096];
    let mut delivered = 0;
    phase_mark();
    let start = Instant::now();
    for text in &sends {
        token += 1;
        engines[front].handle_ws(token, &sender, text, 0, &AnyNode);
        pump(&mut engines, &mut reader, &mut bytes);
        match engines[front].poll_done() {
            Some((t, Completion::Ws(_))) if t == token => {}
            other => panic!("SendMsg {token} did not complete: {other:?}"),
        }
        while engines[home].poll_event().is_some() {}
        while let Some(batch) = engines[home].batch(session.node, 1 << 20) {
            let n = batch.frame_len();
            let at = (0..4096)
                .step_by(64)
                .find(|at| !in_pieces(&frame[at + 1..at + n - 1], batch.joined()))
                .expect("a destination offset copied in one memcpy");
            batch.write(&mut frame[at..at + n]);
            let (pushes, bytes) = (batch.pushes, batch.queued_bytes());
            delivered += engines[home].consume(session.node, pushes, bytes).pushes;
        }
    }
    let send = start.elapsed().as_nanos() as f64 / (sends.len() * BATCH) as f64;
    phase_mark();
    assert_eq!(delivered, sends.len() * BATCH, "every message delivered");
    (reg, send)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let instances: usize = args.next().map_or(0, |a| {
        a.parse()
            .expect("INSTANCES: 0 (one SingleEngine) or a count")
    });
    let ports: usize = args.next().map_or(100_000, |a| a.parse().expect("ports"));
    let messages: usize = args
        .next()
        .map_or(100_000, |a| a.parse().expect("messages"));
    let (reg, send) = run(instances, ports, messages);
    let what = if instances == 0 {
        "one SingleEngine".to_string()
    } else {
        format!("{instances} ClusterEngine(s)")
    };
    println!(
        "{what}: RegPort {reg:.1} ns/port, SendMsg {send:.1} ns/msg ({ports} ports, {messages} messages, requests of {BATCH})"
    );
}
