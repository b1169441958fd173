//! The data plane. A worker replicates the units it is given: it consumes
//! with manual assignment (no group membership, so no rebalances), produces
//! to the same partition of the remote topic with an idempotent producer,
//! commits only what the target acknowledged, and emits offset syncs.
//!
//! It knows nothing of how units are chosen: it is handed a set of units per
//! flow (a [`UnitLink`]) and follows it, tells which units it still holds,
//! and stops writing when the link's fence closes. The worker process
//! (`member`) connects it to the coordinator.

pub mod errors;
pub mod heartbeat;
pub mod inflight;
pub mod member;
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
use strait_common::coord::lease::Fence;
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

/// Runs a flow's data plane until `shutdown` fires, then drains (bounded by
/// `worker.drain_timeout`). A session that fails is restarted after
/// `worker.restart_backoff`, resuming every unit from its committed
/// position; only a failure to create the Kafka clients (a configuration
/// error) ends the flow with an error.
pub async fn run_flow(
    spec: FlowSpec,
    link: UnitLink,
    status: StatusBoard,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let spec = Arc::new(spec);
    let flow = spec.flow.name.clone();
    loop {
        // No session without a lease to vouch for it (at start, and after
        // fencing until the worker holds a new lease).
        while !link.fence.is_open() {
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
                _ = shutdown.cancelled() => return Ok(()),
            }
        }
        let (s, l, sh, st) = (spec.clone(), link.clone(), shutdown.clone(), status.clone());
        let result = tokio::task::spawn_blocking(move || session::run(&s, &l, &sh, &st))
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
            Err(SessionError::Fenced) => {
                // The worker re-acquires its units with a new lease and
                // assigns them again; the next session waits for that.
                metrics::counter!(m::ERRORS, "flow" => flow.clone(), "kind" => "fenced")
                    .increment(1);
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
