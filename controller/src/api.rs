//! The operator API, served by the leader controller (docs/operations.md). A follower answers every `/v1` call with a redirect to
//! the leader. Mutations need the bearer token when one is configured, and
//! are written as transactions guarded by the leader's term, so an API call
//! that reaches a deposed leader fails instead of landing.

use crate::discovery::TopicBoard;
use std::collections::{BTreeMap, BTreeSet};

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use strait_common::config::{Config, Flow};
use strait_common::coord::keys::Keys;
use strait_common::coord::values::{
    decode, encode, FlagDoc, LeaderDoc, LoadDoc, TopicAction, TopicOverrideDoc, WorkerDoc, FORMAT,
};
use strait_common::coord::{Compare, Coord, Op, Revision};
use strait_common::model::TopicPartition;

use crate::leader::Leadership;
use crate::read_model::{
    live_workers, load_reports, owner, stored_plan, topic_overrides, Entries as _,
};

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

/// An API error: a status and a JSON body `{"error": ...}` (plus fields a
/// client can act on, such as the leader's address), with any headers the
/// status calls for.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Value,
    headers: Vec<(header::HeaderName, header::HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: json!({ "error": message.into() }),
            headers: Vec::new(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    fn with_header(mut self, name: header::HeaderName, value: header::HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.body)).into_response();
        r.headers_mut().extend(self.headers);
        r
    }
}

type ApiResult = Result<Response, ApiError>;

async fn leader_address(s: &ApiState) -> Option<String> {
    let kv = s.coord.get(&s.keys.leader()).await.ok()??;
    decode::<LeaderDoc>(&kv.value).ok().map(|d| d.address)
}

/// The admission step of every `/v1` call that reads: it runs on the
/// leader (its term is the guard of any write); a follower answers with a
/// redirect to the leader.
pub struct Read;

/// The same for calls that change something, which also need the bearer
/// token when one is configured.
pub struct Mutation(Revision);

impl FromRequestParts<ApiState> for Read {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &ApiState) -> Result<Self, ApiError> {
        admit(s, &parts.uri).await.map(|_| Read)
    }
}

impl FromRequestParts<ApiState> for Mutation {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &ApiState) -> Result<Self, ApiError> {
        if let Some(token) = &s.token {
            let given = parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            if given != Some(token.as_str()) {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "this call needs `Authorization: Bearer <api.token>`",
                )
                .with_header(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                ));
            }
        }
        admit(s, &parts.uri).await.map(Mutation)
    }
}

async fn admit(s: &ApiState, uri: &Uri) -> Result<Revision, ApiError> {
    if let Some(term) = *s.leadership.term.borrow() {
        return Ok(term);
    }
    let Some(addr) = leader_address(s).await else {
        return Err(ApiError::unavailable(
            "no leader elected yet; retry shortly",
        ));
    };
    let location = format!(
        "{}{}",
        addr.trim_end_matches('/'),
        uri.path_and_query().map_or("", |p| p.as_str())
    );
    let location = location
        .parse()
        .map_err(|_| ApiError::new(StatusCode::BAD_GATEWAY, "bad leader address"))?;
    Err(ApiError {
        status: StatusCode::TEMPORARY_REDIRECT,
        body: json!({ "error": "not the leader", "leader": addr }),
        headers: vec![(header::LOCATION, location)],
    })
}

/// Writes guarded by the leader's term.
async fn write(s: &ApiState, term: Revision, ops: Vec<Op>) -> Result<(), ApiError> {
    match s
        .coord
        .txn(vec![Compare::CreatedAt(s.keys.leader(), term)], ops)
        .await
    {
        Ok(true) => Ok(()),
        Ok(false) => Err(ApiError::unavailable(
            "leadership changed during the call; retry",
        )),
        Err(e) => Err(ApiError::unavailable(e.to_string())),
    }
}

async fn list(s: &ApiState, prefix: &str) -> Result<BTreeMap<String, Vec<u8>>, ApiError> {
    let (kvs, _) = s
        .coord
        .list(prefix)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(kvs.into_iter().map(|kv| (kv.key, kv.value)).collect())
}

fn flow<'a>(s: &'a ApiState, name: &str) -> Result<&'a Flow, ApiError> {
    s.flows.iter().find(|f| f.name == name).ok_or_else(|| {
        let known: Vec<&str> = s.flows.iter().map(|f| f.name.as_str()).collect();
        ApiError::not_found(format!("no flow {name:?}; flows: {known:?}"))
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

async fn list_topics(_: Read, State(s): State<ApiState>) -> ApiResult {
    let plans = list(&s, &s.keys.plans()).await?;
    let admin = list(&s, &s.keys.admin()).await?;
    let plan = stored_plan(&s.keys, &plans);
    let overrides = topic_overrides(&s.keys, &admin);
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
    Ok(Json(json!({ "topics": rows, "overrides": ops })).into_response())
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
) -> ApiResult {
    let f = flow(s, flow_name)?;
    if !valid_topic(topic) {
        return Err(ApiError::bad_request(format!(
            "{topic:?} is not a Kafka topic name (letters, digits, '.', '_', '-'; at most 249)"
        )));
    }
    if action == Some(TopicAction::Add) && !f.replicates_with(topic, Some(true)) {
        return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("flow {flow_name} can never replicate {topic:?}: an internal topic, or one that would loop back")));
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
    write(s, term, vec![op]).await?;
    let status = if action == Some(TopicAction::Add) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({ "flow": flow_name, "topic": topic, "action": match action {
        Some(TopicAction::Add) => "add", Some(TopicAction::Remove) => "remove", None => "regexes" } }))).into_response())
}

async fn add_topic(
    Mutation(term): Mutation,
    State(s): State<ApiState>,
    body: Result<Json<TopicBody>, JsonRejection>,
) -> ApiResult {
    let Json(b) = body.map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{\"flow\": \"..\", \"topic\": \"..\"}}: {}",
            e.body_text()
        ))
    })?;
    set_topic(&s, term, &b.flow, &b.topic, Some(TopicAction::Add)).await
}

type TopicPath = Result<Path<(String, String)>, PathRejection>;

fn topic_path(path: TopicPath) -> Result<(String, String), ApiError> {
    path.map(|Path(p)| p)
        .map_err(|_| ApiError::bad_request("expected /v1/topics/{flow}/{topic}[/override]"))
}

/// `DELETE /v1/topics/{flow}/{topic}`.
async fn remove_topic(
    Mutation(term): Mutation,
    State(s): State<ApiState>,
    path: TopicPath,
) -> ApiResult {
    let (f, t) = topic_path(path)?;
    set_topic(&s, term, &f, &t, Some(TopicAction::Remove)).await
}

/// `DELETE /v1/topics/{flow}/{topic}/override`: back to the flow's regexes.
async fn forget_topic(
    Mutation(term): Mutation,
    State(s): State<ApiState>,
    path: TopicPath,
) -> ApiResult {
    let (f, t) = topic_path(path)?;
    set_topic(&s, term, &f, &t, None).await
}

type UnitPath = Result<Path<(String, String, String)>, PathRejection>;

fn unit_path(s: &ApiState, path: UnitPath) -> Result<(String, TopicPartition), ApiError> {
    let Ok(Path((f, topic, p))) = path else {
        return Err(ApiError::bad_request(
            "expected /v1/units/{flow}/{topic}/{partition}/pause|resume",
        ));
    };
    flow(s, &f)?;
    let partition: i32 = p.parse().ok().filter(|p| *p >= 0).ok_or_else(|| {
        ApiError::bad_request(format!("partition {p:?} is not a partition number"))
    })?;
    if !valid_topic(&topic) {
        return Err(ApiError::bad_request(format!(
            "{topic:?} is not a Kafka topic name"
        )));
    }
    Ok((f, TopicPartition { topic, partition }))
}

async fn set_paused(s: ApiState, term: Revision, path: UnitPath, on: bool) -> ApiResult {
    let (f, tp) = unit_path(&s, path)?;
    let key = s.keys.paused(&f, &tp);
    // Only a partition discovery replicates, or one already paused, can
    // be paused or resumed.
    let replicated = s.topics.lock().is_ok_and(|b| {
        b.get(&(f.clone(), tp.topic.clone()))
            .is_some_and(|t| tp.partition < t.source_partitions)
    });
    if !replicated && !list(&s, &s.keys.paused_units()).await?.has(&key) {
        return Err(ApiError::not_found(format!(
            "no unit {f}/{}/{}: the flow does not replicate that topic, or it has no such partition",
            tp.topic, tp.partition
        )));
    }
    let op = if on {
        Op::put(&key, encode(&FlagDoc::default()))
    } else {
        Op::delete(&key)
    };
    write(&s, term, vec![op]).await?;
    Ok(
        Json(json!({ "flow": f, "topic": tp.topic, "partition": tp.partition, "paused": on }))
            .into_response(),
    )
}

async fn pause(Mutation(term): Mutation, State(s): State<ApiState>, path: UnitPath) -> ApiResult {
    set_paused(s, term, path, true).await
}

async fn resume(Mutation(term): Mutation, State(s): State<ApiState>, path: UnitPath) -> ApiResult {
    set_paused(s, term, path, false).await
}

async fn workers(_: Read, State(s): State<ApiState>) -> ApiResult {
    let regs = list(&s, &s.keys.workers()).await?;
    let plans = list(&s, &s.keys.plans()).await?;
    let loads = list(&s, &s.keys.loads()).await?;
    let admin = list(&s, &s.keys.drained_workers()).await?;
    let plan = stored_plan(&s.keys, &plans);
    let mut rows = Vec::new();
    for w in live_workers(&s.keys, &regs, &admin) {
        let Some(doc) = regs
            .get(&s.keys.worker(&w.id))
            .and_then(|v| decode::<WorkerDoc>(v).ok())
        else {
            continue;
        };
        let id = w.id.as_str();
        let load = loads
            .get(&s.keys.load(id))
            .and_then(|v| decode::<LoadDoc>(v).ok());
        rows.push(json!({
            "id": id,
            "address": doc.address,
            "version": doc.version,
            "state": doc.state,
            "drained": admin.has(&s.keys.drained(id)),
            "units_planned": plan.assignments.get(id).map_or(0, |u| u.len()),
            "units_running": load.as_ref().map_or(0, |l| l.units.len()),
            // A fold from 0.0: an empty f64 sum is -0.0, which prints as "-0".
            "bytes_per_sec": load.as_ref().map_or(0.0, |l| l.units.iter().fold(0.0, |a, u| a + u.bytes_per_sec)),
        }));
    }
    Ok(Json(json!({ "workers": rows })).into_response())
}

type WorkerPath = Result<Path<String>, PathRejection>;

async fn set_drained(s: ApiState, term: Revision, id: WorkerPath, on: bool) -> ApiResult {
    let Ok(Path(id)) = id else {
        return Err(ApiError::bad_request(
            "expected /v1/workers/{id}/drain|undrain",
        ));
    };
    match s.coord.get(&s.keys.worker(&id)).await {
        Ok(Some(_)) => {}
        Ok(None) if !on => {}
        Ok(None) => {
            return Err(ApiError::not_found(format!(
                "no worker {id:?} is registered"
            )))
        }
        Err(e) => return Err(ApiError::unavailable(e.to_string())),
    }
    let key = s.keys.drained(&id);
    let op = if on {
        Op::put(&key, encode(&FlagDoc::default()))
    } else {
        Op::delete(&key)
    };
    write(&s, term, vec![op]).await?;
    Ok(Json(json!({ "id": id, "drained": on })).into_response())
}

async fn drain(Mutation(term): Mutation, State(s): State<ApiState>, id: WorkerPath) -> ApiResult {
    set_drained(s, term, id, true).await
}

async fn undrain(Mutation(term): Mutation, State(s): State<ApiState>, id: WorkerPath) -> ApiResult {
    set_drained(s, term, id, false).await
}

async fn plan(_: Read, State(s): State<ApiState>) -> ApiResult {
    let plan = stored_plan(&s.keys, &list(&s, &s.keys.plans()).await?);
    let assignments: BTreeMap<&String, Vec<String>> = plan
        .assignments
        .iter()
        .map(|(w, units)| (w, units.iter().map(|u| u.to_string()).collect()))
        .collect();
    Ok(Json(json!({ "epoch": plan.epoch, "assignments": assignments })).into_response())
}

async fn rebalance(_: Mutation, State(s): State<ApiState>) -> ApiResult {
    s.leadership.rebalance.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "rebalance": "requested" })),
    )
        .into_response())
}

/// Every unit: where the plan puts it, who holds it, and how it is doing.
async fn units(_: Read, State(s): State<ApiState>) -> ApiResult {
    let plans = list(&s, &s.keys.plans()).await?;
    let owners = list(&s, &s.keys.owners()).await?;
    let loads = list(&s, &s.keys.loads()).await?;
    let admin = list(&s, &s.keys.paused_units()).await?;
    let plan = stored_plan(&s.keys, &plans);
    let reported: BTreeMap<_, _> = load_reports(&loads)
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
            let r = reported.get(u).map(|(_, l)| l);
            json!({
                "flow": u.flow,
                "topic": u.source.topic,
                "partition": u.source.partition,
                "remote_topic": u.remote_topic,
                "planned": plan.owner(u),
                "owner": owner(&s.keys, &owners, u),
                "state": r.map(|l| l.state),
                "lag": r.and_then(|l| l.lag),
                "bytes_per_sec": r.map(|l| l.bytes_per_sec),
                "error": r.and_then(|l| l.error.clone()),
                "paused": admin.has(&s.keys.paused(&u.flow, &u.source)),
            })
        })
        .collect();
    Ok(Json(json!({ "epoch": plan.epoch, "units": rows })).into_response())
}

async fn openapi() -> Response {
    let body: Value = serde_json::from_str(OPENAPI).expect("the OpenAPI document is JSON");
    Json(body).into_response()
}

/// The API's description, kept next to the routes it describes (a test
/// checks that every route is in it).
pub const OPENAPI: &str = include_str!("openapi.json");

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Outside input: any request body decodes to a topic or is
        /// refused (the API answers 400/422), never a panic; a well-formed
        /// one keeps its fields.
        #[test]
        fn any_topic_body_decodes_or_is_refused(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = serde_json::from_slice::<TopicBody>(&bytes);
        }

        #[test]
        fn a_topic_body_keeps_its_fields(flow in "[a-z-]{1,10}", topic in "[a-z.]{1,20}") {
            let b: TopicBody = serde_json::from_str(&format!(r#"{{"flow":"{flow}","topic":"{topic}"}}"#)).unwrap();
            prop_assert_eq!((b.flow, b.topic), (flow, topic));
            let extra = r#"{"flow":"x","topic":"y","z":1}"#;
            prop_assert!(serde_json::from_str::<TopicBody>(extra).is_err(), "unknown fields are refused");
        }
    }
}
