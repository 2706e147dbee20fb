//! Many random schedules: kills, restarts, pauses, partitions and one-way link cuts over a
//! network that loses, duplicates, delays and reorders frames, with clocks drifting up to the
//! assumed bound. Safety is checked at every step (see `sim`); after the faults stop, a master
//! must appear. `RAFT_SIM_SEEDS=N` runs N schedules instead of the default.

mod sim;

use nukleus_raft::ElectionConfig;
use sim::{Net, Sim, SplitMix, MS};

fn seeds(default: u64) -> u64 {
    std::env::var("RAFT_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

struct Outcome {
    masters: usize,
    frames: u64,
}

fn random_schedule(seed: u64) -> Outcome {
    let mut rng = SplitMix(seed.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let members = if rng.below(2) == 0 { 3 } else { 5 };
    let net = Net {
        loss: rng.below(250) as u32,
        duplicate: rng.below(50) as u32,
        min_delay: 50_000,
        max_delay: rng.range(1, 40) * MS,
    };
    let mut sim = Sim::new(members, seed, net, 10_000);
    let ids = sim.ids();
    let mut paused: Vec<(u64, u64)> = Vec::new();
    let faults_until = 8_000 * MS;
    while sim.now < faults_until {
        let next = sim.now + rng.range(20, 700) * MS;
        // Resume members whose pause is over on the way.
        loop {
            let due = paused
                .iter()
                .map(|&(_, at)| at)
                .filter(|&at| at <= next)
                .min();
            let Some(at) = due else { break };
            sim.run_until(at);
            let (ready, waiting): (Vec<_>, Vec<_>) = paused.iter().partition(|&&(_, a)| a <= at);
            paused = waiting;
            for (id, _) in ready {
                sim.resume(id);
            }
        }
        sim.run_until(next);
        let pick = ids[rng.below(ids.len() as u64) as usize];
        let is_paused = paused.iter().any(|&(id, _)| id == pick);
        match rng.below(8) {
            0 if sim.is_alive(pick) && !is_paused => sim.kill(pick),
            1 if !sim.is_alive(pick) => sim.restart(pick),
            2 | 3 if sim.is_alive(pick) && !is_paused => {
                sim.pause(pick);
                paused.push((pick, sim.now + rng.range(50, 2_500) * MS));
            }
            4 => {
                let (a, b): (Vec<u64>, Vec<u64>) = ids.iter().partition(|_| rng.below(2) == 0);
                sim.partition(&[&a, &b]);
            }
            5 => sim.heal(),
            6 => {
                let to = ids[rng.below(ids.len() as u64) as usize];
                if to != pick {
                    sim.cut_link(pick, to);
                }
            }
            _ => {}
        }
    }
    // Faults end: everyone back, links healed, a clean network.
    sim.heal();
    for (id, _) in std::mem::take(&mut paused) {
        sim.resume(id);
    }
    for &id in &ids {
        if !sim.is_alive(id) {
            sim.restart(id);
        }
    }
    sim.net = Net::reliable();
    let limit = sim.now + 5_000 * MS;
    sim.run_while(limit, |sim| sim.master().is_none());
    assert!(
        sim.master().is_some(),
        "seed {seed}: no master 5 s after the faults ended"
    );
    sim.assert_safe();
    Outcome {
        masters: sim.epochs().len(),
        frames: sim.frames_sent,
    }
}

#[test]
fn no_two_members_ever_hold_overlapping_leases_under_random_faults() {
    let count = seeds(40);
    let mut masters = 0;
    let mut frames = 0;
    for seed in 0..count {
        let outcome = random_schedule(seed);
        masters += outcome.masters;
        frames += outcome.frames;
    }
    // The schedules must actually move mastership around, or the check proves nothing.
    assert!(
        masters as u64 >= 2 * count,
        "only {masters} masterships in {count} schedules"
    );
    eprintln!("{count} schedules: {masters} masterships, {frames} frames");
}

/// A paused master with a slow clock, followers with fast clocks: `(leader ppm, followers
/// ppm)` applied once the first master is known. Returns whether the checker found overlapping
/// leases.
fn slow_master_fast_followers(seed: u64, assumed_ppm: u32, actual_ppm: i64) -> bool {
    let mut sim = Sim::with_config(3, seed, Net::reliable(), 0, move |id, members| {
        ElectionConfig {
            max_clock_drift_ppm: assumed_ppm,
            ..ElectionConfig::new(id, members)
        }
    });
    let (old, _) = sim.until_master(3_000 * MS).expect("a first master");
    for id in sim.ids() {
        sim.set_drift(id, if id == old { -actual_ppm } else { actual_ppm });
    }
    sim.run_until(sim.now + 400 * MS);
    sim.pause(old);
    sim.run_until(sim.now + 2_000 * MS);
    sim.resume(old);
    sim.run_until(sim.now + 1_000 * MS);
    let overlap = sim.violations.iter().any(|v| v.contains("leases overlap"));
    if assumed_ppm as i64 >= actual_ppm {
        sim.assert_safe();
    }
    overlap
}

/// The checker is not vacuous: clocks 20% off while the configuration assumes perfect clocks
/// (so the lease is the whole vote guard) let a paused master's lease outlive the guard of
/// fast-clocked followers, and the overlap is found. With the drift allowed for, the same
/// schedules are safe.
#[test]
fn the_checker_finds_overlapping_leases_when_clocks_break_the_assumption() {
    let found = (0..10)
        .filter(|&seed| slow_master_fast_followers(seed, 0, 200_000))
        .count();
    assert!(
        found > 0,
        "no overlap found with clocks 20% off and no drift allowance"
    );
    eprintln!("overlaps found in {found} of 10 schedules with clocks outside the assumption");
    for seed in 0..10 {
        assert!(
            !slow_master_fast_followers(seed, 200_000, 200_000),
            "seed {seed}"
        );
    }
}
