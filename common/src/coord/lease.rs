//! A held lease and the fence that goes with it (docs/coordination.md, "Leases and fencing").
//!
//! The fence's deadline is computed locally from when each keep-alive was
//! *sent*: the store counts the TTL from when it *received* it, so the
//! local deadline always falls before the store's, and a margin more
//! before. A worker checks the fence before every record it produces and
//! every commit, so a worker that cannot renew (partitioned from etcd,
//! stopped by SIGSTOP) stops writing before its owner keys can expire and
//! a new owner can start.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Coord, LeaseId, Result};

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

fn millis(t: Instant) -> u64 {
    t.saturating_duration_since(base()).as_millis() as u64
}

/// Open until a deadline; shared by everything that must stop writing when
/// the lease can no longer be vouched for.
#[derive(Debug, Clone)]
pub struct Fence {
    deadline_ms: Arc<AtomicU64>,
}

impl Fence {
    /// A fence that never closes: for a data plane run without coordination.
    pub fn always_open() -> Fence {
        Fence {
            deadline_ms: Arc::new(AtomicU64::new(u64::MAX)),
        }
    }

    pub fn closed() -> Fence {
        let _ = base();
        Fence {
            deadline_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn is_open(&self) -> bool {
        millis(Instant::now()) < self.deadline_ms.load(Ordering::Acquire)
    }

    /// Moves the deadline (never backwards while open).
    pub fn open_until(&self, deadline: Instant) {
        self.deadline_ms
            .fetch_max(millis(deadline), Ordering::AcqRel);
    }

    pub fn close(&self) {
        self.deadline_ms.store(0, Ordering::Release);
    }

    /// Time left before the fence closes.
    pub fn remaining(&self) -> Duration {
        let d = self.deadline_ms.load(Ordering::Acquire);
        Duration::from_millis(d.saturating_sub(millis(Instant::now())))
    }
}

/// A lease kept alive in the background. When it cannot be renewed before
/// its fence deadline, or the store says it is gone, the fence closes and
/// `lost` fires; the holder then starts over with a new lease.
pub struct Lease {
    pub id: LeaseId,
    pub ttl: Duration,
    fence: Fence,
    lost: CancellationToken,
    stop: CancellationToken,
}

impl Lease {
    /// Grants a lease of `ttl` and keeps it alive every `ttl / 4`.
    pub async fn acquire(coord: &Coord, ttl: Duration, what: &str) -> Result<Lease> {
        Self::acquire_with(coord, ttl, what, Fence::closed()).await
    }

    /// As [`Lease::acquire`], opening an existing fence (a worker keeps one
    /// fence across leases: its data plane holds it).
    pub async fn acquire_with(
        coord: &Coord,
        ttl: Duration,
        what: &str,
        fence: Fence,
    ) -> Result<Lease> {
        let sent = Instant::now();
        let id = coord.grant(ttl).await?;
        fence.open_until(sent + usable(ttl));
        let lease = Lease {
            id,
            ttl,
            fence: fence.clone(),
            lost: CancellationToken::new(),
            stop: CancellationToken::new(),
        };
        info!(lease = format!("{id:x}"), ttl = ?ttl, "{what}: lease granted");
        tokio::spawn(keep_alive(
            coord.clone(),
            id,
            ttl,
            fence,
            lease.lost.clone(),
            lease.stop.clone(),
            what.to_owned(),
        ));
        Ok(lease)
    }

    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// Fires when the lease is lost (the fence is closed by then).
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// Ends the lease now: its keys vanish at once instead of at expiry.
    pub async fn revoke(self, coord: &Coord) -> Result<()> {
        self.stop.cancel();
        self.fence.close();
        coord.revoke(self.id).await
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The part of a TTL a holder may use: a fifth is kept as margin for clock
/// rate differences and for the holder to stop what it is doing.
fn usable(ttl: Duration) -> Duration {
    ttl - ttl / 5
}

async fn keep_alive(
    coord: Coord,
    id: LeaseId,
    ttl: Duration,
    fence: Fence,
    lost: CancellationToken,
    stop: CancellationToken,
    what: String,
) {
    let every = ttl / 4;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
        let sent = Instant::now();
        let answer = tokio::select! {
            a = tokio::time::timeout(every, coord.keep_alive(id)) => a,
            _ = stop.cancelled() => return,
        };
        match answer {
            Ok(Ok(Some(granted))) => fence.open_until(sent + usable(granted.min(ttl))),
            Ok(Ok(None)) => {
                warn!(lease = format!("{id:x}"), "{what}: lease expired; fenced");
                break;
            }
            Ok(Err(e)) => {
                warn!(lease = format!("{id:x}"), error = %e, left = ?fence.remaining(), "{what}: keep-alive failed")
            }
            Err(_) => {
                warn!(lease = format!("{id:x}"), left = ?fence.remaining(), "{what}: keep-alive unanswered")
            }
        }
        if !fence.is_open() {
            warn!(
                lease = format!("{id:x}"),
                "{what}: lease deadline passed without renewal; fenced"
            );
            break;
        }
    }
    fence.close();
    lost.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_opens_until_its_deadline_and_closes_on_demand() {
        let f = Fence::closed();
        assert!(!f.is_open());
        f.open_until(Instant::now() + Duration::from_secs(5));
        assert!(f.is_open());
        // Never moved backwards by a late renewal.
        f.open_until(Instant::now());
        assert!(f.is_open());
        f.close();
        assert!(!f.is_open());
        f.open_until(Instant::now() - Duration::from_millis(1));
        assert!(!f.is_open());
    }
}
