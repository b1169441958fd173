//! A worker's membership in a deployment: it registers on a lease, follows
//! its plan, takes a unit only after creating the unit's owner key, gives
//! the key back only after the data plane released the unit, reports its
//! load, and fences itself when its lease cannot be renewed
//! (docs/coordination.md, the handoff rules). The rules themselves are
//! decided in [`crate::handoff`]; this loop does the store I/O.
//!
//! It talks to the store through the coordination trait only, and to the
//! data plane through one [`UnitLink`] per flow.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use strait_common::coord::keys::Keys;
use strait_common::coord::lease::{Fence, Lease};
use strait_common::coord::mirror::{mirror, Snapshot};
use strait_common::coord::values::{
    decode, encode, LoadDoc, OwnerDoc, PlanDoc, UnitLoad, WorkerDoc, WorkerState, WriterDoc, FORMAT,
};
use strait_common::coord::{Compare, Coord, Op};
use strait_common::metrics as m;
use strait_common::model::Unit;

/// Owner keys this process created: numbers each key's value
/// ([`OwnerDoc::take`]).
static TAKES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

use crate::handoff::{owner_key, Handoff, PlanSeen};
use crate::{Assignment, Held, StatusBoard, UnitLink};

#[derive(Debug, Clone)]
pub struct MemberSpec {
    pub id: String,
    pub deployment: String,
    /// Where this process serves metrics and status.
    pub address: String,
    pub lease_ttl: Duration,
    /// How often per-unit load is reported.
    pub report_interval: Duration,
    /// How long a drain waits for the data plane to release its units.
    pub drain_timeout: Duration,
    /// The exactly-once flows, with this worker's transactional id in each.
    pub exactly_once: BTreeMap<String, String>,
}

/// Fences a transactional id on the target of a flow (`flow`, `txid`):
/// InitProducerId aborts its open transaction and bumps its epoch.
/// Blocking.
pub type Fencer = Arc<dyn Fn(&str, &str) -> Result<(), FenceError> + Send + Sync>;

/// Why a [`Fencer`] did not fence.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    /// The flow is not one of this process's exactly-once flows: there is
    /// no target to fence on.
    #[error("not an exactly-once flow")]
    NotExactlyOnce,
    /// The target refused or did not answer InitProducerId; the Kafka code
    /// is [`FenceError::kafka_code`].
    #[error(transparent)]
    Kafka(#[from] rdkafka::error::KafkaError),
}

impl FenceError {
    /// The Kafka error code, where the failure came from Kafka with one.
    pub fn kafka_code(&self) -> Option<rdkafka::types::RDKafkaErrorCode> {
        match self {
            FenceError::Kafka(e) => e.rdkafka_error_code(),
            FenceError::NotExactlyOnce => None,
        }
    }
}

/// The worker's ends of the flows' links.
pub struct Ports {
    flows: BTreeMap<String, (watch::Sender<Assignment>, watch::Receiver<Held>)>,
    changed: Arc<Notify>,
}

/// Creates the data plane links of `flows`, all behind one fence, and the
/// member's ends of them.
pub fn links(flows: &[String]) -> (Fence, BTreeMap<String, UnitLink>, Ports) {
    let fence = Fence::closed();
    let changed = Arc::new(Notify::new());
    let mut links = BTreeMap::new();
    let mut ports = BTreeMap::new();
    for f in flows {
        let (link, assign, held) = UnitLink::new(fence.clone());
        links.insert(f.clone(), link);
        let (mut rx, notify) = (held.clone(), changed.clone());
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                notify.notify_one();
            }
        });
        ports.insert(f.clone(), (assign, held));
    }
    (
        fence,
        links,
        Ports {
            flows: ports,
            changed,
        },
    )
}

impl Ports {
    fn assign(&self, wanted: &BTreeSet<Unit>) {
        for (flow, (assign, _)) in &self.flows {
            let units: BTreeSet<Unit> =
                wanted.iter().filter(|u| &u.flow == flow).cloned().collect();
            assign.send_if_modified(|a| {
                if a.units == units {
                    return false;
                }
                a.generation += 1;
                a.units = units;
                true
            });
        }
    }

    /// Every unit the data plane holds, in any flow.
    fn held(&self) -> BTreeSet<Unit> {
        self.flows
            .values()
            .flat_map(|(_, held)| held.borrow().units.clone())
            .collect()
    }

    /// The data plane neither holds `unit` nor can still start it: it
    /// applied the latest assignment of the unit's flow, and that
    /// assignment did not name the unit.
    /// The data plane released `unit` with its last transaction committed.
    fn released_clean(&self, unit: &Unit) -> bool {
        self.flows
            .get(&unit.flow)
            .is_some_and(|(_, held)| held.borrow().clean.contains(unit))
    }

    fn released(&self, unit: &Unit) -> bool {
        let Some((assign, held)) = self.flows.get(&unit.flow) else {
            return true;
        };
        let (sent, held) = (assign.borrow(), held.borrow());
        held.generation >= sent.generation
            && !sent.units.contains(unit)
            && !held.units.contains(unit)
    }
}

enum Ended {
    /// The lease was lost: every owner key is gone with it.
    Lost,
    /// Drained: every unit released (or the drain timed out), lease still held.
    Drained(Lease),
}

pub struct Member {
    coord: Coord,
    keys: Keys,
    spec: MemberSpec,
    fence: Fence,
    ports: Ports,
    status: StatusBoard,
    fencer: Fencer,
}

impl Member {
    pub fn new(
        coord: Coord,
        spec: MemberSpec,
        fence: Fence,
        ports: Ports,
        status: StatusBoard,
        fencer: Fencer,
    ) -> Member {
        Member {
            keys: Keys::new(&spec.deployment),
            coord,
            spec,
            fence,
            ports,
            status,
            fencer,
        }
    }

    /// Takes part until `drain` fires, then releases every unit, and
    /// returns the lease for the caller to revoke once the data plane has
    /// stopped (revoking deletes the owner keys, so not before).
    pub async fn run(self, drain: CancellationToken) -> Option<Lease> {
        loop {
            let lease = Lease::acquire_retrying(
                &self.coord,
                self.spec.lease_ttl,
                "worker",
                self.fence.clone(),
                &drain,
            )
            .await?;
            let ended = self.incarnation(lease, &drain).await;
            self.status.set_registered(false);
            match ended {
                Ended::Drained(lease) => return Some(lease),
                Ended::Lost => {
                    // Units go first: nothing may run on a lease that is gone.
                    self.ports.assign(&BTreeSet::new());
                    metrics::counter!(m::LEASES_LOST, "role" => "worker").increment(1);
                    warn!(worker = %self.spec.id, "lease lost: units dropped; joining again");
                    tokio::time::sleep(REJOIN_PAUSE).await;
                }
            }
        }
    }

    /// Claims a unit of an exactly-once flow: fences the transactional id
    /// its writer key names, if another, then names this worker's, guarded
    /// by this worker's owner key. False if it could not (retried on the
    /// next pass; the unit does not run meanwhile).
    async fn claim(&self, u: &Unit, owner_value: Vec<u8>) -> bool {
        let own = &self.spec.exactly_once[&u.flow];
        let key = self.keys.writer(u);
        let previous = match self.coord.get(&key).await {
            Ok(kv) => kv.and_then(|kv| decode::<WriterDoc>(&kv.value).ok()),
            Err(e) => {
                warn!(unit = %u, error = %e, "cannot read the unit's writer");
                return false;
            }
        };
        if let Some(prev) = previous.filter(|p| p.transactional_id != *own) {
            let (fence, flow, txid) = (self.fencer.clone(), u.flow.clone(), prev.transactional_id);
            info!(unit = %u, writer = %txid, "fencing the unit's previous writer");
            let done = tokio::task::spawn_blocking(move || fence(&flow, &txid)).await;
            match done {
                Ok(Ok(())) => metrics::counter!(m::WRITERS_FENCED).increment(1),
                Ok(Err(e)) => {
                    warn!(unit = %u, error = %e, "cannot fence the unit's previous writer; retrying");
                    return false;
                }
                Err(e) => {
                    warn!(unit = %u, error = %e, "fencing panicked");
                    return false;
                }
            }
        }
        let owner = self.keys.owner(u);
        let doc = encode(&WriterDoc {
            format: FORMAT,
            transactional_id: own.clone(),
        });
        match self
            .coord
            .txn(
                vec![Compare::Value(owner, owner_value)],
                vec![Op::put(&key, doc)],
            )
            .await
        {
            Ok(true) => true,
            Ok(false) => false,
            Err(e) => {
                warn!(unit = %u, error = %e, "cannot name this worker the unit's writer");
                false
            }
        }
    }

    /// Whether `u`'s flow is exactly-once.
    fn exactly_once(&self, u: &Unit) -> bool {
        self.spec.exactly_once.contains_key(&u.flow)
    }

    async fn register(&self, lease: &Lease, state: WorkerState) -> bool {
        let doc = WorkerDoc {
            format: FORMAT,
            id: self.spec.id.clone(),
            address: self.spec.address.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            state,
        };
        match self
            .coord
            .put(
                &self.keys.worker(&self.spec.id),
                encode(&doc),
                Some(lease.id),
            )
            .await
        {
            Ok(()) => true,
            Err(e) => {
                warn!(error = %e, "cannot register");
                false
            }
        }
    }

    /// One lease's membership: registered, then a pass over the plan,
    /// the owner keys and the data plane on every change, until the lease
    /// is lost or a drain has released every unit.
    async fn incarnation(&self, lease: Lease, drain: &CancellationToken) -> Ended {
        let stop = CancellationToken::new();
        let _stop = stop.clone().drop_guard();
        if !self.register_active(&lease).await {
            return Ended::Lost;
        }
        let mut inc = Incarnation::new(self, lease, &stop);
        loop {
            if inc.lost.is_cancelled() {
                return Ended::Lost;
            }
            if drain.is_cancelled() && inc.draining.is_none() {
                inc.on_drain().await;
            }
            inc.on_plan();
            inc.pass().await;
            if inc.drained() {
                return Ended::Drained(inc.lease);
            }
            inc.wait(drain).await;
        }
    }

    /// Registers as active, again until it is done; false when the lease
    /// was lost first.
    async fn register_active(&self, lease: &Lease) -> bool {
        let lost = lease.lost();
        while !self.register(lease, WorkerState::Active).await {
            tokio::select! {
                _ = tokio::time::sleep(REGISTER_RETRY) => {}
                _ = lost.cancelled() => return false,
            }
        }
        info!(worker = %self.spec.id, store = %self.coord.describe(), "registered");
        self.status.set_registered(true);
        true
    }
}

/// How long a failed registration waits before it is tried again.
const REGISTER_RETRY: Duration = Duration::from_millis(500);

/// After its lease was lost, how long a worker waits before it joins
/// again, so that a worker losing lease after lease does not spin.
const REJOIN_PAUSE: Duration = Duration::from_millis(500);

/// The longest an incarnation goes without a pass: what no watch wakes it
/// for (the load report's cadence, the drain's deadline, a store write to
/// retry) is done by then.
const PASS_EVERY: Duration = Duration::from_millis(250);

/// One incarnation's state: the lease, the plan and owner keys as
/// mirrored, the handoff, and the drain.
struct Incarnation<'a> {
    member: &'a Member,
    lease: Lease,
    lost: CancellationToken,
    plan_key: String,
    plan: watch::Receiver<Snapshot>,
    owners: watch::Receiver<Snapshot>,
    handoff: Handoff,
    /// While draining: when the drain gives up.
    draining: Option<Instant>,
    load: LoadReporter,
    next_report: Instant,
    breaches: BreachCheck,
}

impl<'a> Incarnation<'a> {
    fn new(member: &'a Member, lease: Lease, stop: &CancellationToken) -> Self {
        let plan_key = member.keys.plan(&member.spec.id);
        Incarnation {
            lost: lease.lost(),
            lease,
            plan: mirror(member.coord.clone(), plan_key.clone(), stop.clone()),
            owners: mirror(member.coord.clone(), member.keys.owners(), stop.clone()),
            plan_key,
            member,
            handoff: Handoff::default(),
            draining: None,
            load: LoadReporter::default(),
            next_report: Instant::now(),
            breaches: BreachCheck::new(),
        }
    }

    /// Waits for a change of the plan, of the owner keys or of what the
    /// data plane holds, for the drain, or at most [`PASS_EVERY`].
    async fn wait(&mut self, drain: &CancellationToken) {
        tokio::select! {
            _ = self.plan.changed() => {}
            _ = self.owners.changed() => {}
            _ = self.member.ports.changed.notified() => {}
            _ = tokio::time::sleep(PASS_EVERY) => {}
            _ = self.lost.cancelled() => {}
            _ = drain.cancelled(), if self.draining.is_none() => {}
        }
    }

    /// The drain begins: every unit is to be released, by a deadline.
    async fn on_drain(&mut self) {
        let m = self.member;
        info!(worker = %m.spec.id, units = self.handoff.owned(), "draining: releasing every unit");
        self.draining = Some(Instant::now() + m.spec.drain_timeout);
        m.status.set_registered(false);
        m.register(&self.lease, WorkerState::Draining).await;
    }

    /// Rule 4: a plan older than the one applied is ignored.
    fn on_plan(&mut self) {
        let snap = self.plan.borrow_and_update();
        match snap.kvs.get(&self.plan_key) {
            Some(kv) => match decode::<PlanDoc>(&kv.value) {
                Ok(doc) => {
                    let (epoch, units) = (doc.epoch, doc.units.len());
                    match self.handoff.plan(doc) {
                        PlanSeen::Applied { newer: true } => debug!(epoch, units, "plan received"),
                        PlanSeen::Applied { newer: false } => {}
                        PlanSeen::Stale { epoch, applied } => {
                            debug!(epoch, applied, "older plan ignored")
                        }
                    }
                }
                Err(e) => warn!(key = %self.plan_key, error = %e, "unreadable plan ignored"),
            },
            None if snap.synced => self.handoff.no_plan(),
            None => {}
        }
    }

    /// One pass: owner keys taken, writers claimed, the data plane told
    /// what to run, owner keys given back, the load reported.
    async fn pass(&mut self) {
        let wanted = self.handoff.wanted(self.draining.is_some());
        let owners = self.owners.borrow_and_update().clone();
        let blocked = self.take(&wanted, &owners).await;
        self.check_breaches(&owners);
        self.claim_writers(&wanted).await;
        // The data plane runs what is both wanted and owned.
        let member = self.member;
        let run = self.handoff.run(&wanted, |u| member.exactly_once(u));
        member.ports.assign(&run);
        self.give_back(&wanted).await;
        metrics::gauge!(m::UNITS_OWNED).set(self.handoff.owned() as f64);
        metrics::gauge!(m::UNITS_WAITING).set(blocked as f64);
        self.report_load().await;
    }

    /// Rule 1: start a unit only after creating its owner key. Returns how
    /// many wanted units wait for their previous owner.
    async fn take(&mut self, wanted: &BTreeSet<Unit>, owners: &Snapshot) -> usize {
        let (m, lease) = (self.member, self.lease.id);
        let mut blocked = 0usize;
        let claims = self.handoff.claims(wanted, |u| {
            owner_key(lease, owners.kvs.get(&m.keys.owner(u)), |v| {
                decode::<OwnerDoc>(v).map(|d| d.worker).unwrap_or_default()
            })
        });
        for (u, newly) in &claims.waiting {
            blocked += 1;
            if let Some(holder) = newly {
                info!(unit = %u, holder, "waiting for the previous owner to release");
            }
        }
        for u in claims.take {
            let key = m.keys.owner(&u);
            let value = encode(&OwnerDoc {
                format: FORMAT,
                worker: m.spec.id.clone(),
                epoch: self.handoff.epoch(),
                take: TAKES.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            });
            match m
                .coord
                .txn(
                    vec![Compare::Absent(key.clone())],
                    vec![Op::put_on(&key, value.clone(), lease)],
                )
                .await
            {
                Ok(true) => self.handoff.took(u, value),
                Ok(false) => blocked += 1, // taken meanwhile; the watch will say by whom
                Err(e) => {
                    warn!(unit = %u, error = %e, "cannot take the owner key");
                    break;
                }
            }
        }
        self.handoff.tidy(wanted);
        blocked
    }

    /// Counts a unit the data plane holds while another lease owns it.
    fn check_breaches(&mut self, owners: &Snapshot) {
        let (m, lease) = (self.member, self.lease.id);
        if m.fence.is_open() && owners.synced {
            self.breaches.check(&m.ports.held(), |u| {
                owners
                    .kvs
                    .get(&m.keys.owner(u))
                    .filter(|kv| kv.lease != lease)
                    .map(|kv| kv.lease)
            });
        }
    }

    /// Exactly-once: fence the unit's previous writer, then name this
    /// worker as its writer, before the data plane reads its progress
    /// (docs/coordination.md, "Exactly-once").
    async fn claim_writers(&mut self, wanted: &BTreeSet<Unit>) {
        let m = self.member;
        for u in self.handoff.to_claim(wanted, |u| m.exactly_once(u)) {
            let owner = self
                .handoff
                .owner_value(&u)
                .expect("claimed units are owned")
                .to_vec();
            if self.lost.is_cancelled() || !m.claim(&u, owner).await {
                break;
            }
            self.handoff.claimed(u);
        }
    }

    /// Rule 2: give a key back only after the data plane released the
    /// unit (stopped, acknowledged, committed).
    async fn give_back(&mut self, wanted: &BTreeSet<Unit>) {
        let m = self.member;
        for (u, value) in self.handoff.to_release(wanted, |u| m.ports.released(u)) {
            let key = m.keys.owner(&u);
            let mut ops = vec![Op::delete(&key)];
            if m.exactly_once(&u) && m.ports.released_clean(&u) {
                // Its last transaction committed: nobody to fence. Else
                // the writer key stays, and the next owner fences.
                ops.push(Op::delete(m.keys.writer(&u)));
            }
            match m
                .coord
                .txn(vec![Compare::Value(key.clone(), value)], ops)
                .await
            {
                Ok(_) => {
                    self.handoff.gave_back(&u);
                    debug!(unit = %u, "owner key released");
                }
                Err(e) => {
                    warn!(unit = %u, error = %e, "cannot release the owner key; retrying");
                    break;
                }
            }
        }
    }

    /// Reports the load on its cadence, and as soon as a unit starts,
    /// stops or changes state, so status shows what runs from the moment
    /// it runs.
    async fn report_load(&mut self) {
        let m = self.member;
        if Instant::now() >= self.next_report || self.load.changed(&m.status) {
            self.next_report = Instant::now() + m.spec.report_interval;
            let doc = self.load.report(&m.spec.id, &m.status);
            if let Err(e) = m
                .coord
                .put(&m.keys.load(&m.spec.id), encode(&doc), Some(self.lease.id))
                .await
            {
                debug!(error = %e, "load report not written");
            }
        }
    }

    /// Whether a drain is over: every unit released, or its deadline passed.
    fn drained(&self) -> bool {
        let Some(deadline) = self.draining else {
            return false;
        };
        let id = &self.member.spec.id;
        if self.handoff.owned() == 0 {
            info!(worker = %id, "drained: every unit released");
            return true;
        }
        if Instant::now() >= deadline {
            warn!(worker = %id, held = self.handoff.owned(),
                  "drain timed out; the data plane commits what was acknowledged and the rest goes with the lease");
            return true;
        }
        false
    }
}

/// Invariant `single_owner`, checked from this side: while our lease is
/// valid, the data plane never holds a unit whose owner key is on another
/// lease. A data plane that kept a unit of an earlier incarnation (lost
/// lease) is stopped by the fence within a poll, so a new incarnation
/// checks only after a short grace.
struct BreachCheck {
    from: Instant,
    counted: BTreeSet<(Unit, i64)>,
}

impl BreachCheck {
    const GRACE: Duration = Duration::from_secs(2);

    fn new() -> Self {
        BreachCheck {
            from: Instant::now() + Self::GRACE,
            counted: BTreeSet::new(),
        }
    }

    /// `other(u)`: the lease holding `u`'s owner key when it is not ours.
    fn check(&mut self, held: &BTreeSet<Unit>, other: impl Fn(&Unit) -> Option<i64>) {
        if Instant::now() < self.from {
            return;
        }
        for u in held {
            if let Some(lease) = other(u) {
                if self.counted.insert((u.clone(), lease)) {
                    m::violated(m::SINGLE_OWNER);
                    error!(unit = %u, other_lease = format!("{lease:x}"),
                           "invariant broken: this worker replicates a unit owned on another lease");
                }
            }
        }
    }
}

/// Turns the data plane's byte counters into bytes/s between reports.
#[derive(Default)]
struct LoadReporter {
    last: BTreeMap<Unit, (u64, Instant)>,
    /// The status board's shape as of the last report.
    shape: Option<u64>,
}

impl LoadReporter {
    /// Whether a unit appeared, went, or changed state since the last report.
    fn changed(&self, status: &StatusBoard) -> bool {
        self.shape != Some(status.shape())
    }

    fn report(&mut self, worker: &str, status: &StatusBoard) -> LoadDoc {
        let now = Instant::now();
        self.shape = Some(status.shape());
        let snapshot = status.snapshot();
        let mut units = Vec::with_capacity(snapshot.len());
        let mut next = BTreeMap::new();
        for (unit, s) in snapshot {
            let rate = match self.last.get(&unit) {
                Some(&(bytes, at)) if s.bytes >= bytes && now > at => {
                    (s.bytes - bytes) as f64 / (now - at).as_secs_f64()
                }
                _ => 0.0,
            };
            next.insert(unit.clone(), (s.bytes, now));
            units.push(UnitLoad {
                unit,
                bytes_per_sec: rate,
                lag: s.lag,
                state: s.state,
                error: s.error,
            });
        }
        self.last = next;
        LoadDoc {
            format: FORMAT,
            worker: worker.to_owned(),
            units,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strait_common::model::TopicPartition;

    fn unit(p: i32) -> Unit {
        Unit {
            flow: "a-b".into(),
            source: TopicPartition {
                topic: "orders".into(),
                partition: p,
            },
            remote_topic: "src.orders".into(),
        }
    }

    #[test]
    fn a_unit_held_while_another_lease_owns_it_is_a_breach_counted_once() {
        let mut check = BreachCheck::new();
        let held = BTreeSet::from([unit(0), unit(1)]);
        let other = |u: &Unit| (u.source.partition == 1).then_some(7);
        check.check(&held, other);
        assert!(check.counted.is_empty(), "nothing counted in the grace");
        check.from = Instant::now();
        check.check(&held, other);
        check.check(&held, other);
        assert_eq!(check.counted, BTreeSet::from([(unit(1), 7)]));
        check.check(&held, |_| None);
        assert_eq!(check.counted.len(), 1, "owned by us: no breach");
    }

    #[test]
    fn a_unit_that_starts_or_changes_state_is_reported_at_once_and_lag_alone_waits() {
        use crate::status::{UnitState, UnitStatus};
        let board = StatusBoard::default();
        let mut load = LoadReporter::default();
        load.report("w", &board);
        assert!(!load.changed(&board));
        let mut s = UnitStatus {
            state: UnitState::Running,
            committed: None,
            acknowledged: None,
            in_flight: 0,
            lag: Some(10),
            error: None,
            lost: 0,
            bytes: 0,
        };
        board.set(&unit(0), s.clone());
        assert!(load.changed(&board), "a unit started");
        let doc = load.report("w", &board);
        assert_eq!(doc.units[0].state, UnitState::Running);
        s.lag = Some(3);
        s.bytes = 100;
        board.set(&unit(0), s.clone());
        assert!(!load.changed(&board), "progress waits for the cadence");
        s.state = UnitState::Failed;
        s.error = Some("refused".into());
        board.set(&unit(0), s);
        assert!(load.changed(&board), "a unit failed");
        load.report("w", &board);
        board.remove(&unit(0));
        assert!(load.changed(&board), "a unit went");
    }
}
