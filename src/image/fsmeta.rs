//! Extended attributes, device nodes and ownership of paths, never following a final symlink.
//!
//! Thin safe wrappers over the `l*xattr` calls (which `nix` does not cover) and over `nix` for
//! the rest, so the layer code reads as steps.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::libc;

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn c_name(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "xattr name contains a NUL byte",
        )
    })
}

/// Lists the names of the extended attributes of `path`, sorted by bytes.
pub(crate) fn list_xattrs(path: &Path) -> io::Result<Vec<String>> {
    let cpath = c_path(path)?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: `cpath` is NUL-terminated and `buf` is a live buffer of the given length.
        let n = unsafe { libc::llistxattr(cpath.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf.truncate(n as usize);
            break;
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ERANGE) => buf.resize(buf.len() * 4, 0),
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            _ => return Err(err),
        }
    }
    let mut names = Vec::new();
    for raw in buf.split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let name = std::str::from_utf8(raw).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidData, "xattr name is not valid UTF-8")
        })?;
        names.push(name.to_string());
    }
    names.sort();
    Ok(names)
}

/// The value of extended attribute `name` of `path`, or `None` when it is not set.
pub(crate) fn get_xattr(path: &Path, name: &str) -> io::Result<Option<Vec<u8>>> {
    let cpath = c_path(path)?;
    let cname = c_name(name)?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: both strings are NUL-terminated and `buf` is a live buffer of the given length.
        let n = unsafe {
            libc::lgetxattr(
                cpath.as_ptr(),
                cname.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(Some(buf));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ERANGE) => buf.resize(buf.len() * 4, 0),
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => return Ok(None),
            _ => return Err(err),
        }
    }
}

/// Sets extended attribute `name` of `path` to `value`.
pub(crate) fn set_xattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let cpath = c_path(path)?;
    let cname = c_name(name)?;
    // SAFETY: both strings are NUL-terminated and `value` is a live slice of the given length.
    let rc = unsafe {
        libc::lsetxattr(
            cpath.as_ptr(),
            cname.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Creates a device node or fifo; `kind` is `S_IFCHR`, `S_IFBLK` or `S_IFIFO`.
pub(crate) fn mknod(
    path: &Path,
    kind: libc::mode_t,
    perm: u32,
    major: u64,
    minor: u64,
) -> io::Result<()> {
    use nix::sys::stat::{makedev, Mode, SFlag};
    let sflag = SFlag::from_bits_truncate(kind);
    let mode = Mode::from_bits_truncate(perm as libc::mode_t);
    nix::sys::stat::mknod(path, sflag, mode, makedev(major, minor)).map_err(io::Error::from)
}

/// Sets the owner of `path` itself, not of what a symlink points to.
pub(crate) fn lchown(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        path,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(io::Error::from)
}

/// Sets access and modification time of `path` itself to `mtime` seconds.
pub(crate) fn set_mtime(path: &Path, mtime: i64) -> io::Result<()> {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    let ts = TimeSpec::new(mtime, 0);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &ts,
        &ts,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xattrs_round_trip_and_list_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        set_xattr(&file, "user.b", b"2").unwrap();
        set_xattr(&file, "user.a", b"\x00\x01").unwrap();
        let names: Vec<_> = list_xattrs(&file)
            .unwrap()
            .into_iter()
            .filter(|n| n.starts_with("user."))
            .collect();
        assert_eq!(names, ["user.a", "user.b"]);
        assert_eq!(
            get_xattr(&file, "user.a").unwrap().as_deref(),
            Some(&b"\x00\x01"[..])
        );
        assert_eq!(get_xattr(&file, "user.missing").unwrap(), None);
    }

    #[test]
    fn set_mtime_does_not_follow_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("t");
        std::fs::write(&target, b"x").unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink("t", &link).unwrap();
        set_mtime(&link, 1000).unwrap();
        let meta = std::fs::symlink_metadata(&link).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::mtime(&meta), 1000);
        let target_meta = std::fs::metadata(&target).unwrap();
        assert_ne!(std::os::unix::fs::MetadataExt::mtime(&target_meta), 1000);
    }
}
