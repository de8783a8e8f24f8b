use std::path::PathBuf;

use crate::config::Location;

/// Errors in resolving, fetching or validating a Feature.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{message}")]
    Invalid {
        message: String,
        hint: Option<String>,
    },

    /// A Feature reference that cannot be used as written.
    #[error("{}invalid Feature reference `{reference}`: {reason}", at(.location))]
    Reference {
        reference: String,
        location: Option<Location>,
        reason: String,
        hint: Option<String>,
    },

    /// A `devcontainer-feature.json` that cannot be parsed or has the wrong shape.
    #[error("{location}: {message}")]
    Metadata {
        location: Location,
        message: String,
        hint: Option<String>,
    },

    /// A user or `dependsOn` option value the Feature does not accept.
    #[error("{}Feature `{feature}`, option `{option}`: {message}", at(.location))]
    Option {
        feature: String,
        option: String,
        location: Option<Location>,
        message: String,
        hint: Option<String>,
    },

    /// A Feature folder or archive without a file every Feature needs.
    #[error("Feature `{feature}` has no `{file}` in `{}`", .dir.display())]
    MissingFile {
        feature: String,
        file: &'static str,
        dir: PathBuf,
    },

    /// An archive entry that would land outside the Feature's folder, or of a kind envc rejects.
    #[error("Feature archive `{archive}`: entry `{entry}` {reason}")]
    UnsafeArchive {
        archive: String,
        entry: String,
        reason: String,
    },

    /// Reading, writing or unpacking files failed.
    #[error("failed to {action} `{}`", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The registry could not provide an OCI Feature.
    #[error("{}failed to fetch Feature `{reference}`", at(.location))]
    Registry {
        reference: String,
        location: Option<Location>,
        #[source]
        source: crate::registry::Error,
    },

    /// An OCI artifact that is not a Feature, or content whose digest does not match.
    #[error("Feature `{reference}`: {message}")]
    Artifact {
        reference: String,
        message: String,
        hint: Option<String>,
    },

    /// Content whose digest differs from the one the lockfile or the reference pins.
    #[error("Feature `{feature}`: integrity mismatch: expected `{expected}`, actual `{actual}`")]
    Integrity {
        feature: String,
        expected: String,
        actual: String,
    },

    /// A lockfile that cannot be read or parsed.
    #[error("lockfile `{}`: {message}", .path.display())]
    Lockfile {
        path: PathBuf,
        message: String,
        hint: Option<String>,
    },

    /// `--frozen-lockfile` and the lockfile would change.
    #[error(
        "lockfile `{}` does not match the resolved Features:\n{}",
        .path.display(),
        .differences.iter().map(|d| format!("  - {d}")).collect::<Vec<_>>().join("\n")
    )]
    Frozen {
        path: PathBuf,
        differences: Vec<String>,
    },

    /// Downloading a tarball Feature failed.
    #[error("failed to download Feature `{url}`: {message}")]
    Download { url: String, message: String },

    /// Another error, with the devcontainer.json location of the Feature it concerns.
    #[error("{location}: {inner}")]
    At {
        location: Location,
        inner: Box<Error>,
    },
}

fn at(location: &Option<Location>) -> String {
    match location {
        Some(location) => format!("{location}: "),
        None => String::new(),
    }
}

impl Error {
    pub fn is_invalid_input(&self) -> bool {
        match self {
            Error::Invalid { .. }
            | Error::Reference { .. }
            | Error::Metadata { .. }
            | Error::Option { .. }
            | Error::MissingFile { .. }
            | Error::UnsafeArchive { .. }
            | Error::Artifact { .. }
            | Error::Lockfile { .. }
            | Error::Frozen { .. }
            | Error::Integrity { .. } => true,
            Error::Registry { source, .. } => source.is_invalid_input(),
            Error::Io { .. } | Error::Download { .. } => false,
            Error::At { inner, .. } => inner.is_invalid_input(),
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Invalid { hint, .. }
            | Error::Reference { hint, .. }
            | Error::Metadata { hint, .. }
            | Error::Option { hint, .. }
            | Error::Artifact { hint, .. }
            | Error::Lockfile { hint, .. } => hint.clone(),
            Error::Integrity { .. } => Some(
                "the content changed since it was locked; if the change is expected, run \
                 `envc lock` to record the new digest, otherwise find out who changed it"
                    .into(),
            ),
            Error::Frozen { .. } => Some(
                "run `envc lock` (or build without `--frozen-lockfile`) to update the lockfile, \
                 and commit it"
                    .into(),
            ),
            Error::MissingFile { file, .. } => {
                Some(format!("a Feature folder needs `devcontainer-feature.json` and `install.sh`; add `{file}` or fix the reference"))
            }
            Error::UnsafeArchive { .. } => Some(
                "the archive is unsafe to unpack; ask the Feature's author to republish it".into(),
            ),
            Error::Registry { source, .. } => source.hint().or_else(|| {
                Some("check the reference, that the registry is reachable, and `docker login`".into())
            }),
            Error::Io { .. } => None,
            Error::At { inner, .. } => inner.hint(),
            Error::Download { .. } => {
                Some("check the URL and the network; the file must be a Feature archive".into())
            }
        }
    }

    /// Adds `location` to an error that names no devcontainer.json location of its own.
    pub(crate) fn located(self, location: Option<&Location>) -> Error {
        let has_location = match &self {
            Error::Reference { location, .. }
            | Error::Option { location, .. }
            | Error::Registry { location, .. } => location.is_some(),
            Error::At { .. } => true,
            _ => false,
        };
        match location {
            Some(location) if !has_location => Error::At {
                location: location.clone(),
                inner: Box::new(self),
            },
            _ => self,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
