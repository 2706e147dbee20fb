//! A watcher that is not a node: a dashboard, an operator's tool, a service that only wants
//! to know who holds `leader/*`. It holds no ports and has no lease; its token must be
//! granted the names it watches (`watch_ports` / `watch_nodes` in the switch's topology, or
//! admin). The switch side is the WebSocket at `/v1/ws/` (docs/openapi.yaml).
//!
//! ```no_run
//! # async fn demo() -> Result<(), reaktor_client::Error> {
//! use reaktor_client::watcher::{watch, WatchSpec, WatcherOptions};
//! let mut w = watch(&["ws://127.0.0.1:8080"], "demo-dash", WatchSpec::ports("leader/", true),
//!                   WatcherOptions::default()).await?;
//! while let Ok(event) = w.next().await {
//!     println!("{event:?}"); // Event::Watch or Event::Missed
//! }
//! # Ok(()) }
//! ```
//!
//! [`WatcherState`] (sans I/O) keeps each watch's cursor — the last sequence number seen per
//! switch instance — and turns pushes into [`Event`]s; the driver task owns the socket. When
//! the connection is lost the driver connects again (equal-jitter exponential backoff) and
//! resumes every watch from its cursor: each event arrives once, or an [`Event::Missed`]
//! names what the switch no longer had (`instance: None`: a switch that did not know the
//! cursor). Events wait in a bounded channel: a reader that falls behind stops the socket's
//! reading, the switch closes the connection as a slow consumer (4002), and the watcher
//! resumes from its cursor. A refused or revoked token ends it: [`Watcher::next`] returns the
//! error.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::client::backoff_delay;
use crate::connect::{self, base_url, pct, Target, Ws};
use crate::error::Error;
use crate::types::{Event, WatchEvent};

/// What a watch follows: ports or nodes, by name or by prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchSpec {
    /// `ports` or `nodes`.
    pub kind: &'static str,
    /// The name, or the prefix.
    pub key: String,
    /// Whether `key` is a prefix.
    pub prefix: bool,
}

impl WatchSpec {
    /// Ports named `key`, or starting with it if `prefix`.
    pub fn ports(key: impl Into<String>, prefix: bool) -> WatchSpec {
        WatchSpec {
            kind: "ports",
            key: key.into(),
            prefix,
        }
    }

    /// Nodes named `key`, or starting with it if `prefix`.
    pub fn nodes(key: impl Into<String>, prefix: bool) -> WatchSpec {
        WatchSpec {
            kind: "nodes",
            key: key.into(),
            prefix,
        }
    }
}

/// Settings of a watcher.
#[derive(Clone, Debug)]
pub struct WatcherOptions {
    /// Timeout of one handshake.
    pub open_timeout: Duration,
    /// First reconnect delay.
    pub initial_backoff: Duration,
    /// Longest reconnect delay.
    pub max_backoff: Duration,
    /// Events buffered for the application before the socket is no longer read.
    pub max_events: usize,
}

impl Default for WatcherOptions {
    fn default() -> Self {
        WatcherOptions {
            open_timeout: Duration::from_secs(3),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            max_events: 10_000,
        }
    }
}

#[derive(Debug)]
struct Watch {
    spec: WatchSpec,
    /// The last sequence seen per instance (`None` until the switch named the cursor).
    cursor: Option<Vec<u64>>,
    /// Sequences seen before the cursor was known.
    early: BTreeMap<usize, u64>,
}

impl Watch {
    fn advance(&mut self, instance: usize, seq: u64) {
        match self.cursor.as_mut().and_then(|c| c.get_mut(instance)) {
            Some(c) => *c = (*c).max(seq),
            None => {
                let e = self.early.entry(instance).or_default();
                *e = (*e).max(seq);
            }
        }
    }

    /// The switch says where the watch stands: nothing seen is asked for again.
    fn settle(&mut self, cursor: Vec<u64>) {
        let mut merged = cursor;
        for (&i, &seq) in &self.early {
            if let Some(c) = merged.get_mut(i) {
                *c = (*c).max(seq);
            }
        }
        if let Some(old) = self.cursor.as_ref().filter(|o| o.len() == merged.len()) {
            for (m, o) in merged.iter_mut().zip(old) {
                *m = (*m).max(*o);
            }
        }
        self.cursor = Some(merged);
        self.early.clear();
    }
}

/// The watches of a watcher and their cursors, sans I/O: what to connect with, and what a
/// message from the switch means.
#[derive(Debug, Default)]
pub struct WatcherState {
    watches: BTreeMap<u64, Watch>,
    next_id: u64,
}

impl WatcherState {
    /// Adds a watch; its id.
    pub fn add(&mut self, spec: WatchSpec) -> u64 {
        self.next_id = self.next_id.max(1);
        let id = self.next_id;
        self.next_id += 1;
        self.watches.insert(
            id,
            Watch {
                spec,
                cursor: None,
                early: BTreeMap::new(),
            },
        );
        id
    }

    /// Ends a watch; whether there was one.
    pub fn remove(&mut self, id: u64) -> bool {
        self.watches.remove(&id).is_some()
    }

    /// The cursor of watch `id`, once the switch named it.
    pub fn cursor(&self, id: u64) -> Option<&[u64]> {
        self.watches.get(&id)?.cursor.as_deref()
    }

    /// The query of a connection (the first watch, from its cursor) and that watch's id.
    pub fn connect_query(&self) -> Option<(u64, String)> {
        let (&id, w) = self.watches.iter().next()?;
        let mut q = format!(
            "{}={}&prefix={}&watch={id}",
            w.spec.kind,
            pct(&w.spec.key),
            w.spec.prefix
        );
        if let Some(c) = &w.cursor {
            let c: Vec<String> = c.iter().map(u64::to_string).collect();
            q.push_str("&from=");
            q.push_str(&c.join(","));
        }
        Some((id, q))
    }

    /// The `watch` request of watch `id` (from its cursor), with request id `request`.
    pub fn watch_request(&self, id: u64, request: u64) -> Option<String> {
        let w = self.watches.get(&id)?;
        let mut r = json!({"op": "watch", "id": request, "watch": id, w.spec.kind: w.spec.key, "prefix": w.spec.prefix});
        if let Some(c) = &w.cursor {
            r["from"] = json!(c);
        }
        Some(r.to_string())
    }

    /// The switch did not know watch `id`'s cursor: it starts over, and the application is
    /// told it may have missed anything.
    pub fn forget_cursor(&mut self, id: u64) -> Event {
        if let Some(w) = self.watches.get_mut(&id) {
            w.cursor = None;
            w.early.clear();
        }
        Event::Missed {
            watch: id,
            instance: None,
            first: 0,
            last: 0,
        }
    }

    /// Watch `id` stands at `cursor` (a `watching` push, a watch reply).
    pub fn settle(&mut self, id: u64, cursor: Vec<u64>) {
        if let Some(w) = self.watches.get_mut(&id) {
            w.settle(cursor);
        }
    }

    /// The events of a push batch (`watch`, `missed`; `watching` settles a cursor).
    pub fn pushes(&mut self, batch: &[Value]) -> Vec<Event> {
        let mut out = Vec::new();
        for p in batch {
            let watch = p["watch"].as_u64().unwrap_or(0);
            match p["type"].as_str().unwrap_or_default() {
                "watching" => {
                    let cursor = serde_json::from_value(p["cursor"].clone()).unwrap_or_default();
                    self.settle(watch, cursor);
                }
                "watch" => {
                    let Some(w) = self.watches.get_mut(&watch) else {
                        continue;
                    };
                    let (instance, seq) = (
                        p["instance"].as_u64().unwrap_or(0),
                        p["seq"].as_u64().unwrap_or(0),
                    );
                    w.advance(instance as usize, seq);
                    let text = |k: &str| p[k].as_str().map(str::to_string);
                    out.push(Event::Watch(Box::new(WatchEvent {
                        watch,
                        event: text("event").unwrap_or_default(),
                        port: text("port"),
                        node: text("node"),
                        owner: text("owner"),
                        address: text("address"),
                        reason: text("reason"),
                        previous: text("from"),
                        seq,
                        instance,
                    })));
                }
                "missed" if self.watches.contains_key(&watch) => out.push(Event::Missed {
                    watch,
                    instance: p["instance"].as_u64(),
                    first: p["from"].as_u64().unwrap_or(0),
                    last: p["to"].as_u64().unwrap_or(0),
                }),
                _ => {}
            }
        }
        out
    }
}

enum Command {
    Watch(WatchSpec, oneshot::Sender<Result<u64, Error>>),
    Unwatch(u64, oneshot::Sender<Result<(), Error>>),
    Abort,
    Close,
}

/// A watcher that is not a node; open it with [`watch`].
pub struct Watcher {
    events: mpsc::Receiver<Result<Event, Error>>,
    commands: mpsc::UnboundedSender<Command>,
    ended: Option<Error>,
}

impl Watcher {
    /// The next event ([`Event::Watch`] or [`Event::Missed`]); the error that ended the
    /// watcher ([`Error::Closed`] after [`Watcher::close`]).
    pub async fn next(&mut self) -> Result<Event, Error> {
        if let Some(e) = &self.ended {
            return Err(e.clone());
        }
        let got = self.events.recv().await.unwrap_or(Err(Error::Closed));
        if let Err(e) = &got {
            self.ended = Some(e.clone());
        }
        got
    }

    /// One more watch (kept across reconnects); its id.
    pub async fn watch(&self, spec: WatchSpec) -> Result<u64, Error> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Watch(spec, tx))
            .map_err(|_| Error::Closed)?;
        rx.await.unwrap_or(Err(Error::Closed))
    }

    /// Ends a watch.
    pub async fn unwatch(&self, id: u64) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Unwatch(id, tx))
            .map_err(|_| Error::Closed)?;
        rx.await.unwrap_or(Err(Error::Closed))
    }

    /// Drops the connection (the watcher connects again and resumes; for tests).
    pub fn abort(&self) {
        let _ = self.commands.send(Command::Abort);
    }

    /// Closes the connection; [`Watcher::next`] then returns [`Error::Closed`].
    pub fn close(&self) {
        let _ = self.commands.send(Command::Close);
    }
}

/// Opens a watcher that is not a node at the first of `urls` that accepts it, watching
/// `spec` (more with [`Watcher::watch`]). Errors: `Forbidden` if the token may not watch the
/// names, `RateLimited`/`Unavailable` beyond the switch's watcher limits.
pub async fn watch(
    urls: &[&str],
    token: &str,
    spec: WatchSpec,
    options: WatcherOptions,
) -> Result<Watcher, Error> {
    let members = urls
        .iter()
        .map(|u| base_url(u))
        .collect::<Result<Vec<_>, _>>()?;
    let mut state = WatcherState::default();
    state.add(spec);
    let (events_tx, events) = mpsc::channel(options.max_events.max(1));
    let (commands, commands_rx) = mpsc::unbounded_channel();
    let mut driver = Driver {
        members,
        token: token.to_string(),
        options,
        state,
        events: events_tx,
        commands: commands_rx,
        next_request: 1,
        pending: HashMap::new(),
        attempt: 0,
    };
    let ws = driver.connect().await?;
    tokio::spawn(driver.run(ws));
    Ok(Watcher {
        events,
        commands,
        ended: None,
    })
}

/// What a request in flight was for.
enum Pending {
    Watch(u64, Option<oneshot::Sender<Result<u64, Error>>>),
    Unwatch(oneshot::Sender<Result<(), Error>>),
}

struct Driver {
    members: Vec<String>,
    token: String,
    options: WatcherOptions,
    state: WatcherState,
    events: mpsc::Sender<Result<Event, Error>>,
    commands: mpsc::UnboundedReceiver<Command>,
    next_request: u64,
    pending: HashMap<u64, Pending>,
    attempt: u32,
}

impl Driver {
    /// Opens a connection, waits for the first watch's `watching` push and restores the
    /// others from their cursors.
    async fn connect(&mut self) -> Result<Ws, Error> {
        let Some((first, query)) = self.state.connect_query() else {
            return Err(Error::BadRequest {
                code: "bad_request".into(),
                message: "a watcher needs at least one watch".into(),
            });
        };
        let target = Target {
            members: &self.members,
            node: "",
            token: Some(&self.token),
            address: None,
            open_timeout: self.options.open_timeout,
            max_redirects: 5,
            max_retry_after: Duration::from_secs(30),
            watcher_query: Some(&query),
        };
        let (mut ws, _) = connect::open(&target, 0).await?;
        loop {
            let message = tokio::time::timeout(self.options.open_timeout, ws.next())
                .await
                .map_err(|_| Error::ConnectionLost {
                    message: "no watching push after the handshake".into(),
                })?;
            match message {
                Some(Ok(WsMessage::Text(text))) => {
                    let batch: Vec<Value> = serde_json::from_str(&text).unwrap_or_default();
                    let watching = batch.iter().any(|p| p["type"] == "watching");
                    self.deliver(&batch).await;
                    if watching {
                        break;
                    }
                }
                Some(Ok(WsMessage::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|f| (Some(u16::from(f.code)), f.reason.to_string()))
                        .unwrap_or((None, String::new()));
                    if code == Some(4005) && reason.starts_with("bad_cursor") {
                        let missed = self.state.forget_cursor(first);
                        let _ = self.events.send(Ok(missed)).await;
                    }
                    return Err(Error::from_close(code, &reason));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    return Err(Error::ConnectionLost {
                        message: e.to_string(),
                    })
                }
                None => {
                    return Err(Error::ConnectionLost {
                        message: "closed during the handshake".into(),
                    })
                }
            }
        }
        let others: Vec<u64> = self
            .state
            .watches
            .keys()
            .copied()
            .filter(|&id| id != first)
            .collect();
        for id in others {
            self.send_watch(&mut ws, id, None).await?;
        }
        Ok(ws)
    }

    async fn send_watch(
        &mut self,
        ws: &mut Ws,
        id: u64,
        reply: Option<oneshot::Sender<Result<u64, Error>>>,
    ) -> Result<(), Error> {
        let request = self.next_request;
        self.next_request += 1;
        let Some(text) = self.state.watch_request(id, request) else {
            return Ok(());
        };
        self.pending.insert(request, Pending::Watch(id, reply));
        ws.send(WsMessage::text(text))
            .await
            .map_err(|e| Error::ConnectionLost {
                message: e.to_string(),
            })
    }

    async fn deliver(&mut self, batch: &[Value]) {
        for event in self.state.pushes(batch) {
            // A full channel holds the reading here: back-pressure to the switch.
            let _ = self.events.send(Ok(event)).await;
        }
    }

    async fn on_reply(&mut self, ws: &mut Ws, reply: Value) -> Result<(), Error> {
        let Some(pending) = reply["id"].as_u64().and_then(|i| self.pending.remove(&i)) else {
            return Ok(());
        };
        let error = reply.get("error").map(|e| {
            Error::from_reply(
                e["code"].as_str().unwrap_or_default(),
                e["message"].as_str().unwrap_or_default(),
            )
        });
        match (pending, error) {
            (Pending::Watch(id, done), None) => {
                let cursor = serde_json::from_value(reply["cursor"].clone()).unwrap_or_default();
                self.state.settle(id, cursor);
                if let Some(done) = done {
                    let _ = done.send(Ok(id));
                }
            }
            (Pending::Watch(id, done), Some(_))
                if reply["error"]["code"] == "bad_cursor" && self.state.cursor(id).is_some() =>
            {
                let missed = self.state.forget_cursor(id);
                let _ = self.events.send(Ok(missed)).await;
                self.send_watch(ws, id, done).await?;
            }
            (Pending::Watch(id, done), Some(e)) => {
                self.state.remove(id);
                match done {
                    Some(done) => {
                        let _ = done.send(Err(e));
                    }
                    None => return Err(e),
                }
            }
            (Pending::Unwatch(done), e) => {
                let _ = done.send(e.map_or(Ok(()), Err));
            }
        }
        Ok(())
    }

    /// Serves one connection until it is lost (the error) or the watcher closes (`None`).
    async fn serve(&mut self, ws: &mut Ws) -> Option<Error> {
        loop {
            tokio::select! {
                message = ws.next() => match message {
                    Some(Ok(WsMessage::Text(text))) => {
                        let value: Value = serde_json::from_str(&text).unwrap_or_default();
                        match value {
                            Value::Array(batch) => self.deliver(&batch).await,
                            reply @ Value::Object(_) => {
                                if let Err(e) = self.on_reply(ws, reply).await {
                                    return Some(e);
                                }
                            }
                            _ => {}
                        }
                    }
                    Some(Ok(WsMessage::Close(frame))) => {
                        let (code, reason) = frame
                            .map(|f| (Some(u16::from(f.code)), f.reason.to_string()))
                            .unwrap_or((None, String::new()));
                        return Some(Error::from_close(code, &reason));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Some(Error::ConnectionLost { message: e.to_string() }),
                    None => return Some(Error::ConnectionLost { message: "connection ended".into() }),
                },
                command = self.commands.recv() => match command {
                    Some(Command::Watch(spec, done)) => {
                        let id = self.state.add(spec);
                        if let Err(e) = self.send_watch(ws, id, Some(done)).await {
                            return Some(e);
                        }
                    }
                    Some(Command::Unwatch(id, done)) => {
                        if !self.state.remove(id) {
                            let _ = done.send(Err(Error::BadRequest { code: "unknown_watch".into(), message: format!("no watch {id}") }));
                            continue;
                        }
                        let request = self.next_request;
                        self.next_request += 1;
                        self.pending.insert(request, Pending::Unwatch(done));
                        let text = json!({"op": "unwatch", "id": request, "watch": id}).to_string();
                        if let Err(e) = ws.send(WsMessage::text(text)).await {
                            return Some(Error::ConnectionLost { message: e.to_string() });
                        }
                    }
                    Some(Command::Abort) => {
                        return Some(Error::ConnectionLost { message: "dropped by the application".into() });
                    }
                    Some(Command::Close) | None => {
                        let _ = ws.close(None).await;
                        return None;
                    }
                },
            }
        }
    }

    async fn run(mut self, first: Ws) {
        let mut ws = Some(first);
        loop {
            let lost = match ws.as_mut() {
                Some(socket) => self.serve(socket).await,
                None => Some(Error::ConnectionLost {
                    message: "not connected".into(),
                }),
            };
            ws = None;
            let Some(error) = lost else {
                let _ = self.events.send(Err(Error::Closed)).await;
                return;
            };
            // Requests of the lost connection: a watch in flight is restored with the others.
            for (_, p) in self.pending.drain() {
                if let Pending::Unwatch(done) = p {
                    let _ = done.send(Ok(()));
                }
            }
            if error.is_terminal() {
                let _ = self.events.send(Err(error)).await;
                return;
            }
            tracing::info!(%error, "watcher: connection lost, connecting again");
            let unit = (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos()) as f64)
                / 1e9;
            let delay = backoff_delay(
                self.attempt,
                self.options.initial_backoff,
                self.options.max_backoff,
                unit,
            );
            self.attempt += 1;
            tokio::time::sleep(delay).await;
            match self.connect().await {
                Ok(socket) => {
                    self.attempt = 0;
                    ws = Some(socket);
                }
                Err(e) if e.is_terminal() => {
                    let _ = self.events.send(Err(e)).await;
                    return;
                }
                Err(e) => tracing::info!(error = %e, "watcher: reconnect failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_connects_from_cursors_and_counts_what_it_saw() {
        let mut s = WatcherState::default();
        let a = s.add(WatchSpec::ports("leader/", true));
        let b = s.add(WatchSpec::nodes("n 1", false));
        assert_eq!(
            s.connect_query(),
            Some((a, "ports=leader%2F&prefix=true&watch=1".into()))
        );
        // An event before the cursor is known is kept, then merged into it.
        let got = s.pushes(&[
            json!({"type":"watch","watch":a,"instance":1,"seq":9,"event":"acquired","port":"leader/x","owner":"n","address":null}),
            json!({"type":"watching","watch":a,"cursor":[3,4]}),
        ]);
        assert!(
            matches!(&got[..], [Event::Watch(w)] if w.port.as_deref() == Some("leader/x") && w.address.is_none())
        );
        assert_eq!(s.cursor(a), Some(&[3, 9][..]));
        assert_eq!(
            s.connect_query().unwrap().1,
            "ports=leader%2F&prefix=true&watch=1&from=3,9"
        );
        let r: Value = serde_json::from_str(&s.watch_request(b, 7).unwrap()).unwrap();
        assert_eq!(
            r,
            json!({"op":"watch","id":7,"watch":b,"nodes":"n 1","prefix":false})
        );
        let got = s.pushes(&[
            json!({"type":"missed","watch":a,"instance":0,"from":4,"to":8}),
            json!({"type":"watch","watch":99,"seq":1}),
        ]);
        assert_eq!(
            got,
            [Event::Missed {
                watch: a,
                instance: Some(0),
                first: 4,
                last: 8
            }]
        );
        assert!(matches!(
            s.forget_cursor(a),
            Event::Missed { instance: None, .. }
        ));
        assert_eq!(s.cursor(a), None);
        assert!(s.remove(a));
        assert_eq!(
            s.connect_query().unwrap().0,
            b,
            "the next watch goes in the query"
        );
    }
}
