//! String codecs of FHIRPath: `encode()`/`decode()` (base64, urlbase64, hex) and
//! `escape()`/`unescape()` (html, json).

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_alphabet(url: bool) -> impl Fn(u8) -> u8 {
    move |i: u8| {
        let c = B64[usize::from(i & 63)];
        match (url, c) {
            (true, b'+') => b'-',
            (true, b'/') => b'_',
            _ => c,
        }
    }
}

/// `encode(format)`; `None` for an unknown format.
pub(crate) fn encode(s: &str, format: &str) -> Option<String> {
    let bytes = s.as_bytes();
    match format {
        "hex" => Some(bytes.iter().map(|b| format!("{b:02x}")).collect()),
        "base64" | "urlbase64" => {
            let enc = b64_alphabet(format == "urlbase64");
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
                for i in 0..4 {
                    if i <= chunk.len() {
                        out.push(char::from(enc(((n >> (18 - 6 * i)) & 63) as u8)));
                    } else {
                        out.push('=');
                    }
                }
            }
            Some(out)
        }
        _ => None,
    }
}

/// `decode(format)`; `None` for an unknown format or malformed input.
pub(crate) fn decode(s: &str, format: &str) -> Option<String> {
    let bytes = match format {
        "hex" => {
            if !s.len().is_multiple_of(2) {
                return None;
            }
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
                .collect::<Option<Vec<u8>>>()?
        }
        "base64" | "urlbase64" => {
            let value = |c: u8| -> Option<u32> {
                Some(u32::from(match c {
                    b'A'..=b'Z' => c - b'A',
                    b'a'..=b'z' => c - b'a' + 26,
                    b'0'..=b'9' => c - b'0' + 52,
                    b'+' | b'-' => 62,
                    b'/' | b'_' => 63,
                    _ => return None,
                }))
            };
            let body = s.trim_end_matches('=');
            let mut out = Vec::new();
            let (mut acc, mut bits) = (0u32, 0);
            for c in body.bytes() {
                acc = (acc << 6) | value(c)?;
                bits += 6;
                if bits >= 8 {
                    bits -= 8;
                    out.push(((acc >> bits) & 0xff) as u8);
                }
            }
            out
        }
        _ => return None,
    };
    String::from_utf8(bytes).ok()
}

/// `escape(target)`.
pub(crate) fn escape(s: &str, target: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    match target {
        "html" => {
            for c in s.chars() {
                match c {
                    '"' => out.push_str("&quot;"),
                    '&' => out.push_str("&amp;"),
                    '<' => out.push_str("&lt;"),
                    '>' => out.push_str("&gt;"),
                    '\'' => out.push_str("&#39;"),
                    c => out.push(c),
                }
            }
        }
        "json" => {
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
        }
        _ => return None,
    }
    Some(out)
}

/// `unescape(target)`.
pub(crate) fn unescape(s: &str, target: &str) -> Option<String> {
    match target {
        "html" => {
            let mut out = String::new();
            let mut rest = s;
            while let Some(i) = rest.find('&') {
                out.push_str(&rest[..i]);
                rest = &rest[i..];
                let Some(end) = rest.find(';') else { break };
                let entity = &rest[1..end];
                let ch = match entity {
                    "quot" => Some('"'),
                    "amp" => Some('&'),
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "apos" => Some('\''),
                    e => e
                        .strip_prefix("#x")
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .or_else(|| e.strip_prefix('#').and_then(|d| d.parse().ok()))
                        .and_then(char::from_u32),
                };
                match ch {
                    Some(c) => {
                        out.push(c);
                        rest = &rest[end + 1..];
                    }
                    None => {
                        out.push('&');
                        rest = &rest[1..];
                    }
                }
            }
            out.push_str(rest);
            Some(out)
        }
        "json" => {
            let mut out = String::new();
            let mut it = s.chars();
            while let Some(c) = it.next() {
                if c != '\\' {
                    out.push(c);
                    continue;
                }
                match it.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some('b') => out.push('\u{8}'),
                    Some('f') => out.push('\u{c}'),
                    Some('u') => {
                        let hex: String = it.by_ref().take(4).collect();
                        out.push(u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32)?);
                    }
                    Some(other) => out.push(other),
                    None => out.push('\\'),
                }
            }
            Some(out)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(encode("test", "base64").unwrap(), "dGVzdA==");
        assert_eq!(encode("subjects?_d", "urlbase64").unwrap(), "c3ViamVjdHM_X2Q=");
        assert_eq!(decode("c3ViamVjdHM/X2Q=", "base64").unwrap(), "subjects?_d");
        assert_eq!(decode("74657374", "hex").unwrap(), "test");
        assert_eq!(escape("\"1<2\"", "html").unwrap(), "&quot;1&lt;2&quot;");
        assert_eq!(unescape("\\\"1<2\\\"", "json").unwrap(), "\"1<2\"");
    }
}
