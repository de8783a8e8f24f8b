//! The BuildKit engine: the plan lowered to LLB ([`llb`]) and solved by a BuildKit daemon,
//! either buildkitd or the one inside a Docker daemon, through its Control API.
//!
//! One solve builds every Feature and exports the image at most twice. The `oci` exporter
//! sends the image as an OCI layout tar through the session, and envc imports it into its
//! store, so tagging, `--output`, signing and the SBOM work as with the local engine. With
//! `--push`, the `image` exporter pushes the same image from BuildKit straight to the registry.
//! Both get the image config the local engine would write, the plan's compression,
//! `source-date-epoch` and `rewrite-timestamp=true`, so a rebuild gives the same digest.
//! Registry caches are passed to BuildKit's `registry` cache backend.
//!
//! Not handled here: fetching the plan's Features and base config (the planner does), and
//! pushing images BuildKit did not push (the caller does, from the store).

pub mod client;
pub mod connect;
pub mod dockerfile;
pub mod image;
pub mod layout;
pub mod llb;
pub mod proto;
pub mod session;
pub mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;

use self::client::{Client, DaemonInfo};
use self::connect::{Address, TlsFiles};
use self::proto::control;
use self::session::SessionSpec;
use self::status::StepProgress;
use crate::engine::{Cancel, StepResult};
use crate::plan::BuildPlan;
use crate::progress::{Event, Reporter};
use crate::registry::{ImageRef, RegistryClient};
use crate::store::Store;

/// The oldest BuildKit envc solves with: the first with several exporters in one solve and
/// with `rewrite-timestamp`.
const MIN_VERSION: semver::Version = semver::Version::new(0, 13, 0);

/// The first BuildKit whose file ops create symbolic links.
const SYMLINK_VERSION: semver::Version = semver::Version::new(0, 19, 0);

/// Errors of the BuildKit engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Lower(#[from] llb::Error),
    #[error(transparent)]
    Client(#[from] client::Error),
    #[error(transparent)]
    Connect(#[from] connect::Error),
    #[error(transparent)]
    Dockerfile(#[from] dockerfile::Error),
    /// The daemon lacks something the build needs.
    #[error("BuildKit at `{address}` {what}")]
    Unsupported {
        address: String,
        what: String,
        hint: String,
    },
    #[error("BuildKit failed to build the image: {message}")]
    Solve { message: String },
    #[error("the image BuildKit exported {what}")]
    Export { what: String },
    #[error(
        "BuildKit pushed `{reference}` as `{pushed}`, but the image it exported to envc is \
         `{exported}`"
    )]
    PushMismatch {
        reference: String,
        pushed: String,
        exported: String,
    },
    #[error("failed to {action}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("interrupted")]
    Interrupted,
    #[error(transparent)]
    Image(#[from] crate::image::Error),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Registry(#[from] crate::registry::Error),
}

impl Error {
    pub fn is_invalid_input(&self) -> bool {
        match self {
            Error::Lower(e) => e.is_invalid_input(),
            Error::Client(e) => e.is_invalid_input(),
            Error::Connect(e) => e.is_invalid_input(),
            Error::Dockerfile(e) => e.is_invalid_input(),
            _ => false,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Lower(e) => e.hint(),
            Error::Client(e) => e.hint(),
            Error::Connect(e) => e.hint(),
            Error::Dockerfile(e) => e.hint(),
            Error::Unsupported { hint, .. } => Some(hint.clone()),
            Error::PushMismatch { .. } => Some(
                "the registry contains a different image than envc's store; push from the \
                 store with `envc push`, or build again without `--push` and compare"
                    .into(),
            ),
            Error::Registry(e) => e.hint(),
            _ => None,
        }
    }
}

/// The settings of a BuildKit build: the daemon, and the destinations of image and cache.
#[derive(Clone)]
pub struct BuildKitOptions {
    pub address: Address,
    pub tls: Option<TlsFiles>,
    /// Registry references BuildKit pushes the image to.
    pub push: Vec<String>,
    /// A registry cache to export every step (`max`) or the image's layers (`min`) to.
    pub cache_to: Option<CacheExport>,
    /// Registry caches to import, in order.
    pub cache_from: Vec<String>,
    /// Run every install script even when BuildKit has its result cached.
    pub no_cache: bool,
    /// For the checks around the build: cache references that exist, the pushed digest.
    pub registry: Arc<RegistryClient>,
}

/// A registry cache to export to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheExport {
    pub reference: String,
    /// `mode=max`: every step's layer, not only those of the image.
    pub max: bool,
}

/// The result of a BuildKit build.
#[derive(Debug, Clone)]
pub struct BuildKitOutput {
    /// The image, imported into the store.
    pub manifest_digest: String,
    /// One result per Feature step, index for index with the plan's steps.
    pub steps: Vec<StepResult>,
    /// The references BuildKit pushed, as `registry/repository:tag@sha256:...`.
    pub pushed: Vec<String>,
}

/// A connection to a BuildKit daemon that can build envc's plans.
pub struct BuildKitEngine {
    client: Client,
    daemon: DaemonInfo,
    options: BuildKitOptions,
}

impl BuildKitEngine {
    /// Connects to the daemon of `options` and checks that it can build and export envc's
    /// images: a BuildKit of at least v0.13, and in a Docker daemon the containerd
    /// snapshotter.
    ///
    /// # Errors
    ///
    /// [`Error::Client`] when no BuildKit responds at the address, [`Error::Unsupported`]
    /// naming what the daemon lacks and how to get it.
    pub async fn connect(options: BuildKitOptions) -> Result<BuildKitEngine, Error> {
        let client = Client::connect(&options.address, options.tls.as_ref()).await?;
        let daemon = client.daemon_info().await?;
        tracing::debug!(?daemon, "BuildKit daemon");
        check_daemon(&daemon, &options.address)?;
        Ok(BuildKitEngine {
            client,
            daemon,
            options,
        })
    }

    /// Returns the daemon's facts, as found when connecting.
    pub fn daemon(&self) -> &DaemonInfo {
        &self.daemon
    }

    /// Builds `plan` and imports the image into `store`. With `--push` destinations, BuildKit
    /// pushes the image too, and the pushed digest is checked against the imported one.
    ///
    /// # Errors
    ///
    /// [`crate::engine::Error::ScriptFailed`] naming the Feature whose install script failed,
    /// with its exit code and last lines; [`crate::engine::Error::Interrupted`] after a
    /// cancel, which also cancels the solve; BuildKit errors otherwise.
    pub async fn build(
        &self,
        plan: &BuildPlan,
        store: &Store,
        reporter: &dyn Reporter,
        cancel: &Cancel,
    ) -> Result<BuildKitOutput, crate::engine::Error> {
        let work = self.build_inner(plan, store, reporter, cancel);
        let result = tokio::select! {
            result = work => result,
            _ = wait_cancelled(cancel) => Err(Error::Interrupted.into()),
        };
        result.map_err(|e| match e {
            crate::engine::Error::BuildKit(Error::Interrupted) => crate::engine::Error::Interrupted,
            other => other,
        })
    }

    async fn build_inner(
        &self,
        plan: &BuildPlan,
        store: &Store,
        reporter: &dyn Reporter,
        cancel: &Cancel,
    ) -> Result<BuildKitOutput, crate::engine::Error> {
        let started = Instant::now();
        let mut lowered = llb::lower(plan).map_err(Error::from)?;
        if self.options.no_cache {
            llb::ignore_cache(&mut lowered);
        }
        self.check_symlinks(&lowered)?;
        let config = image::image_config(plan)?;
        let cache_from = self.existing_caches(reporter).await;

        let scratch = store.temp_dir("buildkit-")?;
        let output = scratch.path().join("image.tar");
        let mut spec = SessionSpec::new("envc", session::shared_key_for(&plan.config_file));
        spec.output = Some(output.clone());
        spec.credentials = self.credentials(plan);
        if let crate::plan::BaseSource::Layout { dir } = &plan.base.source {
            spec.content_stores
                .insert(layout::BASE_STORE.to_string(), dir.clone());
        }
        let spec = Arc::new(spec);
        let transport = self
            .client
            .session_transport(spec.headers())
            .await
            .map_err(Error::from)?;
        let serving = tokio::spawn(session::serve(transport, Arc::clone(&spec)));
        // The session ends with this guard, on every way out.
        let _session = AbortOnDrop(serving);

        let build_ref = format!("envc-{}", spec.id);
        let request = self.solve_request(plan, &lowered, &config, &spec.id, &build_ref, cache_from);
        let features = plan.features.iter().map(|s| s.id.clone()).collect();
        let mut progress = StepProgress::new(reporter, &lowered.base, &lowered.steps, features);
        let solved = self.solve(request, &build_ref, &mut progress).await;
        let response = match solved {
            Ok(response) => response,
            Err(error) => return Err(self.failure(plan, &lowered, &mut progress, error)),
        };
        tracing::debug!(?response.exporter_response, "BuildKit solved in {:?}", started.elapsed());

        let content = store.content().clone();
        let check = cancel.clone();
        let imported = tokio::task::spawn_blocking(move || {
            image::import_layout_tar(&output, &content, &|| check.is_cancelled())
        })
        .await
        .expect("the import thread does not panic")?;
        let steps = step_results(plan, &imported, &progress)?;
        let pushed = self
            .check_pushed(&imported.manifest_digest, &response)
            .await?;
        Ok(BuildKitOutput {
            manifest_digest: imported.manifest_digest,
            steps,
            pushed,
        })
    }

    /// Rejects Feature folders with symbolic links when the daemon is known to be too old to
    /// create them, before anything runs.
    fn check_symlinks(&self, lowered: &llb::Lowered) -> Result<(), Error> {
        let Some((feature, path)) = lowered.symlinks.first() else {
            return Ok(());
        };
        match self.daemon.semver() {
            Some(version) if version < SYMLINK_VERSION => Err(symlink_error(
                &self.options.address,
                &format!("runs BuildKit {version}, which"),
                feature,
                path,
            )),
            _ => Ok(()),
        }
    }

    /// Returns the `--cache-from` references that exist. Each missing or unreachable one is a
    /// warning, so a first build with a new cache still runs.
    async fn existing_caches(&self, reporter: &dyn Reporter) -> Vec<String> {
        let mut found = Vec::new();
        for text in &self.options.cache_from {
            let checked = match ImageRef::parse(text) {
                Ok(reference) => self.options.registry.fetch_manifest(&reference).await,
                Err(e) => Err(e),
            };
            match checked {
                Ok(_) => found.push(text.clone()),
                Err(crate::registry::Error::NotFound { .. }) => reporter.report(Event::Warning {
                    message: format!("cache `{text}` does not exist yet; not importing it"),
                }),
                Err(e) => reporter.report(Event::Warning {
                    message: format!("cache `{text}` cannot be read, not importing it: {e}"),
                }),
            }
        }
        found
    }

    /// Collects the logins of the Docker config for the registries BuildKit pulls the base
    /// from, pushes to or reads caches from, for the session's auth service.
    fn credentials(&self, plan: &BuildPlan) -> BTreeMap<String, (String, String)> {
        let mut credentials = BTreeMap::new();
        if let crate::plan::BaseSource::Registry(base) = &plan.base.source {
            if let Some(login) = crate::registry::basic_login(&base.registry) {
                credentials.insert(base.registry.clone(), login);
            }
        }
        let references = self
            .options
            .push
            .iter()
            .chain(&self.options.cache_from)
            .chain(self.options.cache_to.iter().map(|c| &c.reference));
        for reference in references {
            let Ok(image) = ImageRef::parse(reference) else {
                continue;
            };
            if let Some(login) = crate::registry::basic_login(&image.registry) {
                credentials.insert(image.registry.clone(), login);
            }
        }
        credentials
    }

    fn solve_request(
        &self,
        plan: &BuildPlan,
        lowered: &llb::Lowered,
        config: &[u8],
        session: &str,
        build_ref: &str,
        cache_from: Vec<String>,
    ) -> control::SolveRequest {
        let registry = &self.options.registry;
        let plain_http = |reference: &str| {
            ImageRef::parse(reference)
                .map(|image| registry.uses_plain_http(&image.registry))
                .unwrap_or(false)
        };
        let mut common = BTreeMap::new();
        common.insert("oci-mediatypes".to_string(), "true".to_string());
        common.insert(
            "compression".to_string(),
            match plan.settings.compression {
                crate::image::Compression::Gzip => "gzip",
                crate::image::Compression::Zstd => "zstd",
            }
            .to_string(),
        );
        common.insert(
            "source-date-epoch".to_string(),
            plan.settings.source_date_epoch.to_string(),
        );
        common.insert("rewrite-timestamp".to_string(), "true".to_string());
        common.insert(
            "containerimage.config".to_string(),
            String::from_utf8_lossy(config).into_owned(),
        );
        // With the base's config, `rewrite-timestamp` leaves the base's layers as they are.
        common.insert(
            "containerimage.base.config".to_string(),
            String::from_utf8_lossy(&plan.base.config).into_owned(),
        );

        let mut exporters = vec![control::Exporter {
            r#type: "oci".into(),
            attrs: common.clone(),
        }];
        if !self.options.push.is_empty() {
            let mut attrs = common;
            // Pushed by digest (below), so BuildKit takes repositories without tags.
            let mut repositories: Vec<String> = self
                .options
                .push
                .iter()
                .filter_map(|text| ImageRef::parse(text).ok())
                .map(|image| format!("{}/{}", image.registry, image.repository))
                .collect();
            repositories.sort();
            repositories.dedup();
            attrs.insert("name".into(), repositories.join(","));
            attrs.insert("push".into(), "true".into());
            if self.options.push.iter().all(|r| plain_http(r)) {
                attrs.insert("registry.insecure".into(), "true".into());
            }
            // The image is only pushed. Docker's own `moby` exporter always unpacks the image
            // into the daemon's store, which BuildKit rejects with `rewrite-timestamp`. The
            // plain `image` exporter, which Docker offers with the containerd snapshotter,
            // pushes without keeping anything.
            attrs.insert("store".into(), "false".into());
            attrs.insert("unpack".into(), "false".into());
            // BuildKit uploads the blobs and the manifest by digest only. envc writes the tags
            // after the rest of the build succeeded, so a failed or interrupted build (a cache
            // export that fails after the push, Ctrl-C during the import) leaves no tag.
            attrs.insert("push-by-digest".into(), "true".into());
            exporters.push(control::Exporter {
                r#type: "image".into(),
                attrs,
            });
        }

        let entry = |reference: &str, mode: Option<&str>| {
            let mut attrs = BTreeMap::new();
            attrs.insert("ref".to_string(), reference.to_string());
            if let Some(mode) = mode {
                attrs.insert("mode".to_string(), mode.to_string());
            }
            if plain_http(reference) {
                attrs.insert("registry.insecure".to_string(), "true".to_string());
            }
            control::CacheOptionsEntry {
                r#type: "registry".into(),
                attrs,
            }
        };
        let cache = control::CacheOptions {
            exports: self
                .options
                .cache_to
                .iter()
                .map(|c| entry(&c.reference, Some(if c.max { "max" } else { "min" })))
                .collect(),
            imports: cache_from.iter().map(|r| entry(r, None)).collect(),
            ..control::CacheOptions::default()
        };

        let first = &exporters[0];
        control::SolveRequest {
            r#ref: build_ref.to_string(),
            definition: Some(lowered.definition.clone()),
            exporter_deprecated: first.r#type.clone(),
            exporter_attrs_deprecated: first.attrs.clone(),
            session: session.to_string(),
            cache: Some(cache),
            entitlements: if lowered.host_network {
                vec!["network.host".into()]
            } else {
                Vec::new()
            },
            exporters,
            ..control::SolveRequest::default()
        }
    }

    /// Runs the solve while feeding its status stream to `progress`.
    async fn solve(
        &self,
        request: control::SolveRequest,
        build_ref: &str,
        progress: &mut StepProgress<'_>,
    ) -> Result<control::SolveResponse, client::Error> {
        let solve = self.client.solve(request);
        tokio::pin!(solve);
        let mut updates = self.client.status(build_ref);
        let mut streaming = true;
        loop {
            tokio::select! {
                result = &mut solve => {
                    // Take in what the stream still holds, for the last lines and times.
                    let drain = async {
                        while let Some(Ok(update)) = updates.next().await {
                            progress.update(&update);
                        }
                    };
                    if streaming {
                        let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
                    }
                    return result;
                }
                update = updates.next(), if streaming => match update {
                    Some(Ok(update)) => progress.update(&update),
                    Some(Err(e)) => {
                        tracing::debug!("BuildKit status stream failed: {e}");
                        streaming = false;
                    }
                    None => streaming = false,
                },
            }
        }
    }

    /// Turns a failed solve into an error naming the Feature whose script failed, when one did.
    fn failure(
        &self,
        plan: &BuildPlan,
        lowered: &llb::Lowered,
        progress: &mut StepProgress<'_>,
        error: client::Error,
    ) -> crate::engine::Error {
        if let Some(failure) = progress.failure() {
            let step = &plan.features[failure.index];
            tracing::debug!("BuildKit: {}", failure.message);
            return crate::engine::Error::ScriptFailed {
                feature: step.id.clone(),
                location: step.location.clone(),
                exit_code: failure.exit_code,
                output_tail: failure.tail,
            };
        }
        let client::Error::Call { message, .. } = error else {
            return Error::Client(error).into();
        };
        // A daemon older than a capability the graph uses rejects the graph by its name.
        let Some(capability) = message.split("unknown API capability ").nth(1) else {
            return Error::Solve { message }.into();
        };
        let address = &self.options.address;
        match lowered.symlinks.first() {
            Some((feature, path)) if capability.starts_with("file.symlink") => {
                symlink_error(address, "runs a BuildKit that", feature, path).into()
            }
            _ => Error::Unsupported {
                address: address.to_string(),
                what: format!("does not know `{capability}`, which this build needs"),
                hint: "use buildkitd v0.13 or newer, or Docker 26 or newer".into(),
            }
            .into(),
        }
    }

    /// Checks each pushed reference against the imported image and returns them with their
    /// digest.
    async fn check_pushed(
        &self,
        exported: &str,
        response: &control::SolveResponse,
    ) -> Result<Vec<String>, Error> {
        if self.options.push.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(digest) = response.exporter_response.get("containerimage.digest") {
            if digest != exported {
                tracing::debug!("BuildKit reports image `{digest}`, the export is `{exported}`");
            }
        }
        // The manifest was pushed by digest: check that each repository has the exported one.
        // Tags are written afterwards by envc's own push, which finds every blob present.
        for text in &self.options.push {
            let tagged = ImageRef::parse(&crate::build::with_default_tag(text))?;
            let reference = ImageRef {
                tag: None,
                digest: Some(exported.to_string()),
                ..tagged
            };
            let found = self.options.registry.fetch_manifest(&reference).await?;
            if found.digest != exported {
                return Err(Error::PushMismatch {
                    reference: reference.to_string(),
                    pushed: found.digest,
                    exported: exported.to_string(),
                });
            }
        }
        Ok(Vec::new())
    }
}

/// Checks that `daemon` can build and export envc's images. A Docker daemon needs the
/// containerd snapshotter, and BuildKit must be v0.13 or newer when its version is known.
fn check_daemon(daemon: &DaemonInfo, address: &Address) -> Result<(), Error> {
    let unsupported = |what: String, hint: &str| Error::Unsupported {
        address: address.to_string(),
        what,
        hint: hint.to_string(),
    };
    if !daemon.exports_images() {
        return Err(unsupported(
            "is a Docker daemon that keeps images in its classic store, where BuildKit cannot \
             export OCI images, push or export a registry cache"
                .into(),
            "enable the containerd snapshotter: add \
             `{\"features\":{\"containerd-snapshotter\":true}}` to the daemon's daemon.json \
             and restart it; or point `--buildkit-addr` at a buildkitd",
        ));
    }
    match daemon.semver() {
        Some(version) if version < MIN_VERSION => Err(unsupported(
            format!(
                "runs BuildKit {version}, older than the v{MIN_VERSION} envc needs for two \
                 exporters in one build and timestamp rewriting"
            ),
            "upgrade buildkitd to v0.13 or newer, or use Docker 26 or newer",
        )),
        Some(_) => Ok(()),
        None => {
            tracing::debug!(
                version = ?daemon.version,
                "BuildKit reports no usable version; assuming it is recent enough"
            );
            Ok(())
        }
    }
}

/// Returns the error for a symbolic link in a Feature folder that the daemon cannot create.
/// `daemon` describes the daemon, such as `runs BuildKit 0.13.2, which`.
fn symlink_error(address: &Address, daemon: &str, feature: &str, path: &str) -> Error {
    Error::Unsupported {
        address: address.to_string(),
        what: format!(
            "{daemon} cannot create the symbolic link `{path}` of Feature `{feature}` (file \
             ops create links from BuildKit v{SYMLINK_VERSION})"
        ),
        hint: "replace the link in the Feature folder with a copy of its target, use a newer \
               buildkitd, or build with `--engine local`"
            .into(),
    }
}

/// Pairs the image's last layers with the plan's steps and the times the stream reported.
fn step_results(
    plan: &BuildPlan,
    imported: &image::Imported,
    progress: &StepProgress<'_>,
) -> Result<Vec<StepResult>, Error> {
    let count = plan.features.len();
    let Some(first) = imported.layers.len().checked_sub(count) else {
        return Err(Error::Export {
            what: format!(
                "has {} layers, fewer than the {count} Features",
                imported.layers.len()
            ),
        });
    };
    Ok(imported.layers[first..]
        .iter()
        .zip(progress.outcomes())
        .map(|(layer, outcome)| StepResult {
            layer: layer.clone(),
            cached: outcome.cached,
            duration: outcome.duration,
        })
        .collect())
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn wait_cancelled(cancel: &Cancel) {
    while !cancel.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daemon(docker: bool, containerd: bool, version: &str) -> DaemonInfo {
        DaemonInfo {
            version: Some(version.into()),
            docker,
            containerd_snapshotter: containerd,
            snapshotter: Some("overlayfs".into()),
            platforms: vec!["linux/amd64".into()],
            labels: BTreeMap::new(),
        }
    }

    fn address() -> Address {
        Address::Docker("/run/test/docker.sock".into())
    }

    #[test]
    fn daemon_docker_classic_store_rejected() {
        let err = check_daemon(&daemon(true, false, "v0.13.2"), &address()).unwrap_err();
        assert!(err.to_string().contains("classic store"), "{err}");
        assert!(err.to_string().contains("/run/test/docker.sock"), "{err}");
        assert!(err.hint().unwrap().contains("containerd-snapshotter"));
    }

    #[test]
    fn daemon_old_version_rejected() {
        let err = check_daemon(&daemon(false, false, "v0.12.5"), &address()).unwrap_err();
        assert!(err.to_string().contains("0.12.5"), "{err}");
        assert!(err.hint().unwrap().contains("v0.13"));
    }

    #[test]
    fn daemon_usable_ones_pass() {
        check_daemon(&daemon(true, true, "v0.0.0+unknown"), &address()).unwrap();
        check_daemon(&daemon(false, false, "v0.13.0"), &address()).unwrap();
        check_daemon(&daemon(false, true, "v0.21.1"), &address()).unwrap();
    }

    #[test]
    fn symlink_error_names_feature() {
        let err = symlink_error(
            &address(),
            "runs BuildKit 0.13.2, which",
            "tool",
            "/lib/link",
        );
        let text = err.to_string();
        assert!(text.contains("`/lib/link` of Feature `tool`"), "{text}");
        assert!(text.contains("v0.19.0"), "{text}");
        assert!(err.hint().unwrap().contains("--engine local"));
    }
}
