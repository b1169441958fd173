use super::*;

const MINIMAL: &str = r#"
deployment = "test"
[clusters.us]
bootstrap = "127.0.0.1:9092"
[clusters.dr]
bootstrap = "127.0.0.1:9093"
[[flows]]
source = "us"
target = "dr"
"#;

fn err(text: &str) -> String {
    Config::parse(text).unwrap_err().to_string()
}

#[test]
fn minimal_config_gets_the_documented_defaults() {
    let c = Config::parse(MINIMAL).unwrap();
    let flows = c.flows;
    assert_eq!(flows[0].name, "us-dr");
    assert_eq!(flows[0].commit_group("test"), "strait.test.us-dr");
    assert_eq!(flows[0].remote_topic("orders"), "us.orders");
    assert_eq!(
        flows[0].offset_syncs(),
        ("us", "mm2-offset-syncs.dr.internal".to_owned())
    );
    assert!(flows[0].replicates("orders"));
    assert!(!flows[0].replicates("dr.orders"), "cycle");
    assert!(!flows[0].replicates("__consumer_offsets"));
    assert_eq!(c.discovery.interval, Duration::from_secs(1));
    assert_eq!(flows[0].start, StartAt::Earliest);
    assert_eq!(flows[0].compression, None, "left to the cluster, else lz4");
    assert_eq!(Compression::DEFAULT, Compression::Lz4);
}

#[test]
fn a_flow_names_its_codec_and_a_wrong_one_is_refused_by_key() {
    let c = Config::parse(
        &MINIMAL.replace("target = \"dr\"", "target = \"dr\"\ncompression = \"zstd\""),
    )
    .unwrap();
    assert_eq!(c.flows[0].compression, Some(Compression::Zstd));
    assert_eq!(Compression::None.as_str(), "none");
    let e = err(&MINIMAL.replace(
        "target = \"dr\"",
        "target = \"dr\"\ncompression = \"brotli\"",
    ));
    assert!(
        e.starts_with("flows[0].compression: unknown variant `brotli`"),
        "{e}"
    );
}

#[test]
fn the_example_file_is_valid() {
    let text = include_str!("../../../strait.example.toml");
    Config::parse(text).unwrap();
}

#[test]
fn coordination_settings_are_checked_by_key() {
    let e = err(&format!(
        "{MINIMAL}\n[coordination]\netcd = [\"127.0.0.1:2379\"]\n"
    ));
    assert!(
        e.starts_with("coordination.etcd[0]: an endpoint is a URL"),
        "{e}"
    );
    let e = err(&format!("{MINIMAL}\n[coordination]\nlease_ttl = \"1s\"\n"));
    assert!(e.starts_with("coordination.lease_ttl: at least 2s"), "{e}");
    // Renewals go every lease_ttl / 4 (1.5 s here), each bounded by the
    // request timeout (2 s by default): too long.
    let e = err(&format!("{MINIMAL}\n[coordination]\nlease_ttl = \"6s\"\n"));
    assert!(
        e.starts_with("coordination.request_timeout: must be shorter than a quarter of coordination.lease_ttl (1.5s)"),
        "{e}"
    );
    assert!(Config::parse(&format!(
        "{MINIMAL}\n[coordination]\nlease_ttl = \"6s\"\nrequest_timeout = \"1s\"\n"
    ))
    .is_ok());
    let e = err(&format!("{MINIMAL}\n[coordination]\nuser = \"u\"\n"));
    assert!(
        e.starts_with("coordination.user: user and password go together"),
        "{e}"
    );
    let e = err(&format!("{MINIMAL}\n[planner]\nbalance_ratio = 0.5\n"));
    assert!(e.starts_with("planner.balance_ratio"), "{e}");
    let c = Config::parse(&format!(
        "{MINIMAL}\n[coordination]\netcd = [\"http://127.0.0.1:2379\"]\n"
    ))
    .unwrap();
    assert!(c.coordination.is_fleet());
    assert!(!Config::parse(MINIMAL).unwrap().coordination.is_fleet());
}

#[test]
fn unknown_keys_are_refused_by_name() {
    let e = err(&format!("{MINIMAL}\n[worker]\ncommit_intervall = \"1s\"\n"));
    assert!(
        e.starts_with("worker.commit_intervall: unknown field `commit_intervall`"),
        "{e}"
    );
    let e = err(&MINIMAL.replace("target = \"dr\"", "target = \"dr\"\ntopic = [\"a\"]"));
    assert!(
        e.starts_with("flows[0].topic: unknown field `topic`"),
        "{e}"
    );
}

#[test]
fn invalid_values_name_their_key() {
    let e = err(&MINIMAL.replace("target = \"dr\"", "target = \"dr\"\npolicy = \"mirror\""));
    assert!(
        e.starts_with("flows[0].policy: unknown variant `mirror`"),
        "{e}"
    );
    let e = err(&format!("{MINIMAL}\n[worker]\ndrain_timeout = \"soon\"\n"));
    assert!(e.starts_with("worker.drain_timeout:"), "{e}");
    let e = err(&MINIMAL.replace("target = \"dr\"", "target = \"dx\""));
    assert_eq!(e, "flows[0].target: no cluster named \"dx\" in [clusters]");
    let e = err(&MINIMAL.replace("target = \"dr\"", "target = \"dr\"\ntopics = [\"(\"]"));
    assert!(
        e.starts_with("flows[0].topics[0]: regex parse error"),
        "{e}"
    );
    let e = err(&MINIMAL.replace("target = \"dr\"", "target = \"us\""));
    assert_eq!(e, "flows[0].target: source and target must differ");
    let e = err(&format!("{MINIMAL}\n[worker]\nmax_in_flight_bytes = -1\n"));
    assert!(e.starts_with("worker.max_in_flight_bytes:"), "{e}");
    let e = err(&format!("{MINIMAL}\n[metrics]\nlisten = \"nowhere\"\n"));
    assert!(e.starts_with("metrics.listen:"), "{e}");
    let e = err(&MINIMAL.replace("target = \"dr\"", "target = \"dr\"\nreplication_factor = 0"));
    assert!(
        e.starts_with("flows[0].replication_factor: must be at least 1"),
        "{e}"
    );
    let e = err("deployment = 3");
    assert!(e.starts_with("deployment: invalid type"), "{e}");
    let e = err("deployment = \"x\"\n[clusters]\n");
    assert!(e.contains("missing field `flows`"), "{e}");
}

#[test]
fn owned_librdkafka_settings_are_refused_in_passthrough() {
    let e = err(&MINIMAL.replace(
        "bootstrap = \"127.0.0.1:9093\"",
        "bootstrap = \"127.0.0.1:9093\"\nkafka = { \"enable.idempotence\" = false }",
    ));
    assert_eq!(
        e,
        "clusters.dr.kafka.\"enable.idempotence\": strait owns this librdkafka setting; it cannot be passed through"
    );
    let ok = MINIMAL.replace(
        "bootstrap = \"127.0.0.1:9093\"",
        "bootstrap = \"127.0.0.1:9093\"\nkafka = { \"security.protocol\" = \"ssl\", \"socket.timeout.ms\" = 30000 }",
    );
    let c = Config::parse(&ok).unwrap();
    assert_eq!(
        c.clusters["dr"].kafka["socket.timeout.ms"].to_string(),
        "30000"
    );
}

#[test]
fn flow_names_are_unique_and_aliases_cannot_hide_the_separator() {
    let twice = format!("{MINIMAL}\n[[flows]]\nsource = \"us\"\ntarget = \"dr\"\n");
    assert_eq!(
        err(&twice),
        "flows[1].name: flow name \"us-dr\" is used twice"
    );
    let e = err(&MINIMAL
        .replace("target = \"dr\"", "target = \"dr\"\nseparator = \"-\"")
        .replace("[clusters.dr]", "[clusters.d-r]")
        .replace("target = \"dr\"", "target = \"d-r\""));
    assert!(
        e.starts_with("flows[0].separator: cluster alias \"d-r\""),
        "{e}"
    );
}

#[test]
fn heartbeat_topics_are_replicated_whatever_the_filters_unless_off() {
    let c = Config::parse(
        &MINIMAL.replace("target = \"dr\"", "target = \"dr\"\ntopics = [\"orders\"]"),
    )
    .unwrap();
    let f = &c.flows[0];
    assert_eq!(f.heartbeats, Some(Duration::from_secs(1)));
    assert!(f.replicates("heartbeats"));
    assert!(
        f.replicates("eu.heartbeats"),
        "heartbeats that came through another cluster"
    );
    assert!(
        !f.replicates("dr.heartbeats"),
        "never back to where they came from"
    );
    assert!(!f.replicates("payments"));
    let off = Config::parse(&MINIMAL.replace(
        "target = \"dr\"",
        "target = \"dr\"\ntopics = [\"orders\"]\nheartbeats = false",
    ))
    .unwrap();
    let f = &off.flows[0];
    assert_eq!(f.heartbeats, None);
    assert!(!f.replicates("heartbeats"));
}

#[test]
fn throttles_durability_and_timestamp_configs_are_not_copied_by_default() {
    let f = &Config::parse(MINIMAL).unwrap().flows[0];
    for name in [
        "min.insync.replicas",
        "unclean.leader.election.enable",
        "message.timestamp.type",
        "leader.replication.throttled.replicas",
        "message.timestamp.after.max.ms",
    ] {
        assert!(!f.copies_config(name), "{name}");
    }
    for name in [
        "retention.ms",
        "cleanup.policy",
        "max.message.bytes",
        "compression.type",
    ] {
        assert!(f.copies_config(name), "{name}");
    }
}

#[test]
fn group_filters_never_select_strait_itself() {
    let c = Config::parse(&MINIMAL.replace(
        "target = \"dr\"",
        "target = \"dr\"\ngroups = [\"billing.*\", \"strait.*\"]\ngroups_exclude = [\"billing-test\"]",
    ))
    .unwrap();
    let f = &c.flows[0];
    assert_eq!(f.checkpoints, Some(Duration::from_secs(2)));
    assert!(f.checkpoints_group("billing"));
    assert!(!f.checkpoints_group("billing-test"));
    assert!(
        !f.checkpoints_group("strait.test.us-dr"),
        "strait's own group"
    );
    assert!(!f.checkpoints_group("shipping"));
}

#[test]
fn topic_filters_match_whole_names() {
    let c = Config::parse(&MINIMAL.replace(
        "target = \"dr\"",
        "target = \"dr\"\ntopics = [\"orders\", \"pay.*\"]\ntopics_exclude = [\"pay-test\"]",
    ))
    .unwrap();
    let f = &c.flows[0];
    assert!(f.replicates("orders"));
    assert!(!f.replicates("orders2"), "anchored");
    assert!(!f.replicates("old-orders"), "anchored");
    assert!(f.replicates("payments"));
    assert!(!f.replicates("pay-test"));
}

#[test]
fn the_test_config_builder_writes_configs_that_validate() {
    use strait_testkit::config::ConfigBuilder;
    let toml = ConfigBuilder::new("b1", "127.0.0.1:1", "127.0.0.1:2")
        .flow("topics", ["orders-.*"])
        .flow("checkpoints", true)
        .flow("groups", ["app-.*"])
        .target_kafka("compression.type", "zstd")
        .quick()
        .metrics("listen", "127.0.0.1:0")
        .coordination("etcd", vec!["http://127.0.0.1:3".to_owned()])
        .build();
    let c = Config::parse(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    assert_eq!(c.flows[0].name, "src-dst");
    assert!(c.flows[0].replicates("orders-1"));
    assert_eq!(c.worker.commit_interval, Duration::from_millis(200));
    assert!(c.coordination.is_fleet());
}

#[test]
fn an_interval_of_a_feature_that_is_on_must_be_longer_than_zero() {
    for (flow, field) in [
        ("checkpoint_interval = \"0s\"", "checkpoint_interval"),
        ("heartbeat_interval = \"0s\"", "heartbeat_interval"),
        ("config_sync_interval = \"0s\"", "config_sync_interval"),
        (
            "exactly_once = true\ntransaction_interval = \"0s\"",
            "transaction_interval",
        ),
    ] {
        assert_eq!(
            err(&format!("{MINIMAL}{flow}\n")),
            format!("flows[0].{field}: must be longer than zero")
        );
    }
    // Off, a zero interval is never used.
    assert!(Config::parse(&format!("{MINIMAL}transaction_interval = \"0s\"\n")).is_ok());
}

#[test]
fn exactly_once_refuses_to_skip_refused_records() {
    let e = err(&format!(
        "{MINIMAL}exactly_once = true\non_refused = \"skip\"\n"
    ));
    assert!(
        e.starts_with("flows[0].on_refused: exactly_once cannot skip"),
        "{e}"
    );
    let c = Config::parse(&format!("{MINIMAL}exactly_once = true\n")).unwrap();
    assert_eq!(c.flows[0].exactly_once, Some(Duration::from_millis(500)));
}

#[test]
fn environment_variables_fill_in_secrets_escaped_for_a_string() {
    let env = |name: &str| match name {
        "SASL_PASSWORD" => Some(r#"p"a\ss"#.to_owned()),
        "TOKEN" => Some("t0k".to_owned()),
        _ => None,
    };
    let text = format!(
        "{MINIMAL}[clusters.us.kafka]\n\"sasl.password\" = \"${{SASL_PASSWORD}}\"\n[api]\ntoken = \"${{TOKEN}}\"\n"
    );
    let c = Config::parse(&expand_env(&text, env).unwrap()).unwrap();
    assert_eq!(
        c.clusters["us"].kafka["sasl.password"].to_string(),
        r#"p"a\ss"#
    );
    assert_eq!(c.api.token.as_deref(), Some("t0k"));
    // `$${` is a literal `${`; text without variables is untouched.
    assert_eq!(expand_env("a $${X} b", env).unwrap(), "a ${X} b");
    assert_eq!(expand_env(MINIMAL, env).unwrap(), MINIMAL);
    let e = expand_env("x = \"${NOPE}\"", env).unwrap_err().to_string();
    assert!(e.contains("environment variable NOPE is not set"), "{e}");
    let e = expand_env("x = \"${SASL_PASSWORD\"", env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("without a closing"), "{e}");
    assert!(!e.contains("a\\ss"), "values never appear in errors: {e}");
    let e = expand_env("x = \"${a-b}\"", env).unwrap_err().to_string();
    assert!(e.contains("letters, digits and _"), "{e}");
}

#[test]
fn secrets_come_from_files_without_their_trailing_newline() {
    let dir = std::env::temp_dir().join(format!("strait-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sasl-password");
    std::fs::write(&path, "s3\"cr\\et\r\n").unwrap();
    let text = format!(
        "{MINIMAL}[clusters.us.kafka]\n\"sasl.password\" = \"${{file:{}}}\"\n",
        path.display()
    );
    let c = Config::parse(&expand_env(&text, |_| None).unwrap()).unwrap();
    assert_eq!(
        c.clusters["us"].kafka["sasl.password"].to_string(),
        "s3\"cr\\et"
    );
    // Only one trailing newline goes; one inside stays, escaped.
    std::fs::write(&path, "a\nb\n\n").unwrap();
    assert_eq!(
        expand_env(&format!("x = \"${{file:{}}}\"", path.display()), |_| None).unwrap(),
        "x = \"a\\nb\\n\""
    );
    let missing = dir.join("nope");
    let e = expand_env(&format!("x = \"${{file:{}}}\"", missing.display()), |_| {
        None
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("cannot read the file") && e.contains("nope"),
        "{e}"
    );
    let e = expand_env("x = \"${file:}\"", |_| None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("names no file"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn secrets_never_show_in_debug_output() {
    let c = Config::parse(&format!(
        "{MINIMAL}[clusters.us.kafka]\n\"sasl.password\" = \"pw-1\"\n\"ssl.key.password\" = \"pw-2\"\n\"sasl.oauthbearer.client.secret\" = \"pw-3\"\n\"sasl.username\" = \"strait\"\n"
    ))
    .unwrap();
    let shown = format!("{c:?}");
    for secret in ["pw-1", "pw-2", "pw-3"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(
        shown.contains("strait") && shown.contains("<redacted>"),
        "{shown}"
    );
}

#[test]
fn a_pair_of_flows_both_ways_needs_the_prefix_policy_unless_one_is_paused() {
    let pair = |a: &str, b: &str| {
        format!(
            "deployment = \"d\"\n[clusters.us]\nbootstrap = \"a:1\"\n[clusters.dr]\nbootstrap = \"b:1\"\n\
             [[flows]]\nsource = \"us\"\ntarget = \"dr\"\n{a}\n[[flows]]\nsource = \"dr\"\ntarget = \"us\"\n{b}\n"
        )
    };
    // Active/active with prefixes: fine.
    let c = Config::parse(&pair("", "")).unwrap();
    assert!(c.flows.iter().all(|f| !f.paused));
    // One identity direction while both run: records would go round.
    let e = err(&pair("policy = \"identity\"", ""));
    assert!(e.contains("us-dr and dr-us") && e.contains("paused"), "{e}");
    // The way back kept paused until it is needed: fine.
    let c = Config::parse(&pair(
        "policy = \"identity\"",
        "policy = \"identity\"\npaused = true",
    ))
    .unwrap();
    assert_eq!(
        c.flows.iter().map(|f| f.paused).collect::<Vec<_>>(),
        vec![false, true]
    );
}
