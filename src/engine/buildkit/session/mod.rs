//! The BuildKit session: the gRPC server that envc runs for BuildKit on one open stream.
//!
//! During a solve BuildKit calls back into the client through the session: it checks the
//! session's health, reads local folders (the Dockerfile frontend's `context` and `dockerfile`,
//! any `local://NAME` source), sends an exporter's output (the `oci` exporter's tar), and asks
//! for registry credentials. This module serves those calls as HTTP/2 gRPC on a stream that the
//! caller has already opened (the Docker daemon's `POST /session` upgrade, or a Control.Session
//! stream); opening that stream, and telling BuildKit the session's ID in `SolveRequest`, is
//! the client's part. Secrets (`GetSecret`) and SSH forwarding are not served.

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

/// Every method this session serves; any other answers UNIMPLEMENTED.
pub const METHODS: [&str; 4] = [
    HEALTH_CHECK,
    FILE_SYNC_DIFF_COPY,
    FILE_SEND_DIFF_COPY,
    AUTH_CREDENTIALS,
];

/// Length of a session ID, as BuildKit's own clients make them.
const ID_LEN: usize = 25;

/// What one build's session offers BuildKit.
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
    /// Where the exporter's single output stream (the `oci` exporter's tar) is written.
    pub output: Option<PathBuf>,
    /// Registry credentials by host, `(username, secret)`, answered through the auth service.
    pub credentials: BTreeMap<String, (String, String)>,
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
                .streaming(service, request)
                .await
        }
        AUTH_CREDENTIALS => {
            let service = tower::service_fn(move |call| credentials(spec.clone(), call));
            Grpc::new(ProstCodec::default())
                .unary(service, request)
                .await
        }
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

/// Answers with the login stored for the host, or empty fields (anonymous) when there is none.
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

/// Docker Hub goes by several names; BuildKit asks for `registry-1.docker.io`.
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
    let wanted = fsutil::Wanted::from_metadata(request.metadata());
    let Some(root) = spec.dirs.get(&wanted.dir_name).cloned() else {
        let error = Error::UnknownDir {
            name: wanted.dir_name,
        };
        return Err(error.to_status());
    };
    tracing::debug!(
        dir = %wanted.dir_name,
        includes = wanted.include_patterns.len(),
        excludes = wanted.exclude_patterns.len(),
        "BuildKit reads a local folder"
    );
    let (tx, rx) = fsutil::channel();
    let incoming = request.into_inner();
    tokio::spawn(async move {
        let dir = wanted.dir_name.clone();
        if let Err(error) = fsutil::send(root, wanted, incoming, tx).await {
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

    /// The gRPC status BuildKit sees for this error.
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
