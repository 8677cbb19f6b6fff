//! Random secrets (passwords, client secrets, codes, token ids) from the operating
//! system's generator, in alphabets a person can read back without ambiguity.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::AuthError;

/// `n` random bytes.
pub fn bytes(n: usize) -> Result<Vec<u8>, AuthError> {
    let mut out = vec![0u8; n];
    SystemRandom::new().fill(&mut out).map_err(|_| AuthError::Crypto("no random numbers".into()))?;
    Ok(out)
}

/// A URL-safe token carrying `n` random bytes (client secrets, codes, refresh tokens).
pub fn token(n: usize) -> Result<String, AuthError> {
    Ok(URL_SAFE_NO_PAD.encode(bytes(n)?))
}

/// Letters and digits without look-alikes (no 0/O, 1/l/I).
const READABLE: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// `len` characters of [`READABLE`] (32 symbols: 5 bits each, no modulo bias).
pub fn readable(len: usize) -> Result<String, AuthError> {
    Ok(bytes(len)?.iter().map(|b| char::from(READABLE[usize::from(*b) % READABLE.len()])).collect())
}
