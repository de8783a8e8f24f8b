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
    /// The origin of the base image: a reference, or a Dockerfile to build.
    pub source: Source,
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
pub enum Source {
    /// `image`: a prebuilt image.
    Image(ImageSource),
    /// `build.dockerfile` (or the legacy `dockerFile`): a stage built from a Dockerfile.
    Dockerfile(DockerfileSource),
}

impl Source {
    /// Returns where the source was written: the `image` value, or the `build` or `dockerFile`
    /// key.
    pub fn location(&self) -> &Location {
        match self {
            Source::Image(image) => &image.location,
            Source::Dockerfile(dockerfile) => &dockerfile.location,
        }
    }
}

/// A prebuilt base image.
#[derive(Debug, Clone)]
pub struct ImageSource {
    /// The `image` value as written after substitution, such as `127.0.0.1:5000/debian:bookworm`
    /// or `oci:DIR[:TAG]`.
    pub reference: String,
    pub location: Location,
}

/// A base image built from a Dockerfile, with paths resolved against the config's folder.
#[derive(Debug, Clone)]
pub struct DockerfileSource {
    /// The Dockerfile, absolute.
    pub dockerfile: PathBuf,
    /// The build context folder, absolute (`build.context`, `.` by default).
    pub context: PathBuf,
    /// `build.args`, substituted, in the order written.
    pub args: Vec<(String, String)>,
    /// `build.target`: the stage to build; the last stage when unset.
    pub target: Option<String>,
    /// `build.cacheFrom`: image references to import BuildKit cache from.
    pub cache_from: Vec<String>,
    /// `build.options`: `docker build` flags, as written.
    pub options: Vec<String>,
    /// The location of the `build` (or `dockerFile`) key.
    pub location: Location,
    /// The key as written, `build` or `dockerFile`, and a short form of its value, for messages.
    pub key: String,
    pub snippet: String,
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
