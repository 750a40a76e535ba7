//! Conversions between the clock types the CA meets: `SystemTime` (our API),
//! `OffsetDateTime` (rcgen), and seconds since the Unix epoch (x509-parser, rustls).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339 as Rfc3339Format;

use crate::error::CaError;

/// Seconds since the Unix epoch, negative before it.
pub fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// The `SystemTime` of a Unix timestamp.
pub fn from_unix_seconds(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// `t` as rcgen wants it; refuses instants outside the years X.509 can encode.
pub(crate) fn to_offset(t: SystemTime) -> Result<OffsetDateTime, CaError> {
    OffsetDateTime::from_unix_timestamp(unix_seconds(t))
        .ok()
        .filter(|t| (1950..=9999).contains(&t.year()))
        .ok_or_else(|| {
            CaError::BadLifetime("the validity period leaves the years 1950-9999".into())
        })
}

/// Displays a `SystemTime` as RFC 3339 in UTC, to the second.
#[derive(Debug, Clone, Copy)]
pub struct Rfc3339(pub SystemTime);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = OffsetDateTime::from_unix_timestamp(unix_seconds(self.0))
            .ok()
            .and_then(|t| t.format(&Rfc3339Format).ok());
        match text {
            Some(text) => f.write_str(&text),
            None => write!(f, "@{}", unix_seconds(self.0)),
        }
    }
}

/// Parses an RFC 3339 timestamp such as `2026-01-02T03:04:05Z`.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let t = OffsetDateTime::parse(text, &Rfc3339Format).ok()?;
    Some(from_unix_seconds(t.unix_timestamp()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_unix_seconds_and_text() {
        for secs in [-86_400, 0, 1_700_000_000] {
            let t = from_unix_seconds(secs);
            assert_eq!(unix_seconds(t), secs);
            assert_eq!(parse_rfc3339(&Rfc3339(t).to_string()), Some(t));
        }
        assert_eq!(Rfc3339(UNIX_EPOCH).to_string(), "1970-01-01T00:00:00Z");
    }
}
