//! The Parquet lake on object storage: a local folder, S3 (any S3-compatible endpoint), or
//! HDFS where a build includes it. Every file is written with one atomic `put` (the local
//! store writes a hidden staging file and renames it), so a reader that globs the folder
//! never sees a half-written file.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Schema};
use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::lock::LakeLock;
use crate::config::S3Config;
use crate::{Error, Result};

/// A lake root.
#[derive(Debug, Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// The URL, for messages.
    pub url: String,
    /// The folder of a local lake (`None` on an object store).
    root: Option<std::path::PathBuf>,
}

impl Lake {
    /// Opens `url`: a path or `file://` (created if missing), or `s3://bucket/prefix` with
    /// credentials from the standard AWS variables (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`) and the endpoint from `[s3]` or `AWS_ENDPOINT`.
    pub fn open(url: &str, s3: &S3Config) -> Result<Lake> {
        let err = |what: &str| {
            let url = url.to_string();
            let what = what.to_string();
            move |source| Error::Lake { url, what, source }
        };
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            // Requests are retried briefly here; a longer outage is the flush's to wait out
            // (`io::retry`), where the metrics and the logs show it.
            let retry = object_store::RetryConfig {
                max_retries: 3,
                retry_timeout: std::time::Duration::from_secs(15),
                ..Default::default()
            };
            let mut b = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry);
            if let Some(e) = &s3.endpoint {
                b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
            }
            if let Some(r) = &s3.region {
                b = b.with_region(r);
            }
            if let Some(k) = &s3.access_key_id {
                b = b.with_access_key_id(k);
            }
            if let Some(k) = &s3.secret_access_key {
                b = b.with_secret_access_key(k);
            }
            let store = b.build().map_err(err("configure S3"))?;
            return Ok(Lake {
                store: Arc::new(store),
                prefix: Path::from(prefix),
                url: url.into(),
                root: None,
            });
        }
        if url.starts_with("hdfs://") || url.starts_with("viewfs://") {
            return Err(Error::Config(format!(
                "lake {url}: HDFS is not compiled into this build; use a local path or s3:// (see README, Lake)"
            )));
        }
        if url.contains("://") && !url.starts_with("file://") {
            return Err(Error::Config(format!(
                "lake {url}: unsupported scheme; use a path, file://, or s3://bucket/prefix"
            )));
        }
        let path = url.strip_prefix("file://").unwrap_or(url);
        std::fs::create_dir_all(path).map_err(|e| Error::file(path, e))?;
        let store = LocalFileSystem::new_with_prefix(path).map_err(err("open"))?;
        let root = std::fs::canonicalize(path).map_err(|e| Error::file(path, e))?;
        Ok(Lake {
            store: Arc::new(store),
            prefix: Path::default(),
            url: url.into(),
            root: Some(root),
        })
    }

    /// The folder of a local lake; `None` on an object store.
    pub fn local_root(&self) -> Option<&std::path::Path> {
        self.root.as_deref()
    }

    /// Opens the advisory lock `name` of this lake (a no-op on an object store).
    pub fn lock(&self, name: &str) -> Result<LakeLock> {
        LakeLock::open(self.local_root(), name)
    }

    fn path(&self, rel: &str) -> Path {
        let mut p = self.prefix.clone();
        for part in rel.split('/').filter(|s| !s.is_empty()) {
            p = p.clone().join(part);
        }
        p
    }

    fn err(&self, what: String) -> impl FnOnce(object_store::Error) -> Error + '_ {
        move |source| Error::Lake {
            url: self.url.clone(),
            what,
            source,
        }
    }

    /// Writes `bytes` at `rel` atomically (replacing any object there).
    pub async fn put(&self, rel: &str, bytes: impl Into<Bytes>) -> Result<()> {
        self.store
            .put(&self.path(rel), PutPayload::from(bytes.into()))
            .await
            .map_err(self.err(format!("write {rel}")))?;
        Ok(())
    }

    /// Reads `rel`, `None` if it does not exist.
    pub async fn get(&self, rel: &str) -> Result<Option<Bytes>> {
        match self.store.get(&self.path(rel)).await {
            Ok(r) => Ok(Some(
                r.bytes().await.map_err(self.err(format!("read {rel}")))?,
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(format!("read {rel}"))(e)),
        }
    }

    /// Deletes `rel`; a missing object is fine.
    pub async fn delete(&self, rel: &str) -> Result<()> {
        match self.store.delete(&self.path(rel)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(format!("delete {rel}"))(e)),
        }
    }

    /// Deletes every object in `rels` (one bulk request per thousand on S3); missing ones
    /// are fine.
    pub async fn delete_many(&self, rels: &[String]) -> Result<()> {
        use futures::StreamExt;
        let paths: Vec<Path> = rels.iter().map(|r| self.path(r)).collect();
        let locations = futures::stream::iter(paths.into_iter().map(Ok)).boxed();
        let results: Vec<_> = self.store.delete_stream(locations).collect().await;
        for r in results {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.err("delete files".into())(e)),
            }
        }
        Ok(())
    }

    /// Every object under the folder `rel` (recursively): its path relative to the lake root
    /// and its size, sorted by path.
    pub async fn list(&self, rel: &str) -> Result<Vec<(String, u64)>> {
        Ok(self
            .list_modified(rel)
            .await?
            .into_iter()
            .map(|(p, size, _)| (p, size))
            .collect())
    }

    /// As [`Lake::list`], with each object's last-modified time (UTC micros).
    pub async fn list_modified(&self, rel: &str) -> Result<Vec<(String, u64, i64)>> {
        use futures::TryStreamExt;
        let prefix = self.path(rel);
        let metas: Vec<object_store::ObjectMeta> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(self.err(format!("list {rel}")))?;
        let root = self.prefix.as_ref();
        let mut out: Vec<(String, u64, i64)> = metas
            .into_iter()
            .map(|m| {
                let p = m.location.as_ref();
                let p = p.strip_prefix(root).unwrap_or(p).trim_start_matches('/');
                (p.to_string(), m.size, m.last_modified.timestamp_micros())
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Deletes every object under the folder `rel`.
    pub async fn delete_folder(&self, rel: &str) -> Result<()> {
        for (path, _) in self.list(rel).await? {
            self.delete(&path).await?;
        }
        Ok(())
    }

    /// The URL of `rel` as polars and DuckDB address it: `s3://bucket/prefix/rel` or a
    /// local path.
    pub fn url_of(&self, rel: &str) -> String {
        let base = self.url.strip_prefix("file://").unwrap_or(&self.url);
        format!("{}/{}", base.trim_end_matches('/'), rel)
    }

    /// Writes, reads back and deletes a probe object: fails early with a clear error when
    /// the lake is unreachable or not writable.
    pub async fn healthcheck(&self) -> Result<()> {
        let rel = "_jobs/healthcheck";
        self.put(rel, b"ok".to_vec()).await?;
        self.get(rel).await?;
        self.delete(rel).await
    }
}

/// How every Parquet file of the lake is written: zstd level 3, `created_by` naming `jobs`;
/// min/max statistics per column chunk (what DuckDB, polars and Spark prune row groups by),
/// not per page; dictionaries only for the text columns of `schema`, whose values repeat
/// (numbers and times go plain and zstd packs them).
pub fn writer_props(schema: &Schema) -> Result<WriterProperties> {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).map_err(|e| Error::Parquet(e.to_string()))?,
        ))
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_dictionary_enabled(false)
        .set_created_by(format!("jobs {}", env!("CARGO_PKG_VERSION")));
    for f in schema.fields() {
        if f.data_type() == &DataType::Utf8 {
            b = b.set_column_dictionary_enabled(ColumnPath::from(f.name().as_str()), true);
        }
    }
    Ok(b.build())
}

/// Encodes batches as one zstd-compressed Parquet file.
pub fn parquet_bytes(batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let Some(first) = batches.first() else {
        return Err(Error::Internal("no batches to write".into()));
    };
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(
        &mut buf,
        first.schema(),
        Some(writer_props(&first.schema())?),
    )
    .map_err(|e| Error::Parquet(e.to_string()))?;
    for b in batches {
        w.write(b).map_err(|e| Error::Parquet(e.to_string()))?;
    }
    w.close().map_err(|e| Error::Parquet(e.to_string()))?;
    Ok(buf)
}
