//! A bad topology file is rejected at start with the file, the line and the problem.

mod support;

use std::process::Command;

fn plan(topology: &str) -> (i32, String, String) {
    let dir = support::TempDir::new("topology");
    let path = dir.0.join("bad.toml");
    std::fs::write(&path, topology).unwrap();
    let output = Command::new(support::BIN)
        .args(["plan", "--topology"])
        .arg(&path)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn unknown_nukleus_kind_names_the_line() {
    let (code, _, stderr) =
        plan("[[core]]\nnuklei = [\"tcp\"]\n\n[[core]]\nnuklei = [\"tcp\", \"htp\"]\n");
    assert_eq!(code, 2);
    assert!(stderr.contains("bad.toml:5:"), "{stderr}");
    assert!(stderr.contains("unknown nukleus kind `htp`"), "{stderr}");
}

#[test]
fn syntax_errors_name_the_line() {
    let (code, _, stderr) = plan("[[core]]\nnuklei = [\"tcp\"\n");
    assert_eq!(code, 2);
    assert!(
        stderr.contains("bad.toml:2:") || stderr.contains("bad.toml:3:"),
        "{stderr}"
    );
}

#[test]
fn unknown_keys_are_rejected() {
    let (code, _, stderr) = plan("[[core]]\nnuklei = [\"tcp\"]\ncpus = 3\n");
    assert_eq!(code, 2);
    assert!(
        stderr.contains("bad.toml:3:") && stderr.contains("unknown field `cpus`"),
        "{stderr}"
    );
}

#[test]
fn bad_listener_address_and_unplaced_chain_are_explained() {
    let (code, _, stderr) = plan("[[listener]]\nname = \"a\"\naddress = \"localhost\"\nchain = [\"tcp\", \"http\"]\n[[core]]\nnuklei = [\"tcp\", \"http\"]\n");
    assert_eq!(code, 2);
    assert!(
        stderr.contains("bad.toml:3:") && stderr.contains("not an IP address with a port"),
        "{stderr}"
    );
    let (code, _, stderr) = plan("[[listener]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\nchain = [\"tcp\", \"http\"]\n[[core]]\nnuklei = [\"tcp\"]\n");
    assert_eq!(code, 2);
    assert!(
        stderr.contains("bad.toml:4:") && stderr.contains("`http` is not placed"),
        "{stderr}"
    );
}

#[test]
fn missing_file_is_reported() {
    let output = Command::new(support::BIN)
        .args(["plan", "--topology", "/nonexistent/t.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr)
        .contains("cannot read topology file /nonexistent/t.toml"));
}

#[test]
fn plan_prints_the_placement_of_the_default_topology() {
    let output = Command::new(support::BIN)
        .args(["plan", "--topology", "examples/default.toml"])
        .current_dir(support::workspace())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("core 0 [cpu 0]: core0.tcp0, core0.http0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("core0.tcp0 <-> core0.http0 (same core)"),
        "{stdout}"
    );
}

#[test]
fn a_replan_interval_out_of_range_is_explained() {
    let (code, _, stderr) =
        plan("[reaktor]\nreplan_interval_ms = 20\n[[core]]\nnuklei = [\"tcp\"]\n");
    assert_eq!(code, 2);
    assert!(
        stderr.contains("bad.toml:2:")
            && stderr.contains("replan_interval_ms 20 must be 0 (off) or between 100 and 3600000"),
        "{stderr}"
    );
}

#[test]
fn a_tcp_out_needs_a_tcp_instance_on_another_core() {
    const LISTENER: &str = "[[listener]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\nchain = [\"tcp\", \"http\"]\n[[http.route]]\npath = \"/\"\nto = \"echo\"\n";
    // Two tcp.out, one tcp: the second has nothing to pair with.
    let (code, _, stderr) = plan(&format!("{LISTENER}[[core]]\nnuklei = [\"tcp\", \"http\", \"echo\"]\n[[core]]\nnuklei = [\"tcp.out\"]\n[[core]]\nnuklei = [\"tcp.out\"]\n"));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("bad.toml:13:")
            && stderr.contains("`tcp.out` number 2 has no tcp instance to pair with"),
        "{stderr}"
    );
    // Paired with the tcp on its own core.
    let (code, _, stderr) = plan(&format!(
        "{LISTENER}[[core]]\nnuklei = [\"tcp\", \"http\", \"echo\", \"tcp.out\"]\n"
    ));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("bad.toml:9:") && stderr.contains("only helps across cores"),
        "{stderr}"
    );
    // Not a chain member.
    let (code, _, stderr) = plan("[[listener]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\nchain = [\"tcp\", \"tcp.out\"]\n[[core]]\nnuklei = [\"tcp\"]\n[[core]]\nnuklei = [\"tcp.out\"]\n");
    assert_eq!(code, 2);
    assert!(
        stderr.contains("bad.toml:4:")
            && stderr.contains("goes in a [[core]] list, not in a chain"),
        "{stderr}"
    );
}

#[test]
fn the_planners_connections_hint_must_be_positive() {
    let (code, _, stderr) = plan("[reaktor]\nplacement = \"auto\"\ncores = 2\nconnections = 0\n[[listener]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\nchain = [\"tcp\", \"http\"]\n[[http.route]]\npath = \"/\"\nto = \"echo\"\n");
    assert_eq!(code, 2);
    assert!(
        stderr.contains("bad.toml:4:") && stderr.contains("connections 0 must be between 1"),
        "{stderr}"
    );
}

/// Each bounded key of the hardening limits, at and just beyond its edges: the edge values
/// are accepted, the ones beyond are rejected with the key's line and its range.
#[test]
fn hardening_limits_are_checked_at_their_edges() {
    const BASE: &str = "[[core]]\nnuklei = [\"tcp\"]\n";
    // (section, key, lowest accepted, highest accepted, expected message)
    let keys: &[(&str, &str, u64, u64, &str)] = &[
        (
            "tcp",
            "accept_retry_ms",
            1,
            60_000,
            "must be between 1 and 60000",
        ),
        (
            "reaktor",
            "log_burst",
            0,
            1_000_000,
            "must be between 0 and 1000000",
        ),
        (
            "reaktor",
            "log_window_ms",
            100,
            3_600_000,
            "must be between 100 and 3600000",
        ),
        (
            "reaktor",
            "drain_timeout_ms",
            0,
            3_600_000,
            "must be between 0 and 3600000",
        ),
        (
            "http",
            "max_buffered_bytes",
            65536,
            1 << 30,
            "must be between window (65536) and 1073741824",
        ),
    ];
    for &(section, key, low, high, message) in keys {
        for ok in [low, high] {
            let (code, _, stderr) = plan(&format!("{BASE}[{section}]\n{key} = {ok}\n"));
            assert_eq!(code, 0, "{key} = {ok}: {stderr}");
        }
        for bad in low.checked_sub(1).into_iter().chain([high + 1]) {
            let (code, _, stderr) = plan(&format!("{BASE}[{section}]\n{key} = {bad}\n"));
            assert_eq!(code, 2, "{key} = {bad}");
            assert!(
                stderr.contains("bad.toml:4:") && stderr.contains(message),
                "{key} = {bad}: {stderr}"
            );
        }
    }
}

/// `[ws] idle_timeout_ms`: 0 (never), or 100 ms to a day; its line and range otherwise.
#[test]
fn the_websocket_idle_timeout_is_zero_or_between_100_ms_and_a_day() {
    const BASE: &str = "[[core]]\nnuklei = [\"tcp\"]\n";
    for ok in [0, 100, 86_400_000] {
        let (code, _, stderr) = plan(&format!("{BASE}[ws]\nidle_timeout_ms = {ok}\n"));
        assert_eq!(code, 0, "{ok}: {stderr}");
    }
    for bad in [1, 99, 86_400_001] {
        let (code, _, stderr) = plan(&format!("{BASE}[ws]\nidle_timeout_ms = {bad}\n"));
        assert_eq!(code, 2, "{bad}");
        assert!(
            stderr.contains("bad.toml:4:")
                && stderr.contains(&format!(
                    "[ws] idle_timeout_ms {bad} must be 0 (never) or between 100 and 86400000 (one day)"
                )),
            "{bad}: {stderr}"
        );
    }
}

/// 65536 was accepted, and a 64 KiB POST then got a RST: one stream's full window (64 KiB
/// in DATA frames with their headers) does not fit in a 64 KiB buffer, nor does a 8 KiB
/// request head fit in one record (an eighth of it).
#[test]
fn a_stream_capacity_too_small_for_the_windows_and_heads_names_each_and_what_fits() {
    let topology = |extra: &str| {
        format!(
            "[reaktor]\nstream_capacity = 65536\n{extra}\n[[listener]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\nchain = [\"tcp\", \"http\"]\n[[core]]\nnuklei = [\"tcp\", \"http\", \"echo\"]\n[[http.route]]\npath = \"/\"\nto = \"echo\"\n"
        )
    };
    let (code, _, stderr) = plan(&topology(""));
    assert_eq!(code, 2, "{stderr}");
    for expected in [
        "bad.toml:2:",
        "stream_capacity 65536 cannot carry the configured windows and frame sizes",
        "[tcp] window = 65536 needs 74367 bytes in one buffer",
        "[http] window = 65536 needs",
        "[http] max_header_bytes = 8192 needs records of 8256 bytes",
        "echo's request window (65536, fixed)",
        "use stream_capacity = 131072 or more",
    ] {
        assert!(stderr.contains(expected), "no `{expected}` in {stderr}");
    }
    // Smaller windows and heads fit, except echo's fixed window.
    let (code, _, stderr) = plan(&topology(
        "[tcp]\nwindow = 16384\n[http]\nwindow = 16384\nmax_header_bytes = 4096\n",
    ));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("echo's request window") && !stderr.contains("[tcp] window"),
        "{stderr}"
    );
    let (code, stdout, stderr) = plan(&topology("").replace("65536", "131072"));
    assert_eq!(code, 0, "{stdout}{stderr}");
}

const CLUSTER: &str = "[cluster]\nid = 1\nstate_dir = \"s\"\n[[cluster.member]]\nid = 1\npeer = \"127.0.0.1:7101\"\napi = \"http://127.0.0.1:8081\"\n[[cluster.member]]\nid = 2\npeer = \"127.0.0.1:7102\"\napi = \"http://127.0.0.1:8082\"\n[[cluster.member]]\nid = 3\npeer = \"127.0.0.1:7103\"\napi = \"http://127.0.0.1:8083\"\n";

#[test]
fn cluster_sections_are_checked_with_the_line_and_what_to_do() {
    let core = "[[core]]\nnuklei = [\"tcp\"]\n";
    let (code, stdout, stderr) = plan(&format!("{core}{CLUSTER}"));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("raft0"),
        "the election gets a core of its own:\n{stdout}"
    );
    let cases = [
        (
            CLUSTER.replace("id = 1\nstate", "id = 4\nstate"),
            2,
            "not among the members",
        ),
        (
            CLUSTER.replace("state_dir = \"s\"\n", "state_dir = \"s\"\nlease_ms = 400\n"),
            4,
            "shorten the lease",
        ),
        (
            CLUSTER.replace("\"http://127.0.0.1:8082\"", "\"127.0.0.1:8082\""),
            11,
            "http://",
        ),
        (
            CLUSTER.replace("127.0.0.1:7103", "127.0.0.1:7102"),
            14,
            "listed twice",
        ),
        (
            CLUSTER.replace(
                "state_dir = \"s\"\n",
                "state_dir = \"s\"\nheartbeat_ms = 400\n",
            ),
            4,
            "longer than the heartbeat",
        ),
        (
            CLUSTER.replace(
                "state_dir = \"s\"\n",
                "state_dir = \"s\"\nelection_priority = 120\n",
            ),
            4,
            "SCHED_FIFO priority 1..=99",
        ),
    ];
    for (cluster, line, message) in cases {
        let (code, _, stderr) = plan(&format!("{core}{cluster}"));
        assert_eq!(code, 2, "{cluster}");
        let at = format!("bad.toml:{}:", line + 2);
        assert!(
            stderr.contains(&at) && stderr.contains(message),
            "want {at} {message}: {stderr}"
        );
    }
    let (code, _, stderr) = plan("[[core]]\nnuklei = [\"tcp\", \"raft\"]\n");
    assert_eq!(code, 2);
    assert!(stderr.contains("add a [cluster] section"), "{stderr}");
    let (code, _, stderr) = plan(&format!(
        "[[core]]\nnuklei = [\"tcp\", \"raft\"]\n{CLUSTER}"
    ));
    assert_eq!(code, 2);
    assert!(stderr.contains("runs alone on its core"), "{stderr}");
}

/// `max_memory_bytes`: 0 (a share of the machine's memory) or at least 16 MiB.
#[test]
fn the_memory_limit_is_zero_or_at_least_16_mib() {
    const BASE: &str = "[[core]]\nnuklei = [\"tcp\"]\n[reaktor]\n";
    for ok in [0, 16 << 20] {
        let (code, _, stderr) = plan(&format!("{BASE}max_memory_bytes = {ok}\n"));
        assert_eq!(code, 0, "{ok}: {stderr}");
    }
    let (code, _, stderr) = plan(&format!("{BASE}max_memory_bytes = {}\n", (16 << 20) - 1));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("bad.toml:4:") && stderr.contains("or at least 16777216"),
        "{stderr}"
    );
}

/// Found by fuzzing (fuzz/corpus/topology/regress-max-header-bytes-overflow): twice a huge
/// max_header_bytes overflowed (a panic in a debug build; in a release build it wrapped and
/// the topology passed).
#[test]
fn a_max_header_bytes_beyond_any_window_is_refused_not_wrapped() {
    for huge in [
        "18446744073709551615",
        "10657468149606237979",
        "9223372036854775808",
    ] {
        let (code, _, stderr) = plan(&format!(
            "[[core]]\nnuklei = [\"tcp\", \"http\"]\n[http]\nmax_header_bytes = {huge}\n"
        ));
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.contains("must be at least twice max_header_bytes")
                && !stderr.contains("panicked"),
            "{stderr}"
        );
    }
}

#[test]
fn every_example_topology_is_accepted() {
    let root = support::workspace();
    let mut files = Vec::new();
    for dir in [root.join("examples"), root.join("examples/cluster")] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                files.push(path);
            }
        }
    }
    assert!(files.len() > 3, "{files:?}");
    for path in files {
        let output = Command::new(support::BIN)
            .args(["plan", "--topology"])
            .arg(&path)
            .current_dir(&root)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
