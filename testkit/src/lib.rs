//! Helpers shared by strait's tests, benchmarks and demo client: records
//! as tests write and read them, producing, consuming, reading commits,
//! the sandbox's addresses, unique names, waiting with a deadline.
//! Works against any bootstrap address: Apache Kafka, tansu or librdkafka's
//! mock cluster (which has no admin API: create its topics through the mock).
//! `mm2` runs Apache Kafka's own MirrorMaker 2 and its client classes.

pub mod acls;
pub mod config;
pub mod load;
pub mod log;
pub mod mm2;
pub mod own_kafka;
pub mod pki;
pub mod process;
pub mod secured;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// The kind of broker a sandbox runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broker {
    /// Apache Kafka 4.3.1 (the default).
    Kafka,
    /// tansu, the second Kafka-compatible broker (`STRAIT_BROKER=tansu`).
    Tansu,
}

/// Addresses of the sandbox started by `compose/sandbox.sh up`.
pub struct Sandbox {
    pub broker: Broker,
    pub source: String,
    pub target: String,
    pub etcd: String,
}

impl Sandbox {
    /// Whether the test should stop here because the sandbox's broker is
    /// tansu and the test needs what tansu lacks: prints the reason (the
    /// test then passes as skipped). Never skips on Kafka.
    pub fn skip_on_tansu(&self, reason: &str) -> bool {
        let skip = self.broker == Broker::Tansu;
        if skip {
            println!("skipped on tansu: {reason}");
        }
        skip
    }
}

/// Reads the sandbox's addresses from `$STRAIT_SANDBOX`, else
/// `compose/.sandbox/env` of the repository.
pub fn sandbox() -> Sandbox {
    let path = std::env::var("STRAIT_SANDBOX")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../compose/.sandbox/env")
        });
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "no sandbox at {} ({e}); start one with `compose/sandbox.sh up` or run `scripts/test.sh`",
            path.display()
        )
    });
    let vars: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    let broker = match vars.get("BROKER").copied() {
        Some("tansu") => Broker::Tansu,
        Some("kafka") | None => Broker::Kafka,
        Some(other) => panic!("{}: BROKER={other}: not kafka or tansu", path.display()),
    };
    Sandbox {
        broker,
        source: vars["SOURCE_BOOTSTRAP"].to_owned(),
        target: vars["TARGET_BOOTSTRAP"].to_owned(),
        etcd: vars.get("ETCD_ENDPOINT").unwrap_or(&"").to_string(),
    }
}

/// The Python of the independent clients' venv (kafka-python, lz4), which
/// `compose/sandbox.sh install` makes.
pub fn clients_python() -> PathBuf {
    std::env::var("STRAIT_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/strait"))
        .join("venv-clients/bin/python")
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

/// Waits for `cond` with a deadline; panics naming `what` when it passes.
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

/// Client settings the tests' clients add for a cluster, by its bootstrap
/// address: a secured cluster's credentials ([`secure`]).
static SECURED: std::sync::Mutex<BTreeMap<String, Vec<(String, String)>>> =
    std::sync::Mutex::new(BTreeMap::new());

/// Makes every client of this crate's helpers that connects to `bootstrap`
/// use `settings` (security.protocol, SASL, TLS), so that the helpers work
/// on a secured cluster as they do on the sandbox's.
pub fn secure(bootstrap: &str, settings: &[(&str, &str)]) {
    SECURED.lock().unwrap().insert(
        bootstrap.to_owned(),
        settings
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
}

/// A client config for `bootstrap`, with its [`secure`] settings if any.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    if let Some(settings) = SECURED.lock().unwrap().get(bootstrap) {
        for (k, v) in settings {
            c.set(k, v);
        }
    }
    c
}

/// Creates a topic through the admin API; an existing one is fine.
pub fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    create_topic_with(bootstrap, name, partitions, &[]);
}

/// Creates a topic with topic-level configs; an existing one is fine.
pub fn create_topic_with(bootstrap: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap).create().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    match rt
        .block_on(admin.create_topics([&topic], &AdminOptions::new()))
        .unwrap()
        .remove(0)
    {
        Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
        Err((_, e)) => panic!("cannot create topic {name}: {e}"),
    }
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
    /// Record `seq` of `partition`: key `k{seq}`, value `p{partition}-{seq}`
    /// (what [`check_sequences`] reads back).
    pub fn seq(partition: i32, seq: usize) -> Rec {
        Rec {
            partition,
            key: Some(format!("k{seq}").into_bytes()),
            value: Some(format!("p{partition}-{seq}").into_bytes()),
            headers: vec![],
            timestamp: None,
        }
    }

    /// Records `seqs` of every partition, interleaved.
    pub fn seqs(partitions: i32, seqs: std::ops::Range<usize>) -> Vec<Rec> {
        seqs.flat_map(|s| (0..partitions).map(move |p| Rec::seq(p, s)))
            .collect()
    }
}

pub type Producer = ThreadedProducer<DefaultProducerContext>;

/// An idempotent producer.
pub fn producer(bootstrap: &str) -> Producer {
    client_config(bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        // Large-record tests write records of several MB.
        .set("message.max.bytes", "16000000")
        .create()
        .unwrap()
}

/// Queues `records`, waiting while the producer's queue is full.
pub fn send(p: &Producer, topic: &str, records: &[Rec]) {
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
                Err(_) => p.poll(Duration::from_millis(5)),
            }
        }
    }
}

/// Writes `records` and waits until they are acknowledged.
pub fn produce(bootstrap: &str, topic: &str, records: &[Rec]) {
    let p = producer(bootstrap);
    send(&p, topic, records);
    p.flush(Duration::from_secs(30)).unwrap();
}

/// Reads `topic` from the beginning until `expect` records arrived (or the
/// deadline), then one second more to catch duplicates. Returns
/// `(offset, record)` in arrival order.
pub fn consume_with_offsets(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expect: usize,
    timeout: Duration,
) -> Vec<(i64, Rec)> {
    let c: BaseConsumer = client_config(bootstrap)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        // librdkafka's default, said: records of aborted or open
        // transactions are never shown (on Kafka; tansu shows aborted ones).
        .set("isolation.level", "read_committed")
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
            out.push((
                m.offset(),
                Rec {
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
                },
            ));
        }
    }
}

/// [`consume_with_offsets`] without the offsets.
pub fn consume(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expect: usize,
    timeout: Duration,
) -> Vec<Rec> {
    consume_with_offsets(bootstrap, topic, partitions, expect, timeout)
        .into_iter()
        .map(|(_, r)| r)
        .collect()
}

/// The positions committed under `group` for `topic`'s partitions.
pub fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
    committed_with_metadata(bootstrap, group, topic, partitions)
        .into_iter()
        .map(|c| c.map(|(offset, _)| offset))
        .collect()
}

/// [`committed`] with each commit's metadata.
pub fn committed_with_metadata(
    bootstrap: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Vec<Option<(i64, String)>> {
    let c: BaseConsumer = client_config(bootstrap)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let got = loop {
        match c.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
            Ok(got) => break got,
            Err(e) if coordinator_moving(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("committed offsets of group {group} on {topic}: {e}"),
        }
    };
    (0..partitions)
        .map(|p| {
            let e = got.find_partition(topic, p)?;
            match e.offset() {
                Offset::Offset(o) => Some((o, e.metadata().to_owned())),
                _ => None,
            }
        })
        .collect()
}

/// Commits `positions` ((partition, next offset)) for `group` on `topic`,
/// as an application that read that far would.
pub fn commit_group(bootstrap: &str, group: &str, topic: &str, positions: &[(i32, i64)]) {
    commit_group_noting(bootstrap, group, topic, positions, "");
}

/// [`commit_group`] with each commit's metadata set to `metadata`.
pub fn commit_group_noting(
    bootstrap: &str,
    group: &str,
    topic: &str,
    positions: &[(i32, i64)],
    metadata: &str,
) {
    let c: BaseConsumer = client_config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for &(p, o) in positions {
        tpl.add_partition_offset(topic, p, Offset::Offset(o))
            .unwrap();
        if let Some(mut e) = tpl.find_partition(topic, p) {
            e.set_metadata(metadata);
        }
    }
    // A fresh cluster's group coordinator may still be loading
    // (`__consumer_offsets` created on first use): a commit is then answered
    // NotCoordinator or CoordinatorLoadInProgress, which an application
    // retries too.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match c.commit(&tpl, rdkafka::consumer::CommitMode::Sync) {
            Ok(()) => return,
            Err(e) if coordinator_moving(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("commit for group {group} on {topic}: {e}"),
        }
    }
}

/// Whether `e` says the group coordinator is moving or loading: retriable.
fn coordinator_moving(e: &rdkafka::error::KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::NotCoordinator
                | RDKafkaErrorCode::CoordinatorLoadInProgress
                | RDKafkaErrorCode::CoordinatorNotAvailable
                | RDKafkaErrorCode::RequestTimedOut
        )
    )
}

/// Checks records made by [`Rec::seq`] for completeness and order: every
/// partition holds sequences `0..per_partition`, in order, where a sequence
/// may repeat only as part of a re-sent suffix. Returns the duplicates.
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
