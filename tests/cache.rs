//! The registry layer cache: `--cache-to` stores each step's layer under its cache key, and
//! `--cache-from` lets a build with an empty store reuse them, against the seeded loopback
//! registry, each test in a repository of its own.

#[path = "support/features.rs"]
mod features;
mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use envc::registry::{ImageRef, RegistryClient, RegistryOptions};
use envc::store::remote::{self, EntryConfig};
use support::{can_build, json, stderr, Scratch, REGISTRY};

const SCRIPT_STARTED: &str = "running install script";

/// A cache repository no other test or run uses.
fn unique_repository(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{REGISTRY}/envc-test/cache-{name}-{}-{nanos}",
        std::process::id()
    )
}

/// A busybox project with two local Features; `second` installs after `first` and writes its
/// `greeting` option into the image.
fn two_feature_project(scratch: &Scratch, greeting: &str) -> PathBuf {
    let root = scratch.path().join("project");
    let dot = root.join(".devcontainer");
    let features = [
        (
            "first",
            r#"{"id": "first", "version": "1.0.0"}"#,
            "#!/bin/sh\nset -e\nmkdir -p /opt/first\necho one > /opt/first/done\n",
        ),
        (
            "second",
            r#"{"id": "second", "version": "1.0.0",
                "installsAfter": ["./features/first"],
                "options": {"greeting": {"type": "string", "default": "hello"}}}"#,
            "#!/bin/sh\nset -e\nmkdir -p /opt/second\necho \"$GREETING\" > /opt/second/done\n",
        ),
    ];
    for (folder, metadata, script) in features {
        let dir = dot.join("features").join(folder);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("devcontainer-feature.json"), metadata).unwrap();
        let path = dir.join("install.sh");
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let config = format!(
        r#"{{
  "image": "{REGISTRY}/busybox:latest",
  "features": {{
    "./features/first": {{}},
    "./features/second": {{ "greeting": "{greeting}" }}
  }}
}}
"#
    );
    std::fs::write(dot.join("devcontainer.json"), config).unwrap();
    root
}

fn build(scratch: &Scratch, store: &Path, project: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "--progress",
        "plain",
        "build",
        project.to_str().unwrap(),
        "--no-lockfile",
        "--json",
    ];
    args.extend_from_slice(extra);
    scratch.envc_with_store(store, &args)
}

fn scripts_run(output: &Output) -> Vec<String> {
    stderr(output)
        .lines()
        .filter(|line| line.contains(SCRIPT_STARTED))
        .map(str::to_string)
        .collect()
}

fn cached_flags(output: &Output) -> Vec<bool> {
    json(output)["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| layer["cached"].as_bool().unwrap())
        .collect()
}

/// A build with an empty store and `--cache-from` runs no script and makes the same image;
/// after one option changes, only that Feature's script runs.
#[test]
fn empty_store_rebuilds_from_the_registry_cache() {
    if !can_build("empty_store_rebuilds_from_the_registry_cache") {
        return;
    }
    let scratch = Scratch::new();
    let project = two_feature_project(&scratch, "hello");
    let repository = unique_repository("rebuild");

    let first = build(
        &scratch,
        &scratch.path().join("store-1"),
        &project,
        &["--cache-to", &repository],
    );
    assert!(first.status.success(), "build failed: {}", stderr(&first));
    assert_eq!(scripts_run(&first).len(), 2, "{}", stderr(&first));
    assert!(stderr(&first).contains("wrote 2 layer(s)"));
    let digest = json(&first)["digest"].as_str().unwrap().to_string();

    // Writing again adds nothing: both entries are there.
    let again = build(
        &scratch,
        &scratch.path().join("store-1"),
        &project,
        &["--cache-to", &repository],
    );
    assert!(again.status.success(), "build failed: {}", stderr(&again));
    assert!(stderr(&again).contains("wrote 0 layer(s), 2 already there"));

    let second = build(
        &scratch,
        &scratch.path().join("store-2"),
        &project,
        &["--cache-from", &repository],
    );
    assert!(second.status.success(), "build failed: {}", stderr(&second));
    assert_eq!(scripts_run(&second), Vec::<String>::new());
    assert_eq!(json(&second)["digest"], digest.as_str());
    assert_eq!(cached_flags(&second), [true, true]);

    let changed = two_feature_project(&scratch, "changed");
    let third = build(
        &scratch,
        &scratch.path().join("store-3"),
        &changed,
        &["--cache-from", &repository],
    );
    assert!(third.status.success(), "build failed: {}", stderr(&third));
    let ran = scripts_run(&third);
    assert_eq!(ran.len(), 1, "{}", stderr(&third));
    assert!(ran[0].contains("second"), "{ran:?}");
    assert_eq!(cached_flags(&third), [true, false]);
    assert_ne!(json(&third)["digest"], digest.as_str());
}

/// An entry whose config names another cache key is skipped with a warning, and the step runs.
#[test]
fn entry_for_another_key_is_skipped() {
    if !can_build("entry_for_another_key_is_skipped") {
        return;
    }
    let scratch = Scratch::new();
    let project = two_feature_project(&scratch, "hello");
    let repository = unique_repository("mismatch");

    let plan = scratch.envc(&["plan", project.to_str().unwrap(), "--no-lockfile", "--json"]);
    assert!(plan.status.success(), "plan failed: {}", stderr(&plan));
    let plan = json(&plan);
    let first_key = plan["features"][0]["cacheKey"]
        .as_str()
        .unwrap()
        .to_string();

    // An entry under the first step's tag that describes a layer of some other key.
    let layer_bytes = {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut encoder, &[0u8; 1024]).unwrap();
        encoder.finish().unwrap()
    };
    let layer_path = scratch.path().join("layer.tar.gz");
    std::fs::write(&layer_path, &layer_bytes).unwrap();
    let layer = envc::image::Layer {
        digest: features::digest(&layer_bytes),
        diff_id: features::digest(&[0u8; 1024]),
        size: layer_bytes.len() as u64,
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip".to_string(),
    };
    let other_key = format!("sha256:{}", "0".repeat(64));
    let (config_bytes, manifest_bytes) =
        remote::entry_documents(&EntryConfig::new(&other_key, &layer));
    let config_path = scratch.path().join("config.json");
    std::fs::write(&config_path, &config_bytes).unwrap();
    let entry =
        ImageRef::parse(&format!("{repository}:{}", remote::entry_tag(&first_key))).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = RegistryClient::new(RegistryOptions::default());
        client
            .push_blob_file(&entry, &layer.digest, &layer_path)
            .await
            .unwrap();
        client
            .push_blob_file(&entry, &features::digest(&config_bytes), &config_path)
            .await
            .unwrap();
        client
            .push_manifest(
                &entry,
                &manifest_bytes,
                "application/vnd.oci.image.manifest.v1+json",
            )
            .await
            .unwrap();
    });

    let output = build(
        &scratch,
        &scratch.store(),
        &project,
        &["--cache-from", &repository],
    );
    assert!(output.status.success(), "build failed: {}", stderr(&output));
    let text = stderr(&output);
    assert!(
        text.contains("skipping the cached layer of first")
            && text.contains(&format!("is for cache key `{other_key}`")),
        "{text}"
    );
    assert_eq!(scripts_run(&output).len(), 2, "{text}");
    assert_eq!(cached_flags(&output), [false, false]);
}

/// A `--cache-from` registry that cannot be reached is a warning; the build runs every step.
#[test]
fn unreachable_cache_is_a_warning() {
    if !can_build("unreachable_cache_is_a_warning") {
        return;
    }
    let scratch = Scratch::new();
    let project = two_feature_project(&scratch, "hello");
    let output = build(
        &scratch,
        &scratch.store(),
        &project,
        &["--cache-from", "127.0.0.1:9/envc-cache"],
    );
    assert!(output.status.success(), "build failed: {}", stderr(&output));
    let text = stderr(&output);
    assert!(
        text.contains("cache `127.0.0.1:9/envc-cache` is unreachable"),
        "{text}"
    );
    assert_eq!(
        text.matches("is unreachable").count(),
        1,
        "one warning: {text}"
    );
    assert_eq!(scripts_run(&output).len(), 2, "{text}");
}

/// A cache reference that names no registry, or has a tag, is rejected before any work.
#[test]
fn cache_repository_must_name_a_registry() {
    let scratch = Scratch::new();
    let project = two_feature_project(&scratch, "hello");
    for (flag, value) in [
        ("--cache-to", "team/envc-cache"),
        ("--cache-from", "127.0.0.1:5000/team/envc-cache:v1"),
    ] {
        let output = build(&scratch, &scratch.store(), &project, &[flag, value]);
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        assert!(stderr(&output).contains(&format!("`{value}`")));
        assert!(stderr(&output).contains("hint:"));
    }
}
