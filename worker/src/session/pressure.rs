//! Back-pressure: fetching of a unit is paused while its in-flight bytes,
//! or the flow's, are over their limits (with hysteresis).

use super::units::UnitId;
use super::Session;
use crate::clients::Consumer;
use tracing::{debug, warn};

impl Session<'_> {
    /// Back-pressure with hysteresis: a unit pauses above its in-flight limit
    /// and resumes below half of it; the flow likewise with its own limit.
    pub(super) fn flow_control(&mut self, consumer: &Consumer, id: UnitId) {
        let max = self.spec.worker.max_in_flight_bytes;
        if self.in_flight.over.update(self.in_flight.bytes, max) {
            debug!(flow = %self.spec.flow.name, paused = self.in_flight.over.is_over(), bytes = self.in_flight.bytes, "flow in-flight limit");
            for id in self.units.ids() {
                self.apply_pause(consumer, id);
            }
        } else {
            self.apply_pause(consumer, id);
        }
    }

    /// Pauses or resumes the unit's fetching as its phase and the in-flight
    /// limits want; a replicating unit is running or paused accordingly.
    pub(super) fn apply_pause(&mut self, consumer: &Consumer, id: UnitId) {
        let unit_max = self.spec.worker.unit_max_in_flight_bytes;
        let Some(u) = self.units.get_mut(id) else {
            return;
        };
        u.over_limit.update(u.progress.in_flight_bytes(), unit_max);
        let stopped = u.phase.is_stopped();
        let want = stopped || u.over_limit.is_over() || self.in_flight.over.is_over();
        if let Err(e) = u.fetch.set_paused(consumer, want) {
            warn!(flow = %u.unit.flow, error = %e, "pause/resume failed");
            return;
        }
        u.phase.throttle(want);
    }
}
