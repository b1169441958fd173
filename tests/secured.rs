//! strait between secured Apache Kafka clusters (issue "Secured clusters"):
//! a source that takes SASL/SCRAM-SHA-512 over TLS and a target that takes
//! mutual TLS, both enforcing ACLs (`allow.everyone.if.no.acl.found=false`)
//! with one super user, `admin`. strait's principal is `strait`, with the
//! ACLs granted here by Kafka's own `kafka-acls`. The certificates are made
//! for this run with openssl. The clusters are the test's own, stopped when
//! it ends (a static would outlive the test binary's harness: its children
//! keep the harness's output open).

mod support;

use std::time::Duration;

use strait_testkit::acls::{Acl, Kind};
use strait_testkit::config::ConfigBuilder;
use strait_testkit::secured::{Pki, SecuredKafka, Security};
use support::*;

const MINUTE: Duration = Duration::from_secs(60);
const STRAIT_PASSWORD: &str = "strait-pw-never-logged";
/// `other`'s SCRAM password on the source; on the target `other` is a
/// client certificate (CN=other). It starts with no ACL at all.
const OTHER_PASSWORD: &str = "other-pw-never-logged";

struct Clusters {
    source: SecuredKafka,
    target: SecuredKafka,
    pki: Pki,
}

/// Two secured clusters; `strait` may do everything on both (the
/// least-privilege set is the next step).
fn clusters() -> Clusters {
    {
        let dir = std::env::temp_dir()
            .join("strait-tests")
            .join(unique("secured"));
        let pki = Pki::new(&dir.join("pki"));
        let source = SecuredKafka::start(
            &dir.join("source"),
            Security::SaslSsl,
            &pki,
            &[("strait", STRAIT_PASSWORD), ("other", OTHER_PASSWORD)],
        );
        let target = SecuredKafka::start(&dir.join("target"), Security::Mtls, &pki, &[]);
        for k in [&source, &target] {
            k.kafka_acls(&[
                "--add",
                "--allow-principal",
                "User:strait",
                "--operation",
                "All",
                "--topic",
                "*",
                "--group",
                "*",
                "--transactional-id",
                "*",
                "--cluster",
            ]);
        }
        Clusters {
            source,
            target,
            pki,
        }
    }
}

/// A config whose clusters are the secured ones, strait logging in as
/// `strait`.
fn secured_config(c: &Clusters, deployment: &str, topic: &str) -> String {
    config_with(c, deployment, topic, |_, _| {})
}

/// [`secured_config`] with `change` applied to each cluster's settings
/// (called with the cluster's alias, `src` or `dst`); a setting whose value
/// becomes empty is left out.
fn config_with(
    c: &Clusters,
    deployment: &str,
    topic: &str,
    change: impl Fn(&str, &mut Vec<(String, String)>),
) -> String {
    let mut b = ConfigBuilder::new(deployment, &c.source.bootstrap, &c.target.bootstrap)
        .flow("topics", [topic])
        .flow("checkpoint_interval", "1s")
        .quick();
    let mut source = c.source.client_settings("strait", STRAIT_PASSWORD);
    change("src", &mut source);
    for (k, v) in source.into_iter().filter(|(_, v)| !v.is_empty()) {
        b = b.source_kafka(&k, v.as_str());
    }
    let mut target = c.target.client_settings("strait", "");
    change("dst", &mut target);
    for (k, v) in target.into_iter().filter(|(_, v)| !v.is_empty()) {
        b = b.target_kafka(&k, v.as_str());
    }
    b.build()
}

/// Waits until the target holds a checkpoint of `group` on `remote` at
/// each (partition, upstream offset) of `want`.
fn wait_for_checkpoints(target: &str, group: &str, remote: &str, want: &[(i32, i64)]) {
    wait_for("the group's checkpoints", MINUTE, || {
        let cps = checkpoints(target, "src.checkpoints.internal");
        want.iter().all(|&(p, up)| {
            cps.iter()
                .any(|(g, t, part, u, _)| g == group && t == remote && *part == p && *u == up)
        })
    });
}

/// How one case changes a cluster's client settings: given the
/// certificates, the cluster's alias and its settings.
type Change = fn(&Pki, &str, &mut Vec<(String, String)>);

/// Sets `key` to `value` in `settings` (empty: left out).
fn set(settings: &mut [(String, String)], key: &str, value: &str) {
    for (k, v) in settings.iter_mut() {
        if k == key {
            *v = value.to_owned();
        }
    }
}

/// Runs `strait run` on `config`, which must stop at start: returns what
/// it printed.
fn refused_at_start(deployment: &str, config: &str) -> String {
    let path = std::env::temp_dir()
        .join("strait-tests")
        .join(format!("{deployment}.toml"));
    std::fs::write(&path, config.replace("{metrics}", "127.0.0.1:0")).unwrap();
    let started = std::time::Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strait"))
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let printed = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        !out.status.success(),
        "strait ran with a refused login: {printed}"
    );
    assert!(
        started.elapsed() < MINUTE,
        "refused only after {:?}",
        started.elapsed()
    );
    assert!(
        !printed.contains(STRAIT_PASSWORD) && !printed.contains("wrong-pw-never-logged"),
        "a password in the output: {printed}"
    );
    printed
}

#[test]
fn strait_replicates_checkpoints_and_fails_over_from_a_sasl_ssl_source_to_an_mtls_target() {
    let c = &clusters();
    let (source, target) = (&c.source.bootstrap, &c.target.bootstrap);
    let topic = unique("sec");
    let remote = format!("src.{topic}");
    let group = unique("sec-app");
    let deployment = unique("sec");
    create_topic(source, &topic, 2);
    produce(source, &topic, &Rec::seqs(2, 0..500));
    let mut strait = Strait::start(&deployment, &secured_config(c, &deployment, &topic));
    let got = consume(target, &remote, 2, 1000, MINUTE);
    assert_eq!(
        check_sequences(&got, 2, 500),
        0,
        "duplicates in a clean run"
    );

    // A consumer group on the source is checkpointed on the target, and
    // fails over there.
    commit_group(source, &group, &topic, &[(0, 300), (1, 200)]);
    wait_for_checkpoints(target, &group, &remote, &[(0, 300), (1, 200)]);
    let out = strait.cli(&["offsets", "failover", "--group", &group]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        committed(target, &group, &remote, 2),
        vec![Some(300), Some(200)]
    );
    // Heartbeats flow too: their topic is on the target.
    wait_for("heartbeats replicated", MINUTE, || {
        strait
            .metric("strait_heartbeat_age_seconds{flow=\"src-dst\"}")
            .is_some()
    });
    let log = strait.log_text();
    assert!(
        !log.contains(STRAIT_PASSWORD) && !log.contains(strait_testkit::secured::ADMIN_PASSWORD),
        "a password in the log"
    );
    strait.stop_with("TERM", MINUTE);

    // Logins refused for good stop strait at start, naming the cluster and
    // the reason, instead of a WARN a second.
    let cases: [(&str, &str, Change, &str); 5] = [
        (
            "a wrong password",
            "src",
            |_, a, s| {
                if a == "src" {
                    set(s, "sasl.password", "wrong-pw-never-logged")
                }
            },
            "the SASL login was refused",
        ),
        (
            "a CA that did not sign the broker's certificate",
            "src",
            |p, a, s| {
                if a == "src" {
                    set(s, "ssl.ca.location", &p.path("other-ca.crt"))
                }
            },
            "does not trust the broker's certificate",
        ),
        (
            "no client certificate",
            "dst",
            |_, a, s| {
                if a == "dst" {
                    set(s, "ssl.certificate.location", "");
                    set(s, "ssl.key.location", "")
                }
            },
            "refused strait's client certificate",
        ),
        (
            "a client certificate from an unknown CA",
            "dst",
            |p, a, s| {
                if a == "dst" {
                    set(s, "ssl.certificate.location", &p.path("stranger.crt"));
                    set(s, "ssl.key.location", &p.path("stranger.key"))
                }
            },
            "refused strait's client certificate",
        ),
        (
            "an expired client certificate",
            "dst",
            |p, a, s| {
                if a == "dst" {
                    set(s, "ssl.certificate.location", &p.path("expired.crt"));
                    set(s, "ssl.key.location", &p.path("expired.key"))
                }
            },
            "refused strait's client certificate",
        ),
    ];
    for (what, alias, change, reason) in cases {
        let d = unique("refused");
        let printed =
            refused_at_start(&d, &config_with(c, &d, &topic, |a, s| change(&c.pki, a, s)));
        assert!(
            printed.contains(&format!("cluster {alias} refuses strait's login"))
                && printed.contains(reason),
            "{what}: expected the cluster {alias} and {reason:?} in: {printed}"
        );
    }
}

/// The least-privilege ACL set of docs/security.md for a flow `src-dst` of
/// deployment `d`, replicating `topic` and checkpointing `group`, with
/// heartbeats, checkpoints, topic-config sync, ACL sync, failover and
/// failback: each ACL with its cluster (`src` or `dst`), in the table's
/// order.
fn least_privilege(d: &str, topic: &str, group: &str) -> Vec<(&'static str, Acl)> {
    let cg = format!("strait.{d}.src-dst");
    let clients = format!("{cg}.");
    let syncs = "mm2-offset-syncs.dst.internal";
    vec![
        // replication
        ("src", Acl::literal(Kind::Topic, topic, "Read")),
        ("src", Acl::literal(Kind::Group, &cg, "Read")),
        ("dst", Acl::prefixed(Kind::Topic, "src.", "Create")),
        ("dst", Acl::prefixed(Kind::Topic, "src.", "Write")),
        ("dst", Acl::prefixed(Kind::Topic, "src.", "Alter")),
        // offset syncs
        ("src", Acl::literal(Kind::Topic, syncs, "Create")),
        ("src", Acl::literal(Kind::Topic, syncs, "Write")),
        // checkpoints (and failover)
        ("src", Acl::literal(Kind::Topic, syncs, "Read")),
        ("src", Acl::literal(Kind::Group, group, "Describe")),
        ("src", Acl::prefixed(Kind::Group, &clients, "Describe")),
        ("dst", Acl::prefixed(Kind::Topic, "src.", "Read")),
        ("dst", Acl::prefixed(Kind::Group, &clients, "Describe")),
        (
            "dst",
            Acl::prefixed(Kind::TransactionalId, &clients, "Write"),
        ),
        // heartbeats
        ("src", Acl::literal(Kind::Topic, "heartbeats", "Create")),
        ("src", Acl::literal(Kind::Topic, "heartbeats", "Write")),
        ("src", Acl::literal(Kind::Topic, "heartbeats", "Read")),
        // topic config sync
        ("src", Acl::literal(Kind::Topic, topic, "DescribeConfigs")),
        (
            "src",
            Acl::literal(Kind::Topic, "heartbeats", "DescribeConfigs"),
        ),
        ("dst", Acl::prefixed(Kind::Topic, "src.", "AlterConfigs")),
        // ACL sync
        ("src", Acl::cluster("Describe")),
        ("dst", Acl::cluster("Alter")),
        // failover (strait offsets failover)
        ("dst", Acl::literal(Kind::Group, group, "Read")),
        // failback (strait offsets failback)
        ("src", Acl::literal(Kind::Group, group, "Read")),
    ]
}

/// Runs `strait check --preflight --failover --failback` on `config`:
/// (exit code, output).
fn preflight(config: &std::path::Path) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strait"))
        .args([
            "check",
            "--preflight",
            "--failover",
            "--failback",
            "--config",
        ])
        .arg(config)
        .output()
        .unwrap();
    let printed = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        !printed.contains(OTHER_PASSWORD) && !printed.contains(STRAIT_PASSWORD),
        "a password in the preflight's output"
    );
    (out.status.code().unwrap_or(-1), printed)
}

/// The features the preflight's MISSING lines name.
fn missing_features(printed: &str) -> std::collections::BTreeSet<String> {
    printed
        .lines()
        .filter(|l| l.starts_with("MISSING "))
        .filter_map(|l| {
            let after = l.split(" for ").nth(1)?;
            Some(after.split(" (flow ").next()?.to_owned())
        })
        .collect()
}

#[test]
fn the_documented_least_privilege_set_replicates_checkpoints_and_fails_over_and_the_preflight_names_each_missing_acl(
) {
    let c = &clusters();
    let (source, target) = (&c.source.bootstrap, &c.target.bootstrap);
    let topic = unique("lp");
    let remote = format!("src.{topic}");
    let group = unique("lp-app");
    let d = unique("lp");
    create_topic(source, &topic, 2);
    produce(source, &topic, &Rec::seqs(2, 0..500));

    // strait logs in as `other`, whose password comes from a file.
    let dir = std::env::temp_dir().join("strait-tests").join(&d);
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("sasl-password");
    std::fs::write(&secret, format!("{OTHER_PASSWORD}\n")).unwrap();
    let mut b = ConfigBuilder::new(&d, source, target)
        .flow("topics", [topic.as_str()])
        .flow("groups", [group.as_str()])
        .flow("checkpoint_interval", "1s")
        .flow("sync_acls", true)
        .target_raw("principal = \"User:other\"\n")
        .quick();
    for (k, v) in c.source.client_settings("other", "") {
        let v = if k == "sasl.password" {
            format!("${{file:{}}}", secret.display())
        } else {
            v
        };
        b = b.source_kafka(&k, v.as_str());
    }
    for (k, v) in c.target.client_settings("other", "") {
        b = b.target_kafka(&k, v.as_str());
    }
    let config = b.build();
    let path = dir.join("strait.toml");
    std::fs::write(&path, config.replace("{metrics}", "127.0.0.1:0")).unwrap();

    // No ACL at all: every permission is missing, each with its ACL.
    let (code, none) = preflight(&path);
    println!("preflight, no ACLs:\n{none}");
    assert_eq!(code, 1, "{none}");
    let acls = least_privilege(&d, &topic, &group);
    for (alias, acl) in &acls {
        let pattern = if acl.prefixed {
            " --resource-pattern-type prefixed"
        } else {
            ""
        };
        let flag = match acl.kind {
            Kind::Topic => format!("--topic '{}'", acl.name),
            Kind::Group => format!("--group '{}'", acl.name),
            Kind::TransactionalId => format!("--transactional-id '{}'", acl.name),
            Kind::Cluster => "--cluster".to_owned(),
        };

        let line = format!(
            "kafka-acls --bootstrap-server <{alias}> --add --allow-principal User:other --operation {} {flag}{pattern}",
            acl.operation
        );
        assert!(
            none.contains(&line),
            "the preflight does not name {line}:\n{none}"
        );
    }
    let grants = none
        .lines()
        .filter(|l| l.trim_start().starts_with("add: "))
        .count();
    let distinct: std::collections::BTreeSet<&str> = none
        .lines()
        .filter(|l| l.trim_start().starts_with("add: "))
        .collect();
    assert_eq!(
        distinct.len(),
        acls.len(),
        "the preflight asks for more than the documented set ({grants} lines):\n{none}"
    );

    // Exactly the documented set, and nothing more.
    let (src_acls, dst_acls): (Vec<_>, Vec<_>) = acls.iter().partition(|(a, _)| *a == "src");
    let set = |v: &[&(&str, Acl)]| v.iter().map(|(_, a)| a.clone()).collect::<Vec<_>>();
    c.source.acls("User:other", &set(&src_acls), true);
    c.target.acls("User:other", &set(&dst_acls), true);
    let mut granted = String::new();
    wait_for("the preflight finds nothing missing", MINUTE, || {
        let (code, out) = preflight(&path);
        granted = out;
        code == 0
    });
    println!("preflight, the least-privilege set, before strait ran:\n{granted}");

    let mut strait = Strait::start(&d, &config);
    let got = consume(target, &remote, 2, 1000, MINUTE);
    assert_eq!(
        check_sequences(&got, 2, 500),
        0,
        "duplicates in a clean run"
    );
    commit_group(source, &group, &topic, &[(0, 300), (1, 200)]);
    wait_for_checkpoints(target, &group, &remote, &[(0, 300), (1, 200)]);
    wait_for("heartbeats replicated", MINUTE, || {
        strait
            .metric("strait_heartbeat_age_seconds{flow=\"src-dst\"}")
            .is_some()
    });
    let log = strait.log_text();
    assert!(
        !log.contains("permission refused"),
        "a permission refused with the documented set:\n{log}"
    );
    assert!(!log.contains(OTHER_PASSWORD), "a password in the log");
    let (_, after) = preflight(&path);
    println!("preflight, the least-privilege set, strait running:\n{after}");
    assert!(!after.contains("MISSING"), "{after}");

    // At run time: the heartbeats' WRITE taken away is reported once, as a
    // missing permission in /v1/status and the metric, replication goes
    // on, and heartbeats resume on their own once it is granted again.
    let hb_write = Acl::literal(Kind::Topic, "heartbeats", "Write");
    c.source
        .acls("User:other", std::slice::from_ref(&hb_write), false);
    wait_for("the refusal in /v1/status", MINUTE, || {
        let (_, status) = strait.get_json("/v1/status");
        status["permissions_refused"].as_array().is_some_and(|r| {
            r.iter()
                .any(|d| d["feature"] == "heartbeats" && d["operation"] == "WRITE")
        })
    });
    assert_eq!(
        strait.metric("strait_permissions_missing{cluster=\"src\",operation=\"WRITE\"}"),
        Some(1.0)
    );
    produce(source, &topic, &Rec::seqs(2, 500..600));
    let got = consume(target, &remote, 2, 1200, MINUTE);
    assert_eq!(
        check_sequences(&got, 2, 600),
        0,
        "replication stopped with the heartbeats"
    );
    c.source
        .acls("User:other", std::slice::from_ref(&hb_write), true);
    wait_for("the refusal cleared", MINUTE, || {
        let (_, status) = strait.get_json("/v1/status");
        status["permissions_refused"]
            .as_array()
            .is_some_and(|r| r.is_empty())
    });
    let log = strait.log_text();
    let said = log.matches("permission refused").count();
    assert_eq!(said, 1, "the refusal said {said} times:\n{log}");

    // The failover, with the documented set.
    let out = strait.cli(&["offsets", "failover", "--group", &group]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        committed(target, &group, &remote, 2),
        vec![Some(300), Some(200)]
    );

    // The rest of the disaster-recovery cycle, with the documented set:
    // the group reads on to the end on the target and fails back (which
    // commits on the source); the un-replicated tail; a planned cutover
    // (dry run).
    commit_group(target, &group, &remote, &[(0, 600), (1, 600)]);
    for args in [
        &[
            "offsets", "failback", "--flow", "src-dst", "--group", &group,
        ][..],
        &["tail", "--flow", "src-dst"],
        &[
            "cutover",
            "--flow",
            "src-dst",
            "--dry-run",
            "--timeout",
            "60s",
        ],
    ] {
        let out = strait.cli(args);
        let printed = format!("{}{}", text(&out.stdout), text(&out.stderr));
        println!("strait {}:\n{printed}", args.join(" "));
        assert!(out.status.success(), "strait {}: {printed}", args.join(" "));
        assert!(
            !printed.to_lowercase().contains("authoriz") && !printed.contains("permission refused"),
            "strait {}: a permission refused with the documented set: {printed}",
            args.join(" ")
        );
    }
    let back = committed(source, &group, &topic, 2);
    assert!(
        back.iter()
            .zip([300, 200])
            .all(|(now, before)| now.is_some_and(|n| n > before && n <= 600)),
        "the failback moved the group on the source forward, never past the target's position: {back:?}"
    );
    strait.stop_with("TERM", MINUTE);

    // One ACL of each feature taken away: the preflight names that feature,
    // and only it.
    let one_each: [(&str, Acl, &[&str]); 8] = [
        (
            "src",
            Acl::literal(Kind::Topic, &topic, "Read"),
            &["replication"],
        ),
        (
            "src",
            Acl::literal(Kind::Topic, "mm2-offset-syncs.dst.internal", "Write"),
            &["offset syncs"],
        ),
        (
            "dst",
            Acl::prefixed(
                Kind::TransactionalId,
                &format!("strait.{d}.src-dst."),
                "Write",
            ),
            &["checkpoints"],
        ),
        (
            "src",
            Acl::literal(Kind::Topic, "heartbeats", "Write"),
            &["heartbeats"],
        ),
        (
            "dst",
            Acl::prefixed(Kind::Topic, "src.", "AlterConfigs"),
            &["topic config sync"],
        ),
        ("dst", Acl::cluster("Alter"), &["ACL sync"]),
        (
            "dst",
            Acl::literal(Kind::Group, &group, "Read"),
            &["failover (strait offsets failover)"],
        ),
        (
            "src",
            Acl::literal(Kind::Group, &group, "Read"),
            &["failback (strait offsets failback)"],
        ),
    ];
    for (alias, acl, features) in one_each {
        let k = if alias == "src" { &c.source } else { &c.target };
        k.acls("User:other", std::slice::from_ref(&acl), false);
        let want: std::collections::BTreeSet<String> =
            features.iter().map(|f| f.to_string()).collect();
        let mut out = String::new();
        wait_for(&format!("the preflight to miss {acl:?}"), MINUTE, || {
            let (code, o) = preflight(&path);
            out = o;
            code == 1 && missing_features(&out) == want
        });
        println!(
            "preflight without {acl:?}:\n{}",
            out.lines()
                .filter(|l| l.starts_with("MISSING") || l.trim_start().starts_with("add:"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        k.acls("User:other", std::slice::from_ref(&acl), true);
    }
}

/// The controller's admin calls, refused for want of an ACL by a real
/// broker, keep the broker's code: each is told as a refusal by it
/// (`admin::is_denied`), not by its words. So are the checkpoint writer's
/// transactions, which a failed round reports as its transactional id.
#[test]
fn the_admin_layers_refusals_keep_the_brokers_code() {
    use rdkafka::error::RDKafkaErrorCode as Code;
    use rdkafka::producer::{BaseProducer, Producer as _};
    use strait_controller::admin::{self, ClusterAdmin as _, KafkaAdmin};
    use strait_controller::native_admin::{AclOperation, AclPermission, ConfigOp, TopicAcl};

    let c = &clusters();
    let (source, target) = (&c.source.bootstrap, &c.target.bootstrap);
    let topic = unique("codes");
    let d = unique("codes");
    create_topic(source, &topic, 1);
    // `other`, with no ACL at all.
    let mut b = ConfigBuilder::new(&d, source, target).flow("topics", [topic.as_str()]);
    for (k, v) in c.source.client_settings("other", OTHER_PASSWORD) {
        b = b.source_kafka(&k, v.as_str());
    }
    let config =
        strait_common::config::Config::parse(&b.build().replace("{metrics}", "127.0.0.1:0"))
            .expect("the config");
    let cluster = &config.clusters["src"];
    let refused = |what: &str, e: anyhow::Error| {
        let code = admin::kafka_code(&e);
        println!("{what}: {code:?}: {e:#}");
        assert!(
            admin::is_denied(&e),
            "{what} not told as a refusal by its code ({code:?}): {e:#}"
        );
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let a = KafkaAdmin::new(cluster).unwrap();
        let acl = TopicAcl {
            topic: topic.clone(),
            principal: "User:nobody".into(),
            host: "*".into(),
            operation: AclOperation::Read,
            permission: AclPermission::Allow,
        };
        refused(
            "CreateTopics",
            a.create_topic(&format!("{topic}-new"), 1, None, &[])
                .await
                .unwrap_err(),
        );
        refused(
            "CreatePartitions",
            a.create_partitions(&topic, 2).await.unwrap_err(),
        );
        // rdkafka's describe_configs drops each resource's error; strait
        // asks librdkafka directly, which keeps it.
        refused(
            "DescribeConfigs",
            a.topic_configs(&topic).await.unwrap_err(),
        );
        refused(
            "IncrementalAlterConfigs",
            a.alter_topic_configs(
                &topic,
                vec![ConfigOp::Set("retention.ms".into(), "1000".into())],
            )
            .await
            .unwrap_err(),
        );
        // librdkafka drops DescribeAcls' error code; strait tells a refused
        // listing from an empty one by the cluster's authorized operations.
        refused("DescribeAcls", a.topic_acls().await.unwrap_err());
        refused(
            "CreateAcls",
            a.create_acls(vec![acl.clone()]).await.unwrap_err(),
        );
    });
    let producer: BaseProducer = strait_common::kafka::client_config(cluster)
        .set(
            "transactional.id",
            format!("strait.{d}.src-dst.checkpoints"),
        )
        .create()
        .unwrap();
    let e = anyhow::Error::from(producer.init_transactions(MINUTE).unwrap_err())
        .context("taking over the checkpoint producer (init transactions)");
    assert_eq!(
        admin::kafka_code(&e),
        Some(Code::TransactionalIdAuthorizationFailed),
        "{e:#}"
    );
    refused("InitProducerId", e);
}

/// A source that refuses DescribeAcls (its principal may describe the
/// topic, not the cluster) is an unknown, never an empty, list of ACLs: the
/// ACLs copied before stay on the remote topic, even with
/// `sync_acl_deletions`, and the refusal is reported like any other (the
/// cluster's DESCRIBE, for ACL sync). librdkafka reads DescribeAcls'
/// error code and drops it, so a refused listing answers "no ACLs".
#[test]
fn a_refused_acl_listing_on_the_source_deletes_no_copied_acl() {
    use strait_common::access::{denials, Operation};
    use strait_controller::admin::{ClusterAdmin as _, KafkaAdmin};
    use strait_controller::metadata;
    use strait_controller::native_admin::{AclOperation, AclPermission, TopicAcl};

    let c = &clusters();
    let (source, target) = (&c.source.bootstrap, &c.target.bootstrap);
    let topic = unique("aclguard");
    let d = unique("aclguard");
    create_topic(source, &topic, 1);
    // An ACL on the source topic that ACL sync copies.
    c.source.acls(
        "User:alice",
        &[Acl::literal(Kind::Topic, &topic, "Read")],
        true,
    );
    // `other` may describe the topic, not the cluster (no DescribeAcls).
    c.source.acls(
        "User:other",
        &[Acl::literal(Kind::Topic, &topic, "Describe")],
        true,
    );
    let config = |user: &str, password: &str| {
        let mut b = ConfigBuilder::new(&d, source, target)
            .flow("topics", [topic.as_str()])
            .flow("sync_acls", true)
            .flow("sync_acl_deletions", true);
        for (k, v) in c.source.client_settings(user, password) {
            b = b.source_kafka(&k, v.as_str());
        }
        for (k, v) in c.target.client_settings("strait", "") {
            b = b.target_kafka(&k, v.as_str());
        }
        strait_common::config::Config::parse(&b.build().replace("{metrics}", "127.0.0.1:0"))
            .expect("the config")
    };
    let permitted = config("strait", STRAIT_PASSWORD);
    let refused = config("other", OTHER_PASSWORD);
    let flow = &refused.flows[0];
    assert!(flow.sync_acl_deletions);
    let remote = flow.remote_topic(&topic);
    let acl = |principal: &str, operation| TopicAcl {
        topic: remote.clone(),
        principal: principal.into(),
        host: "*".into(),
        operation,
        permission: AclPermission::Allow,
    };
    // Both source ACLs are copied (`other`'s DESCRIBE too).
    let copied = vec![
        acl("User:alice", AclOperation::Read),
        acl("User:other", AclOperation::Describe),
    ];
    let source_topics: strait_controller::admin::TopicSizes = [(topic.clone(), 1)].into();
    let target_topics: strait_controller::admin::TopicSizes = [(remote.clone(), 1)].into();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dst = KafkaAdmin::new(&permitted.clusters["dst"]).unwrap();
        let on_target = || async {
            dst.topic_acls()
                .await
                .expect("the target's ACLs")
                .into_iter()
                .filter(|a| a.topic == remote)
                .collect::<Vec<_>>()
        };
        // A first round by a principal that may list the source's ACLs
        // copies them.
        let src = KafkaAdmin::new(&permitted.clusters["src"]).unwrap();
        metadata::sync_acls(
            &permitted.flows[0],
            &src,
            &dst,
            &source_topics,
            &target_topics,
        )
        .await;
        assert_eq!(on_target().await, copied, "copied first");

        // Then the source refuses the listing.
        let src = KafkaAdmin::new(&refused.clusters["src"]).unwrap();
        let listed = src.topic_acls().await;
        println!("the refused listing reads as: {listed:?}");
        for _ in 0..2 {
            metadata::sync_acls(flow, &src, &dst, &source_topics, &target_topics).await;
        }
        assert_eq!(
            on_target().await,
            copied,
            "a refused DescribeAcls read as no ACLs on the source: the copied ACL was deleted"
        );
        assert!(
            listed.is_err(),
            "a refused listing is an error, not an empty list: {listed:?}"
        );
        let denial = denials::current()
            .into_iter()
            .find(|d| d.cluster == "src" && d.operation == Operation::Describe)
            .expect("the refusal reported as a missing permission");
        println!("reported: {denial:?}");
        assert_eq!(denial.resource, "CLUSTER kafka-cluster");
        assert!(denial.refusals >= 2, "{denial:?}");
    });
}

/// A refused DescribeConfigs is an unknown, never an empty, set of
/// configs. rdkafka's `describe_configs` drops each resource's error, so
/// a remote topic whose configs the target refuses to describe read as
/// one without configs, and the config sync wrote the source's
/// `max.message.bytes` over a larger one, which it only ever raises. Here
/// the target's principal may alter the remote topic's configs, and is
/// denied describing them.
#[test]
fn a_refused_config_listing_on_the_target_lowers_no_config() {
    use strait_common::access::{denials, Operation};
    use strait_controller::admin::{ClusterAdmin as _, KafkaAdmin, TopicSizes};
    use strait_controller::metadata;

    let c = &clusters();
    let (source, target) = (&c.source.bootstrap, &c.target.bootstrap);
    let topic = unique("cfgguard");
    let d = unique("cfgguard");
    create_topic_with(source, &topic, 1, &[("max.message.bytes", "2000000")]);
    let remote = format!("src.{topic}");
    // An operator's larger limit on the remote topic.
    create_topic_with(target, &remote, 1, &[("max.message.bytes", "5000000")]);
    c.target.acls(
        "User:other",
        &[Acl::literal(Kind::Topic, &remote, "AlterConfigs")],
        true,
    );
    c.target.kafka_acls(&[
        "--add",
        "--deny-principal",
        "User:other",
        "--operation",
        "DescribeConfigs",
        "--topic",
        &remote,
    ]);
    let mut b = ConfigBuilder::new(&d, source, target).flow("topics", [topic.as_str()]);
    for (k, v) in c.source.client_settings("strait", STRAIT_PASSWORD) {
        b = b.source_kafka(&k, v.as_str());
    }
    for (k, v) in c.target.client_settings("other", "") {
        b = b.target_kafka(&k, v.as_str());
    }
    let config =
        strait_common::config::Config::parse(&b.build().replace("{metrics}", "127.0.0.1:0"))
            .expect("the config");
    let flow = &config.flows[0];
    assert!(flow.sync_topic_configs.is_some());
    assert_eq!(flow.remote_topic(&topic), remote);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let src = KafkaAdmin::new(&config.clusters["src"]).unwrap();
        let dst = KafkaAdmin::new(&config.clusters["dst"]).unwrap();
        let described = dst.topic_configs(&remote).await;
        println!("the refused describe reads as: {described:?}");
        let in_sync = metadata::sync_configs(
            flow,
            &src,
            &dst,
            &TopicSizes::from([(topic.clone(), 1)]),
            &TopicSizes::from([(remote.clone(), 1)]),
        )
        .await;
        let admin = KafkaAdmin::new(
            &strait_common::config::Config::parse(
                &secured_config(c, &d, &topic).replace("{metrics}", "127.0.0.1:0"),
            )
            .unwrap()
            .clusters["dst"],
        )
        .unwrap();
        let now = admin.topic_configs(&remote).await.unwrap();
        assert_eq!(
            now.get("max.message.bytes").map(String::as_str),
            Some("5000000"),
            "a refused DescribeConfigs read as no configs: the remote topic's limit was lowered"
        );
        assert!(described.is_err(), "{described:?}");
        assert_eq!(
            in_sync.get(&topic),
            Some(&false),
            "not compared: {in_sync:?}"
        );
        let denial = denials::current()
            .into_iter()
            .find(|d| d.cluster == "dst" && d.operation == Operation::AlterConfigs)
            .expect("the refusal reported as a missing permission");
        println!("reported: {denial:?}");
    });
}
