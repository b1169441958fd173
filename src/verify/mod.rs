//! `strait verify`: proves, record by record, that the target holds what
//! the source holds over a range, for a live flow, and that the target
//! holds nothing else. Per source partition the range ends at the
//! committed position (what strait vouches for) and starts `--last N`
//! records before it, or at `--since DURATION` ago. The offset syncs align
//! it: the latest sync at or before the range's start says where that
//! source record was written on the remote partition, and both are read
//! from there, streamed, comparing hashes of key, value, headers,
//! timestamp and partition (see [`compare`]). Past the range both are read
//! on to their ends: every target record there must be a copy of a source
//! record (replicated, not committed yet) or a repeat, else it is foreign.

pub mod compare;

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use strait_common::config::{Config, Flow};
use strait_common::formats::OffsetSync;
use strait_common::kafka::manual_consumer;
use strait_common::model::{NextOffset, TopicPartition};
use strait_controller::checkpoint::reader::InternalTopic;

use compare::{Comparer, Report, Seen};

/// How long one request, or reading the offset syncs to their end, may
/// take: a command run by hand, against clusters that may be slow.
const TIMEOUT: Duration = Duration::from_secs(30);
/// How often progress is printed on a long comparison: often enough to
/// show it moves, rarely enough not to flood the terminal.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// One poll of the source: a broker that has the records hands them over
/// in far less; none in 5 s means the end (markers or an open transaction).
const SOURCE_POLL: Duration = Duration::from_secs(5);
/// One poll of the target: short, so quiet is measured finely.
const TARGET_POLL: Duration = Duration::from_millis(500);
/// Quiet at or past the target's end after which it has no more: a few
/// polls, for brokers whose end offsets count batches.
const QUIET_AT_END: Duration = Duration::from_secs(2);
/// Quiet anywhere after which the target has no more: a read-committed
/// position moving past aborted records is quiet too, never this long.
const QUIET_LIMIT: Duration = Duration::from_secs(15);
/// Source records held ahead of the target, and matched ones remembered
/// for duplicates: the memory bound.
const WINDOW: usize = 10_000;

/// What to verify; built by the command line, or in code with
/// [`Args::for_flow`].
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Args {
    /// The flow to verify.
    #[arg(long)]
    pub(crate) flow: String,
    /// Only this source topic [default: every topic the flow replicates].
    #[arg(long)]
    pub(crate) topic: Option<String>,
    /// Compare records of the last DURATION (e.g. 1h), by timestamp.
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "last")]
    pub(crate) since: Option<Duration>,
    /// Compare the last N records of each partition [default: 10000].
    #[arg(long)]
    pub(crate) last: Option<u64>,
    /// JSON lines for scripts instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

impl Args {
    /// The command line's defaults: every topic of `flow`, the last 10,000
    /// records of each partition, a table.
    pub(crate) fn for_flow(flow: &str) -> Args {
        Args {
            flow: flow.to_owned(),
            topic: None,
            since: None,
            last: None,
            json: false,
        }
    }
}

/// One partition's comparison.
#[derive(Debug, Clone)]
pub(crate) struct Checked {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    /// Source offsets `[from, to)`; `to` is the committed position.
    pub(crate) from: i64,
    pub(crate) to: i64,
    /// Where record `from` was written on the remote partition.
    pub(crate) target_from: i64,
    pub(crate) report: Report,
}

/// What [`verify_partitions`] found.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outcome {
    /// No partition has missing, mismatched or foreign records, and every
    /// partition with a range could be aligned.
    pub(crate) ok: bool,
    /// The partitions compared (those skipped with a note are not here).
    pub(crate) partitions: Vec<Checked>,
}

/// Where one partition's comparison runs.
struct Range {
    topic: String,
    partition: i32,
    /// Source offsets `[from, to)`; `to` is the committed position.
    from: i64,
    to: i64,
    /// Where record `from` was written on the remote partition.
    target_from: i64,
    /// Source records from here to `from` are read first and remembered:
    /// a session that started below `from` wrote copies of them after
    /// `target_from` (at-least-once re-sends), which are repeats.
    before: i64,
}

pub fn run(config: &Config, args: &Args) -> ExitCode {
    let Some(flow) = config.flow(&args.flow) else {
        eprintln!("strait: no flow named {:?}", args.flow);
        return ExitCode::from(2);
    };
    match verify(config, flow, args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("strait: verify {}: {e:#}", flow.name);
            ExitCode::from(2)
        }
    }
}

/// Verifies `flow` as `strait verify` does, printing as it does; true when
/// nothing is missing, mismatched or foreign.
pub(crate) fn verify(config: &Config, flow: &Flow, args: &Args) -> anyhow::Result<bool> {
    Ok(verify_partitions(config, flow, args)?.ok)
}

/// [`verify`], with each partition's report (e.g. where the target's copy
/// ends: [`Report::last_matched`]).
pub(crate) fn verify_partitions(
    config: &Config,
    flow: &Flow,
    args: &Args,
) -> anyhow::Result<Outcome> {
    let clusters = config.clusters_of(flow);
    let group = flow.commit_group(&config.deployment);
    let source: BaseConsumer = manual_consumer(&clusters.source, &group).create()?;
    let partitions = crate::dr::source_partitions(config, flow, args.topic.as_deref())?;
    if partitions.is_empty() {
        anyhow::bail!(
            "no source topic of the flow{}",
            args.topic
                .as_ref()
                .map(|t| format!(" named {t:?}"))
                .unwrap_or_default()
        );
    }

    let mut tpl = TopicPartitionList::new();
    for tp in &partitions {
        tpl.add_partition(&tp.topic, tp.partition);
    }
    let committed: BTreeMap<TopicPartition, NextOffset> = source
        .committed_offsets(tpl, TIMEOUT)?
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => {
                Some((TopicPartition::new(e.topic(), e.partition()), NextOffset(o)))
            }
            _ => None,
        })
        .collect();
    let syncs = read_syncs(config, flow)?;

    if !args.json {
        println!("TOPIC  PARTITION  RANGE  COMPARED  MISSING  EXTRA  MISMATCHED  FOREIGN  UNREPLICATED  FIRST_MISSING  FIRST_EXTRA  FIRST_MISMATCHED  FIRST_FOREIGN");
    }
    let mut out = Outcome {
        ok: true,
        partitions: Vec::new(),
    };
    let mut unaligned = false;
    let started = Instant::now();
    let mut total = 0u64;
    for tp in partitions {
        let (to, synced) = (committed.get(&tp).copied(), syncs.get(&tp));
        let TopicPartition { topic, partition } = tp;
        let Some(NextOffset(to)) = to else {
            note(
                args,
                &topic,
                partition,
                "nothing committed yet: nothing to compare",
            );
            continue;
        };
        let (low, _) = source.fetch_watermarks(&topic, partition, TIMEOUT)?;
        let wanted = match (args.since, args.last) {
            (Some(d), _) => since_offset(&source, &topic, partition, d)?.unwrap_or(to),
            (None, n) => to - n.unwrap_or(10_000) as i64,
        }
        .max(low)
        .min(to);
        // Syncs below the log start cannot be read from: their records
        // are gone from the source, and their copies would look foreign.
        let history: Vec<(i64, i64)> = synced
            .map(|h| h.iter().filter(|s| s.0 >= low).copied().collect())
            .unwrap_or_default();
        // The latest sync at or before the start; else the earliest one
        // after it (the range then starts there, and says so). An empty
        // range (nothing new since DURATION ago) is aligned too: the
        // target past the committed position's copy is still checked.
        let aligned = history
            .iter()
            .rev()
            .find(|s| s.0 <= wanted)
            .or_else(|| history.iter().find(|s| s.0 < to))
            .copied();
        let Some((from, target_from)) = aligned else {
            if wanted >= to {
                note(args, &topic, partition, "no records in the range");
            } else {
                note(
                    args,
                    &topic,
                    partition,
                    "no offset sync below the committed position: cannot align",
                );
                unaligned = true;
            }
            continue;
        };
        if from > wanted {
            eprintln!("note: {topic}/{partition}: the oldest offset sync is at {from}; the range starts there");
        }
        // A session that started below `from` and wrote past `target_from`
        // re-sent records from before the range there (its first record
        // has a sync): those are read first, up to the memory bound.
        let before = history
            .iter()
            .filter(|s| s.1 > target_from && s.0 < from)
            .map(|s| s.0)
            .min()
            .map_or(from, |u| u.max(from - WINDOW as i64));
        let range = Range {
            topic: topic.clone(),
            partition,
            from,
            to,
            target_from,
            before,
        };
        let checked = Checked {
            report: compare_range(config, flow, &range, started, &mut total)?,
            topic,
            partition,
            from,
            to,
            target_from,
        };
        print_report(args, &checked);
        out.partitions.push(checked);
    }
    let bad = |f: fn(&Report) -> u64| out.partitions.iter().any(|c| f(&c.report) > 0);
    let mut wrong = Vec::new();
    if bad(|r| r.missing.n + r.mismatched.n) {
        wrong.push("MISSING OR MISMATCHED RECORDS");
    }
    if bad(|r| r.foreign.n) {
        wrong.push("FOREIGN RECORDS");
    }
    if unaligned {
        wrong.push("PARTITIONS THAT CANNOT BE ALIGNED");
    }
    out.ok = !unaligned && out.partitions.iter().all(|c| c.report.ok());
    let unreplicated: u64 = out.partitions.iter().map(|c| c.report.unreplicated).sum();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "verify: {total} records compared in {secs:.1} s ({:.0} records/s): {}{}",
        total as f64 / secs.max(1e-9),
        if out.ok {
            "ok".to_owned()
        } else {
            wrong.join(", ")
        },
        if unreplicated > 0 {
            format!(
                " ({unreplicated} source records past the committed position not replicated yet)"
            )
        } else {
            String::new()
        }
    );
    Ok(out)
}

fn note(args: &Args, topic: &str, partition: i32, what: &str) {
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "topic": topic, "partition": partition, "note": what })
        );
    } else {
        println!("{topic}  {partition}  -  {what}");
    }
}

fn print_report(args: &Args, r: &Checked) {
    let rep = &r.report;
    let f = |o: Option<i64>| o.map_or("-".to_owned(), |o| o.to_string());
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "topic": r.topic, "partition": r.partition, "from": r.from, "to": r.to,
                "target_from": r.target_from,
                "compared": rep.compared, "missing": rep.missing.n, "extra": rep.extra.n,
                "mismatched": rep.mismatched.n, "foreign": rep.foreign.n,
                "unreplicated": rep.unreplicated, "first_missing": rep.missing.first,
                "first_extra": rep.extra.first, "first_mismatched": rep.mismatched.first,
                "first_foreign": rep.foreign.first, "last_matched": rep.last_matched,
            })
        );
    } else {
        println!(
            "{}  {}  {}..{}  {}  {}  {}  {}  {}  {}  {}  {}  {}  {}",
            r.topic,
            r.partition,
            r.from,
            r.to,
            rep.compared,
            rep.missing.n,
            rep.extra.n,
            rep.mismatched.n,
            rep.foreign.n,
            rep.unreplicated,
            f(rep.missing.first),
            f(rep.extra.first),
            f(rep.mismatched.first),
            f(rep.foreign.first)
        );
    }
}

/// (upstream, downstream) offset pairs of each source partition, oldest first.
pub(crate) type SyncHistory = BTreeMap<TopicPartition, Vec<(i64, i64)>>;

/// The group id of `strait verify`'s readers (and of the commands built on
/// it), under the flow's reader prefix.
fn reader(config: &Config, flow: &Flow) -> String {
    flow.reader_group(&config.deployment, "verify")
}

/// The flow's offset syncs, by source partition.
pub(crate) fn read_syncs(config: &Config, flow: &Flow) -> anyhow::Result<SyncHistory> {
    let clusters = config.clusters_of(flow);
    let (_, topic) = flow.offset_syncs();
    let mut reader = InternalTopic::open(&clusters.syncs, &reader(config, flow), &topic)?;
    let mut out = SyncHistory::new();
    reader.read_to_end(TIMEOUT, |key, value, _| {
        if let Ok(s) = OffsetSync::decode(key, value) {
            out.entry(TopicPartition::new(s.topic, s.partition))
                .or_default()
                .push((s.upstream_offset, s.downstream_offset));
        }
    })?;
    for v in out.values_mut() {
        v.sort();
    }
    Ok(out)
}

/// The first offset whose timestamp is at or after `now - ago`.
fn since_offset(
    c: &BaseConsumer,
    topic: &str,
    partition: i32,
    ago: Duration,
) -> anyhow::Result<Option<i64>> {
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)?
        .saturating_sub(ago)
        .as_millis() as i64;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(at))?;
    let got = c.offsets_for_times(tpl, TIMEOUT)?;
    Ok(
        match got.find_partition(topic, partition).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        },
    )
}

/// The hashes a record is compared by: its key, and everything the issue
/// names (key, value, headers, timestamp, partition).
pub(crate) fn seen(m: &BorrowedMessage<'_>) -> Seen {
    let mut k = std::collections::hash_map::DefaultHasher::new();
    m.key().hash(&mut k);
    let key = k.finish();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    m.key().hash(&mut h);
    m.payload().hash(&mut h);
    m.partition().hash(&mut h);
    m.timestamp().to_millis().hash(&mut h);
    if let Some(hs) = m.headers() {
        for x in hs.iter() {
            x.key.hash(&mut h);
            x.value.hash(&mut h);
        }
    }
    Seen {
        offset: m.offset(),
        key,
        content: h.finish(),
    }
}

/// The consumer's fetch position in its one assigned partition.
fn position(c: &BaseConsumer) -> anyhow::Result<Option<i64>> {
    Ok(c.position()?
        .elements()
        .iter()
        .find_map(|e| match e.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }))
}

/// Streams one partition of each side through a [`Comparer`]: the source
/// from `before` (see [`Range::before`]) to its end, the target from
/// `target_from` to its end.
fn compare_range(
    config: &Config,
    flow: &Flow,
    r: &Range,
    started: Instant,
    total: &mut u64,
) -> anyhow::Result<Report> {
    let clusters = config.clusters_of(flow);
    let source: BaseConsumer = manual_consumer(&clusters.source, &reader(config, flow))
        .set("auto.offset.reset", "error")
        .create()?;
    let target: BaseConsumer = manual_consumer(&clusters.target, &reader(config, flow))
        .set("auto.offset.reset", "error")
        .create()?;
    let remote = flow.remote_topic(&r.topic);
    // The target's end first, then the source's: every record on the
    // target below its end was copied from a source record that existed
    // before, so below the source's end. Target records past its end are
    // not classified (a live flow's newest copies may be of source records
    // past the source's end).
    let (_, target_end) = target.fetch_watermarks(&remote, r.partition, TIMEOUT)?;
    let (_, source_end) = source.fetch_watermarks(&r.topic, r.partition, TIMEOUT)?;
    let source_end = source_end.max(r.to);
    let mut s = TopicPartitionList::new();
    s.add_partition_offset(&r.topic, r.partition, Offset::Offset(r.before))?;
    source.assign(&s)?;
    let mut t = TopicPartitionList::new();
    t.add_partition_offset(&remote, r.partition, Offset::Offset(r.target_from))?;
    target.assign(&t)?;

    let mut c = Comparer::new(WINDOW, r.to);
    if r.before >= source_end {
        c.source_done();
    }
    let mut next_progress = Instant::now() + PROGRESS_EVERY;
    let mut target_at = r.target_from;
    let mut idle_since: Option<Instant> = None;
    let read_source = |c: &mut Comparer, unseen: bool| -> anyhow::Result<()> {
        match source.poll(SOURCE_POLL) {
            Some(Ok(m)) if m.offset() < r.from => c.before(seen(&m)),
            Some(Ok(m)) if m.offset() < source_end => {
                if unseen {
                    c.unseen(m.offset());
                } else {
                    c.source(seen(&m));
                }
                if m.offset() + 1 >= source_end {
                    c.source_done();
                }
            }
            Some(Ok(_)) => c.source_done(),
            Some(Err(e)) => anyhow::bail!("reading {}/{}: {e}", r.topic, r.partition),
            // Nothing more: the rest holds no records (transaction
            // markers), or what follows is not readable yet (an open
            // transaction: strait, reading committed records too, has not
            // copied it either), or the source is stuck below the
            // committed position.
            None => {
                let at = position(&source)?;
                if at.is_none_or(|o| o >= r.to) {
                    c.source_done();
                } else {
                    anyhow::bail!(
                        "reading {}/{}: no record within 5 s at {at:?}, before the committed position {}",
                        r.topic,
                        r.partition,
                        r.to
                    );
                }
            }
        }
        Ok(())
    };
    loop {
        while c.wants_source() {
            read_source(&mut c, false)?;
        }
        match target.poll(TARGET_POLL) {
            Some(Ok(m)) => {
                idle_since = None;
                let seen = seen(&m);
                // Past the end taken: done, unless the range still waits
                // for this record (some brokers' end offsets count batches
                // and fall short; copies of committed records were all
                // written before the end was taken).
                if m.offset() >= target_end && (c.range_done() || !c.expects(&seen)) {
                    break;
                }
                target_at = m.offset() + 1;
                c.target(seen);
                *total += 1;
                // The last record before the end: nothing more to wait for.
                if target_at >= target_end && c.range_done() {
                    break;
                }
            }
            Some(Err(e)) => anyhow::bail!("reading {remote}/{}: {e}", r.partition),
            // Quiet past the end: the target has no more (some brokers'
            // end offsets count batches, and a read-committed position
            // moves past aborted records, so quiet counts too).
            None => {
                let at = position(&target)?.unwrap_or(target_at).max(target_at);
                let quiet = idle_since.get_or_insert_with(Instant::now).elapsed();
                if (at >= target_end && quiet > QUIET_AT_END) || quiet > QUIET_LIMIT {
                    break;
                }
            }
        }
        if Instant::now() >= next_progress {
            next_progress = Instant::now() + PROGRESS_EVERY;
            eprintln!(
                "verify: {}/{}: target at {target_at}; {} records compared so far ({:.0}/s)",
                r.topic,
                r.partition,
                *total,
                *total as f64 / started.elapsed().as_secs_f64().max(1e-9)
            );
        }
    }
    // The target ran out: the source records left are not on it (missing
    // below the committed position, not replicated yet past it).
    c.target_done();
    while !c.is_source_done() {
        read_source(&mut c, true)?;
    }
    Ok(c.finish())
}
