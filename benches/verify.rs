//! How fast `strait verify` compares, on the sandbox's brokers. Not a test:
//! it prints figures and asserts nothing about speed.
//!
//!   compose/sandbox.sh up
//!   cargo bench --bench verify
//!
//! BENCH_RECORDS (default 200,000) records of BENCH_VALUE bytes (default
//! 200) go to a 4-partition topic, strait replicates them, and `strait
//! verify --last BENCH_RECORDS` compares every one. Printed: the median
//! wall time of BENCH_RUNS (default 3) verifications, records per second,
//! and MB per second of source values, beside how long one consumer takes
//! to read the source alone (the broker's own ceiling for half the work).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::producer::{BaseRecord, Producer as _};
use strait_testkit::config::ConfigBuilder;
use strait_testkit::process::Strait;
use strait_testkit::{committed, consume, create_topic, producer, sandbox, unique, wait_for};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let sb = sandbox();
    let records: usize = env_or("BENCH_RECORDS", 200_000);
    let value_len: usize = env_or("BENCH_VALUE", 200);
    let runs: usize = env_or("BENCH_RUNS", 3);
    const PARTS: i32 = 4;
    let run = unique("vb");
    let topic = format!("{run}-t");
    create_topic(&sb.source, &topic, PARTS);
    let p = producer(&sb.source);
    let value = vec![b'v'; value_len];
    for i in 0..records {
        let key = format!("k{i}");
        let mut rec = BaseRecord::to(&topic)
            .partition((i % PARTS as usize) as i32)
            .key(&key)
            .payload(&value);
        while let Err((_, back)) = p.send(rec) {
            std::thread::sleep(Duration::from_millis(2));
            rec = back;
        }
    }
    p.flush(Duration::from_secs(300)).unwrap();
    let config = ConfigBuilder::new(&run, &sb.source, &sb.target)
        .flow("topics", [topic.as_str()])
        .build();
    let dir = std::env::temp_dir().join("strait-bench-verify");
    let strait = Strait::launch(
        Path::new(env!("CARGO_BIN_EXE_strait")),
        &dir,
        &run,
        &config,
        &[],
    );
    let per = (records / PARTS as usize) as i64;
    wait_for("replicated", Duration::from_secs(900), || {
        committed(&sb.source, &format!("strait.{run}.src-dst"), &topic, PARTS)
            .iter()
            .all(|c| *c == Some(per))
    });

    let read = Instant::now();
    let got = consume(&sb.source, &topic, PARTS, records, Duration::from_secs(600));
    let baseline = read.elapsed().as_secs_f64();
    assert_eq!(got.len(), records);

    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_strait"))
            .args(["verify", "--config", strait.config_path().to_str().unwrap()])
            .args([
                "--flow",
                "src-dst",
                "--topic",
                &topic,
                "--last",
                &records.to_string(),
            ])
            .output()
            .unwrap();
        times.push(t.elapsed().as_secs_f64());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let secs = median(times);
    let mb = (records * value_len) as f64 / 1e6;
    println!(
        "verify bench: {records} records of {value_len} B in {PARTS} partitions, median of {runs}"
    );
    println!(
        "  strait verify: {secs:.2} s, {:.0} records/s, {:.1} MB/s of values (both sides read)",
        records as f64 / secs,
        mb / secs
    );
    println!(
        "  baseline, one consumer reading the source alone: {baseline:.2} s, {:.0} records/s",
        records as f64 / baseline
    );
}
