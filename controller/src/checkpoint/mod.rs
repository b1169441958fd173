//! Consumer group failover: source consumer groups' committed positions,
//! translated through the offset syncs, written as MirrorMaker 2
//! checkpoints to `{source}.checkpoints.internal` on the target (and, with
//! `sync_group_offsets`, committed to the idle groups there), so an
//! application can fail over and resume where it was.
//!
//! - [`core`]: the pure part (sync histories, translation, never backwards,
//!   freshness);
//! - [`service`]: the leader's checkpoint service, one per flow;
//! - [`spec`]: a flow's clusters, as every part below finds them;
//! - [`groups`]: consumer groups on one cluster through the admin API
//!   (listing, committed positions, committing forward to idle groups),
//!   used by the service for `sync_group_offsets`, by failover and failback;
//! - [`failover`]: translation and failover on demand (`strait offsets`,
//!   the HTTP endpoint);
//! - [`failback`]: the way back, a target group's positions on the remote
//!   topics translated to the source topics (`strait offsets failback`);
//! - [`reader`]: reading the internal topics up to their end.
//!
//! It reads and writes records of strait's internal topics only, never
//! replicated data.

pub mod core;
pub mod failback;
pub mod failover;
pub mod groups;
#[cfg(test)]
mod leader_fence_test;
pub mod reader;
pub mod service;
pub mod spec;

pub use self::core::{Checkpoints, Freshness};
pub use failover::{checkpointed_groups, translate_groups, GroupSelector, Translated};
pub use groups::{failover_groups, FailoverRow, GroupFailure, GroupOutcome, GroupRefusal};
pub use service::{run_checkpoints, CheckpointBoard, CheckpointHealth};
pub use spec::CheckpointSpec;

use std::time::Duration;

/// Requests for group offsets under way at once, per cluster.
pub const GROUP_REQUESTS_IN_FLIGHT: usize = 64;
/// How long one group-offsets request may take.
pub const GROUP_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long reading an internal topic to its end may take.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
