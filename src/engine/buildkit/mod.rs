//! The BuildKit engine: BuildKit's wire types, connections and Control client.

pub mod client;
pub mod connect;
pub mod image;
pub mod llb;
pub mod proto;
pub mod session;
pub mod status;

/// Errors of the BuildKit engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Lower(#[from] llb::Error),
    #[error("the image BuildKit exported {what}")]
    Export { what: String },
    #[error("failed to {action}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("interrupted")]
    Interrupted,
    #[error(transparent)]
    Image(#[from] crate::image::Error),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
}
