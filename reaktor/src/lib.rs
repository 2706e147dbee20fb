//! The reaktor: reads a topology, places nuklei on cores, connects them with shared-memory
//! streams, and runs each core's nuklei in one pinned thread.
//!
//! Layers, each using only those above it in this list: `error`, `stats` (no reaktor
//! imports); `cluster` (the `[cluster]` section); `streamdir` (stream directories, their
//! owners, removing dead ones); `topology` (the file); `reload` (applying a reloaded topology
//! while running); `kind` (what a kind declares);
//! `sizing` (stream buffers for the kinds' needs); `kinds` (one file per kind, and the
//! registry); `plan` (instances and links); `planner` (the cost model); `place` (the
//! placement step); `runtime` (wiring, core duty cycle, idle strategy); `dump`, `top`,
//! `replan`, `cluster_cli` (operator tools).

pub mod cluster;
pub mod cluster_cli;
pub mod console;
pub mod dump;
pub mod error;
pub mod fuzzing;
pub mod kind;
pub mod kinds;
pub mod logging;
pub mod place;
pub mod plan;
pub mod planner;
pub mod reload;
pub mod replan;
pub mod runtime;
pub mod sizing;
pub mod stats;
pub mod streamdir;
pub mod top;
pub mod topology;
