//! What the benchmark writes and commits: backlogs of 1 KB records, a
//! paced stream for latency, a stream of numbered records for failover,
//! and consumer groups' commits. Every tool gets the same workload on
//! topics of its own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::producer::DefaultProducerContext;
use rdkafka::producer::{BaseRecord, Producer as _, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use strait_controller::native_admin::{alter_group_offsets, GroupCommits};

/// Bytes of a record's value: "1 KB records".
pub const SIZE: usize = 1000;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// JSON log lines of about `size` bytes: the values `cargo bench --bench
/// replicate` and `scripts/profile.sh` write (seeded, so every run and
/// every tool gets the same bytes).
pub use strait_testkit::load::json_values;

/// An idempotent producer with acks=all and librdkafka's defaults
/// otherwise (no compression), with room for a backlog in its queue.
pub fn producer(bootstrap: &str) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("queue.buffering.max.kbytes", "524288")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer")
}

/// Queues one record, waiting while the queue is full.
pub fn send(p: &ThreadedProducer<DefaultProducerContext>, rec: BaseRecord<'_, [u8], [u8]>) {
    let mut rec = rec;
    while let Err((_, back)) = p.send(rec) {
        p.poll(Duration::from_millis(1));
        rec = back;
    }
}

/// The bytes (keys and values) of a backlog of `records` of `values`.
pub fn backlog_bytes(records: usize, values: &[Vec<u8>]) -> u64 {
    (0..records)
        .map(|i| (format!("k{i}").len() + values[i % values.len()].len()) as u64)
        .sum()
}

/// Writes `records` values of `values` round-robin over the partitions of
/// `topic` (keyed `k{i}`) and waits for every acknowledgement. Returns the
/// bytes written (values and keys).
pub fn write_backlog(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    records: usize,
    values: &[Vec<u8>],
) -> anyhow::Result<u64> {
    let p = producer(bootstrap);
    let mut bytes = 0u64;
    for i in 0..records {
        let key = format!("k{i}");
        let value = &values[i % values.len()];
        bytes += (key.len() + value.len()) as u64;
        send(
            &p,
            BaseRecord::to(topic)
                .partition((i % partitions as usize) as i32)
                .key(key.as_bytes())
                .payload(value.as_slice()),
        );
    }
    p.flush(Duration::from_secs(600))
        .with_context(|| format!("writing the backlog of {topic}"))?;
    Ok(bytes)
}

/// A consumer that is only asked for offsets (ListOffsets) and metadata.
pub fn lister(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "strait-bench-vs-mm2-lister")
        .create()
        .expect("consumer")
}

/// Each partition's end offset (high watermark), in one ListOffsets round;
/// an error while the topic does not exist yet.
pub fn ends(c: &BaseConsumer, topic: &str, partitions: i32) -> anyhow::Result<Vec<i64>> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::End)?;
    }
    let got = c.offsets_for_times(tpl, Duration::from_secs(5))?;
    (0..partitions)
        .map(|p| {
            let e = got
                .find_partition(topic, p)
                .with_context(|| format!("{topic}/{p} missing"))?;
            e.error()?;
            match e.offset() {
                Offset::Offset(o) => Ok(o),
                o => bail!("{topic}/{p}: no end offset ({o:?})"),
            }
        })
        .collect()
}

/// Whether `topic` exists on the cluster.
pub fn exists(c: &BaseConsumer, topic: &str) -> bool {
    c.fetch_metadata(Some(topic), Duration::from_secs(5))
        .is_ok_and(|md| {
            md.topics()
                .first()
                .is_some_and(|t| t.error().is_none() && !t.partitions().is_empty())
        })
}

/// Deletes the topics of `bootstrap` that `doomed` picks (a finished
/// session's, to keep the brokers' disks and metadata small). Best effort.
pub fn delete_topics(bootstrap: &str, doomed: impl Fn(&str) -> bool) {
    let Ok(md) = lister(bootstrap).fetch_metadata(None, Duration::from_secs(10)) else {
        return;
    };
    let names: Vec<String> = md
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .filter(|n| doomed(n))
        .collect();
    if names.is_empty() {
        return;
    }
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let _ = rt.block_on(admin.delete_topics(&refs, &AdminOptions::new()));
}

/// A consumer with a `group.id` it never joins, for the group admin calls
/// (librdkafka crashes on an AdminClient answered NotCoordinator: see
/// controller/src/native_admin/groups.rs).
pub fn group_admin(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "strait-bench-vs-mm2-admin")
        .create()
        .expect("consumer")
}

/// Commits `batch` without joining the groups; fails if any group refused.
pub fn commit(admin: &BaseConsumer, batch: &[GroupCommits]) -> anyhow::Result<()> {
    match commit_each(admin, batch).into_iter().find_map(Result::err) {
        Some(e) => bail!(e),
        None => Ok(()),
    }
}

/// Commits `batch` without joining the groups: each group's outcome.
pub fn commit_each(admin: &BaseConsumer, batch: &[GroupCommits]) -> Vec<Result<(), String>> {
    let results = alter_group_offsets(admin.client(), batch, 64, Duration::from_secs(30));
    batch
        .iter()
        .zip(results)
        .map(|((g, _), r)| {
            let parts = r.map_err(|e| format!("commit of group {g}: {e:?}"))?;
            match parts.iter().find(|(_, r)| r.is_err()) {
                Some((tp, Err(e))) => Err(format!("commit of group {g} on {tp}: {e:?}")),
                _ => Ok(()),
            }
        })
        .collect()
}

/// Writes 1 KB records at `rate` MB/s over `partitions`, each stamped with
/// its send time, paced every 5 ms, for `seconds`. Returns how many.
pub fn paced(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    rate: f64,
    seconds: f64,
    values: &[Vec<u8>],
) -> u64 {
    let p = producer(bootstrap);
    let per_tick = rate * 1e6 / SIZE as f64 / 200.0;
    let started = Instant::now();
    let (mut sent, mut owed, mut tick) = (0u64, 0.0f64, 0u64);
    while started.elapsed().as_secs_f64() < seconds {
        owed += per_tick;
        while owed >= 1.0 {
            let rec = BaseRecord::<[u8], [u8]>::to(topic)
                .partition((sent % partitions as u64) as i32)
                .payload(&values[sent as usize % values.len()])
                .timestamp(now_ms());
            if p.send(rec).is_err() {
                break; // the queue is full: the broker is the limit
            }
            sent += 1;
            owed -= 1.0;
        }
        tick += 1;
        let next = started + Duration::from_millis(5 * tick);
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    let _ = p.flush(Duration::from_secs(60));
    sent
}

/// Numbered records at a steady rate: partition `p`'s record `n` (its
/// source offset: one idempotent producer writes the partition alone) has
/// value `p{p}-{n}:` padded to 100 bytes, so where every source record
/// landed on the target can be read back.
pub struct Stream {
    stop: Arc<AtomicBool>,
    /// Records acknowledged so far, per partition.
    pub acked: Arc<Mutex<Vec<i64>>>,
    handle: Option<std::thread::JoinHandle<anyhow::Result<Vec<i64>>>>,
}

impl Stream {
    pub fn start(bootstrap: &str, topic: &str, partitions: i32, per_second: u64) -> Stream {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(vec![0i64; partitions as usize]));
        let (b, t, s, a) = (
            bootstrap.to_owned(),
            topic.to_owned(),
            stop.clone(),
            acked.clone(),
        );
        let handle = std::thread::spawn(move || {
            let p = producer(&b);
            let mut next = vec![0i64; partitions as usize];
            let started = Instant::now();
            let mut tick = 0u64;
            // 20 ticks a second, the same number of records each.
            let per_tick = (per_second / 20).max(1);
            let mut i = 0u64;
            while !s.load(Ordering::Relaxed) {
                for _ in 0..per_tick {
                    let part = (i % partitions as u64) as usize;
                    let mut value = format!("p{part}-{}:", next[part]);
                    value.extend(std::iter::repeat_n(
                        'x',
                        100usize.saturating_sub(value.len()),
                    ));
                    send(
                        &p,
                        BaseRecord::to(&t)
                            .partition(part as i32)
                            .payload(value.as_bytes()),
                    );
                    next[part] += 1;
                    i += 1;
                }
                // What was queued a tick ago is acknowledged by now, or
                // within the flush below: count it once the queue drained.
                p.flush(Duration::from_secs(30))
                    .context("the failover stream's producer")?;
                a.lock().unwrap().clone_from(&next);
                tick += 1;
                let at = started + Duration::from_millis(50 * tick);
                if let Some(d) = at.checked_duration_since(Instant::now()) {
                    std::thread::sleep(d);
                }
            }
            Ok(next)
        });
        Stream {
            stop,
            acked,
            handle: Some(handle),
        }
    }

    /// Stops writing: the records written per partition.
    pub fn stop(mut self) -> anyhow::Result<Vec<i64>> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .unwrap()
            .join()
            .map_err(|_| anyhow::anyhow!("the stream's writer panicked"))?
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The sequence number in a [`Stream`] record's value, and its partition.
pub fn stream_seq(value: &[u8]) -> Option<(i32, i64)> {
    let v = std::str::from_utf8(value).ok()?;
    let (p, rest) = v.strip_prefix('p')?.split_once('-')?;
    let (n, _) = rest.split_once(':')?;
    Some((p.parse().ok()?, n.parse().ok()?))
}
