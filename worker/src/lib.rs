//! The data plane. A worker replicates the units it is given: it consumes
//! with manual assignment (no group membership, so no rebalances), produces
//! to the same partition of the remote topic with an idempotent producer,
//! commits only what the target acknowledged, and emits offset syncs.
//!
//! It knows nothing of how units are chosen: it is handed a set of units per
//! flow (a `watch` channel) and follows it.

pub mod errors;
pub mod heartbeat;
pub mod inflight;
pub mod status;

mod clients;
mod session;

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use strait_common::config::{ClusterConfig, Config, Flow, WorkerConfig};
use strait_common::metrics as m;
use strait_common::model::Unit;

pub use heartbeat::run_heartbeats;
pub use session::SessionError;
pub use status::{FlowHealth, StatusBoard, UnitState, UnitStatus};

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
}

impl FlowSpec {
    pub fn new(config: &Config, flow: Flow) -> Self {
        let cluster = |alias: &str| config.clusters[alias].clone();
        FlowSpec {
            deployment: config.deployment.clone(),
            source: cluster(&flow.source),
            target: cluster(&flow.target),
            syncs_cluster: cluster(flow.offset_syncs().0),
            worker: config.worker.clone(),
            per_partition_metrics: config.metrics.per_partition,
            flow,
        }
    }
}

/// Runs a flow's data plane until `shutdown` fires, then drains (bounded by
/// `worker.drain_timeout`). A session that fails is restarted after
/// `worker.restart_backoff`, resuming every unit from its committed
/// position; only a failure to create the Kafka clients (a configuration
/// error) ends the flow with an error.
pub async fn run_flow(
    spec: FlowSpec,
    mut units: watch::Receiver<BTreeSet<Unit>>,
    status: StatusBoard,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let spec = Arc::new(spec);
    let flow = spec.flow.name.clone();
    loop {
        units.mark_changed();
        let (s, u, sh, st) = (
            spec.clone(),
            units.clone(),
            shutdown.clone(),
            status.clone(),
        );
        let result = tokio::task::spawn_blocking(move || session::run(&s, u, &sh, &st))
            .await
            .context("flow session panicked")?;
        match result {
            Ok(()) => {
                info!(flow = %flow, "flow stopped");
                return Ok(());
            }
            Err(e @ SessionError::Clients(_)) => {
                return Err(e).with_context(|| format!("flow {flow}"));
            }
            Err(e) => {
                metrics::counter!(m::ERRORS, "flow" => flow.clone(), "kind" => "session")
                    .increment(1);
                error!(flow = %flow, error = %e, "flow session failed; restarting from committed positions");
                tokio::select! {
                    _ = tokio::time::sleep(spec.worker.restart_backoff) => {}
                    _ = shutdown.cancelled() => return Ok(()),
                }
            }
        }
    }
}
