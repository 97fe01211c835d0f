//! Replicated applications: state machines the protocol core can run.

mod kv;

pub use kv::{Kv, KvOperation, KvOutput};
