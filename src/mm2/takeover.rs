//! `strait takeover-mm2`: strait continues where a stopped MirrorMaker 2
//! left off, on the same remote topics, without re-copying or skipping.
//!
//! MirrorMaker 2 keeps its progress as Kafka Connect source offsets, in
//! the offsets topic of its Connect worker: `mm2-offsets.{source}.internal`
//! on the target cluster (`MirrorMakerConfig.workerConfig`). A record's key
//! is `["MirrorSourceConnector",{"cluster":"us","partition":0,"topic":"orders"}]`
//! and its value `{"offset":1234}` (null: deleted). The offset is that of
//! the last source record MirrorMaker 2 replicated; on restart it seeks to
//! `offset + 1` (`MirrorSourceTask.initializeConsumer`; a negative offset
//! means none). strait stores "the next offset to replicate" in its
//! progress group, so it commits `offset + 1` there.
//!
//! The offset-syncs and checkpoints topics have the same names and formats
//! in both, so they are reused as they are: the checkpoint service rebuilds
//! "never backwards" from what MirrorMaker 2 wrote, and consumers that
//! already failed over keep their positions on the target.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use strait_common::config::{Config, Flow};
use strait_common::kafka::manual_consumer;
use strait_common::model::{NextOffset, TopicPartition};

/// How long one request, or reading the offsets topic to its end, may take:
/// a command run by hand, against a cluster that may be slow.
const TIMEOUT: Duration = Duration::from_secs(30);
/// How long the record at MirrorMaker 2's last offset is looked for past
/// an end offset that counts batches: a broker holding it answers in far
/// less.
const RECORD_PROBE: Duration = Duration::from_secs(5);
/// One poll once every end offset is passed: only what is already fetched
/// is wanted, so the wait is short.
const DRAIN_POLL: Duration = Duration::from_millis(100);
/// One poll while ends are still ahead: short, so the deadline is checked
/// often.
const READ_POLL: Duration = Duration::from_millis(200);

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this flow [default: every flow of the config].
    #[arg(long)]
    flow: Option<String>,
    /// MirrorMaker 2's Connect offsets topic [default: mm2-offsets.{source}.internal].
    #[arg(long)]
    offsets_topic: Option<String>,
    /// The cluster alias that holds the offsets topic [default: the flow's target].
    #[arg(long)]
    offsets_cluster: Option<String>,
    /// The source cluster's alias in MirrorMaker 2's file [default: the flow's source].
    #[arg(long)]
    mm2_alias: Option<String>,
    /// Replace progress strait already has (by default a partition strait
    /// has replicated keeps strait's own position).
    #[arg(long)]
    force: bool,
    /// Read and print everything, write nothing.
    #[arg(long)]
    dry_run: bool,
}

/// A source partition as MirrorMaker 2 names it in its offsets.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SourcePartition {
    pub cluster: String,
    pub topic: String,
    pub partition: i32,
}

/// One record of the offsets topic: whose progress, and the last offset
/// replicated (`None`: the record deletes it).
#[derive(Debug, PartialEq, Eq)]
pub struct OffsetRecord {
    pub connector: String,
    pub partition: SourcePartition,
    pub last_replicated: Option<i64>,
}

/// Decodes one record of a Connect offsets topic. An error says why the
/// record is not a MirrorMaker 2 source offset.
pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<OffsetRecord, String> {
    let key: Value = serde_json::from_slice(key).map_err(|e| format!("key is not JSON: {e}"))?;
    let [connector, partition] = key.as_array().map(Vec::as_slice).unwrap_or_default() else {
        return Err("key is not [connector, partition]".into());
    };
    let connector = connector
        .as_str()
        .ok_or("key's connector is not a string")?
        .to_owned();
    let field = |name: &str| partition.get(name).ok_or(format!("key has no {name:?}"));
    let cluster = field("cluster")?
        .as_str()
        .ok_or("key's cluster is not a string")?;
    let topic = field("topic")?
        .as_str()
        .ok_or("key's topic is not a string")?;
    let part = field("partition")?
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .filter(|p| *p >= 0)
        .ok_or("key's partition is not a partition number")?;
    let last_replicated = match value {
        None => None,
        Some(v) => {
            let v: Value =
                serde_json::from_slice(v).map_err(|e| format!("value is not JSON: {e}"))?;
            if v.is_null() {
                None
            } else {
                Some(
                    v.get("offset")
                        .and_then(Value::as_i64)
                        .ok_or("value has no integer \"offset\"")?,
                )
            }
        }
    };
    Ok(OffsetRecord {
        connector,
        partition: SourcePartition {
            cluster: cluster.to_owned(),
            topic: topic.to_owned(),
            partition: part,
        },
        last_replicated,
    })
}

/// The connector a Connect offsets key names (its first element), if the
/// key is a JSON array that starts with a string.
fn connector_name(key: &[u8]) -> Option<String> {
    let key: Value = serde_json::from_slice(key).ok()?;
    key.as_array()?.first()?.as_str().map(str::to_owned)
}

/// The source offsets of one connector: the last record of each key wins,
/// as Connect reads them; a deletion removes the key.
#[derive(Debug, Default)]
pub struct Offsets {
    pub last: BTreeMap<SourcePartition, i64>,
    pub undecodable: usize,
    pub first_error: Option<String>,
}

impl Offsets {
    pub fn apply(&mut self, connector: &str, key: Option<&[u8]>, value: Option<&[u8]>) {
        // MirrorMaker 2's other connectors keep their offsets in the same
        // topic under partition keys of their own (the checkpoint
        // connector's `{"group","topic","partition"}`, the heartbeat
        // connector's `{"sourceClusterAlias","targetClusterAlias"}`): they
        // are not replication progress, and not undecodable either.
        if key
            .and_then(connector_name)
            .is_some_and(|name| name != connector)
        {
            return;
        }
        let decoded = key
            .ok_or_else(|| "record without a key".to_owned())
            .and_then(|k| decode(k, value));
        match decoded {
            Ok(r) if r.connector == connector => match r.last_replicated {
                Some(o) => {
                    self.last.insert(r.partition, o);
                }
                None => {
                    self.last.remove(&r.partition);
                }
            },
            Ok(_) => {}
            Err(e) => {
                self.undecodable += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }
}

/// What happens to one partition.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    /// strait starts here (MirrorMaker 2's last offset + 1).
    Start(i64),
    /// strait has replicated this partition itself; its position stays.
    KeepStrait(i64),
    /// MirrorMaker 2's position is past the source's end: the topic was
    /// re-created since, or the offsets belong to another cluster.
    PastEnd { start: i64, high: i64 },
}

/// The decision for one partition, pure: MirrorMaker 2's last offset, the
/// source partition's watermarks and strait's own committed position.
fn decide(last: i64, (_low, high): (i64, i64), strait: Option<i64>, force: bool) -> Action {
    let start = last + 1;
    match strait {
        Some(s) if !force => Action::KeepStrait(s),
        _ if start > high => Action::PastEnd { start, high },
        _ => Action::Start(start),
    }
}

pub fn run(config: &Config, args: &Args) -> ExitCode {
    if let Some(name) = &args.flow {
        if config.flow(name).is_none() {
            eprintln!("strait: no flow named {name:?}");
            return ExitCode::from(2);
        }
    }
    let mut failed = false;
    println!("FLOW  TOPIC  PARTITION  MM2_LAST  START  ACTION");
    for flow in &config.flows {
        if args.flow.as_ref().is_some_and(|n| *n != flow.name) {
            continue;
        }
        if let Err(e) = take_over(config, flow, args) {
            eprintln!("strait: flow {}: {e:#}", flow.name);
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn take_over(config: &Config, flow: &Flow, args: &Args) -> anyhow::Result<()> {
    let clusters = config.clusters_of(flow);
    let offsets_cluster = match &args.offsets_cluster {
        Some(alias) => config
            .clusters
            .get(alias)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("--offsets-cluster: no cluster named {alias:?}"))?,
        None => clusters.target.clone(),
    };
    let mm2_alias = args
        .mm2_alias
        .clone()
        .unwrap_or_else(|| flow.source.clone());
    let topic = args
        .offsets_topic
        .clone()
        .unwrap_or_else(|| format!("mm2-offsets.{mm2_alias}.internal"));
    let offsets = read_offsets(&offsets_cluster, &topic)?;
    if offsets.undecodable > 0 {
        eprintln!(
            "warning: {topic}: {} record(s) are not MirrorMaker 2 source offsets and were ignored (first: {})",
            offsets.undecodable,
            offsets.first_error.as_deref().unwrap_or("")
        );
    }
    let mine: Vec<(&SourcePartition, i64)> = offsets
        .last
        .iter()
        .filter(|(p, _)| p.cluster == mm2_alias)
        .map(|(p, o)| (p, *o))
        .collect();
    if mine.is_empty() {
        anyhow::bail!(
            "{topic} has no MirrorSourceConnector offsets for cluster {mm2_alias:?} \
             (is it the right topic and alias? see --offsets-topic, --mm2-alias)"
        );
    }

    let group = flow.commit_group(&config.deployment);
    let source: BaseConsumer = manual_consumer(&clusters.source, &group).create()?;
    let mut ours = TopicPartitionList::new();
    for (p, _) in &mine {
        ours.add_partition(&p.topic, p.partition);
    }
    let strait_at = positions(source.committed_offsets(ours, TIMEOUT)?);
    // Exactly-once flows keep their position on the target, by remote partition.
    let target_at = if flow.exactly_once.is_some() {
        let target: BaseConsumer = manual_consumer(&clusters.target, &group).create()?;
        let mut remote = TopicPartitionList::new();
        for (p, _) in &mine {
            remote.add_partition(&flow.remote_topic(&p.topic), p.partition);
        }
        positions(target.committed_offsets(remote, TIMEOUT)?)
    } else {
        BTreeMap::new()
    };

    let mut commit = TopicPartitionList::new();
    let mut problems = 0;
    for (p, last) in mine {
        let cells = format!("{}  {}  {}  {last}", flow.name, p.topic, p.partition);
        if !flow.replicates(&p.topic) {
            println!("{cells}  -  skipped: the flow does not replicate this topic");
            continue;
        }
        if last < 0 {
            println!("{cells}  -  skipped: MirrorMaker 2 had replicated nothing");
            continue;
        }
        let (low, mut high) = source.fetch_watermarks(&p.topic, p.partition, TIMEOUT)?;
        // An end offset that counts batches (some brokers) can be short of
        // the last record: past it, ask for that record itself.
        if last >= high
            && strait_common::kafka::record_exists(
                &clusters.source,
                &p.topic,
                p.partition,
                last,
                RECORD_PROBE,
            )
        {
            high = last + 1;
        }
        let strait = strait_at
            .get(&TopicPartition::new(p.topic.clone(), p.partition))
            .or_else(|| {
                target_at.get(&TopicPartition::new(
                    flow.remote_topic(&p.topic),
                    p.partition,
                ))
            })
            .map(|o| o.0);
        match decide(last, (low, high), strait, args.force) {
            Action::Start(start) => {
                let gone = if start < low {
                    format!(" (offsets {start}..{low} are gone from the source: retention)")
                } else {
                    String::new()
                };
                println!("{cells}  {start}  start here{gone}");
                commit.add_partition_offset(&p.topic, p.partition, Offset::Offset(start))?;
            }
            Action::KeepStrait(s) => {
                println!("{cells}  {s}  kept: strait's own position (--force replaces it)");
            }
            Action::PastEnd { start, high } => {
                problems += 1;
                println!(
                    "{cells}  -  refused: {start} is past the source's end ({high}); \
                     re-created topic or wrong cluster?"
                );
            }
        }
    }
    if !args.dry_run && commit.count() > 0 {
        source.commit(&commit, CommitMode::Sync).map_err(|e| {
            anyhow::anyhow!("committing to {group}: {e} (is strait running? stop it first)")
        })?;
        eprintln!(
            "flow {}: {} partition(s) committed to {group} on {}",
            flow.name,
            commit.count(),
            flow.source
        );
    } else if args.dry_run {
        eprintln!("flow {}: dry run, nothing written", flow.name);
    }
    if problems > 0 {
        anyhow::bail!("{problems} partition(s) refused");
    }
    Ok(())
}

fn positions(tpl: TopicPartitionList) -> BTreeMap<TopicPartition, NextOffset> {
    tpl.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) if o >= 0 => {
                Some((TopicPartition::new(e.topic(), e.partition()), NextOffset(o)))
            }
            _ => None,
        })
        .collect()
}

/// Reads the whole offsets topic, to the end it had when reading began.
/// Some brokers' end offsets count batches, not records: once every end is
/// passed, what is already fetched (the rest of the last batch) is read too.
fn read_offsets(
    cluster: &strait_common::config::ClusterConfig,
    topic: &str,
) -> anyhow::Result<Offsets> {
    let consumer: BaseConsumer = manual_consumer(cluster, "strait-takeover-mm2").create()?;
    let md = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
    let parts: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if parts.is_empty() {
        anyhow::bail!("offsets topic {topic} not found");
    }
    let mut tpl = TopicPartitionList::new();
    // Per partition: the end offset captured first, and the position read.
    let mut left: BTreeMap<i32, i64> = BTreeMap::new(); // the end captured first
    for p in &parts {
        let (low, high) = consumer.fetch_watermarks(topic, *p, TIMEOUT)?;
        if high > low {
            left.insert(*p, high);
            tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
        }
    }
    let mut offsets = Offsets::default();
    if left.is_empty() {
        return Ok(offsets);
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + TIMEOUT;
    let mut drained = false;
    while !drained {
        if left.is_empty() {
            // Every end passed: take what arrives without waiting long.
            match consumer.poll(DRAIN_POLL) {
                Some(Ok(m)) => offsets.apply("MirrorSourceConnector", m.key(), m.payload()),
                Some(Err(e)) => anyhow::bail!("reading {topic}: {e}"),
                None => drained = true,
            }
            continue;
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "reading {topic}: partitions {:?} not read to their end in {TIMEOUT:?}",
                left.keys()
            );
        }
        match consumer.poll(READ_POLL) {
            Some(Ok(m)) => {
                offsets.apply("MirrorSourceConnector", m.key(), m.payload());
                if left
                    .get(&m.partition())
                    .is_some_and(|end| m.offset() + 1 >= *end)
                {
                    left.remove(&m.partition());
                }
            }
            Some(Err(e)) => anyhow::bail!("reading {topic}: {e}"),
            None => {}
        }
    }
    Ok(offsets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: &[u8] =
        br#"["MirrorSourceConnector",{"cluster":"us","partition":3,"topic":"orders"}]"#;

    #[test]
    fn connect_offsets_decode_as_mirrormaker_2_writes_them() {
        let r = decode(KEY, Some(br#"{"offset":1234}"#)).unwrap();
        assert_eq!(r.connector, "MirrorSourceConnector");
        assert_eq!(
            r.partition,
            SourcePartition {
                cluster: "us".into(),
                topic: "orders".into(),
                partition: 3
            }
        );
        assert_eq!(r.last_replicated, Some(1234));
        // Newer releases add fields beside the offset; they are ignored.
        let r = decode(KEY, Some(br#"{"offset":7,"topicId":"abc"}"#)).unwrap();
        assert_eq!(r.last_replicated, Some(7));
        assert_eq!(decode(KEY, None).unwrap().last_replicated, None);
        assert_eq!(decode(KEY, Some(b"null")).unwrap().last_replicated, None);
        for (key, value, why) in [
            (&b"nope"[..], Some(&b"{}"[..]), "key is not JSON"),
            (br#"["a"]"#, None, "not [connector, partition]"),
            (
                br#"["a",{"cluster":"us","topic":"t"}]"#,
                None,
                "no \"partition\"",
            ),
            (
                br#"["a",{"cluster":"us","topic":"t","partition":-1}]"#,
                None,
                "not a partition number",
            ),
            (KEY, Some(br#"{"offsets":1}"#), "no integer \"offset\""),
        ] {
            let e = decode(key, value).unwrap_err();
            assert!(e.contains(why), "{e} / {why}");
        }
    }

    #[test]
    fn the_last_record_of_a_key_wins_and_deletions_remove_it() {
        let mut o = Offsets::default();
        o.apply(
            "MirrorSourceConnector",
            Some(KEY),
            Some(br#"{"offset":10}"#),
        );
        o.apply(
            "MirrorSourceConnector",
            Some(KEY),
            Some(br#"{"offset":20}"#),
        );
        o.apply(
            "MirrorCheckpointConnector",
            Some(KEY),
            Some(br#"{"offset":99}"#),
        );
        o.apply("MirrorSourceConnector", None, Some(b"{}"));
        let p = SourcePartition {
            cluster: "us".into(),
            topic: "orders".into(),
            partition: 3,
        };
        assert_eq!(o.last.get(&p), Some(&20));
        assert_eq!(o.undecodable, 1);
        o.apply("MirrorSourceConnector", Some(KEY), None);
        assert!(o.last.is_empty());
    }

    /// The records a real MirrorMaker 2 (Apache Kafka 4.3.1, dedicated
    /// mode) wrote to `mm2-offsets.up1.internal` beside its source offsets:
    /// its checkpoint and heartbeat connectors' own offsets.
    #[test]
    fn the_other_connectors_offsets_are_ignored_not_counted_as_undecodable() {
        let mut o = Offsets::default();
        for (key, value) in [
            (
                &br#"["MirrorSourceConnector",{"cluster":"up1","partition":0,"topic":"try1"}]"#[..],
                &br#"{"offset":999}"#[..],
            ),
            (
                br#"["MirrorHeartbeatConnector",{"sourceClusterAlias":"up1","targetClusterAlias":"dn1"}]"#,
                br#"{"offset":0}"#,
            ),
            (
                br#"["MirrorCheckpointConnector",{"partition":1,"topic":"up1.try1","group":"g1"}]"#,
                br#"{"offset":0}"#,
            ),
        ] {
            o.apply("MirrorSourceConnector", Some(key), Some(value));
        }
        assert_eq!(o.undecodable, 0, "{:?}", o.first_error);
        assert_eq!(o.last.len(), 1);
        assert_eq!(o.last.values().next(), Some(&999));
        // A source connector's record that does not decode still counts.
        o.apply(
            "MirrorSourceConnector",
            Some(br#"["MirrorSourceConnector",{"topic":"t"}]"#),
            Some(b"{}"),
        );
        assert_eq!(o.undecodable, 1);
    }

    #[test]
    fn strait_starts_after_the_last_replicated_record_unless_it_has_its_own_position() {
        assert_eq!(decide(99, (0, 150), None, false), Action::Start(100));
        assert_eq!(decide(149, (0, 150), None, false), Action::Start(150));
        assert_eq!(
            decide(99, (0, 150), Some(120), false),
            Action::KeepStrait(120)
        );
        assert_eq!(decide(99, (0, 150), Some(120), true), Action::Start(100));
        assert_eq!(
            decide(200, (0, 150), None, false),
            Action::PastEnd {
                start: 201,
                high: 150
            }
        );
    }

    proptest! {
        /// Outside input: any bytes decode to a record or an error, never a panic.
        #[test]
        fn any_record_decodes_or_is_refused(
            key in proptest::collection::vec(any::<u8>(), 0..80),
            value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        ) {
            let _ = decode(&key, value.as_deref());
        }

        #[test]
        fn any_json_shaped_record_decodes_or_is_refused(
            connector in "[A-Za-z]{0,8}", cluster in "[a-z]{0,4}", topic in "[a-z.]{0,8}",
            partition in any::<i64>(), offset in any::<i64>(),
        ) {
            let key = format!(r#"["{connector}",{{"cluster":"{cluster}","partition":{partition},"topic":"{topic}"}}]"#);
            let value = format!(r#"{{"offset":{offset}}}"#);
            match decode(key.as_bytes(), Some(value.as_bytes())) {
                Ok(r) => {
                    prop_assert_eq!(r.last_replicated, Some(offset));
                    prop_assert_eq!(i64::from(r.partition.partition), partition);
                }
                Err(e) => prop_assert!(partition < 0 || partition > i64::from(i32::MAX), "{}", e),
            }
        }
    }
}
