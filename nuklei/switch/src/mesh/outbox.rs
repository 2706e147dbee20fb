//! Where mesh records are written: [`MeshOut`], a byte sink the record writers append to and
//! patch lengths in, for a `Vec<u8>` and for an [`Outbox`], the records to one peer instance:
//! a frame of the ring to that peer lent by the nukleus for the poll (the records are written
//! where the reader will read them, with no copy), then a heap overflow.

use streams::LentFrame;

/// A byte sink for mesh records: appended to, and patched where a record's lengths and
/// counts are filled in when it is complete.
pub trait MeshOut {
    /// Bytes written so far (positions for [`MeshOut::patch`] count from the start).
    fn len(&self) -> usize;
    /// Whether nothing was written.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Appends `bytes`.
    fn extend_from_slice(&mut self, bytes: &[u8]);
    /// Appends one byte.
    #[inline]
    fn push(&mut self, byte: u8) {
        self.extend_from_slice(&[byte]);
    }
    /// Overwrites the bytes at `at` (all written already) with `bytes`.
    fn patch(&mut self, at: usize, bytes: &[u8]);
    /// About `additional` more bytes will follow.
    fn reserve(&mut self, _additional: usize) {}
}

impl MeshOut for Vec<u8> {
    #[inline]
    fn len(&self) -> usize {
        Vec::len(self)
    }
    #[inline]
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        Vec::extend_from_slice(self, bytes);
    }
    #[inline]
    fn push(&mut self, byte: u8) {
        Vec::push(self, byte);
    }
    #[inline]
    fn patch(&mut self, at: usize, bytes: &[u8]) {
        self[at..at + bytes.len()].copy_from_slice(bytes);
    }
    fn reserve(&mut self, additional: usize) {
        Vec::reserve(self, additional);
    }
}

/// The mesh records to one peer instance: first into the frame of the ring to it that the
/// nukleus lent for the poll ([`Outbox::lend`]), then, once a write does not fit there (or
/// when no frame is lent), into the overflow, and everything after it too, so the bytes keep
/// their order: the frame's, then the overflow's. The nukleus gives the frame back to the
/// ring trimmed to what was written ([`Outbox::take_frame`]) and then sends the overflow as
/// before ([`Outbox::overflow`]). A write is never split between the two (a record may be:
/// the reader reassembles records across DATA frames), so a field patched later lies whole in
/// one of them.
#[derive(Debug, Default)]
pub struct Outbox {
    /// The lent frame while writes go there.
    frame: Option<LentFrame>,
    /// The lent frame once a write did not fit in it.
    closed: Option<LentFrame>,
    /// Bytes written into the frame.
    used: usize,
    /// What follows the frame's bytes.
    overflow: Vec<u8>,
}

impl Outbox {
    /// Takes `frame` to write the records that follow into, if nothing waits in the overflow
    /// (they would overtake it) and no frame is lent already; otherwise hands it back.
    pub fn lend(&mut self, frame: LentFrame) -> Result<(), LentFrame> {
        if !self.overflow.is_empty() || self.frame.is_some() || self.closed.is_some() {
            return Err(frame);
        }
        self.used = 0;
        self.frame = Some(frame);
        Ok(())
    }

    /// The lent frame and the bytes written into it, to give back to its ring before the
    /// overflow is sent. Not while a record is being written.
    pub fn take_frame(&mut self) -> Option<(LentFrame, usize)> {
        let frame = self.frame.take().or_else(|| self.closed.take())?;
        Some((frame, std::mem::take(&mut self.used)))
    }

    /// [`Outbox::take_frame`] if anything was written into the frame or it took no more; an
    /// untouched frame stays lent (for the polls that follow: nothing is published after it
    /// meanwhile, and nothing else is written to its ring while the overflow is empty).
    pub fn take_written_frame(&mut self) -> Option<(LentFrame, usize)> {
        if self.used == 0 && self.frame.is_some() {
            return None;
        }
        self.take_frame()
    }

    /// Whether a frame is lent.
    pub fn holds_frame(&self) -> bool {
        self.frame.is_some() || self.closed.is_some()
    }

    /// The bytes after the frame's, to send once the frame is given back (the caller drains
    /// what it sent).
    pub fn overflow(&mut self) -> &mut Vec<u8> {
        &mut self.overflow
    }

    /// Bytes in the frame.
    pub fn in_frame(&self) -> usize {
        self.used
    }

    /// A write that does not fit in the frame (or there is none): the frame takes no more,
    /// the write and every later one go to the overflow.
    #[cold]
    fn spill(&mut self, bytes: &[u8]) {
        if let Some(frame) = self.frame.take() {
            self.closed = Some(frame);
        }
        self.overflow.extend_from_slice(bytes);
    }

    /// The frame's written bytes.
    fn written(&mut self) -> &mut [u8] {
        match self.frame.as_mut().or(self.closed.as_mut()) {
            Some(f) => &mut f.bytes()[..self.used],
            None => &mut [],
        }
    }
}

impl MeshOut for Outbox {
    #[inline]
    fn len(&self) -> usize {
        self.used + self.overflow.len()
    }

    #[inline]
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        let end = self.used + bytes.len();
        if let Some(f) = &mut self.frame {
            if let Some(dst) = f.bytes().get_mut(self.used..end) {
                dst.copy_from_slice(bytes);
                self.used = end;
                return;
            }
        }
        self.spill(bytes);
    }

    #[inline]
    fn patch(&mut self, at: usize, bytes: &[u8]) {
        let used = self.used;
        if at >= used {
            self.overflow[at - used..at - used + bytes.len()].copy_from_slice(bytes);
            return;
        }
        let in_frame = bytes.len().min(used - at);
        self.written()[at..at + in_frame].copy_from_slice(&bytes[..in_frame]);
        self.overflow[..bytes.len() - in_frame].copy_from_slice(&bytes[in_frame..]);
    }

    fn reserve(&mut self, additional: usize) {
        if self.frame.is_none() {
            self.overflow.reserve(additional);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streams::{ring, RingReader, RingWriter, SharedMapping};

    fn anonymous_ring(capacity: usize) -> (RingWriter, RingReader) {
        ring(SharedMapping::anonymous(capacity, "outbox").unwrap())
    }

    /// The bytes an outbox holds, in order: its frame's (given back to `tx`, published and
    /// read from `rx`), then its overflow's.
    fn sent(out: &mut Outbox, tx: &mut RingWriter, rx: &mut RingReader) -> Vec<u8> {
        if let Some((frame, used)) = out.take_frame() {
            tx.give_back(frame, used);
        }
        tx.publish();
        let mut bytes = Vec::new();
        rx.read(usize::MAX, |_, p| bytes.extend_from_slice(p));
        bytes.extend_from_slice(out.overflow());
        bytes
    }

    #[test]
    fn writes_fill_the_frame_exactly_then_go_to_the_overflow_and_stay_there() {
        let (mut tx, mut rx) = anonymous_ring(4096);
        let mut out = Outbox::default();
        out.lend(tx.lend(1, 16, 16).unwrap()).unwrap();
        out.extend_from_slice(b"0123456789");
        out.extend_from_slice(b"abcdef");
        assert_eq!(
            (out.in_frame(), out.overflow().len()),
            (16, 0),
            "exactly full"
        );
        out.push(b'!');
        assert_eq!((out.in_frame(), out.overflow().len()), (16, 1));
        assert_eq!(out.len(), 17);
        assert_eq!(sent(&mut out, &mut tx, &mut rx), b"0123456789abcdef!");
    }

    #[test]
    fn a_write_that_does_not_fit_goes_whole_to_the_overflow_and_so_does_all_after_it() {
        let (mut tx, mut rx) = anonymous_ring(4096);
        let mut out = Outbox::default();
        out.lend(tx.lend(1, 16, 16).unwrap()).unwrap();
        out.extend_from_slice(b"head");
        out.extend_from_slice(&[7; 20]);
        // Small enough for the frame's room, but after the overflow: not in the frame.
        out.extend_from_slice(b"tail");
        assert_eq!((out.in_frame(), out.overflow().len()), (4, 24));
        let mut want = b"head".to_vec();
        want.extend_from_slice(&[7; 20]);
        want.extend_from_slice(b"tail");
        assert_eq!(sent(&mut out, &mut tx, &mut rx), want);
    }

    #[test]
    fn a_record_larger_than_the_frame_leaves_the_frame_unused_and_dropped() {
        let (mut tx, mut rx) = anonymous_ring(4096);
        let mut out = Outbox::default();
        out.lend(tx.lend(1, 8, 8).unwrap()).unwrap();
        out.extend_from_slice(&[1; 9]);
        assert_eq!(out.in_frame(), 0);
        let (frame, used) = out.take_frame().unwrap();
        assert_eq!(used, 0);
        tx.give_back(frame, used);
        assert!(!tx.publish(), "an unused frame is no record");
        assert_eq!(rx.read(usize::MAX, |_, _| {}), 0);
        assert_eq!(out.overflow(), &[1; 9]);
    }

    #[test]
    fn no_frame_is_taken_while_bytes_wait_in_the_overflow_or_a_frame_is_held() {
        let (mut tx, _rx) = anonymous_ring(4096);
        let mut out = Outbox::default();
        out.extend_from_slice(b"waiting");
        let frame = out.lend(tx.lend(1, 8, 64).unwrap()).unwrap_err();
        tx.give_back(frame, 0);
        out.overflow().clear();
        out.lend(tx.lend(1, 8, 64).unwrap()).unwrap();
        let (mut other, _other_rx) = anonymous_ring(4096);
        let second = other.lend(1, 8, 64).unwrap();
        let second = out.lend(second).unwrap_err();
        other.give_back(second, 0);
        let (frame, _) = out.take_frame().unwrap();
        tx.give_back(frame, 0);
        assert!(out.take_frame().is_none());
    }

    #[test]
    fn an_untouched_frame_stays_lent_and_a_written_or_closed_one_goes_back() {
        let (mut tx, mut rx) = anonymous_ring(4096);
        let mut out = Outbox::default();
        out.lend(tx.lend(1, 8, 8).unwrap()).unwrap();
        assert!(out.take_written_frame().is_none(), "untouched: kept");
        assert!(out.holds_frame());
        out.extend_from_slice(b"later");
        assert_eq!(sent(&mut out, &mut tx, &mut rx), b"later");
        assert!(!out.holds_frame());
        // Closed by a write that did not fit, nothing in it: taken, to let the overflow out.
        out.lend(tx.lend(1, 8, 8).unwrap()).unwrap();
        out.extend_from_slice(&[3; 9]);
        let (frame, used) = out.take_written_frame().unwrap();
        assert_eq!(used, 0);
        tx.give_back(frame, used);
        assert_eq!(out.overflow(), &[3; 9]);
    }

    #[test]
    fn patches_land_in_the_frame_the_overflow_or_across_both() {
        let (mut tx, mut rx) = anonymous_ring(4096);
        let mut out = Outbox::default();
        out.lend(tx.lend(1, 8, 8).unwrap()).unwrap();
        out.extend_from_slice(b"aaaaaa");
        out.extend_from_slice(b"bbbbbb");
        assert_eq!((out.in_frame(), out.overflow().len()), (6, 6));
        out.patch(1, b"XY");
        out.patch(8, b"ZW");
        out.patch(4, b"1234");
        assert_eq!(sent(&mut out, &mut tx, &mut rx), b"aXYa1234ZWbb");
        // Without a frame, a Vec's behaviour.
        let mut v = b"0123".to_vec();
        MeshOut::patch(&mut v, 1, b"ab");
        assert_eq!(v, b"0ab3");
    }
}
