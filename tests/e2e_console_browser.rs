//! The operator console in a real browser (Debian's Chromium, driven by playwright-core from
//! `tests/browser`, both installed by scripts/setup-test-deps.sh): the real reaktor is
//! started, `tests/browser/console.mjs` opens `/console` without and with the admin token,
//! compares the drawn topology with `reaktor plan --json`, waits for live ticks, loads the
//! server (HTTP and the switch) and sees the numbers move, clicks, runs what-ifs, and saves
//! screenshots under `target/tmp/console-browser/`.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{workspace, Server, BIN};

/// tests/console_topology.toml with this test's console settings and tokens.
fn topology() -> String {
    format!(
        "{}{}",
        include_str!("console_topology.toml"),
        r#"
[console]
interval_ms = 500

[[switch.token]]
token = "browser-admin"
admin = true

[[switch.token]]
token = "browser-node"
nodes = ["n1"]
"#
    )
}

/// Where the screenshots go: the test's output directory under target/.
fn out_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-browser");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_console_in_chromium_draws_the_plan_follows_the_load_and_plans_what_ifs() {
    let browser_dir = workspace().join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir()
            && std::path::Path::new("/usr/bin/chromium").exists(),
        "the browser test needs Chromium and tests/browser/node_modules: run scripts/setup-test-deps.sh"
    );
    let server = Server::start(&topology());
    let out = out_dir();
    let plan = Command::new(BIN)
        .args(["plan", "--json", "--topology"])
        .arg(&server.topology)
        .output()
        .unwrap();
    assert!(plan.status.success());
    let plan_file = out.join("plan.json");
    std::fs::write(&plan_file, &plan.stdout).unwrap();
    let mut child = Command::new("node")
        .arg(browser_dir.join("console.mjs"))
        .env("CONSOLE_BASE", server.url(""))
        .env("CONSOLE_TOKEN", "browser-admin")
        .env("NODE_TOKEN", "browser-node")
        .env("PLAN_JSON", &plan_file)
        .env("OUT_DIR", &out)
        .current_dir(&browser_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("node is installed (scripts/setup-test-deps.sh)");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(150) {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        status.success(),
        "the browser test failed ({status}, screenshots in {}):\n{stdout}\n{stderr}",
        out.display()
    );
    let png = std::fs::read(out.join("console.png")).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a real picture"
    );
    let (_, stderr) = server.stop();
    assert!(!stderr.contains("panicked"), "{stderr}");
}
