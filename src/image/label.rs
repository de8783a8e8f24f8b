//! The `devcontainer.metadata` label.
