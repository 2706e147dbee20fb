//! Accepting connections: binding the listeners, taking connections from the own listeners
//! or the ones steering hands over, pausing and retrying when the process runs out of
//! resources, admitting each connection (its BEGIN to the next kind of the chain), refusing it
//! when full or above the memory limit, and the end of listening when the reaktor drains.

use super::*;

/// The initial stream id for a new connection in `slot`: the slot's next generation.
pub(crate) fn next_id(generations: &mut Vec<u32>, ids: SlotIds, slot: usize) -> u64 {
    if generations.len() <= slot {
        generations.resize(slot + 1, 0);
    }
    generations[slot] = generations[slot].wrapping_add(1);
    ids.initial(slot, generations[slot])
}

/// The initial BEGIN of a new connection, with its tcp extension (listener and addresses).
pub(crate) fn open_stream(
    tx: &mut streams::RingWriter,
    id: u64,
    timestamp: u64,
    begin: &TcpBeginEx,
) -> Result<(), streams::ClaimError> {
    let mut ex = [0u8; 128];
    let ex_len = encode_begin_ex(begin, &mut ex);
    tx.begin(&Header::at(id, timestamp), id, &ex[..ex_len])
}

/// Why a new connection is refused (accept-then-close), if it is.
pub(crate) enum Refusal {
    Full,
    Memory,
}

/// The admission rule of both transports: a connection over `max_connections`, or any while
/// the process is above its memory limit, is refused.
pub(crate) fn admission(connections: usize, max_connections: usize) -> Option<Refusal> {
    if connections >= max_connections.min(SlotIds::MAX_SLOTS) {
        Some(Refusal::Full)
    } else if streams::memory::overloaded() {
        Some(Refusal::Memory)
    } else {
        None
    }
}

impl Refusal {
    pub(crate) fn log(
        &self,
        core: usize,
        remote: SocketAddr,
        max_connections: usize,
        refused: u64,
    ) {
        match self {
            Refusal::Full => tracing::warn!(
                core,
                %remote,
                max_connections,
                refused_total = refused,
                "connection limit reached: closing a new connection; raise max_connections in the topology"
            ),
            Refusal::Memory => tracing::warn!(
                core,
                %remote,
                refused_total = refused,
                "memory above [reaktor] max_memory_bytes: closing a new connection"
            ),
        }
    }
}

/// Logged once at the start of a run of failed accepts.
pub(crate) fn log_accept_pause(
    core: usize,
    error: &io::Error,
    connections: usize,
    config: &TcpConfig,
) {
    tracing::warn!(
        core,
        error = %error,
        connections,
        retry_ms = config.accept_retry.as_millis() as u64,
        "cannot accept connections: new clients wait in the listen backlog, retrying until \
         accepting works again; if out of file descriptors, raise the process's limit \
         (ulimit -n) or lower [tcp] max_connections"
    );
}

/// Logged once when accepting works again after a run of failures.
pub(crate) fn log_accept_resumed(core: usize, now: Instant, since: Instant) {
    tracing::info!(
        core,
        paused_ms = now.saturating_duration_since(since).as_millis() as u64,
        "accepting connections again: every queued client was accepted"
    );
}

impl TcpNukleus {
    /// Follows the steering flags: stops or resumes accepting on this instance's own sockets,
    /// and takes over (or gives back) the sockets of instances that stopped accepting.
    pub(crate) fn steer(&mut self) {
        if self.draining {
            return;
        }
        // One atomic load per poll while nothing changes.
        let generation = match &self.steering {
            Some((steering, _)) => steering.generation(),
            None => return,
        };
        if generation == self.steered {
            return;
        }
        let Some((steering, me)) = self.steering.clone() else {
            return;
        };
        let Some(registry) = self.registry.as_ref() else {
            return;
        };
        self.steered = generation;
        let accepting = steering.accepting(me);
        if accepting != self.own_registered {
            for (index, (listener, _)) in self.listeners.iter_mut().enumerate() {
                let token = Token(self.tokens.first + index);
                let result = if accepting {
                    registry.register(listener, token, Interest::READABLE)
                } else {
                    registry.deregister(listener)
                };
                if let Err(e) = result {
                    tracing::warn!(core = self.core, error = %e, "cannot change listener registration");
                }
                // Edge-triggered: drain what queued up while it was not registered.
                self.listener_ready[index] = accepting;
            }
            self.own_registered = accepting;
        }
        // Take over the sockets of every other instance that stopped; give back the rest.
        let flags = steering.accepting_all();
        let wanted = |owner: usize| accepting && owner != me && !flags[owner];
        let mut k = 0;
        while k < self.foreign.len() {
            if wanted(self.foreign[k].owner) {
                k += 1;
            } else {
                let mut gone = self.foreign.swap_remove(k);
                let _ = registry.deregister(&mut gone.socket);
                // Tokens follow positions: re-register the one moved into place.
                if k < self.foreign.len() {
                    let token = Token(self.tokens.first + self.tokens.count - 1 - k);
                    let moved = &mut self.foreign[k];
                    let _ = registry.reregister(&mut moved.socket, token, Interest::READABLE);
                    moved.ready = true;
                }
            }
        }
        for owner in 0..flags.len() {
            if !wanted(owner) || self.foreign.iter().any(|f| f.owner == owner) {
                continue;
            }
            for (listener, socket) in steering.listeners_of(owner).into_iter().enumerate() {
                let mut socket = TcpListener::from_std(socket);
                let token = Token(self.tokens.first + self.tokens.count - 1 - self.foreign.len());
                if let Err(e) = registry.register(&mut socket, token, Interest::READABLE) {
                    tracing::warn!(core = self.core, error = %e, "cannot take over a listener");
                    continue;
                }
                self.foreign.push(Foreign {
                    owner,
                    listener,
                    socket,
                    ready: true,
                });
            }
        }
    }

    pub(crate) fn accept(&mut self, source: Source) -> usize {
        let mut work = 0;
        let index = match source {
            Source::Own(index) => index,
            Source::Foreign(k) => self.foreign[k].listener,
        };
        for _ in 0..64 {
            let accepted = match source {
                Source::Own(i) => self.listeners[i].0.accept(),
                Source::Foreign(k) => self.foreign[k].socket.accept(),
            };
            let (socket, remote) = match accepted {
                Ok(accepted) => accepted,
                // One client gave up while queued: the next one may be fine.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    match source {
                        Source::Own(i) => self.listener_ready[i] = false,
                        Source::Foreign(k) => self.foreign[k].ready = false,
                    }
                    if e.kind() != io::ErrorKind::WouldBlock {
                        // EMFILE and friends: the clients stay queued, and no new readiness
                        // edge comes for them. Try again on a timer, as nginx does.
                        self.pause_accepting(&e);
                    } else if let Some(since) = self.accept_paused_since.take() {
                        // The backlog is drained: the run of failures is over.
                        log_accept_resumed(self.core, self.now, since);
                    }
                    return work;
                }
            };
            work += 1;
            if let (Source::Foreign(_), Some((steering, me))) = (source, &self.steering) {
                steering.count_taken_over(*me);
            }
            if let Some(refusal) = admission(self.connections.len(), self.config.max_connections) {
                // Accept-then-close: the client learns at once (the log layer rate-limits
                // these lines per cause).
                self.refused += 1;
                refusal.log(self.core, remote, self.config.max_connections, self.refused);
                drop(socket);
                continue;
            }
            self.admit(index, socket, remote);
        }
        work
    }

    /// `accept` failed for another reason than an empty backlog: retry after `accept_retry`,
    /// logging once per run of failures (which ends when the backlog is drained).
    pub(crate) fn pause_accepting(&mut self, error: &io::Error) {
        self.accept_retry_at = Some(self.now + self.config.accept_retry);
        if self.accept_paused_since.is_none() {
            self.accept_paused_since = Some(self.now);
            self.accept_pauses += 1;
            log_accept_pause(self.core, error, self.connections.len(), &self.config);
        }
    }

    /// The retry timer of a paused accept ran out: every listener is tried again.
    pub(crate) fn retry_accepting(&mut self) {
        if self.accept_retry_at.is_some_and(|at| self.now >= at) {
            self.accept_retry_at = None;
            self.listener_ready
                .iter_mut()
                .for_each(|ready| *ready = true);
            self.foreign.iter_mut().for_each(|f| f.ready = true);
        }
    }

    pub(crate) fn admit(&mut self, listener: usize, socket: TcpStream, remote: SocketAddr) {
        let _ = socket.set_nodelay(true);
        let local = socket.local_addr().ok();
        let slot = self.connections.vacant_key();
        let id = next_id(&mut self.generations, self.ids, slot);
        let link = self.listeners[listener].1;
        let connection = Connection {
            socket: Arc::new(socket),
            id,
            link,
            send: SendWindow::default(),
            output: match self.output_half {
                None => Writing::Here(ReplyWriter::new(self.config.window)),
                Some(_) => Writing::There { done: false },
            },
            readable: true,
            queued: false,
            peer_closed: false,
            read_done: false,
            remote,
        };
        let registry = self.registry.as_ref().expect("registered before polling");
        let token = Token(self.tokens.first + self.listeners.len() + slot);
        // The output half watches writability on its own core.
        let interest = match self.output_half {
            None => Interest::READABLE | Interest::WRITABLE,
            Some(_) => Interest::READABLE,
        };
        let fd = connection.socket.as_raw_fd();
        if let Err(e) = registry.register(&mut SourceFd(&fd), token, interest) {
            tracing::warn!(core = self.core, %remote, error = %e, "cannot register accepted socket");
            return;
        }
        let begin = TcpBeginEx {
            listener: listener as u16,
            remote,
            local,
        };
        if open_stream(&mut self.links[link].tx, id, self.timestamp, &begin).is_err() {
            tracing::error!(
                core = self.core,
                %remote,
                "stream buffer to {} full: refusing connection",
                self.links[link].peer
            );
            let _ = registry.deregister(&mut SourceFd(&fd));
            return;
        }
        self.accepted += 1;
        if let Some(channel) = &self.output_half {
            // Queued before the BEGIN is published, so the reply can never outrun it.
            channel.send_to_output(ToOutput::Open {
                id,
                link,
                socket: connection.socket.clone(),
                remote,
            });
        }
        self.connections.insert(connection);
        // The socket may already hold data; edge-triggered readiness would not tell us again.
        self.enqueue(slot);
    }

    /// Graceful stop: no more connections. The listening sockets stop listening (queued and
    /// new clients are refused by the kernel at once, and can go elsewhere); connections in
    /// flight go on.
    pub(crate) fn stop_accepting(&mut self) {
        self.draining = true;
        if let Some(registry) = &self.registry {
            for (listener, _) in &mut self.listeners {
                let _ = registry.deregister(listener);
            }
            for foreign in &mut self.foreign {
                let _ = registry.deregister(&mut foreign.socket);
            }
        }
        for (listener, _) in &self.listeners {
            let _ = socket2::SockRef::from(listener).shutdown(Shutdown::Read);
        }
        self.own_registered = false;
        self.foreign.clear();
        self.listener_ready.iter_mut().for_each(|r| *r = false);
        self.accept_retry_at = None;
    }
}
