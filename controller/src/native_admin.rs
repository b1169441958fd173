//! The admin calls rdkafka's API lacks — IncrementalAlterConfigs for
//! topics, DescribeConfigs that keeps a topic's error,
//! CreateAcls/DescribeAcls/DeleteAcls for literal topic ACLs, and
//! consumer group offsets for many groups at once ([`groups`]) —
//! bound to librdkafka in this one module. Every handle it creates is
//! released by a guard, on every path; nothing librdkafka owns escapes.
//! Blocking: call these from a blocking thread.

use std::os::raw::c_char;
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::client::{Client, ClientContext};

use rdkafka::types::RDKafkaErrorCode;
use strait_common::access::Operation;
use strait_common::native::authorized::{self, Access};
use strait_common::native::configs::topic_resource;
pub use strait_common::native::configs::{describe_topic_configs, TopicConfigEntry};
pub use strait_common::native::AdminError;
use strait_common::native::{check, cstring, request, text, Guard};

mod groups;
pub use groups::{
    alter_group_offsets, list_consumer_groups, list_group_offsets,
    list_group_offsets_with_metadata, AlterOutcome, CommittedOffset, GroupCommits, GroupError,
    GroupQuery, GroupState, PartitionOffset, PartitionPosition,
};

/// One change to a topic config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOp {
    Set(String, String),
    /// Back to the broker's default.
    Delete(String),
}

/// Applies `ops` to `topic` with IncrementalAlterConfigs: only the named
/// configs change, unlike the legacy AlterConfigs, which replaces them all.
pub fn incremental_alter_topic<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    ops: &[ConfigOp],
    timeout: Duration,
) -> Result<(), AdminError> {
    alter_topic(client, topic, ops, timeout, false)
}

/// [`incremental_alter_topic`] with `validate_only`: the broker checks
/// ALTER_CONFIGS (before anything else) and the changes, and applies
/// nothing. The preflight's probe.
pub fn validate_alter_topic<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    ops: &[ConfigOp],
    timeout: Duration,
) -> Result<(), AdminError> {
    alter_topic(client, topic, ops, timeout, true)
}

fn alter_topic<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    ops: &[ConfigOp],
    timeout: Duration,
    validate_only: bool,
) -> Result<(), AdminError> {
    if ops.is_empty() {
        return Ok(());
    }
    let resource = topic_resource(topic)?;
    // SAFETY: every object created below is released by its guard;
    // librdkafka copies the resource array it is given.
    unsafe {
        for op in ops {
            let (key, kind, value) = match op {
                ConfigOp::Set(k, v) => (
                    k,
                    rd::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_SET,
                    Some(v),
                ),
                ConfigOp::Delete(k) => (
                    k,
                    rd::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_DELETE,
                    None,
                ),
            };
            let key_c = cstring(key)?;
            let value_c = value.map(|v| cstring(v)).transpose()?;
            let err = Guard(
                rd::rd_kafka_ConfigResource_add_incremental_config(
                    resource.0,
                    key_c.as_ptr(),
                    kind,
                    value_c.as_ref().map_or(std::ptr::null(), |v| v.as_ptr()),
                ),
                rd::rd_kafka_error_destroy,
            );
            check(err.0, key)?;
        }
        let mut resources = [resource.0];
        let event = request(
            client,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_INCREMENTALALTERCONFIGS,
            timeout,
            |rk, o, q| {
                if validate_only {
                    let mut errstr = [0 as c_char; 256];
                    let err = rd::rd_kafka_AdminOptions_set_validate_only(
                        o,
                        1,
                        errstr.as_mut_ptr(),
                        errstr.len(),
                    );
                    debug_assert_eq!(err, rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR);
                }
                rd::rd_kafka_IncrementalAlterConfigs(rk, resources.as_mut_ptr(), 1, o, q)
            },
        )?;
        let result = rd::rd_kafka_event_IncrementalAlterConfigs_result(event.0);
        if result.is_null() {
            return Err(AdminError::Unexpected("a result of another type".into()));
        }
        let mut count = 0usize;
        let list = rd::rd_kafka_IncrementalAlterConfigs_result_resources(result, &mut count);
        for i in 0..count {
            let r = *list.add(i);
            let err = rd::rd_kafka_ConfigResource_error(r);
            if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                return Err(AdminError::Rejected {
                    name: topic.to_owned(),
                    message: text(rd::rd_kafka_ConfigResource_error_string(r)),
                    code: Some(err.into()),
                });
            }
        }
        Ok(())
    }
}

/// What an ACL lets a principal do to a topic (the ones strait maps;
/// everything else is carried as `Other`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AclOperation {
    All,
    Read,
    Write,
    Describe,
    Other(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AclPermission {
    Allow,
    Deny,
}

/// A literal ACL on a topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicAcl {
    pub topic: String,
    pub principal: String,
    pub host: String,
    pub operation: AclOperation,
    pub permission: AclPermission,
}

use rd::rd_kafka_AclOperation_t as Op;
use rd::rd_kafka_AclPermissionType_t as Perm;

fn op_to_rd(op: AclOperation) -> Op {
    match op {
        AclOperation::All => Op::RD_KAFKA_ACL_OPERATION_ALL,
        AclOperation::Read => Op::RD_KAFKA_ACL_OPERATION_READ,
        AclOperation::Write => Op::RD_KAFKA_ACL_OPERATION_WRITE,
        AclOperation::Describe => Op::RD_KAFKA_ACL_OPERATION_DESCRIBE,
        AclOperation::Other(n) => ALL_OPS
            .iter()
            .copied()
            .find(|o| *o as u32 == n)
            .unwrap_or(Op::RD_KAFKA_ACL_OPERATION_UNKNOWN),
    }
}

const ALL_OPS: [Op; 13] = [
    Op::RD_KAFKA_ACL_OPERATION_UNKNOWN,
    Op::RD_KAFKA_ACL_OPERATION_ANY,
    Op::RD_KAFKA_ACL_OPERATION_ALL,
    Op::RD_KAFKA_ACL_OPERATION_READ,
    Op::RD_KAFKA_ACL_OPERATION_WRITE,
    Op::RD_KAFKA_ACL_OPERATION_CREATE,
    Op::RD_KAFKA_ACL_OPERATION_DELETE,
    Op::RD_KAFKA_ACL_OPERATION_ALTER,
    Op::RD_KAFKA_ACL_OPERATION_DESCRIBE,
    Op::RD_KAFKA_ACL_OPERATION_CLUSTER_ACTION,
    Op::RD_KAFKA_ACL_OPERATION_DESCRIBE_CONFIGS,
    Op::RD_KAFKA_ACL_OPERATION_ALTER_CONFIGS,
    Op::RD_KAFKA_ACL_OPERATION_IDEMPOTENT_WRITE,
];

fn op_from_rd(op: Op) -> AclOperation {
    match op {
        Op::RD_KAFKA_ACL_OPERATION_ALL => AclOperation::All,
        Op::RD_KAFKA_ACL_OPERATION_READ => AclOperation::Read,
        Op::RD_KAFKA_ACL_OPERATION_WRITE => AclOperation::Write,
        Op::RD_KAFKA_ACL_OPERATION_DESCRIBE => AclOperation::Describe,
        other => AclOperation::Other(other as u32),
    }
}

/// A binding (or, with `filter`, a filter matching exactly it).
///
/// # Safety
/// Returns an owned binding the caller must destroy.
unsafe fn binding(
    acl: &TopicAcl,
    filter: bool,
) -> Result<Guard<rd::rd_kafka_AclBinding_t>, AdminError> {
    let (topic, principal, host) = (
        cstring(&acl.topic)?,
        cstring(&acl.principal)?,
        cstring(&acl.host)?,
    );
    let perm = match acl.permission {
        AclPermission::Allow => Perm::RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW,
        AclPermission::Deny => Perm::RD_KAFKA_ACL_PERMISSION_TYPE_DENY,
    };
    let mut errstr = [0 as c_char; 256];
    let new = if filter {
        rd::rd_kafka_AclBindingFilter_new
    } else {
        rd::rd_kafka_AclBinding_new
    };
    let b = new(
        rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
        topic.as_ptr(),
        rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_LITERAL,
        principal.as_ptr(),
        host.as_ptr(),
        op_to_rd(acl.operation),
        perm,
        errstr.as_mut_ptr(),
        errstr.len(),
    );
    if b.is_null() {
        return Err(AdminError::Rejected {
            name: format!("{acl:?}"),
            message: text(errstr.as_ptr()),
            code: None,
        });
    }
    Ok(Guard(b, rd::rd_kafka_AclBinding_destroy))
}

/// Every literal ACL on topics.
///
/// A refused listing is an error, never an empty list. librdkafka (2.12,
/// `rd_kafka_DescribeAclsResponse_parse` in rdkafka_admin.c) reads the
/// response's error code and drops it: a refused DescribeAcls reaches
/// the result event as a success (`rd_kafka_event_error` is
/// NO_ERROR) with no bindings, exactly like a cluster without ACLs. A
/// broker only lists bindings when it answers without error, so a
/// non-empty list is trusted as is; an empty one only once the broker
/// says (KIP-430's authorized operations, [`authorized::cluster`]) that
/// the principal may DESCRIBE the cluster, which DescribeAcls needs.
/// Otherwise it is refused with CLUSTER_AUTHORIZATION_FAILED, the code the
/// broker answered and librdkafka dropped; where the broker cannot tell,
/// the listing fails with the probe's error. Either way, ACL sync changes
/// nothing on the strength of it.
pub fn describe_topic_acls<C: ClientContext>(
    client: &Client<C>,
    timeout: Duration,
) -> Result<Vec<TopicAcl>, AdminError> {
    let acls = describe_topic_acls_unchecked(client, timeout)?;
    if !acls.is_empty() {
        return Ok(acls);
    }
    match authorized::cluster(client, timeout)? {
        Access::Allowed(ops) if ops.contains(&Operation::Describe) => Ok(acls),
        access => Err(AdminError::Kafka {
            code: RDKafkaErrorCode::ClusterAuthorizationFailed,
            message: format!(
                "DescribeAcls answered no ACLs, and the principal may not DESCRIBE the cluster \
                 ({access:?}): refused (librdkafka drops the listing's error code)"
            ),
        }),
    }
}

/// DescribeAcls as librdkafka answers it: a refused listing reads as an
/// empty one ([`describe_topic_acls`] tells them apart).
fn describe_topic_acls_unchecked<C: ClientContext>(
    client: &Client<C>,
    timeout: Duration,
) -> Result<Vec<TopicAcl>, AdminError> {
    // SAFETY: the filter is released by its guard; the result bindings are
    // owned by the event and read before it is destroyed.
    unsafe {
        let mut errstr = [0 as c_char; 256];
        let filter = Guard(
            rd::rd_kafka_AclBindingFilter_new(
                rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
                std::ptr::null(),
                rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_LITERAL,
                std::ptr::null(),
                std::ptr::null(),
                Op::RD_KAFKA_ACL_OPERATION_ANY,
                Perm::RD_KAFKA_ACL_PERMISSION_TYPE_ANY,
                errstr.as_mut_ptr(),
                errstr.len(),
            ),
            rd::rd_kafka_AclBinding_destroy,
        );
        if filter.0.is_null() {
            return Err(AdminError::Unexpected(text(errstr.as_ptr())));
        }
        let event = request(
            client,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBEACLS,
            timeout,
            |rk, o, q| rd::rd_kafka_DescribeAcls(rk, filter.0, o, q),
        )?;
        let result = rd::rd_kafka_event_DescribeAcls_result(event.0);
        if result.is_null() {
            return Err(AdminError::Unexpected("a result of another type".into()));
        }
        let mut count = 0usize;
        let list = rd::rd_kafka_DescribeAcls_result_acls(result, &mut count);
        let mut out = Vec::with_capacity(count);
        for i in 0..count {
            let b = *list.add(i);
            let permission = match rd::rd_kafka_AclBinding_permission_type(b) {
                Perm::RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW => AclPermission::Allow,
                Perm::RD_KAFKA_ACL_PERMISSION_TYPE_DENY => AclPermission::Deny,
                _ => continue,
            };
            out.push(TopicAcl {
                topic: text(rd::rd_kafka_AclBinding_name(b)),
                principal: text(rd::rd_kafka_AclBinding_principal(b)),
                host: text(rd::rd_kafka_AclBinding_host(b)),
                operation: op_from_rd(rd::rd_kafka_AclBinding_operation(b)),
                permission,
            });
        }
        out.sort();
        Ok(out)
    }
}

/// Creates literal topic ACLs.
pub fn create_topic_acls<C: ClientContext>(
    client: &Client<C>,
    acls: &[TopicAcl],
    timeout: Duration,
) -> Result<(), AdminError> {
    // SAFETY: the pointers handed to the closures come from `acl_request`,
    // which keeps the bindings and the result event alive meanwhile.
    unsafe {
        acl_request(
            client,
            acls,
            false,
            timeout,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_CREATEACLS,
            |rk, acls, n, o, q| rd::rd_kafka_CreateAcls(rk, acls, n, o, q),
            |event| {
                let result = rd::rd_kafka_event_CreateAcls_result(event);
                let mut count = 0usize;
                let list = if result.is_null() {
                    std::ptr::null_mut()
                } else {
                    rd::rd_kafka_CreateAcls_result_acls(result, &mut count)
                };
                (0..count)
                    .map(|i| rd::rd_kafka_acl_result_error(*list.add(i)))
                    .collect()
            },
        )
    }
}

/// Deletes exactly these literal topic ACLs.
pub fn delete_topic_acls<C: ClientContext>(
    client: &Client<C>,
    acls: &[TopicAcl],
    timeout: Duration,
) -> Result<(), AdminError> {
    // SAFETY: as for create_topic_acls.
    unsafe {
        acl_request(
            client,
            acls,
            true,
            timeout,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DELETEACLS,
            |rk, acls, n, o, q| rd::rd_kafka_DeleteAcls(rk, acls, n, o, q),
            |event| {
                let result = rd::rd_kafka_event_DeleteAcls_result(event);
                let mut count = 0usize;
                let list = if result.is_null() {
                    std::ptr::null_mut()
                } else {
                    rd::rd_kafka_DeleteAcls_result_responses(result, &mut count)
                };
                (0..count)
                    .map(|i| rd::rd_kafka_DeleteAcls_result_response_error(*list.add(i)))
                    .collect()
            },
        )
    }
}

/// Creates or deletes (`filter`) ACLs: one binding per ACL, one request,
/// then one error (or null) per ACL from the result event.
///
/// # Safety
/// `call` must issue the admin call matching `op`, and `errors` must read
/// that call's result from the event it is given.
unsafe fn acl_request<C: ClientContext>(
    client: &Client<C>,
    acls: &[TopicAcl],
    filter: bool,
    timeout: Duration,
    op: rd::rd_kafka_admin_op_t,
    call: impl FnOnce(
        *mut rd::rd_kafka_t,
        *mut *mut rd::rd_kafka_AclBinding_t,
        usize,
        *const rd::rd_kafka_AdminOptions_t,
        *mut rd::rd_kafka_queue_t,
    ),
    errors: impl FnOnce(*mut rd::rd_kafka_event_t) -> Vec<*const rd::rd_kafka_error_t>,
) -> Result<(), AdminError> {
    if acls.is_empty() {
        return Ok(());
    }
    let guards = acls
        .iter()
        .map(|a| binding(a, filter))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ptrs: Vec<*mut rd::rd_kafka_AclBinding_t> = guards.iter().map(|g| g.0).collect();
    let event = request(client, op, timeout, |rk, o, q| {
        call(rk, ptrs.as_mut_ptr(), ptrs.len(), o, q)
    })?;
    let errs = errors(event.0);
    if errs.len() != acls.len() {
        return Err(AdminError::Unexpected(format!(
            "{} results for {} ACLs",
            errs.len(),
            acls.len()
        )));
    }
    for (err, acl) in errs.into_iter().zip(acls) {
        check(err, &format!("{acl:?}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_round_trip_through_librdkafka_values() {
        for op in [
            AclOperation::All,
            AclOperation::Read,
            AclOperation::Write,
            AclOperation::Describe,
        ] {
            assert_eq!(op_from_rd(op_to_rd(op)), op);
        }
        let create = AclOperation::Other(Op::RD_KAFKA_ACL_OPERATION_CREATE as u32);
        assert_eq!(op_from_rd(op_to_rd(create)), create);
    }

    #[test]
    fn names_with_nul_are_refused_before_librdkafka_sees_them() {
        let acl = TopicAcl {
            topic: "a\0b".into(),
            principal: "User:x".into(),
            host: "*".into(),
            operation: AclOperation::Read,
            permission: AclPermission::Allow,
        };
        // SAFETY: binding() returns before calling librdkafka on a NUL.
        let err = unsafe { binding(&acl, false) }.err().unwrap();
        assert_eq!(err, AdminError::Nul("a\0b".into()));
    }
}
