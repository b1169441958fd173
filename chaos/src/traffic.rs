//! Sequenced traffic and the checker. The producer writes record `seq` of
//! partition `p` as value `p{p}-{seq}` to partition `p` of the source topic
//! and notes which the source acknowledged; the checker tails the remote
//! topic on the target from the beginning and notes when each record first
//! arrived. From the two: missing records (acknowledged on the source,
//! absent on the target), duplicates, records whose first arrival came
//! after a later record's (order), the longest time a partition made no
//! progress, and when the target caught up with a given moment.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};
use strait_common::formats::Checkpoint;
use strait_testkit::log::{Committed, LogReader, Tally};

const ACKED: u8 = 1;
const FAILED: u8 = 2;
const SEEN: u8 = 4;

#[derive(Default)]
struct Part {
    /// Per sequence number: ACKED | FAILED | SEEN.
    state: Vec<u8>,
    /// Per sequence number: when it first arrived on the target.
    seen_at: Vec<Option<Instant>>,
    /// Highest source offset acknowledged (for the application's commits).
    high_offset: i64,
    /// Every sequence below is seen or failed for good.
    done_below: usize,
    received: u64,
    max_first: Option<usize>,
    out_of_order: u64,
    last_progress: Option<Instant>,
    longest_stall: Duration,
    /// The first duplicate: its sequence and where on the target the copy
    /// was (to find it in the workers' logs).
    first_duplicate: Option<(usize, i64)>,
}

impl Part {
    fn mark(&mut self, seq: usize, bit: u8) -> u8 {
        if self.state.len() <= seq {
            self.state.resize(seq + 1, 0);
        }
        let before = self.state[seq];
        self.state[seq] |= bit;
        before
    }

    fn advance(&mut self) {
        while self
            .state
            .get(self.done_below)
            .is_some_and(|s| s & (SEEN | FAILED) != 0)
        {
            self.done_below += 1;
        }
    }

    fn progress(&mut self, now: Instant) {
        if let Some(last) = self.last_progress {
            self.longest_stall = self.longest_stall.max(now - last);
        }
        self.last_progress = Some(now);
    }
}

struct Ledger {
    parts: Vec<Part>,
    /// Records handed to the producer per partition (the next sequence).
    sent: Vec<usize>,
    /// Values on the target that are not this run's records.
    foreign: u64,
    /// The log reader's count of what it showed and hid, when it read.
    tally: Option<Tally>,
}

impl Ledger {
    fn new(partitions: i32) -> Ledger {
        Ledger {
            parts: (0..partitions).map(|_| Part::default()).collect(),
            sent: vec![0; partitions as usize],
            foreign: 0,
            tally: None,
        }
    }

    /// A record read from the target: `p{partition}-{seq}` found in
    /// partition `found_in`.
    fn arrived(&mut self, value: Option<&[u8]>, found_in: i32, offset: i64, now: Instant) {
        let parsed = value
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.strip_prefix('p')?.split_once('-'))
            .and_then(|(p, s)| Some((p.parse::<i32>().ok()?, s.parse::<usize>().ok()?)));
        let Some((p, seq)) =
            parsed.filter(|&(p, _)| p == found_in && p >= 0 && (p as usize) < self.parts.len())
        else {
            self.foreign += 1;
            return;
        };
        let part = &mut self.parts[p as usize];
        part.received += 1;
        if part.mark(seq, SEEN) & SEEN != 0 {
            part.first_duplicate.get_or_insert((seq, offset));
            return; // a duplicate: no progress
        }
        match part.max_first {
            Some(max) if seq < max => part.out_of_order += 1,
            _ => part.max_first = Some(seq),
        }
        if part.seen_at.len() <= seq {
            part.seen_at.resize(seq + 1, None);
        }
        part.seen_at[seq] = Some(now);
        part.progress(now);
        part.advance();
    }

    fn outcome(&self, healed: &Healed) -> Outcome {
        let mut o = Outcome {
            foreign: self.foreign,
            transactions: self.tally,
            ..Outcome::default()
        };
        for (i, p) in self.parts.iter().enumerate() {
            let acked = p.state.iter().filter(|&&s| s & ACKED != 0).count() as u64;
            let seen = p.state.iter().filter(|&&s| s & SEEN != 0).count() as u64;
            o.produced += acked;
            o.unacknowledged += p.state.iter().filter(|&&s| s & ACKED == 0).count() as u64;
            o.missing += p
                .state
                .iter()
                .filter(|&&s| s & ACKED != 0 && s & SEEN == 0)
                .count() as u64;
            o.duplicates += p.received - seen;
            if let Some((seq, offset)) = p.first_duplicate {
                o.first_duplicates.push(format!(
                    "p{i}: {} from p{i}-{seq} (the copy at target offset {offset})",
                    p.received - seen
                ));
            }
            o.out_of_order += p.out_of_order;
            o.longest_stall = o.longest_stall.max(p.longest_stall);
        }
        // The last arrival of a record written before the faults ended.
        let mut last: Option<Instant> = None;
        let mut complete = true;
        for (p, &need) in self.parts.iter().zip(&healed.mark) {
            for seq in 0..need {
                if p.state.get(seq).is_some_and(|s| s & ACKED != 0) {
                    match p.seen_at.get(seq).copied().flatten() {
                        Some(t) => last = last.max(Some(t)),
                        None => complete = false,
                    }
                }
            }
        }
        o.recovery = complete
            .then(|| last.map_or(Duration::ZERO, |t| t.saturating_duration_since(healed.at)));
        o
    }
}

/// What one run of traffic came to.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Records the source acknowledged.
    pub produced: u64,
    /// Records the producer gave up on (never acknowledged; not expected).
    pub unacknowledged: u64,
    pub missing: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub longest_stall: Duration,
    pub foreign: u64,
    /// From the end of the faults until the last record written before it
    /// was on the target.
    pub recovery: Option<Duration>,
    /// With the log reader: the records it showed, and those of aborted
    /// and still open transactions, which it hid.
    pub transactions: Option<Tally>,
    /// Per partition with duplicates: how many, and the first.
    pub first_duplicates: Vec<String>,
}

/// The moment faults ended, and what had been written by then.
#[derive(Debug, Clone)]
pub struct Healed {
    pub at: Instant,
    pub mark: Vec<usize>,
}

pub struct Traffic {
    ledger: Arc<Mutex<Ledger>>,
    stop_producing: Arc<AtomicBool>,
    stop_checking: Arc<AtomicBool>,
    producer: Option<JoinHandle<()>>,
    checker: Option<JoinHandle<()>>,
    app: Option<JoinHandle<()>>,
    pub topic: String,
    pub partitions: i32,
}

struct Acks(Arc<Mutex<Ledger>>);

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = Box<(i32, usize)>;

    fn delivery(&self, result: &DeliveryResult<'_>, id: Self::DeliveryOpaque) {
        let (p, seq) = *id;
        let mut l = self.0.lock().unwrap();
        let part = &mut l.parts[p as usize];
        match result {
            Ok(m) => {
                part.mark(seq, ACKED);
                part.high_offset = part.high_offset.max(m.offset());
            }
            Err(_) => {
                part.mark(seq, FAILED);
                part.advance();
            }
        }
    }
}

impl Traffic {
    /// Starts writing `rate` records/s over `partitions` partitions of
    /// `topic` on `source` and reading `remote` on `target` with a
    /// librdkafka consumer: read_uncommitted, or read_committed when
    /// `committed`. With `log_reader` (for tansu, whose read_committed
    /// readers are handed aborted records) testkit's log reader applies
    /// read_committed from the log's transaction markers instead.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        source: &str,
        target: &str,
        topic: &str,
        remote: &str,
        partitions: i32,
        rate: u32,
        groups: usize,
        committed: bool,
        log_reader: bool,
    ) -> anyhow::Result<Traffic> {
        let ledger = Arc::new(Mutex::new(Ledger::new(partitions)));
        let producer: ThreadedProducer<Acks> = ClientConfig::new()
            .set("bootstrap.servers", source)
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "300000")
            .set("reconnect.backoff.max.ms", "1000")
            .create_with_context(Acks(ledger.clone()))?;
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", target)
            .set("group.id", format!("{topic}-checker"))
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "100")
            .set("reconnect.backoff.max.ms", "1000")
            .set("topic.metadata.refresh.interval.ms", "1000")
            .set(
                "isolation.level",
                if committed {
                    "read_committed"
                } else {
                    "read_uncommitted"
                },
            )
            .create()?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(remote, p, Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;

        let stop_producing = Arc::new(AtomicBool::new(false));
        let stop_checking = Arc::new(AtomicBool::new(false));
        let (l, stop, t) = (ledger.clone(), stop_producing.clone(), topic.to_owned());
        let producer =
            std::thread::spawn(move || produce(producer, &t, partitions, rate, &l, &stop));
        let (l, stop) = (ledger.clone(), stop_checking.clone());
        let checker = if committed && log_reader {
            drop(consumer);
            let reader = LogReader::new(target, remote, partitions);
            std::thread::spawn(move || check_log(reader, partitions, &l, &stop))
        } else {
            std::thread::spawn(move || check(consumer, &l, &stop))
        };
        // Application groups reading the source, committing as they go:
        // the checkpoint service translates their positions to the target.
        let apps = (0..groups.max(1))
            .map(|i| {
                ClientConfig::new()
                    .set("bootstrap.servers", source)
                    .set("group.id", app_group_n(topic, i))
                    .set("enable.auto.commit", "false")
                    .create::<BaseConsumer>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (l, stop, t) = (ledger.clone(), stop_producing.clone(), topic.to_owned());
        let app = std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut tpl = TopicPartitionList::new();
                for (p, o) in positions(&l) {
                    let _ = tpl.add_partition_offset(&t, p, Offset::Offset(o));
                }
                if tpl.count() > 0 {
                    for c in &apps {
                        let _ = c.commit(&tpl, rdkafka::consumer::CommitMode::Sync);
                    }
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        Ok(Traffic {
            ledger,
            stop_producing,
            stop_checking,
            producer: Some(producer),
            checker: Some(checker),
            app: Some(app),
            topic: topic.to_owned(),
            partitions,
        })
    }

    /// Every partition has records on the target.
    pub fn flowing(&self) -> bool {
        let l = self.ledger.lock().unwrap();
        l.parts.iter().all(|p| p.received > 0)
    }

    /// Starts measuring stalls from now (after the warm-up).
    pub fn measure_stalls_from_now(&self) {
        let now = Instant::now();
        let mut l = self.ledger.lock().unwrap();
        for p in &mut l.parts {
            p.last_progress = Some(now);
            p.longest_stall = Duration::ZERO;
        }
    }

    /// A mark of what was written so far; see [`Traffic::caught_up`].
    pub fn mark(&self) -> Vec<usize> {
        self.ledger.lock().unwrap().sent.clone()
    }

    /// Every record written before `mark` is on the target (or was never
    /// acknowledged by the source).
    pub fn caught_up(&self, mark: &[usize]) -> bool {
        let l = self.ledger.lock().unwrap();
        l.parts
            .iter()
            .zip(mark)
            .all(|(p, &need)| p.done_below >= need)
    }

    /// Stops writing and waits for every record to be acknowledged or given up.
    pub fn stop_producing(&mut self) {
        self.stop_producing.store(true, Ordering::Relaxed);
        for h in [self.producer.take(), self.app.take()]
            .into_iter()
            .flatten()
        {
            let _ = h.join();
        }
    }

    /// The end of the faults is now.
    pub fn healed(&self) -> Healed {
        Healed {
            at: Instant::now(),
            mark: self.mark(),
        }
    }

    /// Stops reading and sums up; recovery is measured from `healed`.
    pub fn finish(mut self, healed: &Healed) -> Outcome {
        self.stop_producing();
        self.stop_checking.store(true, Ordering::Relaxed);
        if let Some(h) = self.checker.take() {
            let _ = h.join();
        }
        let l = self.ledger.lock().unwrap();
        l.outcome(healed)
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop_producing.store(true, Ordering::Relaxed);
        self.stop_checking.store(true, Ordering::Relaxed);
    }
}

/// The source consumer group of the application reading `topic`; more
/// groups of the same scenario are named after it with `-g{i}`.
pub fn app_group(topic: &str) -> String {
    format!("chaos-app-{topic}")
}

fn app_group_n(topic: &str, i: usize) -> String {
    match i {
        0 => app_group(topic),
        i => format!("{}-g{i}", app_group(topic)),
    }
}

/// The application's position per partition: past the highest acknowledged
/// source offset.
fn positions(ledger: &Mutex<Ledger>) -> Vec<(i32, i64)> {
    let l = ledger.lock().unwrap();
    l.parts
        .iter()
        .enumerate()
        .filter(|(_, p)| p.high_offset > 0)
        .map(|(i, p)| (i as i32, p.high_offset + 1))
        .collect()
}

/// Checkpoints of the groups of `group` (it and its `-g{i}` siblings) on
/// the checkpoints topic `topic` (one partition, as MirrorMaker 2 lays it
/// out), read from the beginning: how many, and how many went below an
/// earlier one of the same group and partition.
pub fn checkpoints(target: &str, topic: &str, group: &str) -> anyhow::Result<(u64, u64)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", target)
        .set("group.id", format!("{group}-cp-reader"))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
    c.assign(&tpl)?;
    let (mut n, mut backwards) = (0, 0);
    let mut last: std::collections::HashMap<(String, String, i32), i64> = Default::default();
    let siblings = format!("{group}-g");
    let mut quiet = Instant::now();
    while quiet.elapsed() < Duration::from_secs(3) {
        let Some(Ok(m)) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        quiet = Instant::now();
        let (Some(k), Some(v)) = (m.key(), m.payload()) else {
            continue;
        };
        let Ok(cp) = Checkpoint::decode(k, v) else {
            continue;
        };
        if cp.group != group && !cp.group.starts_with(&siblings) {
            continue;
        }
        n += 1;
        let prev = last
            .entry((cp.group, cp.topic, cp.partition))
            .or_insert(cp.downstream_offset);
        if cp.downstream_offset < *prev {
            backwards += 1;
        }
        *prev = (*prev).max(cp.downstream_offset);
    }
    Ok((n, backwards))
}

fn produce(
    producer: ThreadedProducer<Acks>,
    topic: &str,
    partitions: i32,
    rate: u32,
    ledger: &Mutex<Ledger>,
    stop: &AtomicBool,
) {
    let tick = Duration::from_millis(20);
    let per_tick = (rate as f64 * tick.as_secs_f64()).max(1.0) as usize;
    let mut next = Instant::now();
    let mut p = 0i32;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..per_tick {
            let seq = {
                let mut l = ledger.lock().unwrap();
                let s = l.sent[p as usize];
                l.sent[p as usize] += 1;
                s
            };
            let value = format!("p{p}-{seq}");
            let key = format!("k{seq}");
            let mut id = Box::new((p, seq));
            loop {
                let rec = BaseRecord::with_opaque_to(topic, id)
                    .partition(p)
                    .key(&key)
                    .payload(&value);
                match producer.send(rec) {
                    Ok(()) => break,
                    Err((_, rec)) => {
                        // Queue full: the source is slow; wait for room.
                        id = rec.delivery_opaque;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
            p = (p + 1) % partitions;
        }
        next += tick;
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        } else {
            next = Instant::now(); // behind: do not burst to catch up
        }
    }
    // Every record is acknowledged or failed before the outcome is read.
    while producer.in_flight_count() > 0 {
        let _ = producer.flush(Duration::from_secs(1));
    }
}

fn check(consumer: BaseConsumer, ledger: &Mutex<Ledger>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        ledger
            .lock()
            .unwrap()
            .arrived(m.payload(), m.partition(), m.offset(), Instant::now());
    }
}

/// The checker on the log reader: what read_committed shows, decided from
/// the markers in the log (tansu does not hide aborted transactions from
/// librdkafka's read_committed consumers).
fn check_log(mut reader: LogReader, partitions: i32, ledger: &Mutex<Ledger>, stop: &AtomicBool) {
    let mut views: Vec<Committed> = (0..partitions).map(|_| Committed::default()).collect();
    let mut failing = None::<String>;
    while !stop.load(Ordering::Relaxed) {
        match reader.fetch() {
            Ok(batches) => {
                failing = None;
                let now = Instant::now();
                let mut l = ledger.lock().unwrap();
                for (p, batch) in batches {
                    for r in views[p as usize].push(p, batch) {
                        l.arrived(r.value.as_deref(), p, r.offset, now);
                    }
                }
            }
            Err(e) => {
                // The remote topic not there yet, the target away: again.
                let e = e.to_string();
                if failing.as_ref() != Some(&e) {
                    eprintln!("strait-chaos: checker: {e}; retrying");
                    failing = Some(e);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    ledger.lock().unwrap().tally = Some(Tally::sum(&views));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_counts_missing_duplicates_order_stalls_and_recovery() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut l = Ledger::new(2);
        for seq in 0..6 {
            l.parts[0].mark(seq, ACKED);
            l.parts[1].mark(seq, ACKED);
        }
        l.parts[1].mark(6, FAILED); // never acknowledged: not expected
        l.sent = vec![6, 7];
        let healed = Healed {
            at: at(100),
            mark: vec![4, 4],
        };
        let v = |s: &str| Some(s.as_bytes().to_vec());
        // Partition 0: 0 1 2, a re-sent suffix 1 2, then 3 4 5 late.
        for (i, r) in ["p0-0", "p0-1", "p0-2", "p0-1", "p0-2"].iter().enumerate() {
            l.arrived(v(r).as_deref(), 0, i as i64, at(i as u64 * 10));
        }
        for (i, r) in ["p0-3", "p0-4", "p0-5"].iter().enumerate() {
            l.arrived(v(r).as_deref(), 0, 5 + i as i64, at(3000 + i as u64));
        }
        // Partition 1: 0, then 2 before 1 (out of order), 3 and 4 lost;
        // 5 arrives; a record in the wrong partition; garbage.
        for r in ["p1-0", "p1-2", "p1-1", "p1-5"] {
            l.arrived(v(r).as_deref(), 1, 0, at(50));
        }
        l.arrived(v("p0-9").as_deref(), 1, 0, at(60));
        l.arrived(Some(b"junk"), 1, 0, at(60));
        l.arrived(None, 1, 0, at(60));

        let o = l.outcome(&healed);
        assert_eq!(o.produced, 12);
        assert_eq!(o.unacknowledged, 1);
        assert_eq!(o.missing, 2, "p1-3 and p1-4");
        assert_eq!(o.duplicates, 2);
        assert_eq!(
            o.first_duplicates,
            ["p0: 2 from p0-1 (the copy at target offset 3)"]
        );
        assert_eq!(o.out_of_order, 1, "p1-1 after p1-2");
        assert_eq!(o.foreign, 3);
        assert_eq!(
            o.longest_stall,
            Duration::from_millis(2980),
            "p0: 20ms -> 3000ms"
        );
        assert_eq!(o.recovery, None, "p1-3 never came");

        // Once p1-3 arrives, recovery ends at the last record before the mark.
        l.arrived(v("p1-3").as_deref(), 1, 0, at(5100));
        let o = l.outcome(&healed);
        assert_eq!(o.recovery, Some(Duration::from_millis(5000)));
        assert_eq!(l.parts[0].done_below, 6);
        assert_eq!(l.parts[1].done_below, 4, "p1-4 is still missing");
    }
}
