//! Validation of `strait.toml`, once, at start: every error names the key
//! it is about (`flows[1].topics[0]: ...`).

use std::collections::BTreeSet;
use std::time::Duration;

use regex::Regex;

use super::file::ConfigFile;

/// The shortest `coordination.lease_ttl`: etcd refuses a shorter lease.
const MIN_LEASE_TTL: Duration = Duration::from_secs(2);
use super::{invalid, Config, ConfigError, Flow, OnRefused};
use crate::policy::{PolicyKind, ReplicationPolicy};

/// librdkafka settings strait sets itself because correctness depends on
/// them (`kafka.rs` sets them per role); a cluster's `kafka` table may not
/// pass them through.
pub const OWNED_KEYS: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "group.id",
    "group.instance.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "enable.partition.eof",
    "enable.idempotence",
    "enable.gapless.guarantee",
    "acks",
    "request.required.acks",
    "max.in.flight.requests.per.connection",
    "max.in.flight",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "retries",
    "message.send.max.retries",
    "transactional.id",
    "statistics.interval.ms",
    "allow.auto.create.topics",
];

/// Validates the file and resolves it: names checked, regexes compiled,
/// flows resolved. The only place `strait.toml` is validated.
pub fn resolve(file: ConfigFile) -> Result<Config, ConfigError> {
    let flows = flows(&file)?;
    let ConfigFile {
        deployment,
        clusters,
        flows: _,
        worker,
        discovery,
        metrics,
        coordination,
        api,
        planner,
    } = file;
    Ok(Config {
        deployment,
        clusters,
        flows,
        worker,
        discovery,
        metrics,
        coordination,
        api,
        planner,
    })
}

fn flows(file: &ConfigFile) -> Result<Vec<Flow>, ConfigError> {
    let this = file;
    if !valid_name(&this.deployment) {
        return Err(invalid(
            "deployment",
            "use letters, digits, '-' and '_' only",
        ));
    }
    if this.clusters.is_empty() {
        return Err(invalid("clusters", "define at least one cluster"));
    }
    for (alias, cluster) in &this.clusters {
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
    if this.flows.is_empty() {
        return Err(invalid("flows", "define at least one [[flows]]"));
    }
    let c = &this.coordination;
    for (i, e) in c.etcd.iter().enumerate() {
        if !(e.starts_with("http://") || e.starts_with("https://")) {
            return Err(invalid(
                format!("coordination.etcd[{i}]"),
                "an endpoint is a URL: http://host:2379 or https://host:2379",
            ));
        }
    }
    if c.lease_ttl < MIN_LEASE_TTL {
        return Err(invalid(
            "coordination.lease_ttl",
            "at least 2s (etcd's minimum)",
        ));
    }
    if c.request_timeout >= c.lease_ttl / 4 {
        // A lease is renewed every quarter of its TTL, and each renewal is
        // bounded by the request timeout: a longer bound would let one slow
        // answer run into the next renewal.
        return Err(invalid(
            "coordination.request_timeout",
            format!(
                "must be shorter than a quarter of coordination.lease_ttl ({:?}): renewals are sent every lease_ttl / 4",
                c.lease_ttl / 4
            ),
        ));
    }
    if c.user.is_some() != c.password.is_some() {
        return Err(invalid(
            "coordination.user",
            "user and password go together",
        ));
    }
    if !(this.planner.balance_ratio >= 1.0 && this.planner.balance_ratio.is_finite()) {
        return Err(invalid("planner.balance_ratio", "a number of at least 1.0"));
    }
    let w = &this.worker;
    if w.unit_max_in_flight_bytes == 0 || w.max_in_flight_bytes < w.unit_max_in_flight_bytes {
        return Err(invalid(
            "worker.max_in_flight_bytes",
            "must be positive and at least worker.unit_max_in_flight_bytes",
        ));
    }
    for (key, d) in [
        ("worker.commit_interval", w.commit_interval),
        ("worker.offset_sync_interval", w.offset_sync_interval),
        ("discovery.interval", this.discovery.interval),
    ] {
        if d.is_zero() {
            return Err(invalid(key, "must be longer than zero"));
        }
    }

    let mut names = BTreeSet::new();
    let mut flows = Vec::new();
    for (i, f) in this.flows.iter().enumerate() {
        let key = |field: &str| format!("flows[{i}].{field}");
        for (field, alias) in [("source", &f.source), ("target", &f.target)] {
            if !this.clusters.contains_key(alias) {
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
        if f.exactly_once && f.on_refused == OnRefused::Skip {
            return Err(invalid(
                key("on_refused"),
                "exactly_once cannot skip a refused record: the transaction it is in cannot commit without it (use \"stop\")",
            ));
        }
        // An interval of a feature that is on must be longer than zero.
        for (on, field, interval) in [
            (
                f.sync_topic_configs,
                "config_sync_interval",
                f.config_sync_interval,
            ),
            (f.checkpoints, "checkpoint_interval", f.checkpoint_interval),
            (f.heartbeats, "heartbeat_interval", f.heartbeat_interval),
            (
                f.exactly_once,
                "transaction_interval",
                f.transaction_interval,
            ),
        ] {
            if on && interval.is_zero() {
                return Err(invalid(key(field), "must be longer than zero"));
            }
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
            on_source_gap: f.on_source_gap,
            compression: f.compression,
            exactly_once: f.exactly_once.then_some(f.transaction_interval),
            heartbeats: f.heartbeats.then_some(f.heartbeat_interval),
            checkpoints: f.checkpoints.then_some(f.checkpoint_interval),
            groups: compile("groups", &f.groups)?,
            groups_exclude: compile("groups_exclude", &f.groups_exclude)?,
            sync_group_offsets: f.sync_group_offsets,
            sync_topic_configs: f.sync_topic_configs.then_some(f.config_sync_interval),
            configs_exclude: compile("configs_exclude", &f.configs_exclude)?,
            sync_acls: f.sync_acls,
            sync_acl_deletions: f.sync_acl_deletions,
            config_sync_interval: f.config_sync_interval,
            replication_factor: f.replication_factor,
            paused: f.paused,
        });
    }
    // A pair of flows between the same two clusters, each the other's way
    // back: both running is active/active, which only the prefix policy
    // can tell from a cycle.
    for (i, a) in flows.iter().enumerate() {
        for b in &flows[i + 1..] {
            if a.source == b.target
                && a.target == b.source
                && !a.paused
                && !b.paused
                && (a.policy == ReplicationPolicy::Identity
                    || b.policy == ReplicationPolicy::Identity)
            {
                return Err(invalid(
                    format!("flows ({} and {})", a.name, b.name),
                    "replicate both ways between the same clusters, one with policy \"identity\": records would go round; use policy = \"prefix\" on both, or pause one (paused = true)",
                ));
            }
        }
    }
    Ok(flows)
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}
