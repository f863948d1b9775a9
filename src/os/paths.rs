//! The paths a repository names, confined to its working tree.
//!
//! A pusher controls `.sops.yaml`, every file name and every symlink in the repository, so a
//! path that comes from the policy (or a `-f` path inside the repository) is walked component by
//! component before envv reads or writes it. Refused, with an error naming the path: an absolute
//! path, `..` that climbs out of the policy's folder, a symlink (of the file or of a folder on
//! the way) whose target leaves the working tree, and anything that is not a regular file
//! (device, FIFO, socket, folder). Reads are bounded by the bytes actually read, never by
//! `metadata().len()`, which is 0 for `/dev/zero`. Writes never follow or replace a link
//! ([`refuse_link`], used by `fsutil`).

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// Largest file envv reads as a dotenv file or policy (a dotenv file this size is a mistake).
pub const MAX_READ_BYTES: u64 = 64 << 20;

/// The working tree holding `root`: the nearest folder at or above it with a `.git` entry,
/// else `root` itself, as spelled (`.0`) and canonical (`.1`, symlinks resolved).
pub fn boundary(root: &Path) -> (PathBuf, PathBuf) {
    let mut dir = Some(root);
    let mut lexical = root.to_path_buf();
    while let Some(d) = dir {
        if d.join(".git").exists() {
            lexical = d.to_path_buf();
            break;
        }
        dir = d.parent();
    }
    let real = lexical.canonicalize().unwrap_or_else(|_| lexical.clone());
    (lexical, real)
}

fn refused(name: &str, msg: impl Into<String>) -> Error {
    Error::Path {
        file: name.to_string(),
        msg: msg.into(),
    }
}

/// Resolves `rel`, a path the policy gives relative to its folder `root`, to the path envv
/// uses. Refuses what leaves the working tree (see the module doc); a file that does not exist
/// yet is fine (its folders, where they exist, are checked).
pub fn resolve(root: &Path, rel: &str) -> Result<PathBuf> {
    let name = rel.trim_start_matches("./");
    let p = Path::new(name);
    if p.is_absolute() || name.is_empty() {
        return Err(refused(
            name,
            "an absolute or empty path in the policy: environment files are paths inside the repository, relative to .sops.yaml",
        ));
    }
    // Lexical `..` first: it may not climb above the policy's folder.
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s),
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(refused(
                        name,
                        "`..` leads out of the repository: environment files are paths inside it",
                    ));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(refused(name, "an absolute path in the policy: environment files are paths inside the repository"));
            }
        }
    }
    if parts.is_empty() {
        // `a/..` (found by fuzzing): the repository folder itself, not a file in it.
        return Err(refused(
            name,
            "names a folder, not a file: environment files are files inside the repository",
        ));
    }
    let (_, inside) = boundary(root);
    check_walk(root, &parts, &inside, name)?;
    Ok(parts.iter().fold(root.to_path_buf(), |acc, s| acc.join(s)))
}

/// Checks `path` (absolute, lexically normalised) when it lies inside the working tree of
/// `root`: `Ok(true)` when it was checked, `Ok(false)` when it is outside (an explicit path the
/// user named, allowed for reading).
pub fn check_inside(root: &Path, path: &Path) -> Result<bool> {
    let (lexical, inside) = boundary(root);
    let Ok(rel) = path
        .strip_prefix(&lexical)
        .or_else(|_| path.strip_prefix(&inside))
    else {
        return Ok(false);
    };
    let parts: Vec<&std::ffi::OsStr> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s),
            _ => None,
        })
        .collect();
    check_walk(&inside, &parts, &inside, &rel.to_string_lossy())?;
    Ok(true)
}

/// Walks `parts` from `base`: every symlink on the way must resolve inside `inside`, and the
/// last component, if it exists, must be a regular file.
fn check_walk(base: &Path, parts: &[&std::ffi::OsStr], inside: &Path, name: &str) -> Result<()> {
    let mut cur = base.canonicalize().unwrap_or_else(|_| base.to_path_buf());
    for (i, part) in parts.iter().enumerate() {
        let next = cur.join(part);
        let meta = match std::fs::symlink_metadata(&next) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(&next, e)),
        };
        let last = i + 1 == parts.len();
        let what = if last {
            String::new()
        } else {
            format!("the folder {} ", shown(&next, base))
        };
        if meta.file_type().is_symlink() {
            let real = match next.canonicalize() {
                Ok(r) => r,
                Err(_) => {
                    return Err(refused(
                        name,
                        format!(
                            "{what}is a symlink to nothing (or to a loop): envv does not follow it"
                        ),
                    ))
                }
            };
            if !real.starts_with(inside) {
                return Err(refused(
                    name,
                    format!(
                        "{what}is a symlink that leads out of the repository: envv reads and writes only files inside the working tree (replace the link with the file itself)"
                    ),
                ));
            }
            cur = real;
        } else {
            cur = next;
        }
        if last {
            let m = std::fs::metadata(&cur).map_err(|e| Error::io(&cur, e))?;
            if !m.is_file() {
                return Err(not_regular(name, &m));
            }
        }
    }
    Ok(())
}

fn shown(p: &Path, base: &Path) -> String {
    let b = base.canonicalize().unwrap_or_else(|_| base.to_path_buf());
    p.strip_prefix(&b).unwrap_or(p).display().to_string()
}

fn not_regular(name: &str, m: &std::fs::Metadata) -> Error {
    let kind = describe(m);
    refused(
        name,
        format!("is {kind}, not a regular file: envv reads and writes only regular files"),
    )
}

fn describe(m: &std::fs::Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_dir() {
        return "a folder";
    }
    if t.is_symlink() {
        return "a symbolic link";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
    }
    "a special file"
}

/// Reads a regular file, at most [`MAX_READ_BYTES`]. `name` is used in messages. A missing
/// file is an `Io` error of kind `NotFound` (callers map it). A FIFO is opened without
/// blocking and refused; a device is refused before a byte is read.
pub fn read_bounded(path: &Path, name: &str) -> Result<Vec<u8>> {
    let mut o = std::fs::OpenOptions::new();
    o.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Opening a FIFO for reading would wait for a writer.
        o.custom_flags(libc::O_NONBLOCK);
    }
    let f = o.open(path).map_err(|e| Error::io(path, e))?;
    let m = f.metadata().map_err(|e| Error::io(path, e))?;
    if !m.is_file() {
        return Err(not_regular(name, &m));
    }
    let mut bytes = Vec::with_capacity((m.len().min(MAX_READ_BYTES) as usize) + 1);
    f.take(MAX_READ_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > MAX_READ_BYTES {
        return Err(Error::format(
            name,
            format!(
                "larger than {} MiB; refusing to read it as a dotenv file",
                MAX_READ_BYTES >> 20
            ),
        ));
    }
    Ok(bytes)
}

/// Refuses to write `path` when it is a symlink or not a regular file: a write never follows a
/// link, and the atomic rename never replaces one.
pub fn refuse_link(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(refused(
            &path.display().to_string(),
            "is a symbolic link: envv never writes through or replaces a link (replace it with the file itself)",
        )),
        Ok(m) if !m.is_file() => Err(not_regular(&path.display().to_string(), &m)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_links_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let repo = t.path().join("repo");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        std::fs::create_dir_all(t.path().join("other")).unwrap();
        std::fs::write(t.path().join("other/.env"), "A=1\n").unwrap();
        assert!(resolve(&repo, "../other/.env").is_err());
        assert!(resolve(&repo, "/etc/passwd").is_err());
        assert!(resolve(&repo, "a/../.env").is_ok());
        assert!(resolve(&repo, "a/../").is_err(), "the folder itself");
        assert!(resolve(&repo, "missing/dir/.env").is_ok());
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("../other", repo.join("sib")).unwrap();
            std::os::unix::fs::symlink("../other/.env", repo.join(".env.shared")).unwrap();
            std::fs::write(repo.join(".env"), "A=1\n").unwrap();
            std::os::unix::fs::symlink(".env", repo.join(".env.alias")).unwrap();
            let e = resolve(&repo, "sib/.env").unwrap_err().to_string();
            assert!(
                e.contains("sib") && e.contains("out of the repository"),
                "{e}"
            );
            assert!(resolve(&repo, ".env.shared").is_err());
            assert!(
                resolve(&repo, ".env.alias").is_ok(),
                "a link inside is read"
            );
            assert!(refuse_link(&repo.join(".env.alias")).is_err());
            assert!(refuse_link(&repo.join(".env")).is_ok());
            std::os::unix::fs::symlink("/dev/zero", repo.join(".env.zero")).unwrap();
            assert!(resolve(&repo, ".env.zero").is_err());
            let e = read_bounded(Path::new("/dev/zero"), "z").unwrap_err();
            assert!(e.to_string().contains("device"), "{e}");
        }
    }
}
