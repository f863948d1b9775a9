//! The one reader of git history: which commit did what to which key, reader and data key.
//!
//! `ls` and `check` date values with it, `log` lists its events, `access` and the trust checks
//! name the commits that granted and revoked readers. One walk, one set of rules:
//!
//! - History is HEAD's first-parent chain (a merge counts when it landed), at most
//!   [`MAX_COMMITS`] commits, read through libgit2 without decrypting.
//! - A file's versions are the commits where its blob id changed (tree lookups only); each blob
//!   is read once and split with [`StoredFile`], as the store reads a file.
//! - envv keeps an unchanged value's ciphertext byte for byte, so a changed `ENC[...]` text is
//!   a changed value. A data-key change re-encrypts every value at once; it is recognised
//!   (every encrypted value changed and every wrapped data-key entry is new) and reported as
//!   such instead of "every key changed"; it does not date a value.
//! - A value is dated by the newest commit that added or changed it. A value that differs
//!   between the working tree and HEAD is "not committed".
//! - `scan --history` reads every commit reachable from any ref ([`every_commit`]) and
//!   `import` asks whether a file was ever committed ([`commit_holding`]): no other module
//!   walks commits.
//! - A shallow clone (or the commit limit) cuts history: the oldest version reached is a
//!   boundary whose keys and readers were present, not added, and dates from it are lower
//!   bounds.

use super::pack::{self, Blobs};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::Result;
use crate::format::dotenv::{self, Line};
use crate::store::file::StoredFile;

/// Commits read at most by one walk.
pub const MAX_COMMITS: usize = 20_000;

/// A commit that wrote a version of some file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// Full commit id.
    pub id: String,
    /// Author name, without control characters (it is the pusher's text).
    pub author: String,
    /// Author email, without control characters, at most 200 characters.
    pub email: String,
    /// Author time, seconds since the epoch.
    pub time: i64,
    /// First line of the message, without control characters.
    pub summary: String,
}

impl CommitInfo {
    fn of(c: &git2::Commit) -> Self {
        let clean = |s: &str, n: usize| -> String {
            s.chars().filter(|c| !c.is_control()).take(n).collect()
        };
        let sig = c.author();
        CommitInfo {
            id: c.id().to_string(),
            author: clean(&String::from_utf8_lossy(sig.name_bytes()), 100),
            email: clean(&String::from_utf8_lossy(sig.email_bytes()), 200),
            time: sig.when().seconds(),
            summary: clean(
                &String::from_utf8_lossy(c.summary_bytes().unwrap_or(b"")),
                200,
            ),
        }
    }

    /// The commit id shortened for messages.
    pub fn short(&self) -> &str {
        &self.id[..self.id.len().min(8)]
    }

    /// `YYYY-MM-DD` of the commit.
    pub fn date(&self) -> String {
        date(self.time)
    }
}

/// `YYYY-MM-DD` of a time in seconds since the epoch.
pub fn date(ts: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts)
        .map(|t| t.date().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// One version of a file: the commit that wrote it and its blob (`None`: the commit deleted it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    /// Index into [`Walk::commits`].
    pub commit: usize,
    /// The file's blob at that commit; `None` when the commit deleted the file.
    pub blob: Option<git2::Oid>,
    /// The oldest version reached by a cut history (shallow clone, commit limit): the file
    /// existed, but the commit did not necessarily create it.
    pub boundary: bool,
}

/// Where a walk stopped before the first commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// The clone is shallow (else: the commit limit).
    pub shallow: bool,
    /// The oldest commit read.
    pub oldest: CommitInfo,
}

/// The versions of some files on HEAD's first-parent chain.
#[derive(Debug, Clone, Default)]
pub struct Walk {
    /// Commits that wrote a version, in walk order (newest first).
    pub commits: Vec<Arc<CommitInfo>>,
    /// Per path asked, its versions, newest first.
    pub versions: Vec<Vec<Version>>,
    /// `Some` when history was cut.
    pub cut: Option<Cut>,
}

/// A path of the work tree (`root`-relative) as a path inside the repository.
pub fn repo_path(repo: &git2::Repository, root: &Path, rel: &str) -> PathBuf {
    let rel = rel.trim_start_matches("./");
    let Some(workdir) = repo.workdir().and_then(|w| w.canonicalize().ok()) else {
        return PathBuf::from(rel);
    };
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    root.join(rel)
        .strip_prefix(&workdir)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| PathBuf::from(rel))
}

/// Lists the versions of `paths` (inside the repository) on HEAD's first-parent chain, reading
/// at most `limit` commits. Nothing is decrypted and no blob is read.
pub fn walk(repo: &git2::Repository, paths: &[PathBuf], limit: usize) -> Result<Walk> {
    let mut w = Walk {
        versions: vec![Vec::new(); paths.len()],
        ..Walk::default()
    };
    let Some(head) = repo.head().ok().and_then(|h| h.target()) else {
        return Ok(w);
    };
    // Objects are only read here, to compare versions: re-hashing every object read
    // (libgit2's default) would cost more than the rest of the walk.
    git2::opts::strict_hash_verification(false);
    let shallow_roots = shallow_roots(repo);
    let mut revwalk = repo.revwalk()?;
    revwalk.push(head)?;
    revwalk.simplify_first_parent()?;
    let ids = |c: &git2::Commit| -> Vec<Option<git2::Oid>> {
        let tree = c.tree().ok();
        paths
            .iter()
            .map(|p| {
                tree.as_ref()
                    .and_then(|t| t.get_path(p).ok())
                    .map(|e| e.id())
            })
            .collect()
    };
    // The newer commit and its entries, compared with its first parent when that is read.
    let mut newer: Option<(git2::Commit, Vec<Option<git2::Oid>>)> = None;
    let mut cut_by_limit = false;
    for (read, oid) in revwalk.enumerate() {
        if read >= limit.max(1) {
            cut_by_limit = true;
            break;
        }
        let commit = repo.find_commit(oid?)?;
        let now = ids(&commit);
        if let Some((c, before)) = newer.take() {
            record(&mut w, &c, &before, Some(&now), false);
        }
        newer = Some((commit, now));
    }
    if let Some((c, entries)) = newer {
        let shallow = shallow_roots.contains(&c.id());
        let cut = cut_by_limit || shallow;
        record(&mut w, &c, &entries, None, cut);
        if cut {
            w.cut = Some(Cut {
                shallow: !cut_by_limit,
                oldest: CommitInfo::of(&c),
            });
        }
    }
    Ok(w)
}

/// Records the versions `c` wrote (its `entries` differ from its parent's `parent`; no parent:
/// every existing entry is new, or a boundary when history is cut).
fn record(
    w: &mut Walk,
    c: &git2::Commit,
    entries: &[Option<git2::Oid>],
    parent: Option<&[Option<git2::Oid>]>,
    boundary: bool,
) {
    let mut idx = None;
    for (i, e) in entries.iter().enumerate() {
        let changed = match parent {
            Some(p) => p[i] != *e,
            None => e.is_some(),
        };
        if changed {
            let commit = *idx.get_or_insert_with(|| {
                w.commits.push(Arc::new(CommitInfo::of(c)));
                w.commits.len() - 1
            });
            w.versions[i].push(Version {
                commit,
                blob: *e,
                boundary: boundary && parent.is_none(),
            });
        }
    }
}

/// Every commit reachable from any ref or HEAD (not only the first-parent chain), parents
/// before children: for searches of all history (`scan --history`).
pub fn every_commit(
    repo: &git2::Repository,
) -> Result<impl Iterator<Item = std::result::Result<git2::Oid, git2::Error>> + '_> {
    let mut walk = repo.revwalk()?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)?;
    let _ = walk.push_glob("*");
    let _ = walk.push_head();
    Ok(walk)
}

/// A commit reachable from any ref or HEAD whose tree holds `path` (inside the repository),
/// newest first; `None` if the file was never committed.
pub fn commit_holding(repo: &git2::Repository, path: &Path) -> Option<git2::Oid> {
    let mut walk = repo.revwalk().ok()?;
    walk.push_glob("refs/*").ok()?;
    let _ = walk.push_head();
    walk.flatten().find(|oid| {
        repo.find_commit(*oid)
            .ok()
            .and_then(|c| c.tree().ok())
            .is_some_and(|t| t.get_path(path).is_ok())
    })
}

/// The commits a shallow clone has no parents for (`.git/shallow`).
fn shallow_roots(repo: &git2::Repository) -> HashSet<git2::Oid> {
    if !repo.is_shallow() {
        return HashSet::new();
    }
    std::fs::read_to_string(repo.commondir().join("shallow"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| git2::Oid::from_str(l.trim()).ok())
        .collect()
}

/// The data and metadata of one version of a file, as stored.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// key → stored value (last occurrence wins).
    pub values: HashMap<String, String>,
    /// Wrapped data-key entries (`sops_*__map_enc`), as stored.
    pub wrapped: Vec<String>,
    /// Recipients (`sops_*__map_recipient`), sorted.
    pub recipients: Vec<String>,
    /// The stored `sops_mac`; `None` when the file has none.
    pub mac: Option<String>,
    /// The stored `sops_lastmodified`; `None` when the file has none.
    pub lastmodified: Option<String>,
    /// The stored rotation proof; `None` when the file has none.
    pub proof: Option<String>,
}

impl Snapshot {
    /// Reads stored bytes; unreadable files give an empty snapshot.
    pub fn parse(bytes: &[u8]) -> Self {
        Self::parse_checked(bytes).0
    }

    /// [`Snapshot::parse`], and whether the bytes parse.
    fn parse_checked(bytes: &[u8]) -> (Self, bool) {
        let (s, known) = Self::parse_known(bytes);
        (s, matches!(known, Known::Keys(_)))
    }

    /// [`Snapshot::parse`], and what [`compare_lines`] needs to know of the version.
    fn parse_known(bytes: &[u8]) -> (Self, Known) {
        let mut s = Snapshot::default();
        let Ok(file) = StoredFile::parse("", bytes) else {
            return (s, Known::Unparsable);
        };
        s.values.reserve(file.lines.len());
        let mut counts = KeyCounts::with_capacity(file.lines.len());
        for l in file.lines {
            if let Line::Pair { key, stored, .. } = l {
                *counts.entry(key.clone()).or_default() += 1;
                s.values.insert(key, stored);
            }
        }
        for (key, stored) in file.meta_pairs {
            let rest = &key["sops_".len()..];
            if rest.ends_with("__map_enc") {
                s.wrapped.push(stored);
            } else if rest.ends_with("__map_recipient") {
                s.recipients.push(stored);
            } else if rest == "mac" {
                s.mac = Some(stored);
            } else if rest == "lastmodified" {
                s.lastmodified = Some(stored);
            } else if key == crate::format::sops::ROTATION_PROOF_KEY {
                s.proof = Some(stored);
            }
        }
        s.recipients.sort();
        (s, Known::Keys(counts))
    }
}

/// How many lines each key (not `sops_` metadata) has in a version.
type KeyCounts = HashMap<String, u32>;

/// What is known of a version besides its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Known {
    /// Nothing (it has not been parsed).
    Unknown,
    /// It does not parse (it reads as an empty file).
    Unparsable,
    /// It parses, with these lines per key.
    Keys(KeyCounts),
}

/// What one version of a file did, compared with the version before it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileEvent {
    /// Index into [`Walk::commits`].
    #[serde(skip)]
    pub commit: usize,
    /// Keys present in this version and absent from the one before (all keys of a first version).
    pub added: Vec<String>,
    /// Keys whose stored text changed (their value changed).
    pub changed: Vec<String>,
    /// Keys present in the version before and absent from this one.
    pub removed: Vec<String>,
    /// The data key changed: these keys were re-encrypted (values unknown without a key).
    pub rekeyed: Vec<String>,
    /// Whether the data key changed (also when no value is encrypted yet).
    pub data_key_changed: bool,
    /// Recipients the data key is newly wrapped for, and no longer wrapped for.
    pub recipients_added: Vec<String>,
    /// Recipients the version before wrapped the data key for and this one no longer does.
    pub recipients_removed: Vec<String>,
    /// The oldest version of a cut history: its keys and readers were present, not added.
    #[serde(skip)]
    pub boundary: bool,
    /// The commit deleted the file.
    pub deleted: bool,
}

impl FileEvent {
    /// Whether the event added, changed, removed or re-encrypted `key`.
    pub fn touches(&self, key: &str) -> bool {
        [&self.added, &self.changed, &self.removed, &self.rekeyed]
            .iter()
            .any(|v| v.iter().any(|k| k == key))
    }

    /// Whether the event set `key`'s value (added or changed it).
    pub fn sets(&self, key: &str) -> bool {
        self.added.iter().chain(&self.changed).any(|k| k == key)
    }

    /// Whether the event granted or revoked a reader.
    pub fn is_access(&self) -> bool {
        !self.recipients_added.is_empty() || !self.recipients_removed.is_empty()
    }
}

/// Compares two versions of a file. `before` is `None` for a new file.
pub fn compare(before: Option<&Snapshot>, after: &Snapshot) -> FileEvent {
    let empty = Snapshot::default();
    let b = before.unwrap_or(&empty);
    let mut e = FileEvent::default();
    let mut enc_changed = Vec::new();
    let mut enc_common = 0usize;
    for (k, v) in &after.values {
        match b.values.get(k) {
            None => e.added.push(k.clone()),
            Some(old) => {
                let encrypted = crate::format::sops::is_enc(old) && crate::format::sops::is_enc(v);
                if encrypted {
                    enc_common += 1;
                }
                if old != v {
                    if encrypted {
                        enc_changed.push(k.clone());
                    } else {
                        e.changed.push(k.clone());
                    }
                }
            }
        }
    }
    for k in b.values.keys() {
        if !after.values.contains_key(k) {
            e.removed.push(k.clone());
        }
    }
    let all_wrapped_new = !b.wrapped.is_empty()
        && !after.wrapped.is_empty()
        && b.wrapped.iter().all(|w| !after.wrapped.contains(w));
    e.data_key_changed = all_wrapped_new && enc_common > 0 && enc_changed.len() == enc_common;
    if e.data_key_changed {
        e.rekeyed = enc_changed;
    } else {
        e.changed.extend(enc_changed);
    }
    if before.is_some() {
        e.recipients_added = after
            .recipients
            .iter()
            .filter(|r| !b.recipients.contains(r))
            .cloned()
            .collect();
        e.recipients_removed = b
            .recipients
            .iter()
            .filter(|r| !after.recipients.contains(r))
            .cloned()
            .collect();
    } else {
        e.recipients_added = after.recipients.clone();
    }
    e.added.sort();
    e.changed.sort();
    e.removed.sort();
    e.rekeyed.sort();
    e
}

/// The events of one file, newest first, from its versions in `w` (index `i`). Each blob is
/// read at most once and at most two are held at a time; comparisons already made are read
/// from the diff cache of the file's path. Two versions are compared by their lines
/// (`compare_lines`): only lines that differ are parsed, and a version is parsed whole only
/// when that cannot tell (the first version, a rotation, a change of readers).
pub fn file_events(repo: &git2::Repository, w: &Walk, i: usize, path: &Path) -> Vec<FileEvent> {
    file_events_in(&mut Blobs::new(repo), repo, w, i, path)
}

/// [`file_events`], reading blobs through `blobs` (which may already hold some).
fn file_events_in(
    blobs: &mut Blobs,
    repo: &git2::Repository,
    w: &Walk,
    i: usize,
    path: &Path,
) -> Vec<FileEvent> {
    let vs = &w.versions[i];
    let mut cache = DiffCache::open(repo, path);
    let mut out = Vec::with_capacity(vs.len());
    let mut read = |id: Option<git2::Oid>| id.map(|id| blobs.read(id));
    // The version before: its blob id, its blob once read (`Some(None)`: unreadable, read as
    // empty) and what is known of it.
    let mut prev_id: Option<git2::Oid> = None;
    let mut prev: Option<Option<pack::Bytes>> = None;
    let mut prev_known = Known::Unknown;
    fn bytes(b: &Option<Option<pack::Bytes>>) -> Option<&[u8]> {
        b.as_ref()
            .map(|b| b.as_ref().map(|b| &b[..]).unwrap_or(b""))
    }
    for v in vs.iter().rev() {
        let e = match cache.get(prev_id, v.blob) {
            Some(e) => {
                prev = None;
                prev_known = Known::Unknown;
                e
            }
            None => {
                if prev.is_none() {
                    prev = read(prev_id);
                }
                let after = read(v.blob);
                let before =
                    bytes(&prev).map(|b| (b, std::mem::replace(&mut prev_known, Known::Unknown)));
                let (e, known) = diff(before, bytes(&after));
                cache.put(prev_id, v.blob, &e);
                prev = after;
                prev_known = known;
                e
            }
        };
        prev_id = v.blob;
        out.push(finish(e, v));
    }
    cache.save();
    out.reverse();
    out
}

/// Compares a version (`None`: the file is deleted) with the one before it (`None`: a new
/// file; with what is known of it). Also returns what is known of the new version.
fn diff(before: Option<(&[u8], Known)>, after: Option<&[u8]>) -> (FileEvent, Known) {
    let before = match (before, after) {
        (Some((old, Known::Keys(mut counts))), Some(new)) => {
            if let Some(e) = compare_lines(old, new, &mut counts) {
                return (e, Known::Keys(counts));
            }
            Some(old)
        }
        (b, _) => b.map(|b| b.0),
    };
    let Some(old) = before else {
        return match after {
            Some(new) => first_version(new),
            None => (
                FileEvent {
                    deleted: true,
                    ..FileEvent::default()
                },
                Known::Unknown,
            ),
        };
    };
    let b = Some(Snapshot::parse_checked(old).0);
    match after {
        Some(new) => {
            let (a, known) = Snapshot::parse_known(new);
            (compare(b.as_ref(), &a), known)
        }
        None => {
            // Deleted: every key and reader is gone.
            let mut e = compare(b.as_ref(), &Snapshot::default());
            e.deleted = true;
            (e, Known::Unknown)
        }
    }
}

/// The event of a file's first version (every key and recipient added), as
/// `compare(None, ..)` makes it, without a [`Snapshot`]'s map of every value; and what is
/// known of the version.
fn first_version(bytes: &[u8]) -> (FileEvent, Known) {
    let mut e = FileEvent::default();
    let mut counts = KeyCounts::with_capacity(bytes.len() / 128);
    // Data lines and metadata told apart as `StoredFile::split` does.
    let read = dotenv::each_stored("", bytes, |l| {
        if let dotenv::LineRef::Pair { key, stored, .. } = l {
            if !key.starts_with("sops_") {
                *counts.entry(key.to_string()).or_default() += 1;
            } else if key["sops_".len()..].ends_with("__map_recipient") {
                e.recipients_added.push(stored.to_string());
            }
        }
    });
    if read.is_err() {
        return (FileEvent::default(), Known::Unparsable);
    }
    e.added = counts.keys().cloned().collect();
    e.added.sort_unstable();
    e.recipients_added.sort();
    (e, Known::Keys(counts))
}

/// Lines of differing text [`compare_lines`] parses at most; more (a rotation re-encrypts
/// every value) and both versions are parsed whole.
const MAX_CHANGED_LINES: usize = 512;

/// Compares two versions of a file by their lines, when that is exact: `old` parses, the
/// first and the last line are the same, and no line that differs wraps the data key or
/// names a recipient. Lines are matched in order (common prefix and suffix, then a lockstep
/// walk that resynchronises after inserted or deleted lines); every key with a line outside
/// the matching has its value (its last occurrence) read in both versions and compared, so a
/// key whose lines all match has the same value in both. Only those lines are parsed, with
/// [`dotenv::parse_stored`]. `counts` (the lines per key of `old`) tells which keys have no
/// other line: their values are the differing lines' own; the others are searched for in both
/// versions. On success `counts` becomes `new`'s. `None`: parse both versions whole instead.
fn compare_lines(old: &[u8], new: &[u8], counts: &mut KeyCounts) -> Option<FileEvent> {
    let n = old.len().min(new.len());
    let p = common_prefix(old, new);
    // Whole lines only, and the first line (where a byte-order mark is read) must match.
    let p_line = memchr::memrchr(b'\n', &old[..p])? + 1;
    let s = common_suffix(old, new, n - p);
    let tail = &old[old.len() - s..];
    let s_line = s - (memchr::memchr(b'\n', tail)? + 1);
    if s_line == 0 {
        return None;
    }
    let mid_old = &old[p_line..old.len() - s_line];
    let mid_new = &new[p_line..new.len() - s_line];
    // Lines outside the matching: (from the new version, text).
    let mut differ: Vec<(bool, &[u8])> = Vec::new();
    const WINDOW: usize = 16;
    // Byte offsets of the next lines to match (both regions end with a line end).
    let (mut i, mut j) = (0, 0);
    while i < mid_old.len() && j < mid_new.len() {
        // Matching lines, in bulk: to the start of the first line that differs.
        let k = common_prefix(&mid_old[i..], &mid_new[j..]);
        let same = memchr::memrchr(b'\n', &mid_old[i..i + k]).map_or(0, |n| n + 1);
        i += same;
        j += same;
        if i == mid_old.len() || j == mid_new.len() {
            break;
        }
        // The lines at `i` and `j` differ.
        let (a, ni) = line_at(mid_old, i);
        let (b, nj) = line_at(mid_new, j);
        let next_same = match (ni < mid_old.len(), nj < mid_new.len()) {
            (true, true) => line_at(mid_old, ni).0 == line_at(mid_new, nj).0,
            (false, false) => true,
            _ => false,
        };
        if next_same {
            differ.push((false, a));
            differ.push((true, b));
            (i, j) = (ni, nj);
        } else if let Some((inserted, at)) = resync(mid_new, j, a, WINDOW) {
            differ.extend(inserted.into_iter().map(|l| (true, l)));
            j = at;
        } else if let Some((deleted, at)) = resync(mid_old, i, b, WINDOW) {
            differ.extend(deleted.into_iter().map(|l| (false, l)));
            i = at;
        } else {
            differ.push((false, a));
            differ.push((true, b));
            (i, j) = (ni, nj);
        }
        if differ.len() > MAX_CHANGED_LINES {
            return None;
        }
    }
    for (from_new, m, mut at) in [(false, mid_old, i), (true, mid_new, j)] {
        while at < m.len() {
            let (l, next) = line_at(m, at);
            differ.push((from_new, l));
            at = next;
            if differ.len() > MAX_CHANGED_LINES {
                return None;
            }
        }
    }
    // Per key of the differing lines: its lines among them in (old, new), and the stored text
    // of the last one in each.
    #[derive(Default)]
    struct Seen {
        lines: (u32, u32),
        last: (Option<String>, Option<String>),
    }
    let mut keys: HashMap<String, Seen> = HashMap::new();
    for (from_new, line) in &differ {
        // A mark is read only at the start of a file: parsed alone, it would be dropped.
        if line.starts_with(b"\xef\xbb\xbf") {
            return None;
        }
        // The new version's lines must parse too (an old line parsed with the file).
        for l in dotenv::parse_stored("", line).ok()? {
            if let Line::Pair { key, stored, .. } = l {
                if key.starts_with("sops_") {
                    if key.ends_with("__map_enc") || key.ends_with("__map_recipient") {
                        return None;
                    }
                } else {
                    let seen = keys.entry(key).or_default();
                    if *from_new {
                        seen.lines.1 += 1;
                        seen.last.1 = Some(stored);
                    } else {
                        seen.lines.0 += 1;
                        seen.last.0 = Some(stored);
                    }
                }
            }
        }
    }
    let mut e = FileEvent::default();
    if keys.is_empty() {
        return Some(e);
    }
    // Keys with lines that match too: where their last line is, is searched for.
    let mut search: HashSet<String> = HashSet::new();
    for (k, seen) in &keys {
        let total = counts.get(k).copied().unwrap_or(0);
        if total < seen.lines.0 {
            // `counts` is not this version's: no longer trusted.
            return None;
        }
        if total > seen.lines.0 {
            search.insert(k.clone());
        }
    }
    let (vo, vn) = if search.is_empty() {
        (HashMap::new(), HashMap::new())
    } else {
        (last_values(old, &search)?, last_values(new, &search)?)
    };
    for (k, seen) in &keys {
        let (before, after) = if search.contains(k) {
            (vo.get(k.as_str()), vn.get(k.as_str()))
        } else {
            (seen.last.0.as_ref(), seen.last.1.as_ref())
        };
        match (before, after) {
            (None, Some(_)) => e.added.push(k.clone()),
            (Some(_), None) => e.removed.push(k.clone()),
            (Some(x), Some(y)) if x != y => e.changed.push(k.clone()),
            _ => {}
        }
    }
    for (k, seen) in keys {
        let total = counts.get(&k).copied().unwrap_or(0) - seen.lines.0 + seen.lines.1;
        if total == 0 {
            counts.remove(&k);
        } else {
            counts.insert(k, total);
        }
    }
    e.added.sort();
    e.changed.sort();
    e.removed.sort();
    Some(e)
}

/// The stored value of each of `keys` in a file (the last occurrence, as [`Snapshot`] reads
/// it), parsing only the lines that hold them.
fn last_values<'k>(bytes: &[u8], keys: &'k HashSet<String>) -> Option<HashMap<&'k str, String>> {
    let text = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut last: HashMap<&'k str, &[u8]> = HashMap::with_capacity(keys.len());
    let line_at = |start: usize| -> &[u8] {
        let end = memchr::memchr(b'\n', &text[start..]).map_or(text.len(), |n| start + n);
        &text[start..end]
    };
    if keys.len() <= 16 {
        // A few keys: each searched for, `\nKEY=` (or `KEY=` at the start); the last match
        // (forward search is the vectorised one).
        let mut pat = Vec::new();
        for k in keys {
            pat.clear();
            pat.push(b'\n');
            pat.extend_from_slice(k.as_bytes());
            pat.push(b'=');
            let start = match memchr::memmem::find_iter(text, &pat).last() {
                Some(at) => Some(at + 1),
                None => text.starts_with(&pat[1..]).then_some(0),
            };
            if let Some(start) = start {
                last.insert(k.as_str(), line_at(start));
            }
        }
    } else {
        // Many: one pass over the lines; only a line whose key has the length of one of
        // `keys` is looked up.
        let max = keys.iter().map(String::len).max().unwrap_or(0);
        let mut len_ok = vec![false; max + 1];
        for k in keys {
            len_ok[k.len()] = true;
        }
        let mut start = 0;
        while start < text.len() {
            let line = line_at(start);
            start += line.len() + 1;
            let Some(eq) = memchr::memchr(b'=', &line[..line.len().min(max + 1)]) else {
                continue;
            };
            if !len_ok[eq] {
                continue;
            }
            if let Ok(k) = std::str::from_utf8(&line[..eq]) {
                if let Some(k) = keys.get(k) {
                    last.insert(k.as_str(), line);
                }
            }
        }
    }
    let mut out = HashMap::with_capacity(last.len());
    for (k, line) in last {
        for l in dotenv::parse_stored("", line).ok()? {
            if let Line::Pair { key, stored, .. } = l {
                if key == k {
                    out.insert(k, stored);
                }
            }
        }
    }
    Some(out)
}

/// The line of `m` that starts at `at` (without its line end), and where the next one starts.
fn line_at(m: &[u8], at: usize) -> (&[u8], usize) {
    let end = memchr::memchr(b'\n', &m[at..]).map_or(m.len(), |n| at + n);
    (&m[at..end], end + 1)
}

/// When one of the `window` lines after the line of `m` at `at` is `line`: the lines before
/// it (from `at`) and where it starts.
fn resync<'m>(
    m: &'m [u8],
    at: usize,
    line: &[u8],
    window: usize,
) -> Option<(Vec<&'m [u8]>, usize)> {
    let (first, mut next) = line_at(m, at);
    let mut before = vec![first];
    for _ in 0..window {
        if next >= m.len() {
            return None;
        }
        let (l, after) = line_at(m, next);
        if l == line {
            return Some((before, next));
        }
        before.push(l);
        next = after;
    }
    None
}

/// Length of the common prefix of two byte strings.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    // Large blocks first (one vectorised comparison each), then small ones, then bytes.
    let n = a.len().min(b.len());
    let mut i = 0;
    for step in [4096, 64] {
        while i + step <= n && a[i..i + step] == b[i..i + step] {
            i += step;
        }
    }
    while i < n && a[i] == b[i] {
        i += 1;
    }
    i
}

/// Length of the common suffix of two byte strings, at most `max`.
fn common_suffix(a: &[u8], b: &[u8], max: usize) -> usize {
    let (la, lb) = (a.len(), b.len());
    let mut s = 0;
    for step in [4096, 64] {
        while s + step <= max && a[la - s - step..la - s] == b[lb - s - step..lb - s] {
            s += step;
        }
    }
    while s < max && a[la - s - 1] == b[lb - s - 1] {
        s += 1;
    }
    s
}

fn finish(mut e: FileEvent, v: &Version) -> FileEvent {
    e.commit = v.commit;
    if v.boundary {
        e.boundary = true;
        e.added.clear();
        e.recipients_added.clear();
    }
    e
}

/// Comparisons of two versions of one file, keyed by their blob ids, under
/// `<git common dir>/envv/history/`. A comparison depends only on the two blobs' contents, so
/// an entry stays right after a rebase, an amend or a shallow clone; entries not used by a
/// run are dropped when it saves. Deleting the folder, or a file in it that does not parse,
/// only costs time.
struct DiffCache {
    path: Option<PathBuf>,
    entries: HashMap<String, FileEvent>,
    used: HashMap<String, FileEvent>,
    dirty: bool,
}

/// Format of a cache file (a change of the comparison rules changes it).
const CACHE_VERSION: u32 = 1;

#[derive(serde::Serialize, serde::Deserialize)]
struct CacheFile {
    version: u32,
    entries: HashMap<String, FileEvent>,
}

impl DiffCache {
    fn open(repo: &git2::Repository, path: &Path) -> Self {
        use sha2::Digest;
        let name: String = sha2::Sha256::digest(path.to_string_lossy().as_bytes())[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let file = repo
            .commondir()
            .join("envv")
            .join("history")
            .join(format!("{name}.json"));
        let entries = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice::<CacheFile>(&b).ok())
            .filter(|c| c.version == CACHE_VERSION)
            .map(|c| c.entries)
            .unwrap_or_default();
        DiffCache {
            path: Some(file),
            entries,
            used: HashMap::new(),
            dirty: false,
        }
    }

    fn key(before: Option<git2::Oid>, after: Option<git2::Oid>) -> String {
        let s = |o: Option<git2::Oid>| o.map(|o| o.to_string()).unwrap_or_default();
        format!("{}:{}", s(before), s(after))
    }

    fn get(&mut self, before: Option<git2::Oid>, after: Option<git2::Oid>) -> Option<FileEvent> {
        let k = Self::key(before, after);
        let e = self
            .entries
            .remove(&k)
            .or_else(|| self.used.get(&k).cloned())?;
        self.used.insert(k, e.clone());
        Some(e)
    }

    fn put(&mut self, before: Option<git2::Oid>, after: Option<git2::Oid>, e: &FileEvent) {
        self.used.insert(Self::key(before, after), e.clone());
        self.dirty = true;
    }

    /// Writes the entries used by this run, when it added one or left some unused.
    fn save(self) {
        let Some(path) = self.path else { return };
        if !self.dirty && self.entries.is_empty() {
            return;
        }
        let file = CacheFile {
            version: CACHE_VERSION,
            entries: self.used,
        };
        let Ok(bytes) = serde_json::to_vec(&file) else {
            return;
        };
        if let Some(dir) = path.parent() {
            if std::fs::create_dir_all(dir).is_err() {
                return;
            }
        }
        // A cache that cannot be written (read-only clone) only costs time; one lost in a crash
        // is read as missing (it is parsed and checked, see `open`), so it is not synced.
        let _ = crate::os::files::write_private_cache(&path, &bytes);
    }
}

/// When a key's current value was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dated {
    /// The newest commit that added or changed the value; with `at_least`, the oldest version's.
    /// Shared: most values of a file are dated by the same few commits.
    pub commit: Arc<CommitInfo>,
    /// History is cut there: the value is at least this old.
    pub at_least: bool,
}

/// For each key of `pending` (each holds HEAD's value), the commit that set its value.
fn date_pending(
    w: &Walk,
    events: &[FileEvent],
    mut pending: HashSet<&str>,
) -> HashMap<String, Dated> {
    let mut out = HashMap::with_capacity(pending.len());
    for e in events {
        if pending.is_empty() {
            break;
        }
        if e.boundary {
            for k in pending.drain() {
                out.insert(
                    k.to_string(),
                    Dated {
                        commit: w.commits[e.commit].clone(),
                        at_least: true,
                    },
                );
            }
            break;
        }
        for k in e.added.iter().chain(&e.changed) {
            if pending.remove(k.as_str()) {
                out.insert(
                    k.clone(),
                    Dated {
                        commit: w.commits[e.commit].clone(),
                        at_least: false,
                    },
                );
            }
        }
    }
    out
}

/// The line saying history is cut, for commands that report dates.
pub fn cut_note(w: &Walk) -> Option<String> {
    let c = w.cut.as_ref()?;
    Some(if c.shallow {
        format!(
            "history is shallow: ages are at least as old as its oldest commit {} ({}); `git fetch --unshallow` reads all of it",
            c.oldest.short(),
            c.oldest.date()
        )
    } else {
        format!(
            "history is cut at the commit limit: ages are at least as old as commit {} ({})",
            c.oldest.short(),
            c.oldest.date()
        )
    })
}

/// What a reader can tell about a data-key change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// The previous version cannot be opened with the identities at hand.
    Unknown,
    /// The new version carries a rotation proof made with the previous data key: a rotation
    /// by someone who held it.
    Verified,
    /// No valid proof: the file was replaced by someone without the previous key, or rotated
    /// by a tool that writes no proof (`sops rotate`).
    Missing,
}

impl Proof {
    /// The event kind `log --json` reports for a data-key change with this proof.
    pub fn as_str(self) -> &'static str {
        match self {
            Proof::Unknown => "data_key_changed",
            Proof::Verified => "rotated",
            Proof::Missing => "rekeyed",
        }
    }
}

/// A data-key change examined with the identities of `ring`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rekey {
    /// Whether the new version proves a rotation by a holder of the previous data key.
    pub proof: Proof,
    /// The keys whose values really changed, when `ring` opens both versions.
    pub value_changes: Option<Vec<String>>,
}

/// Examines the data-key change from blob `before` to blob `after`: whether the new version's
/// rotation proof verifies under the previous data key, and which values really changed.
/// MACs are not checked: this only compares values.
pub fn examine_rekey(
    repo: &git2::Repository,
    before: git2::Oid,
    after: git2::Oid,
    ring: &mut crate::keys::Keyring,
) -> Rekey {
    let unknown = Rekey {
        proof: Proof::Unknown,
        value_changes: None,
    };
    let load = |id: git2::Oid| -> Option<(crate::store::file::EnvFile, Snapshot)> {
        let blob = repo.find_blob(id).ok()?;
        let f = crate::store::file::EnvFile::from_bytes(
            Path::new("history"),
            "history",
            blob.content(),
        )
        .ok()?;
        Some((f, Snapshot::parse(blob.content())))
    };
    let (Some((fb, _)), Some((fa, sa))) = (load(before), load(after)) else {
        return unknown;
    };
    let Ok(prev) = fb.unlock(ring, Vec::new) else {
        return unknown;
    };
    let proof = match (&sa.proof, &sa.mac, &sa.lastmodified) {
        (Some(p), Some(mac), Some(t))
            if *p == crate::format::sops::rotation_proof(&prev, mac, t) =>
        {
            Proof::Verified
        }
        _ => Proof::Missing,
    };
    let values = |f: &crate::store::file::EnvFile, dk: &crate::format::sops::DataKey| {
        let opened = f.clone().decrypt(dk, false).ok()?;
        Some(
            opened
                .into_entries()
                .filter_map(|(l, v)| match l {
                    Line::Pair { key, .. } => Some((key, v.unwrap_or_default())),
                    _ => None,
                })
                .collect::<Vec<(String, crate::secret::Secret)>>(),
        )
    };
    let value_changes = (|| {
        let next = fa.unlock(ring, Vec::new).ok()?;
        let b: HashMap<String, crate::secret::Secret> = values(&fb, &prev)?.into_iter().collect();
        let mut v: Vec<String> = values(&fa, &next)?
            .into_iter()
            .filter(|(k, v)| b.get(k).is_some_and(|old| old != v))
            .map(|(k, _)| k)
            .collect();
        v.sort();
        v.dedup();
        Some(v)
    })();
    Rekey {
        proof,
        value_changes,
    }
}

/// For each file (`root`-relative), the commit of its newest data-key change when that change
/// carries no valid rotation proof and `ring` can tell (it opens the version before).
pub fn unproven_rekeys(
    root: &Path,
    rels: &[String],
    ring: &mut crate::keys::Keyring,
) -> Result<Vec<Option<CommitInfo>>> {
    let mut out = vec![None; rels.len()];
    let Some(repo) = crate::git::open(root) else {
        return Ok(out);
    };
    let paths: Vec<PathBuf> = rels.iter().map(|r| repo_path(&repo, root, r)).collect();
    let w = walk(&repo, &paths, MAX_COMMITS)?;
    for i in 0..rels.len() {
        let events = file_events(&repo, &w, i, &paths[i]);
        let Some(n) = events.iter().position(|e| e.data_key_changed) else {
            continue;
        };
        let (Some(b), Some(a)) = (blob_before(&w, i, n), w.versions[i][n].blob) else {
            continue;
        };
        if examine_rekey(&repo, b, a, ring).proof == Proof::Missing {
            out[i] = Some((*w.commits[events[n].commit]).clone());
        }
    }
    Ok(out)
}

/// Per file, key → date of its value; and the line saying history is cut, if it is.
pub type FileDates = (Vec<HashMap<String, Dated>>, Option<String>);

/// Dates the current values of some files (`root`-relative path → key → working-tree stored
/// text), in one walk. Also returns the line saying history is cut, if it is. Each file's
/// history is dated and dropped before the next one is read.
pub fn dates(root: &Path, files: &[(String, HashMap<String, String>)]) -> Result<FileDates> {
    let rels: Vec<String> = files.iter().map(|(rel, _)| rel.clone()).collect();
    let mut out = Vec::with_capacity(files.len());
    let mut cut = None;
    FileHistories::each(root, &rels, |w, i, one| {
        out.push(one.date(w, files[i].1.iter().map(|(k, v)| (k.as_str(), v.as_str()))));
        cut = cut_note(w); // one walk for every file
    })?;
    out.resize_with(files.len(), HashMap::new);
    Ok(with_cut_note(out, cut))
}

/// The dates, with the line saying history is cut when a date is a lower bound.
fn with_cut_note(dates: Vec<HashMap<String, Dated>>, cut: Option<String>) -> FileDates {
    let lower_bound = dates.iter().any(|m| m.values().any(|d| d.at_least));
    (dates, cut.filter(|_| lower_bound))
}

/// What dating needs from the history of one file: its events, and HEAD's version when the
/// working file differs from it (`None`: the working file is HEAD's version), and whether HEAD
/// has the file.
pub struct FileHistory {
    events: Vec<FileEvent>,
    head: Option<Snapshot>,
    in_head: bool,
}

impl FileHistory {
    /// Key → date of the current values, given as (key, working-tree stored text) pairs.
    fn date<'a>(
        &self,
        w: &Walk,
        current: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> HashMap<String, Dated> {
        if !self.in_head {
            return HashMap::new();
        }
        let pending: HashSet<&str> = match &self.head {
            None => current.map(|(k, _)| k).collect(),
            Some(head) => current
                .filter(|(k, v)| head.values.get(*k).is_some_and(|h| h == v))
                .map(|(k, _)| k)
                .collect(),
        };
        date_pending(w, &self.events, pending)
    }
}

/// What dating needs from the history of some files, read without their current values (so
/// it can be read while the working files are parsed).
pub struct FileHistories {
    walk: Option<Walk>,
    files: Vec<FileHistory>,
}

impl FileHistories {
    /// Reads the history of `rels` (`root`-relative paths).
    pub fn read(root: &Path, rels: &[String]) -> Result<FileHistories> {
        let mut files = Vec::with_capacity(rels.len());
        let mut walk = None;
        FileHistories::each(root, rels, |w, _, one| {
            files.push(one);
            walk.get_or_insert_with(|| w.clone());
        })?;
        Ok(FileHistories { walk, files })
    }

    /// Reads the history of `rels` in one walk, giving each file's to `f` in order (nothing
    /// when `root` is not in a repository).
    fn each(
        root: &Path,
        rels: &[String],
        mut f: impl FnMut(&Walk, usize, FileHistory),
    ) -> Result<()> {
        let Some(repo) = crate::git::open(root) else {
            return Ok(());
        };
        let paths: Vec<PathBuf> = rels.iter().map(|rel| repo_path(&repo, root, rel)).collect();
        let w = walk(&repo, &paths, MAX_COMMITS)?;
        let mut blobs = Blobs::new(&repo);
        let index = repo.index().ok();
        let index_mtime = index
            .as_ref()
            .and_then(|i| i.path())
            .and_then(|p| std::fs::metadata(p).ok())
            .and_then(|m| m.modified().ok());
        for (i, rel) in rels.iter().enumerate() {
            let file = root.join(rel);
            let head_id = w.versions[i].first().and_then(|v| v.blob);
            // The working file as committed (the usual case): every current value is HEAD's,
            // and HEAD's version need not be parsed, nor inflated: the file's bytes are its
            // blob's. The index tells when it staged that very blob and the file is as it was
            // then.
            let entry = head_id
                .zip(index.as_ref())
                .zip(index_mtime)
                .and_then(|((id, ix), t)| {
                    Some((ix.get_path(&paths[i], 0).filter(|e| e.id == id)?, t))
                });
            let unchanged = match (head_id, entry) {
                // Read only when the blob would be inflated whole (git usually keeps the newest
                // version whole and the older ones as deltas against it).
                (Some(id), Some((e, t))) if blobs.stored_whole(id) => {
                    match crate::git::unchanged_bytes(&repo, &e, &file, t) {
                        Some(bytes) => blobs.seed(id, bytes),
                        None => false,
                    }
                }
                (Some(_), Some((e, t))) => crate::git::stat_unchanged(&repo, &e, &file, t),
                _ => false,
            };
            let events = file_events_in(&mut blobs, &repo, &w, i, &paths[i]);
            let (head, in_head) = match head_id {
                None => (None, false),
                Some(_) if unchanged => (None, true),
                Some(id) => {
                    let blob = blobs.read(id);
                    let head = blob.as_ref().map_or(&b""[..], |b| &b[..]);
                    let same = crate::os::paths::read_bounded(&file, rel).is_ok_and(|b| b == head);
                    (
                        if same {
                            None
                        } else {
                            Some(Snapshot::parse(head))
                        },
                        true,
                    )
                }
            };
            f(
                &w,
                i,
                FileHistory {
                    events,
                    head,
                    in_head,
                },
            );
        }
        Ok(())
    }

    /// Key → date of the current values of file `i`, given as (key, working-tree stored text)
    /// pairs.
    pub fn date_pairs<'a>(
        &self,
        i: usize,
        current: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> HashMap<String, Dated> {
        match (&self.walk, self.files.get(i)) {
            (Some(w), Some(one)) => one.date(w, current),
            _ => HashMap::new(),
        }
    }

    /// The dates, with the line saying history is cut if a date is a lower bound.
    pub fn finish(&self, dates: Vec<HashMap<String, Dated>>) -> FileDates {
        with_cut_note(dates, self.walk.as_ref().and_then(cut_note))
    }
}

/// A reader's grant or revocation, found in a file's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEvent {
    /// The commit that granted or revoked the reader; with `at_least`, the oldest version's.
    pub commit: Arc<CommitInfo>,
    /// History is cut there: the reader had access at least since then.
    pub at_least: bool,
}

/// A reader the file no longer wraps the data key for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastReader {
    /// The recipient as stored in `sops_*__map_recipient`.
    pub recipient: String,
    /// The newest commit that stopped wrapping the data key for this recipient.
    pub removed: AccessEvent,
    /// The first data-key change at or after the removal (`None`: the values they could read
    /// are still encrypted under a key they had).
    pub rotated: Option<Arc<CommitInfo>>,
}

/// Who the data key of a file is wrapped for, with the commit that wrapped it for each
/// (`None`: not committed), and who it was wrapped for before. `current` is the recipients of
/// the working-tree file; `events` the file's events, newest first.
pub fn readers(
    w: &Walk,
    events: &[FileEvent],
    current: &[String],
) -> (Vec<(String, Option<AccessEvent>)>, Vec<PastReader>) {
    let grant = |r: &str| -> Option<AccessEvent> {
        for e in events {
            if e.recipients_added.iter().any(|x| x == r) {
                return Some(AccessEvent {
                    commit: w.commits[e.commit].clone(),
                    at_least: false,
                });
            }
            if e.recipients_removed.iter().any(|x| x == r) {
                return None;
            }
            if e.boundary {
                return Some(AccessEvent {
                    commit: w.commits[e.commit].clone(),
                    at_least: true,
                });
            }
        }
        None
    };
    let now: Vec<(String, Option<AccessEvent>)> =
        current.iter().map(|r| (r.clone(), grant(r))).collect();
    let mut past: Vec<PastReader> = Vec::new();
    for (n, e) in events.iter().enumerate() {
        for r in &e.recipients_removed {
            if current.contains(r) || past.iter().any(|p| &p.recipient == r) {
                continue;
            }
            // The oldest data-key change from the removal on (events are newest first).
            let rotated = events[..=n]
                .iter()
                .rev()
                .find(|x| x.data_key_changed)
                .map(|x| w.commits[x.commit].clone());
            past.push(PastReader {
                recipient: r.clone(),
                removed: AccessEvent {
                    commit: w.commits[e.commit].clone(),
                    at_least: false,
                },
                rotated,
            });
        }
    }
    (now, past)
}

/// The blob a file had just before version `n` (its version index, newest first).
pub fn blob_before(w: &Walk, i: usize, n: usize) -> Option<git2::Oid> {
    w.versions[i].get(n + 1).and_then(|v| v.blob)
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
            ..Snapshot::default()
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
        let e = compare(Some(&a), &b);
        assert_eq!(
            (e.added, e.changed, e.removed, e.rekeyed),
            (
                vec!["C".to_string()],
                vec!["A".to_string()],
                vec!["PORT".to_string()],
                vec![]
            )
        );
        let r = snap(&[("A", E3), ("B", E4), ("PORT", "2")], &["w2"]);
        let e = compare(Some(&a), &r);
        assert_eq!(e.rekeyed, vec!["A".to_string(), "B".to_string()]);
        assert_eq!(e.changed, vec!["PORT".to_string()]);
        assert!(e.data_key_changed);
        // All values changed but the wrapped key stayed: real changes, not a rotation.
        let c = snap(&[("A", E3), ("B", E4), ("PORT", "1")], &["w1"]);
        let e = compare(Some(&a), &c);
        assert!(e.rekeyed.is_empty() && !e.data_key_changed);
        assert_eq!(e.changed.len(), 2);
    }

    fn commit(id: &str) -> CommitInfo {
        CommitInfo {
            id: id.repeat(40),
            author: "a".into(),
            email: String::new(),
            time: 0,
            summary: String::new(),
        }
    }

    #[test]
    fn readers_name_grants_removals_and_the_rotation_after() {
        let w = Walk {
            commits: ["4", "3", "2", "1"].map(|c| Arc::new(commit(c))).to_vec(),
            ..Walk::default()
        };
        let ev = |c: usize, add: &[&str], rm: &[&str], dk: bool| FileEvent {
            commit: c,
            recipients_added: add.iter().map(|s| s.to_string()).collect(),
            recipients_removed: rm.iter().map(|s| s.to_string()).collect(),
            data_key_changed: dk,
            ..FileEvent::default()
        };
        // Newest first: 4 rotates, 3 removes carol, 2 removes bob, 1 grants all three.
        let events = vec![
            ev(0, &[], &[], true),
            ev(1, &[], &["carol"], false),
            ev(2, &[], &["bob"], false),
            ev(3, &["alice", "bob", "carol"], &[], false),
        ];
        let (now, past) = readers(&w, &events, &["alice".to_string(), "dave".to_string()]);
        assert_eq!(now[0].1.as_ref().unwrap().commit.id, "1".repeat(40));
        assert!(now[1].1.is_none(), "dave: not committed");
        assert_eq!(past.len(), 2);
        assert_eq!(past[0].recipient, "carol");
        assert_eq!(past[0].rotated.as_ref().unwrap().id, "4".repeat(40));
        assert_eq!(past[1].recipient, "bob");
        assert_eq!(past[1].removed.commit.id, "2".repeat(40));
        // Without the rotation, nobody's removal was followed by one.
        let (_, past) = readers(&w, &events[1..], &["alice".to_string()]);
        assert!(past.iter().all(|p| p.rotated.is_none()));
    }

    #[test]
    fn values_are_dated_by_their_last_change_not_a_rotation_and_boundaries_are_lower_bounds() {
        let w = Walk {
            commits: ["3", "2", "1"].map(|c| Arc::new(commit(c))).to_vec(),
            ..Walk::default()
        };
        let head = snap(&[("A", E3), ("B", E4)], &["w2"]);
        let events = vec![
            FileEvent {
                commit: 0,
                rekeyed: vec!["A".into(), "B".into()],
                data_key_changed: true,
                ..FileEvent::default()
            },
            FileEvent {
                commit: 1,
                changed: vec!["A".into()],
                ..FileEvent::default()
            },
            FileEvent {
                commit: 2,
                boundary: true,
                ..FileEvent::default()
            },
        ];
        let current = [("A", E3), ("B", E4), ("C", E1)];
        let history = FileHistory {
            events,
            head: Some(head),
            in_head: true,
        };
        let d = history.date(&w, current.into_iter());
        assert_eq!(d["A"].commit.id, "2".repeat(40));
        assert!(!d["A"].at_least);
        assert_eq!(d["B"].commit.id, "1".repeat(40));
        assert!(d["B"].at_least);
        assert!(!d.contains_key("C"), "not at HEAD: not committed");
    }

    #[test]
    fn snapshot_reads_metadata_through_the_stored_parser() {
        let s = Snapshot::parse(
            b"#c\nA=ENC[x]\nA=ENC[y]\nsops_age__list_0__map_recipient=age1b\nsops_age__list_0__map_enc=w\nsops_mac=ENC[m]\n",
        );
        assert_eq!(s.values["A"], "ENC[y]");
        assert_eq!(s.recipients, vec!["age1b".to_string()]);
        assert_eq!(s.wrapped, vec!["w".to_string()]);
        assert_eq!(s.mac.as_deref(), Some("ENC[m]"));
    }

    /// The line comparison agrees with parsing both versions whole, on random edits of random
    /// files (duplicate keys, reordered lines, CRs, comments, metadata, lines that do not
    /// parse, byte-order marks); when it cannot tell, it says so.
    #[test]
    fn line_comparison_agrees_with_whole_parses() {
        let pool: &[&str] = &[
            "A=ENC[AES256_GCM,data:1]",
            "A=ENC[AES256_GCM,data:2]",
            "B=ENC[AES256_GCM,data:3]",
            "B=plain value",
            "C=x\r",
            "C=x",
            "D=",
            "#comment",
            "",
            "E=ENC[AES256_GCM,data:4]",
            "sops_mac=ENC[m1]",
            "sops_mac=ENC[m2]",
            "sops_lastmodified=2026",
            "sops_age__list_0__map_recipient=age1b",
            "sops_age__list_0__map_enc=w1",
            "sops_age__list_0__map_enc=w2",
            "no equals sign",
            "\u{feff}F=1",
            "F=ENC[AES256_GCM,data:5]",
            "G\0=x",
        ];
        let filler: Vec<String> = (0..200)
            .map(|n| format!("FILL_{n}=ENC[AES256_GCM,data:{n:0>40}]"))
            .collect();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: usize| -> usize {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let mut told = 0;
        for _ in 0..20_000 {
            let n = 1 + next(12);
            let mut lines: Vec<&str> = (0..n).map(|_| pool[next(pool.len())]).collect();
            if next(4) == 0 {
                // A long run of lines both versions share (compared in bulk).
                let at = next(lines.len() + 1);
                lines.splice(
                    at..at,
                    filler
                        .iter()
                        .take(1 + next(filler.len()))
                        .map(String::as_str),
                );
            }
            let old = lines.join("\n") + if next(4) == 0 { "" } else { "\n" };
            for _ in 0..1 + next(3) {
                let at = next(lines.len() + 1);
                match next(4) {
                    0 => lines.insert(at, pool[next(pool.len())]),
                    3 => {
                        // More inserted lines than the comparison looks ahead.
                        let run: Vec<&str> = (0..20).map(|_| pool[next(pool.len())]).collect();
                        lines.splice(at..at, run);
                    }
                    1 if at < lines.len() => {
                        lines.remove(at);
                    }
                    _ if at < lines.len() => lines[at] = pool[next(pool.len())],
                    _ => {}
                }
            }
            let new = lines.join("\n") + if next(4) == 0 { "" } else { "\n" };
            let (b, Known::Keys(old_counts)) = Snapshot::parse_known(old.as_bytes()) else {
                continue;
            };
            let (a, new_known) = Snapshot::parse_known(new.as_bytes());
            let mut counts = old_counts.clone();
            if let Some(e) = compare_lines(old.as_bytes(), new.as_bytes(), &mut counts) {
                told += 1;
                assert_eq!(e, compare(Some(&b), &a), "{old:?} -> {new:?}");
                assert_eq!(
                    Known::Keys(counts),
                    new_known,
                    "{old:?} -> {new:?}: lines per key"
                );
            }
            let before = Some((old.as_bytes(), Known::Keys(old_counts)));
            let (e, known) = diff(before, Some(new.as_bytes()));
            assert_eq!(known, new_known);
            assert_eq!(e, compare(Some(&b), &a), "{old:?} -> {new:?}");
        }
        // (Versions with a byte-order mark after the first line do not parse: fewer are told.)
        assert!(told > 500, "the line comparison told only {told} times");
    }

    #[test]
    fn a_first_version_lists_every_key_and_recipient_once() {
        for text in [
            &b"A=1\nB=ENC[x]\nA=2\n#c\nsops_age__list_1__map_recipient=age1z\nsops_age__list_0__map_recipient=age1b\nsops_mac=ENC[m]\n"[..],
            b"",
            b"A=1\nbroken\n",
            // A recipient line is `sops_<something>__map_recipient`, not this.
            b"sops__map_recipient=age1r\nA=1\n",
        ] {
            let (s, known) = Snapshot::parse_known(text);
            assert_eq!(first_version(text), (compare(None, &s), known));
        }
    }
}
