//! Running out of resources, against the real binary: file descriptors (the accept queue
//! must not stall once they are free again).

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{Options, Server};

/// A client connection that sent one request and waits for its answer.
struct Client {
    stream: TcpStream,
    answered: bool,
}

/// Reads without blocking from every unanswered client until none has news for `quiet`
/// (or `limit` passed); returns how many are answered.
fn collect_answers(clients: &mut [Client], quiet: Duration, limit: Duration) -> usize {
    let started = Instant::now();
    let mut last_news = Instant::now();
    let mut buffer = [0u8; 256];
    loop {
        for client in clients.iter_mut().filter(|c| !c.answered) {
            match client.stream.read(&mut buffer) {
                Ok(n) if n > 0 => {
                    assert!(buffer[..n].starts_with(b"HTTP/1.1 200 "));
                    client.answered = true;
                    last_news = Instant::now();
                }
                Ok(_) => panic!("the server closed a queued connection"),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        let answered = clients.iter().filter(|c| c.answered).count();
        if answered == clients.len() || last_news.elapsed() >= quiet || started.elapsed() >= limit {
            return answered;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `ulimit -n 128`, 160 connections: the server accepts until it is out of descriptors and
/// the rest wait in the listen backlog. Once 60 served clients leave, the queued ones are
/// served without any new connection arriving (accept is retried on a timer), and the pause
/// is logged once.
#[test]
fn queued_clients_are_served_once_descriptors_are_free_again() {
    let server = Server::start_with(
        &support::default_topology(),
        &Options {
            max_open_files: Some(128),
            log: Some("info".into()),
            ..Options::default()
        },
    );
    let mut clients: Vec<Client> = (0..160)
        .map(|_| {
            let mut stream = TcpStream::connect(server.addr()).unwrap();
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            stream.set_nonblocking(true).unwrap();
            Client {
                stream,
                answered: false,
            }
        })
        .collect();
    let served = collect_answers(
        &mut clients,
        Duration::from_secs(1),
        Duration::from_secs(10),
    );
    assert!(
        (60..clients.len()).contains(&served),
        "{served} served: the descriptor limit should have stopped the server short of 160"
    );

    // 60 served clients leave; nobody new arrives.
    let mut left = 0;
    clients.retain(|c| {
        let leave = c.answered && left < 60;
        left += leave as usize;
        !leave
    });
    let served = collect_answers(
        &mut clients,
        Duration::from_secs(5),
        Duration::from_secs(10),
    );
    assert_eq!(served, clients.len(), "every queued client is served");

    drop(clients);
    let (_, stderr) = server.stop();
    assert_eq!(
        stderr.matches("cannot accept connections").count(),
        1,
        "logged once: {stderr}"
    );
    assert!(stderr.contains("Too many open files"), "{stderr}");
    assert_eq!(stderr.matches("accepting connections again").count(), 1);
}
