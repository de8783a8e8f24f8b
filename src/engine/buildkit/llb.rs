//! Lowering a [`BuildPlan`] to LLB, BuildKit's build graph.
//!
//! The graph is a chain. The base image is an image source pinned by digest. Each Feature is
//! one exec op on the root the op before it left, so its changes become exactly one layer.
//! The Feature's folder is a file op from scratch (folders, files and links, sorted, with
//! fixed modes and times) mounted read-only at `/.envc/features/<id>`: its files never enter
//! the image, and no session is needed to send them. The exec runs as `0:0` in that folder,
//! with the environment the local engine gives the script. A small `sh` program first reads
//! the user homes from the image's `/etc/passwd`, as the local engine does before it starts
//! the container. The last op names the result.
//!
//! The same plan always gives the same bytes, so every op keeps its digest: maps are sorted,
//! the environment keeps the plan's order, and file modes are reduced to what a Feature's
//! content digest covers (the executable bit).
//!
//! Not handled here: a base image from an OCI layout folder, the image config and the export.

use std::path::{Path, PathBuf};

use super::proto::pb;
use crate::engine::local::bundle::{feature_mount, script_env};
use crate::engine::Network;
use crate::plan::{BaseSource, BuildPlan, Step};

/// The maximum bytes one Feature folder may take in the solve request: file contents, plus
/// each entry's path and [`ENTRY_BYTES`]. The files travel inside the request, and Docker 26
/// rejects gRPC messages over 4 MiB (measured: `received message larger than max (5247156 vs.
/// 4194304)`).
pub const MAX_FEATURE_BYTES: u64 = 2 << 20;

/// An estimate of what one file action takes in the request besides its path and contents
/// (mode, owner, timestamp, indexes and field tags), so that many small files count too.
const ENTRY_BYTES: u64 = 64;

/// The maximum bytes of file content in all Feature folders together, leaving room under
/// Docker's 4 MiB for the ops and the exporters' image configs.
pub const MAX_TOTAL_FEATURE_BYTES: u64 = 3 << 20;

/// The description key BuildKit shows as a vertex's name.
pub const CUSTOM_NAME: &str = "llb.customname";

/// The `sh` program that starts each install command, with the remote user, the container
/// user and then the command as arguments.
///
/// It sets `_REMOTE_USER_HOME` and `_CONTAINER_USER_HOME` by the local engine's rules: the
/// sixth field of the first `/etc/passwd` entry whose name or uid matches. Without one, or
/// when `/etc` or `/etc/passwd` is a link, root gets `/root` and anyone else an empty value.
/// Then it runs the command with stderr in stdout, so lines keep the order the script wrote
/// them in. It writes no file, because a here-document could leave a trace in `/tmp`.
pub const RUN_SCRIPT: &str = r#"home_of() {
  case $1 in root|0) fallback=/root ;; *) fallback= ;; esac
  if [ -L /etc ] || [ ! -d /etc ] || [ -L /etc/passwd ] || [ ! -f /etc/passwd ]; then
    printf '%s' "$fallback"
    return
  fi
  cr=$(printf '\r')
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line%"$cr"}
    case $line in *:*:*:*:*:*) ;; *) continue ;; esac
    name=${line%%:*}
    rest=${line#*:}
    rest=${rest#*:}
    uid=${rest%%:*}
    rest=${rest#*:}
    rest=${rest#*:}
    rest=${rest#*:}
    if [ "$name" = "$1" ] || [ "$uid" = "$1" ]; then
      printf '%s' "${rest%%:*}"
      return
    fi
  done </etc/passwd
  printf '%s' "$fallback"
}
_REMOTE_USER_HOME=$(home_of "$1")
_CONTAINER_USER_HOME=$(home_of "$2")
export _REMOTE_USER_HOME _CONTAINER_USER_HOME
shift 2
exec "$@" 2>&1
"#;

/// The host name install scripts see, as with the local engine.
const HOSTNAME: &str = "envc";

/// Errors in lowering a plan.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("base image `{reference}` has an unusable config: {reason}")]
    BaseConfig { reference: String, reason: String },
    #[error(
        "the folder of Feature `{feature}` takes {size} bytes or more in the build request (file \
         contents, and the path and about 64 bytes for each entry), more than the {limit} the \
         BuildKit engine sends with one Feature"
    )]
    FeatureTooLarge {
        feature: String,
        size: u64,
        limit: u64,
    },
    #[error(
        "the Feature folders hold {size} bytes of files together, more than the {limit} the \
         BuildKit engine sends with one build"
    )]
    FeaturesTooLarge { size: u64, limit: u64 },
    #[error("`{}` in the folder of Feature `{feature}` {reason}", .path.display())]
    UnsupportedEntry {
        feature: String,
        path: PathBuf,
        reason: &'static str,
    },
    #[error("failed to read `{}` of Feature `{feature}`", .path.display())]
    Read {
        feature: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn is_invalid_input(&self) -> bool {
        !matches!(self, Error::Read { .. })
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Error::BaseConfig { .. } => {
                Some("check that the base reference names a container image".into())
            }
            Error::FeatureTooLarge { .. } | Error::FeaturesTooLarge { .. } => Some(
                "move large downloads out of the Feature folder (fetch them in install.sh), \
                 or build with `--engine local`"
                    .into(),
            ),
            Error::UnsupportedEntry { .. } => Some(
                "keep only folders, regular files and symbolic links with UTF-8 names in a \
                 Feature folder"
                    .into(),
            ),
            Error::Read { .. } => None,
        }
    }
}

/// A plan lowered to LLB.
#[derive(Debug, Clone)]
pub struct Lowered {
    pub definition: pb::Definition,
    /// The digest of the base image's source op.
    pub base: String,
    /// The digest of each Feature's exec op, index for index with the plan's steps.
    pub steps: Vec<String>,
    /// Whether some exec runs in the host's network and needs the `network.host` entitlement.
    pub host_network: bool,
    /// Each symbolic link of a Feature folder as (Feature id, path in the folder), for
    /// daemons too old to create links in a file op.
    pub symlinks: Vec<(String, String)>,
}

/// Lowers `plan` to a definition whose last op names the image's root filesystem.
///
/// # Errors
///
/// [`Error::FeatureTooLarge`] and
/// [`Error::FeaturesTooLarge`] when Feature files are too big to send with the build,
/// [`Error::UnsupportedEntry`] for a device, socket or non-UTF-8 name in a Feature folder.
pub fn lower(plan: &BuildPlan) -> Result<Lowered, Error> {
    let platform = base_platform(plan)?;
    let timestamp = plan
        .settings
        .source_date_epoch
        .checked_mul(1_000_000_000)
        .unwrap_or(0);
    let mut graph = Graph::default();

    let base = graph.add(base_op(plan, &platform)?, base_metadata(plan));
    let mut root = base.clone();
    let mut steps = Vec::with_capacity(plan.features.len());
    let mut symlinks = Vec::new();
    let mut total = 0;
    for step in &plan.features {
        let folder = read_folder(step)?;
        total += folder.size;
        if total > MAX_TOTAL_FEATURE_BYTES {
            return Err(Error::FeaturesTooLarge {
                size: total,
                limit: MAX_TOTAL_FEATURE_BYTES,
            });
        }
        symlinks.extend(folder.symlinks().map(|path| (step.id.clone(), path)));
        let files = graph.add(
            file_op(&folder, timestamp, &platform),
            metadata(format!("Feature {} files", step.id), folder_caps(&folder)),
        );
        let exec = graph.add(
            exec_op(plan, step, &root, &files, &platform),
            metadata(format!("Feature {}", step.id), exec_caps()),
        );
        steps.push(exec.clone());
        root = exec;
    }

    let terminal = pb::Op {
        inputs: vec![pb::Input {
            digest: root,
            index: 0,
        }],
        ..pb::Op::default()
    };
    let terminal_caps = ["constraints", "platform", "meta.description"];
    graph.add(terminal, metadata_with(None, &terminal_caps));
    Ok(Lowered {
        definition: graph.finish(),
        base,
        steps,
        host_network: plan.settings.network == Network::Host,
        symlinks,
    })
}

/// Marks every exec op of `lowered` as not to be taken from the cache, for `--no-cache`.
pub fn ignore_cache(lowered: &mut Lowered) {
    let metadata = &mut lowered.definition.metadata;
    for digest in &lowered.steps {
        if let Some(meta) = metadata.get_mut(digest) {
            meta.ignore_cache = true;
        }
    }
    let terminal = lowered
        .definition
        .def
        .last()
        .map(|bytes| pb::bytes_digest(bytes));
    if let Some(meta) = terminal.and_then(|digest| metadata.get_mut(&digest)) {
        meta.caps.insert("meta.ignorecache".into(), true);
    }
}

/// Ops in the order they are added, each once, with their metadata.
#[derive(Default)]
struct Graph {
    definition: pb::Definition,
}

impl Graph {
    /// Adds `op` unless an identical op is there already, and returns its digest.
    fn add(&mut self, op: pb::Op, metadata: pb::OpMetadata) -> String {
        let (bytes, digest) = pb::encode_op(&op);
        if !self.definition.metadata.contains_key(&digest) {
            self.definition.def.push(bytes);
            self.definition.metadata.insert(digest.clone(), metadata);
        }
        digest
    }

    fn finish(self) -> pb::Definition {
        self.definition
    }
}

fn metadata(name: String, caps: &[&str]) -> pb::OpMetadata {
    metadata_with(Some(name), caps)
}

fn metadata_with(name: Option<String>, caps: &[&str]) -> pb::OpMetadata {
    pb::OpMetadata {
        description: name
            .map(|name| (CUSTOM_NAME.to_string(), name))
            .into_iter()
            .collect(),
        caps: caps.iter().map(|cap| (cap.to_string(), true)).collect(),
        ..pb::OpMetadata::default()
    }
}

fn base_metadata(plan: &BuildPlan) -> pb::OpMetadata {
    let name = format!("base {}", plan.base.reference);
    match plan.base.source {
        BaseSource::Registry(_) => metadata(name, &["source.image"]),
        BaseSource::Layout { .. } => super::layout::layout_metadata(name),
    }
}

fn exec_caps() -> &'static [&'static str] {
    &["exec.meta.base", "exec.meta.network", "exec.mount.bind"]
}

fn folder_caps(folder: &Folder) -> &'static [&'static str] {
    if folder.symlinks().next().is_some() {
        &["file.base", "file.symlink.create"]
    } else {
        &["file.base"]
    }
}

/// Returns the image source of the base, `docker-image://<registry>/<repository>@<digest>`.
/// The digest pins it, so no tag is kept. A base in an OCI layout folder (a Dockerfile stage,
/// or `oci:DIR`) is read through the session's content store instead.
fn base_op(plan: &BuildPlan, platform: &pb::Platform) -> Result<pb::Op, Error> {
    let image = match &plan.base.source {
        BaseSource::Registry(image) => image,
        BaseSource::Layout { .. } => {
            let store = super::layout::BASE_STORE;
            return Ok(super::layout::layout_source(
                store,
                "",
                &plan.base.digest,
                platform,
            ));
        }
    };
    let identifier = format!(
        "docker-image://{}/{}@{}",
        image.registry, image.repository, plan.base.digest
    );
    Ok(pb::Op {
        op: Some(pb::op::Op::Source(pb::SourceOp {
            identifier,
            attrs: Default::default(),
        })),
        platform: Some(platform.clone()),
        constraints: Some(pb::WorkerConstraints::default()),
        ..pb::Op::default()
    })
}

/// Reads the platform of the base image from its config.
fn base_platform(plan: &BuildPlan) -> Result<pb::Platform, Error> {
    let invalid = |reason: String| Error::BaseConfig {
        reference: plan.base.reference.clone(),
        reason,
    };
    let config: serde_json::Value =
        serde_json::from_slice(&plan.base.config).map_err(|e| invalid(e.to_string()))?;
    let text = |key: &str| {
        config
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let (os, architecture) = (text("os"), text("architecture"));
    if os.is_empty() || architecture.is_empty() {
        return Err(invalid("it names no `os` and `architecture`".into()));
    }
    let os_features = config
        .get("os.features")
        .and_then(|v| v.as_array())
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok(pb::Platform {
        architecture,
        os,
        variant: text("variant"),
        os_version: text("os.version"),
        os_features,
    })
}

/// Returns the exec op that runs one Feature's install script on `root`, with its folder from
/// `files` mounted read-only.
fn exec_op(
    plan: &BuildPlan,
    step: &Step,
    root: &str,
    files: &str,
    platform: &pb::Platform,
) -> pb::Op {
    let mount_point = feature_mount(&step.id).to_string_lossy().into_owned();
    let args = ["/bin/sh", "-c", RUN_SCRIPT, "sh"]
        .into_iter()
        .map(str::to_string)
        .chain([step.users.remote.clone(), step.users.container.clone()])
        .chain(step.command.iter().cloned())
        .collect();
    // The homes are set by `RUN_SCRIPT`; the empty entries keep their place in the order.
    let env = script_env(&step.env, "", "");
    let network = match plan.settings.network {
        Network::None => pb::NetMode::None,
        Network::Host => pb::NetMode::Host,
    };
    let exec = pb::ExecOp {
        meta: Some(pb::Meta {
            args,
            env,
            cwd: mount_point.clone(),
            user: "0:0".into(),
            hostname: HOSTNAME.into(),
            remove_mount_stubs_recursive: true,
            ..pb::Meta::default()
        }),
        mounts: vec![
            pb::Mount {
                input: 0,
                dest: "/".into(),
                output: 0,
                ..pb::Mount::default()
            },
            pb::Mount {
                input: 1,
                dest: mount_point,
                output: pb::Mount::SKIP_OUTPUT,
                readonly: true,
                ..pb::Mount::default()
            },
        ],
        network: network as i32,
        ..pb::ExecOp::default()
    };
    pb::Op {
        inputs: vec![
            pb::Input {
                digest: root.to_string(),
                index: 0,
            },
            pb::Input {
                digest: files.to_string(),
                index: 0,
            },
        ],
        op: Some(pb::op::Op::Exec(exec)),
        platform: Some(platform.clone()),
        constraints: Some(pb::WorkerConstraints::default()),
    }
}

/// The contents of a Feature folder, sorted by path.
struct Folder {
    entries: Vec<(String, Entry)>,
    /// Bytes it takes in the request: file contents, paths and [`ENTRY_BYTES`] per entry.
    size: u64,
}

enum Entry {
    Dir,
    File { executable: bool, data: Vec<u8> },
    Symlink { target: String },
}

impl Folder {
    fn symlinks(&self) -> impl Iterator<Item = String> + '_ {
        self.entries
            .iter()
            .filter(|(_, entry)| matches!(entry, Entry::Symlink { .. }))
            .map(|(path, _)| path.clone())
    }
}

/// Reads the folder of `step`, rejecting one over [`MAX_FEATURE_BYTES`].
fn read_folder(step: &Step) -> Result<Folder, Error> {
    let mut relative = Vec::new();
    collect(step, Path::new(""), &mut relative)?;
    relative.sort();

    let mut folder = Folder {
        entries: Vec::with_capacity(relative.len()),
        size: 0,
    };
    for path in relative {
        let full = step.feature_dir.join(&path);
        let read_error = |source| Error::Read {
            feature: step.id.clone(),
            path: full.clone(),
            source,
        };
        let unsupported = |reason| Error::UnsupportedEntry {
            feature: step.id.clone(),
            path: full.clone(),
            reason,
        };
        let name = path
            .to_str()
            .ok_or_else(|| unsupported("has a name that is not UTF-8"))?;
        let meta = std::fs::symlink_metadata(&full).map_err(read_error)?;
        let kind = meta.file_type();
        folder.size += name.len() as u64 + ENTRY_BYTES;
        if kind.is_file() {
            folder.size += meta.len();
        }
        if folder.size > MAX_FEATURE_BYTES {
            return Err(Error::FeatureTooLarge {
                feature: step.id.clone(),
                size: folder.size,
                limit: MAX_FEATURE_BYTES,
            });
        }
        let entry = if kind.is_dir() {
            Entry::Dir
        } else if kind.is_symlink() {
            let target = std::fs::read_link(&full).map_err(read_error)?;
            let target = target
                .to_str()
                .ok_or_else(|| unsupported("is a link whose target is not UTF-8"))?;
            Entry::Symlink {
                target: target.to_string(),
            }
        } else if kind.is_file() {
            use std::os::unix::fs::PermissionsExt;

            Entry::File {
                executable: meta.permissions().mode() & 0o111 != 0,
                data: std::fs::read(&full).map_err(read_error)?,
            }
        } else {
            return Err(unsupported(
                "is not a folder, a regular file or a symbolic link",
            ));
        };
        folder.entries.push((format!("/{name}"), entry));
    }
    Ok(folder)
}

fn collect(step: &Step, relative: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    let dir = step.feature_dir.join(relative);
    let read_error = |source| Error::Read {
        feature: step.id.clone(),
        path: dir.clone(),
        source,
    };
    for entry in std::fs::read_dir(&dir).map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        let child = relative.join(entry.file_name());
        let is_dir = entry.file_type().map_err(read_error)?.is_dir();
        out.push(child.clone());
        if is_dir {
            collect(step, &child, out)?;
        }
    }
    Ok(())
}

/// Returns a file op from scratch that makes `folder`, with one action per entry, each on the
/// result of the one before. Folders are `0755`, files `0755` or `0644` by their executable
/// bit, and every time is `timestamp` (nanoseconds since the Unix epoch).
fn file_op(folder: &Folder, timestamp: i64, platform: &pb::Platform) -> pb::Op {
    use pb::file_action::Action;

    let mut actions: Vec<Action> = folder
        .entries
        .iter()
        .map(|(path, entry)| match entry {
            Entry::Dir => Action::Mkdir(pb::FileActionMkDir {
                path: path.clone(),
                mode: 0o755,
                make_parents: true,
                owner: None,
                timestamp,
            }),
            Entry::File { executable, data } => Action::Mkfile(pb::FileActionMkFile {
                path: path.clone(),
                mode: if *executable { 0o755 } else { 0o644 },
                data: data.clone(),
                owner: None,
                timestamp,
            }),
            Entry::Symlink { target } => Action::Symlink(pb::FileActionSymlink {
                oldpath: target.clone(),
                newpath: path.clone(),
                owner: None,
                timestamp,
            }),
        })
        .collect();
    if actions.is_empty() {
        // A file op needs an action; making the root folder changes nothing.
        actions.push(Action::Mkdir(pb::FileActionMkDir {
            path: "/".into(),
            mode: 0o755,
            make_parents: true,
            owner: None,
            timestamp,
        }));
    }

    let last = actions.len() - 1;
    let actions = actions
        .into_iter()
        .enumerate()
        .map(|(index, action)| pb::FileAction {
            // The op has no inputs, so index `i` names the result of action `i`.
            input: if index == 0 { -1 } else { index as i64 - 1 },
            secondary_input: -1,
            output: if index == last { 0 } else { -1 },
            action: Some(action),
        })
        .collect();
    pb::Op {
        inputs: Vec::new(),
        op: Some(pb::op::Op::File(pb::FileOp { actions })),
        platform: Some(platform.clone()),
        constraints: Some(pb::WorkerConstraints::default()),
    }
}

/// Summarizes `definition` for `envc plan --llb`: one line per op with its short digest, its
/// kind and what it does.
pub fn describe(definition: &pb::Definition) -> String {
    use prost::Message as _;

    let mut out = String::new();
    for bytes in &definition.def {
        let digest = pb::bytes_digest(bytes);
        let name = definition
            .metadata
            .get(&digest)
            .and_then(|meta| meta.description.get(CUSTOM_NAME))
            .map(|name| format!("  \"{name}\""))
            .unwrap_or_default();
        let line = match pb::Op::decode(bytes.as_slice()) {
            Ok(op) => describe_op(&op),
            Err(e) => format!("undecodable op: {e}"),
        };
        out.push_str(&format!("{}  {line}{name}\n", short(&digest)));
    }
    out
}

fn describe_op(op: &pb::Op) -> String {
    use pb::op::Op;

    let input = |index: i64| {
        usize::try_from(index)
            .ok()
            .and_then(|i| op.inputs.get(i))
            .map(|input| format!("{}:{}", short(&input.digest), input.index))
            .unwrap_or_else(|| "scratch".into())
    };
    let platform = op
        .platform
        .as_ref()
        .map(|p| {
            let variant = if p.variant.is_empty() {
                String::new()
            } else {
                format!("/{}", p.variant)
            };
            format!(" [{}/{}{variant}]", p.os, p.architecture)
        })
        .unwrap_or_default();
    match &op.op {
        None => format!("result  {}", input(0)),
        Some(Op::Source(source)) => format!("source  {}{platform}", source.identifier),
        Some(Op::File(file)) => {
            let actions: Vec<String> = file.actions.iter().map(describe_action).collect();
            format!("file    {}{platform}", actions.join(", "))
        }
        Some(Op::Exec(exec)) => {
            let meta = exec.meta.clone().unwrap_or_default();
            let args: Vec<String> = meta.args.iter().map(|a| quote(a)).collect();
            let mounts: Vec<String> = exec
                .mounts
                .iter()
                .map(|m| {
                    let access = if m.readonly { " ro" } else { "" };
                    let output = if m.output >= 0 {
                        format!(" -> {}", m.output)
                    } else {
                        String::new()
                    };
                    format!("{} <- {}{access}{output}", m.dest, input(m.input))
                })
                .collect();
            let network = match exec.network() {
                pb::NetMode::Unset => "sandbox",
                pb::NetMode::Host => "host",
                pb::NetMode::None => "none",
            };
            format!(
                "exec    {}; mounts {}; network {network}; user {}; cwd {}; {} env{platform}",
                args.join(" "),
                mounts.join(", "),
                meta.user,
                meta.cwd,
                meta.env.len(),
            )
        }
        Some(Op::Merge(_)) => format!("merge{platform}"),
        Some(Op::Diff(_)) => format!("diff{platform}"),
    }
}

fn describe_action(action: &pb::FileAction) -> String {
    use pb::file_action::Action;

    match &action.action {
        Some(Action::Mkdir(a)) => format!("mkdir {} {:o}", a.path, a.mode),
        Some(Action::Mkfile(a)) => format!("mkfile {} {:o} {}B", a.path, a.mode, a.data.len()),
        Some(Action::Symlink(a)) => format!("symlink {} -> {}", a.newpath, a.oldpath),
        Some(Action::Copy(a)) => format!("copy {} {}", a.src, a.dest),
        Some(Action::Rm(a)) => format!("rm {}", a.path),
        None => "none".into(),
    }
}

/// Quotes an argument as a shell would need it, and shows a script of several lines by its
/// line count.
fn quote(arg: &str) -> String {
    if arg.contains('\n') {
        return format!("<{}-line script>", arg.lines().count());
    }
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-=:,+@".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// Returns the first 12 hex digits of a digest.
fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    const BASE_CONFIG: &str = r#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},"rootfs":{"type":"layers","diff_ids":[]}}"#;
    const BASE_DIGEST: &str =
        "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    fn base() -> crate::plan::BasePlan {
        let image =
            crate::registry::ImageRef::parse(&format!("127.0.0.1:5000/debian@{BASE_DIGEST}"))
                .unwrap();
        crate::plan::BasePlan {
            reference: "127.0.0.1:5000/debian:bookworm".into(),
            digest: BASE_DIGEST.into(),
            source: BaseSource::Registry(image),
            manifest: Vec::new(),
            config: BASE_CONFIG.as_bytes().to_vec(),
        }
    }

    /// Plans the anchor project on a made-up base, with no registry.
    async fn anchor_plan(network: Network) -> BuildPlan {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/anchor-project");
        let file = root.join(".devcontainer/devcontainer.json");
        let config = crate::config::load(&file, &|_| None).unwrap();
        let cache = tempfile::tempdir().unwrap();
        let registry =
            crate::registry::RegistryClient::new(crate::registry::RegistryOptions::default());
        let resolution = crate::feature::resolve_features(&config, &registry, cache.path())
            .await
            .unwrap();
        let ordered =
            crate::graph::install_order_explained(resolution, &config.override_install_order)
                .unwrap();
        let settings = crate::plan::Settings {
            compression: Default::default(),
            source_date_epoch: 0,
            network,
        };
        crate::plan::make_plan(&config, &ordered.instances, base(), settings, false).unwrap()
    }

    fn ops(definition: &pb::Definition) -> Vec<pb::Op> {
        definition
            .def
            .iter()
            .map(|bytes| pb::Op::decode(bytes.as_slice()).unwrap())
            .collect()
    }

    fn exec(op: &pb::Op) -> &pb::ExecOp {
        match &op.op {
            Some(pb::op::Op::Exec(exec)) => exec,
            other => panic!("not an exec op: {other:?}"),
        }
    }

    #[tokio::test]
    async fn anchor_describe_snapshot() {
        let plan = anchor_plan(Network::None).await;
        let lowered = lower(&plan).unwrap();
        insta::assert_snapshot!(describe(&lowered.definition));
    }

    #[tokio::test]
    async fn lower_same_plan_same_bytes() {
        let plan = anchor_plan(Network::None).await;
        let first = lower(&plan).unwrap().definition.encode_to_vec();
        for _ in 0..10 {
            assert_eq!(lower(&plan).unwrap().definition.encode_to_vec(), first);
        }
    }

    #[tokio::test]
    async fn lower_one_exec_per_feature() {
        let plan = anchor_plan(Network::None).await;
        let lowered = lower(&plan).unwrap();
        let ops = ops(&lowered.definition);
        assert_eq!(lowered.steps.len(), 5);

        // Base, then a file op and an exec per Feature, then the terminal op.
        assert_eq!(ops.len(), 1 + 2 * 5 + 1);
        let mut root = lowered.base.clone();
        for (digest, step) in lowered.steps.iter().zip(&plan.features) {
            let op = ops.iter().find(|op| pb::op_digest(op) == *digest).unwrap();
            assert_eq!(op.inputs[0].digest, root);
            let exec = exec(op);
            let meta = exec.meta.as_ref().unwrap();
            let mount = format!("/.envc/features/{}", step.id);
            assert_eq!(meta.cwd, mount);
            assert_eq!(meta.user, "0:0");
            assert!(meta.remove_mount_stubs_recursive);
            assert_eq!(meta.args[..2], ["/bin/sh", "-c"]);
            assert_eq!(
                meta.args[4..6],
                [step.users.remote.clone(), step.users.container.clone()]
            );
            assert_eq!(meta.args[6..], step.command[..]);
            assert_eq!(meta.env, script_env(&step.env, "", ""));
            assert_eq!(exec.network(), pb::NetMode::None);
            assert_eq!(exec.mounts[0].dest, "/");
            assert_eq!(exec.mounts[0].output, 0);
            assert_eq!(exec.mounts[1].dest, mount);
            assert!(exec.mounts[1].readonly);
            assert_eq!(exec.mounts[1].output, -1);
            let name = &lowered.definition.metadata[digest].description[CUSTOM_NAME];
            assert_eq!(name, &format!("Feature {}", step.id));
            root = digest.clone();
        }
        let terminal = ops.last().unwrap();
        assert!(terminal.op.is_none());
        assert_eq!(terminal.inputs[0].digest, root);
        assert!(!lowered.host_network);
    }

    #[tokio::test]
    async fn lower_host_network_entitlement() {
        let plan = anchor_plan(Network::Host).await;
        let lowered = lower(&plan).unwrap();
        assert!(lowered.host_network);
        let ops = ops(&lowered.definition);
        let op = ops
            .iter()
            .find(|op| pb::op_digest(op) == lowered.steps[0])
            .unwrap();
        assert_eq!(exec(op).network(), pb::NetMode::Host);
    }

    #[tokio::test]
    async fn ignore_cache_marks_execs_only() {
        let plan = anchor_plan(Network::None).await;
        let mut lowered = lower(&plan).unwrap();
        ignore_cache(&mut lowered);
        let metadata = &lowered.definition.metadata;
        assert!(lowered.steps.iter().all(|d| metadata[d].ignore_cache));
        assert!(!metadata[&lowered.base].ignore_cache);
        let terminal = pb::bytes_digest(lowered.definition.def.last().unwrap());
        assert!(metadata[&terminal].caps.contains_key("meta.ignorecache"));
    }

    #[test]
    fn layout_base_reads_from_session() {
        let mut plan = bare_plan();
        plan.base.source = BaseSource::Layout {
            dir: "/images/base".into(),
        };
        let lowered = lower(&plan).unwrap();
        let base = lowered
            .definition
            .def
            .iter()
            .find(|bytes| pb::bytes_digest(bytes) == lowered.base)
            .unwrap();
        let op = <pb::Op as prost::Message>::decode(base.as_slice()).unwrap();
        let Some(pb::op::Op::Source(source)) = op.op else {
            panic!("the base is not a source op: {op:?}");
        };
        let expected = format!("oci-layout://envc.local/envc-base@{}", plan.base.digest);
        assert_eq!(source.identifier, expected);
        // No session id, so the op's digest does not change from build to build.
        assert!(!source.attrs.contains_key("oci.session"));
        let caps = &lowered.definition.metadata[&lowered.base].caps;
        assert!(caps.contains_key("source.ocilayout"));
    }

    #[test]
    fn file_op_sorted_fixed_modes() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("lib/sub")).unwrap();
        std::fs::write(dir.path().join("install.sh"), "echo hi\n").unwrap();
        std::fs::set_permissions(
            dir.path().join("install.sh"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        std::fs::write(dir.path().join("lib/sub/data"), "x").unwrap();
        std::fs::set_permissions(
            dir.path().join("lib/sub/data"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        std::os::unix::fs::symlink("sub/data", dir.path().join("lib/link")).unwrap();

        let mut plan = bare_plan();
        plan.settings.source_date_epoch = 7;
        plan.features.push(step("tool", dir.path()));
        let lowered = lower(&plan).unwrap();
        assert_eq!(
            lowered.symlinks,
            [("tool".to_string(), "/lib/link".to_string())]
        );
        let ops = ops(&lowered.definition);
        let Some(pb::op::Op::File(file)) = &ops[1].op else {
            panic!("the second op is not a file op");
        };
        let described: Vec<String> = file.actions.iter().map(describe_action).collect();
        assert_eq!(
            described,
            [
                "mkfile /install.sh 755 8B",
                "mkdir /lib 755",
                "symlink /lib/link -> sub/data",
                "mkdir /lib/sub 755",
                "mkfile /lib/sub/data 644 1B",
            ]
        );
        let chain: Vec<(i64, i64)> = file.actions.iter().map(|a| (a.input, a.output)).collect();
        assert_eq!(chain, [(-1, -1), (0, -1), (1, -1), (2, -1), (3, 0)]);
        let Some(pb::file_action::Action::Mkfile(first)) = &file.actions[0].action else {
            panic!("the first action is not mkfile");
        };
        assert_eq!(first.timestamp, 7_000_000_000);
        let caps = &lowered.definition.metadata[&pb::op_digest(&ops[1])].caps;
        assert!(caps.contains_key("file.symlink.create"));
    }

    #[test]
    fn folder_over_limit_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(dir.path().join("big.bin")).unwrap();
        file.set_len(MAX_FEATURE_BYTES + 1).unwrap();
        let mut plan = bare_plan();
        plan.features.push(step("big", dir.path()));
        let err = lower(&plan).unwrap_err();
        assert!(matches!(err, Error::FeatureTooLarge { .. }), "{err}");
        assert!(err.to_string().contains("`big`"), "{err}");
        assert!(
            err.to_string().contains(&MAX_FEATURE_BYTES.to_string()),
            "{err}"
        );
        assert!(err.is_invalid_input());
    }

    #[test]
    fn many_small_files_count() {
        let dir = tempfile::tempdir().unwrap();
        // Empty files with long names: no content, but each takes room in the request.
        let name = "x".repeat(200);
        for i in 0..8_000 {
            std::fs::File::create(dir.path().join(format!("{i:05}{name}"))).unwrap();
        }
        let mut plan = bare_plan();
        plan.features.push(step("many", dir.path()));
        let err = lower(&plan).unwrap_err();
        assert!(matches!(err, Error::FeatureTooLarge { .. }), "{err}");
    }

    #[test]
    fn folder_fifo_rejected() {
        let dir = tempfile::tempdir().unwrap();
        nix::unistd::mkfifo(&dir.path().join("pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let mut plan = bare_plan();
        plan.features.push(step("odd", dir.path()));
        let err = lower(&plan).unwrap_err();
        assert!(matches!(err, Error::UnsupportedEntry { .. }), "{err}");
        assert!(err.to_string().contains("pipe"), "{err}");
    }

    #[test]
    fn base_pinned_by_digest() {
        let lowered = lower(&bare_plan()).unwrap();
        let ops = ops(&lowered.definition);
        let Some(pb::op::Op::Source(source)) = &ops[0].op else {
            panic!("the first op is not a source");
        };
        assert_eq!(
            source.identifier,
            format!("docker-image://127.0.0.1:5000/debian@{BASE_DIGEST}")
        );
        let platform = ops[0].platform.as_ref().unwrap();
        assert_eq!(
            (platform.os.as_str(), platform.architecture.as_str()),
            ("linux", "amd64")
        );
        // With no Feature, the result is the base itself.
        assert_eq!(ops[1].inputs[0].digest, lowered.base);
    }

    #[test]
    fn quote_plain_and_scripts() {
        assert_eq!(quote("/bin/sh"), "/bin/sh");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(
            quote(RUN_SCRIPT),
            format!("<{}-line script>", RUN_SCRIPT.lines().count())
        );
    }

    /// Runs `RUN_SCRIPT` with the host's `/bin/sh` against a made-up root, by rewriting its
    /// absolute paths, and returns the two homes it exports.
    fn homes(passwd: Option<&str>, remote: &str, container: &str) -> (String, String) {
        let root = tempfile::tempdir().unwrap();
        let etc = root.path().join("etc");
        std::fs::create_dir(&etc).unwrap();
        if let Some(text) = passwd {
            std::fs::write(etc.join("passwd"), text).unwrap();
        }
        let script = RUN_SCRIPT.replace("/etc", &etc.to_string_lossy());
        let output = std::process::Command::new("/bin/sh")
            .args(["-c", &script, "sh", remote, container])
            .args([
                "/bin/sh",
                "-c",
                r#"printf '%s|%s' "$_REMOTE_USER_HOME" "$_CONTAINER_USER_HOME""#,
            ])
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let text = String::from_utf8(output.stdout).unwrap();
        let (remote, container) = text.split_once('|').unwrap();
        (remote.to_string(), container.to_string())
    }

    #[test]
    fn run_script_homes_from_passwd() {
        let passwd = "root:x:0:0:root:/var/root:/bin/sh\nshort:x:5\n\
                      dev:x:1001:1001::/home/dev:/bin/bash\r\nlast:x:7:7::/home/last";
        assert_eq!(
            homes(Some(passwd), "dev", "root"),
            ("/home/dev".into(), "/var/root".into())
        );
        assert_eq!(
            homes(Some(passwd), "1001", "0"),
            ("/home/dev".into(), "/var/root".into())
        );
        assert_eq!(
            homes(Some(passwd), "last", "short"),
            ("/home/last".into(), String::new())
        );
        assert_eq!(
            homes(None, "root", "nobody"),
            ("/root".into(), String::new())
        );
        assert_eq!(homes(Some(""), "0", "dev"), ("/root".into(), String::new()));
    }

    #[test]
    fn run_script_ignores_linked_passwd() {
        let root = tempfile::tempdir().unwrap();
        let outside = root.path().join("outside");
        std::fs::write(&outside, "dev:x:1:1::/secret:/bin/sh\n").unwrap();
        let etc = root.path().join("etc");
        std::fs::create_dir(&etc).unwrap();
        std::os::unix::fs::symlink(&outside, etc.join("passwd")).unwrap();
        let script = RUN_SCRIPT.replace("/etc", &etc.to_string_lossy());
        let output = std::process::Command::new("/bin/sh")
            .args(["-c", &script, "sh", "dev", "root", "/bin/sh", "-c"])
            .arg(r#"printf '%s|%s' "$_REMOTE_USER_HOME" "$_CONTAINER_USER_HOME""#)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&output.stdout), "|/root");
    }

    fn bare_plan() -> BuildPlan {
        BuildPlan {
            config_file: "/p/.devcontainer/devcontainer.json".into(),
            base: base(),
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

    fn step(id: &str, dir: &Path) -> Step {
        Step {
            id: id.into(),
            reference: format!("./{id}"),
            version: None,
            options: Default::default(),
            content_digest: "sha256:00".into(),
            resolved: None,
            cache_key: "sha256:00".into(),
            feature_dir: dir.to_path_buf(),
            command: vec!["/bin/sh".into(), "./install.sh".into()],
            env: vec![("PATH".into(), "/bin".into())],
            users: Default::default(),
            location: None,
            required_by: None,
        }
    }
}
