//! Typed telemetry events: an error is logged and counted in one step, with
//! a kind from a closed list, so `strait_errors_total{kind}` and the logs
//! cannot drift apart and a dashboard can name every kind there is.

use crate::metrics as m;

pub use crate::error_kind::ErrorKind;

/// Counts one error of `kind` in `flow`: the counting half of
/// [`error_event!`](crate::error_event), which callers use.
#[doc(hidden)]
pub fn count_error(flow: &str, kind: ErrorKind) {
    metrics::counter!(m::ERRORS, "flow" => flow.to_owned(), "kind" => kind.as_str()).increment(1);
}

/// Logs an error at `$level` (`warn`, `error`, `debug`, …) with the flow
/// and kind as fields, and counts it in `strait_errors_total`:
///
/// `error_event!(warn, flow, ErrorKind::Discovery, error = %e, "discovery failed")`
#[macro_export]
macro_rules! error_event {
    ($level:ident, $flow:expr, $kind:expr, $($rest:tt)+) => {{
        let kind: $crate::telemetry::ErrorKind = $kind;
        let flow: &str = &$flow;
        $crate::telemetry::count_error(flow, kind);
        $crate::__tracing::$level!(flow, kind = kind.as_str(), $($rest)+);
    }};
}
