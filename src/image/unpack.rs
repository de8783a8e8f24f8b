//! Unpacking a layer blob into a folder in overlayfs's upper-folder format.
//!
//! Every entry path is checked before anything is written: absolute paths, `..` components and
//! paths whose parent folders pass through a symlink are rejected with [`Error::UnsafeEntry`],
//! and hard-link targets get the same checks. Nothing is ever opened through a symlink, so a
//! layer cannot write outside `dest`.

use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::libc;

use super::fsmeta;
use super::layer::{io, CancellableReader, OPAQUE_MARKER, OPAQUE_XATTR, WHITEOUT_PREFIX};
use super::Error;

const XATTR_PAX_PREFIX: &str = "SCHILY.xattr.";

/// Unpacks layer blob `blob` of `media_type` into `dest` in overlay format, rejecting entries
/// that escape `dest`.
///
/// The compression (gzip, zstd or none) is detected from the content, so a blob whose media
/// type names the wrong one still unpacks.
///
/// # Errors
/// [`Error::UnsafeEntry`] for an entry that would land outside `dest`;
/// [`Error::InvalidDocument`] for a malformed archive; [`Error::Io`] otherwise.
pub fn unpack_layer(blob: &Path, media_type: &str, dest: &Path) -> Result<(), Error> {
    unpack_layer_cancellable(blob, media_type, dest, &|| false)
}

/// [`unpack_layer`], asking `cancelled` between entries and between blocks of a file's data.
///
/// # Errors
/// [`Error::Cancelled`] once `cancelled` returns true; `dest` is then left half filled, for the
/// caller to remove. Otherwise as [`unpack_layer`].
pub fn unpack_layer_cancellable(
    blob: &Path,
    media_type: &str,
    dest: &Path,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Result<(), Error> {
    // A read cut short by a cancel surfaces as an I/O error; report it as the cancel it is.
    unpack_inner(blob, media_type, dest, cancelled).map_err(|e| {
        if cancelled() {
            Error::Cancelled
        } else {
            e
        }
    })
}

fn unpack_inner(
    blob: &Path,
    media_type: &str,
    dest: &Path,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Result<(), Error> {
    tracing::trace!(
        "unpacking `{}` ({media_type}) into `{}`",
        blob.display(),
        dest.display()
    );
    let file = fs::File::open(blob).map_err(io("open", blob))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let magic = reader.fill_buf().map_err(io("read", blob))?;
    let decoded: Box<dyn Read> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(reader).map_err(io("read", blob))?)
    } else {
        Box::new(reader)
    };

    fs::create_dir_all(dest).map_err(io("create", dest))?;
    let mut archive = tar::Archive::new(decoded);
    let mut folders: Vec<(PathBuf, i64)> = Vec::new();
    let entries = archive.entries().map_err(io("read", blob))?;
    for entry in entries {
        if cancelled() {
            return Err(Error::Cancelled);
        }
        let entry = entry.map_err(|e| bad_archive(blob, e))?;
        unpack_entry(entry, dest, blob, &mut folders, cancelled)?;
    }

    // Folder times last: creating their children changed them.
    for (folder, mtime) in folders.iter().rev() {
        fsmeta::set_mtime(folder, *mtime).map_err(io("set the time of", folder))?;
    }
    Ok(())
}

fn unpack_entry<R: Read>(
    mut entry: tar::Entry<'_, R>,
    dest: &Path,
    blob: &Path,
    folders: &mut Vec<(PathBuf, i64)>,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Result<(), Error> {
    let raw_path = entry.path_bytes().into_owned();
    let parts = safe_parts(&raw_path)?;
    let Some((file_name, parents)) = parts.split_last() else {
        // The root folder itself: `dest` already exists.
        return Ok(());
    };
    let parent = prepare_parents(dest, parents, &raw_path)?;
    let header = entry.header().clone();
    let uid = header.uid().map_err(|e| bad_archive(blob, e))? as u32;
    let gid = header.gid().map_err(|e| bad_archive(blob, e))? as u32;
    let mode = header.mode().map_err(|e| bad_archive(blob, e))? & 0o7777;
    let mtime = header.mtime().map_err(|e| bad_archive(blob, e))? as i64;

    if *file_name == OPAQUE_MARKER.as_bytes() {
        fsmeta::set_xattr(&parent, OPAQUE_XATTR, b"y").map_err(io("mark opaque", &parent))?;
        return Ok(());
    }
    if let Some(hidden) = file_name.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
        let target = parent.join(std::ffi::OsStr::from_bytes(hidden));
        remove_existing(&target)?;
        fsmeta::mknod(&target, libc::S_IFCHR, mode, 0, 0).map_err(io("create", &target))?;
        fsmeta::lchown(&target, uid, gid).map_err(io("set the owner of", &target))?;
        fsmeta::set_mtime(&target, mtime).map_err(io("set the time of", &target))?;
        return Ok(());
    }

    let target = parent.join(std::ffi::OsStr::from_bytes(file_name));
    let xattrs = pax_xattrs(&mut entry).map_err(|e| bad_archive(blob, e))?;
    let kind = header.entry_type();
    match kind {
        tar::EntryType::Directory => {
            match fs::symlink_metadata(&target) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    remove_existing(&target)?;
                    fs::create_dir(&target).map_err(io("create", &target))?;
                }
                Err(_) => fs::create_dir(&target).map_err(io("create", &target))?,
            }
            folders.push((target.clone(), mtime));
        }
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            remove_existing(&target)?;
            let mut file = fs::File::create_new(&target).map_err(io("create", &target))?;
            let mut data = CancellableReader {
                inner: &mut entry,
                cancelled,
            };
            std::io::copy(&mut data, &mut file).map_err(io("write", &target))?;
        }
        tar::EntryType::Symlink => {
            let link = entry
                .link_name_bytes()
                .ok_or_else(|| missing_link(&raw_path))?;
            remove_existing(&target)?;
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&link), &target)
                .map_err(io("create", &target))?;
        }
        tar::EntryType::Link => {
            let link = entry
                .link_name_bytes()
                .ok_or_else(|| missing_link(&raw_path))?;
            let link_parts = safe_parts(&link)?;
            let Some((link_name, link_parents)) = link_parts.split_last() else {
                return Err(Error::UnsafeEntry {
                    entry: lossy(&raw_path),
                });
            };
            let source = prepare_parents(dest, link_parents, &link)?
                .join(std::ffi::OsStr::from_bytes(link_name));
            remove_existing(&target)?;
            fs::hard_link(&source, &target).map_err(io("link", &target))?;
            // The inode already has its owner, mode, xattrs and time.
            return Ok(());
        }
        tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
            let major = header.device_major().ok().flatten().unwrap_or(0);
            let minor = header.device_minor().ok().flatten().unwrap_or(0);
            let sflag = match kind {
                tar::EntryType::Char => libc::S_IFCHR,
                tar::EntryType::Block => libc::S_IFBLK,
                _ => libc::S_IFIFO,
            };
            remove_existing(&target)?;
            fsmeta::mknod(&target, sflag, mode, major.into(), minor.into())
                .map_err(io("create", &target))?;
        }
        // The reader consumes PAX and GNU extension headers, and other types are skipped.
        _ => return Ok(()),
    }

    // Owner first (it clears setuid bits and file capabilities), then xattrs, mode, time.
    fsmeta::lchown(&target, uid, gid).map_err(io("set the owner of", &target))?;
    for (key, value) in &xattrs {
        fsmeta::set_xattr(&target, key, value).map_err(io("set xattrs of", &target))?;
    }
    if kind != tar::EntryType::Symlink {
        fs::set_permissions(&target, fs::Permissions::from_mode(mode))
            .map_err(io("set the mode of", &target))?;
    }
    if kind != tar::EntryType::Directory {
        fsmeta::set_mtime(&target, mtime).map_err(io("set the time of", &target))?;
    }
    Ok(())
}

/// Splits an entry path into its normal components, rejecting absolute paths and `..`.
fn safe_parts(path: &[u8]) -> Result<Vec<&[u8]>, Error> {
    if path.starts_with(b"/") {
        return Err(Error::UnsafeEntry { entry: lossy(path) });
    }
    let mut parts = Vec::new();
    for part in path.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(Error::UnsafeEntry { entry: lossy(path) }),
            _ => parts.push(part),
        }
    }
    Ok(parts)
}

/// Makes sure every parent folder exists as a real folder (not a symlink) and returns the last.
fn prepare_parents(dest: &Path, parents: &[&[u8]], entry: &[u8]) -> Result<PathBuf, Error> {
    let mut current = dest.to_path_buf();
    for part in parents {
        current.push(std::ffi::OsStr::from_bytes(part));
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(Error::UnsafeEntry {
                    entry: lossy(entry),
                });
            }
            Ok(_) => {
                return Err(Error::InvalidDocument(format!(
                    "layer entry `{}` is inside `{}`, which is not a folder",
                    lossy(entry),
                    current.display()
                )));
            }
            Err(_) => fs::create_dir(&current).map_err(io("create", &current))?,
        }
    }
    Ok(current)
}

/// Removes whatever is at `path` so an entry can take its place.
fn remove_existing(path: &Path) -> Result<(), Error> {
    match fs::symlink_metadata(path) {
        Err(_) => Ok(()),
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path).map_err(io("remove", path)),
        Ok(_) => fs::remove_file(path).map_err(io("remove", path)),
    }
}

fn pax_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut xattrs = Vec::new();
    if let Some(extensions) = entry.pax_extensions()? {
        for extension in extensions {
            let extension = extension?;
            let Ok(key) = extension.key() else { continue };
            if let Some(name) = key.strip_prefix(XATTR_PAX_PREFIX) {
                xattrs.push((name.to_string(), extension.value_bytes().to_vec()));
            }
        }
    }
    Ok(xattrs)
}

fn missing_link(path: &[u8]) -> Error {
    Error::InvalidDocument(format!("link entry `{}` has no target", lossy(path)))
}

fn bad_archive(blob: &Path, source: io::Error) -> Error {
    Error::Io {
        action: "read the layer archive",
        path: blob.to_path_buf(),
        source,
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
