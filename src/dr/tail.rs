//! `strait tail`: what a failed source cluster held but never replicated.
//!
//! After an unplanned failover the target lacks the source's last records:
//! the replication lag at the moment the source failed. Once the source is
//! back, this finds them per partition, from the first record the target
//! has no copy of to the source's end, counts them, and on request copies
//! them to a topic on the target the operator names (never into the remote
//! topic, whose consumers moved on).
//!
//! Where the target's copy ends is found by content, not assumed: strait's
//! committed progress trails what it wrote (commits follow
//! acknowledgements), so from the newest offset sync both partitions are
//! read and compared like `strait verify` does; the last source record
//! found on the target ends the copy. Records after it are the tail.
//!
//! Copies carry a header naming their source record
//! (`strait.tail.source` = `cluster/topic/partition/offset`); a second run
//! reads the last copy's header and resumes after it, so running it twice
//! copies nothing twice.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use strait_common::config::{Config, Flow};
use strait_common::kafka::{manual_consumer, ms, reliable_producer};
use strait_common::model::TopicPartition;

use super::{print_table, progress, source_partitions, watermarks, TIMEOUT};
use crate::verify::compare::Comparer;

/// The header a copied record carries: where it came from.
pub const SOURCE_HEADER: &str = "strait.tail.source";
/// Source records held ahead of the target while looking for the end of
/// the copy.
const WINDOW: usize = 10_000;
/// One poll of a range read: short, so a read past its end's markers ends
/// soon after the position passes it.
const RANGE_POLL: Duration = Duration::from_millis(500);
/// Empty polls of [`RANGE_POLL`] before a range read gives up: 15 s
/// without a record below its end is a broker not serving it.
const RANGE_QUIET_POLLS: u32 = 30;
/// One poll of the source while comparing a copy: a broker that has the
/// records hands them over in far less; none in 5 s means the end.
const COMPARE_POLL: Duration = Duration::from_secs(5);
/// A wait for the copies' producer to free room in its queue.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(100);
/// How long the copies may take to be acknowledged at the end of a run:
/// librdkafka's own delivery timeout is 300 s, but a tail is small and an
/// operator waits for it.
const COPY_FLUSH: Duration = Duration::from_secs(60);
/// How long the copies' producer waits to fill a batch: the tail is read
/// as fast as the source serves it, so a few milliseconds fill batches
/// without holding a copy back noticeably.
const COPY_LINGER: Duration = Duration::from_millis(5);

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The flow whose source came back (source → target).
    #[arg(long)]
    flow: String,
    /// Only this source topic [default: every topic the flow replicates].
    #[arg(long)]
    topic: Option<String>,
    /// Copy the tail to the target, to the topic this names: `{topic}` is
    /// the source topic (e.g. `us.{topic}.unreplicated`); created with the
    /// source's partition count if missing; partition for partition.
    #[arg(long, value_name = "TEMPLATE")]
    copy_to: Option<String>,
    /// With --copy-to: show what would be copied, copy nothing.
    #[arg(long, requires = "copy_to")]
    dry_run: bool,
    /// Only records written before this time (RFC 3339, such as
    /// 2026-12-04T03:12:00Z: when the source failed). Records its producers
    /// wrote after it came back are then not counted as its tail
    /// [default: everything up to its end now].
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    until: Option<SystemTime>,
}

fn parse_time(s: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(s)
        .map_err(|e| format!("{e}: give a time as 2026-12-04T03:12:00Z"))
}

/// One partition's tail: source offsets `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    pub topic: String,
    pub partition: i32,
    /// strait's committed progress (absent if it never committed).
    pub committed: Option<i64>,
    /// The first source offset the target holds no copy of.
    pub from: i64,
    /// The source's end offset.
    pub to: i64,
    /// Records in `[from, to)` (transaction markers and aborted records
    /// are not records).
    pub records: u64,
    /// Timestamps of the first and last of them (ms since the epoch).
    pub first_ts: Option<i64>,
    pub last_ts: Option<i64>,
    /// Copied by this run, and already copied by an earlier one.
    pub copied: u64,
    pub copied_before: u64,
}

pub fn run(config: &Config, args: &Args) -> ExitCode {
    let Some(flow) = config.flow(&args.flow) else {
        eprintln!("strait: no flow named {:?}", args.flow);
        return ExitCode::from(2);
    };
    if let Some(t) = &args.copy_to {
        if !t.contains("{topic}") && source_count(config, flow, args) != Some(1) {
            eprintln!("strait: --copy-to {t:?} has no {{topic}}: copies of different topics would share one topic (give {{topic}}, or --topic)");
            return ExitCode::from(2);
        }
    }
    match tails(config, flow, args) {
        Ok(tails) => {
            report(flow, &tails, args);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("strait: tail {}: {e:#}", flow.name);
            ExitCode::FAILURE
        }
    }
}

fn source_count(config: &Config, flow: &Flow, args: &Args) -> Option<usize> {
    let parts = source_partitions(config, flow, args.topic.as_deref()).ok()?;
    let mut topics: Vec<_> = parts.into_iter().map(|tp| tp.topic).collect();
    topics.dedup();
    Some(topics.len())
}

fn report(flow: &Flow, tails: &[Tail], args: &Args) {
    let rows: Vec<Vec<String>> = tails
        .iter()
        .map(|t| {
            let ts = |x: Option<i64>| {
                x.filter(|ms| *ms >= 0).map_or("-".to_owned(), |ms| {
                    let at = std::time::UNIX_EPOCH + Duration::from_millis(ms as u64);
                    humantime::format_rfc3339_millis(at).to_string()
                })
            };
            let mut row = vec![
                t.topic.clone(),
                t.partition.to_string(),
                t.committed.map_or("-".into(), |c| c.to_string()),
                format!("{}..{}", t.from, t.to),
                t.records.to_string(),
                ts(t.first_ts),
                ts(t.last_ts),
            ];
            if let Some(tpl) = &args.copy_to {
                row.push(copy_topic(tpl, &t.topic));
                row.push(if args.dry_run {
                    format!("would copy {}", t.records.saturating_sub(t.copied_before))
                } else {
                    t.copied.to_string()
                });
                row.push(t.copied_before.to_string());
            }
            row
        })
        .collect();
    let mut header = vec![
        "topic",
        "partition",
        "committed",
        "tail",
        "records",
        "first timestamp",
        "last timestamp",
    ];
    if args.copy_to.is_some() {
        header.extend(["copied to", "copied", "copied before"]);
    }
    print_table(&header, &rows);
    let total: u64 = tails.iter().map(|t| t.records).sum();
    let partitions = tails.iter().filter(|t| t.records > 0).count();
    let before = args.until.map_or(String::new(), |t| {
        format!(" (written before {})", humantime::format_rfc3339_millis(t))
    });
    println!(
        "tail {}: {total} record(s){before} in {partitions} partition(s) of {} were never replicated to {}",
        flow.name, flow.source, flow.target
    );
    if let Some(tpl) = &args.copy_to {
        let copied: u64 = tails.iter().map(|t| t.copied).sum();
        if args.dry_run {
            println!("dry run: nothing copied");
        } else {
            println!(
                "copied {copied} record(s) to {} on {} (each with header {SOURCE_HEADER})",
                tpl, flow.target
            );
        }
    } else if total > 0 {
        println!(
            "groups failed back to {} resume before them and read them there; to have them on {} too: --copy-to TEMPLATE",
            flow.source, flow.target
        );
    }
}

fn copy_topic(template: &str, topic: &str) -> String {
    template.replace("{topic}", topic)
}

/// Every partition's tail (and, with `--copy-to`, its copy).
fn tails(config: &Config, flow: &Flow, args: &Args) -> anyhow::Result<Vec<Tail>> {
    let clusters = config.clusters_of(flow);
    let partitions = source_partitions(config, flow, args.topic.as_deref())?;
    if partitions.is_empty() {
        anyhow::bail!("no source topic of the flow on {}", flow.source);
    }
    let committed = progress(config, flow, &partitions)?;
    let syncs = crate::verify::read_syncs(config, flow)?;
    let source: BaseConsumer = manual_consumer(&clusters.source, &reader(config, flow))
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "error")
        .create()?;
    let ends = watermarks(&source, &partitions)?;
    let cut = match args.until {
        Some(t) => first_offsets_at(&source, &partitions, t)?,
        None => BTreeMap::new(),
    };
    let mut copier = match &args.copy_to {
        Some(tpl) if !args.dry_run => Some(Copier::new(config, flow, tpl, &partitions)?),
        _ => None,
    };
    let mut out = Vec::new();
    for part in &partitions {
        let (low, end) = ends[part];
        let end = cut.get(part).map_or(end, |&c| c.clamp(low, end));
        let copy_end = match syncs.get(part).and_then(|h| h.last()) {
            // The newest sync: the copy reaches at least its record.
            Some(&(u, d)) => copy_ends_at(config, flow, part, (u, d), end)?,
            None => None,
        };
        let c = committed.get(part).map(|c| c.0);
        let from = copy_end
            .map(|m| m + 1)
            .into_iter()
            .chain(c)
            .max()
            .unwrap_or(low)
            .max(low);
        let mut tail = Tail {
            topic: part.topic.clone(),
            partition: part.partition,
            committed: c,
            from,
            to: end,
            records: 0,
            first_ts: None,
            last_ts: None,
            copied: 0,
            copied_before: 0,
        };
        let resume = match (&mut copier, &args.copy_to) {
            (Some(cp), _) => cp.copied_through(part)?,
            (None, Some(tpl)) if args.dry_run => {
                Copier::copied_through_on(config, flow, &copy_topic(tpl, &part.topic), part)?
            }
            _ => None,
        };
        if from < end {
            read_range(&source, part, from, end, |m| {
                tail.records += 1;
                let ts = m.timestamp().to_millis();
                tail.first_ts = tail.first_ts.or(ts);
                tail.last_ts = ts.or(tail.last_ts);
                if resume.is_some_and(|r| m.offset() <= r) {
                    tail.copied_before += 1;
                } else if let Some(cp) = &mut copier {
                    cp.send(part, m)?;
                    tail.copied += 1;
                }
                Ok(())
            })?;
        }
        if let Some(cp) = &mut copier {
            cp.flush()?;
        }
        out.push(tail);
    }
    Ok(out)
}

/// The first offset of each partition whose record was written at `t` or
/// later (ListOffsets by timestamp); absent where every record is older.
fn first_offsets_at(
    consumer: &BaseConsumer,
    partitions: &[TopicPartition],
    t: SystemTime,
) -> anyhow::Result<BTreeMap<TopicPartition, i64>> {
    let at = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| anyhow::anyhow!("--until before 1970"))?
        .as_millis() as i64;
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(at))?;
    }
    let found = consumer.offsets_for_times(tpl, TIMEOUT)?;
    let mut out = BTreeMap::new();
    for e in found.elements() {
        if let Some(err) = e.error().err() {
            anyhow::bail!(
                "offset at --until of {}/{}: {err}",
                e.topic(),
                e.partition()
            );
        }
        if let Offset::Offset(o) = e.offset() {
            out.insert(TopicPartition::new(e.topic(), e.partition()), o);
        }
    }
    Ok(out)
}

/// Reads `part` on `consumer` over `[from, to)`, handing each record to
/// `each`; done at `to` (or when the position passes it without a record:
/// markers).
fn read_range(
    consumer: &BaseConsumer,
    part: &TopicPartition,
    from: i64,
    to: i64,
    mut each: impl FnMut(&rdkafka::message::BorrowedMessage<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&part.topic, part.partition, Offset::Offset(from))?;
    consumer.assign(&tpl)?;
    let mut quiet = 0;
    loop {
        match consumer.poll(RANGE_POLL) {
            Some(Ok(m)) => {
                quiet = 0;
                if m.offset() >= to {
                    return Ok(());
                }
                each(&m)?;
                if m.offset() + 1 >= to {
                    return Ok(());
                }
            }
            Some(Err(e)) => anyhow::bail!("reading {part}: {e}"),
            None => {
                let at = consumer
                    .position()?
                    .elements()
                    .iter()
                    .find_map(|e| match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    });
                if at.is_some_and(|o| o >= to) {
                    return Ok(());
                }
                quiet += 1;
                if quiet > RANGE_QUIET_POLLS {
                    anyhow::bail!(
                        "reading {part}: no record for {} s at {at:?}, before its end {to}",
                        (RANGE_POLL * RANGE_QUIET_POLLS).as_secs()
                    );
                }
            }
        }
    }
}

/// The last source offset whose record the remote partition holds, looking
/// from the sync `(u, d)` on (the source read up to `source_end`): both
/// sides compared by content, in order.
fn copy_ends_at(
    config: &Config,
    flow: &Flow,
    part: &TopicPartition,
    (u, d): (i64, i64),
    source_end: i64,
) -> anyhow::Result<Option<i64>> {
    let clusters = config.clusters_of(flow);
    let remote = TopicPartition::new(flow.remote_topic(&part.topic), part.partition);
    let target: BaseConsumer = manual_consumer(&clusters.target, &reader(config, flow))
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "error")
        .create()?;
    let (_, target_end) = target
        .fetch_watermarks(&remote.topic, remote.partition, TIMEOUT)
        .map_err(|e| anyhow::anyhow!("end offset of {remote} on the target: {e}"))?;
    let source: BaseConsumer = manual_consumer(&clusters.source, &reader(config, flow))
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "error")
        .create()?;
    let mut s = TopicPartitionList::new();
    s.add_partition_offset(&part.topic, part.partition, Offset::Offset(u))?;
    source.assign(&s)?;
    let mut c = Comparer::new(WINDOW, u);
    let mut source_at = u;
    let mut feed_source = |c: &mut Comparer| -> anyhow::Result<()> {
        while c.wants_source() {
            if source_at >= source_end {
                c.source_done();
                break;
            }
            match source.poll(COMPARE_POLL) {
                Some(Ok(m)) => {
                    source_at = m.offset() + 1;
                    c.source(crate::verify::seen(&m));
                }
                Some(Err(e)) => anyhow::bail!("reading {part}: {e}"),
                None => {
                    c.source_done();
                    break;
                }
            }
        }
        Ok(())
    };
    read_range(&target, &remote, d, target_end, |m| {
        feed_source(&mut c)?;
        c.target(crate::verify::seen(m));
        Ok(())
    })?;
    c.target_done();
    Ok(c.finish().last_matched)
}

/// Copies tail records, partition for partition, to the named topics.
struct Copier {
    producer: ThreadedProducer<Deliveries>,
    template: String,
    source_alias: String,
    config: Config,
    flow: Flow,
}

/// Counts copies the target refused, keeping the first reason.
#[derive(Default)]
struct Deliveries {
    failed: std::sync::atomic::AtomicU64,
    first: std::sync::Mutex<Option<String>>,
}

impl rdkafka::ClientContext for Deliveries {}

impl rdkafka::producer::ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        if let Err((e, m)) = result {
            self.failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Ok(mut first) = self.first.lock() {
                first.get_or_insert_with(|| format!("{}/{}: {e}", m.topic(), m.partition()));
            }
        }
    }
}

impl Copier {
    fn new(
        config: &Config,
        flow: &Flow,
        template: &str,
        partitions: &[TopicPartition],
    ) -> anyhow::Result<Copier> {
        let clusters = config.clusters_of(flow);
        let mut counts: BTreeMap<String, i32> = BTreeMap::new();
        for tp in partitions {
            *counts.entry(tp.topic.clone()).or_default() += 1;
        }
        for (topic, n) in &counts {
            ensure_topic(
                &clusters.target,
                &reader(config, flow),
                &copy_topic(template, topic),
                *n,
            )?;
        }
        let producer = reliable_producer(&clusters.target)
            .set("linger.ms", ms(COPY_LINGER))
            .create_with_context(Deliveries::default())?;
        Ok(Copier {
            producer,
            template: template.to_owned(),
            source_alias: flow.source.clone(),
            config: config.clone(),
            flow: flow.clone(),
        })
    }

    /// The last source offset of `part` a run copied before.
    fn copied_through(&mut self, part: &TopicPartition) -> anyhow::Result<Option<i64>> {
        let topic = copy_topic(&self.template, &part.topic);
        Self::copied_through_on(&self.config, &self.flow, &topic, part)
    }

    /// The last source offset of `part` copied to `topic` (from the last
    /// copy's header), if the topic exists and holds one.
    fn copied_through_on(
        config: &Config,
        flow: &Flow,
        topic: &str,
        part: &TopicPartition,
    ) -> anyhow::Result<Option<i64>> {
        let clusters = config.clusters_of(flow);
        let c: BaseConsumer = manual_consumer(&clusters.target, &reader(config, flow))
            .set("auto.offset.reset", "error")
            .create()?;
        let Ok((low, high)) = c.fetch_watermarks(topic, part.partition, TIMEOUT) else {
            return Ok(None);
        };
        if high <= low {
            return Ok(None);
        }
        let mut last = None;
        read_range(
            &c,
            &TopicPartition::new(topic, part.partition),
            (high - 1).max(low),
            high,
            |m| {
                last = m.headers().and_then(|hs| {
                    hs.iter()
                        .find(|h| h.key == SOURCE_HEADER)
                        .and_then(|h| h.value)
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .and_then(|v| v.rsplit('/').next())
                        .and_then(|o| o.parse::<i64>().ok())
                });
                Ok(())
            },
        )?;
        Ok(last)
    }

    fn send(
        &mut self,
        part: &TopicPartition,
        m: &rdkafka::message::BorrowedMessage<'_>,
    ) -> anyhow::Result<()> {
        let topic = copy_topic(&self.template, &part.topic);
        let origin = format!("{}/{part}/{}", self.source_alias, m.offset());
        let mut headers = OwnedHeaders::new();
        if let Some(hs) = m.headers() {
            for h in hs.iter() {
                headers = headers.insert(Header {
                    key: h.key,
                    value: h.value,
                });
            }
        }
        headers = headers.insert(Header {
            key: SOURCE_HEADER,
            value: Some(origin.as_bytes()),
        });
        let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&topic)
            .partition(part.partition)
            .headers(headers);
        if let Some(k) = m.key() {
            rec = rec.key(k);
        }
        if let Some(v) = m.payload() {
            rec = rec.payload(v);
        }
        if let Some(ts) = m.timestamp().to_millis() {
            rec = rec.timestamp(ts);
        }
        let mut rec = rec;
        loop {
            match self.producer.send(rec) {
                Ok(()) => return Ok(()),
                Err((e, back))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                {
                    self.producer.poll(QUEUE_FULL_WAIT);
                    rec = back;
                }
                Err((e, _)) => anyhow::bail!("copying to {topic}/{}: {e}", part.partition),
            }
        }
    }

    /// Waits until every copy is acknowledged; a refused one fails the run.
    fn flush(&mut self) -> anyhow::Result<()> {
        self.producer
            .flush(COPY_FLUSH)
            .map_err(|e| anyhow::anyhow!("copying the tail: {e}"))?;
        let ctx = self.producer.context();
        let failed = ctx.failed.load(std::sync::atomic::Ordering::Relaxed);
        if failed > 0 {
            let first = ctx.first.lock().ok().and_then(|f| f.clone());
            anyhow::bail!(
                "the target refused {failed} copied record(s) (first: {}); a second run resumes after the last copy",
                first.unwrap_or_default()
            );
        }
        Ok(())
    }
}

/// The group id of this command's readers, under the flow's reader prefix.
fn reader(config: &Config, flow: &Flow) -> String {
    flow.reader_group(&config.deployment, "tail")
}

/// Creates `topic` on `cluster` with `partitions` partitions unless it
/// exists (with at least that many).
fn ensure_topic(
    cluster: &strait_common::config::ClusterConfig,
    group: &str,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let probe: BaseConsumer = manual_consumer(cluster, group).create()?;
    let md = probe.fetch_metadata(Some(topic), TIMEOUT)?;
    if let Some(t) = md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
    {
        if (t.partitions().len() as i32) < partitions {
            anyhow::bail!(
                "{topic} exists on the target with {} partitions; the tail needs {partitions}",
                t.partitions().len()
            );
        }
        return Ok(());
    }
    let admin: AdminClient<_> = strait_common::kafka::client_config(cluster).create()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
    let res = rt.block_on(admin.create_topics([&new], &AdminOptions::new()))?;
    for r in res {
        if let Err((t, code)) = r {
            if code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                anyhow::bail!("creating {t} on the target: {code}");
            }
        }
    }
    Ok(())
}
