//! The facts about a build that the SBOM and the provenance record, gathered from its plan.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::plan::BuildPlan;

/// The engine name written in provenance.
pub const LOCAL_ENGINE: &str = "local";

/// One installed Feature.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FeatureFacts {
    pub id: String,
    pub version: Option<String>,
    /// The reference as written in devcontainer.json.
    #[serde(rename = "ref")]
    pub reference: String,
    /// For OCI Features, `registry/repository@sha256:...`.
    pub resolved: Option<String>,
    /// `sha256:` digest of the Feature's content.
    pub digest: String,
    pub options: BTreeMap<String, serde_json::Value>,
}

/// Everything the SBOM and the provenance of one image are made from.
#[derive(Debug, Clone)]
pub struct BuildFacts {
    /// `registry/repository` for a pushed image, else the local tag.
    pub image_name: String,
    pub image_digest: String,
    pub base_reference: String,
    pub base_digest: String,
    pub features: Vec<FeatureFacts>,
    /// The devcontainer.json path relative to the project folder, when it is inside it.
    pub config_path: String,
    /// `sha256:` digest of the devcontainer.json bytes.
    pub config_digest: String,
    pub engine: String,
    pub plan_digest: String,
    pub compression: String,
    pub network: String,
    pub source_date_epoch: i64,
    pub started: SystemTime,
    pub finished: SystemTime,
}

impl BuildFacts {
    /// Gathers the facts of `plan`, built into `image_digest`. Reads the config file to
    /// digest it.
    ///
    /// # Errors
    /// The I/O error when the config file cannot be read.
    pub fn from_plan(
        plan: &BuildPlan,
        workspace: &Path,
        image_name: &str,
        image_digest: &str,
        started: SystemTime,
    ) -> std::io::Result<BuildFacts> {
        let config = std::fs::read(&plan.config_file)?;
        let config_path = plan
            .config_file
            .strip_prefix(workspace)
            .unwrap_or(&plan.config_file)
            .to_string_lossy()
            .into_owned();
        let features = plan
            .features
            .iter()
            .map(|step| FeatureFacts {
                id: step.id.clone(),
                version: step.version.clone(),
                reference: step.reference.clone(),
                resolved: step.resolved.clone(),
                digest: step.content_digest.clone(),
                options: step
                    .options
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or_default()))
                    .collect(),
            })
            .collect();
        let setting = |value: serde_json::Value| value.as_str().unwrap_or_default().to_string();
        Ok(BuildFacts {
            image_name: image_name.to_string(),
            image_digest: image_digest.to_string(),
            base_reference: plan.base.reference.clone(),
            base_digest: plan.base.digest.clone(),
            features,
            config_path,
            config_digest: format!("sha256:{}", hex::encode(Sha256::digest(&config))),
            engine: LOCAL_ENGINE.to_string(),
            plan_digest: plan.plan_digest.clone(),
            compression: setting(
                serde_json::to_value(plan.settings.compression).unwrap_or_default(),
            ),
            network: setting(serde_json::to_value(plan.settings.network).unwrap_or_default()),
            source_date_epoch: plan.settings.source_date_epoch,
            started,
            finished: SystemTime::now(),
        })
    }

    /// Returns the same facts for the image pushed as `image_name`.
    pub fn for_image(&self, image_name: &str) -> BuildFacts {
        BuildFacts {
            image_name: image_name.to_string(),
            ..self.clone()
        }
    }
}

/// Strips `sha256:` from a digest, leaving the hex digits.
pub(super) fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// Formats a `SystemTime` as RFC 3339 UTC, to the second.
pub(super) fn time_text(time: SystemTime) -> String {
    let seconds = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    crate::image::assemble::rfc3339(seconds)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Facts of a build with a base and two Features, one from a registry.
    pub fn sample() -> BuildFacts {
        BuildFacts {
            image_name: "127.0.0.1:5000/team/app".to_string(),
            image_digest: format!("sha256:{}", "a".repeat(64)),
            base_reference: "127.0.0.1:5000/debian:bookworm".to_string(),
            base_digest: format!("sha256:{}", "b".repeat(64)),
            features: vec![
                FeatureFacts {
                    id: "tool".to_string(),
                    version: Some("1.2.0".to_string()),
                    reference: "127.0.0.1:5000/features/tool:1".to_string(),
                    resolved: Some(format!(
                        "127.0.0.1:5000/features/tool@sha256:{}",
                        "c".repeat(64)
                    )),
                    digest: format!("sha256:{}", "d".repeat(64)),
                    options: BTreeMap::from([
                        ("version".to_string(), serde_json::json!("latest")),
                        ("extras".to_string(), serde_json::json!(true)),
                    ]),
                },
                FeatureFacts {
                    id: "local-thing".to_string(),
                    version: None,
                    reference: "./local-thing".to_string(),
                    resolved: None,
                    digest: format!("sha256:{}", "e".repeat(64)),
                    options: BTreeMap::new(),
                },
            ],
            config_path: ".devcontainer/devcontainer.json".to_string(),
            config_digest: format!("sha256:{}", "f".repeat(64)),
            engine: LOCAL_ENGINE.to_string(),
            plan_digest: format!("sha256:{}", "1".repeat(64)),
            compression: "gzip".to_string(),
            network: "none".to_string(),
            source_date_epoch: 0,
            started: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
            finished: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_042),
        }
    }

    #[test]
    fn time_text_is_rfc3339() {
        assert_eq!(time_text(sample().started), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn for_image_renames_only() {
        let facts = sample().for_image("127.0.0.1:5000/other");
        assert_eq!(facts.image_name, "127.0.0.1:5000/other");
        assert_eq!(facts.features.len(), 2);
    }
}
