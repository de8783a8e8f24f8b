//! Shared helpers for the integration tests: running the envc binary, checking prerequisites,
//! copying fixture projects, and running commands inside a built image with umoci and runc.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The loopback registry that `.ci/run` (or `scripts/registry.sh start`) serves, seeded with
/// `debian:bookworm` and `busybox:latest` by `scripts/seed-base-images.sh`.
pub const REGISTRY: &str = "127.0.0.1:5000";

/// Returns whether the machine can run real builds: root, runc, umoci, and the seeded
/// registry. When it cannot, a test fails under CI and is skipped (with the reason printed)
/// elsewhere.
pub fn can_build(test: &str) -> bool {
    let mut missing = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root".to_string());
    }
    for tool in ["runc", "umoci"] {
        if which(tool).is_none() {
            missing.push(format!("`{tool}` on PATH"));
        }
    }
    if !registry_has(&format!("{REGISTRY}/busybox"), "latest")
        || !registry_has(&format!("{REGISTRY}/debian"), "bookworm")
    {
        missing.push(format!(
            "the seeded registry at {REGISTRY} (run `scripts/registry.sh start` and \
             `scripts/seed-base-images.sh`)"
        ));
    }
    if missing.is_empty() {
        return true;
    }
    let message = format!("{test}: needs {}", missing.join(", "));
    if std::env::var_os("CI").is_some() {
        panic!("{message}");
    }
    eprintln!("skipped {message}");
    false
}

pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

/// Asks the registry for a tag's manifest, with plain HTTP on loopback.
pub fn registry_has(repository: &str, tag: &str) -> bool {
    let (host, path) = repository.split_once('/').expect("repository has a host");
    let Ok(mut stream) = std::net::TcpStream::connect(host) else {
        return false;
    };
    use std::io::{Read, Write};
    let request = format!(
        "HEAD /v2/{path}/manifests/{tag} HTTP/1.0\r\nHost: {host}\r\nAccept: \
         application/vnd.oci.image.manifest.v1+json, \
         application/vnd.docker.distribution.manifest.v2+json\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200")
}

/// A test's scratch space: a store, and room for projects and outputs.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("a temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// Runs envc with this scratch's store.
    pub fn envc(&self, args: &[&str]) -> Output {
        self.envc_with_store(&self.store(), args)
    }

    pub fn envc_with_store(&self, store: &Path, args: &[&str]) -> Output {
        let output = Command::new(env!("CARGO_BIN_EXE_envc"))
            .args(args)
            .env("ENVC_STORE", store)
            .env_remove("SOURCE_DATE_EPOCH")
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

    /// Copies `source` into the scratch space as `name`, with writable files.
    pub fn copy_project(&self, source: &Path, name: &str) -> PathBuf {
        let target = self.dir.path().join(name);
        copy_tree(source, &target);
        target
    }
}

pub fn copy_tree(source: &Path, target: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(source)
        .arg(target)
        .status()
        .expect("cp runs");
    assert!(status.success(), "copying {} failed", source.display());
    let status = Command::new("chmod")
        .arg("-R")
        .arg("u+w")
        .arg(target)
        .status()
        .expect("chmod");
    assert!(status.success());
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Parses the JSON result of `envc build --json`.
pub fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!("stdout is not JSON ({e}): {}", stdout(output));
    })
}

/// Runs `script` with `/bin/sh -c` as `user` inside image `tag` of the OCI layout `layout`,
/// unpacked with umoci and run with runc, and returns its exit code and output.
pub fn run_in_image(layout: &Path, tag: &str, user: &str, script: &str) -> (i32, String) {
    let work = tempfile::tempdir().expect("a temp dir");
    let bundle = work.path().join("bundle");
    let image = format!("{}:{tag}", layout.display());
    let unpack = Command::new("umoci")
        .args(["unpack", "--image", &image])
        .arg(&bundle)
        .output()
        .expect("umoci runs");
    assert!(
        unpack.status.success(),
        "umoci unpack failed: {}",
        stderr(&unpack)
    );

    let config_path = bundle.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    let (uid, gid) = user_ids(&bundle.join("rootfs"), user);
    config["process"]["args"] = serde_json::json!(["/bin/sh", "-c", script]);
    config["process"]["terminal"] = serde_json::json!(false);
    config["process"]["user"] = serde_json::json!({"uid": uid, "gid": gid});
    std::fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();

    let id = format!("envc-test-{}", std::process::id());
    let output = Command::new("runc")
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .output()
        .expect("runc runs");
    let _ = Command::new("runc").args(["delete", "-f", &id]).output();
    let text = format!("{}{}", stdout(&output), stderr(&output));
    (output.status.code().unwrap_or(-1), text)
}

fn user_ids(rootfs: &Path, user: &str) -> (u32, u32) {
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() > 3 && fields[0] == user {
            return (fields[2].parse().unwrap(), fields[3].parse().unwrap());
        }
    }
    panic!("user `{user}` is not in the image's /etc/passwd");
}

/// Returns the repository's `testdata` folder.
pub fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

/// Entries left in the store that a failed build must not leave: tags, step records, work
/// folders and mounts.
pub fn store_leftovers(store: &Path) -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(index) = std::fs::read_to_string(store.join("oci/index.json")) {
        let index: serde_json::Value = serde_json::from_str(&index).unwrap();
        if let Some(manifests) = index["manifests"].as_array() {
            for m in manifests {
                found.push(format!(
                    "tag {}",
                    m["annotations"]["org.opencontainers.image.ref.name"]
                ));
            }
        }
    }
    for sub in ["cache/steps", "cache/plans", "tmp"] {
        if let Ok(entries) = std::fs::read_dir(store.join(sub)) {
            for entry in entries.flatten() {
                found.push(format!("{sub}/{}", entry.file_name().to_string_lossy()));
            }
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let store_text = store.to_string_lossy();
    for line in mounts.lines().filter(|l| l.contains(store_text.as_ref())) {
        found.push(format!("mount {line}"));
    }
    found
}

/// Writes a project under `scratch/name` with `config` as its devcontainer.json and `features`
/// as `(folder, devcontainer-feature.json, install.sh)` under `.devcontainer/features/`. An empty
/// metadata text leaves `devcontainer-feature.json` out.
pub fn write_project(
    scratch: &Scratch,
    name: &str,
    config: &str,
    features: &[(&str, &str, &str)],
) -> PathBuf {
    let root = scratch.path().join(name);
    let dot = root.join(".devcontainer");
    std::fs::create_dir_all(&dot).unwrap();
    std::fs::write(dot.join("devcontainer.json"), config).unwrap();
    for (folder, metadata, script) in features {
        let dir = dot.join("features").join(folder);
        std::fs::create_dir_all(&dir).unwrap();
        if !metadata.is_empty() {
            std::fs::write(dir.join("devcontainer-feature.json"), metadata).unwrap();
        }
        write_script(&dir.join("install.sh"), script);
    }
    root
}

/// Writes an executable script.
pub fn write_script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}
