//! The roles of a strait process, composed. Without `[coordination] etcd`
//! one process holds every role over the embedded coordinator; with it,
//! `--role controller|worker|all` joins a fleet. Either way the controller
//! and the worker run the same code against the coordination trait.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use strait_common::config::{Config, Flow};
use strait_common::coord::embedded::Embedded;
use strait_common::coord::etcd::Etcd;
use strait_common::coord::lease::Fence;
use strait_common::coord::Coord;
use strait_common::model::Unit;
use strait_controller::api::{self, ApiState};
use strait_controller::checkpoint::{run_checkpoints, CheckpointBoard, CheckpointSpec};
use strait_controller::discovery::{Discovery, TopicBoard, TopicOverrides};
use strait_controller::leader::{Controller, ControllerSpec, Duties};
use strait_controller::planner::PlannerConfig;
use strait_worker::member::{self, Member, MemberSpec};
use strait_worker::{fence_writer, run_flow, run_heartbeats, FlowSpec, StatusBoard};

use crate::serve;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Controller and worker in one process (the default).
    All,
    /// Campaign for leadership; the leader plans and serves the API.
    Controller,
    /// Replicate the units the plan gives this worker.
    Worker,
}

impl Role {
    fn controller(self) -> bool {
        matches!(self, Role::All | Role::Controller)
    }
    fn worker(self) -> bool {
        matches!(self, Role::All | Role::Worker)
    }
}

/// Stops at start when a cluster refuses strait's login for good (a wrong
/// password, an unknown CA, an expired or missing certificate), naming the
/// cluster and librdkafka's reason, as etcd's TLS does; retrying would only
/// log the same refusal every second. A cluster that is only unreachable
/// is waited for as always.
async fn refuse_bad_logins(config: &Config) -> anyhow::Result<()> {
    let mut checks = tokio::task::JoinSet::new();
    for (alias, cluster) in &config.clusters {
        let (alias, cluster) = (alias.clone(), cluster.clone());
        checks.spawn_blocking(move || {
            let refused = strait_common::kafka::login_refused(&cluster, LOGIN_CHECK);
            (alias, refused)
        });
    }
    let mut refused: Vec<(String, String)> = Vec::new();
    while let Some(r) = checks.join_next().await {
        if let (alias, Some(why)) = r? {
            refused.push((alias, why));
        }
    }
    refused.sort();
    if let Some((alias, why)) = refused.first() {
        anyhow::bail!(
            "cluster {alias} refuses strait's login: {why} (check [clusters.{alias}.kafka]: the credentials, ssl.ca.location and the client certificate)"
        );
    }
    Ok(())
}

/// How long the login check waits for a cluster's first answer.
const LOGIN_CHECK: std::time::Duration = std::time::Duration::from_secs(10);

/// How often a worker reports per-unit load.
const LOAD_REPORT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs `config`'s flows in `role`. `defined` is the config as written,
/// paused flows included: what the process's HTTP API answers about
/// (`/v1/offsets/translate-back` of a paused flow, for one).
pub async fn run(
    config: Config,
    defined: Config,
    role: Role,
    id: Option<String>,
) -> anyhow::Result<()> {
    let flows = config.flows.clone();
    let fleet = config.coordination.is_fleet();
    if !fleet && role != Role::All {
        anyhow::bail!(
            "--role {role:?} joins a fleet: name etcd endpoints in [coordination] etcd (without them one process runs every role)"
        );
    }
    let id = id.unwrap_or_else(|| default_id(fleet));
    refuse_bad_logins(&config).await?;
    strait_common::access::denials::know_principals(&config);
    let coord: Coord = if fleet {
        Arc::new(
            Etcd::connect(&config.coordination)
                .await
                .context("cannot reach etcd ([coordination])")?,
        )
    } else {
        Arc::new(Embedded::new())
    };
    let address = config
        .api
        .advertise
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.metrics.listen));
    let metrics = serve::install_metrics()?;
    let status = StatusBoard::default();
    let topics = TopicBoard::default();
    let checkpoints = CheckpointBoard::default();
    info!(listen = %config.metrics.listen, flows = flows.len(), deployment = %config.deployment,
          id = %id, ?role, store = %coord.describe(), "strait started; metrics at http://{}/metrics", config.metrics.listen);

    let stop_http = CancellationToken::new();
    let stop_controller = CancellationToken::new();
    let drain = CancellationToken::new();
    let stop_flows = CancellationToken::new();

    let mut controller_task = None;
    let mut extra = Router::new();
    if role.controller() {
        let spec = ControllerSpec {
            id: id.clone(),
            deployment: config.deployment.clone(),
            address: address.clone(),
            lease_ttl: config.coordination.lease_ttl,
            planner: PlannerConfig {
                balance_ratio: config.planner.balance_ratio,
            },
        };
        let duties = duties(
            config.clone(),
            flows.clone(),
            status.clone(),
            topics.clone(),
            checkpoints.clone(),
        );
        let (controller, leadership) = Controller::new(coord.clone(), spec, flows.clone(), duties);
        extra = api::router(ApiState::new(
            coord.clone(),
            &config,
            flows.clone(),
            leadership,
            topics.clone(),
        ));
        controller_task = Some(tokio::spawn(controller.run(stop_controller.clone())));
    }
    let api = serve::Api {
        config: Arc::new(defined),
        status: status.clone(),
        topics,
        checkpoints,
        ready: serve::Readiness {
            worker_only: role.worker() && !role.controller(),
        },
    };
    let http = serve::bind(
        config.metrics.listen,
        metrics,
        api,
        extra,
        stop_http.clone(),
    )
    .await?;

    let mut flows_set = JoinSet::new();
    let mut member_task = None;
    if role.worker() {
        let names: Vec<String> = flows.iter().map(|f| f.name.clone()).collect();
        let (fence, links, ports) = member::links(&names);
        let mut exactly_once = BTreeMap::new();
        let mut eos_specs = BTreeMap::new();
        for flow in &flows {
            let spec = FlowSpec::new(&config, flow.clone()).for_worker(&id);
            if flow.exactly_once.is_some() {
                exactly_once.insert(flow.name.clone(), spec.transactional_id());
                eos_specs.insert(flow.name.clone(), spec.clone());
            }
            flows_set.spawn(run_flow(
                spec,
                links[&flow.name].clone(),
                status.clone(),
                stop_flows.clone(),
            ));
        }
        let spec = MemberSpec {
            id: id.clone(),
            deployment: config.deployment.clone(),
            address: address.clone(),
            lease_ttl: config.coordination.lease_ttl,
            report_interval: LOAD_REPORT,
            drain_timeout: config.worker.drain_timeout,
            exactly_once,
        };
        let fencer: member::Fencer = Arc::new(move |flow: &str, txid: &str| {
            let spec = eos_specs
                .get(flow)
                .ok_or(member::FenceError::NotExactlyOnce)?;
            Ok(fence_writer(spec, txid)?)
        });
        let m = Member::new(coord.clone(), spec, fence, ports, status.clone(), fencer);
        member_task = Some(tokio::spawn(m.run(drain.clone())));
    }

    let mut failure = None;
    tokio::select! {
        signal = shutdown_signal() => info!(signal, "stopping: releasing units, then draining"),
        Some(done) = flows_set.join_next() => {
            failure = Some(done.context("flow task panicked").and_then(|r| r).err()
                .unwrap_or_else(|| anyhow::anyhow!("a flow stopped unexpectedly")));
        }
    }
    // Rolling restart: release every unit first (so the next owners start
    // at once), then stop the data plane, then give up the lease.
    drain.cancel();
    let lease = match member_task {
        Some(t) => t.await.ok().flatten(),
        None => None,
    };
    stop_flows.cancel();
    while let Some(done) = flows_set.join_next().await {
        if let Err(e) = done.context("flow task panicked").and_then(|r| r) {
            warn!(error = format!("{e:#}"), "flow ended with an error");
        }
    }
    if let Some(lease) = lease {
        if let Err(e) = lease.revoke(&coord).await {
            warn!(error = %e, "cannot revoke the worker lease; it expires on its own");
        }
    }
    stop_controller.cancel();
    if let Some(t) = controller_task {
        let _ = t.await;
    }
    stop_http.cancel();
    let _ = http.await;
    match failure {
        None => {
            info!("strait stopped");
            Ok(())
        }
        Some(e) => Err(e),
    }
}

/// What the leader runs besides planning: discovery and metadata sync,
/// checkpoints, heartbeats. All of it stops when leadership ends.
fn duties(
    config: Config,
    flows: Vec<Flow>,
    status: StatusBoard,
    topics: TopicBoard,
    checkpoints: CheckpointBoard,
) -> Duties {
    Box::new(
        move |overrides: watch::Receiver<TopicOverrides>, fence: Fence, stop: CancellationToken| {
            let (discovery, receivers) =
                Discovery::new(&config, &flows, overrides, topics.clone())?;
            let mut tasks = JoinSet::new();
            tasks.spawn(discovery.run(stop.clone()));
            for flow in &flows {
                let spec = FlowSpec::new(&config, flow.clone());
                if spec.flow.checkpoints.is_some() {
                    let cp = CheckpointSpec::new(&config, flow);
                    tasks.spawn(log_end(
                        run_checkpoints(cp, fence.clone(), checkpoints.clone(), stop.clone()),
                        "checkpoints",
                    ));
                }
                if spec.flow.heartbeats.is_some() {
                    tasks.spawn(log_end(
                        run_heartbeats(spec.clone(), status.clone(), stop.clone()),
                        "heartbeats",
                    ));
                }
            }
            let out: Vec<watch::Receiver<BTreeSet<Unit>>> = receivers;
            Ok((out, tasks))
        },
    )
}

async fn log_end(task: impl std::future::Future<Output = anyhow::Result<()>>, what: &str) {
    if let Err(e) = task.await {
        warn!(error = format!("{e:#}"), "{what} stopped on an error");
    }
}

/// A worker id that stays the same across restarts on one host (stable ids
/// keep the plan sticky); `--id` overrides it, as several workers on one
/// host need.
fn default_id(fleet: bool) -> String {
    if !fleet {
        return "local".to_owned();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned())
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
