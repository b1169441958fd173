//! Consumer groups on one cluster, through the admin API and many groups at
//! a time: listing them, reading their committed positions with a bounded
//! number of requests in flight, and committing positions forward to the
//! idle ones. The primitives the service (`sync_group_offsets`), failover
//! and failback are built on.

use std::collections::HashMap;

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer as _};

use strait_common::config::ClusterConfig;
use strait_common::kafka::manual_consumer;
use strait_common::model::{NextOffset, TopicPartition};

use super::{GROUP_REQUESTS_IN_FLIGHT, GROUP_REQUEST_TIMEOUT};
use crate::native_admin::{
    alter_group_offsets, list_consumer_groups, list_group_offsets,
    list_group_offsets_with_metadata, GroupCommits, GroupError, GroupState,
};

/// A client of `cluster` for listing groups and issuing admin requests.
pub(crate) fn group_client(cluster: &ClusterConfig, name: &str) -> anyhow::Result<BaseConsumer> {
    Ok(manual_consumer(cluster, name).create()?)
}

/// The consumer groups on `client`'s cluster and whether each has members
/// (ListGroups only: no group is described).
pub(crate) fn list_groups(client: &BaseConsumer) -> anyhow::Result<HashMap<String, GroupState>> {
    Ok(list_consumer_groups(client.client(), GROUP_REQUEST_TIMEOUT)
        .context("listing consumer groups")?
        .into_iter()
        .collect())
}

/// A group's committed positions, each with its commit metadata, or why
/// they could not be read.
pub(crate) type Positions = Result<Vec<(TopicPartition, i64, String)>, PositionsError>;

/// Why a group's committed positions could not be read: the broker's
/// error, with its code (the checkpoint service tells a missing permission
/// by it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("committed offsets of group {group}: {error}")]
pub(crate) struct PositionsError {
    pub group: String,
    pub error: GroupError,
}

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
                        .filter_map(|(tp, o)| {
                            let (o, metadata) = o?;
                            Some((tp, o.0, metadata))
                        })
                        .collect()
                })
                .map_err(|error| PositionsError {
                    group: g.clone(),
                    error,
                });
            (g, r)
        })
        .collect()
}

/// What a failover did to one group on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupOutcome {
    /// Offsets committed (or, in a dry run, that would be).
    Written,
    /// Nothing to move: the group is at or past every translated position.
    UpToDate,
    /// The group is active on the target; nothing was written for it.
    Refused(GroupRefusal),
    /// The target could not be read or written.
    Failed(GroupFailure),
}

/// How the target showed that a group has members there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupRefusal {
    /// ListGroups names it active: it was not read, nothing was sent.
    #[error("listed as active on the target")]
    ListedActive,
    /// The broker refused the commit with a code that says the group has
    /// members ([`GroupError::group_is_active`]): a member joined after
    /// the listing.
    #[error("the target refused the commit: {0}")]
    CommitRefused(GroupError),
}

/// Why a group's offsets could not be moved on the target, with the
/// broker's (or librdkafka's) code. The text includes the [`GroupError`]'s,
/// so it is not also given as a source (an error chain printed whole would
/// say it twice); [`GroupFailure::error`] has it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupFailure {
    /// Its committed offsets on the target could not be read.
    #[error("{0}")]
    Read(GroupError),
    /// The commit failed, for another reason than members.
    #[error("committing on the target: {0}")]
    Commit(GroupError),
}

impl GroupFailure {
    /// The error of the request that failed.
    pub fn error(&self) -> &GroupError {
        match self {
            GroupFailure::Read(e) | GroupFailure::Commit(e) => e,
        }
    }

    /// Its Kafka (or librdkafka) error code.
    pub fn code(&self) -> rdkafka::error::RDKafkaErrorCode {
        self.error().code
    }
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

/// Commits translated positions ((group, [(remote partition, position)]))
/// to the same groups on the target: per group, only the offsets ahead of
/// what it has there (never backwards), and nothing for a group with
/// members there (listed as active, or refused by the
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
            let parts = offsets.iter().map(|(tp, _)| tp.clone()).collect();
            (g.clone(), Some(parts))
        })
        .collect();
    type Current = Result<HashMap<TopicPartition, NextOffset>, GroupError>;
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
            let r = r.map(|parts| {
                parts
                    .into_iter()
                    .filter_map(|(tp, o)| Some((tp, o?)))
                    .collect()
            });
            (i, r)
        })
        .collect();
    let mut commits: Vec<(usize, GroupCommits)> = Vec::new(); // (index in `wanted`, commit)
    for (i, (group, offsets)) in wanted.iter().enumerate() {
        let row = |tp: &TopicPartition, o: NextOffset, before: Option<NextOffset>| FailoverRow {
            group: group.clone(),
            topic: tp.topic.clone(),
            partition: tp.partition,
            before: before.map(|b| b.0),
            offset: o.0,
            moves: before.is_none_or(|b| o > b),
        };
        match current.remove(&i) {
            None => {
                let rows = offsets.iter().map(|(tp, o)| row(tp, *o, None)).collect();
                out.push((GroupOutcome::Refused(GroupRefusal::ListedActive), rows));
            }
            Some(Err(e)) => {
                let rows = offsets.iter().map(|(tp, o)| row(tp, *o, None)).collect();
                out.push((GroupOutcome::Failed(GroupFailure::Read(e)), rows));
            }
            Some(Ok(have)) => {
                let rows: Vec<FailoverRow> = offsets
                    .iter()
                    .map(|(tp, o)| row(tp, *o, have.get(tp).copied()))
                    .collect();
                let ahead: Vec<_> = rows
                    .iter()
                    .filter(|r| r.moves)
                    .map(|r| {
                        let tp = TopicPartition::new(r.topic.clone(), r.partition);
                        (tp, NextOffset(r.offset))
                    })
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
        let mut errors: Vec<_> = match result {
            Ok(parts) => parts.into_iter().filter_map(|(_, r)| r.err()).collect(),
            Err(e) => vec![e],
        };
        if let Some(active) = errors.iter().position(|e| e.group_is_active()) {
            out[*i].0 =
                GroupOutcome::Refused(GroupRefusal::CommitRefused(errors.swap_remove(active)));
        } else if !errors.is_empty() {
            out[*i].0 = GroupOutcome::Failed(GroupFailure::Commit(errors.swap_remove(0)));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use rdkafka::error::RDKafkaErrorCode as Code;

    use super::{GroupError, GroupFailure, GroupRefusal};

    /// The outcome keeps the broker's code for callers to match on (the
    /// checkpoint service tells a missing permission by it), and reads as
    /// it did when it was text.
    #[test]
    fn a_failed_group_keeps_the_code_and_its_words() {
        let denied = GroupError {
            code: Code::GroupAuthorizationFailed,
            message: "not allowed".into(),
        };
        let f = GroupFailure::Commit(denied.clone());
        assert_eq!(f.code(), Code::GroupAuthorizationFailed);
        assert!(strait_common::access::denials::is_denial(f.code()));
        assert_eq!(f.to_string(), format!("committing on the target: {denied}"));
        assert_eq!(
            GroupFailure::Read(denied.clone()).to_string(),
            denied.to_string()
        );
        assert_eq!(
            GroupRefusal::ListedActive.to_string(),
            "listed as active on the target"
        );
        assert_eq!(
            GroupRefusal::CommitRefused(denied.clone()).to_string(),
            format!("the target refused the commit: {denied}")
        );
    }
}
