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

/// Bits of a fence's state that hold its deadline (milliseconds since the
/// process's base instant: some 139 years); the bits above hold its term.
const DEADLINE_BITS: u32 = 42;
const DEADLINE_MASK: u64 = (1 << DEADLINE_BITS) - 1;

fn pack(term: u64, deadline_ms: u64) -> u64 {
    (term << DEADLINE_BITS) | deadline_ms.min(DEADLINE_MASK)
}

fn term_of(state: u64) -> u64 {
    state >> DEADLINE_BITS
}

fn deadline_of(state: u64) -> u64 {
    state & DEADLINE_MASK
}

/// Open until a deadline; shared by everything that must stop writing when
/// the lease can no longer be vouched for.
///
/// A fence has terms: every [`Fence::close`] ends one and begins the next,
/// and a lease opens and extends only the term it was granted in. A worker
/// keeps one fence across its leases, and its data plane checks a
/// [`Fence::ticket`], which belongs to the term it was taken in: once that
/// term is closed the ticket stays closed, even after the worker's next
/// lease has opened the fence again. So a session that was blocked (a
/// synchronous commit, a full queue, a flush) while its lease lapsed and its
/// units moved can never write again; the next session starts under the
/// new lease, from the committed positions.
#[derive(Debug, Clone)]
pub struct Fence {
    /// The term and the deadline, packed, so one load reads both.
    state: Arc<AtomicU64>,
    /// A ticket's term; `None` for the fence itself (the current term).
    ticket: Option<u64>,
    /// Woken whenever a deadline moves forward (a lease opened or renewed
    /// the fence): [`Fence::opened`] waits on it instead of polling.
    moved: Arc<tokio::sync::Notify>,
}

impl Fence {
    /// A fence that never closes: for a data plane run without coordination.
    pub fn always_open() -> Fence {
        Fence {
            state: Arc::new(AtomicU64::new(pack(0, DEADLINE_MASK))),
            ticket: None,
            moved: Arc::default(),
        }
    }

    pub fn closed() -> Fence {
        let _ = base();
        Fence {
            state: Arc::new(AtomicU64::new(pack(0, 0))),
            ticket: None,
            moved: Arc::default(),
        }
    }

    /// A handle on the current term: open while this term is open, closed
    /// for good once it is closed.
    pub fn ticket(&self) -> Fence {
        Fence {
            state: self.state.clone(),
            ticket: Some(self.term()),
            moved: self.moved.clone(),
        }
    }

    /// The current term (a lease is granted in one).
    pub fn term(&self) -> u64 {
        term_of(self.state.load(Ordering::Acquire))
    }

    fn deadline(&self) -> u64 {
        let state = self.state.load(Ordering::Acquire);
        match self.ticket {
            Some(t) if term_of(state) != t => 0,
            _ => deadline_of(state),
        }
    }

    pub fn is_open(&self) -> bool {
        millis(Instant::now()) < self.deadline()
    }

    /// Moves the current term's deadline (never backwards while open).
    pub fn open_until(&self, deadline: Instant) {
        self.extend(self.ticket.unwrap_or_else(|| self.term()), deadline);
    }

    /// Moves term `term`'s deadline (never backwards); nothing if that term
    /// is over: a late renewal of a lost lease opens nothing.
    pub fn extend(&self, term: u64, deadline: Instant) {
        let want = millis(deadline);
        let moved = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (term_of(s) == term && deadline_of(s) < want).then(|| pack(term, want))
            });
        if moved.is_ok() {
            self.moved.notify_waiters();
        }
    }

    /// Resolves once the fence is open (at once if it is): a worker without
    /// a lease waits here for its next one.
    pub async fn opened(&self) {
        loop {
            let moved = self.moved.notified();
            tokio::pin!(moved);
            // Registered before the check, so an opening in between wakes it.
            moved.as_mut().enable();
            if self.is_open() {
                return;
            }
            moved.await;
        }
    }

    /// Ends the current term: closed, and every ticket of it closed for good.
    pub fn close(&self) {
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                Some(pack(term_of(s) + 1, 0))
            });
    }

    /// Ends this ticket's term (the fence's: the current one) if it is
    /// still the current one: a lost lease closes its own term, never a
    /// newer lease's.
    pub fn close_own(&self) {
        self.close_term(self.ticket.unwrap_or_else(|| self.term()));
    }

    /// Ends term `term` if it is still the current one.
    pub fn close_term(&self, term: u64) {
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (term_of(s) == term).then(|| pack(term + 1, 0))
            });
    }

    /// Time left before the fence closes.
    pub fn remaining(&self) -> Duration {
        Duration::from_millis(self.deadline().saturating_sub(millis(Instant::now())))
    }
}

/// The first wait after the store refused a lease.
pub const LEASE_RETRY_FIRST: Duration = Duration::from_millis(500);

/// A lease kept alive in the background. When it cannot be renewed before
/// its fence deadline, or the store says it is gone, the fence closes and
/// `lost` fires; the holder then starts over with a new lease.
pub struct Lease {
    pub id: LeaseId,
    pub ttl: Duration,
    /// A ticket of the fence's term this lease opened.
    own: Fence,
    fence: Fence,
    lost: CancellationToken,
    stop: CancellationToken,
}

impl Lease {
    /// Grants a lease of `ttl` and keeps it alive every `ttl / 4`.
    pub async fn acquire(coord: &Coord, ttl: Duration, what: &str) -> Result<Lease> {
        Self::acquire_with(coord, ttl, what, Fence::closed()).await
    }

    /// Acquires a lease on `fence`, retrying with jittered backoff (from
    /// [`LEASE_RETRY_FIRST`] to [`crate::backoff::COORD_RETRY_MAX`]) while
    /// the store refuses, each failure logged once with the next delay;
    /// `None` once `stop` fires. The loop the controller and the worker
    /// share.
    pub async fn acquire_retrying(
        coord: &Coord,
        ttl: Duration,
        what: &str,
        fence: Fence,
        stop: &CancellationToken,
    ) -> Option<Lease> {
        let mut retry =
            crate::backoff::Backoff::new(LEASE_RETRY_FIRST, crate::backoff::COORD_RETRY_MAX);
        loop {
            if stop.is_cancelled() {
                return None;
            }
            match Self::acquire_with(coord, ttl, what, fence.clone()).await {
                Ok(lease) => return Some(lease),
                Err(e) => {
                    let delay = retry.next_delay();
                    tracing::warn!(error = %e, store = %coord.describe(), retry_in = ?delay, role = what, "cannot get a lease; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.cancelled() => return None,
                    }
                }
            }
        }
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
        // The term this lease opens, extends and closes: its own only.
        let own = fence.ticket();
        let id = coord.grant(ttl).await?;
        own.open_until(sent + usable(ttl));
        let lease = Lease {
            id,
            ttl,
            own: own.clone(),
            fence: fence.clone(),
            lost: CancellationToken::new(),
            stop: CancellationToken::new(),
        };
        info!(lease = format!("{id:x}"), ttl = ?ttl, "{what}: lease granted");
        tokio::spawn(keep_alive(
            coord.clone(),
            id,
            ttl,
            own,
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
        self.own.close_own();
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
    fence.close_own();
    lost.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiting_for_the_fence_wakes_when_a_lease_opens_it() {
        let f = Fence::closed();
        // Polled first, so it is waiting (registered) when the lease opens.
        let mut waiting = Box::pin(f.opened());
        let quiet = tokio::time::timeout(Duration::from_millis(50), &mut waiting).await;
        assert!(quiet.is_err(), "closed: it waits");
        let opened = Instant::now();
        f.open_until(opened + Duration::from_secs(10));
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken");
        assert!(opened.elapsed() < Duration::from_millis(500));
        // Open already: at once.
        tokio::time::timeout(Duration::from_millis(50), f.opened())
            .await
            .expect("open");
    }

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

    #[test]
    fn a_ticket_stays_closed_once_its_term_closed_whatever_opens_the_fence_later() {
        let f = Fence::closed();
        let in_an_hour = Instant::now() + Duration::from_secs(3600);
        let lease1 = f.term();
        f.extend(lease1, in_an_hour);
        let session1 = f.ticket();
        assert!(session1.is_open());
        assert!(session1.remaining() > Duration::from_secs(3000));
        // Lease 1 is lost; lease 2 opens the fence again.
        f.close_term(lease1);
        let lease2 = f.term();
        assert_ne!(lease2, lease1);
        f.extend(lease2, in_an_hour);
        assert!(f.is_open(), "the fence itself follows the new lease");
        assert!(
            !session1.is_open(),
            "the old session's ticket never reopens"
        );
        assert_eq!(session1.remaining(), Duration::ZERO);
        assert!(f.ticket().is_open(), "a new session's ticket is open");
        // A late renewal of lease 1, or its keep-alive ending late, touches
        // nothing of lease 2.
        f.extend(lease1, in_an_hour + Duration::from_secs(60));
        f.close_term(lease1);
        assert!(f.is_open());
        assert!(f.remaining() < Duration::from_secs(3601));
        // Extending a ticket extends its own term only.
        session1.open_until(in_an_hour + Duration::from_secs(600));
        assert!(f.remaining() < Duration::from_secs(3601));
    }

    #[test]
    fn an_always_open_fence_stays_open_and_a_closed_one_opens_for_its_term() {
        let f = Fence::always_open();
        assert!(f.is_open() && f.ticket().is_open());
        let f = Fence::closed();
        f.open_until(Instant::now() + Duration::from_secs(5));
        assert!(f.is_open());
        f.close();
        assert!(!f.is_open());
    }
}
