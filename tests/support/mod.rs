//! Shared by the end-to-end tests: the sandbox's addresses, unique names,
//! a `strait` process that is always stopped, and Kafka helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// Addresses of the sandbox started by `compose/sandbox.sh up`.
pub struct Sandbox {
    pub source: String,
    pub target: String,
}

pub fn sandbox() -> Sandbox {
    let path = std::env::var("STRAIT_SANDBOX")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("compose/.sandbox/env"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "no sandbox at {} ({e}); start one with `compose/sandbox.sh up` or run `scripts/test.sh`",
            path.display()
        )
    });
    let vars: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    Sandbox {
        source: vars["SOURCE_BOOTSTRAP"].to_owned(),
        target: vars["TARGET_BOOTSTRAP"].to_owned(),
    }
}

/// A name no other test (or earlier run on the same brokers) uses.
pub fn unique(what: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        % 100_000_000;
    format!(
        "{what}-{}-{t}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits for `cond` with a deadline; panics with `what` when it passes.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A `strait run` process; killed when dropped, so a failing test leaves
/// nothing behind.
pub struct Strait {
    child: Option<Child>,
    pub metrics_port: u16,
    pub log: PathBuf,
    config: PathBuf,
}

impl Strait {
    /// Writes `config` (with `{metrics}` replaced by a free port) and starts strait.
    pub fn start(name: &str, config: &str) -> Strait {
        let dir = std::env::temp_dir().join("strait-tests");
        std::fs::create_dir_all(&dir).unwrap();
        let metrics_port = free_port();
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(
            &path,
            config.replace("{metrics}", &format!("127.0.0.1:{metrics_port}")),
        )
        .unwrap();
        let mut s = Strait {
            child: None,
            metrics_port,
            log: dir.join(format!("{name}.log")),
            config: path,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_strait"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("STRAIT_LOG", "info,librdkafka=warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let port = self.metrics_port;
        wait_for("strait's /health", Duration::from_secs(20), || {
            http_get(port, "/health").is_some_and(|b| b.starts_with("ok"))
        });
    }

    /// Starts strait again with the same config and metrics port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "still running");
        self.spawn();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends `signal` (TERM, KILL, STOP, CONT) with the real `kill`.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} failed");
    }

    /// Sends `signal` and waits for the process to end, with a deadline.
    pub fn stop_with(&mut self, signal: &str, timeout: Duration) -> ExitStatus {
        self.signal(signal);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "strait did not exit within {timeout:?} of SIG{signal}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn metrics(&self) -> String {
        http_get(self.metrics_port, "/metrics").unwrap_or_default()
    }

    /// The value of one metric series, e.g. `strait_units{flow="a-b",state="failed"}`.
    pub fn metric(&self, series: &str) -> Option<f64> {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Strait {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}

/// A minimal config for one flow `src -> dst` replicating topics matching `topics`.
pub fn config(
    sb: &Sandbox,
    deployment: &str,
    topics: &str,
    extra_flow: &str,
    extra: &str,
) -> String {
    format!(
        r#"
deployment = "{deployment}"
[clusters.src]
bootstrap = "{source}"
[clusters.dst]
bootstrap = "{target}"
[[flows]]
source = "src"
target = "dst"
topics = ["{topics}"]
{extra_flow}
[worker]
commit_interval = "200ms"
offset_sync_interval = "500ms"
drain_timeout = "10s"
restart_backoff = "500ms"
[discovery]
interval = "1s"
[metrics]
listen = "{{metrics}}"
{extra}
"#,
        source = sb.source,
        target = sb.target,
    )
}

pub fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let res = rt
        .block_on(admin.create_topics([&topic], &AdminOptions::new()))
        .unwrap();
    res.into_iter().next().unwrap().unwrap();
}

/// A record as a test writes and reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp: Option<i64>,
}

impl Rec {
    pub fn seq(partition: i32, seq: usize) -> Rec {
        Rec {
            partition,
            key: Some(format!("k{seq}").into_bytes()),
            value: Some(format!("p{partition}-{seq}").into_bytes()),
            headers: vec![],
            timestamp: None,
        }
    }
}

pub fn producer(bootstrap: &str) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap()
}

pub fn produce(bootstrap: &str, topic: &str, records: &[Rec]) {
    let p = producer(bootstrap);
    send(&p, topic, records);
    p.flush(Duration::from_secs(30)).unwrap();
}

pub fn send(p: &ThreadedProducer<DefaultProducerContext>, topic: &str, records: &[Rec]) {
    for r in records {
        loop {
            let mut rec = BaseRecord::<[u8], [u8]>::to(topic).partition(r.partition);
            if let Some(k) = &r.key {
                rec = rec.key(k);
            }
            if let Some(v) = &r.value {
                rec = rec.payload(v);
            }
            if let Some(ts) = r.timestamp {
                rec = rec.timestamp(ts);
            }
            if !r.headers.is_empty() {
                let mut h = OwnedHeaders::new();
                for (k, v) in &r.headers {
                    h = h.insert(Header {
                        key: k,
                        value: v.as_deref(),
                    });
                }
                rec = rec.headers(h);
            }
            match p.send(rec) {
                Ok(()) => break,
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
}

/// Reads `topic` from the beginning until `expect` records arrived (or the
/// deadline), then a short while more to catch duplicates.
pub fn consume(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expect: usize,
    timeout: Duration,
) -> Vec<Rec> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let mut deadline = Instant::now() + timeout;
    let mut extra = false;
    loop {
        if out.len() >= expect && !extra {
            extra = true;
            deadline = Instant::now() + Duration::from_secs(1);
        }
        if Instant::now() >= deadline {
            return out;
        }
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            out.push(Rec {
                partition: m.partition(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default(),
                timestamp: m.timestamp().to_millis(),
            });
        }
    }
}

/// The position committed under `group` for `topic`'s partitions on `bootstrap`.
pub fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let Ok(got) = c.committed_offsets(tpl, Duration::from_secs(10)) else {
        return vec![None; partitions as usize];
    };
    (0..partitions)
        .map(|p| match got.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        })
        .collect()
}

/// Checks sequenced records (`p{partition}-{seq}` values) for completeness
/// and order: a sequence may only repeat as a re-sent suffix. Returns the
/// number of duplicates.
pub fn check_sequences(records: &[Rec], partitions: i32, per_partition: usize) -> usize {
    let mut by_part: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for r in records {
        let v = String::from_utf8(r.value.clone().unwrap()).unwrap();
        let (part, seq) = v.trim_start_matches('p').split_once('-').unwrap();
        assert_eq!(
            part.parse::<i32>().unwrap(),
            r.partition,
            "{v} landed in partition {}",
            r.partition
        );
        by_part
            .entry(r.partition)
            .or_default()
            .push(seq.parse().unwrap());
    }
    let mut dups = 0;
    for p in 0..partitions {
        let seqs = by_part.remove(&p).unwrap_or_default();
        let mut high: Option<usize> = None;
        for &s in &seqs {
            match high {
                Some(h) if s <= h => dups += 1,
                Some(h) => {
                    assert_eq!(
                        s,
                        h + 1,
                        "partition {p}: a gap after {h} (next {s}): records lost"
                    );
                    high = Some(s);
                }
                None => {
                    assert_eq!(s, 0, "partition {p} starts at {s}: records lost");
                    high = Some(s);
                }
            }
        }
        assert_eq!(
            high.map_or(0, |h| h + 1),
            per_partition,
            "partition {p}: records missing at the end"
        );
    }
    dups
}
