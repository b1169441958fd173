//! strait-chaos: runs strait as a fleet of processes against real brokers
//! and etcd, injects faults, and checks that nothing was lost.
//!
//! `strait-chaos` runs the CI profile (every scenario once, a few minutes);
//! `strait-chaos --profile soak --minutes 20` repeats scenarios in a random
//! order until the time is up. Every run prints a table and exits non-zero
//! if any scenario lost a record, reordered one, broke an invariant or
//! could not finish.

mod fleet;
mod proxy;
mod report;
mod scenarios;
mod traffic;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, ValueEnum};

use fleet::{Broker, Fleet, FleetSpec, Tools};
use rand::{Rng as _, SeedableRng as _};
use report::Row;
use scenarios::{Rng, Scenario, ALL};
use traffic::Traffic;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Profile {
    /// Every scenario once.
    Ci,
    /// Scenarios in a random order, again and again, for `--minutes`.
    Soak,
}

#[derive(Parser, Debug)]
#[command(about = "strait's chaos suite: faults against a fleet of processes, and a checker")]
struct Args {
    #[arg(long, value_enum, default_value = "ci")]
    profile: Profile,
    /// How long the soak profile runs.
    #[arg(long, default_value_t = 20)]
    minutes: u64,
    /// The strait binary (default: next to this one).
    #[arg(long)]
    strait: Option<PathBuf>,
    /// An older strait binary: the fleet starts on it and the
    /// rolling-upgrade scenario moves every process to `--strait`.
    #[arg(long)]
    old_strait: Option<PathBuf>,
    /// Run only these scenarios (comma-separated names).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Seed of the random choices (printed by every run).
    #[arg(long)]
    seed: Option<u64>,
    /// Records per second written to each scenario's topic.
    #[arg(long, default_value_t = 400, value_parser = clap::value_parser!(u32).range(1..))]
    rate: u32,
    /// Partitions of each scenario's topic.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(i32).range(1..=1000))]
    partitions: i32,
    /// Lease TTL of the fleet, in seconds.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u64).range(2..))]
    lease_ttl: u64,
    /// Where processes write their logs and configs.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
    /// Run the fleet's flow exactly-once (`exactly_once = true`). The
    /// checker then reads committed records only, and a duplicate fails the
    /// scenario like a missing record. On Kafka it is a librdkafka consumer
    /// with `isolation.level=read_committed`: Kafka's own judgement. On
    /// tansu, which hands such readers the records of aborted transactions,
    /// the checker reads the remote topic's log itself and applies
    /// read_committed from its transaction markers.
    #[arg(long)]
    exactly_once: bool,
    /// The brokers of the fleet's two clusters.
    #[arg(long, value_enum, env = "STRAIT_BROKER", default_value = "kafka")]
    broker: Broker,
}

fn main() {
    match run(Args::parse()) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("strait-chaos: {e:#}");
            std::process::exit(2);
        }
    }
}

fn run(args: Args) -> anyhow::Result<bool> {
    if args.list {
        for s in ALL {
            println!("{}", s.name);
        }
        return Ok(true);
    }
    let chosen: Vec<&Scenario> = if args.only.is_empty() {
        ALL.iter().collect()
    } else {
        args.only
            .iter()
            .map(|n| {
                ALL.iter()
                    .find(|s| s.name == n)
                    .with_context(|| format!("no scenario {n:?} (see --list)"))
            })
            .collect::<anyhow::Result<_>>()?
    };
    let new_bin = match args.strait {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("no directory")?
            .join("strait"),
    };
    anyhow::ensure!(
        new_bin.is_file(),
        "no strait binary at {} (build it with `cargo build`, or pass --strait)",
        new_bin.display()
    );
    if let Some(old) = &args.old_strait {
        anyhow::ensure!(old.is_file(), "no old strait binary at {}", old.display());
        anyhow::ensure!(
            !args.exactly_once,
            "--exactly-once cannot start the fleet on --old-strait: an older build may not know the setting"
        );
    }
    let seed = args.seed.unwrap_or_else(rand::random);
    let mut rng = Rng::seed_from_u64(seed);
    let dir = args.dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("strait-chaos-{}", std::process::id()))
    });
    let tools = Tools::find(args.broker)?;
    println!(
        "strait-chaos: profile {:?} on {:?}{}, seed {seed}, logs in {}",
        args.profile,
        args.broker,
        if args.exactly_once {
            ", exactly-once"
        } else {
            ""
        },
        dir.display()
    );
    let started = Instant::now();
    let mut fleet = Fleet::start(FleetSpec {
        dir: &dir,
        tools: &tools,
        start_bin: args.old_strait.as_deref().unwrap_or(&new_bin),
        new_bin: &new_bin,
        controllers: 2,
        workers: 3,
        ttl: Duration::from_secs(args.lease_ttl),
        exactly_once: args.exactly_once,
    })?;
    fleet.wait("a leader", Duration::from_secs(60), |f| {
        f.leader().is_some()
    })?;

    let end = started + Duration::from_secs(args.minutes * 60);
    let load = Load {
        partitions: args.partitions,
        rate: args.rate,
        exactly_once: args.exactly_once,
        log_reader: args.exactly_once && args.broker == Broker::Tansu,
    };
    let mut rows = Vec::new();
    for n in 0.. {
        let scenario = match args.profile {
            Profile::Ci => match chosen.get(n) {
                Some(s) => *s,
                None => break,
            },
            Profile::Soak if n > 0 && Instant::now() >= end => break,
            Profile::Soak => chosen[rng.random_range(0..chosen.len())],
        };
        println!("strait-chaos: [{}] {} ...", n + 1, scenario.name);
        // A helper that panics (a process that would not stop, say) fails
        // the scenario, not the run: the table is still printed.
        let row = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_scenario(&mut fleet, &mut rng, scenario, n, &load)
        }))
        .unwrap_or_else(|panic| {
            let mut row = Row::new(scenario.name, load.exactly_once);
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            row.error = Some(format!("harness panicked: {why}"));
            row
        });
        println!("strait-chaos: {}", row.summary());
        rows.push(row);
    }
    println!();
    println!("{}", report::table(&rows));
    let ok = rows.iter().all(Row::passed);
    println!(
        "strait-chaos: {} scenarios in {:.0}s, {}",
        rows.len(),
        started.elapsed().as_secs_f64(),
        if ok { "all passed" } else { "FAILED" }
    );
    Ok(ok)
}

/// The traffic of every scenario.
struct Load {
    partitions: i32,
    rate: u32,
    /// The flow is exactly-once: read committed records, judge duplicates.
    exactly_once: bool,
    /// Read committed records with testkit's log reader (tansu) instead of
    /// a read_committed consumer (Kafka).
    log_reader: bool,
}

fn run_scenario(fleet: &mut Fleet, rng: &mut Rng, s: &Scenario, n: usize, load: &Load) -> Row {
    let mut row = Row::new(s.name, load.exactly_once);
    let topic = format!("chaos-{}-{n}-{}", s.name, std::process::id());
    let remote = format!("src.{topic}");
    let result = (|| -> anyhow::Result<()> {
        strait_testkit::create_topic(&fleet.source.addr(), &topic, load.partitions);
        let traffic = Traffic::start(
            &fleet.source.addr(),
            &fleet.target.addr(),
            &topic,
            &remote,
            load.partitions,
            load.rate,
            s.groups,
            load.exactly_once,
            load.log_reader,
        )?;
        let mut healed = traffic.healed();
        let body = (|| -> anyhow::Result<()> {
            fleet.wait("the topic's units running", Duration::from_secs(90), |f| {
                f.topic_running(&topic, load.partitions)
            })?;
            fleet.wait("records on the target", Duration::from_secs(60), |_| {
                traffic.flowing()
            })?;
            traffic.measure_stalls_from_now();
            fleet.idle(Duration::from_secs(3));
            let before = fleet.invariant_totals();
            let moves_before = fleet.unit_moves();
            let injected = (s.inject)(fleet, rng, &traffic)?;
            row.faults = injected.faults;
            healed = injected.healed;
            let mark = traffic.mark();
            fleet.wait("the target to catch up", Duration::from_secs(180), |_| {
                traffic.caught_up(&mark)
            })?;
            fleet.idle(Duration::from_secs(2));
            fleet.sample_invariants();
            row.moves = Some(fleet.unit_moves() - moves_before);
            for (inv, n) in fleet.invariant_totals() {
                let was = before.get(inv).copied().unwrap_or(0);
                if n > was {
                    row.breaches.push(format!("{inv}: {}", n - was));
                }
            }
            Ok(())
        })();
        // Whatever happened, stop writing and count what arrived.
        let mut traffic = traffic;
        traffic.stop_producing();
        let mark = traffic.mark();
        let _ = fleet.wait("the last records", Duration::from_secs(60), |_| {
            traffic.caught_up(&mark)
        });
        fleet.idle(Duration::from_secs(1)); // late duplicates
        row.outcome = Some(traffic.finish(&healed));
        match read_checkpoints(fleet, &topic) {
            Ok((cps, backwards)) => {
                row.checkpoints = cps;
                if backwards > 0 {
                    row.breaches
                        .push(format!("checkpoints backwards on the topic: {backwards}"));
                }
            }
            Err(e) => row.error = Some(format!("reading checkpoints: {e:#}")),
        }
        body
    })();
    if let Err(e) = result {
        row.error = Some(format!("{e:#}"));
    }
    row
}

fn read_checkpoints(fleet: &Fleet, topic: &str) -> anyhow::Result<(u64, u64)> {
    traffic::checkpoints(
        &fleet.target.addr(),
        &strait_common::policy::checkpoints_topic("src"),
        &traffic::app_group(topic),
    )
}
