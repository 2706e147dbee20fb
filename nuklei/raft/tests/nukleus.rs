//! Three `RaftNukleus` members over real loopback sockets, each polled as a reaktor core
//! would (epoll until a socket event or the deadline): one master is elected and published,
//! a member whose master is gone elects another, a stranger's bytes are refused, and a state
//! directory serves one member at a time.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll};
use nukleus_raft::{
    ElectionConfig, LockError, NetConfig, RaftNukleus, RaftNukleusConfig, RaftStartError,
};
use streams::{Mastership, Nukleus, PollContext, TokenRange};

struct Member {
    id: u64,
    nukleus: RaftNukleus,
    poll: Poll,
    mastership: Arc<Mastership>,
}

fn free_addresses(n: usize) -> Vec<SocketAddr> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners.iter().map(|l| l.local_addr().unwrap()).collect()
}

fn config(id: u64, addresses: &[SocketAddr], dir: &std::path::Path) -> RaftNukleusConfig {
    let ids: Vec<u64> = (1..=addresses.len() as u64).collect();
    RaftNukleusConfig {
        election: ElectionConfig {
            heartbeat: Duration::from_millis(20),
            election_timeout: Duration::from_millis(150),
            ..ElectionConfig::new(id, ids.clone())
        },
        state_dir: dir.join(format!("member-{id}")),
        listen: addresses[id as usize - 1],
        peers: ids
            .iter()
            .filter(|&&p| p != id)
            .map(|&p| (p, addresses[p as usize - 1]))
            .collect(),
        net: NetConfig::default(),
        realtime_priority: None,
    }
}

fn start(id: u64, addresses: &[SocketAddr], dir: &std::path::Path) -> Member {
    let mastership = Arc::new(Mastership::new());
    let mut nukleus = RaftNukleus::start(
        config(id, addresses, dir),
        mastership.clone(),
        Instant::now(),
    )
    .expect("member starts");
    let poll = Poll::new().unwrap();
    nukleus
        .register(
            poll.registry(),
            TokenRange {
                first: 1 << 32,
                count: 1 << 32,
            },
        )
        .unwrap();
    Member {
        id,
        nukleus,
        poll,
        mastership,
    }
}

/// Runs every member for `time`, each like a core: poll, then wait for events or the deadline
/// (bounded so the others get their turn).
fn run(members: &mut [Member], time: Duration) {
    let end = Instant::now() + time;
    let mut events = Events::with_capacity(64);
    while Instant::now() < end {
        for m in members.iter_mut() {
            let now = Instant::now();
            m.nukleus.poll(&PollContext {
                now,
                timestamp: 0,
                core: 0,
            });
            let _ = m.poll.poll(&mut events, Some(Duration::from_millis(1)));
            for event in events.iter() {
                m.nukleus.on_event(event);
            }
        }
    }
}

fn masters(members: &[Member]) -> Vec<(u64, u64)> {
    let now = Instant::now();
    members
        .iter()
        .filter_map(|m| m.mastership.serving(now).map(|epoch| (m.id, epoch)))
        .collect()
}

fn run_until_one_master(members: &mut [Member], within: Duration) -> (u64, u64) {
    let end = Instant::now() + within;
    while Instant::now() < end {
        run(members, Duration::from_millis(20));
        let serving = masters(members);
        assert!(serving.len() <= 1, "two masters at once: {serving:?}");
        if let [one] = serving.as_slice() {
            return *one;
        }
    }
    panic!("no master within {within:?}");
}

#[test]
fn three_members_elect_one_master_and_elect_another_when_it_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let addresses = free_addresses(3);
    let mut members: Vec<Member> = (1..=3)
        .map(|id| start(id, &addresses, dir.path()))
        .collect();
    let (master, epoch) = run_until_one_master(&mut members, Duration::from_secs(5));
    // Every member knows who leads.
    run(&mut members, Duration::from_millis(100));
    for m in &members {
        assert_eq!(m.mastership.read().leader, Some(master), "member {}", m.id);
    }
    // The master goes away (its sockets close with it): the other two elect a new one, in a
    // later epoch, once the old lease cannot be running any more.
    members.retain(|m| m.id != master);
    let (next, next_epoch) = run_until_one_master(&mut members, Duration::from_secs(5));
    assert_ne!(next, master);
    assert!(next_epoch > epoch, "epoch {next_epoch} after {epoch}");
}

#[test]
fn a_stranger_is_refused_and_the_cluster_does_not_care() {
    let dir = tempfile::tempdir().unwrap();
    let addresses = free_addresses(3);
    let mut members: Vec<Member> = (1..=3)
        .map(|id| start(id, &addresses, dir.path()))
        .collect();
    run_until_one_master(&mut members, Duration::from_secs(5));
    let mut stranger = TcpStream::connect(addresses[0]).unwrap();
    stranger
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    run(&mut members, Duration::from_millis(100));
    stranger
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 16];
    let read = std::io::Read::read(&mut stranger, &mut buf);
    assert!(
        matches!(read, Ok(0)) || read.is_err(),
        "connection not closed: {read:?}"
    );
    run(&mut members, Duration::from_millis(300));
    assert_eq!(masters(&members).len(), 1);
}

#[test]
fn a_state_directory_serves_one_member_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let addresses = free_addresses(3);
    let first = start(1, &addresses, dir.path());
    let again = RaftNukleus::start(
        config(1, &free_addresses(3), dir.path()),
        Arc::new(Mastership::new()),
        Instant::now(),
    );
    match again {
        Err(RaftStartError::Lock(LockError::InUse { .. })) => {}
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a second member started on a locked state directory"),
    }
    drop(first);
    RaftNukleus::start(
        config(1, &free_addresses(3), dir.path()),
        Arc::new(Mastership::new()),
        Instant::now(),
    )
    .expect("the directory is free once the first member is gone");
}
