//! The operator API, served by the leader controller (DESIGN.md,
//! "Operations"). A follower answers every `/v1` call with a redirect to
//! the leader. Mutations need the bearer token when one is configured, and
//! are written as transactions guarded by the leader's term, so an API call
//! that reaches a deposed leader fails instead of landing.

// Handlers answer with a ready `Response` on every error path; its size is
// irrelevant next to an HTTP round trip.
#![allow(clippy::result_large_err)]

use crate::discovery::TopicBoard;
use std::collections::{BTreeMap, BTreeSet};

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use strait_common::config::{Config, Flow};
use strait_common::coord::keys::Keys;
use strait_common::coord::values::{
    decode, encode, FlagDoc, LeaderDoc, LoadDoc, OwnerDoc, TopicAction, TopicOverrideDoc,
    WorkerDoc, FORMAT,
};
use strait_common::coord::{Compare, Coord, Op, Revision};
use strait_common::model::TopicPartition;

use crate::leader::{stored_plan, topic_overrides, Leadership};

#[derive(Clone)]
pub struct ApiState {
    coord: Coord,
    keys: Keys,
    flows: Vec<Flow>,
    token: Option<String>,
    leadership: Leadership,
    /// The leader's discovery board: which source topics are replicated,
    /// with how many partitions.
    topics: TopicBoard,
}

impl ApiState {
    pub fn new(
        coord: Coord,
        config: &Config,
        flows: Vec<Flow>,
        leadership: Leadership,
        topics: TopicBoard,
    ) -> Self {
        ApiState {
            coord,
            keys: Keys::new(&config.deployment),
            flows,
            token: config.api.token.clone().filter(|t| !t.is_empty()),
            leadership,
            topics,
        }
    }
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/ready", get(ready))
        .route("/openapi.json", get(openapi))
        .route("/v1/topics", get(list_topics).post(add_topic))
        .route("/v1/topics/{flow}/{topic}", delete(remove_topic))
        .route("/v1/topics/{flow}/{topic}/override", delete(forget_topic))
        .route("/v1/units", get(units))
        .route("/v1/units/{flow}/{topic}/{partition}/pause", post(pause))
        .route("/v1/units/{flow}/{topic}/{partition}/resume", post(resume))
        .route("/v1/workers", get(workers))
        .route("/v1/workers/{id}/drain", post(drain))
        .route("/v1/workers/{id}/undrain", post(undrain))
        .route("/v1/plan", get(plan))
        .route("/v1/rebalance", post(rebalance))
        .with_state(state)
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(json!({ "error": message.into() }))).into_response()
}

async fn leader_address(s: &ApiState) -> Option<String> {
    let kv = s.coord.get(&s.keys.leader()).await.ok()??;
    decode::<LeaderDoc>(&kv.value).ok().map(|d| d.address)
}

/// Lets a call through on the leader (with the token, for mutations);
/// otherwise answers for it.
async fn admit(
    s: &ApiState,
    headers: &HeaderMap,
    uri: &Uri,
    mutating: bool,
) -> Result<Revision, Response> {
    if mutating {
        if let Some(token) = &s.token {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            if given != Some(token.as_str()) {
                let mut r = error(
                    StatusCode::UNAUTHORIZED,
                    "this call needs `Authorization: Bearer <api.token>`",
                );
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    "Bearer".parse().expect("static header"),
                );
                return Err(r);
            }
        }
    }
    if let Some(term) = *s.leadership.term.borrow() {
        return Ok(term);
    }
    match leader_address(s).await {
        Some(addr) => {
            let location = format!(
                "{}{}",
                addr.trim_end_matches('/'),
                uri.path_and_query().map_or("", |p| p.as_str())
            );
            let mut r = (
                StatusCode::TEMPORARY_REDIRECT,
                Json(json!({ "error": "not the leader", "leader": addr })),
            )
                .into_response();
            r.headers_mut().insert(
                header::LOCATION,
                location
                    .parse()
                    .map_err(|_| error(StatusCode::BAD_GATEWAY, "bad leader address"))?,
            );
            Err(r)
        }
        None => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no leader elected yet; retry shortly",
        )),
    }
}

/// Writes guarded by the leader's term.
async fn write(s: &ApiState, term: Revision, ops: Vec<Op>) -> Result<(), Response> {
    match s
        .coord
        .txn(vec![Compare::CreatedAt(s.keys.leader(), term)], ops)
        .await
    {
        Ok(true) => Ok(()),
        Ok(false) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "leadership changed during the call; retry",
        )),
        Err(e) => Err(error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
    }
}

async fn list(s: &ApiState, prefix: &str) -> Result<BTreeMap<String, Vec<u8>>, Response> {
    let (kvs, _) = s
        .coord
        .list(prefix)
        .await
        .map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(kvs.into_iter().map(|kv| (kv.key, kv.value)).collect())
}

fn flow<'a>(s: &'a ApiState, name: &str) -> Result<&'a Flow, Response> {
    s.flows.iter().find(|f| f.name == name).ok_or_else(|| {
        let known: Vec<&str> = s.flows.iter().map(|f| f.name.as_str()).collect();
        error(
            StatusCode::NOT_FOUND,
            format!("no flow {name:?}; flows: {known:?}"),
        )
    })
}

/// Kafka's rule for topic names.
fn valid_topic(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 249
        && t != "."
        && t != ".."
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

async fn ready(State(s): State<ApiState>) -> Response {
    if s.leadership.term.borrow().is_some() {
        return Json(json!({ "ready": true, "leader": true })).into_response();
    }
    match leader_address(&s).await {
        Some(addr) => {
            Json(json!({ "ready": true, "leader": false, "leader_address": addr })).into_response()
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "error": "no leader elected yet" })),
        )
            .into_response(),
    }
}

async fn list_topics(State(s): State<ApiState>, headers: HeaderMap, uri: Uri) -> Response {
    if let Err(r) = admit(&s, &headers, &uri, false).await {
        return r;
    }
    let (plans, admin) = match (
        list(&s, &s.keys.plans()).await,
        list(&s, &s.keys.admin()).await,
    ) {
        (Ok(p), Ok(a)) => (p, a),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let plan = stored_plan(&s.keys, &snapshot(plans));
    let overrides = topic_overrides(&s.keys, &snapshot(admin));
    let mut topics: BTreeMap<(String, String), (String, BTreeSet<i32>)> = BTreeMap::new();
    for u in plan.assignments.values().flatten() {
        topics
            .entry((u.flow.clone(), u.source.topic.clone()))
            .or_insert_with(|| (u.remote_topic.clone(), BTreeSet::new()))
            .1
            .insert(u.source.partition);
    }
    let rows: Vec<Value> = topics
        .iter()
        .map(|((flow, topic), (remote, parts))| {
            json!({ "flow": flow, "topic": topic, "remote_topic": remote, "partitions_assigned": parts.len(),
                    "operator": overrides.get(&(flow.clone(), topic.clone())).map(|a| if *a { "added" } else { "removed" }) })
        })
        .collect();
    let ops: Vec<Value> = overrides
        .iter()
        .map(|((flow, topic), add)| json!({ "flow": flow, "topic": topic, "action": if *add { "add" } else { "remove" } }))
        .collect();
    Json(json!({ "topics": rows, "overrides": ops })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicBody {
    flow: String,
    topic: String,
}

async fn set_topic(
    s: &ApiState,
    term: Revision,
    flow_name: &str,
    topic: &str,
    action: Option<TopicAction>,
) -> Response {
    let f = match flow(s, flow_name) {
        Ok(f) => f,
        Err(r) => return r,
    };
    if !valid_topic(topic) {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "{topic:?} is not a Kafka topic name (letters, digits, '.', '_', '-'; at most 249)"
            ),
        );
    }
    if action == Some(TopicAction::Add) && !f.replicates_with(topic, Some(true)) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, format!("flow {flow_name} can never replicate {topic:?}: an internal topic, or one that would loop back"));
    }
    let key = s.keys.topic_override(flow_name, topic);
    let op = match action {
        Some(action) => Op::put(
            &key,
            encode(&TopicOverrideDoc {
                format: FORMAT,
                action,
            }),
        ),
        None => Op::delete(&key),
    };
    if let Err(r) = write(s, term, vec![op]).await {
        return r;
    }
    let status = if action == Some(TopicAction::Add) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, Json(json!({ "flow": flow_name, "topic": topic, "action": match action {
        Some(TopicAction::Add) => "add", Some(TopicAction::Remove) => "remove", None => "regexes" } }))).into_response()
}

async fn add_topic(
    State(s): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Json<TopicBody>, JsonRejection>,
) -> Response {
    let term = match admit(&s, &headers, &uri, true).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Json(b) = match body {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "expected {{\"flow\": \"..\", \"topic\": \"..\"}}: {}",
                    e.body_text()
                ),
            )
        }
    };
    set_topic(&s, term, &b.flow, &b.topic, Some(TopicAction::Add)).await
}

/// `DELETE /v1/topics/{flow}/{topic}` (remove) and `.../override` (forget).
async fn topic_by_path(
    s: ApiState,
    headers: HeaderMap,
    uri: Uri,
    path: Result<Path<(String, String)>, PathRejection>,
    action: Option<TopicAction>,
) -> Response {
    let term = match admit(&s, &headers, &uri, true).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Ok(Path((f, t))) = path else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected /v1/topics/{flow}/{topic}[/override]",
        );
    };
    set_topic(&s, term, &f, &t, action).await
}

async fn remove_topic(
    State(s): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    topic_by_path(s, headers, uri, path, Some(TopicAction::Remove)).await
}

async fn forget_topic(
    State(s): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    topic_by_path(s, headers, uri, path, None).await
}

fn unit_path(
    s: &ApiState,
    path: Result<Path<(String, String, String)>, PathRejection>,
) -> Result<(String, TopicPartition), Response> {
    let Ok(Path((f, topic, p))) = path else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "expected /v1/units/{flow}/{topic}/{partition}/pause|resume",
        ));
    };
    flow(s, &f)?;
    let partition: i32 = p.parse().ok().filter(|p| *p >= 0).ok_or_else(|| {
        error(
            StatusCode::BAD_REQUEST,
            format!("partition {p:?} is not a partition number"),
        )
    })?;
    if !valid_topic(&topic) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("{topic:?} is not a Kafka topic name"),
        ));
    }
    Ok((f, TopicPartition { topic, partition }))
}

async fn set_paused(
    s: ApiState,
    headers: HeaderMap,
    uri: Uri,
    path: Result<Path<(String, String, String)>, PathRejection>,
    on: bool,
) -> Response {
    let term = match admit(&s, &headers, &uri, true).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let (f, tp) = match unit_path(&s, path) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let key = s.keys.paused(&f, &tp);
    // Only a partition discovery replicates, or one already paused, can
    // be paused or resumed.
    let replicated = s.topics.lock().is_ok_and(|b| {
        b.get(&(f.clone(), tp.topic.clone()))
            .is_some_and(|t| tp.partition < t.source_partitions)
    });
    let known = replicated
        || match list(&s, &s.keys.paused_units()).await {
            Ok(paused) => paused.contains_key(&key),
            Err(r) => return r,
        };
    if !known {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "no unit {f}/{}/{}: the flow does not replicate that topic, or it has no such partition",
                tp.topic, tp.partition
            ),
        );
    }
    let op = if on {
        Op::put(&key, encode(&FlagDoc::default()))
    } else {
        Op::delete(&key)
    };
    match write(&s, term, vec![op]).await {
        Ok(()) => {
            Json(json!({ "flow": f, "topic": tp.topic, "partition": tp.partition, "paused": on }))
                .into_response()
        }
        Err(r) => r,
    }
}

async fn pause(
    State(s): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    path: Result<Path<(String, String, String)>, PathRejection>,
) -> Response {
    set_paused(s, headers, uri, path, true).await
}

async fn resume(
    State(s): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    path: Result<Path<(String, String, String)>, PathRejection>,
) -> Response {
    set_paused(s, headers, uri, path, false).await
}

async fn workers(State(s): State<ApiState>, headers: HeaderMap, uri: Uri) -> Response {
    if let Err(r) = admit(&s, &headers, &uri, false).await {
        return r;
    }
    let (regs, plans, loads, admin) = match (
        list(&s, &s.keys.workers()).await,
        list(&s, &s.keys.plans()).await,
        list(&s, &s.keys.loads()).await,
        list(&s, &s.keys.drained_workers()).await,
    ) {
        (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
        (Err(r), ..) | (_, Err(r), ..) | (_, _, Err(r), _) | (.., Err(r)) => return r,
    };
    let plan = stored_plan(&s.keys, &snapshot(plans));
    let mut rows = Vec::new();
    for (key, value) in &regs {
        let Some(id) = s.keys.id_under(&s.keys.workers(), key) else {
            continue;
        };
        let Ok(doc) = decode::<WorkerDoc>(value) else {
            continue;
        };
        let load = loads
            .get(&s.keys.load(id))
            .and_then(|v| decode::<LoadDoc>(v).ok());
        rows.push(json!({
            "id": id,
            "address": doc.address,
            "version": doc.version,
            "state": doc.state,
            "drained": admin.contains_key(&s.keys.drained(id)),
            "units_planned": plan.assignments.get(id).map_or(0, |u| u.len()),
            "units_running": load.as_ref().map_or(0, |l| l.units.len()),
            "bytes_per_sec": load.as_ref().map_or(0.0, |l| l.units.iter().map(|u| u.bytes_per_sec).sum::<f64>()),
        }));
    }
    Json(json!({ "workers": rows })).into_response()
}

async fn set_drained(
    s: ApiState,
    headers: HeaderMap,
    uri: Uri,
    id: Result<Path<String>, PathRejection>,
    on: bool,
) -> Response {
    let term = match admit(&s, &headers, &uri, true).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Ok(Path(id)) = id else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected /v1/workers/{id}/drain|undrain",
        );
    };
    match s.coord.get(&s.keys.worker(&id)).await {
        Ok(Some(_)) => {}
        Ok(None) if !on => {}
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no worker {id:?} is registered"),
            )
        }
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
    let key = s.keys.drained(&id);
    let op = if on {
        Op::put(&key, encode(&FlagDoc::default()))
    } else {
        Op::delete(&key)
    };
    match write(&s, term, vec![op]).await {
        Ok(()) => Json(json!({ "id": id, "drained": on })).into_response(),
        Err(r) => r,
    }
}

async fn drain(
    State(s): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    set_drained(s, headers, uri, id, true).await
}

async fn undrain(
    State(s): State<ApiState>,
    headers: HeaderMap,
    uri: Uri,
    id: Result<Path<String>, PathRejection>,
) -> Response {
    set_drained(s, headers, uri, id, false).await
}

async fn plan(State(s): State<ApiState>, headers: HeaderMap, uri: Uri) -> Response {
    if let Err(r) = admit(&s, &headers, &uri, false).await {
        return r;
    }
    let plans = match list(&s, &s.keys.plans()).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let plan = stored_plan(&s.keys, &snapshot(plans));
    let assignments: BTreeMap<&String, Vec<String>> = plan
        .assignments
        .iter()
        .map(|(w, units)| (w, units.iter().map(|u| u.to_string()).collect()))
        .collect();
    Json(json!({ "epoch": plan.epoch, "assignments": assignments })).into_response()
}

async fn rebalance(State(s): State<ApiState>, headers: HeaderMap, uri: Uri) -> Response {
    if let Err(r) = admit(&s, &headers, &uri, true).await {
        return r;
    }
    s.leadership.rebalance.notify_one();
    (
        StatusCode::ACCEPTED,
        Json(json!({ "rebalance": "requested" })),
    )
        .into_response()
}

/// Every unit: where the plan puts it, who holds it, and how it is doing.
async fn units(State(s): State<ApiState>, headers: HeaderMap, uri: Uri) -> Response {
    if let Err(r) = admit(&s, &headers, &uri, false).await {
        return r;
    }
    let (plans, owners, loads, admin) = match (
        list(&s, &s.keys.plans()).await,
        list(&s, &s.keys.owners()).await,
        list(&s, &s.keys.loads()).await,
        list(&s, &s.keys.paused_units()).await,
    ) {
        (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
        (Err(r), ..) | (_, Err(r), ..) | (_, _, Err(r), _) | (.., Err(r)) => return r,
    };
    let plan = stored_plan(&s.keys, &snapshot(plans));
    let reported: BTreeMap<_, _> = loads
        .values()
        .filter_map(|v| decode::<LoadDoc>(v).ok())
        .flat_map(|d| {
            let w = d.worker.clone();
            d.units
                .into_iter()
                .map(move |u| (u.unit.clone(), (w.clone(), u)))
        })
        .collect();
    let mut all: BTreeSet<_> = plan.assignments.values().flatten().cloned().collect();
    all.extend(reported.keys().cloned());
    let rows: Vec<Value> = all
        .iter()
        .map(|u| {
            let owner = owners
                .get(&s.keys.owner(u))
                .and_then(|v| decode::<OwnerDoc>(v).ok())
                .map(|d| d.worker);
            let r = reported.get(u).map(|(_, l)| l);
            json!({
                "flow": u.flow,
                "topic": u.source.topic,
                "partition": u.source.partition,
                "remote_topic": u.remote_topic,
                "planned": plan.owner(u),
                "owner": owner,
                "state": r.map(|l| l.state.clone()),
                "lag": r.and_then(|l| l.lag),
                "bytes_per_sec": r.map(|l| l.bytes_per_sec),
                "error": r.and_then(|l| l.error.clone()),
                "paused": admin.contains_key(&s.keys.paused(&u.flow, &u.source)),
            })
        })
        .collect();
    Json(json!({ "epoch": plan.epoch, "units": rows })).into_response()
}

fn snapshot(kvs: BTreeMap<String, Vec<u8>>) -> strait_common::coord::mirror::Snapshot {
    strait_common::coord::mirror::Snapshot {
        revision: 0,
        kvs: kvs
            .into_iter()
            .map(|(key, value)| {
                let kv = strait_common::coord::Kv {
                    key: key.clone(),
                    value,
                    create_revision: 0,
                    mod_revision: 0,
                    lease: 0,
                };
                (key, kv)
            })
            .collect(),
        synced: true,
    }
}

async fn openapi() -> Response {
    let body: Value = serde_json::from_str(OPENAPI).expect("the OpenAPI document is JSON");
    Json(body).into_response()
}

/// The API's description, kept next to the routes it describes (a test
/// checks that every route is in it).
pub const OPENAPI: &str = include_str!("openapi.json");
