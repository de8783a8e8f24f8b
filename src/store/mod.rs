//! envc's local store: an OCI image layout of blobs and tagged images, the step cache, and the
//! unpacked snapshots the local engine mounts.
//!
//! Layout under the root (`$ENVC_STORE`, `--store`, or `$XDG_CACHE_HOME/envc`):
//! `oci/` is an OCI image layout, `cache/` maps step cache keys and plan digests to what they
//! produced, `snapshots/` holds unpacked layers, `tmp/` holds work in progress. Everything
//! becomes visible by an atomic rename, so an interrupted build leaves no partial entry.

mod cache;
mod content;
pub mod remote;
mod snapshots;

pub use cache::{PlanRecord, StepRecord};
pub use content::ContentStore;
pub use snapshots::Snapshots;

use std::path::{Path, PathBuf};

/// Errors reading or writing the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {action} `{}`", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("store entry `{}` is corrupt: {reason}", .path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("blob `{0}` is not in the store")]
    MissingBlob(String),
}

impl Error {
    pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.to_path_buf();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}

/// The store rooted at one folder.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    content: ContentStore,
    snapshots: Snapshots,
}

impl Store {
    /// Opens the store at `root`, creating its folders.
    pub fn open(root: &Path) -> Result<Store, Error> {
        for sub in ["oci", "cache/steps", "cache/plans", "snapshots", "tmp"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
        }
        Ok(Store {
            root: root.to_path_buf(),
            content: ContentStore::open(&root.join("oci"), &root.join("tmp"))?,
            snapshots: Snapshots::new(&root.join("snapshots"), &root.join("tmp")),
        })
    }

    /// The default root: `$ENVC_STORE`, else `$XDG_CACHE_HOME/envc`, else `~/.cache/envc`.
    pub fn default_root() -> PathBuf {
        if let Some(dir) = std::env::var_os("ENVC_STORE") {
            return PathBuf::from(dir);
        }
        if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
            return PathBuf::from(dir).join("envc");
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/root".into());
        home.join(".cache").join("envc")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    pub fn snapshots(&self) -> &Snapshots {
        &self.snapshots
    }

    /// A fresh folder under `tmp/`, removed when the returned guard drops.
    pub fn temp_dir(&self, prefix: &str) -> Result<tempfile::TempDir, Error> {
        let tmp = self.root.join("tmp");
        tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(&tmp)
            .map_err(Error::io("create", &tmp))
    }
}
