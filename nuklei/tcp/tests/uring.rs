//! The tcp nukleus on io_uring against a scripted peer (a stand-in for http) over real rings,
//! real clients on loopback: the same frames as the epoll transport, and the receive side's
//! bounds (a shut window pauses receiving and gives the shared buffers back).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use mio::{Events, Poll};
use nukleus_tcp::{ListenerConfig, TcpConfig, UringTcpNukleus};
use streams::frame::{self, Frame};
use streams::{Header, Link, Nukleus, PeerLink, PollContext, TokenRange};

struct Harness {
    tcp: UringTcpNukleus,
    poll: Poll,
    /// The http side of the link.
    peer: Link,
    start: Instant,
}

#[derive(Debug, Clone, PartialEq)]
struct Seen {
    type_id: u32,
    stream_id: u64,
    payload: Vec<u8>,
}

impl Harness {
    /// A tcp nukleus with `buffers` provided buffers of `size` bytes.
    fn new(buffers: u16, size: u32) -> Harness {
        let (tcp_side, peer) = Link::pair(1 << 20, "tcp", "http").unwrap();
        let config = TcpConfig {
            listeners: vec![ListenerConfig {
                name: "test".into(),
                address: "127.0.0.1:0".parse().unwrap(),
                next: "http".into(),
                backlog: 128,
            }],
            io_uring_buffers: buffers,
            io_uring_buffer_size: size,
            ..TcpConfig::default()
        };
        let links = vec![PeerLink {
            kind: "http".into(),
            core: 0,
            role: streams::PeerRole::application(streams::Carries::Connection),
            link: tcp_side,
        }];
        let mut tcp = UringTcpNukleus::new(config, 0, 0, links)
            .map_err(|(e, _)| e)
            .expect("io_uring is available on the test machine");
        let poll = Poll::new().unwrap();
        let tokens = TokenRange {
            first: 1 << 16,
            count: 1 << 16,
        };
        tcp.register(poll.registry(), tokens).unwrap();
        Harness {
            tcp,
            poll,
            peer,
            start: Instant::now(),
        }
    }

    fn client(&self) -> TcpStream {
        let client = TcpStream::connect(self.tcp.local_addresses()[0]).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client
    }

    fn turn(&mut self) -> Vec<Seen> {
        let mut events = Events::with_capacity(64);
        // Completions are posted by task work, which interrupts a waiting epoll (EINTR),
        // as the core loop expects.
        if let Err(e) = self.poll.poll(&mut events, Some(Duration::from_millis(1))) {
            assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "{e}");
        }
        let now = Instant::now();
        self.tcp.poll(&PollContext {
            now,
            timestamp: now.duration_since(self.start).as_nanos() as u64,
            core: 0,
        });
        let mut seen = Vec::new();
        self.peer.rx.read(usize::MAX, |type_id, bytes| {
            let f = Frame::new(type_id, bytes).unwrap();
            seen.push(Seen {
                type_id,
                stream_id: f.stream_id(),
                payload: if type_id == frame::DATA {
                    f.payload().to_vec()
                } else {
                    Vec::new()
                },
            });
        });
        seen
    }

    fn until(&mut self, what: &str, done: impl Fn(&[Seen]) -> bool) -> Vec<Seen> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut all = Vec::new();
        while !done(&all) {
            assert!(Instant::now() < deadline, "{what}: peer saw only {all:?}");
            all.extend(self.turn());
        }
        all
    }

    /// Turns for `time`, collecting what the peer received.
    fn turns_for(&mut self, time: Duration) -> Vec<Seen> {
        let until = Instant::now() + time;
        let mut all = Vec::new();
        while Instant::now() < until {
            all.extend(self.turn());
        }
        all
    }

    fn send(&mut self, write: impl FnOnce(&mut streams::RingWriter)) {
        write(&mut self.peer.tx);
        self.peer.publish();
    }

    fn grant(&mut self, id: u64, acknowledge: u64, maximum: u32) {
        self.send(|tx| {
            let window = Header {
                stream_id: id,
                acknowledge,
                maximum,
                ..Header::default()
            };
            tx.window(&window, 0).unwrap();
        });
    }

    fn gauge(&self, name: &str) -> u64 {
        let mut out = Vec::new();
        self.tcp.gauges(&mut out);
        out.into_iter().find(|(n, _)| *n == name).unwrap().1
    }
}

fn has(seen: &[Seen], type_id: u32) -> bool {
    seen.iter().any(|s| s.type_id == type_id)
}

fn data(seen: &[Seen]) -> Vec<u8> {
    seen.iter()
        .filter(|s| s.type_id == frame::DATA)
        .flat_map(|s| s.payload.iter().copied())
        .collect()
}

/// Connects a client, lets the peer accept it with a window of `window` bytes for the request.
fn accepted(h: &mut Harness, window: u32) -> (TcpStream, u64) {
    let client = h.client();
    let seen = h.until("initial BEGIN", |s| has(s, frame::BEGIN));
    let id = seen[0].stream_id;
    h.send(|tx| tx.begin(&Header::new(id ^ 1), 0, &[]).unwrap());
    h.grant(id, 0, window);
    h.until("reply WINDOW", |s| has(s, frame::WINDOW));
    (client, id)
}

#[test]
fn bytes_flow_both_ways_and_an_ended_reply_closes_the_connection() {
    let mut h = Harness::new(8, 4096);
    let (mut client, id) = accepted(&mut h, 65536);
    assert_eq!(h.gauge("io_uring"), 1);

    client.write_all(b"hello").unwrap();
    let seen = h.until("request DATA", |s| has(s, frame::DATA));
    assert_eq!(data(&seen), b"hello");
    assert_eq!(seen[0].stream_id, id);

    h.send(|tx| {
        tx.data(&Header::new(id ^ 1), 0, 5, &[], b"world").unwrap();
        tx.end(&Header::new(id ^ 1), &[]).unwrap();
    });
    h.turns_for(Duration::from_millis(50));
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"world", "the reply, then the FIN");

    drop(client);
    h.until("END of the request stream", |s| has(s, frame::END));
    h.turns_for(Duration::from_millis(20));
    assert_eq!(h.gauge("connections"), 0, "both directions ended: freed");
    assert_eq!(h.gauge("io_uring_buffers_lent"), 0);
}

#[test]
fn a_shut_window_pauses_receiving_and_gives_the_shared_buffers_back() {
    // Two small buffers for everyone: a peer that grants nothing more must not keep them.
    let mut h = Harness::new(2, 4096);
    let (client, id) = accepted(&mut h, 1000);
    let sent: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let writer = {
        let sent = sent.clone();
        let mut client = client.try_clone().unwrap();
        std::thread::spawn(move || client.write_all(&sent).unwrap())
    };
    let seen = h.turns_for(Duration::from_millis(300));
    assert_eq!(
        data(&seen),
        &sent[..1000],
        "exactly the window's bytes, in order"
    );
    assert_eq!(
        h.gauge("io_uring_buffers_lent"),
        0,
        "the held bytes left the ring's buffers"
    );

    // A second connection is still served while the first one's window stays shut.
    let (mut other, other_id) = accepted(&mut h, 65536);
    other.write_all(b"still served").unwrap();
    let seen = h.until("the other connection's DATA", |s| {
        s.iter()
            .any(|s| s.type_id == frame::DATA && s.stream_id == other_id)
    });
    assert_eq!(
        data(
            &seen
                .into_iter()
                .filter(|s| s.stream_id == other_id)
                .collect::<Vec<_>>()
        ),
        b"still served"
    );

    // Open the window bit by bit: every byte arrives once, in order.
    let mut received = sent[..1000].to_vec();
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.len() < sent.len() {
        assert!(Instant::now() < deadline, "only {} bytes", received.len());
        h.grant(id, received.len() as u64, 16384);
        let seen = h.turns_for(Duration::from_millis(5));
        received.extend(data(
            &seen
                .into_iter()
                .filter(|s| s.stream_id == id)
                .collect::<Vec<_>>(),
        ));
    }
    assert!(received == sent, "the upload arrives intact");
    writer.join().unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    h.until("END after the FIN", |s| {
        s.iter()
            .any(|s| s.type_id == frame::END && s.stream_id == id)
    });
}
