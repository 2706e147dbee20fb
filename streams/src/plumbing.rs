//! The stream plumbing every nukleus shares, written once: reading every input ring, the set
//! of streams that need a flush this poll, publishing every output, and the streams whose
//! frames a full ring refused (DESIGN §3: that stream is reset, counted, and nothing else is
//! affected), plus the path routes of the kinds that route by path.
//!
//! A nukleus's `poll` is then: [`read_frames`] (handling each frame), [`DirtySet::take`] and
//! a flush per dirty stream, [`refused`] and a reset per refused stream, [`publish`].

use crate::frame::Frame;
use crate::nukleus::Output;
use crate::ring::RingReader;

/// Frames one poll reads from each input ring at most, so one busy peer cannot starve the
/// others or the core.
pub const READ_LIMIT: usize = 1024;

/// Reads up to [`READ_LIMIT`] frames from every input and hands each to `on_frame` with the
/// input's index; a malformed frame is logged and skipped. Returns the frames read.
///
/// The inputs are usually taken out of the nukleus for the call
/// (`std::mem::take(&mut self.inputs)`), so `on_frame` may borrow the nukleus mutably.
pub fn read_frames(
    inputs: &mut [RingReader],
    core: usize,
    mut on_frame: impl FnMut(usize, Frame<'_>),
) -> usize {
    let mut work = 0;
    for (input, rx) in inputs.iter_mut().enumerate() {
        work += rx.read(READ_LIMIT, |type_id, bytes| {
            match Frame::new(type_id, bytes) {
                Ok(f) => on_frame(input, f),
                Err(e) => tracing::error!(core, error = %e, "malformed frame"),
            }
        });
    }
    work
}

/// Publishes every output written since the last poll (waking peers on other cores).
pub fn publish(outputs: &mut [Output]) {
    for output in outputs {
        output.publish();
    }
}

/// The streams whose frames were refused by a full ring since the last call, as (output
/// index, stream id). The nukleus resets each one on both sides (the refused side's END,
/// ABORT and RESET are deferred by the ring until there is room) and counts it.
pub fn refused(outputs: &mut [Output]) -> Vec<(usize, u64)> {
    let mut refused = Vec::new();
    for (index, output) in outputs.iter_mut().enumerate() {
        if output.tx.has_refused() {
            refused.extend(output.tx.take_refused().into_iter().map(|id| (index, id)));
        }
    }
    refused
}

/// The slots (connections, exchanges) that need a flush at the end of this poll, each once.
#[derive(Debug, Default)]
pub struct DirtySet {
    slots: Vec<usize>,
    marked: Vec<bool>,
}

impl DirtySet {
    /// Marks `slot`; a slot already marked is not added twice.
    #[inline]
    pub fn mark(&mut self, slot: usize) {
        if self.marked.len() <= slot {
            self.marked.resize(slot + 1, false);
        }
        if !self.marked[slot] {
            self.marked[slot] = true;
            self.slots.push(slot);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Takes the marked slots, in marking order, unmarking them: a slot marked again while
    /// they are flushed is flushed in the next poll. Give the vector back with
    /// [`DirtySet::recycle`] to keep its allocation.
    pub fn take(&mut self) -> Vec<usize> {
        for &slot in &self.slots {
            self.marked[slot] = false;
        }
        std::mem::take(&mut self.slots)
    }

    /// Returns a vector from [`DirtySet::take`] for reuse.
    pub fn recycle(&mut self, mut slots: Vec<usize>) {
        if self.slots.is_empty() {
            slots.clear();
            self.slots = slots;
        }
    }
}

/// A path prefix and the kind its exchanges go to (http's and ws's routes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub prefix: String,
    pub to: String,
    /// Route by key: the exchange goes to the instance of `to` that owns the hash of this path
    /// segment (0-based, percent-decoded; see [`crate::key`]) instead of the one on this core.
    /// Paths without the segment go to the one on this core.
    pub key_segment: Option<usize>,
}

/// The index of the route whose prefix is the longest that `path` starts with.
pub fn longest_prefix(routes: &[Route], path: &str) -> Option<usize> {
    routes
        .iter()
        .enumerate()
        .filter(|(_, r)| path.starts_with(r.prefix.as_str()))
        .max_by_key(|(_, r)| r.prefix.len())
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_flushed_once_per_poll_and_again_if_marked_during_the_flush() {
        let mut dirty = DirtySet::default();
        dirty.mark(3);
        dirty.mark(1);
        dirty.mark(3);
        let slots = dirty.take();
        assert_eq!(slots, [3, 1]);
        assert!(dirty.is_empty());
        dirty.mark(3); // during the flush
        dirty.recycle(slots);
        assert_eq!(dirty.take(), [3]);
    }

    #[test]
    fn the_longest_matching_prefix_wins() {
        let route = |prefix: &str, to: &str| Route {
            prefix: prefix.into(),
            to: to.into(),
            key_segment: None,
        };
        let routes = [
            route("/", "echo"),
            route("/ws/", "ws"),
            route("/ws/x", "app"),
        ];
        assert_eq!(longest_prefix(&routes, "/ws/xy"), Some(2));
        assert_eq!(longest_prefix(&routes, "/ws/a"), Some(1));
        assert_eq!(longest_prefix(&routes, "/other"), Some(0));
        assert_eq!(longest_prefix(&routes[1..], "/other"), None);
    }

    #[test]
    fn a_full_ring_remembers_the_streams_it_refused_and_defers_their_ends_until_there_is_room() {
        use crate::frame::{Header, END};
        let (mut tx, mut rx) = crate::ring(crate::SharedMapping::anonymous(1024, "t").unwrap());
        let mut written = 0;
        while tx.data(&Header::new(3), 0, 0, &[], &[7; 64]).is_ok() {
            written += 1;
        }
        assert!(written > 0);
        assert_eq!(tx.take_refused(), [3], "the stream whose DATA was lost");
        assert!(
            tx.take_refused().is_empty(),
            "each refusal is reported once"
        );
        // WINDOW is refused too; END is not lost but deferred.
        assert!(tx.window(&Header::new(5), 0).is_err());
        assert_eq!(tx.take_refused(), [5]);
        assert!(tx.end(&Header::new(3), &[]).is_ok());
        assert_eq!(tx.deferred(), 1);
        tx.publish();
        let mut types = Vec::new();
        rx.read(usize::MAX, |type_id, _| types.push(type_id));
        assert_eq!(types.len(), written, "only the DATA frames were there");
        // Room again: the next publish writes the deferred END before anything else.
        tx.publish();
        types.clear();
        rx.read(usize::MAX, |type_id, _| types.push(type_id));
        assert_eq!(types, [END]);
        assert_eq!(tx.deferred(), 0);
        assert!(tx.take_refused().is_empty());
    }
}
