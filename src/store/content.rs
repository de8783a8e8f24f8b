//! Blobs and tags in an OCI image layout.

use std::path::{Path, PathBuf};

use super::Error;

/// The OCI image layout part of the store.
#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
    tmp: PathBuf,
}

impl ContentStore {
    pub fn open(root: &Path, tmp: &Path) -> Result<ContentStore, Error> {
        Ok(ContentStore { root: root.to_path_buf(), tmp: tmp.to_path_buf() })
    }

    /// Where blob `digest` (`sha256:<hex>`) lives, whether or not it exists yet.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.root.join("blobs").join("sha256").join(hex)
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        let _ = &self.tmp;
        self.blob_path(digest).is_file()
    }
}
