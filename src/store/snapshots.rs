//! Unpacked layers, one folder each, in overlayfs's on-disk format, so that the local engine can
//! stack them as lower folders of an overlay mount.
//!
//! Snapshots are content-addressed: every layer, of a base image or of a built step, is kept
//! under its `diff_id`, so one id always names the same content. A snapshot becomes visible
//! only by renaming a finished folder into place from the store's `tmp/`, which is on the same
//! filesystem, so a crash or an error leaves no half-made snapshot behind. A snapshot in place
//! is never removed or replaced, because another build may have it mounted as a lower folder.

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
    /// snapshot `id`. If the snapshot already exists, `dir` is removed and the existing one kept:
    /// the same id means the same content, and the existing folder may be mounted right now.
    pub fn insert(&self, id: &str, dir: &Path) -> Result<PathBuf, Error> {
        use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};

        let path = self.path(id);
        // A plain rename would replace an existing empty folder; this one never replaces.
        match renameat2(
            AT_FDCWD,
            dir,
            AT_FDCWD,
            &path,
            RenameFlags::RENAME_NOREPLACE,
        ) {
            Ok(()) => Ok(path),
            // Another build finished the same snapshot first; both have the same content.
            Err(_) if path.is_dir() => {
                remove_tree(dir)?;
                Ok(path)
            }
            Err(errno) => Err(Error::io("move into place", &path)(errno.into())),
        }
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
    fn insert_keeps_an_existing_empty_snapshot_in_place() {
        use std::os::unix::fs::MetadataExt;

        let (root, snapshots) = snapshots();
        let first = root.path().join("tmp/first");
        std::fs::create_dir(&first).unwrap();
        let path = snapshots.insert(ID, &first).unwrap();
        let inode = std::fs::metadata(&path).unwrap().ino();

        // An empty folder is what a rename would silently replace.
        let second = root.path().join("tmp/second");
        std::fs::create_dir(&second).unwrap();
        assert_eq!(snapshots.insert(ID, &second).unwrap(), path);

        assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode);
        assert!(!second.exists());
        assert_eq!(tmp_entries(root.path()), 0);
    }
}
