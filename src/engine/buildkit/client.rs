//! A client of BuildKit's Control service: solve, status, daemon facts, cache pruning, and the
//! byte stream a session runs on.
//!
//! Each call is written by hand over `tonic::client::Grpc` with prost's codec. Cancelling a
//! call's future resets its HTTP/2 stream, so dropping a [`Client::solve`] cancels the build on
//! the daemon. The session's gRPC server, and what the results mean, belong to other modules.

use std::collections::BTreeMap;

use futures_util::{Stream, StreamExt as _};
use http::uri::PathAndQuery;
use prost::Message as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{MetadataKey, MetadataValue};
use tonic::transport::Channel;
use tonic_prost::ProstCodec;

use super::connect::{self, Address, BoxedIo, TlsFiles};
use super::proto::control::{
    BytesMessage, DiskUsageRequest, DiskUsageResponse, ErrorVertex, ExitMessage, InfoRequest,
    InfoResponse, ListWorkersRequest, ListWorkersResponse, PruneRequest, RpcStatus, SolveRequest,
    SolveResponse, StatusRequest, StatusResponse, UsageRecord, WorkerRecord,
};
use super::proto::pb::Platform;

const SOLVE: &str = "/moby.buildkit.v1.Control/Solve";
const STATUS: &str = "/moby.buildkit.v1.Control/Status";
const INFO: &str = "/moby.buildkit.v1.Control/Info";
const LIST_WORKERS: &str = "/moby.buildkit.v1.Control/ListWorkers";
const PRUNE: &str = "/moby.buildkit.v1.Control/Prune";
const DISK_USAGE: &str = "/moby.buildkit.v1.Control/DiskUsage";
const SESSION: &str = "/moby.buildkit.v1.Control/Session";

/// The largest message accepted from the daemon, since status batches with long logs can be large.
const MAX_DECODING_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// Size of one chunk sent over a tunnelled session, and of the buffer between the two sides.
const SESSION_CHUNK: usize = 32 * 1024;

/// The worker label that names the worker's snapshotter, such as `overlayfs`.
pub const SNAPSHOTTER_LABEL: &str = "org.mobyproject.buildkit.worker.snapshotter";

/// The worker label that names the executor: `oci` (runc) or `containerd`.
pub const EXECUTOR_LABEL: &str = "org.mobyproject.buildkit.worker.executor";

/// The worker label of a containerd worker's containerd namespace (`moby` inside Docker).
pub const CONTAINERD_NAMESPACE_LABEL: &str = "org.mobyproject.buildkit.worker.containerd.namespace";

/// The worker label only a Docker daemon's embedded BuildKit sets.
pub const DOCKER_GATEWAY_LABEL: &str = "org.mobyproject.buildkit.worker.moby.host-gateway-ip";

/// Errors from BuildKit's Control service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Connect(#[from] connect::Error),
    /// Something listens at the address, but the first call failed.
    #[error("no BuildKit responded at `{address}`: {}", .source.message())]
    NotBuildKit {
        address: String,
        #[source]
        source: Box<tonic::Status>,
    },
    /// An error the daemon returned for a call, with its message kept as BuildKit wrote it.
    #[error("BuildKit {call} failed: {message}")]
    Call {
        call: &'static str,
        code: tonic::Code,
        message: String,
        /// The digest of the vertex that failed, when BuildKit named one.
        vertex: Option<String>,
        /// The exit code of the process that failed, when one did.
        exit_code: Option<u32>,
    },
    #[error("invalid session header `{name}`: {reason}")]
    InvalidSessionHeader { name: String, reason: String },
    #[error("failed to open a session with BuildKit at `{address}`")]
    Session {
        address: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// True when the user gave a value envc cannot use (exit code 2).
    pub fn is_invalid_input(&self) -> bool {
        match self {
            Error::Connect(err) => err.is_invalid_input(),
            _ => false,
        }
    }

    /// Returns the next step for the user.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Connect(err) => err.hint(),
            Error::NotBuildKit { .. } => Some(connect::UNREACHABLE_HINT.into()),
            Error::Call {
                code: tonic::Code::Unavailable,
                ..
            } => Some("check that the BuildKit daemon is still running".into()),
            Error::Call {
                code: tonic::Code::Unimplemented,
                call,
                ..
            } => Some(format!(
                "this BuildKit has no `{call}` call; use a newer buildkitd, or Docker 26 or newer"
            )),
            Error::Session { .. } => {
                Some("the daemon must accept sessions: buildkitd, or Docker 26 or newer".into())
            }
            _ => None,
        }
    }

    /// Returns the gRPC code of a failed call, when the daemon returned one.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Error::Call { code, .. } => Some(*code),
            Error::NotBuildKit { source, .. } => Some(source.code()),
            _ => None,
        }
    }

    fn call(call: &'static str, status: tonic::Status) -> Error {
        let details = ErrorDetails::decode(status.details());
        Error::Call {
            call,
            code: status.code(),
            message: status.message().to_string(),
            vertex: details.vertex,
            exit_code: details.exit_code,
        }
    }
}

/// The typed errors BuildKit attaches to a failed call's status details, as far as envc reads
/// them. Each detail is JSON (type URL ending in `+json`, BuildKit v0.8 and later) or protobuf.
#[derive(Debug, Default, PartialEq, Eq)]
struct ErrorDetails {
    vertex: Option<String>,
    exit_code: Option<u32>,
}

impl ErrorDetails {
    fn decode(bytes: &[u8]) -> ErrorDetails {
        let mut details = ErrorDetails::default();
        let Ok(status) = RpcStatus::decode(bytes) else {
            return details;
        };

        for any in &status.details {
            let (type_name, json) = match any.type_url.strip_suffix("+json") {
                Some(type_name) => (type_name, true),
                None => (any.type_url.as_str(), false),
            };
            if type_name.ends_with("errdefs.Vertex") {
                let vertex = detail::<ErrorVertex>(&any.value, json).map(|vertex| vertex.digest);
                details.vertex = vertex
                    .filter(|digest| !digest.is_empty())
                    .or(details.vertex);
            } else if type_name.ends_with("ExitMessage") {
                let exit = detail::<ExitMessage>(&any.value, json).map(|exit| exit.code);
                details.exit_code = exit.or(details.exit_code);
            }
        }
        details
    }
}

fn detail<T: prost::Message + Default + serde::de::DeserializeOwned>(
    value: &[u8],
    json: bool,
) -> Option<T> {
    if json {
        serde_json::from_slice(value).ok()
    } else {
        T::decode(value).ok()
    }
}

/// A connection to one BuildKit daemon. Clones share the connection.
#[derive(Clone)]
pub struct Client {
    grpc: tonic::client::Grpc<Channel>,
    address: Address,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to the daemon at `address` and checks that it is BuildKit by asking for its
    /// version (or, on a BuildKit older than the `Info` call, its workers).
    ///
    /// # Errors
    ///
    /// [`Error::Connect`] when the address or TLS settings cannot be used or nothing can be
    /// reached there, and [`Error::NotBuildKit`] when the listener there is not a BuildKit daemon.
    pub async fn connect(address: &Address, tls: Option<&TlsFiles>) -> Result<Client, Error> {
        let channel = connect::channel(address, tls).await?;
        let grpc =
            tonic::client::Grpc::new(channel).max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE);
        let client = Client {
            grpc,
            address: address.clone(),
        };

        let not_buildkit = |status: tonic::Status| Error::NotBuildKit {
            address: address.to_string(),
            source: Box::new(status),
        };
        // A listener that accepts and never responds must not hang the build.
        let info = client.unary::<_, InfoResponse>(INFO, InfoRequest {});
        let answer = tokio::time::timeout(connect::CONNECT_TIMEOUT, info)
            .await
            .unwrap_or_else(|_| {
                Err(tonic::Status::deadline_exceeded(format!(
                    "no answer to BuildKit's `Info` call within {} s",
                    connect::CONNECT_TIMEOUT.as_secs()
                )))
            });
        match answer {
            Ok(_) => Ok(client),
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                let request = ListWorkersRequest::default();
                client
                    .unary::<_, ListWorkersResponse>(LIST_WORKERS, request)
                    .await
                    .map_err(not_buildkit)?;
                Ok(client)
            }
            Err(status) => Err(not_buildkit(status)),
        }
    }

    /// Returns the address this client connected to.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Returns the daemon's BuildKit version.
    ///
    /// # Errors
    ///
    /// [`Error::Call`] with code `Unimplemented` on a BuildKit older than v0.11.
    pub async fn info(&self) -> Result<InfoResponse, Error> {
        self.unary(INFO, InfoRequest {})
            .await
            .map_err(|status| Error::call("Info", status))
    }

    /// Returns the facts the engine checks before a build, from `Info` (when the daemon has
    /// it) and `ListWorkers`.
    pub async fn daemon_info(&self) -> Result<DaemonInfo, Error> {
        let info = match self.info().await {
            Ok(info) => Some(info),
            Err(err) if err.code() == Some(tonic::Code::Unimplemented) => None,
            Err(err) => return Err(err),
        };
        let workers = self.list_workers().await?;
        Ok(describe(info.as_ref(), &workers))
    }

    /// Returns the daemon's workers with their labels and platforms.
    pub async fn list_workers(&self) -> Result<Vec<WorkerRecord>, Error> {
        self.unary::<_, ListWorkersResponse>(LIST_WORKERS, ListWorkersRequest::default())
            .await
            .map(|response| response.record)
            .map_err(|status| Error::call("ListWorkers", status))
    }

    /// Runs a solve and returns what its exporters reported. Follow its progress with
    /// [`Client::status`] under the same `r#ref`.
    ///
    /// # Errors
    ///
    /// [`Error::Call`] with BuildKit's message when the build fails, such as a process that
    /// exited with a non-zero code.
    pub async fn solve(&self, request: SolveRequest) -> Result<SolveResponse, Error> {
        self.unary(SOLVE, request)
            .await
            .map_err(|status| Error::call("Solve", status))
    }

    /// Streams the progress of the solve with `build_ref` until it ends. The call starts when
    /// the stream is first polled.
    pub fn status(
        &self,
        build_ref: &str,
    ) -> impl Stream<Item = Result<StatusResponse, Error>> + Send + Unpin + 'static {
        let client = self.clone();
        let request = StatusRequest {
            r#ref: build_ref.to_string(),
        };
        let start = async move {
            client
                .server_streaming::<_, StatusResponse>(STATUS, request)
                .await
        };

        futures_util::stream::once(Box::pin(start))
            .map(|started| match started {
                Ok(updates) => updates.left_stream(),
                Err(status) => {
                    futures_util::stream::once(std::future::ready(Err(status))).right_stream()
                }
            })
            .flatten()
            .map(|update| update.map_err(|status| Error::call("Status", status)))
    }

    /// Removes every cache record the daemon can remove and returns the bytes freed.
    pub async fn prune_all(&self) -> Result<u64, Error> {
        let request = PruneRequest {
            all: true,
            ..PruneRequest::default()
        };
        self.prune(request).await
    }

    /// Removes the cache records `request` selects and returns the bytes freed.
    pub async fn prune(&self, request: PruneRequest) -> Result<u64, Error> {
        let mut records = self
            .server_streaming::<_, UsageRecord>(PRUNE, request)
            .await
            .map_err(|status| Error::call("Prune", status))?;

        let mut freed = 0u64;
        while let Some(record) = records.next().await {
            let record = record.map_err(|status| Error::call("Prune", status))?;
            freed += u64::try_from(record.size).unwrap_or(0);
        }
        Ok(freed)
    }

    /// Returns the daemon's cache records.
    pub async fn disk_usage(&self) -> Result<Vec<UsageRecord>, Error> {
        self.unary::<_, DiskUsageResponse>(DISK_USAGE, DiskUsageRequest::default())
            .await
            .map(|response| response.record)
            .map_err(|status| Error::call("DiskUsage", status))
    }

    /// Opens the byte stream a session's gRPC server runs on, sending `headers` (the
    /// `X-Docker-Expose-Session-*` names, one entry per value). For a Docker daemon this is a
    /// new `POST /session` upgraded to h2c. For buildkitd it is a `Control/Session` stream whose
    /// messages carry the bytes, with the headers sent as gRPC metadata.
    ///
    /// # Errors
    ///
    /// [`Error::Session`] when the Docker daemon rejects the upgrade, and
    /// [`Error::InvalidSessionHeader`] for a header that cannot be sent. On buildkitd, a
    /// rejected stream shows as the returned stream's end.
    pub async fn session_transport(
        &self,
        headers: Vec<(String, String)>,
    ) -> Result<BoxedIo, Error> {
        match &self.address {
            Address::Docker(sock) => connect::docker_upgrade(sock, "/session", &headers)
                .await
                .map_err(|source| Error::Session {
                    address: self.address.to_string(),
                    source,
                }),
            Address::Unix(_) | Address::Tcp { .. } => self.control_session(headers),
        }
    }

    /// Runs `Control/Session` in the background and returns its bytes as a stream: each write
    /// becomes one message, and reads return the incoming messages' data in order. This is the
    /// session transport of buildkitd; [`Client::session_transport`] picks it by address.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSessionHeader`] for a header that cannot be sent as gRPC metadata.
    pub fn control_session(&self, headers: Vec<(String, String)>) -> Result<BoxedIo, Error> {
        let (outgoing, receiver) = mpsc::channel::<BytesMessage>(16);
        let mut request = tonic::Request::new(ReceiverStream::new(receiver));
        for (name, value) in &headers {
            let invalid = |reason: String| Error::InvalidSessionHeader {
                name: name.clone(),
                reason,
            };
            let key = MetadataKey::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|err| invalid(err.to_string()))?;
            let value =
                MetadataValue::try_from(value.as_str()).map_err(|err| invalid(err.to_string()))?;
            request.metadata_mut().append(key, value);
        }

        let (ours, theirs) = tokio::io::duplex(SESSION_CHUNK);
        let (mut from_server, mut to_server) = tokio::io::split(theirs);

        tokio::spawn(async move {
            let mut chunk = vec![0u8; SESSION_CHUNK];
            loop {
                let n = match from_server.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let message = BytesMessage {
                    data: chunk[..n].to_vec(),
                };
                if outgoing.send(message).await.is_err() {
                    break;
                }
            }
        });

        let client = self.clone();
        tokio::spawn(async move {
            let result = async {
                let mut grpc = client.grpc.clone();
                grpc.ready()
                    .await
                    .map_err(|err| tonic::Status::unavailable(err.to_string()))?;
                let codec = ProstCodec::<BytesMessage, BytesMessage>::default();
                let response = grpc
                    .streaming(request, PathAndQuery::from_static(SESSION), codec)
                    .await?;
                let mut incoming = response.into_inner();
                while let Some(message) = incoming.message().await? {
                    if to_server.write_all(&message.data).await.is_err() {
                        break;
                    }
                }
                Ok::<_, tonic::Status>(())
            }
            .await;
            if let Err(status) = result {
                tracing::debug!("session stream to `{}` ended: {status}", client.address);
            }
            let _ = to_server.shutdown().await;
        });

        Ok(Box::new(ours))
    }

    async fn unary<Req, Resp>(
        &self,
        path: &'static str,
        request: Req,
    ) -> Result<Resp, tonic::Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = self.grpc.clone();
        grpc.ready()
            .await
            .map_err(|err| tonic::Status::unavailable(err.to_string()))?;
        let codec = ProstCodec::<Req, Resp>::default();
        let response = grpc
            .unary(
                tonic::Request::new(request),
                PathAndQuery::from_static(path),
                codec,
            )
            .await?;
        Ok(response.into_inner())
    }

    async fn server_streaming<Req, Resp>(
        &self,
        path: &'static str,
        request: Req,
    ) -> Result<tonic::Streaming<Resp>, tonic::Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = self.grpc.clone();
        grpc.ready()
            .await
            .map_err(|err| tonic::Status::unavailable(err.to_string()))?;
        let codec = ProstCodec::<Req, Resp>::default();
        let response = grpc
            .server_streaming(
                tonic::Request::new(request),
                PathAndQuery::from_static(path),
                codec,
            )
            .await?;
        Ok(response.into_inner())
    }
}

/// The facts about a daemon that decide what the engine may ask of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonInfo {
    /// The BuildKit version as reported, such as `v0.13.2`. Distribution builds may report
    /// `v0.0.0+unknown`. `None` when the daemon predates the `Info` call (BuildKit v0.11).
    pub version: Option<String>,
    /// True for the BuildKit inside a Docker daemon.
    pub docker: bool,
    /// True when the worker keeps images in containerd. A Docker daemon has such a worker only
    /// with the containerd snapshotter, and needs it for direct push, OCI export and registry
    /// cache export.
    pub containerd_snapshotter: bool,
    /// The snapshotter label of the first worker, such as `overlayfs`.
    pub snapshotter: Option<String>,
    /// The platforms the first worker builds for, as `os/arch[/variant]`.
    pub platforms: Vec<String>,
    /// The first worker's labels.
    pub labels: BTreeMap<String, String>,
}

impl DaemonInfo {
    /// True when images can be pushed and exported by BuildKit itself: always on buildkitd,
    /// and on a Docker daemon only with the containerd snapshotter.
    pub fn exports_images(&self) -> bool {
        !self.docker || self.containerd_snapshotter
    }

    /// Returns the version as semver, or `None` when it is missing or carries no real number
    /// (`v0.0.0+unknown`), so that version checks can be skipped rather than fail.
    pub fn semver(&self) -> Option<semver::Version> {
        let version = self.version.as_deref()?;
        let version = semver::Version::parse(version.strip_prefix('v').unwrap_or(version)).ok()?;
        let unknown = version.major == 0 && version.minor == 0 && version.patch == 0;
        (!unknown).then_some(version)
    }
}

/// Sums up a daemon from its `Info` response (`None` when the call is missing) and its workers.
///
/// A Docker daemon's worker carries the `moby.host-gateway-ip` label. With the containerd
/// snapshotter it is a containerd worker (`executor=containerd` and a containerd namespace);
/// without it, the worker has neither label. Its `snapshotter` label reads `overlayfs` in both
/// cases, so that label alone cannot tell them apart.
pub fn describe(info: Option<&InfoResponse>, workers: &[WorkerRecord]) -> DaemonInfo {
    let version = info
        .and_then(|info| info.buildkit_version.as_ref())
        .map(|version| version.version.clone())
        .filter(|version| !version.is_empty());
    let labels = workers
        .first()
        .map(|worker| worker.labels.clone())
        .unwrap_or_default();
    let platforms = workers
        .first()
        .map(|worker| worker.platforms.iter().map(platform_name).collect())
        .unwrap_or_default();

    let docker = workers
        .iter()
        .any(|worker| worker.labels.contains_key(DOCKER_GATEWAY_LABEL));
    let containerd_snapshotter = workers.iter().any(|worker| {
        worker.labels.get(EXECUTOR_LABEL).map(String::as_str) == Some("containerd")
            && worker.labels.contains_key(CONTAINERD_NAMESPACE_LABEL)
    });

    DaemonInfo {
        version,
        docker,
        containerd_snapshotter,
        snapshotter: labels.get(SNAPSHOTTER_LABEL).cloned(),
        platforms,
        labels,
    }
}

/// Formats a platform as `os/arch[/variant]`.
fn platform_name(platform: &Platform) -> String {
    if platform.variant.is_empty() {
        format!("{}/{}", platform.os, platform.architecture)
    } else {
        format!(
            "{}/{}/{}",
            platform.os, platform.architecture, platform.variant
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(type_url: &str, value: &[u8]) -> prost_types::Any {
        prost_types::Any {
            type_url: type_url.into(),
            value: value.to_vec(),
        }
    }

    fn status_bytes(details: Vec<prost_types::Any>) -> Vec<u8> {
        RpcStatus {
            code: 2,
            message: "failed".into(),
            details,
        }
        .encode_to_vec()
    }

    #[test]
    fn error_details_json() {
        let bytes = status_bytes(vec![
            any(
                "github.com/moby/buildkit/stack.Stack+json",
                br#"{"frames":[]}"#,
            ),
            any(
                "github.com/moby/buildkit/errdefs.Vertex+json",
                br#"{"digest":"sha256:aa"}"#,
            ),
            any(
                "github.com/moby/buildkit/gatewayapi.ExitMessage+json",
                br#"{"Code":3}"#,
            ),
        ]);
        let details = ErrorDetails::decode(&bytes);
        assert_eq!(details.vertex.as_deref(), Some("sha256:aa"));
        assert_eq!(details.exit_code, Some(3));
    }

    #[test]
    fn error_details_protobuf() {
        let vertex = ErrorVertex {
            digest: "sha256:bb".into(),
        };
        let exit = ExitMessage { code: 7 };
        let bytes = status_bytes(vec![
            any(
                "type.googleapis.com/errdefs.Vertex",
                &vertex.encode_to_vec(),
            ),
            any(
                "type.googleapis.com/moby.buildkit.v1.frontend.ExitMessage",
                &exit.encode_to_vec(),
            ),
        ]);
        let details = ErrorDetails::decode(&bytes);
        assert_eq!(details.vertex.as_deref(), Some("sha256:bb"));
        assert_eq!(details.exit_code, Some(7));
    }

    #[test]
    fn error_details_missing_or_invalid() {
        assert_eq!(ErrorDetails::decode(&[]), ErrorDetails::default());
        assert_eq!(ErrorDetails::decode(&[0xff, 0xff]), ErrorDetails::default());

        let bytes = status_bytes(vec![any(
            "github.com/moby/buildkit/errdefs.Vertex+json",
            b"not json",
        )]);
        assert_eq!(ErrorDetails::decode(&bytes), ErrorDetails::default());
    }

    #[test]
    fn call_error_keeps_message() {
        let status = tonic::Status::new(tonic::Code::Unknown, "process did not complete");
        let err = Error::call("Solve", status);
        assert_eq!(
            err.to_string(),
            "BuildKit Solve failed: process did not complete"
        );
        assert_eq!(err.code(), Some(tonic::Code::Unknown));
        assert!(!err.is_invalid_input());
    }

    #[test]
    fn unimplemented_call_hint() {
        let err = Error::call("Info", tonic::Status::unimplemented("unknown method Info"));
        let hint = err.hint().unwrap_or_default();
        assert!(hint.contains("`Info`"), "{hint}");
    }

    fn worker(labels: &[(&str, &str)]) -> WorkerRecord {
        WorkerRecord {
            labels: labels
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
            platforms: vec![
                Platform {
                    os: "linux".into(),
                    architecture: "amd64".into(),
                    ..Platform::default()
                },
                Platform {
                    os: "linux".into(),
                    architecture: "amd64".into(),
                    variant: "v2".into(),
                    ..Platform::default()
                },
            ],
            ..WorkerRecord::default()
        }
    }

    fn info(version: &str) -> InfoResponse {
        InfoResponse {
            buildkit_version: Some(super::super::proto::control::BuildkitVersion {
                version: version.into(),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn describe_docker_containerd_snapshotter() {
        // The labels Docker 26 reports with the containerd snapshotter enabled.
        let workers = [worker(&[
            (CONTAINERD_NAMESPACE_LABEL, "moby"),
            (EXECUTOR_LABEL, "containerd"),
            (DOCKER_GATEWAY_LABEL, "<nil>"),
            (SNAPSHOTTER_LABEL, "overlayfs"),
        ])];
        let daemon = describe(Some(&info("v0.0.0+unknown")), &workers);
        assert!(daemon.docker);
        assert!(daemon.containerd_snapshotter);
        assert!(daemon.exports_images());
        assert_eq!(daemon.snapshotter.as_deref(), Some("overlayfs"));
        assert_eq!(daemon.platforms, ["linux/amd64", "linux/amd64/v2"]);
        assert_eq!(daemon.version.as_deref(), Some("v0.0.0+unknown"));
        assert_eq!(daemon.semver(), None);
    }

    #[test]
    fn describe_docker_graphdriver() {
        let workers = [worker(&[(DOCKER_GATEWAY_LABEL, "172.17.0.1")])];
        let daemon = describe(Some(&info("v0.12.5")), &workers);
        assert!(daemon.docker);
        assert!(!daemon.containerd_snapshotter);
        assert!(!daemon.exports_images());
        assert_eq!(daemon.semver(), Some(semver::Version::new(0, 12, 5)));
    }

    #[test]
    fn describe_buildkitd() {
        let workers = [worker(&[
            (EXECUTOR_LABEL, "oci"),
            (SNAPSHOTTER_LABEL, "overlayfs"),
        ])];
        let daemon = describe(None, &workers);
        assert!(!daemon.docker);
        assert!(!daemon.containerd_snapshotter);
        assert!(daemon.exports_images());
        assert_eq!(daemon.version, None);
        assert_eq!(daemon.semver(), None);
    }
}
