//! Building a Dockerfile source's stage with BuildKit's Dockerfile frontend, into an OCI image
//! layout in envc's store that the Features then go on top of.
//!
//! One solve runs the `dockerfile.v0` frontend on the Dockerfile's folder and the context
//! folder, which BuildKit reads through the session, so `.dockerignore` applies. The solve
//! exports the target stage with the `oci` exporter, whose tar comes back through the session's
//! file send and is unpacked into `stages/<manifest hex>/` under the store root. The Features
//! are a second solve whose base is that layout (an `oci:DIR` base, see
//! [`StageImage::image_source`]), read through an `oci-layout://` source (see `layout`).
//!
//! Left out: building several platforms, secrets and SSH for `RUN --mount`, and a `# syntax=`
//! frontend image, which BuildKit would pull from its registry.

mod progress;
mod request;
mod unpack;

pub use progress::instruction_line;
pub use request::{frontend_request, FrontendRequest, SUPPORTED_OPTIONS};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;

use super::client::{self, Client};
use super::proto::control::{CacheOptions, Exporter, SolveRequest, SolveResponse};
use super::session::{self, SessionSpec};
use crate::config::{DockerfileSource, ImageSource, Location};
use crate::engine::{Cancel, Network};
use crate::progress::{Event, Reporter};
use crate::store::{ContentStore, Store};
use progress::StageProgress;

/// The store folder that keeps built stages, one OCI layout per manifest digest.
pub const STAGES_DIR: &str = "stages";

/// How often a running solve checks whether the build was interrupted.
const CANCEL_POLL: Duration = Duration::from_millis(100);

/// How long the status stream may keep going once the solve has returned.
const STATUS_DRAIN: Duration = Duration::from_secs(2);

/// Settings of a stage build that come from the build rather than from devcontainer.json.
#[derive(Debug, Clone, Default)]
pub struct StageOptions {
    /// `SOURCE_DATE_EPOCH` for the stage, unless its build args set one.
    pub source_date_epoch: i64,
    /// The network of the Dockerfile's `RUN` steps, as for Feature steps; `--network` in
    /// `build.options` overrides it. BuildKit's own default, a bridged sandbox, is not used:
    /// it needs a bridge network the daemon may not have.
    pub network: Network,
    /// Registry credentials by host, `(username, secret)`, for the stage's `FROM` images.
    pub credentials: BTreeMap<String, (String, String)>,
}

/// A built Dockerfile stage: an OCI image layout holding exactly one image.
#[derive(Clone)]
pub struct StageImage {
    /// The layout folder, `stages/<manifest hex>` under the store root.
    pub dir: PathBuf,
    /// The image manifest's digest, `sha256:<hex>`.
    pub digest: String,
    /// The manifest's exact bytes.
    pub manifest: Vec<u8>,
    /// The image config's exact bytes.
    pub config: Vec<u8>,
    /// The stage built: the target's name, or `None` for the Dockerfile's last stage.
    pub target: Option<String>,
    pub duration: Duration,
}

impl std::fmt::Debug for StageImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageImage")
            .field("dir", &self.dir)
            .field("digest", &self.digest)
            .field("manifest", &format_args!("{} bytes", self.manifest.len()))
            .field("config", &format_args!("{} bytes", self.config.len()))
            .field("target", &self.target)
            .field("duration", &self.duration)
            .finish()
    }
}

impl StageImage {
    /// Returns the stage as an `image` source, `oci:DIR`, located at the config's `build` key.
    /// `plan::resolve_base` turns it into a base whose source is this layout.
    pub fn image_source(&self, source: &DockerfileSource) -> ImageSource {
        ImageSource {
            reference: format!("oci:{}", self.dir.display()),
            location: source.location.clone(),
        }
    }
}

/// Errors of building a Dockerfile stage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{location}: `{key}`: Dockerfile `{}` does not exist", .path.display())]
    MissingDockerfile {
        location: Location,
        key: String,
        path: PathBuf,
    },
    #[error("{location}: `{key}`: build context folder `{}` does not exist", .path.display())]
    MissingContext {
        location: Location,
        key: String,
        path: PathBuf,
    },
    #[error("{location}: `build.options`: envc does not support option `{option}`")]
    UnsupportedOption { location: Location, option: String },
    #[error("{location}: `build.options`: invalid `{option}`: {reason}")]
    InvalidOption {
        location: Location,
        option: String,
        reason: String,
    },
    #[error(
        "Dockerfile stage {} failed{}: {message}",
        stage_label(.target.as_deref()),
        failed_at(.dockerfile, *.line, .step.as_deref())
    )]
    StageFailed {
        target: Option<String>,
        dockerfile: PathBuf,
        /// The failed instruction's line in the Dockerfile, when it could be found.
        line: Option<usize>,
        /// The failed step as BuildKit named it, such as `[dev 2/3] RUN make`.
        step: Option<String>,
        /// BuildKit's message.
        message: String,
        /// The last lines the failed step printed.
        tail: Vec<String>,
    },
    #[error(transparent)]
    BuildKit(#[from] client::Error),
    #[error("the Dockerfile stage BuildKit exported {what}")]
    Export { what: String },
    #[error("failed to {action} `{}`", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error("interrupted")]
    Interrupted,
}

fn stage_label(target: Option<&str>) -> String {
    match target {
        Some(target) => format!("`{target}`"),
        None => "(the last stage)".to_owned(),
    }
}

fn failed_at(dockerfile: &Path, line: Option<usize>, step: Option<&str>) -> String {
    match (line, step) {
        (Some(line), Some(step)) => format!(" at `{}:{line}` ({step})", dockerfile.display()),
        (None, Some(step)) => format!(" at {step}"),
        _ => String::new(),
    }
}

impl Error {
    /// True when the config requests something envc cannot build (exit code 2).
    pub fn is_invalid_input(&self) -> bool {
        match self {
            Error::MissingDockerfile { .. }
            | Error::MissingContext { .. }
            | Error::UnsupportedOption { .. }
            | Error::InvalidOption { .. } => true,
            Error::BuildKit(err) => err.is_invalid_input(),
            _ => false,
        }
    }

    /// Returns the next step for the user.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::MissingDockerfile { .. } | Error::MissingContext { .. } => Some(
                "check the path: relative paths in devcontainer.json start from the folder that \
                 contains it"
                    .into(),
            ),
            Error::UnsupportedOption { option, .. } => Some(format!(
                "envc supports {SUPPORTED_OPTIONS} in `build.options`; remove `{option}`"
            )),
            Error::InvalidOption { .. } => Some(format!(
                "envc supports {SUPPORTED_OPTIONS} in `build.options`"
            )),
            Error::StageFailed { tail, .. } if !tail.is_empty() => Some(format!(
                "the step's last output:\n    {}",
                tail.join("\n    ")
            )),
            Error::BuildKit(err) => err.hint(),
            _ => None,
        }
    }

    fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.to_owned();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }

    fn export(what: impl Into<String>) -> Error {
        Error::Export { what: what.into() }
    }
}

/// Resolves the Dockerfile and the context folder of `source` to absolute paths, checking
/// that they exist.
///
/// # Errors
///
/// [`Error::MissingDockerfile`] and [`Error::MissingContext`], at the config's `build` key.
pub fn check_paths(source: &DockerfileSource) -> Result<(PathBuf, PathBuf), Error> {
    let (file_key, context_key) = if source.key == "dockerFile" {
        ("dockerFile", "context")
    } else {
        ("build.dockerfile", "build.context")
    };
    let dockerfile = std::fs::canonicalize(&source.dockerfile)
        .ok()
        .filter(|path| path.is_file())
        .ok_or_else(|| Error::MissingDockerfile {
            location: source.location.clone(),
            key: file_key.to_owned(),
            path: source.dockerfile.clone(),
        })?;
    let context = std::fs::canonicalize(&source.context)
        .ok()
        .filter(|path| path.is_dir())
        .ok_or_else(|| Error::MissingContext {
            location: source.location.clone(),
            key: context_key.to_owned(),
            path: source.context.clone(),
        })?;
    Ok((dockerfile, context))
}

/// Builds the stage that `source` targets and keeps it in the store as an OCI layout.
///
/// # Errors
///
/// Invalid-input errors for missing paths and unsupported options (before anything is sent),
/// [`Error::StageFailed`] when the Dockerfile does not build, [`Error::BuildKit`] when the
/// daemon fails otherwise, [`Error::Interrupted`] when `cancel` is set.
pub async fn build_stage(
    client: &Client,
    source: &DockerfileSource,
    options: &StageOptions,
    store: &Store,
    reporter: &dyn Reporter,
    cancel: &Cancel,
) -> Result<StageImage, Error> {
    let started = Instant::now();
    let (dockerfile, context) = check_paths(source)?;
    let dockerfile_dir = dockerfile.parent().unwrap_or(Path::new("/")).to_owned();
    let filename = dockerfile
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "Dockerfile".to_owned());
    let frontend = frontend_request(source, &filename, options, &|name| std::env::var(name).ok())?;
    let target = frontend.target.clone();
    let stage = stage_label(target.as_deref());
    reporter.report(Event::Base {
        message: format!("building Dockerfile stage {stage}"),
    });

    let work = store.temp_dir("stage-")?;
    let mut spec = SessionSpec::new(folder_name(&context), session::shared_key_for(&context));
    spec.dirs.insert("context".to_owned(), context);
    spec.dirs.insert("dockerfile".to_owned(), dockerfile_dir);
    spec.output = Some(work.path().join("image.tar"));
    spec.credentials = options.credentials.clone();
    let spec = Arc::new(spec);
    let _session = start_session(client, spec.clone()).await?;

    let request = solve_request(&spec, frontend);
    let mut progress = StageProgress::new(reporter);
    let solved = run_solve(client, request, &mut progress, cancel).await;
    let response = match solved {
        Ok(response) => response,
        Err(Error::BuildKit(client::Error::Call {
            message, vertex, ..
        })) => {
            return Err(stage_failed(
                &progress,
                &dockerfile,
                target,
                message,
                vertex,
            ))
        }
        Err(err) => return Err(err),
    };

    let tar = work.path().join("image.tar");
    let unpacked = work.path().join("layout");
    std::fs::create_dir(&unpacked).map_err(Error::io("create", &unpacked))?;
    let unpacking = Instant::now();
    let descriptor = unpack::unpack_layout(&tar, &unpacked)?;
    tracing::debug!(
        solve = ?unpacking.duration_since(started),
        unpack = ?unpacking.elapsed(),
        "Dockerfile stage exported and unpacked"
    );
    let digest = descriptor
        .get("digest")
        .and_then(|d| d.as_str())
        .ok_or_else(|| Error::export("names no manifest digest"))?
        .to_owned();
    if let Some(reported) = response.exporter_response.get("containerimage.digest") {
        tracing::debug!(%reported, manifest = %digest, "exported Dockerfile stage");
    }
    let dir = keep_stage(store, &unpacked, &digest)?;

    let layout = ContentStore::open_existing(&dir)?;
    let manifest = layout.read_blob(&digest)?;
    let config_digest = serde_json::from_slice::<serde_json::Value>(&manifest)
        .ok()
        .and_then(|m| m["config"]["digest"].as_str().map(str::to_owned))
        .ok_or_else(|| Error::export(format!("has manifest `{digest}` without a config")))?;
    let config = layout.read_blob(&config_digest)?;
    let duration = started.elapsed();
    reporter.report(Event::Base {
        message: format!(
            "built Dockerfile stage {stage} in {:.1}s: {digest}",
            duration.as_secs_f64()
        ),
    });
    Ok(StageImage {
        dir,
        digest,
        manifest,
        config,
        target,
        duration,
    })
}

/// Builds the Solve for the frontend: attrs, cache imports, and the `oci` exporter with
/// timestamps rewritten to the epoch, so that the same inputs give the same manifest.
fn solve_request(spec: &SessionSpec, frontend: FrontendRequest) -> SolveRequest {
    let exporter_attrs = BTreeMap::from([
        ("oci-mediatypes".to_owned(), "true".to_owned()),
        ("rewrite-timestamp".to_owned(), "true".to_owned()),
        ("source-date-epoch".to_owned(), frontend.epoch.clone()),
    ]);
    let cache = (!frontend.cache_imports.is_empty()).then(|| CacheOptions {
        imports: frontend.cache_imports.clone(),
        ..CacheOptions::default()
    });
    SolveRequest {
        r#ref: format!("envc-stage-{}", spec.id),
        session: spec.id.clone(),
        frontend: "dockerfile.v0".to_owned(),
        frontend_attrs: frontend.attrs,
        cache,
        entitlements: frontend.entitlements,
        exporter_deprecated: "oci".to_owned(),
        exporter_attrs_deprecated: exporter_attrs.clone(),
        exporters: vec![Exporter {
            r#type: "oci".to_owned(),
            attrs: exporter_attrs,
        }],
        ..SolveRequest::default()
    }
}

/// Stops serving the session when dropped.
struct SessionGuard(tokio::task::JoinHandle<()>);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Opens the session's transport and serves it in the background until the guard drops.
async fn start_session(client: &Client, spec: Arc<SessionSpec>) -> Result<SessionGuard, Error> {
    let io = client.session_transport(spec.headers()).await?;
    let task = tokio::spawn(async move {
        if let Err(err) = session::serve(io, spec).await {
            tracing::debug!("the Dockerfile stage's session ended: {err}");
        }
    });
    Ok(SessionGuard(task))
}

/// Runs the solve while following its status, until it returns or `cancel` is set.
async fn run_solve(
    client: &Client,
    request: SolveRequest,
    progress: &mut StageProgress<'_>,
    cancel: &Cancel,
) -> Result<SolveResponse, Error> {
    let mut status = client.status(&request.r#ref);
    let solve = client.solve(request);
    tokio::pin!(solve);
    let mut ticker = tokio::time::interval(CANCEL_POLL);
    let mut status_open = true;

    let result = loop {
        tokio::select! {
            result = &mut solve => break result,
            update = status.next(), if status_open => match update {
                Some(Ok(update)) => progress.update(&update),
                Some(Err(err)) => {
                    tracing::debug!("the status stream failed: {err}");
                    status_open = false;
                }
                None => status_open = false,
            },
            _ = ticker.tick() => {
                if cancel.is_cancelled() {
                    return Err(Error::Interrupted);
                }
            }
        }
    };

    // The last updates (the failed vertex's error and output) may come after the solve.
    let drain = async {
        while let Some(Ok(update)) = status.next().await {
            progress.update(&update);
        }
    };
    if status_open {
        let _ = tokio::time::timeout(STATUS_DRAIN, drain).await;
    }
    Ok(result?)
}

fn stage_failed(
    progress: &StageProgress<'_>,
    dockerfile: &Path,
    target: Option<String>,
    message: String,
    vertex: Option<String>,
) -> Error {
    let failed = progress.failed_step(vertex.as_deref());
    let text = std::fs::read_to_string(dockerfile).unwrap_or_default();
    let line = failed
        .as_ref()
        .and_then(|step| instruction_line(&text, &step.name));
    Error::StageFailed {
        target,
        dockerfile: dockerfile.to_owned(),
        line,
        step: failed.as_ref().map(|step| step.name.clone()),
        message,
        tail: failed.map(|step| step.tail).unwrap_or_default(),
    }
}

/// Moves the unpacked layout to `stages/<hex>` in the store, or keeps the one already there:
/// the same digest is the same image.
// NOTE: stages are never removed. A store clean-up should drop the ones no plan uses.
fn keep_stage(store: &Store, unpacked: &Path, digest: &str) -> Result<PathBuf, Error> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| Error::export(format!("names manifest `{digest}`")))?;
    let stages = store.root().join(STAGES_DIR);
    std::fs::create_dir_all(&stages).map_err(Error::io("create", &stages))?;
    let dir = stages.join(hex);
    if dir.join("index.json").is_file() {
        return Ok(dir);
    }
    match std::fs::rename(unpacked, &dir) {
        Ok(()) => Ok(dir),
        // Another build kept the same stage first.
        Err(_) if dir.join("index.json").is_file() => Ok(dir),
        Err(err) => Err(Error::io("move the stage to", &dir)(err)),
    }
}

fn folder_name(dir: &Path) -> String {
    dir.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "context".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source_in(dir: &Path, dockerfile: &str, context: &str, key: &str) -> DockerfileSource {
        let config_dir = dir.join(".devcontainer");
        DockerfileSource {
            dockerfile: config_dir.join(dockerfile),
            context: config_dir.join(context),
            args: Vec::new(),
            target: Some("dev".into()),
            cache_from: Vec::new(),
            options: Vec::new(),
            location: Location {
                file: config_dir.join("devcontainer.json"),
                line: 3,
                column: 5,
            },
            key: key.into(),
            snippet: "{…}".into(),
        }
    }

    fn project() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".devcontainer")).unwrap();
        std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
        dir
    }

    #[test]
    fn check_paths_makes_absolute() {
        let dir = project();
        let source = source_in(dir.path(), "../Dockerfile", "..", "build");
        let (dockerfile, context) = check_paths(&source).unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(dockerfile, root.join("Dockerfile"));
        assert_eq!(context, root);
    }

    #[test]
    fn missing_dockerfile_error() {
        let dir = project();
        let source = source_in(dir.path(), "../Missing.Dockerfile", "..", "build");
        let err = check_paths(&source).unwrap_err();
        assert!(err.is_invalid_input());
        let expected = format!(
            "{}:3:5: `build.dockerfile`: Dockerfile `{}` does not exist",
            dir.path().join(".devcontainer/devcontainer.json").display(),
            dir.path()
                .join(".devcontainer/../Missing.Dockerfile")
                .display()
        );
        assert_eq!(err.to_string(), expected);
        assert!(err.hint().unwrap().contains("relative paths"));

        // A folder where the Dockerfile should be is missing a Dockerfile too.
        let source = source_in(dir.path(), "..", "..", "build");
        assert!(matches!(
            check_paths(&source),
            Err(Error::MissingDockerfile { .. })
        ));
    }

    #[test]
    fn missing_context_error_key() {
        let dir = project();
        let source = source_in(dir.path(), "../Dockerfile", "../nowhere", "build");
        let err = check_paths(&source).unwrap_err();
        assert!(err.is_invalid_input());
        assert!(
            err.to_string()
                .contains("`build.context`: build context folder `"),
            "{err}"
        );
        assert!(
            err.to_string().ends_with("nowhere` does not exist"),
            "{err}"
        );

        let legacy = source_in(dir.path(), "../Dockerfile", "../nowhere", "dockerFile");
        let err = check_paths(&legacy).unwrap_err();
        assert!(err.to_string().contains(":3:5: `context`: "), "{err}");
        let legacy = source_in(dir.path(), "Dockerfile", "..", "dockerFile");
        let err = check_paths(&legacy).unwrap_err();
        assert!(err.to_string().contains(":3:5: `dockerFile`: "), "{err}");
    }

    #[test]
    fn stage_failed_message_and_hint() {
        let err = Error::StageFailed {
            target: Some("dev".into()),
            dockerfile: PathBuf::from("/p/Dockerfile"),
            line: Some(11),
            step: Some("[dev 1/3] RUN make".into()),
            message: "process \"/bin/sh -c make\" did not complete successfully: exit code: 2"
                .into(),
            tail: vec!["make: *** No targets.  Stop.".into()],
        };
        assert_eq!(
            err.to_string(),
            "Dockerfile stage `dev` failed at `/p/Dockerfile:11` ([dev 1/3] RUN make): process \
             \"/bin/sh -c make\" did not complete successfully: exit code: 2"
        );
        assert!(!err.is_invalid_input());
        assert_eq!(
            err.hint().unwrap(),
            "the step's last output:\n    make: *** No targets.  Stop."
        );

        let err = Error::StageFailed {
            target: None,
            dockerfile: PathBuf::from("/p/Dockerfile"),
            line: None,
            step: None,
            message: "dockerfile parse error on line 3: unknown instruction: RUNN".into(),
            tail: Vec::new(),
        };
        assert_eq!(
            err.to_string(),
            "Dockerfile stage (the last stage) failed: dockerfile parse error on line 3: \
             unknown instruction: RUNN"
        );
        assert_eq!(err.hint(), None);
    }

    #[test]
    fn solve_request_frontend_and_export() {
        let mut spec = SessionSpec::new("p", "k");
        spec.id = "sess".into();
        let dir = project();
        let mut source = source_in(dir.path(), "../Dockerfile", "..", "build");
        source.cache_from = vec!["127.0.0.1:5000/cache".into()];
        source.options = vec!["--network=host".into()];
        let settings = StageOptions {
            source_date_epoch: 7,
            ..StageOptions::default()
        };
        let frontend = frontend_request(&source, "Dockerfile", &settings, &|_| None).unwrap();
        let request = solve_request(&spec, frontend);

        assert_eq!(request.r#ref, "envc-stage-sess");
        assert_eq!(request.session, "sess");
        assert_eq!(request.frontend, "dockerfile.v0");
        assert_eq!(request.frontend_attrs["target"], "dev");
        assert_eq!(request.entitlements, ["network.host"]);
        let imports = &request.cache.as_ref().unwrap().imports;
        assert_eq!(imports[0].attrs["ref"], "127.0.0.1:5000/cache");
        assert_eq!(request.exporters.len(), 1);
        let exporter = &request.exporters[0];
        assert_eq!(exporter.r#type, "oci");
        assert_eq!(exporter.attrs["rewrite-timestamp"], "true");
        assert_eq!(exporter.attrs["source-date-epoch"], "7");
        assert_eq!(request.exporter_deprecated, "oci");
        assert_eq!(request.exporter_attrs_deprecated, exporter.attrs);
    }

    #[test]
    fn keep_stage_once_per_digest() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let digest = format!("sha256:{}", "d".repeat(64));
        let make = |marker: &str| {
            let work = store.temp_dir("stage-").unwrap();
            let unpacked = work.path().join("layout");
            std::fs::create_dir(&unpacked).unwrap();
            std::fs::write(unpacked.join("index.json"), marker).unwrap();
            (work, unpacked)
        };

        let (_first_work, first) = make("first");
        let dir = keep_stage(&store, &first, &digest).unwrap();
        assert_eq!(dir, root.path().join("stages").join("d".repeat(64)));
        let (_second_work, second) = make("second");
        assert_eq!(keep_stage(&store, &second, &digest).unwrap(), dir);
        assert_eq!(
            std::fs::read_to_string(dir.join("index.json")).unwrap(),
            "first"
        );

        let err = keep_stage(&store, &second, "sha256:../x").unwrap_err();
        assert!(matches!(err, Error::Export { .. }), "{err:?}");
    }

    #[test]
    fn stage_image_source() {
        let dir = project();
        let source = source_in(dir.path(), "../Dockerfile", "..", "build");
        let stage = StageImage {
            dir: PathBuf::from("/store/stages/abc"),
            digest: "sha256:abc".into(),
            manifest: Vec::new(),
            config: Vec::new(),
            target: Some("dev".into()),
            duration: Duration::ZERO,
        };
        let image = stage.image_source(&source);
        assert_eq!(image.reference, "oci:/store/stages/abc");
        assert_eq!(image.location, source.location);
    }
}
