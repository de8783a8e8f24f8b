//! Signatures and attestations checked by real cosign (2.5, from `scripts/cosign.sh`) and by
//! `envc verify`, against a real `docker-registry` on a free 127.0.0.1 port.
//!
//! cosign is found through `ENVC_COSIGN` or on PATH. Without it the tests are skipped with the
//! reason printed, and under `CI` they fail.

#[path = "support/registry.rs"]
mod registry_support;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use envc::registry::{ImageRef, RegistryClient, RegistryOptions};
use registry_support::TestRegistry;
use sha2::{Digest as _, Sha256};

const PASSWORD: &str = "s3cret-envc-pass";
const COSIGN_PASSWORD: &str = "s3cret-cosign-pass";

/// Finds the cosign binary, or returns `None` (after printing why) when it is missing and `CI`
/// is unset.
fn cosign(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("ENVC_COSIGN")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| support::which("cosign"));
    if found.is_none() {
        let reason = format!(
            "{test}: needs cosign (set `ENVC_COSIGN` to the path `scripts/cosign.sh` prints)"
        );
        if std::env::var_os("CI").is_some() {
            panic!("{reason}");
        }
        eprintln!("skipped {reason}");
    }
    found
}

/// Everything a signing test needs: cosign, a registry and a scratch folder.
struct Setup {
    cosign: PathBuf,
    registry: TestRegistry,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(test: &str) -> Option<Setup> {
        let cosign = cosign(test)?;
        let registry = TestRegistry::start()?;
        Some(Setup {
            cosign,
            registry,
            dir: tempfile::tempdir().expect("a temp dir"),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs envc in the scratch folder with `ENVC_PASSWORD` set to `password`.
    fn envc(&self, password: Option<&str>, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_envc"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .stdin(std::process::Stdio::null())
            .env("ENVC_STORE", self.path("store"))
            .env_remove("ENVC_PASSWORD")
            .env_remove("SOURCE_DATE_EPOCH");
        if let Some(password) = password {
            command.env("ENVC_PASSWORD", password);
        }
        logged(&format!("envc {}", args.join(" ")), command.output())
    }

    /// Runs cosign in the scratch folder, offline: no transparency log, no trust root.
    fn cosign(&self, password: Option<&str>, args: &[&str]) -> Output {
        let mut command = Command::new(&self.cosign);
        command
            .args(args)
            .current_dir(self.dir.path())
            .stdin(std::process::Stdio::null())
            .env("HOME", self.dir.path())
            .env("TUF_ROOT", self.path("tuf"))
            .env_remove("COSIGN_PASSWORD");
        if let Some(password) = password {
            command.env("COSIGN_PASSWORD", password);
        }
        logged(&format!("cosign {}", args.join(" ")), command.output())
    }

    fn cosign_verify(&self, public_key: &str, reference: &str) -> Output {
        self.cosign(
            None,
            &[
                "verify",
                "--key",
                public_key,
                "--insecure-ignore-tlog=true",
                reference,
            ],
        )
    }

    /// `envc keygen` with `PREFIX.key` and `PREFIX.pub`.
    fn envc_keys(&self, prefix: &str) {
        let output = self.envc(Some(PASSWORD), &["keygen", "--output-key-prefix", prefix]);
        assert_success(&output);
    }

    /// `cosign generate-key-pair`, renamed to `PREFIX.key` and `PREFIX.pub`.
    fn cosign_keys(&self, prefix: &str) {
        let output = self.cosign(Some(COSIGN_PASSWORD), &["generate-key-pair"]);
        assert_success(&output);
        for suffix in ["key", "pub"] {
            std::fs::rename(
                self.path(&format!("cosign.{suffix}")),
                self.path(&format!("{prefix}.{suffix}")),
            )
            .unwrap();
        }
    }

    /// Pushes a one-layer image whose content is `name` as `signed/app:<name>`, and returns
    /// `registry/signed/app@digest`.
    fn push_image(&self, name: &str) -> String {
        let reference = ImageRef::parse(&format!("{}/signed/app:{name}", self.registry.address))
            .expect("a valid reference");
        let layer = format!("layer of {name}").into_bytes();
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [digest(&layer)]},
        }))
        .unwrap();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": digest(&config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": digest(&layer), "size": layer.len()}],
        }))
        .unwrap();
        let client = client();
        let pushed = runtime().block_on(async {
            for blob in [&layer, &config] {
                let path = self.path("blob");
                std::fs::write(&path, blob).unwrap();
                client
                    .push_blob_file(&reference, &digest(blob), &path)
                    .await
                    .unwrap();
            }
            client
                .push_manifest(
                    &reference,
                    &manifest,
                    "application/vnd.oci.image.manifest.v1+json",
                )
                .await
                .unwrap()
        });
        format!("{}/{}@{pushed}", reference.registry, reference.repository)
    }
}

fn logged(command_line: &str, output: std::io::Result<Output>) -> Output {
    let output = output.unwrap_or_else(|e| panic!("`{command_line}` did not start: {e}"));
    eprintln!(
        "$ {command_line}\n[exit {:?}]\n{}{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn client() -> RegistryClient {
    RegistryClient::new(RegistryOptions::default())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Fetches the `.sig` object of `image` (`registry/repo@digest`) and its manifest.
fn signature_object(image: &str) -> (ImageRef, serde_json::Value) {
    let image = ImageRef::parse(image).unwrap();
    let tag = envc::sign::signature_tag(image.digest.as_deref().unwrap(), envc::sign::Suffix::Sig);
    let object = image.with_tag(&tag);
    let manifest = runtime()
        .block_on(client().fetch_manifest(&object))
        .expect("the signature object exists");
    (object, serde_json::from_slice(&manifest.bytes).unwrap())
}

/// Replaces the `.sig` object `object` with `manifest`, after pushing `blobs`.
fn replace_object(object: &ImageRef, manifest: &serde_json::Value, blobs: &[&[u8]], dir: &Path) {
    let client = client();
    runtime().block_on(async {
        for blob in blobs {
            let path = dir.join("replaced-blob");
            std::fs::write(&path, blob).unwrap();
            client
                .push_blob_file(object, &digest(blob), &path)
                .await
                .unwrap();
        }
        client
            .push_manifest(
                object,
                &serde_json::to_vec(manifest).unwrap(),
                "application/vnd.oci.image.manifest.v1+json",
            )
            .await
            .unwrap();
    });
}

fn layer_count(image: &str) -> usize {
    signature_object(image).1["layers"]
        .as_array()
        .unwrap()
        .len()
}

#[test]
fn cosign_accepts_envc_signatures() {
    let Some(setup) = Setup::new("cosign_accepts_envc_signatures") else {
        return;
    };
    setup.envc_keys("envc");
    setup.cosign_keys("cosign");
    let image = setup.push_image("app");

    // An envc key.
    let output = setup.envc(Some(PASSWORD), &["sign", "--key", "envc.key", &image]);
    assert_success(&output);
    assert!(String::from_utf8_lossy(&output.stdout).contains(".sig@sha256:"));
    let verify = setup.cosign_verify("envc.pub", &image);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    assert!(text(&verify).contains("verified against the specified public key"));

    // A cosign key, read by envc; the envc signature stays.
    let output = setup.envc(
        Some(COSIGN_PASSWORD),
        &["sign", "--key", "cosign.key", &image],
    );
    assert_success(&output);
    assert_eq!(layer_count(&image), 2);
    let verify = setup.cosign_verify("cosign.pub", &image);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    let verify = setup.cosign_verify("envc.pub", &image);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));

    // Signing again appends.
    let output = setup.envc(Some(PASSWORD), &["sign", "--key", "envc.key", &image]);
    assert_success(&output);
    assert_eq!(layer_count(&image), 3);
}

#[test]
fn envc_accepts_cosign_signatures() {
    let Some(setup) = Setup::new("envc_accepts_cosign_signatures") else {
        return;
    };
    setup.cosign_keys("cosign");
    setup.envc_keys("envc");
    let image = setup.push_image("app");

    let output = setup.cosign(
        Some(COSIGN_PASSWORD),
        &[
            "sign",
            "--key",
            "cosign.key",
            "--tlog-upload=false",
            "--yes",
            &image,
        ],
    );
    assert_success(&output);
    let verify = setup.envc(None, &["verify", "--key", "cosign.pub", &image]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    assert!(String::from_utf8_lossy(&verify.stdout).contains("1 signature(s)"));

    // cosign reads envc's encrypted key too.
    let output = setup.cosign(
        Some(PASSWORD),
        &[
            "sign",
            "--key",
            "envc.key",
            "--tlog-upload=false",
            "--yes",
            &image,
        ],
    );
    assert_success(&output);
    let verify = setup.envc(None, &["verify", "--key", "envc.pub", &image]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));

    // By tag too: the tag resolves to the signed digest.
    let tagged = image.replace(&image[image.find('@').unwrap()..], ":app");
    let verify = setup.envc(None, &["verify", "--key", "cosign.pub", &tagged]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
}

#[test]
fn unsigned_image_is_rejected_by_both() {
    let Some(setup) = Setup::new("unsigned_image_is_rejected_by_both") else {
        return;
    };
    setup.envc_keys("envc");
    let image = setup.push_image("unsigned");

    let envc = setup.envc(None, &["verify", "--key", "envc.pub", &image]);
    assert_eq!(envc.status.code(), Some(1));
    assert!(
        text(&envc).contains("no signature found"),
        "{}",
        text(&envc)
    );

    let cosign = setup.cosign_verify("envc.pub", &image);
    assert_eq!(cosign.status.code(), Some(10));
    assert!(text(&cosign).contains("no signatures found"));
}

#[test]
fn signature_over_other_digest_is_rejected_by_both() {
    let Some(setup) = Setup::new("signature_over_other_digest_is_rejected_by_both") else {
        return;
    };
    setup.envc_keys("envc");
    let image = setup.push_image("target");
    let other = setup.push_image("other");
    assert_success(&setup.envc(Some(PASSWORD), &["sign", "--key", "envc.key", &other]));

    // Put the other image's valid signature object under this image's `.sig` tag.
    let (_, manifest) = signature_object(&other);
    let image_ref = ImageRef::parse(&image).unwrap();
    let tag = envc::sign::signature_tag(
        image_ref.digest.as_deref().unwrap(),
        envc::sign::Suffix::Sig,
    );
    replace_object(&image_ref.with_tag(&tag), &manifest, &[], setup.dir.path());

    let envc = setup.envc(None, &["verify", "--key", "envc.pub", &image]);
    assert_eq!(envc.status.code(), Some(1));
    let message = text(&envc);
    assert!(
        message.contains("the signed payload names digest"),
        "{message}"
    );
    assert!(
        message.contains(other.split('@').nth(1).unwrap()),
        "{message}"
    );

    let cosign = setup.cosign_verify("envc.pub", &image);
    assert_eq!(cosign.status.code(), Some(12));
    assert!(text(&cosign).contains("invalid or missing digest in claim"));
}

#[test]
fn flipped_payload_byte_is_rejected_by_both() {
    let Some(setup) = Setup::new("flipped_payload_byte_is_rejected_by_both") else {
        return;
    };
    setup.envc_keys("envc");
    let image = setup.push_image("app");
    assert_success(&setup.envc(Some(PASSWORD), &["sign", "--key", "envc.key", &image]));

    // Change the payload's last digest digit and keep the signature annotation.
    let (object, mut manifest) = signature_object(&image);
    let layer_digest = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let payload = runtime()
        .block_on(client().fetch_blob(&object, &layer_digest))
        .unwrap();
    let mut flipped = payload.clone();
    let at = flipped
        .windows(8)
        .position(|w| w == b"\"},\"type")
        .expect("the payload has a digest value")
        - 1;
    flipped[at] = if flipped[at] == b'0' { b'1' } else { b'0' };
    manifest["layers"][0]["digest"] = digest(&flipped).into();
    manifest["layers"][0]["size"] = flipped.len().into();
    replace_object(&object, &manifest, &[&flipped], setup.dir.path());

    let envc = setup.envc(None, &["verify", "--key", "envc.pub", &image]);
    assert_eq!(envc.status.code(), Some(1));
    assert!(text(&envc).contains("tampered payload"), "{}", text(&envc));

    let cosign = setup.cosign_verify("envc.pub", &image);
    assert_eq!(cosign.status.code(), Some(12));
    assert!(text(&cosign).contains("invalid signature"));
}

#[test]
fn wrong_key_is_rejected_by_both() {
    let Some(setup) = Setup::new("wrong_key_is_rejected_by_both") else {
        return;
    };
    setup.envc_keys("envc");
    setup.cosign_keys("other");
    let image = setup.push_image("app");
    assert_success(&setup.envc(Some(PASSWORD), &["sign", "--key", "envc.key", &image]));

    let envc = setup.envc(None, &["verify", "--key", "other.pub", &image]);
    assert_eq!(envc.status.code(), Some(1));
    assert!(
        text(&envc).contains("no signature matches the key"),
        "{}",
        text(&envc)
    );

    let cosign = setup.cosign_verify("other.pub", &image);
    assert_eq!(cosign.status.code(), Some(12));
    assert!(text(&cosign).contains("no matching signatures"));
}

#[test]
fn wrong_password_is_an_error_that_says_so() {
    let Some(setup) = Setup::new("wrong_password_is_an_error_that_says_so") else {
        return;
    };
    setup.envc_keys("envc");
    let image = setup.push_image("app");

    let output = setup.envc(
        Some("not-the-password"),
        &[
            "--progress",
            "json",
            "sign",
            "--key",
            "envc.key",
            "--json",
            &image,
        ],
    );
    // A wrong password is invalid input, like a corrupt key.
    assert_eq!(output.status.code(), Some(2));
    let message = text(&output);
    assert!(message.contains("wrong password"), "{message}");
    assert!(!message.contains("not-the-password"), "{message}");
    assert!(!message.contains(PASSWORD), "{message}");
    assert!(!message.contains("panicked"), "{message}");

    let output = setup.envc(None, &["sign", "--key", "envc.key", &image]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).contains("ENVC_PASSWORD"));
}

#[test]
fn signing_a_tag_is_refused() {
    let Some(setup) = Setup::new("signing_a_tag_is_refused") else {
        return;
    };
    setup.envc_keys("envc");
    let image = setup.push_image("app");
    let tagged = image.replace(&image[image.find('@').unwrap()..], ":app");

    let output = setup.envc(Some(PASSWORD), &["sign", "--key", "envc.key", &tagged]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).contains("does not name a manifest digest"));
}

/// Writes a project on the seeded busybox base with one local Feature that has an option.
fn write_project(root: &Path) -> PathBuf {
    let project = root.join("project");
    let feature = project.join(".devcontainer/greet");
    std::fs::create_dir_all(&feature).unwrap();
    std::fs::write(
        project.join(".devcontainer/devcontainer.json"),
        format!(
            r#"{{ "image": "{}/busybox:latest",
                 "features": {{ "./greet": {{ "who": "signers" }} }} }}"#,
            support::REGISTRY
        ),
    )
    .unwrap();
    std::fs::write(
        feature.join("devcontainer-feature.json"),
        r#"{ "id": "greet", "version": "1.2.3", "name": "Greet",
             "options": { "who": { "type": "string", "default": "world" } } }"#,
    )
    .unwrap();
    std::fs::write(
        feature.join("install.sh"),
        "#!/bin/sh\nset -e\necho \"hello $WHO\" > /etc/greeting\n",
    )
    .unwrap();
    project
}

#[test]
fn build_attaches_sbom_and_provenance_that_cosign_accepts() {
    if !support::can_build("build_attaches_sbom_and_provenance_that_cosign_accepts") {
        return;
    }
    let Some(setup) = Setup::new("build_attaches_sbom_and_provenance_that_cosign_accepts") else {
        return;
    };
    setup.envc_keys("envc");
    setup.cosign_keys("other");
    let project = write_project(setup.dir.path());
    let push = format!("{}/team/app:v1", setup.registry.address);

    let output = setup.envc(
        Some(PASSWORD),
        &[
            "--progress",
            "json",
            "build",
            project.to_str().unwrap(),
            "--push",
            &push,
            "--sign-key",
            "envc.key",
            "--sbom",
            "sbom.spdx.json",
            "--json",
        ],
    );
    assert_success(&output);
    assert!(!text(&output).contains(PASSWORD));
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let image_digest = result["digest"].as_str().unwrap().to_string();
    let image = format!("{}/team/app@{image_digest}", setup.registry.address);
    assert_eq!(result["signatures"].as_array().unwrap().len(), 1);
    assert_eq!(result["attestations"].as_array().unwrap().len(), 1);

    // The SBOM file lists the base image and the Feature with its options.
    let sbom: serde_json::Value =
        serde_json::from_slice(&std::fs::read(setup.path("sbom.spdx.json")).unwrap()).unwrap();
    assert_eq!(sbom["spdxVersion"], "SPDX-2.3");
    let base = &sbom["packages"][1];
    assert_eq!(
        base["name"],
        format!("{}/busybox:latest", support::REGISTRY)
    );
    assert!(base["versionInfo"].as_str().unwrap().starts_with("sha256:"));
    let feature = &sbom["packages"][2];
    assert_eq!(feature["name"], "greet");
    assert_eq!(feature["versionInfo"], "1.2.3");
    assert!(feature["comment"]
        .as_str()
        .unwrap()
        .contains(r#""who":"signers""#));

    let verify = setup.cosign_verify("envc.pub", &image);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    for kind in ["spdxjson", "slsaprovenance"] {
        let verify = setup.cosign(
            None,
            &[
                "verify-attestation",
                "--key",
                "envc.pub",
                "--type",
                kind,
                "--insecure-ignore-tlog=true",
                &image,
            ],
        );
        assert_eq!(verify.status.code(), Some(0), "{kind}: {}", text(&verify));
    }

    let verify = setup.envc(
        None,
        &["verify", "--key", "envc.pub", "--attestations", &image],
    );
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    let printed = String::from_utf8_lossy(&verify.stdout).into_owned();
    assert!(printed.contains("1 Feature(s): greet 1.2.3"), "{printed}");
    assert!(printed.contains("builder urn:envc:builder:"), "{printed}");

    // The wrong key fails for attestations in both tools.
    let verify = setup.envc(
        None,
        &["verify", "--key", "other.pub", "--attestations", &image],
    );
    assert_eq!(verify.status.code(), Some(1));
    let verify = setup.cosign(
        None,
        &[
            "verify-attestation",
            "--key",
            "other.pub",
            "--type",
            "spdxjson",
            "--insecure-ignore-tlog=true",
            &image,
        ],
    );
    assert_ne!(verify.status.code(), Some(0));
    assert!(
        text(&verify).contains("no matching attestations"),
        "{}",
        text(&verify)
    );
}

#[test]
fn unchanged_signed_rebuild_adds_no_signature() {
    if !support::can_build("unchanged_signed_rebuild_adds_no_signature") {
        return;
    }
    let Some(setup) = Setup::new("unchanged_signed_rebuild_adds_no_signature") else {
        return;
    };
    setup.envc_keys("envc");
    let project = write_project(setup.dir.path());
    let push = format!("{}/team/again:v1", setup.registry.address);
    let args = [
        "build",
        project.to_str().unwrap(),
        "--push",
        &push,
        "--sign-key",
        "envc.key",
        "--json",
    ];

    let first = setup.envc(Some(PASSWORD), &args);
    assert_success(&first);
    let result: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    let image = format!(
        "{}/team/again@{}",
        setup.registry.address,
        result["digest"].as_str().unwrap()
    );
    assert_eq!(layer_count(&image), 1);

    let second = setup.envc(Some(PASSWORD), &args);
    assert_success(&second);
    let result: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert!(result.get("signatures").is_none(), "{result}");
    assert_eq!(layer_count(&image), 1, "the rebuild signed again");
    assert!(text(&second).contains("already signed by this key"));
}
