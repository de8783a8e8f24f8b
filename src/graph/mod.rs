//! Install order: the reference implementation's round-based sort over `dependsOn` (hard),
//! `installsAfter` (soft) and `overrideFeatureInstallOrder` (priority).

use crate::config::Location;
use crate::feature::{FeatureInstance, Resolution};

/// Errors in ordering Features.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`dependsOn` cycle: {}", .members.join(" -> "))]
    Cycle { members: Vec<String> },
}

impl Error {
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Cycle { .. } => {
                Some("remove one of the `dependsOn` entries on the cycle".to_string())
            }
        }
    }
}

/// Orders `resolution` for installation.
pub fn install_order(
    resolution: Resolution,
    overrides: &[(String, Location)],
) -> Result<Vec<FeatureInstance>, Error> {
    let _ = (resolution, overrides);
    todo!("install order")
}
