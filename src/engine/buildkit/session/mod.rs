//! The BuildKit session: the gRPC server that envc runs for BuildKit on one open stream.
//!
//! During a solve BuildKit calls back into the client through the session. It checks the
//! session's health, reads local folders (the Dockerfile frontend's `context` and `dockerfile`,
//! any `local://NAME` source), sends an exporter's output (the `oci` exporter's tar), and
//! requests registry credentials. This module serves those calls as HTTP/2 gRPC on a stream that the
//! caller has already opened (the Docker daemon's `POST /session` upgrade, or a Control.Session
//! stream); opening that stream, and telling BuildKit the session's ID in `SolveRequest`, is
//! the client's part. Secrets (`GetSecret`) and SSH forwarding are not served.

pub mod content;
mod filesend;
pub mod fsutil;
pub mod patterns;
pub mod proto;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_stream::wrappers::ReceiverStream;
use tonic::body::Body;
use tonic::server::Grpc;
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

use proto::{
    CredentialsRequest, CredentialsResponse, HealthCheckRequest, HealthCheckResponse, Packet,
    ServingStatus,
};

pub const HEALTH_CHECK: &str = "/grpc.health.v1.Health/Check";
pub const FILE_SYNC_DIFF_COPY: &str = "/moby.filesync.v1.FileSync/DiffCopy";
pub const FILE_SEND_DIFF_COPY: &str = "/moby.filesync.v1.FileSend/DiffCopy";
pub const AUTH_CREDENTIALS: &str = "/moby.filesync.v1.Auth/Credentials";

/// Every method this session serves. Any other method returns UNIMPLEMENTED.
pub const METHODS: [&str; 6] = [
    HEALTH_CHECK,
    FILE_SYNC_DIFF_COPY,
    FILE_SEND_DIFF_COPY,
    AUTH_CREDENTIALS,
    content::CONTENT_INFO,
    content::CONTENT_READ,
];

/// The largest exporter chunk accepted. BuildKit sends chunks of at most 3 MiB.
const MAX_CHUNK: usize = 16 * 1024 * 1024;

/// Length of a session ID, as BuildKit's own clients make them.
const ID_LEN: usize = 25;

/// The local folders, output file and credentials that one build's session offers BuildKit.
#[derive(Clone, Default)]
pub struct SessionSpec {
    /// Random and unique per build; `SolveRequest.session` and `local.session` name it.
    pub id: String,
    /// A readable name, such as the project folder's name.
    pub name: String,
    /// Stable for one project, so BuildKit can reuse what an earlier build already received
    /// of a folder and only ask for what changed.
    pub shared_key: String,
    /// Local folders BuildKit may read, by the name LLB or a frontend uses (`context`,
    /// `dockerfile`, ...).
    pub dirs: BTreeMap<String, PathBuf>,
    /// The file the exporter's single output stream (the `oci` exporter's tar) is written to.
    pub output: Option<PathBuf>,
    /// Registry credentials by host, `(username, secret)`, returned by the auth service.
    pub credentials: BTreeMap<String, (String, String)>,
    /// OCI layout folders BuildKit may read blobs from, by the store ID that `oci-layout://`
    /// sources name in their `oci.store` attr.
    pub content_stores: BTreeMap<String, PathBuf>,
}

impl fmt::Debug for SessionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionSpec")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("shared_key", &self.shared_key)
            .field("dirs", &self.dirs)
            .field("output", &self.output)
            .field("credentials", &self.credentials.keys().collect::<Vec<_>>())
            .field("content_stores", &self.content_stores)
            .finish()
    }
}

impl SessionSpec {
    /// A session with a fresh random ID, sharing nothing yet.
    pub fn new(name: impl Into<String>, shared_key: impl Into<String>) -> Self {
        SessionSpec {
            id: random_id(),
            name: name.into(),
            shared_key: shared_key.into(),
            ..SessionSpec::default()
        }
    }

    /// The headers that announce this session: `X-Docker-Expose-Session-Uuid`, `-Name`,
    /// `-Sharedkey`, and one `-Grpc-Method` per served method. They go on the Docker daemon's
    /// `POST /session` request, or as gRPC metadata on a Control.Session stream.
    pub fn headers(&self) -> Vec<(String, String)> {
        let mut headers = vec![
            (
                "X-Docker-Expose-Session-Uuid".to_owned(),
                header_safe(&self.id),
            ),
            (
                "X-Docker-Expose-Session-Name".to_owned(),
                header_safe(&self.name),
            ),
            (
                "X-Docker-Expose-Session-Sharedkey".to_owned(),
                header_safe(&self.shared_key),
            ),
        ];
        for method in METHODS {
            headers.push((
                "X-Docker-Expose-Session-Grpc-Method".to_owned(),
                method.to_owned(),
            ));
        }
        headers
    }
}

/// A shared key for a project folder: the SHA-256 of its absolute path, so builds of the same
/// folder share what BuildKit keeps of it and builds of different folders do not.
pub fn shared_key_for(dir: &Path) -> String {
    use sha2::{Digest, Sha256};
    let absolute = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    hex::encode(Sha256::digest(absolute.as_os_str().as_encoded_bytes()))
}

fn random_id() -> String {
    use rand::RngExt;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..ID_LEN)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Header values must be visible ASCII; anything else becomes `_`.
fn header_safe(value: &str) -> String {
    value
        .chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '_' })
        .collect()
}

/// Serves the session on `io` until BuildKit closes the stream. Dropping the future ends the
/// session.
///
/// # Errors
///
/// [`Error::Connection`] when the HTTP/2 connection fails; a call that fails is answered with
/// its error and does not end the session.
pub async fn serve<Io>(io: Io, spec: Arc<SessionSpec>) -> Result<(), Error>
where
    Io: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let spec = spec.clone();
        async move { Ok::<_, Infallible>(route(spec, request).await) }
    });
    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), service)
        .await
        .map_err(|source| Error::Connection { source })
}

async fn route(spec: Arc<SessionSpec>, request: http::Request<Incoming>) -> http::Response<Body> {
    let path = request.uri().path().to_owned();
    tracing::trace!(method = %path, "session call");
    match path.as_str() {
        HEALTH_CHECK => {
            let service = tower::service_fn(health);
            Grpc::new(ProstCodec::default())
                .unary(service, request)
                .await
        }
        FILE_SYNC_DIFF_COPY => {
            let service = tower::service_fn(move |call| diff_copy(spec.clone(), call));
            Grpc::new(ProstCodec::default())
                .streaming(service, request)
                .await
        }
        FILE_SEND_DIFF_COPY => {
            let service = tower::service_fn(move |call| filesend::receive(spec.clone(), call));
            Grpc::new(ProstCodec::default())
                .max_decoding_message_size(MAX_CHUNK)
                .streaming(service, request)
                .await
        }
        AUTH_CREDENTIALS => {
            let service = tower::service_fn(move |call| credentials(spec.clone(), call));
            Grpc::new(ProstCodec::default())
                .unary(service, request)
                .await
        }
        content::CONTENT_INFO | content::CONTENT_READ => content::route(spec, &path, request).await,
        _ => Status::unimplemented(format!("envc's session does not serve `{path}`")).into_http(),
    }
}

async fn health(
    _request: Request<HealthCheckRequest>,
) -> Result<Response<HealthCheckResponse>, Status> {
    Ok(Response::new(HealthCheckResponse {
        status: ServingStatus::Serving as i32,
    }))
}

/// Returns the login stored for the host, or empty fields (anonymous) when there is none.
async fn credentials(
    spec: Arc<SessionSpec>,
    request: Request<CredentialsRequest>,
) -> Result<Response<CredentialsResponse>, Status> {
    let host = request.into_inner().host;
    let found = lookup_credentials(&spec.credentials, &host);
    tracing::debug!(%host, found = found.is_some(), "BuildKit asked for registry credentials");
    let (username, secret) = found.cloned().unwrap_or_default();
    Ok(Response::new(CredentialsResponse { username, secret }))
}

/// Names of Docker Hub. BuildKit requests credentials for `registry-1.docker.io`.
const DOCKER_HUB: [&str; 4] = [
    "registry-1.docker.io",
    "docker.io",
    "index.docker.io",
    "https://index.docker.io/v1/",
];

fn lookup_credentials<'a>(
    credentials: &'a BTreeMap<String, (String, String)>,
    host: &str,
) -> Option<&'a (String, String)> {
    if let Some(found) = credentials.get(host) {
        return Some(found);
    }
    if DOCKER_HUB.contains(&host) {
        return DOCKER_HUB.iter().find_map(|alias| credentials.get(*alias));
    }
    None
}

type PacketStream = ReceiverStream<Result<Packet, Status>>;

async fn diff_copy(
    spec: Arc<SessionSpec>,
    request: Request<Streaming<Packet>>,
) -> Result<Response<PacketStream>, Status> {
    let sync_request = fsutil::SyncRequest::from_metadata(request.metadata());
    let Some(root) = spec.dirs.get(&sync_request.dir_name).cloned() else {
        let error = Error::UnknownDir {
            name: sync_request.dir_name,
        };
        return Err(error.to_status());
    };
    tracing::debug!(
        dir = %sync_request.dir_name,
        includes = sync_request.include_patterns.len(),
        excludes = sync_request.exclude_patterns.len(),
        "BuildKit reads a local folder"
    );
    let (tx, rx) = fsutil::channel();
    let incoming = request.into_inner();
    tokio::spawn(async move {
        let dir = sync_request.dir_name.clone();
        if let Err(error) = fsutil::send(root, sync_request, incoming, tx).await {
            tracing::debug!(%dir, %error, "sending a local folder failed");
        }
    });
    Ok(Response::new(ReceiverStream::new(rx)))
}

/// Errors of the session server. Most reach BuildKit as a call's error and come back to the
/// user in the failed solve's message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the BuildKit session connection failed")]
    Connection {
        #[source]
        source: hyper::Error,
    },
    #[error("BuildKit asked for local folder `{name}`, which this build does not share")]
    UnknownDir { name: String },
    #[error("`{}` is not a folder", .path.display())]
    NotAFolder { path: PathBuf },
    #[error("invalid file pattern `{pattern}`: {reason}")]
    InvalidPattern { pattern: String, reason: String },
    #[error("failed to read `{}`", .path.display())]
    Walk {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to read `{}`", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("file name `{}` is not valid UTF-8", .path.display())]
    NonUtf8Path { path: PathBuf },
    #[error("BuildKit's file transfer {what}")]
    Protocol { what: String },
    #[error("BuildKit failed while receiving files: {message}")]
    Receiver { message: String },
    #[error("the session stream failed")]
    Stream {
        #[source]
        source: Status,
    },
    #[error("BuildKit sent exporter output, but this build set up no file to write it to")]
    NoOutput,
    #[error("failed to write the exporter's output to `{}`", .path.display())]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The next step for the user, where there is one.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Connection { .. } | Error::Stream { .. } => Some(
                "check that the BuildKit daemon is still running; its log says why it closed \
                 the session"
                    .to_owned(),
            ),
            Error::UnknownDir { .. } => Some(
                "a `local://` source or the Dockerfile frontend names a folder the build did \
                 not share; check the source names in the build definition"
                    .to_owned(),
            ),
            Error::InvalidPattern { .. } => {
                Some("fix the pattern in `.dockerignore` or in the source's patterns".to_owned())
            }
            Error::NonUtf8Path { .. } => Some(
                "BuildKit only carries UTF-8 file names; rename the file or list it in \
                 `.dockerignore`"
                    .to_owned(),
            ),
            Error::Walk { .. } | Error::Read { .. } => Some(
                "check the file's permissions, or list it in `.dockerignore` if the build does \
                 not need it"
                    .to_owned(),
            ),
            Error::NoOutput => {
                Some("set an output file when asking for the `oci` or `tar` exporter".to_owned())
            }
            Error::Output { .. } => {
                Some("check that the output folder exists and is writable".to_owned())
            }
            Error::NotAFolder { .. } | Error::Protocol { .. } | Error::Receiver { .. } => None,
        }
    }

    /// The message with its causes, as BuildKit shows it: the hint cannot travel.
    pub(crate) fn wire_message(&self) -> String {
        let mut message = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        message
    }

    /// Returns the gRPC status BuildKit receives for this error.
    pub(crate) fn to_status(&self) -> Status {
        let message = self.wire_message();
        match self {
            Error::UnknownDir { .. } => Status::not_found(message),
            Error::NoOutput => Status::failed_precondition(message),
            Error::InvalidPattern { .. } => Status::invalid_argument(message),
            _ => Status::internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::uri::PathAndQuery;
    use proto::{BytesMessage, PacketType};
    use tokio::sync::mpsc;
    use tonic::client::Grpc as Client;

    type Call =
        tower::util::BoxCloneService<http::Request<Body>, http::Response<Incoming>, hyper::Error>;

    /// A gRPC client on one end of an in-memory stream, the session served on the other.
    async fn connect(spec: SessionSpec) -> Client<Call> {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        tokio::spawn(serve(server_io, Arc::new(spec)));
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(client_io))
                .await
                .unwrap();
        tokio::spawn(connection);
        let service = tower::service_fn(move |request: http::Request<Body>| {
            let mut sender = sender.clone();
            async move { sender.send_request(request).await }
        });
        Client::with_origin(
            tower::util::BoxCloneService::new(service),
            "http://session".parse().unwrap(),
        )
    }

    async fn unary<Req, Resp>(
        client: &mut Client<Call>,
        path: &str,
        message: Req,
    ) -> Result<Resp, Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        client.ready().await.unwrap();
        let path = PathAndQuery::try_from(path).unwrap();
        client
            .unary(Request::new(message), path, ProstCodec::default())
            .await
            .map(Response::into_inner)
    }

    fn spec() -> SessionSpec {
        SessionSpec::new("project", "key")
    }

    #[test]
    fn headers_list_every_method() {
        let mut spec = SessionSpec::new("caf\u{e9} project", "k");
        spec.credentials
            .insert("127.0.0.1:5000".into(), ("user".into(), "hunter2".into()));
        assert_eq!(spec.id.len(), ID_LEN);
        assert_ne!(spec.id, SessionSpec::new("x", "k").id);
        let headers = spec.headers();
        assert_eq!(
            headers[0],
            ("X-Docker-Expose-Session-Uuid".into(), spec.id.clone())
        );
        assert_eq!(headers[1].1, "caf_ project");
        assert_eq!(
            headers[2],
            ("X-Docker-Expose-Session-Sharedkey".into(), "k".into())
        );
        let methods: Vec<&str> = headers[3..].iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(methods, METHODS);
        assert!(headers[3..]
            .iter()
            .all(|(k, _)| k == "X-Docker-Expose-Session-Grpc-Method"));
        assert!(
            !format!("{spec:?}").contains("hunter2"),
            "secrets stay out of Debug"
        );
    }

    #[test]
    fn shared_key_per_folder() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        assert_eq!(shared_key_for(a.path()), shared_key_for(a.path()));
        assert_ne!(shared_key_for(a.path()), shared_key_for(b.path()));
        assert_eq!(shared_key_for(a.path()).len(), 64);
    }

    #[tokio::test]
    async fn health_and_unknown_methods() {
        let mut client = connect(spec()).await;
        let health: HealthCheckResponse =
            unary(&mut client, HEALTH_CHECK, HealthCheckRequest::default())
                .await
                .unwrap();
        assert_eq!(health.status(), ServingStatus::Serving);

        let err = unary::<_, HealthCheckResponse>(
            &mut client,
            "/moby.buildkit.secrets.v1.Secrets/GetSecret",
            HealthCheckRequest::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unimplemented);
    }

    #[tokio::test]
    async fn credentials_by_host() {
        let mut spec = spec();
        spec.credentials
            .insert("127.0.0.1:5000".into(), ("user".into(), "pw".into()));
        spec.credentials
            .insert("docker.io".into(), ("hub".into(), "token".into()));
        let mut client = connect(spec).await;
        let ask = |host: &str| CredentialsRequest { host: host.into() };

        let found: CredentialsResponse =
            unary(&mut client, AUTH_CREDENTIALS, ask("127.0.0.1:5000"))
                .await
                .unwrap();
        assert_eq!(
            (found.username.as_str(), found.secret.as_str()),
            ("user", "pw")
        );
        let hub: CredentialsResponse =
            unary(&mut client, AUTH_CREDENTIALS, ask("registry-1.docker.io"))
                .await
                .unwrap();
        assert_eq!(hub.username, "hub");
        let none: CredentialsResponse =
            unary(&mut client, AUTH_CREDENTIALS, ask("example.invalid"))
                .await
                .unwrap();
        assert_eq!(none, CredentialsResponse::default());
    }

    #[tokio::test]
    async fn file_send_writes_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("out.tar");
        let mut spec = spec();
        spec.output = Some(output.clone());
        let mut client = connect(spec).await;

        let chunks: Vec<BytesMessage> = (0..50u8)
            .map(|i| BytesMessage {
                data: vec![i; 10_000],
            })
            .collect();
        let mut request = Request::new(tokio_stream::iter(chunks));
        request
            .metadata_mut()
            .insert("buildkit-attachable-exporter-id", "0".parse().unwrap());
        client.ready().await.unwrap();
        let response = client
            .streaming::<_, _, BytesMessage, _>(
                request,
                PathAndQuery::from_static(FILE_SEND_DIFF_COPY),
                ProstCodec::default(),
            )
            .await
            .unwrap();
        let mut replies = response.into_inner();
        assert!(replies.message().await.unwrap().is_none());

        let written = std::fs::read(&output).unwrap();
        assert_eq!(written.len(), 500_000);
        assert!(written
            .chunks(10_000)
            .enumerate()
            .all(|(i, c)| c.iter().all(|b| *b == i as u8)));
    }

    #[tokio::test]
    async fn file_send_needs_output() {
        let mut client = connect(spec()).await;
        client.ready().await.unwrap();
        let chunks = tokio_stream::iter(vec![BytesMessage { data: vec![1] }]);
        let err = client
            .streaming::<_, _, BytesMessage, _>(
                Request::new(chunks),
                PathAndQuery::from_static(FILE_SEND_DIFF_COPY),
                ProstCodec::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        assert!(err.message().contains("no file"), "{}", err.message());
    }

    /// One DiffCopy call over HTTP/2 with the metadata BuildKit sends.
    async fn diff_copy_call(
        client: &mut Client<Call>,
        dir_name: &str,
        excludes: &[&str],
    ) -> Result<(mpsc::Sender<Packet>, Streaming<Packet>), Status> {
        let (tx, rx) = mpsc::channel(16);
        let mut request = Request::new(ReceiverStream::new(rx));
        let metadata = request.metadata_mut();
        metadata.insert("dir-name", dir_name.parse().unwrap());
        for pattern in excludes {
            metadata.append("exclude-patterns", pattern.parse().unwrap());
        }
        client.ready().await.unwrap();
        let response = client
            .streaming(
                request,
                PathAndQuery::from_static(FILE_SYNC_DIFF_COPY),
                ProstCodec::default(),
            )
            .await?;
        Ok((tx, response.into_inner()))
    }

    #[tokio::test]
    async fn file_sync_over_http2() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(dir.path().join("secret.env"), "x").unwrap();
        let mut spec = spec();
        spec.dirs.insert("context".into(), dir.path().to_owned());
        let mut client = connect(spec).await;

        let (tx, mut packets) = diff_copy_call(&mut client, "context", &["*.env"])
            .await
            .unwrap();
        let first = packets.message().await.unwrap().unwrap();
        assert_eq!(first.stat.as_ref().unwrap().path, "Dockerfile");
        let end = packets.message().await.unwrap().unwrap();
        assert!(end.stat.is_none(), "secret.env is excluded");

        tx.send(Packet::request(0)).await.unwrap();
        let data = packets.message().await.unwrap().unwrap();
        assert_eq!(data.r#type(), PacketType::Data);
        assert_eq!(data.data, b"FROM scratch\n");
        assert!(packets.message().await.unwrap().unwrap().data.is_empty());

        tx.send(Packet::fin()).await.unwrap();
        assert_eq!(
            packets.message().await.unwrap().unwrap().r#type(),
            PacketType::Fin
        );
        drop(tx);
        assert!(packets.message().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn file_sync_unknown_folder() {
        let mut client = connect(spec()).await;
        let err = diff_copy_call(&mut client, "elsewhere", &[])
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        assert!(err.message().contains("`elsewhere`"), "{}", err.message());
    }
}
