//! Atomic file writes and the per-folder write lock.
//!
//! A write goes to a temporary file in the target's folder, is fsynced, gets the target's mode,
//! and is renamed over the target; the folder is fsynced after. A crash at any point leaves the
//! old file or the new one. Writers of one folder serialise on an advisory lock held on the
//! folder itself, so no lock files are left behind. A target that is a symlink (or not a
//! regular file) is refused: a write never follows a link and the rename never replaces one.
//!
//! Debug builds honour `ENVV_FAULT_INJECT=<step>` (steps: `after-create`, `after-write`,
//! `after-fsync`, `before-rename`, `after-rename`; `membership-before-rename` in `membership`)
//! to abort the process at that step, silently, as a crash would (the module prints nothing);
//! the fault-injection tests use it. Release builds ignore it.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::error::{Error, IoContext, Result};

pub(crate) fn fault(step: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("ENVV_FAULT_INJECT").is_ok_and(|v| v == step) {
        std::process::abort();
    }
    let _ = step;
}

/// Writes `bytes` to `path` atomically. The mode of an existing file is kept; a new file gets
/// `new_mode` (Unix).
pub fn write_atomic(path: &Path, bytes: &[u8], new_mode: u32) -> Result<()> {
    write_with_mode(path, bytes, new_mode, true)
}

/// The atomic write; `keep_mode` copies an existing file's mode, else `new_mode` is used.
fn write_with_mode(path: &Path, bytes: &[u8], new_mode: u32, keep_mode: bool) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = temp_beside(path, bytes, new_mode, keep_mode)?;
    tmp.as_file().sync_all().at(path)?;
    fault("after-fsync");
    fault("before-rename");
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    fault("after-rename");
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes `bytes` to a new temp file beside `path` (`.NAME.*.envv-tmp`), with `path`'s mode when
/// `keep_mode` and it exists, else `new_mode`; set before any byte is written. Not synced, not
/// renamed: [`write_atomic`] does both, and multi-file transactions rename all files at the end.
pub fn temp_beside(
    path: &Path,
    bytes: &[u8],
    new_mode: u32,
    keep_mode: bool,
) -> Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // The rename at the end would replace a link (and a write through it would follow it).
    crate::os::paths::refuse_link(path)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(
            ".{}.",
            path.file_name()
                .map(|f| f.to_string_lossy())
                .unwrap_or_default()
        ))
        .suffix(".envv-tmp")
        .tempfile_in(dir)
        .at(dir)?;
    fault("after-create");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = match std::fs::metadata(path) {
            Ok(m) if keep_mode => m.permissions().mode() & 0o7777,
            _ => new_mode,
        };
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .at(path)?;
    }
    #[cfg(not(unix))]
    let _ = (new_mode, keep_mode);
    tmp.write_all(bytes).at(path)?;
    fault("after-write");
    Ok(tmp)
}

/// Writes a private file (0600) atomically. The temp file is 0600 before any byte is written,
/// whatever the mode of a file it replaces.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with_mode(path, bytes, 0o600, false)
}

/// Writes a private file (0600) that may be lost, a cache: replaced atomically (a reader sees
/// the old file or the new one), but not synced to disk, so a crash can leave the old file, an
/// empty one or none. Readers of such files must take any of them for a missing cache.
pub fn write_private_cache(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_beside(path, bytes, 0o600, false)?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// An exclusive advisory lock on a folder, released on drop.
pub struct DirLock {
    _file: File,
}

/// Locks the folder of `path` for writing (blocks until free).
pub fn lock_for(path: &Path) -> Result<DirLock> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    #[cfg(unix)]
    let file = File::open(dir).at(dir)?;
    #[cfg(not(unix))]
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .open(dir.join(".envv.lock"))
        .at(dir)?;
    file.lock().at(dir)?;
    Ok(DirLock { _file: file })
}

/// Removes temp files left by a crashed write next to `path` (`.NAME.*.envv-tmp`).
pub fn clean_stale_temps(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!(".{}.", name.to_string_lossy());
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(&prefix) && n.ends_with(".envv-tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}
