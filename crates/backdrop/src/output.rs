//! Writing results so that nothing is half-written.
//!
//! Every file of a run is first written into a staging folder inside the output
//! directory and renamed into place only after all of them were written; on any failure
//! the staging folder is removed. Renames within one directory are atomic, so a reader
//! never sees a truncated image.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// A set of files being written into one directory.
pub struct StagedOutput {
    dir: PathBuf,
    staging: PathBuf,
    files: Vec<String>,
    committed: bool,
}

impl StagedOutput {
    /// Creates the output directory if needed and a staging folder inside it; fails if
    /// either cannot be created (so an unwritable directory is found before any work).
    pub fn new(dir: &Path) -> io::Result<StagedOutput> {
        fs::create_dir_all(dir)?;
        let staging = dir.join(format!(".backdrop-staging-{}", std::process::id()));
        fs::create_dir_all(&staging)?;
        Ok(StagedOutput { dir: dir.to_path_buf(), staging, files: Vec::new(), committed: false })
    }

    /// Stages one file; returns the path it will have once committed.
    pub fn add(&mut self, name: &str, bytes: &[u8]) -> io::Result<PathBuf> {
        fs::write(self.staging.join(name), bytes)?;
        self.files.push(name.to_string());
        Ok(self.dir.join(name))
    }

    /// Moves every staged file into place.
    pub fn commit(mut self) -> io::Result<()> {
        for name in &self.files {
            fs::rename(self.staging.join(name), self.dir.join(name))?;
        }
        self.committed = true;
        fs::remove_dir_all(&self.staging)
    }
}

impl Drop for StagedOutput {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: a leftover staging folder is harmless and hidden.
            let _ = fs::remove_dir_all(&self.staging);
        }
    }
}
