//! End-to-end latency beside the one-hop baseline measured in the same run
//! on the same brokers. Not a test: it prints figures and asserts nothing
//! about speed.
//!
//!   compose/sandbox.sh up
//!   cargo bench --bench latency
//!
//! For each rate in BENCH_RATES (MB/s, default 5,50), records of 1 KB with
//! timestamp = send time, for BENCH_SECONDS (default 20) after 3 s of
//! warm-up, over 6 partitions:
//!   1. one hop: one producer writes to a topic on the target, one consumer
//!      reads it there;
//!   2. two hops, plain: the producer writes to the source, a bare
//!      forwarder (one consumer, one producer, both librdkafka defaults but
//!      idempotence, no commits, nothing else) copies each record to the
//!      target as soon as it is read, and the same consumer reads it there:
//!      what the second broker hop costs by itself;
//!   3. strait: the producer writes to the source, a `strait run` process
//!      (default settings; BENCH_STRAIT_TOML is appended to the flow,
//!      BENCH_SOURCE_KAFKA and BENCH_TARGET_KAFKA become the clusters'
//!      `kafka` tables) replicates to the target, and the same consumer
//!      reads the remote topic.
//!
//! Latency is the reading consumer's clock minus the record's timestamp
//! (one machine, one clock). Printed: p50, p99, p99.9 and max.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Timestamp;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use strait_testkit::config::ConfigBuilder;
use strait_testkit::process::Strait;
use strait_testkit::{create_topic, producer, sandbox, unique, wait_for};

const PARTITIONS: i32 = 6;
const SIZE: usize = 1000;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Writes `rate` MB/s of 1 KB records to `topic` for `seconds` (plus the
/// warm-up), paced every 5 ms. Returns how many it wrote.
fn write(bootstrap: &str, topic: &str, rate: f64, seconds: f64, stop: &AtomicBool) -> u64 {
    let p = producer(bootstrap);
    let value = vec![b'x'; SIZE];
    let per_tick = rate * 1e6 / SIZE as f64 / 200.0; // records per 5 ms
    let started = Instant::now();
    let (mut sent, mut owed) = (0u64, 0.0f64);
    let mut tick = 0u64;
    while started.elapsed().as_secs_f64() < seconds && !stop.load(Ordering::Relaxed) {
        owed += per_tick;
        while owed >= 1.0 {
            let rec = BaseRecord::<[u8], [u8]>::to(topic)
                .partition((sent % PARTITIONS as u64) as i32)
                .payload(&value)
                .timestamp(now_ms());
            if p.send(rec).is_err() {
                break; // queue full: the broker is the limit; owed carries over
            }
            sent += 1;
            owed -= 1.0;
        }
        tick += 1;
        let next = started + Duration::from_millis(5 * tick);
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    let _ = p.flush(Duration::from_secs(30));
    sent
}

/// Reads `topic` from its end until `stop`, collecting latencies (ms) of
/// records stamped after `from_ms`.
fn read(bootstrap: &str, topic: &str, from_ms: i64, stop: &AtomicBool) -> Vec<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "strait-bench-latency")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
            let now = now_ms();
            if let Timestamp::CreateTime(ts) = m.timestamp() {
                if ts >= from_ms {
                    out.push(now - ts);
                }
            }
        }
    }
    out
}

/// Copies every record of `from` (source) to `to` (target) as soon as it
/// is read, keeping partition and timestamp, until `stop`.
fn forward(source: &str, from: &str, target: &str, to: &str, stop: &AtomicBool) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", source)
        .set("group.id", "strait-bench-forwarder")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(from, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let p = producer(target);
    while !stop.load(Ordering::Relaxed) {
        let Some(Ok(m)) = c.poll(Duration::from_millis(50)) else {
            continue;
        };
        let mut rec = BaseRecord::<[u8], [u8]>::to(to)
            .partition(m.partition())
            .payload(m.payload().unwrap_or_default());
        if let Timestamp::CreateTime(ts) = m.timestamp() {
            rec = rec.timestamp(ts);
        }
        while let Err((_, back)) = p.send(rec) {
            std::thread::sleep(Duration::from_millis(1));
            rec = back;
        }
    }
    let _ = p.flush(Duration::from_secs(10));
}

struct Figures {
    records: usize,
    p50: i64,
    p99: i64,
    p999: i64,
    max: i64,
}

fn figures(mut v: Vec<i64>) -> Figures {
    v.sort_unstable();
    let at = |q: f64| {
        v.get(((v.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    Figures {
        records: v.len(),
        p50: at(0.5),
        p99: at(0.99),
        p999: at(0.999),
        max: v.last().copied().unwrap_or(0),
    }
}

/// Writes to `write_to` on `write_bootstrap` and reads `read_from` on the
/// target: the latencies after the warm-up.
fn measure(
    write_bootstrap: &str,
    write_to: &str,
    target: &str,
    read_from: &str,
    rate: f64,
    seconds: f64,
) -> (Figures, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let from_ms = now_ms() + 3000;
    let reader = {
        let (stop, target, topic) = (stop.clone(), target.to_owned(), read_from.to_owned());
        std::thread::spawn(move || read(&target, &topic, from_ms, &stop))
    };
    let sent = write(write_bootstrap, write_to, rate, seconds + 3.0, &stop);
    // What is still in flight arrives within a few seconds.
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    (figures(reader.join().unwrap()), sent)
}

fn main() {
    let sb = sandbox();
    let rates: Vec<f64> = std::env::var("BENCH_RATES")
        .unwrap_or_else(|_| "5,50".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let seconds: f64 = env_or("BENCH_SECONDS", 20.0);
    let var = |name: &str| std::env::var(name).unwrap_or_default().replace("\\n", "\n");
    let extra = var("BENCH_STRAIT_TOML");
    let kafka = |name: &str| {
        let v = var(name);
        if v.is_empty() {
            String::new()
        } else {
            format!("kafka = {{ {v} }}")
        }
    };
    let (source_kafka, target_kafka) = (kafka("BENCH_SOURCE_KAFKA"), kafka("BENCH_TARGET_KAFKA"));
    let run = unique("lat");
    let deployment = run.clone();
    let config = ConfigBuilder::new(&deployment, &sb.source, &sb.target)
        .source_raw(&source_kafka)
        .target_raw(&target_kafka)
        .flow("topics", [format!("{run}-.*").as_str()])
        .flow_raw(&extra)
        .build();
    let dir = std::env::temp_dir().join("strait-bench-latency");
    let mut strait = Strait::launch(
        Path::new(env!("CARGO_BIN_EXE_strait")),
        &dir,
        &run,
        &config,
        &[],
    );
    let mut rows = Vec::new();
    for &rate in &rates {
        let hop = format!("{run}-hop-{rate}");
        create_topic(&sb.target, &hop, PARTITIONS);
        let baseline = measure(&sb.target, &hop, &sb.target, &hop, rate, seconds);
        // Two hops through a bare forwarder (its topics are not strait's).
        let (pipe_src, pipe_dst) = (
            format!("pipe-{run}-{rate}"),
            format!("pipe-{run}-{rate}-copy"),
        );
        create_topic(&sb.source, &pipe_src, PARTITIONS);
        create_topic(&sb.target, &pipe_dst, PARTITIONS);
        let stop_pipe = Arc::new(AtomicBool::new(false));
        let pipe = {
            let (stop, source, target) = (stop_pipe.clone(), sb.source.clone(), sb.target.clone());
            let (from, to) = (pipe_src.clone(), pipe_dst.clone());
            std::thread::spawn(move || forward(&source, &from, &target, &to, &stop))
        };
        let piped = measure(&sb.source, &pipe_src, &sb.target, &pipe_dst, rate, seconds);
        stop_pipe.store(true, Ordering::Relaxed);
        pipe.join().unwrap();
        let src = format!("{run}-src-{rate}");
        create_topic(&sb.source, &src, PARTITIONS);
        let remote = format!("src.{src}");
        // strait picks the topic up (discovery) and creates the remote one.
        wait_for("the remote topic", Duration::from_secs(60), || {
            strait
                .metrics()
                .contains(&format!("topic=\"{src}\",partition=\"{}\"", PARTITIONS - 1))
        });
        let through = measure(&sb.source, &src, &sb.target, &remote, rate, seconds);
        rows.push((rate, baseline, piped, through));
    }
    strait.stop_with("TERM", Duration::from_secs(60));
    println!(
        "\nlatency: 1 KB records over {PARTITIONS} partitions, {seconds} s per measurement after 3 s of warm-up; ms"
    );
    println!("| rate | path | records | p50 | p99 | p99.9 | max | added p50 | added p99 |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (rate, (b, bs), (f, fs), (s, ss)) in rows {
        println!(
            "| {rate} MB/s | one hop | {} of {bs} | {} | {} | {} | {} | | |",
            b.records, b.p50, b.p99, b.p999, b.max
        );
        println!(
            "| {rate} MB/s | two hops, bare forwarder | {} of {fs} | {} | {} | {} | {} | {} | {} |",
            f.records,
            f.p50,
            f.p99,
            f.p999,
            f.max,
            f.p50 - b.p50,
            f.p99 - b.p99
        );
        println!(
            "| {rate} MB/s | strait | {} of {ss} | {} | {} | {} | {} | {} | {} |",
            s.records,
            s.p50,
            s.p99,
            s.p999,
            s.max,
            s.p50 - b.p50,
            s.p99 - b.p99
        );
    }
}
