//! Resolving the `features` of a config into instances, following `dependsOn`.

use super::{Error, FeatureInstance};
use crate::config::Config;
use crate::registry::RegistryClient;

/// Every Feature instance of a build, in discovery order (breadth-first from the listed
/// Features), with the edges the install order needs.
#[derive(Debug)]
pub struct Resolution {
    pub instances: Vec<FeatureInstance>,
    /// `(dependent, dependency)` index pairs from `dependsOn`.
    pub hard_edges: Vec<(usize, usize)>,
    /// `(dependent, dependency)` index pairs from `installsAfter` that some instance satisfies.
    pub soft_edges: Vec<(usize, usize)>,
}

/// Resolves, fetches and validates every Feature of `config`.
pub async fn resolve_features(
    config: &Config,
    registry: &RegistryClient,
    cache_dir: &std::path::Path,
) -> Result<Resolution, Error> {
    let _ = (config, registry, cache_dir);
    todo!("feature resolution")
}
