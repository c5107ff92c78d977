//! A local directory with the store's guarantees, for trying the tool without AWS and for
//! air-gapped use.
//!
//! Keys are paths below the root. Every write goes to a temporary file first; put-if-absent
//! is a hard link (which fails if the name exists), and compare-and-swap holds an exclusive lock
//! on the store while it compares and renames. The ETag is the file's inode, size and mtime: a
//! rename-over always makes a new inode, so a change is always seen. Temporary files that a
//! killed process left behind are removed by the next write once a day old.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{ByteRange, Detail, Listed, Object, ObjectMeta, Op, Precondition, StoreError};
use crate::signals;

/// Temporary files, beside the objects so renames stay on one file system.
const TMP_DIR: &str = ".release-tmp";
/// The lock file for compare-and-swap.
const LOCK_FILE: &str = ".release-lock";
/// A temporary file untouched this long was left by a killed process (a live upload writes to
/// it every few seconds at most), and the next upload removes it.
const STALE_TMP: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// A directory store.
#[derive(Debug)]
pub(crate) struct DirStore {
    root: PathBuf,
}

impl DirStore {
    /// A store rooted at `root` (created on the first write).
    pub(crate) fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// The file that holds `key`.
    pub(crate) fn path_of(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// The directories at the root, sorted.
    pub(super) fn top_level(&self) -> Result<Vec<String>, StoreError> {
        let entries = match fs_err::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(self.fail(Op::List, "", err)),
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|entry| entry.file_name().to_str().map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    fn location(&self) -> String {
        format!("file://{}", self.root.display())
    }

    fn fail(&self, op: Op, key: &str, err: impl std::fmt::Display) -> StoreError {
        StoreError::Request {
            op,
            location: self.location(),
            key: key.to_owned(),
            source: Detail(err.to_string()),
        }
    }

    pub(super) fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        let path = self.path_of(key);
        let mut file = match fs_err::File::open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(self.fail(Op::Read, key, err)),
        };
        let etag = etag_of(&file.metadata().map_err(|e| self.fail(Op::Read, key, e))?);
        let mut body = Vec::new();
        file.read_to_end(&mut body)
            .map_err(|e| self.fail(Op::Read, key, e))?;
        Ok(Some(Object {
            body: body.into(),
            etag,
        }))
    }

    pub(super) fn get_range(
        &self,
        key: &str,
        range: ByteRange,
    ) -> Result<Option<Bytes>, StoreError> {
        let mut file = match fs_err::File::open(self.path_of(key)) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(self.fail(Op::Read, key, err)),
        };
        let len = file
            .metadata()
            .map_err(|e| self.fail(Op::Read, key, e))?
            .len();
        let (start, end) = match range {
            ByteRange::Tail(n) => (len.saturating_sub(n), len),
        };
        let mut body = vec![0; (end - start) as usize];
        file.seek(SeekFrom::Start(start))
            .and_then(|_| file.read_exact(&mut body))
            .map_err(|e| self.fail(Op::Read, key, e))?;
        Ok(Some(body.into()))
    }

    pub(super) fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        match fs_err::metadata(self.path_of(key)) {
            Ok(meta) if meta.is_file() => Ok(Some(ObjectMeta {
                size: meta.len(),
                etag: etag_of(&meta),
            })),
            Ok(_) => Ok(None),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(self.fail(Op::Head, key, err)),
        }
    }

    pub(super) fn list(&self, prefix: &str) -> Result<Vec<Listed>, StoreError> {
        // Keys are listed from the deepest directory the prefix names.
        let dir_part = &prefix[..prefix.rfind('/').map_or(0, |i| i + 1)];
        let start = self.root.join(dir_part);
        if !start.is_dir() {
            return Ok(Vec::new());
        }
        let mut found = Vec::new();
        for entry in walkdir::WalkDir::new(&start).sort_by_file_name() {
            let entry = entry.map_err(|e| self.fail(Op::List, prefix, e))?;
            if !entry.file_type().is_file() {
                continue;
            }
            let Ok(relative) = entry.path().strip_prefix(&self.root) else {
                continue;
            };
            let Some(key) = relative.to_str() else {
                continue;
            };
            if key.starts_with(prefix) && !key.starts_with(TMP_DIR) && key != LOCK_FILE {
                let meta = entry.metadata().ok();
                found.push(Listed {
                    key: key.to_owned(),
                    size: meta.as_ref().map_or(0, |m| m.len()),
                    modified: meta
                        .and_then(|m| m.modified().ok())
                        .and_then(|t| jiff::Timestamp::try_from(t).ok()),
                });
            }
        }
        Ok(found)
    }

    pub(super) fn put(
        &self,
        key: &str,
        body: &[u8],
        when: &Precondition,
    ) -> Result<(), StoreError> {
        let tmp = self.temp_file(key)?;
        let written = write_synced(&tmp, body).map_err(|e| self.fail(Op::Write, key, e));
        let result = written.and_then(|()| self.commit(&tmp, key, when));
        let _ = fs_err::remove_file(&tmp);
        result
    }

    pub(super) fn delete(&self, key: &str) -> Result<(), StoreError> {
        match fs_err::remove_file(self.path_of(key)) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(self.fail(Op::Delete, key, err)),
        }
    }

    /// Removes `key` if its ETag is still `etag`, under the compare-and-swap lock, so no
    /// conditional write can slip in between the comparison and the removal.
    pub(super) fn delete_if_match(&self, key: &str, etag: &str) -> Result<(), StoreError> {
        let _lock = self.cas_lock(key, Op::Delete)?;
        if self.head(key)?.is_none_or(|meta| meta.etag != etag) {
            return Err(StoreError::PreconditionFailed {
                op: Op::Delete,
                location: self.location(),
                key: key.to_owned(),
            });
        }
        self.delete(key)
    }

    /// Holds the store's compare-and-swap lock until dropped.
    fn cas_lock(&self, key: &str, op: Op) -> Result<fs_err::File, StoreError> {
        fs_err::create_dir_all(&self.root).map_err(|e| self.fail(op, key, e))?;
        let lock =
            fs_err::File::create(self.root.join(LOCK_FILE)).map_err(|e| self.fail(op, key, e))?;
        lock.file().lock().map_err(|e| self.fail(op, key, e))?;
        Ok(lock)
    }

    pub(super) async fn download(
        &self,
        key: &str,
        chunks: mpsc::Sender<Bytes>,
    ) -> Result<Option<u64>, StoreError> {
        let mut file = match fs_err::File::open(self.path_of(key)) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(self.fail(Op::Read, key, err)),
        };
        let mut size = 0u64;
        loop {
            let mut buf = vec![0; 1 << 20];
            let n = file
                .read(&mut buf)
                .map_err(|e| self.fail(Op::Read, key, e))?;
            if n == 0 {
                return Ok(Some(size));
            }
            buf.truncate(n);
            size += n as u64;
            if chunks.send(buf.into()).await.is_err() {
                return Err(self.fail(Op::Read, key, "the reader stopped"));
            }
        }
    }

    pub(super) async fn upload(
        &self,
        key: &str,
        mut parts: mpsc::Receiver<Bytes>,
        cancel: &CancellationToken,
    ) -> Result<u64, StoreError> {
        let tmp = self.temp_file(key)?;
        let result = async {
            let mut file = fs_err::File::create(&tmp).map_err(|e| self.fail(Op::Upload, key, e))?;
            let mut size = 0u64;
            loop {
                let part = tokio::select! {
                    biased;
                    () = cancel.cancelled() => {
                        return Err(StoreError::Interrupted { signal: signals::received() });
                    }
                    part = parts.recv() => part,
                };
                let Some(part) = part else { break };
                size += part.len() as u64;
                file.write_all(&part)
                    .map_err(|e| self.fail(Op::Upload, key, e))?;
            }
            file.sync_all().map_err(|e| self.fail(Op::Upload, key, e))?;
            self.commit(&tmp, key, &Precondition::IfAbsent)?;
            Ok(size)
        }
        .await;
        let _ = fs_err::remove_file(&tmp);
        result
    }

    /// A fresh temporary path (the directories are created as needed).
    fn temp_file(&self, key: &str) -> Result<PathBuf, StoreError> {
        let dir = self.root.join(TMP_DIR);
        fs_err::create_dir_all(&dir).map_err(|e| self.fail(Op::Write, key, e))?;
        remove_stale(&dir);
        Ok(dir.join(uuid::Uuid::new_v4().to_string()))
    }

    /// Moves a finished temporary file to `key` under the condition.
    fn commit(&self, tmp: &Path, key: &str, when: &Precondition) -> Result<(), StoreError> {
        let dest = self.path_of(key);
        if let Some(parent) = dest.parent() {
            fs_err::create_dir_all(parent).map_err(|e| self.fail(Op::Write, key, e))?;
        }
        let precondition_failed = || StoreError::PreconditionFailed {
            op: Op::Write,
            location: self.location(),
            key: key.to_owned(),
        };
        match when {
            Precondition::IfAbsent => match std::fs::hard_link(tmp, &dest) {
                Ok(()) => Ok(()),
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                    Err(precondition_failed())
                }
                Err(err) => Err(self.fail(Op::Write, key, err)),
            },
            Precondition::None => {
                fs_err::rename(tmp, &dest).map_err(|e| self.fail(Op::Write, key, e))
            }
            Precondition::IfMatch(expected) => {
                let _lock = self.cas_lock(key, Op::Write)?;
                let current = self.head(key)?;
                if current.is_none_or(|meta| &meta.etag != expected) {
                    return Err(precondition_failed());
                }
                fs_err::rename(tmp, &dest).map_err(|e| self.fail(Op::Write, key, e))
                // The lock is released when `_lock` is dropped.
            }
        }
    }
}

/// Removes what `kill -9` left in the temporary directory; best effort, never an error.
fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|modified| modified.elapsed().is_ok_and(|age| age > STALE_TMP));
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn write_synced(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let mut file = fs_err::File::create(path)?;
    file.write_all(body)?;
    file.sync_all()
}

fn etag_of(meta: &std::fs::Metadata) -> String {
    format!(
        "\"{:x}-{:x}-{:x}.{:x}\"",
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conditional_delete_removes_only_the_version_it_names() {
        let root = tempfile::tempdir().unwrap();
        let store = DirStore::new(root.path().to_path_buf());
        let key = "web/prod/push.lock";
        store.put(key, b"lock A", &Precondition::IfAbsent).unwrap();
        let a = store.head(key).unwrap().unwrap().etag;
        store
            .put(key, b"lock B", &Precondition::IfMatch(a.clone()))
            .unwrap();
        let b = store.head(key).unwrap().unwrap().etag;
        assert_ne!(a, b);

        let stale = store.delete_if_match(key, &a);
        assert!(
            matches!(stale, Err(StoreError::PreconditionFailed { .. })),
            "{stale:?}"
        );
        assert_eq!(&store.get(key).unwrap().unwrap().body[..], b"lock B");

        store.delete_if_match(key, &b).unwrap();
        assert!(store.get(key).unwrap().is_none());
        let gone = store.delete_if_match(key, &b);
        assert!(
            matches!(gone, Err(StoreError::PreconditionFailed { .. })),
            "{gone:?}"
        );
    }
}
