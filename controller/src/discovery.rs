//! Topic discovery: list the source's topics on an interval, keep those a
//! flow replicates, make sure their remote topics exist on the target, and
//! publish the flow's units. Touches metadata only, never records.
//!
//! Topic configs and ACLs are synced beside it, each flow on its own
//! `config_sync_interval`, from the latest round's listings: a slow or
//! failing sync never delays the discovery of a new topic.
//!
//! Safety rules:
//! * a failed listing changes nothing (units are never dropped because a
//!   cluster was briefly unreachable);
//! * a unit is published only once its remote partition exists on the
//!   target, so no record is produced to a partition that is not there.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use strait_common::access::{denials, Feature, Operation};
use strait_common::config::{Config, Flow};
use strait_common::error_event;
use strait_common::metrics as m;
use strait_common::model::{TopicPartition, Unit};
use strait_common::policy::{checkpoints_topic, HEARTBEATS_TOPIC};
use strait_common::telemetry::ErrorKind;

use crate::admin::{self, ClusterAdmin, KafkaAdmin, TopicConfigs, TopicSizes};
use crate::metadata;

/// What one flow should replicate now, given both clusters' topics.
/// Pure: the topics to create on the target, and the units to run.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FlowView {
    /// Remote topics missing on the target: (name, partitions).
    pub create: Vec<(String, i32)>,
    pub units: BTreeSet<Unit>,
    /// Remote topics with fewer partitions than their source: (remote, source count, target count).
    pub short: Vec<(String, i32, i32)>,
}

/// An operator's topic decisions, by (flow, topic): `true` added, `false`
/// removed (on top of each flow's regexes).
pub type TopicOverrides = BTreeMap<(String, String), bool>;

pub fn plan_flow(
    flow: &Flow,
    source: &TopicSizes,
    target: &TopicSizes,
    overrides: &TopicOverrides,
) -> FlowView {
    let mut view = FlowView::default();
    for (topic, &parts) in source {
        let operator = overrides.get(&(flow.name.clone(), topic.clone())).copied();
        if !flow.replicates_with(topic, operator) {
            continue;
        }
        let remote = flow.remote_topic(topic);
        let available = match target.get(&remote) {
            None => {
                view.create.push((remote.clone(), parts));
                0
            }
            Some(&have) if have < parts => {
                view.short.push((remote.clone(), parts, have));
                have
            }
            Some(_) => parts,
        };
        for partition in 0..available {
            view.units.insert(Unit {
                flow: flow.name.clone(),
                source: TopicPartition {
                    topic: topic.clone(),
                    partition,
                },
                remote_topic: remote.clone(),
            });
        }
    }
    view
}

/// How a replicated topic's remote topic compares with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicStatus {
    pub remote_topic: String,
    pub source_partitions: i32,
    /// None while the remote topic does not exist.
    pub target_partitions: Option<i32>,
    /// Whether its configs matched at the last config sync (None: not compared).
    pub configs_in_sync: Option<bool>,
    /// What an operator should know, e.g. partitions that differ.
    pub note: Option<String>,
}

/// Every replicated topic's status, by (flow, source topic).
pub type TopicBoard = Arc<Mutex<BTreeMap<(String, String), TopicStatus>>>;

fn partition_note(source: i32, target: Option<i32>) -> Option<String> {
    match target {
        None => Some("remote topic missing".into()),
        Some(t) if t < source => Some(format!(
            "remote topic has {t} of {source} partitions; the others wait"
        )),
        Some(t) if t > source => Some(format!(
            "remote topic has {t} partitions, its source {source}: replicating by partition number"
        )),
        Some(_) => None,
    }
}

struct FlowDiscovery<A> {
    flow: Flow,
    source: A,
    target: A,
    syncs: A,
    syncs_ready: bool,
    heartbeats_ready: bool,
    checkpoints_ready: bool,
    board: TopicBoard,
    warned_short: BTreeSet<String>,
    /// Remote topics seen on the target (or created) in earlier rounds: one
    /// missing now was deleted while replicated.
    seen_remote: BTreeSet<String>,
    units: watch::Sender<BTreeSet<Unit>>,
    overrides: watch::Receiver<TopicOverrides>,
    /// Each round's listings, for the flow's [`MetadataSync`].
    listings: watch::Sender<Option<Arc<Listing>>>,
}

/// What a discovery round saw: both clusters' topics, and the remote
/// topics it created.
#[derive(Debug, Default)]
struct Listing {
    source: TopicSizes,
    target: TopicSizes,
    created_now: BTreeSet<String>,
}

/// One flow's topic config and ACL sync: every `config_sync_interval`,
/// from the latest discovery round's listings, beside discovery.
struct MetadataSync<A> {
    flow: Flow,
    source: A,
    target: A,
    board: TopicBoard,
    listings: watch::Receiver<Option<Arc<Listing>>>,
}

/// Discovers the topics of every flow and publishes each flow's units.
pub struct Discovery<A = KafkaAdmin> {
    flows: Vec<FlowDiscovery<A>>,
    /// The flows that sync configs or ACLs.
    syncs: Vec<MetadataSync<A>>,
    interval: Duration,
    board: TopicBoard,
    overrides: watch::Receiver<TopicOverrides>,
}

/// Receivers of each flow's units, in the order of the flows.
pub type UnitReceivers = Vec<watch::Receiver<BTreeSet<Unit>>>;

impl Discovery<KafkaAdmin> {
    /// Builds discovery for `flows` on Kafka; returns it and one receiver
    /// of units per flow.
    pub fn new(
        config: &Config,
        flows: &[Flow],
        overrides: watch::Receiver<TopicOverrides>,
        board: TopicBoard,
    ) -> anyhow::Result<(Self, UnitReceivers)> {
        let mut admins: BTreeMap<String, KafkaAdmin> = BTreeMap::new();
        Discovery::with_admins(config, flows, overrides, board, |alias| {
            if let Some(a) = admins.get(alias) {
                return Ok(a.clone());
            }
            let a = KafkaAdmin::new(&config.clusters[alias])
                .with_context(|| format!("cluster {alias}"))?;
            admins.insert(alias.to_owned(), a.clone());
            Ok(a)
        })
    }
}

impl<A: ClusterAdmin + Clone> Discovery<A> {
    /// Builds discovery with the admin `get` returns for each cluster alias.
    pub fn with_admins(
        config: &Config,
        flows: &[Flow],
        overrides: watch::Receiver<TopicOverrides>,
        board: TopicBoard,
        mut get: impl FnMut(&str) -> anyhow::Result<A>,
    ) -> anyhow::Result<(Self, UnitReceivers)> {
        let mut out = Vec::new();
        let mut syncs = Vec::new();
        let mut receivers = Vec::new();
        for flow in flows {
            let (tx, rx) = watch::channel(BTreeSet::new());
            let (listings, listings_rx) = watch::channel(None);
            let (source, target) = (get(&flow.source)?, get(&flow.target)?);
            if flow.sync_topic_configs.is_some() || flow.sync_acls {
                syncs.push(MetadataSync {
                    flow: flow.clone(),
                    source: source.clone(),
                    target: target.clone(),
                    board: board.clone(),
                    listings: listings_rx,
                });
            }
            out.push(FlowDiscovery {
                source,
                target,
                syncs: get(flow.offset_syncs().0)?,
                flow: flow.clone(),
                syncs_ready: false,
                heartbeats_ready: false,
                checkpoints_ready: false,
                board: board.clone(),
                warned_short: BTreeSet::new(),
                seen_remote: BTreeSet::new(),
                units: tx,
                overrides: overrides.clone(),
                listings,
            });
            receivers.push(rx);
        }
        Ok((
            Discovery {
                flows: out,
                syncs,
                interval: config.discovery.interval,
                board,
                overrides,
            },
            receivers,
        ))
    }

    /// The status of every replicated topic, kept up to date by `run`.
    pub fn topics(&self) -> TopicBoard {
        self.board.clone()
    }

    /// Discovers once, then on every interval, until `shutdown`; the
    /// flows' config and ACL syncs run beside it, as their own tasks.
    pub async fn run(mut self, shutdown: CancellationToken)
    where
        A: Send + Sync + 'static,
    {
        let mut syncs = JoinSet::new();
        for sync in std::mem::take(&mut self.syncs) {
            syncs.spawn(sync.run(shutdown.clone()));
        }
        self.discover_until(&shutdown).await;
        while let Some(done) = syncs.join_next().await {
            if let Err(e) = done {
                warn!(error = %e, "a config and ACL sync panicked");
            }
        }
    }

    async fn discover_until(&mut self, shutdown: &CancellationToken) {
        loop {
            for f in &mut self.flows {
                if let Err(e) = f.discover().await {
                    error_event!(
                        warn,
                        f.flow.name,
                        ErrorKind::Discovery,
                        error = format!("{e:#}"),
                        "discovery failed; units unchanged"
                    );
                }
            }
            // An operator's topic change is applied at once, not at the
            // next interval.
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = self.overrides.changed() => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

impl<A: ClusterAdmin> FlowDiscovery<A> {
    /// One round: the flow's internal topics, the two listings, remote
    /// topics created and grown, the units published, and the listings
    /// handed to the config and ACL sync.
    async fn discover(&mut self) -> anyhow::Result<()> {
        let flow = self.flow.name.clone();
        self.ensure_internal_topics(&flow).await?;
        let source = self
            .source
            .topic_sizes()
            .await
            .context("listing source topics")?;
        let mut target = self
            .target
            .topic_sizes()
            .await
            .context("listing target topics")?;
        let overrides = self.overrides.borrow().clone();
        let view = plan_flow(&self.flow, &source, &target, &overrides);
        // Remote topics of this flow that exist now (created ones are added
        // as they are made).
        for u in &view.units {
            if !self.seen_remote.contains(&u.remote_topic) {
                self.seen_remote.insert(u.remote_topic.clone());
            }
        }
        let created_now = self
            .create_remote_topics(&flow, &view, &source, &mut target)
            .await;
        self.grow_remote_topics(&flow, &view, &mut target).await;
        let view = if view.create.is_empty() && view.short.is_empty() {
            view
        } else {
            plan_flow(&self.flow, &source, &target, &overrides)
        };
        self.publish_units(&flow, &source, &target, view.units);
        self.listings.send_replace(Some(Arc::new(Listing {
            source,
            target,
            created_now,
        })));
        Ok(())
    }

    /// The flow's internal topics. A refused permission is reported once
    /// and retried each round; the rest of the flow goes on (a missing
    /// heartbeats topic must not stop replication).
    async fn ensure_internal_topics(&mut self, flow: &str) -> anyhow::Result<()> {
        if !self.syncs_ready {
            let (alias, topic) = self.flow.offset_syncs();
            let alias = alias.to_owned();
            self.syncs_ready =
                ensure_internal(&self.syncs, flow, &alias, Feature::OffsetSyncs, &topic).await?;
        }
        if self.flow.checkpoints.is_some() && !self.checkpoints_ready {
            let topic = checkpoints_topic(&self.flow.source);
            let alias = self.flow.target.clone();
            self.checkpoints_ready =
                ensure_internal(&self.target, flow, &alias, Feature::Checkpoints, &topic).await?;
        }
        if self.flow.heartbeats.is_some() && !self.heartbeats_ready {
            let alias = self.flow.source.clone();
            self.heartbeats_ready = ensure_internal(
                &self.source,
                flow,
                &alias,
                Feature::Heartbeats,
                HEARTBEATS_TOPIC,
            )
            .await?;
        }
        Ok(())
    }

    /// Creates the remote topics the plan lacks, with their source's
    /// configs; returns the ones created in this round.
    async fn create_remote_topics(
        &mut self,
        flow: &str,
        view: &FlowView,
        source: &TopicSizes,
        target: &mut TopicSizes,
    ) -> BTreeSet<String> {
        let mut created_now = BTreeSet::new();
        for (remote, parts) in &view.create {
            let seen = self.seen_remote.contains(remote);
            let configs = self
                .copied_configs(&self.source_topic_of(remote, source))
                .await;
            let pairs: Vec<(&str, &str)> = configs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            match self
                .target
                .create_topic(remote, *parts, self.flow.replication_factor, &pairs)
                .await
            {
                Ok(created) => {
                    denials::allowed(
                        &self.flow.target,
                        Operation::Create,
                        &denials::topic(remote),
                    );
                    self.seen_remote.insert(remote.clone());
                    if created && seen {
                        // It existed in an earlier round: deleted on the
                        // target while replicated. Its units left the plan
                        // (no partition to write to); it is created again,
                        // with the source's partition count (strait's
                        // producer never lets the broker auto-create it), and
                        // the units go on from their committed positions. The
                        // records it held are gone from the target: `strait
                        // verify` shows which.
                        metrics::counter!(m::REMOTE_TOPICS_RECREATED, "flow" => flow.to_owned())
                            .increment(1);
                        error_event!(error, flow, ErrorKind::RemoteTopicGone, topic = %remote, partitions = parts,
                            "remote topic deleted on the target while replicated; created it again (the records it held are gone from the target)");
                    } else if created {
                        metrics::counter!(m::TOPICS_CREATED, "flow" => flow.to_owned())
                            .increment(1);
                        info!(flow = %flow, topic = %remote, partitions = parts, configs = ?configs, "remote topic created");
                    } else if seen {
                        // Still there: the listing came from a broker whose
                        // metadata had not caught up (just created, or
                        // propagating), not a deletion.
                        debug!(flow = %flow, topic = %remote, "remote topic missing from the target's listing but still there");
                    }
                    if created {
                        created_now.insert(remote.clone());
                    }
                    target.insert(remote.clone(), *parts);
                }
                Err(e) => {
                    let text = format!("{e:#}");
                    if admin::is_denied(&e) {
                        // One ERROR naming the ACL, not a warning a round.
                        denials::refused(
                            &self.flow.target,
                            flow,
                            Feature::Replication,
                            Operation::Create,
                            denials::topic(remote),
                            &text,
                        );
                        error_event!(debug, flow, ErrorKind::CreateTopic, topic = %remote, error = text, "remote topic not created");
                    } else {
                        error_event!(warn, flow, ErrorKind::CreateTopic, topic = %remote, error = text, "remote topic not created");
                    }
                }
            }
        }
        created_now
    }

    /// Grows remote topics that have fewer partitions than their source.
    async fn grow_remote_topics(&mut self, flow: &str, view: &FlowView, target: &mut TopicSizes) {
        // Partition growth: the remote topic gains the new partitions before
        // any unit of them is published, so no record goes to a partition
        // that does not exist. Never shrinks, never deletes.
        for (remote, want, have) in &view.short {
            match self.target.create_partitions(remote, *want).await {
                Ok(()) => {
                    info!(flow = %flow, topic = %remote, from = have, to = want, "remote topic grown");
                    target.insert(remote.clone(), *want);
                    self.warned_short.remove(remote);
                }
                Err(e) => {
                    // Retried every discovery: warned once, then counted.
                    if self.warned_short.insert(remote.clone()) {
                        error_event!(warn, flow, ErrorKind::CreatePartitions, topic = %remote, source_partitions = want,
                              target_partitions = have, error = format!("{e:#}"), "remote topic cannot grow; its extra source partitions wait");
                    } else {
                        error_event!(debug, flow, ErrorKind::CreatePartitions, topic = %remote, error = format!("{e:#}"), "remote topic still cannot grow");
                    }
                }
            }
        }
    }

    /// Publishes the round's topic statuses and units.
    fn publish_units(
        &mut self,
        flow: &str,
        source: &TopicSizes,
        target: &TopicSizes,
        units: BTreeSet<Unit>,
    ) {
        self.publish_topics(source, target);
        metrics::gauge!(m::DISCOVERY_UNITS, "flow" => flow.to_owned()).set(units.len() as f64);
        self.units.send_if_modified(|current| {
            if *current == units {
                return false;
            }
            info!(flow = %flow, units = units.len(), "units changed");
            *current = units;
            true
        });
    }
}

impl<A: ClusterAdmin> MetadataSync<A> {
    /// Syncs after the first discovery round, then every
    /// `config_sync_interval` after the last sync, on the first round's
    /// listings since, until `shutdown`.
    async fn run(mut self, shutdown: CancellationToken) {
        let every = self.flow.config_sync_interval;
        loop {
            tokio::select! {
                r = self.listings.changed() => if r.is_err() { return },
                _ = shutdown.cancelled() => return,
            }
            tokio::select! {
                _ = self.sync() => {}
                _ = shutdown.cancelled() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// One sync of the topic configs and ACLs, on the latest listings.
    async fn sync(&mut self) {
        let Some(listing) = self.listings.borrow_and_update().clone() else {
            return;
        };
        let Listing {
            source,
            target,
            created_now,
        } = &*listing;
        if self.flow.sync_topic_configs.is_some() {
            // Topics created in that round have the source's configs by
            // construction (CreateTopics sets them all or fails); a broker
            // may not describe them yet, which would read as a mismatch.
            // They are compared from the next sync on.
            let compared: TopicSizes = target
                .iter()
                .filter(|(t, _)| !created_now.contains(*t))
                .map(|(t, n)| (t.clone(), *n))
                .collect();
            let mut in_sync =
                metadata::sync_configs(&self.flow, &self.source, &self.target, source, &compared)
                    .await;
            for topic in source.keys().filter(|t| {
                self.flow.replicates(t) && created_now.contains(&self.flow.remote_topic(t))
            }) {
                in_sync.insert(topic.clone(), true);
            }
            self.publish_in_sync(&in_sync);
        }
        // ACLs follow on the same interval, with or without the config sync
        // (as MirrorMaker 2's are independent).
        if self.flow.sync_acls {
            metadata::sync_acls(&self.flow, &self.source, &self.target, source, target).await;
        }
    }

    /// Records on the board whether each of the flow's topics' configs
    /// matched (discovery keeps the rest of their status).
    fn publish_in_sync(&self, in_sync: &BTreeMap<String, bool>) {
        let mut board = self.board.lock().unwrap_or_else(|e| e.into_inner());
        for ((flow, topic), status) in board.iter_mut() {
            if *flow == self.flow.name {
                status.configs_in_sync = in_sync.get(topic).copied();
            }
        }
    }
}

impl<A: ClusterAdmin> FlowDiscovery<A> {
    /// Records every replicated topic's status on the board; whether its
    /// configs are in sync is the last known answer (the config sync's).
    fn publish_topics(&self, source: &TopicSizes, target: &TopicSizes) {
        let flow = &self.flow.name;
        let mut board = self.board.lock().unwrap_or_else(|e| e.into_inner());
        board.retain(|(f, t), _| f != flow || (source.contains_key(t) && self.flow.replicates(t)));
        for (topic, &parts) in source.iter().filter(|(t, _)| self.flow.replicates(t)) {
            let remote = self.flow.remote_topic(topic);
            let target_partitions = target.get(&remote).copied();
            let entry = board.entry((flow.clone(), topic.clone())).or_default();
            let configs_in_sync = entry.configs_in_sync;
            *entry = TopicStatus {
                note: partition_note(parts, target_partitions),
                remote_topic: remote,
                source_partitions: parts,
                target_partitions,
                configs_in_sync,
            };
        }
    }

    /// The source topic whose remote topic is `remote`.
    fn source_topic_of(&self, remote: &str, source: &TopicSizes) -> String {
        source
            .keys()
            .find(|t| self.flow.replicates(t) && self.flow.remote_topic(t) == remote)
            .cloned()
            .unwrap_or_default()
    }

    /// The source topic's configs that are copied, or none when config
    /// sync is off or they cannot be read (the topic is created anyway).
    async fn copied_configs(&self, topic: &str) -> TopicConfigs {
        if self.flow.sync_topic_configs.is_none() || topic.is_empty() {
            return TopicConfigs::new();
        }
        match self.source.topic_configs(topic).await {
            Ok(c) => c
                .into_iter()
                .filter(|(k, _)| self.flow.copies_config(k))
                .collect(),
            Err(e) => {
                warn!(flow = %self.flow.name, topic, error = format!("{e:#}"), "source configs not read");
                TopicConfigs::new()
            }
        }
    }
}

/// Creates one of a flow's internal topics (compacted, one partition) on
/// `admin`, the cluster `alias`: true once it exists. A refused permission
/// is reported (once) and gives false, to be tried again next round; any
/// other error fails the round, as before.
async fn ensure_internal<A: ClusterAdmin>(
    admin: &A,
    flow: &str,
    alias: &str,
    feature: Feature,
    topic: &str,
) -> anyhow::Result<bool> {
    // Made beforehand (by an operator, or an earlier run): no CREATE
    // needed, which the broker checks before it looks whether the topic
    // exists.
    if admin.topic_sizes().await?.contains_key(topic) {
        denials::allowed(alias, Operation::Create, &denials::topic(topic));
        return Ok(true);
    }
    match admin
        .create_topic(topic, 1, None, &[("cleanup.policy", "compact")])
        .await
    {
        Ok(created) => {
            denials::allowed(alias, Operation::Create, &denials::topic(topic));
            if created {
                info!(flow = %flow, topic = %topic, cluster = alias, "{feature} topic created");
            }
            Ok(true)
        }
        Err(e) if admin::is_denied(&e) => {
            denials::refused(
                alias,
                flow,
                feature,
                Operation::Create,
                denials::topic(topic),
                &format!("{e:#}"),
            );
            Ok(false)
        }
        Err(e) => Err(e.context(format!("{feature} topic {topic}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow() -> Flow {
        let text = r#"
deployment = "t"
[clusters.us]
bootstrap = "x:1"
[clusters.dr]
bootstrap = "x:2"
[[flows]]
source = "us"
target = "dr"
topics = ["orders", "pay.*", "dr.*"]
"#;
        Config::parse(text).unwrap().flows.remove(0)
    }

    fn none() -> TopicOverrides {
        TopicOverrides::new()
    }

    #[test]
    fn an_operator_adds_and_removes_topics_over_the_regexes_but_never_cycles() {
        // flow() replicates orders, pay.* and dr.* (dr.orders would loop back).
        let source = sizes(&[("orders", 1), ("audit", 1), ("dr.orders", 1)]);
        let target = sizes(&[("us.orders", 1), ("us.audit", 1), ("us.dr.orders", 1)]);
        let mut o = none();
        o.insert(("us-dr".into(), "audit".into()), true);
        o.insert(("us-dr".into(), "orders".into()), false);
        o.insert(("us-dr".into(), "dr.orders".into()), true);
        o.insert(("other-flow".into(), "audit".into()), false);
        let v = plan_flow(&flow(), &source, &target, &o);
        let topics: Vec<&str> = v.units.iter().map(|u| u.source.topic.as_str()).collect();
        assert_eq!(topics, ["audit"]);
    }

    fn sizes(list: &[(&str, i32)]) -> TopicSizes {
        list.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    #[test]
    fn missing_remote_topics_are_created_and_their_units_wait() {
        let v = plan_flow(
            &flow(),
            &sizes(&[("orders", 3), ("other", 1)]),
            &sizes(&[]),
            &none(),
        );
        assert_eq!(v.create, vec![("us.orders".to_owned(), 3)]);
        assert!(
            v.units.is_empty(),
            "no unit before its remote partition exists"
        );
        let v = plan_flow(
            &flow(),
            &sizes(&[("orders", 3)]),
            &sizes(&[("us.orders", 3)]),
            &none(),
        );
        assert!(v.create.is_empty());
        let parts: Vec<i32> = v.units.iter().map(|u| u.source.partition).collect();
        assert_eq!(parts, vec![0, 1, 2]);
        assert!(v
            .units
            .iter()
            .all(|u| u.remote_topic == "us.orders" && u.flow == "us-dr"));
    }

    #[test]
    fn a_short_remote_topic_limits_units_and_is_reported() {
        let v = plan_flow(
            &flow(),
            &sizes(&[("payments", 4)]),
            &sizes(&[("us.payments", 2)]),
            &none(),
        );
        assert_eq!(v.units.len(), 2);
        assert_eq!(v.short, vec![("us.payments".to_owned(), 4, 2)]);
        let v = plan_flow(
            &flow(),
            &sizes(&[("payments", 2)]),
            &sizes(&[("us.payments", 5)]),
            &none(),
        );
        assert_eq!(
            v.units.len(),
            2,
            "a larger target replicates by partition number"
        );
    }

    #[test]
    fn cycles_and_internal_topics_are_never_units() {
        let v = plan_flow(
            &flow(),
            &sizes(&[
                ("dr.orders", 1),
                ("__consumer_offsets", 50),
                ("mm2-offset-syncs.dr.internal", 1),
            ]),
            &sizes(&[]),
            &none(),
        );
        assert_eq!(v, FlowView::default());
    }

    mod with_double {
        use super::*;
        use crate::admin::double::FakeCluster;
        use std::sync::Arc;

        fn setup(
            can_grow: bool,
        ) -> (
            Discovery<Arc<FakeCluster>>,
            UnitReceivers,
            Arc<FakeCluster>,
            Arc<FakeCluster>,
        ) {
            setup_with(can_grow, "")
        }

        fn setup_with(
            can_grow: bool,
            extra: &str,
        ) -> (
            Discovery<Arc<FakeCluster>>,
            UnitReceivers,
            Arc<FakeCluster>,
            Arc<FakeCluster>,
        ) {
            let text = "deployment = \"t\"\n[clusters.us]\nbootstrap = \"x:1\"\n[clusters.dr]\nbootstrap = \"x:2\"\n\
                        [[flows]]\nsource = \"us\"\ntarget = \"dr\"\ntopics = [\"orders\"]\nheartbeats = false\ncheckpoints = false\n\
                        config_sync_interval = \"1h\"\n";
            let config = Config::parse(&format!("{text}{extra}")).unwrap();
            let flows = config.flows.clone();
            let source = FakeCluster::with(&[("orders", 2), ("other", 1)], true);
            let target = FakeCluster::with(&[], can_grow);
            let (s, t) = (source.clone(), target.clone());
            let (d, rx) = Discovery::with_admins(
                &config,
                &flows,
                watch::channel(TopicOverrides::new()).1,
                TopicBoard::default(),
                |alias| Ok(if alias == "us" { s.clone() } else { t.clone() }),
            )
            .unwrap();
            (d, rx, source, target)
        }

        /// A discovery round, then a config and ACL sync on its listings.
        async fn round_and_sync(d: &mut Discovery<Arc<FakeCluster>>) {
            d.flows[0].discover().await.unwrap();
            d.syncs[0].sync().await;
        }

        fn partitions(rx: &UnitReceivers) -> Vec<i32> {
            rx[0].borrow().iter().map(|u| u.source.partition).collect()
        }

        #[tokio::test]
        async fn new_source_partitions_grow_the_remote_topic_before_their_units_start() {
            let (mut d, rx, source, target) = setup(true);
            d.flows[0].discover().await.unwrap();
            assert_eq!(
                target.size("us.orders"),
                Some(2),
                "created with the source's count"
            );
            assert_eq!(source.size("mm2-offset-syncs.dr.internal"), Some(1));
            assert_eq!(partitions(&rx), vec![0, 1]);
            source.set("orders", 4);
            d.flows[0].discover().await.unwrap();
            assert_eq!(target.size("us.orders"), Some(4), "grown");
            assert_eq!(partitions(&rx), vec![0, 1, 2, 3]);
            let calls = target.calls.lock().unwrap().clone();
            assert_eq!(calls, vec!["create us.orders 2", "grow us.orders 4"]);
        }

        #[tokio::test]
        async fn a_target_that_cannot_grow_keeps_the_extra_partitions_waiting() {
            let (mut d, rx, source, target) = setup(false);
            d.flows[0].discover().await.unwrap();
            source.set("orders", 4);
            d.flows[0].discover().await.unwrap();
            d.flows[0].discover().await.unwrap();
            assert_eq!(target.size("us.orders"), Some(2), "never shrunk, not grown");
            assert_eq!(
                partitions(&rx),
                vec![0, 1],
                "partitions 2 and 3 wait, nothing is produced to them"
            );
            let status =
                d.topics().lock().unwrap()[&("us-dr".to_owned(), "orders".to_owned())].clone();
            assert_eq!(
                (status.source_partitions, status.target_partitions),
                (4, Some(2))
            );
            assert_eq!(
                status.note.as_deref(),
                Some("remote topic has 2 of 4 partitions; the others wait")
            );
            // It keeps trying on every round.
            let grows = target
                .calls
                .lock()
                .unwrap()
                .iter()
                .filter(|c| c.starts_with("grow"))
                .count();
            assert_eq!(grows, 2);
        }

        #[tokio::test]
        async fn a_larger_target_is_kept_and_replicated_by_partition_number() {
            let (mut d, rx, _source, target) = setup(true);
            target.set("us.orders", 5);
            d.flows[0].discover().await.unwrap();
            assert_eq!(target.size("us.orders"), Some(5), "never shrunk");
            assert_eq!(partitions(&rx), vec![0, 1]);
            let status =
                d.topics().lock().unwrap()[&("us-dr".to_owned(), "orders".to_owned())].clone();
            assert_eq!(
                status.note.as_deref(),
                Some(
                    "remote topic has 5 partitions, its source 2: replicating by partition number"
                )
            );
        }

        #[tokio::test]
        async fn remote_topics_get_the_source_configs_and_follow_them() {
            let (mut d, _rx, source, target) = setup(true);
            source.configs.lock().unwrap().insert(
                "orders".into(),
                [
                    ("retention.ms", "1000"),
                    ("min.insync.replicas", "2"),
                    ("cleanup.policy", "compact"),
                ]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            );
            round_and_sync(&mut d).await;
            let remote = |k: &str| target.configs.lock().unwrap()["us.orders"].get(k).cloned();
            assert_eq!(
                remote("retention.ms").as_deref(),
                Some("1000"),
                "created with the source's configs"
            );
            assert_eq!(remote("cleanup.policy").as_deref(), Some("compact"));
            assert_eq!(remote("min.insync.replicas"), None, "excluded by default");
            let status =
                d.topics().lock().unwrap()[&("us-dr".to_owned(), "orders".to_owned())].clone();
            assert_eq!((status.configs_in_sync, status.note), (Some(true), None));
            // The source changes; an operator tuned the target on their own.
            source
                .configs
                .lock()
                .unwrap()
                .get_mut("orders")
                .unwrap()
                .insert("retention.ms".into(), "2000".into());
            target
                .configs
                .lock()
                .unwrap()
                .get_mut("us.orders")
                .unwrap()
                .insert("segment.ms".into(), "5".into());
            round_and_sync(&mut d).await;
            assert_eq!(
                remote("retention.ms").as_deref(),
                Some("2000"),
                "followed the source"
            );
            assert_eq!(
                remote("segment.ms").as_deref(),
                Some("5"),
                "a target-only setting is left alone"
            );
            let alters = target
                .calls
                .lock()
                .unwrap()
                .iter()
                .filter(|c| c.starts_with("alter"))
                .count();
            assert_eq!(alters, 1, "one incremental change, nothing when in step");
        }

        #[tokio::test]
        async fn a_topic_just_created_is_not_compared_while_the_target_cannot_describe_it() {
            let (mut d, _rx, source, target) = setup(true);
            source.configs.lock().unwrap().insert(
                "orders".into(),
                [("retention.ms".to_owned(), "1000".to_owned())].into(),
            );
            // Just after the creation the target describes no configs for it.
            target
                .undescribed
                .lock()
                .unwrap()
                .insert("us.orders".into());
            round_and_sync(&mut d).await;
            let calls = target.calls.lock().unwrap().clone();
            assert_eq!(
                calls,
                vec!["create us.orders 2"],
                "created with the configs; nothing altered"
            );
            let status =
                d.topics().lock().unwrap()[&("us-dr".to_owned(), "orders".to_owned())].clone();
            assert_eq!(
                status.configs_in_sync,
                Some(true),
                "in step by construction"
            );
        }

        #[tokio::test]
        async fn acl_sync_copies_read_and_all_as_read_but_never_write() {
            use crate::native_admin::{AclOperation::*, AclPermission::*, TopicAcl};
            let text = "deployment = \"t\"\n[clusters.us]\nbootstrap = \"x:1\"\n[clusters.dr]\nbootstrap = \"x:2\"\n\
                        [[flows]]\nsource = \"us\"\ntarget = \"dr\"\ntopics = [\"orders\"]\nheartbeats = false\n\
                        checkpoints = false\nsync_acls = true\nsync_acl_deletions = true\n";
            let config = Config::parse(text).unwrap();
            let flows = config.flows.clone();
            let source = FakeCluster::with(&[("orders", 1)], true);
            let target = FakeCluster::with(&[], true);
            let acl = |topic: &str, who: &str, operation, permission| TopicAcl {
                topic: topic.into(),
                principal: format!("User:{who}"),
                host: "*".into(),
                operation,
                permission,
            };
            source.acls.lock().unwrap().extend([
                acl("orders", "alice", Read, Allow),
                acl("orders", "bob", Write, Allow),
                acl("orders", "carol", All, Allow),
            ]);
            target.acls.lock().unwrap().extend([
                acl("us.orders", "mallory", Read, Allow),
                acl("mine", "ops", Read, Allow),
            ]);
            let (s, t) = (source.clone(), target.clone());
            let (mut d, _rx) = Discovery::with_admins(
                &config,
                &flows,
                watch::channel(TopicOverrides::new()).1,
                TopicBoard::default(),
                |alias| Ok(if alias == "us" { s.clone() } else { t.clone() }),
            )
            .unwrap();
            round_and_sync(&mut d).await;
            let got: Vec<TopicAcl> = target.acls.lock().unwrap().iter().cloned().collect();
            assert_eq!(
                got,
                vec![
                    acl("mine", "ops", Read, Allow),
                    acl("us.orders", "alice", Read, Allow),
                    acl("us.orders", "carol", Read, Allow),
                ],
                "bob's WRITE not copied, carol's ALL became READ, mallory's left the source's view and was removed, another topic's ACL untouched"
            );
        }

        #[tokio::test]
        async fn a_remote_topic_deleted_while_replicated_is_created_again_with_its_partitions() {
            let (mut d, rx, _source, target) = setup_with(true, "");
            d.flows[0].discover().await.unwrap();
            assert_eq!(partitions(&rx), vec![0, 1]);
            assert!(d.flows[0].seen_remote.contains("us.orders"));
            // Deleted on the target between two rounds.
            target.topics.lock().unwrap().remove("us.orders");
            d.flows[0].discover().await.unwrap();
            assert_eq!(
                target.size("us.orders"),
                Some(2),
                "created again, as its source"
            );
            let creates = target
                .calls
                .lock()
                .unwrap()
                .iter()
                .filter(|c| c.starts_with("create us.orders"))
                .count();
            assert_eq!(creates, 2);
            assert_eq!(partitions(&rx), vec![0, 1], "its units run again");
        }

        #[tokio::test]
        async fn a_source_topic_deleted_while_replicated_releases_its_units_and_keeps_the_remote_topic(
        ) {
            let (mut d, rx, source, target) = setup_with(true, "");
            d.flows[0].discover().await.unwrap();
            assert_eq!(partitions(&rx), vec![0, 1]);
            source.topics.lock().unwrap().remove("orders");
            d.flows[0].discover().await.unwrap();
            assert!(
                partitions(&rx).is_empty(),
                "its units leave the plan (and are released)"
            );
            assert_eq!(target.size("us.orders"), Some(2), "the remote topic stays");
            assert!(
                !target
                    .calls
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|c| c.starts_with("delete")),
                "nothing is deleted on the target"
            );
        }

        #[tokio::test]
        async fn a_config_and_acl_sync_that_hangs_does_not_hold_back_new_topics() {
            use std::sync::atomic::Ordering;
            let text = "deployment = \"t\"\n[clusters.us]\nbootstrap = \"x:1\"\n[clusters.dr]\nbootstrap = \"x:2\"\n\
                        [discovery]\ninterval = \"20ms\"\n\
                        [[flows]]\nsource = \"us\"\ntarget = \"dr\"\ntopics = [\"orders\", \"new.*\"]\nheartbeats = false\n\
                        checkpoints = false\nsync_acls = true\n";
            let config = Config::parse(text).unwrap();
            assert!(config.flows[0].sync_topic_configs.is_some());
            let flows = config.flows.clone();
            let source = FakeCluster::with(&[("orders", 1)], true);
            let target = FakeCluster::with(&[("us.orders", 1)], true);
            // Every config or ACL describe on the target hangs.
            target.stalled.store(true, Ordering::SeqCst);
            let (s, t) = (source.clone(), target.clone());
            let (d, mut rx) = Discovery::with_admins(
                &config,
                &flows,
                watch::channel(TopicOverrides::new()).1,
                TopicBoard::default(),
                |alias| Ok(if alias == "us" { s.clone() } else { t.clone() }),
            )
            .unwrap();
            let stop = CancellationToken::new();
            let running = tokio::spawn(d.run(stop.clone()));
            let topics = |rx: &watch::Receiver<BTreeSet<Unit>>| -> BTreeSet<String> {
                rx.borrow().iter().map(|u| u.source.topic.clone()).collect()
            };
            let wait = Duration::from_secs(10);
            tokio::time::timeout(wait, rx[0].wait_for(|u| !u.is_empty()))
                .await
                .expect("the first round's units")
                .unwrap();
            tokio::time::timeout(wait, async {
                while target.stalls.load(Ordering::SeqCst) == 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .expect("the sync reached the target and hangs there");
            // A topic created while the sync hangs is discovered all the same.
            source.set("new.one", 2);
            tokio::time::timeout(wait, rx[0].wait_for(|u| u.len() == 3))
                .await
                .expect("the new topic's units, with the sync still hanging")
                .unwrap();
            assert_eq!(
                topics(&rx[0]),
                BTreeSet::from(["new.one".into(), "orders".into()])
            );
            assert_eq!(target.size("us.new.one"), Some(2));
            stop.cancel();
            tokio::time::timeout(wait, running)
                .await
                .expect("discovery and the hanging sync stop")
                .unwrap();
        }

        #[tokio::test]
        async fn remote_topics_get_the_flows_replication_factor() {
            let (mut d, _rx, _source, target) = setup_with(true, "replication_factor = 3\n");
            d.flows[0].discover().await.unwrap();
            assert!(target
                .calls
                .lock()
                .unwrap()
                .contains(&"create us.orders 2 rf3".to_owned()));
        }
    }
}
