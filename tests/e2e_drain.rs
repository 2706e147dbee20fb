//! Graceful stop of the real binary: the first SIGTERM stops accepting, lets requests and
//! uploads in flight finish, closes idle keep-alive connections, closes WebSockets with 1001
//! and ends SSE receivers with a `close` event; the drain timeout or a second SIGTERM ends it
//! at once.

mod support;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use support::{Options, Server};

const BODY: usize = 256 * 1024;

/// The default test topology with `reaktor` added to its `[reaktor]` table and `extra`
/// appended, logging at info (the drain's lines).
fn start(reaktor: &str, extra: &str) -> Server {
    let topology =
        support::default_topology().replace("[reaktor]\n", &format!("[reaktor]\n{reaktor}\n"));
    start_topology(&format!("{topology}\n{extra}"))
}

/// `topology`, logging at info (the drain's lines).
fn start_topology(topology: &str) -> Server {
    Server::start_with(
        topology,
        &Options {
            log: Some("info".into()),
            ..Options::default()
        },
    )
}

/// Reads the head of a response and returns it with the Content-Length it announces.
fn read_head(stream: &mut TcpStream) -> (String, usize) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("a response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    (head, length)
}

/// An upload of `BODY` bytes to /echo in two halves: the first, then (once the response
/// head is here, so the server has the connection) `halfway`, then after `go` the second;
/// returns the response head, the echoed body and whether the server closed the connection
/// after it.
fn upload(
    server_addr: std::net::SocketAddr,
    halfway: Arc<Barrier>,
    go: Arc<Barrier>,
) -> (String, Vec<u8>, bool) {
    let mut stream = TcpStream::connect(server_addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream
        .write_all(
            format!("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {BODY}\r\n\r\n").as_bytes(),
        )
        .unwrap();
    let mut reader = stream.try_clone().unwrap();
    // Read the echo as it comes, so that the server never waits for us.
    let echo = std::thread::spawn(move || {
        let (head, length) = read_head(&mut reader);
        halfway.wait();
        let mut echoed = vec![0u8; length];
        reader.read_exact(&mut echoed).expect("the whole echo");
        let mut rest = [0u8; 16];
        let closed = matches!(reader.read(&mut rest), Ok(0));
        (head, echoed, closed)
    });
    let body = vec![b'u'; BODY];
    stream.write_all(&body[..BODY / 2]).unwrap();
    go.wait();
    stream.write_all(&body[BODY / 2..]).unwrap();
    echo.join().unwrap()
}

/// 20 uploads half done, an idle keep-alive connection, then SIGTERM: the idle connection is
/// closed at once, new connections are refused, and every upload finishes with its whole
/// echo, after which each connection closes and the server exits cleanly. (Before: the
/// uploads got a head and then EOF.)
#[test]
fn sigterm_lets_uploads_in_flight_finish_and_closes_idle_connections() {
    let mut server = start("", "[http]\nmax_body_bytes = 1048576\n");
    let mut idle = TcpStream::connect(server.addr()).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (head, length) = read_head(&mut idle);
    assert!(head.starts_with("HTTP/1.1 200"));
    let mut ok = vec![0u8; length];
    idle.read_exact(&mut ok).unwrap();

    const UPLOADS: usize = 20;
    let halfway = Arc::new(Barrier::new(UPLOADS + 1));
    let go = Arc::new(Barrier::new(UPLOADS + 1));
    let addr = server.addr();
    let uploads: Vec<_> = (0..UPLOADS)
        .map(|_| {
            let (halfway, go) = (halfway.clone(), go.clone());
            std::thread::spawn(move || upload(addr, halfway, go))
        })
        .collect();
    halfway.wait();
    server.signal("TERM");

    // The idle connection closes at once.
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let closed_at = Instant::now();
    let mut rest = Vec::new();
    let _ = idle.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    assert!(closed_at.elapsed() < Duration::from_secs(2));

    // Nobody new gets in.
    match TcpStream::connect(addr) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused),
        Ok(mut late) => {
            late.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = late.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
            let mut answer = Vec::new();
            let _ = late.read_to_end(&mut answer);
            assert!(answer.is_empty(), "served after SIGTERM");
        }
    }

    go.wait();
    for upload in uploads {
        let (head, echoed, closed) = upload.join().unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(echoed.len(), BODY);
        assert!(echoed.iter().all(|&b| b == b'u'));
        assert!(closed, "the connection closes after its response");
    }
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("exits once drained");
    assert!(status.success());
    let stderr = server.stderr();
    assert!(stderr.contains("drained; shutting down"), "{stderr}");
}

/// An upload that never finishes holds the drain only until `drain_timeout_ms`; with the
/// default timeout, a second SIGTERM ends the drain at once.
#[test]
fn the_drain_timeout_or_a_second_sigterm_ends_the_drain() {
    let stuck = |server: &Server| {
        let mut stream = TcpStream::connect(server.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\nabc")
            .unwrap();
        // The response head says the server has the request (echo answers at once).
        read_head(&mut stream);
        stream
    };
    drain_ends_at_the_timeout_or_a_second_sigterm(|reaktor| start(reaktor, ""), stuck);
}

/// A server started by `start` (given its `[reaktor]` line) with a connection `hold` keeps
/// busy: with `drain_timeout_ms = 700` the drain is cut short then; with the default (10 s)
/// it goes on until a second SIGTERM, which ends it at once.
fn drain_ends_at_the_timeout_or_a_second_sigterm(
    start: impl Fn(&str) -> Server,
    hold: impl Fn(&Server) -> TcpStream,
) {
    let mut server = start("drain_timeout_ms = 700");
    let _held = hold(&server);
    let signalled = Instant::now();
    server.signal("TERM");
    server
        .wait_exit(Duration::from_secs(5))
        .expect("exits after the drain timeout");
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(600) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert!(server.stderr().contains("drain cut short"));

    let mut server = start("");
    let _held = hold(&server);
    server.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    assert!(server.wait_exit(Duration::ZERO).is_none(), "still draining");
    let second = Instant::now();
    server.signal("TERM");
    server
        .wait_exit(Duration::from_secs(3))
        .expect("the second SIGTERM stops it");
    assert!(second.elapsed() < Duration::from_secs(2));
}

/// The switch's test topology (one core) with echo's WebSocket at `/ws/echo` beside the
/// switch's, a lease long enough to stay out of the way, and `reaktor` in `[reaktor]`.
fn websocket_topology(reaktor: &str, extra: &str) -> String {
    support::switch_topology(1 << 20, 1)
        .replace("lease_ms = 1500", "lease_ms = 30000")
        .replace("[reaktor]\n", &format!("[reaktor]\n{reaktor}\n"))
        .replace(
            "nuklei = [\"tcp\", \"http\", \"ws\", \"switch\"]",
            "nuklei = [\"tcp\", \"http\", \"ws\", \"switch\", \"echo\"]",
        )
        + "\n[[http.route]]\npath = \"/ws/\"\nto = \"ws\"\n\n[[ws.route]]\npath = \"/ws/echo\"\nto = \"echo\"\n"
        + extra
}

/// A Python `websockets` client (tests/python/ws_client.py `held`) holding `path` open:
/// returns once it is connected; [`closed_as`] reads how the server closed it.
fn held_websocket(server: &Server, path: &str) -> (Child, BufReader<ChildStdout>) {
    let mut child = Command::new(support::python())
        .arg(support::workspace().join("tests/python/ws_client.py"))
        .arg(format!("ws://127.0.0.1:{}{path}", server.port))
        .arg("held")
        .stdout(Stdio::piped())
        .spawn()
        .expect("run python (scripts/setup-test-deps.sh installs websockets into .venv)");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "READY", "{path}");
    (child, out)
}

/// The `CLOSED <code> <reason>` line of a held client, once the server closed it.
fn closed_as((mut child, mut out): (Child, BufReader<ChildStdout>)) -> String {
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(child.wait().unwrap().success());
    line.trim().to_owned()
}

/// SIGTERM closes every WebSocket with 1001 — echo's and a switch node's receiving
/// connection — and ends an SSE receiver with a `close` event, each client answered within
/// the drain; then the process exits drained, long before the drain timeout.
#[test]
fn sigterm_closes_websockets_with_1001_and_sse_receivers_with_a_close_event() {
    let mut server = start_topology(&websocket_topology("", ""));
    let echo = held_websocket(&server, "/ws/echo");
    let node = held_websocket(&server, "/v1/ws/n1?token=tok-n1");
    let mut sse = Command::new("curl")
        .args(["-sN", "--max-time", "20", "-H", "Accept: text/event-stream"])
        .args(["-H", "Authorization: Bearer tok-n2"])
        .arg(server.url("/v1/nodes/n2/messages"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Both nodes are online: their receiving connections are open.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = support::curl(&[
            "-H",
            "Authorization: Bearer adm",
            "-d",
            r#"{"nodes":["n1","n2"]}"#,
            &server.url("/v1/nodes/query"),
        ]);
        if body.matches(r#""online":true"#).count() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{body}");
        std::thread::sleep(Duration::from_millis(50));
    }

    let signalled = Instant::now();
    server.signal("TERM");
    assert_eq!(closed_as(echo), "CLOSED 1001 server shutting down");
    assert_eq!(closed_as(node), "CLOSED 1001 server shutting down");
    let mut events = String::new();
    sse.stdout
        .take()
        .unwrap()
        .read_to_string(&mut events)
        .unwrap();
    assert!(
        sse.wait().unwrap().success(),
        "curl saw the stream end cleanly"
    );
    assert!(
        events.contains(
            "event: close\ndata: {\"message\":\"server shutting down\",\"reason\":\"going_away\"}"
        ),
        "{events}"
    );
    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("exits once drained");
    assert!(status.success());
    assert!(
        signalled.elapsed() < Duration::from_secs(4),
        "drained in {:?}, not at the 10 s drain timeout",
        signalled.elapsed()
    );
    let stderr = server.stderr();
    assert!(stderr.contains("drained; shutting down"), "{stderr}");
}

/// A WebSocket client that never answers the server's close (nor reads it) holds the drain
/// only until `drain_timeout_ms`, or until a second SIGTERM.
#[test]
fn a_websocket_that_never_answers_the_close_holds_the_drain_only_until_the_timeout_or_a_second_sigterm(
) {
    let upgrade = |server: &Server| {
        let mut stream = TcpStream::connect(server.addr()).unwrap();
        stream
            .write_all(b"GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let (head, _) = read_head(&mut stream);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        stream
    };
    // The close handshake would wait 30 s for the client: the drain timeout cuts it.
    let ws = "[ws]\nclose_timeout_ms = 30000\n";
    drain_ends_at_the_timeout_or_a_second_sigterm(
        |reaktor| start_topology(&websocket_topology(reaktor, ws)),
        upgrade,
    );
}
