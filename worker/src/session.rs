//! One session of a flow: a consumer on the source, an idempotent producer
//! on the target, and the units they replicate. The session thread owns all
//! unit state; librdkafka's callbacks reach it through a channel.
//!
//! The loop: apply unit changes, handle delivery reports, commit and flush
//! offset syncs on their intervals, poll one record and produce it. A
//! session ends on shutdown (drain: stop fetching, wait for the target,
//! commit) or on an error it cannot recover in place; the caller then starts
//! a new session, which resumes every unit from its committed position.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _, PurgeConfig};
use rdkafka::{Offset, TopicPartitionList};
use thiserror::Error;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use strait_common::config::OnRefused;
use strait_common::coord::lease::Fence;
use strait_common::error_event;
use strait_common::formats::OffsetSync;
use strait_common::metrics as m;
use strait_common::model::{RecordOffset, Unit};
use strait_common::telemetry::ErrorKind;

use crate::clients::{
    self, Ack, Consumer, Producer, SyncAck, SyncTag, SyncsProducer, Tag, Watermarks,
};
use crate::errors::{self, Action};
use crate::link::{Assignment, FlowSpec, Held, UnitLink};
use crate::progress::{Hysteresis, UnitProgress};
use crate::status::{StatusBoard, UnitState, UnitStatus};
use strait_common::syncs::Sync;

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
    #[error("producer fatal error: {0}")]
    Fatal(String),
    #[error("offset sync not written: {0}")]
    OffsetSync(KafkaError),
    /// The worker's lease could not be renewed in time: its units may
    /// already belong to another worker, so nothing more is written or
    /// committed.
    #[error("fenced: the coordination lease was not renewed in time")]
    Fenced,
}

struct UnitSlot {
    unit: Unit,
    remote: Arc<str>,
    tpl: TopicPartitionList,
    state: UnitState,
    error: Option<String>,
    /// What was sent, acknowledged and synced, and what may be committed.
    progress: UnitProgress,
    /// The unit's own in-flight limit.
    over_limit: Hysteresis,
    fetch_paused: bool,
    release_deadline: Option<Instant>,
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
    producer: Producer,
    syncs_producer: SyncsProducer,
    syncs_topic: String,
    acks: mpsc::Receiver<Ack>,
    sync_acks: mpsc::Receiver<SyncAck>,
    units: HashMap<u64, UnitSlot>,
    index: HashMap<String, HashMap<i32, u64>>,
    next_id: u64,
    in_flight_bytes: u64,
    in_flight_records: u64,
    /// The flow's in-flight limit.
    flow_over: Hysteresis,
    commit_failed: Arc<AtomicBool>,
    watermarks: Watermarks,
    status: StatusBoard,
    to_emit: Vec<Sync>,
    fence: Fence,
    held: Arc<watch::Sender<Held>>,
    /// The assignment last applied.
    wanted: Assignment,
}

/// Runs one session until shutdown (Ok) or an error (Err).
pub fn run(
    spec: &FlowSpec,
    link: &UnitLink,
    shutdown: &CancellationToken,
    status: &StatusBoard,
) -> Result<(), SessionError> {
    let mut units_rx = link.units.clone();
    units_rx.mark_changed();
    let (acks_tx, acks) = mpsc::channel();
    let (sync_acks_tx, sync_acks) = mpsc::channel();
    let commit_failed = Arc::new(AtomicBool::new(false));
    let watermarks = Watermarks::default();
    let flow = spec.flow.name.clone();
    let consumer = clients::consumer(
        spec,
        clients::SourceContext {
            flow: flow.clone(),
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
    metrics::counter!(m::SESSIONS, "flow" => flow.clone()).increment(1);
    info!(flow = %flow, "flow session started");

    let mut s = Session {
        spec,
        hot: HotMetrics::new(&flow),
        producer,
        syncs_producer,
        syncs_topic: spec.flow.offset_syncs().1,
        acks,
        sync_acks,
        units: HashMap::new(),
        index: HashMap::new(),
        next_id: 0,
        in_flight_bytes: 0,
        in_flight_records: 0,
        flow_over: Hysteresis::default(),
        commit_failed,
        watermarks,
        status: status.clone(),
        to_emit: Vec::new(),
        fence: link.fence.clone(),
        held: link.held.clone(),
        wanted: Assignment::default(),
    };
    let result = s.run_loop(&consumer, &mut units_rx, shutdown);
    if let Err(SessionError::Fenced) = &result {
        // Write nothing more: drop what librdkafka still queues. Requests
        // already on the wire may land; they carry records past every
        // committed position, which the next owner re-sends anyway.
        s.producer.purge(PurgeConfig::default().queue().inflight());
        s.syncs_producer
            .purge(PurgeConfig::default().queue().inflight());
        warn!(flow = %flow, units = s.units.len(), "fenced: stopped producing for every unit");
    } else if let Err(e) = &result {
        // Whatever was acknowledged before the error is safe to commit.
        warn!(flow = %flow, error = %e, "flow session ending on error");
        let _ = s.handle_acks(&consumer);
        s.flush_syncs();
        s.commit(&consumer, CommitMode::Sync);
    }
    s.status.clear_flow(&flow);
    s.units.clear();
    s.publish_held();
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
        loop {
            if shutdown.is_cancelled() {
                self.drain(consumer, Instant::now() + w.drain_timeout);
                return Ok(());
            }
            if !self.fence.is_open() {
                return Err(SessionError::Fenced);
            }
            if units_rx.has_changed().unwrap_or(false) {
                self.wanted = units_rx.borrow_and_update().clone();
                self.reconcile(consumer)?;
            }
            self.handle_acks(consumer)?;
            let now = Instant::now();
            if now >= next_commit {
                self.commit(consumer, CommitMode::Async);
                next_commit = now + w.commit_interval;
            }
            if now >= next_syncs {
                self.flush_syncs();
                next_syncs = now + w.offset_sync_interval;
            }
            if now >= next_tick {
                if let Some(reason) = self.producer.client().fatal_error() {
                    return Err(SessionError::Fatal(format!("{reason:?}")));
                }
                self.finish_releases(consumer)?;
                self.report();
                next_tick = now + TICK;
            }
            match consumer.poll(POLL) {
                None => {}
                Some(Ok(msg)) => self.on_record(consumer, &msg, shutdown)?,
                Some(Err(e)) => {
                    let kind = ErrorKind::of(&e);
                    match errors::classify_consume(&e) {
                        Action::Retry | Action::Refused => {
                            error_event!(debug, self.spec.flow.name, kind, error = %e, "consume error, librdkafka retries")
                        }
                        Action::RestartSession => {
                            error_event!(warn, self.spec.flow.name, kind, error = %e, "consume error; the session restarts");
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
        let wanted = &self.wanted.units;
        let owned: BTreeSet<&Unit> = self.units.values().map(|u| &u.unit).collect();
        let added: Vec<Unit> = wanted
            .iter()
            .filter(|u| !owned.contains(u))
            .cloned()
            .collect();
        let removed: Vec<u64> = self
            .units
            .iter()
            .filter(|(_, u)| !wanted.contains(&u.unit) && u.state != UnitState::Releasing)
            .map(|(id, _)| *id)
            .collect();

        if !added.is_empty() {
            let mut tpl = TopicPartitionList::new();
            for u in &added {
                // Offset::Stored: resume at the committed position, else at
                // `auto.offset.reset` (the flow's `start`).
                tpl.add_partition_offset(&u.source.topic, u.source.partition, Offset::Stored)
                    .map_err(SessionError::Assign)?;
            }
            consumer
                .incremental_assign(&tpl)
                .map_err(SessionError::Assign)?;
            // librdkafka keeps a partition's pause flag across unassign and
            // assign: a unit released (paused) and given back would never
            // fetch again without this.
            consumer.resume(&tpl).map_err(SessionError::Assign)?;
            for u in added {
                let id = self.next_id;
                self.next_id += 1;
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(&u.source.topic, u.source.partition);
                info!(flow = %u.flow, topic = %u.source.topic, partition = u.source.partition, remote = %u.remote_topic, "unit started");
                self.index
                    .entry(u.source.topic.clone())
                    .or_default()
                    .insert(u.source.partition, id);
                self.units.insert(
                    id,
                    UnitSlot {
                        remote: Arc::from(u.remote_topic.as_str()),
                        unit: u,
                        tpl,
                        state: UnitState::Running,
                        error: None,
                        progress: UnitProgress::new(self.spec.flow.offset_lag_max),
                        over_limit: Hysteresis::default(),
                        fetch_paused: false,
                        release_deadline: None,
                    },
                );
            }
        }
        for id in removed {
            let u = self.units.get_mut(&id).expect("listed above");
            info!(flow = %u.unit.flow, topic = %u.unit.source.topic, partition = u.unit.source.partition, "unit releasing");
            u.state = UnitState::Releasing;
            u.release_deadline = Some(Instant::now() + RELEASE_WAIT);
            self.apply_pause(consumer, id);
        }
        self.publish_held();
        Ok(())
    }

    /// Tells the worker which units this session holds, as of which
    /// assignment: it may give up a unit's ownership only once the session
    /// applied an assignment without it and no longer holds it.
    fn publish_held(&self) {
        let units: BTreeSet<Unit> = self.units.values().map(|u| u.unit.clone()).collect();
        self.held.send_replace(Held {
            generation: self.wanted.generation,
            units,
        });
    }

    /// Completes releases whose records were all acknowledged (or whose wait ran out).
    fn finish_releases(&mut self, consumer: &Consumer) -> Result<(), SessionError> {
        let now = Instant::now();
        let done: Vec<u64> = self
            .units
            .iter()
            .filter(|(_, u)| {
                u.state == UnitState::Releasing
                    && (u.progress.settled() || u.release_deadline.is_some_and(|d| now >= d))
            })
            .map(|(id, _)| *id)
            .collect();
        if !done.is_empty() {
            // The released units' last syncs must be durable before their
            // final commit, or the commit would stop short of them.
            for &id in &done {
                self.flush_unit_syncs(id);
            }
            let _ = self.syncs_producer.flush(RELEASE_SYNCS_WAIT);
            self.handle_acks(consumer)?;
        }
        let released = !done.is_empty();
        let mut again = false;
        for id in done {
            self.commit_units(consumer, &[id], CommitMode::Sync);
            let u = self.units.remove(&id).expect("listed above");
            consumer
                .incremental_unassign(&u.tpl)
                .map_err(SessionError::Assign)?;
            if let Some(parts) = self.index.get_mut(&u.unit.source.topic) {
                parts.remove(&u.unit.source.partition);
            }
            self.status.remove(&u.unit);
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

    fn on_record(
        &mut self,
        consumer: &Consumer,
        msg: &BorrowedMessage<'_>,
        shutdown: &CancellationToken,
    ) -> Result<(), SessionError> {
        let Some(&id) = self
            .index
            .get(msg.topic())
            .and_then(|p| p.get(&msg.partition()))
        else {
            return Ok(()); // unassigned meanwhile
        };
        let offset = RecordOffset(msg.offset());
        let (remote, partition) = {
            let u = self.units.get_mut(&id).expect("indexed");
            if !matches!(u.state, UnitState::Running | UnitState::Paused) {
                return Ok(()); // failed or releasing: resumes from the committed position later
            }
            if !u.progress.accepts(offset) {
                return Ok(()); // already sent in this session
            }
            (u.remote.clone(), u.unit.source.partition)
        };
        let key = msg.key();
        let payload = msg.payload();
        let bytes = (key.map_or(0, <[u8]>::len) + payload.map_or(0, <[u8]>::len)) as u64;
        let timestamp = msg.timestamp().to_millis();
        let tag = Box::new(Tag {
            unit: id,
            offset: offset.0,
            bytes,
            timestamp_ms: timestamp.unwrap_or(0),
        });
        let mut record =
            BaseRecord::<[u8], [u8], Box<Tag>>::with_opaque_to(&remote, tag).partition(partition);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(p) = payload {
            record = record.payload(p);
        }
        if let Some(ts) = timestamp {
            record = record.timestamp(ts);
        }
        if let Some(h) = msg.headers() {
            let mut owned = OwnedHeaders::new_with_capacity(h.count());
            for header in h.iter() {
                owned = owned.insert(Header {
                    key: header.key,
                    value: header.value,
                });
            }
            record = record.headers(owned);
        }
        if !self.fence.is_open() {
            return Err(SessionError::Fenced);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((e, back)) => match errors::classify_produce(&e) {
                    Action::Retry => {
                        // librdkafka's queue is full: let deliveries drain.
                        record = back;
                        self.wait_acks(consumer, Duration::from_millis(10))?;
                        if shutdown.is_cancelled() {
                            return Ok(()); // not sent: re-read after restart
                        }
                    }
                    Action::Refused => {
                        self.refused(consumer, id, offset, bytes, &e, false);
                        return Ok(());
                    }
                    Action::RestartSession => return Err(SessionError::Delivery(e)),
                },
            }
        }
        let u = self.units.get_mut(&id).expect("indexed");
        u.progress.sent(offset, bytes);
        self.in_flight_bytes += bytes;
        self.in_flight_records += 1;
        self.flow_control(consumer, id);
        Ok(())
    }

    /// A record the target refuses for good: skip and count it, or stop the
    /// unit visibly. `in_flight` says whether it was handed to the producer.
    fn refused(
        &mut self,
        consumer: &Consumer,
        id: u64,
        offset: RecordOffset,
        bytes: u64,
        e: &KafkaError,
        in_flight: bool,
    ) {
        let flow = self.spec.flow.name.clone();
        let u = self.units.get_mut(&id).expect("caller checked");
        match self.spec.flow.on_refused {
            OnRefused::Skip => {
                self.to_emit.clear();
                let skipped = u
                    .progress
                    .skipped(offset, bytes, in_flight, &mut self.to_emit);
                metrics::counter!(m::RECORDS_SKIPPED, "flow" => flow.clone()).increment(1);
                // A refused batch can be thousands of records: the first one
                // of a unit's session is logged, the rest are counted.
                let offset = offset.0;
                if skipped == 1 {
                    error_event!(warn, flow, ErrorKind::of(e), topic = %u.unit.source.topic, partition = u.unit.source.partition,
                          offset, error = %e, "record refused by the target, skipped (on_refused = skip); further skips of this partition are only counted (strait_records_skipped_total)");
                } else {
                    error_event!(debug, flow, ErrorKind::of(e), topic = %u.unit.source.topic, partition = u.unit.source.partition,
                           offset, error = %e, "record skipped");
                }
                self.emit_syncs(id);
            }
            OnRefused::Stop => {
                let remedy = errors::remedy(e)
                    .map(|r| format!("; {r}"))
                    .unwrap_or_default();
                let offset = offset.0;
                let reason = format!(
                    "record at offset {offset} ({bytes} bytes) refused by the target: {e}{remedy}"
                );
                error_event!(error, flow, ErrorKind::of(e), topic = %u.unit.source.topic, partition = u.unit.source.partition,
                       offset, bytes, error = %e, remedy, "unit stopped: record refused by the target");
                u.state = UnitState::Failed;
                u.error = Some(reason);
                self.apply_pause(consumer, id);
            }
        }
    }

    fn wait_acks(&mut self, consumer: &Consumer, timeout: Duration) -> Result<(), SessionError> {
        if let Ok(ack) = self.acks.recv_timeout(timeout) {
            self.on_ack(consumer, ack)?;
        }
        self.handle_acks(consumer)
    }

    fn handle_acks(&mut self, consumer: &Consumer) -> Result<(), SessionError> {
        while let Ok(ack) = self.acks.try_recv() {
            self.on_ack(consumer, ack)?;
        }
        while let Ok(SyncAck { tag, result }) = self.sync_acks.try_recv() {
            if let Err(e) = result {
                // With no delivery timeout only a permanent refusal (e.g. not
                // authorised on the offset-syncs topic) gets here.
                return Err(SessionError::OffsetSync(e));
            }
            if let Some(u) = self.units.get_mut(&tag.unit) {
                u.progress.sync_acked(tag.upstream);
            }
        }
        Ok(())
    }

    fn on_ack(&mut self, consumer: &Consumer, ack: Ack) -> Result<(), SessionError> {
        let Tag {
            unit: id,
            offset,
            bytes,
            timestamp_ms,
        } = *ack.tag;
        let offset = RecordOffset(offset);
        self.in_flight_bytes -= bytes;
        self.in_flight_records -= 1;
        if !self.units.contains_key(&id) {
            return Ok(()); // released; its records are the next owner's
        }
        match ack.result {
            Ok(downstream) => {
                let flow = &self.spec.flow.name;
                let u = self.units.get_mut(&id).expect("checked");
                self.to_emit.clear();
                if let Err(e) = u
                    .progress
                    .acked(offset, downstream, bytes, &mut self.to_emit)
                {
                    debug_assert!(false, "acknowledgement of a record not in flight: {e:?}");
                    warn!(flow = %flow, error = ?e, "ignored a delivery report for a record not in flight");
                }
                self.status.count_acknowledged(1);
                self.hot.records.increment(1);
                self.hot.bytes.increment(bytes);
                if timestamp_ms > 0 {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    self.hot
                        .latency
                        .record((now - timestamp_ms).max(0) as f64 / 1000.0);
                }
                self.emit_syncs(id);
            }
            Err(e) => match errors::classify_produce(&e) {
                Action::Refused => self.refused(consumer, id, offset, bytes, &e, true),
                Action::Retry | Action::RestartSession => {
                    error_event!(warn, self.spec.flow.name, ErrorKind::of(&e), error = %e, "delivery failed; the session restarts");
                    return Err(SessionError::Delivery(e));
                }
            },
        }
        self.flow_control(consumer, id);
        Ok(())
    }

    /// Emits the offset syncs the unit's last progress called for (in `to_emit`).
    fn emit_syncs(&mut self, id: u64) {
        for i in 0..self.to_emit.len() {
            let (up, down) = self.to_emit[i];
            self.emit_sync(id, up, down);
        }
    }

    fn emit_sync(&mut self, id: u64, upstream: i64, downstream: i64) {
        let u = &self.units[&id];
        let sync = OffsetSync {
            topic: u.unit.source.topic.clone(),
            partition: u.unit.source.partition,
            upstream_offset: upstream,
            downstream_offset: downstream,
        };
        let Ok(key) = sync.encode_key() else {
            return; // a topic name can't exceed 249 bytes in Kafka
        };
        let value = sync.encode_value();
        let tag = Box::new(SyncTag { unit: id, upstream });
        let record = BaseRecord::<[u8], [u8], Box<SyncTag>>::with_opaque_to(&self.syncs_topic, tag)
            .partition(0)
            .key(&key)
            .payload(&value);
        match self.syncs_producer.send(record) {
            Ok(()) => {
                self.hot.syncs.increment(1);
                let u = self.units.get_mut(&id).expect("looked up above");
                u.progress.sync_sent(upstream);
            }
            Err((e, _)) => {
                // Not queued (the queue is full): the next flush emits the
                // latest again; exactness may suffer, soundness does not.
                error_event!(warn, self.spec.flow.name, ErrorKind::of(&e), error = %e, "offset sync not queued");
            }
        }
    }

    fn flush_unit_syncs(&mut self, id: u64) {
        if let Some((up, down)) = self
            .units
            .get_mut(&id)
            .and_then(|u| u.progress.flush_sync())
        {
            self.emit_sync(id, up, down);
        }
    }

    fn flush_syncs(&mut self) {
        let ids: Vec<u64> = self.units.keys().copied().collect();
        for id in ids {
            self.flush_unit_syncs(id);
        }
    }

    /// Back-pressure with hysteresis: a unit pauses above its in-flight limit
    /// and resumes below half of it; the flow likewise with its own limit.
    fn flow_control(&mut self, consumer: &Consumer, id: u64) {
        let max = self.spec.worker.max_in_flight_bytes;
        if self.flow_over.update(self.in_flight_bytes, max) {
            debug!(flow = %self.spec.flow.name, paused = self.flow_over.is_over(), bytes = self.in_flight_bytes, "flow in-flight limit");
            let ids: Vec<u64> = self.units.keys().copied().collect();
            for id in ids {
                self.apply_pause(consumer, id);
            }
        } else {
            self.apply_pause(consumer, id);
        }
    }

    fn apply_pause(&mut self, consumer: &Consumer, id: u64) {
        let unit_max = self.spec.worker.unit_max_in_flight_bytes;
        let Some(u) = self.units.get_mut(&id) else {
            return;
        };
        u.over_limit.update(u.progress.in_flight_bytes(), unit_max);
        let stopped = matches!(u.state, UnitState::Failed | UnitState::Releasing);
        let want = stopped || u.over_limit.is_over() || self.flow_over.is_over();
        if want != u.fetch_paused {
            let r = if want {
                consumer.pause(&u.tpl)
            } else {
                consumer.resume(&u.tpl)
            };
            if let Err(e) = r {
                warn!(flow = %u.unit.flow, error = %e, "pause/resume failed");
                return;
            }
            u.fetch_paused = want;
        }
        if !stopped {
            u.state = if want {
                UnitState::Paused
            } else {
                UnitState::Running
            };
        }
    }

    /// Commits, for every unit, the position past its contiguous
    /// acknowledged records (never further).
    fn commit(&mut self, consumer: &Consumer, mode: CommitMode) {
        let ids: Vec<u64> = self.units.keys().copied().collect();
        self.commit_units(consumer, &ids, mode);
    }

    fn commit_units(&mut self, consumer: &Consumer, ids: &[u64], mode: CommitMode) {
        if !self.fence.is_open() {
            return; // the units may have moved: their new owner commits
        }
        let force = self.commit_failed.swap(false, Ordering::Relaxed);
        let mut tpl = TopicPartitionList::new();
        let mut moved = Vec::new();
        for id in ids {
            let Some(u) = self.units.get(id) else {
                continue;
            };
            let pos = match u.progress.to_commit(force) {
                Ok(Some(pos)) => pos,
                Ok(None) => continue,
                Err(breach) => {
                    // Cannot happen while the window is right; if it does, the
                    // commit would skip records the target never acknowledged.
                    m::violated(m::COMMIT_PAST_ACK);
                    error!(flow = %self.spec.flow.name, topic = %u.unit.source.topic,
                           partition = u.unit.source.partition, commit = breach.position.0,
                           acknowledged = ?breach.acknowledged_high,
                           "invariant broken: commit past acknowledged records; not committed");
                    continue;
                }
            };
            if tpl
                .add_partition_offset(
                    &u.unit.source.topic,
                    u.unit.source.partition,
                    Offset::Offset(pos.0),
                )
                .is_ok()
            {
                moved.push((*id, pos));
            }
        }
        if moved.is_empty() {
            return;
        }
        match consumer.commit(&tpl, mode) {
            Ok(()) => {
                for (id, pos) in moved {
                    if let Some(u) = self.units.get_mut(&id) {
                        u.progress.committed_at(pos);
                    }
                }
                metrics::counter!(m::COMMITS, "flow" => self.spec.flow.name.clone()).increment(1);
            }
            Err(e) => {
                self.commit_failed.store(true, Ordering::Relaxed);
                error_event!(warn, self.spec.flow.name, ErrorKind::of(&e), error = %e, "commit failed; will retry");
            }
        }
    }

    /// Shutdown: stop fetching, wait (bounded) for the target to acknowledge
    /// what is in flight, flush offset syncs, commit what was acknowledged.
    fn drain(&mut self, consumer: &Consumer, deadline: Instant) {
        let flow = self.spec.flow.name.clone();
        if let Ok(assigned) = consumer.assignment() {
            let _ = consumer.pause(&assigned);
        }
        while self.in_flight_records > 0 {
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
        let _ = self.syncs_producer.flush(left.max(Duration::from_secs(1)));
        if let Err(e) = self.handle_acks(consumer) {
            warn!(flow = %flow, error = %e, "error while draining");
        }
        self.commit(consumer, CommitMode::Sync);
        info!(flow = %flow, unacknowledged = self.in_flight_records, "flow drained");
    }

    /// Publishes unit states, lag and in-flight bytes (metrics and status).
    fn report(&mut self) {
        let flow = self.spec.flow.name.clone();
        let per_partition = self.spec.per_partition_metrics;
        let watermarks = self
            .watermarks
            .lock()
            .map(|w| w.clone())
            .unwrap_or_default();
        let mut by_state = [0u64; 4];
        let mut total_lag = 0i64;
        for u in self.units.values() {
            by_state[u.state as usize] += 1;
            let tp = &u.unit.source;
            let position = u.progress.position().map(|p| p.0);
            let lag = watermarks
                .get(&(tp.topic.clone(), tp.partition))
                .zip(position)
                .map(|(hw, pos)| (hw - pos).max(0));
            total_lag += lag.unwrap_or(0);
            if per_partition {
                let labels = [
                    ("flow", flow.clone()),
                    ("topic", tp.topic.clone()),
                    ("partition", tp.partition.to_string()),
                ];
                metrics::gauge!(m::UNIT_STATE, &labels).set(u.state as u8 as f64);
                if let Some(lag) = lag {
                    metrics::gauge!(m::UNIT_LAG, &labels).set(lag as f64);
                }
            }
            self.status.set(
                &u.unit,
                UnitStatus {
                    state: u.state,
                    committed: u.progress.committed().map(|p| p.0),
                    acknowledged: u.progress.acknowledged().map(|p| p.0),
                    in_flight: u.progress.in_flight() as u64,
                    lag,
                    error: u.error.clone(),
                    bytes: u.progress.acked_bytes(),
                },
            );
        }
        for (state, n) in UnitState::ALL.iter().zip(by_state) {
            metrics::gauge!(m::UNITS, "flow" => flow.clone(), "state" => state.as_str())
                .set(n as f64);
        }
        metrics::gauge!(m::LAG, "flow" => flow.clone()).set(total_lag as f64);
        metrics::gauge!(m::IN_FLIGHT_BYTES, "flow" => flow).set(self.in_flight_bytes as f64);
    }
}
