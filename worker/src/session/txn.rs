//! Exactly-once (docs/coordination.md, "Exactly-once"): the session's
//! target producer is transactional, and each unit's progress is committed
//! to the flow's commit group *on the target* in the same transaction as
//! its records. A unit resumes from there (or from the commit to the source
//! group, where that is further: see [`resume_from`]). The commit to the
//! source group still happens, after each transaction, for lag tools.
//!
//! Fencing a previous writer of a unit is the member's part, before the
//! unit reaches the data plane: it knows from the coordination store who
//! claimed the unit last.

use super::{commits, gaps};
use rdkafka::consumer::Consumer as _;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::producer::Producer as _;

use super::gaps::Start;
use super::{Broken, Session, SessionError};
use crate::clients::TRANSACTION_TIMEOUT;
use crate::clients::{self, Consumer, Producer};
use crate::link::FlowSpec;
use rdkafka::consumer::{BaseConsumer, CommitMode};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use strait_common::coord::lease::Fence;
use strait_common::metrics as m;
use strait_common::model::{TopicPartition, Unit};
use tracing::warn;

/// How long one step of a transaction (flush, offsets, commit) may take
/// before the session gives the transaction up and restarts.
const STEP: Duration = Duration::from_secs(30);
/// How long abandoning a transaction may try to abort it: best effort, as
/// the next session or owner fences it anyway.
const ABANDON_ABORT: Duration = Duration::from_secs(5);

pub(super) struct Txn {
    interval: Duration,
    pub(super) next: Instant,
    progress: BaseConsumer,
    group: ConsumerGroupMetadata,
}

impl Txn {
    /// Takes over the worker's transactional id (fencing its earlier
    /// sessions, whose open transaction is aborted) and opens the first
    /// transaction.
    pub(super) fn start(
        spec: &FlowSpec,
        interval: Duration,
        producer: &Producer,
    ) -> Result<Txn, SessionError> {
        producer
            .init_transactions(STEP)
            .map_err(SessionError::Transaction)?;
        producer
            .begin_transaction()
            .map_err(SessionError::Transaction)?;
        let progress = clients::progress_consumer(spec).map_err(SessionError::Clients)?;
        let group = progress
            .group_metadata()
            .ok_or_else(|| SessionError::Broken(Broken::NoGroupMetadata))?;
        Ok(Txn {
            interval,
            next: Instant::now() + interval,
            progress,
            group,
        })
    }

    /// The positions committed on the target for `remote` partitions, with
    /// the topic id each names.
    fn committed(
        &self,
        remote: &[TopicPartition],
        timeout: Duration,
    ) -> Result<HashMap<TopicPartition, Start>, SessionError> {
        let mut tpl = TopicPartitionList::new();
        for tp in remote {
            tpl.add_partition(&tp.topic, tp.partition);
        }
        let got = gaps::committed_offsets(&self.progress, &tpl, timeout)
            .map_err(SessionError::Transaction)?;
        Ok(gaps::starts(&got))
    }
}

/// Where a unit of an exactly-once flow resumes, from the position its
/// transactions committed on the target and the advisory commit on the
/// source; true if the target's was behind.
///
/// The target's is exact on Kafka, which commits a transaction's offsets
/// with its records. The source's is made only after a transaction
/// committed, with the positions that transaction committed, so it is never
/// past what the target holds, and is behind it by at most the transactions
/// whose advisory commit had not landed yet. So the later of the two is
/// never past the truth, and never short of it where the target's is
/// exact. It matters where the target's is not: tansu 0.6.0 holds back a
/// transaction's offsets while another transaction that wrote the same
/// partition is open, and drops them if its producer's next transaction is
/// aborted (`tests/exactly_once.rs`), although the records committed; and a
/// flow switched back from at-least-once has an old position there.
///
/// Only positions of the topic as it is now (`topic_id`) are compared: a
/// commit that names another id was made in an earlier incarnation of the
/// topic (deleted and re-created), and its offsets mean nothing in this
/// one. Where neither names the current id, the one found is returned as it
/// is, so that the start check tells the re-created topic by its id.
pub(super) fn resume_from(
    target: Option<&Start>,
    source: Option<&Start>,
    topic_id: Option<&str>,
) -> (Start, bool) {
    let offset = |s: &Start| match s.at {
        Offset::Offset(o) => Some(o),
        _ => None,
    };
    let current = |s: &&Start| match (s.incarnation.as_deref(), topic_id) {
        (Some(was), Some(now)) => was == now,
        _ => true, // unknown: taken as the same topic
    };
    let (t, s) = (target.filter(current), source.filter(current));
    if t.is_none() && s.is_none() {
        return (
            target.or(source).cloned().unwrap_or_else(Start::stored),
            false,
        );
    }
    match (t, s) {
        (Some(t), Some(s)) if offset(s) > offset(t) => (s.clone(), true),
        (Some(t), _) => (t.clone(), false),
        (None, Some(s)) => (s.clone(), false),
        (None, None) => (Start::stored(), false),
    }
}

/// A transaction step's error: `Fenced` if the lease lapsed meanwhile.
fn fenced_or(fence: &Fence, e: KafkaError) -> SessionError {
    if fence.is_open() {
        SessionError::Transaction(e)
    } else {
        SessionError::Fenced
    }
}

impl Session<'_> {
    /// Where each of `added` starts, with exactly-once: the position its
    /// last transaction committed on the target, unless the advisory commit
    /// on the source is further (see [`resume_from`]). With neither (a new
    /// unit) the flow's `start`.
    pub(super) fn eos_start_positions(
        &self,
        consumer: &Consumer,
        added: &[Unit],
        ids: &BTreeMap<String, String>,
    ) -> Result<Vec<Start>, SessionError> {
        let txn = self.txn.as_ref().expect("exactly-once session");
        let remote: Vec<TopicPartition> = added
            .iter()
            .map(|u| TopicPartition::new(u.remote_topic.clone(), u.source.partition))
            .collect();
        let on_target = txn.committed(&remote, self.fence.remaining().min(STEP))?;
        let on_source = gaps::committed(consumer, added)?;
        Ok(added
            .iter()
            .map(|u| {
                let target =
                    on_target.get(&TopicPartition::new(u.remote_topic.clone(), u.source.partition));
                let source = on_source.get(&u.source);
                let id = ids.get(&u.source.topic).map(String::as_str);
                let (start, behind) = resume_from(target, source, id);
                if behind {
                    metrics::counter!(m::PROGRESS_BEHIND, "flow" => u.flow.clone()).increment(1);
                    warn!(flow = %u.flow, topic = %u.source.topic, partition = u.source.partition,
                          on_target = ?target.map(|s| &s.at), on_source = ?source.map(|s| &s.at),
                          "the progress committed on the target is behind the advisory commit on the source: \
                           the target broker lost a transactional offset commit; resuming from the source's");
                }
                start
            })
            .collect())
    }

    /// Commits the open transaction and opens the next: every record sent
    /// is acknowledged, the offset syncs they call for are durable, and each
    /// unit's position is committed in the transaction. Then the advisory
    /// commit to the source, in `advisory` mode: synchronous where the
    /// units' next owner reads it soon (a release, a drain).
    pub(super) fn commit_transaction(
        &mut self,
        consumer: &Consumer,
        advisory: CommitMode,
    ) -> Result<(), SessionError> {
        if !self.fence.is_open() {
            return Err(SessionError::Fenced);
        }
        // Every step waits at most until the lease's deadline: a worker that
        // was paused mid-commit returns (and lets its units go) as soon as it
        // runs again, instead of finishing a commit it may no longer make.
        let step = |fence: &Fence, most: Duration| fence.remaining().min(most);
        clients::flush(self.producer, step(&self.fence, TRANSACTION_TIMEOUT))
            .map_err(|e| fenced_or(&self.fence, e))?;
        self.handle_acks(consumer)?;
        self.flush_syncs();
        clients::flush(self.syncs.producer, step(&self.fence, STEP)).map_err(|e| {
            match self.fence.is_open() {
                true => SessionError::OffsetSync(e),
                false => SessionError::Fenced,
            }
        })?;
        self.handle_acks(consumer)?;
        let txn = self.txn.as_mut().expect("exactly-once session");
        let mut tpl = TopicPartitionList::new();
        for u in self.units.values() {
            if !u.progress.settled() || u.progress.syncs_pending() > 0 {
                // Every record of the transaction is in it: a position short
                // of them would make them duplicates after a restart.
                return Err(SessionError::Broken(Broken::UnsettledAtCommit(
                    u.unit.clone(),
                )));
            }
            let position = match u.progress.commit_position() {
                Ok(Some(p)) => p.0,
                // Nothing sent this session: its position stays as it is.
                Ok(None) => continue,
                Err(breach) => {
                    m::violated(m::COMMIT_PAST_ACK);
                    return Err(SessionError::Broken(Broken::CommitPastAck(breach)));
                }
            };
            let partition = u.unit.source.partition;
            commits::add_position(
                &mut tpl,
                &u.remote,
                partition,
                position,
                u.incarnation.as_deref(),
            );
        }
        if !self.fence.is_open() {
            return Err(SessionError::Fenced);
        }
        // A session held here saw its fence open and will commit.
        #[cfg(test)]
        fail::fail_point!("txn::before_commit");
        if tpl.count() > 0 {
            self.producer
                .send_offsets_to_transaction(&tpl, &txn.group, step(&self.fence, STEP))
                .map_err(|e| fenced_or(&self.fence, e))?;
        }
        self.producer
            .commit_transaction(step(&self.fence, STEP))
            .map_err(|e| fenced_or(&self.fence, e))?;
        // A session held here has its commit answered.
        #[cfg(test)]
        fail::fail_point!("txn::after_commit");
        if !self.fence.is_open() {
            // The commit went out while the lease could be vouched for, but
            // came back after: a new owner may have started meanwhile. Not
            // a double write: the new owner fences this transactional id
            // before it reads progress, so the coordinator either finished
            // this commit first (and the progress read includes it) or
            // refused it (docs/coordination.md, "Zombie fencing";
            // `txn_fence_test.rs` runs both orders). Counted, and the
            // session stops writing.
            metrics::counter!(m::TRANSACTIONS_LATE, "flow" => self.spec.flow.name.clone())
                .increment(1);
            warn!(flow = %self.spec.flow.name, "a transaction committed as the lease lapsed");
            return Err(SessionError::Fenced);
        }
        metrics::counter!(m::TRANSACTIONS, "flow" => self.spec.flow.name.clone()).increment(1);
        self.producer
            .begin_transaction()
            .map_err(SessionError::Transaction)?;
        txn.next = Instant::now() + txn.interval;
        self.commit(consumer, advisory);
        Ok(())
    }

    /// After an error or a fence: the open transaction is abandoned (the
    /// next session, or the unit's next owner, fences it).
    pub(super) fn abandon_transaction(&self) {
        if self.txn.is_some() {
            let _ = self.producer.abort_transaction(ABANDON_ABORT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(o: i64) -> Start {
        Start::committed(o, "")
    }

    #[test]
    fn a_unit_resumes_from_the_later_of_the_target_progress_and_the_advisory_commit() {
        // The target's, where it is as far as the source's or further (the
        // advisory commit lags the transaction it follows).
        let id = Some("abc");
        assert_eq!(
            resume_from(Some(&at(10)), Some(&at(10)), id),
            (at(10), false)
        );
        assert_eq!(
            resume_from(Some(&at(12)), Some(&at(10)), id),
            (at(12), false)
        );
        // The source's, flagged, where the target lost progress.
        assert_eq!(
            resume_from(Some(&at(10)), Some(&at(15)), id),
            (at(15), true)
        );
        // Either alone; neither: the flow's start, resolved later.
        assert_eq!(resume_from(Some(&at(7)), None, id), (at(7), false));
        assert_eq!(resume_from(None, Some(&at(7)), id), (at(7), false));
        assert_eq!(resume_from(None, None, id), (Start::stored(), false));
        // The topic id the chosen commit names comes with it.
        let named = Start::committed(15, "topic_id=abc");
        assert_eq!(resume_from(Some(&at(10)), Some(&named), id).0, named);
    }

    #[test]
    fn positions_of_another_incarnation_of_the_topic_never_win() {
        // The topic was re-created (now "new"); the target's progress is the
        // old topic's 500, the advisory commit the new topic's 200.
        let old = Start::committed(500, "topic_id=old");
        let new = Start::committed(200, "topic_id=new");
        assert_eq!(
            resume_from(Some(&old), Some(&new), Some("new")),
            (new.clone(), false)
        );
        // And the other way round: the advisory commit is the old topic's.
        assert_eq!(
            resume_from(Some(&new), Some(&old), Some("new")),
            (new.clone(), false)
        );
        // Both of the old topic: returned as they are, so the start check
        // counts the re-created topic and starts it from its beginning.
        assert_eq!(
            resume_from(Some(&old), Some(&old), Some("new")).0,
            old.clone()
        );
        // Ids unknown (a broker without them): positions alone, as before.
        assert_eq!(resume_from(Some(&old), Some(&new), None).0, old);
    }
}
