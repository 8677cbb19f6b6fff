//! The audit trail (feature S4): every access to patient data becomes an R4 AuditEvent
//! following the IHE Basic Audit Log Patterns ([`event`]); the events go to an
//! append-only, hash-chained log in the same database ([`store::audit`]), through a local
//! journal or with group commit so that auditing every read does not cost a database
//! commit per read ([`journal`], [`log`]); signed checkpoints pin the chain's head so that a truncated log is detected
//! too ([`checkpoint`]); [`verify`] walks the whole chain and names the first entry that
//! was changed, removed, inserted or reordered.

pub mod checkpoint;
pub mod event;
pub mod journal;
pub mod log;
pub mod verify;

pub use event::{Action, Agent, Event, Kind, Outcome};
pub use log::AuditLog;

/// Audit failures.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The log could not be written: the access it records must not happen.
    #[error("the audit log cannot be written: {0}")]
    Unavailable(String),
    /// A key file could not be read or created.
    #[error("audit signing key: {0}")]
    Key(String),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}
