//! Loss on the source side, on tansu: gaps that transaction markers leave
//! are not losses. (Retention overtaking replication, and a position past
//! the log's end as a re-created topic leaves it, are exercised on
//! librdkafka's mock cluster, which enforces a log size:
//! worker/tests/faults.rs. Deleting a topic strait reads crashes librdkafka
//! 2.12.1 on tansu, in its metadata cache: see the README's known issues.)

mod support;

use std::time::Duration;

use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::ClientConfig;
use support::*;

const MINUTE: Duration = Duration::from_secs(60);

fn unit_rows(strait: &Strait, topic: &str) -> Vec<serde_json::Value> {
    let (_, status) = strait.get_json("/v1/status");
    status["units"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|u| u["topic"] == topic)
        .collect()
}

#[test]
fn transaction_markers_leave_gaps_that_are_not_losses() {
    let sb = sandbox();
    let topic = unique("markers");
    let deployment = unique("markers");
    create_topic(&sb.source, &topic, 1);
    // Three committed transactions of 10 records: each commit marker takes
    // an offset, so the source's offsets have holes.
    let p: ThreadedProducer<_> = ClientConfig::new()
        .set("bootstrap.servers", &sb.source)
        .set("transactional.id", unique("markers-txid"))
        .create()
        .unwrap();
    p.init_transactions(MINUTE).unwrap();
    for t in 0..3 {
        p.begin_transaction().unwrap();
        for i in 0..10 {
            let v = format!("p0-{}", t * 10 + i);
            p.send(BaseRecord::<str, str>::to(&topic).partition(0).payload(&v))
                .map_err(|(e, _)| e)
                .unwrap();
        }
        p.commit_transaction(MINUTE).unwrap();
    }
    let on_source = consume_with_offsets(&sb.source, &topic, 1, 30, MINUTE);
    assert!(
        on_source.last().unwrap().0 > 29,
        "the markers take offsets: {:?}",
        on_source.iter().map(|(o, _)| o).collect::<Vec<_>>()
    );
    let strait = Strait::start(&deployment, &config(&sb, &deployment, &topic, "", ""));
    let got = consume(&sb.target, &format!("src.{topic}"), 1, 30, MINUTE);
    let values: Vec<String> = got
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap())
        .collect();
    assert_eq!(
        values,
        (0..30).map(|i| format!("p0-{i}")).collect::<Vec<_>>()
    );
    let rows = unit_rows(&strait, &topic);
    assert_eq!(rows[0]["lost"], 0, "{rows:?}");
    assert!(rows[0]["error"].is_null(), "{rows:?}");
    assert_eq!(
        strait.metric("strait_records_lost_total{flow=\"src-dst\",reason=\"expired\"}"),
        None
    );
}

/// What tells a re-created topic from the one a unit's progress was made
/// in, when it has grown past that progress: tansu names every topic by an
/// id, and a topic deleted and created again under the same name gets
/// another. (The data plane's use of it, commits naming their topic id, is
/// tested on the mock cluster: tansu drops commit metadata.)
#[test]
fn a_recreated_topic_has_another_id() {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;

    let sb = sandbox();
    let topic = unique("topicid");
    let missing = unique("topicid-missing");
    create_topic(&sb.source, &topic, 1);
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &sb.source)
        .create()
        .unwrap();
    let ids =
        || strait_common::native::topic_ids(admin.inner(), &[&topic, &missing], MINUTE).unwrap();
    let first = ids();
    assert_eq!(
        first.len(),
        1,
        "an id for the topic, none for a missing one: {first:?}"
    );
    assert_eq!(ids(), first, "the same topic, the same id");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let deleted = rt
        .block_on(admin.delete_topics(&[&topic], &AdminOptions::new()))
        .unwrap();
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");
    wait_for("the topic gone", MINUTE, || ids().is_empty());
    create_topic(&sb.source, &topic, 1);
    wait_for("the topic back", MINUTE, || !ids().is_empty());
    assert_ne!(
        ids()[&topic],
        first[&topic],
        "a re-created topic has a new id"
    );
}
