//! Shared by every strait role: configuration, the model, wire formats of
//! the internal topics, replication policies, Kafka client settings and
//! metric names.

pub mod access;
pub mod backoff;
pub mod config;
pub mod coord;
pub mod error_kind;
pub mod formats;
pub mod kafka;
pub mod kafka_errors;
pub mod metrics;
pub mod model;
pub mod native;
pub mod policy;
pub mod syncs;
pub mod telemetry;

#[doc(hidden)]
pub use tracing as __tracing;
