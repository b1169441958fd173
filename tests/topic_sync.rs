//! Remote topics following their source, end to end on Apache Kafka: a
//! source topic that gains partitions, literal topic ACLs copied as
//! MirrorMaker 2 maps them, and topic configs kept in step. (tansu has no
//! CreatePartitions, answers CreateAcls with a null result array and flags a
//! topic's own configs as broker defaults: there these were tested against
//! the admin double only.)

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminOptions, ConfigSource, NewPartitions, ResourceSpecifier};
use strait_controller::admin::{ClusterAdmin, KafkaAdmin};
use strait_controller::native_admin::{AclOperation, AclPermission, ConfigOp, TopicAcl};
use support::*;

const MINUTE: Duration = Duration::from_secs(60);

/// strait's own admin client (the librdkafka bindings of
/// controller/src/native_admin.rs): rdkafka 0.39 has no ACL calls.
fn admin(bootstrap: &str) -> KafkaAdmin {
    let cluster: strait_common::config::ClusterConfig =
        toml::from_str(&format!("bootstrap = \"{bootstrap}\"")).unwrap();
    KafkaAdmin::new(&cluster).unwrap()
}

/// Every config of a topic as the broker describes it: (name, value,
/// whether it is set on the topic itself).
fn describe(bootstrap: &str, topic: &str) -> Vec<(String, Option<String>, bool)> {
    let r = block_on(
        rd_admin(bootstrap)
            .describe_configs([&ResourceSpecifier::Topic(topic)], &AdminOptions::new()),
    )
    .unwrap();
    r.into_iter()
        .next()
        .unwrap()
        .unwrap()
        .entries
        .into_iter()
        .map(|e| {
            let own = matches!(e.source, ConfigSource::DynamicTopic);
            (e.name, e.value, own)
        })
        .collect()
}

/// The value of one config of a topic.
fn config_value(bootstrap: &str, topic: &str, name: &str) -> Option<String> {
    describe(bootstrap, topic)
        .into_iter()
        .find(|(n, ..)| n == name)
        .and_then(|(_, v, _)| v)
}

/// This test's entry of `/v1/status`'s `topics`.
fn topic_status(strait: &Strait, topic: &str) -> serde_json::Value {
    let (_, status) = strait.get_json("/v1/status");
    status["topics"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["topic"] == topic)
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

/// Position of the first log line containing every one of `parts`.
fn line_index(log: &str, parts: &[&str]) -> Option<usize> {
    log.lines()
        .position(|l| parts.iter().all(|p| l.contains(p)))
}

#[test]
fn a_source_topic_that_gains_partitions_grows_its_remote_topic_first() {
    let sb = sandbox();
    if sb.skip_on_tansu("tansu has no CreatePartitions") {
        return;
    }
    let t = unique("grow");
    let remote = format!("src.{t}");
    let deployment = unique("grow");
    let group = format!("strait.{deployment}.src-dst");
    create_topic(&sb.source, &t, 2);
    produce(&sb.source, &t, &Rec::seqs(2, 0..100));
    let strait = Strait::start(&deployment, &config(&sb, &deployment, &t, "", ""));
    wait_for(
        "the first records of both partitions committed",
        MINUTE,
        || committed(&sb.source, &group, &t, 2) == vec![Some(100); 2],
    );
    assert_eq!(partitions(&sb.target, &remote), Some(2));

    // The source topic grows to 4 partitions while replicated.
    let grown = Instant::now();
    let result = block_on(
        rd_admin(&sb.source).create_partitions([&NewPartitions::new(&t, 4)], &AdminOptions::new()),
    )
    .unwrap();
    assert!(result.iter().all(Result::is_ok), "{result:?}");
    wait_for("4 partitions on the source", MINUTE, || {
        partitions(&sb.source, &t) == Some(4)
    });
    // Partitions 0 and 1 go on at 100; 2 and 3 start at 0.
    let mut more: Vec<Rec> = (100..200)
        .flat_map(|s| [Rec::seq(0, s), Rec::seq(1, s)])
        .collect();
    more.extend((0..200).flat_map(|s| [Rec::seq(2, s), Rec::seq(3, s)]));
    produce(&sb.source, &t, &more);
    wait_for("the remote topic grown to 4", MINUTE, || {
        partitions(&sb.target, &remote) == Some(4)
    });
    let remote_grown_after = grown.elapsed();

    // Every record of the 4 partitions arrives once, each in its own
    // partition (check_sequences reads the partition out of the value).
    let got = consume(&sb.target, &remote, 4, 800, MINUTE);
    let dups = check_sequences(&got, 4, 200);
    assert_eq!(dups, 0, "one uninterrupted run writes no duplicates");
    for p in 2..4 {
        assert_eq!(got.iter().filter(|r| r.partition == p).count(), 200);
    }
    wait_for("every partition committed to its end", MINUTE, || {
        committed(&sb.source, &group, &t, 4) == vec![Some(200); 4]
    });
    let all_arrived_after = grown.elapsed();

    // The order: the remote topic grew before either new unit started.
    let log = strait.log_text();
    let grew = line_index(
        &log,
        &[
            "remote topic grown",
            &format!("topic={remote} "),
            "from=2 to=4",
        ],
    )
    .unwrap_or_else(|| panic!("no `remote topic grown` line:\n{log}"));
    for p in 2..4 {
        let started = line_index(
            &log,
            &["unit started", &format!("topic={t} partition={p} ")],
        )
        .unwrap_or_else(|| panic!("partition {p} never started:\n{log}"));
        assert!(
            grew < started,
            "partition {p} started (line {started}) before the remote topic grew (line {grew})"
        );
    }
    assert!(
        !log.contains("cannot grow"),
        "CreatePartitions worked at once:\n{log}"
    );
    // The producer learns of the new partitions without a session restart
    // (which would re-send what was in flight: the duplicates above).
    assert!(
        !log.lines()
            .skip(grew)
            .any(|l| l.contains("flow session failed")),
        "no session restart after the growth:\n{log}"
    );
    assert_eq!(
        strait.metric("strait_remote_topics_recreated_total{flow=\"src-dst\"}"),
        None,
        "no false alarm: the remote topic was never deleted\n{log}"
    );
    assert_eq!(
        strait.metric("strait_errors_total{flow=\"src-dst\",kind=\"create_partitions\"}"),
        None
    );
    assert_eq!(
        strait.metric("strait_discovered_units{flow=\"src-dst\"}"),
        Some(4.0)
    );
    let status = topic_status(&strait, &t);
    assert_eq!(
        (
            status["source_partitions"].as_i64(),
            status["target_partitions"].as_i64()
        ),
        (Some(4), Some(4)),
        "{status}"
    );
    assert!(status["note"].is_null(), "{status}");
    println!(
        "partition growth: remote topic at 4 partitions {remote_grown_after:?} after the source grew; all 800 records committed after {all_arrived_after:?}"
    );
}

fn acl(topic: &str, who: &str, operation: AclOperation, permission: AclPermission) -> TopicAcl {
    TopicAcl {
        topic: topic.to_owned(),
        principal: format!("User:{who}"),
        host: "*".into(),
        operation,
        permission,
    }
}

/// The literal ACLs of `topic` on a cluster.
fn acls_of(bootstrap: &str, topic: &str) -> BTreeSet<TopicAcl> {
    block_on(admin(bootstrap).topic_acls())
        .unwrap()
        .into_iter()
        .filter(|a| a.topic == topic)
        .collect()
}

#[test]
fn topic_acls_are_copied_as_mirrormaker2_maps_them_and_deletions_follow_when_asked() {
    use AclOperation::*;
    use AclPermission::*;
    let sb = sandbox();
    if sb.skip_on_tansu("tansu answers CreateAcls with a null result array (librdkafka aborts)") {
        return;
    }
    let t = unique("acls");
    let remote = format!("src.{t}");
    // A topic of the target's own, with an ACL no flow may touch.
    let local = unique("acls-local");
    let deployment = unique("acls");
    create_topic(&sb.source, &t, 1);
    create_topic(&sb.target, &local, 1);
    let (src, dst) = (admin(&sb.source), admin(&sb.target));
    block_on(src.create_acls(vec![
        acl(&t, "alice", Read, Allow),
        acl(&t, "bob", Write, Allow),
        acl(&t, "carol", All, Allow),
        acl(&t, "dave", Write, Deny),
        acl(&t, "erin", Describe, Allow),
    ]))
    .unwrap();
    block_on(dst.create_acls(vec![acl(&local, "grace", Read, Allow)])).unwrap();
    wait_for("the source serving its 5 ACLs", MINUTE, || {
        acls_of(&sb.source, &t).len() == 5
    });

    let flow = "sync_acls = true\nconfig_sync_interval = \"1s\"";
    let mut strait = Strait::start(&deployment, &config(&sb, &deployment, &t, flow, ""));
    let mapped: BTreeSet<TopicAcl> = [
        acl(&remote, "alice", Read, Allow),
        acl(&remote, "carol", Read, Allow), // ALLOW ALL becomes ALLOW READ
        acl(&remote, "dave", Write, Deny),  // DENY copied as is
        acl(&remote, "erin", Describe, Allow),
    ]
    .into();
    let started = Instant::now();
    let mut have = BTreeSet::new();
    wait_for("the remote topic's ACLs", MINUTE, || {
        have = acls_of(&sb.target, &remote);
        have == mapped
    });
    let copied_after = started.elapsed();
    assert!(
        !have.iter().any(|a| a.principal == "User:bob"),
        "ALLOW WRITE is never copied: {have:?}"
    );
    assert_eq!(
        strait.metric("strait_acls_changed_total{flow=\"src-dst\",change=\"created\"}"),
        Some(4.0),
        "{}",
        strait.metrics()
    );

    // Without sync_acl_deletions, an ACL removed on the source stays on the
    // target. frank's ACL, created after erin's was removed, shows a round
    // ran that saw the removal.
    block_on(src.delete_acls(vec![acl(&t, "erin", Describe, Allow)])).unwrap();
    block_on(src.create_acls(vec![acl(&t, "frank", Read, Allow)])).unwrap();
    wait_for("frank's ACL copied", MINUTE, || {
        acls_of(&sb.target, &remote).contains(&acl(&remote, "frank", Read, Allow))
    });
    assert!(
        acls_of(&sb.target, &remote).contains(&acl(&remote, "erin", Describe, Allow)),
        "removals are not reflected without sync_acl_deletions"
    );
    assert!(strait.stop_with("TERM", MINUTE).success());

    // With sync_acl_deletions, the removal reaches the remote topic, and
    // only there.
    let flow = format!("{flow}\nsync_acl_deletions = true");
    let strait = Strait::start(
        &format!("{deployment}-deletions"),
        &config(&sb, &deployment, &t, &flow, ""),
    );
    let started = Instant::now();
    let want: BTreeSet<TopicAcl> = [
        acl(&remote, "alice", Read, Allow),
        acl(&remote, "carol", Read, Allow),
        acl(&remote, "dave", Write, Deny),
        acl(&remote, "frank", Read, Allow),
    ]
    .into();
    wait_for("erin's ACL removed from the remote topic", MINUTE, || {
        have = acls_of(&sb.target, &remote);
        have == want
    });
    let removed_after = started.elapsed();
    assert_eq!(
        acls_of(&sb.target, &local),
        [acl(&local, "grace", Read, Allow)].into(),
        "an ACL of a topic the flow does not write is never touched"
    );
    assert_eq!(
        strait.metric("strait_acls_changed_total{flow=\"src-dst\",change=\"deleted\"}"),
        Some(1.0),
        "{}",
        strait.metrics()
    );
    assert_eq!(
        strait.metric("strait_errors_total{flow=\"src-dst\",kind=\"acls\"}"),
        None
    );
    println!(
        "ACL sync: 5 source ACLs -> 4 on the remote topic after {copied_after:?}; a removal reflected {removed_after:?} after the restart with sync_acl_deletions"
    );
}

#[test]
fn topic_configs_are_created_and_kept_in_step_without_false_mismatches() {
    let sb = sandbox();
    if sb.skip_on_tansu("tansu flags a topic's own configs as broker defaults") {
        return;
    }
    let t = unique("configs");
    let remote = format!("src.{t}");
    let deployment = unique("configs");
    create_topic_with(
        &sb.source,
        &t,
        1,
        &[
            ("retention.ms", "86400000"),
            ("cleanup.policy", "compact"),
            // Excluded by default (configs_exclude): never copied.
            ("min.insync.replicas", "1"),
        ],
    );
    produce(&sb.source, &t, &Rec::seqs(1, 0..20));
    let interval = Duration::from_secs(3);
    let flow = format!("config_sync_interval = \"{}s\"", interval.as_secs());
    let strait = Strait::start(&deployment, &config(&sb, &deployment, &t, &flow, ""));
    let got = consume(&sb.target, &remote, 1, 20, MINUTE);
    assert_eq!(check_sequences(&got, 1, 20), 0);

    // Created with the source's topic-level configs, minus the excluded one.
    let created = describe(&sb.target, &remote);
    let get = |name: &str| {
        created
            .iter()
            .find(|(n, ..)| n == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {created:?}"))
    };
    assert_eq!(get("retention.ms").1.as_deref(), Some("86400000"));
    assert_eq!(get("cleanup.policy").1.as_deref(), Some("compact"));
    assert!(get("retention.ms").2, "{:?}", get("retention.ms"));
    assert!(
        !get("min.insync.replicas").2,
        "excluded configs are not copied: {:?}",
        get("min.insync.replicas")
    );
    wait_for("configs_in_sync in /v1/status", MINUTE, || {
        topic_status(&strait, &t)["configs_in_sync"] == true
    });
    assert_eq!(
        strait.metric("strait_topics_config_mismatched{flow=\"src-dst\"}"),
        Some(0.0)
    );

    // A config set only on the target is left alone.
    let (src, dst) = (admin(&sb.source), admin(&sb.target));
    block_on(dst.alter_topic_configs(
        &remote,
        vec![ConfigOp::Set("segment.ms".into(), "3600000".into())],
    ))
    .unwrap();
    // A change on the source reaches the target within the interval (plus
    // a discovery round and the calls).
    block_on(src.alter_topic_configs(
        &t,
        vec![ConfigOp::Set("retention.ms".into(), "172800000".into())],
    ))
    .unwrap();
    let altered = Instant::now();
    wait_for(
        "the new retention.ms on the target",
        interval + Duration::from_secs(4),
        || config_value(&sb.target, &remote, "retention.ms").as_deref() == Some("172800000"),
    );
    let reached_after = altered.elapsed();
    // Exactly that one change was ever made: every round before it found
    // the remote topic in step (no false mismatch).
    wait_for("the change counted", Duration::from_secs(10), || {
        strait.metric("strait_topic_configs_changed_total{flow=\"src-dst\"}") == Some(1.0)
    });
    assert_eq!(
        strait.metric("strait_topics_config_mismatched{flow=\"src-dst\"}"),
        Some(0.0)
    );
    assert_eq!(topic_status(&strait, &t)["configs_in_sync"], true);
    assert_eq!(
        config_value(&sb.target, &remote, "segment.ms").as_deref(),
        Some("3600000"),
        "a target-only config stays"
    );
    assert_eq!(
        config_value(&sb.target, &remote, "cleanup.policy").as_deref(),
        Some("compact")
    );
    let log = strait.log_text();
    assert_eq!(
        log.matches("remote topic configs synced").count(),
        1,
        "one change, one line:\n{log}"
    );
    assert!(!log.contains("configs not"), "{log}");
    assert_eq!(
        strait.metric("strait_remote_topics_recreated_total{flow=\"src-dst\"}"),
        None,
        "no false alarm: the remote topic was never deleted\n{log}"
    );
    println!("config sync: a source change reached the target after {reached_after:?} (interval {interval:?})");
}
