//! Records of what a step cache key or a plan digest produced, one small JSON file each.

use std::path::{Path, PathBuf};

use super::{Error, Store};
use crate::image::Layer;

/// What one build step produced: its layer, stored under the step's cache key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StepRecord {
    pub layer: Layer,
}

/// What a whole plan produced: the manifest digest, stored under the plan digest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PlanRecord {
    pub manifest_digest: String,
}

impl Store {
    /// The record of the step with `cache_key`, if one was written and its blob is present
    /// with the recorded size.
    pub fn step_record(&self, cache_key: &str) -> Result<Option<StepRecord>, Error> {
        let record: Option<StepRecord> = read_record(&self.record_path("steps", cache_key))?;
        Ok(record.filter(|r| {
            self.content()
                .has_blob_of_size(&r.layer.digest, r.layer.size)
        }))
    }

    /// Stores the record of a finished step. Call only once its layer blob is in the store.
    pub fn put_step_record(&self, cache_key: &str, record: &StepRecord) -> Result<(), Error> {
        write_record(self, &self.record_path("steps", cache_key), record)
    }

    /// The record of the plan with `plan_digest`, if its manifest is still in the store.
    pub fn plan_record(&self, plan_digest: &str) -> Result<Option<PlanRecord>, Error> {
        let record: Option<PlanRecord> = read_record(&self.record_path("plans", plan_digest))?;
        Ok(record.filter(|r| self.content().has_blob(&r.manifest_digest)))
    }

    pub fn put_plan_record(&self, plan_digest: &str, record: &PlanRecord) -> Result<(), Error> {
        write_record(self, &self.record_path("plans", plan_digest), record)
    }

    fn record_path(&self, kind: &str, key: &str) -> PathBuf {
        let name = key.strip_prefix("sha256:").unwrap_or(key);
        self.root()
            .join("cache")
            .join(kind)
            .join(format!("{name}.json"))
    }
}

fn read_record<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, Error> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", path)(e)),
    };
    match serde_json::from_slice(&bytes) {
        Ok(record) => Ok(Some(record)),
        // A record that does not parse is treated as missing, so the step simply runs again.
        Err(e) => {
            tracing::warn!("ignoring unreadable cache record `{}`: {e}", path.display());
            Ok(None)
        }
    }
}

fn write_record<T: serde::Serialize>(store: &Store, path: &Path, record: &T) -> Result<(), Error> {
    let bytes = serde_json::to_vec(record).expect("records serialize");
    let tmp = store.root().join("tmp");
    let mut file = tempfile::NamedTempFile::new_in(&tmp).map_err(Error::io("create", &tmp))?;
    std::io::Write::write_all(&mut file, &bytes).map_err(Error::io("write", file.path()))?;
    file.persist(path)
        .map_err(|e| Error::io("write", path)(e.error))?;
    Ok(())
}
