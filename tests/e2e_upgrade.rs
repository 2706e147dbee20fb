//! Requests that carry `Upgrade` to routes that do not upgrade, against the real binary with
//! real clients: they are ordinary requests (RFC 9110 §7.8), answered, then the connection
//! follows the usual keep-alive rules. (Until they were, every `curl --http2` leaked its
//! connection in CLOSE-WAIT until `max_connections` refused everyone, and a switch REST call
//! with a body never got an answer.)

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{close_wait_sockets, curl, settle_close_wait, Server};

const H2C_GET: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n\
    Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";

/// Reads one response with a Content-Length body from `stream`.
fn read_response(stream: &mut TcpStream) -> String {
    let mut buffer = Vec::new();
    let mut byte = [0u8; 1];
    while !buffer.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed mid-head");
        buffer.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buffer).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    head + &String::from_utf8_lossy(&body)
}

#[test]
fn curl_http2_to_a_route_that_does_not_upgrade_leaks_no_connection() {
    let server = Server::start_default("[tcp]\nmax_connections = 8\n");
    for i in 0..24 {
        let (code, body) = curl(&["--http2", &server.url("/healthz")]);
        assert_eq!((code, body.as_str()), (0, "ok\n"), "request {i}");
    }
    assert_eq!(
        settle_close_wait(server.port, Duration::from_secs(5)),
        0,
        "connections closed by curl are closed by the server too"
    );
    // Three times max_connections went through: nothing was held.
    assert_eq!(curl(&[&server.url("/healthz")]).1, "ok\n");
}

#[test]
fn a_connection_after_an_unaccepted_upgrade_keeps_alive_then_idles_out() {
    let server = Server::start_default("[http]\nidle_timeout_ms = 500\n");
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(H2C_GET).unwrap();
    let first = read_response(&mut stream);
    assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");
    assert!(!first.contains("Connection: close"), "{first}");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(read_response(&mut stream).ends_with("\r\n\r\nok\n"));

    let quiet = Instant::now();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(rest.is_empty());
    assert!(
        quiet.elapsed() < Duration::from_secs(5),
        "the idle timeout applies"
    );
    assert_eq!(close_wait_sockets(server.port), 0);
}

#[test]
fn a_switch_rest_call_with_upgrade_and_a_body_is_answered() {
    // The default test core plus one running the switch, with one token.
    let server = Server::start_default(
        r#"
[[core]]
nuklei = ["switch"]

[[http.route]]
path = "/v1/"
to = "switch"

[[switch.token]]
token = "tok"
nodes = ["alice"]
"#,
    );
    let auth = "Authorization: Bearer tok";
    let (code, body) = curl(&[
        "--max-time",
        "5",
        "--http2",
        "-H",
        auth,
        "-d",
        r#"{"messages":[{"port":"user:42","body":"hi"}]}"#,
        &server.url("/v1/messages"),
    ]);
    assert_eq!(code, 0, "answered in time");
    assert!(body.contains(r#""dropped":1"#), "{body}");
    // A bodiless call with Upgrade is answered too (a relet without a receiving connection:
    // the switch's error, in time).
    let (code, status) = curl(&[
        "--max-time",
        "5",
        "--http2",
        "-X",
        "POST",
        "-H",
        auth,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &server.url("/v1/nodes/alice/relet"),
    ]);
    assert_eq!(code, 0, "answered in time");
    assert!(status.starts_with('4') || status == "200", "{status}");
    assert_eq!(settle_close_wait(server.port, Duration::from_secs(5)), 0);
}
