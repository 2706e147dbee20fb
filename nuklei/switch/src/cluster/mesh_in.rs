//! Records from the other instances (see `crate::mesh`), applied to this one.

use super::*;

impl Instance {
    // ---- mesh input ------------------------------------------------------------------------

    /// Handles one mesh record from instance `from`.
    pub fn on_mesh(&mut self, from: usize, msg: Msg<'_>, out: &mut Vec<Output>) {
        self.on_record(from, msg, out);
        // Watchers that could not take an event go offline now.
        self.settle(out);
    }

    fn on_record(&mut self, from: usize, msg: Msg<'_>, out: &mut Vec<Output>) {
        match msg {
            Msg::Register {
                op,
                node,
                at_home,
                address,
                subscribe,
                if_owner,
                ports,
            } => {
                let who = Registrant {
                    node,
                    at_home,
                    address,
                    subscribe,
                    if_owner,
                };
                let (new, failed, error) = self.register_here(who, &ports, out);
                let reply = Msg::Registered {
                    op,
                    new,
                    failed: failed
                        .iter()
                        .map(|(pos, owner, address)| {
                            let owner = OwnerInfo {
                                node: owner,
                                session: 0,
                                address,
                            };
                            (*pos, owner)
                        })
                        .collect(),
                    full: error.is_some(),
                };
                reply.encode(&mut self.outbox[from]);
            }
            Msg::Registered {
                op,
                new,
                failed,
                full,
            } => {
                if let Some(Op::Reg(r)) = self.ops.get_mut(&op) {
                    r.new.extend(new);
                    r.failed.extend(
                        failed
                            .into_iter()
                            .map(|(pos, o)| (pos, Arc::from(o.node), Arc::from(o.address))),
                    );
                    if full && r.error.is_none() {
                        r.error = Some(SwitchError::ShardFull);
                    }
                    r.waiting -= 1;
                }
                self.try_finish(op, out);
            }
            Msg::Unregister { op, node, ports } => {
                let reply = self.unregister_here(node, &ports, out);
                self.settle(out);
                if op != 0 {
                    let pos = |v: Vec<usize>| v.into_iter().map(|p| p as u32).collect();
                    let msg = Msg::Unregistered {
                        op,
                        released: pos(reply.released),
                        not_owned: pos(reply.not_owned),
                        unknown: pos(reply.unknown),
                    };
                    msg.encode(&mut self.outbox[from]);
                }
            }
            Msg::Unregistered {
                op,
                released,
                not_owned,
                unknown,
            } => {
                if let Some(Op::Unreg(u)) = self.ops.get_mut(&op) {
                    let widen = |v: Vec<u32>| v.into_iter().map(|p| p as usize);
                    u.reply.released.extend(widen(released));
                    u.reply.not_owned.extend(widen(not_owned));
                    u.reply.unknown.extend(widen(unknown));
                    u.waiting -= 1;
                }
                self.try_finish(op, out);
            }
            Msg::Resolve { op, ports } => {
                // The owners in the Resolve's order, written as found (the outbox taken out
                // meanwhile: not indexed per port).
                let mut outbox = std::mem::take(&mut self.outbox[from]);
                let mut reply = ResolvedWriter::start(&mut outbox, op);
                for port in &ports {
                    reply.owner(&mut outbox, self.resolve_here(port.as_bytes()));
                }
                reply.finish(&mut outbox);
                self.outbox[from] = outbox;
            }
            Msg::Resolved { op, runs } => {
                if let Some(Op::Send(s)) = self.ops.get_mut(&op) {
                    // The positions asked of `from`, in order; a reply that counts more
                    // ports than were asked is cut to them.
                    let positions = s.resolving.get(from).map_or(&[][..], Vec::as_slice);
                    let mut at: usize = 0;
                    for (owner, count) in runs {
                        let end = at.saturating_add(count as usize).min(positions.len());
                        if owner.is_some() {
                            for &pos in &positions[at..end] {
                                if let Some(slot) = s.owners.get_mut(pos as usize) {
                                    *slot = owner;
                                }
                            }
                        }
                        at = end;
                    }
                    s.waiting -= 1;
                }
                self.advance_sends(out);
            }
            Msg::QueryPorts { op, ports } => {
                let found: Vec<(u32, PortOwner)> = ports
                    .iter()
                    .filter_map(|(pos, port)| self.owner_here(port).map(|o| (*pos, o)))
                    .collect();
                let owners = found
                    .iter()
                    .map(|(pos, o)| {
                        let info = OwnerInfo {
                            node: &o.node,
                            session: 0,
                            address: &o.address,
                        };
                        (*pos, info)
                    })
                    .collect();
                Msg::Owners { op, owners }.encode(&mut self.outbox[from]);
            }
            Msg::Owners { op, owners } => {
                if let Some(Op::QueryPort {
                    waiting,
                    owners: slots,
                    ..
                }) = self.ops.get_mut(&op)
                {
                    for (pos, o) in owners {
                        if let Some(slot) = slots.get_mut(pos as usize) {
                            *slot = Some(PortOwner {
                                node: Arc::from(o.node),
                                address: Arc::from(o.address),
                            });
                        }
                    }
                    *waiting -= 1;
                }
                self.try_finish(op, out);
            }
            Msg::Deliver { op, ack, items } => {
                let report = if ack {
                    self.deliver_acked(from, op, items, out)
                } else {
                    self.deliver_items(items, out)
                };
                if op != 0 {
                    let msg = Msg::Delivered {
                        op,
                        delivered: report.delivered,
                        dropped: report.dropped,
                    };
                    msg.encode(&mut self.outbox[from]);
                }
            }
            Msg::Delivered {
                op,
                delivered,
                dropped,
            } => {
                if let Some(Op::Send(s)) = self.ops.get_mut(&op) {
                    s.report += SendReport { delivered, dropped };
                    s.acks -= 1;
                }
                self.try_finish(op, out);
            }
            Msg::NodeGone {
                node,
                session,
                reason,
            } => {
                self.release_here(node, session, reason, out);
                self.settle(out);
            }
            Msg::QueryCounters { op } => {
                let values = self.counters().to_vec();
                Msg::Counters { op, values }.encode(&mut self.outbox[from]);
            }
            Msg::Counters { op, values } => {
                if let Some(Op::Counters {
                    waiting,
                    values: sum,
                    ..
                }) = self.ops.get_mut(&op)
                {
                    for (s, v) in sum.iter_mut().zip(values) {
                        *s += v;
                    }
                    *waiting -= 1;
                }
                self.try_finish(op, out);
            }
            Msg::QueryNodes { op, nodes } => {
                let infos: Vec<(u32, HomeInfo<'_>)> = nodes
                    .iter()
                    .filter_map(|(pos, id)| self.home_info(id).map(|i| (*pos, i)))
                    .collect();
                let mut bytes = Vec::new();
                Msg::NodeInfos { op, infos }.encode(&mut bytes);
                self.outbox[from].extend_from_slice(&bytes);
            }
            Msg::WatchStart {
                op,
                watch,
                kind,
                key,
                prefix,
                from: position,
            } => {
                let watched = crate::watch::Watched {
                    kind,
                    key: key.into(),
                    prefix,
                };
                self.on_watch_start(from, op, watch, watched, position);
            }
            Msg::WatchReady {
                op,
                watch,
                position,
                ahead,
                missed,
                events,
            } => self.on_watch_ready(from, op, watch, position, ahead, missed, events, out),
            Msg::WatchStop { kind, key, prefix } => {
                self.interest.remove(kind, key, prefix, from as u16);
            }
            Msg::Event { seq, event } => {
                self.event_here(from, seq, &event, out);
                self.settle(out);
            }
            Msg::Acked {
                op,
                acknowledged,
                unacknowledged,
            } => {
                if let Some(Op::Send(s)) = self.ops.get_mut(&op) {
                    s.ack_report += crate::ack::AckReport {
                        acknowledged,
                        unacknowledged,
                    };
                    s.ack_waiting = s.ack_waiting.saturating_sub(1);
                }
                self.try_finish(op, out);
            }
            Msg::HandoverTo {
                op,
                from: giver,
                to,
                ports,
            } => self.take_handover(from, op, giver, to, &ports, out),
            Msg::Move {
                op,
                from: giver,
                to,
                to_id,
                to_address,
                ports,
            } => {
                let (moved, not_owned, unknown) =
                    self.move_here(giver, to, to_id, to_address, &ports, out);
                let msg = Msg::Moved {
                    op,
                    moved,
                    not_owned,
                    unknown,
                    error: None,
                };
                msg.encode(&mut self.outbox[from]);
            }
            Msg::Moved {
                op,
                moved,
                not_owned,
                unknown,
                error,
            } => match self.ops.get(&op) {
                Some(Op::HandoverTake(_)) => self.moved_part(op, moved, not_owned, unknown, out),
                _ => self.given(op, moved, not_owned, unknown, error, out),
            },
            Msg::ListPorts {
                op,
                prefix,
                after,
                limit,
            } => {
                let page = crate::listing::PageRequest {
                    prefix: prefix.to_string(),
                    after: after.map(str::to_string),
                    limit: Some(u64::from(limit)),
                };
                let (ports, full) = self.listed_here_for(&page, limit as usize);
                let ports = ports
                    .iter()
                    .map(|p| (p.port.as_str(), &*p.owner, &*p.address))
                    .collect();
                let mut bytes = Vec::new();
                Msg::PortsListed { op, ports, full }.encode(&mut bytes);
                self.outbox[from].extend_from_slice(&bytes);
            }
            Msg::PortsListed { op, ports, full } => {
                if let Some(Op::ListPorts { waiting, pages, .. }) = self.ops.get_mut(&op) {
                    let page = ports
                        .into_iter()
                        .map(|(port, owner, address)| crate::switch::ListedPort {
                            port: port.to_string(),
                            owner: Arc::from(owner),
                            address: Arc::from(address),
                        })
                        .collect();
                    pages.push((page, full));
                    *waiting -= 1;
                }
                self.try_finish(op, out);
            }
            Msg::ListNodes {
                op,
                prefix,
                after,
                limit,
            } => {
                let page = crate::listing::PageRequest {
                    prefix: prefix.to_string(),
                    after: after.map(str::to_string),
                    limit: Some(u64::from(limit)),
                };
                let (nodes, full) = self.nodes_here_for(&page, limit as usize);
                let nodes = nodes
                    .iter()
                    .map(|n| {
                        let info = HomeInfo {
                            address: &n.address,
                            ports: n.ports as u64,
                            lease_deadline: n.lease_deadline,
                            queued_bytes: n.queued_bytes as u64,
                        };
                        (&*n.node, info)
                    })
                    .collect();
                let mut bytes = Vec::new();
                Msg::NodesListed { op, nodes, full }.encode(&mut bytes);
                self.outbox[from].extend_from_slice(&bytes);
            }
            Msg::NodesListed { op, nodes, full } => {
                if let Some(Op::ListNodes { waiting, pages, .. }) = self.ops.get_mut(&op) {
                    let page = nodes.into_iter().map(|(id, i)| node_info(id, i)).collect();
                    pages.push((page, full));
                    *waiting -= 1;
                }
                self.try_finish(op, out);
            }
            Msg::NodePorts {
                op,
                node,
                start,
                limit,
            } => {
                let (ports, next, restarted) = self.node_ports_here(node, start, limit as usize);
                let msg = Msg::NodePortsListed {
                    op,
                    ports: ports.iter().map(String::as_str).collect(),
                    next: next.as_deref(),
                    restarted,
                };
                msg.encode(&mut self.outbox[from]);
            }
            Msg::NodePortsListed {
                op,
                ports,
                next,
                restarted,
            } => self.node_ports_part(op, &ports, next, restarted),
            Msg::NodeInfos { op, infos } => {
                if let Some(Op::QueryNode {
                    nodes,
                    waiting,
                    infos: slots,
                    ..
                }) = self.ops.get_mut(&op)
                {
                    for (pos, info) in infos {
                        if let (Some(slot), Some(id)) =
                            (slots.get_mut(pos as usize), nodes.get(pos as usize))
                        {
                            *slot = Some(node_info(id, info));
                        }
                    }
                    *waiting -= 1;
                }
                self.try_finish(op, out);
            }
        }
    }
}
