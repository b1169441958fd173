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

    fn plan(epoch: u64, a: &[(&str, &[i32])]) -> Plan {
        Plan {
            epoch,
            assignments: a
                .iter()
                .map(|(w, ps)| (w.to_string(), ps.iter().map(|&p| unit(p)).collect()))
                .collect(),
        }
    }

    /// Unit 0 carries almost everything: balancing by load puts it alone.
    fn skewed() -> BTreeMap<Unit, f64> {
        (0..4)
            .map(|p| (unit(p), if p == 0 { 1000.0 } else { 1.0 }))
            .collect()
    }

    const NONE: fn() -> BTreeMap<Unit, f64> = BTreeMap::new;

    /// A fleet and its units as one round sees them.
    struct Case {
        previous: Plan,
        workers: Vec<Worker>,
        units: BTreeSet<Unit>,
        paused: BTreeSet<Unit>,
        t0: Instant,
    }

    impl Case {
        fn new(previous: Plan, workers: &[&str], units: i32) -> Case {
            Case {
                previous,
                workers: workers
                    .iter()
                    .map(|id| Worker {
                        id: (*id).into(),
                        draining: false,
                    })
                    .collect(),
                units: (0..units).map(unit).collect(),
                paused: BTreeSet::new(),
                t0: Instant::now(),
            }
        }

        fn replanner(&self, loads: BTreeMap<Unit, f64>) -> Replanner {
            Replanner::new(PlannerConfig::default(), LOAD_REBALANCE, loads, self.t0)
        }

        /// A round `after` the replanner was made.
        fn round(&self, after: Duration) -> Round<'_> {
            Round {
                previous: &self.previous,
                workers: &self.workers,
                units: &self.units,
                paused: &self.paused,
                from_scratch: false,
                now: self.t0 + after,
            }
        }
    }

    #[test]
    fn a_plan_that_still_fits_is_kept_between_rebalances() {
        // Balanced by count, not by the skewed loads: it still fits.
        let c = Case::new(plan(7, &[("a", &[0, 1]), ("b", &[2, 3])]), &["a", "b"], 4);
        let mut r = c.replanner(skewed());
        let next = r.next(c.round(Duration::from_secs(1)), || {
            panic!("loads are not read before the rebalance is due")
        });
        assert_eq!(next, c.previous, "nothing moves, the epoch stays");
    }

    #[test]
    fn when_due_the_fresh_loads_rebalance_and_the_epoch_grows_once() {
        let c = Case::new(plan(7, &[("a", &[0, 1]), ("b", &[2, 3])]), &["a", "b"], 4);
        let mut r = c.replanner(BTreeMap::new());
        let next = r.next(c.round(LOAD_REBALANCE), skewed);
        assert_eq!(next.epoch, 8);
        let heavy_alone = next.assignments.values().any(|u| *u == [unit(0)].into());
        assert!(heavy_alone, "unit 0 gets a worker to itself: {next:?}");
        assert_eq!(r.due(), c.t0 + 2 * LOAD_REBALANCE);
    }

    #[test]
    fn reports_of_an_idle_fleet_do_not_replace_the_balance_loads() {
        let c = Case::new(plan(3, &[("a", &[0]), ("b", &[1, 2, 3])]), &["a", "b"], 4);
        let mut r = c.replanner(skewed());
        let idle = || (0..4).map(|p| (unit(p), 0.0)).collect();
        let next = r.next(c.round(LOAD_REBALANCE), idle);
        assert_eq!(
            next, c.previous,
            "balanced by the last real loads: nothing moves"
        );
    }

    #[test]
    fn a_worker_leaving_moves_only_its_units_and_a_forced_rebalance_replans() {
        let c = Case::new(plan(1, &[("a", &[0, 1]), ("b", &[2, 3])]), &["a"], 4);
        let mut r = c.replanner(BTreeMap::new());
        let next = r.next(c.round(Duration::ZERO), NONE);
        assert_eq!(next, plan(2, &[("a", &[0, 1, 2, 3])]));
        // From scratch with the same outcome: the epoch does not move.
        let forced = Round {
            previous: &next,
            from_scratch: true,
            ..c.round(Duration::ZERO)
        };
        assert_eq!(r.next(forced, NONE).epoch, 2);
    }

    #[test]
    fn paused_units_leave_the_plan() {
        let mut c = Case::new(plan(4, &[("a", &[0, 1])]), &["a"], 2);
        c.paused.insert(unit(1));
        let mut r = c.replanner(BTreeMap::new());
        assert_eq!(
            r.next(c.round(Duration::ZERO), NONE),
            plan(5, &[("a", &[0])])
        );
    }
}
