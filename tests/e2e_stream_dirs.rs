//! End-to-end specification of stream directories over a process's life: what `kill -9`
//! leaves, what `top` and `dump` say about it, and who removes it.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{curl, default_topology, Server, TempDir, BIN};

fn dir_of(root: &Path, pid: u32) -> PathBuf {
    root.join(format!("reaktor-{pid}"))
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
