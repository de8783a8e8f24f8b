//! Layer tarballs: written deterministically from a folder, and unpacked into a folder.
//!
//! Both sides speak overlayfs's upper-folder format: a deleted path is a 0:0 character device,
//! an opaque folder carries `trusted.overlay.opaque=y`. In the tar they become OCI whiteouts:
//! an empty file `.wh.<name>`, and a `<folder>/.wh..wh..opq` entry.
//!
//! These settings, and nothing else, decide a layer's bytes. Entries are sorted by the bytes of
//! their path in the tar. Headers are POSIX ustar with numeric uid/gid and empty user and group names, permission
//! bits including setuid/setgid/sticky, mtime clamped to `source_date_epoch` (no atime, no
//! ctime), extended attributes as PAX `SCHILY.xattr.*` records sorted by name (PAX `path` and
//! `linkpath` when a name does not fit the header), hard links as link entries to the first
//! path in sort order, then block-parallel compression at fixed settings (see `compress`).

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::compress::ParallelCompressor;
use super::Error;
use crate::store::ContentStore;

pub use super::unpack::{unpack_layer, unpack_layer_cancellable};

/// Media type of a gzip-compressed OCI layer.
pub const MEDIA_TYPE_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Media type of a zstd-compressed OCI layer.
pub const MEDIA_TYPE_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

pub(crate) const WHITEOUT_PREFIX: &str = ".wh.";
pub(crate) const OPAQUE_MARKER: &str = ".wh..wh..opq";
pub(crate) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
pub(crate) const OVERLAY_XATTR_PREFIX: &str = "trusted.overlay.";

/// A layer blob in the content store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Layer {
    /// Digest of the compressed blob.
    pub digest: String,
    /// Digest of the uncompressed tar (the `rootfs.diff_ids` entry).
    pub diff_id: String,
    /// Size of the compressed blob in bytes.
    pub size: u64,
    pub media_type: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
}

impl Compression {
    /// Returns the OCI layer media type for this compression.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => MEDIA_TYPE_GZIP,
            Compression::Zstd => MEDIA_TYPE_ZSTD,
        }
    }
}

/// Settings that decide a layer's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerOptions {
    pub compression: Compression,
    /// Entry timestamps later than this are clamped to it (seconds since the Unix epoch).
    pub source_date_epoch: i64,
}

/// Writes the overlay-format folder `dir` as a layer blob into `store`.
///
/// Compression runs on the current rayon pool, and the bytes do not depend on its size.
///
/// # Errors
/// [`Error::Io`] naming the path that could not be read or written.
pub fn write_layer(
    dir: &Path,
    options: &LayerOptions,
    store: &ContentStore,
) -> Result<Layer, Error> {
    write_layer_cancellable(dir, options, store, &|| false)
}

/// [`write_layer`], asking `cancelled` between entries and between blocks of a file's data, so
/// that a big layer stops within a moment of a cancel.
///
/// # Errors
/// [`Error::Cancelled`] once `cancelled` returns true: no blob is stored and the temporary file
/// is removed. Otherwise as [`write_layer`].
pub fn write_layer_cancellable(
    dir: &Path,
    options: &LayerOptions,
    store: &ContentStore,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Result<Layer, Error> {
    // A read cut short by a cancel surfaces as an I/O error; report it as the cancel it is.
    write_layer_inner(dir, options, store, cancelled).map_err(|e| {
        if cancelled() {
            Error::Cancelled
        } else {
            e
        }
    })
}

fn write_layer_inner(
    dir: &Path,
    options: &LayerOptions,
    store: &ContentStore,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Result<Layer, Error> {
    let entries = collect_entries(dir)?;

    let tmp = store.temp_file()?;
    let tmp_path = tmp.path().to_path_buf();
    let io_err = |action| {
        let path = tmp_path.clone();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    };
    let file = tmp.reopen().map_err(io_err("open"))?;
    let blob = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
    let compressor = ParallelCompressor::new(options.compression, blob);
    let mut builder = tar::Builder::new(HashingWriter::new(compressor));

    let mut first_paths: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    for entry in &entries {
        if cancelled() {
            return Err(Error::Cancelled);
        }
        append_entry(
            &mut builder,
            entry,
            options.source_date_epoch,
            &mut first_paths,
            cancelled,
        )?;
    }

    let tar_sink = builder.into_inner().map_err(io_err("write"))?;
    let (compressor, diff_id, _) = tar_sink.finish();
    let blob = compressor.finish().map_err(io_err("write"))?;
    let (file, digest, size) = blob.finish();
    let file = file
        .into_inner()
        .map_err(|e| io_err("write")(e.into_error()))?;
    // Readable by everyone, like any published image content: the temporary file is 0600.
    file.set_permissions(fs::Permissions::from_mode(BLOB_MODE))
        .map_err(io_err("set the mode of"))?;
    file.sync_all().map_err(io_err("sync"))?;
    drop(file);

    if cancelled() {
        return Err(Error::Cancelled);
    }
    store.persist_blob(tmp, &digest)?;
    Ok(Layer {
        digest,
        diff_id,
        size,
        media_type: options.compression.media_type().to_string(),
    })
}

/// Permissions of a layer blob in the store.
const BLOB_MODE: u32 = 0o644;

/// A reader that fails once `cancelled` returns true, checked before every read.
pub(crate) struct CancellableReader<'a, R> {
    pub(crate) inner: R,
    pub(crate) cancelled: &'a (dyn Fn() -> bool + Sync),
}

impl<R: Read> Read for CancellableReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if (self.cancelled)() {
            // Not `ErrorKind::Interrupted`: readers retry that one.
            return Err(io::Error::other("cancelled"));
        }
        self.inner.read(buf)
    }
}

/// A tar entry to write: its name in the tar and the file system object it comes from.
struct Entry {
    /// The path in the tar, without a trailing slash. Entries are sorted by it.
    name: Vec<u8>,
    source: PathBuf,
    meta: fs::Metadata,
    kind: EntryKind,
}

enum EntryKind {
    /// The file system object as it is.
    Plain { xattrs: Vec<(String, Vec<u8>)> },
    /// A 0:0 character device: an empty `.wh.<name>` file.
    Whiteout,
    /// The `.wh..wh..opq` entry of an opaque folder (`meta` is the folder's).
    OpaqueMarker,
}

fn collect_entries(dir: &Path) -> Result<Vec<Entry>, Error> {
    let mut entries = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), Vec::new())];
    while let Some((folder, prefix)) = stack.pop() {
        let read = fs::read_dir(&folder).map_err(io("read folder", &folder))?;
        for child in read {
            let child = child.map_err(io("read folder", &folder))?;
            let source = child.path();
            let meta = fs::symlink_metadata(&source).map_err(io("stat", &source))?;
            let mut name = prefix.clone();
            if !name.is_empty() {
                name.push(b'/');
            }
            let file_name = child.file_name();

            if meta.file_type().is_char_device() && meta.rdev() == 0 {
                name.extend_from_slice(WHITEOUT_PREFIX.as_bytes());
                name.extend_from_slice(file_name.as_bytes());
                entries.push(Entry {
                    name,
                    source,
                    meta,
                    kind: EntryKind::Whiteout,
                });
                continue;
            }

            name.extend_from_slice(file_name.as_bytes());
            let mut xattrs = Vec::new();
            let mut opaque = false;
            for key in super::fsmeta::list_xattrs(&source).map_err(io("list xattrs of", &source))? {
                let Some(value) = super::fsmeta::get_xattr(&source, &key)
                    .map_err(io("read xattr of", &source))?
                else {
                    continue;
                };
                if key == OPAQUE_XATTR {
                    opaque = value == b"y";
                } else if !key.starts_with(OVERLAY_XATTR_PREFIX) {
                    xattrs.push((key, value));
                }
            }

            if meta.is_dir() {
                stack.push((source.clone(), name.clone()));
                if opaque {
                    let mut marker = name.clone();
                    marker.push(b'/');
                    marker.extend_from_slice(OPAQUE_MARKER.as_bytes());
                    let marker_meta = meta.clone();
                    entries.push(Entry {
                        name: marker,
                        source: source.clone(),
                        meta: marker_meta,
                        kind: EntryKind::OpaqueMarker,
                    });
                }
            }
            entries.push(Entry {
                name,
                source,
                meta,
                kind: EntryKind::Plain { xattrs },
            });
        }
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

fn append_entry<W: Write>(
    builder: &mut tar::Builder<W>,
    entry: &Entry,
    epoch: i64,
    first_paths: &mut HashMap<(u64, u64), Vec<u8>>,
    cancelled: &(dyn Fn() -> bool + Sync),
) -> Result<(), Error> {
    let meta = &entry.meta;
    let mut header = tar::Header::new_ustar();
    header.set_uid(u64::from(meta.uid()));
    header.set_gid(u64::from(meta.gid()));
    header.set_mtime(meta.mtime().clamp(0, epoch.max(0)) as u64);
    header.set_mode(meta.mode() & 0o7777);
    header.set_size(0);

    let source_err = io("write layer entry for", &entry.source);
    let xattrs: &[(String, Vec<u8>)] = match &entry.kind {
        EntryKind::Whiteout | EntryKind::OpaqueMarker => {
            header.set_entry_type(tar::EntryType::Regular);
            if let EntryKind::OpaqueMarker = entry.kind {
                // The marker is not a file on disk, so it gets fixed permissions.
                header.set_mode(0o644);
            }
            return write_header(builder, header, &entry.name, None, &[], io::empty())
                .map_err(source_err);
        }
        EntryKind::Plain { xattrs } => xattrs,
    };

    let file_type = meta.file_type();
    let mut name = entry.name.clone();
    if !file_type.is_dir() && meta.nlink() > 1 {
        let key = (meta.dev(), meta.ino());
        if let Some(first) = first_paths.get(&key) {
            header.set_entry_type(tar::EntryType::Link);
            let first = first.clone();
            return write_header(builder, header, &name, Some(&first), xattrs, io::empty())
                .map_err(source_err);
        }
        first_paths.insert(key, name.clone());
    }

    if file_type.is_dir() {
        header.set_entry_type(tar::EntryType::Directory);
        name.push(b'/');
        write_header(builder, header, &name, None, xattrs, io::empty())
    } else if file_type.is_file() {
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(meta.len());
        let file = fs::File::open(&entry.source).map_err(io("open", &entry.source))?;
        // Read exactly the size in the header, so a file growing meanwhile cannot corrupt it.
        let data = CancellableReader {
            inner: file.take(meta.len()),
            cancelled,
        };
        write_header(builder, header, &name, None, xattrs, data)
    } else if file_type.is_symlink() {
        header.set_entry_type(tar::EntryType::Symlink);
        let target = fs::read_link(&entry.source).map_err(io("read link", &entry.source))?;
        let target = target.as_os_str().as_bytes().to_vec();
        write_header(builder, header, &name, Some(&target), xattrs, io::empty())
    } else if file_type.is_char_device() || file_type.is_block_device() {
        let kind = if file_type.is_char_device() {
            tar::EntryType::Char
        } else {
            tar::EntryType::Block
        };
        header.set_entry_type(kind);
        let rdev = meta.rdev();
        let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
        header
            .set_device_major(major as u32)
            .map_err(io("write", &entry.source))?;
        header
            .set_device_minor(minor as u32)
            .map_err(io("write", &entry.source))?;
        write_header(builder, header, &name, None, xattrs, io::empty())
    } else if file_type.is_fifo() {
        header.set_entry_type(tar::EntryType::Fifo);
        write_header(builder, header, &name, None, xattrs, io::empty())
    } else {
        // Sockets cannot be stored in a tar, and they are runtime leftovers anyway.
        return Ok(());
    }
    .map_err(source_err)
}

/// Appends one entry: a PAX header when needed (xattrs, long names), then the ustar header.
fn write_header<W: Write>(
    builder: &mut tar::Builder<W>,
    mut header: tar::Header,
    name: &[u8],
    link: Option<&[u8]>,
    xattrs: &[(String, Vec<u8>)],
    data: impl Read,
) -> io::Result<()> {
    let mut records: Vec<(String, Vec<u8>)> = xattrs
        .iter()
        .map(|(key, value)| (format!("SCHILY.xattr.{key}"), value.clone()))
        .collect();

    let name_path = Path::new(std::ffi::OsStr::from_bytes(name));
    if header.set_path(name_path).is_err() {
        records.push(("path".to_string(), name.to_vec()));
        set_truncated(&mut header.as_old_mut().name, name);
    }
    if let Some(link) = link {
        let link_path = Path::new(std::ffi::OsStr::from_bytes(link));
        if header.set_link_name(link_path).is_err() {
            records.push(("linkpath".to_string(), link.to_vec()));
            set_truncated(&mut header.as_old_mut().linkname, link);
        }
    }

    if !records.is_empty() {
        records.sort_by(|a, b| a.0.cmp(&b.0));
        builder.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))?;
    }
    header.set_cksum();
    builder.append(&header, data)
}

fn set_truncated(field: &mut [u8], value: &[u8]) {
    let n = field.len().min(value.len());
    field.fill(0);
    field[..n].copy_from_slice(&value[..n]);
}

/// A writer that hashes and counts what passes through it.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// Returns the writer, the `sha256:<hex>` digest and the count of everything written.
    pub(crate) fn finish(self) -> (W, String, u64) {
        let digest = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        (self.inner, digest, self.bytes)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(data)?;
        self.hasher.update(&data[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{symlink, PermissionsExt};

    use super::*;
    use crate::image::fsmeta;

    const EPOCH: i64 = 1_700_000_000;
    /// A version 2 file capability granting `cap_net_bind_service`, effective.
    const CAP_NET_BIND: &[u8] =
        b"\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";

    fn store(dir: &Path) -> ContentStore {
        ContentStore::open(&dir.join("oci"), &dir.join("tmp")).unwrap()
    }

    fn options(compression: Compression) -> LayerOptions {
        LayerOptions {
            compression,
            source_date_epoch: EPOCH,
        }
    }

    /// Fills `root` with every kind of entry a layer can carry.
    fn every_kind(root: &Path) {
        let long_dir = root.join("d".repeat(120)).join("e".repeat(120));
        fs::create_dir_all(&long_dir).unwrap();
        fs::write(long_dir.join("f".repeat(60)), b"deep").unwrap();

        fs::create_dir(root.join("bin")).unwrap();
        fs::write(root.join("bin/tool"), b"#!/bin/sh\necho hi\n").unwrap();
        fs::set_permissions(root.join("bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
        fsmeta::set_xattr(&root.join("bin/tool"), "security.capability", CAP_NET_BIND).unwrap();
        fsmeta::set_xattr(&root.join("bin/tool"), "user.note", b"hello").unwrap();
        fs::hard_link(root.join("bin/tool"), root.join("bin/tool-link")).unwrap();
        symlink("tool", root.join("bin/alias")).unwrap();
        symlink(
            "/".to_string() + &"x/".repeat(80),
            root.join("bin/long-link"),
        )
        .unwrap();

        fs::create_dir(root.join("dev")).unwrap();
        fsmeta::mknod(&root.join("dev/null"), nix::libc::S_IFCHR, 0o666, 1, 3).unwrap();
        fsmeta::mknod(&root.join("dev/loop9"), nix::libc::S_IFBLK, 0o660, 7, 9).unwrap();
        fsmeta::mknod(&root.join("dev/pipe"), nix::libc::S_IFIFO, 0o600, 0, 0).unwrap();

        // Deleted path and opaque folder, overlay style.
        fs::create_dir(root.join("etc")).unwrap();
        fsmeta::mknod(
            &root.join("etc/removed.conf"),
            nix::libc::S_IFCHR,
            0o000,
            0,
            0,
        )
        .unwrap();
        fs::create_dir(root.join("etc/opaque")).unwrap();
        fsmeta::set_xattr(&root.join("etc/opaque"), OPAQUE_XATTR, b"y").unwrap();
        fsmeta::set_xattr(&root.join("etc/opaque"), "trusted.overlay.origin", b"junk").unwrap();
        fs::write(root.join("etc/opaque/kept"), b"kept").unwrap();
        fs::write(root.join("etc/owned"), b"owned").unwrap();
        fsmeta::lchown(&root.join("etc/owned"), 1001, 1002).unwrap();
        fs::write(root.join("old"), b"old").unwrap();
        fsmeta::set_mtime(&root.join("old"), 1000).unwrap();
    }

    fn read_tar(store: &ContentStore, layer: &Layer) -> Vec<(String, tar::Header, Vec<u8>)> {
        let blob = fs::read(store.blob_path(&layer.digest)).unwrap();
        let mut tar_bytes = Vec::new();
        match layer.media_type.as_str() {
            MEDIA_TYPE_GZIP => {
                flate2::read::MultiGzDecoder::new(&blob[..])
                    .read_to_end(&mut tar_bytes)
                    .unwrap();
            }
            _ => tar_bytes = zstd::stream::decode_all(&blob[..]).unwrap(),
        }
        assert_eq!(ContentStore::digest_of(&tar_bytes), layer.diff_id);
        let mut archive = tar::Archive::new(&tar_bytes[..]);
        let mut out = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let mut pax = Vec::new();
            if let Some(exts) = entry.pax_extensions().unwrap() {
                for ext in exts {
                    let ext = ext.unwrap();
                    pax.extend_from_slice(ext.key_bytes());
                    pax.push(b'=');
                    pax.extend_from_slice(ext.value_bytes());
                    pax.push(b'\n');
                }
            }
            out.push((name, entry.header().clone(), pax));
        }
        out
    }

    #[test]
    fn layer_entries_every_kind() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir(&src).unwrap();
        every_kind(&src);
        let store = store(tmp.path());
        let layer = write_layer(&src, &options(Compression::Gzip), &store).unwrap();
        assert_eq!(layer.media_type, MEDIA_TYPE_GZIP);
        assert_eq!(
            layer.size,
            fs::metadata(store.blob_path(&layer.digest)).unwrap().len()
        );
        assert_eq!(
            ContentStore::digest_of_file(&store.blob_path(&layer.digest)).unwrap(),
            layer.digest
        );

        let entries = read_tar(&store, &layer);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_by(|a, b| a.trim_end_matches('/').cmp(b.trim_end_matches('/')));
        assert_eq!(names, sorted, "entries are sorted by path");
        assert!(names.contains(&"etc/.wh.removed.conf"));
        assert!(names.contains(&"etc/opaque/.wh..wh..opq"));
        assert!(names.contains(&"bin/"));
        assert!(!names
            .iter()
            .any(|n| n.ends_with("removed.conf") && !n.contains(".wh.")));

        let find = |name: &str| entries.iter().find(|e| e.0 == name).unwrap();
        let (_, tool, pax) = find("bin/tool");
        assert_eq!(tool.mode().unwrap(), 0o4755);
        assert_eq!(tool.mtime().unwrap(), EPOCH as u64, "mtime clamped");
        assert_eq!(tool.username_bytes(), Some(&b""[..]));
        let pax = String::from_utf8_lossy(pax);
        let cap = pax.find("SCHILY.xattr.security.capability").unwrap();
        let note = pax.find("SCHILY.xattr.user.note").unwrap();
        assert!(cap < note, "xattrs sorted: {pax}");
        let (_, link, _) = find("bin/tool-link");
        assert_eq!(link.entry_type(), tar::EntryType::Link);
        assert_eq!(link.link_name_bytes().unwrap().as_ref(), b"bin/tool");
        let (_, old, _) = find("old");
        assert_eq!(old.mtime().unwrap(), 1000, "earlier mtimes kept");
        let (_, owned, _) = find("etc/owned");
        assert_eq!((owned.uid().unwrap(), owned.gid().unwrap()), (1001, 1002));
        let (_, null, _) = find("dev/null");
        assert_eq!(null.entry_type(), tar::EntryType::Char);
        assert_eq!(null.device_major().unwrap(), Some(1));
        assert_eq!(null.device_minor().unwrap(), Some(3));
        let (_, opaque, pax) = find("etc/opaque/");
        assert_eq!(opaque.entry_type(), tar::EntryType::Directory);
        assert!(!String::from_utf8_lossy(pax).contains("trusted.overlay"));
        let long = format!("{}/{}/{}", "d".repeat(120), "e".repeat(120), "f".repeat(60));
        assert!(names.contains(&long.as_str()), "long names survive");
    }

    #[test]
    fn layer_rewrite_and_round_trip_same_digest() {
        for compression in [Compression::Gzip, Compression::Zstd] {
            let tmp = tempfile::tempdir().unwrap();
            let src = tmp.path().join("src");
            fs::create_dir(&src).unwrap();
            every_kind(&src);
            let store = store(tmp.path());
            let first = write_layer(&src, &options(compression), &store).unwrap();
            let second = write_layer(&src, &options(compression), &store).unwrap();
            assert_eq!(first, second);

            let dest = tmp.path().join("dest");
            let blob = store.blob_path(&first.digest);
            unpack_layer(&blob, &first.media_type, &dest).unwrap();
            let meta = fs::symlink_metadata(dest.join("etc/removed.conf")).unwrap();
            assert!(meta.file_type().is_char_device());
            assert_eq!(meta.rdev(), 0);
            assert_eq!(
                fsmeta::get_xattr(&dest.join("etc/opaque"), OPAQUE_XATTR)
                    .unwrap()
                    .as_deref(),
                Some(&b"y"[..])
            );
            assert!(!dest.join("etc/opaque/.wh..wh..opq").exists());
            let tool = fs::metadata(dest.join("bin/tool")).unwrap();
            assert_eq!(tool.mode() & 0o7777, 0o4755);
            assert_eq!(
                tool.ino(),
                fs::metadata(dest.join("bin/tool-link")).unwrap().ino()
            );
            assert_eq!(
                fsmeta::get_xattr(&dest.join("bin/tool"), "security.capability").unwrap(),
                Some(CAP_NET_BIND.to_vec())
            );
            let owned = fs::metadata(dest.join("etc/owned")).unwrap();
            assert_eq!((owned.uid(), owned.gid()), (1001, 1002));

            let again = write_layer(&dest, &options(compression), &store).unwrap();
            assert_eq!(again.digest, first.digest, "{compression:?} round trip");
        }
    }

    #[test]
    fn layer_bytes_independent_of_threads() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir(&src).unwrap();
        // Several compression blocks worth of poorly compressible data.
        let mut data = Vec::with_capacity(5 << 20);
        let mut x: u32 = 1;
        for _ in 0..(5 << 20) {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            data.push((x >> 16) as u8 % 64);
        }
        fs::write(src.join("big"), &data).unwrap();
        let store = store(tmp.path());
        for compression in [Compression::Gzip, Compression::Zstd] {
            let digests: Vec<String> = [1, 2]
                .iter()
                .map(|threads| {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(*threads)
                        .build()
                        .unwrap();
                    pool.install(|| {
                        write_layer(&src, &options(compression), &store)
                            .unwrap()
                            .digest
                    })
                })
                .collect();
            assert_eq!(digests[0], digests[1], "{compression:?}");
        }
    }

    /// Returns a cancel check that returns true from its `after`th call on.
    fn cancel_after(after: usize) -> impl Fn() -> bool + Sync {
        let calls = std::sync::atomic::AtomicUsize::new(0);
        move || calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= after
    }

    #[test]
    fn cancelled_layer_write_stores_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir(&src).unwrap();
        fs::write(src.join("big"), vec![7u8; 4 << 20]).unwrap();
        fs::write(src.join("small"), b"x").unwrap();
        let store = store(tmp.path());

        // Stopped before the first entry, and in the middle of the big file's data.
        for after in [0, 3] {
            let err = write_layer_cancellable(
                &src,
                &options(Compression::Gzip),
                &store,
                &cancel_after(after),
            )
            .unwrap_err();
            assert!(matches!(err, Error::Cancelled), "after {after}: {err}");
        }
        assert_eq!(fs::read_dir(tmp.path().join("tmp")).unwrap().count(), 0);
        let blobs = tmp.path().join("oci/blobs/sha256");
        assert!(!blobs.exists() || fs::read_dir(&blobs).unwrap().count() == 0);

        let layer =
            write_layer_cancellable(&src, &options(Compression::Gzip), &store, &|| false).unwrap();
        assert_eq!(
            layer,
            write_layer(&src, &options(Compression::Gzip), &store).unwrap()
        );
    }

    #[test]
    fn layer_blob_is_readable_by_everyone() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir(&src).unwrap();
        fs::write(src.join("file"), b"x").unwrap();
        let store = store(tmp.path());
        let layer = write_layer(&src, &options(Compression::Zstd), &store).unwrap();
        let mode = fs::metadata(store.blob_path(&layer.digest)).unwrap().mode();
        assert_eq!(mode & 0o777, 0o644);
    }

    #[test]
    fn cancelled_unpack_stops() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir(&src).unwrap();
        fs::write(src.join("big"), vec![7u8; 4 << 20]).unwrap();
        let store = store(tmp.path());
        let layer = write_layer(&src, &options(Compression::Gzip), &store).unwrap();
        let blob = store.blob_path(&layer.digest);

        for after in [0, 3] {
            let dest = tmp.path().join(format!("dest-{after}"));
            let err =
                unpack_layer_cancellable(&blob, &layer.media_type, &dest, &cancel_after(after))
                    .unwrap_err();
            assert!(matches!(err, Error::Cancelled), "after {after}: {err}");
        }
        let dest = tmp.path().join("whole");
        unpack_layer_cancellable(&blob, &layer.media_type, &dest, &|| false).unwrap();
        assert_eq!(fs::metadata(dest.join("big")).unwrap().len(), 4 << 20);
    }

    #[test]
    fn unpack_rejects_escaping_entries() {
        let tmp = tempfile::tempdir().unwrap();
        type Build = Box<dyn Fn(&mut tar::Builder<Vec<u8>>)>;
        let cases: Vec<(&str, Build)> = vec![
            ("absolute", Box::new(|b| raw_file(b, b"/etc/passwd"))),
            ("dotdot", Box::new(|b| raw_file(b, b"a/../../escape"))),
            (
                "through symlink",
                Box::new(|b| {
                    let mut h = zeroed_header(tar::EntryType::Symlink);
                    b.append_link(&mut h, "out", "/").unwrap();
                    raw_file(b, b"out/escape");
                }),
            ),
            (
                "hard link outside",
                Box::new(|b| raw_link(b, b"x", b"../../etc/passwd")),
            ),
        ];
        for (what, build) in cases {
            let mut builder = tar::Builder::new(Vec::new());
            build(&mut builder);
            let bytes = builder.into_inner().unwrap();
            let blob = tmp.path().join(format!("{what}.tar"));
            fs::write(&blob, bytes).unwrap();
            let dest = tmp.path().join(format!("{what}-dest"));
            let err =
                unpack_layer(&blob, "application/vnd.oci.image.layer.v1.tar", &dest).unwrap_err();
            assert!(matches!(err, Error::UnsafeEntry { .. }), "{what}: {err}");
        }
        assert!(!tmp.path().join("escape").exists());
    }

    /// Appends a file entry with an unchecked name, as a hostile archive would.
    fn raw_file(builder: &mut tar::Builder<Vec<u8>>, name: &[u8]) {
        let mut h = zeroed_header(tar::EntryType::Regular);
        h.set_size(1);
        set_truncated(&mut h.as_old_mut().name, name);
        h.set_cksum();
        builder.append(&h, &b"x"[..]).unwrap();
    }

    fn zeroed_header(kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_size(0);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h
    }

    fn raw_link(builder: &mut tar::Builder<Vec<u8>>, name: &[u8], target: &[u8]) {
        let mut h = zeroed_header(tar::EntryType::Link);
        set_truncated(&mut h.as_old_mut().name, name);
        set_truncated(&mut h.as_old_mut().linkname, target);
        h.set_cksum();
        builder.append(&h, io::empty()).unwrap();
    }
}
