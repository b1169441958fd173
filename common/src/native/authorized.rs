//! What the brokers say strait's principal may do (KIP-430's authorized
//! operations): on the cluster (DescribeCluster), on topics (Metadata, as
//! librdkafka's DescribeTopics asks it) and on consumer groups
//! (DescribeGroups). The preflight compares these with
//! [`crate::access::needs`]. Blocking: call from a blocking thread.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::os::raw::c_char;
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::client::{Client, ClientContext};

use super::{cstring, request, text, AdminError};
use crate::access::Operation;

/// What one resource allows, as the broker answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// The operations the principal may perform on it (implied ones
    /// included: the broker checks each operation as a request would).
    Allowed(BTreeSet<Operation>),
    /// The resource does not exist (a topic), or the broker said nothing
    /// about it.
    Missing,
    /// The broker refused to describe it: not even DESCRIBE is allowed.
    Denied,
}

impl Access {
    pub fn allows(&self, op: Operation) -> bool {
        matches!(self, Access::Allowed(ops) if ops.contains(&op))
    }
}

fn operation(op: rd::rd_kafka_AclOperation_t) -> Option<Operation> {
    use rd::rd_kafka_AclOperation_t as Op;
    Some(match op {
        Op::RD_KAFKA_ACL_OPERATION_READ => Operation::Read,
        Op::RD_KAFKA_ACL_OPERATION_WRITE => Operation::Write,
        Op::RD_KAFKA_ACL_OPERATION_CREATE => Operation::Create,
        Op::RD_KAFKA_ACL_OPERATION_DESCRIBE => Operation::Describe,
        Op::RD_KAFKA_ACL_OPERATION_ALTER => Operation::Alter,
        Op::RD_KAFKA_ACL_OPERATION_DESCRIBE_CONFIGS => Operation::DescribeConfigs,
        Op::RD_KAFKA_ACL_OPERATION_ALTER_CONFIGS => Operation::AlterConfigs,
        _ => return None,
    })
}

/// # Safety
/// `ops` points at `n` operations (or is null).
unsafe fn operations(ops: *const rd::rd_kafka_AclOperation_t, n: usize) -> BTreeSet<Operation> {
    if ops.is_null() {
        return BTreeSet::new();
    }
    (0..n).filter_map(|i| operation(*ops.add(i))).collect()
}

/// Options that ask the broker for authorized operations.
///
/// # Safety
/// `options` is a live librdkafka admin options object.
unsafe fn include_operations(options: *mut rd::rd_kafka_AdminOptions_t) {
    let err = rd::rd_kafka_AdminOptions_set_include_authorized_operations(options, 1);
    if !err.is_null() {
        rd::rd_kafka_error_destroy(err);
    }
}

/// The operations the principal may perform on the cluster resource.
pub fn cluster<C: ClientContext>(
    client: &Client<C>,
    timeout: Duration,
) -> Result<Access, AdminError> {
    // SAFETY: the event owns the result, read before it is released.
    unsafe {
        let event = request(
            client,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECLUSTER,
            timeout,
            |rk, options, queue| {
                include_operations(options);
                rd::rd_kafka_DescribeCluster(rk, options, queue)
            },
        );
        let event = match event {
            Ok(e) => e,
            Err(e) if e.code().is_some_and(crate::access::denials::is_denial) => {
                return Ok(Access::Denied)
            }
            Err(e) => return Err(e),
        };
        let result = rd::rd_kafka_event_DescribeCluster_result(event.0);
        if result.is_null() {
            return Err(AdminError::Unexpected("a result of another type".into()));
        }
        let mut n = 0usize;
        let ops = rd::rd_kafka_DescribeCluster_result_authorized_operations(result, &mut n);
        Ok(Access::Allowed(operations(ops, n)))
    }
}

fn names(list: &[&str]) -> Result<(Vec<CString>, Vec<*const c_char>), AdminError> {
    let owned: Vec<CString> = list.iter().map(|t| cstring(t)).collect::<Result<_, _>>()?;
    let ptrs = owned.iter().map(|n| n.as_ptr()).collect();
    Ok((owned, ptrs))
}

/// What the principal may do on each of `topics`.
pub fn topics<C: ClientContext>(
    client: &Client<C>,
    topics: &[&str],
    timeout: Duration,
) -> Result<BTreeMap<String, Access>, AdminError> {
    let mut out = BTreeMap::new();
    // SAFETY: each description is read during the callback only.
    unsafe {
        super::describe_topics(client, topics, true, timeout, |d| {
            let name = text(rd::rd_kafka_TopicDescription_name(d));
            let err = rd::rd_kafka_TopicDescription_error(d);
            let access = if err.is_null() {
                let mut k = 0usize;
                let ops = rd::rd_kafka_TopicDescription_authorized_operations(d, &mut k);
                Access::Allowed(operations(ops, k))
            } else {
                match rd::rd_kafka_error_code(err) {
                    rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED => {
                        Access::Denied
                    }
                    _ => Access::Missing,
                }
            };
            out.insert(name, access);
        })?;
    }
    for t in topics {
        out.entry((*t).to_owned()).or_insert(Access::Missing);
    }
    Ok(out)
}

/// What the principal may do on each of `groups` (a group that does not
/// exist yet is described as dead, with its authorized operations).
pub fn groups<C: ClientContext>(
    client: &Client<C>,
    groups: &[&str],
    timeout: Duration,
) -> Result<BTreeMap<String, Access>, AdminError> {
    let mut out = BTreeMap::new();
    if groups.is_empty() {
        return Ok(out);
    }
    let (_owned, mut ptrs) = names(groups)?;
    // SAFETY: librdkafka copies the names; the descriptions live as long
    // as the event.
    unsafe {
        let event = request(
            client,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS,
            timeout,
            |rk, options, queue| {
                include_operations(options);
                rd::rd_kafka_DescribeConsumerGroups(
                    rk,
                    ptrs.as_mut_ptr(),
                    ptrs.len(),
                    options,
                    queue,
                )
            },
        )?;
        let result = rd::rd_kafka_event_DescribeConsumerGroups_result(event.0);
        if result.is_null() {
            return Err(AdminError::Unexpected("a result of another type".into()));
        }
        let mut n = 0usize;
        let descs = rd::rd_kafka_DescribeConsumerGroups_result_groups(result, &mut n);
        for i in 0..n {
            let d = *descs.add(i);
            let name = text(rd::rd_kafka_ConsumerGroupDescription_group_id(d));
            let err = rd::rd_kafka_ConsumerGroupDescription_error(d);
            let access = if err.is_null() {
                let mut k = 0usize;
                let ops = rd::rd_kafka_ConsumerGroupDescription_authorized_operations(d, &mut k);
                Access::Allowed(operations(ops, k))
            } else {
                match rd::rd_kafka_error_code(err) {
                    rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED => {
                        Access::Denied
                    }
                    _ => Access::Missing,
                }
            };
            out.insert(name, access);
        }
    }
    for g in groups {
        out.entry((*g).to_owned()).or_insert(Access::Missing);
    }
    Ok(out)
}

/// Whether DescribeConfigs of `topic` is allowed (DESCRIBE_CONFIGS, which
/// a principal may hold without DESCRIBE).
pub fn describe_configs_allowed<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<bool, AdminError> {
    use rdkafka::types::RDKafkaErrorCode as Code;
    match super::configs::describe_topic_configs(client, topic, timeout) {
        Ok(_) => Ok(true),
        Err(AdminError::Rejected {
            code: Some(Code::TopicAuthorizationFailed | Code::ClusterAuthorizationFailed),
            ..
        }) => Ok(false),
        // Refused after the ACL check (an unknown topic): allowed.
        Err(AdminError::Rejected { .. }) => Ok(true),
        Err(e) => Err(e),
    }
}
