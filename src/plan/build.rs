//! Turning a config and its ordered Features into a plan.

use std::collections::BTreeMap;

use serde::Serialize;

use super::env::Environment;
use super::keys::{digest_of, LAYER_FORMAT};
use super::{BasePlan, BuildPlan, Error, ImagePlan, Settings, Step, Users};
use crate::config::{Config, OptionValue};
use crate::feature::FeatureInstance;
use crate::image::label::{label_value, FeatureMetadata};

/// The label that carries dev container metadata.
pub const METADATA_LABEL: &str = "devcontainer.metadata";

/// Makes the plan for `config` with `features` in install order on top of `base`.
///
/// `source_date_epoch_from_user` tells whether `SOURCE_DATE_EPOCH` came from the user: only then
/// do install scripts see it, because tools that honour it misbehave on the default of 0 (for
/// example, zip files cannot hold times before 1980).
pub fn make_plan(
    config: &Config,
    features: &[FeatureInstance],
    base: BasePlan,
    settings: Settings,
    source_date_epoch_from_user: bool,
) -> Result<BuildPlan, Error> {
    let base_config = BaseConfig::parse(&base.config)?;
    let users = resolve_users(config, &base_config);

    let mut env = Environment::from_image_env(&base_config.env);
    let mut parent_key = base.digest.clone();
    let mut steps = Vec::with_capacity(features.len());
    for instance in features {
        let feature = &instance.feature;
        for (key, value) in &feature.metadata.container_env {
            env.set_expanded(key, value);
        }

        let script_env = script_environment(
            &env,
            instance,
            &users,
            source_date_epoch_from_user.then_some(settings.source_date_epoch),
        )?;
        let command = crate::feature::metadata::install_command(&feature.dir).map_err(|e| {
            Error::Invalid {
                hint: e.hint(),
                message: e.to_string(),
            }
        })?;
        let cache_key = digest_of(&StepKey {
            format: LAYER_FORMAT,
            parent: &parent_key,
            content: &feature.content_digest,
            options: &instance.options,
            command: &command,
            env: &script_env,
            users: &users,
            settings: &settings,
        });
        parent_key = cache_key.clone();

        let (location, required_by) = match &instance.origin {
            crate::feature::Origin::Listed(location) => (Some(location.clone()), None),
            crate::feature::Origin::DependsOn { parent, location } => {
                (location.clone(), Some(parent.clone()))
            }
        };
        steps.push(Step {
            id: feature.metadata.id.clone(),
            reference: feature.reference.written.clone(),
            version: feature.metadata.version.clone(),
            options: instance.options.clone(),
            content_digest: feature.content_digest.clone(),
            resolved: feature.resolved.clone(),
            cache_key,
            feature_dir: feature.dir.clone(),
            command,
            env: script_env,
            users: users.clone(),
            location,
            required_by,
        });
    }

    // The reference CLI writes the config's `containerEnv` last with `$` escaped, so these
    // values are taken literally.
    for (key, value) in &config.container_env {
        env.set(key, value);
    }

    let label_features: Vec<FeatureMetadata<'_>> = features
        .iter()
        .map(|i| FeatureMetadata {
            user_reference: &i.feature.reference.written,
            metadata: &i.feature.metadata.raw,
        })
        .collect();
    let label = label_value(
        base_config.labels.get(METADATA_LABEL).map(String::as_str),
        &label_features,
        &config.metadata_entry,
    );
    let image = ImagePlan {
        env: env.to_image_env(),
        user: base_config.user.clone(),
        labels: label
            .map(|l| (METADATA_LABEL.to_string(), l))
            .into_iter()
            .collect(),
    };
    let plan_digest = digest_of(&PlanKey {
        last: &parent_key,
        image: &image,
    });

    Ok(BuildPlan {
        config_file: config.file.clone(),
        base,
        features: steps,
        image,
        settings,
        plan_digest,
    })
}

/// The inputs of a step's cache key.
#[derive(Serialize)]
struct StepKey<'a> {
    format: u32,
    parent: &'a str,
    content: &'a str,
    options: &'a BTreeMap<String, OptionValue>,
    command: &'a [String],
    env: &'a [(String, String)],
    users: &'a Users,
    settings: &'a Settings,
}

#[derive(Serialize)]
struct PlanKey<'a> {
    last: &'a str,
    image: &'a ImagePlan,
}

/// Builds the environment an install script runs with: the image `Env` so far, the option variables,
/// then `_REMOTE_USER` and `_CONTAINER_USER`. Later entries replace earlier ones of the same name.
fn script_environment(
    env: &Environment,
    instance: &FeatureInstance,
    users: &Users,
    source_date_epoch: Option<i64>,
) -> Result<Vec<(String, String)>, Error> {
    let mut script = env.clone();
    for (name, value) in &instance.options {
        let var = crate::feature::options::env_name(name);
        script.set(&var, &value.to_env_string());
    }
    script.set("_REMOTE_USER", &users.remote);
    script.set("_CONTAINER_USER", &users.container);
    if let Some(epoch) = source_date_epoch {
        script.set("SOURCE_DATE_EPOCH", &epoch.to_string());
    }
    Ok(script.into_pairs())
}

/// Resolves the container and remote user as the reference CLI does: the config's values, else
/// the last base metadata entry that sets them, else the base image's `User`, else `root`.
fn resolve_users(config: &Config, base: &BaseConfig) -> Users {
    let from_label = |key: &str| {
        base.metadata_entries
            .iter()
            .rev()
            .find_map(|e| e.get(key)?.as_str().map(str::to_string))
    };
    let container = config
        .container_user
        .clone()
        .or_else(|| from_label("containerUser"))
        .or_else(|| base.user.clone().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "root".to_string());
    let remote = config
        .remote_user
        .clone()
        .or_else(|| from_label("remoteUser"))
        .unwrap_or_else(|| container.clone());
    Users { remote, container }
}

/// The parts of the base image config the plan reads.
struct BaseConfig {
    env: Vec<String>,
    user: Option<String>,
    labels: BTreeMap<String, String>,
    metadata_entries: Vec<serde_json::Map<String, serde_json::Value>>,
}

impl BaseConfig {
    fn parse(bytes: &[u8]) -> Result<BaseConfig, Error> {
        let invalid = |message: String| Error::Invalid {
            message: format!("invalid base image config: {message}"),
            hint: Some("check that the base reference names a container image".into()),
        };
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        let config = value.get("config").cloned().unwrap_or_default();
        let env = match config.get("Env") {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        let user = config
            .get("User")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let labels: BTreeMap<String, String> = match config.get("Labels") {
            Some(serde_json::Value::Object(map)) => map
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect(),
            _ => BTreeMap::new(),
        };
        let metadata_entries = match labels.get(METADATA_LABEL) {
            Some(text) => match serde_json::from_str(text) {
                Ok(serde_json::Value::Array(items)) => items
                    .into_iter()
                    .filter_map(|v| match v {
                        serde_json::Value::Object(map) => Some(map),
                        _ => None,
                    })
                    .collect(),
                Ok(serde_json::Value::Object(map)) => vec![map],
                _ => Vec::new(),
            },
            None => Vec::new(),
        };
        Ok(BaseConfig {
            env,
            user,
            labels,
            metadata_entries,
        })
    }
}
