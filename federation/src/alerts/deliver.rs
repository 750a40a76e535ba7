//! Alerts on the wire: Alertmanager's API v2 (`POST /api/v2/alerts`, a JSON array of
//! alerts with `startsAt` and `endsAt`) and its webhook format, version 4 — the bodies
//! (pure) and one HTTP/1.1 POST (plain HTTP, bounded in time).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use super::config::Target;
use super::state::Alert;

/// How long one delivery may take.
const TIMEOUT: Duration = Duration::from_secs(5);

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

/// The alert's labels with its name and severity among them.
fn labels(alert: &Alert) -> serde_json::Map<String, Value> {
    let mut labels: serde_json::Map<String, Value> = alert
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    labels.insert("alertname".into(), alert.alertname.into());
    labels.insert("severity".into(), alert.severity.as_str().into());
    labels
}

/// Alertmanager's fingerprint of a label set: FNV-1a 64 over the sorted pairs.
fn fingerprint(labels: &serde_json::Map<String, Value>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut keys: Vec<&String> = labels.keys().collect();
    keys.sort();
    for k in keys {
        let v = labels[k].as_str().unwrap_or_default();
        for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xff]) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// The API v2 body for `alerts`: a firing alert ends `resend_for` from `now` unless it
/// is sent again (so an Alertmanager that stops hearing from the federation resolves
/// it); a resolved one carries its end.
pub fn alertmanager_body(alerts: &[Alert], now: i64, resend_for: Duration) -> Value {
    let hold = i64::try_from(resend_for.as_secs()).unwrap_or(i64::MAX);
    Value::Array(
        alerts
            .iter()
            .map(|a| {
                json!({
                    "labels": labels(a),
                    "annotations": { "summary": a.summary },
                    "startsAt": rfc3339(a.starts_at),
                    "endsAt": rfc3339(a.ends_at.unwrap_or(now.saturating_add(hold))),
                })
            })
            .collect(),
    )
}

/// The webhook body (version 4) for one change of `alerts`.
pub fn webhook_body(alerts: &[Alert]) -> Value {
    let firing = alerts.iter().any(|a| a.ends_at.is_none());
    let items: Vec<Value> = alerts
        .iter()
        .map(|a| {
            let labels = labels(a);
            json!({
                "status": if a.ends_at.is_none() { "firing" } else { "resolved" },
                "fingerprint": fingerprint(&labels),
                "labels": labels,
                "annotations": { "summary": a.summary },
                "startsAt": rfc3339(a.starts_at),
                "endsAt": a.ends_at.map_or_else(|| "0001-01-01T00:00:00Z".to_owned(), rfc3339),
                "generatorURL": "",
            })
        })
        .collect();
    json!({
        "version": "4",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
        "status": if firing { "firing" } else { "resolved" },
        "receiver": "isthmus",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "",
        "alerts": items,
    })
}

/// POSTs `body` as JSON to `target` (at `path` when given, else the target's own).
pub async fn post(target: &Target, path: Option<&str>, body: &Value) -> Result<(), String> {
    let path = path.unwrap_or(&target.path).to_owned();
    let body = Bytes::from(body.to_string());
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(&target.authority)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = hyper::Request::post(path)
            .header(hyper::header::HOST, &target.authority)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let _ = response.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("answered {status}"))
        }
    };
    tokio::time::timeout(TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {TIMEOUT:?}"))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::rules::Severity;

    fn alert(ends_at: Option<i64>) -> Alert {
        Alert {
            alertname: "IsthmusGatewayLost",
            severity: Severity::Critical,
            labels: [("cluster".to_owned(), "west".to_owned())].into(),
            summary: "The gateway west/ew is lost".into(),
            starts_at: 1_764_633_600,
            ends_at,
            edge: None,
        }
    }

    #[test]
    fn the_bodies_are_alertmanagers_own() {
        let am = alertmanager_body(&[alert(None)], 1_764_633_660, Duration::from_secs(240));
        assert_eq!(am[0]["labels"]["alertname"], "IsthmusGatewayLost");
        assert_eq!(am[0]["labels"]["severity"], "critical");
        assert_eq!(am[0]["labels"]["cluster"], "west");
        assert_eq!(am[0]["startsAt"], "2025-12-02T00:00:00Z");
        assert_eq!(am[0]["endsAt"], "2025-12-02T00:05:00Z");
        let hook = webhook_body(&[alert(Some(1_764_633_720))]);
        assert_eq!(hook["version"], "4");
        assert_eq!(hook["status"], "resolved");
        assert_eq!(hook["alerts"][0]["status"], "resolved");
        assert_eq!(hook["alerts"][0]["endsAt"], "2025-12-02T00:02:00Z");
        assert_eq!(
            hook["alerts"][0]["fingerprint"].as_str().map(str::len),
            Some(16)
        );
    }
}
