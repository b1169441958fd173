//! `strait check --preflight` (and `GET /v1/preflight`): connects to every
//! cluster of the config and lists each permission strait's principal lacks
//! for what the config enables ([`strait_common::access::needs`]), with the
//! ACL that grants it. It asks the brokers what the principal may do
//! (KIP-430 authorized operations: DescribeCluster, Metadata,
//! DescribeGroups), asks a validate-only CreateTopics for topics not made
//! yet, and probes transactional ids with one InitProducerId on an id of its
//! own under the flow's prefix. It changes nothing on the clusters (the
//! probe id is registered, with no records), and never prints a secret: it
//! knows the principal only by its user name or certificate subject.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode as Code};
use rdkafka::producer::{BaseProducer, Producer as _};
use serde_json::json;
use strait_common::access::{
    literal_names, needs, principal, Commands, Name, Need, Operation, Resource,
};
use strait_common::config::{ClusterConfig, Config};
use strait_common::kafka::client_config;
use strait_common::native::authorized::{self, Access};
use strait_common::policy::{checkpoints_topic, HEARTBEATS_TOPIC};

const TIMEOUT: Duration = Duration::from_secs(10);

/// The broker's own checks, by topic and operation: allowed, or why it
/// could not be asked.
type Probes = BTreeMap<(String, Operation), Result<bool, String>>;

/// The outcome of one need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Granted,
    /// Missing on these concrete resources (the need's own name when it
    /// is not a pattern over what the cluster holds).
    Missing(Vec<String>),
    /// Could not be told (why).
    Unchecked(String),
}

#[derive(Debug, Clone)]
pub struct Line {
    pub need: Need,
    pub principal: String,
    pub verdict: Verdict,
    /// The `kafka-acls` commands that would grant what is missing.
    pub grant: Vec<String>,
}

/// The whole preflight: one line per need.
#[derive(Debug, Clone)]
pub struct Report {
    pub lines: Vec<Line>,
    /// Clusters that could not be asked at all (alias, why).
    pub unreachable: Vec<(String, String)>,
}

impl Report {
    pub fn missing(&self) -> usize {
        self.lines
            .iter()
            .filter(|l| matches!(l.verdict, Verdict::Missing(_)))
            .count()
    }

    pub fn ok(&self) -> bool {
        self.missing() == 0 && self.unreachable.is_empty()
    }

    /// One line per missing permission, then a summary per cluster.
    pub fn print(&self) {
        for (alias, why) in &self.unreachable {
            println!("UNREACHABLE cluster {alias}: {why}");
        }
        for l in &self.lines {
            let n = &l.need;
            match &l.verdict {
                Verdict::Missing(on) => {
                    println!(
                        "MISSING cluster {} principal {} {} on {} for {} (flow {}; {}){}",
                        n.cluster,
                        l.principal,
                        n.operation,
                        n.resource,
                        n.feature,
                        n.flow,
                        n.why,
                        if on.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", on.join(", "))
                        }
                    );
                    for g in &l.grant {
                        println!("  add: {g}");
                    }
                }
                Verdict::Unchecked(why) => println!(
                    "UNCHECKED cluster {} principal {} {} on {} for {} (flow {}): {why}",
                    n.cluster, l.principal, n.operation, n.resource, n.feature, n.flow
                ),
                Verdict::Granted => {}
            }
        }
        let mut per: BTreeMap<&str, [usize; 3]> = BTreeMap::new();
        for l in &self.lines {
            let c = per.entry(&l.need.cluster).or_default();
            match l.verdict {
                Verdict::Granted => c[0] += 1,
                Verdict::Missing(_) => c[1] += 1,
                Verdict::Unchecked(_) => c[2] += 1,
            }
        }
        for (alias, [g, m, u]) in per {
            let principal = self
                .lines
                .iter()
                .find(|l| l.need.cluster == alias)
                .map(|l| l.principal.as_str())
                .unwrap_or("?");
            println!(
                "preflight: cluster {alias} as {principal}: {} permissions, {g} granted, {m} missing, {u} not checked",
                g + m + u
            );
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let lines: Vec<_> = self
            .lines
            .iter()
            .map(|l| {
                let (verdict, detail) = match &l.verdict {
                    Verdict::Granted => ("granted", json!(null)),
                    Verdict::Missing(on) => ("missing", json!(on)),
                    Verdict::Unchecked(why) => ("unchecked", json!(why)),
                };
                json!({
                    "cluster": l.need.cluster,
                    "principal": l.principal,
                    "flow": l.need.flow,
                    "feature": l.need.feature.name(),
                    "operation": l.need.operation.to_string(),
                    "resource": l.need.resource.to_string(),
                    "why": l.need.why,
                    "verdict": verdict,
                    "detail": detail,
                    "grant": l.grant,
                })
            })
            .collect();
        json!({
            "missing": self.missing(),
            "unreachable": self.unreachable.iter().map(|(a, w)| json!({"cluster": a, "error": w})).collect::<Vec<_>>(),
            "permissions": lines,
        })
    }
}

/// What one cluster answered, as needed to judge its needs.
struct Seen {
    cluster: Access,
    topics: BTreeMap<String, Access>,
    groups: BTreeMap<String, Access>,
    /// What the broker's own checks said where the authorized operations
    /// cannot: CREATE (validate-only CreateTopics), DESCRIBE_CONFIGS
    /// (DescribeConfigs) and ALTER_CONFIGS (validate-only
    /// IncrementalAlterConfigs), by topic, for topics the principal cannot
    /// describe or that do not exist yet.
    probed: Probes,
    /// WRITE on a transactional id prefix, by an InitProducerId probe.
    transactional: BTreeMap<String, Result<bool, String>>,
    /// Topics the principal can see on the cluster.
    visible: BTreeSet<String>,
    /// Consumer groups the principal can see.
    visible_groups: BTreeSet<String>,
}

/// Runs the preflight for `config`, with what `commands` need too.
/// Blocking.
pub fn run(config: &Config, commands: Commands) -> Report {
    let all = needs(config, commands);
    let mut lines = Vec::new();
    let mut unreachable = Vec::new();
    let aliases: BTreeSet<&str> = all.iter().map(|n| n.cluster.as_str()).collect();
    for alias in aliases {
        let cluster = &config.clusters[alias];
        let principal = principal(cluster);
        let mine: Vec<&Need> = all.iter().filter(|n| n.cluster == alias).collect();
        let seen = match look(config, alias, cluster, &mine) {
            Ok(s) => s,
            Err(e) => {
                unreachable.push((alias.to_owned(), e));
                continue;
            }
        };
        for need in mine {
            let (verdict, names) = judge(config, need, &seen);
            let grant = match &verdict {
                Verdict::Missing(_) => need.kafka_acls(&principal, &names),
                _ => Vec::new(),
            };
            lines.push(Line {
                need: need.clone(),
                principal: principal.clone(),
                verdict,
                grant,
            });
        }
    }
    Report { lines, unreachable }
}

/// The concrete resources a need names on a cluster, from what is visible.
fn concrete(config: &Config, need: &Need, seen: &Seen) -> Vec<String> {
    let flow = config.flow(&need.flow);
    match &need.resource {
        Resource::Cluster => vec![],
        Resource::Topic(Name::Literal(n)) | Resource::Group(Name::Literal(n)) => vec![n.clone()],
        Resource::TransactionalId(Name::Literal(n))
        | Resource::TransactionalId(Name::Prefixed(n)) => {
            vec![n.clone()]
        }
        Resource::Topic(name @ Name::FlowTopics { .. }) => {
            let mut out: BTreeSet<String> = seen
                .visible
                .iter()
                .filter(|t| name.covers(t, flow))
                .cloned()
                .collect();
            if let Some(f) = flow {
                out.extend(
                    literal_names(&f.include)
                        .into_iter()
                        .filter(|t| name.covers(t, flow)),
                );
            }
            out.into_iter().collect()
        }
        Resource::Topic(Name::Prefixed(p)) => {
            // The remote topics of the source topics this flow replicates
            // (as the source shows them), plus the flow's own topics under
            // the prefix: what strait will write.
            let mut out: BTreeSet<String> = seen
                .topics
                .keys()
                .filter(|t| t.starts_with(p.as_str()))
                .cloned()
                .collect();
            out.extend(
                seen.visible
                    .iter()
                    .filter(|t| t.starts_with(p.as_str()))
                    .cloned(),
            );
            out.into_iter().collect()
        }
        Resource::Group(name @ Name::FlowGroups { .. }) => {
            let mut out: BTreeSet<String> = seen
                .visible_groups
                .iter()
                .filter(|g| name.covers(g, flow))
                .cloned()
                .collect();
            if let Some(f) = flow {
                out.extend(
                    literal_names(&f.groups)
                        .into_iter()
                        .filter(|g| name.covers(g, flow)),
                );
            }
            out.into_iter().collect()
        }
        Resource::Group(Name::Prefixed(p)) => vec![p.clone()],
        Resource::Group(Name::FlowTopics { .. })
        | Resource::TransactionalId(Name::FlowTopics { .. } | Name::FlowGroups { .. })
        | Resource::Topic(Name::FlowGroups { .. }) => vec![],
    }
}

fn judge(config: &Config, need: &Need, seen: &Seen) -> (Verdict, Vec<String>) {
    let op = need.operation;
    match &need.resource {
        Resource::Cluster => match &seen.cluster {
            a if a.allows(op) => (Verdict::Granted, vec![]),
            Access::Missing => (
                Verdict::Unchecked("the cluster gave no authorized operations".into()),
                vec![],
            ),
            _ => (Verdict::Missing(vec![]), vec![]),
        },
        Resource::TransactionalId(_) => {
            let names = concrete(config, need, seen);
            match names.first().and_then(|n| seen.transactional.get(n)) {
                Some(Ok(true)) => (Verdict::Granted, vec![]),
                Some(Ok(false)) => (Verdict::Missing(vec![]), vec![]),
                Some(Err(e)) => (Verdict::Unchecked(e.clone()), vec![]),
                None => (Verdict::Unchecked("not probed".into()), vec![]),
            }
        }
        Resource::Topic(name) => {
            let names = concrete(config, need, seen);
            if names.is_empty() {
                let why = match name {
                    Name::FlowTopics { .. } => "no topic the flow replicates is visible: none exists yet, or DESCRIBE (which READ gives) is missing on all of them",
                    _ => "no such topic exists yet",
                };
                return (Verdict::Unchecked(why.into()), vec![]);
            }
            judge_each(op, &names, &seen.topics, Some(&seen.probed))
        }
        Resource::Group(name) => {
            let names = concrete(config, need, seen);
            if names.is_empty() {
                let why = match name {
                    Name::FlowGroups { .. } => "no group the flow selects is visible: none exists yet, or DESCRIBE is missing on all of them",
                    _ => "no such group",
                };
                return (Verdict::Unchecked(why.into()), vec![]);
            }
            judge_each(op, &names, &seen.groups, None)
        }
    }
}

/// Judges `op` on each of `names`: missing where the broker said it is not
/// allowed; a topic that does not exist is judged by the CreateTopics
/// probe for CREATE and left unchecked for anything else.
fn judge_each(
    op: Operation,
    names: &[String],
    access: &BTreeMap<String, Access>,
    probes: Option<&Probes>,
) -> (Verdict, Vec<String>) {
    let mut missing = Vec::new();
    let mut unchecked = Vec::new();
    for n in names {
        let probed = probes.and_then(|c| c.get(&(n.clone(), op)));
        let allowed = match access.get(n) {
            Some(a) if a.allows(op) => Some(true),
            // The topic's own operations are the answer, but for CREATE,
            // which the cluster may grant too (the probe says).
            Some(Access::Allowed(_)) if op != Operation::Create || probed.is_none() => Some(false),
            // Where the broker's own check was asked, it says.
            _ if probed.is_some() => match probed {
                Some(Ok(allowed)) => Some(*allowed),
                _ => None,
            },
            Some(Access::Missing) | None => None,
            // Not even DESCRIBE: what implies it is missing; the others
            // (CREATE, DESCRIBE_CONFIGS, ALTER_CONFIGS) were probed above.
            Some(_) => match op {
                Operation::Read | Operation::Write | Operation::Alter | Operation::Describe => {
                    Some(false)
                }
                _ => None,
            },
        };
        match allowed {
            Some(true) => {}
            Some(false) => missing.push(n.clone()),
            None => unchecked.push(n.clone()),
        }
    }
    if !missing.is_empty() {
        let names = missing.clone();
        (Verdict::Missing(missing), names)
    } else if !unchecked.is_empty() {
        (
            Verdict::Unchecked(format!(
                "{} does not exist yet: checked once it does",
                unchecked.join(", ")
            )),
            vec![],
        )
    } else {
        (Verdict::Granted, vec![])
    }
}

/// Asks one cluster everything its needs depend on.
fn look(
    config: &Config,
    alias: &str,
    cluster: &ClusterConfig,
    needs: &[&Need],
) -> Result<Seen, String> {
    if let Some(why) = strait_common::kafka::login_refused(cluster, TIMEOUT) {
        return Err(why);
    }
    let admin: AdminClient<DefaultClientContext> = client_config(cluster)
        .create()
        .map_err(|e| format!("cannot make a client: {e}"))?;
    let client = admin.inner();
    let metadata = client
        .fetch_metadata(None, TIMEOUT)
        .map_err(|e| format!("no metadata: {e}"))?;
    let visible: BTreeSet<String> = metadata
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .collect();
    let cluster_access =
        authorized::cluster(client, TIMEOUT).map_err(|e| format!("DescribeCluster: {e}"))?;

    // The topics to ask about: every visible one a need covers, and the
    // names strait will write that do not exist yet.
    let mut topic_names: BTreeSet<String> = BTreeSet::new();
    let mut group_names: BTreeSet<String> = BTreeSet::new();
    let mut prefixes: BTreeSet<String> = BTreeSet::new();
    let wants_groups = needs
        .iter()
        .any(|n| matches!(n.resource, Resource::Group(Name::FlowGroups { .. })));
    let visible_groups: BTreeSet<String> = if wants_groups {
        strait_controller::native_admin::list_consumer_groups(client, TIMEOUT)
            .map(|gs| gs.into_iter().map(|(g, _)| g).collect())
            .unwrap_or_default()
    } else {
        BTreeSet::new()
    };
    for n in needs {
        let flow = config.flow(&n.flow);
        match &n.resource {
            Resource::Topic(Name::Literal(t)) => {
                topic_names.insert(t.clone());
            }
            Resource::Topic(name @ Name::FlowTopics { .. }) => {
                topic_names.extend(visible.iter().filter(|t| name.covers(t, flow)).cloned());
                if let Some(f) = flow {
                    topic_names.extend(
                        literal_names(&f.include)
                            .into_iter()
                            .filter(|t| name.covers(t, flow)),
                    );
                }
            }
            Resource::Topic(Name::Prefixed(p)) => {
                topic_names.extend(
                    visible
                        .iter()
                        .filter(|t| t.starts_with(p.as_str()))
                        .cloned(),
                );
                prefixes.insert(p.clone());
            }
            // A prefixed group is probed by a group named the prefix
            // itself (never used, covered by the same ACL).
            Resource::Group(Name::Literal(g) | Name::Prefixed(g)) => {
                group_names.insert(g.clone());
            }
            Resource::Group(name @ Name::FlowGroups { .. }) => {
                group_names.extend(
                    visible_groups
                        .iter()
                        .filter(|g| name.covers(g, flow))
                        .cloned(),
                );
                if let Some(f) = flow {
                    group_names.extend(
                        literal_names(&f.groups)
                            .into_iter()
                            .filter(|g| name.covers(g, flow)),
                    );
                }
            }
            _ => {}
        }
    }
    // Under a prefix on the target, the remote names of the source topics
    // each flow replicates, whether they exist yet or not.
    for flow in config.flows.iter().filter(|f| f.target == alias) {
        let Some(prefix) = flow.policy.remote_prefix(&flow.source) else {
            continue;
        };
        if !prefixes.contains(&prefix) {
            continue;
        }
        if let Ok(source_topics) = source_topics(config, flow) {
            topic_names.extend(source_topics.iter().map(|t| flow.remote_topic(t)));
        }
        // The flow's own topics under the prefix.
        if flow.heartbeats.is_some() {
            topic_names.insert(flow.remote_topic(HEARTBEATS_TOPIC));
        }
        let cp = checkpoints_topic(&flow.source);
        if flow.checkpoints.is_some() && cp.starts_with(&prefix) {
            topic_names.insert(cp);
        }
    }
    let list: Vec<&str> = topic_names.iter().map(String::as_str).collect();
    let topics =
        authorized::topics(client, &list, TIMEOUT).map_err(|e| format!("DescribeTopics: {e}"))?;
    let list: Vec<&str> = group_names.iter().map(String::as_str).collect();
    let groups =
        authorized::groups(client, &list, TIMEOUT).map_err(|e| format!("DescribeGroups: {e}"))?;

    // Where the authorized operations cannot tell: a topic not there yet,
    // or not visible (no DESCRIBE), or an operation the topic's listed
    // operations do not decide (CREATE may come from the cluster).
    let unseen: Vec<String> = topics
        .iter()
        .filter(|(_, a)| !matches!(a, Access::Allowed(_)))
        .map(|(t, _)| t.clone())
        .collect();
    let wants = |op: Operation| {
        needs
            .iter()
            .any(|n| n.operation == op && matches!(n.resource, Resource::Topic(_)))
    };
    let mut probed = BTreeMap::new();
    if wants(Operation::Create) {
        let all: Vec<String> = topics.keys().cloned().collect();
        for (t, r) in probe_create(&admin, &all) {
            probed.insert((t, Operation::Create), r);
        }
    }
    if wants(Operation::DescribeConfigs) {
        for (t, r) in probe_describe_configs(client, &unseen) {
            probed.insert((t, Operation::DescribeConfigs), r);
        }
    }
    if wants(Operation::AlterConfigs) {
        for t in &unseen {
            probed.insert(
                (t.clone(), Operation::AlterConfigs),
                probe_alter_configs(client, t),
            );
        }
    }

    let mut transactional = BTreeMap::new();
    for n in needs {
        if let Resource::TransactionalId(Name::Prefixed(p) | Name::Literal(p)) = &n.resource {
            transactional
                .entry(p.clone())
                .or_insert_with(|| probe_transactional(cluster, p));
        }
    }
    Ok(Seen {
        cluster: cluster_access,
        topics,
        groups,
        probed,
        transactional,
        visible,
        visible_groups,
    })
}

/// The source topics `flow` replicates, as its source shows them.
fn source_topics(
    config: &Config,
    flow: &strait_common::config::Flow,
) -> Result<Vec<String>, String> {
    let c: AdminClient<DefaultClientContext> = client_config(&config.clusters[&flow.source])
        .create()
        .map_err(|e| e.to_string())?;
    let md = c
        .inner()
        .fetch_metadata(None, TIMEOUT)
        .map_err(|e| e.to_string())?;
    let mut out: BTreeSet<String> = md
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .filter(|t| flow.replicates(t))
        .collect();
    // Named in the config, even where the source hides them.
    out.extend(
        literal_names(&flow.include)
            .into_iter()
            .filter(|t| flow.replicates(t)),
    );
    Ok(out.into_iter().collect())
}

/// CREATE on each of `topics`, by a validate-only CreateTopics: the broker
/// checks the ACLs and creates nothing.
fn probe_create(
    admin: &AdminClient<DefaultClientContext>,
    topics: &[String],
) -> BTreeMap<String, Result<bool, String>> {
    let mut out = BTreeMap::new();
    if topics.is_empty() {
        return out;
    }
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(-1)))
        .collect();
    let opts = AdminOptions::new()
        .validate_only(true)
        .request_timeout(Some(TIMEOUT));
    match block_on(admin.create_topics(new.iter(), &opts)) {
        Ok(results) => {
            for r in results {
                match r {
                    Ok(t) => {
                        out.insert(t, Ok(true));
                    }
                    Err((t, Code::TopicAuthorizationFailed | Code::ClusterAuthorizationFailed)) => {
                        out.insert(t, Ok(false));
                    }
                    // Exists already, or refused for another reason after
                    // the ACLs passed (a policy, the replication factor).
                    Err((t, _)) => {
                        out.insert(t, Ok(true));
                    }
                }
            }
        }
        Err(e) => {
            for t in topics {
                out.insert(t.clone(), Err(format!("CreateTopics (validate only): {e}")));
            }
        }
    }
    out
}

/// DESCRIBE_CONFIGS on each of `topics`, by DescribeConfigs (which checks
/// only that: a topic the principal cannot describe may still allow it).
fn probe_describe_configs(
    client: &rdkafka::client::Client<DefaultClientContext>,
    topics: &[String],
) -> BTreeMap<String, Result<bool, String>> {
    topics
        .iter()
        .map(|t| {
            let r = authorized::describe_configs_allowed(client, t, TIMEOUT)
                .map_err(|e| format!("DescribeConfigs: {e}"));
            (t.clone(), r)
        })
        .collect()
}

/// ALTER_CONFIGS on `topic`, by a validate-only IncrementalAlterConfigs
/// (the broker checks the ACL first and applies nothing).
fn probe_alter_configs(
    client: &rdkafka::client::Client<DefaultClientContext>,
    topic: &str,
) -> Result<bool, String> {
    use strait_controller::native_admin::{validate_alter_topic, AdminError, ConfigOp};
    match validate_alter_topic(
        client,
        topic,
        &[ConfigOp::Delete("retention.ms".into())],
        TIMEOUT,
    ) {
        Ok(()) => Ok(true),
        Err(AdminError::Rejected {
            code: Some(code), ..
        }) if strait_common::access::denials::is_denial(code) => Ok(false),
        Err(AdminError::Rejected { .. }) => Ok(true),
        Err(e) => Err(format!("IncrementalAlterConfigs (validate only): {e}")),
    }
}

/// Runs a future of rdkafka's admin API to completion: on the API's
/// blocking thread with the runtime there, from the CLI on one of its own.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(f),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the preflight")
            .block_on(f),
    }
}

/// WRITE on transactional ids starting with (or equal to) `id`: one
/// InitProducerId for `{id}preflight` (an id no strait process uses), or
/// for `id` itself when it is a literal. Registers the id with the
/// transaction coordinator (it expires after
/// `transactional.id.expiration.ms`, 7 days by default); writes no record.
fn probe_transactional(cluster: &ClusterConfig, id: &str) -> Result<bool, String> {
    let probe_id = format!("{id}preflight");
    let producer: BaseProducer = client_config(cluster)
        .set("transactional.id", &probe_id)
        .create()
        .map_err(|e| e.to_string())?;
    match producer.init_transactions(TIMEOUT) {
        Ok(()) => Ok(true),
        Err(KafkaError::Transaction(e)) if strait_common::access::denials::is_denial(e.code()) => {
            Ok(false)
        }
        Err(e) if strait_common::access::denials::is_denied(&e) => Ok(false),
        Err(e) => Err(format!("InitProducerId for {probe_id}: {e}")),
    }
}
