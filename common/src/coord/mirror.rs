//! A local copy of everything under a prefix, kept current by a watch that
//! resumes from the last revision it applied, and re-lists when the store
//! compacted that revision away or the watch broke.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Coord, CoordError, Event, Kv, Revision};
use crate::backoff::Backoff;

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The store revision this copy reflects.
    pub revision: Revision,
    pub kvs: BTreeMap<String, Kv>,
    /// False until the first listing succeeded.
    pub synced: bool,
}

const RETRY: Duration = Duration::from_millis(500);
/// The mirror is every role's view of the store: it retries sooner than the
/// other coordination retries so a store that comes back is seen quickly.
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Starts mirroring `prefix` until `shutdown`.
pub fn mirror(
    coord: Coord,
    prefix: String,
    shutdown: CancellationToken,
) -> watch::Receiver<Snapshot> {
    let (tx, rx) = watch::channel(Snapshot::default());
    tokio::spawn(async move {
        tokio::select! {
            _ = run(coord, &prefix, &tx) => {}
            _ = shutdown.cancelled() => {}
        }
    });
    rx
}

async fn run(coord: Coord, prefix: &str, tx: &watch::Sender<Snapshot>) {
    let mut retry = Backoff::new(RETRY, RETRY_MAX);
    loop {
        let (kvs, revision) = match coord.list(prefix).await {
            Ok(r) => r,
            Err(e) => {
                debug!(prefix, error = %e, "listing failed; retrying");
                tokio::time::sleep(retry.next_delay()).await;
                continue;
            }
        };
        let mut snap = Snapshot {
            revision,
            kvs: kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect(),
            synced: true,
        };
        tx.send_replace(snap.clone());
        retry.reset();
        let mut w = match coord.watch(prefix, revision + 1).await {
            Ok(w) => w,
            Err(e) => {
                warn!(prefix, error = %e, "watch failed; re-listing");
                tokio::time::sleep(retry.next_delay()).await;
                continue;
            }
        };
        loop {
            match w.next().await {
                Some(Ok(events)) => {
                    for e in events {
                        snap.revision = snap.revision.max(e.revision());
                        match e {
                            Event::Put(kv) => {
                                snap.kvs.insert(kv.key.clone(), kv);
                            }
                            Event::Delete { key, .. } => {
                                snap.kvs.remove(&key);
                            }
                        }
                    }
                    tx.send_replace(snap.clone());
                }
                Some(Err(CoordError::Compacted { requested, oldest })) => {
                    info!(
                        prefix,
                        requested, oldest, "watch revision compacted; re-listing"
                    );
                    break;
                }
                Some(Err(e)) => {
                    warn!(prefix, error = %e, "watch broke; re-listing");
                    tokio::time::sleep(retry.next_delay()).await;
                    break;
                }
                None => {
                    tokio::time::sleep(retry.next_delay()).await;
                    break;
                }
            }
        }
    }
}
