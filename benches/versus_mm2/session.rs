//! One session: one tool process, started after everything it is measured
//! on exists (topics written, groups committed: MirrorMaker 2's defaults
//! look for new topics and groups only every 600 s), then the
//! measurements of the session's plan, one after the other. And the
//! baseline's measurements, which need no tool.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::producer::{BaseRecord, Producer as _};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use strait_common::model::{NextOffset, TopicPartition};
use strait_controller::native_admin::GroupCommits;
use strait_testkit::create_topic;
use strait_testkit::process::cpu_seconds;

use crate::measure::{self, Backlog, Latency};
use crate::report::Results;
use crate::tools::{self, Column, Names, Running};
use crate::workload::{self, ends, lister};

/// Partitions of the latency, new-topic and groups topics.
pub const PARTITIONS: i32 = 6;

/// What one session measures.
#[derive(Debug, Clone)]
pub struct Plan {
    /// A backlog over this many partitions.
    pub backlog: Option<i32>,
    pub latency: bool,
    pub new_topics: bool,
    pub groups: Option<GroupsPlan>,
}

#[derive(Debug, Clone, Copy)]
pub struct GroupsPlan {
    pub n: usize,
    /// Report commit -> checkpoint at this many groups.
    pub checkpoints: bool,
    /// Report the failover of these groups.
    pub failover: bool,
}

/// What every session shares.
pub struct Env {
    pub source: String,
    pub target: String,
    pub dir: PathBuf,
    pub values: Vec<Vec<u8>>,
    pub records: usize,
    pub lat_seconds: f64,
    pub rate: f64,
    pub new_topics: usize,
    pub cp_seconds: u64,
    pub stream_rate: u64,
    pub mm2_wait_refresh: bool,
    pub timeout: Duration,
    pub quick: bool,
    pub began: Instant,
}

impl Env {
    /// How long commits are measured: `cp_seconds`, and in the full
    /// version at least one checkpoint interval, so commits fall at every
    /// point of the tool's cycle (MirrorMaker 2's defaults: 60 s).
    pub fn cp_window(&self, col: Column) -> Duration {
        let w = Duration::from_secs(self.cp_seconds);
        if self.quick {
            w
        } else {
            w.max(col.checkpoint_interval())
        }
    }

    /// Seconds since the bench began, for the progress lines.
    pub fn at(&self) -> String {
        format!("[{:>5.0} s]", self.began.elapsed().as_secs_f64())
    }
}

/// The figures of one backlog replication.
fn record_backlog(
    res: &mut Results,
    col: Column,
    parts: i32,
    b: &Backlog,
    bytes: u64,
    records: usize,
) {
    let k = |s: &str| format!("b{parts}.{s}");
    let mb = bytes as f64 / 1e6;
    let total = b.last.as_secs_f64();
    res.add(col, &k("first"), b.first.as_secs_f64());
    res.add(col, &k("last"), total);
    res.add(col, &k("mbps"), mb / total);
    res.add(col, &k("rps"), records as f64 / total);
    res.add(col, &k("cpu_per_mb"), b.cpu_last / mb);
    res.add(col, &k("cpu_start"), b.cpu_first);
    if let Some(rss) = b.rss_mb {
        res.add(col, &k("rss"), rss);
    }
    eprintln!(
        "  {} backlog {parts}p: first {:.2} s, last {:.2} s, {:.1} MB/s, CPU {:.1} s at first, {:.1} s at last, RSS {:?} MB",
        col.title(),
        b.first.as_secs_f64(),
        total,
        mb / total,
        b.cpu_first,
        b.cpu_last,
        b.rss_mb.map(|r| r.round())
    );
}

/// The baseline of one run, one hop: latency through the target alone,
/// and one producer writing each backlog to the target, timed as the
/// tools are. Returns the one hop's latency.
pub fn baseline(env: &Env, backlogs: &[i32], res: &mut Results) -> anyhow::Result<Latency> {
    let col = Column::Baseline;
    let names = Names::new(col);
    let result = (|| {
        let hop = names.topic("hop");
        create_topic(&env.target, &hop, PARTITIONS);
        let lat = measure::latency(
            &env.target,
            &hop,
            &env.target,
            &hop,
            PARTITIONS,
            env.rate,
            env.lat_seconds,
            &env.values,
            &|| Ok(()),
        )?;
        eprintln!(
            "  one hop: {} records, p50 {:.0} ms, p99 {:.0} ms",
            lat.sent, lat.p50, lat.p99
        );
        res.add(col, "lat.p50", lat.p50);
        res.add(col, "lat.p99", lat.p99);
        for &parts in backlogs {
            let topic = names.topic(&format!("backlog{parts}"));
            create_topic(&env.target, &topic, parts);
            let want: Vec<i64> = (0..parts as usize)
                .map(|p| {
                    (env.records / parts as usize + usize::from(p < env.records % parts as usize))
                        as i64
                })
                .collect();
            let start = Instant::now();
            let cpu0 = cpu_seconds(std::process::id());
            let writer = {
                let (t, topic, values) = (env.target.clone(), topic.clone(), env.values.clone());
                let records = env.records;
                std::thread::spawn(move || {
                    workload::write_backlog(&t, &topic, parts, records, &values)
                })
            };
            let watched = measure::watch_backlog(
                &env.target,
                &topic,
                &want,
                start,
                std::process::id(),
                cpu0,
                &mut || true,
                env.timeout,
            );
            let bytes = writer
                .join()
                .map_err(|_| anyhow::anyhow!("the producer panicked"))??;
            let (mut b, _) = watched?;
            b.rss_mb = None;
            record_backlog(res, col, parts, &b, bytes, env.records);
        }
        Ok(lat)
    })();
    workload::delete_topics(&env.target, |t| t.starts_with(&names.prefix));
    result
}

/// Each group and the two partitions of the groups topic it reads.
pub type Layout = Vec<(String, [i32; 2])>;

/// The pieces of a session set up before its tool starts.
struct Setup {
    backlog: Option<(String, i32, u64, Vec<i64>)>,
    latency: Option<String>,
    groups: Option<(GroupsPlan, String, Layout)>,
}

/// Runs one session of `col`'s tool.
pub fn session(
    col: Column,
    plan: &Plan,
    env: &Env,
    hop: &Latency,
    res: &mut Results,
) -> anyhow::Result<()> {
    let names = Names::new(col);
    eprintln!(
        "{} {} session {}: {plan:?}",
        env.at(),
        col.title(),
        names.prefix
    );
    let result = setup(&names, plan, env).and_then(|setup| {
        let start = Instant::now();
        let mut tool = tools::start(col, &names, &env.source, &env.target, &env.dir)?;
        let r = measure_session(&mut tool, &names, &setup, plan, env, hop, start, res);
        tool.stop();
        r
    });
    workload::delete_topics(&env.source, |t| {
        t.starts_with(&names.prefix)
            || t == format!("mm2-offset-syncs.{}.internal", names.target_alias)
    });
    workload::delete_topics(&env.target, |t| {
        t.starts_with(&format!("{}.", names.source_alias))
            || t.ends_with(&format!(".{}.internal", names.source_alias))
    });
    result.with_context(|| format!("{} session {}", col.title(), names.prefix))
}

fn setup(names: &Names, plan: &Plan, env: &Env) -> anyhow::Result<Setup> {
    let backlog = match plan.backlog {
        Some(parts) => {
            let t = names.topic(&format!("backlog{parts}"));
            create_topic(&env.source, &t, parts);
            let bytes = workload::write_backlog(&env.source, &t, parts, env.records, &env.values)?;
            let want = ends(&lister(&env.source), &t, parts)?;
            Some((t, parts, bytes, want))
        }
        None => None,
    };
    let latency = plan.latency.then(|| {
        let t = names.topic("lat");
        create_topic(&env.source, &t, PARTITIONS);
        t
    });
    let groups = match plan.groups {
        Some(g) => {
            let t = names.topic("grp");
            create_topic(&env.source, &t, PARTITIONS);
            // Group i reads two partitions; each group commits before the
            // tool starts, so MirrorMaker 2's defaults know it.
            let layout: Layout = (0..g.n)
                .map(|i| {
                    let a = (2 * i) as i32 % PARTITIONS;
                    (names.group(i), [a, (a + 1) % PARTITIONS])
                })
                .collect();
            let batch: Vec<GroupCommits> = layout
                .iter()
                .map(|(g, ps)| {
                    let at = |p: &i32| (TopicPartition::new(t.clone(), *p), NextOffset(0));
                    (g.clone(), ps.iter().map(at).collect())
                })
                .collect();
            workload::commit(&workload::group_admin(&env.source), &batch)?;
            Some((g, t, layout))
        }
        None => None,
    };
    Ok(Setup {
        backlog,
        latency,
        groups,
    })
}

#[allow(clippy::too_many_arguments)]
fn measure_session(
    tool: &mut Running,
    names: &Names,
    setup: &Setup,
    plan: &Plan,
    env: &Env,
    hop: &Latency,
    start: Instant,
    res: &mut Results,
) -> anyhow::Result<()> {
    let col = tool.column;
    let pid = tool.pid;
    if let Some((topic, parts, bytes, want)) = &setup.backlog {
        let remote = names.remote(topic);
        let (b, _) = measure::watch_backlog(
            &env.target,
            &remote,
            want,
            start,
            pid,
            0.0,
            &mut || tool.alive(),
            env.timeout,
        )?;
        record_backlog(res, col, *parts, &b, *bytes, env.records);
    }
    if col != Column::Strait {
        // By now its source task has started: check and show its producer.
        let wait = Instant::now() + Duration::from_secs(120);
        let got = loop {
            match tool.producer_settings() {
                Ok(s) => break s,
                Err(e) if Instant::now() > wait => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        };
        res.note(col, "mm2.producer", &got);
    }
    if let Some(topic) = &setup.latency {
        let remote = names.remote(topic);
        let c = lister(&env.target);
        strait_testkit::wait_for(
            "the latency topic's remote topic",
            Duration::from_secs(120),
            || workload::exists(&c, &remote),
        );
        let settle = || {
            measure::caught_up(
                &env.source,
                topic,
                &env.target,
                &remote,
                PARTITIONS,
                Duration::from_secs(120),
            )
        };
        let lat = measure::latency(
            &env.source,
            topic,
            &env.target,
            &remote,
            PARTITIONS,
            env.rate,
            env.lat_seconds,
            &env.values,
            &settle,
        )?;
        eprintln!(
            "  {}: p50 {:.0} ms, p99 {:.0} ms",
            col.title(),
            lat.p50,
            lat.p99
        );
        res.add(col, "lat.p50", lat.p50);
        res.add(col, "lat.p99", lat.p99);
        res.add(col, "lat.add50", lat.p50 - hop.p50);
        res.add(col, "lat.add99", lat.p99 - hop.p99);
    }
    if plan.new_topics {
        if col == Column::Mm2Defaults && !env.mm2_wait_refresh {
            res.note(
                col,
                "new.p50",
                "not waited for: seen at its next topic refresh, 600 s after start (BENCH_MM2_WAIT_REFRESH=1 waits)",
            );
        } else {
            new_topics(tool, names, env, col, res)?;
        }
    }
    if let Some((g, topic, layout)) = &setup.groups {
        crate::groups::groups(tool, names, env, *g, topic, layout, res)?;
    }
    ensure!(tool.alive(), "{} exited during the session", col.title());
    Ok(())
}

/// New topics created while the tool runs, one record each: creation to
/// that record on the target.
fn new_topics(
    tool: &mut Running,
    names: &Names,
    env: &Env,
    col: Column,
    res: &mut Results,
) -> anyhow::Result<()> {
    let n = env.new_topics;
    let deadline = col.topic_refresh() + Duration::from_secs(120);
    let p = workload::producer(&env.source);
    let mut readers = Vec::new();
    for i in 0..n {
        std::thread::sleep(Duration::from_millis(700));
        let topic = names.topic(&format!("new{i}"));
        let created = Instant::now();
        create_topic(&env.source, &topic, 1);
        workload::send(
            &p,
            BaseRecord::to(&topic)
                .partition(0)
                .payload(&env.values[i][..]),
        );
        p.flush(Duration::from_secs(30))?;
        // A reader per topic, assigned before its remote topic exists and
        // refreshing metadata every 200 ms (so an upper bound by about
        // that), as benches/new_topics.rs reads.
        let (target, remote) = (env.target.clone(), names.remote(&topic));
        readers.push(std::thread::spawn(move || {
            let c: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &target)
                .set("group.id", "strait-bench-vs-mm2-new-topics")
                .set("enable.auto.commit", "false")
                .set("topic.metadata.refresh.interval.ms", "200")
                .set("fetch.wait.max.ms", "10")
                .create()
                .ok()?;
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&remote, 0, Offset::Beginning)
                .ok()?;
            c.assign(&tpl).ok()?;
            while created.elapsed() < deadline {
                if let Some(Ok(_)) = c.poll(Duration::from_millis(20)) {
                    return Some(created.elapsed());
                }
            }
            None
        }));
    }
    let got: Vec<Option<Duration>> = readers
        .into_iter()
        .map(|r| r.join().unwrap_or(None))
        .collect();
    ensure!(tool.alive(), "{} exited", col.title());
    let mut seen: Vec<Duration> = got.iter().flatten().copied().collect();
    ensure!(
        seen.len() == n,
        "{} of {n} new topics reached the target within {deadline:?}",
        seen.len()
    );
    seen.sort();
    eprintln!("  {}: new topics {seen:.2?}", col.title());
    res.add(
        col,
        "new.p50",
        measure::percentile(&seen, 0.5).as_secs_f64(),
    );
    res.add(col, "new.max", seen.last().unwrap().as_secs_f64());
    Ok(())
}
