//! Reloading parts of the topology while the reaktor runs (SIGHUP, or a nukleus asking for it,
//! e.g. the switch's `POST /v1/admin/reload`): the topology file is read and checked again as
//! at start; if it is valid, every hook a kind registered when it built its nuklei gets the new
//! topology and takes what it can apply live (the switch: its tokens). Everything else in the
//! file takes effect at the next start.

use std::sync::{Arc, Mutex};

use crate::error::TopologyError;
use crate::topology::LoadedTopology;

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file cannot be read or is not a valid topology; the running one stays.
    #[error("the topology file was refused, nothing changed (fix it and reload again): {0}")]
    Invalid(#[from] TopologyError),
    /// A reload hook panicked earlier; the tokens may be half applied.
    #[error("an earlier reload failed part way; restart the reaktor to apply the topology")]
    Poisoned,
}

/// A kind's part of a reload: applies what it can of a newly loaded topology; a summary of
/// what it did, for the log and the caller.
pub type Hook = Box<dyn Fn(&LoadedTopology) -> String + Send + Sync>;

/// Reads the topology file again and checks it as at start.
pub type Loader = Box<dyn Fn() -> Result<LoadedTopology, TopologyError> + Send + Sync>;

/// The reload hooks of a running reaktor and how it loads its topology.
pub struct Reloads {
    load: Loader,
    hooks: Mutex<Vec<Hook>>,
    /// One reload at a time (SIGHUP and an admin request may come together).
    running: Mutex<()>,
}

impl std::fmt::Debug for Reloads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloads").finish_non_exhaustive()
    }
}

impl Reloads {
    /// Reloads what `load` loads.
    pub fn new(load: Loader) -> Arc<Reloads> {
        Arc::new(Reloads {
            load,
            hooks: Mutex::new(Vec::new()),
            running: Mutex::new(()),
        })
    }

    /// Adds a kind's hook.
    pub fn register(&self, hook: Hook) {
        if let Ok(mut hooks) = self.hooks.lock() {
            hooks.push(hook);
        }
    }

    /// Reads the topology file again and runs every hook with it; what the hooks did, or why
    /// the file was refused (then nothing changes).
    pub fn reload(&self) -> Result<Vec<String>, ReloadError> {
        let _one = self.running.lock().map_err(|_| ReloadError::Poisoned)?;
        let loaded = (self.load)()?;
        let hooks = self.hooks.lock().map_err(|_| ReloadError::Poisoned)?;
        Ok(hooks.iter().map(|hook| hook(&loaded)).collect())
    }
}
