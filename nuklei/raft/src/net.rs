//! The member's peer sockets, on mio: a listener on this member's peer address for what the
//! others send, and one outgoing connection per other member for what this one sends, each
//! opened with a HELLO frame that names the sender. One direction per connection, so two
//! members never have to agree which of two crossing connections to keep.
//!
//! Outgoing connections reconnect with a doubling backoff; frames for a member that is not
//! connected are dropped (raft resends what matters). Incoming connections must say HELLO
//! within [`NetConfig::hello_timeout`]; their number is bounded, and a member's newer
//! connection replaces its older one (it restarted). Nothing here interprets raft: bytes go to
//! the election as they arrive.

use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use streams::TokenRange;

use crate::config::MemberId;
use crate::wire::{self, Frame};

/// Bytes of a HELLO frame: length prefix, version, kind, member id.
const HELLO_LEN: usize = wire::LENGTH_PREFIX + 2 + 8;

/// Limits and clocks of the peer sockets.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Outgoing bytes queued per member beyond which new frames are dropped.
    pub max_queued: usize,
    /// Connections from peers at once (identified or not).
    pub max_incoming: usize,
    /// An incoming connection that has not said who it is by then is closed.
    pub hello_timeout: Duration,
    /// First and longest wait before reconnecting to a member.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Bytes read from one connection per poll (the rest waits for the next poll).
    pub read_budget: usize,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            max_queued: 1 << 20,
            max_incoming: 16,
            hello_timeout: Duration::from_secs(2),
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(500),
            read_budget: 256 * 1024,
        }
    }
}

enum OutState {
    Idle,
    Connecting(TcpStream),
    Connected(TcpStream),
}

/// The connection this member sends to one other member on.
struct OutLink {
    member: MemberId,
    address: SocketAddr,
    state: OutState,
    queued: Vec<u8>,
    sent: usize,
    retry_at: Instant,
    backoff: Duration,
    /// A readiness event arrived: look at the socket in the next poll.
    ready: bool,
}

/// A connection a peer sends to this member on.
struct InLink {
    stream: TcpStream,
    /// Known once its HELLO arrived.
    member: Option<MemberId>,
    hello: Vec<u8>,
    opened: Instant,
    ready: bool,
}

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    pub connects: u64,
    pub accepted: u64,
    /// Connections closed for a bad or missing HELLO, or over the limit.
    pub refused: u64,
    /// Frames dropped: member not connected, or its queue full.
    pub dropped_frames: u64,
}

/// What happened to an incoming connection's bytes.
pub enum Received {
    /// Keep the connection.
    Keep,
    /// Close it (the bytes were refused).
    Close,
}

/// The peer sockets of one member.
pub struct PeerNet {
    me: MemberId,
    config: NetConfig,
    listener: TcpListener,
    out: Vec<OutLink>,
    incoming: slab::Slab<InLink>,
    registry: Option<Registry>,
    tokens: TokenRange,
    accept_ready: bool,
    /// Members whose connection to us closed since the last call (their partial frame is void).
    gone: Vec<MemberId>,
    scratch: Vec<u8>,
    stats: NetStats,
}

impl PeerNet {
    /// Binds this member's peer address. `peers` are the other members and their addresses.
    pub fn bind(
        me: MemberId,
        listen: SocketAddr,
        peers: &[(MemberId, SocketAddr)],
        config: NetConfig,
        now: Instant,
    ) -> io::Result<PeerNet> {
        let listener = TcpListener::bind(listen)?;
        let out = peers
            .iter()
            .map(|&(member, address)| OutLink {
                member,
                address,
                state: OutState::Idle,
                queued: Vec::new(),
                sent: 0,
                retry_at: now,
                backoff: config.backoff_min,
                ready: false,
            })
            .collect();
        Ok(PeerNet {
            me,
            incoming: slab::Slab::with_capacity(config.max_incoming),
            config,
            listener,
            out,
            registry: None,
            tokens: TokenRange { first: 0, count: 0 },
            accept_ready: true,
            gone: Vec::new(),
            scratch: vec![0; 64 * 1024],
            stats: NetStats::default(),
        })
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// Members with an open outgoing connection.
    pub fn connected(&self) -> usize {
        self.out
            .iter()
            .filter(|o| matches!(o.state, OutState::Connected(_)))
            .count()
    }

    fn out_token(&self, k: usize) -> Token {
        Token(self.tokens.first + 1 + k)
    }

    fn in_token(&self, slot: usize) -> Token {
        Token(self.tokens.first + 1 + self.out.len() + slot)
    }

    /// Registers the listener; later sockets are registered as they open.
    pub fn register(&mut self, registry: &Registry, tokens: TokenRange) -> io::Result<()> {
        self.tokens = tokens;
        registry.register(&mut self.listener, Token(tokens.first), Interest::READABLE)?;
        self.registry = Some(registry.try_clone()?);
        Ok(())
    }

    /// Notes a readiness event; the work happens in the next poll.
    pub fn on_event(&mut self, token: Token) {
        let first = self.tokens.first;
        let index = token.0.wrapping_sub(first);
        if index == 0 {
            self.accept_ready = true;
        } else if let Some(link) = self.out.get_mut(index - 1) {
            link.ready = true;
        } else if let Some(link) = self.incoming.get_mut(index - 1 - self.out.len()) {
            link.ready = true;
        }
    }

    /// Accepts pending connections (up to the limit; the rest are closed at once).
    pub fn accept(&mut self, now: Instant) -> usize {
        if !self.accept_ready {
            return 0;
        }
        let mut work = 0;
        loop {
            match self.listener.accept() {
                Ok((mut stream, remote)) => {
                    work += 1;
                    if self.incoming.len() >= self.config.max_incoming {
                        self.stats.refused += 1;
                        tracing::warn!(target: "raft", %remote, limit = self.config.max_incoming, "peer connection refused: too many connections");
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let slot = self.incoming.vacant_key();
                    let token = self.in_token(slot);
                    if let Some(registry) = &self.registry {
                        if let Err(e) = registry.register(&mut stream, token, Interest::READABLE) {
                            tracing::warn!(target: "raft", %remote, error = %e, "cannot watch a peer connection");
                            continue;
                        }
                    }
                    self.stats.accepted += 1;
                    self.incoming.insert(InLink {
                        stream,
                        member: None,
                        hello: Vec::with_capacity(HELLO_LEN),
                        opened: now,
                        ready: true,
                    });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.accept_ready = false;
                    break;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(target: "raft", error = %e, "accepting a peer connection failed");
                    self.accept_ready = false;
                    break;
                }
            }
        }
        work
    }

    /// Reads every incoming connection that is ready and hands the bytes after its HELLO to
    /// `deliver(member, bytes)`. Closes connections that fail, end, send a bad HELLO, or say
    /// nothing in time.
    pub fn read(
        &mut self,
        now: Instant,
        mut deliver: impl FnMut(MemberId, &[u8]) -> Received,
    ) -> usize {
        let mut work = 0;
        let slots: Vec<usize> = self.incoming.iter().map(|(slot, _)| slot).collect();
        for slot in slots {
            // A newer connection's HELLO earlier in this pass may have closed this one
            // (`replace_older`), and the slab does not keep slots in opening order.
            let Some(ready) = self.incoming.get(slot).map(|link| link.ready) else {
                continue;
            };
            if !ready {
                if self.incoming[slot].member.is_none()
                    && now.saturating_duration_since(self.incoming[slot].opened)
                        >= self.config.hello_timeout
                {
                    tracing::warn!(target: "raft", "peer connection closed: no HELLO in time");
                    self.stats.refused += 1;
                    self.close_incoming(slot);
                }
                continue;
            }
            let mut budget = self.config.read_budget;
            let mut close = false;
            loop {
                if budget == 0 {
                    // Leave `ready` set: the rest is read in the next poll.
                    break;
                }
                let want = budget.min(self.scratch.len());
                let link = &mut self.incoming[slot];
                match link.stream.read(&mut self.scratch[..want]) {
                    Ok(0) => {
                        close = true;
                        break;
                    }
                    Ok(n) => {
                        work += 1;
                        budget -= n;
                        let mut offset = 0;
                        if link.member.is_none() {
                            let need = HELLO_LEN - link.hello.len();
                            offset = need.min(n);
                            link.hello.extend_from_slice(&self.scratch[..offset]);
                            if link.hello.len() < HELLO_LEN {
                                continue;
                            }
                            match hello_member(&link.hello) {
                                Some(member) if member != self.me => {
                                    link.member = Some(member);
                                }
                                other => {
                                    tracing::warn!(target: "raft", claimed = ?other, "peer connection closed: it did not start with a HELLO naming another member");
                                    self.stats.refused += 1;
                                    close = true;
                                    break;
                                }
                            }
                            self.replace_older(slot);
                            if let Some(member) = self.incoming[slot].member {
                                self.redial_now(member, now);
                            }
                        }
                        let member = self.incoming[slot].member.expect("known after HELLO");
                        if offset < n {
                            if let Received::Close = deliver(member, &self.scratch[offset..n]) {
                                close = true;
                                break;
                            }
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        self.incoming[slot].ready = false;
                        break;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => {
                        close = true;
                        break;
                    }
                }
            }
            if close {
                self.close_incoming(slot);
            }
        }
        work
    }

    /// A member that just connected to us is up: our own connection to it, if it is waiting
    /// out a backoff, is opened now instead. Without this a member that restarted after being
    /// down for a while stayed unreachable for up to `backoff_max` (500 ms) after it was back:
    /// its votes and acknowledgements reached us but ours to it were dropped, and an election
    /// it took part in stalled for that long (seen in benches/failover.sh, where the master
    /// killed in one round is restarted shortly before the next round's kill).
    fn redial_now(&mut self, member: MemberId, now: Instant) {
        let backoff_min = self.config.backoff_min;
        if let Some(link) = self.out.iter_mut().find(|l| l.member == member) {
            if matches!(link.state, OutState::Idle) {
                link.retry_at = now;
                link.backoff = backoff_min;
            }
        }
    }

    /// A member's newer connection replaces its older one (the member restarted).
    fn replace_older(&mut self, slot: usize) {
        let member = self.incoming[slot].member;
        let older: Vec<usize> = self
            .incoming
            .iter()
            .filter(|(s, l)| *s != slot && l.member == member)
            .map(|(s, _)| s)
            .collect();
        for s in older {
            self.close_incoming(s);
        }
    }

    fn close_incoming(&mut self, slot: usize) {
        let mut link = self.incoming.remove(slot);
        if let Some(registry) = &self.registry {
            let _ = registry.deregister(&mut link.stream);
        }
        if let Some(member) = link.member {
            self.gone.push(member);
        }
    }

    /// Members whose incoming connection closed since the last call.
    pub fn take_gone(&mut self) -> Vec<MemberId> {
        std::mem::take(&mut self.gone)
    }

    /// Queues a frame for `member` (dropped if it is not connected or its queue is full).
    pub fn send(&mut self, member: MemberId, frame: &[u8]) {
        let Some(link) = self.out.iter_mut().find(|l| l.member == member) else {
            return;
        };
        let open = !matches!(link.state, OutState::Idle);
        if !open || link.queued.len() - link.sent + frame.len() > self.config.max_queued {
            self.stats.dropped_frames += 1;
            return;
        }
        link.queued.extend_from_slice(frame);
    }

    /// Connects to members whose retry time has come, completes connects, writes queues.
    pub fn flush(&mut self, now: Instant) -> usize {
        let mut work = 0;
        for k in 0..self.out.len() {
            work += self.progress_out(k, now);
        }
        work
    }

    fn progress_out(&mut self, k: usize, now: Instant) -> usize {
        let token = self.out_token(k);
        let me = self.me;
        let backoff_max = self.config.backoff_max;
        let link = &mut self.out[k];
        let ready = std::mem::take(&mut link.ready);
        match &mut link.state {
            OutState::Idle => {
                if now < link.retry_at {
                    return 0;
                }
                match TcpStream::connect(link.address) {
                    Ok(mut stream) => {
                        let _ = stream.set_nodelay(true);
                        let registered = self.registry.as_ref().map_or(Ok(()), |r| {
                            r.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                        });
                        if let Err(e) = registered {
                            tracing::warn!(target: "raft", member = link.member, error = %e, "cannot watch a peer connection");
                            link.retry_at = now + link.backoff;
                            return 0;
                        }
                        self.stats.connects += 1;
                        link.queued.clear();
                        link.sent = 0;
                        link.queued.extend_from_slice(&wire::encode_hello(me));
                        link.state = OutState::Connecting(stream);
                        1
                    }
                    Err(e) => {
                        tracing::debug!(target: "raft", member = link.member, error = %e, "connect failed");
                        link.retry_at = now + link.backoff;
                        link.backoff = (link.backoff * 2).min(backoff_max);
                        0
                    }
                }
            }
            OutState::Connecting(stream) => {
                if !ready {
                    return 0;
                }
                match (stream.take_error(), stream.peer_addr()) {
                    (Ok(None), Ok(_)) => {
                        let OutState::Connecting(stream) =
                            std::mem::replace(&mut link.state, OutState::Idle)
                        else {
                            unreachable!("matched above");
                        };
                        tracing::info!(target: "raft", member = link.member, address = %link.address, "connected to peer");
                        link.state = OutState::Connected(stream);
                        link.backoff = self.config.backoff_min;
                        self.write_out(k, now)
                    }
                    (Ok(None), Err(e)) if e.kind() == ErrorKind::NotConnected => {
                        // Not yet: wait for the next event.
                        0
                    }
                    _ => {
                        self.drop_out(k, now);
                        0
                    }
                }
            }
            OutState::Connected(_) => {
                if ready {
                    // The peer never sends on this connection: readable means it closed.
                    if self.peer_closed(k) {
                        self.drop_out(k, now);
                        return 1;
                    }
                }
                self.write_out(k, now)
            }
        }
    }

    /// Whether the peer closed our outgoing connection (it sends nothing on it, so any
    /// readable byte or end of stream says so).
    fn peer_closed(&mut self, k: usize) -> bool {
        let OutState::Connected(stream) = &mut self.out[k].state else {
            return false;
        };
        let mut byte = [0u8; 64];
        match stream.read(&mut byte) {
            Ok(_) => true,
            Err(e) if e.kind() == ErrorKind::WouldBlock => false,
            Err(e) if e.kind() == ErrorKind::Interrupted => false,
            Err(_) => true,
        }
    }

    fn write_out(&mut self, k: usize, now: Instant) -> usize {
        let link = &mut self.out[k];
        let OutState::Connected(stream) = &mut link.state else {
            return 0;
        };
        let mut work = 0;
        while link.sent < link.queued.len() {
            match stream.write(&link.queued[link.sent..]) {
                Ok(0) => {
                    self.drop_out(k, now);
                    return work;
                }
                Ok(n) => {
                    link.sent += n;
                    work += 1;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.drop_out(k, now);
                    return work;
                }
            }
        }
        if link.sent == link.queued.len() {
            link.queued.clear();
            link.sent = 0;
        }
        work
    }

    fn drop_out(&mut self, k: usize, now: Instant) {
        let link = &mut self.out[k];
        let state = std::mem::replace(&mut link.state, OutState::Idle);
        if let OutState::Connecting(mut stream) | OutState::Connected(mut stream) = state {
            if let Some(registry) = &self.registry {
                let _ = registry.deregister(&mut stream);
            }
        }
        tracing::debug!(target: "raft", member = link.member, "peer connection lost; reconnecting");
        link.queued.clear();
        link.sent = 0;
        link.retry_at = now + link.backoff;
        link.backoff = (link.backoff * 2).min(self.config.backoff_max);
    }

    /// The next instant a reconnect or a HELLO deadline is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        let retry = self
            .out
            .iter()
            .filter(|l| matches!(l.state, OutState::Idle))
            .map(|l| l.retry_at);
        let hello = self
            .incoming
            .iter()
            .filter(|(_, l)| l.member.is_none())
            .map(|(_, l)| l.opened + self.config.hello_timeout);
        retry.chain(hello).min()
    }

    /// Closes every socket.
    pub fn shutdown(&mut self) {
        if let Some(registry) = &self.registry {
            let _ = registry.deregister(&mut self.listener);
        }
        let slots: Vec<usize> = self.incoming.iter().map(|(s, _)| s).collect();
        for slot in slots {
            self.close_incoming(slot);
        }
        let now = Instant::now();
        for k in 0..self.out.len() {
            self.drop_out(k, now);
        }
    }
}

/// The member a complete HELLO frame names; `None` if the bytes are not one.
fn hello_member(bytes: &[u8]) -> Option<MemberId> {
    let prefix: [u8; 4] = bytes.get(..wire::LENGTH_PREFIX)?.try_into().ok()?;
    if u32::from_be_bytes(prefix) as usize != HELLO_LEN - wire::LENGTH_PREFIX {
        return None;
    }
    match wire::decode(&bytes[wire::LENGTH_PREFIX..]) {
        Ok(Frame::Hello { member }) if member != 0 => Some(member),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Marks the listener and every incoming slot ready (no poller in these tests), accepts,
    /// and reads, delivering nothing anywhere.
    fn poll_once(net: &mut PeerNet) {
        for token in 0..=net.config.max_incoming {
            net.on_event(Token(token));
        }
        let now = Instant::now();
        net.accept(now);
        net.read(now, |_, _| Received::Keep);
    }

    fn poll_until(net: &mut PeerNet, what: &str, done: impl Fn(&PeerNet) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done(net) {
            assert!(Instant::now() < deadline, "not within 5 s: {what}");
            poll_once(net);
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A member that reconnects gets a new connection in a slot below its old one's (the slab
    /// reuses freed slots): reading the new HELLO closes the old connection, which the same
    /// read pass has not reached yet. That pass panicked on the removed slot ("invalid key"),
    /// taking the core down — seen under load when a peer reconnected every backoff.
    #[test]
    fn a_newer_connection_in_a_lower_slot_replaces_the_older_one_in_the_same_read() {
        let mut net = PeerNet::bind(
            1,
            "127.0.0.1:0".parse().unwrap(),
            &[],
            NetConfig::default(),
            Instant::now(),
        )
        .unwrap();
        let address = net.local_addr().unwrap();
        // Slot 0: a stranger; slot 1: member 2's first connection.
        let mut stranger = std::net::TcpStream::connect(address).unwrap();
        poll_until(&mut net, "the stranger accepted", |n| n.incoming.len() == 1);
        let mut first = std::net::TcpStream::connect(address).unwrap();
        first.write_all(&wire::encode_hello(2)).unwrap();
        poll_until(&mut net, "member 2 named", |n| {
            n.incoming
                .iter()
                .any(|(slot, l)| slot == 1 && l.member == Some(2))
        });
        // The stranger's bad HELLO frees slot 0.
        stranger
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        poll_until(&mut net, "the stranger closed", |n| !n.incoming.contains(0));
        // Member 2 reconnects: slot 0, and its HELLO replaces slot 1 during the read.
        let mut second = std::net::TcpStream::connect(address).unwrap();
        second.write_all(&wire::encode_hello(2)).unwrap();
        poll_until(&mut net, "the newer connection kept", |n| {
            n.incoming.len() == 1 && n.incoming.get(0).is_some_and(|l| l.member == Some(2))
        });
        assert_eq!(
            net.take_gone(),
            vec![2],
            "the older connection's member is told gone"
        );
        // The older connection was closed by the server.
        first
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut byte = [0u8; 1];
        assert!(matches!(first.read(&mut byte), Ok(0) | Err(_)));
    }

    /// One poll of everything, as `RaftNukleus::poll` does it: accept, read, connect/write.
    fn poll_all(net: &mut PeerNet) {
        for token in 0..=net.out.len() + net.config.max_incoming {
            net.on_event(Token(token));
        }
        let now = Instant::now();
        net.accept(now);
        net.read(now, |_, _| Received::Keep);
        net.flush(now);
    }

    /// Member 2 was down long enough for our backoff to grow; when it is back and connects to
    /// us, we connect to it at once instead of after the backoff (which left an election with
    /// it stalled for up to 500 ms after its restart).
    #[test]
    fn a_peer_that_connects_to_us_is_redialled_at_once() {
        let peer_address = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let config = NetConfig {
            backoff_min: Duration::from_secs(30),
            backoff_max: Duration::from_secs(30),
            ..NetConfig::default()
        };
        let mut net = PeerNet::bind(
            1,
            "127.0.0.1:0".parse().unwrap(),
            &[(2, peer_address)],
            config,
            Instant::now(),
        )
        .unwrap();
        // Member 2 is down: the first connect fails and the next is 30 s away.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !(matches!(net.out[0].state, OutState::Idle)
            && net.out[0].retry_at > Instant::now() + Duration::from_secs(10))
        {
            assert!(
                Instant::now() < deadline,
                "the connect to a closed port never failed"
            );
            poll_all(&mut net);
            std::thread::sleep(Duration::from_millis(2));
        }
        // Member 2 is back: it listens and says HELLO to us.
        let member2 = std::net::TcpListener::bind(peer_address).unwrap();
        member2.set_nonblocking(true).unwrap();
        let mut hello = std::net::TcpStream::connect(net.local_addr().unwrap()).unwrap();
        hello.write_all(&wire::encode_hello(2)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            poll_all(&mut net);
            if member2.accept().is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "member 2 connected to us but we did not connect back within 5 s"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn only_a_well_formed_hello_names_a_member() {
        assert_eq!(hello_member(&wire::encode_hello(3)), Some(3));
        assert_eq!(hello_member(&wire::encode_hello(0)), None);
        let mut wrong_kind = wire::encode_hello(3);
        wrong_kind[5] = 2;
        assert_eq!(hello_member(&wrong_kind), None);
        let mut wrong_length = wire::encode_hello(3);
        wrong_length[3] = 11;
        assert_eq!(hello_member(&wrong_length), None);
        assert_eq!(hello_member(b"GET / HTTP/1.1\r\n"), None);
    }
}
