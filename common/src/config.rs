//! `strait.toml`: parsed with unknown keys refused, then validated. Every
//! error names the key it is about (`flows[1].topics[0]: ...`).
//!
//! `strait.example.toml` at the top of the repository documents every key.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use thiserror::Error;

use crate::kafka::OWNED_KEYS;
use crate::policy::{PolicyKind, ReplicationPolicy};

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Names this deployment; part of the commit group `strait.{deployment}.{flow}`.
    pub deployment: String,
    /// Clusters by alias.
    pub clusters: BTreeMap<String, ClusterConfig>,
    /// Replication flows `source -> target`.
    pub flows: Vec<FlowConfig>,
    #[serde(default)]
    pub worker: WorkerConfig,
    #[serde(default)]
    pub discovery: DiscoveryConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub coordination: CoordinationConfig,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub planner: PlannerSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `host:port[,host:port...]`
    pub bootstrap: String,
    /// librdkafka settings passed through to every client of this cluster
    /// (security settings travel this way). Settings strait owns are refused.
    #[serde(default)]
    pub kafka: BTreeMap<String, PassthroughValue>,
}

/// A passthrough value: TOML strings, integers and booleans are accepted and
/// handed to librdkafka as strings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum PassthroughValue {
    String(String),
    Integer(i64),
    Bool(bool),
}

impl std::fmt::Display for PassthroughValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PassthroughValue::String(s) => f.write_str(s),
            PassthroughValue::Integer(i) => write!(f, "{i}"),
            PassthroughValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// A partition never replicated before starts at its first record.
    #[default]
    Earliest,
    /// ... or at the end, replicating only what arrives from now on.
    Latest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SyncsLocation {
    /// `mm2-offset-syncs.{target}.internal` on the source (MirrorMaker 2's default).
    #[default]
    Source,
    /// `mm2-offset-syncs.{source}.internal` on the target.
    Target,
}

/// How the target producer compresses record batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    /// The default when neither the flow nor the target cluster's `kafka`
    /// table names one: chosen by measurement (see the README's benchmark).
    pub const DEFAULT: Compression = Compression::Lz4;

    /// librdkafka's name for it (`compression.type`).
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnRefused {
    /// A record the target refuses for good stops its partition, visibly.
    #[default]
    Stop,
    /// ... or is skipped and counted (`strait_records_skipped_total`).
    Skip,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowConfig {
    /// Defaults to `{source}-{target}`.
    pub name: Option<String>,
    pub source: String,
    pub target: String,
    /// Regexes a source topic's whole name must match to be replicated.
    #[serde(default = "default_topics")]
    pub topics: Vec<String>,
    /// Regexes that exclude topics matched by `topics`.
    #[serde(default)]
    pub topics_exclude: Vec<String>,
    #[serde(default)]
    pub policy: PolicyKind,
    /// Separator of the prefix policy.
    #[serde(default = "default_separator")]
    pub separator: String,
    #[serde(default)]
    pub start: StartAt,
    /// Emit an offset sync at least every this many records per partition.
    #[serde(default = "default_offset_lag_max")]
    pub offset_lag_max: u64,
    #[serde(default)]
    pub offset_syncs_location: SyncsLocation,
    #[serde(default)]
    pub on_refused: OnRefused,
    /// Compression of the batches written to the target (default lz4,
    /// unless the target cluster's `kafka` table sets `compression.type`).
    #[serde(default)]
    pub compression: Option<Compression>,
    /// Emit heartbeats to `heartbeats` on the source, and replicate
    /// heartbeat topics whatever the topic filters say (as MirrorMaker 2 does).
    #[serde(default = "default_true")]
    pub heartbeats: bool,
    #[serde(default = "default_heartbeat_interval", with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// Translate source consumer groups' offsets into checkpoints on the target.
    #[serde(default = "default_true")]
    pub checkpoints: bool,
    #[serde(default = "default_checkpoint_interval", with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// Regexes a group's whole id must match to be checkpointed.
    #[serde(default = "default_topics")]
    pub groups: Vec<String>,
    #[serde(default)]
    pub groups_exclude: Vec<String>,
    /// Also commit the translated offsets to the same groups on the target,
    /// only while a group has no active members there, never backwards.
    #[serde(default)]
    pub sync_group_offsets: bool,
    /// Create remote topics with the source topic's configs and keep them
    /// in step on an interval.
    #[serde(default = "default_true")]
    pub sync_topic_configs: bool,
    #[serde(default = "default_config_sync_interval", with = "humantime_serde")]
    pub config_sync_interval: Duration,
    /// Regexes of config names never copied (whole names).
    #[serde(default = "default_configs_exclude")]
    pub configs_exclude: Vec<String>,
    /// Replication factor of the remote topics strait creates; the target
    /// cluster's default when absent.
    pub replication_factor: Option<i32>,
    /// Copy the source's literal topic ACLs to the remote topics (opt-in):
    /// ALLOW WRITE is never copied and ALLOW ALL becomes ALLOW READ, so only
    /// strait writes remote topics.
    #[serde(default)]
    pub sync_acls: bool,
    /// Also remove, on the target, copied ACLs that left the source.
    #[serde(default)]
    pub sync_acl_deletions: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Bytes produced but not yet acknowledged, per flow, before fetching pauses.
    pub max_in_flight_bytes: u64,
    /// The same limit for one partition. Pausing a partition makes
    /// librdkafka discard what it prefetched for it, so a low limit costs
    /// throughput under backlog (measured: 16 MiB gave 46 MB/s where 32 MiB
    /// gave 73 MB/s on the benchmark).
    pub unit_max_in_flight_bytes: u64,
    /// How often acknowledged progress is committed to the source.
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    /// How often the latest offset sync of each partition is flushed.
    #[serde(with = "humantime_serde")]
    pub offset_sync_interval: Duration,
    /// How long SIGTERM waits for in-flight records before committing and exiting.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Pause before a flow's session is restarted after an error; it
    /// doubles with each failure in a row up to `restart_backoff_max`, with
    /// jitter, so workers sharing a broken target do not retry in lockstep.
    #[serde(with = "humantime_serde")]
    pub restart_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub restart_backoff_max: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            max_in_flight_bytes: 256 << 20,
            unit_max_in_flight_bytes: 64 << 20,
            commit_interval: Duration::from_secs(1),
            offset_sync_interval: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(30),
            restart_backoff: Duration::from_secs(1),
            restart_backoff_max: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoveryConfig {
    /// How often source topics and partitions are listed.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for DiscoveryConfig {
    /// Every second: a new topic then replicates within about two (its
    /// remote topic is created and its units start on the next listing).
    /// A listing is one metadata request per cluster; at 10,000 source
    /// topics it took 77 ms on tansu (see the README's new-topics benchmark).
    fn default() -> Self {
        DiscoveryConfig {
            interval: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of the Prometheus `/metrics` endpoint.
    pub listen: SocketAddr,
    /// Per-partition series (lag, state). Turn off for thousands of partitions.
    pub per_partition: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: ([127, 0, 0, 1], 9464).into(),
            per_partition: true,
        }
    }
}

/// How processes agree: embedded (no etcd endpoints: one process holds
/// every role) or etcd (a fleet of controllers and workers).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoordinationConfig {
    /// etcd endpoints (`http://host:2379`, or `https://` with `tls`); empty
    /// runs the embedded coordinator.
    pub etcd: Vec<String>,
    /// Lease of a worker's registration and owner keys, and of the leader
    /// key. A crashed worker's units move after at most this long.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Bound on every etcd request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    pub user: Option<String>,
    pub password: Option<String>,
    pub tls: Option<EtcdTls>,
}

impl Default for CoordinationConfig {
    fn default() -> Self {
        CoordinationConfig {
            etcd: Vec::new(),
            lease_ttl: Duration::from_secs(10),
            request_timeout: Duration::from_secs(2),
            user: None,
            password: None,
            tls: None,
        }
    }
}

impl CoordinationConfig {
    pub fn is_fleet(&self) -> bool {
        !self.etcd.is_empty()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdTls {
    /// CA bundle that signed etcd's server certificates.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key, for etcd's `--client-cert-auth`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// The REST API the leader controller serves on `metrics.listen`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Bearer token required by every mutating call; none: mutations are open.
    pub token: Option<String>,
    /// The URL other processes give out for this one (the leader's address
    /// in redirects); default `http://{metrics.listen}`.
    pub advertise: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlannerSettings {
    /// Allowed imbalance between workers: loads stay within
    /// `[avg / ratio, avg * ratio]` (bytes/s when reported, else units).
    pub balance_ratio: f64,
}

impl Default for PlannerSettings {
    fn default() -> Self {
        PlannerSettings { balance_ratio: 1.2 }
    }
}

fn default_topics() -> Vec<String> {
    vec![".*".to_owned()]
}
fn default_separator() -> String {
    ".".to_owned()
}
fn default_offset_lag_max() -> u64 {
    100
}
fn default_true() -> bool {
    true
}
fn default_heartbeat_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_config_sync_interval() -> Duration {
    Duration::from_secs(60)
}
/// Never copied: replication throttles and durability settings that belong
/// to the target cluster, and timestamp handling (copying it would change
/// what the target records as time).
pub fn default_configs_exclude() -> Vec<String> {
    [
        "leader\\.replication\\.throttled\\.replicas",
        "follower\\.replication\\.throttled\\.replicas",
        "min\\.insync\\.replicas",
        "unclean\\.leader\\.election\\.enable",
        "message\\.timestamp\\..*",
    ]
    .map(str::to_owned)
    .to_vec()
}
/// Short enough that a group's commit reaches the target within a few
/// seconds (p50 about half of it); a round costs one admin request per
/// group, so 1,000 groups are about 500 requests a second.
fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(2)
}

/// A flow after validation: names resolved, regexes compiled.
#[derive(Debug, Clone)]
pub struct Flow {
    pub name: String,
    pub source: String,
    pub target: String,
    pub include: Vec<Regex>,
    pub exclude: Vec<Regex>,
    pub policy: ReplicationPolicy,
    pub start: StartAt,
    pub offset_lag_max: u64,
    pub offset_syncs_location: SyncsLocation,
    pub on_refused: OnRefused,
    /// As configured on the flow; `None` leaves it to the target cluster's
    /// `kafka` table, else [`Compression::DEFAULT`].
    pub compression: Option<Compression>,
    /// Heartbeat interval, when heartbeats are on.
    pub heartbeats: Option<Duration>,
    /// Checkpoint interval, when checkpoints are on.
    pub checkpoints: Option<Duration>,
    pub groups: Vec<Regex>,
    pub groups_exclude: Vec<Regex>,
    pub sync_group_offsets: bool,
    /// Config sync interval, when on.
    pub sync_topic_configs: Option<Duration>,
    pub configs_exclude: Vec<Regex>,
    pub sync_acls: bool,
    pub sync_acl_deletions: bool,
    pub replication_factor: Option<i32>,
}

impl Flow {
    /// Whether the source topic `topic` is replicated by this flow.
    pub fn replicates(&self, topic: &str) -> bool {
        self.replicates_with(topic, None)
    }

    /// As [`Flow::replicates`], with an operator's decision on this topic
    /// (added or removed through the API) taking precedence over the
    /// regexes. Internal topics and cycles stay excluded whatever it says.
    pub fn replicates_with(&self, topic: &str, operator: Option<bool>) -> bool {
        if !self.policy.may_replicate(topic, &self.target) {
            return false;
        }
        if let Some(decision) = operator {
            return decision;
        }
        if self.heartbeats.is_some() && self.policy.is_heartbeats_topic(topic) {
            return true;
        }
        self.include.iter().any(|r| r.is_match(topic))
            && !self.exclude.iter().any(|r| r.is_match(topic))
    }

    /// Whether the topic config `name` is copied to remote topics.
    pub fn copies_config(&self, name: &str) -> bool {
        !self.configs_exclude.iter().any(|r| r.is_match(name))
    }

    /// Whether the source consumer group `group` is checkpointed by this
    /// flow. strait's own groups never are.
    pub fn checkpoints_group(&self, group: &str) -> bool {
        !group.starts_with("strait.")
            && self.groups.iter().any(|r| r.is_match(group))
            && !self.groups_exclude.iter().any(|r| r.is_match(group))
    }

    pub fn remote_topic(&self, topic: &str) -> String {
        self.policy.remote_topic(&self.source, topic)
    }

    /// The consumer group progress is committed under, on the source.
    pub fn commit_group(&self, deployment: &str) -> String {
        format!("strait.{deployment}.{}", self.name)
    }

    /// Cluster alias holding the offset-syncs topic, and the topic's name.
    pub fn offset_syncs(&self) -> (&str, String) {
        match self.offset_syncs_location {
            SyncsLocation::Source => (
                &self.source,
                crate::policy::offset_syncs_topic(&self.target),
            ),
            SyncsLocation::Target => (
                &self.target,
                crate::policy::offset_syncs_topic(&self.source),
            ),
        }
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text)
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| invalid("(syntax)", e.to_string()))?;
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." {
                "(top level)".into()
            } else {
                key
            };
            invalid(key, e.into_inner().message().trim().to_owned())
        })?;
        config.flows()?;
        Ok(config)
    }

    /// Validates and resolves the flows.
    pub fn flows(&self) -> Result<Vec<Flow>, ConfigError> {
        if !valid_name(&self.deployment) {
            return Err(invalid(
                "deployment",
                "use letters, digits, '-' and '_' only",
            ));
        }
        if self.clusters.is_empty() {
            return Err(invalid("clusters", "define at least one cluster"));
        }
        for (alias, cluster) in &self.clusters {
            let key = format!("clusters.{alias}");
            if !valid_name(alias) {
                return Err(invalid(
                    key,
                    "an alias uses letters, digits, '-' and '_' only",
                ));
            }
            if cluster.bootstrap.trim().is_empty() {
                return Err(invalid(format!("{key}.bootstrap"), "must not be empty"));
            }
            for name in cluster.kafka.keys() {
                if OWNED_KEYS.contains(&name.as_str()) {
                    return Err(invalid(
                        format!("{key}.kafka.\"{name}\""),
                        "strait owns this librdkafka setting; it cannot be passed through",
                    ));
                }
            }
        }
        if self.flows.is_empty() {
            return Err(invalid("flows", "define at least one [[flows]]"));
        }
        let c = &self.coordination;
        for (i, e) in c.etcd.iter().enumerate() {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(invalid(
                    format!("coordination.etcd[{i}]"),
                    "an endpoint is a URL: http://host:2379 or https://host:2379",
                ));
            }
        }
        if c.lease_ttl < Duration::from_secs(2) {
            return Err(invalid(
                "coordination.lease_ttl",
                "at least 2s (etcd's minimum)",
            ));
        }
        if c.user.is_some() != c.password.is_some() {
            return Err(invalid(
                "coordination.user",
                "user and password go together",
            ));
        }
        if !(self.planner.balance_ratio >= 1.0 && self.planner.balance_ratio.is_finite()) {
            return Err(invalid("planner.balance_ratio", "a number of at least 1.0"));
        }
        let w = &self.worker;
        if w.unit_max_in_flight_bytes == 0 || w.max_in_flight_bytes < w.unit_max_in_flight_bytes {
            return Err(invalid(
                "worker.max_in_flight_bytes",
                "must be positive and at least worker.unit_max_in_flight_bytes",
            ));
        }
        for (key, d) in [
            ("worker.commit_interval", w.commit_interval),
            ("worker.offset_sync_interval", w.offset_sync_interval),
            ("discovery.interval", self.discovery.interval),
        ] {
            if d.is_zero() {
                return Err(invalid(key, "must be longer than zero"));
            }
        }

        let mut names = BTreeSet::new();
        let mut flows = Vec::new();
        for (i, f) in self.flows.iter().enumerate() {
            let key = |field: &str| format!("flows[{i}].{field}");
            for (field, alias) in [("source", &f.source), ("target", &f.target)] {
                if !self.clusters.contains_key(alias) {
                    return Err(invalid(
                        key(field),
                        format!("no cluster named {alias:?} in [clusters]"),
                    ));
                }
            }
            if f.source == f.target {
                return Err(invalid(key("target"), "source and target must differ"));
            }
            let name = f
                .name
                .clone()
                .unwrap_or_else(|| format!("{}-{}", f.source, f.target));
            if !valid_name(&name) {
                return Err(invalid(
                    key("name"),
                    "use letters, digits, '-' and '_' only",
                ));
            }
            if !names.insert(name.clone()) {
                return Err(invalid(
                    key("name"),
                    format!("flow name {name:?} is used twice"),
                ));
            }
            if f.policy == PolicyKind::Prefix {
                if f.separator.is_empty() {
                    return Err(invalid(key("separator"), "must not be empty"));
                }
                for alias in [&f.source, &f.target] {
                    if alias.contains(&f.separator) {
                        return Err(invalid(
                            key("separator"),
                            format!("cluster alias {alias:?} contains the separator; cycles could not be detected"),
                        ));
                    }
                }
            }
            if f.sync_topic_configs && f.config_sync_interval.is_zero() {
                return Err(invalid(
                    key("config_sync_interval"),
                    "must be longer than zero",
                ));
            }
            if f.replication_factor.is_some_and(|rf| rf < 1) {
                return Err(invalid(
                    key("replication_factor"),
                    "must be at least 1 (leave it out for the target's default)",
                ));
            }
            if f.sync_acl_deletions && !f.sync_acls {
                return Err(invalid(key("sync_acl_deletions"), "needs sync_acls = true"));
            }
            if f.sync_group_offsets && !f.checkpoints {
                return Err(invalid(
                    key("sync_group_offsets"),
                    "needs checkpoints = true",
                ));
            }
            if f.checkpoints && f.checkpoint_interval.is_zero() {
                return Err(invalid(
                    key("checkpoint_interval"),
                    "must be longer than zero",
                ));
            }
            if f.heartbeats && f.heartbeat_interval.is_zero() {
                return Err(invalid(
                    key("heartbeat_interval"),
                    "must be longer than zero",
                ));
            }
            if f.offset_lag_max == 0 {
                return Err(invalid(key("offset_lag_max"), "must be at least 1"));
            }
            let compile = |field: &str, pats: &[String]| -> Result<Vec<Regex>, ConfigError> {
                pats.iter()
                    .enumerate()
                    .map(|(j, p)| {
                        Regex::new(&format!("^(?:{p})$"))
                            .map_err(|e| invalid(format!("flows[{i}].{field}[{j}]"), e.to_string()))
                    })
                    .collect()
            };
            flows.push(Flow {
                name,
                source: f.source.clone(),
                target: f.target.clone(),
                include: compile("topics", &f.topics)?,
                exclude: compile("topics_exclude", &f.topics_exclude)?,
                policy: ReplicationPolicy::new(f.policy, &f.separator),
                start: f.start,
                offset_lag_max: f.offset_lag_max,
                offset_syncs_location: f.offset_syncs_location,
                on_refused: f.on_refused,
                compression: f.compression,
                heartbeats: f.heartbeats.then_some(f.heartbeat_interval),
                checkpoints: f.checkpoints.then_some(f.checkpoint_interval),
                groups: compile("groups", &f.groups)?,
                groups_exclude: compile("groups_exclude", &f.groups_exclude)?,
                sync_group_offsets: f.sync_group_offsets,
                sync_topic_configs: f.sync_topic_configs.then_some(f.config_sync_interval),
                configs_exclude: compile("configs_exclude", &f.configs_exclude)?,
                sync_acls: f.sync_acls,
                sync_acl_deletions: f.sync_acl_deletions,
                replication_factor: f.replication_factor,
            });
        }
        Ok(flows)
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
deployment = "test"
[clusters.us]
bootstrap = "127.0.0.1:9092"
[clusters.dr]
bootstrap = "127.0.0.1:9093"
[[flows]]
source = "us"
target = "dr"
"#;

    fn err(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn minimal_config_gets_the_documented_defaults() {
        let c = Config::parse(MINIMAL).unwrap();
        let flows = c.flows().unwrap();
        assert_eq!(flows[0].name, "us-dr");
        assert_eq!(flows[0].commit_group("test"), "strait.test.us-dr");
        assert_eq!(flows[0].remote_topic("orders"), "us.orders");
        assert_eq!(
            flows[0].offset_syncs(),
            ("us", "mm2-offset-syncs.dr.internal".to_owned())
        );
        assert!(flows[0].replicates("orders"));
        assert!(!flows[0].replicates("dr.orders"), "cycle");
        assert!(!flows[0].replicates("__consumer_offsets"));
        assert_eq!(c.discovery.interval, Duration::from_secs(1));
        assert_eq!(flows[0].start, StartAt::Earliest);
        assert_eq!(flows[0].compression, None, "left to the cluster, else lz4");
        assert_eq!(Compression::DEFAULT, Compression::Lz4);
    }

    #[test]
    fn a_flow_names_its_codec_and_a_wrong_one_is_refused_by_key() {
        let c = Config::parse(
            &MINIMAL.replace("target = \"dr\"", "target = \"dr\"\ncompression = \"zstd\""),
        )
        .unwrap();
        assert_eq!(c.flows().unwrap()[0].compression, Some(Compression::Zstd));
        assert_eq!(Compression::None.as_str(), "none");
        let e = err(&MINIMAL.replace(
            "target = \"dr\"",
            "target = \"dr\"\ncompression = \"brotli\"",
        ));
        assert!(
            e.starts_with("flows[0].compression: unknown variant `brotli`"),
            "{e}"
        );
    }

    #[test]
    fn the_example_file_is_valid() {
        let text = include_str!("../../strait.example.toml");
        Config::parse(text).unwrap();
    }

    #[test]
    fn coordination_settings_are_checked_by_key() {
        let e = err(&format!(
            "{MINIMAL}\n[coordination]\netcd = [\"127.0.0.1:2379\"]\n"
        ));
        assert!(
            e.starts_with("coordination.etcd[0]: an endpoint is a URL"),
            "{e}"
        );
        let e = err(&format!("{MINIMAL}\n[coordination]\nlease_ttl = \"1s\"\n"));
        assert!(e.starts_with("coordination.lease_ttl: at least 2s"), "{e}");
        let e = err(&format!("{MINIMAL}\n[coordination]\nuser = \"u\"\n"));
        assert!(
            e.starts_with("coordination.user: user and password go together"),
            "{e}"
        );
        let e = err(&format!("{MINIMAL}\n[planner]\nbalance_ratio = 0.5\n"));
        assert!(e.starts_with("planner.balance_ratio"), "{e}");
        let c = Config::parse(&format!(
            "{MINIMAL}\n[coordination]\netcd = [\"http://127.0.0.1:2379\"]\n"
        ))
        .unwrap();
        assert!(c.coordination.is_fleet());
        assert!(!Config::parse(MINIMAL).unwrap().coordination.is_fleet());
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let e = err(&format!("{MINIMAL}\n[worker]\ncommit_intervall = \"1s\"\n"));
        assert!(
            e.starts_with("worker.commit_intervall: unknown field `commit_intervall`"),
            "{e}"
        );
        let e = err(&MINIMAL.replace("target = \"dr\"", "target = \"dr\"\ntopic = [\"a\"]"));
        assert!(
            e.starts_with("flows[0].topic: unknown field `topic`"),
            "{e}"
        );
    }

    #[test]
    fn invalid_values_name_their_key() {
        let e = err(&MINIMAL.replace("target = \"dr\"", "target = \"dr\"\npolicy = \"mirror\""));
        assert!(
            e.starts_with("flows[0].policy: unknown variant `mirror`"),
            "{e}"
        );
        let e = err(&format!("{MINIMAL}\n[worker]\ndrain_timeout = \"soon\"\n"));
        assert!(e.starts_with("worker.drain_timeout:"), "{e}");
        let e = err(&MINIMAL.replace("target = \"dr\"", "target = \"dx\""));
        assert_eq!(e, "flows[0].target: no cluster named \"dx\" in [clusters]");
        let e = err(&MINIMAL.replace("target = \"dr\"", "target = \"dr\"\ntopics = [\"(\"]"));
        assert!(
            e.starts_with("flows[0].topics[0]: regex parse error"),
            "{e}"
        );
        let e = err(&MINIMAL.replace("target = \"dr\"", "target = \"us\""));
        assert_eq!(e, "flows[0].target: source and target must differ");
        let e = err(&format!("{MINIMAL}\n[worker]\nmax_in_flight_bytes = -1\n"));
        assert!(e.starts_with("worker.max_in_flight_bytes:"), "{e}");
        let e = err(&format!("{MINIMAL}\n[metrics]\nlisten = \"nowhere\"\n"));
        assert!(e.starts_with("metrics.listen:"), "{e}");
        let e = err(&MINIMAL.replace("target = \"dr\"", "target = \"dr\"\nreplication_factor = 0"));
        assert!(
            e.starts_with("flows[0].replication_factor: must be at least 1"),
            "{e}"
        );
        let e = err("deployment = 3");
        assert!(e.starts_with("deployment: invalid type"), "{e}");
        let e = err("deployment = \"x\"\n[clusters]\n");
        assert!(e.contains("missing field `flows`"), "{e}");
    }

    #[test]
    fn owned_librdkafka_settings_are_refused_in_passthrough() {
        let e = err(&MINIMAL.replace(
            "bootstrap = \"127.0.0.1:9093\"",
            "bootstrap = \"127.0.0.1:9093\"\nkafka = { \"enable.idempotence\" = false }",
        ));
        assert_eq!(
            e,
            "clusters.dr.kafka.\"enable.idempotence\": strait owns this librdkafka setting; it cannot be passed through"
        );
        let ok = MINIMAL.replace(
            "bootstrap = \"127.0.0.1:9093\"",
            "bootstrap = \"127.0.0.1:9093\"\nkafka = { \"security.protocol\" = \"ssl\", \"socket.timeout.ms\" = 30000 }",
        );
        let c = Config::parse(&ok).unwrap();
        assert_eq!(
            c.clusters["dr"].kafka["socket.timeout.ms"].to_string(),
            "30000"
        );
    }

    #[test]
    fn flow_names_are_unique_and_aliases_cannot_hide_the_separator() {
        let twice = format!("{MINIMAL}\n[[flows]]\nsource = \"us\"\ntarget = \"dr\"\n");
        assert_eq!(
            err(&twice),
            "flows[1].name: flow name \"us-dr\" is used twice"
        );
        let e = err(&MINIMAL
            .replace("target = \"dr\"", "target = \"dr\"\nseparator = \"-\"")
            .replace("[clusters.dr]", "[clusters.d-r]")
            .replace("target = \"dr\"", "target = \"d-r\""));
        assert!(
            e.starts_with("flows[0].separator: cluster alias \"d-r\""),
            "{e}"
        );
    }

    #[test]
    fn heartbeat_topics_are_replicated_whatever_the_filters_unless_off() {
        let c = Config::parse(
            &MINIMAL.replace("target = \"dr\"", "target = \"dr\"\ntopics = [\"orders\"]"),
        )
        .unwrap();
        let f = &c.flows().unwrap()[0];
        assert_eq!(f.heartbeats, Some(Duration::from_secs(1)));
        assert!(f.replicates("heartbeats"));
        assert!(
            f.replicates("eu.heartbeats"),
            "heartbeats that came through another cluster"
        );
        assert!(
            !f.replicates("dr.heartbeats"),
            "never back to where they came from"
        );
        assert!(!f.replicates("payments"));
        let off = Config::parse(&MINIMAL.replace(
            "target = \"dr\"",
            "target = \"dr\"\ntopics = [\"orders\"]\nheartbeats = false",
        ))
        .unwrap();
        let f = &off.flows().unwrap()[0];
        assert_eq!(f.heartbeats, None);
        assert!(!f.replicates("heartbeats"));
    }

    #[test]
    fn throttles_durability_and_timestamp_configs_are_not_copied_by_default() {
        let f = &Config::parse(MINIMAL).unwrap().flows().unwrap()[0];
        for name in [
            "min.insync.replicas",
            "unclean.leader.election.enable",
            "message.timestamp.type",
            "leader.replication.throttled.replicas",
            "message.timestamp.after.max.ms",
        ] {
            assert!(!f.copies_config(name), "{name}");
        }
        for name in [
            "retention.ms",
            "cleanup.policy",
            "max.message.bytes",
            "compression.type",
        ] {
            assert!(f.copies_config(name), "{name}");
        }
    }

    #[test]
    fn group_filters_never_select_strait_itself() {
        let c = Config::parse(&MINIMAL.replace(
            "target = \"dr\"",
            "target = \"dr\"\ngroups = [\"billing.*\", \"strait.*\"]\ngroups_exclude = [\"billing-test\"]",
        ))
        .unwrap();
        let f = &c.flows().unwrap()[0];
        assert_eq!(f.checkpoints, Some(Duration::from_secs(2)));
        assert!(f.checkpoints_group("billing"));
        assert!(!f.checkpoints_group("billing-test"));
        assert!(
            !f.checkpoints_group("strait.test.us-dr"),
            "strait's own group"
        );
        assert!(!f.checkpoints_group("shipping"));
    }

    #[test]
    fn topic_filters_match_whole_names() {
        let c = Config::parse(&MINIMAL.replace(
            "target = \"dr\"",
            "target = \"dr\"\ntopics = [\"orders\", \"pay.*\"]\ntopics_exclude = [\"pay-test\"]",
        ))
        .unwrap();
        let f = &c.flows().unwrap()[0];
        assert!(f.replicates("orders"));
        assert!(!f.replicates("orders2"), "anchored");
        assert!(!f.replicates("old-orders"), "anchored");
        assert!(f.replicates("payments"));
        assert!(!f.replicates("pay-test"));
    }
}
