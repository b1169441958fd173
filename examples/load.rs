//! Writes a backlog for a benchmark or a profile (scripts/profile.sh):
//!
//!   load <bootstrap> <topic> <partitions> <count> <size>
//!
//! creates the topic if needed and writes <count> JSON log lines of about
//! <size> bytes (the values `cargo bench --bench replicate` measures
//! compression on), round robin over the partitions.

use std::time::Instant;

use strait_testkit::create_topic;
use strait_testkit::load::{json_values, produce_values};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!("usage: load <bootstrap> <topic> <partitions> <count> <size>");
        std::process::exit(2);
    }
    let (bootstrap, topic) = (&args[1], &args[2]);
    let number = |i: usize, what: &str| -> usize {
        args[i].parse().unwrap_or_else(|_| {
            eprintln!("load: {what} must be a number, not {:?}", args[i]);
            std::process::exit(2)
        })
    };
    let (partitions, count, size) = (
        number(3, "partitions") as i32,
        number(4, "count"),
        number(5, "size"),
    );
    create_topic(bootstrap, topic, partitions);
    let values = json_values(size);
    let started = Instant::now();
    produce_values(bootstrap, topic, partitions, count, &values);
    let secs = started.elapsed().as_secs_f64();
    let mb = values.iter().map(Vec::len).sum::<usize>() as f64 / values.len() as f64 * count as f64
        / 1e6;
    println!(
        "load: {count} records ({mb:.1} MB) to {topic} in {secs:.1} s ({:.1} MB/s)",
        mb / secs
    );
}
