//! FHIRPath: parsing and evaluation over JSON resources, type-aware through the embedded
//! R4 definitions (so `Observation.value as Quantity` finds `valueQuantity`).
//!
//! This is the subset that the base search parameters and the validator need today:
//! paths, `|`, indexers, `where()`, `exists()`, `empty()`, `first()`, `resolve()`,
//! `ofType()`/`as()`, the `is`/`as` operators, `=`, `!=`, `and`, `or`, `not()` and literals.
//! Anything else fails to parse with [`Error::Unsupported`], never silently.

mod eval;
mod parse;

pub use eval::{Item, evaluate};
pub use parse::{Expr, parse};

/// Why an expression could not be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    #[error("FHIRPath syntax error at {pos}: {msg}")]
    Syntax { pos: usize, msg: String },
    #[error("FHIRPath function or operator not supported yet: {0}")]
    Unsupported(String),
}
