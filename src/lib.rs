//! envc compiles a `devcontainer.json` and its Dev Container Features into an OCI image.
//!
//! The pipeline runs in one direction: [`config`] parses the file as written, [`feature`]
//! fetches and validates each Feature, [`graph`] orders them, [`plan`] turns the result into an
//! immutable [`plan::BuildPlan`], and an [`engine`] builds it into layers that [`image`] assembles
//! and [`registry`] pushes. The binary in `main.rs` only parses arguments and renders results.

pub mod build;
pub mod cli;
pub mod config;
pub mod engine;
pub mod error;
pub mod feature;
pub mod graph;
pub mod image;
pub mod plan;
pub mod progress;
pub mod registry;
pub mod sign;
pub mod store;

pub use error::{Error, Result};
