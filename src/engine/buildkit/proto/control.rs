//! The Control service's messages (protobuf package `moby.buildkit.v1`, with the worker types of
//! `moby.buildkit.v1.types` and the source policy of `moby.buildkit.v1.sourcepolicy`, which share
//! the wire format whatever their package).
//!
//! Left out: the build history calls and their messages, which envc never makes.

use std::collections::BTreeMap;

use prost_types::Timestamp;

use super::pb;

/// A request to build a graph (or run a frontend) and export the result.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SolveRequest {
    /// The build's id, which `Status` is called with too.
    #[prost(string, tag = "1")]
    pub r#ref: String,
    #[prost(message, optional, tag = "2")]
    pub definition: Option<pb::Definition>,
    /// The first exporter's type, for daemons older than field 13.
    #[prost(string, tag = "3")]
    pub exporter_deprecated: String,
    /// The first exporter's attrs, for daemons older than field 13.
    #[prost(btree_map = "string, string", tag = "4")]
    pub exporter_attrs_deprecated: BTreeMap<String, String>,
    /// The id of the session that serves files, credentials and exports.
    #[prost(string, tag = "5")]
    pub session: String,
    /// Empty for a raw LLB solve, `dockerfile.v0` for the Dockerfile frontend.
    #[prost(string, tag = "6")]
    pub frontend: String,
    #[prost(btree_map = "string, string", tag = "7")]
    pub frontend_attrs: BTreeMap<String, String>,
    #[prost(message, optional, tag = "8")]
    pub cache: Option<CacheOptions>,
    /// Such as `network.host` or `security.insecure`.
    #[prost(string, repeated, tag = "9")]
    pub entitlements: Vec<String>,
    #[prost(btree_map = "string, message", tag = "10")]
    pub frontend_inputs: BTreeMap<String, pb::Definition>,
    /// Internal builds are not recorded in the daemon's build history.
    #[prost(bool, tag = "11")]
    pub internal: bool,
    #[prost(message, optional, tag = "12")]
    pub source_policy: Option<Policy>,
    #[prost(message, repeated, tag = "13")]
    pub exporters: Vec<Exporter>,
    #[prost(bool, tag = "14")]
    pub enable_session_exporter: bool,
    #[prost(string, tag = "15")]
    pub source_policy_session: String,
    #[prost(int64, tag = "16")]
    pub compatibility_version: i64,
    #[prost(bool, tag = "17")]
    pub proxy_network: bool,
}

/// An export target by type: `image`/`moby`, `oci`, `docker`, `local`, `tar`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Exporter {
    #[prost(string, tag = "1")]
    pub r#type: String,
    #[prost(btree_map = "string, string", tag = "2")]
    pub attrs: BTreeMap<String, String>,
}

/// Cache imports and exports of a solve.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct CacheOptions {
    #[prost(string, tag = "1")]
    pub export_ref_deprecated: String,
    #[prost(string, repeated, tag = "2")]
    pub import_refs_deprecated: Vec<String>,
    #[prost(btree_map = "string, string", tag = "3")]
    pub export_attrs_deprecated: BTreeMap<String, String>,
    #[prost(message, repeated, tag = "4")]
    pub exports: Vec<CacheOptionsEntry>,
    #[prost(message, repeated, tag = "5")]
    pub imports: Vec<CacheOptionsEntry>,
}

/// One cache backend, such as `registry` with attrs `ref` and `mode`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct CacheOptionsEntry {
    #[prost(string, tag = "1")]
    pub r#type: String,
    #[prost(btree_map = "string, string", tag = "2")]
    pub attrs: BTreeMap<String, String>,
}

/// The exporters' results, such as `containerimage.digest`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SolveResponse {
    #[prost(btree_map = "string, string", tag = "1")]
    pub exporter_response: BTreeMap<String, String>,
}

/// A request to follow the progress of the solve with this ref.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct StatusRequest {
    #[prost(string, tag = "1")]
    pub r#ref: String,
}

/// One batch of progress: vertex changes, transfer progress, log output, warnings.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusResponse {
    #[prost(message, repeated, tag = "1")]
    pub vertexes: Vec<Vertex>,
    #[prost(message, repeated, tag = "2")]
    pub statuses: Vec<VertexStatus>,
    #[prost(message, repeated, tag = "3")]
    pub logs: Vec<VertexLog>,
    #[prost(message, repeated, tag = "4")]
    pub warnings: Vec<VertexWarning>,
}

/// The state of one op of the graph, named by its digest.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Vertex {
    #[prost(string, tag = "1")]
    pub digest: String,
    #[prost(string, repeated, tag = "2")]
    pub inputs: Vec<String>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(bool, tag = "4")]
    pub cached: bool,
    #[prost(message, optional, tag = "5")]
    pub started: Option<Timestamp>,
    #[prost(message, optional, tag = "6")]
    pub completed: Option<Timestamp>,
    /// Empty unless the vertex failed.
    #[prost(string, tag = "7")]
    pub error: String,
    #[prost(message, optional, tag = "8")]
    pub progress_group: Option<pb::ProgressGroup>,
}

/// Progress of one task inside a vertex, such as a layer download.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VertexStatus {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub vertex: String,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(int64, tag = "4")]
    pub current: i64,
    #[prost(int64, tag = "5")]
    pub total: i64,
    #[prost(message, optional, tag = "6")]
    pub timestamp: Option<Timestamp>,
    #[prost(message, optional, tag = "7")]
    pub started: Option<Timestamp>,
    #[prost(message, optional, tag = "8")]
    pub completed: Option<Timestamp>,
}

/// Output of a vertex's process, where `stream` is 1 for stdout and 2 for stderr.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VertexLog {
    #[prost(string, tag = "1")]
    pub vertex: String,
    #[prost(message, optional, tag = "2")]
    pub timestamp: Option<Timestamp>,
    #[prost(int64, tag = "3")]
    pub stream: i64,
    #[prost(bytes = "vec", tag = "4")]
    pub msg: Vec<u8>,
}

/// A warning about a vertex, such as a frontend's lint finding.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VertexWarning {
    #[prost(string, tag = "1")]
    pub vertex: String,
    #[prost(int64, tag = "2")]
    pub level: i64,
    #[prost(bytes = "vec", tag = "3")]
    pub short: Vec<u8>,
    #[prost(bytes = "vec", repeated, tag = "4")]
    pub detail: Vec<Vec<u8>>,
    #[prost(string, tag = "5")]
    pub url: String,
    #[prost(message, optional, tag = "6")]
    pub info: Option<pb::SourceInfo>,
    #[prost(message, repeated, tag = "7")]
    pub ranges: Vec<pb::Range>,
}

/// A chunk of a byte stream, such as a session tunnelled through `Control/Session`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct BytesMessage {
    #[prost(bytes = "vec", tag = "1")]
    pub data: Vec<u8>,
}

/// A request for the daemon's version.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct InfoRequest {}

/// The daemon's version.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct InfoResponse {
    #[prost(message, optional, tag = "1")]
    pub buildkit_version: Option<BuildkitVersion>,
}

/// A BuildKit build: `package` such as `github.com/moby/buildkit`, `version` such as `v0.13.2`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct BuildkitVersion {
    #[prost(string, tag = "1")]
    pub package: String,
    #[prost(string, tag = "2")]
    pub version: String,
    #[prost(string, tag = "3")]
    pub revision: String,
    #[prost(string, tag = "4")]
    pub dockerfile_version: String,
}

/// A request to list the daemon's workers (containerd-style filters).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ListWorkersRequest {
    #[prost(string, repeated, tag = "1")]
    pub filter: Vec<String>,
}

/// The daemon's workers.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListWorkersResponse {
    #[prost(message, repeated, tag = "1")]
    pub record: Vec<WorkerRecord>,
}

/// One worker: its labels (executor, snapshotter, hostname), platforms and GC policy.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WorkerRecord {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(btree_map = "string, string", tag = "2")]
    pub labels: BTreeMap<String, String>,
    #[prost(message, repeated, tag = "3")]
    pub platforms: Vec<pb::Platform>,
    #[prost(message, repeated, tag = "4")]
    pub gc_policy: Vec<GcPolicy>,
    #[prost(message, optional, tag = "5")]
    pub buildkit_version: Option<BuildkitVersion>,
}

/// One rule of a worker's cache garbage collection.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct GcPolicy {
    #[prost(bool, tag = "1")]
    pub all: bool,
    #[prost(int64, tag = "2")]
    pub keep_duration: i64,
    /// Named `keepBytes` before BuildKit v0.17.
    #[prost(int64, tag = "3")]
    pub reserved_space: i64,
    #[prost(string, repeated, tag = "4")]
    pub filters: Vec<String>,
    #[prost(int64, tag = "5")]
    pub max_used_space: i64,
    #[prost(int64, tag = "6")]
    pub min_free_space: i64,
}

/// A request to remove cache records. The daemon streams back each record it removed.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PruneRequest {
    #[prost(string, repeated, tag = "1")]
    pub filter: Vec<String>,
    /// Also remove records that are shared or internal.
    #[prost(bool, tag = "2")]
    pub all: bool,
    #[prost(int64, tag = "3")]
    pub keep_duration: i64,
    /// Named `keepBytes` before BuildKit v0.17.
    #[prost(int64, tag = "4")]
    pub reserved_space: i64,
    #[prost(int64, tag = "5")]
    pub max_used_space: i64,
    #[prost(int64, tag = "6")]
    pub min_free_space: i64,
}

/// A request to list cache records.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct DiskUsageRequest {
    #[prost(string, repeated, tag = "1")]
    pub filter: Vec<String>,
    #[prost(int64, tag = "2")]
    pub age_limit: i64,
}

/// The daemon's cache records.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DiskUsageResponse {
    #[prost(message, repeated, tag = "1")]
    pub record: Vec<UsageRecord>,
}

/// One cache record and its size in bytes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UsageRecord {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(bool, tag = "2")]
    pub mutable: bool,
    #[prost(bool, tag = "3")]
    pub in_use: bool,
    #[prost(int64, tag = "4")]
    pub size: i64,
    /// Replaced by `parents`.
    #[prost(string, tag = "5")]
    pub parent: String,
    #[prost(message, optional, tag = "6")]
    pub created_at: Option<Timestamp>,
    #[prost(message, optional, tag = "7")]
    pub last_used_at: Option<Timestamp>,
    #[prost(int64, tag = "8")]
    pub usage_count: i64,
    #[prost(string, tag = "9")]
    pub description: String,
    #[prost(string, tag = "10")]
    pub record_type: String,
    #[prost(bool, tag = "11")]
    pub shared: bool,
    #[prost(string, repeated, tag = "12")]
    pub parents: Vec<String>,
}

/// Rules that allow, deny or rewrite sources, such as pinning an image tag to a digest.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Policy {
    /// Currently 1.
    #[prost(int64, tag = "1")]
    pub version: i64,
    #[prost(message, repeated, tag = "2")]
    pub rules: Vec<Rule>,
}

/// One source policy rule: for sources matching `selector`, take `action`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Rule {
    #[prost(enumeration = "PolicyAction", tag = "1")]
    pub action: i32,
    #[prost(message, optional, tag = "2")]
    pub selector: Option<Selector>,
    #[prost(message, optional, tag = "3")]
    pub updates: Option<Update>,
}

/// The action a [`Rule`] takes on a matching source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum PolicyAction {
    Allow = 0,
    Deny = 1,
    Convert = 2,
}

/// The new identifier and attrs of a converted source.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Update {
    #[prost(string, tag = "1")]
    pub identifier: String,
    #[prost(btree_map = "string, string", tag = "2")]
    pub attrs: BTreeMap<String, String>,
}

/// The sources a [`Rule`] applies to.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Selector {
    #[prost(string, tag = "1")]
    pub identifier: String,
    #[prost(enumeration = "MatchType", tag = "2")]
    pub match_type: i32,
    #[prost(message, repeated, tag = "3")]
    pub constraints: Vec<AttrConstraint>,
}

/// The way a [`Selector`]'s identifier is matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MatchType {
    Wildcard = 0,
    Exact = 1,
    Regex = 2,
}

/// A condition on one attr of a selected source.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct AttrConstraint {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
    #[prost(enumeration = "AttrMatch", tag = "3")]
    pub condition: i32,
}

/// The comparison of an [`AttrConstraint`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum AttrMatch {
    Equal = 0,
    NotEqual = 1,
    Matches = 2,
}

/// The `google.rpc.Status` a gRPC error carries in its details, with BuildKit's typed errors.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<prost_types::Any>,
}

/// A typed error detail naming the vertex that failed (`errdefs.Vertex`).
#[derive(Clone, PartialEq, Eq, prost::Message, serde::Deserialize)]
pub struct ErrorVertex {
    #[prost(string, tag = "1")]
    #[serde(default)]
    pub digest: String,
}

/// A typed error detail with a process's exit code (`gatewayapi.ExitMessage`).
#[derive(Clone, PartialEq, Eq, prost::Message, serde::Deserialize)]
pub struct ExitMessage {
    #[prost(uint32, tag = "1")]
    #[serde(default, rename = "Code")]
    pub code: u32,
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    #[test]
    fn solve_request_fills_old_and_new_exporters() {
        let attrs = BTreeMap::from([("push".to_string(), "true".to_string())]);
        let request = SolveRequest {
            r#ref: "r".into(),
            exporter_deprecated: "moby".into(),
            exporter_attrs_deprecated: attrs.clone(),
            exporters: vec![Exporter {
                r#type: "moby".into(),
                attrs,
            }],
            ..SolveRequest::default()
        };

        let mut expected = vec![0x0a, 0x01, b'r', 0x1a, 0x04];
        expected.extend(b"moby");
        let entry = [&[0x0a, 0x04][..], b"push", &[0x12, 0x04], b"true"].concat();
        expected.extend([0x22, entry.len() as u8]);
        expected.extend(&entry);
        // field 13: type, then the same attrs entry as field 2
        let exporter = [
            &[0x0a, 0x04][..],
            b"moby",
            &[0x12, entry.len() as u8],
            &entry,
        ]
        .concat();
        expected.extend([0x6a, exporter.len() as u8]);
        expected.extend(&exporter);
        assert_eq!(request.encode_to_vec(), expected);
    }

    #[test]
    fn status_response_round_trips() {
        let response = StatusResponse {
            vertexes: vec![Vertex {
                digest: "sha256:aa".into(),
                name: "exec".into(),
                completed: Some(Timestamp {
                    seconds: 1,
                    nanos: 0,
                }),
                ..Vertex::default()
            }],
            logs: vec![VertexLog {
                vertex: "sha256:aa".into(),
                stream: 1,
                msg: b"hi\n".to_vec(),
                ..VertexLog::default()
            }],
            ..StatusResponse::default()
        };
        let bytes = response.encode_to_vec();
        assert_eq!(
            StatusResponse::decode(bytes.as_slice()).ok(),
            Some(response)
        );
    }

    #[test]
    fn worker_labels_decode() {
        // WorkerRecord { ID: "w", Labels: {"k": "v"} } as the daemon sends it.
        let bytes = [
            0x0a, 0x01, b'w', 0x12, 0x06, 0x0a, 0x01, b'k', 0x12, 0x01, b'v',
        ];
        let record = WorkerRecord::decode(bytes.as_slice()).ok();
        assert_eq!(record.as_ref().map(|r| r.id.as_str()), Some("w"));
        assert_eq!(
            record.and_then(|r| r.labels.get("k").cloned()).as_deref(),
            Some("v")
        );
    }
}
