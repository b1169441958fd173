//! Heartbeats: a small record written to `heartbeats` on the source every
//! `heartbeat_interval` and replicated like data. Reading the replicated
//! copies on the target tells how old the newest one is: the end-to-end
//! latency of the flow while it works, and a growing age when it does not
//! (whatever the reason: source, strait or target).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use strait_common::access::{denials, Feature, Operation};
use strait_common::error_event;
use strait_common::formats::Heartbeat;
use strait_common::kafka::{client_config, manual_consumer, ms};
use strait_common::metrics as m;
use strait_common::policy::HEARTBEATS_TOPIC;
use strait_common::telemetry::ErrorKind;

use crate::status::{FlowHealth, StatusBoard};
use crate::FlowSpec;

/// How long a heartbeat may take to be written: one that cannot be within
/// this is replaced by a newer one, and its absence shows as age on the
/// target.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the last heartbeats may take to be written at shutdown: a
/// lost one is replaced by the next process's, so shutdown does not wait
/// long.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);
/// One poll of the replicated heartbeats: short, so shutdown is noticed
/// quickly.
const WATCH_POLL: Duration = Duration::from_millis(250);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Emits heartbeats and watches their replicated copies until `shutdown`.
/// Returns an error only if its Kafka clients cannot be created.
pub async fn run_heartbeats(
    spec: FlowSpec,
    status: StatusBoard,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Some(interval) = spec.flow.heartbeats else {
        return Ok(());
    };
    let spec = Arc::new(spec);
    let flow = spec.flow.name.clone();
    let producer: ThreadedProducer<Reports> = client_config(&spec.source)
        .set("acks", "all")
        .set("message.timeout.ms", ms(DELIVERY_TIMEOUT))
        // discovery creates the topic compacted with one partition; a
        // broker that auto-creates must not make it first with defaults.
        .set("allow.auto.create.topics", "false")
        .create_with_context(Reports {
            source: spec.flow.source.clone(),
            flow: flow.clone(),
        })
        .with_context(|| format!("flow {flow}: heartbeat producer"))?;
    let remote = spec.flow.remote_topic(HEARTBEATS_TOPIC);
    let group = spec.flow.reader_group(&spec.deployment, "heartbeats");
    let consumer: BaseConsumer = manual_consumer(&spec.target, &group)
        .create()
        .with_context(|| format!("flow {flow}: heartbeat consumer"))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&remote, 0, Offset::End)?;
    consumer.assign(&tpl)?;

    let watch_spec = spec.clone();
    let watch_stop = shutdown.clone();
    let watcher =
        tokio::task::spawn_blocking(move || watch(&watch_spec, &consumer, &status, &watch_stop));

    let key = Heartbeat {
        source_alias: spec.flow.source.clone(),
        target_alias: spec.flow.target.clone(),
        timestamp_ms: 0,
    }
    .encode_key()?;
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => break,
        }
        let value = Heartbeat {
            source_alias: spec.flow.source.clone(),
            target_alias: spec.flow.target.clone(),
            timestamp_ms: now_ms(),
        }
        .encode_value();
        let record = BaseRecord::to(HEARTBEATS_TOPIC)
            .partition(0)
            .key(&key)
            .payload(&value);
        if let Err((e, _)) = producer.send(record) {
            if denials::is_denied(&e) {
                denials::refused(
                    &spec.flow.source,
                    &flow,
                    Feature::Heartbeats,
                    Operation::Write,
                    denials::topic(HEARTBEATS_TOPIC),
                    &e.to_string(),
                );
                error_event!(debug, flow, ErrorKind::Heartbeat, error = %e, "heartbeat not sent");
            } else {
                error_event!(warn, flow, ErrorKind::Heartbeat, error = %e, "heartbeat not sent");
            }
        }
    }
    let _ = producer.flush(SHUTDOWN_FLUSH);
    let _ = watcher.await;
    Ok(())
}

/// The heartbeat producer's delivery reports: a refused write is reported
/// once as a missing permission, and cleared by the next one delivered.
struct Reports {
    source: String,
    flow: String,
}

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => denials::allowed_topic(&self.source, Operation::Write, HEARTBEATS_TOPIC),
            Err((e, _)) if denials::is_denied(e) => {
                denials::refused(
                    &self.source,
                    &self.flow,
                    Feature::Heartbeats,
                    Operation::Write,
                    denials::topic(HEARTBEATS_TOPIC),
                    &e.to_string(),
                );
            }
            Err((e, _)) => debug!(flow = %self.flow, error = %e, "heartbeat not delivered"),
        }
    }
}

/// Reads the replicated heartbeats of this flow's source and publishes the
/// newest one's age and its replication latency.
fn watch(
    spec: &FlowSpec,
    consumer: &BaseConsumer,
    status: &StatusBoard,
    shutdown: &CancellationToken,
) {
    let flow = spec.flow.name.clone();
    let age = metrics::gauge!(m::HEARTBEAT_AGE, "flow" => flow.clone());
    let latency = metrics::gauge!(m::HEARTBEAT_LATENCY, "flow" => flow.clone());
    let mut newest: Option<i64> = None;
    let mut health = FlowHealth::default();
    while !shutdown.is_cancelled() {
        if let Some(result) = consumer.poll(WATCH_POLL) {
            match result {
                Ok(msg) => {
                    denials::allowed_topic(&spec.flow.target, Operation::Read, msg.topic());
                    let (Some(k), Some(v)) = (msg.key(), msg.payload()) else {
                        continue;
                    };
                    match Heartbeat::decode(k, v) {
                        Ok(hb) if hb.source_alias == spec.flow.source => {
                            let l = (now_ms() - hb.timestamp_ms).max(0) as f64 / 1000.0;
                            latency.set(l);
                            health.heartbeat_latency_seconds = Some(l);
                            newest =
                                Some(newest.map_or(hb.timestamp_ms, |n| n.max(hb.timestamp_ms)));
                        }
                        Ok(_) => {} // a heartbeat of another cluster, passing through
                        Err(e) => debug!(flow = %flow, error = %e, "undecodable heartbeat ignored"),
                    }
                }
                // The remote topic may not exist yet; librdkafka retries.
                Err(e) if denials::is_denied(&e) => {
                    let remote = spec.flow.remote_topic(HEARTBEATS_TOPIC);
                    denials::refused(
                        &spec.flow.target,
                        &flow,
                        Feature::Heartbeats,
                        Operation::Read,
                        denials::topic(&remote),
                        &e.to_string(),
                    );
                }
                Err(e) => debug!(flow = %flow, error = %e, "heartbeat watch"),
            }
        }
        if let Some(ts) = newest {
            let a = (now_ms() - ts).max(0) as f64 / 1000.0;
            age.set(a);
            health.heartbeat_age_seconds = Some(a);
            status.set_health(&flow, health);
        }
    }
}
