//! envc's session server against a real BuildKit: the Docker 26 daemon of
//! `scripts/buildkit.sh` (address in `ENVC_BUILDKIT_ADDR`), pulling busybox from the loopback
//! registry at 127.0.0.1:5000. BuildKit reads a local folder through the session's file sync
//! and sends the `oci` exporter's tar back through its file send. Without a daemon each test
//! prints why and passes, except under CI (`CI` set), where it fails.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use envc::engine::buildkit::client::Client;
use envc::engine::buildkit::connect::Address;
use envc::engine::buildkit::proto::control::{Exporter, SolveRequest, SolveResponse};
use envc::engine::buildkit::proto::pb::{
    self, file_action, op, Definition, FileAction, FileActionCopy, FileOp, Input, Op, SourceOp,
};
use envc::engine::buildkit::session::{self, SessionSpec};

const DEFAULT_ADDR: &str = "docker:///var/lib/envc-ci/buildkit/docker.sock";
const BUSYBOX: &str = "127.0.0.1:5000/busybox:latest";

/// Returns the daemon's address, or `None` (after printing why, or failing under CI) when it
/// is absent.
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

/// Connects to the daemon, opens the session's transport and serves it in the background; the
/// session is running before this returns, so a Solve sent next finds it.
async fn start_session(address: &Address, spec: Arc<SessionSpec>) -> Client {
    start_session_on(address, spec, Transport::ByAddress).await
}

/// How the session reaches the daemon.
#[derive(Debug, Clone, Copy)]
enum Transport {
    /// `POST /session` on a Docker daemon, `Control/Session` on buildkitd.
    ByAddress,
    /// `Control/Session`, whatever the daemon.
    ControlStream,
}

async fn start_session_on(
    address: &Address,
    spec: Arc<SessionSpec>,
    transport: Transport,
) -> Client {
    let client = Client::connect(address, None)
        .await
        .unwrap_or_else(|e| panic!("no BuildKit at `{address}`: {e}"));
    let io = match transport {
        Transport::ByAddress => client.session_transport(spec.headers()).await,
        Transport::ControlStream => client.control_session(spec.headers()),
    }
    .expect("the daemon accepts the session");
    tokio::spawn(async move {
        if let Err(e) = session::serve(io, spec).await {
            eprintln!("session ended: {e}");
        }
    });
    client
}

async fn solve(client: &Client, request: SolveRequest) -> Result<SolveResponse, String> {
    client.solve(request).await.map_err(|e| e.to_string())
}

fn write(root: &Path, rel: &str, contents: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

/// A project folder with files that patterns below leave out.
fn context_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "app/main.sh", "echo hello\n");
    write(dir.path(), "app/notes.txt", "notes\n");
    write(dir.path(), "debug.log", "noise\n");
    write(dir.path(), "keep.log", "kept\n");
    write(dir.path(), "secret/token", "hunter2\n");
    write(dir.path(), "deep/a/b/c.txt", "deep\n");
    dir
}

/// One entry of a layer tar.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LayerEntry {
    kind: tar::EntryType,
    mode: u32,
    data: Vec<u8>,
    link: String,
}

/// The entries of the last layer of the only image in an OCI layout tar.
fn last_layer(oci_tar: &Path) -> BTreeMap<String, LayerEntry> {
    let mut blobs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut archive = tar::Archive::new(std::fs::File::open(oci_tar).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        blobs.insert(path, data);
    }
    let index: serde_json::Value =
        serde_json::from_slice(blobs.get("index.json").expect("the tar holds index.json")).unwrap();
    assert!(blobs.contains_key("oci-layout"), "{:?}", blobs.keys());
    let blob = |digest: &str| {
        let path = format!("blobs/{}", digest.replacen(':', "/", 1));
        blobs
            .get(&path)
            .unwrap_or_else(|| panic!("missing {path}"))
            .clone()
    };
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&blob(manifest_digest)).unwrap();
    let layer = manifest["layers"].as_array().unwrap().last().unwrap();
    let compressed = blob(layer["digest"].as_str().unwrap());
    let media_type = layer["mediaType"].as_str().unwrap();
    let raw: Box<dyn Read> = if media_type.ends_with("gzip") {
        Box::new(flate2::read::GzDecoder::new(compressed.as_slice()))
    } else {
        assert!(
            media_type.ends_with("tar"),
            "unexpected layer type {media_type}"
        );
        Box::new(compressed.as_slice())
    };
    let mut entries = BTreeMap::new();
    for entry in tar::Archive::new(raw).entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry
            .path()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches('/')
            .to_owned();
        let header = entry.header().clone();
        let link = entry
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        entries.insert(
            path,
            LayerEntry {
                kind: header.entry_type(),
                mode: header.mode().unwrap(),
                data,
                link,
            },
        );
    }
    entries
}

/// The regular files of the last layer, by path.
fn last_layer_files(oci_tar: &Path) -> BTreeMap<String, Vec<u8>> {
    last_layer(oci_tar)
        .into_iter()
        .filter(|(_, e)| e.kind.is_file())
        .map(|(path, e)| (path, e.data))
        .collect()
}

fn encoded(op: &Op) -> (Vec<u8>, String) {
    pb::encode_op(op)
}

fn oci_exporter() -> Vec<Exporter> {
    vec![Exporter {
        r#type: "oci".into(),
        attrs: BTreeMap::new(),
    }]
}

fn output_spec(name: &str, out: &Path, dirs: &[(&str, PathBuf)]) -> SessionSpec {
    let mut spec = SessionSpec::new(name, session::shared_key_for(out));
    spec.output = Some(out.join("image.tar"));
    for (name, dir) in dirs {
        spec.dirs.insert((*name).to_owned(), dir.clone());
    }
    spec
}

/// LLB that copies the session's `context` folder (less `excludes`) to `/ctx` in busybox.
fn copy_local_into_busybox(session_id: &str, excludes: &[&str]) -> Definition {
    let image = Op {
        op: Some(op::Op::Source(SourceOp {
            identifier: format!("docker-image://{BUSYBOX}"),
            attrs: BTreeMap::new(),
        })),
        ..Op::default()
    };
    let excludes = serde_json::to_string(excludes).unwrap();
    let local = Op {
        op: Some(op::Op::Source(SourceOp {
            identifier: "local://context".into(),
            attrs: BTreeMap::from([
                ("local.session".to_owned(), session_id.to_owned()),
                ("local.sharedkeyhint".to_owned(), "context".to_owned()),
                ("local.excludepatterns".to_owned(), excludes),
            ]),
        })),
        ..Op::default()
    };
    let (image_bytes, image_digest) = encoded(&image);
    let (local_bytes, local_digest) = encoded(&local);
    let copy = Op {
        inputs: vec![
            Input {
                digest: image_digest,
                index: 0,
            },
            Input {
                digest: local_digest,
                index: 0,
            },
        ],
        op: Some(op::Op::File(FileOp {
            actions: vec![FileAction {
                input: 0,
                secondary_input: 1,
                output: 0,
                action: Some(file_action::Action::Copy(FileActionCopy {
                    src: "/".into(),
                    dest: "/ctx".into(),
                    mode: -1,
                    dir_copy_contents: true,
                    create_dest_path: true,
                    follow_symlink: true,
                    allow_wildcard: true,
                    allow_empty_wildcard: true,
                    timestamp: -1,
                    ..FileActionCopy::default()
                })),
            }],
        })),
        ..Op::default()
    };
    let (copy_bytes, copy_digest) = encoded(&copy);
    let terminal = Op {
        inputs: vec![Input {
            digest: copy_digest,
            index: 0,
        }],
        ..Op::default()
    };
    let (terminal_bytes, _) = encoded(&terminal);

    Definition {
        def: vec![image_bytes, local_bytes, copy_bytes, terminal_bytes],
        ..Definition::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_source_exports_oci_tar() {
    local_source_round_trip(Transport::ByAddress).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_session_stream_works() {
    local_source_round_trip(Transport::ControlStream).await;
}

async fn local_source_round_trip(transport: Transport) {
    let Some(address) = daemon() else { return };
    let context = context_folder();
    let out = tempfile::tempdir().unwrap();
    let spec = Arc::new(output_spec(
        "local-source",
        out.path(),
        &[("context", context.path().to_owned())],
    ));

    let excludes = ["*.log", "!keep.log", "secret"];
    let definition = copy_local_into_busybox(&spec.id, &excludes);
    let client = start_session_on(&address, spec.clone(), transport).await;
    let response = solve(
        &client,
        SolveRequest {
            r#ref: format!("envc-session-test-{}", spec.id),
            definition: Some(definition),
            session: spec.id.clone(),
            exporters: oci_exporter(),
            ..SolveRequest::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("solve failed: {e}"));
    assert!(
        response
            .exporter_response
            .contains_key("containerimage.digest"),
        "{:?}",
        response.exporter_response
    );

    let files = last_layer_files(spec.output.as_ref().unwrap());
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "ctx/app/main.sh",
            "ctx/app/notes.txt",
            "ctx/deep/a/b/c.txt",
            "ctx/keep.log"
        ]
    );
    assert_eq!(files["ctx/app/main.sh"], b"echo hello\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dockerfile_frontend_reads_session_folders() {
    let Some(address) = daemon() else { return };
    let context = context_folder();
    write(
        context.path(),
        ".dockerignore",
        "# comments and blank lines are skipped\n\n*.log\n!keep.log\n/secret\n**/c.txt\n",
    );
    let dockerfile_dir = tempfile::tempdir().unwrap();
    write(
        dockerfile_dir.path(),
        "build.Dockerfile",
        &format!(
            "ARG BASE={BUSYBOX}\n\
             FROM ${{BASE}} AS build\n\
             ARG GREETING\n\
             COPY . /src\n\
             RUN --network=none echo \"$GREETING\" > /greeting && cd /src && find . | sort > /listing\n\
             FROM {BUSYBOX} AS final\n\
             COPY --from=build /greeting /listing /out/\n\
             FROM final AS unused\n\
             RUN --network=none false\n"
        ),
    );
    let out = tempfile::tempdir().unwrap();
    let spec = Arc::new(output_spec(
        "dockerfile",
        out.path(),
        &[
            ("context", context.path().to_owned()),
            ("dockerfile", dockerfile_dir.path().to_owned()),
        ],
    ));

    let client = start_session(&address, spec.clone()).await;
    solve(
        &client,
        SolveRequest {
            r#ref: format!("envc-session-test-{}", spec.id),
            session: spec.id.clone(),
            frontend: "dockerfile.v0".into(),
            frontend_attrs: BTreeMap::from([
                ("filename".to_owned(), "build.Dockerfile".to_owned()),
                ("build-arg:GREETING".to_owned(), "hi from envc".to_owned()),
                ("target".to_owned(), "final".to_owned()),
            ]),
            exporters: oci_exporter(),
            ..SolveRequest::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("solve failed: {e}"));

    let files = last_layer_files(spec.output.as_ref().unwrap());
    assert_eq!(files["out/greeting"], b"hi from envc\n");
    let listing = String::from_utf8(files["out/listing"].clone()).unwrap();
    let listed: Vec<&str> = listing.lines().collect();
    assert_eq!(
        listed,
        [
            ".",
            "./.dockerignore",
            "./app",
            "./app/main.sh",
            "./app/notes.txt",
            "./deep",
            "./deep/a",
            "./deep/a/b",
            "./keep.log",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unshared_folder_fails_the_solve() {
    let Some(address) = daemon() else { return };
    let out = tempfile::tempdir().unwrap();
    let spec = Arc::new(output_spec("missing-dir", out.path(), &[]));
    let local = Op {
        op: Some(op::Op::Source(SourceOp {
            identifier: "local://elsewhere".into(),
            attrs: BTreeMap::from([("local.session".to_owned(), spec.id.clone())]),
        })),
        ..Op::default()
    };
    let (local_bytes, local_digest) = encoded(&local);
    let terminal = Op {
        inputs: vec![Input {
            digest: local_digest,
            index: 0,
        }],
        ..Op::default()
    };
    let client = start_session(&address, spec.clone()).await;
    let message = solve(
        &client,
        SolveRequest {
            r#ref: format!("envc-session-test-{}", spec.id),
            definition: Some(Definition {
                def: vec![local_bytes, encoded(&terminal).0],
                ..Definition::default()
            }),
            session: spec.id.clone(),
            exporters: oci_exporter(),
            ..SolveRequest::default()
        },
    )
    .await
    .expect_err("the solve fails");
    assert!(message.contains("`elsewhere`"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_kinds_and_same_size_change() {
    use std::os::unix::fs::{symlink, PermissionsExt};

    let Some(address) = daemon() else { return };
    let context = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(context.path().join("big.bin"), &big).unwrap();
    write(context.path(), "bin/run.sh", "#!/bin/sh\necho run\n");
    let mode = |path: &str, mode: u32| {
        std::fs::set_permissions(context.path().join(path), PermissionsExt::from_mode(mode))
            .unwrap()
    };
    mode("bin/run.sh", 0o755);
    symlink("bin/run.sh", context.path().join("link")).unwrap();
    std::fs::hard_link(
        context.path().join("bin/run.sh"),
        context.path().join("hard"),
    )
    .unwrap();
    std::fs::create_dir(context.path().join("empty")).unwrap();
    write(context.path(), "data.txt", "one\n");
    mode("data.txt", 0o640);

    let shared_key = session::shared_key_for(context.path());
    let build = |out: PathBuf| {
        let address = address.clone();
        let mut spec = SessionSpec::new("file-kinds", shared_key.clone());
        spec.output = Some(out.join("image.tar"));
        spec.dirs
            .insert("context".into(), context.path().to_owned());
        let spec = Arc::new(spec);
        async move {
            let client = start_session(&address, spec.clone()).await;
            solve(
                &client,
                SolveRequest {
                    r#ref: format!("envc-session-test-{}", spec.id),
                    definition: Some(copy_local_into_busybox(&spec.id, &[])),
                    session: spec.id.clone(),
                    exporters: oci_exporter(),
                    ..SolveRequest::default()
                },
            )
            .await
            .unwrap_or_else(|e| panic!("solve failed: {e}"));
            last_layer(spec.output.as_ref().unwrap())
        }
    };

    let first_out = tempfile::tempdir().unwrap();
    let layer = build(first_out.path().to_owned()).await;
    assert_eq!(layer["ctx/big.bin"].data, big);
    assert_eq!(layer["ctx/bin/run.sh"].mode & 0o7777, 0o755);
    assert_eq!(layer["ctx/data.txt"].mode & 0o7777, 0o640);
    assert_eq!(layer["ctx/data.txt"].data, b"one\n");
    assert_eq!(layer["ctx/link"].kind, tar::EntryType::Symlink);
    assert_eq!(layer["ctx/link"].link, "bin/run.sh");
    assert_eq!(layer["ctx/empty"].kind, tar::EntryType::Directory);
    // The second name of a hard-linked file arrives as a link to the first.
    assert_eq!(layer["ctx/hard"].kind, tar::EntryType::Link);
    assert_eq!(layer["ctx/hard"].link, "ctx/bin/run.sh");

    // Same size, new contents: only the modification time tells BuildKit's copy apart.
    write(context.path(), "data.txt", "two\n");
    let second_out = tempfile::tempdir().unwrap();
    let layer = build(second_out.path().to_owned()).await;
    assert_eq!(layer["ctx/data.txt"].data, b"two\n");
    assert_eq!(layer["ctx/big.bin"].data, big);
}

/// A registry stand-in on 127.0.0.1 that demands basic auth: it records every `Authorization`
/// header, answers 401 without the right one and 404 (no such manifest) with it.
async fn start_auth_registry(expected: String) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let seen: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let record = record.clone();
            let expected = expected.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                    // A TLS handshake: answer in plain HTTP, as an HTTP-only registry does, so
                    // the client falls back to HTTP.
                    if request.first() == Some(&0x16) {
                        let _ = stream.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n").await;
                        return;
                    }
                }
                let text = String::from_utf8_lossy(&request);
                let auth = text
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("authorization")
                            .then(|| value.trim().to_owned())
                    })
                    .unwrap_or_default();
                record.lock().unwrap().push(auth.clone());
                let response = if auth == expected {
                    let body =
                        r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
                    format!(
                        "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\
                         Docker-Distribution-API-Version: registry/2.0\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"envc-test\"\r\n\
                     Docker-Distribution-API-Version: registry/2.0\r\n\
                     Content-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_owned()
                };
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (address, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_credentials_come_from_session() {
    use base64::Engine as _;

    let Some(address) = daemon() else { return };
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("envc:s3cret")
    );
    let (registry, seen) = start_auth_registry(expected.clone()).await;
    let out = tempfile::tempdir().unwrap();
    let mut spec = output_spec("auth", out.path(), &[]);
    spec.credentials
        .insert(registry.clone(), ("envc".into(), "s3cret".into()));
    let spec = Arc::new(spec);

    let image = Op {
        op: Some(op::Op::Source(SourceOp {
            identifier: format!("docker-image://{registry}/private/image:latest"),
            attrs: BTreeMap::new(),
        })),
        ..Op::default()
    };
    let (image_bytes, image_digest) = encoded(&image);
    let terminal = Op {
        inputs: vec![Input {
            digest: image_digest,
            index: 0,
        }],
        ..Op::default()
    };
    let client = start_session(&address, spec.clone()).await;
    let message = solve(
        &client,
        SolveRequest {
            r#ref: format!("envc-session-test-{}", spec.id),
            definition: Some(Definition {
                def: vec![image_bytes, encoded(&terminal).0],
                ..Definition::default()
            }),
            session: spec.id.clone(),
            ..SolveRequest::default()
        },
    )
    .await
    .expect_err("the stand-in registry has no images");
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.contains(&expected),
        "BuildKit never sent the session's credentials; it sent {seen:?} and failed with: {message}"
    );
    assert!(
        seen.iter().any(String::is_empty),
        "the first request is anonymous: {seen:?}"
    );
}
