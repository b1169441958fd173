//! A flow's clusters as the checkpoint module sees them: the source whose
//! groups are read, the target that gets checkpoints and group offsets, the
//! cluster holding the offset syncs. Shared by the service, translation and
//! failover, and failback.

use strait_common::config::{ClusterConfig, Config, Flow};

/// Where one flow's checkpoints, translations and failovers find their
/// clusters.
#[derive(Debug, Clone)]
pub struct CheckpointSpec {
    pub deployment: String,
    pub flow: Flow,
    pub source: ClusterConfig,
    pub target: ClusterConfig,
    pub syncs_cluster: ClusterConfig,
}

impl CheckpointSpec {
    /// The spec of `flow`, one of `config`'s resolved flows.
    pub fn new(config: &Config, flow: &Flow) -> Self {
        let clusters = config.clusters_of(flow);
        CheckpointSpec {
            deployment: config.deployment.clone(),
            flow: flow.clone(),
            source: clusters.source,
            target: clusters.target,
            syncs_cluster: clusters.syncs,
        }
    }
}
