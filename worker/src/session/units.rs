//! The session's units: one table, looked up by the session's id of a unit
//! (what its records' and offset syncs' delivery reports carry) or by its
//! source partition (what a record read carries), and what each unit is
//! doing ([`Phase`]).

use crate::clients::Consumer;
use crate::progress::{Hysteresis, UnitProgress};
use crate::status::UnitState;
use rdkafka::consumer::Consumer as _;
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;
use strait_common::model::Unit;

/// The session's id of a unit, in the tags of its records and syncs.
pub(super) type UnitId = u64;

/// What a unit is doing, with what goes with it. Reported as its
/// [`UnitState`] and error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Phase {
    /// Fetching and replicating. `note`: what happened to it in this
    /// session that it went on past (a gap on the source), shown as its
    /// error.
    Running { note: Option<String> },
    /// Fetching paused by back-pressure: the unit's or the flow's in-flight
    /// bytes are over their limit. `note` as in `Running`.
    Paused { note: Option<String> },
    /// Stopped at an error (a refused record, a gap with
    /// `on_source_gap = "stop"`): fetches nothing until it leaves the
    /// assignment.
    Failed { reason: String },
    /// No longer wanted: fetches nothing; waits for the target until
    /// `deadline` (at-least-once), then commits and lets go. `error`: what it
    /// showed before.
    Releasing {
        deadline: Instant,
        error: Option<String>,
    },
}

impl Phase {
    /// A unit starting: stopped, with why, or running.
    pub fn starting(stopped: Option<String>, note: Option<String>) -> Phase {
        match stopped {
            Some(reason) => Phase::Failed { reason },
            None => Phase::Running { note },
        }
    }

    /// As reported (status, metrics).
    pub fn state(&self) -> UnitState {
        match self {
            Phase::Running { .. } => UnitState::Running,
            Phase::Paused { .. } => UnitState::Paused,
            Phase::Failed { .. } => UnitState::Failed,
            Phase::Releasing { .. } => UnitState::Releasing,
        }
    }

    /// The unit's error as reported: why it failed, else what it went past.
    pub fn error(&self) -> Option<&str> {
        match self {
            Phase::Running { note } | Phase::Paused { note } => note.as_deref(),
            Phase::Failed { reason } => Some(reason),
            Phase::Releasing { error, .. } => error.as_deref(),
        }
    }

    /// Whether records read for it are replicated (running or paused by
    /// back-pressure); a failed or releasing unit resumes from its committed
    /// position later.
    pub fn replicates(&self) -> bool {
        matches!(self, Phase::Running { .. } | Phase::Paused { .. })
    }

    /// Whether it fetches nothing whatever the in-flight limits say.
    pub fn is_stopped(&self) -> bool {
        !self.replicates()
    }

    pub fn is_running(&self) -> bool {
        matches!(self, Phase::Running { .. })
    }

    pub fn is_releasing(&self) -> bool {
        matches!(self, Phase::Releasing { .. })
    }

    /// Whether it is releasing and its wait for the target ran out.
    pub fn release_overdue(&self, now: Instant) -> bool {
        matches!(self, Phase::Releasing { deadline, .. } if now >= *deadline)
    }

    /// Back-pressure: paused (`over`) or running again. Nothing changes for
    /// a stopped unit.
    pub fn throttle(&mut self, over: bool) {
        let note = match self {
            Phase::Running { note } | Phase::Paused { note } => note.take(),
            Phase::Failed { .. } | Phase::Releasing { .. } => return,
        };
        *self = match over {
            true => Phase::Paused { note },
            false => Phase::Running { note },
        };
    }

    /// Says what happened to the unit, which goes on as it is: its error
    /// from here on (a failed unit's reason is replaced).
    pub fn note(&mut self, what: String) {
        match self {
            Phase::Running { note } | Phase::Paused { note } => *note = Some(what),
            Phase::Failed { reason } => *reason = what,
            Phase::Releasing { error, .. } => *error = Some(what),
        }
    }

    /// Stops the unit, saying why. A releasing unit fetches nothing
    /// already: it goes on releasing, showing why it stopped, and is let go
    /// when its release ends (its progress stops before the refused record,
    /// where its next owner starts and stops again, visibly). Failing it
    /// instead would hold it until some later assignment: its next owner
    /// would wait for it.
    pub fn fail(&mut self, reason: String) {
        match self {
            Phase::Releasing { error, .. } => *error = Some(reason),
            _ => *self = Phase::Failed { reason },
        }
    }

    /// Starts anew (a re-created topic replicated from its beginning),
    /// saying why.
    pub fn restart(&mut self, note: String) {
        *self = Phase::Running { note: Some(note) };
    }

    /// No longer wanted: releasing until `deadline`, showing the error it
    /// had.
    pub fn release(&mut self, deadline: Instant) {
        let error = self.error().map(str::to_owned);
        *self = Phase::Releasing { deadline, error };
    }
}

/// A unit's partition on the session's consumer, and whether its fetching
/// is paused there. That follows the unit's [`Phase`] and the in-flight
/// limits (`Session::apply_pause`), except while a pause or resume failed:
/// it says what the consumer was last told, so the next call tries again.
pub(super) struct Fetch {
    tpl: TopicPartitionList,
    paused: bool,
}

impl Fetch {
    /// Assigned and fetching (the session resumes what it assigns).
    pub fn new(topic: &str, partition: i32) -> Fetch {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        Fetch { tpl, paused: false }
    }

    pub fn tpl(&self) -> &TopicPartitionList {
        &self.tpl
    }

    /// Pauses or resumes fetching, unless it is so already. On an error
    /// nothing is taken as changed.
    pub fn set_paused(&mut self, consumer: &Consumer, paused: bool) -> Result<(), KafkaError> {
        if paused == self.paused {
            return Ok(());
        }
        match paused {
            true => consumer.pause(&self.tpl)?,
            false => consumer.resume(&self.tpl)?,
        }
        self.paused = paused;
        Ok(())
    }

    /// Assigned anew, and resumed: fetching.
    pub fn reassigned(&mut self) {
        self.paused = false;
    }
}

pub(super) struct UnitSlot {
    pub unit: Unit,
    pub remote: Arc<str>,
    pub fetch: Fetch,
    pub phase: Phase,
    /// What was sent, acknowledged and synced, and what may be committed.
    pub progress: UnitProgress,
    /// The unit's own in-flight limit.
    pub over_limit: Hysteresis,
    /// Where the unit started reading, when it was a stored position (not
    /// the beginning or end of the log).
    pub start_at: Option<i64>,
    /// Records lost on the source while this session held the unit.
    pub lost: u64,
    /// The source topic's id when the unit started (named in its commits).
    pub incarnation: Option<String>,
    /// Offset syncs emitted that the syncs producer could not queue yet
    /// (upstream, downstream), in source order: pending for the commits.
    pub unsent_syncs: VecDeque<(i64, i64)>,
    /// Whether the current backlog of unsent syncs was logged.
    pub sync_backlog_told: bool,
}

impl UnitSlot {
    /// A unit starting at `at` in `phase`, with a fresh progress.
    pub fn new(
        unit: Unit,
        phase: Phase,
        at: Offset,
        incarnation: Option<String>,
        offset_lag_max: u64,
    ) -> UnitSlot {
        UnitSlot {
            remote: Arc::from(unit.remote_topic.as_str()),
            fetch: Fetch::new(&unit.source.topic, unit.source.partition),
            unit,
            phase,
            progress: UnitProgress::new(offset_lag_max),
            over_limit: Hysteresis::default(),
            start_at: match at {
                Offset::Offset(o) => Some(o),
                _ => None,
            },
            lost: 0,
            incarnation,
            unsent_syncs: VecDeque::new(),
            sync_backlog_told: false,
        }
    }
}

/// The session's units, by id and by source partition. Both lookups change
/// together, only here: a unit is found by either key or by neither.
#[derive(Default)]
pub(super) struct Units {
    slots: HashMap<UnitId, UnitSlot>,
    by_source: HashMap<String, HashMap<i32, UnitId>>,
    next_id: UnitId,
}

impl Units {
    /// Adds a unit under a new id. A unit already held on the same source
    /// partition is no longer found by it (the consumer refuses to assign a
    /// partition twice, so a session never gets here).
    pub fn insert(&mut self, slot: UnitSlot) -> UnitId {
        let id = self.next_id;
        self.next_id += 1;
        let source = &slot.unit.source;
        self.by_source
            .entry(source.topic.clone())
            .or_default()
            .insert(source.partition, id);
        self.slots.insert(id, slot);
        id
    }

    /// Takes a unit out of both lookups.
    pub fn remove(&mut self, id: UnitId) -> Option<UnitSlot> {
        let slot = self.slots.remove(&id)?;
        let source = &slot.unit.source;
        if let Some(parts) = self.by_source.get_mut(&source.topic) {
            if parts.get(&source.partition) == Some(&id) {
                parts.remove(&source.partition);
            }
            if parts.is_empty() {
                self.by_source.remove(&source.topic);
            }
        }
        Some(slot)
    }

    pub fn clear(&mut self) {
        self.slots.clear();
        self.by_source.clear();
    }

    pub fn get(&self, id: UnitId) -> Option<&UnitSlot> {
        self.slots.get(&id)
    }

    pub fn get_mut(&mut self, id: UnitId) -> Option<&mut UnitSlot> {
        self.slots.get_mut(&id)
    }

    /// The unit reading `topic`/`partition`, with its id.
    pub fn by_source_mut(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Option<(UnitId, &mut UnitSlot)> {
        let id = *self.by_source.get(topic)?.get(&partition)?;
        let slot = self.slots.get_mut(&id)?;
        Some((id, slot))
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (UnitId, &UnitSlot)> {
        self.slots.iter().map(|(id, u)| (*id, u))
    }

    pub fn values(&self) -> impl Iterator<Item = &UnitSlot> {
        self.slots.values()
    }

    /// Every unit's id, to go through while changing them.
    pub fn ids(&self) -> Vec<UnitId> {
        self.slots.keys().copied().collect()
    }

    /// The ids of the units `f` picks.
    pub fn ids_where(&self, mut f: impl FnMut(&UnitSlot) -> bool) -> Vec<UnitId> {
        self.iter()
            .filter(|(_, u)| f(u))
            .map(|(id, _)| id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use strait_common::model::TopicPartition;

    fn unit(topic: &str, partition: i32) -> Unit {
        Unit {
            flow: "f".to_owned(),
            source: TopicPartition {
                topic: topic.to_owned(),
                partition,
            },
            remote_topic: format!("src.{topic}"),
        }
    }

    fn slot(topic: &str, partition: i32) -> UnitSlot {
        UnitSlot::new(
            unit(topic, partition),
            Phase::starting(None, None),
            Offset::Stored,
            None,
            100,
        )
    }

    #[test]
    fn a_unit_is_found_by_its_id_and_its_source_partition_until_removed() {
        let mut units = Units::default();
        let a = units.insert(slot("orders", 0));
        let b = units.insert(slot("orders", 1));
        let c = units.insert(slot("payments", 0));
        assert_eq!(units.len(), 3);
        assert!(a != b && b != c && a != c);
        assert_eq!(units.get(b).unwrap().unit, unit("orders", 1));
        let (id, u) = units.by_source_mut("payments", 0).unwrap();
        assert_eq!((id, &u.unit), (c, &unit("payments", 0)));
        assert!(units.by_source_mut("orders", 2).is_none());
        assert!(units.by_source_mut("other", 0).is_none());

        let gone = units.remove(a).unwrap();
        assert_eq!(gone.unit, unit("orders", 0));
        assert!(units.get(a).is_none());
        assert!(units.by_source_mut("orders", 0).is_none());
        assert!(units.remove(a).is_none(), "removed once");
        assert_eq!(units.by_source_mut("orders", 1).unwrap().0, b);
        let mut ids = units.ids();
        ids.sort();
        assert_eq!(ids, vec![b, c]);

        units.clear();
        assert_eq!(units.len(), 0);
        assert!(units.by_source_mut("orders", 1).is_none());
        assert!(units.by_source.is_empty());
    }

    #[test]
    fn ids_are_never_reused() {
        let mut units = Units::default();
        let a = units.insert(slot("orders", 0));
        units.remove(a);
        let again = units.insert(slot("orders", 0));
        assert_ne!(
            a, again,
            "a delivery report of the old unit must not reach the new one"
        );
        assert_eq!(units.by_source_mut("orders", 0).unwrap().0, again);
        assert!(units.get(a).is_none());
    }

    #[test]
    fn removing_a_unit_leaves_another_on_its_partition_found() {
        // Cannot happen in a session (the consumer refuses a partition
        // assigned twice), but the lookups still agree if it does.
        let mut units = Units::default();
        let old = units.insert(slot("orders", 0));
        let new = units.insert(slot("orders", 0));
        units.remove(old);
        assert_eq!(units.by_source_mut("orders", 0).unwrap().0, new);
        units.remove(new);
        assert!(units.by_source_mut("orders", 0).is_none());
        assert!(units.by_source.is_empty());
    }

    #[test]
    fn ids_where_picks_by_phase() {
        let mut units = Units::default();
        let a = units.insert(slot("orders", 0));
        let b = units.insert(slot("orders", 1));
        units
            .get_mut(b)
            .unwrap()
            .phase
            .release(Instant::now() + Duration::from_secs(1));
        assert_eq!(units.ids_where(|u| u.phase.is_running()), vec![a]);
        assert_eq!(units.ids_where(|u| u.phase.is_releasing()), vec![b]);
    }

    #[test]
    fn a_unit_starts_running_or_failed() {
        let p = Phase::starting(None, None);
        assert_eq!((p.state(), p.error()), (UnitState::Running, None));
        let p = Phase::starting(None, Some("re-created".into()));
        assert_eq!(
            (p.state(), p.error()),
            (UnitState::Running, Some("re-created"))
        );
        let p = Phase::starting(Some("refused".into()), Some("re-created".into()));
        assert_eq!((p.state(), p.error()), (UnitState::Failed, Some("refused")));
        assert!(p.is_stopped() && !p.replicates());
    }

    #[test]
    fn back_pressure_pauses_and_resumes_a_replicating_unit_only() {
        let mut p = Phase::Running {
            note: Some("gap".into()),
        };
        p.throttle(true);
        assert_eq!(p.state(), UnitState::Paused);
        assert_eq!(p.error(), Some("gap"), "the note stays");
        assert!(p.replicates() && !p.is_stopped() && !p.is_running());
        p.throttle(true);
        assert_eq!(p.state(), UnitState::Paused);
        p.throttle(false);
        assert_eq!(
            p,
            Phase::Running {
                note: Some("gap".into())
            }
        );

        let mut failed = Phase::Failed {
            reason: "refused".into(),
        };
        failed.throttle(false);
        assert_eq!(failed.state(), UnitState::Failed);
        let deadline = Instant::now();
        let mut releasing = Phase::Releasing {
            deadline,
            error: None,
        };
        releasing.throttle(false);
        assert_eq!(releasing.state(), UnitState::Releasing);
    }

    #[test]
    fn a_failed_unit_says_why_and_a_note_replaces_the_error() {
        let mut p = Phase::Paused { note: None };
        p.note("continued at 40".into());
        assert_eq!(p.error(), Some("continued at 40"));
        assert_eq!(p.state(), UnitState::Paused);
        p.fail("stopped".into());
        assert_eq!((p.state(), p.error()), (UnitState::Failed, Some("stopped")));
        assert!(p.is_stopped());
        p.note("later".into());
        assert_eq!((p.state(), p.error()), (UnitState::Failed, Some("later")));
    }

    #[test]
    fn a_releasing_unit_keeps_its_error_and_is_overdue_at_its_deadline() {
        let now = Instant::now();
        let deadline = now + Duration::from_secs(10);
        for (before, error) in [
            (Phase::Running { note: None }, None),
            (
                Phase::Paused {
                    note: Some("gap".into()),
                },
                Some("gap"),
            ),
            (
                Phase::Failed {
                    reason: "refused".into(),
                },
                Some("refused"),
            ),
        ] {
            let mut p = before;
            assert!(!p.release_overdue(deadline));
            p.release(deadline);
            assert_eq!((p.state(), p.error()), (UnitState::Releasing, error));
            assert!(p.is_releasing() && p.is_stopped());
            assert!(!p.release_overdue(now));
            assert!(p.release_overdue(deadline));
            assert!(p.release_overdue(deadline + Duration::from_millis(1)));
        }
    }

    #[test]
    fn a_unit_starting_anew_runs_and_says_why() {
        let mut p = Phase::Paused { note: None };
        p.restart("replicating it from its beginning".into());
        assert_eq!(
            p,
            Phase::Running {
                note: Some("replicating it from its beginning".into())
            }
        );
    }

    #[test]
    fn a_releasing_unit_stopped_at_a_refused_record_goes_on_releasing_showing_why() {
        let deadline = Instant::now();
        let mut p = Phase::Releasing {
            deadline,
            error: None,
        };
        p.fail("refused".into());
        assert_eq!(
            (p.state(), p.error()),
            (UnitState::Releasing, Some("refused"))
        );
        assert!(p.is_stopped());
        assert!(p.release_overdue(deadline), "its deadline is kept");
    }

    #[test]
    fn the_reported_states_are_the_status_strings() {
        let deadline = Instant::now();
        let all = [
            Phase::Running { note: None },
            Phase::Paused { note: None },
            Phase::Failed { reason: "x".into() },
            Phase::Releasing {
                deadline,
                error: None,
            },
        ];
        let names: Vec<&str> = all.iter().map(|p| p.state().as_str()).collect();
        assert_eq!(names, ["running", "paused", "failed", "releasing"]);
        let states: Vec<UnitState> = all.iter().map(Phase::state).collect();
        assert_eq!(states, UnitState::ALL);
    }

    #[test]
    fn a_new_fetch_is_not_paused() {
        let mut f = Fetch::new("orders", 3);
        assert!(!f.paused);
        assert_eq!(f.tpl().count(), 1);
        let e = &f.tpl().elements()[0];
        assert_eq!((e.topic(), e.partition()), ("orders", 3));
        f.paused = true;
        f.reassigned();
        assert!(!f.paused);
    }
}
