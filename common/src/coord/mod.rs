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
    #[error("coordination store unavailable: {0}")]
    Unavailable(String),
    #[error("coordination request refused: {0}")]
    Refused(String),
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
