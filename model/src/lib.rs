//! vr-model: a stateright model of vr's protocol core, and the invariants that
//! every driver (model checker, simulator, real-process tests) checks.
//!
//! The model's replica actors run the core's own `step`; nothing here
//! re-implements a handler. [`model::ModelConfig`] sets the bounds,
//! [`scenarios`] names the configurations worth checking, [`properties`]
//! holds what is checked: the safety invariants of [`invariants`] and the
//! progress properties of [`liveness`].

pub mod actors;
pub mod bench;
pub mod bfs;
pub mod check;
pub mod driver;
pub mod invariants;
pub mod liveness;
pub mod malformed;
pub mod model;
pub mod prelude;
pub mod properties;
pub mod register;
pub mod scenarios;
