//! `strait cutover`: a planned cutover of one flow, beside the running
//! replicator, once the source's producers have been stopped:
//!
//! 1. wait until the source partitions stop moving (their end offsets
//!    unchanged for `--quiet`), naming the ones that still move;
//! 2. wait until strait has replicated and committed every partition up
//!    to its end, and the offset syncs cover it (every group's translation
//!    exact: nothing read twice);
//! 3. prove the copy with `strait verify`'s comparison (missing, changed
//!    and foreign records, inside the compared range and after it), and
//!    stop if it finds any;
//! 4. fail every group the flow checkpoints over with exact positions
//!    (`strait offsets failover --all-groups`): refused for groups active
//!    on the target (exit 3), never backwards, so a second run changes
//!    nothing.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;
use strait_common::config::{Config, Flow};
use strait_common::kafka::manual_consumer;
use strait_common::model::TopicPartition;
use strait_controller::checkpoint::GroupSelector;

use super::{print_table, progress, source_partitions, watermarks, RECORD_PROBE};
use crate::offsets::{fail_over, translate_all, FlowRow};

/// How often the source and strait's progress are looked at.
const POLL: Duration = Duration::from_secs(1);

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The flow to cut over (source → target).
    #[arg(long)]
    flow: String,
    /// Do everything but write: wait, verify, and show the failover.
    #[arg(long)]
    dry_run: bool,
    /// Give up (exit 1, nothing failed over) after this long, e.g. `120s`
    /// or `5m`.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "120s")]
    timeout: Duration,
    /// The source counts as stopped once no partition's end offset moved
    /// for this long.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    quiet: Duration,
    /// Records of each partition the proof compares, counted back from the
    /// end (as `strait verify --last`).
    #[arg(long, default_value_t = 10_000)]
    verify_last: u64,
}

pub fn run(config: &Config, args: &Args) -> ExitCode {
    let Some(flow) = config.flow(&args.flow) else {
        eprintln!("strait: no flow named {:?}", args.flow);
        return ExitCode::from(2);
    };
    match cutover(config, flow, args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("strait: cutover {}: {e:#}", flow.name);
            ExitCode::FAILURE
        }
    }
}

fn cutover(config: &Config, flow: &Flow, args: &Args) -> anyhow::Result<ExitCode> {
    let deadline = Instant::now() + args.timeout;
    // Heartbeats keep coming from strait itself: they are not the
    // producers that must stop, and no group's position is on them.
    let partitions: Vec<TopicPartition> = source_partitions(config, flow, None)?
        .into_iter()
        .filter(|tp| !flow.policy.is_heartbeats_topic(&tp.topic))
        .collect();
    if partitions.is_empty() {
        anyhow::bail!("no source topic of the flow on {}", flow.source);
    }
    let clusters = config.clusters_of(flow);
    let source: BaseConsumer = manual_consumer(
        &clusters.source,
        &flow.reader_group(&config.deployment, "cutover"),
    )
    .create()?;

    // 1. The source stops moving.
    println!(
        "cutover {}: waiting for {} partition(s) of {} to stop moving ({} without a new record)",
        flow.name,
        partitions.len(),
        flow.source,
        humantime::format_duration(args.quiet)
    );
    let ends = wait_quiet(&source, &partitions, args.quiet, deadline)?;
    let Ok(ends) = ends else {
        let moving = ends.unwrap_err();
        println!("the source still moves: stop its producers first (nothing failed over)");
        print_table(
            &["topic", "partition", "end then", "end now"],
            &moving
                .iter()
                .map(|(tp, (a, b))| {
                    vec![
                        tp.topic.clone(),
                        tp.partition.to_string(),
                        a.to_string(),
                        b.to_string(),
                    ]
                })
                .collect::<Vec<_>>(),
        );
        return Ok(ExitCode::FAILURE);
    };
    let records: i64 = ends.values().map(|(low, high)| high - low).sum();
    println!(
        "source stopped: {} partition(s), end offsets fixed ({records} offsets held)",
        ends.len()
    );

    // 2. Everything replicated and committed, the syncs covering it.
    let lagging = wait_replicated(config, flow, &partitions, &ends, deadline)?;
    if !lagging.is_empty() {
        println!("not replicated to the end within --timeout (nothing failed over):");
        print_table(
            &["topic", "partition", "committed", "source end"],
            &lagging
                .iter()
                .map(|(tp, c, e)| {
                    vec![
                        tp.topic.clone(),
                        tp.partition.to_string(),
                        c.map_or("-".into(), |c| c.to_string()),
                        e.to_string(),
                    ]
                })
                .collect::<Vec<_>>(),
        );
        println!("is strait running this flow? `strait status`");
        return Ok(ExitCode::FAILURE);
    }
    println!("replicated: every partition committed up to the source's end");
    let rows = wait_exact(config, flow, deadline)?;
    let inexact: Vec<&FlowRow> = rows
        .iter()
        .filter(|(_, t)| t.translation.is_none_or(|x| x.max_reread > 0))
        .collect();
    if !inexact.is_empty() {
        println!(
            "these positions do not translate exactly within --timeout (nothing failed over):"
        );
        print_table(
            &[
                "group",
                "topic",
                "partition",
                "source",
                "target",
                "max re-read",
            ],
            &inexact
                .iter()
                .map(|(_, t)| {
                    vec![
                        t.group.clone(),
                        t.remote_topic.clone(),
                        t.partition.to_string(),
                        t.source_offset.to_string(),
                        t.target_offset.to_string(),
                        t.translation
                            .map_or("-".into(), |x| x.max_reread.to_string()),
                    ]
                })
                .collect::<Vec<_>>(),
        );
        println!(
            "`strait offsets failover --flow {} --all-groups` fails them over with these bounds",
            flow.name
        );
        return Ok(ExitCode::FAILURE);
    }

    // 3. The copy, proved.
    println!("verifying the copy (last {} records of each partition, and everything after them on the target)", args.verify_last);
    let mut check = crate::verify::Args::for_flow(&flow.name);
    check.last = Some(args.verify_last);
    let verified = crate::verify::verify(config, flow, &check)?;
    if !verified {
        println!("cutover {}: STOPPED: the target does not hold exactly what the source holds (see the rows above); nothing failed over", flow.name);
        return Ok(ExitCode::FAILURE);
    }

    // 4. Every group, exactly.
    let spec = strait_controller::checkpoint::CheckpointSpec::new(config, flow);
    let done = fail_over(
        std::slice::from_ref(&spec),
        &rows,
        &GroupSelector::Checkpointed,
        args.dry_run,
    );
    let groups: std::collections::BTreeSet<&str> =
        rows.iter().map(|(_, t)| t.group.as_str()).collect();
    println!(
        "cutover {}: {} group(s), {} partition position(s) {}; {} record(s) read twice, 0 skipped; {} refused, {} failed",
        flow.name,
        groups.len(),
        done.moved,
        if args.dry_run { "would move" } else { "moved" },
        done.max_reread,
        done.refused,
        done.failed,
    );
    if !args.dry_run && done.refused == 0 && done.failed == 0 {
        println!(
            "next: point producers and consumers at {}; strait keeps running the flow (idle now). To replicate back, see docs/disaster-recovery.md",
            flow.target
        );
    }
    Ok(done.exit_code())
}

/// End offsets, once none moved for `quiet`; or, at the deadline, the
/// partitions that still moved (end when the wait began, end now).
type Ends = BTreeMap<TopicPartition, (i64, i64)>;

fn wait_quiet(
    source: &BaseConsumer,
    partitions: &[TopicPartition],
    quiet: Duration,
    deadline: Instant,
) -> anyhow::Result<Result<Ends, Ends>> {
    let first = watermarks(source, partitions)?;
    let mut last = first.clone();
    let mut since = Instant::now();
    loop {
        if since.elapsed() >= quiet {
            return Ok(Ok(last));
        }
        if Instant::now() >= deadline {
            let moving = last
                .iter()
                .filter(|(k, (_, high))| first[*k].1 != *high)
                .map(|(k, (_, high))| (k.clone(), (first[k].1, *high)))
                .collect();
            return Ok(Err(moving));
        }
        std::thread::sleep(POLL.min(quiet));
        let now = watermarks(source, partitions)?;
        if now.iter().any(|(k, w)| last[k].1 != w.1) {
            since = Instant::now();
        }
        last = now;
    }
}

/// Waits until strait's committed progress reaches every partition's end;
/// returns the partitions that did not by the deadline (progress, end).
#[allow(clippy::type_complexity)]
fn wait_replicated(
    config: &Config,
    flow: &Flow,
    partitions: &[TopicPartition],
    ends: &Ends,
    deadline: Instant,
) -> anyhow::Result<Vec<(TopicPartition, Option<i64>, i64)>> {
    let clusters = config.clusters_of(flow);
    loop {
        let committed = progress(config, flow, partitions)?;
        let lagging: Vec<_> = partitions
            .iter()
            .filter_map(|p| {
                let (low, end) = ends[p];
                let c = committed.get(p).map(|c| c.0);
                let done = end <= low
                    || c.is_some_and(|c| {
                        c >= end
                            // What lies between is no record (a transaction
                            // marker after the last one).
                            || !strait_common::kafka::record_exists(
                                &clusters.source,
                                &p.topic,
                                p.partition,
                                c,
                                RECORD_PROBE,
                            )
                    });
                (!done).then(|| (p.clone(), c, end))
            })
            .collect();
        if lagging.is_empty() || Instant::now() >= deadline {
            return Ok(lagging);
        }
        std::thread::sleep(POLL);
    }
}

/// Translates every group the flow checkpoints until every translation is
/// exact (the worker writes its latest offset sync on an interval) or the
/// deadline passes; returns the last translation.
fn wait_exact(config: &Config, flow: &Flow, deadline: Instant) -> anyhow::Result<Vec<FlowRow>> {
    loop {
        let (rows, _) = translate_all(
            config,
            &GroupSelector::Checkpointed,
            Some(&flow.name),
            false,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let exact = rows
            .iter()
            .all(|(_, t)| t.translation.is_some_and(|x| x.max_reread == 0));
        if exact || Instant::now() >= deadline {
            return Ok(rows);
        }
        std::thread::sleep(POLL);
    }
}
