//! One session of a flow: a consumer on the source, an idempotent producer
//! on the target, and the units they replicate. The session thread owns all
//! unit state; librdkafka's callbacks reach it through a channel.
//!
//! The loop: apply unit changes, handle delivery reports, commit and flush
//! offset syncs on their intervals, poll one record and produce it. A
//! session ends on shutdown (drain: stop fetching, wait for the target,
//! commit) or on an error it cannot recover in place; the caller then starts
//! a new session, which resumes every unit from its committed position.
//!
//! This file holds the clients, the loop, unit lifecycle (reconcile,
//! release) and drain. The units themselves (the table that finds them by
//! id or by source partition, and what each is doing) are in `units`; the
//! record path is in `records`, offset syncs and commits in `commits`,
//! back-pressure in `pressure`, reporting in `report`; what a unit may
//! commit is decided by [`crate::progress::UnitProgress`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::producer::{Producer as _, PurgeConfig};
use rdkafka::{Offset, TopicPartitionList};
use thiserror::Error;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use strait_common::access::{denials, Feature, Operation};
use strait_common::config::OnSourceGap;
use strait_common::coord::lease::Fence;
use strait_common::error_event;
use strait_common::metrics as m;
use strait_common::model::{RecordOffset, Unit};
use strait_common::telemetry::ErrorKind;

use crate::clients::{self, Ack, Consumer, Producer, SyncAck, SyncsProducer, Watermarks};
use crate::errors::{self, Action};
use crate::link::{Assignment, FlowSpec, Held, UnitLink};
use crate::progress::{Breach, Hysteresis};
use crate::status::StatusBoard;
use strait_common::syncs::Sync;

mod commits;
#[cfg(test)]
mod fence_test;
mod gaps;
use gaps::Start;
mod pressure;
#[cfg(test)]
mod purge_test;
mod records;
mod report;
#[cfg(test)]
mod test_support;
mod txn;
#[cfg(test)]
mod txn_fence_test;
mod units;
use units::{Phase, UnitId, UnitSlot, Units};

const POLL: Duration = Duration::from_millis(50);
const TICK: Duration = Duration::from_secs(1);
/// How long a unit being released waits for the target before it commits
/// what was acknowledged and lets go (the rest is re-sent: duplicates).
const RELEASE_WAIT: Duration = Duration::from_secs(10);
/// How long a release waits for its last offset syncs to be written.
const RELEASE_SYNCS_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum SessionError {
    #[error("cannot create Kafka clients: {0}")]
    Clients(KafkaError),
    #[error("delivery to the target failed: {0}")]
    Delivery(KafkaError),
    #[error("consumer failed: {0}")]
    Consume(KafkaError),
    #[error("assignment failed: {0}")]
    Assign(KafkaError),
    /// librdkafka raised a fatal error on the producer: with idempotence
    /// (or a transaction) it can no longer keep its guarantees, so the
    /// session ends. Its Kafka code and librdkafka's reason.
    #[error("producer fatal error: {reason} ({code})")]
    ProducerFatal {
        code: rdkafka::types::RDKafkaErrorCode,
        reason: String,
    },
    /// The session found itself in a state it must not go on from.
    #[error("the session cannot go on: {0}")]
    Broken(Broken),
    #[error("transaction failed: {0}")]
    Transaction(KafkaError),
    /// An exactly-once flow's transaction held a record the target refused
    /// for good: the transaction is aborted, and the record's unit stays
    /// stopped (in [`Stopped`]) while the next session goes on without it.
    #[error("{}/{}: record at offset {} refused by the target: {error}", unit.source.topic, unit.source.partition, offset.0)]
    RefusedInTransaction {
        /// Boxed: a session's result stays small on the hot path.
        unit: Box<Unit>,
        offset: RecordOffset,
        error: KafkaError,
    },
    #[error("offset sync not written: {0}")]
    OffsetSync(KafkaError),
    /// The worker's lease could not be renewed in time: its units may
    /// already belong to another worker, so nothing more is written or
    /// committed.
    #[error("fenced: the coordination lease was not renewed in time")]
    Fenced,
    /// A unit's release waited [`RELEASE_WAIT`] and records of it were
    /// still unacknowledged: the session ends, dropping everything its
    /// producer still queues, so none of them reaches the target after the
    /// unit's next owner started (they would land among its records).
    #[error("release of {unit} timed out with {unsettled} records unacknowledged")]
    ReleaseTimedOut { unit: Unit, unsettled: usize },
}

/// What a session found that it must not go on from: an invariant broken,
/// or a client without what it needs.
#[derive(Debug, Error)]
pub enum Broken {
    #[error("no group metadata for the progress group")]
    NoGroupMetadata,
    /// Every record of a transaction is in it: a position short of them
    /// would make them duplicates after a restart.
    #[error("unit {0} not settled at a transaction commit")]
    UnsettledAtCommit(Unit),
    /// The commit rule (docs/failure-model.md), counted as violated.
    #[error("commit past acknowledged records: {0:?}")]
    CommitPastAck(Breach),
}

impl SessionError {
    /// The Kafka (or librdkafka) error code, where the failure came from
    /// Kafka with one.
    pub fn kafka_code(&self) -> Option<rdkafka::types::RDKafkaErrorCode> {
        match self {
            SessionError::Clients(e)
            | SessionError::Delivery(e)
            | SessionError::Consume(e)
            | SessionError::Assign(e)
            | SessionError::Transaction(e)
            | SessionError::OffsetSync(e)
            | SessionError::RefusedInTransaction { error: e, .. } => e.rdkafka_error_code(),
            SessionError::ProducerFatal { code, .. } => Some(*code),
            SessionError::Broken(_)
            | SessionError::Fenced
            | SessionError::ReleaseTimedOut { .. } => None,
        }
    }
}

/// Units of an exactly-once flow stopped at a record the target refused,
/// with the reason, kept across the flow's sessions: the refusal aborted
/// the transaction, and so ended the session, but only the unit stays
/// stopped. A unit leaves when it leaves the assignment (a pause and resume
/// through the API starts it again), as an at-least-once unit stopped at a
/// refused record does.
#[derive(Clone, Default)]
pub struct Stopped(Arc<Mutex<BTreeMap<Unit, String>>>);

impl Stopped {
    fn get(&self, u: &Unit) -> Option<String> {
        self.0.lock().unwrap().get(u).cloned()
    }

    fn insert(&self, u: Unit, reason: String) {
        self.0.lock().unwrap().insert(u, reason);
    }

    /// Forgets the units that are no longer wanted.
    fn retain(&self, wanted: &BTreeSet<Unit>) {
        self.0.lock().unwrap().retain(|u, _| wanted.contains(u));
    }
}

/// Where units about to start start: their positions, the source topics'
/// ids now, and the units whose topic was re-created, with what their error
/// says.
struct StartPlan {
    starts: Vec<Start>,
    ids: BTreeMap<String, String>,
    recreated: BTreeMap<Unit, String>,
}

/// What the flow has handed to the producer and not yet seen acknowledged,
/// and the flow's in-flight limit.
#[derive(Default)]
struct InFlight {
    bytes: u64,
    records: u64,
    over: Hysteresis,
}

impl InFlight {
    fn sent(&mut self, bytes: u64) {
        self.bytes += bytes;
        self.records += 1;
    }

    fn acknowledged(&mut self, bytes: u64) {
        self.bytes -= bytes;
        self.records -= 1;
    }
}

/// The offset syncs a session writes: their producer and topic, the
/// producer's delivery reports, and the syncs one step of progress called
/// for.
struct Syncs<'a> {
    producer: &'a SyncsProducer,
    topic: String,
    acks: mpsc::Receiver<SyncAck>,
    to_emit: Vec<Sync>,
}

/// Handles of the per-record metrics, resolved once per session so the hot
/// path does no registry lookup and no label allocation.
struct HotMetrics {
    records: metrics::Counter,
    bytes: metrics::Counter,
    latency: metrics::Histogram,
    syncs: metrics::Counter,
}

impl HotMetrics {
    fn new(flow: &str) -> Self {
        let f = || ("flow", flow.to_owned());
        HotMetrics {
            records: metrics::counter!(m::RECORDS_REPLICATED, &[f()]),
            bytes: metrics::counter!(m::BYTES_REPLICATED, &[f()]),
            latency: metrics::histogram!(m::REPLICATION_LATENCY, &[f()]),
            syncs: metrics::counter!(m::OFFSET_SYNCS, &[f()]),
        }
    }
}

struct Session<'a> {
    spec: &'a FlowSpec,
    hot: HotMetrics,
    producer: &'a Producer,
    acks: mpsc::Receiver<Ack>,
    syncs: Syncs<'a>,
    units: Units,
    in_flight: InFlight,
    commit_failed: Arc<AtomicBool>,
    watermarks: Watermarks,
    status: StatusBoard,
    fence: Fence,
    held: Arc<watch::Sender<Held>>,
    /// The assignment last applied.
    wanted: Assignment,
    /// Units released with their last transaction committed (exactly-once).
    clean: BTreeSet<Unit>,
    /// Set when the flow is exactly-once.
    txn: Option<txn::Txn>,
    /// Exactly-once units stopped at a refused record.
    stopped: Stopped,
}

/// Runs one session until shutdown (Ok) or an error (Err).
pub fn run(
    spec: &FlowSpec,
    link: &UnitLink,
    shutdown: &CancellationToken,
    status: &StatusBoard,
    stopped: &Stopped,
) -> Result<(), SessionError> {
    let (acks_tx, acks) = mpsc::channel();
    let (sync_acks_tx, sync_acks) = mpsc::channel();
    let commit_failed = Arc::new(AtomicBool::new(false));
    let watermarks = Watermarks::default();
    let flow = spec.flow.name.clone();
    let consumer = clients::consumer(
        spec,
        clients::SourceContext {
            flow: flow.clone(),
            source: spec.flow.source.clone(),
            group: spec.flow.commit_group(&spec.deployment),
            watermarks: watermarks.clone(),
            commit_failed: commit_failed.clone(),
        },
    )
    .map_err(SessionError::Clients)?;
    let producer = clients::producer(
        spec,
        clients::TargetContext {
            flow: flow.clone(),
            acks: acks_tx,
            sent: Default::default(),
        },
    )
    .map_err(SessionError::Clients)?;
    let syncs_producer = clients::syncs_producer(
        spec,
        clients::SyncsContext {
            flow: flow.clone(),
            acks: sync_acks_tx,
        },
    )
    .map_err(SessionError::Clients)?;
    let txn = match spec.flow.exactly_once {
        Some(interval) => Some(txn::Txn::start(spec, interval, &producer)?),
        None => None,
    };
    metrics::counter!(m::SESSIONS, "flow" => flow.clone()).increment(1);
    info!(flow = %flow, exactly_once = txn.is_some(), "flow session started");

    // This session's term of the fence: once it closes, this session
    // writes nothing more, whatever lease opens the fence later.
    let ticket = link.fence.ticket();
    let over = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| purge_when_fenced(&ticket, &producer, &syncs_producer, &over));
        let result = run_session(
            spec,
            link,
            shutdown,
            status,
            stopped,
            Clients {
                consumer: &consumer,
                producer: &producer,
                syncs_producer: &syncs_producer,
                txn,
                fence: ticket.clone(),
            },
            Channels {
                acks,
                sync_acks,
                commit_failed,
                watermarks,
            },
        );
        over.store(true, Ordering::Release);
        result
    })
}

/// The session's clients, made by [`run`].
struct Clients<'a> {
    consumer: &'a Consumer,
    producer: &'a Producer,
    syncs_producer: &'a SyncsProducer,
    txn: Option<txn::Txn>,
    /// The session's ticket of the worker's fence.
    fence: Fence,
}

/// What the clients' callbacks report to the session.
struct Channels {
    acks: mpsc::Receiver<Ack>,
    sync_acks: mpsc::Receiver<SyncAck>,
    commit_failed: Arc<AtomicBool>,
    watermarks: Watermarks,
}

/// Drops everything the producers queue or retry as soon as the session's
/// fence closes, whatever the session thread is doing: one blocked (a
/// synchronous commit, a full queue, a flush) looks at its fence only when
/// it returns, and librdkafka keeps sending meanwhile, while the units may
/// have a new owner. Requests already on the wire may still land
/// (docs/failure-model.md).
fn purge_when_fenced(
    fence: &Fence,
    producer: &Producer,
    syncs_producer: &SyncsProducer,
    over: &AtomicBool,
) {
    while !over.load(Ordering::Acquire) {
        if !fence.is_open() {
            producer.purge(PurgeConfig::default().queue().inflight());
            syncs_producer.purge(PurgeConfig::default().queue().inflight());
            #[cfg(test)]
            fail::fail_point!("session::fenced_purged");
            return;
        }
        std::thread::sleep(FENCE_WATCH);
    }
}

/// How often [`purge_when_fenced`] looks at the fence.
const FENCE_WATCH: Duration = Duration::from_millis(50);

fn run_session(
    spec: &FlowSpec,
    link: &UnitLink,
    shutdown: &CancellationToken,
    status: &StatusBoard,
    stopped: &Stopped,
    clients: Clients<'_>,
    channels: Channels,
) -> Result<(), SessionError> {
    let Clients {
        consumer,
        producer,
        syncs_producer,
        txn,
        fence,
    } = clients;
    let Channels {
        acks,
        sync_acks,
        commit_failed,
        watermarks,
    } = channels;
    let flow = spec.flow.name.clone();
    let mut units_rx = link.units.clone();
    units_rx.mark_changed();
    let mut s = Session {
        spec,
        hot: HotMetrics::new(&flow),
        producer,
        acks,
        syncs: Syncs {
            producer: syncs_producer,
            topic: spec.flow.offset_syncs().1,
            acks: sync_acks,
            to_emit: Vec::new(),
        },
        units: Units::default(),
        in_flight: InFlight::default(),
        commit_failed,
        watermarks,
        status: status.clone(),
        fence,
        held: link.held.clone(),
        wanted: Assignment::default(),
        clean: BTreeSet::new(),
        txn,
        stopped: stopped.clone(),
    };
    let result = s.run_loop(consumer, &mut units_rx, shutdown);
    if let Err(SessionError::Fenced) = &result {
        // Write nothing more: drop what librdkafka still queues. Requests
        // already on the wire may land; they carry records past every
        // committed position, which the next owner re-sends anyway.
        s.producer.purge(PurgeConfig::default().queue().inflight());
        s.syncs
            .producer
            .purge(PurgeConfig::default().queue().inflight());
        warn!(flow = %flow, units = s.units.len(), "fenced: stopped producing for every unit");
    } else if let (Err(e), true) = (&result, s.txn.is_some()) {
        // Nothing is known committed past the last transaction: the next
        // session resumes from it.
        warn!(flow = %flow, error = %e, "flow session ending on error; its open transaction is aborted");
    } else if let Err(e) = &result {
        // Whatever was acknowledged before the error is safe to commit.
        warn!(flow = %flow, error = %e, "flow session ending on error");
        let _ = s.handle_acks(consumer);
        s.flush_syncs();
        s.commit(consumer, CommitMode::Sync);
        // Then nothing more goes out: the units are let go below, and a
        // record librdkafka still queues or retries would land among their
        // next owner's. (Requests already on the wire may still land; their
        // records are past every committed position: duplicates, never a
        // loss. docs/failure-model.md.)
        s.producer.purge(PurgeConfig::default().queue().inflight());
    }
    s.status.clear_flow(&flow);
    s.units.clear();
    s.publish_held();
    if result.is_err() {
        // Only once the units are let go: aborting can wait on the target,
        // and the worker must not seem to hold units meanwhile.
        s.abandon_transaction();
    }
    result
}

impl Session<'_> {
    fn run_loop(
        &mut self,
        consumer: &Consumer,
        units_rx: &mut watch::Receiver<Assignment>,
        shutdown: &CancellationToken,
    ) -> Result<(), SessionError> {
        let w = &self.spec.worker;
        let mut next_commit = Instant::now() + w.commit_interval;
        let mut next_syncs = Instant::now() + w.offset_sync_interval;
        let mut next_tick = Instant::now();
        let mut next_id_check = Instant::now() + gaps::ID_CHECK;
        loop {
            if shutdown.is_cancelled() {
                self.drain(consumer, Instant::now() + w.drain_timeout);
                return Ok(());
            }
            if !self.fence.is_open() {
                return Err(SessionError::Fenced);
            }
            // A session held here has looked at its fence and will write
            // (records, syncs, commits) before it looks again.
            #[cfg(test)]
            fail::fail_point!("session::after_fence_check");
            if units_rx.has_changed().unwrap_or(false) {
                self.wanted = units_rx.borrow_and_update().clone();
                self.reconcile(consumer)?;
            }
            self.handle_acks(consumer)?;
            let now = Instant::now();
            match &self.txn {
                // Progress commits with each transaction (and then to the source).
                Some(txn) if now >= txn.next => {
                    self.commit_transaction(consumer, CommitMode::Async)?
                }
                Some(_) => {}
                None if now >= next_commit => {
                    self.commit(consumer, CommitMode::Async);
                    next_commit = now + w.commit_interval;
                }
                None => {}
            }
            if now >= next_syncs {
                self.flush_syncs();
                next_syncs = now + w.offset_sync_interval;
            }
            if now >= next_tick {
                if let Some((code, reason)) = self.producer.client().fatal_error() {
                    return Err(SessionError::ProducerFatal { code, reason });
                }
                self.finish_releases(consumer)?;
                if now >= next_id_check {
                    self.check_topic_ids(consumer)?;
                    next_id_check = now + gaps::ID_CHECK;
                }
                self.report();
                next_tick = now + TICK;
            }
            match consumer.poll(POLL) {
                None => {}
                Some(Ok(msg)) => self.on_record(consumer, &msg, shutdown)?,
                Some(Err(KafkaError::MessageConsumption(
                    rdkafka::types::RDKafkaErrorCode::AutoOffsetReset,
                ))) => self.on_out_of_range(consumer)?,
                Some(Err(e)) => {
                    let kind = ErrorKind::of(&e);
                    match errors::classify_consume(&e) {
                        Action::Retry | Action::Refused => {
                            error_event!(debug, self.spec.flow.name, kind, error = %e, "consume error, librdkafka retries")
                        }
                        Action::RestartSession => {
                            if denials::is_denied(&e) {
                                let flow = &self.spec.flow;
                                let resource = match e.rdkafka_error_code() {
                                    Some(
                                        rdkafka::types::RDKafkaErrorCode::GroupAuthorizationFailed,
                                    ) => denials::group(&flow.commit_group(&self.spec.deployment)),
                                    _ => strait_common::access::flow_topics(flow),
                                };
                                denials::refused(
                                    &flow.source,
                                    &flow.name,
                                    Feature::Replication,
                                    Operation::Read,
                                    resource,
                                    &e.to_string(),
                                );
                            } else {
                                error_event!(warn, self.spec.flow.name, kind, error = %e, "consume error; the session restarts");
                            }
                            return Err(SessionError::Consume(e));
                        }
                    }
                }
            }
        }
    }

    /// Starts units that are wanted and not owned; releases owned units that
    /// are no longer wanted (stop fetching, wait for the target, commit, go).
    fn reconcile(&mut self, consumer: &Consumer) -> Result<(), SessionError> {
        self.stopped.retain(&self.wanted.units);
        let added = self.units_to_start();
        let removed = self.units_to_release();
        if !added.is_empty() {
            self.start_units(consumer, added)?;
        }
        for id in removed {
            self.release_unit(consumer, id);
        }
        self.publish_held();
        Ok(())
    }

    /// The wanted units this session does not hold (a unit still being
    /// released is held: it starts again once released).
    fn units_to_start(&self) -> Vec<Unit> {
        let owned: BTreeSet<&Unit> = self.units.values().map(|u| &u.unit).collect();
        self.wanted
            .units
            .iter()
            .filter(|u| !owned.contains(u))
            .cloned()
            .collect()
    }

    /// The units held and no longer wanted, not being released yet.
    fn units_to_release(&self) -> Vec<UnitId> {
        let wanted = &self.wanted.units;
        self.units
            .ids_where(|u| !wanted.contains(&u.unit) && !u.phase.is_releasing())
    }

    /// Finds where `added` start, assigns them to the consumer, and starts
    /// each.
    fn start_units(&mut self, consumer: &Consumer, added: Vec<Unit>) -> Result<(), SessionError> {
        let StartPlan {
            starts,
            ids,
            mut recreated,
        } = self.plan_starts(consumer, &added)?;
        self.assign(consumer, &added, &starts)?;
        for (u, start) in added.into_iter().zip(starts) {
            let note = recreated.remove(&u);
            let incarnation = ids.get(&u.source.topic).cloned();
            self.start_unit(consumer, u, start.at, note, incarnation);
        }
        Ok(())
    }

    /// Where each of `added` starts. With exactly-once, from the progress
    /// on the target (or the source commit, where further:
    /// txn::resume_from); else the committed position, else the flow's
    /// `start`. A start in another incarnation of its topic is changed or
    /// noted by `check_incarnations`.
    fn plan_starts(&self, consumer: &Consumer, added: &[Unit]) -> Result<StartPlan, SessionError> {
        let topics: BTreeSet<&str> = added.iter().map(|u| u.source.topic.as_str()).collect();
        let topics: Vec<&str> = topics.into_iter().collect();
        let ids = gaps::topic_ids(self.spec, consumer, &topics);
        let starts = match self.txn {
            Some(_) => self.eos_start_positions(consumer, added, &ids)?,
            None => vec![Start::stored(); added.len()],
        };
        // Offset::Stored: the committed position, else the flow's `start`.
        let mut starts = self.resolve_starts(consumer, added, starts)?;
        let recreated = self.check_incarnations(added, &mut starts, &ids);
        Ok(StartPlan {
            starts,
            ids,
            recreated,
        })
    }

    /// Assigns `added` to the consumer at their `starts`, fetching.
    fn assign(
        &self,
        consumer: &Consumer,
        added: &[Unit],
        starts: &[Start],
    ) -> Result<(), SessionError> {
        let mut tpl = TopicPartitionList::new();
        for (u, s) in added.iter().zip(starts) {
            tpl.add_partition_offset(&u.source.topic, u.source.partition, s.at)
                .map_err(SessionError::Assign)?;
        }
        consumer
            .incremental_assign(&tpl)
            .map_err(SessionError::Assign)?;
        // librdkafka keeps a partition's pause flag across unassign and
        // assign: a unit released (paused) and given back would never
        // fetch again without this.
        consumer.resume(&tpl).map_err(SessionError::Assign)
    }

    /// Adds an assigned unit to the table: running, or stopped where it
    /// stopped at a refused record in an earlier session (exactly-once) or
    /// its topic was re-created and `on_source_gap` is `stop` (`note`
    /// says so).
    fn start_unit(
        &mut self,
        consumer: &Consumer,
        u: Unit,
        at: Offset,
        note: Option<String>,
        incarnation: Option<String>,
    ) {
        let stop_recreated = note.is_some() && self.spec.flow.on_source_gap == OnSourceGap::Stop;
        let stopped = self
            .stopped
            .get(&u)
            .or_else(|| note.clone().filter(|_| stop_recreated));
        match &stopped {
            None => {
                info!(flow = %u.flow, topic = %u.source.topic, partition = u.source.partition, remote = %u.remote_topic, at = ?at, "unit started")
            }
            Some(why) => {
                warn!(flow = %u.flow, topic = %u.source.topic, partition = u.source.partition, reason = %why,
                "unit held stopped at a record the target refused; pause and resume it once the target takes it")
            }
        }
        self.clean.remove(&u);
        let phase = Phase::starting(stopped, note);
        let slot = UnitSlot::new(u, phase, at, incarnation, self.spec.flow.offset_lag_max);
        let id = self.units.insert(slot);
        self.apply_pause(consumer, id); // fetches nothing if stopped
    }

    /// A unit no longer wanted: stops fetching, and waits for the target
    /// (at most [`RELEASE_WAIT`]) before `finish_releases` lets it go.
    fn release_unit(&mut self, consumer: &Consumer, id: UnitId) {
        let Some(u) = self.units.get_mut(id) else {
            return;
        };
        info!(flow = %u.unit.flow, topic = %u.unit.source.topic, partition = u.unit.source.partition, "unit releasing");
        u.phase.release(Instant::now() + RELEASE_WAIT);
        self.apply_pause(consumer, id);
    }

    /// Tells the worker which units this session holds, as of which
    /// assignment: it may give up a unit's ownership only once the session
    /// applied an assignment without it and no longer holds it.
    fn publish_held(&self) {
        let units: BTreeSet<Unit> = self.units.values().map(|u| u.unit.clone()).collect();
        self.held.send_replace(Held {
            generation: self.wanted.generation,
            units,
            clean: self.clean.clone(),
        });
    }

    /// Completes releases whose records were all acknowledged (or whose wait ran out).
    fn finish_releases(&mut self, consumer: &Consumer) -> Result<(), SessionError> {
        let now = Instant::now();
        // With exactly-once, a release commits the transaction, which waits
        // for every record: nothing to wait for before.
        let eos = self.txn.is_some();
        let done = self.units.ids_where(|u| {
            u.phase.is_releasing() && (eos || u.progress.settled() || u.phase.release_overdue(now))
        });
        if eos && !done.is_empty() {
            // Their last records and final positions commit together; the
            // member may then tell the next owner there is nobody to fence.
            // The advisory commit too, before the next owner reads it.
            self.commit_transaction(consumer, CommitMode::Sync)?;
        } else if !done.is_empty() {
            // The released units' last syncs must be durable before their
            // final commit, or the commit would stop short of them.
            for &id in &done {
                self.flush_unit_syncs(id);
            }
            let _ = clients::flush(self.syncs.producer, RELEASE_SYNCS_WAIT);
            self.handle_acks(consumer)?;
        }
        if !eos {
            // A release whose wait ran out with records still in flight:
            // they must not reach the target once the unit has moved.
            if let Some(u) = done
                .iter()
                .filter_map(|&id| self.units.get(id))
                .find(|u| !u.progress.settled())
            {
                return Err(SessionError::ReleaseTimedOut {
                    unit: u.unit.clone(),
                    unsettled: u.progress.in_flight(),
                });
            }
        }
        let released = !done.is_empty();
        let mut again = false;
        for id in done {
            if !eos {
                self.commit_units(consumer, &[id], CommitMode::Sync);
            }
            let Some(u) = self.units.remove(id) else {
                continue;
            };
            consumer
                .incremental_unassign(u.fetch.tpl())
                .map_err(SessionError::Assign)?;
            self.status.remove(&u.unit);
            if eos {
                self.clean.insert(u.unit.clone());
            }
            info!(flow = %u.unit.flow, topic = %u.unit.source.topic, partition = u.unit.source.partition,
                  committed = ?u.progress.committed(), unsettled = u.progress.in_flight(), "unit released");
            again |= self.wanted.units.contains(&u.unit);
        }
        if released {
            self.publish_held();
        }
        if again {
            // Wanted back while it was being released: start it again.
            self.reconcile(consumer)?;
        }
        Ok(())
    }

    /// Shutdown: stop fetching, wait (bounded) for the target to acknowledge
    /// what is in flight, flush offset syncs, commit what was acknowledged.
    fn drain(&mut self, consumer: &Consumer, deadline: Instant) {
        let flow = self.spec.flow.name.clone();
        if let Ok(assigned) = consumer.assignment() {
            let _ = consumer.pause(&assigned);
        }
        if self.txn.is_some() {
            // The last transaction.
            match self.commit_transaction(consumer, CommitMode::Sync) {
                Ok(()) => info!(flow = %flow, "flow drained: last transaction committed"),
                Err(e) => {
                    warn!(flow = %flow, error = %e, "last transaction not committed; the next owner resumes before it");
                    self.abandon_transaction();
                }
            }
            return;
        }
        while self.in_flight.records > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if let Err(e) = self.wait_acks(consumer, (deadline - now).min(POLL)) {
                warn!(flow = %flow, error = %e, "error while draining");
                break;
            }
        }
        self.flush_syncs();
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = clients::flush(self.syncs.producer, left.max(Duration::from_secs(1)));
        if let Err(e) = self.handle_acks(consumer) {
            warn!(flow = %flow, error = %e, "error while draining");
        }
        self.commit(consumer, CommitMode::Sync);
        info!(flow = %flow, unacknowledged = self.in_flight.records, "flow drained");
    }
}

#[cfg(test)]
mod error_tests {
    use rdkafka::error::KafkaError;
    use rdkafka::types::RDKafkaErrorCode as Code;

    use strait_common::model::{RecordOffset, TopicPartition, Unit};

    use super::{Broken, SessionError};

    /// A producer's fatal error keeps its code, reads with the code's
    /// description (not a tuple's Debug), and a missing permission is told
    /// by the code wherever the session's error has one.
    #[test]
    fn a_session_error_keeps_the_kafka_code() {
        let fatal = SessionError::ProducerFatal {
            code: Code::TransactionalIdAuthorizationFailed,
            reason: "the reason".into(),
        };
        assert_eq!(
            fatal.kafka_code(),
            Some(Code::TransactionalIdAuthorizationFailed)
        );
        assert_eq!(
            fatal.to_string(),
            format!(
                "producer fatal error: the reason ({})",
                Code::TransactionalIdAuthorizationFailed
            )
        );
        let denied = SessionError::Delivery(KafkaError::MessageProduction(
            Code::TopicAuthorizationFailed,
        ));
        assert!(denied
            .kafka_code()
            .is_some_and(strait_common::access::denials::is_denial));
        assert_eq!(SessionError::Fenced.kafka_code(), None);
    }

    /// A record refused inside a transaction keeps its unit, offset and
    /// code, and says where it is.
    #[test]
    fn a_refusal_in_a_transaction_says_where_and_keeps_the_code() {
        let refused = SessionError::RefusedInTransaction {
            unit: Box::new(Unit {
                flow: "f".into(),
                source: TopicPartition::new("orders", 3),
                remote_topic: "src.orders".into(),
            }),
            offset: RecordOffset(41),
            error: KafkaError::MessageProduction(Code::MessageSizeTooLarge),
        };
        assert_eq!(refused.kafka_code(), Some(Code::MessageSizeTooLarge));
        let said = refused.to_string();
        assert!(
            said.starts_with("orders/3: record at offset 41 refused by the target: "),
            "{said}"
        );
        assert_eq!(
            SessionError::Broken(Broken::NoGroupMetadata).kafka_code(),
            None
        );
    }
}
