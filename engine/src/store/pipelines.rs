//! Pipeline versions and task logs: records written rarely and read by key.

use redb::ReadableTable;

use super::{LOGS, LogKey, PIPELINES, PipelineVersion, Store, StoreError, decode, now_ms, storage};
use crate::types::LogLine;

impl Store {
    /// A task's log lines, if stored.
    pub fn log(&self, key: &LogKey<'_>) -> Result<Option<Vec<LogLine>>, StoreError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(LOGS).map_err(storage)?;
        let k = key.key();
        let value = table.get(k.as_str()).map_err(storage)?;
        value.map(|v| decode(&k, v.value())).transpose()
    }

    /// Every stored version of pipeline `name`, oldest first.
    pub fn pipeline_versions(&self, name: &str) -> Result<Vec<PipelineVersion>, StoreError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(PIPELINES).map_err(storage)?;
        let value = table.get(name).map_err(storage)?;
        Ok(value
            .map(|v| decode(name, v.value()))
            .transpose()?
            .unwrap_or_default())
    }

    /// Stores `source` as the next version of pipeline `name`, unless it is the latest already;
    /// returns the latest version.
    pub fn put_pipeline(
        &self,
        name: &str,
        source: &str,
        by: &str,
    ) -> Result<PipelineVersion, StoreError> {
        let txn = self.db.begin_write().map_err(storage)?;
        let latest = {
            let mut table = txn.open_table(PIPELINES).map_err(storage)?;
            let mut versions: Vec<PipelineVersion> = match table.get(name).map_err(storage)? {
                Some(v) => decode(name, v.value())?,
                None => Vec::new(),
            };
            if versions.last().is_none_or(|v| v.source != source) {
                versions.push(PipelineVersion {
                    version: versions.len() as u64 + 1,
                    source: source.to_owned(),
                    at: now_ms(),
                    by: by.to_owned(),
                });
                let bytes = serde_json::to_vec(&versions)
                    .map_err(|e| StoreError::Storage(e.to_string()))?;
                table.insert(name, bytes.as_slice()).map_err(storage)?;
            }
            versions.pop().expect("at least one version")
        };
        txn.commit().map_err(storage)?;
        Ok(latest)
    }

    /// Every stored task log of `release`, in key order (stage, attempt, task).
    pub fn logs_of(&self, release: &str) -> Result<Vec<(String, Vec<LogLine>)>, StoreError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let table = txn.open_table(LOGS).map_err(storage)?;
        let prefix = format!("{release}/");
        let mut out = Vec::new();
        for entry in table.range(prefix.as_str()..).map_err(storage)? {
            let (key, value) = entry.map_err(storage)?;
            let Some(rest) = key.value().strip_prefix(&prefix) else {
                break;
            };
            out.push((rest.to_owned(), decode(key.value(), value.value())?));
        }
        Ok(out)
    }
}
