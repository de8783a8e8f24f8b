//! The lockfile and OCI tag resolution against a real `docker-registry` on 127.0.0.1: Features
//! are published with envc's registry client, then locked, pinned and checked with the envc
//! binary.

#[path = "support/features.rs"]
mod features;
#[path = "support/registry.rs"]
mod registry_support;

use std::path::{Path, PathBuf};
use std::process::Output;

use envc::registry::{RegistryClient, RegistryOptions};
use registry_support::TestRegistry;
use serde_json::{json, Value};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().expect("a runtime")
}

fn feature(id: &str, version: &str) -> Value {
    json!({"id": id, "version": version, "name": id,
           "options": {"version": {"type": "string", "default": "x"}}})
}

/// A project whose devcontainer.json lists `features`, written as `file_name` (relative to the
/// project root).
fn project(root: &Path, file_name: &str, features: &Value) -> PathBuf {
    let file = root.join(file_name);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let config = json!({"image": "127.0.0.1:5000/busybox:latest", "features": features});
    std::fs::write(&file, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    file
}

fn envc(store: &Path, args: &[&str]) -> Output {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_envc"))
        .args(args)
        .env("ENVC_STORE", store)
        .output()
        .expect("envc runs");
    eprintln!(
        "$ envc {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn read_lock(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("the lockfile exists")).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn lock_pins_versions_and_frozen_names_what_changed() {
    let Some(registry) = TestRegistry::start() else {
        return;
    };
    let address = registry.address.clone();
    let client = RegistryClient::new(RegistryOptions::default());
    let rt = runtime();
    let color = format!("{address}/team/color");
    let v120 = rt.block_on(features::publish(
        &client,
        &address,
        "team/color",
        &["1.2.0", "1.2", "1"],
        &feature("color", "1.2.0"),
    ));
    let mut deps = feature("deps", "2.0.0");
    deps["dependsOn"] = json!({ format!("{color}:1"): {} });
    let deps_digest = rt.block_on(features::publish(
        &client,
        &address,
        "team/deps",
        &["2", "latest"],
        &deps,
    ));

    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let root = tmp.path().join("project");
    let deps_key = format!("{address}/team/deps");
    let config = project(
        &root,
        ".devcontainer/devcontainer.json",
        &json!({ format!("{color}:1"): {}, deps_key.clone(): {} }),
    );
    let lock_path = config.with_file_name("devcontainer-lock.json");
    let path = root.to_str().unwrap();

    let output = envc(&store, &["lock", "--frozen", path]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("does not exist"),
        "{}",
        stderr(&output)
    );
    assert!(!lock_path.exists());

    assert!(envc(&store, &["lock", path]).status.success());
    let lock = read_lock(&lock_path);
    let expected = json!({"features": {
        format!("{color}:1"): {
            "version": "1.2.0",
            "resolved": format!("{color}@{v120}"),
            "integrity": v120,
        },
        deps_key.clone(): {
            "version": "2.0.0",
            "resolved": format!("{deps_key}@{deps_digest}"),
            "integrity": deps_digest,
            "dependsOn": [format!("{color}:1")],
        },
    }});
    assert_eq!(lock, expected);
    let text = std::fs::read_to_string(&lock_path).unwrap();
    assert!(text.ends_with("}\n"), "{text}");
    assert!(text.contains("\n  \"features\": {\n    \""), "{text}");
    assert!(envc(&store, &["lock", "--frozen", path]).status.success());

    // A newer `1` is published: the lockfile keeps the build on 1.2.0 until `envc lock`.
    let v130 = rt.block_on(features::publish(
        &client,
        &address,
        "team/color",
        &["1.3.0", "1.3", "1"],
        &feature("color", "1.3.0"),
    ));
    assert!(envc(&store, &["lock", "--frozen", path]).status.success());
    assert_eq!(read_lock(&lock_path), expected);
    let output = envc(&store, &["plan", "--frozen-lockfile", "--json", path]);
    if output.status.success() {
        let plan: Value = serde_json::from_slice(&output.stdout).unwrap();
        let versions: Vec<&str> = plan["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["version"].as_str().unwrap())
            .collect();
        assert_eq!(
            versions,
            ["1.2.0", "2.0.0"],
            "the plan follows the lockfile"
        );
    } else {
        // `plan` also resolves the base image from the seeded registry on 127.0.0.1:5000.
        assert!(
            stderr(&output).contains("base image"),
            "{}",
            stderr(&output)
        );
    }

    assert!(envc(&store, &["lock", path]).status.success());
    let lock = read_lock(&lock_path);
    assert_eq!(lock["features"][format!("{color}:1")]["version"], "1.3.0");
    assert_eq!(lock["features"][format!("{color}:1")]["integrity"], v130);

    // A Feature added to devcontainer.json and one removed: both named, nothing written.
    let before = std::fs::read_to_string(&lock_path).unwrap();
    project(
        &root,
        ".devcontainer/devcontainer.json",
        &json!({ format!("{color}:1.2"): {} }),
    );
    let output = envc(&store, &["lock", "--frozen", path]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains(&format!("`{color}:1.2` is not in the lockfile")),
        "{message}"
    );
    assert!(
        message.contains(&format!("`{deps_key}` is locked but no longer used")),
        "{message}"
    );
    assert!(
        message.contains(&format!("`{color}:1` is locked but no longer used")),
        "{message}"
    );
    assert_eq!(std::fs::read_to_string(&lock_path).unwrap(), before);

    // `--no-lockfile` neither reads nor writes it.
    std::fs::remove_file(&lock_path).unwrap();
    let output = envc(&store, &["plan", "--no-lockfile", path]);
    assert!(!lock_path.exists(), "{}", stderr(&output));
}

#[test]
fn a_locked_digest_is_fetched_by_digest_and_a_dotted_config_gets_a_dotted_lockfile() {
    let Some(registry) = TestRegistry::start() else {
        return;
    };
    let address = registry.address.clone();
    let client = RegistryClient::new(RegistryOptions::default());
    let rt = runtime();
    let old = rt.block_on(features::publish(
        &client,
        &address,
        "team/pin",
        &["1.0.0", "1"],
        &feature("pin", "1.0.0"),
    ));
    rt.block_on(features::publish(
        &client,
        &address,
        "team/pin",
        &["1.1.0", "1"],
        &feature("pin", "1.1.0"),
    ));

    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let root = tmp.path().join("project");
    let key = format!("{address}/team/pin:1");
    let config = project(&root, ".devcontainer.json", &json!({ key.clone(): {} }));
    let lock_path = config.with_file_name(".devcontainer-lock.json");
    // A hand-written lock pinning `:1` to the old manifest, keys in another order.
    std::fs::write(
        &lock_path,
        format!(
            r#"{{"features":{{"{key}":{{"integrity":"{old}","resolved":"{address}/team/pin@{old}","version":"1.0.0"}}}}}}"#
        ),
    )
    .unwrap();
    let path = root.to_str().unwrap();
    let output = envc(&store, &["lock", "--frozen", path]);
    assert!(output.status.success(), "{}", stderr(&output));

    // A digest the repository does not hold fails, naming the Feature and the way out.
    let missing = format!("sha256:{}", "0".repeat(64));
    std::fs::write(
        &lock_path,
        format!(
            r#"{{"features":{{"{key}":{{"version":"1.0.0","resolved":"{address}/team/pin@{missing}","integrity":"{missing}"}}}}}}"#
        ),
    )
    .unwrap();
    let output = envc(&store, &["lock", "--frozen", path]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.contains(&format!("Feature `{key}`")), "{message}");
    assert!(
        message.contains("which the registry no longer has"),
        "{message}"
    );
    assert!(message.contains(&missing), "{message}");
    assert!(message.contains("run `envc lock`"), "{message}");
}

#[test]
fn tags_resolve_against_the_tag_list() {
    let Some(registry) = TestRegistry::start() else {
        return;
    };
    let address = registry.address.clone();
    let client = RegistryClient::new(RegistryOptions::default());
    let rt = runtime();
    // Only full versions are published: no `1`, `1.2` or `latest` tags.
    let versions = [
        ("1.0.0", "1.0.0"),
        ("1.2.0", "1.2.0"),
        ("1.2.9", "1.2.9"),
        ("1.10.0", "1.10.0"),
        ("1.0.2-rc1", "1.0.2-rc1"),
        ("1.0.2_b", "1.0.2+b"),
        ("2.0.0-rc1", "2.0.0-rc1"),
    ];
    for (tag, version) in versions {
        rt.block_on(features::publish(
            &client,
            &address,
            "team/tool",
            &[tag],
            &feature("tool", version),
        ));
    }
    let tool = format!("{address}/team/tool");
    let wanted = [
        (format!("{tool}:1"), "1.10.0"),
        (format!("{tool}:1.2"), "1.2.9"),
        (format!("{tool}:1.2.0"), "1.2.0"),
        (format!("{tool}:1.0.2-rc1"), "1.0.2-rc1"),
        (format!("{tool}:1.0.2+b"), "1.0.2+b"),
        (format!("{tool}:latest"), "1.10.0"),
        (format!("{tool}:2.0.0-rc1"), "2.0.0-rc1"),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let root = tmp.path().join("project");
    let path = root.to_str().unwrap();
    // One config per reference: `:1` and `:latest` name one manifest, and the reference CLI
    // (and envc) install one manifest with one set of options once.
    for (reference, version) in &wanted {
        let config = project(
            &root,
            ".devcontainer/devcontainer.json",
            &json!({ reference.clone(): {} }),
        );
        assert!(envc(&store, &["lock", path]).status.success());
        let lock = read_lock(&config.with_file_name("devcontainer-lock.json"));
        assert_eq!(
            lock["features"][reference]["version"], *version,
            "{reference}"
        );
    }

    // No release of major 2, and no 1.3 at all: a clear error listing what there is.
    for missing in ["2", "1.3"] {
        project(
            &root,
            ".devcontainer/devcontainer.json",
            &json!({ format!("{tool}:{missing}"): {} }),
        );
        let output = envc(&store, &["lock", path]);
        assert_eq!(output.status.code(), Some(2));
        let message = stderr(&output);
        assert!(
            message.contains(&format!("no tag of `{tool}` matches `{missing}`")),
            "{message}"
        );
        assert!(message.contains("`1.10.0`"), "{message}");
    }
}
