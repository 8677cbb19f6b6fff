//! Normalisation of values for indexing and matching: strings folded to lower case
//! without accents (Cyrillic `ё`/`й` fold to `е`/`и`, as NFD decomposition gives),
//! dates turned into the instant range their precision implies.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Lower-case, accent-free form used for string search (`Ёлкин` -> `елкин`).
pub fn fold(s: &str) -> String {
    s.nfd().filter(|c| !is_combining_mark(*c)).flat_map(char::to_lowercase).collect()
}

/// The range `[low, high]` in milliseconds since the epoch that a FHIR date, dateTime or
/// instant covers at its precision (`2024` is the whole year). Values without a zone are
/// taken as UTC. `None` if the text is not a date.
pub fn date_range(s: &str) -> Option<(i64, i64)> {
    let utc = |dt: DateTime| TimeZone::UTC.to_timestamp(dt).ok().map(|t| t.as_millisecond());
    let (date_part, time_part) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let parts: Vec<&str> = date_part.split('-').collect();
    let num = |i: usize| parts.get(i).and_then(|p| p.parse::<i16>().ok());
    let year = num(0)?;
    if parts.first().map(|p| p.len()) != Some(4) {
        return None;
    }
    match (parts.len(), time_part) {
        (1, None) => {
            let start = Date::new(year, 1, 1).ok()?;
            let end = Date::new(year, 12, 31).ok()?;
            Some((utc(start.at(0, 0, 0, 0))?, utc(end.at(23, 59, 59, 999_000_000))?))
        }
        (2, None) => {
            let start = Date::new(year, num(1)? as i8, 1).ok()?;
            let end = start.last_of_month();
            Some((utc(start.at(0, 0, 0, 0))?, utc(end.at(23, 59, 59, 999_000_000))?))
        }
        (3, None) => {
            let d = Date::new(year, num(1)? as i8, num(2)? as i8).ok()?;
            Some((utc(d.at(0, 0, 0, 0))?, utc(d.at(23, 59, 59, 999_000_000))?))
        }
        (3, Some(t)) => {
            let ts: jiff::Timestamp = if t.ends_with('Z') || t.contains(['+', '-']) {
                s.parse().ok()?
            } else {
                let dt: DateTime = s.parse().ok()?;
                TimeZone::UTC.to_timestamp(dt).ok()?
            };
            let ms = ts.as_millisecond();
            // seconds precision covers the whole second, minutes the whole minute, an hour
            // alone (`T05`, not FHIR's own precision, but unambiguous) the whole hour
            let time = t.trim_end_matches('Z');
            let time = time.split(['+', '-']).next().unwrap_or(time);
            let width = match time.split(':').count() {
                1 if !time.contains('.') => 3_599_999,
                2 => 59_999,
                _ if time.contains('.') => 0,
                _ => 999,
            };
            Some((ms, ms + width))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_alone_is_the_whole_hour() {
        let (low, high) = date_range("2026-12-14T05").unwrap();
        assert_eq!(high - low, 3_599_999);
        assert_eq!(date_range("2026-12-14T05:00").map(|(l, h)| h - l), Some(59_999));
    }

    #[test]
    fn folding() {
        assert_eq!(fold("Ёлкин Йосиф"), "елкин иосиф");
        assert_eq!(fold("Zoë ÅSTRÖM"), "zoe astrom");
    }

    #[test]
    fn date_precision_is_a_range() {
        let (a, b) = date_range("2024").unwrap();
        assert_eq!(b - a, 366 * 86_400_000 - 1);
        let (a, b) = date_range("2024-02").unwrap();
        assert_eq!(b - a, 29 * 86_400_000 - 1);
        let (a, b) = date_range("2024-02-03T10:00:00+03:00").unwrap();
        assert_eq!(b - a, 999);
        assert_eq!(a, date_range("2024-02-03T07:00:00Z").unwrap().0);
        assert!(date_range("20x4").is_none());
    }
}
