//! Translation of consumer groups on demand, for many groups in one pass:
//! the offset syncs are read once (up to their end offset when the call
//! starts), the groups' positions are fetched with a bounded number of
//! admin requests in flight ([`groups`](super::groups)); or, with the source
//! gone, the newest checkpoints read back from the target. What a failover
//! writes is then committed by [`failover_groups`]: one offset commit per
//! group, refused for groups that have members there.
//!
//! Used by `strait offsets translate|failover` and the HTTP endpoint.
//!
//! [`failover_groups`]: super::groups::failover_groups

use std::collections::HashMap;

use regex::Regex;

use strait_common::config::Flow;
use strait_common::formats::OffsetSync;
use strait_common::model::{NextOffset, TopicPartition};
use strait_common::syncs::Translation;

use super::core::Checkpoints;
use super::groups::{group_client, source_positions};
use super::reader::InternalTopic;
use super::spec::CheckpointSpec;
use super::READ_TIMEOUT;
use crate::native_admin::GroupCommits;

/// Which source groups a call is about.
#[derive(Debug, Clone)]
pub enum GroupSelector {
    /// This group.
    One(String),
    /// Every group on the source whose whole id matches (strait's own
    /// groups never do).
    Matching(Regex),
    /// Every group the flow checkpoints (its `groups`/`groups_exclude`).
    Checkpointed,
}

impl GroupSelector {
    /// Every group whose whole id matches `pattern`.
    pub fn matching(pattern: &str) -> Result<Self, regex::Error> {
        Ok(GroupSelector::Matching(Regex::new(&format!(
            "^(?:{pattern})$"
        ))?))
    }

    /// The groups it names on `client`'s cluster, sorted: one named group
    /// as it is (no listing), else the listed groups it selects.
    pub(crate) fn groups(
        &self,
        flow: &Flow,
        client: &rdkafka::consumer::BaseConsumer,
    ) -> anyhow::Result<Vec<String>> {
        if let GroupSelector::One(g) = self {
            return Ok(vec![g.clone()]);
        }
        let mut gs: Vec<String> = super::groups::list_groups(client)?
            .into_keys()
            .filter(|g| self.selects(flow, g))
            .collect();
        gs.sort();
        Ok(gs)
    }

    pub(crate) fn selects(&self, flow: &Flow, group: &str) -> bool {
        match self {
            GroupSelector::One(g) => g == group,
            GroupSelector::Matching(r) => !group.starts_with("strait.") && r.is_match(group),
            GroupSelector::Checkpointed => flow.checkpoints_group(group),
        }
    }
}

/// One partition of a group, translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    pub group: String,
    pub remote_topic: String,
    pub partition: i32,
    /// The group's committed position on the source.
    pub source_offset: i64,
    /// Where the group resumes on the target.
    pub target_offset: i64,
    /// How it was translated; `None` for a position read back from the
    /// checkpoints topic, which does not record it.
    pub translation: Option<Translation>,
}

/// Reads the flow's offset syncs from the start of their topic up to its
/// end offset now.
pub fn read_syncs(spec: &CheckpointSpec, state: &mut Checkpoints) -> anyhow::Result<()> {
    let name = spec.flow.reader_group(&spec.deployment, "offsets");
    let mut syncs = InternalTopic::open(&spec.syncs_cluster, &name, &spec.flow.offset_syncs().1)?;
    syncs.read_to_end(READ_TIMEOUT, |k, v, _| {
        if let Ok(sync) = OffsetSync::decode(k, v) {
            state.observe_sync(&sync);
        }
    })?;
    Ok(())
}

/// Translates the selected groups' committed positions now, in one pass:
/// one read of the offset syncs, one listing of the groups (unless one is
/// named), their positions fetched concurrently. Rows are sorted by group,
/// topic and partition. A group with nothing translatable has no rows.
pub fn translate_groups(
    spec: &CheckpointSpec,
    selector: &GroupSelector,
) -> anyhow::Result<Vec<Translated>> {
    let mut state = Checkpoints::default();
    read_syncs(spec, &mut state)?;
    let client = group_client(
        &spec.source,
        &spec.flow.reader_group(&spec.deployment, "offsets"),
    )?;
    let groups = selector.groups(&spec.flow, &client)?;
    let mut out = Vec::new();
    for (group, positions) in source_positions(&client, &groups) {
        for (tp, committed, _) in positions? {
            if let Some(translation) = state.translate(&tp, committed) {
                out.push(Translated {
                    group: group.clone(),
                    remote_topic: spec.flow.remote_topic(&tp.topic),
                    partition: tp.partition,
                    source_offset: committed,
                    target_offset: translation.offset.0,
                    translation: Some(translation),
                });
            }
        }
    }
    out.sort_by(|a, b| {
        (&a.group, &a.remote_topic, a.partition).cmp(&(&b.group, &b.remote_topic, b.partition))
    });
    Ok(out)
}

/// The selected groups' newest checkpoints, read from the checkpoints topic
/// on the target up to its end: what a failover can use when the source
/// cluster is gone (nothing here reads the source). Positions are the ones
/// the checkpoint service last translated, so they trail the groups' last
/// commits by up to the checkpoint lag. Sorted like [`translate_groups`].
pub fn checkpointed_groups(
    spec: &CheckpointSpec,
    selector: &GroupSelector,
) -> anyhow::Result<Vec<Translated>> {
    let name = spec.flow.reader_group(&spec.deployment, "offsets");
    let topic = strait_common::policy::checkpoints_topic(&spec.flow.source);
    let mut reader = InternalTopic::open(&spec.target, &name, &topic)?;
    let mut newest: HashMap<(String, String, i32), (i64, i64)> = HashMap::new();
    reader.read_to_end(READ_TIMEOUT, |k, v, _| {
        let Ok(cp) = strait_common::formats::Checkpoint::decode(k, v) else {
            return;
        };
        if !selector.selects(&spec.flow, &cp.group) {
            return;
        }
        let e = newest
            .entry((cp.group, cp.topic, cp.partition))
            .or_insert((cp.upstream_offset, cp.downstream_offset));
        // Checkpoints never move backwards; the highest is the newest.
        if cp.downstream_offset >= e.1 {
            *e = (cp.upstream_offset, cp.downstream_offset);
        }
    })?;
    let mut out: Vec<Translated> = newest
        .into_iter()
        .map(
            |((group, remote_topic, partition), (up, down))| Translated {
                group,
                remote_topic,
                partition,
                source_offset: up,
                target_offset: down,
                translation: None,
            },
        )
        .collect();
    out.sort_by(|a, b| {
        (&a.group, &a.remote_topic, a.partition).cmp(&(&b.group, &b.remote_topic, b.partition))
    });
    Ok(out)
}

/// (group, topic, partition, offset) rows gathered per group, in the order
/// groups first appear.
pub fn group_commits<'a>(
    rows: impl IntoIterator<Item = (&'a str, &'a str, i32, i64)>,
) -> Vec<GroupCommits> {
    let mut by_group: Vec<GroupCommits> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (group, topic, partition, offset) in rows {
        let i = *index.entry(group).or_insert_with(|| {
            by_group.push((group.to_owned(), Vec::new()));
            by_group.len() - 1
        });
        by_group[i]
            .1
            .push((TopicPartition::new(topic, partition), NextOffset(offset)));
    }
    by_group
}
