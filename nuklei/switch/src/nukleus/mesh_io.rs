//! The mesh's I/O: records from the other switch instances in, outboxes out (one ring pair
//! per pair of instances; see `crate::mesh`). The work per peer ring is in the free functions
//! [`lend_mesh_frame`], [`flush_mesh_to`] and [`read_mesh_frame`], which the nukleus runs on
//! every poll and `examples/fission_cost.rs` runs on its own rings, so that it counts what
//! the nukleus does.

use super::*;
use streams::RingWriter;

/// Lends `engine` a DATA frame of `tx`, the ring to instance `peer`, as large as fits now (up
/// to a record's maximum), so that it writes its mesh records where the peer reads them
/// instead of into an outbox copied into the ring afterwards; nothing if it holds one still
/// (untouched in the polls before), if the ring has less than [`MESH_FRAME_MIN`] bytes of room
/// or the engine takes none (records wait in its overflow). [`flush_mesh_to`] gives the frame
/// back once something was written into it: before `tx` is published.
pub fn lend_mesh_frame(
    engine: &mut dyn SwitchEngine,
    peer: usize,
    tx: &mut RingWriter,
    timestamp: u64,
) {
    if engine.holds_frame(peer) {
        return;
    }
    let h = header(MESH_STREAM, timestamp);
    let Ok(frame) = tx.lend_data(&h, MESH_FRAME_MIN, usize::MAX) else {
        return;
    };
    if let Err(frame) = engine.lend_frame(peer, frame) {
        tx.give_back(frame, 0);
    }
}

/// Gives the frame lent for `peer` back to `tx`, trimmed to the records written into it (an
/// untouched one stays lent for the next polls: lending and dropping it every poll would cost
/// more than the records it carries), then writes what overflowed after it into `tx` as DATA
/// frames, as much as fits (the rest stays, in order, for the next poll).
pub fn flush_mesh_to(
    engine: &mut dyn SwitchEngine,
    peer: usize,
    tx: &mut RingWriter,
    timestamp: u64,
) {
    if let Some((frame, used)) = engine.take_frame(peer, true) {
        tx.give_back(frame, used);
    }
    let room = tx.max_payload() - 64;
    let Some(outbox) = engine.poll_transmit(peer) else {
        return;
    };
    let mut sent = 0;
    while sent < outbox.len() {
        let n = (outbox.len() - sent).min(room);
        let h = header(MESH_STREAM, timestamp);
        if tx.data(&h, 0, 0, &[], &outbox[sent..sent + n]).is_err() {
            break;
        }
        sent += n;
    }
    outbox.drain(..sent);
}

/// A frame from switch instance `peer` (read from its ring): its DATA carries mesh records,
/// reassembled by `reader` and handed to `engine` one by one.
pub fn read_mesh_frame(
    engine: &mut dyn SwitchEngine,
    reader: &mut MeshReader,
    peer: usize,
    type_id: u32,
    bytes: &[u8],
) {
    let f = match Frame::new(type_id, bytes) {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(peer, error = %e, "malformed mesh frame");
            return;
        }
    };
    if f.type_id() != frame::DATA {
        return;
    }
    reader.feed(f.payload(), |record| match Msg::decode(record) {
        Ok(msg) => engine.handle_mesh(peer, msg),
        Err(e) => tracing::error!(peer, error = %e, "undecodable mesh record"),
    });
}

impl SwitchNukleus {
    /// A frame on the mesh from switch instance `peer`.
    pub(super) fn on_mesh_frame(&mut self, peer: usize, type_id: u32, bytes: &[u8]) {
        let Some(mesh) = &mut self.mesh else {
            return;
        };
        read_mesh_frame(
            self.engine.as_mut(),
            &mut mesh.readers[peer],
            peer,
            type_id,
            bytes,
        );
    }

    /// Lends the engine a frame of each ring to another instance for the poll
    /// ([`lend_mesh_frame`]).
    pub(super) fn lend_mesh_frames(&mut self) {
        let timestamp = self.timestamp;
        self.each_peer_ring(|engine, peer, tx| lend_mesh_frame(engine, peer, tx, timestamp));
    }

    /// Gives every lent frame back, written into or not (before the engine that holds them
    /// is replaced).
    pub(super) fn return_mesh_frames(&mut self) {
        self.each_peer_ring(|engine, peer, tx| {
            if let Some((frame, used)) = engine.take_frame(peer, false) {
                tx.give_back(frame, used);
            }
        });
    }

    /// Gives the lent frames back and writes the outboxes' overflow into the rings to the
    /// other instances ([`flush_mesh_to`]).
    pub(super) fn flush_mesh(&mut self) {
        let timestamp = self.timestamp;
        self.each_peer_ring(|engine, peer, tx| flush_mesh_to(engine, peer, tx, timestamp));
    }

    /// Runs `f` on the engine with each other instance's index and the ring to it.
    fn each_peer_ring(&mut self, mut f: impl FnMut(&mut dyn SwitchEngine, usize, &mut RingWriter)) {
        let Some(mesh) = &self.mesh else {
            return;
        };
        for (peer, output) in mesh.output_of.iter().enumerate() {
            if let Some(output) = *output {
                f(self.engine.as_mut(), peer, &mut self.outputs[output].tx);
            }
        }
    }
}
