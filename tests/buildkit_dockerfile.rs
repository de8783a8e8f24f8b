//! Dockerfile stages and OCI layout bases against a real BuildKit: the Docker 26 daemon of
//! `scripts/buildkit.sh` (address in `ENVC_BUILDKIT_ADDR`), with base images from the loopback
//! registry at 127.0.0.1:5000. Without a daemon each test prints why and passes, except under
//! CI (`CI` set), where it fails.
//!
//! The tests that prune BuildKit's cache (it is only a cache) hold [`DAEMON`], so that no other
//! test of this file is building while the cache goes.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use envc::config::{self, DockerfileSource, Source};
use envc::engine::buildkit::client::Client;
use envc::engine::buildkit::connect::Address;
use envc::engine::buildkit::dockerfile::{self, StageOptions};
use envc::engine::buildkit::layout::{self, BASE_STORE};
use envc::engine::buildkit::proto::control::{Exporter, SolveRequest};
use envc::engine::buildkit::proto::pb::{self, op, Definition, ExecOp, Input, Meta, Mount, Op};
use envc::engine::buildkit::session::{self, SessionSpec};
use envc::engine::Cancel;
use envc::progress::{Event, Recorder};
use envc::registry::{ImageRef, RegistryClient, RegistryOptions};
use envc::store::Store;
use flate2::write::GzEncoder;
use sha2::{Digest as _, Sha256};

const DEFAULT_ADDR: &str = "docker:///var/lib/envc-ci/buildkit/docker.sock";
const BUSYBOX: &str = "127.0.0.1:5000/busybox:latest";

/// Held by every test that builds, so pruning never runs under another build of this file.
static DAEMON: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Returns the daemon's address, or `None` (after printing why, or failing under CI) when it is
/// absent.
fn daemon() -> Option<Address> {
    let value = std::env::var("ENVC_BUILDKIT_ADDR").unwrap_or_else(|_| DEFAULT_ADDR.to_owned());
    let address = Address::parse(&value).expect("ENVC_BUILDKIT_ADDR parses");
    let socket = match &address {
        Address::Docker(path) | Address::Unix(path) => Some(path.clone()),
        Address::Tcp { .. } => None,
    };
    if let Some(socket) = socket.filter(|s| !s.exists()) {
        let reason = format!(
            "no BuildKit at `{value}` (`{}` is missing); start it with scripts/buildkit.sh start",
            socket.display()
        );
        if std::env::var_os("CI").is_some() {
            panic!("{reason}");
        }
        eprintln!("skipped: {reason}");
        return None;
    }
    Some(address)
}

async fn client(address: &Address) -> Client {
    Client::connect(address, None)
        .await
        .unwrap_or_else(|err| panic!("cannot reach BuildKit at `{address}`: {err}"))
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/dockerfile-project")
}

/// Loads the fixture's Dockerfile source from its devcontainer.json.
fn fixture_source() -> DockerfileSource {
    let file = fixture().join(".devcontainer/devcontainer.json");
    let config = config::load(&file, &|_| None).expect("the fixture's config loads");
    match config.source {
        Source::Dockerfile(source) => source,
        Source::Image(image) => panic!("expected a Dockerfile source, got {image:?}"),
    }
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout.join("blobs").join(digest.replacen(':', "/", 1))
}

/// Collects the regular files of every layer of the layout's image, later layers winning. Whiteouts
/// are not applied: the tests only look for files no layer deletes.
fn image_files(layout: &Path, digest: &str) -> BTreeMap<String, Vec<u8>> {
    let manifest = read_json(&blob(layout, digest));
    layer_files(layout, manifest["layers"].as_array().unwrap())
}

/// Collects the regular files of `layers` (manifest layer descriptors) in the layout.
fn layer_files(layout: &Path, layers: &[serde_json::Value]) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for layer in layers {
        let file = std::fs::File::open(blob(layout, layer["digest"].as_str().unwrap())).unwrap();
        let media_type = layer["mediaType"].as_str().unwrap();
        let raw: Box<dyn Read> = if media_type.ends_with("gzip") {
            Box::new(flate2::read::GzDecoder::new(file))
        } else {
            assert!(
                media_type.ends_with("tar"),
                "unexpected layer type {media_type}"
            );
            Box::new(file)
        };
        for entry in tar::Archive::new(raw).entries().unwrap() {
            let mut entry = entry.unwrap();
            if entry.header().entry_type().is_file() {
                let path = entry.path().unwrap().to_string_lossy().into_owned();
                let mut data = Vec::new();
                entry.read_to_end(&mut data).unwrap();
                files.insert(path, data);
            }
        }
    }
    files
}

/// Prunes BuildKit's cache, then builds the fixture's stage into a fresh store.
async fn cold_stage(client: &Client, store: &Store) -> (dockerfile::StageImage, Recorder) {
    client.prune_all().await.expect("BuildKit prunes its cache");
    let recorder = Recorder::default();
    let stage = dockerfile::build_stage(
        client,
        &fixture_source(),
        &StageOptions::default(),
        store,
        &recorder,
        &Cancel::default(),
    )
    .await
    .unwrap_or_else(|err| panic!("the stage builds: {err}\nhint: {:?}", err.hint()));
    (stage, recorder)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_stage_builds_reproducibly() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("envc=debug")
        .with_test_writer()
        .try_init();
    let Some(address) = daemon() else { return };
    let _daemon = DAEMON.lock().await;
    let client = client(&address).await;
    let first_root = tempfile::tempdir().unwrap();
    let first_store = Store::open(first_root.path()).unwrap();

    let (stage, recorder) = cold_stage(&client, &first_store).await;
    eprintln!(
        "cold Dockerfile stage build: {:.2}s",
        stage.duration.as_secs_f64()
    );

    assert!(stage.dir.starts_with(first_root.path().join("stages")));
    assert_eq!(stage.target.as_deref(), Some("dev"));
    let index = read_json(&stage.dir.join("index.json"));
    assert_eq!(index["manifests"][0]["digest"], stage.digest.as_str());
    assert_eq!(
        std::fs::read(blob(&stage.dir, &stage.digest)).unwrap(),
        stage.manifest
    );

    let files = image_files(&stage.dir, &stage.digest);
    assert_eq!(files["etc/greeting"], b"hello from the Dockerfile\n");
    assert_eq!(files["opt/tools/version"], b"tool 2.5\n");
    assert_eq!(
        files["opt/tools/context/included.txt"],
        b"shipped with the context\n"
    );
    for left_out in [
        "opt/tools/context/secret.txt",
        "opt/tools/context/notes.tmp",
        "etc/release",
    ] {
        assert!(!files.contains_key(left_out), "{left_out} is in the image");
    }

    let image_config: serde_json::Value = serde_json::from_slice(&stage.config).unwrap();
    let env: Vec<&str> = image_config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"TOOLS_HOME=/opt/tools"), "{env:?}");
    assert_eq!(image_config["config"]["WorkingDir"], "/opt/tools");

    let events = recorder.0.lock().unwrap().clone();
    let messages: Vec<String> = events
        .iter()
        .filter_map(|event| match event {
            Event::Base { message } => Some(message.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(messages[0], "building Dockerfile stage `dev`");
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("[dev ") && m.contains("RUN echo")),
        "{messages:#?}"
    );
    assert!(
        messages
            .last()
            .unwrap()
            .starts_with("built Dockerfile stage `dev` in "),
        "{messages:#?}"
    );

    // The base for the Features: an `oci:DIR` image whose digest is the stage's.
    let image = stage.image_source(&fixture_source());
    let registry = RegistryClient::new(RegistryOptions::default());
    let base = envc::plan::resolve_base(&image, &registry).await.unwrap();
    assert_eq!(base.digest, stage.digest);
    assert!(matches!(
        base.source,
        envc::plan::BaseSource::Layout { ref dir } if *dir == stage.dir
    ));

    let second_root = tempfile::tempdir().unwrap();
    let second_store = Store::open(second_root.path()).unwrap();
    let (again, _) = cold_stage(&client, &second_store).await;
    eprintln!(
        "second cold Dockerfile stage build: {:.2}s",
        again.duration.as_secs_f64()
    );
    assert_eq!(again.digest, stage.digest, "two cold builds differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_instruction_line_and_output() {
    let Some(address) = daemon() else { return };
    let _daemon = DAEMON.lock().await;
    let client = client(&address).await;
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir(project.path().join(".devcontainer")).unwrap();
    std::fs::write(
        project.path().join("Dockerfile"),
        format!(
            "FROM {BUSYBOX} AS build\n\
             ARG CODE\n\
             RUN --network=none echo \"about to fail with $CODE\" && \\\n    exit $CODE\n"
        ),
    )
    .unwrap();
    let mut source = fixture_source();
    source.dockerfile = project.path().join(".devcontainer/../Dockerfile");
    source.context = project.path().join(".devcontainer/..");
    source.target = Some("build".into());
    source.args = vec![("CODE".into(), "3".into())];

    let store_root = tempfile::tempdir().unwrap();
    let store = Store::open(store_root.path()).unwrap();
    let recorder = Recorder::default();
    let err = dockerfile::build_stage(
        &client,
        &source,
        &StageOptions::default(),
        &store,
        &recorder,
        &Cancel::default(),
    )
    .await
    .expect_err("the stage fails");

    let dockerfile::Error::StageFailed {
        line, step, tail, ..
    } = &err
    else {
        panic!("expected a failed stage, got {err:?}");
    };
    let text = err.to_string();
    assert_eq!(*line, Some(3), "{text}");
    // A single-stage Dockerfile's steps carry no stage name.
    assert!(step.as_deref().unwrap().starts_with("[2/2] RUN"), "{text}");
    assert!(text.contains("exit code: 3"), "{text}");
    assert!(text.contains("Dockerfile:3`"), "{text}");
    assert!(
        tail.iter().any(|l| l.contains("about to fail with 3")),
        "{tail:?}"
    );
    assert!(!err.is_invalid_input());
}

/// Writes an OCI layout containing busybox from the loopback registry plus one layer with a
/// random `/nonce` file. BuildKit has never seen that image, so it must read at least its
/// manifest, config and new layer from the session. Returns the manifest digest and the nonce.
async fn busybox_with_nonce(dir: &Path) -> (String, String) {
    let registry = RegistryClient::new(RegistryOptions::default());
    let reference = ImageRef::parse(BUSYBOX).unwrap();
    let manifest = registry.fetch_image_manifest(&reference).await.unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.bytes).unwrap();
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let write_blob = |bytes: &[u8]| {
        let hex = hex::encode(Sha256::digest(bytes));
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        format!("sha256:{hex}")
    };

    let mut layers = Vec::new();
    for layer in manifest["layers"].as_array().unwrap() {
        let digest = layer["digest"].as_str().unwrap();
        let bytes = registry.fetch_blob(&reference, digest).await.unwrap();
        assert_eq!(write_blob(&bytes), digest);
        layers.push(layer.clone());
    }
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let mut config: serde_json::Value = serde_json::from_slice(
        &registry
            .fetch_blob(&reference, config_digest)
            .await
            .unwrap(),
    )
    .unwrap();

    let nonce = format!("nonce-{:016x}", rand_u64());
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(nonce.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "nonce", nonce.as_bytes())
        .unwrap();
    let raw = tar.into_inner().unwrap();
    let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&raw)));
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    let compressed = gz.finish().unwrap();
    let layer_digest = write_blob(&compressed);
    layers.push(serde_json::json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
        "digest": layer_digest,
        "size": compressed.len(),
    }));
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .unwrap()
        .push(diff_id.into());
    if let Some(history) = config["history"].as_array_mut() {
        history.push(serde_json::json!({"created_by": "envc test: add /nonce"}));
    }

    let config_bytes = serde_json::to_vec(&config).unwrap();
    let new_manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": write_blob(&config_bytes),
            "size": config_bytes.len(),
        },
        "layers": layers,
    });
    let manifest_bytes = serde_json::to_vec(&new_manifest).unwrap();
    let manifest_digest = write_blob(&manifest_bytes);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_bytes.len(),
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    (manifest_digest, nonce)
}

fn rand_u64() -> u64 {
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .unwrap();
    u64::from_le_bytes(bytes)
}

fn amd64() -> pb::Platform {
    pb::Platform {
        architecture: envc::plan::host_architecture().into(),
        os: "linux".into(),
        ..pb::Platform::default()
    }
}

/// Solves `layout source -> exec copying /nonce to /proof`, exported as an OCI tar, and returns
/// the files of the result's last layer.
async fn solve_on_layout(
    client: &Client,
    layout_dir: &Path,
    digest: &str,
    name_session: bool,
) -> BTreeMap<String, Vec<u8>> {
    let out = tempfile::tempdir().unwrap();
    let mut spec = SessionSpec::new("layout-base", session::shared_key_for(layout_dir));
    spec.output = Some(out.path().join("image.tar"));
    spec.content_stores
        .insert(BASE_STORE.to_owned(), layout_dir.to_owned());
    let spec = Arc::new(spec);

    let session_id = if name_session { spec.id.as_str() } else { "" };
    let source = layout::layout_source(BASE_STORE, session_id, digest, &amd64());
    let (source_bytes, source_digest) = pb::encode_op(&source);
    let exec = Op {
        inputs: vec![Input {
            digest: source_digest.clone(),
            index: 0,
        }],
        op: Some(op::Op::Exec(ExecOp {
            meta: Some(Meta {
                args: vec!["/bin/sh".into(), "-c".into(), "cat /nonce > /proof".into()],
                env: vec![
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                ],
                cwd: "/".into(),
                ..Meta::default()
            }),
            mounts: vec![Mount {
                input: 0,
                dest: "/".into(),
                output: 0,
                ..Mount::default()
            }],
            network: pb::NetMode::None as i32,
            ..ExecOp::default()
        })),
        platform: Some(amd64()),
        constraints: Some(pb::WorkerConstraints::default()),
    };
    let (exec_bytes, exec_digest) = pb::encode_op(&exec);
    let terminal = Op {
        inputs: vec![Input {
            digest: exec_digest,
            index: 0,
        }],
        ..Op::default()
    };
    let definition = Definition {
        def: vec![source_bytes, exec_bytes, pb::encode_op(&terminal).0],
        metadata: BTreeMap::from([(source_digest, layout::layout_metadata("base layout"))]),
        ..Definition::default()
    };

    let io = client.session_transport(spec.headers()).await.unwrap();
    let served = spec.clone();
    let session = tokio::spawn(async move { session::serve(io, served).await });
    let response = client
        .solve(SolveRequest {
            r#ref: format!("envc-layout-test-{}", spec.id),
            definition: Some(definition),
            session: spec.id.clone(),
            exporters: vec![Exporter {
                r#type: "oci".into(),
                attrs: BTreeMap::new(),
            }],
            ..SolveRequest::default()
        })
        .await
        .unwrap_or_else(|err| panic!("the solve on the layout base fails: {err}"));
    session.abort();
    assert!(
        response
            .exporter_response
            .contains_key("containerimage.digest"),
        "{:?}",
        response.exporter_response
    );

    let exported = out.path().join("layout");
    std::fs::create_dir(&exported).unwrap();
    tar::Archive::new(std::fs::File::open(out.path().join("image.tar")).unwrap())
        .unpack(&exported)
        .unwrap();
    let index = read_json(&exported.join("index.json"));
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest = read_json(&blob(&exported, manifest_digest));
    let layers = manifest["layers"].as_array().unwrap();
    layer_files(&exported, &layers[layers.len() - 1..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layout_base_runs_exec() {
    let Some(address) = daemon() else { return };
    let _daemon = DAEMON.lock().await;
    let client = client(&address).await;

    for name_session in [true, false] {
        let layout_dir = tempfile::tempdir().unwrap();
        let (digest, nonce) = busybox_with_nonce(layout_dir.path()).await;
        let files = solve_on_layout(&client, layout_dir.path(), &digest, name_session).await;
        assert_eq!(
            files.get("proof").map(Vec::as_slice),
            Some(nonce.as_bytes()),
            "oci.session named: {name_session}; files: {:?}",
            files.keys().collect::<Vec<_>>()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_running_stage() {
    let Some(address) = daemon() else { return };
    let _daemon = DAEMON.lock().await;
    let client = client(&address).await;
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir(project.path().join(".devcontainer")).unwrap();
    // The nonce keeps BuildKit from taking the step from its cache.
    std::fs::write(
        project.path().join("Dockerfile"),
        format!(
            "FROM {BUSYBOX}\nRUN echo {:016x} && sleep 120\n",
            rand_u64()
        ),
    )
    .unwrap();
    let mut source = fixture_source();
    source.dockerfile = project.path().join("Dockerfile");
    source.context = project.path().to_owned();
    source.target = None;
    let store_root = tempfile::tempdir().unwrap();
    let store = Store::open(store_root.path()).unwrap();

    let cancel = Cancel::default();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        trigger.cancel();
    });
    let started = std::time::Instant::now();
    let result = dockerfile::build_stage(
        &client,
        &source,
        &StageOptions::default(),
        &store,
        &Recorder::default(),
        &cancel,
    )
    .await;

    assert!(
        matches!(result, Err(dockerfile::Error::Interrupted)),
        "{result:?}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "stopping took {:?}",
        started.elapsed()
    );
}
