//! Git access through libgit2: repository discovery and configuration (history is read by
//! [`crate::git::history`]).
//!
//! envv never shells out to git. History is read from blobs, without decrypting: because envv
//! keeps unchanged ciphertexts byte for byte, a changed `ENC[...]` string means a changed value.

pub mod history;
pub mod hook;
pub mod pack;
pub mod setup;

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
    open(start)
        .and_then(|r| r.workdir().map(Path::to_path_buf))
        .unwrap_or_else(|| start.to_path_buf())
}

/// Opens the git repository whose work tree holds `root`, if any: the nearest ancestor with a
/// `.git` (folder, or file of a linked worktree or submodule), as git itself finds it.
///
/// A folder is never taken for a bare repository: `HEAD`, `objects/` and `refs/` are files
/// anyone can commit into a work tree, and libgit2's own discovery would then read the trust
/// file, history and index from committed files. Only a repository with a work tree that
/// contains `root` counts.
pub fn open(root: &Path) -> Option<git2::Repository> {
    let start = std::path::absolute(root).ok()?;
    let dir = start.ancestors().find(|d| d.join(".git").exists())?;
    let repo = git2::Repository::open_ext(
        dir,
        git2::RepositoryOpenFlags::NO_SEARCH,
        std::iter::empty::<&std::ffi::OsStr>(),
    )
    .ok()?;
    if repo.is_bare() {
        return None;
    }
    let workdir = repo.workdir()?.canonicalize().ok()?;
    start
        .canonicalize()
        .ok()?
        .starts_with(&workdir)
        .then_some(repo)
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
/// The index a commit is being made from: `$GIT_INDEX_FILE` when git set it (`git commit -a`
/// and `git commit PATH` stage into a temporary index and run hooks with it), else the
/// repository's index.
pub fn staged_index(repo: &git2::Repository) -> crate::Result<git2::Index> {
    match std::env::var_os("GIT_INDEX_FILE").filter(|v| !v.is_empty()) {
        Some(p) => {
            let p = PathBuf::from(p);
            let p = if p.is_absolute() {
                p
            } else {
                std::env::current_dir()
                    .map_err(|e| crate::error::Error::io(".", e))?
                    .join(p)
            };
            Ok(git2::Index::open(&p)?)
        }
        None => Ok(repo.index()?),
    }
}

/// Whether the working-tree file `file` still holds what the index entry `entry` recorded, by
/// git's own test: the stat data it stored (size, inode, modification and change times) match,
/// and the entry was written before the index was (an entry as new as the index may have been
/// changed within the same tick: git calls it racy and so does this). `index_mtime` is when
/// the index file was written. Files git converts when staging (a `filter`, `text`, `eol`,
/// `crlf`, `ident` or `working-tree-encoding` attribute, or `core.autocrlf`) never match: their
/// staged bytes are not the file's.
pub fn stat_unchanged(
    repo: &git2::Repository,
    entry: &git2::IndexEntry,
    file: &Path,
    index_mtime: std::time::SystemTime,
) -> bool {
    #[cfg(unix)]
    {
        if entry.mode & 0o170000 != 0o100000 {
            return false;
        }
        let entry_mtime = std::time::UNIX_EPOCH
            + std::time::Duration::new(
                entry.mtime.seconds().max(0) as u64,
                entry.mtime.nanoseconds(),
            );
        if entry_mtime >= index_mtime {
            return false;
        }
        // A file git converts when it stages it (a filter, an encoding, keyword or line-ending
        // conversion) has staged bytes that are not its own: never taken for the blob.
        let rel = bytes_path(&entry.path);
        let converted = [
            "filter",
            "working-tree-encoding",
            "ident",
            "text",
            "eol",
            "crlf",
        ]
        .iter()
        .any(|attr| {
            repo.get_attr(&rel, attr, git2::AttrCheckFlags::FILE_THEN_INDEX)
                .map_or(true, |v| v.is_some())
        }) || repo.config().map_or(true, |c| {
            c.get_string("core.autocrlf")
                .is_ok_and(|v| !v.eq_ignore_ascii_case("false"))
        });
        if converted {
            return false;
        }
        std::fs::symlink_metadata(file).is_ok_and(|m| as_staged(&m, entry))
    }
    #[cfg(not(unix))]
    {
        let _ = (repo, entry, file, index_mtime);
        false
    }
}

/// The bytes of the working file `file` when git takes it for the blob `entry` staged
/// ([`stat_unchanged`]): read without following a link or waiting on a FIFO, and only if the
/// file read is still the one stat saw (same inode, size and times, before and after the read).
pub fn unchanged_bytes(
    repo: &git2::Repository,
    entry: &git2::IndexEntry,
    file: &Path,
    index_mtime: std::time::SystemTime,
) -> Option<Vec<u8>> {
    if !stat_unchanged(repo, entry, file, index_mtime) {
        return None;
    }
    #[cfg(unix)]
    {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(file)
            .ok()?;
        let size = u64::from(entry.file_size);
        // The file opened is the one the index describes, before the read and after it (a
        // write during the read changes its times).
        if !as_staged(&f.metadata().ok()?, entry) {
            return None;
        }
        let mut bytes = Vec::with_capacity(size as usize);
        (&f).take(size + 1).read_to_end(&mut bytes).ok()?;
        (bytes.len() as u64 == size && as_staged(&f.metadata().ok()?, entry)).then_some(bytes)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Whether a regular file's stat data is what the index recorded for `entry` (size, inode,
/// modification and change times: a rewrite in place can put the mtime back, not the ctime).
#[cfg(unix)]
fn as_staged(m: &std::fs::Metadata, entry: &git2::IndexEntry) -> bool {
    use std::os::unix::fs::MetadataExt;
    m.is_file()
        && m.len() == u64::from(entry.file_size)
        && m.ino() as u32 == entry.ino
        && m.mtime() == i64::from(entry.mtime.seconds())
        && m.mtime_nsec() == i64::from(entry.mtime.nanoseconds())
        && m.ctime() == i64::from(entry.ctime.seconds())
        && m.ctime_nsec() == i64::from(entry.ctime.nanoseconds())
}

#[cfg(unix)]
fn bytes_path(p: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository at `top` with a committed-looking bare skeleton in `top/app`.
    fn repo_with_skeleton() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().canonicalize().unwrap();
        git2::Repository::init(&top).unwrap();
        let app = top.join("app");
        for d in ["objects/info", "refs/heads", "envv"] {
            std::fs::create_dir_all(app.join(d)).unwrap();
        }
        std::fs::write(app.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        let found = git2::Repository::discover(&app).unwrap();
        assert_eq!(
            found.path().canonicalize().unwrap(),
            app,
            "libgit2 no longer takes the skeleton for a repository"
        );
        (dir, top, app)
    }

    #[test]
    fn open_finds_the_work_tree_at_the_top_and_below() {
        let (_dir, top, app) = repo_with_skeleton();
        for at in [&top, &app, &top.join("app/refs")] {
            let repo = open(at).unwrap();
            assert!(!repo.is_bare());
            assert_eq!(repo.workdir().unwrap().canonicalize().unwrap(), top);
        }
        assert_eq!(find_root(&top.join("app/refs")), top);
        assert_eq!(
            crate::policy::trust::TrustStore::path_for(&app).unwrap(),
            top.join(".git/envv/trusted")
        );
        assert_eq!(
            crate::policy::trust::TrustStore::path_for(&top).unwrap(),
            top.join(".git/envv/trusted")
        );
    }

    #[test]
    fn open_outside_git_and_bare_repositories_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(open(dir.path()).is_none());
        let bare = dir.path().join("bare.git");
        git2::Repository::init_bare(&bare).unwrap();
        assert!(open(&bare).is_none());
        assert!(crate::policy::trust::TrustStore::path_for(&bare).is_none());
    }
}
