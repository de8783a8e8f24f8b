//! The BuildKit wire layer against a real daemon: the BuildKit inside Docker 26 that
//! `scripts/buildkit.sh start` runs, or the daemon named by `ENVC_BUILDKIT_ADDR`. The LLB here is
//! built by hand. Without a daemon the tests print why and pass, except under CI (`CI` set),
//! where they fail.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt as _;
use tokio::io::AsyncReadExt as _;

use envc::engine::buildkit::client::{Client, Error};
use envc::engine::buildkit::connect::{self, Address, BoxedIo};
use envc::engine::buildkit::proto::control::{PruneRequest, SolveRequest, StatusResponse};
use envc::engine::buildkit::proto::pb::{self, op, ExecOp, Input, Meta, Mount, NetMode, Op};

const DEFAULT_ADDRESS: &str = "docker:///var/lib/envc-ci/buildkit/docker.sock";
const BASE_IMAGE: &str = "docker-image://127.0.0.1:5000/busybox:latest";

/// The HTTP/2 client preface a daemon sends first when it connects to a session.
const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Connects to the test daemon, or returns `None` (after printing why) when there is none and
/// `CI` is unset.
async fn daemon(test: &str) -> Option<Client> {
    let value = std::env::var("ENVC_BUILDKIT_ADDR").unwrap_or_else(|_| DEFAULT_ADDRESS.into());
    let address = Address::parse(&value).expect("ENVC_BUILDKIT_ADDR is a valid address");
    let missing = match &address {
        Address::Unix(path) | Address::Docker(path) if !path.exists() => {
            Some(format!("no socket at `{}`", path.display()))
        }
        _ => None,
    };
    let reason = match missing {
        Some(reason) => reason,
        None => match Client::connect(&address, None).await {
            Ok(client) => return Some(client),
            Err(err) => format!("{err}: {:?}", std::error::Error::source(&err)),
        },
    };

    if std::env::var_os("CI").is_some() {
        panic!("{test}: BuildKit at `{address}` is required under CI: {reason}");
    }
    eprintln!("skipping {test}: {reason} (start it with `scripts/buildkit.sh start`)");
    None
}

/// Returns a string no earlier run used, so that steps run instead of coming from the cache.
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn linux_amd64() -> Option<pb::Platform> {
    Some(pb::Platform {
        architecture: "amd64".into(),
        os: "linux".into(),
        ..pb::Platform::default()
    })
}

/// Builds an LLB graph: busybox from the loopback registry, one exec of `script` with no network over
/// it, and the terminal op. Returns the definition and the exec op's digest.
fn exec_graph(script: &str, run_id: &str) -> (pb::Definition, String) {
    let source = Op {
        op: Some(op::Op::Source(pb::SourceOp {
            identifier: BASE_IMAGE.into(),
            attrs: BTreeMap::new(),
        })),
        platform: linux_amd64(),
        ..Op::default()
    };
    let (source_bytes, source_digest) = pb::encode_op(&source);

    let exec = Op {
        inputs: vec![Input {
            digest: source_digest,
            index: 0,
        }],
        op: Some(op::Op::Exec(ExecOp {
            meta: Some(Meta {
                args: vec!["sh".into(), "-c".into(), script.into()],
                env: vec![
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
                    format!("ENVC_RUN={run_id}"),
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
            network: NetMode::None as i32,
            ..ExecOp::default()
        })),
        platform: linux_amd64(),
        ..Op::default()
    };
    let (exec_bytes, exec_digest) = pb::encode_op(&exec);

    let terminal = Op {
        inputs: vec![Input {
            digest: exec_digest.clone(),
            index: 0,
        }],
        ..Op::default()
    };
    let definition = pb::Definition {
        def: vec![source_bytes, exec_bytes, pb::encode_op(&terminal).0],
        ..pb::Definition::default()
    };
    (definition, exec_digest)
}

/// Runs a solve with no exporter while collecting its status updates.
async fn solve_with_status(
    client: &Client,
    definition: pb::Definition,
) -> (Result<(), Error>, Vec<StatusResponse>) {
    let build_ref = unique("envc-wire");
    let request = SolveRequest {
        r#ref: build_ref.clone(),
        definition: Some(definition),
        ..SolveRequest::default()
    };

    let updates = client
        .status(&build_ref)
        .take_while(|update| std::future::ready(update.is_ok()))
        .filter_map(|update| std::future::ready(update.ok()))
        .collect::<Vec<_>>();
    let solve = client.solve(request);
    let (solved, updates) = tokio::time::timeout(Duration::from_secs(120), async {
        tokio::join!(solve, updates)
    })
    .await
    .expect("the solve finishes within 120 s");
    (solved.map(|_| ()), updates)
}

#[tokio::test]
async fn info_reports_version() {
    let Some(client) = daemon("info_reports_version").await else {
        return;
    };

    let info = client.info().await.expect("Info");
    let version = info.buildkit_version.expect("a BuildKit version");
    assert!(!version.version.is_empty(), "{version:?}");

    let daemon_info = client.daemon_info().await.expect("Info and ListWorkers");
    assert_eq!(daemon_info.version, Some(version.version));
    assert!(!daemon_info.platforms.is_empty(), "{daemon_info:?}");
    if matches!(client.address(), Address::Docker(_)) {
        assert!(daemon_info.docker, "{daemon_info:?}");
        assert!(daemon_info.containerd_snapshotter, "{daemon_info:?}");
        assert!(daemon_info.exports_images());
    }
}

#[tokio::test]
async fn raw_llb_exec_solves() {
    let Some(client) = daemon("raw_llb_exec_solves").await else {
        return;
    };
    let (definition, exec_digest) = exec_graph("echo hi > /x", &unique("ok"));

    let (solved, updates) = solve_with_status(&client, definition).await;
    solved.expect("the solve succeeds");

    let exec_vertex = updates
        .iter()
        .flat_map(|update| &update.vertexes)
        .filter(|vertex| vertex.digest == exec_digest)
        .find(|vertex| vertex.completed.is_some());
    let exec_vertex = exec_vertex.expect("a completed status for the exec vertex");
    assert!(exec_vertex.error.is_empty(), "{exec_vertex:?}");
    assert!(!exec_vertex.cached, "{exec_vertex:?}");
    assert!(exec_vertex.name.contains("echo hi"), "{exec_vertex:?}");
}

#[tokio::test]
async fn failing_exec_keeps_message() {
    let Some(client) = daemon("failing_exec_keeps_message").await else {
        return;
    };
    let (definition, exec_digest) = exec_graph("echo failing >&2; exit 3", &unique("fail"));

    let (solved, updates) = solve_with_status(&client, definition).await;
    let err = solved.expect_err("the exec exits 3");

    let Error::Call {
        call,
        message,
        vertex,
        exit_code,
        ..
    } = &err
    else {
        panic!("not a call error: {err:?}");
    };
    assert_eq!(*call, "Solve");
    assert!(message.contains("exit code: 3"), "{message}");
    assert_eq!(vertex.as_deref(), Some(exec_digest.as_str()));
    assert_eq!(*exit_code, Some(3));
    assert!(err.to_string().contains("exit code: 3"), "{err}");

    let failed = updates
        .iter()
        .flat_map(|update| &update.vertexes)
        .find(|vertex| vertex.digest == exec_digest && !vertex.error.is_empty());
    assert!(failed.is_some(), "no failed exec vertex in {updates:?}");
    let logged = updates
        .iter()
        .flat_map(|update| &update.logs)
        .filter(|log| log.vertex == exec_digest)
        .any(|log| String::from_utf8_lossy(&log.msg).contains("failing"));
    assert!(logged, "the script's stderr is not in the status logs");
}

/// Lists the cache and prunes nothing: the daemon is shared, so its cache is left alone.
#[tokio::test]
async fn disk_usage_and_filtered_prune() {
    let Some(client) = daemon("disk_usage_and_filtered_prune").await else {
        return;
    };
    let (definition, _) = exec_graph("echo cached > /y", "disk-usage");
    let (solved, _) = solve_with_status(&client, definition).await;
    solved.expect("the solve succeeds");

    let records = client.disk_usage().await.expect("DiskUsage");
    assert!(!records.is_empty(), "no cache records after a solve");
    assert!(
        records.iter().all(|record| !record.id.is_empty()),
        "{records:?}"
    );

    let request = PruneRequest {
        filter: vec![format!("id=={}", unique("no-such-record"))],
        all: true,
        ..PruneRequest::default()
    };
    let freed = client.prune(request).await.expect("Prune");
    assert_eq!(freed, 0);
}

#[tokio::test]
async fn missing_daemon_is_connect_error() {
    let dir = tempfile::tempdir().expect("temporary folder");
    for address in [
        Address::Docker(dir.path().join("docker.sock")),
        Address::Unix(dir.path().join("buildkitd.sock")),
    ] {
        let err = Client::connect(&address, None)
            .await
            .expect_err("no daemon");
        assert!(
            matches!(err, Error::Connect(connect::Error::Unreachable { .. })),
            "{err:?}"
        );
        assert!(err.to_string().contains(&address.to_string()), "{err}");
        assert!(err
            .hint()
            .is_some_and(|hint| hint.contains("BUILDKIT_HOST")));
        assert!(!err.is_invalid_input());
    }
}

fn session_headers() -> Vec<(String, String)> {
    let session_id = unique("envc-wire-session");
    vec![
        (
            "X-Docker-Expose-Session-Uuid".to_string(),
            session_id.clone(),
        ),
        (
            "X-Docker-Expose-Session-Name".to_string(),
            "envc-wire".to_string(),
        ),
        ("X-Docker-Expose-Session-Sharedkey".to_string(), session_id),
        (
            "X-Docker-Expose-Session-Grpc-Method".to_string(),
            "/grpc.health.v1.Health/Check".to_string(),
        ),
    ]
}

/// Reads what a daemon sends first on a session's byte stream.
async fn expect_preface(mut io: BoxedIo) {
    let mut preface = vec![0u8; HTTP2_PREFACE.len()];
    tokio::time::timeout(Duration::from_secs(10), io.read_exact(&mut preface))
        .await
        .expect("the daemon connects within 10 s")
        .expect("the HTTP/2 preface");
    assert_eq!(preface, HTTP2_PREFACE);
}

#[tokio::test]
async fn session_transport_reaches_daemon() {
    let Some(client) = daemon("session_transport_reaches_daemon").await else {
        return;
    };
    let io = client
        .session_transport(session_headers())
        .await
        .expect("session transport");
    expect_preface(io).await;
}

#[tokio::test]
async fn control_session_reaches_daemon() {
    let Some(client) = daemon("control_session_reaches_daemon").await else {
        return;
    };
    let io = client
        .control_session(session_headers())
        .expect("Control/Session stream");
    expect_preface(io).await;
}
