//! A node's outbound push queue, kept as the bytes that go on the wire.
//!
//! Each push is encoded once, when it is queued, as its JSON object followed by `,`, appended
//! to one contiguous buffer; a batch of the oldest pushes is then a single slice of that buffer
//! (`[` + slice without its last `,` + `]`), copied out once. So a queued push costs no
//! allocation of its own and the byte limit counts the real encoded bytes (escapes
//! included). Per push, only its length is kept (4 bytes), to cut batches at push boundaries
//! and count pushes.

use std::collections::VecDeque;

use crate::json::{write_str, write_string, Escaping};

/// Encoded pushes, oldest first.
#[derive(Debug, Default)]
pub struct PushQueue {
    /// Encoded pushes from `head` on, each followed by `,`.
    bytes: Vec<u8>,
    head: usize,
    /// Encoded length (with the `,`) of each queued push.
    lens: VecDeque<u32>,
}

/// The oldest pushes that fit in one frame ([`PushQueue::batch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batch<'q> {
    /// Pushes in the batch.
    pub pushes: usize,
    /// The pushes joined by `,` (without the last push's `,`).
    joined: &'q [u8],
}

impl Batch<'_> {
    /// Length of the frame: `[`, the pushes, `]`.
    pub fn frame_len(&self) -> usize {
        self.joined.len() + 2
    }

    /// Write the frame into `dst`, which is exactly [`Batch::frame_len`] bytes.
    pub fn write(&self, dst: &mut [u8]) {
        let (open, rest) = dst
            .split_first_mut()
            .expect("a frame has at least two bytes");
        let (close, middle) = rest
            .split_last_mut()
            .expect("a frame has at least two bytes");
        *open = b'[';
        streams::copy::copy(middle, self.joined);
        *close = b']';
    }

    /// Length of the frame with `lead` as its first element: `[`, lead, `,`, the pushes, `]`
    /// (an empty lead adds nothing).
    pub fn frame_len_with(&self, lead: &[u8]) -> usize {
        self.frame_len() + if lead.is_empty() { 0 } else { lead.len() + 1 }
    }

    /// Write the frame with `lead` first into `dst`, exactly [`Batch::frame_len_with`] bytes.
    pub fn write_with(&self, dst: &mut [u8], lead: &[u8]) {
        if lead.is_empty() {
            return self.write(dst);
        }
        let (open, rest) = dst
            .split_first_mut()
            .expect("a frame has at least two bytes");
        *open = b'[';
        let (first, rest) = rest.split_at_mut(lead.len());
        first.copy_from_slice(lead);
        let (comma, rest) = rest.split_first_mut().expect("room for the comma");
        *comma = b',';
        let (close, middle) = rest
            .split_last_mut()
            .expect("a frame has at least two bytes");
        streams::copy::copy(middle, self.joined);
        *close = b']';
    }

    /// The pushes joined by `,`, as [`Batch::write`] copies them between `[` and `]`.
    pub fn joined(&self) -> &[u8] {
        self.joined
    }

    /// Bytes of the queue this batch takes (for [`PushQueue::consume`]).
    pub fn queued_bytes(&self) -> usize {
        self.joined.len() + 1
    }
}

impl PushQueue {
    /// Pushes queued.
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Encoded bytes queued (each push counted with its separating `,`).
    pub fn bytes(&self) -> usize {
        self.bytes.len() - self.head
    }

    /// Append a message push `{"type":"msg","port":…,"body":…}` if the queue stays within
    /// `limit` bytes; returns its encoded length (with the `,`), or `Err(queued)`: the bytes
    /// that would have been queued, and nothing is.
    pub fn push_msg(&mut self, port: &str, body: &str, limit: usize) -> Result<usize, usize> {
        self.push_msg_as(port, body, Escaping::Scan, limit)
    }

    /// [`PushQueue::push_msg`] of a port and body whose [`Escaping`] is known.
    pub fn push_msg_as(
        &mut self,
        port: &str,
        body: &str,
        escaping: Escaping,
        limit: usize,
    ) -> Result<usize, usize> {
        self.push_with(limit, |out| {
            out.extend_from_slice(br#"{"type":"msg","port":"#);
            write_str(out, port, escaping);
            out.extend_from_slice(br#","body":"#);
            write_str(out, body, escaping);
            out.extend_from_slice(b"},");
        })
    }

    /// Append a release push `{"type":"released","port":…,"reason":…}`, as
    /// [`PushQueue::push_msg`].
    pub fn push_released(
        &mut self,
        port: &str,
        reason: &str,
        limit: usize,
    ) -> Result<usize, usize> {
        self.push_with(limit, |out| {
            out.extend_from_slice(br#"{"type":"released","port":"#);
            write_string(out, port);
            out.extend_from_slice(br#","reason":""#);
            out.extend_from_slice(reason.as_bytes());
            out.extend_from_slice(b"\"},");
        })
    }

    /// Append one push that `encode` writes as a JSON object, as [`PushQueue::push_msg`].
    pub fn push_object(
        &mut self,
        limit: usize,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> Result<usize, usize> {
        self.push_with(limit, |out| {
            encode(out);
            out.push(b',');
        })
    }

    fn push_with(
        &mut self,
        limit: usize,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> Result<usize, usize> {
        let start = self.bytes.len();
        encode(&mut self.bytes);
        let len = self.bytes.len() - start;
        let queued = self.bytes();
        if queued > limit || len > u32::MAX as usize {
            self.bytes.truncate(start);
            return Err(queued);
        }
        self.lens.push_back(len as u32);
        Ok(len)
    }

    /// The oldest push, encoded (without its `,`).
    pub fn front(&self) -> Option<&[u8]> {
        let len = *self.lens.front()? as usize;
        Some(&self.bytes[self.head..self.head + len - 1])
    }

    /// The oldest pushes whose frame (`[…]`) fits in `max_bytes`, at least one (so a push
    /// larger than `max_bytes` still gets out); `None` if the queue is empty.
    pub fn batch(&self, max_bytes: usize) -> Option<Batch<'_>> {
        let first = *self.lens.front()? as usize;
        // A frame of pushes of lengths l (with `,`) is 1 + Σ l bytes: `[` + joined + `]`.
        let room = max_bytes.saturating_sub(1);
        let (pushes, bytes) = if self.bytes() <= room {
            (self.lens.len(), self.bytes())
        } else {
            let mut bytes = first;
            let mut pushes = 1;
            for &l in self.lens.iter().skip(1) {
                if bytes + l as usize > room {
                    break;
                }
                bytes += l as usize;
                pushes += 1;
            }
            (pushes, bytes)
        };
        Some(Batch {
            pushes,
            joined: &self.bytes[self.head..self.head + bytes - 1],
        })
    }

    /// Drop the oldest `pushes`, which take `bytes` of the queue (a [`Batch`]'s
    /// `pushes` and [`Batch::queued_bytes`]).
    pub fn consume(&mut self, pushes: usize, bytes: usize) {
        debug_assert_eq!(
            self.lens
                .iter()
                .take(pushes)
                .map(|&l| l as usize)
                .sum::<usize>(),
            bytes
        );
        self.lens.drain(..pushes);
        self.head += bytes;
        if self.lens.is_empty() {
            self.bytes.clear();
            self.head = 0;
        } else if self.head >= self.bytes.len() / 2 && self.head >= 4096 {
            // Keep what is left at the front, so the buffer does not grow without bound when
            // a reader never lets the queue empty (amortised: at most one copy per byte).
            self.bytes.drain(..self.head);
            self.head = 0;
        }
    }

    /// Remove the oldest push; returns its encoded bytes.
    pub fn pop_front(&mut self) -> Option<Vec<u8>> {
        let push = self.front()?.to_vec();
        let len = *self.lens.front()? as usize;
        self.consume(1, len);
        Some(push)
    }

    /// Take one batch (as [`PushQueue::batch`]), appended to `out` as a JSON array; returns
    /// the pushes and bytes taken.
    pub fn drain_into(&mut self, max_bytes: usize, out: &mut Vec<u8>) -> Option<(usize, usize)> {
        let batch = self.batch(max_bytes)?;
        let start = out.len();
        out.resize(start + batch.frame_len(), 0);
        batch.write(&mut out[start..]);
        let taken = (batch.pushes, batch.queued_bytes());
        self.consume(taken.0, taken.1);
        Some(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(q: &mut PushQueue, max: usize) -> Option<String> {
        let mut out = Vec::new();
        q.drain_into(max, &mut out)?;
        Some(String::from_utf8(out).unwrap())
    }

    #[test]
    fn a_lead_element_goes_first_in_the_frame() {
        let mut q = PushQueue::default();
        q.push_msg("p", "x", 1000).unwrap();
        let batch = q.batch(1 << 20).unwrap();
        let lead = br#"{"type":"epoch","epoch":7}"#;
        let mut out = vec![0; batch.frame_len_with(lead)];
        batch.write_with(&mut out, lead);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with(r#"[{"type":"epoch","epoch":7},{"type":"msg""#),
            "{text}"
        );
        assert!(text.ends_with("}]"), "{text}");
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed.as_array().unwrap().len(), 2);
        let mut plain = vec![0; batch.frame_len_with(b"")];
        batch.write_with(&mut plain, b"");
        assert_eq!(plain.len(), batch.frame_len());
    }

    #[test]
    fn pushes_are_encoded_once_and_drained_in_order() {
        let mut q = PushQueue::default();
        // The bytes of `Push::cost`: 35 + port + body, and 42 + port + reason.
        assert_eq!(q.push_msg("p", "x", 1000), Ok(37));
        assert_eq!(q.push_released("q", "unregistered", 1000), Ok(55));
        assert_eq!((q.len(), q.bytes()), (2, 92));
        assert_eq!(
            q.front(),
            Some(&br#"{"type":"msg","port":"p","body":"x"}"#[..])
        );
        assert_eq!(
            frame(&mut q, 1 << 20).unwrap(),
            r#"[{"type":"msg","port":"p","body":"x"},{"type":"released","port":"q","reason":"unregistered"}]"#
        );
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
        assert_eq!(frame(&mut q, 1 << 20), None);
    }

    #[test]
    fn the_limit_counts_escaped_bytes_and_refuses_without_queuing() {
        let mut q = PushQueue::default();
        // 35 bytes (with the `,`) + 1 port byte, plus the body as encoded.
        assert_eq!(q.push_msg("p", "ab", 100), Ok(38));
        // `"` is written as `\"`: 2 bytes of body become 4.
        assert_eq!(q.push_msg("p", "\"\"", 100), Ok(40));
        assert_eq!(
            q.push_msg("p", "0123456789012345678901", 100),
            Err(38 + 40 + 58)
        );
        assert_eq!((q.len(), q.bytes()), (2, 78));
        let f = frame(&mut q, 1 << 20).unwrap();
        let v: serde_json::Value = serde_json::from_str(&f).unwrap();
        assert_eq!(v[1]["body"], "\"\"");
    }

    #[test]
    fn plain_pushes_are_the_same_bytes_as_scanned_ones() {
        let (mut scanned, mut plain) = (PushQueue::default(), PushQueue::default());
        let body = "0123456789abcdef".repeat(4);
        for port in ["p", "a-port-longer-than-sixteen-bytes"] {
            let a = scanned.push_msg(port, &body, usize::MAX);
            let b = plain.push_msg_as(port, &body, Escaping::Plain, usize::MAX);
            assert_eq!(a, b);
        }
        assert_eq!(frame(&mut scanned, 1 << 20), frame(&mut plain, 1 << 20));
    }

    #[test]
    fn batches_cut_at_push_boundaries_and_take_at_least_one() {
        let mut q = PushQueue::default();
        for i in 0..10 {
            q.push_msg("p", &format!("m{i}"), usize::MAX).unwrap();
        }
        // Each push is 38 bytes with its `,`: a frame of k pushes is 1 + 38 k.
        let f = frame(&mut q, 1 + 38 * 3).unwrap();
        assert_eq!(f.len(), 1 + 38 * 3);
        assert_eq!(
            serde_json::from_str::<Vec<serde_json::Value>>(&f)
                .unwrap()
                .len(),
            3
        );
        let f = frame(&mut q, 38 * 3).unwrap();
        assert_eq!(
            serde_json::from_str::<Vec<serde_json::Value>>(&f)
                .unwrap()
                .len(),
            2
        );
        let f = frame(&mut q, 1).unwrap();
        assert_eq!(f, r#"[{"type":"msg","port":"p","body":"m5"}]"#);
        let f = frame(&mut q, 1 << 20).unwrap();
        let v: Vec<serde_json::Value> = serde_json::from_str(&f).unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(v[3]["body"], "m9");
        assert!(q.is_empty());
    }

    #[test]
    fn a_queue_that_never_empties_keeps_its_buffer_bounded() {
        let mut q = PushQueue::default();
        let body = "b".repeat(100);
        let mut next = 0u64;
        let mut got = 0u64;
        let mut push = |q: &mut PushQueue| {
            // 8-digit ports: every push is 143 bytes with its `,`.
            assert_eq!(
                q.push_msg(&format!("{next:08}"), &body, usize::MAX),
                Ok(143)
            );
            next += 1;
        };
        push(&mut q);
        for _ in 0..10_000 {
            push(&mut q);
            push(&mut q);
            let mut out = Vec::new();
            assert_eq!(q.drain_into(1 + 2 * 143, &mut out), Some((2, 286)));
            let v: Vec<serde_json::Value> = serde_json::from_slice(&out).unwrap();
            for p in v {
                assert_eq!(p["port"], format!("{got:08}"));
                got += 1;
            }
            assert_eq!(q.len(), 1);
        }
        assert!(q.bytes.capacity() < 1 << 20, "{}", q.bytes.capacity());
        while let Some(p) = q.pop_front() {
            let p: serde_json::Value = serde_json::from_slice(&p).unwrap();
            assert_eq!(p["port"], format!("{got:08}"));
            got += 1;
        }
        assert_eq!(got, next);
    }
}
