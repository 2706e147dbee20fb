//! Several switch instances wired through their mesh in one process, with mesh records
//! delivered in a random interleaving (FIFO per pair of instances, as rings are): the port
//! switch's guarantees must hold as they do on one instance.

use std::collections::{BTreeMap, VecDeque};

use nukleus_switch::cluster::{home_of, shard_instance, Done, Instance, InstanceConfig};
use nukleus_switch::json::Escaping;
use nukleus_switch::limits::Limits;
use nukleus_switch::mesh::{Item, MeshReader, Msg};
use nukleus_switch::switch::{Output, Reply};
use nukleus_switch::SwitchError;

/// A tiny deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

struct Cluster {
    inst: Vec<Instance>,
    /// Records in flight, per (from, to).
    wires: BTreeMap<(usize, usize), VecDeque<Vec<u8>>>,
    outputs: Vec<Vec<Output>>,
    done: Vec<Vec<Done>>,
    rng: Rng,
    next_conn: u64,
}

impl Cluster {
    fn new(n: usize, limits: Limits, seed: u64) -> Cluster {
        Cluster {
            inst: (0..n)
                .map(|me| {
                    Instance::new(InstanceConfig {
                        me,
                        instances: n,
                        lease_ms: 10_000,
                        limits: limits.clone(),
                        incarnation: 0,
                    })
                })
                .collect(),
            wires: BTreeMap::new(),
            outputs: vec![Vec::new(); n],
            done: vec![Vec::new(); n],
            rng: Rng(seed | 1),
            next_conn: 1,
        }
    }

    /// Moves every outbox onto its wire.
    fn collect(&mut self) {
        for from in 0..self.inst.len() {
            for to in 0..self.inst.len() {
                let bytes = std::mem::take(self.inst[from].outbox(to));
                let wire = self.wires.entry((from, to)).or_default();
                MeshReader::default().feed(&bytes, |r| wire.push_back(r.to_vec()));
            }
            self.done[from].extend(self.inst[from].take_done());
        }
    }

    /// Delivers records one at a time from a random non-empty wire until all are quiet.
    fn settle(&mut self) {
        for _ in 0..1_000_000 {
            self.collect();
            let busy: Vec<(usize, usize)> = self
                .wires
                .iter()
                .filter(|(_, w)| !w.is_empty())
                .map(|(k, _)| *k)
                .collect();
            if busy.is_empty() {
                return;
            }
            let (from, to) = busy[self.rng.below(busy.len())];
            let record = self
                .wires
                .get_mut(&(from, to))
                .unwrap()
                .pop_front()
                .unwrap();
            let msg = Msg::decode(&record).unwrap();
            self.inst[to].on_mesh(from, msg, &mut self.outputs[to]);
        }
        panic!("the mesh did not settle");
    }

    fn connect(&mut self, node: &str, address: &str) -> u32 {
        let home = home_of(node, self.inst.len());
        let conn = self.next_conn;
        self.next_conn += 1;
        let s = self.inst[home]
            .wait_msg(node, address, conn, 0, &mut self.outputs[home])
            .unwrap();
        self.settle();
        s.node
    }

    fn complete(&mut self, at: usize, token: u64) -> Result<Reply, SwitchError> {
        self.settle();
        let i = self.done[at]
            .iter()
            .position(|(t, _)| *t == token)
            .expect("operation did not complete");
        self.done[at].remove(i).1
    }

    fn reg(&mut self, node: &str, ports: &[&str], subscribe: bool) -> Result<Reply, SwitchError> {
        let home = home_of(node, self.inst.len());
        let ports: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
        self.inst[home].reg_port(77, node, ports, subscribe, None, &mut self.outputs[home]);
        self.complete(home, 77)
    }

    /// Every push queued for `node` (homed at its home), as JSON values.
    fn pushes(&mut self, node: &str) -> Vec<serde_json::Value> {
        let home = home_of(node, self.inst.len());
        let idx = self.inst[home].nodes().lookup(node).unwrap();
        let mut all = Vec::new();
        loop {
            let mut buf = Vec::new();
            let d = self.inst[home].drain(idx, 1 << 20, &mut buf);
            if d.pushes == 0 {
                return all;
            }
            let v: Vec<serde_json::Value> = serde_json::from_slice(&buf).unwrap();
            all.extend(v);
        }
    }
}

/// A node name homed at instance `home` of `n`.
fn node_at(home: usize, n: usize, tag: &str) -> String {
    (0..)
        .map(|i| format!("{tag}-{i}"))
        .find(|id| home_of(id, n) == home)
        .unwrap()
}

/// A port name in the shard of instance `shard` of `n`.
fn port_at(shard: usize, n: usize, tag: &str) -> String {
    (0..)
        .map(|i| format!("{tag}-{i}"))
        .find(|p| shard_instance(p, n) == shard)
        .unwrap()
}

#[test]
fn ownership_is_exclusive_and_a_failed_regport_names_the_owner_across_instances() {
    for seed in 1..20 {
        let n = 3;
        let mut c = Cluster::new(n, Limits::default(), seed);
        let nodes: Vec<String> = (0..n).map(|h| node_at(h, n, "node")).collect();
        for (i, id) in nodes.iter().enumerate() {
            c.connect(id, &format!("10.0.0.{i}:7000"));
        }
        let ports: Vec<String> = (0..60).map(|i| format!("port-{i}")).collect();
        // Every node asks for every port, concurrently: the three batches are in flight at once.
        for (k, id) in nodes.iter().enumerate() {
            let home = home_of(id, n);
            c.inst[home].reg_port(
                k as u64,
                id,
                ports.clone(),
                false,
                None,
                &mut c.outputs[home],
            );
        }
        c.settle();
        let mut owner_of: BTreeMap<String, String> = BTreeMap::new();
        let mut registered = 0;
        for (k, id) in nodes.iter().enumerate() {
            let home = home_of(id, n);
            let Ok(Reply::RegPort(r)) = c.complete(home, k as u64) else {
                panic!("regport failed")
            };
            registered += r.registered;
            let failed: Vec<usize> = r.failed.iter().map(|f| f.index).collect();
            for (i, p) in ports.iter().enumerate() {
                if !failed.contains(&i) {
                    assert!(
                        owner_of.insert(p.clone(), id.clone()).is_none(),
                        "{p} owned twice"
                    );
                }
            }
            for f in &r.failed {
                let owner = owner_of_port(&mut c, &ports[f.index]);
                assert_eq!(f.owner.as_ref(), owner, "seed {seed}");
                let i = nodes.iter().position(|x| x == owner).unwrap();
                assert_eq!(f.address.as_ref(), format!("10.0.0.{i}:7000"));
            }
        }
        assert_eq!(
            registered,
            ports.len(),
            "seed {seed}: every port has one owner"
        );
        let total: u64 = c.inst.iter().map(|i| i.metrics().ports).sum();
        assert_eq!(total, ports.len() as u64);
    }
}

fn owner_of_port(c: &mut Cluster, port: &str) -> &'static str {
    c.inst[0].query_port(900, &[port.to_string()]);
    let Ok(Reply::QueryPort(o)) = c.complete(0, 900) else {
        panic!()
    };
    Box::leak(o[0].as_ref().unwrap().node.to_string().into_boxed_str())
}

#[test]
fn messages_from_one_sender_reach_a_node_in_order_without_duplicates_whichever_shard_resolves_first(
) {
    let n = 3;
    let mut c = Cluster::new(n, Limits::default(), 42);
    let receiver = node_at(1, n, "rx");
    let sender_home = 2;
    c.connect(&receiver, "rx:1");
    // The receiver owns one port in every shard, so each batch is resolved by three shards.
    let ports: Vec<String> = (0..n).map(|s| port_at(s, n, "inbox")).collect();
    let refs: Vec<&str> = ports.iter().map(String::as_str).collect();
    assert!(matches!(c.reg(&receiver, &refs, false), Ok(Reply::RegPort(r)) if r.registered == n));
    let mut seq = 0u64;
    let mut expected = Vec::new();
    for batch in 0..200u64 {
        let mut messages = Vec::new();
        for _ in 0..50 {
            let port = ports[(seq % n as u64) as usize].clone();
            messages.push((vec![port.clone()], seq.to_string()));
            expected.push((port, seq.to_string()));
            seq += 1;
        }
        c.inst[sender_home].send_msg(
            batch,
            messages.into_iter().collect(),
            false,
            &mut c.outputs[sender_home],
        );
        // Let some batches overlap in flight.
        if batch % 3 == 2 {
            c.settle();
        }
    }
    c.settle();
    let done: Vec<Done> = c.done[sender_home].drain(..).collect();
    assert_eq!(done.len(), 200);
    for (_, r) in done {
        assert!(matches!(r, Ok(Reply::SendMsg(s)) if s.delivered == 50 && s.dropped == 0));
    }
    let got: Vec<(String, String)> = c
        .pushes(&receiver)
        .into_iter()
        .map(|v| {
            assert_eq!(v["type"], "msg");
            (
                v["port"].as_str().unwrap().to_string(),
                v["body"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(got.len(), expected.len());
    assert_eq!(got, expected, "per-node order across shards");
}

#[test]
fn node_death_releases_its_ports_in_every_shard_and_notifies_subscribers_at_their_homes() {
    let n = 3;
    let mut c = Cluster::new(n, Limits::default(), 7);
    let owner = node_at(0, n, "owner");
    let watcher = node_at(2, n, "watcher");
    let owner_conn_home = home_of(&owner, n);
    c.connect(&owner, "o:1");
    c.connect(&watcher, "w:1");
    let ports: Vec<String> = (0..n).map(|s| port_at(s, n, "res")).collect();
    let refs: Vec<&str> = ports.iter().map(String::as_str).collect();
    c.reg(&owner, &refs, false).unwrap();
    let Ok(Reply::RegPort(r)) = c.reg(&watcher, &refs, true) else {
        panic!()
    };
    assert_eq!(r.registered, 0);
    assert_eq!(r.failed.len(), n);
    // The owner's receiving connection closes (conn 1 was the first connection).
    assert!(c.inst[owner_conn_home].connection_closed(1, &mut c.outputs[owner_conn_home]));
    c.settle();
    let notes = c.pushes(&watcher);
    let mut released: Vec<&str> = notes
        .iter()
        .map(|v| {
            assert_eq!(v["type"], "released");
            assert_eq!(v["reason"], "node_offline");
            v["port"].as_str().unwrap()
        })
        .collect();
    released.sort_unstable();
    let mut want = refs.clone();
    want.sort_unstable();
    assert_eq!(released, want);
    // The ports are free again, for the watcher.
    assert!(matches!(c.reg(&watcher, &refs, false), Ok(Reply::RegPort(r)) if r.registered == n));
}

#[test]
fn a_second_receiving_connection_replaces_the_first_and_stale_subscriptions_are_not_notified() {
    let n = 2;
    let mut c = Cluster::new(n, Limits::default(), 9);
    let a = node_at(0, n, "a");
    let b = node_at(1, n, "b");
    c.connect(&a, "a:1");
    c.connect(&b, "b:1");
    let ports: Vec<String> = (0..n).map(|s| port_at(s, n, "p")).collect();
    let refs: Vec<&str> = ports.iter().map(String::as_str).collect();
    c.reg(&a, &refs, false).unwrap();
    c.reg(&b, &refs, true).unwrap();
    // b reconnects: its old session's subscriptions must not fire for the new session.
    c.connect(&b, "b:2");
    let home_b = home_of(&b, n);
    assert!(c.outputs[home_b]
        .iter()
        .any(|o| matches!(o, Output::Close { .. })));
    // a reconnects too: its ports are released (reason replaced), nobody current subscribed.
    c.connect(&a, "a:2");
    assert!(c.pushes(&b).is_empty());
    assert!(c.pushes(&a).is_empty());
    let total: u64 = c.inst.iter().map(|i| i.metrics().ports).sum();
    assert_eq!(total, 0);
}

#[test]
fn the_per_node_port_limit_rolls_back_a_batch_that_spans_shards() {
    let n = 3;
    let limits = Limits {
        max_ports_per_node: 5,
        ..Limits::default()
    };
    let mut c = Cluster::new(n, limits, 11);
    let a = node_at(1, n, "a");
    c.connect(&a, "a:1");
    let six: Vec<String> = (0..6).map(|i| format!("x{i}")).collect();
    let refs: Vec<&str> = six.iter().map(String::as_str).collect();
    let err = c.reg(&a, &refs, false).unwrap_err();
    assert!(err.to_string().contains("limit is 5"), "{err}");
    let total: u64 = c.inst.iter().map(|i| i.metrics().ports).sum();
    assert_eq!(total, 0, "nothing of the failed batch stays registered");
    assert!(matches!(c.reg(&a, &refs[..5], false), Ok(Reply::RegPort(r)) if r.registered == 5));
}

#[test]
fn broadcast_reaches_every_online_node_exactly_once_and_queries_merge_across_instances() {
    let n = 3;
    let mut c = Cluster::new(n, Limits::default(), 5);
    // Two nodes homed at every instance.
    let nodes: Vec<String> = (0..6)
        .map(|i| node_at(i % n, n, &format!("b{i}")))
        .collect();
    for id in &nodes {
        c.connect(id, "addr:1");
    }
    c.inst[0].send_msg(
        1,
        [(vec![""], "hi")].into_iter().collect(),
        false,
        &mut c.outputs[0],
    );
    let Ok(Reply::SendMsg(r)) = c.complete(0, 1) else {
        panic!()
    };
    assert_eq!(r.delivered as usize, nodes.len());
    for id in &nodes {
        let p = c.pushes(id);
        assert_eq!(p.len(), 1, "{id}");
        assert_eq!(p[0]["body"], "hi");
    }
    let mut ask = nodes.clone();
    ask.push("nobody".into());
    c.inst[2].query_node(2, ask);
    let Ok(Reply::QueryNode(infos)) = c.complete(2, 2) else {
        panic!()
    };
    assert!(infos[..nodes.len()].iter().all(Option::is_some));
    assert!(infos[nodes.len()].is_none());
    // An unknown port is dropped and counted.
    c.inst[1].send_msg(
        3,
        [(vec!["nowhere"], "x")].into_iter().collect(),
        false,
        &mut c.outputs[1],
    );
    assert!(
        matches!(c.complete(1, 3), Ok(Reply::SendMsg(r)) if r.dropped == 1 && r.delivered == 0)
    );
}

#[test]
fn a_node_scoped_request_at_the_wrong_instance_is_refused_with_its_home() {
    let n = 2;
    let mut c = Cluster::new(n, Limits::default(), 3);
    let a = node_at(0, n, "a");
    let err = c.inst[1]
        .wait_msg(&a, "", 99, 0, &mut c.outputs[1])
        .unwrap_err();
    assert_eq!(
        err,
        SwitchError::Misdirected {
            node: a.clone(),
            home: 0,
            here: 1
        }
    );
    c.inst[1].reg_port(5, &a, vec!["p".into()], false, None, &mut c.outputs[1]);
    assert!(matches!(
        c.complete(1, 5),
        Err(SwitchError::Misdirected { .. })
    ));
}

#[test]
fn one_instance_behaves_like_the_switch() {
    let mut c = Cluster::new(1, Limits::default(), 1);
    c.connect("a", "a:1");
    c.connect("b", "b:1");
    assert!(matches!(c.reg("a", &["p"], false), Ok(Reply::RegPort(r)) if r.registered == 1));
    let Ok(Reply::RegPort(r)) = c.reg("b", &["p"], true) else {
        panic!()
    };
    assert_eq!(r.failed[0].owner.as_ref(), "a");
    c.inst[0].send_msg(
        1,
        [(vec!["p"], "m")].into_iter().collect(),
        false,
        &mut c.outputs[0],
    );
    assert!(matches!(c.complete(0, 1), Ok(Reply::SendMsg(r)) if r.delivered == 1));
    assert_eq!(c.pushes("a")[0]["body"], "m");
    c.inst[0].unreg_port(2, "a", &["p".to_string()], &mut c.outputs[0]);
    assert!(matches!(c.complete(0, 2), Ok(Reply::UnRegPort(r)) if r.released == [0]));
    assert_eq!(c.pushes("b")[0]["reason"], "unregistered");
}

#[test]
fn a_sendmsg_over_a_body_or_port_name_limit_is_refused_whole_naming_the_first_one_over() {
    let n = 2;
    let limits = Limits {
        max_body_len: 8,
        max_port_name_len: 4,
        ..Limits::default()
    };
    let mut c = Cluster::new(n, limits, 9);
    let a = node_at(0, n, "a");
    c.connect(&a, "a:1");
    assert!(matches!(
        c.reg(&a, &["p", "q"], false),
        Ok(Reply::RegPort(_))
    ));
    let send = |c: &mut Cluster, token: u64, batch: Vec<(Vec<&str>, &str)>| {
        c.inst[1].send_msg(token, batch.into_iter().collect(), false, &mut c.outputs[1]);
        c.complete(1, token)
    };
    // At the limits: delivered.
    let at = send(&mut c, 1, vec![(vec!["p"], "12345678"), (vec!["pppp"], "")]);
    assert!(matches!(at, Ok(Reply::SendMsg(r)) if r.delivered == 1 && r.dropped == 1));
    // Over: the first message over names the error, in order, and nothing is delivered.
    let body = send(
        &mut c,
        2,
        vec![
            (vec!["p"], "ok"),
            (vec!["q"], "123456789"),
            (vec!["ppppp"], ""),
        ],
    );
    assert_eq!(
        body.unwrap_err().to_string(),
        "message body is 9 bytes, the limit is 8 bytes"
    );
    let name = send(
        &mut c,
        3,
        vec![(vec!["p", "ppppp"], "ok"), (vec!["q"], "123456789")],
    );
    assert_eq!(
        name.unwrap_err().to_string(),
        "port name is 5 bytes, the limit is 4 bytes"
    );
    let bodies: Vec<String> = c
        .pushes(&a)
        .iter()
        .map(|p| p["body"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(bodies, ["12345678"]);
}

#[test]
fn a_regport_or_unregport_with_an_empty_or_too_long_name_is_refused_whole_naming_the_first_one() {
    // Names are checked by their lengths in bytes (not characters), in order, before any
    // part of the request is applied, with 1, 2 and 4 instances alike.
    for n in [1, 2, 4] {
        let limits = Limits {
            max_port_name_len: 4,
            ..Limits::default()
        };
        let mut c = Cluster::new(n, limits, 5);
        let a = node_at(0, n, "a");
        c.connect(&a, "a:1");
        // At the limit: 4 bytes, two characters of two bytes each.
        assert!(matches!(
            c.reg(&a, &["pppp", "éé", "p"], false),
            Ok(Reply::RegPort(r)) if r.registered == 3
        ));
        let over = c.reg(&a, &["q", "ééé", "", "qqqqq"], false);
        assert_eq!(
            over.unwrap_err().to_string(),
            "port name is 6 bytes, the limit is 4 bytes",
            "{n} instances"
        );
        assert!(matches!(
            c.reg(&a, &["q", "", "qqqqq"], false),
            Err(SwitchError::EmptyPortName)
        ));
        // Nothing of the refused requests was registered.
        let home = home_of(&a, n);
        c.inst[home].query_port(2, &["q".to_string(), "ééé".to_string()]);
        assert!(
            matches!(c.complete(home, 2), Ok(Reply::QueryPort(o)) if o.iter().all(Option::is_none)),
            "{n} instances"
        );
        let unreg = |c: &mut Cluster, token: u64, ports: &[&str]| {
            let ports: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
            c.inst[home].unreg_port(token, &a, &ports, &mut c.outputs[home]);
            c.complete(home, token)
        };
        assert_eq!(
            unreg(&mut c, 3, &["p", "ppppp", ""])
                .unwrap_err()
                .to_string(),
            "port name is 5 bytes, the limit is 4 bytes"
        );
        assert!(matches!(
            unreg(&mut c, 4, &["p", "", "ppppp"]),
            Err(SwitchError::EmptyPortName)
        ));
        // Nothing of them was released.
        assert!(matches!(
            unreg(&mut c, 5, &["pppp", "éé", "p"]),
            Ok(Reply::UnRegPort(r)) if r.released == [0, 1, 2]
        ));
    }
}

#[test]
fn a_sendmsg_to_ports_with_multibyte_names_in_every_shard_reaches_them_in_order() {
    // Phase one cuts each target from the batch's text as bytes: names of one- to four-byte
    // characters resolve at the front's own shard and at every other one alike.
    for n in [2, 4] {
        let mut c = Cluster::new(n, Limits::default(), 11);
        let a = node_at(0, n, "a");
        c.connect(&a, "a:1");
        let ports: Vec<String> = (0..n)
            .flat_map(|s| ["é", "✓😀", "aü"].map(|t| port_at(s, n, t)))
            .collect();
        let names: Vec<&str> = ports.iter().map(String::as_str).collect();
        assert!(matches!(
            c.reg(&a, &names, false),
            Ok(Reply::RegPort(r)) if r.registered == names.len()
        ));
        let front = (n - 1).min(1);
        let mut batch: Vec<(Vec<&str>, String)> = names
            .iter()
            .enumerate()
            .map(|(i, p)| (vec![*p], format!("m{i}")))
            .collect();
        batch.push((vec!["é-none"], "to nobody".to_string()));
        let sent: nukleus_switch::batch::SendBatch =
            batch.iter().map(|(t, b)| (t.clone(), b.as_str())).collect();
        c.inst[front].send_msg(9, sent, false, &mut c.outputs[front]);
        assert!(matches!(
            c.complete(front, 9),
            Ok(Reply::SendMsg(r)) if r.delivered as usize == names.len() && r.dropped == 1
        ));
        let got: Vec<(String, String)> = c
            .pushes(&a)
            .iter()
            .map(|p| {
                (
                    p["port"].as_str().unwrap().to_string(),
                    p["body"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let want: Vec<(String, String)> = names
            .iter()
            .enumerate()
            .map(|(i, p)| (p.to_string(), format!("m{i}")))
            .collect();
        assert_eq!(got, want, "{n} instances");
    }
}

#[test]
fn a_deliver_record_pushes_to_the_current_session_only_and_counts_the_rest_dropped() {
    let n = 2;
    let mut c = Cluster::new(n, Limits::default(), 13);
    let a = node_at(0, n, "a");
    let s = c.inst[0]
        .wait_msg(&a, "a:1", 1, 0, &mut c.outputs[0])
        .unwrap();
    c.settle();
    let to = |session, body| Item::Unicast {
        node: s.node,
        session,
        port: "p",
        body,
        escaping: Escaping::Plain,
    };
    let stale = s.session + 1;
    // Runs to the stale session and to the current one, as a record from instance 1.
    let items = vec![
        to(stale, "x"),
        to(s.session, "1"),
        to(s.session, "2"),
        to(stale, "y"),
        to(stale, "z"),
        to(s.session, "3"),
    ];
    let mut record = Vec::new();
    Msg::Deliver {
        op: 9,
        ack: false,
        items: items.into(),
    }
    .encode(&mut record);
    let before = c.inst[0].metrics();
    c.inst[0].on_mesh(1, Msg::decode(&record[4..]).unwrap(), &mut c.outputs[0]);
    let after = c.inst[0].metrics();
    assert_eq!(after.messages_sent - before.messages_sent, 3);
    assert_eq!(after.messages_dropped - before.messages_dropped, 3);
    let reply = std::mem::take(c.inst[0].outbox(1));
    assert_eq!(
        Msg::decode(&reply[4..]),
        Ok(Msg::Delivered {
            op: 9,
            delivered: 3,
            dropped: 3
        })
    );
    let bodies: Vec<String> = c
        .pushes(&a)
        .iter()
        .map(|p| p["body"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(bodies, ["1", "2", "3"]);
}

#[test]
fn mixed_batches_reach_each_node_as_one_instance_would_deliver_them() {
    // Batches of messages to one or several targets — ports of nodes homed at every instance,
    // in every shard, unknown ports, broadcasts —, each kept as a one-target message or as a
    // list (`SendBatch::push_one` / `push_as`), with either escaping: each node gets exactly
    // the messages addressed to it, in batch order, and each reply counts what was delivered
    // and dropped. Runs of messages to one owner (phase two's Deliver runs) are frequent.
    use nukleus_switch::batch::SendBatch;
    for seed in 1..=30u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9) | 1);
        let n = 2 + rng.below(3);
        let mut c = Cluster::new(n, Limits::default(), seed);
        let nodes: Vec<String> = (0..4)
            .map(|i| node_at(i % n, n, &format!("m{i}")))
            .collect();
        for id in &nodes {
            c.connect(id, "addr:1");
        }
        // Two ports per node, in random shards; the owner of each.
        let mut owner_of = BTreeMap::new();
        for (k, id) in nodes.iter().enumerate() {
            let ports: Vec<String> = (0..2)
                .map(|j| port_at(rng.below(n), n, &format!("q{k}{j}")))
                .collect();
            let refs: Vec<&str> = ports.iter().map(String::as_str).collect();
            assert!(matches!(c.reg(id, &refs, false), Ok(Reply::RegPort(r)) if r.registered == 2));
            for p in ports {
                owner_of.insert(p, id.clone());
            }
        }
        let ports: Vec<String> = owner_of.keys().cloned().collect();
        let sender_home = rng.below(n);
        let mut expected: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        let mut counts = Vec::new();
        let mut seq = 0;
        for batch in 0..12u64 {
            let mut messages = SendBatch::default();
            let (mut delivered, mut dropped) = (0, 0);
            let len = 1 + rng.below(40);
            // A current target, repeated for a while: runs to one owner.
            let mut current = ports[rng.below(ports.len())].clone();
            for _ in 0..len {
                let body = format!("b{seq}");
                seq += 1;
                let pick = |rng: &mut Rng| match rng.below(12) {
                    0 => String::new(),
                    1 => "unknown-port".to_string(),
                    _ => ports[rng.below(ports.len())].clone(),
                };
                if rng.below(4) == 0 {
                    current = pick(&mut rng);
                }
                let mut targets = vec![current.clone()];
                if rng.below(6) == 0 {
                    targets.push(pick(&mut rng));
                    targets.push(pick(&mut rng));
                    targets.dedup();
                }
                let escaping = if rng.below(2) == 0 {
                    Escaping::Plain
                } else {
                    Escaping::Scan
                };
                if targets.len() == 1 {
                    messages.push_one(&targets[0], &body, escaping);
                } else {
                    messages.push_as(targets.iter().map(String::as_str), &body, escaping);
                }
                let mut seen = Vec::new();
                for t in targets {
                    if seen.contains(&t) {
                        continue;
                    }
                    seen.push(t.clone());
                    if t.is_empty() {
                        for id in &nodes {
                            expected
                                .entry(id.clone())
                                .or_default()
                                .push((t.clone(), body.clone()));
                            delivered += 1;
                        }
                    } else if let Some(owner) = owner_of.get(&t) {
                        expected
                            .entry(owner.clone())
                            .or_default()
                            .push((t, body.clone()));
                        delivered += 1;
                    } else {
                        dropped += 1;
                    }
                }
            }
            c.inst[sender_home].send_msg(batch, messages, false, &mut c.outputs[sender_home]);
            if rng.below(3) == 0 {
                c.settle();
            }
            counts.push((delivered, dropped));
        }
        c.settle();
        let mut done: Vec<Done> = c.done[sender_home].drain(..).collect();
        done.sort_by_key(|(t, _)| *t);
        assert_eq!(done.len(), 12, "seed {seed}");
        for (token, r) in done {
            let Ok(Reply::SendMsg(s)) = r else {
                panic!("seed {seed}: batch {token}: {r:?}")
            };
            assert_eq!(
                (s.delivered, s.dropped),
                counts[token as usize],
                "seed {seed}: batch {token} delivered/dropped"
            );
        }
        for id in &nodes {
            let got: Vec<(String, String)> = c
                .pushes(id)
                .into_iter()
                .map(|v| {
                    assert_eq!(v["type"], "msg");
                    (
                        v["port"].as_str().unwrap_or_default().to_string(),
                        v["body"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            let want = expected.remove(id).unwrap_or_default();
            assert_eq!(
                got, want,
                "seed {seed} (n = {n}): pushes to {id} in batch order"
            );
        }
    }
}
