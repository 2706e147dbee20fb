//! What a raft message from a peer must be before raft-rs sees it.
//!
//! raft-rs trusts its transport: a message with a commit index beyond the log, an append with
//! holes, a conf change or a leader-transfer order reaches `fatal!` (a panic) or bypasses the
//! vote guard the lease relies on. The peer traffic is cluster-internal, but bytes from the
//! network are still refused here with a reason rather than trusted. Only the message types
//! an election needs between members pass; entries must be the empty entries leaders append.

use raft::eraftpb::{Message, MessageType};
use thiserror::Error;

use crate::config::MemberId;

/// Why a well-formed frame's raft message was refused.
#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum MessageError {
    #[error(
        "message claims to come from member {claimed} but arrived on the link of member {link}"
    )]
    SenderMismatch { claimed: MemberId, link: MemberId },
    #[error("message is addressed to member {to}, not to this member ({me})")]
    NotForUs { to: MemberId, me: MemberId },
    #[error("member {0} is not a member of this cluster")]
    UnknownMember(MemberId),
    #[error("message type {0:?} is not exchanged between members of this cluster")]
    Forbidden(MessageType),
    #[error("message of type {0:?} carries term 0, which raft reserves for local messages")]
    ZeroTerm(MessageType),
    #[error("vote request forces a leadership transfer, which would bypass the leader's lease")]
    CampaignTransfer,
    #[error("inconsistent {kind:?}: {reason}")]
    Inconsistent { kind: MessageType, reason: String },
}

/// What the receiver knows that the checks need.
pub struct View<'a> {
    pub me: MemberId,
    pub term: u64,
    /// The leader this member follows in `term` (0: none known).
    pub leader: MemberId,
    pub members: &'a [MemberId],
    pub last_index: u64,
    pub max_entries: usize,
}

/// Checks one message that arrived on the link of member `link`.
pub fn check(message: &Message, link: MemberId, view: &View) -> Result<(), MessageError> {
    let kind = message.get_msg_type();
    if message.from != link {
        return Err(MessageError::SenderMismatch {
            claimed: message.from,
            link,
        });
    }
    if link == view.me || !view.members.contains(&link) {
        return Err(MessageError::UnknownMember(link));
    }
    if message.to != view.me {
        return Err(MessageError::NotForUs {
            to: message.to,
            me: view.me,
        });
    }
    use MessageType::*;
    match kind {
        MsgAppend
        | MsgAppendResponse
        | MsgRequestVote
        | MsgRequestVoteResponse
        | MsgSnapshot
        | MsgHeartbeat
        | MsgHeartbeatResponse
        | MsgRequestPreVote
        | MsgRequestPreVoteResponse => {}
        // Local messages, proposals, reads (the lease is computed locally from heartbeats),
        // conf changes and leader transfers never travel between members here.
        _ => return Err(MessageError::Forbidden(kind)),
    }
    if message.term == 0 {
        return Err(MessageError::ZeroTerm(kind));
    }
    let inconsistent = |reason: String| Err(MessageError::Inconsistent { kind, reason });
    // One leader per term: leader traffic of this member's term from anyone but its leader
    // is a second leader, which raft-rs would simply follow.
    if matches!(kind, MsgAppend | MsgHeartbeat | MsgSnapshot)
        && message.term == view.term
        && view.leader != 0
        && view.leader != link
    {
        return inconsistent(format!(
            "member {link} leads term {}, which member {} leads",
            message.term, view.leader
        ));
    }
    match kind {
        MsgRequestVote | MsgRequestPreVote
            if message.context.as_ref() == raft::CAMPAIGN_TRANSFER =>
        {
            return Err(MessageError::CampaignTransfer);
        }
        MsgAppend => {
            if message.entries.len() > view.max_entries {
                return inconsistent(format!(
                    "{} entries in one append, at most {}",
                    message.entries.len(),
                    view.max_entries
                ));
            }
            // raft-rs reads the term of an index beyond its log as 0, so a previous entry "of
            // term 0" past the end would match and commit entries this member does not have.
            // Real entries have terms from 1 on; only index 0 has term 0.
            if (message.index == 0) != (message.log_term == 0) {
                return inconsistent(format!(
                    "previous entry {} with term {}",
                    message.index, message.log_term
                ));
            }
            if message.log_term > message.term {
                return inconsistent(format!(
                    "previous entry's term {} is above the message's term {}",
                    message.log_term, message.term
                ));
            }
            let mut previous_term = message.log_term;
            for (i, entry) in message.entries.iter().enumerate() {
                let expected = message.index.checked_add(1 + i as u64);
                if Some(entry.index) != expected {
                    return inconsistent(format!(
                        "entry {} follows index {} at position {i}",
                        entry.index, message.index
                    ));
                }
                if entry.term == 0 || entry.term < previous_term || entry.term > message.term {
                    return inconsistent(format!(
                        "entry {} has term {} out of order",
                        entry.index, entry.term
                    ));
                }
                if entry.get_entry_type() != raft::eraftpb::EntryType::EntryNormal
                    || !entry.data.is_empty()
                    || !entry.context.is_empty()
                {
                    return inconsistent(format!(
                        "entry {} carries a payload; this log holds only empty leader entries",
                        entry.index
                    ));
                }
                previous_term = entry.term;
            }
        }
        // raft-rs's handle_heartbeat commits to m.commit and panics beyond the last index;
        // heartbeats of an older term are answered without being looked at.
        MsgHeartbeat if message.term >= view.term && message.commit > view.last_index => {
            return inconsistent(format!(
                "commit {} beyond this member's last index {}",
                message.commit, view.last_index
            ));
        }
        // Only a response of the leader's own term is acted upon (older ones are dropped).
        MsgAppendResponse if message.term == view.term => {
            if !message.reject && message.index > view.last_index {
                return inconsistent(format!(
                    "acknowledges index {} beyond the leader's last index {}",
                    message.index, view.last_index
                ));
            }
            if message.reject && message.reject_hint > view.last_index.max(message.index) {
                return inconsistent(format!(
                    "reject hint {} beyond the probed index {}",
                    message.reject_hint, message.index
                ));
            }
        }
        MsgSnapshot => {
            let snapshot = message.get_snapshot();
            let metadata = snapshot.get_metadata();
            let conf = metadata.get_conf_state();
            let mut voters = conf.voters.clone();
            voters.sort_unstable();
            let mut members = view.members.to_vec();
            members.sort_unstable();
            if voters != members
                || !conf.learners.is_empty()
                || !conf.voters_outgoing.is_empty()
                || !conf.learners_next.is_empty()
                || conf.auto_leave
            {
                return inconsistent(format!(
                    "snapshot membership {:?} is not this cluster's {members:?}",
                    conf.voters
                ));
            }
            if !snapshot.data.is_empty() {
                return inconsistent(
                    "snapshot carries data; this cluster's state machine is empty".into(),
                );
            }
            // A mark of term 0 would "match" past the end of the log (see MsgAppend).
            if metadata.term > message.term || metadata.index == 0 || metadata.term == 0 {
                return inconsistent(format!(
                    "snapshot mark ({}, term {}) is not valid in term {}",
                    metadata.index, metadata.term, message.term
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::{Entry, EntryType};

    fn view() -> View<'static> {
        View {
            me: 2,
            term: 3,
            leader: 1,
            members: &[1, 2, 3],
            last_index: 5,
            max_entries: 64,
        }
    }

    fn message(kind: MessageType) -> Message {
        let mut m = Message::default();
        m.set_msg_type(kind);
        m.from = 1;
        m.to = 2;
        m.term = 3;
        m
    }

    #[test]
    fn identity_type_and_term_are_checked_first() {
        let m = message(MessageType::MsgHeartbeat);
        assert_eq!(check(&m, 1, &view()), Ok(()));
        assert_eq!(
            check(&m, 3, &view()),
            Err(MessageError::SenderMismatch {
                claimed: 1,
                link: 3
            })
        );
        let mut to_other = m.clone();
        to_other.to = 3;
        assert_eq!(
            check(&to_other, 1, &view()),
            Err(MessageError::NotForUs { to: 3, me: 2 })
        );
        let mut stranger = m.clone();
        stranger.from = 9;
        assert_eq!(
            check(&stranger, 9, &view()),
            Err(MessageError::UnknownMember(9))
        );
        for kind in [
            MessageType::MsgHup,
            MessageType::MsgBeat,
            MessageType::MsgPropose,
            MessageType::MsgTimeoutNow,
            MessageType::MsgTransferLeader,
            MessageType::MsgReadIndex,
            MessageType::MsgCheckQuorum,
            MessageType::MsgUnreachable,
        ] {
            assert_eq!(
                check(&message(kind), 1, &view()),
                Err(MessageError::Forbidden(kind))
            );
        }
        let mut zero = m;
        zero.term = 0;
        assert_eq!(
            check(&zero, 1, &view()),
            Err(MessageError::ZeroTerm(MessageType::MsgHeartbeat))
        );
    }

    #[test]
    fn a_forced_campaign_is_refused() {
        let mut vote = message(MessageType::MsgRequestVote);
        vote.context = raft::CAMPAIGN_TRANSFER.to_vec().into();
        assert_eq!(
            check(&vote, 1, &view()),
            Err(MessageError::CampaignTransfer)
        );
    }

    #[test]
    fn appends_must_be_contiguous_empty_and_commit_what_they_carry() {
        let mut append = message(MessageType::MsgAppend);
        append.index = 5;
        append.log_term = 2;
        let entry = |index, term| Entry {
            index,
            term,
            ..Entry::default()
        };
        append.entries = vec![entry(6, 3), entry(7, 3)].into();
        append.commit = 7;
        assert_eq!(check(&append, 1, &view()), Ok(()));
        let mut gap = append.clone();
        gap.entries = vec![entry(6, 3), entry(8, 3)].into();
        assert!(check(&gap, 1, &view()).is_err());
        let mut payload = append.clone();
        payload.entries[0].data = b"port table".to_vec().into();
        assert!(check(&payload, 1, &view()).is_err());
        let mut conf = append.clone();
        conf.entries[0].set_entry_type(EntryType::EntryConfChange);
        assert!(check(&conf, 1, &view()).is_err());
        let mut overcommit = append;
        // raft-rs commits min(commit, last new index): a leader's commit beyond the entries
        // it sends is normal for a lagging follower.
        overcommit.commit = 80;
        assert_eq!(check(&overcommit, 1, &view()), Ok(()));
    }

    #[test]
    fn heartbeats_and_responses_stay_within_the_log() {
        let mut heartbeat = message(MessageType::MsgHeartbeat);
        heartbeat.commit = 6;
        assert!(check(&heartbeat, 1, &view()).is_err());
        let mut ack = message(MessageType::MsgAppendResponse);
        ack.index = 6;
        assert!(check(&ack, 1, &view()).is_err());
        ack.index = 5;
        assert_eq!(check(&ack, 1, &view()), Ok(()));
        // A stale response of an older term is dropped by raft-rs, not refused here.
        ack.index = 9;
        ack.term = 2;
        assert_eq!(check(&ack, 1, &view()), Ok(()));
    }

    #[test]
    fn snapshots_must_carry_this_membership_and_nothing_else() {
        let mut snap = message(MessageType::MsgSnapshot);
        let metadata = snap.mut_snapshot().mut_metadata();
        metadata.index = 4;
        metadata.term = 2;
        metadata.mut_conf_state().voters = vec![3, 2, 1];
        assert_eq!(check(&snap, 1, &view()), Ok(()));
        snap.mut_snapshot().mut_metadata().mut_conf_state().voters = vec![1, 2];
        assert!(check(&snap, 1, &view()).is_err());
    }
}
