//! The election core of the port switch's high availability (DESIGN.md §6.1).
//!
//! A quorum of switch members elects a master with TiKV's raft-rs (`RawNode`: tick, step,
//! ready), driven here without I/O: [`Election`] takes instants and peer bytes, and gives back
//! frames for peers ([`Outgoing`]) and [`Event`]s. Raft carries only leadership (the log holds
//! the empty entries of elected leaders; the membership comes from the configuration and is
//! checked against the state directory); the port table never goes through it.
//!
//! - **Durable vote**: term, vote and commit (with the few log entries) are saved and fsync'd
//!   on every change before the messages that depend on them leave ([`FileState`]), so a
//!   restarted member never votes twice in a term.
//! - **PreVote and CheckQuorum** are on: a partitioned member cannot disrupt a healthy
//!   cluster, and a leader without a quorum steps down.
//! - **Lease**: the leader serves only while a quorum acknowledged, within the lease, a
//!   heartbeat it sent; the lease is shorter than the time any acknowledging member refuses
//!   other candidates, so an old master has stopped before a new one can be elected. Clock
//!   assumption: monotonic clocks whose rates differ from real time by at most
//!   `max_clock_drift_ppm` (no synchronised wall clocks needed). See [`election`].
//! - **Epoch**: the term in which the master was elected; a master that loses its lease steps
//!   down, so an epoch never has two masterships and `(epoch, sequence)` fencing tokens never
//!   repeat.
//!
//! [`RaftNukleus`] runs a member in the reaktor: its peer sockets ([`net`]), the state
//! directory's lock ([`lock`]), and the standing it publishes for the switch
//! ([`streams::Mastership`]). ARCHITECTURE.md, "Port switch HA", says how it is wired.

pub mod config;
pub mod durable;
pub mod election;
pub mod lock;
mod log_bridge;
mod log_store;
pub mod net;
pub mod nukleus;
pub mod validate;
pub mod wire;

/// raft-rs's message types (what [`Frame::Raft`] carries).
pub use raft::eraftpb;

pub use config::{ConfigError, ElectionConfig, MemberId, Timing};
pub use durable::{Durable, FileState, MemoryState, PersistentState, StateError};
pub use election::{
    Election, ElectionError, Event, Lease, LeaseEnd, OpenError, Outgoing, Role, Stats, Status,
};
pub use lock::{LockError, StateLock};
pub use net::NetConfig;
pub use nukleus::{RaftNukleus, RaftNukleusConfig, RaftStartError};
pub use validate::MessageError;
pub use wire::{Frame, FrameReader, WireError};
