//! Log lines of the real binary under floods and connection events: repeated lines are
//! rate-limited per cause with a count, connection lines name the client's address, lease
//! expiries are logged at info.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nukleus_tls::testing::TestPki;
use support::{curl, Options, Server};

/// One client failing TLS handshakes in a loop (~190 WARN lines a second before): with
/// `log_burst = 5` per `log_window_ms = 500`, the first five lines of each window are
/// written, each naming the client's address, and the rest are reported as a count.
#[test]
fn a_tls_handshake_flood_is_rate_limited_and_names_the_client() {
    let pki = TestPki::generate().expect("test PKI");
    let server = Server::start(&support::tls_topology(
        &pki.server_cert,
        &pki.server_key,
        "log_burst = 5\nlog_window_ms = 500",
        "",
    ));
    const FAILURES: usize = 200;
    let started = Instant::now();
    for _ in 0..FAILURES {
        let reply = support::raw_exchange(server.addr(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(reply.first(), Some(&0x15), "a fatal alert, then close");
    }
    // The server's windows start with its first line, not with the test: one more may begin.
    let windows = started.elapsed().as_millis() as usize / 500 + 2;
    let (_, stderr) = server.stop();
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("TLS handshake failed") && !l.contains("suppressed"))
        .collect();
    assert!(
        !lines.is_empty() && lines.len() <= 5 * windows,
        "{} lines in {windows} window(s): {stderr}",
        lines.len()
    );
    assert!(
        lines.iter().all(|l| l.contains("remote=127.0.0.1:")),
        "{stderr}"
    );
    let suppressed: usize = stderr
        .lines()
        .filter(|l| l.contains("similar log lines suppressed"))
        .map(|l| {
            let count = l.split("suppressed=").nth(1).expect("a count");
            count
                .split_whitespace()
                .next()
                .unwrap()
                .parse::<usize>()
                .unwrap()
        })
        .sum();
    assert_eq!(
        lines.len() + suppressed,
        FAILURES,
        "every failure is either written or counted: {stderr}"
    );
}

/// A receiving connection whose node stops reletting is closed, and the operator sees why
/// at the default level.
#[test]
fn a_lease_expiry_is_logged_at_info() {
    let server = Server::start_with(
        &format!(
            "{}\n{}",
            support::default_topology(),
            r#"
[[core]]
nuklei = ["switch"]

[[http.route]]
path = "/v1/"
to = "switch"

[switch]
lease_ms = 300

[[switch.token]]
token = "tok"
nodes = ["alice"]
"#
        ),
        &Options {
            log: Some("info".into()),
            ..Options::default()
        },
    );
    // An SSE receiving connection that never relets.
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream
        .write_all(
            b"GET /v1/nodes/alice/messages HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\
              Authorization: Bearer tok\r\n\r\n",
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(curl(&[&server.url("/healthz")]).1, "ok\n");
    drop(stream);
    let (_, stderr) = server.stop();
    let line = stderr
        .lines()
        .find(|l| l.contains("closing receiving connection"))
        .unwrap_or_else(|| panic!("no line about the expiry: {stderr}"));
    assert!(line.contains(" INFO "), "{line}");
    assert!(
        line.contains("lease expired") && line.contains("node=alice"),
        "{line}"
    );
}
