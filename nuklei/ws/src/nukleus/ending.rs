//! Connections the server ends on its own: every one when the reaktor drains (graceful
//! stop). It sends close 1001 (going away) and then runs the usual close handshake, bounded
//! by `close_timeout`.

use super::*;

impl WsNukleus {
    /// Graceful stop: every open connection gets close 1001 ("server shutting down"), one
    /// still waiting for its application's answer gets 503, and new upgrades get 503.
    /// [`Nukleus::drained`] once every close handshake is over.
    pub(super) fn begin_drain(&mut self) {
        self.draining = true;
        let slots: Vec<usize> = self.conns.iter().map(|(slot, _)| slot).collect();
        for slot in slots {
            let c = &self.conns[slot];
            if c.accept.is_some() {
                self.refuse(slot, 503, "the server is shutting down");
            } else if !c.close_sent && !c.closing {
                self.server_close(slot, close_code::GOING_AWAY, "server shutting down");
            }
        }
    }
}
