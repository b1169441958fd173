//! Reading strait's one-partition internal topics (offset syncs,
//! checkpoints): from the beginning up to the end offset captured when the
//! read starts, then, for the service, tailing what comes after.
//!
//! "Until the end captured at the start", never "until quiet": a topic that
//! receives a record every second (offset syncs while heartbeats flow) is
//! never quiet, and a reader that waits for quiet never answers.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{Message as _, Offset, TopicPartitionList};

use strait_common::config::ClusterConfig;
use strait_common::kafka::manual_consumer;

/// The longest the end offset of an internal topic is waited for: a broker
/// that cannot say in 10 s is not answering, and the read fails with it.
const END_OFFSET_TIMEOUT: Duration = Duration::from_secs(10);
/// One poll while reading to the end: short, so the read's deadline is
/// checked often.
const READ_POLL: Duration = Duration::from_millis(200);

/// librdkafka also reports reaching the end of the partition as a global
/// error event; for this reader that is news, not an error.
struct EndIsNews;

impl ClientContext for EndIsNews {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(
            error.rdkafka_error_code(),
            Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
        ) {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }
}

impl ConsumerContext for EndIsNews {}

/// A reader of partition 0 of one internal topic.
pub struct InternalTopic {
    consumer: BaseConsumer<EndIsNews>,
    topic: String,
}

/// How one catch-up read went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadToEnd {
    /// The end offset captured when the read started.
    pub end: i64,
    /// Records handed to the callback.
    pub records: u64,
}

impl InternalTopic {
    /// A reader of `topic` on `cluster`, positioned at its beginning.
    /// `group` only names the client; it never commits.
    pub fn open(cluster: &ClusterConfig, group: &str, topic: &str) -> anyhow::Result<Self> {
        let consumer: BaseConsumer<EndIsNews> = manual_consumer(cluster, group)
            // End-of-partition events tell the reader it has caught up
            // even where the last offsets hold no record it is given
            // (transaction markers, compacted records).
            .set("enable.partition.eof", "true")
            .create_with_context(EndIsNews)
            .with_context(|| format!("a reader of {topic}"))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
        consumer.assign(&tpl)?;
        Ok(InternalTopic {
            consumer,
            topic: topic.to_owned(),
        })
    }

    /// Reads every record written before this call (up to the end offset
    /// it captures first), handing (key, value, offset) to `each`. Fails if
    /// that end is not reached within `timeout`. A topic that does not
    /// exist yet reads as empty.
    pub fn read_to_end(
        &mut self,
        timeout: Duration,
        mut each: impl FnMut(&[u8], &[u8], i64),
    ) -> anyhow::Result<ReadToEnd> {
        let deadline = Instant::now() + timeout;
        let wait = timeout.min(END_OFFSET_TIMEOUT);
        let end = match self.consumer.fetch_watermarks(&self.topic, 0, wait) {
            Ok((_, high)) => high,
            Err(KafkaError::MetadataFetch(_)) => return Ok(ReadToEnd { end: 0, records: 0 }),
            Err(e) if unknown_topic(&e) => return Ok(ReadToEnd { end: 0, records: 0 }),
            Err(e) => {
                return Err(e).with_context(|| format!("end offset of {}", self.topic));
            }
        };
        let mut records = 0u64;
        let mut position = self.position();
        while position < end {
            let left = deadline.saturating_duration_since(Instant::now());
            anyhow::ensure!(
                !left.is_zero(),
                "{} not read to its end offset {end} within {timeout:?} (at {position})",
                self.topic
            );
            match self.consumer.poll(left.min(READ_POLL)) {
                Some(Ok(msg)) => {
                    position = msg.offset() + 1;
                    each(
                        msg.key().unwrap_or_default(),
                        msg.payload().unwrap_or_default(),
                        msg.offset(),
                    );
                    records += 1;
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    // Caught up with the broker's end: nothing below `end`
                    // is left (whatever the watermark counted).
                    break;
                }
                Some(Err(e)) if unknown_topic(&e) => break,
                Some(Err(e)) => return Err(e).with_context(|| format!("reading {}", self.topic)),
                None => position = position.max(self.position()),
            }
        }
        // Records of the last batch that are already fetched belong to the
        // same read (some brokers' watermarks count batches, not records).
        records += self.poll_ready(Duration::ZERO, &mut each)?;
        Ok(ReadToEnd { end, records })
    }

    /// Hands what arrived since the last call to `each`, waiting at most
    /// `wait` for the first record. Returns how many records it read.
    pub fn poll_ready(
        &mut self,
        wait: Duration,
        mut each: impl FnMut(&[u8], &[u8], i64),
    ) -> anyhow::Result<u64> {
        let mut n = 0u64;
        let mut wait = wait;
        while let Some(result) = self.consumer.poll(wait) {
            wait = Duration::ZERO;
            match result {
                Ok(msg) => {
                    each(
                        msg.key().unwrap_or_default(),
                        msg.payload().unwrap_or_default(),
                        msg.offset(),
                    );
                    n += 1;
                }
                Err(KafkaError::PartitionEOF(_)) => {}
                Err(e) if unknown_topic(&e) => {}
                Err(e) => return Err(e).with_context(|| format!("reading {}", self.topic)),
            }
        }
        Ok(n)
    }

    /// The next offset this reader fetches (0 before its first record).
    fn position(&self) -> i64 {
        self.consumer
            .position()
            .ok()
            .and_then(|p| match p.find_partition(&self.topic, 0)?.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
            .unwrap_or(0)
    }
}

fn unknown_topic(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition)
    )
}
