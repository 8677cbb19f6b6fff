//! Encryption at rest (feature S5). Every resource version is stored encrypted with
//! AES-256-GCM under the data key of the patient whose record it belongs to (resources in
//! no patient's record — practitioners, organisations — under one shared key); data keys
//! are stored in the database only wrapped by a master key held outside it ([`master`]:
//! a file under `--keys`, the environment, or a KMS behind [`master::Kms`]).
//! [`sealed::SealedStore`] does it as a decorator of any [`store::Store`], so the backends
//! and everything above them stay as they are; index rows hold only what search needs and
//! are not encrypted. Rotating the master key rewraps the data keys, not the data
//! ([`sealed::rotate`]), while the server runs; [`sealed::encrypt_existing`] seals what
//! was stored in plaintext.

pub mod master;
pub mod sealed;

pub use master::{Keyring, Kms};
pub use sealed::{SealedStore, Vault};

/// Key and encryption failures.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// A master key is missing, unreadable or cannot be created.
    #[error("master key: {0}")]
    Key(String),
    /// Stored ciphertext that does not decrypt.
    #[error("encrypted data cannot be read: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

impl From<VaultError> for store::StoreError {
    fn from(e: VaultError) -> Self {
        match e {
            VaultError::Store(e) => e,
            VaultError::Key(m) => store::StoreError::Unavailable(format!("master key: {m}")),
            VaultError::Corrupt(m) => store::StoreError::Backend(format!("encrypted data cannot be read: {m}")),
        }
    }
}
