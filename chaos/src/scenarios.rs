//! The faults, one scenario each. A scenario injects its faults while the
//! traffic runs, ends them, and says what it did and when the last fault
//! ended; the runner does the measuring and the checking.

use rand::Rng as _;
use std::time::Duration;

use crate::fleet::Fleet;
use crate::proxy::{Fault, Proxy};
use crate::traffic::{Healed, Traffic};

/// What a scenario did.
pub struct Injected {
    pub faults: String,
    pub healed: Healed,
}

type Inject = fn(&mut Fleet, &mut Rng, &Traffic) -> anyhow::Result<Injected>;

pub struct Scenario {
    pub name: &'static str,
    pub inject: Inject,
    /// Application groups committing on the source (each is checkpointed).
    pub groups: usize,
}

/// Every scenario, in the order the CI profile runs them.
pub const ALL: &[Scenario] = &[
    Scenario {
        name: "rolling-upgrade",
        inject: rolling_upgrade,
        groups: 1,
    },
    Scenario {
        name: "worker-kills",
        inject: worker_kills,
        groups: 1,
    },
    Scenario {
        name: "worker-paused-past-lease",
        inject: worker_paused_past_lease,
        groups: 1,
    },
    Scenario {
        name: "leader-killed",
        inject: leader_killed,
        groups: 1,
    },
    Scenario {
        name: "leader-paused-past-lease",
        inject: leader_paused_past_lease,
        groups: 1,
    },
    Scenario {
        name: "leader-paused-mid-checkpoint-round",
        inject: leader_paused_mid_checkpoint_round,
        groups: 24,
    },
    Scenario {
        name: "etcd-unreachable-20s",
        inject: etcd_unreachable,
        groups: 1,
    },
    Scenario {
        name: "target-unreachable-30s",
        inject: target_unreachable,
        groups: 1,
    },
    Scenario {
        name: "source-slow",
        inject: source_slow,
        groups: 1,
    },
    Scenario {
        name: "connection-resets",
        inject: connection_resets,
        groups: 1,
    },
];

/// The scenarios' random choices: seeded per run and printed, so a run's
/// choices can be replayed with `--seed` (on the same build).
pub type Rng = rand::rngs::StdRng;

fn name(f: &Fleet, i: usize) -> String {
    f.workers[i]
        .log
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// A worker owning units of the traffic's topic (any worker if none does).
fn busy_worker(f: &mut Fleet, rng: &mut Rng, t: &Traffic) -> usize {
    let owners = f.owners_of(&t.topic);
    let candidates: Vec<usize> = (0..f.workers.len())
        .filter(|&i| owners.contains(&name(f, i)))
        .collect();
    if candidates.is_empty() {
        rng.random_range(0..f.workers.len())
    } else {
        candidates[rng.random_range(0..candidates.len())]
    }
}

/// SIGKILL a random busy worker three times; each comes back after its
/// units moved.
fn worker_kills(f: &mut Fleet, rng: &mut Rng, t: &Traffic) -> anyhow::Result<Injected> {
    let mut killed = Vec::new();
    let mut healed = t.healed();
    for _ in 0..3 {
        let i = busy_worker(f, rng, t);
        f.sample_invariants();
        f.workers[i].stop_with("KILL", Duration::from_secs(5));
        healed = t.healed();
        killed.push(name(f, i));
        f.idle(f.ttl + Duration::from_secs(2));
        f.workers[i].restart();
        f.idle(Duration::from_secs(3));
    }
    Ok(Injected {
        faults: format!("SIGKILL x3 ({})", killed.join(", ")),
        healed,
    })
}

/// SIGSTOP a busy worker past its lease, then SIGCONT: its units move while
/// it is stopped, and when it runs again it must find itself fenced.
fn worker_paused_past_lease(f: &mut Fleet, rng: &mut Rng, t: &Traffic) -> anyhow::Result<Injected> {
    let i = busy_worker(f, rng, t);
    f.workers[i].signal("STOP");
    let pause = f.ttl + Duration::from_secs(4);
    f.idle(pause);
    f.workers[i].signal("CONT");
    let healed = t.healed();
    f.idle(Duration::from_secs(3));
    Ok(Injected {
        faults: format!("SIGSTOP {} for {}s, SIGCONT", name(f, i), pause.as_secs()),
        healed,
    })
}

/// SIGKILL the leading controller; the other takes over; the killed one
/// comes back as a follower.
fn leader_killed(f: &mut Fleet, _: &mut Rng, t: &Traffic) -> anyhow::Result<Injected> {
    let Some(i) = f.leader() else {
        anyhow::bail!("no leader to kill");
    };
    f.sample_invariants();
    f.controllers[i].stop_with("KILL", Duration::from_secs(5));
    let healed = t.healed();
    let took = f.wait(
        "another controller leads",
        f.ttl + Duration::from_secs(20),
        |f| f.leader().is_some(),
    )?;
    f.controllers[i].restart();
    Ok(Injected {
        faults: format!(
            "SIGKILL leader c{} (new leader after {:.1}s)",
            i + 1,
            took.as_secs_f64()
        ),
        healed,
    })
}

/// SIGSTOP the leading controller past its lease, then SIGCONT: another
/// leads meanwhile, and the old one, running again, must not act on what it
/// knew before the pause (plans, checkpoints).
fn leader_paused_past_lease(f: &mut Fleet, _: &mut Rng, t: &Traffic) -> anyhow::Result<Injected> {
    let Some(i) = f.leader() else {
        anyhow::bail!("no leader to pause");
    };
    f.controllers[i].signal("STOP");
    let pause = f.ttl + Duration::from_secs(4);
    f.idle(pause);
    f.controllers[i].signal("CONT");
    let healed = t.healed();
    f.idle(Duration::from_secs(5));
    Ok(Injected {
        faults: format!(
            "SIGSTOP leader c{} for {}s, SIGCONT",
            i + 1,
            pause.as_secs()
        ),
        healed,
    })
}

/// As leader-paused-past-lease, three times, with 24 application groups:
/// a checkpoint round then takes long enough that a pause lands inside one.
/// The round resumes after SIGCONT with positions and syncs read before the
/// pause; unfenced, it wrote checkpoints below the new leader's.
fn leader_paused_mid_checkpoint_round(
    f: &mut Fleet,
    rng: &mut Rng,
    t: &Traffic,
) -> anyhow::Result<Injected> {
    let mut paused = Vec::new();
    let mut healed = t.healed();
    for _ in 0..3 {
        let Some(i) = f.leader() else {
            anyhow::bail!("no leader to pause");
        };
        // Somewhere inside a round (rounds start every second).
        f.idle(Duration::from_millis(rng.random_range(0..1000) as u64));
        f.controllers[i].signal("STOP");
        f.idle(f.ttl + Duration::from_secs(4));
        f.controllers[i].signal("CONT");
        healed = t.healed();
        paused.push(format!("c{}", i + 1));
        f.idle(Duration::from_secs(4));
    }
    Ok(Injected {
        faults: format!(
            "SIGSTOP leader past its lease x3 ({}), 24 groups checkpointed",
            paused.join(", ")
        ),
        healed,
    })
}

fn unreachable(
    f: &mut Fleet,
    t: &Traffic,
    which: &str,
    proxy: fn(&Fleet) -> &Proxy,
    secs: u64,
) -> anyhow::Result<Injected> {
    proxy(f).set(Fault::Blackhole);
    f.idle(Duration::from_secs(secs));
    proxy(f).heal();
    Ok(Injected {
        faults: format!("{which} blackholed {secs}s"),
        healed: t.healed(),
    })
}

fn etcd_unreachable(f: &mut Fleet, _: &mut Rng, t: &Traffic) -> anyhow::Result<Injected> {
    unreachable(f, t, "etcd", |f| &f.etcd.proxy, 20)
}

fn target_unreachable(f: &mut Fleet, _: &mut Rng, t: &Traffic) -> anyhow::Result<Injected> {
    unreachable(f, t, "target", |f| &f.target.proxy, 30)
}

/// 200 ms each way between everyone and the source, for 20 s.
fn source_slow(f: &mut Fleet, _: &mut Rng, t: &Traffic) -> anyhow::Result<Injected> {
    f.source
        .proxy
        .set(Fault::Latency(Duration::from_millis(200)));
    f.idle(Duration::from_secs(20));
    f.source.proxy.heal();
    Ok(Injected {
        faults: "source +200ms each way for 20s".into(),
        healed: t.healed(),
    })
}

/// Resets on the target, closed connections to the source and etcd.
fn connection_resets(f: &mut Fleet, _: &mut Rng, t: &Traffic) -> anyhow::Result<Injected> {
    for _ in 0..4 {
        f.target.proxy.set(Fault::Reset);
        f.idle(Duration::from_secs(1));
        f.target.proxy.heal();
        f.idle(Duration::from_secs(2));
        f.source.proxy.drop_connections();
        f.etcd.proxy.drop_connections();
        f.idle(Duration::from_secs(2));
    }
    Ok(Injected {
        faults: "target reset x4 (1s each), source and etcd connections dropped x4".into(),
        healed: t.healed(),
    })
}

/// The documented upgrade: SIGTERM one worker at a time (it drains: its
/// units restart elsewhere at once), start it again on the new binary, wait
/// until every unit runs; then the controllers. With an old binary given,
/// old and new run side by side until the last process is replaced.
fn rolling_upgrade(f: &mut Fleet, _: &mut Rng, t: &Traffic) -> anyhow::Result<Injected> {
    let new = f.new_bin.clone();
    let mut mixed = false;
    for i in 0..f.workers.len() {
        f.sample_invariants();
        f.workers[i].stop_with("TERM", Duration::from_secs(30));
        mixed |= f.workers[i].binary() != new;
        f.workers[i].restart_as(&new);
        let (topic, parts) = (t.topic.clone(), t.partitions);
        f.wait("every unit running again", Duration::from_secs(60), |f| {
            f.topic_running(&topic, parts)
        })?;
    }
    for i in 0..f.controllers.len() {
        f.sample_invariants();
        f.controllers[i].stop_with("TERM", Duration::from_secs(30));
        mixed |= f.controllers[i].binary() != new;
        f.controllers[i].restart_as(&new);
        f.wait("a leader", f.ttl + Duration::from_secs(20), |f| {
            f.leader().is_some()
        })?;
    }
    let n = f.workers.len() + f.controllers.len();
    Ok(Injected {
        faults: if mixed {
            format!("SIGTERM + restart x{n}, old -> new binary")
        } else {
            format!("SIGTERM + restart x{n}, same binary")
        },
        healed: t.healed(),
    })
}
