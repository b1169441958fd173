//! A tiny Kafka client for the demo (scripts/demo.sh):
//!
//!   demo_client produce <bootstrap> <topic> <partitions> <count>
//!       creates the topic if needed and writes <count> records with keys,
//!       headers and timestamps
//!   demo_client tail <bootstrap> <topic> <partitions> <count> [seconds]
//!       reads the topic from the start until <count> records arrived and
//!       prints a few of them

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage =
        "usage: demo_client produce|tail <bootstrap> <topic> <partitions> <count> [seconds]";
    if args.len() < 6 {
        eprintln!("{usage}");
        std::process::exit(2);
    }
    let (bootstrap, topic) = (&args[2], &args[3]);
    let partitions: i32 = args[4].parse().expect("partitions");
    let count: usize = args[5].parse().expect("count");
    match args[1].as_str() {
        "produce" => produce(bootstrap, topic, partitions, count),
        "tail" => {
            let secs = args.get(6).map_or(60, |s| s.parse().expect("seconds"));
            if !tail(
                bootstrap,
                topic,
                partitions,
                count,
                Duration::from_secs(secs),
            ) {
                std::process::exit(1);
            }
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}

fn produce(bootstrap: &str, topic: &str, partitions: i32, count: usize) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let t = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let _ = rt.block_on(admin.create_topics([&t], &AdminOptions::new()));
    let p: ThreadedProducer<_> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    for i in 0..count {
        let key = format!("customer-{}", i % 17);
        let value = format!("{{\"order\":{i},\"amount\":{}}}", (i * 37) % 1000);
        let headers = OwnedHeaders::new().insert(Header {
            key: "source",
            value: Some("demo"),
        });
        let mut rec = BaseRecord::to(topic)
            .partition((i % partitions as usize) as i32)
            .key(&key)
            .payload(&value)
            .headers(headers);
        while let Err((_, back)) = p.send(rec) {
            std::thread::sleep(Duration::from_millis(5));
            rec = back;
        }
    }
    p.flush(Duration::from_secs(30)).unwrap();
    println!("produced {count} records to {topic} on {bootstrap}");
}

fn tail(bootstrap: &str, topic: &str, partitions: i32, count: usize, timeout: Duration) -> bool {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "strait-demo-tail")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + timeout;
    let mut n = 0;
    while n < count && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            n += 1;
            if n <= 5 || n == count {
                let header = m
                    .headers()
                    .and_then(|h| {
                        h.iter().next().map(|h| {
                            format!(
                                "{}={}",
                                h.key,
                                String::from_utf8_lossy(h.value.unwrap_or_default())
                            )
                        })
                    })
                    .unwrap_or_default();
                println!(
                    "  {topic}[{}]@{}  key={}  value={}  headers: {header}  timestamp={:?}",
                    m.partition(),
                    m.offset(),
                    String::from_utf8_lossy(m.key().unwrap_or_default()),
                    String::from_utf8_lossy(m.payload().unwrap_or_default()),
                    m.timestamp().to_millis(),
                );
            } else if n == 6 {
                println!("  ...");
            }
        }
    }
    println!("{n} of {count} records read from {topic} on {bootstrap}");
    n >= count
}
