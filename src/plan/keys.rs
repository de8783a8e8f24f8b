//! Cache keys and the plan digest.
