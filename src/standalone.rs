//! Standalone mode: every role in one process. Discovery publishes each
//! flow's units straight to that flow's data plane (the embedded
//! coordinator of a one-machine deployment).

use std::sync::Arc;

use anyhow::Context as _;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use strait_common::config::Config;
use strait_controller::checkpoint::{run_checkpoints, CheckpointSpec};
use strait_controller::discovery::Discovery;
use strait_worker::{run_flow, run_heartbeats, FlowSpec, StatusBoard};

use crate::serve;

pub async fn run(config: Config) -> anyhow::Result<()> {
    let flows = config.flows()?;
    let shutdown = CancellationToken::new();
    let metrics = serve::install_metrics()?;
    let status = StatusBoard::default();

    info!(listen = %config.metrics.listen, flows = flows.len(), deployment = %config.deployment,
          "strait started; metrics at http://{}/metrics", config.metrics.listen);

    let (discovery, receivers) = Discovery::new(&config, &flows)?;
    let api = serve::Api {
        config: Arc::new(config.clone()),
        status: status.clone(),
        topics: discovery.topics(),
    };
    let http = serve::bind(config.metrics.listen, metrics, api, shutdown.clone()).await?;
    let mut tasks = JoinSet::new();
    for (flow, units) in flows.into_iter().zip(receivers) {
        let spec = FlowSpec::new(&config, flow);
        if spec.flow.checkpoints.is_some() {
            let cp = CheckpointSpec {
                deployment: spec.deployment.clone(),
                flow: spec.flow.clone(),
                source: spec.source.clone(),
                target: spec.target.clone(),
                syncs_cluster: spec.syncs_cluster.clone(),
            };
            tasks.spawn(run_checkpoints(cp, shutdown.child_token()));
        }
        if spec.flow.heartbeats.is_some() {
            tasks.spawn(run_heartbeats(
                spec.clone(),
                status.clone(),
                shutdown.child_token(),
            ));
        }
        tasks.spawn(run_flow(
            spec,
            units,
            status.clone(),
            shutdown.child_token(),
        ));
    }
    let discovery = tokio::spawn(discovery.run(shutdown.child_token()));

    let mut failure = None;
    tokio::select! {
        signal = shutdown_signal() => {
            info!(signal, "stopping: draining in-flight records");
        }
        Some(done) = tasks.join_next() => {
            failure = Some(done.context("flow task panicked").and_then(|r| r).err()
                .unwrap_or_else(|| anyhow::anyhow!("a flow stopped unexpectedly")));
        }
    }
    shutdown.cancel();
    // Each flow bounds its own drain by worker.drain_timeout.
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done.context("flow task panicked").and_then(|r| r) {
            warn!(error = format!("{e:#}"), "flow ended with an error");
        }
    }
    let _ = discovery.await;
    let _ = http.await;
    match failure {
        None => {
            info!("strait stopped");
            Ok(())
        }
        Some(e) => Err(e),
    }
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
