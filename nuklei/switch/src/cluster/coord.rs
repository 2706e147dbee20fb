//! The coordination calls across instances (see [`crate::listing`], [`crate::handover`],
//! [`crate::ack`]): sessions named by calls, listings merged from every shard or home,
//! handovers run by the receiver's home, compare-and-register at the shards, and
//! acknowledgements reported from the receivers' homes to the sender's front.

use super::*;
use crate::handover::{check_room, encode_handover, encode_moved};
use crate::listing::{node_cursor, parse_node_cursor, PageRequest};
use crate::switch::{HandoverReply, ListedPort, NodePortsListing};

/// How a refused handover travels back to the giver's home (`error` of [`Msg::Moved`]).
fn refusal(e: &SwitchError) -> String {
    match e {
        SwitchError::NotOnline(node) => format!("offline:{node}"),
        SwitchError::Limit(LimitError::TooManyPortsForNode { count, limit }) => {
            format!("limit:{count}:{limit}")
        }
        other => format!("other:{other}"),
    }
}

fn refused(text: &str) -> SwitchError {
    let mut parts = text.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("offline"), Some(node), None) => SwitchError::NotOnline(node.to_string()),
        (Some("limit"), Some(count), Some(limit)) => LimitError::TooManyPortsForNode {
            count: count.parse().unwrap_or(0),
            limit: limit.parse().unwrap_or(0),
        }
        .into(),
        _ => SwitchError::Invalid(text.trim_start_matches("other:").to_string()),
    }
}

impl Instance {
    // ---- sessions and closes -------------------------------------------------------------

    /// Refuses a call for `session` of `node` (homed here) unless it is the node's current
    /// session.
    pub fn check_session(&self, node: &str, session: u64) -> Result<(), SwitchError> {
        let idx = self.online_index(node)?;
        let current = self.global(self.nodes.get(idx).map_or(0, Node::session));
        if current != session {
            return Err(SwitchError::SessionReplaced {
                node: node.to_string(),
                named: session,
                current,
            });
        }
        Ok(())
    }

    /// The caller closes receiving connection `conn` for `reason` (a revoked token).
    pub fn close(&mut self, conn: ConnId, reason: CloseReason, out: &mut Vec<Output>) -> bool {
        let Some(idx) = self.nodes.by_conn(conn) else {
            return false;
        };
        let cause = match reason {
            CloseReason::TokenRevoked => Cause::Revoked,
            CloseReason::LeaseExpired => Cause::LeaseExpired,
            CloseReason::SlowConsumer { queued, limit } => Cause::SlowConsumer { queued, limit },
            CloseReason::Replaced => Cause::Closed,
        };
        self.work.push((idx, cause));
        self.settle(out);
        true
    }

    // ---- acknowledged delivery -----------------------------------------------------------

    /// `node` (homed here) acknowledges its pushes up to `upto`.
    pub fn ack(
        &mut self,
        node: &str,
        upto: u64,
        out: &mut Vec<Output>,
    ) -> Result<u64, SwitchError> {
        let idx = self.online_index(node)?;
        let n = self.acks.ack(idx, upto);
        self.collect_acks(out);
        Ok(n)
    }

    /// Reports the acknowledged deliveries settled here to their fronts.
    pub(super) fn collect_acks(&mut self, out: &mut Vec<Output>) {
        for (local, report) in self.acks.take_done() {
            let Some((front, op)) = self.ack_ops.remove(&local) else {
                continue;
            };
            if front == self.me {
                if let Some(Op::Send(s)) = self.ops.get_mut(&op) {
                    s.ack_report += report;
                    s.ack_waiting = s.ack_waiting.saturating_sub(1);
                }
                self.try_finish(op, out);
            } else {
                let msg = Msg::Acked {
                    op,
                    acknowledged: report.acknowledged,
                    unacknowledged: report.unacknowledged,
                };
                msg.encode(&mut self.outbox[front]);
            }
        }
    }

    /// [`Msg::Deliver`] asking for acknowledgement from instance `from`, op `op`: queue the
    /// items with numbered pushes.
    pub(super) fn deliver_acked(
        &mut self,
        from: usize,
        op: u64,
        items: Items<'_>,
        out: &mut Vec<Output>,
    ) -> SendReport {
        let local = self.new_op();
        self.acks.open(local, self.now + self.limits.ack_timeout_ms);
        self.ack_ops.insert(local, (from, op));
        self.ack_op = Some(local);
        let report = self.deliver_items(items, out);
        self.ack_op = None;
        self.acks.close(local);
        self.collect_acks(out);
        report
    }

    // ---- compare-and-register: the previous owner's side ---------------------------------

    /// A port of node `idx` (homed here, in `session`) moved to `to`.
    pub(super) fn port_moved_away(
        &mut self,
        idx: NodeIdx,
        session: u64,
        port: &str,
        to: &str,
        seq: u64,
        out: &mut Vec<Output>,
    ) {
        let current = self.nodes.get(idx).map(|n| self.global(n.session()));
        if current != Some(session) {
            return;
        }
        self.nodes.add_ports(idx, -1);
        let mut slow = Vec::new();
        crate::watch::push_to(
            &mut self.nodes,
            idx,
            |buf| encode_moved(port, to, seq, buf),
            out,
            &mut slow,
        );
        self.work.extend(crate::switch::slow_consumers(slow));
    }

    // ---- listings ------------------------------------------------------------------------

    pub(super) fn listed_here_for(
        &self,
        page: &PageRequest,
        limit: usize,
    ) -> (Vec<ListedPort>, bool) {
        let got = self.shard.list(&page.prefix, page.after.as_deref(), limit);
        let full = got.len() == limit;
        let ports = got
            .into_iter()
            .filter_map(|(port, owner)| {
                let rec = self.owners.get(owner)?;
                Some(ListedPort {
                    port: port.to_string(),
                    owner: rec.id.clone(),
                    address: rec.address.clone(),
                })
            })
            .collect();
        (ports, full)
    }

    pub(super) fn nodes_here_for(&self, page: &PageRequest, limit: usize) -> (Vec<NodeInfo>, bool) {
        crate::listing::online_nodes(&self.nodes, page, limit)
    }

    /// Ports by prefix, merged from every shard. Completes under `token`.
    pub fn list_ports(&mut self, token: Token, page: PageRequest) {
        if let Err(e) = self.limits.check_port_name(&page.prefix) {
            self.done.push((token, Err(e.into())));
            return;
        }
        let limit = page.size(self.limits.max_page);
        let op = self.new_op();
        for peer in (0..self.count).filter(|&p| p != self.me) {
            let msg = Msg::ListPorts {
                op,
                prefix: &page.prefix,
                after: page.after.as_deref(),
                limit: limit as u32,
            };
            msg.encode(&mut self.outbox[peer]);
        }
        let here = self.listed_here_for(&page, limit);
        self.ops.insert(
            op,
            Op::ListPorts {
                token,
                limit,
                waiting: self.count - 1,
                pages: vec![here],
            },
        );
        self.try_finish(op, &mut Vec::new());
    }

    /// Online nodes by prefix, merged from every home. Completes under `token`.
    pub fn list_nodes(&mut self, token: Token, page: PageRequest) {
        if let Err(e) = self.limits.check_node_id(&page.prefix) {
            self.done.push((token, Err(e.into())));
            return;
        }
        let limit = page.size(self.limits.max_page);
        let op = self.new_op();
        for peer in (0..self.count).filter(|&p| p != self.me) {
            let msg = Msg::ListNodes {
                op,
                prefix: &page.prefix,
                after: page.after.as_deref(),
                limit: limit as u32,
            };
            msg.encode(&mut self.outbox[peer]);
        }
        let here = self.nodes_here_for(&page, limit);
        self.ops.insert(
            op,
            Op::ListNodes {
                token,
                limit,
                waiting: self.count - 1,
                pages: vec![here],
            },
        );
        self.try_finish(op, &mut Vec::new());
    }

    /// A page of `node`'s ports, shard after shard. Completes under `token`.
    pub fn node_ports(&mut self, token: Token, node: &str, page: PageRequest) {
        let limit = page.size(self.limits.max_page);
        let (shard, start) = match page.after.as_deref() {
            None => (0, None),
            Some(c) => match parse_node_cursor(c, self.count) {
                Ok((shard, port)) => (shard, (!port.is_empty()).then_some(port)),
                Err(e) => {
                    self.done.push((token, Err(e)));
                    return;
                }
            },
        };
        let op = self.new_op();
        self.ops.insert(
            op,
            Op::NodePorts(NodePortsOp {
                token,
                node: node.to_string(),
                limit,
                shard,
                listing: NodePortsListing::default(),
                done: false,
            }),
        );
        self.ask_node_ports(op, start.as_deref());
    }

    /// Asks the current shard of node-ports listing `op` for the rest of its page.
    fn ask_node_ports(&mut self, op: u64, start: Option<&str>) {
        let Some(Op::NodePorts(n)) = self.ops.get(&op) else {
            return;
        };
        let (shard, node, left) = (n.shard, n.node.clone(), n.limit - n.listing.ports.len());
        if shard == self.me {
            let (ports, next, restarted) = self.node_ports_here(&node, start, left);
            let ports: Vec<&str> = ports.iter().map(String::as_str).collect();
            self.node_ports_part(op, &ports, next.as_deref(), restarted);
        } else {
            let msg = Msg::NodePorts {
                op,
                node: &node,
                start,
                limit: left as u32,
            };
            msg.encode(&mut self.outbox[shard]);
        }
    }

    pub(super) fn node_ports_here(
        &self,
        node: &str,
        start: Option<&str>,
        limit: usize,
    ) -> (Vec<String>, Option<String>, bool) {
        match self.owners.lookup(node) {
            None => (Vec::new(), None, start.is_some()),
            Some(idx) => {
                let page = self.shard.node_page(idx, start, limit);
                (
                    page.ports.iter().map(|p| p.to_string()).collect(),
                    page.next.map(str::to_string),
                    page.restarted,
                )
            }
        }
    }

    /// A shard's part of node-ports listing `op`: finish the page or ask the next shard.
    pub(super) fn node_ports_part(
        &mut self,
        op: u64,
        ports: &[&str],
        next: Option<&str>,
        restarted: bool,
    ) {
        let count = self.count;
        let Some(Op::NodePorts(n)) = self.ops.get_mut(&op) else {
            return;
        };
        n.listing.restarted |= restarted;
        n.listing.ports.extend(ports.iter().map(|p| p.to_string()));
        if let Some(next) = next {
            n.listing.next = Some(node_cursor(n.shard, next));
            n.done = true;
        } else if n.shard + 1 >= count {
            n.done = true;
        } else if n.listing.ports.len() >= n.limit {
            n.listing.next = Some(node_cursor(n.shard + 1, ""));
            n.done = true;
        } else {
            n.shard += 1;
            self.ask_node_ports(op, None);
            return;
        }
        self.try_finish(op, &mut Vec::new());
    }

    // ---- handover ------------------------------------------------------------------------

    /// Handover of `ports` from `from` (homed here, online) to `to`. Completes under
    /// `token` once the receiver's home has moved them.
    pub fn handover(
        &mut self,
        token: Token,
        from: &str,
        to: &str,
        ports: &[String],
        out: &mut Vec<Output>,
    ) {
        let Some(idx) = self.admit_node_call(token, from, ports.iter().map(String::len)) else {
            return;
        };
        if from == to {
            let e = SwitchError::Invalid("a node cannot hand ports over to itself".into());
            self.done.push((token, Err(e)));
            return;
        }
        let session = self.global(self.nodes.get(idx).map_or(0, Node::session));
        let op = self.new_op();
        self.ops.insert(
            op,
            Op::HandoverGive(GiveOp {
                token,
                node: idx,
                session,
                reply: None,
                answered: false,
            }),
        );
        let named: Vec<(u32, &str)> = ports
            .iter()
            .enumerate()
            .map(|(i, p)| (i as u32, p.as_str()))
            .collect();
        let home = self.home(to);
        if home == self.me {
            self.take_handover(self.me, op, from, to, &named, out);
        } else {
            let msg = Msg::HandoverTo {
                op,
                from,
                to,
                ports: named,
            };
            msg.encode(&mut self.outbox[home]);
        }
    }

    /// The receiver's home: reserve room for the ports and ask the shards to move them.
    pub(super) fn take_handover(
        &mut self,
        reply_to: usize,
        give_op: u64,
        from: &str,
        to: &str,
        ports: &[(u32, &str)],
        out: &mut Vec<Output>,
    ) {
        let admitted = self.online_index(to).and_then(|idx| {
            let held = self.nodes.get(idx).map_or(0, Node::ports)
                + self.reserved.get(&idx).copied().unwrap_or(0);
            check_room(held, ports.len(), self.limits.max_ports_per_node).map(|()| idx)
        });
        let idx = match admitted {
            Ok(idx) => idx,
            Err(e) => {
                let text = refusal(&e);
                self.handover_answer(
                    reply_to,
                    give_op,
                    Vec::new(),
                    Vec::new(),
                    Vec::new(),
                    Some(&text),
                    out,
                );
                return;
            }
        };
        *self.reserved.entry(idx).or_default() += ports.len();
        let (to_ref, address) = self.at_home(idx);
        let op = self.new_op();
        let mut parts = vec![Vec::new(); self.count];
        for &(pos, port) in ports {
            parts[shard_instance(port, self.count)].push((pos, port));
        }
        let mine = std::mem::take(&mut parts[self.me]);
        let waiting = self.scatter(parts, |part| Msg::Move {
            op,
            from,
            to: to_ref,
            to_id: to,
            to_address: &address,
            ports: part,
        });
        self.ops.insert(
            op,
            Op::HandoverTake(TakeOp {
                reply_to,
                give_op,
                from: from.to_string(),
                node: idx,
                session: to_ref.session,
                ports: ports.iter().map(|(_, p)| p.to_string()).collect(),
                reserved: ports.len(),
                waiting: waiting + 1,
                moved: Vec::new(),
                not_owned: Vec::new(),
                unknown: Vec::new(),
            }),
        );
        let (moved, not_owned, unknown) = self.move_here(from, to_ref, to, &address, &mine, out);
        self.moved_part(op, moved, not_owned, unknown, out);
    }

    /// A shard: move those of `ports` that `from` owns to `to`; `(moved with sequences,
    /// not owned, unknown)`.
    pub(super) fn move_here(
        &mut self,
        from: &str,
        to: NodeRef,
        to_id: &str,
        to_address: &str,
        ports: &[(u32, &str)],
        out: &mut Vec<Output>,
    ) -> (Vec<(u32, u64)>, Vec<u32>, Vec<u32>) {
        let (mut moved, mut not_owned, mut unknown) = (Vec::new(), Vec::new(), Vec::new());
        let giver = self.owners.lookup(from);
        let taker = self.owners.upsert(to_id, to_address, to);
        for &(pos, port) in ports {
            let outcome = match giver {
                Some(g) => self.shard.transfer(port, g, taker),
                None => match self.shard.owner(port) {
                    Some(o) => Outcome::NotOwner(o),
                    None => Outcome::Unknown,
                },
            };
            match outcome {
                Outcome::Released(_) => {
                    let seq = self.emit(&Event::moved(port, to_id, to_address, from), out);
                    moved.push((pos, seq));
                }
                Outcome::NotOwner(_) => not_owned.push(pos),
                Outcome::Unknown => unknown.push(pos),
            }
        }
        (moved, not_owned, unknown)
    }

    /// A shard's answer to the receiver's home.
    pub(super) fn moved_part(
        &mut self,
        op: u64,
        moved: Vec<(u32, u64)>,
        not_owned: Vec<u32>,
        unknown: Vec<u32>,
        out: &mut Vec<Output>,
    ) {
        if let Some(Op::HandoverTake(t)) = self.ops.get_mut(&op) {
            t.moved.extend(moved);
            t.not_owned.extend(not_owned);
            t.unknown.extend(unknown);
            t.waiting -= 1;
        }
        self.try_finish(op, out);
    }

    /// Every shard answered the receiver's home: count, notify the receiver, answer the
    /// giver's home.
    pub(super) fn finish_take(&mut self, mut t: TakeOp, out: &mut Vec<Output>) {
        if let Some(r) = self.reserved.get_mut(&t.node) {
            *r = r.saturating_sub(t.reserved);
            if *r == 0 {
                self.reserved.remove(&t.node);
            }
        }
        t.moved.sort_unstable();
        let current = self.nodes.get(t.node).map(|n| self.global(n.session()));
        if current == Some(t.session) {
            self.nodes.add_ports(t.node, t.moved.len() as isize);
            let mut slow = Vec::new();
            for &(pos, seq) in &t.moved {
                let port = &t.ports[pos as usize];
                crate::watch::push_to(
                    &mut self.nodes,
                    t.node,
                    |buf| encode_handover(port, &t.from, seq, buf),
                    out,
                    &mut slow,
                );
            }
            self.work.extend(crate::switch::slow_consumers(slow));
            self.settle(out);
        }
        self.handover_answer(
            t.reply_to,
            t.give_op,
            t.moved,
            t.not_owned,
            t.unknown,
            None,
            out,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn handover_answer(
        &mut self,
        reply_to: usize,
        give_op: u64,
        moved: Vec<(u32, u64)>,
        not_owned: Vec<u32>,
        unknown: Vec<u32>,
        error: Option<&str>,
        out: &mut Vec<Output>,
    ) {
        if reply_to == self.me {
            self.given(give_op, moved, not_owned, unknown, error, out);
        } else {
            let msg = Msg::Moved {
                op: give_op,
                moved,
                not_owned,
                unknown,
                error,
            };
            msg.encode(&mut self.outbox[reply_to]);
        }
    }

    /// The receiver's home answered the giver's home.
    pub(super) fn given(
        &mut self,
        op: u64,
        moved: Vec<(u32, u64)>,
        mut not_owned: Vec<u32>,
        mut unknown: Vec<u32>,
        error: Option<&str>,
        out: &mut Vec<Output>,
    ) {
        let Some(Op::HandoverGive(g)) = self.ops.get_mut(&op) else {
            return;
        };
        g.answered = true;
        g.reply = Some(match error {
            Some(e) => Err(refused(e)),
            None => {
                not_owned.sort_unstable();
                unknown.sort_unstable();
                Ok(HandoverReply {
                    moved: moved.iter().map(|&(p, _)| p as usize).collect(),
                    not_owned: not_owned.into_iter().map(|p| p as usize).collect(),
                    unknown: unknown.into_iter().map(|p| p as usize).collect(),
                })
            }
        });
        self.try_finish(op, out);
    }

    pub(super) fn finish_give(&mut self, g: GiveOp) -> Result<Reply, SwitchError> {
        let reply = g
            .reply
            .unwrap_or_else(|| Err(SwitchError::Invalid("no answer".into())))?;
        if self.nodes.get(g.node).map(|n| self.global(n.session())) == Some(g.session) {
            self.nodes.add_ports(g.node, -(reply.moved.len() as isize));
        }
        Ok(Reply::Handover(reply))
    }
}
