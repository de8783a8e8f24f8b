//! Turning the `oci` exporter's tar into an OCI image layout folder with one image manifest.
//!
//! The tar contains `oci-layout`, `index.json` and `blobs/sha256/<hex>`. Only those names are
//! written; each blob is checked against its name while it is copied, and any other entry
//! (a link, a device, a path outside the layout) fails the unpack. When `index.json` points at
//! an image index, it is rewritten to point at this platform's manifest, so that the layout
//! holds exactly one image, as an `oci:DIR` base must.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path};

use sha2::{Digest as _, Sha256};

use super::Error;
use crate::plan::host_architecture;

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// Unpacks the layout tar at `tar` into the folder `dest`, which must exist and be empty, and
/// returns the image's manifest descriptor as written to `index.json`.
///
/// # Errors
///
/// [`Error::Export`] when the tar is not a layout envc can use, [`Error::Io`] when reading
/// or writing fails.
pub fn unpack_layout(tar: &Path, dest: &Path) -> Result<serde_json::Value, Error> {
    let file = fs::File::open(tar).map_err(Error::io("open", tar))?;
    let mut archive = tar::Archive::new(io::BufReader::new(file));
    let entries = archive.entries().map_err(Error::io("read", tar))?;
    for entry in entries {
        let mut entry = entry.map_err(Error::io("read", tar))?;
        let path = entry.path().map_err(Error::io("read", tar))?.into_owned();
        let name = relative_name(&path)?;
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            if matches!(name.as_str(), "blobs" | "blobs/sha256") {
                let dir = dest.join(&name);
                fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
            }
            continue;
        }
        if !kind.is_file() {
            return Err(Error::export(format!(
                "contains `{name}`, which is not a regular file"
            )));
        }
        match name.as_str() {
            "oci-layout" | "index.json" => copy_entry(&mut entry, &dest.join(&name), None)?,
            _ => {
                let Some(hex) = name.strip_prefix("blobs/sha256/") else {
                    tracing::debug!(%name, "skipped a file of the exported layout");
                    continue;
                };
                if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                    return Err(Error::export(format!(
                        "contains an invalid blob name `{name}`"
                    )));
                }
                let blobs = dest.join("blobs/sha256");
                fs::create_dir_all(&blobs).map_err(Error::io("create", &blobs))?;
                copy_entry(&mut entry, &blobs.join(hex), Some(hex))?;
            }
        }
    }

    for required in ["oci-layout", "index.json"] {
        if !dest.join(required).is_file() {
            return Err(Error::export(format!("has no `{required}`")));
        }
    }
    single_manifest(dest)
}

/// Returns the entry's path relative to the layout root, `/`-separated. `..` and absolute
/// paths are rejected.
fn relative_name(path: &Path) -> Result<String, Error> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => match part.to_str() {
                Some(part) => parts.push(part),
                None => return Err(Error::export("contains a file name that is not UTF-8")),
            },
            Component::CurDir => {}
            _ => {
                return Err(Error::export(format!(
                    "contains `{}`, a path outside the layout",
                    path.display()
                )))
            }
        }
    }
    Ok(parts.join("/"))
}

/// Copies one entry to `dest`; with `hex`, checks that the bytes hash to it.
fn copy_entry(entry: &mut impl Read, dest: &Path, hex: Option<&str>) -> Result<(), Error> {
    let mut file = fs::File::create(dest).map_err(Error::io("create", dest))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let n = entry.read(&mut buffer).map_err(Error::io("read", dest))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        file.write_all(&buffer[..n])
            .map_err(Error::io("write", dest))?;
    }
    file.sync_all().map_err(Error::io("write", dest))?;
    if let Some(hex) = hex {
        let actual = hex::encode(hasher.finalize());
        if actual != hex {
            return Err(Error::export(format!(
                "contains blob `sha256:{hex}` with the wrong content (digest `sha256:{actual}`)"
            )));
        }
    }
    Ok(())
}

/// Reads `index.json` and makes it point at exactly one image manifest, choosing this
/// platform's from an image index. Returns that manifest's descriptor.
fn single_manifest(dest: &Path) -> Result<serde_json::Value, Error> {
    let index_path = dest.join("index.json");
    let index = read_json(&index_path)?;
    let manifests = index
        .get("manifests")
        .and_then(|m| m.as_array())
        .cloned()
        .unwrap_or_default();
    let [descriptor] = manifests.as_slice() else {
        return Err(Error::export(format!(
            "lists {} images in `index.json`, not one",
            manifests.len()
        )));
    };
    let media_type = descriptor
        .get("mediaType")
        .and_then(|t| t.as_str())
        .unwrap_or_default();
    if !INDEX_TYPES.contains(&media_type) {
        return Ok(descriptor.clone());
    }

    let digest = descriptor_digest(descriptor)?;
    let nested = read_json(&blob_path(dest, &digest)?)?;
    let arch = host_architecture();
    let chosen = nested
        .get("manifests")
        .and_then(|m| m.as_array())
        .and_then(|entries| {
            entries.iter().find(|entry| {
                let platform = entry.get("platform");
                let field = |key: &str| platform.and_then(|p| p.get(key)).and_then(|v| v.as_str());
                field("os") == Some("linux") && field("architecture") == Some(arch)
            })
        })
        .cloned()
        .ok_or_else(|| Error::export(format!("has no image for linux/{arch}")))?;

    let rewritten = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [chosen],
    });
    let bytes = serde_json::to_vec(&rewritten).map_err(|e| Error::export(e.to_string()))?;
    fs::write(&index_path, bytes).map_err(Error::io("write", &index_path))?;
    Ok(chosen)
}

fn descriptor_digest(descriptor: &serde_json::Value) -> Result<String, Error> {
    descriptor
        .get("digest")
        .and_then(|d| d.as_str())
        .map(str::to_owned)
        .ok_or_else(|| Error::export("has a descriptor without a digest"))
}

fn blob_path(dest: &Path, digest: &str) -> Result<std::path::PathBuf, Error> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| Error::export(format!("names blob `{digest}`")))?;
    Ok(dest.join("blobs/sha256").join(hex))
}

fn read_json(path: &Path) -> Result<serde_json::Value, Error> {
    let bytes = fs::read(path).map_err(Error::io("read", path))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::export(format!("has `{}` that is not JSON: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    /// Writes a tar with the given `(path, bytes)` regular files.
    fn tar_of(files: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut builder = tar::Builder::new(file.reopen().unwrap());
        for (path, bytes) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            // `append_data` rejects `..`, so write the name into the header directly.
            let name = header.as_old_mut().name.as_mut();
            name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_cksum();
            builder.append(&header, *bytes).unwrap();
        }
        builder.finish().unwrap();
        file
    }

    fn index_of(descriptor: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [descriptor]}))
            .unwrap()
    }

    const LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

    #[test]
    fn single_manifest_unpacked_as_is() {
        let manifest = br#"{"schemaVersion":2,"config":{}}"#;
        let descriptor = serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{}", sha(manifest)),
            "size": manifest.len(),
        });
        let index = index_of(descriptor.clone());
        let blob = format!("blobs/sha256/{}", sha(manifest));
        let tar = tar_of(&[
            ("oci-layout", LAYOUT),
            ("index.json", &index),
            (&blob, manifest),
        ]);
        let dest = tempfile::tempdir().unwrap();

        let found = unpack_layout(tar.path(), dest.path()).unwrap();
        assert_eq!(found, descriptor);
        assert_eq!(std::fs::read(dest.path().join(&blob)).unwrap(), manifest);
        assert_eq!(
            std::fs::read(dest.path().join("index.json")).unwrap(),
            index
        );
    }

    #[test]
    fn index_narrowed_to_platform() {
        let arch = host_architecture();
        let chosen = serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{}", "b".repeat(64)),
            "size": 10,
            "platform": {"os": "linux", "architecture": arch},
        });
        let nested = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [
                {"digest": format!("sha256:{}", "a".repeat(64)), "size": 1,
                 "platform": {"os": "linux", "architecture": "other"}},
                chosen,
            ],
        }))
        .unwrap();
        let index = index_of(serde_json::json!({
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{}", sha(&nested)),
            "size": nested.len(),
        }));
        let blob = format!("blobs/sha256/{}", sha(&nested));
        let tar = tar_of(&[
            ("oci-layout", LAYOUT),
            ("index.json", &index),
            (&blob, &nested),
        ]);
        let dest = tempfile::tempdir().unwrap();

        assert_eq!(unpack_layout(tar.path(), dest.path()).unwrap(), chosen);
        let rewritten: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dest.path().join("index.json")).unwrap())
                .unwrap();
        assert_eq!(rewritten["manifests"], serde_json::json!([chosen]));
    }

    #[test]
    fn unusable_tars_rejected() {
        let wrong = format!("blobs/sha256/{}", "c".repeat(64));
        type Files<'a> = Vec<(&'a str, &'a [u8])>;
        let cases: [(Files, &str); 5] = [
            (vec![("oci-layout", LAYOUT)], "has no `index.json`"),
            (vec![("../escape", b"x")], "outside the layout"),
            (vec![(wrong.as_str(), b"not c")], "wrong content"),
            (vec![("blobs/sha256/short", b"x")], "invalid blob name"),
            (
                vec![
                    ("oci-layout", LAYOUT),
                    ("index.json", br#"{"manifests":[]}"#),
                ],
                "lists 0 images",
            ),
        ];
        for (files, reason) in cases {
            let tar = tar_of(&files);
            let dest = tempfile::tempdir().unwrap();
            let err = unpack_layout(tar.path(), dest.path()).unwrap_err();
            assert!(matches!(err, Error::Export { .. }), "{err:?}");
            assert!(err.to_string().contains(reason), "{err}");
        }
    }
}
