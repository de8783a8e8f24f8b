//! Feature references: OCI, tarball URL or local folder.

use std::path::PathBuf;

/// A Feature reference as written, with its parsed source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureRef {
    /// The reference exactly as written in devcontainer.json or a `dependsOn` key.
    pub written: String,
    pub source: FeatureSource,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FeatureSource {
    /// A folder under `.devcontainer/`, as an absolute path.
    Local { path: PathBuf },
    /// `registry/namespace/id[:tag|@sha256:...]`.
    Oci(crate::registry::ImageRef),
    /// An `https://.../devcontainer-feature-<id>.tgz` archive.
    Tarball { url: String },
}
