//! What a member keeps across restarts: its HardState (term, vote, commit), the membership,
//! and the few log entries raft needs (one empty entry per elected leader; compacted behind a
//! snapshot mark). Everything is rewritten as one small file whenever the term, the vote or
//! the log changes (a commit index that moved alone is written with the next such save: it
//! is volatile in Raft):
//! write `raft-state.tmp`, fsync it, rename it over `raft-state`, fsync the directory. A crash
//! at any point leaves either the old or the new state, never a mix, so a member that voted in
//! a term still knows it after `kill -9` and never votes twice in that term.
//!
//! File layout (big-endian), version 1:
//! ```text
//! magic "RKTRAFT\0"  version:u8  member:u64
//! term:u64  vote:u64  commit:u64
//! voters:u32  voter:u64 * voters
//! snapshot_index:u64  snapshot_term:u64
//! entries:u32  (index:u64 term:u64 type:u8 data_len:u32 data context_len:u32 context) * entries
//! crc32:u32   (IEEE, over every byte before it)
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use raft::eraftpb::{Entry, EntryType, HardState};
use thiserror::Error;

use crate::config::MemberId;

const MAGIC: &[u8; 8] = b"RKTRAFT\0";
const FORMAT: u8 = 1;
const FILE: &str = "raft-state";
const TEMP: &str = "raft-state.tmp";
/// More entries than this in a file is corruption: the log is compacted long before.
const MAX_ENTRIES: u32 = 1 << 16;

/// The durable state of one member.
#[derive(Clone, Debug, PartialEq)]
pub struct PersistentState {
    pub member: MemberId,
    pub hard_state: HardState,
    pub voters: Vec<MemberId>,
    /// The log is empty up to and including this index (compacted or never written).
    pub snapshot_index: u64,
    pub snapshot_term: u64,
    pub entries: Vec<Entry>,
}

/// Where a member keeps its [`PersistentState`].
pub trait Durable: Send {
    /// The state saved last, `None` for a member that never saved one.
    fn load(&mut self) -> Result<Option<PersistentState>, StateError>;
    /// Saves the state; it must be durable (fsync'd) when this returns `Ok`.
    fn save(&mut self, state: &PersistentState) -> Result<(), StateError>;
}

/// The state could not be read or written. A member with such an error stops taking part in
/// elections: voting without a durable vote could elect two leaders in one term.
#[derive(Debug, Error)]
pub enum StateError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{path} is not a raft state file of this version ({reason}); restore it from a backup or, if this member's vote may be forgotten safely (the cluster is down), remove it")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path} belongs to member {found}, this member is {expected}: each member needs its own state directory")]
    WrongMember {
        path: PathBuf,
        expected: MemberId,
        found: MemberId,
    },
}

/// The state file in a member's state directory.
#[derive(Debug)]
pub struct FileState {
    dir: PathBuf,
}

impl FileState {
    /// Uses (and creates if needed) `dir` as this member's state directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StateError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| StateError::Io {
            action: "create state directory",
            path: dir.clone(),
            source,
        })?;
        Ok(FileState { dir })
    }

    /// The path of the state file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }
}

impl Durable for FileState {
    fn load(&mut self) -> Result<Option<PersistentState>, StateError> {
        let path = self.path();
        match fs::read(&path) {
            Ok(bytes) => decode(&bytes)
                .map(Some)
                .map_err(|reason| StateError::Corrupt { path, reason }),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Io {
                action: "read",
                path,
                source,
            }),
        }
    }

    fn save(&mut self, state: &PersistentState) -> Result<(), StateError> {
        let temp = self.dir.join(TEMP);
        fn io<'a>(
            action: &'static str,
            path: &'a Path,
        ) -> impl FnOnce(io::Error) -> StateError + 'a {
            move |source| StateError::Io {
                action,
                path: path.to_path_buf(),
                source,
            }
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)
            .map_err(io("create", &temp))?;
        file.write_all(&encode(state)).map_err(io("write", &temp))?;
        file.sync_all().map_err(io("fsync", &temp))?;
        drop(file);
        let path = self.path();
        fs::rename(&temp, &path).map_err(io("rename over", &path))?;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io("fsync directory", &self.dir))?;
        Ok(())
    }
}

/// State kept in memory only, encoded exactly as in a file: for simulations and tests, where a
/// "restart" hands the same `MemoryState` (a shared handle) to the new member.
#[derive(Clone, Debug, Default)]
pub struct MemoryState {
    saved: Arc<Mutex<Option<Vec<u8>>>>,
}

impl MemoryState {
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes saved last (a state file's content).
    pub fn bytes(&self) -> Option<Vec<u8>> {
        self.saved
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl Durable for MemoryState {
    fn load(&mut self) -> Result<Option<PersistentState>, StateError> {
        match self.bytes() {
            None => Ok(None),
            Some(bytes) => decode(&bytes)
                .map(Some)
                .map_err(|reason| StateError::Corrupt {
                    path: PathBuf::from("<memory>"),
                    reason,
                }),
        }
    }

    fn save(&mut self, state: &PersistentState) -> Result<(), StateError> {
        *self
            .saved
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(encode(state));
        Ok(())
    }
}

/// Encodes a state as the file's bytes.
pub fn encode(state: &PersistentState) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + state.entries.len() * 32);
    out.extend_from_slice(MAGIC);
    out.push(FORMAT);
    out.extend_from_slice(&state.member.to_be_bytes());
    for value in [
        state.hard_state.term,
        state.hard_state.vote,
        state.hard_state.commit,
    ] {
        out.extend_from_slice(&value.to_be_bytes());
    }
    out.extend_from_slice(&(state.voters.len() as u32).to_be_bytes());
    for voter in &state.voters {
        out.extend_from_slice(&voter.to_be_bytes());
    }
    out.extend_from_slice(&state.snapshot_index.to_be_bytes());
    out.extend_from_slice(&state.snapshot_term.to_be_bytes());
    out.extend_from_slice(&(state.entries.len() as u32).to_be_bytes());
    for entry in &state.entries {
        out.extend_from_slice(&entry.index.to_be_bytes());
        out.extend_from_slice(&entry.term.to_be_bytes());
        out.push(entry.get_entry_type() as u8);
        for bytes in [&entry.data[..], &entry.context[..]] {
            out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            out.extend_from_slice(bytes);
        }
    }
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// Decodes a state file's bytes; every defect is a reason, never a panic.
pub fn decode(bytes: &[u8]) -> Result<PersistentState, String> {
    let Some((body, crc)) = bytes.split_last_chunk::<4>() else {
        return Err(format!("{} bytes is too short", bytes.len()));
    };
    if !body.starts_with(MAGIC) {
        return Err("the magic bytes are missing".into());
    }
    if crc32(body) != u32::from_be_bytes(*crc) {
        return Err("the checksum does not match (a torn or damaged file)".into());
    }
    let mut cursor = Cursor {
        bytes: &body[MAGIC.len()..],
    };
    let format = cursor.u8()?;
    if format != FORMAT {
        return Err(format!(
            "format version {format}, this build reads {FORMAT}"
        ));
    }
    let member = cursor.u64()?;
    let hard_state = HardState {
        term: cursor.u64()?,
        vote: cursor.u64()?,
        commit: cursor.u64()?,
        ..HardState::default()
    };
    let voter_count = cursor.u32()?;
    if voter_count as usize > cursor.bytes.len() / 8 {
        return Err(format!("{voter_count} voters do not fit in the file"));
    }
    let voters = (0..voter_count)
        .map(|_| cursor.u64())
        .collect::<Result<Vec<_>, _>>()?;
    let snapshot_index = cursor.u64()?;
    let snapshot_term = cursor.u64()?;
    let entry_count = cursor.u32()?;
    if entry_count > MAX_ENTRIES {
        return Err(format!(
            "{entry_count} log entries, more than the {MAX_ENTRIES} a compacted log can hold"
        ));
    }
    let mut entries = Vec::with_capacity(entry_count.min(1024) as usize);
    for _ in 0..entry_count {
        let mut entry = Entry {
            index: cursor.u64()?,
            term: cursor.u64()?,
            ..Entry::default()
        };
        let kind = cursor.u8()?;
        entry.set_entry_type(match kind {
            0 => EntryType::EntryNormal,
            1 => EntryType::EntryConfChange,
            2 => EntryType::EntryConfChangeV2,
            other => return Err(format!("unknown entry type {other}")),
        });
        entry.data = cursor.bytes()?.to_vec().into();
        entry.context = cursor.bytes()?.to_vec().into();
        entries.push(entry);
    }
    if !cursor.bytes.is_empty() {
        return Err(format!("{} bytes after the last entry", cursor.bytes.len()));
    }
    let contiguous = entries
        .iter()
        .enumerate()
        .all(|(i, e)| e.index == snapshot_index + 1 + i as u64);
    if !contiguous {
        return Err("the log entries do not follow the snapshot mark one by one".into());
    }
    Ok(PersistentState {
        member,
        hard_state,
        voters,
        snapshot_index,
        snapshot_term,
        entries,
    })
}

struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let Some((head, rest)) = self.bytes.split_first_chunk::<N>() else {
            return Err("the file ends in the middle of a field".into());
        };
        self.bytes = rest;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        self.take::<1>().map(|[b]| b)
    }

    fn u32(&mut self) -> Result<u32, String> {
        self.take().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, String> {
        self.take().map(u64::from_be_bytes)
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = self.u32()? as usize;
        if len > self.bytes.len() {
            return Err(format!(
                "a field of {len} bytes runs past the end of the file"
            ));
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }
}

/// CRC-32 (IEEE 802.3, reflected), table computed at compile time.
fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut crc = i as u32;
            let mut bit = 0;
            while bit < 8 {
                crc = if crc & 1 != 0 {
                    0xEDB8_8320 ^ (crc >> 1)
                } else {
                    crc >> 1
                };
                bit += 1;
            }
            table[i] = crc;
            i += 1;
        }
        table
    };
    !bytes.iter().fold(!0u32, |crc, &b| {
        TABLE[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> PersistentState {
        let hard_state = HardState {
            term: 7,
            vote: 2,
            commit: 5,
            ..HardState::default()
        };
        let entries = (5..=6)
            .map(|index| Entry {
                index,
                term: index + 1,
                ..Entry::default()
            })
            .collect();
        PersistentState {
            member: 3,
            hard_state,
            voters: vec![1, 2, 3],
            snapshot_index: 4,
            snapshot_term: 4,
            entries,
        }
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn a_state_survives_a_file_round_trip_and_the_temp_file_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = FileState::open(dir.path().join("member-3")).unwrap();
        assert_eq!(file.load().unwrap(), None);
        file.save(&sample()).unwrap();
        let mut again = FileState::open(dir.path().join("member-3")).unwrap();
        assert_eq!(again.load().unwrap(), Some(sample()));
        assert!(!dir.path().join("member-3").join(TEMP).exists());
    }

    #[test]
    fn a_damaged_file_is_refused_with_its_path_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = FileState::open(dir.path()).unwrap();
        file.save(&sample()).unwrap();
        let mut bytes = fs::read(file.path()).unwrap();
        bytes[20] ^= 1;
        fs::write(file.path(), &bytes).unwrap();
        let err = file.load().unwrap_err();
        assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
        let message = err.to_string();
        assert!(
            message.contains("checksum") && message.contains("raft-state"),
            "{message}"
        );
    }

    #[test]
    fn every_truncation_of_a_valid_file_is_an_error() {
        let bytes = encode(&sample());
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err(), "truncated to {len} bytes");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_after_the_magic_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut bytes = MAGIC.to_vec();
            bytes.extend(&tail);
            let _ = decode(&bytes);
            // With a valid checksum the parser itself is reached.
            let crc = crc32(&bytes);
            bytes.extend(crc.to_be_bytes());
            let _ = decode(&bytes);
        }
    }
}
