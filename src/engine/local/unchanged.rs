//! Unchanged copies: entries overlayfs copied into the upper folder although the script left
//! them as they were. Examples are a file opened for writing and closed unwritten (`useradd`
//! and `/etc/.pwd.lock`), a file given the mode it had, and a folder copied up only because an
//! entry inside was.
//!
//! [`drop_unchanged`] runs after the script, once the runtime leftovers are gone, and removes
//! from the upper folder each entry that equals the entry the lower folders show at its path,
//! so that a layer contains only what the script changed. Equal means what BuildKit's overlay
//! differ checks, so both engines make the same layer: the same type, permission bits, owner
//! and device number; for anything but a folder the same size and modification time, which
//! copy-up keeps to the nanosecond, so a file written again with the same bytes stays. Two
//! checks are stricter than BuildKit's, and either only keeps an entry: every extended
//! attribute a layer records must match (not only `security.capability`), and the bytes or
//! link target are compared even when the modification times agree to the nanosecond. Bytes
//! are read only when everything else matches.
//!
//! A folder goes when it is empty after its entries went and is neither opaque nor changed.
//! Whiteouts, opaque folders and entries that nothing below shows always stay. Only entries of
//! the upper folder are visited, and a folder that nothing below shows is not entered.

use std::ffi::OsStr;
use std::fs::Metadata;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::engine::Error;
use crate::image::fsmeta;
use crate::image::layer::{OPAQUE_XATTR, OVERLAY_XATTR_PREFIX};

/// Bytes read from each file at a time when comparing contents.
const CHUNK: usize = 64 * 1024;

/// Removes from `upper` every entry that equals what `lowers` (newest first, as mounted)
/// show at its path, and returns how many it removed.
///
/// # Errors
///
/// [`Error::Io`] naming the path that could not be read, compared or removed.
pub(super) fn drop_unchanged(upper: &Path, lowers: &[PathBuf]) -> Result<usize, Error> {
    let mut dropped = 0;
    sweep(upper, lowers, &mut dropped)?;
    Ok(dropped)
}

/// The entry the lower folders show at one path.
struct Below {
    /// Position of the lower folder it comes from, among those merged at its parent.
    index: usize,
    path: PathBuf,
    meta: Metadata,
}

/// Sweeps folder `dir` of the upper folder; `below` are the lower folders merged at its path,
/// newest first.
fn sweep(dir: &Path, below: &[PathBuf], dropped: &mut usize) -> Result<(), Error> {
    let entries = std::fs::read_dir(dir).map_err(io("read upper folder", dir))?;
    for entry in entries {
        let entry = entry.map_err(io("read upper folder", dir))?;
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).map_err(io("read", &path))?;
        if is_whiteout(&meta) {
            continue;
        }
        let Some(lower) = lookup(below, &entry.file_name())? else {
            continue;
        };

        let unchanged = if meta.is_dir() {
            if !lower.meta.is_dir() || is_opaque(&path)? {
                continue;
            }
            let inner = merged_folders(below, &lower, &entry.file_name())?;
            sweep(&path, &inner, dropped)?;
            same_folder(&path, &meta, &lower)? && is_empty(&path)?
        } else {
            same_entry(&path, &meta, &lower)?
        };
        if !unchanged {
            continue;
        }

        let removed = if meta.is_dir() {
            std::fs::remove_dir(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(io("remove unchanged copy", &path))?;
        *dropped += 1;
    }
    Ok(())
}

/// Finds the entry named `name` that the merged lower folders `below` show, if any. That is
/// the one in the newest folder that has the name, unless it is a whiteout.
fn lookup(below: &[PathBuf], name: &OsStr) -> Result<Option<Below>, Error> {
    for (index, dir) in below.iter().enumerate() {
        let path = dir.join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if is_whiteout(&meta) => return Ok(None),
            Ok(meta) => return Ok(Some(Below { index, path, meta })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(io("read lower entry", &path)(source)),
        }
    }
    Ok(None)
}

/// Lists the lower folders merged at folder `found` (named `name`), newest first, as overlayfs
/// merges them. The list starts at `found` and goes down, skipping folders without the name.
/// It ends with the first opaque folder, or before a whiteout or any other non-folder.
fn merged_folders(below: &[PathBuf], found: &Below, name: &OsStr) -> Result<Vec<PathBuf>, Error> {
    let mut merged = vec![found.path.clone()];
    if is_opaque(&found.path)? {
        return Ok(merged);
    }
    for dir in &below[found.index + 1..] {
        let path = dir.join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {
                let opaque = is_opaque(&path)?;
                merged.push(path);
                if opaque {
                    break;
                }
            }
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(io("read lower entry", &path)(source)),
        }
    }
    Ok(merged)
}

/// Returns whether folder `path` has the type, mode, owner and recorded attributes of `lower`.
fn same_folder(path: &Path, now: &Metadata, lower: &Below) -> Result<bool, Error> {
    let before = &lower.meta;
    if (now.mode(), now.uid(), now.gid()) != (before.mode(), before.uid(), before.gid()) {
        return Ok(false);
    }
    same_xattrs(path, &lower.path)
}

/// Returns whether non-folder `path` equals `lower`, checking metadata, attributes, contents.
fn same_entry(path: &Path, now: &Metadata, lower: &Below) -> Result<bool, Error> {
    let before = &lower.meta;
    let stat = |m: &Metadata| (m.mode(), m.uid(), m.gid(), m.rdev(), m.size());
    let mtime = |m: &Metadata| (m.mtime(), m.mtime_nsec());
    if stat(now) != stat(before) || mtime(now) != mtime(before) {
        return Ok(false);
    }
    if !same_xattrs(path, &lower.path)? {
        return Ok(false);
    }

    let kind = now.file_type();
    if kind.is_symlink() {
        let target = |p: &Path| std::fs::read_link(p).map_err(io("read link", p));
        Ok(target(path)? == target(&lower.path)?)
    } else if kind.is_file() {
        same_bytes(path, &lower.path)
    } else {
        // A fifo, socket or device node has nothing more than its metadata.
        Ok(true)
    }
}

/// Returns whether the extended attributes a layer records (all but overlayfs's own) match.
fn same_xattrs(upper: &Path, lower: &Path) -> Result<bool, Error> {
    Ok(recorded_xattrs(upper)? == recorded_xattrs(lower)?)
}

/// An extended attribute's name and value, as [`fsmeta::get_xattr`] reads it.
type Xattr = (String, Option<Vec<u8>>);

fn recorded_xattrs(path: &Path) -> Result<Vec<Xattr>, Error> {
    let mut names = fsmeta::list_xattrs(path).map_err(io("list extended attributes of", path))?;
    // Copy-up need not keep the order the lower file lists them in.
    names.sort();
    names
        .into_iter()
        .filter(|name| !name.starts_with(OVERLAY_XATTR_PREFIX))
        .map(|name| {
            let value =
                fsmeta::get_xattr(path, &name).map_err(io("read extended attribute of", path))?;
            Ok((name, value))
        })
        .collect()
}

/// Returns whether two regular files of the same size contain the same bytes.
fn same_bytes(upper: &Path, lower: &Path) -> Result<bool, Error> {
    let open = |path: &Path| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(path)
            .map_err(io("open for comparison", path))
    };
    let (mut left, mut right) = (open(upper)?, open(lower)?);
    let (mut left_buf, mut right_buf) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    loop {
        let n = fill(&mut left, &mut left_buf).map_err(io("read", upper))?;
        let m = fill(&mut right, &mut right_buf).map_err(io("read", lower))?;
        if left_buf[..n] != right_buf[..m] {
            return Ok(false);
        }
        if n < CHUNK {
            return Ok(true);
        }
    }
}

/// Reads into `buf` until it is full or the file ends; returns how many bytes it read.
fn fill(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Returns whether `meta` is a 0:0 character device, overlayfs's mark of a removed path.
fn is_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn is_opaque(path: &Path) -> Result<bool, Error> {
    let value = fsmeta::get_xattr(path, OPAQUE_XATTR).map_err(io("read opaque mark of", path))?;
    Ok(value.as_deref() == Some(b"y"))
}

fn is_empty(dir: &Path) -> Result<bool, Error> {
    let mut entries = std::fs::read_dir(dir).map_err(io("read upper folder", dir))?;
    Ok(entries.next().is_none())
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        action: format!("{action} `{}`", path.display()),
        source,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;

    use super::super::overlay::OverlayMount;
    use super::*;

    /// Returns whether the test can mount and own files. Without root the test prints why and
    /// passes, except under CI (`CI` set), where it fails.
    fn root() -> bool {
        if nix::unistd::geteuid().is_root() {
            return true;
        }
        assert!(
            std::env::var_os("CI").is_none(),
            "unchanged-copy tests need root under CI"
        );
        eprintln!("skipping: not running as root");
        false
    }

    /// An overlay over one lower folder that tests fill, change through the merged view and
    /// then sweep.
    struct Overlay {
        _root: tempfile::TempDir,
        lower: PathBuf,
        upper: PathBuf,
        work: PathBuf,
        merged: PathBuf,
    }

    impl Overlay {
        fn new() -> Overlay {
            let root = tempfile::tempdir().unwrap();
            let dir = |name: &str| {
                let path = root.path().join(name);
                std::fs::create_dir(&path).unwrap();
                path
            };
            let (lower, upper, work, merged) =
                (dir("lower"), dir("upper"), dir("work"), dir("merged"));
            Overlay {
                lower,
                upper,
                work,
                merged,
                _root: root,
            }
        }

        /// Writes `content` to `relative` below, with its folders, at a fixed mtime with
        /// nanoseconds, as a snapshot a step made has them.
        fn lower_file(&self, relative: &str, content: &str) {
            let path = self.lower.join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, content).unwrap();
            set_mtime(&path, 1_700_000_000, 123_456_789);
        }

        /// Mounts the overlay, runs `change` on the merged folder, unmounts and sweeps; returns
        /// what is left in the upper folder.
        fn sweep_after(&self, change: impl FnOnce(&Path)) -> Vec<String> {
            let mount = OverlayMount::mount(
                std::slice::from_ref(&self.lower),
                &self.upper,
                &self.work,
                &self.merged,
            )
            .unwrap();
            change(&self.merged);
            mount.unmount().unwrap();
            drop_unchanged(&self.upper, std::slice::from_ref(&self.lower)).unwrap();
            tree(&self.upper)
        }
    }

    fn set_mtime(path: &Path, seconds: i64, nanoseconds: i64) {
        let time = TimeSpec::new(seconds, nanoseconds);
        let flags = UtimensatFlags::NoFollowSymlink;
        utimensat(nix::fcntl::AT_FDCWD, path, &time, &time, flags).unwrap();
    }

    fn copy_mtime(from: &Path, to: &Path) {
        let meta = std::fs::symlink_metadata(from).unwrap();
        set_mtime(to, meta.mtime(), meta.mtime_nsec());
    }

    /// Opens `path` for writing and closes it unwritten, as `useradd` does with its lock file.
    fn open_for_writing(path: &Path) {
        drop(std::fs::OpenOptions::new().write(true).open(path).unwrap());
    }

    /// Lists every path under `dir`, relative and sorted.
    fn tree(dir: &Path) -> Vec<String> {
        let mut found = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(folder) = stack.pop() {
            for entry in std::fs::read_dir(&folder).unwrap() {
                let path = entry.unwrap().path();
                if std::fs::symlink_metadata(&path).unwrap().is_dir() {
                    stack.push(path.clone());
                }
                let relative = path.strip_prefix(dir).unwrap();
                found.push(relative.to_string_lossy().into_owned());
            }
        }
        found.sort();
        found
    }

    #[test]
    fn unchanged_copy_up_dropped_with_parents() {
        if !root() {
            return;
        }
        let overlay = Overlay::new();
        overlay.lower_file("etc/.pwd.lock", "");
        overlay.lower_file("usr/share/doc/tool/README", "read me\n");

        let left = overlay.sweep_after(|merged| {
            open_for_writing(&merged.join("etc/.pwd.lock"));
            open_for_writing(&merged.join("usr/share/doc/tool/README"));
            assert!(overlay.upper.join("usr/share/doc/tool/README").exists());
        });
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn same_size_other_bytes_kept() {
        if !root() {
            return;
        }
        let overlay = Overlay::new();
        overlay.lower_file("etc/passwd", "root:x:0:0\n");

        let left = overlay.sweep_after(|merged| {
            std::fs::write(merged.join("etc/passwd"), "toor:x:0:0\n").unwrap();
            // The old modification time is back, so only the bytes differ.
            copy_mtime(
                &overlay.lower.join("etc/passwd"),
                &merged.join("etc/passwd"),
            );
        });
        assert_eq!(left, ["etc", "etc/passwd"]);
    }

    #[test]
    fn same_bytes_rewritten_kept() {
        if !root() {
            return;
        }
        let overlay = Overlay::new();
        overlay.lower_file("etc/hostname", "box\n");

        // A new modification time is a change to BuildKit's differ too.
        let left = overlay.sweep_after(|merged| {
            std::fs::write(merged.join("etc/hostname"), "box\n").unwrap();
        });
        assert_eq!(left, ["etc", "etc/hostname"]);
    }

    #[test]
    fn mode_change_kept_same_mode_dropped() {
        if !root() {
            return;
        }
        let overlay = Overlay::new();
        overlay.lower_file("bin/tool", "#!/bin/sh\n");
        overlay.lower_file("bin/other", "#!/bin/sh\n");
        let mode = |m: u32| std::fs::Permissions::from_mode(m);
        std::fs::set_permissions(overlay.lower.join("bin/other"), mode(0o755)).unwrap();

        let left = overlay.sweep_after(|merged| {
            std::fs::set_permissions(merged.join("bin/tool"), mode(0o755)).unwrap();
            std::fs::set_permissions(merged.join("bin/other"), mode(0o755)).unwrap();
        });
        assert_eq!(left, ["bin", "bin/tool"]);
    }

    #[test]
    fn owner_change_kept() {
        if !root() {
            return;
        }
        let overlay = Overlay::new();
        overlay.lower_file("home/dev/.profile", "# profile\n");
        overlay.lower_file("home/dev/.bashrc", "# bashrc\n");

        let left = overlay.sweep_after(|merged| {
            fsmeta::lchown(&merged.join("home/dev/.profile"), 1000, 1000).unwrap();
            fsmeta::lchown(&merged.join("home/dev/.bashrc"), 0, 0).unwrap();
        });
        assert_eq!(left, ["home", "home/dev", "home/dev/.profile"]);
    }

    #[test]
    fn xattr_change_kept() {
        if !root() {
            return;
        }
        let overlay = Overlay::new();
        overlay.lower_file("bin/ping", "elf");

        let left = overlay.sweep_after(|merged| {
            fsmeta::set_xattr(&merged.join("bin/ping"), "user.note", b"set").unwrap();
        });
        assert_eq!(left, ["bin", "bin/ping"]);
    }

    #[test]
    fn new_whiteout_and_opaque_entries_kept() {
        if !root() {
            return;
        }
        let overlay = Overlay::new();
        overlay.lower_file("etc/old", "old\n");
        overlay.lower_file("etc/kept", "kept\n");
        overlay.lower_file("opt/app/config", "same\n");

        let left = overlay.sweep_after(|merged| {
            std::fs::write(merged.join("etc/new"), "new\n").unwrap();
            std::fs::create_dir_all(merged.join("srv/data")).unwrap();
            std::fs::remove_file(merged.join("etc/old")).unwrap();
            open_for_writing(&merged.join("etc/kept"));
            // The folder made again contains what it did, but it is opaque now.
            std::fs::remove_dir_all(merged.join("opt/app")).unwrap();
            std::fs::create_dir(merged.join("opt/app")).unwrap();
            std::fs::write(merged.join("opt/app/config"), "same\n").unwrap();
            copy_mtime(
                &overlay.lower.join("opt/app/config"),
                &merged.join("opt/app/config"),
            );
        });
        assert_eq!(
            left,
            [
                "etc",
                "etc/new",
                "etc/old",
                "opt",
                "opt/app",
                "opt/app/config",
                "srv",
                "srv/data"
            ]
        );
        let whiteout = std::fs::symlink_metadata(overlay.upper.join("etc/old")).unwrap();
        assert!(is_whiteout(&whiteout));
        assert!(is_opaque(&overlay.upper.join("opt/app")).unwrap());
    }

    #[test]
    fn symlink_dropped_unless_target_changed() {
        if !root() {
            return;
        }
        let overlay = Overlay::new();
        std::fs::create_dir(overlay.lower.join("lib")).unwrap();
        for name in ["same", "other"] {
            let link = overlay.lower.join("lib").join(name);
            std::os::unix::fs::symlink("libc.so.6", &link).unwrap();
            set_mtime(&link, 1_700_000_000, 0);
        }

        let left = overlay.sweep_after(|merged| {
            // Copied up with the same owner, target and time.
            fsmeta::lchown(&merged.join("lib/same"), 0, 0).unwrap();
            let other = merged.join("lib/other");
            std::fs::remove_file(&other).unwrap();
            std::os::unix::fs::symlink("libc.so.7", &other).unwrap();
            set_mtime(&other, 1_700_000_000, 0);
        });
        assert_eq!(left, ["lib", "lib/other"]);
    }

    /// Two lower folders written by hand, newest first, and an upper folder with copies.
    struct Stack {
        _root: tempfile::TempDir,
        lowers: [PathBuf; 2],
        upper: PathBuf,
    }

    impl Stack {
        fn new() -> Stack {
            let root = tempfile::tempdir().unwrap();
            let dir = |name: &str| {
                let path = root.path().join(name);
                std::fs::create_dir(&path).unwrap();
                path
            };
            Stack {
                lowers: [dir("newer"), dir("older")],
                upper: dir("upper"),
                _root: root,
            }
        }

        fn write(dir: &Path, relative: &str, content: &str) {
            let path = dir.join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, content).unwrap();
            set_mtime(&path, 1_600_000_000, 0);
        }

        /// Copies `relative` from lower folder `from` into the upper folder as copy-up does:
        /// the same bytes, mode and time, and its parent folders.
        fn copy_up(&self, from: usize, relative: &str) {
            let source = self.lowers[from].join(relative);
            let target = self.upper.join(relative);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::copy(&source, &target).unwrap();
            copy_mtime(&source, &target);
        }

        fn sweep(&self) -> Vec<String> {
            drop_unchanged(&self.upper, &self.lowers).unwrap();
            tree(&self.upper)
        }
    }

    #[test]
    fn newest_lower_entry_compared() {
        let stack = Stack::new();
        Stack::write(&stack.lowers[0], "etc/motd", "newer\n");
        Stack::write(&stack.lowers[1], "etc/motd", "older\n");
        Stack::write(&stack.lowers[1], "etc/issue", "older\n");

        stack.copy_up(0, "etc/motd");
        stack.copy_up(1, "etc/issue");
        assert!(stack.sweep().is_empty());

        // The older copy of a path the newer folder has is a change.
        stack.copy_up(1, "etc/motd");
        assert_eq!(stack.sweep(), ["etc", "etc/motd"]);
    }

    #[test]
    fn hidden_lower_entries_kept() {
        if !root() {
            return;
        }
        let stack = Stack::new();
        let [newer, older] = &stack.lowers;
        Stack::write(older, "etc/removed", "gone\n");
        Stack::write(older, "opt/app/config", "old\n");
        Stack::write(older, "srv/file", "old\n");
        std::fs::create_dir_all(newer.join("etc")).unwrap();
        fsmeta::mknod(&newer.join("etc/removed"), nix::libc::S_IFCHR, 0, 0, 0).unwrap();
        std::fs::create_dir_all(newer.join("opt/app")).unwrap();
        fsmeta::set_xattr(&newer.join("opt/app"), OPAQUE_XATTR, b"y").unwrap();
        Stack::write(newer, "srv", "a file now\n");

        // Copies of what the older folder contains, which the merged view no longer shows.
        stack.copy_up(1, "etc/removed");
        stack.copy_up(1, "opt/app/config");
        stack.copy_up(1, "srv/file");

        assert_eq!(
            stack.sweep(),
            [
                "etc",
                "etc/removed",
                "opt",
                "opt/app",
                "opt/app/config",
                "srv",
                "srv/file"
            ]
        );
    }
}
