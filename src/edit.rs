//! `edit` without the terminal: the private scratch file, running the editor, and applying the
//! edited text to an encrypted file so that only what changed is re-encrypted.
//!
//! The scratch file is the only place besides `decrypt -o` where plaintext touches a file
//! system: it lives in a fresh 0700 folder (on `/dev/shm`, which is memory, when it exists),
//! is created 0600, and is removed when the [`Scratch`] is dropped — after success, after an
//! error, and when envv is asked to stop (SIGTERM/SIGHUP/SIGQUIT: the editor is stopped first).
//! A SIGKILL cannot be caught: the folder's name holds the owning process id
//! (`envv-edit-<pid>-XXXX`), and [`sweep_stale`] (run by the next `edit` and by `status`)
//! removes folders whose process is gone.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, IoContext, Result};

/// A private folder holding one plaintext file; both are removed on drop.
pub struct Scratch {
    dir: tempfile::TempDir,
    /// The plaintext file inside the folder, named like the file being edited.
    pub path: PathBuf,
}

/// How every scratch folder's name starts; the owner's pid and `-` follow.
pub const SCRATCH_PREFIX: &str = "envv-edit-";

/// A scratch folder left by an `edit` that was killed (its process is gone), now removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swept {
    /// The folder that was removed.
    pub dir: PathBuf,
    /// The pid of the `envv edit` that made it (read from the folder's name).
    pub pid: u32,
}

/// Removes this user's scratch folders whose owning `envv edit` is no longer running (killed
/// with SIGKILL, or the machine lost power before the folder was removed); their files are
/// overwritten with zeros first. Returns what was removed. Folders of running processes, of
/// other users, and without a pid in their name are left alone.
pub fn sweep_stale() -> Vec<Swept> {
    let base = scratch_base();
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(&base) else {
        return out;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(SCRATCH_PREFIX))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        if !meta.is_dir() || !owned_by_me(&meta) || process_alive(pid) {
            continue;
        }
        let dir = e.path();
        if let Ok(files) = std::fs::read_dir(&dir) {
            for f in files.flatten() {
                let p = f.path();
                if let Ok(m) = std::fs::symlink_metadata(&p) {
                    if m.is_file() {
                        let _ = std::fs::write(&p, vec![0u8; m.len() as usize]);
                    }
                }
            }
        }
        if std::fs::remove_dir_all(&dir).is_ok() {
            out.push(Swept { dir, pid });
        }
    }
    out
}

#[cfg(unix)]
fn owned_by_me(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    meta.uid() == rustix::process::getuid().as_raw()
}

#[cfg(not(unix))]
fn owned_by_me(_meta: &std::fs::Metadata) -> bool {
    true
}

/// Whether a process with this id exists (EPERM: it exists, owned by someone else).
#[cfg(unix)]
fn process_alive(pid: u32) -> bool {
    let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    match rustix::process::test_kill_process(p) {
        Ok(()) => true,
        Err(e) => e != rustix::io::Errno::SRCH,
    }
}

#[cfg(not(unix))]
fn process_alive(_pid: u32) -> bool {
    true
}

/// Where scratch folders go: `/dev/shm` when it is a folder, else the temp folder.
pub fn scratch_base() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

impl Scratch {
    /// Creates `<base>/envv-edit-XXXX/<file_name>` (folder 0700, file 0600) holding `content`.
    pub fn create(file_name: &str, content: &[u8]) -> Result<Self> {
        let base = scratch_base();
        let mut b = tempfile::Builder::new();
        let prefix = format!("{SCRATCH_PREFIX}{}-", std::process::id());
        b.prefix(&prefix);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            b.permissions(std::fs::Permissions::from_mode(0o700));
        }
        let dir = b.tempdir_in(&base).at(&base)?;
        let name = Path::new(file_name)
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| ".env".into());
        let path = dir.path().join(name);
        let s = Scratch { dir, path };
        s.write(content)?;
        Ok(s)
    }

    /// Replaces the content (keeping the file private).
    pub fn write(&self, content: &[u8]) -> Result<()> {
        use std::io::Write;
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(0o600);
        }
        let mut f = o.open(&self.path).at(&self.path)?;
        f.write_all(content).at(&self.path)?;
        f.sync_all().at(&self.path)
    }

    /// The content as the editor left it.
    pub fn read(&self) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        Ok(zeroize::Zeroizing::new(
            std::fs::read(&self.path).at(&self.path)?,
        ))
    }

    /// The private folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Overwrite before unlinking (cheap; the folder itself is removed by TempDir).
        if let Ok(len) = std::fs::metadata(&self.path).map(|m| m.len()) {
            let _ = std::fs::write(&self.path, vec![0u8; len as usize]);
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The editor command: `$VISUAL`, else `$EDITOR` (split like a shell would, so `code --wait`
/// works), else `vi`.
pub fn editor_command() -> Result<Vec<String>> {
    let raw = ["VISUAL", "EDITOR"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()));
    let Some(raw) = raw else {
        return Ok(vec!["vi".into()]);
    };
    let words = shell_words::split(&raw).map_err(|e| {
        Error::usage(format!(
            "cannot parse $VISUAL/$EDITOR ({e}): set it to e.g. `code --wait`"
        ))
    })?;
    if words.is_empty() {
        return Ok(vec!["vi".into()]);
    }
    Ok(words)
}

/// How an editor session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditorExit {
    /// Exit status 0.
    Saved,
    /// A non-zero exit status.
    Failed(i32),
    /// The editor was killed by this signal.
    Killed(i32),
    /// envv itself received this signal (SIGTERM/SIGHUP); the editor was stopped.
    Stopped(i32),
}

/// Signals that stop an edit session (the editor handles SIGINT itself). SIGQUIT would
/// otherwise end envv at once (and, where core dumps are allowed, write one).
#[cfg(unix)]
const STOP_SIGNALS: &[i32] = &[
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGHUP,
    signal_hook::consts::SIGQUIT,
];

/// Catches SIGINT/SIGTERM/SIGHUP/SIGQUIT for the rest of the process so that envv outlives them long
/// enough to remove the scratch file. Returns the slot recording the last stop signal.
pub fn catch_signals() -> Result<Arc<AtomicUsize>> {
    let slot = Arc::new(AtomicUsize::new(0));
    #[cfg(unix)]
    {
        for &sig in STOP_SIGNALS {
            signal_hook::flag::register_usize(sig, Arc::clone(&slot), sig as usize)
                .map_err(|e| Error::io("signal handler", e))?;
        }
        // SIGINT reaches the editor too (same process group); it decides. envv must only not die.
        signal_hook::flag::register(
            signal_hook::consts::SIGINT,
            Arc::new(std::sync::atomic::AtomicBool::new(false)),
        )
        .map_err(|e| Error::io("signal handler", e))?;
    }
    Ok(slot)
}

/// Runs `editor` on `path` and waits for it, stopping it when `stop` records a signal.
pub fn run_editor(editor: &[String], path: &Path, stop: &AtomicUsize) -> Result<EditorExit> {
    let (prog, args) = editor
        .split_first()
        .ok_or_else(|| Error::usage("empty editor command"))?;
    let mut child = std::process::Command::new(prog)
        .args(args)
        .arg(path)
        .spawn()
        .map_err(|e| {
            Error::usage_hint(
                format!("cannot start the editor `{prog}`: {e}"),
                "set $VISUAL or $EDITOR, e.g. `export EDITOR=nano`",
            )
        })?;
    loop {
        let sig = stop.load(Ordering::SeqCst);
        if sig != 0 {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(EditorExit::Stopped(sig as i32));
        }
        if let Some(status) = child.try_wait().map_err(|e| Error::io(prog, e))? {
            if let Some(code) = status.code() {
                return Ok(if code == 0 {
                    EditorExit::Saved
                } else {
                    EditorExit::Failed(code)
                });
            }
            #[cfg(unix)]
            {
                use std::os::unix::process::ExitStatusExt;
                return Ok(EditorExit::Killed(status.signal().unwrap_or(0)));
            }
            #[cfg(not(unix))]
            return Ok(EditorExit::Failed(1));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_is_private_and_removed() {
        let s = Scratch::create(".env.production", b"A=1\n").unwrap();
        let dir = s.dir().to_path_buf();
        let path = s.path.clone();
        assert!(path.ends_with(".env.production"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
                0o700
            );
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        drop(s);
        assert!(!path.exists() && !dir.exists());
    }
}
