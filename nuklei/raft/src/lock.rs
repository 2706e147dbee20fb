//! One process per state directory: two members started on the same directory would both
//! write `raft-state`, and one of them could then vote twice in a term. The directory's `lock`
//! file is held with an exclusive advisory lock (`flock`) for as long as the member runs; the
//! kernel releases it when the process ends, `kill -9` included, so a stale lock never blocks
//! a restart.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// The name of the lock file inside a state directory.
pub const LOCK_FILE: &str = "lock";

/// The held lock of a state directory; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
    path: PathBuf,
}

/// Why a state directory could not be locked.
#[derive(Debug, Error)]
pub enum LockError {
    #[error("the state directory {dir} is in use by another running member (its {LOCK_FILE} file is locked): give each member its own state_dir, or stop the other process first")]
    InUse { dir: PathBuf },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

impl StateLock {
    /// Creates `dir` if needed and takes its lock without waiting.
    pub fn acquire(dir: &Path) -> Result<StateLock, LockError> {
        std::fs::create_dir_all(dir).map_err(|source| LockError::Io {
            action: "create the state directory",
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| LockError::Io {
                action: "open",
                path: path.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(StateLock { _file: file, path }),
            Err(TryLockError::WouldBlock) => Err(LockError::InUse {
                dir: dir.to_owned(),
            }),
            Err(TryLockError::Error(source)) => Err(LockError::Io {
                action: "lock",
                path,
                source,
            }),
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("member-1");
        let first = StateLock::acquire(&state).expect("first lock");
        let err = StateLock::acquire(&state).expect_err("second lock refused");
        assert!(matches!(err, LockError::InUse { .. }), "{err}");
        assert!(err.to_string().contains("own state_dir"), "{err}");
        drop(first);
        StateLock::acquire(&state).expect("lock free again once dropped");
    }
}
