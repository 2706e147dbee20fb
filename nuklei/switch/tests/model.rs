//! Property tests: the compact port table behaves like a `HashMap<String, String>` of
//! port → owner node id under random operation sequences, and the switch keeps its
//! bookkeeping consistent.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use nukleus_switch::ports::{Outcome, PortShard, RegisterError, SubscribeOutcome, Subscriber};
use nukleus_switch::switch::{Config, Switch};
use nukleus_switch::{shard_of, Limits};
use proptest::prelude::*;

const NODES: [&str; 4] = ["n0", "n1", "n2", "n3"];

#[derive(Clone, Debug)]
enum Op {
    Register(usize, usize),
    Unregister(usize, usize),
    ReleaseAll(usize),
    Subscribe(usize, usize),
    Compact,
}

/// Names: short, long (to exercise the arena), and overlapping prefixes.
fn name(i: usize) -> String {
    match i % 3 {
        0 => format!("p{i}"),
        1 => format!("user:{i}:{}", "x".repeat(i % 40)),
        _ => format!("p{i}/é"),
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..64usize, 0..4usize).prop_map(|(p, n)| Op::Register(p, n)),
        3 => (0..64usize, 0..4usize).prop_map(|(p, n)| Op::Unregister(p, n)),
        1 => (0..4usize).prop_map(Op::ReleaseAll),
        2 => (0..64usize, 0..4usize).prop_map(|(p, n)| Op::Subscribe(p, n)),
        1 => Just(Op::Compact),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn port_shard_matches_hashmap_model(ops in proptest::collection::vec(op(), 1..300)) {
        let mut table = PortShard::new();
        let mut model: HashMap<String, String> = HashMap::new();
        let mut subs: HashMap<String, BTreeSet<u32>> = HashMap::new();
        for op in ops {
            match op {
                Op::Register(p, n) => {
                    let (p, node) = (name(p), NODES[n]);
                    let got = table.register(&p, n as u32);
                    match model.get(&p) {
                        Some(owner) if owner != node => {
                            let o = NODES.iter().position(|x| x == owner).unwrap() as u32;
                            prop_assert_eq!(got, Err(RegisterError::Owned(nukleus_switch::ports::Owner(o))));
                        }
                        _ => {
                            prop_assert_eq!(got, Ok(()));
                            model.insert(p, node.to_string());
                        }
                    }
                }
                Op::Unregister(p, n) => {
                    let (p, node) = (name(p), NODES[n]);
                    let got = table.unregister(&p, n as u32);
                    match model.get(&p) {
                        None => prop_assert_eq!(got, Outcome::Unknown),
                        Some(owner) if owner != node => {
                            let o = NODES.iter().position(|x| x == owner).unwrap() as u32;
                            prop_assert_eq!(got, Outcome::NotOwner(o));
                        }
                        Some(_) => {
                            model.remove(&p);
                            let expect = subs.remove(&p).unwrap_or_default();
                            let Outcome::Released(got) = got else {
                                return Err(TestCaseError::fail("expected Released"));
                            };
                            let got: BTreeSet<u32> = got.iter().map(|s| s.node).collect();
                            prop_assert_eq!(got, expect);
                        }
                    }
                }
                Op::ReleaseAll(n) => {
                    let node = NODES[n];
                    let mut got: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
                    let count = table.release_all(n as u32, |p, s| {
                        got.insert(p.to_string(), s.iter().map(|s| s.node).collect());
                    });
                    let mut expect = BTreeMap::new();
                    model.retain(|p, owner| {
                        if owner == node {
                            expect.insert(p.clone(), subs.remove(p).unwrap_or_default());
                            false
                        } else {
                            true
                        }
                    });
                    prop_assert_eq!(count as usize, expect.len());
                    prop_assert_eq!(got, expect);
                }
                Op::Subscribe(p, n) => {
                    let (p, node) = (name(p), NODES[n]);
                    let got = table.subscribe(&p, Subscriber { node: n as u32, session: 1 });
                    match model.get(&p) {
                        None => prop_assert_eq!(got, SubscribeOutcome::Unknown),
                        Some(owner) if owner == node => prop_assert_eq!(got, SubscribeOutcome::OwnPort),
                        Some(owner) => {
                            let o = NODES.iter().position(|x| x == owner).unwrap() as u32;
                            prop_assert_eq!(got, SubscribeOutcome::Subscribed(o));
                            subs.entry(p).or_default().insert(n as u32);
                        }
                    }
                }
                Op::Compact => table.compact(),
            }
            // The whole table agrees with the model after every step.
            prop_assert_eq!(table.len(), model.len());
            let mut listed: HashMap<String, String> = HashMap::new();
            for (p, o) in table.iter() {
                listed.insert(p.to_string(), NODES[o as usize].to_string());
            }
            prop_assert_eq!(&listed, &model);
            for (n, node) in NODES.iter().enumerate() {
                let mine: BTreeSet<String> = table.ports_of(n as u32).map(str::to_string).collect();
                let expect: BTreeSet<String> = model
                    .iter()
                    .filter(|(_, o)| o == node)
                    .map(|(p, _)| p.clone())
                    .collect();
                prop_assert_eq!(table.count_of(n as u32) as usize, expect.len());
                prop_assert_eq!(mine, expect);
            }
            for i in 0..64 {
                let p = name(i);
                let owner = table.owner(&p).map(|o| NODES[o as usize].to_string());
                prop_assert_eq!(owner.as_ref(), model.get(&p));
            }
        }
    }

    /// Many shards behave as one table: the switch's QueryPort agrees with a model, and port
    /// counts per node add up, under register / unregister / disconnect / reconnect.
    #[test]
    fn sharded_switch_matches_model(ops in proptest::collection::vec(op(), 1..200), shards in 1..6usize) {
        let mut sw = Switch::new(Config { lease_ms: 1000, shards, limits: Limits::default(), ..Config::default() });
        let mut model: HashMap<String, String> = HashMap::new();
        let mut out = Vec::new();
        for (i, n) in NODES.iter().enumerate() {
            sw.wait_msg(n, "addr", i as u64, 0, &mut out).unwrap();
        }
        let mut conn = 100u64;
        for op in ops {
            match op {
                Op::Register(p, n) => {
                    let p = name(p);
                    let r = sw.reg_port(NODES[n], &[&p], false, &mut out).unwrap();
                    if r.failed.is_empty() {
                        model.insert(p, NODES[n].to_string());
                    } else {
                        prop_assert_eq!(r.failed[0].owner.as_ref(), model[&p].as_str());
                    }
                }
                Op::Unregister(p, n) => {
                    let p = name(p);
                    let r = sw.unreg_port(NODES[n], &[&p], &mut out).unwrap();
                    if !r.released.is_empty() {
                        let removed = model.remove(&p);
                        prop_assert_eq!(removed.as_deref(), Some(NODES[n]));
                    }
                }
                Op::ReleaseAll(n) | Op::Subscribe(_, n) => {
                    // Reconnect: the node's ports are released.
                    conn += 1;
                    sw.wait_msg(NODES[n], "addr", conn, 0, &mut out).unwrap();
                    model.retain(|_, o| o != NODES[n]);
                }
                Op::Compact => {}
            }
            let ports: Vec<String> = (0..64).map(name).collect();
            let got = sw.query_port(&ports).unwrap();
            for (p, o) in ports.iter().zip(got) {
                let owner = o.map(|o| o.node.to_string());
                prop_assert_eq!(owner.as_ref(), model.get(p));
            }
            for (n, node) in NODES.iter().enumerate() {
                let info = sw.query_node(&[node]).unwrap()[0].clone().unwrap();
                let expect = model.values().filter(|o| o == node).count();
                prop_assert_eq!(info.ports, expect);
                let in_shards: u32 = sw.shards().iter().map(|s| s.count_of(sw.node_index(node).unwrap())).sum();
                prop_assert_eq!(in_shards as usize, expect, "node {}", n);
            }
            for p in model.keys() {
                let s = shard_of(p.as_bytes(), shards);
                prop_assert!(sw.shards()[s].owner(p).is_some());
            }
        }
    }
}
