use std::path::PathBuf;

use super::Location;

/// Errors in finding, reading, parsing or validating a devcontainer.json.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no devcontainer.json found under `{}`", .0.display())]
    NotFound(PathBuf),
    #[error("failed to read `{}`", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{location}: {message}")]
    Invalid { location: Location, message: String, hint: Option<String> },
}

impl Error {
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::NotFound(_) => Some(
                "create `.devcontainer/devcontainer.json`, or name the file with `--config`".into(),
            ),
            Error::Read { .. } => None,
            Error::Invalid { hint, .. } => hint.clone(),
        }
    }
}
