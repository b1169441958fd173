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

use strait_testkit::config::ConfigBuilder;
use strait_testkit::secured::{Pki, SecuredKafka, Security};
use support::*;

const MINUTE: Duration = Duration::from_secs(60);
const STRAIT_PASSWORD: &str = "strait-pw-never-logged";

struct Clusters {
    source: SecuredKafka,
    target: SecuredKafka,
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
            &[("strait", STRAIT_PASSWORD)],
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
        Clusters { source, target }
    }
}

/// A config whose clusters are the secured ones, strait logging in as
/// `strait`.
fn secured_config(c: &Clusters, deployment: &str, topic: &str) -> String {
    let mut b = ConfigBuilder::new(deployment, &c.source.bootstrap, &c.target.bootstrap)
        .flow("topics", [topic])
        .flow("checkpoint_interval", "1s")
        .quick();
    for (k, v) in c.source.client_settings("strait", STRAIT_PASSWORD) {
        b = b.source_kafka(&k, v.as_str());
    }
    for (k, v) in c.target.client_settings("strait", "") {
        b = b.target_kafka(&k, v.as_str());
    }
    b.build()
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
    wait_for("the group's checkpoints", MINUTE, || {
        let cps = checkpoints(target, "src.checkpoints.internal");
        [(0, 300), (1, 200)].iter().all(|&(p, up)| {
            cps.iter()
                .any(|(g, t, part, u, _)| *g == group && *t == remote && *part == p && *u == up)
        })
    });
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
}
