//! The operations a front instance runs for a client: admission, scattering a batch over
//! the shards and homes, and finishing when every part has answered.

use super::*;

impl Instance {
    // ---- operations ------------------------------------------------------------------------

    /// Checks a RegPort/UnRegPort of ports of lengths `lens` (in order) for `node` (homed
    /// here, online): its index, or `None` after completing `token` with the error.
    pub(super) fn admit_node_call(
        &mut self,
        token: Token,
        node: &str,
        lens: impl ExactSizeIterator<Item = usize>,
    ) -> Option<NodeIdx> {
        let checked = self
            .check_ports(lens)
            .and_then(|()| self.online_index(node));
        match checked {
            Ok(idx) => Some(idx),
            Err(e) => {
                self.done.push((token, Err(e)));
                None
            }
        }
    }

    /// RegPort for `node` (homed here, online); with `if_owner`, compare-and-register (see
    /// [`crate::handover`]). Completes under `token`.
    pub fn reg_port(
        &mut self,
        token: Token,
        node: &str,
        ports: impl Into<PortNames>,
        subscribe: bool,
        if_owner: Option<Option<&str>>,
        out: &mut Vec<Output>,
    ) {
        let ports = Arc::new(ports.into());
        self.reg_port_shared(token, node, ports, subscribe, if_owner, out);
    }

    /// [`Instance::reg_port`] of names the caller shares (to name the failed ones in its
    /// reply) instead of copying them.
    pub fn reg_port_shared(
        &mut self,
        token: Token,
        node: &str,
        ports: Arc<PortNames>,
        subscribe: bool,
        if_owner: Option<Option<&str>>,
        out: &mut Vec<Output>,
    ) {
        let Some(idx) = self.admit_node_call(token, node, ports.lens()) else {
            return;
        };
        if if_owner.is_some() && if_owner != Some(Some(node)) {
            // Compare-and-register moves ports without a rollback: refuse up front what could
            // exceed the limit.
            let held = self.nodes.get(idx).map_or(0, Node::ports)
                + self.reserved.get(&idx).copied().unwrap_or(0);
            let room =
                crate::handover::check_room(held, ports.len(), self.limits.max_ports_per_node);
            if let Err(e) = room {
                self.done.push((token, Err(e)));
                return;
            }
        }
        let (at_home, address) = self.at_home(idx);
        let op = self.new_op();
        let mut parts = self.split_ports(ports.iter().enumerate());
        let mine = std::mem::take(&mut parts[self.me]);
        let who = Registrant {
            node,
            at_home,
            address: &address,
            subscribe,
            if_owner,
        };
        let (new, failed, error) = self.register_here(who, &mine, out);
        self.settle(out);
        let waiting = self.scatter(parts, |part| Msg::Register {
            op,
            node,
            at_home,
            address: &address,
            subscribe,
            if_owner,
            ports: part,
        });
        self.ops.insert(
            op,
            Op::Reg(RegOp {
                token,
                node: idx,
                session: at_home.session,
                ports,
                waiting,
                new,
                failed,
                error,
            }),
        );
        self.try_finish(op, out);
    }

    /// UnRegPort for `node` (homed here, online). Completes under `token`.
    pub fn unreg_port(
        &mut self,
        token: Token,
        node: &str,
        ports: &[String],
        out: &mut Vec<Output>,
    ) {
        let Some(idx) = self.admit_node_call(token, node, ports.iter().map(String::len)) else {
            return;
        };
        let session = self.global(self.nodes.get(idx).map_or(0, Node::session));
        let op = self.new_op();
        let mut parts = self.split_ports(ports.iter().map(String::as_str).enumerate());
        let mine = std::mem::take(&mut parts[self.me]);
        let reply = self.unregister_here(node, &mine, out);
        let waiting = self.scatter(parts, |part| Msg::Unregister {
            op,
            node,
            ports: part,
        });
        self.ops.insert(
            op,
            Op::Unreg(UnregOp {
                token,
                node: idx,
                session,
                waiting,
                reply,
            }),
        );
        self.settle(out);
        self.try_finish(op, out);
    }

    /// SendMsg: `(targets, body)` in order; a target `""` broadcasts; with `ack`, the call
    /// completes once the receivers acknowledged (see [`crate::ack`]). Completes under
    /// `token`.
    pub fn send_msg(
        &mut self,
        token: Token,
        messages: SendBatch,
        ack: bool,
        out: &mut Vec<Output>,
    ) {
        let check = || -> Result<(), SwitchError> {
            // Every body and target within the limits (the usual case) needs no look at each;
            // otherwise the first one over names the error.
            let within = messages.longest_body() <= self.limits.max_body_len
                && messages.longest_target() <= self.limits.max_port_name_len;
            if !within {
                for (ports, body) in messages.messages() {
                    self.limits.check_body(body)?;
                    for p in ports {
                        self.limits.check_port_name(p)?;
                    }
                }
            }
            self.limits
                .check_messages_in_request(messages.target_count())?;
            Ok(())
        };
        if let Err(e) = check() {
            self.done.push((token, Err(e)));
            return;
        }
        let op = self.new_op();
        let mut owners = vec![None; messages.target_count()];
        // Room for every target in each part: growing them by doubling cost ~16 instructions
        // per message; untouched room costs nothing.
        // A target of this shard is resolved at once; the others are written into a Resolve
        // record for their shard as they are met, their positions kept here in the same
        // order (the Resolved reply lists owners in that order).
        let mut records: Vec<Option<ResolveWriter>> = (0..self.count).map(|_| None).collect();
        let mut resolving: Vec<Vec<u32>> = vec![Vec::new(); self.count];
        let (text, spans, _) = messages.parts();
        // Each target as bytes: its span lies on the batch's own character boundaries (a
        // `str` slice would check both ends again, ~12 instructions per target).
        let text = text.as_bytes();
        for (pos, span) in spans.iter().enumerate() {
            if span.start == span.end {
                continue;
            }
            let port = &text[span.range()];
            let shard = shard_of(port, self.count);
            if shard == self.me {
                owners[pos] = self.resolve_here(port);
                continue;
            }
            let outbox = &mut self.outbox[shard];
            records[shard]
                .get_or_insert_with(|| {
                    // Room for every target: growing by doubling costs more than untouched
                    // room, which costs nothing.
                    resolving[shard].reserve(spans.len());
                    ResolveWriter::start(outbox, op, spans.len())
                })
                .port_bytes(outbox, port);
            resolving[shard].push(pos as u32);
        }
        let mut waiting = 0;
        for (peer, record) in records.into_iter().enumerate() {
            if let Some(record) = record {
                waiting += 1;
                record.finish(&mut self.outbox[peer]);
            }
        }
        self.ops.insert(
            op,
            Op::Send(SendOp {
                token,
                ack,
                ack_waiting: 0,
                ack_report: crate::ack::AckReport::default(),
                messages,
                owners,
                resolving,
                waiting,
                acks: 0,
                report: SendReport::default(),
            }),
        );
        self.send_order.push_back(op);
        self.advance_sends(out);
    }

    /// QueryPort: owners of `ports`, in order. Completes under `token`.
    pub fn query_port(&mut self, token: Token, ports: &[String]) {
        if let Err(e) = self.limits.check_ports_in_request(ports.len()) {
            self.done.push((token, Err(e.into())));
            return;
        }
        let op = self.new_op();
        let mut owners = vec![None; ports.len()];
        let mut parts = self.split_ports(ports.iter().map(String::as_str).enumerate());
        for (pos, port) in std::mem::take(&mut parts[self.me]) {
            owners[pos as usize] = self.owner_here(port);
        }
        let waiting = self.scatter(parts, |part| Msg::QueryPorts { op, ports: part });
        self.ops.insert(
            op,
            Op::QueryPort {
                token,
                waiting,
                owners,
            },
        );
        self.try_finish(op, &mut Vec::new());
    }

    /// QueryNode: online nodes among `nodes`, in order. Completes under `token`.
    pub fn query_node(&mut self, token: Token, nodes: Vec<String>) {
        if let Err(e) = self.limits.check_nodes_in_request(nodes.len()) {
            self.done.push((token, Err(e.into())));
            return;
        }
        let op = self.new_op();
        let mut infos = vec![None; nodes.len()];
        let mut parts = vec![Vec::new(); self.count];
        for (pos, id) in nodes.iter().enumerate() {
            parts[self.home(id)].push((pos as u32, id.as_str()));
        }
        for (pos, id) in std::mem::take(&mut parts[self.me]) {
            infos[pos as usize] = self.home_info(id).map(|i| node_info(id, i));
        }
        let waiting = self.scatter(parts, |part| Msg::QueryNodes { op, nodes: part });
        self.ops.insert(
            op,
            Op::QueryNode {
                token,
                nodes,
                waiting,
                infos,
            },
        );
        self.try_finish(op, &mut Vec::new());
    }

    pub(super) fn home_info(&self, id: &str) -> Option<HomeInfo<'_>> {
        self.nodes
            .lookup(id)
            .and_then(|i| self.nodes.get(i))
            .filter(|n| n.conn().is_some())
            .map(|n| HomeInfo {
                address: n.address(),
                ports: n.ports() as u64,
                lease_deadline: n.lease_deadline(),
                queued_bytes: n.queued_bytes() as u64,
            })
    }

    /// Runs phase two of the SendMsg operations at the head of the arrival order whose owners
    /// are all resolved.
    pub(super) fn advance_sends(&mut self, out: &mut Vec<Output>) {
        while let Some(&op) = self.send_order.front() {
            let Some(Op::Send(send)) = self.ops.get_mut(&op) else {
                self.send_order.pop_front();
                continue;
            };
            if send.waiting > 0 {
                return;
            }
            self.send_order.pop_front();
            let messages = std::mem::take(&mut send.messages);
            let owners = std::mem::take(&mut send.owners);
            let ack = send.ack;
            if ack {
                let local = self.new_op();
                self.acks.open(local, self.now + self.limits.ack_timeout_ms);
                self.ack_ops.insert(local, (self.me, op));
                self.ack_op = Some(local);
            }
            let mut report = SendReport::default();
            // Room for every target in each home's record up front: growing a list of a
            // thousand items by doubling costs more than the untouched room (which costs
            // nothing), and more than counting each home's items first.
            let room = owners.len();
            // Each peer's Deliver record, written into its outbox as its items are found. The
            // outboxes are taken out meanwhile: nothing else writes to them until the records
            // are finished (pushing here only queues pushes and notes slow consumers for
            // `settle`, below).
            let mut records: Vec<Option<DeliverWriter>> = (0..self.count).map(|_| None).collect();
            let mut outboxes = std::mem::take(&mut self.outbox);
            // The batch walked by its spans: a message's target and body are sliced from its
            // text only where they are used, and an item bound for another instance goes to its
            // record as one slice when the body follows the target in the text (the usual
            // single-target message).
            let (text, spans, list) = messages.parts();
            let bytes = text.as_bytes();
            // The owner and escaping of the last message written to a record: the messages
            // after it with one target and the same ones continue that record's run (its last
            // item), in a loop of their own.
            let mut last: Option<(NodeRef, Escaping)> = None;
            let mut next = 0;
            while let Some(m) = list.get(next) {
                next += 1;
                let first = m.first_target as usize;
                let targets = spans
                    .get(first..first + m.targets as usize)
                    .unwrap_or_default();
                let escaping = m.escaping;
                for (k, t) in targets.iter().enumerate() {
                    let owner = owners.get(first + k).copied().flatten();
                    if t.start == t.end {
                        let body = &text[m.body.range()];
                        for (peer, record) in records.iter_mut().enumerate() {
                            if peer != self.me {
                                let outbox = &mut outboxes[peer];
                                record
                                    .get_or_insert_with(|| {
                                        DeliverWriter::start(outbox, op, ack, room)
                                    })
                                    .broadcast(outbox, body);
                            }
                        }
                        // A broadcast ends every record's run.
                        last = None;
                        report += self.broadcast_here(body, out);
                        continue;
                    }
                    let Some(to) = owner else {
                        report.dropped += 1;
                        self.metrics.messages_dropped += 1;
                        continue;
                    };
                    let peer = usize::from(to.home);
                    if peer == self.me {
                        let push = PushRef::Msg {
                            port: &text[t.range()],
                            body: &text[m.body.range()],
                            escaping,
                        };
                        let r = self.deliver_here(to.idx, to.session, push, out);
                        self.count_messages(r);
                        report += r;
                        continue;
                    }
                    let outbox = &mut outboxes[peer];
                    let record = records[peer]
                        .get_or_insert_with(|| DeliverWriter::start(outbox, op, ack, room));
                    last = Some((to, escaping));
                    if t.end == m.body.start {
                        // Bytes, not a `str` slice: the spans are character boundaries already.
                        let joined = bytes
                            .get(t.start as usize..m.body.end as usize)
                            .unwrap_or_default();
                        let port_len = (t.end - t.start) as usize;
                        record
                            .unicast_joined(outbox, to.idx, to.session, joined, port_len, escaping);
                    } else {
                        let (port, body) = (&text[t.range()], &text[m.body.range()]);
                        record.unicast(outbox, to.idx, to.session, port, body, escaping);
                    }
                }
                // The messages that continue the run this one left open.
                let Some((to, escaping)) = last else {
                    continue;
                };
                let peer = usize::from(to.home);
                let (Some(Some(record)), Some(outbox)) =
                    (records.get_mut(peer), outboxes.get_mut(peer))
                else {
                    continue;
                };
                while let Some(m) = list.get(next) {
                    let first = m.first_target as usize;
                    let (1, true, Some(t), Some(Some(owner))) = (
                        m.targets,
                        m.escaping == escaping,
                        spans.get(first),
                        owners.get(first),
                    ) else {
                        break;
                    };
                    if *owner != to || t.end != m.body.start || t.start == t.end {
                        break;
                    }
                    let Some(joined) = bytes.get(t.start as usize..m.body.end as usize) else {
                        break;
                    };
                    if !record.continue_run(outbox, joined, (t.end - t.start) as usize) {
                        break;
                    }
                    next += 1;
                }
            }
            let local = self.ack_op.take();
            let mut acks = 0;
            for (peer, record) in records.into_iter().enumerate() {
                if let Some(record) = record {
                    acks += 1;
                    record.finish(&mut outboxes[peer]);
                }
            }
            self.outbox = outboxes;
            if let Some(Op::Send(send)) = self.ops.get_mut(&op) {
                send.acks = acks;
                send.report += report;
                // One acknowledgement report from each home, this one included.
                send.ack_waiting = if ack { acks + 1 } else { 0 };
            }
            if let Some(local) = local {
                self.acks.close(local);
                self.collect_acks(out);
            }
            self.settle(out);
            self.try_finish(op, out);
        }
    }

    /// Completes `op` if nothing is outstanding.
    pub(super) fn try_finish(&mut self, op: u64, out: &mut Vec<Output>) {
        let ready = match self.ops.get(&op) {
            Some(Op::Reg(r)) => r.waiting == 0,
            Some(Op::Unreg(u)) => u.waiting == 0,
            Some(Op::Send(s)) => {
                s.waiting == 0 && s.acks == 0 && s.ack_waiting == 0 && s.messages.is_empty()
            }
            Some(Op::QueryPort { waiting, .. })
            | Some(Op::QueryNode { waiting, .. })
            | Some(Op::Counters { waiting, .. }) => *waiting == 0,
            Some(Op::Watch(w)) => w.waiting == 0,
            Some(Op::ListPorts { waiting, .. }) | Some(Op::ListNodes { waiting, .. }) => {
                *waiting == 0
            }
            Some(Op::NodePorts(n)) => n.done,
            Some(Op::HandoverGive(g)) => g.answered,
            Some(Op::HandoverTake(t)) => t.waiting == 0,
            None => false,
        };
        if !ready {
            return;
        }
        let Some(finished) = self.ops.remove(&op) else {
            return;
        };
        let done = match finished {
            Op::Reg(r) => (r.token, self.finish_reg(r, out)),
            Op::Unreg(mut u) => {
                let n = u.reply.released.len();
                if self.nodes.get(u.node).map(|n| self.global(n.session())) == Some(u.session) {
                    self.nodes.add_ports(u.node, -(n as isize));
                }
                u.reply.released.sort_unstable();
                u.reply.not_owned.sort_unstable();
                u.reply.unknown.sort_unstable();
                (u.token, Ok(Reply::UnRegPort(u.reply)))
            }
            Op::Send(s) if s.ack => (s.token, Ok(Reply::SendAcked(s.report, s.ack_report))),
            Op::Send(s) => (s.token, Ok(Reply::SendMsg(s.report))),
            Op::QueryPort { token, owners, .. } => (token, Ok(Reply::QueryPort(owners))),
            Op::QueryNode { token, infos, .. } => (token, Ok(Reply::QueryNode(infos))),
            Op::Watch(w) => (w.token, self.finish_watch(w)),
            Op::ListPorts {
                token,
                limit,
                pages,
                ..
            } => {
                let (ports, next) =
                    crate::listing::merge(pages, limit, |p: &crate::switch::ListedPort| &p.port);
                let listing = crate::switch::PortListing { ports, next };
                (token, Ok(Reply::ListPorts(listing)))
            }
            Op::ListNodes {
                token,
                limit,
                pages,
                ..
            } => {
                let (nodes, next) = crate::listing::merge(pages, limit, |n: &NodeInfo| &n.node);
                let listing = crate::switch::NodeListing { nodes, next };
                (token, Ok(Reply::ListNodes(listing)))
            }
            Op::NodePorts(n) => (n.token, Ok(Reply::NodePorts(n.listing))),
            Op::HandoverGive(g) => (g.token, self.finish_give(g)),
            Op::HandoverTake(t) => {
                self.finish_take(t, out);
                return;
            }
            Op::Counters { token, values, .. } => {
                let mut metrics = [0; 12];
                metrics.copy_from_slice(&values[..12]);
                let reply = Reply::Metrics {
                    metrics: Metrics::from_array(metrics),
                    requests: values[12],
                    refused: values[13],
                };
                (token, Ok(reply))
            }
        };
        self.done.push(done);
    }

    pub(super) fn finish_reg(
        &mut self,
        mut r: RegOp,
        out: &mut Vec<Output>,
    ) -> Result<Reply, SwitchError> {
        let current = self.nodes.get(r.node).map(|n| self.global(n.session()));
        let base = self.nodes.get(r.node).map_or(0, Node::ports);
        let error = r.error.take().or_else(|| {
            let count = base + r.new.len();
            (count > self.limits.max_ports_per_node).then(|| {
                LimitError::TooManyPortsForNode {
                    count,
                    limit: self.limits.max_ports_per_node,
                }
                .into()
            })
        });
        let node = self
            .nodes
            .get(r.node)
            .map(|n| n.id().to_string())
            .unwrap_or_default();
        if let Some(e) = error {
            // Roll back what this request registered, so it fails as a whole.
            let ports = std::mem::take(&mut r.ports);
            let mut parts =
                self.split_ports(r.new.iter().map(|&p| (p as usize, &ports[p as usize])));
            let mine = std::mem::take(&mut parts[self.me]);
            self.unregister_here(&node, &mine, out);
            self.scatter(parts, |part| Msg::Unregister {
                op: 0,
                node: &node,
                ports: part,
            });
            self.settle(out);
            return Err(e);
        }
        if current == Some(r.session) {
            self.nodes.add_ports(r.node, r.new.len() as isize);
        }
        r.failed.sort_unstable_by_key(|(pos, _, _)| *pos);
        Ok(Reply::RegPort(RegPortReply {
            registered: r.new.len(),
            failed: r
                .failed
                .into_iter()
                .map(|(pos, owner, address)| FailedPort {
                    index: pos as usize,
                    owner,
                    address,
                })
                .collect(),
        }))
    }
}
