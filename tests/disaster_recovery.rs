//! The whole disaster-recovery cycle on Apache Kafka (docs/disaster-recovery.md):
//! a planned cutover that reads nothing twice, and an unplanned failover
//! followed by failback: the failed cluster (`us`, a cluster of the test's
//! own, killed with SIGKILL and started again on its data) gets back what
//! was written on `dr` meanwhile, the groups return with their positions
//! translated back, and what `us` never replicated is found and counted.

mod support;

use std::process::Output;
use std::time::Duration;

use strait_testkit::own_kafka::OwnKafka;
use support::*;

const MINUTE: Duration = Duration::from_secs(60);

/// A command of `strait`'s config, bounded: no step of a DR procedure
/// may hang.
fn cli(strait: &Strait, args: &[&str]) -> Output {
    cli_within(strait, args, Duration::from_secs(180))
}

/// `strait cutover --flow FLOW --timeout TIMEOUT --quiet 2s EXTRA…`.
fn cutover(strait: &Strait, flow: &str, timeout: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "cutover",
        "--flow",
        flow,
        "--timeout",
        timeout,
        "--quiet",
        "2s",
    ];
    args.extend_from_slice(extra);
    cli(strait, &args)
}

fn out(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        text(&o.stdout),
        text(&o.stderr)
    )
}

/// A DR pair: `us` → `dr` and the way back, `dr` → `us`, one of them
/// paused; prefix policy both ways.
fn pair(deployment: &str, us: &str, dr: &str, topic: &str, group: &str, back: bool) -> String {
    let flow = |source: &str, target: &str, paused: bool| {
        format!(
            "[[flows]]\nsource = \"{source}\"\ntarget = \"{target}\"\ntopics = [\"{topic}\"]\n\
             groups = [\"{group}\"]\nheartbeats = false\ncheckpoint_interval = \"1s\"\npaused = {paused}\n"
        )
    };
    format!(
        "deployment = \"{deployment}\"\n[clusters.us]\nbootstrap = \"{us}\"\n[clusters.dr]\nbootstrap = \"{dr}\"\n\
         {}{}\
         [worker]\ncommit_interval = \"200ms\"\noffset_sync_interval = \"500ms\"\ndrain_timeout = \"10s\"\nrestart_backoff = \"500ms\"\n\
         [discovery]\ninterval = \"1s\"\n[metrics]\nlisten = \"{{metrics}}\"\n",
        flow("us", "dr", back),
        flow("dr", "us", !back),
    )
}

/// Failover of `group` while `us` is gone, work on `dr`, `us` back, the
/// way back, the tail, failback.
#[test]
fn failover_then_failback_returns_groups_and_accounts_for_the_unreplicated_tail() {
    let sb = sandbox();
    if sb.skip_on_tansu("stops a cluster of its own, an Apache Kafka node") {
        return;
    }
    let dir = std::env::temp_dir()
        .join("strait-tests")
        .join(unique("dr-us"));
    let mut us = OwnKafka::start(&dir);
    let dr = sb.target.clone();
    let topic = unique("orders");
    let group = unique("app");
    let deployment = unique("dr");
    let remote = format!("us.{topic}");

    // Normal times: us → dr, 200 records per partition; the application
    // has consumed 150 of each on us.
    create_topic(&us.bootstrap, &topic, 2);
    produce(&us.bootstrap, &topic, &Rec::seqs(2, 0..200));
    commit_group(&us.bootstrap, &group, &topic, &[(0, 150), (1, 150)]);
    let forward = pair(&deployment, &us.bootstrap, &dr, &topic, &group, false);
    let mut strait = Strait::start(&format!("{deployment}-fwd"), &forward);
    let progress = format!("strait.{deployment}.us-dr");
    wait_for("us → dr replicated and committed", MINUTE, || {
        committed(&us.bootstrap, &progress, &topic, 2) == vec![Some(200), Some(200)]
    });
    wait_for("the group checkpointed on dr", MINUTE, || {
        let o = cli(
            &strait,
            &[
                "offsets",
                "translate",
                "--flow",
                "us-dr",
                "--group",
                &group,
                "--from-checkpoints",
                "--json",
            ],
        );
        let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        rows.as_array()
            .is_some_and(|r| r.len() == 2 && r.iter().all(|x| x["source_offset"] == 150))
    });
    // The replicator falls behind (stopped here, so the tail is exact):
    // 30 more records per partition reach us only. Then us fails.
    strait.stop_with("TERM", MINUTE);
    produce(&us.bootstrap, &topic, &Rec::seqs(2, 200..230));
    us.kill();

    // Unplanned failover, from the checkpoints on dr.
    let o = cli(
        &strait,
        &[
            "offsets",
            "failover",
            "--flow",
            "us-dr",
            "--group",
            &group,
            "--from-checkpoints",
        ],
    );
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(
        committed(&dr, &group, &remote, 2),
        vec![Some(150), Some(150)]
    );
    // The application works on dr: it reads the replicated records from
    // its position to their end, and new records are written on dr (the
    // application's own topic there), of which it consumes 25 per partition.
    let copied = consume(&dr, &remote, 2, 400, MINUTE);
    assert_eq!(check_sequences(&copied, 2, 200), 0, "dr holds 0..200");
    commit_group(&dr, &group, &remote, &[(0, 200), (1, 200)]);
    create_topic(&dr, &topic, 2);
    produce(&dr, &topic, &Rec::seqs(2, 1000..1040));
    commit_group(&dr, &group, &topic, &[(0, 25), (1, 25)]);

    // us is back; the way back runs (dr → us), us → dr is paused.
    us.start_again();
    let back = pair(&deployment, &us.bootstrap, &dr, &topic, &group, true);
    let strait = Strait::start(&format!("{deployment}-back"), &back);
    let o = cli(&strait, &["check"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        text(&o.stdout).contains("way back: flow dr-us (running), one direction at a time"),
        "{}",
        out(&o)
    );
    wait_for("dr → us replicated and committed", MINUTE, || {
        committed(&dr, &format!("strait.{deployment}.dr-us"), &topic, 2) == vec![Some(40), Some(40)]
    });
    let returned = consume(&us.bootstrap, &format!("dr.{topic}"), 2, 80, MINUTE);
    assert_eq!(returned.len(), 80, "what dr wrote reached us");

    // What us held but never replicated: 200..230 of each partition.
    let o = cli(&strait, &["tail", "--flow", "us-dr"]);
    assert!(o.status.success(), "{}", out(&o));
    let report = text(&o.stdout);
    println!("strait tail --flow us-dr:\n{report}");
    for p in 0..2 {
        assert!(
            report.lines().any(|l| {
                let c: Vec<&str> = l.split_whitespace().collect();
                c.len() >= 5
                    && c[0] == topic
                    && c[1] == p.to_string()
                    && c[3] == "200..230"
                    && c[4] == "30"
            }),
            "partition {p}: {report}"
        );
    }
    assert!(
        report.contains("60 record(s) in 2 partition(s) of us were never replicated to dr"),
        "{report}"
    );
    // Copied on request, once.
    let to = format!("us.{topic}.unreplicated");
    for run in 0..2 {
        let o = cli(
            &strait,
            &[
                "tail",
                "--flow",
                "us-dr",
                "--copy-to",
                "us.{topic}.unreplicated",
            ],
        );
        assert!(o.status.success(), "{}", out(&o));
        let expect = if run == 0 {
            "copied 60 record(s)"
        } else {
            "copied 0 record(s)"
        };
        assert!(text(&o.stdout).contains(expect), "run {run}: {}", out(&o));
    }
    let tail = consume(&dr, &to, 2, 60, MINUTE);
    assert_eq!(tail.len(), 60);
    let mut seqs: Vec<String> = tail
        .iter()
        .map(|r| text(r.value.as_deref().unwrap()))
        .collect();
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len(), 60, "no copy twice");

    // The HTTP API shows the translation back.
    let (code, rows) = strait.get_json(&format!(
        "/v1/offsets/translate-back?flow=us-dr&group={group}"
    ));
    assert_eq!(code, 200, "{rows}");
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for r in rows {
        assert_eq!(
            (
                &r["topic"],
                &r["target_offset"],
                &r["source_offset"],
                &r["exact"]
            ),
            (
                &topic.clone().into(),
                &200.into(),
                &200.into(),
                &true.into()
            ),
            "{r}"
        );
    }

    // Failback: refused while a member of the group is on us.
    {
        let _member = Member::join(&us.bootstrap, &group, &topic);
        let o = cli(
            &strait,
            &["offsets", "failback", "--flow", "us-dr", "--group", &group],
        );
        assert_eq!(o.status.code(), Some(3), "{}", out(&o));
        assert_eq!(
            committed(&us.bootstrap, &group, &topic, 2),
            vec![Some(150), Some(150)],
            "nothing written for an active group"
        );
    }
    let o = cli(
        &strait,
        &[
            "offsets",
            "failback",
            "--flow",
            "us-dr",
            "--group",
            &group,
            "--dry-run",
        ],
    );
    assert!(o.status.success(), "{}", out(&o));
    assert!(text(&o.stdout).contains("would write"), "{}", out(&o));
    assert_eq!(
        committed(&us.bootstrap, &group, &topic, 2),
        vec![Some(150), Some(150)],
        "a dry run writes nothing"
    );
    let o = cli(
        &strait,
        &["offsets", "failback", "--flow", "us-dr", "--group", &group],
    );
    assert!(o.status.success(), "{}", out(&o));
    println!(
        "strait offsets failback --flow us-dr --group {group}:\n{}",
        text(&o.stdout)
    );
    // Exact: the group read 0..200 on dr; on us it resumes at 200, the
    // first record of the tail: nothing read twice, nothing skipped.
    assert_eq!(
        committed(&us.bootstrap, &group, &topic, 2),
        vec![Some(200), Some(200)]
    );
    let rows: Vec<&str> = text(&o.stdout).leak().lines().collect();
    assert_eq!(
        rows.iter()
            .filter(|l| l.contains(" yes ") && l.contains("written"))
            .count(),
        2,
        "{rows:?}"
    );
    // Twice changes nothing.
    let o = cli(
        &strait,
        &["offsets", "failback", "--flow", "us-dr", "--group", &group],
    );
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        text(&o.stdout).contains("0 partition position(s) moved"),
        "{}",
        out(&o)
    );

    // And what the group consumed of dr's own records returns too: a
    // planned cutover of the way back (dr's producers have stopped).
    let o = cutover(&strait, "dr-us", "60s", &[]);
    println!("strait cutover --flow dr-us:\n{}", text(&o.stdout));
    assert!(o.status.success(), "{}", out(&o));
    assert_eq!(
        committed(&us.bootstrap, &group, &format!("dr.{topic}"), 2),
        vec![Some(25), Some(25)]
    );
}

/// A planned cutover: refused while the source moves, then every group
/// failed over exactly; a second run changes nothing; a record written
/// straight into the remote topic stops it.
#[test]
fn a_planned_cutover_reads_nothing_twice_and_stops_on_a_foreign_record() {
    let sb = sandbox();
    let topic = unique("cut");
    let group = unique("cut-app");
    let deployment = unique("cut");
    create_topic(&sb.source, &topic, 2);
    produce(&sb.source, &topic, &Rec::seqs(2, 0..300));
    commit_group(&sb.source, &group, &topic, &[(0, 120), (1, 300)]);
    let config = strait_testkit::config::ConfigBuilder::new(&deployment, &sb.source, &sb.target)
        .flow(
            "topics",
            strait_testkit::config::Raw(format!("[\"{topic}\"]")),
        )
        .flow(
            "groups",
            strait_testkit::config::Raw(format!("[\"{group}\"]")),
        )
        .flow("heartbeats", false)
        .flow("checkpoint_interval", "1s")
        .quick()
        .build();
    let strait = Strait::start(&deployment, &config);
    let remote = format!("src.{topic}");

    // Producers still running: it waits, then says which partitions move.
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let (source, topic, writing) = (sb.source.clone(), topic.clone(), writing.clone());
        std::thread::spawn(move || {
            let p = producer(&source);
            let mut seq = 300;
            while writing.load(std::sync::atomic::Ordering::Relaxed) {
                send(&p, &topic, &[Rec::seq(0, seq)]);
                seq += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let o = cutover(&strait, "src-dst", "4s", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        text(&o.stdout).contains("the source still moves"),
        "{}",
        out(&o)
    );
    assert!(
        text(&o.stdout)
            .lines()
            .any(|l| l.starts_with(&format!("{topic}  "))
                && l.split_whitespace().nth(1) == Some("0")),
        "partition 0 named: {}",
        out(&o)
    );
    assert_eq!(
        committed(&sb.target, &group, &remote, 2),
        vec![None, None],
        "nothing failed over"
    );
    writing.store(false, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();

    let o = cutover(&strait, "src-dst", "90s", &["--dry-run"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(text(&o.stdout).contains("would move"), "{}", out(&o));
    assert_eq!(
        committed(&sb.target, &group, &remote, 2),
        vec![None, None],
        "a dry run writes nothing"
    );
    // A member of the group on the target: refused, exit 3, nothing
    // written; its consumers must stop first.
    {
        let _member = Member::join(&sb.target, &group, &remote);
        let o = cutover(&strait, "src-dst", "90s", &[]);
        assert_eq!(o.status.code(), Some(3), "{}", out(&o));
        assert!(
            text(&o.stderr).contains("has active members on dst"),
            "{}",
            out(&o)
        );
        assert_eq!(
            committed(&sb.target, &group, &remote, 2),
            vec![None, None],
            "nothing written for an active group"
        );
    }
    let o = cutover(&strait, "src-dst", "90s", &[]);
    println!("strait cutover --flow src-dst:\n{}", text(&o.stdout));
    assert!(o.status.success(), "{}", out(&o));
    let stdout = text(&o.stdout);
    assert!(
        stdout.contains("0 record(s) read twice, 0 skipped"),
        "{stdout}"
    );
    // One session from offset 0: positions are the same numbers on both
    // sides.
    assert_eq!(
        committed(&sb.target, &group, &remote, 2),
        vec![Some(120), Some(300)]
    );
    let o = cutover(&strait, "src-dst", "60s", &[]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        text(&o.stdout).contains("0 partition position(s) moved"),
        "{}",
        out(&o)
    );

    // A record no source wrote, after the last replicated one.
    produce(&sb.target, &remote, &[Rec::seq(1, 9999)]);
    let o = cutover(&strait, "src-dst", "60s", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(text(&o.stdout).contains("STOPPED"), "{}", out(&o));
    assert!(text(&o.stderr).contains("FOREIGN RECORDS"), "{}", out(&o));
    let row = text(&o.stdout)
        .lines()
        .find(|l| l.starts_with(&format!("{topic}  1  ")))
        .map(str::to_owned)
        .unwrap_or_default();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells.get(7),
        Some(&"1"),
        "one foreign record on partition 1: {row}"
    );
}

/// `strait tail --until`: records the recovered source took after it
/// failed (producers not yet moved, or moved back early) are not its tail.
#[test]
fn the_tail_until_the_failure_leaves_out_what_the_source_took_after_it() {
    let sb = sandbox();
    let topic = unique("tail-until");
    let deployment = unique("tail-until");
    create_topic(&sb.source, &topic, 2);
    produce(&sb.source, &topic, &Rec::seqs(2, 0..100));
    let mut strait = Strait::start(&deployment, &config(&sb, &deployment, &topic, "", ""));
    let progress = format!("strait.{deployment}.src-dst");
    wait_for("replicated and committed", MINUTE, || {
        committed(&sb.source, &progress, &topic, 2) == vec![Some(100), Some(100)]
    });
    strait.stop_with("TERM", MINUTE);
    // Never replicated: 100..130 of each partition, written before the
    // source "fails"; then it takes 130..150 after it. The records carry
    // their times (a second either side of the failure).
    let failed_at = std::time::SystemTime::now();
    let ms = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
    };
    let stamped = |seqs: std::ops::Range<usize>, at: std::time::SystemTime| {
        let mut recs = Rec::seqs(2, seqs);
        for r in &mut recs {
            r.timestamp = Some(ms(at));
        }
        recs
    };
    let second = Duration::from_secs(1);
    produce(&sb.source, &topic, &stamped(100..130, failed_at - second));
    produce(&sb.source, &topic, &stamped(130..150, failed_at + second));
    let until = humantime::format_rfc3339_millis(failed_at).to_string();

    let rows = |args: &[&str]| {
        let o = cli(&strait, args);
        assert!(o.status.success(), "{}", out(&o));
        let report = text(&o.stdout);
        println!("strait {}:\n{report}", args.join(" "));
        report
    };
    let tail_of = |report: &str, p: i32| {
        report
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|c| c.len() >= 5 && c[0] == topic && c[1] == p.to_string())
            .map(|c| (c[3].to_owned(), c[4].to_owned()))
    };
    let all = rows(&["tail", "--flow", "src-dst"]);
    let before = rows(&["tail", "--flow", "src-dst", "--until", &until]);
    for p in 0..2 {
        assert_eq!(
            tail_of(&all, p),
            Some(("100..150".to_owned(), "50".to_owned())),
            "{all}"
        );
        assert_eq!(
            tail_of(&before, p),
            Some(("100..130".to_owned(), "30".to_owned())),
            "{before}"
        );
    }
    assert!(
        before.contains(&format!("60 record(s) (written before {until})")),
        "{before}"
    );
    // A time that is not one is refused, as bad input.
    let o = cli(
        &strait,
        &["tail", "--flow", "src-dst", "--until", "yesterday"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
}
