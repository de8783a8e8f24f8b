//! The BuildKit engine: BuildKit's wire types, connections and Control client.

pub mod client;
pub mod connect;
pub mod proto;
pub mod session;
