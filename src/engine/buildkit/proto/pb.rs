//! LLB, BuildKit's build graph (protobuf package `pb`).
//!
//! A build is a list of [`Op`]s, each encoded on its own and referred to by the digest of its
//! encoded bytes; [`Definition`] carries the encoded ops and per-op metadata. Every map is a
//! `BTreeMap`, so an op encodes to the same bytes every time and keeps its digest.
//!
//! Left out: `BuildOp`, `PassthroughOp`, CDI devices and Linux resource limits, which envc
//! never sends.

use std::collections::BTreeMap;

use prost::Message as _;
use sha2::{Digest as _, Sha256};

/// One vertex of the graph: its inputs, what it does and where it may run.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Op {
    #[prost(message, repeated, tag = "1")]
    pub inputs: Vec<Input>,
    #[prost(oneof = "op::Op", tags = "2, 3, 4, 6, 7")]
    pub op: Option<op::Op>,
    #[prost(message, optional, tag = "10")]
    pub platform: Option<Platform>,
    #[prost(message, optional, tag = "11")]
    pub constraints: Option<WorkerConstraints>,
}

/// The kinds of [`Op`].
pub mod op {
    /// The operation of an [`Op`](super::Op). `None` marks the terminal op that names the result.
    // Ops are built one at a time and encoded at once, so the size of the largest kind costs
    // nothing worth boxing it for.
    #[allow(clippy::large_enum_variant)]
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Op {
        #[prost(message, tag = "2")]
        Exec(super::ExecOp),
        #[prost(message, tag = "3")]
        Source(super::SourceOp),
        #[prost(message, tag = "4")]
        File(super::FileOp),
        #[prost(message, tag = "6")]
        Merge(super::MergeOp),
        #[prost(message, tag = "7")]
        Diff(super::DiffOp),
    }
}

/// An OCI platform.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Platform {
    #[prost(string, tag = "1")]
    pub architecture: String,
    #[prost(string, tag = "2")]
    pub os: String,
    #[prost(string, tag = "3")]
    pub variant: String,
    #[prost(string, tag = "4")]
    pub os_version: String,
    #[prost(string, repeated, tag = "5")]
    pub os_features: Vec<String>,
}

/// An edge: output `index` of the op whose digest is `digest`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Input {
    #[prost(string, tag = "1")]
    pub digest: String,
    #[prost(int64, tag = "2")]
    pub index: i64,
}

/// A process run over a set of mounts.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExecOp {
    #[prost(message, optional, tag = "1")]
    pub meta: Option<Meta>,
    #[prost(message, repeated, tag = "2")]
    pub mounts: Vec<Mount>,
    #[prost(enumeration = "NetMode", tag = "3")]
    pub network: i32,
    #[prost(enumeration = "SecurityMode", tag = "4")]
    pub security: i32,
    #[prost(message, repeated, tag = "5")]
    pub secretenv: Vec<SecretEnv>,
}

/// The process of an [`ExecOp`]. The image config is not inherited: `env`, `cwd` and `user`
/// are all the process gets (the server adds only a default `PATH`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Meta {
    #[prost(string, repeated, tag = "1")]
    pub args: Vec<String>,
    /// `KEY=VALUE` strings. Their order is part of the server's cache key.
    #[prost(string, repeated, tag = "2")]
    pub env: Vec<String>,
    #[prost(string, tag = "3")]
    pub cwd: String,
    #[prost(string, tag = "4")]
    pub user: String,
    #[prost(message, optional, tag = "5")]
    pub proxy_env: Option<ProxyEnv>,
    #[prost(message, repeated, tag = "6")]
    pub extra_hosts: Vec<HostIp>,
    #[prost(string, tag = "7")]
    pub hostname: String,
    #[prost(message, repeated, tag = "9")]
    pub ulimit: Vec<Ulimit>,
    #[prost(string, tag = "10")]
    pub cgroup_parent: String,
    #[prost(bool, tag = "11")]
    pub remove_mount_stubs_recursive: bool,
    #[prost(int32, repeated, tag = "12")]
    pub valid_exit_codes: Vec<i32>,
}

/// An `/etc/hosts` entry.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct HostIp {
    #[prost(string, tag = "1")]
    pub host: String,
    #[prost(string, tag = "2")]
    pub ip: String,
}

/// A resource limit of the process.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Ulimit {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(int64, tag = "2")]
    pub soft: i64,
    #[prost(int64, tag = "3")]
    pub hard: i64,
}

/// Proxy settings passed to the process without entering the cache key.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ProxyEnv {
    #[prost(string, tag = "1")]
    pub http_proxy: String,
    #[prost(string, tag = "2")]
    pub https_proxy: String,
    #[prost(string, tag = "3")]
    pub ftp_proxy: String,
    #[prost(string, tag = "4")]
    pub no_proxy: String,
    #[prost(string, tag = "5")]
    pub all_proxy: String,
}

/// A secret exposed as an environment variable.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SecretEnv {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(bool, tag = "3")]
    pub optional: bool,
}

/// The network an [`ExecOp`] runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum NetMode {
    /// The daemon's default sandbox network.
    Unset = 0,
    /// The host's network namespace, which needs the `network.host` entitlement.
    Host = 1,
    /// A namespace of its own with loopback only.
    None = 2,
}

/// Whether an [`ExecOp`] runs privileged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SecurityMode {
    Sandbox = 0,
    /// Privileged, which needs the `security.insecure` entitlement.
    Insecure = 1,
}

/// A mount of an [`ExecOp`]. The root filesystem is the mount at `/` with output 0.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Mount {
    /// Index into the op's inputs, or [`Mount::SCRATCH`] for an empty directory.
    #[prost(int64, tag = "1")]
    pub input: i64,
    #[prost(string, tag = "2")]
    pub selector: String,
    #[prost(string, tag = "3")]
    pub dest: String,
    /// Output index of the op, or [`Mount::SKIP_OUTPUT`] when the mount is not an output.
    #[prost(int64, tag = "4")]
    pub output: i64,
    #[prost(bool, tag = "5")]
    pub readonly: bool,
    #[prost(enumeration = "MountType", tag = "6")]
    pub mount_type: i32,
    #[prost(message, optional, tag = "19")]
    pub tmpfs_opt: Option<TmpfsOpt>,
    #[prost(message, optional, tag = "20")]
    pub cache_opt: Option<CacheOpt>,
    #[prost(message, optional, tag = "21")]
    pub secret_opt: Option<SecretOpt>,
    #[prost(message, optional, tag = "22")]
    pub ssh_opt: Option<SshOpt>,
    #[prost(string, tag = "23")]
    pub result_id: String,
    #[prost(enumeration = "MountContentCache", tag = "24")]
    pub content_cache: i32,
}

impl Mount {
    /// The `input` of a mount that starts empty.
    pub const SCRATCH: i64 = -1;
    /// The `output` of a mount whose changes are thrown away.
    pub const SKIP_OUTPUT: i64 = -1;
}

/// The kind of a [`Mount`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MountType {
    Bind = 0,
    Secret = 1,
    Ssh = 2,
    Cache = 3,
    Tmpfs = 4,
}

/// Whether the content of a mount enters the cache key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MountContentCache {
    Default = 0,
    On = 1,
    Off = 2,
}

/// Options of a tmpfs mount.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct TmpfsOpt {
    #[prost(int64, tag = "1")]
    pub size: i64,
}

/// Options of a cache mount.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct CacheOpt {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(enumeration = "CacheSharingOpt", tag = "2")]
    pub sharing: i32,
}

/// The sharing mode of a cache mount across builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum CacheSharingOpt {
    Shared = 0,
    Private = 1,
    Locked = 2,
}

/// Options of a secret mount.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SecretOpt {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(uint32, tag = "2")]
    pub uid: u32,
    #[prost(uint32, tag = "3")]
    pub gid: u32,
    #[prost(uint32, tag = "4")]
    pub mode: u32,
    #[prost(bool, tag = "5")]
    pub optional: bool,
}

/// Options of an SSH agent socket mount.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SshOpt {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(uint32, tag = "2")]
    pub uid: u32,
    #[prost(uint32, tag = "3")]
    pub gid: u32,
    #[prost(uint32, tag = "4")]
    pub mode: u32,
    #[prost(bool, tag = "5")]
    pub optional: bool,
}

/// Content from outside the graph: an image, a local directory, a Git repository, a URL.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SourceOp {
    /// Such as `docker-image://127.0.0.1:5000/debian:bookworm` or `local://context`.
    #[prost(string, tag = "1")]
    pub identifier: String,
    #[prost(btree_map = "string, string", tag = "2")]
    pub attrs: BTreeMap<String, String>,
}

/// A list of filesystem actions.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FileOp {
    #[prost(message, repeated, tag = "2")]
    pub actions: Vec<FileAction>,
}

/// One filesystem action. An `input` below the op's input count names an op input, one at or
/// above it names the output of an earlier action, and -1 means scratch.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FileAction {
    #[prost(int64, tag = "1")]
    pub input: i64,
    #[prost(int64, tag = "2")]
    pub secondary_input: i64,
    #[prost(int64, tag = "3")]
    pub output: i64,
    #[prost(oneof = "file_action::Action", tags = "4, 5, 6, 7, 8")]
    pub action: Option<file_action::Action>,
}

/// The kinds of [`FileAction`].
pub mod file_action {
    /// The operation of a [`FileAction`](super::FileAction).
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Action {
        #[prost(message, tag = "4")]
        Copy(super::FileActionCopy),
        #[prost(message, tag = "5")]
        Mkfile(super::FileActionMkFile),
        #[prost(message, tag = "6")]
        Mkdir(super::FileActionMkDir),
        #[prost(message, tag = "7")]
        Rm(super::FileActionRm),
        #[prost(message, tag = "8")]
        Symlink(super::FileActionSymlink),
    }
}

/// A copy of `src` from the secondary input to `dest` in the input.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FileActionCopy {
    #[prost(string, tag = "1")]
    pub src: String,
    #[prost(string, tag = "2")]
    pub dest: String,
    #[prost(message, optional, tag = "3")]
    pub owner: Option<ChownOpt>,
    #[prost(int32, tag = "4")]
    pub mode: i32,
    #[prost(bool, tag = "5")]
    pub follow_symlink: bool,
    #[prost(bool, tag = "6")]
    pub dir_copy_contents: bool,
    #[prost(bool, tag = "7")]
    pub attempt_unpack_docker_compatibility: bool,
    #[prost(bool, tag = "8")]
    pub create_dest_path: bool,
    #[prost(bool, tag = "9")]
    pub allow_wildcard: bool,
    #[prost(bool, tag = "10")]
    pub allow_empty_wildcard: bool,
    #[prost(int64, tag = "11")]
    pub timestamp: i64,
    #[prost(string, repeated, tag = "12")]
    pub include_patterns: Vec<String>,
    #[prost(string, repeated, tag = "13")]
    pub exclude_patterns: Vec<String>,
    #[prost(bool, tag = "14")]
    pub always_replace_existing_dest_paths: bool,
    #[prost(string, tag = "15")]
    pub mode_str: String,
    #[prost(string, repeated, tag = "16")]
    pub required_paths: Vec<String>,
}

/// A file to write.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FileActionMkFile {
    #[prost(string, tag = "1")]
    pub path: String,
    #[prost(int32, tag = "2")]
    pub mode: i32,
    #[prost(bytes = "vec", tag = "3")]
    pub data: Vec<u8>,
    #[prost(message, optional, tag = "4")]
    pub owner: Option<ChownOpt>,
    #[prost(int64, tag = "5")]
    pub timestamp: i64,
}

/// A directory to create.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FileActionMkDir {
    #[prost(string, tag = "1")]
    pub path: String,
    #[prost(int32, tag = "2")]
    pub mode: i32,
    #[prost(bool, tag = "3")]
    pub make_parents: bool,
    #[prost(message, optional, tag = "4")]
    pub owner: Option<ChownOpt>,
    #[prost(int64, tag = "5")]
    pub timestamp: i64,
}

/// A path to remove.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct FileActionRm {
    #[prost(string, tag = "1")]
    pub path: String,
    #[prost(bool, tag = "2")]
    pub allow_not_found: bool,
    #[prost(bool, tag = "3")]
    pub allow_wildcard: bool,
}

/// A symbolic link to create at `newpath`, pointing to `oldpath`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FileActionSymlink {
    #[prost(string, tag = "1")]
    pub oldpath: String,
    #[prost(string, tag = "2")]
    pub newpath: String,
    #[prost(message, optional, tag = "3")]
    pub owner: Option<ChownOpt>,
    #[prost(int64, tag = "4")]
    pub timestamp: i64,
}

/// Owner of a created path.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ChownOpt {
    #[prost(message, optional, tag = "1")]
    pub user: Option<UserOpt>,
    #[prost(message, optional, tag = "2")]
    pub group: Option<UserOpt>,
}

/// A user or group, by name or by numeric id.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct UserOpt {
    #[prost(oneof = "user_opt::User", tags = "1, 2")]
    pub user: Option<user_opt::User>,
}

/// The kinds of [`UserOpt`].
pub mod user_opt {
    /// The form in which a [`UserOpt`](super::UserOpt) names its user.
    #[derive(Clone, PartialEq, Eq, prost::Oneof)]
    pub enum User {
        #[prost(message, tag = "1")]
        ByName(super::NamedUserOpt),
        #[prost(uint32, tag = "2")]
        ById(u32),
    }
}

/// A user name, looked up in the `/etc/passwd` of input `input`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct NamedUserOpt {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(int64, tag = "2")]
    pub input: i64,
}

/// A stack of the inputs' filesystems, later ones on top.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct MergeOp {
    #[prost(message, repeated, tag = "1")]
    pub inputs: Vec<MergeInput>,
}

/// One layer of a [`MergeOp`], an index into the op's inputs.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct MergeInput {
    #[prost(int64, tag = "1")]
    pub input: i64,
}

/// The changes that turn `lower` into `upper`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct DiffOp {
    #[prost(message, optional, tag = "1")]
    pub lower: Option<LowerDiffInput>,
    #[prost(message, optional, tag = "2")]
    pub upper: Option<UpperDiffInput>,
}

/// The lower side of a [`DiffOp`], an index into the op's inputs (-1 for scratch).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LowerDiffInput {
    #[prost(int64, tag = "1")]
    pub input: i64,
}

/// The upper side of a [`DiffOp`], an index into the op's inputs (-1 for scratch).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct UpperDiffInput {
    #[prost(int64, tag = "1")]
    pub input: i64,
}

/// The workers allowed to run an op (containerd-style filters).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct WorkerConstraints {
    #[prost(string, repeated, tag = "1")]
    pub filter: Vec<String>,
}

/// A whole graph: every op encoded, the last one the terminal op, plus metadata per op digest.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Definition {
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub def: Vec<Vec<u8>>,
    #[prost(btree_map = "string, message", tag = "2")]
    pub metadata: BTreeMap<String, OpMetadata>,
    #[prost(message, optional, tag = "3")]
    pub source: Option<Source>,
}

/// Facts about an op beyond its content: caching, display name, caps.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OpMetadata {
    #[prost(bool, tag = "1")]
    pub ignore_cache: bool,
    /// Such as `llb.customname`, the name progress shows for the vertex.
    #[prost(btree_map = "string, string", tag = "2")]
    pub description: BTreeMap<String, String>,
    #[prost(message, optional, tag = "4")]
    pub export_cache: Option<ExportCache>,
    #[prost(btree_map = "string, bool", tag = "5")]
    pub caps: BTreeMap<String, bool>,
    #[prost(message, optional, tag = "6")]
    pub progress_group: Option<ProgressGroup>,
}

/// Whether an op's result is exported to the cache.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ExportCache {
    #[prost(bool, tag = "1")]
    pub value: bool,
}

/// A group of vertexes shown under one name in progress output.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ProgressGroup {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(bool, tag = "3")]
    pub weak: bool,
}

/// Source maps: where in the user's files each op came from.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Source {
    #[prost(btree_map = "string, message", tag = "1")]
    pub locations: BTreeMap<String, Locations>,
    #[prost(message, repeated, tag = "2")]
    pub infos: Vec<SourceInfo>,
}

/// The places one op came from.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Locations {
    #[prost(message, repeated, tag = "1")]
    pub locations: Vec<Location>,
}

/// A file of a [`Source`] map.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SourceInfo {
    #[prost(string, tag = "1")]
    pub filename: String,
    #[prost(bytes = "vec", tag = "2")]
    pub data: Vec<u8>,
    #[prost(message, optional, tag = "3")]
    pub definition: Option<Definition>,
    #[prost(string, tag = "4")]
    pub language: String,
}

/// Ranges in the file `source_index` of [`Source::infos`].
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Location {
    #[prost(int32, tag = "1")]
    pub source_index: i32,
    #[prost(message, repeated, tag = "2")]
    pub ranges: Vec<Range>,
}

/// A span of a source file.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Range {
    #[prost(message, optional, tag = "1")]
    pub start: Option<Position>,
    #[prost(message, optional, tag = "2")]
    pub end: Option<Position>,
}

/// A line and character in a source file.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Position {
    #[prost(int32, tag = "1")]
    pub line: i32,
    #[prost(int32, tag = "2")]
    pub character: i32,
}

/// Returns the digest BuildKit gives encoded op bytes: `sha256:<hex>`.
pub fn bytes_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Encodes an op once, returning the bytes to place in [`Definition::def`] and their digest.
pub fn encode_op(op: &Op) -> (Vec<u8>, String) {
    let bytes = op.encode_to_vec();
    let digest = bytes_digest(&bytes);
    (bytes, digest)
}

/// Returns the digest of an op: `sha256:` and the hex SHA-256 of its encoded bytes.
pub fn op_digest(op: &Op) -> String {
    encode_op(op).1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(identifier: &str, attrs: &[(&str, &str)]) -> Op {
        let attrs = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Op {
            op: Some(op::Op::Source(SourceOp {
                identifier: identifier.into(),
                attrs,
            })),
            platform: Some(Platform {
                architecture: "amd64".into(),
                os: "linux".into(),
                ..Platform::default()
            }),
            ..Op::default()
        }
    }

    #[test]
    fn source_op_exact_bytes() {
        let op = source("local://ctx", &[("b", "2"), ("a", "1")]);

        let mut expected = vec![0x1a, 0x1d]; // field 3 (source), 29 bytes
        expected.extend([0x0a, 0x0b]); // identifier, 11 bytes
        expected.extend(b"local://ctx");
        expected.extend([0x12, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, b'1']); // attrs entry a=1
        expected.extend([0x12, 0x06, 0x0a, 0x01, b'b', 0x12, 0x01, b'2']); // attrs entry b=2
        expected.extend([0x52, 0x0e]); // field 10 (platform), 14 bytes
        expected.extend([0x0a, 0x05]);
        expected.extend(b"amd64");
        expected.extend([0x12, 0x05]);
        expected.extend(b"linux");

        let (bytes, digest) = encode_op(&op);
        assert_eq!(bytes, expected);
        assert_eq!(digest, bytes_digest(&expected));
        assert_eq!(op_digest(&op), digest);
    }

    #[test]
    fn map_order_keeps_digest() {
        let forward = source("docker-image://x", &[("a", "1"), ("b", "2"), ("c", "3")]);
        let backward = source("docker-image://x", &[("c", "3"), ("b", "2"), ("a", "1")]);
        assert_eq!(op_digest(&forward), op_digest(&backward));

        let other = source("docker-image://x", &[("a", "1"), ("b", "2"), ("c", "4")]);
        assert_ne!(op_digest(&forward), op_digest(&other));
    }

    #[test]
    fn definition_metadata_key_order() {
        let mut definition = Definition::default();
        for key in ["sha256:bb", "sha256:aa"] {
            let mut meta = OpMetadata::default();
            meta.caps.insert("z".into(), true);
            meta.caps.insert("y".into(), true);
            definition.metadata.insert(key.into(), meta);
        }
        let bytes = definition.encode_to_vec();

        let at = |needle: &[u8]| bytes.windows(needle.len()).position(|w| w == needle);
        assert!(at(b"sha256:aa") < at(b"sha256:bb"));
        assert!(at(b"y") < at(b"z"));
        assert_eq!(Definition::decode(bytes.as_slice()).ok(), Some(definition));
    }

    #[test]
    fn negative_index_ten_byte_varint() {
        let mount = Mount {
            input: Mount::SCRATCH,
            dest: "/".into(),
            output: Mount::SKIP_OUTPUT,
            ..Mount::default()
        };
        let ten_byte_minus_one = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];

        let mut expected = vec![0x08];
        expected.extend(ten_byte_minus_one);
        expected.extend([0x1a, 0x01, b'/', 0x20]);
        expected.extend(ten_byte_minus_one);
        assert_eq!(mount.encode_to_vec(), expected);
    }

    #[test]
    fn exec_op_round_trip() {
        let op = Op {
            inputs: vec![Input {
                digest: "sha256:00".into(),
                index: 0,
            }],
            op: Some(op::Op::Exec(ExecOp {
                meta: Some(Meta {
                    args: vec!["sh".into(), "-c".into(), "true".into()],
                    env: vec!["PATH=/bin".into()],
                    cwd: "/".into(),
                    ..Meta::default()
                }),
                mounts: vec![Mount {
                    dest: "/".into(),
                    ..Mount::default()
                }],
                network: NetMode::None as i32,
                ..ExecOp::default()
            })),
            ..Op::default()
        };
        let bytes = op.encode_to_vec();
        let decoded = Op::decode(bytes.as_slice()).ok();
        assert_eq!(decoded.as_ref(), Some(&op));

        let Some(op::Op::Exec(exec)) = decoded.and_then(|op| op.op) else {
            panic!("decoded op is not an exec op");
        };
        assert_eq!(exec.network(), NetMode::None);
        assert_eq!(exec.security(), SecurityMode::Sandbox);
    }

    #[test]
    fn terminal_op_exact_bytes() {
        let terminal = Op {
            inputs: vec![Input {
                digest: "sha256:ab".into(),
                index: 1,
            }],
            ..Op::default()
        };
        let mut expected = vec![0x0a, 0x0d, 0x0a, 0x09];
        expected.extend(b"sha256:ab");
        expected.extend([0x10, 0x01]);
        assert_eq!(terminal.encode_to_vec(), expected);
    }
}
