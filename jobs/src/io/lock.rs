//! Advisory locks of a local lake (`flock` on files under `_state/locks/`), so that processes
//! on one host agree: the stream holds the `writers` lock shared while it puts or deletes table
//! files, compaction holds it alone for the moment it exchanges a folder, and one compactor at a
//! time holds `compactor`. On an object store they are no-ops (see README, Compaction).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::{Error, Result};

/// One open lock file. Each [`LakeLock::open`] is its own open file description, so two of them
/// exclude each other even inside one process.
#[derive(Debug, Clone)]
pub struct LakeLock {
    file: Option<Arc<File>>,
    path: PathBuf,
}

/// A held lock, released on drop.
#[derive(Debug)]
pub struct Held(Option<Arc<File>>);

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(f) = &self.0 {
            // SAFETY: flock on a descriptor this struct keeps open.
            unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_UN) };
        }
    }
}

impl LakeLock {
    /// Opens the lock `name` of the local lake at `root`; `None` (an object store): a no-op lock.
    pub fn open(root: Option<&Path>, name: &str) -> Result<LakeLock> {
        let Some(root) = root else {
            return Ok(LakeLock {
                file: None,
                path: PathBuf::new(),
            });
        };
        let dir = root.join("_state/locks");
        std::fs::create_dir_all(&dir).map_err(|e| Error::file(&dir, e))?;
        let path = dir.join(format!("{name}.lock"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::file(&path, e))?;
        Ok(LakeLock {
            file: Some(Arc::new(file)),
            path,
        })
    }

    fn flock(&self, op: libc::c_int) -> Result<Option<Held>> {
        let Some(f) = &self.file else {
            return Ok(Some(Held(None)));
        };
        loop {
            // SAFETY: flock on a descriptor this struct keeps open.
            if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
                return Ok(Some(Held(Some(f.clone()))));
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) if op & libc::LOCK_NB != 0 => return Ok(None),
                _ => return Err(Error::file(&self.path, e)),
            }
        }
    }

    /// Waits for the lock, shared with other shared holders. Blocking.
    pub fn shared(&self) -> Result<Held> {
        self.flock(libc::LOCK_SH)
            .map(|h| h.expect("a blocking flock holds"))
    }

    /// Waits for the lock alone. Blocking.
    pub fn exclusive(&self) -> Result<Held> {
        self.flock(libc::LOCK_EX)
            .map(|h| h.expect("a blocking flock holds"))
    }

    /// Takes the lock alone if nobody holds it; `None` if somebody does.
    pub fn try_exclusive(&self) -> Result<Option<Held>> {
        self.flock(libc::LOCK_EX | libc::LOCK_NB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_opens_exclude_each_other_in_one_process() {
        let dir = std::env::temp_dir().join(format!("jobs-lock-{}", std::process::id()));
        let (a, b) = (
            LakeLock::open(Some(&dir), "t").unwrap(),
            LakeLock::open(Some(&dir), "t").unwrap(),
        );
        let held = a.shared().unwrap();
        assert!(
            b.try_exclusive().unwrap().is_none(),
            "shared blocks exclusive"
        );
        drop(held);
        let ex = b.try_exclusive().unwrap();
        assert!(ex.is_some());
        assert!(
            a.try_exclusive().unwrap().is_none(),
            "exclusive blocks exclusive"
        );
        drop(ex);
        assert!(a.try_exclusive().unwrap().is_some());
        let none = LakeLock::open(None, "t").unwrap();
        assert!(
            none.try_exclusive().unwrap().is_some(),
            "object stores: no-op"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
