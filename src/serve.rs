//! The HTTP endpoint of a strait process: Prometheus metrics and health.

use std::net::SocketAddr;

use anyhow::Context as _;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use strait_common::metrics as m;

/// Installs the global Prometheus recorder.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(m::REPLICATION_LATENCY.to_owned()),
            m::LATENCY_BUCKETS,
        )
        .context("latency buckets")?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    m::describe();
    Ok(handle)
}

/// How often histogram samples are folded into buckets. The recorder keeps
/// raw samples until then: without upkeep, memory grows with every record
/// whenever nobody scrapes `/metrics`.
const UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// Binds `addr` (failing at once if it is taken) and serves `/metrics` and
/// `/health` until `shutdown`; runs the recorder's upkeep meanwhile.
pub async fn bind(
    addr: SocketAddr,
    metrics: PrometheusHandle,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (metrics.listen)"))?;
    let upkeep = metrics.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP);
        loop {
            tokio::select! {
                _ = tick.tick() => upkeep.run_upkeep(),
                _ = stop.cancelled() => return,
            }
        }
    });
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { metrics.render() }
            }),
        )
        .route("/health", get(|| async { "ok\n" }));
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
    }))
}
