//! The leader's replan policy, pure: when the loads the planner balances by
//! are refreshed, when a plan that still fits is kept, when to plan from
//! scratch, and the epoch. The leader's loop gathers the inputs from the
//! store and writes what this returns.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use strait_common::model::Unit;

use crate::planner::{self, Input, Plan, PlannerConfig, Worker};

/// How often the leader re-plans with the latest load reports when nothing
/// else changed.
pub const LOAD_REBALANCE: Duration = Duration::from_secs(60);

/// What one round sees.
#[derive(Debug, Clone, Copy)]
pub struct Round<'a> {
    /// The plan in force (as stored, or as last written).
    pub previous: &'a Plan,
    pub workers: &'a [Worker],
    pub units: &'a BTreeSet<Unit>,
    pub paused: &'a BTreeSet<Unit>,
    /// An operator asked for a rebalance: plan as if nothing were assigned.
    pub from_scratch: bool,
    pub now: Instant,
}

#[derive(Debug)]
pub struct Replanner {
    config: PlannerConfig,
    every: Duration,
    /// The loads the planner balances by, taken afresh only every `every`
    /// (or on a forced rebalance). A re-plan for any other reason (a worker
    /// joins or leaves, a watch re-lists, a topic appears) sees the same
    /// loads, so units move only for that reason and never chase the noise
    /// of the latest reports.
    balance_loads: BTreeMap<Unit, f64>,
    loads_due: Instant,
}

impl Replanner {
    pub fn new(
        config: PlannerConfig,
        every: Duration,
        loads: BTreeMap<Unit, f64>,
        now: Instant,
    ) -> Self {
        Replanner {
            config,
            every,
            balance_loads: loads,
            loads_due: now + every,
        }
    }

    /// When the next load rebalance is due.
    pub fn due(&self) -> Instant {
        self.loads_due
    }

    /// The next plan. `fresh_loads` is asked for only when a rebalance is
    /// due (or forced). The result's epoch is the previous one exactly when
    /// the assignment did not change.
    pub fn next(
        &mut self,
        r: Round<'_>,
        fresh_loads: impl FnOnce() -> BTreeMap<Unit, f64>,
    ) -> Plan {
        let rebalance = r.from_scratch || r.now >= self.loads_due;
        if rebalance {
            let fresh = fresh_loads();
            // Reports of no traffic at all (the target was away for the
            // last window, say) say nothing about balance: balancing by them
            // would fall back to unit counts and move most units, then move
            // them back once traffic returns.
            if fresh.values().any(|&l| l > 0.0) || self.balance_loads.is_empty() {
                self.balance_loads = fresh;
            }
            self.loads_due = r.now + self.every;
        }
        let empty = Plan {
            epoch: r.previous.epoch,
            assignments: BTreeMap::new(),
        };
        let input = Input {
            previous: if r.from_scratch { &empty } else { r.previous },
            workers: r.workers,
            units: r.units,
            paused: r.paused,
            loads: &self.balance_loads,
        };
        // Between rebalances a plan that still fits is kept as it is:
        // taking over leadership, or a watch re-listing, moves nothing.
        let assignments = if !rebalance && planner::still_fits(input) {
            r.previous.assignments.clone()
        } else {
            planner::assign(input, self.config)
        };
        Plan {
            epoch: planner::epoch_after(r.previous, &assignments),
            assignments,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strait_common::model::TopicPartition;

    fn unit(p: i32) -> Unit {
        Unit {
            flow: "f".into(),
            source: TopicPartition {
                topic: "t".into(),
                partition: p,
            },
            remote_topic: "src.t".into(),
        }
    }

    fn workers(ids: &[&str]) -> Vec<Worker> {
        ids.iter()
            .map(|id| Worker {
                id: (*id).into(),
                draining: false,
            })
            .collect()
    }

    fn plan(epoch: u64, a: &[(&str, &[i32])]) -> Plan {
        Plan {
            epoch,
            assignments: a
                .iter()
                .map(|(w, ps)| (w.to_string(), ps.iter().map(|&p| unit(p)).collect()))
                .collect(),
        }
    }

    fn units(n: i32) -> BTreeSet<Unit> {
        (0..n).map(unit).collect()
    }

    /// Unit 0 carries almost everything: balancing by load puts it alone.
    fn skewed() -> BTreeMap<Unit, f64> {
        (0..4)
            .map(|p| (unit(p), if p == 0 { 1000.0 } else { 1.0 }))
            .collect()
    }

    const NONE: fn() -> BTreeMap<Unit, f64> = BTreeMap::new;

    #[test]
    fn a_plan_that_still_fits_is_kept_between_rebalances() {
        let t0 = Instant::now();
        let mut r = Replanner::new(PlannerConfig::default(), LOAD_REBALANCE, skewed(), t0);
        // Balanced by count, not by the skewed loads: it still fits.
        let previous = plan(7, &[("a", &[0, 1]), ("b", &[2, 3])]);
        let (ws, us, paused) = (workers(&["a", "b"]), units(4), BTreeSet::new());
        let round = Round {
            previous: &previous,
            workers: &ws,
            units: &us,
            paused: &paused,
            from_scratch: false,
            now: t0 + Duration::from_secs(1),
        };
        let next = r.next(round, || {
            panic!("loads are not read before the rebalance is due")
        });
        assert_eq!(next, previous, "nothing moves, the epoch stays");
    }

    #[test]
    fn when_due_the_fresh_loads_rebalance_and_the_epoch_grows_once() {
        let t0 = Instant::now();
        let mut r = Replanner::new(
            PlannerConfig::default(),
            LOAD_REBALANCE,
            BTreeMap::new(),
            t0,
        );
        let previous = plan(7, &[("a", &[0, 1]), ("b", &[2, 3])]);
        let (ws, us, paused) = (workers(&["a", "b"]), units(4), BTreeSet::new());
        let now = t0 + LOAD_REBALANCE;
        let round = Round {
            previous: &previous,
            workers: &ws,
            units: &us,
            paused: &paused,
            from_scratch: false,
            now,
        };
        let next = r.next(round, skewed);
        assert_eq!(next.epoch, 8);
        let heavy_alone = next.assignments.values().any(|u| *u == [unit(0)].into());
        assert!(heavy_alone, "unit 0 gets a worker to itself: {next:?}");
        assert_eq!(r.due(), now + LOAD_REBALANCE);
    }

    #[test]
    fn reports_of_an_idle_fleet_do_not_replace_the_balance_loads() {
        let t0 = Instant::now();
        let mut r = Replanner::new(PlannerConfig::default(), LOAD_REBALANCE, skewed(), t0);
        let previous = plan(3, &[("a", &[0]), ("b", &[1, 2, 3])]);
        let (ws, us, paused) = (workers(&["a", "b"]), units(4), BTreeSet::new());
        let idle = || (0..4).map(|p| (unit(p), 0.0)).collect();
        let round = Round {
            previous: &previous,
            workers: &ws,
            units: &us,
            paused: &paused,
            from_scratch: false,
            now: t0 + LOAD_REBALANCE,
        };
        let next = r.next(round, idle);
        assert_eq!(
            next, previous,
            "balanced by the last real loads: nothing moves"
        );
    }

    #[test]
    fn a_worker_leaving_moves_only_its_units_and_a_forced_rebalance_replans() {
        let t0 = Instant::now();
        let mut r = Replanner::new(
            PlannerConfig::default(),
            LOAD_REBALANCE,
            BTreeMap::new(),
            t0,
        );
        let previous = plan(1, &[("a", &[0, 1]), ("b", &[2, 3])]);
        let (ws, us, paused) = (workers(&["a"]), units(4), BTreeSet::new());
        let round = Round {
            previous: &previous,
            workers: &ws,
            units: &us,
            paused: &paused,
            from_scratch: false,
            now: t0,
        };
        let next = r.next(round, NONE);
        assert_eq!(next, plan(2, &[("a", &[0, 1, 2, 3])]));
        // From scratch with the same outcome: the epoch does not move.
        let round = Round {
            previous: &next,
            from_scratch: true,
            ..round
        };
        assert_eq!(r.next(round, NONE).epoch, 2);
    }

    #[test]
    fn paused_units_leave_the_plan() {
        let t0 = Instant::now();
        let mut r = Replanner::new(
            PlannerConfig::default(),
            LOAD_REBALANCE,
            BTreeMap::new(),
            t0,
        );
        let previous = plan(4, &[("a", &[0, 1])]);
        let (ws, us) = (workers(&["a"]), units(2));
        let paused: BTreeSet<Unit> = [unit(1)].into();
        let round = Round {
            previous: &previous,
            workers: &ws,
            units: &us,
            paused: &paused,
            from_scratch: false,
            now: t0,
        };
        assert_eq!(r.next(round, NONE), plan(5, &[("a", &[0])]));
    }
}
