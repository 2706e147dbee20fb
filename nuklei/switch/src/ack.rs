//! Acknowledged delivery. By default SendMsg's `delivered` counts pushes *queued to the
//! owner's receiving connection*: the switch took them, nothing more. With `"ack": true`
//! each message push carries a number (`{"type":"msg",…,"ack":17}`, counting per receiving
//! connection), the receiver's client acknowledges with `{"op":"ack","upto":17}` once it has
//! handled the batch, and the sender's reply waits: `acknowledged` counts the pushes so
//! acknowledged, `unacknowledged` those whose receiver went offline or did not acknowledge
//! within `ack_timeout_ms` ([`crate::Limits`]).
//!
//! [`Acks`] is the bookkeeping of one node home: numbers per node, the pushes waiting per
//! node in order (acknowledgements are cumulative, as pushes to one node are in order), and
//! per waiting operation its counts and deadline.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use hashbrown::HashMap;

use crate::json::{write_str, Escaping};
use crate::ports::NodeIdx;

/// What the receivers did with the acknowledged pushes of one SendMsg.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AckReport {
    /// Pushes the receivers acknowledged.
    pub acknowledged: u64,
    /// Pushes whose receiver went offline, or did not acknowledge in time.
    pub unacknowledged: u64,
}

impl std::ops::AddAssign for AckReport {
    fn add_assign(&mut self, rhs: Self) {
        self.acknowledged += rhs.acknowledged;
        self.unacknowledged += rhs.unacknowledged;
    }
}

#[derive(Debug)]
struct Waiting {
    waiting: u64,
    report: AckReport,
}

/// The acknowledgements a node home waits for.
#[derive(Debug, Default)]
pub struct Acks {
    next_number: HashMap<NodeIdx, u64>,
    /// Per node, `(push number, operation)` in push order.
    pending: HashMap<NodeIdx, VecDeque<(u64, u64)>>,
    ops: HashMap<u64, Waiting>,
    deadlines: BinaryHeap<Reverse<(u64, u64)>>,
    /// Operations whose every push was acknowledged or given up on.
    done: Vec<(u64, AckReport)>,
}

impl Acks {
    /// Operation `op` starts waiting; it gives up on what is not acknowledged at `deadline`.
    pub fn open(&mut self, op: u64, deadline: u64) {
        self.ops.insert(
            op,
            Waiting {
                waiting: 0,
                report: AckReport::default(),
            },
        );
        self.deadlines.push(Reverse((deadline, op)));
    }

    /// The number for the next acknowledged push to `node`, which `op` waits for.
    pub fn expect(&mut self, node: NodeIdx, op: u64) -> u64 {
        let n = self.next_number.entry(node).or_insert(0);
        *n += 1;
        let number = *n;
        self.pending
            .entry(node)
            .or_default()
            .push_back((number, op));
        if let Some(w) = self.ops.get_mut(&op) {
            w.waiting += 1;
        }
        number
    }

    /// The number `expect` just handed out was not queued after all.
    pub fn cancel(&mut self, node: NodeIdx) {
        if let Some(q) = self.pending.get_mut(&node) {
            if let Some((_, op)) = q.pop_back() {
                if let Some(w) = self.ops.get_mut(&op) {
                    w.waiting -= 1;
                }
            }
        }
    }

    /// `op` queued all its pushes: it is done if none is waiting.
    pub fn close(&mut self, op: u64) {
        if self.ops.get(&op).is_some_and(|w| w.waiting == 0) {
            self.finish(op);
        }
    }

    /// `node` acknowledged its pushes up to `upto`; how many that acknowledged.
    pub fn ack(&mut self, node: NodeIdx, upto: u64) -> u64 {
        let Some(q) = self.pending.get_mut(&node) else {
            return 0;
        };
        let mut count = 0;
        let mut finished = Vec::new();
        while q.front().is_some_and(|&(n, _)| n <= upto) {
            let Some((_, op)) = q.pop_front() else { break };
            count += 1;
            if let Some(w) = self.ops.get_mut(&op) {
                w.report.acknowledged += 1;
                w.waiting -= 1;
                if w.waiting == 0 {
                    finished.push(op);
                }
            }
        }
        for op in finished {
            self.finish(op);
        }
        count
    }

    /// `node` went offline: what it did not acknowledge never will be.
    pub fn gone(&mut self, node: NodeIdx) {
        self.next_number.remove(&node);
        let Some(q) = self.pending.remove(&node) else {
            return;
        };
        let mut finished = Vec::new();
        for (_, op) in q {
            if let Some(w) = self.ops.get_mut(&op) {
                w.report.unacknowledged += 1;
                w.waiting -= 1;
                if w.waiting == 0 {
                    finished.push(op);
                }
            }
        }
        for op in finished {
            self.finish(op);
        }
    }

    /// The time is `now`: operations past their deadline give up on what they wait for.
    pub fn expire(&mut self, now: u64) {
        while let Some(&Reverse((deadline, op))) = self.deadlines.peek() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            if let Some(w) = self.ops.get_mut(&op) {
                w.report.unacknowledged += w.waiting;
                w.waiting = 0;
                self.finish(op);
            }
        }
    }

    /// The earliest deadline of an operation still waiting.
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.peek().map(|Reverse((d, _))| *d)
    }

    fn finish(&mut self, op: u64) {
        if let Some(w) = self.ops.remove(&op) {
            self.done.push((op, w.report));
        }
    }

    /// Operations done since the last call, with their reports.
    pub fn take_done(&mut self) -> Vec<(u64, AckReport)> {
        std::mem::take(&mut self.done)
    }

    /// Operations waiting.
    pub fn waiting(&self) -> usize {
        self.ops.len()
    }

    /// Drops operation `op` (it queued nothing after all).
    pub fn forget(&mut self, op: u64) {
        self.ops.remove(&op);
    }
}

/// A message push that asks for acknowledgement: `{"type":"msg","port":…,"body":…,"ack":N}`.
pub fn encode_msg(port: &str, body: &str, escaping: Escaping, number: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(br#"{"type":"msg","port":"#);
    write_str(out, port, escaping);
    out.extend_from_slice(br#","body":"#);
    write_str(out, body, escaping);
    out.extend_from_slice(br#","ack":"#);
    out.extend_from_slice(itoa::Buffer::new().format(number).as_bytes());
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operation_ends_when_every_push_is_acknowledged_or_given_up() {
        let mut a = Acks::default();
        a.open(1, 100);
        assert_eq!(a.expect(7, 1), 1);
        assert_eq!(a.expect(7, 1), 2);
        assert_eq!(a.expect(8, 1), 1);
        a.close(1);
        assert!(a.take_done().is_empty());
        assert_eq!(a.ack(7, 1), 1);
        assert_eq!(a.ack(7, 1), 0, "acknowledgements are cumulative: 1 is done");
        a.gone(8);
        assert!(a.take_done().is_empty());
        assert_eq!(a.ack(7, 5), 1);
        assert_eq!(
            a.take_done(),
            [(
                1,
                AckReport {
                    acknowledged: 2,
                    unacknowledged: 1
                }
            )]
        );
        // An operation past its deadline gives up.
        a.open(2, 50);
        a.expect(7, 2);
        a.close(2);
        a.expire(49);
        assert!(a.take_done().is_empty());
        a.expire(50);
        assert_eq!(
            a.take_done(),
            [(
                2,
                AckReport {
                    acknowledged: 0,
                    unacknowledged: 1
                }
            )]
        );
        // A late acknowledgement of a given-up push changes nothing.
        assert_eq!(a.ack(7, 3), 1);
        assert!(a.take_done().is_empty());
        // Nothing to wait for: done at once.
        a.open(3, 10);
        a.close(3);
        assert_eq!(a.take_done(), [(3, AckReport::default())]);
        assert_eq!(a.waiting(), 0);
    }
}
