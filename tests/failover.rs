//! Consumer group failover at scale, end to end on the sandbox's tansu
//! brokers: translation that answers while traffic and heartbeats flow,
//! many groups checkpointed within a bound counted in rounds, and
//! whole-deployment failover that refuses groups active on the target.

mod support;

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use strait_common::model::{NextOffset, TopicPartition};
use strait_controller::native_admin::GroupCommits;

use support::*;

const MINUTE: Duration = Duration::from_secs(60);

/// Runs `strait <args> --config …`, killing it if it has not answered
/// within `limit` (a hang is what this guards against).
fn cli_within(strait: &Strait, args: &[&str], limit: Duration) -> (Output, Duration) {
    cli_with_config(strait, strait.config_path(), args, limit)
}

/// As [`cli_within`], with another config file.
fn cli_with_config(
    strait: &Strait,
    config: &std::path::Path,
    args: &[&str],
    limit: Duration,
) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = Command::new(strait.binary())
        .args(args)
        .arg("--config")
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "`strait {}` did not answer within {limit:?}; stderr: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = started.elapsed();
    (child.wait_with_output().unwrap(), took)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn checkpoint_config(sb: &Sandbox, deployment: &str, topic: &str, flow_extra: &str) -> String {
    config(sb, deployment, topic, "", "").replace("checkpoints = false", flow_extra)
}

/// Commits offsets to many groups at once without joining them, as their
/// applications would have (one admin request per group, many in flight).
fn commit_groups(bootstrap: &str, groups: &[GroupCommits]) {
    let admin = group_admin(bootstrap);
    let results = strait_controller::native_admin::alter_group_offsets(
        rdkafka::consumer::Consumer::client(&admin),
        groups,
        64,
        Duration::from_secs(10),
    );
    for ((g, _), r) in groups.iter().zip(results) {
        let parts = r.unwrap_or_else(|e| panic!("commit of {g}: {e}"));
        assert!(parts.iter().all(|(_, r)| r.is_ok()), "{g}: {parts:?}");
    }
}

#[test]
fn translate_and_failover_answer_while_heartbeats_and_traffic_flow() {
    let sb = sandbox();
    let t = unique("live");
    let remote = format!("src.{t}");
    let group = unique("live-app");
    let deployment = unique("live");
    create_topic(&sb.source, &t, 2);
    produce(&sb.source, &t, &Rec::seqs(2, 0..200));
    commit_group(&sb.source, &group, &t, &[(0, 50), (1, 80)]);
    // Heartbeats on (every second by default): the offset-syncs topic gets
    // a record every second and is never quiet.
    let cfg = checkpoint_config(
        &sb,
        &deployment,
        &t,
        &format!("checkpoints = true\ncheckpoint_interval = \"500ms\"\ngroups = [\"{group}\"]"),
    )
    .replace("heartbeats = false", "heartbeats = true");
    let strait = Strait::start(&deployment, &cfg);
    wait_for("replication of the first records", MINUTE, || {
        committed(&sb.source, &format!("strait.{deployment}.src-dst"), &t, 2)
            == vec![Some(200), Some(200)]
    });

    // Traffic flows the whole time (bounded: at most a minute).
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (stop, source, topic) = (stop.clone(), sb.source.clone(), t.clone());
        std::thread::spawn(move || {
            let p = producer(&source);
            let started = Instant::now();
            let mut seq = 200;
            while !stop.load(Ordering::Relaxed) && started.elapsed() < MINUTE {
                send(&p, &topic, &Rec::seqs(2, seq..seq + 50));
                seq += 50;
                std::thread::sleep(Duration::from_millis(20));
            }
            rdkafka::producer::Producer::flush(&p, Duration::from_secs(10)).unwrap();
            seq
        })
    };
    // The calls below run while live traffic is being replicated.
    wait_for("strait replicating the live traffic", MINUTE, || {
        committed(&sb.source, &format!("strait.{deployment}.src-dst"), &t, 2)
            .iter()
            .all(|c| c.is_some_and(|o| o > 250))
    });

    let (out, took) = cli_within(
        &strait,
        &["offsets", "translate", "--group", &group, "--json"],
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (row, (p, at)) in rows.iter().zip([(0, 50), (1, 80)]) {
        assert_eq!(
            (
                row["group"].as_str(),
                row["topic"].as_str(),
                row["partition"].as_i64()
            ),
            (Some(group.as_str()), Some(remote.as_str()), Some(p))
        );
        assert_eq!(row["source_offset"], at);
        // Written once, in order, to a new topic: the same offsets.
        assert_eq!(row["target_offset"], at);
        assert_eq!(row["exact"], true);
    }
    println!("translate answered in {took:?} under traffic");

    // The HTTP endpoint, for the groups matching a regex, in one pass.
    let started = Instant::now();
    let (code, http_rows) = strait.get_json(&format!(
        "/v1/offsets/translate?groups={}.*&flow=src-dst",
        group.split('-').next().unwrap()
    ));
    println!("HTTP translate answered in {:?}", started.elapsed());
    assert_eq!(code, 200, "{http_rows}");
    assert!(
        http_rows
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["group"] == group.as_str())
            .count()
            == 2,
        "{http_rows}"
    );

    let (out, took) = cli_within(
        &strait,
        &["offsets", "failover", "--group", &group],
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    println!(
        "failover answered in {took:?}:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        committed(&sb.target, &group, &remote, 2),
        vec![Some(50), Some(80)]
    );
    stop.store(true, Ordering::Relaxed);
    let written = traffic.join().unwrap();
    assert!(written > 200, "traffic flowed during the calls");
}

#[test]
fn a_hundred_groups_are_all_checkpointed_within_two_rounds_of_their_commits() {
    let sb = sandbox();
    let t = unique("many");
    let remote = format!("src.{t}");
    let prefix = unique("many-app");
    let deployment = unique("many");
    create_topic(&sb.source, &t, 4);
    produce(&sb.source, &t, &Rec::seqs(4, 0..100));
    let cfg = checkpoint_config(
        &sb,
        &deployment,
        &t,
        &format!("checkpoints = true\ncheckpoint_interval = \"1s\"\ngroups = [\"{prefix}-.*\"]"),
    );
    let strait = Strait::start(&deployment, &cfg);
    wait_for("replication", MINUTE, || {
        committed(&sb.source, &format!("strait.{deployment}.src-dst"), &t, 4) == vec![Some(100); 4]
    });
    let rounds = || {
        strait
            .metric("strait_checkpoint_rounds_total{flow=\"src-dst\"}")
            .unwrap_or(0.0)
    };
    // The offset syncs of the last records are in (flushed within 500 ms of
    // replication) once a round has run after replication.
    let r = rounds();
    wait_for("two checkpoint rounds", MINUTE, || rounds() >= r + 2.0);

    let groups: Vec<GroupCommits> = (0..100)
        .map(|i| {
            let p = i % 4;
            (
                format!("{prefix}-{i}"),
                vec![(
                    TopicPartition::new(t.clone(), p),
                    NextOffset(10 + i64::from(i) % 80),
                )],
            )
        })
        .collect();
    let before = rounds();
    commit_groups(&sb.source, &groups);
    let mut found = std::collections::HashMap::new();
    wait_for("a checkpoint of every group", MINUTE, || {
        for (g, topic, p, up, down) in checkpoints(&sb.target, "src.checkpoints.internal") {
            if topic == remote {
                found.insert(g, (p, up, down));
            }
        }
        groups.iter().all(|(g, _)| found.contains_key(g))
    });
    let after = rounds();
    // The round under way when the commits landed may have listed the
    // groups before them; the next one carries every group. (One more may
    // finish before the test sees the checkpoints.)
    assert!(
        after - before <= 3.0,
        "checkpoints of 100 groups took {} rounds",
        after - before
    );
    for (g, offsets) in &groups {
        let (TopicPartition { partition: p, .. }, NextOffset(at)) = offsets[0];
        assert_eq!(found[g], (p, at, at), "{g}: exact, at the committed offset");
    }
    println!(
        "100 groups checkpointed {} round(s) after their commits",
        after - before
    );
    let (code, status) = strait.get_json("/v1/status");
    assert_eq!(code, 200);
    let cp = &status["flows"][0]["checkpoints"];
    assert_eq!(cp["groups"], 100, "{cp}");
    assert!(cp["lag_seconds"].is_number(), "{cp}");
    assert!(cp["oldest_group"].as_str().unwrap().starts_with(&prefix));
    assert!(strait
        .metric("strait_checkpoint_lag_seconds{flow=\"src-dst\"}")
        .is_some());
}

#[test]
fn failover_of_all_groups_refuses_the_one_active_on_the_target_and_writes_the_others() {
    let sb = sandbox();
    let t = unique("all");
    let remote = format!("src.{t}");
    let prefix = unique("all-app");
    let deployment = unique("all");
    let (a, b, active) = (
        format!("{prefix}-a"),
        format!("{prefix}-b"),
        format!("{prefix}-active"),
    );
    create_topic(&sb.source, &t, 1);
    produce(&sb.source, &t, &Rec::seqs(1, 0..100));
    commit_group(&sb.source, &a, &t, &[(0, 20)]);
    commit_group(&sb.source, &b, &t, &[(0, 30)]);
    commit_group(&sb.source, &active, &t, &[(0, 40)]);
    let cfg = checkpoint_config(
        &sb,
        &deployment,
        &t,
        &format!("checkpoints = true\ncheckpoint_interval = \"500ms\"\ngroups = [\"{prefix}-.*\"]"),
    );
    let strait = Strait::start(&deployment, &cfg);
    wait_for("replication", MINUTE, || {
        committed(&sb.source, &format!("strait.{deployment}.src-dst"), &t, 1) == vec![Some(100)]
    });
    // An application already runs on the target in one of the groups.
    // Kafka lists its member (DescribeGroups), so strait refuses the group
    // before writing anything. tansu lists a kafka-python member as 0
    // members, so there only the broker's refusal of the commit
    // (UnknownMemberId) shows it: the path a Kafka takes when a member
    // joins after the listing.
    let member = Member::join(&sb.target, &active, &remote);
    let seen_by = match sb.broker {
        Broker::Kafka => "listed as active on the target",
        Broker::Tansu => "refused the commit",
    };

    let failover = |extra: &[&str]| {
        let mut args = vec!["offsets", "failover", "--all-groups", "--flow", "src-dst"];
        args.extend_from_slice(extra);
        cli_within(&strait, &args, Duration::from_secs(60)).0
    };
    let at = |g: &str| committed(&sb.target, g, &remote, 1)[0];

    let out = failover(&["--dry-run"]);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(table.contains("would write"), "{table}");
    assert_eq!((at(&a), at(&b)), (None, None), "a dry run writes nothing");

    let out = failover(&[]);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{table}{}", stderr(&out));
    assert_eq!(out.status.code(), Some(3), "{table}{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("group {active} has active members"))
            && stderr(&out).contains(seen_by),
        "{}",
        stderr(&out)
    );
    assert_eq!((at(&a), at(&b), at(&active)), (Some(20), Some(30), None));
    for header in [
        "group",
        "topic",
        "partition",
        "source",
        "target",
        "exact",
        "max re-read",
    ] {
        assert!(table.lines().next().unwrap().contains(header), "{table}");
    }

    // Twice: nothing changes; the active group is still refused.
    let out = failover(&[]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        table.lines().filter(|l| l.contains("up to date")).count(),
        2,
        "{table}"
    );
    assert_eq!((at(&a), at(&b), at(&active)), (Some(20), Some(30), None));

    // Once its application has stopped, the group fails over too.
    drop(member);
    let mut last = None;
    wait_for("the failover of the idle group", MINUTE, || {
        let out = failover(&[]);
        last = Some(stderr(&out));
        out.status.success()
    });
    assert_eq!(at(&active), Some(40), "{last:?}");
}

#[test]
fn a_failover_from_checkpoints_needs_nothing_from_a_lost_source() {
    let sb = sandbox();
    let t = unique("lost");
    let remote = format!("src.{t}");
    let prefix = unique("lost-app");
    let deployment = unique("lost");
    let (a, b) = (format!("{prefix}-a"), format!("{prefix}-b"));
    create_topic(&sb.source, &t, 2);
    produce(&sb.source, &t, &Rec::seqs(2, 0..100));
    commit_group(&sb.source, &a, &t, &[(0, 20), (1, 25)]);
    commit_group(&sb.source, &b, &t, &[(0, 30)]);
    let cfg = checkpoint_config(
        &sb,
        &deployment,
        &t,
        &format!("checkpoints = true\ncheckpoint_interval = \"500ms\"\ngroups = [\"{prefix}-.*\"]"),
    );
    let strait = Strait::start(&deployment, &cfg);
    wait_for("checkpoints of both groups", MINUTE, || {
        let cps = checkpoints(&sb.target, "src.checkpoints.internal");
        let has = |g: &str, p, at| {
            cps.iter()
                .any(|c| c.0 == g && c.1 == remote && c.2 == p && c.3 == at)
        };
        has(&a, 0, 20) && has(&a, 1, 25) && has(&b, 0, 30)
    });

    // The source is lost: the operator's config still names it, but
    // nothing answers there.
    let lost = std::env::temp_dir().join(format!("{deployment}-lost.toml"));
    let text = std::fs::read_to_string(strait.config_path())
        .unwrap()
        .replace(&sb.source, "127.0.0.1:1");
    std::fs::write(&lost, text).unwrap();
    let (out, _) = cli_with_config(
        &strait,
        &lost,
        &["offsets", "failover", "--all-groups"],
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--from-checkpoints"),
        "{}",
        stderr(&out)
    );
    assert_eq!(committed(&sb.target, &a, &remote, 2), vec![None, None]);

    let (out, _) = cli_with_config(
        &strait,
        &lost,
        &[
            "offsets",
            "translate",
            "--all-groups",
            "--from-checkpoints",
            "--json",
        ],
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 3, "{rows}");
    assert!(
        rows[0]["exact"].is_null(),
        "not recorded in checkpoints: {rows}"
    );

    let (out, _) = cli_with_config(
        &strait,
        &lost,
        &["offsets", "failover", "--all-groups", "--from-checkpoints"],
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        committed(&sb.target, &a, &remote, 2),
        vec![Some(20), Some(25)]
    );
    assert_eq!(committed(&sb.target, &b, &remote, 2)[0], Some(30));
    let _ = std::fs::remove_file(&lost);
}
