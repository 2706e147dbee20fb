//! The reaktor: reads a topology, places nuklei on cores, connects them with shared-memory
//! streams, and runs each core's nuklei in one pinned thread.

pub mod dump;
pub mod kinds;
pub mod metrics;
pub mod plan;
pub mod planner;
pub mod replan;
pub mod runtime;
pub mod top;
pub mod topology;
