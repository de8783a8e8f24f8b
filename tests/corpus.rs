//! Every real-world devcontainer.json under `testdata/config/corpus`: the ones the local engine
//! accepts are resolved and ordered with their OCI Features served by a registry on
//! 127.0.0.1, and the rest must fail with a message naming the property and the way out.
//!
//! Features whose `devcontainer-feature.json` is in `testdata/features/corpus` are published
//! from it (with `ghcr.io` rewritten to the loopback registry); the others, and local Features
//! whose folders were not copied with the config, are stood in for by a minimal Feature that
//! declares the options the config sets.

#[path = "support/features.rs"]
mod features;
#[path = "support/registry.rs"]
mod registry_support;

use std::path::{Path, PathBuf};

use envc::config::{FeatureOptions, OptionValue};
use envc::registry::{RegistryClient, RegistryOptions};
use registry_support::TestRegistry;
use serde_json::{json, Value};

const UPSTREAM: &str = "ghcr.io";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

fn corpus_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.file_name().is_some_and(|n| n == "devcontainer.json") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root().join("config/corpus"), &mut files);
    files.sort();
    files
}

/// A stand-in Feature declaring `options` as free strings (booleans as booleans).
fn stand_in(id: &str, options: &FeatureOptions) -> Value {
    let mut declared = serde_json::Map::new();
    if let FeatureOptions::Map(map) = options {
        for (name, (value, _)) in map {
            let option = match value {
                OptionValue::Bool(_) => json!({"type": "boolean", "default": false}),
                OptionValue::String(_) => json!({"type": "string", "default": ""}),
            };
            declared.insert(name.clone(), option);
        }
    }
    if let FeatureOptions::Shorthand(_) = options {
        declared.insert(
            "version".into(),
            json!({"type": "string", "default": "latest"}),
        );
    }
    json!({"id": id, "version": "1.0.0", "options": declared})
}

#[test]
fn every_corpus_config_plans_or_fails_clearly() {
    let Some(registry) = TestRegistry::start() else {
        return;
    };
    let address = registry.address.clone();
    let client = RegistryClient::new(RegistryOptions::default());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut published = std::collections::BTreeSet::new();
    let mut report = String::new();
    let (mut planned, mut rejected) = (0, 0);

    for file in corpus_files() {
        let name = file
            .strip_prefix(root().join("config/corpus"))
            .unwrap()
            .display()
            .to_string();
        report.push_str(&format!("== {name}\n"));
        let config = match envc::config::load(&file, &|_| None) {
            Ok(config) => config,
            Err(error) => {
                let text = error
                    .to_string()
                    .replace(&file.display().to_string(), "FILE");
                assert!(text.contains("not supported"), "{name}: {text}");
                assert!(error.hint().is_some(), "{name}: no hint");
                report.push_str(&format!(
                    "rejected: {text}\nhint: {}\n",
                    error.hint().unwrap()
                ));
                rejected += 1;
                continue;
            }
        };

        // A copy whose Features come from the loopback registry or stand-in folders.
        let tmp = tempfile::tempdir().unwrap();
        let copy_dir = tmp.path().join("ws/.devcontainer");
        std::fs::create_dir_all(&copy_dir).unwrap();
        let text = std::fs::read_to_string(&file)
            .unwrap()
            .replace(&format!("\"{UPSTREAM}/"), &format!("\"{address}/"));
        std::fs::write(copy_dir.join("devcontainer.json"), text).unwrap();
        for entry in &config.features {
            let written = &entry.reference;
            if let Some(local) = written.strip_prefix("./") {
                let dir = copy_dir.join(local);
                let id = dir.file_name().unwrap().to_string_lossy().into_owned();
                std::fs::create_dir_all(&dir).unwrap();
                let metadata = stand_in(&id, &entry.options);
                std::fs::write(dir.join("devcontainer-feature.json"), metadata.to_string())
                    .unwrap();
                std::fs::write(dir.join("install.sh"), "#!/bin/sh\n").unwrap();
                continue;
            }
            let path = written.strip_prefix(&format!("{UPSTREAM}/")).unwrap();
            let repository = path.split(':').next().unwrap().to_string();
            if !published.insert(repository.clone()) {
                continue;
            }
            let id = repository.rsplit('/').next().unwrap();
            let known = root()
                .join("features/corpus")
                .join(id)
                .join("devcontainer-feature.json");
            let metadata: Value = match std::fs::read_to_string(&known) {
                Ok(text) => serde_json::from_str(
                    &text.replace(&format!("\"{UPSTREAM}/"), &format!("\"{address}/")),
                )
                .unwrap(),
                Err(_) => stand_in(id, &entry.options),
            };
            rt.block_on(features::publish(
                &client,
                &address,
                &repository,
                &["1", "2", "3", "latest"],
                &metadata,
            ));
        }

        let copy = envc::config::load(&copy_dir.join("devcontainer.json"), &|_| None).unwrap();
        let cache = tmp.path().join("cache");
        let resolution = rt
            .block_on(envc::feature::resolve_features(&copy, &client, &cache))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let ordered =
            envc::graph::install_order_explained(resolution, &copy.override_install_order)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        for (instance, placement) in ordered.instances.iter().zip(&ordered.placements) {
            let label = envc::graph::label(instance).replace(&address, "REGISTRY");
            report.push_str(&format!("{label}\n    {}\n", placement.reason()));
            let options: Vec<String> = instance
                .options
                .iter()
                .map(|(k, v)| format!("{k}={}", v.to_env_string()))
                .collect();
            report.push_str(&format!("    options: {}\n", options.join(" ")));
        }
        planned += 1;
    }
    report.push_str(&format!("planned {planned}, rejected {rejected}\n"));
    insta::assert_snapshot!(report.replace(&address, "REGISTRY"));
    assert_eq!(planned + rejected, corpus_files().len());
    assert!(planned >= 2);
}
