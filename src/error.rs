//! The top-level error: one variant per module, each knowing its exit code and hint.

use std::fmt::Write as _;

/// How a failure maps onto the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// The build ran and failed (exit 1).
    Failure,
    /// The input was invalid: a config, Feature, option, reference or usage error (exit 2).
    InvalidInput,
    /// The user interrupted the build (exit 130).
    Interrupted,
}

impl ExitKind {
    pub fn code(self) -> i32 {
        match self {
            ExitKind::Failure => 1,
            ExitKind::InvalidInput => 2,
            ExitKind::Interrupted => 130,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] crate::config::Error),
    #[error(transparent)]
    Feature(#[from] crate::feature::Error),
    #[error(transparent)]
    Graph(#[from] crate::graph::Error),
    #[error(transparent)]
    Plan(#[from] crate::plan::Error),
    #[error(transparent)]
    Engine(#[from] crate::engine::Error),
    #[error(transparent)]
    Image(#[from] crate::image::Error),
    #[error(transparent)]
    Registry(#[from] crate::registry::Error),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Cache(#[from] crate::store::remote::Error),
    #[error(transparent)]
    Sign(#[from] crate::sign::Error),
    #[error("{message}")]
    Usage {
        message: String,
        hint: Option<String>,
    },
    #[error("interrupted")]
    Interrupted,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn usage(message: impl Into<String>, hint: impl Into<Option<String>>) -> Self {
        Error::Usage {
            message: message.into(),
            hint: hint.into(),
        }
    }

    pub fn exit_kind(&self) -> ExitKind {
        match self {
            Error::Config(_) | Error::Usage { .. } => ExitKind::InvalidInput,
            Error::Feature(e) if e.is_invalid_input() => ExitKind::InvalidInput,
            Error::Graph(_) => ExitKind::InvalidInput,
            Error::Cache(crate::store::remote::Error::InvalidRepository { .. }) => {
                ExitKind::InvalidInput
            }
            Error::Plan(e) if e.is_invalid_input() => ExitKind::InvalidInput,
            Error::Engine(e) if e.is_invalid_input() => ExitKind::InvalidInput,
            Error::Registry(e) if e.is_invalid_input() => ExitKind::InvalidInput,
            Error::Sign(e) if e.is_invalid_input() => ExitKind::InvalidInput,
            Error::Engine(crate::engine::Error::Interrupted) | Error::Interrupted => {
                ExitKind::Interrupted
            }
            _ => ExitKind::Failure,
        }
    }

    /// The next step for the user, printed on its own `hint:` line.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Config(e) => e.hint(),
            Error::Feature(e) => e.hint(),
            Error::Graph(e) => e.hint(),
            Error::Plan(e) => e.hint(),
            Error::Engine(e) => e.hint(),
            Error::Registry(e) => e.hint(),
            Error::Sign(e) => e.hint(),
            Error::Cache(e) => e.hint(),
            Error::Usage { hint, .. } => hint.clone(),
            _ => None,
        }
    }

    /// Renders the error as the CLI prints it: the message, its causes, then the hint.
    pub fn render(&self) -> String {
        let mut out = format!("error: {self}\n");
        let mut source = std::error::Error::source(self);
        // Transparent variants forward `source` to the inner error, whose message is already
        // printed above, so skip a cause whose text equals the line before it.
        let mut last = self.to_string();
        while let Some(cause) = source {
            let text = cause.to_string();
            if text != last {
                let _ = writeln!(out, "  Caused by: {text}");
            }
            last = text;
            source = cause.source();
        }
        if let Some(hint) = self.hint() {
            let _ = write!(out, "\nhint: {hint}\n");
        }
        out
    }
}
