//! IncrementalAlterConfigs for topics, which rdkafka's admin API lacks,
//! bound to librdkafka in this one module. Every handle it creates is
//! released by a guard, on every path; nothing librdkafka owns escapes.
//! Blocking: call it from a blocking thread.

use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::client::{Client, ClientContext};
use thiserror::Error;

/// One change to a topic config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigOp {
    Set(String, String),
    /// Back to the broker's default.
    Delete(String),
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AlterError {
    #[error("invalid name or value (contains NUL): {0}")]
    Nul(String),
    #[error("config {name}: {message}")]
    Rejected { name: String, message: String },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Failed(String),
}

struct Guard<T>(*mut T, unsafe extern "C" fn(*mut T));

impl<T> Drop for Guard<T> {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer came from the matching librdkafka
            // constructor and is released exactly once, here.
            unsafe { (self.1)(self.0) }
        }
    }
}

fn cstring(s: &str) -> Result<CString, AlterError> {
    CString::new(s).map_err(|_| AlterError::Nul(s.to_owned()))
}

/// # Safety
/// `p` is null or a NUL-terminated string that outlives the call.
unsafe fn text(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// Applies `ops` to `topic` with IncrementalAlterConfigs: only the named
/// configs change, unlike the legacy AlterConfigs, which replaces them all.
pub fn incremental_alter_topic<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    ops: &[ConfigOp],
    timeout: Duration,
) -> Result<(), AlterError> {
    if ops.is_empty() {
        return Ok(());
    }
    let name = cstring(topic)?;
    let rk = client.native_ptr();
    // SAFETY: `rk` is a live handle owned by `client` for this whole call;
    // every object created below is released by its guard; librdkafka
    // copies the resource array and options it is given.
    unsafe {
        let resource = Guard(
            rd::rd_kafka_ConfigResource_new(
                rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
                name.as_ptr(),
            ),
            rd::rd_kafka_ConfigResource_destroy,
        );
        if resource.0.is_null() {
            return Err(AlterError::Failed("cannot create a config resource".into()));
        }
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
            if !err.0.is_null() {
                return Err(AlterError::Rejected {
                    name: key.clone(),
                    message: text(rd::rd_kafka_error_string(err.0)),
                });
            }
        }
        let options = Guard(
            rd::rd_kafka_AdminOptions_new(
                rk,
                rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_INCREMENTALALTERCONFIGS,
            ),
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
        let mut resources = [resource.0];
        rd::rd_kafka_IncrementalAlterConfigs(rk, resources.as_mut_ptr(), 1, options.0, queue.0);
        let wait = timeout + Duration::from_secs(1);
        let event = Guard(
            rd::rd_kafka_queue_poll(queue.0, wait.as_millis().min(i32::MAX as u128) as i32),
            rd::rd_kafka_event_destroy,
        );
        if event.0.is_null() {
            return Err(AlterError::Timeout(wait));
        }
        if rd::rd_kafka_event_error(event.0) != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        {
            return Err(AlterError::Failed(text(rd::rd_kafka_event_error_string(
                event.0,
            ))));
        }
        let result = rd::rd_kafka_event_IncrementalAlterConfigs_result(event.0);
        if result.is_null() {
            return Err(AlterError::Failed("unexpected event".into()));
        }
        let mut count = 0usize;
        let list = rd::rd_kafka_IncrementalAlterConfigs_result_resources(result, &mut count);
        for i in 0..count {
            let r = *list.add(i);
            if rd::rd_kafka_ConfigResource_error(r)
                != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
            {
                return Err(AlterError::Rejected {
                    name: topic.to_owned(),
                    message: text(rd::rd_kafka_ConfigResource_error_string(r)),
                });
            }
        }
        Ok(())
    }
}
