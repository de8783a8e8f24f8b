//! Signatures, SBOMs and provenance for pushed images, in the layout cosign reads and writes.
//!
//! This module owns:
//! - key pairs (`keys`): ECDSA P-256, the private key in cosign's encrypted PEM or as an
//!   unencrypted PKCS#8 PEM, the public key as a PKIX PEM;
//! - signing (`payload`, `layout`): a simple-signing payload that names the manifest digest (never
//!   a tag), signed and pushed as one layer of the manifest tagged `sha256-<hex>.sig` in the
//!   image's repository, with the base64 signature in the layer's
//!   `dev.cosignproject.cosign/signature` annotation. A new signature is appended as a new
//!   layer, keeping the ones already there;
//! - attestations (`sbom`, `provenance`): an SPDX 2.3 document and an SLSA v0.2 provenance
//!   statement, each an in-toto statement about the manifest digest, signed as a DSSE envelope
//!   and pushed as one layer of the manifest tagged `sha256-<hex>.att`;
//! - verification (`verify`): the same checks `cosign verify --key` and
//!   `cosign verify-attestation --key` make with `--insecure-ignore-tlog=true`.
//!
//! It leaves out transparency logs and certificates. Keyless signing would add an option
//! `--keyless` to `sign` and `build`. With it, envc would get an OIDC token (from the CI's
//! identity provider, or a browser flow) and make a short-lived key pair. It would then request
//! from Fulcio a certificate that binds the public key to the token's identity, sign as here, and
//! upload the signature to Rekor. The certificate, its chain and Rekor's signed entry timestamp
//! would go in the layer annotations `dev.sigstore.cosign/certificate`,
//! `dev.sigstore.cosign/chain` and `dev.sigstore.cosign/bundle`. `verify` would then take
//! `--certificate-identity` and `--certificate-oidc-issuer`, and check the chain against
//! Sigstore's trust root and the bundle against Rekor's key. Each step needs the public Sigstore
//! services, so none of it is built.
//!
//! Nothing here prints. Passwords and private keys are wiped from memory when dropped, and no
//! error or `Debug` output contains them.

mod facts;
pub mod keys;
mod layout;
pub mod payload;
pub mod provenance;
pub mod sbom;
mod verify;

use std::path::PathBuf;

pub use facts::{BuildFacts, FeatureFacts};
pub use keys::{FixedPassword, KeyPair, Password, PasswordSource, PublicKey};
pub use layout::{
    attach_attestation, attach_signature, fetch_layers, signature_tag, Attached, Layer, Suffix,
};
pub use verify::{verify_image, AttestationSummary, Verified};

/// Errors in keys, signing and verification.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read key `{}`", path.display())]
    ReadKey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write key `{}`", path.display())]
    WriteKey {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key file `{}` already exists", path.display())]
    KeyExists { path: PathBuf },
    #[error("invalid key `{}`: {reason}", path.display())]
    InvalidKey { path: PathBuf, reason: String },
    #[error("failed to decrypt key `{}`: wrong password", path.display())]
    WrongPassword { path: PathBuf },
    #[error("no password for key `{}`: {reason}", path.display())]
    NoPassword { path: PathBuf, reason: String },
    #[error("{0}")]
    Crypto(String),
    #[error("`{reference}` does not name a manifest digest")]
    NotPinned { reference: String },
    #[error("invalid signature object `{reference}`: {reason}")]
    InvalidObject { reference: String, reason: String },
    #[error("failed to read config file `{}`", path.display())]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write SBOM `{}`", path.display())]
    WriteSbom {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Registry(#[from] crate::registry::Error),
    #[error("verification of `{reference}` failed: {reason}")]
    Verification { reference: String, reason: Failure },
}

/// The reason a verification failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("no signature found (no `{tag}` tag)")]
    NoSignature { tag: String },
    #[error("no attestation found (no `{tag}` tag)")]
    NoAttestation { tag: String },
    #[error("no signature matches the key ({details})")]
    WrongKey { details: String },
    #[error("the signed payload names digest `{signed}`, but the image is `{actual}`")]
    DigestMismatch { signed: String, actual: String },
    #[error("the payload of layer {layer} does not match its signature (tampered payload)")]
    TamperedPayload { layer: usize },
    #[error("no valid {kind} attestation ({details})")]
    MissingAttestation { kind: String, details: String },
}

impl Error {
    pub fn is_invalid_input(&self) -> bool {
        match self {
            Error::KeyExists { .. }
            | Error::InvalidKey { .. }
            | Error::NotPinned { .. }
            | Error::WrongPassword { .. }
            | Error::NoPassword { .. } => true,
            Error::Registry(e) => e.is_invalid_input(),
            _ => false,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            Error::ReadKey { .. } => Some("check the key path".to_string()),
            Error::KeyExists { .. } => Some(
                "move the old key pair away, or pass another `--output-key-prefix`".to_string(),
            ),
            Error::InvalidKey { .. } => Some(
                "pass an ECDSA P-256 key made by `envc keygen` or `cosign generate-key-pair`, or \
                 an unencrypted PKCS#8 PEM"
                    .to_string(),
            ),
            Error::WrongPassword { .. } => Some(
                "set `ENVC_PASSWORD` to the password the key was made with, or type it at the \
                 prompt"
                    .to_string(),
            ),
            Error::NoPassword { .. } => Some(
                "set `ENVC_PASSWORD` (it may be empty), or run on a terminal to be asked"
                    .to_string(),
            ),
            Error::NotPinned { .. } => Some(
                "sign a digest, not a tag: write `REGISTRY/REPOSITORY@sha256:...` (`envc build \
                 --json` prints the digest)"
                    .to_string(),
            ),
            Error::Registry(e) => e.hint(),
            Error::Verification { reason, .. } => Some(match reason {
                Failure::NoSignature { .. } => {
                    "sign the image with `envc sign --key KEY REF@DIGEST`".to_string()
                }
                Failure::NoAttestation { .. } | Failure::MissingAttestation { .. } => {
                    "attestations are attached by `envc build --push REF --sign-key KEY`"
                        .to_string()
                }
                Failure::WrongKey { .. } => {
                    "check that `--key` is the public key of the key that signed".to_string()
                }
                Failure::DigestMismatch { .. } | Failure::TamperedPayload { .. } => {
                    "do not trust this image; sign it again from a trusted build".to_string()
                }
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_password_is_invalid_input_like_corrupt_key() {
        let path = PathBuf::from("cosign.key");
        let wrong = Error::WrongPassword { path: path.clone() };
        let corrupt = Error::InvalidKey {
            path,
            reason: "not a PEM file".to_string(),
        };
        assert!(wrong.is_invalid_input());
        assert!(corrupt.is_invalid_input());

        let exit = |error| crate::error::Error::Sign(error).exit_kind().code();
        assert_eq!(exit(wrong), 2);
        assert_eq!(exit(corrupt), 2);
    }

    #[test]
    fn failed_verification_is_not_invalid_input() {
        let error = Error::Verification {
            reference: "127.0.0.1:5000/app@sha256:00".to_string(),
            reason: Failure::NoSignature {
                tag: "sha256-00.sig".to_string(),
            },
        };
        assert!(!error.is_invalid_input());
    }
}
