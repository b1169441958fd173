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
