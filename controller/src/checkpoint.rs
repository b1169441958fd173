//! The checkpoint service: source consumer groups' committed positions,
//! translated through the offset syncs, written as MirrorMaker 2
//! checkpoints to `{source}.checkpoints.internal` on the target, so an
//! application can fail over and resume where it was.
//!
//! [`Checkpoints`] is the pure core (sync histories, translation, never
//! backwards); [`run_checkpoints`] is the I/O around it. It reads records of
//! strait's internal topics only, never replicated data.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use strait_common::config::{ClusterConfig, Flow};
use strait_common::coord::lease::Fence;
use strait_common::formats::{Checkpoint, OffsetSync};
use strait_common::kafka::{client_config, manual_consumer};
use strait_common::metrics as m;
use strait_common::model::{NextOffset, TopicPartition};
use strait_common::policy::checkpoints_topic;
use strait_common::syncs::{SyncHistory, Translation};

/// Sync histories of one flow's partitions and the checkpoints emitted so far.
#[derive(Debug, Default)]
pub struct Checkpoints {
    histories: HashMap<TopicPartition, SyncHistory>,
    /// Highest downstream offset emitted per (group, remote topic, partition).
    last: HashMap<(String, String, i32), i64>,
}

impl Checkpoints {
    /// Takes the next offset sync read from the offset-syncs topic.
    pub fn observe_sync(&mut self, sync: &OffsetSync) {
        self.histories
            .entry(TopicPartition {
                topic: sync.topic.clone(),
                partition: sync.partition,
            })
            .or_default()
            .record(sync.upstream_offset, sync.downstream_offset);
    }

    /// Takes a checkpoint read back from the checkpoints topic (after a
    /// restart), in topic order: later checkpoints never go below it.
    /// Returns false if it is below one read before it for the same group
    /// and partition: someone wrote a checkpoint backwards.
    pub fn restore(&mut self, cp: &Checkpoint) -> bool {
        let key = (cp.group.clone(), cp.topic.clone(), cp.partition);
        let last = self.last.entry(key).or_insert(cp.downstream_offset);
        let forward = cp.downstream_offset >= *last;
        *last = (*last).max(cp.downstream_offset);
        forward
    }

    /// Translates `committed` on `tp` without emitting anything.
    pub fn translate(&self, tp: &TopicPartition, committed: i64) -> Option<Translation> {
        self.histories.get(tp)?.translate(NextOffset(committed))
    }

    /// The highest position emitted for `group`, per remote partition.
    pub fn emitted(&self, group: &str) -> Vec<(String, i32, i64)> {
        let mut out: Vec<_> = self
            .last
            .iter()
            .filter(|((g, _, _), _)| g == group)
            .map(|((_, t, p), d)| (t.clone(), *p, *d))
            .collect();
        out.sort();
        out
    }

    /// Source partitions with offset syncs: the ones this flow replicated.
    pub fn partitions(&self) -> impl Iterator<Item = &TopicPartition> {
        self.histories.keys()
    }

    /// The checkpoint for `group` at `committed` on `tp`, if it translates
    /// and moves the group's target position forward. Never backwards: a
    /// lower translation (e.g. the group was reset on the source) is not
    /// emitted.
    pub fn checkpoint(
        &mut self,
        flow: &Flow,
        group: &str,
        tp: &TopicPartition,
        committed: i64,
    ) -> Option<Checkpoint> {
        let t = self.histories.get(tp)?.translate(NextOffset(committed))?;
        let remote = flow.remote_topic(&tp.topic);
        let key = (group.to_owned(), remote.clone(), tp.partition);
        if self.last.get(&key).is_some_and(|&last| last >= t.offset.0) {
            return None;
        }
        self.last.insert(key, t.offset.0);
        Some(Checkpoint {
            group: group.to_owned(),
            topic: remote,
            partition: tp.partition,
            upstream_offset: committed,
            downstream_offset: t.offset.0,
            metadata: String::new(),
        })
    }
}

/// Where the service finds its clusters.
#[derive(Debug, Clone)]
pub struct CheckpointSpec {
    pub deployment: String,
    pub flow: Flow,
    pub source: ClusterConfig,
    pub target: ClusterConfig,
    pub syncs_cluster: ClusterConfig,
}

/// Runs the checkpoint service of one flow until `shutdown`, writing only
/// while `fence` (the leader's lease) is open: a leader paused past its
/// lease, running again, must not emit what it computed before the pause
/// (another leader emitted newer checkpoints meanwhile).
pub async fn run_checkpoints(
    spec: CheckpointSpec,
    fence: Fence,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Some(interval) = spec.flow.checkpoints else {
        return Ok(());
    };
    let spec = Arc::new(spec);
    tokio::task::spawn_blocking(move || checkpoint_loop(&spec, interval, &fence, &shutdown))
        .await
        .context("checkpoint service panicked")?
}

fn consumer(cluster: &ClusterConfig, group: &str) -> anyhow::Result<BaseConsumer> {
    Ok(manual_consumer(cluster, group).create()?)
}

fn checkpoint_loop(
    spec: &CheckpointSpec,
    interval: Duration,
    fence: &Fence,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let flow = spec.flow.name.clone();
    let own_group = format!("{}.checkpoints", spec.flow.commit_group(&spec.deployment));
    let cp_topic = checkpoints_topic(&spec.flow.source);
    let mut state = Checkpoints::default();

    // Rebuild "never backwards" from what earlier runs wrote.
    let reader = consumer(&spec.target, &own_group)?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&cp_topic, 0, Offset::Beginning)?;
    reader.assign(&tpl)?;
    let mut restored = 0;
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(2) && !shutdown.is_cancelled() {
        if let Some(Ok(msg)) = reader.poll(Duration::from_millis(200)) {
            quiet_since = Instant::now();
            if let (Some(k), Some(v)) = (msg.key(), msg.payload()) {
                if let Ok(cp) = Checkpoint::decode(k, v) {
                    if !state.restore(&cp) {
                        m::violated(m::CHECKPOINT_BACKWARDS);
                        error!(flow = %flow, group = %cp.group, topic = %cp.topic, partition = cp.partition,
                               offset = cp.downstream_offset, "invariant broken: the checkpoints topic holds a checkpoint below an earlier one");
                    }
                    restored += 1;
                }
            }
        }
    }
    drop(reader);
    info!(flow = %flow, restored, "checkpoint service started");

    let (syncs_cluster, syncs_topic) = (&spec.syncs_cluster, spec.flow.offset_syncs().1);
    let syncs = consumer(syncs_cluster, &own_group)?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&syncs_topic, 0, Offset::Beginning)?;
    syncs.assign(&tpl)?;
    let lister = consumer(&spec.source, &own_group)?;
    let mut producer: Option<ThreadedProducer<DefaultProducerContext>> = None;
    let emitted = metrics::counter!(m::CHECKPOINTS, "flow" => flow.clone());

    let mut next = Instant::now();
    while !shutdown.is_cancelled() {
        // Take every sync written so far.
        while let Some(result) = syncs.poll(Duration::from_millis(20)) {
            match result.map_err(anyhow::Error::from).and_then(|msg| {
                let (k, v) = (
                    msg.key().unwrap_or_default(),
                    msg.payload().unwrap_or_default(),
                );
                Ok(OffsetSync::decode(k, v)?)
            }) {
                Ok(sync) => state.observe_sync(&sync),
                Err(e) => debug!(flow = %flow, error = %e, "offset sync skipped"),
            }
        }
        if Instant::now() < next {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        next = Instant::now() + interval;
        if !fence.is_open() {
            continue; // leadership is ending; `shutdown` follows
        }
        let p = match &producer {
            Some(p) => p,
            None => match checkpoint_producer(spec) {
                Ok(p) => producer.insert(p),
                Err(e) => {
                    metrics::counter!(m::ERRORS, "flow" => flow.clone(), "kind" => "checkpoint")
                        .increment(1);
                    warn!(flow = %flow, error = format!("{e:#}"), "checkpoint producer not ready");
                    continue;
                }
            },
        };
        let marks = state.last.clone();
        if let Err(e) = round(spec, &mut state, &lister, p, &cp_topic, &emitted, fence) {
            // Nothing of the round was written: emit it again next time.
            state.last = marks;
            metrics::counter!(m::ERRORS, "flow" => flow.clone(), "kind" => "checkpoint")
                .increment(1);
            warn!(flow = %flow, error = format!("{e:#}"), "checkpoint round failed; its checkpoints are aborted");
            let _ = p.abort_transaction(Duration::from_secs(10));
            if p.client().fatal_error().is_some() {
                producer = None; // fenced by a newer leader, or broken: start over
            }
        }
    }
    Ok(())
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
            format!("{}.checkpoints", spec.flow.commit_group(&spec.deployment)),
        )
        .set("message.timeout.ms", "30000")
        .create()?;
    producer
        .init_transactions(Duration::from_secs(30))
        .context("taking over the checkpoint producer (init transactions)")?;
    Ok(producer)
}

/// One round: list groups, read their positions, emit what moved forward,
/// in one transaction.
fn round(
    spec: &CheckpointSpec,
    state: &mut Checkpoints,
    lister: &BaseConsumer,
    producer: &ThreadedProducer<DefaultProducerContext>,
    cp_topic: &str,
    emitted: &metrics::Counter,
    fence: &Fence,
) -> anyhow::Result<()> {
    let partitions: Vec<TopicPartition> = state.partitions().cloned().collect();
    if partitions.is_empty() {
        return Ok(());
    }
    let groups = lister
        .fetch_group_list(None, Duration::from_secs(10))
        .context("listing groups")?;
    producer.begin_transaction()?;
    let mut tpl = TopicPartitionList::new();
    for tp in &partitions {
        tpl.add_partition(&tp.topic, tp.partition);
    }
    for g in groups.groups() {
        let group = g.name();
        if !spec.flow.checkpoints_group(group) {
            continue;
        }
        // A consumer only to read the group's commits: it never joins it.
        let positions = consumer(&spec.source, group)?
            .committed_offsets(tpl.clone(), Duration::from_secs(10))
            .with_context(|| format!("committed offsets of group {group}"))?;
        for e in positions.elements() {
            let Offset::Offset(committed) = e.offset() else {
                continue;
            };
            let tp = TopicPartition {
                topic: e.topic().to_owned(),
                partition: e.partition(),
            };
            let Some(cp) = state.checkpoint(&spec.flow, group, &tp, committed) else {
                continue;
            };
            // Checked per record: the round may have begun before a pause.
            anyhow::ensure!(
                fence.is_open(),
                "the leader's lease lapsed mid-round; nothing more is written"
            );
            let (key, value) = (cp.encode_key()?, cp.encode_value()?);
            let record = BaseRecord::to(cp_topic)
                .partition(0)
                .key(&key)
                .payload(&value);
            producer.send(record).map_err(|(e, _)| e)?;
            emitted.increment(1);
            debug!(flow = %spec.flow.name, group, topic = %cp.topic, partition = cp.partition,
                   upstream = cp.upstream_offset, downstream = cp.downstream_offset, "checkpoint");
        }
        if spec.flow.sync_group_offsets && fence.is_open() {
            match commit_to_target(&spec.target, group, &state.emitted(group)) {
                Ok(GroupCommit::Committed(moved)) => {
                    debug!(flow = %spec.flow.name, group, partitions = moved.len(), "group offsets synced to the target")
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(flow = %spec.flow.name, group, error = format!("{e:#}"), "group offsets not synced")
                }
            }
        }
    }
    anyhow::ensure!(
        fence.is_open(),
        "the leader's lease lapsed mid-round; nothing more is written"
    );
    producer.commit_transaction(Duration::from_secs(10))?;
    Ok(())
}

/// What committing translated offsets to a group on the target did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupCommit {
    /// Offsets committed, as (remote topic, partition, offset).
    Committed(Vec<(String, i32, i64)>),
    /// Nothing moved forward: the group is already at or past them.
    UpToDate,
    /// The group has active members on the target; nothing was written.
    Active { members: usize },
}

/// Commits `offsets` ((remote topic, partition, offset)) to `group` on the
/// target: only offsets ahead of what the group has there (never
/// backwards), and only while the group has no active members there.
pub fn commit_to_target(
    target: &ClusterConfig,
    group: &str,
    offsets: &[(String, i32, i64)],
) -> anyhow::Result<GroupCommit> {
    let c = consumer(target, group)?;
    let groups = c
        .fetch_group_list(Some(group), Duration::from_secs(10))
        .context("describing the group on the target")?;
    let members: usize = groups.groups().iter().map(|g| g.members().len()).sum();
    if members > 0 {
        return Ok(GroupCommit::Active { members });
    }
    let mut tpl = TopicPartitionList::new();
    for (t, p, _) in offsets {
        tpl.add_partition(t, *p);
    }
    let current = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .context("reading the group's offsets on the target")?;
    let mut ahead = TopicPartitionList::new();
    let mut moved = Vec::new();
    for (t, p, o) in offsets {
        let have = match current.find_partition(t, *p).map(|e| e.offset()) {
            Some(Offset::Offset(h)) => Some(h),
            _ => None,
        };
        if have.is_none_or(|h| *o > h) {
            ahead.add_partition_offset(t, *p, Offset::Offset(*o))?;
            moved.push((t.clone(), *p, *o));
        }
    }
    if moved.is_empty() {
        return Ok(GroupCommit::UpToDate);
    }
    // A member joining after the check above makes the broker refuse this
    // commit (it carries no generation), so it cannot overwrite a live group.
    c.commit(&ahead, rdkafka::consumer::CommitMode::Sync)
        .context("committing to the group on the target")?;
    Ok(GroupCommit::Committed(moved))
}

/// One partition of a group, translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    pub remote_topic: String,
    pub partition: i32,
    /// The group's committed position on the source.
    pub source_offset: i64,
    pub translation: Translation,
}

/// Translates `group`'s committed positions now, reading the offset syncs
/// from the start of their topic (for operators: `strait offsets`).
pub fn translate_group(spec: &CheckpointSpec, group: &str) -> anyhow::Result<Vec<Translated>> {
    let own_group = format!("{}.offsets", spec.flow.commit_group(&spec.deployment));
    let mut state = Checkpoints::default();
    let syncs = consumer(&spec.syncs_cluster, &own_group)?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&spec.flow.offset_syncs().1, 0, Offset::Beginning)?;
    syncs.assign(&tpl)?;
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(2) {
        if let Some(Ok(msg)) = syncs.poll(Duration::from_millis(200)) {
            quiet_since = Instant::now();
            if let Ok(sync) = OffsetSync::decode(
                msg.key().unwrap_or_default(),
                msg.payload().unwrap_or_default(),
            ) {
                state.observe_sync(&sync);
            }
        }
    }
    let mut tpl = TopicPartitionList::new();
    for tp in state.partitions() {
        tpl.add_partition(&tp.topic, tp.partition);
    }
    if tpl.count() == 0 {
        return Ok(Vec::new());
    }
    let positions = consumer(&spec.source, group)?
        .committed_offsets(tpl, Duration::from_secs(10))
        .with_context(|| format!("committed offsets of group {group} on the source"))?;
    let mut out = Vec::new();
    for e in positions.elements() {
        let Offset::Offset(committed) = e.offset() else {
            continue;
        };
        let tp = TopicPartition {
            topic: e.topic().to_owned(),
            partition: e.partition(),
        };
        if let Some(translation) = state.translate(&tp, committed) {
            out.push(Translated {
                remote_topic: spec.flow.remote_topic(&tp.topic),
                partition: tp.partition,
                source_offset: committed,
                translation,
            });
        }
    }
    out.sort_by(|a, b| (&a.remote_topic, a.partition).cmp(&(&b.remote_topic, b.partition)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strait_common::config::Config;

    fn flow() -> Flow {
        let text = "deployment = \"t\"\n[clusters.us]\nbootstrap = \"x:1\"\n[clusters.dr]\nbootstrap = \"x:2\"\n[[flows]]\nsource = \"us\"\ntarget = \"dr\"\n";
        Config::parse(text).unwrap().flows().unwrap().remove(0)
    }

    fn tp() -> TopicPartition {
        TopicPartition {
            topic: "orders".into(),
            partition: 0,
        }
    }

    fn sync(u: i64, d: i64) -> OffsetSync {
        OffsetSync {
            topic: "orders".into(),
            partition: 0,
            upstream_offset: u,
            downstream_offset: d,
        }
    }

    #[test]
    fn a_group_position_becomes_a_checkpoint_on_the_remote_topic() {
        let (f, mut c) = (flow(), Checkpoints::default());
        c.observe_sync(&sync(0, 100));
        c.observe_sync(&sync(50, 150));
        let cp = c.checkpoint(&f, "billing", &tp(), 40).unwrap();
        assert_eq!(
            (
                cp.topic.as_str(),
                cp.partition,
                cp.upstream_offset,
                cp.downstream_offset
            ),
            ("us.orders", 0, 40, 140)
        );
        assert_eq!(
            c.checkpoint(&f, "billing", &tp(), 40),
            None,
            "unchanged: not emitted again"
        );
        assert_eq!(
            c.checkpoint(&f, "billing", &tp(), 45)
                .unwrap()
                .downstream_offset,
            145
        );
    }

    #[test]
    fn checkpoints_never_move_backwards_even_across_restarts() {
        let (f, mut c) = (flow(), Checkpoints::default());
        c.observe_sync(&sync(0, 100));
        c.observe_sync(&sync(50, 150));
        assert!(c.checkpoint(&f, "billing", &tp(), 45).is_some());
        assert_eq!(
            c.checkpoint(&f, "billing", &tp(), 30),
            None,
            "group reset on the source"
        );
        // A restarted service restores from the topic before emitting.
        let mut restarted = Checkpoints::default();
        let at = |downstream_offset| Checkpoint {
            group: "billing".into(),
            topic: "us.orders".into(),
            partition: 0,
            upstream_offset: downstream_offset - 100,
            downstream_offset,
            metadata: String::new(),
        };
        assert!(restarted.restore(&at(140)));
        assert!(restarted.restore(&at(145)));
        // A checkpoint below an earlier one on the topic is a breach, reported.
        assert!(!restarted.restore(&at(120)), "backwards on the topic");
        restarted.observe_sync(&sync(0, 100));
        restarted.observe_sync(&sync(50, 150));
        assert_eq!(restarted.checkpoint(&f, "billing", &tp(), 45), None);
        assert_eq!(restarted.checkpoint(&f, "billing", &tp(), 44), None);
        assert_eq!(
            restarted
                .checkpoint(&f, "billing", &tp(), 46)
                .unwrap()
                .downstream_offset,
            146
        );
    }

    #[test]
    fn no_sync_no_checkpoint() {
        let (f, mut c) = (flow(), Checkpoints::default());
        assert_eq!(c.checkpoint(&f, "billing", &tp(), 10), None);
        c.observe_sync(&sync(20, 5));
        assert_eq!(
            c.checkpoint(&f, "billing", &tp(), 10),
            None,
            "below every sync"
        );
    }
}
