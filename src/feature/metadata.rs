//! `devcontainer-feature.json`.

use std::path::PathBuf;

/// A parsed `devcontainer-feature.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureMetadata {
    /// The file it was read from.
    pub file: PathBuf,
    pub id: String,
    pub version: Option<String>,
    pub name: Option<String>,
    /// Declared options in the order written.
    pub options: Vec<(String, OptionSpec)>,
    /// `containerEnv` in the order written.
    pub container_env: Vec<(String, String)>,
    /// `dependsOn` keys and their option objects, in the order written.
    pub depends_on: Vec<(String, serde_json::Map<String, serde_json::Value>)>,
    pub installs_after: Vec<String>,
    pub legacy_ids: Vec<String>,
    /// The whole document, for the metadata label and the SBOM.
    pub raw: serde_json::Map<String, serde_json::Value>,
}

/// A declared option.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionSpec {
    Boolean { default: bool },
    /// A string option; with `enum_values` the value must be one of them, `proposals` are hints.
    String { default: String, enum_values: Option<Vec<String>>, proposals: Vec<String> },
}
