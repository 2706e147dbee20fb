//! End-to-end WebSocket tests: the real reaktor with tcp, http, ws and echo, driven by raw
//! sockets and by the Python `websockets` client (scripts/setup-test-deps.sh).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::Server;

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

[[http.route]]
path = "/"
to = "echo"

[[http.route]]
path = "/ws"
to = "ws"

[[ws.route]]
path = "/ws/echo"
to = "echo"
{extra}
"#
    )
}

const UPGRADE: &str = "GET /ws/echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// A masked client frame.
fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![b0];
    match payload.len() {
        n if n <= 125 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

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

/// Reads one unmasked server frame: (first byte, payload).
fn read_frame(stream: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    stream.read_exact(&mut h).unwrap();
    assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            stream.read_exact(&mut l).unwrap();
            u16::from_be_bytes(l) as usize
        }
        127 => {
            let mut l = [0u8; 8];
            stream.read_exact(&mut l).unwrap();
            u64::from_be_bytes(l) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).unwrap();
    (h[0], payload)
}

#[test]
fn raw_handshake_echo_and_close_handshake() {
    let server = Server::start(&ws_topology(""));
    let mut stream = upgrade(&server);
    stream.write_all(&client_frame(0x81, b"hello")).unwrap();
    assert_eq!(read_frame(&mut stream), (0x81, b"hello".to_vec()));
    stream.write_all(&client_frame(0x89, b"p1")).unwrap();
    assert_eq!(read_frame(&mut stream), (0x8A, b"p1".to_vec()));
    stream
        .write_all(&client_frame(0x88, &4000u16.to_be_bytes()))
        .unwrap();
    assert_eq!(read_frame(&mut stream), (0x88, 4000u16.to_be_bytes().to_vec()));
    // The server closes the TCP connection after the close handshake.
    let mut rest = Vec::new();
    assert_eq!(stream.read_to_end(&mut rest).unwrap(), 0);
    let (status, stderr) = server.stop();
    assert!(status.success(), "{stderr}");
}
