//! Retry delays that grow and spread: exponential from a base to a cap, with
//! "equal jitter" (half the step fixed, half random). A fleet of workers that
//! lost the same target or coordination store then retries spread out over
//! time instead of in lockstep, and never faster than half a step.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

/// The longest wait between two attempts to reach the coordination store
/// (a lease, a listing): short against a lease TTL, long enough that a
/// fleet does not hammer a store that is down.
pub const COORD_RETRY_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
    rng: StdRng,
}

impl Backoff {
    /// Delays from `base` doubling up to `cap`, seeded from the OS.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self::with_rng(base, cap, StdRng::from_os_rng())
    }

    /// The same with a fixed seed, for tests and replay.
    pub fn seeded(base: Duration, cap: Duration, seed: u64) -> Self {
        Self::with_rng(base, cap, StdRng::seed_from_u64(seed))
    }

    fn with_rng(base: Duration, cap: Duration, rng: StdRng) -> Self {
        Backoff {
            base,
            cap: cap.max(base),
            attempt: 0,
            rng,
        }
    }

    /// The delay before the next retry: the step is `base * 2^attempts`
    /// capped at `cap`; the delay is half the step plus a random part of
    /// the other half.
    pub fn next_delay(&mut self) -> Duration {
        let step = self
            .base
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let half = step / 2;
        let spread = (step - half).as_micros() as u64;
        half + Duration::from_micros(self.rng.random_range(0..=spread))
    }

    /// Back to the base after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Retries since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delays_grow_to_the_cap_and_stay_within_half_a_step() {
        let mut b = Backoff::seeded(100 * MS, 1000 * MS, 7);
        let steps = [100, 200, 400, 800, 1000, 1000, 1000];
        for step in steps {
            let d = b.next_delay();
            let step = step * MS;
            assert!(
                d >= step / 2 && d <= step,
                "{d:?} outside {:?}..={step:?}",
                step / 2
            );
        }
        b.reset();
        assert!(
            b.next_delay() <= 100 * MS,
            "reset starts from the base again"
        );
    }

    #[test]
    fn a_seed_replays_the_same_delays_and_seeds_spread_them() {
        let delays = |seed| {
            let mut b = Backoff::seeded(1000 * MS, 30_000 * MS, seed);
            (0..8).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(delays(1), delays(1));
        // Ten workers retrying the same outage do not all wait the same.
        let firsts: std::collections::BTreeSet<Duration> =
            (0..10).map(|seed| delays(seed)[0]).collect();
        assert!(firsts.len() > 5, "first delays of 10 seeds: {firsts:?}");
    }

    #[test]
    fn a_huge_number_of_attempts_does_not_overflow() {
        let mut b = Backoff::seeded(MS, Duration::from_secs(60), 3);
        for _ in 0..100 {
            assert!(b.next_delay() <= Duration::from_secs(60));
        }
        assert_eq!(b.attempts(), 100);
    }
}
