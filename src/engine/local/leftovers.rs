//! Runtime leftovers: mount points and files that runc creates in the root filesystem so it can
//! mount over them. They land in the upper folder but are no change of the script's, so they
//! are removed before the upper folder becomes a layer.
//!
//! Before the run, [`Leftovers::record`] notes which of the mount destinations and their parent
//! folders already exist in the merged root. After the run, [`Leftovers::remove`] deletes from
//! the upper folder what did not exist, and drops a folder that existed below and was only
//! copied up for them (empty, not opaque, owner and mode unchanged).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::engine::Error;

/// The state of a path before the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Before {
    Missing,
    Dir { mode: u32, uid: u32, gid: u32 },
    Other,
}

/// The mount destinations of one run and what each path on the way was before it.
#[derive(Debug, Default)]
pub(super) struct Leftovers {
    /// Container paths, relative to the root, with their state before the run.
    paths: BTreeMap<PathBuf, Before>,
}

impl Leftovers {
    /// Notes the state of each destination and its parents in `rootfs` (the merged root).
    pub(super) fn record<'a>(
        rootfs: &Path,
        destinations: impl IntoIterator<Item = &'a Path>,
    ) -> Leftovers {
        let mut paths = BTreeMap::new();
        for destination in destinations {
            let mut relative = PathBuf::new();
            for component in destination.components() {
                let Component::Normal(name) = component else {
                    continue;
                };
                relative.push(name);
                paths
                    .entry(relative.clone())
                    .or_insert_with(|| before(&rootfs.join(&relative)));
            }
        }
        Leftovers { paths }
    }

    /// Removes from `upper` what the runtime created, deepest paths first.
    pub(super) fn remove(&self, upper: &Path) -> Result<(), Error> {
        let mut paths: Vec<(&PathBuf, &Before)> = self.paths.iter().collect();
        paths.sort_by_key(|(path, _)| std::cmp::Reverse(path.components().count()));
        for (relative, before) in paths {
            let path = upper.join(relative);
            let Ok(now) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let removable = match *before {
                Before::Missing => true,
                Before::Dir { mode, uid, gid } => {
                    now.is_dir()
                        && (now.mode(), now.uid(), now.gid()) == (mode, uid, gid)
                        && !is_opaque(&path)
                }
                Before::Other => false,
            };
            if !removable {
                continue;
            }
            let result = if now.is_dir() {
                std::fs::remove_dir(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match result {
                Ok(()) => {}
                // The script put something there: it is part of the layer.
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOTEMPTY) => {}
                Err(source) => {
                    return Err(Error::Io {
                        action: format!("remove runtime leftover `{}`", path.display()),
                        source,
                    })
                }
            }
        }
        Ok(())
    }
}

fn before(path: &Path) -> Before {
    match std::fs::symlink_metadata(path) {
        Err(_) => Before::Missing,
        Ok(meta) if meta.is_dir() => Before::Dir {
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
        },
        Ok(_) => Before::Other,
    }
}

/// Whether overlayfs marked folder `path` opaque: the script removed the folder below and made
/// a new one, so removing it from the upper folder would bring the old content back.
fn is_opaque(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;

    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return true;
    };
    let mut value = [0u8; 4];
    // SAFETY: both strings are NUL-terminated and `value` is a writable buffer of the length
    // passed.
    let len = unsafe {
        nix::libc::lgetxattr(
            c_path.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    len > 0 && value[0] == b'y'
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// Sets up a "merged" view and an "upper" folder by hand, as they would be after a run.
    fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let merged = root.path().join("merged");
        let upper = root.path().join("upper");
        std::fs::create_dir_all(merged.join("proc")).unwrap();
        std::fs::create_dir_all(merged.join("etc")).unwrap();
        std::fs::create_dir_all(&upper).unwrap();
        (root, merged, upper)
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                found.extend(entries(&path).into_iter().map(|e| format!("{name}/{e}")));
            }
            found.push(name);
        }
        found.sort();
        found
    }

    #[test]
    fn created_mount_points_and_their_parents_go() {
        let (_root, merged, upper) = dirs();
        let leftovers = Leftovers::record(
            &merged,
            [
                Path::new("/proc"),
                Path::new("/sys"),
                Path::new("/.envc/features/hello"),
            ],
        );
        // What runc made: `/sys` and the Feature mount point with its parents.
        std::fs::create_dir_all(upper.join("sys")).unwrap();
        std::fs::create_dir_all(upper.join(".envc/features/hello")).unwrap();
        // What the script made.
        std::fs::write(upper.join("result"), "x").unwrap();

        leftovers.remove(&upper).unwrap();
        assert_eq!(entries(&upper), ["result"]);
    }

    #[test]
    fn a_created_parent_the_script_also_used_stays() {
        let (_root, merged, upper) = dirs();
        let leftovers = Leftovers::record(&merged, [Path::new("/.envc/features/hello")]);
        std::fs::create_dir_all(upper.join(".envc/features/hello")).unwrap();
        std::fs::write(upper.join(".envc/note"), "x").unwrap();

        leftovers.remove(&upper).unwrap();
        assert_eq!(entries(&upper), [".envc", ".envc/note"]);
    }

    #[test]
    fn a_folder_only_copied_up_goes_but_a_changed_one_stays() {
        let (_root, merged, upper) = dirs();
        let leftovers = Leftovers::record(&merged, [Path::new("/etc/resolv.conf")]);
        let mode = std::fs::metadata(merged.join("etc")).unwrap().mode();

        // Copied up with the same mode, plus the created file.
        std::fs::create_dir(upper.join("etc")).unwrap();
        std::fs::set_permissions(upper.join("etc"), std::fs::Permissions::from_mode(mode)).unwrap();
        std::fs::write(upper.join("etc/resolv.conf"), "").unwrap();
        leftovers.remove(&upper).unwrap();
        assert!(entries(&upper).is_empty());

        // The script changed the folder's mode: it stays.
        std::fs::create_dir(upper.join("etc")).unwrap();
        std::fs::set_permissions(upper.join("etc"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        leftovers.remove(&upper).unwrap();
        assert_eq!(entries(&upper), ["etc"]);
    }

    #[test]
    fn files_that_existed_are_kept() {
        let (_root, merged, upper) = dirs();
        std::fs::write(merged.join("etc/resolv.conf"), "old").unwrap();
        let leftovers = Leftovers::record(&merged, [Path::new("/etc/resolv.conf")]);
        std::fs::create_dir(upper.join("etc")).unwrap();
        std::fs::write(upper.join("etc/resolv.conf"), "changed by the script").unwrap();

        leftovers.remove(&upper).unwrap();
        assert_eq!(entries(&upper), ["etc", "etc/resolv.conf"]);
    }
}
