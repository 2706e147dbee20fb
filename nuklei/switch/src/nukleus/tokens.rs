//! Tokens without a restart: a list the reaktor publishes (SIGHUP, `POST /v1/admin/reload`)
//! replaces this instance's tokens at its next poll. A token removed, or no longer granted a
//! node, stops working for new requests at once, and the receiving connections opened with
//! it close (WebSocket close code 4004, SSE `event: close` with reason `token_revoked`; the
//! node goes offline, its ports are released). A node-less watcher whose token no longer
//! grants one of its watches closes the same way.

use super::*;

impl SwitchNukleus {
    /// Applies a token list published since the last look; how many connections it closed.
    pub(super) fn look_at_tokens(&mut self) -> usize {
        let Some(reload) = &self.config.reload else {
            return 0;
        };
        let generation = reload.updates.generation();
        if generation == self.tokens_seen {
            return 0;
        }
        self.tokens_seen = generation;
        let grants = reload.updates.latest();
        self.tokens = Tokens::new(&grants);
        tracing::info!(
            core = self.core,
            instance = self.instance,
            tokens = grants.len(),
            "switch tokens reloaded"
        );
        let revoked: Vec<ConnId> = self
            .exchanges
            .iter()
            .flatten()
            .flatten()
            .filter_map(|x| match &x.role {
                Role::Receiver(r) if r.online => {
                    let allowed = match &r.watcher {
                        Some(w) => self.watcher_allowed(r.token.as_deref(), w),
                        None => self
                            .tokens
                            .check(r.token.as_deref(), Need::Node(&r.node))
                            .is_ok(),
                    };
                    (!allowed).then_some(r.conn)
                }
                _ => None,
            })
            .collect();
        for &conn in &revoked {
            self.engine.handle_close(conn, CloseReason::TokenRevoked);
        }
        self.run_events();
        self.run_done();
        revoked.len()
    }

    /// `POST /v1/admin/reload` (admin token): the topology file's tokens, now.
    pub(super) fn reload_tokens(&mut self) -> (u16, Vec<u8>) {
        let Some(reload) = &self.config.reload else {
            let body = error_body(
                "not_available",
                "this switch cannot reload its tokens (it was not started from a topology file)"
                    .into(),
            );
            return (501, serde_json::to_vec(&body).unwrap_or_default());
        };
        match (reload.trigger)() {
            Ok(tokens) => {
                // Apply here at once; the other instances do at their next poll.
                let closed = self.look_at_tokens();
                let body =
                    serde_json::json!({"reloaded": true, "tokens": tokens, "closed": closed});
                (200, body.to_string().into_bytes())
            }
            Err(reason) => {
                let body = error_body("reload_failed", reason);
                (400, serde_json::to_vec(&body).unwrap_or_default())
            }
        }
    }
}
