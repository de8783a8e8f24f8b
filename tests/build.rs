//! End-to-end builds with the local engine against the seeded loopback registry: the anchor
//! project, reproducibility, reuse, and real Features from the devcontainers collection.

mod support;

use support::{can_build, json, run_in_image, stderr, Scratch, REGISTRY};

fn anchor(scratch: &Scratch) -> std::path::PathBuf {
    scratch.copy_project(&support::testdata().join("anchor-project"), "anchor")
}

#[test]
fn anchor_project_builds_pushes_and_runs() {
    if !can_build("anchor_project_builds_pushes_and_runs") {
        return;
    }
    let scratch = Scratch::new();
    let project = anchor(&scratch);
    let layout = scratch.path().join("layout");
    let push_ref = format!("{REGISTRY}/envc-test/anchor:{}", std::process::id());
    let output = scratch.envc(&[
        "build",
        project.to_str().unwrap(),
        "--push",
        &push_ref,
        "--output",
        &format!("oci:{}:anchor", layout.display()),
        "--json",
    ]);
    assert!(output.status.success(), "build failed: {}", stderr(&output));
    let result = json(&output);

    let features: Vec<&str> = result["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["feature"].as_str().unwrap())
        .collect();
    assert_eq!(
        features,
        [
            "base-user",
            "lib-common",
            "data-pack",
            "shell-env",
            "app-tool"
        ]
    );

    // The pushed manifest has the base layer and exactly five Feature layers.
    let inspect = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{push_ref}"),
        ])
        .output()
        .expect("skopeo runs");
    assert!(
        inspect.status.success(),
        "skopeo inspect failed: {}",
        stderr(&inspect)
    );
    let manifest: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 6, "base layer plus five Feature layers");
    let pushed_layers: Vec<&str> = layers[1..]
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    let built_layers: Vec<&str> = result["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert_eq!(pushed_layers, built_layers);

    let (code, out) = run_in_image(&layout, "anchor", "root", "data-pack-verify");
    assert_eq!(code, 0, "data-pack-verify failed: {out}");
    let (code, out) = run_in_image(&layout, "anchor", "root", "id -u dev");
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.trim(), "1001");
    let (code, out) = run_in_image(&layout, "anchor", "dev", "app-tool");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("app-tool 1.2.3"), "{out}");

    // No Feature file is left anywhere in the image.
    let (code, out) = run_in_image(
        &layout,
        "anchor",
        "root",
        "find / -xdev \\( -name devcontainer-feature.json -o -name install.sh \\) -print; \
         ls -A /tmp",
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.trim(),
        "",
        "Feature files or /tmp entries left in the image"
    );

    // The image environment carries every Feature's containerEnv, in order.
    let (_, out) = run_in_image(&layout, "anchor", "root", "echo $PATH; echo $APP_ENV $TZ");
    assert!(out.starts_with("/usr/local/share/data-pack/bin:"), "{out}");
    assert!(out.contains("bench UTC"), "{out}");
}

#[test]
fn two_builds_from_empty_stores_give_one_digest() {
    if !can_build("two_builds_from_empty_stores_give_one_digest") {
        return;
    }
    let scratch = Scratch::new();
    let project = anchor(&scratch);
    let path = project.to_str().unwrap();
    let first =
        scratch.envc_with_store(&scratch.path().join("store-a"), &["build", path, "--json"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let second =
        scratch.envc_with_store(&scratch.path().join("store-b"), &["build", path, "--json"]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(json(&first)["digest"], json(&second)["digest"]);
    let digests = |v: &serde_json::Value| -> Vec<String> {
        v["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].to_string())
            .collect()
    };
    assert_eq!(digests(&json(&first)), digests(&json(&second)));
}

#[test]
fn rebuild_reruns_only_what_changed() {
    if !can_build("rebuild_reruns_only_what_changed") {
        return;
    }
    let scratch = Scratch::new();
    let project = anchor(&scratch);
    let path = project.to_str().unwrap();
    let first = scratch.envc(&["build", path, "--json"]);
    assert!(first.status.success(), "{}", stderr(&first));

    let unchanged = scratch.envc(&["build", path, "--json", "--progress", "plain"]);
    assert!(unchanged.status.success(), "{}", stderr(&unchanged));
    assert_eq!(json(&unchanged)["digest"], json(&first)["digest"]);
    assert!(
        !stderr(&unchanged).contains("running install script"),
        "a script ran"
    );

    // Change one option of the last Feature: only app-tool runs again.
    let config_path = project.join(".devcontainer/devcontainer.json");
    let text = std::fs::read_to_string(&config_path).unwrap();
    let changed = text.replace("\"debug\": false", "\"debug\": true");
    assert_ne!(changed, text);
    std::fs::write(&config_path, changed).unwrap();
    let rebuilt = scratch.envc(&["build", path, "--json", "--progress", "plain"]);
    assert!(rebuilt.status.success(), "{}", stderr(&rebuilt));
    let cached: Vec<(String, bool)> = json(&rebuilt)["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["feature"].as_str().unwrap().to_string(),
                l["cached"].as_bool().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, bool)> = [
        ("base-user", true),
        ("lib-common", true),
        ("data-pack", true),
        ("shell-env", true),
        ("app-tool", false),
    ]
    .iter()
    .map(|(f, c)| (f.to_string(), *c))
    .collect();
    assert_eq!(cached, expected);
    assert_eq!(
        stderr(&rebuilt).matches("running install script").count(),
        1
    );
    assert_ne!(json(&rebuilt)["digest"], json(&first)["digest"]);
}

#[test]
fn common_utils_and_git_install_from_debian() {
    if !can_build("common_utils_and_git_install_from_debian") {
        return;
    }
    let scratch = Scratch::new();
    let project = scratch.path().join("real");
    let features = project.join(".devcontainer/features");
    std::fs::create_dir_all(&features).unwrap();
    let corpus = support::testdata().join("features/devcontainers");
    support::copy_tree(&corpus.join("common-utils"), &features.join("common-utils"));
    support::copy_tree(&corpus.join("git"), &features.join("git"));
    std::fs::write(
        project.join(".devcontainer/devcontainer.json"),
        format!(
            r#"{{
    "image": "{REGISTRY}/debian:bookworm",
    "features": {{
        // Oh My Zsh comes from GitHub, which this machine cannot reach.
        "./features/common-utils": {{ "installOhMyZsh": false, "upgradePackages": false }},
        "./features/git": {{}}
    }}
}}"#
        ),
    )
    .unwrap();
    let layout = scratch.path().join("layout");
    let output = scratch.envc(&[
        "build",
        project.to_str().unwrap(),
        "--network",
        "host",
        "--output",
        &format!("oci:{}:real", layout.display()),
        "--json",
    ]);
    assert!(output.status.success(), "build failed: {}", stderr(&output));
    let features: Vec<String> = json(&output)["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["feature"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(features, ["common-utils", "git"]);

    let (code, out) = run_in_image(&layout, "real", "vscode", "id -un; git --version");
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("vscode\n"), "{out}");
    assert!(out.contains("git version"), "{out}");
}

#[test]
fn unchanged_rebuild_with_push_pushes_nothing() {
    if !can_build("unchanged_rebuild_with_push_pushes_nothing") {
        return;
    }
    let scratch = Scratch::new();
    let project = anchor(&scratch);
    let push_ref = format!("{REGISTRY}/envc-test/anchor-noop:{}", std::process::id());
    let build = || {
        let output = scratch.envc(&[
            "build",
            project.to_str().unwrap(),
            "--push",
            &push_ref,
            "--progress",
            "plain",
            "--json",
        ]);
        assert!(output.status.success(), "build failed: {}", stderr(&output));
        output
    };

    let first = build();
    assert!(stderr(&first).contains("pushed "), "{}", stderr(&first));
    let second = build();
    let log = stderr(&second);
    assert!(log.contains("image is up to date"), "{log}");
    assert!(log.contains("is up to date, nothing pushed"), "{log}");
    assert!(!log.contains("\npushed "), "{log}");
    let (first, second) = (json(&first), json(&second));
    assert_eq!(second["upToDate"], true);
    assert_eq!(first["pushed"], second["pushed"]);
}
