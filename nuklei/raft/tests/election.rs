//! Elections, failover, partitions and stalls in a simulated 3- and 5-member cluster. The
//! checker in `sim` fails any step at which two members' lease promises overlap, two members
//! lead one term, or a member's saved vote in a term changes.

mod sim;

use nukleus_raft::{Event, LeaseEnd, Role};
use sim::{Net, Sim, MS};

/// Default clocks: election timeout 300 ms (randomized up to 600), lease 284 ms.
const ELECTION: u64 = 300 * MS;
const LEASE: u64 = 284 * MS;

fn agreed_leader(sim: &Sim) -> Option<u64> {
    let leaders: Vec<_> = sim
        .ids()
        .into_iter()
        .filter_map(|id| sim.status(id).map(|s| s.leader))
        .collect();
    let first = *leaders.first()?;
    leaders
        .iter()
        .all(|l| *l == first)
        .then_some(first)
        .flatten()
}

fn elect(members: u64, seed: u64) {
    let mut sim = Sim::new(members, seed, Net::reliable(), 0);
    let (master, at) = sim.until_master(3_000 * MS).expect("a master within 3 s");
    // First election: a random timeout in [300, 600) ms, then pre-vote, vote, the leader's
    // entry and the first lease probe (a few round trips of at most 1 ms).
    assert!(at < 2 * ELECTION + 20 * MS, "master after {} ms", at / MS);
    sim.run_until(at + 2_000 * MS);
    assert_eq!(
        sim.master(),
        Some(master),
        "the master changed in a quiet cluster"
    );
    assert_eq!(agreed_leader(&sim), Some(master));
    let status = sim.status(master).unwrap();
    assert_eq!(status.role, Role::Leader);
    assert_eq!(status.epoch, Some(status.term));
    assert_eq!(status.members, sim.ids());
    let remaining = status
        .lease_remaining
        .expect("the master reports its lease");
    assert!(
        remaining.as_nanos() as u64 <= LEASE && remaining.as_nanos() as u64 > LEASE - 60 * MS,
        "{remaining:?}"
    );
    for id in sim.ids().into_iter().filter(|&id| id != master) {
        let follower = sim.status(id).unwrap();
        assert_eq!(
            (follower.role, follower.leader, follower.epoch),
            (Role::Follower, Some(master), status.epoch)
        );
        assert_eq!(follower.lease_remaining, None);
    }
    let became: Vec<_> = sim
        .events
        .iter()
        .filter(|(_, _, e)| matches!(e, Event::BecameMaster { .. }))
        .collect();
    assert_eq!(became.len(), 1, "{became:?}");
    sim.assert_safe();
}

#[test]
fn three_members_elect_one_master_that_keeps_its_lease() {
    for seed in 1..=5 {
        elect(3, seed);
    }
}

#[test]
fn five_members_elect_one_master_that_keeps_its_lease() {
    for seed in 1..=5 {
        elect(5, seed);
    }
}

fn kill_the_master(members: u64, seed: u64) {
    let mut sim = Sim::new(members, seed, Net::reliable(), 10_000);
    let (old, _) = sim.until_master(3_000 * MS).expect("a first master");
    sim.run_until(sim.now + 500 * MS);
    let old_epoch = sim.status(old).unwrap().epoch.unwrap();
    let killed_at = sim.now;
    sim.kill(old);
    let (new, at) = sim
        .until_master_besides(old, 3_000 * MS)
        .expect("a new master after the kill");
    assert_ne!(new, old);
    // Followers wait out a random election timeout (< 600 ms on a clock up to 1% fast) after
    // the last heartbeat; then a few round trips.
    assert!(
        at - killed_at < 2 * ELECTION + 30 * MS,
        "new master {} ms after the kill",
        (at - killed_at) / MS
    );
    let new_epoch = sim.status(new).unwrap().epoch.unwrap();
    assert!(new_epoch > old_epoch);
    let old_end = sim.promises_of(old).iter().map(|p| p.end).max().unwrap();
    let new_start = sim.promises_of(new).iter().map(|p| p.start).min().unwrap();
    assert!(
        old_end <= new_start,
        "old lease ends at {old_end}, new starts at {new_start}"
    );
    // The killed member comes back from its saved state as a follower and does not disturb
    // the master (PreVote: it cannot win a pre-vote against a live leader).
    sim.restart(old);
    sim.run_until(sim.now + 2_000 * MS);
    assert_eq!(sim.master(), Some(new));
    let back = sim.status(old).unwrap();
    assert_eq!(
        (back.role, back.leader, back.epoch),
        (Role::Follower, Some(new), Some(new_epoch))
    );
    sim.assert_safe();
}

#[test]
fn killing_the_master_of_three_elects_another_within_the_election_timeouts() {
    for seed in 10..=14 {
        kill_the_master(3, seed);
    }
}

#[test]
fn killing_the_master_of_five_elects_another_within_the_election_timeouts() {
    for seed in 20..=24 {
        kill_the_master(5, seed);
    }
}

#[test]
fn a_minority_partition_never_holds_a_lease_and_one_leader_remains_after_healing() {
    for seed in 30..=34 {
        let mut sim = Sim::new(5, seed, Net::reliable(), 10_000);
        let (old, _) = sim.until_master(3_000 * MS).expect("a first master");
        sim.run_until(sim.now + 300 * MS);
        let buddy = sim.ids().into_iter().find(|&id| id != old).unwrap();
        let majority: Vec<u64> = sim
            .ids()
            .into_iter()
            .filter(|&id| id != old && id != buddy)
            .collect();
        let cut_at = sim.now;
        sim.partition(&[&[old, buddy], &majority]);
        let (new, _) = sim
            .until_master_besides(old, 3_000 * MS)
            .expect("the majority elects a master");
        assert!(majority.contains(&new));
        sim.run_until(cut_at + 3_000 * MS);
        // The old master's lease ran out within one lease of the cut; nobody in the minority
        // held one after that.
        for id in [old, buddy] {
            for promise in sim.promises_of(id) {
                assert!(
                    promise.end <= cut_at + LEASE + 2 * MS,
                    "member {id} promised until {} ms after the cut",
                    (promise.end - cut_at) / MS
                );
            }
            assert_eq!(sim.status(id).unwrap().lease_remaining, None);
        }
        assert!(sim.events.iter().any(|(_, id, e)| *id == old
            && matches!(
                e,
                Event::LeaseLost {
                    reason: LeaseEnd::Expired,
                    ..
                }
            )));
        sim.heal();
        sim.run_until(sim.now + 3_000 * MS);
        let master = sim.master().expect("a master after healing");
        assert_eq!(
            agreed_leader(&sim),
            Some(master),
            "all five agree on one leader after healing"
        );
        sim.assert_safe();
    }
}

#[test]
fn a_master_in_the_majority_keeps_serving_through_a_partition() {
    let mut sim = Sim::new(5, 40, Net::reliable(), 0);
    let (master, _) = sim.until_master(3_000 * MS).expect("a master");
    let epoch = sim.status(master).unwrap().epoch;
    let others: Vec<u64> = sim.ids().into_iter().filter(|&id| id != master).collect();
    sim.partition(&[&[master, others[0], others[1]], &[others[2], others[3]]]);
    let end = sim.now + 3_000 * MS;
    sim.run_while(end, |sim| sim.master() == Some(master));
    assert_eq!(
        sim.now, end,
        "the master lost its lease during a minority partition"
    );
    assert_eq!(sim.status(master).unwrap().epoch, epoch);
    sim.heal();
    sim.run_until(sim.now + 2_000 * MS);
    assert_eq!(
        sim.master(),
        Some(master),
        "PreVote: the rejoining minority does not depose the master"
    );
    sim.assert_safe();
}

#[test]
fn a_paused_master_stops_serving_before_anyone_else_is_elected() {
    for seed in 50..=59 {
        let mut sim = Sim::new(3, seed, Net::reliable(), 10_000);
        let (old, _) = sim.until_master(3_000 * MS).expect("a first master");
        sim.run_until(sim.now + 400 * MS);
        let paused_at = sim.now;
        sim.pause(old);
        let (new, _) = sim
            .until_master_besides(old, 3_000 * MS)
            .expect("the others elect a master");
        assert_ne!(new, old);
        let old_end = sim.promises_of(old).iter().map(|p| p.end).max().unwrap();
        let new_start = sim.promises_of(new).iter().map(|p| p.start).min().unwrap();
        assert!(old_end <= paused_at + LEASE + 2 * MS);
        assert!(
            old_end <= new_start,
            "seed {seed}: old lease until {old_end}, new from {new_start}"
        );
        // SIGCONT after 3 s: the old master reads its clock first, finds its lease over and
        // steps down before it reads anything from the network.
        sim.run_until(paused_at + 3_000 * MS);
        sim.resume(old);
        assert_eq!(sim.status(old).unwrap().lease_remaining, None);
        assert!(sim.events.iter().any(|(_, id, e)| *id == old
            && matches!(
                e,
                Event::LeaseLost {
                    reason: LeaseEnd::Expired,
                    ..
                }
            )));
        sim.run_until(sim.now + 1_000 * MS);
        assert_eq!(sim.master(), Some(new));
        assert_eq!(sim.status(old).unwrap().leader, Some(new));
        sim.assert_safe();
    }
}

/// A follower that acknowledged the master and restarts at once has forgotten the master, so
/// raft-rs alone would let it vote for a rival within the master's lease. Its restart guard
/// withholds the vote until any lease it acknowledged is over.
#[test]
fn a_follower_restarted_right_after_acknowledging_the_master_does_not_elect_a_rival_early() {
    for seed in 60..=67 {
        let mut sim = Sim::new(3, seed, Net::reliable(), 0);
        let (master, _) = sim.until_master(3_000 * MS).expect("a master");
        let others: Vec<u64> = sim.ids().into_iter().filter(|&id| id != master).collect();
        let (witness, rival) = (others[0], others[1]);
        // The rival stops hearing the master and will campaign soon after the restart.
        sim.cut_link(master, rival);
        sim.cut_link(rival, master);
        sim.run_until(sim.now + 250 * MS);
        // The witness renewed the master's lease a moment ago; it crashes, comes back at
        // once, and hears nothing more from the master.
        sim.cut_link(master, witness);
        sim.kill(witness);
        sim.restart(witness);
        let restarted = sim.now;
        let (new, _) = sim
            .until_master_besides(master, 3_000 * MS)
            .expect("a new master eventually");
        let new_start = sim.promises_of(new).iter().map(|p| p.start).min().unwrap();
        // Without the guard the rival serves some 60 ms after the restart, inside the lease.
        assert!(
            new_start >= restarted + 290 * MS,
            "seed {seed}: member {new} served {} ms after the restart",
            (new_start - restarted) / MS
        );
        sim.assert_safe();
    }
}

/// On the way from a follower's election timeout to the new master's first lease, every save
/// is an fsync that the next message waits for (tens of ms each on a loaded disk). Only the new
/// term and vote (the candidate's, each voter's) and the leader's entry must be durable; the
/// commit index is volatile in Raft, and saving it (on the leader when the entry committed, on
/// each follower when a heartbeat carried the commit) put two more fsyncs on that path.
#[test]
fn an_election_saves_only_terms_votes_and_entries() {
    for seed in 1..=5 {
        let mut sim = Sim::new(3, seed, Net::reliable(), 0);
        let (_, at) = sim.until_master(3_000 * MS).expect("a master within 3 s");
        // Saves counted from the member's start (the initial state is saved before it runs).
        let saves: Vec<u64> = sim
            .ids()
            .into_iter()
            .map(|id| sim.election_mut(id).unwrap().stats().saves)
            .collect();
        let terms = sim.status(sim.master().unwrap()).unwrap().term;
        // Per member: one save per term it voted in (its own candidacy or its vote for
        // another) and the leader's entry; nothing for the commit.
        for (k, &n) in saves.iter().enumerate() {
            assert!(
                n <= terms + 1,
                "seed {seed}: member {} saved {n} times to elect a master in term {terms} (master after {} ms)",
                k + 1,
                at / MS
            );
        }
        sim.run_until(at + 1_000 * MS);
        let quiet: Vec<u64> = sim
            .ids()
            .into_iter()
            .map(|id| sim.election_mut(id).unwrap().stats().saves)
            .collect();
        assert_eq!(
            quiet, saves,
            "seed {seed}: saves while the master only renewed its lease"
        );
    }
}
