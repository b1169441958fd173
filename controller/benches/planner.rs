//! Planning time and moves for 10,000 units over 100 workers, then after one
//! worker leaves, then after one joins. Prints figures; asserts nothing
//! about speed.
//!
//!   cargo bench -p strait-controller --bench planner

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use strait_common::model::{TopicPartition, Unit};
use strait_controller::planner::{plan, Input, Plan, PlannerConfig, Worker};

const UNITS: usize = 10_000;
const WORKERS: usize = 100;
const RUNS: usize = 11;

fn moves(a: &Plan, b: &Plan) -> usize {
    let (oa, ob) = (a.owners(), b.owners());
    ob.iter()
        .filter(|(u, w)| oa.get(*u).is_some_and(|p| p != *w))
        .count()
}

fn spread(p: &Plan) -> (usize, usize) {
    let counts = p.assignments.values().map(BTreeSet::len);
    (counts.clone().min().unwrap_or(0), counts.max().unwrap_or(0))
}

/// Median time of planning `RUNS` times; returns it and the plan.
fn timed(prev: &Plan, workers: &[Worker], units: &BTreeSet<Unit>) -> (Duration, Plan) {
    let (paused, loads) = (BTreeSet::new(), BTreeMap::new());
    let mut times = Vec::new();
    let mut out = None;
    for _ in 0..RUNS {
        let start = Instant::now();
        let p = plan(
            Input {
                previous: prev,
                workers,
                units,
                paused: &paused,
                loads: &loads,
            },
            PlannerConfig::default(),
        );
        times.push(start.elapsed());
        out = Some(p);
    }
    times.sort();
    (times[RUNS / 2], out.unwrap())
}

fn main() {
    let units: BTreeSet<Unit> = (0..UNITS)
        .map(|i| Unit {
            flow: "us-dr".into(),
            source: TopicPartition {
                topic: format!("topic-{:04}", i / 16),
                partition: (i % 16) as i32,
            },
            remote_topic: format!("us.topic-{:04}", i / 16),
        })
        .collect();
    let workers: Vec<Worker> = (0..WORKERS)
        .map(|i| Worker {
            id: format!("worker-{i:03}"),
            draining: false,
        })
        .collect();
    println!(
        "{UNITS} units over {WORKERS} workers, balance ratio {}, median of {RUNS} runs",
        PlannerConfig::default().balance_ratio
    );
    println!(
        "{:<28} {:>10} {:>8} {:>14}",
        "change", "time", "moves", "units/worker"
    );

    let (t, p0) = timed(&Plan::default(), &workers, &units);
    let (lo, hi) = spread(&p0);
    println!(
        "{:<28} {:>10.2?} {:>8} {:>9}..{}",
        "initial plan",
        t,
        moves(&Plan::default(), &p0),
        lo,
        hi
    );

    let (t, same) = timed(&p0, &workers, &units);
    println!(
        "{:<28} {:>10.2?} {:>8} {:>9}..{}",
        "nothing changed",
        t,
        moves(&p0, &same),
        spread(&same).0,
        spread(&same).1
    );

    let fewer: Vec<Worker> = workers
        .iter()
        .filter(|w| w.id != "worker-042")
        .cloned()
        .collect();
    let orphans = p0.assignments["worker-042"].len();
    let (t, p1) = timed(&p0, &fewer, &units);
    let (lo, hi) = spread(&p1);
    println!(
        "{:<28} {:>10.2?} {:>8} {:>9}..{}   ({orphans} were on it)",
        "one worker leaves",
        t,
        moves(&p0, &p1),
        lo,
        hi
    );

    let mut more = fewer.clone();
    more.push(Worker {
        id: "worker-new".into(),
        draining: false,
    });
    let (t, p2) = timed(&p1, &more, &units);
    let (lo, hi) = spread(&p2);
    println!(
        "{:<28} {:>10.2?} {:>8} {:>9}..{}   (new worker got {})",
        "one worker joins",
        t,
        moves(&p1, &p2),
        lo,
        hi,
        p2.assignments["worker-new"].len()
    );
}
