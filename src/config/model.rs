//! The resolved devcontainer.json model.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::Location;

/// A devcontainer.json after parsing, validation and build-time variable substitution.
#[derive(Debug, Clone)]
pub struct Config {
    /// The devcontainer.json file.
    pub file: PathBuf,
    /// The folder that holds the file (`.devcontainer/` or the workspace for `.devcontainer.json`).
    pub config_dir: PathBuf,
    /// The workspace folder: the project root that contains `.devcontainer/`.
    pub workspace: PathBuf,
    pub image: ImageSource,
    /// Features in the order their keys appear in the file.
    pub features: Vec<FeatureEntry>,
    /// `overrideFeatureInstallOrder` entries, with where each was written.
    pub override_install_order: Vec<(String, Location)>,
    /// `containerEnv`, substituted, in the order written.
    pub container_env: Vec<(String, String)>,
    pub container_user: Option<String>,
    pub remote_user: Option<String>,
    pub update_remote_user_uid: Option<bool>,
    /// The devcontainer.json entry of the `devcontainer.metadata` label: the properties the
    /// reference CLI keeps, with raw (unsubstituted) values, in its key order.
    pub metadata_entry: serde_json::Map<String, serde_json::Value>,
}

/// Where the base image comes from.
#[derive(Debug, Clone)]
pub struct ImageSource {
    /// The `image` value as written after substitution, such as `127.0.0.1:5000/debian:bookworm`
    /// or `oci:DIR[:TAG]`.
    pub reference: String,
    pub location: Location,
}

/// One entry of the `features` object.
#[derive(Debug, Clone)]
pub struct FeatureEntry {
    /// The key as written, such as `./features/app-tool` or `ghcr.io/devcontainers/features/git:1`.
    pub reference: String,
    pub options: FeatureOptions,
    /// Where the key starts.
    pub location: Location,
}

/// The value of a `features` entry.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureOptions {
    /// `"id": "1.2"`: shorthand for the `version` option.
    Shorthand(String),
    /// `"id": { "opt": value, ... }`, with where each value was written.
    Map(BTreeMap<String, (OptionValue, Location)>),
}

/// An option value as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(untagged)]
pub enum OptionValue {
    Bool(bool),
    String(String),
}

impl OptionValue {
    /// The value as an install script sees it in its environment.
    pub fn to_env_string(&self) -> String {
        match self {
            OptionValue::Bool(b) => b.to_string(),
            OptionValue::String(s) => s.clone(),
        }
    }
}
