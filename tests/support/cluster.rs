//! A port switch cluster of real `reaktor` processes on loopback for the end-to-end tests:
//! every member's topology, state directory and log file in one temporary directory; every
//! election link through its own [`Proxy`] so a test can partition members; `kill -9`,
//! SIGSTOP/SIGCONT and restarts with the same state directory.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::proxy::Proxy;
use super::wsclient::{RawWs, Refused};
use super::{free_port, workspace, TempDir, BIN};

/// A member's topology for the soak and the benchmarks: the switch on one core with the
/// cluster kind, routed as examples/cluster routes it, then `sections` (the `[switch]` table
/// and the like) and a token `tok-{prefix}{n}` for each node `{prefix}{n}`, n in 0..nodes.
pub fn switch_topology(sections: &str, prefix: &str, nodes: u64) -> String {
    let mut text = String::from(
        r#"
[[core]]
nuklei = ["tcp", "http", "ws", "switch", "cluster"]

[[http.route]]
path = "/v1/cluster"
to = "cluster"

[[http.route]]
path = "/v1/"
to = "switch"

[[http.route]]
path = "/v1/ws/"
to = "ws"

[[ws.route]]
path = "/v1/ws/"
to = "switch"
"#,
    );
    text.push_str(sections);
    for n in 0..nodes {
        text.push_str(&format!(
            "\n[[switch.token]]\ntoken = \"tok-{prefix}{n}\"\nnodes = [\"{prefix}{n}\"]\n"
        ));
    }
    text
}

/// The election clocks of a test cluster.
#[derive(Clone, Copy, Debug)]
pub struct Clocks {
    pub tick_ms: u64,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: u64,
}

impl Default for Clocks {
    /// The example cluster's clocks (examples/cluster).
    fn default() -> Self {
        Clocks {
            tick_ms: 5,
            heartbeat_ms: 20,
            election_timeout_ms: 150,
        }
    }
}

/// One member process.
pub struct Member {
    pub id: u64,
    pub api_port: u16,
    pub topology: PathBuf,
    pub log: PathBuf,
    pub state_dir: PathBuf,
    streams: PathBuf,
    child: Option<Child>,
    stopped: bool,
}

impl Member {
    pub fn api(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.api_port))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Everything the member logged so far (all its runs).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn spawn(&mut self, log_filter: &str) {
        let _ = std::fs::remove_dir_all(&self.streams);
        std::fs::create_dir_all(&self.streams).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        // REAKTOR_CLUSTER_LAUNCH (e.g. "taskset -c 0") runs members through a launcher: the
        // benchmarks pin them to the server's cpu.
        let launch = std::env::var("REAKTOR_CLUSTER_LAUNCH").unwrap_or_default();
        let mut words = launch.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut c = Command::new(program);
                c.args(words).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let child = command
            .args(["run", "--topology"])
            .arg(&self.topology)
            .arg("--stream-dir")
            .arg(&self.streams)
            .current_dir(workspace())
            .env("REAKTOR_LOG", log_filter)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start reaktor");
        self.child = Some(child);
        self.stopped = false;
    }
}

/// A cluster of member processes, torn down (SIGKILL) on drop.
pub struct Cluster {
    pub members: Vec<Member>,
    /// `links[(from, to)]`: the proxy member `from` sends to member `to` through.
    pub links: Vec<((u64, u64), Proxy)>,
    pub dir: TempDir,
    log_filter: String,
}

/// The value of `"key":` in a flat JSON text (numbers, booleans, null, strings unquoted).
pub fn json_field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = json[at..].trim_start();
    if let Some(quoted) = rest.strip_prefix('"') {
        return quoted.split('"').next();
    }
    rest.split([',', '}']).next().map(str::trim)
}

/// `GET path` on `addr`: (status, body); `None` if the member does not answer in time.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .ok()?;
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

impl Cluster {
    /// Starts `n` members (ids 1..=n) with `clocks`; `extra` is appended to every topology
    /// (its `{ID}` replaced by the member's id). Returns once every member's API accepts
    /// connections.
    pub fn start(n: u64, clocks: Clocks, extra: &str) -> Cluster {
        Cluster::start_with(n, clocks, extra, true)
    }

    /// Like [`Cluster::start`], the election links direct (no proxies, so no partitions):
    /// for benchmarks, whose proxy threads would otherwise share the load generator's cpu
    /// and delay the heartbeats they carry.
    pub fn start_direct(n: u64, clocks: Clocks, extra: &str) -> Cluster {
        Cluster::start_with(n, clocks, extra, false)
    }

    fn start_with(n: u64, clocks: Clocks, extra: &str, proxied: bool) -> Cluster {
        let dir = TempDir::new("cluster");
        let log_filter = std::env::var("REAKTOR_LOG")
            .unwrap_or_else(|_| "warn,raft=info,switch::serving=debug".into());
        // Each member's peer listener: reserve its port by binding, release it just before
        // the member starts (the proxies target it).
        let peer_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let api_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let mut links = Vec::new();
        for from in 1..=n {
            for to in 1..=n {
                if from != to && proxied {
                    let target = SocketAddr::from(([127, 0, 0, 1], peer_ports[to as usize - 1]));
                    links.push(((from, to), Proxy::start(target)));
                }
            }
        }
        let mut members = Vec::new();
        for id in 1..=n {
            let mut text = format!(
                "[reaktor]\npin = false\nstream_capacity = 4194304\nlog_burst = 0\n\n[cluster]\nid = {id}\nstate_dir = \"state-{id}\"\ntick_ms = {}\nheartbeat_ms = {}\nelection_timeout_ms = {}\n",
                clocks.tick_ms, clocks.heartbeat_ms, clocks.election_timeout_ms
            );
            for other in 1..=n {
                let peer = if other == id || !proxied {
                    SocketAddr::from(([127, 0, 0, 1], peer_ports[other as usize - 1]))
                } else {
                    links
                        .iter()
                        .find(|((f, t), _)| *f == id && *t == other)
                        .map(|(_, p)| p.addr)
                        .unwrap()
                };
                text.push_str(&format!(
                    "\n[[cluster.member]]\nid = {other}\npeer = \"{peer}\"\napi = \"http://127.0.0.1:{}\"\n",
                    api_ports[other as usize - 1]
                ));
            }
            text.push_str(&format!(
                "\n[[listener]]\nname = \"http\"\naddress = \"127.0.0.1:{}\"\nchain = [\"tcp\", \"http\"]\n",
                api_ports[id as usize - 1]
            ));
            text.push_str(&extra.replace("{ID}", &id.to_string()));
            let topology = dir.0.join(format!("member-{id}.toml"));
            std::fs::write(&topology, text).unwrap();
            members.push(Member {
                id,
                api_port: api_ports[id as usize - 1],
                topology,
                log: dir.0.join(format!("member-{id}.log")),
                state_dir: dir.0.join(format!("state-{id}")),
                streams: dir.0.join(format!("streams-{id}")),
                child: None,
                stopped: false,
            });
        }
        let mut cluster = Cluster {
            members,
            links,
            dir,
            log_filter,
        };
        for id in 1..=n {
            cluster.start_member(id);
        }
        cluster
    }

    pub fn member(&self, id: u64) -> &Member {
        &self.members[id as usize - 1]
    }

    /// Starts (or restarts, with its state directory) member `id`; returns once its API
    /// accepts connections.
    pub fn start_member(&mut self, id: u64) {
        let filter = self.log_filter.clone();
        let member = &mut self.members[id as usize - 1];
        assert!(member.child.is_none(), "member {id} is running");
        member.spawn(&filter);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(member.addr()).is_err() {
            if let Some(status) = member.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "member {id} exited early with {status}:\n{}",
                    member.log_text()
                );
            }
            assert!(Instant::now() < deadline, "member {id} did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `kill -9` of member `id` (no clean-up of any kind).
    pub fn kill9(&mut self, id: u64) {
        let member = &mut self.members[id as usize - 1];
        let mut child = member.child.take().expect("member is running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGSTOP (`stop = true`) or SIGCONT of member `id`.
    pub fn signal_stop(&mut self, id: u64, stop: bool) {
        let member = &mut self.members[id as usize - 1];
        let pid = member.pid().expect("member is running");
        let signal = if stop { "-STOP" } else { "-CONT" };
        Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap();
        member.stopped = stop;
        if stop {
            // The kernel stops a process's threads only once one of them takes the signal: on a
            // saturated cpu its other threads may serve for a while after `kill` returned.
            let deadline = Instant::now() + Duration::from_secs(5);
            while !all_threads_stopped(pid) {
                assert!(
                    Instant::now() < deadline,
                    "member {id} (pid {pid}) not stopped 5 s after SIGSTOP"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// Cuts (or heals) both directions between member `a` and member `b`.
    pub fn partition(&self, a: u64, b: u64, cut: bool) {
        for ((from, to), proxy) in &self.links {
            if (*from == a && *to == b) || (*from == b && *to == a) {
                if cut {
                    proxy.cut()
                } else {
                    proxy.heal()
                }
            }
        }
    }

    /// Isolates member `id` from every other member (or heals it).
    pub fn isolate(&self, id: u64, cut: bool) {
        for other in self.members.iter().map(|m| m.id).filter(|&o| o != id) {
            self.partition(id, other, cut);
        }
    }

    /// Member `id`'s `GET /v1/cluster` body, if it answers within 500 ms.
    pub fn status(&self, id: u64) -> Option<String> {
        let member = self.member(id);
        if !member.running() || member.stopped {
            return None;
        }
        get(member.addr(), "/v1/cluster", Duration::from_millis(500))
            .filter(|(status, _)| *status == 200)
            .map(|(_, body)| body)
    }

    /// The members whose `/v1/cluster` says they serve now, with their epoch. Members are
    /// asked one after another, so two may say they serve without their leases overlapping
    /// (one ended just before the other began): only a certain overlap fails the test — the
    /// later one served before the earlier one's lease could have ended.
    pub fn serving(&self) -> Vec<(u64, u64)> {
        let mut seen: Vec<(u64, u64, Instant, Instant)> = Vec::new();
        for m in &self.members {
            let asked = Instant::now();
            let Some(body) = self.status(m.id) else {
                continue;
            };
            let answered = Instant::now();
            if json_field(&body, "serving") != Some("true") {
                continue;
            }
            let epoch = json_field(&body, "epoch")
                .and_then(|e| e.parse().ok())
                .unwrap_or(0);
            let remaining = json_field(&body, "lease_remaining_ms")
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            let lease_end = asked + Duration::from_millis(remaining);
            for &(other, other_epoch, _, other_end) in &seen {
                assert!(
                    answered >= other_end,
                    "members {other} (epoch {other_epoch}) and {} (epoch {epoch}) served at once; logs:\n{}",
                    m.id,
                    self.logs()
                );
            }
            seen.push((m.id, epoch, answered, lease_end));
        }
        seen.into_iter()
            .map(|(id, epoch, _, _)| (id, epoch))
            .collect()
    }

    /// Waits until exactly one member serves; (its id, its epoch). Panics after `within`.
    pub fn wait_master(&self, within: Duration) -> (u64, u64) {
        let deadline = Instant::now() + within;
        loop {
            if let [one] = self.serving().as_slice() {
                return *one;
            }
            assert!(
                Instant::now() < deadline,
                "no single master within {within:?}; logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Every member's log, for failure messages.
    pub fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("----- member {} -----\n{}", m.id, m.log_text()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            if let Some(mut child) = member.child.take() {
                if member.stopped {
                    let _ = Command::new("kill")
                        .args(["-CONT", &child.id().to_string()])
                        .status();
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if std::env::var_os("REAKTOR_KEEP_CLUSTER").is_some() {
            eprintln!("cluster kept in {}", self.dir.0.display());
            self.dir.0 = PathBuf::new();
        }
    }
}

/// Where a `Location` (`ws://host:port/target` or `http://...`) points: (address, target).
pub fn location(url: &str) -> Option<(SocketAddr, String)> {
    let rest = url.split_once("://")?.1;
    let (authority, target) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    Some((
        authority.parse().ok()?,
        if target.is_empty() {
            "/".into()
        } else {
            target.into()
        },
    ))
}

/// The `retry_after_ms` of a 503 body (what this project's clients wait), else 50 ms.
pub fn retry_after_ms(refused: &Refused) -> u64 {
    json_field(&refused.body, "retry_after_ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
}

/// The pause after a pass over every member found none serving: while the followers still
/// redirect to a master that was killed (until their election timeout), a pass takes well
/// under a millisecond, and twenty nodes spinning through passes would keep the members'
/// switch threads answering `307`s on the cpu the new master needs. A follower learns a new
/// leader from its first heartbeat, so pausing a fraction of one costs little.
pub const PASS_PAUSE: Duration = Duration::from_millis(5);

/// Opens `node`'s receiving WebSocket at the master among `members`, as a client would:
/// members in turn, following `307`s, waiting out `503`s (their `retry_after_ms`, at most
/// 200 ms), pausing [`PASS_PAUSE`] after a pass over every member found none serving, until
/// `within`. Returns the socket, the address it reached, and every refusal met.
pub fn connect_any(
    members: &[SocketAddr],
    node: &str,
    token: &str,
    within: Duration,
) -> (RawWs, SocketAddr, Vec<Refused>) {
    let deadline = Instant::now() + within;
    let mut refusals = Vec::new();
    let mut k = 0usize;
    loop {
        assert!(
            Instant::now() < deadline,
            "node {node} found no master within {within:?}; refusals: {refusals:?}"
        );
        if k > 0 && k.is_multiple_of(members.len()) {
            std::thread::sleep(PASS_PAUSE);
        }
        let member = members[k % members.len()];
        k += 1;
        let mut target = (member, format!("/v1/ws/{node}?address={node}.local%3A9000"));
        for _ in 0..3 {
            match RawWs::open(target.0, &target.1, token, Duration::from_millis(500)) {
                Ok(Ok(ws)) => return (ws, target.0, refusals),
                Ok(Err(refused)) => {
                    let next = (refused.status == 307)
                        .then(|| refused.header("location").and_then(location))
                        .flatten();
                    if refused.status == 503 {
                        std::thread::sleep(Duration::from_millis(
                            retry_after_ms(&refused).min(200),
                        ));
                    }
                    refusals.push(refused);
                    match next {
                        Some(next) => target = next,
                        None => break,
                    }
                }
                Err(_) => break,
            }
        }
    }
}

impl Cluster {
    /// Opens `node`'s receiving WebSocket at the master ([`connect_any`] over the running
    /// members). Returns the socket, the member it reached, and every refusal met.
    pub fn connect_node(
        &self,
        node: &str,
        token: &str,
        within: Duration,
    ) -> (RawWs, u64, Vec<Refused>) {
        let addrs: Vec<SocketAddr> = self
            .members
            .iter()
            .filter(|m| m.running() && !m.stopped)
            .map(|m| m.addr())
            .collect();
        let (ws, addr, refusals) = connect_any(&addrs, node, token, within);
        let id = self
            .members
            .iter()
            .find(|m| m.addr() == addr)
            .map_or(0, |m| m.id);
        (ws, id, refusals)
    }

    /// Every member's API address.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.members.iter().map(|m| m.addr()).collect()
    }
}

/// Whether every thread of process `pid` is stopped (state `T` in /proc).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|task| {
        std::fs::read_to_string(task.path().join("stat"))
            .ok()
            .and_then(|stat| {
                let state = stat
                    .rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .next()?
                    .to_string();
                Some(state == "T" || state == "t")
            })
            .unwrap_or(true) // the thread ended
    })
}

/// Every reply a member logged as serving: (member, epoch, unix microseconds).
pub fn served(cluster: &Cluster) -> Vec<(u64, u64, u64)> {
    let mut out = Vec::new();
    for m in &cluster.members {
        for line in m
            .log_text()
            .lines()
            .filter(|l| l.contains("switch::serving"))
        {
            let field = |key: &str| {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix(&format!("{key}=")))
                    .and_then(|v| v.parse::<u64>().ok())
            };
            if let (Some(epoch), Some(at)) = (field("epoch"), field("at_unix_us")) {
                out.push((m.id, epoch, at));
            }
        }
    }
    out
}

/// No two members served in overlapping intervals: per (member, epoch), the interval from
/// its first to its last reply must not overlap another member's. Returns the intervals.
pub fn assert_no_overlap(cluster: &Cluster) -> Vec<(u64, u64, u64, u64)> {
    let mut intervals: Vec<(u64, u64, u64, u64)> = Vec::new();
    for (member, epoch, at) in served(cluster) {
        match intervals.iter_mut().find(|i| i.0 == member && i.1 == epoch) {
            Some(i) => {
                i.2 = i.2.min(at);
                i.3 = i.3.max(at);
            }
            None => intervals.push((member, epoch, at, at)),
        }
    }
    for a in &intervals {
        for b in &intervals {
            if a.0 != b.0 {
                assert!(
                    a.3 < b.2 || b.3 < a.2,
                    "members {} (epoch {}) and {} (epoch {}) served in overlapping intervals: {intervals:?}",
                    a.0, a.1, b.0, b.1
                );
            }
            if a.0 == b.0 && a.1 != b.1 {
                assert!(
                    a.3 < b.2 || b.3 < a.2,
                    "one member, two epochs at once: {intervals:?}"
                );
            }
        }
    }
    intervals
}
