//! Permissions refused at run time: one ERROR per missing permission (the
//! cluster, principal, operation, resource and the ACL that grants it),
//! not a WARN at every retry; `strait_permissions_missing{cluster,operation}`
//! and `/v1/status` show what is refused now, and the part that needs it
//! resumes on its own once the ACL is added (its caller retries, and says
//! [`allowed`] when a request succeeds again).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use rdkafka::error::{KafkaError, RDKafkaErrorCode as Code};

use super::{Feature, Name, Need, Operation, Resource};
use crate::metrics as m;

/// Whether a client error is an authorization refusal
/// ([`crate::kafka_errors`]).
pub fn is_denial(code: Code) -> bool {
    crate::kafka_errors::meaning(code).denial
}

/// Whether `err` is an authorization refusal.
pub fn is_denied(err: &KafkaError) -> bool {
    err.rdkafka_error_code().is_some_and(is_denial)
}

/// One permission refused now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub cluster: String,
    pub principal: String,
    pub flow: String,
    pub feature: Feature,
    pub operation: Operation,
    /// `TOPIC us.orders`, `GROUP strait.prod.us-dr`, …
    pub resource: String,
    /// The `kafka-acls` line that grants it.
    pub grant: String,
    /// The broker's words, the first time.
    pub error: String,
    pub since: SystemTime,
    /// Requests refused for it so far.
    pub refusals: u64,
}

type Key = (String, Operation, String);

static DENIALS: Mutex<BTreeMap<Key, Denial>> = Mutex::new(BTreeMap::new());
/// How many refusals stand: [`allowed`] is called on hot paths and looks
/// no further while there are none.
static STANDING: AtomicUsize = AtomicUsize::new(0);

/// Each cluster's principal, by alias, as [`super::principal`] names it.
static PRINCIPALS: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());

/// Learns the principal of every cluster of `config` (at start), for the
/// ACL lines of refusals.
pub fn know_principals(config: &crate::config::Config) {
    let mut p = PRINCIPALS.lock().unwrap_or_else(|e| e.into_inner());
    for (alias, cluster) in &config.clusters {
        p.insert(alias.clone(), super::principal(cluster));
    }
}

fn principal_of(cluster: &str) -> String {
    PRINCIPALS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(cluster)
        .cloned()
        .unwrap_or_else(|| "User:<strait's principal>".into())
}

/// A request was refused for lack of `operation` on `resource` (a concrete
/// name) on `cluster` (an alias). Logs an ERROR the
/// first time (with the ACL to add), counts every refusal; returns whether
/// it was the first, so callers can leave out their own warning.
pub fn refused(
    cluster: &str,
    flow: &str,
    feature: Feature,
    operation: Operation,
    resource: Resource,
    error: &str,
) -> bool {
    let shown = resource.to_string();
    let key = (cluster.to_owned(), operation, shown.clone());
    metrics::counter!(m::PERMISSION_REFUSALS, "cluster" => cluster.to_owned(), "operation" => operation.to_string())
        .increment(1);
    let mut all = DENIALS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(d) = all.get_mut(&key) {
        d.refusals += 1;
        return false;
    }
    let need = Need {
        cluster: cluster.to_owned(),
        feature,
        operation,
        resource,
        flow: flow.to_owned(),
        why: "",
    };
    let principal = principal_of(cluster);
    let principal = principal.as_str();
    let grant = need.kafka_acls(principal, &[]).join("; ");
    tracing::error!(
        cluster,
        principal,
        flow,
        feature = feature.name(),
        operation = %operation,
        resource = %shown,
        error,
        grant = %grant,
        "permission refused: {} cannot {} {}; {} waits until it is granted (add: {})",
        principal,
        operation,
        shown,
        feature.name(),
        grant
    );
    STANDING.fetch_add(1, Ordering::Relaxed);
    all.insert(
        key,
        Denial {
            cluster: cluster.to_owned(),
            principal: principal.to_owned(),
            flow: flow.to_owned(),
            feature,
            operation,
            resource: shown,
            grant,
            error: error.to_owned(),
            since: SystemTime::now(),
            refusals: 1,
        },
    );
    gauge(&all, cluster, operation);
    true
}

/// A request that needs `operation` on `resource` succeeded: a refusal of
/// it, if any, is over (logged once, at INFO).
pub fn allowed(cluster: &str, operation: Operation, resource: &Resource) {
    if STANDING.load(Ordering::Relaxed) == 0 {
        return;
    }
    let key = (cluster.to_owned(), operation, resource.to_string());
    let mut all = DENIALS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(d) = all.remove(&key) {
        STANDING.fetch_sub(1, Ordering::Relaxed);
        tracing::info!(cluster, operation = %operation, resource = %d.resource, refusals = d.refusals,
            "permission granted now: {} resumes", d.feature.name());
        gauge(&all, cluster, operation);
    }
}

fn gauge(all: &BTreeMap<Key, Denial>, cluster: &str, operation: Operation) {
    let n = all
        .keys()
        .filter(|(c, o, _)| c == cluster && *o == operation)
        .count();
    metrics::gauge!(m::PERMISSIONS_MISSING, "cluster" => cluster.to_owned(), "operation" => operation.to_string())
        .set(n as f64);
}

/// The permissions refused now, oldest first.
pub fn current() -> Vec<Denial> {
    let all = DENIALS.lock().unwrap_or_else(|e| e.into_inner());
    let mut out: Vec<Denial> = all.values().cloned().collect();
    out.sort_by_key(|d| d.since);
    out
}

/// Whether any refusal stands (cheap: for hot paths that would build a
/// resource name only to clear it).
pub fn standing() -> bool {
    STANDING.load(Ordering::Relaxed) != 0
}

/// [`allowed`] for a topic, cheap while nothing is refused (hot paths).
pub fn allowed_topic(cluster: &str, operation: Operation, topic: &str) {
    if standing() {
        allowed(cluster, operation, &self::topic(topic));
    }
}

/// [`allowed`] for a group, cheap while nothing is refused.
pub fn allowed_group(cluster: &str, operation: Operation, group: &str) {
    if standing() {
        allowed(cluster, operation, &self::group(group));
    }
}

/// A topic resource by its concrete name.
pub fn topic(name: &str) -> Resource {
    Resource::Topic(Name::Literal(name.to_owned()))
}

/// A group resource by its concrete name.
pub fn group(name: &str) -> Resource {
    Resource::Group(Name::Literal(name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_reported_once_until_it_is_allowed_again() {
        let t = topic("denials-test.orders");
        let first = refused(
            "dr",
            "f",
            Feature::Replication,
            Operation::Write,
            t.clone(),
            "TopicAuthorizationFailed",
        );
        let again = refused(
            "dr",
            "f",
            Feature::Replication,
            Operation::Write,
            t.clone(),
            "TopicAuthorizationFailed",
        );
        assert!(first && !again);
        let d: Vec<Denial> = current()
            .into_iter()
            .filter(|d| d.resource == "TOPIC denials-test.orders")
            .collect();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].refusals, 2);
        assert!(
            d[0].grant
                .contains("--operation Write --topic 'denials-test.orders'"),
            "{}",
            d[0].grant
        );
        allowed("dr", Operation::Write, &t);
        assert!(current()
            .iter()
            .all(|d| d.resource != "TOPIC denials-test.orders"));
        // Refused again later: reported again.
        assert!(refused(
            "dr",
            "f",
            Feature::Replication,
            Operation::Write,
            t.clone(),
            "x"
        ));
        allowed("dr", Operation::Write, &t);
    }
}
