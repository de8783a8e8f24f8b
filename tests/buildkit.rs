//! The BuildKit engine against a real BuildKit: the Docker 26 daemon that
//! `scripts/buildkit.sh start` runs with the containerd snapshotter, and the loopback registry.
//!
//! The daemon's address comes from `ENVC_BUILDKIT_ADDR` (default
//! `docker:///var/lib/envc-ci/buildkit/docker.sock`). Without a daemon, root, runc or the
//! seeded registry, each test prints why and passes, except under CI (`CI` set), where it fails.
//! The tests prune BuildKit's cache, so they hold one lock and run one at a time.

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use envc::engine::buildkit::client::Client;
use envc::engine::buildkit::connect::Address;
use sha2::Digest as _;
use support::{json, stderr, testdata, Scratch, REGISTRY};

const DEFAULT_ADDR: &str = "docker:///var/lib/envc-ci/buildkit/docker.sock";

/// Held by each test: pruning the daemon's cache would disturb a build running beside it.
static DAEMON: Mutex<()> = Mutex::new(());

/// Returns the daemon's address when the tests can run here; otherwise `None` after saying
/// why, or a panic under CI.
fn daemon(test: &str) -> Option<String> {
    let address = std::env::var("ENVC_BUILDKIT_ADDR").unwrap_or_else(|_| DEFAULT_ADDR.into());
    let reachable = runtime().block_on(async {
        let parsed = Address::parse(&address).map_err(|e| e.to_string())?;
        Client::connect(&parsed, None)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    if let Err(reason) = reachable {
        let message = format!(
            "{test}: needs BuildKit at `{address}` (run `scripts/buildkit.sh start`): {reason}"
        );
        if std::env::var_os("CI").is_some() {
            panic!("{message}");
        }
        eprintln!("skipped {message}");
        return None;
    }
    support::can_build(test).then_some(address)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// Removes everything BuildKit keeps in its cache.
fn prune(address: &str) {
    runtime().block_on(async {
        let client = Client::connect(&Address::parse(address).unwrap(), None)
            .await
            .expect("connect to BuildKit");
        client.prune_all().await.expect("prune BuildKit's cache");
    });
}

/// Returns a name no other run uses.
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn anchor(scratch: &Scratch) -> PathBuf {
    scratch.copy_project(&testdata().join("anchor-project"), "anchor-project")
}

/// Runs `envc build PROJECT --engine buildkit ... --json` with `store` and returns the result,
/// asserting success.
fn build_buildkit(
    scratch: &Scratch,
    store: &Path,
    project: &Path,
    address: &str,
    extra: &[&str],
) -> serde_json::Value {
    let project = project.to_string_lossy();
    let mut args = vec![
        "build",
        project.as_ref(),
        "--engine",
        "buildkit",
        "--buildkit-addr",
        address,
        "--json",
        "--progress",
        "plain",
    ];
    args.extend(extra);
    let started = Instant::now();
    let output = scratch.envc_with_store(store, &args);
    eprintln!("build took {:.2}s", started.elapsed().as_secs_f64());
    assert!(output.status.success(), "{}", stderr(&output));
    json(&output)
}

/// What a layer entry is, without its times.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: String,
    mode: u32,
    uid: u64,
    gid: u64,
    content: String,
    link: String,
}

/// Reads the entries of layer blob `digest` in `store`, by path.
fn layer_entries(store: &Path, digest: &str) -> BTreeMap<String, Entry> {
    let hex = digest.strip_prefix("sha256:").unwrap();
    let file = std::fs::File::open(store.join("oci/blobs/sha256").join(hex)).unwrap();
    let mut archive = tar::Archive::new(flate2::read::MultiGzDecoder::new(file));
    let mut entries = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry =
            entry.unwrap_or_else(|e| panic!("layer `{digest}` in `{}`: {e}", store.display()));
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let path = path
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        let header = entry.header().clone();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        let link = entry
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default();
        entries.insert(
            path,
            Entry {
                kind: format!("{:?}", header.entry_type()),
                mode: header.mode().unwrap() & 0o7777,
                uid: header.uid().unwrap(),
                gid: header.gid().unwrap(),
                content: hex::encode(sha2::Sha256::digest(&bytes)),
                link,
            },
        );
    }
    entries
}

fn layer_digests(result: &serde_json::Value) -> Vec<String> {
    result["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

fn features(result: &serde_json::Value) -> Vec<String> {
    result["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["feature"].as_str().unwrap().to_string())
        .collect()
}

fn manifest_layers(store: &Path, digest: &str) -> Vec<serde_json::Value> {
    let hex = digest.strip_prefix("sha256:").unwrap();
    let bytes = std::fs::read(store.join("oci/blobs/sha256").join(hex)).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    manifest["layers"].as_array().unwrap().clone()
}

#[test]
fn anchor_layers_match_local_engine() {
    let _daemon = DAEMON.lock().unwrap_or_else(|e| e.into_inner());
    let Some(address) = daemon("anchor_layers_match_local_engine") else {
        return;
    };
    let scratch = Scratch::new();
    let project = anchor(&scratch);
    let target = format!("{REGISTRY}/envc-test/{}:latest", unique("bk-anchor"));
    let layout = scratch.path().join("layout");
    let output = format!("oci:{}:bk", layout.display());
    let buildkit_store = scratch.path().join("buildkit-store");
    let built = build_buildkit(
        &scratch,
        &buildkit_store,
        &project,
        &address,
        &["--push", &target, "--output", &output],
    );
    let digest = built["digest"].as_str().unwrap().to_string();
    assert_eq!(
        built["pushed"][0].as_str().unwrap(),
        format!("{target}@{digest}"),
        "BuildKit pushed the imported image"
    );
    assert!(support::registry_has(
        target.rsplit_once(':').unwrap().0,
        "latest"
    ));

    let local_store = scratch.path().join("local-store");
    let project_arg = project.to_string_lossy().into_owned();
    let local = scratch.envc_with_store(&local_store, &["build", &project_arg, "--json"]);
    assert!(local.status.success(), "{}", stderr(&local));
    let local = json(&local);

    let order = [
        "base-user",
        "lib-common",
        "data-pack",
        "shell-env",
        "app-tool",
    ];
    assert_eq!(features(&built), order);
    assert_eq!(features(&local), order);
    let all = manifest_layers(&buildkit_store, &digest);
    let base = manifest_layers(&local_store, local["digest"].as_str().unwrap()).len() - 5;
    assert_eq!(all.len(), base + 5, "five Feature layers after the base");
    for layer in &all[base..] {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
    }
    let built_layers: Vec<String> = all[base..]
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(layer_digests(&built), built_layers);

    for (index, (ours, theirs)) in layer_digests(&built)
        .iter()
        .zip(layer_digests(&local))
        .enumerate()
    {
        let from_buildkit = layer_entries(&buildkit_store, ours);
        let from_local = layer_entries(&local_store, &theirs);
        let feature = order[index];
        for path in from_buildkit.keys() {
            assert!(
                !path.starts_with(".envc") && !path.ends_with("devcontainer-feature.json"),
                "layer of {feature} has `{path}`"
            );
        }
        // Entry for entry, unchanged copy-ups (useradd and `/etc/.pwd.lock`) included: the
        // local engine leaves them out as BuildKit's differ does.
        let only_buildkit: Vec<_> = from_buildkit
            .keys()
            .filter(|p| !from_local.contains_key(*p))
            .collect();
        let only_local: Vec<_> = from_local
            .keys()
            .filter(|p| !from_buildkit.contains_key(*p))
            .collect();
        assert!(
            only_buildkit.is_empty() && only_local.is_empty(),
            "layer of {feature}: only in BuildKit's: {only_buildkit:?}, \
             only in the local engine's: {only_local:?}"
        );
        for (path, entry) in &from_local {
            assert_eq!(&from_buildkit[path], entry, "layer of {feature}, `{path}`");
        }
    }

    let (code, text) = support::run_in_image(&layout, "bk", "dev", "app-tool");
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("app-tool 1.2.3"), "{text}");
}

#[test]
fn cache_and_cold_builds_one_digest() {
    let _daemon = DAEMON.lock().unwrap_or_else(|e| e.into_inner());
    let Some(address) = daemon("cache_and_cold_builds_one_digest") else {
        return;
    };
    let scratch = Scratch::new();
    let project = anchor(&scratch);
    let cache = format!("{REGISTRY}/envc-test/{}/cache", unique("bk-cache"));
    let cache_to = format!("type=registry,ref={cache},mode=max");

    prune(&address);
    let first = build_buildkit(
        &scratch,
        &scratch.path().join("store-1"),
        &project,
        &address,
        &["--cache-to", &cache_to],
    );
    let digest = first["digest"].as_str().unwrap();
    assert!(first["layers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["cached"] == false));

    prune(&address);
    let cached = build_buildkit(
        &scratch,
        &scratch.path().join("store-2"),
        &project,
        &address,
        &["--cache-from", &cache],
    );
    assert_eq!(cached["digest"], digest, "the same image from the cache");
    for layer in cached["layers"].as_array().unwrap() {
        assert_eq!(layer["cached"], true, "{layer}");
    }

    prune(&address);
    let cold = build_buildkit(
        &scratch,
        &scratch.path().join("store-3"),
        &project,
        &address,
        &[],
    );
    assert_eq!(cold["digest"], digest, "two cold builds give one digest");
}

#[test]
fn cache_import_missing_warns() {
    let _daemon = DAEMON.lock().unwrap_or_else(|e| e.into_inner());
    let Some(address) = daemon("cache_import_missing_warns") else {
        return;
    };
    let scratch = Scratch::new();
    let project = anchor(&scratch);
    let missing = format!("{REGISTRY}/envc-test/{}/cache", unique("bk-missing"));
    let project_arg = project.to_string_lossy().into_owned();
    let output = scratch.envc(&[
        "build",
        &project_arg,
        "--engine",
        "buildkit",
        "--buildkit-addr",
        &address,
        "--cache-from",
        &missing,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(&format!("cache `{missing}` does not exist yet")),
        "{}",
        stderr(&output)
    );
}

#[test]
fn failing_script_names_feature() {
    let _daemon = DAEMON.lock().unwrap_or_else(|e| e.into_inner());
    let Some(address) = daemon("failing_script_names_feature") else {
        return;
    };
    let scratch = Scratch::new();
    let project = scratch.path().join("failing");
    let feature = project.join(".devcontainer/broken");
    std::fs::create_dir_all(&feature).unwrap();
    std::fs::write(
        feature.join("devcontainer-feature.json"),
        r#"{"id": "broken", "version": "1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(
        feature.join("install.sh"),
        "#!/bin/sh\necho about to fail\necho on stderr >&2\nexit 3\n",
    )
    .unwrap();
    std::fs::write(
        project.join(".devcontainer/devcontainer.json"),
        format!(r#"{{"image": "{REGISTRY}/busybox:latest", "features": {{"./broken": {{}}}}}}"#),
    )
    .unwrap();

    let project_arg = project.to_string_lossy().into_owned();
    let output = scratch.envc(&[
        "build",
        &project_arg,
        "--engine",
        "buildkit",
        "--buildkit-addr",
        &address,
        "--no-cache",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(text.contains("Feature `broken` failed"), "{text}");
    assert!(text.contains("exited with code 3"), "{text}");
    assert!(text.contains("devcontainer.json"), "{text}");
    assert!(text.contains("about to fail"), "{text}");
    assert!(text.contains("on stderr"), "{text}");
}

/// The Dockerfile fixture: stage `dev` of a three-stage Dockerfile (an `ARG` before `FROM`,
/// build args, a `.dockerignore`) is built by BuildKit's Dockerfile frontend, and its two
/// Features go on top as one layer each. The image runs and contains the stage's files, not the
/// ignored or later-stage ones, and two builds from empty caches give the same digest.
#[test]
fn dockerfile_stage_with_features() {
    let _daemon = DAEMON.lock().unwrap_or_else(|e| e.into_inner());
    let Some(address) = daemon("dockerfile_stage_with_features") else {
        return;
    };
    let scratch = Scratch::new();
    let project = scratch.copy_project(&testdata().join("dockerfile-project"), "dockerfile");

    // The local engine rejects the source at its line, before fetching anything.
    let project_arg = project.to_string_lossy().into_owned();
    let local = scratch.envc(&["build", &project_arg]);
    assert_eq!(local.status.code(), Some(2), "{}", stderr(&local));
    assert!(
        stderr(&local).contains("devcontainer.json:5:5: `build`: Dockerfile sources"),
        "{}",
        stderr(&local)
    );
    assert!(
        stderr(&local).contains("--engine buildkit"),
        "{}",
        stderr(&local)
    );

    prune(&address);
    let layout = scratch.path().join("layout");
    let output = format!("oci:{}:dev", layout.display());
    let first_store = scratch.path().join("store-1");
    let first = build_buildkit(
        &scratch,
        &first_store,
        &project,
        &address,
        &["--output", &output],
    );
    assert_eq!(features(&first), ["greeter", "marker"]);
    let layers = manifest_layers(&first_store, first["digest"].as_str().unwrap());
    let built = layer_digests(&first);
    // The stage's layers (base, RUN, COPY, RUN, and WORKDIR's empty one), then one layer per
    // Feature.
    assert_eq!(layers.len(), 5 + 2, "{layers:?}");
    let last: Vec<&str> = layers[5..]
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert_eq!(last, built.iter().map(String::as_str).collect::<Vec<_>>());

    let checks = "greet; cat /etc/marker; echo \"home=$TOOLS_HOME project=$PROJECT\"; \
                  ls /opt/tools/context; \
                  test -e /etc/release || echo no-release; \
                  test -e /opt/tools/context/secret.txt || echo no-secret; \
                  test -e /opt/tools/context/notes.tmp || echo no-tmp; \
                  test -e /.envc || echo no-envc";
    let (code, text) = support::run_in_image(&layout, "dev", "root", checks);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("hello from the Dockerfile, envc"), "{text}");
    assert!(text.contains("tool 2.5"), "{text}");
    assert!(
        text.contains("home=/opt/tools project=dockerfile-project"),
        "{text}"
    );
    assert!(text.contains("included.txt"), "{text}");
    for absent in ["no-release", "no-secret", "no-tmp", "no-envc"] {
        assert!(text.contains(absent), "{absent}: {text}");
    }

    // From empty caches again: the same stage, the same image.
    prune(&address);
    let second_store = scratch.path().join("store-2");
    let second = build_buildkit(&scratch, &second_store, &project, &address, &[]);
    assert_eq!(first["digest"], second["digest"]);
}
