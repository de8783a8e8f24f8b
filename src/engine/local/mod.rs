//! The embedded engine: base layers unpacked into snapshots, each install script run with runc
//! as root over an overlayfs mount, and the upper folder written as the step's layer.

use super::{Cancel, Error, Network, StepResult};
use crate::plan::BuildPlan;
use crate::progress::Reporter;
use crate::store::Store;

/// Settings of the local engine.
#[derive(Debug, Clone, Default)]
pub struct LocalOptions {
    pub network: Network,
    /// Run every step even when its cache key is known.
    pub no_cache: bool,
}

pub struct LocalEngine {
    store: Store,
    options: LocalOptions,
}

impl LocalEngine {
    pub fn new(store: Store, options: LocalOptions) -> LocalEngine {
        LocalEngine { store, options }
    }

    /// Builds every step of `plan` in order, returning one result per step. The base image's
    /// layers must already be in the store.
    pub fn build(
        &self,
        plan: &BuildPlan,
        reporter: &dyn Reporter,
        cancel: &Cancel,
    ) -> Result<Vec<StepResult>, Error> {
        let _ = (&self.store, &self.options, plan, reporter, cancel);
        todo!("local engine")
    }
}
