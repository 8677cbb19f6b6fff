//! Time-based one-time passwords (RFC 6238: HMAC-SHA1, 30-second steps, 6 digits — what
//! every authenticator app speaks), their enrolment (`otpauth://` URI and QR code as
//! SVG), and one-time recovery codes.

use aws_lc_rs::digest;
use aws_lc_rs::hmac;

use crate::{AuthError, random};

/// Seconds per step.
pub const STEP: u64 = 30;
const DIGITS: u32 = 6;

/// A new shared secret (160 bits, the size RFC 4226 recommends).
pub fn new_secret() -> Result<Vec<u8>, AuthError> {
    random::bytes(20)
}

const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 without padding (how authenticator apps take secrets).
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for b in bytes {
        buf = (buf << 8) | u32::from(*b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(B32[((buf >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(B32[((buf << (5 - bits)) & 31) as usize]));
    }
    out
}

/// Decode [`base32`] (case-insensitive, spaces and padding ignored).
pub fn from_base32(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0u32);
    for c in s.chars().filter(|c| !c.is_whitespace() && *c != '=') {
        let v = B32.iter().position(|b| char::from(*b) == c.to_ascii_uppercase())? as u32;
        buf = (buf << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((buf >> bits) & 0xff) as u8);
        }
    }
    Some(out)
}

/// The code for time step `step`.
pub fn code(secret: &[u8], step: u64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let mac = hmac::sign(&key, &step.to_be_bytes());
    let h = mac.as_ref();
    let offset = usize::from(h.last().copied().unwrap_or(0) & 0x0f);
    let word = h.get(offset..offset + 4).map_or(0, |w| {
        (u32::from(w[0] & 0x7f) << 24) | (u32::from(w[1]) << 16) | (u32::from(w[2]) << 8) | u32::from(w[3])
    });
    format!("{:0width$}", word % 10u32.pow(DIGITS), width = DIGITS as usize)
}

/// Check a code typed at `now` (Unix seconds), allowing one step of clock drift either
/// way. A step at or before `last_used` is refused (a code works once). Returns the step
/// to remember as used.
pub fn verify(secret: &[u8], typed: &str, now: u64, last_used: Option<u64>) -> Option<u64> {
    let typed: String = typed.chars().filter(|c| !c.is_whitespace()).collect();
    if typed.len() != DIGITS as usize {
        return None;
    }
    let current = now / STEP;
    [current.saturating_sub(1), current, current + 1]
        .into_iter()
        .filter(|s| last_used.is_none_or(|l| *s > l))
        .find(|s| constant_time_eq(code(secret, *s).as_bytes(), typed.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn uri_escape(s: &str) -> String {
    form_escape(s).replace('+', "%20")
}

fn form_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            b' ' => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The enrolment URI authenticator apps read (Key Uri Format).
pub fn uri(secret: &[u8], issuer: &str, account: &str) -> String {
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP}",
        uri_escape(issuer),
        uri_escape(account),
        base32(secret),
        uri_escape(issuer)
    )
}

/// The enrolment URI as a QR code (SVG).
pub fn qr_svg(uri: &str) -> Result<String, AuthError> {
    let code = qrcode::QrCode::new(uri.as_bytes()).map_err(|e| AuthError::Crypto(e.to_string()))?;
    Ok(code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(200, 200).build())
}

/// Ten recovery codes (`xxxxx-xxxxx`, 50 bits each) to show once.
pub fn recovery_codes() -> Result<Vec<String>, AuthError> {
    (0..10)
        .map(|_| {
            let r = random::readable(10)?;
            Ok(format!("{}-{}", &r[..5], &r[5..]))
        })
        .collect()
}

/// How a recovery code is stored (SHA-256: the codes are random, not chosen by people).
pub fn recovery_hash(code: &str) -> String {
    let normal: String = code.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_lowercase();
    base32(digest::digest(&digest::SHA256, normal.as_bytes()).as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_test_vectors() {
        // Appendix B, SHA-1, last six of the eight digits
        let secret = b"12345678901234567890";
        for (t, expected) in [
            (59, "287082"),
            (1111111109, "081804"),
            (1111111111, "050471"),
            (1234567890, "005924"),
            (2000000000, "279037"),
        ] {
            assert_eq!(code(secret, t / STEP), expected, "T = {t}");
        }
    }

    #[test]
    fn verification_allows_drift_and_refuses_replay() {
        let secret = new_secret().unwrap();
        let now = 1_800_000_000;
        let c = code(&secret, now / STEP);
        let step = verify(&secret, &c, now, None).unwrap();
        assert_eq!(verify(&secret, &c, now, Some(step)), None, "a code works once");
        let previous = code(&secret, now / STEP - 1);
        assert!(verify(&secret, &previous, now, None).is_some(), "30 s of drift");
        let old = code(&secret, now / STEP - 3);
        assert_eq!(verify(&secret, &old, now, None), None);
        assert_eq!(verify(&secret, "12345", now, None), None);
    }

    #[test]
    fn base32_round_trips_and_enrolment_uri() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        let secret = new_secret().unwrap();
        assert_eq!(from_base32(&base32(&secret).to_lowercase()), Some(secret.clone()));
        let u = uri(&secret, "Медкарта", "anna petrova");
        assert!(u.starts_with("otpauth://totp/%D0%9C"), "{u}");
        assert!(u.contains("anna%20petrova?secret=") && u.contains("&period=30"), "{u}");
        assert!(qr_svg(&u).unwrap().starts_with("<?xml"));
    }

    #[test]
    fn recovery_codes_are_distinct_and_hash_leniently() {
        let codes = recovery_codes().unwrap();
        assert_eq!(codes.len(), 10);
        assert_eq!(codes.iter().collect::<std::collections::HashSet<_>>().len(), 10);
        assert_eq!(recovery_hash(&codes[0]), recovery_hash(&codes[0].to_uppercase().replace('-', " ")));
    }
}
