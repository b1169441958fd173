//! What a session's producer still queues when the session must stop
//! writing (docs/failure-model.md). librdkafka retries a queued record for
//! as long as the producer lives (`message.timeout.ms = 0`); once the unit
//! may have a new owner, which starts from the committed position and
//! writes those records itself, none of them may reach the target.
//!
//! - A release that runs out of time with records unacknowledged ends the
//!   session, and its producer's queue is purged.
//! - A session blocked when its fence closes (a synchronous commit, a full
//!   queue, a flush) has its producers purged by a watcher at once, not
//!   when it next looks at its fence.
//!
//! - A releasing unit whose queued records the target then refuses for
//!   good is still let go (with what was acknowledged committed): the next
//!   owner starts at the refused record and stops there, visibly.
//!
//! All run against librdkafka's mock cluster, whose broker is taken down
//! to keep records queued, then brought back.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use tokio_util::sync::CancellationToken;

use strait_common::config::Config;
use strait_common::coord::lease::Fence;
use strait_common::model::Unit;
use strait_testkit::config::ConfigBuilder;
use strait_testkit::{self as testkit, Rec};

use super::test_support::*;
use super::RELEASE_WAIT;
use crate::{run_flow, Assignment, FlowSpec, StatusBoard, UnitLink};

/// One unit of `orders` replicated from a mock source to a mock target:
/// 200 records replicated, then the target taken down and 100 more read
/// and queued.
struct Queued {
    source: Mock,
    target: Mock,
    unit: Unit,
    fence: Fence,
    units: tokio::sync::watch::Sender<Assignment>,
    held: tokio::sync::watch::Receiver<crate::Held>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Queued {
    async fn start(deployment: &str) -> Queued {
        let (source, target) = mock_pair();
        let (src, dst) = (source.bootstrap_servers(), target.bootstrap_servers());
        {
            let src = src.clone();
            blocking(move || testkit::produce(&src, "orders", &Rec::seqs(1, 0..200))).await;
        }
        let text = ConfigBuilder::new(deployment, &src, &dst)
            .no_metrics_endpoint()
            .worker("commit_interval", "200ms")
            .worker("offset_sync_interval", "100ms")
            .build();
        let config = Config::parse(&text).unwrap();
        let flow = config.flows[0].clone();
        let unit = unit_of(&flow.name, "orders");
        let fence = Fence::closed();
        fence.open_until(Instant::now() + Duration::from_secs(3600));
        let (link, units, held) = UnitLink::new(fence.clone());
        units.send_replace(Assignment {
            generation: 1,
            units: BTreeSet::from([unit.clone()]),
        });
        let status = StatusBoard::default();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run_flow(
            FlowSpec::new(&config, flow).with_topic_ids(Default::default()),
            link,
            status.clone(),
            shutdown.clone(),
        ));
        let got = {
            let dst = dst.clone();
            blocking(move || testkit::consume(&dst, "src.orders", 1, 200, Duration::from_secs(30)))
                .await
        };
        assert_eq!(got.len(), 200, "replicated before the target goes away");
        // The target goes away; 100 more records are read and queued.
        target.broker_down(1).unwrap();
        blocking(move || testkit::produce(&src, "orders", &Rec::seqs(1, 200..300))).await;
        wait("100 records in flight", Duration::from_secs(30), || {
            status
                .snapshot()
                .get(&unit)
                .is_some_and(|s| s.in_flight >= 100)
        })
        .await;
        Queued {
            source,
            target,
            unit,
            fence,
            units,
            held,
            shutdown,
            task,
        }
    }

    /// Brings the target back and returns what it holds and the source
    /// commit once its queue had time to land.
    async fn target_back(&self, group: &str) -> (Vec<Rec>, Vec<Option<i64>>) {
        self.target.broker_up(1).unwrap();
        let (dst, src, group) = (
            self.target.bootstrap_servers(),
            self.source.bootstrap_servers(),
            group.to_owned(),
        );
        blocking(move || {
            // A negative check needs time to pass: librdkafka reconnects
            // and sends its queue within a second or two of the broker's
            // return.
            std::thread::sleep(Duration::from_secs(4));
            (
                testkit::consume(&dst, "src.orders", 1, 300, Duration::from_secs(5)),
                testkit::committed(&src, &group, "orders", 1),
            )
        })
        .await
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_times_out_sends_nothing_after_the_unit_is_let_go() {
    // Alone: other tests of this binary hold sessions at failpoints.
    let scenario = fail::FailScenario::setup();
    let q = Queued::start("release").await;
    // The unit is taken away; its release waits for acknowledgements that
    // cannot come, then gives up.
    let asked = Instant::now();
    q.units.send_replace(Assignment {
        generation: 2,
        units: BTreeSet::new(),
    });
    wait("the unit let go", RELEASE_WAIT * 3, || {
        q.held.borrow().units.is_empty()
    })
    .await;
    assert!(asked.elapsed() >= RELEASE_WAIT - Duration::from_secs(1));
    // Its next owner would start now, from the committed position. The
    // target comes back: what the old session queued must not land.
    let (got, committed) = q.target_back("strait.release.src-dst").await;
    q.stop().await;
    scenario.teardown();
    assert_eq!(
        committed,
        vec![Some(200)],
        "the acknowledged position is committed"
    );
    assert_eq!(
        got.len(),
        200,
        "records of the released unit reached the target after it was let go"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_blocked_when_its_fence_closes_sends_nothing_it_queued() {
    const HOLD: &str = "session::after_fence_check";
    const PURGED: &str = "session::fenced_purged";
    let scenario = fail::FailScenario::setup();
    let q = Queued::start("blocked").await;
    // The session blocks (held just after a look at its fence)...
    let (hit, go) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let (h, g) = (hit.clone(), go.clone());
    fail::cfg_callback(HOLD, move || {
        h.store(true, Ordering::SeqCst);
        while !g.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
    })
    .unwrap();
    // A failing wait lets the session go and ends it, or the test's
    // runtime waits for it for ever.
    let _go = Go(go.clone());
    let _ends = q.shutdown.clone().drop_guard();
    wait("the session held", Duration::from_secs(10), || {
        hit.load(Ordering::SeqCst)
    })
    .await;
    // ...and its lease lapses meanwhile; the unit may move. The target
    // comes back while the session is still blocked: it never looks at its
    // fence again before then, so only the watcher can keep its queue off
    // the target. The watcher looks every 50 ms; a request librdkafka has
    // already sent when it looks may land (docs/failure-model.md), so the
    // target comes back once the watcher has purged (on a loaded machine,
    // bringing it back at once let librdkafka reconnect and send first).
    let purged = Arc::new(AtomicBool::new(false));
    let p = purged.clone();
    fail::cfg_callback(PURGED, move || p.store(true, Ordering::SeqCst)).unwrap();
    q.fence.close();
    q.units.send_replace(Assignment {
        generation: 2,
        units: BTreeSet::new(),
    });
    wait(
        "the fenced session's queue purged",
        Duration::from_secs(10),
        || purged.load(Ordering::SeqCst),
    )
    .await;
    let (got, _) = q.target_back("strait.blocked.src-dst").await;
    go.store(true, Ordering::SeqCst);
    fail::remove(HOLD);
    fail::remove(PURGED);
    let unit = q.unit.clone();
    q.stop().await;
    scenario.teardown();
    assert_eq!(
        got.len(),
        200,
        "records of {unit:?} queued before its fence closed reached the target"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_releasing_unit_whose_queued_records_are_refused_is_still_let_go() {
    let scenario = fail::FailScenario::setup();
    let q = Queued::start("refused").await;
    // A failing wait must end the session, or the test's runtime waits for
    // it for ever.
    let _ends = q.shutdown.clone().drop_guard();
    // The target will refuse, for good, what the session queued...
    q.target.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE; 20],
    );
    // ...once the unit is being released: it stops at the refused record
    // (on_refused = "stop") in the middle of its release.
    q.units.send_replace(Assignment {
        generation: 2,
        units: BTreeSet::new(),
    });
    q.target.broker_up(1).unwrap();
    // No further assignment comes: the release alone must let it go, or
    // its next owner waits for it for ever.
    wait("the unit let go", RELEASE_WAIT * 3, || {
        q.held.borrow().units.is_empty()
    })
    .await;
    let src = q.source.bootstrap_servers();
    let committed =
        blocking(move || testkit::committed(&src, "strait.refused.src-dst", "orders", 1)).await;
    q.stop().await;
    scenario.teardown();
    assert_eq!(
        committed,
        vec![Some(200)],
        "what the target acknowledged is committed, and nothing past the refused record"
    );
}

/// Sets its flag when dropped (also while a failing test unwinds).
struct Go(Arc<AtomicBool>);

impl Drop for Go {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}
