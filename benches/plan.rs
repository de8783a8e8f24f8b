//! Planning a project with 200 local Features: reading the config and every Feature's metadata,
//! digesting their folders, ordering them and making the plan with its cache keys. The base is
//! a one-config OCI layout on disk, so nothing is fetched.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use envc::build::{make_plan, EngineChoice, LockMode, ProjectOptions, StageBuild};
use envc::engine::{Cancel, Network};
use envc::image::Compression;
use envc::progress::Silent;
use envc::registry::{RegistryClient, RegistryOptions};
use envc::store::{ContentStore, Store};

const FEATURES: usize = 200;

/// Writes an image without layers to an OCI layout under `dir` and tags it `base`.
fn write_base(dir: &Path) {
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let layout = ContentStore::open(&dir.join("layout"), &tmp).unwrap();
    let config = br#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/bin:/bin"]},"rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = layout.write_blob(config).unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[]}}"#,
        config.len()
    );
    let manifest_digest = layout.write_blob(manifest.as_bytes()).unwrap();
    let descriptor = ContentStore::descriptor(
        "application/vnd.oci.image.manifest.v1+json",
        &manifest_digest,
        manifest.len() as u64,
    )
    .unwrap();
    layout.tag("base", &descriptor).unwrap();
}

/// Writes a project whose 200 Features form chains: every Feature has two options, each one
/// after the first `installsAfter` the one before it, and every tenth `dependsOn` the one
/// ten places back with an option set.
fn write_project(dir: &Path) {
    let features = dir.join(".devcontainer/features");
    let mut entries = Vec::new();
    for index in 0..FEATURES {
        let id = format!("f{index:03}");
        let folder = features.join(&id);
        std::fs::create_dir_all(&folder).unwrap();
        let mut metadata = serde_json::json!({
            "id": id,
            "version": "1.0.0",
            "name": format!("Feature {index}"),
            "options": {
                "flavor": {"type": "string", "enum": ["small", "large"], "default": "small"},
                "verbose": {"type": "boolean", "default": false}
            },
            "containerEnv": {format!("F{index:03}_HOME"): format!("/opt/{id}")}
        });
        if index > 0 {
            metadata["installsAfter"] =
                serde_json::json!([format!("./features/f{:03}", index - 1)]);
        }
        if index >= 10 && index % 10 == 0 {
            metadata["dependsOn"] =
                serde_json::json!({format!("./features/f{:03}", index - 10): {"flavor": "large"}});
        }
        std::fs::write(
            folder.join("devcontainer-feature.json"),
            metadata.to_string(),
        )
        .unwrap();
        std::fs::write(
            folder.join("install.sh"),
            format!(
                "#!/bin/sh\nset -eu\nmkdir -p /opt/{id}\necho \"$FLAVOR\" > /opt/{id}/flavor\n"
            ),
        )
        .unwrap();
        entries.push(format!(
            r#""./features/{id}": {{"verbose": {}}}"#,
            index % 3 == 0
        ));
    }
    let config = format!(
        "// {FEATURES} local Features\n{{\n  \"image\": \"oci:{}:base\",\n  \"features\": {{\n    {}\n  }},\n}}\n",
        dir.join("base/layout").display(),
        entries.join(",\n    ")
    );
    std::fs::write(dir.join(".devcontainer/devcontainer.json"), config).unwrap();
}

fn plan_200_features(c: &mut Criterion) {
    let project = tempfile::tempdir().unwrap();
    write_base(&project.path().join("base"));
    write_project(project.path());
    let options = ProjectOptions {
        workspace: project.path().to_path_buf(),
        config: None,
        store: project.path().join("store"),
        insecure_registries: Vec::new(),
        network: Network::None,
        compression: Compression::Gzip,
        source_date_epoch: None,
        // Planning must not write a lockfile into the project on every iteration.
        lockfile: LockMode::Off,
    };
    let store = Store::open(&options.store).unwrap();
    let registry = RegistryClient::new(RegistryOptions::default());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let engine = EngineChoice::Local;
    let cancel = Cancel::default();
    let stages = StageBuild {
        engine: &engine,
        reporter: &Silent,
        cancel: &cancel,
    };

    // Fails the benchmark early when the synthetic project does not plan.
    let planned = runtime
        .block_on(make_plan(&options, &store, &registry, stages))
        .unwrap();
    // A `dependsOn` with other options than the listed entry adds a second instance.
    assert!(planned.plan.features.len() >= FEATURES);

    c.bench_function("plan 200 local Features", |b| {
        b.iter(|| {
            runtime
                .block_on(make_plan(&options, &store, &registry, stages))
                .unwrap()
        })
    });
}

criterion_group!(benches, plan_200_features);
criterion_main!(benches);
