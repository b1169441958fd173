//! librdkafka client configuration: the cluster's bootstrap servers and
//! passthrough settings, plus the settings strait owns for each role.

use std::time::Duration;

use rdkafka::ClientConfig;

use crate::config::ClusterConfig;

/// The longest pause between reconnects: the Java client's default.
/// librdkafka's own (10 s) is up to 10 s more of no replication after a
/// broker or a network path comes back (the chaos suite's connection
/// resets: 10-20 s stalls, 2 s with this).
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// One poll of a probe client: short, so the caller's `wait` bounds the
/// whole check closely.
const PROBE_POLL: Duration = Duration::from_millis(100);
/// One metadata request of the login check: a few fit in the caller's
/// `wait`, and a reachable broker answers in far less.
const PROBE_METADATA: Duration = Duration::from_secs(1);

/// `d` as librdkafka's `*.ms` settings take it.
pub fn ms(d: Duration) -> String {
    d.as_millis().to_string()
}

/// A client config for `cluster` carrying its passthrough settings.
pub fn client_config(cluster: &ClusterConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cluster.bootstrap);
    // A cluster's `kafka` table overrides it.
    c.set("reconnect.backoff.max.ms", ms(RECONNECT_BACKOFF_MAX));
    for (k, v) in &cluster.kafka {
        c.set(k, v.to_string());
    }
    c
}

/// A consumer of `cluster` that reads with manual assignment and never
/// commits or stores offsets on its own; `group` only names where commits
/// go (or, for readers that never commit, whose commits it may read).
pub fn manual_consumer(cluster: &ClusterConfig, group: &str) -> ClientConfig {
    let mut c = client_config(cluster);
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false");
    c
}

/// Producer settings that make "nothing lost, order kept" hold: idempotence
/// (acks=all, ordered per partition, retries without duplicates) and no
/// delivery timeout, so a record is never given up on because the target was
/// away for a while; only a permanent refusal fails a delivery.
pub fn reliable_producer(cluster: &ClusterConfig) -> ClientConfig {
    let mut c = client_config(cluster);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "0")
        // strait creates remote topics itself, with their source's
        // partition count; a broker that auto-creates topics must never
        // make one (with its default count) for a record in flight.
        .set("allow.auto.create.topics", "false");
    c
}

/// Whether `cluster` holds a record of `topic`/`partition` at `offset` or
/// after it. For telling a position past a partition's end from an end
/// offset that counts batches, not records (some brokers'): asking for the
/// record before a position settles it. Waits at most `wait`.
pub fn record_exists(
    cluster: &ClusterConfig,
    topic: &str,
    partition: i32,
    offset: i64,
    wait: std::time::Duration,
) -> bool {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Message, Offset, TopicPartitionList};

    /// The probe's out-of-range answer is an expected outcome, not an
    /// error to log.
    struct Quiet;
    impl rdkafka::ClientContext for Quiet {
        fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
            tracing::debug!(error = %error, reason, "record probe");
        }
    }
    impl rdkafka::consumer::ConsumerContext for Quiet {}

    if offset < 0 {
        return false;
    }
    // No group.id: the probe never commits, and a group would need its
    // own ACL (librdkafka looks up a group's coordinator even for a
    // consumer that only assigns).
    let probe: Result<BaseConsumer<Quiet>, _> = client_config(cluster)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "error")
        .create_with_context(Quiet);
    let Ok(probe) = probe else { return false };
    let mut tpl = TopicPartitionList::new();
    if tpl
        .add_partition_offset(topic, partition, Offset::Offset(offset))
        .is_err()
        || probe.assign(&tpl).is_err()
    {
        return false;
    }
    let deadline = std::time::Instant::now() + wait;
    while std::time::Instant::now() < deadline {
        match probe.poll(PROBE_POLL) {
            Some(Ok(m)) => return m.offset() >= offset,
            Some(Err(_)) => return false,
            None => {}
        }
    }
    false
}

/// Why `cluster` refuses strait's clients for good, if it does: a SASL
/// login refused (a wrong password, an unknown user or mechanism) or a TLS
/// handshake that failed (an unknown CA, an expired certificate, a client
/// certificate missing or refused). Asks for metadata until it is answered
/// or `wait` passes; a cluster that is only unreachable is not refused
/// (strait waits for it), so that gives `None` too.
pub fn login_refused(cluster: &ClusterConfig, wait: std::time::Duration) -> Option<String> {
    use std::sync::Mutex;
    use std::time::Instant;

    use rdkafka::error::{KafkaError, RDKafkaErrorCode as Code};
    use rdkafka::producer::{BaseProducer, Producer as _};
    use rdkafka::ClientContext;

    /// Keeps the first authentication or TLS error librdkafka reports.
    #[derive(Default)]
    struct Refusal(Mutex<Option<String>>);
    impl ClientContext for Refusal {
        fn error(&self, error: KafkaError, reason: &str) {
            let code = error.rdkafka_error_code();
            let security = matches!(code, Some(Code::Authentication | Code::SSL))
                // A client certificate the broker wants and did not get
                // (TLS 1.3 says so after the handshake, as an alert).
                || reason.contains("certificate required")
                || reason.contains("alert bad certificate")
                || reason.contains("alert unknown ca")
                || reason.contains("alert certificate expired")
                || reason.contains("certificate unknown");
            if security {
                let mut r = self.0.lock().unwrap();
                if r.is_none() {
                    *r = Some(format!("{} ({reason})", explain(code, reason)));
                }
            } else {
                tracing::debug!(error = %error, reason, "login check");
            }
        }
    }
    impl rdkafka::producer::ProducerContext for Refusal {
        type DeliveryOpaque = ();
        fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
    }

    let p: BaseProducer<Refusal> =
        match client_config(cluster).create_with_context(Refusal::default()) {
            Ok(p) => p,
            // A setting librdkafka refuses (a CA file that is not there, say).
            Err(e) => return Some(e.to_string()),
        };
    let deadline = Instant::now() + wait;
    loop {
        p.poll(PROBE_POLL); // serves the error callbacks
        let answered = p.client().fetch_metadata(None, PROBE_METADATA).is_ok();
        let refused = p.context().0.lock().unwrap().clone();
        if refused.is_some() && !answered {
            return refused;
        }
        if answered || Instant::now() >= deadline {
            return None;
        }
    }
}

/// What a login refusal means, in the operator's terms.
fn explain(code: Option<rdkafka::error::RDKafkaErrorCode>, reason: &str) -> &'static str {
    if code == Some(rdkafka::error::RDKafkaErrorCode::Authentication) {
        "the SASL login was refused: a wrong user or password, or a mechanism the broker does not enable"
    } else if reason.contains("certificate verify failed") {
        "strait does not trust the broker's certificate: ssl.ca.location is not the CA that signed it, or it has expired"
    } else if reason.contains("alert") {
        "the broker refused strait's client certificate: none given, expired, or not signed by a CA the broker trusts"
    } else {
        "the TLS handshake failed"
    }
}
