//! Serving blobs of local OCI image layouts to BuildKit, as containerd's content service.
//!
//! An `oci-layout://` source makes BuildKit read the image from the client: it calls
//! `containerd.services.content.v1.Content/Info` for a blob's size and `/Read` for its bytes,
//! naming the store in the `buildkit-attachable-store-id` request metadata as `oci:<ID>`, where
//! `<ID>` is the source's `oci.store` attr. This module serves those two calls from the layout
//! folders in [`SessionSpec::content_stores`]. Every other content call (writes, deletes, walks,
//! label updates) returns UNIMPLEMENTED, because BuildKit only reads a client's layouts.
//!
//! Blob names are checked before any path is built from them, so a request can only reach
//! `blobs/<algorithm>/<hex>` inside a shared layout.

use std::collections::BTreeMap;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::body::Incoming;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::body::Body;
use tonic::metadata::MetadataMap;
use tonic::server::Grpc;
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

use super::SessionSpec;

pub const CONTENT_INFO: &str = "/containerd.services.content.v1.Content/Info";
pub const CONTENT_READ: &str = "/containerd.services.content.v1.Content/Read";

/// The request metadata that names the store a content call is for.
pub const STORE_ID_HEADER: &str = "buildkit-attachable-store-id";

/// BuildKit prefixes the `oci.store` attr with this to name the store of an OCI layout.
const OCI_STORE_PREFIX: &str = "oci:";

/// Bytes in one `ReadContentResponse`, well below gRPC's usual 4 MiB message limit.
const CHUNK: usize = 1024 * 1024;

/// Responses queued towards BuildKit before reading waits.
const QUEUE: usize = 4;

/// `containerd.services.content.v1.InfoRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InfoRequest {
    #[prost(string, tag = "1")]
    pub digest: String,
}

/// `containerd.services.content.v1.InfoResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InfoResponse {
    #[prost(message, optional, tag = "1")]
    pub info: Option<Info>,
}

/// `containerd.services.content.v1.Info`: the size and times of one blob.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Info {
    #[prost(string, tag = "1")]
    pub digest: String,
    #[prost(int64, tag = "2")]
    pub size: i64,
    #[prost(message, optional, tag = "3")]
    pub created_at: Option<prost_types::Timestamp>,
    #[prost(message, optional, tag = "4")]
    pub updated_at: Option<prost_types::Timestamp>,
    #[prost(btree_map = "string, string", tag = "5")]
    pub labels: BTreeMap<String, String>,
}

/// `containerd.services.content.v1.ReadContentRequest`. A `size` of 0 reads to the end.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadContentRequest {
    #[prost(string, tag = "1")]
    pub digest: String,
    #[prost(int64, tag = "2")]
    pub offset: i64,
    #[prost(int64, tag = "3")]
    pub size: i64,
}

/// `containerd.services.content.v1.ReadContentResponse`: `data` starts at `offset` of the blob.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadContentResponse {
    #[prost(int64, tag = "1")]
    pub offset: i64,
    #[prost(bytes = "vec", tag = "2")]
    pub data: Vec<u8>,
}

/// Serves one content call. `path` is [`CONTENT_INFO`] or [`CONTENT_READ`].
pub(super) async fn route(
    spec: Arc<SessionSpec>,
    path: &str,
    request: http::Request<Incoming>,
) -> http::Response<Body> {
    if path == CONTENT_READ {
        let service = tower::service_fn(move |call| read(spec.clone(), call));
        Grpc::new(ProstCodec::default())
            .server_streaming(service, request)
            .await
    } else {
        let service = tower::service_fn(move |call| info(spec.clone(), call));
        Grpc::new(ProstCodec::default())
            .unary(service, request)
            .await
    }
}

async fn info(
    spec: Arc<SessionSpec>,
    request: Request<InfoRequest>,
) -> Result<Response<InfoResponse>, Status> {
    let layout = choose_store(&spec.content_stores, request.metadata())?;
    let digest = request.into_inner().digest;
    let path = blob_path(layout, &digest)?;
    let metadata = tokio::fs::metadata(&path)
        .await
        .map_err(|err| blob_error(&digest, layout, &err))?;
    if !metadata.is_file() {
        return Err(not_found(&digest, layout));
    }

    let modified = metadata.modified().ok().map(prost_types::Timestamp::from);
    tracing::trace!(%digest, size = metadata.len(), "BuildKit requested a blob's info");
    Ok(Response::new(InfoResponse {
        info: Some(Info {
            digest,
            size: i64::try_from(metadata.len()).unwrap_or(i64::MAX),
            created_at: modified,
            updated_at: modified,
            labels: BTreeMap::new(),
        }),
    }))
}

type ReadStream = ReceiverStream<Result<ReadContentResponse, Status>>;

async fn read(
    spec: Arc<SessionSpec>,
    request: Request<ReadContentRequest>,
) -> Result<Response<ReadStream>, Status> {
    let layout = choose_store(&spec.content_stores, request.metadata())?;
    let wanted = request.into_inner();
    let path = blob_path(layout, &wanted.digest)?;
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(|err| blob_error(&wanted.digest, layout, &err))?;
    let length = file
        .metadata()
        .await
        .map_err(|err| blob_error(&wanted.digest, layout, &err))?
        .len();

    let offset = u64::try_from(wanted.offset)
        .ok()
        .filter(|offset| *offset <= length)
        .ok_or_else(|| {
            Status::out_of_range(format!(
                "offset {} is outside blob `{}` of {length} bytes",
                wanted.offset, wanted.digest
            ))
        })?;
    let end = match u64::try_from(wanted.size) {
        Ok(size) if size > 0 => length.min(offset.saturating_add(size)),
        _ => length,
    };
    file.seek(SeekFrom::Start(offset))
        .await
        .map_err(|err| blob_error(&wanted.digest, layout, &err))?;
    tracing::trace!(digest = %wanted.digest, offset, end, "BuildKit reads a blob");

    let (tx, rx) = mpsc::channel(QUEUE);
    tokio::spawn(send_range(file, offset, end, wanted.digest, tx));
    Ok(Response::new(ReceiverStream::new(rx)))
}

/// Sends bytes `offset..end` of `file` in chunks, stopping early when BuildKit hangs up.
async fn send_range(
    mut file: tokio::fs::File,
    mut offset: u64,
    end: u64,
    digest: String,
    tx: mpsc::Sender<Result<ReadContentResponse, Status>>,
) {
    while offset < end {
        let want = usize::try_from(end - offset).map_or(CHUNK, |left| left.min(CHUNK));
        let mut data = vec![0u8; want];
        let message = match file.read_exact(&mut data).await {
            Ok(_) => Ok(ReadContentResponse {
                offset: i64::try_from(offset).unwrap_or(i64::MAX),
                data,
            }),
            Err(err) => Err(Status::internal(format!(
                "failed to read blob `{digest}` at offset {offset}: {err}"
            ))),
        };
        let failed = message.is_err();
        if tx.send(message).await.is_err() || failed {
            return;
        }
        offset += want as u64;
    }
}

/// Finds the layout folder that the call's store ID names. BuildKit sends the `oci.store` attr
/// prefixed with `oci:`.
fn choose_store<'a>(
    stores: &'a BTreeMap<String, PathBuf>,
    metadata: &MetadataMap,
) -> Result<&'a Path, Status> {
    let Some(id) = metadata.get(STORE_ID_HEADER).and_then(|v| v.to_str().ok()) else {
        return Err(Status::invalid_argument(format!(
            "the content call names no store in `{STORE_ID_HEADER}`"
        )));
    };
    let found = stores.get(id).or_else(|| {
        id.strip_prefix(OCI_STORE_PREFIX)
            .and_then(|bare| stores.get(bare))
    });
    found.map(PathBuf::as_path).ok_or_else(|| {
        let known: Vec<&str> = stores.keys().map(String::as_str).collect();
        Status::not_found(format!(
            "this build shares no OCI layout as store `{id}` (it shares: {})",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        ))
    })
}

/// Builds the path of blob `digest` in `layout`. The digest must be `sha256:<64 hex>` or
/// `sha512:<128 hex>` in lowercase, so it can only name a file in `blobs/`.
fn blob_path(layout: &Path, digest: &str) -> Result<PathBuf, Status> {
    let valid = match digest.split_once(':') {
        Some(("sha256", hex)) => is_lower_hex(hex, 64).then_some(("sha256", hex)),
        Some(("sha512", hex)) => is_lower_hex(hex, 128).then_some(("sha512", hex)),
        _ => None,
    };
    let (algorithm, hex) =
        valid.ok_or_else(|| Status::invalid_argument(format!("invalid blob digest `{digest}`")))?;
    Ok(layout.join("blobs").join(algorithm).join(hex))
}

fn is_lower_hex(hex: &str, len: usize) -> bool {
    hex.len() == len && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn not_found(digest: &str, layout: &Path) -> Status {
    Status::not_found(format!(
        "blob `{digest}` not found in OCI layout `{}`",
        layout.display()
    ))
}

fn blob_error(digest: &str, layout: &Path, err: &std::io::Error) -> Status {
    if err.kind() == std::io::ErrorKind::NotFound {
        return not_found(digest, layout);
    }
    Status::internal(format!(
        "failed to read blob `{digest}` in OCI layout `{}`: {err}",
        layout.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::uri::PathAndQuery;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use prost::Message as _;
    use sha2::{Digest as _, Sha256};
    use tonic::client::Grpc as Client;

    type Call =
        tower::util::BoxCloneService<http::Request<Body>, http::Response<Incoming>, hyper::Error>;

    /// Connects a gRPC client to the whole session server over an in-memory stream.
    async fn connect(spec: SessionSpec) -> Client<Call> {
        let (client_io, server_io) = tokio::io::duplex(256 * 1024);
        tokio::spawn(super::super::serve(server_io, Arc::new(spec)));
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
        .max_decoding_message_size(8 * 1024 * 1024)
    }

    fn with_store<T>(message: T, store: Option<&str>) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(store) = store {
            request
                .metadata_mut()
                .insert(STORE_ID_HEADER, store.parse().unwrap());
        }
        request
    }

    async fn info_call(
        client: &mut Client<Call>,
        store: Option<&str>,
        digest: &str,
    ) -> Result<Info, Status> {
        client.ready().await.unwrap();
        let request = with_store(
            InfoRequest {
                digest: digest.into(),
            },
            store,
        );
        let response: Response<InfoResponse> = client
            .unary(
                request,
                PathAndQuery::from_static(CONTENT_INFO),
                ProstCodec::default(),
            )
            .await?;
        Ok(response.into_inner().info.unwrap())
    }

    /// Reads a blob range and returns the chunks as received.
    async fn read_call(
        client: &mut Client<Call>,
        store: &str,
        digest: &str,
        offset: i64,
        size: i64,
    ) -> Result<Vec<ReadContentResponse>, Status> {
        client.ready().await.unwrap();
        let request = with_store(
            ReadContentRequest {
                digest: digest.into(),
                offset,
                size,
            },
            Some(store),
        );
        let response = client
            .server_streaming::<_, ReadContentResponse, _>(
                request,
                PathAndQuery::from_static(CONTENT_READ),
                ProstCodec::default(),
            )
            .await?;
        let mut stream = response.into_inner();
        let mut chunks = Vec::new();
        while let Some(chunk) = stream.message().await? {
            chunks.push(chunk);
        }
        Ok(chunks)
    }

    /// Creates a layout folder with one blob of `size` bytes. Returns the folder, the digest
    /// and the bytes.
    fn layout_with_blob(size: usize) -> (tempfile::TempDir, String, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let hex = hex::encode(Sha256::digest(&data));
        let blobs = dir.path().join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::write(blobs.join(&hex), &data).unwrap();
        (dir, format!("sha256:{hex}"), data)
    }

    fn spec_with(stores: &[(&str, &Path)]) -> SessionSpec {
        let mut spec = SessionSpec::new("content", "key");
        for (id, dir) in stores {
            spec.content_stores
                .insert((*id).to_owned(), dir.to_path_buf());
        }
        spec
    }

    #[test]
    fn messages_use_containerd_field_numbers() {
        let request = ReadContentRequest {
            digest: "d".into(),
            offset: 1,
            size: 2,
        };
        assert_eq!(request.encode_to_vec(), [0x0a, 1, b'd', 0x10, 1, 0x18, 2]);
        let info = InfoResponse {
            info: Some(Info {
                digest: "d".into(),
                size: 3,
                labels: BTreeMap::from([("k".to_owned(), "v".to_owned())]),
                ..Info::default()
            }),
        };
        let bytes = info.encode_to_vec();
        // info (1, length-delimited) holding digest (1), size (2) and a labels entry (5).
        assert_eq!(&bytes[..7], &[0x0a, 13, 0x0a, 1, b'd', 0x10, 3]);
        assert_eq!(bytes[7], 0x2a);
        let response = ReadContentResponse {
            offset: 5,
            data: b"xy".to_vec(),
        };
        assert_eq!(response.encode_to_vec(), [0x08, 5, 0x12, 2, b'x', b'y']);
    }

    #[test]
    fn blob_path_rejects_unsafe_digests() {
        let layout = Path::new("/layout");
        let good = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            blob_path(layout, &good).unwrap(),
            Path::new("/layout/blobs/sha256").join("a".repeat(64))
        );
        assert!(blob_path(layout, &format!("sha512:{}", "0".repeat(128))).is_ok());
        for bad in [
            "sha256:../../etc/passwd".to_owned(),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}", "a".repeat(63)),
            format!("md5:{}", "a".repeat(32)),
            "a".repeat(64),
            format!("sha256:{}/x", "a".repeat(62)),
        ] {
            let err = blob_path(layout, &bad).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad}");
        }
    }

    #[tokio::test]
    async fn info_returns_blob_size() {
        let (layout, digest, data) = layout_with_blob(1000);
        let mut client = connect(spec_with(&[("base", layout.path())])).await;

        // BuildKit names the store `oci:<ID>`; the bare ID is accepted too.
        for store in ["oci:base", "base"] {
            let info = info_call(&mut client, Some(store), &digest).await.unwrap();
            assert_eq!(info.digest, digest);
            assert_eq!(info.size, data.len() as i64);
            assert!(info.created_at.is_some());
        }
    }

    #[tokio::test]
    async fn info_missing_blob_or_store() {
        let (layout, _, _) = layout_with_blob(10);
        let mut client = connect(spec_with(&[("base", layout.path())])).await;
        let absent = format!("sha256:{}", "0".repeat(64));

        let err = info_call(&mut client, Some("oci:base"), &absent)
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        assert!(err.message().contains(&absent), "{}", err.message());

        let err = info_call(&mut client, Some("oci:other"), &absent)
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        assert!(err.message().contains("`oci:other`"), "{}", err.message());
        assert!(err.message().contains("base"), "{}", err.message());

        let err = info_call(&mut client, None, &absent).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains(STORE_ID_HEADER), "{}", err.message());
    }

    #[tokio::test]
    async fn read_whole_blob_in_chunks() {
        let size = 2 * CHUNK + 12_345;
        let (layout, digest, data) = layout_with_blob(size);
        let mut client = connect(spec_with(&[("base", layout.path())])).await;

        let chunks = read_call(&mut client, "oci:base", &digest, 0, 0)
            .await
            .unwrap();
        assert_eq!(chunks.len(), 3);
        let offsets: Vec<i64> = chunks.iter().map(|c| c.offset).collect();
        assert_eq!(offsets, [0, CHUNK as i64, 2 * CHUNK as i64]);
        let joined: Vec<u8> = chunks.into_iter().flat_map(|c| c.data).collect();
        assert_eq!(joined, data);
    }

    #[tokio::test]
    async fn read_range_up_to_end() {
        let (layout, digest, data) = layout_with_blob(5000);
        let mut client = connect(spec_with(&[("a", layout.path())])).await;

        let chunks = read_call(&mut client, "oci:a", &digest, 100, 50)
            .await
            .unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].offset, 100);
        assert_eq!(chunks[0].data, data[100..150]);

        let tail = read_call(&mut client, "oci:a", &digest, 4990, 100)
            .await
            .unwrap();
        assert_eq!(tail[0].data, data[4990..]);

        let empty = read_call(&mut client, "oci:a", &digest, 5000, 0)
            .await
            .unwrap();
        assert!(empty.is_empty());

        let err = read_call(&mut client, "oci:a", &digest, 5001, 0)
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::OutOfRange);
    }

    #[tokio::test]
    async fn read_uses_named_store() {
        let (first, first_digest, _) = layout_with_blob(10);
        let (second, second_digest, second_data) = layout_with_blob(20);
        let mut client = connect(spec_with(&[("one", first.path()), ("two", second.path())])).await;

        let chunks = read_call(&mut client, "oci:two", &second_digest, 0, 0)
            .await
            .unwrap();
        assert_eq!(chunks[0].data, second_data);
        let err = read_call(&mut client, "oci:two", &first_digest, 0, 0)
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
    }
}
