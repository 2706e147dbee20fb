//! A cluster member's switch follows the master's lease ([`ServingGate`]): it serves from an
//! empty table when its epoch begins; when the lease ends it stops at once — every receiving
//! connection closed with "not master" (naming the master if known), every call in flight
//! answered 503 with the leader hint, the port table dropped. Calls that arrive while it does
//! not serve are answered with the gate's refusal (307 to the master, or 503 + Retry-After).

use super::*;

impl SwitchNukleus {
    /// Looks at the published standing (start of every poll); returns the work done.
    pub(super) fn look_at_gate(&mut self, now: Instant) -> usize {
        match self.gate.look(now) {
            None => 0,
            Some(GateChange::Started(epoch)) => {
                // A new epoch starts empty (BYPSS: nodes re-register with the new master).
                self.return_mesh_frames();
                self.engine = self.fresh_engine();
                tracing::info!(
                    core = self.core,
                    instance = self.instance,
                    epoch,
                    "serving as master: the switch API is open"
                );
                1
            }
            Some(GateChange::Stopped(epoch)) => {
                self.stop_serving(epoch);
                1
            }
        }
    }

    /// An engine with an empty table, made as the first one was.
    fn fresh_engine(&self) -> Box<dyn SwitchEngine> {
        match &self.instance_config {
            None => Box::new(SingleEngine::new(self.config.switch.clone())),
            Some(instance) => Box::new(ClusterEngine::new(instance.clone())),
        }
    }

    /// The lease of `epoch` ended: close every receiving connection, fail every call in
    /// flight, drop the table.
    fn stop_serving(&mut self, epoch: u64) {
        let reason = self.gate.stopped_text();
        let leader = self
            .gate
            .leader()
            .map(|(id, api)| serde_json::json!({"id": id, "api": api.to_string()}));
        let detail = serde_json::json!({
            "reason": "not_master",
            "message": reason,
            "leader": leader,
        });
        let closed = self.close_every_receiver(close_code::NOT_MASTER, &reason, &detail);
        // Calls in flight (cluster instances wait for mesh replies): 503 with the hint.
        let pending: Vec<(Token, Pending)> = self.pending.drain().collect();
        let failed = pending.len();
        for (_, p) in pending {
            let is_rest = matches!(
                self.exchanges[p.input].get(p.slot),
                Some(Some(x)) if x.id == p.id && !x.ws
            );
            if is_rest {
                let refusal = self.gate.refusal("");
                self.refused_not_master += 1;
                self.respond_refusal(
                    p.input,
                    p.slot,
                    &Refusal {
                        status: 503,
                        headers: vec![("Retry-After", "1".into())],
                        body: refusal.body,
                    },
                );
            }
        }
        let ports = self.engine.metrics().ports;
        self.return_mesh_frames();
        self.engine = self.fresh_engine();
        tracing::warn!(
            core = self.core,
            instance = self.instance,
            epoch,
            receivers_closed = closed,
            calls_failed = failed,
            ports_dropped = ports,
            "stopped serving: {reason}"
        );
    }

    /// A switch call while this member does not serve: the refusal, answered at END.
    pub(super) fn refuse_not_master(&mut self, target: &str) -> Role {
        self.refused_not_master += 1;
        Role::Rest(Rest {
            target: Target::Refused(self.gate.refusal(target)),
            body: Vec::new(),
            // The body is not kept: the call is not served here.
            too_large: true,
            token: None,
        })
    }

    /// Sends a refusal: its status, headers and JSON body.
    pub(super) fn respond_refusal(&mut self, input: usize, slot: usize, refusal: &Refusal) {
        self.respond_with(
            input,
            slot,
            refusal.status,
            b"application/json",
            &refusal.headers,
            refusal.body.clone(),
        );
    }
}
