//! Records of what a step cache key or a plan digest produced.

use crate::image::Layer;

/// What one build step produced: its layer, stored under the step's cache key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StepRecord {
    pub layer: Layer,
}

/// What a whole plan produced: the manifest digest, stored under the plan digest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PlanRecord {
    pub manifest_digest: String,
}
