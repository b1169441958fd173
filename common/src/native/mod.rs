//! librdkafka's C API where rdkafka's Rust API stops: the guard that
//! releases every handle, one admin request on a private queue, and the
//! calls built on them that the data plane needs (topic ids). The
//! controller's admin calls (`controller/src/native_admin.rs`) use the same
//! helpers. Blocking: call these from a blocking thread.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::client::{Client, ClientContext};
use thiserror::Error;

/// How much longer than an admin request's own timeout its answer is
/// waited for: librdkafka answers a request that timed out itself, at its
/// timeout, and that answer (with its error) is the one to report.
pub const ANSWER_GRACE: Duration = Duration::from_secs(1);

pub mod authorized;
pub mod configs;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AdminError {
    #[error("invalid name or value (contains NUL): {0}")]
    Nul(String),
    /// One resource of a request refused (a config, an ACL): its name,
    /// the reason, and the code where librdkafka or the broker gave one
    /// (none where librdkafka refused to build the request).
    #[error("config {name}: {message}")]
    Rejected {
        name: String,
        message: String,
        code: Option<rdkafka::types::RDKafkaErrorCode>,
    },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The request failed with a Kafka (or librdkafka) error code.
    #[error("{message}")]
    Kafka {
        code: rdkafka::types::RDKafkaErrorCode,
        message: String,
    },
    /// librdkafka answered with something the call does not expect (a
    /// result of another type, a count that does not match the request).
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

impl AdminError {
    /// The Kafka error code, where the failure has one.
    pub fn code(&self) -> Option<rdkafka::types::RDKafkaErrorCode> {
        match self {
            AdminError::Kafka { code, .. } => Some(*code),
            AdminError::Rejected { code, .. } => *code,
            AdminError::Timeout(_) => Some(rdkafka::types::RDKafkaErrorCode::RequestTimedOut),
            _ => None,
        }
    }
}

/// A librdkafka handle and its destructor, called once on drop.
pub struct Guard<T>(pub *mut T, pub unsafe extern "C" fn(*mut T));

impl<T> Drop for Guard<T> {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer came from the matching librdkafka
            // constructor and is released exactly once, here.
            unsafe { (self.1)(self.0) }
        }
    }
}

pub fn cstring(s: &str) -> Result<CString, AdminError> {
    CString::new(s).map_err(|_| AdminError::Nul(s.to_owned()))
}

/// # Safety
/// `p` is null or a NUL-terminated string that outlives the call.
pub unsafe fn text(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

pub type Event = Guard<rd::rd_kafka_event_t>;

/// Issues one admin request on a private queue and waits for its result
/// event: `issue` gets the handle, the options (with `timeout`) and the
/// queue. Returns the event, already checked for a request-level error.
///
/// # Safety
/// `issue` must pass the given pointers to one librdkafka admin call.
pub unsafe fn request<C: ClientContext>(
    client: &Client<C>,
    op: rd::rd_kafka_admin_op_t,
    timeout: Duration,
    issue: impl FnOnce(*mut rd::rd_kafka_t, *mut rd::rd_kafka_AdminOptions_t, *mut rd::rd_kafka_queue_t),
) -> Result<Event, AdminError> {
    let rk = client.native_ptr();
    let options = Guard(
        rd::rd_kafka_AdminOptions_new(rk, op),
        rd::rd_kafka_AdminOptions_destroy,
    );
    let mut errstr = [0 as c_char; 256];
    rd::rd_kafka_AdminOptions_set_request_timeout(
        options.0,
        timeout.as_millis().min(i32::MAX as u128) as i32,
        errstr.as_mut_ptr(),
        errstr.len(),
    );
    let queue = Guard(rd::rd_kafka_queue_new(rk), rd::rd_kafka_queue_destroy);
    issue(rk, options.0, queue.0);
    let wait = timeout + ANSWER_GRACE;
    let event = Guard(
        rd::rd_kafka_queue_poll(queue.0, wait.as_millis().min(i32::MAX as u128) as i32),
        rd::rd_kafka_event_destroy,
    );
    if event.0.is_null() {
        return Err(AdminError::Timeout(wait));
    }
    if rd::rd_kafka_event_error(event.0) != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return Err(AdminError::Kafka {
            code: rd::rd_kafka_event_error(event.0).into(),
            message: text(rd::rd_kafka_event_error_string(event.0)),
        });
    }
    Ok(event)
}

/// # Safety
/// `err` is null or a librdkafka error that outlives the call.
pub unsafe fn check(err: *const rd::rd_kafka_error_t, what: &str) -> Result<(), AdminError> {
    if err.is_null() {
        Ok(())
    } else {
        Err(AdminError::Rejected {
            name: what.to_owned(),
            message: text(rd::rd_kafka_error_string(err)),
            code: Some(rd::rd_kafka_error_code(err).into()),
        })
    }
}

/// Describes `topics` (one DescribeTopics request; with
/// `authorized_operations`, KIP-430's operations too) and hands each
/// description to `each`, valid only during the call.
///
/// # Safety
/// `each` must not keep the pointer it is given.
pub unsafe fn describe_topics<C: ClientContext>(
    client: &Client<C>,
    topics: &[&str],
    authorized_operations: bool,
    timeout: Duration,
    mut each: impl FnMut(*const rd::rd_kafka_TopicDescription_t),
) -> Result<(), AdminError> {
    if topics.is_empty() {
        return Ok(());
    }
    let names: Vec<CString> = topics
        .iter()
        .map(|t| cstring(t))
        .collect::<Result<_, _>>()?;
    let mut ptrs: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
    // The collection copies the names; every handle is guarded, and the
    // descriptions live as long as the event.
    let collection = Guard(
        rd::rd_kafka_TopicCollection_of_topic_names(ptrs.as_mut_ptr(), ptrs.len()),
        rd::rd_kafka_TopicCollection_destroy,
    );
    let event = request(
        client,
        rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
        timeout,
        |rk, options, queue| {
            if authorized_operations {
                let err = rd::rd_kafka_AdminOptions_set_include_authorized_operations(options, 1);
                if !err.is_null() {
                    rd::rd_kafka_error_destroy(err);
                }
            }
            rd::rd_kafka_DescribeTopics(rk, collection.0, options, queue)
        },
    )?;
    let result = rd::rd_kafka_event_DescribeTopics_result(event.0);
    if result.is_null() {
        return Err(AdminError::Unexpected("a result of another type".into()));
    }
    let mut n = 0usize;
    let descs = rd::rd_kafka_DescribeTopics_result_topics(result, &mut n);
    for i in 0..n {
        each(*descs.add(i));
    }
    Ok(())
}

/// The topic id of each of `topics` that exists, as the broker gives it
/// (base64, as Kafka's tools print it). A broker that gives no ids (an all-zero
/// id) or a topic that does not exist gives no entry.
pub fn topic_ids<C: ClientContext>(
    client: &Client<C>,
    topics: &[&str],
    timeout: Duration,
) -> Result<BTreeMap<String, String>, AdminError> {
    let mut out = BTreeMap::new();
    // SAFETY: each description is read during the callback only.
    unsafe {
        describe_topics(client, topics, false, timeout, |d| {
            if !rd::rd_kafka_TopicDescription_error(d).is_null() {
                return; // unknown topic, or not authorised to see it
            }
            let id = rd::rd_kafka_TopicDescription_topic_id(d);
            if id.is_null()
                || (rd::rd_kafka_Uuid_most_significant_bits(id) == 0
                    && rd::rd_kafka_Uuid_least_significant_bits(id) == 0)
            {
                return;
            }
            let name = text(rd::rd_kafka_TopicDescription_name(d));
            out.insert(name, text(rd::rd_kafka_Uuid_base64str(id)));
        })?;
    }
    Ok(out)
}
