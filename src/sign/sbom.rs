//! The SBOM: an SPDX 2.3 JSON document listing the image, its base image and every installed
//! Feature with its version, reference, resolved digest and options.
//!
//! The document is made from the build plan, not by scanning the image, so it lists what envc
//! put in (the base and the Features), not the packages those installed.

use serde_json::{json, Value};

use super::facts::{hex_of, BuildFacts};

/// The in-toto predicate type of an SPDX document (`cosign verify-attestation --type spdxjson`).
pub const PREDICATE_TYPE: &str = "https://spdx.dev/Document";

const IMAGE_ID: &str = "SPDXRef-Image";
const BASE_ID: &str = "SPDXRef-BaseImage";

/// Makes the SPDX 2.3 document of the image that `facts` describe. Its creation time is the build's
/// `SOURCE_DATE_EPOCH`, so the same build gives the same document.
pub fn document(facts: &BuildFacts) -> Value {
    let tool = format!("Tool: envc-{}", env!("CARGO_PKG_VERSION"));
    let mut packages = vec![
        json!({
            "SPDXID": IMAGE_ID,
            "name": facts.image_name,
            "versionInfo": facts.image_digest,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "primaryPackagePurpose": "CONTAINER",
            "checksums": [{"algorithm": "SHA256", "checksumValue": hex_of(&facts.image_digest)}],
            "externalRefs": [oci_purl(&facts.image_name, &facts.image_digest)],
        }),
        json!({
            "SPDXID": BASE_ID,
            "name": facts.base_reference,
            "versionInfo": facts.base_digest,
            "downloadLocation": download_location(&facts.base_reference),
            "filesAnalyzed": false,
            "primaryPackagePurpose": "CONTAINER",
            "checksums": [{"algorithm": "SHA256", "checksumValue": hex_of(&facts.base_digest)}],
            "comment": format!("base image `{}` at `{}`", facts.base_reference, facts.base_digest),
        }),
    ];
    let mut relationships = vec![
        json!({
            "spdxElementId": "SPDXRef-DOCUMENT",
            "relationshipType": "DESCRIBES",
            "relatedSpdxElement": IMAGE_ID,
        }),
        json!({
            "spdxElementId": IMAGE_ID,
            "relationshipType": "DESCENDANT_OF",
            "relatedSpdxElement": BASE_ID,
        }),
    ];

    for (index, feature) in facts.features.iter().enumerate() {
        let id = format!(
            "SPDXRef-Feature-{}-{}",
            index + 1,
            spdx_id_part(&feature.id)
        );
        let mut package = json!({
            "SPDXID": id,
            "name": feature.id,
            "versionInfo": feature.version.clone().unwrap_or_else(|| "NOASSERTION".to_string()),
            "downloadLocation": feature
                .resolved
                .as_deref()
                .map(download_location)
                .unwrap_or_else(|| "NOASSERTION".to_string()),
            "filesAnalyzed": false,
            "primaryPackagePurpose": "INSTALL",
            "checksums": [{"algorithm": "SHA256", "checksumValue": hex_of(&feature.digest)}],
            "sourceInfo": match &feature.resolved {
                Some(resolved) => format!("Dev Container Feature `{}` resolved to `{resolved}`",
                    feature.reference),
                None => format!("Dev Container Feature `{}`", feature.reference),
            },
            "comment": format!(
                "options: {}",
                serde_json::to_string(&feature.options).expect("options serialize")
            ),
            "annotations": [{
                "annotationType": "OTHER",
                "annotator": tool,
                "annotationDate": super::facts::time_text(epoch(facts.source_date_epoch)),
                "comment": serde_json::to_string(&json!({
                    "id": feature.id,
                    "version": feature.version,
                    "ref": feature.reference,
                    "resolved": feature.resolved,
                    "digest": feature.digest,
                    "options": feature.options,
                })).expect("the Feature serializes"),
            }],
        });
        if let Some(resolved) = &feature.resolved {
            if let Some((name, digest)) = resolved.split_once('@') {
                package["externalRefs"] = json!([oci_purl(name, digest)]);
            }
        }
        packages.push(package);
        relationships.push(json!({
            "spdxElementId": IMAGE_ID,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": id,
        }));
    }

    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{}@{}", facts.image_name, facts.image_digest),
        "documentNamespace": format!(
            "urn:envc:sbom:{}:{}",
            facts.image_name,
            hex_of(&facts.image_digest)
        ),
        "creationInfo": {
            "created": super::facts::time_text(epoch(facts.source_date_epoch)),
            "creators": [tool],
        },
        "packages": packages,
        "relationships": relationships,
    })
}

fn epoch(seconds: i64) -> std::time::SystemTime {
    std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(seconds.max(0) as u64)
}

/// Makes a package URL reference of type `oci` for `name` (`registry/repository`) at `digest`.
fn oci_purl(name: &str, digest: &str) -> Value {
    let (registry, repository) = name.split_once('/').unwrap_or(("", name));
    let last = repository.rsplit('/').next().unwrap_or(repository);
    let last = last.split(':').next().unwrap_or(last);
    let mut locator = format!("pkg:oci/{last}@{}", digest.replace(':', "%3A"));
    if !registry.is_empty() {
        let path = repository.split(':').next().unwrap_or(repository);
        locator.push_str(&format!("?repository_url={registry}/{path}"));
    }
    json!({
        "referenceCategory": "PACKAGE-MANAGER",
        "referenceType": "purl",
        "referenceLocator": locator,
    })
}

/// Returns SPDX's `downloadLocation` for an OCI reference: the reference, or `NOASSERTION`
/// for a local folder or layout.
fn download_location(reference: &str) -> String {
    if reference.starts_with("oci:") || reference.starts_with('.') || reference.starts_with('/') {
        "NOASSERTION".to_string()
    } else {
        reference.to_string()
    }
}

/// Replaces all but letters, digits, `.` and `-`, which SPDX identifiers allow, with `-`.
fn spdx_id_part(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::facts::tests::sample;
    use super::*;

    #[test]
    fn document_is_spdx_2_3() {
        let doc = document(&sample());
        assert_eq!(doc["spdxVersion"], "SPDX-2.3");
        assert_eq!(doc["dataLicense"], "CC0-1.0");
        assert_eq!(doc["SPDXID"], "SPDXRef-DOCUMENT");
        assert_eq!(doc["creationInfo"]["created"], "1970-01-01T00:00:00Z");
        assert!(doc["creationInfo"]["creators"][0]
            .as_str()
            .unwrap()
            .starts_with("Tool: envc-"));
    }

    #[test]
    fn base_image_has_reference_and_digest() {
        let facts = sample();
        let doc = document(&facts);
        let base = &doc["packages"][1];
        assert_eq!(base["SPDXID"], BASE_ID);
        assert_eq!(base["name"], facts.base_reference);
        assert_eq!(base["versionInfo"], facts.base_digest);
        assert_eq!(base["checksums"][0]["checksumValue"], "b".repeat(64));
    }

    #[test]
    fn every_feature_is_listed() {
        let facts = sample();
        let doc = document(&facts);
        let packages = doc["packages"].as_array().unwrap();
        assert_eq!(packages.len(), 2 + facts.features.len());

        let tool = &packages[2];
        assert_eq!(tool["name"], "tool");
        assert_eq!(tool["versionInfo"], "1.2.0");
        assert_eq!(tool["checksums"][0]["checksumValue"], "d".repeat(64));
        assert!(tool["sourceInfo"]
            .as_str()
            .unwrap()
            .contains("features/tool:1"));
        let detail: Value =
            serde_json::from_str(tool["annotations"][0]["comment"].as_str().unwrap()).unwrap();
        assert_eq!(
            detail["resolved"],
            facts.features[0].resolved.clone().unwrap()
        );
        assert_eq!(detail["options"]["extras"], true);
        assert_eq!(detail["options"]["version"], "latest");
        assert!(tool["externalRefs"][0]["referenceLocator"]
            .as_str()
            .unwrap()
            .starts_with("pkg:oci/tool@sha256%3A"));

        let local = &packages[3];
        assert_eq!(local["versionInfo"], "NOASSERTION");
        assert_eq!(local["downloadLocation"], "NOASSERTION");
    }

    #[test]
    fn image_contains_each_feature() {
        let doc = document(&sample());
        let contains = doc["relationships"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["relationshipType"] == "CONTAINS")
            .count();
        assert_eq!(contains, 2);
    }

    #[test]
    fn same_facts_same_document() {
        let first = serde_json::to_vec(&document(&sample())).unwrap();
        let second = serde_json::to_vec(&document(&sample())).unwrap();
        assert_eq!(first, second);
    }
}
