use std::path::PathBuf;

use super::Location;

/// Errors in finding, reading, parsing or validating a devcontainer.json.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no devcontainer.json found under `{}`", .0.display())]
    NotFound(PathBuf),
    #[error("config file `{}` does not exist", .0.display())]
    ExplicitNotFound(PathBuf),
    #[error(
        "found {} devcontainer.json files under `{}/.devcontainer`: {}",
        .found.len(),
        .workspace.display(),
        list_paths(.found)
    )]
    Ambiguous {
        workspace: PathBuf,
        found: Vec<PathBuf>,
    },
    #[error("failed to read `{}`", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{location}: {message}")]
    Invalid {
        location: Location,
        message: String,
        hint: Option<String>,
    },
}

impl Error {
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::NotFound(_) => Some(
                "create `.devcontainer/devcontainer.json`, or name the file with `--config`".into(),
            ),
            Error::ExplicitNotFound(_) => Some("check the path given to `--config`".into()),
            Error::Ambiguous { found, .. } => {
                let first = found
                    .first()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                Some(format!(
                    "pick one with `--config`, such as `--config {first}`"
                ))
            }
            Error::Read { .. } => None,
            Error::Invalid { hint, .. } => hint.clone(),
        }
    }
}

fn list_paths(paths: &[PathBuf]) -> String {
    let quoted: Vec<String> = paths.iter().map(|p| format!("`{}`", p.display())).collect();
    quoted.join(", ")
}
