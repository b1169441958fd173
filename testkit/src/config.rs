//! One builder for the `strait.toml` that tests, benchmarks and the chaos
//! fleet write: a deployment, a `src -> dst` flow and the tables they set,
//! instead of a template copied into every harness.
//!
//! ```
//! use strait_testkit::config::ConfigBuilder;
//! let toml = ConfigBuilder::new("d1", "127.0.0.1:9092", "127.0.0.1:9093")
//!     .flow("topics", ["orders-.*"])
//!     .flow("checkpoints", true)
//!     .worker("commit_interval", "200ms")
//!     .build();
//! assert!(toml.contains("checkpoints = true"));
//! ```

use std::fmt::Write as _;

/// A TOML value, written inline.
pub trait TomlValue {
    fn toml(&self) -> String;
}

impl TomlValue for &str {
    fn toml(&self) -> String {
        quote(self)
    }
}

impl TomlValue for String {
    fn toml(&self) -> String {
        quote(self)
    }
}

impl TomlValue for bool {
    fn toml(&self) -> String {
        self.to_string()
    }
}

macro_rules! integers {
    ($($t:ty),*) => {$(
        impl TomlValue for $t {
            fn toml(&self) -> String {
                self.to_string()
            }
        }
    )*};
}
integers!(i32, i64, u32, u64, usize, f64);

impl<const N: usize> TomlValue for [&str; N] {
    fn toml(&self) -> String {
        let items: Vec<String> = self.iter().map(|s| quote(s)).collect();
        format!("[{}]", items.join(", "))
    }
}

impl TomlValue for Vec<String> {
    fn toml(&self) -> String {
        let items: Vec<String> = self.iter().map(|s| quote(s)).collect();
        format!("[{}]", items.join(", "))
    }
}

/// A value already written as TOML (a string with its escapes, an array).
pub struct Raw(pub String);

impl TomlValue for Raw {
    fn toml(&self) -> String {
        self.0.clone()
    }
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `strait.toml` for one deployment with clusters `src` and `dst` and one
/// flow `src -> dst`. `[metrics] listen` is `"{metrics}"`, which the test
/// process launcher replaces with a free port.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    deployment: String,
    source: String,
    target: String,
    tables: Vec<(&'static str, Vec<String>)>,
    cluster_raw: [String; 2],
    /// The clusters' aliases: `src` and `dst` unless [`ConfigBuilder::aliases`].
    aliases: [String; 2],
    flow_raw: String,
    raw: String,
}

impl ConfigBuilder {
    pub fn new(deployment: &str, source: &str, target: &str) -> Self {
        ConfigBuilder {
            deployment: deployment.to_owned(),
            source: source.to_owned(),
            target: target.to_owned(),
            tables: Vec::new(),
            cluster_raw: Default::default(),
            aliases: ["src".to_owned(), "dst".to_owned()],
            flow_raw: String::new(),
            raw: String::new(),
        }
        .metrics("listen", "{metrics}")
    }

    fn set(mut self, table: &'static str, key: &str, value: impl TomlValue) -> Self {
        let line = format!("{key} = {}", value.toml());
        match self.tables.iter_mut().find(|(t, _)| *t == table) {
            Some((_, lines)) => {
                let prefix = format!("{key} = ");
                lines.retain(|l| !l.starts_with(&prefix));
                lines.push(line);
            }
            None => self.tables.push((table, vec![line])),
        }
        self
    }

    /// Without `[metrics] listen`: for a config a test parses and runs in
    /// its own process, with no HTTP endpoint.
    pub fn no_metrics_endpoint(mut self) -> Self {
        if let Some((_, lines)) = self.tables.iter_mut().find(|(t, _)| *t == "metrics") {
            lines.retain(|l| !l.starts_with("listen = "));
        }
        self
    }

    /// Other aliases for the two clusters than `src` and `dst` (they name
    /// the flow, remote topics and internal topics: a test that shares the
    /// sandbox's internal topics with nobody picks its own).
    pub fn aliases(mut self, source: &str, target: &str) -> Self {
        self.aliases = [source.to_owned(), target.to_owned()];
        self
    }

    /// Raw TOML lines appended to the source cluster's table.
    pub fn source_raw(mut self, toml: &str) -> Self {
        self.cluster_raw[0].push_str(toml);
        self.cluster_raw[0].push('\n');
        self
    }

    /// The same for the target cluster.
    pub fn target_raw(mut self, toml: &str) -> Self {
        self.cluster_raw[1].push_str(toml);
        self.cluster_raw[1].push('\n');
        self
    }

    /// A key of the flow (`[[flows]]`).
    pub fn flow(self, key: &str, value: impl TomlValue) -> Self {
        self.set("flow", key, value)
    }

    /// Raw TOML lines appended to the flow's table.
    pub fn flow_raw(mut self, toml: &str) -> Self {
        self.flow_raw.push_str(toml);
        self.flow_raw.push('\n');
        self
    }

    pub fn worker(self, key: &str, value: impl TomlValue) -> Self {
        self.set("worker", key, value)
    }

    pub fn discovery(self, key: &str, value: impl TomlValue) -> Self {
        self.set("discovery", key, value)
    }

    pub fn metrics(self, key: &str, value: impl TomlValue) -> Self {
        self.set("metrics", key, value)
    }

    pub fn coordination(self, key: &str, value: impl TomlValue) -> Self {
        self.set("coordination", key, value)
    }

    /// A librdkafka setting for every client of the source cluster.
    pub fn source_kafka(self, key: &str, value: impl TomlValue) -> Self {
        self.set("clusters.src.kafka", &quote(key), value)
    }

    /// The same for the target cluster.
    pub fn target_kafka(self, key: &str, value: impl TomlValue) -> Self {
        self.set("clusters.dst.kafka", &quote(key), value)
    }

    /// Raw TOML appended at the end (more flows, more tables).
    pub fn raw(mut self, toml: &str) -> Self {
        self.raw.push_str(toml);
        self.raw.push('\n');
        self
    }

    /// The settings the end-to-end tests and the chaos fleet share: quick
    /// commits, syncs, restarts and discovery, so a test waits seconds.
    pub fn quick(self) -> Self {
        self.worker("commit_interval", "200ms")
            .worker("offset_sync_interval", "500ms")
            .worker("drain_timeout", "10s")
            .worker("restart_backoff", "500ms")
            .discovery("interval", "1s")
    }

    pub fn build(&self) -> String {
        let table = |name: &str| {
            self.tables
                .iter()
                .find(|(t, _)| *t == name)
                .map(|(_, lines)| lines.join("\n") + "\n")
                .unwrap_or_default()
        };
        let mut out = String::new();
        let _ = writeln!(out, "deployment = {}", quote(&self.deployment));
        // The kafka tables are kept under the slots' names (`src`, `dst`)
        // and written under the aliases.
        let clusters = [("src", &self.source), ("dst", &self.target)];
        for (((slot, bootstrap), raw), alias) in clusters
            .into_iter()
            .zip(&self.cluster_raw)
            .zip(&self.aliases)
        {
            let _ = writeln!(out, "[clusters.{alias}]\nbootstrap = {}", quote(bootstrap));
            out.push_str(raw);
            let kafka = table(&format!("clusters.{slot}.kafka"));
            if !kafka.is_empty() {
                let _ = write!(out, "[clusters.{alias}.kafka]\n{kafka}");
            }
        }
        let _ = write!(
            out,
            "[[flows]]\nsource = {}\ntarget = {}\n{}{}",
            quote(&self.aliases[0]),
            quote(&self.aliases[1]),
            table("flow"),
            self.flow_raw
        );
        for name in ["worker", "discovery", "metrics", "coordination"] {
            let body = table(name);
            if !body.is_empty() {
                let _ = write!(out, "[{name}]\n{body}");
            }
        }
        out.push_str(&self.raw);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_come_out_once_with_the_last_value_of_a_key() {
        let toml = ConfigBuilder::new("d", "s:1", "t:2")
            .flow("topics", ["a-.*", "b\"c"])
            .worker("commit_interval", "1s")
            .worker("commit_interval", "2s")
            .target_kafka("compression.type", "zstd")
            .coordination("etcd", vec!["http://e:1".to_owned()])
            .build();
        assert_eq!(
            toml,
            "deployment = \"d\"\n[clusters.src]\nbootstrap = \"s:1\"\n[clusters.dst]\nbootstrap = \"t:2\"\n\
             [clusters.dst.kafka]\n\"compression.type\" = \"zstd\"\n\
             [[flows]]\nsource = \"src\"\ntarget = \"dst\"\ntopics = [\"a-.*\", \"b\\\"c\"]\n\
             [worker]\ncommit_interval = \"2s\"\n[metrics]\nlisten = \"{metrics}\"\n\
             [coordination]\netcd = [\"http://e:1\"]\n"
        );
    }
}
