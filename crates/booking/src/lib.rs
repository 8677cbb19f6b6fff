//! Appointments (a domain crate over the guard).

pub mod pattern;
