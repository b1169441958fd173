//! ACLs for tests, added and removed through librdkafka's CreateAcls and
//! DeleteAcls (milliseconds, where Kafka's own `kafka-acls` starts a JVM
//! each time). The tests that prove the documented ACL set use these; the
//! set itself is written out in each test, as docs/security.md gives it.

use std::ffi::CString;
use std::os::raw::c_char;
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::bindings as rd;
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;

/// What an ACL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Topic,
    Group,
    TransactionalId,
    Cluster,
}

/// One ALLOW ACL for a principal, from any host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    pub kind: Kind,
    /// `kafka-cluster` for the cluster.
    pub name: String,
    pub prefixed: bool,
    /// As `kafka-acls --operation` spells it: Read, Write, Create,
    /// Describe, Alter, DescribeConfigs, AlterConfigs.
    pub operation: &'static str,
}

impl Acl {
    pub fn literal(kind: Kind, name: &str, operation: &'static str) -> Acl {
        Acl {
            kind,
            name: name.to_owned(),
            prefixed: false,
            operation,
        }
    }

    pub fn prefixed(kind: Kind, prefix: &str, operation: &'static str) -> Acl {
        Acl {
            prefixed: true,
            ..Acl::literal(kind, prefix, operation)
        }
    }

    pub fn cluster(operation: &'static str) -> Acl {
        Acl::literal(Kind::Cluster, "kafka-cluster", operation)
    }
}

fn operation(name: &str) -> rd::rd_kafka_AclOperation_t {
    use rd::rd_kafka_AclOperation_t as Op;
    match name {
        "Read" => Op::RD_KAFKA_ACL_OPERATION_READ,
        "Write" => Op::RD_KAFKA_ACL_OPERATION_WRITE,
        "Create" => Op::RD_KAFKA_ACL_OPERATION_CREATE,
        "Describe" => Op::RD_KAFKA_ACL_OPERATION_DESCRIBE,
        "Alter" => Op::RD_KAFKA_ACL_OPERATION_ALTER,
        "DescribeConfigs" => Op::RD_KAFKA_ACL_OPERATION_DESCRIBE_CONFIGS,
        "AlterConfigs" => Op::RD_KAFKA_ACL_OPERATION_ALTER_CONFIGS,
        "All" => Op::RD_KAFKA_ACL_OPERATION_ALL,
        other => panic!("unknown ACL operation {other}"),
    }
}

/// Adds (`add`) or removes `acls` for `principal` on the cluster at
/// `bootstrap`, as the client `settings` log in (a super user's); panics
/// with the broker's words if it refuses.
pub fn change(
    bootstrap: &str,
    settings: &[(String, String)],
    principal: &str,
    acls: &[Acl],
    add: bool,
) {
    if acls.is_empty() {
        return;
    }
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    for (k, v) in settings {
        c.set(k, v);
    }
    let client: AdminClient<DefaultClientContext> = c.create().expect("admin client");
    let principal_c = CString::new(principal).unwrap();
    let host = CString::new("*").unwrap();
    // SAFETY: every binding is destroyed below; the names outlive the
    // calls that copy them; the result event is read before it is
    // destroyed.
    unsafe {
        let mut names = Vec::new();
        let mut bindings: Vec<*mut rd::rd_kafka_AclBinding_t> = Vec::new();
        for a in acls {
            let name = CString::new(a.name.as_str()).unwrap();
            let kind = match a.kind {
                Kind::Topic => rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
                Kind::Group => rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_GROUP,
                Kind::TransactionalId => {
                    rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TRANSACTIONAL_ID
                }
                Kind::Cluster => rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_BROKER,
            };
            let pattern = if a.prefixed {
                rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_PREFIXED
            } else {
                rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_LITERAL
            };
            let mut errstr = [0 as c_char; 256];
            let new = if add {
                rd::rd_kafka_AclBinding_new
            } else {
                rd::rd_kafka_AclBindingFilter_new
            };
            let b = new(
                kind,
                name.as_ptr(),
                pattern,
                principal_c.as_ptr(),
                host.as_ptr(),
                operation(a.operation),
                rd::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW,
                errstr.as_mut_ptr(),
                errstr.len(),
            );
            assert!(
                !b.is_null(),
                "{a:?}: {}",
                std::ffi::CStr::from_ptr(errstr.as_ptr()).to_string_lossy()
            );
            names.push(name);
            bindings.push(b);
        }
        let rk = client.inner().native_ptr();
        let op = if add {
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_CREATEACLS
        } else {
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DELETEACLS
        };
        let options = rd::rd_kafka_AdminOptions_new(rk, op);
        let queue = rd::rd_kafka_queue_new(rk);
        if add {
            rd::rd_kafka_CreateAcls(rk, bindings.as_mut_ptr(), bindings.len(), options, queue);
        } else {
            rd::rd_kafka_DeleteAcls(rk, bindings.as_mut_ptr(), bindings.len(), options, queue);
        }
        let event = rd::rd_kafka_queue_poll(queue, Duration::from_secs(30).as_millis() as i32);
        let mut failure = None;
        if event.is_null() {
            failure = Some("no answer in 30 s".to_owned());
        } else if rd::rd_kafka_event_error(event)
            != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        {
            failure = Some(
                std::ffi::CStr::from_ptr(rd::rd_kafka_event_error_string(event))
                    .to_string_lossy()
                    .into_owned(),
            );
        } else {
            let mut n = 0usize;
            let errors: Vec<*const rd::rd_kafka_error_t> = if add {
                let r = rd::rd_kafka_event_CreateAcls_result(event);
                let list = rd::rd_kafka_CreateAcls_result_acls(r, &mut n);
                (0..n)
                    .map(|i| rd::rd_kafka_acl_result_error(*list.add(i)))
                    .collect()
            } else {
                let r = rd::rd_kafka_event_DeleteAcls_result(event);
                let list = rd::rd_kafka_DeleteAcls_result_responses(r, &mut n);
                (0..n)
                    .map(|i| rd::rd_kafka_DeleteAcls_result_response_error(*list.add(i)))
                    .collect()
            };
            for e in errors.into_iter().filter(|e| !e.is_null()) {
                failure = Some(
                    std::ffi::CStr::from_ptr(rd::rd_kafka_error_string(e))
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
        if !event.is_null() {
            rd::rd_kafka_event_destroy(event);
        }
        rd::rd_kafka_queue_destroy(queue);
        rd::rd_kafka_AdminOptions_destroy(options);
        for b in bindings {
            rd::rd_kafka_AclBinding_destroy(b);
        }
        drop(names);
        if let Some(f) = failure {
            panic!(
                "{} ACLs {acls:?} for {principal}: {f}",
                if add { "adding" } else { "removing" }
            );
        }
    }
}
