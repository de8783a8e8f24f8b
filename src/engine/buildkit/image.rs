//! The image around the layers BuildKit builds: the config handed to its exporters, and the
//! OCI layout tar its `oci` exporter sends back, imported into envc's store.
//!
//! The config is made by the same code that assembles the local engine's images, so `Env`,
//! `User`, the labels with `devcontainer.metadata` and the history (the base's entries, then
//! one per Feature) are the local engine's. BuildKit fills in `rootfs` from the layers it
//! made and clamps the times to `source-date-epoch`.
//!
//! Not handled here: talking to BuildKit, and images with more than one platform.

use std::io::{Read, Write};
use std::path::Path;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use super::Error;
use crate::image::assemble::{self, ImageInput, NewLayer};
use crate::image::Layer;
use crate::plan::BuildPlan;
use crate::store::ContentStore;

const INDEX_TYPES: [&str; 2] = [
    assemble::MEDIA_TYPE_OCI_INDEX,
    assemble::MEDIA_TYPE_DOCKER_LIST,
];

/// Returns the final image config of `plan` as JSON, for the exporters'
/// `containerimage.config`: the base config with the plan's `Env`, `User` and labels, and one
/// history entry per Feature. `rootfs` lists only the base's layers, because BuildKit writes
/// the full list.
///
/// # Errors
///
/// [`Error::Image`] when the base manifest or config cannot be read.
pub fn image_config(plan: &BuildPlan) -> Result<Vec<u8>, Error> {
    // The layer digests are not known before the build; the config keeps none of these.
    let placeholder = format!("sha256:{}", "0".repeat(64));
    let layers: Vec<NewLayer> = plan
        .features
        .iter()
        .map(|step| NewLayer {
            layer: Layer {
                digest: placeholder.clone(),
                diff_id: placeholder.clone(),
                size: 0,
                media_type: String::new(),
            },
            created_by: crate::build::history_text(step),
        })
        .collect();
    let labels: Vec<(String, String)> = plan
        .image
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let assembled = assemble::build(&ImageInput {
        base_manifest: &plan.base.manifest,
        base_config: &plan.base.config,
        layers: &layers,
        env: &plan.image.env,
        user: plan.image.user.as_deref(),
        labels: &labels,
        source_date_epoch: plan.settings.source_date_epoch,
    })?;

    let mut config: Value = serde_json::from_slice(&assembled.config)
        .map_err(|e| crate::image::Error::InvalidDocument(format!("image config: {e}")))?;
    if let Some(diff_ids) = config
        .pointer_mut("/rootfs/diff_ids")
        .and_then(Value::as_array_mut)
    {
        let base_layers = diff_ids.len() - layers.len();
        diff_ids.truncate(base_layers);
    }
    Ok(serde_json::to_vec(&config).expect("JSON values serialize"))
}

/// An image imported from an OCI layout tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub manifest_digest: String,
    /// Every layer of the image, bottom first.
    pub layers: Vec<Layer>,
}

/// Imports the single image of the OCI layout tar at `tar_path` into `store`: every blob,
/// checked against its name, then the manifest the layout's index points at.
///
/// # Errors
///
/// [`Error::Export`] when the tar is not an OCI layout of one image or a blob does not match
/// its digest, [`Error::Interrupted`] when `cancelled` turns true between entries, store
/// errors when a blob cannot be written.
pub fn import_layout_tar(
    tar_path: &Path,
    store: &ContentStore,
    cancelled: &dyn Fn() -> bool,
) -> Result<Imported, Error> {
    let io_error = |action: &str| {
        let action = format!("{action} the exported image `{}`", tar_path.display());
        move |source| Error::Io { action, source }
    };
    let file = std::fs::File::open(tar_path).map_err(io_error("open"))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let mut index = None;
    for entry in archive.entries().map_err(io_error("read"))? {
        if cancelled() {
            return Err(Error::Interrupted);
        }
        let mut entry = entry.map_err(io_error("read"))?;
        let path = entry.path().map_err(io_error("read"))?.into_owned();
        let path = path.strip_prefix("./").unwrap_or(&path).to_path_buf();
        if path == Path::new("index.json") {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(io_error("read"))?;
            index = Some(bytes);
        } else if let Ok(hex) = path.strip_prefix("blobs/sha256") {
            if entry.header().entry_type().is_file() {
                let digest = format!("sha256:{}", hex.to_string_lossy());
                let size = entry.header().size().ok();
                import_blob(&mut entry, &digest, size, store)?;
            }
        }
    }
    let index = index.ok_or_else(|| export_error("has no `index.json`"))?;
    let manifest_digest = image_manifest(&index, store)?;
    let layers = image_layers(&manifest_digest, store)?;
    Ok(Imported {
        manifest_digest,
        layers,
    })
}

/// Copies one blob into the store, hashing it on the way, unless the store has it already.
fn import_blob(
    entry: &mut impl Read,
    digest: &str,
    size: Option<u64>,
    store: &ContentStore,
) -> Result<(), Error> {
    if size.is_some_and(|size| store.has_blob_of_size(digest, size)) {
        return Ok(());
    }
    let mut staged = store.temp_file()?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = entry.read(&mut buffer).map_err(|source| Error::Io {
            action: format!("read blob `{digest}` of the exported image"),
            source,
        })?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        staged
            .write_all(&buffer[..read])
            .map_err(|source| Error::Io {
                action: format!("write blob `{digest}`"),
                source,
            })?;
    }
    let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
    if actual != digest {
        return Err(export_error(&format!(
            "has blob `{digest}` whose content is `{actual}`"
        )));
    }
    store.persist_blob(staged, digest)?;
    Ok(())
}

/// Returns the digest of the image manifest `index` names: its only manifest, or in a nested
/// index the one image that is not an attestation (`unknown/unknown`).
fn image_manifest(index: &[u8], store: &ContentStore) -> Result<String, Error> {
    let mut document: Value = serde_json::from_slice(index)
        .map_err(|e| export_error(&format!("has an unreadable index: {e}")))?;
    for _ in 0..2 {
        let manifests: Vec<&Value> = document
            .get("manifests")
            .and_then(Value::as_array)
            .map(|m| m.iter().filter(|d| !is_attestation(d)).collect())
            .unwrap_or_default();
        let [descriptor] = manifests.as_slice() else {
            return Err(export_error(&format!(
                "lists {} images where one was expected",
                manifests.len()
            )));
        };
        let digest = descriptor
            .get("digest")
            .and_then(Value::as_str)
            .ok_or_else(|| export_error("has an index entry without a digest"))?
            .to_string();
        let media_type = descriptor.get("mediaType").and_then(Value::as_str);
        if !media_type.is_some_and(|t| INDEX_TYPES.contains(&t)) {
            return Ok(digest);
        }
        let nested = store.read_blob(&digest)?;
        document = serde_json::from_slice(&nested)
            .map_err(|e| export_error(&format!("has an unreadable index `{digest}`: {e}")))?;
    }
    Err(export_error("nests indexes more than two deep"))
}

fn is_attestation(descriptor: &Value) -> bool {
    let platform = descriptor.get("platform");
    let os = platform.and_then(|p| p.get("os")).and_then(Value::as_str);
    let reference_type = descriptor
        .pointer("/annotations/vnd.docker.reference.type")
        .and_then(Value::as_str);
    os == Some("unknown") || reference_type == Some("attestation-manifest")
}

/// Returns the layers of manifest `digest`, paired with the config's `diff_ids`, after
/// checking that every blob is in the store with its size.
fn image_layers(digest: &str, store: &ContentStore) -> Result<Vec<Layer>, Error> {
    let manifest: Value = serde_json::from_slice(&store.read_blob(digest)?)
        .map_err(|e| export_error(&format!("has an unreadable manifest: {e}")))?;
    let descriptor = |value: &Value| -> Result<(String, u64, String), Error> {
        let digest = value.get("digest").and_then(Value::as_str);
        let size = value.get("size").and_then(Value::as_u64);
        let media_type = value.get("mediaType").and_then(Value::as_str);
        match (digest, size) {
            (Some(digest), Some(size)) if store.has_blob_of_size(digest, size) => Ok((
                digest.to_string(),
                size,
                media_type.unwrap_or_default().to_string(),
            )),
            (Some(digest), _) => Err(export_error(&format!("lacks blob `{digest}`"))),
            _ => Err(export_error("has a descriptor without digest or size")),
        }
    };
    let config = manifest
        .get("config")
        .ok_or_else(|| export_error("has a manifest without a config"))?;
    let (config_digest, _, _) = descriptor(config)?;
    let config: Value = serde_json::from_slice(&store.read_blob(&config_digest)?)
        .map_err(|e| export_error(&format!("has an unreadable config: {e}")))?;
    let diff_ids: Vec<&str> = config
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .map(|ids| ids.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let layers = manifest
        .get("layers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if layers.len() != diff_ids.len() {
        return Err(export_error(&format!(
            "has {} layers but {} diff_ids",
            layers.len(),
            diff_ids.len()
        )));
    }
    layers
        .iter()
        .zip(diff_ids)
        .map(|(layer, diff_id)| {
            let (digest, size, media_type) = descriptor(layer)?;
            Ok(Layer {
                digest,
                diff_id: diff_id.to_string(),
                size,
                media_type,
            })
        })
        .collect()
}

fn export_error(what: &str) -> Error {
    Error::Export {
        what: what.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE_MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","size":10},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:3333333333333333333333333333333333333333333333333333333333333333","size":20}]}"#;
    const BASE_CONFIG: &str = r#"{"architecture":"amd64","os":"linux","created":"2024-01-01T00:00:00Z","config":{"Env":["PATH=/usr/bin"],"Labels":{"a":"1"}},"rootfs":{"type":"layers","diff_ids":["sha256:1111111111111111111111111111111111111111111111111111111111111111"]},"history":[{"created":"2024-01-01T00:00:00Z","created_by":"debootstrap"}]}"#;

    fn plan() -> BuildPlan {
        let step = |id: &str| crate::plan::Step {
            id: id.into(),
            reference: format!("./features/{id}"),
            version: Some("1.0.0".into()),
            options: Default::default(),
            content_digest: "sha256:00".into(),
            resolved: None,
            cache_key: "sha256:00".into(),
            feature_dir: "/nowhere".into(),
            command: vec!["/bin/sh".into(), "./install.sh".into()],
            env: Vec::new(),
            users: Default::default(),
            location: None,
            required_by: None,
        };
        BuildPlan {
            config_file: "/p/.devcontainer/devcontainer.json".into(),
            base: crate::plan::BasePlan {
                reference: "127.0.0.1:5000/debian:bookworm".into(),
                digest: "sha256:00".into(),
                source: crate::plan::BaseSource::Layout { dir: "/x".into() },
                manifest: BASE_MANIFEST.as_bytes().to_vec(),
                config: BASE_CONFIG.as_bytes().to_vec(),
            },
            features: vec![step("one"), step("two")],
            image: crate::plan::ImagePlan {
                env: vec!["PATH=/usr/bin".into(), "APP_ENV=bench".into()],
                user: Some("dev".into()),
                labels: [("devcontainer.metadata".to_string(), "[{}]".to_string())]
                    .into_iter()
                    .collect(),
            },
            settings: crate::plan::Settings {
                compression: Default::default(),
                source_date_epoch: 0,
                network: crate::engine::Network::None,
            },
            plan_digest: "sha256:00".into(),
        }
    }

    #[test]
    fn config_matches_local_engine() {
        let config: Value = serde_json::from_slice(&image_config(&plan()).unwrap()).unwrap();
        assert_eq!(config["config"]["Env"][1], "APP_ENV=bench");
        assert_eq!(config["config"]["User"], "dev");
        assert_eq!(config["config"]["Labels"]["devcontainer.metadata"], "[{}]");
        assert_eq!(config["config"]["Labels"]["a"], "1");
        assert_eq!(config["created"], "1970-01-01T00:00:00Z");
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);
        let history = config["history"].as_array().unwrap();
        assert_eq!(history.len(), 3);
        assert_eq!(history[0]["created_by"], "debootstrap");
        assert_eq!(
            history[2]["created_by"],
            "envc: install Feature two 1.0.0 from ./features/two"
        );
    }

    /// Writes an OCI layout tar of one image with one layer and returns its path and digests.
    fn layout_tar(dir: &Path, corrupt: bool) -> (std::path::PathBuf, String, String) {
        let digest = |bytes: &[u8]| format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
        let layer = b"layer bytes".to_vec();
        let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:4444444444444444444444444444444444444444444444444444444444444444"]}}"#.to_vec();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": assemble::MEDIA_TYPE_OCI_MANIFEST,
            "config": {"mediaType": assemble::MEDIA_TYPE_OCI_CONFIG, "digest": digest(&config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(&layer), "size": layer.len()}],
        }))
        .unwrap();
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": assemble::MEDIA_TYPE_OCI_MANIFEST, "digest": digest(&manifest), "size": manifest.len()}],
        }))
        .unwrap();

        let path = dir.join("image.tar");
        let mut builder = tar::Builder::new(std::fs::File::create(&path).unwrap());
        let mut add = |name: String, bytes: &[u8]| {
            let mut header = tar::Header::new_ustar();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            builder.append_data(&mut header, name, bytes).unwrap();
        };
        add("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#);
        add("index.json".into(), &index);
        for blob in [&layer, &config, &manifest] {
            let name = format!("blobs/sha256/{}", &digest(blob)[7..]);
            let bytes = if corrupt && blob == &layer {
                b"other bytes".to_vec()
            } else {
                blob.clone()
            };
            add(name, &bytes);
        }
        builder.finish().unwrap();
        (path, digest(&manifest), digest(&layer))
    }

    #[test]
    fn import_layout_tar_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&dir.path().join("oci"), &dir.path().join("tmp")).unwrap();
        let (tar, manifest, layer) = layout_tar(dir.path(), false);
        let imported = import_layout_tar(&tar, &store, &|| false).unwrap();
        assert_eq!(imported.manifest_digest, manifest);
        assert_eq!(imported.layers.len(), 1);
        assert_eq!(imported.layers[0].digest, layer);
        assert_eq!(imported.layers[0].size, 11);
        assert!(imported.layers[0].diff_id.starts_with("sha256:4444"));
        assert!(store.has_blob(&manifest));
    }

    #[test]
    fn import_rejects_mismatched_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&dir.path().join("oci"), &dir.path().join("tmp")).unwrap();
        let (tar, _, layer) = layout_tar(dir.path(), true);
        let err = import_layout_tar(&tar, &store, &|| false).unwrap_err();
        assert!(err.to_string().contains(&layer), "{err}");
        assert!(!store.has_blob(&layer));
    }

    #[test]
    fn import_stops_on_cancel() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&dir.path().join("oci"), &dir.path().join("tmp")).unwrap();
        let (tar, _, _) = layout_tar(dir.path(), false);
        let err = import_layout_tar(&tar, &store, &|| true).unwrap_err();
        assert!(matches!(err, Error::Interrupted), "{err}");
    }

    #[test]
    fn attestation_is_not_image() {
        let attestation = serde_json::json!({
            "platform": {"os": "unknown", "architecture": "unknown"},
            "annotations": {"vnd.docker.reference.type": "attestation-manifest"}
        });
        assert!(is_attestation(&attestation));
        assert!(!is_attestation(
            &serde_json::json!({"platform": {"os": "linux"}})
        ));
    }
}
