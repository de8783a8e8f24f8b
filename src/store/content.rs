//! Blobs and tags in an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`).
//!
//! A blob becomes visible only by an atomic rename from the temporary folder, after its digest
//! is known. Tags are `index.json` entries carrying the `org.opencontainers.image.ref.name`
//! annotation. `index.json` is rewritten through a temporary file and a rename while a lock file
//! is held, so two envc processes never lose each other's tags. The same type reads and writes
//! foreign layouts, for `--output oci:DIR[:TAG]` and for a base image given as `oci:DIR[:TAG]`.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::image::{Descriptor, DescriptorBuilder, Digest, ImageIndex, MediaType};
use sha2::{Digest as _, Sha256};

use super::Error;

/// The annotation that names a tag in `index.json`.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

const LAYOUT_FILE: &str = "oci-layout";
const LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
const INDEX_FILE: &str = "index.json";
const INDEX_LOCK: &str = "index.json.lock";

/// The OCI image layout part of the store.
#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
    tmp: PathBuf,
}

impl ContentStore {
    /// Opens the layout at `root`, creating it when missing. Temporary files go to `tmp`, which
    /// must be on the same file system.
    ///
    /// # Errors
    /// Fails when the folders or the layout files cannot be created.
    pub fn open(root: &Path, tmp: &Path) -> Result<ContentStore, Error> {
        let blobs = root.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(Error::io("create", &blobs))?;
        fs::create_dir_all(tmp).map_err(Error::io("create", tmp))?;
        let store = ContentStore {
            root: root.to_path_buf(),
            tmp: tmp.to_path_buf(),
        };
        let layout = root.join(LAYOUT_FILE);
        if !layout.exists() {
            store.write_atomic(&layout, LAYOUT_CONTENT)?;
        }
        let index = root.join(INDEX_FILE);
        if !index.exists() {
            store.write_index(&empty_index())?;
        }
        Ok(store)
    }

    /// Opens an existing layout at `dir` for reading, checking its `oci-layout` file.
    ///
    /// # Errors
    /// Fails when `dir` is not an OCI image layout.
    pub fn open_existing(dir: &Path) -> Result<ContentStore, Error> {
        let layout = dir.join(LAYOUT_FILE);
        let bytes = fs::read(&layout).map_err(Error::io("read", &layout))?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                path: layout.clone(),
                reason: e.to_string(),
            })?;
        if value
            .get("imageLayoutVersion")
            .and_then(|v| v.as_str())
            .is_none()
        {
            let reason = "no `imageLayoutVersion`".to_string();
            return Err(Error::Corrupt {
                path: layout,
                reason,
            });
        }
        Ok(ContentStore {
            root: dir.to_path_buf(),
            tmp: dir.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where blob `digest` (`sha256:<hex>`) lives, whether or not it exists yet.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.root.join("blobs").join("sha256").join(hex)
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_file()
    }

    /// A new temporary file next to the blobs, for content being written.
    ///
    /// # Errors
    /// Fails when the temporary folder is not writable.
    pub fn temp_file(&self) -> Result<tempfile::NamedTempFile, Error> {
        tempfile::Builder::new()
            .prefix(".blob-")
            .tempfile_in(&self.tmp)
            .map_err(Error::io("create a temporary file in", &self.tmp))
    }

    /// Moves a finished temporary file into place as blob `digest`, trusting a digest the
    /// caller computed while writing it. Returns the blob's path.
    ///
    /// # Errors
    /// Fails when the rename fails.
    pub fn persist_blob(
        &self,
        tmp: tempfile::NamedTempFile,
        digest: &str,
    ) -> Result<PathBuf, Error> {
        let dest = self.blob_path(digest);
        let new_size = tmp.as_file().metadata().map(|m| m.len()).ok();
        let old_size = fs::metadata(&dest)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        if old_size.is_some() && old_size == new_size {
            // Same digest, same bytes: the copy already there wins.
            return Ok(dest);
        }
        if old_size.is_some() {
            tracing::warn!("replacing damaged blob `{digest}` in the store");
        }
        // Blobs are content, not secrets: readable by everyone, like a registry serves them.
        let mode = fs::Permissions::from_mode(0o644);
        fs::set_permissions(tmp.path(), mode).map_err(Error::io("set mode of", tmp.path()))?;
        tmp.persist(&dest)
            .map_err(|e| Error::io("store blob", &dest)(e.error))?;
        Ok(dest)
    }

    /// Tells whether blob `digest` is in the store with `size` bytes. A size check catches a
    /// truncated or partly written blob without hashing it.
    pub fn has_blob_of_size(&self, digest: &str, size: u64) -> bool {
        fs::metadata(self.blob_path(digest))
            .map(|m| m.is_file() && m.len() == size)
            .unwrap_or(false)
    }

    /// Hashes a finished temporary file and moves it into place when it matches `digest`.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when the content does not match `digest`.
    pub fn ingest_file(
        &self,
        tmp: tempfile::NamedTempFile,
        digest: &str,
    ) -> Result<PathBuf, Error> {
        let actual = digest_file(tmp.path())?;
        if actual != digest {
            let reason = format!("expected digest `{digest}`, content has `{actual}`");
            return Err(Error::Corrupt {
                path: tmp.path().to_path_buf(),
                reason,
            });
        }
        self.persist_blob(tmp, digest)
    }

    /// Stores `bytes` as a blob and returns its digest.
    ///
    /// # Errors
    /// Fails when the blob cannot be written.
    pub fn write_blob(&self, bytes: &[u8]) -> Result<String, Error> {
        let digest = digest_bytes(bytes);
        if self.has_blob(&digest) {
            return Ok(digest);
        }
        let mut tmp = self.temp_file()?;
        tmp.write_all(bytes)
            .map_err(Error::io("write", tmp.path()))?;
        self.persist_blob(tmp, &digest)?;
        Ok(digest)
    }

    /// Reads blob `digest` into memory.
    ///
    /// # Errors
    /// [`Error::MissingBlob`] when it is not in the store.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, Error> {
        let path = self.blob_path(digest);
        match fs::read(&path) {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::MissingBlob(digest.to_string()))
            }
            Err(e) => Err(Error::io("read", &path)(e)),
        }
    }

    /// The size of blob `digest` in bytes.
    ///
    /// # Errors
    /// [`Error::MissingBlob`] when it is not in the store.
    pub fn blob_size(&self, digest: &str) -> Result<u64, Error> {
        match fs::metadata(self.blob_path(digest)) {
            Ok(meta) => Ok(meta.len()),
            Err(_) => Err(Error::MissingBlob(digest.to_string())),
        }
    }

    /// Points tag `name` at `manifest` (replacing an earlier image under that tag).
    ///
    /// # Errors
    /// [`Error::MissingBlob`] when the manifest is not in the store; I/O errors otherwise.
    pub fn tag(&self, name: &str, manifest: &Descriptor) -> Result<(), Error> {
        let digest = manifest.digest().to_string();
        if !self.has_blob(&digest) {
            return Err(Error::MissingBlob(digest));
        }
        let mut entry = manifest.clone();
        let mut annotations = entry.annotations().clone().unwrap_or_default();
        annotations.insert(REF_NAME_ANNOTATION.to_string(), name.to_string());
        entry.set_annotations(Some(annotations));

        // An untagged entry of the same image would make the layout hold it twice, and tools
        // that pick "the only image" of a layout would then refuse it.
        self.update_index(|manifests| {
            manifests.retain(|d| {
                ref_name(d) != Some(name)
                    && !(ref_name(d).is_none() && d.digest() == entry.digest())
            });
            manifests.push(entry);
        })
    }

    /// The manifest descriptor tag `name` points at, if any.
    ///
    /// # Errors
    /// Fails when `index.json` cannot be read.
    pub fn resolve_tag(&self, name: &str) -> Result<Option<Descriptor>, Error> {
        let index = self.read_index()?;
        Ok(index
            .manifests()
            .iter()
            .find(|d| ref_name(d) == Some(name))
            .cloned())
    }

    /// Every tag with its manifest descriptor, sorted by tag.
    ///
    /// # Errors
    /// Fails when `index.json` cannot be read.
    pub fn list_tags(&self) -> Result<Vec<(String, Descriptor)>, Error> {
        let index = self.read_index()?;
        let mut tags: Vec<(String, Descriptor)> = index
            .manifests()
            .iter()
            .filter_map(|d| ref_name(d).map(|n| (n.to_string(), d.clone())))
            .collect();
        tags.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(tags)
    }

    /// Removes tag `name`; returns whether it existed. Blobs stay.
    ///
    /// # Errors
    /// Fails when `index.json` cannot be rewritten.
    pub fn remove_tag(&self, name: &str) -> Result<bool, Error> {
        let mut removed = false;
        self.update_index(|manifests| {
            let before = manifests.len();
            manifests.retain(|d| ref_name(d) != Some(name));
            removed = manifests.len() != before;
        })?;
        Ok(removed)
    }

    /// Copies the image `manifest` points at (manifest, config, layers) into the OCI layout
    /// at `dir`, creating it when missing, and tags it there as `tag` when given. Blobs are
    /// hard-linked when both layouts share a file system, copied otherwise.
    ///
    /// # Errors
    /// [`Error::MissingBlob`] when a blob of the image is not in this store; I/O errors.
    pub fn export_image(
        &self,
        manifest: &Descriptor,
        dir: &Path,
        tag: Option<&str>,
    ) -> Result<(), Error> {
        let lock_existed = dir.join(INDEX_LOCK).exists();
        let target = ContentStore::open(dir, dir)?;
        let manifest_digest = manifest.digest().to_string();
        let bytes = self.read_blob(&manifest_digest)?;
        let mut digests = vec![manifest_digest.clone()];
        digests.extend(referenced_blobs(&bytes, &self.blob_path(&manifest_digest))?);
        for digest in &digests {
            self.copy_blob_to(&target, digest)?;
        }
        match tag {
            Some(tag) => target.tag(tag, manifest)?,
            None => target.update_index(|manifests| {
                if !manifests.iter().any(|d| d.digest() == manifest.digest()) {
                    manifests.push(manifest.clone());
                }
            })?,
        }
        // The lock file is envc's own; leave the user's layout as the OCI spec describes it.
        if !lock_existed {
            let _ = fs::remove_file(dir.join(INDEX_LOCK));
        }
        Ok(())
    }

    /// The manifest descriptor of the image tagged `tag` in this layout, or, without a tag,
    /// of its only image.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when the tag is missing or, without a tag, the layout contains no image
    /// or more than one.
    pub fn find_image(&self, tag: Option<&str>) -> Result<Descriptor, Error> {
        let index = self.read_index()?;
        let path = self.root.join(INDEX_FILE);
        match tag {
            Some(tag) => {
                let found = index.manifests().iter().find(|d| ref_name(d) == Some(tag));
                found.cloned().ok_or_else(|| Error::Corrupt {
                    path,
                    reason: format!("no image tagged `{tag}`"),
                })
            }
            None => match index.manifests().as_slice() {
                [only] => Ok(only.clone()),
                [] => Err(Error::Corrupt {
                    path,
                    reason: "the layout contains no image".into(),
                }),
                _ => Err(Error::Corrupt {
                    path,
                    reason: "the layout contains several images; name one with `:TAG`".into(),
                }),
            },
        }
    }

    /// `sha256:<hex>` of `bytes`.
    pub fn digest_of(bytes: &[u8]) -> String {
        digest_bytes(bytes)
    }

    /// `sha256:<hex>` of the file at `path`.
    ///
    /// # Errors
    /// Fails when the file cannot be read.
    pub fn digest_of_file(path: &Path) -> Result<String, Error> {
        digest_file(path)
    }

    /// A descriptor for a manifest (or index) blob of `media_type`, as [`Self::tag`] takes it.
    ///
    /// # Errors
    /// [`Error::Corrupt`] when `digest` is not a valid digest.
    pub fn descriptor(media_type: &str, digest: &str, size: u64) -> Result<Descriptor, Error> {
        manifest_descriptor(media_type, digest, size)
    }

    fn copy_blob_to(&self, target: &ContentStore, digest: &str) -> Result<(), Error> {
        if target.has_blob(digest) {
            return Ok(());
        }
        let src = self.blob_path(digest);
        if !src.is_file() {
            return Err(Error::MissingBlob(digest.to_string()));
        }
        let dest = target.blob_path(digest);
        if fs::hard_link(&src, &dest).is_ok() {
            return Ok(());
        }
        let mut tmp = target.temp_file()?;
        let mut file = fs::File::open(&src).map_err(Error::io("open", &src))?;
        std::io::copy(&mut file, &mut tmp).map_err(Error::io("copy", &src))?;
        target.persist_blob(tmp, digest)?;
        Ok(())
    }

    fn read_index(&self) -> Result<ImageIndex, Error> {
        let path = self.root.join(INDEX_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(empty_index()),
            Err(e) => return Err(Error::io("read", &path)(e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
            path,
            reason: e.to_string(),
        })
    }

    fn write_index(&self, index: &ImageIndex) -> Result<(), Error> {
        let bytes = serde_json::to_vec(index).expect("an image index serializes");
        self.write_atomic(&self.root.join(INDEX_FILE), &bytes)
    }

    /// Reads, changes and rewrites `index.json` while holding the layout's lock file.
    fn update_index(&self, change: impl FnOnce(&mut Vec<Descriptor>)) -> Result<(), Error> {
        let lock_path = self.root.join(INDEX_LOCK);
        let lock_file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(Error::io("open", &lock_path))?;
        let _lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, errno)| Error::io("lock", &lock_path)(errno.into()))?;

        let mut index = self.read_index()?;
        let mut manifests = index.manifests().clone();
        change(&mut manifests);
        index.set_manifests(manifests);
        self.write_index(&index)
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), Error> {
        let mut tmp = self.temp_file()?;
        tmp.write_all(bytes)
            .map_err(Error::io("write", tmp.path()))?;
        tmp.persist(path)
            .map_err(|e| Error::io("write", path)(e.error))?;
        Ok(())
    }
}

/// A descriptor for a manifest blob of `media_type`.
fn manifest_descriptor(media_type: &str, digest: &str, size: u64) -> Result<Descriptor, Error> {
    let parsed = Digest::from_str(digest).map_err(|e| Error::Corrupt {
        path: PathBuf::from(digest),
        reason: format!("not a digest: {e}"),
    })?;
    DescriptorBuilder::default()
        .media_type(MediaType::from(media_type))
        .digest(parsed)
        .size(size)
        .build()
        .map_err(|e| Error::Corrupt {
            path: PathBuf::from(digest),
            reason: e.to_string(),
        })
}

/// `sha256:<hex>` of `bytes`.
fn digest_bytes(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn digest_file(path: &Path) -> Result<String, Error> {
    let mut file = fs::File::open(path).map_err(Error::io("open", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(Error::io("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

fn ref_name(descriptor: &Descriptor) -> Option<&str> {
    descriptor
        .annotations()
        .as_ref()?
        .get(REF_NAME_ANNOTATION)
        .map(String::as_str)
}

fn empty_index() -> ImageIndex {
    let mut index: ImageIndex = serde_json::from_value(serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": []
    }))
    .expect("the empty index parses");
    index.set_annotations(None::<HashMap<String, String>>);
    index
}

/// The config and layer digests a manifest names (an index's manifests are not followed).
fn referenced_blobs(manifest: &[u8], path: &Path) -> Result<Vec<String>, Error> {
    let value: serde_json::Value =
        serde_json::from_slice(manifest).map_err(|e| Error::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let mut digests = Vec::new();
    if let Some(d) = value.pointer("/config/digest").and_then(|d| d.as_str()) {
        digests.push(d.to_string());
    }
    for layer in value
        .get("layers")
        .and_then(|l| l.as_array())
        .into_iter()
        .flatten()
    {
        if let Some(d) = layer.get("digest").and_then(|d| d.as_str()) {
            digests.push(d.to_string());
        }
    }
    Ok(digests)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ContentStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&dir.path().join("oci"), &dir.path().join("tmp")).unwrap();
        (dir, store)
    }

    /// Writes a tiny image (config + one layer + manifest) and returns its descriptor.
    fn tiny_image(store: &ContentStore) -> Descriptor {
        let config = store.write_blob(br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#).unwrap();
        let layer = store.write_blob(b"layer bytes").unwrap();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config,
                       "size": store.blob_size(&config).unwrap()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": layer, "size": 11}]
        });
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let digest = store.write_blob(&bytes).unwrap();
        manifest_descriptor(
            "application/vnd.oci.image.manifest.v1+json",
            &digest,
            bytes.len() as u64,
        )
        .unwrap()
    }

    #[test]
    fn open_writes_layout_files() {
        let (_dir, store) = store();
        let layout = fs::read(store.root().join("oci-layout")).unwrap();
        assert_eq!(layout, LAYOUT_CONTENT);
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(store.root().join("index.json")).unwrap()).unwrap();
        assert_eq!(index["schemaVersion"], 2);
        assert_eq!(index["manifests"], serde_json::json!([]));
    }

    #[test]
    fn blobs_round_trip_by_digest() {
        let (_dir, store) = store();
        let digest = store.write_blob(b"{}").unwrap();
        assert_eq!(
            digest,
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert!(store.has_blob(&digest));
        assert_eq!(store.read_blob(&digest).unwrap(), b"{}");
        assert!(matches!(
            store.read_blob("sha256:00"),
            Err(Error::MissingBlob(_))
        ));
    }

    #[test]
    fn ingest_rejects_a_wrong_digest_and_leaves_no_blob() {
        let (_dir, store) = store();
        let mut tmp = store.temp_file().unwrap();
        tmp.write_all(b"abc").unwrap();
        let wrong = digest_bytes(b"abd");
        let err = store.ingest_file(tmp, &wrong).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(!store.has_blob(&wrong));

        let mut tmp = store.temp_file().unwrap();
        tmp.write_all(b"abc").unwrap();
        let right = digest_bytes(b"abc");
        store.ingest_file(tmp, &right).unwrap();
        assert_eq!(store.read_blob(&right).unwrap(), b"abc");
    }

    #[test]
    fn tags_are_set_replaced_listed_and_removed() {
        let (_dir, store) = store();
        let image = tiny_image(&store);
        store.tag("app:1", &image).unwrap();
        store.tag("app:2", &image).unwrap();
        store.tag("app:1", &image).unwrap();
        let tags: Vec<String> = store
            .list_tags()
            .unwrap()
            .into_iter()
            .map(|t| t.0)
            .collect();
        assert_eq!(tags, ["app:1", "app:2"]);
        let resolved = store.resolve_tag("app:2").unwrap().unwrap();
        assert_eq!(resolved.digest(), image.digest());
        assert!(store.remove_tag("app:2").unwrap());
        assert!(!store.remove_tag("app:2").unwrap());
        assert!(store.resolve_tag("app:2").unwrap().is_none());
    }

    #[test]
    fn tagging_a_missing_manifest_fails() {
        let (_dir, store) = store();
        let missing = manifest_descriptor(
            "application/vnd.oci.image.manifest.v1+json",
            &digest_bytes(b"nothing"),
            7,
        )
        .unwrap();
        assert!(matches!(
            store.tag("x", &missing),
            Err(Error::MissingBlob(_))
        ));
    }

    #[test]
    fn export_copies_every_blob_and_tags_it() {
        let (dir, store) = store();
        let image = tiny_image(&store);
        let out = dir.path().join("out");
        store.export_image(&image, &out, Some("v1")).unwrap();
        let exported = ContentStore::open_existing(&out).unwrap();
        let found = exported.find_image(Some("v1")).unwrap();
        assert_eq!(found.digest(), image.digest());
        assert_eq!(exported.find_image(None).unwrap().digest(), image.digest());
        let manifest = exported.read_blob(image.digest().as_ref()).unwrap();
        for digest in referenced_blobs(&manifest, &out).unwrap() {
            assert!(exported.has_blob(&digest), "{digest} missing");
        }
        assert!(exported.find_image(Some("nope")).is_err());
    }

    #[test]
    fn exported_layout_is_accepted_by_skopeo() {
        let skopeo = std::process::Command::new("skopeo")
            .arg("--version")
            .output();
        if skopeo.is_err() {
            eprintln!("skipping: skopeo is not installed");
            return;
        }
        let (dir, store) = store();
        let image = tiny_image(&store);
        let out = dir.path().join("out");
        store.export_image(&image, &out, Some("v1")).unwrap();
        let output = std::process::Command::new("skopeo")
            .arg("inspect")
            .arg("--raw")
            .arg(format!("oci:{}:v1", out.display()))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let raw = store.read_blob(image.digest().as_ref()).unwrap();
        assert_eq!(output.stdout, raw);
    }
}
