//! A tiny Kafka client for the demo (scripts/demo.sh):
//!
//!   demo_client produce <bootstrap> <topic> <partitions> <count>
//!       creates the topic if needed and writes <count> records with keys,
//!       headers and timestamps
//!   demo_client tail <bootstrap> <topic> <partitions> <count> [seconds]
//!       reads the topic from the start until <count> records arrived and
//!       prints a few of them

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use strait_testkit::{consume_with_offsets, create_topic, produce, Rec};

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
        "produce" => {
            create_topic(bootstrap, topic, partitions);
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64;
            let records: Vec<Rec> = (0..count)
                .map(|i| Rec {
                    partition: (i % partitions as usize) as i32,
                    key: Some(format!("customer-{}", i % 17).into_bytes()),
                    value: Some(
                        format!("{{\"order\":{i},\"amount\":{}}}", (i * 37) % 1000).into_bytes(),
                    ),
                    headers: vec![("source".into(), Some(b"demo".to_vec()))],
                    timestamp: Some(now),
                })
                .collect();
            produce(bootstrap, topic, &records);
            println!("produced {count} records to {topic} on {bootstrap}");
        }
        "tail" => {
            let secs = args.get(6).map_or(60, |s| s.parse().expect("seconds"));
            let got = consume_with_offsets(
                bootstrap,
                topic,
                partitions,
                count,
                Duration::from_secs(secs),
            );
            let text = |b: &Option<Vec<u8>>| {
                String::from_utf8_lossy(b.as_deref().unwrap_or_default()).into_owned()
            };
            for (i, (offset, r)) in got.iter().enumerate() {
                if i < 5 || i + 1 == got.len() {
                    let header = r
                        .headers
                        .first()
                        .map(|(k, v)| format!("{k}={}", text(v)))
                        .unwrap_or_default();
                    println!(
                        "  {topic}[{}]@{offset}  key={}  value={}  headers: {header}  timestamp={:?}",
                        r.partition,
                        text(&r.key),
                        text(&r.value),
                        r.timestamp
                    );
                } else if i == 5 {
                    println!("  ...");
                }
            }
            println!(
                "{} of {count} records read from {topic} on {bootstrap}",
                got.len()
            );
            if got.len() < count {
                std::process::exit(1);
            }
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
