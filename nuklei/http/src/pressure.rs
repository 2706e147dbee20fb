//! What the reaktor asks of http beyond traffic: the memory its connections hold, dropping the
//! largest of them under memory pressure, and the graceful stop (drain).

use crate::HttpNukleus;

impl HttpNukleus {
    /// Memory held for connection `slot`: unread input, unsent output, responses waiting
    /// for their turn.
    pub(crate) fn held_by(&self, slot: usize) -> usize {
        self.connections[slot].h1.held_bytes()
    }

    /// Drops the connections holding the most, largest first, until about `bytes` are freed.
    pub(crate) fn shed_largest(&mut self, bytes: usize) -> usize {
        let held = self
            .connections
            .iter()
            .map(|(slot, _)| (self.held_by(slot), slot))
            .collect();
        let mut freed = 0;
        for (size, slot) in streams::memory::largest_first(held, bytes) {
            tracing::info!(
                core = self.core,
                remote = %self.connections[slot].remote,
                buffered = size,
                "memory above the limit: dropping the connection that holds the most"
            );
            self.shed_total += 1;
            self.abort_connection(slot, true);
            freed += size;
        }
        freed
    }

    /// Graceful stop: idle keep-alive connections close now; a connection with requests in
    /// flight closes once they are answered (the last response not yet begun says
    /// `Connection: close`); a half-received request head may still complete (and its response
    /// closes the connection); tunnels are for the kind that took them over.
    pub(crate) fn begin_drain(&mut self) {
        self.draining = true;
        let slots: Vec<usize> = self.connections.iter().map(|(slot, _)| slot).collect();
        for slot in slots {
            if self.connections[slot].h1.drain() {
                self.mark_dirty(slot);
            }
        }
    }
}
