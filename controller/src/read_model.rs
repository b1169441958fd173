//! The controller's read model of the coordination store: typed views of
//! the stored plan, the live workers, paused units, operator topic
//! overrides and load reports. The leader reads them from its watched
//! mirrors, the API from one-off listings; both go through [`Entries`], so
//! neither fakes the other's shape.

use std::collections::{BTreeMap, BTreeSet};

use tracing::warn;

use strait_common::coord::keys::Keys;
use strait_common::coord::mirror::Snapshot;
use strait_common::coord::values::{
    decode, LoadDoc, OwnerDoc, PlanDoc, TopicAction, TopicOverrideDoc, WorkerDoc, WorkerState,
};
use strait_common::model::{TopicPartition, Unit};

use crate::discovery::TopicOverrides;
use crate::planner::{Plan, Worker};

/// Keys and values under a prefix of the store, however they were read.
pub trait Entries {
    fn entries(&self) -> impl Iterator<Item = (&str, &[u8])>;
    fn get(&self, key: &str) -> Option<&[u8]>;
    fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
}

/// A watched mirror (the leader's view).
impl Entries for Snapshot {
    fn entries(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.kvs
            .iter()
            .map(|(k, kv)| (k.as_str(), kv.value.as_slice()))
    }
    fn get(&self, key: &str) -> Option<&[u8]> {
        self.kvs.get(key).map(|kv| kv.value.as_slice())
    }
}

/// A one-off listing (the API's view).
impl Entries for BTreeMap<String, Vec<u8>> {
    fn entries(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }
    fn get(&self, key: &str) -> Option<&[u8]> {
        BTreeMap::get(self, key).map(Vec::as_slice)
    }
}

/// The plan as stored: the highest epoch, and every worker's units.
pub fn stored_plan(k: &Keys, plans: &impl Entries) -> Plan {
    let mut plan = Plan::default();
    for (key, value) in plans.entries() {
        let Some(worker) = k.id_under(&k.plans(), key) else {
            continue;
        };
        match decode::<PlanDoc>(value) {
            Ok(doc) => {
                plan.epoch = plan.epoch.max(doc.epoch);
                plan.assignments
                    .insert(worker.to_owned(), doc.units.into_iter().collect());
            }
            Err(e) => warn!(key = %key, error = %e, "unreadable plan entry skipped"),
        }
    }
    plan
}

/// Registered workers; draining ones (shutting down, or drained by an operator) included as such.
pub fn live_workers(k: &Keys, workers: &impl Entries, admin: &impl Entries) -> Vec<Worker> {
    workers
        .entries()
        .filter_map(|(key, value)| {
            let id = k.id_under(&k.workers(), key)?;
            let doc = match decode::<WorkerDoc>(value) {
                Ok(d) => d,
                Err(e) => {
                    warn!(worker = id, error = %e, "unreadable registration skipped");
                    return None;
                }
            };
            Some(Worker {
                id: id.to_owned(),
                draining: doc.state == WorkerState::Draining || admin.has(&k.drained(id)),
            })
        })
        .collect()
}

/// Units an operator paused, among the live ones.
pub fn paused_units(k: &Keys, admin: &impl Entries, units: &BTreeSet<Unit>) -> BTreeSet<Unit> {
    let prefix = k.paused_units();
    let flagged: BTreeSet<(String, TopicPartition)> = admin
        .entries()
        .filter_map(|(key, _)| k.unit_under(&prefix, key))
        .map(|(f, tp)| (f.to_owned(), tp))
        .collect();
    units
        .iter()
        .filter(|u| flagged.contains(&(u.flow.clone(), u.source.clone())))
        .cloned()
        .collect()
}

/// Topics an operator added to or removed from a flow.
pub fn topic_overrides(k: &Keys, admin: &impl Entries) -> TopicOverrides {
    admin
        .entries()
        .filter_map(|(key, value)| {
            let (flow, topic) = k.topic_under(key)?;
            let doc = decode::<TopicOverrideDoc>(value).ok()?;
            Some((
                (flow.to_owned(), topic.to_owned()),
                doc.action == TopicAction::Add,
            ))
        })
        .collect()
}

/// Bytes/s per unit from the workers' reports.
pub fn unit_loads(loads: &impl Entries) -> BTreeMap<Unit, f64> {
    load_reports(loads)
        .flat_map(|d| d.units)
        .map(|u| (u.unit, u.bytes_per_sec))
        .collect()
}

/// The workers' load reports that can be read.
pub fn load_reports(loads: &impl Entries) -> impl Iterator<Item = LoadDoc> + '_ {
    loads
        .entries()
        .filter_map(|(_, value)| decode::<LoadDoc>(value).ok())
}

/// Who holds a unit's owner key.
pub fn owner(k: &Keys, owners: &impl Entries, unit: &Unit) -> Option<String> {
    owners
        .get(&k.owner(unit))
        .and_then(|v| decode::<OwnerDoc>(v).ok())
        .map(|d| d.worker)
}
