//! Apache Kafka's own MirrorMaker 2, for the interoperability tests: a
//! properties file as a MirrorMaker 2 user writes one, the real
//! MirrorMaker 2 in dedicated mode as a child process (`compose/mm2.sh`,
//! killed when dropped), and `Mm2Client` (`tests/mm2_client/Mm2Client.java`):
//! MirrorMaker 2's client classes (`RemoteClusterUtils`, `MirrorClient`,
//! the internal topics' deserializers) as a command whose line output a
//! test parses. All of it runs from the jars `compose/sandbox.sh install`
//! puts in `~/.cache/strait/kafka-4.3.1/lib`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The repository's root (testkit lives one level below it).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// strait's tool cache: `$STRAIT_TOOLS`, else `~/.cache/strait`.
fn tools() -> PathBuf {
    std::env::var("STRAIT_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/strait"))
}

/// The Kafka jars (`$STRAIT_KAFKA_LIB`, else the sandbox's cache).
pub fn kafka_lib() -> PathBuf {
    std::env::var("STRAIT_KAFKA_LIB")
        .map(PathBuf::from)
        .unwrap_or_else(|_| tools().join("kafka-4.3.1/lib"))
}

/// A cluster alias for one test: letters and digits only (MirrorMaker 2
/// reads `A->B.` prefixes, strait takes letters, digits, '-' and '_'), so
/// each test has its own remote topics, internal topics and Connect group.
pub fn alias(what: &str) -> String {
    let u = crate::unique(what);
    u.chars().filter(char::is_ascii_alphanumeric).collect()
}

/// A MirrorMaker 2 properties file for one flow `source -> target`, as a
/// MirrorMaker 2 user writes it for a one-broker cluster: replication
/// factor 1 everywhere, and intervals short enough for a test (MirrorMaker
/// 2 sees topics and groups only when it refreshes: 600 s by default).
#[derive(Debug, Clone)]
pub struct Mm2Properties {
    pub source: (String, String),
    pub target: (String, String),
    /// `A->B.topics`: a regex list.
    pub topics: String,
    /// `A->B.groups`: a regex list (the sandbox's source is shared: other
    /// tests' groups stay out).
    pub groups: String,
    /// More `key = value` lines, written last (they win).
    pub extra: Vec<(String, String)>,
}

impl Mm2Properties {
    /// `(alias, bootstrap)` of each cluster.
    pub fn new(source: (&str, &str), target: (&str, &str), topics: &str, groups: &str) -> Self {
        Mm2Properties {
            source: (source.0.to_owned(), source.1.to_owned()),
            target: (target.0.to_owned(), target.1.to_owned()),
            topics: topics.to_owned(),
            groups: groups.to_owned(),
            extra: Vec::new(),
        }
    }

    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.extra.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn text(&self) -> String {
        let (a, b) = (&self.source.0, &self.target.0);
        let mut out =
            String::from("# MirrorMaker 2 (dedicated mode), written by strait's tests.\n");
        let _ = writeln!(out, "clusters = {a}, {b}");
        let _ = writeln!(out, "{a}.bootstrap.servers = {}", self.source.1);
        let _ = writeln!(out, "{b}.bootstrap.servers = {}", self.target.1);
        let _ = writeln!(out, "{a}->{b}.enabled = true");
        let _ = writeln!(out, "{a}->{b}.topics = {}", self.topics);
        let _ = writeln!(out, "{a}->{b}.groups = {}", self.groups);
        for key in [
            "replication.factor",
            "offset-syncs.topic.replication.factor",
            "checkpoints.topic.replication.factor",
            "heartbeats.topic.replication.factor",
            "config.storage.replication.factor",
            "offset.storage.replication.factor",
            "status.storage.replication.factor",
        ] {
            let _ = writeln!(out, "{key} = 1");
        }
        // No minimum is enforced on these (MirrorSourceConfig,
        // MirrorCheckpointConfig define them without a validator).
        out.push_str(
            "refresh.topics.interval.seconds = 1\n\
             refresh.groups.interval.seconds = 1\n\
             emit.checkpoints.interval.seconds = 1\n\
             emit.heartbeats.interval.seconds = 1\n\
             sync.group.offsets.enabled = false\n",
        );
        for (k, v) in &self.extra {
            let _ = writeln!(out, "{k} = {v}");
        }
        out
    }
}

/// A running MirrorMaker 2 (`compose/mm2.sh`, dedicated mode, running the
/// herders whose target is `target`); killed when dropped.
pub struct MirrorMaker {
    child: Option<Child>,
    pub properties: PathBuf,
    pub log: PathBuf,
    target: String,
}

impl MirrorMaker {
    /// Writes `props` to `dir/{name}.properties` and starts MirrorMaker 2
    /// with it; it logs to `dir/{name}.log`.
    pub fn start(dir: &Path, name: &str, props: &Mm2Properties) -> MirrorMaker {
        std::fs::create_dir_all(dir).unwrap();
        let properties = dir.join(format!("{name}.properties"));
        std::fs::write(&properties, props.text()).unwrap();
        let mut mm = MirrorMaker {
            child: None,
            properties,
            log: dir.join(format!("{name}.log")),
            target: props.target.0.clone(),
        };
        mm.spawn();
        mm
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(repo().join("compose/mm2.sh"))
            .arg(&self.properties)
            .arg(&self.target)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start compose/mm2.sh");
        self.child = Some(child);
    }

    /// Starts it again with the same file (after [`MirrorMaker::stop`]).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "still running");
        self.spawn();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGTERM, as an operator stops it (Connect commits its source
    /// offsets on the way out), and waits for the exit.
    pub fn stop(&mut self, timeout: Duration) -> ExitStatus {
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM failed");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "MirrorMaker 2 did not exit within {timeout:?} of SIGTERM; see {}",
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL (a crash): nothing is committed on the way out. Waits for
    /// the exit.
    pub fn kill(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        c.kill().unwrap();
        c.wait().unwrap()
    }

    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for MirrorMaker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// FNV-1a: a cache key stable across builds and toolchains.
fn fnv(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// The directory holding `Mm2Client.class`, compiled once per source text
/// and jar directory into the tool cache (`javac -cp "LIB/*"`). Parallel
/// tests and processes compile into a directory of their own and rename
/// it into place, so none sees a half-written class.
fn client_classes() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let src = repo().join("tests/mm2_client/Mm2Client.java");
        let text = std::fs::read(&src).unwrap();
        let lib = kafka_lib();
        assert!(
            lib.is_dir(),
            "no Kafka jars at {}; run compose/sandbox.sh install",
            lib.display()
        );
        let key = fnv(
            lib.to_string_lossy().as_bytes(),
            fnv(&text, 0xcbf2_9ce4_8422_2325),
        );
        let dir = tools().join(format!("mm2-client/{key:016x}"));
        if dir.join("Mm2Client.class").is_file() {
            return dir;
        }
        let tmp = tools().join(format!(
            "mm2-client/.build-{}-{key:016x}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).unwrap();
        let out = Command::new("javac")
            .arg("-cp")
            .arg(format!("{}/*", lib.display()))
            .arg("-d")
            .arg(&tmp)
            .arg(&src)
            .output()
            .expect("run javac (Debian: openjdk-17-jdk-headless; scripts/deps.sh installs it)");
        assert!(
            out.status.success(),
            "javac {}: {}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        // Another process may have won the race: its classes are the same.
        if std::fs::rename(&tmp, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        assert!(dir.join("Mm2Client.class").is_file());
        dir
    })
}

/// Runs `Mm2Client ARGS` (see `tests/mm2_client/Mm2Client.java`) and
/// returns its stdout's lines; panics with its stderr if it fails.
pub fn mm2_client(args: &[&str]) -> Vec<String> {
    let classes = client_classes();
    let out = Command::new("java")
        .args(["-Xms32m", "-Xmx128m", "-XX:+UseSerialGC"])
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            repo().join("tests/mm2_client/log4j2.properties").display()
        ))
        .arg("-cp")
        .arg(format!("{}:{}/*", classes.display(), kafka_lib().display()))
        .arg("Mm2Client")
        .args(args)
        .output()
        .expect("run java");
    assert!(
        out.status.success(),
        "Mm2Client {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// What `Mm2Client read` printed for one record of an internal topic,
/// decoded by MirrorMaker 2's own deserializer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mm2Record {
    OffsetSync {
        offset: i64,
        topic: String,
        partition: i32,
        upstream: i64,
        downstream: i64,
    },
    Checkpoint {
        offset: i64,
        group: String,
        topic: String,
        partition: i32,
        upstream: i64,
        downstream: i64,
        metadata: String,
    },
    Heartbeat {
        offset: i64,
        source: String,
        target: String,
        timestamp: i64,
    },
    /// MirrorMaker 2's deserializer threw: the exception.
    Undecodable { offset: i64, error: String },
}

impl Mm2Record {
    pub fn offset(&self) -> i64 {
        match self {
            Mm2Record::OffsetSync { offset, .. }
            | Mm2Record::Checkpoint { offset, .. }
            | Mm2Record::Heartbeat { offset, .. }
            | Mm2Record::Undecodable { offset, .. } => *offset,
        }
    }
}

/// Every record of the one-partition internal topic `topic` (`kind`:
/// `offset-syncs`, `checkpoints` or `heartbeats`), read with
/// `read_committed` from the beginning to the end offset taken first,
/// each decoded by MirrorMaker 2's `deserializeRecord`.
pub fn mm2_read(kind: &str, bootstrap: &str, topic: &str) -> Vec<Mm2Record> {
    mm2_client(&["read", kind, bootstrap, topic])
        .iter()
        .map(|line| {
            let f: Vec<&str> = line.splitn(9, ' ').collect();
            let n = |i: usize| -> i64 { f[i].parse().unwrap_or_else(|_| panic!("{line}")) };
            assert_eq!(f[1], "0", "a one-partition topic: {line}");
            match f[0] {
                "offset-sync" => Mm2Record::OffsetSync {
                    offset: n(2),
                    topic: f[3].to_owned(),
                    partition: n(4) as i32,
                    upstream: n(5),
                    downstream: n(6),
                },
                "checkpoint" => Mm2Record::Checkpoint {
                    offset: n(2),
                    group: f[3].to_owned(),
                    topic: f[4].to_owned(),
                    partition: n(5) as i32,
                    upstream: n(6),
                    downstream: n(7),
                    metadata: f.get(8).unwrap_or(&"").to_string(),
                },
                "heartbeat" => Mm2Record::Heartbeat {
                    offset: n(2),
                    source: f[3].to_owned(),
                    target: f[4].to_owned(),
                    timestamp: n(5),
                },
                "undecodable" => Mm2Record::Undecodable {
                    offset: n(2),
                    error: f[3..].join(" "),
                },
                _ => panic!("Mm2Client read: unexpected line {line:?}"),
            }
        })
        .collect()
}

/// `RemoteClusterUtils.translateOffsets(target, source_alias, group)`:
/// `(remote topic, partition) -> (offset, metadata)`, sorted.
pub fn mm2_translate(
    target: &str,
    source_alias: &str,
    group: &str,
) -> std::collections::BTreeMap<(String, i32), (i64, String)> {
    mm2_client(&["translate", target, source_alias, group])
        .iter()
        .map(|line| {
            let f: Vec<&str> = line.splitn(5, ' ').collect();
            assert!(f.len() == 5 && f[0] == "offset", "{line:?}");
            (
                (f[1].to_owned(), f[2].parse().unwrap()),
                (f[3].parse().unwrap(), f[4].to_owned()),
            )
        })
        .collect()
}
