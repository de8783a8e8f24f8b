//! Install order: the reference implementation's round-based sort over `dependsOn` (hard),
//! `installsAfter` (soft) and `overrideFeatureInstallOrder` (priority).
//!
//! Each round takes every instance whose hard dependencies are installed and whose soft
//! dependencies are each met by some installed instance, keeps those with the highest override
//! priority, sorts them with the reference's comparison and commits them. The comparison keeps
//! the reference's quirks: tags compared as strings, fewer options first, ICU-like string
//! collation (see `collate`), and the reference's sort algorithm (see `sort`), so that ties and
//! mixed source types come out the same.
//!
//! Where envc differs from the reference: a cycle made only of `installsAfter` edges, a Feature
//! naming itself included, is broken with a warning instead of failing the build. A cycle with
//! a `dependsOn` edge is an error that names every Feature on it.

mod collate;
mod sort;

use std::cmp::Ordering;
use std::collections::BTreeMap;

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use crate::config::{Location, OptionValue};
use crate::feature::{FeatureInstance, FeatureRef, FeatureSource, Resolution};

pub use collate::locale_compare;

/// Errors in ordering Features.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("dependency cycle: {}", .members.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(" -> "))]
    Cycle { members: Vec<String> },
    #[error(
        "{location}: `overrideFeatureInstallOrder` entry `{entry}` is not a Feature reference"
    )]
    Override {
        entry: String,
        location: Location,
        #[source]
        source: crate::feature::Error,
    },
}

impl Error {
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Cycle { .. } => Some(
                "remove one of the `dependsOn` or `installsAfter` entries on the cycle".to_string(),
            ),
            Error::Override { source, .. } => source.hint(),
        }
    }
}

/// Why an instance sits where it does in the install order, for `envc plan --explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The round (from 1) that committed it.
    pub round: usize,
    /// Its `overrideFeatureInstallOrder` priority: 0 when no entry names it, else N for the
    /// first of N entries down to 1 for the last.
    pub priority: usize,
    /// Its `dependsOn` dependencies, by label.
    pub depends_on: Vec<String>,
    /// The instances that met its `installsAfter` entries, by label.
    pub installs_after: Vec<String>,
    /// Rounds in which it was ready but held back by a higher priority.
    pub held_back: usize,
    /// Instances it came before or after in its round only because of the sort, by label.
    pub round_mates: Vec<String>,
}

impl Placement {
    /// One sentence saying what decided the place.
    pub fn reason(&self) -> String {
        let mut parts = Vec::new();
        if !self.depends_on.is_empty() {
            parts.push(format!(
                "after its dependsOn {}",
                self.depends_on.join(", ")
            ));
        }
        if !self.installs_after.is_empty() {
            parts.push(format!(
                "after its installsAfter {}",
                self.installs_after.join(", ")
            ));
        }
        if self.priority > 0 {
            parts.push(format!("override priority {}", self.priority));
        }
        if self.held_back > 0 {
            parts.push(format!(
                "held back {} round(s) by higher priorities",
                self.held_back
            ));
        }
        if parts.is_empty() {
            parts.push("no dependencies".to_string());
        }
        if !self.round_mates.is_empty() {
            parts.push(format!("sorted with {}", self.round_mates.join(", ")));
        }
        format!("round {}: {}", self.round, parts.join("; "))
    }
}

/// An install order with its explanation.
#[derive(Debug)]
pub struct Ordered {
    pub instances: Vec<FeatureInstance>,
    /// One entry per instance, index for index.
    pub placements: Vec<Placement>,
    /// Soft cycles that were broken, worded for the user.
    pub warnings: Vec<String>,
}

/// Orders `resolution` for installation.
///
/// # Errors
///
/// [`Error::Cycle`] for a cycle with a `dependsOn` edge; [`Error::Override`] for an
/// `overrideFeatureInstallOrder` entry that is not a reference.
pub fn install_order(
    resolution: Resolution,
    overrides: &[(String, Location)],
) -> Result<Vec<FeatureInstance>, Error> {
    install_order_explained(resolution, overrides).map(|ordered| ordered.instances)
}

/// An edge of the dependency graph, from dependent to dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edge {
    Hard,
    /// Index into the soft requirements.
    Soft(usize),
}

/// An `installsAfter` entry: met once any instance in `satisfied_by` is installed.
struct Requirement {
    dependent: usize,
    satisfied_by: Vec<usize>,
}

/// Like [`install_order`], with the round, priority and edges that placed each instance.
pub fn install_order_explained(
    resolution: Resolution,
    overrides: &[(String, Location)],
) -> Result<Ordered, Error> {
    let Resolution {
        instances,
        hard_edges,
        soft_edges,
        installs_after,
    } = resolution;
    let count = instances.len();
    let labels: Vec<String> = instances.iter().map(label).collect();
    let priority = priorities(&instances, overrides)?;

    let mut requirements: Vec<Requirement> = if installs_after.is_empty() {
        soft_edges
            .iter()
            .map(|&(d, s)| Requirement {
                dependent: d,
                satisfied_by: vec![s],
            })
            .collect()
    } else {
        installs_after
            .into_iter()
            .map(|soft| Requirement {
                dependent: soft.dependent,
                satisfied_by: soft.satisfied_by,
            })
            .collect()
    };

    let mut graph: DiGraph<usize, Edge> = DiGraph::with_capacity(count, hard_edges.len());
    let nodes: Vec<NodeIndex> = (0..count).map(|i| graph.add_node(i)).collect();
    for &(dependent, dependency) in &hard_edges {
        if graph
            .find_edge(nodes[dependent], nodes[dependency])
            .is_none_or(|e| graph[e] != Edge::Hard)
        {
            graph.add_edge(nodes[dependent], nodes[dependency], Edge::Hard);
        }
    }
    for (index, requirement) in requirements.iter().enumerate() {
        for &satisfier in &requirement.satisfied_by {
            graph.add_edge(
                nodes[requirement.dependent],
                nodes[satisfier],
                Edge::Soft(index),
            );
        }
    }

    // Each instance's own requirements, so that a readiness check need not scan them all.
    let mut requirements_of: Vec<Vec<usize>> = vec![Vec::new(); count];
    for (index, requirement) in requirements.iter().enumerate() {
        requirements_of[requirement.dependent].push(index);
    }

    let keys: Vec<SortKey> = instances.iter().map(SortKey::of).collect();
    let mut installed = vec![false; count];
    let mut remaining: Vec<usize> = (0..count).collect();
    let mut placements: Vec<Option<Placement>> = vec![None; count];
    let mut held_back = vec![0usize; count];
    let mut order = Vec::with_capacity(count);
    let mut warnings = Vec::new();
    let mut round = 0;
    while !remaining.is_empty() {
        let ready: Vec<usize> = remaining
            .iter()
            .copied()
            .filter(|&i| {
                let own = requirements_of[i].iter().map(|&r| &requirements[r]);
                is_ready(&graph, nodes[i], own, &installed)
            })
            .collect();
        if ready.is_empty() {
            let warning = break_soft_cycles(&mut graph, &mut requirements, &remaining, &labels)?;
            tracing::warn!("{warning}");
            warnings.push(warning);
            continue;
        }
        round += 1;

        let top = ready.iter().map(|&i| priority[i]).max().unwrap_or(0);
        let mut committed: Vec<usize> = ready
            .iter()
            .copied()
            .filter(|&i| priority[i] == top)
            .collect();
        for &i in ready.iter().filter(|&&i| priority[i] < top) {
            held_back[i] += 1;
        }
        remaining.retain(|i| !committed.contains(i));
        sort::v8_sort(&mut committed, |a, b| compare(&keys[a], &keys[b]));
        tracing::debug!(
            round,
            priority = top,
            features = ?committed.iter().map(|&i| &labels[i]).collect::<Vec<_>>(),
            "install round"
        );

        for &i in &committed {
            let node = nodes[i];
            let mut depends_on = Vec::new();
            let mut after = Vec::new();
            for edge in graph.edges(node) {
                let target = graph[edge.target()];
                let list = if edge.weight() == &Edge::Hard {
                    &mut depends_on
                } else {
                    &mut after
                };
                if installed[target] && !list.contains(&labels[target]) {
                    list.push(labels[target].clone());
                }
            }
            let round_mates = committed
                .iter()
                .filter(|&&j| j != i)
                .map(|&j| labels[j].clone())
                .collect();
            placements[i] = Some(Placement {
                round,
                priority: priority[i],
                depends_on,
                installs_after: after,
                held_back: held_back[i],
                round_mates,
            });
        }
        for &i in &committed {
            installed[i] = true;
        }
        order.extend(committed);
    }

    let mut slots: Vec<Option<FeatureInstance>> = instances.into_iter().map(Some).collect();
    let ordered_placements = order.iter().filter_map(|&i| placements[i].take()).collect();
    let ordered = order.iter().filter_map(|&i| slots[i].take()).collect();
    Ok(Ordered {
        instances: ordered,
        placements: ordered_placements,
        warnings,
    })
}

/// Returns whether `node` can install now: its `dependsOn` edges and `requirements` (its own
/// `installsAfter` entries) are met.
fn is_ready<'a>(
    graph: &DiGraph<usize, Edge>,
    node: NodeIndex,
    mut requirements: impl Iterator<Item = &'a Requirement>,
    installed: &[bool],
) -> bool {
    let hard_done = graph
        .edges(node)
        .filter(|e| *e.weight() == Edge::Hard)
        .all(|e| installed[graph[e.target()]]);
    let soft_done = requirements
        .all(|r| r.satisfied_by.is_empty() || r.satisfied_by.iter().any(|&s| installed[s]));
    hard_done && soft_done
}

/// Called when no remaining instance is ready. Drops the `installsAfter` edges of cycles made
/// only of such edges and returns the warning; fails with the cycle when one has a `dependsOn`
/// edge.
fn break_soft_cycles(
    graph: &mut DiGraph<usize, Edge>,
    requirements: &mut [Requirement],
    remaining: &[usize],
    labels: &[String],
) -> Result<String, Error> {
    // The edges that still block: hard ones, and soft ones of requirements nothing met yet.
    let blocking = |graph: &DiGraph<usize, Edge>, soft_only: bool| {
        let mut sub: DiGraph<usize, Edge> = DiGraph::new();
        let index: BTreeMap<usize, NodeIndex> =
            remaining.iter().map(|&i| (i, sub.add_node(i))).collect();
        for edge in graph.edge_references() {
            let (from, to) = (graph[edge.source()], graph[edge.target()]);
            let (Some(&a), Some(&b)) = (index.get(&from), index.get(&to)) else {
                continue;
            };
            if soft_only && *edge.weight() == Edge::Hard {
                continue;
            }
            sub.add_edge(a, b, *edge.weight());
        }
        sub
    };

    let soft = blocking(graph, true);
    let mut dropped = Vec::new();
    for component in petgraph::algo::tarjan_scc(&soft) {
        let members: Vec<usize> = component.iter().map(|&n| soft[n]).collect();
        let cyclic = members.len() > 1 || soft.find_edge(component[0], component[0]).is_some();
        if !cyclic {
            continue;
        }
        for requirement in requirements
            .iter_mut()
            .filter(|r| members.contains(&r.dependent))
        {
            requirement.satisfied_by.retain(|s| !members.contains(s));
        }
        graph.retain_edges(|g, e| {
            let (from, to) = g
                .edge_endpoints(e)
                .map(|(a, b)| (g[a], g[b]))
                .unwrap_or((0, 0));
            !(matches!(g[e], Edge::Soft(_)) && members.contains(&from) && members.contains(&to))
        });
        let mut names: Vec<&str> = members.iter().map(|&m| labels[m].as_str()).collect();
        names.sort();
        dropped.push(
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    if !dropped.is_empty() {
        return Ok(format!(
            "`installsAfter` cycle among {}: ignoring those `installsAfter` entries",
            dropped.join("; and among ")
        ));
    }

    let full = blocking(graph, false);
    let component = petgraph::algo::tarjan_scc(&full)
        .into_iter()
        .filter(|c| c.len() > 1 || full.find_edge(c[0], c[0]).is_some())
        .min_by_key(|c| c.iter().map(|&n| full[n]).min())
        .unwrap_or_default();
    Err(Error::Cycle {
        members: cycle_path(&full, &component, labels),
    })
}

/// A cycle through the strongly connected `component`, as labels, first one repeated at the end.
fn cycle_path(
    graph: &DiGraph<usize, Edge>,
    component: &[NodeIndex],
    labels: &[String],
) -> Vec<String> {
    let Some(&start) = component.iter().min_by_key(|&&n| graph[n]) else {
        return Vec::new();
    };
    let mut path = vec![start];
    loop {
        let current = *path.last().unwrap_or(&start);
        let next = graph
            .neighbors(current)
            .filter(|n| component.contains(n))
            .min_by_key(|&n| graph[n]);
        let Some(next) = next else { break };
        if let Some(at) = path.iter().position(|&n| n == next) {
            let mut cycle: Vec<String> = path[at..]
                .iter()
                .map(|&n| labels[graph[n]].clone())
                .collect();
            cycle.push(labels[graph[next]].clone());
            return cycle;
        }
        path.push(next);
    }
    path.iter().map(|&n| labels[graph[n]].clone()).collect()
}

/// How an instance is named in messages: the reference as written, then its options.
pub fn label(instance: &FeatureInstance) -> String {
    let written = &instance.feature.reference.written;
    if instance.user_options.is_empty() {
        return written.clone();
    }
    if instance.shorthand {
        if let Some(OptionValue::String(version)) = instance.user_options.get("version") {
            return format!("{written} \"{version}\"");
        }
    }
    let options = serde_json::to_string(&instance.user_options).unwrap_or_default();
    format!("{written} {options}")
}

/// Override priorities: the first of N entries gives N, the last 1; an instance takes the
/// highest priority of the entries naming it (same OCI resource, folder or URL).
fn priorities(
    instances: &[FeatureInstance],
    overrides: &[(String, Location)],
) -> Result<Vec<usize>, Error> {
    let mut priority = vec![0usize; instances.len()];
    for (position, (entry, location)) in overrides.iter().enumerate().rev() {
        let config_dir = location.file.parent().unwrap_or(std::path::Path::new("."));
        let reference =
            FeatureRef::parse(entry, config_dir, location).map_err(|source| Error::Override {
                entry: entry.clone(),
                location: location.clone(),
                source,
            })?;
        let value = overrides.len() - position;
        for (i, instance) in instances.iter().enumerate() {
            if crate::feature::satisfies_soft(instance, &reference, false) {
                priority[i] = priority[i].max(value);
            }
        }
    }
    Ok(priority)
}

/// Options as the reference compares them: a plain string, or an object.
#[derive(Debug, Clone)]
enum OptionsKey {
    Shorthand(String),
    Map(BTreeMap<String, OptionValue>),
}

/// What the comparison needs of an instance.
#[derive(Debug, Clone)]
struct SortKey {
    written: String,
    source: SourceKey,
    options: OptionsKey,
}

#[derive(Debug, Clone)]
enum SourceKey {
    Oci {
        registry_namespace: String,
        id: String,
        aliases: Vec<String>,
        tag: Option<String>,
        digest: String,
    },
    Local(String),
    Tarball(String),
}

impl SortKey {
    fn of(instance: &FeatureInstance) -> SortKey {
        let feature = &instance.feature;
        let source = match &feature.reference.source {
            FeatureSource::Oci(image) => {
                let (namespace, id) = image
                    .repository
                    .rsplit_once('/')
                    .unwrap_or(("", &image.repository));
                SourceKey::Oci {
                    registry_namespace: format!("{}/{namespace}", image.registry),
                    id: id.to_string(),
                    aliases: feature
                        .metadata
                        .aliases()
                        .into_iter()
                        .map(str::to_string)
                        .collect(),
                    tag: image.tag.clone(),
                    digest: feature.content_digest.clone(),
                }
            }
            FeatureSource::Local { path } => SourceKey::Local(path.to_string_lossy().into_owned()),
            FeatureSource::Tarball { url } => SourceKey::Tarball(url.clone()),
        };
        let options = match instance.user_options.get("version") {
            Some(OptionValue::String(version)) if instance.shorthand => {
                OptionsKey::Shorthand(version.clone())
            }
            _ => OptionsKey::Map(instance.user_options.clone()),
        };
        SortKey {
            written: feature.reference.written.clone(),
            source,
            options,
        }
    }
}

/// The reference's `compareTo`: negative when `a` installs before `b` within a round.
fn compare(a: &SortKey, b: &SortKey) -> Ordering {
    match (&a.source, &b.source) {
        (
            SourceKey::Oci {
                registry_namespace: ra,
                id: ia,
                aliases: aa,
                tag: ta,
                digest: da,
            },
            SourceKey::Oci {
                registry_namespace: rb,
                id: ib,
                aliases: ab,
                tag: tb,
                digest: db,
            },
        ) => {
            let options = compare_options(&a.options, &b.options);
            if da == db && options == Ordering::Equal {
                return Ordering::Equal;
            }
            if ra != rb {
                return locale_compare(ra, rb);
            }
            if !aa.iter().any(|x| ab.contains(x)) {
                let by_id = locale_compare(ia, ib);
                if by_id != Ordering::Equal {
                    return by_id;
                }
            }
            if let (Some(ta), Some(tb)) = (ta, tb) {
                if ta != tb {
                    return locale_compare(ta, tb);
                }
            }
            options.then_with(|| {
                if da == db {
                    Ordering::Equal
                } else {
                    locale_compare(da, db)
                }
            })
        }
        (SourceKey::Local(pa), SourceKey::Local(pb)) => {
            locale_compare(pa, pb).then_with(|| compare_options(&a.options, &b.options))
        }
        (SourceKey::Tarball(ua), SourceKey::Tarball(ub)) => {
            locale_compare(ua, ub).then_with(|| compare_options(&a.options, &b.options))
        }
        _ => locale_compare(&a.written, &b.written),
    }
}

/// The reference's option comparison: strings by collation, objects with fewer keys first,
/// then key by key. Unlike the reference, a boolean and a string value differ (booleans
/// first) rather than comparing equal.
fn compare_options(a: &OptionsKey, b: &OptionsKey) -> Ordering {
    match (a, b) {
        (OptionsKey::Shorthand(x), OptionsKey::Shorthand(y)) => locale_compare(x, y),
        // `typeof` names: "object" < "string".
        (OptionsKey::Map(_), OptionsKey::Shorthand(_)) => Ordering::Less,
        (OptionsKey::Shorthand(_), OptionsKey::Map(_)) => Ordering::Greater,
        (OptionsKey::Map(x), OptionsKey::Map(y)) => {
            if x.len() != y.len() {
                return x.len().cmp(&y.len());
            }
            for ((kx, vx), (ky, vy)) in x.iter().zip(y) {
                if kx != ky {
                    return locale_compare(kx, ky);
                }
                let by_value = match (vx, vy) {
                    (OptionValue::String(p), OptionValue::String(q)) => locale_compare(p, q),
                    (OptionValue::Bool(p), OptionValue::Bool(q)) => p.cmp(q),
                    (OptionValue::Bool(_), OptionValue::String(_)) => Ordering::Less,
                    (OptionValue::String(_), OptionValue::Bool(_)) => Ordering::Greater,
                };
                if by_value != Ordering::Equal {
                    return by_value;
                }
            }
            Ordering::Equal
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, FeatureEntry, FeatureOptions, ImageSource, Source};
    use crate::feature::metadata::parse_metadata;
    use crate::feature::{resolve_features, FetchedFeature, Origin, SoftDependency};
    use crate::registry::{RegistryClient, RegistryOptions};
    use serde_json::{json, Value};
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    fn at(file: &Path, line: usize) -> Location {
        Location {
            file: file.to_path_buf(),
            line,
            column: 5,
        }
    }

    /// A workspace with local Features under `.devcontainer/`.
    struct Project {
        _tmp: tempfile::TempDir,
        root: PathBuf,
    }

    impl Project {
        fn new() -> Project {
            let tmp = tempfile::tempdir().unwrap();
            let root = tmp.path().join("ws");
            std::fs::create_dir_all(root.join(".devcontainer")).unwrap();
            Project { _tmp: tmp, root }
        }

        /// Writes Feature `name` with `body` merged over an id and three string options.
        fn feature(&self, name: &str, body: Value) -> &Project {
            let dir = self.root.join(".devcontainer").join(name);
            std::fs::create_dir_all(&dir).unwrap();
            let string = json!({"type": "string", "default": "0"});
            let mut document = json!({
                "id": name,
                "version": "1.0.0",
                "options": {
                    "magicNumber": string, "optA": string, "optB": string,
                    "flag": {"type": "boolean", "default": false}
                }
            });
            for (key, value) in body.as_object().unwrap() {
                document[key] = value.clone();
            }
            std::fs::write(dir.join("devcontainer-feature.json"), document.to_string()).unwrap();
            std::fs::write(dir.join("install.sh"), "#!/bin/sh\n").unwrap();
            self
        }

        fn config(&self, features: &[(&str, Value)], overrides: &[&str]) -> Config {
            let file = self.root.join(".devcontainer/devcontainer.json");
            let entry = |(line, (reference, options)): (usize, &(&str, Value))| FeatureEntry {
                reference: reference.to_string(),
                options: match options {
                    Value::String(s) => FeatureOptions::Shorthand(s.clone()),
                    Value::Object(map) => FeatureOptions::Map(
                        map.iter()
                            .map(|(k, v)| {
                                let value = match v {
                                    Value::Bool(b) => OptionValue::Bool(*b),
                                    other => OptionValue::String(other.as_str().unwrap().into()),
                                };
                                (k.clone(), (value, at(&file, line + 2)))
                            })
                            .collect(),
                    ),
                    other => panic!("{other}"),
                },
                location: at(&file, line + 2),
            };
            Config {
                file: file.clone(),
                config_dir: self.root.join(".devcontainer"),
                workspace: self.root.clone(),
                source: Source::Image(ImageSource {
                    reference: "debian".into(),
                    location: at(&file, 1),
                }),
                features: features.iter().enumerate().map(entry).collect(),
                override_install_order: overrides
                    .iter()
                    .enumerate()
                    .map(|(i, o)| (o.to_string(), at(&file, 40 + i)))
                    .collect(),
                container_env: Vec::new(),
                container_user: None,
                remote_user: None,
                update_remote_user_uid: None,
                metadata_entry: Default::default(),
            }
        }

        async fn order(&self, config: &Config) -> Result<Ordered, Error> {
            let registry = RegistryClient::new(RegistryOptions::default());
            let cache = self.root.join("cache");
            let resolution = resolve_features(config, &registry, &cache).await.unwrap();
            install_order_explained(resolution, &config.override_install_order)
        }
    }

    /// `written` and options of each instance, in order.
    fn summary(ordered: &Ordered) -> Vec<String> {
        ordered.instances.iter().map(label).collect()
    }

    #[tokio::test]
    async fn installs_after_with_local_features() {
        let project = Project::new();
        project
            .feature("a", json!({"installsAfter": ["./b", "./c"]}))
            .feature("b", json!({}))
            .feature("c", json!({}));
        let config = project.config(
            &[("./a", json!({})), ("./c", json!({"magicNumber": "321"}))],
            &[],
        );
        let ordered = project.order(&config).await.unwrap();
        assert_eq!(summary(&ordered), [r#"./c {"magicNumber":"321"}"#, "./a"]);
        assert_eq!(
            ordered.placements[1].installs_after,
            [r#"./c {"magicNumber":"321"}"#]
        );
        assert_eq!(ordered.placements[1].round, 2);
    }

    #[tokio::test]
    async fn depends_on_with_local_features() {
        let project = Project::new();
        project
            .feature("a", json!({"dependsOn": {"./b": {"magicNumber": "50"}}}))
            .feature("b", json!({}));
        let config = project.config(&[("./a", json!({}))], &[]);
        let ordered = project.order(&config).await.unwrap();
        assert_eq!(summary(&ordered), [r#"./b {"magicNumber":"50"}"#, "./a"]);
        assert_eq!(
            ordered.placements[1].depends_on,
            [r#"./b {"magicNumber":"50"}"#]
        );
        assert!(
            matches!(&ordered.instances[0].origin, Origin::DependsOn { parent, .. } if parent == "a")
        );
    }

    #[tokio::test]
    async fn depends_on_rounds_sorted_by_options() {
        let project = Project::new();
        project
            .feature(
                "a",
                json!({"dependsOn": {"./b": {"optA": "a", "optB": "a"}, "./c": {}}}),
            )
            .feature("b", json!({}))
            .feature(
                "c",
                json!({"dependsOn": {"./b": {"optA": "b", "optB": "a"}, "./d": {}, "./e": {}}}),
            )
            .feature(
                "d",
                json!({"dependsOn": {"./b": {"optA": "b", "optB": "b"}}}),
            )
            .feature("e", json!({"dependsOn": {"./b": {}}}));
        let config = project.config(
            &[
                ("./a", json!({"optA": "a", "optB": "b"})),
                ("./b", json!({"optA": "a", "optB": "b"})),
            ],
            &[],
        );
        let ordered = project.order(&config).await.unwrap();
        assert_eq!(
            summary(&ordered),
            [
                "./b",
                r#"./b {"optA":"a","optB":"a"}"#,
                r#"./b {"optA":"a","optB":"b"}"#,
                r#"./b {"optA":"b","optB":"a"}"#,
                r#"./b {"optA":"b","optB":"b"}"#,
                "./d",
                "./e",
                "./c",
                r#"./a {"optA":"a","optB":"b"}"#,
            ]
        );
    }

    #[tokio::test]
    async fn depends_on_and_installs_after_with_local_features() {
        let project = Project::new();
        project
            .feature(
                "a",
                json!({"installsAfter": ["./b"], "dependsOn": {"./c": {"magicNumber": "321"}}}),
            )
            .feature("b", json!({}))
            .feature("c", json!({}));
        let config = project.config(&[("./a", json!({}))], &[]);
        let ordered = project.order(&config).await.unwrap();
        assert_eq!(summary(&ordered), [r#"./c {"magicNumber":"321"}"#, "./a"]);
    }

    #[tokio::test]
    async fn a_depends_on_cycle_names_every_feature_on_it() {
        let project = Project::new();
        project
            .feature("a", json!({"dependsOn": {"./b": {}}}))
            .feature("b", json!({"dependsOn": {"./c": {"magicNumber": "50"}}}))
            .feature("c", json!({"dependsOn": {"./a": {"magicNumber": "50"}}}));
        let config = project.config(&[("./a", json!({}))], &[]);
        let err = project.order(&config).await.unwrap_err();
        let Error::Cycle { members } = &err else {
            panic!("{err}")
        };
        assert_eq!(
            members,
            &[
                "./b",
                r#"./c {"magicNumber":"50"}"#,
                r#"./a {"magicNumber":"50"}"#,
                "./b"
            ]
        );
        assert!(
            err.to_string().starts_with("dependency cycle: `./b` -> "),
            "{err}"
        );
        assert!(err.hint().unwrap().contains("dependsOn"));
    }

    #[tokio::test]
    async fn a_feature_depending_on_itself_is_a_cycle() {
        let project = Project::new();
        project.feature("a", json!({"dependsOn": {"./a": {}}}));
        let config = project.config(&[("./a", json!({}))], &[]);
        let err = project.order(&config).await.unwrap_err();
        assert!(
            matches!(&err, Error::Cycle { members } if members == &["./a", "./a"]),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_installs_after_cycle_is_broken_with_a_warning() {
        let project = Project::new();
        project
            .feature("a", json!({"installsAfter": ["./b"]}))
            .feature("b", json!({"installsAfter": ["./c"]}))
            .feature("c", json!({"installsAfter": ["./a"]}));
        let config = project.config(
            &[("./a", json!({})), ("./b", json!({})), ("./c", json!({}))],
            &[],
        );
        let ordered = project.order(&config).await.unwrap();
        assert_eq!(summary(&ordered), ["./a", "./b", "./c"]);
        assert_eq!(ordered.warnings.len(), 1);
        let warning = &ordered.warnings[0];
        for name in ["`./a`", "`./b`", "`./c`"] {
            assert!(warning.contains(name), "{warning}");
        }
    }

    #[tokio::test]
    async fn a_feature_installing_after_itself_gets_a_warning() {
        let project = Project::new();
        project
            .feature("a", json!({"installsAfter": ["./a"]}))
            .feature("b", json!({"installsAfter": ["./a"]}));
        let config = project.config(&[("./b", json!({})), ("./a", json!({}))], &[]);
        let ordered = project.order(&config).await.unwrap();
        assert_eq!(summary(&ordered), ["./a", "./b"]);
        assert!(
            ordered.warnings[0].contains("`./a`"),
            "{:?}",
            ordered.warnings
        );
    }

    #[tokio::test]
    async fn a_cycle_through_a_depends_on_edge_is_an_error() {
        let project = Project::new();
        project
            .feature("a", json!({"dependsOn": {"./b": {}}}))
            .feature("b", json!({"installsAfter": ["./a"]}));
        let config = project.config(&[("./a", json!({}))], &[]);
        let err = project.order(&config).await.unwrap_err();
        assert!(
            matches!(&err, Error::Cycle { members } if members == &["./a", "./b", "./a"]),
            "{err}"
        );
    }

    #[tokio::test]
    async fn one_override() {
        let project = Project::new();
        project
            .feature("a", json!({"dependsOn": {"./b": {}, "./c": {}, "./d": {}}}))
            .feature("b", json!({}))
            .feature("c", json!({}))
            .feature("d", json!({}));
        let config = project.config(&[("./a", json!({}))], &["./c"]);
        let ordered = project.order(&config).await.unwrap();
        assert_eq!(summary(&ordered), ["./c", "./b", "./d", "./a"]);
        assert_eq!(ordered.placements[0].priority, 1);
        assert_eq!(ordered.placements[1].held_back, 1);
        assert!(ordered.placements[1].reason().contains("held back 1 round"));
    }

    #[tokio::test]
    async fn two_overrides_with_an_intermediate_feature() {
        let project = Project::new();
        project
            .feature(
                "a",
                json!({"dependsOn": {"./b": {}, "./d": {}}, "installsAfter": ["./c"]}),
            )
            .feature("b", json!({"dependsOn": {"./c": {}}}))
            .feature("c", json!({}))
            .feature("d", json!({}));
        let config = project.config(&[("./a", json!({}))], &["./c", "./d"]);
        let ordered = project.order(&config).await.unwrap();
        assert_eq!(summary(&ordered), ["./c", "./d", "./b", "./a"]);
        let priorities: Vec<usize> = ordered.placements.iter().map(|p| p.priority).collect();
        assert_eq!(priorities, [2, 1, 0, 0]);
    }

    #[tokio::test]
    async fn round_priority_beats_an_independent_feature() {
        let project = Project::new();
        project
            .feature("a", json!({}))
            .feature("b", json!({"dependsOn": {"./a": {}}}))
            .feature("c", json!({}));
        let config = project.config(
            &[("./b", json!({})), ("./c", json!({}))],
            &["./a", "./b", "./c"],
        );
        let ordered = project.order(&config).await.unwrap();
        assert_eq!(summary(&ordered), ["./a", "./b", "./c"]);
    }

    #[tokio::test]
    async fn an_override_naming_nothing_is_ignored_and_a_bad_one_fails() {
        let project = Project::new();
        project.feature("a", json!({})).feature("b", json!({}));
        let config = project.config(
            &[("./b", json!({})), ("./a", json!({}))],
            &["ghcr.io/o/f/x"],
        );
        let ordered = project.order(&config).await.unwrap();
        assert_eq!(summary(&ordered), ["./a", "./b"]);

        let config = project.config(&[("./a", json!({}))], &["bogus"]);
        let err = project.order(&config).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("`overrideFeatureInstallOrder` entry `bogus`"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_boolean_and_a_string_option_are_two_instances() {
        let project = Project::new();
        project
            .feature("a", json!({"dependsOn": {"./c": {"flag": "false"}}}))
            .feature("c", json!({}));
        let config = project.config(&[("./c", json!({"flag": true})), ("./a", json!({}))], &[]);
        let ordered = project.order(&config).await.unwrap();
        assert_eq!(
            summary(&ordered),
            [r#"./c {"flag":true}"#, r#"./c {"flag":"false"}"#, "./a"]
        );
        assert_eq!(
            ordered.instances[1].options["flag"],
            OptionValue::String("false".into())
        );
    }

    #[tokio::test]
    async fn the_same_options_twice_install_once() {
        let project = Project::new();
        project
            .feature("a", json!({"dependsOn": {"./c": {"flag": true}}}))
            .feature("b", json!({"dependsOn": {"./c": {"flag": true}}}))
            .feature("c", json!({}));
        let config = project.config(
            &[
                ("./a", json!({})),
                ("./b", json!({})),
                ("./c", json!({"flag": true})),
            ],
            &[],
        );
        let ordered = project.order(&config).await.unwrap();
        assert_eq!(summary(&ordered), [r#"./c {"flag":true}"#, "./a", "./b"]);
    }

    #[tokio::test]
    async fn shorthand_sorts_after_objects() {
        let project = Project::new();
        project.feature(
            "v",
            json!({"options": {"version": {"type": "string", "default": "1"}}}),
        );
        project.feature("w", json!({"dependsOn": {"./v": {"version": "2"}}}));
        let config = project.config(&[("./v", json!("2")), ("./w", json!({}))], &[]);
        let ordered = project.order(&config).await.unwrap();
        assert_eq!(
            summary(&ordered),
            [r#"./v {"version":"2"}"#, r#"./v "2""#, "./w"]
        );
    }

    #[tokio::test]
    async fn option_errors_point_at_the_depends_on_entry() {
        let project = Project::new();
        project
            .feature("a", json!({"dependsOn": {"./c": {"flag": "maybe"}}}))
            .feature("c", json!({}));
        let config = project.config(&[("./a", json!({}))], &[]);
        let registry = RegistryClient::new(RegistryOptions::default());
        let err = resolve_features(&config, &registry, &project.root)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("a/devcontainer-feature.json:1:"), "{text}");
        assert!(
            text.contains("Feature `./c`, option `flag`: value `maybe` is not a boolean"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn the_anchor_project_orders_as_expected() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/anchor-project");
        let file = root.join(".devcontainer/devcontainer.json");
        let s = |v: &str| OptionValue::String(v.into());
        let entry =
            |reference: &str, line: usize, options: Vec<(&str, OptionValue)>| FeatureEntry {
                reference: reference.into(),
                options: FeatureOptions::Map(
                    options
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), (v, at(&file, line))))
                        .collect(),
                ),
                location: at(&file, line),
            };
        let config = Config {
            file: file.clone(),
            config_dir: root.join(".devcontainer"),
            workspace: root.clone(),
            source: Source::Image(ImageSource {
                reference: "127.0.0.1:5000/debian:bookworm".into(),
                location: at(&file, 5),
            }),
            features: vec![
                entry(
                    "./features/base-user",
                    8,
                    vec![
                        ("username", s("dev")),
                        ("userUid", s("1001")),
                        ("createHome", OptionValue::Bool(true)),
                    ],
                ),
                entry(
                    "./features/data-pack",
                    13,
                    vec![
                        ("sizeMb", s("6")),
                        ("seed", s("anchor-42")),
                        ("compress", OptionValue::Bool(false)),
                    ],
                ),
                entry(
                    "./features/shell-env",
                    18,
                    vec![
                        ("prompt", s("anchor")),
                        ("enableAliases", OptionValue::Bool(true)),
                    ],
                ),
                entry(
                    "./features/app-tool",
                    23,
                    vec![("version", s("1.2.3")), ("debug", OptionValue::Bool(false))],
                ),
            ],
            override_install_order: Vec::new(),
            container_env: Vec::new(),
            container_user: None,
            remote_user: Some("dev".into()),
            update_remote_user_uid: None,
            metadata_entry: Default::default(),
        };
        let registry = RegistryClient::new(RegistryOptions::default());
        let cache = tempfile::tempdir().unwrap();
        let resolution = resolve_features(&config, &registry, cache.path())
            .await
            .unwrap();
        let ordered = install_order_explained(resolution, &[]).unwrap();
        let ids: Vec<&str> = ordered
            .instances
            .iter()
            .map(|i| i.feature.metadata.id.as_str())
            .collect();
        assert_eq!(
            ids,
            [
                "base-user",
                "lib-common",
                "data-pack",
                "shell-env",
                "app-tool"
            ]
        );

        let lib = &ordered.instances[1];
        assert_eq!(lib.user_options["flavor"], s("full"));
        assert_eq!(lib.options["withDocs"], OptionValue::Bool(false));
        assert!(
            matches!(&lib.origin, Origin::DependsOn { parent, location: Some(_) } if parent == "app-tool")
        );
        let rounds: Vec<usize> = ordered.placements.iter().map(|p| p.round).collect();
        assert_eq!(rounds, [1, 1, 2, 3, 4]);
        assert_eq!(
            ordered.placements[4].depends_on,
            [r#"./features/lib-common {"flavor":"full"}"#]
        );
        assert_eq!(ordered.placements[4].installs_after.len(), 1);
        assert!(
            cache.path().read_dir().unwrap().next().is_none(),
            "local Features touch no cache"
        );
    }

    // Graphs of OCI Features, built by hand (their metadata would come from a registry).

    struct Oci {
        instances: Vec<FeatureInstance>,
        features: BTreeMap<String, Arc<FetchedFeature>>,
    }

    impl Oci {
        fn new() -> Oci {
            Oci {
                instances: Vec::new(),
                features: BTreeMap::new(),
            }
        }

        /// Adds an instance of `written` (digest derived from the resource) with `options`.
        fn add(&mut self, written: &str, options: Value, legacy_ids: &[&str]) -> usize {
            let location = at(Path::new("/w/.devcontainer/devcontainer.json"), 1);
            let reference =
                FeatureRef::parse(written, Path::new("/w/.devcontainer"), &location).unwrap();
            let id = reference.id().to_string();
            let feature = self
                .features
                .entry(written.to_lowercase())
                .or_insert_with(|| {
                    let document = json!({"id": id, "legacyIds": legacy_ids});
                    let metadata =
                        parse_metadata(&document.to_string(), Path::new("/x.json")).unwrap();
                    Arc::new(FetchedFeature {
                        reference: reference.clone(),
                        metadata,
                        dir: PathBuf::from("/cache"),
                        content_digest: crate::feature::fetch::sha256(
                            written.to_lowercase().as_bytes(),
                        ),
                        resolved: None,
                    })
                });
            let (shorthand, user_options) = match options {
                Value::String(version) => (
                    true,
                    BTreeMap::from([("version".into(), OptionValue::String(version))]),
                ),
                Value::Object(map) => (
                    false,
                    map.into_iter()
                        .map(|(k, v)| {
                            let v = match v {
                                Value::Bool(b) => OptionValue::Bool(b),
                                other => OptionValue::String(other.as_str().unwrap().into()),
                            };
                            (k, v)
                        })
                        .collect(),
                ),
                other => panic!("{other}"),
            };
            let mut reference_feature = (**feature).clone_shallow();
            reference_feature.reference = reference;
            self.instances.push(FeatureInstance {
                feature: Arc::new(reference_feature),
                user_options: user_options.clone(),
                options: user_options,
                origin: Origin::Listed(location),
                shorthand,
            });
            self.instances.len() - 1
        }

        fn order(
            self,
            hard: &[(usize, usize)],
            soft: &[(usize, &[usize])],
            overrides: &[&str],
        ) -> Result<Vec<String>, Error> {
            let installs_after: Vec<SoftDependency> = soft
                .iter()
                .map(|(dependent, by)| SoftDependency {
                    dependent: *dependent,
                    written: String::new(),
                    satisfied_by: by.to_vec(),
                })
                .collect();
            let resolution = Resolution {
                instances: self.instances,
                hard_edges: hard.to_vec(),
                soft_edges: Vec::new(),
                installs_after,
            };
            let file = Path::new("/w/.devcontainer/devcontainer.json");
            let overrides: Vec<(String, Location)> = overrides
                .iter()
                .map(|o| (o.to_string(), at(file, 9)))
                .collect();
            install_order(resolution, &overrides).map(|v| v.iter().map(label).collect())
        }
    }

    trait CloneShallow {
        fn clone_shallow(&self) -> FetchedFeature;
    }

    impl CloneShallow for FetchedFeature {
        fn clone_shallow(&self) -> FetchedFeature {
            FetchedFeature {
                reference: self.reference.clone(),
                metadata: self.metadata.clone(),
                dir: self.dir.clone(),
                content_digest: self.content_digest.clone(),
                resolved: self.resolved.clone(),
            }
        }
    }

    /// A graph with its hard edges and its soft requirements.
    type Example = (Oci, Vec<(usize, usize)>, Vec<(usize, Vec<usize>)>);

    /// The worked example: node and docker-in-docker install after common-utils, python
    /// depends on common-utils with `installZsh: false`.
    fn worked_example(user_common_utils: bool) -> Example {
        let mut graph = Oci::new();
        let node = graph.add("ghcr.io/o/f/node:1", json!({}), &[]);
        let python = graph.add("ghcr.io/o/f/python:1", json!({}), &[]);
        let dind = graph.add("ghcr.io/o/f/docker-in-docker:2", json!({}), &[]);
        let mut common = Vec::new();
        if user_common_utils {
            common.push(graph.add("ghcr.io/o/f/common-utils:2", json!({}), &[]));
        }
        let dependency = graph.add(
            "ghcr.io/o/f/common-utils:2",
            json!({"installZsh": false}),
            &[],
        );
        common.push(dependency);
        let hard = vec![(python, dependency)];
        let soft = vec![(node, common.clone()), (dind, common)];
        (graph, hard, soft)
    }

    fn run(example: Example, overrides: &[&str]) -> Vec<String> {
        let (graph, hard, soft) = example;
        let soft: Vec<(usize, &[usize])> = soft.iter().map(|(d, s)| (*d, s.as_slice())).collect();
        graph.order(&hard, &soft, overrides).unwrap()
    }

    #[test]
    fn worked_example_with_override() {
        let order = run(worked_example(false), &["ghcr.io/o/f/python"]);
        assert_eq!(
            order,
            [
                r#"ghcr.io/o/f/common-utils:2 {"installZsh":false}"#,
                "ghcr.io/o/f/python:1",
                "ghcr.io/o/f/docker-in-docker:2",
                "ghcr.io/o/f/node:1"
            ]
        );
    }

    #[test]
    fn worked_example_without_override() {
        let order = run(worked_example(false), &[]);
        assert_eq!(
            order,
            [
                r#"ghcr.io/o/f/common-utils:2 {"installZsh":false}"#,
                "ghcr.io/o/f/docker-in-docker:2",
                "ghcr.io/o/f/node:1",
                "ghcr.io/o/f/python:1"
            ]
        );
    }

    #[test]
    fn worked_example_with_both_common_utils() {
        let order = run(worked_example(true), &["ghcr.io/o/f/python"]);
        assert_eq!(
            order[..2],
            [
                "ghcr.io/o/f/common-utils:2",
                r#"ghcr.io/o/f/common-utils:2 {"installZsh":false}"#
            ]
        );
        assert_eq!(order[2], "ghcr.io/o/f/python:1");
    }

    const D: &str = "ghcr.io/codspace/dependson/D";
    const E: &str = "ghcr.io/codspace/dependson/E";
    const A: &str = "ghcr.io/codspace/dependson/A";
    const C: &str = "ghcr.io/codspace/dependson/C";

    #[test]
    fn oci_dependencies_with_two_option_sets_of_one_feature() {
        let mut graph = Oci::new();
        let b = graph.add(
            "ghcr.io/codspace/dependson/b",
            json!({"magicNumber": "400"}),
            &[],
        );
        let a = graph.add(
            "ghcr.io/codspace/dependson/a",
            json!({"magicNumber": "10"}),
            &[],
        );
        let c = graph.add(C, json!({"magicNumber": "20"}), &[]);
        let d = graph.add(D, json!({"magicNumber": "30"}), &[]);
        let e = graph.add(E, json!({"magicNumber": "50"}), &[]);
        let big_a = graph.add(A, json!({"magicNumber": "40"}), &[]);
        let hard = [(b, c), (a, d), (a, e), (c, big_a), (big_a, d), (big_a, e)];
        let order = graph.order(&hard, &[], &[]).unwrap();
        assert_eq!(
            order,
            [
                format!(r#"{D} {{"magicNumber":"30"}}"#),
                format!(r#"{E} {{"magicNumber":"50"}}"#),
                r#"ghcr.io/codspace/dependson/a {"magicNumber":"10"}"#.to_string(),
                format!(r#"{A} {{"magicNumber":"40"}}"#),
                format!(r#"{C} {{"magicNumber":"20"}}"#),
                r#"ghcr.io/codspace/dependson/b {"magicNumber":"400"}"#.to_string(),
            ]
        );
    }

    #[test]
    fn tarball_and_oci_features_in_one_round_sort_by_what_was_written() {
        let base =
            "https://github.com/codspace/tgz-features-with-dependson/releases/download/0.0.2";
        let mut graph = Oci::new();
        let tgz_b = graph.add(
            &format!("{base}/devcontainer-feature-B.tgz"),
            json!({"magicNumber": "400"}),
            &[],
        );
        let tgz_a = graph.add(
            &format!("{base}/devcontainer-feature-A.tgz"),
            json!({"magicNumber": "10"}),
            &[],
        );
        let c = graph.add(C, json!({"magicNumber": "20"}), &[]);
        let d = graph.add(D, json!({"magicNumber": "30"}), &[]);
        let e = graph.add(E, json!({"magicNumber": "50"}), &[]);
        let a = graph.add(A, json!({"magicNumber": "40"}), &[]);
        let hard = [(tgz_b, c), (tgz_a, d), (tgz_a, e), (c, a), (a, d), (a, e)];
        let order = graph.order(&hard, &[], &[]).unwrap();
        let short: Vec<&str> = order
            .iter()
            .map(|l| l.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(
            short,
            [
                r#"D {"magicNumber":"30"}"#,
                r#"E {"magicNumber":"50"}"#,
                r#"A {"magicNumber":"40"}"#,
                r#"devcontainer-feature-A.tgz {"magicNumber":"10"}"#,
                r#"C {"magicNumber":"20"}"#,
                r#"devcontainer-feature-B.tgz {"magicNumber":"400"}"#,
            ]
        );
    }

    #[test]
    fn two_overrides_with_mixed_feature_types() {
        let mut graph = Oci::new();
        let a = graph.add("./a", json!({}), &[]);
        let b = graph.add("./b", json!({}), &[]);
        let c = graph.add("./c", json!({}), &[]);
        let d = graph.add("./d", json!({}), &[]);
        let oci_b = graph.add(
            "ghcr.io/codspace/dependson/b",
            json!({"magicNumber": "400"}),
            &[],
        );
        let oci_c = graph.add(C, json!({"magicNumber": "20"}), &[]);
        let oci_a = graph.add(A, json!({"magicNumber": "40"}), &[]);
        let oci_d = graph.add(D, json!({"magicNumber": "30"}), &[]);
        let oci_e = graph.add(E, json!({"magicNumber": "50"}), &[]);
        let hard = [
            (a, b),
            (a, c),
            (a, d),
            (a, oci_b),
            (oci_b, oci_c),
            (oci_c, oci_a),
            (oci_a, oci_d),
            (oci_a, oci_e),
        ];
        let order = graph
            .order(&hard, &[], &["ghcr.io/codspace/dependson/a", "./d"])
            .unwrap();
        let short: Vec<&str> = order.iter().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(
            short,
            [
                "./d",
                "./b",
                "./c",
                D,
                E,
                A,
                C,
                "ghcr.io/codspace/dependson/b",
                "./a"
            ]
        );
    }

    #[test]
    fn tags_compare_as_strings() {
        let mut graph = Oci::new();
        graph.add("ghcr.io/o/f/tool:1.9", json!({}), &[]);
        graph.add("ghcr.io/o/f/tool:1.10", json!({}), &[]);
        graph.add("ghcr.io/o/f/tool:2", json!({}), &[]);
        let order = graph.order(&[], &[], &[]).unwrap();
        assert_eq!(
            order,
            [
                "ghcr.io/o/f/tool:1.10",
                "ghcr.io/o/f/tool:1.9",
                "ghcr.io/o/f/tool:2"
            ]
        );
    }

    #[test]
    fn legacy_ids_make_two_names_one_resource() {
        let mut graph = Oci::new();
        graph.add("ghcr.io/o/f/new", json!({"v": "2"}), &["old"]);
        graph.add("ghcr.io/o/f/old", json!({"v": "1"}), &["new"]);
        let order = graph.order(&[], &[], &[]).unwrap();
        // Without the aliases `new` would sort before `old`; with them the options decide.
        assert_eq!(
            order,
            [
                r#"ghcr.io/o/f/old {"v":"1"}"#,
                r#"ghcr.io/o/f/new {"v":"2"}"#
            ]
        );
    }

    #[test]
    fn fewer_options_install_first() {
        let mut graph = Oci::new();
        graph.add("ghcr.io/o/f/x", json!({"b": "1", "a": "1"}), &[]);
        graph.add("ghcr.io/o/f/x", json!({"z": "1"}), &[]);
        graph.add("ghcr.io/o/f/x", json!({}), &[]);
        graph.add("ghcr.io/o/f/x", json!({"a": true}), &[]);
        graph.add("ghcr.io/o/f/x", json!({"a": false}), &[]);
        let order = graph.order(&[], &[], &[]).unwrap();
        assert_eq!(
            order,
            [
                "ghcr.io/o/f/x",
                r#"ghcr.io/o/f/x {"a":false}"#,
                r#"ghcr.io/o/f/x {"a":true}"#,
                r#"ghcr.io/o/f/x {"z":"1"}"#,
                r#"ghcr.io/o/f/x {"a":"1","b":"1"}"#,
            ]
        );
    }

    #[test]
    fn soft_dependencies_are_met_by_any_satisfying_instance() {
        let mut graph = Oci::new();
        let x = graph.add("ghcr.io/o/f/x", json!({}), &[]);
        let y1 = graph.add("ghcr.io/o/f/y", json!({"v": "1"}), &[]);
        let y2 = graph.add("ghcr.io/o/f/y", json!({"v": "2"}), &[]);
        let z = graph.add("ghcr.io/o/f/z", json!({}), &[]);
        // y2 waits for z, x waits for any y: x goes with y1's round successor, not after y2.
        let order = graph.order(&[(y2, z)], &[(x, &[y1, y2])], &[]).unwrap();
        assert_eq!(
            order,
            [
                r#"ghcr.io/o/f/y {"v":"1"}"#,
                "ghcr.io/o/f/z",
                "ghcr.io/o/f/x",
                r#"ghcr.io/o/f/y {"v":"2"}"#,
            ]
        );
    }

    /// The instances of `graph` that satisfy an `installsAfter` entry written as `written`.
    fn satisfying(graph: &Oci, written: &str) -> Vec<usize> {
        let location = at(Path::new("/w/.devcontainer/devcontainer.json"), 1);
        let reference =
            FeatureRef::parse(written, Path::new("/w/.devcontainer"), &location).unwrap();
        (0..graph.instances.len())
            .filter(|&i| crate::feature::satisfies_soft(&graph.instances[i], &reference, true))
            .collect()
    }

    /// The reference's "valid 3 overrides with mixed v2 Feature types": two local Features,
    /// a tarball and two OCI `python` Features, three of them named by overrides.
    #[test]
    fn three_overrides_with_mixed_v2_feature_types() {
        let tgz = "https://github.com/codspace/features/releases/download/tarball02/\
                   devcontainer-feature-docker-in-docker.tgz";
        let pinned = "ghcr.io/devcontainers/features/python@sha256:\
                      675f3c93e52fa4b205827e3aae744905ae67951f70e3ec2611f766304b31f4a2";
        let mut graph = Oci::new();
        graph.add(pinned, json!({"version": "none"}), &[]);
        graph.add(
            "ghcr.io/codspace/features/python:1",
            json!({"version": "none"}),
            &[],
        );
        graph.add("./localFeatureA", json!({"greeting": "buongiorno"}), &[]);
        graph.add("./localFeatureB", json!({"greeting": "buongiorno"}), &[]);
        graph.add(tgz, json!({"version": "latest"}), &[]);
        let order = graph
            .order(
                &[],
                &[],
                &[
                    "./localFeatureA",
                    tgz,
                    "ghcr.io/devcontainers/features/python",
                ],
            )
            .unwrap();
        let written: Vec<&str> = order.iter().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(
            written,
            [
                "./localFeatureA",
                tgz,
                pinned,
                "./localFeatureB",
                "ghcr.io/codspace/features/python:1"
            ]
        );
    }

    /// The reference's back-compat check: `hello` installs after `color`, which was renamed
    /// `new-color` and keeps `color` as a legacy id.
    #[test]
    fn installs_after_a_legacy_id_waits_for_the_renamed_feature() {
        let mut graph = Oci::new();
        let hello = graph.add("ghcr.io/codspace/features/hello:1", json!({}), &[]);
        graph.add(
            "ghcr.io/codspace/features/new-color:1",
            json!({}),
            &["color"],
        );
        let after = satisfying(&graph, "ghcr.io/codspace/features/color");
        assert_eq!(after, [1]);
        let order = graph.order(&[], &[(hello, &after)], &[]).unwrap();
        assert_eq!(
            order,
            [
                "ghcr.io/codspace/features/new-color:1",
                "ghcr.io/codspace/features/hello:1"
            ]
        );
    }

    /// The reference's forward-compat check: `flower` installs after `new-color`, and the user
    /// lists the old name `color`, published with the new metadata.
    #[test]
    fn installs_after_a_new_id_waits_for_the_feature_listed_by_its_old_id() {
        let mut graph = Oci::new();
        let flower = graph.add("ghcr.io/codspace/features/flower:1", json!({}), &[]);
        let color = graph.add("ghcr.io/codspace/features/color:1", json!({}), &["color"]);
        // The artifact under the old name carries the new id.
        let mut renamed = (*graph.instances[color].feature).clone_shallow();
        renamed.metadata.id = "new-color".into();
        graph.instances[color].feature = Arc::new(renamed);
        let after = satisfying(&graph, "ghcr.io/codspace/features/new-color");
        assert_eq!(after, [color]);
        let order = graph.order(&[], &[(flower, &after)], &[]).unwrap();
        assert_eq!(
            order,
            [
                "ghcr.io/codspace/features/color:1",
                "ghcr.io/codspace/features/flower:1"
            ]
        );
    }

    /// compareTo compares `registry/namespace` before the id.
    #[test]
    fn namespaces_sort_before_ids() {
        let mut graph = Oci::new();
        graph.add("ghcr.io/zeta/features/alpha:1", json!({}), &[]);
        graph.add("ghcr.io/alpha/features/zeta:1", json!({}), &[]);
        graph.add("docker.io/team/features/mid:1", json!({}), &[]);
        let order = graph.order(&[], &[], &[]).unwrap();
        assert_eq!(
            order,
            [
                "docker.io/team/features/mid:1",
                "ghcr.io/alpha/features/zeta:1",
                "ghcr.io/zeta/features/alpha:1"
            ]
        );
    }

    /// An `installsAfter` entry nothing in the build satisfies is dropped, not an error.
    #[test]
    fn an_unmatched_installs_after_entry_is_dropped() {
        let mut graph = Oci::new();
        let late = graph.add("ghcr.io/o/f/a:1", json!({}), &[]);
        graph.add("ghcr.io/o/f/b:1", json!({}), &[]);
        let after = satisfying(&graph, "ghcr.io/other/f/a");
        assert!(after.is_empty());
        let order = graph.order(&[], &[(late, &after)], &[]).unwrap();
        assert_eq!(order, ["ghcr.io/o/f/a:1", "ghcr.io/o/f/b:1"]);
    }
}
