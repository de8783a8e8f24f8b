//! What a built image holds matches what the reference CLI would produce: option values reach
//! install scripts byte for byte, and the anchor project's `devcontainer.metadata` label and
//! `Env` are the reference's. Needs root, runc, umoci and the seeded registry on
//! 127.0.0.1:5000 (skipped with the reason printed otherwise, failed under `CI`).

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde_json::{json, Value};
use support::{can_build, json as result_json, stderr, Scratch, REGISTRY};

/// The option values tested, by option id.
fn values() -> Vec<(&'static str, &'static str)> {
    vec![
        ("spaces", "two  words and a trailing space "),
        ("quotes", r#"it's "quoted" and 'single'"#),
        ("backslashes", r"C:\path\to\n and \\ and \"),
        ("dollars", "$HOME ${PATH} $(id) $1 $"),
        ("backticks", "`id` and `echo hi`"),
        ("newlines", "line one\nline two\n\nend\r\n"),
        ("unicode", "grüße ✓ 日本語 🚀"),
        ("empty", ""),
        ("shellish", "; rm -rf / # && || > /tmp/x < | * ? [a] ~"),
    ]
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let (algorithm, hex) = digest.split_once(':').unwrap();
    std::fs::read(layout.join("blobs").join(algorithm).join(hex)).unwrap()
}

/// The manifest and config of the only image in the OCI layout `layout`.
fn image(layout: &Path) -> (Value, Value) {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: Value = serde_json::from_slice(&blob(layout, digest)).unwrap();
    let config = blob(layout, manifest["config"]["digest"].as_str().unwrap());
    (manifest, serde_json::from_slice(&config).unwrap())
}

/// The regular files of a (gzip or plain) layer blob, by path.
fn layer_files(bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
    let reader: Box<dyn Read> = if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::GzDecoder::new(bytes))
    } else {
        Box::new(bytes)
    };
    let mut archive = tar::Archive::new(reader);
    let mut files = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut body = Vec::new();
        entry.read_to_end(&mut body).unwrap();
        files.insert(path.trim_start_matches("./").to_string(), body);
    }
    files
}

#[test]
fn option_values_reach_the_install_script_byte_for_byte() {
    if !can_build("option_values_reach_the_install_script_byte_for_byte") {
        return;
    }
    let scratch = Scratch::new();
    let root = scratch.path().join("project");
    let dir = root.join(".devcontainer/features/echo-options");
    std::fs::create_dir_all(&dir).unwrap();

    let mut declared = serde_json::Map::new();
    let mut given = serde_json::Map::new();
    let mut script = String::from("#!/bin/sh\nset -e\nmkdir -p /opt/values\n");
    for (id, value) in values() {
        declared.insert(id.into(), json!({"type": "string", "default": "unset"}));
        given.insert(id.into(), json!(value));
        let name = id.to_uppercase();
        script.push_str(&format!("printf '%s' \"${name}\" > /opt/values/{name}\n"));
    }
    let metadata = json!({"id": "echo-options", "version": "1.0.0", "options": declared});
    std::fs::write(dir.join("devcontainer-feature.json"), metadata.to_string()).unwrap();
    std::fs::write(dir.join("install.sh"), script).unwrap();
    let config = json!({
        "image": format!("{REGISTRY}/busybox:latest"),
        "features": {"./features/echo-options": given},
    });
    std::fs::write(
        root.join(".devcontainer/devcontainer.json"),
        serde_json::to_string_pretty(&config).unwrap(),
    )
    .unwrap();

    let layout = scratch.path().join("layout");
    let output = scratch.envc(&[
        "build",
        root.to_str().unwrap(),
        "--output",
        &format!("oci:{}:values", layout.display()),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));

    let (manifest, _) = image(&layout);
    let layers = manifest["layers"].as_array().unwrap();
    let last = layers.last().unwrap()["digest"].as_str().unwrap();
    let files = layer_files(&blob(&layout, last));
    for (id, value) in values() {
        let path = format!("opt/values/{}", id.to_uppercase());
        let written = files
            .get(&path)
            .unwrap_or_else(|| panic!("`{path}` is not in the layer: {:?}", files.keys()));
        assert_eq!(
            String::from_utf8_lossy(written),
            value,
            "option `{id}` changed on its way to the script"
        );
        assert_eq!(written.as_slice(), value.as_bytes());
    }
}

#[test]
fn the_anchor_image_has_the_reference_label_and_env() {
    if !can_build("the_anchor_image_has_the_reference_label_and_env") {
        return;
    }
    let scratch = Scratch::new();
    let project = scratch.copy_project(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/anchor-project"),
        "anchor",
    );
    let layout = scratch.path().join("layout");
    let output = scratch.envc(&[
        "build",
        project.to_str().unwrap(),
        "--json",
        "--output",
        &format!("oci:{}:anchor", layout.display()),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let _ = result_json(&output);

    let (_, config) = image(&layout);
    let label = config["config"]["Labels"]["devcontainer.metadata"]
        .as_str()
        .expect("the image has a devcontainer.metadata label");
    // The debian base has no label of its own; each Feature entry is its id as written (no
    // Feature sets a property the reference keeps), then the devcontainer.json entry with
    // the reference's property order and raw values.
    let expected = json!([
        {"id": "./features/base-user"},
        {"id": "./features/lib-common"},
        {"id": "./features/data-pack"},
        {"id": "./features/shell-env"},
        {"id": "./features/app-tool"},
        {
            "customizations": {"vscode": {"extensions": ["rust-lang.rust-analyzer"]}},
            "containerEnv": {"APP_ENV": "bench", "TZ": "UTC"},
            "remoteUser": "dev"
        }
    ]);
    // The reference writes one entry per Dockerfile line; Docker joins the lines, which leaves
    // `[ `, `, ` between entries and ` ]`.
    let entries: Vec<String> = expected
        .as_array()
        .unwrap()
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    assert_eq!(label, format!("[ {} ]", entries.join(", ")));
    let parsed: Value = serde_json::from_str(label).unwrap();
    assert_eq!(parsed, expected);

    let env: Vec<&str> = config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        env,
        [
            "PATH=/usr/local/share/data-pack/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "BASE_USER_CONF=/usr/local/etc/base-user.conf",
            "DATA_PACK_HOME=/usr/local/share/data-pack",
            "APP_TOOL_HOME=/usr/local/share/app-tool",
            "APP_ENV=bench",
            "TZ=UTC",
        ]
    );
}
