//! What the keys hold: JSON documents, each with a `format` number so old
//! and new binaries can share a store during a rolling upgrade.
//!
//! The rule: additive changes (a new optional field) keep the format, and
//! readers ignore fields they do not know; a change an old reader would
//! misread bumps [`FORMAT`]. A reader refuses documents newer than it
//! understands (and the caller skips them, loudly) rather than guessing.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::model::{Unit, UnitState};

/// The newest format this binary writes and reads.
pub const FORMAT: u32 = 1;

fn format() -> u32 {
    FORMAT
}

/// `workers/{id}`, on the worker's lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerDoc {
    #[serde(default = "format")]
    pub format: u32,
    pub id: String,
    /// Where its metrics and status are served.
    pub address: String,
    /// The binary's version, for rolling upgrades.
    pub version: String,
    pub state: WorkerState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    Active,
    /// Shutting down: gets no units, releases what it has.
    Draining,
}

impl WorkerState {
    pub const ALL: [WorkerState; 2] = [WorkerState::Active, WorkerState::Draining];

    /// The word serde writes, and the `state` label of the workers gauge.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Active => "active",
            WorkerState::Draining => "draining",
        }
    }
}

/// `plan/{worker}`: written by the leader, all workers in one transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanDoc {
    #[serde(default = "format")]
    pub format: u32,
    pub epoch: u64,
    pub units: Vec<Unit>,
}

/// `writers/{flow}/{topic}/{partition}`, on no lease: the transactional id
/// of the worker that claimed the unit of an exactly-once flow and may have
/// its records in an open transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriterDoc {
    #[serde(default = "format")]
    pub format: u32,
    pub transactional_id: String,
}

/// `owners/{flow}/{topic}/{partition}`, on the owner's lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnerDoc {
    #[serde(default = "format")]
    pub format: u32,
    pub worker: String,
    /// The plan epoch under which the worker took the unit.
    pub epoch: u64,
    /// Which of the process's takes this is: every key a worker creates
    /// has its own value, so a key it gave back is never mistaken, in a
    /// copy of the store that lags, for one it holds (absent in older
    /// values: 0).
    #[serde(default)]
    pub take: u64,
}

/// `load/{worker}`, on the worker's lease: what it runs and how fast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadDoc {
    #[serde(default = "format")]
    pub format: u32,
    pub worker: String,
    pub units: Vec<UnitLoad>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitLoad {
    pub unit: Unit,
    /// Source bytes replicated per second, over the last report interval.
    pub bytes_per_sec: f64,
    /// Records behind the source's high watermark.
    pub lag: Option<i64>,
    pub state: UnitState,
    pub error: Option<String>,
}

/// `leader`, on the leader's lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaderDoc {
    #[serde(default = "format")]
    pub format: u32,
    pub id: String,
    /// Base URL of its REST API.
    pub address: String,
}

/// An operator flag (`admin/paused/...`, `admin/drained/...`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagDoc {
    #[serde(default = "format")]
    pub format: u32,
}

impl Default for FlagDoc {
    fn default() -> Self {
        FlagDoc { format: FORMAT }
    }
}

/// `admin/topics/{flow}/{topic}`: an operator's addition or removal, on top
/// of the flow's regexes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicOverrideDoc {
    #[serde(default = "format")]
    pub format: u32,
    pub action: TopicAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TopicAction {
    Add,
    Remove,
}

pub fn encode<T: Serialize>(doc: &T) -> Vec<u8> {
    serde_json::to_vec(doc).expect("documents serialise")
}

#[derive(Deserialize)]
struct Header {
    #[serde(default = "format")]
    format: u32,
}

/// Why a stored document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or not the shape of the document.
    #[error("{doc}: {source}")]
    Malformed {
        /// Which document: its type's name (`PlanDoc`, `OwnerDoc`, ...).
        doc: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// Written by a newer binary in a format this one does not read: the
    /// caller skips it (loudly) rather than guess.
    #[error("{doc}: format {format} is newer than this binary reads ({FORMAT}); upgrade it")]
    Newer { doc: &'static str, format: u32 },
}

impl DecodeError {
    /// Which document it was.
    pub fn doc(&self) -> &'static str {
        match self {
            DecodeError::Malformed { doc, .. } | DecodeError::Newer { doc, .. } => doc,
        }
    }
}

/// The last segment of `T`'s type name: `PlanDoc` rather than its path.
fn doc_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

/// Decodes a document, refusing formats newer than [`FORMAT`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let doc = doc_name::<T>();
    let malformed = |source| DecodeError::Malformed { doc, source };
    let h: Header = serde_json::from_slice(bytes).map_err(malformed)?;
    if h.format > FORMAT {
        return Err(DecodeError::Newer {
            doc,
            format: h.format,
        });
    }
    serde_json::from_slice(bytes).map_err(malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_load_is_written_as_before_the_state_was_typed() {
        // The words written while `state` was a String: workers and
        // controllers of either kind read each other's values.
        for (state, word) in [
            (UnitState::Running, "running"),
            (UnitState::Paused, "paused"),
            (UnitState::Failed, "failed"),
            (UnitState::Releasing, "releasing"),
        ] {
            let load = UnitLoad {
                unit: Unit {
                    flow: "a-b".into(),
                    source: crate::model::TopicPartition {
                        topic: "orders".into(),
                        partition: 3,
                    },
                    remote_topic: "a.orders".into(),
                },
                bytes_per_sec: 1.5,
                lag: Some(7),
                state,
                error: None,
            };
            let json = format!(
                r#"{{"unit":{{"flow":"a-b","source":{{"topic":"orders","partition":3}},"remote_topic":"a.orders"}},"bytes_per_sec":1.5,"lag":7,"state":"{word}","error":null}}"#
            );
            assert_eq!(String::from_utf8(encode(&load)).unwrap(), json);
            assert_eq!(decode::<UnitLoad>(json.as_bytes()).unwrap(), load);
        }
        for s in WorkerState::ALL {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
    }

    #[test]
    fn documents_round_trip_and_tolerate_unknown_fields() {
        let doc = WorkerDoc {
            format: FORMAT,
            id: "w1".into(),
            address: "http://127.0.0.1:1".into(),
            version: "0.1.0".into(),
            state: WorkerState::Draining,
        };
        assert_eq!(decode::<WorkerDoc>(&encode(&doc)).unwrap(), doc);
        // A newer binary added a field: still readable.
        let newer = br#"{"format":1,"id":"w1","address":"a","version":"0.2.0","state":"active","capacity":3}"#;
        assert_eq!(
            decode::<WorkerDoc>(newer).unwrap().state,
            WorkerState::Active
        );
    }

    #[test]
    fn a_newer_format_is_refused_with_a_reason() {
        let err = decode::<FlagDoc>(br#"{"format":2}"#).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::Newer {
                    doc: "FlagDoc",
                    format: 2
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("format 2 is newer"), "{err}");
        let err = decode::<PlanDoc>(b"not json").unwrap_err();
        assert!(matches!(err, DecodeError::Malformed { .. }), "{err:?}");
        assert_eq!(err.doc(), "PlanDoc");
        assert!(std::error::Error::source(&err).is_some());
    }
}
