//! Overlay mounts: read-only snapshots below, one upper folder that collects what a script
//! changes.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use crate::engine::Error;

/// Options that keep the upper folder a plain diff: no index, no redirects, no metadata-only
/// copies, so every changed file is copied up whole and a renamed folder is copied, not linked.
/// `volatile` skips the sync of the whole upper filesystem at unmount, which took 50 to 250 ms
/// per step on a busy disk. The layer blob written from the upper folder is synced on its own.
const PLAIN_DIFF: &str = "index=off,redirect_dir=off,metacopy=off,volatile";

/// A mounted overlay, unmounted when dropped.
#[derive(Debug)]
pub(super) struct OverlayMount {
    target: PathBuf,
    mounted: bool,
}

impl OverlayMount {
    /// Mounts `lowers` (newest first) with `upper` and `work` on `target`.
    pub(super) fn mount(
        lowers: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> Result<OverlayMount, Error> {
        let data = mount_data(lowers, upper, work)?;
        nix::mount::mount(
            Some("overlay"),
            target,
            Some("overlay"),
            MsFlags::empty(),
            Some(data.as_str()),
        )
        .map_err(|errno| Error::Io {
            action: format!("mount overlayfs on `{}` ({data})", target.display()),
            source: errno.into(),
        })?;
        Ok(OverlayMount {
            target: target.to_path_buf(),
            mounted: true,
        })
    }

    /// Unmounts now, reporting a failure; dropping unmounts too but cannot report.
    pub(super) fn unmount(mut self) -> Result<(), Error> {
        self.mounted = false;
        unmount(&self.target)
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        if self.mounted {
            if let Err(e) = unmount(&self.target) {
                tracing::warn!("{e}: {:?}", std::error::Error::source(&e));
            }
        }
    }
}

fn unmount(target: &Path) -> Result<(), Error> {
    let result = nix::mount::umount2(target, MntFlags::empty()).or_else(|errno| {
        // Still busy (a process that has not quite exited): detach it; the kernel finishes
        // the unmount once the last user is gone.
        if errno == nix::errno::Errno::EBUSY {
            nix::mount::umount2(target, MntFlags::MNT_DETACH)
        } else {
            Err(errno)
        }
    });
    result.map_err(|errno| Error::Io {
        action: format!("unmount `{}`", target.display()),
        source: errno.into(),
    })
}

/// The option string. overlayfs splits it at `,` and the lower list at `:`, so paths with
/// those characters are refused rather than escaped.
fn mount_data(lowers: &[PathBuf], upper: &Path, work: &Path) -> Result<String, Error> {
    let mut paths = Vec::with_capacity(lowers.len());
    for path in lowers.iter().map(PathBuf::as_path).chain([upper, work]) {
        paths.push(mountable(path)?);
    }
    let (work, upper) = (
        paths.pop().unwrap_or_default(),
        paths.pop().unwrap_or_default(),
    );
    let data = format!(
        "lowerdir={},upperdir={upper},workdir={work},{PLAIN_DIFF}",
        paths.join(":")
    );
    // NOTE: mount(2) takes at most one page of options, which at the store's path lengths is
    // about 40 layers. Mounting through fsconfig's `lowerdir+` (Linux 6.8 and later) would lift
    // the limit; until then a longer chain fails here with a clear message.
    if data.len() >= MAX_MOUNT_DATA {
        return Err(Error::MissingPrerequisite {
            what: format!(
                "{} layers are too many for one overlay mount: the mount options take {} bytes, \
                 more than the kernel's {MAX_MOUNT_DATA}",
                lowers.len(),
                data.len()
            ),
            hint: "use a shorter store path with `--store DIR`, or a base image with fewer layers"
                .into(),
        });
    }
    Ok(data)
}

/// Returns `path` as text for overlay mount options.
///
/// # Errors
/// [`Error::UnusableStore`] when it contains `,`, `:` or `\`, which overlayfs would split at
/// or take as an escape, or is not UTF-8.
pub(super) fn mountable(path: &Path) -> Result<&str, Error> {
    let text = path.to_str().filter(|t| !t.contains([',', ':', '\\']));
    text.ok_or_else(|| Error::UnusableStore {
        what: format!(
            "store path `{}` cannot be used in an overlay mount: it contains `,`, `:` or `\\`, \
             or is not UTF-8",
            path.display()
        ),
        hint: "put the store under a plain path with `--store DIR` or `ENVC_STORE`".into(),
    })
}

/// The most bytes of mount options the kernel reads: one page, including the final NUL.
const MAX_MOUNT_DATA: usize = 4096;

/// Checks that overlayfs can be mounted here, with the store's filesystem as upper, by
/// mounting a tiny overlay under `scratch` and unmounting it.
pub(super) fn probe(scratch: &Path) -> Result<(), Error> {
    let lower = scratch.join("lower");
    let upper = scratch.join("upper");
    let work = scratch.join("work");
    let merged = scratch.join("merged");
    for dir in [&lower, &upper, &work, &merged] {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            action: format!("create `{}`", dir.display()),
            source,
        })?;
    }
    let mount = OverlayMount::mount(&[lower], &upper, &work, &merged)?;
    mount.unmount()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_lowers_are_rejected_with_a_count() {
        let lowers: Vec<PathBuf> = (0..60)
            .map(|i| PathBuf::from(format!("/var/cache/envc/snapshots/sha256-{i:064}")))
            .collect();
        let error = mount_data(&lowers, Path::new("/u"), Path::new("/w")).unwrap_err();
        assert!(
            error.to_string().contains("60 layers are too many"),
            "{error}"
        );
    }

    #[test]
    fn lowers_are_joined_newest_first_with_plain_diff_options() {
        let data = mount_data(
            &["/s/step".into(), "/s/base".into()],
            Path::new("/t/upper"),
            Path::new("/t/work"),
        )
        .unwrap();
        assert_eq!(
            data,
            "lowerdir=/s/step:/s/base,upperdir=/t/upper,workdir=/t/work,\
             index=off,redirect_dir=off,metacopy=off,volatile"
        );
    }

    #[test]
    fn paths_that_overlayfs_would_split_are_refused() {
        let err = mount_data(&["/s/a,b".into()], Path::new("/t/u"), Path::new("/t/w")).unwrap_err();
        assert!(err.to_string().contains("`/s/a,b`"), "{err}");
        assert!(mount_data(&["/s/a".into()], Path::new("/t:u"), Path::new("/t/w")).is_err());
    }
}
