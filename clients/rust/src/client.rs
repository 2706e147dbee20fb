//! The client handle, the event stream and the driver task that owns the connection.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;

mod command;
mod coord;
use command::{Command, CoordCommand, HeldSet, Reply};

use crate::batch::{Items, Limits};
use crate::connect::{self, Target, Ws};
use crate::error::Error;
use crate::pushes::{Pushes, SpanPool};
use crate::session::{Outcome, Phase, Received, Session};
use crate::shared_str::SharedStr;
use crate::types::{
    Event, FencingToken, Message, NodeInfo, PortOwner, Registration, SendReport, Unregistration,
};
use crate::wire::Op;

/// Tuning of a [`Client`]. The defaults suit the switch's default limits.
#[derive(Clone, Debug)]
pub struct Options {
    /// Most ports / messages / nodes per request (the switch's `max_*_per_request`).
    pub max_batch_items: usize,
    /// Most bytes per request (below the switch's WebSocket message limit).
    pub max_batch_bytes: usize,
    /// How long a call waits for its reply (including while the client reconnects).
    pub call_timeout: Duration,
    /// Pushes and release notifications buffered for the application (plus at most one
    /// push batch the application is reading).
    pub max_buffered_events: usize,
    /// How long the buffer may stay full before the client drops the connection itself.
    pub max_stall: Duration,
    /// First reconnect delay.
    pub backoff_initial: Duration,
    /// Cap of the exponential backoff.
    pub backoff_max: Duration,
    /// How long [`connect()`] may take, retries included.
    pub connect_timeout: Duration,
    /// How long one opening handshake may take. Short, so that a member that accepts TCP
    /// but does not answer (a stopped process) holds a failover up only this long.
    pub open_timeout: Duration,
    /// Lease renewal interval; `None`: a quarter of the switch's `lease_ms`.
    pub renew_interval: Option<Duration>,
    /// Redirects followed per member.
    pub max_redirects: usize,
    /// Longest `Retry-After` honoured.
    pub max_retry_after: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_batch_items: 1000,
            max_batch_bytes: 1 << 20,
            call_timeout: Duration::from_secs(30),
            max_buffered_events: 65536,
            max_stall: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(30),
            open_timeout: Duration::from_secs(3),
            renew_interval: None,
            max_redirects: 5,
            max_retry_after: Duration::from_secs(30),
        }
    }
}

/// Who to connect as, and where.
#[derive(Clone, Debug)]
pub struct Config {
    /// Member URLs (`ws://host:port` or `http://host:port`).
    pub urls: Vec<String>,
    /// Node id.
    pub node: String,
    /// Bearer token.
    pub token: Option<String>,
    /// Address announced to nodes whose registrations fail.
    pub address: Option<String>,
    /// Tuning.
    pub options: Options,
}

impl Config {
    /// Connect `node` to the members at `urls`.
    pub fn new<I, S>(urls: I, node: impl Into<String>) -> Config
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Config {
            urls: urls.into_iter().map(Into::into).collect(),
            node: node.into(),
            token: None,
            address: None,
            options: Options::default(),
        }
    }

    /// With a bearer token.
    pub fn token(mut self, token: impl Into<String>) -> Config {
        self.token = Some(token.into());
        self
    }

    /// Announcing `address`.
    pub fn address(mut self, address: impl Into<String>) -> Config {
        self.address = Some(address.into());
        self
    }

    /// With `options`.
    pub fn options(mut self, options: Options) -> Config {
        self.options = options;
        self
    }
}

/// Equal-jitter exponential backoff: half of `min(cap, initial * 2^attempt)` fixed, half
/// random (`unit` in [0, 1)), so a fleet of nodes does not reconnect in step.
pub fn backoff_delay(attempt: u32, initial: Duration, cap: Duration, unit: f64) -> Duration {
    let full = initial.saturating_mul(1u32 << attempt.min(20)).min(cap);
    full / 2 + full.mul_f64(unit.clamp(0.0, 1.0) / 2.0)
}

struct Shared {
    buffered: AtomicUsize,
    max_buffered: usize,
    space: Notify,
    requests: AtomicU64,
    terminal: Mutex<Option<Error>>,
    /// Span vectors of spent batches of pushes, for the driver's next batches.
    spans: Arc<SpanPool>,
}

/// A node's connection to the port switch; cheap to clone (all clones share it). Calls made
/// while the driver is busy go out together (one request per run of calls of one kind).
#[derive(Clone)]
pub struct Client {
    tx: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
    call_timeout: Duration,
}

/// What [`Events::next_batch`] hands out.
#[derive(Debug)]
pub enum Batch {
    /// Pushed messages, in order.
    Pushes(Pushes),
    /// Any other event (never [`Event::Push`]).
    Event(Event),
}

/// Pushes, release notifications and connection events, oldest first. Ends (`None`) when
/// the client is closed.
pub struct Events {
    /// Batches, each with the number of pushes in it (counted once, by the driver, against
    /// the application's buffer).
    rx: mpsc::UnboundedReceiver<(Received, usize)>,
    /// The batch of pushes being handed out (made into events as they are taken).
    pushes: Pushes,
    /// The batch of other events being handed out (a deque made from the batch's vector
    /// without a copy).
    events: VecDeque<Event>,
    shared: Arc<Shared>,
}

impl Events {
    /// The next event; `None` once the client is closed and everything was read.
    pub async fn next(&mut self) -> Option<Event> {
        self.next_by(Events::local).await
    }

    /// The next event if one is here already.
    pub fn try_next(&mut self) -> Option<Event> {
        self.try_next_by(Events::local)
    }

    /// What `local` takes from the batch being handed out, waiting for the next batch while
    /// it takes nothing.
    async fn next_by<T>(&mut self, local: impl Fn(&mut Events) -> Option<T>) -> Option<T> {
        loop {
            if let Some(t) = local(self) {
                return Some(t);
            }
            let (batch, pushes) = self.rx.recv().await?;
            self.take(batch, pushes);
        }
    }

    /// [`Events::next_by`] without waiting: `None` when no batch is here.
    fn try_next_by<T>(&mut self, local: impl Fn(&mut Events) -> Option<T>) -> Option<T> {
        loop {
            if let Some(t) = local(self) {
                return Some(t);
            }
            let (batch, pushes) = self.rx.try_recv().ok()?;
            self.take(batch, pushes);
        }
    }

    /// The next event of the batch being handed out (only one of the two holds any).
    fn local(&mut self) -> Option<Event> {
        self.pushes.next().or_else(|| self.events.pop_front())
    }

    /// The next batch: the pushes that one message from the switch carried (what is left of
    /// them if [`Events::next`] took some), or one other event; `None` once the client is
    /// closed and everything was read. Events come in the same order as from
    /// [`Events::next`], and the two can be mixed.
    ///
    /// For applications that take many pushes: [`Pushes::iter`] reads each push's port and
    /// body straight from the message, where [`Events::next`] makes an [`Event::Push`] (with
    /// its own reference to the message) per push. The pushes of a batch count against
    /// [`Options::max_buffered_events`] until the batch is handed out.
    pub async fn next_batch(&mut self) -> Option<Batch> {
        self.next_by(Events::local_batch).await
    }

    /// [`Events::next_batch`] if one is here already.
    pub fn try_next_batch(&mut self) -> Option<Batch> {
        self.try_next_by(Events::local_batch)
    }

    fn local_batch(&mut self) -> Option<Batch> {
        if !self.pushes.is_empty() {
            return Some(Batch::Pushes(std::mem::take(&mut self.pushes)));
        }
        self.events.pop_front().map(Batch::Event)
    }

    /// Hand out `batch`, which holds `pushes` pushes, next (called once the previous one is
    /// spent).
    fn take(&mut self, batch: Received, pushes: usize) {
        if pushes > 0 {
            let before = self.shared.buffered.fetch_sub(pushes, Ordering::AcqRel);
            if before - pushes < self.shared.max_buffered {
                self.shared.space.notify_one();
            }
        }
        match batch {
            // The spent batch's span vector goes back to the pool as it is dropped.
            Received::Pushes(next) => self.pushes = next.returning_to(&self.shared.spans),
            Received::Events(next) => self.events = VecDeque::from(next),
        }
    }
}

/// Connect the node of `config`; returns once its receiving connection is open and ready.
///
/// Fails at once with [`Error::Unauthorized`], [`Error::Forbidden`] or [`Error::BadRequest`],
/// and with [`Error::ConnectFailed`] (or the last [`Error::Unavailable`]) if no member
/// accepted within `options.connect_timeout`. Needs a tokio runtime (current-thread is fine).
pub async fn connect(config: Config) -> Result<(Client, Events), Error> {
    let members = config
        .urls
        .iter()
        .map(|u| connect::base_url(u))
        .collect::<Result<Vec<_>, _>>()?;
    if members.is_empty() {
        return Err(Error::ConnectFailed {
            message: "no member URL given".into(),
        });
    }
    let o = &config.options;
    let shared = Arc::new(Shared {
        buffered: AtomicUsize::new(0),
        max_buffered: o.max_buffered_events.max(1),
        space: Notify::new(),
        requests: AtomicU64::new(0),
        terminal: Mutex::new(None),
        spans: Arc::new(SpanPool::default()),
    });
    let (tx, rx) = mpsc::unbounded_channel();
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = oneshot::channel();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        ^ (config.node.len() as u64).rotate_left(17)
        ^ u64::from(std::process::id());
    let connect_timeout = o.connect_timeout;
    let call_timeout = o.call_timeout;
    let driver = Driver {
        session: Session::new(Limits {
            max_items: o.max_batch_items.max(1),
            max_bytes: o.max_batch_bytes.max(64),
        }),
        config,
        members,
        member: 0,
        rx,
        events: events_tx,
        shared: shared.clone(),
        ready: Some(ready_tx),
        closing: None,
        rng: seed | 1,
    };
    let task = tokio::spawn(driver.run());
    let client = Client {
        tx,
        shared: shared.clone(),
        call_timeout,
    };
    match tokio::time::timeout(connect_timeout, ready_rx).await {
        Ok(Ok(Ok(()))) => Ok((
            client,
            Events {
                rx: events_rx,
                pushes: Pushes::default(),
                events: VecDeque::new(),
                shared,
            },
        )),
        Ok(Ok(Err(e))) => Err(e),
        Ok(Err(_)) => Err(Error::Closed),
        Err(_) => {
            task.abort();
            Err(Error::ConnectFailed {
                message: format!("not connected within {connect_timeout:?}"),
            })
        }
    }
}

impl Client {
    async fn call(
        &self,
        op: Op,
        items: Items,
        subscribe: bool,
        exclusive: bool,
    ) -> Result<Outcome, Error> {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Call {
            op,
            items,
            subscribe,
            exclusive,
            reply,
        };
        if self.tx.send(cmd).is_err() {
            return Err(self.closed_error());
        }
        match tokio::time::timeout(self.call_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(self.closed_error()),
            Err(_) => Err(Error::Timeout(self.call_timeout)),
        }
    }

    fn closed_error(&self) -> Error {
        self.shared
            .terminal
            .lock()
            .ok()
            .and_then(|t| t.clone())
            .unwrap_or(Error::Closed)
    }

    /// RegPort: make this node the owner of `ports`. Ports owned by other nodes come back in
    /// `failed` with their owner (discovery).
    pub async fn register<I, S>(&self, ports: I) -> Result<Registration, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.register_with(ports, false).await
    }

    /// RegPort with `subscribe`: like [`Client::register`], and the client is told
    /// ([`Event::Released`]) when the failed ports are released; after a reconnect it asks
    /// for them again.
    pub async fn register_or_subscribe<I, S>(&self, ports: I) -> Result<Registration, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.register_with(ports, true).await
    }

    async fn register_with<I, S>(&self, ports: I, subscribe: bool) -> Result<Registration, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        match self
            .call(Op::RegPort, names(ports), subscribe, false)
            .await?
        {
            Outcome::Registration(r) => Ok(r),
            o => Err(unexpected(o)),
        }
    }

    /// UnRegPort: release `ports` (only this node's); they also stop being watched.
    pub async fn unregister<I, S>(&self, ports: I) -> Result<Unregistration, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        match self.call(Op::UnRegPort, names(ports), false, false).await? {
            Outcome::Unregistration(r) => Ok(r),
            o => Err(unexpected(o)),
        }
    }

    /// SendMsg of one message to `port` (`""` broadcasts). Returns once the switch accepted
    /// it; an unknown port drops it silently (BYPSS). [`Client::send_report`] has counts.
    pub async fn send(
        &self,
        port: impl Into<SharedStr>,
        body: impl Into<SharedStr>,
    ) -> Result<(), Error> {
        self.send_many(vec![Message::to(port, body)]).await
    }

    /// SendMsg of several messages, in order (batched with other calls).
    pub async fn send_many(&self, messages: Vec<Message>) -> Result<(), Error> {
        self.call(Op::SendMsg, Items::Messages(messages), false, false)
            .await
            .map(|_| ())
    }

    /// SendMsg in a request of its own: how many pushes were queued, how many targets
    /// dropped.
    pub async fn send_report(&self, messages: Vec<Message>) -> Result<SendReport, Error> {
        match self
            .call(Op::SendMsg, Items::Messages(messages), false, true)
            .await?
        {
            Outcome::SendReport(r) => Ok(r),
            o => Err(unexpected(o)),
        }
    }

    /// QueryPort of one port.
    pub async fn query_port(&self, port: impl Into<String>) -> Result<PortOwner, Error> {
        let mut v = self.query_ports([port.into()]).await?;
        v.pop()
            .ok_or_else(|| unexpected(Outcome::Ports(Vec::new())))
    }

    /// QueryPort: owner and address of each port, in order.
    pub async fn query_ports<I, S>(&self, ports: I) -> Result<Vec<PortOwner>, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        match self.call(Op::QueryPort, names(ports), false, false).await? {
            Outcome::Ports(v) => Ok(v),
            o => Err(unexpected(o)),
        }
    }

    /// QueryNode of one node.
    pub async fn query_node(&self, node: impl Into<String>) -> Result<NodeInfo, Error> {
        let mut v = self.query_nodes([node.into()]).await?;
        v.pop()
            .ok_or_else(|| unexpected(Outcome::Nodes(Vec::new())))
    }

    /// QueryNode: state, address and port count of each node, in order.
    pub async fn query_nodes<I, S>(&self, nodes: I) -> Result<Vec<NodeInfo>, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        match self.call(Op::QueryNode, names(nodes), false, false).await? {
            Outcome::Nodes(v) => Ok(v),
            o => Err(unexpected(o)),
        }
    }

    /// The ports this node holds (restored after a reconnect).
    pub async fn held(&self) -> Result<HashSet<String>, Error> {
        Ok(self.held_and_watched().await?.0)
    }

    /// The ports this node holds, and those it waits for (subscribed, owned elsewhere).
    pub async fn held_and_watched(&self) -> Result<(HashSet<String>, HashSet<String>), Error> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Held(tx))
            .map_err(|_| self.closed_error())?;
        let (held, watched) = rx.await.map_err(|_| self.closed_error())?;
        let owned = |s: HeldSet| s.iter().map(str::to_string).collect();
        Ok((owned(held), owned(watched)))
    }

    /// The fencing token of a held `port` (a cluster master's `(epoch, sequence)`, to hand to
    /// storage with every write it guards); `None` if not held or the switch runs alone.
    pub async fn fencing_token(
        &self,
        port: impl Into<String>,
    ) -> Result<Option<FencingToken>, Error> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Fencing(port.into(), tx))
            .map_err(|_| self.closed_error())?;
        Ok(rx.await.map_err(|_| self.closed_error())?.1)
    }

    /// The epoch of the cluster master this client last heard from (`None`: the switch runs
    /// alone). It only grows; a failover raises it.
    pub async fn epoch(&self) -> Result<Option<u64>, Error> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Fencing(String::new(), tx))
            .map_err(|_| self.closed_error())?;
        Ok(rx.await.map_err(|_| self.closed_error())?.0)
    }

    /// Requests (WebSocket messages) sent so far, over all connections: a statistic that
    /// shows batching at work.
    pub fn requests_sent(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Close the receiving connection normally (the switch releases this node's ports);
    /// pending calls fail with [`Error::Closed`]; the event stream ends.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

fn names<I, S>(v: I) -> Items
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    Items::Names(v.into_iter().map(Into::into).collect())
}

fn unexpected(o: Outcome) -> Error {
    Error::Other {
        code: "unexpected_outcome".into(),
        message: format!("{o:?}"),
    }
}

/// How a connection ended.
enum Served {
    /// The application closed the client.
    Closed,
    /// Lost, with the reason; `ready` if it had been restored.
    Lost(Error, bool),
}

struct Driver {
    session: Session<Reply>,
    config: Config,
    members: Vec<String>,
    member: usize,
    rx: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<(Received, usize)>,
    shared: Arc<Shared>,
    ready: Option<oneshot::Sender<Result<(), Error>>>,
    closing: Option<oneshot::Sender<()>>,
    rng: u64,
}

impl Driver {
    fn unit(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Take a command; false if the application closes the client (or dropped every handle).
    fn command(&mut self, cmd: Option<Command>) -> bool {
        match cmd {
            Some(Command::Call {
                op,
                items,
                subscribe,
                exclusive,
                reply,
            }) => {
                self.session.submit(op, items, subscribe, exclusive, reply);
                true
            }
            Some(Command::Fencing(port, tx)) => {
                let _ = tx.send((self.session.epoch(), self.session.fencing_token(&port)));
                true
            }
            Some(Command::Held(tx)) => {
                let _ = tx.send((self.session.held().clone(), self.session.watched().clone()));
                true
            }
            Some(Command::Close(tx)) => {
                self.closing = Some(tx);
                false
            }
            Some(Command::Coord(cmd, reply)) => {
                match cmd {
                    CoordCommand::Raw(fields) => self.session.submit_raw(fields, reply),
                    CoordCommand::Watch { kind, key, prefix } => {
                        self.session.submit_watch(kind, &key, prefix, reply)
                    }
                    CoordCommand::Unwatch(id) => self.session.submit_unwatch(id, reply),
                    CoordCommand::Handover(fields) => self.session.submit_handover(fields, reply),
                    CoordCommand::RegisterIf(fields, ports) => {
                        self.session.submit_register_if(fields, ports, reply)
                    }
                }
                true
            }
            Some(Command::Session(tx)) => {
                let _ = tx.send(self.session.session_id());
                true
            }
            None => false,
        }
    }

    /// Wait for `fut` while taking commands; None if the client is being closed.
    async fn while_taking_commands<F: std::future::Future>(&mut self, fut: F) -> Option<F::Output> {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                r = &mut fut => return Some(r),
                cmd = self.rx.recv() => if !self.command(cmd) { return None },
            }
        }
    }

    async fn run(mut self) {
        let mut attempt = 0u32;
        let mut first = true;
        let o = self.config.options.clone();
        loop {
            let members = self.members.clone();
            let (node, token, address) = (
                self.config.node.clone(),
                self.config.token.clone(),
                self.config.address.clone(),
            );
            let target = Target {
                members: &members,
                node: &node,
                token: token.as_deref(),
                address: address.as_deref(),
                open_timeout: o.open_timeout,
                max_redirects: o.max_redirects,
                max_retry_after: o.max_retry_after,
                watcher_query: None,
            };
            let start = self.member;
            let Some(opened) = self
                .while_taking_commands(connect::open(&target, start))
                .await
            else {
                return self.shut_down(None).await;
            };
            let error = match opened {
                Ok((ws, url)) => {
                    if let Some(i) = self.members.iter().position(|m| *m == url) {
                        self.member = i;
                    }
                    match self.serve(ws, &url, first).await {
                        Served::Closed => return,
                        Served::Lost(e, ready) => {
                            if ready {
                                attempt = 0;
                                first = false;
                            }
                            e
                        }
                    }
                }
                Err(e) => {
                    self.member = self.member.wrapping_add(1);
                    e
                }
            };
            if error.is_terminal() {
                let ev = self.session.closed(error.clone(), true);
                if let Ok(mut t) = self.shared.terminal.lock() {
                    *t = Some(error.clone());
                }
                if let Some(r) = self.ready.take() {
                    let _ = r.send(Err(error));
                } else {
                    let _ = self.events.send((Received::Events(vec![ev]), 0));
                }
                return;
            }
            let ev = self.session.closed(error.clone(), false);
            if !first {
                let _ = self.events.send((Received::Events(vec![ev]), 0));
            }
            // While the application's buffer is full there is no point reconnecting (the new
            // connection could not even read the restore's replies): wait for it to read.
            let shared = self.shared.clone();
            let room = async move {
                while shared.buffered.load(Ordering::Acquire) >= shared.max_buffered {
                    shared.space.notified().await;
                }
            };
            if self.while_taking_commands(room).await.is_none() {
                return self.shut_down(None).await;
            }
            let delay = match error {
                // The switch said when (an election runs): no need to back off further.
                Error::Unavailable {
                    retry_after: Some(r),
                    ..
                } => r.mul_f64(1.0 + 0.2 * self.unit()),
                _ => {
                    attempt = attempt.saturating_add(1);
                    backoff_delay(attempt - 1, o.backoff_initial, o.backoff_max, self.unit())
                }
            };
            if let Error::ConnectionLost { .. } = error {
                // The member went silent or away (stopped, killed, cut off): it would only
                // hold up the next handshake; another member knows the master.
                self.member = self.member.wrapping_add(1);
            }
            tracing::info!(node = %self.config.node, %error, ?delay, "reconnecting");
            if self
                .while_taking_commands(tokio::time::sleep(delay))
                .await
                .is_none()
            {
                return self.shut_down(None).await;
            }
        }
    }

    async fn serve(&mut self, ws: Ws, url: &str, first: bool) -> Served {
        let (mut sink, mut stream) = ws.split();
        let o = self.config.options.clone();
        self.session.opened(url, first, std::time::Instant::now());
        let mut ready = false;
        // The lease is learnt from the first relet's reply: the schedule follows it.
        let mut last_renewal = Instant::now();
        let mut stall_since: Option<Instant> = None;
        let mut last_received = std::time::Instant::now();
        // Timers live across loop turns (re-armed only when their deadline moves): a new
        // `sleep_until` per turn would register a timer per message received.
        let renew_timer = tokio::time::sleep_until(last_renewal + self.renew_every());
        tokio::pin!(renew_timer);
        let stall_timer = tokio::time::sleep_until(last_renewal + o.max_stall);
        tokio::pin!(stall_timer);
        loop {
            if !ready && self.session.phase() == Phase::Ready {
                ready = true;
                if let Some(r) = self.ready.take() {
                    let _ = r.send(Ok(()));
                }
            }
            let control = self.session.take_control();
            if !control.is_empty() {
                let _ = self.events.send((Received::Events(control), 0));
            }
            if self.session.has_output() {
                let texts = self.session.take_output();
                self.shared
                    .requests
                    .fetch_add(texts.len() as u64, Ordering::Relaxed);
                for t in texts {
                    if let Err(e) = sink.feed(WsMessage::text(t)).await {
                        return Served::Lost(lost(e), ready);
                    }
                }
                if let Err(e) = sink.flush().await {
                    return Served::Lost(lost(e), ready);
                }
            }
            let readable = self.shared.buffered.load(Ordering::Acquire) < self.shared.max_buffered;
            if readable {
                stall_since = None;
            } else if stall_since.is_none() {
                stall_since = Some(Instant::now());
            }
            let stall_deadline = stall_since.map(|s| s + o.max_stall);
            let renew_at = last_renewal + self.renew_every();
            if renew_timer.deadline() != renew_at {
                renew_timer.as_mut().reset(renew_at);
            }
            if let Some(d) = stall_deadline {
                if stall_timer.deadline() != d {
                    stall_timer.as_mut().reset(d);
                }
            }
            tokio::select! {
                biased;
                cmd = self.rx.recv() => {
                    if !self.command(cmd) {
                        self.shut_down(Some(sink)).await;
                        return Served::Closed;
                    }
                    while let Ok(cmd) = self.rx.try_recv() {
                        if !self.command(Some(cmd)) {
                            self.shut_down(Some(sink)).await;
                            return Served::Closed;
                        }
                    }
                    self.session.flush();
                }
                msg = stream.next(), if readable => match msg {
                    Some(Ok(WsMessage::Text(text))) => match self.session.received_into(text, self.shared.spans.take()) {
                        Ok(events) => {
                            last_received = std::time::Instant::now();
                            if !events.is_empty() {
                                let pushes = events.pushes();
                                self.shared.buffered.fetch_add(pushes, Ordering::AcqRel);
                                if self.events.send((events, pushes)).is_err() {
                                    // The application dropped `Events`: it wants none.
                                    self.shared.buffered.fetch_sub(pushes, Ordering::AcqRel);
                                }
                            }
                            // Let the tasks this message woke (a call answered, events to
                            // take) run before the next message is read: on a current-thread
                            // runtime they otherwise wait until the socket is drained, so a
                            // caller's next request goes out only after every reply in flight
                            // has been read, and the switch idles in between.
                            tokio::task::yield_now().await;
                        }
                        Err(e) => return Served::Lost(e, ready),
                    },
                    Some(Ok(WsMessage::Close(frame))) => {
                        let (code, reason) = frame
                            .map(|f| (Some(u16::from(f.code)), f.reason.to_string()))
                            .unwrap_or((None, String::new()));
                        return Served::Lost(Error::from_close(code, &reason), ready);
                    }
                    Some(Ok(_)) => last_received = std::time::Instant::now(),
                    Some(Err(e)) => return Served::Lost(lost(e), ready),
                    None => return Served::Lost(Error::ConnectionLost { message: "the switch closed the connection".into() }, ready),
                },
                _ = &mut renew_timer => {
                    last_renewal = Instant::now();
                    let lease = Duration::from_millis(self.session.lease_ms().unwrap_or(10_000));
                    if let Err(e) = self.session.renew(std::time::Instant::now(), lease / 2, !readable, last_received) {
                        return Served::Lost(e, ready);
                    }
                }
                _ = &mut stall_timer, if stall_deadline.is_some() => {
                    return Served::Lost(Error::SlowConsumer {
                        message: format!(
                            "the client's event buffer ({} events) stayed full for {:?}",
                            o.max_buffered_events, o.max_stall
                        ),
                    }, ready);
                }
                _ = self.shared.space.notified(), if !readable => {}
            }
        }
    }

    fn renew_every(&self) -> Duration {
        self.config.options.renew_interval.unwrap_or_else(|| {
            Duration::from_millis(self.session.lease_ms().unwrap_or(10_000) / 4)
                .max(Duration::from_millis(10))
        })
    }

    /// Close for good: a normal close frame if connected, every call fails with `Closed`,
    /// the event stream ends.
    async fn shut_down(&mut self, sink: Option<futures_util::stream::SplitSink<Ws, WsMessage>>) {
        if let Some(mut sink) = sink {
            let _ = tokio::time::timeout(Duration::from_secs(2), sink.send(WsMessage::Close(None)))
                .await;
        }
        self.session.fail_all(Error::Closed);
        if let Ok(mut t) = self.shared.terminal.lock() {
            t.get_or_insert(Error::Closed);
        }
        if let Some(r) = self.ready.take() {
            let _ = r.send(Err(Error::Closed));
        }
        if let Some(c) = self.closing.take() {
            let _ = c.send(());
        }
    }
}

fn lost(e: tokio_tungstenite::tungstenite::Error) -> Error {
    Error::ConnectionLost {
        message: e.to_string(),
    }
}
