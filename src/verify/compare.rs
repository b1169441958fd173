//! The comparison behind `strait verify`, pure: a source partition's
//! records against the remote partition's records (from the offset the
//! source's first record was written at), both as streams of content
//! hashes, in order.
//!
//! The source is read from an aligned offset to its end; the committed
//! position splits it. Below it is the range strait vouches for: a record
//! there that is not on the target is *missing*. At or past it are records
//! replicated or not yet: one not on the target is *unreplicated*, not an
//! error. Every target record is classified, however far past the range:
//!
//! * a copy of the next source record: matched;
//! * equal to one already matched (or read before the range, see
//!   [`Comparer::before`]): *extra*, a repeat: at-least-once replication
//!   re-sends a suffix after a restart, not an error;
//! * equal to a source record further ahead: matched, and the ones in
//!   between are missing (or unreplicated);
//! * the expected record's key with other content: *mismatched*;
//! * anything else came from somewhere other than the source: *foreign*
//!   (a record produced straight into the remote topic).
//!
//! Memory is bounded: `window` source records ahead and `window` matched
//! behind.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

/// A record as compared: where it is, its key's hash and its content's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub offset: i64,
    pub key: u64,
    pub content: u64,
}

/// One kind of finding: how many, and the first source (missing,
/// mismatched) or target (extra, foreign) offset of it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    pub n: u64,
    pub first: Option<i64>,
}

impl Count {
    fn add(&mut self, offset: i64, n: u64) {
        self.n += n;
        self.first.get_or_insert(offset);
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Source records below the committed position accounted for
    /// (matched, missing or mismatched).
    pub compared: u64,
    /// Source records below the committed position not on the target.
    pub missing: Count,
    /// Target records repeating one already matched (duplicates).
    pub extra: Count,
    /// Source records whose slot on the target holds their key with other
    /// content.
    pub mismatched: Count,
    /// Target records that match no source record: not from the source.
    pub foreign: Count,
    /// Source records at or past the committed position not on the target
    /// (not replicated yet).
    pub unreplicated: u64,
    /// The source offset of the last source record found on the target.
    pub last_matched: Option<i64>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.missing.n == 0 && self.mismatched.n == 0 && self.foreign.n == 0
    }
}

/// Contents held, with how many times each: membership in O(1).
#[derive(Default)]
struct Bag(HashMap<u64, u32>);

impl Bag {
    fn insert(&mut self, content: u64) {
        *self.0.entry(content).or_default() += 1;
    }

    fn remove(&mut self, content: u64) {
        if let Entry::Occupied(mut e) = self.0.entry(content) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }

    fn contains(&self, content: u64) -> bool {
        self.0.contains_key(&content)
    }
}

/// Compares as records arrive: feed the source's with [`Comparer::source`]
/// while [`Comparer::wants_source`], and the target's with
/// [`Comparer::target`]; then [`Comparer::finish`] once the target has
/// nothing more (source records read after that go to
/// [`Comparer::unseen`]).
pub struct Comparer {
    window: usize,
    committed: i64,
    pending: VecDeque<Seen>,
    pending_bag: Bag,
    recent: VecDeque<u64>,
    recent_bag: Bag,
    source_done: bool,
    /// A source record at or past the committed position was read.
    past_committed: bool,
    report: Report,
}

impl Comparer {
    /// `committed`: the source's committed position, where the range
    /// strait vouches for ends.
    pub fn new(window: usize, committed: i64) -> Comparer {
        Comparer {
            window: window.max(1),
            committed,
            pending: VecDeque::new(),
            pending_bag: Bag::default(),
            recent: VecDeque::new(),
            recent_bag: Bag::default(),
            source_done: false,
            past_committed: false,
            report: Report::default(),
        }
    }

    /// A source record before the range: its copies on the target are
    /// repeats (a session that started below the range re-sent it after
    /// the range's first record was written), not foreign.
    pub fn before(&mut self, r: Seen) {
        self.remember(r.content);
    }

    /// Whether more source records are needed before the next target one.
    pub fn wants_source(&self) -> bool {
        !self.source_done && self.pending.len() < self.window
    }

    pub fn source(&mut self, r: Seen) {
        self.past_committed |= r.offset >= self.committed;
        self.pending_bag.insert(r.content);
        self.pending.push_back(r);
    }

    /// The source is read to its end.
    pub fn source_done(&mut self) {
        self.source_done = true;
    }

    pub fn is_source_done(&self) -> bool {
        self.source_done
    }

    /// True once every source record below the committed position is
    /// accounted for.
    pub fn range_done(&self) -> bool {
        match self.pending.front() {
            Some(s) => s.offset >= self.committed,
            None => self.source_done || self.past_committed,
        }
    }

    /// Whether `t` is a copy of a source record not matched yet.
    pub fn expects(&self, t: &Seen) -> bool {
        self.pending_bag.contains(t.content)
    }

    pub fn target(&mut self, t: Seen) {
        match self.pending.front().copied() {
            Some(s) if s.content == t.content => {
                self.pop_front();
                self.matched(s);
            }
            _ if self.recent_bag.contains(t.content) => {
                self.report.extra.add(t.offset, 1);
            }
            _ if self.pending_bag.contains(t.content) => {
                while let Some(s) = self.pop_front() {
                    if s.content == t.content {
                        self.matched(s);
                        break;
                    }
                    self.not_on_target(s.offset);
                }
            }
            Some(s) if s.key == t.key => {
                self.pop_front();
                self.report.mismatched.add(s.offset, 1);
                if s.offset < self.committed {
                    self.report.compared += 1;
                }
            }
            _ => self.report.foreign.add(t.offset, 1),
        }
    }

    fn pop_front(&mut self) -> Option<Seen> {
        let s = self.pending.pop_front()?;
        self.pending_bag.remove(s.content);
        Some(s)
    }

    fn matched(&mut self, s: Seen) {
        if s.offset < self.committed {
            self.report.compared += 1;
        }
        self.report.last_matched = Some(s.offset);
        self.remember(s.content);
    }

    fn remember(&mut self, content: u64) {
        self.recent.push_back(content);
        self.recent_bag.insert(content);
        if self.recent.len() > self.window {
            if let Some(old) = self.recent.pop_front() {
                self.recent_bag.remove(old);
            }
        }
    }

    /// The source record at `offset` is not on the target: missing below
    /// the committed position, not replicated yet at or past it.
    fn not_on_target(&mut self, offset: i64) {
        if offset < self.committed {
            self.report.missing.add(offset, 1);
            self.report.compared += 1;
        } else {
            self.report.unreplicated += 1;
        }
    }

    /// The target has no more records: every source record still pending
    /// is not on it.
    pub fn target_done(&mut self) {
        while let Some(s) = self.pop_front() {
            self.not_on_target(s.offset);
        }
    }

    /// A source record read after the target ran out: not on the target.
    pub fn unseen(&mut self, offset: i64) {
        self.not_on_target(offset);
    }

    /// Source records never seen on the target are missing (or
    /// unreplicated).
    pub fn finish(mut self) -> Report {
        self.target_done();
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(offset: i64, id: u64) -> Seen {
        Seen {
            offset,
            key: id,
            content: id * 1000,
        }
    }

    /// Target records with these ids, at offsets from 0.
    fn at(ids: &[u64]) -> Vec<Seen> {
        ids.iter()
            .enumerate()
            .map(|(o, &i)| rec(o as i64, i))
            .collect()
    }

    /// Runs the comparer the way the command does, source first as wanted.
    fn compare(source: &[Seen], target: &[Seen], window: usize, committed: i64) -> Report {
        let mut c = Comparer::new(window, committed);
        let mut s = source.iter();
        let mut feed = |c: &mut Comparer| {
            while c.wants_source() {
                match s.next() {
                    Some(r) => c.source(*r),
                    None => c.source_done(),
                }
            }
        };
        for t in target {
            feed(&mut c);
            c.target(*t);
        }
        c.target_done();
        for r in s {
            c.unseen(r.offset);
        }
        c.finish()
    }

    fn source(n: u64) -> Vec<Seen> {
        (0..n).map(|i| rec(i as i64, i)).collect()
    }

    #[test]
    fn identical_streams_match() {
        let src = source(50);
        let tgt: Vec<Seen> = (0..50).map(|i| rec(100 + i, i as u64)).collect();
        let r = compare(&src, &tgt, 8, 50);
        assert_eq!(r.compared, 50);
        assert!(r.ok() && r.extra.n == 0 && r.unreplicated == 0, "{r:?}");
        assert_eq!(r.last_matched, Some(49));
    }

    #[test]
    fn a_resent_suffix_is_extra_not_an_error() {
        let r = compare(
            &source(10),
            &at(&[0, 1, 2, 3, 4, 5, 3, 4, 5, 6, 7, 8, 9]),
            8,
            10,
        );
        assert!(r.ok(), "{r:?}");
        assert_eq!(
            r.extra,
            Count {
                n: 3,
                first: Some(6)
            }
        );
        assert_eq!(r.foreign.n, 0);
    }

    #[test]
    fn records_not_on_the_target_are_missing_with_the_first_offset() {
        let r = compare(&source(10), &at(&[0, 1, 2, 6, 7]), 16, 10);
        assert_eq!(
            r.missing,
            Count {
                n: 5,
                first: Some(3)
            },
            "3..6 and 8, 9"
        );
        assert_eq!(r.compared, 10);
        assert_eq!(r.last_matched, Some(7));
        assert!(!r.ok());
    }

    #[test]
    fn same_key_other_content_is_mismatched() {
        let src = source(5);
        let mut tgt = at(&[0, 1, 2, 3, 4]);
        tgt[2].content = 7;
        let r = compare(&src, &tgt, 4, 5);
        assert_eq!(
            r.mismatched,
            Count {
                n: 1,
                first: Some(2)
            }
        );
        assert_eq!(
            (r.missing.n, r.extra.n, r.foreign.n, r.compared),
            (0, 0, 0, 5)
        );
    }

    #[test]
    fn a_record_written_into_the_range_is_foreign() {
        // Source ids are 0..10; 500 was produced straight into the target.
        let r = compare(
            &source(10),
            &at(&[0, 1, 2, 3, 500, 4, 5, 6, 7, 8, 9]),
            4,
            10,
        );
        assert_eq!(
            r.foreign,
            Count {
                n: 1,
                first: Some(4)
            },
            "at its target offset"
        );
        assert_eq!((r.missing.n, r.extra.n, r.mismatched.n), (0, 0, 0));
        assert_eq!(r.compared, 10);
        assert!(!r.ok(), "foreign records fail verify");
    }

    #[test]
    fn records_written_after_the_range_are_foreign() {
        // All 5 source records are committed and replicated; two more
        // records follow them on the target.
        let r = compare(&source(5), &at(&[0, 1, 2, 3, 4, 500, 501]), 4, 5);
        assert_eq!(
            r.foreign,
            Count {
                n: 2,
                first: Some(5)
            }
        );
        assert_eq!(r.compared, 5);
        assert_eq!(r.last_matched, Some(4));
        assert!(!r.ok());
    }

    #[test]
    fn source_records_past_the_committed_position_are_not_foreign() {
        // Committed at 5; 5..7 replicated, not committed yet; 7, 8 not
        // replicated yet: neither foreign nor missing.
        let r = compare(&source(9), &at(&[0, 1, 2, 3, 4, 5, 6]), 4, 5);
        assert!(r.ok(), "{r:?}");
        assert_eq!((r.foreign.n, r.missing.n, r.extra.n), (0, 0, 0));
        assert_eq!(r.compared, 5, "the range only");
        assert_eq!(r.unreplicated, 2);
        assert_eq!(r.last_matched, Some(6));
    }

    #[test]
    fn a_gap_past_the_committed_position_is_unreplicated_not_missing() {
        let r = compare(&source(10), &at(&[0, 1, 2, 3, 4, 7, 8, 8]), 16, 5);
        assert!(r.ok(), "{r:?}");
        assert_eq!(r.unreplicated, 3, "5, 6 and 9");
        assert_eq!(r.missing.n, 0);
        assert_eq!(
            r.extra,
            Count {
                n: 1,
                first: Some(7)
            }
        );
        assert_eq!(r.last_matched, Some(8));
    }

    #[test]
    fn a_foreign_record_after_unreplicated_ones_is_still_foreign() {
        let r = compare(&source(8), &at(&[0, 1, 2, 3, 4, 5, 500]), 16, 5);
        assert_eq!(
            r.foreign,
            Count {
                n: 1,
                first: Some(6)
            }
        );
        assert_eq!((r.unreplicated, r.missing.n), (2, 0));
        assert_eq!(r.last_matched, Some(5));
    }

    #[test]
    fn last_matched_is_the_last_source_record_found_on_the_target() {
        assert_eq!(compare(&source(5), &[], 4, 5).last_matched, None);
        let r = compare(&source(5), &at(&[500, 501]), 4, 5);
        assert_eq!((r.last_matched, r.foreign.n, r.missing.n), (None, 2, 5));
        // Repeats and foreign records after it do not move it.
        let r = compare(&source(6), &at(&[0, 1, 2, 3, 1, 2, 500]), 4, 6);
        assert_eq!(r.last_matched, Some(3));
        assert_eq!((r.extra.n, r.foreign.n, r.missing.n), (2, 1, 2));
    }

    #[test]
    fn repeats_of_records_before_the_range_are_extra() {
        // A session that started at 2 re-sent 2..5 after 5..8 were
        // written; the range starts at 5.
        let mut c = Comparer::new(16, 8);
        for i in 2..5 {
            c.before(rec(i, i as u64));
        }
        for i in 5..8 {
            c.source(rec(i, i as u64));
        }
        c.source_done();
        for t in at(&[5, 6, 7, 2, 3, 4, 5, 6, 7]) {
            c.target(t);
        }
        let r = c.finish();
        assert!(r.ok(), "{r:?}");
        assert_eq!(
            r.extra,
            Count {
                n: 6,
                first: Some(3)
            }
        );
        assert_eq!(r.compared, 3);
    }

    #[test]
    fn range_done_once_every_record_below_the_committed_position_is_accounted_for() {
        let mut c = Comparer::new(16, 3);
        assert!(!c.range_done());
        for i in 0..5 {
            c.source(rec(i, i as u64));
        }
        c.target(rec(0, 0));
        c.target(rec(1, 1));
        assert!(!c.range_done());
        assert!(c.expects(&rec(9, 4)) && !c.expects(&rec(9, 1)));
        c.target(rec(2, 2));
        assert!(c.range_done());
        let mut empty = Comparer::new(16, 3);
        empty.source_done();
        assert!(empty.range_done());
    }

    proptest! {
        /// Whatever records the target lost, repeated or was given from
        /// elsewhere, and however far replication got past the committed
        /// position, every source record is accounted for once, every
        /// foreign record is found, and nothing else is.
        #[test]
        fn every_record_is_accounted_for(
            n in 1usize..60,
            committed in 0usize..60,
            replicated in 0usize..60,
            drop in proptest::collection::btree_set(0usize..60, 0..10),
            repeat in proptest::option::of(0usize..60),
            foreign in proptest::collection::btree_set(0usize..80, 0..5),
        ) {
            let committed = committed.min(n);
            let replicated = replicated.clamp(committed, n);
            let src: Vec<Seen> = (0..n).map(|i| rec(i as i64, i as u64)).collect();
            let mut ids: Vec<u64> = (0..replicated as u64)
                .filter(|i| !drop.contains(&(*i as usize)))
                .collect();
            let kept = ids.clone();
            let mut repeated = 0;
            if let Some(r) = repeat.filter(|r| *r < ids.len()) {
                let suffix: Vec<u64> = ids[r..].iter().take(3).copied().collect();
                let at = (r + suffix.len()).min(ids.len());
                repeated = suffix.len() as u64;
                ids.splice(at..at, suffix);
            }
            // Foreign records (ids from 1000, no source key) anywhere.
            for (k, f) in foreign.iter().enumerate() {
                let at = (*f).min(ids.len());
                ids.insert(at, 1000 + k as u64);
            }
            let tgt = at(&ids);
            let r = compare(&src, &tgt, 64, committed as i64);
            prop_assert_eq!(r.compared, committed as u64);
            let below = |limit: usize| drop.iter().filter(|d| **d < limit).count() as u64;
            prop_assert_eq!(r.missing.n, below(committed));
            prop_assert_eq!(
                r.unreplicated,
                below(replicated) - below(committed) + (n - replicated) as u64
            );
            prop_assert_eq!(r.foreign.n, foreign.len() as u64);
            prop_assert_eq!(r.extra.n, repeated);
            prop_assert_eq!(r.mismatched.n, 0);
            prop_assert_eq!(r.last_matched, kept.last().map(|i| *i as i64));
            prop_assert_eq!(r.ok(), r.missing.n == 0 && foreign.is_empty());
        }
    }
}
