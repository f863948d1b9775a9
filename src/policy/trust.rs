//! Who the person running envv has confirmed as a recipient, and who put a recipient into the
//! policy.
//!
//! Anyone who can push can add a member to `.sops.yaml`: a policy that names a recipient is no
//! reason to wrap a data key for them. A recipient is confirmed when the command names them with
//! their key, when they are one of the caller's own keys, or when this person confirmed them
//! before in this clone; a file that lists them counts only for a re-wrap of the same data key
//! (nothing authenticates the list). [`TrustStore`] is that record: `<git common dir>/envv/trusted`, outside the work
//! tree and never committed, like ssh's `known_hosts`. [`introductions`] walks the policy's git
//! history to say which commit made a recipient a reader of an environment, so that a person
//! (or CI) can see where an unconfirmed reader came from. Nothing here prints.

use std::path::{Path, PathBuf};

use crate::error::{IoContext, Result};
use crate::keys::same_recipient;
use crate::policy::{Policy, POLICY_FILE};

/// Largest trust file read (a bigger one is ignored: nothing is trusted).
const MAX_TRUST_BYTES: u64 = 1 << 20;

/// One confirmed recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trusted {
    /// The recipient text (`age1...`, `ssh-ed25519 AAAA...`).
    pub key: String,
    /// The member name it had when confirmed (for people reading the file).
    pub name: String,
    /// `YYYY-MM-DD` of the confirmation.
    pub date: String,
}

/// The recipients confirmed in this clone.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    /// `None` outside a git repository: nothing is remembered there.
    path: Option<PathBuf>,
    entries: Vec<Trusted>,
    /// Confirmed `public` patterns (see [`TrustStore::contains_pattern`]).
    patterns: Vec<TrustedPattern>,
}

impl TrustStore {
    /// The trust file of the clone holding `root` (`.git/envv/trusted`, shared by its worktrees).
    pub fn path_for(root: &Path) -> Option<PathBuf> {
        let repo = crate::git::open(root)?;
        Some(repo.commondir().join("envv").join("trusted"))
    }

    /// Reads the trust file of the clone holding `root` (empty when there is none).
    pub fn open(root: &Path) -> Self {
        let path = Self::path_for(root);
        let entries = path.as_deref().map(read_entries).unwrap_or_default();
        let patterns = path.as_deref().map(read_patterns).unwrap_or_default();
        TrustStore {
            path,
            entries,
            patterns,
        }
    }

    /// Where the store lives, if anywhere.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Whether `key` was confirmed.
    pub fn contains(&self, key: &str) -> bool {
        self.entries.iter().any(|e| same_recipient(&e.key, key))
    }

    /// The key last confirmed under member name `name`.
    pub fn key_of(&self, name: &str) -> Option<&str> {
        let e = self.entries.iter().rev().find(|e| e.name == name)?;
        Some(&e.key)
    }

    /// The confirmed recipients.
    pub fn entries(&self) -> &[Trusted] {
        &self.entries
    }

    /// Records `(name, key)` pairs as confirmed today and writes the file (atomically, 0600).
    /// Outside git nothing is written.
    pub fn record(&mut self, confirmed: &[(String, String)]) -> Result<()> {
        if self.path.is_none() {
            return Ok(());
        }
        let date = crate::policy::today().to_string();
        let mut changed = false;
        for (name, key) in confirmed {
            // Tabs and line breaks would break the format; keys and names never hold them.
            if key.contains(['\t', '\n', '\r']) || name.contains(['\t', '\n', '\r']) {
                continue;
            }
            if !self.contains(key) {
                self.entries.push(Trusted {
                    key: key.trim().to_string(),
                    name: name.clone(),
                    date: date.clone(),
                });
                changed = true;
            }
        }
        if !changed {
            return Ok(());
        }
        self.write()
    }

    fn write(&self) -> Result<()> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        let mut text = String::from(
            "# envv: recipients confirmed in this clone (never committed). One per line:\n# KEY<TAB>MEMBER NAME<TAB>DATE, or public<TAB>PATTERN<TAB>DATE for a confirmed `public` pattern.\n# Delete a line to be asked about that key or pattern again.\n",
        );
        for e in &self.entries {
            text.push_str(&format!("{}\t{}\t{}\n", e.key, e.name, e.date));
        }
        for p in &self.patterns {
            text.push_str(&format!("{PATTERN_TAG}\t{}\t{}\n", p.pattern, p.date));
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).at(dir)?;
        }
        crate::os::files::write_private(&path, text.as_bytes())
    }
}

impl TrustStore {
    /// Forgets `keys` (a removed or expired reader is asked about again if a commit brings
    /// them back) and writes the file when that changed it.
    pub fn forget(&mut self, keys: &[String]) -> Result<()> {
        let before = self.entries.len();
        self.entries
            .retain(|e| !keys.iter().any(|k| same_recipient(&e.key, k)));
        if self.entries.len() == before {
            return Ok(());
        }
        self.write()
    }
}

/// A `public` pattern of `.sops.yaml` confirmed in this clone: values of keys it matches may
/// be stored in plain text. Anyone who can push can widen `public` too, so a pattern counts only
/// once this person confirmed it (or wrote it through envv).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedPattern {
    /// The regex, exactly as written in `public`.
    pub pattern: String,
    /// `YYYY-MM-DD` of the confirmation.
    pub date: String,
}

/// First field of a pattern line (`public<TAB>REGEX<TAB>DATE`). It is no recipient, so an envv
/// that knows only recipient lines skips it.
const PATTERN_TAG: &str = "public";

impl TrustStore {
    /// Whether the `public` pattern `pattern` was confirmed (compared as written).
    pub fn contains_pattern(&self, pattern: &str) -> bool {
        self.patterns.iter().any(|p| p.pattern == pattern)
    }

    /// Records `public` patterns as confirmed today and writes the file when that changed it.
    /// Outside git nothing is written; a pattern with a tab or line break is never recorded.
    pub fn record_patterns(&mut self, patterns: &[String]) -> Result<()> {
        if self.path.is_none() {
            return Ok(());
        }
        let date = crate::policy::today().to_string();
        let mut changed = false;
        for p in patterns {
            if p.is_empty() || p.contains(['\t', '\n', '\r']) || self.contains_pattern(p) {
                continue;
            }
            self.patterns.push(TrustedPattern {
                pattern: p.clone(),
                date: date.clone(),
            });
            changed = true;
        }
        if !changed {
            return Ok(());
        }
        self.write()
    }
}

/// The trust file's text; `None` when it is missing, not a regular file, too large or not
/// UTF-8 (then nothing counts as confirmed).
fn read_trust_file(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.len() > MAX_TRUST_BYTES {
        return None;
    }
    std::fs::read_to_string(path).ok()
}

fn read_patterns(path: &Path) -> Vec<TrustedPattern> {
    let Some(text) = read_trust_file(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut parts = l.split('\t');
            if parts.next()? != PATTERN_TAG {
                return None;
            }
            let pattern = parts.next().filter(|p| !p.is_empty())?.to_string();
            Some(TrustedPattern {
                pattern,
                date: parts.next().unwrap_or("").to_string(),
            })
        })
        .collect()
}

fn read_entries(path: &Path) -> Vec<Trusted> {
    let Some(text) = read_trust_file(path) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut parts = l.split('\t');
            let key = parts.next()?.trim().to_string();
            crate::keys::Recipient::parse(&key).ok()?;
            Some(Trusted {
                key,
                name: parts.next().unwrap_or("").to_string(),
                date: parts.next().unwrap_or("").to_string(),
            })
        })
        .collect()
}

/// The commit that made a recipient a reader of an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Introduced {
    /// Full commit id.
    pub commit: String,
    /// The commit's author name.
    pub author: String,
    /// Commit time (seconds since the epoch).
    pub time: i64,
    /// History is cut there (shallow clone): the recipient was a reader at least since then.
    pub at_least: bool,
}

impl Introduced {
    /// The commit id shortened for messages.
    pub fn short(&self) -> &str {
        &self.commit[..self.commit.len().min(8)]
    }

    /// `YYYY-MM-DD` of the commit.
    pub fn date(&self) -> String {
        crate::git::history::date(self.time)
    }
}

/// The repository of `root` and the walk over its `.sops.yaml`'s committed versions, newest
/// first (`None` outside git or without history).
fn policy_history(root: &Path) -> Option<(git2::Repository, crate::git::history::Walk)> {
    let repo = crate::git::open(root)?;
    let rel = policy_path_in_repo(&repo, root)?;
    let w = crate::git::history::walk(&repo, &[rel], crate::git::history::MAX_COMMITS).ok()?;
    Some((repo, w))
}

/// For each `(environment, recipient)`, the newest commit on HEAD's first-parent history from
/// which `.sops.yaml` (in `root`) has made that recipient a reader of that environment without
/// interruption (for an environment HEAD does not declare yet: a member). `None`: HEAD's
/// policy does not do so (only the working tree does: not committed), or there is no git
/// history. The versions come from [`crate::git::history::walk`]; each is parsed once.
pub fn introductions(root: &Path, queries: &[(String, String)]) -> Vec<Option<Introduced>> {
    let mut by_member = vec![false; queries.len()];
    unbroken_since(root, queries, |n, policy, i, (env, key)| {
        if n == 0 {
            // An environment HEAD does not declare (a new one in the working tree): ask since
            // when the key is a member at all.
            by_member[i] = !policy.is_some_and(|p| p.environments.contains_key(env));
        }
        policy.is_some_and(|p| {
            if by_member[i] {
                p.members.values().any(|m| same_recipient(&m.key, key))
            } else {
                p.recipients(env)
                    .iter()
                    .any(|r| same_recipient(&r.text, key))
            }
        })
    })
}

/// For each query, the oldest commit of the unbroken run of policy versions, from HEAD back,
/// for which `holds(n, policy, i, query)` is true (`n` counts versions from HEAD's, `i` is the
/// query's index); `None` when HEAD's version does not hold.
fn unbroken_since<Q>(
    root: &Path,
    queries: &[Q],
    mut holds: impl FnMut(usize, Option<&Policy>, usize, &Q) -> bool,
) -> Vec<Option<Introduced>> {
    let mut out = vec![None; queries.len()];
    if queries.is_empty() {
        return out;
    }
    let Some((repo, w)) = policy_history(root) else {
        return out;
    };
    let mut done = vec![false; queries.len()];
    for (n, v) in w.versions[0].iter().enumerate() {
        if done.iter().all(|d| *d) {
            break;
        }
        let policy = v.blob.and_then(|id| {
            let blob = repo.find_blob(id).ok()?;
            crate::policy::parse(POLICY_FILE, blob.content()).ok()
        });
        let c = &w.commits[v.commit];
        for (i, q) in queries.iter().enumerate() {
            if done[i] {
                continue;
            }
            if holds(n, policy.as_ref(), i, q) {
                out[i] = Some(Introduced {
                    commit: c.id.clone(),
                    author: c.author.clone(),
                    time: c.time,
                    at_least: v.boundary,
                });
            } else {
                done[i] = true;
            }
        }
    }
    out
}

/// Every `(member name, key)` the committed policy ever named, newest first (for naming readers
/// who are gone from the current policy).
pub fn former_members(root: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let Some((repo, w)) = policy_history(root) else {
        return out;
    };
    for v in &w.versions[0] {
        let Some(p) = v.blob.and_then(|id| {
            let blob = repo.find_blob(id).ok()?;
            crate::policy::parse(POLICY_FILE, blob.content()).ok()
        }) else {
            continue;
        };
        for (n, m) in p.members.iter().chain(&p.pending) {
            if !out.iter().any(|(_, k)| same_recipient(k, &m.key)) {
                out.push((n.clone(), m.key.clone()));
            }
        }
    }
    out
}

/// The policy of `root` as committed at HEAD (`None` outside git, before the first commit, or
/// when it does not parse).
pub fn policy_at_head(root: &Path) -> Option<Policy> {
    let repo = crate::git::open(root)?;
    let rel = policy_path_in_repo(&repo, root)?;
    let tree = repo.head().ok()?.peel_to_tree().ok()?;
    let entry = tree.get_path(&rel).ok()?;
    let blob = repo.find_blob(entry.id()).ok()?;
    crate::policy::parse(POLICY_FILE, blob.content()).ok()
}

/// For each `public` pattern, the newest commit on HEAD's first-parent history from which
/// `.sops.yaml` (in `root`) has had that pattern in `public` without interruption. `None`: HEAD's
/// policy does not have it (only the working tree does), or there is no git history.
pub fn pattern_introductions(root: &Path, patterns: &[String]) -> Vec<Option<Introduced>> {
    unbroken_since(root, patterns, |_, policy, _, pattern| {
        policy.is_some_and(|p| p.public.contains(pattern))
    })
}
/// `.sops.yaml` of `root` as a path inside the repository.
pub fn policy_path_in_repo(repo: &git2::Repository, root: &Path) -> Option<PathBuf> {
    let workdir = repo.workdir()?.canonicalize().ok()?;
    let root = root.canonicalize().ok()?;
    Some(root.strip_prefix(&workdir).ok()?.join(POLICY_FILE))
}

/// Resolves a trusted ref without git's short-name order, in which a tag `origin/main` (which a
/// pull request can bring along) comes before the remote branch `refs/remotes/origin/main`: a
/// full `refs/...` name is taken as it is, a commit id as a commit id, and a short name must
/// match exactly one of `refs/remotes/`, `refs/heads/` and `refs/tags/`.
fn resolve_trusted_ref<'r>(repo: &'r git2::Repository, rev: &str) -> Result<git2::Object<'r>> {
    use crate::error::Error;
    let missing = || {
        Error::usage(format!(
            "--trusted-ref {rev}: no such branch, tag or commit here (fetch it first, e.g. `git fetch origin main`)"
        ))
    };
    let candidates: Vec<String> = if rev.starts_with("refs/") {
        vec![rev.to_string()]
    } else {
        ["refs/remotes/", "refs/heads/", "refs/tags/"]
            .iter()
            .map(|p| format!("{p}{rev}"))
            .collect()
    };
    let found: Vec<(String, git2::Object<'r>)> = candidates
        .into_iter()
        .filter_map(|name| {
            let r = repo.find_reference(&name).ok()?;
            let o = r.peel(git2::ObjectType::Commit).ok()?;
            Some((name, o))
        })
        .collect();
    let is_hex = rev.len() >= 7 && rev.len() <= 64 && rev.bytes().all(|b| b.is_ascii_hexdigit());
    match (found.len(), is_hex) {
        (0, true) => repo
            .revparse_single(rev)
            .ok()
            .filter(|o| o.kind() == Some(git2::ObjectType::Commit))
            .ok_or_else(missing),
        (0, false) => Err(missing()),
        (1, false) => Ok(found.into_iter().next().expect("one").1),
        _ => Err(Error::usage_hint(
            format!(
                "--trusted-ref {rev} is ambiguous here ({}{})",
                found
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                if is_hex { ", and a commit id" } else { "" }
            ),
            format!("name it in full, e.g. --trusted-ref refs/remotes/{rev}"),
        )),
    }
}

/// The policy as committed at `rev` (a branch, tag or commit), for `check --trusted-ref`.
pub fn policy_at(root: &Path, rev: &str) -> Result<Policy> {
    use crate::error::Error;
    let repo = crate::git::open(root)
        .ok_or_else(|| Error::usage("--trusted-ref needs a git repository"))?;
    let rel = policy_path_in_repo(&repo, root)
        .ok_or_else(|| Error::usage(format!("cannot place {POLICY_FILE} in the repository")))?;
    let tree = resolve_trusted_ref(&repo, rev)?
        .peel_to_tree()
        .map_err(|e| Error::Git(e.message().to_string()))?;
    let entry = tree.get_path(&rel).map_err(|_| {
        Error::usage(format!(
            "--trusted-ref {rev}: {} does not exist at {rev}",
            rel.display()
        ))
    })?;
    // A symlink (or anything but a plain file) could point at the pull request's own text.
    if entry.kind() != Some(git2::ObjectType::Blob) || entry.filemode() & 0o170000 != 0o100000 {
        return Err(Error::usage(format!(
            "--trusted-ref {rev}: {} is not a regular file at {rev}",
            rel.display()
        )));
    }
    let blob = repo
        .find_blob(entry.id())
        .map_err(|e| Error::Git(e.message().to_string()))?;
    crate::policy::parse(&format!("{rev}:{}", rel.display()), blob.content())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "age1y7hpnjewjmlg9hz7yycl7mendl9zfzlgr7gh56px4tdrn7fvxehscrzh38";

    #[test]
    fn store_round_trips_and_ignores_junk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("envv/trusted");
        let mut s = TrustStore {
            path: Some(path.clone()),
            ..Default::default()
        };
        assert!(!s.contains(ALICE));
        s.record(&[("alice".into(), ALICE.into())]).unwrap();
        s.record(&[("alice".into(), ALICE.into())]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches(ALICE).count(), 1, "{text}");
        std::fs::write(&path, format!("{text}not-a-key\tx\t1\n")).unwrap();
        let back = read_entries(&path);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].name, "alice");
    }

    #[test]
    fn patterns_round_trip_beside_recipients() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("envv/trusted");
        let mut s = TrustStore {
            path: Some(path.clone()),
            ..Default::default()
        };
        s.record(&[("alice".into(), ALICE.into())]).unwrap();
        s.record_patterns(&["^PORT$".into(), "bad\tone".into()])
            .unwrap();
        let back = TrustStore {
            path: Some(path.clone()),
            entries: read_entries(&path),
            patterns: read_patterns(&path),
        };
        assert!(back.contains(ALICE));
        assert!(back.contains_pattern("^PORT$"));
        assert!(!back.contains_pattern(".*_KEY$"));
        assert!(!back.contains_pattern("bad\tone"));
        // A file written before patterns existed reads the same, and a pattern line is no
        // recipient for a reader that knows only recipient lines.
        assert_eq!(read_entries(&path).len(), 1);
    }
}
