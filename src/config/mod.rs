//! devcontainer.json: discovery, JSONC parsing with source spans, build-time variables, and the
//! resolved model the planner consumes.
//!
//! This module owns the file as written and the settings resolved from it. It does not fetch
//! Features (see `feature`) and does not decide the install order (see `graph`).

mod error;
pub mod jsonc;
mod load;
pub mod metadata;
mod model;
pub mod variables;

pub use error::Error;
pub use load::{find_config, load};
pub use model::{
    Config, DockerfileSource, FeatureEntry, FeatureOptions, ImageSource, OptionValue, Source,
};

use std::fmt;
use std::path::PathBuf;

/// A position in a source file, 1-based, as printed in `file:line:column`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}
