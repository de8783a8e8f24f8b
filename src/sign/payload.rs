//! Signed payloads: cosign's simple-signing payload for image signatures, and in-toto
//! statements in DSSE envelopes for attestations.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::KeyPair;

/// The `critical.type` of a cosign image signature.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";
/// The DSSE `payloadType` of an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The in-toto statement version cosign writes and reads.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v0.1";

/// Makes the simple-signing payload that names the manifest digest of `repository`.
///
/// `repository` goes in `critical.identity.docker-reference`, which verifiers ignore; the
/// digest is what the signature binds.
pub fn simple_signing(repository: &str, digest: &str) -> Vec<u8> {
    let payload = serde_json::json!({
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": digest},
            "type": SIGNATURE_TYPE,
        },
        "optional": null,
    });
    serde_json::to_vec(&payload).expect("the payload serializes")
}

/// Reads the digest a simple-signing payload names, or returns why it names none.
pub fn signed_digest(payload: &[u8]) -> Result<String, String> {
    let value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| format!("the payload is not JSON ({e})"))?;
    let kind = value.pointer("/critical/type").and_then(|v| v.as_str());
    if kind != Some(SIGNATURE_TYPE) {
        return Err(format!(
            "`critical.type` is `{}`, expected `{SIGNATURE_TYPE}`",
            kind.unwrap_or("")
        ));
    }
    value
        .pointer("/critical/image/docker-manifest-digest")
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| "the payload has no `critical.image.docker-manifest-digest`".to_string())
}

/// Makes an in-toto statement about one image manifest.
pub fn statement(
    repository: &str,
    digest: &str,
    predicate_type: &str,
    predicate: serde_json::Value,
) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    let statement = serde_json::json!({
        "_type": STATEMENT_TYPE,
        "predicateType": predicate_type,
        "subject": [{"name": repository, "digest": {"sha256": hex}}],
        "predicate": predicate,
    });
    serde_json::to_vec(&statement).expect("the statement serializes")
}

/// A DSSE envelope.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub payload_type: String,
    /// The payload, base64.
    pub payload: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    #[serde(default)]
    pub keyid: String,
    /// The signature over the pre-authentication encoding, base64.
    pub sig: String,
}

impl Envelope {
    /// Signs `payload` of `payload_type` with `key`.
    pub fn sign(payload_type: &str, payload: &[u8], key: &KeyPair) -> Envelope {
        let signature = key.sign(&pae(payload_type, payload));
        Envelope {
            payload_type: payload_type.to_string(),
            payload: BASE64.encode(payload),
            signatures: vec![EnvelopeSignature {
                keyid: String::new(),
                sig: BASE64.encode(signature),
            }],
        }
    }

    /// Decodes the payload.
    pub fn payload_bytes(&self) -> Result<Vec<u8>, String> {
        BASE64
            .decode(&self.payload)
            .map_err(|e| format!("the envelope payload is not base64 ({e})"))
    }

    /// Returns whether any signature verifies with `key`.
    pub fn verify(&self, key: &super::PublicKey) -> Result<bool, String> {
        let payload = self.payload_bytes()?;
        let message = pae(&self.payload_type, &payload);
        Ok(self.signatures.iter().any(|s| {
            BASE64
                .decode(&s.sig)
                .is_ok_and(|signature| key.verify(&message, &signature))
        }))
    }
}

/// DSSE's pre-authentication encoding: `DSSEv1 <len> <type> <len> <body>`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn simple_signing_names_digest() {
        let payload = simple_signing("127.0.0.1:5000/app", DIGEST);
        let value: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(value["critical"]["image"]["docker-manifest-digest"], DIGEST);
        assert_eq!(value["critical"]["type"], SIGNATURE_TYPE);
        assert_eq!(
            value["critical"]["identity"]["docker-reference"],
            "127.0.0.1:5000/app"
        );
        assert!(value["optional"].is_null());
        assert_eq!(signed_digest(&payload).unwrap(), DIGEST);
    }

    #[test]
    fn payload_of_other_type_names_no_digest() {
        let reason = signed_digest(br#"{"critical":{"type":"x"}}"#).unwrap_err();
        assert!(reason.contains("critical.type"));
    }

    #[test]
    fn pae_matches_dsse_example() {
        // The worked example of the DSSE protocol document.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn envelope_verifies_with_its_key_only() {
        let key = KeyPair::generate();
        let body = statement(
            "r",
            DIGEST,
            "https://spdx.dev/Document",
            serde_json::json!({}),
        );
        let envelope = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, &body, &key);
        assert!(envelope.verify(&key.public_key()).unwrap());
        assert!(!envelope.verify(&KeyPair::generate().public_key()).unwrap());

        let mut tampered = envelope.clone();
        let mut bytes = tampered.payload_bytes().unwrap();
        bytes[10] ^= 1;
        tampered.payload = BASE64.encode(bytes);
        assert!(!tampered.verify(&key.public_key()).unwrap());
    }

    #[test]
    fn statement_subject_is_the_digest_hex() {
        let body = statement("r", DIGEST, "t", serde_json::json!({"a": 1}));
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["_type"], STATEMENT_TYPE);
        assert_eq!(value["subject"][0]["digest"]["sha256"], &DIGEST[7..]);
        assert_eq!(value["predicate"]["a"], 1);
    }
}
