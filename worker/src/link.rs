//! What connects a flow's data plane to whoever decides its units: the
//! flow's spec, the assignment it is told to follow, what it reports it
//! holds, and the fence that stops it writing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tokio::sync::watch;

use strait_common::config::{ClusterConfig, Config, Flow, WorkerConfig};
use strait_common::coord::lease::Fence;
use strait_common::model::Unit;

/// Everything a flow's data plane needs to know.
#[derive(Debug, Clone)]
pub struct FlowSpec {
    pub deployment: String,
    pub flow: Flow,
    pub source: ClusterConfig,
    pub target: ClusterConfig,
    /// The cluster holding the flow's offset-syncs topic.
    pub syncs_cluster: ClusterConfig,
    pub worker: WorkerConfig,
    pub per_partition_metrics: bool,
    /// The worker's id: with exactly-once, part of its transactional id.
    pub worker_id: String,
    /// Where the data plane learns the source topics' ids.
    pub topic_ids: TopicIds,
}

/// Where a flow's data plane learns the ids of its source topics (which
/// tell a re-created topic from the one its progress was made in).
#[derive(Debug, Clone, Default)]
pub enum TopicIds {
    /// Asked of the source cluster (DescribeTopics).
    #[default]
    Source,
    /// Given: for a source that cannot answer DescribeTopics (librdkafka's
    /// mock cluster names no controller, which admin requests need).
    Fixed(BTreeMap<String, String>),
}

impl FlowSpec {
    pub fn new(config: &Config, flow: Flow) -> Self {
        let clusters = config.clusters_of(&flow);
        FlowSpec {
            deployment: config.deployment.clone(),
            source: clusters.source,
            target: clusters.target,
            syncs_cluster: clusters.syncs,
            worker: config.worker.clone(),
            per_partition_metrics: config.metrics.per_partition,
            worker_id: "local".to_owned(),
            topic_ids: TopicIds::Source,
            flow,
        }
    }

    /// The same, with the source topics' ids given rather than asked for.
    pub fn with_topic_ids(mut self, ids: BTreeMap<String, String>) -> Self {
        self.topic_ids = TopicIds::Fixed(ids);
        self
    }

    /// The same, run by the worker `id`.
    pub fn for_worker(mut self, id: &str) -> Self {
        self.worker_id = id.to_owned();
        self
    }

    /// The transactional id of this worker's sessions of the flow, when it
    /// is exactly-once: one producer per flow and worker, whatever the
    /// number of units (docs/coordination.md, "Exactly-once").
    pub fn transactional_id(&self) -> String {
        transactional_id(&self.flow.commit_group(&self.deployment), &self.worker_id)
    }
}

/// `{commit group}.{worker}`: `strait.{deployment}.{flow}.{worker}`.
pub fn transactional_id(commit_group: &str, worker: &str) -> String {
    format!("{commit_group}.{worker}")
}

/// What a flow's data plane is told to replicate. `generation` grows with
/// every change, so the worker can tell which assignment a session applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignment {
    pub generation: u64,
    pub units: BTreeSet<Unit>,
}

/// What a flow's data plane holds: the units it replicates or is still
/// releasing, as of the assignment `generation` it last applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    pub generation: u64,
    pub units: BTreeSet<Unit>,
    /// Units of an exactly-once flow this session released with their last
    /// transaction committed: their next owner has no writer to fence.
    pub clean: BTreeSet<Unit>,
}

/// How a flow's data plane is connected to whoever decides its units.
#[derive(Clone)]
pub struct UnitLink {
    pub units: watch::Receiver<Assignment>,
    pub held: Arc<watch::Sender<Held>>,
    /// Closed when the worker's lease cannot be vouched for: stop writing.
    pub fence: Fence,
}

impl UnitLink {
    /// A link and the ends its owner keeps: the assignment sender and the
    /// holdings receiver.
    pub fn new(fence: Fence) -> (UnitLink, watch::Sender<Assignment>, watch::Receiver<Held>) {
        let (units_tx, units) = watch::channel(Assignment::default());
        let (held, held_rx) = watch::channel(Held::default());
        (
            UnitLink {
                units,
                held: Arc::new(held),
                fence,
            },
            units_tx,
            held_rx,
        )
    }
}
