//! Versions, timestamps and HTTP validators: `meta.versionId`/`meta.lastUpdated` in the
//! body, `ETag`, `Last-Modified`, and parsing of `If-Match`/`If-Modified-Since`.

use jiff::Timestamp;
use serde_json::{Map, Value};

/// Now, in microseconds since the epoch.
pub fn now_micros() -> i64 {
    Timestamp::now().as_microsecond()
}

/// FHIR instant text for a microsecond timestamp.
pub fn instant(micros: i64) -> String {
    Timestamp::from_microsecond(micros).map(|t| t.to_string()).unwrap_or_default()
}

/// HTTP-date (RFC 9110) for a microsecond timestamp.
pub fn http_date(micros: i64) -> String {
    Timestamp::from_microsecond(micros).map(|t| t.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string()).unwrap_or_default()
}

/// Parse an HTTP-date header into microseconds.
pub fn parse_http_date(s: &str) -> Option<i64> {
    jiff::fmt::rfc2822::parse(s.trim()).ok().map(|z| z.timestamp().as_microsecond())
}

/// Parse a FHIR instant or date (`_since`) into microseconds.
pub fn parse_instant(s: &str) -> Option<i64> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Some(t.as_microsecond());
    }
    search::normalize::date_range(s).map(|(low, _)| low * 1000)
}

/// `W/"3"`
pub fn etag(version: u64) -> String {
    format!("W/\"{version}\"")
}

/// The version named by an `If-Match` / `If-None-Match` value (`W/"3"`, `"3"` or `3`).
pub fn parse_etag(s: &str) -> Option<u64> {
    s.trim().trim_start_matches("W/").trim_matches('"').parse().ok()
}

/// Set `meta.versionId` and `meta.lastUpdated`, keeping the rest of `meta` (tags,
/// profiles, security labels) as the client sent it.
pub fn stamp(resource: &mut Value, version: u64, last_updated: i64) {
    let Some(obj) = resource.as_object_mut() else {
        return;
    };
    let meta = obj.entry("meta").or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    if let Some(m) = meta.as_object_mut() {
        m.insert("versionId".into(), Value::String(version.to_string()));
        m.insert("lastUpdated".into(), Value::String(instant(last_updated)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip() {
        let t = 1_700_000_000_123_456;
        assert_eq!(instant(t), "2023-11-14T22:13:20.123456Z");
        assert_eq!(http_date(t), "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(parse_http_date("Tue, 14 Nov 2023 22:13:20 GMT"), Some(1_700_000_000_000_000));
        assert_eq!(parse_etag("W/\"12\""), Some(12));
        assert_eq!(parse_instant("2023-11-14T22:13:20.123456Z"), Some(t));
    }
}
