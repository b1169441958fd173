//! The fence across leases (docs/coordination.md, "Leases and fencing"): a
//! session that lived through a closed fence never writes again, even when
//! the worker's next lease has opened the fence before the session looked.
//! The unit may have another owner by then.

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
use crate::{run_flow, Assignment, FlowSpec, StatusBoard, UnitLink};

const HOLD: &str = "session::after_fence_check";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_saw_its_fence_close_never_commits_after_a_new_lease_opens_it() {
    let scenario = fail::FailScenario::setup();
    let (source, target) = mock_pair();
    testkit::produce(&source.bootstrap_servers(), "orders", &Rec::seqs(1, 0..200));
    // Progress is committed at release only: the commit interval is long.
    let text = ConfigBuilder::new(
        "fence",
        &source.bootstrap_servers(),
        &target.bootstrap_servers(),
    )
    .no_metrics_endpoint()
    .worker("commit_interval", "1h")
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
        units: BTreeSet::from([unit]),
    });
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run_flow(
        FlowSpec::new(&config, flow).with_topic_ids(Default::default()),
        link,
        StatusBoard::default(),
        shutdown.clone(),
    ));
    let remote = testkit::consume(
        &target.bootstrap_servers(),
        "src.orders",
        1,
        200,
        Duration::from_secs(30),
    );
    assert_eq!(remote.len(), 200, "replicated before the lease is lost");

    // Hold the session just after its next look at the fence.
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
    wait("the session held", Duration::from_secs(10), || {
        hit.load(Ordering::SeqCst)
    })
    .await;
    // The lease is lost: the fence closes and the member assigns nothing.
    // Then its next lease opens the fence again, all while the session is
    // held; another worker may own the unit by now.
    fence.close();
    units.send_replace(Assignment {
        generation: 2,
        units: BTreeSet::new(),
    });
    fence.open_until(Instant::now() + Duration::from_secs(3600));
    go.store(true, Ordering::SeqCst);
    wait("the unit let go", Duration::from_secs(10), || {
        held.borrow().units.is_empty()
    })
    .await;
    // A negative check needs time to pass: a release commits at once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let committed = testkit::committed(
        &source.bootstrap_servers(),
        "strait.fence.src-dst",
        "orders",
        1,
    );
    fail::remove(HOLD);
    shutdown.cancel();
    task.await.unwrap().unwrap();
    scenario.teardown();
    assert_eq!(
        committed,
        vec![None],
        "the session committed after its fence closed"
    );
}
