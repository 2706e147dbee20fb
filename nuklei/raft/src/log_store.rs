//! The raft log as raft-rs sees it (`raft::Storage`), kept in memory and mirrored to a
//! [`crate::durable::Durable`] by the election core whenever it changes.
//!
//! The log carries nothing but leadership: every entry is the empty entry a new leader
//! appends. It is compacted behind a snapshot mark (index, term) once it holds more than
//! [`KEEP_ENTRIES`]; a follower that lags behind the mark gets a snapshot, which is only that
//! mark and the membership.

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};

use crate::config::MemberId;
use crate::durable::PersistentState;

/// Entries kept behind the commit index before compacting; a follower that is further behind
/// gets a snapshot.
pub const KEEP_ENTRIES: usize = 64;

#[derive(Debug, Clone)]
pub struct LogStore {
    hard_state: HardState,
    conf_state: ConfState,
    snapshot_index: u64,
    snapshot_term: u64,
    /// `entries[i].index == snapshot_index + 1 + i`.
    entries: Vec<Entry>,
}

impl LogStore {
    /// A member that has never run: term 0, no vote, an empty log, the given voters.
    pub fn new(voters: &[MemberId]) -> Self {
        LogStore {
            hard_state: HardState::default(),
            conf_state: ConfState::from((voters.to_vec(), vec![])),
            snapshot_index: 0,
            snapshot_term: 0,
            entries: Vec::new(),
        }
    }

    pub fn from_persistent(state: PersistentState) -> Self {
        LogStore {
            hard_state: state.hard_state,
            conf_state: ConfState::from((state.voters, vec![])),
            snapshot_index: state.snapshot_index,
            snapshot_term: state.snapshot_term,
            entries: state.entries,
        }
    }

    pub fn to_persistent(&self, member: MemberId) -> PersistentState {
        PersistentState {
            member,
            hard_state: self.hard_state.clone(),
            voters: self.conf_state.voters.clone(),
            snapshot_index: self.snapshot_index,
            snapshot_term: self.snapshot_term,
            entries: self.entries.clone(),
        }
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn set_hard_state(&mut self, hard_state: HardState) {
        self.hard_state = hard_state;
    }

    pub fn set_commit(&mut self, commit: u64) {
        self.hard_state.commit = commit;
    }

    fn first(&self) -> u64 {
        self.snapshot_index + 1
    }

    fn last(&self) -> u64 {
        self.snapshot_index + self.entries.len() as u64
    }

    /// Appends entries raft handed over in a Ready, replacing any conflicting suffix.
    pub fn append(&mut self, entries: &[Entry]) -> Result<(), String> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if first.index < self.first() {
            return Err(format!(
                "append at {} overwrites the compacted log (first index {})",
                first.index,
                self.first()
            ));
        }
        if first.index > self.last() + 1 {
            return Err(format!(
                "append at {} leaves a gap after the last index {}",
                first.index,
                self.last()
            ));
        }
        self.entries.truncate((first.index - self.first()) as usize);
        self.entries.extend_from_slice(entries);
        Ok(())
    }

    /// Replaces the log with a snapshot's mark (raft has checked that it is newer).
    pub fn apply_snapshot(&mut self, metadata: &SnapshotMetadata) {
        self.snapshot_index = metadata.index;
        self.snapshot_term = metadata.term;
        self.entries.clear();
        self.hard_state.term = self.hard_state.term.max(metadata.term);
        self.hard_state.commit = metadata.index;
        self.conf_state = metadata.get_conf_state().clone();
    }

    /// Drops entries up to `applied` once more than [`KEEP_ENTRIES`] are held. Returns whether
    /// the log changed (and so must be saved).
    pub fn compact(&mut self, applied: u64) -> bool {
        if self.entries.len() <= KEEP_ENTRIES || applied < self.first() || applied > self.last() {
            return false;
        }
        let drop = (applied - self.snapshot_index) as usize;
        self.snapshot_term = self.entries[drop - 1].term;
        self.snapshot_index = applied;
        self.entries.drain(..drop);
        true
    }

    fn term_of(&self, index: u64) -> raft::Result<u64> {
        if index == self.snapshot_index {
            return Ok(self.snapshot_term);
        }
        if index < self.snapshot_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        match self.entries.get((index - self.first()) as usize) {
            Some(entry) => Ok(entry.term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }
}

impl raft::Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState {
            hard_state: self.hard_state.clone(),
            conf_state: self.conf_state.clone(),
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let from = (low - self.first()) as usize;
        let to = (high - self.first()) as usize;
        let mut entries = self.entries[from..to].to_vec();
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        self.term_of(index)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // The state machine is empty: a snapshot is the commit mark and the membership.
        let index = self.hard_state.commit.max(self.snapshot_index);
        let mut snapshot = Snapshot::default();
        let metadata = snapshot.mut_metadata();
        metadata.index = index;
        metadata.term = self.term_of(index)?;
        metadata.set_conf_state(self.conf_state.clone());
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage as _;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Entry::default()
        }
    }

    #[test]
    fn append_replaces_a_conflicting_suffix_and_refuses_gaps() {
        let mut log = LogStore::new(&[1, 2, 3]);
        log.append(&[entry(1, 1), entry(2, 1), entry(3, 1)])
            .unwrap();
        log.append(&[entry(2, 2)]).unwrap();
        assert_eq!(log.last_index().unwrap(), 2);
        assert_eq!(log.term(2).unwrap(), 2);
        assert!(log.append(&[entry(5, 2)]).is_err());
    }

    #[test]
    fn compaction_keeps_the_mark_and_snapshots_at_the_commit() {
        let mut log = LogStore::new(&[1, 2, 3]);
        let entries: Vec<Entry> = (1..=KEEP_ENTRIES as u64 + 10)
            .map(|i| entry(i, i))
            .collect();
        log.append(&entries).unwrap();
        log.set_commit(50);
        assert!(log.compact(50));
        assert_eq!(log.first_index().unwrap(), 51);
        assert_eq!(log.term(50).unwrap(), 50);
        assert!(matches!(
            log.term(49),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert!(log
            .entries(10, 20, None, GetEntriesContext::empty(false))
            .is_err());
        let snapshot = log.snapshot(0, 2).unwrap();
        assert_eq!(
            (snapshot.get_metadata().index, snapshot.get_metadata().term),
            (50, 50)
        );
        assert_eq!(
            snapshot.get_metadata().get_conf_state().voters,
            vec![1, 2, 3]
        );
        let restored = LogStore::from_persistent(log.to_persistent(1));
        assert_eq!(restored.term(50).unwrap(), 50);
        assert_eq!(restored.last_index().unwrap(), KEEP_ENTRIES as u64 + 10);
    }
}
