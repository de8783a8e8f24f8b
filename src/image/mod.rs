//! Image assembly: deterministic layer tarballs, compression, the image config with the
//! `devcontainer.metadata` label, and the manifest.
//!
//! Layers are written from and unpacked into folders in overlayfs's on-disk format (whiteouts
//! as 0:0 character devices, opaque folders marked with `trusted.overlay.opaque`), which is
//! what the local engine's snapshots use.

pub mod assemble;
mod compress;
pub(crate) mod fsmeta;
pub mod label;
pub mod layer;
mod unpack;

pub use layer::{Compression, Layer, LayerOptions};

/// Errors in writing or reading layers and image documents.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {action} `{}`", .path.display())]
    Io {
        action: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("layer entry `{entry}` escapes the extraction folder")]
    UnsafeEntry { entry: String },
    #[error("invalid image document: {0}")]
    InvalidDocument(String),
    /// The caller's cancel check returned true, so nothing was stored.
    #[error("cancelled")]
    Cancelled,
    #[error(transparent)]
    Store(#[from] crate::store::Error),
}
