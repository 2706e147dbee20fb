//! End-to-end specification of stream directories over a process's life: what `kill -9`
//! leaves, what `top` and `dump` say about it, and who removes it; and stream files on a
//! filesystem too small for them (a 64 MiB tmpfs, Docker's default /dev/shm).
//!
//! The small tmpfs is mounted in a private mount namespace (`unshare --user --map-root-user
//! --mount`, no privileges needed where user namespaces are allowed), so it exists only for
//! the reaktor under test and vanishes with it.

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{curl, default_topology, free_port, Server, TempDir, BIN};

fn dir_of(root: &Path, pid: u32) -> PathBuf {
    root.join(format!("reaktor-{pid}"))
}

/// POSTs the file at `body` to `url` with curl: (exit code, "status bytes-received").
fn post_file(url: &str, body: &Path) -> (i32, String) {
    curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{size_download}",
        "--data-binary",
        &format!("@{}", body.display()),
        url,
    ])
}

fn run(args: &[&str], root: &Path) -> (bool, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .arg("--stream-root")
        .arg(root)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_killed_reaktor_is_reported_gone_and_its_directory_removed_by_the_next_start() {
    let root = TempDir::new("stream-root");
    let killed = Server::start_in(&default_topology(), Some(&root.0));
    let live = Server::start_in(&default_topology(), Some(&root.0));
    let (killed_pid, live_pid) = (killed.pid(), live.pid());
    assert_eq!(curl(&[&killed.url("/healthz")]).1, "ok\n");
    killed.kill();
    let left = dir_of(&root.0, killed_pid);
    assert!(left.join("stats").exists(), "kill -9 leaves the directory");

    // top and dump say that the process is gone instead of showing it as up.
    let pid = killed_pid.to_string();
    let (ok, stdout, stderr) = run(
        &["top", "--once", "--interval", "0.1", "--pid", &pid],
        &root.0,
    );
    assert!(!ok, "top on a dead reaktor succeeded: {stdout}");
    assert!(
        stderr.contains(&format!("reaktor {pid} is not running")),
        "{stderr}"
    );
    let (ok, _, stderr) = run(&["dump", "--count", "1", "--pid", &pid], &root.0);
    assert!(!ok && stderr.contains("is not running"), "{stderr}");
    // With --backlog, dump prints what the dead process left and stops by itself.
    let (ok, stdout, stderr) = run(
        &["dump", "--backlog", "--duration", "20", "--pid", &pid],
        &root.0,
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(&format!("# reaktor {pid} is not running")),
        "{stdout}"
    );
    // A live reaktor is still shown.
    let (ok, stdout, stderr) = run(
        &[
            "top",
            "--once",
            "--interval",
            "0.1",
            "--pid",
            &live_pid.to_string(),
        ],
        &root.0,
    );
    assert!(ok && stdout.contains("http"), "{stdout}\n{stderr}");

    // The next reaktor in the same stream root removes the dead one's directory, and only it.
    let next = Server::start_in(&default_topology(), Some(&root.0));
    assert!(
        !left.exists(),
        "the dead reaktor's directory is still there"
    );
    assert!(dir_of(&root.0, live_pid).join("stats").exists());
    assert!(dir_of(&root.0, next.pid()).join("owner").exists());
    assert_eq!(curl(&[&live.url("/healthz")]).1, "ok\n");
    for server in [live, next] {
        let (status, log) = server.stop();
        assert!(status.success(), "{log}");
    }
    let remaining: Vec<_> = std::fs::read_dir(&root.0).unwrap().flatten().collect();
    assert!(remaining.is_empty(), "{remaining:?}");
}

/// Starts `reaktor run` with `topology` (`{PORT}` replaced by `port`) and its streams on a
/// tmpfs of `size` mounted for it alone.
fn run_on_small_tmpfs(size: &str, topology: &str, port: u16, dir: &TempDir) -> Child {
    let path = dir.0.join("topology.toml");
    std::fs::write(&path, topology.replace("{PORT}", &port.to_string())).unwrap();
    let shm = dir.0.join("shm");
    std::fs::create_dir_all(&shm).unwrap();
    Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg(format!(
            r#"mount -t tmpfs -o size={size} tmpfs "$0" || exit 97; exec "$@""#
        ))
        .arg(&shm)
        .args([BIN, "run", "--topology"])
        .arg(&path)
        .arg("--stream-dir")
        .arg(&shm)
        .env("REAKTOR_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare (util-linux) runs")
}

/// Two fused cores of tcp, http and echo with `capacity`-byte stream buffers.
fn two_core_topology(capacity: usize) -> String {
    format!(
        r#"
[reaktor]
pin = false
stream_capacity = {capacity}

[[listener]]
name = "http"
address = "127.0.0.1:{{PORT}}"
chain = ["tcp", "http"]

[[core]]
nuklei = ["tcp", "http", "echo"]

[[core]]
nuklei = ["tcp", "http", "echo"]

[[http.route]]
path = "/"
to = "echo"
"#
    )
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn streams_larger_than_their_tmpfs_are_refused_at_start_with_what_they_need() {
    // 2 cores: tcp-http and http-echo on each core and across them: 16 files of 16 MiB.
    // Before: the reaktor started on sparse files and died of SIGBUS, without a log line,
    // once traffic had filled 64 MiB of rings.
    let dir = TempDir::new("small-shm");
    let port = free_port();
    let mut child = run_on_small_tmpfs("64m", &two_core_topology(16 << 20), port, &dir);
    let status = wait_exit(&mut child, Duration::from_secs(20));
    let mut stderr = String::new();
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = status.unwrap_or_else(|| panic!("the reaktor kept running: {stderr}"));
    assert_ne!(status.code(), Some(97), "cannot mount a tmpfs: {stderr}");
    assert!(!status.success(), "{stderr}");
    let shm = dir.0.join("shm");
    for expected in [
        format!("not enough space for the stream files in {}", shm.display()),
        "64.0 MiB (".to_owned(),
        " free, 256.0 MiB (268445696 bytes) needed for 16 stream files of 16.0 MiB".to_owned(),
        "[reaktor] stream_capacity = 16777216".to_owned(),
    ] {
        assert!(stderr.contains(&expected), "no `{expected}` in: {stderr}");
    }
}

#[test]
fn streams_that_fit_a_small_tmpfs_carry_traffic_that_fills_every_ring() {
    // 16 files of 1 MiB reserved on a 20 MiB tmpfs; 8 MiB bodies wrap every ring many times.
    let dir = TempDir::new("fitting-shm");
    let port = free_port();
    let mut child = run_on_small_tmpfs("20m", &two_core_topology(1 << 20), port, &dir);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            panic!("reaktor exited with {status}: {stderr}");
        }
        assert!(
            Instant::now() < deadline,
            "reaktor did not accept connections"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let body = dir.0.join("body");
    std::fs::write(&body, vec![b'x'; 8 << 20]).unwrap();
    let url = format!("http://127.0.0.1:{port}/echo");
    for _ in 0..4 {
        assert_eq!(post_file(&url, &body), (0, "200 8388608".into()));
    }
    assert!(child.try_wait().unwrap().is_none(), "the reaktor died");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = wait_exit(&mut child, Duration::from_secs(10)).expect("stops on SIGTERM");
    assert!(status.success(), "{status}");
}

#[test]
fn the_smallest_stream_capacity_accepted_carries_full_windows() {
    // 131072 is what the check asks for with the default windows (65536 is refused): a body
    // of many windows passes through tcp, http and echo and back without a reset.
    let server = Server::start(&default_topology().replace("4194304", "131072"));
    let dir = TempDir::new("small-rings");
    let body = dir.0.join("body");
    std::fs::write(&body, vec![b'y'; 1 << 20]).unwrap();
    for _ in 0..3 {
        assert_eq!(
            post_file(&server.url("/echo"), &body),
            (0, "200 1048576".into())
        );
    }
    let (status, log) = server.stop();
    assert!(status.success() && !log.contains("full"), "{log}");
}
