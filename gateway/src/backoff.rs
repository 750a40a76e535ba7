//! Exponential backoff, one type for every retry of the gateway (peer dials, the
//! federation watch): after the n-th failure in a row wait `start · 2ⁿ⁻¹`, never more
//! than `max`. Pure; the caller keeps the count and the clock.

use std::time::Duration;

/// A backoff schedule, checked when it is made: `start` is positive and at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    start: Duration,
    max: Duration,
}

impl Backoff {
    /// A schedule from `start` doubling up to `max`. In a `const` it is checked at
    /// compile time.
    pub const fn new(start: Duration, max: Duration) -> Self {
        assert!(!start.is_zero(), "a backoff starts above zero");
        assert!(
            start.as_nanos() <= max.as_nanos(),
            "a backoff starts at most at its maximum"
        );
        Self { start, max }
    }

    /// The wait after `failures` failures in a row (none: no wait).
    pub fn delay(&self, failures: u32) -> Duration {
        let Some(doublings) = failures.checked_sub(1) else {
            return Duration::ZERO;
        };
        // 2^32 × start already exceeds any sane maximum; stop doubling there.
        let factor = 1u64 << doublings.min(32);
        let nanos = self.start.as_nanos().saturating_mul(u128::from(factor));
        if nanos >= self.max.as_nanos() {
            self.max
        } else {
            // Below `max`, so it fits a Duration.
            Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
        }
    }
}

/// Failures of one thing in a row under a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    backoff: Backoff,
    failures: u32,
}

impl Retry {
    /// No failure yet.
    pub const fn new(backoff: Backoff) -> Self {
        Self {
            backoff,
            failures: 0,
        }
    }

    /// One more failure; the wait before the next attempt.
    pub fn failed(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.backoff.delay(self.failures)
    }

    /// A success: the next failure starts the schedule over.
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn every_schedule_doubles_from_its_start_and_never_passes_its_maximum() {
        for (start, max) in [(1, 1), (1, 7), (100, 10_000), (3, 1_000_000), (250, 5_000)] {
            let b = Backoff::new(start * MS, max * MS);
            assert_eq!(b.delay(0), Duration::ZERO);
            assert_eq!(b.delay(1), start * MS);
            let mut last = Duration::ZERO;
            for failures in 1..200 {
                let d = b.delay(failures);
                assert!(d >= last, "{start}/{max}: shrank at {failures}");
                assert!(
                    d <= max * MS,
                    "{start}/{max}: past the maximum at {failures}"
                );
                assert!(
                    d == max * MS || d == 2 * last || failures == 1,
                    "{start}/{max}"
                );
                last = d;
            }
            assert_eq!(b.delay(u32::MAX), max * MS, "no overflow");
        }
    }

    #[test]
    fn a_success_starts_the_schedule_over() {
        let mut r = Retry::new(Backoff::new(100 * MS, 10_000 * MS));
        assert_eq!(
            [r.failed(), r.failed(), r.failed()],
            [100 * MS, 200 * MS, 400 * MS]
        );
        assert_eq!(r.failures(), 3);
        r.succeeded();
        assert_eq!(r.failed(), 100 * MS);
    }

    #[test]
    #[should_panic(expected = "at most at its maximum")]
    fn a_start_above_the_maximum_is_refused() {
        let _ = Backoff::new(2 * MS, MS);
    }
}
