//! Failback: consumer groups that consumed a flow's remote topics on the
//! target, translated back to the source topics on the source, through the
//! same offset syncs read the other way ([`SyncHistory::translate_back`]).
//! For when the source cluster is back after a failover and the
//! applications return to it.
//!
//! Positions never go past what the source holds (a source restored from
//! an older state is shorter than what was replicated from it); the commit
//! itself is [`failover_groups`] pointed at the source: never backwards,
//! refused for groups with members there.
//!
//! [`SyncHistory::translate_back`]: strait_common::syncs::SyncHistory::translate_back
//! [`failover_groups`]: super::groups::failover_groups

use std::collections::{BTreeMap, HashMap};

use rdkafka::consumer::Consumer as _;
use strait_common::model::{NextOffset, TopicPartition};
use strait_common::syncs::Translation;

use super::core::Checkpoints;
use super::failover::{read_syncs, GroupSelector};
use super::groups::{group_client, source_positions};
use super::spec::CheckpointSpec;
use super::READ_TIMEOUT;

/// One partition of a group, translated back to the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslatedBack {
    pub group: String,
    /// The source topic the group resumes on.
    pub topic: String,
    /// The remote topic it consumed on the target.
    pub remote_topic: String,
    pub partition: i32,
    /// The group's committed position on the remote topic.
    pub target_offset: i64,
    /// Where the group resumes on the source topic.
    pub source_offset: i64,
    pub translation: Translation,
    /// The source's end offset, when the translation lay past it and the
    /// position was brought back to it.
    pub clamped_to: Option<i64>,
}

/// Translates the selected groups' committed positions on the flow's
/// remote topics (on the target) back to the source topics: one read of
/// the offset syncs, one listing of the target's groups (unless one is
/// named), their positions fetched concurrently, the source's end offsets
/// of the partitions involved. Sorted by group, topic and partition.
pub fn translate_back_groups(
    spec: &CheckpointSpec,
    selector: &GroupSelector,
) -> anyhow::Result<Vec<TranslatedBack>> {
    let mut state = Checkpoints::default();
    read_syncs(spec, &mut state)?;
    let name = spec.flow.reader_group(&spec.deployment, "offsets");
    // The remote topics this flow wrote, by name on the target.
    let sources: HashMap<String, String> = state
        .partitions()
        .map(|tp| (spec.flow.remote_topic(&tp.topic), tp.topic.clone()))
        .collect();
    let target = group_client(&spec.target, &name)?;
    let groups = selector.groups(&spec.flow, &target)?;
    let mut out = Vec::new();
    for (group, positions) in source_positions(&target, &groups) {
        for (remote, committed, _) in positions? {
            let Some(topic) = sources.get(&remote.topic) else {
                continue;
            };
            let tp = TopicPartition {
                topic: topic.clone(),
                partition: remote.partition,
            };
            if let Some(translation) = state.translate_back(&tp, committed) {
                out.push(TranslatedBack {
                    group: group.clone(),
                    topic: tp.topic,
                    remote_topic: remote.topic,
                    partition: remote.partition,
                    target_offset: committed,
                    source_offset: translation.offset.0,
                    translation,
                    clamped_to: None,
                });
            }
        }
    }
    // Never past the source's end.
    let source = group_client(&spec.source, &name)?;
    let mut ends: BTreeMap<TopicPartition, NextOffset> = BTreeMap::new();
    for r in &mut out {
        let key = TopicPartition::new(r.topic.clone(), r.partition);
        let end = match ends.get(&key) {
            Some(e) => e.0,
            None => {
                let (_, high) = source
                    .fetch_watermarks(&r.topic, r.partition, READ_TIMEOUT)
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "end offset of {}/{} on the source: {e}",
                            r.topic,
                            r.partition
                        )
                    })?;
                ends.insert(key, NextOffset(high));
                high
            }
        };
        if r.source_offset > end {
            r.clamped_to = Some(end);
            r.source_offset = end;
        }
    }
    out.sort_by(|a, b| (&a.group, &a.topic, a.partition).cmp(&(&b.group, &b.topic, b.partition)));
    Ok(out)
}
