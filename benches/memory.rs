//! Peak memory of a `strait run` process replicating a backlog at full
//! speed with default settings, for few and for many partitions. Not a
//! test: it prints figures and asserts nothing.
//!
//!   compose/sandbox.sh up
//!   cargo bench --bench memory
//!
//! For each partition count in BENCH_PARTITIONS (default 6,2000): BENCH_MB
//! MB of 1 KB records (default: 400, or 1 MB a partition where that is
//! more: 2,000 MB over 2,000 partitions) spread over that many source
//! partitions (written before strait starts, so it replicates as fast as it
//! can), then strait starts and runs until every partition's progress is
//! committed at its end. Printed: the time that took, MB/s, the process's
//! CPU seconds (user + system, read just before it is stopped) per MB, its
//! peak RSS (VmHWM), and the series one `/metrics` scrape carries (those
//! with a `partition` label apart) with the scrape's size.

use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::ClientConfig;

use strait_controller::native_admin::list_group_offsets;
use strait_testkit::config::ConfigBuilder;
use strait_testkit::process::Strait;
use strait_testkit::{create_topic, producer, sandbox, unique, wait_for};

fn main() {
    let sb = sandbox();
    let counts: Vec<usize> = std::env::var("BENCH_PARTITIONS")
        .unwrap_or_else(|_| "6,2000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mb_env: Option<usize> = std::env::var("BENCH_MB").ok().and_then(|v| v.parse().ok());
    // A consumer with a group.id it never joins, for the group admin call:
    // librdkafka crashes on an AdminClient when it is answered NotCoordinator
    // (controller/src/native_admin/groups.rs).
    let admin: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &sb.source)
        .set("group.id", "strait-bench-group-admin")
        .create()
        .unwrap();
    let mut rows = Vec::new();
    for &partitions in &counts {
        let mb = mb_env.unwrap_or(400.max(partitions));
        let run = unique("mem");
        let per_topic = partitions.min(100);
        let topics = partitions.div_ceil(per_topic);
        let per_partition = (mb * 1000 / partitions).max(1);
        let value = vec![b'x'; 1000];
        let p = producer(&sb.source);
        let mut parts = Vec::new();
        for t in 0..topics {
            let name = format!("{run}-t{t}");
            let n = per_topic.min(partitions - t * per_topic);
            create_topic(&sb.source, &name, n as i32);
            for part in 0..n {
                parts.push((name.clone(), part as i32));
            }
        }
        for i in 0..per_partition {
            for (t, part) in &parts {
                let key = format!("k{i}");
                let mut rec = BaseRecord::to(t).partition(*part).key(&key).payload(&value);
                while let Err((_, back)) = p.send(rec) {
                    std::thread::sleep(Duration::from_millis(2));
                    rec = back;
                }
            }
        }
        p.flush(Duration::from_secs(300)).unwrap();
        drop(p);
        let config = ConfigBuilder::new(&run, &sb.source, &sb.target)
            .flow("topics", [format!("{run}-.*").as_str()])
            .build();
        let dir = std::env::temp_dir().join("strait-bench-memory");
        let started = Instant::now();
        let mut strait = Strait::launch(
            Path::new(env!("CARGO_BIN_EXE_strait")),
            &dir,
            &run,
            &config,
            &[],
        );
        let group = format!("strait.{run}.src-dst");
        wait_for(
            "replication of the backlog",
            Duration::from_secs(900),
            || {
                let req = vec![(group.clone(), None)];
                list_group_offsets(admin.client(), &req, 1, Duration::from_secs(10))
                    .remove(0)
                    .is_ok_and(|ps| {
                        ps.iter()
                            .filter(|(_, o)| o.is_some_and(|o| o.0 == per_partition as i64))
                            .count()
                            == partitions
                    })
            },
        );
        let took = started.elapsed();
        let rss = strait_testkit::process::peak_rss_mb(strait.pid());
        // The cost of per-partition series ([metrics] per_partition, on by
        // default): how many series one scrape carries, and its size.
        let scrape = strait.metrics();
        let series: Vec<&str> = scrape
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        let per_partition_series = series.iter().filter(|l| l.contains("partition=\"")).count();
        let cpu = strait_testkit::process::cpu_seconds(strait.pid());
        strait.stop_with("TERM", Duration::from_secs(60));
        let total_mb = (partitions * per_partition * 1000) as f64 / 1e6;
        rows.push((
            partitions,
            total_mb,
            took,
            cpu,
            rss,
            (series.len(), per_partition_series, scrape.len()),
        ));
    }
    println!("\n| partitions | MB replicated | took (start to last commit) | MB/s | CPU s | CPU s per MB | peak RSS | series (per partition) | scrape |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (p, total, took, cpu, rss, (series, per_part, bytes)) in rows {
        println!(
            "| {p} | {total:.0} | {:.1} s | {:.1} | {cpu:.1} | {:.4} | {rss:.0} MB | {series} ({per_part}) | {:.0} KB |",
            took.as_secs_f64(),
            total / took.as_secs_f64(),
            cpu / total,
            bytes as f64 / 1024.0
        );
    }
}
