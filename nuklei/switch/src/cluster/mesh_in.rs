//! Records from the other instances (see `crate::mesh`), applied to this one.

use super::*;

impl Instance {
    // ---- mesh input ------------------------------------------------------------------------

    /// Handles one mesh record from instance `from`.
    pub fn on_mesh(&mut self, from: usize, msg: Msg<'_>, out: &mut Vec<Output>) {
        match msg {
            Msg::Register {
                op,
                node,
                at_home,
                address,
                subscribe,
                ports,
            } => {
                let (new, failed, error) =
                    self.register_here(node, at_home, address, subscribe, &ports);
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
                let owners = ports
                    .iter()
                    .filter_map(|(pos, port)| self.resolve_here(port).map(|o| (*pos, o)))
                    .collect();
                Msg::Resolved { op, owners }.encode(&mut self.outbox[from]);
            }
            Msg::Resolved { op, owners } => {
                if let Some(Op::Send(s)) = self.ops.get_mut(&op) {
                    for (pos, o) in owners {
                        if let Some(slot) = s.owners.get_mut(pos as usize) {
                            *slot = Some(o);
                        }
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
            Msg::Deliver { op, items } => {
                let report = self.deliver_items(items, out);
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
