//! A flow's data plane over time: sessions, one after another, each
//! resuming every unit from its committed position.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;
use tracing::info;

use strait_common::backoff::Backoff;
use strait_common::error_event;
use strait_common::telemetry::ErrorKind;

use crate::link::{FlowSpec, UnitLink};
use crate::session::{self, SessionError, Stopped};
use crate::status::StatusBoard;

/// Runs a flow's data plane until `shutdown` fires, then drains (bounded by
/// `worker.drain_timeout`). A session that fails is restarted after
/// a jittered backoff (`worker.restart_backoff`, doubling to
/// `worker.restart_backoff_max`; back to the base after a session that ran
/// that long), resuming every unit from its committed position; only a failure to create the Kafka clients (a configuration
/// error) ends the flow with an error.
pub async fn run_flow(
    spec: FlowSpec,
    link: UnitLink,
    status: StatusBoard,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let spec = Arc::new(spec);
    let flow = spec.flow.name.clone();
    let mut backoff = Backoff::new(spec.worker.restart_backoff, spec.worker.restart_backoff_max);
    let stopped = Stopped::default();
    loop {
        // No session without a lease to vouch for it (at start, and after
        // fencing until the worker holds a new lease).
        tokio::select! {
            _ = link.fence.opened() => {}
            _ = shutdown.cancelled() => return Ok(()),
        }
        let (s, l, sh, st) = (spec.clone(), link.clone(), shutdown.clone(), status.clone());
        let stop = stopped.clone();
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(move || session::run(&s, &l, &sh, &st, &stop))
            .await
            .context("flow session panicked")?;
        match result {
            Ok(()) => {
                info!(flow = %flow, "flow stopped");
                return Ok(());
            }
            Err(e @ SessionError::Clients(_)) => {
                return Err(e).with_context(|| format!("flow {flow}"));
            }
            Err(why @ SessionError::RefusedInTransaction { .. }) => {
                // Logged where it was refused; nothing else is wrong, so
                // the next session starts at once, without that unit.
                info!(flow = %flow, refused = %why, "exactly-once session ended at a refused record; restarting without its unit");
            }
            Err(SessionError::Fenced) => {
                // The worker re-acquires its units with a new lease and
                // assigns them again; the next session waits for that.
                error_event!(
                    info,
                    flow,
                    ErrorKind::Fenced,
                    "flow session fenced; waiting for a new lease"
                );
            }
            Err(e) => {
                if started.elapsed() >= spec.worker.restart_backoff_max {
                    backoff.reset(); // it ran well for a while: this is a new failure
                }
                let delay = backoff.next_delay();
                if e.kafka_code()
                    .is_some_and(strait_common::access::denials::is_denial)
                {
                    // The missing permission was reported once, with the
                    // ACL to add; the restarts that wait for it are quiet.
                    error_event!(debug, flow, ErrorKind::Session, error = %e, retry_in = ?delay, failures = backoff.attempts(),
                           "flow session failed on a missing permission; restarting from committed positions");
                } else {
                    error_event!(error, flow, ErrorKind::Session, error = %e, retry_in = ?delay, failures = backoff.attempts(),
                           "flow session failed; restarting from committed positions");
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.cancelled() => return Ok(()),
                }
            }
        }
    }
}
