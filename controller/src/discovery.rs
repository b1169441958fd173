//! Topic discovery: list the source's topics on an interval, keep those a
//! flow replicates, make sure their remote topics exist on the target, and
//! publish the flow's units. Touches metadata only, never records.
//!
//! Safety rules:
//! * a failed listing changes nothing (units are never dropped because a
//!   cluster was briefly unreachable);
//! * a unit is published only once its remote partition exists on the
//!   target, so no record is produced to a partition that is not there.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use strait_common::config::{ClusterConfig, Config, Flow};
use strait_common::kafka::client_config;
use strait_common::metrics as m;
use strait_common::model::{TopicPartition, Unit};
use strait_common::policy::{checkpoints_topic, HEARTBEATS_TOPIC};

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

type Admin = Arc<AdminClient<DefaultClientContext>>;

/// Partition count of every topic of a cluster.
pub type TopicSizes = BTreeMap<String, i32>;

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

pub fn plan_flow(flow: &Flow, source: &TopicSizes, target: &TopicSizes) -> FlowView {
    let mut view = FlowView::default();
    for (topic, &parts) in source {
        if !flow.replicates(topic) {
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

struct FlowDiscovery {
    flow: Flow,
    source: Admin,
    target: Admin,
    syncs: Admin,
    syncs_ready: bool,
    heartbeats_ready: bool,
    checkpoints_ready: bool,
    warned_short: BTreeSet<String>,
    units: watch::Sender<BTreeSet<Unit>>,
}

/// Discovers the topics of every flow and publishes each flow's units.
pub struct Discovery {
    flows: Vec<FlowDiscovery>,
    interval: Duration,
}

fn admin(cluster: &ClusterConfig) -> anyhow::Result<Admin> {
    Ok(Arc::new(
        client_config(cluster)
            .create()
            .context("cannot create admin client")?,
    ))
}

impl Discovery {
    /// Builds discovery for `flows`; returns it and one receiver of units per flow.
    pub fn new(
        config: &Config,
        flows: &[Flow],
    ) -> anyhow::Result<(Discovery, Vec<watch::Receiver<BTreeSet<Unit>>>)> {
        let mut admins: BTreeMap<String, Admin> = BTreeMap::new();
        let mut get = |alias: &str| -> anyhow::Result<Admin> {
            if let Some(a) = admins.get(alias) {
                return Ok(a.clone());
            }
            let a = admin(&config.clusters[alias]).with_context(|| format!("cluster {alias}"))?;
            admins.insert(alias.to_owned(), a.clone());
            Ok(a)
        };
        let mut out = Vec::new();
        let mut receivers = Vec::new();
        for flow in flows {
            let (tx, rx) = watch::channel(BTreeSet::new());
            out.push(FlowDiscovery {
                source: get(&flow.source)?,
                target: get(&flow.target)?,
                syncs: get(flow.offset_syncs().0)?,
                flow: flow.clone(),
                syncs_ready: false,
                heartbeats_ready: false,
                checkpoints_ready: false,
                warned_short: BTreeSet::new(),
                units: tx,
            });
            receivers.push(rx);
        }
        Ok((
            Discovery {
                flows: out,
                interval: config.discovery.interval,
            },
            receivers,
        ))
    }

    /// Discovers once, then on every interval, until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            for f in &mut self.flows {
                if let Err(e) = f.discover().await {
                    metrics::counter!(m::ERRORS, "flow" => f.flow.name.clone(), "kind" => "discovery")
                        .increment(1);
                    warn!(flow = %f.flow.name, error = format!("{e:#}"), "discovery failed; units unchanged");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

async fn topic_sizes(admin: &Admin) -> anyhow::Result<TopicSizes> {
    let admin = admin.clone();
    tokio::task::spawn_blocking(move || {
        let md = admin
            .inner()
            .fetch_metadata(None, METADATA_TIMEOUT)
            .context("metadata request failed")?;
        let mut sizes = TopicSizes::new();
        for t in md.topics() {
            if t.error().is_none() && !t.partitions().is_empty() {
                sizes.insert(t.name().to_owned(), t.partitions().len() as i32);
            }
        }
        Ok(sizes)
    })
    .await?
}

async fn create_topic(
    admin: &Admin,
    name: &str,
    partitions: i32,
    config: &[(&str, &str)],
) -> anyhow::Result<bool> {
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(-1));
    for (k, v) in config {
        topic = topic.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT));
    let results = admin.create_topics([&topic], &opts).await?;
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(true),
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => Ok(false),
        Some(Err((_, code))) => Err(anyhow!("cannot create topic {name}: {code}")),
        None => Err(anyhow!("no result creating topic {name}")),
    }
}

impl FlowDiscovery {
    async fn discover(&mut self) -> anyhow::Result<()> {
        let flow = self.flow.name.clone();
        if !self.syncs_ready {
            let topic = self.flow.offset_syncs().1;
            if create_topic(&self.syncs, &topic, 1, &[("cleanup.policy", "compact")])
                .await
                .context("offset-syncs topic")?
            {
                info!(flow = %flow, topic = %topic, "offset-syncs topic created");
            }
            self.syncs_ready = true;
        }
        if self.flow.checkpoints.is_some() && !self.checkpoints_ready {
            let topic = checkpoints_topic(&self.flow.source);
            if create_topic(&self.target, &topic, 1, &[("cleanup.policy", "compact")])
                .await
                .context("checkpoints topic")?
            {
                info!(flow = %flow, topic = %topic, "checkpoints topic created on the target");
            }
            self.checkpoints_ready = true;
        }
        if self.flow.heartbeats.is_some() && !self.heartbeats_ready {
            if create_topic(
                &self.source,
                HEARTBEATS_TOPIC,
                1,
                &[("cleanup.policy", "compact")],
            )
            .await
            .context("heartbeats topic")?
            {
                info!(flow = %flow, topic = HEARTBEATS_TOPIC, "heartbeats topic created on the source");
            }
            self.heartbeats_ready = true;
        }
        let source = topic_sizes(&self.source)
            .await
            .context("listing source topics")?;
        let target = topic_sizes(&self.target)
            .await
            .context("listing target topics")?;
        let mut view = plan_flow(&self.flow, &source, &target);
        if !view.create.is_empty() {
            let mut target = target;
            for (remote, parts) in &view.create {
                match create_topic(&self.target, remote, *parts, &[]).await {
                    Ok(created) => {
                        if created {
                            metrics::counter!(m::TOPICS_CREATED, "flow" => flow.clone())
                                .increment(1);
                            info!(flow = %flow, topic = %remote, partitions = parts, "remote topic created");
                        }
                        target.insert(remote.clone(), *parts);
                    }
                    Err(e) => {
                        metrics::counter!(m::ERRORS, "flow" => flow.clone(), "kind" => "create_topic")
                            .increment(1);
                        warn!(flow = %flow, topic = %remote, error = format!("{e:#}"), "remote topic not created");
                    }
                }
            }
            view = plan_flow(&self.flow, &source, &target);
        }
        for (remote, want, have) in &view.short {
            if self.warned_short.insert(remote.clone()) {
                warn!(flow = %flow, topic = %remote, source_partitions = want, target_partitions = have,
                      "remote topic has fewer partitions than its source; the extra source partitions wait (partition growth is not implemented yet)");
            }
        }
        metrics::gauge!(m::DISCOVERY_UNITS, "flow" => flow.clone()).set(view.units.len() as f64);
        let units = view.units;
        self.units.send_if_modified(|current| {
            if *current == units {
                return false;
            }
            info!(flow = %flow, units = units.len(), "units changed");
            *current = units;
            true
        });
        Ok(())
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
        Config::parse(text).unwrap().flows().unwrap().remove(0)
    }

    fn sizes(list: &[(&str, i32)]) -> TopicSizes {
        list.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    #[test]
    fn missing_remote_topics_are_created_and_their_units_wait() {
        let v = plan_flow(&flow(), &sizes(&[("orders", 3), ("other", 1)]), &sizes(&[]));
        assert_eq!(v.create, vec![("us.orders".to_owned(), 3)]);
        assert!(
            v.units.is_empty(),
            "no unit before its remote partition exists"
        );
        let v = plan_flow(
            &flow(),
            &sizes(&[("orders", 3)]),
            &sizes(&[("us.orders", 3)]),
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
        );
        assert_eq!(v.units.len(), 2);
        assert_eq!(v.short, vec![("us.payments".to_owned(), 4, 2)]);
        let v = plan_flow(
            &flow(),
            &sizes(&[("payments", 2)]),
            &sizes(&[("us.payments", 5)]),
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
        );
        assert_eq!(v, FlowView::default());
    }
}
