//! The embedded engine: base layers unpacked into snapshots, each install script run with runc
//! as root over an overlayfs mount, and the upper folder written as the step's layer.
//!
//! For each step whose cache key has no record (or every step with `no_cache`), the engine
//! stacks the snapshots of the base layers and of the steps before it as overlay lower folders
//! (unpacking any that are missing from their blobs), runs the install script in a container
//! whose root is the merged folder, removes what the runtime itself left in the upper folder
//! and the entries overlayfs copied up that the script left unchanged, writes the upper folder
//! as a layer, keeps it as the snapshot of that layer and only then records the step. Mounts,
//! containers and temporary folders are cleaned up on every way out.
//!
//! Snapshots are keyed by their layer's `diff_id`, never by a cache key, so builds sharing a
//! store never remove or replace a snapshot another build has mounted: a step that runs again
//! either makes the same layer, whose snapshot is kept, or a new one under a new id. A cancel
//! is honoured between lowers, before the script starts, while the layer is written and before
//! anything is stored, so an interrupted step records nothing.
//!
//! Not handled here: fetching the base image (its blobs must be in the store already) and
//! assembling the image from the layers.

pub(crate) mod bundle;
mod leftovers;
mod overlay;
mod prereq;
mod runc;
mod unchanged;

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{Cancel, Error, Network, StepResult};
use crate::image::layer::{unpack_layer_cancellable, write_layer_cancellable};
use crate::image::{Layer, LayerOptions};
use crate::plan::{BuildPlan, Step};
use crate::progress::{Event, Reporter};
use crate::store::{StepRecord, Store};

/// Settings of the local engine.
#[derive(Debug, Clone, Default)]
pub struct LocalOptions {
    /// Kept for callers; the network a script gets is the plan's `settings.network`, because
    /// it is part of every step's cache key.
    pub network: Network,
    /// Run every step even when its cache key is known.
    pub no_cache: bool,
}

pub struct LocalEngine {
    store: Store,
    options: LocalOptions,
}

/// A layer below a step, in build order, kept as a snapshot under its diff_id.
#[derive(Debug, Clone)]
struct Lower {
    layer: Layer,
    /// Whether it is a base image layer (its unpacking is reported).
    base: bool,
}

impl LocalEngine {
    pub fn new(store: Store, options: LocalOptions) -> LocalEngine {
        LocalEngine { store, options }
    }

    /// Builds every step of `plan` in order, returning one result per step. The base image's
    /// layers must already be in the store.
    ///
    /// Root, runc and overlayfs are checked before anything runs, and only when some step
    /// has to run: a build that is wholly cached needs none of them.
    ///
    /// # Errors
    ///
    /// [`Error::MissingPrerequisite`] names what the machine lacks, [`Error::ScriptFailed`]
    /// carries an install script's exit code and last lines, [`Error::Interrupted`] follows a
    /// cancel. Nothing is recorded for a step that did not finish.
    pub fn build(
        &self,
        plan: &BuildPlan,
        reporter: &dyn Reporter,
        cancel: &Cancel,
    ) -> Result<Vec<StepResult>, Error> {
        let records = plan
            .features
            .iter()
            .map(|step| self.cached_record(step))
            .collect::<Result<Vec<_>, _>>()?;
        let checked = Instant::now();
        let runc = if records.iter().any(Option::is_none) {
            let runc = self.check_prerequisites()?;
            tracing::debug!("prerequisites checked in {:?}", checked.elapsed());
            Some(runc)
        } else {
            None
        };

        let mut lowers: Vec<Lower> = base_layers(plan)?
            .into_iter()
            .map(|layer| Lower { layer, base: true })
            .collect();
        let total = plan.features.len();
        let mut results = Vec::with_capacity(total);
        for (index, (step, record)) in plan.features.iter().zip(records).enumerate() {
            if cancel.is_cancelled() {
                return Err(Error::Interrupted);
            }
            let started = Instant::now();
            let (layer, cached) = match (record, &runc) {
                (Some(record), _) => {
                    tracing::debug!("step `{}` is cached under `{}`", step.id, step.cache_key);
                    reporter.report(Event::StepCached {
                        index,
                        total,
                        feature: step.id.clone(),
                    });
                    (record.layer, true)
                }
                (None, Some(runc)) => {
                    let lower_dirs = self.lower_dirs(&lowers, reporter, cancel)?;
                    reporter.report(Event::StepStarted {
                        index,
                        total,
                        feature: step.id.clone(),
                    });
                    let layer =
                        self.run_step(plan, index, step, &lower_dirs, runc, reporter, cancel)?;
                    reporter.report(Event::StepDone {
                        index,
                        feature: step.id.clone(),
                        duration: started.elapsed(),
                        size: layer.size,
                    });
                    (layer, false)
                }
                (None, None) => unreachable!("prerequisites are checked when a step must run"),
            };
            lowers.push(Lower {
                layer: layer.clone(),
                base: false,
            });
            results.push(StepResult {
                layer,
                cached,
                duration: started.elapsed(),
            });
        }
        Ok(results)
    }

    /// Checks root, runc and overlayfs when some step of `plan` has to run, so that a build
    /// fails before it fetches anything on a machine that cannot run it.
    ///
    /// # Errors
    ///
    /// [`Error::MissingPrerequisite`] naming what the machine lacks.
    pub fn check_ready(&self, plan: &BuildPlan) -> Result<(), Error> {
        for step in &plan.features {
            if self.cached_record(step)?.is_none() {
                self.check_prerequisites()?;
                return Ok(());
            }
        }
        Ok(())
    }

    /// The step's record, unless caching is off for this build.
    fn cached_record(&self, step: &Step) -> Result<Option<StepRecord>, Error> {
        if self.options.no_cache {
            return Ok(None);
        }
        Ok(self.store.step_record(&step.cache_key)?)
    }

    /// The store path, root, runc and overlayfs, in that order; returns the runc to use.
    fn check_prerequisites(&self) -> Result<runc::Runc, Error> {
        // First, so a path overlayfs would split is named as such, not as a failed mount.
        overlay::mountable(self.store.root())?;
        prereq::check_root()?;
        let binary = prereq::find_runc()?;
        let scratch = self.store.temp_dir("probe-")?;
        prereq::check_overlay(scratch.path())?;
        Ok(runc::Runc {
            binary,
            state_root: PathBuf::new(),
        })
    }

    /// The snapshot folders of `lowers`, newest first, unpacking any that are missing.
    ///
    /// A layer that comes again higher up is left out lower down, because overlayfs rejects
    /// the same folder twice and the higher copy sets every path it contains anyway.
    ///
    /// # Errors
    /// [`Error::Interrupted`] on a cancel, between layers or while one is unpacked.
    fn lower_dirs(
        &self,
        lowers: &[Lower],
        reporter: &dyn Reporter,
        cancel: &Cancel,
    ) -> Result<Vec<PathBuf>, Error> {
        let snapshots = self.store.snapshots();
        let cancelled = || cancel.is_cancelled();
        let mut seen = std::collections::HashSet::new();
        let mut dirs = Vec::with_capacity(lowers.len());
        for Lower { layer, base } in lowers.iter().rev() {
            if !seen.insert(layer.diff_id.as_str()) {
                continue;
            }
            if cancel.is_cancelled() {
                return Err(Error::Interrupted);
            }
            let dir = snapshots.ensure(&layer.diff_id, |dest| {
                let blob = self.store.content().blob_path(&layer.digest);
                if !blob.is_file() {
                    return Err(crate::store::Error::MissingBlob(layer.digest.clone()).into());
                }
                if *base {
                    let short = layer.digest.get(..19).unwrap_or(&layer.digest);
                    reporter.report(Event::Base {
                        message: format!("unpacking layer {short}"),
                    });
                }
                unpack_layer_cancellable(&blob, &layer.media_type, dest, &cancelled)
                    .map_err(engine_error)
            })?;
            dirs.push(dir);
        }
        if dirs.is_empty() {
            // overlayfs needs at least one lower folder; a base without layers gets an empty one.
            dirs.push(snapshots.ensure("empty", |_| Ok::<_, Error>(()))?);
        }
        if cancel.is_cancelled() {
            return Err(Error::Interrupted);
        }
        Ok(dirs)
    }

    /// Runs one step's script over `lower_dirs` and stores its layer, snapshot and record.
    #[allow(clippy::too_many_arguments)]
    fn run_step(
        &self,
        plan: &BuildPlan,
        index: usize,
        step: &Step,
        lower_dirs: &[PathBuf],
        runc: &runc::Runc,
        reporter: &dyn Reporter,
        cancel: &Cancel,
    ) -> Result<Layer, Error> {
        if !step.feature_dir.is_dir() {
            return Err(Error::Io {
                action: format!("use the folder of Feature `{}`", step.id),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("`{}` is not a folder", step.feature_dir.display()),
                ),
            });
        }

        // Declared first, so dropped last: its folder and everything in it go on every return.
        let work_root = self.store.temp_dir("step-")?;
        let dir = |name: &str| -> Result<PathBuf, Error> {
            let path = work_root.path().join(name);
            std::fs::create_dir(&path).map_err(|source| Error::Io {
                action: format!("create `{}`", path.display()),
                source,
            })?;
            Ok(path)
        };
        let (upper, work, merged, bundle_dir) =
            (dir("upper")?, dir("work")?, dir("merged")?, dir("bundle")?);

        let pinned = PinnedLowers::record(lower_dirs)?;
        let started = Instant::now();
        let mount = overlay::OverlayMount::mount(lower_dirs, &upper, &work, &merged)?;
        let mounted = started.elapsed();

        let command = bundle::merged_output_command(&merged, &step.command);
        let spec_input = bundle::BundleSpec {
            rootfs: &merged,
            feature_dir: &step.feature_dir,
            feature_mount: bundle::feature_mount(&step.id),
            command: &command,
            env: bundle::script_env(
                &step.env,
                &bundle::home_of(&merged, &step.users.remote),
                &bundle::home_of(&merged, &step.users.container),
            ),
            network: plan.settings.network,
        };
        let spec = bundle::runtime_spec(&spec_input)?;
        bundle::write_config(&bundle_dir, &spec)?;
        let destinations: Vec<&Path> = spec
            .mounts()
            .iter()
            .flatten()
            .map(|m| m.destination().as_path())
            .chain([spec_input.feature_mount.as_path()])
            .collect();
        let leftovers = leftovers::Leftovers::record(&merged, destinations);

        let runc = runc::Runc {
            state_root: work_root.path().join("runc"),
            ..runc.clone()
        };
        let on_line = |line: String| reporter.report(Event::StepLog { index, line });
        if cancel.is_cancelled() {
            return Err(Error::Interrupted);
        }
        let prepared = started.elapsed();
        let finished = runc.run(&bundle_dir, &runc::container_id(), &on_line, cancel)?;
        let ran = started.elapsed();
        mount.unmount()?;
        // A script that lost its lower files midway has not built what its record would claim.
        pinned.check(&step.id)?;
        if cancel.is_cancelled() {
            return Err(Error::Interrupted);
        }
        if finished.exit_code != 0 {
            return Err(Error::ScriptFailed {
                feature: step.id.clone(),
                location: step.location.clone(),
                exit_code: finished.exit_code,
                output_tail: finished.tail,
            });
        }

        leftovers.remove(&upper)?;
        let dropped = unchanged::drop_unchanged(&upper, lower_dirs)?;
        tracing::debug!("step `{}`: left out {dropped} unchanged copies", step.id);
        let options = LayerOptions {
            compression: plan.settings.compression,
            source_date_epoch: plan.settings.source_date_epoch,
        };
        let cleaned = started.elapsed();
        let cancelled = || cancel.is_cancelled();
        let layer = write_layer_cancellable(&upper, &options, self.store.content(), &cancelled)
            .map_err(engine_error)?;
        let written = started.elapsed();

        // Keyed by content: if this layer's snapshot exists, it is kept and `upper` dropped.
        if cancel.is_cancelled() {
            return Err(Error::Interrupted);
        }
        self.store.snapshots().insert(&layer.diff_id, &upper)?;
        if cancel.is_cancelled() {
            return Err(Error::Interrupted);
        }
        self.store.put_step_record(
            &step.cache_key,
            &StepRecord {
                layer: layer.clone(),
            },
        )?;
        tracing::debug!(
            "step `{}` took {:?}: mount {:?}, prepare {:?}, run {:?}, clean {:?}, layer {:?}, \
             record {:?}",
            step.id,
            started.elapsed(),
            mounted,
            prepared - mounted,
            ran - prepared,
            cleaned - ran,
            written - cleaned,
            started.elapsed() - written,
        );
        Ok(layer)
    }
}

/// Converts an image error to an engine error, and a cancel to [`Error::Interrupted`].
fn engine_error(error: crate::image::Error) -> Error {
    match error {
        crate::image::Error::Cancelled => Error::Interrupted,
        other => Error::Image(other),
    }
}

/// The lower folders of a mount with the identity (device, inode) each had when mounted, to
/// tell afterwards whether one was removed or replaced while a script ran over it.
struct PinnedLowers(Vec<(PathBuf, (u64, u64))>);

impl PinnedLowers {
    fn record(dirs: &[PathBuf]) -> Result<PinnedLowers, Error> {
        let pinned = dirs
            .iter()
            .map(|dir| Ok((dir.clone(), identity(dir)?)))
            .collect::<Result<_, Error>>()?;
        Ok(PinnedLowers(pinned))
    }

    /// Checks that every folder is still the one that was mounted.
    ///
    /// # Errors
    /// [`Error::LowerChanged`] naming the first folder that is gone or is another folder now.
    fn check(&self, feature: &str) -> Result<(), Error> {
        for (dir, before) in &self.0 {
            if identity(dir).ok().as_ref() != Some(before) {
                return Err(Error::LowerChanged {
                    feature: feature.to_string(),
                    snapshot: dir.clone(),
                });
            }
        }
        Ok(())
    }
}

fn identity(dir: &Path) -> Result<(u64, u64), Error> {
    use std::os::unix::fs::MetadataExt;

    let meta = std::fs::metadata(dir).map_err(|source| Error::Io {
        action: format!("read snapshot `{}`", dir.display()),
        source,
    })?;
    Ok((meta.dev(), meta.ino()))
}

/// The base image's layers, bottom first, from the plan's manifest and config bytes.
fn base_layers(plan: &BuildPlan) -> Result<Vec<Layer>, Error> {
    use oci_spec::image::{ImageConfiguration, ImageManifest};

    let invalid = |what: &str, e: &dyn std::fmt::Display| {
        crate::image::Error::InvalidDocument(format!(
            "base image `{}` {what}: {e}",
            plan.base.reference
        ))
    };
    let manifest = ImageManifest::from_reader(plan.base.manifest.as_slice())
        .map_err(|e| invalid("has an unreadable manifest", &e))?;
    let config = ImageConfiguration::from_reader(plan.base.config.as_slice())
        .map_err(|e| invalid("has an unreadable config", &e))?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        let counts = format!(
            "{} layers, {} diff_ids",
            manifest.layers().len(),
            diff_ids.len()
        );
        return Err(invalid("lists a different number of layers and diff_ids", &counts).into());
    }
    Ok(manifest
        .layers()
        .iter()
        .zip(diff_ids)
        .map(|(descriptor, diff_id)| Layer {
            digest: descriptor.digest().to_string(),
            diff_id: diff_id.clone(),
            size: descriptor.size(),
            media_type: descriptor.media_type().to_string(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_layers_pair_manifest_layers_with_diff_ids() {
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": format!("sha256:{}", "c".repeat(64)),
                "size": 10
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": format!("sha256:{}", "a".repeat(64)),
                "size": 123
            }]
        });
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{}", "b".repeat(64))] }
        });
        let mut plan = test_plan();
        plan.base.manifest = serde_json::to_vec(&manifest).unwrap();
        plan.base.config = serde_json::to_vec(&config).unwrap();

        let layers = base_layers(&plan).unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0].digest, format!("sha256:{}", "a".repeat(64)));
        assert_eq!(layers[0].diff_id, format!("sha256:{}", "b".repeat(64)));
        assert_eq!(layers[0].size, 123);
        assert_eq!(
            layers[0].media_type,
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );

        plan.base.config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
                .to_vec();
        let err = base_layers(&plan).unwrap_err();
        assert!(err.to_string().contains("1 layers, 0 diff_ids"), "{err}");
    }

    #[test]
    fn cached_build_runs_nothing() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let layer = Layer {
            digest: format!("sha256:{}", "d".repeat(64)),
            diff_id: format!("sha256:{}", "e".repeat(64)),
            size: 5,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        };
        std::fs::create_dir_all(store.content().blob_path(&layer.digest).parent().unwrap())
            .unwrap();
        std::fs::write(store.content().blob_path(&layer.digest), "blob!").unwrap();
        let mut plan = test_plan();
        plan.features.push(test_step("hello", "sha256:1111"));
        store
            .put_step_record(
                "sha256:1111",
                &StepRecord {
                    layer: layer.clone(),
                },
            )
            .unwrap();

        let reporter = crate::progress::Recorder::default();
        let engine = LocalEngine::new(store, LocalOptions::default());
        // Base documents are still parsed; give an empty but valid base.
        plan.base.manifest = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1},"layers":[]}"#.to_vec();
        plan.base.config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
                .to_vec();
        let results = engine.build(&plan, &reporter, &Cancel::default()).unwrap();

        assert_eq!(results.len(), 1);
        assert!(results[0].cached);
        assert_eq!(results[0].layer, layer);
        let events = reporter.0.lock().unwrap();
        assert_eq!(
            *events,
            [Event::StepCached {
                index: 0,
                total: 1,
                feature: "hello".into()
            }]
        );
    }

    #[test]
    fn cancelled_build_stops_first() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let engine = LocalEngine::new(store, LocalOptions::default());
        let mut plan = test_plan();
        plan.base.manifest = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1},"layers":[]}"#.to_vec();
        plan.base.config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
                .to_vec();
        plan.features.push(test_step("hello", "sha256:2222"));
        let cancel = Cancel::default();
        cancel.cancel();
        let result = engine.build(&plan, &crate::progress::Silent, &cancel);
        // Without root or runc the prerequisite check fails first; with them, the cancel wins.
        assert!(matches!(
            result,
            Err(Error::Interrupted | Error::MissingPrerequisite { .. })
        ));
    }

    #[test]
    fn pinned_lowers_notice_a_replaced_or_removed_folder() {
        let root = tempfile::tempdir().unwrap();
        let dirs: Vec<PathBuf> = ["a", "b"].iter().map(|n| root.path().join(n)).collect();
        for dir in &dirs {
            std::fs::create_dir(dir).unwrap();
        }
        let pinned = PinnedLowers::record(&dirs).unwrap();
        pinned.check("f").unwrap();

        // Replaced: the same path, another folder.
        std::fs::rename(&dirs[1], root.path().join("old")).unwrap();
        std::fs::create_dir(&dirs[1]).unwrap();
        let err = pinned.check("f").unwrap_err();
        assert!(matches!(err, Error::LowerChanged { .. }), "{err}");
        assert!(err.to_string().contains("`f`"), "{err}");

        std::fs::remove_dir(&dirs[1]).unwrap();
        assert!(pinned.check("f").is_err());
    }

    #[test]
    fn store_path_that_overlayfs_would_split_is_refused_first() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(&root.path().join("store,with:marks")).unwrap();
        let engine = LocalEngine::new(store, LocalOptions::default());
        let err = engine.check_prerequisites().unwrap_err();
        assert!(matches!(err, Error::UnusableStore { .. }), "{err}");
        assert!(err.is_invalid_input());
        assert!(err.to_string().contains("store,with:marks"), "{err}");
        assert!(err.hint().unwrap().contains("plain path"));
    }

    fn test_plan() -> BuildPlan {
        BuildPlan {
            config_file: "/p/.devcontainer/devcontainer.json".into(),
            base: crate::plan::BasePlan {
                reference: "example/base".into(),
                digest: "sha256:00".into(),
                source: crate::plan::BaseSource::Layout {
                    dir: "/nowhere".into(),
                },
                manifest: Vec::new(),
                config: Vec::new(),
            },
            features: Vec::new(),
            image: crate::plan::ImagePlan {
                env: Vec::new(),
                user: None,
                labels: Default::default(),
            },
            settings: crate::plan::Settings {
                compression: Default::default(),
                source_date_epoch: 0,
                network: Network::None,
            },
            plan_digest: "sha256:00".into(),
        }
    }

    fn test_step(id: &str, cache_key: &str) -> Step {
        Step {
            id: id.into(),
            reference: format!("./{id}"),
            version: None,
            options: Default::default(),
            content_digest: "sha256:00".into(),
            resolved: None,
            cache_key: cache_key.into(),
            feature_dir: "/nowhere".into(),
            command: vec!["/bin/sh".into(), "./install.sh".into()],
            env: Vec::new(),
            users: Default::default(),
            location: None,
            required_by: None,
        }
    }
}
