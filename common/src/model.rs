//! The vocabulary of docs/architecture.md as types: units, and offsets typed so that
//! "the offset of a record" and "the next offset to read" cannot be mixed up.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The offset of a record that exists (was read from the source, or was
/// written to the target).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordOffset(pub i64);

/// A position: the offset of the next record to read. This is what Kafka
/// stores as a committed consumer offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NextOffset(pub i64);

impl RecordOffset {
    /// The position just after this record.
    pub fn next(self) -> NextOffset {
        NextOffset(self.0 + 1)
    }
}

impl fmt::Display for RecordOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for NextOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A source topic-partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// What a unit is doing on the worker that runs it. Spelled once: its
/// [`as_str`](Self::as_str) is the metric label and API text, and serde
/// writes the same words in `load/{worker}` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnitState {
    Running = 0,
    /// Fetching paused by back-pressure (in-flight limits).
    Paused = 1,
    /// Stopped on a record the target refused for good; see `error`.
    Failed = 2,
    /// Being handed back: fetching stopped, waiting for the target.
    Releasing = 3,
}

impl UnitState {
    pub const ALL: [UnitState; 4] = [
        UnitState::Running,
        UnitState::Paused,
        UnitState::Failed,
        UnitState::Releasing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UnitState::Running => "running",
            UnitState::Paused => "paused",
            UnitState::Failed => "failed",
            UnitState::Releasing => "releasing",
        }
    }
}

impl fmt::Display for UnitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is assigned to a worker: one source partition of one flow, with the
/// remote topic it is written to (same partition number).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Unit {
    pub flow: String,
    pub source: TopicPartition,
    pub remote_topic: String,
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.flow, self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_position_after_a_record_is_one_past_it() {
        assert_eq!(RecordOffset(41).next(), NextOffset(42));
    }

    #[test]
    fn unit_states_serialise_as_their_label() {
        for s in UnitState::ALL {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<UnitState>(&json).unwrap(), s);
        }
    }
}
