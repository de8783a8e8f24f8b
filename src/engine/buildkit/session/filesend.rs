//! Receiving an exporter's output over `FileSend/DiffCopy` into the session's output file.
//!
//! BuildKit's `oci`, `docker` and `tar` exporters open this stream, send their tar as
//! `BytesMessage` chunks in order, close their side, and wait until the client ends the call.
//! The call ends only after the file is complete and synced, so a finished solve means a
//! finished file. The request metadata names the exporter (`buildkit-attachable-exporter-id`,
//! its index in the solve's exporter list) and carries `exporter-md-*` values; with one output
//! file per session, every exporter stream is written to it. Docker 26 sends exporter ID `0`
//! and `exporter-md-containerimage.digest`, `.config.digest` and `.descriptor` (base64 JSON),
//! the same values its `SolveResponse` returns.

use std::path::Path;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tonic::{Request, Response, Status, Streaming};

use super::proto::BytesMessage;
use super::{Error, SessionSpec};

type Empty = tokio_stream::Empty<Result<BytesMessage, Status>>;

pub(super) async fn receive(
    spec: Arc<SessionSpec>,
    request: Request<Streaming<BytesMessage>>,
) -> Result<Response<Empty>, Status> {
    let Some(path) = spec.output.as_deref() else {
        return Err(Error::NoOutput.to_status());
    };
    let metadata = request.metadata();
    let exporter = metadata
        .get("buildkit-attachable-exporter-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("0")
        .to_owned();
    let digest = metadata
        .get("exporter-md-containerimage.digest")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    tracing::debug!(%exporter, %digest, path = %path.display(), "BuildKit sends exporter output");

    write_all(path, request.into_inner())
        .await
        .map_err(|e| e.to_status())?;
    Ok(Response::new(tokio_stream::empty()))
}

/// Creates (or truncates) the file and writes every chunk in order, then syncs it.
async fn write_all(path: &Path, mut chunks: Streaming<BytesMessage>) -> Result<(), Error> {
    let output = |source| Error::Output {
        path: path.to_owned(),
        source,
    };
    let mut file = tokio::fs::File::create(path).await.map_err(output)?;
    while let Some(chunk) = chunks
        .message()
        .await
        .map_err(|source| Error::Stream { source })?
    {
        file.write_all(&chunk.data).await.map_err(output)?;
    }
    file.flush().await.map_err(output)?;
    file.sync_all().await.map_err(output)?;
    Ok(())
}
