//! Key pairs: generating them, and reading and writing them in cosign's formats.
//!
//! The private key is ECDSA P-256 as PKCS#8 DER, kept in a PEM file either unencrypted
//! (`PRIVATE KEY`) or encrypted as cosign writes it (`ENCRYPTED SIGSTORE PRIVATE KEY`, or the
//! older `ENCRYPTED COSIGN PRIVATE KEY`). The encrypted body is JSON: an scrypt key derivation
//! (N = 32768, r = 8, p = 1, a 32-byte salt) and a NaCl secretbox (XSalsa20-Poly1305, 24-byte
//! nonce) around the DER. The public key is a PKIX `PUBLIC KEY` PEM.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::XSalsa20Poly1305;
use p256::ecdsa::signature::{RandomizedSigner, Verifier};
use p256::ecdsa::{DerSignature, Signature, SigningKey, VerifyingKey};
use p256::pkcs8::der::pem;
use p256::pkcs8::DecodePublicKey;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::Error;

/// The PEM label cosign writes on encrypted private keys.
pub const ENCRYPTED_LABEL: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// The PEM label older cosign versions wrote, still read.
pub const LEGACY_ENCRYPTED_LABEL: &str = "ENCRYPTED COSIGN PRIVATE KEY";
const PLAIN_LABEL: &str = "PRIVATE KEY";
const PUBLIC_LABEL: &str = "PUBLIC KEY";

const SCRYPT_N: u32 = 32768;
const SCRYPT_R: u32 = 8;
const SCRYPT_P: u32 = 1;
const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const KDF_NAME: &str = "scrypt";
const CIPHER_NAME: &str = "nacl/secretbox";

/// A password, wiped from memory when dropped. Never printed: `Debug` shows a placeholder.
pub struct Password(Zeroizing<String>);

impl Password {
    pub fn new(text: String) -> Password {
        Password(Zeroizing::new(text))
    }

    /// Returns whether both passwords are the same text.
    pub fn same_as(&self, other: &Password) -> bool {
        self.0.as_str() == other.0.as_str()
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A source of passwords for keys that need one. The CLI reads `ENVC_PASSWORD` or prompts on
/// the terminal, and tests pass a fixed one.
pub trait PasswordSource {
    /// Returns the password for `key`. With `confirm`, for a new key, the source requests it twice.
    ///
    /// # Errors
    /// [`Error::NoPassword`] when no password can be had.
    fn password(&self, key: &Path, confirm: bool) -> Result<Password, Error>;
}

/// A password known up front.
pub struct FixedPassword(pub String);

impl PasswordSource for FixedPassword {
    fn password(&self, _key: &Path, _confirm: bool) -> Result<Password, Error> {
        Ok(Password::new(self.0.clone()))
    }
}

/// An ECDSA P-256 private key, able to sign. `Debug` never shows the key.
pub struct KeyPair {
    signing: SigningKey,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &self.public_key().fingerprint())
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// Generates a new key from the operating system's random source.
    pub fn generate() -> KeyPair {
        let mut seed = Zeroizing::new([0u8; 32]);
        loop {
            rand::rng().fill_bytes(seed.as_mut());
            // Fewer than one seed in 2^32 is out of the curve's range, so this loop ends.
            if let Ok(signing) = SigningKey::from_slice(seed.as_ref()) {
                return KeyPair { signing };
            }
        }
    }

    /// Returns the matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            verifying: *self.signing.verifying_key(),
        }
    }

    /// Signs `message` (SHA-256, then ECDSA with fresh randomness mixed into the nonce) and
    /// returns the ASN.1 DER signature.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let signature: DerSignature = self.signing.sign_with_rng(&mut rand::rng(), message);
        signature.as_bytes().to_vec()
    }

    /// Reads a private key file: cosign's encrypted PEM (asking `passwords` for the password)
    /// or an unencrypted PKCS#8 PEM.
    ///
    /// # Errors
    /// [`Error::ReadKey`], [`Error::InvalidKey`], [`Error::WrongPassword`], or
    /// [`Error::NoPassword`].
    pub fn read(path: &Path, passwords: &dyn PasswordSource) -> Result<KeyPair, Error> {
        let text = Zeroizing::new(std::fs::read(path).map_err(|source| Error::ReadKey {
            path: path.to_path_buf(),
            source,
        })?);
        let invalid = |reason: String| Error::InvalidKey {
            path: path.to_path_buf(),
            reason,
        };
        let (label, body) =
            pem::decode_vec(&text).map_err(|e| invalid(format!("not a PEM file ({e})")))?;
        let body = Zeroizing::new(body);
        let der = match label {
            ENCRYPTED_LABEL | LEGACY_ENCRYPTED_LABEL => {
                let password = passwords.password(path, false)?;
                decrypt(&body, &password, path)?
            }
            PLAIN_LABEL => body,
            PUBLIC_LABEL => {
                return Err(invalid(
                    "it is a public key, and signing needs the private key".to_string(),
                ))
            }
            other => {
                return Err(invalid(format!(
                    "PEM type `{other}` is not supported (expected `{ENCRYPTED_LABEL}` or \
                     `{PLAIN_LABEL}`)"
                )))
            }
        };
        let signing = SigningKey::from_pkcs8_der(&der)
            .map_err(|_| invalid("the key is not an ECDSA P-256 PKCS#8 private key".to_string()))?;
        Ok(KeyPair { signing })
    }

    /// Encodes the private key as cosign's encrypted PEM, under `password`.
    ///
    /// # Errors
    /// [`Error::Crypto`] when encoding fails, which does not happen for a valid key.
    pub fn to_encrypted_pem(&self, password: &Password) -> Result<Zeroizing<String>, Error> {
        let der = self
            .signing
            .to_pkcs8_der()
            .map_err(|e| Error::Crypto(format!("failed to encode the private key: {e}")))?;
        let body = encrypt(der.as_bytes(), password)?;
        pem::encode_string(ENCRYPTED_LABEL, LineEnding::LF, &body)
            .map(Zeroizing::new)
            .map_err(|e| Error::Crypto(format!("failed to encode PEM: {e}")))
    }

    /// Encodes the private key as an unencrypted PKCS#8 PEM.
    ///
    /// # Errors
    /// [`Error::Crypto`] when encoding fails, which does not happen for a valid key.
    pub fn to_plain_pem(&self) -> Result<Zeroizing<String>, Error> {
        self.signing
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| Error::Crypto(format!("failed to encode the private key: {e}")))
    }
}

/// An ECDSA P-256 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    verifying: VerifyingKey,
}

impl PublicKey {
    /// Reads a PKIX `PUBLIC KEY` PEM file.
    ///
    /// # Errors
    /// [`Error::ReadKey`] or [`Error::InvalidKey`].
    pub fn read(path: &Path) -> Result<PublicKey, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadKey {
            path: path.to_path_buf(),
            source,
        })?;
        PublicKey::from_pem(&text).map_err(|reason| Error::InvalidKey {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses a PKIX `PUBLIC KEY` PEM; the error is the reason.
    pub fn from_pem(text: &str) -> Result<PublicKey, String> {
        match pem::decode_label(text.as_bytes()) {
            Ok(PUBLIC_LABEL) => {}
            Ok(ENCRYPTED_LABEL | LEGACY_ENCRYPTED_LABEL | PLAIN_LABEL) => {
                return Err("it is a private key; pass the public key (`.pub`)".to_string())
            }
            Ok(other) => return Err(format!("PEM type `{other}` is not `{PUBLIC_LABEL}`")),
            Err(e) => return Err(format!("not a PEM file ({e})")),
        }
        VerifyingKey::from_public_key_pem(text)
            .map(|verifying| PublicKey { verifying })
            .map_err(|_| "the key is not an ECDSA P-256 public key".to_string())
    }

    /// Encodes the key as a PKIX `PUBLIC KEY` PEM.
    pub fn to_pem(&self) -> String {
        self.verifying
            .to_public_key_pem(LineEnding::LF)
            .expect("a valid P-256 public key encodes")
    }

    /// Checks an ASN.1 DER ECDSA signature over `message` (hashed with SHA-256).
    pub fn verify(&self, message: &[u8], der_signature: &[u8]) -> bool {
        let Ok(signature) = Signature::from_der(der_signature) else {
            return false;
        };
        self.verifying.verify(message, &signature).is_ok()
    }

    /// Returns a short identifier for messages: `sha256:` and the first 16 hex digits of the
    /// SHA-256 of the key's DER encoding.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest as _, Sha256};
        let der = self
            .verifying
            .to_public_key_der()
            .expect("a valid P-256 public key encodes");
        let hex = hex::encode(Sha256::digest(der.as_bytes()));
        format!("sha256:{}", &hex[..16])
    }
}

/// Writes a new key pair as `<prefix>.key` (encrypted, mode 0600) and `<prefix>.pub`, and
/// returns both paths. Existing files are not overwritten.
///
/// # Errors
/// [`Error::KeyExists`] or [`Error::WriteKey`]; as [`KeyPair::to_encrypted_pem`].
pub fn write_key_pair(
    key: &KeyPair,
    prefix: &Path,
    password: &Password,
) -> Result<(PathBuf, PathBuf), Error> {
    let private_path = with_suffix(prefix, "key");
    let public_path = with_suffix(prefix, "pub");
    for path in [&private_path, &public_path] {
        if path.exists() {
            return Err(Error::KeyExists { path: path.clone() });
        }
    }
    let private_pem = key.to_encrypted_pem(password)?;
    write_new(&private_path, private_pem.as_bytes(), 0o600)?;
    write_new(&public_path, key.public_key().to_pem().as_bytes(), 0o644)?;
    Ok((private_path, public_path))
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let write_error = |source| Error::WriteKey {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(write_error)?;
    file.write_all(bytes).map_err(write_error)
}

/// The JSON body of an encrypted private key.
#[derive(Serialize, Deserialize)]
struct EncryptedKey {
    kdf: Kdf,
    cipher: Cipher,
    #[serde(with = "base64_field")]
    ciphertext: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    #[serde(with = "base64_field")]
    salt: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u32,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    #[serde(with = "base64_field")]
    nonce: Vec<u8>,
}

mod base64_field {
    use super::BASE64;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&BASE64.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        BASE64.decode(text).map_err(serde::de::Error::custom)
    }
}

fn derive_key(
    password: &Password,
    salt: &[u8],
    params: &ScryptParams,
) -> Result<Zeroizing<[u8; 32]>, String> {
    if !params.n.is_power_of_two() || params.n < 2 {
        return Err(format!("scrypt N `{}` is not a power of two", params.n));
    }
    // Parameters beyond cosign's own would let a crafted file use any amount of memory.
    if params.n > 65536 || params.r > 8 || params.p > 1 {
        return Err(format!(
            "scrypt parameters N={} r={} p={} are larger than cosign writes",
            params.n, params.r, params.p
        ));
    }
    let log_n = params.n.trailing_zeros() as u8;
    let scrypt_params = scrypt::Params::new(log_n, params.r, params.p)
        .map_err(|e| format!("invalid scrypt parameters: {e}"))?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(password.bytes(), salt, &scrypt_params, key.as_mut())
        .map_err(|e| format!("scrypt failed: {e}"))?;
    Ok(key)
}

fn encrypt(plaintext: &[u8], password: &Password) -> Result<Vec<u8>, Error> {
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut salt);
    rand::rng().fill_bytes(&mut nonce);
    let params = ScryptParams {
        n: SCRYPT_N,
        r: SCRYPT_R,
        p: SCRYPT_P,
    };
    let key = derive_key(password, &salt, &params).map_err(Error::Crypto)?;
    let cipher = XSalsa20Poly1305::new(key.as_ref().into());
    let ciphertext = cipher
        .encrypt(nonce.as_ref().into(), plaintext)
        .map_err(|_| Error::Crypto("secretbox encryption failed".to_string()))?;
    let body = EncryptedKey {
        kdf: Kdf {
            name: KDF_NAME.to_string(),
            params,
            salt: salt.to_vec(),
        },
        cipher: Cipher {
            name: CIPHER_NAME.to_string(),
            nonce: nonce.to_vec(),
        },
        ciphertext,
    };
    Ok(serde_json::to_vec(&body).expect("the key body serializes"))
}

fn decrypt(body: &[u8], password: &Password, path: &Path) -> Result<Zeroizing<Vec<u8>>, Error> {
    let invalid = |reason: String| Error::InvalidKey {
        path: path.to_path_buf(),
        reason,
    };
    let body: EncryptedKey = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("the encrypted key is not cosign's JSON ({e})")))?;
    if body.kdf.name != KDF_NAME {
        return Err(invalid(format!(
            "key derivation `{}` is not supported (expected `{KDF_NAME}`)",
            body.kdf.name
        )));
    }
    if body.cipher.name != CIPHER_NAME {
        return Err(invalid(format!(
            "cipher `{}` is not supported (expected `{CIPHER_NAME}`)",
            body.cipher.name
        )));
    }
    if body.cipher.nonce.len() != NONCE_LEN {
        return Err(invalid(format!(
            "the nonce has {} bytes, expected {NONCE_LEN}",
            body.cipher.nonce.len()
        )));
    }
    let key = derive_key(password, &body.kdf.salt, &body.kdf.params).map_err(invalid)?;
    let cipher = XSalsa20Poly1305::new(key.as_ref().into());
    cipher
        .decrypt(
            body.cipher.nonce.as_slice().into(),
            body.ciphertext.as_slice(),
        )
        .map(Zeroizing::new)
        .map_err(|_| Error::WrongPassword {
            path: path.to_path_buf(),
        })
}

/// Returns whether `der` is a PKCS#8 key on the P-256 curve (`prime256v1`).
#[cfg(test)]
fn is_p256_pkcs8(der: &[u8]) -> bool {
    const P256_OID: p256::pkcs8::ObjectIdentifier =
        p256::pkcs8::ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
    p256::pkcs8::PrivateKeyInfoRef::try_from(der)
        .ok()
        .and_then(|info| info.algorithm.parameters_oid().ok())
        == Some(P256_OID)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn temp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn encrypted_key_round_trips() {
        let dir = temp();
        let key = KeyPair::generate();
        let password = Password::new("correct horse".to_string());
        let (private, public) = write_key_pair(&key, &dir.path().join("k"), &password).unwrap();

        let read = KeyPair::read(&private, &FixedPassword("correct horse".into())).unwrap();
        assert_eq!(read.public_key(), key.public_key());
        assert_eq!(PublicKey::read(&public).unwrap(), key.public_key());
    }

    #[test]
    fn encrypted_pem_has_cosign_label_and_json() {
        let key = KeyPair::generate();
        let pem_text = key.to_encrypted_pem(&Password::new("pw".into())).unwrap();
        let (label, body) = pem::decode_vec(pem_text.as_bytes()).unwrap();
        assert_eq!(label, ENCRYPTED_LABEL);

        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["kdf"]["name"], "scrypt");
        assert_eq!(json["kdf"]["params"]["N"], 32768);
        assert_eq!(json["kdf"]["params"]["r"], 8);
        assert_eq!(json["kdf"]["params"]["p"], 1);
        assert_eq!(json["cipher"]["name"], "nacl/secretbox");
        let salt = BASE64
            .decode(json["kdf"]["salt"].as_str().unwrap())
            .unwrap();
        assert_eq!(salt.len(), 32);
        let nonce = BASE64
            .decode(json["cipher"]["nonce"].as_str().unwrap())
            .unwrap();
        assert_eq!(nonce.len(), 24);
    }

    #[test]
    fn decrypted_body_is_p256_pkcs8() {
        let key = KeyPair::generate();
        let password = Password::new(String::new());
        let pem_text = key.to_encrypted_pem(&password).unwrap();
        let (_, body) = pem::decode_vec(pem_text.as_bytes()).unwrap();
        let der = decrypt(&body, &password, Path::new("k.key")).unwrap();
        assert!(is_p256_pkcs8(&der));
    }

    #[test]
    fn wrong_password_is_named() {
        let dir = temp();
        let key = KeyPair::generate();
        let (private, _) =
            write_key_pair(&key, &dir.path().join("k"), &Password::new("right".into())).unwrap();
        let error = KeyPair::read(&private, &FixedPassword("wrong".into())).unwrap_err();
        assert!(matches!(error, Error::WrongPassword { .. }));
        assert!(error.to_string().contains("wrong password"));
        assert!(!error.to_string().contains("right"));
    }

    #[test]
    fn plain_pkcs8_key_is_read() {
        let dir = temp();
        let key = KeyPair::generate();
        let path = dir.path().join("plain.pem");
        std::fs::write(&path, key.to_plain_pem().unwrap().as_bytes()).unwrap();
        let read = KeyPair::read(&path, &FixedPassword("unused".into())).unwrap();
        assert_eq!(read.public_key(), key.public_key());
    }

    #[test]
    fn public_key_as_signing_key_is_rejected() {
        let dir = temp();
        let path = dir.path().join("k.pub");
        std::fs::write(&path, KeyPair::generate().public_key().to_pem()).unwrap();
        let error = KeyPair::read(&path, &FixedPassword(String::new())).unwrap_err();
        assert!(error.to_string().contains("public key"), "{error}");
    }

    #[test]
    fn private_key_as_public_key_is_rejected() {
        let key = KeyPair::generate();
        let reason = PublicKey::from_pem(&key.to_plain_pem().unwrap()).unwrap_err();
        assert!(reason.contains("private key"), "{reason}");
    }

    #[test]
    fn signature_verifies_only_its_message() {
        let key = KeyPair::generate();
        let signature = key.sign(b"payload");
        assert!(key.public_key().verify(b"payload", &signature));
        assert!(!key.public_key().verify(b"payloae", &signature));
        assert!(!KeyPair::generate()
            .public_key()
            .verify(b"payload", &signature));
    }

    #[test]
    fn existing_files_are_kept() {
        let dir = temp();
        let prefix = dir.path().join("k");
        std::fs::write(with_suffix(&prefix, "pub"), "keep").unwrap();
        let error =
            write_key_pair(&KeyPair::generate(), &prefix, &Password::new("x".into())).unwrap_err();
        assert!(matches!(error, Error::KeyExists { .. }));
        assert_eq!(
            std::fs::read_to_string(with_suffix(&prefix, "pub")).unwrap(),
            "keep"
        );
        assert!(!with_suffix(&prefix, "key").exists());
    }

    #[test]
    fn debug_output_hides_secrets() {
        let password = Password::new("hunter2".into());
        assert!(!format!("{password:?}").contains("hunter2"));
        let key = KeyPair::generate();
        let debug_text = format!("{key:?}");
        let plain = key.to_plain_pem().unwrap();
        let body = plain.lines().nth(1).unwrap();
        assert!(!debug_text.contains(body));
    }

    #[test]
    fn oversized_scrypt_parameters_are_rejected() {
        let params = ScryptParams {
            n: 1 << 20,
            r: 8,
            p: 1,
        };
        let reason = derive_key(&Password::new(String::new()), &[0; 32], &params).unwrap_err();
        assert!(reason.contains("larger than cosign writes"));
    }
}
