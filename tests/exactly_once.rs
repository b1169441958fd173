//! Exactly-once flows end to end, judged by what a read_committed reader
//! sees on the target.
//!
//! On Apache Kafka that reader is Kafka's own: a librdkafka consumer and a
//! kafka-python consumer with `isolation.level=read_committed`. tansu (the
//! subset run with `STRAIT_BROKER=tansu`) hands read_committed consumers
//! the records of *aborted* transactions (it writes the abort marker but
//! sends no aborted-transactions list), so there these tests read the
//! remote topic with testkit's log reader, which applies read_committed
//! from the markers in the log; the last test shows that it agrees with
//! Kafka's consumers.

mod support;

use std::time::Duration;

use rdkafka::producer::{BaseRecord, Producer as _, ThreadedProducer};
use rdkafka::ClientConfig;

use strait_testkit::log::read_committed;
use support::*;

const MINUTE: Duration = Duration::from_secs(60);
const EOS: &str = "exactly_once = true\ntransaction_interval = \"200ms\"";

#[test]
fn an_exactly_once_flow_keeps_its_progress_on_the_target_and_restarts_without_duplicates() {
    const PARTS: i32 = 2;
    const PER: usize = 2500;
    let sb = sandbox();
    let topic = unique("eos");
    let deployment = unique("eos");
    create_topic(&sb.source, &topic, PARTS);
    let remote = format!("src.{topic}");
    // A steady writer, so the restarts land mid-stream.
    let writer = steady_writer(&sb.source, &topic, PARTS, PER);
    let cfg = config(&sb, &deployment, &topic, EOS, "");
    let mut strait = Strait::start(&deployment, &cfg);
    let transactions = |s: &Strait| {
        s.metric("strait_transactions_total{flow=\"src-dst\"}")
            .unwrap_or(0.0)
    };
    wait_for("transactions committed", MINUTE, || {
        transactions(&strait) >= 3.0
    });
    // SIGTERM twice mid-stream: the last transaction commits, the next run
    // resumes from the progress on the target.
    for _ in 0..2 {
        assert!(!writer.is_finished(), "the restart must land mid-stream");
        let status = strait.stop_with("TERM", Duration::from_secs(30));
        assert!(status.success(), "SIGTERM exit: {status:?}");
        assert!(strait.log_text().contains("last transaction committed"));
        strait.restart();
        wait_for("transactions after the restart", MINUTE, || {
            transactions(&strait) >= 2.0
        });
    }
    writer.join().unwrap();
    let got = consume(
        &sb.target,
        &remote,
        PARTS,
        PARTS as usize * PER,
        Duration::from_secs(120),
    );
    let dups = check_sequences(&got, PARTS, PER);
    assert_eq!(
        dups, 0,
        "clean restarts of an exactly-once flow write no duplicate"
    );
    // Progress is on the target, under the commit group, keyed by the
    // remote partitions; the source group is committed too (advisory).
    let group = format!("strait.{deployment}.src-dst");
    let all = vec![Some(PER as i64); PARTS as usize];
    wait_for("progress committed on the target", MINUTE, || {
        committed(&sb.target, &group, &remote, PARTS) == all
    });
    wait_for("the advisory commit on the source", MINUTE, || {
        committed(&sb.source, &group, &topic, PARTS) == all
    });
}

/// A record the target refuses inside a transaction: the transaction
/// aborts, the record's partition stops, visibly, saying why, and the
/// next session goes on with the other partition at once.
#[test]
fn an_oversized_record_in_a_transaction_stops_its_partition_and_the_others_go_on() {
    let sb = sandbox();
    let topic = unique("eos-refused");
    let deployment = unique("eos-refused");
    create_topic(&sb.source, &topic, 2);
    produce(&sb.source, &topic, &records_with_one_oversized());
    let cfg = target_refusing_over_20_kb(&sb, &config(&sb, &deployment, &topic, EOS, ""));
    let strait = Strait::start(&deployment, &cfg);
    let state0 = format!("strait_unit_state{{flow=\"src-dst\",topic=\"{topic}\",partition=\"0\"}}");
    wait_for("partition 0 failed", MINUTE, || {
        strait.metric(&state0) == Some(2.0)
    });
    let (_, status) = strait.get_json("/v1/status");
    let failed: Vec<_> = status["units"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["state"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{status}");
    let error = failed[0]["error"].as_str().unwrap();
    assert!(
        error.contains("record at offset 5 (50002 bytes) refused by the target")
            && error.contains("raise max.message.bytes"),
        "{error}"
    );
    assert!(
        strait.log_text().contains(
            "exactly-once session ended at a refused record; restarting without its unit"
        ),
        "{}",
        strait.log_text()
    );
    // Partition 1 goes on, in the next session.
    let more: Vec<Rec> = (0..20).map(|i| Rec::seq(1, i)).collect();
    produce(&sb.source, &topic, &more);
    let remote = format!("src.{topic}");
    let (got, _) = read_committed(&sb.target, &remote, 2, 20, MINUTE);
    assert_eq!(got.iter().filter(|r| r.partition == 1).count(), 20);
    // Nothing of partition 0 from the refused record on is committed.
    let p0: Vec<&Rec> = got.iter().filter(|r| r.partition == 0).collect();
    assert!(
        p0.iter()
            .all(|r| r.value.as_ref().is_some_and(|v| v.len() < 100))
            && p0.len() <= 5,
        "partition 0 on the target: {} records",
        p0.len()
    );
}

#[test]
fn an_exactly_once_flow_killed_loses_nothing_and_shows_nothing_twice() {
    const PARTS: i32 = 2;
    const PER: usize = 1000;
    let sb = sandbox();
    let topic = unique("eoskill");
    let deployment = unique("eoskill");
    create_topic(&sb.source, &topic, PARTS);
    let writer = steady_writer(&sb.source, &topic, PARTS, PER);
    let mut strait = Strait::start(&deployment, &config(&sb, &deployment, &topic, EOS, ""));
    wait_for("transactions committed", MINUTE, || {
        strait
            .metric("strait_transactions_total{flow=\"src-dst\"}")
            .unwrap_or(0.0)
            >= 3.0
    });
    assert!(!writer.is_finished(), "SIGKILL must land mid-stream");
    strait.stop_with("KILL", Duration::from_secs(10));
    strait.restart();
    writer.join().unwrap();
    let remote = format!("src.{topic}");
    let all = PARTS as usize * PER;
    // The log reader's tally says the records came in transactions, and
    // (with its own read_committed) stands in for Kafka's on tansu.
    let (logged, tally) = read_committed(&sb.target, &remote, PARTS, all, Duration::from_secs(120));
    assert!(tally.commit_markers > 0, "the records came in transactions");
    let readers: Vec<(&str, Vec<Rec>)> = if sb.broker == Broker::Kafka {
        let timeout = Duration::from_secs(120);
        vec![
            (
                "librdkafka",
                consume(&sb.target, &remote, PARTS, all, timeout),
            ),
            (
                "kafka-python",
                python_read_committed(&sb.target, &remote, PARTS, all, timeout),
            ),
        ]
    } else {
        vec![("the log reader", logged)]
    };
    for (reader, got) in readers {
        // Panics on a missing or reordered record.
        let dups = check_sequences(&got, PARTS, PER);
        println!(
            "exactly-once SIGKILL on {:?}, read committed by {reader}: {} records, {dups} duplicates; {tally:?}",
            sb.broker,
            got.len()
        );
        assert_eq!(
            dups, 0,
            "read committed by {reader}, a SIGKILL shows nothing twice"
        );
    }
}

/// tansu 0.6.0 holds back the offsets a transaction commits while another
/// transaction that wrote the same partition is open, although the records
/// commit (and drops them if the producer's next transaction is aborted).
/// What the chaos suite once met as hundreds of duplicates after a SIGKILL:
/// the restarted flow resumed from the old progress on the target. A unit
/// resumes from the later of that and the advisory commit on the source.
/// Kafka commits a transaction's offsets with its markers, so there the
/// same steps show the progress exact, and the restart resumes from it.
#[test]
fn an_exactly_once_flow_whose_progress_the_target_lost_resumes_without_duplicates() {
    const PARTS: i32 = 2;
    let sb = sandbox();
    let topic = unique("eoslost");
    let deployment = unique("eoslost");
    create_topic(&sb.source, &topic, PARTS);
    let remote = format!("src.{topic}");
    let group = format!("strait.{deployment}.src-dst");
    let seqs = |from: usize, to: usize| -> Vec<Rec> {
        (from..to)
            .flat_map(|i| (0..PARTS).map(move |p| Rec::seq(p, i)))
            .collect()
    };
    let mut strait = Strait::start(&deployment, &config(&sb, &deployment, &topic, EOS, ""));
    produce(&sb.source, &topic, &seqs(0, 100));
    wait_for("the first records' progress on the target", MINUTE, || {
        committed(&sb.target, &group, &remote, PARTS) == vec![Some(100); 2]
    });
    // Another producer's transaction stays open on remote partition 0.
    let other: ThreadedProducer<_> = ClientConfig::new()
        .set("bootstrap.servers", &sb.target)
        .set("transactional.id", unique("other-txid"))
        .create()
        .unwrap();
    other.init_transactions(MINUTE).unwrap();
    other.begin_transaction().unwrap();
    other
        .send(
            BaseRecord::<str, str>::to(&remote)
                .partition(0)
                .payload("other"),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    other.flush(MINUTE).unwrap();
    produce(&sb.source, &topic, &seqs(100, 300));
    wait_for("the advisory commit of every record", MINUTE, || {
        committed(&sb.source, &group, &topic, PARTS) == vec![Some(300); 2]
    });
    let on_target = committed(&sb.target, &group, &remote, PARTS);
    let tansu = sb.broker == Broker::Tansu;
    if tansu {
        assert_eq!(
            on_target,
            vec![Some(100); 2],
            "the premise: tansu holds back the progress of transactions that wrote partition 0 \
             (which wrote both) while another transaction is open there"
        );
    } else {
        assert_eq!(
            on_target,
            vec![Some(300); 2],
            "Kafka commits a transaction's offsets with its records, open transactions or not"
        );
    }
    // On tansu a restart now would resume both partitions from 100: 400
    // duplicates, unless it resumes from the source's commit.
    strait.stop_with("KILL", Duration::from_secs(10));
    strait.restart();
    let behind = |s: &Strait| {
        s.metric("strait_progress_behind_total{flow=\"src-dst\"}")
            .unwrap_or(0.0)
    };
    if tansu {
        wait_for("the unit resumed from the source's commit", MINUTE, || {
            behind(&strait) >= 2.0
        });
    }
    other.abort_transaction(MINUTE).unwrap();
    produce(&sb.source, &topic, &seqs(300, 400));
    let (got, tally) = read_committed(&sb.target, &remote, PARTS, 800, MINUTE);
    // Panics on a missing or reordered record.
    let dups = check_sequences(&got, PARTS, 400);
    assert_eq!(
        dups, 0,
        "progress lost on the target made duplicates: {tally:?}"
    );
    if tansu {
        assert!(strait
            .log_text()
            .contains("behind the advisory commit on the source"));
    } else {
        let got = consume(&sb.target, &remote, PARTS, 800, MINUTE);
        assert_eq!(check_sequences(&got, PARTS, 400), 0, "read by librdkafka");
        assert_eq!(behind(&strait), 0.0, "Kafka lost no progress");
    }
}

/// Issue 20, item 4: a flow switched back to exactly-once after its source
/// topic was re-created. The target still holds the progress of the old
/// topic (100, made before the switch to at-least-once); the source holds
/// the new topic's (10, made by at-least-once). Comparing the two as
/// numbers picks the old topic's 100, whose topic id tells the start check
/// the topic is new: the new topic is replicated again from its beginning,
/// 10 duplicates (tried, before positions of another incarnation were
/// dropped before the comparison). Now the new topic's 10 is taken.
#[test]
fn exactly_once_resumes_from_the_current_topic_incarnation_not_the_larger_position() {
    let sb = sandbox();
    if sb.skip_on_tansu("deleting a topic strait reads crashes librdkafka on tansu") {
        return;
    }
    let topic = unique("eosinc");
    let deployment = unique("eosinc");
    let remote = format!("src.{topic}");
    let group = format!("strait.{deployment}.src-dst");
    let new = |from: usize, to: usize| -> Vec<Rec> {
        (from..to)
            .map(|s| Rec {
                value: Some(format!("new-p0-{s}").into_bytes()),
                ..Rec::seq(0, s)
            })
            .collect()
    };
    create_topic(&sb.source, &topic, 1);
    produce(&sb.source, &topic, &Rec::seqs(1, 0..100));
    let eos = config(&sb, &deployment, &topic, EOS, "");
    let mut strait = Strait::start(&format!("{deployment}-eos"), &eos);
    wait_for("the old topic's progress on the target", MINUTE, || {
        committed(&sb.target, &group, &remote, 1) == vec![Some(100)]
    });
    assert!(strait.stop_with("TERM", MINUTE).success());

    // Re-created while strait is stopped, then replicated at-least-once.
    delete_topic(&sb.source, &topic);
    create_topic(&sb.source, &topic, 1);
    produce(&sb.source, &topic, &new(0, 10));
    let alo = config(&sb, &deployment, &topic, "", "");
    let mut strait = Strait::start(&format!("{deployment}-alo"), &alo);
    wait_for("the new topic's position on the source", MINUTE, || {
        committed(&sb.source, &group, &topic, 1) == vec![Some(10)]
    });
    assert!(strait.stop_with("TERM", MINUTE).success());
    assert_eq!(
        committed(&sb.target, &group, &remote, 1),
        vec![Some(100)],
        "the premise: the target still holds the old topic's progress"
    );

    // Back to exactly-once.
    produce(&sb.source, &topic, &new(10, 20));
    let _strait = Strait::start(&format!("{deployment}-eos2"), &eos);
    let got = python_read_committed(&sb.target, &remote, 1, 120, MINUTE);
    let expected: Vec<String> = (0..100)
        .map(|s| format!("p0-{s}"))
        .chain((0..20).map(|s| format!("new-p0-{s}")))
        .collect();
    assert_eq!(
        values(&got),
        expected,
        "the old topic, then the new one, each record once"
    );
}

#[test]
fn fencing_a_transactional_id_stops_its_producer_from_committing() {
    let sb = sandbox();
    let topic = unique("fence");
    create_topic(&sb.target, &topic, 1);
    let txid = unique("fence-txid");
    let zombie: ThreadedProducer<_> = ClientConfig::new()
        .set("bootstrap.servers", &sb.target)
        .set("transactional.id", &txid)
        .set("transaction.timeout.ms", "60000")
        .create()
        .unwrap();
    zombie.init_transactions(MINUTE).unwrap();
    zombie.begin_transaction().unwrap();
    zombie
        .send(
            BaseRecord::<str, str>::to(&topic)
                .partition(0)
                .payload("zombie"),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    zombie.flush(MINUTE).unwrap();
    // What a new owner does to a unit's previous writer.
    let deployment = unique("fence");
    let cfg = strait_common::config::Config::parse(
        &config(&sb, &deployment, &topic, EOS, "").replace("{metrics}", "127.0.0.1:0"),
    )
    .unwrap();
    let spec = strait_worker::FlowSpec::new(&cfg, cfg.flows[0].clone());
    strait_worker::fence_writer(&spec, &txid).unwrap();
    let commit = zombie.commit_transaction(Duration::from_secs(10));
    assert!(commit.is_err(), "a fenced producer committed: {commit:?}");
    // A record written after the fence, outside transactions, so the read
    // below knows it has seen the log up to the fence and past it.
    produce(&sb.target, &topic, &[Rec::seq(0, 0)]);
    let (got, tally) = read_committed(&sb.target, &topic, 1, 1, MINUTE);
    assert_eq!(
        values(&got),
        ["p0-0"],
        "the fenced transaction stays hidden"
    );
    assert_eq!(tally.aborted + tally.open, 1, "{tally:?}");
    if sb.broker == Broker::Kafka {
        // Kafka's own read_committed agrees: the fence aborted it.
        assert_eq!(values(&consume(&sb.target, &topic, 1, 1, MINUTE)), ["p0-0"]);
    }
}

/// The log reader (the chaos suite's and these tests' read_committed on
/// tansu) shows records outside transactions and of committed ones, in log
/// order, and hides aborted and open transactions; lz4 batches included.
/// On Kafka, Kafka's own read_committed readers must agree with it up to
/// the open transaction (the last stable offset, where they stop).
#[test]
fn the_log_reader_shows_committed_records_only() {
    let sb = sandbox();
    let topic = unique("logreader");
    create_topic(&sb.target, &topic, 1);
    let plain: ThreadedProducer<_> = ClientConfig::new()
        .set("bootstrap.servers", &sb.target)
        .set("compression.type", "lz4")
        .create()
        .unwrap();
    let txns: ThreadedProducer<_> = ClientConfig::new()
        .set("bootstrap.servers", &sb.target)
        .set("transactional.id", unique("logreader-txid"))
        .set("compression.type", "lz4")
        .create()
        .unwrap();
    txns.init_transactions(MINUTE).unwrap();
    let send = |p: &ThreadedProducer<_>, value: &str| {
        p.send(
            BaseRecord::<str, str>::to(&topic)
                .partition(0)
                .payload(value),
        )
        .map_err(|(e, _)| e)
        .unwrap();
        p.flush(MINUTE).unwrap();
    };
    let transaction = |values: &[&str], commit: bool| {
        txns.begin_transaction().unwrap();
        for v in values {
            send(&txns, v);
        }
        if commit {
            txns.commit_transaction(MINUTE).unwrap();
        } else {
            txns.abort_transaction(MINUTE).unwrap();
        }
    };
    send(&plain, "plain-0");
    transaction(&["committed-0", "committed-1"], true);
    transaction(&["aborted-0", "aborted-1", "aborted-2"], false);
    send(&plain, "plain-1");
    transaction(&["committed-2"], true);
    txns.begin_transaction().unwrap();
    send(&txns, "open-0");
    send(&plain, "plain-2");
    let (got, tally) = read_committed(&sb.target, &topic, 1, 6, MINUTE);
    assert_eq!(
        values(&got),
        [
            "plain-0",
            "committed-0",
            "committed-1",
            "plain-1",
            "committed-2",
            "plain-2"
        ]
    );
    assert_eq!((tally.aborted, tally.open), (3, 1), "{tally:?}");
    assert_eq!(
        (tally.commit_markers, tally.abort_markers),
        (2, 1),
        "{tally:?}"
    );
    if sb.broker == Broker::Kafka {
        let stable = [
            "plain-0",
            "committed-0",
            "committed-1",
            "plain-1",
            "committed-2",
        ];
        let timeout = Duration::from_secs(10);
        assert_eq!(values(&consume(&sb.target, &topic, 1, 5, timeout)), stable);
        assert_eq!(
            values(&python_read_committed(&sb.target, &topic, 1, 5, timeout)),
            stable
        );
    }
}

fn values(records: &[Rec]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect()
}
