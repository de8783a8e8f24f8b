//! Turning a config and its ordered Features into a plan.
