//! The work of fission, counted the way the switch nukleus does it: the same WebSocket
//! RegPort and SendMsg requests (JSON text, parsed by the engine) handed to one
//! [`SingleEngine`] or to N [`ClusterEngine`]s whose mesh records go to their peers over
//! rings, one per ordered pair, written and read by the functions the switch nukleus polls
//! them with (`nukleus/mesh_io.rs`: DATA frames, publishing, reassembly, decoding). One thread
//! does the work of every instance, so a phase's instructions are the total over the
//! instances: the CPU price of splitting the switch.
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
use nukleus_switch::mesh::MeshReader;
use nukleus_switch::nukleus::{flush_mesh_to, lend_mesh_frame, read_mesh_frame};
use nukleus_switch::switch::Config;
use streams::copy::in_pieces;
use streams::{ring, RingReader, RingWriter, SharedMapping};

mod common;

use common::phase_mark;
use common::{limits, port, BATCH};

const OWNER: &str = "owner";

/// The mesh as the switch nuklei have it: a ring per ordered pair of instances (the
/// topology's default capacity), and each instance's reassembly of each peer's records.
/// An instance's "poll" lends it a frame of each of its output rings, reads its mesh input,
/// lets it work, then gives the frames back, writes any overflow and publishes the rings,
/// through the nukleus's own functions (`nukleus::{lend_mesh_frame, flush_mesh_to,
/// read_mesh_frame}`).
struct Mesh {
    /// `[from][to]`.
    tx: Vec<Vec<Option<RingWriter>>>,
    /// `[to][from]`.
    rx: Vec<Vec<Option<RingReader>>>,
    /// `[to][from]`.
    readers: Vec<Vec<MeshReader>>,
}

/// Bytes per mesh ring: reaktor's default stream capacity.
const RING_BYTES: usize = 16 << 20;

impl Mesh {
    fn new(n: usize) -> Mesh {
        let mut tx: Vec<Vec<Option<RingWriter>>> =
            (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
        let mut rx: Vec<Vec<Option<RingReader>>> =
            (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
        for from in 0..n {
            for to in (0..n).filter(|&to| to != from) {
                let mapping = SharedMapping::anonymous(RING_BYTES, "mesh").expect("a mesh ring");
                let (w, r) = ring(mapping);
                tx[from][to] = Some(w);
                rx[to][from] = Some(r);
            }
        }
        let readers = (0..n)
            .map(|_| (0..n).map(|_| MeshReader::default()).collect())
            .collect();
        Mesh { tx, rx, readers }
    }

    /// The start of instance `i`'s poll: a frame of each ring to its peers lent.
    fn begin(&mut self, engines: &mut [Box<dyn SwitchEngine>], i: usize) {
        for (peer, tx) in self.tx[i].iter_mut().enumerate() {
            if let Some(tx) = tx {
                lend_mesh_frame(engines[i].as_mut(), peer, tx, 0);
            }
        }
    }

    /// The end of instance `i`'s poll: the frames given back, the overflow written, the rings
    /// published.
    fn end(&mut self, engines: &mut [Box<dyn SwitchEngine>], i: usize) {
        for (peer, tx) in self.tx[i].iter_mut().enumerate() {
            if let Some(tx) = tx {
                flush_mesh_to(engines[i].as_mut(), peer, tx, 0);
                tx.publish();
            }
        }
    }

    /// Polls every instance, reading its mesh input, until the mesh is quiet.
    fn pump(&mut self, engines: &mut [Box<dyn SwitchEngine>]) {
        loop {
            let mut moved = false;
            for to in 0..engines.len() {
                // As the nukleus: frames lent only to a poll with input.
                let input = self.rx[to]
                    .iter()
                    .flatten()
                    .any(|rx| rx.pending_bytes() > 0);
                if input {
                    self.begin(engines, to);
                }
                for from in 0..engines.len() {
                    let Some(rx) = &mut self.rx[to][from] else {
                        continue;
                    };
                    let reader = &mut self.readers[to][from];
                    let engine = engines[to].as_mut();
                    let read = rx.read(1024, |type_id, bytes| {
                        read_mesh_frame(engine, reader, from, type_id, bytes)
                    });
                    moved |= read > 0;
                }
                self.end(engines, to);
            }
            if !moved {
                return;
            }
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
    let mut mesh = Mesh::new(n);
    let home = home_of(OWNER, n);
    // The sender is a node at another instance (if there is one), as a client on another core.
    let front = (home + 1) % n;
    let sender = node_at("sender", front, n);
    mesh.begin(&mut engines, home);
    let session = engines[home]
        .handle_wait_msg(OWNER, "a:1", 1, 0)
        .expect("owner online");
    mesh.end(&mut engines, home);
    mesh.pump(&mut engines);
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
        mesh.begin(&mut engines, home);
        engines[home].handle_ws(token, OWNER, text, 0, &AnyNode);
        mesh.end(&mut engines, home);
        mesh.pump(&mut engines);
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
        mesh.begin(&mut engines, front);
        engines[front].handle_ws(token, &sender, text, 0, &AnyNode);
        mesh.end(&mut engines, front);
        mesh.pump(&mut engines);
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
