//! Pinning the base image: its manifest digest and config, without pulling its layers.

use super::{BasePlan, BaseSource, Error};
use crate::registry::{ImageRef, RegistryClient};

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// Returns the OCI architecture name of the machine envc runs on.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        other => other,
    }
}

/// Resolves the `image` of a config to a pinned base: a registry reference, or
/// `oci:DIR[:TAG]` for an OCI image layout folder.
pub async fn resolve_base(
    source: &crate::config::ImageSource,
    registry: &RegistryClient,
) -> Result<BasePlan, Error> {
    let reference = source.reference.as_str();
    if let Some(layout) = reference.strip_prefix("oci:") {
        return resolve_layout(source, layout);
    }
    let base_error = |error| Error::Base {
        reference: reference.to_string(),
        location: source.location.clone(),
        source: error,
    };
    let image = ImageRef::parse(reference).map_err(base_error)?;

    let mut manifest = registry.fetch_manifest(&image).await.map_err(base_error)?;
    if INDEX_TYPES.contains(&manifest.media_type.as_str()) || is_index(&manifest.bytes) {
        let digest = pick_platform(&manifest.bytes).ok_or_else(|| Error::Invalid {
            message: format!(
                "base image `{reference}` has no manifest for linux/{}",
                host_architecture()
            ),
            hint: Some("pick an image built for this platform".into()),
        })?;
        let pinned = ImageRef {
            tag: None,
            digest: Some(digest),
            ..image.clone()
        };
        manifest = registry.fetch_manifest(&pinned).await.map_err(base_error)?;
    }
    let config_digest = config_digest(&manifest.bytes).ok_or_else(|| Error::Invalid {
        message: format!("base image `{reference}` has a manifest without a config"),
        hint: None,
    })?;
    let config = registry
        .fetch_blob(&image, &config_digest)
        .await
        .map_err(base_error)?;

    let source = ImageRef {
        tag: None,
        digest: Some(manifest.digest.clone()),
        ..image
    };
    Ok(BasePlan {
        reference: reference.to_string(),
        digest: manifest.digest,
        source: BaseSource::Registry(source),
        manifest: manifest.bytes,
        config,
    })
}

fn resolve_layout(source: &crate::config::ImageSource, layout: &str) -> Result<BasePlan, Error> {
    let reference = source.reference.as_str();
    let location = &source.location;
    let (dir, tag) = split_layout_reference(layout);
    let invalid = |e: crate::store::Error| Error::Invalid {
        message: format!("{location}: failed to read base image `{reference}`: {e}"),
        hint: Some("write the base as `oci:DIR` or `oci:DIR:TAG` of an OCI image layout".into()),
    };
    let layout =
        crate::store::ContentStore::open_existing(std::path::Path::new(dir)).map_err(invalid)?;
    let descriptor = layout.find_image(tag).map_err(invalid)?;
    let digest = descriptor.digest().to_string();
    let manifest = layout.read_blob(&digest).map_err(invalid)?;
    let config_digest = config_digest(&manifest).ok_or_else(|| Error::Invalid {
        message: format!("base image `{reference}` has a manifest without a config"),
        hint: None,
    })?;
    let config = layout.read_blob(&config_digest).map_err(invalid)?;
    Ok(BasePlan {
        reference: reference.to_string(),
        digest,
        source: BaseSource::Layout { dir: dir.into() },
        manifest,
        config,
    })
}

/// Splits `DIR[:TAG]`. A colon inside the last path segment starts the tag.
fn split_layout_reference(layout: &str) -> (&str, Option<&str>) {
    match layout.rsplit_once(':') {
        Some((dir, tag)) if !tag.contains('/') && !dir.is_empty() => (dir, Some(tag)),
        _ => (layout, None),
    }
}

fn is_index(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .map(|v| v.get("manifests").is_some())
        .unwrap_or(false)
}

fn pick_platform(index: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(index).ok()?;
    value
        .get("manifests")?
        .as_array()?
        .iter()
        .find_map(|entry| {
            let platform = entry.get("platform")?;
            let matches = platform.get("os")?.as_str()? == "linux"
                && platform.get("architecture")?.as_str()? == host_architecture();
            matches
                .then(|| entry.get("digest")?.as_str().map(str::to_string))
                .flatten()
        })
}

fn config_digest(manifest: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(manifest).ok()?;
    value
        .get("config")?
        .get("digest")?
        .as_str()
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_reference_with_and_without_tag() {
        assert_eq!(
            split_layout_reference("/tmp/img:v1"),
            ("/tmp/img", Some("v1"))
        );
        assert_eq!(split_layout_reference("/tmp/img"), ("/tmp/img", None));
        assert_eq!(split_layout_reference("./a:b/c"), ("./a:b/c", None));
    }

    #[test]
    fn platform_is_picked_from_index() {
        let arch = host_architecture();
        let index = serde_json::json!({
            "manifests": [
                {"digest": "sha256:aa", "platform": {"os": "linux", "architecture": "s390x-none"}},
                {"digest": "sha256:bb", "platform": {"os": "linux", "architecture": arch}},
            ]
        });
        let bytes = serde_json::to_vec(&index).unwrap();
        assert_eq!(pick_platform(&bytes).as_deref(), Some("sha256:bb"));
        assert!(is_index(&bytes));
    }
}
