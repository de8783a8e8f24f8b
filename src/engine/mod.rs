//! Engines build a [`BuildPlan`]'s steps into layers. `local` runs each install script with
//! runc over an overlayfs mount; `buildkit` lowers the same plan to LLB and solves it through
//! BuildKit's Control API.

pub mod buildkit;
pub mod local;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Location;
use crate::image::Layer;

/// Whether install scripts get a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// A network namespace of their own with only loopback.
    #[default]
    None,
    /// The host's network namespace, to reach a package mirror.
    Host,
}

/// What building one step gave.
#[derive(Debug, Clone)]
pub struct StepResult {
    pub layer: Layer,
    /// True when the layer came from the cache and no script ran.
    pub cached: bool,
    pub duration: Duration,
}

/// Set when the user interrupts the build; engines check it and stop cleanly.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Errors while building steps.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "Feature `{feature}` failed: install script exited with code {exit_code}{}",
        location.as_ref().map(|l| format!(" (listed at {l})")).unwrap_or_default()
    )]
    ScriptFailed {
        feature: String,
        location: Option<Location>,
        exit_code: i32,
        /// The last lines the script printed.
        output_tail: Vec<String>,
    },
    #[error("{what}")]
    MissingPrerequisite { what: String, hint: String },
    /// A store path the engine cannot use as given, such as one overlayfs would split.
    #[error("{what}")]
    UnusableStore { what: String, hint: String },
    #[error("failed to {action}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("interrupted")]
    Interrupted,
    /// A lower snapshot was removed or replaced while a step's script ran over it.
    #[error(
        "snapshot `{}` changed while Feature `{feature}` was built on it",
        .snapshot.display()
    )]
    LowerChanged {
        feature: String,
        snapshot: std::path::PathBuf,
    },
    #[error(transparent)]
    Image(#[from] crate::image::Error),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    BuildKit(#[from] buildkit::Error),
}

impl Error {
    pub fn is_invalid_input(&self) -> bool {
        match self {
            Error::UnusableStore { .. } => true,
            Error::BuildKit(e) => e.is_invalid_input(),
            _ => false,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Error::MissingPrerequisite { hint, .. } | Error::UnusableStore { hint, .. } => {
                Some(hint.clone())
            }
            Error::LowerChanged { .. } => Some(
                "another program changed the store during the build; nothing was recorded for \
                 this step, so build again"
                    .into(),
            ),
            Error::ScriptFailed { output_tail, .. } if !output_tail.is_empty() => Some(format!(
                "the script's last output:\n    {}",
                output_tail.join("\n    ")
            )),
            Error::BuildKit(e) => e.hint(),
            _ => None,
        }
    }
}
