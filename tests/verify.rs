//! `strait verify` on the sandbox's brokers: a live flow verifies clean;
//! a target forged with a missing stretch, a changed record, a repeated
//! suffix and a record produced straight into it is reported with the
//! counts and first offsets, and exits 1; so does a record produced into
//! the target after the last replicated one, while records replicated and
//! not committed yet, and a restart's re-sent records from before the
//! range, are not foreign.

mod support;

use std::process::{Command, Output};
use std::time::Duration;

use strait_common::formats::OffsetSync;
use support::*;

const MINUTE: Duration = Duration::from_secs(60);

fn verify(cfg: &std::path::Path, topic: &str, more: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strait"))
        .args([
            "verify",
            "--config",
            cfg.to_str().unwrap(),
            "--flow",
            "src-dst",
        ])
        .args(["--topic", topic, "--json"])
        .args(more)
        .output()
        .unwrap()
}

fn rows(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_live_flow_verifies_clean() {
    let sb = sandbox();
    let topic = unique("verified");
    let deployment = unique("verified");
    create_topic(&sb.source, &topic, 2);
    produce(&sb.source, &topic, &Rec::seqs(2, 0..300));
    let strait = Strait::start(&deployment, &config(&sb, &deployment, &topic, "", ""));
    wait_for("replicated and committed", MINUTE, || {
        committed(
            &sb.source,
            &format!("strait.{deployment}.src-dst"),
            &topic,
            2,
        ) == vec![Some(300), Some(300)]
    });
    let out = verify(strait.config_path(), &topic, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{:?}", rows(&out));
    let r = rows(&out);
    assert_eq!(r.len(), 2);
    for row in &r {
        assert_eq!(
            (&row["compared"], &row["missing"], &row["mismatched"]),
            (&300.into(), &0.into(), &0.into()),
            "{row}"
        );
        assert_eq!(
            (&row["foreign"], &row["unreplicated"], &row["last_matched"]),
            (&0.into(), &0.into(), &299.into()),
            "{row}"
        );
    }
    assert!(
        stderr.contains("records/s"),
        "the rate is printed: {stderr}"
    );
}

/// Source record `i` of `partition`, with the timestamp strait would copy.
fn rec(partition: i32, i: usize) -> Rec {
    let mut r = Rec::seq(partition, i);
    r.timestamp = Some(1_700_000_000_000);
    r
}

/// A record nobody wrote to the source, produced straight into the target.
fn stranger(partition: i32, what: &str) -> Rec {
    let mut r = rec(partition, 0);
    r.key = Some(format!("not-from-the-source-{what}").into_bytes());
    r
}

/// A forged flow: `source` on the source, `target` on its remote topic,
/// the offset syncs ((partition, upstream, downstream)) and committed
/// positions strait would have written, for deployment `deployment`.
struct Forged<'a> {
    topic: String,
    partitions: i32,
    source: Vec<Rec>,
    target: Vec<Rec>,
    syncs: &'a [(i32, i64, i64)],
    committed: &'a [(i32, i64)],
}

fn forge(sb: &Sandbox, deployment: &str, f: &Forged) {
    let remote = format!("src.{}", f.topic);
    create_topic(&sb.source, &f.topic, f.partitions);
    produce(&sb.source, &f.topic, &f.source);
    create_topic(&sb.target, &remote, f.partitions);
    produce(&sb.target, &remote, &f.target);
    let syncs: Vec<Rec> = f
        .syncs
        .iter()
        .map(|&(partition, upstream, downstream)| {
            let sync = OffsetSync {
                topic: f.topic.clone(),
                partition,
                upstream_offset: upstream,
                downstream_offset: downstream,
            };
            Rec {
                partition: 0,
                key: Some(sync.encode_key().unwrap()),
                value: Some(sync.encode_value()),
                headers: vec![],
                timestamp: None,
            }
        })
        .collect();
    produce(&sb.source, "mm2-offset-syncs.dst.internal", &syncs);
    commit_group(
        &sb.source,
        &format!("strait.{deployment}.src-dst"),
        &f.topic,
        f.committed,
    );
}

#[test]
fn missing_changed_repeated_and_foreign_records_are_reported_and_fail() {
    let sb = sandbox();
    let deployment = unique("forged");
    // Same timestamps on both sides, as strait writes them.
    let source: Vec<Rec> = (0..100).map(|i| rec(0, i)).collect();
    // The "replica": 60..70 never arrived, 40 arrived changed, 80..83
    // arrived twice (a re-sent suffix), and a record was produced straight
    // into it after 20 (at target offset 21).
    let mut target: Vec<Rec> = Vec::new();
    for i in 0..100 {
        if (60..70).contains(&i) {
            continue;
        }
        let mut r = source[i].clone();
        if i == 40 {
            r.value = Some(b"changed".to_vec());
        }
        target.push(r);
        if i == 20 {
            target.push(stranger(0, "inside"));
        }
        if i == 82 {
            target.extend(source[80..83].iter().cloned());
        }
    }
    let topic = unique("forged");
    forge(
        &sb,
        &deployment,
        &Forged {
            topic: topic.clone(),
            partitions: 1,
            source,
            target,
            syncs: &[(0, 0, 0)],
            committed: &[(0, 100)],
        },
    );

    let cfg = write_config(&sb, &deployment, &topic);
    let out = verify(&cfg, &topic, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("MISSING OR MISMATCHED RECORDS, FOREIGN RECORDS"),
        "{stderr}"
    );
    let r = rows(&out);
    let row = &r[0];
    assert_eq!(row["compared"], 100, "{row}");
    assert_eq!(
        (&row["missing"], &row["first_missing"]),
        (&10.into(), &60.into()),
        "{row}"
    );
    assert_eq!(
        (&row["mismatched"], &row["first_mismatched"]),
        (&1.into(), &40.into()),
        "{row}"
    );
    // Repeats stay extra; the first at target offset 74 (0..=20, the
    // stranger, 21..60 and 70..83 come before it).
    assert_eq!(
        (&row["extra"], &row["first_extra"]),
        (&3.into(), &74.into()),
        "{row}"
    );
    assert_eq!(
        (&row["foreign"], &row["first_foreign"]),
        (&1.into(), &21.into()),
        "the record produced into the target, at its target offset: {row}"
    );
    assert_eq!(
        (&row["unreplicated"], &row["last_matched"]),
        (&0.into(), &99.into()),
        "{row}"
    );
}

#[test]
fn a_record_produced_after_the_last_replicated_one_is_foreign() {
    let sb = sandbox();
    let deployment = unique("foreign");
    let topic = unique("foreign");
    // Partition 0: 110 source records, 100 committed; the target holds
    // 0..106 (100..106 replicated, not committed yet), then a record
    // produced straight into it (target offset 106); 106..110 are not
    // replicated yet.
    let mut source: Vec<Rec> = (0..110).map(|i| rec(0, i)).collect();
    let mut target: Vec<Rec> = source[..106].to_vec();
    target.push(stranger(0, "after"));
    // Partition 1: 50 records, all committed. A first session wrote 0..40
    // at 0..40 (syncs at 0 and 35); the next restarted from 30 and wrote
    // 30..50 at 40..60 (its first record's sync: (30, 40)). With --last
    // 15 the range aligns at (35, 35): the re-sent 30..35 at 40..45 come
    // from before the range and are repeats, not foreign.
    source.extend((0..50).map(|i| rec(1, i)));
    target.extend((0..40).chain(30..50).map(|i| rec(1, i)));
    forge(
        &sb,
        &deployment,
        &Forged {
            topic: topic.clone(),
            partitions: 2,
            source,
            target,
            syncs: &[(0, 0, 0), (1, 0, 0), (1, 35, 35), (1, 30, 40)],
            committed: &[(0, 100), (1, 50)],
        },
    );

    let cfg = write_config(&sb, &deployment, &topic);
    let out = verify(&cfg, &topic, &["--last", "15"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let r = rows(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}\n{r:?}");
    assert!(stderr.contains(": FOREIGN RECORDS"), "{stderr}");
    assert!(
        stderr.contains("4 source records past the committed position not replicated yet"),
        "{stderr}"
    );
    assert_eq!(r.len(), 2, "{r:?}");
    let row = &r[0];
    assert_eq!(
        (&row["from"], &row["to"]),
        (&0.into(), &100.into()),
        "{row}"
    );
    assert_eq!(
        (
            &row["compared"],
            &row["missing"],
            &row["mismatched"],
            &row["extra"]
        ),
        (&100.into(), &0.into(), &0.into(), &0.into()),
        "{row}"
    );
    assert_eq!(
        (&row["foreign"], &row["first_foreign"]),
        (&1.into(), &106.into()),
        "the record after the last replicated one, at its target offset: {row}"
    );
    assert_eq!(
        (&row["unreplicated"], &row["last_matched"]),
        (&4.into(), &105.into()),
        "100..106 are on the target: not foreign; 106..110 are not: not missing: {row}"
    );
    let row = &r[1];
    assert_eq!(
        (&row["from"], &row["to"], &row["target_from"]),
        (&35.into(), &50.into(), &35.into()),
        "{row}"
    );
    assert_eq!(
        (&row["compared"], &row["missing"], &row["foreign"]),
        (&15.into(), &0.into(), &0.into()),
        "{row}"
    );
    assert_eq!(
        (&row["extra"], &row["first_extra"], &row["last_matched"]),
        (&10.into(), &40.into(), &49.into()),
        "the re-sent 30..40 are repeats: {row}"
    );
}

/// The flow's config, without running strait.
fn write_config(sb: &Sandbox, deployment: &str, topic: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join("strait-tests").join(deployment);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("strait.toml");
    std::fs::write(
        &cfg,
        config(sb, deployment, topic, "", "").replace("{metrics}", "127.0.0.1:0"),
    )
    .unwrap();
    cfg
}
