//! Putting a merge in place so that a reader globbing the folder sees every row exactly once,
//! at every moment and after a crash at any moment.
//!
//! - **Local lake**: the merged files and hard links of every file of the folder that is not
//!   merged are staged in a folder under `_state/compact/tmp/`, made durable, and the two
//!   folders are exchanged with one `renameat2(RENAME_EXCHANGE)`: a listing holds either the
//!   small files or the merged ones. The old folder, now in the staging place, is deleted after.
//!   The exchange holds the lake's `writers` lock alone, so no stream put or delete lands in
//!   the folder meanwhile. A crash leaves at most a staging folder, removed by the next pass.
//! - **Object store** (S3): no rename exists, so a journal (`_state/compact/journal/<id>.json`,
//!   naming the merged files and the inputs) is written first, then the merged files, then the
//!   inputs are deleted in bulk and the journal goes. The next pass rolls an unfinished
//!   journal forward (every merged file is there: the inputs go) or back (the merged ones go).
//!   Between the last merged put and the bulk delete, a listing can see both (see README).

use std::collections::HashSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::plan::Merge;
use crate::io::lake::Lake;
use crate::io::lock::LakeLock;
use crate::{Error, Result};

const TMP: &str = "_state/compact/tmp";
const JOURNAL: &str = "_state/compact/journal";

/// An unfinished switch on an object store.
#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    merge: Merge,
    merged: Vec<String>,
}

/// The name of merged file `k` of switch `id` in `dir`.
fn merged_path(dir: &str, id: &str, k: usize) -> String {
    format!("{dir}/compacted-{id}-{k:03}.parquet")
}

/// Puts `files` in place of `m.inputs`; `false` if the folder changed under the merge (an
/// input vanished) and it was left as it is.
pub(super) async fn switch(
    lake: &Lake,
    writers: &LakeLock,
    m: &Merge,
    files: Vec<Vec<u8>>,
    id: &str,
) -> Result<bool> {
    match lake.local_root() {
        Some(root) => {
            let (root, writers, m) = (root.to_path_buf(), writers.clone(), m.clone());
            let id = id.to_string();
            tokio::task::spawn_blocking(move || local(&root, &writers, &m, files, &id))
                .await
                .map_err(|e| Error::Internal(format!("compaction task: {e}")))?
        }
        None => object(lake, m, files, id).await.map(|()| true),
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::file(path, e)
}

fn sync_dir(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err(path))
}

/// Every file under `dir`, relative to it.
fn walk(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir.join(rel)).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        let r = rel.join(e.file_name());
        if e.file_type().map_err(io_err(dir))?.is_dir() {
            walk(dir, &r, out)?;
        } else {
            out.push(r);
        }
    }
    Ok(())
}

fn exchange(a: &Path, b: &Path) -> Result<()> {
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| Error::Internal(format!("path with a NUL byte: {}", p.display())))
    };
    let (ca, cb) = (c(a)?, c(b)?);
    // SAFETY: two valid C strings; renameat2 only reads them.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    Err(match e.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) => Error::Config(format!(
            "{}: this file system cannot exchange two folders atomically (renameat2 RENAME_EXCHANGE), which compaction of a local lake needs; use ext4, xfs, btrfs or tmpfs, or set compaction.enabled = false",
            a.display()
        )),
        _ => Error::file(a, e),
    })
}

fn local(
    root: &Path,
    writers: &LakeLock,
    m: &Merge,
    files: Vec<Vec<u8>>,
    id: &str,
) -> Result<bool> {
    let live = root.join(&m.dir);
    let stage = root.join(TMP).join(id);
    std::fs::create_dir_all(&stage).map_err(io_err(&stage))?;
    let prefix = format!("{}/", m.dir);
    for (k, bytes) in files.into_iter().enumerate() {
        let rel = merged_path(&m.dir, id, k);
        let path = stage.join(&rel[prefix.len()..]);
        let mut f = std::fs::File::create(&path).map_err(io_err(&path))?;
        std::io::Write::write_all(&mut f, &bytes).map_err(io_err(&path))?;
        f.sync_all().map_err(io_err(&path))?;
    }
    let switched = {
        let _alone = writers.exclusive()?;
        let mut now = Vec::new();
        walk(&live, Path::new(""), &mut now)?;
        let now: HashSet<String> = now
            .iter()
            .map(|p| format!("{prefix}{}", p.to_string_lossy()))
            .collect();
        let merged: HashSet<&String> = m.inputs.iter().collect();
        if m.inputs.iter().any(|i| !now.contains(i)) {
            false
        } else {
            for keep in now.iter().filter(|p| !merged.contains(p)) {
                let to = stage.join(&keep[prefix.len()..]);
                if let Some(parent) = to.parent() {
                    std::fs::create_dir_all(parent).map_err(io_err(parent))?;
                }
                std::fs::hard_link(root.join(keep), &to).map_err(io_err(&to))?;
            }
            sync_dir(&stage)?;
            exchange(&live, &stage)?;
            if let Some(parent) = live.parent() {
                sync_dir(parent)?;
            }
            true
        }
    };
    // `stage` now holds the old folder (or, if nothing was switched, the unused merge).
    std::fs::remove_dir_all(&stage).map_err(io_err(&stage))?;
    Ok(switched)
}

async fn object(lake: &Lake, m: &Merge, files: Vec<Vec<u8>>, id: &str) -> Result<()> {
    let merged: Vec<String> = (0..files.len())
        .map(|k| merged_path(&m.dir, id, k))
        .collect();
    let journal = format!("{JOURNAL}/{id}.json");
    let j = Journal {
        merge: m.clone(),
        merged: merged.clone(),
    };
    let bytes = serde_json::to_vec(&j).map_err(|e| Error::Internal(format!("journal: {e}")))?;
    lake.put(&journal, bytes).await?;
    for (path, bytes) in merged.iter().zip(files) {
        lake.put(path, bytes).await?;
    }
    lake.delete_many(&m.inputs).await?;
    lake.delete(&journal).await
}

/// Finishes or undoes what a crashed pass left: staging folders of a local lake, journals of
/// an object store. Returns how many it found.
pub(super) async fn recover(lake: &Lake) -> Result<usize> {
    let mut found = 0;
    if let Some(root) = lake.local_root() {
        let tmp = root.join(TMP);
        if let Ok(entries) = std::fs::read_dir(&tmp) {
            for e in entries {
                let path = e.map_err(io_err(&tmp))?.path();
                std::fs::remove_dir_all(&path).map_err(io_err(&path))?;
                found += 1;
            }
        }
    }
    for (path, _) in lake.list(JOURNAL).await? {
        let Some(bytes) = lake.get(&path).await? else {
            continue;
        };
        let j: Journal = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Internal(format!("compaction journal {path} unreadable: {e}")))?;
        let present: HashSet<String> = lake
            .list(&j.merge.dir)
            .await?
            .into_iter()
            .map(|f| f.0)
            .collect();
        if j.merged.iter().all(|p| present.contains(p)) {
            lake.delete_many(&j.merge.inputs).await?;
            tracing::info!(message = "Finished an interrupted compaction.", folder = %j.merge.dir, inputs = j.merge.inputs.len());
        } else {
            lake.delete_many(&j.merged).await?;
            tracing::info!(message = "Undid an interrupted compaction.", folder = %j.merge.dir);
        }
        lake.delete(&path).await?;
        found += 1;
    }
    Ok(found)
}
