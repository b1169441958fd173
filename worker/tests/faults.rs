//! Data-plane fault tests on librdkafka's mock cluster: the target goes away
//! or answers with errors, and nothing may be lost. (End-to-end behaviour on
//! real brokers is tested in the top-level tests/.)

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use strait_common::config::Config;
use strait_common::coord::lease::Fence;
use strait_common::formats::OffsetSync;
use strait_common::model::{TopicPartition, Unit};
use strait_testkit::config::ConfigBuilder;
use strait_testkit::{self as testkit, Rec};
use strait_worker::{
    run_flow, Assignment, FlowSpec, Held, StatusBoard, UnitLink, UnitState, UnitStatus,
};

type Mock = MockCluster<'static, DefaultProducerContext>;

fn produce(cluster: &Mock, partitions: i32, seqs: std::ops::Range<usize>) {
    testkit::produce(
        &cluster.bootstrap_servers(),
        TOPIC,
        &Rec::seqs(partitions, seqs),
    );
}

/// Every record of the target's remote topic, with its offset.
fn read_all(cluster: &Mock, partitions: i32, expect: usize) -> Vec<(i64, Rec)> {
    testkit::consume_with_offsets(
        &cluster.bootstrap_servers(),
        REMOTE,
        partitions,
        expect,
        Duration::from_secs(30),
    )
}

/// The positions committed under strait's group on the source.
fn committed(cluster: &Mock, partitions: i32) -> Vec<Option<i64>> {
    testkit::committed(&cluster.bootstrap_servers(), GROUP, TOPIC, partitions)
}

fn records(landed: &[(i64, Rec)]) -> Vec<Rec> {
    landed.iter().map(|(_, r)| r.clone()).collect()
}

const TOPIC: &str = "orders";
const REMOTE: &str = "src.orders";
const DEPLOYMENT: &str = "faults";
const GROUP: &str = "strait.faults.src-dst";
const SYNCS: &str = "mm2-offset-syncs.dst.internal";

struct Harness {
    source: Mock,
    target: Mock,
    status: StatusBoard,
    shutdown: CancellationToken,
    flow: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    units: watch::Sender<Assignment>,
    held: watch::Receiver<Held>,
    fence: Fence,
}

impl Drop for Harness {
    fn drop(&mut self) {
        // A failed assertion must not leave the flow running forever.
        self.shutdown.cancel();
    }
}

impl Harness {
    /// Two mock clusters with `partitions` on both sides, `per_partition`
    /// records produced to the source, and a flow not yet started.
    fn clusters(partitions: i32, per_partition: usize) -> (Mock, Mock) {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("info,librdkafka=warn")
            .with_test_writer()
            .try_init();
        let source = MockCluster::new(1).unwrap();
        let target = MockCluster::new(1).unwrap();
        source.create_topic(TOPIC, partitions, 1).unwrap();
        source.create_topic(SYNCS, 1, 1).unwrap();
        target.create_topic(REMOTE, partitions, 1).unwrap();
        produce(&source, partitions, 0..per_partition);
        (source, target)
    }

    /// The mock cluster answers no DescribeTopics (it names no controller),
    /// so asking it would only wait out the query at every unit start: the
    /// flow is told no ids, unless a test gives some (`start_spec`).
    fn start(source: Mock, target: Mock, partitions: i32, extra: &str) -> Harness {
        Harness::start_spec(source, target, partitions, extra, |s| {
            s.with_topic_ids(Default::default())
        })
    }

    /// [`Harness::start`] with the flow's spec changed by `spec`.
    fn start_spec(
        source: Mock,
        target: Mock,
        partitions: i32,
        extra: &str,
        spec: impl FnOnce(FlowSpec) -> FlowSpec,
    ) -> Harness {
        Harness::start_full(source, target, partitions, extra, |c| c, spec)
    }

    /// [`Harness::start`] with more settings (`config`) and the flow's
    /// spec changed by `spec`.
    fn start_full(
        source: Mock,
        target: Mock,
        partitions: i32,
        extra: &str,
        config: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
        spec: impl FnOnce(FlowSpec) -> FlowSpec,
    ) -> Harness {
        let text = config(
            ConfigBuilder::new(
                DEPLOYMENT,
                &source.bootstrap_servers(),
                &target.bootstrap_servers(),
            )
            .no_metrics_endpoint()
            .flow_raw(extra)
            .worker("commit_interval", "100ms")
            .worker("offset_sync_interval", "100ms")
            .worker("restart_backoff", "200ms")
            .worker("drain_timeout", "5s"),
        )
        .build();
        let config = Config::parse(&text).unwrap();
        let flow = config.flows[0].clone();
        let units: BTreeSet<Unit> = (0..partitions)
            .map(|p| Unit {
                flow: flow.name.clone(),
                source: TopicPartition {
                    topic: TOPIC.into(),
                    partition: p,
                },
                remote_topic: REMOTE.into(),
            })
            .collect();
        let fence = Fence::closed();
        fence.open_until(Instant::now() + Duration::from_secs(3600));
        let (link, tx, held) = UnitLink::new(fence.clone());
        tx.send_replace(Assignment {
            generation: 1,
            units,
        });
        let status = StatusBoard::default();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run_flow(
            spec(FlowSpec::new(&config, flow)),
            link,
            status.clone(),
            shutdown.clone(),
        ));
        Harness {
            source,
            target,
            status,
            shutdown,
            flow: Some(task),
            units: tx,
            held,
            fence,
        }
    }

    async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.flow.take() {
            t.await.unwrap().unwrap();
        }
    }

    fn unit_status(&self, partition: i32) -> Option<UnitStatus> {
        self.status
            .snapshot()
            .into_iter()
            .find(|(u, _)| u.source.partition == partition)
            .map(|(_, s)| s)
    }

    /// Waits until `partition`'s unit has failed; its status then.
    async fn wait_failed(&self, partition: i32) -> UnitStatus {
        let what = format!("partition {partition} failed");
        self.wait_for(&what, Duration::from_secs(30), |h| {
            h.unit_status(partition)
                .is_some_and(|s| s.state == UnitState::Failed)
        })
        .await;
        self.unit_status(partition).expect("failed, so known")
    }

    async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut(&Harness) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        while !cond(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; status: {:?}",
                self.status.snapshot()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_down_for_a_while_loses_nothing_and_lag_shows_it() {
    let (source, target) = Harness::clusters(2, 500);
    target.broker_down(1).unwrap();
    let mut h = Harness::start(source, target, 2, "");

    // While the target is away, the records wait in flight and lag says so
    // (the mock cluster's high watermarks count records, unlike tansu's).
    h.wait_for(
        "lag of 500 on both partitions",
        Duration::from_secs(20),
        |h| (0..2).all(|p| h.unit_status(p).and_then(|s| s.lag) == Some(500)),
    )
    .await;
    assert!(
        (0..2).all(|p| h.unit_status(p).unwrap().acknowledged.is_none()),
        "nothing can be acknowledged while the target is down"
    );
    tokio::time::sleep(Duration::from_secs(2)).await; // stay down past several retries
    produce(&h.source, 2, 500..1000);
    h.target.broker_up(1).unwrap();

    h.wait_for("all committed", Duration::from_secs(60), |h| {
        committed(&h.source, 2) == vec![Some(1000), Some(1000)]
    })
    .await;
    h.wait_for("lag back to 0", Duration::from_secs(20), |h| {
        (0..2).all(|p| h.unit_status(p).and_then(|s| s.lag) == Some(0))
    })
    .await;
    let landed = read_all(&h.target, 2, 2000);
    let dups = testkit::check_sequences(&records(&landed), 2, 1000);
    println!("target down: 2000 records, {dups} duplicates");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_request_errors_are_retried_without_loss() {
    let (source, target) = Harness::clusters(2, 300);
    // Retriable errors librdkafka must ride out, several rounds of them.
    let errs = [
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        RDKafkaRespErr::RD_KAFKA_RESP_ERR__TRANSPORT,
    ];
    let many: Vec<_> = errs.iter().cycle().take(12).copied().collect();
    target.request_errors(RDKafkaApiKey::Produce, &many);
    let mut h = Harness::start(source, target, 2, "");
    h.wait_for("all committed", Duration::from_secs(60), |h| {
        committed(&h.source, 2) == vec![Some(300), Some(300)]
    })
    .await;
    let landed = read_all(&h.target, 2, 600);
    let dups = testkit::check_sequences(&records(&landed), 2, 300);
    println!("request errors: 600 records, {dups} duplicates");
    // The offset syncs on the source describe where records landed.
    let syncs = read_all_syncs(&h.source);
    assert!(!syncs.is_empty(), "offset syncs were emitted");
    for s in &syncs {
        let (_, r) = landed
            .iter()
            .find(|(o, r)| *o == s.downstream_offset && r.partition == s.partition)
            .unwrap_or_else(|| panic!("sync {s:?} points at no record"));
        assert_eq!(
            String::from_utf8_lossy(r.value.as_deref().unwrap()),
            format!("p{}-{}", s.partition, s.upstream_offset),
            "sync {s:?}: the downstream record is the upstream one"
        );
    }
    h.stop().await;
}

fn read_all_syncs(cluster: &Mock) -> Vec<OffsetSync> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("group.id", "faults-syncs-reader")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(SYNCS, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            out.push(OffsetSync::decode(m.key().unwrap(), m.payload().unwrap()).unwrap());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_record_stops_its_unit_and_progress_stays_before_it() {
    let (source, target) = Harness::clusters(1, 50);
    target.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    let mut h = Harness::start(source, target, 1, "");
    let error = h.wait_failed(0).await.error.unwrap();
    assert!(error.contains("refused by the target"), "{error}");
    // The first produce request was refused: it held record 0, so nothing
    // may be committed past 0, whatever later requests did.
    tokio::time::sleep(Duration::from_millis(500)).await; // several commit intervals
    let c = committed(&h.source, 1)[0];
    assert!(
        c.is_none() || c == Some(0),
        "committed {c:?} past a refused record"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_record_can_be_skipped_and_counted() {
    let (source, target) = Harness::clusters(1, 50);
    target.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    let mut h = Harness::start(source, target, 1, "on_refused = \"skip\"");
    // The first produce request, holding the first records, is refused and
    // skipped; progress moves past them.
    h.wait_for("first batch committed", Duration::from_secs(30), |h| {
        committed(&h.source, 1) == vec![Some(50)]
    })
    .await;
    produce(&h.source, 1, 50..100);
    h.wait_for("second batch committed", Duration::from_secs(30), |h| {
        committed(&h.source, 1) == vec![Some(100)]
    })
    .await;
    // 50 land: the first batch of 50 was skipped.
    let seqs: BTreeSet<String> = read_all(&h.target, 1, 50)
        .iter()
        .map(|(_, r)| String::from_utf8_lossy(r.value.as_deref().unwrap()).into_owned())
        .collect();
    assert!(
        !seqs.contains("p0-0"),
        "the refused record was skipped, not written"
    );
    for i in 50..100 {
        assert!(
            seqs.contains(&format!("p0-{i}")),
            "record {i} after the skip is missing"
        );
    }
    assert_ne!(h.unit_status(0).unwrap().state, UnitState::Failed);
    h.stop().await;
}

/// An offset sync the syncs producer cannot queue (its queue is full) is
/// kept, in order, and sent again: none goes missing from the topic, and no
/// commit passes one that is not written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_syncs_that_cannot_be_queued_are_sent_again() {
    const PER: usize = 600;
    const LAG_MAX: i64 = 10;
    let (source, target) = Harness::clusters(1, PER);
    // The syncs go to the source (the default location), whose producer
    // queue holds 2 records and whose broker answers slowly: a burst of
    // syncs (one every 10 records) cannot all be queued.
    source
        .broker_round_trip_time(1, Duration::from_millis(300))
        .unwrap();
    let mut h = Harness::start_full(
        source,
        target,
        1,
        &format!("offset_lag_max = {LAG_MAX}"),
        |c| c.source_kafka("queue.buffering.max.messages", 2),
        |s| s.with_topic_ids(Default::default()),
    );
    h.wait_for("all committed", Duration::from_secs(60), |h| {
        committed(&h.source, 1) == vec![Some(PER as i64)]
    })
    .await;
    h.source.broker_round_trip_time(1, Duration::ZERO).unwrap();
    let syncs: Vec<i64> = read_all_syncs(&h.source)
        .into_iter()
        .map(|s| s.upstream_offset)
        .collect();
    println!("{} offset syncs: {syncs:?}", syncs.len());
    assert_eq!(syncs.first(), Some(&0), "the first record is synced");
    let gaps: Vec<(i64, i64)> = syncs
        .windows(2)
        .filter(|w| w[1] - w[0] > LAG_MAX || w[1] < w[0])
        .map(|w| (w[0], w[1]))
        .collect();
    assert!(
        gaps.is_empty(),
        "syncs missing or out of order between {gaps:?} (offset_lag_max {LAG_MAX})"
    );
    assert!(
        *syncs.last().unwrap() >= PER as i64 - LAG_MAX,
        "syncs up to the end"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_wait_until_offset_syncs_are_written() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("info,librdkafka=warn")
        .with_test_writer()
        .try_init();
    // The offset-syncs topic leads on broker 2 of the source, the data and
    // the group coordinator on broker 1; broker 2 goes away.
    let source = MockCluster::new(3).unwrap();
    source.create_topic(TOPIC, 1, 1).unwrap();
    source.partition_leader(TOPIC, 0, Some(1)).unwrap();
    source.create_topic(SYNCS, 1, 1).unwrap();
    source.partition_leader(SYNCS, 0, Some(2)).unwrap();
    source
        .coordinator(rdkafka::mocking::MockCoordinator::Group(GROUP.into()), 1)
        .unwrap();
    let target = MockCluster::new(1).unwrap();
    target.create_topic(REMOTE, 1, 1).unwrap();
    produce(&source, 1, 0..200);
    source.broker_down(2).unwrap();
    let mut h = Harness::start(source, target, 1, "");

    // Records reach the target and are acknowledged ...
    h.wait_for("all 200 acknowledged", Duration::from_secs(30), |h| {
        h.unit_status(0).and_then(|s| s.acknowledged) == Some(200)
    })
    .await;
    assert_eq!(read_all(&h.target, 1, 200).len(), 200);
    // ... but the commit stays before the first record, whose sync is not
    // written: translation may rely on every sync below a commit.
    h.wait_for("a commit pass", Duration::from_secs(10), |h| {
        h.unit_status(0).is_some_and(|s| s.committed.is_some())
    })
    .await;
    assert_eq!(committed(&h.source, 1), vec![Some(0)]);

    h.source.broker_up(2).unwrap();
    h.wait_for(
        "commit after the syncs are written",
        Duration::from_secs(30),
        |h| committed(&h.source, 1) == vec![Some(200)],
    )
    .await;
    assert!(!read_all_syncs(&h.source).is_empty());
    h.stop().await;
}

/// Self-fencing (docs/coordination.md, "Leases and fencing"): once the worker's lease can
/// no longer be vouched for, the data plane writes and commits nothing
/// more, for every unit at once, and resumes from the committed position
/// when the fence opens again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_fence_stops_writes_and_commits_until_it_opens() {
    let (source, target) = Harness::clusters(2, 200);
    let mut h = Harness::start(source, target, 2, "");
    h.wait_for("all committed", Duration::from_secs(30), |h| {
        committed(&h.source, 2) == vec![Some(200), Some(200)]
    })
    .await;
    h.fence.close();
    h.wait_for(
        "the session let go of its units",
        Duration::from_secs(10),
        |h| h.held.borrow().units.is_empty(),
    )
    .await;
    produce(&h.source, 2, 200..400);
    // A negative check needs time to pass: several commit intervals and polls.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let landed = testkit::consume_with_offsets(
        &h.target.bootstrap_servers(),
        REMOTE,
        2,
        800,
        Duration::from_secs(2),
    );
    assert_eq!(landed.len(), 400, "nothing written while fenced");
    assert_eq!(committed(&h.source, 2), vec![Some(200), Some(200)]);

    h.fence
        .open_until(Instant::now() + Duration::from_secs(3600));
    h.wait_for(
        "all committed after the fence opened",
        Duration::from_secs(30),
        |h| committed(&h.source, 2) == vec![Some(400), Some(400)],
    )
    .await;
    let landed = read_all(&h.target, 2, 800);
    let dups = testkit::check_sequences(&records(&landed), 2, 400);
    println!("fenced and reopened: 800 records, {dups} duplicates");
    h.stop().await;
}

/// The release protocol's signal: the session says which units it holds
/// as of which assignment, and a unit wanted back while it was being
/// released starts again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_units_follow_assignments_and_a_unit_wanted_back_restarts() {
    let (source, target) = Harness::clusters(2, 100);
    let mut h = Harness::start(source, target, 2, "");
    let all: BTreeSet<Unit> = h.units.borrow().units.clone();
    h.wait_for(
        "both units held and caught up",
        Duration::from_secs(20),
        |h| {
            let held = h.held.borrow();
            held.generation == 1
                && held.units == all
                && committed(&h.source, 2) == vec![Some(100), Some(100)]
        },
    )
    .await;
    let p0: BTreeSet<Unit> = all
        .iter()
        .filter(|u| u.source.partition == 0)
        .cloned()
        .collect();
    h.units.send_replace(Assignment {
        generation: 2,
        units: p0.clone(),
    });
    h.wait_for("partition 1 released", Duration::from_secs(20), |h| {
        let held = h.held.borrow();
        held.generation == 2 && held.units == p0
    })
    .await;
    assert_eq!(
        committed(&h.source, 2)[1],
        Some(100),
        "released at its acknowledged position"
    );
    // Taken away and given back before the release can finish.
    h.units.send_replace(Assignment {
        generation: 3,
        units: p0.clone(),
    });
    h.units.send_replace(Assignment {
        generation: 4,
        units: all.clone(),
    });
    produce(&h.source, 2, 100..200);
    h.wait_for(
        "both partitions replicate again",
        Duration::from_secs(30),
        |h| committed(&h.source, 2) == vec![Some(200), Some(200)],
    )
    .await;
    assert_eq!(h.held.borrow().units, all);
    h.stop().await;
}

/// The flow settings of the exactly-once fault tests.
const EXACTLY_ONCE: &str = "exactly_once = true\ntransaction_interval = \"200ms\"";

/// The mock cluster writes no transaction markers, keeps no offsets
/// committed in transactions (measured: OffsetFetch answers none) and lets
/// a fenced producer commit, so fencing is tested on tansu; here
/// an exactly-once session resumes from the advisory commit on the source,
/// and duplicates cannot be judged; what must hold is that nothing is lost
/// and that every session fault ends in a new session, not a stuck flow.
fn eos_harness(partitions: i32, per_partition: usize) -> Harness {
    let (source, target) = Harness::clusters(partitions, per_partition);
    Harness::start(source, target, partitions, EXACTLY_ONCE)
}

async fn all_arrive(h: &Harness, partitions: i32, per_partition: usize) {
    let want: Vec<Option<i64>> = vec![Some(per_partition as i64); partitions as usize];
    h.wait_for("all committed", Duration::from_secs(90), |h| {
        committed(&h.source, partitions) == want
    })
    .await;
    let landed = read_all(&h.target, partitions, partitions as usize * per_partition);
    // check_sequences panics on a missing or out-of-order record.
    let dups = testkit::check_sequences(&records(&landed), partitions, per_partition);
    println!(
        "{} records, {dups} duplicates (not judged on the mock cluster)",
        landed.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_replicates_in_transactions() {
    let mut h = eos_harness(2, 300);
    all_arrive(&h, 2, 300).await;
    produce(&h.source, 2, 300..600);
    all_arrive(&h, 2, 600).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_survives_a_transaction_coordinator_that_fails() {
    let (source, target) = Harness::clusters(2, 200);
    // EndTxn (the commit) fails a few times: each failure ends the session,
    // its transaction aborts, and the next session resumes.
    target.request_errors(
        RDKafkaApiKey::EndTxn,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
        ],
    );
    let mut h = Harness::start(source, target, 2, EXACTLY_ONCE);
    all_arrive(&h, 2, 200).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_commit_that_times_out_loses_nothing() {
    let (source, target) = Harness::clusters(1, 200);
    target.request_errors(
        RDKafkaApiKey::EndTxn,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        ],
    );
    let mut h = Harness::start(source, target, 1, EXACTLY_ONCE);
    all_arrive(&h, 1, 200).await;
    h.stop().await;
}

/// A record the target refuses aborts its transaction, so the session ends;
/// the next one goes on at once with only that partition stopped, and a
/// pause and resume (the unit leaving the assignment and coming back)
/// starts it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_a_refused_record_stops_only_its_partition() {
    let (source, target) = Harness::clusters(2, 50);
    let mut h = Harness::start(source, target, 2, EXACTLY_ONCE);
    h.wait_for(
        "the first records committed",
        Duration::from_secs(30),
        |h| committed(&h.source, 2) == [Some(50), Some(50)],
    )
    .await;
    // The next produce request is refused; only partition 1 has records
    // to send then, so it holds only theirs.
    h.target.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
    );
    let only = |p: i32, seqs: std::ops::Range<usize>| {
        let recs: Vec<Rec> = seqs.map(|i| Rec::seq(p, i)).collect();
        testkit::produce(&h.source.bootstrap_servers(), TOPIC, &recs);
    };
    only(1, 50..60);
    let error = h.wait_failed(1).await.error.unwrap_or_default();
    assert!(
        error.contains("offset 50") && error.contains("refused by the target"),
        "{error}"
    );
    // Partition 0 goes on, in transactions, while partition 1 holds.
    only(0, 50..100);
    h.wait_for("partition 0 going on", Duration::from_secs(30), |h| {
        committed(&h.source, 2)[0] == Some(100)
    })
    .await;
    assert_eq!(
        committed(&h.source, 2)[1],
        Some(50),
        "nothing past the refused record"
    );
    assert_eq!(h.unit_status(1).unwrap().state, UnitState::Failed);
    assert_ne!(h.unit_status(0).unwrap().state, UnitState::Failed);
    // Paused and resumed: the unit starts again and, the target taking the
    // records now, catches up.
    let all: BTreeSet<Unit> = h.units.borrow().units.clone();
    let without: BTreeSet<Unit> = all
        .iter()
        .filter(|u| u.source.partition == 0)
        .cloned()
        .collect();
    h.units.send_replace(Assignment {
        generation: 2,
        units: without,
    });
    h.wait_for("partition 1 let go", Duration::from_secs(30), |h| {
        let held = h.held.borrow();
        held.generation == 2 && held.units.len() == 1
    })
    .await;
    h.units.send_replace(Assignment {
        generation: 3,
        units: all,
    });
    h.wait_for("partition 1 caught up", Duration::from_secs(30), |h| {
        committed(&h.source, 2) == [Some(100), Some(60)]
    })
    .await;
    let landed = read_all(&h.target, 2, 160);
    for (p, n) in [(0, 100), (1, 60)] {
        let got: BTreeSet<String> = landed
            .iter()
            .filter(|(_, r)| r.partition == p)
            .map(|(_, r)| String::from_utf8_lossy(r.value.as_deref().unwrap()).into_owned())
            .collect();
        let want: BTreeSet<String> = (0..n).map(|i| format!("p{p}-{i}")).collect();
        assert_eq!(got, want, "partition {p}: every record, nothing else");
    }
    h.stop().await;
}

/// The source topic's id, as the flow is told it: the mock cluster answers
/// no DescribeTopics (it names no controller), so the tests give it; that
/// tansu answers with ids, new ones for a re-created topic, is shown in
/// tests/source_gaps.rs.
const TOPIC_ID: &str = "zJb1xTqTR9G1Ux0Qm2m0uA";

/// Commits `position` naming a topic id other than [`TOPIC_ID`].
fn commit_in_another_incarnation(cluster: &Mock, position: i64) {
    let bootstrap = cluster.bootstrap_servers();
    let metadata = "topic_id=AAAAAAAAAAAAAAAAAAAAAQ";
    testkit::commit_group_noting(&bootstrap, GROUP, TOPIC, &[(0, position)], metadata);
}

fn with_id(spec: FlowSpec) -> FlowSpec {
    spec.with_topic_ids([(TOPIC.to_owned(), TOPIC_ID.to_owned())].into())
}

/// A re-created topic that has already grown past strait's position is in
/// range, so positions cannot tell: the topic id can. The mock cluster
/// cannot delete a topic, so the commit names another id, as one made
/// before the topic was re-created would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_made_in_another_incarnation_of_the_topic_restarts_it_from_its_beginning() {
    let (source, target) = Harness::clusters(1, 100);
    commit_in_another_incarnation(&source, 60);
    let mut h = Harness::start_spec(source, target, 1, "", with_id);
    let landed = read_all(&h.target, 1, 100);
    assert_eq!(landed.len(), 100, "the new topic, from its beginning");
    testkit::check_sequences(&records(&landed), 1, 100);
    let error = h.unit_status(0).unwrap().error.unwrap_or_default();
    assert!(
        error.contains("the topic was re-created") && error.contains("from its beginning"),
        "{error}"
    );
    // Its commits name the new incarnation.
    h.wait_for("progress at the end", Duration::from_secs(20), |h| {
        committed(&h.source, 1) == vec![Some(100)]
    })
    .await;
    assert_eq!(
        testkit::committed_with_metadata(&h.source.bootstrap_servers(), GROUP, TOPIC, 1),
        vec![Some((100, format!("topic_id={TOPIC_ID}")))]
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_of_the_same_incarnation_resumes_and_of_another_stops_when_configured() {
    // Partition positions of the topic as it is: resumed from 60.
    let (source, target) = Harness::clusters(1, 100);
    let bootstrap = source.bootstrap_servers();
    testkit::commit_group_noting(
        &bootstrap,
        GROUP,
        TOPIC,
        &[(0, 60)],
        &format!("topic_id={TOPIC_ID}"),
    );
    let mut h = Harness::start_spec(source, target, 1, "on_source_gap = \"stop\"", with_id);
    let landed = read_all(&h.target, 1, 40);
    assert_eq!(
        records(&landed)[0].value,
        Rec::seq(0, 60).value,
        "resumed at 60"
    );
    h.wait_for("progress at the end", Duration::from_secs(20), |h| {
        committed(&h.source, 1) == vec![Some(100)]
    })
    .await;
    assert_eq!(h.unit_status(0).unwrap().state, UnitState::Running);
    h.stop().await;

    // Another incarnation's commit, with "stop": the unit starts stopped.
    let (source, target) = Harness::clusters(1, 100);
    commit_in_another_incarnation(&source, 60);
    let mut h = Harness::start_spec(source, target, 1, "on_source_gap = \"stop\"", with_id);
    let error = h.wait_failed(0).await.error.unwrap_or_default();
    assert!(
        error.contains("stopped (on_source_gap = \"stop\")"),
        "{error}"
    );
    assert_eq!(
        committed(&h.source, 1),
        vec![Some(60)],
        "the position is kept"
    );
    h.stop().await;
}

/// Retention on the source: the mock cluster keeps at most 5 MB per
/// partition, so records of 700 kB, one batch each, push its log start
/// forward. Returns the partition's (low, high) watermarks afterwards.
fn overtake_with_retention(cluster: &Mock, first_seq: usize) -> (i64, i64) {
    let big: Vec<Rec> = (first_seq..first_seq + 9)
        .map(|i| {
            let mut r = Rec::seq(0, i);
            r.value = Some(vec![b'x'; 700_000]);
            r
        })
        .collect();
    use rdkafka::producer::Producer as _;
    let p = testkit::producer(&cluster.bootstrap_servers());
    for r in &big {
        // One at a time: each its own batch.
        testkit::send(&p, TOPIC, std::slice::from_ref(r));
        p.flush(Duration::from_secs(10)).unwrap();
    }
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .create()
        .unwrap();
    c.fetch_watermarks(TOPIC, 0, Duration::from_secs(10))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_expired_before_they_were_read_are_counted_and_the_unit_goes_on() {
    let (source, target) = Harness::clusters(1, 50);
    // strait had replicated 20 records when it stopped; then retention
    // deleted past that.
    testkit::commit_group(&source.bootstrap_servers(), GROUP, TOPIC, &[(0, 20)]);
    let (low, high) = overtake_with_retention(&source, 50);
    assert!(
        low > 20,
        "retention must overtake position 20 (log {low}..{high})"
    );
    let mut h = Harness::start(source, target, 1, "");
    h.wait_for("the loss seen", Duration::from_secs(20), |h| {
        h.unit_status(0).is_some_and(|s| s.lost > 0)
    })
    .await;
    let s = h.unit_status(0).unwrap();
    assert_eq!(s.lost, (low - 20) as u64, "exactly the records gone");
    assert_eq!(s.state, UnitState::Running);
    let error = s.error.unwrap();
    assert!(
        error.contains(&format!("offsets 20..{low}"))
            && error.contains(&format!("continued at {low}")),
        "{error}"
    );
    // What is left is replicated, from the log start on.
    let landed = read_all(&h.target, 1, (high - low) as usize);
    assert_eq!(landed.len(), (high - low) as usize);
    h.wait_for("progress at the end", Duration::from_secs(20), |h| {
        committed(&h.source, 1) == vec![Some(high)]
    })
    .await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_expired_before_they_were_read_stop_the_unit_when_configured() {
    // Partition 0 lost records to retention; partition 1 did not, and its
    // progress shows the session's commits go on meanwhile.
    let (source, target) = Harness::clusters(2, 50);
    testkit::commit_group(&source.bootstrap_servers(), GROUP, TOPIC, &[(0, 20)]);
    let (low, _) = overtake_with_retention(&source, 50);
    let mut h = Harness::start(source, target, 2, "on_source_gap = \"stop\"");
    let s = h.wait_failed(0).await;
    assert_eq!(s.lost, (low - 20) as u64);
    assert!(s
        .error
        .unwrap()
        .contains("stopped (on_source_gap = \"stop\")"));
    // The other partition is replicated and committed to its end, while the
    // stopped one writes nothing and keeps its position.
    h.wait_for("partition 1 committed", Duration::from_secs(20), |h| {
        committed(&h.source, 2)[1] == Some(50)
    })
    .await;
    assert_eq!(committed(&h.source, 2)[0], Some(20));
    let landed = read_all(&h.target, 2, 50);
    assert!(
        landed.iter().all(|(_, r)| r.partition == 1),
        "nothing of partition 0 written"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_past_the_log_end_is_a_recreated_topic_replicated_from_its_beginning() {
    // The topic holds 50 records; strait's position says 500: it was
    // deleted and re-created since.
    let (source, target) = Harness::clusters(1, 50);
    testkit::commit_group(&source.bootstrap_servers(), GROUP, TOPIC, &[(0, 500)]);
    let mut h = Harness::start(source, target, 1, "");
    let landed = read_all(&h.target, 1, 50);
    let values = |r: &[Rec]| r.iter().map(|r| r.value.clone()).collect::<Vec<_>>();
    assert_eq!(
        values(&records(&landed)),
        values(&Rec::seqs(1, 0..50)),
        "the new topic, from its beginning"
    );
    let s = h.unit_status(0).unwrap();
    let error = s.error.unwrap();
    assert!(
        error.contains("position 500 is past the source's end 50")
            && error.contains("from its beginning"),
        "{error}"
    );
    assert_eq!(s.lost, 0);
    h.wait_for("progress at the end", Duration::from_secs(20), |h| {
        committed(&h.source, 1) == vec![Some(50)]
    })
    .await;
    h.stop().await;
}
