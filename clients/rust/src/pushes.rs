//! [`Pushes`]: a batch of pushed messages kept as spans of the WebSocket message that carried
//! them, turned into [`Event::Push`]es one at a time as the application takes them.
//!
//! Why: a batch of two thousand pushes made as events up front was a 224 KiB vector (112
//! bytes an event) written by the reader and read back by the application, and each event
//! took the message's reference count when made. The spans are 16 bytes a push; an event is
//! made when it is taken, while its bytes are still in the cache that the reader's scan left
//! them in (issue 16).

use std::ops::Range;

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

/// A batch of pushes read from one message, in order; an iterator of [`Event::Push`].
#[derive(Debug, Default)]
pub struct Pushes {
    message: SharedStr,
    spans: Vec<Span>,
    /// How many have been taken.
    taken: usize,
}

impl Pushes {
    /// The pushes at `spans` of `message`.
    pub fn new(message: SharedStr, spans: Vec<Span>) -> Pushes {
        Pushes {
            message,
            spans,
            taken: 0,
        }
    }

    /// Pushes not taken yet.
    pub fn len(&self) -> usize {
        self.spans.len() - self.taken
    }

    /// Whether every push was taken.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The span vector, emptied, to be filled again (its capacity kept).
    pub fn into_spans(self) -> Vec<Span> {
        let mut spans = self.spans;
        spans.clear();
        spans
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
