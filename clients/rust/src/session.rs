//! The client's protocol state without I/O: what the node holds, which calls wait for which
//! replies, what to send after a (re)connect, when to renew the lease.
//!
//! The driver (crate::client) feeds it: application calls ([`Session::submit`]), connection
//! opened ([`Session::opened`]), each text message ([`Session::received`]), connection lost
//! ([`Session::closed`]), time ([`Session::renew`]); it takes the texts to send
//! ([`Session::take_output`]) and the events for the application. Tested without sockets.

use std::collections::{HashMap, VecDeque};

use crate::names::NameSet;
use std::time::{Duration, Instant};

use crate::batch::{plan, Call, CallId, Items, Limits, PartResult, Request};
use crate::error::Error;
use crate::pushes::{Pushes, Span};
use crate::shared_str::SharedStr;
use crate::types::{
    Event, FencingToken, NodeInfo, PortOwner, Registration, SendReport, Unregistration,
};
use crate::wire::{self, Incoming, Op};

/// What a completed call returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// RegPort.
    Registration(Registration),
    /// UnRegPort.
    Unregistration(Unregistration),
    /// A batched SendMsg: accepted.
    Sent,
    /// An exclusive SendMsg: its counts.
    SendReport(SendReport),
    /// QueryPort.
    Ports(Vec<PortOwner>),
    /// QueryNode.
    Nodes(Vec<NodeInfo>),
    /// Relet: the lease in milliseconds.
    Relet(u64),
    /// A request outside the batches (watch, listing, handover, …): its reply.
    Raw(serde_json::Value),
}

/// Receives the outcome of one call.
pub trait Waiter {
    /// Called exactly once.
    fn complete(self, result: Result<Outcome, Error>);
}

/// Who waits for a call.
enum Owner<W> {
    App(W),
    /// Re-registration of held ports (false) or watched ports (true) after a connect.
    Restore(bool),
    /// A lease renewal.
    Renewal,
    /// The registration of ports handed over to this node, for their fencing tokens.
    Refence,
}

struct Pending<W> {
    owner: Option<Owner<W>>,
    op: Op,
    subscribe: bool,
    parts_left: usize,
    acc: Option<PartResult>,
}

#[derive(Default)]
struct Restoring {
    url: String,
    first: bool,
    held: Option<Result<Registration, Error>>,
    watched: Option<Result<Registration, Error>>,
}

/// Where the connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No connection.
    Down,
    /// Connected; re-registering before application calls go out.
    Restoring,
    /// Connected and restored.
    Ready,
}

/// The protocol state of one client.
pub struct Session<W> {
    limits: Limits,
    next_call: CallId,
    next_request: u64,
    outbox: Vec<Call>,
    pending: HashMap<CallId, Pending<W>>,
    inflight: HashMap<u64, Request>,
    held: NameSet,
    watched: NameSet,
    /// Held ports' fencing tokens (a cluster's master gives them; empty alone).
    tokens: HashMap<String, FencingToken>,
    /// The master's epoch last seen, and the one before the connection was lost.
    epoch: Option<u64>,
    previous_epoch: Option<u64>,
    phase: Phase,
    restoring: Option<Restoring>,
    lease_ms: Option<u64>,
    renewals: VecDeque<(Instant, u64)>,
    out: Vec<String>,
    pub(crate) control: Vec<Event>,
    restore_error: Option<Error>,
    pub(crate) coord: crate::coord::Coord<W>,
}

impl<W: Waiter> Session<W> {
    /// A session with batches within `limits`.
    pub fn new(limits: Limits) -> Session<W> {
        Session {
            limits,
            next_call: 1,
            next_request: 1,
            outbox: Vec::new(),
            pending: HashMap::new(),
            inflight: HashMap::new(),
            held: NameSet::new(),
            watched: NameSet::new(),
            tokens: HashMap::new(),
            epoch: None,
            previous_epoch: None,
            phase: Phase::Down,
            restoring: None,
            lease_ms: None,
            renewals: VecDeque::new(),
            out: Vec::new(),
            control: Vec::new(),
            restore_error: None,
            coord: crate::coord::Coord::default(),
        }
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    pub(crate) fn take_request_id(&mut self) -> u64 {
        let id = self.next_request;
        self.next_request += 1;
        id
    }

    pub(crate) fn push_output(&mut self, text: String) {
        self.out.push(text);
    }

    /// `port` is held now, with its fencing token if a cluster's master gave one.
    pub(crate) fn hold(&mut self, port: &str, token: Option<FencingToken>) {
        self.watched.remove(port);
        self.held.insert(port);
        match token {
            Some(t) => self.tokens.insert(port.to_string(), t),
            None => self.tokens.remove(port),
        };
    }

    /// A port handed over to this node has no fencing token yet: from a cluster's master,
    /// registering it again (it is this node's already) gives it one, newer than every token
    /// of its previous owner.
    pub(crate) fn refence(&mut self, port: String) {
        if self.epoch.is_some() {
            self.enqueue(
                Op::RegPort,
                Items::Names(vec![port]),
                false,
                false,
                Owner::Refence,
            );
            self.flush();
        }
    }

    pub(crate) fn unhold(&mut self, port: &str) {
        self.held.remove(port);
        self.tokens.remove(port);
    }

    /// Ports the node holds (registered, not released); restored after a reconnect.
    pub fn held(&self) -> &NameSet {
        &self.held
    }

    /// Ports asked for with `subscribe` that another node owned, whose release is awaited.
    pub fn watched(&self) -> &NameSet {
        &self.watched
    }

    /// The epoch of the cluster master last heard from (`None`: the switch runs alone).
    pub fn epoch(&self) -> Option<u64> {
        self.epoch
    }

    /// The fencing token of a held port (`None` if not held, or the switch runs alone).
    pub fn fencing_token(&self, port: &str) -> Option<FencingToken> {
        self.tokens.get(port).copied()
    }

    fn see_epoch(&mut self, epoch: Option<u64>) {
        match (epoch, self.epoch) {
            (Some(new), Some(old)) if new < old => {
                tracing::warn!(new, old, "an older epoch than one already seen: ignored");
            }
            (Some(new), old) => {
                if old.is_some_and(|old| old != new) {
                    tracing::info!(old, new, "master epoch changed");
                }
                self.epoch = Some(new);
            }
            (None, _) => {}
        }
    }

    /// The switch's lease, once known.
    pub fn lease_ms(&self) -> Option<u64> {
        self.lease_ms
    }

    /// The connection's phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Queue an application call; it goes out at the next [`Session::flush`] once the
    /// connection is ready. UnRegPort forgets the ports at once (they are not restored).
    pub fn submit(&mut self, op: Op, items: Items, subscribe: bool, exclusive: bool, waiter: W) {
        if op == Op::UnRegPort {
            for p in items.names() {
                self.held.remove(p);
                self.watched.remove(p);
                self.tokens.remove(p);
            }
        }
        self.enqueue(op, items, subscribe, exclusive, Owner::App(waiter));
    }

    fn enqueue(&mut self, op: Op, items: Items, subscribe: bool, exclusive: bool, owner: Owner<W>) {
        let id = self.next_call;
        self.next_call += 1;
        self.pending.insert(
            id,
            Pending {
                owner: Some(owner),
                op,
                subscribe,
                parts_left: 0,
                acc: None,
            },
        );
        self.outbox.push(Call {
            id,
            op,
            items,
            subscribe,
            exclusive,
        });
    }

    /// Plan queued calls into requests (when ready).
    pub fn flush(&mut self) {
        if self.phase == Phase::Ready && !self.outbox.is_empty() {
            let calls = std::mem::take(&mut self.outbox);
            self.send_calls(calls);
        }
    }

    fn send_calls(&mut self, calls: Vec<Call>) {
        let (requests, counts) = plan(calls, self.limits);
        // Requests first: a call without items completes at once, and completing the
        // restore may flush application calls, which must go out after these.
        for r in requests {
            self.send_request(r);
        }
        for (id, n) in counts {
            let Some(p) = self.pending.get_mut(&id) else {
                continue;
            };
            p.parts_left = n;
            if n == 0 {
                let empty = match p.op {
                    Op::RegPort => PartResult::Reg(Vec::new(), Vec::new(), Vec::new()),
                    Op::UnRegPort => PartResult::Unreg(Vec::new(), Vec::new(), Vec::new()),
                    Op::QueryPort => PartResult::Ports(Vec::new()),
                    Op::QueryNode => PartResult::Nodes(Vec::new()),
                    Op::SendMsg | Op::Relet => PartResult::Sent(Some((0, 0))),
                };
                p.acc = Some(empty);
                self.finish(id);
            }
        }
    }

    fn send_request(&mut self, r: Request) -> u64 {
        let id = self.next_request;
        self.next_request += 1;
        self.out.push(r.text(id));
        self.inflight.insert(id, r);
        id
    }

    /// The texts to send, in order.
    pub fn take_output(&mut self) -> Vec<String> {
        std::mem::take(&mut self.out)
    }

    /// Whether there is anything to send.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Connection events for the application ([`Event::Reconnected`]).
    pub fn take_control(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.control)
    }

    /// A connection to `url` opened: renew the lease (learning its length), re-register the
    /// held ports and re-ask for the watched ones, before any queued application call.
    pub fn opened(&mut self, url: &str, first: bool, now: Instant) {
        self.phase = Phase::Restoring;
        self.restoring = Some(Restoring {
            url: url.to_string(),
            first,
            ..Restoring::default()
        });
        let held: Vec<String> = self.held.iter().map(str::to_string).collect();
        let watched: Vec<String> = self.watched.iter().map(str::to_string).collect();
        let mut calls = Vec::new();
        for (items, subscribe, owner) in [
            (Items::None, false, Owner::Renewal),
            (Items::Names(held), false, Owner::Restore(false)),
            (Items::Names(watched), true, Owner::Restore(true)),
        ] {
            let op = if matches!(owner, Owner::Renewal) {
                Op::Relet
            } else {
                Op::RegPort
            };
            let id = self.next_call;
            self.next_call += 1;
            self.pending.insert(
                id,
                Pending {
                    owner: Some(owner),
                    op,
                    subscribe,
                    parts_left: 0,
                    acc: None,
                },
            );
            calls.push(Call {
                id,
                op,
                items,
                subscribe,
                exclusive: false,
            });
        }
        let first_request = self.next_request;
        self.send_calls(calls);
        self.renewals.push_back((now, first_request));
    }

    /// A text message from the switch: replies complete calls; pushes come back as events.
    /// Pushed ports and bodies are slices of `message` (no copy per push).
    pub fn received(&mut self, message: impl Into<SharedStr>) -> Result<Vec<Event>, Error> {
        self.received_into(message, Vec::new())
            .map(Received::into_events)
    }

    /// [`Session::received`], with the usual batch of pushes kept as spans of `message`
    /// ([`Received::Pushes`], written into `spare`: an emptied vector whose capacity is
    /// reused) and made into events as they are taken.
    pub fn received_into(
        &mut self,
        message: impl Into<SharedStr>,
        spare: Vec<Span>,
    ) -> Result<Received, Error> {
        let message = message.into();
        let text = message.as_str();
        if !self.coord.raw.is_empty() && text.trim_start().starts_with('{') {
            // A reply outside the batches has fields of its own: it is not parsed as one of
            // theirs.
            #[derive(serde::Deserialize)]
            struct Id {
                id: u64,
            }
            if let Ok(Id { id }) = serde_json::from_str::<Id>(text) {
                if let Some(owner) = self.coord.raw.remove(&id) {
                    self.renewals.retain(|&(_, r)| r != id);
                    self.on_raw_reply(owner, text);
                    return Ok(Received::Events(Vec::new()));
                }
            }
        }
        if let Some(batch) = wire::msg_batch(&message, spare) {
            // The common batch (messages only), read without serde; anything else below.
            self.see_epoch(batch.epoch);
            if batch.ack > 0 {
                self.acknowledge(batch.ack);
            }
            return Ok(Received::Pushes(batch.pushes));
        }
        let incoming = wire::parse(text).map_err(|e| Error::ConnectionLost {
            message: format!("the switch sent a message that is not the API's JSON ({e})"),
        })?;
        match incoming {
            Incoming::Pushes(batch) => {
                let mut events = Vec::with_capacity(batch.len());
                let mut ack = 0;
                for p in batch {
                    match p.kind.as_ref() {
                        "msg" => {
                            ack = ack.max(p.ack.unwrap_or(0));
                            events.push(Event::Push {
                                port: p.port.into_owned().into(),
                                body: p.body.map(|b| b.into_owned()).unwrap_or_default().into(),
                            })
                        }
                        "released" => {
                            let port = p.port.into_owned();
                            self.watched.remove(&port);
                            events.push(Event::Released {
                                port,
                                reason: p.reason.map(|r| r.into_owned()).unwrap_or_default(),
                            })
                        }
                        "epoch" => self.see_epoch(p.epoch),
                        _ => events.extend(self.coord_push(p)),
                    }
                }
                if ack > 0 {
                    // The batch goes to the application's buffer now: acknowledge it.
                    self.acknowledge(ack);
                }
                Ok(Received::Events(events))
            }
            Incoming::Reply(reply) => {
                self.on_reply(*reply);
                match self.restore_error.take() {
                    Some(e) => Err(e),
                    None => Ok(Received::Events(Vec::new())),
                }
            }
        }
    }

    fn on_reply(&mut self, reply: wire::Reply) {
        let id = reply.id;
        self.see_epoch(reply.epoch);
        self.renewals.retain(|&(_, r)| r != id);
        let Some(mut request) = self.inflight.remove(&id) else {
            tracing::warn!(id, "reply to no request");
            return;
        };
        if let Some(err) = &reply.error {
            if request.unmergeable(&err.code) {
                for r in request.unmerged() {
                    self.send_request(r);
                }
                return;
            }
            let e = Error::from_reply(&err.code, &err.message);
            for p in &request.parts {
                self.fail_call(p.call, e.clone());
            }
            return;
        }
        match request.split(reply) {
            Ok(results) => {
                for (part, result) in request.parts.iter().zip(results) {
                    self.part_done(part.call, result);
                }
            }
            Err(e) => {
                for p in &request.parts {
                    self.fail_call(p.call, e.clone());
                }
            }
        }
    }

    fn part_done(&mut self, call: CallId, result: PartResult) {
        let Some(p) = self.pending.get_mut(&call) else {
            return;
        };
        p.acc = Some(match (p.acc.take(), result) {
            (None, r) => r,
            (Some(PartResult::Reg(mut o, mut f, mut t)), PartResult::Reg(o2, f2, t2)) => {
                o.extend(o2);
                f.extend(f2);
                t.extend(t2);
                PartResult::Reg(o, f, t)
            }
            (Some(PartResult::Unreg(mut a, mut b, mut c)), PartResult::Unreg(a2, b2, c2)) => {
                a.extend(a2);
                b.extend(b2);
                c.extend(c2);
                PartResult::Unreg(a, b, c)
            }
            (Some(PartResult::Ports(mut a)), PartResult::Ports(b)) => {
                a.extend(b);
                PartResult::Ports(a)
            }
            (Some(PartResult::Nodes(mut a)), PartResult::Nodes(b)) => {
                a.extend(b);
                PartResult::Nodes(a)
            }
            (Some(PartResult::Sent(Some((a, b)))), PartResult::Sent(Some((c, d)))) => {
                PartResult::Sent(Some((a + c, b + d)))
            }
            (_, r) => r,
        });
        p.parts_left = p.parts_left.saturating_sub(1);
        if p.parts_left == 0 {
            self.finish(call);
        }
    }

    fn finish(&mut self, call: CallId) {
        let Some(mut p) = self.pending.remove(&call) else {
            return;
        };
        let outcome = match p.acc.take() {
            Some(PartResult::Reg(owned, failed, tokens)) => {
                if !self.watched.is_empty() {
                    for port in &owned {
                        self.watched.remove(port);
                    }
                }
                for port in &owned {
                    self.held.insert(port);
                }
                if p.subscribe {
                    for f in &failed {
                        self.watched.insert(&f.port);
                    }
                }
                let epoch = tokens.iter().map(|t| t.epoch).max();
                let tokens: HashMap<String, FencingToken> =
                    owned.iter().cloned().zip(tokens).collect();
                for (port, token) in &tokens {
                    self.tokens.insert(port.clone(), *token);
                }
                Outcome::Registration(Registration {
                    owned,
                    failed,
                    tokens,
                    epoch,
                })
            }
            Some(PartResult::Unreg(released, not_owned, unknown)) => {
                Outcome::Unregistration(Unregistration {
                    released,
                    not_owned,
                    unknown,
                })
            }
            Some(PartResult::Sent(Some((delivered, dropped)))) if p.op == Op::SendMsg => {
                Outcome::SendReport(SendReport { delivered, dropped })
            }
            Some(PartResult::Sent(_)) => Outcome::Sent,
            Some(PartResult::Ports(v)) => Outcome::Ports(v),
            Some(PartResult::Nodes(v)) => Outcome::Nodes(v),
            Some(PartResult::Relet(lease)) => {
                self.lease_ms = Some(lease);
                Outcome::Relet(lease)
            }
            None => return,
        };
        self.deliver(p.owner.take(), Ok(outcome));
    }

    fn fail_call(&mut self, call: CallId, e: Error) {
        if let Some(mut p) = self.pending.remove(&call) {
            self.deliver(p.owner.take(), Err(e));
        }
    }

    fn deliver(&mut self, owner: Option<Owner<W>>, result: Result<Outcome, Error>) {
        match owner {
            Some(Owner::App(w)) => w.complete(result),
            Some(Owner::Restore(watched)) => {
                let result = result.map(|o| match o {
                    Outcome::Registration(r) => r,
                    _ => Registration::default(),
                });
                if let Some(r) = self.restoring.as_mut() {
                    if watched {
                        r.watched = Some(result);
                    } else {
                        r.held = Some(result);
                    }
                }
                self.restored();
            }
            Some(Owner::Renewal) => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "lease renewal refused");
                }
            }
            Some(Owner::Refence) => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "registering handed-over ports refused");
                }
            }
            None => {}
        }
    }

    /// Both restore calls answered: report, then let application calls go.
    fn restored(&mut self) {
        let Some(r) = self.restoring.as_ref() else {
            return;
        };
        if r.held.is_none() || r.watched.is_none() {
            return;
        }
        let r = self.restoring.take().unwrap_or_default();
        let (held, watched) = match (r.held, r.watched) {
            (Some(Ok(h)), Some(Ok(w))) => (h, w),
            (Some(Err(e)), _) | (_, Some(Err(e))) => {
                // Refused (e.g. a lowered port limit, or the connection failed): the driver
                // drops the connection and tries again after a backoff.
                self.restore_error = Some(e);
                return;
            }
            _ => return,
        };
        for f in &held.failed {
            self.held.remove(&f.port);
            self.tokens.remove(&f.port);
        }
        // `finish` already moved owned ports into `held` (and watched ones out of `watched`).
        self.phase = Phase::Ready;
        self.restore_watches();
        if !r.first {
            self.control.push(Event::Reconnected {
                url: r.url,
                restored: held.owned.len(),
                lost: held.failed,
                acquired: watched.owned,
                epoch: self.epoch,
                previous_epoch: self.previous_epoch,
            });
        }
        self.flush();
    }

    /// The connection is gone (with `error` saying why): calls in flight fail with
    /// [`Error::ConnectionLost`] (or the close's error); queued calls wait for the next
    /// connection. Returns the [`Event::Disconnected`] for the application.
    pub fn closed(&mut self, error: Error, fin: bool) -> Event {
        let lost_error = match &error {
            Error::Replaced { .. } | Error::LeaseExpired { .. } | Error::SlowConsumer { .. } => {
                error.clone()
            }
            e => Error::ConnectionLost {
                message: e.to_string(),
            },
        };
        let inflight = std::mem::take(&mut self.inflight);
        for (_, r) in inflight {
            for p in r.parts {
                self.fail_call(p.call, lost_error.clone());
            }
        }
        self.restoring = None;
        self.renewals.clear();
        if self.phase != Phase::Down {
            self.previous_epoch = self.epoch;
        }
        self.raw_closed(&lost_error);
        self.phase = Phase::Down;
        self.out.clear();
        if fin {
            self.fail_all(error.clone());
        }
        Event::Disconnected {
            error,
            held: self.held.len(),
            fin,
        }
    }

    /// Fail every queued and in-flight call with `error` (the client is closing).
    pub fn fail_all(&mut self, error: Error) {
        for call in std::mem::take(&mut self.outbox) {
            self.fail_call(call.id, error.clone());
        }
        let ids: Vec<CallId> = self.pending.keys().copied().collect();
        for id in ids {
            self.fail_call(id, error.clone());
        }
        self.raw_closed(&error);
        for (_, owner) in std::mem::take(&mut self.coord.queued) {
            match owner {
                crate::coord::RawOwner::App(w)
                | crate::coord::RawOwner::Holding(w, _)
                | crate::coord::RawOwner::Watch(_, Some(w)) => w.complete(Err(error.clone())),
                _ => {}
            }
        }
        self.held.clear();
        self.watched.clear();
        self.tokens.clear();
    }

    /// Time to renew: queue a relet. Returns `Err` if the oldest unanswered renewal is older
    /// than `give_up` and nothing at all arrived for as long (`last_received`): the
    /// connection is dead, the caller drops it. Not while `reader_stalled` (the
    /// application's buffer is full, so replies wait unread), and not while messages arrive
    /// (a busy connection answers late because replies queue behind pushes).
    pub fn renew(
        &mut self,
        now: Instant,
        give_up: Duration,
        reader_stalled: bool,
        last_received: Instant,
    ) -> Result<(), Error> {
        if self.phase == Phase::Down {
            return Ok(());
        }
        if reader_stalled {
            for r in self.renewals.iter_mut() {
                r.0 = now;
            }
        } else if let Some(&(sent, _)) = self.renewals.front() {
            if now.duration_since(sent) > give_up
                && now.saturating_duration_since(last_received) > give_up
            {
                return Err(Error::ConnectionLost {
                    message: format!("no reply to a lease renewal within {give_up:?}"),
                });
            }
        }
        let id = self.next_call;
        self.next_call += 1;
        self.pending.insert(
            id,
            Pending {
                owner: Some(Owner::Renewal),
                op: Op::Relet,
                subscribe: false,
                parts_left: 1,
                acc: None,
            },
        );
        let (mut requests, _) = plan(
            vec![Call {
                id,
                op: Op::Relet,
                items: Items::None,
                subscribe: false,
                exclusive: true,
            }],
            self.limits,
        );
        let rid = self.send_request(requests.remove(0));
        self.renewals.push_back((now, rid));
        Ok(())
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;

/// What a text message from the switch gave the application ([`Session::received_into`]).
#[derive(Debug)]
pub enum Received {
    /// Events (none, for a reply).
    Events(Vec<Event>),
    /// The usual batch: pushed messages only, made into [`Event::Push`]es as they are taken.
    Pushes(Pushes),
}

impl Received {
    /// The events, made now.
    pub fn into_events(self) -> Vec<Event> {
        match self {
            Received::Events(events) => events,
            Received::Pushes(pushes) => pushes.collect(),
        }
    }

    /// How many of them are pushes (they count against the application's buffer).
    pub fn pushes(&self) -> usize {
        match self {
            Received::Events(events) => events.iter().filter(|e| e.is_push()).count(),
            Received::Pushes(pushes) => pushes.len(),
        }
    }

    /// Whether there is nothing to hand the application.
    pub fn is_empty(&self) -> bool {
        match self {
            Received::Events(events) => events.is_empty(),
            Received::Pushes(pushes) => pushes.is_empty(),
        }
    }
}
