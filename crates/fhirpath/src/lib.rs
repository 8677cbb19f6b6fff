//! FHIRPath: parsing and evaluation over JSON resources, type-aware through the embedded
//! R4 definitions (so `Observation.value as Quantity` finds `valueQuantity`).
//!
//! Covers the FHIRPath N1 functions and operators listed in [`FUNCTIONS`], with
//! System types (Boolean, String, Integer, Decimal, Date, DateTime, Time, Quantity with
//! UCUM units and calendar durations) alongside the FHIR model. A function outside the
//! list fails to parse with [`Error::Unsupported`], never silently; misuse the spec calls
//! an error (several items where one is required, operands of the wrong type, unknown
//! types or elements) fails evaluation with [`Error::Semantic`].

mod eval;
mod parse;
mod quantity;
mod regex;
mod temporal;
mod text;

pub use eval::{Item, evaluate, evaluate_item, evaluate_on};
pub use parse::{Expr, parse};

/// Functions the evaluator implements.
pub const FUNCTIONS: &[&str] = &[
    "where",
    "exists",
    "empty",
    "not",
    "first",
    "last",
    "ofType",
    "as",
    "is",
    "resolve",
    "extension",
    "count",
    "all",
    "select",
    "isDistinct",
    "distinct",
    "hasValue",
    "trace",
    "single",
    "tail",
    "skip",
    "take",
    "children",
    "descendants",
    "combine",
    "union",
    "intersect",
    "exclude",
    "iif",
    "allTrue",
    "anyTrue",
    "allFalse",
    "anyFalse",
    "startsWith",
    "endsWith",
    "contains",
    "length",
    "upper",
    "lower",
    "substring",
    "toString",
    "toInteger",
    "indexOf",
    "trim",
    "toChars",
    "replace",
    "split",
    "join",
    "abs",
    "ceiling",
    "floor",
    "round",
    "sqrt",
    "exp",
    "ln",
    "truncate",
    "log",
    "power",
    "toDecimal",
    "toBoolean",
    "convertsToInteger",
    "convertsToDecimal",
    "convertsToBoolean",
    "convertsToString",
    "subsetOf",
    "supersetOf",
    "convertsToDate",
    "convertsToDateTime",
    "convertsToTime",
    "toDate",
    "toDateTime",
    "toTime",
    "type",
    "conformsTo",
    "repeat",
    "aggregate",
    "sort",
    "matches",
    "matchesFull",
    "replaceMatches",
    "encode",
    "decode",
    "escape",
    "unescape",
    "today",
    "now",
    "timeOfDay",
    "precision",
    "lowBoundary",
    "highBoundary",
    "comparable",
    "toQuantity",
    "convertsToQuantity",
];

/// Parse and check that every function used is implemented, so that an expression is
/// either fully evaluable or refused up front.
pub fn parse_supported(s: &str) -> Result<Expr, Error> {
    let e = parse(s)?;
    check(&e)?;
    Ok(e)
}

fn check(e: &Expr) -> Result<(), Error> {
    match e {
        Expr::Member(b, _) | Expr::Neg(b) | Expr::Type(_, b, _) => check(b),
        Expr::Index(a, b) | Expr::Binary(_, a, b) => check(a).and(check(b)),
        Expr::Call(b, f, args) => {
            if !FUNCTIONS.contains(&f.as_str()) {
                return Err(Error::Unsupported(format!("{f}()")));
            }
            check(b)?;
            args.iter().try_for_each(check)
        }
        _ => Ok(()),
    }
}

/// Why an expression could not be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    #[error("FHIRPath syntax error at {pos}: {msg}")]
    Syntax { pos: usize, msg: String },
    #[error("FHIRPath function or operator not supported yet: {0}")]
    Unsupported(String),
    /// The expression is well-formed but invalid for its input: the wrong number or
    /// type of operands, an unknown type or element.
    #[error("FHIRPath semantic error: {0}")]
    Semantic(String),
}
