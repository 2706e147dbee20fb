//! The coordination calls of the sans-I/O session (issue 15), on its state in `coord.rs`:
//! requests outside the batches, the watches' cursors, and the coordination pushes.
//!
//! These requests are not merged with others: each is one message with a reply of its own,
//! sent once the connection is restored, in the order they were made.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::coord::{RawOwner, WatchState};
use crate::error::Error;
use crate::session::{Outcome, Session, Waiter};
use crate::types::{Event, FencingToken, WatchEvent};
use crate::wire::PushWire;

impl<W: Waiter> Session<W> {
    /// Queue a request of `fields` (its `op` among them) outside the batches; the waiter gets
    /// [`Outcome::Raw`] with the reply.
    pub fn submit_raw(&mut self, fields: Map<String, Value>, waiter: W) {
        self.coord.queued.push((fields, RawOwner::App(waiter)));
        self.flush_raw();
    }

    /// Start a watch of `kind` (`ports` or `nodes`) on `key`; the waiter gets the reply as
    /// [`Outcome::Raw`] (its `watch` is the id events carry).
    pub fn submit_watch(&mut self, kind: &str, key: &str, prefix: bool, waiter: W) {
        let id = self.coord.next_watch;
        self.coord.next_watch += 1;
        let mut fields = Map::new();
        fields.insert(kind.into(), key.into());
        fields.insert("prefix".into(), prefix.into());
        self.coord.watches.insert(
            id,
            WatchState {
                fields,
                cursor: None,
                early: BTreeMap::new(),
            },
        );
        let request = self.watch_request(id);
        self.coord
            .queued
            .push((request, RawOwner::Watch(id, Some(waiter))));
        self.flush_raw();
    }

    /// Queue a handover (`fields` with `to` and `ports`): moved ports stop being held.
    pub fn submit_handover(&mut self, fields: Map<String, Value>, waiter: W) {
        self.coord
            .queued
            .push((fields, RawOwner::Holding(waiter, Vec::new())));
        self.flush_raw();
    }

    /// Queue a compare-and-register of `ports`: those it gets are held.
    pub fn submit_register_if(
        &mut self,
        fields: Map<String, Value>,
        ports: Vec<String>,
        waiter: W,
    ) {
        self.coord
            .queued
            .push((fields, RawOwner::Holding(waiter, ports)));
        self.flush_raw();
    }

    /// End watch `id`.
    pub fn submit_unwatch(&mut self, id: u64, waiter: W) {
        if self.coord.watches.remove(&id).is_none() {
            waiter.complete(Err(Error::BadRequest {
                code: "unknown_watch".into(),
                message: format!("this client has no watch {id}"),
            }));
            return;
        }
        let fields = json!({"op": "unwatch", "watch": id});
        if let Value::Object(m) = fields {
            self.submit_raw(m, waiter);
        }
    }

    /// The session of the current connection (its first push names it).
    pub fn session_id(&self) -> Option<u64> {
        self.coord.session
    }

    /// The watches: id and cursor.
    pub fn watch_cursors(&self) -> Vec<(u64, Option<Vec<u64>>)> {
        self.coord
            .watches
            .iter()
            .map(|(&id, w)| (id, w.cursor.clone()))
            .collect()
    }

    fn watch_request(&self, id: u64) -> Map<String, Value> {
        let mut m = self
            .coord
            .watches
            .get(&id)
            .map(|w| w.fields.clone())
            .unwrap_or_default();
        m.insert("op".into(), "watch".into());
        m.insert("watch".into(), id.into());
        if let Some(cursor) = self.coord.watches.get(&id).and_then(|w| w.cursor.clone()) {
            m.insert("from".into(), cursor.into());
        }
        m
    }

    /// After a restore: every watch again, from its cursor, before the requests queued.
    pub(crate) fn restore_watches(&mut self) {
        let ids: Vec<u64> = self.coord.watches.keys().copied().collect();
        let mut again = Vec::new();
        for id in ids {
            again.push((self.watch_request(id), RawOwner::Watch(id, None)));
        }
        again.append(&mut self.coord.queued);
        self.coord.queued = again;
        self.flush_raw();
    }

    /// Send what is queued outside the batches, if the connection is ready.
    pub(crate) fn flush_raw(&mut self) {
        if !self.is_ready() {
            return;
        }
        for (mut fields, owner) in std::mem::take(&mut self.coord.queued) {
            let id = self.take_request_id();
            fields.insert("id".into(), id.into());
            self.push_output(Value::Object(fields).to_string());
            self.coord.raw.insert(id, owner);
        }
    }

    /// A reply to a request outside the batches (`text` is the whole reply).
    pub(crate) fn on_raw_reply(&mut self, owner: RawOwner<W>, text: &str) {
        let reply: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let error = reply.get("error").map(|e| {
            Error::from_reply(
                e["code"].as_str().unwrap_or_default(),
                e["message"].as_str().unwrap_or_default(),
            )
        });
        match owner {
            RawOwner::App(w) => w.complete(match error {
                Some(e) => Err(e),
                None => Ok(Outcome::Raw(reply)),
            }),
            RawOwner::Watch(id, waiter) => {
                match (&error, self.coord.watches.get_mut(&id)) {
                    (None, Some(w)) => w.settle(&reply),
                    (Some(Error::BadRequest { .. }), Some(w)) if waiter.is_none() => {
                        // The switch does not know the cursor (another cluster, other
                        // instances): start over, telling the application it may have missed
                        // anything.
                        w.cursor = None;
                        self.control.push(Event::Missed {
                            watch: id,
                            instance: None,
                            first: 0,
                            last: 0,
                        });
                        let request = self.watch_request(id);
                        self.coord
                            .queued
                            .insert(0, (request, RawOwner::Watch(id, None)));
                        self.flush_raw();
                    }
                    _ => {}
                }
                if error.is_some() && waiter.is_some() {
                    self.coord.watches.remove(&id);
                }
                if let Some(w) = waiter {
                    w.complete(match error {
                        Some(e) => Err(e),
                        None => Ok(Outcome::Raw(reply)),
                    });
                }
            }
            RawOwner::Ack => {
                if let Some(e) = error {
                    tracing::warn!(error = %e, "acknowledgement refused");
                }
            }
            RawOwner::Holding(w, ports) => {
                if error.is_none() {
                    let names = |v: &Value| -> Vec<String> {
                        v.as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|s| s.as_str().map(str::to_string))
                                    .collect()
                            })
                            .unwrap_or_default()
                    };
                    for p in names(&reply["moved"]) {
                        self.unhold(&p);
                    }
                    let failed: Vec<String> = reply["failed"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|f| f["port"].as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    // A cluster master's stamp is the fencing token of every port won.
                    let token = match (reply["epoch"].as_u64(), reply["sequence"].as_u64()) {
                        (Some(epoch), Some(sequence)) => Some(FencingToken { epoch, sequence }),
                        _ => None,
                    };
                    for p in ports.iter().filter(|p| !failed.contains(p)) {
                        self.hold(p, token);
                    }
                }
                w.complete(match error {
                    Some(e) => Err(e),
                    None => Ok(Outcome::Raw(reply)),
                });
            }
        }
    }

    /// The connection is gone: requests in flight outside the batches fail (a watch is
    /// started again at the next connection, from its cursor).
    pub(crate) fn raw_closed(&mut self, error: &Error) {
        for (_, owner) in std::mem::take(&mut self.coord.raw) {
            match owner {
                RawOwner::App(w) | RawOwner::Holding(w, _) | RawOwner::Watch(_, Some(w)) => {
                    w.complete(Err(error.clone()))
                }
                RawOwner::Watch(_, None) | RawOwner::Ack => {}
            }
        }
        self.coord.session = None;
    }

    /// A coordination push: its event, if it has one for the application.
    pub(crate) fn coord_push(&mut self, p: PushWire<'_>) -> Option<Event> {
        let port = || p.port.to_string();
        match p.kind.as_ref() {
            "session" => {
                self.coord.session = p.session;
                None
            }
            "epoch" => None,
            "watch" => {
                let (watch, instance, seq) = (p.watch?, p.instance.unwrap_or(0), p.seq?);
                self.coord.watches.get_mut(&watch)?.advance(instance, seq);
                Some(Event::Watch(Box::new(WatchEvent {
                    watch,
                    event: p.event.as_deref().unwrap_or_default().to_string(),
                    port: (!p.port.is_empty()).then(|| p.port.to_string()),
                    node: p.node.as_deref().map(str::to_string),
                    owner: p.owner.as_deref().map(str::to_string),
                    address: p.address.as_deref().map(str::to_string),
                    reason: p.reason.as_deref().map(str::to_string),
                    previous: p.from.as_ref().and_then(Value::as_str).map(str::to_string),
                    seq,
                    instance,
                })))
            }
            "missed" => {
                let watch = p.watch?;
                self.coord.watches.get(&watch)?;
                Some(Event::Missed {
                    watch,
                    instance: p.instance,
                    first: p.from.as_ref().and_then(Value::as_u64).unwrap_or(0),
                    last: p.to.as_ref().and_then(Value::as_u64).unwrap_or(0),
                })
            }
            "handover" => {
                let port = port();
                self.hold(&port, None);
                self.refence(port.clone());
                Some(Event::HandedOver {
                    port,
                    previous: p
                        .from
                        .as_ref()
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    seq: p.seq.unwrap_or(0),
                })
            }
            "moved" => {
                let port = port();
                self.unhold(&port);
                Some(Event::PortMoved {
                    port,
                    to: p
                        .to
                        .as_ref()
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    seq: p.seq.unwrap_or(0),
                })
            }
            other => {
                tracing::warn!(kind = other, "unknown push");
                None
            }
        }
    }

    /// The messages of a batch up to push number `upto` are in the client's hands:
    /// acknowledge them.
    pub(crate) fn acknowledge(&mut self, upto: u64) {
        let fields = json!({"op": "ack", "upto": upto});
        if let Value::Object(m) = fields {
            self.coord.queued.push((m, RawOwner::Ack));
            self.flush_raw();
        }
    }
}
