//! The leader's side of the write path: batches from this member's proposer and batches
//! forwarded by followers are merged into one log entry while the previous entry commits, so
//! a loaded cluster makes one entry per round rather than one per member.
//!
//! Every entry carries a fixed cost on every member (an AppendEntries and its commit update,
//! a WAL sync, a state machine write), so fewer, larger entries are what lets puts scale.
//!
//! Deadlock freedom: a batch that reaches the committer is only ever proposed here, through
//! Raft, or refused (not the leader); it never waits for another member's proposer or
//! committer. Proposers wait on committers, committers wait only on Raft.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::apply::Proposal;
use crate::error::StoreError;
use crate::raft::node::RaftNode;
use crate::raft::proposer::{Attempt, BATCH_MAX_BYTES, BATCH_MAX_REQUESTS, Committed, propose_locally};
use crate::raft::types::ProposalBatch;

/// Batches waiting for an entry; a full queue makes senders wait (back-pressure). Each
/// follower has at most its forward stream's limit (64) in flight towards the leader.
const QUEUE_CAPACITY: usize = 64;
/// Entries being committed at once. One: batches that arrive meanwhile all go in the next. An
/// entry's slot frees when a quorum has it (openraft's commit notice), not when it is applied,
/// so the next entry replicates while this one is applied.
const ENTRIES_IN_FLIGHT: usize = 1;

/// One member's batch waiting for an entry; it stays whole (its sender needs the entry's
/// index to wait for its own apply).
struct Batch {
    proposals: Vec<Proposal>,
    /// The requests' `codec` encoding, which the entry's is made of.
    encoded: Vec<u8>,
    reply: oneshot::Sender<Attempt>,
}

/// Handle to the committer task; cheap to clone.
#[derive(Clone)]
pub struct Committer {
    tx: mpsc::Sender<Batch>,
}

impl Committer {
    /// Starts the committer task on the current tokio runtime.
    pub fn start(node: Arc<RaftNode>) -> Committer {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(run(node, rx));
        Committer { tx }
    }

    /// Commits `proposals` in an entry of this member's log, if it leads. `encoded` is their
    /// `codec` encoding, or the bytes they were decoded from.
    pub async fn commit(&self, proposals: Vec<Proposal>, encoded: Vec<u8>) -> Attempt {
        let (reply, outcome) = oneshot::channel();
        if self.tx.send(Batch { proposals, encoded, reply }).await.is_err() {
            return Attempt::Done(Err(StoreError::Stopped));
        }
        outcome.await.unwrap_or(Attempt::Done(Err(StoreError::Stopped)))
    }
}

async fn run(node: Arc<RaftNode>, mut rx: mpsc::Receiver<Batch>) {
    let in_flight = Arc::new(Semaphore::new(ENTRIES_IN_FLIGHT));
    // A batch that did not fit the previous entry opens the next one.
    let mut carried = None;
    loop {
        let first = match carried.take() {
            Some(batch) => batch,
            None => match rx.recv().await {
                Some(batch) => batch,
                None => return,
            },
        };
        // Wait for a free slot first: batches that arrive meanwhile join this entry.
        let Ok(permit) = in_flight.clone().acquire_owned().await else { return };
        let mut entry = Entry::default();
        entry.push(first);
        while let Ok(batch) = rx.try_recv() {
            if !entry.has_room_for(&batch) {
                carried = Some(batch);
                break;
            }
            entry.push(batch);
        }
        let node = node.clone();
        tokio::spawn(async move {
            let Entry { proposals, encoded, waiters } = entry;
            let batch = ProposalBatch::from_encoded(proposals, encoded);
            deliver(waiters, propose_locally(&node, batch, permit).await);
        });
    }
}

/// The requests of one log entry, and for each batch in it, how many are its and who waits.
#[derive(Default)]
struct Entry {
    proposals: Vec<Proposal>,
    /// The batches' encodings, one after the other: the entry's encoding.
    encoded: Vec<u8>,
    waiters: Vec<(usize, oneshot::Sender<Attempt>)>,
}

impl Entry {
    /// A batch always fits an empty entry; otherwise it must stay within both limits.
    fn has_room_for(&self, batch: &Batch) -> bool {
        self.proposals.is_empty()
            || (self.proposals.len() + batch.proposals.len() <= BATCH_MAX_REQUESTS
                && self.encoded.len() + batch.encoded.len() <= BATCH_MAX_BYTES)
    }

    fn push(&mut self, batch: Batch) {
        if self.encoded.is_empty() {
            self.encoded = batch.encoded;
        } else {
            self.encoded.extend_from_slice(&batch.encoded);
        }
        self.waiters.push((batch.proposals.len(), batch.reply));
        self.proposals.extend(batch.proposals);
    }
}

/// Hands each batch its outcomes, in entry order, with the entry's index. A failure, or a
/// refusal (not the leader), goes to every batch.
fn deliver(waiters: Vec<(usize, oneshot::Sender<Attempt>)>, attempt: Attempt) {
    let requests: usize = waiters.iter().map(|(count, _)| count).sum();
    let error = match attempt {
        Attempt::Done(Ok(committed)) if committed.outcomes.len() == requests => {
            let log_index = committed.log_index;
            let mut outcomes = committed.outcomes.into_iter();
            for (count, reply) in waiters {
                let outcomes = outcomes.by_ref().take(count).collect();
                let _ = reply.send(Attempt::Done(Ok(Committed { log_index, outcomes })));
            }
            return;
        }
        Attempt::Done(Ok(committed)) => {
            StoreError::Internal(format!("keel: {} outcomes for {requests} requests", committed.outcomes.len()))
        }
        Attempt::Done(Err(error)) => error,
        Attempt::Retry => {
            for (_, reply) in waiters {
                let _ = reply.send(Attempt::Retry);
            }
            return;
        }
    };
    let (code, text) = error.to_wire();
    for (_, reply) in waiters {
        let _ = reply.send(Attempt::Done(Err(StoreError::from_wire(code, text.clone()))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::Applied;
    use crate::raft::codec;

    fn batch(requests: usize) -> (Batch, oneshot::Receiver<Attempt>) {
        let (reply, rx) = oneshot::channel();
        let proposals = vec![Proposal::Compact { revision: 1 }; requests];
        (Batch { encoded: codec::encode_proposals(&proposals), proposals, reply }, rx)
    }

    fn revisions(attempt: Attempt) -> (u64, Vec<i64>) {
        match attempt {
            Attempt::Done(Ok(committed)) => (
                committed.log_index,
                committed
                    .outcomes
                    .iter()
                    .map(|outcome| match outcome {
                        Ok(Applied::Compact { revision }) => *revision,
                        other => panic!("unexpected outcome {other:?}"),
                    })
                    .collect(),
            ),
            _ => panic!("no outcomes"),
        }
    }

    #[test]
    fn each_batch_gets_its_own_outcomes_and_the_entry_index() {
        let mut entry = Entry::default();
        let (first, mut first_rx) = batch(1);
        let (second, mut second_rx) = batch(2);
        for batch in [first, second] {
            assert!(entry.has_room_for(&batch));
            entry.push(batch);
        }
        let outcomes = (1..=3).map(|revision| Ok(Applied::Compact { revision })).collect();
        deliver(entry.waiters, Attempt::Done(Ok(Committed { log_index: 9, outcomes })));
        assert_eq!(revisions(first_rx.try_recv().expect("answered")), (9, vec![1]));
        assert_eq!(revisions(second_rx.try_recv().expect("answered")), (9, vec![2, 3]));
    }

    #[test]
    fn an_entry_is_encoded_as_its_batches_one_after_the_other() {
        let mut entry = Entry::default();
        for revisions in [vec![1], vec![2, 3]] {
            let (reply, _rx) = oneshot::channel();
            let proposals: Vec<_> = revisions.into_iter().map(|revision| Proposal::Compact { revision }).collect();
            entry.push(Batch { encoded: codec::encode_proposals(&proposals), proposals, reply });
        }
        assert_eq!(entry.encoded, codec::encode_proposals(&entry.proposals));
        assert_eq!(codec::decode_proposals(&entry.encoded).expect("decodes"), entry.proposals);
    }

    #[test]
    fn a_failure_a_short_answer_or_a_refusal_reaches_every_batch() {
        let short = Committed { log_index: 3, outcomes: vec![Ok(Applied::Compact { revision: 1 })] };
        for (attempt, retry) in [
            (Attempt::Done(Err(StoreError::LeaderChanged)), false),
            (Attempt::Done(Ok(short)), false),
            (Attempt::Retry, true),
        ] {
            let mut entry = Entry::default();
            let (first, mut first_rx) = batch(1);
            let (second, mut second_rx) = batch(2);
            entry.push(first);
            entry.push(second);
            deliver(entry.waiters, attempt);
            for rx in [&mut first_rx, &mut second_rx] {
                match rx.try_recv().expect("answered") {
                    Attempt::Retry => assert!(retry),
                    Attempt::Done(Err(_)) => assert!(!retry),
                    Attempt::Done(Ok(_)) => panic!("a failed entry answered with outcomes"),
                }
            }
        }
    }

    #[test]
    fn a_batch_joins_only_an_entry_with_room_for_all_of_it() {
        let mut entry = Entry::default();
        let (big, _big_rx) = batch(BATCH_MAX_REQUESTS);
        assert!(entry.has_room_for(&big), "any batch fits an empty entry");
        let (first, _first_rx) = batch(1);
        entry.push(first);
        assert!(!entry.has_room_for(&big), "it waits for the next entry, whole");
        let (fits, _fits_rx) = batch(BATCH_MAX_REQUESTS - 1);
        assert!(entry.has_room_for(&fits));
    }
}
