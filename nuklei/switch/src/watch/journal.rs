//! The event history of one switch instance: a sequence number per event and the last
//! `capacity` events, kept as one byte buffer of their strings plus a small record each (no
//! allocation per event: the journal is written on every registration and release).

use std::collections::VecDeque;

use super::{Event, What};

/// One journaled event: its strings' lengths (the strings follow each other in `bytes`).
#[derive(Clone, Copy, Debug)]
struct Rec {
    what: u8,
    reason: u8,
    lens: [u32; 4],
}

impl Rec {
    fn bytes(&self) -> usize {
        self.lens.iter().map(|&l| l as usize).sum()
    }
}

/// What a watch starting after sequence `from` gets from the journal.
#[derive(Debug, PartialEq, Eq)]
pub enum Replay {
    /// `from` is ahead of this instance's last event: it is not a position of this switch.
    Ahead {
        /// The instance's last sequence number.
        last: u64,
    },
    /// The events after `from` this journal holds: `missed` names the range it no longer
    /// holds (`(first, last)`, inclusive), `start` the first sequence replayed, `last` the
    /// sequence up to which the watch is then current.
    From {
        /// Events after `from` no longer held.
        missed: Option<(u64, u64)>,
        /// Sequence of the first event to replay (`last + 1`: none).
        start: u64,
        /// The last sequence: the watch continues after it.
        last: u64,
    },
}

/// The numbered, bounded event history of one instance.
#[derive(Debug)]
pub struct Journal {
    capacity: usize,
    /// Sequence of the last event (the incarnation's base before the first one).
    last: u64,
    recs: VecDeque<Rec>,
    /// The strings of `recs`, oldest first from `head`.
    bytes: Vec<u8>,
    head: usize,
}

impl Journal {
    /// A journal keeping the last `capacity` events (0: none), whose first event is numbered
    /// `base + 1`.
    pub fn new(capacity: usize, base: u64) -> Journal {
        Journal {
            capacity,
            last: base,
            recs: VecDeque::new(),
            bytes: Vec::new(),
            head: 0,
        }
    }

    /// The sequence number of the last event.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// The sequence number of the oldest event held (`last + 1` if none).
    pub fn first(&self) -> u64 {
        self.last + 1 - self.recs.len() as u64
    }

    /// Events held.
    pub fn len(&self) -> usize {
        self.recs.len()
    }

    /// Whether no event is held.
    pub fn is_empty(&self) -> bool {
        self.recs.is_empty()
    }

    /// Bytes of strings held (for metrics).
    pub fn bytes(&self) -> usize {
        self.bytes.len() - self.head
    }

    /// Numbers `event` and keeps it (dropping the oldest beyond the capacity); its sequence.
    pub fn append(&mut self, event: &Event<'_>) -> u64 {
        self.last += 1;
        if self.capacity == 0 {
            return self.last;
        }
        if self.recs.len() == self.capacity {
            if let Some(old) = self.recs.pop_front() {
                self.head += old.bytes();
            }
            if self.head >= 1 << 16 && self.head * 2 >= self.bytes.len() {
                // Amortised: each byte is moved at most once per time it is kept.
                self.bytes.drain(..self.head);
                self.head = 0;
            }
        }
        let strings = [event.key, event.owner, event.address, event.from];
        let (what, reason) = event.what.codes();
        let mut lens = [0u32; 4];
        for (l, s) in lens.iter_mut().zip(strings) {
            *l = s.len() as u32;
            self.bytes.extend_from_slice(s.as_bytes());
        }
        self.recs.push_back(Rec { what, reason, lens });
        self.last
    }

    /// Where a watch that has seen everything up to `from` starts.
    pub fn replay(&self, from: u64) -> Replay {
        if from > self.last {
            return Replay::Ahead { last: self.last };
        }
        let first = self.first();
        Replay::From {
            missed: (from + 1 < first).then(|| (from + 1, first - 1)),
            start: (from + 1).max(first),
            last: self.last,
        }
    }

    /// The events held from sequence `start` on, oldest first, with their sequences.
    pub fn since(&self, start: u64) -> impl Iterator<Item = (u64, Event<'_>)> + '_ {
        let first = self.first();
        let skip = start.saturating_sub(first) as usize;
        let mut off = self.head + self.recs.iter().take(skip).map(Rec::bytes).sum::<usize>();
        let bytes = &self.bytes;
        self.recs
            .iter()
            .enumerate()
            .skip(skip)
            .filter_map(move |(i, rec)| {
                let mut strings = [""; 4];
                for (s, &l) in strings.iter_mut().zip(&rec.lens) {
                    let end = off + l as usize;
                    *s = std::str::from_utf8(&bytes[off..end]).unwrap_or_default();
                    off = end;
                }
                let what = What::from_codes(rec.what, rec.reason)?;
                let event = Event {
                    what,
                    key: strings[0],
                    owner: strings[1],
                    address: strings[2],
                    from: strings[3],
                };
                Some((first + i as u64, event))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::ReleaseReason;

    #[test]
    fn numbers_events_and_keeps_the_last_ones() {
        let mut j = Journal::new(3, 100);
        assert_eq!(
            j.replay(100),
            Replay::From {
                missed: None,
                start: 101,
                last: 100
            }
        );
        assert_eq!(j.replay(101), Replay::Ahead { last: 100 });
        let names: Vec<String> = (0..5).map(|i| format!("p{i}")).collect();
        for (i, n) in names.iter().enumerate() {
            let seq = j.append(&Event::acquired(n, "a", "a:1"));
            assert_eq!(seq, 101 + i as u64);
        }
        assert_eq!((j.first(), j.last(), j.len()), (103, 105, 3));
        let got: Vec<(u64, String)> = j.since(104).map(|(s, e)| (s, e.key.into())).collect();
        assert_eq!(got, [(104, "p3".into()), (105, "p4".into())]);
        // A watch that saw up to 100 missed 101..=102 and gets 103.. .
        assert_eq!(
            j.replay(100),
            Replay::From {
                missed: Some((101, 102)),
                start: 103,
                last: 105
            }
        );
        assert_eq!(
            j.replay(102),
            Replay::From {
                missed: None,
                start: 103,
                last: 105
            }
        );
        assert_eq!(
            j.replay(105),
            Replay::From {
                missed: None,
                start: 106,
                last: 105
            }
        );
        assert_eq!(j.since(106).count(), 0);
        // An older incarnation's cursor (below this one's base) misses everything until now.
        assert_eq!(
            j.replay(7),
            Replay::From {
                missed: Some((8, 102)),
                start: 103,
                last: 105
            }
        );
    }

    #[test]
    fn strings_survive_wrapping_and_compaction() {
        let mut j = Journal::new(1000, 0);
        let mut seq = 0;
        for round in 0..200u64 {
            for i in 0..1000u64 {
                let port = format!("port-{round}-{i}-{}", "x".repeat((i % 7) as usize));
                seq = j.append(&Event::released(
                    &port,
                    "owner",
                    ReleaseReason::Unregistered,
                ));
            }
            assert!(j.bytes() < 64 * 1024 + 1000 * 64, "{}", j.bytes());
        }
        let last: Vec<(u64, Event<'_>)> = j.since(seq - 1).collect();
        assert_eq!(last.len(), 2);
        assert_eq!(last[1].1.key, format!("port-199-999-{}", "x".repeat(5)));
        assert_eq!(last[1].1.what, What::Released(ReleaseReason::Unregistered));
        assert_eq!(last[1].1.owner, "owner");
    }

    #[test]
    fn without_capacity_only_numbers() {
        let mut j = Journal::new(0, 0);
        j.append(&Event::acquired("p", "a", ""));
        j.append(&Event::acquired("q", "a", ""));
        assert!(j.is_empty());
        assert_eq!(
            j.replay(0),
            Replay::From {
                missed: Some((1, 2)),
                start: 3,
                last: 2
            }
        );
    }
}
