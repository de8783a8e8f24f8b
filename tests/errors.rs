//! Bad input gets a clear error, the right exit code, and leaves nothing behind in the store.

mod support;

use std::path::{Path, PathBuf};

use support::{can_build, stderr, store_leftovers, Scratch, REGISTRY};

fn busybox_config(features: &str) -> String {
    format!("{{\n  \"image\": \"{REGISTRY}/busybox:latest\",\n  \"features\": {{{features}}}\n}}\n")
}

const OPTIONS_FEATURE: &str = r#"{
    "id": "opts",
    "version": "1.0.0",
    "options": {
        "flavor": { "type": "string", "enum": ["small", "large"], "default": "small" },
        "fast": { "type": "boolean", "default": false }
    }
}"#;

/// Writes the project `project` in `scratch` (see `support::write_project`).
fn project(scratch: &Scratch, config: &str, features: &[(&str, &str, &str)]) -> PathBuf {
    support::write_project(scratch, "project", config, features)
}

/// Builds `project` and checks the exit code, that stderr contains each of `needles`, and
/// that the store contains no tag, record, work folder or mount afterwards.
fn assert_rejected(scratch: &Scratch, project: &Path, code: i32, needles: &[&str]) {
    let output = scratch.envc(&["build", project.to_str().unwrap()]);
    let text = stderr(&output);
    assert_eq!(
        output.status.code(),
        Some(code),
        "unexpected exit code; stderr:\n{text}"
    );
    for needle in needles {
        assert!(text.contains(needle), "stderr lacks `{needle}`:\n{text}");
    }
    assert_eq!(store_leftovers(&scratch.store()), Vec::<String>::new());
}

#[test]
fn malformed_jsonc_names_line_and_column() {
    let scratch = Scratch::new();
    let root = project(
        &scratch,
        "{\n  \"image\": \"x\",\n  \"features\": {,\n}\n",
        &[],
    );
    assert_rejected(&scratch, &root, 2, &["devcontainer.json:3:"]);
}

#[test]
fn missing_config_is_reported() {
    let scratch = Scratch::new();
    let root = scratch.path().join("empty");
    std::fs::create_dir_all(&root).unwrap();
    assert_rejected(&scratch, &root, 2, &["no devcontainer.json found", "hint:"]);
}

#[test]
fn feature_folder_without_metadata() {
    let scratch = Scratch::new();
    let config = busybox_config(r#""./features/bare": {}"#);
    let root = project(&scratch, &config, &[("bare", "", "#!/bin/sh\ntrue\n")]);
    assert_rejected(&scratch, &root, 2, &["devcontainer-feature.json", "bare"]);
}

#[test]
fn local_path_outside_devcontainer_folder() {
    let scratch = Scratch::new();
    let config = busybox_config(r#""../outside": {}"#);
    let root = project(&scratch, &config, &[]);
    std::fs::create_dir_all(root.join("outside")).unwrap();
    assert_rejected(&scratch, &root, 2, &["../outside", "devcontainer.json:3:"]);
}

/// As with the reference CLI, an option the Feature does not declare reaches the script
/// unchecked; envc warns and names the declared ones.
#[test]
fn unknown_option_is_passed_through_with_a_warning() {
    let scratch = Scratch::new();
    let config = busybox_config(r#""./features/opts": { "colour": "red" }"#);
    let root = project(
        &scratch,
        &config,
        &[("opts", OPTIONS_FEATURE, "#!/bin/sh\ntrue\n")],
    );
    let output = scratch.envc(&["plan", root.to_str().unwrap()]);
    let text = stderr(&output);
    if !output.status.success() {
        // `plan` resolves the base image from the seeded loopback registry.
        assert!(text.contains("base image"), "{text}");
        return;
    }
    for needle in ["colour", "flavor", "fast"] {
        assert!(text.contains(needle), "stderr lacks `{needle}`:\n{text}");
    }
    assert!(support::stdout(&output).contains("colour = red"));
}

/// Parses every line of `output`'s stderr as a JSON object, failing on the first that is not.
fn json_lines(output: &std::process::Output) -> Vec<serde_json::Value> {
    let text = stderr(output);
    text.lines()
        .map(
            |line| match serde_json::from_str::<serde_json::Value>(line) {
                Ok(value) if value.is_object() => value,
                _ => panic!("stderr line is not a JSON object: {line:?}\nstderr:\n{text}"),
            },
        )
        .collect()
}

/// Returns a config that repeats `remoteUser`, so that loading it logs a warning.
fn duplicate_key_config(features: &str) -> String {
    format!(
        "{{\n  \"image\": \"{REGISTRY}/busybox:latest\",\n  \"remoteUser\": \"a\",\n  \
         \"remoteUser\": \"b\",\n  \"features\": {{{features}}}\n}}\n"
    )
}

#[test]
fn json_progress_logs_are_json_lines() {
    let scratch = Scratch::new();
    let config = duplicate_key_config(r#""./features/opts": { "flavor": "large" }"#);
    let root = project(
        &scratch,
        &config,
        &[("opts", OPTIONS_FEATURE, "#!/bin/sh\ntrue\n")],
    );

    let plain = scratch.envc(&["plan", root.to_str().unwrap()]);
    assert!(stderr(&plain).contains("`remoteUser` is repeated"));

    let output = scratch.envc(&["--progress", "json", "-v", "plan", root.to_str().unwrap()]);
    let lines = json_lines(&output);
    let warning = lines
        .iter()
        .find(|line| line["event"] == "warning")
        .unwrap_or_else(|| panic!("no warning line: {lines:?}"));
    assert_eq!(warning["level"], "warn");
    let message = warning["message"].as_str().unwrap();
    assert!(message.contains("`remoteUser` is repeated"), "{message}");
    // `-v` adds debug lines, such as the install rounds, with their fields.
    assert!(
        lines
            .iter()
            .any(|line| line["event"] == "log" && line["level"] == "debug"),
        "{lines:?}"
    );
    if !output.status.success() {
        // `plan` resolves the base image from the seeded loopback registry.
        let last = lines.last().unwrap();
        assert_eq!(last["event"], "error", "{lines:?}");
        assert!(last["message"].as_str().unwrap().contains("base image"));
    }
}

#[test]
fn json_progress_error_is_a_json_line() {
    let scratch = Scratch::new();
    let config = duplicate_key_config(r#""./features/opts": { "fast": "yes" }"#);
    let root = project(
        &scratch,
        &config,
        &[("opts", OPTIONS_FEATURE, "#!/bin/sh\ntrue\n")],
    );

    let output = scratch.envc(&["--progress", "json", "build", root.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let lines = json_lines(&output);
    assert!(
        lines.iter().any(|line| line["event"] == "warning"),
        "{lines:?}"
    );
    let error = lines.last().unwrap();
    assert_eq!(error["event"], "error", "{lines:?}");
    assert_eq!(error["exitCode"], 2);
    assert!(
        error["message"].as_str().unwrap().contains("fast"),
        "{error}"
    );
    assert!(error["hint"].is_string(), "{error}");
    assert_eq!(store_leftovers(&scratch.store()), Vec::<String>::new());
}

#[test]
fn option_of_wrong_type() {
    let scratch = Scratch::new();
    let config = busybox_config(r#""./features/opts": { "fast": "yes" }"#);
    let root = project(
        &scratch,
        &config,
        &[("opts", OPTIONS_FEATURE, "#!/bin/sh\ntrue\n")],
    );
    assert_rejected(&scratch, &root, 2, &["fast", "`yes`"]);
}

#[test]
fn option_outside_enum() {
    let scratch = Scratch::new();
    let config = busybox_config(r#""./features/opts": { "flavor": "medium" }"#);
    let root = project(
        &scratch,
        &config,
        &[("opts", OPTIONS_FEATURE, "#!/bin/sh\ntrue\n")],
    );
    assert_rejected(
        &scratch,
        &root,
        2,
        &["flavor", "`medium`", "small", "large"],
    );
}

#[test]
fn depends_on_cycle_names_every_feature() {
    let scratch = Scratch::new();
    let config = busybox_config(r#""./features/a": {}"#);
    let a = r#"{"id": "a", "version": "1.0.0", "dependsOn": {"./features/b": {}}}"#;
    let b = r#"{"id": "b", "version": "1.0.0", "dependsOn": {"./features/a": {}}}"#;
    let root = project(
        &scratch,
        &config,
        &[("a", a, "#!/bin/sh\ntrue\n"), ("b", b, "#!/bin/sh\ntrue\n")],
    );
    assert_rejected(&scratch, &root, 2, &["cycle", "a", "b"]);
}

#[test]
fn unreachable_registry() {
    let scratch = Scratch::new();
    let root = project(&scratch, "{ \"image\": \"127.0.0.1:9/nothing:here\" }", &[]);
    assert_rejected(&scratch, &root, 1, &["127.0.0.1:9"]);
}

#[test]
fn missing_base_tag() {
    if !can_build("missing_base_tag") {
        return;
    }
    let scratch = Scratch::new();
    let config = format!("{{ \"image\": \"{REGISTRY}/busybox:no-such-tag\" }}");
    let root = project(&scratch, &config, &[]);
    assert_rejected(&scratch, &root, 2, &["busybox:no-such-tag", "not found"]);
}

#[test]
fn failing_install_script_names_feature_and_output() {
    if !can_build("failing_install_script_names_feature_and_output") {
        return;
    }
    let scratch = Scratch::new();
    let config = busybox_config("\n    \"./features/broken\": {}\n  ");
    let metadata = r#"{"id": "broken", "version": "1.0.0"}"#;
    let script = "#!/bin/sh\necho preparing\necho 'cannot find libfoo' >&2\nexit 3\n";
    let root = project(&scratch, &config, &[("broken", metadata, script)]);
    assert_rejected(
        &scratch,
        &root,
        1,
        &[
            "`broken`",
            "code 3",
            "devcontainer.json:4:",
            "cannot find libfoo",
        ],
    );
}

#[test]
fn interrupt_stops_build_and_cleans_up() {
    if !can_build("interrupt_stops_build_and_cleans_up") {
        return;
    }
    use std::io::{BufRead, BufReader};
    let scratch = Scratch::new();
    let config = busybox_config(r#""./features/slow": {}"#);
    let metadata = r#"{"id": "slow", "version": "1.0.0"}"#;
    let script = "#!/bin/sh\necho started\nsleep 60\n";
    let root = project(&scratch, &config, &[("slow", metadata, script)]);

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_envc"))
        .args(["build", root.to_str().unwrap(), "--progress", "plain"])
        .env("ENVC_STORE", scratch.store())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.contains("started") {
            break;
        }
    }
    assert!(
        seen.iter().any(|l| l.contains("started")),
        "script never started: {seen:?}"
    );
    let started = std::time::Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "stderr after interrupt: {rest:?}");
    assert!(
        started.elapsed().as_secs() < 30,
        "the build did not stop promptly"
    );
    assert_eq!(store_leftovers(&scratch.store()), Vec::<String>::new());
}
