//! The final image config and manifest, built on top of the base image's.
//!
//! The base config is kept as its JSON object, so fields this module does not touch (a
//! `Healthcheck`, a `Shell`, Docker's extra keys) survive in their original order. The new parts
//! are made from `oci-spec` types. The output is always an OCI manifest: a Docker v2 base is
//! accepted and its layer media types are mapped to their OCI equivalents. Same inputs, same
//! bytes: JSON is written compactly with fields in a fixed order.

use oci_spec::image::{DescriptorBuilder, Digest, HistoryBuilder, MediaType};
use serde_json::{json, Map, Value};

use super::{Error, Layer};
use crate::store::ContentStore;

pub const MEDIA_TYPE_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_TYPE_DOCKER_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";

/// A layer envc built, with the text of its history entry (`created_by`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLayer {
    pub layer: Layer,
    pub created_by: String,
}

/// Everything the final image is made from.
#[derive(Debug, Clone)]
pub struct ImageInput<'a> {
    /// The base image's manifest bytes (OCI or Docker v2, not an index).
    pub base_manifest: &'a [u8],
    /// The base image's config bytes.
    pub base_config: &'a [u8],
    pub layers: &'a [NewLayer],
    /// The final `Env` list, replacing the base's.
    pub env: &'a [String],
    /// The final `User`; `None` keeps the base's.
    pub user: Option<&'a str>,
    /// Labels added to (or replacing those of) the base, in order.
    pub labels: &'a [(String, String)],
    /// Seconds since the Unix epoch, used for every `created` field.
    pub source_date_epoch: i64,
}

/// The config and manifest of an assembled image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssembledImage {
    pub config: Vec<u8>,
    pub config_digest: String,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
    /// Always [`MEDIA_TYPE_OCI_MANIFEST`].
    pub manifest_media_type: &'static str,
}

/// Builds the image config and manifest and stores both blobs in `store`.
///
/// # Errors
/// [`Error::InvalidDocument`] when the base manifest or config is malformed or the base is an
/// index; store errors when a blob cannot be written.
pub fn assemble(input: &ImageInput<'_>, store: &ContentStore) -> Result<AssembledImage, Error> {
    let image = build(input)?;
    store.write_blob(&image.config)?;
    store.write_blob(&image.manifest)?;
    Ok(image)
}

/// Builds the image config and manifest without storing them.
///
/// # Errors
/// As [`assemble`], without the store errors.
pub fn build(input: &ImageInput<'_>) -> Result<AssembledImage, Error> {
    let created = rfc3339(input.source_date_epoch);
    let config = build_config(input, &created)?;
    let config_bytes = serde_json::to_vec(&config).expect("JSON values serialize");
    let config_digest = ContentStore::digest_of(&config_bytes);

    let manifest = build_manifest(input, &config_digest, config_bytes.len() as u64)?;
    let manifest_bytes = serde_json::to_vec(&manifest).expect("JSON values serialize");
    Ok(AssembledImage {
        manifest_digest: ContentStore::digest_of(&manifest_bytes),
        manifest: manifest_bytes,
        manifest_media_type: MEDIA_TYPE_OCI_MANIFEST,
        config: config_bytes,
        config_digest,
    })
}

fn build_config(input: &ImageInput<'_>, created: &str) -> Result<Value, Error> {
    // Type-check the base against the OCI schema, then edit it as JSON to keep every field.
    serde_json::from_slice::<oci_spec::image::ImageConfiguration>(input.base_config)
        .map_err(|e| Error::InvalidDocument(format!("base image config: {e}")))?;
    let mut config: Value = serde_json::from_slice(input.base_config)
        .map_err(|e| Error::InvalidDocument(format!("base image config: {e}")))?;
    let root = object(&mut config, "base image config")?;

    root.insert("created".into(), Value::String(created.to_string()));

    let exec = object_field(root, "config")?;
    let env = input.env.iter().cloned().map(Value::String).collect();
    exec.insert("Env".into(), Value::Array(env));
    if let Some(user) = input.user {
        exec.insert("User".into(), Value::String(user.to_string()));
    }
    if !input.labels.is_empty() {
        let labels = object_field(exec, "Labels")?;
        for (key, value) in input.labels {
            labels.insert(key.clone(), Value::String(value.clone()));
        }
    }

    let rootfs = object_field(root, "rootfs")?;
    rootfs
        .entry("type")
        .or_insert_with(|| Value::String("layers".into()));
    let diff_ids = array_field(rootfs, "diff_ids")?;
    let base_layers = diff_ids.len();
    diff_ids.extend(
        input
            .layers
            .iter()
            .map(|l| Value::String(l.layer.diff_id.clone())),
    );

    let history = array_field(root, "history")?;
    // Tools pair history entries that are not `empty_layer` with layers in order, so a base
    // that records fewer entries than it has layers gets one per missing layer; otherwise the
    // first Feature's entry would describe a base layer.
    let recorded = history
        .iter()
        .filter(|h| h.get("empty_layer").and_then(Value::as_bool) != Some(true))
        .count();
    for _ in recorded..base_layers {
        let entry = HistoryBuilder::default()
            .created(created.to_string())
            .comment("envc: the base image records no history for this layer")
            .build()
            .map_err(|e| Error::InvalidDocument(format!("history entry: {e}")))?;
        history.push(serde_json::to_value(entry).expect("history serializes"));
    }
    for layer in input.layers {
        let entry = HistoryBuilder::default()
            .created(created.to_string())
            .created_by(layer.created_by.clone())
            .build()
            .map_err(|e| Error::InvalidDocument(format!("history entry: {e}")))?;
        history.push(serde_json::to_value(entry).expect("history serializes"));
    }
    Ok(config)
}

fn build_manifest(
    input: &ImageInput<'_>,
    config_digest: &str,
    config_size: u64,
) -> Result<Value, Error> {
    let base: Value = serde_json::from_slice(input.base_manifest)
        .map_err(|e| Error::InvalidDocument(format!("base image manifest: {e}")))?;
    let media_type = base
        .get("mediaType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if media_type == MEDIA_TYPE_OCI_INDEX
        || media_type == MEDIA_TYPE_DOCKER_LIST
        || base.get("manifests").is_some()
    {
        return Err(Error::InvalidDocument(
            "the base image is an index; pick one platform's manifest first".into(),
        ));
    }
    if base.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return Err(Error::InvalidDocument(
            "base image manifest: `schemaVersion` is not 2".into(),
        ));
    }
    let base_layers = base
        .get("layers")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::InvalidDocument("base image manifest: no `layers` array".into()))?;

    let mut layers = Vec::with_capacity(base_layers.len() + input.layers.len());
    for layer in base_layers {
        let mut layer = layer.clone();
        let descriptor = object(&mut layer, "base layer descriptor")?;
        if let Some(Value::String(kind)) = descriptor.get_mut("mediaType") {
            *kind = oci_layer_media_type(kind).to_string();
        }
        layers.push(layer);
    }
    for new in input.layers {
        layers.push(descriptor(
            &new.layer.media_type,
            &new.layer.digest,
            new.layer.size,
        )?);
    }

    Ok(json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_OCI_MANIFEST,
        "config": descriptor(MEDIA_TYPE_OCI_CONFIG, config_digest, config_size)?,
        "layers": layers,
    }))
}

/// The OCI layer media type for a Docker one; other types are returned unchanged.
pub fn oci_layer_media_type(media_type: &str) -> &str {
    match media_type {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.v1.tar+gzip"
        }
        "application/vnd.docker.image.rootfs.diff.tar" => "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.docker.image.rootfs.diff.tar.zstd" => {
            "application/vnd.oci.image.layer.v1.tar+zstd"
        }
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        }
        other => other,
    }
}

/// `seconds` since the Unix epoch as an RFC 3339 UTC time, such as `1970-01-01T00:00:00Z`.
pub fn rfc3339(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian, 400-year eras).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn descriptor(media_type: &str, digest: &str, size: u64) -> Result<Value, Error> {
    let parsed: Digest = digest
        .parse()
        .map_err(|e| Error::InvalidDocument(format!("digest `{digest}`: {e}")))?;
    let descriptor = DescriptorBuilder::default()
        .media_type(MediaType::from(media_type))
        .digest(parsed)
        .size(size)
        .build()
        .map_err(|e| Error::InvalidDocument(format!("descriptor of `{digest}`: {e}")))?;
    Ok(serde_json::to_value(descriptor).expect("descriptors serialize"))
}

fn object<'a>(value: &'a mut Value, what: &str) -> Result<&'a mut Map<String, Value>, Error> {
    value
        .as_object_mut()
        .ok_or_else(|| Error::InvalidDocument(format!("{what} is not an object")))
}

fn object_field<'a>(
    parent: &'a mut Map<String, Value>,
    key: &str,
) -> Result<&'a mut Map<String, Value>, Error> {
    let slot = parent
        .entry(key)
        .or_insert_with(|| Value::Object(Map::new()));
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut()
        .ok_or_else(|| Error::InvalidDocument(format!("`{key}` is not an object")))
}

fn array_field<'a>(
    parent: &'a mut Map<String, Value>,
    key: &str,
) -> Result<&'a mut Vec<Value>, Error> {
    let slot = parent
        .entry(key)
        .or_insert_with(|| Value::Array(Vec::new()));
    if slot.is_null() {
        *slot = Value::Array(Vec::new());
    }
    slot.as_array_mut()
        .ok_or_else(|| Error::InvalidDocument(format!("`{key}` is not an array")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE_CONFIG: &str = r#"{"architecture":"amd64","os":"linux","created":"2024-01-01T00:00:00Z","config":{"Env":["PATH=/usr/bin"],"Cmd":["bash"],"Labels":{"b":"1","a":"2"},"Healthcheck":{"Test":["CMD","true"]}},"rootfs":{"type":"layers","diff_ids":["sha256:1111111111111111111111111111111111111111111111111111111111111111"]},"history":[{"created":"2024-01-01T00:00:00Z","created_by":"debootstrap"}]}"#;

    fn docker_manifest() -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{MEDIA_TYPE_DOCKER_MANIFEST}","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:2222222222222222222222222222222222222222222222222222222222222222","size":10}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:3333333333333333333333333333333333333333333333333333333333333333","size":20}}]}}"#
        )
    }

    fn new_layers() -> Vec<NewLayer> {
        ["4", "5"]
            .iter()
            .map(|d| NewLayer {
                layer: Layer {
                    digest: format!("sha256:{}", d.repeat(64)),
                    diff_id: format!("sha256:{}", d.repeat(63) + "0"),
                    size: 30,
                    media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                },
                created_by: format!("envc: Feature {d}"),
            })
            .collect()
    }

    fn input<'a>(
        manifest: &'a str,
        layers: &'a [NewLayer],
        labels: &'a [(String, String)],
        env: &'a [String],
    ) -> ImageInput<'a> {
        ImageInput {
            base_manifest: manifest.as_bytes(),
            base_config: BASE_CONFIG.as_bytes(),
            layers,
            env,
            user: Some("dev"),
            labels,
            source_date_epoch: 0,
        }
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn config_keeps_base_fields_and_appends_layers() {
        let manifest = docker_manifest();
        let layers = new_layers();
        let labels = vec![
            ("a".to_string(), "new".to_string()),
            ("c".to_string(), "3".to_string()),
        ];
        let env = vec![
            "PATH=/usr/local/bin:/usr/bin".to_string(),
            "X=1".to_string(),
        ];
        let image = build(&input(&manifest, &layers, &labels, &env)).unwrap();
        let config: Value = serde_json::from_slice(&image.config).unwrap();
        assert_eq!(config["created"], "1970-01-01T00:00:00Z");
        assert_eq!(config["config"]["Env"], json!(env));
        assert_eq!(config["config"]["User"], "dev");
        assert_eq!(config["config"]["Cmd"], json!(["bash"]));
        assert_eq!(
            config["config"]["Healthcheck"],
            json!({"Test": ["CMD", "true"]})
        );
        let label_keys: Vec<&String> = config["config"]["Labels"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(label_keys, ["b", "a", "c"]);
        assert_eq!(config["config"]["Labels"]["a"], "new");
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);
        assert_eq!(
            config["rootfs"]["diff_ids"][2],
            json!(layers[1].layer.diff_id)
        );
        let history = config["history"].as_array().unwrap();
        assert_eq!(history.len(), 3);
        assert_eq!(
            history[2],
            json!({"created": "1970-01-01T00:00:00Z", "created_by": "envc: Feature 5"})
        );
        // The config parses as an OCI image configuration.
        serde_json::from_slice::<oci_spec::image::ImageConfiguration>(&image.config).unwrap();
    }

    #[test]
    fn base_without_history_gets_one_entry_per_layer() {
        let manifest = docker_manifest();
        let layers = new_layers();
        let base_config = BASE_CONFIG.replace(
            r#","history":[{"created":"2024-01-01T00:00:00Z","created_by":"debootstrap"}]"#,
            "",
        );
        assert_ne!(base_config, BASE_CONFIG);
        let image = build(&ImageInput {
            base_config: base_config.as_bytes(),
            ..input(&manifest, &layers, &[], &[])
        })
        .unwrap();
        let config: Value = serde_json::from_slice(&image.config).unwrap();
        let history = config["history"].as_array().unwrap();
        assert_eq!(history.len(), 3, "one base entry and two Feature entries");
        assert!(history[0]["comment"]
            .as_str()
            .unwrap()
            .contains("no history"));
        assert_eq!(history[1]["created_by"], "envc: Feature 4");
    }

    #[test]
    fn manifest_maps_docker_types_and_appends_new_layers() {
        let manifest = docker_manifest();
        let layers = new_layers();
        let image = build(&input(&manifest, &layers, &[], &[])).unwrap();
        let parsed: Value = serde_json::from_slice(&image.manifest).unwrap();
        assert_eq!(parsed["mediaType"], MEDIA_TYPE_OCI_MANIFEST);
        assert_eq!(parsed["config"]["mediaType"], MEDIA_TYPE_OCI_CONFIG);
        assert_eq!(parsed["config"]["digest"], json!(image.config_digest));
        assert_eq!(parsed["config"]["size"], json!(image.config.len()));
        let kinds: Vec<&str> = parsed["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["mediaType"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["application/vnd.oci.image.layer.v1.tar+gzip"; 3]);
        assert_eq!(parsed["layers"][1]["digest"], json!(layers[0].layer.digest));
        serde_json::from_slice::<oci_spec::image::ImageManifest>(&image.manifest).unwrap();
        assert_eq!(
            image.manifest_digest,
            ContentStore::digest_of(&image.manifest)
        );
    }

    #[test]
    fn the_same_input_gives_the_same_bytes() {
        let manifest = docker_manifest();
        let layers = new_layers();
        let labels = vec![("devcontainer.metadata".to_string(), "[ {} ]".to_string())];
        let first = build(&input(&manifest, &layers, &labels, &[])).unwrap();
        for _ in 0..20 {
            assert_eq!(
                build(&input(&manifest, &layers, &labels, &[])).unwrap(),
                first
            );
        }
    }

    #[test]
    fn assemble_rejects_index_base() {
        let index = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        let err = build(&input(index, &[], &[], &[])).unwrap_err();
        assert!(err.to_string().contains("index"), "{err}");
    }

    #[test]
    fn assemble_stores_both_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(&dir.path().join("oci"), &dir.path().join("tmp")).unwrap();
        let manifest = docker_manifest();
        let layers = new_layers();
        let image = assemble(&input(&manifest, &layers, &[], &[]), &store).unwrap();
        assert_eq!(
            store.read_blob(&image.manifest_digest).unwrap(),
            image.manifest
        );
        assert_eq!(store.read_blob(&image.config_digest).unwrap(), image.config);
    }
}
