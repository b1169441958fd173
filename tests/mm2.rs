//! Coming from MirrorMaker 2, on the sandbox's brokers: `strait
//! import-mm2` turns a properties file into a config `strait check`
//! accepts, and `strait takeover-mm2` makes strait continue where a
//! stopped MirrorMaker 2 left off, on the same remote topics, with the
//! checkpoints it wrote.

mod support;

use std::time::Duration;

use strait_common::formats::Checkpoint;
use support::*;

const MINUTE: Duration = Duration::from_secs(60);

#[test]
fn the_example_mirrormaker_2_file_imports_into_a_config_that_passes_check() {
    let dir = std::env::temp_dir()
        .join("strait-tests")
        .join(unique("import"));
    std::fs::create_dir_all(&dir).unwrap();
    let out_file = dir.join("strait.toml");
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/mm2/connect-mirror-maker.properties"
    );
    let out = strait(&["import-mm2", file, "-o", out_file.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    // Every problem of the file is named, with its line where it has one.
    for expected in [
        "line 10: dr.bootstrap.servers: the quotes around the value were removed",
        "refresh.topics.interval.seconds is set again",
        "us->dr.topics.blacklist: a legacy name",
        "emit.heartbeat.enabled: unknown setting; did you mean emit.heartbeats.enabled?",
        "us.ssl.truststore.location: librdkafka reads CA certificates as PEM",
        "tasks.max: not needed",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    let check = strait(&["check", "--config", out_file.to_str().unwrap()]);
    assert!(check.status.success(), "{}", text(&check.stderr));
    assert!(
        text(&check.stdout).contains("flow us-dr: us -> dr"),
        "{}",
        text(&check.stdout)
    );

    // A file that cannot make a config is refused with the reason.
    let bad = dir.join("bad.properties");
    std::fs::write(&bad, "clusters = us, dr\nus.bootstrap.servers = a:1\n").unwrap();
    let out = strait(&["import-mm2", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cluster dr has no dr.bootstrap.servers"),
        "{}",
        text(&out.stderr)
    );
}

/// A Connect offsets record as MirrorMaker 2's source connector writes it.
fn mm2_offset(cluster: &str, topic: &str, partition: i32, offset: Option<i64>) -> Rec {
    mm2_record("MirrorSourceConnector", cluster, topic, partition, offset)
}

fn mm2_record(
    connector: &str,
    cluster: &str,
    topic: &str,
    partition: i32,
    offset: Option<i64>,
) -> Rec {
    Rec {
        partition: 0,
        key: Some(
            format!(r#"["{connector}",{{"cluster":"{cluster}","partition":{partition},"topic":"{topic}"}}]"#)
                .into_bytes(),
        ),
        value: offset.map(|o| format!(r#"{{"offset":{o}}}"#).into_bytes()),
        headers: vec![],
        timestamp: None,
    }
}

#[test]
fn a_stopped_mirrormaker_2_is_taken_over_without_recopying_or_skipping() {
    let sb = sandbox();
    let topic = unique("takeover");
    let remote = format!("src.{topic}");
    let deployment = unique("takeover");
    let app = unique("app");
    const PER: usize = 100;
    create_topic(&sb.source, &topic, 2);
    produce(&sb.source, &topic, &Rec::seqs(2, 0..PER));

    // What MirrorMaker 2 had done before it was stopped: records 0..60 of
    // partition 0 and 0..40 of partition 1 on the remote topic.
    create_topic(&sb.target, &remote, 2);
    let copied: Vec<Rec> = (0..60)
        .map(|i| Rec::seq(0, i))
        .chain((0..40).map(|i| Rec::seq(1, i)))
        .collect();
    produce(&sb.target, &remote, &copied);
    // Its progress, in its Connect offsets topic on the target: an older
    // value and the newest for partition 0, another cluster's partition,
    // another connector, and a deleted key.
    let offsets_topic = "mm2-offsets.src.internal";
    create_topic_with(
        &sb.target,
        offsets_topic,
        1,
        &[("cleanup.policy", "compact")],
    );
    produce(
        &sb.target,
        offsets_topic,
        &[
            mm2_offset("src", &topic, 0, Some(30)),
            mm2_offset("src", &topic, 0, Some(59)),
            mm2_offset("src", &topic, 1, Some(39)),
            mm2_offset("elsewhere", &topic, 0, Some(5)),
            mm2_record("MirrorCheckpointConnector", "src", &topic, 1, Some(1)),
            mm2_offset("src", &topic, 7, Some(3)),
            mm2_offset("src", &topic, 7, None),
        ],
    );
    // An application that already failed over with MirrorMaker 2's
    // checkpoints: it read to 55 on the target; its last source commit
    // was 20. MirrorMaker 2's checkpoint for it is on the target too.
    commit_group(&sb.source, &app, &topic, &[(0, 20)]);
    commit_group(&sb.target, &app, &remote, &[(0, 55)]);
    let cp = Checkpoint {
        group: app.clone(),
        topic: remote.clone(),
        partition: 0,
        upstream_offset: 50,
        downstream_offset: 50,
        metadata: String::new(),
    };
    produce(
        &sb.target,
        "src.checkpoints.internal",
        &[Rec {
            partition: 0,
            key: Some(cp.encode_key().unwrap()),
            value: Some(cp.encode_value().unwrap()),
            headers: vec![],
            timestamp: None,
        }],
    );

    let cfg = config(&sb, &deployment, &topic, "", "").replace(
        "checkpoints = false",
        &format!(
            "checkpoints = true\ncheckpoint_interval = \"500ms\"\ngroups = [\"{app}\"]\nsync_group_offsets = true"
        ),
    );
    let dir = std::env::temp_dir().join("strait-tests").join(&deployment);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg_path = dir.join("strait.toml");
    // The commands read the same file strait runs with; the port is only
    // filled in when strait starts.
    std::fs::write(&cfg_path, cfg.replace("{metrics}", "127.0.0.1:0")).unwrap();
    let cfg_arg = cfg_path.to_str().unwrap();
    let group = format!("strait.{deployment}.src-dst");

    // A dry run prints where each partition would start and writes nothing.
    let out = strait(&["takeover-mm2", "--config", cfg_arg, "--dry-run"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}\n{}", stdout, text(&out.stderr));
    assert!(
        stdout.contains(&format!("src-dst  {topic}  0  59  60  start here")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("src-dst  {topic}  1  39  40  start here")),
        "{stdout}"
    );
    assert!(
        !stdout.contains(&format!("{topic}  7")),
        "a deleted key is gone: {stdout}"
    );
    assert_eq!(committed(&sb.source, &group, &topic, 2), vec![None, None]);

    let out = strait(&["takeover-mm2", "--config", cfg_arg]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        committed(&sb.source, &group, &topic, 2),
        vec![Some(60), Some(40)]
    );
    // Run again, it keeps what is there (strait's own position wins).
    let out = strait(&["takeover-mm2", "--config", cfg_arg]);
    assert!(
        text(&out.stdout).contains("kept: strait's own position"),
        "{}",
        text(&out.stdout)
    );

    // strait continues: each partition holds every record once, in order.
    let strait = Strait::start(&deployment, &cfg);
    wait_for("replication to the end", MINUTE, || {
        committed(&sb.source, &group, &topic, 2) == vec![Some(PER as i64); 2]
    });
    let got = consume(&sb.target, &remote, 2, 2 * PER, MINUTE);
    assert_eq!(got.len(), 2 * PER, "nothing re-copied, nothing skipped");
    assert_eq!(check_sequences(&got, 2, PER), 0, "no duplicates");

    // The application that failed over is not moved back: strait rebuilt
    // "never backwards" from MirrorMaker 2's checkpoint, and its own
    // checkpoints for the group (written each round) stay at or above it.
    wait_for("a checkpoint round of strait's", MINUTE, || {
        strait
            .metric("strait_checkpoint_rounds_total{flow=\"src-dst\"}")
            .unwrap_or(0.0)
            >= 3.0
    });
    assert_eq!(committed(&sb.target, &app, &remote, 1), vec![Some(55)]);
    let ours: Vec<Checkpoint> = consume(
        &sb.target,
        "src.checkpoints.internal",
        1,
        usize::MAX,
        Duration::from_secs(2),
    )
    .iter()
    .filter_map(|r| Checkpoint::decode(r.key.as_deref()?, r.value.as_deref()?).ok())
    .filter(|c| c.group == app)
    .collect();
    assert!(!ours.is_empty());
    assert!(
        ours.iter().all(|c| c.downstream_offset >= 50),
        "a checkpoint went below MirrorMaker 2's: {ours:?}"
    );
}
