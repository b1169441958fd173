//! A new leader's checkpoint service fences the previous leader's writer
//! before it reads its "never backwards" floor (`Service::start`), on the
//! sandbox's Apache Kafka brokers.
//!
//! The interleaving, made with failpoints: the former leader is held
//! between its last fence check and its EndTxn with a checkpoint at 100;
//! the group is reset to 50 on the source; the new leader starts and reads
//! its floor; the former leader resumes and commits; the new leader's
//! first round translates 50. Had the new leader read its floor before
//! fencing (as it did until December 2026: it fenced at its first round),
//! the former leader's 100 lands after the floor was read, and the new
//! leader writes its translation of 50 behind it: the checkpoints topic goes
//! backwards (tried: downstream `[100, 50]`). Fenced first, the former
//! leader's transaction is aborted and its commit refused.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use strait_common::config::Config;
use strait_common::coord::lease::Fence;
use strait_common::formats::{Checkpoint, OffsetSync};
use strait_testkit::config::ConfigBuilder;
use strait_testkit::{self as testkit, Rec};

use super::{run_checkpoints, CheckpointBoard, CheckpointSpec};

const BEFORE_COMMIT: &str = "checkpoint::before_commit";
const STARTED: &str = "checkpoint::started";
const ROUND_END: &str = "checkpoint::round_end";

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

async fn wait(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `group`'s checkpoints in `topic`, in the order the topic holds them, as
/// a read_committed reader sees them.
fn checkpoints_of(bootstrap: &str, topic: &str, group: &str) -> Vec<Checkpoint> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", testkit::unique("cp-reader"))
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let cp = Checkpoint::decode(
                    m.key().unwrap_or_default(),
                    m.payload().unwrap_or_default(),
                );
                if let Ok(cp) = cp {
                    if cp.group == group {
                        out.push(cp);
                    }
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return out,
            _ => {}
        }
    }
    panic!("{topic} not read to its end");
}

/// A callback that holds the `nth` call (from 1) until `go`, and lets the
/// others pass; `hit` is set when the held call arrives.
fn hold_nth(nth: u32, hit: Arc<AtomicBool>, go: Arc<AtomicBool>) -> impl Fn() + Send + Sync {
    let calls = AtomicU32::new(0);
    move || {
        if calls.fetch_add(1, Ordering::SeqCst) + 1 != nth {
            return;
        }
        hit.store(true, Ordering::SeqCst);
        while !go.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn flag() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(false))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_never_checkpoints_below_what_a_paused_former_leader_committed() {
    let sbx = testkit::sandbox();
    if sbx.skip_on_tansu(
        "the test judges the checkpoints read_committed; tansu shows aborted records",
    ) {
        return;
    }
    let scenario = fail::FailScenario::setup();
    let topic = testkit::unique("cp-fence");
    let group = testkit::unique("cp-fence-app");
    let deployment = testkit::unique("cpf");
    let text = ConfigBuilder::new(&deployment, &sbx.source, &sbx.target)
        .no_metrics_endpoint()
        .flow("topics", [topic.as_str()])
        .flow("groups", [group.as_str()])
        .flow("checkpoint_interval", "500ms")
        .build();
    let config = Config::parse(&text).unwrap();
    let flow = config.flows[0].clone();
    let spec = CheckpointSpec::new(&config, &flow);
    let syncs_topic = flow.offset_syncs().1;
    let cp_topic = strait_common::policy::checkpoints_topic(&flow.source);
    {
        let (source, target) = (sbx.source.clone(), sbx.target.clone());
        let (topic, group, syncs_topic, cp_topic) = (
            topic.clone(),
            group.clone(),
            syncs_topic.clone(),
            cp_topic.clone(),
        );
        blocking(move || {
            testkit::create_topic(&source, &topic, 1);
            testkit::create_topic(&source, &syncs_topic, 1);
            testkit::create_topic(&target, &cp_topic, 1);
            // Records 0 and 100 of the source are 0 and 100 on the target.
            let syncs: Vec<Rec> = [0, 100]
                .into_iter()
                .map(|o| {
                    let s = OffsetSync {
                        topic: topic.clone(),
                        partition: 0,
                        upstream_offset: o,
                        downstream_offset: o,
                    };
                    Rec {
                        partition: 0,
                        key: Some(s.encode_key().unwrap()),
                        value: Some(s.encode_value()),
                        headers: Vec::new(),
                        timestamp: None,
                    }
                })
                .collect();
            testkit::produce(&source, &syncs_topic, &syncs);
            testkit::commit_group(&source, &group, &topic, &[(0, 100)]);
        })
        .await;
    }

    // The former leader: held before the EndTxn of its first round, which
    // checkpoints 100. After that round it loses its lease.
    let (held1, go1, held2, go2, ended1) = (flag(), flag(), flag(), flag(), flag());
    fail::cfg_callback(BEFORE_COMMIT, hold_nth(1, held1.clone(), go1.clone())).unwrap();
    // The new leader: held once started (fenced, floor read), before its
    // first round. The first start is the former leader's.
    fail::cfg_callback(STARTED, hold_nth(2, held2.clone(), go2.clone())).unwrap();
    let fence1 = Fence::closed();
    fence1.open_until(Instant::now() + Duration::from_secs(3600));
    {
        let (go1, ended1, fence1) = (go1.clone(), ended1.clone(), fence1.clone());
        fail::cfg_callback(ROUND_END, move || {
            if go1.load(Ordering::SeqCst) && !ended1.swap(true, Ordering::SeqCst) {
                fence1.close(); // the former leader's held round is over
            }
        })
        .unwrap();
    }
    let board = CheckpointBoard::default();
    let shutdown = CancellationToken::new();
    let leader1 = tokio::spawn(run_checkpoints(
        spec.clone(),
        fence1.clone(),
        board.clone(),
        shutdown.clone(),
    ));
    wait(
        "the former leader held before its commit",
        Duration::from_secs(60),
        || held1.load(Ordering::SeqCst),
    )
    .await;
    // The application resets its group to 50 on the source.
    {
        let (source, group, topic) = (sbx.source.clone(), group.clone(), topic.clone());
        blocking(move || testkit::commit_group(&source, &group, &topic, &[(0, 50)])).await;
    }
    // Leadership moves: the new leader starts while the former is held.
    let fence2 = Fence::closed();
    fence2.open_until(Instant::now() + Duration::from_secs(3600));
    let leader2 = tokio::spawn(run_checkpoints(
        spec.clone(),
        fence2,
        CheckpointBoard::default(),
        shutdown.clone(),
    ));
    wait("the new leader started", Duration::from_secs(60), || {
        held2.load(Ordering::SeqCst)
    })
    .await;
    // The former leader wakes and sends its EndTxn, then its lease is gone.
    go1.store(true, Ordering::SeqCst);
    wait(
        "the former leader's round over",
        Duration::from_secs(60),
        || ended1.load(Ordering::SeqCst),
    )
    .await;
    // The new leader's first round translates 50.
    go2.store(true, Ordering::SeqCst);
    let seen = {
        let (target, cp_topic, group) = (sbx.target.clone(), cp_topic.clone(), group.clone());
        blocking(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let cps = checkpoints_of(&target, &cp_topic, &group);
                if cps.iter().any(|c| c.upstream_offset == 50) {
                    return cps;
                }
                assert!(Instant::now() < deadline, "no checkpoint of 50: {cps:?}");
                std::thread::sleep(Duration::from_millis(200));
            }
        })
        .await
    };
    shutdown.cancel();
    leader1.await.unwrap().unwrap();
    leader2.await.unwrap().unwrap();
    for f in [BEFORE_COMMIT, STARTED, ROUND_END] {
        fail::remove(f);
    }
    scenario.teardown();
    let downstream: Vec<i64> = seen.iter().map(|c| c.downstream_offset).collect();
    assert!(
        downstream.windows(2).all(|w| w[0] <= w[1]),
        "the checkpoints of {group} went backwards: {downstream:?}"
    );
}
