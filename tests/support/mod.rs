//! Shared helpers for end-to-end tests: start the real `reaktor` binary with a topology on a
//! free loopback port, wait until it accepts connections, stop it with SIGTERM.
#![allow(dead_code)]

pub mod cluster;
pub mod history;
pub mod proxy;
pub mod wsclient;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_reaktor");

/// The workspace root (tests run with the package directory as cwd).
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("reaktor-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.0.as_os_str().is_empty() {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port for a server a test starts: free now, outside the kernel's ephemeral range
/// (so no outgoing connection of any process takes it as its source port while the server is
/// down, e.g. a cluster member killed and restarted), and handed out to no other test process
/// while this one lives (a lock file per port under the temp dir, held until exit). Ports from
/// `bind(0)` had neither property: a killed member's port, reused by another test's member,
/// received its old peers' HELLOs (a member named by its own id in them when the ids matched),
/// and a restart could fail with "Address already in use".
pub fn free_port() -> u16 {
    static HELD: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
    let (first, last) = reserved_port_range();
    let dir = std::env::temp_dir().join("reaktor-test-ports");
    std::fs::create_dir_all(&dir).unwrap();
    let mut x = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    for _ in 0..10_000 {
        // xorshift64: a cheap spread over the range.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = first + (x % u64::from(last - first + 1)) as u16;
        let Ok(file) = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(port.to_string()))
        else {
            continue;
        };
        // Held by another test process, or already by this one (a lock is per open file).
        if file.try_lock().is_err() {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        HELD.lock().unwrap().push(file);
        return port;
    }
    panic!("no free port in {first}..={last}");
}

/// Ports below the ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`), or above it
/// if it starts low.
pub fn reserved_port_range() -> (u16, u16) {
    let range =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut bounds = range
        .split_whitespace()
        .filter_map(|v| v.parse::<u16>().ok());
    let (low, high) = (
        bounds.next().unwrap_or(32768),
        bounds.next().unwrap_or(60999),
    );
    if low > 12_000 {
        (10_000, low - 1)
    } else {
        (high.saturating_add(1).min(65_000), 65_535)
    }
}

/// How `Server::start_with` runs the binary.
#[derive(Default)]
pub struct Options {
    /// RLIMIT_NOFILE of the server process (`ulimit -n`).
    pub max_open_files: Option<u64>,
    /// REAKTOR_LOG (default: the test's REAKTOR_LOG, else `warn`).
    pub log: Option<String>,
    /// Where the stream directory goes (default: the server's temporary directory).
    pub stream_root: Option<PathBuf>,
    /// Run the server where io_uring is refused (a seccomp filter, as in containers).
    pub without_io_uring: bool,
}

pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub dir: TempDir,
    pub topology: PathBuf,
}

impl Server {
    /// Starts `reaktor run` with `topology`, in which every `{PORT}` is replaced by a free
    /// port; returns once the port accepts connections (at most 20 s).
    pub fn start(topology: &str) -> Server {
        Server::start_with(topology, &Options::default())
    }

    /// Like `start`, with the stream directory (`reaktor-<pid>`) under `stream_root` instead
    /// of the server's own temporary directory.
    pub fn start_in(topology: &str, stream_root: Option<&std::path::Path>) -> Server {
        Server::start_with(
            topology,
            &Options {
                stream_root: stream_root.map(|r| r.to_owned()),
                ..Options::default()
            },
        )
    }

    /// Like `start`, with process limits, a log level and a stream directory of the test's
    /// choosing.
    pub fn start_with(topology: &str, options: &Options) -> Server {
        let dir = TempDir::new("server");
        let port = free_port();
        let path = dir.0.join("topology.toml");
        let topology = with_test_transport(topology);
        std::fs::write(&path, topology.replace("{PORT}", &port.to_string())).unwrap();
        let streams = options
            .stream_root
            .clone()
            .unwrap_or_else(|| dir.0.join("streams"));
        std::fs::create_dir_all(&streams).unwrap();
        let mut command = match options.max_open_files {
            // The shell sets the limit, then becomes the server (same pid).
            Some(limit) => {
                let mut c = Command::new("sh");
                c.args([
                    "-c",
                    &format!("ulimit -n {limit} && exec \"$0\" \"$@\""),
                    BIN,
                ]);
                c
            }
            None if options.without_io_uring => {
                let mut c = Command::new(python());
                c.arg(workspace().join("tests/python/without_io_uring.py"))
                    .arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let log = options
            .log
            .clone()
            .or_else(|| std::env::var("REAKTOR_LOG").ok())
            .unwrap_or_else(|| "warn".into());
        let child = command
            .args(["run", "--topology"])
            .arg(&path)
            .arg("--stream-dir")
            .arg(&streams)
            .current_dir(workspace())
            .env("REAKTOR_LOG", log)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start reaktor");
        let mut server = Server {
            child: Some(child),
            port,
            dir,
            topology: path,
        };
        server.wait_ready();
        server
    }

    /// Stops the server (SIGTERM) and starts it again with the same topology on the same
    /// port: what a client sees when its switch restarts with an empty table. Returns the
    /// first run's stderr.
    pub fn restart(&mut self) -> String {
        let mut child = self.child.take().unwrap();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
        assert!(status.success(), "reaktor exit {status}: {stderr}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let streams = self.dir.0.join("streams");
            let _ = std::fs::remove_dir_all(&streams);
            std::fs::create_dir_all(&streams).unwrap();
            let child = Command::new(BIN)
                .args(["run", "--topology"])
                .arg(&self.topology)
                .arg("--stream-dir")
                .arg(&streams)
                .current_dir(workspace())
                .env(
                    "REAKTOR_LOG",
                    std::env::var("REAKTOR_LOG").unwrap_or_else(|_| "warn".into()),
                )
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start reaktor");
            self.child = Some(child);
            // The old listener's port may take a moment to be free again.
            let up = loop {
                if TcpStream::connect(self.addr()).is_ok() {
                    break true;
                }
                if self.child.as_mut().unwrap().try_wait().unwrap().is_some() {
                    break false;
                }
                assert!(
                    Instant::now() < deadline,
                    "reaktor did not restart within 20 s"
                );
                std::thread::sleep(Duration::from_millis(20));
            };
            if up {
                return stderr;
            }
            assert!(
                Instant::now() < deadline,
                "reaktor did not restart within 20 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The default single-core test topology with the given extra TOML appended.
    pub fn start_default(extra: &str) -> Server {
        Server::start(&format!("{}\n{extra}", default_topology()))
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(self.addr()).is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let mut stderr = String::new();
                let _ = self
                    .child
                    .as_mut()
                    .unwrap()
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut stderr);
                panic!("reaktor exited early with {status}: {stderr}");
            }
            assert!(
                Instant::now() < deadline,
                "reaktor did not accept connections within 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Kills the process with SIGKILL (no clean-up of any kind) and reaps it.
    pub fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Sends SIGTERM and waits (at most 10 s) for a clean exit; returns status and stderr.
    pub fn stop(self) -> (ExitStatus, String) {
        let (status, stderr, _dir) = self.stop_keep_dir();
        (status, stderr)
    }

    /// Like `stop`, but hands back the temporary directory so it can be inspected.
    pub fn stop_keep_dir(mut self) -> (ExitStatus, String, TempDir) {
        // The first SIGTERM drains (requests in flight may finish); a test that left a
        // connection busy does not wait for the drain timeout: a second SIGTERM stops at once.
        self.signal("TERM");
        let status = match self.wait_exit(Duration::from_secs(3)) {
            Some(status) => status,
            None => {
                self.signal("TERM");
                self.wait_exit(Duration::from_secs(7)).unwrap_or_else(|| {
                    let _ = self.child.as_mut().unwrap().kill();
                    panic!("reaktor did not stop within 10 s of SIGTERM")
                })
            }
        };
        let stderr = self.stderr();
        let dir = std::mem::replace(&mut self.dir, TempDir(PathBuf::new()));
        (status, stderr, dir)
    }

    /// Sends a signal (`TERM`, `STOP`, ...) to the server.
    pub fn signal(&self, name: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let _ = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status();
    }

    /// Waits at most `limit` for the server to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut().unwrap();
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// After the server exited (`wait_exit`): its stderr.
    pub fn stderr(&mut self) -> String {
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.as_mut().and_then(|c| c.stderr.take()) {
            let _ = pipe.read_to_string(&mut stderr);
        }
        stderr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The test matrix's tcp transport: with `REAKTOR_TEST_TCP_TRANSPORT=io_uring` (scripts/test's
/// second pass), every server a test starts runs `[tcp] transport = "io_uring"`.
pub fn with_test_transport(topology: &str) -> String {
    match std::env::var("REAKTOR_TEST_TCP_TRANSPORT") {
        Ok(transport) if !transport.is_empty() => set_tcp_transport(topology, &transport),
        _ => topology.to_owned(),
    }
}

/// `topology` with `[tcp] transport = "<transport>"` (the `[tcp]` table added if it has none).
pub fn set_tcp_transport(topology: &str, transport: &str) -> String {
    let setting = format!("transport = \"{transport}\"");
    let mut out = String::with_capacity(topology.len() + 32);
    let mut found = false;
    for line in topology.lines() {
        if line.trim_start().starts_with("transport =") {
            continue; // set below, once
        }
        out.push_str(line);
        out.push('\n');
        if line.trim() == "[tcp]" && !found {
            out.push_str(&setting);
            out.push('\n');
            found = true;
        }
    }
    if !found {
        out.push_str(&format!("\n[tcp]\n{setting}\n"));
    }
    out
}

/// One core running tcp, http and echo, unpinned (tests run in parallel).
pub fn default_topology() -> String {
    r#"
[reaktor]
pin = false
stream_capacity = 4194304

[[listener]]
name = "http"
address = "127.0.0.1:{PORT}"
chain = ["tcp", "http"]

[[core]]
nuklei = ["tcp", "http", "echo"]

[[http.route]]
path = "/"
to = "echo"
"#
    .to_owned()
}

/// One core running tcp, tls, http and echo; one HTTPS listener with the certificate and key
/// at these paths; `reaktor` is appended to the `[reaktor]` table, `tls` to `[listener.tls]`.
pub fn tls_topology(
    cert: &std::path::Path,
    key: &std::path::Path,
    reaktor: &str,
    tls: &str,
) -> String {
    format!(
        r#"
[reaktor]
pin = false
stream_capacity = 4194304
{reaktor}
[[listener]]
name = "https"
address = "127.0.0.1:{{PORT}}"
chain = ["tcp", "tls", "http"]

[listener.tls]
cert = "{cert}"
key = "{key}"
{tls}

[[core]]
nuklei = ["tcp", "tls", "http", "echo"]

[[http.route]]
path = "/"
to = "echo"
"#,
        cert = cert.display(),
        key = key.display(),
    )
}

/// Starts a 1 GiB `POST /echo` and never reads the echo: uploads until a write fails for good
/// (within 20 s), i.e. until the server stalls the upload and then, after its write timeout,
/// resets the connection. Returns the bytes sent and that error.
pub fn upload_without_reading(server: &Server) -> (usize, std::io::Error) {
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n")
        .unwrap();
    let chunk = vec![b'q'; 65536];
    let started = Instant::now();
    let mut sent = 0;
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the server never dropped the connection"
        );
        match stream.write(&chunk) {
            Ok(n) => sent += n,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => return (sent, e),
        }
    }
}

/// Sends raw bytes on a fresh connection and reads until the server closes it (or 10 s).
pub fn raw_exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    response
}

/// Runs `curl` with `args`; returns (exit code, stdout).
pub fn curl(args: &[&str]) -> (i32, String) {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl is installed");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// A REST call to `server` with a bearer `token` (curl); returns (HTTP status, body).
pub fn rest_call(
    server: &Server,
    token: &str,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    let auth = format!("Authorization: Bearer {token}");
    let (_, out) = curl(&[
        "-w",
        "\n%{http_code}",
        "-X",
        method,
        "-H",
        &auth,
        "-d",
        body,
        &server.url(path),
    ]);
    let (body, status) = out.rsplit_once('\n').unwrap_or((&out, "0"));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

/// The Python interpreter for client-library tests: the project venv if set up
/// (scripts/setup-test-deps.sh), else `python3`.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("REAKTOR_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = workspace().join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// A masked client WebSocket frame (`b0`: FIN/RSV bits and opcode).
pub fn ws_client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![b0];
    match payload.len() {
        n if n <= 125 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Reads one server WebSocket frame, which must be unmasked: (first byte, payload).
pub fn ws_read_frame(stream: &mut impl Read) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
    let len = match head[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            stream.read_exact(&mut b).unwrap();
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            stream.read_exact(&mut b).unwrap();
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).unwrap();
    (head[0], payload)
}

/// Private (anonymous) resident memory of a process in KiB: excludes the shared stream
/// buffers, whose size is fixed by the topology and which fill as rings wrap.
pub fn private_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("RssAnon:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Sockets in CLOSE-WAIT whose local port is `port`: connections the client closed and the
/// server has not (read from /proc/net/tcp and tcp6; the port is unique to one test server).
pub fn close_wait_sockets(port: u16) -> usize {
    const CLOSE_WAIT: &str = "08";
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let local_port = fields
                        .get(1)
                        .and_then(|local| local.rsplit(':').next())
                        .and_then(|hex| u16::from_str_radix(hex, 16).ok());
                    local_port == Some(port) && fields.get(3) == Some(&CLOSE_WAIT)
                })
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .count()
}

/// Waits (at most `limit`) until no connection to `port` is left in CLOSE-WAIT; returns how
/// many are left.
pub fn settle_close_wait(port: u16, limit: Duration) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        let left = close_wait_sockets(port);
        if left == 0 || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The port switch's test topology: tcp, http, ws and switch fused on each of `cores` cores
/// (with more than one, the switch runs as that many instances: port shards and node homes
/// by hash, talking over their mesh); tokens `tok-n0`..`tok-n63` (one node each), `multi`
/// (all of them), `adm` (admin); a short lease (1.5 s) and small limits so limit tests are
/// quick.
pub fn switch_topology(max_queued_bytes: usize, cores: usize) -> String {
    let nodes: Vec<String> = (0..64).map(|i| format!("\"n{i}\"")).collect();
    let mut t = String::from(
        r#"
[reaktor]
pin = false
stream_capacity = 4194304

[[listener]]
name = "http"
address = "127.0.0.1:{PORT}"
chain = ["tcp", "http"]

{CORES}
[[http.route]]
path = "/v1/"
to = "switch"

[[http.route]]
path = "/v1/ws/"
to = "ws"

[[ws.route]]
path = "/v1/ws/"
to = "switch"

[switch]
lease_ms = 1500

[switch.limits]
max_port_name_len = 64
max_ports_per_request = 100
max_ports_per_node = 150
max_body_len = 1024
max_queued_bytes = {QUEUE}
max_messages_per_request = 1000

[[switch.token]]
token = "adm"
admin = true
"#,
    );
    t = t.replace("{QUEUE}", &max_queued_bytes.to_string());
    t = t.replace(
        "{CORES}",
        &"[[core]]\nnuklei = [\"tcp\", \"http\", \"ws\", \"switch\"]\n\n".repeat(cores),
    );
    t.push_str(&format!(
        "\n[[switch.token]]\ntoken = \"multi\"\nnodes = [{}]\n",
        nodes.join(", ")
    ));
    for i in 0..64 {
        t.push_str(&format!(
            "\n[[switch.token]]\ntoken = \"tok-n{i}\"\nnodes = [\"n{i}\"]\n"
        ));
    }
    t
}
