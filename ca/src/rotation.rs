//! When to renew a certificate: at a fraction of its lifetime (50 % by default), moved
//! by jitter so that a fleet issued together does not renew together. Pure: the caller
//! passes `now` and the random sample.

use std::time::{Duration, SystemTime};

/// How renewal times are chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RenewalPolicy {
    /// Fraction of the lifetime after which to renew (0.5 = half-life).
    pub at_fraction: f64,
    /// Width of the jitter window as a fraction of the lifetime, centred on
    /// `at_fraction` (0.1 renews between 45 % and 55 %).
    pub jitter_fraction: f64,
}

impl Default for RenewalPolicy {
    fn default() -> Self {
        Self {
            at_fraction: 0.5,
            jitter_fraction: 0.1,
        }
    }
}

/// Why a [`RenewalPolicy`] cannot plan renewals.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RenewalPolicyError {
    /// `at_fraction` is not strictly between 0 and 1.
    #[error("at_fraction {0} must be between 0 and 1")]
    AtFraction(f64),
    /// The jitter window is negative or leaves the lifetime.
    #[error("jitter_fraction {0} must be at least 0 and keep the window inside the lifetime")]
    JitterFraction(f64),
}

/// Where a certificate stands at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewalState {
    /// Not due yet; renew after `wait`.
    Scheduled,
    /// The renewal time has passed; renew now.
    Due,
    /// The certificate has expired; renew now and stop using it.
    Expired,
}

/// The renewal plan of one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewalPlan {
    /// When to renew.
    pub renew_at: SystemTime,
    /// How long from `now` until then (zero when due or expired).
    pub wait: Duration,
    /// Scheduled, due or expired.
    pub state: RenewalState,
}

impl RenewalPolicy {
    /// Checks the fractions: `at_fraction` in (0, 1), the jitter window inside the
    /// lifetime.
    pub fn validate(self) -> Result<Self, RenewalPolicyError> {
        if !(self.at_fraction > 0.0 && self.at_fraction < 1.0) {
            return Err(RenewalPolicyError::AtFraction(self.at_fraction));
        }
        let half = self.jitter_fraction / 2.0;
        if !(self.jitter_fraction >= 0.0
            && self.at_fraction - half > 0.0
            && self.at_fraction + half < 1.0)
        {
            return Err(RenewalPolicyError::JitterFraction(self.jitter_fraction));
        }
        Ok(self)
    }

    /// Plans the renewal of a certificate valid from `not_before` to `not_after`.
    /// `sample` is a uniformly random `u64`; the same sample gives the same plan.
    pub fn plan(
        &self,
        not_before: SystemTime,
        not_after: SystemTime,
        now: SystemTime,
        sample: u64,
    ) -> RenewalPlan {
        let lifetime = not_after.duration_since(not_before).unwrap_or_default();
        let unit = sample as f64 / u64::MAX as f64; // in [0, 1]
        let fraction = self.at_fraction + self.jitter_fraction * (unit - 0.5);
        let renew_at = not_before + lifetime.mul_f64(fraction.clamp(0.0, 1.0));
        let state = if now >= not_after {
            RenewalState::Expired
        } else if now >= renew_at {
            RenewalState::Due
        } else {
            RenewalState::Scheduled
        };
        RenewalPlan {
            renew_at,
            wait: renew_at.duration_since(now).unwrap_or_default(),
            state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const HOUR: Duration = Duration::from_secs(3600);

    fn at(hours: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000) + HOUR * hours as u32
    }

    #[test]
    fn renews_at_half_life_without_jitter() {
        let policy = RenewalPolicy {
            at_fraction: 0.5,
            jitter_fraction: 0.0,
        };
        let plan = policy.plan(at(0), at(24), at(1), 12345);
        assert_eq!(plan.renew_at, at(12));
        assert_eq!(plan.wait, HOUR * 11);
        assert_eq!(plan.state, RenewalState::Scheduled);
    }

    #[test]
    fn jitter_stays_inside_its_window_and_spreads() {
        let policy = RenewalPolicy::default();
        let (low, high) = (
            at(0) + HOUR.mul_f64(24.0 * 0.45),
            at(0) + HOUR.mul_f64(24.0 * 0.55),
        );
        let mut seen = std::collections::BTreeSet::new();
        for sample in [0, 1, u64::MAX / 4, u64::MAX / 2, u64::MAX / 4 * 3, u64::MAX] {
            let plan = policy.plan(at(0), at(24), at(0), sample);
            assert!(plan.renew_at >= low && plan.renew_at <= high, "{sample}");
            seen.insert(plan.renew_at);
        }
        assert!(seen.len() >= 5, "jitter should spread renewals: {seen:?}");
        assert_eq!(policy.plan(at(0), at(24), at(0), 0).renew_at, low);
        assert_eq!(policy.plan(at(0), at(24), at(0), u64::MAX).renew_at, high);
    }

    #[test]
    fn same_sample_same_plan() {
        let policy = RenewalPolicy::default();
        assert_eq!(
            policy.plan(at(0), at(24), at(3), 42),
            policy.plan(at(0), at(24), at(3), 42)
        );
    }

    #[test]
    fn due_after_the_renewal_time_and_expired_after_the_end() {
        let policy = RenewalPolicy::default();
        let due = policy.plan(at(0), at(24), at(20), u64::MAX);
        assert_eq!(due.state, RenewalState::Due);
        assert_eq!(due.wait, Duration::ZERO);
        let expired = policy.plan(at(0), at(24), at(24), 0);
        assert_eq!(expired.state, RenewalState::Expired);
        assert_eq!(expired.wait, Duration::ZERO);
    }

    #[test]
    fn a_certificate_from_the_future_waits_from_its_start() {
        // Clock skew: the certificate starts after `now`; renewal still counts from not_before.
        let plan = RenewalPolicy::default().plan(at(10), at(34), at(9), u64::MAX / 2);
        assert_eq!(plan.state, RenewalState::Scheduled);
        let expected = at(10) + HOUR * 12;
        let diff = plan
            .renew_at
            .duration_since(expected)
            .unwrap_or_else(|e| e.duration());
        assert!(diff < Duration::from_secs(1), "{diff:?}");
        assert!(plan.wait > HOUR * 12);
    }

    #[test]
    fn zero_lifetime_is_expired_at_once() {
        let plan = RenewalPolicy::default().plan(at(5), at(5), at(5), 7);
        assert_eq!(plan.state, RenewalState::Expired);
    }

    #[test]
    fn validate_refuses_windows_outside_the_lifetime() {
        assert!(RenewalPolicy::default().validate().is_ok());
        for (at_fraction, jitter_fraction) in [
            (0.0, 0.1),
            (1.0, 0.1),
            (0.5, -0.1),
            (0.9, 0.3),
            (0.5, f64::NAN),
        ] {
            let policy = RenewalPolicy {
                at_fraction,
                jitter_fraction,
            };
            assert!(policy.validate().is_err(), "{policy:?}");
        }
    }
}
