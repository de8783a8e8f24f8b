//! Sending a local folder over `FileSync/DiffCopy`, the way fsutil's receiver in BuildKit
//! expects it.
//!
//! The sender lists the folder depth first, entries of each folder in byte order of their
//! names, each folder before its contents, as one STAT packet per entry and an empty STAT at the
//! end. Each STAT has an ID, its index in the listing. The receiver requests the contents of
//! regular files it lacks with REQ packets and receives DATA packets, the last one empty. The
//! receiver ends with FIN, and the sender replies with FIN. Either side reports a failure with
//! an ERR packet. This module owns the listing, the filters and the packet exchange; symlinks are
//! sent as links, never followed, except where `followpaths` names them.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, Semaphore};
use tokio_stream::{Stream, StreamExt};
use tonic::metadata::MetadataMap;
use tonic::Status;

use super::patterns::{clean, MatchInfo, PatternSet};
use super::proto::{Packet, PacketType, Stat};
use super::Error;

/// Go `os.FileMode` bits, as fsutil puts them on the wire.
pub mod mode {
    pub const DIR: u32 = 1 << 31;
    pub const SYMLINK: u32 = 1 << 27;
    pub const DEVICE: u32 = 1 << 26;
    pub const NAMED_PIPE: u32 = 1 << 25;
    pub const SOCKET: u32 = 1 << 24;
    pub const SETUID: u32 = 1 << 23;
    pub const SETGID: u32 = 1 << 22;
    pub const CHAR_DEVICE: u32 = 1 << 21;
    pub const STICKY: u32 = 1 << 20;
    pub const IRREGULAR: u32 = 1 << 19;
    /// Every type bit. An entry with none of them is a regular file.
    pub const TYPE: u32 = DIR | SYMLINK | NAMED_PIPE | SOCKET | DEVICE | CHAR_DEVICE | IRREGULAR;
}

/// Bytes in one DATA packet.
const CHUNK: usize = 64 * 1024;
/// Files read at the same time while serving REQ packets.
const PARALLEL_READS: usize = 4;
/// Packets queued towards BuildKit before the walk waits.
const QUEUE: usize = 128;

/// The folder and filters of one DiffCopy call, read from its request metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncRequest {
    /// The name of the shared folder (`dir-name`).
    pub dir_name: String,
    pub include_patterns: Vec<String>,
    pub exclude_patterns: Vec<String>,
    /// Paths whose symlinks are resolved into extra include patterns (`followpaths`).
    pub follow_paths: Vec<String>,
}

impl SyncRequest {
    /// Reads `dir-name`, `include-patterns`, `exclude-patterns` and `followpaths`; a key whose
    /// `<key>-encoded` companion is true contains URL query-escaped values.
    pub fn from_metadata(metadata: &MetadataMap) -> Self {
        let values = |key: &str| -> Vec<String> {
            let encoded = metadata
                .get(format!("{key}-encoded").as_str())
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True"));
            metadata
                .get_all(key)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(|v| {
                    if encoded {
                        query_unescape(v)
                    } else {
                        v.to_owned()
                    }
                })
                .collect()
        };
        SyncRequest {
            dir_name: values("dir-name").into_iter().next().unwrap_or_default(),
            include_patterns: values("include-patterns"),
            exclude_patterns: values("exclude-patterns"),
            follow_paths: values("followpaths"),
        }
    }
}

/// Undoes URL query escaping (`+` is a space, `%XX` a byte); a malformed escape stays as is.
fn query_unescape(value: &str) -> String {
    let bytes = value.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&hi), Some(&lo)) => hex(hi).zip(hex(lo)).map(|(hi, lo)| hi * 16 + lo),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(byte), _) => {
                out.push(byte as u8);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, byte) => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| value.to_owned())
}

/// The include and exclude filters of one transfer.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    include: Option<PatternSet>,
    exclude: Option<PatternSet>,
}

impl Filter {
    /// Builds the filters, resolving `followpaths` against `root` into include patterns.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidPattern`] for a pattern that does not parse; [`Error::Walk`] when a
    /// followed path cannot be read.
    pub fn new(root: &Path, sync_request: &SyncRequest) -> Result<Self, Error> {
        let mut includes = sync_request.include_patterns.clone();
        if !sync_request.follow_paths.is_empty() {
            if let Some(targets) = follow_links(root, &sync_request.follow_paths)? {
                includes.extend(targets);
                includes = dedupe_paths(includes).unwrap_or_default();
            }
        }
        let include = PatternSet::parse(&includes)?;
        let exclude = PatternSet::parse(&sync_request.exclude_patterns)?;
        Ok(Filter {
            include: (!include.is_empty()).then_some(include),
            exclude: (!exclude.is_empty()).then_some(exclude),
        })
    }
}

/// Resolves symlinks on the way to each path into the paths to include: every symlink passed
/// and the final path, with targets taken inside `root`. `None` means everything is included.
fn follow_links(root: &Path, paths: &[String]) -> Result<Option<Vec<String>>, Error> {
    let mut resolved = BTreeSet::new();
    for path in paths {
        follow(root, path, &mut resolved, 0)?;
    }
    Ok(dedupe_paths(resolved.into_iter().collect()))
}

/// Symlinks followed on one path at most; a loop stops here.
const MAX_FOLLOW: usize = 255;

fn follow(
    root: &Path,
    path: &str,
    resolved: &mut BTreeSet<String>,
    depth: usize,
) -> Result<(), Error> {
    let cleaned = clean(path.trim_start_matches('/'));
    if depth > MAX_FOLLOW || cleaned == ".." || cleaned.starts_with("../") {
        return Ok(());
    }
    if cleaned == "." {
        resolved.insert(cleaned);
        return Ok(());
    }
    let parts: Vec<&str> = cleaned.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        let current = if i == 0 {
            (*part).to_owned()
        } else {
            format!("{}/{part}", parts[..i].join("/"))
        };
        let rest = parts[i + 1..].join("/");
        let targets = read_symlinks(root, &current)?;
        if (rest.is_empty() || targets.is_some()) && resolved.contains(&current) {
            return Ok(());
        }
        if let Some(targets) = targets {
            resolved.insert(current);
            for target in targets {
                let next = if rest.is_empty() {
                    target
                } else {
                    format!("{target}/{rest}")
                };
                follow(root, &next, resolved, depth + 1)?;
            }
            return Ok(());
        }
        if rest.is_empty() {
            resolved.insert(current);
            return Ok(());
        }
    }
    Ok(())
}

/// The targets (as paths from `root`) of the symlink at `rel`, or of every symlink its last
/// component matches when that component has wildcards; `None` when there is no symlink.
fn read_symlinks(root: &Path, rel: &str) -> Result<Option<Vec<String>>, Error> {
    let (dir, base) = rel.rsplit_once('/').unwrap_or(("", rel));
    if !has_wildcards(base) {
        return read_symlink(root, rel);
    }
    let glob = PatternSet::parse(&[base])?;
    let entries = match fs::read_dir(root.join(dir)) {
        Ok(entries) => entries,
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(source) => return Err(walk_error(root.join(dir), source)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| walk_error(root.join(dir), source))?;
        if let Some(name) = entry.file_name().to_str() {
            if glob.matches(name) {
                names.push(name.to_owned());
            }
        }
    }
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let path = if dir.is_empty() {
            name
        } else {
            format!("{dir}/{name}")
        };
        out.extend(read_symlink(root, &path)?.unwrap_or_default());
    }
    Ok((!out.is_empty()).then_some(out))
}

fn read_symlink(root: &Path, rel: &str) -> Result<Option<Vec<String>>, Error> {
    let abs = root.join(rel);
    match fs::symlink_metadata(&abs) {
        Ok(meta) if meta.file_type().is_symlink() => {}
        Ok(_) => return Ok(None),
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(source) => return Err(walk_error(abs, source)),
    }
    let link = fs::read_link(&abs).map_err(|source| walk_error(abs.clone(), source))?;
    let link = link
        .to_str()
        .ok_or_else(|| Error::NonUtf8Path { path: abs.clone() })?;
    let target = if link.starts_with('/') {
        clean(link)
    } else {
        let dir = rel.rsplit_once('/').map(|(dir, _)| dir).unwrap_or("");
        clean(&format!("/{dir}/{link}"))
    };
    Ok(Some(vec![target]))
}

fn has_wildcards(name: &str) -> bool {
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// Drops every path under one kept before it; a `.` means no filter at all (`None`).
fn dedupe_paths(paths: Vec<String>) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(paths.len());
    for path in paths {
        if path == "." {
            return None;
        }
        if let Some(last) = out.last() {
            if path.starts_with(last.as_str()) && path.as_bytes().get(last.len()) == Some(&b'/') {
                continue;
            }
        }
        out.push(path);
    }
    Some(out)
}

fn is_not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(nix::libc::ENOTDIR)
}

fn walk_error(path: PathBuf, source: io::Error) -> Error {
    Error::Walk { path, source }
}

/// Maps a POSIX `st_mode` to Go `os.FileMode` bits.
pub fn go_file_mode(st_mode: u32) -> u32 {
    use nix::libc;
    let mut mode = st_mode & 0o777;
    mode |= match st_mode & libc::S_IFMT {
        libc::S_IFDIR => mode::DIR,
        libc::S_IFLNK => mode::SYMLINK,
        libc::S_IFBLK => mode::DEVICE,
        libc::S_IFCHR => mode::DEVICE | mode::CHAR_DEVICE,
        libc::S_IFIFO => mode::NAMED_PIPE,
        libc::S_IFSOCK => mode::SOCKET,
        libc::S_IFREG => 0,
        _ => mode::IRREGULAR,
    };
    if st_mode & libc::S_ISUID != 0 {
        mode |= mode::SETUID;
    }
    if st_mode & libc::S_ISGID != 0 {
        mode |= mode::SETGID;
    }
    if st_mode & libc::S_ISVTX != 0 {
        mode |= mode::STICKY;
    }
    mode
}

/// Builds the STAT of one entry. Hard-linked files after the first carry the first one's path
/// as `linkname` and size 0, so the receiver links them instead of asking for their contents.
fn stat_for(
    rel: &str,
    abs: &Path,
    meta: &Metadata,
    hardlinks: &mut HashMap<(u64, u64), String>,
) -> Result<Stat, Error> {
    let mode = go_file_mode(meta.mode());
    let mut stat = Stat {
        path: rel.to_owned(),
        mode,
        uid: meta.uid(),
        gid: meta.gid(),
        mod_time: meta
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(meta.mtime_nsec()),
        ..Stat::default()
    };
    if mode & mode::DIR == 0 {
        stat.size = i64::try_from(meta.len()).unwrap_or(i64::MAX);
    }
    if mode & mode::SYMLINK != 0 {
        let link = fs::read_link(abs).map_err(|source| walk_error(abs.to_owned(), source))?;
        stat.linkname = link
            .to_str()
            .ok_or_else(|| Error::NonUtf8Path {
                path: abs.to_owned(),
            })?
            .to_owned();
    } else if mode & mode::DIR == 0 {
        if mode & mode::DEVICE != 0 {
            let rdev = meta.rdev();
            stat.devmajor = ((rdev >> 8) & 0xfff) as i64;
            stat.devminor = ((rdev & 0xff) | ((rdev >> 12) & 0xfff00)) as i64;
        }
        if meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            match hardlinks.get(&key) {
                Some(first) => {
                    stat.linkname = first.clone();
                    stat.size = 0;
                }
                None => {
                    hardlinks.insert(key, rel.to_owned());
                }
            }
        }
    }
    stat.xattrs = read_xattrs(abs)?;
    Ok(stat)
}

fn read_xattrs(abs: &Path) -> Result<std::collections::BTreeMap<String, Vec<u8>>, Error> {
    let mut out = std::collections::BTreeMap::new();
    let names = match xattr::list(abs) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOTSUP) => return Ok(out),
        Err(source) => return Err(walk_error(abs.to_owned(), source)),
    };
    for name in names {
        let Some(key) = name.to_str() else { continue };
        if let Ok(Some(value)) = xattr::get(abs, &name) {
            out.insert(key.to_owned(), value);
        }
    }
    Ok(out)
}

/// A listed entry: its STAT and, for regular files, where to read its contents.
struct Entry {
    stat: Stat,
    abs: PathBuf,
}

/// A folder on the walk's current path.
struct Frame {
    entry: Option<Entry>,
    include: MatchInfo,
    exclude: MatchInfo,
}

/// Walks `root` in the order fsutil's receiver checks, calling `emit` for each entry that
/// passes the filter (and for the folders above it, first). `emit` returns false to stop.
pub(super) fn walk(
    root: &Path,
    filter: &Filter,
    emit: &mut dyn FnMut(Stat, PathBuf) -> bool,
) -> Result<bool, Error> {
    let mut walker = Walker {
        filter,
        hardlinks: HashMap::new(),
        emit,
    };
    walker.dir(root, "", &mut Vec::new())
}

struct Walker<'a> {
    filter: &'a Filter,
    hardlinks: HashMap<(u64, u64), String>,
    emit: &'a mut dyn FnMut(Stat, PathBuf) -> bool,
}

impl Walker<'_> {
    fn dir(&mut self, abs: &Path, rel: &str, stack: &mut Vec<Frame>) -> Result<bool, Error> {
        let entries = match fs::read_dir(abs) {
            Ok(entries) => entries,
            Err(e) if is_not_found(&e) => return Ok(true),
            Err(source) => return Err(walk_error(abs.to_owned(), source)),
        };
        let mut children = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| walk_error(abs.to_owned(), source))?;
            children.push(entry);
        }
        children.sort_by(|a, b| a.file_name().as_bytes().cmp(b.file_name().as_bytes()));

        for child in children {
            let child_abs = child.path();
            let name = child.file_name();
            let name = name.to_str().ok_or_else(|| Error::NonUtf8Path {
                path: child_abs.clone(),
            })?;
            let child_rel = if rel.is_empty() {
                name.to_owned()
            } else {
                format!("{rel}/{name}")
            };
            let is_dir = match child.file_type() {
                Ok(kind) => kind.is_dir(),
                Err(e) if is_not_found(&e) => continue,
                Err(source) => return Err(walk_error(child_abs, source)),
            };

            let Some((skip, include, exclude)) = self.filter_entry(&child_rel, is_dir, stack)
            else {
                continue;
            };
            if skip && !is_dir {
                continue;
            }
            let meta = match fs::symlink_metadata(&child_abs) {
                Ok(meta) => meta,
                Err(e) if is_not_found(&e) => continue,
                Err(e) if skip && e.kind() == io::ErrorKind::PermissionDenied => continue,
                Err(source) => return Err(walk_error(child_abs, source)),
            };
            if meta.file_type().is_socket() {
                // NOTE: fsutil sends a socket as an empty regular file. Sockets are left out
                // here, because their contents cannot be read.
                continue;
            }
            let stat = stat_for(&child_rel, &child_abs, &meta, &mut self.hardlinks)?;
            let entry = Entry {
                stat,
                abs: child_abs.clone(),
            };

            let entry = if skip {
                Some(entry)
            } else {
                if !self.emit_parents(stack) || !(self.emit)(entry.stat, entry.abs) {
                    return Ok(false);
                }
                None
            };
            if is_dir {
                stack.push(Frame {
                    entry,
                    include,
                    exclude,
                });
                let go_on = self.dir(&child_abs, &child_rel, stack)?;
                stack.pop();
                if !go_on {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// Matches one entry against the filters. `None` skips a folder and everything in it;
    /// otherwise whether the entry itself is left out, and the match state for its entries.
    fn filter_entry(
        &self,
        rel: &str,
        is_dir: bool,
        stack: &[Frame],
    ) -> Option<(bool, MatchInfo, MatchInfo)> {
        let parent = stack.last();
        let mut skip = false;
        let mut include_info = MatchInfo::default();
        let mut exclude_info = MatchInfo::default();
        if let Some(include) = &self.filter.include {
            let (matched, info) = include.matches_below(rel, parent.map_or(&EMPTY, |f| &f.include));
            include_info = info;
            if !matched {
                if is_dir && !include.may_match_inside(rel, false) {
                    return None;
                }
                skip = true;
            }
        }
        if let Some(exclude) = &self.filter.exclude {
            let (matched, info) = exclude.matches_below(rel, parent.map_or(&EMPTY, |f| &f.exclude));
            exclude_info = info;
            if matched {
                if is_dir && !exclude.may_match_inside(rel, true) {
                    return None;
                }
                skip = true;
            }
        }
        Some((skip, include_info, exclude_info))
    }

    /// Emits the folders above an entry that were held back because only part of them passes
    /// the filter.
    fn emit_parents(&mut self, stack: &mut [Frame]) -> bool {
        for frame in stack.iter_mut() {
            if let Some(entry) = frame.entry.take() {
                if !(self.emit)(entry.stat, entry.abs) {
                    return false;
                }
            }
        }
        true
    }
}

static EMPTY: MatchInfo = MatchInfo::new();

/// Stops the blocking walk and file reads when the exchange ends, however it ends.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

type Outgoing = mpsc::Sender<Result<Packet, Status>>;

/// Runs one DiffCopy exchange: lists `root` through `tx` while answering the receiver's
/// packets from `incoming`.
///
/// # Errors
///
/// The failure that ended the transfer; it was also sent to the receiver as an ERR packet.
pub(super) async fn send<S>(
    root: PathBuf,
    sync_request: SyncRequest,
    mut incoming: S,
    tx: Outgoing,
) -> Result<(), Error>
where
    S: Stream<Item = Result<Packet, Status>> + Unpin,
{
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_guard = StopOnDrop(stop.clone());
    let files: Arc<Mutex<HashMap<u32, PathBuf>>> = Arc::default();
    let reads = Arc::new(Semaphore::new(PARALLEL_READS));

    let mut walker = tokio::task::spawn_blocking({
        let (files, stop, tx) = (files.clone(), stop.clone(), tx.clone());
        move || list(&root, &sync_request, &files, &stop, &tx)
    });
    let mut walking = true;

    loop {
        tokio::select! {
            listed = &mut walker, if walking => {
                walking = false;
                let listed = listed.unwrap_or_else(|e| Err(Error::Protocol {
                    what: format!("listing stopped: {e}"),
                }));
                if let Err(e) = listed {
                    return fail(&tx, e).await;
                }
            }
            packet = incoming.next() => {
                let packet = match packet {
                    None => return Ok(()),
                    Some(Err(status)) => return Err(Error::Stream { source: status }),
                    Some(Ok(packet)) => packet,
                };
                match PacketType::try_from(packet.r#type) {
                    Ok(PacketType::Req) => {
                        let path = files.lock().unwrap_or_else(|e| e.into_inner()).remove(&packet.id);
                        let Some(path) = path else {
                            let what = format!("asked for unknown file ID {}", packet.id);
                            return fail(&tx, Error::Protocol { what }).await;
                        };
                        let Ok(permit) = reads.clone().acquire_owned().await else {
                            return Ok(());
                        };
                        let (tx, stop) = (tx.clone(), stop.clone());
                        tokio::task::spawn_blocking(move || {
                            let _permit = permit;
                            send_file(packet.id, &path, &stop, &tx);
                        });
                    }
                    Ok(PacketType::Fin) => {
                        stop.store(true, Ordering::SeqCst);
                        let _ = tx.send(Ok(Packet::fin())).await;
                        return Ok(());
                    }
                    Ok(PacketType::Err) => {
                        let message = String::from_utf8_lossy(&packet.data).into_owned();
                        return Err(Error::Receiver { message });
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Reports a failure to the receiver as an ERR packet and ends the response with its status.
async fn fail(tx: &Outgoing, error: Error) -> Result<(), Error> {
    let _ = tx.send(Ok(Packet::error(error.wire_message()))).await;
    let _ = tx.send(Err(error.to_status())).await;
    Err(error)
}

/// The listing half, on a blocking thread: filters, walks, sends STAT packets and the empty
/// STAT that ends them. Returns early, without error, once the exchange has stopped.
fn list(
    root: &Path,
    sync_request: &SyncRequest,
    files: &Mutex<HashMap<u32, PathBuf>>,
    stop: &AtomicBool,
    tx: &Outgoing,
) -> Result<(), Error> {
    let root = fs::canonicalize(root).map_err(|source| walk_error(root.to_owned(), source))?;
    let meta = fs::metadata(&root).map_err(|source| walk_error(root.clone(), source))?;
    if !meta.is_dir() {
        return Err(Error::NotAFolder { path: root });
    }
    let filter = Filter::new(&root, sync_request)?;

    let mut next_id: u32 = 0;
    let mut emit = |stat: Stat, abs: PathBuf| -> bool {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        let id = next_id;
        next_id = next_id.wrapping_add(1);
        if stat.mode & mode::TYPE == 0 {
            files
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, abs);
        }
        tx.blocking_send(Ok(Packet::stat(stat))).is_ok()
    };
    if walk(&root, &filter, &mut emit)? {
        let _ = tx.blocking_send(Ok(Packet::end_of_listing()));
    }
    Ok(())
}

/// Sends one file's contents as DATA packets and the empty DATA that ends them. A file that
/// cannot be read fails the whole transfer.
fn send_file(id: u32, path: &Path, stop: &AtomicBool, tx: &Outgoing) {
    let result = (|| -> io::Result<bool> {
        let mut file = fs::File::open(path)?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            if stop.load(Ordering::SeqCst) {
                return Ok(false);
            }
            let n = file.read(&mut buf)?;
            if n == 0 {
                return Ok(true);
            }
            if tx
                .blocking_send(Ok(Packet::data(id, buf[..n].to_vec())))
                .is_err()
            {
                return Ok(false);
            }
        }
    })();
    match result {
        Ok(true) => {
            let _ = tx.blocking_send(Ok(Packet::data(id, Vec::new())));
        }
        Ok(false) => {}
        Err(source) => {
            let error = Error::Read {
                path: path.to_owned(),
                source,
            };
            stop.store(true, Ordering::SeqCst);
            let _ = tx.blocking_send(Ok(Packet::error(error.wire_message())));
            let _ = tx.blocking_send(Err(error.to_status()));
        }
    }
}

/// Capacity of the channel that carries packets to BuildKit.
pub(super) fn channel() -> (Outgoing, mpsc::Receiver<Result<Packet, Status>>) {
    mpsc::channel(QUEUE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use tokio_stream::wrappers::ReceiverStream;

    fn sync_request(includes: &[&str], excludes: &[&str], follow: &[&str]) -> SyncRequest {
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        SyncRequest {
            dir_name: "context".into(),
            include_patterns: owned(includes),
            exclude_patterns: owned(excludes),
            follow_paths: owned(follow),
        }
    }

    fn write(root: &Path, rel: &str, contents: &str) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
    }

    fn listing(root: &Path, sync_request: &SyncRequest) -> Vec<Stat> {
        let filter = Filter::new(root, sync_request).unwrap();
        let mut out = Vec::new();
        let finished = walk(root, &filter, &mut |stat, _| {
            out.push(stat);
            true
        })
        .unwrap();
        assert!(finished);
        out
    }

    fn paths(stats: &[Stat]) -> Vec<&str> {
        stats.iter().map(|s| s.path.as_str()).collect()
    }

    /// The checks fsutil's receiver applies: clean relative paths, each parent sent before its
    /// entries, and siblings in increasing byte order.
    fn assert_receiver_order(stats: &[Stat]) {
        let mut last_in: HashMap<String, String> = HashMap::new();
        let mut dirs: BTreeSet<String> = BTreeSet::from([String::new()]);
        for stat in stats {
            assert_eq!(clean(&stat.path), stat.path, "unclean path");
            let (dir, base) = stat.path.rsplit_once('/').unwrap_or(("", &stat.path));
            assert!(dirs.contains(dir), "`{}` sent before its folder", stat.path);
            let last = last_in.entry(dir.to_owned()).or_default();
            assert!(
                last.as_str() < base,
                "`{}` out of order after `{last}`",
                stat.path
            );
            *last = base.to_owned();
            if stat.mode & mode::DIR != 0 {
                dirs.insert(stat.path.clone());
            }
        }
    }

    #[test]
    fn go_file_mode_per_type() {
        assert_eq!(go_file_mode(0o100644), 0o644);
        assert_eq!(go_file_mode(0o40755), mode::DIR | 0o755);
        assert_eq!(go_file_mode(0o120777), mode::SYMLINK | 0o777);
        assert_eq!(go_file_mode(0o104755), mode::SETUID | 0o755);
        assert_eq!(go_file_mode(0o102755), mode::SETGID | 0o755);
        assert_eq!(go_file_mode(0o41777), mode::DIR | mode::STICKY | 0o777);
        assert_eq!(
            go_file_mode(0o20620),
            mode::DEVICE | mode::CHAR_DEVICE | 0o620
        );
        assert_eq!(go_file_mode(0o60660), mode::DEVICE | 0o660);
        assert_eq!(go_file_mode(0o10644), mode::NAMED_PIPE | 0o644);
        assert_eq!(go_file_mode(0o140755), mode::SOCKET | 0o755);
        assert_eq!(mode::DIR, 0x8000_0000);
        assert_eq!(mode::SYMLINK, 0x0800_0000);
    }

    #[test]
    fn listing_order_is_byte_order() {
        let dir = tempfile::tempdir().unwrap();
        for rel in ["b", "a-b", "a/c", "B", "z/y/x", "a/a"] {
            write(dir.path(), rel, rel);
        }
        let stats = listing(dir.path(), &SyncRequest::default());
        assert_eq!(
            paths(&stats),
            ["B", "a", "a/a", "a/c", "a-b", "b", "z", "z/y", "z/y/x"]
        );
        assert_receiver_order(&stats);
    }

    #[test]
    fn stat_fields_and_links() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "run.sh", "#!/bin/sh\n");
        fs::set_permissions(
            dir.path().join("run.sh"),
            fs::Permissions::from_mode(0o4755),
        )
        .unwrap();
        symlink("run.sh", dir.path().join("link")).unwrap();
        fs::hard_link(dir.path().join("run.sh"), dir.path().join("zz-hard")).unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();

        let stats = listing(dir.path(), &SyncRequest::default());
        assert_eq!(paths(&stats), ["link", "run.sh", "sub", "zz-hard"]);
        let meta = fs::symlink_metadata(dir.path().join("run.sh")).unwrap();

        let link = &stats[0];
        assert_eq!(link.mode, mode::SYMLINK | 0o777);
        assert_eq!(link.linkname, "run.sh");
        assert_eq!(link.size, 6);

        let script = &stats[1];
        assert_eq!(script.mode, mode::SETUID | 0o755);
        assert_eq!(script.size, 10);
        assert_eq!(script.uid, meta.uid());
        assert_eq!(script.gid, meta.gid());
        assert_eq!(
            script.mod_time,
            meta.mtime() * 1_000_000_000 + meta.mtime_nsec()
        );
        assert!(script.linkname.is_empty());

        assert_eq!(stats[2].mode & mode::DIR, mode::DIR);
        assert_eq!(stats[2].size, 0);

        let hard = &stats[3];
        assert_eq!(hard.linkname, "run.sh");
        assert_eq!(hard.size, 0);
        assert_eq!(hard.mode, mode::SETUID | 0o755);
    }

    #[test]
    fn excludes_with_exceptions() {
        let dir = tempfile::tempdir().unwrap();
        for rel in [
            "app.log",
            "src/main.rs",
            "src/debug.log",
            "build/out.bin",
            "build/keep.txt",
            "build/deep/x",
            "node_modules/a/index.js",
        ] {
            write(dir.path(), rel, rel);
        }
        let excludes = ["**/*.log", "build", "!build/keep.txt", "node_modules"];
        let stats = listing(dir.path(), &sync_request(&[], &excludes, &[]));
        assert_eq!(
            paths(&stats),
            ["build", "build/keep.txt", "src", "src/main.rs"]
        );
        assert_receiver_order(&stats);
    }

    #[test]
    fn includes_send_parent_folders() {
        let dir = tempfile::tempdir().unwrap();
        for rel in [
            "Dockerfile",
            "src/a/lib.rs",
            "src/a/notes.txt",
            "src/b.rs",
            "docs/x.rs",
        ] {
            write(dir.path(), rel, rel);
        }
        let stats = listing(
            dir.path(),
            &sync_request(&["src/**/*.rs", "Dockerfile"], &[], &[]),
        );
        assert_eq!(
            paths(&stats),
            ["Dockerfile", "src", "src/a", "src/a/lib.rs", "src/b.rs"]
        );
        assert_receiver_order(&stats);

        let stats = listing(dir.path(), &sync_request(&["src"], &["src/a"], &[]));
        assert_eq!(paths(&stats), ["src", "src/b.rs"]);
    }

    #[test]
    fn followpaths_include_link_targets() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "real/Dockerfile.dev", "FROM x\n");
        write(dir.path(), "other", "");
        symlink("real/Dockerfile.dev", dir.path().join("Dockerfile")).unwrap();
        let stats = listing(dir.path(), &sync_request(&[], &[], &["Dockerfile"]));
        assert_eq!(paths(&stats), ["Dockerfile", "real", "real/Dockerfile.dev"]);

        let stats = listing(dir.path(), &sync_request(&["other"], &[], &["missing"]));
        assert_eq!(paths(&stats), ["other"]);

        // As in fsutil, following `.` adds nothing to the include patterns.
        let stats = listing(dir.path(), &sync_request(&["other"], &[], &["."]));
        assert_eq!(paths(&stats), ["other"]);
    }

    #[test]
    fn metadata_url_encoding() {
        let mut metadata = MetadataMap::new();
        metadata.insert("dir-name", "context".parse().unwrap());
        metadata.append("exclude-patterns", "a%C3%A9+b".parse().unwrap());
        metadata.append("exclude-patterns", "%zz".parse().unwrap());
        metadata.insert("exclude-patterns-encoded", "1".parse().unwrap());
        metadata.append("include-patterns", "x+y".parse().unwrap());
        let sync_request = SyncRequest::from_metadata(&metadata);
        assert_eq!(sync_request.dir_name, "context");
        assert_eq!(sync_request.exclude_patterns, ["a\u{e9} b", "%zz"]);
        assert_eq!(sync_request.include_patterns, ["x+y"]);
        assert!(sync_request.follow_paths.is_empty());
    }

    /// Drives `send` like fsutil's receiver: takes the listing, requests every regular file
    /// without a hard-link target, then ends with FIN.
    #[tokio::test]
    async fn packet_exchange_ends_with_fin() {
        let dir = tempfile::tempdir().unwrap();
        let big: String = "0123456789".repeat(20_000);
        write(dir.path(), "big.txt", &big);
        write(dir.path(), "empty", "");
        write(dir.path(), "sub/small", "hello");
        fs::hard_link(dir.path().join("sub/small"), dir.path().join("sub/twin")).unwrap();

        let (peer_tx, peer_rx) = mpsc::channel(16);
        let (tx, mut rx) = channel();
        let root = dir.path().to_owned();
        let sender = tokio::spawn(async move {
            send(
                root,
                SyncRequest::default(),
                ReceiverStream::new(peer_rx),
                tx,
            )
            .await
        });

        let mut stats = Vec::new();
        loop {
            let packet = rx.recv().await.unwrap().unwrap();
            assert_eq!(packet.r#type(), PacketType::Stat);
            match packet.stat {
                Some(stat) => stats.push(stat),
                None => break,
            }
        }
        assert_eq!(
            paths(&stats),
            ["big.txt", "empty", "sub", "sub/small", "sub/twin"]
        );
        let sync_request: Vec<u32> = stats
            .iter()
            .enumerate()
            .filter(|(_, s)| s.mode & mode::TYPE == 0 && s.linkname.is_empty())
            .map(|(i, _)| i as u32)
            .collect();
        assert_eq!(sync_request, [0, 1, 3]);
        for id in &sync_request {
            peer_tx.send(Ok(Packet::request(*id))).await.unwrap();
        }

        let mut contents: HashMap<u32, Vec<u8>> = HashMap::new();
        let mut done = BTreeSet::new();
        while done.len() < sync_request.len() {
            let packet = rx.recv().await.unwrap().unwrap();
            assert_eq!(packet.r#type(), PacketType::Data);
            assert!(
                !done.contains(&packet.id),
                "data after the end of {}",
                packet.id
            );
            if packet.data.is_empty() {
                done.insert(packet.id);
            } else {
                assert!(packet.data.len() <= CHUNK);
                contents.entry(packet.id).or_default().extend(packet.data);
            }
        }
        assert_eq!(contents.remove(&0).unwrap(), big.as_bytes());
        assert!(!contents.contains_key(&1));
        assert_eq!(contents.remove(&3).unwrap(), b"hello");

        peer_tx.send(Ok(Packet::fin())).await.unwrap();
        let fin = rx.recv().await.unwrap().unwrap();
        assert_eq!(fin.r#type(), PacketType::Fin);
        sender.await.unwrap().unwrap();
        assert!(rx.recv().await.is_none(), "the stream ends after FIN");
    }

    #[tokio::test]
    async fn unknown_file_id_fails() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a", "a");
        let (peer_tx, peer_rx) = mpsc::channel(16);
        let (tx, mut rx) = channel();
        let root = dir.path().to_owned();
        let sender = tokio::spawn(async move {
            send(
                root,
                SyncRequest::default(),
                ReceiverStream::new(peer_rx),
                tx,
            )
            .await
        });
        while rx.recv().await.unwrap().unwrap().stat.is_some() {}
        peer_tx.send(Ok(Packet::request(9))).await.unwrap();

        let err = rx.recv().await.unwrap().unwrap();
        assert_eq!(err.r#type(), PacketType::Err);
        assert!(String::from_utf8_lossy(&err.data).contains("unknown file ID 9"));
        let status = rx.recv().await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(matches!(sender.await.unwrap(), Err(Error::Protocol { .. })));
    }

    #[tokio::test]
    async fn receiver_error_ends_transfer() {
        let dir = tempfile::tempdir().unwrap();
        let (peer_tx, peer_rx) = mpsc::channel(16);
        let (tx, _rx) = channel();
        let root = dir.path().to_owned();
        let sender = tokio::spawn(async move {
            send(
                root,
                SyncRequest::default(),
                ReceiverStream::new(peer_rx),
                tx,
            )
            .await
        });
        peer_tx.send(Ok(Packet::error("disk full"))).await.unwrap();
        let err = sender.await.unwrap().unwrap_err();
        assert!(matches!(err, Error::Receiver { ref message } if message == "disk full"));
    }

    #[tokio::test]
    async fn bad_pattern_reaches_receiver() {
        let dir = tempfile::tempdir().unwrap();
        let (_peer_tx, peer_rx) = mpsc::channel(16);
        let (tx, mut rx) = channel();
        let root = dir.path().to_owned();
        let sender = tokio::spawn(async move {
            send(
                root,
                sync_request(&[], &["[oops"], &[]),
                ReceiverStream::new(peer_rx),
                tx,
            )
            .await
        });
        let err = rx.recv().await.unwrap().unwrap();
        assert_eq!(err.r#type(), PacketType::Err);
        assert!(String::from_utf8_lossy(&err.data).contains("`[oops`"));
        assert_eq!(
            rx.recv().await.unwrap().unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        assert!(matches!(
            sender.await.unwrap(),
            Err(Error::InvalidPattern { .. })
        ));
    }
}
