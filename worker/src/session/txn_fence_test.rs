//! Zombie fencing of exactly-once flows (docs/coordination.md, "Zombie
//! fencing"), on the sandbox's Apache Kafka brokers: a worker whose lease
//! lapses around a transaction's commit never writes a record twice, in
//! either order the target's transaction coordinator may see the old
//! owner's commit and the new owner's fence.
//!
//! - The commit answered after the lease lapsed (held after
//!   `commit_transaction`): the new owner's fence finds the transaction
//!   committed, and the progress it reads next includes it.
//! - The fence first (held between the fence check and the commit): a
//!   worker paused there that wakes still believing its lease valid sends
//!   its commit after the new owner fenced its transactional id; the
//!   coordinator refuses it, the open transaction having been aborted by
//!   the fence, and the new owner writes those records again, once.
//!
//! What would fail: a new owner that did not fence the old transactional
//! id before reading progress. The second case then shows every record of
//! the held transaction twice (tried: read_committed then counts 100
//! duplicates).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use strait_common::config::Config;
use strait_common::coord::lease::Fence;
use strait_testkit::config::ConfigBuilder;
use strait_testkit::{self as testkit, Rec};

use super::test_support::*;
use crate::{clients, run_flow, Assignment, FlowSpec, StatusBoard, UnitLink};

const AFTER_COMMIT: &str = "txn::after_commit";
const BEFORE_COMMIT: &str = "txn::before_commit";
const FIRST: usize = 200;
const MORE: usize = 100;

/// Records visible on the target to a reader of `isolation`.
fn visible(bootstrap: &str, topic: &str, isolation: &str) -> usize {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", testkit::unique("count"))
        .set("isolation.level", isolation)
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let (low, high) = c
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap();
    if high == low {
        return 0;
    }
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut n = 0;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(_)) => n += 1,
            // Caught up: the partition's end for this isolation level.
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
            _ => {}
        }
    }
    n
}

/// One owner change around a held transaction: `hold` names the failpoint
/// the first owner is held at when its lease lapses.
async fn owner_changes_while_held_at(hold: &'static str) {
    let sbx = testkit::sandbox();
    if sbx.skip_on_tansu("tansu drops a transaction's offsets when the producer is fenced") {
        return;
    }
    let scenario = fail::FailScenario::setup();
    let topic = testkit::unique("zombie");
    let remote = format!("src.{topic}");
    let (source, target, t, r) = (
        sbx.source.clone(),
        sbx.target.clone(),
        topic.clone(),
        remote.clone(),
    );
    blocking(move || {
        testkit::create_topic(&source, &t, 1);
        testkit::create_topic(&source, "mm2-offset-syncs.dst.internal", 1);
        testkit::create_topic(&target, &r, 1);
        testkit::produce(&source, &t, &Rec::seqs(1, 0..FIRST));
    })
    .await;
    let text = ConfigBuilder::new(&testkit::unique("eos"), &sbx.source, &sbx.target)
        .no_metrics_endpoint()
        .quick()
        // A failed session of worker a must not start again before its
        // lease is over (the member would have stopped it by then).
        .worker("restart_backoff", "20s")
        .flow("topics", [topic.as_str()])
        .flow_raw("exactly_once = true\ntransaction_interval = \"1s\"\n")
        .build();
    let config = Config::parse(&text).unwrap();
    let flow = config.flows[0].clone();
    let unit = unit_of(&flow.name, &topic);
    let spec_a = FlowSpec::new(&config, flow.clone()).for_worker("a");
    let spec_b = FlowSpec::new(&config, flow).for_worker("b");

    // Hold the first commit of worker a, which holds every record so far.
    let (hit, go) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let (h, g) = (hit.clone(), go.clone());
    fail::cfg_callback(hold, move || {
        if h.swap(true, Ordering::SeqCst) {
            return; // only the first commit is held
        }
        while !g.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .unwrap();
    // A failing assertion lets the held session go: the test fails instead
    // of hanging its binary on a session stuck in the failpoint.
    let _release = Release(go.clone());
    // Worker a's lease: long, or (fence first) kept alive until its held
    // commit is let go and ending a few seconds later, as when a paused
    // worker wakes before its own clock says the lease is over. (A fixed
    // lease of 12 s could end first on a loaded machine.)
    let fence_a = Fence::closed();
    let renewal = CancellationToken::new();
    match hold {
        AFTER_COMMIT => fence_a.open_until(Instant::now() + Duration::from_secs(3600)),
        _ => {
            fence_a.open_until(Instant::now() + LAST_RENEWAL_HOLDS);
            tokio::spawn(keep_open(fence_a.clone(), renewal.clone()));
        }
    }
    let _renewal = renewal.clone().drop_guard();
    let (link_a, units_a, held_a) = UnitLink::new(fence_a.clone());
    units_a.send_replace(Assignment {
        generation: 1,
        units: BTreeSet::from([unit.clone()]),
    });
    let shutdown = CancellationToken::new();
    let task_a = tokio::spawn(run_flow(
        spec_a.clone(),
        link_a,
        StatusBoard::default(),
        shutdown.clone(),
    ));
    wait(
        "worker a held at its commit",
        Duration::from_secs(30),
        || hit.load(Ordering::SeqCst),
    )
    .await;
    let (target, r) = (sbx.target.clone(), remote.clone());
    let seen = blocking(move || {
        (
            visible(&target, &r, "read_committed"),
            visible(&target, &r, "read_uncommitted"),
        )
    })
    .await;
    match hold {
        AFTER_COMMIT => assert_eq!(seen.0, FIRST, "the held transaction committed"),
        _ => assert_eq!(seen, (0, FIRST), "the held transaction is open"),
    }

    // The unit moves to worker b, whose member fences a's transactional id
    // (the writer key names it) before the unit reaches its data plane.
    // Its commit answered, a's lease lapses; or, fence first, a still
    // believes its lease valid when it wakes, and sends its commit.
    if hold == AFTER_COMMIT {
        fence_a.close();
    }
    let (spec, txid) = (spec_b.clone(), spec_a.transactional_id());
    blocking(move || clients::fence(&spec, &txid))
        .await
        .expect("the new owner fences the old writer");
    let fence_b = Fence::closed();
    fence_b.open_until(Instant::now() + Duration::from_secs(3600));
    let (link_b, units_b, _held_b) = UnitLink::new(fence_b);
    units_b.send_replace(Assignment {
        generation: 1,
        units: BTreeSet::from([unit]),
    });
    let task_b = tokio::spawn(run_flow(
        spec_b,
        link_b,
        StatusBoard::default(),
        shutdown.clone(),
    ));
    let (source, t) = (sbx.source.clone(), topic.clone());
    blocking(move || testkit::produce(&source, &t, &Rec::seqs(1, FIRST..FIRST + MORE))).await;
    // Worker a wakes: it must neither commit nor write again.
    if hold == BEFORE_COMMIT {
        assert!(
            fence_a.is_open(),
            "worker a's lease ended before its commit was let go: the test is too slow"
        );
    }
    renewal.cancel();
    go.store(true, Ordering::SeqCst);
    // Then the member of worker a, its lease lost, assigns nothing.
    wait("worker a's lease over", Duration::from_secs(30), || {
        !fence_a.is_open()
    })
    .await;
    units_a.send_replace(Assignment {
        generation: 2,
        units: BTreeSet::new(),
    });
    wait("worker a let go", Duration::from_secs(30), || {
        held_a.borrow().units.is_empty()
    })
    .await;

    let (target, r) = (sbx.target.clone(), remote.clone());
    let got =
        blocking(move || testkit::consume(&target, &r, 1, FIRST + MORE, Duration::from_secs(60)))
            .await;
    fail::remove(hold);
    shutdown.cancel();
    task_a.await.unwrap().unwrap();
    task_b.await.unwrap().unwrap();
    scenario.teardown();
    let dups = testkit::check_sequences(&got, 1, FIRST + MORE);
    assert_eq!(dups, 0, "records written twice (read_committed)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_answered_after_the_lease_lapsed_is_not_a_second_write() {
    owner_changes_while_held_at(AFTER_COMMIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_sent_after_the_new_owner_fenced_is_refused() {
    owner_changes_while_held_at(BEFORE_COMMIT).await;
}

/// How long worker a's lease holds after its last renewal.
const LAST_RENEWAL_HOLDS: Duration = Duration::from_secs(4);

/// Renews `fence` as a lease's keep-alive would, until `stop`.
async fn keep_open(fence: Fence, stop: CancellationToken) {
    while !stop.is_cancelled() {
        fence.open_until(Instant::now() + LAST_RENEWAL_HOLDS);
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
}

/// Sets its flag when dropped (also while a failing test unwinds).
struct Release(Arc<AtomicBool>);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}
