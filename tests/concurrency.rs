//! Builds that share a store while they run, builds stopped midway, and the store's own
//! requirements, through the envc binary against the seeded loopback registry.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{can_build, json, stderr, store_leftovers, write_project, Scratch, REGISTRY};

/// Two Features in a fixed order: `a` writes files, `b` waits and then copies them, so a
/// build spends seconds in `b` with `a`'s snapshot mounted below it.
fn two_step_project(scratch: &Scratch, name: &str, b_extra: &str) -> PathBuf {
    let config = format!(
        "{{\n  \"image\": \"{REGISTRY}/busybox:latest\",\n  \"features\": {{\n    \
         \"./features/a\": {{}},\n    \"./features/b\": {{}}\n  }},\n  \
         \"overrideFeatureInstallOrder\": [\"./features/a\", \"./features/b\"]\n}}\n"
    );
    let a = "#!/bin/sh\nsleep 1\nmkdir -p /adir\necho a-content > /adir/file\n";
    let b = format!("#!/bin/sh\nsleep 3\ncp -r /adir /bdir\necho {b_extra}\n");
    write_project(
        scratch,
        name,
        &config,
        &[
            ("a", r#"{"id": "a", "version": "1.0.0"}"#, a),
            ("b", r#"{"id": "b", "version": "1.0.0"}"#, &b),
        ],
    )
}

fn one_feature_project(scratch: &Scratch, name: &str, script: &str) -> PathBuf {
    let config = format!(
        "{{\n  \"image\": \"{REGISTRY}/busybox:latest\",\n  \
         \"features\": {{ \"./features/f\": {{}} }}\n}}\n"
    );
    write_project(
        scratch,
        name,
        &config,
        &[("f", r#"{"id": "f", "version": "1.0.0"}"#, script)],
    )
}

fn spawn_build(store: &Path, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_envc"))
        .args(args)
        .env("ENVC_STORE", store)
        .env_remove("SOURCE_DATE_EPOCH")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("envc starts")
}

/// Lists the entry names of the gzip layer blob `digest` in `store`.
fn layer_listing(store: &Path, digest: &str) -> String {
    let blob = store
        .join("oci/blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap());
    let listing = Command::new("tar").arg("-tzf").arg(&blob).output().unwrap();
    assert!(listing.status.success(), "tar cannot list `{digest}`");
    String::from_utf8_lossy(&listing.stdout).into_owned()
}

/// Two builds of one project share a store and both run step `a`. The one that finishes it
/// second must not take away the snapshot the other build has mounted below step `b`.
#[test]
fn concurrent_builds_keep_lower_snapshot() {
    if !can_build("concurrent_builds_keep_lower_snapshot") {
        return;
    }
    let scratch = Scratch::new();
    let root = two_step_project(&scratch, "race", "b-done");
    let root_arg = root.to_str().unwrap();
    // Fetch the base first, so both builds reach step `a` at about the same time.
    let warm = write_project(
        &scratch,
        "warm",
        &format!("{{ \"image\": \"{REGISTRY}/busybox:latest\" }}"),
        &[],
    );
    assert!(scratch
        .envc(&["build", warm.to_str().unwrap()])
        .status
        .success());

    let store = scratch.store();
    let first = spawn_build(&store, &["build", root_arg, "--tag", "p1:1", "--json"]);
    std::thread::sleep(Duration::from_millis(500));
    let second = spawn_build(&store, &["build", root_arg, "--tag", "p2:1", "--json"]);
    for (name, child) in [("first", first), ("second", second)] {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "the {name} build failed:\n{}",
            stderr(&output)
        );
        let layer = json(&output)["layers"][1]["digest"]
            .as_str()
            .unwrap()
            .to_string();
        let entries = layer_listing(&store, &layer);
        assert!(
            entries.contains("bdir/file"),
            "the {name} build's layer of `b` lacks bdir/file: {entries}"
        );
    }
}

/// A `--no-cache` rebuild of step `a` while another build runs step `b` over `a`'s snapshot:
/// the other build still reads `a`'s files, so the layer it records under `b`'s key is right.
#[test]
fn no_cache_rebuild_keeps_concurrent_layer() {
    if !can_build("no_cache_rebuild_keeps_concurrent_layer") {
        return;
    }
    let scratch = Scratch::new();
    let original = two_step_project(&scratch, "original", "first");
    let changed = two_step_project(&scratch, "changed", "second");
    assert!(scratch
        .envc(&["build", original.to_str().unwrap()])
        .status
        .success());

    let store = scratch.store();
    let building = spawn_build(&store, &["build", changed.to_str().unwrap(), "--json"]);
    std::thread::sleep(Duration::from_millis(1000));
    let rebuild = scratch.envc(&["build", original.to_str().unwrap(), "--no-cache"]);
    assert!(rebuild.status.success(), "{}", stderr(&rebuild));
    let output = building.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let layer = json(&output)["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let entries = layer_listing(&store, &layer);
    assert!(
        entries.contains("bdir/file"),
        "step `b` ran while `a`'s snapshot was replaced; its layer lacks bdir/file: {entries}"
    );

    // What was recorded is what a fresh build of `changed` makes.
    let again = scratch.envc(&["build", changed.to_str().unwrap(), "--json"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(json(&again)["layers"][1]["digest"], layer.as_str());
}

/// Ctrl-C while a big layer is written and compressed: envc stops within seconds, exits 130
/// and leaves no record, tag, work folder or mount behind.
#[test]
fn interrupt_while_writing_a_layer_stops_promptly() {
    if !can_build("interrupt_while_writing_a_layer_stops_promptly") {
        return;
    }
    use std::io::{BufRead, BufReader};

    let scratch = Scratch::new();
    let script = "#!/bin/sh\nhead -c 200000000 /dev/urandom > /big\necho written\n";
    let root = one_feature_project(&scratch, "big", script);
    let mut child = Command::new(env!("CARGO_BIN_EXE_envc"))
        .args(["build", root.to_str().unwrap(), "--progress", "plain"])
        .env("ENVC_STORE", scratch.store())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("written") {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(500));

    let sent = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    let waited = sent.elapsed();

    assert_eq!(status.code(), Some(130), "{rest:?}");
    assert!(
        waited < Duration::from_secs(10),
        "envc took {waited:?} to stop after Ctrl-C: {rest:?}"
    );
    assert_eq!(store_leftovers(&scratch.store()), Vec::<String>::new());
}

/// A store path with a comma, where overlayfs would split its options: the error names the
/// path and tells the user to move the store (exit 2, invalid input), not to load a module.
#[test]
fn store_path_with_comma_is_named() {
    if !can_build("store_path_with_comma_is_named") {
        return;
    }
    let scratch = Scratch::new();
    let root = one_feature_project(&scratch, "comma", "#!/bin/sh\ntrue\n");
    let store = scratch.path().join("store,with,commas");
    let output = scratch.envc_with_store(&store, &["build", root.to_str().unwrap()]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(!text.contains("modprobe"), "{text}");
    assert!(text.contains("store,with,commas"), "{text}");
    assert!(text.contains("plain path"), "{text}");
}

/// Layer blobs that envc writes can be read by every user, so an exported layout or a copied
/// store works for someone other than root.
#[test]
fn layer_blobs_are_readable_by_everyone() {
    if !can_build("layer_blobs_are_readable_by_everyone") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;

    let scratch = Scratch::new();
    let root = one_feature_project(&scratch, "modes", "#!/bin/sh\necho hi > /hi\n");
    let output = scratch.envc(&["build", root.to_str().unwrap(), "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let layer = json(&output)["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let blob = scratch
        .store()
        .join("oci/blobs/sha256")
        .join(layer.strip_prefix("sha256:").unwrap());
    let mode = std::fs::metadata(&blob).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644, "layer blob `{layer}`");
}
