//! FHIR search, independent of any database: what to index for a resource
//! ([`index::extract`]) and what a search request asks for ([`query::parse_query`]).
//!
//! Index values are computed by evaluating each base SearchParameter's FHIRPath
//! expression and normalised per parameter type; the store writes them in the same
//! transaction as the resource and translates a [`Query`] into SQL over them.

pub mod index;
pub mod normalize;
pub mod page;
pub mod query;
pub mod registry;
pub mod text;

pub use index::{IndexEntry, IndexValue, extract};
pub use query::{
    Care, CareRelations, Clause, Compartment, ComponentPredicate, Hop, Include, MAX_HOPS, MAX_PARAMETERS, MAX_VALUES,
    Predicate, Prefix, Query, SortKey, Summary, Total, parse_query, parse_system_query,
};
