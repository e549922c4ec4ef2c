//! The log directory, and the three file-system moves the log makes durable in it.
//!
//! A file's data and its directory entry are persisted separately. `fsync` on a new file makes its
//! bytes durable, but the name that points at them lives in the directory, and survives a crash
//! only once the directory itself is fsynced (see fsync(2): "Calling fsync() does not necessarily
//! ensure that the entry in the directory containing the file has also reached disk"). Hence:
//!
//! - **create**: write `NAME.tmp`, fsync it, rename it to `NAME`, fsync the directory. After a
//!   crash the file is either absent or complete; it never exists with half a header. Leftover
//!   `.tmp` files are removed by the next open.
//! - **remove**: unlink, then fsync the directory before the next step depends on the removal.
//! - **replace** (the hard-state file): the same as create; `rename` over an existing file is
//!   atomic, so a reader sees the old contents or the new, never a mix.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};

/// Suffix of a file that is being written and is not yet part of the log.
pub(crate) const TEMP_SUFFIX: &str = ".tmp";

/// An open log directory.
#[derive(Debug)]
pub(crate) struct LogDir {
    path: PathBuf,
    /// Kept open so that syncing the directory costs one syscall, not three.
    handle: File,
}

impl LogDir {
    /// Opens `path`, creating it (and its parents) if needed.
    pub fn open(path: &Path) -> Result<LogDir> {
        fs::create_dir_all(path).at(path)?;
        let handle = File::open(path).at(path)?;
        let dir = LogDir {
            path: path.to_path_buf(),
            handle,
        };
        // The directory may itself have just been created: make its own entry durable.
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            File::open(parent).and_then(|p| p.sync_all()).at(parent)?;
        }
        Ok(dir)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Makes every create, rename and unlink done so far in this directory durable.
    pub fn sync(&self) -> Result<()> {
        self.handle.sync_all().at(&self.path)
    }

    /// Creates or replaces `name` with exactly `contents`, atomically and durably.
    pub fn write_atomically(&self, name: &str, contents: &[u8]) -> Result<()> {
        let temp = self.join(&format!("{name}{TEMP_SUFFIX}"));
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)
            .at(&temp)?;
        file.write_all(contents).at(&temp)?;
        file.sync_all().at(&temp)?;
        drop(file);
        let target = self.join(name);
        fs::rename(&temp, &target).at(&target)?;
        self.sync()
    }

    /// Deletes `path` (a file in this directory) and makes the deletion durable.
    pub fn remove(&self, path: &Path) -> Result<()> {
        fs::remove_file(path).at(path)?;
        self.sync()
    }

    /// Names of the regular files in the directory, sorted.
    pub fn file_names(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.path).at(&self.path)? {
            let entry = entry.at(&self.path)?;
            if !entry.file_type().at(&entry.path())?.is_file() {
                continue;
            }
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
}
