//! End-to-end specification of the tcp → http → echo chain: the real `reaktor` binary, real
//! sockets, real clients (curl, raw TCP).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{curl, raw_exchange, Server};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Reads from `stream` until `count` complete responses with Content-Length bodies arrived.
fn read_responses(stream: &mut TcpStream, count: usize) -> Vec<(u16, String)> {
    let mut buffer = Vec::new();
    let mut responses = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    while responses.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} responses: {}",
            responses.len(),
            text(&buffer)
        );
        let mut chunk = [0u8; 65536];
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("{e}"),
        }
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            let Ok(httparse::Status::Complete(head)) = response.parse(&buffer) else {
                break;
            };
            let length: usize = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                .expect("content-length");
            if buffer.len() < head + length {
                break;
            }
            responses.push((response.code.unwrap(), text(&buffer[head..head + length])));
            buffer.drain(..head + length);
        }
    }
    responses
}

#[test]
fn healthz_answers_ok_to_curl() {
    let server = Server::start_default("");
    let (code, body) = curl(&[&server.url("/healthz")]);
    assert_eq!((code, body.as_str()), (0, "ok\n"));
}

#[test]
fn post_echo_returns_the_body() {
    let server = Server::start_default("");
    let (code, body) = curl(&[
        "-X",
        "POST",
        "--data-binary",
        "reaktor says hi",
        &server.url("/echo"),
    ]);
    assert_eq!((code, body.as_str()), (0, "reaktor says hi"));
}

#[test]
fn curl_reuses_one_keep_alive_connection_for_several_requests() {
    let server = Server::start_default("");
    let output = std::process::Command::new("curl")
        .args([
            "-sS",
            "-v",
            "--max-time",
            "20",
            &server.url("/"),
            &server.url("/healthz"),
            &server.url("/"),
        ])
        .output()
        .unwrap();
    let stderr = text(&output.stderr);
    assert_eq!(text(&output.stdout), "Hello, World!ok\nHello, World!");
    assert_eq!(
        stderr.matches("Connected to").count(),
        1,
        "one TCP connection expected: {stderr}"
    );
    assert!(
        stderr.contains("Re-using existing connection")
            || stderr.contains("Reusing existing connection"),
        "{stderr}"
    );
}

#[test]
fn pipelined_requests_on_one_connection_are_answered_in_order() {
    let server = Server::start_default("");
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    let mut burst = Vec::new();
    for i in 0..64 {
        let path = ["/", "/healthz", "/nope"][i % 3];
        burst.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    }
    stream.write_all(&burst).unwrap();
    let responses = read_responses(&mut stream, 64);
    assert_eq!(responses.len(), 64);
    for (i, (status, body)) in responses.iter().enumerate() {
        let expected = [(200, "Hello, World!"), (200, "ok\n"), (404, "not found\n")][i % 3];
        assert_eq!((*status, body.as_str()), expected, "response {i}");
    }
    // The connection is still usable afterwards.
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(
        read_responses(&mut stream, 1),
        vec![(200, "ok\n".to_owned())]
    );
}

#[test]
fn pipelined_bodies_interleave_correctly_with_heads() {
    let server = Server::start_default("");
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    let mut burst = Vec::new();
    for i in 0..20 {
        let body = format!("body number {i}");
        burst.extend_from_slice(
            format!(
                "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
    // Split the burst at awkward places to exercise partial heads and bodies.
    for piece in burst.chunks(7) {
        stream.write_all(piece).unwrap();
    }
    let responses = read_responses(&mut stream, 20);
    for (i, (status, body)) in responses.iter().enumerate() {
        assert_eq!((*status, body.clone()), (200, format!("body number {i}")));
    }
}

#[test]
fn chunked_upload_of_a_megabyte_is_echoed_intact() {
    let server = Server::start_default("");
    let dir = support::TempDir::new("chunked");
    let file = dir.0.join("upload.bin");
    let payload: Vec<u8> = (0..1_048_576u32).map(|i| (i * 7 + i / 251) as u8).collect();
    std::fs::write(&file, &payload).unwrap();
    let output = std::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "30",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
        ])
        .arg(format!("@{}", file.display()))
        .arg(server.url("/echo"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(output.stdout.len(), payload.len());
    assert!(output.stdout == payload, "echoed body differs");
}

#[test]
fn expect_100_continue_gets_an_interim_response() {
    let server = Server::start_default("");
    let (code, body) = curl(&[
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        "after continue",
        &server.url("/echo"),
    ]);
    assert_eq!((code, body.as_str()), (0, "after continue"));
}

#[test]
fn oversized_headers_get_431_with_a_reason() {
    let server = Server::start_default("");
    let big = "a".repeat(10_000);
    let response = text(&raw_exchange(
        server.addr(),
        format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    ));
    assert!(response.starts_with("HTTP/1.1 431 "), "{response}");
    assert!(
        response.contains("request header section too large"),
        "{response}"
    );
    let many: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
    let response = text(&raw_exchange(
        server.addr(),
        format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes(),
    ));
    assert!(response.starts_with("HTTP/1.1 431 "), "{response}");
}

#[test]
fn garbage_gets_400_and_the_connection_closes() {
    let server = Server::start_default("");
    let response = text(&raw_exchange(
        server.addr(),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
    ));
    assert!(response.starts_with("HTTP/1.1 400 "), "{response}");
    assert!(response.contains("Connection: close"), "{response}");
    assert_eq!(
        curl(&[&server.url("/healthz")]).1,
        "ok\n",
        "server still serves others"
    );
}

#[test]
fn unsupported_versions_bodies_and_encodings_get_their_status() {
    let server = Server::start_default("");
    let status = |request: &str| {
        let response = text(&raw_exchange(server.addr(), request.as_bytes()));
        response.get(9..12).unwrap_or("").to_owned()
    };
    assert_eq!(status("GET / HTTP/2.0\r\nHost: x\r\n\r\n"), "505");
    assert_eq!(
        status("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\n\r\n"),
        "413"
    );
    assert_eq!(
        status("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"),
        "501"
    );
    assert_eq!(status("GET / HTTP/1.1\r\n\r\n"), "400");
}

#[test]
fn chunked_body_beyond_the_limit_gets_413() {
    let server = Server::start_default("[http]\nmax_body_bytes = 1000\n");
    let mut request =
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        request.extend_from_slice(b"200\r\n");
        request.extend_from_slice(&[b'x'; 0x200]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let response = raw_exchange(server.addr(), &request);
    // The echo response may already have started; then the connection is cut instead.
    let response = text(&response);
    assert!(
        response.is_empty() || response.contains("413") || response.starts_with("HTTP/1.1 200"),
        "{response}"
    );
    let exact = format!(
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n{}",
        "x".repeat(1001)
    );
    assert!(text(&raw_exchange(server.addr(), exact.as_bytes())).starts_with("HTTP/1.1 413 "));
    let ok = format!(
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n{}",
        "x".repeat(1000)
    );
    assert!(
        text(&raw_exchange(server.addr(), ok.as_bytes())).starts_with("HTTP/1.1 200 "),
        "exactly the limit is fine"
    );
}

#[test]
fn http_1_0_is_answered_and_closed() {
    let server = Server::start_default("");
    let response = text(&raw_exchange(
        server.addr(),
        b"GET /healthz HTTP/1.0\r\n\r\n",
    ));
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(
        response.contains("Connection: close") && response.ends_with("ok\n"),
        "{response}"
    );
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream
        .write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /healthz HTTP/1.0\r\n\r\n")
        .unwrap();
    let mut all = Vec::new();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.read_to_end(&mut all);
    let all = text(&all);
    assert!(
        all.contains("Connection: keep-alive")
            && all.contains("Hello, World!")
            && all.ends_with("ok\n"),
        "{all}"
    );
}

#[test]
fn connection_close_closes_after_the_response() {
    let server = Server::start_default("");
    let response = text(&raw_exchange(server.addr(), b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert!(
        response.ends_with("Hello, World!"),
        "the request after close is not served: {response}"
    );
}

#[test]
fn clients_that_disconnect_mid_request_do_not_disturb_others() {
    let server = Server::start_default("");
    for i in 0..50 {
        let mut stream = TcpStream::connect(server.addr()).unwrap();
        let partial: &[u8] = match i % 3 {
            0 => b"GET /heal",
            1 => b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhalf a bo",
            _ => b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc",
        };
        stream.write_all(partial).unwrap();
        if i % 2 == 0 {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        drop(stream);
    }
    assert_eq!(curl(&[&server.url("/healthz")]).1, "ok\n");
    let (status, stderr) = server.stop();
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_thousand_concurrent_connections_are_all_served() {
    let server = Server::start_default("");
    let mut streams: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(server.addr()).unwrap())
        .collect();
    for (i, stream) in streams.iter_mut().enumerate() {
        let body = format!("connection {i}");
        stream
            .write_all(
                format!(
                    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .unwrap();
    }
    for (i, stream) in streams.iter_mut().enumerate() {
        assert_eq!(
            read_responses(stream, 1),
            vec![(200, format!("connection {i}"))]
        );
    }
}

#[test]
fn a_client_that_stops_reading_does_not_grow_server_memory() {
    let server = Server::start_default("[http]\nmax_body_bytes = 1073741824\n");
    let before = support::private_rss_kib(server.pid());
    // Stream a 256 MiB body to /echo without ever reading the echoed response: flow control
    // must stall the upload once the kernel buffers and the bounded windows are full.
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 268435456\r\n\r\n")
        .unwrap();
    let chunk = vec![b'z'; 65536];
    let mut sent = 0usize;
    while sent < 268_435_456 {
        match stream.write(&chunk) {
            Ok(n) => sent += n,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                break
            }
            Err(e) => panic!("the server must stall the upload, not drop it: {e}"),
        }
    }
    assert!(
        sent > 1 << 20,
        "the upload should flow until the windows fill, got {sent} bytes"
    );
    assert!(
        sent < 64 << 20,
        "server kept reading {sent} bytes from a client that never reads"
    );
    let grown = support::private_rss_kib(server.pid()).saturating_sub(before);
    eprintln!("uploaded {sent} bytes before the server stalled; private RSS grew {grown} KiB");
    assert!(grown < 8 * 1024, "server private RSS grew by {grown} KiB");
    // Other clients are unaffected.
    assert_eq!(curl(&[&server.url("/healthz")]).1, "ok\n");
}

#[test]
fn sigterm_stops_cleanly_and_removes_the_stream_files() {
    let server = Server::start_default("");
    assert_eq!(curl(&[&server.url("/healthz")]).1, "ok\n");
    let streams = server.dir.0.join("streams");
    let entries = || std::fs::read_dir(&streams).unwrap().count();
    assert_eq!(entries(), 1, "one reaktor-<pid> directory while running");
    let (status, stderr, dir) = server.stop_keep_dir();
    assert!(status.success(), "exit status {status}: {stderr}");
    assert_eq!(
        std::fs::read_dir(dir.0.join("streams")).unwrap().count(),
        0,
        "stream files removed"
    );
}

#[test]
fn an_idle_server_uses_almost_no_cpu() {
    let server = Server::start_default("");
    assert_eq!(curl(&[&server.url("/healthz")]).1, "ok\n");
    std::thread::sleep(Duration::from_millis(300));
    let ticks = || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.pid())).unwrap();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    let before = ticks();
    std::thread::sleep(Duration::from_secs(2));
    let used = ticks() - before;
    // 2 s at 100 ticks/s: a spinning core would use ~200 ticks.
    assert!(used <= 10, "idle server used {used} ticks in 2 s");
}

#[test]
fn a_slow_request_head_gets_408_and_an_idle_connection_is_closed() {
    let server = Server::start_default("[http]\nrequest_timeout_ms = 300\nidle_timeout_ms = 600\n");
    let started = Instant::now();
    let slow = raw_exchange(server.addr(), b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ");
    let slow = text(&slow);
    assert!(slow.starts_with("HTTP/1.1 408 "), "{slow}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // A keep-alive connection that goes quiet after a response is closed after the idle timeout.
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(
        read_responses(&mut stream, 1),
        vec![(200, "ok\n".to_owned())]
    );
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let quiet = Instant::now();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(rest.is_empty(), "no data, just the close: {}", text(&rest));
    let waited = quiet.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
}

#[test]
fn a_client_that_never_reads_is_disconnected_after_the_write_timeout() {
    let server = Server::start_default(
        "[tcp]\nwrite_timeout_ms = 500\n[http]\nmax_body_bytes = 1073741824\n",
    );
    // Upload until the server stops taking bytes (its echo is stuck behind our unread data),
    // then keep trying: once the write timeout fires the server resets the connection.
    let (_, error) = support::upload_without_reading(&server);
    assert!(
        matches!(
            error.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        ),
        "{error}"
    );
    assert_eq!(
        curl(&[&server.url("/healthz")]).1,
        "ok\n",
        "others are still served"
    );
}
