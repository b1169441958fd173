//! strait and Apache Kafka's own MirrorMaker 2 (4.3.1), on the sandbox's
//! Apache Kafka brokers: real MirrorMaker 2 code on both sides, no decoder
//! of ours in the judgement.
//!
//! - MirrorMaker 2's client code reads what strait writes:
//!   `RemoteClusterUtils.translateOffsets` over strait's checkpoints,
//!   `MirrorClient` over strait's heartbeats and remote topics, and
//!   MirrorMaker 2's `OffsetSync`/`Checkpoint`/`Heartbeat` deserializers
//!   over every record of strait's internal topics.
//! - strait reads what a real MirrorMaker 2 writes: `strait offsets
//!   translate` over its offset syncs and checkpoints, `strait verify`
//!   aligned by its offset syncs, `takeover-mm2` over its Connect offsets.
//! - A running MirrorMaker 2 under live traffic is stopped and taken over.
//!
//! Each test has its own cluster aliases (`testkit::mm2::alias`), so its
//! remote topics, internal topics and MirrorMaker 2's Connect group are its
//! own on the shared brokers. MirrorMaker 2 is `compose/mm2.sh`; its client
//! classes run as `tests/mm2_client/Mm2Client.java`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use strait_common::formats::{Checkpoint, Heartbeat, OffsetSync};
use strait_testkit::config::ConfigBuilder;
use strait_testkit::mm2::{
    alias, mm2_client, mm2_read, mm2_translate, MirrorMaker, Mm2Properties, Mm2Record,
};
use support::*;

const MINUTE: Duration = Duration::from_secs(60);
/// MirrorMaker 2 takes about 16 s from start to its first replicated
/// record on a quiet 2-core machine; twice as long beside other tests.
const MM2_START: Duration = Duration::from_secs(120);

fn test_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join("strait-tests").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Each partition's end offset (high watermark).
fn ends(bootstrap: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    (0..partitions)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(10))
                .map_or(0, |(_, high)| high)
        })
        .collect()
}

/// Every topic on the cluster.
fn topics(bootstrap: &str) -> BTreeSet<String> {
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let md = c.fetch_metadata(None, Duration::from_secs(10)).unwrap();
    md.topics().iter().map(|t| t.name().to_owned()).collect()
}

/// The sequence number of a record made by `Rec::seq`.
fn seq(r: &Rec) -> i64 {
    let v = String::from_utf8(r.value.clone().unwrap()).unwrap();
    let (part, s) = v.trim_start_matches('p').split_once('-').unwrap();
    assert_eq!(part.parse::<i32>().unwrap(), r.partition, "{v}");
    s.parse().unwrap()
}

/// The remote topic's records per partition, `(offset, seq)` in offset
/// order: where each source record landed.
fn landed(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expect: usize,
) -> BTreeMap<i32, Vec<(i64, i64)>> {
    let mut out: BTreeMap<i32, Vec<(i64, i64)>> = BTreeMap::new();
    for (o, r) in consume_with_offsets(bootstrap, topic, partitions, expect, MINUTE) {
        out.entry(r.partition).or_default().push((o, seq(&r)));
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

/// For a consumer that read source records `0..position` and resumes at
/// target offset `at`: records it would read again (copies at or after
/// `at` of records before `position`), and records it would never see
/// (records from `position` to `end` with no copy at or after `at`).
fn reread_and_skipped(records: &[(i64, i64)], position: i64, end: i64, at: i64) -> (usize, usize) {
    let reread = records
        .iter()
        .filter(|&&(o, s)| o >= at && s < position)
        .count();
    let after: BTreeSet<i64> = records
        .iter()
        .filter(|&&(o, _)| o >= at)
        .map(|&(_, s)| s)
        .collect();
    let skipped = (position..end).filter(|s| !after.contains(s)).count();
    (reread, skipped)
}

/// `strait offsets translate --json` rows: (topic, partition) -> (source
/// offset, target offset, max re-read).
fn strait_translate(
    config: &std::path::Path,
    group: &str,
    extra: &[&str],
) -> BTreeMap<(String, i32), (i64, i64, Option<i64>)> {
    let mut args = vec![
        "offsets",
        "translate",
        "--config",
        config.to_str().unwrap(),
        "--group",
        group,
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = strait(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    rows.iter()
        .map(|r| {
            (
                (
                    r["topic"].as_str().unwrap().to_owned(),
                    r["partition"].as_i64().unwrap() as i32,
                ),
                (
                    r["source_offset"].as_i64().unwrap(),
                    r["target_offset"].as_i64().unwrap(),
                    r["max_reread"].as_i64(),
                ),
            )
        })
        .collect()
}

/// The newest checkpoint of `group` per remote partition on `topic`
/// (`support::checkpoints` reads them): (upstream, downstream).
fn newest_checkpoints(bootstrap: &str, topic: &str, group: &str) -> BTreeMap<i32, (i64, i64)> {
    checkpoints(bootstrap, topic)
        .into_iter()
        .filter(|c| c.0 == group)
        .map(|(_, _, p, up, down)| (p, (up, down)))
        .collect()
}

/// MirrorMaker 2's checkpoints of `group`, in topic order, per partition:
/// (offset in the checkpoints topic, upstream, downstream).
fn mm2_checkpoints(records: &[Mm2Record], group: &str) -> BTreeMap<i32, Vec<(i64, i64, i64)>> {
    let mut out: BTreeMap<i32, Vec<(i64, i64, i64)>> = BTreeMap::new();
    for r in records {
        if let Mm2Record::Checkpoint {
            offset,
            group: g,
            partition,
            upstream,
            downstream,
            ..
        } = r
        {
            if g == group {
                out.entry(*partition)
                    .or_default()
                    .push((*offset, *upstream, *downstream));
            }
        }
    }
    out
}

fn assert_all_decoded(what: &str, records: &[Mm2Record]) {
    let bad: Vec<&Mm2Record> = records
        .iter()
        .filter(|r| matches!(r, Mm2Record::Undecodable { .. }))
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: MirrorMaker 2's deserializer refused {} of {} records: {bad:?}",
        bad.len(),
        records.len()
    );
}

/// strait's config from `strait import-mm2`, with what a test adds: the
/// metrics endpoint the test harness waits on, and quick commits.
fn imported_config(properties: &std::path::Path, deployment: &str) -> String {
    let out = strait(&[
        "import-mm2",
        properties.to_str().unwrap(),
        "--deployment",
        deployment,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut cfg: toml::Table = text(&out.stdout).parse().unwrap();
    let mut metrics = toml::Table::new();
    metrics.insert("listen".into(), "{metrics}".into());
    cfg.insert("metrics".into(), metrics.into());
    let worker = cfg
        .entry("worker")
        .or_insert_with(|| toml::Table::new().into())
        .as_table_mut()
        .unwrap();
    worker.insert("commit_interval".into(), "200ms".into());
    worker.insert("offset_sync_interval".into(), "500ms".into());
    toml::to_string(&cfg).unwrap()
}

/// The config file for CLI commands (no endpoint is opened by them).
fn write_cli_config(dir: &std::path::Path, cfg: &str) -> std::path::PathBuf {
    let path = dir.join("strait-cli.toml");
    std::fs::write(&path, cfg.replace("{metrics}", "127.0.0.1:0")).unwrap();
    path
}

#[test]
fn mirrormaker_2_client_code_reads_what_strait_writes() {
    let started = Instant::now();
    let sb = sandbox();
    if sb.skip_on_tansu("runs MirrorMaker 2's client code, tested on Apache Kafka") {
        return;
    }
    let (a, b) = (alias("up"), alias("dn"));
    let topic = unique("to-mm2");
    let group = unique("app");
    let deployment = unique("to-mm2");
    const PER: i64 = 200;
    create_topic(&sb.source, &topic, 2);
    produce(&sb.source, &topic, &Rec::seqs(2, 0..PER as usize));
    // Committed with metadata (Kafka Streams keeps partition time there):
    // MirrorMaker 2 carries it into the checkpoints, and so does strait.
    const NOTE: &str = "app note 1";
    commit_group_noting(&sb.source, &group, &topic, &[(0, 120), (1, 77)], NOTE);
    let cfg = ConfigBuilder::new(&deployment, &sb.source, &sb.target)
        .aliases(&a, &b)
        .flow("topics", vec![topic.clone()])
        .flow("heartbeats", true)
        .flow("heartbeat_interval", "500ms")
        .flow("checkpoints", true)
        .flow("checkpoint_interval", "500ms")
        .flow("groups", vec![group.clone()])
        .quick()
        .build();
    let mut strait_run = Strait::start(&deployment, &cfg);
    let config = strait_run.config_path().to_owned();
    let remote = format!("{a}.{topic}");
    let remote_heartbeats = format!("{a}.heartbeats");
    let cp_topic = format!("{a}.checkpoints.internal");
    let syncs_topic = format!("mm2-offset-syncs.{b}.internal");
    let progress = format!("strait.{deployment}.{a}-{b}");

    wait_for("replication to the end", MINUTE, || {
        committed(&sb.source, &progress, &topic, 2) == vec![Some(PER); 2]
    });
    // strait's checkpoints catch up with its translation of the group's
    // commits (translated again as offset syncs arrive).
    let mut translated = BTreeMap::new();
    wait_for("strait's checkpoints at its translation", MINUTE, || {
        translated = strait_translate(&config, &group, &[]);
        let newest = newest_checkpoints(&sb.target, &cp_topic, &group);
        translated.len() == 2
            && translated
                .iter()
                .all(|((_, p), (up, down, _))| newest.get(p) == Some(&(*up, *down)))
    });
    wait_for("strait's heartbeats on the target", MINUTE, || {
        consume(
            &sb.target,
            &remote_heartbeats,
            1,
            usize::MAX,
            Duration::from_secs(1),
        )
        .iter()
        .filter_map(|r| Heartbeat::decode(r.key.as_deref()?, r.value.as_deref()?).ok())
        .any(|h| h.source_alias == a && h.target_alias == b)
    });
    // Everything below reads topics that stay as they are now.
    strait_run.stop_with("TERM", MINUTE);

    // RemoteClusterUtils.translateOffsets over strait's checkpoints: the
    // positions `strait offsets translate` gives, for every partition.
    let java_full = mm2_translate(&sb.target, &a, &group);
    assert!(
        java_full.values().all(|(_, m)| m == NOTE),
        "the group's commit metadata: {java_full:?}"
    );
    let java: BTreeMap<(String, i32), i64> =
        java_full.into_iter().map(|(k, (o, _))| (k, o)).collect();
    let ours: BTreeMap<(String, i32), i64> = translated
        .iter()
        .map(|(k, (_, down, _))| (k.clone(), *down))
        .collect();
    println!(
        "RemoteClusterUtils.translateOffsets: {java:?}; strait offsets translate: {translated:?}"
    );
    assert_eq!(java, ours);
    assert_eq!(
        ours.keys().cloned().collect::<Vec<_>>(),
        vec![(remote.clone(), 0), (remote.clone(), 1)]
    );
    let from_cp: BTreeMap<(String, i32), i64> =
        strait_translate(&config, &group, &["--from-checkpoints"])
            .into_iter()
            .map(|(k, (_, down, _))| (k, down))
            .collect();
    assert_eq!(
        java, from_cp,
        "--from-checkpoints reads what RemoteClusterUtils reads"
    );
    // Nothing replicated twice, nothing lost: the exact positions are the
    // committed ones.
    assert_eq!(ours[&(remote.clone(), 0)], 120);
    assert_eq!(ours[&(remote.clone(), 1)], 77);

    // MirrorClient over strait's heartbeats and remote topics.
    let client = mm2_client(&["client", &sb.target, &a]);
    println!("MirrorClient: {client:?}");
    let has = |line: String| {
        assert!(
            client.contains(&line),
            "MirrorClient did not say {line:?}: {client:?}"
        )
    };
    has(format!("hops {a} 1"));
    has(format!("heartbeat-topic {remote_heartbeats}"));
    has(format!("checkpoint-topic {cp_topic}"));
    has(format!("upstream-cluster {a}"));
    has(format!("remote-topic {remote} {a} {topic}"));
    for line in client.iter().filter(|l| l.starts_with("remote-topic ")) {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f[2], a, "{line}");
        assert_eq!(f[1], format!("{a}.{}", f[3]), "{line}");
    }

    // Offset syncs: MirrorMaker 2's deserializer takes every record, with
    // strait's values, and each sync points at the record it names.
    let landed = landed(&sb.target, &remote, 2, 2 * PER as usize);
    let java_syncs = mm2_read("offset-syncs", &sb.source, &syncs_topic);
    assert_all_decoded(&syncs_topic, &java_syncs);
    let raw = consume_with_offsets(&sb.source, &syncs_topic, 1, java_syncs.len(), MINUTE);
    let strait_syncs: BTreeMap<i64, OffsetSync> = raw
        .iter()
        .map(|(o, r)| {
            let s =
                OffsetSync::decode(r.key.as_deref().unwrap(), r.value.as_deref().unwrap()).unwrap();
            (*o, s)
        })
        .collect();
    let mut ours_checked = 0;
    for r in &java_syncs {
        let Mm2Record::OffsetSync {
            offset,
            topic: t,
            partition,
            upstream,
            downstream,
        } = r
        else {
            panic!("{r:?}");
        };
        let s = &strait_syncs[offset];
        assert_eq!(
            (
                &s.topic,
                s.partition,
                s.upstream_offset,
                s.downstream_offset
            ),
            (t, *partition, *upstream, *downstream),
            "record {offset} of {syncs_topic}"
        );
        if *t == topic {
            let at = &landed[partition];
            assert!(
                at.contains(&(*downstream, *upstream)),
                "sync {r:?}: source record {upstream} is not at {downstream} of {remote}"
            );
            ours_checked += 1;
        }
    }
    assert!(ours_checked >= 4, "{java_syncs:?}");

    // Checkpoints: every record decodes, the group's are the ones strait
    // wrote (upstream = the group's commit, downstream = the translation).
    let java_cps = mm2_read("checkpoints", &sb.target, &cp_topic);
    assert_all_decoded(&cp_topic, &java_cps);
    let raw = consume_with_offsets(&sb.target, &cp_topic, 1, java_cps.len(), MINUTE);
    let strait_cps: BTreeMap<i64, Checkpoint> = raw
        .iter()
        .map(|(o, r)| {
            let c =
                Checkpoint::decode(r.key.as_deref().unwrap(), r.value.as_deref().unwrap()).unwrap();
            (*o, c)
        })
        .collect();
    assert_eq!(java_cps.len(), strait_cps.len());
    for r in &java_cps {
        let Mm2Record::Checkpoint {
            offset,
            group: g,
            topic: t,
            partition,
            upstream,
            downstream,
            metadata,
        } = r
        else {
            panic!("{r:?}");
        };
        let c = &strait_cps[offset];
        assert_eq!(
            (
                &c.group,
                &c.topic,
                c.partition,
                c.upstream_offset,
                c.downstream_offset,
                &c.metadata
            ),
            (g, t, *partition, *upstream, *downstream, metadata),
            "record {offset} of {cp_topic}"
        );
    }
    let by_partition = mm2_checkpoints(&java_cps, &group);
    assert!(java_cps.iter().all(|r| match r {
        Mm2Record::Checkpoint {
            group: g, metadata, ..
        } => *g != group || metadata == NOTE,
        _ => false,
    }));
    for (p, commit) in [(0, 120), (1, 77)] {
        let last = by_partition[&p].last().unwrap();
        assert_eq!((last.1, last.2), (commit, ours[&(remote.clone(), p)]));
        assert!(
            by_partition[&p].windows(2).all(|w| w[0].2 <= w[1].2),
            "checkpoints of partition {p} went backwards: {:?}",
            by_partition[&p]
        );
    }

    // Heartbeats: on the source (shared by every test's flows, so only
    // records both readers saw are compared) and their replicated copies.
    let java_hb = mm2_read("heartbeats", &sb.source, "heartbeats");
    assert_all_decoded("heartbeats", &java_hb);
    let raw = consume_with_offsets(&sb.source, "heartbeats", 1, java_hb.len(), MINUTE);
    let strait_hb: BTreeMap<i64, Heartbeat> = raw
        .iter()
        .filter_map(|(o, r)| {
            Some((
                *o,
                Heartbeat::decode(r.key.as_deref()?, r.value.as_deref()?).ok()?,
            ))
        })
        .collect();
    let mut mine = 0;
    for r in &java_hb {
        let Mm2Record::Heartbeat {
            offset,
            source,
            target,
            timestamp,
        } = r
        else {
            panic!("{r:?}");
        };
        let h = &strait_hb[offset];
        assert_eq!(
            (&h.source_alias, &h.target_alias, h.timestamp_ms),
            (source, target, *timestamp)
        );
        if *source == a && *target == b {
            mine += 1;
            assert!(
                (now_ms() - 600_000..=now_ms()).contains(timestamp),
                "heartbeat time {timestamp} is not of this run"
            );
        }
    }
    assert!(mine >= 2, "strait's heartbeats for {a}->{b}: {mine}");
    let java_remote_hb = mm2_read("heartbeats", &sb.target, &remote_heartbeats);
    assert_all_decoded(&remote_heartbeats, &java_remote_hb);
    assert!(java_remote_hb.iter().any(
        |r| matches!(r, Mm2Record::Heartbeat { source, target, .. } if *source == a && *target == b)
    ));
    println!("took {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn strait_reads_what_a_real_mirrormaker_2_wrote() {
    let started = Instant::now();
    let sb = sandbox();
    if sb.skip_on_tansu("runs Apache Kafka's MirrorMaker 2, tested on Apache Kafka") {
        return;
    }
    let (a, b) = (alias("mmup"), alias("mmdn"));
    let topic = unique("from-mm2");
    let group = unique("app");
    let deployment = unique("from-mm2");
    let dir = test_dir(&deployment);
    const PER: i64 = 300;
    create_topic(&sb.source, &topic, 2);
    produce(&sb.source, &topic, &Rec::seqs(2, 0..PER as usize));
    // The group exists before MirrorMaker 2 starts: it lists groups at start.
    let commits = [(0, 150), (1, 222)];
    const NOTE: &str = "app note 2";
    commit_group_noting(&sb.source, &group, &topic, &commits, NOTE);
    let remote = format!("{a}.{topic}");
    let cp_topic = format!("{a}.checkpoints.internal");
    let syncs_topic = format!("mm2-offset-syncs.{b}.internal");

    let props = Mm2Properties::new((&a, &sb.source), (&b, &sb.target), &topic, &group);
    let mut mm = MirrorMaker::start(&dir, "mm2", &props);
    wait_for("MirrorMaker 2 to replicate the topic", MM2_START, || {
        ends(&sb.target, &remote, 2) == vec![PER; 2]
    });
    wait_for("MirrorMaker 2's checkpoints of the group", MINUTE, || {
        let newest = newest_checkpoints(&sb.target, &cp_topic, &group);
        commits
            .iter()
            .all(|(p, c)| newest.get(p).is_some_and(|(up, _)| up == c))
    });
    let status = mm.stop(MINUTE);
    println!(
        "MirrorMaker 2 stopped ({status}) after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let cfg = imported_config(&mm.properties, &deployment);
    let config = write_cli_config(&dir, &cfg);

    // Checkpoints MirrorMaker 2 wrote: strait reads the same positions as
    // RemoteClusterUtils.
    let java_full = mm2_translate(&sb.target, &a, &group);
    assert!(
        java_full.values().all(|(_, m)| m == NOTE),
        "MirrorMaker 2 carries the commit metadata: {java_full:?}"
    );
    let java: BTreeMap<(String, i32), i64> =
        java_full.into_iter().map(|(k, (o, _))| (k, o)).collect();
    let from_cp: BTreeMap<(String, i32), i64> =
        strait_translate(&config, &group, &["--from-checkpoints"])
            .into_iter()
            .map(|(k, (_, down, _))| (k, down))
            .collect();
    println!(
        "RemoteClusterUtils.translateOffsets: {java:?}; strait --from-checkpoints: {from_cp:?}"
    );
    assert_eq!(java.len(), 2);
    assert_eq!(java, from_cp);

    // Offset syncs MirrorMaker 2 wrote: strait's decoder agrees with
    // MirrorMaker 2's on each record, and strait's translation through
    // them never skips a record, re-reads no more than it says, and is at
    // least as far along as MirrorMaker 2's own checkpoint.
    let java_syncs = mm2_read("offset-syncs", &sb.source, &syncs_topic);
    assert_all_decoded(&syncs_topic, &java_syncs);
    let raw = consume_with_offsets(&sb.source, &syncs_topic, 1, java_syncs.len(), MINUTE);
    assert_eq!(raw.len(), java_syncs.len());
    for ((o, r), j) in raw.iter().zip(&java_syncs) {
        let s = OffsetSync::decode(r.key.as_deref().unwrap(), r.value.as_deref().unwrap()).unwrap();
        assert_eq!(
            Mm2Record::OffsetSync {
                offset: *o,
                topic: s.topic,
                partition: s.partition,
                upstream: s.upstream_offset,
                downstream: s.downstream_offset
            },
            *j
        );
    }
    let landed = landed(&sb.target, &remote, 2, 2 * PER as usize);
    let translated = strait_translate(&config, &group, &[]);
    for (p, commit) in commits {
        let (up, down, max_reread) = translated[&(remote.clone(), p)];
        assert_eq!(up, commit);
        let (reread, skipped) = reread_and_skipped(&landed[&p], commit, PER, down);
        let mm2 = java[&(remote.clone(), p)];
        let (mm2_reread, _) = reread_and_skipped(&landed[&p], commit, PER, mm2);
        println!(
            "partition {p}: group at {commit}; MirrorMaker 2's checkpoint {mm2} (re-reads {mm2_reread}); \
             strait's translation of its offset syncs {down} (re-reads {reread}, bound {max_reread:?})"
        );
        assert_eq!(
            skipped, 0,
            "partition {p}: strait's translation skips records"
        );
        assert!(reread as i64 <= max_reread.unwrap(), "partition {p}");
        assert!(
            down >= mm2,
            "partition {p}: behind MirrorMaker 2's checkpoint"
        );
    }

    // Its Connect offsets: the takeover finds where it stopped, and says
    // nothing about its other connectors' records.
    let out = strait(&["takeover-mm2", "--config", config.to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    println!("{stdout}{stderr}");
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    for p in 0..2 {
        assert!(
            stdout.contains(&format!(
                "{a}-{b}  {topic}  {p}  {}  {PER}  start here",
                PER - 1
            )),
            "{stdout}"
        );
    }
    // strait verify, aligned by MirrorMaker 2's offset syncs: the whole
    // range, and the last 50 records of each partition (aligned by a sync
    // in the middle of the partition).
    let mm2_sync_points: BTreeSet<(i32, i64)> = java_syncs
        .iter()
        .filter_map(|r| match r {
            Mm2Record::OffsetSync {
                topic: t,
                partition,
                upstream,
                ..
            } if *t == topic => Some((*partition, *upstream)),
            _ => None,
        })
        .collect();
    for (last, from_at_least) in [(None, 0), (Some("50"), 1)] {
        let flow = format!("{a}-{b}");
        let mut args = vec![
            "verify",
            "--config",
            config.to_str().unwrap(),
            "--flow",
            &flow,
            "--topic",
            &topic,
            "--json",
        ];
        if let Some(n) = last {
            args.extend(["--last", n]);
        }
        let out = strait(&args);
        assert!(
            out.status.success(),
            "{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        let rows: Vec<serde_json::Value> = text(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        println!("strait verify {last:?}: {rows:?}");
        assert_eq!(rows.len(), 2);
        for row in rows {
            let p = row["partition"].as_i64().unwrap() as i32;
            let from = row["from"].as_i64().unwrap();
            assert!(
                from >= from_at_least && mm2_sync_points.contains(&(p, from)),
                "{row}"
            );
            assert_eq!(row["to"], PER, "{row}");
            assert_eq!(row["compared"], PER - from, "{row}");
            assert_eq!(
                (&row["missing"], &row["extra"], &row["mismatched"]),
                (&0.into(), &0.into(), &0.into()),
                "{row}"
            );
        }
    }
    println!("took {:.1} s", started.elapsed().as_secs_f64());
}

/// Writes records `Rec::seq` to every partition, 20 per partition every
/// 100 ms, until told to stop; returns how many per partition.
fn live_writer(
    source: &str,
    topic: &str,
    parts: i32,
) -> (Arc<AtomicBool>, std::thread::JoinHandle<i64>) {
    use rdkafka::producer::Producer as _;
    let stop = Arc::new(AtomicBool::new(false));
    let (source, topic, flag) = (source.to_owned(), topic.to_owned(), stop.clone());
    let handle = std::thread::spawn(move || {
        let p = producer(&source);
        let mut n = 0usize;
        while !flag.load(Ordering::Relaxed) {
            send(&p, &topic, &Rec::seqs(parts, n..n + 20));
            n += 20;
            std::thread::sleep(Duration::from_millis(100));
        }
        p.flush(Duration::from_secs(30)).unwrap();
        n as i64
    });
    (stop, handle)
}

/// MirrorMaker 2's source offsets in its Connect offsets topic, read here
/// from the JSON itself: partition -> last source offset replicated.
fn connect_offsets(
    bootstrap: &str,
    offsets_topic: &str,
    cluster: &str,
    topic: &str,
) -> BTreeMap<i32, i64> {
    let parts = partitions(bootstrap, offsets_topic).unwrap() as i32;
    let mut out = BTreeMap::new();
    // Connect writes its offsets without transactions: every offset below
    // the end holds a record (the cleaner leaves the active segment alone).
    // MirrorMaker 2 may still be writing: what is read past the ends taken
    // here is left out, so that the count below can be checked.
    let end = ends(bootstrap, offsets_topic, parts);
    let count: i64 = end.iter().sum();
    let mut records = consume_with_offsets(bootstrap, offsets_topic, parts, count as usize, MINUTE);
    records.retain(|(o, r)| *o < end[r.partition as usize]);
    assert_eq!(
        records.len() as i64,
        count,
        "{offsets_topic} read to its ends {end:?}"
    );
    records.sort_by_key(|(o, r)| (r.partition, *o));
    for (_, r) in records {
        let key: serde_json::Value = serde_json::from_slice(r.key.as_deref().unwrap()).unwrap();
        if key[0] != "MirrorSourceConnector"
            || key[1]["cluster"] != cluster
            || key[1]["topic"] != topic
        {
            continue;
        }
        let p = key[1]["partition"].as_i64().unwrap() as i32;
        match r
            .value
            .as_deref()
            .map(|v| serde_json::from_slice::<serde_json::Value>(v).unwrap())
        {
            Some(v) => {
                out.insert(p, v["offset"].as_i64().unwrap());
            }
            None => {
                out.remove(&p);
            }
        }
    }
    out
}

/// Copies at offsets in `range` of records already copied below its
/// start: what a restart there re-sent.
fn resent(records: &[(i64, i64)], range: std::ops::Range<i64>) -> usize {
    let before: BTreeSet<i64> = records
        .iter()
        .filter(|(o, _)| *o < range.start)
        .map(|(_, s)| *s)
        .collect();
    records
        .iter()
        .filter(|(o, s)| range.contains(o) && before.contains(s))
        .count()
}

#[test]
fn a_running_mirrormaker_2_is_taken_over_under_live_traffic() {
    take_over_live(Stop::Term);
}

#[test]
fn a_crashed_mirrormaker_2_is_taken_over_resending_no_more_than_its_own_restart() {
    take_over_live(Stop::Kill);
}

/// How MirrorMaker 2 stops before the move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// SIGTERM, as the takeover's instructions say; MirrorMaker 2 is
    /// restarted once before, to measure what its own restart re-sends.
    Term,
    /// SIGKILL (a crash, or an operator's `kill -9`): its Connect offsets
    /// trail what it wrote by up to its offset flush interval (5 s here),
    /// and what lies past them is re-sent, by strait as by MirrorMaker 2.
    Kill,
}

/// MirrorMaker 2 replicates live traffic and checkpoints a group; it
/// stops (`how`); `strait import-mm2` and `strait takeover-mm2` on its
/// properties file; strait runs while the traffic goes on.
fn take_over_live(how: Stop) {
    let started = Instant::now();
    let sb = sandbox();
    if sb.skip_on_tansu("runs Apache Kafka's MirrorMaker 2, tested on Apache Kafka") {
        return;
    }
    let (a, b) = (alias("liveup"), alias("livedn"));
    let topic = unique("live");
    let group = unique("app");
    let deployment = unique("live");
    let dir = test_dir(&deployment);
    let remote = format!("{a}.{topic}");
    let cp_topic = format!("{a}.checkpoints.internal");
    let syncs_topic = format!("mm2-offset-syncs.{b}.internal");
    create_topic(&sb.source, &topic, 2);
    // The source's heartbeats topic exists before MirrorMaker 2 starts (as
    // strait creates it), so MirrorMaker 2 replicates it from the start and
    // the set of topics it made does not depend on timing.
    create_topic_with(
        &sb.source,
        "heartbeats",
        1,
        &[("cleanup.policy", "compact")],
    );
    // An application consuming the source; its group exists already.
    commit_group(&sb.source, &group, &topic, &[(0, 0), (1, 0)]);

    let mut props = Mm2Properties::new((&a, &sb.source), (&b, &sb.target), &topic, &group);
    if how == Stop::Kill {
        // The Connect worker's offset flush (60 s by default; the target
        // cluster's prefix reaches the worker, MirrorMakerConfig.workerConfig).
        props = props.set(&format!("{b}.offset.flush.interval.ms"), "5000");
    }
    let mut mm = MirrorMaker::start(&dir, "mm2", &props);
    let offsets_topic = format!("mm2-offsets.{a}.internal");
    let (stop_writer, writer) = live_writer(&sb.source, &topic, 2);
    wait_for("MirrorMaker 2 to replicate live traffic", MM2_START, || {
        ends(&sb.target, &remote, 2).iter().all(|&e| e >= 1000)
    });

    // The application commits; MirrorMaker 2 checkpoints it.
    let p1: Vec<i64> = ends(&sb.source, &topic, 2)
        .iter()
        .map(|e| e - 300)
        .collect();
    commit_group(&sb.source, &group, &topic, &[(0, p1[0]), (1, p1[1])]);
    wait_for("MirrorMaker 2's checkpoints of the group", MINUTE, || {
        let newest = newest_checkpoints(&sb.target, &cp_topic, &group);
        (0..2).all(|p| newest.get(&p).is_some_and(|(up, _)| *up == p1[p as usize]))
    });
    let mm2_cp = newest_checkpoints(&sb.target, &cp_topic, &group);

    // The move: MirrorMaker 2 stops, traffic goes on.
    let (e1, status) = match how {
        Stop::Term => {
            // MirrorMaker 2's own restart, for comparison.
            mm.stop(MINUTE);
            let e1 = ends(&sb.target, &remote, 2);
            mm.restart();
            wait_for(
                "MirrorMaker 2 to resume after its restart",
                MM2_START,
                || {
                    ends(&sb.target, &remote, 2)
                        .iter()
                        .zip(&e1)
                        .all(|(e, e1)| *e >= e1 + 500)
                },
            );
            (Some(e1), mm.stop(MINUTE))
        }
        Stop::Kill => {
            // Killed while it has written records its Connect offsets do
            // not cover yet.
            wait_for("MirrorMaker 2 ahead of its Connect offsets", MINUTE, || {
                let last = connect_offsets(&sb.target, &offsets_topic, &a, &topic);
                let now = ends(&sb.target, &remote, 2);
                (0..2).all(|p| last.get(&p).is_some_and(|l| now[p as usize] > l + 100))
            });
            (None, mm.kill())
        }
    };
    // A produce request the broker received before the exit may still be
    // appended just after it: the ends are read once they stay put.
    let mut e2 = ends(&sb.target, &remote, 2);
    wait_for("the remote topic's ends to settle", MINUTE, || {
        std::thread::sleep(Duration::from_millis(300));
        let before = std::mem::replace(&mut e2, ends(&sb.target, &remote, 2));
        before == e2
    });
    let cp_end = ends(&sb.target, &cp_topic, 1)[0];
    println!(
        "MirrorMaker 2 stopped ({status}) at {:.1} s; the remote topic's ends: {} {e2:?} at the move",
        started.elapsed().as_secs_f64(),
        e1.as_ref()
            .map_or(String::new(), |e1| format!("{e1:?} at its restart,"))
    );
    let ours = |t: &String| t.contains(&a) || t.contains(&b);
    let source_topics: BTreeSet<String> = topics(&sb.source).into_iter().filter(ours).collect();
    let target_topics: BTreeSet<String> = topics(&sb.target).into_iter().filter(ours).collect();
    let last = connect_offsets(&sb.target, &offsets_topic, &a, &topic);
    let before_move = landed(&sb.target, &remote, 2, (e2[0] + e2[1]) as usize);
    // What MirrorMaker 2's own restart would send again now: the records
    // on the target after the last one its Connect offsets vouch for.
    let mm2_would_resend: Vec<usize> = (0..2)
        .map(|p| {
            let seqs: BTreeSet<i64> = before_move[&p]
                .iter()
                .filter(|(o, _)| *o < e2[p as usize])
                .map(|(_, s)| *s)
                .collect();
            seqs.iter().filter(|s| **s > last[&p]).count()
        })
        .collect();

    // strait takes over from the same properties file.
    let cfg = imported_config(&mm.properties, &deployment);
    let config = write_cli_config(&dir, &cfg);
    let out = strait(&["takeover-mm2", "--config", config.to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    println!("{stdout}{stderr}");
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    for p in 0..2 {
        let l = last[&p];
        assert!(
            stdout.contains(&format!(
                "{a}-{b}  {topic}  {p}  {l}  {}  start here",
                l + 1
            )),
            "{stdout}"
        );
    }
    let mut strait_run = Strait::start(&deployment, &cfg);
    let progress = format!("strait.{deployment}.{a}-{b}");
    wait_for("strait to replicate live traffic", MINUTE, || {
        committed(&sb.source, &progress, &topic, 2)
            .iter()
            .zip(&e2)
            .all(|(c, e)| c.is_some_and(|c| c > e + 300))
    });
    stop_writer.store(true, Ordering::Relaxed);
    let total = writer.join().unwrap();
    wait_for("strait to replicate to the end", MINUTE, || {
        committed(&sb.source, &progress, &topic, 2) == vec![Some(total); 2]
    });
    // The application commits again; strait checkpoints it.
    let p2 = [total - 37, total - 101];
    commit_group(&sb.source, &group, &topic, &[(0, p2[0]), (1, p2[1])]);
    wait_for("strait's checkpoints of the group", MINUTE, || {
        let newest = newest_checkpoints(&sb.target, &cp_topic, &group);
        (0..2).all(|p| newest.get(&p).is_some_and(|(up, _)| *up == p2[p as usize]))
    });
    strait_run.stop_with("TERM", MINUTE);

    // Every record is on the target; re-sent copies only where a restart
    // re-sent them, and no more at the move than MirrorMaker 2's own
    // restart would have sent.
    let all = landed(&sb.target, &remote, 2, 2 * total as usize);
    for p in 0..2 {
        let recs = &all[&p];
        let seqs: BTreeSet<i64> = recs.iter().map(|(_, s)| *s).collect();
        let missing: Vec<i64> = (0..total).filter(|s| !seqs.contains(s)).take(10).collect();
        assert!(
            missing.is_empty(),
            "partition {p}: records missing, first {missing:?}"
        );
        assert_eq!(
            seqs.len() as i64,
            total,
            "partition {p}: records that were never written"
        );
        let e2 = e2[p as usize];
        let e1 = e1.as_ref().map_or(e2, |e1| e1[p as usize]);
        let by_mm2_restart = resent(recs, e1..e2);
        let by_takeover = resent(recs, e2..i64::MAX);
        println!(
            "partition {p}: {total} records; {how:?}: MirrorMaker 2's own restart before the move re-sent {}; \
             at the move its Connect offsets (last {}) would have re-sent {}; strait's takeover re-sent {by_takeover}",
            if how == Stop::Term { by_mm2_restart.to_string() } else { "- (not restarted)".into() },
            last[&p],
            mm2_would_resend[p as usize]
        );
        assert!(
            by_takeover <= mm2_would_resend[p as usize],
            "partition {p}: strait re-sent more than MirrorMaker 2's own restart would"
        );
        assert_eq!(
            recs.len(),
            total as usize + by_mm2_restart + by_takeover,
            "partition {p}: copies elsewhere"
        );
    }

    // The same topics: strait made none of its own.
    assert_eq!(
        source_topics,
        topics(&sb.source)
            .into_iter()
            .filter(ours)
            .collect::<BTreeSet<_>>()
    );
    assert_eq!(
        target_topics,
        topics(&sb.target)
            .into_iter()
            .filter(ours)
            .collect::<BTreeSet<_>>()
    );
    assert!(source_topics.contains(&syncs_topic), "{source_topics:?}");
    assert!(
        target_topics.contains(&cp_topic) && target_topics.contains(&remote),
        "{target_topics:?}"
    );

    // The offset syncs go on in MirrorMaker 2's topic: strait's first sync
    // of each partition is the record after MirrorMaker 2's last, at the
    // offset after MirrorMaker 2's last copy.
    let syncs = mm2_read("offset-syncs", &sb.source, &syncs_topic);
    assert_all_decoded(&syncs_topic, &syncs);
    for p in 0..2 {
        let first_after = last[&p] + 1;
        assert!(
            syncs.iter().any(|r| matches!(r, Mm2Record::OffsetSync { topic: t, partition, upstream, downstream, .. }
                if *t == topic && *partition == p && *upstream == first_after && *downstream == e2[p as usize])),
            "partition {p}: no sync ({first_after}, {}) in {syncs_topic}",
            e2[p as usize]
        );
    }

    // The group's checkpoints: MirrorMaker 2's, then strait's in the same
    // topic, never backwards, and strait's newest neither skips a record
    // nor re-reads more than its translation's bound.
    let cps = mm2_read("checkpoints", &sb.target, &cp_topic);
    assert_all_decoded(&cp_topic, &cps);
    let by_partition = mm2_checkpoints(&cps, &group);
    let translated = strait_translate(&config, &group, &[]);
    let java = mm2_translate(&sb.target, &a, &group);
    for p in 0..2 {
        let list = &by_partition[&p];
        assert!(
            list.windows(2).all(|w| w[0].2 <= w[1].2),
            "partition {p}: a checkpoint went backwards: {list:?}"
        );
        assert!(
            list.iter().any(|c| c.0 < cp_end),
            "MirrorMaker 2's checkpoints"
        );
        let newest = list.last().unwrap();
        assert!(
            newest.0 >= cp_end,
            "strait's checkpoint after the move: {list:?}"
        );
        assert_eq!(newest.1, p2[p as usize]);
        let (up, down, max_reread) = translated[&(remote.clone(), p)];
        assert_eq!(
            (up, down),
            (newest.1, newest.2),
            "the checkpoint is strait's translation"
        );
        assert_eq!(
            java[&(remote.clone(), p)].0,
            down,
            "RemoteClusterUtils reads strait's newest"
        );
        let (mm2_up, mm2_down) = mm2_cp[&p];
        assert!(down >= mm2_down);
        let (reread, skipped) = reread_and_skipped(&all[&p], up, total, down);
        let (mm2_reread, mm2_skipped) = reread_and_skipped(&all[&p], mm2_up, total, mm2_down);
        println!(
            "partition {p}: before the move MirrorMaker 2 checkpointed {mm2_up} -> {mm2_down} \
             (re-reads {mm2_reread}, skips {mm2_skipped}); after it strait checkpointed {up} -> {down} \
             (re-reads {reread}, skips {skipped}, bound {max_reread:?})"
        );
        assert_eq!(skipped, 0, "partition {p}");
        assert!(reread as i64 <= max_reread.unwrap(), "partition {p}");
    }
    println!("took {:.1} s", started.elapsed().as_secs_f64());
}
