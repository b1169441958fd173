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
//! Consequence (what [`SyncHistory::translate`] relies on): between two
//! consecutive syncs `(U1, D1)`, `(U2, D2)` of one session, either the
//! mapping is contiguous (`U2 - U1 == D2 - D1` and every offset in between
//! maps to `D1 + (U - U1)`), or the two are the two sides of one
//! discontinuity and adjacent records. Offsets the worker never saw (the
//! upstream gap) belong to neither side and translate by the MirrorMaker 2
//! rule.

use std::collections::BTreeMap;

use crate::model::{NextOffset, RecordOffset};

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

    /// Observes a record whose delivery completed, in source order: written
    /// at `downstream`, or skipped (`None`). Pushes the syncs to emit.
    pub fn observe(
        &mut self,
        upstream: RecordOffset,
        downstream: Option<i64>,
        out: &mut Vec<Sync>,
    ) {
        let Some(d) = downstream else {
            self.skipped = true;
            return;
        };
        let cur = (upstream.0, d);
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

/// How a position was translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Bracketed by two syncs that prove the mapping contiguous: the
    /// position of exactly the next record, nothing re-read.
    Exact,
    /// MirrorMaker 2's rule: from the newest sync `(U, D)` with `U <= G`,
    /// `D` if `G == U`, else `D + 1`. Never skips; may re-read up to
    /// `G - U - 1` records.
    MirrorMaker2,
}

/// A translated consumer position on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    pub offset: NextOffset,
    pub rule: Rule,
    /// Most records a consumer may read again: 0 for an exact translation.
    pub max_reread: i64,
}

/// The offset syncs of one source partition, as read from the offset-syncs
/// topic in the order they were written, and translation of source
/// positions through them (docs/formats.md, "Offset translation").
///
/// A sync at upstream `U` supersedes every older sync at or above `U`: they
/// describe an earlier session that was rewound (a restart or a move resumes
/// from the committed position and writes those records again). The history
/// therefore always describes one path through the target, and consecutive
/// entries either come from one session, where the emission rules above
/// make `U2 - U1 == D2 - D1` mean "contiguous", or straddle a session start,
/// where the MirrorMaker 2 rule applies unless the superseded syncs proved
/// the older session's span up to the rewind point contiguous.
///
/// The proofs assume that every sync emitted for a record below a committed
/// position was written: a crash could otherwise lose a buffered sync that
/// marked a gap while the commit got through. The worker guarantees it: it
/// commits only past records whose offset syncs were acknowledged.
#[derive(Debug, Clone)]
pub struct SyncHistory {
    syncs: BTreeMap<i64, Entry>,
    max_len: usize,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    downstream: i64,
    /// The mapping from this sync is proven linear below this upstream
    /// offset: set when a rewind superseded the sync after it, which was
    /// contiguous with it (the span up to the rewind point was written in
    /// one piece).
    linear_to: Option<i64>,
}

impl Default for SyncHistory {
    fn default() -> Self {
        SyncHistory::with_capacity(4096)
    }
}

impl SyncHistory {
    /// Keeps at most `max_len` syncs, forgetting the oldest (lowest) first:
    /// positions below the oldest kept sync no longer translate.
    pub fn with_capacity(max_len: usize) -> Self {
        SyncHistory {
            syncs: BTreeMap::new(),
            max_len: max_len.max(2),
        }
    }

    /// Adds the next sync read from the topic.
    pub fn record(&mut self, upstream: i64, downstream: i64) {
        let pred = self
            .syncs
            .range(..upstream)
            .next_back()
            .map(|(&u, e)| (u, e.downstream));
        let next = self
            .syncs
            .range(upstream..)
            .next()
            .map(|(&u, e)| (u, e.downstream));
        if let (Some((pu, pd)), Some((nu, nd))) = (pred, next) {
            if nu - pu == nd - pd {
                // Syncs are written in order through an idempotent producer:
                // that `next` was written proves nothing lies between them.
                if let Some(e) = self.syncs.get_mut(&pu) {
                    e.linear_to = Some(upstream);
                }
            }
        }
        drop(self.syncs.split_off(&upstream));
        self.syncs.insert(
            upstream,
            Entry {
                downstream,
                linear_to: None,
            },
        );
        while self.syncs.len() > self.max_len {
            self.syncs.pop_first();
        }
    }

    pub fn len(&self) -> usize {
        self.syncs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.syncs.is_empty()
    }

    /// Translates a source consumer position `group` (the next offset it
    /// will read). `None` when no sync is at or below it.
    pub fn translate(&self, group: NextOffset) -> Option<Translation> {
        let g = group.0;
        let (&u1, e1) = self.syncs.range(..=g).next_back()?;
        let d1 = e1.downstream;
        let exact = |offset| Translation {
            offset: NextOffset(offset),
            rule: Rule::Exact,
            max_reread: 0,
        };
        if u1 == g || e1.linear_to.is_some_and(|end| g < end) {
            return Some(exact(d1 + (g - u1)));
        }
        if g == u1 + 1 {
            // The group read `U` and nothing after it: it resumes right
            // after `U`'s copy.
            return Some(exact(d1 + 1));
        }
        if let Some((&u2, e2)) = self.syncs.range(g + 1..).next() {
            if u2 - u1 == e2.downstream - d1 {
                return Some(Translation {
                    offset: NextOffset(d1 + (g - u1)),
                    rule: Rule::Exact,
                    max_reread: 0,
                });
            }
        }
        Some(Translation {
            offset: NextOffset(d1 + 1),
            rule: Rule::MirrorMaker2,
            max_reread: g - u1 - 1,
        })
    }
}

impl SyncHistory {
    /// Translates a consumer position on the remote partition (the next
    /// target offset it will read) back to the source partition: where a
    /// group that consumed the remote topic resumes on the source topic
    /// (failback). `None` when no sync is at or below it.
    ///
    /// The mirror image of [`SyncHistory::translate`]: from the newest sync
    /// `(U, D)` with `D <= target`, exact (`U + (target - D)`) where `target`
    /// is `D`, or lies in a span the syncs prove contiguous; otherwise
    /// `U + 1`, which never skips (the copy at `D` was read, and every
    /// record before `U` was written below `D`) and re-reads at most the
    /// records the consumer read after `D`: `target - D - 1` (fewer where
    /// those offsets hold no source's records).
    pub fn translate_back(&self, target: NextOffset) -> Option<Translation> {
        let t = target.0;
        let (u1, e1) = self
            .syncs
            .iter()
            .rev()
            .find(|(_, e)| e.downstream <= t)
            .map(|(&u, e)| (u, *e))?;
        let d1 = e1.downstream;
        let exact = |offset| Translation {
            offset: NextOffset(offset),
            rule: Rule::Exact,
            max_reread: 0,
        };
        if t == d1 || e1.linear_to.is_some_and(|end| u1 + (t - d1) < end) {
            return Some(exact(u1 + (t - d1)));
        }
        if t == d1 + 1 {
            // The copy of `U` was the last record read.
            return Some(exact(u1 + 1));
        }
        if let Some((&u2, e2)) = self.syncs.range(u1 + 1..).next() {
            if u2 - u1 == e2.downstream - d1 && t < e2.downstream {
                return Some(exact(u1 + (t - d1)));
            }
        }
        Some(Translation {
            offset: NextOffset(u1 + 1),
            rule: Rule::MirrorMaker2,
            max_reread: t - d1 - 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lag_max: u64, records: &[(i64, Option<i64>)]) -> Vec<Sync> {
        let mut e = SyncEmitter::new(lag_max);
        let mut out = Vec::new();
        for &(u, d) in records {
            e.observe(RecordOffset(u), d, &mut out);
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
            e.observe(RecordOffset(u), Some(u), &mut out);
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

    #[test]
    fn translation_follows_mirrormaker2_outside_proven_spans() {
        let mut h = SyncHistory::default();
        assert_eq!(h.translate(NextOffset(5)), None, "no syncs");
        h.record(10, 100);
        h.record(20, 115); // a gap: not contiguous with (10, 100)
        let t = |g| h.translate(NextOffset(g));
        assert_eq!(t(9), None, "below every sync");
        assert_eq!(t(10).unwrap().offset, NextOffset(100));
        assert_eq!(t(10).unwrap().rule, Rule::Exact);
        let mid = t(15).unwrap();
        assert_eq!(
            (mid.offset, mid.rule, mid.max_reread),
            (NextOffset(101), Rule::MirrorMaker2, 4)
        );
        let past = t(25).unwrap();
        assert_eq!(
            (past.offset, past.rule, past.max_reread),
            (NextOffset(116), Rule::MirrorMaker2, 4)
        );
    }

    #[test]
    fn translation_is_exact_between_contiguous_syncs() {
        let mut h = SyncHistory::default();
        h.record(0, 50);
        h.record(100, 150);
        let t = h.translate(NextOffset(37)).unwrap();
        assert_eq!(
            (t.offset, t.rule, t.max_reread),
            (NextOffset(87), Rule::Exact, 0)
        );
    }

    #[test]
    fn a_rewound_session_supersedes_the_syncs_above_it() {
        let mut h = SyncHistory::default();
        // Session 1 wrote 0..=20 at 0..=20; session 2 resumed at 10 and
        // wrote 10..=30 again at 21..=41.
        for (u, d) in [(0, 0), (20, 20), (10, 21), (30, 41)] {
            h.record(u, d);
        }
        assert_eq!(h.len(), 3, "(20, 20) was superseded");
        let t = h.translate(NextOffset(15)).unwrap();
        assert_eq!((t.offset, t.rule), (NextOffset(26), Rule::Exact));
        // (0, 0) and the superseded (20, 20) proved 0..20 contiguous in
        // session 1, so positions below the rewind point stay exact.
        let t = h.translate(NextOffset(5)).unwrap();
        assert_eq!((t.offset, t.rule), (NextOffset(5), Rule::Exact));
        // Without that proof, the MirrorMaker 2 rule applies.
        let mut h = SyncHistory::default();
        for (u, d) in [(0, 0), (10, 21), (30, 41)] {
            h.record(u, d);
        }
        let t = h.translate(NextOffset(5)).unwrap();
        assert_eq!(
            (t.offset, t.rule, t.max_reread),
            (NextOffset(1), Rule::MirrorMaker2, 4)
        );
    }

    #[test]
    fn the_history_is_bounded() {
        let mut h = SyncHistory::with_capacity(3);
        for u in 0..10 {
            h.record(u * 10, u * 10);
        }
        assert_eq!(h.len(), 3);
        assert_eq!(h.translate(NextOffset(5)), None, "forgotten");
        assert!(h.translate(NextOffset(75)).is_some());
    }

    /// One random partition's replication history: the source offsets
    /// (with compaction gaps), every copy written (upstream, downstream),
    /// what the newest session to process each record did with it (its
    /// copy, or `None` when the flow skipped it, `on_refused = skip`), and
    /// the syncs as read back. Sessions have skipped records, downstream
    /// gaps and restarts that rewind to an earlier committed position; the
    /// syncs come from the real emitter.
    struct Case {
        source: Vec<i64>,
        written: Vec<(i64, i64)>,
        latest: BTreeMap<i64, Option<i64>>,
        history: SyncHistory,
    }

    fn random_case(rnd: &mut impl FnMut(u64) -> u64) -> Case {
        let mut source = Vec::new();
        let mut u = rnd(3) as i64;
        for _ in 0..(20 + rnd(200)) {
            source.push(u);
            u += 1 + if rnd(10) == 0 { rnd(4) as i64 } else { 0 };
        }
        let lag_max = 1 + rnd(30);
        let mut written: Vec<(i64, i64)> = Vec::new();
        let mut latest: BTreeMap<i64, Option<i64>> = BTreeMap::new();
        let mut history = SyncHistory::default();
        let mut d = rnd(5) as i64;
        let mut committed = 0usize; // index into source
        while committed < source.len() {
            // A session replicates from the committed index to a random end.
            let end = (committed + 1 + rnd(source.len() as u64) as usize).min(source.len());
            let mut e = SyncEmitter::new(lag_max);
            let mut out = Vec::new();
            for &u in &source[committed..end] {
                if rnd(50) == 0 {
                    e.observe(RecordOffset(u), None, &mut out); // skipped
                    latest.insert(u, None);
                    continue;
                }
                d += if rnd(25) == 0 { 1 + rnd(3) as i64 } else { 0 }; // downstream gap
                e.observe(RecordOffset(u), Some(d), &mut out);
                written.push((u, d));
                latest.insert(u, Some(d));
                d += 1;
            }
            out.extend(e.flush());
            for (su, sd) in out {
                history.record(su, sd);
            }
            // The session ends having committed somewhere in what it did
            // (a crash), or all of it (a clean stop).
            committed = if rnd(3) == 0 {
                end
            } else {
                committed + 1 + rnd((end - committed) as u64) as usize
            };
        }
        Case {
            source,
            written,
            latest,
            history,
        }
    }

    /// For every source position of random histories ([`random_case`]):
    /// translation never skips a record, and an exact translation re-reads
    /// none.
    #[test]
    fn translation_never_skips_and_exact_means_exact() {
        use rand::{Rng as _, SeedableRng as _};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x2545_f491_4f6c_dd1d);
        let mut rnd = move |n: u64| rng.random_range(0..n);
        let (mut exact, mut fallback) = (0u32, 0u32);
        for _case in 0..300 {
            let Case {
                source,
                latest,
                history,
                ..
            } = random_case(&mut rnd);
            let last = *source.last().unwrap();
            for g in 0..=last + 1 {
                let Some(t) = history.translate(NextOffset(g)) else {
                    continue;
                };
                match t.rule {
                    Rule::Exact => exact += 1,
                    Rule::MirrorMaker2 => fallback += 1,
                }
                // Never skip: every record at or after g that was written
                // (and not skipped by configuration since) has its newest
                // copy at or after t.
                for (&u, &copy) in latest.range(g..) {
                    if let Some(newest) = copy {
                        assert!(
                            newest >= t.offset.0,
                            "g={g}: record {u} (last copy at {newest}) skipped by {t:?}"
                        );
                    }
                }
                // Exact: nothing re-read either; every record before g has
                // its newest copy before t.
                if t.rule == Rule::Exact {
                    for (&u, &copy) in latest.range(..g) {
                        if let Some(newest) = copy {
                            assert!(
                                newest < t.offset.0,
                                "g={g}: exact {t:?} re-reads record {u} at {newest}"
                            );
                        }
                    }
                }
            }
        }
        // Both rules were exercised. On this workload (10% compaction gaps,
        // 2% skips, 4% downstream gaps, frequent rewinds) 38,425 positions
        // translate exactly and 2,881 by the fallback: a regression guard.
        assert!(
            fallback > 0 && exact > 5 * fallback,
            "exact {exact}, fallback {fallback}"
        );
    }

    /// The inverse, for every target position of the same random histories:
    /// a group that read the remote partition up to `t` and resumes on the
    /// source at `translate_back(t)` skips no record it had not read (every
    /// record before it has a copy before `t`), re-reads at most
    /// `max_reread` records, and an exact translation re-reads only what the
    /// consumer would read again on the target anyway (a copy at or after
    /// `t`: a duplicate an earlier, rewound session left there).
    #[test]
    fn translation_back_never_skips_and_exact_means_exact() {
        use rand::{Rng as _, SeedableRng as _};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x9e37_79b9_7f4a_7c15);
        let mut rnd = move |n: u64| rng.random_range(0..n);
        let (mut exact, mut fallback) = (0u32, 0u32);
        for _case in 0..300 {
            let Case {
                written,
                latest,
                history,
                ..
            } = random_case(&mut rnd);
            // Each source record's lowest and highest copy.
            let mut copies: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
            for &(u, d) in &written {
                let e = copies.entry(u).or_insert((d, d));
                *e = (e.0.min(d), e.1.max(d));
            }
            let top = written.iter().map(|w| w.1).max().unwrap_or(0);
            for t in 0..=top + 1 {
                let Some(back) = history.translate_back(NextOffset(t)) else {
                    continue;
                };
                let at = back.offset.0;
                match back.rule {
                    Rule::Exact => exact += 1,
                    Rule::MirrorMaker2 => fallback += 1,
                }
                for (&u, &(low, _)) in copies.range(..at) {
                    assert!(
                        low < t,
                        "t={t}: record {u} (first copy at {low}, not read) skipped by {back:?}"
                    );
                }
                // Records read on the target and never to be read there
                // again, that the source would give the group once more
                // (but for records the newest session skipped by
                // configuration: their old copies stay where they are).
                let reread: Vec<i64> = copies
                    .range(at..)
                    .filter(|(u, &(low, high))| low < t && high < t && latest[u].is_some())
                    .map(|(&u, _)| u)
                    .collect();
                assert!(
                    reread.len() as i64 <= back.max_reread,
                    "t={t}: {back:?} re-reads {reread:?}"
                );
            }
        }
        // Both rules were exercised: 36,094 target positions translate
        // back exactly and 20,870 by the fallback (most of those lie in
        // stretches a rewound session left behind): a regression guard.
        assert!(
            fallback > 0 && exact > fallback,
            "exact {exact}, fallback {fallback}"
        );
    }

    #[test]
    fn translation_back_is_the_inverse_between_contiguous_syncs() {
        let mut h = SyncHistory::default();
        h.record(0, 50);
        h.record(100, 150);
        let t = |d| h.translate_back(NextOffset(d)).unwrap();
        assert_eq!(h.translate_back(NextOffset(49)), None, "below every sync");
        assert_eq!((t(50).offset, t(50).rule), (NextOffset(0), Rule::Exact));
        assert_eq!((t(87).offset, t(87).rule), (NextOffset(37), Rule::Exact));
        assert_eq!((t(150).offset, t(150).rule), (NextOffset(100), Rule::Exact));
        // Past the last sync: the record at 150 was read, how many after it
        // is unproven.
        let past = t(155);
        assert_eq!(
            (past.offset, past.rule, past.max_reread),
            (NextOffset(101), Rule::MirrorMaker2, 4)
        );
        // Right after the last sync: nothing re-read.
        assert_eq!((t(151).offset, t(151).rule), (NextOffset(101), Rule::Exact));
        // A gap upstream (compaction): the sync after it is exact.
        let mut h = SyncHistory::default();
        h.record(10, 100);
        h.record(13, 101);
        let g = h.translate_back(NextOffset(101)).unwrap();
        assert_eq!((g.offset, g.rule), (NextOffset(13), Rule::Exact));
        // A gap downstream (records no source wrote): never past the
        // record after the sync below.
        let mut h = SyncHistory::default();
        h.record(0, 0);
        h.record(1, 11);
        let g = h.translate_back(NextOffset(5)).unwrap();
        assert_eq!(
            (g.offset, g.rule, g.max_reread),
            (NextOffset(1), Rule::MirrorMaker2, 4)
        );
    }
}
