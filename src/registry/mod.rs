//! Talking to OCI registries: resolve, pull, push, list tags. Built on `oci-client`.
//!
//! Plain HTTP is used only for loopback registries and those named with `--insecure-registry`.
//! Credentials come from the Docker config file.

mod reference;

pub use reference::ImageRef;

use std::path::Path;

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
    #[error("registry error for `{reference}`: {message}")]
    Other { reference: String, message: String },
}

impl Error {
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Error::InvalidReference { .. } | Error::NotFound { .. }
        )
    }

    pub fn hint(&self) -> Option<String> {
        None
    }
}

/// A manifest as fetched: its exact bytes, digest and media type.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub digest: String,
    pub media_type: String,
}

/// Connection settings shared by every request.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Registries (`host[:port]`) reached over plain HTTP besides loopback ones.
    pub insecure: Vec<String>,
}

/// A registry client shared across a build.
pub struct RegistryClient {
    options: RegistryOptions,
}

impl RegistryClient {
    pub fn new(options: RegistryOptions) -> Self {
        RegistryClient { options }
    }

    /// Fetches the manifest (or index) that `reference` names, verifying a pinned digest.
    pub async fn fetch_manifest(&self, reference: &ImageRef) -> Result<FetchedManifest, Error> {
        let _ = (reference, &self.options);
        todo!()
    }

    /// Downloads blob `digest` of `reference`'s repository to `dest`, verifying its digest.
    pub async fn fetch_blob_to_file(
        &self,
        reference: &ImageRef,
        digest: &str,
        dest: &Path,
    ) -> Result<(), Error> {
        let _ = (reference, digest, dest);
        todo!()
    }

    /// Downloads a small blob (a config or a Feature archive) into memory, verifying it.
    pub async fn fetch_blob(&self, reference: &ImageRef, digest: &str) -> Result<Vec<u8>, Error> {
        let _ = (reference, digest);
        todo!()
    }

    pub async fn blob_exists(&self, reference: &ImageRef, digest: &str) -> Result<bool, Error> {
        let _ = (reference, digest);
        todo!()
    }

    /// Uploads the file at `path` as blob `digest`, unless the registry already has it.
    /// Returns whether an upload happened.
    pub async fn push_blob_file(
        &self,
        reference: &ImageRef,
        digest: &str,
        path: &Path,
    ) -> Result<bool, Error> {
        let _ = (reference, digest, path);
        todo!()
    }

    /// Uploads a manifest under `reference`'s tag (or digest) and returns its digest.
    pub async fn push_manifest(
        &self,
        reference: &ImageRef,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<String, Error> {
        let _ = (reference, bytes, media_type);
        todo!()
    }

    pub async fn list_tags(&self, reference: &ImageRef) -> Result<Vec<String>, Error> {
        let _ = reference;
        todo!()
    }
}
