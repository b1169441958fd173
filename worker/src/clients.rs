//! The librdkafka clients of a flow session and their callbacks. Callbacks
//! run on librdkafka's threads; they only hand results to the session
//! thread (a channel, an atomic, a small map), never touch its state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::TopicPartitionList;
use tracing::{debug, warn};

use strait_common::access::{denials, Feature, Operation};
use strait_common::config::Compression;
use strait_common::error_event;
use strait_common::kafka::{client_config, manual_consumer, ms, reliable_producer};
use strait_common::metrics as m;
use strait_common::model::{NextOffset, TopicPartition};
use strait_common::telemetry::ErrorKind;

use crate::FlowSpec;

/// Which record a delivery report is about.
#[derive(Debug)]
pub struct Tag {
    pub unit: u64,
    pub offset: i64,
    pub bytes: u64,
    /// Source record timestamp (ms), 0 when unknown.
    pub timestamp_ms: i64,
}

/// A delivery report, as the session sees it.
#[derive(Debug)]
pub struct Ack {
    pub tag: Box<Tag>,
    /// The target offset the record was written at.
    pub result: Result<i64, KafkaError>,
}

/// How often the source consumer's statistics arrive: they carry the high
/// watermarks lag is measured against, so lag moves in steps of this; each
/// is a JSON document of every partition, parsed, so not every tick.
const SOURCE_STATISTICS: Duration = Duration::from_secs(2);
/// The longest a source fetch waits to fill; see [`consumer`].
const FETCH_WAIT_MAX: Duration = Duration::from_millis(50);
/// How often the target producer's statistics arrive: they carry the bytes
/// sent (after compression) for the target bytes counter, which a scrape
/// then sees at most a second behind.
const TARGET_STATISTICS: Duration = Duration::from_secs(1);
/// How long fencing a transactional id may take: InitProducerId waits
/// while the coordinator aborts the open transaction, which a healthy one
/// does in far less; as long as a transaction step of a session may take.
const FENCE_TIMEOUT: Duration = Duration::from_secs(30);

/// Source high watermarks by partition, from librdkafka statistics.
pub type Watermarks = Arc<Mutex<HashMap<TopicPartition, NextOffset>>>;

pub struct SourceContext {
    pub flow: String,
    /// The source cluster's alias and the group progress is committed
    /// under, to name a refused commit's permission.
    pub source: String,
    pub group: String,
    pub watermarks: Watermarks,
    /// Set when an asynchronous commit failed: the next commit resends all.
    pub commit_failed: Arc<AtomicBool>,
}

impl ClientContext for SourceContext {
    fn stats(&self, stats: Statistics) {
        let mut w = self.watermarks.lock().unwrap_or_else(|e| e.into_inner());
        for (topic, t) in stats.topics {
            for (p, part) in t.partitions {
                if p >= 0 && part.hi_offset >= 0 {
                    w.insert(
                        TopicPartition::new(topic.clone(), p),
                        NextOffset(part.hi_offset),
                    );
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // An out-of-range position comes to the session too, which finds
        // the unit and reports it (session/gaps.rs).
        if error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::AutoOffsetReset) {
            debug!(flow = %self.flow, reason, "position out of range");
            return;
        }
        error_event!(warn, self.flow, ErrorKind::of(&error), error = %error, reason, "source client error");
    }
}

impl ConsumerContext for SourceContext {
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => {
                denials::allowed_group(&self.source, Operation::Read, &self.group);
                debug!(flow = %self.flow, partitions = offsets.count(), "progress committed")
            }
            Err(e) => {
                self.commit_failed.store(true, Ordering::Relaxed);
                if denials::is_denied(&e) {
                    denials::refused(
                        &self.source,
                        &self.flow,
                        Feature::Replication,
                        Operation::Read,
                        denials::group(&self.group),
                        &e.to_string(),
                    );
                    error_event!(debug, self.flow, ErrorKind::Commit, error = %e, "commit failed; will retry");
                } else {
                    error_event!(warn, self.flow, ErrorKind::Commit, error = %e, "commit failed; will retry");
                }
            }
        }
    }
}

pub struct TargetContext {
    pub flow: String,
    pub acks: mpsc::Sender<Ack>,
    /// Bytes this producer had sent at its last statistics.
    pub sent: std::sync::atomic::AtomicU64,
}

impl ClientContext for TargetContext {
    fn stats(&self, stats: Statistics) {
        let total: u64 = stats.brokers.values().map(|b| b.txbytes).sum();
        let before = self.sent.swap(total, Ordering::Relaxed);
        if total > before {
            metrics::counter!(m::TARGET_BYTES_SENT, "flow" => self.flow.clone())
                .increment(total - before);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        error_event!(warn, self.flow, ErrorKind::of(&error), error = %error, reason, "target client error");
    }
}

impl ProducerContext for TargetContext {
    type DeliveryOpaque = Box<Tag>;

    fn delivery(&self, result: &DeliveryResult<'_>, tag: Box<Tag>) {
        let result = match result {
            Ok(msg) => Ok(msg.offset()),
            Err((e, _)) => Err(e.clone()),
        };
        // The session may be gone (shutting down); its records are then
        // re-sent by the next session from the committed position.
        let _ = self.acks.send(Ack { tag, result });
    }
}

/// Which offset sync a delivery report is about.
#[derive(Debug)]
pub struct SyncTag {
    pub unit: u64,
    pub upstream: i64,
}

/// An offset sync's delivery report, as the session sees it.
#[derive(Debug)]
pub struct SyncAck {
    pub tag: Box<SyncTag>,
    pub result: Result<(), KafkaError>,
}

pub struct SyncsContext {
    pub flow: String,
    pub acks: mpsc::Sender<SyncAck>,
}

impl ClientContext for SyncsContext {
    fn error(&self, error: KafkaError, reason: &str) {
        warn!(flow = %self.flow, error = %error, reason, "offset-syncs client error");
    }
}

impl ProducerContext for SyncsContext {
    type DeliveryOpaque = Box<SyncTag>;

    fn delivery(&self, result: &DeliveryResult<'_>, tag: Box<SyncTag>) {
        let result = match result {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(e.clone()),
        };
        let _ = self.acks.send(SyncAck { tag, result });
    }
}

pub type Consumer = BaseConsumer<SourceContext>;
pub type Producer = ThreadedProducer<TargetContext>;
pub type SyncsProducer = ThreadedProducer<SyncsContext>;

/// Waits until every record handed to `producer` has its delivery report
/// served, for at most `timeout`. rdkafka's `Producer::flush` polls in
/// 100 ms steps, and a `ThreadedProducer`'s own thread serves the reports
/// meanwhile, so that flush came back no sooner than 100 ms whenever a
/// record was in flight: an exactly-once flow paid it twice at every
/// transaction commit (its records, then its offset syncs; measured 100 ms
/// each). librdkafka's flush re-checks every few milliseconds (measured
/// well under 1 ms with nothing left, tens of ms with a batch in flight).
pub fn flush<C: ProducerContext>(
    producer: &ThreadedProducer<C>,
    timeout: Duration,
) -> KafkaResult<()> {
    use rdkafka::bindings as rd;
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: the handle is the producer's own and outlives the call.
    match unsafe { rd::rd_kafka_flush(producer.client().native_ptr(), ms) } {
        rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => Ok(()),
        e => Err(KafkaError::Flush(e.into())),
    }
}

/// The consumer: manual assignment only (`assign`, never `subscribe`), so it
/// never joins the group; the group id only names where progress is committed.
pub fn consumer(spec: &FlowSpec, ctx: SourceContext) -> KafkaResult<Consumer> {
    let mut c: ClientConfig =
        manual_consumer(&spec.source, &spec.flow.commit_group(&spec.deployment));
    // Units start at positions the session resolves (committed, else the
    // flow's `start`); a position the source no longer has is reported,
    // never silently reset past records (see session/gaps.rs).
    c.set("auto.offset.reset", "error")
        .set("statistics.interval.ms", ms(SOURCE_STATISTICS));
    // librdkafka waits up to 500 ms for a fetch to fill. A broker that holds
    // the fetch that long even as records arrive (tansu does) adds it to
    // every record's latency; one that answers when records arrive (Kafka)
    // only sends more empty fetches while idle (20 a second per broker).
    // Measured with the latency benchmark: p50 about 45 ms lower on tansu.
    if !spec.source.kafka.contains_key("fetch.wait.max.ms") {
        c.set("fetch.wait.max.ms", ms(FETCH_WAIT_MAX));
    }
    c.create_with_context(ctx)
}

/// The largest record the target producer sends, unless the target
/// cluster's `kafka` table sets `message.max.bytes`. librdkafka's own
/// default (1,000,000 bytes) refused records the source held; this is above
/// what any default Kafka broker stores (about 1 MB; topics raise it with
/// `max.message.bytes`), so a record is refused only by the target broker,
/// and below a broker's default `socket.request.max.bytes` (100 MiB), which
/// bounds a produce request. Batches stay at `batch.size`.
pub const MAX_RECORD_BYTES: u64 = 64 * 1024 * 1024;

pub fn producer(spec: &FlowSpec, ctx: TargetContext) -> KafkaResult<Producer> {
    let mut c = reliable_producer(&spec.target);
    if !spec.target.kafka.contains_key("message.max.bytes") {
        c.set("message.max.bytes", MAX_RECORD_BYTES.to_string());
    }
    // The flow's codec, else the cluster's passthrough, else the default.
    let cluster_sets = ["compression.type", "compression.codec"]
        .iter()
        .any(|k| spec.target.kafka.contains_key(*k));
    match spec.flow.compression {
        Some(codec) => {
            c.set("compression.type", codec.as_str());
        }
        None if !cluster_sets => {
            c.set("compression.type", Compression::DEFAULT.as_str());
        }
        None => {}
    }
    if spec.flow.exactly_once.is_some() {
        // One transactional producer per flow and worker. Its transactions
        // time out on the coordinator after TRANSACTION_TIMEOUT; a delivery
        // may not outlive its transaction (librdkafka refuses the config),
        // and a timed-out one aborts the transaction: the session restarts
        // from the progress the last committed transaction holds.
        let timeout = TRANSACTION_TIMEOUT.as_millis().to_string();
        c.set("transactional.id", spec.transactional_id())
            .set("transaction.timeout.ms", &timeout)
            .set("message.timeout.ms", &timeout);
    }
    // Statistics give the bytes sent to the target (after compression).
    c.set("statistics.interval.ms", ms(TARGET_STATISTICS));
    // librdkafka's own queue must hold at least what strait lets be in flight.
    let kbytes = (spec.worker.max_in_flight_bytes / 1024 * 2).clamp(16 * 1024, 2_097_151);
    c.set("queue.buffering.max.kbytes", kbytes.to_string())
        .set("queue.buffering.max.messages", "2000000");
    c.create_with_context(ctx)
}

/// How long a transaction may stay open before the target's coordinator
/// aborts it: bounds how long a crashed worker's open transaction holds back
/// read_committed consumers of its partitions when no new owner fences it.
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// With exactly-once, the flow's progress lives on the target, in the
/// commit group, committed in each transaction: this consumer (manual, never
/// subscribed) reads it back and names the group to the transactions.
pub fn progress_consumer(spec: &FlowSpec) -> KafkaResult<BaseConsumer> {
    manual_consumer(&spec.target, &spec.flow.commit_group(&spec.deployment)).create()
}

/// Fences the transactional id `txid` on the target: InitProducerId aborts
/// its open transaction, if any, and bumps its epoch, so the producer that
/// held it can neither commit nor write again.
pub fn fence(spec: &FlowSpec, txid: &str) -> KafkaResult<()> {
    let p: BaseProducer = client_config(&spec.target)
        .set("transactional.id", txid)
        .create()?;
    p.init_transactions(FENCE_TIMEOUT)
}

pub fn syncs_producer(spec: &FlowSpec, ctx: SyncsContext) -> KafkaResult<SyncsProducer> {
    reliable_producer(&spec.syncs_cluster).create_with_context(ctx)
}
