//! `strait.toml` as written: the serde types, with unknown keys refused
//! and the documented defaults. [`super::Config`] is what the rest of
//! strait uses, validated once from this.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::policy::PolicyKind;

// Defaults of the duration settings, each written once here (the Default
// impls and serde's default functions below use them; docs/configuration.md
// and strait.example.toml are checked against them by reference_tests.rs).

/// `worker.commit_interval`: a restart replays at most about a second of
/// records, for one offset commit per flow a second.
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::from_secs(1);
/// `worker.offset_sync_interval`: a partition's newest offset sync lands
/// within a second, so a caught-up group translates exactly soon after.
pub const DEFAULT_OFFSET_SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// `worker.drain_timeout`: a healthy target acknowledges what is in flight
/// in far less; a stuck one does not hold a shutdown longer.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// `worker.restart_backoff`: most session errors are transient (a leader
/// moving), so the first retry comes soon.
pub const DEFAULT_RESTART_BACKOFF: Duration = Duration::from_secs(1);
/// `worker.restart_backoff_max`: a target that stays broken is retried
/// about as often as a lease is renewed, not in a tight loop.
pub const DEFAULT_RESTART_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// `discovery.interval`: a new topic replicates within about two seconds
/// (its remote topic is created and its units start on the next listing).
/// A listing is one metadata request per cluster; at 10,000 source topics
/// it took 124 ms on Kafka (docs/benchmarks.md, "New topics"; 77 ms on
/// tansu in an earlier run).
pub const DEFAULT_DISCOVERY_INTERVAL: Duration = Duration::from_secs(1);
/// `coordination.lease_ttl`: a crashed worker's units move within 10 s,
/// and a renewal every quarter of it (2.5 s) has room for a slow request.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);
/// `coordination.request_timeout`: etcd answers in milliseconds; under a
/// quarter of the lease TTL, so a failed renewal is retried in time.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// `heartbeat_interval`: MirrorMaker 2's (`emit.heartbeats.interval.seconds`).
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);
/// `config_sync_interval`: topic configs change rarely; a minute keeps the
/// remote topics close for one DescribeConfigs per cluster a minute.
pub const DEFAULT_CONFIG_SYNC_INTERVAL: Duration = Duration::from_secs(60);
/// `transaction_interval`: records become visible to read_committed
/// consumers when their transaction commits, so this is added to their
/// latency, and each commit pauses the flow while the producer flushes
/// (docs/benchmarks.md, "Replication throughput").
pub const DEFAULT_TRANSACTION_INTERVAL: Duration = Duration::from_millis(500);
/// `checkpoint_interval`: short enough that a group's commit reaches the
/// target within a few seconds (p50 about half of it); a round costs one
/// admin request per group, so 1,000 groups are about 500 requests a
/// second.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
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

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `host:port[,host:port...]`
    pub bootstrap: String,
    /// librdkafka settings passed through to every client of this cluster
    /// (security settings travel this way). Settings strait owns are refused.
    #[serde(default)]
    pub kafka: BTreeMap<String, PassthroughValue>,
    /// How this cluster's authorizer names strait's principal
    /// (`User:strait`), for the ACL lines the preflight and the errors of
    /// refused requests print. Default: `User:` and the SASL user name, or
    /// the client certificate's subject (the broker's
    /// `ssl.principal.mapping.rules` may name it otherwise: say so here).
    #[serde(default)]
    pub principal: Option<String>,
}

/// Whether a passthrough setting holds a secret (a password, a key, a
/// client secret): never shown by `Debug`, logs or the API.
pub fn is_secret_setting(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password")
        || k.contains("secret")
        || k.ends_with(".key.pem")
        || k == "sasl.jaas.config"
}

/// Debug output that leaves secrets out: `Config` is printed in errors
/// and tests.
impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kafka: BTreeMap<&str, String> = self
            .kafka
            .iter()
            .map(|(k, v)| {
                let shown = if is_secret_setting(k) {
                    "<redacted>".to_owned()
                } else {
                    v.to_string()
                };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("ClusterConfig")
            .field("bootstrap", &self.bootstrap)
            .field("kafka", &kafka)
            .field("principal", &self.principal)
            .finish()
    }
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
    /// table names one: chosen by measurement (docs/benchmarks.md, "Replication throughput").
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

/// What a partition does when records it had not read yet are gone from
/// the source (retention or truncation overtook replication), or its
/// position no longer exists (the topic was deleted and re-created).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnSourceGap {
    /// Count and log the loss, show it in status, and go on from the
    /// oldest record left (a re-created topic: from its beginning). The
    /// default: a stopped partition falls further behind retention and
    /// loses more, and what is gone cannot be read by waiting.
    #[default]
    Continue,
    /// Count and log the loss, and stop the partition (state `failed`)
    /// until an operator decides.
    Stop,
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
    #[serde(default)]
    pub on_source_gap: OnSourceGap,
    /// Compression of the batches written to the target (default lz4,
    /// unless the target cluster's `kafka` table sets `compression.type`).
    #[serde(default)]
    pub compression: Option<Compression>,
    /// Exactly-once towards the target: records and each unit's progress
    /// commit in one transaction every `transaction_interval`; consumers of
    /// the remote topics read with `isolation.level=read_committed`.
    #[serde(default)]
    pub exactly_once: bool,
    #[serde(default = "default_transaction_interval", with = "humantime_serde")]
    pub transaction_interval: Duration,
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
    /// Defined but not run: `strait run` skips the flow; the commands that
    /// read it (`offsets`, `verify`, `cutover`, `tail`) still know it. For
    /// the direction of a disaster-recovery pair that is not in use
    /// (docs/disaster-recovery.md).
    #[serde(default)]
    pub paused: bool,
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
            commit_interval: DEFAULT_COMMIT_INTERVAL,
            offset_sync_interval: DEFAULT_OFFSET_SYNC_INTERVAL,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            restart_backoff: DEFAULT_RESTART_BACKOFF,
            restart_backoff_max: DEFAULT_RESTART_BACKOFF_MAX,
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
    fn default() -> Self {
        DiscoveryConfig {
            interval: DEFAULT_DISCOVERY_INTERVAL,
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
            lease_ttl: DEFAULT_LEASE_TTL,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
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
    DEFAULT_HEARTBEAT_INTERVAL
}
fn default_config_sync_interval() -> Duration {
    DEFAULT_CONFIG_SYNC_INTERVAL
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
fn default_transaction_interval() -> Duration {
    DEFAULT_TRANSACTION_INTERVAL
}
fn default_checkpoint_interval() -> Duration {
    DEFAULT_CHECKPOINT_INTERVAL
}
