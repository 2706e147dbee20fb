//! An instance as the home of the nodes whose id hashes to it: WaitMsg, relets, leases,
//! connections, and delivering pushes to its nodes.

use super::*;

impl Instance {
    // ---- node home -------------------------------------------------------------------------

    /// WaitMsg: `conn` becomes the receiving connection of `node` (homed here). A previous
    /// receiving connection is closed ([`CloseReason::Replaced`]) and the node's ports are
    /// released everywhere.
    pub fn wait_msg(
        &mut self,
        node: &str,
        address: &str,
        conn: ConnId,
        now: u64,
        out: &mut Vec<Output>,
    ) -> Result<Session, SwitchError> {
        check_wait_msg(&self.limits, node, address)?;
        self.check_home(node)?;
        if let Some(renewed) = rewait(&mut self.nodes, node, conn, now) {
            return renewed;
        }
        let idx = self.nodes.intern(node);
        let old_session = self.nodes.get(idx).map_or(0, Node::session);
        let mut replaced = false;
        if let Some(old) = self.nodes.disconnect(idx) {
            replaced = true;
            self.metrics.replaced_connections += 1;
            let id = self
                .nodes
                .get(idx)
                .map(|n| n.id().clone())
                .unwrap_or_default();
            out.push(Output::Close {
                node: id.clone(),
                conn: old,
                reason: CloseReason::Replaced,
            });
            self.end_watches(idx);
            self.node_gone(&id, self.global(old_session), ReleaseReason::Replaced, out);
            self.settle(out);
        }
        let mut session = connect(&mut self.nodes, idx, conn, address, now, replaced);
        session.session = self.global(session.session);
        self.now = self.now.max(now);
        let what = if replaced {
            What::Replaced
        } else {
            What::Online
        };
        self.emit(&Event::node(what, node, address), out);
        self.settle(out);
        Ok(session)
    }

    /// Relet: extend the lease of a node homed here.
    pub fn relet(&mut self, node: &str, now: u64) -> Result<u64, SwitchError> {
        self.now = self.now.max(now);
        let idx = self.online_index(node)?;
        self.nodes
            .relet(idx, now)
            .map_err(|_| SwitchError::NotOnline(node.to_string()))
    }

    /// A connection closed; if it was a receiving connection, its node goes offline.
    pub fn connection_closed(&mut self, conn: ConnId, out: &mut Vec<Output>) -> bool {
        match self.nodes.by_conn(conn) {
            Some(idx) => {
                self.work.push((idx, Cause::Closed));
                self.settle(out);
                true
            }
            None => false,
        }
    }

    /// Nodes whose lease ran out at `now` go offline; returns how many.
    pub fn tick(&mut self, now: u64, out: &mut Vec<Output>) -> usize {
        self.now = self.now.max(now);
        self.acks.expire(now);
        let expired = self.nodes.expired(now);
        self.metrics.lease_expiries += expired.len() as u64;
        let n = expired.len();
        self.work
            .extend(expired.into_iter().map(|i| (i, Cause::LeaseExpired)));
        self.settle(out);
        n
    }

    /// The earliest lease deadline on record (or deadline of an acknowledged delivery).
    pub fn next_deadline(&self) -> Option<u64> {
        match (self.nodes.next_deadline(), self.acks.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Take a batch of [`NodeRegistry::batch`] off the queue of a node homed here (see
    /// [`NodeRegistry::consume`]).
    pub fn consume(&mut self, node: NodeIdx, pushes: usize, bytes: usize) -> Drained {
        self.nodes.consume(node, pushes, bytes)
    }

    /// Encode the oldest pushes of a node homed here (see [`NodeRegistry::drain`]).
    pub fn drain(&mut self, node: NodeIdx, max_bytes: usize, out: &mut Vec<u8>) -> Drained {
        self.nodes.drain(node, max_bytes, out)
    }

    /// Take nodes offline, including the cascade of subscribers that turn out to be slow
    /// consumers while being notified.
    pub(super) fn settle(&mut self, out: &mut Vec<Output>) {
        while let Some((idx, cause)) = self.work.pop() {
            let Some((id, session)) = self.nodes.get(idx).map(|n| (n.id().clone(), n.session()))
            else {
                continue;
            };
            let watcher = self.nodes.get(idx).is_some_and(Node::is_watcher);
            let Some(conn) = self.nodes.disconnect(idx) else {
                continue;
            };
            let reason = cause.close_reason(&mut self.metrics);
            self.end_watches(idx);
            if watcher {
                end_watcher(&mut self.nodes, idx, id, conn, reason, out);
                continue;
            }
            self.acks.gone(idx);
            self.reserved.remove(&idx);
            self.emit(
                &Event::node(What::Offline(cause.offline_reason()), &id, ""),
                out,
            );
            if let Some(reason) = reason {
                out.push(Output::Close {
                    node: id.clone(),
                    conn,
                    reason,
                });
            }
            self.node_gone(&id, self.global(session), ReleaseReason::NodeOffline, out);
            self.nodes.forget(idx);
        }
        self.collect_acks(out);
    }

    /// A node homed here ended `session`: every shard releases its ports.
    pub(super) fn node_gone(
        &mut self,
        id: &str,
        session: u64,
        reason: ReleaseReason,
        out: &mut Vec<Output>,
    ) {
        let msg = Msg::NodeGone {
            node: id,
            session,
            reason,
        };
        for peer in 0..self.count {
            if peer != self.me {
                self.send(peer, &msg);
            }
        }
        self.release_here(id, session, reason, out);
    }

    /// Queue `push` for node `idx` homed here if it is still in `session` (global).
    pub(super) fn deliver_here(
        &mut self,
        idx: NodeIdx,
        session: u64,
        push: PushRef<'_>,
        out: &mut Vec<Output>,
    ) -> SendReport {
        if !self.is_current(idx, session) {
            return dropped(1);
        }
        self.push_here(idx, push, out)
    }

    /// Whether node `idx` homed here is online in `session` (global).
    fn is_current(&self, idx: NodeIdx, session: u64) -> bool {
        let current = self
            .nodes
            .get(idx)
            .filter(|n| n.conn().is_some())
            .map(|n| self.global(n.session()));
        current == Some(session)
    }

    pub(super) fn push_here(
        &mut self,
        idx: NodeIdx,
        push: PushRef<'_>,
        out: &mut Vec<Output>,
    ) -> SendReport {
        let outcome = match push {
            PushRef::Msg {
                port,
                body,
                escaping,
            } => match self.ack_op {
                None => self.nodes.push_msg_as(idx, port, body, escaping),
                Some(op) => {
                    let number = self.acks.expect(idx, op);
                    let outcome = self.nodes.push_object(idx, |buf| {
                        crate::ack::encode_msg(port, body, escaping, number, buf)
                    });
                    if !matches!(outcome, PushOutcome::Queued { .. }) {
                        self.acks.cancel(idx);
                    }
                    outcome
                }
            },
            PushRef::Released { port, reason } => self.nodes.push_released(idx, port, reason),
        };
        self.pushed(idx, outcome, out)
    }

    /// A message pushed to node `idx` homed here, in the loop of a Deliver run: without an
    /// acknowledged delivery under way, straight to the queue (no [`PushRef`] to match).
    #[inline(always)]
    fn push_msg_here(
        &mut self,
        idx: NodeIdx,
        port: &str,
        body: &str,
        escaping: Escaping,
        out: &mut Vec<Output>,
    ) -> SendReport {
        if self.ack_op.is_some() {
            let push = PushRef::Msg {
                port,
                body,
                escaping,
            };
            return self.push_here(idx, push, out);
        }
        let outcome = self.nodes.push_msg_as(idx, port, body, escaping);
        self.pushed(idx, outcome, out)
    }

    /// What a push's outcome adds to the report: the first push queued for a connection makes
    /// it pending; a slow consumer goes offline at the next `settle`.
    #[inline(always)]
    fn pushed(&mut self, idx: NodeIdx, outcome: PushOutcome, out: &mut Vec<Output>) -> SendReport {
        match outcome {
            PushOutcome::Queued { first } => {
                if first {
                    if let Some(conn) = self.nodes.get(idx).and_then(Node::conn) {
                        out.push(Output::Pending { node: idx, conn });
                    }
                }
                SendReport {
                    delivered: 1,
                    dropped: 0,
                }
            }
            PushOutcome::Offline => dropped(1),
            PushOutcome::SlowConsumer { queued, limit } => {
                self.work.push((idx, Cause::SlowConsumer { queued, limit }));
                dropped(1)
            }
        }
    }

    pub(super) fn deliver_items(&mut self, items: Items<'_>, out: &mut Vec<Output>) -> SendReport {
        match items {
            Items::List(list) => self.deliver_each(list, out),
            Items::Record(reader) => self.deliver_record(reader, out),
        }
    }

    /// The items of a received Deliver record: a run of messages to one node is checked once
    /// and its messages pushed in a loop of their own, read straight from the record.
    fn deliver_record(&mut self, mut reader: ItemReader<'_>, out: &mut Vec<Output>) -> SendReport {
        let mut report = SendReport::default();
        // Messages to a node found online in their session: pushing cannot take it offline
        // before `settle`.
        let mut unicasts = SendReport::default();
        while let Some(item) = reader.next() {
            let Item::Unicast {
                node,
                session,
                port,
                body,
                escaping,
            } = item
            else {
                report += self.deliver_other(item, out);
                continue;
            };
            // The first message of a run, or of what is left of it.
            if !self.is_current(node, session) {
                unicasts += dropped(1);
                while reader.next_of_run().is_some() {
                    unicasts += dropped(1);
                }
                continue;
            }
            unicasts += self.push_msg_here(node, port, body, escaping, out);
            while let Some((port, body)) = reader.next_of_run() {
                unicasts += self.push_msg_here(node, port, body, escaping, out);
            }
        }
        self.count_messages(unicasts);
        report += unicasts;
        self.settle(out);
        report
    }

    /// A delivered item other than a message to one node: what it adds to the report.
    fn deliver_other(&mut self, item: Item<'_>, out: &mut Vec<Output>) -> SendReport {
        match item {
            Item::Broadcast { body } => return self.broadcast_here(body, out),
            Item::Released {
                node,
                session,
                port,
                reason,
            } => {
                let push = PushRef::Released { port, reason };
                let r = self.deliver_here(node, session, push, out);
                self.metrics.release_notifications += r.delivered;
            }
            Item::Moved {
                node,
                session,
                port,
                to,
                seq,
            } => self.port_moved_away(node, session, port, to, seq, out),
            Item::Unicast { .. } => {}
        }
        SendReport::default()
    }

    fn deliver_each<'a>(
        &mut self,
        items: impl IntoIterator<Item = Item<'a>>,
        out: &mut Vec<Output>,
    ) -> SendReport {
        let mut report = SendReport::default();
        // Messages to a node found online in their session: pushing cannot take it offline
        // before `settle`, so a run of them to one node is checked once.
        let mut unicasts = SendReport::default();
        let mut current = None;
        for item in items {
            let Item::Unicast {
                node,
                session,
                port,
                body,
                escaping,
            } = item
            else {
                current = None;
                report += self.deliver_other(item, out);
                continue;
            };
            if current != Some((node, session)) {
                if !self.is_current(node, session) {
                    unicasts += dropped(1);
                    continue;
                }
                current = Some((node, session));
            }
            unicasts += self.push_msg_here(node, port, body, escaping, out);
        }
        self.count_messages(unicasts);
        report += unicasts;
        self.settle(out);
        report
    }

    pub(super) fn count_messages(&mut self, r: SendReport) {
        self.metrics.messages_sent += r.delivered;
        self.metrics.messages_dropped += r.dropped;
    }

    pub(super) fn broadcast_here(&mut self, body: &str, out: &mut Vec<Output>) -> SendReport {
        let targets: Vec<NodeIdx> = self.nodes.online_nodes().collect();
        let mut report = SendReport::default();
        for t in targets {
            report += self.push_here(
                t,
                PushRef::Msg {
                    port: "",
                    body,
                    escaping: Escaping::Scan,
                },
                out,
            );
        }
        self.count_messages(report);
        report
    }
}
