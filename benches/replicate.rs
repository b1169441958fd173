//! Replication throughput beside the ceiling measured in the same run on the
//! same brokers. Not a test: it prints figures and asserts nothing about speed.
//!
//!   compose/sandbox.sh up
//!   cargo bench --bench replicate
//!
//! Each run, on fresh topics:
//!   1. producer alone: one producer (strait's settings: idempotent, acks=all)
//!      writes the load to a topic on the *target* cluster;
//!   2. the load is written to the source (setup, not timed);
//!   3. consumer alone: one consumer (manual assignment) reads the load from
//!      the source;
//!   4. strait: the worker's data plane replicates the load source -> target,
//!      timed from start until the target acknowledged every record.
//!
//! Figures are medians over the runs. Knobs (environment): BENCH_RECORDS
//! (default 500000), BENCH_SIZE bytes per value (512), BENCH_PARTITIONS (6),
//! BENCH_RUNS (5).

use std::collections::BTreeSet;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use strait_common::config::Config;
use strait_common::coord::lease::Fence;
use strait_common::model::{TopicPartition, Unit};
use strait_testkit::config::ConfigBuilder;
use strait_testkit::create_topic;
use strait_testkit::load::json_values;
use strait_worker::{run_flow, Assignment, FlowSpec, StatusBoard, UnitLink};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Load {
    records: usize,
    size: usize,
    partitions: i32,
}

impl Load {
    fn bytes(&self) -> f64 {
        // key ("k" + up to 8 digits) is small; count value bytes plus key.
        (self.records * (self.size + 8)) as f64
    }
}

/// Remembers when the first delivery report arrived.
#[derive(Default)]
struct FirstDelivery(OnceLock<Instant>);

impl ClientContext for FirstDelivery {}

impl ProducerContext for FirstDelivery {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {
        self.0.get_or_init(Instant::now);
    }
}

/// Start-up (until the first record is through) and steady part (first
/// record to last) of one measurement.
#[derive(Clone, Copy)]
struct Timing {
    startup: Duration,
    steady: Duration,
}

impl Timing {
    fn new(start: Instant, first: Instant, end: Instant) -> Timing {
        Timing {
            startup: first - start,
            steady: end - first,
        }
    }
    fn total(&self) -> Duration {
        self.startup + self.steady
    }
}

/// Writes the load with strait's producer settings.
fn produce(bootstrap: &str, topic: &str, load: &Load) -> Timing {
    produce_values(bootstrap, topic, load, &[vec![b'v'; load.size]])
}

/// Writes the load with strait's producer settings, cycling through `values`.
fn produce_values(bootstrap: &str, topic: &str, load: &Load, values: &[Vec<u8>]) -> Timing {
    produce_with(bootstrap, topic, load, values, "none", None)
}

/// [`produce_values`] with a codec and, given an interval, in transactions
/// committed at that interval (as an exactly-once flow's producer writes).
fn produce_with(
    bootstrap: &str,
    topic: &str,
    load: &Load,
    values: &[Vec<u8>],
    compression: &str,
    transactions: Option<Duration>,
) -> Timing {
    let start = Instant::now();
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "0")
        .set("compression.type", compression)
        .set("queue.buffering.max.kbytes", "524288")
        .set("queue.buffering.max.messages", "2000000");
    if transactions.is_some() {
        c.set("transactional.id", format!("{topic}-txn"))
            .set("transaction.timeout.ms", "60000")
            .set("message.timeout.ms", "60000");
    }
    let p: ThreadedProducer<FirstDelivery> =
        c.create_with_context(FirstDelivery::default()).unwrap();
    let minute = Duration::from_secs(60);
    let mut next_commit = transactions.map(|every| {
        p.init_transactions(minute).unwrap();
        p.begin_transaction().unwrap();
        Instant::now() + every
    });
    // Progress in each transaction, as an exactly-once replicator commits
    // it: offsets of a group (never joined) sent to the transaction.
    let progress: Option<BaseConsumer> = transactions.map(|_| {
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", format!("{topic}-progress"))
            .create()
            .unwrap()
    });
    let commit = |sent: usize| {
        if let Some(c) = &progress {
            let mut tpl = TopicPartitionList::new();
            for part in 0..load.partitions {
                tpl.add_partition_offset(
                    topic,
                    part,
                    Offset::Offset((sent / load.partitions as usize) as i64),
                )
                .unwrap();
            }
            p.send_offsets_to_transaction(&tpl, &c.group_metadata().unwrap(), minute)
                .unwrap();
        }
        p.commit_transaction(minute).unwrap();
    };
    for i in 0..load.records {
        let key = format!("k{i}");
        let mut rec = BaseRecord::to(topic)
            .partition((i % load.partitions as usize) as i32)
            .key(&key)
            .payload(&values[i % values.len()]);
        while let Err((_, back)) = p.send(rec) {
            p.poll(Duration::from_millis(1));
            rec = back;
        }
        if let (Some(next), Some(every)) = (next_commit.as_mut(), transactions) {
            if Instant::now() >= *next {
                commit(i);
                p.begin_transaction().unwrap();
                *next = Instant::now() + every;
            }
        }
    }
    match transactions {
        Some(_) => commit(load.records),
        None => p.flush(Duration::from_secs(300)).unwrap(),
    }
    let end = Instant::now();
    Timing::new(start, *p.context().0.get().unwrap(), end)
}

/// Reads the whole load with one manually assigned consumer.
fn consume(bootstrap: &str, topic: &str, load: &Load) -> Timing {
    let start = Instant::now();
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "strait-bench-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..load.partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut n = 0;
    let mut first = None;
    let deadline = Instant::now() + Duration::from_secs(300);
    while n < load.records {
        assert!(Instant::now() < deadline, "consumer read only {n} records");
        if let Some(Ok(_)) = c.poll(Duration::from_millis(100)) {
            first.get_or_insert_with(Instant::now);
            n += 1;
        }
    }
    Timing::new(start, first.unwrap(), Instant::now())
}

/// One replication to measure.
struct Job<'a> {
    source: &'a str,
    target: &'a str,
    topic: &'a str,
    remote: &'a str,
    load: &'a Load,
    run: usize,
    compression: &'a str,
    /// An exactly-once flow, with this transaction interval (`500ms`).
    exactly_once: Option<&'a str>,
    /// Keep the data plane up 1.5 s after the last acknowledgement, so its
    /// statistics report the bytes it sent.
    settle: bool,
}

/// Replicates the load with the worker's data plane, in process: its timing
/// and the CPU seconds used until the last acknowledgement.
fn replicate(rt: &tokio::runtime::Runtime, job: &Job) -> (Timing, f64) {
    let Job {
        source,
        target,
        topic,
        remote,
        load,
        run,
        compression,
        exactly_once,
        settle,
    } = *job;
    let worker = std::env::var("BENCH_WORKER_TOML")
        .unwrap_or_default()
        .replace("\\n", "\n");
    let deployment = format!("bench{run}-{}-{compression}", std::process::id());
    let text = ConfigBuilder::new(&deployment, source, target)
        .no_metrics_endpoint()
        .flow("compression", compression)
        .flow("exactly_once", exactly_once.is_some())
        .flow("transaction_interval", exactly_once.unwrap_or("500ms"))
        .flow_raw(&worker)
        .build();
    let config = Config::parse(&text).unwrap();
    let flow = config.flows[0].clone();
    let units: BTreeSet<Unit> = (0..load.partitions)
        .map(|p| Unit {
            flow: flow.name.clone(),
            source: TopicPartition {
                topic: topic.to_owned(),
                partition: p,
            },
            remote_topic: remote.to_owned(),
        })
        .collect();
    let spec = FlowSpec::new(&config, flow);
    let status = StatusBoard::default();
    let shutdown = CancellationToken::new();
    let (link, _tx, _held) = UnitLink::new(Fence::always_open());
    _tx.send_replace(Assignment {
        generation: 1,
        units,
    });
    let (start, cpu0) = (
        Instant::now(),
        strait_testkit::process::cpu_seconds(std::process::id()),
    );
    let task = rt.spawn(run_flow(spec, link, status.clone(), shutdown.clone()));
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut first = None;
    while status.acknowledged_records() < load.records as u64 {
        if Instant::now() > deadline {
            for (u, s) in status.snapshot() {
                eprintln!("{u}: {s:?}");
            }
            panic!(
                "replicated only {} of {} records",
                status.acknowledged_records(),
                load.records
            );
        }
        if status.acknowledged_records() > 0 {
            first.get_or_insert_with(Instant::now);
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let timing = Timing::new(start, first.unwrap_or_else(Instant::now), Instant::now());
    let cpu = strait_testkit::process::cpu_seconds(std::process::id()) - cpu0;
    if settle {
        // The producer's statistics (every second) report the bytes sent.
        std::thread::sleep(Duration::from_millis(1500));
    }
    shutdown.cancel();
    rt.block_on(task).unwrap().unwrap();
    (timing, cpu)
}

fn median(v: &[Timing], f: impl Fn(&Timing) -> Duration) -> Duration {
    let mut v: Vec<Duration> = v.iter().map(f).collect();
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes --bench; nothing else is accepted.
    let load = Load {
        records: env_or("BENCH_RECORDS", 500_000),
        size: env_or("BENCH_SIZE", 512),
        partitions: env_or("BENCH_PARTITIONS", 6) as i32,
    };
    let runs = env_or("BENCH_RUNS", 5).max(1);
    // The same metrics recorder as `strait run`, so the data plane pays what it pays in production.
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("metrics recorder");
    let sb = strait_testkit::sandbox();
    let (source, target) = (sb.source, sb.target);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();

    // As discovery would (the data plane never creates topics); it may exist from an earlier run.
    create_topic(&source, "mm2-offset-syncs.dst.internal", 1);
    let (mut prod, mut cons, mut repl, mut both) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..runs {
        let base = format!("bench-{stamp}-{run}");
        let (src_topic, ceiling_topic, remote) = (
            base.clone(),
            format!("{base}-ceiling"),
            format!("src.{base}"),
        );
        create_topic(&target, &ceiling_topic, load.partitions);
        prod.push(produce(&target, &ceiling_topic, &load));
        create_topic(&source, &src_topic, load.partitions);
        produce(&source, &src_topic, &load);
        cons.push(consume(&source, &src_topic, &load));
        // Both at once, uncoupled: what this machine allows when reading and
        // writing at the same time, as replication does.
        let both_topic = format!("{base}-both");
        create_topic(&target, &both_topic, load.partitions);
        let started = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| produce(&target, &both_topic, &load));
            s.spawn(|| consume(&source, &src_topic, &load));
        });
        both.push(started.elapsed());
        create_topic(&target, &remote, load.partitions);
        // No compression here: the producer alone does not compress either.
        let job = Job {
            source: &source,
            target: &target,
            topic: &src_topic,
            remote: &remote,
            load: &load,
            run,
            compression: "none",
            exactly_once: None,
            settle: false,
        };
        repl.push(replicate(&rt, &job).0);
        eprintln!(
            "run {run}: producer {:.2?}+{:.2?}, consumer {:.2?}+{:.2?}, strait {:.2?}+{:.2?} (start-up + steady)",
            prod[run].startup, prod[run].steady, cons[run].startup, cons[run].steady, repl[run].startup, repl[run].steady
        );
    }
    let mb = load.bytes() / 1e6;
    println!(
        "\nload: {} records x {} B values in {} partitions ({:.1} MB), {:?} brokers, median of {runs} run(s)",
        load.records, load.size, load.partitions, mb, sb.broker
    );
    println!("steady = first record through to last; start-up = client start to first record");
    println!(
        "{:<18} {:>13} {:>16} {:>12} {:>12}",
        "", "steady MB/s", "steady records/s", "start-up s", "total MB/s"
    );
    let row = |name: &str, t: &[Timing]| {
        let steady = median(t, |t| t.steady).as_secs_f64();
        let startup = median(t, |t| t.startup).as_secs_f64();
        let total = median(t, Timing::total).as_secs_f64();
        println!(
            "{name:<18} {:>13.1} {:>16.0} {:>12.2} {:>12.1}",
            mb / steady,
            load.records as f64 / steady,
            startup,
            mb / total
        );
        steady
    };
    let p = row("producer alone", &prod);
    let c = row("consumer alone", &cons);
    let r = row("strait replicate", &repl);
    let ceiling = p.max(c);
    println!(
        "strait's steady rate is {:.0}% of the slower ceiling (the {} alone)",
        100.0 * ceiling / r,
        if p >= c { "producer" } else { "consumer" }
    );
    both.sort();
    let both = both[both.len() / 2].as_secs_f64();
    let total = median(&repl, Timing::total).as_secs_f64();
    println!(
        "consumer and producer at once, uncoupled, take {both:.2} s in all ({:.1} MB/s); strait takes {total:.2} s ({:.0}% of that rate)",
        mb / both,
        100.0 * both / total
    );
    codecs(&rt, &source, &target, &load, runs, stamp, &metrics);
    modes(&rt, &source, &target, &load, runs, stamp);
}

fn counter(metrics: &metrics_exporter_prometheus::PrometheusHandle, name: &str) -> f64 {
    metrics
        .render()
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The target producer's codecs on JSON records (BENCH_CODECS, default
/// none,lz4,zstd): steady MB/s, CPU seconds per MB of records, and the
/// bytes sent to the target, median of the runs.
fn codecs(
    rt: &tokio::runtime::Runtime,
    source: &str,
    target: &str,
    load: &Load,
    runs: usize,
    stamp: u64,
    metrics: &metrics_exporter_prometheus::PrometheusHandle,
) {
    let codecs = std::env::var("BENCH_CODECS").unwrap_or_else(|_| "none,lz4,zstd".into());
    let values = json_values(load.size);
    let mb = values_mb(load, &values);
    println!(
        "\ncodecs: {} JSON records of about {} B ({mb:.1} MB), median of {runs} run(s)",
        load.records, load.size
    );
    println!(
        "{:<8} {:>13} {:>14} {:>20} {:>8}",
        "codec", "steady MB/s", "CPU s per MB", "MB sent to target", "ratio"
    );
    for codec in codecs.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let (mut rates, mut cpus, mut sent) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..runs {
            let sent0 = counter(metrics, "strait_target_bytes_sent_total");
            let (t, cpu) = json_run(rt, source, target, load, &values, run, stamp, codec, None);
            let rate = values_mb(load, &values) / t.steady.as_secs_f64();
            rates.push(rate);
            cpus.push(cpu);
            sent.push((counter(metrics, "strait_target_bytes_sent_total") - sent0) / 1e6);
        }
        let (rate, cpu, sent) = (
            median_of(&mut rates),
            median_of(&mut cpus),
            median_of(&mut sent),
        );
        println!(
            "{codec:<8} {rate:>13.1} {cpu:>14.4} {sent:>20.1} {:>7.2}x",
            mb / sent.max(1e-9)
        );
    }
}

fn median_of(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One replication of the JSON load on fresh topics: steady MB/s and CPU
/// seconds per MB. The settle time lets the producer's statistics report
/// the bytes it sent.
#[allow(clippy::too_many_arguments)]
fn json_run(
    rt: &tokio::runtime::Runtime,
    source: &str,
    target: &str,
    load: &Load,
    values: &[Vec<u8>],
    run: usize,
    stamp: u64,
    compression: &str,
    exactly_once: Option<&str>,
) -> (Timing, f64) {
    let base = format!(
        "bench-{stamp}-{compression}-{}-{run}",
        exactly_once.unwrap_or("alo")
    );
    let remote = format!("src.{base}");
    create_topic(source, &base, load.partitions);
    produce_values(source, &base, load, values);
    create_topic(target, &remote, load.partitions);
    let mb = values_mb(load, values);
    let job = Job {
        source,
        target,
        topic: &base,
        remote: &remote,
        load,
        run,
        compression,
        exactly_once,
        settle: true,
    };
    let (t, cpu) = replicate(rt, &job);
    (t, cpu / mb)
}

/// MB of the JSON load's records (value and an 8-byte key each).
fn values_mb(load: &Load, values: &[Vec<u8>]) -> f64 {
    let raw: usize = (0..load.records)
        .map(|i| values[i % values.len()].len() + 8)
        .sum();
    raw as f64 / 1e6
}

/// At-least-once beside exactly-once (BENCH_MODES, default
/// `alo,eos:500ms,eos:2s`: `eos:` with a transaction interval), on the same
/// JSON records with the default codec: steady MB/s and CPU seconds per MB,
/// median of the runs. Latency is the latency benchmark's
/// (`BENCH_STRAIT_TOML="exactly_once = true"`).
fn modes(
    rt: &tokio::runtime::Runtime,
    source: &str,
    target: &str,
    load: &Load,
    runs: usize,
    stamp: u64,
) {
    let modes = std::env::var("BENCH_MODES").unwrap_or_else(|_| "alo,eos:500ms,eos:2s".into());
    let values = json_values(load.size);
    let mb = values_mb(load, &values);
    println!(
        "\nmodes: {} JSON records of about {} B ({mb:.1} MB), lz4, median of {runs} run(s)",
        load.records, load.size
    );
    println!(
        "{:<28} {:>8} {:>12} {:>13} {:>9}",
        "mode", "MB/s", "steady MB/s", "CPU s per MB", "pair MB/s"
    );
    let mut alo_rate = None;
    for mode in modes.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let eos = mode.strip_prefix("eos:");
        let interval =
            eos.map(|i| humantime::parse_duration(i).expect("BENCH_MODES: eos:<interval>"));
        let (mut steady, mut rates, mut cpus, mut pairs) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for run in 0..runs {
            let (t, cpu) = json_run(rt, source, target, load, &values, run, stamp, "lz4", eos);
            steady.push(mb / t.steady.as_secs_f64());
            rates.push(mb / t.total().as_secs_f64());
            cpus.push(cpu);
            // What the brokers and this machine allow for this mode: the
            // same source records read by one consumer while one producer
            // writes them to the target with the same codec (in
            // transactions of the same interval, with offsets in each, for
            // exactly-once), at once and uncoupled.
            let mode = eos.unwrap_or("alo");
            let read = format!("bench-{stamp}-lz4-{mode}-{run}");
            let write = format!("bench-{stamp}-pair-{mode}-{run}");
            create_topic(target, &write, load.partitions);
            let started = Instant::now();
            std::thread::scope(|s| {
                s.spawn(|| produce_with(target, &write, load, &values, "lz4", interval));
                s.spawn(|| consume(source, &read, load));
            });
            pairs.push(mb / started.elapsed().as_secs_f64());
        }
        let (steady, rate, cpu, pair) = (
            median_of(&mut steady),
            median_of(&mut rates),
            median_of(&mut cpus),
            median_of(&mut pairs),
        );
        let name = match eos {
            Some(interval) => format!("exactly-once, {interval} txns"),
            None => {
                alo_rate = Some(rate);
                "at-least-once".to_owned()
            }
        };
        let ratio = match (eos, alo_rate) {
            (Some(_), Some(a)) => format!("   {:.2}x at-least-once", rate / a),
            _ => String::new(),
        };
        println!(
            "{name:<28} {rate:>8.1} {steady:>12.1} {cpu:>13.4} {pair:>9.1}   {:.2}x its pair{ratio}",
            rate / pair
        );
    }
}
