//! store-tests
