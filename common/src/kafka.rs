//! librdkafka client configuration: the cluster's bootstrap servers and
//! passthrough settings, plus the settings strait owns for each role.

use rdkafka::ClientConfig;

use crate::config::ClusterConfig;

/// A client config for `cluster` carrying its passthrough settings.
pub fn client_config(cluster: &ClusterConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cluster.bootstrap);
    // librdkafka backs off up to 10 s between reconnects; after a broker or
    // a network path comes back, that is up to 10 s more of no replication
    // (the chaos suite's connection-resets: 10-20 s stalls, 2 s with this).
    // 1 s is the Java client's default. A cluster's `kafka` table overrides it.
    c.set("reconnect.backoff.max.ms", "1000");
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
