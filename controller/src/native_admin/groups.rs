//! Consumer group offsets through the admin API: ListConsumerGroupOffsets
//! (OffsetFetch) and AlterConsumerGroupOffsets (OffsetCommit without a
//! member), for many groups with a bounded number of requests in flight on
//! one client. librdkafka takes one group per call and routes each call to
//! that group's coordinator, so the requests spread over the coordinators
//! by themselves; nothing here opens a consumer per group.
//!
//! The client must be a consumer with a `group.id` (it need never join):
//! when an OffsetFetch of ListConsumerGroupOffsets is answered
//! NotCoordinator (a coordinator moving or loading), librdkafka asks the
//! client's own consumer group to find its coordinator again, and on a
//! client without one (an AdminClient) it dereferences a null pointer and
//! the process dies (librdkafka issue 5040, open; seen here on Kafka by the
//! checkpoints benchmark). strait's callers use `group_client`.

use std::os::raw::c_void;
use std::time::{Duration, Instant};

use rdkafka::bindings as rd;
use rdkafka::client::{Client, ClientContext};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use strait_common::model::{NextOffset, TopicPartition};

use super::{cstring, text, AdminError, Guard};

/// Why one group's request failed, with the broker's code, so callers can
/// tell "the group has members" from a broken request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupError {
    pub code: RDKafkaErrorCode,
    pub message: String,
}

impl std::fmt::Display for GroupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.code)
        } else {
            write!(f, "{} ({})", self.message, self.code)
        }
    }
}

impl std::error::Error for GroupError {}

impl GroupError {
    fn admin(e: AdminError) -> Self {
        let code = e.code().unwrap_or(RDKafkaErrorCode::Fail);
        GroupError {
            code,
            message: e.to_string(),
        }
    }

    /// The broker refused because the group has live members (an offset
    /// commit without a member id is only accepted for an empty group).
    pub fn group_is_active(&self) -> bool {
        matches!(
            self.code,
            RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::RebalanceInProgress
                | RDKafkaErrorCode::FencedInstanceId
        )
    }
}

/// One partition's committed position: `None` where the group has none.
pub type PartitionOffset = (TopicPartition, Option<NextOffset>);
/// One partition's committed position and the metadata committed with it
/// (an application's own note; Kafka Streams keeps partition time there).
pub type CommittedOffset = (TopicPartition, Option<(NextOffset, String)>);
/// A partition and the position to commit there.
pub type PartitionPosition = (TopicPartition, NextOffset);
/// A group and the positions to commit for it.
pub type GroupCommits = (String, Vec<PartitionPosition>);
/// A group and the partitions to read (`None`: every one it committed).
pub type GroupQuery = (String, Option<Vec<TopicPartition>>);
/// One group's commit: each partition's outcome, or the group's error.
pub type AlterOutcome = Result<Vec<(TopicPartition, Result<(), GroupError>)>, GroupError>;

/// Committed offsets of each group in `groups`: every partition the group
/// committed (`partitions` = `None`), or only the named ones. At most
/// `in_flight` requests are under way at once. Results come back in the
/// order of `groups`. Blocking.
pub fn list_group_offsets<C: ClientContext>(
    client: &Client<C>,
    groups: &[GroupQuery],
    in_flight: usize,
    timeout: Duration,
) -> Vec<Result<Vec<PartitionOffset>, GroupError>> {
    list_group_offsets_with_metadata(client, groups, in_flight, timeout)
        .into_iter()
        .map(|r| {
            r.map(|parts| {
                parts
                    .into_iter()
                    .map(|(tp, o)| (tp, o.map(|(o, _)| o)))
                    .collect()
            })
        })
        .collect()
}

/// [`list_group_offsets`] with each position's commit metadata.
pub fn list_group_offsets_with_metadata<C: ClientContext>(
    client: &Client<C>,
    groups: &[GroupQuery],
    in_flight: usize,
    timeout: Duration,
) -> Vec<Result<Vec<CommittedOffset>, GroupError>> {
    // SAFETY: `issue` passes its pointers to exactly one
    // ListConsumerGroupOffsets call; `read` reads that call's result event.
    let results = unsafe {
        pipelined(
            client,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS,
            groups.len(),
            in_flight,
            timeout,
            |i, rk, options, queue| {
                let (group, partitions) = &groups[i];
                let name = cstring(group)?;
                let tpl = partitions.as_ref().map(|ps| {
                    let mut tpl = TopicPartitionList::with_capacity(ps.len());
                    for tp in ps {
                        tpl.add_partition(&tp.topic, tp.partition);
                    }
                    tpl
                });
                let req = Guard(
                    rd::rd_kafka_ListConsumerGroupOffsets_new(
                        name.as_ptr(),
                        tpl.as_ref().map_or(std::ptr::null(), |t| t.ptr()),
                    ),
                    rd::rd_kafka_ListConsumerGroupOffsets_destroy,
                );
                let mut reqs = [req.0];
                // librdkafka copies the request objects it is given.
                rd::rd_kafka_ListConsumerGroupOffsets(rk, reqs.as_mut_ptr(), 1, options, queue);
                Ok(())
            },
            |event| {
                let result = rd::rd_kafka_event_ListConsumerGroupOffsets_result(event);
                group_result(result.is_null(), || {
                    let mut n = 0usize;
                    let list = rd::rd_kafka_ListConsumerGroupOffsets_result_groups(result, &mut n);
                    (list, n)
                })
            },
        )
    };
    // A partition-level error (an unknown partition, say) means no
    // committed position there.
    results
        .into_iter()
        .map(|r| {
            r.map(|parts| {
                parts
                    .into_iter()
                    .map(|(tp, o, metadata, err)| {
                        (tp, o.filter(|_| err.is_ok()).map(|o| (o, metadata)))
                    })
                    .collect()
            })
        })
        .collect()
}

/// Commits offsets to each group in `groups` ((group, [(partition,
/// position)])) without joining it: the broker accepts this only while the
/// group has no members. Per group: its partitions' outcomes. Blocking.
pub fn alter_group_offsets<C: ClientContext>(
    client: &Client<C>,
    groups: &[GroupCommits],
    in_flight: usize,
    timeout: Duration,
) -> Vec<AlterOutcome> {
    // SAFETY: as in `list_group_offsets`, for AlterConsumerGroupOffsets.
    let results = unsafe {
        pipelined(
            client,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_ALTERCONSUMERGROUPOFFSETS,
            groups.len(),
            in_flight,
            timeout,
            |i, rk, options, queue| {
                let (group, offsets) = &groups[i];
                let name = cstring(group)?;
                let mut tpl = TopicPartitionList::with_capacity(offsets.len());
                for (tp, o) in offsets {
                    tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(o.0))
                        .map_err(|e| AdminError::Unexpected(e.to_string()))?;
                }
                let req = Guard(
                    rd::rd_kafka_AlterConsumerGroupOffsets_new(name.as_ptr(), tpl.ptr()),
                    rd::rd_kafka_AlterConsumerGroupOffsets_destroy,
                );
                let mut reqs = [req.0];
                rd::rd_kafka_AlterConsumerGroupOffsets(rk, reqs.as_mut_ptr(), 1, options, queue);
                Ok(())
            },
            |event| {
                let result = rd::rd_kafka_event_AlterConsumerGroupOffsets_result(event);
                group_result(result.is_null(), || {
                    let mut n = 0usize;
                    let list = rd::rd_kafka_AlterConsumerGroupOffsets_result_groups(result, &mut n);
                    (list, n)
                })
            },
        )
    };
    results
        .into_iter()
        .map(|r| r.map(|parts| parts.into_iter().map(|(tp, _, _, err)| (tp, err)).collect()))
        .collect()
}

/// Whether a listed group has members, as ListGroups reports its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members: offsets may be committed from outside.
    Empty,
    /// Members are joined, joining or rebalancing.
    Active,
    /// Dead, or a state the broker does not report (tansu, older brokers):
    /// only an offset commit's answer tells.
    Unknown,
}

/// Every consumer group on the cluster with its state (ListGroups on every
/// broker, no DescribeGroups). Fails if any broker's answer is missing, so
/// a listing never silently leaves groups out. Blocking.
pub fn list_consumer_groups<C: ClientContext>(
    client: &Client<C>,
    timeout: Duration,
) -> Result<Vec<(String, GroupState)>, GroupError> {
    use rd::rd_kafka_consumer_group_state_t as S;
    // SAFETY: one ListConsumerGroups call on the request's queue; the
    // result is read while its event lives.
    unsafe {
        let event = super::request(
            client,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPS,
            timeout,
            |rk, o, q| rd::rd_kafka_ListConsumerGroups(rk, o, q),
        )
        .map_err(GroupError::admin)?;
        let result = rd::rd_kafka_event_ListConsumerGroups_result(event.0);
        if result.is_null() {
            return Err(GroupError::admin(AdminError::Unexpected(
                "a result of another type".into(),
            )));
        }
        let mut n = 0usize;
        let errors = rd::rd_kafka_ListConsumerGroups_result_errors(result, &mut n);
        if n > 0 && !errors.is_null() {
            let e = *errors;
            return Err(GroupError {
                code: rd::rd_kafka_error_code(e).into(),
                message: format!("listing groups: {}", text(rd::rd_kafka_error_string(e))),
            });
        }
        let mut n = 0usize;
        let list = rd::rd_kafka_ListConsumerGroups_result_valid(result, &mut n);
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let g = *list.add(i);
            let state = match rd::rd_kafka_ConsumerGroupListing_state(g) {
                S::RD_KAFKA_CONSUMER_GROUP_STATE_EMPTY => GroupState::Empty,
                S::RD_KAFKA_CONSUMER_GROUP_STATE_STABLE
                | S::RD_KAFKA_CONSUMER_GROUP_STATE_PREPARING_REBALANCE
                | S::RD_KAFKA_CONSUMER_GROUP_STATE_COMPLETING_REBALANCE => GroupState::Active,
                _ => GroupState::Unknown,
            };
            out.push((text(rd::rd_kafka_ConsumerGroupListing_group_id(g)), state));
        }
        Ok(out)
    }
}

/// Per partition: the partition, its offset, commit metadata, error.
type Parts = Vec<(
    TopicPartition,
    Option<NextOffset>,
    String,
    Result<(), GroupError>,
)>;

/// Reads the single group result of a group-offsets result event.
///
/// # Safety
/// `groups` must return the result's group array and its length.
unsafe fn group_result(
    wrong_type: bool,
    groups: impl FnOnce() -> (*mut *const rd::rd_kafka_group_result_t, usize),
) -> Result<Parts, GroupError> {
    if wrong_type {
        return Err(GroupError::admin(AdminError::Unexpected(
            "a result of another type".into(),
        )));
    }
    let (list, n) = groups();
    if n != 1 || list.is_null() {
        return Err(GroupError::admin(AdminError::Unexpected(format!(
            "{n} group results for one group"
        ))));
    }
    let g = *list;
    let err = rd::rd_kafka_group_result_error(g);
    if !err.is_null() {
        return Err(GroupError {
            code: rd::rd_kafka_error_code(err).into(),
            message: text(rd::rd_kafka_error_string(err)),
        });
    }
    let tpl = rd::rd_kafka_group_result_partitions(g);
    let mut out = Vec::new();
    if tpl.is_null() {
        return Ok(out);
    }
    let tpl = &*tpl;
    for i in 0..usize::try_from(tpl.cnt).unwrap_or(0) {
        let e = &*tpl.elems.add(i);
        let offset = (e.offset >= 0).then_some(NextOffset(e.offset));
        let err = if e.err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            Ok(())
        } else {
            Err(GroupError {
                code: e.err.into(),
                message: text(rd::rd_kafka_err2str(e.err)),
            })
        };
        let metadata = if e.metadata.is_null() || e.metadata_size == 0 {
            String::new()
        } else {
            String::from_utf8_lossy(std::slice::from_raw_parts(
                e.metadata.cast::<u8>(),
                e.metadata_size,
            ))
            .into_owned()
        };
        out.push((
            TopicPartition::new(text(e.topic), e.partition),
            offset,
            metadata,
            err,
        ));
    }
    Ok(out)
}

/// Runs `n` admin requests of kind `op` on one private queue, at most
/// `in_flight` at a time: `issue(i, ...)` issues request `i`, `read`
/// turns its result event into an answer. An answer missing when `timeout`
/// (plus a second) has passed without any request finishing is a timeout.
///
/// # Safety
/// `issue` must pass the given pointers to one librdkafka admin call of
/// kind `op`; `read` must only read the event it is given.
unsafe fn pipelined<C: ClientContext>(
    client: &Client<C>,
    op: rd::rd_kafka_admin_op_t,
    n: usize,
    in_flight: usize,
    timeout: Duration,
    mut issue: impl FnMut(
        usize,
        *mut rd::rd_kafka_t,
        *mut rd::rd_kafka_AdminOptions_t,
        *mut rd::rd_kafka_queue_t,
    ) -> Result<(), AdminError>,
    mut read: impl FnMut(*mut rd::rd_kafka_event_t) -> Result<Parts, GroupError>,
) -> Vec<Result<Parts, GroupError>> {
    let mut out: Vec<Option<Result<Parts, GroupError>>> = (0..n).map(|_| None).collect();
    if n == 0 {
        return Vec::new();
    }
    let rk = client.native_ptr();
    let queue = Guard(rd::rd_kafka_queue_new(rk), rd::rd_kafka_queue_destroy);
    let timeout_ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    let (mut next, mut open) = (0usize, 0usize);
    let mut last_progress = Instant::now();
    let wait = timeout + strait_common::native::ANSWER_GRACE;
    while next < n || open > 0 {
        while next < n && open < in_flight.max(1) {
            let options = Guard(
                rd::rd_kafka_AdminOptions_new(rk, op),
                rd::rd_kafka_AdminOptions_destroy,
            );
            let mut errstr = [0 as std::os::raw::c_char; 256];
            rd::rd_kafka_AdminOptions_set_request_timeout(
                options.0,
                timeout_ms,
                errstr.as_mut_ptr(),
                errstr.len(),
            );
            // The opaque carries the request's index (plus one: never null).
            rd::rd_kafka_AdminOptions_set_opaque(options.0, (next + 1) as *mut c_void);
            match issue(next, rk, options.0, queue.0) {
                Ok(()) => open += 1,
                Err(e) => out[next] = Some(Err(GroupError::admin(e))),
            }
            next += 1;
        }
        if open == 0 {
            continue;
        }
        let left = wait.saturating_sub(last_progress.elapsed());
        if left.is_zero() {
            break;
        }
        let event = Guard(
            rd::rd_kafka_queue_poll(queue.0, left.as_millis().clamp(1, i32::MAX as u128) as i32),
            rd::rd_kafka_event_destroy,
        );
        if event.0.is_null() {
            continue;
        }
        let index = (rd::rd_kafka_event_opaque(event.0) as usize).wrapping_sub(1);
        let Some(slot) = out.get_mut(index) else {
            continue; // not one of ours
        };
        open -= 1;
        last_progress = Instant::now();
        *slot = Some(
            if rd::rd_kafka_event_error(event.0)
                != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
            {
                Err(GroupError {
                    code: rd::rd_kafka_event_error(event.0).into(),
                    message: text(rd::rd_kafka_event_error_string(event.0)),
                })
            } else {
                read(event.0)
            },
        );
    }
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(GroupError::admin(AdminError::Timeout(wait)))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::consumer::Consumer as _;

    #[test]
    fn a_refusal_because_of_members_is_told_apart_from_a_failure() {
        let e = |code| GroupError {
            code,
            message: String::new(),
        };
        for code in [
            RDKafkaErrorCode::UnknownMemberId,
            RDKafkaErrorCode::IllegalGeneration,
            RDKafkaErrorCode::RebalanceInProgress,
        ] {
            assert!(e(code).group_is_active(), "{code:?}");
        }
        for code in [
            RDKafkaErrorCode::CoordinatorNotAvailable,
            RDKafkaErrorCode::GroupAuthorizationFailed,
            RDKafkaErrorCode::RequestTimedOut,
        ] {
            assert!(!e(code).group_is_active(), "{code:?}");
        }
        let timeout = GroupError::admin(AdminError::Timeout(Duration::from_secs(1)));
        assert_eq!(timeout.code, RDKafkaErrorCode::RequestTimedOut);
    }

    #[test]
    fn no_groups_no_requests() {
        let client: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .create()
            .unwrap();
        assert!(list_group_offsets(client.client(), &[], 8, Duration::from_secs(1)).is_empty());
        assert!(alter_group_offsets(client.client(), &[], 8, Duration::from_secs(1)).is_empty());
    }

    #[test]
    fn every_request_to_an_unreachable_cluster_fails() {
        let client: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .create()
            .unwrap();
        let groups: Vec<_> = (0..3).map(|i| (format!("g{i}"), None)).collect();
        let r = list_group_offsets(client.client(), &groups, 2, Duration::from_millis(300));
        assert_eq!(r.len(), 3);
        assert!(r.iter().all(|x| x.is_err()), "{r:?}");
    }
}
