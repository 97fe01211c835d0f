//! vr: Viewstamped Replication (Liskov and Cowling, "Viewstamped Replication
//! Revisited", 2012).
//!
//! - [`core`]: the protocol, sans-IO and deterministic, shared by the model
//!   checker, the simulator and the runtime.
//! - [`app`]: state machines to replicate, a key-value store among them.
//! - [`runtime`]: the core over UDP with real timers, one loop per replica.
//! - [`client`]: the client library.
//! - [`history`]: clients' histories as `vr bench` records them, and a
//!   linearizability checker for them.
//!
//! The protocol as implemented is specified in `spec/` at the repository root.

pub mod app;
pub mod client;
pub mod core;
pub mod history;
pub mod runtime;
