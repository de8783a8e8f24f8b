//! JSONC parsing with source spans.
