//! The checkpoint service of one flow, run by the leader.
//!
//! It tails the offset-syncs topic with one reader for its whole life.
//! Every `checkpoint_interval` a round lists the source groups once,
//! fetches the selected groups' committed offsets with a bounded number of
//! admin requests in flight, translates only what changed since the last
//! round, and writes the checkpoints that move forward in one transaction.
//! With `sync_group_offsets`, the groups whose checkpoints moved are then
//! committed to the target (idle groups only, never backwards).
//!
//! How far the target trails each group is tracked ([`Freshness`]) and
//! exported: `strait_checkpoint_lag_seconds` and
//! `strait_group_offsets_sync_lag_seconds`, with the oldest group in
//! `/v1/status`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use strait_common::access::{denials, Feature, Name, Operation, Resource};
use strait_common::config::Flow;
use strait_common::coord::lease::Fence;
use strait_common::error_event;
use strait_common::formats::{Checkpoint, OffsetSync};
use strait_common::kafka::client_config;
use strait_common::metrics as m;
use strait_common::policy::checkpoints_topic;
use strait_common::telemetry::ErrorKind;

use super::core::{Checkpoints, Freshness};
use super::groups::{failover_groups, group_client, list_groups, source_positions, GroupOutcome};
use super::reader::InternalTopic;
use super::spec::CheckpointSpec;
use super::READ_TIMEOUT;
use crate::admin;

/// How one flow's checkpoints keep up, for `/v1/status`.
#[derive(Debug, Clone, Default)]
pub struct CheckpointHealth {
    /// Groups the last round checkpointed.
    pub groups: usize,
    /// How long the last round took.
    pub round: Duration,
    /// The group whose checkpoints trail its source commits most, and
    /// since when (the time its positions were read).
    pub oldest: Option<(String, Instant)>,
    /// The same for the offsets committed to the target groups
    /// (`sync_group_offsets`); groups active on the target are not counted.
    pub sync_oldest: Option<(String, Instant)>,
    /// Groups `sync_group_offsets` left alone: active on the target.
    pub active_on_target: usize,
}

/// Every flow's [`CheckpointHealth`], as the leader's services report it.
pub type CheckpointBoard = Arc<Mutex<BTreeMap<String, CheckpointHealth>>>;

/// Between rounds, how often the freshness gauges are brought up to date
/// (and the offset syncs fetched meanwhile taken in).
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// How long the group-offsets sync waits after a failed batch.
const SYNC_RETRY: Duration = Duration::from_secs(1);

/// While the leader's lease is lapsing, how often the group-offsets sync
/// looks whether it was renewed (nothing wakes it on a renewal; the stop
/// usually comes first).
const FENCE_RECHECK: Duration = Duration::from_millis(250);

/// Runs the checkpoint service of one flow until `shutdown`, writing only
/// while `fence` (the leader's lease) is open: a leader paused past its
/// lease, running again, must not emit what it computed before the pause
/// (another leader emitted newer checkpoints meanwhile).
pub async fn run_checkpoints(
    spec: CheckpointSpec,
    fence: Fence,
    board: CheckpointBoard,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Some(interval) = spec.flow.checkpoints else {
        return Ok(());
    };
    let spec = Arc::new(spec);
    let shared = Arc::new(Shared::default());
    // The service's threads wait on `shared`, not on the token: the stop
    // is passed on to them there.
    let stopper = tokio::spawn({
        let (shared, shutdown) = (shared.clone(), shutdown.clone());
        async move {
            shutdown.cancelled().await;
            shared.stop();
        }
    });
    let done = tokio::task::spawn_blocking(move || {
        let result =
            start_until_up(&spec, interval, &board, &shared, &shutdown).and_then(|mut s| {
                // A service held here has fenced the previous leader and read
                // its floor, and has not begun a round.
                #[cfg(test)]
                fail::fail_point!("checkpoint::started");
                if !spec.flow.sync_group_offsets {
                    return s.run(&fence, &shutdown);
                }
                std::thread::scope(|scope| {
                    scope.spawn(|| sync_loop(&spec, &shared, &fence));
                    let result = s.run(&fence, &shutdown);
                    shared.stop();
                    result
                })
            });
        if let Ok(mut b) = board.lock() {
            b.remove(&spec.flow.name);
        }
        result
    })
    .await;
    stopper.abort();
    done.context("checkpoint service panicked")?
}

/// Starts the service, again and again while the target cannot be read or
/// the previous leader cannot be fenced (the target down as leadership
/// began), until it starts or `shutdown`.
fn start_until_up<'a>(
    spec: &'a CheckpointSpec,
    interval: Duration,
    board: &'a CheckpointBoard,
    shared: &Arc<Shared>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Service<'a>> {
    let mut backoff = Duration::from_millis(500);
    loop {
        match Service::start(spec, interval, board, shared.clone(), shutdown) {
            Ok(s) => return Ok(s),
            Err(e) if !shutdown.is_cancelled() => {
                if admin::is_denied(&e) {
                    // Reported once, with the ACL to add, where it was refused.
                    error_event!(debug, spec.flow.name, ErrorKind::Checkpoint, error = format!("{e:#}"),
                        "checkpoint service not started (a permission is missing); trying again in {backoff:?}");
                } else {
                    error_event!(
                        warn,
                        spec.flow.name,
                        ErrorKind::Checkpoint,
                        error = format!("{e:#}"),
                        "checkpoint service not started; trying again in {backoff:?}"
                    );
                }
                shared.stopped_within(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(e),
        }
    }
}

struct Service<'a> {
    spec: &'a CheckpointSpec,
    interval: Duration,
    board: &'a CheckpointBoard,
    state: Checkpoints,
    syncs: InternalTopic,
    source: BaseConsumer,
    cp_topic: String,
    producer: Option<ThreadedProducer<DefaultProducerContext>>,
    checkpointed: Freshness,
    /// Shared with the group-offsets sync (`sync_group_offsets`), and
    /// where the service waits between rounds.
    shared: Arc<Shared>,
    last_round: Duration,
    groups: usize,
    metrics: Metrics,
}

struct Metrics {
    emitted: metrics::Counter,
    lag: metrics::Gauge,
    sync_lag: metrics::Gauge,
    round: metrics::Gauge,
    rounds: metrics::Counter,
    overrun: metrics::Counter,
    groups: metrics::Gauge,
}

impl<'a> Service<'a> {
    /// Fences the previous leader's checkpoint writer, then rebuilds "never
    /// backwards" from what earlier runs wrote, then reads the offset syncs
    /// written so far.
    ///
    /// Fence first: a previous leader paused before its EndTxn could
    /// otherwise commit checkpoints after this read, above the floor read
    /// here, and this service could then write below them. After the fence
    /// its transaction is either committed (and read here: the reader is
    /// read_committed and reads to the end, past every open transaction)
    /// or aborted.
    fn start(
        spec: &'a CheckpointSpec,
        interval: Duration,
        board: &'a CheckpointBoard,
        shared: Arc<Shared>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let flow = &spec.flow.name;
        let own = spec.flow.reader_group(&spec.deployment, "checkpoints");
        let cp_topic = checkpoints_topic(&spec.flow.source);
        let target = &spec.flow.target;
        let producer = noting(
            spec,
            target,
            Operation::Write,
            txn_ids(spec),
            checkpoint_producer(spec),
        )?;
        let mut state = Checkpoints::default();
        let mut restored = 0u64;
        let mut reader = InternalTopic::open(&spec.target, &own, &cp_topic)?;
        let read = reader.read_to_end(READ_TIMEOUT, |k, v, _| {
            if let Ok(cp) = Checkpoint::decode(k, v) {
                if !state.restore(&cp) {
                    m::violated(m::CHECKPOINT_BACKWARDS);
                    error!(flow = %flow, group = %cp.group, topic = %cp.topic, partition = cp.partition,
                           offset = cp.downstream_offset, "invariant broken: the checkpoints topic holds a checkpoint below an earlier one");
                }
                restored += 1;
            }
        });
        noting(
            spec,
            target,
            Operation::Read,
            denials::topic(&cp_topic),
            read,
        )?;
        drop(reader);
        let (syncs_alias, syncs_topic) = spec.flow.offset_syncs();
        let mut syncs = InternalTopic::open(&spec.syncs_cluster, &own, &syncs_topic)?;
        let mut n = 0u64;
        if !shutdown.is_cancelled() {
            let read = syncs.read_to_end(READ_TIMEOUT, |k, v, _| {
                if let Ok(sync) = OffsetSync::decode(k, v) {
                    state.observe_sync(&sync);
                    n += 1;
                }
            });
            noting(
                spec,
                syncs_alias,
                Operation::Read,
                denials::topic(&syncs_topic),
                read,
            )?;
        }
        info!(flow = %flow, restored, syncs = n, "checkpoint service started");
        let f = flow.clone();
        Ok(Service {
            spec,
            interval,
            board,
            state,
            syncs,
            source: group_client(&spec.source, &own)?,
            cp_topic,
            producer: Some(producer),
            checkpointed: Freshness::default(),
            shared,
            last_round: Duration::ZERO,
            groups: 0,
            metrics: Metrics {
                emitted: metrics::counter!(m::CHECKPOINTS, "flow" => f.clone()),
                lag: metrics::gauge!(m::CHECKPOINT_LAG, "flow" => f.clone()),
                sync_lag: metrics::gauge!(m::GROUP_SYNC_LAG, "flow" => f.clone()),
                round: metrics::gauge!(m::CHECKPOINT_ROUND, "flow" => f.clone()),
                rounds: metrics::counter!(m::CHECKPOINT_ROUNDS, "flow" => f.clone()),
                overrun: metrics::counter!(m::CHECKPOINT_ROUNDS_OVERRUN, "flow" => f.clone()),
                groups: metrics::gauge!(m::CHECKPOINT_GROUPS, "flow" => f.clone()),
            },
        })
    }

    fn run(&mut self, fence: &Fence, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let flow = self.spec.flow.name.clone();
        let mut next = Instant::now();
        while !shutdown.is_cancelled() {
            self.take_syncs();
            self.report();
            let now = Instant::now();
            if now < next {
                // The offset syncs matter only to a round: idle until it
                // is due (reporting meanwhile), or the service stops.
                self.shared.stopped_within((next - now).min(REPORT_EVERY));
                continue;
            }
            let started = Instant::now();
            next = started + self.interval;
            if !fence.is_open() {
                continue; // leadership is ending; `shutdown` follows
            }
            self.round(fence, started);
            self.last_round = started.elapsed();
            self.metrics.round.set(self.last_round.as_secs_f64());
            if self.last_round > self.interval {
                self.metrics.overrun.increment(1);
                warn!(flow = %flow, took = ?self.last_round, interval = ?self.interval, groups = self.groups,
                      "checkpoint round took longer than checkpoint_interval");
            }
        }
        Ok(())
    }

    /// Takes every offset sync fetched since the last look, without
    /// waiting for more.
    fn take_syncs(&mut self) {
        let flow = &self.spec.flow.name;
        let state = &mut self.state;
        let taken =
            self.syncs
                .poll_ready(Duration::ZERO, |k, v, _| match OffsetSync::decode(k, v) {
                    Ok(sync) => state.observe_sync(&sync),
                    Err(e) => debug!(flow = %flow, error = %e, "offset sync skipped"),
                });
        if let Err(e) = taken {
            warn!(flow = %flow, error = format!("{e:#}"), "reading offset syncs");
        }
    }

    /// Publishes how fresh the checkpoints are.
    fn report(&self) {
        let now = Instant::now();
        let age = |f: &Freshness| f.oldest(now).map_or(0.0, |(_, a)| a.as_secs_f64());
        let since = |f: &Freshness| {
            f.oldest(now)
                .map(|(g, a)| (g.to_owned(), now.checked_sub(a).unwrap_or(now)))
        };
        self.metrics.lag.set(age(&self.checkpointed));
        let (sync_oldest, active_on_target) = {
            let sync = self.shared.lock();
            if self.spec.flow.sync_group_offsets {
                self.metrics.sync_lag.set(age(&sync.synced));
            }
            (since(&sync.synced), sync.active.len())
        };
        let since = |f: &Freshness| {
            f.oldest(now)
                .map(|(g, a)| (g.to_owned(), now.checked_sub(a).unwrap_or(now)))
        };
        if let Ok(mut b) = self.board.lock() {
            b.insert(
                self.spec.flow.name.clone(),
                CheckpointHealth {
                    groups: self.groups,
                    round: self.last_round,
                    oldest: since(&self.checkpointed),
                    sync_oldest,
                    active_on_target,
                },
            );
        }
    }

    fn round(&mut self, fence: &Fence, started: Instant) {
        self.round_inner(fence, started);
        #[cfg(test)]
        fail::fail_point!("checkpoint::round_end");
    }

    fn round_inner(&mut self, fence: &Fence, started: Instant) {
        let flow = self.spec.flow.name.clone();
        if self.producer.is_none() {
            match checkpoint_producer(self.spec) {
                Ok(p) => self.producer = Some(p),
                Err(e) => {
                    error_event!(
                        warn,
                        flow,
                        ErrorKind::Checkpoint,
                        error = format!("{e:#}"),
                        "checkpoint producer not ready"
                    );
                    return;
                }
            }
        }
        let marks = self.state.marks();
        match self.checkpoint_round(fence, started) {
            Ok(landed) => {
                self.metrics.rounds.increment(1);
                for g in &landed {
                    self.checkpointed.landed(g, started);
                }
            }
            Err(e) => {
                // Nothing of the round was written: emit it again next time.
                self.state.roll_back(marks);
                let text = format!("{e:#}");
                if let Some(refused) = admin::kafka_code(&e).and_then(RoundRefusal::of) {
                    let resource = match refused {
                        RoundRefusal::TransactionalId => txn_ids(self.spec),
                        RoundRefusal::Topic => denials::topic(&self.cp_topic),
                    };
                    denials::refused(
                        &self.spec.flow.target,
                        &flow,
                        Feature::Checkpoints,
                        Operation::Write,
                        resource,
                        &text,
                    );
                    error_event!(
                        debug,
                        flow,
                        ErrorKind::Checkpoint,
                        error = text,
                        "checkpoint round failed; its checkpoints are aborted"
                    );
                } else {
                    error_event!(
                        warn,
                        flow,
                        ErrorKind::Checkpoint,
                        error = text,
                        "checkpoint round failed; its checkpoints are aborted"
                    );
                }
                if let Some(p) = &self.producer {
                    let _ = p.abort_transaction(Duration::from_secs(10));
                    if p.client().fatal_error().is_some() {
                        self.producer = None; // fenced by a newer leader, or broken: start over
                    }
                }
            }
        }
    }

    /// Lists the groups, reads their positions, and writes what moved
    /// forward in one transaction. Returns the groups whose positions were
    /// all read and whose checkpoints landed.
    fn checkpoint_round(&mut self, fence: &Fence, started: Instant) -> anyhow::Result<Vec<String>> {
        let flow = &self.spec.flow;
        let groups: Vec<String> = list_groups(&self.source)?
            .into_keys()
            .filter(|g| flow.checkpoints_group(g))
            .collect();
        let live: HashSet<&str> = groups.iter().map(String::as_str).collect();
        self.state.retain_groups(&live);
        self.checkpointed.retain(|g| live.contains(g));
        {
            let mut sync = self.shared.lock();
            let sync = &mut *sync;
            sync.synced.retain(|g| live.contains(g));
            sync.pending.retain(|g, _| live.contains(g.as_str()));
            sync.active.retain(|g| live.contains(g.as_str()));
            for g in &groups {
                self.checkpointed.seen(g, started);
                if flow.sync_group_offsets && !sync.active.contains(g) {
                    sync.synced.seen(g, started);
                }
            }
        }
        self.groups = groups.len();
        self.metrics.groups.set(groups.len() as f64);
        let positions = source_positions(&self.source, &groups);
        let producer = self.producer.as_ref().expect("created above");
        producer.begin_transaction()?;
        let mut landed = Vec::with_capacity(groups.len());
        let mut moved = Vec::new();
        for (group, result) in positions {
            let positions = match result {
                Ok(p) => p,
                Err(e) => {
                    let text = e.to_string();
                    if denials::is_denial(e.error.code) {
                        denials::refused(
                            &flow.source,
                            &flow.name,
                            Feature::Checkpoints,
                            Operation::Describe,
                            denials::group(&group),
                            &text,
                        );
                    } else {
                        error_event!(
                            warn,
                            flow.name,
                            ErrorKind::Checkpoint,
                            group,
                            error = text,
                            "group offsets not read; retried next round"
                        );
                    }
                    continue;
                }
            };
            let mut any = false;
            for (tp, committed, metadata) in positions {
                let Some(cp) = self
                    .state
                    .checkpoint(flow, &group, &tp, committed, &metadata)
                else {
                    continue;
                };
                // Checked per record: the round may have begun before a pause.
                anyhow::ensure!(
                    fence.is_open(),
                    "the leader's lease lapsed mid-round; nothing more is written"
                );
                let (key, value) = (cp.encode_key()?, cp.encode_value()?);
                let record = BaseRecord::to(&self.cp_topic)
                    .partition(0)
                    .key(&key)
                    .payload(&value);
                producer.send(record).map_err(|(e, _)| e)?;
                self.metrics.emitted.increment(1);
                any = true;
                debug!(flow = %flow.name, group, topic = %cp.topic, partition = cp.partition,
                       upstream = cp.upstream_offset, downstream = cp.downstream_offset, "checkpoint");
            }
            if any {
                moved.push(group.clone());
            }
            landed.push(group);
        }
        anyhow::ensure!(
            fence.is_open(),
            "the leader's lease lapsed mid-round; nothing more is written"
        );
        // A leader held here has checked its fence and will commit.
        #[cfg(test)]
        fail::fail_point!("checkpoint::before_commit");
        producer.commit_transaction(Duration::from_secs(10))?;
        if flow.sync_group_offsets {
            let mut sync = self.shared.lock();
            for g in moved {
                let offsets = self.state.emitted(&g);
                sync.pending.insert(g, (offsets, started));
            }
            drop(sync);
            self.shared.wake.notify_all();
        }
        Ok(landed)
    }
}

/// A group's positions to sync, by remote partition, and when they were
/// read on the source.
type Pending = (Vec<crate::native_admin::PartitionPosition>, Instant);

/// What the checkpoint rounds hand to the group-offsets sync, and what it
/// reports back.
#[derive(Default)]
struct SyncState {
    /// Per group: its newest checkpointed positions not yet on the target,
    /// and when they were read on the source.
    pending: HashMap<String, Pending>,
    synced: Freshness,
    /// Groups refused because they are active on the target.
    active: HashSet<String>,
    /// The service stops: every thread of it returns.
    stopped: bool,
}

/// What the service's threads share and wait on: the group-offsets sync's
/// state and the stop, under one lock with one condvar, so a thread waits
/// for its work, its deadline and the stop at once.
#[derive(Default)]
struct Shared {
    state: Mutex<SyncState>,
    /// Notified when groups are handed to the sync, and on the stop.
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, SyncState> {
        self.state.lock().expect("sync state")
    }

    /// Stops the service: every wait below returns, for good.
    fn stop(&self) {
        self.lock().stopped = true;
        self.wake.notify_all();
    }

    /// Waits up to `timeout` for the stop; true once stopped.
    fn stopped_within(&self, timeout: Duration) -> bool {
        let (state, _) = self
            .wake
            .wait_timeout_while(self.lock(), timeout, |s| !s.stopped)
            .expect("sync state");
        state.stopped
    }

    /// Waits for groups to sync and takes them; `None` once stopped.
    /// Nothing is taken while the fence (the leader's lease) is closed.
    fn next_batch(&self, fence: &Fence) -> Option<HashMap<String, Pending>> {
        let mut state = self.lock();
        loop {
            if state.stopped {
                return None;
            }
            if !fence.is_open() {
                (state, _) = self
                    .wake
                    .wait_timeout(state, FENCE_RECHECK)
                    .expect("sync state");
            } else if state.pending.is_empty() {
                state = self.wake.wait(state).expect("sync state");
            } else {
                return Some(std::mem::take(&mut state.pending));
            }
        }
    }
}

/// `sync_group_offsets`: commits the groups' checkpointed positions to the
/// same groups on the target, where they are idle, never backwards. Runs
/// beside the rounds, so a slow target does not delay checkpoints.
fn sync_loop(spec: &CheckpointSpec, shared: &Shared, fence: &Fence) {
    let flow = &spec.flow.name;
    let name = spec.flow.reader_group(&spec.deployment, "checkpoints");
    // While the lease is lapsing nothing is written (the stop follows).
    while let Some(batch) = shared.next_batch(fence) {
        let mut batch: Vec<_> = batch.into_iter().collect();
        batch.sort_by(|a, b| a.0.cmp(&b.0));
        let wanted: Vec<_> = batch
            .iter()
            .map(|(g, (o, _))| (g.clone(), o.clone()))
            .collect();
        let outcomes = match failover_groups(&spec.target, &name, &wanted, false) {
            Ok(o) => o,
            Err(e) => {
                let text = format!("{e:#}");
                if admin::is_denied(&e) {
                    // Which group is not known here: the target's groups.
                    denials::refused(
                        &spec.flow.target,
                        flow,
                        Feature::GroupOffsetSync,
                        Operation::Read,
                        group_resource(&spec.flow),
                        &text,
                    );
                } else {
                    error_event!(
                        warn,
                        flow,
                        ErrorKind::Checkpoint,
                        error = text,
                        "group offsets not synced; retried"
                    );
                }
                let mut sync = shared.lock();
                for (g, v) in batch {
                    sync.pending.entry(g).or_insert(v);
                }
                drop(sync);
                shared.stopped_within(SYNC_RETRY);
                continue;
            }
        };
        let mut sync = shared.lock();
        for ((group, (offsets, read)), (outcome, rows)) in batch.into_iter().zip(outcomes) {
            match outcome {
                GroupOutcome::Written | GroupOutcome::UpToDate => {
                    denials::allowed_group(&spec.flow.target, Operation::Read, &group);
                    if outcome == GroupOutcome::Written {
                        debug!(flow = %flow, group, partitions = rows.iter().filter(|r| r.moves).count(),
                               "group offsets synced to the target");
                    }
                    sync.active.remove(&group);
                    sync.synced.landed(&group, read);
                }
                GroupOutcome::Refused(_) => {
                    // Its consumers run on the target: not ours to move, and
                    // not counted as trailing. Tried again when it moves.
                    sync.synced.retain(|g| g != group);
                    sync.active.insert(group);
                }
                GroupOutcome::Failed(e) => {
                    if denials::is_denial(e.code()) {
                        denials::refused(
                            &spec.flow.target,
                            flow,
                            Feature::GroupOffsetSync,
                            Operation::Read,
                            denials::group(&group),
                            &e.to_string(),
                        );
                    } else {
                        error_event!(
                            warn,
                            flow,
                            ErrorKind::Checkpoint,
                            group,
                            error = %e,
                            "group offsets not synced; retried"
                        );
                    }
                    sync.pending.entry(group).or_insert((offsets, read));
                }
            }
        }
    }
}

/// What a failed checkpoint round was refused, told by the refusal's code:
/// the writer's transactions (its transactional id: InitProducerId,
/// AddPartitionsToTxn, EndTxn), or else the checkpoints topic it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RoundRefusal {
    TransactionalId,
    Topic,
}

impl RoundRefusal {
    /// `None` where `code` is not an authorization refusal.
    fn of(code: RDKafkaErrorCode) -> Option<Self> {
        match code {
            RDKafkaErrorCode::TransactionalIdAuthorizationFailed => {
                Some(RoundRefusal::TransactionalId)
            }
            c if denials::is_denial(c) => Some(RoundRefusal::Topic),
            _ => None,
        }
    }
}

/// The groups a flow checkpoints, as a resource.
fn group_resource(flow: &Flow) -> Resource {
    strait_common::access::flow_groups(flow)
}

/// The transactional ids of a flow's writers, as its ACL names them.
fn txn_ids(spec: &CheckpointSpec) -> Resource {
    Resource::TransactionalId(Name::Prefixed(format!(
        "{}.",
        spec.flow.commit_group(&spec.deployment)
    )))
}

/// `result`, with a refused permission (`operation` on `resource` of the
/// cluster `alias`) reported once, and a success clearing it.
fn noting<T>(
    spec: &CheckpointSpec,
    alias: &str,
    operation: Operation,
    resource: Resource,
    result: anyhow::Result<T>,
) -> anyhow::Result<T> {
    match &result {
        Ok(_) => denials::allowed(alias, operation, &resource),
        Err(e) if admin::is_denied(e) => {
            denials::refused(
                alias,
                &spec.flow.name,
                Feature::Checkpoints,
                operation,
                resource,
                &format!("{e:#}"),
            );
        }
        Err(_) => {}
    }
    result
}

/// The checkpoint writer: transactional, with one transactional id per
/// deployment and flow, so a new leader's `init_transactions` fences the
/// previous leader's producer at the broker. A leader paused past its lease
/// may still hold checkpoints queued in librdkafka when it runs again; the
/// broker refuses them and the transaction they were in is aborted, so
/// (read-committed) readers never see them behind the new leader's.
fn checkpoint_producer(
    spec: &CheckpointSpec,
) -> anyhow::Result<ThreadedProducer<DefaultProducerContext>> {
    let producer: ThreadedProducer<DefaultProducerContext> = client_config(&spec.target)
        .set(
            "transactional.id",
            spec.flow.reader_group(&spec.deployment, "checkpoints"),
        )
        .set("message.timeout.ms", "30000")
        // discovery creates the checkpoints topic compacted; a broker that
        // auto-creates must not make it first with its defaults.
        .set("allow.auto.create.topics", "false")
        // A round's checkpoints go out as soon as they are queued.
        .set("linger.ms", "5")
        .create()?;
    producer
        .init_transactions(Duration::from_secs(30))
        .context("taking over the checkpoint producer (init transactions)")?;
    Ok(producer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_refusal_names_what_its_code_refused() {
        use RDKafkaErrorCode as Code;
        assert_eq!(
            RoundRefusal::of(Code::TransactionalIdAuthorizationFailed),
            Some(RoundRefusal::TransactionalId)
        );
        for code in [
            Code::TopicAuthorizationFailed,
            Code::ClusterAuthorizationFailed,
            Code::GroupAuthorizationFailed,
        ] {
            assert_eq!(RoundRefusal::of(code), Some(RoundRefusal::Topic), "{code}");
        }
        for code in [
            Code::RequestTimedOut,
            Code::ProducerFenced,
            Code::InvalidTransactionTimeout,
        ] {
            assert_eq!(RoundRefusal::of(code), None, "{code}");
        }
    }
}
