//! `strait verify` on the sandbox's brokers: a live flow verifies clean;
//! a target forged with a missing stretch, a changed record and a repeated
//! suffix is reported with the counts and first offsets, and exits 1.

mod support;

use std::process::{Command, Output};
use std::time::Duration;

use strait_common::formats::OffsetSync;
use support::*;

const MINUTE: Duration = Duration::from_secs(60);

fn verify(cfg: &std::path::Path, topic: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strait"))
        .args([
            "verify",
            "--config",
            cfg.to_str().unwrap(),
            "--flow",
            "src-dst",
        ])
        .args(["--topic", topic, "--json"])
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
    let out = verify(strait.config_path(), &topic);
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
    }
    assert!(
        stderr.contains("records/s"),
        "the rate is printed: {stderr}"
    );
}

#[test]
fn missing_changed_and_repeated_records_are_reported_and_fail() {
    let sb = sandbox();
    let deployment = unique("forged");
    // Same timestamps on both sides, as strait writes them.
    let source: Vec<Rec> = (0..100)
        .map(|i| {
            let mut r = Rec::seq(0, i);
            r.timestamp = Some(1_700_000_000_000);
            r
        })
        .collect();
    // The "replica": 60..70 never arrived, 40 arrived changed, and 80..83
    // arrived twice (a re-sent suffix).
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
        if i == 82 {
            target.extend(source[80..83].iter().cloned());
        }
    }
    let topic = unique("forged");
    let remote = format!("src.{topic}");
    create_topic(&sb.source, &topic, 1);
    produce(&sb.source, &topic, &source);
    create_topic(&sb.target, &remote, 1);
    produce(&sb.target, &remote, &target);
    // The offset sync and committed position strait would have written.
    let sync = OffsetSync {
        topic: topic.clone(),
        partition: 0,
        upstream_offset: 0,
        downstream_offset: 0,
    };
    produce(
        &sb.source,
        "mm2-offset-syncs.dst.internal",
        &[Rec {
            partition: 0,
            key: Some(sync.encode_key().unwrap()),
            value: Some(sync.encode_value()),
            headers: vec![],
            timestamp: None,
        }],
    );
    commit_group(
        &sb.source,
        &format!("strait.{deployment}.src-dst"),
        &topic,
        &[(0, 100)],
    );

    let dir = std::env::temp_dir().join("strait-tests").join(&deployment);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("strait.toml");
    std::fs::write(
        &cfg,
        config(&sb, &deployment, &topic, "", "").replace("{metrics}", "127.0.0.1:0"),
    )
    .unwrap();
    let out = verify(&cfg, &topic);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
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
    assert_eq!(row["extra"], 3, "{row}");
}
