//! DescribeConfigs of one topic, keeping the topic's own error: rdkafka's
//! `describe_configs` drops each resource's error (its future reads only
//! the entries), so a refused topic reads there as one without configs.

use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::client::{Client, ClientContext};

use super::{cstring, request, text, AdminError, Guard};

/// A topic's config resource, for DescribeConfigs or
/// IncrementalAlterConfigs; released by its guard.
pub fn topic_resource(topic: &str) -> Result<Guard<rd::rd_kafka_ConfigResource_t>, AdminError> {
    let name = cstring(topic)?;
    // SAFETY: librdkafka copies the name; the resource is released by the
    // guard.
    let resource = unsafe {
        Guard(
            rd::rd_kafka_ConfigResource_new(
                rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
                name.as_ptr(),
            ),
            rd::rd_kafka_ConfigResource_destroy,
        )
    };
    if resource.0.is_null() {
        return Err(AdminError::Unexpected(
            "cannot create a config resource".into(),
        ));
    }
    Ok(resource)
}

/// One config of a topic, as DescribeConfigs gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfigEntry {
    pub name: String,
    pub value: Option<String>,
    pub is_default: bool,
    /// Set on the topic itself (a dynamic topic config), or of an unknown
    /// source (old brokers).
    pub topic_level: bool,
}

/// The configs of `topic`, or the error the broker gave for it. rdkafka's
/// `describe_configs` drops each resource's error (its future only reads
/// the entries), so a refused topic reads there as one without configs;
/// librdkafka keeps it (`rd_kafka_ConfigResource_error`), read here.
pub fn describe_topic_configs<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<TopicConfigEntry>, AdminError> {
    let resource = topic_resource(topic)?;
    // SAFETY: the resource is released by its guard (librdkafka copies the
    // array it is given); the result and its entries live as long as the
    // event, and are read before it is released.
    unsafe {
        let mut resources = [resource.0];
        let event = request(
            client,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS,
            timeout,
            |rk, o, q| rd::rd_kafka_DescribeConfigs(rk, resources.as_mut_ptr(), 1, o, q),
        )?;
        let result = rd::rd_kafka_event_DescribeConfigs_result(event.0);
        if result.is_null() {
            return Err(AdminError::Unexpected("a result of another type".into()));
        }
        let mut n = 0usize;
        let list = rd::rd_kafka_DescribeConfigs_result_resources(result, &mut n);
        if n != 1 {
            return Err(AdminError::Unexpected(format!(
                "{n} results describing {topic}"
            )));
        }
        let r = *list;
        let err = rd::rd_kafka_ConfigResource_error(r);
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(AdminError::Rejected {
                name: topic.to_owned(),
                message: text(rd::rd_kafka_ConfigResource_error_string(r)),
                code: Some(err.into()),
            });
        }
        let mut k = 0usize;
        let entries = rd::rd_kafka_ConfigResource_configs(r, &mut k);
        Ok((0..k)
            .map(|i| {
                let e = *entries.add(i);
                let value = rd::rd_kafka_ConfigEntry_value(e);
                TopicConfigEntry {
                    name: text(rd::rd_kafka_ConfigEntry_name(e)),
                    value: (!value.is_null()).then(|| text(value)),
                    is_default: rd::rd_kafka_ConfigEntry_is_default(e) != 0,
                    topic_level: matches!(
                        rd::rd_kafka_ConfigEntry_source(e),
                        rd::rd_kafka_ConfigSource_t::RD_KAFKA_CONFIG_SOURCE_DYNAMIC_TOPIC_CONFIG
                            | rd::rd_kafka_ConfigSource_t::RD_KAFKA_CONFIG_SOURCE_UNKNOWN_CONFIG
                    ),
                }
            })
            .collect())
    }
}
