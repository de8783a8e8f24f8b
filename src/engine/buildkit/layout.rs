//! A base image from an OCI image layout on the client, as an LLB source.
//!
//! An `oci-layout://` source makes BuildKit fetch the image's manifest, config and layers from
//! the client, through the session's content service (see `session::content`), instead of from
//! a registry. The layout folder is shared by putting it in `SessionSpec::content_stores` under
//! a store ID. The source names that ID in its `oci.store` attr and pins the manifest digest in
//! its identifier.

use std::collections::BTreeMap;

use super::proto::pb;

/// The LLB cap an `oci-layout://` source needs.
pub const OCI_LAYOUT_CAP: &str = "source.ocilayout";

/// The store ID the engine shares the base image's layout under.
pub const BASE_STORE: &str = "envc-base";

/// The source attr that names the session serving the layout.
pub const SESSION_ATTR: &str = "oci.session";

/// The source attr that names the store ID within that session.
pub const STORE_ATTR: &str = "oci.store";

/// Host part of the identifier's reference. BuildKit parses the reference as
/// `host/path@digest` and resolves the image by the digest. The name shows in progress output.
const LOCATOR_HOST: &str = "envc.local";

/// Returns the source op of the image with manifest `digest` in the layout shared as
/// `store_id`, for `platform`.
///
/// `session_id` names the session that serves the layout (`oci.session`). Pass `""` to leave
/// the attr out. BuildKit then reads from the solve's own session, and the op's bytes (so its
/// digest) stay the same from build to build. The op carries an empty worker constraint and the
/// platform, as BuildKit's Go client writes image sources. Give its metadata the
/// [`OCI_LAYOUT_CAP`] cap (see [`layout_metadata`]).
///
/// `store_id` is used as a path segment of the identifier, so keep it to lowercase letters,
/// digits, `.`, `_` and `-`, such as [`BASE_STORE`].
pub fn layout_source(
    store_id: &str,
    session_id: &str,
    digest: &str,
    platform: &pb::Platform,
) -> pb::Op {
    let mut attrs = BTreeMap::new();
    if !session_id.is_empty() {
        attrs.insert(SESSION_ATTR.to_owned(), session_id.to_owned());
    }
    attrs.insert(STORE_ATTR.to_owned(), store_id.to_owned());
    pb::Op {
        op: Some(pb::op::Op::Source(pb::SourceOp {
            identifier: identifier(store_id, digest),
            attrs,
        })),
        platform: Some(platform.clone()),
        constraints: Some(pb::WorkerConstraints::default()),
        ..pb::Op::default()
    }
}

/// Builds the metadata of a layout source: its progress name and the [`OCI_LAYOUT_CAP`] cap.
pub fn layout_metadata(name: impl Into<String>) -> pb::OpMetadata {
    pb::OpMetadata {
        description: BTreeMap::from([("llb.customname".to_owned(), name.into())]),
        caps: BTreeMap::from([(OCI_LAYOUT_CAP.to_owned(), true)]),
        ..pb::OpMetadata::default()
    }
}

/// `oci-layout://envc.local/<store>@<digest>`.
fn identifier(store_id: &str, digest: &str) -> String {
    format!("oci-layout://{LOCATOR_HOST}/{store_id}@{digest}")
}

/// True when `id` can be a store ID: non-empty, lowercase letters, digits, `.`, `_` and `-`.
pub fn is_valid_store_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amd64() -> pb::Platform {
        pb::Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            ..pb::Platform::default()
        }
    }

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn source(op: &pb::Op) -> &pb::SourceOp {
        match &op.op {
            Some(pb::op::Op::Source(source)) => source,
            other => panic!("expected a source op, got {other:?}"),
        }
    }

    #[test]
    fn source_pins_digest_store_session() {
        let op = layout_source(BASE_STORE, "sess1", DIGEST, &amd64());
        let source = source(&op);
        assert_eq!(
            source.identifier,
            format!("oci-layout://envc.local/envc-base@{DIGEST}")
        );
        let attrs: Vec<(&str, &str)> = source
            .attrs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            attrs,
            [("oci.session", "sess1"), ("oci.store", "envc-base")]
        );
        assert_eq!(op.platform, Some(amd64()));
        assert!(op.inputs.is_empty());
    }

    #[test]
    fn source_without_session_is_stable() {
        let first = layout_source(BASE_STORE, "", DIGEST, &amd64());
        assert!(!source(&first).attrs.contains_key(SESSION_ATTR));
        let again = layout_source(BASE_STORE, "", DIGEST, &amd64());
        assert_eq!(pb::op_digest(&first), pb::op_digest(&again));
        let other_session = layout_source(BASE_STORE, "s2", DIGEST, &amd64());
        assert_ne!(pb::op_digest(&first), pb::op_digest(&other_session));
    }

    #[test]
    fn metadata_requests_layout_cap() {
        let metadata = layout_metadata("base stage dev");
        assert_eq!(metadata.caps.get(OCI_LAYOUT_CAP), Some(&true));
        assert_eq!(metadata.description["llb.customname"], "base stage dev");
    }

    #[test]
    fn store_id_validation() {
        assert!(is_valid_store_id(BASE_STORE));
        assert!(is_valid_store_id("stage-0.1_a"));
        for bad in ["", "A", "a/b", "a@b", "a:b", "a b"] {
            assert!(!is_valid_store_id(bad), "{bad}");
        }
    }
}
