//! Coordination: the small key-value surface through which controllers and
//! workers agree (docs/coordination.md). Two implementations of one
//! trait: [`embedded::Embedded`], in-process, the default of a one-machine
//! deployment, and [`etcd::Etcd`] for a fleet. Controller and worker code is
//! written once against [`Coordinator`], so both modes run the same code.
//!
//! The surface is etcd's, reduced to what the protocol needs: leases with
//! keep-alive, reads of a prefix at a revision, transactions guarded by
//! comparisons on create revision or value, and watches that resume from a
//! revision (and fail with [`CoordError::Compacted`] when that revision is
//! gone, so the watcher re-lists; see [`mirror`]).

pub mod embedded;
pub mod etcd;
pub mod keys;
pub mod lease;
pub mod mirror;
pub mod values;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

pub type Revision = i64;
pub type LeaseId = i64;

/// A key and its value as stored, with etcd's bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    /// The revision that created the key; unique per creation, so it names
    /// one incarnation of a key (a leader's term, an owner's hold).
    pub create_revision: Revision,
    pub mod_revision: Revision,
    /// 0 when the key is on no lease.
    pub lease: LeaseId,
}

/// A condition of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key does not exist (create revision 0).
    Absent(String),
    /// The key exists and was created at this revision.
    CreatedAt(String, Revision),
    /// The key exists with exactly this value.
    Value(String, Vec<u8>),
}

/// A write of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    },
    Delete(String),
}

impl Op {
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease: None,
        }
    }

    /// A put attached to a lease: the key vanishes when the lease does.
    pub fn put_on(key: impl Into<String>, value: impl Into<Vec<u8>>, lease: LeaseId) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease: Some(lease),
        }
    }

    pub fn delete(key: impl Into<String>) -> Op {
        Op::Delete(key.into())
    }
}

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Put(Kv),
    Delete { key: String, revision: Revision },
}

impl Event {
    pub fn revision(&self) -> Revision {
        match self {
            Event::Put(kv) => kv.mod_revision,
            Event::Delete { revision, .. } => *revision,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CoordError {
    /// The watch's start revision is older than what the store keeps.
    #[error("revision {requested} is compacted (the store keeps from {oldest})")]
    Compacted {
        requested: Revision,
        oldest: Revision,
    },
    /// The store did not answer, or answered that it cannot serve now:
    /// worth asking again.
    #[error("coordination store unavailable: {message}")]
    Unavailable {
        /// The gRPC status etcd answered with; `None` when there was no
        /// answer (a timeout, a connection or stream that broke).
        code: Option<GrpcCode>,
        message: String,
    },
    /// The store answered no (see [`GrpcCode::is_refusal`]): asking again
    /// gets the same answer.
    #[error("coordination request refused: {message}")]
    Refused {
        /// The gRPC status of the refusal; the embedded store answers with
        /// etcd's code for the same refusal. `None` for a refusal of this
        /// side's own (a key that is not UTF-8).
        code: Option<GrpcCode>,
        message: String,
    },
}

impl CoordError {
    /// The gRPC status code the store answered with, if it answered.
    pub fn code(&self) -> Option<GrpcCode> {
        match self {
            CoordError::Compacted { .. } => None,
            CoordError::Unavailable { code, .. } | CoordError::Refused { code, .. } => *code,
        }
    }
}

/// A gRPC status code (etcd answers in gRPC; the numbers are gRPC's), kept
/// so that callers tell one answer from another by its code, not its text.
/// Its own type rather than tonic's, so that strait's API does not follow
/// the gRPC library etcd-client happens to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrpcCode {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl GrpcCode {
    /// The code of a gRPC status number; numbers gRPC does not define are
    /// [`GrpcCode::Unknown`], as gRPC itself reads them.
    pub fn from_i32(code: i32) -> GrpcCode {
        use GrpcCode::*;
        match code {
            0 => Ok,
            1 => Cancelled,
            3 => InvalidArgument,
            4 => DeadlineExceeded,
            5 => NotFound,
            6 => AlreadyExists,
            7 => PermissionDenied,
            8 => ResourceExhausted,
            9 => FailedPrecondition,
            10 => Aborted,
            11 => OutOfRange,
            12 => Unimplemented,
            13 => Internal,
            14 => Unavailable,
            15 => DataLoss,
            16 => Unauthenticated,
            _ => Unknown,
        }
    }

    /// The codes that mean "the store answered no", as opposed to "the
    /// store did not answer": invalid argument, not found, permission
    /// denied, failed precondition, unauthenticated.
    pub fn is_refusal(self) -> bool {
        use GrpcCode::*;
        matches!(
            self,
            InvalidArgument | NotFound | PermissionDenied | FailedPrecondition | Unauthenticated
        )
    }
}

pub type Result<T> = std::result::Result<T, CoordError>;

/// One batch of a [`Watch`]: the events of one revision, or why the watch
/// ended.
pub(crate) type Batch = Result<Vec<Event>>;

/// Batches of events in revision order (one batch per revision), until
/// the watch fails or the store goes away.
///
/// A consumer slower than the store is never skipped past an event: the
/// etcd watch queues at most [`etcd::WATCH_BUFFER`] batches, then stops
/// reading from etcd until the consumer takes one (etcd keeps the rest,
/// and ends the watch with [`CoordError::Compacted`] if it compacts them
/// away first: the consumer then lists again). The embedded store's
/// queue is not bounded: it sends under its lock, from synchronous code
/// (a transaction, the lease reaper), where it cannot wait, and what it
/// queues is what its own process writes.
pub struct Watch {
    rx: Rx,
}

enum Rx {
    Bounded(mpsc::Receiver<Batch>),
    Unbounded(mpsc::UnboundedReceiver<Batch>),
}

impl Watch {
    pub(crate) fn bounded(rx: mpsc::Receiver<Batch>) -> Self {
        Watch {
            rx: Rx::Bounded(rx),
        }
    }

    pub(crate) fn unbounded(rx: mpsc::UnboundedReceiver<Batch>) -> Self {
        Watch {
            rx: Rx::Unbounded(rx),
        }
    }

    /// The next batch; `None` when the watch ended.
    pub async fn next(&mut self) -> Option<Result<Vec<Event>>> {
        match &mut self.rx {
            Rx::Bounded(rx) => rx.recv().await,
            Rx::Unbounded(rx) => rx.recv().await,
        }
    }

    /// Batches received and not yet taken.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> usize {
        match &self.rx {
            Rx::Bounded(rx) => rx.len(),
            Rx::Unbounded(rx) => rx.len(),
        }
    }
}

#[async_trait]
pub trait Coordinator: Send + Sync + 'static {
    /// For logs: which store this is.
    fn describe(&self) -> String;
    /// A new lease of `ttl` (whole seconds, at least 1).
    async fn grant(&self, ttl: Duration) -> Result<LeaseId>;
    /// Renews a lease: its remaining TTL, or `None` when it has expired.
    async fn keep_alive(&self, lease: LeaseId) -> Result<Option<Duration>>;
    /// Ends a lease now; its keys are deleted.
    async fn revoke(&self, lease: LeaseId) -> Result<()>;
    async fn get(&self, key: &str) -> Result<Option<Kv>>;
    /// Every key under `prefix`, sorted, and the store revision they were read at.
    async fn list(&self, prefix: &str) -> Result<(Vec<Kv>, Revision)>;
    /// Applies `then` atomically if every comparison holds; tells whether it did.
    async fn txn(&self, when: Vec<Compare>, then: Vec<Op>) -> Result<bool>;
    /// Changes under `prefix` from revision `from` on (inclusive).
    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch>;

    async fn put(&self, key: &str, value: Vec<u8>, lease: Option<LeaseId>) -> Result<()> {
        let op = Op::Put {
            key: key.to_owned(),
            value,
            lease,
        };
        self.txn(Vec::new(), vec![op]).await.map(|_| ())
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.txn(Vec::new(), vec![Op::delete(key)])
            .await
            .map(|_| ())
    }
}

pub type Coord = Arc<dyn Coordinator>;

/// etcd counts lease TTLs in whole seconds.
pub(crate) fn ttl_secs(ttl: Duration) -> i64 {
    (ttl.as_secs_f64().ceil() as i64).max(1)
}

#[cfg(test)]
mod tests {
    use super::GrpcCode;

    /// Every gRPC code number reads back as itself; the refusals are the
    /// five codes etcd answers "no" with (invalid argument, not found,
    /// permission denied, failed precondition, unauthenticated).
    #[test]
    fn grpc_codes_read_back_and_the_refusals_are_the_five() {
        for n in 0..=16 {
            assert_eq!(GrpcCode::from_i32(n) as i32, n);
        }
        assert_eq!(GrpcCode::from_i32(17), GrpcCode::Unknown);
        assert_eq!(GrpcCode::from_i32(-1), GrpcCode::Unknown);
        let refusals: Vec<i32> = (0..=16)
            .filter(|&n| GrpcCode::from_i32(n).is_refusal())
            .collect();
        assert_eq!(refusals, [3, 5, 7, 9, 16]);
    }
}
