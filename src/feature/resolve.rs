//! Resolving the `features` of a config into instances, following `dependsOn`.
//!
//! The walk is the reference CLI's: breadth-first from the listed Features in key order, each
//! `dependsOn` entry queued with its options, and an instance skipped when an equal one (same
//! source, same options as written) is already known. Unlike the reference, an option written
//! as `true` and one written as `"true"` are different options, so both instances are kept.
//! `installsAfter` entries are matched against the instances without fetching them: by OCI
//! resource (version ignored, legacy ids of the installed Feature as aliases), local path or
//! tarball URL; entries nothing satisfies are dropped.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use super::fetch::fetch_locked;
use super::lockfile::Lockfile;
use super::options::{self, UserOption};
use super::reference::{FOLDED_IDS, LEGACY_NAMESPACE};
use super::{Error, FeatureInstance, FeatureRef, FeatureSource, FetchedFeature, Origin};
use crate::config::{Config, FeatureEntry, FeatureOptions, Location, OptionValue};
use crate::registry::RegistryClient;

/// Every Feature instance of a build, in discovery order (breadth-first from the listed
/// Features), with the edges the install order needs.
#[derive(Debug)]
pub struct Resolution {
    pub instances: Vec<FeatureInstance>,
    /// `(dependent, dependency)` index pairs from `dependsOn`.
    pub hard_edges: Vec<(usize, usize)>,
    /// `(dependent, dependency)` index pairs from `installsAfter` that some instance satisfies.
    pub soft_edges: Vec<(usize, usize)>,
    /// The `installsAfter` entries behind `soft_edges`, one per entry: an entry is met once
    /// any one of the instances satisfying it is installed. Empty when a resolution is built
    /// by hand; then each soft edge counts as its own entry.
    pub installs_after: Vec<SoftDependency>,
}

/// One `installsAfter` entry that at least one instance satisfies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoftDependency {
    pub dependent: usize,
    /// The entry as written in `devcontainer-feature.json`.
    pub written: String,
    /// The instances that satisfy it, in index order.
    pub satisfied_by: Vec<usize>,
}

/// A reference waiting in the breadth-first queue.
struct Pending {
    reference: FeatureRef,
    options: PendingOptions,
    origin: Origin,
    parent: Option<usize>,
}

enum PendingOptions {
    Shorthand(String, Location),
    Listed(Vec<UserOption>),
    DependsOn(serde_json::Map<String, serde_json::Value>),
}

/// Resolves, fetches and validates every Feature of `config`.
///
/// # Errors
///
/// Reference, fetch, metadata and option errors, each naming the Feature and where it was
/// written.
pub async fn resolve_features(
    config: &Config,
    registry: &RegistryClient,
    cache_dir: &std::path::Path,
) -> Result<Resolution, Error> {
    resolve_features_locked(config, registry, cache_dir, None).await
}

/// Like [`resolve_features`], with each OCI and tarball Feature pinned by its record in
/// `lock` (by the key as written) when it has one.
///
/// # Errors
///
/// As [`resolve_features`]; [`Error::Integrity`] when fetched content differs from its record.
pub async fn resolve_features_locked(
    config: &Config,
    registry: &RegistryClient,
    cache_dir: &std::path::Path,
    lock: Option<&Lockfile>,
) -> Result<Resolution, Error> {
    let devcontainer_dir = config.workspace.join(".devcontainer");
    // Parsing a local reference resolves symbolic links on disk, and the same reference is
    // often written many times (listed, then in `installsAfter`), so each is parsed once.
    let mut parsed: HashMap<String, FeatureRef> = HashMap::new();
    let mut parse = |written: &str, location: &Location| {
        if let Some(reference) = parsed.get(written) {
            return Ok(reference.clone());
        }
        let reference = FeatureRef::parse_in(
            written,
            &config.config_dir,
            &devcontainer_dir,
            Some(location),
        )?;
        parsed.insert(written.to_string(), reference.clone());
        Ok::<_, Error>(reference)
    };

    let mut queue = VecDeque::new();
    for entry in fold_deprecated(&config.features) {
        let reference = parse(&entry.reference, &entry.location)?;
        let options = match entry.options {
            FeatureOptions::Shorthand(value) => {
                PendingOptions::Shorthand(value, entry.location.clone())
            }
            FeatureOptions::Map(map) => PendingOptions::Listed(
                map.into_iter()
                    .map(|(id, (value, location))| UserOption {
                        id,
                        value,
                        location: Some(location),
                    })
                    .collect(),
            ),
        };
        queue.push_back(Pending {
            reference,
            options,
            origin: Origin::Listed(entry.location),
            parent: None,
        });
    }

    let mut fetched: HashMap<FeatureSource, Arc<FetchedFeature>> = HashMap::new();
    let mut instances: Vec<FeatureInstance> = Vec::new();
    let mut by_source: HashMap<SourceKey, Vec<usize>> = HashMap::new();
    let mut hard_edges = Vec::new();
    let mut soft_refs: Vec<(usize, FeatureRef)> = Vec::new();
    while let Some(pending) = queue.pop_front() {
        let feature = match fetched.get(&pending.reference.source) {
            Some(feature) => Arc::clone(feature),
            None => {
                let location = pending.origin.location();
                let locked = lock.and_then(|lock| lock.get(&pending.reference.written));
                let feature =
                    fetch_locked(&pending.reference, registry, cache_dir, location, locked);
                let feature = Arc::new(feature.await?);
                fetched.insert(pending.reference.source.clone(), Arc::clone(&feature));
                feature
            }
        };

        let label = pending.reference.written.as_str();
        let metadata = &feature.metadata;
        let (user, shorthand) = match pending.options {
            PendingOptions::Shorthand(value, location) => (
                vec![options::shorthand(
                    label,
                    metadata,
                    &value,
                    Some(&location),
                )?],
                true,
            ),
            PendingOptions::Listed(user) => (user, false),
            PendingOptions::DependsOn(map) => (
                options::from_json(label, &map, pending.origin.location())?,
                false,
            ),
        };
        let resolved = options::resolve(label, metadata, &user)?;
        options::env_names(label, metadata)?;
        let user_options: BTreeMap<String, OptionValue> = user
            .into_iter()
            .map(|option| (option.id, option.value))
            .collect();

        let key = SourceKey::of(&feature);
        let existing = by_source.get(&key).and_then(|same| {
            same.iter().copied().find(|&i| {
                instances[i].shorthand == shorthand && instances[i].user_options == user_options
            })
        });
        let index = existing.unwrap_or(instances.len());
        if let Some(parent) = pending.parent {
            hard_edges.push((parent, index));
        }
        if existing.is_some() {
            tracing::debug!(feature = label, "already resolved with the same options");
            continue;
        }

        for ((key, dependency_options), location) in metadata
            .depends_on
            .iter()
            .zip(&metadata.locations.depends_on)
        {
            queue.push_back(Pending {
                reference: parse(key, location)?,
                options: PendingOptions::DependsOn(dependency_options.clone()),
                origin: Origin::DependsOn {
                    parent: metadata.id.clone(),
                    location: Some(location.clone()),
                },
                parent: Some(index),
            });
        }
        for (written, location) in metadata
            .installs_after
            .iter()
            .zip(&metadata.locations.installs_after)
        {
            soft_refs.push((index, parse(written, location)?));
        }
        by_source.entry(key).or_default().push(index);
        instances.push(FeatureInstance {
            feature: Arc::clone(&feature),
            user_options,
            options: resolved,
            origin: pending.origin,
            shorthand,
        });
    }

    // A folder or URL entry is satisfied exactly by the instances of that source; only OCI
    // entries need the looser match.
    let mut by_exact_source: HashMap<&FeatureSource, Vec<usize>> = HashMap::new();
    for (index, instance) in instances.iter().enumerate() {
        let source = &instance.feature.reference.source;
        if !matches!(source, FeatureSource::Oci(_)) {
            by_exact_source.entry(source).or_default().push(index);
        }
    }
    let mut installs_after = Vec::new();
    for (dependent, reference) in soft_refs {
        let satisfied_by: Vec<usize> = match &reference.source {
            FeatureSource::Oci(_) => (0..instances.len())
                .filter(|&i| satisfies_soft(&instances[i], &reference, true))
                .collect(),
            exact => by_exact_source.get(exact).cloned().unwrap_or_default(),
        };
        if satisfied_by.is_empty() {
            tracing::debug!(
                feature = %instances[dependent].feature.reference,
                after = %reference,
                "dropped `installsAfter` entry: no Feature of this build satisfies it"
            );
            continue;
        }
        installs_after.push(SoftDependency {
            dependent,
            written: reference.written,
            satisfied_by,
        });
    }
    let soft_edges = installs_after
        .iter()
        .flat_map(|soft| soft.satisfied_by.iter().map(move |&d| (soft.dependent, d)))
        .collect();
    Ok(Resolution {
        instances,
        hard_edges,
        soft_edges,
        installs_after,
    })
}

/// The identity of a fetched Feature's source: one folder, one URL, or one OCI manifest.
#[derive(Debug, PartialEq, Eq, Hash)]
enum SourceKey {
    Local(std::path::PathBuf),
    Tarball(String),
    Oci(String),
}

impl SourceKey {
    fn of(feature: &FetchedFeature) -> SourceKey {
        match &feature.reference.source {
            FeatureSource::Local { path } => SourceKey::Local(path.clone()),
            FeatureSource::Tarball { url } => SourceKey::Tarball(url.clone()),
            FeatureSource::Oci(_) => SourceKey::Oci(feature.content_digest.clone()),
        }
    }
}

/// Whether `instance` satisfies an `installsAfter` (or override) entry `reference`: the same
/// OCI resource whatever the version, the same folder, or the same URL. With `aliases`, an OCI
/// entry naming one of the instance's ids (current or legacy) in the same namespace matches.
pub fn satisfies_soft(instance: &FeatureInstance, reference: &FeatureRef, aliases: bool) -> bool {
    match (&instance.feature.reference.source, &reference.source) {
        (FeatureSource::Local { path: a }, FeatureSource::Local { path: b }) => a == b,
        (FeatureSource::Tarball { url: a }, FeatureSource::Tarball { url: b }) => a == b,
        (FeatureSource::Oci(a), FeatureSource::Oci(b)) => {
            if a.registry != b.registry {
                return false;
            }
            if a.repository == b.repository {
                return true;
            }
            let namespace =
                |repository: &str| repository.rsplit_once('/').map(|(ns, _)| ns.to_string());
            aliases
                && namespace(&a.repository) == namespace(&b.repository)
                && instance
                    .feature
                    .metadata
                    .aliases()
                    .contains(&reference.id())
        }
        _ => false,
    }
}

/// Folds the legacy ids the reference turns into options of another Feature (`gradle`,
/// `maven`, `jupyterlab`) into that Feature's entry, adding the entry when it is missing.
fn fold_deprecated(entries: &[FeatureEntry]) -> Vec<FeatureEntry> {
    let mut out: Vec<FeatureEntry> = entries
        .iter()
        .filter(|entry| !FOLDED_IDS.iter().any(|(id, _, _)| *id == entry.reference))
        .cloned()
        .collect();
    for entry in entries {
        let Some((id, into, option)) = FOLDED_IDS.iter().find(|(id, _, _)| *id == entry.reference)
        else {
            continue;
        };
        let qualified = format!("{LEGACY_NAMESPACE}/{into}");
        tracing::info!(from = id, to = %qualified, option, "folded legacy Feature into an option");
        let value = (OptionValue::Bool(true), entry.location.clone());
        let target = out.iter_mut().find(|e| {
            e.reference == *into
                || e.reference == qualified
                || e.reference.starts_with(&format!("{qualified}:"))
        });
        match target {
            Some(target) => {
                let mut map = match &target.options {
                    FeatureOptions::Map(map) => map.clone(),
                    FeatureOptions::Shorthand(version) => BTreeMap::from([(
                        "version".to_string(),
                        (
                            OptionValue::String(version.clone()),
                            target.location.clone(),
                        ),
                    )]),
                };
                map.insert(option.to_string(), value);
                target.options = FeatureOptions::Map(map);
            }
            None => out.push(FeatureEntry {
                reference: format!("{qualified}:1"),
                options: FeatureOptions::Map(BTreeMap::from([(option.to_string(), value)])),
                location: entry.location.clone(),
            }),
        }
    }
    out
}
