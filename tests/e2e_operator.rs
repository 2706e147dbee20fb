//! End-to-end specification of the operator's tools: `/metrics` (Prometheus text) served by
//! the metrics nukleus, `reaktor dump` and `reaktor top` attached from a second process, and
//! `reaktor plan` / `reaktor run` with `placement = "auto"`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{curl, Server, TempDir, BIN};

/// Two unpinned cores, each running the whole chain plus the metrics nukleus.
fn topology() -> String {
    r#"
[reaktor]
pin = false
stream_capacity = 1048576

[[listener]]
name = "http"
address = "127.0.0.1:{PORT}"
chain = ["tcp", "http"]

[[core]]
nuklei = ["tcp", "http", "echo", "metrics"]

[[core]]
nuklei = ["tcp", "http", "echo", "metrics"]

[[http.route]]
path = "/"
to = "echo"

[[http.route]]
path = "/metrics"
to = "metrics"
"#
    .to_owned()
}

/// The stream directory of a running test server.
fn stream_dir(server: &Server) -> PathBuf {
    server
        .dir
        .0
        .join("streams")
        .join(format!("reaktor-{}", server.pid()))
}

/// A sample line: metric name, labels, value.
type Sample = (String, BTreeMap<String, String>, f64);

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses Prometheus text exposition strictly: every line is `# HELP`, `# TYPE` or
/// `name{label="value",...} value`; every family is TYPEd once, before its samples.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut typed: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut words = rest.splitn(3, ' ');
            let (keyword, name) = (words.next().unwrap(), words.next().expect("a name"));
            assert!(valid_name(name), "bad metric name in `{line}`");
            match keyword {
                "HELP" => assert!(words.next().is_some_and(|h| !h.is_empty()), "{line}"),
                "TYPE" => {
                    let kind = words.next().expect("a type");
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                        "{line}"
                    );
                    assert!(
                        typed.insert(name.to_owned(), kind.to_owned()).is_none(),
                        "family {name} typed twice"
                    );
                }
                other => panic!("unknown comment keyword {other} in `{line}`"),
            }
            continue;
        }
        assert!(!line.starts_with('#'), "bad comment `{line}`");
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: `{line}`"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in `{line}`"));
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels in `{line}`"));
                let mut labels = BTreeMap::new();
                let mut rest = body;
                while !rest.is_empty() {
                    let (key, after) = rest.split_once("=\"").expect("label=\"value\"");
                    assert!(valid_name(key), "bad label name in `{line}`");
                    // Values escape \ " and newline; find the closing quote.
                    let mut value = String::new();
                    let mut chars = after.char_indices();
                    let end = loop {
                        match chars.next() {
                            Some((_, '\\')) => value.push(chars.next().expect("escape").1),
                            Some((i, '"')) => break i,
                            Some((_, c)) => value.push(c),
                            None => panic!("unterminated label value in `{line}`"),
                        }
                    };
                    labels.insert(key.to_owned(), value);
                    rest = &after[end + 1..];
                    rest = rest.strip_prefix(',').unwrap_or(rest);
                }
                (name, labels)
            }
        };
        assert!(valid_name(name), "bad metric name in `{line}`");
        assert!(
            typed.contains_key(name),
            "sample of {name} before its # TYPE line"
        );
        samples.push((name.to_owned(), labels, value));
    }
    samples
}

fn sum(samples: &[Sample], name: &str) -> f64 {
    samples
        .iter()
        .filter(|(n, _, _)| n == name)
        .map(|(_, _, v)| v)
        .sum()
}

fn scrape(server: &Server) -> Vec<Sample> {
    let (code, body) = curl(&["-f", &server.url("/metrics")]);
    assert_eq!(code, 0, "scrape failed: {body}");
    parse_exposition(&body)
}

#[test]
fn metrics_are_prometheus_text_and_counters_increase_after_requests() {
    let server = Server::start(&topology());
    let before = scrape(&server);
    let instances: BTreeSet<&str> = before
        .iter()
        .filter(|(n, _, _)| n == "reaktor_nukleus_busy_seconds_total")
        .map(|(_, l, _)| l["instance"].as_str())
        .collect();
    assert_eq!(instances.len(), 8, "{instances:?}");
    assert!(instances.contains("core1.metrics1"));
    for family in [
        "reaktor_nukleus_polls_total",
        "reaktor_nukleus_frames_in_total",
        "reaktor_nukleus_bytes_out_total",
        "reaktor_stream_occupancy_bytes",
        "reaktor_stream_full_total",
        "reaktor_tcp_connections",
        "reaktor_http_requests_total",
    ] {
        assert!(before.iter().any(|(n, _, _)| n == family), "no {family}");
    }
    // Every stream buffer has its capacity, and none was ever full.
    assert!(before
        .iter()
        .filter(|(n, _, _)| n == "reaktor_stream_capacity_bytes")
        .all(|(_, _, v)| *v == 1048576.0));
    assert_eq!(sum(&before, "reaktor_stream_full_total"), 0.0);

    for _ in 0..20 {
        let (code, body) = curl(&[&server.url("/healthz")]);
        assert_eq!((code, body.as_str()), (0, "ok\n"));
    }
    // Gauges are published by each core at most once a second (and before it parks).
    let deadline = Instant::now() + Duration::from_secs(5);
    let after = loop {
        let after = scrape(&server);
        if sum(&after, "reaktor_http_requests_total")
            >= sum(&before, "reaktor_http_requests_total") + 20.0
            || Instant::now() > deadline
        {
            break after;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        sum(&after, "reaktor_http_requests_total")
            >= sum(&before, "reaktor_http_requests_total") + 20.0
    );
    // Each request is at least BEGIN + DATA from tcp and BEGIN + END to echo.
    for family in [
        "reaktor_nukleus_frames_in_total",
        "reaktor_nukleus_frames_out_total",
        "reaktor_stream_frames_total",
    ] {
        assert!(
            sum(&after, family) >= sum(&before, family) + 80.0,
            "{family}: {} -> {}",
            sum(&before, family),
            sum(&after, family)
        );
    }
    assert!(
        sum(&after, "reaktor_nukleus_busy_seconds_total")
            > sum(&before, "reaktor_nukleus_busy_seconds_total")
    );
    assert!(after
        .iter()
        .any(|(n, l, v)| n == "reaktor_nukleus_cost_per_frame_seconds"
            && l["kind"] == "http"
            && *v > 0.0));
    assert!(after
        .iter()
        .any(|(n, _, v)| n == "reaktor_metrics_scrapes_total" && *v >= 1.0));
    // Not found and method not allowed, like any application.
    let (_, code) = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &server.url("/metrics/x"),
    ]);
    assert_eq!(code, "404");
    let (_, code) = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "POST",
        "--data",
        "x",
        &server.url("/metrics"),
    ]);
    assert_eq!(code, "405");
    let (status, stderr) = server.stop();
    assert!(status.success(), "{stderr}");
}

#[test]
fn the_exposition_parser_rejects_malformed_lines() {
    for bad in [
        "reaktor_x 1",                                   // sample before TYPE
        "# TYPE reaktor_x counter\nreaktor_x",           // no value
        "# TYPE reaktor_x counter\nreaktor_x{a=\"1\" 2", // unclosed labels
        "# TYPE reaktor_x counter\nreaktor_x one",       // not a number
        "# TYPE reaktor_x counter\n# TYPE reaktor_x gauge",
    ] {
        assert!(
            std::panic::catch_unwind(|| parse_exposition(bad)).is_err(),
            "accepted {bad:?}"
        );
    }
    let ok = parse_exposition("# HELP a_b x y\n# TYPE a_b gauge\na_b{k=\"v\\\"w\",z=\"\"} 1.5\n");
    assert_eq!(ok[0].1["k"], "v\"w");
    assert_eq!(ok[0].2, 1.5);
}

#[test]
fn dump_in_a_second_process_sees_the_frames_of_a_request() {
    let server = Server::start(&topology());
    let mut dump = Command::new(BIN)
        .args(["dump", "--duration", "30", "--stream-dir"])
        .arg(stream_dir(&server))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start reaktor dump");
    let (lines_tx, lines) = mpsc::channel();
    let stdout = dump.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines_tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let next = |timeout: Duration| lines.recv_timeout(timeout);
    let attached = next(Duration::from_secs(10)).expect("dump prints its attach line");
    assert!(
        attached.starts_with("# attached to 24 stream buffers of reaktor"),
        "{attached}"
    );
    let (code, body) = curl(&["-H", "X-Trace: dump-me", &server.url("/healthz")]);
    assert_eq!((code, body.as_str()), (0, "ok\n"));
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut found = (false, false, false);
    while Instant::now() < deadline && found != (true, true, true) {
        let Ok(line) = next(Duration::from_millis(200)) else {
            continue;
        };
        if line.contains(" -> ") && line.contains("BEGIN") {
            if line.contains("http") && line.contains("request GET /healthz HTTP/1.1") {
                assert!(line.contains("X-Trace: dump-me"), "{line}");
                found.0 = true;
            }
            if line.contains("response 200") && line.contains("Content-Length: 3") {
                found.1 = true;
            }
        }
        if line.contains("DATA") && line.contains("\"GET /healthz HTTP/1.1\\r\\n") {
            found.2 = true;
        }
        seen.push(line);
    }
    dump.kill().unwrap();
    dump.wait().unwrap();
    assert_eq!(
        found,
        (true, true, true),
        "request head, response head, raw request bytes; dump printed:\n{}",
        seen.join("\n")
    );
    let (status, stderr) = server.stop();
    assert!(status.success(), "{stderr}");
}

#[test]
fn dump_stops_after_count_frames() {
    let server = Server::start(&topology());
    let child = Command::new(BIN)
        .args(["dump", "--count", "3", "--duration", "20", "--stream-dir"])
        .arg(stream_dir(&server))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..3 {
        curl(&[&server.url("/")]);
    }
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let frames = text.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(frames, 3, "{text}");
}

#[test]
fn top_once_prints_every_instance_and_stage() {
    let server = Server::start(&topology());
    for _ in 0..10 {
        curl(&[&server.url("/")]);
    }
    // The stats file is rewritten twice a second.
    std::thread::sleep(Duration::from_millis(600));
    let output = Command::new(BIN)
        .args(["top", "--once", "--interval", "0.3", "--stream-dir"])
        .arg(stream_dir(&server))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for instance in [
        "core0.tcp0",
        "core0.http0",
        "core0.echo0",
        "core0.metrics0",
        "core1.tcp1",
        "core1.http1",
        "core1.echo1",
        "core1.metrics1",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{instance} "))),
            "no row for {instance}:\n{text}"
        );
    }
    // Per stage, with the busy time per request measured so far (10 requests were served).
    for stage in ["tcp", "http", "echo"] {
        let row = text
            .lines()
            .find(|l| l.starts_with(&format!("{stage} ")))
            .unwrap_or_else(|| panic!("no stage row {stage}:\n{text}"));
        assert!(row.split_whitespace().nth(1) == Some("2"), "{row}");
        assert!(row.ends_with("us") || row.ends_with("ms"), "{row}");
    }
    // Bounded: 3 kind pairs x 4 instance pairs x 2 rings = 24 stream buffers, 10 listed.
    assert!(text.contains("(14 more stream buffers)"), "{text}");
    assert!(text.lines().count() < 40);
}

#[test]
fn top_and_dump_fail_clearly_without_a_reaktor() {
    let dir = TempDir::new("no-reaktor");
    for command in ["top", "dump"] {
        let output = Command::new(BIN)
            .args([command, "--stream-dir"])
            .arg(&dir.0)
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("no stream files in"), "{command}: {stderr}");
    }
}

fn plan(topology: &str) -> (bool, String) {
    let dir = TempDir::new("plan");
    let path = dir.0.join("topology.toml");
    std::fs::write(&path, topology.replace("{PORT}", "18099")).unwrap();
    let output = Command::new(BIN)
        .args(["plan", "--topology"])
        .arg(&path)
        .output()
        .unwrap();
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

fn tls_auto_topology(costs: &str) -> String {
    let certs = support::workspace().join("certs");
    format!(
        r#"
[reaktor]
placement = "auto"
cores = 2
pin = false

[[listener]]
name = "https"
address = "127.0.0.1:{{PORT}}"
chain = ["tcp", "tls", "http"]

[listener.tls]
cert = "{}"
key = "{}"

[[http.route]]
path = "/"
to = "echo"

{costs}
"#,
        certs.join("server.pem").display(),
        certs.join("server-key.pem").display()
    )
}

#[test]
fn plan_with_auto_placement_prints_each_decision_and_its_cost() {
    let (ok, text) = plan(&tls_auto_topology(
        "[cost]\ntcp = 1.0\ntls = 3.0\nhttp = 1.0\necho = 1.0\n",
    ));
    assert!(ok, "{text}");
    let line = |kind: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(&format!("{kind} ")))
            .unwrap_or_else(|| panic!("no decision for {kind}:\n{text}"))
            .to_owned()
    };
    assert!(line("tls").contains("split x2"), "{text}");
    assert!(line("tls").contains("cost 3 (declared) = 50%"), "{text}");
    for light in ["tcp", "http", "echo"] {
        assert!(line(light).contains("fused"), "{text}");
        assert!(line(light).contains("cost 1 (declared)"), "{text}");
    }
    assert!(text.contains("best split weighed"), "{text}");
    // The placement itself: the whole chain on both cores.
    assert!(
        text.contains("core 0 [unpinned]: core0.tcp0, core0.tls0, core0.http0, core0.echo0"),
        "{text}"
    );
    assert!(text.contains("core 1 [unpinned]: core1.tcp1, core1.tls1, core1.http1, core1.echo1"));

    // Without [cost] the built-in defaults are used, and say so.
    let (ok, text) = plan(&tls_auto_topology(""));
    assert!(ok, "{text}");
    assert!(text.contains("tls 1.3 (default)"), "{text}");
}

#[test]
fn auto_placement_rejects_nuklei_lists_and_unknown_costs() {
    let explicit_core =
        tls_auto_topology("[[core]]\nnuklei = [\"tcp\"]\n").replace("cores = 2\n", "");
    let (ok, text) = plan(&explicit_core);
    assert!(!ok);
    assert!(
        text.contains("the planner chooses each core's nuklei"),
        "{text}"
    );
    let (ok, text) = plan(&tls_auto_topology("[cost]\nquic = 2.0\n"));
    assert!(!ok);
    assert!(
        text.contains("[cost] `quic` is not a nukleus kind"),
        "{text}"
    );
    let (ok, text) = plan(&tls_auto_topology("[cost]\ntls = -1.0\n"));
    assert!(!ok);
    assert!(text.contains("must be a finite number >= 0"), "{text}");
    let explicit = support::default_topology().replace("pin = false", "pin = false\ncores = 2");
    let (ok, text) = plan(&explicit);
    assert!(!ok);
    assert!(
        text.contains("`cores` is only used with placement = \"auto\""),
        "{text}"
    );
}

#[test]
fn a_reaktor_with_auto_placement_serves_and_measures() {
    let topology = r#"
[reaktor]
placement = "auto"
cores = 2
pin = false
stream_capacity = 1048576

[[listener]]
name = "http"
address = "127.0.0.1:{PORT}"
chain = ["tcp", "http"]

[[http.route]]
path = "/"
to = "echo"

[[http.route]]
path = "/metrics"
to = "metrics"
"#;
    let server = Server::start(topology);
    for _ in 0..5 {
        let (code, body) = curl(&[&server.url("/healthz")]);
        assert_eq!((code, body.as_str()), (0, "ok\n"));
    }
    let samples = scrape(&server);
    let cores: BTreeSet<&str> = samples
        .iter()
        .filter(|(n, l, _)| n == "reaktor_nukleus_polls_total" && l["kind"] == "echo")
        .map(|(_, l, _)| l["core"].as_str())
        .collect();
    assert_eq!(
        cores,
        BTreeSet::from(["0", "1"]),
        "echo fused on both cores"
    );
    // `plan --measured` re-plans from the running reaktor's stats file.
    std::thread::sleep(Duration::from_millis(1200));
    let output = Command::new(BIN)
        .args(["plan", "--topology"])
        .arg(&server.topology)
        .arg("--measured-stream-dir")
        .arg(stream_dir(&server))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("re-planned with the cost reaktor"), "{text}");
    assert!(text.contains("(measured)"), "{text}");
    assert!(text.contains("[cost]\ntcp = "), "{text}");
    let (status, stderr) = server.stop();
    assert!(status.success(), "{stderr}");
}

/// `replan_interval_ms` on: every tcp instance reports whether it accepts, how many other
/// instances' sockets it took over and how many connections it accepted from them, and requests
/// keep working whichever core takes them. (Whether a core stops accepting depends on what else runs on its
/// cpu: `benches/replan.sh` measures that with busy loops on one cpu; the decision itself is
/// unit-tested in `reaktor::replan`, the take-over in `nukleus_tcp`'s steering test.)
#[test]
fn runtime_replan_runs_and_every_tcp_instance_reports_its_steering() {
    let server =
        Server::start(&topology().replace("pin = false", "pin = false\nreplan_interval_ms = 100"));
    for _ in 0..30 {
        let (code, body) = curl(&["-H", "Connection: close", &server.url("/healthz")]);
        assert_eq!((code, body.as_str()), (0, "ok\n"));
    }
    std::thread::sleep(Duration::from_millis(1200));
    let samples = scrape(&server);
    let accepting: Vec<f64> = samples
        .iter()
        .filter(|(n, _, _)| n == "reaktor_tcp_accepting")
        .map(|(_, _, v)| *v)
        .collect();
    assert_eq!(accepting.len(), 2, "one per tcp instance: {accepting:?}");
    assert!(accepting.iter().all(|v| *v == 0.0 || *v == 1.0));
    assert!(accepting.contains(&1.0), "at least one core always accepts");
    for family in [
        "reaktor_tcp_listeners_taken_over",
        "reaktor_tcp_connections_taken_over_total",
    ] {
        assert_eq!(
            samples.iter().filter(|(n, _, _)| n == family).count(),
            2,
            "one {family} per tcp instance"
        );
    }
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}
