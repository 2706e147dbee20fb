//! End-to-end tests of TLS listeners (`["tcp", "tls", "http"]`): the real binary with real
//! clients (curl, openssl s_client, Python's ssl module, rustls), certificates from
//! `nukleus_tls::testing::TestPki`; plus an in-process spec test of tls + http over rings that
//! checks the verified client identity reaches the application as pseudo-headers.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nukleus_tls::rustls;
use nukleus_tls::testing::{ClientCert, TestPki, CLIENT_CN, CLIENT_DNS, CLIENT_URI};
use support::{ws_client_frame, ws_read_frame, Server};

fn pki() -> TestPki {
    TestPki::generate().expect("test PKI")
}

/// One core running tcp, tls, http and echo; one HTTPS listener with `tls` settings appended
/// to its `[listener.tls]` table.
fn topology(pki: &TestPki, tls: &str) -> String {
    support::tls_topology(&pki.server_cert, &pki.server_key, "", tls)
}

fn start(pki: &TestPki, tls: &str) -> Server {
    Server::start(&topology(pki, tls))
}

fn mtls(pki: &TestPki, mode: &str) -> String {
    format!(
        "client_ca = \"{}\"\nclient_auth = \"{mode}\"",
        pki.ca_cert.display()
    )
}

fn https(server: &Server, path: &str) -> String {
    format!("https://localhost:{}{path}", server.port)
}

/// curl with `--cacert`, resolving localhost to 127.0.0.1; returns (exit code, stdout, stderr).
fn curl(pki: &TestPki, server: &Server, args: &[&str]) -> (i32, String, String) {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(&pki.ca_cert)
        .args(["--resolve", &format!("localhost:{}:127.0.0.1", server.port)])
        .args(args)
        .output()
        .expect("curl is installed");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A rustls client over a blocking socket, for keep-alive connections held across a test.
struct TlsClient {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

impl TlsClient {
    fn connect(pki: &TestPki, port: u16, cert: ClientCert) -> std::io::Result<TlsClient> {
        let config = pki.client_config(cert, &[]).expect("client config");
        let conn = rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap())
            .map_err(std::io::Error::other)?;
        let socket = TcpStream::connect(("127.0.0.1", port))?;
        socket.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(TlsClient {
            stream: rustls::StreamOwned::new(conn, socket),
        })
    }

    /// Sends a request and reads one response with a Content-Length body.
    fn request(&mut self, request: &[u8]) -> std::io::Result<(u16, String)> {
        self.stream.write_all(request)?;
        self.stream.flush()?;
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(head)) = response.parse(&buffer) {
                let length = response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
                    .unwrap_or(0);
                let status = response.code.unwrap_or(0);
                if buffer.len() >= head + length {
                    let body = String::from_utf8_lossy(&buffer[head..head + length]).into_owned();
                    return Ok((status, body));
                }
            }
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buffer.extend_from_slice(&chunk[..n]);
        }
    }

    fn get(&mut self, path: &str) -> std::io::Result<(u16, String)> {
        self.request(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
    }
}

/// Checks that a keep-alive connection opened before a failure still works after it.
fn still_serves(good: &mut TlsClient) {
    assert_eq!(
        good.get("/").expect("the good connection still works"),
        (200, "Hello, World!".to_owned())
    );
}

fn handshake_failures(stderr: &str) -> usize {
    stderr.matches("TLS handshake failed").count()
}

#[test]
fn curl_gets_posts_and_keeps_the_connection_alive() {
    let pki = pki();
    let server = start(&pki, "");
    let (code, body, err) = curl(&pki, &server, &[&https(&server, "/")]);
    assert_eq!((code, body.as_str()), (0, "Hello, World!"), "{err}");

    let (code, body, err) = curl(
        &pki,
        &server,
        &["-d", "hello over tls", &https(&server, "/echo")],
    );
    assert_eq!((code, body.as_str()), (0, "hello over tls"), "{err}");

    let url = https(&server, "/");
    let (code, body, err) = curl(&pki, &server, &["-v", &url, &url, &url]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(body, "Hello, World!".repeat(3));
    assert_eq!(
        err.matches("Re-using existing connection").count(),
        2,
        "{err}"
    );
    assert!(err.contains("ALPN: server accepted http/1.1"), "{err}");
    let (status, stderr) = server.stop();
    assert!(status.success(), "{stderr}");
    assert_eq!(handshake_failures(&stderr), 0, "{stderr}");
}

/// A request with `Upgrade` to a route that does not upgrade is an ordinary request over TLS
/// too: once curl closes, the server closes (it used to stay in CLOSE-WAIT for good).
#[test]
fn upgrade_headers_to_a_route_that_does_not_upgrade_leak_no_connection() {
    let pki = pki();
    let server = start(&pki, "");
    for _ in 0..6 {
        let (code, body, stderr) = curl(
            &pki,
            &server,
            &[
                "--http1.1",
                "-H",
                "Upgrade: h2c",
                "-H",
                "Connection: Upgrade",
                &https(&server, "/healthz"),
            ],
        );
        assert_eq!((code, body.as_str()), (0, "ok\n"), "{stderr}");
    }
    assert_eq!(
        support::settle_close_wait(server.port, Duration::from_secs(5)),
        0
    );
}

#[test]
fn a_large_body_round_trips_under_flow_control() {
    let pki = pki();
    let server = start(&pki, "");
    let dir = support::TempDir::new("tls-body");
    let path = dir.0.join("body.bin");
    // 4 MiB of non-repeating bytes: far more than any window or TLS buffer on the way.
    let mut body = Vec::with_capacity(4 << 20);
    let mut x: u32 = 0x1234_5678;
    while body.len() < 4 << 20 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        body.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(&path, &body).unwrap();
    let out = dir.0.join("out.bin");
    let (code, _, err) = curl(
        &pki,
        &server,
        &[
            "--data-binary",
            &format!("@{}", path.display()),
            "-H",
            "Content-Type: application/octet-stream",
            "-o",
            out.to_str().unwrap(),
            &https(&server, "/echo"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let echoed = std::fs::read(&out).unwrap();
    assert_eq!(echoed.len(), body.len());
    assert!(echoed == body, "the echoed body differs");
}

/// `openssl s_client` to the server as `localhost`, verifying it against the test CA, with
/// its standard streams piped.
fn s_client_command(server: &Server, pki: &TestPki) -> Command {
    let mut command = Command::new("openssl");
    command
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{}", server.port),
        ])
        .args(["-servername", "localhost", "-CAfile"])
        .arg(&pki.ca_cert)
        .arg("-verify_return_error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn s_client(server: &Server, pki: &TestPki, args: &[&str], request: &str) -> (i32, String, String) {
    let mut child = s_client_command(server, pki)
        .arg("-ign_eof")
        .args(args)
        .spawn()
        .expect("openssl is installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn openssl_s_client_negotiates_tls_1_2_and_1_3_with_alpn() {
    let pki = pki();
    let server = start(&pki, "");
    let request = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    for (flag, version) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let (code, out, err) = s_client(&server, &pki, &[flag, "-alpn", "http/1.1"], request);
        assert_eq!(code, 0, "{flag}: {err}\n{out}");
        assert!(
            out.contains(&format!("Protocol  : {version}"))
                || out.contains(&format!("New, {version}")),
            "{flag}: {out}"
        );
        assert!(out.contains("ALPN protocol: http/1.1"), "{flag}: {out}");
        assert!(out.contains("Verify return code: 0 (ok)"), "{flag}: {out}");
        assert!(
            out.contains("HTTP/1.1 200 OK") && out.contains("Hello, World!"),
            "{flag}: {out}"
        );
    }
}

/// openssl s_client's `k` and `K` commands (a TLS 1.3 KeyUpdate, without and with
/// update_requested) between requests on one keep-alive connection: tls updates its receive
/// key each time, answers only `K` with a KeyUpdate of its own (then updates its send key),
/// and serves every request.
#[test]
fn openssl_key_updates_both_ways_on_a_keep_alive_connection() {
    let pki = pki();
    let server = start(&pki, "");
    let mut child = s_client_command(&server, &pki)
        .args(["-tls1_3", "-msg"])
        .spawn()
        .expect("openssl is installed");
    let mut stdin = child.stdin.take().unwrap();
    let get = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    // s_client takes a command only at the start of what one read of stdin returns: pause
    // between writes.
    let pause = || std::thread::sleep(Duration::from_millis(400));
    for command in ["k\n", "K\n", "K\n", "k\n"] {
        stdin.write_all(get).unwrap();
        pause();
        stdin.write_all(command.as_bytes()).unwrap();
        pause();
    }
    stdin.write_all(get).unwrap();
    pause();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 5, "{out}\n{err}");
    assert_eq!(out.matches("Hello, World!").count(), 5, "{out}");
    let sent = out
        .matches(">>> TLS 1.3, Handshake [length 0005], KeyUpdate")
        .count();
    let received = out
        .matches("<<< TLS 1.3, Handshake [length 0005], KeyUpdate")
        .count();
    assert_eq!((sent, received), (4, 2), "{out}");
}

#[test]
fn python_ssl_client_speaks_https_with_and_without_a_client_certificate() {
    let pki = pki();
    let server = start(&pki, &mtls(&pki, "optional"));
    let script = support::workspace().join("tests/python/tls_client.py");
    let run = |extra: &[&Path]| {
        let output = Command::new(support::python())
            .arg(&script)
            .arg(server.port.to_string())
            .arg(&pki.ca_cert)
            .args(extra)
            .output()
            .expect("python runs");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    for extra in [
        vec![],
        vec![pki.client_cert.as_path(), pki.client_key.as_path()],
    ] {
        let (code, out, err) = run(&extra);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("\"version\": \"TLSv1.3\""), "{out}");
        assert!(out.contains("\"alpn\": \"http/1.1\""), "{out}");
        assert!(
            out.contains("[200, \"Hello, World!\"], [200, \"python ssl says hi\"]"),
            "{out}"
        );
    }
    // A certificate from another CA is refused even though client_auth is optional.
    let (code, _, err) = run(&[
        pki.foreign_client_cert.as_path(),
        pki.foreign_client_key.as_path(),
    ]);
    assert_ne!(code, 0, "a foreign client certificate was accepted: {err}");
}

#[test]
fn mtls_required_admits_a_valid_client_and_refuses_the_others_one_connection_at_a_time() {
    let pki = pki();
    let server = start(&pki, &mtls(&pki, "required"));
    let (code, body, err) = curl(
        &pki,
        &server,
        &[
            "--cert",
            pki.client_cert.to_str().unwrap(),
            "--key",
            pki.client_key.to_str().unwrap(),
            &https(&server, "/"),
        ],
    );
    assert_eq!((code, body.as_str()), (0, "Hello, World!"), "{err}");
    let (code, _, _) = curl(&pki, &server, &[&https(&server, "/")]);
    assert_ne!(code, 0, "curl without a client certificate was served");

    let mut good = TlsClient::connect(&pki, server.port, ClientCert::Valid).unwrap();
    still_serves(&mut good);
    for refused in [ClientCert::None, ClientCert::Expired, ClientCert::Foreign] {
        let mut bad = TlsClient::connect(&pki, server.port, refused).unwrap();
        // TLS 1.3: the client finishes first, the server refuses its certificate after.
        let result = bad.get("/");
        assert!(result.is_err(), "{refused:?} was served: {result:?}");
        still_serves(&mut good);
    }
    let (status, stderr) = server.stop();
    assert!(status.success());
    assert_eq!(
        handshake_failures(&stderr),
        4,
        "one line per refusal: {stderr}"
    );
    assert!(stderr.contains("client certificate refused"), "{stderr}");
}

#[test]
fn garbage_instead_of_a_client_hello_gets_an_alert_and_only_that_connection_closes() {
    let pki = pki();
    let server = start(&pki, "");
    let mut good = TlsClient::connect(&pki, server.port, ClientCert::None).unwrap();
    still_serves(&mut good);
    let reply = support::raw_exchange(server.addr(), b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    // A fatal alert record (content type 21), then the server closed the connection.
    assert_eq!(reply.first(), Some(&0x15), "{reply:?}");
    assert!(reply.len() <= 7, "{reply:?}");
    still_serves(&mut good);
    let (_, stderr) = server.stop();
    assert_eq!(handshake_failures(&stderr), 1, "{stderr}");
    assert!(
        stderr.contains("did not open with a valid TLS ClientHello"),
        "{stderr}"
    );
}

#[test]
fn a_truncated_handshake_closes_only_that_connection() {
    let pki = pki();
    let server = start(&pki, "");
    let mut good = TlsClient::connect(&pki, server.port, ClientCert::None).unwrap();
    still_serves(&mut good);
    // Half of a genuine ClientHello, then the client gives up sending.
    let config = pki.client_config(ClientCert::None, &[]).unwrap();
    let mut client =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let mut hello = Vec::new();
    client.write_tls(&mut hello).unwrap();
    let mut socket = TcpStream::connect(server.addr()).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    socket.write_all(&hello[..hello.len() / 2]).unwrap();
    socket.shutdown(Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    socket
        .read_to_end(&mut reply)
        .expect("the server closes the connection");
    assert!(reply.is_empty(), "{reply:?}");
    still_serves(&mut good);
    let (_, stderr) = server.stop();
    assert_eq!(handshake_failures(&stderr), 1, "{stderr}");
    assert!(
        stderr.contains("before the handshake completed"),
        "{stderr}"
    );
}

#[test]
fn a_client_that_stalls_the_handshake_is_closed_after_the_timeout() {
    let pki = pki();
    let server = start(&pki, "handshake_timeout_ms = 300");
    let mut good = TlsClient::connect(&pki, server.port, ClientCert::None).unwrap();
    still_serves(&mut good); // completes its handshake now, well within the timeout
                             // Connects, sends nothing, keeps its side open: only the timeout can free the slot.
    let mut silent = TcpStream::connect(server.addr()).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut reply = Vec::new();
    let _ = silent.read_to_end(&mut reply);
    let waited = started.elapsed();
    assert!(reply.is_empty(), "{reply:?}");
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    still_serves(&mut good);
    let (_, stderr) = server.stop();
    assert!(
        stderr.contains("TLS handshake not completed in time"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_server_name_is_refused_with_unrecognized_name() {
    let pki = pki();
    let server = start(&pki, "server_names = [\"localhost\"]");
    let mut good = TlsClient::connect(&pki, server.port, ClientCert::None).unwrap();
    still_serves(&mut good);
    let request = "GET / HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n";
    let (code, out, err) = s_client(&server, &pki, &["-servername", "other.test"], request);
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("unrecognized name"), "{err}");
    still_serves(&mut good);
    let (_, stderr) = server.stop();
    assert_eq!(handshake_failures(&stderr), 1, "{stderr}");
    assert!(stderr.contains("other.test"), "{stderr}");
}

#[test]
fn bad_tls_settings_are_rejected_with_the_line_or_the_file() {
    let pki = pki();
    let dir = support::TempDir::new("tls-topology");
    let run = |command: &str, text: &str| {
        let path = dir.0.join("t.toml");
        std::fs::write(&path, text).unwrap();
        let output = Command::new(support::BIN)
            .args([command, "--topology"])
            .arg(&path)
            .arg("--stream-dir")
            .arg(&dir.0)
            .output()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let plan = |text: &str| {
        let path = dir.0.join("t.toml");
        std::fs::write(&path, text).unwrap();
        let output = Command::new(support::BIN)
            .args(["plan", "--topology"])
            .arg(&path)
            .output()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let good = topology(&pki, "").replace("{PORT}", &support::free_port().to_string());

    let no_table = good
        .replace("[listener.tls]", "[unused]")
        .replace("cert = ", "# cert = ")
        .replace("key = ", "# key = ")
        .replace("[unused]", "");
    let (code, err) = plan(&no_table);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("t.toml:9:"), "{err}");
    assert!(err.contains("no [listener.tls] table"), "{err}");

    let no_tls_in_chain = good.replace(r#"["tcp", "tls", "http"]"#, r#"["tcp", "http"]"#);
    let (code, err) = plan(&no_tls_in_chain);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("t.toml:11:"), "{err}");
    assert!(err.contains("the chain has no \"tls\""), "{err}");

    let (code, err) = plan(&topology(&pki, "client_auth = \"required\"").replace("{PORT}", "1"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("needs client_ca"), "{err}");

    let (code, err) = plan(&topology(&pki, "client_auth = \"sometimes\"").replace("{PORT}", "1"));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("t.toml:14:") && err.contains("sometimes"),
        "{err}"
    );

    // File problems are found at start and name the file.
    let missing = good.replace(&pki.server_key.display().to_string(), "missing-key.pem");
    let (code, err) = run("run", &missing);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("missing-key.pem"), "{err}");
    assert!(
        err.contains(&dir.0.display().to_string()),
        "relative to the topology file: {err}"
    );
}

#[test]
fn closes_are_announced_with_close_notify_in_both_directions() {
    let pki = pki();
    let server = start(&pki, "");
    // Server-side close (Connection: close): the response, then close_notify, then FIN.
    // rustls reports a FIN without close_notify as UnexpectedEof, so read_to_end proves it.
    let mut client = TlsClient::connect(&pki, server.port, ClientCert::None).unwrap();
    let response = client
        .request(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(response, (200, "Hello, World!".to_owned()));
    let mut rest = Vec::new();
    client
        .stream
        .read_to_end(&mut rest)
        .expect("a clean close_notify before the FIN");
    assert!(rest.is_empty(), "{rest:?}");

    // Client-side close: close_notify from the client ends the connection cleanly too.
    let mut client = TlsClient::connect(&pki, server.port, ClientCert::None).unwrap();
    still_serves(&mut client);
    client.stream.conn.send_close_notify();
    client.stream.flush().unwrap();
    let mut rest = Vec::new();
    client
        .stream
        .read_to_end(&mut rest)
        .expect("the server answers close_notify and closes");
    assert!(rest.is_empty(), "{rest:?}");
    let (_, stderr) = server.stop();
    assert_eq!(handshake_failures(&stderr), 0, "{stderr}");
}

#[test]
fn a_tls_client_that_stops_reading_does_not_grow_server_memory() {
    let pki = pki();
    let mut text = topology(&pki, "");
    text.push_str("\n[http]\nmax_body_bytes = 1073741824\n");
    let server = Server::start(&text);
    let mut good = TlsClient::connect(&pki, server.port, ClientCert::None).unwrap();
    still_serves(&mut good);
    let before = support::private_rss_kib(server.pid());
    // Upload 256 MiB to /echo without reading the echo: every window on the way (tcp, tls
    // both directions, http, echo) must fill and stall the client instead of buffering.
    let mut client = TlsClient::connect(&pki, server.port, ClientCert::None).unwrap();
    client
        .stream
        .sock
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    client
        .stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 268435456\r\n\r\n")
        .unwrap();
    let chunk = vec![b'z'; 65536];
    let mut sent = 0usize;
    while sent < 268_435_456 {
        match client.stream.write(&chunk) {
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
        "the upload should flow until the windows fill, got {sent}"
    );
    assert!(
        sent < 64 << 20,
        "server kept reading {sent} bytes from a client that never reads"
    );
    let grown = support::private_rss_kib(server.pid()).saturating_sub(before);
    eprintln!("uploaded {sent} bytes before the server stalled; private RSS grew {grown} KiB");
    assert!(grown < 8 * 1024, "server private RSS grew by {grown} KiB");
    still_serves(&mut good);
}

#[test]
fn websocket_over_tls_echoes_messages() {
    let pki = pki();
    let text = topology(&pki, "").replace(
        r#"nuklei = ["tcp", "tls", "http", "echo"]"#,
        r#"nuklei = ["tcp", "tls", "http", "ws", "echo"]"#,
    ) + "\n[[http.route]]\npath = \"/ws\"\nto = \"ws\"\n\n[[ws.route]]\npath = \"/ws/echo\"\nto = \"echo\"\n";
    let server = Server::start(&text);
    let mut good = TlsClient::connect(&pki, server.port, ClientCert::None).unwrap();
    still_serves(&mut good);
    let mut wss = TlsClient::connect(&pki, server.port, ClientCert::None).unwrap();
    let stream = &mut wss.stream;
    stream
        .write_all(b"GET /ws/echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");

    stream
        .write_all(&ws_client_frame(0x81, b"hello wss"))
        .unwrap();
    assert_eq!(ws_read_frame(stream), (0x81, b"hello wss".to_vec()));
    // A message larger than every window and TLS buffer on the way, both directions.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    stream.write_all(&ws_client_frame(0x82, &big)).unwrap();
    let mut echoed = Vec::new();
    while echoed.len() < big.len() {
        let (b0, payload) = ws_read_frame(stream);
        assert!(
            b0 & 0x0f == 0x02 || b0 & 0x0f == 0x00,
            "unexpected opcode {b0:#x}"
        );
        echoed.extend_from_slice(&payload);
    }
    assert!(echoed == big, "the echoed message differs");
    // Close handshake: the server answers with a close frame.
    stream
        .write_all(&ws_client_frame(0x88, &1000u16.to_be_bytes()))
        .unwrap();
    let (b0, _) = ws_read_frame(stream);
    assert_eq!(b0 & 0x0f, 0x08);
    still_serves(&mut good);
}

// ----- in-process: tls + http over rings, the test playing tcp and the application --------

mod spec {
    use super::*;
    use nukleus_http::ext::RequestHead;
    use nukleus_http::{HttpConfig, HttpNukleus, Route};
    use nukleus_tls::{ClientAuth, TlsConfig, TlsListener, TlsNukleus, TlsSettings};
    use std::time::Instant;
    use streams::frame::{self, Frame};
    use streams::{
        ring, Carries, Header, Link, Nukleus, PeerLink, PeerRole, PollContext, RingReader,
        RingWriter,
    };

    fn pair(label: &str) -> (RingWriter, RingReader) {
        ring(streams::SharedMapping::anonymous(1 << 20, label).unwrap())
    }

    fn peer(kind: &str, role: PeerRole, tx: RingWriter, rx: RingReader) -> PeerLink {
        PeerLink {
            kind: kind.into(),
            core: 0,
            role,
            link: Link {
                peer: kind.into(),
                tx,
                rx,
                peer_doorbell: None,
            },
        }
    }

    fn drain(rx: &mut RingReader) -> Vec<(u32, Vec<u8>)> {
        let mut frames = Vec::new();
        rx.read(usize::MAX, |t, b| frames.push((t, b.to_vec())));
        frames
    }

    /// Runs one request from a rustls client through tls and http, granting tls only
    /// `tcp_window` bytes of reply credit at a time, and returns the request head's headers as
    /// the application sees them.
    pub fn request_headers(
        settings: TlsSettings,
        pki: &TestPki,
        cert: ClientCert,
        tcp_window: u32,
    ) -> Vec<(String, String)> {
        let (mut tcp_tx, tls_from_tcp) = pair("tcp->tls");
        let (tls_to_tcp, mut tcp_rx) = pair("tls->tcp");
        let (tls_to_http, http_from_tls) = pair("tls->http");
        let (http_to_tls, tls_from_http) = pair("http->tls");
        let (http_to_app, mut app_rx) = pair("http->app");
        let (_app_tx, http_from_app) = pair("app->http");
        let config = TlsConfig {
            listeners: vec![Some(TlsListener {
                name: "https".into(),
                server_config: settings.server_config().unwrap(),
                next: "http".into(),
                handshake_timeout: Duration::from_secs(10),
            })],
            ..TlsConfig::default()
        };
        let mut tls = TlsNukleus::new(
            config,
            0,
            0,
            vec![
                peer(
                    "tcp",
                    PeerRole::network(Carries::Connection),
                    tls_to_tcp,
                    tls_from_tcp,
                ),
                peer(
                    "http",
                    PeerRole::application(Carries::SecureConnection),
                    tls_to_http,
                    tls_from_http,
                ),
            ],
        )
        .unwrap();
        let http_config = HttpConfig {
            routes: vec![Route {
                prefix: "/".into(),
                to: "app".into(),
                key_segment: None,
            }],
            ..HttpConfig::default()
        };
        let mut http = HttpNukleus::new(
            http_config,
            0,
            0,
            vec![
                peer(
                    "tls",
                    PeerRole::network(Carries::SecureConnection),
                    http_to_tls,
                    http_from_tls,
                ),
                peer(
                    "app",
                    PeerRole::application(Carries::HttpExchanges),
                    http_to_app,
                    http_from_app,
                ),
            ],
        );

        let client_config = pki.client_config(cert, &[]).unwrap();
        let mut client =
            rustls::ClientConnection::new(Arc::new(client_config), "localhost".try_into().unwrap())
                .unwrap();
        client
            .writer()
            .write_all(b"GET /whoami HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();

        let id = streams::SlotIds::new(0).initial(0, 1);
        let mut ex = [0u8; 128];
        let n = nukleus_tcp::encode_begin_ex(
            &nukleus_tcp::TcpBeginEx {
                listener: 0,
                remote: "127.0.0.1:40000".parse().unwrap(),
                local: None,
            },
            &mut ex,
        );
        tcp_tx.begin(&Header::new(id), id, &ex[..n]).unwrap();
        let (mut sent, mut tcp_credit) = (0u64, 0u64); // ciphertext to tls; tls's grant
        let mut received = 0u64; // reply ciphertext from tls
        let mut acked = 0u64; // what we acknowledged with our last WINDOW
        let mut pending = Vec::new(); // client ciphertext waiting for tls's window
        for _ in 0..200 {
            while client.wants_write() {
                client.write_tls(&mut pending).unwrap();
            }
            let n = pending.len().min((tcp_credit - sent) as usize);
            if n > 0 {
                let h = Header {
                    stream_id: id,
                    sequence: sent,
                    ..Header::default()
                };
                tcp_tx.data(&h, 0, n as u32, &[], &pending[..n]).unwrap();
                pending.drain(..n);
                sent += n as u64;
            }
            tcp_tx.publish();
            let context = PollContext {
                now: Instant::now(),
                timestamp: 0,
                core: 0,
            };
            tls.poll(&context);
            http.poll(&context);
            let mut grant = false;
            for (t, bytes) in drain(&mut tcp_rx) {
                let f = Frame::new(t, &bytes).unwrap();
                match (t, f.stream_id() == id) {
                    (frame::WINDOW, true) => tcp_credit = f.acknowledge() + f.maximum() as u64,
                    (frame::BEGIN, false) => grant = true,
                    (frame::DATA, false) => {
                        assert!(
                            f.sequence() + f.reserved() as u64 <= acked + tcp_window as u64,
                            "tls broke tcp's window: {f:?}"
                        );
                        received = f.sequence() + f.reserved() as u64;
                        client.read_tls(&mut f.payload()).unwrap();
                        client.process_new_packets().unwrap();
                        grant = true;
                    }
                    (frame::END | frame::ABORT, false) => panic!("tls closed the connection"),
                    _ => {}
                }
            }
            if grant {
                // tcp acknowledges reply bytes once "written": all of them, at once.
                acked = received;
                let h = Header {
                    stream_id: id ^ 1,
                    acknowledge: received,
                    maximum: tcp_window,
                    ..Header::default()
                };
                tcp_rx_window(&mut tcp_tx, &h);
            }
            for (t, bytes) in drain(&mut app_rx) {
                if t == frame::BEGIN {
                    let f = Frame::new(t, &bytes).unwrap();
                    let head = RequestHead::parse(f.extension()).expect("a request head");
                    assert_eq!(head.target, "/whoami");
                    return head
                        .headers()
                        .map(|(n, v)| (n.to_owned(), String::from_utf8_lossy(v).into_owned()))
                        .collect();
                }
            }
        }
        panic!("the request never reached the application");
    }

    fn tcp_rx_window(tcp_tx: &mut RingWriter, h: &Header) {
        tcp_tx.window(h, 0).unwrap();
    }

    fn mtls_settings(pki: &TestPki, mode: ClientAuth) -> TlsSettings {
        let mut settings = pki.server_settings();
        settings.client_ca_path = Some(pki.ca_cert.clone());
        settings.client_auth = mode;
        settings
    }

    #[test]
    fn the_verified_client_identity_reaches_the_application_as_pseudo_headers() {
        let pki = pki();
        let headers = request_headers(
            mtls_settings(&pki, ClientAuth::Required),
            &pki,
            ClientCert::Valid,
            65536,
        );
        let get = |name: &str| -> Vec<&str> {
            headers
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert_eq!(get(":tls-client-cn"), [CLIENT_CN], "{headers:?}");
        assert_eq!(
            get(":tls-client-san"),
            [CLIENT_DNS, CLIENT_URI],
            "{headers:?}"
        );
        assert_eq!(get("Host"), ["localhost"]);
    }

    #[test]
    fn anonymous_clients_get_no_identity_headers_and_tiny_tcp_windows_are_respected() {
        let pki = pki();
        // 200 bytes of reply credit at a time: the server's flight needs many WINDOWs.
        let headers = request_headers(
            mtls_settings(&pki, ClientAuth::Optional),
            &pki,
            ClientCert::None,
            200,
        );
        assert!(
            headers.iter().all(|(n, _)| !n.starts_with(':')),
            "{headers:?}"
        );
        assert!(headers.iter().any(|(n, v)| n == "Host" && v == "localhost"));
    }
}

#[test]
fn https_works_the_same_with_tcp_split_by_direction() {
    // tcp's socket writes on a second core (`tcp.out`): the handshake, keep-alive requests and
    // a body larger than every window cross the split in both directions.
    let pki = pki();
    let split = topology(&pki, "").replace(
        "nuklei = [\"tcp\", \"tls\", \"http\", \"echo\"]\n",
        "nuklei = [\"tcp\", \"tls\", \"http\", \"echo\"]\n\n[[core]]\nnuklei = [\"tcp.out\"]\n",
    );
    assert!(split.contains("tcp.out"));
    let server = Server::start(&split);
    let (code, body, err) = curl(
        &pki,
        &server,
        &[&https(&server, "/"), &https(&server, "/healthz")],
    );
    assert_eq!((code, body.as_str()), (0, "Hello, World!ok\n"), "{err}");
    let dir = support::TempDir::new("tls-split");
    let (path, out) = (dir.0.join("body.bin"), dir.0.join("out.bin"));
    let body: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    std::fs::write(&path, &body).unwrap();
    let (code, _, err) = curl(
        &pki,
        &server,
        &[
            "--data-binary",
            &format!("@{}", path.display()),
            "-o",
            out.to_str().unwrap(),
            &https(&server, "/echo"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        std::fs::read(&out).unwrap() == body,
        "the echoed body differs"
    );
    let (status, stderr) = server.stop();
    assert!(status.success(), "{stderr}");
}
