//! Reporting: unit states, lag and in-flight bytes, to the metrics and the
//! status board, once a tick.

use super::Session;
use crate::status::{UnitState, UnitStatus};
use strait_common::metrics as m;

impl Session<'_> {
    /// Publishes unit states, lag and in-flight bytes (metrics and status).
    pub(super) fn report(&mut self) {
        let flow = self.spec.flow.name.clone();
        let per_partition = self.spec.per_partition_metrics;
        let watermarks = self
            .watermarks
            .lock()
            .map(|w| w.clone())
            .unwrap_or_default();
        let mut by_state = [0u64; 4];
        let mut total_lag = 0i64;
        for u in self.units.values() {
            let state = u.phase.state();
            by_state[state as usize] += 1;
            let tp = &u.unit.source;
            let position = u.progress.position().map(|p| p.0);
            let lag = watermarks
                .get(tp)
                .zip(position)
                .map(|(hw, pos)| (hw.0 - pos).max(0));
            total_lag += lag.unwrap_or(0);
            if per_partition {
                let labels = [
                    ("flow", flow.clone()),
                    ("topic", tp.topic.clone()),
                    ("partition", tp.partition.to_string()),
                ];
                metrics::gauge!(m::UNIT_STATE, &labels).set(state as u8 as f64);
                if let Some(lag) = lag {
                    metrics::gauge!(m::UNIT_LAG, &labels).set(lag as f64);
                }
            }
            self.status.set(
                &u.unit,
                UnitStatus {
                    state,
                    committed: u.progress.committed().map(|p| p.0),
                    acknowledged: u.progress.acknowledged().map(|p| p.0),
                    in_flight: u.progress.in_flight() as u64,
                    lag,
                    error: u.phase.error().map(str::to_owned),
                    lost: u.lost,
                    bytes: u.progress.acked_bytes(),
                },
            );
        }
        for (state, n) in UnitState::ALL.iter().zip(by_state) {
            metrics::gauge!(m::UNITS, "flow" => flow.clone(), "state" => state.as_str())
                .set(n as f64);
        }
        metrics::gauge!(m::LAG, "flow" => flow.clone()).set(total_lag as f64);
        metrics::gauge!(m::IN_FLIGHT_BYTES, "flow" => flow).set(self.in_flight.bytes as f64);
    }
}
