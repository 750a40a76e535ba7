//! Alerts over time: conditions seen at each evaluation become alerts that are pending
//! until their condition has held for its `hold`, then fire, and resolve once the
//! condition has been absent for `keep_firing_for` (one missed report, one quiet
//! evaluation, does not resolve and re-fire an alert). Pure: takes `now` (monotonic)
//! and `unix` (for the alerts' `startsAt` / `endsAt`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::rules::{Condition, Severity};

/// An alert as delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// Its name.
    pub alertname: &'static str,
    /// How urgent.
    pub severity: Severity,
    /// What it is about.
    pub labels: BTreeMap<String, String>,
    /// One line for a person.
    pub summary: String,
    /// Unix seconds when it fired.
    pub starts_at: i64,
    /// Unix seconds when it resolved.
    pub ends_at: Option<i64>,
    /// The mesh edge it is about.
    pub edge: Option<String>,
}

/// A change to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// It fires.
    Firing(Alert),
    /// It resolved.
    Resolved(Alert),
}

type Key = (&'static str, BTreeMap<String, String>);

#[derive(Debug, Clone)]
struct Tracked {
    condition: Condition,
    since: Instant,
    last_seen: Instant,
    firing: Option<i64>,
}

/// Every alert pending or firing.
#[derive(Debug, Default)]
pub struct Tracker {
    alerts: BTreeMap<Key, Tracked>,
}

impl Tracker {
    /// Takes the conditions of one evaluation and returns what fired and resolved.
    pub fn observe(
        &mut self,
        conditions: Vec<Condition>,
        now: Instant,
        unix: i64,
        keep_firing_for: Duration,
    ) -> Vec<Transition> {
        let mut out = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for condition in conditions {
            let key = (condition.alertname, condition.labels.clone());
            seen.insert(key.clone());
            let tracked = self.alerts.entry(key).or_insert_with(|| Tracked {
                condition: condition.clone(),
                since: now,
                last_seen: now,
                firing: None,
            });
            tracked.last_seen = now;
            tracked.condition.summary = condition.summary;
            if tracked.firing.is_none()
                && now.saturating_duration_since(tracked.since) >= condition.hold
            {
                tracked.firing = Some(unix);
                out.push(Transition::Firing(alert(tracked, None)));
            }
        }
        self.alerts.retain(|key, tracked| {
            if seen.contains(key) {
                return true;
            }
            match tracked.firing {
                // A pending alert whose condition went away starts over.
                None => false,
                Some(_) if now.saturating_duration_since(tracked.last_seen) >= keep_firing_for => {
                    out.push(Transition::Resolved(alert(tracked, Some(unix))));
                    false
                }
                Some(_) => true,
            }
        });
        out
    }

    /// The alerts firing now.
    pub fn firing(&self) -> Vec<Alert> {
        self.alerts
            .values()
            .filter(|t| t.firing.is_some())
            .map(|t| alert(t, None))
            .collect()
    }
}

fn alert(tracked: &Tracked, ends_at: Option<i64>) -> Alert {
    Alert {
        alertname: tracked.condition.alertname,
        severity: tracked.condition.severity,
        labels: tracked.condition.labels.clone(),
        summary: tracked.condition.summary.clone(),
        starts_at: tracked.firing.unwrap_or_default(),
        ends_at,
        edge: tracked.condition.edge.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lost(hold: Duration) -> Condition {
        Condition {
            alertname: "IsthmusGatewayLost",
            severity: Severity::Critical,
            labels: [("cluster".to_owned(), "west".to_owned())].into(),
            summary: "lost".into(),
            hold,
            edge: None,
        }
    }

    const KEEP: Duration = Duration::from_secs(10);

    #[test]
    fn pending_then_firing_then_resolved_without_flapping_on_one_quiet_evaluation() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut tracker = Tracker::default();
        assert!(
            tracker.observe(vec![lost(s(5))], t0, 100, KEEP).is_empty(),
            "pending"
        );
        assert!(
            tracker
                .observe(vec![lost(s(5))], t0 + s(3), 103, KEEP)
                .is_empty()
        );
        let fired = tracker.observe(vec![lost(s(5))], t0 + s(5), 105, KEEP);
        assert!(matches!(&fired[..], [Transition::Firing(a)] if a.starts_at == 105));
        assert_eq!(tracker.firing().len(), 1);
        // One evaluation without the condition: still firing, not resolved.
        assert!(tracker.observe(vec![], t0 + s(6), 106, KEEP).is_empty());
        assert!(
            tracker
                .observe(vec![lost(s(5))], t0 + s(7), 107, KEEP)
                .is_empty(),
            "no second firing"
        );
        // Gone for keep_firing_for: resolved, with its start and end.
        assert!(tracker.observe(vec![], t0 + s(12), 112, KEEP).is_empty());
        let resolved = tracker.observe(vec![], t0 + s(17), 117, KEEP);
        assert!(matches!(&resolved[..],
            [Transition::Resolved(a)] if a.starts_at == 105 && a.ends_at == Some(117)));
        assert!(tracker.firing().is_empty());
    }

    #[test]
    fn a_pending_alert_whose_condition_goes_away_starts_over() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut tracker = Tracker::default();
        tracker.observe(vec![lost(s(5))], t0, 0, KEEP);
        assert!(
            tracker.observe(vec![], t0 + s(3), 3, KEEP).is_empty(),
            "a pending alert resolves silently"
        );
        assert!(
            tracker
                .observe(vec![lost(s(5))], t0 + s(4), 4, KEEP)
                .is_empty()
        );
        assert!(
            tracker
                .observe(vec![lost(s(5))], t0 + s(8), 8, KEEP)
                .is_empty(),
            "held 4 s of 5 since it came back"
        );
        assert_eq!(
            tracker.observe(vec![lost(s(5))], t0 + s(9), 9, KEEP).len(),
            1
        );
    }
}
