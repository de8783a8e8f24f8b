//! Unpacked layers, one folder each, in overlayfs's format.

use std::path::{Path, PathBuf};

/// The snapshot folders of the store.
#[derive(Debug, Clone)]
pub struct Snapshots {
    root: PathBuf,
    tmp: PathBuf,
}

impl Snapshots {
    pub fn new(root: &Path, tmp: &Path) -> Snapshots {
        Snapshots { root: root.to_path_buf(), tmp: tmp.to_path_buf() }
    }

    /// The folder of snapshot `id`, whether or not it exists yet.
    pub fn path(&self, id: &str) -> PathBuf {
        let _ = &self.tmp;
        self.root.join(id.replace(':', "-"))
    }
}
