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

    /// Returns the messages of the error's causes, outermost first.
    pub fn causes(&self) -> Vec<String> {
        let mut causes = Vec::new();
        let mut source = std::error::Error::source(self);
        // Transparent variants forward `source` to the inner error, whose message is the
        // error's own, so skip a cause whose text equals the one before it.
        let mut last = self.to_string();
        while let Some(cause) = source {
            let text = cause.to_string();
            if text != last {
                causes.push(text.clone());
            }
            last = text;
            source = cause.source();
        }
        causes
    }

    /// Renders the error as the CLI prints it: the message, its causes, then the hint.
    pub fn render(&self) -> String {
        let mut out = format!("error: {self}\n");
        for cause in self.causes() {
            let _ = writeln!(out, "  Caused by: {cause}");
        }
        if let Some(hint) = self.hint() {
            let _ = write!(out, "\nhint: {hint}\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_key_error() -> Error {
        Error::Sign(crate::sign::Error::ReadKey {
            path: "cosign.key".into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        })
    }

    #[test]
    fn causes_skip_the_message_a_transparent_variant_repeats() {
        let error = read_key_error();
        assert_eq!(error.to_string(), "failed to read key `cosign.key`");
        assert_eq!(error.causes(), vec!["no such file".to_string()]);
    }

    #[test]
    fn render_prints_message_causes_then_hint() {
        assert_eq!(
            read_key_error().render(),
            "error: failed to read key `cosign.key`\n  Caused by: no such file\n\nhint: check \
             the key path\n"
        );
    }
}
