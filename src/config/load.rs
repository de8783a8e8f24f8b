//! Finding and loading devcontainer.json.

use std::path::{Path, PathBuf};

use super::{Config, Error};

/// Finds the devcontainer.json of the project at `workspace`, or checks `explicit` when given.
pub fn find_config(workspace: &Path, explicit: Option<&Path>) -> Result<PathBuf, Error> {
    let _ = (workspace, explicit);
    todo!("config discovery")
}

/// Loads and validates `file`, substituting build-time variables from `local_env`.
pub fn load(file: &Path, local_env: &dyn Fn(&str) -> Option<String>) -> Result<Config, Error> {
    let _ = (file, local_env);
    todo!("config loading")
}
