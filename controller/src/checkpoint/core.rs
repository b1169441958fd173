//! The pure core of the checkpoint service: the offset-sync histories of a
//! flow's partitions, translation through them, "never backwards", and
//! which groups' positions are how fresh. No I/O.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use strait_common::config::Flow;
use strait_common::formats::{Checkpoint, OffsetSync};
use strait_common::model::{NextOffset, TopicPartition};
use strait_common::syncs::{SyncHistory, Translation};

/// Sync histories of one flow's partitions and the checkpoints emitted so far.
#[derive(Debug, Default)]
pub struct Checkpoints {
    histories: HashMap<TopicPartition, Partition>,
    /// Per group: the highest downstream offset emitted per (remote topic,
    /// partition), and the source position each partition was last
    /// translated at.
    groups: HashMap<String, GroupMarks>,
}

#[derive(Debug, Default)]
struct Partition {
    history: SyncHistory,
    /// Bumped by every sync: a translation made before it may be stale.
    version: u64,
}

#[derive(Debug, Default, Clone)]
struct GroupMarks {
    emitted: HashMap<TopicPartition, NextOffset>,
    /// (committed, history version) a source partition was translated at:
    /// the same pair again translates to the same checkpoint.
    seen: HashMap<TopicPartition, (i64, u64)>,
}

/// What `Checkpoints` emitted, to roll a failed round back with
/// [`Checkpoints::roll_back`].
#[derive(Debug, Clone)]
pub struct Marks(HashMap<String, GroupMarks>);

impl Checkpoints {
    /// Takes the next offset sync read from the offset-syncs topic.
    pub fn observe_sync(&mut self, sync: &OffsetSync) {
        let p = self
            .histories
            .entry(TopicPartition {
                topic: sync.topic.clone(),
                partition: sync.partition,
            })
            .or_default();
        p.history
            .record(sync.upstream_offset, sync.downstream_offset);
        p.version += 1;
    }

    /// Takes a checkpoint read back from the checkpoints topic (after a
    /// restart), in topic order: later checkpoints never go below it.
    /// Returns false if it is below one read before it for the same group
    /// and partition: someone wrote a checkpoint backwards.
    pub fn restore(&mut self, cp: &Checkpoint) -> bool {
        let marks = self.groups.entry(cp.group.clone()).or_default();
        let at = NextOffset(cp.downstream_offset);
        let last = marks
            .emitted
            .entry(TopicPartition::new(cp.topic.clone(), cp.partition))
            .or_insert(at);
        let forward = at >= *last;
        *last = (*last).max(at);
        forward
    }

    /// Translates `committed` on `tp` without emitting anything.
    pub fn translate(&self, tp: &TopicPartition, committed: i64) -> Option<Translation> {
        self.histories
            .get(tp)?
            .history
            .translate(NextOffset(committed))
    }

    /// Translates a position on `tp`'s remote partition back to `tp`.
    pub fn translate_back(&self, tp: &TopicPartition, target: i64) -> Option<Translation> {
        self.histories
            .get(tp)?
            .history
            .translate_back(NextOffset(target))
    }

    /// Whether `tp` has offset syncs (this flow replicated it).
    pub fn replicated(&self, tp: &TopicPartition) -> bool {
        self.histories.contains_key(tp)
    }

    /// The highest position emitted for `group`, per remote partition,
    /// sorted.
    pub fn emitted(&self, group: &str) -> Vec<(TopicPartition, NextOffset)> {
        let mut out: Vec<_> = self
            .groups
            .get(group)
            .map(|m| m.emitted.iter().map(|(tp, d)| (tp.clone(), *d)).collect())
            .unwrap_or_default();
        out.sort();
        out
    }

    /// Source partitions with offset syncs: the ones this flow replicated.
    pub fn partitions(&self) -> impl Iterator<Item = &TopicPartition> {
        self.histories.keys()
    }

    /// A copy of what was emitted, taken before a round.
    pub fn marks(&self) -> Marks {
        Marks(self.groups.clone())
    }

    /// Forgets what a failed round emitted (its transaction was aborted).
    pub fn roll_back(&mut self, marks: Marks) {
        self.groups = marks.0;
    }

    /// Forgets the translation cache of groups not in `live` (deleted on
    /// the source). What they emitted stays: a group re-created under the
    /// same name still never moves backwards on the target.
    pub fn retain_groups(&mut self, live: &std::collections::HashSet<&str>) {
        for (g, m) in self.groups.iter_mut() {
            if !live.contains(g.as_str()) {
                m.seen.clear();
            }
        }
    }

    /// The checkpoint for `group` at `committed` on `tp` (committed with
    /// `metadata`, which the checkpoint carries as MirrorMaker 2's does),
    /// if it translates and moves the group's target position forward. Never backwards: a
    /// lower translation (e.g. the group was reset on the source) is not
    /// emitted. A position already translated against the same syncs is
    /// not translated again (rounds cost what changed, not what exists).
    pub fn checkpoint(
        &mut self,
        flow: &Flow,
        group: &str,
        tp: &TopicPartition,
        committed: i64,
        metadata: &str,
    ) -> Option<Checkpoint> {
        let p = self.histories.get(tp)?;
        let marks = match self.groups.get_mut(group) {
            Some(m) => m,
            None => self.groups.entry(group.to_owned()).or_default(),
        };
        let stamp = (committed, p.version);
        if marks.seen.get(tp) == Some(&stamp) {
            return None;
        }
        marks.seen.insert(tp.clone(), stamp);
        let t = p.history.translate(NextOffset(committed))?;
        let remote = flow.remote_topic(&tp.topic);
        let key = TopicPartition::new(remote, tp.partition);
        if marks
            .emitted
            .get(&key)
            .is_some_and(|&last| last >= t.offset)
        {
            return None;
        }
        marks.emitted.insert(key.clone(), t.offset);
        Some(Checkpoint {
            group: group.to_owned(),
            topic: key.topic,
            partition: tp.partition,
            upstream_offset: committed,
            downstream_offset: t.offset.0,
            // The format's strings hold at most 32767 bytes; brokers keep
            // 4096 by default (offset.metadata.max.bytes). A longer note is
            // left out rather than failing the round.
            metadata: if metadata.len() <= i16::MAX as usize {
                metadata.to_owned()
            } else {
                String::new()
            },
        })
    }
}

/// How fresh each group's checkpoints (or synced target offsets) are: the
/// time its source positions were read in the newest round whose output
/// landed. Every commit a group made before that time is on the target, so
/// `now - read` bounds how far the target trails the group (its RPO).
#[derive(Debug, Default)]
pub struct Freshness {
    read: HashMap<String, Instant>,
}

impl Freshness {
    /// `group`'s positions read at `at` have landed.
    pub fn landed(&mut self, group: &str, at: Instant) {
        match self.read.get_mut(group) {
            Some(t) => *t = (*t).max(at),
            None => {
                self.read.insert(group.to_owned(), at);
            }
        }
    }

    /// A group that was never landed starts counting from `at` (when it was
    /// first seen), so a group that keeps failing shows up as old.
    pub fn seen(&mut self, group: &str, at: Instant) {
        if !self.read.contains_key(group) {
            self.read.insert(group.to_owned(), at);
        }
    }

    /// Stops tracking groups that are gone (or no longer selected).
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.read.retain(|g, _| keep(g));
    }

    /// The group whose landed positions are oldest, and their age at `now`.
    pub fn oldest(&self, now: Instant) -> Option<(&str, Duration)> {
        self.read
            .iter()
            .min_by(|a, b| a.1.cmp(b.1).then_with(|| a.0.cmp(b.0)))
            .map(|(g, t)| (g.as_str(), now.saturating_duration_since(*t)))
    }

    pub fn len(&self) -> usize {
        self.read.len()
    }

    pub fn is_empty(&self) -> bool {
        self.read.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strait_common::config::Config;

    fn flow() -> Flow {
        let text = "deployment = \"t\"\n[clusters.us]\nbootstrap = \"x:1\"\n[clusters.dr]\nbootstrap = \"x:2\"\n[[flows]]\nsource = \"us\"\ntarget = \"dr\"\n";
        Config::parse(text).unwrap().flows.remove(0)
    }

    fn tp() -> TopicPartition {
        TopicPartition {
            topic: "orders".into(),
            partition: 0,
        }
    }

    fn sync(u: i64, d: i64) -> OffsetSync {
        OffsetSync {
            topic: "orders".into(),
            partition: 0,
            upstream_offset: u,
            downstream_offset: d,
        }
    }

    #[test]
    fn a_group_position_becomes_a_checkpoint_on_the_remote_topic() {
        let (f, mut c) = (flow(), Checkpoints::default());
        c.observe_sync(&sync(0, 100));
        c.observe_sync(&sync(50, 150));
        let cp = c.checkpoint(&f, "billing", &tp(), 40, "").unwrap();
        assert_eq!(
            (
                cp.topic.as_str(),
                cp.partition,
                cp.upstream_offset,
                cp.downstream_offset
            ),
            ("us.orders", 0, 40, 140)
        );
        assert_eq!(
            c.checkpoint(&f, "billing", &tp(), 40, ""),
            None,
            "unchanged: not emitted again"
        );
        assert_eq!(
            c.checkpoint(&f, "billing", &tp(), 45, "")
                .unwrap()
                .downstream_offset,
            145
        );
    }

    #[test]
    fn the_commit_metadata_goes_into_the_checkpoint_as_mirrormaker_2_puts_it() {
        let (f, mut c) = (flow(), Checkpoints::default());
        c.observe_sync(&sync(0, 100));
        let cp = c
            .checkpoint(&f, "billing", &tp(), 0, "partition-time=1700000000000")
            .unwrap();
        assert_eq!(cp.metadata, "partition-time=1700000000000");
        assert_eq!(
            Checkpoint::decode(&cp.encode_key().unwrap(), &cp.encode_value().unwrap())
                .unwrap()
                .metadata,
            "partition-time=1700000000000"
        );
        // Too long for the format's string: left out, the checkpoint written.
        let long = "x".repeat(40_000);
        let cp = c.checkpoint(&f, "billing", &tp(), 1, &long).unwrap();
        assert_eq!(cp.metadata, "");
        assert!(cp.encode_value().is_ok());
    }

    #[test]
    fn checkpoints_never_move_backwards_even_across_restarts() {
        let (f, mut c) = (flow(), Checkpoints::default());
        c.observe_sync(&sync(0, 100));
        c.observe_sync(&sync(50, 150));
        assert!(c.checkpoint(&f, "billing", &tp(), 45, "").is_some());
        assert_eq!(
            c.checkpoint(&f, "billing", &tp(), 30, ""),
            None,
            "group reset on the source"
        );
        // A restarted service restores from the topic before emitting.
        let mut restarted = Checkpoints::default();
        let at = |downstream_offset| Checkpoint {
            group: "billing".into(),
            topic: "us.orders".into(),
            partition: 0,
            upstream_offset: downstream_offset - 100,
            downstream_offset,
            metadata: String::new(),
        };
        assert!(restarted.restore(&at(140)));
        assert!(restarted.restore(&at(145)));
        // A checkpoint below an earlier one on the topic is a breach, reported.
        assert!(!restarted.restore(&at(120)), "backwards on the topic");
        restarted.observe_sync(&sync(0, 100));
        restarted.observe_sync(&sync(50, 150));
        assert_eq!(restarted.checkpoint(&f, "billing", &tp(), 45, ""), None);
        assert_eq!(restarted.checkpoint(&f, "billing", &tp(), 44, ""), None);
        assert_eq!(
            restarted
                .checkpoint(&f, "billing", &tp(), 46, "")
                .unwrap()
                .downstream_offset,
            146
        );
    }

    #[test]
    fn no_sync_no_checkpoint() {
        let (f, mut c) = (flow(), Checkpoints::default());
        assert_eq!(c.checkpoint(&f, "billing", &tp(), 10, ""), None);
        c.observe_sync(&sync(20, 5));
        assert_eq!(
            c.checkpoint(&f, "billing", &tp(), 10, ""),
            None,
            "below every sync"
        );
    }

    #[test]
    fn an_unchanged_position_is_not_translated_again_until_a_sync_arrives() {
        let (f, mut c) = (flow(), Checkpoints::default());
        c.observe_sync(&sync(0, 100));
        // Past the newest sync: MirrorMaker 2's rule, D + 1.
        assert_eq!(
            c.checkpoint(&f, "billing", &tp(), 40, "")
                .unwrap()
                .downstream_offset,
            101
        );
        assert_eq!(c.checkpoint(&f, "billing", &tp(), 40, ""), None);
        // A sync proving the span contiguous makes the same position exact.
        c.observe_sync(&sync(60, 160));
        assert_eq!(
            c.checkpoint(&f, "billing", &tp(), 40, "")
                .unwrap()
                .downstream_offset,
            140
        );
        assert_eq!(
            c.emitted("billing"),
            vec![(TopicPartition::new("us.orders", 0), NextOffset(140))]
        );
        assert!(c.emitted("shipping").is_empty());
    }

    #[test]
    fn a_rolled_back_round_emits_again() {
        let (f, mut c) = (flow(), Checkpoints::default());
        c.observe_sync(&sync(0, 100));
        c.observe_sync(&sync(50, 150));
        let before = c.marks();
        assert!(c.checkpoint(&f, "billing", &tp(), 45, "").is_some());
        c.roll_back(before);
        assert_eq!(
            c.checkpoint(&f, "billing", &tp(), 45, "")
                .unwrap()
                .downstream_offset,
            145,
            "the aborted round's checkpoint is written again"
        );
    }

    #[test]
    fn freshness_names_the_oldest_group() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let mut f = Freshness::default();
        assert_eq!(f.oldest(t0), None);
        f.seen("a", at(0));
        f.seen("b", at(0));
        f.landed("a", at(5));
        assert_eq!(f.oldest(at(6)), Some(("b", Duration::from_secs(6))));
        f.landed("b", at(6));
        f.landed("a", at(3)); // an older read never makes a group fresher... or staler
        assert_eq!(f.oldest(at(7)), Some(("a", Duration::from_secs(2))));
        f.seen("a", at(7)); // already tracked: unchanged
        f.retain(|g| g != "a");
        assert_eq!(f.oldest(at(7)), Some(("b", Duration::from_secs(1))));
        assert_eq!(f.len(), 1);
    }
}
