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
//! Where envc differs from the reference: a cycle made only of `installsAfter` edges (a Feature
//! naming itself included) is broken with a warning instead of failing the build, and a cycle
//! with a `dependsOn` edge is an error that names every Feature on it.

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
            .filter(|&i| is_ready(&graph, nodes[i], &requirements, &installed))
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

fn is_ready(
    graph: &DiGraph<usize, Edge>,
    node: NodeIndex,
    requirements: &[Requirement],
    installed: &[bool],
) -> bool {
    let hard_done = graph
        .edges(node)
        .filter(|e| *e.weight() == Edge::Hard)
        .all(|e| installed[graph[e.target()]]);
    let soft_done = requirements
        .iter()
        .filter(|r| r.dependent == graph[node])
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
