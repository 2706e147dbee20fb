//! raft-rs logs through slog; this drain hands every record to `tracing` (target `raft`), with
//! its key-value pairs appended to the message, so the reaktor's one log filter covers it.

use std::fmt::{self, Write as _};

use slog::{Drain, Key, Level, OwnedKVList, Record, Serializer, KV};

/// A slog drain that forwards to tracing, tagging each record with the member id.
pub struct TracingDrain {
    pub member: u64,
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        let enabled = match record.level() {
            Level::Critical | Level::Error => {
                tracing::enabled!(target: "raft", tracing::Level::ERROR)
            }
            Level::Warning => tracing::enabled!(target: "raft", tracing::Level::WARN),
            Level::Info => tracing::enabled!(target: "raft", tracing::Level::INFO),
            Level::Debug => tracing::enabled!(target: "raft", tracing::Level::DEBUG),
            Level::Trace => tracing::enabled!(target: "raft", tracing::Level::TRACE),
        };
        if !enabled {
            return Ok(());
        }
        let mut pairs = Pairs(String::new());
        // Formatting into a String cannot fail.
        let _ = record.kv().serialize(record, &mut pairs);
        let _ = values.serialize(record, &mut pairs);
        let (member, message, pairs) = (self.member, record.msg(), pairs.0);
        match record.level() {
            Level::Critical | Level::Error => {
                tracing::error!(target: "raft", member, "{message}{pairs}")
            }
            Level::Warning => tracing::warn!(target: "raft", member, "{message}{pairs}"),
            Level::Info => tracing::info!(target: "raft", member, "{message}{pairs}"),
            Level::Debug => tracing::debug!(target: "raft", member, "{message}{pairs}"),
            Level::Trace => tracing::trace!(target: "raft", member, "{message}{pairs}"),
        }
        Ok(())
    }
}

struct Pairs(String);

impl Serializer for Pairs {
    fn emit_arguments(&mut self, key: Key, value: &fmt::Arguments) -> slog::Result {
        let _ = write!(self.0, " {key}={value}");
        Ok(())
    }
}

/// The root logger a member hands to raft-rs.
pub fn logger(member: u64) -> slog::Logger {
    slog::Logger::root(TracingDrain { member }, slog::o!())
}
