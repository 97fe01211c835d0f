//! vr-tests: the implementation checked against the model's invariants.
//!
//! [`harness`] moves effects between core replicas by hand; the scenario tests
//! in `tests/` drive it. [`simulator`] drives it from a seed: random
//! deliveries, losses, duplicates, timers, crashes and restarts.

pub mod harness;
pub mod simulator;
