//! Data directories for servers under test.
//!
//! A server started with `--data-dir` writes its log and snapshots there; a restarted server must
//! find them again, so the directory belongs to the test, not to the process. It is removed when
//! the test passes and kept when the test panics, with its path printed, because the on-disk state
//! is often the best evidence of what went wrong.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// A temporary directory that survives a failing test.
#[derive(Debug)]
pub struct DataDir {
    /// Always `Some` until `drop`, which takes it to decide between keeping and removing.
    dir: Option<TempDir>,
}

impl DataDir {
    /// Creates an empty directory under the system temporary directory, named
    /// `harness-<label>-<random>` so that a kept one is easy to recognise.
    ///
    /// # Panics
    ///
    /// If the directory cannot be created (a full or read-only temporary file system).
    pub fn new(label: &str) -> DataDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("harness-{label}-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("DataDir: cannot create a temporary directory: {e}"));
        DataDir { dir: Some(dir) }
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("present until drop").path()
    }

    /// A path inside the directory, for servers that need one directory each.
    pub fn join(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.path().join(relative)
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        if std::thread::panicking() {
            let kept = dir.keep();
            eprintln!("data dir kept for inspection: {}", kept.display());
        }
    }
}
