//! Talking to OCI registries: resolve, pull, push, list tags. Built on `oci-client`.
//!
//! One `oci-client` client per registry, so the protocol is chosen per registry: plain HTTP
//! only for loopback registries (`localhost`, `127.0.0.0/8`, `[::1]`) and those named with
//! `--insecure-registry`, HTTPS for every other. Credentials come from the Docker config file
//! (see `auth`). Every digest is checked: manifests fetched by digest, and every blob.

mod auth;
mod reference;

pub use reference::{is_loopback_registry, names_registry, ImageRef, DEFAULT_REGISTRY};

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::{Client, Reference};
use sha2::{Digest as _, Sha256};

pub const MEDIA_TYPE_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_TYPE_DOCKER_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";

/// Manifest media types envc accepts when fetching.
const ACCEPTED_MANIFESTS: [&str; 4] = [
    MEDIA_TYPE_OCI_MANIFEST,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_DOCKER_LIST,
];

/// Bytes read from a file per upload chunk.
const UPLOAD_CHUNK: usize = 4 << 20;

/// Errors talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid image reference `{reference}`: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("failed to reach registry `{registry}`")]
    Unreachable {
        registry: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("`{reference}` not found")]
    NotFound { reference: String },
    #[error("registry `{registry}` refused the credentials for `{reference}`")]
    Unauthorized { registry: String, reference: String },
    #[error("registry error for `{reference}`: {message}")]
    Other { reference: String, message: String },
    /// Content whose sha256 is not the digest it was asked for or pinned to.
    #[error("`{reference}`: content digest is `{actual}`, expected `{expected}`")]
    DigestMismatch {
        reference: String,
        expected: String,
        actual: String,
    },
}

impl Error {
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Error::InvalidReference { .. } | Error::NotFound { .. }
        )
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Error::InvalidReference { .. } => Some(
                "write references as `host[:port]/path[:tag][@sha256:digest]`, \
                 such as `127.0.0.1:5000/debian:bookworm`"
                    .to_string(),
            ),
            Error::Unreachable { registry, .. } => Some(format!(
                "check the address `{registry}` and that the registry is running (start it \
                 first); plain HTTP is used only for loopback registries and those given with \
                 `--insecure-registry`"
            )),
            Error::NotFound { .. } => Some(
                "check the repository and tag; a registry lists its tags at \
                 `/v2/<repository>/tags/list`"
                    .to_string(),
            ),
            Error::Unauthorized { registry, .. } => Some(format!(
                "log in with `docker login {registry}`, or check the `auths` entry for \
                 `{registry}` in the Docker config file"
            )),
            Error::Other { .. } => None,
            Error::DigestMismatch { .. } => Some(
                "the registry served content other than the pinned digest; check which \
                 registry the reference names, or re-pin it"
                    .to_string(),
            ),
        }
    }
}

/// A manifest as fetched: its exact bytes, digest and media type.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub digest: String,
    pub media_type: String,
}

impl FetchedManifest {
    /// Whether this is an index (OCI index or Docker manifest list).
    pub fn is_index(&self) -> bool {
        self.media_type == MEDIA_TYPE_OCI_INDEX || self.media_type == MEDIA_TYPE_DOCKER_LIST
    }
}

/// Connection settings shared by every request.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Registries (`host[:port]`) reached over plain HTTP besides loopback ones.
    pub insecure: Vec<String>,
}

/// Returns the user name and password the Docker config file contains for `registry`, for
/// daemons such as BuildKit that ask envc for credentials. `None` means anonymous access.
pub(crate) fn basic_login(registry: &str) -> Option<(String, String)> {
    match auth::auth_for(registry) {
        oci_client::secrets::RegistryAuth::Basic(user, password) => Some((user, password)),
        _ => None,
    }
}

/// The maximum number of tag-list pages envc reads before giving up.
const MAX_TAG_PAGES: usize = 1000;

/// A registry client shared across a build.
pub struct RegistryClient {
    options: RegistryOptions,
    clients: Mutex<HashMap<String, Arc<Client>>>,
}

impl RegistryClient {
    pub fn new(options: RegistryOptions) -> Self {
        RegistryClient {
            options,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Whether requests to `registry` use plain HTTP.
    pub fn uses_plain_http(&self, registry: &str) -> bool {
        is_loopback_registry(registry) || self.options.insecure.iter().any(|r| r == registry)
    }

    /// Fetches the manifest (or index) that `reference` names, verifying a pinned digest.
    ///
    /// # Errors
    /// [`Error::NotFound`] for a missing tag or digest, [`Error::Unreachable`],
    /// [`Error::Unauthorized`], or [`Error::DigestMismatch`].
    pub async fn fetch_manifest(&self, reference: &ImageRef) -> Result<FetchedManifest, Error> {
        let (client, oci_ref) = self.prepare(reference).await?;
        let (bytes, digest) = client
            .pull_manifest_raw(
                &oci_ref,
                &auth::auth_for(&reference.registry),
                &ACCEPTED_MANIFESTS,
            )
            .await
            .map_err(|e| map_error(e, reference))?;
        let bytes = bytes.to_vec();

        let actual = sha256_digest(&bytes);
        let expected = reference.digest.as_deref().unwrap_or(&digest);
        if actual != expected {
            return Err(Error::DigestMismatch {
                reference: reference.to_string(),
                expected: expected.to_string(),
                actual,
            });
        }
        let media_type = manifest_media_type(&bytes);
        tracing::debug!("fetched manifest `{reference}` ({media_type}, {actual})");
        Ok(FetchedManifest {
            bytes,
            digest: actual,
            media_type,
        })
    }

    /// Fetches the image manifest of `reference`; for an index, the `linux/amd64` entry's.
    ///
    /// # Errors
    /// As [`Self::fetch_manifest`]; [`Error::NotFound`] when an index has no `linux/amd64` entry.
    pub async fn fetch_image_manifest(
        &self,
        reference: &ImageRef,
    ) -> Result<FetchedManifest, Error> {
        let fetched = self.fetch_manifest(reference).await?;
        if !fetched.is_index() {
            return Ok(fetched);
        }
        let digest =
            select_platform(&fetched.bytes, "linux", "amd64").ok_or_else(|| Error::NotFound {
                reference: format!("{reference} (platform linux/amd64)"),
            })?;
        self.fetch_manifest(&reference.with_digest(&digest)).await
    }

    /// Downloads blob `digest` of `reference`'s repository to `dest`, verifying its digest.
    ///
    /// # Errors
    /// As [`Self::fetch_manifest`]; [`Error::Other`] when the file cannot be written or the
    /// content does not match `digest`.
    pub async fn fetch_blob_to_file(
        &self,
        reference: &ImageRef,
        digest: &str,
        dest: &Path,
    ) -> Result<(), Error> {
        let (client, oci_ref) = self.prepare(reference).await?;
        let file = tokio::fs::File::create(dest)
            .await
            .map_err(|e| Error::Other {
                reference: reference.to_string(),
                message: format!("failed to create `{}`: {e}", dest.display()),
            })?;
        let result = client.pull_blob(&oci_ref, digest, file).await;
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(dest).await;
            return Err(map_error(e, &reference.with_digest(digest)));
        }
        Ok(())
    }

    /// Downloads a small blob (a config or a Feature archive) into memory, verifying it.
    ///
    /// # Errors
    /// As [`Self::fetch_blob_to_file`].
    pub async fn fetch_blob(&self, reference: &ImageRef, digest: &str) -> Result<Vec<u8>, Error> {
        let (client, oci_ref) = self.prepare(reference).await?;
        let mut bytes = Vec::new();
        client
            .pull_blob(&oci_ref, digest, &mut bytes)
            .await
            .map_err(|e| map_error(e, &reference.with_digest(digest)))?;
        Ok(bytes)
    }

    /// Whether the registry has blob `digest` in `reference`'s repository (a HEAD request).
    ///
    /// # Errors
    /// As [`Self::fetch_manifest`].
    pub async fn blob_exists(&self, reference: &ImageRef, digest: &str) -> Result<bool, Error> {
        let (client, oci_ref) = self.prepare(reference).await?;
        client
            .blob_exists(&oci_ref, digest)
            .await
            .map_err(|e| map_error(e, reference))
    }

    /// Uploads the file at `path` as blob `digest`, unless the registry already has it.
    /// Returns whether an upload happened. The file is streamed, never read whole.
    ///
    /// # Errors
    /// As [`Self::fetch_manifest`]; [`Error::Other`] when the file cannot be read or the
    /// registry rejects the digest.
    pub async fn push_blob_file(
        &self,
        reference: &ImageRef,
        digest: &str,
        path: &Path,
    ) -> Result<bool, Error> {
        if self.blob_exists(reference, digest).await? {
            tracing::debug!("registry already has blob `{digest}` for `{reference}`");
            return Ok(false);
        }
        let (client, oci_ref) = self.prepare(reference).await?;
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| Error::Other {
                reference: reference.to_string(),
                message: format!("failed to open `{}`: {e}", path.display()),
            })?;
        let size = file.metadata().await.map(|m| m.len()).ok();
        let stream = futures_util::stream::try_unfold(file, |mut file| async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; UPLOAD_CHUNK];
            let mut filled = 0;
            while filled < buf.len() {
                let n = file
                    .read(&mut buf[filled..])
                    .await
                    .map_err(OciDistributionError::from)?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                return Ok(None);
            }
            buf.truncate(filled);
            Ok(Some((bytes::Bytes::from(buf), file)))
        });
        client
            .push_blob_stream(&oci_ref, stream, digest, size)
            .await
            .map_err(|e| map_error(e, &reference.with_digest(digest)))?;
        Ok(true)
    }

    /// Uploads a manifest under `reference`'s tag (or digest) and returns its digest.
    ///
    /// # Errors
    /// As [`Self::fetch_manifest`]; [`Error::Other`] when the registry rejects the manifest.
    pub async fn push_manifest(
        &self,
        reference: &ImageRef,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<String, Error> {
        let (client, oci_ref) = self.prepare(reference).await?;
        let content_type = media_type.parse().map_err(|_| Error::Other {
            reference: reference.to_string(),
            message: format!("media type `{media_type}` is not a valid header value"),
        })?;
        client
            .push_manifest_raw(&oci_ref, bytes.to_vec(), content_type)
            .await
            .map_err(|e| map_error(e, reference))?;
        Ok(sha256_digest(bytes))
    }

    /// The tags of `reference`'s repository, as the registry lists them.
    ///
    /// # Errors
    /// [`Error::NotFound`] when the repository does not exist; as [`Self::fetch_manifest`].
    /// Lists every tag of `reference`'s repository, following pages: a registry may return the
    /// list in parts, and each next part is asked for with `last` set to the final tag so far.
    pub async fn list_tags(&self, reference: &ImageRef) -> Result<Vec<String>, Error> {
        let (client, oci_ref) = self.prepare(reference).await?;
        let auth = auth::auth_for(&reference.registry);
        let mut tags: Vec<String> = Vec::new();
        for _ in 0..MAX_TAG_PAGES {
            let last = tags.last().map(String::as_str);
            let page = client
                .list_tags(&oci_ref, &auth, None, last)
                .await
                .map_err(|e| map_error(e, reference))?
                .tags;
            // A registry that ignores `last` sends the first page again: stop on anything not new.
            let before = tags.len();
            for tag in page {
                if !tags.contains(&tag) {
                    tags.push(tag);
                }
            }
            if tags.len() == before {
                return Ok(tags);
            }
        }
        Err(Error::Other {
            reference: reference.to_string(),
            message: format!("the tag list has more than {MAX_TAG_PAGES} pages"),
        })
    }

    /// The client for `reference`'s registry, with its credentials stored, and the reference
    /// in `oci-client`'s form.
    async fn prepare(&self, reference: &ImageRef) -> Result<(Arc<Client>, Reference), Error> {
        let client = {
            let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
            let registry = reference.registry.clone();
            let plain = self.uses_plain_http(&registry);
            clients
                .entry(registry)
                .or_insert_with(|| {
                    let protocol = if plain {
                        ClientProtocol::Http
                    } else {
                        ClientProtocol::Https
                    };
                    Arc::new(Client::new(ClientConfig {
                        protocol,
                        // A registry that accepts connections and never responds must not hang
                        // a build. A silent connect fails after CONNECT_TIMEOUT, and a silent
                        // response after READ_TIMEOUT without a byte.
                        connect_timeout: Some(CONNECT_TIMEOUT),
                        read_timeout: Some(READ_TIMEOUT),
                        ..Default::default()
                    }))
                })
                .clone()
        };
        let oci_ref = to_oci_reference(reference);
        let auth = auth::auth_for(&reference.registry);
        client
            .store_auth_if_needed(oci_ref.resolve_registry(), &auth)
            .await;
        Ok((client, oci_ref))
    }
}

/// The digest of the `os`/`arch` manifest an index lists, if any. A `variant` is ignored, and
/// the first matching entry wins, as Docker picks.
pub fn select_platform(index: &[u8], os: &str, arch: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(index).ok()?;
    value
        .get("manifests")?
        .as_array()?
        .iter()
        .find_map(|entry| {
            let platform = entry.get("platform")?;
            let matches = platform.get("os")?.as_str()? == os
                && platform.get("architecture")?.as_str()? == arch;
            matches
                .then(|| entry.get("digest")?.as_str().map(str::to_string))
                .flatten()
        })
}

/// The media type a manifest declares, or the one its shape implies.
fn manifest_media_type(bytes: &[u8]) -> String {
    let value: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    if let Some(kind) = value.get("mediaType").and_then(|v| v.as_str()) {
        return kind.to_string();
    }
    if value.get("manifests").is_some() {
        MEDIA_TYPE_OCI_INDEX.to_string()
    } else {
        MEDIA_TYPE_OCI_MANIFEST.to_string()
    }
}

fn to_oci_reference(reference: &ImageRef) -> Reference {
    match (&reference.digest, &reference.tag) {
        (Some(digest), _) => Reference::with_digest(
            reference.registry.clone(),
            reference.repository.clone(),
            digest.clone(),
        ),
        (None, tag) => Reference::with_tag(
            reference.registry.clone(),
            reference.repository.clone(),
            tag.clone().unwrap_or_else(|| "latest".to_string()),
        ),
    }
}

/// How long a connection to a registry may take to open.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a registry may stay silent while envc waits for a response.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Maps an `oci-client` error to one naming the registry or reference. Messages from the
/// client carry URLs but never credentials.
fn map_error(error: OciDistributionError, reference: &ImageRef) -> Error {
    let registry = reference.registry.clone();
    match error {
        OciDistributionError::RequestError(e) if e.is_connect() || e.is_timeout() => {
            Error::Unreachable {
                registry,
                source: Box::new(e),
            }
        }
        OciDistributionError::ImageManifestNotFoundError(_) => Error::NotFound {
            reference: reference.to_string(),
        },
        OciDistributionError::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|e| {
                matches!(
                    e.code,
                    oci_client::errors::OciErrorCode::ManifestUnknown
                        | oci_client::errors::OciErrorCode::NameUnknown
                        | oci_client::errors::OciErrorCode::BlobUnknown
                )
            }) =>
        {
            Error::NotFound {
                reference: reference.to_string(),
            }
        }
        OciDistributionError::ServerError { code: 404, .. } => Error::NotFound {
            reference: reference.to_string(),
        },
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => Error::Unauthorized {
            registry,
            reference: reference.to_string(),
        },
        OciDistributionError::DigestError(oci_client::errors::DigestError::VerificationError {
            expected,
            actual,
        }) => Error::DigestMismatch {
            reference: reference.to_string(),
            expected,
            actual,
        },
        OciDistributionError::DigestError(e) => Error::Other {
            reference: reference.to_string(),
            message: format!("content does not match its digest: {e}"),
        },
        other => Error::Other {
            reference: reference.to_string(),
            message: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_loopback_and_named_registries() {
        let client = RegistryClient::new(RegistryOptions {
            insecure: vec!["10.0.0.5:5000".into()],
        });
        assert!(client.uses_plain_http("127.0.0.1:5000"));
        assert!(client.uses_plain_http("localhost:5000"));
        assert!(client.uses_plain_http("10.0.0.5:5000"));
        assert!(!client.uses_plain_http("10.0.0.5:5001"));
        assert!(!client.uses_plain_http("ghcr.io"));
    }

    #[test]
    fn select_platform_picks_linux_amd64() {
        let index = br#"{"schemaVersion":2,"manifests":[
            {"digest":"sha256:arm","platform":{"os":"linux","architecture":"arm64"}},
            {"digest":"sha256:att","annotations":{"vnd.docker.reference.type":"attestation-manifest"},"platform":{"os":"unknown","architecture":"unknown"}},
            {"digest":"sha256:amd","platform":{"os":"linux","architecture":"amd64"}}]}"#;
        assert_eq!(
            select_platform(index, "linux", "amd64").as_deref(),
            Some("sha256:amd")
        );
        assert_eq!(select_platform(index, "windows", "amd64"), None);
    }

    #[test]
    fn media_type_from_shape() {
        assert_eq!(
            manifest_media_type(br#"{"schemaVersion":2,"manifests":[]}"#),
            MEDIA_TYPE_OCI_INDEX
        );
        assert_eq!(
            manifest_media_type(br#"{"schemaVersion":2,"layers":[]}"#),
            MEDIA_TYPE_OCI_MANIFEST
        );
        let docker = format!(r#"{{"mediaType":"{MEDIA_TYPE_DOCKER_MANIFEST}"}}"#);
        assert_eq!(
            manifest_media_type(docker.as_bytes()),
            MEDIA_TYPE_DOCKER_MANIFEST
        );
    }

    #[tokio::test]
    async fn an_unreachable_registry_names_it_and_hints() {
        // A port nothing listens on: bind one, then close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let reference = ImageRef::parse(&format!("127.0.0.1:{port}/nothing:1")).unwrap();
        let client = RegistryClient::new(RegistryOptions::default());
        let err = client.fetch_manifest(&reference).await.unwrap_err();
        assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
        assert!(err.to_string().contains(&format!("127.0.0.1:{port}")));
        assert!(err.hint().unwrap().contains("running"));
    }
}
