//! A switch of one or several instances driven through the [`SwitchEngine`] interface only,
//! as the nukleus drives it: calls under tokens, completions, events, pushes, mesh records
//! moved between the instances in a random interleaving (FIFO per pair, as rings are).
//! One instance is the degenerate cluster ([`SingleEngine`]); several are
//! [`ClusterEngine`]s. Every spec test runs on both through [`for_each_size`].
#![allow(dead_code)]

pub mod rig;

use std::collections::{BTreeMap, HashMap, VecDeque};

use nukleus_switch::api::{self, ResponseBody};
use nukleus_switch::cluster::{home_of, shard_instance, InstanceConfig};
use nukleus_switch::engine::cluster::ClusterEngine;
use nukleus_switch::engine::single::SingleEngine;
use nukleus_switch::engine::{Completion, SwitchEngine};
use nukleus_switch::limits::Limits;
use nukleus_switch::mesh::{MeshReader, Msg};
use nukleus_switch::switch::{CloseReason, Config, Output, Session};
use nukleus_switch::SwitchError;
use serde_json::Value;

/// The `n` cluster instances of one start (incarnation 0), as a reaktor builds them.
pub fn cluster_engines(n: usize, lease_ms: u64, limits: &Limits) -> Vec<ClusterEngine> {
    (0..n)
        .map(|me| {
            ClusterEngine::new(InstanceConfig {
                me,
                instances: n,
                lease_ms,
                limits: limits.clone(),
                incarnation: 0,
            })
        })
        .collect()
}

/// The sizes every spec runs on: one instance, and a cluster of three.
pub const SIZES: [usize; 2] = [1, 3];

/// Runs `f` on a fresh switch of every size in [`SIZES`].
pub fn for_each_size(limits: Limits, f: impl Fn(&mut Net)) {
    for n in SIZES {
        for seed in [1u64, 7] {
            let mut net = Net::new(n, limits.clone(), seed);
            f(&mut net);
        }
    }
}

/// A tiny deterministic generator (xorshift), so failures reproduce.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

pub const LEASE: u64 = 10_000;

pub struct Net {
    pub engines: Vec<Box<dyn SwitchEngine>>,
    wires: BTreeMap<(usize, usize), VecDeque<Vec<u8>>>,
    rng: Rng,
    pub now: u64,
    next_token: u64,
    next_conn: u64,
    done: HashMap<u64, Completion>,
    /// Receiving connections: conn -> (instance, node).
    pub conns: HashMap<u64, (usize, String)>,
    /// Closes the engines asked for, in order: (node, conn, reason).
    pub closed: Vec<(String, u64, CloseReason)>,
    /// Pushes drained so far, per node (JSON objects), for nodes whose queue was drained.
    pub got: HashMap<String, Vec<Value>>,
    /// The last session WaitMsg gave each node: (index at its home, session).
    pub sessions: HashMap<String, (u32, u64)>,
}

impl Net {
    pub fn new(n: usize, limits: Limits, seed: u64) -> Net {
        let engines: Vec<Box<dyn SwitchEngine>> = if n == 1 {
            vec![Box::new(SingleEngine::new(Config {
                lease_ms: LEASE,
                shards: 4,
                limits,
                incarnation: 0,
            }))]
        } else {
            cluster_engines(n, LEASE, &limits)
                .into_iter()
                .map(|e| Box::new(e) as Box<dyn SwitchEngine>)
                .collect()
        };
        Net {
            engines,
            wires: BTreeMap::new(),
            rng: Rng(seed | 1),
            now: 0,
            next_token: 1,
            next_conn: 1,
            done: HashMap::new(),
            conns: HashMap::new(),
            closed: Vec::new(),
            got: HashMap::new(),
            sessions: HashMap::new(),
        }
    }

    pub fn size(&self) -> usize {
        self.engines.len()
    }

    /// The instance that is `node`'s home.
    pub fn home(&self, node: &str) -> usize {
        home_of(node, self.size())
    }

    /// A port name whose shard is instance `at` (any name with one instance).
    pub fn port_at(&self, at: usize, tag: &str) -> String {
        (0..)
            .map(|i| format!("{tag}{i}"))
            .find(|p| shard_instance(p, self.size()) == at % self.size())
            .unwrap()
    }

    /// One port name in every shard.
    pub fn spread(&self, tag: &str, per_shard: usize) -> Vec<String> {
        let mut out = Vec::new();
        for at in 0..self.size() {
            let mut found = 0;
            for i in 0.. {
                let p = format!("{tag}{i}");
                if shard_instance(&p, self.size()) == at {
                    out.push(p);
                    found += 1;
                    if found == per_shard {
                        break;
                    }
                }
            }
        }
        out
    }

    /// Moves mesh bytes onto their wires, events and completions into the harness.
    fn collect(&mut self) {
        let n = self.size();
        for from in 0..n {
            for to in 0..n {
                if from == to {
                    continue;
                }
                if let Some(out) = self.engines[from].poll_transmit(to) {
                    let bytes = std::mem::take(out);
                    let wire = self.wires.entry((from, to)).or_default();
                    MeshReader::default().feed(&bytes, |r| wire.push_back(r.to_vec()));
                }
            }
            while let Some((token, c)) = self.engines[from].poll_done() {
                self.done.insert(token, c);
            }
            while let Some(event) = self.engines[from].poll_event() {
                if let Output::Close { node, conn, reason } = event {
                    self.conns.remove(&conn);
                    self.closed.push((node.to_string(), conn, reason));
                }
            }
        }
    }

    /// Delivers mesh records one at a time, from a random non-empty wire, until all are quiet.
    pub fn settle(&mut self) {
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
            self.engines[to].handle_mesh(from, msg);
        }
        panic!("the mesh did not settle");
    }

    /// WaitMsg of `node` announcing `address` on a new connection.
    pub fn connect(&mut self, node: &str, address: &str) -> Result<(u64, Session), SwitchError> {
        let home = self.home(node);
        let conn = self.next_conn;
        self.next_conn += 1;
        let now = self.now;
        let s = self.engines[home].handle_wait_msg(node, address, conn, now);
        if let Ok(s) = &s {
            self.conns.insert(conn, (home, node.to_string()));
            self.sessions.insert(node.to_string(), (s.node, s.session));
        }
        self.settle();
        s.map(|s| (conn, s))
    }

    /// `node` online with address `<node>:1`.
    pub fn online(&mut self, node: &str) -> u64 {
        self.connect(node, &format!("{node}:1")).unwrap().0
    }

    /// The receiving connection `conn` closed.
    pub fn close(&mut self, conn: u64) -> bool {
        let Some((home, _)) = self.conns.remove(&conn) else {
            return false;
        };
        let r = self.engines[home].handle_connection_closed(conn);
        self.settle();
        r
    }

    /// The clock moved to `now`: every instance expires leases.
    pub fn tick(&mut self, now: u64) -> usize {
        self.now = now;
        let mut n = 0;
        for e in &mut self.engines {
            if e.poll_timeout().is_some_and(|d| d <= now) {
                n += e.handle_timeout(now);
            }
        }
        self.settle();
        n
    }

    fn token(&mut self) -> u64 {
        let t = self.next_token;
        self.next_token += 1;
        t
    }

    fn take(&mut self, token: u64) -> Completion {
        self.settle();
        self.done
            .remove(&token)
            .unwrap_or_else(|| panic!("call {token} did not complete"))
    }

    /// A request message on `node`'s WebSocket; the reply as JSON.
    pub fn ws(&mut self, node: &str, request: Value) -> Value {
        let token = self.ws_start(node, request);
        self.ws_reply(token)
            .unwrap_or_else(|| panic!("call {token} did not complete"))
    }

    /// Sends a request on `node`'s WebSocket without waiting; its token.
    pub fn ws_start(&mut self, node: &str, request: Value) -> u64 {
        let home = self.home(node);
        let token = self.token();
        let now = self.now;
        let grant = nukleus_switch::auth::AnyNode;
        self.engines[home].handle_ws(token, node, &request.to_string(), now, &grant);
        self.settle();
        token
    }

    /// The reply of the WebSocket call `token`, if it completed.
    pub fn ws_reply(&mut self, token: u64) -> Option<Value> {
        self.settle();
        match self.done.remove(&token)? {
            Completion::Ws(text) => Some(serde_json::from_str(&text).unwrap()),
            other => panic!("{other:?}"),
        }
    }

    /// The caller closes `conn` for `reason` (a revoked token).
    pub fn close_for(&mut self, conn: u64, reason: CloseReason) -> bool {
        let Some((home, _)) = self.conns.get(&conn).cloned() else {
            return false;
        };
        let r = self.engines[home].handle_close(conn, reason);
        self.settle();
        r
    }

    /// A REST call at instance `at`: `Ok(body)` or `Err((status, body))`.
    pub fn rest_at(
        &mut self,
        at: usize,
        method: &str,
        path: &str,
        body: Value,
    ) -> Result<Value, (u16, Value)> {
        let route = api::route(method, path).map_err(|e| (e.status(), to_json(&e.body())))?;
        let token = self.token();
        let now = self.now;
        let body = body.to_string();
        let grant = nukleus_switch::auth::AnyNode;
        self.engines[at].handle_rest(token, &route, body.as_bytes(), now, &grant);
        match self.take(token) {
            Completion::Rest(Ok(b)) => Ok(to_json(&b)),
            Completion::Rest(Err(e)) => Err((e.status(), to_json(&e.body()))),
            other => panic!("{other:?}"),
        }
    }

    /// A REST call where http would route it: a node's calls at its home, the others at a
    /// random instance.
    pub fn rest(&mut self, method: &str, path: &str, body: Value) -> Result<Value, (u16, Value)> {
        let at = match path.split('/').collect::<Vec<_>>().as_slice() {
            ["", "v1", "nodes", node, _, ..] if *node != "query" => self.home(node),
            _ => self.rng.below(self.size()),
        };
        self.rest_at(at, method, path, body)
    }

    /// Drains every push queued for `node` at its home; returns them (and keeps them in
    /// `got`).
    pub fn pushes(&mut self, node: &str) -> Vec<Value> {
        self.settle();
        let home = self.home(node);
        let Some(idx) = self.node_idx(node) else {
            return Vec::new();
        };
        let mut all = Vec::new();
        loop {
            let mut buf = Vec::new();
            let d = self.engines[home].drain(idx, 1 << 20, &mut buf);
            if d.pushes == 0 {
                break;
            }
            let v: Vec<Value> = serde_json::from_slice(&buf).unwrap();
            all.extend(v);
        }
        self.got
            .entry(node.to_string())
            .or_default()
            .extend(all.clone());
        all
    }

    /// Opens a node-less watcher at instance `at` (where http sent its connection): its
    /// connection and index there.
    pub fn open_watcher(&mut self, at: usize) -> (u64, u32) {
        let conn = self.next_conn;
        self.next_conn += 1;
        let s = self.engines[at].handle_open_watcher(conn);
        self.conns.insert(conn, (at, String::new()));
        self.settle();
        (conn, s.node)
    }

    /// A watch or unwatch of watcher `idx` at instance `at`: `Ok(body)` or
    /// `Err((status, body))`.
    pub fn watcher_call(
        &mut self,
        at: usize,
        idx: u32,
        call: nukleus_switch::engine::WatcherCall,
    ) -> Result<Value, (u16, Value)> {
        let token = self.token();
        self.engines[at].handle_watcher_call(token, idx, call, None);
        match self.take(token) {
            Completion::Rest(Ok(b)) => Ok(to_json(&b)),
            Completion::Rest(Err(e)) => Err((e.status(), to_json(&e.body()))),
            other => panic!("{other:?}"),
        }
    }

    /// Drains every push queued for watcher `idx` at instance `at`.
    pub fn watcher_pushes(&mut self, at: usize, idx: u32) -> Vec<Value> {
        self.settle();
        let mut all = Vec::new();
        loop {
            let mut buf = Vec::new();
            let d = self.engines[at].drain(idx, 1 << 20, &mut buf);
            if d.pushes == 0 {
                break;
            }
            let v: Vec<Value> = serde_json::from_slice(&buf).unwrap();
            all.extend(v);
        }
        all
    }

    fn node_idx(&self, node: &str) -> Option<u32> {
        self.sessions.get(node).map(|s| s.0)
    }
}

pub fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap()
}

/// The response body of a completed call as JSON.
pub fn body(b: &ResponseBody) -> Value {
    to_json(b)
}
