//! strait's configuration: `strait.toml` ([`file`]) validated once at start
//! ([`validate`]) into a [`Config`], whose flows are resolved (names, regexes,
//! policies). Nothing validates again after that.
//!
//! `docs/configuration.md` is the reference of every key and its default,
//! and `strait.example.toml` at the top of the repository a complete file;
//! `reference_tests.rs` holds both to the types in [`file`].

mod file;
#[cfg(test)]
mod reference_tests;
#[cfg(test)]
mod tests;
mod validate;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use regex::Regex;
use thiserror::Error;

use crate::policy::ReplicationPolicy;

pub use file::{
    default_configs_exclude, is_secret_setting, ApiConfig, ClusterConfig, Compression, ConfigFile,
    CoordinationConfig, DiscoveryConfig, EtcdTls, FlowConfig, MetricsConfig, OnRefused,
    OnSourceGap, PassthroughValue, PlannerSettings, StartAt, SyncsLocation, WorkerConfig,
};
pub use validate::OWNED_KEYS;

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

/// The configuration, validated: what every role is built from.
#[derive(Debug, Clone)]
pub struct Config {
    /// Names this deployment; part of the commit group `strait.{deployment}.{flow}`.
    pub deployment: String,
    /// Clusters by alias.
    pub clusters: BTreeMap<String, ClusterConfig>,
    /// The flows, resolved, in the order of the file.
    pub flows: Vec<Flow>,
    pub worker: WorkerConfig,
    pub discovery: DiscoveryConfig,
    pub metrics: MetricsConfig,
    pub coordination: CoordinationConfig,
    pub api: ApiConfig,
    pub planner: PlannerSettings,
}

/// The clusters one flow talks to.
#[derive(Debug, Clone)]
pub struct FlowClusters {
    pub source: ClusterConfig,
    pub target: ClusterConfig,
    /// The cluster holding the flow's offset-syncs topic.
    pub syncs: ClusterConfig,
}

/// `${NAME}` in a config file is the environment variable NAME, and
/// `${file:PATH}` the contents of the file at PATH (one trailing newline
/// dropped), so that secrets (passwords, key passwords, the API token) can
/// come from a Kubernetes Secret or a systemd credential instead of the
/// config itself. It is meant for double-quoted strings: the value is
/// escaped for one. `$${` is a literal `${`. An unset variable or an
/// unreadable file is an error that names it, never a value.
fn expand_env(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            out.push_str(&rest[..at - 1]);
            out.push_str("${");
            rest = &rest[at + 2..];
            continue;
        }
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| invalid("(environment)", "`${` without a closing `}`"))?;
        let name = &after[..end];
        if let Some(path) = name.strip_prefix("file:") {
            let value = read_secret_file(path)?;
            push_escaped(&mut out, &value);
            rest = &after[end + 1..];
            continue;
        }
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(invalid(
                "(environment)",
                format!("`${{{name}}}`: a variable name is letters, digits and _"),
            ));
        }
        let value = lookup(name).ok_or_else(|| {
            invalid(
                "(environment)",
                format!("${{{name}}} is used but the environment variable {name} is not set"),
            )
        })?;
        push_escaped(&mut out, &value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `value` escaped for a double-quoted TOML string.
fn push_escaped(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() && c != '\t' => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
}

/// A secret file's contents without its one trailing newline (what `echo`
/// and most editors leave). The error names the file, never its contents.
fn read_secret_file(path: &str) -> Result<String, ConfigError> {
    if path.is_empty() {
        return Err(invalid("(environment)", "`${file:}` names no file"));
    }
    let mut value = std::fs::read_to_string(path).map_err(|e| {
        invalid(
            "(environment)",
            format!("${{file:{path}}}: cannot read the file: {e}"),
        )
    })?;
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    Ok(value)
}

impl Config {
    /// Reads and validates a config file; `${NAME}` is the environment
    /// variable NAME, `${file:PATH}` a file's contents (see [`expand_env`]).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&expand_env(&text, |name| std::env::var(name).ok())?)
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| invalid("(syntax)", e.to_string()))?;
        let file: ConfigFile = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." {
                "(top level)".into()
            } else {
                key
            };
            invalid(key, e.into_inner().message().trim().to_owned())
        })?;
        validate::resolve(file)
    }

    /// The flow named `name`.
    pub fn flow(&self, name: &str) -> Option<&Flow> {
        self.flows.iter().find(|f| f.name == name)
    }

    /// The clusters of `flow` (a flow of this config: validation checked
    /// that its aliases exist).
    pub fn clusters_of(&self, flow: &Flow) -> FlowClusters {
        let cluster = |alias: &str| self.clusters[alias].clone();
        FlowClusters {
            source: cluster(&flow.source),
            target: cluster(&flow.target),
            syncs: cluster(flow.offset_syncs().0),
        }
    }
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
    pub on_source_gap: OnSourceGap,
    /// As configured on the flow; `None` leaves it to the target cluster's
    /// `kafka` table, else [`Compression::DEFAULT`].
    pub compression: Option<Compression>,
    /// The transaction interval, when the flow is exactly-once.
    pub exactly_once: Option<Duration>,
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
    /// How often configs and ACLs are compared (`config_sync_interval`),
    /// used by whichever of the two syncs is on.
    pub config_sync_interval: Duration,
    pub replication_factor: Option<i32>,
    /// `strait run` skips it (the unused direction of a DR pair).
    pub paused: bool,
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

    /// The group id of one of strait's readers of this flow (`reader`:
    /// checkpoints, heartbeats, offsets, verify, tail, cutover). Never
    /// joined nor committed to; librdkafka looks its coordinator up, which
    /// takes DESCRIBE on it: one prefixed ACL, `{commit group}.`, covers
    /// every reader.
    pub fn reader_group(&self, deployment: &str, reader: &str) -> String {
        format!("{}.{reader}", self.commit_group(deployment))
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
