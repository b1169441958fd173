//! What each unit is doing, for people and for the API: shared between the
//! session threads (writers) and whoever reports (readers).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use strait_common::model::Unit;
pub use strait_common::model::UnitState;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitStatus {
    pub state: UnitState,
    /// Last position committed to the source.
    pub committed: Option<i64>,
    /// Position past the contiguous acknowledged records.
    pub acknowledged: Option<i64>,
    /// Records sent and not yet out of the window.
    pub in_flight: u64,
    /// Source high watermark minus position, when known.
    pub lag: Option<i64>,
    pub error: Option<String>,
    /// Records gone from the source before they were read, since the unit
    /// started here (see `on_source_gap`).
    pub lost: u64,
    /// Bytes the target acknowledged for this unit since its session
    /// started (the worker derives bytes/s from it).
    pub bytes: u64,
}

/// The latest status of every unit this process runs, and a running count
/// of records the target acknowledged.
#[derive(Debug, Clone, Default)]
pub struct StatusBoard {
    units: Arc<Mutex<BTreeMap<Unit, UnitStatus>>>,
    flows: Arc<Mutex<BTreeMap<String, FlowHealth>>>,
    acknowledged: Arc<AtomicU64>,
    /// The worker holds a registration on a live lease and is not draining.
    registered: Arc<std::sync::atomic::AtomicBool>,
    /// See [`StatusBoard::shape`].
    shape: Arc<AtomicU64>,
}

/// End-to-end health of a flow, from its heartbeats.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FlowHealth {
    /// Age of the newest heartbeat of the source seen on the target.
    pub heartbeat_age_seconds: Option<f64>,
    /// Replication latency of the last heartbeat seen.
    pub heartbeat_latency_seconds: Option<f64>,
}

impl StatusBoard {
    /// Records acknowledged by the target since this board was created.
    pub fn acknowledged_records(&self) -> u64 {
        self.acknowledged.load(Ordering::Relaxed)
    }

    pub(crate) fn count_acknowledged(&self, n: u64) {
        self.acknowledged.fetch_add(n, Ordering::Relaxed);
    }

    pub fn set(&self, unit: &Unit, status: UnitStatus) {
        let mut units = self.lock();
        let changed = units
            .get(unit)
            .is_none_or(|old| old.state != status.state || old.error != status.error);
        units.insert(unit.clone(), status);
        if changed {
            self.shape.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn remove(&self, unit: &Unit) {
        if self.lock().remove(unit).is_some() {
            self.shape.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn clear_flow(&self, flow: &str) {
        self.lock().retain(|u, _| u.flow != flow);
        self.shape.fetch_add(1, Ordering::Relaxed);
    }

    /// Changes whenever a unit appears, goes, or changes state or error
    /// (not with progress): what makes a load report urgent.
    pub fn shape(&self) -> u64 {
        self.shape.load(Ordering::Relaxed)
    }

    pub fn set_health(&self, flow: &str, health: FlowHealth) {
        self.flows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(flow.to_owned(), health);
    }

    pub fn health(&self) -> BTreeMap<String, FlowHealth> {
        self.flows.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Set by the worker's member: registered on a live lease and not
    /// draining (what `/ready` answers for a worker).
    pub fn set_registered(&self, on: bool) {
        self.registered.store(on, Ordering::Relaxed);
    }

    pub fn registered(&self) -> bool {
        self.registered.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> BTreeMap<Unit, UnitStatus> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Unit, UnitStatus>> {
        self.units.lock().unwrap_or_else(|e| e.into_inner())
    }
}
