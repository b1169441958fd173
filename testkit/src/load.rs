//! Load for benchmarks and profiles: values shaped as applications write
//! them, and a producer that streams a backlog of them.

use std::time::Duration;

use rdkafka::producer::{BaseRecord, Producer as _};

/// JSON log lines of about `size` bytes, as applications write them: the
/// same field names, varying values, a random trace id. What compression
/// is measured on (a value of one repeated byte would flatter it).
pub fn json_values(size: usize) -> Vec<Vec<u8>> {
    use rand::{Rng as _, SeedableRng as _};
    // Seeded: every run replicates the same values.
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x9e37_79b9_7f4a_7c15);
    let mut next = move || rng.random::<u64>();
    let levels = ["INFO", "INFO", "INFO", "WARN", "DEBUG", "ERROR"];
    let msgs = [
        "order placed",
        "payment authorised",
        "cart updated",
        "stock reserved",
        "session refreshed",
    ];
    // Enough distinct values that a batch (about 1 MB per partition) holds
    // no value twice: repeats would flatter codecs with long windows.
    (0..65536)
        .map(|i| {
            let mut v = format!(
                r#"{{"ts":"2026-12-02T00:{:02}:{:02}.{:03}Z","level":"{}","service":"checkout-{}","host":"ip-10-0-{}-{}","user_id":{},"order":"ord-{:08x}","amount":{}.{:02},"currency":"EUR","trace":"{:016x}{:016x}","msg":"{}","items":["#,
                i % 60,
                next() % 60,
                next() % 1000,
                levels[(next() % 6) as usize],
                next() % 8,
                next() % 8,
                next() % 250,
                next() % 100_000,
                next() as u32,
                next() % 500,
                next() % 100,
                next(),
                next(),
                msgs[(next() % 5) as usize],
            );
            while v.len() + 40 < size {
                v.push_str(&format!(r#"{{"sku":"sku-{:05}","qty":{}}},"#, next() % 20_000, 1 + next() % 4));
            }
            v.push_str(r#"{"sku":"sku-00000","qty":1}]}"#);
            v.into_bytes()
        })
        .collect()
}

/// Writes `count` records of `values` (cycled) to `topic`'s `partitions`
/// partitions, round robin, keys `k{i}`, with the tests' idempotent
/// producer ([`crate::producer`]); waits until every one is acknowledged.
pub fn produce_values(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    count: usize,
    values: &[Vec<u8>],
) {
    let p = crate::producer(bootstrap);
    for i in 0..count {
        let key = format!("k{i}");
        let mut record = BaseRecord::to(topic)
            .partition((i % partitions as usize) as i32)
            .key(&key)
            .payload(&values[i % values.len()]);
        loop {
            match p.send(record) {
                Ok(()) => break,
                Err((e, r))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => panic!("producing to {topic}: {e}"),
            }
        }
    }
    p.flush(Duration::from_secs(120))
        .expect("every record acknowledged");
}
