//! One unit's progress in a session, as a pure state machine: which records
//! were sent, which the target acknowledged, which offset syncs are still on
//! their way, and from that the only position that may be committed.
//!
//! The commit rule (docs/architecture.md, "The commit rule"): a committed
//! position is never past the contiguous acknowledged prefix of the records
//! sent, and never past an offset sync that is not yet durable (exact
//! translation needs every sync below a committed position). The session
//! does the I/O; this type decides.

use std::collections::VecDeque;

use strait_common::model::{NextOffset, RecordOffset};
use strait_common::syncs::{Sync, SyncEmitter};

use crate::inflight::{AckError, Completed, InFlight};

/// A commit position that would break the commit rule: it passes records
/// the target never acknowledged. Cannot happen while the window is right;
/// the session counts it as an invariant violation and commits nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breach {
    pub position: NextOffset,
    pub acknowledged_high: Option<RecordOffset>,
}

#[derive(Debug)]
pub struct UnitProgress {
    inflight: InFlight,
    syncs: SyncEmitter,
    /// Upstream offsets of offset syncs sent and not yet acknowledged, in
    /// increasing order. No commit passes the first.
    pending_syncs: VecDeque<RecordOffset>,
    /// The next source offset expected; a record below it was already sent
    /// in this session (librdkafka re-fetches after pause/resume).
    next_expected: Option<NextOffset>,
    /// The first offset read in this session: the position before any
    /// acknowledgement.
    start: Option<RecordOffset>,
    /// The highest source offset the target acknowledged (or the flow
    /// skipped) in this session, kept apart from the window so a commit can
    /// be checked against it (invariant `commit_past_ack`).
    acked_high: Option<RecordOffset>,
    /// The last position committed.
    committed: Option<NextOffset>,
    acked_bytes: u64,
    skipped: u64,
    completed: Vec<Completed>,
}

impl UnitProgress {
    /// A unit's progress at the start of a session; `offset_lag_max` is the
    /// flow's offset-sync spacing.
    pub fn new(offset_lag_max: u64) -> Self {
        UnitProgress {
            inflight: InFlight::default(),
            syncs: SyncEmitter::new(offset_lag_max),
            pending_syncs: VecDeque::new(),
            next_expected: None,
            start: None,
            acked_high: None,
            committed: None,
            acked_bytes: 0,
            skipped: 0,
            completed: Vec::new(),
        }
    }

    /// Whether a record read at `offset` is new in this session (false: it
    /// was already sent, and is dropped).
    pub fn accepts(&self, offset: RecordOffset) -> bool {
        self.next_expected.is_none_or(|n| offset.0 >= n.0)
    }

    /// The record at `offset` was handed to the producer.
    pub fn sent(&mut self, offset: RecordOffset, bytes: u64) {
        self.inflight.sent(offset, bytes);
        self.next_expected = Some(offset.next());
        self.start.get_or_insert(offset);
    }

    /// The target acknowledged the record at `offset`, written at
    /// `downstream`. Pushes the offset syncs to emit onto `out`.
    pub fn acked(
        &mut self,
        offset: RecordOffset,
        downstream: i64,
        bytes: u64,
        out: &mut Vec<Sync>,
    ) -> Result<(), AckError> {
        self.inflight.complete(offset, Some(downstream))?;
        self.acked_bytes += bytes;
        self.acked_high = self.acked_high.max(Some(offset));
        self.advance(out);
        Ok(())
    }

    /// The flow skipped the record at `offset` (refused by the target, with
    /// `on_refused = "skip"`). `was_sent` says whether it was handed to the
    /// producer; if not, it is entered into the window first so progress
    /// stays in source order. Returns how many records this unit skipped in
    /// the session.
    pub fn skipped(
        &mut self,
        offset: RecordOffset,
        bytes: u64,
        was_sent: bool,
        out: &mut Vec<Sync>,
    ) -> u64 {
        if !was_sent {
            self.inflight.sent(offset, bytes);
            self.next_expected = Some(offset.next());
        }
        // A record both sent and then refused completes once; a second
        // report for it (not expected from librdkafka) changes nothing.
        let _ = self.inflight.complete(offset, None);
        self.acked_high = self.acked_high.max(Some(offset));
        self.skipped += 1;
        self.advance(out);
        self.skipped
    }

    /// Moves the acknowledged prefix out of the window, feeding the offset
    /// sync emitter in source order.
    fn advance(&mut self, out: &mut Vec<Sync>) {
        self.completed.clear();
        self.inflight.drain_contiguous(&mut self.completed);
        for c in &self.completed {
            self.syncs.observe(c.upstream, c.downstream, out);
        }
    }

    /// The latest acknowledged record's sync, if it was not emitted yet
    /// (called on the offset-sync interval and before a release).
    pub fn flush_sync(&mut self) -> Option<Sync> {
        self.syncs.flush()
    }

    /// An offset sync for `upstream` was queued to the syncs producer.
    pub fn sync_sent(&mut self, upstream: i64) {
        debug_assert!(
            self.pending_syncs.back().is_none_or(|b| b.0 <= upstream),
            "syncs are emitted in source order"
        );
        self.pending_syncs.push_back(RecordOffset(upstream));
    }

    /// The offset sync for `upstream` is durable.
    pub fn sync_acked(&mut self, upstream: i64) {
        if let Some(i) = self.pending_syncs.iter().position(|p| p.0 == upstream) {
            self.pending_syncs.remove(i);
        }
    }

    /// Offset syncs sent and not yet durable.
    pub fn syncs_pending(&self) -> usize {
        self.pending_syncs.len()
    }

    /// The position that may be committed now: past the contiguous
    /// acknowledged prefix, stopped at the first sync not yet durable.
    /// `Ok(None)` when nothing was acknowledged in this session.
    pub fn commit_position(&self) -> Result<Option<NextOffset>, Breach> {
        let Some(acked) = self.inflight.acknowledged() else {
            return Ok(None);
        };
        let position = match self.pending_syncs.front() {
            Some(pending) => NextOffset(acked.0.min(pending.0)),
            None => acked,
        };
        if self.acked_high.is_none_or(|high| position > high.next()) {
            return Err(Breach {
                position,
                acknowledged_high: self.acked_high,
            });
        }
        Ok(Some(position))
    }

    /// What to commit: the commit position if it moved since the last
    /// commit, or in any case when `force` (the previous commit may have
    /// failed).
    pub fn to_commit(&self, force: bool) -> Result<Option<NextOffset>, Breach> {
        Ok(self
            .commit_position()?
            .filter(|p| force || self.committed != Some(*p)))
    }

    /// The commit of `position` succeeded.
    pub fn committed_at(&mut self, position: NextOffset) {
        self.committed = Some(position);
    }

    /// The last position committed in this session.
    pub fn committed(&self) -> Option<NextOffset> {
        self.committed
    }

    /// Just past the contiguous acknowledged records.
    pub fn acknowledged(&self) -> Option<NextOffset> {
        self.inflight.acknowledged()
    }

    /// The offset the next record read must have at least (the fetch
    /// position), once a record was read.
    pub fn next_expected(&self) -> Option<NextOffset> {
        self.next_expected
    }

    /// The unit's position for lag: acknowledged, else committed, else the
    /// first offset read.
    pub fn position(&self) -> Option<NextOffset> {
        self.acknowledged()
            .or(self.committed)
            .or(self.start.map(|s| NextOffset(s.0)))
    }

    /// Bytes sent and not acknowledged.
    pub fn in_flight_bytes(&self) -> u64 {
        self.inflight.bytes()
    }

    /// Records sent and not yet out of the window.
    pub fn in_flight(&self) -> usize {
        self.inflight.len()
    }

    /// True when nothing is waiting for the target.
    pub fn settled(&self) -> bool {
        self.inflight.settled()
    }

    /// Bytes the target acknowledged for this unit in this session.
    pub fn acked_bytes(&self) -> u64 {
        self.acked_bytes
    }
}

/// A limit with hysteresis: over once the value passes `max`, under again
/// only below half of it, so a value hovering at the limit does not flap
/// (each flip is a pause or resume of fetching).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Hysteresis {
    over: bool,
}

impl Hysteresis {
    /// Updates with the current value; returns true if the state flipped.
    pub fn update(&mut self, value: u64, max: u64) -> bool {
        let was = self.over;
        if value > max {
            self.over = true;
        } else if value < max / 2 {
            self.over = false;
        }
        was != self.over
    }

    pub fn is_over(self) -> bool {
        self.over
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sent(p: &mut UnitProgress, offsets: &[i64]) {
        for &o in offsets {
            assert!(p.accepts(RecordOffset(o)));
            p.sent(RecordOffset(o), 10);
        }
    }

    #[test]
    fn commits_stop_at_the_first_unacknowledged_record() {
        let mut p = UnitProgress::new(100);
        let mut out = Vec::new();
        sent(&mut p, &[10, 11, 14]);
        assert_eq!(p.commit_position(), Ok(None));
        p.acked(RecordOffset(11), 1, 10, &mut out).unwrap();
        assert_eq!(p.commit_position(), Ok(None), "10 is in flight");
        p.acked(RecordOffset(10), 0, 10, &mut out).unwrap();
        assert_eq!(out, vec![(10, 0)], "the first record is always synced");
        p.sync_sent(10);
        assert_eq!(
            p.commit_position(),
            Ok(Some(NextOffset(10))),
            "sync 10 not durable"
        );
        p.sync_acked(10);
        assert_eq!(p.commit_position(), Ok(Some(NextOffset(12))));
        assert_eq!(p.in_flight_bytes(), 10);
        assert!(!p.settled());
        p.acked(RecordOffset(14), 2, 10, &mut out).unwrap();
        assert_eq!(
            p.commit_position(),
            Ok(Some(NextOffset(15))),
            "12..14 is a gap"
        );
        assert!(p.settled());
        assert_eq!(p.acked_bytes(), 30);
    }

    #[test]
    fn commits_never_pass_a_pending_offset_sync() {
        let mut p = UnitProgress::new(2);
        let mut out = Vec::new();
        sent(&mut p, &[0, 1, 2, 3, 4]);
        for o in 0..5 {
            p.acked(RecordOffset(o), o, 1, &mut out).unwrap();
        }
        for &(up, _) in &out {
            p.sync_sent(up);
        }
        let first = out[0].0;
        assert_eq!(p.commit_position(), Ok(Some(NextOffset(first))));
        for &(up, _) in &out {
            p.sync_acked(up);
        }
        assert_eq!(p.commit_position(), Ok(Some(NextOffset(5))));
    }

    #[test]
    fn records_already_sent_are_not_accepted_again() {
        let mut p = UnitProgress::new(10);
        sent(&mut p, &[5, 6]);
        assert!(!p.accepts(RecordOffset(5)));
        assert!(!p.accepts(RecordOffset(6)));
        assert!(p.accepts(RecordOffset(7)));
        assert_eq!(
            p.position(),
            Some(NextOffset(5)),
            "lag counts from the first read"
        );
    }

    #[test]
    fn a_skipped_record_moves_progress_and_breaks_contiguity() {
        let mut p = UnitProgress::new(1000);
        let mut out = Vec::new();
        sent(&mut p, &[0]);
        p.acked(RecordOffset(0), 0, 1, &mut out).unwrap();
        assert_eq!(p.skipped(RecordOffset(1), 1, false, &mut out), 1);
        sent(&mut p, &[2]);
        p.acked(RecordOffset(2), 1, 1, &mut out).unwrap();
        // 0 -> 0 then 2 -> 1: not contiguous, so both ends are synced.
        assert_eq!(out, vec![(0, 0), (2, 1)]);
        out.iter().for_each(|&(u, _)| p.sync_sent(u));
        assert_eq!(p.commit_position(), Ok(Some(NextOffset(0))));
        out.iter().for_each(|&(u, _)| p.sync_acked(u));
        assert_eq!(p.commit_position(), Ok(Some(NextOffset(3))));
    }

    #[test]
    fn to_commit_skips_an_unchanged_position_unless_forced() {
        let mut p = UnitProgress::new(1000);
        let mut out = Vec::new();
        sent(&mut p, &[0]);
        p.acked(RecordOffset(0), 0, 1, &mut out).unwrap();
        p.sync_sent(0);
        p.sync_acked(0);
        assert_eq!(p.to_commit(false), Ok(Some(NextOffset(1))));
        p.committed_at(NextOffset(1));
        assert_eq!(p.to_commit(false), Ok(None));
        assert_eq!(p.to_commit(true), Ok(Some(NextOffset(1))));
        assert_eq!(p.committed(), Some(NextOffset(1)));
    }

    #[test]
    fn hysteresis_flips_above_max_and_back_below_half() {
        let mut h = Hysteresis::default();
        assert!(!h.update(100, 100), "at the limit is not over it");
        assert!(h.update(101, 100));
        assert!(h.is_over());
        assert!(!h.update(60, 100), "between half and max: stays over");
        assert!(!h.update(50, 100), "half is not below half");
        assert!(h.update(49, 100));
        assert!(!h.is_over());
        assert!(!h.update(99, 100), "below max: stays under");
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Send the next record, `gap` offsets after the previous one.
        Send { gap: u8 },
        /// Acknowledge the in-flight record at this index (mod the count).
        Ack(usize),
        /// Skip the in-flight record at this index (refused, on_refused = skip).
        Skip(usize),
        /// Make the pending sync at this index durable.
        SyncAck(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..3).prop_map(|gap| Op::Send { gap }),
            4 => any::<usize>().prop_map(Op::Ack),
            1 => any::<usize>().prop_map(Op::Skip),
            3 => any::<usize>().prop_map(Op::SyncAck),
        ]
    }

    proptest! {
        /// Whatever the order of acknowledgements, skips and sync
        /// acknowledgements, a commit position never passes a record that
        /// was not completed, nor a sync that is not durable. (It may step
        /// back: a discontinuity emits the sync of an earlier record, and
        /// the position waits for it; that costs a re-read, never a loss.)
        #[test]
        fn the_commit_rule_holds(ops in proptest::collection::vec(op(), 1..200), lag_max in 1u64..8) {
            let mut p = UnitProgress::new(lag_max);
            let mut next = 0i64;
            let mut open: Vec<i64> = Vec::new(); // sent, not completed
            let mut pending: Vec<i64> = Vec::new(); // syncs sent, not durable
            let mut downstream = 0i64;
            let mut out = Vec::new();
            for op in ops {
                out.clear();
                match op {
                    Op::Send { gap } => {
                        next += i64::from(gap);
                        prop_assert!(p.accepts(RecordOffset(next)));
                        p.sent(RecordOffset(next), 1);
                        open.push(next);
                        next += 1;
                    }
                    Op::Ack(i) if !open.is_empty() => {
                        let o = open.remove(i % open.len());
                        p.acked(RecordOffset(o), downstream, 1, &mut out).unwrap();
                        downstream += 1;
                    }
                    Op::Skip(i) if !open.is_empty() => {
                        let o = open.remove(i % open.len());
                        p.skipped(RecordOffset(o), 1, true, &mut out);
                    }
                    Op::SyncAck(i) if !pending.is_empty() => {
                        let u = pending.remove(i % pending.len());
                        p.sync_acked(u);
                    }
                    _ => {}
                }
                for &(up, _) in &out {
                    p.sync_sent(up);
                    pending.push(up);
                }
                let pos = p.commit_position().expect("no breach");
                if let Some(pos) = pos {
                    if let Some(&first_open) = open.iter().min() {
                        prop_assert!(pos.0 <= first_open, "{pos} passes in-flight {first_open}");
                    }
                    if let Some(&first_pending) = pending.iter().min() {
                        prop_assert!(pos.0 <= first_pending, "{pos} passes pending sync {first_pending}");
                    }
                    prop_assert!(pos.0 <= next);
                }
            }
            // Everything completed and durable: the position is just past the last record sent.
            if open.is_empty() && pending.is_empty() {
                if let Some(pos) = p.commit_position().unwrap() {
                    prop_assert_eq!(pos.0, next);
                }
            }
        }
    }
}
