//! How the figures are taken, the same way for every column: progress from
//! the target's high watermarks, latency from record timestamps, the
//! checkpoints topic tailed on the target, and where failed-over consumers
//! would resume.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Timestamp;
use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};

use strait_common::formats::Checkpoint;
use strait_testkit::process::{cpu_seconds, peak_rss_mb};

use crate::workload::{ends, lister, now_ms, paced};

/// One replication of a backlog, timed from the tool's start.
#[derive(Debug, Clone, Copy)]
pub struct Backlog {
    /// Start to the first record on the target.
    pub first: Duration,
    /// Start to the last record on the target.
    pub last: Duration,
    /// CPU seconds the process used from its start to the first and to
    /// the last record.
    pub cpu_first: f64,
    pub cpu_last: f64,
    /// Peak RSS (VmHWM) at the last record, MB; none for the baseline
    /// (the bench process holds more than the copy).
    pub rss_mb: Option<f64>,
}

/// Polls `topic`'s high watermarks on the target until every partition has
/// at least `want[p]` records (everything replicated), noting when the
/// first record arrived and the CPU seconds process `pid` had used by
/// then (less `cpu0`, what it had used before the start).
#[allow(clippy::too_many_arguments)]
pub fn watch_backlog(
    target: &str,
    topic: &str,
    want: &[i64],
    start: Instant,
    pid: u32,
    cpu0: f64,
    alive: &mut dyn FnMut() -> bool,
    timeout: Duration,
) -> anyhow::Result<(Backlog, Vec<i64>)> {
    let c = lister(target);
    let partitions = want.len() as i32;
    let tick = if partitions > 20 { 25 } else { 10 };
    let mut first: Option<(Duration, f64)> = None;
    let mut seen = vec![0; want.len()];
    loop {
        if let Ok(e) = ends(&c, topic, partitions) {
            let now = start.elapsed();
            if first.is_none() && e.iter().any(|&o| o > 0) {
                first = Some((now, cpu_seconds(pid) - cpu0));
            }
            if e.iter().zip(want).all(|(got, want)| got >= want) {
                let cpu_last = cpu_seconds(pid) - cpu0;
                let (first, cpu_first) = first.unwrap();
                return Ok((
                    Backlog {
                        first,
                        last: now,
                        cpu_first,
                        cpu_last,
                        rss_mb: Some(peak_rss_mb(pid)),
                    },
                    e,
                ));
            }
            seen = e;
        }
        if !alive() {
            bail!("the process replicating {topic} died; {seen:?} of {want:?} records were there");
        }
        if start.elapsed() > timeout {
            bail!(
                "{topic}: {} of {} records on the target after {timeout:?}",
                seen.iter().sum::<i64>(),
                want.iter().sum::<i64>()
            );
        }
        std::thread::sleep(Duration::from_millis(tick));
    }
}

/// Waits until every partition of `remote` on the target holds at least
/// as many records as `topic` on the source: everything replicated.
pub fn caught_up(
    source: &str,
    topic: &str,
    target: &str,
    remote: &str,
    partitions: i32,
    timeout: Duration,
) -> anyhow::Result<()> {
    let want = ends(&lister(source), topic, partitions)?;
    let c = lister(target);
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    while Instant::now() < deadline {
        if let Ok(e) = ends(&c, remote, partitions) {
            if e.iter().zip(&want).all(|(g, w)| g >= w) {
                return Ok(());
            }
            got = e;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{remote} on the target holds {got:?} records, {topic} on the source {want:?}, after {timeout:?}")
}

/// Latencies of one paced stream, ms.
#[derive(Debug, Clone)]
pub struct Latency {
    pub sent: u64,
    pub p50: f64,
    pub p99: f64,
}

/// Writes `rate` MB/s to `write_topic` for 3 s of warm-up and `seconds`
/// more, while one consumer reads `read_topic` on `target` (the same topic
/// for one hop, the remote topic through a tool); latency is the reader's
/// clock minus the record's timestamp (one machine, one clock), for the
/// records stamped after the warm-up. `settle` waits, after the writer is
/// done, until the tool has replicated everything.
#[allow(clippy::too_many_arguments)]
pub fn latency(
    write_bootstrap: &str,
    write_topic: &str,
    target: &str,
    read_topic: &str,
    partitions: i32,
    rate: f64,
    seconds: f64,
    values: &[Vec<u8>],
    settle: &dyn Fn() -> anyhow::Result<()>,
) -> anyhow::Result<Latency> {
    let stop = Arc::new(AtomicBool::new(false));
    let from_ms = now_ms() + 3000;
    let reader = {
        let (stop, target, topic) = (stop.clone(), target.to_owned(), read_topic.to_owned());
        std::thread::spawn(move || {
            let c: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &target)
                .set("group.id", "strait-bench-vs-mm2-latency")
                .set("enable.auto.commit", "false")
                .create()
                .unwrap();
            let mut tpl = TopicPartitionList::new();
            for p in 0..partitions {
                tpl.add_partition_offset(&topic, p, Offset::Beginning)
                    .unwrap();
            }
            c.assign(&tpl).unwrap();
            let (mut lat, mut total) = (Vec::new(), 0u64);
            while !stop.load(Ordering::Relaxed) {
                if let Some(Ok(m)) = c.poll(Duration::from_millis(20)) {
                    let now = now_ms();
                    total += 1;
                    if let Timestamp::CreateTime(ts) = m.timestamp() {
                        if ts >= from_ms {
                            lat.push(now - ts);
                        }
                    }
                }
            }
            (lat, total)
        })
    };
    let sent = paced(
        write_bootstrap,
        write_topic,
        partitions,
        rate,
        seconds + 3.0,
        values,
    );
    let settled = settle();
    // What the reader has not fetched yet arrives within this.
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let (mut lat, total) = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))?;
    settled?;
    if total < sent {
        bail!("{read_topic}: the reader got {total} of {sent} records");
    }
    if lat.is_empty() {
        bail!("{read_topic}: no record after the warm-up");
    }
    lat.sort_unstable();
    let ms: Vec<Duration> = lat
        .iter()
        .map(|&l| Duration::from_millis(l.max(0) as u64))
        .collect();
    Ok(Latency {
        sent,
        p50: percentile(&ms, 0.5).as_secs_f64() * 1e3,
        p99: percentile(&ms, 0.99).as_secs_f64() * 1e3,
    })
}

pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

/// (group, remote topic, partition).
pub type Key = (String, String, i32);

#[derive(Default)]
struct TailState {
    /// Commits not yet covered by a checkpoint: offset and commit time.
    pending: HashMap<Key, Vec<(i64, Instant, bool)>>,
    /// Commit -> checkpoint of the measured commits.
    seen: Vec<Duration>,
    /// The newest checkpoint of each key: (upstream, downstream).
    newest: HashMap<Key, (i64, i64)>,
}

/// The checkpoints topic on the target, read (read_committed) from its
/// beginning as the tool writes it.
pub struct Tail {
    state: Arc<Mutex<TailState>>,
    position: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
    target: String,
    topic: String,
}

impl Tail {
    pub fn start(target: &str, topic: &str) -> Tail {
        let state = Arc::new(Mutex::new(TailState::default()));
        let position = Arc::new(AtomicI64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let (state, position, stop) = (state.clone(), position.clone(), stop.clone());
            let (target, topic) = (target.to_owned(), topic.to_owned());
            std::thread::spawn(move || {
                let c: BaseConsumer = ClientConfig::new()
                    .set("bootstrap.servers", &target)
                    .set("group.id", "strait-bench-vs-mm2-tail")
                    .set("enable.auto.commit", "false")
                    .set("fetch.wait.max.ms", "10")
                    .create()
                    .unwrap();
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(&topic, 0, Offset::Beginning)
                    .unwrap();
                c.assign(&tpl).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    if let Some(Ok(m)) = c.poll(Duration::from_millis(20)) {
                        let now = Instant::now();
                        if let (Some(k), Some(v)) = (m.key(), m.payload()) {
                            if let Ok(cp) = Checkpoint::decode(k, v) {
                                let key = (cp.group, cp.topic, cp.partition);
                                let mut s = state.lock().unwrap();
                                if let Some(list) = s.pending.get_mut(&key) {
                                    let mut got = Vec::new();
                                    list.retain(|&(o, at, measured)| {
                                        let covered = o <= cp.upstream_offset;
                                        if covered && measured {
                                            got.push(now.saturating_duration_since(at));
                                        }
                                        !covered
                                    });
                                    s.seen.extend(got);
                                }
                                s.newest
                                    .insert(key, (cp.upstream_offset, cp.downstream_offset));
                            }
                        }
                    }
                    if let Ok(p) = c.position() {
                        if let Some(Offset::Offset(o)) =
                            p.find_partition(&topic, 0).map(|e| e.offset())
                        {
                            position.store(o, Ordering::Relaxed);
                        }
                    }
                }
            })
        };
        Tail {
            state,
            position,
            stop,
            handle: Some(handle),
            target: target.to_owned(),
            topic: topic.to_owned(),
        }
    }

    /// A commit of `offset` at `at`; `measured` if it counts (after the
    /// warm-up).
    pub fn committed(&self, key: Key, offset: i64, at: Instant, measured: bool) {
        self.state
            .lock()
            .unwrap()
            .pending
            .entry(key)
            .or_default()
            .push((offset, at, measured));
    }

    /// Drops a noted commit that the broker refused.
    pub fn forget(&self, key: &Key, offset: i64) {
        if let Some(list) = self.state.lock().unwrap().pending.get_mut(key) {
            list.retain(|(o, _, _)| *o != offset);
        }
    }

    /// How many of `keys` have had a checkpoint.
    pub fn covers(&self, keys: &[Key]) -> usize {
        let s = self.state.lock().unwrap();
        keys.iter().filter(|k| s.newest.contains_key(*k)).count()
    }

    /// Measured commits no checkpoint has covered yet.
    pub fn pending_measured(&self) -> usize {
        let s = self.state.lock().unwrap();
        s.pending
            .values()
            .map(|l| l.iter().filter(|(_, _, m)| *m).count())
            .sum()
    }

    /// Commit -> checkpoint of the measured commits seen so far, sorted.
    pub fn seen(&self) -> Vec<Duration> {
        let mut v = self.state.lock().unwrap().seen.clone();
        v.sort();
        v
    }

    /// The newest checkpoint of every key, read to the topic's end as it is
    /// now: what RemoteClusterUtils.translateOffsets returns at this moment.
    pub fn newest_now(&self) -> anyhow::Result<HashMap<Key, (i64, i64)>> {
        let end = ends(&lister(&self.target), &self.topic, 1)?[0];
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.position.load(Ordering::Relaxed) < end {
            if Instant::now() > deadline {
                bail!("{}: not read to {end} within 30 s", self.topic);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(self.state.lock().unwrap().newest.clone())
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Where each source record landed: per partition, (target offset, source
/// offset) in target offset order, from the numbered stream's values.
pub fn landed(
    target: &str,
    remote: &str,
    partitions: i32,
    expect: usize,
) -> anyhow::Result<Vec<Vec<(i64, i64)>>> {
    let mut out = vec![Vec::new(); partitions as usize];
    let read = strait_testkit::consume_with_offsets(
        target,
        remote,
        partitions,
        expect,
        Duration::from_secs(120),
    );
    for (o, r) in read {
        let (p, seq) = r
            .value
            .as_deref()
            .and_then(crate::workload::stream_seq)
            .with_context(|| format!("{remote}/{}@{o}: not a numbered record", r.partition))?;
        if p != r.partition {
            bail!(
                "{remote}: record p{p}-{seq} landed in partition {}",
                r.partition
            );
        }
        out[p as usize].push((o, seq));
    }
    for v in &mut out {
        v.sort_unstable();
    }
    Ok(out)
}

/// For a consumer that had read source records `0..position` of a
/// partition and resumes on the target at offset `at`: the records it
/// reads twice (copies at or after `at` of records before `position`) and
/// the records it never sees (records from `position` to `end` with no copy
/// at or after `at`).
pub fn reread_and_skipped(records: &[(i64, i64)], position: i64, end: i64, at: i64) -> (u64, u64) {
    let after: Vec<&(i64, i64)> = records.iter().filter(|(o, _)| *o >= at).collect();
    let reread = after.iter().filter(|(_, s)| *s < position).count() as u64;
    let there: BTreeSet<i64> = after
        .iter()
        .map(|(_, s)| *s)
        .filter(|s| *s >= position)
        .collect();
    let skipped = (position..end).filter(|s| !there.contains(s)).count() as u64;
    (reread, skipped)
}
