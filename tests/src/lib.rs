//! vr-tests: the implementation checked against the model's invariants.
//!
//! [`harness`] moves effects between core replicas by hand; the scenario tests
//! in `tests/` drive it.

pub mod harness;
