//! The operator console against the real binary over real sockets: the admin token, the page
//! and its security headers, the plan (the same as `reaktor plan --json`), the live stream
//! (hello, ticks, numbers that move under load, a bound on viewers, nothing done without a
//! viewer) and the what-if (answers, and refusals of hostile input). The browser test is
//! `e2e_console_browser`.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{curl, Server, BIN};

/// Two unpinned cores, the whole default stack with the console on both.
/// Two unpinned cores, the whole default stack with the console on both
/// (tests/console_topology.toml), and this test's console settings and tokens.
fn topology() -> String {
    format!(
        "{}{}",
        include_str!("console_topology.toml"),
        r#"
[console]
interval_ms = 200
max_viewers = 2
max_what_if_bytes = 4096

[[switch.token]]
token = "admin-secret"
admin = true

[[switch.token]]
token = "node-token"
nodes = ["n1"]
"#
    )
}

const ADMIN: &str = "Authorization: Bearer admin-secret";

/// Status line and headers of `curl -i`, lower-cased, and the body.
fn get(server: &Server, args: &[&str], path: &str) -> (u16, String, String) {
    let url = server.url(path);
    let mut all: Vec<&str> = vec!["-i"];
    all.extend_from_slice(args);
    all.push(&url);
    let (_, out) = curl(&all);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_lowercase(), body.to_owned())
}

/// Reads server-sent events from a chunked HTTP response on a raw socket.
struct EventStream {
    reader: BufReader<TcpStream>,
    buffer: String,
}

impl EventStream {
    fn open(server: &Server, auth: &str) -> (u16, EventStream) {
        let mut stream = TcpStream::connect(server.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "GET /console/stream HTTP/1.1\r\nHost: x\r\n{auth}\r\n\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        let code = status
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (
            code,
            EventStream {
                reader,
                buffer: String::new(),
            },
        )
    }

    /// The next event: (name, data as JSON).
    fn next(&mut self) -> (String, serde_json::Value) {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                let name = event
                    .lines()
                    .find_map(|l| l.strip_prefix("event: "))
                    .unwrap_or_default()
                    .to_owned();
                let data = event
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .expect("an event has data");
                return (name, serde_json::from_str(data).expect("data is JSON"));
            }
            // One chunk: size line, bytes, CRLF.
            let mut size = String::new();
            self.reader.read_line(&mut size).expect("a chunk");
            let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
            assert!(size > 0, "the stream ended");
            let mut bytes = vec![0; size + 2];
            self.reader.read_exact(&mut bytes).unwrap();
            self.buffer
                .push_str(std::str::from_utf8(&bytes[..size]).unwrap());
        }
    }

    /// Whether the body ends here (the last chunk), with no event left unread.
    fn ended(&mut self) -> bool {
        let mut size = String::new();
        self.reader.read_line(&mut size).expect("a chunk");
        self.buffer.is_empty() && size.trim() == "0"
    }

    fn next_tick(&mut self) -> serde_json::Value {
        loop {
            let (name, data) = self.next();
            if name == "tick" {
                return data;
            }
        }
    }
}

/// A counter of `/metrics` summed over the console's instances.
fn console_metric(server: &Server, family: &str) -> f64 {
    let (_, text) = curl(&[&server.url("/metrics")]);
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) && l.contains("kind=\"console\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A gauge summed over instances from `/metrics`.
fn metric(server: &Server, family: &str) -> f64 {
    let (_, text) = curl(&[&server.url("/metrics")]);
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn the_console_needs_an_admin_token_and_serves_its_page_with_a_strict_policy() {
    let server = Server::start(&topology());
    let (status, head, body) = get(&server, &[], "/console");
    assert_eq!(status, 401, "{head}");
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    assert!(body.contains("admin token"), "{body}");
    assert_eq!(get(&server, &[], "/console?token=wrong").0, 401);
    assert_eq!(get(&server, &[], "/console/plan").0, 401);
    assert_eq!(get(&server, &[], "/console/stream").0, 401);
    let (status, _, body) = get(
        &server,
        &["-H", "Authorization: Bearer node-token"],
        "/console",
    );
    assert_eq!(status, 403, "{body}");
    for args in [&["-H", ADMIN][..], &[][..]] {
        let path = if args.is_empty() {
            "/console?token=admin-secret"
        } else {
            "/console"
        };
        let (status, head, body) = get(&server, args, path);
        assert_eq!(status, 200, "{head}");
        assert!(head.contains("content-type: text/html"), "{head}");
        assert!(
            head.contains("content-security-policy: default-src 'none'; script-src 'sha256-"),
            "{head}"
        );
        assert!(head.contains("cache-control: no-store"), "{head}");
        assert!(body.contains("<script>") && body.contains("</html>"));
    }
    assert_eq!(get(&server, &["-H", ADMIN], "/console/nothing").0, 404);
    assert_eq!(
        get(&server, &["-H", ADMIN, "-X", "DELETE"], "/console").0,
        405
    );
}

#[test]
fn the_console_draws_what_reaktor_plan_json_prints() {
    let server = Server::start(&topology());
    let (status, _, body) = get(&server, &["-H", ADMIN], "/console/plan?costs=declared");
    assert_eq!(status, 200);
    let served: serde_json::Value = serde_json::from_str(&body).unwrap();
    let out = Command::new(BIN)
        .args(["plan", "--json", "--topology"])
        .arg(&server.topology)
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(served, printed);
    assert_eq!(served["cores"].as_array().unwrap().len(), 2);
    assert_eq!(served["instances"].as_array().unwrap().len(), 14);
    assert!(served["links"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["mesh"] == true));
}

#[test]
fn the_stream_says_hello_then_ticks_and_the_numbers_move_under_load() {
    let server = Server::start(&topology());
    let (status, mut events) = EventStream::open(&server, ADMIN);
    assert_eq!(status, 200);
    let (name, hello) = events.next();
    assert_eq!(name, "hello");
    assert_eq!(hello["plan"]["instances"].as_array().unwrap().len(), 14);
    assert_eq!(hello["interval_ms"], 200);
    let first = events.next_tick();
    let rings = hello["plan"]["rings"].as_array().unwrap().len();
    assert_eq!(first["rings"].as_array().unwrap().len(), rings);
    assert_eq!(first["instances"].as_array().unwrap().len(), 14);
    // Load: keep-alive requests on a few connections until a tick shows them.
    let url = server.url("/");
    let load = std::thread::spawn(move || {
        for _ in 0..20 {
            let urls = vec![url.as_str(); 50];
            let _ = curl(&urls);
        }
    });
    let started = Instant::now();
    let mut seen = 0.0_f64;
    while seen <= 0.0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no tick showed the load"
        );
        let tick = events.next_tick();
        seen = tick["point"]["rps"].as_f64().unwrap();
        let tcp_fps: f64 = tick["point"]["stages"]["tcp"].as_f64().unwrap();
        if seen > 0.0 {
            assert!(tcp_fps > 0.0, "{tick}");
        }
    }
    load.join().unwrap();
    // Ticks keep their pace: several arrive in a second at 200 ms.
    let t = Instant::now();
    let a = events.next_tick()["seq"].as_u64().unwrap();
    let b = events.next_tick()["seq"].as_u64().unwrap();
    assert!(b > a && t.elapsed() < Duration::from_secs(2));
}

#[test]
fn viewers_are_bounded_and_nothing_is_done_without_one() {
    let server = Server::start(&topology());
    // No viewer: the console instances do no work at all (gauges refresh once a second).
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(metric(&server, "reaktor_console_ticks_sent_total"), 0.0);
    let idle_work = console_metric(&server, "reaktor_nukleus_work_total");
    assert_eq!(idle_work, 0.0, "a console without viewers did work");
    let (a, mut first) = EventStream::open(&server, ADMIN);
    let (b, _second) = EventStream::open(&server, ADMIN);
    assert_eq!((a, b), (200, 200));
    let (c, _) = EventStream::open(&server, ADMIN);
    assert_eq!(c, 503, "a third viewer over max_viewers = 2");
    first.next_tick();
    drop(first);
    // The slot frees once the reaktor sees the connection go.
    let started = Instant::now();
    loop {
        let (code, _) = EventStream::open(&server, ADMIN);
        if code == 200 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the viewer's slot never freed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Every viewer has gone: after the next tick (which forgets their streams) the console
    // has no deadline, so its cores park again — a few duty cycles a second for the requests
    // of /metrics, not the hundreds of thousands of a core that keeps polling.
    std::thread::sleep(Duration::from_millis(600));
    let before = console_metric(&server, "reaktor_nukleus_polls_total");
    std::thread::sleep(Duration::from_secs(1));
    let polls = console_metric(&server, "reaktor_nukleus_polls_total") - before;
    assert!(
        polls < 5000.0,
        "{polls} console polls in a second with nobody watching: a core did not park"
    );
}

/// SIGTERM ends every live stream with a `close` event and the end of its chunked body (a
/// page says why it lost the server), refuses new ones with 503, and the process exits
/// drained, long before the drain timeout (10 s).
#[test]
fn sigterm_ends_live_streams_with_a_close_event_and_the_process_exits_drained() {
    let mut server = Server::start(&topology());
    let (status, mut events) = EventStream::open(&server, ADMIN);
    assert_eq!(status, 200);
    assert_eq!(events.next().0, "hello");
    let signalled = Instant::now();
    server.signal("TERM");
    let (name, data) = loop {
        let (name, data) = events.next();
        if name != "tick" {
            break (name, data);
        }
    };
    assert_eq!(name, "close");
    assert_eq!(data["reason"], "going_away");
    assert_eq!(data["message"], "server shutting down");
    assert!(
        events.ended(),
        "the chunked body ends after the close event"
    );
    server
        .wait_exit(Duration::from_secs(5))
        .expect("exits once drained");
    assert!(
        signalled.elapsed() < Duration::from_secs(4),
        "drained in {:?}, not at the drain timeout",
        signalled.elapsed()
    );
}

#[test]
fn the_what_if_plans_a_pasted_topology_and_refuses_hostile_input() {
    let server = Server::start(&topology());
    let post = |body: &str, extra: &[&str]| -> (u16, String) {
        let mut args = vec!["-H", ADMIN, "-X", "POST", "--data-binary", body];
        args.extend_from_slice(extra);
        let (status, _, body) = get(&server, &args, "/console/what-if");
        (status, body)
    };
    let split = r#"
[reaktor]
pin = false
[[listener]]
name = "http"
address = "127.0.0.1:1"
chain = ["tcp", "http"]
[[core]]
nuklei = ["tcp", "http"]
[[core]]
nuklei = ["echo"]
[[http.route]]
path = "/"
to = "echo"
"#;
    let (status, body) = post(split, &[]);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["proposed"]["cores"].as_array().unwrap().len(), 2);
    assert!(
        v["proposed"]["prediction"]["throughput_rps"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(v["ratio"].as_f64().unwrap() > 0.0);
    let (status, body) = post("[[core]\nnuklei = 1", &[]);
    assert_eq!(status, 400);
    assert!(body.contains("what-if.toml:1:"), "{body}");
    let (status, body) = post("[[core]]\nnuklei = [\"quic\"]\n", &[]);
    assert_eq!(status, 400);
    assert!(body.contains("unknown nukleus kind `quic`"), "{body}");
    let big = "#".repeat(5000);
    assert_eq!(post(&big, &[]).0, 413);
    assert_eq!(post(&big, &["-H", "Transfer-Encoding: chunked"]).0, 413);
    assert_eq!(get(&server, &["-H", ADMIN], "/console/what-if").0, 405);
    assert_eq!(
        get(
            &server,
            &["-X", "POST", "--data-binary", split],
            "/console/what-if"
        )
        .0,
        401
    );
    // Still serving after all that.
    assert_eq!(get(&server, &[], "/healthz").0, 200);
}

#[test]
fn with_a_cluster_the_stream_shows_the_members_role_epoch_and_leader() {
    let peer = support::free_port();
    // A cluster member runs the switch as one instance (its fencing tokens come from one).
    let one_switch = topology().replacen(
        "\"switch\", \"metrics\", \"console\"]",
        "\"metrics\", \"console\"]",
        1,
    );
    let topology = format!(
        "{}\n[cluster]\nid = 1\nstate_dir = \"raft\"\n[[cluster.member]]\nid = 1\npeer = \"127.0.0.1:{peer}\"\napi = \"http://127.0.0.1:{{PORT}}\"\n",
        one_switch
    );
    let server = Server::start(&topology);
    let (status, mut events) = EventStream::open(&server, ADMIN);
    assert_eq!(status, 200);
    let (_, hello) = events.next();
    assert_eq!(hello["cluster"]["id"], 1, "{}", hello["cluster"]);
    // A member alone elects itself: the ticks show it become the serving master.
    let started = Instant::now();
    loop {
        let cluster = events.next_tick()["cluster"].clone();
        if cluster["role"] == "leader" && cluster["serving"] == true {
            assert_eq!(cluster["leader"], 1);
            assert!(cluster["epoch"].as_u64().unwrap() >= 1, "{cluster}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "never became the serving master: {cluster}"
        );
    }
}
