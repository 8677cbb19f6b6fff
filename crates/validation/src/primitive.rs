//! Grammars of the FHIR primitive types (the regular expressions of the specification,
//! written out by hand so that no regex engine is needed on the write path).

use serde_json::Value;

/// Check a JSON value against a primitive type; `Err` says what is wrong in words.
pub fn check_primitive(type_code: &str, value: &Value) -> Result<(), String> {
    match type_code {
        "boolean" => value.is_boolean().then_some(()).ok_or_else(|| expected("a JSON boolean", value)),
        "integer" | "positiveInt" | "unsignedInt" => {
            let n = value
                .as_number()
                .filter(|n| !n.to_string().contains(['.', 'e', 'E']))
                .and_then(|n| n.to_string().parse::<i64>().ok())
                .ok_or_else(|| expected("a JSON integer", value))?;
            let (lo, what) = match type_code {
                "positiveInt" => (1, "a positive integer"),
                "unsignedInt" => (0, "a non-negative integer"),
                _ => (i64::from(i32::MIN), "a 32-bit integer"),
            };
            if n < lo || n > i64::from(i32::MAX) {
                return Err(format!("{n} is not {what}"));
            }
            Ok(())
        }
        "decimal" => value.is_number().then_some(()).ok_or_else(|| expected("a JSON number", value)),
        _ => {
            let s = value.as_str().ok_or_else(|| expected("a JSON string", value))?;
            check_string(type_code, s)
        }
    }
}

fn expected(what: &str, value: &Value) -> String {
    let got = match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    format!("Expected {what} but found {got}")
}

fn check_string(type_code: &str, s: &str) -> Result<(), String> {
    let bad = |what: &str| Err(format!("'{}' is not a valid {type_code} ({what})", truncate(s)));
    if s.is_empty() {
        return Err(format!("An empty string is not a valid {type_code}; omit the element instead"));
    }
    match type_code {
        "string" | "markdown" => {
            if s.len() > 1024 * 1024 {
                return Err(format!("The {type_code} is longer than the permitted maximum of 1 MiB"));
            }
            if s.trim().is_empty() {
                return bad("whitespace only");
            }
            if s.chars().any(|c| c < ' ' && !matches!(c, '\r' | '\n' | '\t')) {
                return bad("contains control characters below U+0020");
            }
        }
        "code" => {
            // the grammar's \s is ASCII whitespace (Java regex semantics)
            let ws = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c');
            if s.trim_matches(ws) != s || s.contains("  ") || s.contains(['\t', '\n', '\r', '\x0b', '\x0c']) {
                return bad("codes have no leading, trailing or repeated whitespace");
            }
        }
        "id" if !fhir_model::is_valid_id(s) => {
            return bad("1 to 64 of A-Z a-z 0-9 - .");
        }
        "uri" | "url" | "canonical" => {
            if s.chars().any(char::is_whitespace) {
                return bad("URIs contain no whitespace");
            }
            // a malformed UUID URI is an error; upper case is tolerated here (the R4
            // examples use it), unlike in the `uuid` type itself
            let plain = s.split('|').next().unwrap_or(s);
            if plain.starts_with("urn:uuid:") && check_string("uuid", &plain.to_ascii_lowercase()).is_err() {
                return bad("urn:uuid: must be followed by a UUID (8-4-4-4-12 hex digits)");
            }
        }
        "oid" => {
            let ok = s.strip_prefix("urn:oid:").is_some_and(|rest| {
                let mut parts = rest.split('.');
                matches!(parts.next(), Some("0" | "1" | "2"))
                    && rest.contains('.')
                    && parts.all(|p| {
                        !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && (p == "0" || !p.starts_with('0'))
                    })
            });
            if !ok {
                return bad("expected urn:oid: followed by dotted numbers");
            }
        }
        "uuid" => {
            let ok = s.strip_prefix("urn:uuid:").is_some_and(|u| {
                u.len() == 36
                    && u.char_indices().all(|(i, c)| {
                        if matches!(i, 8 | 13 | 18 | 23) {
                            c == '-'
                        } else {
                            c.is_ascii_hexdigit() && !c.is_ascii_uppercase()
                        }
                    })
            });
            if !ok {
                return bad("expected urn:uuid: followed by a lower-case UUID");
            }
        }
        "base64Binary" => {
            let clean: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
            let body_ok = clean.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
            let pad = clean.iter().rev().take_while(|b| **b == b'=').count();
            let inner_pad = clean.iter().filter(|b| **b == b'=').count() != pad;
            if !body_ok || !clean.len().is_multiple_of(4) || pad > 2 || inner_pad {
                return bad("not base64");
            }
        }
        "date" if parse_date(s).is_none() => {
            return bad("expected YYYY, YYYY-MM or YYYY-MM-DD");
        }
        "dateTime" if !is_date_time(s, false) => {
            return bad("expected YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss with a time zone");
        }
        "instant" if !is_date_time(s, true) => {
            return bad("expected YYYY-MM-DDThh:mm:ss[.fff] with a time zone (Z or +hh:mm)");
        }
        "time" if parse_time(s).is_none() => {
            return bad("expected hh:mm:ss");
        }
        "xhtml" => {
            let t = s.trim_start();
            if !(t.starts_with("<div") || t.starts_with("<xhtml:div")) {
                return bad("narrative must be an XHTML <div>");
            }
        }
        _ => {}
    }
    Ok(())
}

/// Narrative and text must not carry active content: the XHTML subset of the
/// specification has no scripts, frames, objects, forms or event-handler attributes, and
/// plain strings have no business containing them either (stored XSS in a portal).
pub fn unsafe_xhtml(s: &str) -> Option<String> {
    if !s.contains('<') && !s.to_ascii_lowercase().contains("javascript:") {
        return None; // the common case, without lower-casing the whole text
    }
    let lower = s.to_ascii_lowercase();
    for tag in
        ["<script", "<iframe", "<object", "<embed", "<form", "<frame", "<applet", "<base", "<link", "<meta", "<style"]
    {
        if lower.contains(tag) {
            return Some(format!("The text contains '{tag}>', active content that is not allowed"));
        }
    }
    let bytes = lower.as_bytes();
    for (i, w) in bytes.windows(3).enumerate() {
        if w[0].is_ascii_whitespace() && w[1] == b'o' && w[2] == b'n' {
            let rest = &lower[i + 3..];
            let name: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
            if !name.is_empty()
                && rest[name.len()..].trim_start().starts_with('=')
                && lower[..i].rfind('<') > lower[..i].rfind('>')
            {
                return Some(format!("The text has an event handler attribute 'on{name}', which is not allowed"));
            }
        }
    }
    if lower.contains("javascript:") {
        return Some("The text contains a javascript: URL, which is not allowed".into());
    }
    None
}

fn truncate(s: &str) -> String {
    if s.chars().count() > 60 { format!("{}…", s.chars().take(60).collect::<String>()) } else { s.to_string() }
}

fn digits(s: &str, n: usize) -> Option<u32> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
}

/// (year, month, day) with the missing parts as `None`.
fn parse_date(s: &str) -> Option<(u32, Option<u32>, Option<u32>)> {
    let mut parts = s.split('-');
    let year = digits(parts.next()?, 4)?;
    let month = match parts.next() {
        None => return Some((year, None, None)),
        Some(m) => digits(m, 2).filter(|m| (1..=12).contains(m))?,
    };
    let day = match parts.next() {
        None => return Some((year, Some(month), None)),
        Some(d) => digits(d, 2)?,
    };
    if parts.next().is_some() || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some((year, Some(month), Some(day)))
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
        2 => 28,
        _ => 31,
    }
}

fn parse_time(s: &str) -> Option<()> {
    let (hms, frac) = match s.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (s, None),
    };
    let mut p = hms.split(':');
    let h = digits(p.next()?, 2)?;
    let m = digits(p.next()?, 2)?;
    let sec = digits(p.next()?, 2)?;
    if p.next().is_some() || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    if let Some(f) = frac
        && (f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    Some(())
}

fn is_date_time(s: &str, instant: bool) -> bool {
    let Some((date, rest)) = s.split_once('T') else {
        return !instant && parse_date(s).is_some();
    };
    if !matches!(parse_date(date), Some((_, Some(_), Some(_)))) {
        return false;
    }
    let (time, tz) = if let Some(t) = rest.strip_suffix('Z') {
        (t, None)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        (&rest[..i], Some(&rest[i + 1..]))
    } else {
        return false; // a time needs a zone
    };
    if let Some(tz) = tz {
        let mut p = tz.split(':');
        let ok = p.next().and_then(|h| digits(h, 2)).is_some_and(|h| h <= 14)
            && p.next().and_then(|m| digits(m, 2)).is_some_and(|m| m <= 59)
            && p.next().is_none();
        if !ok {
            return false;
        }
    }
    parse_time(time).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn grammars() {
        for ok in ["2024", "2024-02", "2024-02-29"] {
            assert!(check_primitive("date", &json!(ok)).is_ok(), "{ok}");
        }
        for bad in ["2023-02-29", "24", "2024-13", "2024-1-01", "2024-01-01T10:00:00Z", ""] {
            assert!(check_primitive("date", &json!(bad)).is_err(), "{bad}");
        }
        assert!(check_primitive("dateTime", &json!("2015-02-07T13:28:17.239+02:00")).is_ok());
        assert!(check_primitive("dateTime", &json!("2015-02-07T13:28:17")).is_err());
        assert!(check_primitive("instant", &json!("2015-02-07")).is_err());
        assert!(check_primitive("instant", &json!("2015-02-07T13:28:17Z")).is_ok());
        assert!(check_primitive("time", &json!("25:00:00")).is_err());
        assert!(check_primitive("integer", &json!(1.5)).is_err());
        assert!(check_primitive("positiveInt", &json!(0)).is_err());
        assert!(check_primitive("unsignedInt", &json!(0)).is_ok());
        assert!(check_primitive("boolean", &json!("true")).is_err());
        assert!(check_primitive("code", &json!(" a")).is_err());
        assert!(check_primitive("id", &json!("a_b")).is_err());
        assert!(check_primitive("uri", &json!("a b")).is_err());
        assert!(check_primitive("oid", &json!("urn:oid:1.2.3")).is_ok());
        assert!(check_primitive("uuid", &json!("urn:uuid:A0000000-0000-0000-0000-000000000000")).is_err());
        assert!(check_primitive("base64Binary", &json!("aGVsbG8=")).is_ok());
        assert!(check_primitive("base64Binary", &json!("aGVsbG8")).is_err());
    }
}
