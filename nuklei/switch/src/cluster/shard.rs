//! An instance as one shard of the port table: registering, releasing and resolving the
//! ports whose name hashes to it, and release notifications.

use super::*;

impl Instance {
    // ---- port shard ------------------------------------------------------------------------

    /// Registers `ports` here for `who`.
    pub(super) fn register_here(
        &mut self,
        who: Registrant<'_>,
        ports: &[(u32, &str)],
        out: &mut Vec<Output>,
    ) -> (Vec<u32>, Vec<Failed>, Option<SwitchError>) {
        let Registrant {
            node,
            at_home,
            address,
            subscribe,
            if_owner,
        } = who;
        let session = at_home.session;
        let owner = self.owners.upsert(node, address, at_home);
        if let Some(expected) = if_owner {
            return self.register_if_here(node, owner, address, subscribe, expected, ports, out);
        }
        // Room for every port as new (the usual case): growing by doubling copies it again
        // and again.
        let mut new = Vec::with_capacity(ports.len());
        let mut failed = Vec::new();
        let mut error = None;
        for (pos, port) in ports {
            let before = self.shard.len();
            match self.shard.register(port, owner) {
                Ok(()) => {
                    if self.shard.len() != before {
                        new.push(*pos);
                        self.emit(&Event::acquired(port, node, address), out);
                    }
                }
                Err(RegisterError::Owned(other)) => {
                    if subscribe {
                        self.shard.subscribe(
                            port,
                            Subscriber {
                                node: owner,
                                session,
                            },
                        );
                    }
                    if let Some(rec) = self.owners.get(other.0) {
                        failed.push((*pos, rec.id.clone(), rec.address.clone()));
                    }
                }
                Err(RegisterError::EmptyName) => error = Some(SwitchError::EmptyPortName),
                Err(RegisterError::NameTooLong(len)) => {
                    error = Some(
                        LimitError::PortNameTooLong {
                            len,
                            limit: crate::ports::MAX_NAME_LEN,
                        }
                        .into(),
                    )
                }
                Err(RegisterError::ShardFull) => error = Some(SwitchError::ShardFull),
            }
        }
        self.metrics.registrations += new.len() as u64;
        self.metrics.registration_conflicts += failed.len() as u64;
        (new, failed, error)
    }

    /// Compare-and-register here for `owner` (`node`'s record): each port only if its owner
    /// is `expected` (`None`: nobody); a port of another node moves (its home is told).
    #[allow(clippy::too_many_arguments)]
    fn register_if_here(
        &mut self,
        node: &str,
        owner: NodeIdx,
        address: &str,
        subscribe: bool,
        expected: Option<&str>,
        ports: &[(u32, &str)],
        out: &mut Vec<Output>,
    ) -> (Vec<u32>, Vec<Failed>, Option<SwitchError>) {
        let session = self.owners.session(owner).unwrap_or(0);
        let mut new = Vec::new();
        let mut failed = Vec::new();
        for &(pos, port) in ports {
            let current = self.shard.owner(port);
            let current_id = current
                .and_then(|o| self.owners.get(o))
                .map(|r| r.id.clone());
            if current_id.as_deref() != expected {
                match current.and_then(|o| self.owners.get(o)) {
                    Some(rec) => {
                        failed.push((pos, rec.id.clone(), rec.address.clone()));
                        if subscribe {
                            self.shard.subscribe(
                                port,
                                Subscriber {
                                    node: owner,
                                    session,
                                },
                            );
                        }
                    }
                    None => failed.push((pos, Arc::from(""), Arc::from(""))),
                }
                continue;
            }
            match current {
                None => match self.shard.register(port, owner) {
                    Ok(()) => {
                        new.push(pos);
                        self.metrics.registrations += 1;
                        self.emit(&Event::acquired(port, node, address), out);
                    }
                    Err(e) => {
                        return (new, failed, Some(SwitchError::Invalid(e.to_string())));
                    }
                },
                Some(o) if o == owner => {}
                Some(o) => {
                    self.shard.transfer(port, o, owner);
                    new.push(pos);
                    let from = current_id.unwrap_or_default();
                    let seq = self.emit(&Event::moved(port, node, address, &from), out);
                    let Some(to) = self.owners.get(o).map(|r| r.at_home) else {
                        continue;
                    };
                    let item = Item::Moved {
                        node: to.idx,
                        session: to.session,
                        port,
                        to: node,
                        seq,
                    };
                    if usize::from(to.home) == self.me {
                        self.port_moved_away(to.idx, to.session, port, node, seq, out);
                    } else {
                        let msg = Msg::Deliver {
                            op: 0,
                            ack: false,
                            items: vec![item].into(),
                        };
                        msg.encode(&mut self.outbox[usize::from(to.home)]);
                    }
                }
            }
        }
        self.metrics.registration_conflicts += failed.len() as u64;
        (new, failed, None)
    }

    /// Releases those of `ports` that `node` owns here, notifying subscribers.
    pub(super) fn unregister_here(
        &mut self,
        node: &str,
        ports: &[(u32, &str)],
        out: &mut Vec<Output>,
    ) -> UnRegPortReply {
        let owner = self.owners.lookup(node).unwrap_or(NO_OWNER);
        let mut reply = UnRegPortReply::default();
        for (pos, port) in ports {
            match self.shard.unregister(port, owner) {
                Outcome::Released(subs) => {
                    reply.released.push(*pos as usize);
                    self.emit(
                        &Event::released(port, node, ReleaseReason::Unregistered),
                        out,
                    );
                    for s in subs {
                        self.notify(s, port, ReleaseReason::Unregistered, out);
                    }
                }
                Outcome::NotOwner(_) => reply.not_owned.push(*pos as usize),
                Outcome::Unknown => reply.unknown.push(*pos as usize),
            }
        }
        self.metrics.releases += reply.released.len() as u64;
        reply
    }

    /// Node `id` ended `session`: release its ports in this shard and forget it.
    pub(super) fn release_here(
        &mut self,
        id: &str,
        session: u64,
        reason: ReleaseReason,
        out: &mut Vec<Output>,
    ) {
        let Some(idx) = self.owners.lookup(id) else {
            return;
        };
        if self.owners.session(idx) != Some(session) {
            return;
        }
        // Every released port is journaled; while somebody watches ports, each is also
        // kept (a copy of its name) to be emitted once the shard is free again.
        let watched = !self.interest.is_empty_for(crate::watch::WatchKind::Ports);
        let mut released: Vec<(String, Vec<Subscriber>)> = Vec::new();
        let journal = &mut self.journal;
        let count = self.shard.release_all(idx, |name, subs| {
            if !watched {
                journal.append(&Event::released(name, id, reason));
            }
            if watched || !subs.is_empty() {
                released.push((name.to_string(), subs));
            }
        });
        self.metrics.releases += u64::from(count);
        self.owners.remove(idx);
        if watched {
            for (port, _) in &released {
                self.emit(&Event::released(port, id, reason), out);
            }
        }
        for (port, subs) in released {
            for s in subs {
                self.notify(s, &port, reason, out);
            }
        }
    }

    /// Send a release notification to a subscriber's home, if it is still in its session.
    pub(super) fn notify(
        &mut self,
        sub: Subscriber,
        port: &str,
        reason: ReleaseReason,
        out: &mut Vec<Output>,
    ) {
        let Some(to) = self
            .owners
            .get(sub.node)
            .map(|r| r.at_home)
            .filter(|r| r.session == sub.session)
        else {
            return;
        };
        if usize::from(to.home) == self.me {
            let push = PushRef::Released { port, reason };
            let r = self.deliver_here(to.idx, to.session, push, out);
            self.metrics.release_notifications += r.delivered;
        } else {
            let msg = Msg::Deliver {
                op: 0,
                ack: false,
                items: vec![Item::Released {
                    node: to.idx,
                    session: to.session,
                    port,
                    reason,
                }]
                .into(),
            };
            self.send(usize::from(to.home), &msg);
        }
    }

    /// The owner of `port` (its bytes) in this shard, as the mesh names it.
    pub(super) fn resolve_here(&self, port: &[u8]) -> Option<NodeRef> {
        self.shard
            .owner_of_bytes(port)
            .and_then(|o| self.owners.get(o))
            .map(|r| r.at_home)
    }

    pub(super) fn owner_here(&self, port: &str) -> Option<PortOwner> {
        self.shard
            .owner(port)
            .and_then(|o| self.owners.get(o))
            .map(|r| PortOwner {
                node: r.id.clone(),
                address: r.address.clone(),
            })
    }

    /// Splits `(position, port)` pairs by shard instance.
    /// Node `idx` of this home as the mesh names it (in its current session), and its
    /// announced address.
    pub(super) fn at_home(&self, idx: NodeIdx) -> (NodeRef, Arc<str>) {
        let (local, address) = self
            .nodes
            .get(idx)
            .map_or((0, Arc::from("")), |n| (n.session(), n.address().clone()));
        let at_home = NodeRef {
            home: self.me as u16,
            idx,
            session: self.global(local),
        };
        (at_home, address)
    }

    pub(super) fn split_ports<'a>(
        &self,
        ports: impl Iterator<Item = (usize, &'a str)>,
    ) -> Vec<Vec<(u32, &'a str)>> {
        // Room for every port in each part: growing them by doubling copies them again and
        // again; untouched room costs nothing.
        let room = ports.size_hint().0;
        let mut parts: Vec<Vec<(u32, &str)>> =
            (0..self.count).map(|_| Vec::with_capacity(room)).collect();
        for (pos, port) in ports {
            parts[shard_instance(port, self.count)].push((pos as u32, port));
        }
        parts
    }

    /// Sends each non-empty part of a split request to its instance as the message `make`
    /// builds from it; returns how many were sent (the replies to wait for).
    pub(super) fn scatter<'a>(
        &mut self,
        parts: Vec<Vec<(u32, &'a str)>>,
        make: impl Fn(Vec<(u32, &'a str)>) -> Msg<'a>,
    ) -> usize {
        let mut sent = 0;
        for (peer, part) in parts.into_iter().enumerate() {
            if !part.is_empty() {
                sent += 1;
                make(part).encode(&mut self.outbox[peer]);
            }
        }
        sent
    }
}
