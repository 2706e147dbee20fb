//! End-to-end: the tcp nukleus's io_uring transport (`[tcp] transport = "io_uring"`) serves
//! the same traffic as epoll, and where io_uring is refused (a seccomp filter, as in
//! containers) the reaktor falls back to epoll and says so in one log line. The whole http,
//! ws and switch suites also run on io_uring (scripts/test's second pass).

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::{curl, set_tcp_transport, Options, Server};

fn topology() -> String {
    r#"
[reaktor]
pin = false
stream_capacity = 4194304

[[listener]]
name = "http"
address = "127.0.0.1:{PORT}"
chain = ["tcp", "http"]

[[core]]
nuklei = ["tcp", "http", "echo", "metrics"]

[[http.route]]
path = "/echo"
to = "echo"

[[http.route]]
path = "/metrics"
to = "metrics"
"#
    .to_owned()
}

/// The tcp gauges of the metrics exposition, by name (`reaktor_tcp_...`), summed over labels.
fn tcp_gauges(server: &Server) -> HashMap<String, f64> {
    let (code, body) = curl(&["-sf", &server.url("/metrics")]);
    assert_eq!(code, 0, "scrape failed: {body}");
    let mut gauges = HashMap::new();
    for line in body.lines().filter(|l| l.starts_with("reaktor_tcp_")) {
        let name = line.split(['{', ' ']).next().unwrap().to_owned();
        let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        *gauges.entry(name).or_insert(0.0) += value;
    }
    gauges
}

/// Pipelined requests on one connection, a megabyte echoed, keep-alive reuse: the answers.
fn exchange(server: &Server) {
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let body = "x".repeat(1 << 20);
    let mut request = Vec::new();
    for _ in 0..3 {
        request
            .extend_from_slice(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    }
    request.extend_from_slice(
        format!(
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    stream.write_all(&request).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 4, "{}", &text[..200]);
    assert_eq!(text.matches("hello").count(), 3);
    assert!(text.ends_with(&body), "the megabyte comes back intact");
}

#[test]
fn io_uring_transport_serves_pipelined_and_large_requests() {
    let server = Server::start(&set_tcp_transport(&topology(), "io_uring"));
    exchange(&server);
    let gauges = tcp_gauges(&server);
    assert_eq!(
        gauges.get("reaktor_tcp_io_uring"),
        Some(&1.0),
        "the tcp nukleus runs on io_uring: {gauges:?}"
    );
    let (status, stderr) = server.stop();
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains("falling back to epoll"), "{stderr}");
}

#[test]
fn where_io_uring_is_refused_tcp_falls_back_to_epoll_with_one_log_line() {
    let server = Server::start_with(
        &set_tcp_transport(&topology(), "io_uring"),
        &Options {
            without_io_uring: true,
            ..Options::default()
        },
    );
    exchange(&server);
    assert_eq!(
        tcp_gauges(&server).get("reaktor_tcp_io_uring"),
        None,
        "epoll, not io_uring"
    );
    let (status, stderr) = server.stop();
    assert!(status.success(), "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("falling back to epoll"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "one line for the one tcp instance: {stderr}"
    );
    assert!(
        lines[0].contains("io_uring setup failed: Operation not permitted")
            && lines[0].contains("kernel.io_uring_disabled"),
        "the line says why: {}",
        lines[0]
    );
}
