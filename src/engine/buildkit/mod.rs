//! The BuildKit engine.

pub mod session;
