//! The replicators compared, each a separate OS process: Apache Kafka's
//! MirrorMaker 2 (`compose/mm2.sh` through `testkit::mm2::MirrorMaker`)
//! with its defaults and tuned, and `strait run` (the build of the bench's profile) with
//! its defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure};
use strait_testkit::config::ConfigBuilder;
use strait_testkit::mm2::{MirrorMaker, Mm2Properties};
use strait_testkit::process::Strait;

/// A column of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Column {
    Baseline,
    Mm2Defaults,
    Mm2Tuned,
    Strait,
}

pub const COLUMNS: [Column; 4] = [
    Column::Baseline,
    Column::Mm2Defaults,
    Column::Mm2Tuned,
    Column::Strait,
];

/// The tools, in the order of the first run (later runs rotate it, so no
/// tool always runs first on fresh brokers or last on a tired machine).
pub const TOOLS: [Column; 3] = [Column::Strait, Column::Mm2Tuned, Column::Mm2Defaults];

/// MirrorMaker 2's settings in the tuned column, beyond what it needs to
/// run (`{target}` is the target cluster's alias). Names checked against
/// MirrorMaker 2 4.3.1's config classes, and the producer's values against
/// what it logs at start ([`check_tuned_producer`]).
pub const TUNED: [(&str, &str); 10] = [
    ("tasks.max", "2"),
    ("{target}.producer.compression.type", "lz4"),
    ("{target}.producer.linger.ms", "5"),
    ("{target}.producer.batch.size", "1048576"),
    ("emit.checkpoints.interval.seconds", "1"),
    ("sync.group.offsets.enabled", "true"),
    ("sync.group.offsets.interval.seconds", "1"),
    ("refresh.topics.interval.seconds", "5"),
    ("refresh.groups.interval.seconds", "5"),
    ("offset.lag.max", "100"),
];

/// MirrorMaker 2's own defaults for what `testkit::mm2::Mm2Properties`
/// shortens for tests (it writes 1 s refresh and checkpoint intervals);
/// the defaults column writes them back.
pub const MM2_DEFAULTS: [(&str, &str); 3] = [
    ("refresh.topics.interval.seconds", "600"),
    ("refresh.groups.interval.seconds", "600"),
    ("emit.checkpoints.interval.seconds", "60"),
];

impl Column {
    pub fn title(self) -> &'static str {
        match self {
            Column::Baseline => "baseline",
            Column::Mm2Defaults => "MM2 defaults",
            Column::Mm2Tuned => "MM2 tuned",
            Column::Strait => "strait defaults",
        }
    }

    /// How long a new topic may take to be seen (its refresh interval, and
    /// then some).
    pub fn topic_refresh(self) -> Duration {
        match self {
            Column::Mm2Defaults => Duration::from_secs(600),
            Column::Mm2Tuned => Duration::from_secs(5),
            _ => Duration::from_secs(1),
        }
    }

    /// Its checkpoint interval.
    pub fn checkpoint_interval(self) -> Duration {
        match self {
            Column::Mm2Defaults => Duration::from_secs(60),
            Column::Mm2Tuned => Duration::from_secs(1),
            _ => Duration::from_secs(2),
        }
    }

    /// What the column ran with, for the lines under the table.
    pub fn settings(self, heap: &str) -> String {
        let needed = "`clusters`, both `bootstrap.servers`, `A->B.enabled`, `A->B.topics` and \
             `A->B.groups` regexes of the session, replication factor 1 for every topic it creates";
        match self {
            Column::Baseline => "one hop, in the bench process: throughput is one producer alone \
                 writing the same backlog to a topic on the target (idempotent, acks=all, no \
                 compression), timed like the tools from its start; latency is that producer \
                 writing the target at 5 MB/s and one consumer reading it there. CPU is the bench \
                 process's"
                .to_owned(),
            Column::Mm2Defaults => format!(
                "Apache Kafka's MirrorMaker 2 4.3.1, dedicated mode (`compose/mm2.sh`, -Xmx{heap}), \
                 only what it needs to run: {needed}; everything else its defaults (tasks.max 1, \
                 no compression, checkpoints every 60 s, topics and groups refreshed every 600 s, \
                 offset.lag.max 100, group offset sync off). Every topic and group it measures \
                 exists before it starts"
            ),
            Column::Mm2Tuned => format!(
                "the same MirrorMaker 2 and needs, plus: {}",
                TUNED
                    .iter()
                    .map(|(k, v)| format!("`{}={v}`", k.replace("{target}", "B")))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Column::Strait => format!(
                "`strait run` ({}), one process, its defaults: only the \
                 clusters, the flow's `topics` and `groups` regexes and the metrics endpoint set \
                 (lz4 to the target, checkpoint_interval 2 s, topic discovery every 1 s, \
                 offset_lag_max 100, heartbeats on)",
                // CI runs the short version on the debug build it already
                // has: a check that the comparison still runs, not figures.
                if cfg!(debug_assertions) {
                    "DEBUG build: its figures are not comparable"
                } else {
                    "release build"
                }
            ),
        }
    }
}

/// What one session of a tool replicates: its own aliases and names.
pub struct Names {
    pub source_alias: String,
    pub target_alias: String,
    /// Every source topic of the session starts with `{prefix}-`.
    pub prefix: String,
    pub groups_regex: String,
}

impl Names {
    pub fn new(column: Column) -> Names {
        let tag = match column {
            Column::Baseline => "base",
            Column::Mm2Defaults => "mmd",
            Column::Mm2Tuned => "mmt",
            Column::Strait => "str",
        };
        let prefix = strait_testkit::mm2::alias(&format!("vs{tag}"));
        Names {
            source_alias: format!("{prefix}a"),
            target_alias: format!("{prefix}b"),
            groups_regex: format!("{prefix}-g-.*"),
            prefix,
        }
    }

    pub fn topic(&self, what: &str) -> String {
        format!("{}-{what}", self.prefix)
    }

    /// The remote topic of a source topic (both tools' default policy).
    pub fn remote(&self, topic: &str) -> String {
        format!("{}.{topic}", self.source_alias)
    }

    pub fn checkpoints_topic(&self) -> String {
        format!("{}.checkpoints.internal", self.source_alias)
    }

    pub fn group(&self, i: usize) -> String {
        format!("{}-g-{i}", self.prefix)
    }
}

/// A running tool; stopped (killed) when dropped.
pub struct Running {
    pub column: Column,
    inner: Inner,
    pub pid: u32,
    /// strait's config file, for `strait offsets failover`.
    pub config: Option<PathBuf>,
    pub log: PathBuf,
}

enum Inner {
    Mm2(MirrorMaker),
    Strait(Strait),
}

/// Starts `column`'s tool for a session (not the baseline).
pub fn start(
    column: Column,
    names: &Names,
    source: &str,
    target: &str,
    dir: &Path,
) -> anyhow::Result<Running> {
    let (a, b) = (&names.source_alias, &names.target_alias);
    let topics = format!("{}-.*", names.prefix);
    match column {
        Column::Mm2Defaults | Column::Mm2Tuned => {
            let mut props =
                Mm2Properties::new((a, source), (b, target), &topics, &names.groups_regex);
            let extra: &[(&str, &str)] = if column == Column::Mm2Tuned {
                &TUNED
            } else {
                &MM2_DEFAULTS
            };
            for (k, v) in extra {
                props = props.set(&k.replace("{target}", b), v);
            }
            let mm = MirrorMaker::start(dir, &names.prefix, &props);
            Ok(Running {
                column,
                pid: mm.pid(),
                log: mm.log.clone(),
                inner: Inner::Mm2(mm),
                config: None,
            })
        }
        Column::Strait => {
            let config = ConfigBuilder::new(&names.prefix, source, target)
                .aliases(a, b)
                .flow("topics", [topics.as_str()])
                .flow("groups", [names.groups_regex.as_str()])
                .build();
            let s = Strait::launch(
                Path::new(env!("CARGO_BIN_EXE_strait")),
                dir,
                &names.prefix,
                &config,
                &[],
            );
            Ok(Running {
                column,
                pid: s.pid(),
                config: Some(s.config_path().to_owned()),
                log: s.log.clone(),
                inner: Inner::Strait(s),
            })
        }
        Column::Baseline => bail!("the baseline is not a process"),
    }
}

impl Running {
    /// Whether the process is still up (a crash fails the session).
    pub fn alive(&mut self) -> bool {
        match &mut self.inner {
            Inner::Mm2(m) => m.running(),
            Inner::Strait(s) => s.running(),
        }
    }

    pub fn stop(self) {
        match self.inner {
            // Nothing of it is measured after this: no need for a clean stop.
            Inner::Mm2(m) => drop(m),
            Inner::Strait(mut s) => {
                s.stop_with("TERM", Duration::from_secs(60));
            }
        }
    }

    /// For MirrorMaker 2: checks in its log that the producer writing the
    /// remote topics runs with what the column set (tuned), or with the
    /// client defaults (defaults), and returns what it logged.
    pub fn producer_settings(&self) -> anyhow::Result<String> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let block = text
            .split("ProducerConfig values:")
            .find(|b| b.contains("client.id = connector-producer-MirrorSourceConnector-0"))
            .ok_or_else(|| anyhow::anyhow!("no source task producer in {}", self.log.display()))?;
        let get = |key: &str| {
            block
                .lines()
                .find_map(|l| l.trim().strip_prefix(&format!("{key} = ")))
                .unwrap_or("?")
                .to_owned()
        };
        let (c, l, b) = (get("compression.type"), get("linger.ms"), get("batch.size"));
        // Source tasks it runs: MirrorSourceConnector-0, -1, ...
        let tasks = (0..16)
            .take_while(|i| text.contains(&format!("MirrorSourceConnector-{i}")))
            .count();
        if self.column == Column::Mm2Tuned {
            ensure!(
                (c.as_str(), l.as_str(), b.as_str(), tasks) == ("lz4", "5", "1048576", 2),
                "MirrorMaker 2 (tuned) runs {tasks} source task(s) with compression.type={c}, linger.ms={l}, batch.size={b}"
            );
        }
        Ok(format!(
            "{tasks} source task(s), producer compression.type={c}, linger.ms={l}, batch.size={b}"
        ))
    }
}
