//! Cluster engines wired through real rings by the nukleus's own mesh functions
//! (`nukleus::{lend_mesh_frame, flush_mesh_to, read_mesh_frame}`: the records written into a
//! DATA frame lent for the poll, what does not fit into the outbox's overflow, sent after it):
//! whatever the rings' size and however slowly the peers read (rings full, frames filled to
//! the end, records larger than any frame), every reply and push is the one the engines give
//! when their outboxes are handed over whole, in the same order, nothing lost or repeated.

mod common;

use nukleus_switch::auth::AnyNode;
use nukleus_switch::cluster::home_of;
use nukleus_switch::engine::cluster::ClusterEngine;
use nukleus_switch::engine::{Completion, SwitchEngine};
use nukleus_switch::limits::Limits;
use nukleus_switch::mesh::{MeshReader, Msg};
use nukleus_switch::nukleus::{flush_mesh_to, lend_mesh_frame, read_mesh_frame};
use streams::{ring, RingReader, RingWriter, SharedMapping};

const N: usize = 3;

/// How the records travel between the engines.
#[derive(Clone, Copy, Debug)]
enum Wire {
    /// Each outbox handed over whole and decoded (the reference).
    Whole,
    /// Rings of `capacity` bytes, each read at most `per_read` records per poll.
    Rings { capacity: usize, per_read: usize },
}

struct Mesh {
    wire: Wire,
    /// `[from][to]`.
    tx: Vec<Vec<Option<RingWriter>>>,
    /// `[to][from]`.
    rx: Vec<Vec<Option<RingReader>>>,
    /// `[to][from]`.
    readers: Vec<Vec<MeshReader>>,
}

impl Mesh {
    fn new(wire: Wire) -> Mesh {
        let mut tx: Vec<Vec<Option<RingWriter>>> =
            (0..N).map(|_| (0..N).map(|_| None).collect()).collect();
        let mut rx: Vec<Vec<Option<RingReader>>> =
            (0..N).map(|_| (0..N).map(|_| None).collect()).collect();
        if let Wire::Rings { capacity, .. } = wire {
            for from in 0..N {
                for to in (0..N).filter(|&to| to != from) {
                    let (w, r) = ring(SharedMapping::anonymous(capacity, "mesh").unwrap());
                    tx[from][to] = Some(w);
                    rx[to][from] = Some(r);
                }
            }
        }
        let readers = (0..N)
            .map(|_| (0..N).map(|_| MeshReader::default()).collect())
            .collect();
        Mesh {
            wire,
            tx,
            rx,
            readers,
        }
    }

    /// Runs `work` on instance `i` as one poll of its nukleus: frames lent before, given back,
    /// the overflow written and the rings published after.
    /// As the nukleus, frames are lent only to a poll with `input` (a client's request, or
    /// records in a mesh ring).
    fn poll<T>(
        &mut self,
        e: &mut [ClusterEngine],
        i: usize,
        input: bool,
        work: impl FnOnce(&mut ClusterEngine) -> T,
    ) -> T {
        for (peer, tx) in self.tx[i].iter_mut().enumerate() {
            if let Some(tx) = tx.as_mut().filter(|_| input) {
                lend_mesh_frame(&mut e[i], peer, tx, 0);
            }
        }
        let out = work(&mut e[i]);
        for (peer, tx) in self.tx[i].iter_mut().enumerate() {
            if let Some(tx) = tx {
                flush_mesh_to(&mut e[i], peer, tx, 0);
                tx.publish();
            }
        }
        out
    }

    /// Moves records until every ring is read and every outbox empty.
    fn pump(&mut self, e: &mut [ClusterEngine]) {
        while self.round(e) {}
    }

    /// One poll of every instance (one hand-over of every outbox); whether anything moved or
    /// waits.
    fn round(&mut self, e: &mut [ClusterEngine]) -> bool {
        let mut moved = false;
        match self.wire {
            Wire::Whole => {
                for from in 0..N {
                    for to in 0..N {
                        let bytes = std::mem::take(e[from].poll_transmit(to).unwrap());
                        moved |= !bytes.is_empty();
                        self.readers[to][from].feed(&bytes, |r| {
                            e[to].handle_mesh(from, Msg::decode(r).expect("valid record"))
                        });
                    }
                }
            }
            Wire::Rings { per_read, .. } => {
                for to in 0..N {
                    let mut rx = std::mem::take(&mut self.rx[to]);
                    let mut readers = std::mem::take(&mut self.readers[to]);
                    let input = rx.iter().flatten().any(|rx| rx.pending_bytes() > 0);
                    self.poll(e, to, input, |engine| {
                        for (from, rx) in rx.iter_mut().enumerate() {
                            if let Some(rx) = rx {
                                let reader = &mut readers[from];
                                moved |= rx.read(per_read, |t, b| {
                                    read_mesh_frame(engine, reader, from, t, b)
                                }) > 0;
                            }
                        }
                    });
                    self.rx[to] = rx;
                    self.readers[to] = readers;
                }
                moved |= e.iter().any(|e| e.transmit_bytes() > 0);
            }
        }
        moved
    }
}

fn named(prefix: &str, pick: impl Fn(&str) -> bool) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|s| pick(s))
        .expect("some name fits")
}

/// A RegPort of many ports and SendMsg batches from another instance to them, over `wire`:
/// every WebSocket reply and the owner's pushes, in order, and how often a ring was full.
fn run(wire: Wire) -> (Vec<String>, Vec<u8>, u64) {
    let mut e = common::cluster_engines(N, 10_000, &Limits::default());
    let mut mesh = Mesh::new(wire);
    let owner = named("owner", |s| home_of(s, N) == 0);
    let sender = named("sender", |s| home_of(s, N) == 1);
    let session = mesh
        .poll(&mut e, 0, true, |e| e.handle_wait_msg(&owner, "a:1", 1, 0))
        .expect("online");
    let ports: Vec<String> = (0..400).map(|i| format!("port-{i:05}")).collect();
    let list: Vec<String> = ports.iter().map(|p| format!("\"{p}\"")).collect();
    let regport = format!(r#"{{"op":"regport","id":1,"ports":[{}]}}"#, list.join(","));
    let mut replies = Vec::new();
    let mut done = |e: &mut ClusterEngine| match e.poll_done() {
        Some((_, Completion::Ws(text))) => replies.push(text),
        other => panic!("no WebSocket reply: {other:?}"),
    };
    mesh.poll(&mut e, 0, true, |e| {
        e.handle_ws(1, &owner, &regport, 0, &AnyNode)
    });
    mesh.pump(&mut e);
    done(&mut e[0]);
    // The requests follow one another with one poll of every instance between them (not
    // until the mesh is quiet), so records are written while earlier ones wait for room.
    for k in 0..6 {
        let messages: Vec<String> = (0..150)
            .map(|i| {
                let port = &ports[(k * 61 + i * 7) % ports.len()];
                format!(
                    r#"{{"port":"{port}","body":"m{k}-{i}-{}"}}"#,
                    "x".repeat(i % 40)
                )
            })
            .collect();
        let text = format!(
            r#"{{"op":"sendmsg","id":{},"messages":[{}]}}"#,
            k + 2,
            messages.join(",")
        );
        mesh.poll(&mut e, 1, true, |e| {
            e.handle_ws(k as u64 + 2, &sender, &text, 0, &AnyNode)
        });
        mesh.round(&mut e);
    }
    mesh.pump(&mut e);
    for _ in 0..6 {
        done(&mut e[1]);
    }
    let mut pushes = Vec::new();
    e[0].drain(session.node, 1 << 20, &mut pushes);
    // Frames refused by a full ring (their bytes waited in the overflow).
    let full = mesh
        .rx
        .iter()
        .flatten()
        .flatten()
        .map(|rx| rx.watch().stats().full_count)
        .sum();
    (replies, pushes, full)
}

#[test]
fn records_over_rings_of_any_size_read_at_any_pace_arrive_whole_and_in_order() {
    let (replies, pushes, _) = run(Wire::Whole);
    assert!(replies[0].contains("\"registered\":400"), "{}", replies[0]);
    assert!(replies[1..].iter().all(|r| r.contains("\"delivered\":150")));
    for capacity in [4 << 10, 16 << 10, 1 << 20] {
        for per_read in [1, 3, 1024] {
            let wire = Wire::Rings { capacity, per_read };
            let (r, p, full) = run(wire);
            assert_eq!(r, replies, "{wire:?}");
            assert!(p == pushes, "{wire:?}: the pushes differ");
            if capacity == 4 << 10 && per_read == 1 {
                assert!(full > 0, "the small rings were full at times");
            }
        }
    }
}
