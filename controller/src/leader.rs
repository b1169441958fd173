//! The controller: campaigns for leadership, and while leader runs its
//! duties (discovery, metadata sync, checkpoints: started by the caller)
//! and writes the plan. Every write of a leader is a transaction guarded
//! by the create revision of its leader key, so a deposed leader that has
//! not noticed yet cannot overwrite its successor's plan.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use strait_common::config::Flow;
use strait_common::coord::keys::Keys;
use strait_common::coord::lease::{Fence, Lease};
use strait_common::coord::mirror::{mirror, Snapshot};
use strait_common::coord::values::{decode, encode, LeaderDoc, PlanDoc, WorkerState, FORMAT};
use strait_common::coord::{Compare, Coord, Op, Revision};
use strait_common::metrics as m;
use strait_common::model::Unit;

use crate::discovery::TopicOverrides;

use crate::planner::{Plan, PlannerConfig, Worker};
use crate::read_model::{live_workers, paused_units, stored_plan, topic_overrides, unit_loads};
use crate::replan::{Replanner, Round, LOAD_REBALANCE};

#[derive(Debug, Clone)]
pub struct ControllerSpec {
    pub id: String,
    pub deployment: String,
    /// Base URL of this process's API (what followers redirect to).
    pub address: String,
    pub lease_ttl: Duration,
    pub planner: PlannerConfig,
}

/// What the API needs from the controller loop.
#[derive(Clone)]
pub struct Leadership {
    /// The create revision of our leader key while we lead.
    pub term: watch::Receiver<Option<Revision>>,
    /// Ask the leader to plan from scratch once (a forced rebalance).
    pub rebalance: Arc<Notify>,
}

/// Starts the leader's duties; returns one receiver of discovered units
/// per flow (in the order of the flows) and the duties' tasks. Everything
/// it starts must stop when `stop` fires (the leader joins the tasks when
/// its term ends), and write nothing another leader may have superseded
/// once the `Fence` (the leader's lease) closes.
pub type Duties = Box<
    dyn Fn(
            watch::Receiver<TopicOverrides>,
            Fence,
            CancellationToken,
        ) -> anyhow::Result<(Vec<watch::Receiver<BTreeSet<Unit>>>, JoinSet<()>)>
        + Send
        + Sync,
>;

/// What [`Duties`] returns: the flows' unit receivers and the tasks.
type StartedDuties = (Vec<watch::Receiver<BTreeSet<Unit>>>, JoinSet<()>);

/// How long a term's end waits for its duties to stop.
const DUTIES_STOP: Duration = Duration::from_secs(10);

/// How long a term lets a burst of changes (a worker's units, a rolling
/// restart) settle before it replans.
const SETTLE: Duration = Duration::from_millis(100);

/// How long a candidate waits before it campaigns again: the leader key
/// goes with its holder's lease, which lives seconds, so a faster retry
/// only loads etcd.
const CAMPAIGN_RETRY: Duration = Duration::from_millis(500);

pub struct Controller {
    coord: Coord,
    keys: Keys,
    spec: ControllerSpec,
    flows: Vec<Flow>,
    duties: Duties,
    term: watch::Sender<Option<Revision>>,
    rebalance: Arc<Notify>,
}

impl Controller {
    pub fn new(
        coord: Coord,
        spec: ControllerSpec,
        flows: Vec<Flow>,
        duties: Duties,
    ) -> (Controller, Leadership) {
        let (term, term_rx) = watch::channel(None);
        let rebalance = Arc::new(Notify::new());
        (
            Controller {
                keys: Keys::new(&spec.deployment),
                coord,
                spec,
                flows,
                duties,
                term,
                rebalance: rebalance.clone(),
            },
            Leadership {
                term: term_rx,
                rebalance,
            },
        )
    }

    /// Campaigns and leads until `shutdown`; then resigns so another
    /// controller takes over at once.
    pub async fn run(self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let Some(lease) = Lease::acquire_retrying(
                &self.coord,
                self.spec.lease_ttl,
                "controller",
                Fence::closed(),
                &shutdown,
            )
            .await
            else {
                return;
            };
            let Some(term) = self.campaign(&lease, &shutdown).await else {
                let _ = lease.revoke(&self.coord).await;
                continue;
            };
            info!(controller = %self.spec.id, term, "leading");
            metrics::gauge!(m::LEADER).set(1.0);
            self.term.send_replace(Some(term));
            self.lead(&lease, term, &shutdown).await;
            self.term.send_replace(None);
            metrics::gauge!(m::LEADER).set(0.0);
            // Only the leader counts workers: a former leader's count would
            // be stale.
            for state in WorkerState::ALL {
                metrics::gauge!(m::WORKERS, "state" => state.as_str()).set(0.0);
            }
            if shutdown.is_cancelled() {
                info!(controller = %self.spec.id, "resigning");
                let _ = self
                    .coord
                    .txn(
                        vec![Compare::CreatedAt(self.keys.leader(), term)],
                        vec![Op::delete(self.keys.leader())],
                    )
                    .await;
                let _ = lease.revoke(&self.coord).await;
                return;
            }
            warn!(controller = %self.spec.id, "no longer leading");
            metrics::counter!(m::LEASES_LOST, "role" => "controller").increment(1);
        }
    }

    /// Waits until our leader key exists; `None` when the lease was lost.
    async fn campaign(&self, lease: &Lease, shutdown: &CancellationToken) -> Option<Revision> {
        let key = self.keys.leader();
        let doc = encode(&LeaderDoc {
            format: FORMAT,
            id: self.spec.id.clone(),
            address: self.spec.address.clone(),
        });
        let lost = lease.lost();
        let mut logged = false;
        loop {
            match self
                .coord
                .txn(
                    vec![Compare::Absent(key.clone())],
                    vec![Op::put_on(&key, doc.clone(), lease.id)],
                )
                .await
            {
                Ok(_) => match self.coord.get(&key).await {
                    Ok(Some(kv)) if kv.lease == lease.id => return Some(kv.create_revision),
                    Ok(Some(kv)) if !logged => {
                        logged = true;
                        let who = decode::<LeaderDoc>(&kv.value)
                            .map(|d| d.id)
                            .unwrap_or_default();
                        info!(leader = %who, "following");
                    }
                    _ => {}
                },
                Err(e) => debug!(error = %e, "campaign failed; retrying"),
            }
            // The leader key goes with its holder's lease (or resignation).
            tokio::select! {
                _ = tokio::time::sleep(CAMPAIGN_RETRY) => {}
                _ = lost.cancelled() => return None,
                _ = shutdown.cancelled() => return None,
            }
        }
    }

    /// One term: the store mirrored, the stored plan taken over, the
    /// duties started, then planning until the term ends, then the duties
    /// stopped.
    async fn lead(&self, lease: &Lease, term: Revision, shutdown: &CancellationToken) {
        let stop = shutdown.child_token();
        let _stop = stop.clone().drop_guard();
        let lost = lease.lost();
        let Some(store) = self.mirror_store(&lost, &stop).await else {
            return;
        };
        let previous = take_over(&self.keys, &store);
        let (overrides, overrides_rx) = watch::channel(TopicOverrides::new());
        overrides.send_replace(topic_overrides(&self.keys, &*store.admin.borrow()));
        let Some((discovered, tasks)) = self.start_duties(overrides_rx, lease, &stop) else {
            return;
        };
        Term::new(self, term, store, overrides, discovered, previous)
            .plan(&lost, &stop)
            .await;
        stop.cancel();
        stop_duties(tasks).await;
    }

    /// Mirrors what the leader plans from, and waits for a consistent
    /// first view of it; `None` when the term ended first.
    async fn mirror_store(
        &self,
        lost: &CancellationToken,
        stop: &CancellationToken,
    ) -> Option<Store> {
        let (k, coord) = (&self.keys, &self.coord);
        let store = Store {
            workers: mirror(coord.clone(), k.workers(), stop.clone()),
            loads: mirror(coord.clone(), k.loads(), stop.clone()),
            admin: mirror(coord.clone(), k.admin(), stop.clone()),
            plans: mirror(coord.clone(), k.plans(), stop.clone()),
        };
        for rx in [&store.workers, &store.loads, &store.admin, &store.plans] {
            let mut rx = rx.clone();
            tokio::select! {
                r = rx.wait_for(|s| s.synced) => if r.is_err() { return None },
                _ = lost.cancelled() => return None,
                _ = stop.cancelled() => return None,
            }
        }
        Some(store)
    }

    /// Starts the leader's duties; `None` (stepping down) when they cannot.
    fn start_duties(
        &self,
        overrides: watch::Receiver<TopicOverrides>,
        lease: &Lease,
        stop: &CancellationToken,
    ) -> Option<StartedDuties> {
        match (self.duties)(overrides, lease.fence(), stop.clone()) {
            Ok(started) => Some(started),
            Err(e) => {
                warn!(
                    error = format!("{e:#}"),
                    "cannot start the leader's duties; stepping down"
                );
                None
            }
        }
    }

    async fn write_plan(
        &self,
        term: Revision,
        plan: &Plan,
        stale: &[String],
    ) -> strait_common::coord::Result<bool> {
        let k = &self.keys;
        let mut ops: Vec<Op> = plan
            .assignments
            .iter()
            .map(|(w, units)| {
                Op::put(
                    k.plan(w),
                    encode(&PlanDoc {
                        format: FORMAT,
                        epoch: plan.epoch,
                        units: units.iter().cloned().collect(),
                    }),
                )
            })
            .collect();
        ops.extend(stale.iter().map(|w| Op::delete(k.plan(w))));
        self.coord
            .txn(vec![Compare::CreatedAt(k.leader(), term)], ops)
            .await
    }
}

/// The store's prefixes a leader plans from, mirrored.
struct Store {
    workers: watch::Receiver<Snapshot>,
    loads: watch::Receiver<Snapshot>,
    admin: watch::Receiver<Snapshot>,
    plans: watch::Receiver<Snapshot>,
}

/// The stored plan, where a new leader starts from, so it keeps the plan
/// intact.
fn take_over(k: &Keys, store: &Store) -> Plan {
    let previous = stored_plan(k, &*store.plans.borrow());
    metrics::gauge!(m::PLAN_EPOCH).set(previous.epoch as f64);
    info!(
        epoch = previous.epoch,
        workers = previous.assignments.len(),
        "took over the stored plan"
    );
    previous
}

/// Stops the duties of a term that ended: waits for them, then aborts
/// those still running.
async fn stop_duties(mut tasks: JoinSet<()>) {
    let joined = tokio::time::timeout(DUTIES_STOP, async {
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done {
                warn!(error = %e, "a leader duty panicked");
            }
        }
    })
    .await;
    if joined.is_err() {
        warn!(
            left = tasks.len(),
            "leader duties did not stop in time; aborting them"
        );
        tasks.abort_all();
    }
}

/// What woke a term up.
enum Wake {
    /// Workers, the operator's settings or the discovered units changed,
    /// or a load rebalance is due.
    Changed,
    /// An operator asked for a rebalance.
    Rebalance,
    /// The lease was lost, or the controller stops.
    Ended,
}

/// The leader key changed under us: another controller leads.
struct Deposed;

/// One term's planning: the store as mirrored, what discovery found, and
/// the plan in force. Every wake-up replans from all of it.
struct Term<'a> {
    ctl: &'a Controller,
    /// The create revision of our leader key: guards every write.
    revision: Revision,
    store: Store,
    /// The operator's topic decisions, passed on to discovery.
    overrides: watch::Sender<TopicOverrides>,
    discovered: Vec<watch::Receiver<BTreeSet<Unit>>>,
    /// Per flow, its units as last discovered (`None`: not yet).
    known: Vec<Option<BTreeSet<Unit>>>,
    /// The plan in force: as stored, then as last written.
    previous: Plan,
    from_scratch: bool,
    replanner: Replanner,
}

impl<'a> Term<'a> {
    fn new(
        ctl: &'a Controller,
        revision: Revision,
        store: Store,
        overrides: watch::Sender<TopicOverrides>,
        discovered: Vec<watch::Receiver<BTreeSet<Unit>>>,
        previous: Plan,
    ) -> Self {
        let replanner = Replanner::new(
            ctl.spec.planner,
            LOAD_REBALANCE,
            unit_loads(&*store.loads.borrow()),
            Instant::now(),
        );
        Term {
            known: vec![None; ctl.flows.len()],
            ctl,
            revision,
            store,
            overrides,
            discovered,
            previous,
            from_scratch: false,
            replanner,
        }
    }

    /// Plans, then again on every change, until the term ends (lost,
    /// stopped or deposed).
    async fn plan(mut self, lost: &CancellationToken, stop: &CancellationToken) {
        loop {
            self.on_units_discovered();
            self.on_admin_changed();
            if self.replan().await.is_err() {
                return;
            }
            match self.wait(lost, stop).await {
                Wake::Ended => return,
                Wake::Rebalance => self.from_scratch = true,
                Wake::Changed => {}
            }
            tokio::time::sleep(SETTLE).await;
        }
    }

    /// Waits for anything that can change the plan.
    async fn wait(&mut self, lost: &CancellationToken, stop: &CancellationToken) -> Wake {
        tokio::select! {
            _ = self.store.workers.changed() => Wake::Changed,
            _ = self.store.admin.changed() => Wake::Changed,
            _ = changed_any(&mut self.discovered) => Wake::Changed,
            _ = self.ctl.rebalance.notified() => Wake::Rebalance,
            _ = tokio::time::sleep_until(self.replanner.due().into()) => Wake::Changed,
            _ = lost.cancelled() => Wake::Ended,
            _ = stop.cancelled() => Wake::Ended,
        }
    }

    /// Takes the units discovery published since the last look.
    fn on_units_discovered(&mut self) {
        for (i, rx) in self.discovered.iter_mut().enumerate() {
            if rx.has_changed().unwrap_or(false) {
                self.known[i] = Some(rx.borrow_and_update().clone());
            }
        }
    }

    /// Passes the operator's topic decisions on to discovery, if changed.
    fn on_admin_changed(&mut self) {
        let k = &self.ctl.keys;
        let admin = &self.store.admin;
        self.overrides.send_if_modified(|o| {
            let now = topic_overrides(k, &*admin.borrow());
            (now != *o).then(|| *o = now).is_some()
        });
    }

    /// The units to plan. A flow not discovered yet keeps the units the
    /// plan in force has.
    fn units(&self) -> BTreeSet<Unit> {
        let mut units: BTreeSet<Unit> = BTreeSet::new();
        for (flow, seen) in self.ctl.flows.iter().zip(&self.known) {
            match seen {
                Some(set) => units.extend(set.iter().cloned()),
                None => units.extend(
                    self.previous
                        .assignments
                        .values()
                        .flatten()
                        .filter(|u| u.flow == flow.name)
                        .cloned(),
                ),
            }
        }
        units
    }

    /// The live workers (counted in the gauges) and the paused units.
    fn members(&self, units: &BTreeSet<Unit>) -> (Vec<Worker>, BTreeSet<Unit>) {
        let k = &self.ctl.keys;
        let (ws, paused) = {
            let a = self.store.admin.borrow();
            (
                live_workers(k, &*self.store.workers.borrow(), &*a),
                paused_units(k, &*a, units),
            )
        };
        let draining = ws.iter().filter(|w| w.draining).count();
        metrics::gauge!(m::WORKERS, "state" => WorkerState::Active.as_str())
            .set((ws.len() - draining) as f64);
        metrics::gauge!(m::WORKERS, "state" => WorkerState::Draining.as_str()).set(draining as f64);
        (ws, paused)
    }

    /// Plans from the current view, and writes the plan when it changed,
    /// when workers' plans are stale, or when a rebalance was asked for.
    /// A failed write is retried at the next wake-up.
    async fn replan(&mut self) -> Result<(), Deposed> {
        let units = self.units();
        let (ws, paused) = self.members(&units);
        let loads = &self.store.loads;
        let next = self.replanner.next(
            Round {
                previous: &self.previous,
                workers: &ws,
                units: &units,
                paused: &paused,
                from_scratch: self.from_scratch,
                now: Instant::now(),
            },
            || unit_loads(&*loads.borrow()),
        );
        let stale = self.stale(&next);
        if next.epoch != self.previous.epoch || !stale.is_empty() || self.from_scratch {
            return self.write(next, &stale, units.len()).await;
        }
        Ok(())
    }

    /// Workers with a stored plan that `next` no longer names.
    fn stale(&self, next: &Plan) -> Vec<String> {
        let k = &self.ctl.keys;
        self.store
            .plans
            .borrow()
            .kvs
            .keys()
            .filter_map(|key| k.id_under(&k.plans(), key).map(str::to_owned))
            .filter(|w| !next.assignments.contains_key(w))
            .collect()
    }

    /// Writes `next` (and deletes the `stale` plans); then it is in force.
    async fn write(&mut self, next: Plan, stale: &[String], units: usize) -> Result<(), Deposed> {
        match self.ctl.write_plan(self.revision, &next, stale).await {
            Ok(true) => {
                let moves = moved(&self.previous, &next);
                metrics::counter!(m::PLANS_WRITTEN).increment(1);
                metrics::counter!(m::UNIT_MOVES).increment(moves as u64);
                metrics::gauge!(m::PLAN_EPOCH).set(next.epoch as f64);
                info!(
                    epoch = next.epoch,
                    workers = next.assignments.len(),
                    units,
                    moves,
                    "plan written"
                );
                self.previous = next;
                self.from_scratch = false;
                Ok(())
            }
            Ok(false) => {
                warn!("the leader key changed under us: deposed");
                Err(Deposed)
            }
            Err(e) => {
                warn!(error = %e, "cannot write the plan; retrying");
                Ok(())
            }
        }
    }
}

/// Resolves once any receiver has a value it has not seen, without marking
/// it seen (the caller reads it with `has_changed`/`borrow_and_update`):
/// it waits on clones, which start from the same seen version. Receivers
/// whose sender is gone never resolve it.
async fn changed_any(rxs: &mut [watch::Receiver<BTreeSet<Unit>>]) {
    use std::future::Future as _;
    let mut waits: Vec<_> = rxs
        .iter()
        .map(|r| {
            let mut r = r.clone();
            Some(Box::pin(async move { r.changed().await }))
        })
        .collect();
    std::future::poll_fn(|cx| {
        for slot in waits.iter_mut() {
            if let Some(w) = slot {
                match w.as_mut().poll(cx) {
                    std::task::Poll::Ready(Ok(())) => return std::task::Poll::Ready(()),
                    // Its sender is gone: nothing more will come from it.
                    std::task::Poll::Ready(Err(_)) => *slot = None,
                    std::task::Poll::Pending => {}
                }
            }
        }
        std::task::Poll::Pending
    })
    .await
}

fn moved(a: &Plan, b: &Plan) -> usize {
    let before = a.owners();
    b.owners()
        .iter()
        .filter(|(u, w)| before.get(*u).is_some_and(|old| old != *w))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn changed_any_wakes_on_a_change_and_leaves_it_unseen() {
        let (a_tx, a) = watch::channel(BTreeSet::new());
        let (b_tx, b) = watch::channel(BTreeSet::new());
        let mut rxs = vec![a, b];
        let quiet = tokio::time::timeout(Duration::from_millis(50), changed_any(&mut rxs)).await;
        assert!(quiet.is_err(), "nothing changed yet");
        // A sender gone is not a change.
        drop(a_tx);
        let quiet = tokio::time::timeout(Duration::from_millis(50), changed_any(&mut rxs)).await;
        assert!(quiet.is_err(), "a closed channel does not wake it");
        {
            // Polled first, so it is waiting when the change comes.
            let mut waiting = Box::pin(changed_any(&mut rxs));
            let quiet = tokio::time::timeout(Duration::from_millis(50), &mut waiting).await;
            assert!(quiet.is_err(), "still nothing");
            let sent = std::time::Instant::now();
            b_tx.send_replace(BTreeSet::new());
            tokio::time::timeout(Duration::from_secs(5), waiting)
                .await
                .expect("woken");
            assert!(sent.elapsed() < Duration::from_millis(500));
        }
        assert!(
            rxs[1].has_changed().unwrap(),
            "the caller still sees the change"
        );
    }
}
