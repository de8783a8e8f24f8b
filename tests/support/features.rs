//! Publishing Dev Container Feature artifacts to a test registry with envc's own client, in
//! the layout the reference CLI publishes: an OCI manifest whose config has media type
//! `application/vnd.devcontainers` and whose one layer is an uncompressed tar of type
//! `application/vnd.devcontainers.layer.v1+tar`, with the metadata as an annotation.

#![allow(dead_code)]

use envc::registry::{ImageRef, RegistryClient};
use sha2::{Digest as _, Sha256};

pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A tar of `./devcontainer-feature.json` and `./install.sh`, entries prefixed `./`.
pub fn feature_tar(metadata: &serde_json::Value, install: &str) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let files = [
        ("./devcontainer-feature.json", metadata.to_string(), 0o644),
        ("./install.sh", install.to_string(), 0o755),
    ];
    for (name, body, mode) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(body.len() as u64);
        header.set_mode(mode);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, name, body.as_bytes())
            .expect("append to the tar");
    }
    builder.into_inner().expect("finish the tar")
}

/// Pushes a Feature with `metadata` to `address/repository` under every tag in `tags` and
/// returns the manifest digest.
pub async fn publish(
    client: &RegistryClient,
    address: &str,
    repository: &str,
    tags: &[&str],
    metadata: &serde_json::Value,
) -> String {
    let install = "#!/bin/sh\necho installed\n";
    let layer = feature_tar(metadata, install);
    let config = b"{}".to_vec();
    let id = metadata["id"].as_str().unwrap_or("feature");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.devcontainers",
            "digest": digest(&config),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.devcontainers.layer.v1+tar",
            "digest": digest(&layer),
            "size": layer.len(),
            "annotations": {"org.opencontainers.image.title": format!("devcontainer-feature-{id}.tgz")},
        }],
        "annotations": {"dev.containers.metadata": metadata.to_string()},
    });
    let manifest = serde_json::to_vec(&manifest).expect("manifests serialize");

    let dir = tempfile::tempdir().expect("a temp dir");
    let target = ImageRef::parse(&format!("{address}/{repository}:{}", tags[0])).expect("a ref");
    for blob in [&config, &layer] {
        let path = dir.path().join("blob");
        std::fs::write(&path, blob).expect("write the blob");
        client
            .push_blob_file(&target, &digest(blob), &path)
            .await
            .expect("push the blob");
    }
    for tag in tags {
        client
            .push_manifest(
                &target.with_tag(tag),
                &manifest,
                "application/vnd.oci.image.manifest.v1+json",
            )
            .await
            .expect("push the manifest");
    }
    digest(&manifest)
}
