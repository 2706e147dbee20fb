//! End-to-end specification of a tcp instance split by direction (`tcp.out` in a [[core]]
//! list): core 0 accepts and reads sockets and runs http and echo, core 1 writes the replies to
//! the sockets. To a client nothing changes: the real `reaktor` binary, real sockets, curl.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{curl, Server};

/// The default test topology, with tcp's socket writes on a second core and `/metrics`.
fn split_topology(extra: &str) -> String {
    let fused = "nuklei = [\"tcp\", \"http\", \"echo\"]\n";
    let default = support::default_topology();
    assert!(default.contains(fused), "{default}");
    let split = default.replace(
        fused,
        "nuklei = [\"tcp\", \"http\", \"echo\", \"metrics\"]\n\n[[core]]\nnuklei = [\"tcp.out\"]\n",
    );
    // The longest matching route prefix wins, so /metrics goes to metrics, the rest to echo.
    format!("{split}\n[[http.route]]\npath = \"/metrics\"\nto = \"metrics\"\n{extra}\n")
}

/// A gauge of one instance from `/metrics`, e.g. (`reaktor_tcp_out_connections`, `core1.tcp.out0`).
fn gauge(server: &Server, family: &str, instance: &str) -> Option<u64> {
    let (_, body) = curl(&[&server.url("/metrics")]);
    let prefix = format!("{family}{{instance=\"{instance}\"");
    body.lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
}

/// Waits (at most 10 s) until both halves have let go of every connection but the scraper's.
fn wait_until_released(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // The /metrics request itself holds one connection on each half while it is served.
        let input = gauge(server, "reaktor_tcp_connections", "core0.tcp0");
        let output = gauge(server, "reaktor_tcp_out_connections", "core1.tcp.out0");
        if input.is_some_and(|n| n <= 1) && output.is_some_and(|n| n <= 1) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "connections not released: input half {input:?}, output half {output:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn plan_shows_which_core_reads_and_which_writes() {
    let dir = support::TempDir::new("split-plan");
    let path = dir.0.join("split.toml");
    std::fs::write(&path, split_topology("").replace("{PORT}", "1")).unwrap();
    let output = std::process::Command::new(support::BIN)
        .args(["plan", "--topology"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("core 1 [unpinned]: core1.tcp.out0"), "{text}");
    assert!(
        text.contains("core0.tcp0 split by direction: it accepts and reads sockets on core 0, core1.tcp.out0 writes them on core 1"),
        "{text}"
    );
    assert!(
        text.contains("core0.tcp0 -> core0.http0 (same core), back read on core 1 (cross core)"),
        "{text}"
    );
}

#[test]
fn keep_alive_requests_and_a_large_echo_are_served_intact() {
    let server = Server::start(&split_topology("[http]\nmax_body_bytes = 67108864\n"));
    let output = std::process::Command::new("curl")
        .args([
            "-sS",
            "-v",
            "--max-time",
            "20",
            &server.url("/"),
            &server.url("/healthz"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "Hello, World!ok\n");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.matches("Connected to").count(), 1, "{stderr}");

    // 24 MiB, far beyond every window, in both directions at once: flow control crosses
    // the halves (windows for the upload come back through the output half, the download's
    // through the input half).
    let body: Vec<u8> = (0..24u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let dir = support::TempDir::new("split-echo");
    let (input, echoed) = (dir.0.join("in.bin"), dir.0.join("out.bin"));
    std::fs::write(&input, &body).unwrap();
    let (code, _) = curl(&[
        "-X",
        "POST",
        "--data-binary",
        &format!("@{}", input.display()),
        "-o",
        echoed.to_str().unwrap(),
        &server.url("/echo"),
    ]);
    assert_eq!(code, 0);
    assert!(std::fs::read(&echoed).unwrap() == body, "echo differs");
    wait_until_released(&server);
}

#[test]
fn pipelined_requests_are_answered_in_order_and_close_ends_the_connection() {
    let server = Server::start(&split_topology(""));
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut burst = Vec::new();
    for i in 0..300 {
        let path = ["/", "/healthz", "/nope"][i % 3];
        burst.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    }
    burst.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(&burst).unwrap();
    let mut answer = Vec::new();
    // The server closes after the last response: read to EOF.
    stream.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer);
    let statuses: Vec<&str> = text
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| &text[at + 9..at + 12])
        .collect();
    assert_eq!(statuses.len(), 301);
    for (i, status) in statuses.iter().take(300).enumerate() {
        assert_eq!(*status, ["200", "200", "404"][i % 3], "response {i}");
    }
    assert!(text.ends_with("ok\n"), "{}", &text[text.len() - 40..]);
    wait_until_released(&server);
}

#[test]
fn many_clients_and_clients_that_vanish_leave_nothing_behind() {
    let server = Server::start(&split_topology(""));
    // Clients that vanish mid-request, mid-upload or right after sending.
    for i in 0..60 {
        let mut s = TcpStream::connect(server.addr()).unwrap();
        let partial: &[u8] = match i % 3 {
            0 => b"GET / HTT",
            1 => b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc",
            _ => b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        };
        s.write_all(partial).unwrap();
        if i % 2 == 0 {
            // An abortive close (RST) instead of a FIN.
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
    }
    // Then 200 concurrent keep-alive clients, each answered.
    let mut clients: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(server.addr()).unwrap())
        .collect();
    for c in &mut clients {
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    }
    for c in &mut clients {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 512];
        let mut got = Vec::new();
        while !got.ends_with(b"Hello, World!") {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
    }
    drop(clients);
    wait_until_released(&server);
    let (status, stderr) = server.stop();
    assert!(status.success(), "{stderr}");
}

#[test]
fn a_client_that_never_reads_is_cut_off_by_the_output_half_and_memory_stays_bounded() {
    let server = Server::start(&split_topology(
        "[tcp]\nwrite_timeout_ms = 500\n[http]\nmax_body_bytes = 1073741824\n",
    ));
    let before = support::private_rss_kib(server.pid());
    let (sent, error) = support::upload_without_reading(&server);
    assert!(
        matches!(
            error.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        ),
        "{error}"
    );
    assert!(
        sent < 64 << 20,
        "the server kept reading {sent} bytes from a client that never reads"
    );
    let grown = support::private_rss_kib(server.pid()).saturating_sub(before);
    assert!(grown < 8 * 1024, "server private RSS grew by {grown} KiB");
    assert_eq!(
        gauge(
            &server,
            "reaktor_tcp_out_write_timeouts_total",
            "core1.tcp.out0"
        ),
        Some(1),
        "the output half timed the write out"
    );
    assert_eq!(curl(&[&server.url("/healthz")]).1, "ok\n");
    wait_until_released(&server);
}

#[test]
fn auto_placement_splits_tcp_by_direction_for_a_single_connection_and_serves() {
    let server = Server::start(
        r#"
[reaktor]
pin = false
stream_capacity = 4194304
placement = "auto"
cores = 2
connections = 1

[[listener]]
name = "http"
address = "127.0.0.1:{PORT}"
chain = ["tcp", "http"]

[[http.route]]
path = "/"
to = "echo"
"#,
    );
    let (code, body) = curl(&[&server.url("/"), &server.url("/healthz")]);
    assert_eq!((code, body.as_str()), (0, "Hello, World!ok\n"));
    // The running reaktor has the planner's placement: its stats file lists the instances.
    let stats = server
        .dir
        .0
        .join("streams")
        .join(format!("reaktor-{}", server.pid()))
        .join("stats");
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = std::fs::read_to_string(&stats).unwrap_or_default();
        if text.contains("core1.tcp.out0") || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(text.contains("core0.tcp0"), "{text}");
    assert!(text.contains("core1.tcp.out0"), "{text}");
    let (status, stderr) = server.stop();
    assert!(status.success(), "{stderr}");
}
