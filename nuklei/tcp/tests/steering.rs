//! Steering: when a tcp instance is told to stop accepting, the instances that still accept take
//! every new connection, including those the kernel queued to the stopped instance's socket;
//! connections it already had stay with it. Two real tcp nuklei share one `SO_REUSEPORT`
//! address on loopback; real clients connect.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};
use nukleus_tcp::{decode_begin_ex, ListenerConfig, Steering, TcpConfig, TcpNukleus};
use streams::frame::{self, Frame};
use streams::{Link, Nukleus, PeerLink, PollContext, TokenRange};

struct Instance {
    tcp: TcpNukleus,
    poll: Poll,
    /// The http side of the link: frames tcp sent.
    http: Link,
}

fn instance(index: u16, address: SocketAddr) -> Instance {
    let (tcp_side, http) = Link::pair(1 << 20, "tcp", "http").unwrap();
    let config = TcpConfig {
        listeners: vec![ListenerConfig {
            name: "test".into(),
            address,
            next: "http".into(),
            backlog: 128,
        }],
        ..TcpConfig::default()
    };
    let tcp = TcpNukleus::new(
        config,
        0,
        index,
        vec![PeerLink {
            kind: "http".into(),
            core: 0,
            role: streams::PeerRole::application(streams::Carries::Connection),
            link: tcp_side,
        }],
    )
    .unwrap();
    let poll = Poll::new().unwrap();
    Instance { tcp, poll, http }
}

impl Instance {
    fn register(&mut self) {
        self.tcp
            .register(
                self.poll.registry(),
                TokenRange {
                    first: 1 << 16,
                    count: 1 << 16,
                },
            )
            .unwrap();
    }

    fn turn(&mut self, events: &mut Events, start: Instant) {
        self.poll
            .poll(events, Some(Duration::from_millis(1)))
            .unwrap();
        for event in events.iter() {
            if event.token() != Token(0) {
                self.tcp.on_event(event);
            }
        }
        let now = Instant::now();
        self.tcp.poll(&PollContext {
            now,
            timestamp: now.duration_since(start).as_nanos() as u64,
            core: 0,
        });
    }

    /// The clients whose connections this instance opened streams for (remote ports).
    fn opened(&mut self) -> Vec<u16> {
        let mut ports = Vec::new();
        self.http.rx.read(usize::MAX, |type_id, bytes| {
            let f = Frame::new(type_id, bytes).unwrap();
            if f.type_id() == frame::BEGIN {
                let ex = decode_begin_ex(f.extension()).unwrap();
                ports.push(ex.remote.port());
            }
        });
        ports
    }
}

#[test]
fn when_a_tcp_instance_stops_accepting_the_others_take_its_new_connections_and_it_keeps_its_own() {
    let mut a = instance(0, "127.0.0.1:0".parse().unwrap());
    let address = a.tcp.local_addresses()[0];
    let mut b = instance(1, address);
    let steering = Steering::new(2);
    a.tcp = a.tcp.with_steering(steering.clone(), 0);
    b.tcp = b.tcp.with_steering(steering.clone(), 1);
    a.register();
    b.register();
    let start = Instant::now();
    let mut events = Events::with_capacity(64);
    let mut drive = |a: &mut Instance,
                     b: &mut Instance,
                     a_seen: &mut Vec<u16>,
                     b_seen: &mut Vec<u16>,
                     want: usize| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while a_seen.len() + b_seen.len() < want && Instant::now() < deadline {
            a.turn(&mut events, start);
            b.turn(&mut events, start);
            a_seen.extend(a.opened());
            b_seen.extend(b.opened());
        }
    };

    // Both accepting: the kernel spreads 40 connections over the two listeners.
    let mut early = Vec::new();
    for _ in 0..40 {
        early.push(TcpStream::connect(address).unwrap());
    }
    let (mut a_seen, mut b_seen) = (Vec::new(), Vec::new());
    drive(&mut a, &mut b, &mut a_seen, &mut b_seen, 40);
    assert_eq!(a_seen.len() + b_seen.len(), 40);
    assert!(
        !a_seen.is_empty() && !b_seen.is_empty(),
        "the kernel used both listeners"
    );
    let a_before = a_seen.len();

    // a stops accepting: every new connection opens its stream at b, whichever listener the
    // kernel picked (b accepts from a's socket too).
    steering.set_accepting(0, false);
    let mut late = Vec::new();
    for _ in 0..40 {
        late.push(TcpStream::connect(address).unwrap());
    }
    let (mut a_late, mut b_late) = (Vec::new(), Vec::new());
    drive(&mut a, &mut b, &mut a_late, &mut b_late, 40);
    assert_eq!(a_late, Vec::<u16>::new(), "a opened no new stream");
    assert_eq!(b_late.len(), 40);
    let taken_over = steering.taken_over(1);
    assert!(
        taken_over > 0,
        "the kernel queued some new connections to a's socket"
    );
    assert_eq!(steering.taken_over(0), 0);

    // Live connections did not move: a still holds the ones it had, b holds the rest.
    let gauge = |tcp: &TcpNukleus, name: &str| {
        let mut g = Vec::new();
        tcp.gauges(&mut g);
        g.into_iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    };
    assert_eq!(gauge(&a.tcp, "connections"), Some(a_before as u64));
    assert_eq!(gauge(&b.tcp, "connections"), Some((80 - a_before) as u64));
    assert_eq!(gauge(&a.tcp, "accepting"), Some(0));
    assert_eq!(gauge(&b.tcp, "listeners_taken_over"), Some(1));
    assert_eq!(
        gauge(&b.tcp, "connections_taken_over_total"),
        Some(taken_over)
    );

    // a accepts again: b gives its socket back, and the kernel spreads new connections again.
    steering.set_accepting(0, true);
    let mut again = Vec::new();
    for _ in 0..40 {
        again.push(TcpStream::connect(address).unwrap());
    }
    let (mut a_again, mut b_again) = (Vec::new(), Vec::new());
    drive(&mut a, &mut b, &mut a_again, &mut b_again, 40);
    assert_eq!(a_again.len() + b_again.len(), 40);
    assert!(!a_again.is_empty(), "a takes new connections again");
    assert_eq!(gauge(&b.tcp, "listeners_taken_over"), Some(0));
    drop((early, late, again));
}
