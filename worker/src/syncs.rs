//! When to emit offset syncs, so that translation can be exact.
//!
//! A sync `(U, D)` says: source record `U` was written at target offset `D`.
//! A worker knows this for every record, but writes only some of them:
//!
//! * the first record of a session (a start, a restart, a move),
//! * at every discontinuity, where the record is not `(prev.U + 1, prev.D + 1)`
//!   (a gap upstream from compaction or transaction markers, a gap downstream,
//!   a skipped record): *both* the record before the discontinuity and the
//!   record after it,
//! * at least every `offset_lag_max` records,
//! * and the latest record on an interval ([`SyncEmitter::flush`]).
//!
//! Consequence (what the checkpoint service relies on): between two
//! consecutive syncs `(U1, D1)`, `(U2, D2)` of one session, either the
//! mapping is contiguous (`U2 - U1 == D2 - D1` and every offset in between
//! maps to `D1 + (U - U1)`), or the two are the two sides of one
//! discontinuity and adjacent records. Offsets the worker never saw (the
//! upstream gap) belong to neither side and translate by the MirrorMaker 2
//! rule.

use crate::inflight::Completed;

/// A sync to emit: `(upstream offset, downstream offset)`.
pub type Sync = (i64, i64);

#[derive(Debug)]
pub struct SyncEmitter {
    lag_max: u64,
    prev: Option<Sync>,
    last_emitted: Option<Sync>,
    /// A record was skipped since `prev`: the next one is a discontinuity.
    skipped: bool,
}

impl SyncEmitter {
    /// A new session's emitter: its first record is always emitted.
    pub fn new(lag_max: u64) -> Self {
        SyncEmitter {
            lag_max: lag_max.max(1),
            prev: None,
            last_emitted: None,
            skipped: false,
        }
    }

    /// Observes a record leaving the in-flight window (in source order) and
    /// pushes the syncs to emit.
    pub fn observe(&mut self, c: Completed, out: &mut Vec<Sync>) {
        let Some(d) = c.downstream else {
            self.skipped = true;
            return;
        };
        let cur = (c.upstream.0, d);
        match self.prev {
            None => self.emit(cur, out),
            Some(prev) => {
                let contiguous = !self.skipped && cur == (prev.0 + 1, prev.1 + 1);
                if !contiguous {
                    if self.last_emitted != Some(prev) {
                        self.emit(prev, out);
                    }
                    self.emit(cur, out);
                } else if let Some(last) = self.last_emitted {
                    if (cur.0 - last.0) as u64 >= self.lag_max {
                        self.emit(cur, out);
                    }
                }
            }
        }
        self.prev = Some(cur);
        self.skipped = false;
    }

    /// The latest record, if it was not emitted yet (called on an interval).
    pub fn flush(&mut self) -> Option<Sync> {
        let prev = self.prev?;
        if self.last_emitted == Some(prev) {
            return None;
        }
        self.last_emitted = Some(prev);
        Some(prev)
    }

    fn emit(&mut self, s: Sync, out: &mut Vec<Sync>) {
        self.last_emitted = Some(s);
        out.push(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strait_common::model::RecordOffset;

    fn run(lag_max: u64, records: &[(i64, Option<i64>)]) -> Vec<Sync> {
        let mut e = SyncEmitter::new(lag_max);
        let mut out = Vec::new();
        for &(u, d) in records {
            e.observe(
                Completed {
                    upstream: RecordOffset(u),
                    downstream: d,
                },
                &mut out,
            );
        }
        out
    }

    /// Translation between syncs as the module docs promise it, checked
    /// against the full record map.
    fn assert_exact_between_syncs(records: &[(i64, Option<i64>)], syncs: &[Sync]) {
        let written: Vec<(i64, i64)> = records
            .iter()
            .filter_map(|&(u, d)| d.map(|d| (u, d)))
            .collect();
        for pair in syncs.windows(2) {
            let ((u1, d1), (u2, d2)) = (pair[0], pair[1]);
            assert!(u2 > u1, "syncs go forward: {pair:?}");
            if u2 - u1 == d2 - d1 {
                for &(u, d) in written.iter().filter(|(u, _)| *u >= u1 && *u < u2) {
                    assert_eq!(d, d1 + (u - u1), "record {u} between {pair:?}");
                }
            } else {
                let inside = written.iter().filter(|(u, _)| *u > u1 && *u < u2).count();
                assert_eq!(inside, 0, "a discontinuity's syncs are adjacent: {pair:?}");
            }
        }
    }

    #[test]
    fn first_record_of_a_session_is_emitted() {
        assert_eq!(run(100, &[(7, Some(3))]), vec![(7, 3)]);
    }

    #[test]
    fn contiguous_records_emit_every_offset_lag_max() {
        let recs: Vec<_> = (0..25).map(|i| (i, Some(i + 100))).collect();
        let syncs = run(10, &recs);
        assert_eq!(syncs, vec![(0, 100), (10, 110), (20, 120)]);
        assert_exact_between_syncs(&recs, &syncs);
    }

    #[test]
    fn an_upstream_gap_emits_both_sides() {
        // Offsets 3..6 were compacted away on the source.
        let recs = [
            (0, Some(0)),
            (1, Some(1)),
            (2, Some(2)),
            (6, Some(3)),
            (7, Some(4)),
        ];
        let syncs = run(100, &recs);
        assert_eq!(syncs, vec![(0, 0), (2, 2), (6, 3)]);
        assert_exact_between_syncs(&recs, &syncs);
    }

    #[test]
    fn a_downstream_gap_emits_both_sides() {
        let recs = [(0, Some(10)), (1, Some(11)), (2, Some(15)), (3, Some(16))];
        let syncs = run(100, &recs);
        assert_eq!(syncs, vec![(0, 10), (1, 11), (2, 15)]);
        assert_exact_between_syncs(&recs, &syncs);
    }

    #[test]
    fn a_skipped_record_is_a_discontinuity() {
        let recs = [(0, Some(0)), (1, None), (2, Some(1)), (3, Some(2))];
        let syncs = run(100, &recs);
        assert_eq!(syncs, vec![(0, 0), (2, 1)]);
        assert_exact_between_syncs(&recs, &syncs);
    }

    #[test]
    fn flush_emits_the_latest_once() {
        let mut e = SyncEmitter::new(100);
        let mut out = Vec::new();
        assert_eq!(e.flush(), None, "nothing seen yet");
        for u in 0..5 {
            e.observe(
                Completed {
                    upstream: RecordOffset(u),
                    downstream: Some(u),
                },
                &mut out,
            );
        }
        assert_eq!(out, vec![(0, 0)]);
        assert_eq!(e.flush(), Some((4, 4)));
        assert_eq!(e.flush(), None, "already emitted");
    }

    #[test]
    fn mixed_gaps_keep_translation_exact() {
        // A deterministic walk with random gaps on both sides.
        let mut x: u64 = 12345;
        let (mut u, mut d) = (0i64, 0i64);
        let mut recs = Vec::new();
        for _ in 0..2000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = x >> 33;
            u += 1 + if r.is_multiple_of(17) {
                (r % 5) as i64
            } else {
                0
            };
            if r.is_multiple_of(101) {
                recs.push((u, None));
                continue;
            }
            d += 1 + if r.is_multiple_of(23) { 2 } else { 0 };
            recs.push((u, Some(d)));
        }
        let syncs = run(50, &recs);
        assert_exact_between_syncs(&recs, &syncs);
    }
}
