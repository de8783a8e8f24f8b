//! A layer cache in a registry repository, shared by machines that build the same steps.
//!
//! Each entry is a small OCI manifest tagged `step-<hex of the cache key>` in the cache
//! repository. Its config (media type [`CONFIG_MEDIA_TYPE`]) records the cache key and the
//! layer's digest, diff_id, size and media type; its one layer is the layer blob.
//!
//! An entry is used only when its config names the exact cache key requested, its manifest
//! names the same layer, and the downloaded blob has the recorded digest and diff_id. Any other
//! entry is skipped, never used.

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{StepRecord, Store};
use crate::image::Layer;
use crate::registry::{ImageRef, RegistryClient, MEDIA_TYPE_OCI_MANIFEST};

/// The media type of an entry's config blob.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.envc.cache.step.v1+json";

/// The artifact type of an entry's manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.envc.cache.v1";

/// Layer media types an entry may name: the ones the layer writer produces.
const LAYER_MEDIA_TYPES: [&str; 3] = [
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
];

/// Errors reading, using or writing a cache entry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cache repository `{reference}` is not a repository: {reason}")]
    InvalidRepository { reference: String, reason: String },
    #[error("cache entry `{reference}` is unreadable: {reason}")]
    Unreadable { reference: String, reason: String },
    #[error("cache entry `{reference}` is for cache key `{found}`, not `{expected}`")]
    KeyMismatch {
        reference: String,
        expected: String,
        found: String,
    },
    #[error("cache entry `{reference}`: {source}")]
    Registry {
        reference: String,
        #[source]
        source: crate::registry::Error,
    },
    #[error(transparent)]
    Store(#[from] super::Error),
}

impl Error {
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::InvalidRepository { .. } => Some(
                "name a repository with its registry and no tag, such as \
                 `127.0.0.1:5000/team/envc-cache`"
                    .to_string(),
            ),
            Error::Registry { source, .. } => source.hint(),
            _ => None,
        }
    }

    /// Returns whether the registry could not be reached at all, so every other lookup in the
    /// same repository would fail the same way.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Error::Registry {
                source: crate::registry::Error::Unreachable { .. },
                ..
            }
        )
    }

    fn registry(reference: &ImageRef) -> impl FnOnce(crate::registry::Error) -> Error {
        let reference = reference.to_string();
        move |source| Error::Registry { reference, source }
    }
}

/// An entry's config: what the layer is and which cache key produced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryConfig {
    pub cache_key: String,
    pub digest: String,
    pub diff_id: String,
    pub size: u64,
    pub media_type: String,
}

impl EntryConfig {
    pub fn new(cache_key: &str, layer: &Layer) -> EntryConfig {
        EntryConfig {
            cache_key: cache_key.to_string(),
            digest: layer.digest.clone(),
            diff_id: layer.diff_id.clone(),
            size: layer.size,
            media_type: layer.media_type.clone(),
        }
    }

    fn layer(&self) -> Layer {
        Layer {
            digest: self.digest.clone(),
            diff_id: self.diff_id.clone(),
            size: self.size,
            media_type: self.media_type.clone(),
        }
    }
}

/// A cache repository, such as `127.0.0.1:5000/team/envc-cache`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRepository {
    repository: ImageRef,
}

impl CacheRepository {
    /// Parses `text` as a repository that names its registry, with no tag or digest.
    ///
    /// # Errors
    /// [`Error::InvalidRepository`] naming what is wrong.
    pub fn parse(text: &str) -> Result<CacheRepository, Error> {
        let invalid = |reason: &str| Error::InvalidRepository {
            reference: text.to_string(),
            reason: reason.to_string(),
        };
        if !crate::registry::names_registry(text) {
            return Err(invalid("it names no registry"));
        }
        let last = text.rsplit('/').next().unwrap_or(text);
        if last.contains(':') || text.contains('@') {
            return Err(invalid("it has a tag or digest"));
        }
        let repository = ImageRef::parse(text).map_err(|e| invalid(&e.to_string()))?;
        Ok(CacheRepository {
            repository: ImageRef {
                tag: None,
                digest: None,
                ..repository
            },
        })
    }

    /// Returns the reference of the entry for `cache_key`.
    pub fn entry(&self, cache_key: &str) -> ImageRef {
        self.repository.with_tag(&entry_tag(cache_key))
    }
}

impl std::fmt::Display for CacheRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.repository)
    }
}

/// Returns the tag of the entry for `cache_key`: `step-` and the first 64 hex digits of the key.
pub fn entry_tag(cache_key: &str) -> String {
    let hex = cache_key.strip_prefix("sha256:").unwrap_or(cache_key);
    let hex: String = hex
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(64)
        .collect();
    format!("step-{}", hex.to_ascii_lowercase())
}

/// Serializes an entry's config and manifest, in that order.
pub fn entry_documents(config: &EntryConfig) -> (Vec<u8>, Vec<u8>) {
    let config_bytes = serde_json::to_vec(config).expect("entry configs serialize");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": sha256(&config_bytes),
            "size": config_bytes.len(),
        },
        "layers": [{
            "mediaType": config.media_type,
            "digest": config.digest,
            "size": config.size,
        }],
    });
    let manifest_bytes = serde_json::to_vec(&manifest).expect("manifests serialize");
    (config_bytes, manifest_bytes)
}

/// Looks up the entry for `cache_key` in `repository`. On a hit, downloads the layer blob
/// into the store, checks its digest and diff_id, writes the step record and returns the
/// layer. `Ok(None)` means the repository has no entry for the key.
///
/// # Errors
/// Every reason the entry cannot be used: unreachable, unreadable, for another key, or a
/// blob that does not match. The caller skips the entry with a warning.
pub async fn fetch_entry(
    registry: &RegistryClient,
    store: &Store,
    repository: &CacheRepository,
    cache_key: &str,
) -> Result<Option<Layer>, Error> {
    let entry = repository.entry(cache_key);
    let unreadable = |reason: String| Error::Unreadable {
        reference: entry.to_string(),
        reason,
    };
    let manifest = match registry.fetch_manifest(&entry).await {
        Ok(manifest) => manifest,
        Err(crate::registry::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(Error::registry(&entry)(e)),
    };
    let document: serde_json::Value = serde_json::from_slice(&manifest.bytes)
        .map_err(|e| unreadable(format!("its manifest is not JSON: {e}")))?;
    let config_digest = document
        .pointer("/config/digest")
        .and_then(|d| d.as_str())
        .ok_or_else(|| unreadable("its manifest has no config digest".to_string()))?;
    let config_bytes = registry
        .fetch_blob(&entry, config_digest)
        .await
        .map_err(Error::registry(&entry))?;
    if sha256(&config_bytes) != config_digest {
        return Err(unreadable(format!(
            "its config does not have digest `{config_digest}`"
        )));
    }
    let config: EntryConfig = serde_json::from_slice(&config_bytes)
        .map_err(|e| unreadable(format!("its config is not a cache entry config: {e}")))?;
    if config.cache_key != cache_key {
        return Err(Error::KeyMismatch {
            reference: entry.to_string(),
            expected: cache_key.to_string(),
            found: config.cache_key,
        });
    }
    check_layer_descriptor(&document, &config).map_err(unreadable)?;

    let layer = config.layer();
    let content = store.content();
    if !content.has_blob_of_size(&layer.digest, layer.size) {
        let staged = content.temp_file()?;
        registry
            .fetch_blob_to_file(&entry, &layer.digest, staged.path())
            .await
            .map_err(Error::registry(&entry))?;
        let media_type = layer.media_type.clone();
        let (staged, diff_id) = tokio::task::spawn_blocking(move || {
            let diff_id = diff_id_of(staged.path(), &media_type);
            (staged, diff_id)
        })
        .await
        .expect("hashing a layer does not panic");
        let diff_id = diff_id.map_err(|e| unreadable(format!("its layer does not decode: {e}")))?;
        if diff_id != layer.diff_id {
            return Err(unreadable(format!(
                "its layer's diff_id is `{diff_id}`, the config says `{}`",
                layer.diff_id
            )));
        }
        // Checks the blob's digest as it moves into place.
        content.ingest_file(staged, &layer.digest)?;
        if !content.has_blob_of_size(&layer.digest, layer.size) {
            return Err(unreadable(format!(
                "its layer is not {} bytes long",
                layer.size
            )));
        }
    }
    store.put_step_record(
        cache_key,
        &StepRecord {
            layer: layer.clone(),
        },
    )?;
    Ok(Some(layer))
}

/// Writes the entry for `cache_key` with `layer` (whose blob is in the store) to
/// `repository`, unless the repository already contains this exact entry. Returns whether
/// anything was written.
///
/// # Errors
/// [`Error::Registry`] when an upload fails; [`Error::Store`] when the blob cannot be read.
pub async fn push_entry(
    registry: &RegistryClient,
    store: &Store,
    repository: &CacheRepository,
    cache_key: &str,
    layer: &Layer,
) -> Result<bool, Error> {
    let entry = repository.entry(cache_key);
    let config = EntryConfig::new(cache_key, layer);
    let (config_bytes, manifest_bytes) = entry_documents(&config);
    if let Ok(found) = registry.fetch_manifest(&entry).await {
        if found.digest == sha256(&manifest_bytes) {
            return Ok(false);
        }
    }
    let content = store.content();
    let blob = content.blob_path(&layer.digest);
    if !content.has_blob_of_size(&layer.digest, layer.size) {
        return Err(super::Error::MissingBlob(layer.digest.clone()).into());
    }
    registry
        .push_blob_file(&entry, &layer.digest, &blob)
        .await
        .map_err(Error::registry(&entry))?;
    let staged = content.temp_file()?;
    std::fs::write(staged.path(), &config_bytes)
        .map_err(super::Error::io("write", staged.path()))?;
    registry
        .push_blob_file(&entry, &sha256(&config_bytes), staged.path())
        .await
        .map_err(Error::registry(&entry))?;
    registry
        .push_manifest(&entry, &manifest_bytes, MEDIA_TYPE_OCI_MANIFEST)
        .await
        .map_err(Error::registry(&entry))?;
    Ok(true)
}

/// Checks that the manifest's one layer is the layer the config describes, of a known type.
fn check_layer_descriptor(
    document: &serde_json::Value,
    config: &EntryConfig,
) -> Result<(), String> {
    let layers = document
        .get("layers")
        .and_then(|l| l.as_array())
        .ok_or("its manifest has no layers")?;
    let [layer] = layers.as_slice() else {
        return Err(format!("its manifest has {} layers, not one", layers.len()));
    };
    let digest = layer.get("digest").and_then(|d| d.as_str());
    let size = layer.get("size").and_then(|s| s.as_u64());
    if digest != Some(config.digest.as_str()) || size != Some(config.size) {
        return Err("its manifest's layer is not the one its config describes".to_string());
    }
    if !LAYER_MEDIA_TYPES.contains(&config.media_type.as_str()) {
        return Err(format!(
            "its layer has media type `{}`, not a layer type envc writes",
            config.media_type
        ));
    }
    Ok(())
}

/// Computes the diff_id of a layer blob: the sha256 of the tar inside, decompressed as
/// `media_type` names.
fn diff_id_of(blob: &Path, media_type: &str) -> std::io::Result<String> {
    let file = std::io::BufReader::new(std::fs::File::open(blob)?);
    let mut reader: Box<dyn Read> = if media_type.ends_with("+gzip") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else if media_type.ends_with("+zstd") {
        Box::new(zstd::stream::read::Decoder::new(file)?)
    } else {
        Box::new(file)
    };
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer() -> Layer {
        Layer {
            digest: format!("sha256:{}", "a".repeat(64)),
            diff_id: format!("sha256:{}", "b".repeat(64)),
            size: 42,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".to_string(),
        }
    }

    #[test]
    fn tag_is_step_and_the_key_hex() {
        let key = format!("sha256:{}", "0123456789abcdef".repeat(4));
        assert_eq!(
            entry_tag(&key),
            format!("step-{}", "0123456789abcdef".repeat(4))
        );
    }

    #[test]
    fn repository_needs_a_registry_and_no_tag() {
        let repo = CacheRepository::parse("127.0.0.1:5000/team/envc-cache").unwrap();
        assert_eq!(
            repo.entry("sha256:ab").to_string(),
            "127.0.0.1:5000/team/envc-cache:step-ab"
        );
        for text in [
            "team/envc-cache",
            "127.0.0.1:5000/team/envc-cache:v1",
            "127.0.0.1:5000/cache@sha256:ab",
        ] {
            let error = CacheRepository::parse(text).unwrap_err();
            assert!(matches!(error, Error::InvalidRepository { .. }), "{text}");
            assert!(error.to_string().contains(text));
        }
    }

    #[test]
    fn manifest_names_the_config_and_the_layer() {
        let config = EntryConfig::new("sha256:key", &layer());
        let (config_bytes, manifest_bytes) = entry_documents(&config);
        let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
        assert_eq!(manifest["config"]["digest"], sha256(&config_bytes));
        assert_eq!(manifest["config"]["mediaType"], CONFIG_MEDIA_TYPE);
        assert_eq!(manifest["layers"][0]["digest"], layer().digest);
        assert_eq!(check_layer_descriptor(&manifest, &config), Ok(()));
        let parsed: EntryConfig = serde_json::from_slice(&config_bytes).unwrap();
        assert_eq!(parsed, config);
    }

    #[test]
    fn a_manifest_for_another_layer_is_refused() {
        let config = EntryConfig::new("sha256:key", &layer());
        let (_, manifest_bytes) = entry_documents(&config);
        let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
        let other = EntryConfig {
            size: 43,
            ..config.clone()
        };
        assert!(check_layer_descriptor(&manifest, &other).is_err());
        let odd_type = EntryConfig {
            media_type: "text/plain".to_string(),
            ..config
        };
        let (_, odd_manifest) = entry_documents(&odd_type);
        let odd_manifest: serde_json::Value = serde_json::from_slice(&odd_manifest).unwrap();
        assert!(check_layer_descriptor(&odd_manifest, &odd_type).is_err());
    }

    #[test]
    fn diff_id_is_the_hash_of_the_decompressed_tar() {
        let dir = tempfile::tempdir().unwrap();
        let tar = b"not really a tar, but bytes".to_vec();
        let path = dir.path().join("blob");
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut encoder, &tar).unwrap();
        std::fs::write(&path, encoder.finish().unwrap()).unwrap();
        let gzip = "application/vnd.oci.image.layer.v1.tar+gzip";
        assert_eq!(diff_id_of(&path, gzip).unwrap(), sha256(&tar));
        std::fs::write(&path, zstd::encode_all(&tar[..], 3).unwrap()).unwrap();
        let zstd = "application/vnd.oci.image.layer.v1.tar+zstd";
        assert_eq!(diff_id_of(&path, zstd).unwrap(), sha256(&tar));
        std::fs::write(&path, b"garbage").unwrap();
        assert!(diff_id_of(&path, gzip).is_err());
    }
}
