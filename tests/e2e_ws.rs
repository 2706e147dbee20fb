//! End-to-end WebSocket tests: the real reaktor with tcp, http, ws and echo, driven by raw
//! sockets and by the Python `websockets` client (scripts/setup-test-deps.sh).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::{ws_client_frame, ws_read_frame, Server};

/// One core with tcp, http, ws and echo; `/ws/echo` echoes messages.
fn ws_topology(extra: &str) -> String {
    format!(
        r#"
[reaktor]
pin = false
stream_capacity = 4194304

[[listener]]
name = "http"
address = "127.0.0.1:{{PORT}}"
chain = ["tcp", "http"]

[[core]]
nuklei = ["tcp", "http", "ws", "echo"]
{extra}

[[http.route]]
path = "/"
to = "echo"

[[http.route]]
path = "/ws"
to = "ws"

[[ws.route]]
path = "/ws/echo"
to = "echo"
"#
    )
}

const UPGRADE: &str = "GET /ws/echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Connects and upgrades; returns the stream positioned after the 101 head.
fn upgrade(server: &Server) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(UPGRADE.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(
        head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{head}"
    );
    stream
}

#[test]
fn raw_handshake_echo_and_close_handshake() {
    let server = Server::start(&ws_topology(""));
    let mut stream = upgrade(&server);
    stream.write_all(&ws_client_frame(0x81, b"hello")).unwrap();
    assert_eq!(ws_read_frame(&mut stream), (0x81, b"hello".to_vec()));
    stream.write_all(&ws_client_frame(0x89, b"p1")).unwrap();
    assert_eq!(ws_read_frame(&mut stream), (0x8A, b"p1".to_vec()));
    stream
        .write_all(&ws_client_frame(0x88, &4000u16.to_be_bytes()))
        .unwrap();
    assert_eq!(
        ws_read_frame(&mut stream),
        (0x88, 4000u16.to_be_bytes().to_vec())
    );
    // The server closes the TCP connection after the close handshake.
    let mut rest = Vec::new();
    assert_eq!(stream.read_to_end(&mut rest).unwrap(), 0);
    let (status, stderr) = server.stop();
    assert!(status.success(), "{stderr}");
}

/// Runs a check of tests/python/ws_client.py against the server's echo endpoint.
fn python_check(server: &Server, check: &str) {
    python_check_at(&format!("ws://127.0.0.1:{}/ws/echo", server.port), check);
}

/// Runs a check of tests/python/ws_client.py against `url`.
fn python_check_at(url: &str, check: &str) {
    let script = support::workspace().join("tests/python/ws_client.py");
    let output = std::process::Command::new(support::python())
        .arg(&script)
        .arg(url)
        .arg(check)
        .output()
        .expect("run python (scripts/setup-test-deps.sh installs websockets into .venv)");
    assert!(
        output.status.success() && output.stdout.starts_with(b"OK"),
        "{check}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn python_client_echoes_text_binary_empty_fragmented_and_pings() {
    let server = Server::start(&ws_topology(""));
    python_check(&server, "basic");
}

#[test]
fn python_client_echoes_a_fragmented_mebibyte_message() {
    let server = Server::start(&ws_topology(""));
    python_check(&server, "large");
}

#[test]
fn invalid_utf8_is_closed_with_1007_and_close_codes_are_echoed() {
    let server = Server::start(&ws_topology(""));
    python_check(&server, "badutf8");
    python_check(&server, "close");
}

#[test]
fn forty_concurrent_connections_echo_in_order() {
    let server = Server::start(&ws_topology(""));
    python_check(&server, "many");
}

/// `[ws] idle_timeout_ms`: a connection with no bytes either way for that long gets close
/// 1001 "idle timeout" (then the close handshake); one that keeps sending messages, or only
/// pings, stays open.
#[test]
fn an_idle_websocket_is_closed_with_1001_after_idle_timeout_ms_and_an_active_one_stays() {
    let server = Server::start(&ws_topology("\n[ws]\nidle_timeout_ms = 1000\n"));
    python_check(&server, "idle");
    let (status, stderr) = server.stop();
    assert!(status.success(), "{stderr}");
}

/// A switch node's receiving connection is the lease's to close, not the idle timeout's:
/// silent for longer than `[ws] idle_timeout_ms` it stays open, and the lease closes it (4001).
#[test]
fn a_switch_receiver_is_left_to_the_lease_not_to_the_idle_timeout() {
    let topology = support::switch_topology(1 << 20, 1)
        .replace("lease_ms = 1500", "lease_ms = 3000")
        + "\n[ws]\nidle_timeout_ms = 1000\n";
    let server = Server::start(&topology);
    python_check_at(
        &format!("ws://127.0.0.1:{}/v1/ws/n1?token=tok-n1", server.port),
        "lease",
    );
}

/// Reads frames until a close frame; returns its code.
fn read_close_code(stream: &mut TcpStream) -> u16 {
    loop {
        let (b0, payload) = ws_read_frame(stream);
        if b0 & 0x0f == 0x8 {
            assert!(payload.len() >= 2, "close without a code");
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}

#[test]
fn garbage_after_the_handshake_is_closed_with_1002_and_others_are_still_served() {
    let server = Server::start(&ws_topology(
        "[ws]\nmax_frame_size = 4096\nmax_message_size = 4096",
    ));
    let mut bad = upgrade(&server);
    // Unmasked frame with reserved opcode and RSV bits: a protocol error whatever the parse.
    bad.write_all(&[0x7F, 0x05, 0xde, 0xad, 0xbe, 0xef, 0x00, 0xff, 0xff, 0xff])
        .unwrap();
    assert_eq!(read_close_code(&mut bad), 1002);
    let mut rest = Vec::new();
    let _ = bad.read_to_end(&mut rest);
    // An unmasked but otherwise valid frame is a protocol error too.
    let mut unmasked = upgrade(&server);
    unmasked.write_all(&[0x81, 0x02, b'h', b'i']).unwrap();
    assert_eq!(read_close_code(&mut unmasked), 1002);
    // A message above the configured limit: 1009.
    let mut big = upgrade(&server);
    big.write_all(&ws_client_frame(0x82, &[7u8; 5000])).unwrap();
    assert_eq!(read_close_code(&mut big), 1009);
    // The server still serves new connections.
    let mut good = upgrade(&server);
    good.write_all(&ws_client_frame(0x82, b"\x01\x02")).unwrap();
    assert_eq!(ws_read_frame(&mut good), (0x82, vec![1, 2]));
    let (status, stderr) = server.stop();
    assert!(status.success(), "{stderr}");
}

#[test]
fn refused_upgrades_get_complete_http_responses() {
    let server = Server::start(&ws_topology(""));
    let no_route = support::raw_exchange(
        server.addr(),
        UPGRADE.replace("/ws/echo", "/ws/nowhere").as_bytes(),
    );
    let no_route = String::from_utf8_lossy(&no_route);
    assert!(no_route.starts_with("HTTP/1.1 404 "), "{no_route}");
    assert!(
        no_route.ends_with("no WebSocket route for this path\n"),
        "{no_route}"
    );
    let old = support::raw_exchange(
        server.addr(),
        UPGRADE.replace("Version: 13", "Version: 8").as_bytes(),
    );
    let old = String::from_utf8_lossy(&old);
    assert!(old.starts_with("HTTP/1.1 426 "), "{old}");
    assert!(old.contains("Sec-WebSocket-Version: 13\r\n"), "{old}");
    let no_key = support::raw_exchange(
        server.addr(),
        UPGRADE
            .replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "")
            .as_bytes(),
    );
    let no_key = String::from_utf8_lossy(&no_key);
    assert!(no_key.starts_with("HTTP/1.1 400 "), "{no_key}");
    assert!(no_key.contains("Content-Length: "), "{no_key}");
}

#[test]
fn a_client_that_stops_reading_is_stalled_with_bounded_memory() {
    let server = Server::start(&ws_topology(""));
    // Warm up, then take the baseline.
    let mut warm = upgrade(&server);
    warm.write_all(&ws_client_frame(0x82, &[1u8; 1000]))
        .unwrap();
    assert_eq!(ws_read_frame(&mut warm).1.len(), 1000);
    let before = support::private_rss_kib(server.pid());
    // Three clients send 64 KiB messages without ever reading the echoes.
    let mut writers = Vec::new();
    let mut sockets = Vec::new();
    let mut sent_total = Vec::new();
    for _ in 0..3 {
        let mut stream = upgrade(&server);
        sockets.push(stream.try_clone().unwrap());
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        sent_total.push(sent.clone());
        writers.push(std::thread::spawn(move || {
            let frame = ws_client_frame(0x82, &[9u8; 65536]);
            // Blocks once the server stops taking bytes; ends when the socket is shut down.
            while stream.write_all(&frame).is_ok() {
                sent.fetch_add(frame.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    std::thread::sleep(Duration::from_secs(3));
    let sent: Vec<u64> = sent_total
        .iter()
        .map(|s| s.load(std::sync::atomic::Ordering::Relaxed))
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let later: Vec<u64> = sent_total
        .iter()
        .map(|s| s.load(std::sync::atomic::Ordering::Relaxed))
        .collect();
    // Stalled: the server stopped taking bytes (kernel buffers full, windows closed).
    for (a, b) in sent.iter().zip(&later) {
        assert!(
            b - a < 200_000,
            "a non-reading client kept sending: {a} -> {b}"
        );
        assert!(
            *b < 64 << 20,
            "the server took {b} bytes from a client that never reads"
        );
    }
    let after = support::private_rss_kib(server.pid());
    assert!(
        after < before + 32 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    // Others are still served meanwhile.
    let mut good = upgrade(&server);
    good.write_all(&ws_client_frame(0x81, b"still here"))
        .unwrap();
    assert_eq!(ws_read_frame(&mut good), (0x81, b"still here".to_vec()));
    for socket in &sockets {
        let _ = socket.shutdown(std::net::Shutdown::Both);
    }
    for w in writers {
        w.join().unwrap();
    }
    let (status, stderr) = server.stop();
    assert!(status.success(), "{stderr}");
}

/// The fast Autobahn TestSuite sections (1–7, 10 and the small cases of 9), run by kosoku
/// against the echo endpoint of the binary under test: every case must be OK, NON-STRICT or
/// INFORMATIONAL (the script exits non-zero otherwise). The full run is `scripts/autobahn.sh
/// --full`, recorded in BENCHMARKS.md.
#[test]
fn autobahn_fast_sections_pass() {
    let output = std::process::Command::new("bash")
        .arg(support::workspace().join("scripts/autobahn.sh"))
        .current_dir(support::workspace())
        .env("SKIP_BUILD", "1")
        .env("REAKTOR_BIN", support::BIN)
        .output()
        .expect("run scripts/autobahn.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "autobahn failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("behavior:"),
        "no summary printed:\n{stdout}\n{stderr}"
    );
}
