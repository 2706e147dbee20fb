//! The fields of a mesh record, written and read in order: [`Enc`] writes a record's
//! fixed-size fields or its text block, [`Dec`] reads them back. Below both the record codec
//! (`codec.rs`) and the coordination records (`coord.rs`), which each use them.

use super::*;

/// Bytes before a record's body: its length (`u32`, counting what follows it).
pub(super) const LEN_BYTES: usize = 4;
/// Bytes of the text block's length, the first field of a record's body.
pub(super) const TEXT_LEN_BYTES: usize = 4;
/// Bytes of the fields of one item of a list of named positions (`[position:u32]
/// [name_len:u32]`, the name in the text block): Register, Unregister, QueryPorts,
/// QueryNodes, HandoverTo and Move records.
pub(super) const NAMED_ITEM_BYTES: usize = 8;

/// Writes one pass of a record: its fixed-size fields (the strings' lengths among them), or
/// its text block (the strings' bytes, in the same order). [`Msg::encode`] runs the same
/// writer twice, so both passes see the fields in one order.
pub(super) struct Enc<'a, O: MeshOut + ?Sized> {
    pub(super) out: &'a mut O,
    pub(super) text: bool,
}

impl<O: MeshOut + ?Sized> Enc<'_, O> {
    pub(super) fn u8(&mut self, v: u8) {
        if !self.text {
            self.out.push(v);
        }
    }
    pub(super) fn u32(&mut self, v: u32) {
        if !self.text {
            self.out.extend_from_slice(&v.to_le_bytes());
        }
    }
    pub(super) fn u64(&mut self, v: u64) {
        if !self.text {
            self.out.extend_from_slice(&v.to_le_bytes());
        }
    }
    pub(super) fn str(&mut self, s: &str) {
        if self.text {
            self.out.extend_from_slice(s.as_bytes());
        } else {
            self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        }
    }
    pub(super) fn home_info(&mut self, i: &HomeInfo<'_>) {
        self.str(i.address);
        self.u64(i.ports);
        self.u64(i.lease_deadline);
        self.u64(i.queued_bytes);
    }
    pub(super) fn positions(&mut self, v: &[u32]) {
        if self.text {
            return;
        }
        self.u32(v.len() as u32);
        // A chunk of positions at a time: one write per 64, not one per position.
        let mut chunk = [0; 256];
        for part in v.chunks(chunk.len() / 4) {
            for (out, p) in chunk.chunks_exact_mut(4).zip(part) {
                out.copy_from_slice(&p.to_le_bytes());
            }
            self.out.extend_from_slice(&chunk[..part.len() * 4]);
        }
    }
    pub(super) fn named(&mut self, v: &[(u32, &str)]) {
        // The same fields as `u32(position)` and `str(name)` per item, written 8 bytes at a
        // time into room reserved once (a RegPort record holds 1,000 names).
        if self.text {
            for (_, s) in v {
                self.out.extend_from_slice(s.as_bytes());
            }
            return;
        }
        self.u32(v.len() as u32);
        self.out.reserve(v.len() * NAMED_ITEM_BYTES);
        // A chunk of items at a time: one write per 32, not one per item.
        let mut chunk = [0; 32 * NAMED_ITEM_BYTES];
        for part in v.chunks(chunk.len() / NAMED_ITEM_BYTES) {
            for (item, (p, s)) in chunk.chunks_exact_mut(NAMED_ITEM_BYTES).zip(part) {
                item[..4].copy_from_slice(&p.to_le_bytes());
                item[4..].copy_from_slice(&(s.len() as u32).to_le_bytes());
            }
            self.out
                .extend_from_slice(&chunk[..part.len() * NAMED_ITEM_BYTES]);
        }
    }
    pub(super) fn owner(&mut self, o: &OwnerInfo<'_>) {
        self.str(o.node);
        self.u64(o.session);
        self.str(o.address);
    }
    pub(super) fn node_ref(&mut self, r: &NodeRef) {
        if self.text {
            return;
        }
        self.out.extend_from_slice(&r.home.to_le_bytes());
        self.u32(r.idx);
        self.u64(r.session);
    }
    pub(super) fn watch_ref(&mut self, w: &WatchRef) {
        self.u32(w.node);
        self.u64(w.session);
        self.u64(w.id);
    }
    pub(super) fn event(&mut self, e: &Event<'_>) {
        let (what, reason) = e.what.codes();
        self.u8(what);
        self.u8(reason);
        self.str(e.key);
        self.str(e.owner);
        self.str(e.address);
        self.str(e.from);
    }
}

/// Reads a record's fields in order; a string's bytes come from the text block, validated
/// as UTF-8 once per record rather than once per string.
#[derive(Clone, Debug)]
pub(super) struct Dec<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) pos: usize,
    pub(super) text: &'a str,
    pub(super) text_pos: usize,
}

impl<'a> Dec<'a> {
    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], MeshError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(MeshError::Truncated(self.pos))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    pub(super) fn u8(&mut self) -> Result<u8, MeshError> {
        Ok(self.take(1)?[0])
    }
    pub(super) fn u32(&mut self) -> Result<u32, MeshError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(super) fn u64(&mut self) -> Result<u64, MeshError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    pub(super) fn str(&mut self) -> Result<&'a str, MeshError> {
        let n = self.u32()? as usize;
        let start = self.text_pos;
        let end = start
            .checked_add(n)
            .filter(|&e| e <= self.text.len())
            .ok_or(MeshError::Truncated(self.bytes.len() + start))?;
        // The text block is UTF-8 as a whole; a length that cuts a character is corrupt.
        let s = self.text.get(start..end).ok_or(MeshError::Utf8)?;
        self.text_pos = end;
        Ok(s)
    }
    pub(super) fn node_ref(&mut self) -> Result<NodeRef, MeshError> {
        let h = self.take(2)?;
        Ok(NodeRef {
            home: u16::from_le_bytes([h[0], h[1]]),
            idx: self.u32()?,
            session: self.u64()?,
        })
    }
    /// A count that cannot exceed the bytes left (each item takes at least one byte), so a
    /// corrupt count cannot make us reserve unbounded memory.
    pub(super) fn count(&mut self) -> Result<usize, MeshError> {
        let n = self.u32()? as usize;
        if n > self.bytes.len() - self.pos {
            return Err(MeshError::Truncated(self.pos));
        }
        Ok(n)
    }
    pub(super) fn home_info(&mut self) -> Result<HomeInfo<'a>, MeshError> {
        Ok(HomeInfo {
            address: self.str()?,
            ports: self.u64()?,
            lease_deadline: self.u64()?,
            queued_bytes: self.u64()?,
        })
    }
    pub(super) fn positions(&mut self) -> Result<Vec<u32>, MeshError> {
        let n = self.count()?;
        // The positions taken at once (one bounds check, not one per position), then read
        // into a vector of the right size (see `Dec::named`).
        let bytes = self.take(n.checked_mul(4).ok_or(MeshError::Truncated(self.pos))?)?;
        let mut v = Vec::with_capacity(n);
        v.extend(
            bytes
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
        Ok(v)
    }
    pub(super) fn named(&mut self) -> Result<Vec<(u32, &'a str)>, MeshError> {
        let n = self.count()?;
        // The items' fields taken at once, then read by a plain loop into a vector of the
        // right size: collecting `Result`s through an iterator cost ~20 instructions more per
        // name, reading field by field (`u32`, `str`) ~25 more (a RegPort record holds 1,000).
        let fields = self.take(
            n.checked_mul(NAMED_ITEM_BYTES)
                .ok_or(MeshError::Truncated(self.pos))?,
        )?;
        let text = self.text;
        let mut at = self.text_pos;
        let mut v = Vec::with_capacity(n);
        for item in fields.chunks_exact(NAMED_ITEM_BYTES) {
            let position = u32::from_le_bytes([item[0], item[1], item[2], item[3]]);
            let len = u32::from_le_bytes([item[4], item[5], item[6], item[7]]) as usize;
            let end = at
                .checked_add(len)
                .filter(|&e| e <= text.len())
                .ok_or(MeshError::Truncated(self.bytes.len() + at))?;
            // The text block is UTF-8 as a whole; a length that cuts a character is corrupt
            // (`at` is a boundary already: the previous name's end, or the block's start).
            let name = text.get(at..end).ok_or(MeshError::Utf8)?;
            v.push((position, name));
            at = end;
        }
        self.text_pos = at;
        Ok(v)
    }
    pub(super) fn watch_ref(&mut self) -> Result<WatchRef, MeshError> {
        Ok(WatchRef {
            node: self.u32()?,
            session: self.u64()?,
            id: self.u64()?,
        })
    }
    pub(super) fn kind(&mut self) -> Result<WatchKind, MeshError> {
        let code = self.u8()?;
        WatchKind::from_code(code).ok_or(MeshError::UnknownTag(code))
    }
    pub(super) fn event(&mut self) -> Result<Event<'a>, MeshError> {
        let (what, reason) = (self.u8()?, self.u8()?);
        let what = What::from_codes(what, reason).ok_or(MeshError::Reason(reason))?;
        Ok(Event {
            what,
            key: self.str()?,
            owner: self.str()?,
            address: self.str()?,
            from: self.str()?,
        })
    }
    pub(super) fn owner(&mut self) -> Result<OwnerInfo<'a>, MeshError> {
        Ok(OwnerInfo {
            node: self.str()?,
            session: self.u64()?,
            address: self.str()?,
        })
    }
}
