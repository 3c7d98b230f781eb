//! The asset store: downloaded inputs and generated results kept under `ASSET_DIR` for
//! delivery and retries.
//!
//! A key is a relative path such as `results/<job_id>.mp4`: components of ASCII letters,
//! digits, `_`, `-` and `.`, none empty, none starting with a dot (so `..` and hidden or
//! temporary names are impossible), separated by `/`. Every write is atomic: the bytes go
//! to a temporary file in the same directory, which is then renamed over the target, so a
//! reader never sees half a file and a crash leaves no truncated asset. The temporary file
//! is deleted whenever the write does not complete: on an error, and also when the write's
//! future is dropped half-way (a cancelled job, a download timeout).

mod links;

use links::PublicLinks;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use rei_core::job::AssetRef;
use tokio::io::AsyncWriteExt;

/// Longest accepted key, in bytes.
const MAX_KEY_LEN: usize = 255;

/// Why an asset operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    /// The key is not a safe relative path.
    #[error("`{key}` is not a valid asset key")]
    InvalidKey {
        /// The offending key (shortened).
        key: String,
    },
    /// The content is larger than allowed; nothing was stored.
    #[error("the file is larger than the {limit}-byte limit")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The source stream failed; nothing was stored.
    #[error("reading the source failed: {message}")]
    Source {
        /// What the source reported.
        message: String,
    },
    /// The file system failed.
    #[error("asset store I/O failed")]
    Io(#[from] std::io::Error),
}

/// What a [`AssetStore::sweep`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Files deleted.
    pub deleted: u64,
    /// Their size in bytes.
    pub bytes: u64,
    /// Files kept (recent, or in use).
    pub kept: u64,
}

/// A file a sweep deletes (an asset, or a leftover temporary file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SweptFile {
    /// Its path under the root, `/`-separated.
    pub key: String,
    /// Where it is.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
}

/// Files under one root directory (`ASSET_DIR`).
#[derive(Clone)]
pub struct AssetStore {
    root: PathBuf,
    public: Option<PublicLinks>,
    cap: Option<Cap>,
}

/// `ASSET_DIR_MAX_BYTES`: users' uploads stop when the directory holds this much.
#[derive(Clone)]
struct Cap {
    max_bytes: u64,
    /// The last measured size of the directory, and when (measured again every
    /// [`USAGE_FRESH_FOR`]: other processes write here too).
    measured: Arc<tokio::sync::Mutex<Option<(std::time::Instant, u64)>>>,
}

/// How long a measurement of `ASSET_DIR`'s size is reused.
const USAGE_FRESH_FOR: Duration = Duration::from_secs(10);

impl fmt::Debug for AssetStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssetStore")
            .field("root", &self.root)
            .field("public", &self.public.as_ref().map(|p| p.base.as_str()))
            .finish()
    }
}

impl AssetStore {
    /// A store rooted at `root` (created on first write).
    #[must_use]
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            public: None,
            cap: None,
        }
    }

    /// Caps the directory (`ASSET_DIR_MAX_BYTES`): [`Self::has_room`] says no to a user's
    /// upload that would take it over `max_bytes`. Results of paid jobs are always
    /// written, and nothing is ever deleted to make room.
    #[must_use]
    pub fn with_cap(mut self, max_bytes: u64) -> Self {
        self.cap = Some(Cap {
            max_bytes,
            measured: Arc::default(),
        });
        self
    }

    /// Whether a user's upload of `incoming` bytes fits under the cap (always without
    /// one). The directory is measured at most every ten seconds.
    ///
    /// # Errors
    /// [`AssetError::Io`] when the directory cannot be measured.
    pub async fn has_room(&self, incoming: u64) -> Result<bool, AssetError> {
        let Some(cap) = &self.cap else {
            return Ok(true);
        };
        let mut measured = cap.measured.lock().await;
        let used = match *measured {
            Some((at, used)) if at.elapsed() < USAGE_FRESH_FOR => used,
            _ => {
                let used = directory_size(&self.root).await?;
                *measured = Some((std::time::Instant::now(), used));
                used
            }
        };
        if used.saturating_add(incoming) > cap.max_bytes {
            return Ok(false);
        }
        // Counted now, so that uploads within the next ten seconds see it.
        *measured = measured.map(|(at, used)| (at, used.saturating_add(incoming)));
        Ok(true)
    }

    /// The root directory.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where an asset lives on disk.
    ///
    /// # Errors
    /// [`AssetError::InvalidKey`] when the key is not a safe relative path.
    pub fn path(&self, asset: &AssetRef) -> Result<PathBuf, AssetError> {
        let key = asset.as_str();
        validate_key(key)?;
        Ok(key
            .split('/')
            .fold(self.root.clone(), |path, part| path.join(part)))
    }

    /// Stores `bytes` under `key` atomically, replacing any earlier content.
    ///
    /// # Errors
    /// [`AssetError::InvalidKey`] for an unsafe key, [`AssetError::Io`] on disk failures.
    pub async fn write(&self, key: &str, bytes: &[u8]) -> Result<AssetRef, AssetError> {
        let chunk = Bytes::copy_from_slice(bytes);
        let stream = futures::stream::iter([Ok::<_, std::convert::Infallible>(chunk)]);
        self.write_stream(key, stream, u64::MAX)
            .await
            .map(|(asset, _)| asset)
    }

    /// Stores a stream of chunks under `key` atomically, refusing more than `max_bytes`.
    /// Returns the asset and its size. On any failure nothing is left behind, nor when the
    /// returned future is dropped before it completes.
    ///
    /// # Errors
    /// [`AssetError::InvalidKey`], [`AssetError::TooLarge`], [`AssetError::Source`] when the
    /// stream fails, [`AssetError::Io`] on disk failures.
    pub async fn write_stream<S, E>(
        &self,
        key: &str,
        stream: S,
        max_bytes: u64,
    ) -> Result<(AssetRef, u64), AssetError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: fmt::Display,
    {
        let asset = AssetRef::new(key);
        let target = self.path(&asset)?;
        let dir = target
            .parent()
            .map_or_else(|| self.root.clone(), Path::to_path_buf);
        tokio::fs::create_dir_all(&dir).await?;
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp =
            TempFile::create(dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>())))?;
        let size = copy_capped(temp.file, stream, max_bytes).await?;
        tokio::fs::rename(&temp.guard.path, &target).await?;
        temp.guard.keep();
        Ok((asset, size))
    }

    /// Reads a whole asset.
    ///
    /// # Errors
    /// [`AssetError::InvalidKey`], or [`AssetError::Io`] (e.g. not found).
    pub async fn read(&self, asset: &AssetRef) -> Result<Vec<u8>, AssetError> {
        Ok(tokio::fs::read(self.path(asset)?).await?)
    }

    /// Deletes files last written before `cutoff`, except the keys in `keep` (inputs and
    /// results of jobs with work left), and leftover temporary files of the same age.
    /// Walks the whole store; a file that vanishes meanwhile is not an error.
    ///
    /// # Errors
    /// [`AssetError::Io`] when a directory cannot be read or a file deleted.
    pub async fn sweep(
        &self,
        cutoff: std::time::SystemTime,
        keep: &std::collections::HashSet<String>,
    ) -> Result<SweepReport, AssetError> {
        let (doomed, kept) = self.walk(cutoff, keep).await?;
        let mut report = SweepReport {
            kept,
            ..SweepReport::default()
        };
        for file in doomed {
            if Self::delete(&file).await? {
                report.deleted += 1;
                report.bytes += file.bytes;
            }
        }
        Ok(report)
    }

    /// Deletes a file a [`Self::plan`] listed; false when it is gone already.
    ///
    /// # Errors
    /// [`AssetError::Io`].
    pub async fn delete(file: &SweptFile) -> Result<bool, AssetError> {
        remove_file(&file.path).await
    }

    /// What a sweep would delete: files last written before `cutoff` and not in `keep`,
    /// with their sizes (keys in walk order). Deletes nothing.
    ///
    /// # Errors
    /// [`AssetError::Io`] when the directory cannot be read.
    pub async fn plan(
        &self,
        cutoff: std::time::SystemTime,
        keep: &std::collections::HashSet<String>,
    ) -> Result<Vec<SweptFile>, AssetError> {
        Ok(self.walk(cutoff, keep).await?.0)
    }

    /// The files to delete and the number kept.
    async fn walk(
        &self,
        cutoff: std::time::SystemTime,
        keep: &std::collections::HashSet<String>,
    ) -> Result<(Vec<SweptFile>, u64), AssetError> {
        let mut doomed = Vec::new();
        let mut kept = 0;
        let mut dirs = vec![(self.root.clone(), String::new())];
        while let Some((dir, prefix)) = dirs.pop() {
            let mut entries = match tokio::fs::read_dir(&dir).await {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            while let Some(entry) = entries.next_entry().await? {
                let name = entry.file_name().to_string_lossy().into_owned();
                // A hidden top-level directory holds state kept beside the assets (the
                // sandbox's checkout records), never an asset: no key starts with a dot.
                if prefix.is_empty() && name.starts_with('.') && entry.path().is_dir() {
                    continue;
                }
                let key = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}/{name}")
                };
                let meta = match entry.metadata().await {
                    Ok(meta) => meta,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e.into()),
                };
                if meta.is_dir() {
                    dirs.push((entry.path(), key));
                } else if meta.modified().is_ok_and(|m| m < cutoff) && !keep.contains(&key) {
                    doomed.push(SweptFile {
                        key,
                        path: entry.path(),
                        bytes: meta.len(),
                    });
                } else {
                    kept += 1;
                }
            }
        }
        Ok((doomed, kept))
    }

    /// Deletes an asset; deleting a missing asset is not an error.
    ///
    /// # Errors
    /// [`AssetError::InvalidKey`], or [`AssetError::Io`].
    pub async fn remove(&self, asset: &AssetRef) -> Result<(), AssetError> {
        remove_file(&self.path(asset)?).await.map(|_| ())
    }
}

/// The bytes of every file under `root` (0 when it does not exist yet).
async fn directory_size(root: &Path) -> Result<u64, AssetError> {
    let mut total = 0_u64;
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        while let Some(entry) = entries.next_entry().await? {
            let meta = entry.metadata().await?;
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                total = total.saturating_add(meta.len());
            }
        }
    }
    Ok(total)
}

/// Deletes a file; false when it was gone already.
async fn remove_file(path: &Path) -> Result<bool, AssetError> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[async_trait::async_trait]
impl rei_core::ports::Assets for AssetStore {
    async fn read(&self, asset: &AssetRef) -> Result<Vec<u8>, rei_core::ports::AssetError> {
        match Self::read(self, asset).await {
            Ok(bytes) => Ok(bytes),
            Err(AssetError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(rei_core::ports::AssetError::NotFound(asset.clone()))
            }
            Err(e) => Err(rei_core::ports::AssetError::Unavailable(Box::new(e))),
        }
    }

    async fn write(
        &self,
        key: &str,
        bytes: &[u8],
    ) -> Result<AssetRef, rei_core::ports::AssetError> {
        Self::write(self, key, bytes)
            .await
            .map_err(|e| rei_core::ports::AssetError::Unavailable(Box::new(e)))
    }

    fn public_url(&self, asset: &AssetRef) -> Option<String> {
        self.public_link(asset, SystemTime::now())
    }

    fn download_link(&self, asset: &AssetRef, expires: rei_core::Timestamp) -> Option<String> {
        let seconds = u64::try_from(expires.millis() / 1000).ok()?;
        self.signed_link(asset, seconds)
    }

    async fn exists(&self, asset: &AssetRef) -> Result<bool, rei_core::ports::AssetError> {
        let path = self
            .path(asset)
            .map_err(|e| rei_core::ports::AssetError::Unavailable(Box::new(e)))?;
        tokio::fs::try_exists(&path)
            .await
            .map_err(|e| rei_core::ports::AssetError::Unavailable(Box::new(e)))
    }

    async fn remove(&self, asset: &AssetRef) -> Result<(), rei_core::ports::AssetError> {
        Self::remove(self, asset)
            .await
            .map_err(|e| rei_core::ports::AssetError::Unavailable(Box::new(e)))
    }
}

/// Checks that a key is a safe relative path (see the module docs).
///
/// # Errors
/// [`AssetError::InvalidKey`].
pub fn validate_key(key: &str) -> Result<(), AssetError> {
    let part_ok = |part: &str| {
        !part.is_empty()
            && !part.starts_with('.')
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    };
    if key.len() <= MAX_KEY_LEN && key.split('/').all(part_ok) {
        Ok(())
    } else {
        Err(AssetError::InvalidKey {
            key: key.chars().take(64).collect(),
        })
    }
}

/// A new temporary file and the guard that deletes it.
struct TempFile {
    file: tokio::fs::File,
    guard: TempGuard,
}

impl TempFile {
    fn create(path: PathBuf) -> Result<Self, AssetError> {
        // Opened synchronously (one `open` call): with `tokio::fs` the file would be created
        // on a blocking thread, possibly after a cancelled write had already run its guard.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(Self {
            file: tokio::fs::File::from_std(file),
            guard: TempGuard { path, armed: true },
        })
    }
}

/// Deletes a temporary file when dropped, unless [`TempGuard::keep`] said it was renamed.
/// Dropping covers every way a write can end early: an error (`?`), and the write's future
/// being dropped at an `.await` (cancellation, timeout).
struct TempGuard {
    path: PathBuf,
    armed: bool,
}

impl TempGuard {
    /// The file was renamed into place: nothing to delete.
    fn keep(mut self) {
        self.armed = false;
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Synchronous on purpose: a drop cannot await. One unlink of a file we created; if it
        // fails, the unique name makes the leftover harmless garbage.
        if let Err(error) = std::fs::remove_file(&self.path) {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(error = %error, "cannot delete a temporary asset file");
            }
        }
    }
}

async fn copy_capped<S, E>(
    mut file: tokio::fs::File,
    stream: S,
    max_bytes: u64,
) -> Result<u64, AssetError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: fmt::Display,
{
    let mut stream = std::pin::pin!(stream);
    let mut size: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| AssetError::Source {
            message: e.to_string(),
        })?;
        size = size.saturating_add(chunk.len() as u64);
        if size > max_bytes {
            return Err(AssetError::TooLarge { limit: max_bytes });
        }
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    file.sync_all().await?;
    Ok(size)
}

#[cfg(test)]
mod tests;
