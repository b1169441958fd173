//! How soon a new topic replicates, on a source with many topics, and what
//! discovery's listing costs there. Not a test: it prints figures and
//! asserts nothing about speed.
//!
//!   compose/sandbox.sh up
//!   cargo bench --bench new_topics
//!
//! 1. BENCH_TOPICS (default 10000) idle one-partition topics are created on
//!    the source; the flow does not replicate them, but every listing
//!    carries them.
//! 2. The cost of one listing (a metadata request for every topic, as
//!    discovery makes it): median wall time of 10.
//! 3. `strait run` starts with default settings. After 5 s, BENCH_NEW
//!    (default 20) topics the flow replicates are created at random
//!    moments (0.5 to 3 s apart), each written one record right after its
//!    creation. Measured per topic: creation to that record read on the
//!    target (by a reader per topic that refreshes metadata every 200 ms,
//!    so the figure is an upper bound by about that much).
//! 4. strait's CPU over the whole run, in cores (discovery's listing every
//!    interval included), and its peak RSS.

use std::path::Path;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use strait_testkit::config::ConfigBuilder;
use strait_testkit::process::Strait;
use strait_testkit::{create_topic, produce, sandbox, unique, Rec};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let sb = sandbox();
    let idle: usize = env_or("BENCH_TOPICS", 10_000);
    let new: usize = env_or("BENCH_NEW", 20);
    let run = unique("nt");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &sb.source)
        .create()
        .unwrap();
    let started = Instant::now();
    let names: Vec<String> = (0..idle).map(|i| format!("{run}-idle-{i}")).collect();
    for chunk in names.chunks(500) {
        let topics: Vec<NewTopic> = chunk
            .iter()
            .map(|n| NewTopic::new(n, 1, TopicReplication::Fixed(1)))
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(60)));
        for r in rt.block_on(admin.create_topics(&topics, &opts)).unwrap() {
            r.unwrap();
        }
    }
    println!(
        "setup: {idle} idle topics created on the source in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The listing discovery makes: metadata of every topic.
    let lister: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &sb.source)
        .create()
        .unwrap();
    let mut times = Vec::new();
    let mut count = 0;
    for _ in 0..10 {
        let t = Instant::now();
        let md = lister
            .fetch_metadata(None, Duration::from_secs(30))
            .unwrap();
        times.push(t.elapsed());
        count = md.topics().len();
    }
    times.sort();
    println!(
        "one listing of {count} topics: median {:.1} ms, max {:.1} ms over 10",
        times[5].as_secs_f64() * 1e3,
        times[9].as_secs_f64() * 1e3
    );

    let config = ConfigBuilder::new(&run, &sb.source, &sb.target)
        .flow("topics", [format!("{run}-new-.*").as_str()])
        .build();
    let dir = std::env::temp_dir().join("strait-bench-new-topics");
    let mut strait = Strait::launch(
        Path::new(env!("CARGO_BIN_EXE_strait")),
        &dir,
        &run,
        &config,
        &[],
    );
    let (t0, cpu0) = (
        Instant::now(),
        strait_testkit::process::cpu_seconds(strait.pid()),
    );
    std::thread::sleep(Duration::from_secs(5));

    use rand::Rng as _;
    let mut rng = rand::rng();
    let mut readers = Vec::new();
    for i in 0..new {
        std::thread::sleep(Duration::from_millis(rng.random_range(500..3000)));
        let topic = format!("{run}-new-{i}");
        let created = Instant::now();
        create_topic(&sb.source, &topic, 1);
        produce(&sb.source, &topic, &[Rec::seq(0, 0)]);
        let (target, remote) = (sb.target.clone(), format!("src.{topic}"));
        readers.push(std::thread::spawn(move || {
            let c: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &target)
                .set("group.id", "strait-bench-new-topics")
                .set("enable.auto.commit", "false")
                .set("topic.metadata.refresh.interval.ms", "200")
                .set("fetch.wait.max.ms", "10")
                .create()
                .unwrap();
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&remote, 0, Offset::Beginning)
                .unwrap();
            c.assign(&tpl).unwrap();
            let deadline = created + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Some(Ok(_)) = c.poll(Duration::from_millis(20)) {
                    return Some(created.elapsed());
                }
            }
            None
        }));
    }
    let mut got: Vec<Duration> = Vec::new();
    let mut missing = 0;
    for r in readers {
        match r.join().unwrap() {
            Some(d) => got.push(d),
            None => missing += 1,
        }
    }
    let cpu =
        (strait_testkit::process::cpu_seconds(strait.pid()) - cpu0) / t0.elapsed().as_secs_f64();
    let rss = strait_testkit::process::peak_rss_mb(strait.pid());
    strait.stop_with("TERM", Duration::from_secs(60));
    got.sort();
    let at = |q: f64| got[((got.len() as f64 - 1.0) * q).round() as usize].as_secs_f64();
    println!(
        "new topic created -> its first record on the target, {} topics ({missing} never arrived): p50 {:.2} s, p99 {:.2} s, max {:.2} s",
        got.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
    println!(
        "strait (default settings, {count} topics on the source): {cpu:.3} cores over {:.0} s, peak RSS {rss:.0} MB",
        t0.elapsed().as_secs_f64()
    );
}
