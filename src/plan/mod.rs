//! The build plan: an immutable value with everything an engine needs, with a cache key
//! per step and a digest for the whole.
//!
//! A step's cache key is the SHA-256 of its parent's key (the base image's manifest digest for
//! the first step), the Feature's content digest, its resolved options, the environment its
//! script sees and the settings that change its layer's bytes. The plan digest is the SHA-256
//! of the last step's key and the final image config, so two plans with the same digest build
//! the same image.

mod base;
mod build;
pub mod env;
mod keys;

pub use base::{host_architecture, resolve_base};
pub use build::{make_plan, METADATA_LABEL};

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::config::Location;
use crate::engine::Network;
use crate::image::Compression;

/// Errors in making a plan.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{message}")]
    Invalid {
        message: String,
        hint: Option<String>,
    },
    #[error("{location}: failed to resolve base image `{reference}`")]
    Base {
        reference: String,
        /// The location of `image` in devcontainer.json.
        location: crate::config::Location,
        #[source]
        source: crate::registry::Error,
    },
}

impl Error {
    pub fn is_invalid_input(&self) -> bool {
        match self {
            Error::Invalid { .. } => true,
            Error::Base { source, .. } => source.is_invalid_input(),
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Invalid { hint, .. } => hint.clone(),
            Error::Base { source, .. } => source.hint(),
        }
    }
}

/// Everything that decides the bytes of the image.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildPlan {
    /// The devcontainer.json the plan was made from.
    pub config_file: PathBuf,
    pub base: BasePlan,
    /// One step per Feature instance, in install order.
    pub features: Vec<Step>,
    pub image: ImagePlan,
    pub settings: Settings,
    /// SHA-256 over the last step's cache key and the final image config.
    pub plan_digest: String,
}

/// The base image, pinned.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BasePlan {
    /// The `image` value as written, such as `127.0.0.1:5000/debian:bookworm`.
    pub reference: String,
    /// The digest of the platform manifest the build starts from.
    pub digest: String,
    /// The origin of the base: a registry repository, or an OCI layout folder.
    #[serde(skip)]
    pub source: BaseSource,
    /// The base manifest's exact bytes.
    #[serde(skip)]
    pub manifest: Vec<u8>,
    /// The base image config's exact bytes.
    #[serde(skip)]
    pub config: Vec<u8>,
}

#[derive(Debug, Clone)]
pub enum BaseSource {
    Registry(crate::registry::ImageRef),
    Layout { dir: PathBuf },
}

/// One Feature install.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub id: String,
    /// The reference as written.
    #[serde(rename = "ref")]
    pub reference: String,
    pub version: Option<String>,
    /// Every declared option with its resolved value.
    pub options: BTreeMap<String, crate::config::OptionValue>,
    /// `sha256:` digest of the Feature's content.
    pub content_digest: String,
    /// For OCI Features, the pinned `registry/repository@sha256:...`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved: Option<String>,
    pub cache_key: String,
    /// The folder with the Feature's files, mounted read-only while its script runs.
    #[serde(skip)]
    pub feature_dir: PathBuf,
    /// The install command, relative to `feature_dir`, such as `["/bin/sh", "./install.sh"]`.
    #[serde(skip)]
    pub command: Vec<String>,
    /// The script's environment, in order: the image `Env` so far (with this Feature's
    /// `containerEnv`), then the option variables, then the user variables. The engine adds
    /// `_REMOTE_USER_HOME` and `_CONTAINER_USER_HOME`, which it reads from the image.
    #[serde(skip)]
    pub env: Vec<(String, String)>,
    /// The remote and container user, whose homes the engine looks up.
    #[serde(skip)]
    pub users: Users,
    /// The location where this Feature was listed, when the user listed it.
    #[serde(skip)]
    pub location: Option<Location>,
    #[serde(skip)]
    pub required_by: Option<String>,
}

/// The users passed to install scripts as `_REMOTE_USER` and `_CONTAINER_USER`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Users {
    pub remote: String,
    pub container: String,
}

/// The final image config, as far as the plan decides it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImagePlan {
    /// `Env`, `KEY=value`, in order.
    pub env: Vec<String>,
    /// `User`, when set.
    pub user: Option<String>,
    /// Labels to add, including `devcontainer.metadata`.
    pub labels: BTreeMap<String, String>,
}

/// Settings that change the layers' bytes.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    pub compression: Compression,
    pub source_date_epoch: i64,
    pub network: Network,
}
