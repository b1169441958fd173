//! Exactly-once (docs/coordination.md, "Exactly-once"): the session's
//! target producer is transactional, and each unit's progress is committed
//! to the flow's commit group *on the target* in the same transaction as
//! its records. A unit resumes from there. The commit to the source group
//! still happens, after each transaction, for lag tools; it is advisory.
//!
//! Fencing a previous writer of a unit is the member's part, before the
//! unit reaches the data plane: it knows from the coordination store who
//! claimed the unit last.

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::producer::Producer as _;

use super::*;
use crate::clients::TRANSACTION_TIMEOUT;

/// How long one step of a transaction (flush, offsets, commit) may take
/// before the session gives the transaction up and restarts.
const STEP: Duration = Duration::from_secs(30);

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
        let group = progress.group_metadata().ok_or_else(|| {
            SessionError::Fatal("no group metadata for the progress group".into())
        })?;
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
        remote: &[(Arc<str>, i32)],
        timeout: Duration,
    ) -> Result<HashMap<(String, i32), Start>, SessionError> {
        let mut tpl = TopicPartitionList::new();
        for (topic, p) in remote {
            tpl.add_partition(topic, *p);
        }
        let got = self
            .progress
            .committed_offsets(tpl, timeout)
            .map_err(SessionError::Transaction)?;
        Ok(got
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((
                    (e.topic().to_owned(), e.partition()),
                    Start::committed(o, e.metadata()),
                )),
                _ => None,
            })
            .collect())
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
    /// last transaction committed on the target. With none there yet (a
    /// flow switched from at-least-once, or a new unit) the same as
    /// at-least-once: the source group's position, else the flow's `start`.
    pub(super) fn eos_start_positions(&self, added: &[Unit]) -> Result<Vec<Start>, SessionError> {
        let txn = self.txn.as_ref().expect("exactly-once session");
        let remote: Vec<(Arc<str>, i32)> = added
            .iter()
            .map(|u| (Arc::from(u.remote_topic.as_str()), u.source.partition))
            .collect();
        let seen = txn.committed(&remote, self.fence.remaining().min(STEP))?;
        Ok(added
            .iter()
            .map(|u| {
                seen.get(&(u.remote_topic.clone(), u.source.partition))
                    .cloned()
                    .unwrap_or_else(Start::stored)
            })
            .collect())
    }

    /// Commits the open transaction and opens the next: every record sent
    /// is acknowledged, the offset syncs they call for are durable, and each
    /// unit's position is committed in the transaction. Then the advisory
    /// commit to the source.
    pub(super) fn commit_transaction(&mut self, consumer: &Consumer) -> Result<(), SessionError> {
        if !self.fence.is_open() {
            return Err(SessionError::Fenced);
        }
        // Every step waits at most until the lease's deadline: a worker that
        // was paused mid-commit returns (and lets its units go) as soon as it
        // runs again, instead of finishing a commit it may no longer make.
        let step = |fence: &Fence, most: Duration| fence.remaining().min(most);
        clients::flush(&self.producer, step(&self.fence, TRANSACTION_TIMEOUT))
            .map_err(|e| fenced_or(&self.fence, e))?;
        self.handle_acks(consumer)?;
        self.flush_syncs();
        clients::flush(&self.syncs_producer, step(&self.fence, STEP)).map_err(|e| {
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
                return Err(SessionError::Fatal(format!(
                    "unit {} not settled at a transaction commit",
                    u.unit
                )));
            }
            let position = match u.progress.commit_position() {
                Ok(Some(p)) => p.0,
                // Nothing sent this session: its position stays as it is.
                Ok(None) => continue,
                Err(breach) => {
                    m::violated(m::COMMIT_PAST_ACK);
                    return Err(SessionError::Fatal(format!(
                        "commit past acknowledged records: {breach:?}"
                    )));
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
        if tpl.count() > 0 {
            self.producer
                .send_offsets_to_transaction(&tpl, &txn.group, step(&self.fence, STEP))
                .map_err(|e| fenced_or(&self.fence, e))?;
        }
        self.producer
            .commit_transaction(step(&self.fence, STEP))
            .map_err(|e| fenced_or(&self.fence, e))?;
        if !self.fence.is_open() {
            // The commit went out while the lease could be vouched for, but
            // came back after: a new owner may have started meanwhile. The
            // new owner fences this transactional id before it reads
            // progress, so this should not be a double write; it is counted
            // so the chaos suite can tell if it ever is.
            m::violated(m::EXACTLY_ONCE);
            error!(flow = %self.spec.flow.name, "a transaction committed as the lease lapsed");
            return Err(SessionError::Fenced);
        }
        metrics::counter!(m::TRANSACTIONS, "flow" => self.spec.flow.name.clone()).increment(1);
        self.producer
            .begin_transaction()
            .map_err(SessionError::Transaction)?;
        txn.next = Instant::now() + txn.interval;
        self.commit(consumer, CommitMode::Async);
        Ok(())
    }

    /// After an error or a fence: the open transaction is abandoned (the
    /// next session, or the unit's next owner, fences it).
    pub(super) fn abandon_transaction(&self) {
        if self.txn.is_some() {
            let _ = self.producer.abort_transaction(Duration::from_secs(5));
        }
    }
}
