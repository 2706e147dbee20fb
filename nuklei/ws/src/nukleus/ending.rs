//! Connections the server ends on its own: the ones idle for `idle_timeout`, and every one
//! when the reaktor drains (graceful stop). Both send close 1001 (going away) and then run
//! the usual close handshake, bounded by `close_timeout`.

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

    /// The connection was accepted: its idle clock starts (if the idle timeout applies).
    pub(super) fn start_idle_clock(&mut self, slot: usize) {
        let Some(idle) = self.config.idle_timeout else {
            return;
        };
        let c = &mut self.conns[slot];
        if c.idle_timed {
            c.last_active = self.now;
            self.idle_timers
                .push(Reverse((self.now + idle, slot, c.http_id)));
        }
    }

    /// Idle checks that are due. A connection that was active since its check was armed gets
    /// a new one from its last activity; one that was not is closed with 1001 "idle timeout".
    /// A check that comes due much later than armed (the process was stopped or starved)
    /// waits another tenth of the timeout first, so that bytes queued meanwhile in the
    /// kernel and upstream arrive before anybody is called idle: input first, then expiry.
    pub(super) fn expire_idle(&mut self) {
        let Some(idle) = self.config.idle_timeout else {
            self.idle_timers.clear();
            return;
        };
        let grace = idle / 10;
        while let Some(Reverse((at, slot, http_id))) = self.idle_timers.peek().copied() {
            if at > self.now {
                break;
            }
            self.idle_timers.pop();
            let Some(c) = self
                .conns
                .get(slot)
                .filter(|c| c.http_id == http_id && !c.close_sent && !c.closing)
            else {
                continue; // gone or closing: its close handshake has its own timer
            };
            let due = c.last_active + idle;
            if due > self.now {
                self.idle_timers.push(Reverse((due, slot, http_id)));
            } else if self.now > at + grace {
                self.idle_timers
                    .push(Reverse((self.now + grace, slot, http_id)));
            } else {
                self.idle_closes += 1;
                tracing::debug!(
                    core = self.core,
                    idle_ms = idle.as_millis() as u64,
                    "closing an idle WebSocket connection"
                );
                self.server_close(slot, close_code::GOING_AWAY, "idle timeout");
            }
        }
    }
}
