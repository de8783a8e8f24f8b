//! Outputs, tags and the store: bad destinations are rejected before any work, a failed
//! output leaves no tag, and a damaged store blob is noticed.

mod support;

use std::path::{Path, PathBuf};

use support::{can_build, json, stderr, store_leftovers, write_project, Scratch, REGISTRY};

fn tags(store: &Path) -> Vec<String> {
    store_leftovers(store)
        .into_iter()
        .filter(|entry| entry.starts_with("tag "))
        .collect()
}

fn one_feature_project(scratch: &Scratch, name: &str, script: &str) -> PathBuf {
    let config = format!(
        "{{\n  \"image\": \"{REGISTRY}/busybox:latest\",\n  \"features\": {{ \"./features/f\": {{}} }}\n}}\n"
    );
    write_project(
        scratch,
        name,
        &config,
        &[("f", r#"{"id": "f", "version": "1.0.0"}"#, script)],
    )
}

/// An `--output` that names a file is rejected before the build, and no tag is written.
#[test]
fn failed_output_leaves_no_tag() {
    if !can_build("failed_output_leaves_no_tag") {
        return;
    }
    let scratch = Scratch::new();
    let root = one_feature_project(&scratch, "out", "#!/bin/sh\necho hi > /hi\n");
    let not_a_folder = scratch.path().join("a-file");
    std::fs::write(&not_a_folder, "not a layout").unwrap();
    let output_arg = format!("oci:{}", not_a_folder.display());
    let output = scratch.envc(&[
        "build",
        root.to_str().unwrap(),
        "--tag",
        "must-not-exist:1",
        "--output",
        &output_arg,
    ]);
    assert_ne!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(tags(&scratch.store()), Vec::<String>::new());
}

/// A build whose push fails (nothing listens on the port) exits 1 and writes no tag.
#[test]
fn failed_push_leaves_no_tag() {
    if !can_build("failed_push_leaves_no_tag") {
        return;
    }
    let scratch = Scratch::new();
    let root = one_feature_project(&scratch, "push", "#!/bin/sh\necho hi > /hi\n");
    let output = scratch.envc(&[
        "build",
        root.to_str().unwrap(),
        "--tag",
        "must-not-exist:1",
        "--push",
        "127.0.0.1:9/nothing/here:1",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(tags(&scratch.store()), Vec::<String>::new());
}

/// `--output oci:DIR` into a folder with other files and no `oci-layout` is invalid input, and
/// nothing is written into the folder.
#[test]
fn output_into_foreign_folder_rejected() {
    if !can_build("output_into_foreign_folder_rejected") {
        return;
    }
    let scratch = Scratch::new();
    let root = one_feature_project(&scratch, "foreign", "#!/bin/sh\necho hi > /hi\n");
    let folder = scratch.path().join("mine");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("index.json"), "my own notes").unwrap();
    let output_arg = format!("oci:{}", folder.display());
    let output = scratch.envc(&["build", root.to_str().unwrap(), "--output", &output_arg]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(!text.contains("store entry"), "{text}");
    let mut names: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["index.json".to_string()]);
}

/// A layer blob truncated after a build is replaced by the good copy when `--no-cache` makes
/// the layer again.
#[test]
fn damaged_blob_is_detected_or_replaced() {
    if !can_build("damaged_blob_is_detected_or_replaced") {
        return;
    }
    let scratch = Scratch::new();
    let root = one_feature_project(&scratch, "damaged", "#!/bin/sh\necho hi > /hi\n");
    let output = scratch.envc(&["build", root.to_str().unwrap(), "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let layer = json(&output)["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let hex = layer.strip_prefix("sha256:").unwrap().to_string();
    let blob = scratch.store().join("oci/blobs/sha256").join(&hex);
    let size = std::fs::metadata(&blob).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&blob)
        .unwrap()
        .set_len(size / 2)
        .unwrap();

    let rebuild = scratch.envc(&["build", root.to_str().unwrap(), "--no-cache"]);
    assert!(rebuild.status.success(), "{}", stderr(&rebuild));
    let bytes = std::fs::read(&blob).unwrap();
    use sha2::Digest;
    let actual: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        actual, hex,
        "after `--no-cache` the store still holds the damaged blob"
    );
}

/// A local Feature folder that does not exist, or has no devcontainer-feature.json, is
/// reported at its line in devcontainer.json.
#[test]
fn missing_local_feature_names_config_line() {
    let scratch = Scratch::new();
    let config = "{\n  \"image\": \"127.0.0.1:9/x:y\",\n  \"features\": {\n    \
                  \"./features/nope\": {}\n  }\n}\n";
    let root = write_project(&scratch, "missing", config, &[]);
    let output = scratch.envc(&["plan", root.to_str().unwrap()]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("devcontainer.json:4:"), "{text}");

    let root = write_project(
        &scratch,
        "bare",
        &config.replace("nope", "bare"),
        &[("bare", "", "#!/bin/sh\ntrue\n")],
    );
    let output = scratch.envc(&["plan", root.to_str().unwrap()]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("devcontainer.json:4:"), "{text}");
}

/// A tag with a space, upper case, nothing, or `..` is invalid input and is never written.
#[test]
fn invalid_tag_is_rejected_as_input() {
    if !can_build("invalid_tag_is_rejected_as_input") {
        return;
    }
    let scratch = Scratch::new();
    let root = one_feature_project(&scratch, "tagged", "#!/bin/sh\ntrue\n");
    for tag in ["Bad Tag", "", "../../etc/x:1"] {
        let output = scratch.envc(&["build", root.to_str().unwrap(), "--tag", tag]);
        assert_eq!(
            output.status.code(),
            Some(2),
            "tag `{tag}` was accepted: {}",
            stderr(&output)
        );
    }
    assert_eq!(tags(&scratch.store()), Vec::<String>::new());
}

/// A Feature folder reached through a symbolic link that points outside `.devcontainer/` is
/// rejected, as a plain `../` path to the same folder is.
#[test]
fn symlinked_feature_folder_outside_devcontainer_is_refused() {
    let scratch = Scratch::new();
    let config = "{\n  \"image\": \"127.0.0.1:9/x:y\",\n  \"features\": {\n    \
                  \"./features/link\": {}\n  }\n}\n";
    let root = write_project(&scratch, "linked", config, &[]);
    let outside = root.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(
        outside.join("devcontainer-feature.json"),
        r#"{"id": "link", "version": "1.0.0"}"#,
    )
    .unwrap();
    support::write_script(&outside.join("install.sh"), "#!/bin/sh\ntrue\n");
    std::fs::create_dir_all(root.join(".devcontainer/features")).unwrap();
    std::os::unix::fs::symlink("../../outside", root.join(".devcontainer/features/link")).unwrap();
    let output = scratch.envc(&["plan", root.to_str().unwrap()]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(text.contains("not inside"), "{text}");
}

/// Warnings on a piped stderr carry no terminal colour codes.
#[test]
fn warnings_plain_on_piped_stderr() {
    let scratch = Scratch::new();
    let config = "{\n  \"image\": \"127.0.0.1:9/x:y\",\n  \"image\": \"127.0.0.1:9/x:z\"\n}\n";
    let root = write_project(&scratch, "dup", config, &[]);
    let output = scratch.envc(&["plan", root.to_str().unwrap()]);
    let text = stderr(&output);
    assert!(text.contains("repeated"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "escape codes in piped stderr: {text:?}"
    );
}

/// Ctrl-C while a push waits on the registry stops the build with exit 130 and writes no tag.
/// The "registry" accepts connections and never answers, so the push cannot finish by itself.
#[test]
fn interrupt_during_push_stops_and_leaves_no_tag() {
    if !can_build("interrupt_during_push_stops_and_leaves_no_tag") {
        return;
    }
    use std::io::{BufRead, BufReader};
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().flatten() {
            held.push(stream);
        }
    });

    let scratch = Scratch::new();
    let root = one_feature_project(&scratch, "stuck", "#!/bin/sh\necho hi > /hi\n");
    let push = format!("{address}/stuck/app:1");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_envc"))
        .args([
            "build",
            root.to_str().unwrap(),
            "--tag",
            "stuck:1",
            "--push",
            &push,
        ])
        .env("ENVC_STORE", scratch.store())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("f: done") {
            break;
        }
    }
    // The build has finished its step and is now waiting on the silent registry.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let interrupted = std::time::Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "stderr after interrupt: {rest:?}");
    assert!(
        interrupted.elapsed().as_secs() < 15,
        "the push did not stop promptly"
    );
    assert_eq!(tags(&scratch.store()), Vec::<String>::new());
}
