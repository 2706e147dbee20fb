//! The mesh's I/O: records from the other switch instances in, outboxes out (one ring pair
//! per pair of instances; see `crate::mesh`).

use super::*;

impl SwitchNukleus {
    /// A frame on the mesh from switch instance `peer`: its DATA carries mesh records.
    pub(super) fn on_mesh_frame(&mut self, peer: usize, type_id: u32, bytes: &[u8]) {
        let f = match Frame::new(type_id, bytes) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(core = self.core, error = %e, "malformed mesh frame");
                return;
            }
        };
        if f.type_id() != frame::DATA {
            return;
        }
        let Some(mesh) = &mut self.mesh else {
            return;
        };
        let engine = &mut self.engine;
        let core = self.core;
        mesh.readers[peer].feed(f.payload(), |record| match Msg::decode(record) {
            Ok(msg) => engine.handle_mesh(peer, msg),
            Err(e) => tracing::error!(core, peer, error = %e, "undecodable mesh record"),
        });
    }

    /// Writes the mesh outboxes into the rings to the other instances, as much as fits.
    pub(super) fn flush_mesh(&mut self) {
        let Some(mesh) = &self.mesh else {
            return;
        };
        for (peer, output) in mesh.output_of.iter().enumerate() {
            let Some(output) = *output else { continue };
            let tx = &mut self.outputs[output].tx;
            let room = tx.max_payload() - 64;
            let Some(outbox) = self.engine.poll_transmit(peer) else {
                continue;
            };
            let mut sent = 0;
            while sent < outbox.len() {
                let n = (outbox.len() - sent).min(room);
                let h = header(MESH_STREAM, self.timestamp);
                if tx.data(&h, 0, 0, &[], &outbox[sent..sent + n]).is_err() {
                    break;
                }
                sent += n;
            }
            outbox.drain(..sent);
        }
    }
}
