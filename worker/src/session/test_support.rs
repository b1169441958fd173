//! What the session's own tests share: waiting, blocking test clients off
//! the runtime, and one unit of `orders` between two mock clusters.

use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use strait_common::model::{TopicPartition, Unit};

pub type Mock = MockCluster<'static, DefaultProducerContext>;

/// Waits for `cond` with a deadline; panics naming `what`.
pub async fn wait(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `f`, which blocks (test clients make their own runtimes), off the
/// test's runtime.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// A mock source with `orders` (one partition) and the flow's offset-syncs
/// topic, and a mock target with `src.orders`.
pub fn mock_pair() -> (Mock, Mock) {
    let source: Mock = MockCluster::new(1).unwrap();
    let target: Mock = MockCluster::new(1).unwrap();
    source.create_topic("orders", 1, 1).unwrap();
    source
        .create_topic("mm2-offset-syncs.dst.internal", 1, 1)
        .unwrap();
    target.create_topic("src.orders", 1, 1).unwrap();
    (source, target)
}

/// The unit of `topic` partition 0 in `flow`, replicated to `src.{topic}`.
pub fn unit_of(flow: &str, topic: &str) -> Unit {
    Unit {
        flow: flow.to_owned(),
        source: TopicPartition {
            topic: topic.to_owned(),
            partition: 0,
        },
        remote_topic: format!("src.{topic}"),
    }
}
