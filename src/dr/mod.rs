//! The disaster-recovery cycle around `strait offsets failover`
//! (docs/disaster-recovery.md):
//!
//! - [`cutover`]: a planned cutover, once the source's producers stopped:
//!   everything replicated, the copy proved, every group failed over
//!   exactly;
//! - [`tail`]: after an unplanned failover, the records the failed cluster
//!   held but had not replicated: found, counted and, on request, copied.
//!
//! Failback itself is `strait offsets failback` (src/offsets.rs).

pub mod cutover;
pub mod tail;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use strait_common::config::{Config, Flow};
use strait_common::kafka::manual_consumer;
use strait_common::model::{NextOffset, TopicPartition};

/// How long one metadata, offsets or watermarks request may take:
/// generous, as the commands run by hand against clusters that may be slow
/// after an incident, and a person waits rather than a loop.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);
/// How long a record past an end offset is looked for: a broker holding
/// it answers in well under this; one that does not have it (a
/// transaction marker there) answers nothing.
pub(crate) const RECORD_PROBE: Duration = Duration::from_secs(2);

/// The flow's source partitions (every partition of every source topic the
/// flow's regexes select, or of `topic` only), sorted. `strait verify`'s
/// too.
pub(crate) fn source_partitions(
    config: &Config,
    flow: &Flow,
    topic: Option<&str>,
) -> anyhow::Result<Vec<TopicPartition>> {
    let clusters = config.clusters_of(flow);
    let source: BaseConsumer =
        manual_consumer(&clusters.source, &flow.commit_group(&config.deployment)).create()?;
    let md = source.fetch_metadata(topic, TIMEOUT)?;
    let mut out = Vec::new();
    for t in md.topics() {
        if t.error().is_some() || !flow.replicates(t.name()) {
            continue;
        }
        out.extend(
            t.partitions()
                .iter()
                .map(|p| TopicPartition::new(t.name(), p.id())),
        );
    }
    out.sort();
    Ok(out)
}

/// strait's committed progress of each partition: the next source offset
/// it will replicate. At-least-once flows commit it on the source under the
/// flow's commit group; exactly-once flows on the target, in their
/// transactions, by remote partition. Partitions never committed are
/// absent.
pub(crate) fn progress(
    config: &Config,
    flow: &Flow,
    partitions: &[TopicPartition],
) -> anyhow::Result<BTreeMap<TopicPartition, NextOffset>> {
    let clusters = config.clusters_of(flow);
    let group = flow.commit_group(&config.deployment);
    let on_target = flow.exactly_once.is_some();
    let cluster = if on_target {
        &clusters.target
    } else {
        &clusters.source
    };
    let name = |t: &str| {
        if on_target {
            flow.remote_topic(t)
        } else {
            t.to_owned()
        }
    };
    let consumer: BaseConsumer = manual_consumer(cluster, &group).create()?;
    let mut tpl = TopicPartitionList::new();
    for tp in partitions {
        tpl.add_partition(&name(&tp.topic), tp.partition);
    }
    // Keyed by the name committed under (the remote topic on the target).
    let by_name: BTreeMap<TopicPartition, &TopicPartition> = partitions
        .iter()
        .map(|tp| (TopicPartition::new(name(&tp.topic), tp.partition), tp))
        .collect();
    Ok(consumer
        .committed_offsets(tpl, TIMEOUT)?
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => by_name
                .get(&TopicPartition::new(e.topic(), e.partition()))
                .map(|&k| (k.clone(), NextOffset(o))),
            _ => None,
        })
        .collect())
}

/// (low, high) watermarks of each partition on `consumer`'s cluster.
pub(crate) fn watermarks(
    consumer: &BaseConsumer,
    partitions: &[TopicPartition],
) -> anyhow::Result<BTreeMap<TopicPartition, (i64, i64)>> {
    partitions
        .iter()
        .map(|tp| {
            let w = consumer
                .fetch_watermarks(&tp.topic, tp.partition, TIMEOUT)
                .map_err(|e| anyhow::anyhow!("end offset of {tp}: {e}"))?;
            Ok((tp.clone(), w))
        })
        .collect()
}

/// Prints a plain table: a header and aligned columns.
pub(crate) fn print_table(header: &[&str], rows: &[Vec<String>]) {
    print!("{}", crate::cli::table(header, rows.to_vec()));
}
