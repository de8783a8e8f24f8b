//! `devcontainer-lock.json`: what each OCI and tarball Feature resolved to, in the reference
//! CLI's format.
//!
//! The file sits beside the config: `.devcontainer-lock.json` for a config file whose name
//! starts with `.`, `devcontainer-lock.json` otherwise. It contains one record per Feature key as
//! written (a devcontainer.json key or a `dependsOn` key): the Feature's `version`, what it
//! `resolved` to (`registry/path@sha256:...` or the tarball URL), its `integrity` (the manifest
//! digest for OCI, the archive's sha256 for tarballs) and its `dependsOn` keys. Local Features
//! are not recorded. Keys are sorted with the reference's collation; the JSON has a two-space
//! indent and a trailing newline, so an unchanged lock is rewritten byte for byte.
//!
//! Unlike the reference, which compares the files as re-serialised text, a frozen check
//! compares records, so reordered keys in a hand-edited file are not a difference; and each
//! difference is named.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Error, FeatureInstance, FeatureSource};

/// The lockfile's name beside a config file named `config_file`.
pub fn path_for(config_file: &Path) -> PathBuf {
    let dotted = config_file
        .file_name()
        .is_some_and(|name| name.to_string_lossy().starts_with('.'));
    let name = if dotted {
        ".devcontainer-lock.json"
    } else {
        "devcontainer-lock.json"
    };
    config_file.parent().unwrap_or(Path::new(".")).join(name)
}

/// One Feature's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockedFeature {
    pub version: String,
    pub resolved: String,
    pub integrity: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<Vec<String>>,
}

/// A whole lockfile, keyed by the Feature reference as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lockfile {
    pub features: BTreeMap<String, LockedFeature>,
}

#[derive(Deserialize)]
struct Document {
    #[serde(default)]
    features: BTreeMap<String, LockedFeature>,
}

/// The result of reading a lockfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// No file.
    Missing,
    /// An empty file: the reference's marker asking for a lockfile to be written.
    Empty,
    Lock(Lockfile),
}

impl Found {
    pub fn lock(&self) -> Option<&Lockfile> {
        match self {
            Found::Lock(lock) => Some(lock),
            Found::Missing | Found::Empty => None,
        }
    }
}

/// Reads the lockfile at `path`.
///
/// # Errors
///
/// [`Error::Lockfile`] when the file cannot be read or is not a lockfile.
pub fn read(path: &Path) -> Result<Found, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Missing),
        Err(e) => return Err(Error::io("read", path, e)),
    };
    if text.trim().is_empty() {
        return Ok(Found::Empty);
    }
    let document: Document = serde_json::from_str(&text).map_err(|e| Error::Lockfile {
        path: path.to_path_buf(),
        message: format!("not a lockfile ({e})"),
        hint: Some("delete the file and run `envc lock` to write it again".into()),
    })?;
    Ok(Found::Lock(Lockfile {
        features: document.features,
    }))
}

impl Lockfile {
    /// The records of `instances`: every OCI and tarball Feature, local ones left out. An
    /// instance whose key was already recorded (the same reference with other options) keeps
    /// the last record, as the reference's does.
    pub fn generate(instances: &[FeatureInstance]) -> Lockfile {
        let mut features = BTreeMap::new();
        for instance in instances {
            let feature = &instance.feature;
            let resolved = match &feature.reference.source {
                FeatureSource::Local { .. } => continue,
                FeatureSource::Tarball { url } => url.clone(),
                FeatureSource::Oci(image) => feature.resolved.clone().unwrap_or_else(|| {
                    format!(
                        "{}/{}@{}",
                        image.registry, image.repository, feature.content_digest
                    )
                }),
            };
            let depends_on: Vec<String> = feature
                .metadata
                .depends_on
                .iter()
                .map(|(key, _)| key.clone())
                .collect();
            features.insert(
                feature.reference.written.clone(),
                LockedFeature {
                    version: feature.metadata.version.clone().unwrap_or_default(),
                    resolved,
                    integrity: feature.content_digest.clone(),
                    depends_on: (!depends_on.is_empty()).then_some(depends_on),
                },
            );
        }
        Lockfile { features }
    }

    /// The record for the Feature written as `key`.
    pub fn get(&self, key: &str) -> Option<&LockedFeature> {
        self.features.get(key)
    }

    /// The file's text: keys in the reference's collation order, two-space indent, trailing
    /// newline.
    pub fn to_json(&self) -> String {
        let mut keys: Vec<&String> = self.features.keys().collect();
        keys.sort_by(|a, b| crate::graph::locale_compare(a, b));
        let mut features = serde_json::Map::new();
        for key in keys {
            let value = serde_json::to_value(&self.features[key]).expect("records serialize");
            features.insert(key.clone(), value);
        }
        let document = serde_json::json!({ "features": features });
        let mut text = serde_json::to_string_pretty(&document).expect("lockfiles serialize");
        text.push('\n');
        text
    }

    /// What differs from `locked` (the file) to `self` (what was resolved), one sentence per
    /// Feature and field.
    pub fn differences(&self, locked: &Lockfile) -> Vec<String> {
        let mut out = Vec::new();
        for (key, new) in &self.features {
            let Some(old) = locked.features.get(key) else {
                out.push(format!("`{key}` is not in the lockfile"));
                continue;
            };
            let mut field = |name: &str, old: String, new: String| {
                if old != new {
                    out.push(format!("`{key}`: {name} `{old}` would become `{new}`"));
                }
            };
            field("version", old.version.clone(), new.version.clone());
            field("resolved", old.resolved.clone(), new.resolved.clone());
            field("integrity", old.integrity.clone(), new.integrity.clone());
            let list = |v: &Option<Vec<String>>| v.clone().unwrap_or_default().join(", ");
            field("dependsOn", list(&old.depends_on), list(&new.depends_on));
        }
        for key in locked.features.keys() {
            if !self.features.contains_key(key) {
                out.push(format!("`{key}` is locked but no longer used"));
            }
        }
        out
    }
}

/// The action [`write_or_check`] took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The file already held exactly this lock.
    Unchanged,
    Written,
}

/// Writes `lock` to `path` unless the file already contains it. With `frozen`, fails instead of
/// writing when the file differs.
///
/// # Errors
///
/// [`Error::Frozen`] naming every difference; [`Error::Lockfile`] or [`Error::Io`] when the
/// existing file cannot be read or the new one written.
pub fn write_or_check(path: &Path, lock: &Lockfile, frozen: bool) -> Result<Outcome, Error> {
    let text = lock.to_json();
    if frozen {
        let found = read(path)?;
        let differences = match &found {
            Found::Missing | Found::Empty => vec!["the lockfile does not exist or is empty".into()],
            Found::Lock(locked) => lock.differences(locked),
        };
        if differences.is_empty() {
            return Ok(Outcome::Unchanged);
        }
        return Err(Error::Frozen {
            path: path.to_path_buf(),
            differences,
        });
    }
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(Outcome::Unchanged);
    }
    // Writing replaces whatever is there, a damaged file included: the new content comes from
    // resolving, not from the old file.
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut staged =
        tempfile::NamedTempFile::new_in(dir).map_err(|e| Error::io("create a file in", dir, e))?;
    // The file is committed and read by others: keep an existing file's mode, else 0644.
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions())
        .unwrap_or_else(|_| std::os::unix::fs::PermissionsExt::from_mode(0o644));
    std::fs::set_permissions(staged.path(), mode)
        .map_err(|e| Error::io("set the mode of", staged.path().to_path_buf(), e))?;
    std::io::Write::write_all(&mut staged, text.as_bytes())
        .map_err(|e| Error::io("write", staged.path().to_path_buf(), e))?;
    staged
        .persist(path)
        .map_err(|e| Error::io("write", path, e.error))?;
    Ok(Outcome::Written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(version: &str, digest: char) -> LockedFeature {
        let digest = format!("sha256:{}", digest.to_string().repeat(64));
        LockedFeature {
            version: version.into(),
            resolved: format!("ghcr.io/o/f/x@{digest}"),
            integrity: digest,
            depends_on: None,
        }
    }

    #[test]
    fn written_lockfile_is_readable_by_all_and_replaces_a_damaged_one() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("devcontainer-lock.json");
        std::fs::write(&path, "{\"features\": [1,2").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).unwrap();
        let lock = Lockfile::default();
        assert!(matches!(
            write_or_check(&path, &lock, false),
            Ok(Outcome::Written)
        ));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o664);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), lock.to_json());

        let fresh = dir.path().join(".devcontainer-lock.json");
        write_or_check(&fresh, &lock, false).unwrap();
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
    }

    #[test]
    fn the_name_follows_the_config_file() {
        assert_eq!(
            path_for(Path::new("/w/.devcontainer/devcontainer.json")),
            Path::new("/w/.devcontainer/devcontainer-lock.json")
        );
        assert_eq!(
            path_for(Path::new("/w/.devcontainer.json")),
            Path::new("/w/.devcontainer-lock.json")
        );
    }

    #[test]
    fn json_is_sorted_by_collation_indented_and_ends_with_a_newline() {
        let mut lock = Lockfile::default();
        lock.features
            .insert("ghcr.io/o/f/b_x:1".into(), record("1.0.0", 'b'));
        lock.features
            .insert("ghcr.io/o/f/B:1".into(), record("1.0.0", 'c'));
        let mut with_deps = record("2.1.0", 'a');
        with_deps.depends_on = Some(vec!["ghcr.io/o/f/b_x:1".into()]);
        lock.features.insert("ghcr.io/o/f/a:2".into(), with_deps);
        let text = lock.to_json();
        let a = format!("sha256:{}", "a".repeat(64));
        let expected = format!(
            "{{\n  \"features\": {{\n    \"ghcr.io/o/f/a:2\": {{\n      \"version\": \"2.1.0\",\n      \
             \"resolved\": \"ghcr.io/o/f/x@{a}\",\n      \"integrity\": \"{a}\",\n      \
             \"dependsOn\": [\n        \"ghcr.io/o/f/b_x:1\"\n      ]\n    }},\n"
        );
        assert!(text.starts_with(&expected), "{text}");
        // ICU collation ignores case first and puts `_` before `:`, so `b_x:1` comes before
        // `B:1` (byte order would put `B` first).
        let b = text.find("ghcr.io/o/f/B:1").unwrap();
        let b_x = text.find("\"ghcr.io/o/f/b_x:1\": {").unwrap();
        assert!(b_x < b, "{text}");
        assert!(text.ends_with("}\n"));
        assert!(!text.contains("dependsOn\": null"));
    }

    #[test]
    fn reading_and_writing_round_trips_and_skips_unchanged_files() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("devcontainer-lock.json");
        assert_eq!(read(&path).unwrap(), Found::Missing);
        std::fs::write(&path, "\n").unwrap();
        assert_eq!(read(&path).unwrap(), Found::Empty);

        let mut lock = Lockfile::default();
        lock.features
            .insert("ghcr.io/o/f/x:1".into(), record("1.2.0", 'a'));
        assert_eq!(
            write_or_check(&path, &lock, false).unwrap(),
            Outcome::Written
        );
        assert_eq!(read(&path).unwrap(), Found::Lock(lock.clone()));
        assert_eq!(
            write_or_check(&path, &lock, false).unwrap(),
            Outcome::Unchanged
        );
        assert_eq!(
            write_or_check(&path, &lock, true).unwrap(),
            Outcome::Unchanged
        );

        std::fs::write(&path, "{\"features\": 3}").unwrap();
        let err = read(&path).unwrap_err();
        assert!(err.to_string().contains("not a lockfile"), "{err}");
        assert!(err.is_invalid_input());
    }

    #[test]
    fn frozen_names_every_difference() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("devcontainer-lock.json");
        let mut lock = Lockfile::default();
        lock.features
            .insert("ghcr.io/o/f/x:1".into(), record("1.2.0", 'a'));
        let err = write_or_check(&path, &lock, true).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        assert!(!path.exists());

        let mut old = Lockfile::default();
        old.features
            .insert("ghcr.io/o/f/x:1".into(), record("1.1.0", 'b'));
        old.features
            .insert("ghcr.io/o/f/gone:1".into(), record("1.0.0", 'c'));
        std::fs::write(&path, old.to_json()).unwrap();
        lock.features
            .insert("ghcr.io/o/f/new:1".into(), record("3.0.0", 'd'));
        let err = write_or_check(&path, &lock, true).unwrap_err();
        let text = err.to_string();
        for expected in [
            "`ghcr.io/o/f/x:1`: version `1.1.0` would become `1.2.0`",
            "`ghcr.io/o/f/x:1`: integrity `sha256:bbbb",
            "`ghcr.io/o/f/new:1` is not in the lockfile",
            "`ghcr.io/o/f/gone:1` is locked but no longer used",
        ] {
            assert!(text.contains(expected), "{expected} not in {text}");
        }
        assert!(err.is_invalid_input());
        assert_eq!(
            read(&path).unwrap(),
            Found::Lock(old),
            "frozen never writes"
        );
    }
}
