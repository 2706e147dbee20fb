//! CPU cost of the election core: three members in one thread, frames handed over at once,
//! simulated time in 1 ms steps (default clocks: heartbeat and lease renewal every 50 ms).
//! Prints the cost per `tick` call and per frame received (decode, validate, raft-rs step,
//! Ready, encode of the answers).
//!
//! cargo run --release -p nukleus-raft --example election_cost

use std::time::{Duration, Instant};

use nukleus_raft::{Election, ElectionConfig, MemoryState};

fn main() {
    let base = Instant::now();
    let members = [1u64, 2, 3];
    let mut elections: Vec<Election> = members
        .iter()
        .map(|&id| {
            let config = ElectionConfig {
                seed: Some(id),
                ..ElectionConfig::new(id, members.to_vec())
            };
            Election::open(config, Box::new(MemoryState::new()), base).expect("open")
        })
        .collect();
    let simulated_ms = 60_000u64;
    let (mut ticks, mut frames) = (0u64, 0u64);
    let (mut tick_time, mut receive_time) = (Duration::ZERO, Duration::ZERO);
    for ms in 0..simulated_ms {
        let now = base + Duration::from_millis(ms);
        let mut wire = Vec::new();
        for e in elections.iter_mut() {
            let started = Instant::now();
            e.tick(now).expect("tick");
            tick_time += started.elapsed();
            ticks += 1;
            let from = e.id();
            wire.extend(e.take_outgoing().into_iter().map(|o| (from, o)));
        }
        while let Some((from, out)) = wire.pop() {
            let e = &mut elections[(out.to - 1) as usize];
            let started = Instant::now();
            e.receive(now, from, &out.frame).expect("receive");
            receive_time += started.elapsed();
            frames += 1;
            let me = e.id();
            wire.extend(e.take_outgoing().into_iter().map(|o| (me, o)));
        }
    }
    let end = base + Duration::from_millis(simulated_ms);
    let masters = elections.iter().filter(|e| e.lease(end).is_some()).count();
    assert_eq!(masters, 1, "one master at the end");
    println!(
        "{} s simulated, 3 members: {ticks} ticks at {:.2} us each, {frames} frames ({:.1}/s per member) at {:.2} us each; {:.1} us of CPU per member per second",
        simulated_ms / 1000,
        tick_time.as_secs_f64() * 1e6 / ticks as f64,
        frames as f64 / 3.0 / (simulated_ms as f64 / 1000.0),
        receive_time.as_secs_f64() * 1e6 / frames as f64,
        (tick_time + receive_time).as_secs_f64() * 1e6 / 3.0 / (simulated_ms as f64 / 1000.0),
    );
}
