//! The client libraries against the real reaktor: the Rust client (clients/rust) here, the
//! Python client (clients/python, its unittest suite) through `python -m unittest`. Both
//! check the same promises: calls batched, the lease renewed without the application, no
//! ownership lost without an event saying so, no duplicate delivery, re-registration after
//! a dropped connection and after a server restart, release notifications, bounded buffers,
//! typed errors, redirects and `503 Retry-After` followed.

mod support;

use std::collections::HashSet;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use reaktor_client::{
    connect, Batch, Client, Config, Error, Event, Events, FailedPort, Message, Options,
};
use support::{python, workspace, Server, BIN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// `lease_ms` of tests/clients_topology.toml.
const LEASE_MS: u64 = 1500;

/// tests/clients_topology.toml, shared with the Python client's tests.
fn topology() -> String {
    std::fs::read_to_string(workspace().join("tests/clients_topology.toml")).unwrap()
}

fn options() -> Options {
    Options {
        max_batch_items: 100,
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        call_timeout: Duration::from_secs(15),
        connect_timeout: Duration::from_secs(15),
        ..Options::default()
    }
}

fn config(url: &str, node: &str) -> Config {
    Config::new([url], node)
        .token(format!("tok-{node}"))
        .address(format!("{node}.addr:7000"))
        .options(options())
}

async fn node(url: &str, node: &str) -> (Client, Events) {
    connect(config(url, node)).await.expect("connect")
}

fn ws_url(server: &Server) -> String {
    format!("ws://127.0.0.1:{}", server.port)
}

/// The next event matching `want` (others skipped), within `secs`.
async fn next_matching(events: &mut Events, secs: u64, want: impl Fn(&Event) -> bool) -> Event {
    tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            let e = events.next().await.expect("event stream ended");
            if want(&e) {
                return e;
            }
        }
    })
    .await
    .expect("event in time")
}

/// What the client holds is exactly what the switch says it owns, among `ports`.
async fn assert_held_is_true(client: &Client, node: &str, observer: &Client, ports: &[String]) {
    let owners = observer.query_ports(ports.to_vec()).await.unwrap();
    let switch: HashSet<String> = owners
        .into_iter()
        .filter(|p| p.owner.as_deref() == Some(node))
        .map(|p| p.port)
        .collect();
    assert_eq!(switch, client.held().await.unwrap(), "held set of {node}");
}

fn run<F: std::future::Future<Output = ()>>(f: F) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn ports(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

#[test]
fn rust_client_batches_calls_and_splits_results() {
    let server = Server::start(&topology());
    run(async {
        let (a, _ea) = node(&ws_url(&server), "n1").await;
        let before = a.requests_sent();
        let regs = join_all((0..40).map(|i| a.register([format!("p{i}"), format!("q{i}")]))).await;
        assert_eq!(
            a.requests_sent() - before,
            1,
            "40 calls of one turn, one request"
        );
        for (i, r) in regs.into_iter().enumerate() {
            assert_eq!(r.unwrap().owned, [format!("p{i}"), format!("q{i}")]);
        }
        let before = a.requests_sent();
        let big = a.register(ports("big", 250)).await.unwrap();
        assert_eq!((big.owned.len(), a.requests_sent() - before), (250, 3));
        let info = a.query_node("n1").await.unwrap();
        assert_eq!(
            (info.online, info.ports, info.address.as_deref()),
            (true, 330, Some("n1.addr:7000"))
        );
        let u = a.unregister(["p0", "nope"]).await.unwrap();
        assert_eq!(
            (u.released, u.unknown),
            (vec!["p0".to_string()], vec!["nope".to_string()])
        );
        assert_eq!(a.held().await.unwrap().len(), 329);
        // A bad call merged with good ones fails alone.
        let (good, bad) = tokio::join!(a.register(["fine"]), a.register(["x".repeat(65)]));
        assert_eq!(good.unwrap().owned, ["fine"]);
        let bad = bad.unwrap_err();
        assert!(matches!(bad, Error::LimitExceeded { .. }), "{bad}");
        assert!(bad.to_string().contains("64 bytes"), "{bad}");
        a.close().await;
    });
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn rust_client_discovers_owners_and_hears_releases() {
    let server = Server::start(&topology());
    run(async {
        let url = ws_url(&server);
        let (a, _ea) = node(&url, "n1").await;
        let (b, mut eb) = node(&url, "n2").await;
        a.register(["room:1", "room:2"]).await.unwrap();
        let r = b.register_or_subscribe(["room:1", "room:3"]).await.unwrap();
        assert_eq!(r.owned, ["room:3"]);
        assert_eq!(
            r.failed,
            [FailedPort::new("room:1", "n1", Some("n1.addr:7000"))]
        );
        assert!(b.held_and_watched().await.unwrap().1.contains("room:1"));
        a.unregister(["room:1"]).await.unwrap();
        let e = next_matching(&mut eb, 10, |_| true).await;
        assert_eq!(
            e,
            Event::Released {
                port: "room:1".into(),
                reason: "unregistered".into()
            }
        );
        assert_eq!(b.register(["room:1"]).await.unwrap().owned, ["room:1"]);
        b.register_or_subscribe(["room:2"]).await.unwrap();
        a.close().await;
        let e = next_matching(&mut eb, 10, |_| true).await;
        assert_eq!(
            e,
            Event::Released {
                port: "room:2".into(),
                reason: "node_offline".into()
            }
        );
        b.close().await;
        assert!(eb.next().await.is_none(), "the stream ends with the client");
    });
    server.stop();
}

#[test]
fn rust_client_delivers_each_message_once_in_order() {
    let server = Server::start(&topology());
    run(async {
        let url = ws_url(&server);
        let (rx, mut events) = node(&url, "n1").await;
        let (tx, _e) = node(&url, "n2").await;
        rx.register(["inbox"]).await.unwrap();
        let n = 20_000;
        let sender = tokio::spawn(async move {
            for k in (0..n).step_by(500) {
                let sends = (k..k + 500).map(|i| tx.send("inbox", i.to_string()));
                for r in join_all(sends).await {
                    r.unwrap();
                }
            }
            tx
        });
        for i in 0..n {
            let e = next_matching(&mut events, 20, |_| true).await;
            assert_eq!(
                e,
                Event::Push {
                    port: "inbox".into(),
                    body: i.to_string().into()
                }
            );
        }
        let tx = sender.await.unwrap();
        let rep = tx
            .send_report(vec![
                Message::to("inbox", "x"),
                Message::to_many(["inbox", "nobody"], "y"),
            ])
            .await
            .unwrap();
        assert_eq!((rep.delivered, rep.dropped), (2, 1));
        for body in ["x", "y"] {
            let e = next_matching(&mut events, 10, |_| true).await;
            assert_eq!(
                e,
                Event::Push {
                    port: "inbox".into(),
                    body: body.into()
                }
            );
        }
        assert!(
            tokio::time::timeout(Duration::from_millis(300), events.next())
                .await
                .is_err(),
            "no duplicate"
        );
    });
    server.stop();
}

#[test]
fn rust_client_hands_pushes_over_a_batch_at_a_time_in_order_mixed_with_other_events() {
    let server = Server::start(&topology());
    run(async {
        let url = ws_url(&server);
        let (rx, mut events) = node(&url, "n1").await;
        let (tx, _e) = node(&url, "n2").await;
        let (holder, _eh) = node(&url, "n3").await;
        rx.register(["a", "b"]).await.unwrap();
        holder.register(["held"]).await.unwrap();
        let r = rx.register_or_subscribe(["held"]).await.unwrap();
        assert_eq!(r.failed.len(), 1, "held by n3: n1 waits for its release");
        let n = 6_000;
        let sender = tokio::spawn(async move {
            for k in (0..n).step_by(500) {
                let batch = (k..k + 500)
                    .map(|i| Message::to(["a", "b"][i % 2], format!("{i:05}-body")))
                    .collect::<Vec<_>>();
                tx.send_many(batch).await.unwrap();
            }
            tx
        });
        // Every third take is one event (`next`), the others a whole batch read in place:
        // the order is the sender's, whatever mix the application uses.
        let mut got = 0;
        let mut batches = 0;
        let mut turn = 0;
        while got < n {
            turn += 1;
            let want = |i: usize| (["a", "b"][i % 2].to_string(), format!("{i:05}-body"));
            if turn % 3 == 0 {
                match next_matching(&mut events, 20, |_| true).await {
                    Event::Push { port, body } => {
                        assert_eq!((port.to_string(), body.to_string()), want(got));
                        got += 1;
                    }
                    e => panic!("unexpected {e:?}"),
                }
                continue;
            }
            let batch = tokio::time::timeout(Duration::from_secs(20), events.next_batch())
                .await
                .expect("a batch within 20 s")
                .expect("the stream goes on");
            match batch {
                Batch::Pushes(pushes) => {
                    assert!(!pushes.is_empty(), "a batch holds a push at least");
                    for p in pushes.iter() {
                        assert_eq!((p.port.to_string(), p.body.to_string()), want(got));
                        got += 1;
                    }
                    batches += 1;
                }
                Batch::Event(e) => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!(got, n, "no duplicate, none lost");
        assert!(batches > 0);
        let tx = sender.await.unwrap();
        // Another kind of event comes as a batch of its own, after the pushes before it.
        tx.send("a", "last").await.unwrap();
        holder.unregister(["held"]).await.unwrap();
        let mut rest = Vec::new();
        while rest.len() < 2 {
            match tokio::time::timeout(Duration::from_secs(10), events.next_batch())
                .await
                .expect("within 10 s")
                .expect("the stream goes on")
            {
                Batch::Pushes(pushes) => {
                    rest.extend(pushes.iter().map(|p| format!("push {} {}", p.port, p.body)))
                }
                Batch::Event(Event::Released { port, reason }) => {
                    rest.push(format!("released {port} {reason}"))
                }
                Batch::Event(e) => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!(rest, ["push a last", "released held unregistered"]);
        assert!(
            tokio::time::timeout(Duration::from_millis(300), events.next_batch())
                .await
                .is_err(),
            "nothing more"
        );
    });
    server.stop();
}

#[test]
fn rust_client_errors_are_typed_renewal_is_automatic_and_replacement_final() {
    let server = Server::start(&topology());
    run(async {
        let url = ws_url(&server);
        let e = connect(
            Config::new([url.as_str()], "n1")
                .token("nope")
                .options(options()),
        )
        .await
        .err()
        .unwrap();
        assert!(
            matches!(e, Error::Unauthorized { .. }) && e.to_string().contains("[[switch.token]]"),
            "{e}"
        );
        let e = connect(
            Config::new([url.as_str()], "n1")
                .token("tok-n2")
                .options(options()),
        )
        .await
        .err()
        .unwrap();
        assert!(
            matches!(e, Error::Forbidden { .. }) && e.to_string().contains("n1"),
            "{e}"
        );
        let (a, mut ea) = node(&url, "n1").await;
        a.register(["keep"]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(LEASE_MS * 3)).await;
        assert_eq!(
            a.query_port("keep").await.unwrap().owner.as_deref(),
            Some("n1")
        );
        assert!(
            ea.try_next().is_none(),
            "no disconnect while idle for three leases"
        );
        let (b, _eb) = node(&url, "n1").await;
        let e = next_matching(&mut ea, 10, |_| true).await;
        assert!(
            matches!(
                e,
                Event::Disconnected {
                    error: Error::Replaced { .. },
                    fin: true,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(matches!(
            a.register(["again"]).await,
            Err(Error::Replaced { .. })
        ));
        assert!(ea.next().await.is_none());
        assert_eq!(b.register(["keep"]).await.unwrap().owned, ["keep"]);
    });
    server.stop();
}

/// A TCP proxy in front of the switch whose connections the test can cut (a network drop).
struct Proxy {
    port: u16,
    cut: Arc<Notify>,
    generation: Arc<AtomicUsize>,
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(Notify::new());
        let generation = Arc::new(AtomicUsize::new(0));
        let (c, g) = (cut.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut down, _)) = listener.accept().await else {
                    return;
                };
                let (c, g) = (c.clone(), g.clone());
                tokio::spawn(async move {
                    let mine = g.load(Ordering::SeqCst);
                    let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                        _ = async { loop { c.notified().await; if g.load(Ordering::SeqCst) != mine { break } } } => {}
                    }
                });
            }
        });
        Proxy {
            port,
            cut,
            generation,
        }
    }

    fn cut_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.cut.notify_waiters();
    }
}

#[test]
fn rust_client_restores_ports_after_a_drop_and_reports_those_taken() {
    let server = Server::start(&topology());
    run(async {
        let proxy = Proxy::start(server.port).await;
        let slow = Options {
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(1),
            ..options()
        };
        let (a, mut ea) =
            connect(config(&format!("ws://127.0.0.1:{}", proxy.port), "n1").options(slow))
                .await
                .unwrap();
        let (b, mut eb) = node(&ws_url(&server), "n2").await;
        let all = ports("p", 350);
        a.register(all.clone()).await.unwrap();
        b.register_or_subscribe(["p0", "p1"]).await.unwrap();
        proxy.cut_all();
        let e = next_matching(&mut ea, 10, |e| matches!(e, Event::Disconnected { .. })).await;
        assert!(
            matches!(
                e,
                Event::Disconnected {
                    error: Error::ConnectionLost { .. },
                    held: 350,
                    fin: false
                }
            ),
            "{e:?}"
        );
        // While a waits to reconnect, b takes three of its ports.
        let mut released = HashSet::new();
        while released.len() < 2 {
            if let Event::Released { port, reason } = next_matching(&mut eb, 10, |_| true).await {
                assert_eq!(reason, "node_offline");
                released.insert(port);
            }
        }
        assert_eq!(b.register(["p0", "p1", "p2"]).await.unwrap().owned.len(), 3);
        let e = next_matching(&mut ea, 10, |e| matches!(e, Event::Reconnected { .. })).await;
        let Event::Reconnected {
            restored, mut lost, ..
        } = e
        else {
            unreachable!()
        };
        lost.sort_by(|x, y| x.port.cmp(&y.port));
        assert_eq!(restored, 347);
        assert_eq!(
            lost,
            ["p0", "p1", "p2"].map(|p| FailedPort::new(p, "n2", Some("n2.addr:7000")))
        );
        assert_held_is_true(&a, "n1", &b, &all).await;
        assert_held_is_true(&b, "n2", &a, &all).await;
    });
    server.stop();
}

#[test]
fn rust_client_restores_ports_after_a_server_restart() {
    let mut server = Server::start(&topology());
    let url = ws_url(&server);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (a, mut ea, b, mut eb) = rt.block_on(async {
        let (a, ea) = node(&url, "n1").await;
        let (b, eb) = node(&url, "n2").await;
        a.register(ports("r", 1000)).await.unwrap();
        b.register_or_subscribe(["r0", "w0"]).await.unwrap();
        (a, ea, b, eb)
    });
    // The clients' tasks stop while the runtime is not driven: the restart happens between.
    server.restart();
    rt.block_on(async {
        let is_reconnect = |e: &Event| matches!(e, Event::Reconnected { .. });
        let Event::Reconnected {
            restored: ra,
            lost: la,
            ..
        } = next_matching(&mut ea, 20, is_reconnect).await
        else {
            unreachable!()
        };
        let Event::Reconnected {
            restored: rb,
            acquired,
            ..
        } = next_matching(&mut eb, 20, is_reconnect).await
        else {
            unreachable!()
        };
        // Both asked for r0 again: exactly one has it, and knows it.
        assert_eq!(ra + acquired.len(), 1000);
        assert_eq!(ra + la.len(), 1000);
        assert_eq!(rb, 1);
        let mut all = ports("r", 1000);
        all.push("w0".into());
        assert_held_is_true(&a, "n1", &b, &all).await;
        assert_held_is_true(&b, "n2", &a, &all).await;
        b.send("r5", "after restart").await.unwrap();
        let e = next_matching(&mut ea, 10, |e| matches!(e, Event::Push { .. })).await;
        assert_eq!(
            e,
            Event::Push {
                port: "r5".into(),
                body: "after restart".into()
            }
        );
    });
    server.stop();
}

#[test]
fn rust_client_cuts_off_a_reader_that_does_not_keep_up_and_restores() {
    let server = Server::start(&topology());
    run(async {
        let url = ws_url(&server);
        let opts = Options {
            max_buffered_events: 100,
            max_stall: Duration::from_millis(500),
            ..options()
        };
        let (slow, mut events) = connect(config(&url, "n1").options(opts)).await.unwrap();
        let (tx, _e) = node(&url, "n2").await;
        slow.register(["flood"]).await.unwrap();
        // 400 small pushes: four times the buffer, far below the switch's queue limit, so
        // the client's own stall limit is what cuts the connection.
        for _ in 0..4 {
            tx.send_many(vec![Message::to("flood", "m".repeat(100)); 100])
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(tx.query_node("n1").await.unwrap().ports, 0, "cut off");
        assert!(!tx.query_node("n1").await.unwrap().online);
        let mut pushes = 0;
        let error = loop {
            match next_matching(&mut events, 10, |_| true).await {
                Event::Push { .. } => pushes += 1,
                Event::Disconnected { error, .. } => break error,
                e => panic!("{e:?}"),
            }
        };
        assert!(matches!(error, Error::SlowConsumer { .. }), "{error}");
        // The buffer, plus the one batch the reader was handed when it filled.
        assert!((100..=200).contains(&pushes), "{pushes} pushes buffered");
        // It reconnected only once the application read: no flapping meanwhile.
        let e = next_matching(&mut events, 10, |_| true).await;
        assert!(matches!(e, Event::Reconnected { restored: 1, .. }), "{e:?}");
        assert_eq!(
            tx.query_port("flood").await.unwrap().owner.as_deref(),
            Some("n1")
        );
        assert!(
            events.try_next().is_none(),
            "the pushes queued at the switch were dropped with the connection"
        );
    });
    server.stop();
}

/// A member that answers every WaitMsg handshake with `answers[i]` (then the last one again),
/// counting requests and the bearer tokens it saw.
async fn fake_member(
    answers: impl FnOnce(u16) -> Vec<String>,
) -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let answers = answers(port);
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    tokio::spawn(async move {
        let mut i = 0;
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            s.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&head).into_owned());
            let answer = answers[i.min(answers.len() - 1)].clone();
            i += 1;
            let _ = sock.write_all(answer.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    });
    (port, seen)
}

#[test]
fn rust_client_follows_redirects_with_its_token_and_waits_out_retry_after() {
    let server = Server::start(&topology());
    run(async {
        let redirect = format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{}/v1/ws/n1?address=n1.addr%3A7000\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}",
            server.port
        );
        let busy = "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 8\r\n\r\nelection".to_string();
        let (port, seen) = fake_member(|_| vec![busy.clone(), busy, redirect]).await;
        let dead = support::free_port();
        let t0 = Instant::now();
        let cfg = Config::new(
            [
                format!("ws://127.0.0.1:{dead}"),
                format!("http://127.0.0.1:{port}"),
            ],
            "n1",
        )
        .token("tok-n1")
        .options(options());
        let (a, _e) = connect(cfg).await.unwrap();
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_millis(1900),
            "two Retry-After: 1 honoured, waited {waited:?}"
        );
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 3);
        assert!(
            seen.iter()
                .all(|h| h.contains("authorization: Bearer tok-n1")
                    || h.contains("Authorization: Bearer tok-n1")),
            "{seen:?}"
        );
        // Connected at the real member, with the token it carried over.
        let info = a.query_node("n1").await.unwrap();
        assert!(info.online);
        assert_eq!(info.address.as_deref(), Some("n1.addr:7000"));
        // A member that redirects to itself forever: NotMaster, not a hang.
        let (loop_port, _) = fake_member(|p| {
            vec![format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{p}/v1/ws/n3\r\nContent-Length: 0\r\n\r\n"
            )]
        })
        .await;
        let e = connect(
            Config::new([format!("ws://127.0.0.1:{loop_port}")], "n3")
                .token("t")
                .options(Options {
                    connect_timeout: Duration::from_secs(3),
                    ..options()
                }),
        )
        .await
        .err()
        .unwrap();
        assert!(
            matches!(e, Error::NotMaster { .. } | Error::ConnectFailed { .. }),
            "{e}"
        );
    });
    server.stop();
}

/// The Python client's suite (clients/python/tests) against this build's binary.
#[test]
fn python_client_suite_passes() {
    let output = Command::new(python())
        .args([
            "-m",
            "unittest",
            "discover",
            "-s",
            "clients/python/tests",
            "-t",
            "clients/python/tests",
        ])
        .current_dir(workspace())
        .env("REAKTOR_BIN", BIN)
        .env("PYTHONASYNCIODEBUG", "0")
        .output()
        .expect("run python (scripts/setup-test-deps.sh installs clients/python into .venv)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.contains("\nOK"),
        "{stderr}"
    );
}

/// Issue 15 through the Rust client: a watch that resumes after a network drop with each
/// event once, listings page by page, a handover the receiver holds, the session id.
#[test]
fn rust_client_watches_resume_after_a_drop_lists_and_hands_over() {
    let server = Server::start(&topology());
    run(async {
        let proxy = Proxy::start(server.port).await;
        let (w, mut ew) = connect(config(&format!("ws://127.0.0.1:{}", proxy.port), "n3"))
            .await
            .unwrap();
        let (b, _eb) = node(&ws_url(&server), "n4").await;
        let first_session = w.session().await.expect("a session");
        let watch = w.watch_ports("job:", true).await.unwrap();
        b.register(["job:1", "other"]).await.unwrap();
        let e = next_matching(&mut ew, 10, |e| matches!(e, Event::Watch(_))).await;
        let Event::Watch(ev) = e else { unreachable!() };
        assert_eq!(
            (
                ev.watch,
                ev.event.as_str(),
                ev.port.as_deref(),
                ev.owner.as_deref()
            ),
            (watch, "acquired", Some("job:1"), Some("n4"))
        );
        proxy.cut_all();
        next_matching(&mut ew, 10, |e| matches!(e, Event::Disconnected { .. })).await;
        b.register(["job:2"]).await.unwrap();
        b.unregister(["job:1"]).await.unwrap();
        // The watch resumes on the new connection: what happened meanwhile, once each.
        let mut seen = Vec::new();
        let mut reconnected = false;
        while seen.len() < 2 || !reconnected {
            match next_matching(&mut ew, 10, |_| true).await {
                Event::Watch(ev) => seen.push((ev.event, ev.port.unwrap_or_default())),
                Event::Reconnected { .. } => reconnected = true,
                _ => {}
            }
        }
        seen.sort();
        assert_eq!(
            seen,
            [
                ("acquired".into(), "job:2".into()),
                ("released".into(), "job:1".into())
            ]
        );
        assert_ne!(w.session().await, Some(first_session));
        // Listings, page by page.
        b.register(ports("lst:", 12)).await.unwrap();
        let mut listed = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = w
                .list_ports("lst:", after.as_deref(), Some(5))
                .await
                .unwrap();
            assert!(page.entries.len() <= 5);
            listed.extend(page.entries.into_iter().map(|p| p.port));
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        let mut want = ports("lst:", 12);
        want.sort();
        assert_eq!(listed, want);
        let nodes = w.list_nodes("n", None, None).await.unwrap();
        let ids: Vec<&str> = nodes.entries.iter().map(|n| n.node.as_str()).collect();
        assert_eq!(ids, ["n3", "n4"]);
        let mine = b.node_ports("n4", None, Some(100)).await.unwrap();
        assert_eq!(mine.entries.len(), 14, "{mine:?}");
        // A handover: the receiver is told and holds the ports.
        let h = b.handover("n3", ["lst:0", "lst:1", "nope"]).await.unwrap();
        assert_eq!(
            (h.moved.len(), h.unknown.as_slice()),
            (2, ["nope".to_string()].as_slice())
        );
        for _ in 0..2 {
            next_matching(&mut ew, 10, |e| matches!(e, Event::HandedOver { .. })).await;
        }
        let held = w.held().await.unwrap();
        assert!(held.contains("lst:0") && held.contains("lst:1"), "{held:?}");
        assert!(!b.held().await.unwrap().contains("lst:0"));
        w.unwatch(watch).await.unwrap();
    });
    server.stop();
}

/// The next watch event of watcher `w`, within 10 s.
async fn next_watch(w: &mut reaktor_client::Watcher) -> reaktor_client::WatchEvent {
    match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
        Ok(Ok(Event::Watch(ev))) => *ev,
        other => panic!("{other:?}"),
    }
}

/// The Rust client's watcher that is not a node (token `dash` of tests/clients_topology.toml:
/// ports under `room:`, every node): it follows ports and nodes, is not a node, resumes
/// without a gap after a dropped connection, and is refused what its token does not grant.
#[test]
fn rust_watcher_follows_ports_and_nodes_and_resumes_after_a_drop() {
    use reaktor_client::{watch, WatchSpec, WatcherOptions};
    let server = Server::start(&topology());
    run(async {
        let url = ws_url(&server);
        let options = || WatcherOptions {
            initial_backoff: Duration::from_millis(20),
            ..WatcherOptions::default()
        };
        let refused = watch(
            &[&url],
            "dash",
            WatchSpec::ports("secret/", true),
            options(),
        )
        .await;
        assert!(
            matches!(refused, Err(Error::Forbidden { .. })),
            "{:?}",
            refused.err()
        );
        let mut w = watch(&[&url], "dash", WatchSpec::ports("room:", true), options())
            .await
            .unwrap();
        let nodes = w.watch(WatchSpec::nodes("n", true)).await.unwrap();
        let forbidden = w.watch(WatchSpec::ports("hall", false)).await;
        assert!(
            matches!(forbidden, Err(Error::Forbidden { .. })),
            "{forbidden:?}"
        );
        let (a, _ea) = node(&url, "n1").await;
        let ev = next_watch(&mut w).await;
        assert_eq!(
            (ev.watch, ev.event.as_str(), ev.node.as_deref()),
            (nodes, "online", Some("n1"))
        );
        a.register(["room:1", "hall"]).await.unwrap();
        let ev = next_watch(&mut w).await;
        assert_eq!(
            (ev.watch, ev.event.as_str(), ev.port.as_deref()),
            (1, "acquired", Some("room:1"))
        );
        // Not a node: n1 alone is online.
        let listed = a.list_nodes("", None, None).await.unwrap();
        let ids: Vec<&str> = listed.entries.iter().map(|n| n.node.as_str()).collect();
        assert_eq!(ids, ["n1"]);
        // Dropped; meanwhile room:1 goes and room:2 comes: both once, after the resume.
        w.abort();
        a.unregister(["room:1"]).await.unwrap();
        a.register(["room:2"]).await.unwrap();
        let mut seen = [next_watch(&mut w).await, next_watch(&mut w).await];
        seen.sort_by_key(|e| e.port.clone());
        let seen: Vec<(&str, &str)> = seen
            .iter()
            .map(|e| (e.event.as_str(), e.port.as_deref().unwrap_or_default()))
            .collect();
        assert_eq!(seen, [("released", "room:1"), ("acquired", "room:2")]);
        a.register(["room:3"]).await.unwrap();
        let ev = next_watch(&mut w).await;
        assert_eq!(ev.port.as_deref(), Some("room:3"), "nothing twice");
        w.close();
        assert!(matches!(w.next().await, Err(Error::Closed)));
        a.close().await;
    });
}
