//! What strait's principal must be allowed to do on each cluster for what a
//! config enables: the least-privilege ACL set, as data. Pure: the preflight
//! (`strait check --preflight`) checks these against what the brokers
//! report, docs/security.md prints them as a table, and the run-time
//! reports of a refused request name the permission from here.
//!
//! Each entry is one (operation, resource) pair Kafka's authorizer checks
//! for a request strait makes (KafkaApis, Apache Kafka 4.3.1). An operation
//! that implies another (READ, WRITE, ALTER and DELETE imply DESCRIBE;
//! ALTER_CONFIGS implies DESCRIBE_CONFIGS) is listed once, as the stronger.

use std::collections::BTreeSet;
use std::fmt;

use crate::config::{ClusterConfig, Config, Flow};

pub mod denials;
use crate::policy::{checkpoints_topic, HEARTBEATS_TOPIC};

/// A Kafka ACL operation strait needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    Read,
    Write,
    Create,
    Describe,
    Alter,
    DescribeConfigs,
    AlterConfigs,
}

impl Operation {
    /// As `kafka-acls --operation` spells it.
    pub fn acl_name(self) -> &'static str {
        match self {
            Operation::Read => "Read",
            Operation::Write => "Write",
            Operation::Create => "Create",
            Operation::Describe => "Describe",
            Operation::Alter => "Alter",
            Operation::DescribeConfigs => "DescribeConfigs",
            Operation::AlterConfigs => "AlterConfigs",
        }
    }

    /// The operations that grant this one too (Kafka's implication rules:
    /// READ, WRITE, DELETE and ALTER allow DESCRIBE; ALTER_CONFIGS allows
    /// DESCRIBE_CONFIGS; ALL allows everything, checked by the caller).
    pub fn implied_by(self) -> &'static [Operation] {
        match self {
            Operation::Describe => &[Operation::Read, Operation::Write, Operation::Alter],
            Operation::DescribeConfigs => &[Operation::AlterConfigs],
            _ => &[],
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Operation::Read => "READ",
            Operation::Write => "WRITE",
            Operation::Create => "CREATE",
            Operation::Describe => "DESCRIBE",
            Operation::Alter => "ALTER",
            Operation::DescribeConfigs => "DESCRIBE_CONFIGS",
            Operation::AlterConfigs => "ALTER_CONFIGS",
        };
        f.write_str(s)
    }
}

/// The resource an ACL names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    Cluster,
    Topic(Name),
    Group(Name),
    TransactionalId(Name),
}

/// A resource name: one resource, every name with a prefix, or the names a
/// flow's regexes select (known only from what the cluster holds).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Name {
    Literal(String),
    Prefixed(String),
    /// The source topics a flow replicates (`topics`, `topics_exclude`):
    /// the regexes as written, and as one line.
    FlowTopics {
        flow: String,
        regexes: String,
    },
    /// The consumer groups a flow checkpoints (`groups`, `groups_exclude`).
    FlowGroups {
        flow: String,
        regexes: String,
    },
}

/// The one name a regex (as written) stands for, if it has no
/// metacharacter: `a\\.b` and `a.b` are both the name `a.b` (a dot in a
/// topic name is meant literally more often than not).
pub fn literal_of(regex: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = regex.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n) if !n.is_ascii_alphanumeric() => out.push(n),
                _ => return None,
            },
            '[' | ']' | '(' | ')' | '{' | '}' | '*' | '+' | '?' | '|' | '^' | '$' => return None,
            c => out.push(c),
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The names among `regexes` (compiled by the config) that stand for one
/// topic or group each.
pub fn literal_names(regexes: &[regex::Regex]) -> Vec<String> {
    regexes
        .iter()
        .filter_map(|r| literal_of(&as_written(r)))
        .collect()
}

/// A config regex as its file wrote it (validation anchors each one as
/// `^(?:...)$`).
fn as_written(r: &regex::Regex) -> String {
    let s = r.as_str();
    s.strip_prefix("^(?:")
        .and_then(|s| s.strip_suffix(")$"))
        .unwrap_or(s)
        .to_owned()
}

/// The ACL pattern a regex (as written) stands for: a literal name, or
/// `prefix.*` with a literal prefix as that prefix; others none.
pub fn pattern_of(regex: &str) -> Option<Name> {
    if let Some(prefix) = regex.strip_suffix(".*") {
        if let Some(p) = literal_of(prefix) {
            return Some(Name::Prefixed(p));
        }
    }
    literal_of(regex).map(Name::Literal)
}

impl Name {
    /// Whether a concrete `name` is covered.
    pub fn covers(&self, name: &str, flow: Option<&Flow>) -> bool {
        match self {
            Name::Literal(n) => n == name,
            Name::Prefixed(p) => name.starts_with(p.as_str()),
            Name::FlowTopics { .. } => flow.is_some_and(|f| f.replicates(name)),
            Name::FlowGroups { .. } => flow.is_some_and(|f| f.checkpoints_group(name)),
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, name) = match self {
            Resource::Cluster => return f.write_str("CLUSTER kafka-cluster"),
            Resource::Topic(n) => ("TOPIC", n),
            Resource::Group(n) => ("GROUP", n),
            Resource::TransactionalId(n) => ("TRANSACTIONAL_ID", n),
        };
        match name {
            Name::Literal(n) => write!(f, "{kind} {n}"),
            Name::Prefixed(p) => write!(f, "{kind} {p}* (prefixed)"),
            Name::FlowTopics { regexes, .. } => write!(f, "{kind}S matching {regexes}"),
            Name::FlowGroups { regexes, .. } => write!(f, "{kind}S matching {regexes}"),
        }
    }
}

/// What a permission is for: the config switch that enables it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Feature {
    Replication,
    OffsetSyncs,
    Checkpoints,
    Heartbeats,
    TopicConfigSync,
    AclSync,
    GroupOffsetSync,
    ExactlyOnce,
    Failover,
    Failback,
}

impl Feature {
    pub const ALL: [Feature; 10] = [
        Feature::Replication,
        Feature::OffsetSyncs,
        Feature::Checkpoints,
        Feature::Heartbeats,
        Feature::TopicConfigSync,
        Feature::AclSync,
        Feature::GroupOffsetSync,
        Feature::ExactlyOnce,
        Feature::Failover,
        Feature::Failback,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Feature::Replication => "replication",
            Feature::OffsetSyncs => "offset syncs",
            Feature::Checkpoints => "checkpoints",
            Feature::Heartbeats => "heartbeats",
            Feature::TopicConfigSync => "topic config sync",
            Feature::AclSync => "ACL sync",
            Feature::GroupOffsetSync => "group offset sync",
            Feature::ExactlyOnce => "exactly-once",
            Feature::Failover => "failover (strait offsets failover)",
            Feature::Failback => "failback (strait offsets failback)",
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One permission strait's principal needs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Need {
    /// The cluster alias.
    pub cluster: String,
    pub feature: Feature,
    pub operation: Operation,
    pub resource: Resource,
    /// The flow it is for.
    pub flow: String,
    /// The requests that need it.
    pub why: &'static str,
}

impl Need {
    /// The `kafka-acls` command that grants it to `principal` (a resource
    /// named by a flow's regexes is granted per topic or group: `names`).
    pub fn kafka_acls(&self, principal: &str, names: &[String]) -> Vec<String> {
        let op = self.operation.acl_name();
        let base = format!("kafka-acls --bootstrap-server <{}> --add --allow-principal {principal} --operation {op}", self.cluster);
        let one = |flag: &str, name: &Name| -> Vec<String> {
            match name {
                Name::Literal(n) => vec![format!("{base} --{flag} '{n}'")],
                Name::Prefixed(p) => vec![format!(
                    "{base} --{flag} '{p}' --resource-pattern-type prefixed"
                )],
                Name::FlowTopics { regexes, .. } | Name::FlowGroups { regexes, .. } => {
                    if !names.is_empty() {
                        return names
                            .iter()
                            .map(|n| format!("{base} --{flag} '{n}'"))
                            .collect();
                    }
                    // Nothing seen yet: from the regexes, where they name
                    // a topic or a prefix.
                    let include = regexes.split(" but not ").next().unwrap_or("");
                    include
                        .split(", ")
                        .map(|r| match pattern_of(r) {
                            Some(Name::Literal(n)) => format!("{base} --{flag} '{n}'"),
                            Some(Name::Prefixed(p)) => {
                                format!("{base} --{flag} '{p}' --resource-pattern-type prefixed")
                            }
                            _ => format!("{base} --{flag} '<each {flag} matching {r}>'"),
                        })
                        .collect()
                }
            }
        };
        match &self.resource {
            Resource::Cluster => vec![format!("{base} --cluster")],
            Resource::Topic(n) => one("topic", n),
            Resource::Group(n) => one("group", n),
            Resource::TransactionalId(n) => one("transactional-id", n),
        }
    }
}

/// Every permission `config` needs, on every cluster, sorted and without
/// repeats, with what `commands` need beside the running replicator.
pub fn needs(config: &Config, commands: Commands) -> Vec<Need> {
    let mut out = BTreeSet::new();
    for flow in &config.flows {
        flow_needs(config, flow, commands, &mut out);
    }
    out.into_iter().collect()
}

/// The commands run by hand whose permissions the preflight covers too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Commands {
    /// `strait offsets failover`, and `strait cutover`, `strait verify` and
    /// `strait tail`, which read what it reads.
    pub failover: bool,
    /// `strait offsets failback` (which reads what failover reads, and
    /// commits on the source).
    pub failback: bool,
}

/// The source topics `flow` replicates, as a resource (for a refusal that
/// does not name its topic).
pub fn flow_topics(flow: &Flow) -> Resource {
    Resource::Topic(Name::FlowTopics {
        flow: flow.name.clone(),
        regexes: regexes(&flow.include, &flow.exclude),
    })
}

/// The consumer groups `flow` checkpoints, as a resource.
pub fn flow_groups(flow: &Flow) -> Resource {
    Resource::Group(Name::FlowGroups {
        flow: flow.name.clone(),
        regexes: regexes(&flow.groups, &flow.groups_exclude),
    })
}

fn flow_needs(config: &Config, flow: &Flow, commands: Commands, out: &mut BTreeSet<Need>) {
    let failover = commands.failover || commands.failback;
    use Feature as F;
    use Operation as O;
    let (src, dst) = (flow.source.as_str(), flow.target.as_str());
    let mut add = |cluster: &str,
                   feature: Feature,
                   operation: Operation,
                   resource: Resource,
                   why: &'static str| {
        out.insert(Need {
            cluster: cluster.to_owned(),
            feature,
            operation,
            resource,
            flow: flow.name.clone(),
            why,
        });
    };
    let topics = flow_topics(flow);
    let groups = || flow_groups(flow);
    let commit_group = flow.commit_group(&config.deployment);
    // Remote topics: with the prefix policy every name strait writes on the
    // target for this flow starts with `{source}{separator}`, heartbeats
    // and checkpoints included; with the identity policy they are the
    // source topics' own names.
    let remote = match flow.policy.remote_prefix(src) {
        Some(prefix) => Resource::Topic(Name::Prefixed(prefix)),
        None => topics.clone(),
    };

    // Replication: read the source topics (Fetch, ListOffsets, Metadata),
    // their configs to create remote topics alike, commit progress under
    // the flow's group; create, grow and write the remote topics.
    add(
        src,
        F::Replication,
        O::Read,
        topics.clone(),
        "Fetch, ListOffsets, Metadata of the replicated topics",
    );
    add(
        src,
        F::Replication,
        O::Read,
        Resource::Group(Name::Literal(commit_group.clone())),
        "OffsetCommit and OffsetFetch of the flow's progress",
    );
    add(
        dst,
        F::Replication,
        O::Create,
        remote.clone(),
        "CreateTopics of remote topics",
    );
    add(
        dst,
        F::Replication,
        O::Write,
        remote.clone(),
        "Produce (idempotent) to remote topics",
    );
    add(
        dst,
        F::Replication,
        O::Alter,
        remote.clone(),
        "CreatePartitions when a source topic grows",
    );

    // Offset syncs: written (and created) where the flow keeps them, read
    // back by the checkpoints.
    let (syncs_cluster, syncs_topic) = flow.offset_syncs();
    let syncs = Resource::Topic(Name::Literal(syncs_topic));
    add(
        syncs_cluster,
        F::OffsetSyncs,
        O::Create,
        syncs.clone(),
        "CreateTopics of the offset-syncs topic",
    );
    add(
        syncs_cluster,
        F::OffsetSyncs,
        O::Write,
        syncs.clone(),
        "Produce of offset syncs",
    );

    // strait's readers and admin clients (checkpoints, heartbeats, the
    // offsets commands) name groups `{commit group}.{what}`: never joined,
    // never committed, but librdkafka looks up each one's coordinator
    // (FindCoordinator), which needs DESCRIBE on it.
    let clients = Resource::Group(Name::Prefixed(format!("{commit_group}.")));
    let clients_why = "FindCoordinator of strait's reader clients' groups ({commit group}.checkpoints, .heartbeats, .offsets)";

    if flow.heartbeats.is_some() {
        let hb = Resource::Topic(Name::Literal(HEARTBEATS_TOPIC.to_owned()));
        add(
            src,
            F::Heartbeats,
            O::Create,
            hb.clone(),
            "CreateTopics of the heartbeats topic",
        );
        add(
            src,
            F::Heartbeats,
            O::Write,
            hb.clone(),
            "Produce of heartbeats",
        );
        add(
            src,
            F::Heartbeats,
            O::Read,
            hb,
            "Fetch: heartbeats are replicated like data",
        );
        // The replicated heartbeats are read back on the target to measure
        // their age; with the identity policy their name is not prefixed.
        let remote_hb = match flow.policy.remote_prefix(src) {
            Some(_) => remote.clone(),
            None => Resource::Topic(Name::Literal(flow.remote_topic(HEARTBEATS_TOPIC))),
        };
        add(
            dst,
            F::Heartbeats,
            O::Read,
            remote_hb,
            "Fetch of the replicated heartbeats (age, latency)",
        );
        add(
            dst,
            F::Heartbeats,
            O::Describe,
            clients.clone(),
            clients_why,
        );
    }

    if flow.checkpoints.is_some() {
        let cp = checkpoints_topic(src);
        let cp_topic = match flow.policy.remote_prefix(src) {
            Some(prefix) if cp.starts_with(&prefix) => remote.clone(),
            _ => Resource::Topic(Name::Literal(cp)),
        };
        add(
            src,
            F::Checkpoints,
            O::Describe,
            groups(),
            "ListGroups, OffsetFetch of the checkpointed groups",
        );
        add(
            syncs_cluster,
            F::Checkpoints,
            O::Read,
            Resource::Topic(Name::Literal(flow.offset_syncs().1)),
            "Fetch of the offset syncs",
        );
        add(
            dst,
            F::Checkpoints,
            O::Create,
            cp_topic.clone(),
            "CreateTopics of the checkpoints topic",
        );
        add(
            dst,
            F::Checkpoints,
            O::Write,
            cp_topic.clone(),
            "Produce of checkpoints (transactional)",
        );
        add(
            dst,
            F::Checkpoints,
            O::Read,
            cp_topic,
            "Fetch of the checkpoints written before (never backwards)",
        );
        // One prefixed ACL covers the checkpoint writer's id
        // (`{commit group}.checkpoints`) and, with exactly-once, the
        // workers' (`{commit group}.{worker}`); the preflight probes it with
        // an id of its own under the prefix, which a literal ACL would not
        // let it do without fencing the running writer.
        for cluster in [src, syncs_cluster, dst] {
            add(
                cluster,
                F::Checkpoints,
                O::Describe,
                clients.clone(),
                clients_why,
            );
        }
        add(
            dst,
            F::Checkpoints,
            O::Write,
            Resource::TransactionalId(Name::Prefixed(format!("{commit_group}."))),
            "InitProducerId, AddPartitionsToTxn, EndTxn of the checkpoint writer",
        );
    }

    if flow.sync_topic_configs.is_some() {
        add(src, F::TopicConfigSync, O::DescribeConfigs, topics.clone(), "DescribeConfigs: remote topics are created with their source's configs and kept in step");
        if flow.heartbeats.is_some() {
            // Replicated like data, configs included.
            add(
                src,
                F::TopicConfigSync,
                O::DescribeConfigs,
                Resource::Topic(Name::Literal(HEARTBEATS_TOPIC.to_owned())),
                "DescribeConfigs of the heartbeats topic, replicated like data",
            );
        }
        add(
            dst,
            F::TopicConfigSync,
            O::AlterConfigs,
            remote.clone(),
            "DescribeConfigs, IncrementalAlterConfigs of remote topics",
        );
    }

    if flow.sync_acls {
        add(
            src,
            F::AclSync,
            O::Describe,
            Resource::Cluster,
            "DescribeAcls of the source topics' ACLs",
        );
        add(
            dst,
            F::AclSync,
            O::Alter,
            Resource::Cluster,
            "DescribeAcls, CreateAcls, DeleteAcls on the target",
        );
    }

    if flow.sync_group_offsets || failover {
        let feature = if flow.sync_group_offsets {
            F::GroupOffsetSync
        } else {
            F::Failover
        };
        add(
            dst,
            feature,
            O::Read,
            groups(),
            "DescribeGroups, OffsetFetch, OffsetCommit of the groups on the target",
        );
        add(
            dst,
            feature,
            O::Read,
            remote.clone(),
            "OffsetCommit names the remote topics' partitions",
        );
    }
    if failover && flow.sync_group_offsets {
        add(
            dst,
            F::Failover,
            O::Read,
            groups(),
            "DescribeGroups, OffsetFetch, OffsetCommit of the groups on the target",
        );
    }
    if failover {
        add(
            src,
            F::Failover,
            O::Describe,
            groups(),
            "OffsetFetch of the groups' positions on the source",
        );
        add(
            syncs_cluster,
            F::Failover,
            O::Read,
            Resource::Topic(Name::Literal(flow.offset_syncs().1)),
            "Fetch of the offset syncs to translate",
        );
        for cluster in [src, dst] {
            add(
                cluster,
                F::Failover,
                O::Describe,
                clients.clone(),
                clients_why,
            );
        }
    }

    if commands.failback {
        add(
            src,
            F::Failback,
            O::Read,
            groups(),
            "DescribeGroups, OffsetCommit of the groups on the source (OffsetCommit also checks READ on the source topics, which replication has)",
        );
    }

    if flow.exactly_once.is_some() {
        add(dst, F::ExactlyOnce, O::Write, Resource::TransactionalId(Name::Prefixed(format!("{commit_group}."))), "InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn: one id per worker, and a new owner's fence of the old");
        add(
            dst,
            F::ExactlyOnce,
            O::Read,
            Resource::Group(Name::Literal(commit_group)),
            "TxnOffsetCommit and OffsetFetch of the flow's progress on the target",
        );
        add(
            dst,
            F::ExactlyOnce,
            O::Read,
            remote.clone(),
            "TxnOffsetCommit checks READ on each topic it names (the remote topics)",
        );
    }
}

/// The regexes as the config wrote them (validation anchors each one as
/// `^(?:...)$`).
fn regexes(include: &[regex::Regex], exclude: &[regex::Regex]) -> String {
    let list = |r: &[regex::Regex]| r.iter().map(as_written).collect::<Vec<_>>().join(", ");
    if exclude.is_empty() {
        list(include)
    } else {
        format!("{} but not {}", list(include), list(exclude))
    }
}

/// The principal a cluster's settings log in as, as Kafka names it: the
/// cluster's `principal` when set, else the SASL user, else the client
/// certificate's subject (read with openssl; Kafka's default principal
/// builder names a TLS client so), else `User:ANONYMOUS`. Never a password.
pub fn principal(cluster: &ClusterConfig) -> String {
    if let Some(p) = &cluster.principal {
        return p.clone();
    }
    let get = |k: &str| cluster.kafka.get(k).map(|v| v.to_string());
    let protocol = get("security.protocol")
        .unwrap_or_default()
        .to_ascii_uppercase();
    if protocol.starts_with("SASL") {
        if let Some(user) = get("sasl.username") {
            return format!("User:{user}");
        }
        return "User:<the SASL principal>".into();
    }
    if protocol == "SSL" {
        if let Some(subject) = get("ssl.certificate.location").and_then(|c| certificate_subject(&c))
        {
            return format!("User:{subject}");
        }
        return "User:<the client certificate's subject>".into();
    }
    "User:ANONYMOUS".into()
}

/// The subject of a PEM certificate in RFC 2253 form.
fn certificate_subject(path: &str) -> Option<String> {
    let out = std::process::Command::new("openssl")
        .args([
            "x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in", path,
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8_lossy(&out.stdout);
    Some(s.trim().strip_prefix("subject=")?.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
deployment = "prod"
[clusters.us]
bootstrap = "127.0.0.1:9092"
[clusters.dr]
bootstrap = "127.0.0.1:9093"
[[flows]]
source = "us"
target = "dr"
topics = ["orders", "payments\\.eu", "logs.*"]
groups = ["billing"]
"#;

    fn lines(config: &str, failover: bool) -> BTreeSet<String> {
        lines_for(
            config,
            Commands {
                failover,
                failback: false,
            },
        )
    }

    fn lines_for(config: &str, commands: Commands) -> BTreeSet<String> {
        let c = Config::parse(config).unwrap();
        needs(&c, commands)
            .iter()
            .flat_map(|n| n.kafka_acls("User:strait", &[]))
            .collect()
    }

    #[test]
    fn each_feature_adds_its_own_acls_and_nothing_else() {
        let base = lines(BASE, false);
        let line = |cluster: &str, rest: &str| {
            format!("kafka-acls --bootstrap-server <{cluster}> --add --allow-principal User:strait {rest}")
        };
        // Replication reads what the regexes name: literal names and
        // literal prefixes as such.
        for want in [
            line("us", "--operation Read --topic 'orders'"),
            line("us", "--operation Read --topic 'payments.eu'"),
            line("us", "--operation Read --topic 'logs' --resource-pattern-type prefixed"),
            line("us", "--operation Read --group 'strait.prod.us-dr'"),
            line("dr", "--operation Write --topic 'us.' --resource-pattern-type prefixed"),
            line("us", "--operation Write --topic 'mm2-offset-syncs.dr.internal'"),
            line("dr", "--operation Write --transactional-id 'strait.prod.us-dr.' --resource-pattern-type prefixed"),
            line("dr", "--operation AlterConfigs --topic 'us.' --resource-pattern-type prefixed"),
        ] {
            assert!(base.contains(&want), "{want} not in {base:#?}");
        }
        // Off by default: ACL sync (cluster-wide), group offset sync.
        assert!(!base.iter().any(|l| l.contains("--cluster")), "{base:#?}");
        assert!(!base.contains(&line("dr", "--operation Read --group 'billing'")));

        let acls = lines(&format!("{BASE}sync_acls = true\n"), false);
        let added: Vec<_> = acls.difference(&base).collect();
        assert_eq!(
            added,
            vec![
                &line("dr", "--operation Alter --cluster"),
                &line("us", "--operation Describe --cluster")
            ]
        );
        let eos = lines(&format!("{BASE}exactly_once = true\n"), false);
        let added: Vec<_> = eos.difference(&base).collect();
        assert_eq!(
            added,
            vec![&line("dr", "--operation Read --group 'strait.prod.us-dr'")]
        );
        // TxnOffsetCommit checks READ on each remote topic: exactly-once
        // needs it itself (the same ACL the checkpoints need, so no new line).
        let c = Config::parse(&format!(
            "{BASE}exactly_once = true\ncheckpoints = false\nheartbeats = false\n"
        ))
        .unwrap();
        assert!(needs(&c, Commands::default())
            .iter()
            .any(|n| n.feature == Feature::ExactlyOnce
                && n.operation == Operation::Read
                && n.resource == Resource::Topic(Name::Prefixed("us.".into()))));
        let failover = lines(BASE, true);
        assert!(failover.contains(&line("dr", "--operation Read --group 'billing'")));
        // Failback reads what failover reads, and commits on the source.
        let failback = lines_for(
            BASE,
            Commands {
                failover: false,
                failback: true,
            },
        );
        let added: Vec<_> = failback.difference(&failover).collect();
        assert_eq!(
            added,
            vec![&line("us", "--operation Read --group 'billing'")]
        );
        assert!(failover.is_subset(&failback));
        let off = lines(
            &format!("{BASE}heartbeats = false\ncheckpoints = false\nsync_topic_configs = false\n"),
            false,
        );
        assert!(
            !off.iter().any(|l| l.contains("heartbeats")
                || l.contains("transactional-id")
                || l.contains("AlterConfigs")),
            "{off:#?}"
        );
    }

    #[test]
    fn regexes_become_acl_patterns_only_where_they_name_one() {
        assert_eq!(pattern_of("orders"), Some(Name::Literal("orders".into())));
        assert_eq!(pattern_of("a\\.b"), Some(Name::Literal("a.b".into())));
        assert_eq!(pattern_of("logs.*"), Some(Name::Prefixed("logs".into())));
        assert_eq!(
            pattern_of("logs\\..*"),
            Some(Name::Prefixed("logs.".into()))
        );
        assert_eq!(pattern_of("(a|b)"), None);
        assert_eq!(pattern_of(".*"), None);
    }
}
