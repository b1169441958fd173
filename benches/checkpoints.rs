//! Consumer-group failover at fleet scale: how long a group's commit on the
//! source takes to reach the target, as a checkpoint and (with
//! `sync_group_offsets`) as the target group's offset, and what the
//! checkpoint service costs. Not a test: it prints figures and asserts
//! nothing about speed.
//!
//!   compose/sandbox.sh up
//!   cargo bench --bench checkpoints
//!
//! Setup: BENCH_PARTITIONS source partitions (default 2000, in topics of
//! 100) with 200 records each, replicated by a fleet of one worker and one
//! controller (separate processes over the sandbox's etcd, default
//! settings but for `sync_group_offsets = true`), so the controller's CPU and
//! memory are the checkpoint service's (plus discovery's).
//!
//! Then for each size in BENCH_GROUPS (default 10,100,1000): that many
//! groups, each on 2 partitions of its own, commit their positions one
//! record further every second (admin offset commits, many in flight), for
//! BENCH_SECONDS (30) after a 10 s warm-up. Measured per commit:
//! - commit -> checkpoint: from the start of the commit request to the
//!   first checkpoint at or past it read (read_committed) on the target;
//! - commit -> target group: to the first poll (every 250 ms) that finds
//!   the target group's offset at or past it;
//! - the controller process: CPU seconds per second over the measurement
//!   (from /proc), and its peak RSS (VmHWM).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use strait_controller::native_admin::{GroupCommits, PartitionPosition};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use strait_common::model::{NextOffset, TopicPartition};
use strait_controller::native_admin::{alter_group_offsets, list_group_offsets};
use strait_testkit::config::ConfigBuilder;
use strait_testkit::process::Strait;
use strait_testkit::{create_topic, producer, sandbox, send, unique, wait_for, Rec, Sandbox};

const RECORDS: usize = 200;
const START: i64 = 10;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (group, [(topic, partition)]): group `i` owns partitions 2i and 2i+1.
type Layout = Vec<(String, Vec<(String, i32)>)>;

fn layout(prefix: &str, groups: usize, parts: &[(String, i32)]) -> Layout {
    (0..groups)
        .map(|i| {
            let a = parts[(2 * i) % parts.len()].clone();
            let b = parts[(2 * i + 1) % parts.len()].clone();
            (format!("{prefix}-{i}"), vec![a, b])
        })
        .collect()
}

/// Commit times of positions not yet seen on the target, per (group,
/// topic, partition), oldest first.
#[derive(Default)]
struct Pending(HashMap<(String, String, i32), Vec<(i64, Instant)>>);

impl Pending {
    fn add(&mut self, key: (String, String, i32), offset: i64, at: Instant) {
        self.0.entry(key).or_default().push((offset, at));
    }
    /// `offset` reached the target at `now`: every commit at or below it
    /// is there.
    fn reached(&mut self, key: &(String, String, i32), offset: i64, now: Instant) -> Vec<Duration> {
        let Some(list) = self.0.get_mut(key) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        list.retain(|(o, at)| {
            if *o <= offset {
                out.push(now.saturating_duration_since(*at));
                false
            } else {
                true
            }
        });
        out
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn config(sb: &Sandbox, deployment: &str, topics: &str, groups: &str) -> String {
    ConfigBuilder::new(deployment, &sb.source, &sb.target)
        .flow("topics", [topics])
        .flow("groups", [groups])
        .flow("sync_group_offsets", true)
        .coordination("etcd", vec![sb.etcd.clone()])
        .build()
}

struct Figures {
    groups: usize,
    commits: usize,
    cp: Vec<Duration>,
    cp_missing: usize,
    sync: Vec<Duration>,
    sync_missing: usize,
    cpu: f64,
    rss_mb: f64,
    round: Option<f64>,
}

/// A client for the group admin calls: a consumer with a `group.id` it
/// never joins (librdkafka crashes on an AdminClient when such a call is
/// answered NotCoordinator: see controller/src/native_admin/groups.rs).
fn group_admin(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "strait-bench-group-admin")
        .create()
        .unwrap()
}

fn main() {
    let sb = sandbox();
    let partitions: usize = env_or("BENCH_PARTITIONS", 2000);
    let seconds: u64 = env_or("BENCH_SECONDS", 30);
    let sizes: Vec<usize> = std::env::var("BENCH_GROUPS")
        .unwrap_or_else(|_| "10,100,1000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let bin = Path::new(env!("CARGO_BIN_EXE_strait"));
    let dir = std::env::temp_dir().join("strait-bench-checkpoints");
    let run = unique("cpb");

    // Source topics of 100 partitions, 200 records per partition.
    let per_topic = 100.min(partitions);
    let topics = partitions.div_ceil(per_topic);
    let mut parts = Vec::new();
    let p = producer(&sb.source);
    for i in 0..topics {
        let t = format!("{run}-t{i}");
        let n = per_topic.min(partitions - i * per_topic) as i32;
        create_topic(&sb.source, &t, n);
        send(&p, &t, &Rec::seqs(n, 0..RECORDS));
        parts.extend((0..n).map(|p| (t.clone(), p)));
    }
    rdkafka::producer::Producer::flush(&p, Duration::from_secs(120)).unwrap();
    drop(p);
    println!(
        "setup: {partitions} source partitions in {topics} topics, {RECORDS} records each; runs of {seconds} s after 10 s of warm-up"
    );

    let deployment = run.clone();
    let topics_re = format!("{run}-t.*");
    // One worker replicates everything once; the controller is restarted
    // per size with that size's groups.
    let mut worker = Strait::launch(
        bin,
        &dir,
        &format!("{run}-worker"),
        &config(&sb, &deployment, &topics_re, "none"),
        &["--role", "worker", "--id", "w1"],
    );
    let admin_src = group_admin(&sb.source);
    let mut figures = Vec::new();
    for &groups in &sizes {
        let prefix = format!("{run}-g{groups}");
        let mut controller = Strait::launch(
            bin,
            &dir,
            &format!("{prefix}-controller"),
            &config(&sb, &deployment, &topics_re, &format!("{prefix}-.*")),
            &["--role", "controller", "--id", "c1"],
        );
        // Replication of everything (the first size waits for it).
        let commit_group = format!("strait.{deployment}.src-dst");
        wait_for(
            "replication of every partition",
            Duration::from_secs(600),
            || {
                let req = vec![(commit_group.clone(), None)];
                list_group_offsets(admin_src.client(), &req, 1, Duration::from_secs(10))
                    .remove(0)
                    .is_ok_and(|ps| {
                        ps.iter()
                            .filter(|(_, o)| *o == Some(NextOffset(RECORDS as i64)))
                            .count()
                            == partitions
                    })
            },
        );
        let lay = layout(&prefix, groups, &parts);
        figures.push(measure(&sb, &admin_src, &controller, &lay, seconds));
        controller.stop_with("TERM", Duration::from_secs(60));
    }
    let translate = translate_under_load(&sb, &admin_src, &worker, &run, &parts);
    worker.stop_with("TERM", Duration::from_secs(60));

    println!();
    println!("| groups | commits | commit -> checkpoint p50 / p99 / max | not seen | commit -> target group p50 / p99 / max | not seen | last round | controller CPU (cores) | controller peak RSS |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for f in &figures {
        let (mut cp, mut sync) = (f.cp.clone(), f.sync.clone());
        cp.sort();
        sync.sort();
        let s = |v: &[Duration], p| format!("{:.2}", percentile(v, p).as_secs_f64());
        println!(
            "| {} | {} | {} / {} / {} s | {} | {} / {} / {} s | {} | {} | {:.3} | {:.0} MB |",
            f.groups,
            f.commits,
            s(&cp, 0.5),
            s(&cp, 0.99),
            s(&cp, 1.0),
            f.cp_missing,
            s(&sync, 0.5),
            s(&sync, 0.99),
            s(&sync, 1.0),
            f.sync_missing,
            f.round.map_or("-".into(), |r| format!("{r:.2} s")),
            f.cpu,
            f.rss_mb,
        );
    }
    let (n, took, sent) = translate;
    println!();
    println!(
        "offsets translate, one group on {n} partitions, while {sent} records of 1 KB were written and replicated: median {:.2} s, max {:.2} s over {} calls",
        took[took.len() / 2].as_secs_f64(),
        took.last().unwrap().as_secs_f64(),
        took.len()
    );
}

/// `strait offsets translate` for one group committed on 1,000 partitions
/// (or all, if fewer), while a producer writes to those topics as fast as
/// it can and the worker replicates: wall time of each call.
fn translate_under_load(
    sb: &Sandbox,
    admin_src: &BaseConsumer,
    worker: &Strait,
    run: &str,
    parts: &[(String, i32)],
) -> (usize, Vec<Duration>, u64) {
    let group = format!("{run}-wide");
    let wide: Vec<PartitionPosition> = parts
        .iter()
        .take(1000)
        .map(|(t, p)| (TopicPartition::new(t.clone(), *p), NextOffset(100)))
        .collect();
    let n = wide.len();
    let r = alter_group_offsets(
        admin_src.client(),
        &[(group.clone(), wide)],
        1,
        Duration::from_secs(30),
    );
    assert!(r[0].is_ok(), "{r:?}");
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, source) = (stop.clone(), sb.source.clone());
        let parts: Vec<(String, i32)> = parts.iter().take(1000).cloned().collect();
        std::thread::spawn(move || {
            let p = producer(&source);
            let value = vec![b'x'; 1000];
            let started = Instant::now();
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(120) {
                for (t, part) in parts.iter().step_by(7) {
                    let rec = rdkafka::producer::BaseRecord::<[u8], [u8]>::to(t)
                        .partition(*part)
                        .payload(&value[..]);
                    if p.send(rec).is_err() {
                        std::thread::sleep(Duration::from_millis(5));
                    } else {
                        sent += 1;
                    }
                }
            }
            let _ = rdkafka::producer::Producer::flush(&p, Duration::from_secs(30));
            sent
        })
    };
    std::thread::sleep(Duration::from_secs(5));
    let mut took = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let out = std::process::Command::new(Path::new(env!("CARGO_BIN_EXE_strait")))
            .args([
                "offsets",
                "translate",
                "--group",
                &group,
                "--json",
                "--config",
            ])
            .arg(worker.config_path())
            .output()
            .unwrap();
        took.push(started.elapsed());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            rows.as_array().map(Vec::len),
            Some(n),
            "every partition translated"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let sent = load.join().unwrap();
    took.sort();
    (n, took, sent)
}

fn measure(
    sb: &Sandbox,
    admin_src: &BaseConsumer,
    controller: &Strait,
    lay: &Layout,
    seconds: u64,
) -> Figures {
    let cp_pending = Arc::new(Mutex::new(Pending::default()));
    let sync_pending = Arc::new(Mutex::new(Pending::default()));
    let cp_seen = Arc::new(Mutex::new(Vec::new()));
    let sync_seen = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));

    // The checkpoints topic, tailed read_committed (librdkafka's default).
    let tail = {
        let (stop, pending, seen, measuring) = (
            stop.clone(),
            cp_pending.clone(),
            cp_seen.clone(),
            measuring.clone(),
        );
        let target = sb.target.clone();
        std::thread::spawn(move || {
            let c: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &target)
                .set("group.id", "bench-tail")
                .set("fetch.wait.max.ms", "10")
                .create()
                .unwrap();
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset("src.checkpoints.internal", 0, Offset::End)
                .unwrap();
            c.assign(&tpl).unwrap();
            while !stop.load(Ordering::Relaxed) {
                let Some(Ok(m)) = c.poll(Duration::from_millis(50)) else {
                    continue;
                };
                let now = Instant::now();
                let (Some(k), Some(v)) = (m.key(), m.payload()) else {
                    continue;
                };
                let Ok(cp) = strait_common::formats::Checkpoint::decode(k, v) else {
                    continue;
                };
                // Remote topic "src.X" back to the source topic X.
                let topic = cp
                    .topic
                    .strip_prefix("src.")
                    .unwrap_or(&cp.topic)
                    .to_owned();
                let lat = pending.lock().unwrap().reached(
                    &(cp.group, topic, cp.partition),
                    cp.upstream_offset,
                    now,
                );
                if measuring.load(Ordering::Relaxed) {
                    seen.lock().unwrap().extend(lat);
                }
            }
        })
    };
    // The target groups' offsets, polled.
    let poll = {
        let (stop, pending, seen, measuring) = (
            stop.clone(),
            sync_pending.clone(),
            sync_seen.clone(),
            measuring.clone(),
        );
        let lay = lay.clone();
        let target = sb.target.clone();
        std::thread::spawn(move || {
            let admin = group_admin(&target);
            let req: Vec<_> = lay
                .iter()
                .map(|(g, ps)| {
                    (
                        g.clone(),
                        Some(
                            ps.iter()
                                .map(|(t, p)| TopicPartition::new(format!("src.{t}"), *p))
                                .collect(),
                        ),
                    )
                })
                .collect();
            while !stop.load(Ordering::Relaxed) {
                let results = list_group_offsets(admin.client(), &req, 64, Duration::from_secs(10));
                let now = Instant::now();
                for ((g, _), r) in req.iter().zip(results) {
                    for (
                        TopicPartition {
                            topic: t,
                            partition: p,
                        },
                        o,
                    ) in r.unwrap_or_default()
                    {
                        let Some(NextOffset(o)) = o else { continue };
                        let topic = t.strip_prefix("src.").unwrap_or(&t).to_owned();
                        let lat = pending
                            .lock()
                            .unwrap()
                            .reached(&(g.clone(), topic, p), o, now);
                        if measuring.load(Ordering::Relaxed) {
                            seen.lock().unwrap().extend(lat);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };

    let warmup = Duration::from_secs(10);
    let total = warmup + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut cpu0 = None;
    let mut commits = 0usize;
    let mut tick = 0i64;
    let mut measured_keys = Vec::new();
    while started.elapsed() < total {
        let second = started + Duration::from_secs(tick as u64);
        if let Some(d) = second.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let in_window = started.elapsed() >= warmup;
        if in_window && cpu0.is_none() {
            cpu0 = Some((
                Instant::now(),
                strait_testkit::process::cpu_seconds(controller.pid()),
            ));
            measuring.store(true, Ordering::Relaxed);
        }
        let offset = START + tick;
        let batch: Vec<GroupCommits> = lay
            .iter()
            .map(|(g, ps)| {
                (
                    g.clone(),
                    ps.iter()
                        .map(|(t, p)| (TopicPartition::new(t.clone(), *p), NextOffset(offset)))
                        .collect(),
                )
            })
            .collect();
        let at = Instant::now();
        {
            let (mut cp, mut sy) = (cp_pending.lock().unwrap(), sync_pending.lock().unwrap());
            for (g, ps) in &batch {
                for (tp, NextOffset(o)) in ps {
                    let key = (g.clone(), tp.topic.clone(), tp.partition);
                    cp.add(key.clone(), *o, at);
                    sy.add(key.clone(), *o, at);
                    if in_window {
                        measured_keys.push(key);
                    }
                }
            }
        }
        let results = alter_group_offsets(admin_src.client(), &batch, 64, Duration::from_secs(10));
        let failed = results.iter().filter(|r| r.is_err()).count();
        if failed > 0 {
            eprintln!("{failed} group commits failed this second");
        }
        if in_window {
            commits += batch.iter().map(|(_, ps)| ps.len()).sum::<usize>();
        }
        tick += 1;
        assert!(offset < RECORDS as i64 - 1, "ran past the records");
    }
    let (t0, c0) = cpu0.unwrap();
    let cpu =
        (strait_testkit::process::cpu_seconds(controller.pid()) - c0) / t0.elapsed().as_secs_f64();
    let rss_mb = strait_testkit::process::peak_rss_mb(controller.pid());
    let round = controller.metric("strait_checkpoint_round_seconds{flow=\"src-dst\"}");
    // Let the last commits land (up to 10 s) before counting the missing.
    std::thread::sleep(Duration::from_secs(10));
    stop.store(true, Ordering::Relaxed);
    tail.join().unwrap();
    poll.join().unwrap();
    let missing = |p: &Arc<Mutex<Pending>>| p.lock().unwrap().0.values().map(Vec::len).sum();
    let cp = std::mem::take(&mut *cp_seen.lock().unwrap());
    let sync = std::mem::take(&mut *sync_seen.lock().unwrap());
    Figures {
        groups: lay.len(),
        commits,
        cp,
        cp_missing: missing(&cp_pending),
        sync,
        sync_missing: missing(&sync_pending),
        cpu,
        rss_mb,
        round,
    }
}
