//! What the local engine needs from the machine: root, runc and a usable overlayfs. Each is
//! checked before any step runs, so a missing one fails at once with what to do about it.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::engine::Error;

/// Names the runc binary to use instead of the one on `PATH`.
pub(super) const RUNC_VAR: &str = "ENVC_RUNC";

/// Fails unless the effective user is root.
pub(super) fn check_root() -> Result<(), Error> {
    if nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    Err(Error::MissingPrerequisite {
        what: format!(
            "the local engine must run as root (effective uid is `{}`): it mounts overlayfs and \
             starts containers with runc",
            nix::unistd::geteuid()
        ),
        hint: "run envc as root, for example with `sudo envc build`".into(),
    })
}

/// The runc binary: `$ENVC_RUNC` when set, else `runc` on `PATH`.
pub(super) fn find_runc() -> Result<PathBuf, Error> {
    find_runc_in(std::env::var_os(RUNC_VAR), std::env::var_os("PATH"))
}

fn find_runc_in(explicit: Option<OsString>, path: Option<OsString>) -> Result<PathBuf, Error> {
    if let Some(explicit) = explicit.filter(|v| !v.is_empty()) {
        let explicit = PathBuf::from(explicit);
        if is_executable(&explicit) {
            return Ok(explicit);
        }
        return Err(Error::MissingPrerequisite {
            what: format!(
                "{RUNC_VAR} names `{}`, which is not an executable file",
                explicit.display()
            ),
            hint: format!("point {RUNC_VAR} at a runc binary, or unset it to use `runc` on PATH"),
        });
    }
    let found = path
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("runc"))
        .find(|candidate| is_executable(candidate));
    found.ok_or_else(|| Error::MissingPrerequisite {
        what: "runc was not found on PATH; the local engine runs install scripts with it".into(),
        hint: format!("install it with `apt-get install runc`, or set {RUNC_VAR} to its path"),
    })
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Fails unless an overlay can be mounted with its folders under `scratch`.
pub(super) fn check_overlay(scratch: &Path) -> Result<(), Error> {
    super::overlay::probe(scratch).map_err(|e| {
        let cause = std::error::Error::source(&e)
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        Error::MissingPrerequisite {
            what: format!(
                "overlayfs cannot be mounted with folders under `{}`{cause}",
                scratch.display()
            ),
            hint: "load the module with `modprobe overlay`, and keep the store (`--store` or \
                   ENVC_STORE) on a filesystem overlayfs accepts as upper, such as ext4, xfs or \
                   tmpfs"
                .into(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn executable(dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn runc_is_found_on_path_or_from_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let runc = executable(&bin, "runc");
        let path = std::env::join_paths([dir.path().join("none"), bin.clone()]).unwrap();
        assert_eq!(find_runc_in(None, Some(path.clone())).unwrap(), runc);

        let other = executable(dir.path(), "my-runc");
        assert_eq!(
            find_runc_in(Some(other.clone().into()), Some(path)).unwrap(),
            other
        );
    }

    #[test]
    fn a_missing_runc_says_how_to_get_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_runc_in(None, Some(dir.path().into())).unwrap_err();
        assert!(
            err.to_string().contains("runc was not found on PATH"),
            "{err}"
        );
        assert!(err.hint().unwrap().contains("apt-get install runc"));

        let plain = dir.path().join("runc");
        std::fs::write(&plain, "not executable").unwrap();
        let err = find_runc_in(Some(plain.clone().into()), None).unwrap_err();
        assert!(
            err.to_string().contains(&format!("`{}`", plain.display())),
            "{err}"
        );
        assert!(find_runc_in(None, Some(dir.path().into())).is_err());
    }

    #[test]
    fn root_is_required() {
        let result = check_root();
        if nix::unistd::geteuid().is_root() {
            assert!(result.is_ok());
        } else {
            assert!(result.unwrap_err().hint().unwrap().contains("as root"));
        }
    }
}
