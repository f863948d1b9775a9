//! Git access through libgit2: repository discovery and configuration (history is read by
//! [`crate::history`]).
//!
//! envv never shells out to git. History is read from blobs, without decrypting: because envv
//! keeps unchanged ciphertexts byte for byte, a changed `ENC[...]` string means a changed value.

use std::path::{Path, PathBuf};

/// The folder holding `.sops.yaml` (nearest ancestor of `start`), else the git work tree root,
/// else `start`.
pub fn find_root(start: &Path) -> PathBuf {
    let mut dir = Some(start);
    while let Some(d) = dir {
        if d.join(crate::policy::POLICY_FILE).is_file() {
            return d.to_path_buf();
        }
        if d.join(".git").exists() {
            return d.to_path_buf();
        }
        dir = d.parent();
    }
    match git2::Repository::discover(start) {
        Ok(r) => r
            .workdir()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| start.to_path_buf()),
        Err(_) => start.to_path_buf(),
    }
}

/// Opens the git repository containing `root`, if any.
pub fn open(root: &Path) -> Option<git2::Repository> {
    git2::Repository::discover(root).ok()
}

/// A git config value, looked up as git does: the repository's config, then the global file
/// (`$GIT_CONFIG_GLOBAL` when set, which libgit2 does not read by itself), then the defaults.
pub fn config_string(root: &Path, name: &str) -> Option<String> {
    if let Some(repo) = open(root) {
        if let Ok(v) = repo
            .config()
            .and_then(|c| c.open_level(git2::ConfigLevel::Local))
            .and_then(|c| c.get_string(name))
        {
            return Some(v);
        }
    }
    if let Some(path) = std::env::var_os("GIT_CONFIG_GLOBAL") {
        return git2::Config::open(Path::new(&path))
            .ok()
            .and_then(|c| c.get_string(name).ok());
    }
    git2::Config::open_default()
        .ok()
        .and_then(|c| c.get_string(name).ok())
}
