//! The runtime: the core driven by real UDP sockets and clocks. One thread per
//! replica runs [`node::Node::run`], the single execution loop.

pub mod auth;
pub mod clients;
pub mod config;
pub mod keyfile;
pub mod node;
pub mod refusal;
pub mod startup;
pub mod storage;
pub mod wire;

pub use config::{ClusterConfig, ConfigFileError, Settings};
pub use node::{Node, Start, StartError};
