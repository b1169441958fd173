//! Where units start, and what happens when the source no longer has the
//! records a unit was about to read.
//!
//! A unit starts at its stored position, resolved here (the committed
//! offset, else the flow's `start`), so that the consumer's own reset
//! (`auto.offset.reset`) never picks a position: it is set to `error`.
//! When a fetch position is out of range, librdkafka reports it and stops
//! fetching that partition; the session then finds which unit it was by
//! the source's watermarks:
//!
//! - position below the log start: retention or truncation deleted records
//!   strait had not read. They are counted (`strait_records_lost_total{reason="expired"}`),
//!   logged and shown in status; then `on_source_gap` continues from the log
//!   start or stops the unit.
//! - position past the log end (confirmed by asking for the record before
//!   it): the topic was deleted and re-created, or truncated. Counted
//!   (`strait_source_resets_total`) and logged; `continue` replicates the new
//!   incarnation from its beginning, `stop` stops the unit.
//!
//! - a topic re-created that has already grown past the position is in
//!   range, so positions cannot tell; its topic id can. Every commit names
//!   the topic id it was made in (the offset's metadata, `topic_id=...`), and
//!   a unit starting where the committed id differs from the topic's id now
//!   is a re-created topic: counted and logged like the case above, then
//!   replicated from its beginning or stopped. A running unit asks for its
//!   topic's id every few seconds (`ID_CHECK`): librdkafka goes on at the
//!   old offset in the new topic, so without this the new topic's records
//!   before that offset would never be read. Brokers that give no topic
//!   ids, or drop commit metadata (tansu does), leave the positions only.
//!
//! Offset gaps inside the log (compaction, transaction markers, aborted
//! transactions) are not out of range and never come here: the next record
//! simply has a higher offset.

use rdkafka::consumer::Consumer as _;
use strait_common::config::StartAt;
use strait_common::telemetry::ErrorKind;

use super::units::UnitId;
use super::{Session, SessionError};
use crate::clients::Consumer;
use crate::link::FlowSpec;
use crate::progress::UnitProgress;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};
use strait_common::config::OnSourceGap;
use strait_common::error_event;
use strait_common::metrics as m;
use strait_common::model::{TopicPartition, Unit};
use tracing::{debug, warn};

/// How long a watermark query or a probe may take.
const QUERY: Duration = Duration::from_secs(5);
/// How often running units' topic ids are asked for.
pub(super) const ID_CHECK: Duration = Duration::from_secs(5);
/// How long a unit whose topic was re-created waits for the old topic's
/// records still in flight before it starts on the new one (else it stops).
const RECREATED_WAIT: Duration = Duration::from_secs(10);
/// The shortest wait for an OffsetFetch, even with the deadline near: an
/// answer takes at least a round trip.
const COMMITTED_MIN_WAIT: Duration = Duration::from_millis(100);
/// Pause before OffsetFetch is asked again while the group's coordinator
/// moves or loads: a coordinator settles in about a second.
const COORDINATOR_RETRY: Duration = Duration::from_millis(200);
/// One wait for delivery reports while the old topic's records drain.
const DRAIN_WAIT: Duration = Duration::from_millis(100);

/// Where a unit starts: the position, and the topic id the commit it came
/// from was made in, if it named one.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Start {
    pub at: Offset,
    pub incarnation: Option<String>,
}

impl Start {
    /// Not resolved yet: the source group's committed position, else `start`.
    pub fn stored() -> Start {
        Start {
            at: Offset::Stored,
            incarnation: None,
        }
    }

    /// A committed `offset` with the commit's `metadata`.
    pub fn committed(offset: i64, metadata: &str) -> Start {
        Start {
            at: Offset::Offset(offset),
            incarnation: metadata
                .strip_prefix(INCARNATION)
                .filter(|id| !id.is_empty())
                .map(str::to_owned),
        }
    }
}

const INCARNATION: &str = "topic_id=";

/// A commit's metadata naming the topic id it was made in.
pub(super) fn incarnation_metadata(topic_id: &str) -> String {
    format!("{INCARNATION}{topic_id}")
}

/// The source topics' ids now (empty where the broker gives none; a failed
/// query is logged and leaves the check to the positions).
pub(super) fn topic_ids(
    spec: &FlowSpec,
    consumer: &Consumer,
    topics: &[&str],
) -> BTreeMap<String, String> {
    let flow = &spec.flow.name;
    if let crate::link::TopicIds::Fixed(ids) = &spec.topic_ids {
        return ids
            .iter()
            .filter(|(t, _)| topics.contains(&t.as_str()))
            .map(|(t, id)| (t.clone(), id.clone()))
            .collect();
    }
    match strait_common::native::topic_ids(consumer.client(), topics, QUERY) {
        Ok(ids) => ids,
        Err(e) => {
            warn!(flow = %flow, error = %e, "source topic ids unknown; a re-created topic is told by its positions only");
            BTreeMap::new()
        }
    }
}

/// The positions committed to the flow's group on the source for `units`
/// (those with one), with the topic id each names.
pub(super) fn committed(
    consumer: &Consumer,
    units: &[Unit],
) -> Result<HashMap<TopicPartition, Start>, SessionError> {
    if units.is_empty() {
        return Ok(HashMap::new());
    }
    let mut tpl = TopicPartitionList::new();
    for u in units {
        tpl.add_partition(&u.source.topic, u.source.partition);
    }
    let got = committed_offsets(consumer, &tpl, QUERY).map_err(SessionError::Assign)?;
    Ok(starts(&got))
}

/// OffsetFetch for `tpl`, asked again while the group's coordinator is
/// moving or loading (a cluster starting, a coordinator failing over:
/// `NotCoordinator`, `CoordinatorLoadInProgress`, `CoordinatorNotAvailable`),
/// until `timeout`; any other error at once.
pub(super) fn committed_offsets<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    tpl: &TopicPartitionList,
    timeout: Duration,
) -> rdkafka::error::KafkaResult<TopicPartitionList> {
    use rdkafka::types::RDKafkaErrorCode as Code;
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match consumer.committed_offsets(tpl.clone(), left.max(COMMITTED_MIN_WAIT)) {
            Err(e)
                if matches!(
                    e.rdkafka_error_code(),
                    Some(
                        Code::NotCoordinator
                            | Code::CoordinatorLoadInProgress
                            | Code::CoordinatorNotAvailable
                    )
                ) && Instant::now() + COORDINATOR_RETRY < deadline =>
            {
                debug!(error = %e, "committed offsets: the group's coordinator is not ready; asking again");
                std::thread::sleep(COORDINATOR_RETRY);
            }
            r => return r,
        }
    }
}

/// The committed positions in an OffsetFetch answer, keyed by topic and
/// partition, with the topic id each names (none where nothing is committed).
pub(super) fn starts(got: &TopicPartitionList) -> HashMap<TopicPartition, Start> {
    got.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) if o >= 0 => Some((
                TopicPartition::new(e.topic(), e.partition()),
                Start::committed(o, e.metadata()),
            )),
            _ => None,
        })
        .collect()
}

/// What a fetch position means against the source's log.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Gap {
    /// The position is in the log.
    None,
    /// Records `[position, low)` are gone: `lost` of them.
    Expired { lost: u64, low: i64 },
    /// The position is past the log end `high`.
    Beyond { high: i64 },
}

/// Fetches `topic`/`partition` from `at` again. A partition stopped on an
/// out-of-range position refuses a seek ("erroneous state"); assigning it
/// anew clears that.
fn reposition(
    consumer: &Consumer,
    topic: &str,
    partition: i32,
    at: Offset,
) -> Result<(), SessionError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    consumer
        .incremental_unassign(&tpl)
        .map_err(SessionError::Assign)?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, at)
        .map_err(SessionError::Assign)?;
    consumer
        .incremental_assign(&tpl)
        .map_err(SessionError::Assign)?;
    consumer.resume(&tpl).map_err(SessionError::Assign)
}

/// Pure: a fetch `position` against the log's `[low, high)`.
pub(crate) fn classify(position: i64, low: i64, high: i64) -> Gap {
    if position < low {
        Gap::Expired {
            lost: (low - position) as u64,
            low,
        }
    } else if position > high {
        Gap::Beyond { high }
    } else {
        Gap::None
    }
}

impl Session<'_> {
    /// Resolves `Offset::Stored` starts: the committed position on the
    /// source, else the flow's `start` (the beginning or end of the log).
    pub(super) fn resolve_starts(
        &self,
        consumer: &Consumer,
        added: &[Unit],
        starts: Vec<Start>,
    ) -> Result<Vec<Start>, SessionError> {
        let stored: Vec<Unit> = added
            .iter()
            .zip(&starts)
            .filter(|(_, s)| s.at == Offset::Stored)
            .map(|(u, _)| u.clone())
            .collect();
        let committed = committed(consumer, &stored)?;
        let fallback = Start {
            at: match self.spec.flow.start {
                StartAt::Earliest => Offset::Beginning,
                StartAt::Latest => Offset::End,
            },
            incarnation: None,
        };
        Ok(added
            .iter()
            .zip(starts)
            .map(|(u, s)| match s.at {
                Offset::Stored => committed
                    .get(&u.source)
                    .cloned()
                    .unwrap_or_else(|| fallback.clone()),
                _ => s,
            })
            .collect())
    }

    /// Starts committed in another incarnation of their topic (its id then
    /// differs from its id now): the topic was deleted and re-created.
    /// Counted and logged; with `on_source_gap = "continue"` the start
    /// becomes the new topic's beginning, with `"stop"` the unit is named in
    /// the result, with why, to start stopped. Either way the unit's error
    /// says what happened.
    pub(super) fn check_incarnations(
        &self,
        added: &[Unit],
        starts: &mut [Start],
        ids: &BTreeMap<String, String>,
    ) -> BTreeMap<Unit, String> {
        let flow = &self.spec.flow.name;
        let mut notes = BTreeMap::new();
        for (u, s) in added.iter().zip(starts.iter_mut()) {
            let (Offset::Offset(position), Some(was), Some(now)) =
                (s.at, s.incarnation.as_deref(), ids.get(&u.source.topic))
            else {
                continue;
            };
            if was == now {
                continue;
            }
            let (topic, partition) = (&u.source.topic, u.source.partition);
            metrics::counter!(m::SOURCE_RESETS, "flow" => flow.clone()).increment(1);
            error_event!(error, flow, ErrorKind::SourceGap, topic = %topic, partition, position, committed_topic_id = was, topic_id = %now,
                "the topic's id changed since the last commit: it was deleted and re-created; its old position does not apply");
            let what = format!(
                "topic id {now} differs from {was}, the one position {position} was committed in: the topic was re-created"
            );
            match self.spec.flow.on_source_gap {
                OnSourceGap::Continue => {
                    s.at = Offset::Beginning;
                    notes.insert(
                        u.clone(),
                        format!("{what}; replicating it from its beginning"),
                    );
                }
                OnSourceGap::Stop => {
                    notes.insert(
                        u.clone(),
                        format!("{what}; stopped (on_source_gap = \"stop\")"),
                    );
                }
            }
        }
        notes
    }

    /// librdkafka reported a fetch position out of range: finds the units
    /// whose position the source no longer has, and deals with each.
    pub(super) fn on_out_of_range(&mut self, consumer: &Consumer) -> Result<(), SessionError> {
        let flow = self.spec.flow.name.clone();
        let mut found = 0;
        for id in self.units.ids_where(|u| u.phase.is_running()) {
            let Some(u) = self.units.get(id) else {
                continue;
            };
            let Some(position) = u.progress.next_expected().map(|n| n.0).or(u.start_at) else {
                continue;
            };
            let (topic, partition) = (u.unit.source.topic.clone(), u.unit.source.partition);
            let (low, high) = match consumer.fetch_watermarks(&topic, partition, QUERY) {
                Ok(w) => w,
                Err(e) => {
                    warn!(flow = %flow, topic = %topic, partition, error = %e, "watermarks unknown; checked again at the next report");
                    continue;
                }
            };
            let gap = match classify(position, low, high) {
                // Some brokers' end offsets count batches: past the end
                // only if the record before the position is gone too.
                Gap::Beyond { .. }
                    if strait_common::kafka::record_exists(
                        &self.spec.source,
                        &topic,
                        partition,
                        position - 1,
                        QUERY,
                    ) =>
                {
                    Gap::None
                }
                g => g,
            };
            match gap {
                Gap::None => {}
                Gap::Expired { lost, low } => {
                    found += 1;
                    self.expired(consumer, id, position, lost, low)?;
                }
                Gap::Beyond { high } => {
                    found += 1;
                    self.beyond(consumer, id, position, high)?;
                }
            }
        }
        if found == 0 {
            warn!(flow = %flow, "the source reported a position out of range, but every unit's position is in its log");
        }
        Ok(())
    }

    /// Records `[position, low)` expired before they were read.
    fn expired(
        &mut self,
        consumer: &Consumer,
        id: UnitId,
        position: i64,
        lost: u64,
        low: i64,
    ) -> Result<(), SessionError> {
        let flow = self.spec.flow.name.clone();
        let policy = self.spec.flow.on_source_gap;
        let Some(u) = self.units.get_mut(id) else {
            return Ok(());
        };
        let (topic, partition) = (u.unit.source.topic.clone(), u.unit.source.partition);
        metrics::counter!(m::RECORDS_LOST, "flow" => flow.clone(), "reason" => "expired")
            .increment(lost);
        u.lost += lost;
        error_event!(error, flow, ErrorKind::SourceGap, topic = %topic, partition, from = position, to = low, lost,
            "records gone from the source before strait read them (retention or truncation overtook replication)");
        let what = format!(
            "{lost} records gone from the source before they were read (offsets {position}..{low}: retention or truncation)"
        );
        match policy {
            OnSourceGap::Continue => {
                u.phase.note(format!("{what}; continued at {low}"));
                reposition(consumer, &topic, partition, Offset::Offset(low))?;
            }
            OnSourceGap::Stop => {
                u.phase
                    .fail(format!("{what}; stopped (on_source_gap = \"stop\")"));
                self.apply_pause(consumer, id);
            }
        }
        Ok(())
    }

    /// Asks the source for the ids of the running units' topics: a unit
    /// whose topic's id is not the one it started in reads a re-created
    /// topic at a position of the old one.
    pub(super) fn check_topic_ids(&mut self, consumer: &Consumer) -> Result<(), SessionError> {
        let topics: BTreeSet<&str> = self
            .units
            .values()
            .filter(|u| u.incarnation.is_some() && !u.phase.is_releasing())
            .map(|u| u.unit.source.topic.as_str())
            .collect();
        if topics.is_empty() {
            return Ok(());
        }
        let topics: Vec<&str> = topics.into_iter().collect();
        let ids = match &self.spec.topic_ids {
            crate::link::TopicIds::Fixed(ids) => ids.clone(),
            _ => match strait_common::native::topic_ids(consumer.client(), &topics, QUERY) {
                Ok(ids) => ids,
                Err(e) => {
                    debug!(flow = %self.spec.flow.name, error = %e, "topic ids not checked");
                    return Ok(());
                }
            },
        };
        let changed: Vec<(UnitId, String, String)> = self
            .units
            .iter()
            .filter(|(_, u)| u.phase.replicates())
            .filter_map(|(id, u)| {
                let was = u.incarnation.as_ref()?;
                let now = ids.get(&u.unit.source.topic)?;
                (now != was).then(|| (id, was.clone(), now.clone()))
            })
            .collect();
        for (id, was, now) in changed {
            self.recreated_under(consumer, id, &was, &now)?;
        }
        Ok(())
    }

    /// The unit's topic was deleted and re-created while it ran (its id is
    /// `now`, the unit started in `was`): counted and logged, then the new
    /// topic is replicated from its beginning once the old one's records in
    /// flight are acknowledged, or the unit stops.
    fn recreated_under(
        &mut self,
        consumer: &Consumer,
        id: UnitId,
        was: &str,
        now: &str,
    ) -> Result<(), SessionError> {
        let flow = self.spec.flow.name.clone();
        let Some(u) = self.units.get(id) else {
            return Ok(());
        };
        let (topic, partition) = (u.unit.source.topic.clone(), u.unit.source.partition);
        let position = u.progress.next_expected().map(|n| n.0).or(u.start_at);
        metrics::counter!(m::SOURCE_RESETS, "flow" => flow.clone()).increment(1);
        error_event!(error, flow, ErrorKind::SourceGap, topic = %topic, partition, ?position, started_topic_id = was, topic_id = now,
            "the topic's id changed while it was replicated: it was deleted and re-created; the position reached in the old topic does not apply to the new one");
        // Stop reading the new topic at the old position, and let what was
        // read of it so far land before the unit starts anew.
        if let Err(e) = consumer.pause(u.fetch.tpl()) {
            warn!(flow = %flow, topic = %topic, partition, error = %e, "pause failed");
        }
        let deadline = Instant::now() + RECREATED_WAIT;
        let settled = |s: &Self| s.units.get(id).is_none_or(|u| u.progress.settled());
        while !settled(self) && Instant::now() < deadline {
            self.wait_acks(consumer, DRAIN_WAIT)?;
        }
        let what = format!(
            "topic id {now} differs from {was}, the one this unit started in: the topic was re-created while replicated"
        );
        self.start_anew_or_stop(consumer, id, &what, Some(now.to_owned()))
    }

    /// The position is past the log's end: the topic was re-created or
    /// truncated.
    fn beyond(
        &mut self,
        consumer: &Consumer,
        id: UnitId,
        position: i64,
        high: i64,
    ) -> Result<(), SessionError> {
        let flow = self.spec.flow.name.clone();
        let Some(u) = self.units.get(id) else {
            return Ok(());
        };
        let (topic, partition) = (u.unit.source.topic.clone(), u.unit.source.partition);
        // The new incarnation's id, for the commits made from here on.
        let incarnation = topic_ids(self.spec, consumer, &[&topic]).remove(&topic);
        metrics::counter!(m::SOURCE_RESETS, "flow" => flow.clone()).increment(1);
        error_event!(error, flow, ErrorKind::SourceGap, topic = %topic, partition, position, end = high,
            "the source no longer has this position: the topic was deleted and re-created, or truncated");
        let what = format!(
            "position {position} is past the source's end {high}: the topic was re-created or truncated"
        );
        self.start_anew_or_stop(consumer, id, &what, incarnation)
    }

    /// A unit whose topic was re-created (`what` says how that was told).
    /// Replicating the new incarnation means a fresh progress, and records
    /// of the old one still in flight would land in it: with
    /// `on_source_gap = "continue"` and nothing of the old topic in flight,
    /// the unit starts anew in `incarnation` from the topic's beginning;
    /// otherwise it stops, saying why.
    fn start_anew_or_stop(
        &mut self,
        consumer: &Consumer,
        id: UnitId,
        what: &str,
        incarnation: Option<String>,
    ) -> Result<(), SessionError> {
        let policy = self.spec.flow.on_source_gap;
        let offset_lag_max = self.spec.flow.offset_lag_max;
        let Some(u) = self.units.get_mut(id) else {
            return Ok(());
        };
        if policy == OnSourceGap::Continue && u.progress.settled() {
            u.progress = UnitProgress::new(offset_lag_max);
            u.unsent_syncs.clear(); // the old topic's
            u.start_at = None;
            u.incarnation = incarnation;
            let (topic, partition) = (u.unit.source.topic.clone(), u.unit.source.partition);
            reposition(consumer, &topic, partition, Offset::Beginning)?;
            // Assigned anew, and resumed.
            u.fetch.reassigned();
            u.phase
                .restart(format!("{what}; replicating it from its beginning"));
        } else {
            let why = match policy {
                OnSourceGap::Stop => "stopped (on_source_gap = \"stop\")",
                OnSourceGap::Continue => "stopped: records of the old topic were still in flight",
            };
            u.phase.fail(format!("{what}; {why}"));
            self.apply_pause(consumer, id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_is_in_the_log_expired_or_past_its_end() {
        assert_eq!(classify(10, 0, 100), Gap::None);
        assert_eq!(
            classify(100, 0, 100),
            Gap::None,
            "at the end: nothing new yet"
        );
        assert_eq!(classify(0, 0, 0), Gap::None, "an empty log");
        assert_eq!(classify(10, 40, 100), Gap::Expired { lost: 30, low: 40 });
        assert_eq!(classify(101, 0, 100), Gap::Beyond { high: 100 });
        // Compaction and transaction markers leave holes inside [low, high):
        // a position in one is in the log, never a loss.
        assert_eq!(classify(57, 50, 60), Gap::None);
    }
}
