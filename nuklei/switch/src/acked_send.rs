//! SendMsg with acknowledgement: the [`Switch`] calls over its [`crate::ack::Acks`]. Apart
//! from ack.rs, which holds the bookkeeping and the push encoding, so that the switch can
//! keep `Acks` without ack.rs naming the switch.

use crate::ack::AckReport;
use crate::json::Escaping;
use crate::switch::{Output, SendReport, Switch, SwitchError};

impl Switch {
    /// SendMsg whose message pushes ask for acknowledgement: the batch is queued now, and
    /// the call completes under `token` once every push was acknowledged or given up on
    /// ([`Switch::take_acked`]).
    pub fn send_msg_acked<'b, S, I>(
        &mut self,
        token: u64,
        batch: I,
        now: u64,
        out: &mut Vec<Output>,
    ) -> Result<(), SwitchError>
    where
        S: AsRef<str> + 'b,
        I: IntoIterator<Item = (&'b [S], &'b str, Escaping)> + Clone,
    {
        let op = self.next_ack_op;
        self.next_ack_op += 1;
        self.acks
            .open(op, now.saturating_add(self.limits.ack_timeout_ms));
        self.ack_op = Some(op);
        let report = self.send_msg_as(batch, out);
        self.ack_op = None;
        match report {
            Ok(report) => {
                self.ack_calls.insert(op, (token, report));
                self.acks.close(op);
                Ok(())
            }
            Err(e) => {
                self.acks.forget(op);
                Err(e)
            }
        }
    }

    /// Acknowledged sends that completed: `(token, what was queued, what was acknowledged)`.
    pub fn take_acked(&mut self) -> Vec<(u64, SendReport, AckReport)> {
        self.acks
            .take_done()
            .into_iter()
            .filter_map(|(op, acks)| {
                let (token, report) = self.ack_calls.remove(&op)?;
                Some((token, report, acks))
            })
            .collect()
    }

    /// `node` acknowledges its acknowledged-delivery pushes up to `upto`; how many that
    /// acknowledged.
    pub fn ack(&mut self, node: &str, upto: u64) -> Result<u64, SwitchError> {
        let idx = self.online_index(node)?;
        Ok(self.acks.ack(idx, upto))
    }
}
