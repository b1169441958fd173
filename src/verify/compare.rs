//! The comparison behind `strait verify`, pure: a source partition's
//! records (from an aligned offset up to the committed position) against
//! the remote partition's records (from the offset the source's first
//! record was written at), both as streams of content hashes, in order.
//!
//! At-least-once replication may repeat a suffix after a restart: a target
//! record equal to one already matched is *extra* (a duplicate), not a
//! mismatch. A target record that matches a source record further ahead
//! means the ones in between are *missing*. A target record with the
//! expected record's key but other content is *mismatched*. Memory is
//! bounded: `window` source records ahead and `window` matched behind.

use std::collections::{HashSet, VecDeque};

/// A record as compared: where it is, its key's hash and its content's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub offset: i64,
    pub key: u64,
    pub content: u64,
}

/// One kind of finding: how many, and the first source (missing,
/// mismatched) or target (extra) offset of it.
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
    /// Source records compared (matched, missing or mismatched).
    pub compared: u64,
    pub missing: Count,
    pub extra: Count,
    pub mismatched: Count,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.missing.n == 0 && self.mismatched.n == 0
    }
}

/// Compares as records arrive: feed the source's with [`Comparer::source`]
/// while [`Comparer::wants_source`], and the target's with
/// [`Comparer::target`]; then [`Comparer::finish`] once the source range
/// is read and the target has nothing more (or nothing more is needed).
pub struct Comparer {
    window: usize,
    pending: VecDeque<Seen>,
    recent: VecDeque<u64>,
    recent_set: HashSet<u64>,
    source_done: bool,
    report: Report,
}

impl Comparer {
    pub fn new(window: usize) -> Comparer {
        Comparer {
            window: window.max(1),
            pending: VecDeque::new(),
            recent: VecDeque::new(),
            recent_set: HashSet::new(),
            source_done: false,
            report: Report::default(),
        }
    }

    /// Whether more source records are needed before the next target one.
    pub fn wants_source(&self) -> bool {
        !self.source_done && self.pending.len() < self.window
    }

    pub fn source(&mut self, r: Seen) {
        self.pending.push_back(r);
    }

    /// The source range is read to its end.
    pub fn source_done(&mut self) {
        self.source_done = true;
    }

    /// True once every source record is accounted for: the target needs
    /// not be read further (records past the range belong to later ones).
    pub fn complete(&self) -> bool {
        self.source_done && self.pending.is_empty()
    }

    pub fn target(&mut self, t: Seen) {
        if self.complete() {
            return;
        }
        match self.pending.front() {
            Some(s) if s.content == t.content => {
                let s = self.pending.pop_front().expect("front");
                self.matched(s);
            }
            _ if self.recent_set.contains(&t.content) => {
                self.report.extra.add(t.offset, 1);
            }
            _ => {
                if let Some(at) = self.pending.iter().position(|s| s.content == t.content) {
                    let first = self.pending[0].offset;
                    self.report.missing.add(first, at as u64);
                    self.report.compared += at as u64;
                    self.pending.drain(..at);
                    let s = self.pending.pop_front().expect("found");
                    self.matched(s);
                } else if self.pending.front().is_some_and(|s| s.key == t.key) {
                    let s = self.pending.pop_front().expect("front");
                    self.report.mismatched.add(s.offset, 1);
                    self.report.compared += 1;
                } else {
                    self.report.extra.add(t.offset, 1);
                }
            }
        }
    }

    fn matched(&mut self, s: Seen) {
        self.report.compared += 1;
        self.recent.push_back(s.content);
        self.recent_set.insert(s.content);
        if self.recent.len() > self.window {
            if let Some(old) = self.recent.pop_front() {
                if !self.recent.contains(&old) {
                    self.recent_set.remove(&old);
                }
            }
        }
    }

    /// The target has no more records: every source record still pending
    /// is missing.
    pub fn target_done(&mut self) {
        if let Some(first) = self.pending.front().map(|s| s.offset) {
            let n = self.pending.len() as u64;
            self.report.missing.add(first, n);
            self.report.compared += n;
        }
        self.pending.clear();
    }

    /// A source record read after the target ran out: missing.
    pub fn unseen(&mut self, offset: i64) {
        self.report.missing.add(offset, 1);
        self.report.compared += 1;
    }

    pub fn is_source_done(&self) -> bool {
        self.source_done
    }

    /// Source records never seen on the target are missing.
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

    /// Runs the comparer the way the command does, source first as wanted.
    fn compare(source: &[Seen], target: &[Seen], window: usize) -> Report {
        let mut c = Comparer::new(window);
        let mut s = source.iter();
        for t in target {
            while c.wants_source() {
                match s.next() {
                    Some(r) => c.source(*r),
                    None => c.source_done(),
                }
            }
            c.target(*t);
        }
        while c.wants_source() {
            match s.next() {
                Some(r) => c.source(*r),
                None => c.source_done(),
            }
        }
        c.finish()
    }

    #[test]
    fn identical_streams_match() {
        let src: Vec<Seen> = (0..50).map(|i| rec(i, i as u64)).collect();
        let tgt: Vec<Seen> = (0..50).map(|i| rec(100 + i, i as u64)).collect();
        let r = compare(&src, &tgt, 8);
        assert_eq!(r.compared, 50);
        assert!(r.ok() && r.extra.n == 0, "{r:?}");
    }

    #[test]
    fn a_resent_suffix_is_extra_not_an_error() {
        let src: Vec<Seen> = (0..10).map(|i| rec(i, i as u64)).collect();
        let ids = [0, 1, 2, 3, 4, 5, 3, 4, 5, 6, 7, 8, 9];
        let tgt: Vec<Seen> = ids
            .iter()
            .enumerate()
            .map(|(o, &i)| rec(o as i64, i))
            .collect();
        let r = compare(&src, &tgt, 8);
        assert!(r.ok(), "{r:?}");
        assert_eq!(
            r.extra,
            Count {
                n: 3,
                first: Some(6)
            }
        );
    }

    #[test]
    fn records_not_on_the_target_are_missing_with_the_first_offset() {
        let src: Vec<Seen> = (0..10).map(|i| rec(i, i as u64)).collect();
        let tgt: Vec<Seen> = [0, 1, 2, 6, 7]
            .iter()
            .enumerate()
            .map(|(o, &i)| rec(o as i64, i))
            .collect();
        let r = compare(&src, &tgt, 16);
        assert_eq!(
            r.missing,
            Count {
                n: 5,
                first: Some(3)
            },
            "3..6 and 8, 9"
        );
        assert_eq!(r.compared, 10);
        assert!(!r.ok());
    }

    #[test]
    fn same_key_other_content_is_mismatched() {
        let src: Vec<Seen> = (0..5).map(|i| rec(i, i as u64)).collect();
        let mut tgt: Vec<Seen> = (0..5).map(|i| rec(i, i as u64)).collect();
        tgt[2].content = 7;
        let r = compare(&src, &tgt, 4);
        assert_eq!(
            r.mismatched,
            Count {
                n: 1,
                first: Some(2)
            }
        );
        assert_eq!((r.missing.n, r.extra.n, r.compared), (0, 0, 5));
    }

    #[test]
    fn target_records_past_the_range_are_not_read_as_extra() {
        let src: Vec<Seen> = (0..5).map(|i| rec(i, i as u64)).collect();
        let tgt: Vec<Seen> = (0..9).map(|i| rec(i, i as u64)).collect();
        let r = compare(&src, &tgt, 4);
        assert_eq!(r.extra.n, 0, "records 5..9 are beyond the committed range");
        assert!(r.ok());
    }

    proptest! {
        /// Whatever records the target lost or repeated, every source
        /// record is accounted for once, and a complete copy is never
        /// reported missing.
        #[test]
        fn every_source_record_is_accounted_for(
            n in 1usize..60,
            drop in proptest::collection::btree_set(0usize..60, 0..10),
            repeat in proptest::option::of(0usize..60),
        ) {
            let src: Vec<Seen> = (0..n).map(|i| rec(i as i64, i as u64)).collect();
            let mut ids: Vec<u64> = (0..n as u64).filter(|i| !drop.contains(&(*i as usize))).collect();
            if let Some(r) = repeat.filter(|r| *r < ids.len()) {
                let suffix: Vec<u64> = ids[r..].iter().take(3).copied().collect();
                let at = (r + suffix.len()).min(ids.len());
                ids.splice(at..at, suffix);
            }
            let tgt: Vec<Seen> = ids.iter().enumerate().map(|(o, &i)| rec(o as i64, i)).collect();
            let r = compare(&src, &tgt, 64);
            prop_assert_eq!(r.compared, n as u64);
            let dropped = drop.iter().filter(|d| **d < n).count() as u64;
            prop_assert_eq!(r.missing.n, dropped);
            prop_assert_eq!(r.mismatched.n, 0);
        }
    }
}
