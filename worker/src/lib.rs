//! The data plane. A worker replicates the units it is given: it consumes
//! with manual assignment (no group membership, so no rebalances), produces
//! to the same partition of the remote topic with an idempotent producer,
//! commits only what the target acknowledged, and emits offset syncs.
//!
//! It knows nothing of how units are chosen: it is handed a set of units per
//! flow (a [`UnitLink`]) and follows it, tells which units it still holds,
//! and stops writing when the link's fence closes. The worker process
//! (`member`) connects it to the coordinator.

pub mod errors;
pub mod handoff;
pub mod heartbeat;
pub mod inflight;
pub mod member;
pub mod status;

pub mod progress;

mod clients;
mod flow;
mod link;
mod session;

pub use clients::fence as fence_writer;
pub use flow::run_flow;
pub use heartbeat::run_heartbeats;
pub use link::{Assignment, FlowSpec, Held, TopicIds, UnitLink};
pub use session::SessionError;
pub use status::{FlowHealth, StatusBoard, UnitState, UnitStatus};
