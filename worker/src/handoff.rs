//! A worker's side of the handoff rules (docs/coordination.md), as a pure
//! state machine. It holds the plan it applied, the owner keys it holds and
//! decides, from what the store shows, which keys to create, which units
//! wait for their previous owner, what the data plane runs and which keys to
//! give back. The member (`member.rs`) does the store I/O it asks for.
//!
//! - Rule 1: a unit runs only once this worker created its owner key (or the
//!   key already is on this worker's lease).
//! - Rule 2: a key is given back only once the data plane released the unit.
//! - Rule 4: a plan older than the one applied is ignored.

use std::collections::{BTreeMap, BTreeSet};

use strait_common::coord::values::PlanDoc;
use strait_common::coord::LeaseId;
use strait_common::model::Unit;

/// What the store shows for one unit's owner key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerKey<'a> {
    /// No key: the unit may be taken.
    Absent,
    /// A key on this worker's lease (taken in an earlier pass, or written
    /// before a restart of the loop), with its value.
    Ours(&'a [u8]),
    /// A key on another lease: the previous owner has not released it.
    Theirs { holder: String },
}

/// Decisions of one pass over the wanted units that are not owned yet.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Claims {
    /// Free: create the owner key (guarded: only if still absent).
    pub take: Vec<Unit>,
    /// Held by another worker; `newly` is set the first time a unit is seen
    /// waiting, naming the holder, so it is logged once.
    pub waiting: Vec<(Unit, Option<String>)>,
}

#[derive(Debug, Default)]
pub struct Handoff {
    applied_epoch: u64,
    desired: BTreeSet<Unit>,
    /// Owner keys held, with the exact value written: deletes are guarded
    /// by it, so only this worker's own key is ever deleted.
    owned: BTreeMap<Unit, Vec<u8>>,
    waiting_logged: BTreeSet<Unit>,
    /// Units of exactly-once flows whose writer key names this worker (its
    /// previous writer fenced): only those may run.
    claimed: BTreeSet<Unit>,
}

/// What became of a plan the member read.
#[derive(Debug, PartialEq, Eq)]
pub enum PlanSeen {
    /// Applied; `newer` if its epoch is above the previous one.
    Applied { newer: bool },
    /// Older than the plan applied (rule 4).
    Stale { epoch: u64, applied: u64 },
}

impl Handoff {
    /// Applies the worker's plan document (rule 4).
    pub fn plan(&mut self, doc: PlanDoc) -> PlanSeen {
        if doc.epoch < self.applied_epoch {
            return PlanSeen::Stale {
                epoch: doc.epoch,
                applied: self.applied_epoch,
            };
        }
        let newer = doc.epoch > self.applied_epoch;
        self.applied_epoch = doc.epoch;
        self.desired = doc.units.into_iter().collect();
        PlanSeen::Applied { newer }
    }

    /// The store, fully read, has no plan for this worker.
    pub fn no_plan(&mut self) {
        self.desired.clear();
    }

    /// The epoch of the plan applied (written into owner keys).
    pub fn epoch(&self) -> u64 {
        self.applied_epoch
    }

    /// The units this worker should replicate: none while draining.
    pub fn wanted(&self, draining: bool) -> BTreeSet<Unit> {
        if draining {
            BTreeSet::new()
        } else {
            self.desired.clone()
        }
    }

    /// Rule 1, first half: for each wanted unit not owned yet, from its
    /// owner key as the store shows it, adopt it, take it or wait.
    pub fn claims<'a>(
        &mut self,
        wanted: &BTreeSet<Unit>,
        key: impl Fn(&Unit) -> OwnerKey<'a>,
    ) -> Claims {
        let mut claims = Claims::default();
        let missing: Vec<Unit> = wanted
            .iter()
            .filter(|u| !self.owned.contains_key(*u))
            .cloned()
            .collect();
        for u in missing {
            match key(&u) {
                OwnerKey::Ours(value) => {
                    self.owned.insert(u, value.to_vec());
                }
                OwnerKey::Theirs { holder } => {
                    let newly = self.waiting_logged.insert(u.clone()).then_some(holder);
                    claims.waiting.push((u, newly));
                }
                OwnerKey::Absent => claims.take.push(u),
            }
        }
        claims
    }

    /// Rule 1, second half: the owner key of `unit` was created with `value`.
    pub fn took(&mut self, unit: Unit, value: Vec<u8>) {
        self.waiting_logged.remove(&unit);
        self.owned.insert(unit, value);
    }

    /// Forgets "waiting" notes of units no longer wanted or now owned.
    pub fn tidy(&mut self, wanted: &BTreeSet<Unit>) {
        let owned = &self.owned;
        self.waiting_logged
            .retain(|u| wanted.contains(u) && !owned.contains_key(u));
    }

    /// Exactly-once, between rule 1 and running: owned and wanted units of
    /// exactly-once flows (`eos`) whose writer this worker has not claimed
    /// yet. For each, the member fences the previous writer the store names
    /// and names itself, then calls [`Handoff::claimed`].
    pub fn to_claim(&self, wanted: &BTreeSet<Unit>, eos: impl Fn(&Unit) -> bool) -> Vec<Unit> {
        self.owned
            .keys()
            .filter(|u| wanted.contains(*u) && eos(u) && !self.claimed.contains(*u))
            .cloned()
            .collect()
    }

    /// The value of the owner key held for `unit` (guards writes made as
    /// its owner).
    pub fn owner_value(&self, unit: &Unit) -> Option<&[u8]> {
        self.owned.get(unit).map(Vec::as_slice)
    }

    /// The unit's writer key names this worker.
    pub fn claimed(&mut self, unit: Unit) {
        self.claimed.insert(unit);
    }

    /// What the data plane runs: wanted and owned (and, for exactly-once
    /// flows, claimed).
    pub fn run(&self, wanted: &BTreeSet<Unit>, eos: impl Fn(&Unit) -> bool) -> BTreeSet<Unit> {
        self.owned
            .keys()
            .filter(|u| wanted.contains(*u) && (!eos(u) || self.claimed.contains(*u)))
            .cloned()
            .collect()
    }

    /// Rule 2: owner keys to give back, with the value that guards the
    /// delete: owned, not wanted, and released by the data plane.
    pub fn to_release(
        &self,
        wanted: &BTreeSet<Unit>,
        released: impl Fn(&Unit) -> bool,
    ) -> Vec<(Unit, Vec<u8>)> {
        self.owned
            .iter()
            .filter(|(u, _)| !wanted.contains(*u) && released(u))
            .map(|(u, v)| (u.clone(), v.clone()))
            .collect()
    }

    /// The owner key of `unit` was deleted.
    pub fn gave_back(&mut self, unit: &Unit) {
        self.owned.remove(unit);
        self.claimed.remove(unit);
    }

    /// Owner keys held.
    pub fn owned(&self) -> usize {
        self.owned.len()
    }
}

/// The lease id of an owner key, for [`OwnerKey`].
pub fn owner_key<'a>(
    ours: LeaseId,
    kv: Option<&'a strait_common::coord::Kv>,
    holder: impl Fn(&[u8]) -> String,
) -> OwnerKey<'a> {
    match kv {
        None => OwnerKey::Absent,
        Some(kv) if kv.lease == ours => OwnerKey::Ours(&kv.value),
        Some(kv) => OwnerKey::Theirs {
            holder: holder(&kv.value),
        },
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

    fn plan(epoch: u64, ps: &[i32]) -> PlanDoc {
        PlanDoc {
            format: 1,
            epoch,
            units: ps.iter().map(|&p| unit(p)).collect(),
        }
    }

    fn set(ps: &[i32]) -> BTreeSet<Unit> {
        ps.iter().map(|&p| unit(p)).collect()
    }

    #[test]
    fn an_older_plan_is_ignored() {
        let mut h = Handoff::default();
        assert_eq!(h.plan(plan(3, &[0, 1])), PlanSeen::Applied { newer: true });
        assert_eq!(h.plan(plan(3, &[0, 1])), PlanSeen::Applied { newer: false });
        assert_eq!(
            h.plan(plan(2, &[5])),
            PlanSeen::Stale {
                epoch: 2,
                applied: 3
            }
        );
        assert_eq!(h.wanted(false), set(&[0, 1]));
        assert_eq!(h.wanted(true), set(&[]), "a draining worker wants nothing");
        h.no_plan();
        assert!(h.wanted(false).is_empty());
        assert_eq!(h.epoch(), 3, "the epoch never goes back");
    }

    #[test]
    fn a_unit_runs_only_once_its_owner_key_is_ours() {
        let mut h = Handoff::default();
        h.plan(plan(1, &[0, 1, 2]));
        let wanted = h.wanted(false);
        let mine = b"me".to_vec();
        let claims = h.claims(&wanted, |u| match u.source.partition {
            0 => OwnerKey::Absent,
            1 => OwnerKey::Ours(&mine),
            _ => OwnerKey::Theirs {
                holder: "w2".into(),
            },
        });
        assert_eq!(claims.take, vec![unit(0)]);
        assert_eq!(claims.waiting, vec![(unit(2), Some("w2".into()))]);
        assert_eq!(
            h.run(&wanted, |_| false),
            set(&[1]),
            "0 is not taken yet, 2 is held"
        );
        h.took(unit(0), b"me".to_vec());
        assert_eq!(h.run(&wanted, |_| false), set(&[0, 1]));
        // Still held next pass: waiting, but not logged again.
        let claims = h.claims(&wanted, |_| OwnerKey::Theirs {
            holder: "w2".into(),
        });
        assert_eq!(claims.waiting, vec![(unit(2), None)]);
        assert!(claims.take.is_empty());
    }

    #[test]
    fn a_key_goes_back_only_once_the_data_plane_released_the_unit() {
        let mut h = Handoff::default();
        h.plan(plan(1, &[0, 1]));
        let wanted = h.wanted(false);
        h.claims(&wanted, |_| OwnerKey::Absent);
        h.took(unit(0), b"v0".to_vec());
        h.took(unit(1), b"v1".to_vec());
        h.plan(plan(2, &[1]));
        let wanted = h.wanted(false);
        assert!(h.to_release(&wanted, |_| false).is_empty(), "still held");
        assert_eq!(h.run(&wanted, |_| false), set(&[1]), "0 no longer runs");
        let back = h.to_release(&wanted, |_| true);
        assert_eq!(
            back,
            vec![(unit(0), b"v0".to_vec())],
            "guarded by our value"
        );
        h.gave_back(&unit(0));
        assert_eq!(h.owned(), 1);
        // Draining: everything goes back once released.
        assert!(h.to_claim(&wanted, |_| false).is_empty());
        let none = h.wanted(true);
        assert_eq!(h.to_release(&none, |_| true).len(), 1);
    }

    #[test]
    fn an_exactly_once_unit_runs_only_once_claimed() {
        let mut h = Handoff::default();
        h.plan(plan(1, &[0, 1]));
        let wanted = h.wanted(false);
        h.claims(&wanted, |_| OwnerKey::Absent);
        h.took(unit(0), b"v0".to_vec());
        h.took(unit(1), b"v1".to_vec());
        let eos = |u: &Unit| u.source.partition == 1;
        assert_eq!(h.to_claim(&wanted, eos), vec![unit(1)]);
        assert_eq!(h.run(&wanted, eos), set(&[0]), "1 waits for its claim");
        h.claimed(unit(1));
        assert!(h.to_claim(&wanted, eos).is_empty());
        assert_eq!(h.run(&wanted, eos), set(&[0, 1]));
        // Given back and taken again: claimed again.
        h.gave_back(&unit(1));
        h.took(unit(1), b"v1".to_vec());
        assert_eq!(h.to_claim(&wanted, eos), vec![unit(1)]);
    }

    #[test]
    fn a_waiting_unit_is_logged_again_after_it_was_dropped_and_wanted_back() {
        let mut h = Handoff::default();
        h.plan(plan(1, &[0]));
        let held = |_: &Unit| OwnerKey::Theirs {
            holder: "w2".into(),
        };
        let w = h.wanted(false);
        assert_eq!(h.claims(&w, held).waiting[0].1.as_deref(), Some("w2"));
        h.plan(plan(2, &[]));
        h.tidy(&h.wanted(false));
        h.plan(plan(3, &[0]));
        let w = h.wanted(false);
        assert_eq!(h.claims(&w, held).waiting[0].1.as_deref(), Some("w2"));
    }
}
