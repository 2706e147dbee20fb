//! Shared-memory streams between nuklei: ring buffers over memory-mapped files, frame
//! layouts with flyweight readers, flow-control state, and the `Nukleus` contract.
//!
//! All `unsafe` code of reaktor lives in this crate, in `ring`, `mapping`, `memory`, `sched`
//! and `uring`.

pub mod copy;
pub mod flow;
pub mod frame;
pub mod key;
pub mod layout;
pub mod mapping;
pub mod mastership;
pub mod memory;
pub mod nukleus;
pub mod plumbing;
pub mod remote;
pub mod ring;
pub mod role;
pub mod sched;
pub mod slots;
pub mod uring;

pub use flow::{FlowViolation, RecvWindow, SendWindow};
pub use frame::{Frame, FrameError, Header};
pub use key::{key_hash, key_index, path_key};
pub use mapping::{available_space, MapError, SharedMapping, SpyMapping, StreamFileHeader};
pub use mastership::{MasterLease, Mastership, MemberRole, Standing};
pub use nukleus::{
    pick_keyed, pick_peer, split_links, Doorbell, Link, Nukleus, Output, PeerLink, PeerStreams,
    PollContext, SlotIds, TokenRange,
};
pub use plumbing::{DirtySet, Route};
pub use remote::Remote;
pub use ring::{
    ring, ClaimError, LentFrame, RingReader, RingSpy, RingStats, RingWatch, RingWriter, SpyRecord,
};
pub use role::{Carries, PeerRole, Side};
pub use slots::Slots;
