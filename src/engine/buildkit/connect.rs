//! Addresses of BuildKit daemons and the transports to them: a buildkitd socket (`unix://`, `tcp://` with
//! optional TLS) or the BuildKit inside a Docker daemon (`docker://`), reached by upgrading an
//! HTTP/1.1 `POST /grpc` on the Docker socket to HTTP/2 without TLS (h2c).
//!
//! This module opens byte streams and gRPC channels. The calls made over them are the
//! client's.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri};

/// The Docker socket used when `docker://` names no path and `DOCKER_HOST` is unset.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// The address forms `--buildkit-addr` and `BUILDKIT_HOST` accept, for messages.
const ACCEPTED_FORMS: &str = "`unix:///PATH`, `tcp://HOST:PORT`, `docker://` (the Docker daemon \
     of `DOCKER_HOST`), `docker:///PATH` or `docker://unix:///PATH`";

/// How long opening a connection may take before it counts as unreachable.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The maximum number of bytes of a rejected upgrade's response body read for the message.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Errors in addresses and TLS settings, and daemons that cannot be reached.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid BuildKit address `{value}`: {reason}")]
    InvalidAddress { value: String, reason: String },
    #[error(
        "unsupported `DOCKER_HOST` `{value}`: only a Unix socket (`unix://PATH`) is supported"
    )]
    UnsupportedDockerHost { value: String },
    #[error("failed to read TLS file `{}`", .path.display())]
    TlsFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid TLS settings for `{address}`: {reason}")]
    InvalidTls { address: String, reason: String },
    #[error("failed to connect to BuildKit at `{address}`")]
    Unreachable {
        address: String,
        #[source]
        source: tonic::transport::Error,
    },
}

impl Error {
    /// True when the user gave a value envc cannot use (exit code 2).
    pub fn is_invalid_input(&self) -> bool {
        !matches!(self, Error::Unreachable { .. })
    }

    /// Returns the next step for the user.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::InvalidAddress { .. } => Some(format!("write the address as {ACCEPTED_FORMS}")),
            Error::UnsupportedDockerHost { .. } => Some(
                "point `DOCKER_HOST` at the daemon's Unix socket, or give a buildkitd address \
                 with `--buildkit-addr` or `BUILDKIT_HOST`"
                    .into(),
            ),
            Error::TlsFile { .. } => {
                Some("check the paths given with `--buildkit-tls-ca`, `-cert` and `-key`".into())
            }
            Error::InvalidTls { .. } => Some(
                "TLS applies to `tcp://` addresses only, and a client certificate needs its key \
                 (`--buildkit-tls-cert` with `--buildkit-tls-key`)"
                    .into(),
            ),
            Error::Unreachable { .. } => Some(UNREACHABLE_HINT.into()),
        }
    }
}

/// The next step when no BuildKit responds at an address.
pub(crate) const UNREACHABLE_HINT: &str = "start buildkitd, or a Docker daemon 26 or newer with \
     the containerd snapshotter, and pass its address with `--buildkit-addr` or `BUILDKIT_HOST` \
     (`DOCKER_HOST` is used when neither is set); a Docker socket is written `docker://PATH`";

/// The address of a BuildKit daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A buildkitd Unix socket.
    Unix(PathBuf),
    /// A buildkitd TCP listener, plain or TLS.
    Tcp { host: String, port: u16 },
    /// The Unix socket of a Docker daemon whose embedded BuildKit is used.
    Docker(PathBuf),
}

/// Client TLS files for a `tcp://` address: the CA that signed the daemon's certificate, and a
/// client certificate with its key when the daemon requires one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    /// True when no file is given, so the connection is plain.
    pub fn is_empty(&self) -> bool {
        self.ca.is_none() && self.cert.is_none() && self.key.is_none()
    }
}

impl Address {
    /// Parses `unix:///PATH`, `tcp://HOST:PORT`, `docker://`, `docker:///PATH` or
    /// `docker://unix:///PATH`. A bare `docker://` means the daemon of `DOCKER_HOST`, else the
    /// default Docker socket.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidAddress`] naming the value and the accepted forms, or
    /// [`Error::UnsupportedDockerHost`] for a bare `docker://` with a non-Unix `DOCKER_HOST`.
    pub fn parse(value: &str) -> Result<Address, Error> {
        let docker_host = std::env::var("DOCKER_HOST").ok();
        parse_address(value, docker_host.as_deref())
    }

    /// Reads the address from `BUILDKIT_HOST`, else from `DOCKER_HOST` (a `unix://PATH` Docker
    /// host becomes [`Address::Docker`]). `None` when both are unset or empty.
    ///
    /// # Errors
    ///
    /// As [`Address::parse`] for `BUILDKIT_HOST`, and [`Error::UnsupportedDockerHost`] for a
    /// `DOCKER_HOST` that is not a Unix socket.
    pub fn from_env() -> Result<Option<Address>, Error> {
        let buildkit_host = std::env::var("BUILDKIT_HOST").ok();
        let docker_host = std::env::var("DOCKER_HOST").ok();
        address_from_vars(buildkit_host.as_deref(), docker_host.as_deref())
    }

    /// Returns the Docker daemon at the default socket, for callers that fall back to it.
    pub fn default_docker() -> Address {
        Address::Docker(PathBuf::from(DEFAULT_DOCKER_SOCKET))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "unix://{}", path.display()),
            Address::Tcp { host, port } if host.contains(':') => write!(f, "tcp://[{host}]:{port}"),
            Address::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
            Address::Docker(path) => write!(f, "docker://{}", path.display()),
        }
    }
}

fn parse_address(value: &str, docker_host: Option<&str>) -> Result<Address, Error> {
    let invalid = |reason: &str| Error::InvalidAddress {
        value: value.to_string(),
        reason: reason.to_string(),
    };

    if let Some(path) = value.strip_prefix("unix://") {
        return unix_path(path)
            .map(Address::Unix)
            .ok_or_else(|| invalid("the socket path is empty"));
    }
    if let Some(rest) = value.strip_prefix("tcp://") {
        let (host, port) = host_port(rest).map_err(|reason| invalid(&reason))?;
        return Ok(Address::Tcp { host, port });
    }
    let Some(rest) = value.strip_prefix("docker://") else {
        let reason = match value.split_once("://") {
            Some((scheme, _)) => format!("scheme `{scheme}://` is not supported"),
            None => "the address has no scheme".to_string(),
        };
        return Err(invalid(&reason));
    };

    if rest.is_empty() {
        return match docker_host.filter(|host| !host.is_empty()) {
            Some(host) => docker_host_address(host),
            None => Ok(Address::default_docker()),
        };
    }
    let path = rest.strip_prefix("unix://").unwrap_or(rest);
    if !path.starts_with('/') {
        return Err(invalid(
            "a Docker socket must be an absolute path, as in `docker:///PATH`",
        ));
    }
    Ok(Address::Docker(PathBuf::from(path)))
}

fn address_from_vars(
    buildkit_host: Option<&str>,
    docker_host: Option<&str>,
) -> Result<Option<Address>, Error> {
    if let Some(value) = buildkit_host.filter(|value| !value.is_empty()) {
        return parse_address(value, docker_host).map(Some);
    }
    match docker_host.filter(|value| !value.is_empty()) {
        Some(value) => docker_host_address(value).map(Some),
        None => Ok(None),
    }
}

/// Turns a `DOCKER_HOST` value into an address: only a Unix socket can carry the upgrade.
fn docker_host_address(value: &str) -> Result<Address, Error> {
    match value.strip_prefix("unix://").and_then(unix_path) {
        Some(path) => Ok(Address::Docker(path)),
        None => Err(Error::UnsupportedDockerHost {
            value: value.to_string(),
        }),
    }
}

fn unix_path(path: &str) -> Option<PathBuf> {
    (!path.is_empty()).then(|| PathBuf::from(path))
}

/// Splits `HOST:PORT` or `[IPV6]:PORT`.
fn host_port(rest: &str) -> Result<(String, u16), String> {
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or("the IPv6 host has no closing `]`")?;
        let port = after.strip_prefix(':').ok_or("the port is missing")?;
        (host, port)
    } else {
        rest.rsplit_once(':').ok_or("the port is missing")?
    };

    if host.is_empty() {
        return Err("the host is empty".into());
    }
    if host.contains(['/', '@', ' ']) || (host.contains(':') && !rest.starts_with('[')) {
        return Err(format!("`{host}` is not a host name or IP address"));
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|port| *port != 0)
        .ok_or_else(|| format!("`{port}` is not a port number"))?;
    Ok((host.to_string(), port))
}

/// A byte stream that can be read and written from any task.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A byte stream of any kind: an upgraded Docker connection or a tunnelled session.
pub type BoxedIo = Box<dyn Io>;

/// Opens `path` on the Docker socket `sock` and upgrades it to h2c, sending `headers` with the
/// request. Returns the raw stream after `101 Switching Protocols`, including any bytes the
/// daemon sent right after the response headers.
///
/// # Errors
///
/// The socket's I/O error when it cannot be reached, or an error of kind `Other` naming the
/// response when the daemon rejects the upgrade.
pub async fn docker_upgrade(
    sock: &Path,
    path: &str,
    headers: &[(String, String)],
) -> std::io::Result<BoxedIo> {
    let stream = UnixStream::connect(sock).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        if let Err(err) = connection.with_upgrades().await {
            tracing::trace!("upgrade connection ended: {err}");
        }
    });

    let mut request = http::Request::post(path)
        .header(http::header::HOST, "docker")
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, "h2c");
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request.body(String::new()).map_err(std::io::Error::other)?;

    let response = sender
        .send_request(request)
        .await
        .map_err(std::io::Error::other)?;
    if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), MAX_ERROR_BODY)
            .collect()
            .await
            .map(|body| body.to_bytes())
            .unwrap_or_default();
        return Err(std::io::Error::other(UpgradeRejected {
            path: path.to_string(),
            status,
            message: docker_message(&body),
        }));
    }

    let upgraded = hyper::upgrade::on(response)
        .await
        .map_err(std::io::Error::other)?;
    Ok(Box::new(TokioIo::new(upgraded)))
}

/// A Docker daemon's response other than `101 Switching Protocols` to an upgrade request.
#[derive(Debug, thiserror::Error)]
#[error("`POST {path}` returned `{status}`{}", message_suffix(.message))]
pub struct UpgradeRejected {
    pub path: String,
    pub status: http::StatusCode,
    /// The daemon's error message, when the body had one.
    pub message: Option<String>,
}

fn message_suffix(message: &Option<String>) -> String {
    message
        .as_ref()
        .map(|message| format!(": {message}"))
        .unwrap_or_default()
}

/// Takes the `message` of a Docker error body (`{"message": "..."}`), else the body as text.
fn docker_message(body: &[u8]) -> Option<String> {
    let from_json = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| value.get("message")?.as_str().map(str::to_string));
    let text = from_json.unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    (!text.is_empty()).then_some(text)
}

/// Opens a gRPC channel to the daemon at `address`, connecting once to check it is reachable.
///
/// # Errors
///
/// [`Error::InvalidTls`] or [`Error::TlsFile`] for TLS settings that cannot be used, and
/// [`Error::Unreachable`] when the daemon cannot be reached.
pub async fn channel(address: &Address, tls: Option<&TlsFiles>) -> Result<Channel, Error> {
    let unreachable = |source| Error::Unreachable {
        address: address.to_string(),
        source,
    };
    let tls = tls.filter(|tls| !tls.is_empty());
    if tls.is_some() && !matches!(address, Address::Tcp { .. }) {
        return Err(Error::InvalidTls {
            address: address.to_string(),
            reason: "TLS files were given for an address that is not `tcp://`".into(),
        });
    }

    let channel = match address {
        Address::Tcp { host, port } => {
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host.clone()
            };
            let scheme = if tls.is_some() { "https" } else { "http" };
            let mut endpoint = endpoint(&format!("{scheme}://{host}:{port}"))?;
            if let Some(tls) = tls {
                let config = tls_config(address, tls).await?;
                endpoint = endpoint
                    .tls_config(config)
                    .map_err(|err| invalid_tls(address, &err))?;
            }
            endpoint.connect().await.map_err(unreachable)?
        }
        Address::Unix(path) => {
            let path = path.clone();
            let connector = tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { UnixStream::connect(path).await.map(TokioIo::new) }
            });
            endpoint("http://buildkitd")?
                .connect_with_connector(connector)
                .await
                .map_err(unreachable)?
        }
        Address::Docker(sock) => {
            let sock = sock.clone();
            let connector = tower::service_fn(move |_: Uri| {
                let sock = sock.clone();
                async move { docker_upgrade(&sock, "/grpc", &[]).await.map(TokioIo::new) }
            });
            endpoint("http://docker")?
                .connect_with_connector(connector)
                .await
                .map_err(unreachable)?
        }
    };
    Ok(channel)
}

fn endpoint(uri: &str) -> Result<Endpoint, Error> {
    Endpoint::from_shared(uri.to_string())
        .map(|endpoint| endpoint.connect_timeout(CONNECT_TIMEOUT))
        .map_err(|err| Error::InvalidAddress {
            value: uri.to_string(),
            reason: err.to_string(),
        })
}

fn invalid_tls(address: &Address, err: &dyn std::error::Error) -> Error {
    Error::InvalidTls {
        address: address.to_string(),
        reason: err.to_string(),
    }
}

async fn tls_config(address: &Address, files: &TlsFiles) -> Result<ClientTlsConfig, Error> {
    let mut config = ClientTlsConfig::new();
    config = match &files.ca {
        Some(ca) => config.ca_certificate(Certificate::from_pem(read_tls_file(ca).await?)),
        None => config.with_native_roots(),
    };

    match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            let identity =
                Identity::from_pem(read_tls_file(cert).await?, read_tls_file(key).await?);
            Ok(config.identity(identity))
        }
        (None, None) => Ok(config),
        _ => Err(Error::InvalidTls {
            address: address.to_string(),
            reason: "a client certificate and its key must be given together".into(),
        }),
    }
}

async fn read_tls_file(path: &Path) -> Result<Vec<u8>, Error> {
    tokio::fs::read(path)
        .await
        .map_err(|source| Error::TlsFile {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::UnixListener;

    use super::*;

    fn docker(path: &str) -> Address {
        Address::Docker(PathBuf::from(path))
    }

    #[test]
    fn parse_accepted_forms() {
        let cases = [
            (
                "unix:///run/buildkit/buildkitd.sock",
                Address::Unix("/run/buildkit/buildkitd.sock".into()),
            ),
            (
                "tcp://127.0.0.1:1234",
                Address::Tcp {
                    host: "127.0.0.1".into(),
                    port: 1234,
                },
            ),
            (
                "tcp://buildkitd:1234/",
                Address::Tcp {
                    host: "buildkitd".into(),
                    port: 1234,
                },
            ),
            (
                "tcp://[::1]:1234",
                Address::Tcp {
                    host: "::1".into(),
                    port: 1234,
                },
            ),
            (
                "docker:///var/lib/d/docker.sock",
                docker("/var/lib/d/docker.sock"),
            ),
            (
                "docker://unix:///var/lib/d/docker.sock",
                docker("/var/lib/d/docker.sock"),
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_address(value, None).ok(), Some(expected), "{value}");
        }
    }

    #[test]
    fn parse_bare_docker_uses_docker_host() {
        let parsed = parse_address("docker://", Some("unix:///tmp/d.sock")).ok();
        assert_eq!(parsed, Some(docker("/tmp/d.sock")));

        let parsed = parse_address("docker://", None).ok();
        assert_eq!(parsed, Some(docker(DEFAULT_DOCKER_SOCKET)));

        let parsed = parse_address("docker://", Some("")).ok();
        assert_eq!(parsed, Some(docker(DEFAULT_DOCKER_SOCKET)));

        let err = parse_address("docker://", Some("tcp://10.0.0.1:2375")).err();
        assert!(
            matches!(err, Some(Error::UnsupportedDockerHost { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn parse_rejects_bad_addresses() {
        let cases = [
            ("", "no scheme"),
            ("/run/buildkit/buildkitd.sock", "no scheme"),
            ("ssh://host", "`ssh://` is not supported"),
            ("unix://", "socket path is empty"),
            ("tcp://127.0.0.1", "port is missing"),
            ("tcp://:1234", "host is empty"),
            ("tcp://127.0.0.1:0", "`0` is not a port number"),
            ("tcp://127.0.0.1:70000", "`70000` is not a port number"),
            ("tcp://[::1]1234", "port is missing"),
            ("tcp://::1:1234", "not a host name"),
            ("docker://var/run/docker.sock", "absolute path"),
        ];
        for (value, reason) in cases {
            let err = parse_address(value, None).err();
            let Some(err @ Error::InvalidAddress { .. }) = err else {
                panic!("`{value}` gave {err:?}");
            };
            let message = err.to_string();
            assert!(message.contains(&format!("`{value}`")), "{message}");
            assert!(message.contains(reason), "{message}");
            assert!(err.is_invalid_input());
            assert!(err
                .hint()
                .is_some_and(|hint| hint.contains("tcp://HOST:PORT")));
        }
    }

    #[test]
    fn env_prefers_buildkit_host() {
        let both = address_from_vars(Some("tcp://127.0.0.1:1234"), Some("unix:///d.sock"));
        assert_eq!(
            both.ok().flatten(),
            Some(Address::Tcp {
                host: "127.0.0.1".into(),
                port: 1234
            })
        );

        let docker_only = address_from_vars(Some(""), Some("unix:///d.sock"));
        assert_eq!(docker_only.ok().flatten(), Some(docker("/d.sock")));

        let neither = address_from_vars(None, None);
        assert_eq!(neither.ok().flatten(), None);

        let err = address_from_vars(None, Some("tcp://10.0.0.1:2375")).err();
        assert!(
            matches!(err, Some(Error::UnsupportedDockerHost { .. })),
            "{err:?}"
        );
        assert!(err.is_some_and(|err| err.is_invalid_input()));
    }

    #[test]
    fn display_parses_back() {
        for value in [
            "unix:///a.sock",
            "tcp://h:1",
            "tcp://[::1]:2",
            "docker:///d.sock",
        ] {
            let address = parse_address(value, None).ok();
            assert_eq!(
                address.map(|address| address.to_string()).as_deref(),
                Some(value)
            );
        }
    }

    /// Reads one HTTP/1.1 request head from `stream`, byte by byte so nothing after it is lost.
    async fn read_head(stream: &mut UnixStream) -> String {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let byte = stream.read_u8().await.expect("request head");
            head.push(byte);
        }
        String::from_utf8(head).expect("UTF-8 request head")
    }

    /// Serves one connection on a fresh socket: sends `response` after the request head, then
    /// echoes. Returns the socket's folder and path, and a task that yields the request head.
    async fn serve_once(
        response: &'static [u8],
    ) -> (tempfile::TempDir, PathBuf, tokio::task::JoinHandle<String>) {
        let dir = tempfile::tempdir().expect("temporary folder");
        let sock = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&sock).expect("bind test socket");
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let head = read_head(&mut stream).await;
            stream.write_all(response).await.expect("write response");
            let mut buf = [0u8; 64];
            while let Ok(n @ 1..) = stream.read(&mut buf).await {
                if stream.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            head
        });
        (dir, sock, server)
    }

    #[tokio::test]
    async fn upgrade_keeps_early_bytes() {
        let response = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\
                         Upgrade: h2c\r\n\r\nEARLY";
        let (_dir, sock, server) = serve_once(response).await;
        let headers = vec![
            (
                "X-Docker-Expose-Session-Uuid".to_string(),
                "abc".to_string(),
            ),
            (
                "X-Docker-Expose-Session-Grpc-Method".to_string(),
                "/a/B".to_string(),
            ),
            (
                "X-Docker-Expose-Session-Grpc-Method".to_string(),
                "/c/D".to_string(),
            ),
        ];

        let mut io = docker_upgrade(&sock, "/session", &headers)
            .await
            .expect("upgrade");
        let mut early = [0u8; 5];
        io.read_exact(&mut early).await.expect("early bytes");
        assert_eq!(&early, b"EARLY");

        io.write_all(b"ping").await.expect("write");
        let mut echo = [0u8; 4];
        io.read_exact(&mut echo).await.expect("echo");
        assert_eq!(&echo, b"ping");
        drop(io);

        let head = server.await.expect("server task").to_lowercase();
        assert!(head.starts_with("post /session http/1.1\r\n"), "{head}");
        assert!(head.contains("connection: upgrade\r\n"), "{head}");
        assert!(head.contains("upgrade: h2c\r\n"), "{head}");
        assert!(
            head.contains("x-docker-expose-session-uuid: abc\r\n"),
            "{head}"
        );
        assert!(
            head.contains("x-docker-expose-session-grpc-method: /a/b\r\n"),
            "{head}"
        );
        assert!(
            head.contains("x-docker-expose-session-grpc-method: /c/d\r\n"),
            "{head}"
        );
    }

    #[tokio::test]
    async fn upgrade_rejection_keeps_message() {
        let response = b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\
                         Content-Length: 28\r\n\r\n{\"message\":\"page not found\"}";
        let (_dir, sock, _server) = serve_once(response).await;

        let err = docker_upgrade(&sock, "/grpc", &[])
            .await
            .err()
            .expect("rejected");
        let rejected = err
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<UpgradeRejected>());
        let rejected = rejected.expect("an UpgradeRejected error");
        assert_eq!(rejected.status, http::StatusCode::NOT_FOUND);
        assert_eq!(rejected.message.as_deref(), Some("page not found"));
        assert_eq!(
            err.to_string(),
            "`POST /grpc` returned `404 Not Found`: page not found"
        );
    }

    #[tokio::test]
    async fn upgrade_missing_socket() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let err = docker_upgrade(&dir.path().join("none.sock"), "/grpc", &[])
            .await
            .err();
        assert_eq!(
            err.map(|err| err.kind()),
            Some(std::io::ErrorKind::NotFound)
        );
    }

    #[tokio::test]
    async fn channel_rejects_tls_for_sockets() {
        let tls = TlsFiles {
            ca: Some("/ca.pem".into()),
            ..TlsFiles::default()
        };
        let err = channel(&docker("/d.sock"), Some(&tls)).await.err();
        assert!(matches!(err, Some(Error::InvalidTls { .. })), "{err:?}");
    }

    #[tokio::test]
    async fn channel_unreachable_names_address() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let address = Address::Docker(dir.path().join("none.sock"));
        let err = channel(&address, None).await.expect_err("unreachable");
        assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
        assert!(err.to_string().contains(&format!("`{address}`")), "{err}");
        assert!(!err.is_invalid_input());
    }
}
