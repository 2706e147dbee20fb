//! [`Pushes`]: a batch of pushed messages kept as spans of the WebSocket message that carried
//! them, turned into [`Event::Push`]es one at a time as the application takes them.
//!
//! Why: a batch of two thousand pushes made as events up front was a 224 KiB vector (112
//! bytes an event) written by the reader and read back by the application, and each event
//! took the message's reference count when made. The spans are 16 bytes a push; an event is
//! made when it is taken, while its bytes are still in the cache that the reader's scan left
//! them in (issue 16).

use std::ops::Range;
use std::sync::{Arc, Mutex};

use crate::{Event, SharedStr};

/// Where one push's port and body lie in its message: byte offsets, both ends next to the
/// JSON string's quotes (so on char boundaries). An absent port or body is an empty range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    port: [u32; 2],
    body: [u32; 2],
}

impl Span {
    /// The span of a push whose port is `port` and body `body` in its message.
    ///
    /// # Panics
    /// If an offset is 4 GiB or more (a message the client accepts is far smaller).
    pub fn new(port: Range<usize>, body: Range<usize>) -> Span {
        let at = |i: usize| u32::try_from(i).expect("a message under 4 GiB");
        Span {
            port: [at(port.start), at(port.end)],
            body: [at(body.start), at(body.end)],
        }
    }

    fn port(&self) -> Range<usize> {
        self.port[0] as usize..self.port[1] as usize
    }

    fn body(&self) -> Range<usize> {
        self.body[0] as usize..self.body[1] as usize
    }
}

/// A batch of pushes read from one message, in order: an iterator of [`Event::Push`], or
/// read in place with [`Pushes::iter`] (from [`crate::Events::next_batch`]).
#[derive(Debug, Default)]
pub struct Pushes {
    message: SharedStr,
    spans: Vec<Span>,
    /// How many have been taken.
    taken: usize,
    /// Where the span vector goes when the batch is dropped.
    pool: Option<Arc<SpanPool>>,
}

/// One push of a [`Pushes`] batch, read in place: its port and body borrowed from the
/// message (no copy, no reference count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PushRef<'a> {
    /// The port it was sent to.
    pub port: &'a str,
    /// Its body.
    pub body: &'a str,
}

impl Pushes {
    /// The pushes at `spans` of `message` (the client makes them as it reads a message).
    /// Every span must lie inside `message` on char boundaries: reading a push whose span
    /// does not panics, as slicing a `str` there would.
    pub fn new(message: SharedStr, spans: Vec<Span>) -> Pushes {
        Pushes {
            message,
            spans,
            taken: 0,
            pool: None,
        }
    }

    /// This batch, whose span vector goes back to `pool` when it is dropped.
    pub(crate) fn returning_to(mut self, pool: &Arc<SpanPool>) -> Pushes {
        self.pool = Some(pool.clone());
        self
    }

    /// Pushes not taken yet.
    pub fn len(&self) -> usize {
        self.spans.len() - self.taken
    }

    /// Whether every push was taken.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The pushes not taken yet, in order, read in place (they stay in the batch: iterate
    /// again, or take them as events, at will). A push's strings live as long as the batch;
    /// [`PushRef::port`] and [`PushRef::body`] can be kept beyond it with
    /// [`Pushes::message`] and [`SharedStr::slice_ref`].
    pub fn iter(&self) -> impl ExactSizeIterator<Item = PushRef<'_>> + '_ {
        let text = self.message.as_str();
        self.spans[self.taken..].iter().map(move |span| PushRef {
            port: &text[span.port()],
            body: &text[span.body()],
        })
    }

    /// The message the pushes are parts of.
    pub fn message(&self) -> &SharedStr {
        &self.message
    }

    /// The span vector, emptied, to be filled again (its capacity kept).
    pub fn into_spans(mut self) -> Vec<Span> {
        let mut spans = std::mem::take(&mut self.spans);
        spans.clear();
        spans
    }
}

impl Drop for Pushes {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.put(std::mem::take(&mut self.spans));
        }
    }
}

/// Span vectors of spent batches, kept with their capacity for the next batches: allocating
/// one per batch and freeing it when spent mapped fresh pages (and unmapped them) at every
/// batch once batches were large (12 % of the client's CPU under SendMsg load, when batches
/// were vectors of events).
#[derive(Debug, Default)]
pub(crate) struct SpanPool {
    spare: Mutex<Vec<Vec<Span>>>,
}

/// At most this many spent span vectors are kept.
const SPARE_VECTORS: usize = 4;

/// A spent span vector larger than this (in pushes) is freed, not kept.
const SPARE_MAX_PUSHES: usize = 64 * 1024;

impl SpanPool {
    /// An empty vector for the next batch of pushes: a spent one if there is one.
    pub(crate) fn take(&self) -> Vec<Span> {
        self.spare
            .lock()
            .ok()
            .and_then(|mut spare| spare.pop())
            .unwrap_or_default()
    }

    /// Keep `spans` (emptied) for a later batch, if there is room.
    pub(crate) fn put(&self, mut spans: Vec<Span>) {
        spans.clear();
        if spans.capacity() == 0 || spans.capacity() > SPARE_MAX_PUSHES {
            return;
        }
        if let Ok(mut spare) = self.spare.lock() {
            if spare.len() < SPARE_VECTORS {
                spare.push(spans);
            }
        }
    }
}

impl Iterator for Pushes {
    type Item = Event;

    /// The next push: its port (inline when short) and body (a slice of the message) are
    /// made now.
    fn next(&mut self) -> Option<Event> {
        let span = *self.spans.get(self.taken)?;
        self.taken += 1;
        Some(Event::Push {
            port: self.message.slice_between_ascii(span.port()),
            body: self.message.slice_between_ascii(span.body()),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len(), Some(self.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spent_span_vectors_come_back_empty_with_their_capacity_and_the_pool_is_bounded() {
        let pool = SpanPool::default();
        assert_eq!(pool.take().capacity(), 0, "none spent yet");
        let mut spent = Vec::with_capacity(1000);
        spent.push(Span::new(0..1, 1..2));
        let at = spent.as_ptr();
        pool.put(spent);
        let again = pool.take();
        assert!(again.is_empty());
        assert_eq!((again.as_ptr(), again.capacity()), (at, 1000));
        // Bounded: SPARE_VECTORS kept, the rest freed; an oversized one is never kept.
        for _ in 0..SPARE_VECTORS + 3 {
            pool.put(Vec::with_capacity(10));
        }
        pool.put(Vec::with_capacity(SPARE_MAX_PUSHES + 1));
        let spare = pool.spare.lock().unwrap();
        assert_eq!(spare.len(), SPARE_VECTORS);
        assert!(spare.iter().all(|v| v.capacity() <= SPARE_MAX_PUSHES));
    }

    #[test]
    fn a_batch_read_in_place_shows_the_pushes_not_taken_and_keeps_them() {
        let message = SharedStr::from(format!("pqr{}", "é".repeat(20)));
        let spans = vec![
            Span::new(0..1, 3..43),
            Span::new(1..2, 0..0),
            Span::new(0..3, 3..5),
        ];
        let mut pushes = Pushes::new(message, spans);
        let all: Vec<PushRef<'_>> = pushes.iter().collect();
        let e20 = "é".repeat(20);
        assert_eq!(
            all,
            [
                PushRef {
                    port: "p",
                    body: &e20
                },
                PushRef {
                    port: "q",
                    body: ""
                },
                PushRef {
                    port: "pqr",
                    body: "é"
                },
            ]
        );
        assert_eq!(pushes.iter().len(), 3, "reading in place takes nothing");
        let first = pushes.next().expect("a push");
        assert!(matches!(first, Event::Push { ref port, .. } if port == "p"));
        let rest: Vec<(&str, &str)> = pushes.iter().map(|p| (p.port, p.body)).collect();
        assert_eq!(rest, [("q", ""), ("pqr", "é")]);
        let kept = pushes
            .message()
            .slice_ref(pushes.iter().next().unwrap().port);
        assert_eq!(kept.as_deref(), Some("q"));
    }

    #[test]
    fn a_dropped_batch_gives_its_span_vector_back_to_its_pool() {
        let pool = Arc::new(SpanPool::default());
        let spans = Vec::with_capacity(64);
        let at = spans.as_ptr();
        let pushes = Pushes::new(SharedStr::from("x"), spans).returning_to(&pool);
        drop(pushes);
        let again = pool.take();
        assert_eq!((again.as_ptr(), again.capacity()), (at, 64));
        // Without a pool (a batch made by hand), dropping frees it.
        drop(Pushes::new(SharedStr::from("x"), Vec::with_capacity(8)));
        assert_eq!(pool.take().capacity(), 0);
    }

    #[test]
    fn pushes_come_out_in_order_as_events_and_the_spans_can_be_reused() {
        let message = SharedStr::from(format!("ab{}", "x".repeat(40)));
        let spans = vec![
            Span::new(0..1, 1..2),
            Span::new(0..0, 2..42),
            Span::new(1..2, 0..0),
        ];
        let mut pushes = Pushes::new(message.clone(), spans);
        assert_eq!(pushes.len(), 3);
        let first = pushes.next().expect("a push");
        assert_eq!(pushes.len(), 2);
        let rest: Vec<Event> = pushes.by_ref().collect();
        let texts: Vec<(String, String)> = std::iter::once(first)
            .chain(rest)
            .map(|e| match e {
                Event::Push { port, body } => (port.to_string(), body.to_string()),
                e => panic!("not a push: {e:?}"),
            })
            .collect();
        let x40 = "x".repeat(40);
        assert_eq!(
            texts,
            [
                ("a".to_string(), "b".to_string()),
                (String::new(), x40),
                ("b".to_string(), String::new())
            ]
        );
        assert!(pushes.is_empty());
        assert_eq!(pushes.next(), None);
        let spans = pushes.into_spans();
        assert!(spans.is_empty() && spans.capacity() >= 3);
    }
}
