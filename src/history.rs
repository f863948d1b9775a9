//! Per-key history of encrypted files, read from git without decrypting.
//!
//! envv keeps an unchanged value's ciphertext byte for byte, so comparing the stored text of a
//! key between a commit and its parent tells whether its value changed. A data-key rotation
//! re-encrypts every value at once; it is recognised (every encrypted value changed and every
//! wrapped data-key entry is new) and reported as a rotation instead of "every key changed".

use std::collections::BTreeMap;
use std::path::Path;

use crate::dotenv::{self, Line};
use crate::error::Result;

/// What one commit did to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChange {
    /// Path in the repository.
    pub file: String,
    pub commit: String,
    pub author: String,
    pub email: String,
    /// Seconds since the epoch (author time).
    pub time: i64,
    /// First line of the commit message.
    pub summary: String,
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    /// A new data key: these keys were re-encrypted (their values may or may not have changed).
    pub rotated: Vec<String>,
    /// The list of recipients changed.
    pub recipients_changed: bool,
}

impl FileChange {
    /// Whether the commit touched `key` (added, changed, removed or re-encrypted it).
    pub fn touches(&self, key: &str) -> bool {
        [&self.added, &self.changed, &self.removed, &self.rotated]
            .iter()
            .any(|v| v.iter().any(|k| k == key))
    }

    pub fn is_rotation(&self) -> bool {
        !self.rotated.is_empty()
    }
}

/// The data and metadata of one version of a file, as stored.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// key → stored value (last occurrence wins).
    pub values: BTreeMap<String, String>,
    /// Wrapped data-key entries (`sops_*__map_enc`), as stored.
    pub wrapped: Vec<String>,
    /// Recipients (`sops_*__map_recipient`), sorted.
    pub recipients: Vec<String>,
}

impl Snapshot {
    /// Reads stored bytes; unreadable files give an empty snapshot.
    pub fn parse(bytes: &[u8]) -> Self {
        let mut s = Snapshot::default();
        let Ok(lines) = dotenv::parse_stored("", bytes) else {
            return s;
        };
        for l in lines {
            if let Line::Pair { key, stored, .. } = l {
                if let Some(rest) = key.strip_prefix("sops_") {
                    if rest.ends_with("__map_enc") {
                        s.wrapped.push(stored);
                    } else if rest.ends_with("__map_recipient") {
                        s.recipients.push(stored);
                    }
                } else {
                    s.values.insert(key, stored);
                }
            }
        }
        s.recipients.sort();
        s
    }
}

/// Compares two versions of a file. `before` is `None` for a new file.
pub fn compare(
    before: Option<&Snapshot>,
    after: &Snapshot,
) -> (Vec<String>, Vec<String>, Vec<String>, Vec<String>, bool) {
    let empty = Snapshot::default();
    let b = before.unwrap_or(&empty);
    let mut added = Vec::new();
    let mut changed = Vec::new();
    let mut removed = Vec::new();
    let mut enc_changed = Vec::new();
    let mut enc_common = 0usize;
    for (k, v) in &after.values {
        match b.values.get(k) {
            None => added.push(k.clone()),
            Some(old) => {
                let encrypted = crate::sops::is_enc(old) && crate::sops::is_enc(v);
                if encrypted {
                    enc_common += 1;
                }
                if old != v {
                    if encrypted {
                        enc_changed.push(k.clone());
                    } else {
                        changed.push(k.clone());
                    }
                }
            }
        }
    }
    for k in b.values.keys() {
        if !after.values.contains_key(k) {
            removed.push(k.clone());
        }
    }
    let all_wrapped_new =
        !b.wrapped.is_empty() && b.wrapped.iter().all(|w| !after.wrapped.contains(w));
    let rotated = if enc_common > 0 && enc_changed.len() == enc_common && all_wrapped_new {
        enc_changed
    } else {
        changed.extend(enc_changed);
        changed.sort();
        Vec::new()
    };
    let recipients_changed = before.is_some() && b.recipients != after.recipients;
    (added, changed, removed, rotated, recipients_changed)
}

/// The commits (reachable from HEAD, newest first) that changed `path` (relative to the work
/// tree), with what each did to its keys. Merge commits that took one parent's version are
/// skipped, as `git log` does. At most `limit` commits are read.
pub fn file_history(repo: &git2::Repository, path: &str, limit: usize) -> Result<Vec<FileChange>> {
    let mut out = Vec::new();
    let Ok(head) = repo.head() else {
        return Ok(out);
    };
    let Some(head) = head.target() else {
        return Ok(out);
    };
    let mut walk = repo.revwalk()?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::TIME)?;
    walk.push(head)?;
    let p = Path::new(path);
    let entry_id = |c: &git2::Commit| {
        c.tree()
            .ok()
            .and_then(|t| t.get_path(p).ok())
            .map(|e| e.id())
    };
    for oid in walk.take(limit) {
        let commit = repo.find_commit(oid?)?;
        let now = entry_id(&commit);
        let parents: Vec<Option<git2::Oid>> = commit.parents().map(|pc| entry_id(&pc)).collect();
        if parents.contains(&now) {
            continue; // same as a parent: this commit did not change the file
        }
        if now.is_none() && parents.is_empty() {
            continue;
        }
        let snap = |id: Option<git2::Oid>| -> Option<Snapshot> {
            id.and_then(|i| repo.find_blob(i).ok())
                .map(|b| Snapshot::parse(b.content()))
        };
        let after = snap(now).unwrap_or_default();
        let before = parents
            .first()
            .copied()
            .flatten()
            .and_then(|i| snap(Some(i)));
        let (added, changed, removed, rotated, recipients_changed) =
            compare(before.as_ref(), &after);
        let sig = commit.author();
        out.push(FileChange {
            file: path.to_string(),
            commit: commit.id().to_string(),
            author: sig.name().unwrap_or("?").to_string(),
            email: sig.email().unwrap_or("").to_string(),
            time: sig.when().seconds(),
            summary: String::from_utf8_lossy(commit.summary_bytes().unwrap_or(b"")).into_owned(),
            added,
            changed,
            removed,
            rotated,
            recipients_changed,
        });
    }
    Ok(out)
}

/// For a rotation commit, the keys whose values really changed, when `ring` can open both the
/// commit's and its first parent's version of `path` (`None` otherwise). MACs are not checked:
/// this only compares values.
pub fn rotation_value_changes(
    repo: &git2::Repository,
    path: &str,
    commit: &str,
    ring: &mut crate::keys::Keyring,
) -> Option<Vec<String>> {
    let commit = repo.find_commit(git2::Oid::from_str(commit).ok()?).ok()?;
    let parent = commit.parent(0).ok()?;
    let read = |c: &git2::Commit| -> Option<Vec<u8>> {
        let id = c.tree().ok()?.get_path(Path::new(path)).ok()?.id();
        Some(repo.find_blob(id).ok()?.content().to_vec())
    };
    let mut open = |bytes: Vec<u8>| -> Option<BTreeMap<String, crate::secret::Secret>> {
        let f = crate::envfile::EnvFile::from_bytes(Path::new(path), path, &bytes).ok()?;
        let dk = f.unlock(ring, Vec::new).ok()?;
        let plain = f.decrypt(&dk, false).ok()?;
        let mut m = BTreeMap::new();
        for (i, l) in f.lines.iter().enumerate() {
            if let Line::Pair { key, .. } = l {
                m.insert(key.clone(), plain.values[i].clone().unwrap_or_default());
            }
        }
        Some(m)
    };
    let before = open(read(&parent)?)?;
    let after = open(read(&commit)?)?;
    Some(
        after
            .iter()
            .filter(|(k, v)| before.get(*k).is_some_and(|b| b != *v))
            .map(|(k, _)| k.clone())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(values: &[(&str, &str)], wrapped: &[&str]) -> Snapshot {
        Snapshot {
            values: values
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            wrapped: wrapped.iter().map(|w| w.to_string()).collect(),
            recipients: vec!["age1x".into()],
        }
    }

    const E1: &str = "ENC[AES256_GCM,data:a1";
    const E2: &str = "ENC[AES256_GCM,data:a2";
    const E3: &str = "ENC[AES256_GCM,data:b1";
    const E4: &str = "ENC[AES256_GCM,data:b2";

    #[test]
    fn changes_and_rotation() {
        let a = snap(&[("A", E1), ("B", E2), ("PORT", "1")], &["w1"]);
        let b = snap(&[("A", E3), ("B", E2), ("C", E1)], &["w1"]);
        let (added, changed, removed, rotated, _) = compare(Some(&a), &b);
        assert_eq!(
            (added, changed, removed, rotated),
            (
                vec!["C".to_string()],
                vec!["A".to_string()],
                vec!["PORT".to_string()],
                vec![]
            )
        );
        let r = snap(&[("A", E3), ("B", E4), ("PORT", "2")], &["w2"]);
        let (_, changed, _, rotated, _) = compare(Some(&a), &r);
        assert_eq!(rotated, vec!["A".to_string(), "B".to_string()]);
        assert_eq!(changed, vec!["PORT".to_string()]);
        // All values changed but the wrapped key stayed: real changes, not a rotation.
        let c = snap(&[("A", E3), ("B", E4), ("PORT", "1")], &["w1"]);
        let (_, changed, _, rotated, _) = compare(Some(&a), &c);
        assert!(rotated.is_empty());
        assert_eq!(changed.len(), 2);
    }
}
