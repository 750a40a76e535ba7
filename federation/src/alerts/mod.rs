//! Alerts on changes of the mesh's security status, as the federation will evaluate
//! them (issue 14; the evaluation loop on the leader and the delivery to the UI, a
//! metric, webhooks and Alertmanager come next). Pure: [`rules`] says which conditions
//! hold in a picture of the mesh; [`state`] turns the conditions seen over time into
//! alerts that go pending, fire and resolve the way Prometheus's do — a `for` before an
//! alert fires, and a `keep_firing_for` before it resolves, so that one missed report
//! does not make it flap. Alert names and severities are those of
//! `docs/alerts/isthmus.rules.yml` where the rule file has the alert.

pub mod rules;
pub mod state;
