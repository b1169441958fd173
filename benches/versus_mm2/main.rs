//! strait beside Apache Kafka's MirrorMaker 2, on the same two Apache Kafka
//! clusters and the same workload, one tool after the other on fresh
//! topics and groups. Not a test of speed: it prints one table and asserts
//! nothing about who is faster. It fails (non-zero exit) if a tool did not
//! replicate everything or a figure could not be taken, so the comparison
//! cannot rot.
//!
//!   STRAIT_SANDBOX_DIR=/tmp/sbx compose/sandbox.sh up
//!   STRAIT_SANDBOX=/tmp/sbx/env cargo bench --bench versus_mm2
//!   BENCH_QUICK=1 ... cargo bench --bench versus_mm2     # the short CI version
//!
//! Columns: the baseline (one hop: a producer alone writing the target for
//! throughput, producer -> target -> consumer for latency), MirrorMaker 2 4.3.1 with its defaults, MirrorMaker
//! 2 tuned, strait with its defaults; each column's settings are printed
//! under the table. Each tool runs as its own OS process (`compose/mm2.sh`,
//! the release `strait` binary), one session per group of measurements,
//! started after the session's topics are written and its groups committed.
//! What each row means: docs/benchmarks.md, "strait beside MirrorMaker 2".
//!
//! Knobs (environment): BENCH_RECORDS (1 KB records per backlog, 300000),
//! BENCH_RUNS (3), BENCH_GROUPS ("10,100,1000"), BENCH_FAILOVER_GROUPS
//! (100), BENCH_LAT_SECONDS (20), BENCH_CP_SECONDS (30), BENCH_NEW (3 new
//! topics), BENCH_STREAM_RATE (records/s under the groups, 1000),
//! BENCH_MM2_HEAP (1g), BENCH_MM2_WAIT_REFRESH (1: wait up to 600 s for
//! MirrorMaker 2's defaults to see a new topic; 0 in the quick version),
//! BENCH_COLUMNS (the tools to run, default
//! "strait,mm2-tuned,mm2-defaults"; the baseline always runs),
//! BENCH_BUSY (a label for the figures: "busy" if the machine was shared),
//! BENCH_QUICK=1: 50000 records, one run, 10 groups that also fail over,
//! 6 s of latency, 10 s of commits, one new topic, and the groups measured
//! in the first session's process.

mod groups;
mod measure;
mod report;
mod session;
mod tools;
mod workload;

use std::time::{Duration, Instant};

use report::{Described, Results};
use session::{Env, GroupsPlan, Plan};
use tools::{Column, TOOLS};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// The sessions of one tool in one run.
fn plans(quick: bool, sizes: &[usize], failover: usize) -> Vec<Plan> {
    let first = Plan {
        backlog: Some(6),
        latency: true,
        new_topics: true,
        groups: None,
    };
    let second = Plan {
        backlog: Some(200),
        latency: false,
        new_topics: false,
        groups: None,
    };
    let mut groups: Vec<GroupsPlan> = sizes
        .iter()
        .map(|&n| GroupsPlan {
            n,
            checkpoints: true,
            failover: n == failover,
        })
        .collect();
    if !sizes.contains(&failover) {
        groups.push(GroupsPlan {
            n: failover,
            checkpoints: false,
            failover: true,
        });
    }
    let mut out = vec![first, second];
    let mut rest = groups.into_iter();
    if quick {
        // Saves two MirrorMaker 2 starts (about 20-40 s each): 10 idle
        // groups cost the backlog and latency measurements nothing.
        out[0].groups = rest.next();
    }
    out.extend(rest.map(|g| Plan {
        backlog: None,
        latency: false,
        new_topics: false,
        groups: Some(g),
    }));
    out
}

fn main() {
    let began = Instant::now();
    let quick = env_or("BENCH_QUICK", 0u8) == 1;
    let sb = strait_testkit::sandbox();
    if sb.broker != strait_testkit::Broker::Kafka {
        eprintln!("versus_mm2 runs MirrorMaker 2: it needs the Apache Kafka sandbox, not tansu");
        std::process::exit(1);
    }
    let runs: usize = env_or("BENCH_RUNS", if quick { 1 } else { 3 }).max(1);
    let sizes: Vec<usize> = std::env::var("BENCH_GROUPS")
        .unwrap_or_else(|_| if quick { "10" } else { "10,100,1000" }.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let failover: usize = env_or("BENCH_FAILOVER_GROUPS", if quick { 10 } else { 100 });
    let heap: String = env_or("BENCH_MM2_HEAP", "1g".to_owned());
    // compose/mm2.sh reads it; set before any thread starts.
    std::env::set_var("STRAIT_MM2_HEAP", &heap);
    let env = Env {
        source: sb.source.clone(),
        target: sb.target.clone(),
        dir: std::env::temp_dir().join("strait-bench-versus-mm2"),
        values: workload::json_values(workload::SIZE),
        records: env_or("BENCH_RECORDS", if quick { 50_000 } else { 300_000 }),
        lat_seconds: env_or("BENCH_LAT_SECONDS", if quick { 6.0 } else { 20.0 }),
        rate: 5.0,
        new_topics: env_or("BENCH_NEW", if quick { 1 } else { 3 }).max(1),
        cp_seconds: env_or("BENCH_CP_SECONDS", if quick { 10 } else { 30 }),
        stream_rate: env_or("BENCH_STREAM_RATE", 1000),
        mm2_wait_refresh: env_or("BENCH_MM2_WAIT_REFRESH", u8::from(!quick)) == 1,
        timeout: Duration::from_secs(if quick { 300 } else { 900 }),
        quick,
        began,
    };
    // Logs and configs of this run's tool processes only.
    let _ = std::fs::remove_dir_all(&env.dir);
    let busy: String = env_or(
        "BENCH_BUSY",
        "machine load not labelled (BENCH_BUSY)".to_owned(),
    );
    let plans = plans(quick, &sizes, failover);
    // Which tools run (the baseline always does).
    let chosen: Vec<Column> = match std::env::var("BENCH_COLUMNS") {
        Ok(list) => list
            .split(',')
            .filter_map(|c| match c.trim() {
                "strait" => Some(Column::Strait),
                "mm2-tuned" => Some(Column::Mm2Tuned),
                "mm2-defaults" => Some(Column::Mm2Defaults),
                _ => None,
            })
            .collect(),
        Err(_) => TOOLS.to_vec(),
    };
    let skipped: Vec<Column> = TOOLS
        .iter()
        .copied()
        .filter(|c| !chosen.contains(c))
        .collect();
    let backlogs: Vec<i32> = plans.iter().filter_map(|p| p.backlog).collect();
    eprintln!(
        "versus_mm2: {runs} run(s), sessions per tool: {}",
        plans.len()
    );
    let mut res = Results::default();
    let mb = [workload::backlog_bytes(env.records, &env.values) as f64 / 1e6; 2];
    for run in 0..runs {
        eprintln!("{} run {run}", env.at());
        let hop = match session::baseline(&env, &backlogs, &mut res) {
            Ok(h) => h,
            Err(e) => {
                res.fail(format!("run {run}: baseline: {e:#}"));
                continue;
            }
        };
        for i in 0..TOOLS.len() {
            let col: Column = TOOLS[(i + run) % TOOLS.len()];
            if skipped.contains(&col) {
                continue;
            }
            for plan in &plans {
                if let Err(e) = session::session(col, plan, &env, &hop, &mut res) {
                    res.fail(format!("run {run}: {e:#}"));
                }
            }
        }
    }
    let described = Described {
        records: env.records,
        mb,
        backlog_partitions: [6, 200],
        groups: sizes.clone(),
        failover_groups: failover,
        stream_rate: env.stream_rate,
        lat_seconds: env.lat_seconds,
        cp_window: if quick {
            format!("{} s", env.cp_seconds)
        } else {
            format!(
                "{} s, MM2 defaults {} s",
                env.cp_window(Column::Strait).as_secs(),
                env.cp_window(Column::Mm2Defaults).as_secs()
            )
        },
        new_topics: env.new_topics,
    };
    report::print(&mut res, &described, runs, &busy, &skipped);
    println!();
    for c in tools::COLUMNS {
        println!("- **{}**: {}", c.title(), c.settings(&heap));
    }
    for c in [Column::Mm2Defaults, Column::Mm2Tuned] {
        if let Some(p) = res.note_of(c, "mm2.producer") {
            println!("  - {} producer (from its log): {p}", c.title());
        }
    }
    println!(
        "- failover, each tool's own translation: MirrorMaker 2, its newest checkpoints at the moment of \
         failover (what RemoteClusterUtils.translateOffsets returns; checked against it for one group); \
         strait, `strait offsets failover --groups` run at that moment. Groups stop at their last commit \
         while {} records/s keep coming; read twice and skipped are counted against every record on the \
         target once replication caught up",
        env.stream_rate
    );
    println!(
        "- took {:.0} s{}",
        began.elapsed().as_secs_f64(),
        if quick { " (BENCH_QUICK)" } else { "" }
    );
    if !res.errors.is_empty() {
        eprintln!("\nversus_mm2 FAILED:");
        for e in &res.errors {
            eprintln!("- {e}");
        }
        std::process::exit(1);
    }
}
