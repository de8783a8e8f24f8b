//! Dev Container Features: references, `devcontainer-feature.json`, options, fetching.
//!
//! This module turns the `features` entries of a [`crate::config::Config`] into
//! [`FeatureInstance`]s: each reference parsed, its content fetched to disk and digested, its
//! metadata parsed and its options validated and resolved, with `dependsOn` followed
//! recursively. It does not order them (see `graph`).

mod error;
pub mod fetch;
pub mod lockfile;
pub mod metadata;
pub mod options;
pub mod reference;
mod resolve;
pub mod tags;

pub use error::Error;
pub use lockfile::{LockedFeature, Lockfile};
pub use metadata::{FeatureMetadata, OptionSpec};
pub use reference::{FeatureRef, FeatureSource};
pub use resolve::{
    resolve_features, resolve_features_locked, satisfies_soft, Resolution, SoftDependency,
};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{Location, OptionValue};

/// A Feature's content on disk, fetched once and shared by every instance of it.
#[derive(Debug)]
pub struct FetchedFeature {
    pub reference: FeatureRef,
    pub metadata: FeatureMetadata,
    /// The folder holding `devcontainer-feature.json`, `install.sh` and the rest.
    pub dir: PathBuf,
    /// `sha256:<hex>` over the Feature's content: the manifest digest for OCI Features, the
    /// archive's digest for tarballs, and a digest of a canonical tar of the folder for local
    /// Features.
    pub content_digest: String,
    /// For OCI Features, `registry/repository@sha256:...` as pinned; `None` otherwise.
    pub resolved: Option<String>,
}

/// One install of a Feature with one set of options. The same Feature with two option sets is
/// two instances.
#[derive(Debug, Clone)]
pub struct FeatureInstance {
    pub feature: Arc<FetchedFeature>,
    /// The options as the user or the `dependsOn` entry wrote them.
    pub user_options: BTreeMap<String, OptionValue>,
    /// Every declared option: defaults overlaid by `user_options`.
    pub options: BTreeMap<String, OptionValue>,
    pub origin: Origin,
    /// Whether the options were written as a plain string (`"feature": "1.2"`), which the
    /// reference orders and compares apart from the same value written as an object.
    pub shorthand: bool,
}

/// Why an instance is in the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Listed in devcontainer.json at this location.
    Listed(Location),
    /// Pulled in by a `dependsOn` entry of `parent` (its id), written at `location` in the
    /// parent's `devcontainer-feature.json` when known.
    DependsOn {
        parent: String,
        location: Option<Location>,
    },
}

impl Origin {
    /// The devcontainer.json location this instance traces back to, for error messages.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Origin::Listed(location) => Some(location),
            Origin::DependsOn { location, .. } => location.as_ref(),
        }
    }
}
