//! An instance as one shard of the port table: registering, releasing and resolving the
//! ports whose name hashes to it, and release notifications.

use super::*;

impl Instance {
    // ---- port shard ------------------------------------------------------------------------

    /// Registers `ports` here for `node` in `session`.
    pub(super) fn register_here(
        &mut self,
        node: &str,
        at_home: NodeRef,
        address: &str,
        subscribe: bool,
        ports: &[(u32, &str)],
    ) -> (Vec<u32>, Vec<Failed>, Option<SwitchError>) {
        let session = at_home.session;
        let owner = self.owners.upsert(node, address, at_home);
        let mut new = Vec::new();
        let mut failed = Vec::new();
        let mut error = None;
        for (pos, port) in ports {
            let before = self.shard.len();
            match self.shard.register(port, owner) {
                Ok(()) => {
                    if self.shard.len() != before {
                        new.push(*pos);
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
        let mut released: Vec<(String, Vec<Subscriber>)> = Vec::new();
        let count = self.shard.release_all(idx, |name, subs| {
            if !subs.is_empty() {
                released.push((name.to_string(), subs));
            }
        });
        self.metrics.releases += u64::from(count);
        self.owners.remove(idx);
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
                items: vec![Item::Released {
                    node: to.idx,
                    session: to.session,
                    port,
                    reason,
                }],
            };
            self.send(usize::from(to.home), &msg);
        }
    }

    pub(super) fn resolve_here(&self, port: &str) -> Option<NodeRef> {
        self.shard
            .owner(port)
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
    pub(super) fn split_ports<'a>(
        &self,
        ports: impl Iterator<Item = (usize, &'a String)>,
    ) -> Vec<Vec<(u32, &'a str)>> {
        let mut parts = vec![Vec::new(); self.count];
        for (pos, port) in ports {
            parts[shard_instance(port, self.count)].push((pos as u32, port.as_str()));
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
