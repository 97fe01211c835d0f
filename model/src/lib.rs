//! vr-model: a stateright model of vr's protocol core, and the invariants that
//! every driver (model checker, simulator, real-process tests) checks.
//!
//! The model's actors run the core's own `step`; nothing here re-implements a
//! handler.

pub mod invariants;
