//! cosign's tag-based layout in a registry: the signatures of manifest `sha256:<hex>` are the
//! layers of the manifest tagged `sha256-<hex>.sig` in the same repository, its attestations
//! the layers of `sha256-<hex>.att`.
//!
//! Appending reads the current manifest, adds one layer and pushes the result under the same
//! tag. Two writers appending at the same moment can lose one layer, as with cosign.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::payload::{self, Envelope, IN_TOTO_PAYLOAD_TYPE};
use super::{Error, KeyPair};
use crate::registry::{ImageRef, RegistryClient, MEDIA_TYPE_OCI_MANIFEST};

/// The media type of a simple-signing payload layer.
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The media type of a DSSE envelope layer.
pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// The layer annotation that carries the base64 signature (empty on attestations, whose
/// signature is inside the envelope).
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The layer annotation cosign puts on attestations.
pub const PREDICATE_TYPE_ANNOTATION: &str = "predicateType";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";

/// The kind of object a tag names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suffix {
    /// `.sig`: signatures.
    Sig,
    /// `.att`: attestations.
    Att,
}

/// Returns the tag of the signature or attestation object of manifest `digest`.
pub fn signature_tag(digest: &str, suffix: Suffix) -> String {
    let tag = digest.replacen(':', "-", 1);
    match suffix {
        Suffix::Sig => format!("{tag}.sig"),
        Suffix::Att => format!("{tag}.att"),
    }
}

/// A pushed object: its reference and how many layers it now has.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attached {
    /// `registry/repository:sha256-<hex>.sig@sha256:...`.
    pub reference: String,
    pub layers: usize,
}

/// One layer of a signature or attestation object, with its blob.
#[derive(Debug, Clone)]
pub struct Layer {
    pub media_type: String,
    pub digest: String,
    pub annotations: BTreeMap<String, String>,
    pub blob: Vec<u8>,
}

/// Signs `image` (which must carry a digest) with `key` and appends the signature to its
/// `.sig` object.
///
/// # Errors
/// [`Error::NotPinned`] for a reference without digest; [`Error::Registry`] when the registry
/// fails; [`Error::InvalidObject`] when the existing object is not a manifest.
pub async fn attach_signature(
    registry: &RegistryClient,
    image: &ImageRef,
    key: &KeyPair,
) -> Result<Attached, Error> {
    let digest = pinned(image)?;
    let payload = payload::simple_signing(&repository_name(image), digest);
    let signature = key.sign(&payload);
    let annotations =
        BTreeMap::from([(SIGNATURE_ANNOTATION.to_string(), base64_encode(&signature))]);
    append_layer(
        registry,
        image,
        Suffix::Sig,
        payload,
        SIMPLE_SIGNING_MEDIA_TYPE,
        annotations,
    )
    .await
}

/// Makes an in-toto statement of `predicate_type` about `image`, signs it with `key` as a
/// DSSE envelope and appends it to the image's `.att` object.
///
/// # Errors
/// As [`attach_signature`].
pub async fn attach_attestation(
    registry: &RegistryClient,
    image: &ImageRef,
    key: &KeyPair,
    predicate_type: &str,
    predicate: Value,
) -> Result<Attached, Error> {
    let digest = pinned(image)?;
    let statement = payload::statement(&repository_name(image), digest, predicate_type, predicate);
    let envelope = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &statement, key);
    let blob = serde_json::to_vec(&envelope).expect("the envelope serializes");
    let annotations = BTreeMap::from([
        (SIGNATURE_ANNOTATION.to_string(), String::new()),
        (
            PREDICATE_TYPE_ANNOTATION.to_string(),
            predicate_type.to_string(),
        ),
    ]);
    append_layer(
        registry,
        image,
        Suffix::Att,
        blob,
        DSSE_MEDIA_TYPE,
        annotations,
    )
    .await
}

/// Fetches the layers of `image`'s `.sig` or `.att` object with their blobs, or `None` when
/// the object does not exist.
///
/// # Errors
/// [`Error::Registry`] or [`Error::InvalidObject`].
pub async fn fetch_layers(
    registry: &RegistryClient,
    image: &ImageRef,
    suffix: Suffix,
) -> Result<Option<Vec<Layer>>, Error> {
    let digest = pinned(image)?;
    let object = image.with_tag(&signature_tag(digest, suffix));
    let manifest = match registry.fetch_manifest(&object).await {
        Ok(manifest) => manifest,
        Err(crate::registry::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let descriptors = layer_descriptors(&manifest.bytes, &object)?;
    let mut layers = Vec::with_capacity(descriptors.len());
    for descriptor in descriptors {
        let invalid = |reason: &str| Error::InvalidObject {
            reference: object.to_string(),
            reason: reason.to_string(),
        };
        let digest = descriptor
            .get("digest")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("a layer has no digest"))?
            .to_string();
        let media_type = descriptor
            .get("mediaType")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let annotations = descriptor
            .get("annotations")
            .and_then(Value::as_object)
            .map(|map| {
                map.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let blob = registry.fetch_blob(&object, &digest).await?;
        layers.push(Layer {
            media_type,
            digest,
            annotations,
            blob,
        });
    }
    Ok(Some(layers))
}

/// Appends one layer to `image`'s `suffix` object, creating the object when it is missing.
async fn append_layer(
    registry: &RegistryClient,
    image: &ImageRef,
    suffix: Suffix,
    blob: Vec<u8>,
    media_type: &str,
    annotations: BTreeMap<String, String>,
) -> Result<Attached, Error> {
    let digest = pinned(image)?;
    let object = image.with_tag(&signature_tag(digest, suffix));

    let mut layers = match registry.fetch_manifest(&object).await {
        Ok(manifest) => layer_descriptors(&manifest.bytes, &object)?,
        Err(crate::registry::Error::NotFound { .. }) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let blob_digest = push_blob(registry, &object, &blob).await?;
    layers.push(json!({
        "mediaType": media_type,
        "size": blob.len(),
        "digest": blob_digest,
        "annotations": annotations,
    }));

    // The layers are stored uncompressed, so each diff ID is the layer digest.
    let diff_ids: Vec<&Value> = layers.iter().filter_map(|l| l.get("digest")).collect();
    let config = serde_json::to_vec(&json!({
        "architecture": "",
        "os": "",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .expect("the config serializes");
    let config_digest = push_blob(registry, &object, &config).await?;

    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_OCI_MANIFEST,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "size": config.len(), "digest": config_digest},
        "layers": layers,
    }))
    .expect("the manifest serializes");
    let pushed = registry
        .push_manifest(&object, &manifest, MEDIA_TYPE_OCI_MANIFEST)
        .await?;
    Ok(Attached {
        reference: format!("{object}@{pushed}"),
        layers: layers.len(),
    })
}

/// Returns the layer descriptors of a signature object's manifest, kept as written.
fn layer_descriptors(manifest: &[u8], object: &ImageRef) -> Result<Vec<Value>, Error> {
    let invalid = |reason: String| Error::InvalidObject {
        reference: object.to_string(),
        reason,
    };
    let value: Value = serde_json::from_slice(manifest)
        .map_err(|e| invalid(format!("the manifest is not JSON ({e})")))?;
    match value.get("layers") {
        Some(Value::Array(layers)) => Ok(layers.clone()),
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(_) => Err(invalid("`layers` is not a list".to_string())),
    }
}

async fn push_blob(
    registry: &RegistryClient,
    object: &ImageRef,
    bytes: &[u8],
) -> Result<String, Error> {
    let digest = crate::store::ContentStore::digest_of(bytes);
    let file = tempfile::NamedTempFile::new().map_err(|e| Error::InvalidObject {
        reference: object.to_string(),
        reason: format!("failed to stage a blob in a temporary file: {e}"),
    })?;
    std::fs::write(file.path(), bytes).map_err(|e| Error::InvalidObject {
        reference: object.to_string(),
        reason: format!("failed to stage a blob in a temporary file: {e}"),
    })?;
    registry
        .push_blob_file(object, &digest, file.path())
        .await?;
    Ok(digest)
}

/// Returns the digest of `image`, which signing and verifying need.
pub(super) fn pinned(image: &ImageRef) -> Result<&str, Error> {
    image.digest.as_deref().ok_or_else(|| Error::NotPinned {
        reference: image.to_string(),
    })
}

/// Returns `registry/repository`, without tag or digest.
pub(super) fn repository_name(image: &ImageRef) -> String {
    format!("{}/{}", image.registry, image.repository)
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_cosign() {
        let digest = "sha256:abc123";
        assert_eq!(signature_tag(digest, Suffix::Sig), "sha256-abc123.sig");
        assert_eq!(signature_tag(digest, Suffix::Att), "sha256-abc123.att");
    }

    #[test]
    fn unpinned_reference_is_rejected() {
        let image = ImageRef::parse("127.0.0.1:5000/app:latest").unwrap();
        let error = pinned(&image).unwrap_err();
        assert!(matches!(error, Error::NotPinned { .. }));
        assert!(error.hint().unwrap().contains("not a tag"));
    }

    #[test]
    fn manifest_without_layers_has_none() {
        let image = ImageRef::parse("127.0.0.1:5000/app:x").unwrap();
        assert!(layer_descriptors(br#"{"schemaVersion":2}"#, &image)
            .unwrap()
            .is_empty());
        assert!(layer_descriptors(br#"{"layers":3}"#, &image).is_err());
    }
}
