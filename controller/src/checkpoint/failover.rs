//! Translation and failover of consumer groups, for many groups in one
//! pass: the offset syncs are read once (up to their end offset when the
//! call starts), the groups' positions are fetched with a bounded number of
//! admin requests in flight, and the target is written with one offset
//! commit per group, refused for groups that have members there.
//!
//! Used by `strait offsets translate|failover`, the HTTP endpoint, and the
//! checkpoint service's `sync_group_offsets`.

use crate::native_admin::GroupCommits;
use std::collections::HashMap;

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use regex::Regex;

use strait_common::config::{ClusterConfig, Flow};
use strait_common::formats::OffsetSync;
use strait_common::kafka::manual_consumer;
use strait_common::model::TopicPartition;
use strait_common::syncs::Translation;

use super::core::Checkpoints;
use super::reader::InternalTopic;
use super::service::CheckpointSpec;
use super::{GROUP_REQUESTS_IN_FLIGHT, GROUP_REQUEST_TIMEOUT, READ_TIMEOUT};
use crate::native_admin::{
    alter_group_offsets, list_consumer_groups, list_group_offsets,
    list_group_offsets_with_metadata, GroupState,
};

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

/// A client of `cluster` for listing groups and issuing admin requests.
pub(crate) fn group_client(cluster: &ClusterConfig, name: &str) -> anyhow::Result<BaseConsumer> {
    Ok(manual_consumer(cluster, name).create()?)
}

/// The consumer groups on `client`'s cluster and whether each has members
/// (ListGroups only: no group is described).
pub(crate) fn list_groups(client: &BaseConsumer) -> anyhow::Result<HashMap<String, GroupState>> {
    Ok(list_consumer_groups(client.client(), GROUP_REQUEST_TIMEOUT)
        .map_err(|e| anyhow::anyhow!("listing consumer groups: {e}"))?
        .into_iter()
        .collect())
}

/// A group's committed positions, each with its commit metadata, or why
/// they could not be read.
pub(crate) type Positions = anyhow::Result<Vec<(TopicPartition, i64, String)>>;

/// Committed positions of `groups` on the source, fetched with at most
/// [`GROUP_REQUESTS_IN_FLIGHT`] requests under way. Per group: its
/// (topic-partition, committed, metadata), or why they could not be read.
/// The metadata goes into the checkpoints, as MirrorMaker 2 puts it there.
pub(crate) fn source_positions(
    client: &BaseConsumer,
    groups: &[String],
) -> Vec<(String, Positions)> {
    let requests: Vec<_> = groups.iter().map(|g| (g.clone(), None)).collect();
    let results = list_group_offsets_with_metadata(
        client.client(),
        &requests,
        GROUP_REQUESTS_IN_FLIGHT,
        GROUP_REQUEST_TIMEOUT,
    );
    groups
        .iter()
        .cloned()
        .zip(results)
        .map(|(g, r)| {
            let r = r
                .map(|parts| {
                    parts
                        .into_iter()
                        .filter_map(|(topic, partition, o)| {
                            let (o, metadata) = o?;
                            Some((TopicPartition { topic, partition }, o, metadata))
                        })
                        .collect()
                })
                .map_err(|e| anyhow::anyhow!("committed offsets of group {g}: {e}"));
            (g, r)
        })
        .collect()
}

/// Reads the flow's offset syncs from the start of their topic up to its
/// end offset now.
pub fn read_syncs(spec: &CheckpointSpec, state: &mut Checkpoints) -> anyhow::Result<()> {
    let name = format!("{}.offsets", spec.flow.commit_group(&spec.deployment));
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
        &format!("{}.offsets", spec.flow.commit_group(&spec.deployment)),
    )?;
    let groups: Vec<String> = match selector {
        GroupSelector::One(g) => vec![g.clone()],
        _ => {
            let mut gs: Vec<String> = list_groups(&client)?
                .into_keys()
                .filter(|g| selector.selects(&spec.flow, g))
                .collect();
            gs.sort();
            gs
        }
    };
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
    let name = format!("{}.offsets", spec.flow.commit_group(&spec.deployment));
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

/// What a failover did to one group on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupOutcome {
    /// Offsets committed (or, in a dry run, that would be).
    Written,
    /// Nothing to move: the group is at or past every translated position.
    UpToDate,
    /// The group is active on the target; nothing was written for it.
    Refused(String),
    /// The target could not be read or written.
    Failed(String),
}

/// One partition of a failover: the translated position, what the target
/// group had, and whether it moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverRow {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    /// The target group's committed offset before the failover.
    pub before: Option<i64>,
    pub offset: i64,
    /// This row moves the group forward (written, or would be).
    pub moves: bool,
}

/// Commits translated positions ((group, [(remote topic, partition,
/// offset)])) to the same groups on the target: per group, only the
/// offsets ahead of what it has there (never backwards), and nothing for a
/// group with members there (listed as active, or refused by the
/// broker: an offset commit without a member id is only accepted for an
/// empty group, which also covers a member joining after the listing). A
/// `dry_run` reads everything and writes nothing.
pub fn failover_groups(
    target: &ClusterConfig,
    client_name: &str,
    wanted: &[GroupCommits],
    dry_run: bool,
) -> anyhow::Result<Vec<(GroupOutcome, Vec<FailoverRow>)>> {
    let client = group_client(target, client_name)?;
    let states = list_groups(&client)?;
    let mut out: Vec<(GroupOutcome, Vec<FailoverRow>)> = Vec::with_capacity(wanted.len());
    // The target groups' current offsets, for the groups that may move.
    let idle: Vec<usize> = (0..wanted.len())
        .filter(|&i| states.get(&wanted[i].0) != Some(&GroupState::Active))
        .collect();
    let requests: Vec<_> = idle
        .iter()
        .map(|&i| {
            let (g, offsets) = &wanted[i];
            let parts = offsets.iter().map(|(t, p, _)| (t.clone(), *p)).collect();
            (g.clone(), Some(parts))
        })
        .collect();
    type Current = Result<HashMap<(String, i32), i64>, String>;
    let mut current: HashMap<usize, Current> = idle
        .iter()
        .copied()
        .zip(list_group_offsets(
            client.client(),
            &requests,
            GROUP_REQUESTS_IN_FLIGHT,
            GROUP_REQUEST_TIMEOUT,
        ))
        .map(|(i, r)| {
            let r = r
                .map(|parts| {
                    parts
                        .into_iter()
                        .filter_map(|(t, p, o)| Some(((t, p), o?)))
                        .collect()
                })
                .map_err(|e| e.to_string());
            (i, r)
        })
        .collect();
    let mut commits: Vec<(usize, GroupCommits)> = Vec::new(); // (index in `wanted`, commit)
    for (i, (group, offsets)) in wanted.iter().enumerate() {
        let row = |t: &String, p: i32, o: i64, before: Option<i64>| FailoverRow {
            group: group.clone(),
            topic: t.clone(),
            partition: p,
            before,
            offset: o,
            moves: before.is_none_or(|b| o > b),
        };
        match current.remove(&i) {
            None => {
                let rows = offsets
                    .iter()
                    .map(|(t, p, o)| row(t, *p, *o, None))
                    .collect();
                out.push((
                    GroupOutcome::Refused("listed as active on the target".into()),
                    rows,
                ));
            }
            Some(Err(e)) => {
                let rows = offsets
                    .iter()
                    .map(|(t, p, o)| row(t, *p, *o, None))
                    .collect();
                out.push((GroupOutcome::Failed(e), rows));
            }
            Some(Ok(have)) => {
                let rows: Vec<FailoverRow> = offsets
                    .iter()
                    .map(|(t, p, o)| row(t, *p, *o, have.get(&(t.clone(), *p)).copied()))
                    .collect();
                let ahead: Vec<_> = rows
                    .iter()
                    .filter(|r| r.moves)
                    .map(|r| (r.topic.clone(), r.partition, r.offset))
                    .collect();
                if ahead.is_empty() {
                    out.push((GroupOutcome::UpToDate, rows));
                } else {
                    if !dry_run {
                        commits.push((i, (group.clone(), ahead)));
                    }
                    out.push((GroupOutcome::Written, rows));
                }
            }
        }
    }
    let requests: Vec<_> = commits.iter().map(|(_, c)| c.clone()).collect();
    let results = alter_group_offsets(
        client.client(),
        &requests,
        GROUP_REQUESTS_IN_FLIGHT,
        GROUP_REQUEST_TIMEOUT,
    );
    for ((i, _), result) in commits.iter().zip(results) {
        let errors: Vec<_> = match result {
            Ok(parts) => parts.into_iter().filter_map(|(_, _, r)| r.err()).collect(),
            Err(e) => vec![e],
        };
        if let Some(active) = errors.iter().find(|e| e.group_is_active()) {
            out[*i].0 = GroupOutcome::Refused(format!("the target refused the commit: {active}"));
        } else if let Some(e) = errors.first() {
            out[*i].0 = GroupOutcome::Failed(format!("committing on the target: {e}"));
        }
    }
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
        by_group[i].1.push((topic.to_owned(), partition, offset));
    }
    by_group
}
