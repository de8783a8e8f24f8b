//! Push and pull against a real `docker-registry` on 127.0.0.1.

#[path = "support/registry.rs"]
mod registry_support;

use envc::registry::{Error, ImageRef, RegistryClient, RegistryOptions};
use registry_support::TestRegistry;
use sha2::{Digest as _, Sha256};

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

const CONFIG: &[u8] =
    br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;

fn client() -> RegistryClient {
    RegistryClient::new(RegistryOptions::default())
}

/// Pushes a config, a layer of several upload chunks and a manifest under `reference`.
async fn push_image(
    client: &RegistryClient,
    reference: &ImageRef,
    dir: &std::path::Path,
) -> (Vec<u8>, String, Vec<u8>) {
    let config = CONFIG;
    let config_path = dir.join("config");
    std::fs::write(&config_path, config).unwrap();
    let layer: Vec<u8> = (0..9_000_000u32).map(|i| (i % 251) as u8).collect();
    let layer_path = dir.join("layer");
    std::fs::write(&layer_path, &layer).unwrap();

    assert!(client
        .push_blob_file(reference, &digest(config), &config_path)
        .await
        .unwrap());
    assert!(client
        .push_blob_file(reference, &digest(&layer), &layer_path)
        .await
        .unwrap());

    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest(&layer), "size": layer.len()}]
    }))
    .unwrap();
    let pushed = client
        .push_manifest(
            reference,
            &manifest,
            "application/vnd.oci.image.manifest.v1+json",
        )
        .await
        .unwrap();
    assert_eq!(pushed, digest(&manifest));
    (manifest, digest(&layer), layer)
}

#[tokio::test]
async fn push_pull_round_trip() {
    let Some(registry) = TestRegistry::start() else {
        return;
    };
    let reference = ImageRef::parse(&format!("{}/envc/test:v1", registry.address)).unwrap();
    let client = client();
    let work = tempfile::tempdir().unwrap();
    let (manifest, layer_digest, layer) = push_image(&client, &reference, work.path()).await;

    let fetched = client.fetch_manifest(&reference).await.unwrap();
    assert_eq!(fetched.bytes, manifest);
    assert_eq!(fetched.digest, digest(&manifest));
    assert_eq!(
        fetched.media_type,
        "application/vnd.oci.image.manifest.v1+json"
    );

    let pinned = reference.with_digest(&fetched.digest);
    assert_eq!(
        client.fetch_manifest(&pinned).await.unwrap().bytes,
        manifest
    );

    let dest = work.path().join("pulled");
    client
        .fetch_blob_to_file(&reference, &layer_digest, &dest)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), layer);
    assert_eq!(
        client
            .fetch_blob(&reference, &digest(CONFIG))
            .await
            .unwrap(),
        CONFIG
    );
}

#[tokio::test]
async fn push_skips_existing_blob() {
    let Some(registry) = TestRegistry::start() else {
        return;
    };
    let reference = ImageRef::parse(&format!("{}/envc/skip:v1", registry.address)).unwrap();
    let client = client();
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("blob");
    std::fs::write(&path, b"some blob").unwrap();
    let blob = digest(b"some blob");

    assert!(!client.blob_exists(&reference, &blob).await.unwrap());
    assert!(client
        .push_blob_file(&reference, &blob, &path)
        .await
        .unwrap());
    assert!(client.blob_exists(&reference, &blob).await.unwrap());
    assert!(!client
        .push_blob_file(&reference, &blob, &path)
        .await
        .unwrap());
    assert_eq!(
        client.fetch_blob(&reference, &blob).await.unwrap(),
        b"some blob"
    );
}

#[tokio::test]
async fn list_tags_after_push() {
    let Some(registry) = TestRegistry::start() else {
        return;
    };
    let client = client();
    let work = tempfile::tempdir().unwrap();
    let v1 = ImageRef::parse(&format!("{}/envc/tags:v1", registry.address)).unwrap();
    let (manifest, _, _) = push_image(&client, &v1, work.path()).await;
    let v2 = v1.with_tag("v2");
    client
        .push_manifest(&v2, &manifest, "application/vnd.oci.image.manifest.v1+json")
        .await
        .unwrap();
    let mut tags = client.list_tags(&v1).await.unwrap();
    tags.sort();
    assert_eq!(tags, ["v1", "v2"]);
}

#[tokio::test]
async fn missing_tag_and_blob_not_found() {
    let Some(registry) = TestRegistry::start() else {
        return;
    };
    let client = client();
    let missing = ImageRef::parse(&format!("{}/envc/none:nope", registry.address)).unwrap();
    let err = client.fetch_manifest(&missing).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("envc/none:nope"), "{err}");
    assert!(err.hint().is_some());

    let work = tempfile::tempdir().unwrap();
    let present = ImageRef::parse(&format!("{}/envc/some:v1", registry.address)).unwrap();
    push_image(&client, &present, work.path()).await;
    let err = client
        .fetch_manifest(&present.with_tag("v9"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    let unknown = digest(b"never pushed");
    let err = client.fetch_blob(&present, &unknown).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    let err = client.list_tags(&missing).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn fetch_rejects_mismatched_pinned_digest() {
    let Some(registry) = TestRegistry::start() else {
        return;
    };
    let client = client();
    let work = tempfile::tempdir().unwrap();
    let reference = ImageRef::parse(&format!("{}/envc/pin:v1", registry.address)).unwrap();
    push_image(&client, &reference, work.path()).await;
    let wrong = reference.with_digest(&digest(b"other"));
    assert!(client.fetch_manifest(&wrong).await.is_err());
}
