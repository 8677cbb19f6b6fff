//! medkarta
fn main() {}
