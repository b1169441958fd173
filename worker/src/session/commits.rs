//! What progress writes: the offset syncs the units' progress calls for,
//! and the commits of the positions `UnitProgress` allows.

use super::gaps::incarnation_metadata;
use super::units::UnitId;
use super::Session;
use crate::clients::{Consumer, SyncTag};
use rdkafka::consumer::CommitMode;
use rdkafka::consumer::Consumer as _;
use rdkafka::producer::BaseRecord;
use rdkafka::{Offset, TopicPartitionList};
use std::sync::atomic::Ordering;
use strait_common::access::{denials, Feature, Operation};
use strait_common::error_event;
use strait_common::formats::OffsetSync;
use strait_common::metrics as m;
use strait_common::telemetry::ErrorKind;
use tracing::error;

impl Session<'_> {
    /// Emits the offset syncs the unit's last progress called for (in `to_emit`).
    pub(super) fn emit_syncs(&mut self, id: UnitId) {
        for i in 0..self.syncs.to_emit.len() {
            let (up, down) = self.syncs.to_emit[i];
            self.emit_sync(id, up, down);
        }
    }

    /// Emits an offset sync: pending from here on (no commit passes it
    /// until it is written), then sent, after any of the unit's syncs that
    /// could not be queued yet, in source order.
    pub(super) fn emit_sync(&mut self, id: UnitId, upstream: i64, downstream: i64) {
        let Some(u) = self.units.get_mut(id) else {
            return;
        };
        u.progress.sync_sent(upstream);
        u.unsent_syncs.push_back((upstream, downstream));
        self.send_unsent_syncs(id);
    }

    /// Queues the unit's syncs not queued yet, oldest first, until the
    /// syncs producer's queue is full; the rest wait for the next try (each
    /// emission and each offset-sync interval).
    pub(super) fn send_unsent_syncs(&mut self, id: UnitId) {
        let Some(u) = self.units.get_mut(id) else {
            return;
        };
        while let Some(&(upstream, downstream)) = u.unsent_syncs.front() {
            let sync = OffsetSync {
                topic: u.unit.source.topic.clone(),
                partition: u.unit.source.partition,
                upstream_offset: upstream,
                downstream_offset: downstream,
            };
            let Ok(key) = sync.encode_key() else {
                // A topic name can't exceed 249 bytes in Kafka; never durable.
                u.unsent_syncs.pop_front();
                u.progress.sync_acked(upstream);
                continue;
            };
            let value = sync.encode_value();
            let tag = Box::new(SyncTag { unit: id, upstream });
            let record =
                BaseRecord::<[u8], [u8], Box<SyncTag>>::with_opaque_to(&self.syncs.topic, tag)
                    .partition(0)
                    .key(&key)
                    .payload(&value);
            match self.syncs.producer.send(record) {
                Ok(()) => {
                    self.hot.syncs.increment(1);
                    u.unsent_syncs.pop_front();
                }
                Err((e, _)) => {
                    // Not queued (the queue is full): kept, and sent again
                    // before any later sync of the unit. Commits wait.
                    if !u.sync_backlog_told {
                        u.sync_backlog_told = true;
                        error_event!(warn, self.spec.flow.name, ErrorKind::of(&e), error = %e,
                            topic = %u.unit.source.topic, partition = u.unit.source.partition,
                            "offset sync not queued; kept and sent again (commits wait for it)");
                    }
                    return;
                }
            }
        }
        u.sync_backlog_told = false;
    }

    pub(super) fn flush_unit_syncs(&mut self, id: UnitId) {
        if let Some((up, down)) = self.units.get_mut(id).and_then(|u| u.progress.flush_sync()) {
            self.emit_sync(id, up, down);
        }
    }

    pub(super) fn flush_syncs(&mut self) {
        for id in self.units.ids() {
            self.send_unsent_syncs(id);
            self.flush_unit_syncs(id);
        }
    }

    /// Commits, for every unit, the position past its contiguous
    /// acknowledged records (never further).
    pub(super) fn commit(&mut self, consumer: &Consumer, mode: CommitMode) {
        let ids = self.units.ids();
        self.commit_units(consumer, &ids, mode);
    }

    pub(super) fn commit_units(&mut self, consumer: &Consumer, ids: &[UnitId], mode: CommitMode) {
        if !self.fence.is_open() {
            return; // the units may have moved: their new owner commits
        }
        let force = self.commit_failed.swap(false, Ordering::Relaxed);
        let mut tpl = TopicPartitionList::new();
        let mut moved = Vec::new();
        for &id in ids {
            let Some(u) = self.units.get(id) else {
                continue;
            };
            let pos = match u.progress.to_commit(force) {
                Ok(Some(pos)) => pos,
                Ok(None) => continue,
                Err(breach) => {
                    // Cannot happen while the window is right; if it does, the
                    // commit would skip records the target never acknowledged.
                    m::violated(m::COMMIT_PAST_ACK);
                    error!(flow = %self.spec.flow.name, topic = %u.unit.source.topic,
                           partition = u.unit.source.partition, commit = breach.position.0,
                           acknowledged = ?breach.acknowledged_high,
                           "invariant broken: commit past acknowledged records; not committed");
                    continue;
                }
            };
            let (topic, partition) = (&u.unit.source.topic, u.unit.source.partition);
            if add_position(&mut tpl, topic, partition, pos.0, u.incarnation.as_deref()) {
                moved.push((id, pos));
            }
        }
        if moved.is_empty() {
            return;
        }
        match consumer.commit(&tpl, mode) {
            Ok(()) => {
                for (id, pos) in moved {
                    if let Some(u) = self.units.get_mut(id) {
                        u.progress.committed_at(pos);
                    }
                }
                metrics::counter!(m::COMMITS, "flow" => self.spec.flow.name.clone()).increment(1);
            }
            Err(e) => {
                self.commit_failed.store(true, Ordering::Relaxed);
                if denials::is_denied(&e) {
                    let group = denials::group(&self.spec.flow.commit_group(&self.spec.deployment));
                    denials::refused(
                        &self.spec.flow.source,
                        &self.spec.flow.name,
                        Feature::Replication,
                        Operation::Read,
                        group,
                        &e.to_string(),
                    );
                    error_event!(debug, self.spec.flow.name, ErrorKind::of(&e), error = %e, "commit failed; will retry");
                } else {
                    error_event!(warn, self.spec.flow.name, ErrorKind::of(&e), error = %e, "commit failed; will retry");
                }
            }
        }
    }
}

/// Adds `topic`/`partition` at `position` to a commit, its metadata naming
/// the topic id the unit started in, if known (see `gaps`). In place, so a
/// commit of thousands of partitions stays linear.
pub(super) fn add_position(
    tpl: &mut TopicPartitionList,
    topic: &str,
    partition: i32,
    position: i64,
    incarnation: Option<&str>,
) -> bool {
    let mut e = tpl.add_partition(topic, partition);
    if e.set_offset(Offset::Offset(position)).is_err() {
        return false;
    }
    if let Some(id) = incarnation {
        e.set_metadata(incarnation_metadata(id));
    }
    true
}
