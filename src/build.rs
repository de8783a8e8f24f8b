//! The whole build, from a project folder to a tagged image: load, resolve, order, plan, fetch
//! the base, run the engine, assemble, tag, write and push.
//!
//! Nothing becomes visible before the image is complete: layers and records are written as the
//! steps finish (they are correct on their own), but the tag, the OCI layout and the pushed tags
//! are written only after the manifest exists.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::{self, Config};
use crate::engine::local::{LocalEngine, LocalOptions};
use crate::engine::{Cancel, Network};
use crate::image::assemble::{ImageInput, NewLayer};
use crate::image::Compression;
use crate::plan::{self, BaseSource, BuildPlan, Settings};
use crate::progress::{Event, Reporter};
use crate::registry::{ImageRef, RegistryClient, RegistryOptions};
use crate::store::remote::{self, CacheRepository};
use crate::store::{PlanRecord, Store};
use crate::{Error, Result};

/// `SOURCE_DATE_EPOCH` when the user sets none: the Unix epoch.
pub const DEFAULT_SOURCE_DATE_EPOCH: i64 = 0;

/// The project to build and the settings that shape its image.
#[derive(Debug, Clone)]
pub struct ProjectOptions {
    pub workspace: PathBuf,
    pub config: Option<PathBuf>,
    pub store: PathBuf,
    pub insecure_registries: Vec<String>,
    pub network: Network,
    pub compression: Compression,
    /// `SOURCE_DATE_EPOCH` as the user set it, if they did.
    pub source_date_epoch: Option<i64>,
    /// Whether to read, write or only check `devcontainer-lock.json`.
    pub lockfile: LockMode,
}

/// How a build uses the lockfile beside devcontainer.json.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LockMode {
    /// Pin Features by the lockfile when there is one; write it after resolving.
    #[default]
    Write,
    /// Pin by the lockfile and fail when resolving would change it.
    Frozen,
    /// Resolve afresh, ignoring the lockfile's pins, and write it (`envc lock`).
    Refresh,
    /// Neither read nor write it.
    Off,
}

impl ProjectOptions {
    pub fn registry(&self) -> Arc<RegistryClient> {
        Arc::new(RegistryClient::new(RegistryOptions {
            insecure: self.insecure_registries.clone(),
        }))
    }
}

/// A loaded config with its plan.
pub struct Planned {
    pub config: Config,
    pub plan: BuildPlan,
    pub order: Vec<crate::graph::Placement>,
    /// How each Feature instance is named in messages, index for index with `order`.
    pub labels: Vec<String>,
    /// Problems that did not stop planning, such as an `installsAfter` cycle that was broken.
    pub warnings: Vec<String>,
}

/// The settings planning uses to build a Dockerfile source's stage: the engine, the reporter
/// and the interrupt flag.
#[derive(Clone, Copy)]
pub struct StageBuild<'a> {
    pub engine: &'a EngineChoice,
    pub reporter: &'a dyn Reporter,
    pub cancel: &'a Cancel,
}

/// Loads the project and makes its plan. Fetches Features and the base image's manifest and
/// config, but no layers. A Dockerfile source's stage is built first, through BuildKit, and
/// becomes the base; the local engine rejects such sources.
pub async fn make_plan(
    options: &ProjectOptions,
    store: &Store,
    registry: &RegistryClient,
    stages: StageBuild<'_>,
) -> Result<Planned> {
    let file = config::find_config(&options.workspace, options.config.as_deref())?;
    let config = config::load(&file, &|name| std::env::var(name).ok())?;
    // Before any Feature is fetched, so a config this build cannot use costs nothing.
    if let config::Source::Dockerfile(dockerfile) = &config.source {
        if let EngineChoice::Local = stages.engine {
            return Err(needs_buildkit(dockerfile).into());
        }
        crate::engine::buildkit::dockerfile::check_paths(dockerfile)
            .map_err(|e| crate::engine::Error::from(crate::engine::buildkit::Error::from(e)))?;
    }

    let feature_cache = store.root().join("features");
    let resolution = resolve_locked(&config, registry, &feature_cache, options.lockfile).await?;
    let ordered =
        crate::graph::install_order_explained(resolution, &config.override_install_order)?;
    let features = ordered.instances;
    let labels = features.iter().map(crate::graph::label).collect();
    let order = ordered.placements;
    let warnings = ordered.warnings;

    let base = match &config.source {
        config::Source::Image(image) => plan::resolve_base(image, registry).await?,
        config::Source::Dockerfile(dockerfile) => {
            stage_base(dockerfile, options, store, registry, stages).await?
        }
    };
    let settings = Settings {
        compression: options.compression,
        source_date_epoch: options
            .source_date_epoch
            .unwrap_or(DEFAULT_SOURCE_DATE_EPOCH),
        network: options.network,
    };
    let plan = plan::make_plan(
        &config,
        &features,
        base,
        settings,
        options.source_date_epoch.is_some(),
    )?;
    Ok(Planned {
        config,
        plan,
        order,
        labels,
        warnings,
    })
}

/// Builds the stage of `dockerfile` with BuildKit into the store and pins it as the base.
async fn stage_base(
    dockerfile: &config::DockerfileSource,
    options: &ProjectOptions,
    store: &Store,
    registry: &RegistryClient,
    stages: StageBuild<'_>,
) -> Result<plan::BasePlan> {
    use crate::engine::buildkit::client::Client;
    use crate::engine::buildkit::dockerfile::{build_stage, StageOptions};

    let EngineChoice::BuildKit { address, tls } = stages.engine else {
        return Err(needs_buildkit(dockerfile).into());
    };
    let buildkit_error = |e: crate::engine::buildkit::Error| crate::engine::Error::from(e);
    let connect = Client::connect(address, tls.as_ref());
    let client = until_cancelled(connect, stages.cancel)
        .await?
        .map_err(|e| buildkit_error(e.into()))?;
    let stage_options = StageOptions {
        source_date_epoch: options
            .source_date_epoch
            .unwrap_or(DEFAULT_SOURCE_DATE_EPOCH),
        network: options.network,
        credentials: Default::default(),
    };
    let stage = build_stage(
        &client,
        dockerfile,
        &stage_options,
        store,
        stages.reporter,
        stages.cancel,
    )
    .await
    .map_err(|e| buildkit_error(e.into()))?;
    let mut base = plan::resolve_base(&stage.image_source(dockerfile), registry).await?;
    // Shown in plans, progress and the SBOM: the Dockerfile and stage, not the store's path.
    let relative = dockerfile
        .dockerfile
        .strip_prefix(&options.workspace)
        .unwrap_or(&dockerfile.dockerfile);
    let mut file = PathBuf::new();
    for component in relative.components() {
        match component {
            std::path::Component::ParentDir if file.pop() => {}
            std::path::Component::CurDir => {}
            other => file.push(other),
        }
    }
    base.reference = match &dockerfile.target {
        Some(target) => format!("{} (stage {target})", file.display()),
        None => file.display().to_string(),
    };
    Ok(base)
}

/// Returns the error for a Dockerfile source given to the local engine, at the `build` key.
fn needs_buildkit(dockerfile: &config::DockerfileSource) -> plan::Error {
    plan::Error::Invalid {
        message: format!(
            "{}: `{}`: Dockerfile sources are not supported by the local engine, found `{}`",
            dockerfile.location, dockerfile.key, dockerfile.snippet
        ),
        hint: Some(
            "build it with `--engine buildkit`, or use `image` with a prebuilt base image".into(),
        ),
    }
}

/// Resolves the config's Features pinned by its lockfile, then writes or checks the lockfile
/// as `mode` requests. A config without Features has no lockfile, as with the reference CLI.
///
/// # Errors
///
/// Resolution errors; [`crate::feature::Error::Frozen`] when `mode` is frozen and the lockfile
/// would change.
pub async fn resolve_locked(
    config: &Config,
    registry: &RegistryClient,
    feature_cache: &Path,
    mode: LockMode,
) -> Result<crate::feature::Resolution> {
    use crate::feature::lockfile;

    let path = lockfile::path_for(&config.file);
    let found = match mode {
        LockMode::Off | LockMode::Refresh => lockfile::Found::Missing,
        LockMode::Write | LockMode::Frozen => lockfile::read(&path)?,
    };
    let resolution =
        crate::feature::resolve_features_locked(config, registry, feature_cache, found.lock())
            .await?;
    if mode != LockMode::Off && !config.features.is_empty() {
        let lock = lockfile::Lockfile::generate(&resolution.instances);
        let outcome = lockfile::write_or_check(&path, &lock, mode == LockMode::Frozen)?;
        tracing::debug!(path = %path.display(), ?outcome, "lockfile");
    }
    Ok(resolution)
}

/// Destinations of a built image.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    /// Tags in the local store.
    pub tags: Vec<String>,
    /// Registry references to push to.
    pub push: Vec<String>,
    /// An OCI image layout folder and optional tag.
    pub layout: Option<(PathBuf, Option<String>)>,
    /// The key that signs every pushed image and its SBOM and provenance attestations.
    pub sign_key: Option<Arc<crate::sign::KeyPair>>,
    /// Where to write the SBOM as SPDX JSON.
    pub sbom: Option<PathBuf>,
    /// A registry repository to store each step's layer in, under its cache key.
    pub cache_to: Option<String>,
    /// Registry repositories to reuse step layers from, tried in order.
    pub cache_from: Vec<String>,
}

/// The engine that builds a plan's steps.
#[derive(Debug, Clone, Default)]
pub enum EngineChoice {
    /// The embedded engine: runc and overlayfs.
    #[default]
    Local,
    /// A BuildKit daemon, buildkitd or the one inside Docker.
    BuildKit {
        address: crate::engine::buildkit::connect::Address,
        tls: Option<crate::engine::buildkit::connect::TlsFiles>,
    },
}

/// A registry cache given with `--cache-to` or `--cache-from`: `REF`, or BuildKit's form
/// `type=registry,ref=REF[,mode=min|max]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheOption {
    pub reference: String,
    /// Whether every step is cached (`mode=max`, the default) or only the image's layers
    /// (`mode=min`, which only the BuildKit engine distinguishes).
    pub max: bool,
}

impl CacheOption {
    /// Parses `REF` or `type=registry,ref=REF[,mode=min|max]`.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] for another cache type, an unknown key or mode, or a missing `ref`.
    pub fn parse(text: &str) -> Result<CacheOption> {
        if !text.contains('=') {
            return Ok(CacheOption {
                reference: text.to_string(),
                max: true,
            });
        }
        let invalid = |reason: String| {
            Error::usage(
                format!("invalid cache `{text}`: {reason}"),
                Some(
                    "write a registry repository, or `type=registry,ref=REF[,mode=max]`"
                        .to_string(),
                ),
            )
        };
        let (mut reference, mut max) = (None, true);
        for part in text.split(',') {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| invalid(format!("`{part}` is not `key=value`")))?;
            match (key, value) {
                ("type", "registry") => {}
                ("type", other) => {
                    return Err(invalid(format!(
                        "only `type=registry` is supported, not `{other}`"
                    )))
                }
                ("ref", value) if !value.is_empty() => reference = Some(value.to_string()),
                ("mode", "max") => max = true,
                ("mode", "min") => max = false,
                ("mode", other) => {
                    return Err(invalid(format!("`mode` is `min` or `max`, not `{other}`")))
                }
                (other, _) => return Err(invalid(format!("unknown key `{other}`"))),
            }
        }
        let reference = reference.ok_or_else(|| invalid("it has no `ref`".to_string()))?;
        Ok(CacheOption { reference, max })
    }
}

/// The result of a build.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildOutcome {
    pub digest: String,
    pub plan_digest: String,
    pub tags: Vec<String>,
    pub pushed: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layout: Option<PathBuf>,
    /// True when the whole image was already in the store and no step ran.
    pub up_to_date: bool,
    pub layers: Vec<LayerSummary>,
    pub timings: Timings,
    /// The signature objects pushed, `registry/repository:sha256-<hex>.sig@sha256:...`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<String>,
    /// The attestation objects pushed, `...:sha256-<hex>.att@sha256:...`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attestations: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sbom: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LayerSummary {
    pub feature: String,
    #[serde(rename = "ref")]
    pub reference: String,
    pub digest: String,
    pub size: u64,
    pub cached: bool,
    pub seconds: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Timings {
    pub plan_seconds: f64,
    pub base_seconds: f64,
    pub build_seconds: f64,
    pub push_seconds: f64,
    pub total_seconds: f64,
}

/// Builds the project with `engine` and writes the image to `outputs`.
pub async fn build(
    options: &ProjectOptions,
    outputs: &Outputs,
    engine: &EngineChoice,
    no_cache: bool,
    reporter: Arc<dyn Reporter>,
    cancel: &Cancel,
) -> Result<BuildOutcome> {
    let started = Instant::now();
    check_outputs(outputs, engine)?;
    let started_at = std::time::SystemTime::now();
    let store = Store::open(&options.store)?;
    let registry = options.registry();

    let stages = StageBuild {
        engine,
        reporter: reporter.as_ref(),
        cancel,
    };
    let planned = make_plan(options, &store, &registry, stages).await?;
    for message in &planned.warnings {
        reporter.report(Event::Warning {
            message: message.clone(),
        });
    }
    let plan = planned.plan;
    let plan_seconds = started.elapsed().as_secs_f64();

    let record_key = plan_record_key(&plan.plan_digest, engine);
    // BuildKit exports a cache only from a solve, so `--cache-to` makes it solve again.
    let exports_cache =
        matches!(engine, EngineChoice::BuildKit { .. }) && outputs.cache_to.is_some();
    let reuse = !no_cache && !exports_cache;
    let previous = match store.plan_record(&record_key)? {
        Some(record) if reuse && image_is_complete(store.content(), &record.manifest_digest) => {
            Some(record)
        }
        Some(record) if reuse => {
            reporter.report(Event::Warning {
                message: format!(
                    "a blob of image {} is missing or damaged in the store; building again",
                    short(&record.manifest_digest)
                ),
            });
            None
        }
        _ => None,
    };
    let mut timings = Timings {
        plan_seconds,
        ..Timings::default()
    };
    // The destinations BuildKit pushed to itself.
    let mut pushed_by_engine: Vec<String> = Vec::new();
    let (manifest_digest, layers, up_to_date) = match previous {
        Some(record) => {
            reporter.report(Event::Info {
                message: format!("image is up to date ({})", short(&record.manifest_digest)),
            });
            let layers = match engine {
                EngineChoice::Local => up_to_date_layers(&store, &plan)?,
                EngineChoice::BuildKit { .. } => {
                    image_layers(&store, &plan, &record.manifest_digest)?
                }
            };
            (record.manifest_digest, layers, true)
        }
        None if matches!(engine, EngineChoice::BuildKit { .. }) => {
            let build_started = Instant::now();
            let output = run_buildkit_engine(
                &plan,
                &store,
                &registry,
                outputs,
                engine,
                no_cache,
                reporter.as_ref(),
                cancel,
            )
            .await?;
            timings.build_seconds = build_started.elapsed().as_secs_f64();
            if cancel.is_cancelled() {
                return Err(Error::Interrupted);
            }
            store.put_plan_record(
                &record_key,
                &PlanRecord {
                    manifest_digest: output.manifest_digest.clone(),
                },
            )?;
            pushed_by_engine = output.pushed.clone();
            let layers = layer_summaries(&plan, &output.steps);
            (output.manifest_digest, layers, false)
        }
        None => {
            if !no_cache && !outputs.cache_from.is_empty() {
                let lookup = fetch_cached_steps(&plan, &store, &registry, outputs, &reporter);
                until_cancelled(lookup, cancel).await??;
            }
            let engine = local_engine(store.clone(), options, no_cache);
            engine.check_ready(&plan)?;
            let base_started = Instant::now();
            fetch_base_layers(&plan, &store, &registry, reporter.as_ref(), cancel).await?;
            timings.base_seconds = base_started.elapsed().as_secs_f64();

            let build_started = Instant::now();
            let results = run_local_engine(engine, &plan, &reporter, cancel).await?;
            timings.build_seconds = build_started.elapsed().as_secs_f64();

            let assembled = assemble(&plan, &results, store.content())?;
            // An interrupt after the last step must not leave the plan recorded as built.
            if cancel.is_cancelled() {
                return Err(Error::Interrupted);
            }
            store.put_plan_record(
                &record_key,
                &PlanRecord {
                    manifest_digest: assembled.manifest_digest.clone(),
                },
            )?;
            let layers = layer_summaries(&plan, &results);
            (assembled.manifest_digest, layers, false)
        }
    };

    if cancel.is_cancelled() {
        return Err(Error::Interrupted);
    }
    if let (Some(cache_to), EngineChoice::Local) = (&outputs.cache_to, engine) {
        let repository = CacheOption::parse(cache_to)?.reference;
        let upload = push_cache_entries(&plan, &store, &registry, &repository, reporter.as_ref());
        until_cancelled(upload, cancel).await??;
    }
    let tags = if outputs.tags.is_empty() {
        vec![default_tag(&planned.config)]
    } else {
        outputs.tags.iter().map(|t| with_default_tag(t)).collect()
    };
    // Pushes first, then the layout, then the local tags: a failure at any point leaves no
    // local tag for an image that did not reach every destination.
    let push_started = Instant::now();
    let mut pushed = Vec::new();
    let mut unchanged = Vec::new();
    for (index, destination) in outputs.push.iter().enumerate() {
        if let Some(pushed_ref) = pushed_by_engine.get(index) {
            reporter.report(Event::Info {
                message: format!("BuildKit pushed {pushed_ref}"),
            });
            pushed.push(pushed_ref.clone());
            continue;
        }
        let known = already_pushed(&registry, &manifest_digest, destination);
        if let Some(pushed_ref) = until_cancelled(known, cancel).await? {
            reporter.report(Event::Info {
                message: format!("{pushed_ref} is up to date, nothing pushed"),
            });
            unchanged.push(pushed_ref.clone());
            pushed.push(pushed_ref);
            continue;
        }
        let push = push_image(&store, &registry, &manifest_digest, destination);
        let pushed_ref = until_cancelled(push, cancel).await??;
        reporter.report(Event::Info {
            message: format!("pushed {pushed_ref}"),
        });
        pushed.push(pushed_ref);
    }
    let supply_chain = supply_chain(
        &plan,
        options,
        outputs,
        engine,
        &tags,
        &pushed,
        &unchanged,
        &manifest_digest,
        started_at,
        &registry,
        reporter.as_ref(),
    );
    let supply_chain = until_cancelled(supply_chain, cancel).await??;
    if cancel.is_cancelled() {
        return Err(Error::Interrupted);
    }
    timings.push_seconds = push_started.elapsed().as_secs_f64();

    let manifest = manifest_descriptor(store.content(), &manifest_digest)?;
    if let Some((dir, tag)) = &outputs.layout {
        store
            .content()
            .export_image(&manifest, dir, tag.as_deref())?;
        reporter.report(Event::Info {
            message: format!("wrote OCI layout `{}`", dir.display()),
        });
    }
    for tag in &tags {
        store.content().tag(tag, &manifest)?;
    }
    timings.total_seconds = started.elapsed().as_secs_f64();

    Ok(BuildOutcome {
        digest: manifest_digest,
        plan_digest: plan.plan_digest.clone(),
        tags,
        pushed,
        layout: outputs.layout.as_ref().map(|(dir, _)| dir.clone()),
        up_to_date,
        layers,
        timings,
        signatures: supply_chain.signatures,
        attestations: supply_chain.attestations,
        sbom: outputs.sbom.clone(),
    })
}

/// Rejects tags, push destinations and an output folder that cannot work, before any build
/// work starts.
fn check_outputs(outputs: &Outputs, engine: &EngineChoice) -> Result<()> {
    for tag in &outputs.tags {
        ImageRef::parse(&with_default_tag(tag)).map_err(|e| {
            Error::usage(
                format!("invalid tag `{tag}`: {e}"),
                Some("write a tag as `name:tag` or `registry/name:tag`, in lower case".into()),
            )
        })?;
    }
    for destination in &outputs.push {
        check_push_destination(destination)?;
    }
    if let Some((dir, _)) = &outputs.layout {
        check_layout_folder(dir)?;
    }
    for text in outputs.cache_to.iter().chain(&outputs.cache_from) {
        let option = CacheOption::parse(text)?;
        match engine {
            EngineChoice::Local => {
                CacheRepository::parse(&option.reference)?;
            }
            EngineChoice::BuildKit { .. } => check_buildkit_cache(&option.reference)?,
        }
    }
    if outputs.cache_from.iter().any(|text| text.contains("mode=")) {
        return Err(Error::usage(
            "`mode` applies to `--cache-to` only".to_string(),
            Some("write `--cache-from REF` or `--cache-from type=registry,ref=REF`".to_string()),
        ));
    }
    Ok(())
}

/// Rejects a BuildKit cache reference that names no registry or is not a valid reference.
fn check_buildkit_cache(reference: &str) -> Result<()> {
    if !crate::registry::names_registry(reference) {
        return Err(Error::usage(
            format!("cache `{reference}` names no registry"),
            Some(format!(
                "write the registry host in full, such as `127.0.0.1:5000/{reference}`"
            )),
        ));
    }
    ImageRef::parse(reference)?;
    Ok(())
}

/// Looks up every step without a local record in the `--cache-from` repositories, in order,
/// and records the layers found, so that the engine treats those steps as cached. An entry that
/// cannot be used, or a repository that cannot be reached, is a warning.
async fn fetch_cached_steps(
    plan: &BuildPlan,
    store: &Store,
    registry: &Arc<RegistryClient>,
    outputs: &Outputs,
    reporter: &Arc<dyn Reporter>,
) -> Result<()> {
    let mut missing = Vec::new();
    for (index, step) in plan.features.iter().enumerate() {
        if store.step_record(&step.cache_key)?.is_none() {
            missing.push(index);
        }
    }
    for text in &outputs.cache_from {
        if missing.is_empty() {
            break;
        }
        let repository = CacheRepository::parse(&CacheOption::parse(text)?.reference)?;
        let mut tasks = tokio::task::JoinSet::new();
        for &index in &missing {
            let (store, registry) = (store.clone(), Arc::clone(registry));
            let repository = repository.clone();
            let key = plan.features[index].cache_key.clone();
            tasks.spawn(async move {
                let found = remote::fetch_entry(&registry, &store, &repository, &key).await;
                (index, found)
            });
        }
        let mut still_missing = Vec::new();
        let mut unreachable = None;
        while let Some(joined) = tasks.join_next().await {
            let (index, found) = joined.expect("cache lookups do not panic");
            let feature = &plan.features[index].id;
            match found {
                Ok(Some(layer)) => reporter.report(Event::Info {
                    message: format!(
                        "reusing layer {} of {feature} from cache `{repository}`",
                        short(&layer.digest)
                    ),
                }),
                Ok(None) => still_missing.push(index),
                Err(e) if e.is_unreachable() => {
                    unreachable.get_or_insert(e);
                    still_missing.push(index);
                }
                Err(e) => {
                    reporter.report(Event::Warning {
                        message: format!("skipping the cached layer of {feature}: {e}"),
                    });
                    still_missing.push(index);
                }
            }
        }
        if let Some(e) = unreachable {
            let cause = std::error::Error::source(&e)
                .and_then(std::error::Error::source)
                .map(|c| format!(": {c}"))
                .unwrap_or_default();
            reporter.report(Event::Warning {
                message: format!("cache `{repository}` is unreachable, not used{cause}"),
            });
        }
        still_missing.sort_unstable();
        missing = still_missing;
    }
    Ok(())
}

/// Writes an entry to the `--cache-to` repository for every step whose entry is not there
/// yet. Runs only after every step's layer is complete in the store.
async fn push_cache_entries(
    plan: &BuildPlan,
    store: &Store,
    registry: &Arc<RegistryClient>,
    cache_to: &str,
    reporter: &dyn Reporter,
) -> Result<()> {
    let repository = CacheRepository::parse(cache_to)?;
    let mut tasks = tokio::task::JoinSet::new();
    for step in &plan.features {
        let Some(record) = store.step_record(&step.cache_key)? else {
            reporter.report(Event::Warning {
                message: format!(
                    "the layer of {} is not in the store; not writing it to cache `{repository}`",
                    step.id
                ),
            });
            continue;
        };
        let (store, registry) = (store.clone(), Arc::clone(registry));
        let repository = repository.clone();
        let key = step.cache_key.clone();
        tasks.spawn(async move {
            remote::push_entry(&registry, &store, &repository, &key, &record.layer).await
        });
    }
    let (mut written, mut present) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        if joined.expect("cache uploads do not panic")? {
            written += 1;
        } else {
            present += 1;
        }
    }
    reporter.report(Event::Info {
        message: format!("cache `{repository}`: wrote {written} layer(s), {present} already there"),
    });
    Ok(())
}

/// Accepts a missing or empty folder, or an OCI image layout, as the target of `--output`.
fn check_layout_folder(dir: &Path) -> Result<()> {
    let not_layout = |what: &str| {
        Error::usage(
            format!("`--output` folder `{}` {what}", dir.display()),
            Some("name a new folder, an empty one, or an OCI image layout".to_string()),
        )
    };
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(not_layout(&format!("cannot be read: {e}"))),
        Ok(meta) if !meta.is_dir() => Err(not_layout("is not a folder")),
        Ok(_) => {
            let empty = std::fs::read_dir(dir)
                .map(|mut entries| entries.next().is_none())
                .unwrap_or(false);
            if empty || dir.join("oci-layout").is_file() {
                Ok(())
            } else {
                Err(not_layout(
                    "is not an OCI image layout (it has no `oci-layout` file)",
                ))
            }
        }
    }
}

/// Tells whether the manifest, config and layers of an image are all in the store with the
/// sizes the manifest gives.
fn image_is_complete(content: &crate::store::ContentStore, manifest_digest: &str) -> bool {
    let Ok(bytes) = content.read_blob(manifest_digest) else {
        return false;
    };
    let Ok(manifest) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return false;
    };
    let config = manifest.get("config").into_iter();
    let layers = manifest
        .get("layers")
        .and_then(|l| l.as_array())
        .into_iter()
        .flatten();
    config.chain(layers).all(|descriptor| {
        let digest = descriptor.get("digest").and_then(|d| d.as_str());
        let size = descriptor.get("size").and_then(|s| s.as_u64());
        match (digest, size) {
            (Some(digest), Some(size)) => content.has_blob_of_size(digest, size),
            _ => false,
        }
    })
}

/// Summarizes the layers of an image whose every step is recorded in the store.
/// The signature and attestation objects pushed for a build.
#[derive(Default)]
struct SupplyChain {
    signatures: Vec<String>,
    attestations: Vec<String>,
}

/// Writes the SBOM file, and signs each pushed image and attaches its SBOM and provenance.
#[allow(clippy::too_many_arguments)]
async fn supply_chain(
    plan: &BuildPlan,
    options: &ProjectOptions,
    outputs: &Outputs,
    engine: &EngineChoice,
    tags: &[String],
    pushed: &[String],
    unchanged: &[String],
    manifest_digest: &str,
    started_at: std::time::SystemTime,
    registry: &RegistryClient,
    reporter: &dyn Reporter,
) -> Result<SupplyChain> {
    let mut result = SupplyChain::default();
    if outputs.sbom.is_none() && outputs.sign_key.is_none() {
        return Ok(result);
    }
    let images: Vec<ImageRef> = pushed
        .iter()
        .map(|text| ImageRef::parse(text))
        .collect::<Result<_, _>>()?;
    let first_name = images
        .first()
        .map(|image| format!("{}/{}", image.registry, image.repository))
        .or_else(|| tags.first().cloned())
        .unwrap_or_default();
    let mut facts = crate::sign::BuildFacts::from_plan(
        plan,
        &options.workspace,
        &first_name,
        manifest_digest,
        started_at,
    )
    .map_err(|source| crate::sign::Error::ReadConfig {
        path: plan.config_file.clone(),
        source,
    })?;
    if let EngineChoice::BuildKit { .. } = engine {
        facts.engine = "buildkit".to_string();
    }

    if let Some(path) = &outputs.sbom {
        let document = crate::sign::sbom::document(&facts);
        let text = serde_json::to_string_pretty(&document).expect("the SBOM serializes");
        std::fs::write(path, text + "\n").map_err(|source| crate::sign::Error::WriteSbom {
            path: path.clone(),
            source,
        })?;
        reporter.report(Event::Info {
            message: format!("wrote SBOM `{}`", path.display()),
        });
    }

    let Some(key) = &outputs.sign_key else {
        return Ok(result);
    };
    for (image, text) in images.iter().zip(pushed) {
        let name = format!("{}/{}", image.registry, image.repository);
        // An image that was already in the registry and already signed by this key, with its
        // attestations, is left as it is, so an unchanged rebuild uploads nothing.
        if unchanged.contains(text)
            && crate::sign::verify_image(registry, image, &key.public_key(), true)
                .await
                .is_ok()
        {
            reporter.report(Event::Info {
                message: format!("{name}@{manifest_digest} is already signed by this key"),
            });
            continue;
        }
        let facts = facts.for_image(&name);
        let signature = crate::sign::attach_signature(registry, image, key).await?;
        reporter.report(Event::Info {
            message: format!("signed {name}@{manifest_digest}"),
        });
        result.signatures.push(signature.reference);

        let attestations = [
            (
                crate::sign::sbom::PREDICATE_TYPE,
                crate::sign::sbom::document(&facts),
            ),
            (
                crate::sign::provenance::PREDICATE_TYPE,
                crate::sign::provenance::predicate(&facts),
            ),
        ];
        let mut last = None;
        for (predicate_type, predicate) in attestations {
            last = Some(
                crate::sign::attach_attestation(registry, image, key, predicate_type, predicate)
                    .await?,
            );
        }
        reporter.report(Event::Info {
            message: format!("attached SBOM and provenance to {name}@{manifest_digest}"),
        });
        if let Some(attached) = last {
            result.attestations.push(attached.reference);
        }
    }
    Ok(result)
}

/// The layer summaries of an image whose every step is recorded in the store.
fn up_to_date_layers(store: &Store, plan: &BuildPlan) -> Result<Vec<LayerSummary>> {
    let mut layers = Vec::new();
    for step in &plan.features {
        let record = store.step_record(&step.cache_key)?;
        let (digest, size) = record
            .map(|r| (r.layer.digest, r.layer.size))
            .unwrap_or_default();
        layers.push(LayerSummary {
            feature: step.id.clone(),
            reference: step.reference.clone(),
            digest,
            size,
            cached: true,
            seconds: 0.0,
        });
    }
    Ok(layers)
}

/// Returns the key of the plan record: the plan digest for the local engine, and a key of its
/// own for BuildKit, whose layers another tar writer writes, so that its image differs.
fn plan_record_key(plan_digest: &str, engine: &EngineChoice) -> String {
    match engine {
        EngineChoice::Local => plan_digest.to_string(),
        EngineChoice::BuildKit { .. } => format!("{plan_digest}-buildkit"),
    }
}

/// Summarizes the layers of a build, one per step.
fn layer_summaries(plan: &BuildPlan, results: &[crate::engine::StepResult]) -> Vec<LayerSummary> {
    plan.features
        .iter()
        .zip(results)
        .map(|(step, result)| LayerSummary {
            feature: step.id.clone(),
            reference: step.reference.clone(),
            digest: result.layer.digest.clone(),
            size: result.layer.size,
            cached: result.cached,
            seconds: result.duration.as_secs_f64(),
        })
        .collect()
}

/// Summarizes the layers of a stored image from the last layers of its manifest.
fn image_layers(
    store: &Store,
    plan: &BuildPlan,
    manifest_digest: &str,
) -> Result<Vec<LayerSummary>> {
    let manifest: serde_json::Value =
        serde_json::from_slice(&store.content().read_blob(manifest_digest)?)
            .map_err(|e| crate::image::Error::InvalidDocument(e.to_string()))?;
    let layers = manifest
        .get("layers")
        .and_then(|l| l.as_array())
        .cloned()
        .unwrap_or_default();
    let first = layers.len().saturating_sub(plan.features.len());
    Ok(plan
        .features
        .iter()
        .zip(&layers[first..])
        .map(|(step, layer)| LayerSummary {
            feature: step.id.clone(),
            reference: step.reference.clone(),
            digest: layer
                .get("digest")
                .and_then(|d| d.as_str())
                .unwrap_or_default()
                .to_string(),
            size: layer
                .get("size")
                .and_then(|s| s.as_u64())
                .unwrap_or_default(),
            cached: true,
            seconds: 0.0,
        })
        .collect())
}

/// Connects to BuildKit and builds `plan` there, importing the image into `store`. BuildKit
/// pushes to `outputs.push` itself and uses the registry caches of `outputs`.
#[allow(clippy::too_many_arguments)]
async fn run_buildkit_engine(
    plan: &BuildPlan,
    store: &Store,
    registry: &Arc<RegistryClient>,
    outputs: &Outputs,
    engine: &EngineChoice,
    no_cache: bool,
    reporter: &dyn Reporter,
    cancel: &Cancel,
) -> Result<crate::engine::buildkit::BuildKitOutput> {
    use crate::engine::buildkit::{BuildKitEngine, BuildKitOptions, CacheExport};

    let EngineChoice::BuildKit { address, tls } = engine else {
        unreachable!("called for the BuildKit engine only");
    };
    let cache_to = match &outputs.cache_to {
        Some(text) => {
            let option = CacheOption::parse(text)?;
            Some(CacheExport {
                reference: option.reference,
                max: option.max,
            })
        }
        None => None,
    };
    let cache_from = outputs
        .cache_from
        .iter()
        .map(|text| CacheOption::parse(text).map(|option| option.reference))
        .collect::<Result<Vec<_>>>()?;
    let options = BuildKitOptions {
        address: address.clone(),
        tls: tls.clone(),
        push: outputs.push.clone(),
        cache_to,
        cache_from: if no_cache { Vec::new() } else { cache_from },
        no_cache,
        registry: Arc::clone(registry),
    };
    let connect = BuildKitEngine::connect(options);
    let engine = until_cancelled(connect, cancel)
        .await?
        .map_err(crate::engine::Error::from)?;
    Ok(engine.build(plan, store, reporter, cancel).await?)
}

fn local_engine(store: Store, options: &ProjectOptions, no_cache: bool) -> LocalEngine {
    LocalEngine::new(
        store,
        LocalOptions {
            network: options.network,
            no_cache,
        },
    )
}

async fn run_local_engine(
    engine: LocalEngine,
    plan: &BuildPlan,
    reporter: &Arc<dyn Reporter>,
    cancel: &Cancel,
) -> Result<Vec<crate::engine::StepResult>> {
    let plan = plan.clone();
    let reporter = Arc::clone(reporter);
    let cancel = cancel.clone();
    let results =
        tokio::task::spawn_blocking(move || engine.build(&plan, reporter.as_ref(), &cancel))
            .await
            .expect("the engine thread does not panic")?;
    Ok(results)
}

/// Copies the base image's layers into the store, from its registry or its layout folder.
async fn fetch_base_layers(
    plan: &BuildPlan,
    store: &Store,
    registry: &Arc<RegistryClient>,
    reporter: &dyn Reporter,
    cancel: &Cancel,
) -> Result<()> {
    let content = store.content();
    let manifest: serde_json::Value = serde_json::from_slice(&plan.base.manifest)
        .map_err(|e| crate::image::Error::InvalidDocument(e.to_string()))?;
    let layers = manifest
        .get("layers")
        .and_then(|l| l.as_array())
        .cloned()
        .unwrap_or_default();
    let missing: Vec<String> = layers
        .iter()
        .filter_map(|l| l.get("digest")?.as_str().map(str::to_string))
        .filter(|digest| !content.has_blob(digest))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    reporter.report(Event::Base {
        message: format!(
            "fetching {} base layer(s) of {}",
            missing.len(),
            plan.base.reference
        ),
    });

    let mut tasks = tokio::task::JoinSet::new();
    for digest in missing {
        let content = content.clone();
        let source = plan.base.source.clone();
        let registry = Arc::clone(registry);
        let staged = content.temp_file()?;
        tasks.spawn(async move {
            match &source {
                BaseSource::Registry(image) => {
                    registry
                        .fetch_blob_to_file(image, &digest, staged.path())
                        .await?;
                }
                BaseSource::Layout { dir } => {
                    let path = layout_blob(dir, &digest);
                    tokio::fs::copy(&path, staged.path())
                        .await
                        .map_err(|source| crate::image::Error::Io {
                            action: "copy",
                            path,
                            source,
                        })?;
                }
            }
            content.ingest_file(staged, &digest)?;
            Ok::<(), Error>(())
        });
    }
    loop {
        tokio::select! {
            next = tasks.join_next() => match next {
                Some(result) => result.expect("fetch tasks do not panic")?,
                None => return Ok(()),
            },
            _ = wait_cancelled(cancel) => return Err(Error::Interrupted),
        }
    }
}

/// Runs `work` unless the user interrupts first; then `work` is dropped, which aborts its
/// requests, and the result is [`Error::Interrupted`].
async fn until_cancelled<T>(
    work: impl std::future::Future<Output = T>,
    cancel: &Cancel,
) -> Result<T> {
    tokio::select! {
        result = work => Ok(result),
        _ = wait_cancelled(cancel) => Err(Error::Interrupted),
    }
}

async fn wait_cancelled(cancel: &Cancel) {
    while !cancel.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn layout_blob(dir: &Path, digest: &str) -> PathBuf {
    let (algorithm, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
    dir.join("blobs").join(algorithm).join(hex)
}

/// The pushed reference `registry/repository:tag@sha256:...` when `destination` already names
/// the manifest `manifest_digest`, found with one manifest request. Any failure counts as not
/// pushed, so that the push itself reports it.
async fn already_pushed(
    registry: &RegistryClient,
    manifest_digest: &str,
    destination: &str,
) -> Option<String> {
    let target = ImageRef::parse(destination).ok()?;
    match registry.fetch_manifest(&target).await {
        Ok(found) if found.digest == manifest_digest => Some(format!("{target}@{}", found.digest)),
        Ok(found) => {
            tracing::debug!(
                "`{target}` names `{}`, pushing `{manifest_digest}`",
                found.digest
            );
            None
        }
        Err(e) => {
            tracing::debug!("`{target}` has no manifest to compare: {e}");
            None
        }
    }
}

/// Pushes the image `manifest_digest` from the store to `destination` and returns the pushed
/// reference with its digest, as `registry/repository:tag@sha256:...`.
pub async fn push_image(
    store: &Store,
    registry: &Arc<RegistryClient>,
    manifest_digest: &str,
    destination: &str,
) -> Result<String> {
    check_push_destination(destination)?;
    let target = ImageRef::parse(destination)?;
    let content = store.content();
    let manifest_bytes = content.read_blob(manifest_digest)?;
    let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| crate::image::Error::InvalidDocument(e.to_string()))?;
    let media_type = manifest
        .get("mediaType")
        .and_then(|m| m.as_str())
        .unwrap_or("application/vnd.oci.image.manifest.v1+json")
        .to_string();

    let mut blobs: Vec<String> = Vec::new();
    if let Some(digest) = manifest.pointer("/config/digest").and_then(|d| d.as_str()) {
        blobs.push(digest.to_string());
    }
    if let Some(layers) = manifest.get("layers").and_then(|l| l.as_array()) {
        blobs.extend(
            layers
                .iter()
                .filter_map(|l| l.get("digest")?.as_str().map(str::to_string)),
        );
    }

    let mut tasks = tokio::task::JoinSet::new();
    for digest in blobs {
        let registry = Arc::clone(registry);
        let target = target.clone();
        let path = content.blob_path(&digest);
        tasks.spawn(async move { registry.push_blob_file(&target, &digest, &path).await });
    }
    while let Some(result) = tasks.join_next().await {
        result.expect("push tasks do not panic")?;
    }
    let digest = registry
        .push_manifest(&target, &manifest_bytes, &media_type)
        .await?;
    Ok(format!("{target}@{digest}"))
}

/// Rejects a push destination that names no registry or is not a valid reference.
fn check_push_destination(destination: &str) -> Result<()> {
    if !crate::registry::names_registry(destination) {
        return Err(Error::usage(
            format!("`{destination}` names no registry to push to"),
            Some(format!(
                "write the registry host in full, such as `127.0.0.1:5000/{destination}`; \
                 envc never pushes to Docker Hub implicitly (write `docker.io/...` for it)"
            )),
        ));
    }
    ImageRef::parse(destination)?;
    Ok(())
}

/// Writes the image config and manifest of `plan` with the layers the engine built.
fn assemble(
    plan: &BuildPlan,
    results: &[crate::engine::StepResult],
    content: &crate::store::ContentStore,
) -> Result<crate::image::assemble::AssembledImage> {
    let layers: Vec<NewLayer> = plan
        .features
        .iter()
        .zip(results)
        .map(|(step, result)| NewLayer {
            layer: result.layer.clone(),
            created_by: history_text(step),
        })
        .collect();
    let labels: Vec<(String, String)> = plan
        .image
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let input = ImageInput {
        base_manifest: &plan.base.manifest,
        base_config: &plan.base.config,
        layers: &layers,
        env: &plan.image.env,
        user: plan.image.user.as_deref(),
        labels: &labels,
        source_date_epoch: plan.settings.source_date_epoch,
    };
    Ok(crate::image::assemble::assemble(&input, content)?)
}

/// Formats the history entry of a Feature's layer, such as
/// `envc: install Feature app-tool 1.0.0 from ./features/app-tool`.
pub(crate) fn history_text(step: &crate::plan::Step) -> String {
    let version = step
        .version
        .as_deref()
        .map(|v| format!(" {v}"))
        .unwrap_or_default();
    format!(
        "envc: install Feature {}{version} from {}",
        step.id, step.reference
    )
}

/// Returns the descriptor of manifest `digest` in the store, for tagging and export.
fn manifest_descriptor(
    content: &crate::store::ContentStore,
    digest: &str,
) -> Result<oci_spec::image::Descriptor> {
    let bytes = content.read_blob(digest)?;
    let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|m| m.get("mediaType")?.as_str().map(str::to_string))
        .unwrap_or_else(|| "application/vnd.oci.image.manifest.v1+json".to_string());
    Ok(crate::store::ContentStore::descriptor(
        &media_type,
        digest,
        bytes.len() as u64,
    )?)
}

/// Appends `:latest` to a name that has neither a tag nor a digest, as Docker does.
pub fn with_default_tag(name: &str) -> String {
    let last_segment = name.rsplit('/').next().unwrap_or(name);
    if last_segment.contains(':') || name.contains('@') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

/// Returns the tag used when the user gives none: the project folder's name, lowercased, as
/// `<name>:latest`.
pub fn default_tag(config: &Config) -> String {
    let name = config
        .workspace
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("envc-image");
    let name: String = name
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    format!(
        "{}:latest",
        if name.is_empty() { "envc-image" } else { name }
    )
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_tag_is_latest() {
        assert_eq!(with_default_tag("hello"), "hello:latest");
        assert_eq!(
            with_default_tag("127.0.0.1:5000/team/hello"),
            "127.0.0.1:5000/team/hello:latest"
        );
        assert_eq!(with_default_tag("hello:1"), "hello:1");
        assert_eq!(
            with_default_tag("127.0.0.1:5000/hello@sha256:ab"),
            "127.0.0.1:5000/hello@sha256:ab"
        );
    }

    #[test]
    fn cache_option_both_forms() {
        let plain = CacheOption::parse("127.0.0.1:5000/team/cache").unwrap();
        assert_eq!(plain.reference, "127.0.0.1:5000/team/cache");
        assert!(plain.max);

        let min = CacheOption::parse("type=registry,ref=127.0.0.1:5000/c:tag,mode=min").unwrap();
        assert_eq!(min.reference, "127.0.0.1:5000/c:tag");
        assert!(!min.max);
        assert!(
            CacheOption::parse("ref=127.0.0.1:5000/c,mode=max")
                .unwrap()
                .max
        );
    }

    #[test]
    fn cache_option_rejects_unknown() {
        for (text, expected) in [
            ("type=local,dest=/tmp/x", "only `type=registry`"),
            (
                "type=registry,ref=r,compression=zstd",
                "unknown key `compression`",
            ),
            ("type=registry,ref=r,mode=all", "`mode` is `min` or `max`"),
            ("type=registry,mode=max", "no `ref`"),
            ("type=registry,ref", "`ref` is not `key=value`"),
        ] {
            let err = CacheOption::parse(text).unwrap_err();
            assert!(err.to_string().contains(expected), "{text}: {err}");
            assert_eq!(err.exit_kind(), crate::error::ExitKind::InvalidInput);
        }
    }

    #[test]
    fn cache_tags_buildkit_only() {
        let outputs = |cache: &str| Outputs {
            cache_to: Some(cache.to_string()),
            ..Outputs::default()
        };
        let buildkit = EngineChoice::BuildKit {
            address: crate::engine::buildkit::connect::Address::Docker("/x.sock".into()),
            tls: None,
        };
        let tagged = "type=registry,ref=127.0.0.1:5000/team/cache:main,mode=max";
        check_outputs(&outputs(tagged), &buildkit).unwrap();
        assert!(check_outputs(&outputs(tagged), &EngineChoice::Local).is_err());
        check_outputs(&outputs("127.0.0.1:5000/team/cache"), &EngineChoice::Local).unwrap();
        let err = check_outputs(&outputs("team/cache"), &buildkit).unwrap_err();
        assert!(err.to_string().contains("names no registry"), "{err}");
    }

    #[test]
    fn plan_record_key_per_engine() {
        let buildkit = EngineChoice::BuildKit {
            address: crate::engine::buildkit::connect::Address::Docker("/x.sock".into()),
            tls: None,
        };
        assert_eq!(
            plan_record_key("sha256:ab", &EngineChoice::Local),
            "sha256:ab"
        );
        assert_eq!(
            plan_record_key("sha256:ab", &buildkit),
            "sha256:ab-buildkit"
        );
    }

    #[test]
    fn push_needs_a_registry_host() {
        assert!(crate::registry::names_registry("127.0.0.1:5000/a:1"));
        assert!(crate::registry::names_registry("localhost/a"));
        assert!(crate::registry::names_registry("ghcr.io/o/a"));
        assert!(!crate::registry::names_registry("hello:latest"));
        assert!(!crate::registry::names_registry("team/hello"));
    }
}
