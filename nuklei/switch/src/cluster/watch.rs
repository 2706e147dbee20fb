//! Watches across instances: every instance journals its own events (a port's at its shard,
//! a node's at its home) and forwards each to the homes that watch it ([`Interest`]); a
//! watch starts at its home, asks every instance for its replay, and is ready once all
//! answered (see [`crate::watch`]).

use super::*;
use crate::switch::WatchReply;
use crate::watch::{self, WatchRef, WatchRequest, Watched};

impl Instance {
    /// Journals `event` (this instance's) and forwards it to the homes that watch it; its
    /// sequence number.
    /// Inlined: it runs for every registration and release, and with nobody watching it is
    /// only the journal's append and a look at the interest.
    #[inline]
    pub(super) fn emit(&mut self, event: &Event<'_>, out: &mut Vec<Output>) -> u64 {
        let seq = self.journal.append(event);
        if self.interest.may_want(event.what.kind(), event.key) {
            self.forward(seq, event, out);
        }
        seq
    }

    /// Event `seq` to the homes whose watches may want it.
    #[inline(never)]
    fn forward(&mut self, seq: u64, event: &Event<'_>, out: &mut Vec<Output>) {
        let kind = event.what.kind();
        let mut homes = std::mem::take(&mut self.homes);
        self.interest.homes(kind, event.key, &mut homes);
        for &home in &homes {
            if usize::from(home) == self.me {
                self.event_here(self.me, seq, event, out);
            } else {
                Msg::Event { seq, event: *event }.encode(&mut self.outbox[usize::from(home)]);
            }
        }
        self.homes = homes;
    }

    /// Event `seq` of instance `origin` for the watches homed here.
    pub(super) fn event_here(
        &mut self,
        origin: usize,
        seq: u64,
        event: &Event<'_>,
        out: &mut Vec<Output>,
    ) {
        let mut slow = Vec::new();
        watch::fan_out(
            &mut self.watchers,
            &mut self.nodes,
            origin,
            seq,
            event,
            out,
            &mut slow,
        );
        self.work.extend(crate::switch::slow_consumers(slow));
    }

    /// Starts a watch of `node` (homed here, online). Completes under `token` once every
    /// instance has sent its replay.
    pub fn watch(
        &mut self,
        token: Token,
        node: &str,
        request: WatchRequest,
        out: &mut Vec<Output>,
    ) {
        let admitted = request
            .check(&self.limits, self.count)
            .and_then(|()| self.online_index(node));
        match admitted {
            Ok(idx) => self.watch_at(token, idx, request, out),
            Err(e) => self.done.push((token, Err(e))),
        }
    }

    /// Opens a node-less watcher on `conn` here (a dashboard, an operator's tool): a receiving
    /// connection for watches only, with no ports, no lease, not listed among the nodes. Its
    /// watches are homed here like a node's; it ends when the connection closes.
    pub fn open_watcher(&mut self, conn: ConnId) -> Session {
        let (node, session) = self.nodes.open_watcher(conn);
        Session {
            node,
            session: self.global(session),
            lease_deadline: u64::MAX,
            replaced: false,
        }
    }

    /// Starts a watch of the node-less watcher `watcher` (its index here), as
    /// [`Instance::watch`] does for a node.
    pub fn watcher_watch(
        &mut self,
        token: Token,
        watcher: NodeIdx,
        request: WatchRequest,
        out: &mut Vec<Output>,
    ) {
        let admitted = request
            .check(&self.limits, self.count)
            .and_then(|()| watch::single::watcher_index(&self.nodes, watcher));
        match admitted {
            Ok(idx) => self.watch_at(token, idx, request, out),
            Err(e) => self.done.push((token, Err(e))),
        }
    }

    /// Ends watch `id` of the node-less watcher `watcher`.
    pub fn watcher_unwatch(&mut self, watcher: NodeIdx, id: u64) -> Result<(), SwitchError> {
        let idx = watch::single::watcher_index(&self.nodes, watcher)?;
        let watched = self
            .watchers
            .remove(idx, id)
            .ok_or(SwitchError::Watch(crate::switch::WatchError::Unknown(id)))?;
        self.stop_watching(&watched);
        Ok(())
    }

    fn watch_at(
        &mut self,
        token: Token,
        idx: NodeIdx,
        request: WatchRequest,
        out: &mut Vec<Output>,
    ) {
        let id = request.id.unwrap_or_else(|| self.watchers.next_id(idx));
        let watched = request.watched();
        let slot =
            match self
                .watchers
                .add(idx, id, watched.clone(), self.limits.max_watches_per_node)
            {
                Ok(slot) => slot,
                Err(e) => {
                    self.done.push((token, Err(e.into())));
                    return;
                }
            };
        let session = self.global(self.nodes.get(idx).map_or(0, Node::session));
        let watch = WatchRef {
            node: idx,
            session,
            id,
        };
        let op = self.new_op();
        for peer in 0..self.count {
            if peer == self.me {
                continue;
            }
            let msg = Msg::WatchStart {
                op,
                watch,
                kind: watched.kind,
                key: &watched.key,
                prefix: watched.prefix,
                from: request.from.as_ref().map(|f| f[peer]),
            };
            msg.encode(&mut self.outbox[peer]);
        }
        // Here: interest, then the replay from the journal, at once.
        self.interest
            .add(watched.kind, &watched.key, watched.prefix, self.me as u16);
        let mut error = None;
        let position = match request.from.as_ref().map(|f| f[self.me]) {
            None => self.journal.last(),
            Some(from) => {
                let mut slow = Vec::new();
                let replayed = watch::replay(
                    &self.journal,
                    &watched,
                    &mut self.nodes,
                    idx,
                    id,
                    self.me,
                    from,
                    out,
                    &mut slow,
                );
                self.work.extend(crate::switch::slow_consumers(slow));
                replayed.unwrap_or_else(|last| {
                    error = Some(watch::single::ahead(self.me, last));
                    last
                })
            }
        };
        self.watchers.set_position(slot, self.me, position);
        self.ops.insert(
            op,
            Op::Watch(WatchOp {
                token,
                node: idx,
                id,
                slot,
                watched,
                waiting: self.count - 1,
                error,
            }),
        );
        self.settle(out);
        self.try_finish(op, out);
    }

    /// Ends watch `id` of `node` (homed here, online).
    pub fn unwatch(&mut self, node: &str, id: u64) -> Result<(), SwitchError> {
        let idx = self.online_index(node)?;
        let watched = self
            .watchers
            .remove(idx, id)
            .ok_or(SwitchError::Watch(crate::switch::WatchError::Unknown(id)))?;
        self.stop_watching(&watched);
        Ok(())
    }

    /// The watches of node `idx` end with its session.
    pub(super) fn end_watches(&mut self, idx: NodeIdx) {
        for watched in self.watchers.remove_node(idx) {
            self.stop_watching(&watched);
        }
    }

    /// Tells every instance that one watch of this home on `watched` ended.
    fn stop_watching(&mut self, watched: &Watched) {
        for peer in 0..self.count {
            if peer == self.me {
                self.interest
                    .remove(watched.kind, &watched.key, watched.prefix, self.me as u16);
            } else {
                Msg::WatchStop {
                    kind: watched.kind,
                    key: &watched.key,
                    prefix: watched.prefix,
                }
                .encode(&mut self.outbox[peer]);
            }
        }
    }

    /// [`Msg::WatchStart`] from home `from`: its interest, and the replay.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_watch_start(
        &mut self,
        from_home: usize,
        op: u64,
        watch: WatchRef,
        watched: Watched,
        from: Option<u64>,
    ) {
        self.interest
            .add(watched.kind, &watched.key, watched.prefix, from_home as u16);
        let (position, ahead, missed, start) = match from {
            None => (self.journal.last(), false, None, None),
            Some(from) => match self.journal.replay(from) {
                crate::watch::Replay::Ahead { last } => (last, true, None, None),
                crate::watch::Replay::From {
                    missed,
                    start,
                    last,
                } => (last, false, missed, Some(start)),
            },
        };
        let events: Vec<(u64, Event<'_>)> = match start {
            None => Vec::new(),
            Some(start) => self
                .journal
                .since(start)
                .filter(|(_, e)| watched.matches(e))
                .collect(),
        };
        let mut bytes = Vec::new();
        Msg::WatchReady {
            op,
            watch,
            position,
            ahead,
            missed,
            events,
        }
        .encode(&mut bytes);
        self.outbox[from_home].extend_from_slice(&bytes);
    }

    /// [`Msg::WatchReady`] from instance `from`: the watch's replay from there.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_watch_ready(
        &mut self,
        from: usize,
        op: u64,
        watch: WatchRef,
        position: u64,
        ahead: bool,
        missed: Option<(u64, u64)>,
        events: Vec<(u64, Event<'_>)>,
        out: &mut Vec<Output>,
    ) {
        let Some(Op::Watch(w)) = self.ops.get_mut(&op) else {
            return;
        };
        w.waiting -= 1;
        let (slot, id, node) = (w.slot, w.id, w.node);
        // The watch may have ended meanwhile (its session did): nothing to deliver.
        let current = self.watchers.find(node, id) == Some(slot)
            && self.nodes.get(node).map(|n| self.global(n.session())) == Some(watch.session);
        if ahead {
            if let Some(Op::Watch(w)) = self.ops.get_mut(&op) {
                w.error.get_or_insert(watch::single::ahead(from, position));
            }
        } else if current {
            let mut slow = Vec::new();
            if let Some((a, b)) = missed {
                watch::push_to(
                    &mut self.nodes,
                    node,
                    |buf| watch::encode_missed(id, from, a, b, buf),
                    out,
                    &mut slow,
                );
            }
            for (seq, event) in &events {
                watch::push_to(
                    &mut self.nodes,
                    node,
                    |buf| event.encode(id, from, *seq, buf),
                    out,
                    &mut slow,
                );
            }
            self.work.extend(crate::switch::slow_consumers(slow));
            self.watchers.set_position(slot, from, position);
        }
        self.settle(out);
        self.try_finish(op, out);
    }

    /// The reply of a finished watch: its cursor, or its error (the watch is then removed).
    pub(super) fn finish_watch(&mut self, w: WatchOp) -> Result<Reply, SwitchError> {
        let current = self.watchers.find(w.node, w.id) == Some(w.slot);
        if let Some(e) = w.error {
            if current {
                self.watchers.remove(w.node, w.id);
                self.stop_watching(&w.watched);
            }
            return Err(e);
        }
        match self.watchers.cursor(w.slot).filter(|_| current) {
            Some(cursor) => Ok(Reply::Watch(WatchReply { id: w.id, cursor })),
            None => Err(match self.nodes.get(w.node) {
                Some(n) if n.is_watcher() => SwitchError::WatcherGone,
                n => SwitchError::NotOnline(n.map(|n| n.id().to_string()).unwrap_or_default()),
            }),
        }
    }
}
