//! `strait import-mm2`: a strait config from a MirrorMaker 2 properties
//! file (`connect-mirror-maker.properties`). Every setting of the file ends
//! in exactly one place: carried over into the config, or listed with the
//! reason it was not. Nothing is dropped silently.
//!
//! Precedence follows MirrorMaker 2's `MirrorMakerConfig`: a flow setting
//! is `A->B.key`, else the top-level `key`; a cluster's client settings
//! are `A.key`, else top-level security settings (`security.*`, `ssl.*`,
//! `sasl.*`), which MirrorMaker 2 applies to every cluster.

use std::collections::{BTreeMap, BTreeSet};

use strait_common::config::{Config, OWNED_KEYS};
use toml::{Table, Value};

use super::properties::Properties;

/// The result: the config's text and what could not be carried over.
#[derive(Debug)]
pub struct Imported {
    pub toml: String,
    /// `strait check`'s verdict on `toml`.
    pub valid: Result<(), String>,
    pub report: Report,
}

#[derive(Debug, Default)]
pub struct Report {
    /// Settings not carried over, each with its reason.
    pub not_carried: BTreeMap<String, String>,
    /// Problems of the file itself (its lines, values, names).
    pub warnings: Vec<String>,
    /// Differences in behaviour worth knowing before the first run.
    pub notes: Vec<String>,
}

const DEFAULT_POLICY: &str = "org.apache.kafka.connect.mirror.DefaultReplicationPolicy";
const IDENTITY_POLICY: &str = "org.apache.kafka.connect.mirror.IdentityReplicationPolicy";

/// Flow settings strait maps, by their MirrorMaker 2 names.
const FLOW_KEYS: &[&str] = &[
    "enabled",
    "topics",
    "topics.exclude",
    "groups",
    "groups.exclude",
    "replication.policy.class",
    "replication.policy.separator",
    "replication.factor",
    "sync.topic.configs.enabled",
    "sync.topic.configs.interval.seconds",
    "sync.topic.acls.enabled",
    "sync.topic.acls.interval.seconds",
    "emit.heartbeats.enabled",
    "emit.heartbeats.interval.seconds",
    "emit.checkpoints.enabled",
    "emit.checkpoints.interval.seconds",
    "sync.group.offsets.enabled",
    "sync.group.offsets.interval.seconds",
    "offset.lag.max",
    "refresh.topics.enabled",
    "refresh.topics.interval.seconds",
    "refresh.groups.enabled",
    "refresh.groups.interval.seconds",
    "offset-syncs.topic.location",
    "emit.offset-syncs.enabled",
    "config.properties.exclude",
    "exactly.once.source.support",
    "exactly.once.support",
];

/// Old names MirrorMaker 2 still accepts, and their current ones.
const LEGACY: &[(&str, &str)] = &[
    ("topics.whitelist", "topics"),
    ("topics.blacklist", "topics.exclude"),
    ("groups.whitelist", "groups"),
    ("groups.blacklist", "groups.exclude"),
    ("config.properties.blacklist", "config.properties.exclude"),
];

/// Settings that need nothing in strait, and why.
fn not_needed(key: &str) -> Option<&'static str> {
    const CONNECT: &str = "a Kafka Connect runtime setting; strait has no Connect runtime";
    let prefixed = |p: &str| key == p || key.starts_with(&format!("{p}."));
    Some(match key {
        "tasks.max" => "not needed: strait spreads partitions over its workers itself",
        "heartbeats.topic.replication.factor"
        | "checkpoints.topic.replication.factor"
        | "offset-syncs.topic.replication.factor" => {
            "strait creates its internal topics with the cluster's default replication factor \
             (the broker's default.replication.factor), or reuses them where they exist"
        }
        "name" | "connector.class" | "source.cluster.alias" | "target.cluster.alias" => {
            "not needed: a flow's clusters are its source and target"
        }
        "consumer.poll.timeout.ms" | "admin.timeout.ms" => {
            "not needed: strait's clients have their own timeouts"
        }
        "dedicated.mode.enable.internal.rest" | "listeners" | "rest.advertised.host.name" => {
            CONNECT
        }
        "enabled" => "MirrorMaker 2 enables flows per pair only (A->B.enabled); a top-level value does nothing",
        "topic.filter.class" | "group.filter.class" | "config.property.filter.class" => {
            "custom filter classes cannot be carried over; express the filter as regexes \
             (topics, groups, configs_exclude)"
        }
        _ if ["offset.storage", "config.storage", "status.storage", "key.converter",
            "value.converter", "header.converter", "task", "worker", "config.providers",
            "offset.flush", "group.id", "client.id", "rest", "admin.listeners",
            "replication.policy.internal", "forwarding.admin.class"]
            .iter()
            .any(|p| prefixed(p)) =>
        {
            CONNECT
        }
        _ => return None,
    })
}

/// Client settings that MirrorMaker 2 applies to every cluster when set at
/// the top level.
fn is_client_key(key: &str) -> bool {
    key.starts_with("security.") || key.starts_with("ssl.") || key.starts_with("sasl.")
}

/// What becomes of one Java client setting in librdkafka's map.
enum ClientOutcome {
    Pass(Vec<(String, String)>, Option<String>),
    Report(String),
}

fn client_setting(key: &str, value: &str) -> ClientOutcome {
    if OWNED_KEYS.contains(&key) {
        return ClientOutcome::Report(
            "strait owns this client setting (correctness depends on it)".into(),
        );
    }
    let pass = |k: &str, v: &str| ClientOutcome::Pass(vec![(k.to_owned(), v.to_owned())], None);
    match key {
        "sasl.jaas.config" => match jaas_credentials(value) {
            Some((user, password)) => ClientOutcome::Pass(
                vec![
                    ("sasl.username".into(), user),
                    ("sasl.password".into(), password),
                ],
                Some(
                    "sasl.jaas.config became sasl.username and sasl.password; the password \
                     is written in clear: \"${SOME_VARIABLE}\" takes it from the environment instead"
                        .into(),
                ),
            ),
            None => ClientOutcome::Report(
                "only PlainLoginModule and ScramLoginModule with username and password \
                 translate to librdkafka (sasl.username, sasl.password); set this login by hand"
                    .into(),
            ),
        },
        "ssl.truststore.location"
        | "ssl.truststore.password"
        | "ssl.truststore.type"
        | "ssl.truststore.certificates" => ClientOutcome::Report(
            "librdkafka reads CA certificates as PEM: export the truststore and set ssl.ca.location"
                .into(),
        ),
        "ssl.keystore.type" => ClientOutcome::Report(
            "librdkafka reads a PKCS#12 keystore (ssl.keystore.location) or PEM files \
             (ssl.certificate.location, ssl.key.location); convert a JKS keystore"
                .into(),
        ),
        // Java's empty value turns host name checks off; librdkafka says none.
        "ssl.endpoint.identification.algorithm" if value.is_empty() => {
            pass(key, "none")
        }
        _ => match librdkafka_accepts(key, value) {
            Ok(()) => {
                let note = key
                    .starts_with("ssl.keystore.")
                    .then(|| format!("{key}: librdkafka reads PKCS#12 keystores only"));
                ClientOutcome::Pass(vec![(key.to_owned(), value.to_owned())], note)
            }
            Err(e) => ClientOutcome::Report(format!("librdkafka does not take it: {e}")),
        },
    }
}

/// librdkafka's own verdict on a setting (its name and value), without
/// creating a client.
fn librdkafka_accepts(key: &str, value: &str) -> Result<(), String> {
    let mut c = rdkafka::ClientConfig::new();
    c.set(key, value);
    c.create_native_config()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// `username="u" password="p"` of a PLAIN or SCRAM JAAS line.
fn jaas_credentials(jaas: &str) -> Option<(String, String)> {
    if !(jaas.contains("PlainLoginModule") || jaas.contains("ScramLoginModule")) {
        return None;
    }
    let field = |name: &str| {
        let at = jaas.find(&format!("{name}=\""))? + name.len() + 2;
        let end = jaas[at..].find('"')?;
        Some(jaas[at..at + end].to_owned())
    };
    Some((field("username")?, field("password")?))
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// "unknown setting", with the nearest known name when one is close.
fn unknown(rest: &str, prefix: &str) -> String {
    let best = FLOW_KEYS
        .iter()
        .chain(LEGACY.iter().map(|(k, _)| k))
        .chain(["bootstrap.servers", "clusters"].iter())
        .map(|k| (levenshtein(rest, k), k))
        .min();
    match best {
        Some((d, k)) if d <= 2 => format!("unknown setting; did you mean {prefix}{k}?"),
        _ => "unknown setting: not a MirrorMaker 2 setting strait knows".into(),
    }
}

fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The walk over the file: which keys were used, and the report.
struct Walk<'a> {
    p: &'a Properties,
    used: BTreeSet<String>,
    report: Report,
}

impl<'a> Walk<'a> {
    fn take(&mut self, key: &str) -> Option<&'a str> {
        let v = self.p.get(key)?;
        self.used.insert(key.to_owned());
        Some(v)
    }

    fn skip(&mut self, key: &str, reason: impl Into<String>) {
        self.used.insert(key.to_owned());
        self.report
            .not_carried
            .insert(key.to_owned(), reason.into());
    }

    /// A flow setting: `A->B.name` over the top-level `name`, with the
    /// legacy names as a fallback. Returns the key it came from too.
    fn flow_value(&mut self, pair: &str, name: &str) -> Option<(String, &'a str)> {
        let mut names = vec![name];
        names.extend(
            LEGACY
                .iter()
                .filter(|(_, new)| *new == name)
                .map(|(old, _)| *old),
        );
        for scope in [format!("{pair}."), String::new()] {
            let mut found: Option<(String, &'a str)> = None;
            for n in &names {
                let key = format!("{scope}{n}");
                if let Some(v) = self.take(&key) {
                    if let Some((first, _)) = &found {
                        self.report
                            .not_carried
                            .insert(key.clone(), format!("{first} is set too and wins"));
                        continue;
                    }
                    if *n != name {
                        self.report.warnings.push(format!(
                            "{key}: a legacy name; carried over as {scope}{name}"
                        ));
                    }
                    found = Some((key, v));
                }
            }
            if found.is_some() {
                return found;
            }
        }
        None
    }

    fn flow_bool(&mut self, pair: &str, name: &str) -> Option<bool> {
        self.flow_bool_at(pair, name).map(|(_, b)| b)
    }

    /// A boolean flow setting and the key it came from.
    fn flow_bool_at(&mut self, pair: &str, name: &str) -> Option<(String, bool)> {
        let (key, v) = self.flow_value(pair, name)?;
        match v.trim().to_ascii_lowercase().as_str() {
            "true" => Some((key, true)),
            "false" => Some((key, false)),
            _ => {
                self.skip(&key, format!("{v:?} is not true or false"));
                None
            }
        }
    }

    fn flow_int(&mut self, pair: &str, name: &str) -> Option<(String, i64)> {
        let (key, v) = self.flow_value(pair, name)?;
        match v.trim().parse::<i64>() {
            Ok(n) => Some((key, n)),
            Err(_) => {
                self.skip(&key, format!("{v:?} is not a whole number"));
                None
            }
        }
    }

    /// Regex lists: each pattern is checked with strait's regex engine
    /// (Java's and Rust's regexes differ in a few features).
    fn flow_regexes(&mut self, pair: &str, name: &str) -> Option<(String, Vec<String>)> {
        let (key, v) = self.flow_value(pair, name)?;
        let mut ok = Vec::new();
        for pattern in list(v) {
            match regex::Regex::new(&format!("^(?:{pattern})$")) {
                Ok(_) => ok.push(pattern),
                Err(e) => {
                    let reason = format!("pattern {pattern:?} is not a regex strait accepts: {e}");
                    self.report
                        .warnings
                        .push(format!("{key}: {reason}; the pattern was left out"));
                }
            }
        }
        Some((key, ok))
    }
}

/// Builds the config. An error means the file cannot make a strait config
/// at all (no clusters, a cluster without bootstrap servers, no flow).
pub fn import(p: &Properties, deployment: &str) -> Result<Imported, String> {
    let mut w = Walk {
        p,
        used: BTreeSet::new(),
        report: Report {
            warnings: p.warnings.clone(),
            ..Report::default()
        },
    };
    let clusters = list(w.take("clusters").ok_or(
        "no `clusters` setting: MirrorMaker 2 files name their clusters, e.g. clusters = us, dr",
    )?);
    if clusters.len() < 2 {
        return Err(format!(
            "clusters = {}: a flow needs two clusters",
            clusters.join(", ")
        ));
    }

    let mut out = Table::new();
    out.insert("deployment".into(), Value::String(deployment.into()));

    // Clusters and their client settings.
    let global_client: Vec<(&String, &str)> = p
        .settings
        .iter()
        .filter(|(k, _)| is_client_key(k))
        .map(|(k, s)| (k, s.value.as_str()))
        .collect();
    let mut cluster_tables = Table::new();
    for alias in &clusters {
        let key = format!("{alias}.bootstrap.servers");
        let bootstrap = w
            .take(&key)
            .ok_or_else(|| format!("cluster {alias} has no {key}"))?;
        let mut kafka = Table::new();
        let prefix = format!("{alias}.");
        let own: Vec<(String, &str)> = p
            .settings
            .iter()
            .filter_map(|(k, s)| Some((k.strip_prefix(&prefix)?.to_owned(), s.value.as_str())))
            .filter(|(k, _)| k != "bootstrap.servers" && !k.contains("->"))
            .collect();
        let mut settings: BTreeMap<String, (String, &str)> = BTreeMap::new();
        for (k, v) in &global_client {
            settings.insert((*k).clone(), ((*k).clone(), v));
        }
        for (k, v) in own {
            if k.starts_with("consumer.") || k.starts_with("producer.") || k.starts_with("admin.") {
                w.skip(
                    &format!("{alias}.{k}"),
                    "strait has one client settings map per cluster (clusters.<alias>.kafka); \
                     move it there if it suits every client of the cluster",
                );
                continue;
            }
            if FLOW_KEYS.contains(&k.as_str()) {
                w.skip(
                    &format!("{alias}.{k}"),
                    "a flow setting under a cluster prefix does nothing in MirrorMaker 2; \
                     use A->B.key or the top-level key",
                );
                continue;
            }
            settings.insert(k.clone(), (format!("{alias}.{k}"), v));
        }
        for (name, (from, v)) in settings {
            match client_setting(&name, v) {
                ClientOutcome::Pass(pairs, note) => {
                    w.used.insert(from.clone());
                    for (k, v) in pairs {
                        kafka.insert(k, Value::String(v));
                    }
                    if let Some(n) = note {
                        w.report.notes.push(format!("{alias}: {n}"));
                    }
                }
                ClientOutcome::Report(reason) => {
                    // A top-level setting is reported once, not per cluster.
                    if !w.report.not_carried.contains_key(&from) {
                        w.skip(&from, reason);
                    }
                }
            }
        }
        let mut c = Table::new();
        c.insert("bootstrap".into(), Value::String(list(bootstrap).join(",")));
        if !kafka.is_empty() {
            c.insert("kafka".into(), Value::Table(kafka));
        }
        cluster_tables.insert(alias.clone(), Value::Table(c));
    }
    out.insert("clusters".into(), Value::Table(cluster_tables));

    // Flows: every enabled pair.
    let mut flows = Vec::new();
    let mut discovery_secs: Option<i64> = None;
    for source in &clusters {
        for target in &clusters {
            if source == target {
                continue;
            }
            let pair = format!("{source}->{target}");
            let enabled_key = format!("{pair}.enabled");
            let enabled = match w.take(&enabled_key).map(|v| v.trim().to_ascii_lowercase()) {
                Some(v) if v == "true" => true,
                Some(v) if v == "false" => false,
                Some(v) => {
                    w.skip(
                        &enabled_key,
                        format!("{v:?} is not true or false; the flow is left out"),
                    );
                    false
                }
                None => false,
            };
            if !enabled {
                continue;
            }
            let mut f = Table::new();
            f.insert("source".into(), Value::String(source.clone()));
            f.insert("target".into(), Value::String(target.clone()));
            flow(&mut w, &pair, &mut f, &mut discovery_secs);
            flows.push(Value::Table(f));
        }
    }
    if flows.is_empty() {
        return Err(
            "no flow is enabled: MirrorMaker 2 replicates a pair only with A->B.enabled = true"
                .into(),
        );
    }
    if let Some(secs) = discovery_secs {
        let mut d = Table::new();
        d.insert("interval".into(), Value::String(format!("{secs}s")));
        out.insert("discovery".into(), Value::Table(d));
    }
    out.insert("flows".into(), Value::Array(flows));

    // Whatever is left: settings of pairs not enabled, MirrorMaker 2's
    // runtime settings, and unknown names.
    let left: Vec<String> = p
        .settings
        .keys()
        .filter(|k| !w.used.contains(*k))
        .cloned()
        .collect();
    for key in left {
        let reason = classify_left(&key, &clusters);
        w.skip(&key, reason);
    }

    let body = toml::to_string_pretty(&out).map_err(|e| format!("cannot write the config: {e}"))?;
    let text = format!(
        "# Written by `strait import-mm2` from a MirrorMaker 2 properties file.\n\
         # Review it, then `strait check --config FILE`. The deployment name\n\
         # names strait's progress groups: choose it before the first run.\n\n{body}"
    );
    let valid = Config::parse(&text).map(|_| ()).map_err(|e| e.to_string());
    Ok(Imported {
        toml: text,
        valid,
        report: w.report,
    })
}

/// Why a setting that no flow or cluster used is not carried over.
fn classify_left(key: &str, clusters: &[String]) -> String {
    if let Some(reason) = not_needed(key) {
        return reason.into();
    }
    if let Some((pair, rest)) = key.split_once("->") {
        let target = rest.split('.').next().unwrap_or_default();
        let rest = rest.split_once('.').map(|(_, r)| r).unwrap_or_default();
        if !clusters.iter().any(|c| c == pair) || !clusters.iter().any(|c| c == target) {
            return format!("{pair}->{target} names a cluster not in `clusters`");
        }
        if let Some(reason) = not_needed(rest) {
            return reason.into();
        }
        if FLOW_KEYS.contains(&rest) || LEGACY.iter().any(|(k, _)| *k == rest) {
            return format!("the flow {pair}->{target} is not enabled");
        }
        return unknown(rest, &format!("{pair}->{target}."));
    }
    if let Some((prefix, rest)) = key.split_once('.') {
        if clusters.iter().any(|c| c == prefix) {
            return unknown(rest, &format!("{prefix}."));
        }
        if rest.ends_with("bootstrap.servers") {
            return format!("{prefix} is not a cluster in `clusters`");
        }
    }
    unknown(key, "")
}

/// One flow's settings.
fn flow(w: &mut Walk, pair: &str, f: &mut Table, discovery_secs: &mut Option<i64>) {
    let put = |f: &mut Table, k: &str, v: Value| {
        f.insert(k.into(), v);
    };
    let strings = |v: Vec<String>| Value::Array(v.into_iter().map(Value::String).collect());
    let secs = |n: i64| Value::String(format!("{n}s"));
    for (mm2, strait) in [
        ("topics", "topics"),
        ("topics.exclude", "topics_exclude"),
        ("groups", "groups"),
        ("groups.exclude", "groups_exclude"),
        ("config.properties.exclude", "configs_exclude"),
    ] {
        if let Some((_, v)) = w.flow_regexes(pair, mm2) {
            put(f, strait, strings(v));
        }
    }
    if let Some((key, class)) = w.flow_value(pair, "replication.policy.class") {
        match class.trim() {
            DEFAULT_POLICY => put(f, "policy", Value::String("prefix".into())),
            IDENTITY_POLICY => put(f, "policy", Value::String("identity".into())),
            other => w.skip(
                &key,
                format!(
                    "custom policy {other}: strait knows the prefix and identity policies only"
                ),
            ),
        }
    }
    if let Some((_, sep)) = w.flow_value(pair, "replication.policy.separator") {
        put(f, "separator", Value::String(sep.into()));
    }
    match w.flow_int(pair, "replication.factor") {
        Some((_, n)) if n > 0 => put(f, "replication_factor", Value::Integer(n)),
        Some(_) => {} // -1: the target's default, strait's default too.
        None => w.report.notes.push(format!(
            "{pair}: MirrorMaker 2 created remote topics with replication factor 2 \
             (replication.factor unset); strait uses the target's default unless \
             replication_factor is set"
        )),
    }
    for (mm2, strait) in [
        ("sync.topic.configs.enabled", "sync_topic_configs"),
        ("emit.heartbeats.enabled", "heartbeats"),
        ("emit.checkpoints.enabled", "checkpoints"),
        ("sync.group.offsets.enabled", "sync_group_offsets"),
    ] {
        if let Some(b) = w.flow_bool(pair, mm2) {
            put(f, strait, Value::Boolean(b));
        }
    }
    // MirrorMaker 2 copies ACLs unless told not to; strait only when asked.
    let acls = w.flow_bool(pair, "sync.topic.acls.enabled").unwrap_or(true);
    put(f, "sync_acls", Value::Boolean(acls));
    for (mm2, strait) in [
        (
            "sync.topic.configs.interval.seconds",
            "config_sync_interval",
        ),
        ("emit.heartbeats.interval.seconds", "heartbeat_interval"),
        ("emit.checkpoints.interval.seconds", "checkpoint_interval"),
    ] {
        match w.flow_int(pair, mm2) {
            Some((_, n)) if n > 0 => put(f, strait, secs(n)),
            Some((key, n)) => w.skip(&key, format!("{n}: an interval must be positive")),
            None => {}
        }
    }
    if let Some((key, _)) = w.flow_value(pair, "sync.topic.acls.interval.seconds") {
        w.skip(
            &key,
            "strait syncs ACLs with topic configs, every config_sync_interval",
        );
    }
    if let Some((key, _)) = w.flow_value(pair, "sync.group.offsets.interval.seconds") {
        w.skip(
            &key,
            "strait syncs group offsets in each checkpoint round (checkpoint_interval)",
        );
    }
    for k in ["refresh.groups.enabled", "refresh.groups.interval.seconds"] {
        if let Some((key, _)) = w.flow_value(pair, k) {
            w.skip(
                &key,
                "not needed: strait lists groups in each checkpoint round",
            );
        }
    }
    if let Some((_, n)) = w.flow_int(pair, "offset.lag.max") {
        if n >= 0 {
            put(f, "offset_lag_max", Value::Integer(n.max(1)));
        }
    }
    if let Some((key, false)) = w.flow_bool_at(pair, "refresh.topics.enabled") {
        w.skip(&key, "strait always discovers new topics and partitions");
    }
    if let Some((_, n)) = w.flow_int(pair, "refresh.topics.interval.seconds") {
        if n > 0 {
            *discovery_secs = Some(discovery_secs.map_or(n, |d| d.min(n)));
        }
    }
    if let Some((key, v)) = w.flow_value(pair, "offset-syncs.topic.location") {
        match v.trim() {
            "source" | "target" => put(f, "offset_syncs_location", Value::String(v.trim().into())),
            other => w.skip(&key, format!("{other:?} is not source or target")),
        }
    }
    if let Some((key, false)) = w.flow_bool_at(pair, "emit.offset-syncs.enabled") {
        w.skip(
            &key,
            "strait always emits offset syncs (consumer failover needs them)",
        );
    }
    let eos = [
        ("exactly.once.source.support", "enabled"),
        ("exactly.once.support", "required"),
    ];
    for (k, on) in eos {
        if let Some((_, v)) = w.flow_value(pair, k) {
            if v.trim().eq_ignore_ascii_case(on) {
                put(f, "exactly_once", Value::Boolean(true));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm2::properties::parse;
    use proptest::prelude::*;

    fn imported(text: &str) -> Imported {
        let i = import(&parse(text), "prod").unwrap();
        assert_eq!(i.valid, Ok(()), "{}", i.toml);
        i
    }

    #[test]
    fn clusters_flows_filters_and_policies_are_carried_over() {
        let i = imported(
            "clusters = us, dr\n\
             us.bootstrap.servers = us1:9092,us2:9092\n\
             dr.bootstrap.servers = dr1:9092\n\
             us->dr.enabled = true\n\
             us->dr.topics = orders, payments\\..*\n\
             topics.blacklist = .*\\.tmp\n\
             groups = app-.*\n\
             replication.policy.separator = _\n\
             replication.factor = 3\n\
             sync.topic.acls.enabled = false\n\
             emit.checkpoints.interval.seconds = 10\n\
             offset.lag.max = 50\n\
             refresh.topics.interval.seconds = 30\n\
             offset-syncs.topic.location = target\n\
             tasks.max = 8\n",
        );
        let c = Config::parse(&i.toml).unwrap();
        assert_eq!(c.clusters["us"].bootstrap, "us1:9092,us2:9092");
        assert_eq!(c.flows.len(), 1);
        let f = &c.flows[0];
        assert_eq!((f.source.as_str(), f.target.as_str()), ("us", "dr"));
        assert!(f.replicates("orders") && f.replicates("payments.eu"));
        assert!(!f.replicates("payments.x.tmp") && !f.replicates("other"));
        assert_eq!(f.remote_topic("orders"), "us_orders");
        assert_eq!(f.replication_factor, Some(3));
        assert!(!f.sync_acls);
        assert_eq!(f.checkpoints, Some(std::time::Duration::from_secs(10)));
        assert_eq!(f.offset_lag_max, 50);
        assert!(f.checkpoints_group("app-1") && !f.checkpoints_group("other"));
        assert_eq!(c.discovery.interval, std::time::Duration::from_secs(30));
        assert!(i
            .report
            .warnings
            .iter()
            .any(|w| w.contains("topics.blacklist: a legacy name")));
        assert!(i.report.not_carried["tasks.max"].contains("not needed"));
    }

    #[test]
    fn client_settings_pass_through_except_owned_and_java_only_ones() {
        let i = imported(
            "clusters = us, dr\nus.bootstrap.servers = a:1\ndr.bootstrap.servers = b:1\n\
             us->dr.enabled = true\n\
             security.protocol = SASL_SSL\n\
             sasl.mechanism = SCRAM-SHA-512\n\
             sasl.jaas.config = org.apache.kafka.common.security.scram.ScramLoginModule required username=\"mm2\" password=\"s3cret\";\n\
             ssl.truststore.location = /etc/kafka/truststore.jks\n\
             dr.security.protocol = PLAINTEXT\n\
             us.client.rack = rack-1\n\
             us.enable.idempotence = false\n\
             us.producer.linger.ms = 5\n\
             us.no.such.thing = 1\n",
        );
        let c = Config::parse(&i.toml).unwrap();
        let us = &c.clusters["us"].kafka;
        let dr = &c.clusters["dr"].kafka;
        assert_eq!(us["security.protocol"].to_string(), "SASL_SSL");
        assert_eq!(
            dr["security.protocol"].to_string(),
            "PLAINTEXT",
            "a cluster's own wins"
        );
        assert_eq!(us["sasl.username"].to_string(), "mm2");
        assert_eq!(dr["sasl.password"].to_string(), "s3cret");
        assert_eq!(us["client.rack"].to_string(), "rack-1");
        let r = &i.report.not_carried;
        assert!(
            r["ssl.truststore.location"].contains("ssl.ca.location"),
            "{r:?}"
        );
        assert!(r["us.enable.idempotence"].contains("strait owns"), "{r:?}");
        assert!(
            r["us.producer.linger.ms"].contains("one client settings map"),
            "{r:?}"
        );
        assert!(r["us.no.such.thing"].contains("librdkafka"), "{r:?}");
        assert!(!us.contains_key("no.such.thing"));
    }

    #[test]
    fn every_setting_is_carried_or_reported_with_a_reason() {
        let text =
            "clusters = us, dr, eu\nus.bootstrap.servers = a:1\ndr.bootstrap.servers = b:1\n\
             eu.bootstrap.servers = c:1\n\
             us->dr.enabled = true\nus->eu.enabled = false\n\
             us->eu.topics = x\n\
             us->dr.topcs = orders\n\
             emit.heartbeat.enabled = false\n\
             replication.policy.class = com.example.MyPolicy\n\
             offset.storage.replication.factor = 3\n\
             usa.bootstrap.servers = d:1\n\
             sync.group.offsets.interval.seconds = 5\n";
        let p = parse(text);
        let i = imported(text);
        let carried_keys = [
            "clusters",
            "us.bootstrap.servers",
            "dr.bootstrap.servers",
            "eu.bootstrap.servers",
            "us->dr.enabled",
            "us->eu.enabled",
        ];
        for key in p.settings.keys() {
            assert!(
                carried_keys.contains(&key.as_str()) || i.report.not_carried.contains_key(key),
                "{key} neither carried nor reported: {:?}",
                i.report.not_carried
            );
        }
        let r = &i.report.not_carried;
        assert!(r["us->eu.topics"].contains("not enabled"), "{r:?}");
        assert!(
            r["us->dr.topcs"].contains("did you mean us->dr.topics?"),
            "{r:?}"
        );
        assert!(
            r["emit.heartbeat.enabled"].contains("did you mean emit.heartbeats.enabled?"),
            "{r:?}"
        );
        assert!(
            r["replication.policy.class"].contains("custom policy"),
            "{r:?}"
        );
        assert!(
            r["offset.storage.replication.factor"].contains("Connect"),
            "{r:?}"
        );
        assert!(
            r["usa.bootstrap.servers"].contains("not a cluster"),
            "{r:?}"
        );
        assert!(
            r["sync.group.offsets.interval.seconds"].contains("checkpoint round"),
            "{r:?}"
        );
    }

    #[test]
    fn unusable_files_are_refused_with_the_reason() {
        let e = import(&parse("us.bootstrap.servers = a:1\n"), "p").unwrap_err();
        assert!(e.contains("no `clusters`"), "{e}");
        let e = import(
            &parse("clusters = us, dr\nus.bootstrap.servers = a:1\n"),
            "p",
        )
        .unwrap_err();
        assert!(e.contains("dr has no dr.bootstrap.servers"), "{e}");
        let e = import(
            &parse("clusters = us, dr\nus.bootstrap.servers = a:1\ndr.bootstrap.servers = b:1\n"),
            "p",
        )
        .unwrap_err();
        assert!(e.contains("no flow is enabled"), "{e}");
    }

    #[test]
    fn defaults_that_differ_keep_mirrormaker_2s_behaviour_or_are_noted() {
        let i = imported(
            "clusters = a, b\na.bootstrap.servers = x:1\nb.bootstrap.servers = y:1\n\
             a->b.enabled = true\nb->a.enabled = true\n\
             exactly.once.source.support = enabled\n",
        );
        let c = Config::parse(&i.toml).unwrap();
        assert_eq!(c.flows.len(), 2);
        assert!(c
            .flows
            .iter()
            .all(|f| f.sync_acls && f.exactly_once.is_some()));
        assert!(i
            .report
            .notes
            .iter()
            .any(|n| n.contains("replication factor 2")));
    }

    #[test]
    fn jaas_lines_other_than_plain_and_scram_are_reported() {
        assert_eq!(
            jaas_credentials("org.apache.kafka.common.security.plain.PlainLoginModule required username=\"u\" password=\"p\";"),
            Some(("u".into(), "p".into()))
        );
        assert_eq!(
            jaas_credentials("com.sun.security.auth.module.Krb5LoginModule required;"),
            None
        );
        assert_eq!(levenshtein("topcs", "topics"), 1);
    }

    proptest! {
        /// Outside input: any file either imports or is refused with a
        /// reason; it never panics, and an import always says whether
        /// `strait check` takes it.
        #[test]
        fn any_file_imports_or_is_refused(
            lines in proptest::collection::vec(
                prop_oneof![
                    Just("clusters = a, b".to_owned()),
                    Just("a.bootstrap.servers = h:1".to_owned()),
                    Just("b.bootstrap.servers = h:2".to_owned()),
                    Just("a->b.enabled = true".to_owned()),
                    "[a-z.>-]{1,24} ?[=:]? ?[ -~]{0,20}",
                ],
                0..12,
            )
        ) {
            let text = lines.join("\n");
            if let Ok(i) = import(&parse(&text), "prod") {
                prop_assert!(!i.toml.is_empty());
            }
        }
    }
}
