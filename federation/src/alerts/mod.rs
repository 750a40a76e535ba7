//! Alerts on changes of the mesh's security status, evaluated by every federation node
//! on its own picture ([`engine`]; every gateway reports to every node) and delivered by
//! the leader alone as a metric, to webhooks and to Alertmanagers ([`deliver`]); held for
//! the API and the UI by [`book`]; configured by `[alerts]` ([`config`]). Pure: [`rules`] says which conditions
//! hold in a picture of the mesh; [`state`] turns the conditions seen over time into
//! alerts that go pending, fire and resolve the way Prometheus's do — a `for` before an
//! alert fires, and a `keep_firing_for` before it resolves, so that one missed report
//! does not make it flap. Alert names and severities are those of
//! `docs/alerts/isthmus.rules.yml` where the rule file has the alert.

pub mod book;
pub mod config;
pub mod deliver;
pub mod engine;
pub mod rules;
pub mod state;
