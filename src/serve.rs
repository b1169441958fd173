//! The HTTP endpoint of a strait process: Prometheus metrics and health.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use strait_common::config::Config;
use strait_controller::checkpoint::{CheckpointBoard, GroupSelector};
use strait_controller::discovery::TopicBoard;
use strait_worker::StatusBoard;

use crate::offsets::{rows_json, translate_all, TranslateError};
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

/// What the read-only API answers from.
#[derive(Clone)]
pub struct Api {
    pub config: Arc<Config>,
    pub status: StatusBoard,
    pub topics: TopicBoard,
    pub checkpoints: CheckpointBoard,
    pub ready: Readiness,
}

/// What `/ready` checks in a process without the controller role (a
/// controller's `/ready`, in the operator API, says whether it leads or
/// knows the leader).
#[derive(Clone)]
pub struct Readiness {
    /// Serve `/ready` here: a worker-only process.
    pub worker_only: bool,
}

/// Binds `addr` (failing at once if it is taken) and serves `/metrics`,
/// `/health`, `/v1/status`, `/v1/offsets/translate` (and `-back`) and
/// `/v1/preflight`
/// until `shutdown`;
/// runs the recorder's upkeep meanwhile.
pub async fn bind(
    addr: SocketAddr,
    metrics: PrometheusHandle,
    api: Api,
    extra: Router,
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
        .route("/health", get(|| async { "ok\n" }))
        .route("/v1/status", get(status))
        .route("/v1/offsets/translate", get(translate))
        .route("/v1/offsets/translate-back", get(translate_back))
        .route("/v1/preflight", get(preflight));
    let app = if api.ready.worker_only {
        app.route("/ready", get(ready))
    } else {
        app
    };
    let app = app
        .with_state(api)
        .merge(extra)
        // Unknown routes answer like every other error: JSON.
        .fallback(
            |method: axum::http::Method, uri: axum::http::Uri| async move {
                error(
                    StatusCode::NOT_FOUND,
                    format!("no route {method} {}", uri.path()),
                )
            },
        );
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
    }))
}

/// A worker's readiness: 200 once it is registered on a live lease (and
/// not draining), 503 with the reason otherwise. `/health` only says the
/// process is alive.
async fn ready(State(api): State<Api>) -> Response {
    if !api.status.registered() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the worker is not registered on a live lease (starting, lease lost, or draining)",
        );
    }
    Json(json!({ "ready": true })).into_response()
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(json!({ "error": message.into() }))).into_response()
}

/// Every unit this process runs and every flow's heartbeat figures.
async fn status(State(api): State<Api>) -> Response {
    let health = api.status.health();
    let checkpoints = api
        .checkpoints
        .lock()
        .map(|b| b.clone())
        .unwrap_or_default();
    let now = std::time::Instant::now();
    let units = api.status.snapshot();
    let flows: Vec<_> = api
        .config
        .flows
        .iter()
        .map(|f| {
            let h = health.get(&f.name).copied().unwrap_or_default();
            // Present while this process runs the flow's checkpoint service
            // (the leader): how far checkpoints trail the source commits.
            let cp = checkpoints.get(&f.name).map(|c| {
                let age = |o: &Option<(String, std::time::Instant)>| {
                    o.as_ref()
                        .map(|(_, t)| now.saturating_duration_since(*t).as_secs_f64())
                };
                let group =
                    |o: &Option<(String, std::time::Instant)>| o.as_ref().map(|(g, _)| g.clone());
                json!({
                    "groups": c.groups,
                    "round_seconds": c.round.as_secs_f64(),
                    "lag_seconds": age(&c.oldest),
                    "oldest_group": group(&c.oldest),
                    "group_sync_lag_seconds": age(&c.sync_oldest),
                    "group_sync_oldest_group": group(&c.sync_oldest),
                    "groups_active_on_target": c.active_on_target,
                })
            });
            json!({
                "name": f.name,
                "source": f.source,
                "target": f.target,
                "units": units.keys().filter(|u| u.flow == f.name).count(),
                "heartbeat_age_seconds": h.heartbeat_age_seconds,
                "heartbeat_latency_seconds": h.heartbeat_latency_seconds,
                "checkpoints": cp,
            })
        })
        .collect();
    let units: Vec<_> = units
        .iter()
        .map(|(u, s)| {
            json!({
                "flow": u.flow,
                "topic": u.source.topic,
                "partition": u.source.partition,
                "remote_topic": u.remote_topic,
                "state": s.state.as_str(),
                "committed": s.committed,
                "acknowledged": s.acknowledged,
                "in_flight": s.in_flight,
                "lag": s.lag,
                "error": s.error,
                "lost": s.lost,
            })
        })
        .collect();
    let topics: Vec<_> = api
        .topics
        .lock()
        .map(|b| b.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|((flow, topic), t)| {
            json!({
                "flow": flow,
                "topic": topic,
                "remote_topic": t.remote_topic,
                "source_partitions": t.source_partitions,
                "target_partitions": t.target_partitions,
                "configs_in_sync": t.configs_in_sync,
                "note": t.note,
            })
        })
        .collect();
    // Permissions the clusters refuse now, each with the ACL that grants it.
    let refused: Vec<_> = strait_common::access::denials::current()
        .into_iter()
        .map(|d| {
            let since = d
                .since
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |t| t.as_millis() as u64);
            json!({
                "cluster": d.cluster,
                "principal": d.principal,
                "flow": d.flow,
                "feature": d.feature.name(),
                "operation": d.operation.to_string(),
                "resource": d.resource,
                "grant": d.grant,
                "error": d.error,
                "since_ms": since,
                "refusals": d.refusals,
            })
        })
        .collect();
    Json(json!({ "deployment": api.config.deployment, "flows": flows, "topics": topics, "units": units, "permissions_refused": refused }))
        .into_response()
}

#[derive(Deserialize)]
struct TranslateQuery {
    group: Option<String>,
    groups: Option<String>,
    flow: Option<String>,
}

/// The groups a translate query names (`group` or `groups`), or the
/// answer that says what is wrong with it.
type TranslateParams = Result<Query<TranslateQuery>, axum::extract::rejection::QueryRejection>;

/// A translate query and the groups it names, or the answer that says what
/// is wrong with it.
fn parse_translate(
    query: TranslateParams,
) -> Result<(TranslateQuery, GroupSelector), Box<Response>> {
    let Ok(Query(q)) = query else {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "malformed query string",
        )));
    };
    let selector = query_selector(&q)?;
    Ok((q, selector))
}

fn query_selector(q: &TranslateQuery) -> Result<GroupSelector, Box<Response>> {
    match (q.group.clone().filter(|g| !g.is_empty()), &q.groups) {
        (Some(g), None) => Ok(GroupSelector::One(g)),
        (None, Some(re)) => GroupSelector::matching(re).map_err(|e| {
            Box::new(error(
                StatusCode::BAD_REQUEST,
                format!("`groups`: invalid regex: {e}"),
            ))
        }),
        (Some(_), Some(_)) => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "give either `group` or `groups`, not both",
        ))),
        (None, None) => Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "query parameter `group` (or `groups`, a regex) is required",
        ))),
    }
}

/// Where a source consumer group would resume on the target.
async fn translate(State(api): State<Api>, query: TranslateParams) -> Response {
    let (q, selector) = match parse_translate(query) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let config = api.config.clone();
    let result = tokio::task::spawn_blocking(move || {
        translate_all(&config, &selector, q.flow.as_deref(), false)
    })
    .await;
    match result {
        Ok(Ok((rows, _))) => Json(rows_json(&rows)).into_response(),
        Ok(Err(e @ TranslateError::NoSuchFlow(_))) => error(StatusCode::NOT_FOUND, e.to_string()),
        Ok(Err(e)) => error(StatusCode::BAD_GATEWAY, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Failback, read only: where groups that consumed `flow`'s remote topics
/// on its target would resume on its source topics (what `strait offsets
/// failback` writes).
async fn translate_back(State(api): State<Api>, query: TranslateParams) -> Response {
    let (q, selector) = match parse_translate(query) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let Some(name) = q.flow.clone() else {
        return error(
            StatusCode::BAD_REQUEST,
            "query parameter `flow` is required (the flow the groups failed over through)",
        );
    };
    let Some(flow) = api.config.flow(&name).cloned() else {
        return error(StatusCode::NOT_FOUND, format!("no flow named {name:?}"));
    };
    let spec = strait_controller::checkpoint::CheckpointSpec::new(&api.config, &flow);
    let result = tokio::task::spawn_blocking(move || {
        strait_controller::checkpoint::failback::translate_back_groups(&spec, &selector)
    })
    .await;
    match result {
        Ok(Ok(rows)) => Json(
            rows.iter()
                .map(|r| {
                    json!({
                        "flow": name,
                        "group": r.group,
                        "topic": r.topic,
                        "remote_topic": r.remote_topic,
                        "partition": r.partition,
                        "target_offset": r.target_offset,
                        "source_offset": r.source_offset,
                        "exact": r.translation.rule == strait_common::syncs::Rule::Exact,
                        "max_reread": r.translation.max_reread,
                        "clamped_to_source_end": r.clamped_to,
                    })
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Ok(Err(e)) => error(StatusCode::BAD_GATEWAY, format!("{e:#}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The preflight (`strait check --preflight`), run now against the
/// clusters: every permission the config needs, granted, missing (with the
/// ACL that grants it) or not checkable yet. Takes a few seconds.
async fn preflight(State(api): State<Api>) -> Response {
    let config = api.config.clone();
    match tokio::task::spawn_blocking(move || crate::preflight::run(&config, Default::default()))
        .await
    {
        Ok(report) => Json(report.to_json()).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
