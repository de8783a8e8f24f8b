//! Build-time variable substitution.
