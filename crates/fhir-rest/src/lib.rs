//! fhir-rest
