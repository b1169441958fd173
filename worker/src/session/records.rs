//! The record path: a record read from the source becomes a record
//! produced to the target; its delivery report moves the unit's progress;
//! a record the target refuses for good is skipped or stops its unit.

use super::units::UnitId;
use super::{Session, SessionError};
use crate::clients::{Ack, Consumer, SyncAck, Tag};
use crate::errors::{self, Action};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::BaseRecord;
use rdkafka::producer::Producer as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use strait_common::access::{denials, Feature, Operation};
use strait_common::config::OnRefused;
use strait_common::error_event;
use strait_common::metrics as m;
use strait_common::model::RecordOffset;
use strait_common::telemetry::ErrorKind;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// How often a record for a partition the producer does not know refreshes
/// the producer's metadata before the session restarts, and how long each
/// refresh may take (at most about 40 s in all).
const METADATA_REFRESHES: u32 = 20;
const METADATA_WAIT: Duration = Duration::from_secs(2);
/// One wait for delivery reports between metadata refreshes: lets the
/// records already sent complete while the partition becomes known.
const REFRESH_ACK_WAIT: Duration = Duration::from_millis(100);
/// One wait for delivery reports while librdkafka's queue is full: short,
/// since the queue frees room as soon as a batch is acknowledged.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(10);

impl Session<'_> {
    pub(super) fn on_record(
        &mut self,
        consumer: &Consumer,
        msg: &BorrowedMessage<'_>,
        shutdown: &CancellationToken,
    ) -> Result<(), SessionError> {
        let offset = RecordOffset(msg.offset());
        let (id, remote, partition) = {
            let Some((id, u)) = self.units.by_source_mut(msg.topic(), msg.partition()) else {
                return Ok(()); // unassigned meanwhile
            };
            if !u.phase.replicates() {
                return Ok(()); // failed or releasing: resumes from the committed position later
            }
            if !u.progress.accepts(offset) {
                return Ok(()); // already sent in this session
            }
            (id, u.remote.clone(), u.unit.source.partition)
        };
        let key = msg.key();
        let payload = msg.payload();
        let bytes = (key.map_or(0, <[u8]>::len) + payload.map_or(0, <[u8]>::len)) as u64;
        let timestamp = msg.timestamp().to_millis();
        let tag = Box::new(Tag {
            unit: id,
            offset: offset.0,
            bytes,
            timestamp_ms: timestamp.unwrap_or(0),
        });
        let mut record =
            BaseRecord::<[u8], [u8], Box<Tag>>::with_opaque_to(&remote, tag).partition(partition);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(p) = payload {
            record = record.payload(p);
        }
        if let Some(ts) = timestamp {
            record = record.timestamp(ts);
        }
        if let Some(h) = msg.headers() {
            let mut owned = OwnedHeaders::new_with_capacity(h.count());
            for header in h.iter() {
                owned = owned.insert(Header {
                    key: header.key,
                    value: header.value,
                });
            }
            record = record.headers(owned);
        }
        if !self.fence.is_open() {
            return Err(SessionError::Fenced);
        }
        let mut refreshes = 0;
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                // Discovery publishes a unit only once its remote partition
                // exists, so a partition the producer does not know means its
                // metadata predates the remote topic's growth: refresh it and
                // send again, rather than restart the session and re-send
                // what is in flight (duplicates). Bounded, while the new
                // partitions reach every broker; then the session restarts.
                Err((e, back))
                    if errors::unknown_partition(&e) && refreshes < METADATA_REFRESHES =>
                {
                    record = back;
                    refreshes += 1;
                    if refreshes == 1 {
                        info!(flow = %self.spec.flow.name, topic = %remote, partition,
                              "the producer does not know this remote partition yet (the topic grew); refreshing its metadata");
                    }
                    if let Err(e) = self
                        .producer
                        .client()
                        .fetch_metadata(Some(&remote), METADATA_WAIT)
                    {
                        debug!(flow = %self.spec.flow.name, topic = %remote, error = %e, "metadata refresh failed");
                    }
                    if refreshes > 1 {
                        self.wait_acks(consumer, REFRESH_ACK_WAIT)?;
                    }
                    if shutdown.is_cancelled() {
                        return Ok(()); // not sent: re-read after restart
                    }
                    if !self.fence.is_open() {
                        return Err(SessionError::Fenced);
                    }
                }
                Err((e, back)) => match errors::classify_produce(&e) {
                    Action::Retry => {
                        // librdkafka's queue is full: let deliveries drain.
                        record = back;
                        self.wait_acks(consumer, QUEUE_FULL_WAIT)?;
                        if shutdown.is_cancelled() {
                            return Ok(()); // not sent: re-read after restart
                        }
                    }
                    Action::Refused if self.txn.is_some() => {
                        return Err(self.refused_in_transaction(id, offset, bytes, e))
                    }
                    Action::Refused => {
                        self.refused(consumer, id, offset, bytes, &e, false);
                        return Ok(());
                    }
                    Action::RestartSession => return Err(SessionError::Delivery(e)),
                },
            }
        }
        // Sent: in flight until its delivery report, which finds the unit
        // (a session lets a unit go only between records).
        if let Some(u) = self.units.get_mut(id) {
            u.progress.sent(offset, bytes);
        }
        self.in_flight.sent(bytes);
        self.flow_control(consumer, id);
        Ok(())
    }

    /// A record the target refuses for good: skip and count it, or stop the
    /// unit visibly. `in_flight` says whether it was handed to the producer.
    pub(super) fn refused(
        &mut self,
        consumer: &Consumer,
        id: UnitId,
        offset: RecordOffset,
        bytes: u64,
        e: &KafkaError,
        in_flight: bool,
    ) {
        let flow = self.spec.flow.name.clone();
        let Some(u) = self.units.get_mut(id) else {
            return;
        };
        if denials::is_denied(e) {
            // A missing permission, not a bad record: said once with the
            // ACL to add (the unit is handled as any refusal below).
            denials::refused(
                &self.spec.flow.target,
                &flow,
                Feature::Replication,
                Operation::Write,
                denials::topic(&u.remote),
                &e.to_string(),
            );
        }
        match self.spec.flow.on_refused {
            OnRefused::Skip => {
                self.syncs.to_emit.clear();
                let skipped = u
                    .progress
                    .skipped(offset, bytes, in_flight, &mut self.syncs.to_emit);
                metrics::counter!(m::RECORDS_SKIPPED, "flow" => flow.clone()).increment(1);
                // A refused batch can be thousands of records: the first one
                // of a unit's session is logged, the rest are counted.
                let offset = offset.0;
                if skipped == 1 {
                    error_event!(warn, flow, ErrorKind::of(e), topic = %u.unit.source.topic, partition = u.unit.source.partition,
                          offset, error = %e, "record refused by the target, skipped (on_refused = skip); further skips of this partition are only counted (strait_records_skipped_total)");
                } else {
                    error_event!(debug, flow, ErrorKind::of(e), topic = %u.unit.source.topic, partition = u.unit.source.partition,
                           offset, error = %e, "record skipped");
                }
                self.emit_syncs(id);
            }
            OnRefused::Stop => {
                let remedy = errors::remedy(e)
                    .map(|r| format!("; {r}"))
                    .unwrap_or_default();
                let offset = offset.0;
                let reason = format!(
                    "record at offset {offset} ({bytes} bytes) refused by the target: {e}{remedy}"
                );
                error_event!(error, flow, ErrorKind::of(e), topic = %u.unit.source.topic, partition = u.unit.source.partition,
                       offset, bytes, error = %e, remedy, "unit stopped: record refused by the target");
                u.phase.fail(reason);
                self.apply_pause(consumer, id);
            }
        }
    }

    /// With exactly-once a refused record cannot be stepped over, and the
    /// transaction it is in cannot commit (librdkafka makes a failed
    /// delivery abort it). The session ends, its transaction aborts, and the
    /// next session starts at once with this unit stopped at the record
    /// (state `failed`, the reason in its error) and the others going on
    /// from their last transaction.
    pub(super) fn refused_in_transaction(
        &self,
        id: UnitId,
        offset: RecordOffset,
        bytes: u64,
        e: KafkaError,
    ) -> SessionError {
        let Some(u) = self.units.get(id) else {
            // Not held (never so: a unit is let go only between records):
            // the session restarts.
            return SessionError::Delivery(e);
        };
        let remedy = errors::remedy(&e).unwrap_or("");
        error_event!(error, self.spec.flow.name, ErrorKind::of(&e), topic = %u.unit.source.topic,
            partition = u.unit.source.partition, offset = offset.0, bytes, error = %e, remedy,
            "unit stopped: record refused by the target; the open transaction aborts and the flow goes on without the unit");
        let remedy = if remedy.is_empty() {
            String::new()
        } else {
            format!("; {remedy}")
        };
        let reason = format!(
            "record at offset {} ({bytes} bytes) refused by the target: {e}{remedy}",
            offset.0
        );
        self.stopped.insert(u.unit.clone(), reason);
        SessionError::RefusedInTransaction {
            unit: Box::new(u.unit.clone()),
            offset,
            error: e,
        }
    }

    pub(super) fn wait_acks(
        &mut self,
        consumer: &Consumer,
        timeout: Duration,
    ) -> Result<(), SessionError> {
        if let Ok(ack) = self.acks.recv_timeout(timeout) {
            self.on_ack(consumer, ack)?;
        }
        self.handle_acks(consumer)
    }

    pub(super) fn handle_acks(&mut self, consumer: &Consumer) -> Result<(), SessionError> {
        while let Ok(ack) = self.acks.try_recv() {
            self.on_ack(consumer, ack)?;
        }
        while let Ok(SyncAck { tag, result }) = self.syncs.acks.try_recv() {
            if let Err(e) = result {
                // With no delivery timeout only a permanent refusal (e.g. not
                // authorised on the offset-syncs topic) gets here.
                if denials::is_denied(&e) {
                    let (cluster, topic) = self.spec.flow.offset_syncs();
                    denials::refused(
                        cluster,
                        &self.spec.flow.name,
                        Feature::OffsetSyncs,
                        Operation::Write,
                        denials::topic(&topic),
                        &e.to_string(),
                    );
                }
                return Err(SessionError::OffsetSync(e));
            }
            if denials::standing() {
                let (cluster, topic) = self.spec.flow.offset_syncs();
                denials::allowed_topic(cluster, Operation::Write, &topic);
            }
            if let Some(u) = self.units.get_mut(tag.unit) {
                u.progress.sync_acked(tag.upstream);
            }
        }
        Ok(())
    }

    pub(super) fn on_ack(&mut self, consumer: &Consumer, ack: Ack) -> Result<(), SessionError> {
        let Tag {
            unit: id,
            offset,
            bytes,
            timestamp_ms,
        } = *ack.tag;
        let offset = RecordOffset(offset);
        self.in_flight.acknowledged(bytes);
        let Some(u) = self.units.get_mut(id) else {
            return Ok(()); // released; its records are the next owner's
        };
        match ack.result {
            Ok(downstream) => {
                let flow = &self.spec.flow.name;
                self.syncs.to_emit.clear();
                if let Err(e) = u
                    .progress
                    .acked(offset, downstream, bytes, &mut self.syncs.to_emit)
                {
                    debug_assert!(false, "acknowledgement of a record not in flight: {e:?}");
                    warn!(flow = %flow, error = ?e, "ignored a delivery report for a record not in flight");
                }
                self.status.count_acknowledged(1);
                self.hot.records.increment(1);
                self.hot.bytes.increment(bytes);
                if timestamp_ms > 0 {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    self.hot
                        .latency
                        .record((now - timestamp_ms).max(0) as f64 / 1000.0);
                }
                self.emit_syncs(id);
            }
            Err(e) => match errors::classify_produce(&e) {
                Action::Refused if self.txn.is_some() => {
                    return Err(self.refused_in_transaction(id, offset, bytes, e))
                }
                Action::Refused => self.refused(consumer, id, offset, bytes, &e, true),
                Action::Retry | Action::RestartSession => {
                    error_event!(warn, self.spec.flow.name, ErrorKind::of(&e), error = %e, "delivery failed; the session restarts");
                    return Err(SessionError::Delivery(e));
                }
            },
        }
        self.flow_control(consumer, id);
        Ok(())
    }
}
