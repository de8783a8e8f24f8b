//! Verifying an image's signatures and attestations with a public key, as `cosign verify
//! --key` and `cosign verify-attestation --key` do with `--insecure-ignore-tlog=true`.
//!
//! An image is signed when at least one layer of its `.sig` object carries a signature that
//! verifies with the key over its payload, and that payload names the image's manifest digest.
//! Its attestations are valid when, for the SBOM and for the provenance, at least one
//! envelope verifies with the key and its statement's subject is the image's digest.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;

use super::layout::{self, fetch_layers, signature_tag, Layer, Suffix, SIGNATURE_ANNOTATION};
use super::payload::{self, Envelope, IN_TOTO_PAYLOAD_TYPE};
use super::{provenance, sbom, Error, Failure, PublicKey};
use crate::registry::{ImageRef, RegistryClient};

/// The result of a successful verification.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verified {
    /// `registry/repository@sha256:...`.
    pub reference: String,
    pub digest: String,
    /// The key's fingerprint, never the key.
    pub key: String,
    /// How many signatures verified.
    pub signatures: usize,
    pub attestations: Vec<AttestationSummary>,
}

/// One verified attestation.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttestationSummary {
    pub predicate_type: String,
    /// One line about the attestation's content, such as the base image and Feature count.
    pub summary: String,
}

/// Resolves `image` to its manifest digest and checks its signatures, and with
/// `attestations` its SBOM and provenance attestations.
///
/// # Errors
/// [`Error::Verification`] naming what failed; [`Error::Registry`] when the image or its
/// objects cannot be read.
pub async fn verify_image(
    registry: &RegistryClient,
    image: &ImageRef,
    key: &PublicKey,
    attestations: bool,
) -> Result<Verified, Error> {
    let manifest = registry.fetch_manifest(image).await?;
    let pinned = image.with_digest(&manifest.digest);
    let reference = format!("{}@{}", layout::repository_name(image), manifest.digest);
    let fail = |reason: Failure| Error::Verification {
        reference: reference.clone(),
        reason,
    };

    let tag = signature_tag(&manifest.digest, Suffix::Sig);
    let layers = fetch_layers(registry, &pinned, Suffix::Sig)
        .await?
        .filter(|layers| !layers.is_empty())
        .ok_or_else(|| fail(Failure::NoSignature { tag: tag.clone() }))?;
    let signatures = check_signatures(&layers, key, &manifest.digest).map_err(fail)?;

    let mut summaries = Vec::new();
    if attestations {
        let tag = signature_tag(&manifest.digest, Suffix::Att);
        let layers = fetch_layers(registry, &pinned, Suffix::Att)
            .await?
            .filter(|layers| !layers.is_empty())
            .ok_or_else(|| fail(Failure::NoAttestation { tag }))?;
        for (predicate_type, kind) in [
            (sbom::PREDICATE_TYPE, "SBOM (SPDX)"),
            (provenance::PREDICATE_TYPE, "provenance (SLSA)"),
        ] {
            let summary = check_attestations(&layers, key, &manifest.digest, predicate_type)
                .map_err(|details| {
                    fail(Failure::MissingAttestation {
                        kind: kind.to_string(),
                        details,
                    })
                })?;
            summaries.push(AttestationSummary {
                predicate_type: predicate_type.to_string(),
                summary,
            });
        }
    }

    Ok(Verified {
        reference,
        digest: manifest.digest,
        key: key.fingerprint(),
        signatures,
        attestations: summaries,
    })
}

/// The result of checking one signature layer.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Valid,
    DigestMismatch(String),
    Tampered,
    OtherKey,
}

/// Counts the layers whose signature verifies over a payload naming `digest`, or returns why
/// none does.
fn check_signatures(layers: &[Layer], key: &PublicKey, digest: &str) -> Result<usize, Failure> {
    let outcomes: Vec<Outcome> = layers
        .iter()
        .map(|layer| check_signature(layer, key, digest))
        .collect();
    let valid = outcomes.iter().filter(|o| **o == Outcome::Valid).count();
    if valid > 0 {
        return Ok(valid);
    }

    // A signature that verifies but names another digest is the strongest evidence, then a
    // payload that cannot be the one that was signed.
    if let Some(Outcome::DigestMismatch(signed)) = outcomes
        .iter()
        .find(|o| matches!(o, Outcome::DigestMismatch(_)))
    {
        return Err(Failure::DigestMismatch {
            signed: signed.clone(),
            actual: digest.to_string(),
        });
    }
    if let Some(index) = outcomes.iter().position(|o| *o == Outcome::Tampered) {
        return Err(Failure::TamperedPayload { layer: index + 1 });
    }
    Err(Failure::WrongKey {
        details: format!(
            "{} signature(s), none made by key `{}`",
            layers.len(),
            key.fingerprint()
        ),
    })
}

/// Checks one `.sig` layer.
///
/// NOTE: ECDSA cannot tell a changed payload from a signature by another key, because both
/// fail to verify. A failing layer counts as tampered when its payload is not the one a signer
/// writes for this image (unparseable, not in the canonical form, or naming another digest),
/// and as signed by another key otherwise.
fn check_signature(layer: &Layer, key: &PublicKey, digest: &str) -> Outcome {
    let verified = layer
        .annotations
        .get(SIGNATURE_ANNOTATION)
        .and_then(|text| BASE64.decode(text).ok())
        .is_some_and(|signature| key.verify(&layer.blob, &signature));
    let named = payload::signed_digest(&layer.blob);
    match (verified, named) {
        (true, Ok(named)) if named == digest => Outcome::Valid,
        (true, Ok(named)) => Outcome::DigestMismatch(named),
        (true, Err(_)) => Outcome::Tampered,
        (false, Ok(named)) if named == digest && is_canonical(&layer.blob) => Outcome::OtherKey,
        (false, _) => Outcome::Tampered,
    }
}

/// Returns whether a simple-signing payload is byte for byte what cosign and envc write for its
/// fields. Payloads with `optional` annotations are taken as canonical.
fn is_canonical(blob: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<Value>(blob) else {
        return false;
    };
    if !value.get("optional").is_some_and(Value::is_null) {
        return true;
    }
    let reference = value
        .pointer("/critical/identity/docker-reference")
        .and_then(Value::as_str);
    let digest = value
        .pointer("/critical/image/docker-manifest-digest")
        .and_then(Value::as_str);
    match (reference, digest) {
        (Some(reference), Some(digest)) => payload::simple_signing(reference, digest) == blob,
        _ => false,
    }
}

/// Returns the summary of the first layer that contains a valid attestation of
/// `predicate_type` about `digest`, or what was wrong with the layers of that type.
fn check_attestations(
    layers: &[Layer],
    key: &PublicKey,
    digest: &str,
    predicate_type: &str,
) -> Result<String, String> {
    let mut problems = Vec::new();
    for (index, layer) in layers.iter().enumerate() {
        match check_attestation(layer, key, digest, predicate_type) {
            Ok(Some(summary)) => return Ok(summary),
            Ok(None) => {}
            Err(problem) => problems.push(format!("layer {}: {problem}", index + 1)),
        }
    }
    if problems.is_empty() {
        Err(format!("no attestation of type `{predicate_type}`"))
    } else {
        Err(problems.join("; "))
    }
}

/// Checks one `.att` layer: `Ok(None)` when it is of another predicate type.
fn check_attestation(
    layer: &Layer,
    key: &PublicKey,
    digest: &str,
    predicate_type: &str,
) -> Result<Option<String>, String> {
    let envelope: Envelope =
        serde_json::from_slice(&layer.blob).map_err(|e| format!("not a DSSE envelope ({e})"))?;
    let statement: Value = serde_json::from_slice(&envelope.payload_bytes()?)
        .map_err(|e| format!("the statement is not JSON ({e})"))?;
    if statement.get("predicateType").and_then(Value::as_str) != Some(predicate_type) {
        return Ok(None);
    }
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(format!(
            "payload type `{}` is not `{IN_TOTO_PAYLOAD_TYPE}`",
            envelope.payload_type
        ));
    }
    if !envelope.verify(key)? {
        return Err(format!(
            "the envelope does not verify with key `{}` (another key signed it, or it was \
             changed)",
            key.fingerprint()
        ));
    }
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    let subjects = statement
        .get("subject")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !subjects
        .iter()
        .any(|s| s.pointer("/digest/sha256").and_then(Value::as_str) == Some(hex))
    {
        return Err(format!("no subject names digest `{digest}`"));
    }
    let predicate = statement.get("predicate").cloned().unwrap_or_default();
    Ok(Some(summarize(predicate_type, &predicate)))
}

/// Summarizes a verified predicate in one line.
fn summarize(predicate_type: &str, predicate: &Value) -> String {
    let text = |pointer: &str| {
        predicate
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string()
    };
    if predicate_type == sbom::PREDICATE_TYPE {
        let packages = predicate
            .get("packages")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let features: Vec<String> = packages
            .iter()
            .filter(|p| p.get("primaryPackagePurpose").and_then(Value::as_str) == Some("INSTALL"))
            .map(|p| {
                let name = p.get("name").and_then(Value::as_str).unwrap_or("?");
                match p.get("versionInfo").and_then(Value::as_str) {
                    Some(version) if version != "NOASSERTION" => format!("{name} {version}"),
                    _ => name.to_string(),
                }
            })
            .collect();
        format!(
            "SBOM (SPDX): base {} {}, {} Feature(s){}",
            text("/packages/1/name"),
            text("/packages/1/versionInfo"),
            features.len(),
            if features.is_empty() {
                String::new()
            } else {
                format!(": {}", features.join(", "))
            }
        )
    } else {
        format!(
            "provenance (SLSA): builder {}, config {} sha256:{}, engine {}",
            text("/builder/id"),
            text("/invocation/configSource/uri"),
            text("/invocation/configSource/digest/sha256"),
            text("/buildConfig/engine"),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::facts::tests::sample;
    use super::super::KeyPair;
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const OTHER: &str = "sha256:1123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn signature_layer(key: &KeyPair, digest: &str) -> Layer {
        let blob = payload::simple_signing("127.0.0.1:5000/app", digest);
        let signature = BASE64.encode(key.sign(&blob));
        Layer {
            media_type: layout::SIMPLE_SIGNING_MEDIA_TYPE.to_string(),
            digest: String::new(),
            annotations: BTreeMap::from([(SIGNATURE_ANNOTATION.to_string(), signature)]),
            blob,
        }
    }

    fn attestation_layer(key: &KeyPair, predicate_type: &str, predicate: Value) -> Layer {
        let statement = payload::statement("127.0.0.1:5000/app", DIGEST, predicate_type, predicate);
        let envelope = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &statement, key);
        Layer {
            media_type: layout::DSSE_MEDIA_TYPE.to_string(),
            digest: String::new(),
            annotations: BTreeMap::new(),
            blob: serde_json::to_vec(&envelope).unwrap(),
        }
    }

    #[test]
    fn signature_by_key_is_valid() {
        let key = KeyPair::generate();
        let layers = [
            signature_layer(&KeyPair::generate(), DIGEST),
            signature_layer(&key, DIGEST),
        ];
        assert_eq!(check_signatures(&layers, &key.public_key(), DIGEST), Ok(1));
    }

    #[test]
    fn other_key_is_wrong_key() {
        let key = KeyPair::generate();
        let layers = [signature_layer(&KeyPair::generate(), DIGEST)];
        let failure = check_signatures(&layers, &key.public_key(), DIGEST).unwrap_err();
        assert!(matches!(failure, Failure::WrongKey { .. }), "{failure}");
    }

    #[test]
    fn signature_over_other_digest_is_mismatch() {
        let key = KeyPair::generate();
        let layers = [signature_layer(&key, OTHER)];
        let failure = check_signatures(&layers, &key.public_key(), DIGEST).unwrap_err();
        assert_eq!(
            failure,
            Failure::DigestMismatch {
                signed: OTHER.to_string(),
                actual: DIGEST.to_string()
            }
        );
    }

    #[test]
    fn flipped_payload_byte_is_tampered() {
        let key = KeyPair::generate();
        let mut layer = signature_layer(&key, DIGEST);
        let at = layer.blob.len() - 30;
        layer.blob[at] ^= 0x01;
        let failure = check_signatures(&[layer], &key.public_key(), DIGEST).unwrap_err();
        assert_eq!(failure, Failure::TamperedPayload { layer: 1 });
    }

    #[test]
    fn missing_annotation_is_not_valid() {
        let key = KeyPair::generate();
        let mut layer = signature_layer(&key, DIGEST);
        layer.annotations.clear();
        assert!(check_signatures(&[layer], &key.public_key(), DIGEST).is_err());
    }

    #[test]
    fn attestations_verify_and_summarize() {
        let key = KeyPair::generate();
        let facts = sample();
        let layers = [
            attestation_layer(&key, sbom::PREDICATE_TYPE, sbom::document(&facts)),
            attestation_layer(
                &key,
                provenance::PREDICATE_TYPE,
                provenance::predicate(&facts),
            ),
        ];
        let public = key.public_key();
        let summary = check_attestations(&layers, &public, DIGEST, sbom::PREDICATE_TYPE).unwrap();
        assert!(
            summary.contains("2 Feature(s): tool 1.2.0, local-thing"),
            "{summary}"
        );
        let summary =
            check_attestations(&layers, &public, DIGEST, provenance::PREDICATE_TYPE).unwrap();
        assert!(summary.contains("urn:envc:builder:"), "{summary}");
    }

    #[test]
    fn attestation_by_other_key_is_rejected() {
        let key = KeyPair::generate();
        let layers = [attestation_layer(
            &KeyPair::generate(),
            sbom::PREDICATE_TYPE,
            sbom::document(&sample()),
        )];
        let problem = check_attestations(&layers, &key.public_key(), DIGEST, sbom::PREDICATE_TYPE)
            .unwrap_err();
        assert!(problem.contains("does not verify"), "{problem}");
    }

    #[test]
    fn attestation_about_other_digest_is_rejected() {
        let key = KeyPair::generate();
        let layers = [attestation_layer(&key, sbom::PREDICATE_TYPE, Value::Null)];
        let problem = check_attestations(&layers, &key.public_key(), OTHER, sbom::PREDICATE_TYPE)
            .unwrap_err();
        assert!(problem.contains("no subject names digest"), "{problem}");
    }

    #[test]
    fn missing_predicate_type_is_named() {
        let key = KeyPair::generate();
        let layers = [attestation_layer(&key, sbom::PREDICATE_TYPE, Value::Null)];
        let problem = check_attestations(
            &layers,
            &key.public_key(),
            DIGEST,
            provenance::PREDICATE_TYPE,
        )
        .unwrap_err();
        assert!(problem.contains(provenance::PREDICATE_TYPE), "{problem}");
    }
}
