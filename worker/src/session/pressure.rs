//! Back-pressure: fetching of a unit is paused while its in-flight bytes,
//! or the flow's, are over their limits (with hysteresis).

use super::*;

impl Session<'_> {
    /// Back-pressure with hysteresis: a unit pauses above its in-flight limit
    /// and resumes below half of it; the flow likewise with its own limit.
    pub(super) fn flow_control(&mut self, consumer: &Consumer, id: u64) {
        let max = self.spec.worker.max_in_flight_bytes;
        if self.flow_over.update(self.in_flight_bytes, max) {
            debug!(flow = %self.spec.flow.name, paused = self.flow_over.is_over(), bytes = self.in_flight_bytes, "flow in-flight limit");
            let ids: Vec<u64> = self.units.keys().copied().collect();
            for id in ids {
                self.apply_pause(consumer, id);
            }
        } else {
            self.apply_pause(consumer, id);
        }
    }

    pub(super) fn apply_pause(&mut self, consumer: &Consumer, id: u64) {
        let unit_max = self.spec.worker.unit_max_in_flight_bytes;
        let Some(u) = self.units.get_mut(&id) else {
            return;
        };
        u.over_limit.update(u.progress.in_flight_bytes(), unit_max);
        let stopped = matches!(u.state, UnitState::Failed | UnitState::Releasing);
        let want = stopped || u.over_limit.is_over() || self.flow_over.is_over();
        if want != u.fetch_paused {
            let r = if want {
                consumer.pause(&u.tpl)
            } else {
                consumer.resume(&u.tpl)
            };
            if let Err(e) = r {
                warn!(flow = %u.unit.flow, error = %e, "pause/resume failed");
                return;
            }
            u.fetch_paused = want;
        }
        if !stopped {
            u.state = if want {
                UnitState::Paused
            } else {
                UnitState::Running
            };
        }
    }
}
