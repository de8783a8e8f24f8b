//! Unpacked layers, one folder each, in overlayfs's on-disk format, so that the local engine can
//! stack them as lower folders of an overlay mount.
//!
//! A base image layer is kept under its `diff_id`, a built step under its cache key. A snapshot
//! becomes visible only by renaming a finished folder into place from the store's `tmp/`, which
//! is on the same filesystem, so a crash or an error leaves no half-made snapshot behind.

use std::path::{Path, PathBuf};

use super::Error;

/// The snapshot folders of the store.
#[derive(Debug, Clone)]
pub struct Snapshots {
    root: PathBuf,
    tmp: PathBuf,
}

impl Snapshots {
    pub fn new(root: &Path, tmp: &Path) -> Snapshots {
        Snapshots {
            root: root.to_path_buf(),
            tmp: tmp.to_path_buf(),
        }
    }

    /// The folder of snapshot `id` (a `sha256:<hex>` key), whether or not it exists yet.
    pub fn path(&self, id: &str) -> PathBuf {
        self.root.join(id.replace(':', "-"))
    }

    /// The folder of snapshot `id` if it exists.
    pub fn get(&self, id: &str) -> Option<PathBuf> {
        let path = self.path(id);
        path.is_dir().then_some(path)
    }

    /// The folder of snapshot `id`, made first by `make` if it does not exist.
    ///
    /// `make` fills an empty folder under the store's `tmp/`; when it succeeds the folder is
    /// renamed into place, and when it fails the folder is removed. If another build made the
    /// same snapshot meanwhile, that one is kept and this one is dropped.
    ///
    /// # Errors
    ///
    /// What `make` returns, or a store error when the folder cannot be made or moved.
    pub fn ensure<E, F>(&self, id: &str, make: F) -> Result<PathBuf, E>
    where
        E: From<Error>,
        F: FnOnce(&Path) -> Result<(), E>,
    {
        if let Some(path) = self.get(id) {
            return Ok(path);
        }
        let work = tempfile::Builder::new()
            .prefix("snapshot-")
            .tempdir_in(&self.tmp)
            .map_err(Error::io("create", &self.tmp))?;
        let dir = work.path().join("fs");
        std::fs::create_dir(&dir).map_err(Error::io("create", &dir))?;

        make(&dir)?;

        Ok(self.insert(id, &dir)?)
    }

    /// Moves the finished folder `dir`, which must be on the store's filesystem, into place as
    /// snapshot `id`. If the snapshot already exists, `dir` is removed and the existing one kept.
    pub fn insert(&self, id: &str, dir: &Path) -> Result<PathBuf, Error> {
        let path = self.path(id);
        match std::fs::rename(dir, &path) {
            Ok(()) => Ok(path),
            // Another build finished the same snapshot first; both have the same content.
            Err(_) if path.is_dir() => {
                remove_tree(dir)?;
                Ok(path)
            }
            Err(e) => Err(Error::io("move into place", &path)(e)),
        }
    }

    /// Removes snapshot `id`, for example one whose content turned out wrong. Removing a
    /// snapshot that does not exist is not an error.
    ///
    /// The folder is first renamed into `tmp/`, so a removal cut short leaves no partial
    /// snapshot under its key.
    pub fn remove(&self, id: &str) -> Result<(), Error> {
        let path = self.path(id);
        if !path.exists() {
            return Ok(());
        }
        let grave = tempfile::Builder::new()
            .prefix("removing-")
            .tempdir_in(&self.tmp)
            .map_err(Error::io("create", &self.tmp))?;
        let target = grave.path().join("fs");
        std::fs::rename(&path, &target).map_err(Error::io("move away", &path))?;
        remove_tree(grave.path())
    }
}

/// Removes `path` and everything under it; a missing path is fine.
pub(crate) fn remove_tree(path: &Path) -> Result<(), Error> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshots() -> (tempfile::TempDir, Snapshots) {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("snapshots")).unwrap();
        std::fs::create_dir(root.path().join("tmp")).unwrap();
        let snapshots = Snapshots::new(&root.path().join("snapshots"), &root.path().join("tmp"));
        (root, snapshots)
    }

    fn tmp_entries(root: &Path) -> usize {
        std::fs::read_dir(root.join("tmp")).unwrap().count()
    }

    const ID: &str = "sha256:0123abcd";

    #[test]
    fn ensure_makes_a_snapshot_once() {
        let (root, snapshots) = snapshots();
        assert!(snapshots.get(ID).is_none());

        let path = snapshots
            .ensure(ID, |dir| {
                std::fs::write(dir.join("file"), "one").map_err(Error::io("write", dir))
            })
            .unwrap();
        assert_eq!(path, root.path().join("snapshots/sha256-0123abcd"));
        assert_eq!(std::fs::read_to_string(path.join("file")).unwrap(), "one");

        let again = snapshots
            .ensure(ID, |_| -> Result<(), Error> {
                panic!("must not run for an existing snapshot")
            })
            .unwrap();
        assert_eq!(again, path);
        assert_eq!(snapshots.get(ID), Some(path));
        assert_eq!(tmp_entries(root.path()), 0);
    }

    #[test]
    fn a_failed_make_leaves_nothing() {
        let (root, snapshots) = snapshots();
        let result = snapshots.ensure(ID, |dir| {
            std::fs::write(dir.join("half"), "x").unwrap();
            Err(Error::MissingBlob("sha256:gone".into()))
        });
        assert!(matches!(result, Err(Error::MissingBlob(_))));
        assert!(snapshots.get(ID).is_none());
        assert!(!snapshots.path(ID).exists());
        assert_eq!(tmp_entries(root.path()), 0);
    }

    #[test]
    fn insert_keeps_an_existing_snapshot() {
        let (root, snapshots) = snapshots();
        let first = root.path().join("tmp/first");
        std::fs::create_dir(&first).unwrap();
        std::fs::write(first.join("file"), "first").unwrap();
        let path = snapshots.insert(ID, &first).unwrap();

        let second = root.path().join("tmp/second");
        std::fs::create_dir(&second).unwrap();
        std::fs::write(second.join("file"), "second").unwrap();
        assert_eq!(snapshots.insert(ID, &second).unwrap(), path);

        assert_eq!(std::fs::read_to_string(path.join("file")).unwrap(), "first");
        assert!(!second.exists());
        assert_eq!(tmp_entries(root.path()), 0);
    }

    #[test]
    fn remove_deletes_the_snapshot_and_tolerates_a_missing_one() {
        let (root, snapshots) = snapshots();
        let path = snapshots
            .ensure(ID, |dir| {
                let sub = dir.join("a/b");
                std::fs::create_dir_all(&sub).map_err(Error::io("create", &sub))
            })
            .unwrap();
        snapshots.remove(ID).unwrap();
        assert!(!path.exists());
        assert_eq!(tmp_entries(root.path()), 0);
        snapshots.remove(ID).unwrap();
    }
}
