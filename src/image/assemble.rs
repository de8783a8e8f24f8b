//! The final image config and manifest.
