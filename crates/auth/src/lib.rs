//! Identity and access for Medkarta: who a caller is and what they may do.
//!
//! - [`password`]: Argon2id hashes and the strength policy (length and a list of the most
//!   common passwords, not composition rules);
//! - [`totp`]: RFC 6238 one-time codes (enrolment URI and QR code) and recovery codes;
//! - [`scope`]: SMART App Launch 2.0 scopes (`patient/Observation.rs`, `user/*.cruds`, v1
//!   `.read`/`.write`);
//! - [`token`]: signed access tokens (ES256 JWT) and the key set published as JWKS;
//! - [`random`]: secrets from the operating system's generator.
//!
//! - [`account`], [`directory`]: accounts, clients, sessions and keys, kept as records in
//!   the store, and the login, token and revocation logic over them.

pub mod account;
pub mod directory;
pub mod password;
pub mod random;
pub mod scope;
pub mod token;
pub mod totp;

/// Failures of identity operations.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cryptographic operation failed: {0}")]
    Crypto(String),
    #[error("invalid token: {0}")]
    InvalidToken(String),
}
