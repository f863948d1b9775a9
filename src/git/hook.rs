//! The pre-commit guard: checks what is about to be committed (the git index), never the
//! working tree, and installs the hook script that runs it.
//!
//! The checks never decrypt: a plaintext value is visible as a stored value that is not an
//! `ENC[...]` string, recipients are in the metadata, and freeze windows come from the staged
//! policy. Freeze windows are evaluated in UTC so that every machine of a team agrees.

use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::format::dotenv::{self, Line};
use crate::format::sops::CryptRule;
use crate::policy::{self, Policy, POLICY_FILE};
use crate::store::file::recipient_drift;

/// One problem in the staged content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Path relative to the repository's work tree.
    pub file: String,
    /// 1-based line, when the problem is on one line.
    pub line: Option<usize>,
    /// What is wrong, naming the key where there is one (never a value).
    pub message: String,
    /// One command or action that fixes it.
    pub fix: String,
}

impl std::fmt::Display for Problem {
    /// Two lines: `file:line: message`, then `  fix: ...`. The staged path comes from the
    /// commit being made, so no part may break a line (a path holding `\n  hint: ...`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::error::one_line;
        let (file, message, fix) = (
            one_line(&self.file),
            one_line(&self.message),
            one_line(&self.fix),
        );
        match self.line {
            Some(l) => write!(f, "{file}:{l}: {message}")?,
            None => write!(f, "{file}: {message}")?,
        }
        write!(f, "\n  fix: {fix}")
    }
}

/// What the checks found, and the freeze override that was applied (if any).
#[derive(Debug, Default)]
pub struct Outcome {
    /// Every problem found in the staged files; the pre-commit hook refuses the commit on any.
    pub findings: Vec<Problem>,
    /// Files changed inside a freeze window but allowed by `ENVV_FREEZE_OVERRIDE`.
    pub overridden: Vec<String>,
    /// How many staged files were examined as dotenv files.
    pub files_checked: usize,
    /// Staged blobs read here that hold sops-encrypted dotenv content, by the value scan's own
    /// test ([`crate::checks::scan::is_encrypted_dotenv`]): the scan does not read them again
    /// (encrypted files are never its findings).
    pub encrypted_blobs: std::collections::HashSet<git2::Oid>,
}

/// Inputs of the checks that do not come from the repository.
#[derive(Debug, Clone)]
pub struct Options {
    /// Minute of the week (Monday 00:00 UTC = 0) used for freeze windows.
    pub minute_of_week: u32,
    /// `ENVV_FREEZE_OVERRIDE`: a reason that allows changes inside a freeze window.
    pub freeze_override: Option<String>,
}

impl Options {
    /// The current time and the `ENVV_FREEZE_OVERRIDE` variable.
    pub fn from_env() -> Self {
        Options {
            minute_of_week: minute_of_week(time::OffsetDateTime::now_utc()),
            freeze_override: std::env::var("ENVV_FREEZE_OVERRIDE")
                .ok()
                .filter(|v| !v.trim().is_empty()),
        }
    }
}

/// Monday 00:00 = 0.
pub fn minute_of_week(t: time::OffsetDateTime) -> u32 {
    t.weekday().number_days_from_monday() as u32 * 1440 + t.hour() as u32 * 60 + t.minute() as u32
}

/// What kind of dotenv file a path names, by its file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DotenvKind {
    /// `.env`, `.env.<name>`: must be encrypted.
    Secret,
    /// `.env.local`, `.env.<name>.local`: personal, never committed.
    Local,
    /// `.env.example`, `.env.sample`, `.env.template`: documentation, plaintext on purpose.
    Example,
    /// `<env file>.proposals`: values proposed by non-readers, each an age file.
    Proposals,
}

/// Classifies a file name (`None`: not a dotenv file).
pub fn dotenv_kind(path: &str) -> Option<DotenvKind> {
    let name = path.rsplit('/').next().unwrap_or(path);
    if name != ".env" && !name.starts_with(".env.") {
        return None;
    }
    if name.ends_with(".local") {
        return Some(DotenvKind::Local);
    }
    if crate::store::proposals::is_proposal_path(name) {
        return Some(DotenvKind::Proposals);
    }
    if [".example", ".sample", ".template", ".dist", ".defaults"]
        .iter()
        .any(|s| name.ends_with(s))
    {
        return Some(DotenvKind::Example);
    }
    Some(DotenvKind::Secret)
}

/// One `.sops.yaml` of the repository (a monorepo has several): the folder it governs, as a
/// path prefix with a trailing `/` (empty at the top), and its staged and committed versions.
struct Scope {
    prefix: Vec<u8>,
    staged: Option<Policy>,
    head: Option<Policy>,
}

/// The policy that governs `path` (the nearest `.sops.yaml` above it, as sops finds it) in the
/// staged or the committed tree, with `path` relative to it.
fn governing<'a>(
    scopes: &'a [Scope],
    path: &[u8],
    head: bool,
) -> Option<(&'a Policy, &'a [u8], String)> {
    // `scopes` is sorted deepest first.
    scopes.iter().find_map(|s| {
        let p = if head {
            s.head.as_ref()
        } else {
            s.staged.as_ref()
        }?;
        let rel = path.strip_prefix(s.prefix.as_slice())?;
        let rel = std::str::from_utf8(rel).ok()?.to_string();
        Some((p, s.prefix.as_slice(), rel))
    })
}

/// A path for messages: as it is when it is UTF-8, else with `\xNN` for the other bytes.
pub fn shown_path(path: &[u8]) -> String {
    match std::str::from_utf8(path) {
        Ok(s) => s.to_string(),
        Err(_) => path
            .utf8_chunks()
            .map(|c| {
                let mut s = c.valid().to_string();
                for b in c.invalid() {
                    s.push_str(&format!("\\x{b:02x}"));
                }
                s
            })
            .collect(),
    }
}

/// A path as a shell word for a fix command (`$'…'` for a name that is not UTF-8).
fn shell_path(path: &[u8]) -> String {
    match std::str::from_utf8(path) {
        Ok(s) => s.to_string(),
        Err(_) => format!("$'{}'", shown_path(path).replace('\'', "\\'")),
    }
}

/// Whether an index path names a policy file.
fn is_policy_path(path: &[u8]) -> bool {
    path == POLICY_FILE.as_bytes()
        || (path.ends_with(POLICY_FILE.as_bytes())
            && path[..path.len() - POLICY_FILE.len()].ends_with(b"/"))
}

fn parent_prefix(policy_path: &[u8]) -> Vec<u8> {
    policy_path[..policy_path.len() - POLICY_FILE.len()].to_vec()
}

/// Checks the index of `repo`: every staged path (whatever its bytes), against every
/// `.sops.yaml` in the index (paths relative to the policy that governs them). Freeze windows
/// come from both the staged and the committed policy; the stricter wins. `_root` (the
/// command's workspace) does not matter: the hook checks the whole index.
pub fn check_index(repo: &git2::Repository, _root: &Path, opts: &Options) -> Result<Outcome> {
    let workdir = repo
        .workdir()
        .ok_or_else(|| Error::usage("a bare repository has no index to check"))?;
    // Object hashes are verified by git when it commits; skipping libgit2's re-hash of every
    // blob read here halves the time on large files.
    git2::opts::strict_hash_verification(false);
    let index = crate::git::staged_index(repo)?;
    let index_mtime = index
        .path()
        .and_then(|p| std::fs::metadata(p).ok())
        .and_then(|m| m.modified().ok());
    let mut report = Outcome::default();
    let head_tree = repo.head().ok().and_then(|h| h.peel_to_tree().ok());

    // Paths whose staged content differs from HEAD (what this commit changes).
    let mut changed: Vec<(Vec<u8>, git2::Oid)> = Vec::new();
    let mut deleted: Vec<Vec<u8>> = Vec::new();
    let diff = repo.diff_tree_to_index(head_tree.as_ref(), Some(&index), None)?;
    for d in diff.deltas() {
        if d.status() == git2::Delta::Deleted {
            if let Some(p) = d.old_file().path_bytes() {
                deleted.push(p.to_vec());
            }
            continue;
        }
        let nf = d.new_file();
        if let Some(p) = nf.path_bytes() {
            changed.push((p.to_vec(), nf.id()));
        }
    }
    let changed_set: std::collections::HashSet<&[u8]> =
        changed.iter().map(|(p, _)| p.as_slice()).collect();

    // Every policy: staged ones, and committed ones this commit deletes.
    let mut scopes: Vec<Scope> = Vec::new();
    let mut policy_paths: Vec<Vec<u8>> = index
        .iter()
        .filter(|e| (e.flags >> 12) & 0x3 == 0 && is_policy_path(&e.path))
        .map(|e| e.path)
        .collect();
    policy_paths.extend(deleted.iter().filter(|p| is_policy_path(p)).cloned());
    for pp in policy_paths {
        let shown = shown_path(&pp);
        let staged = match index.get_path(&bytes_path(&pp), 0) {
            Some(e) => {
                let blob = repo.find_blob(e.id)?;
                match policy::parse(&shown, blob.content()) {
                    Ok(p) => Some(p),
                    Err(err) => {
                        report.findings.push(Problem {
                            file: shown.clone(),
                            line: None,
                            message: format!("the staged policy is invalid: {err}"),
                            fix: format!("fix {shown}, then `git add {}`", shell_path(&pp)),
                        });
                        None
                    }
                }
            }
            None => None,
        };
        let head = head_tree
            .as_ref()
            .and_then(|t| t.get_path(&bytes_path(&pp)).ok())
            .and_then(|e| e.to_object(repo).ok())
            .and_then(|o| o.peel_to_blob().ok())
            .and_then(|b| policy::parse(&shown, b.content()).ok());
        scopes.push(Scope {
            prefix: parent_prefix(&pp),
            staged,
            head,
        });
    }
    scopes.sort_by_key(|s| std::cmp::Reverse(s.prefix.len()));
    let env_of = |path: &[u8]| -> Option<(&Policy, String)> {
        let (p, _, rel) = governing(&scopes, path, false)?;
        p.env_for_file(&rel).map(|e| (p, e.to_string()))
    };

    // An identity anywhere in what this commit adds or changes (dotenv files are scanned
    // below, when they are read anyway).
    let secret_key =
        regex::bytes::Regex::new("AGE-SECRET-KEY-1[0-9A-Za-z]{20}").expect("valid regex");
    let scan = |path: &[u8], content: &[u8], findings: &mut Vec<Problem>| {
        if let Some(m) = secret_key.find(content) {
            let line = content[..m.start()].iter().filter(|&&b| b == b'\n').count() + 1;
            let shell = shell_path(path);
            findings.push(Problem {
                file: shown_path(path),
                line: Some(line),
                message: "contains an age secret key (AGE-SECRET-KEY-...): an identity must never be committed".into(),
                fix: format!("`git rm --cached -- {shell}` and keep the key in ~/.config/envv/keys.txt; if it was ever pushed, make a new key with `envv keygen`"),
            });
        }
    };
    for (path, id) in &changed {
        let kind = dotenv_kind(&String::from_utf8_lossy(path));
        if env_of(path).is_some() || kind == Some(DotenvKind::Secret) {
            continue;
        }
        let Ok(blob) = repo.find_blob(*id) else {
            continue;
        };
        scan(path, blob.content(), &mut report.findings);
    }

    // Every staged dotenv file and every file an environment names. The dotenv files are read
    // and checked on worker threads; their findings are reported in index order.
    enum Step<'p> {
        Found(Problem),
        Dotenv {
            entry: git2::IndexEntry,
            shown: String,
            env: Option<(&'p Policy, String)>,
            policy: Option<&'p Policy>,
            is_changed: bool,
        },
    }
    let mut steps: Vec<Step> = Vec::new();
    for entry in index.iter() {
        if (entry.flags >> 12) & 0x3 != 0 {
            continue; // a conflict stage, not a staged file
        }
        let path = entry.path.as_slice();
        let shown = shown_path(path);
        let env = env_of(path);
        let kind = dotenv_kind(&shown);
        if kind == Some(DotenvKind::Proposals) {
            report.files_checked += 1;
            let content = staged_bytes(repo, workdir, &entry, index_mtime)?;
            if let Some(problem) = crate::store::proposals::staged_problem(&shown, &content) {
                steps.push(Step::Found(Problem {
                    file: shown.clone(),
                    line: None,
                    message: format!("not a valid proposal file (values must be age-encrypted): {problem}"),
                    fix: format!("write proposals with `envv propose`; `git rm --cached -- {}` if it holds plaintext", shell_path(path)),
                }));
            }
            continue;
        }
        if env.is_none() && !matches!(kind, Some(DotenvKind::Secret) | Some(DotenvKind::Local)) {
            continue;
        }
        if kind == Some(DotenvKind::Local) && env.is_none() {
            steps.push(Step::Found(Problem {
                file: shown.clone(),
                line: None,
                message: "a .local file is staged: .local files hold personal plaintext overrides and are never committed".into(),
                fix: format!("`git rm --cached -- {}` (envv init adds .local patterns to .gitignore)", shell_path(path)),
            }));
            continue;
        }
        report.files_checked += 1;
        let is_changed = changed_set.contains(path);
        let policy = env
            .as_ref()
            .map(|(p, _)| *p)
            .or_else(|| governing(&scopes, path, false).map(|(p, _, _)| p));
        steps.push(Step::Dotenv {
            entry,
            shown,
            env,
            policy,
            is_changed,
        });
    }
    /// A dotenv file's findings, and whether it is encrypted.
    type Checked = (Vec<Problem>, bool);
    let check = |repo: &git2::Repository, step: &Step| -> Result<Checked> {
        let Step::Dotenv {
            entry,
            shown,
            env,
            policy,
            is_changed,
        } = step
        else {
            return Ok((Vec::new(), false));
        };
        let content = staged_bytes(repo, workdir, entry, index_mtime)?;
        let mut found = Vec::new();
        if *is_changed {
            scan(&entry.path, &content, &mut found);
        }
        let encrypted = check_dotenv_blob(
            shown,
            &content,
            *policy,
            env.as_ref().map(|(_, e)| e.as_str()),
            &mut found,
        ) && crate::checks::scan::may_be_encrypted_dotenv(&content);
        Ok((found, encrypted))
    };
    let jobs: Vec<usize> = (0..steps.len())
        .filter(|&i| matches!(steps[i], Step::Dotenv { .. }))
        .collect();
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8)
        .min(jobs.len());
    let mut checked: Vec<Option<Result<Checked>>> = Vec::new();
    checked.resize_with(steps.len(), || None);
    if workers <= 1 {
        for &i in &jobs {
            checked[i] = Some(check(repo, &steps[i]));
        }
    } else {
        // Each worker takes every `workers`-th file, with a repository handle of its own.
        let git_dir = repo.path().to_path_buf();
        type Part = Result<Vec<(usize, Result<Checked>)>>;
        let parts: Vec<Part> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers)
                .map(|w| {
                    let (git_dir, jobs, steps, check) = (&git_dir, &jobs, &steps, &check);
                    s.spawn(move || -> Result<Vec<_>> {
                        let repo = git2::Repository::open(git_dir)?;
                        Ok(jobs
                            .iter()
                            .skip(w)
                            .step_by(workers)
                            .map(|&i| (i, check(&repo, &steps[i])))
                            .collect())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("index check thread"))
                .collect()
        });
        for part in parts {
            for (i, r) in part? {
                checked[i] = Some(r);
            }
        }
    }
    for (step, checked) in steps.into_iter().zip(checked) {
        match step {
            Step::Found(p) => report.findings.push(p),
            Step::Dotenv {
                entry, is_changed, ..
            } => {
                let (found, encrypted) = checked.expect("every dotenv file was checked")?;
                report.findings.extend(found);
                if encrypted {
                    report.encrypted_blobs.insert(entry.id);
                }
                if is_changed {
                    check_freeze(&scopes, &entry.path, opts, &mut report);
                }
            }
        }
    }
    // Freeze windows apply to files this commit changes, deletions included.
    for path in &deleted {
        check_freeze(&scopes, path, opts, &mut report);
    }
    Ok(report)
}

#[cfg(unix)]
fn bytes_path(p: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(p))
}

#[cfg(not(unix))]
fn bytes_path(p: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(p).into_owned())
}

/// A finding (or an override note) when `path` belongs to an environment that is inside a
/// freeze window of the staged policy or of the committed one (deleting a window in the same
/// commit as the change it forbids does not lift it).
fn check_freeze(scopes: &[Scope], path: &[u8], opts: &Options, report: &mut Outcome) {
    for head in [false, true] {
        let Some((p, _, rel)) = governing(scopes, path, head) else {
            continue;
        };
        let Some(e) = p.env_for_file(&rel) else {
            continue;
        };
        if let Some(w) = active_window(p, e, opts) {
            let shown = shown_path(path);
            let from = if head {
                "the committed policy"
            } else {
                "the staged policy"
            };
            if opts.freeze_override.is_some() {
                report
                    .overridden
                    .push(format!("{shown} (environment {e}, freeze \"{w}\")"));
            } else {
                report.findings.push(Problem {
                    file: shown,
                    line: None,
                    message: format!("environment {e} is frozen now (freeze window \"{w}\" in {from}, UTC) and this commit changes it"),
                    fix: "wait for the window to end, or commit with ENVV_FREEZE_OVERRIDE=\"reason\" (the reason is printed)".into(),
                });
            }
            return;
        }
    }
}

/// The freeze window of `e` in `p` that contains now, if any.
fn active_window(p: &Policy, e: &str, opts: &Options) -> Option<String> {
    let decl = p.environments.get(e)?;
    decl.freeze
        .iter()
        .find(|w| policy::parse_freeze(w).is_ok_and(|win| win.contains(opts.minute_of_week)))
        .cloned()
}

/// The staged content of an index entry. When the working-tree file still has the size, inode
/// and modification time recorded in the index (what `git status` trusts), was not modified in
/// the same instant the index was written ("racily clean"), and no clean filter applies, the
/// file holds exactly the staged bytes and is read from disk; otherwise the object is read
/// from the object database (inflating it is most of the hook's time on large files).
fn staged_bytes(
    repo: &git2::Repository,
    workdir: &Path,
    entry: &git2::IndexEntry,
    index_mtime: Option<std::time::SystemTime>,
) -> Result<Vec<u8>> {
    // The working file when git would take it for the staged blob (no inflating).
    if let Some(index_mtime) = index_mtime {
        let file = workdir.join(bytes_path(&entry.path));
        if let Some(bytes) = crate::git::unchanged_bytes(repo, entry, &file, index_mtime) {
            return Ok(bytes);
        }
    }
    Ok(repo.find_blob(entry.id)?.content().to_vec())
}

/// Checks one staged dotenv blob: plaintext values, parse errors, recipients. Returns whether
/// it is sops-encrypted: its stored lines parse, their structure is valid and so is its
/// metadata.
pub fn check_dotenv_blob(
    path: &str,
    bytes: &[u8],
    policy: Option<&Policy>,
    env: Option<&str>,
    out: &mut Vec<Problem>,
) -> bool {
    let lines = match dotenv::parse_stored(path, bytes) {
        Ok(l) => l,
        Err(e) => {
            let line = match &e {
                Error::Parse { line, .. } => Some(*line),
                _ => None,
            };
            out.push(Problem {
                file: path.to_string(),
                line,
                message: format!("cannot be read as a dotenv file: {e}"),
                fix: format!("fix the line, or restore it with `git checkout -- {path}`"),
            });
            return false;
        }
    };
    let structure = crate::store::file::check_stored_lines(path, &lines).err();
    let stored = crate::store::file::StoredFile::split(lines);
    let data = &stored.lines;
    let encrypt_cmd = match env {
        Some(e) => format!("envv encrypt -e {e} && git add {path}"),
        None => {
            let name = Path::new(path)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            match name.strip_prefix(".env.") {
                Some(env_name) if !env_name.is_empty() => format!(
                    "envv env add {env_name} -f {path} && envv encrypt {path} && git add {path}"
                ),
                _ => format!("envv encrypt {path} && git add {path}"),
            }
        }
    };
    if !stored.has_metadata() {
        // Wholly plaintext: every value the policy would encrypt is a finding.
        let rule = policy.map(Policy::crypt_rule).unwrap_or_default();
        let plain: Vec<(String, usize)> = plaintext_lines(data, &rule, true);
        if let Some((first_key, first_line)) = plain.first() {
            let more = if plain.len() > 1 {
                format!(" and {} more value(s)", plain.len() - 1)
            } else {
                String::new()
            };
            out.push(Problem {
                file: path.to_string(),
                line: Some(*first_line),
                message: format!(
                    "not encrypted: {}{more} would be committed in plain text",
                    shown_key(first_key)
                ),
                fix: encrypt_cmd,
            });
        }
        return false;
    }
    let meta = match stored.metadata() {
        Ok(m) => m,
        Err(m) => {
            out.push(Problem {
                file: path.to_string(),
                line: None,
                message: format!("invalid sops metadata: {m}"),
                fix: format!("restore it with `git checkout HEAD -- {path}`"),
            });
            return false;
        }
    };
    let well_formed = structure.is_none();
    if let Some(Error::Parse { line, msg, .. }) = structure {
        out.push(Problem {
            file: path.to_string(),
            line: Some(line),
            message: msg,
            fix: format!("restore it with `git checkout HEAD -- {path}`"),
        });
    }
    let wanted = policy.map(Policy::crypt_rule).unwrap_or_default();
    if let Some(c) = crate::store::file::rule_conflict(&meta, &wanted) {
        out.push(Problem {
            file: path.to_string(),
            line: c.line,
            message: c.message(),
            fix: c.fix(path),
        });
    }
    for (key, line) in plaintext_lines(data, &meta.rule, false) {
        out.push(Problem {
            file: path.to_string(),
            line: Some(line),
            message: format!(
                "{} has a plaintext value (the file's rule {} encrypts it)",
                shown_key(&key),
                meta.rule.describe()
            ),
            fix: encrypt_cmd.clone(),
        });
    }
    if let (Some(p), Some(e)) = (policy, env) {
        let wanted = p.recipients(e);
        if !wanted.is_empty() {
            let drift = recipient_drift(&meta, &wanted);
            if !drift.is_empty() {
                let mut parts = Vec::new();
                if !drift.missing.is_empty() {
                    parts.push(format!(
                        "missing {}",
                        drift
                            .missing
                            .iter()
                            .map(|r| crate::keys::short_key(r))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                if !drift.extra.is_empty() {
                    parts.push(format!(
                        "not in the policy {}",
                        drift
                            .extra
                            .iter()
                            .map(|r| crate::keys::short_key(r))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                out.push(Problem {
                    file: path.to_string(),
                    line: None,
                    message: format!(
                        "recipients disagree with the staged {POLICY_FILE} (environment {e}): {}",
                        parts.join("; ")
                    ),
                    fix: format!("envv updatekeys && git add {path}"),
                });
            }
        }
    }
    well_formed
}

/// `(key, line)` of pairs holding a non-empty plaintext value that `rule` encrypts.
/// `whole_file`: the file has no metadata, so no value is encrypted.
fn plaintext_lines(data: &[Line], rule: &CryptRule, whole_file: bool) -> Vec<(String, usize)> {
    let plan = rule.plan(data);
    let mut out = Vec::new();
    for (i, l) in data.iter().enumerate() {
        if let Line::Pair { key, stored, line } = l {
            if plan[i] && !stored.is_empty() && (whole_file || !crate::format::sops::is_enc(stored))
            {
                out.push((key.clone(), *line));
            }
        }
    }
    out
}

/// `root` relative to `workdir`, with a trailing `/` (empty when they are the same).
pub fn relative_prefix(workdir: &Path, root: &Path) -> String {
    let wd = workdir
        .canonicalize()
        .unwrap_or_else(|_| workdir.to_path_buf());
    let r = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    match r.strip_prefix(&wd) {
        Ok(p) if !p.as_os_str().is_empty() => format!("{}/", p.to_string_lossy()),
        _ => String::new(),
    }
}

/// The first line of every hook script envv writes (how `install` recognises its own).
pub const HOOK_MARKER: &str = "# envv pre-commit hook";
/// Where an existing hook is moved so the envv hook can run it first.
pub const CHAINED_NAME: &str = "pre-commit.envv-chained";

/// What `install` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    /// Wrote a new hook.
    Created(PathBuf),
    /// The envv hook was already there (unchanged).
    AlreadyInstalled(PathBuf),
    /// An existing hook was moved aside and is run first by the envv hook.
    Chained {
        /// Where the envv hook now is.
        hook: PathBuf,
        /// Where the existing hook was moved.
        chained: PathBuf,
    },
    /// An existing hook was replaced (`--force`).
    Replaced(PathBuf),
}

/// The folder git runs hooks from: `core.hooksPath` (relative paths are relative to the work
/// tree) or the common git dir's `hooks/` (shared by all worktrees).
pub fn hooks_dir(repo: &git2::Repository) -> Result<PathBuf> {
    if let Ok(cfg) = repo.config() {
        if let Ok(p) = cfg.get_path("core.hooksPath") {
            if p.is_absolute() {
                return Ok(p);
            }
            let base = repo.workdir().unwrap_or_else(|| repo.path());
            return Ok(base.join(p));
        }
    }
    Ok(repo.commondir().join("hooks"))
}

/// The hook script: runs a chained hook first, then `envv hook pre-commit`.
pub fn hook_script() -> String {
    format!(
        "#!/bin/sh\n\
{HOOK_MARKER} (written by `envv hook install`; re-run it to update, `--force` to replace)\n\
chained=\"$(dirname \"$0\")/{CHAINED_NAME}\"\n\
if [ -x \"$chained\" ]; then\n\
\t\"$chained\" \"$@\" || exit $?\n\
fi\n\
if ! command -v envv >/dev/null 2>&1; then\n\
\techo \"envv pre-commit hook: envv is not on PATH, so staged .env files were not checked.\" >&2\n\
\techo \"  install envv (cargo install envv), or skip once with: git commit --no-verify\" >&2\n\
\texit 1\n\
fi\n\
exec envv hook pre-commit\n"
    )
}

/// Installs the pre-commit hook. An existing foreign hook is moved to [`CHAINED_NAME`] and run
/// first; with `force` it is replaced instead. Re-running is a no-op.
pub fn install(repo: &git2::Repository, force: bool) -> Result<Installed> {
    let dir = hooks_dir(repo)?;
    std::fs::create_dir_all(&dir).at(&dir)?;
    let hook = dir.join("pre-commit");
    let script = hook_script();
    let existing = match std::fs::read(&hook) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(&hook, e)),
    };
    let outcome = match existing {
        None => Installed::Created(hook.clone()),
        Some(b) if b == script.as_bytes() => return Ok(Installed::AlreadyInstalled(hook)),
        Some(b) if String::from_utf8_lossy(&b).contains(HOOK_MARKER) => {
            Installed::Created(hook.clone())
        }
        Some(_) if force => Installed::Replaced(hook.clone()),
        Some(_) => {
            let chained = dir.join(CHAINED_NAME);
            if chained.exists() {
                return Err(Error::refused_hint(
                    format!(
                        "{} exists and so does {}",
                        hook.display(),
                        chained.display()
                    ),
                    "move one of them away, or run `envv hook install --force` to replace the hook",
                ));
            }
            std::fs::rename(&hook, &chained).at(&hook)?;
            Installed::Chained {
                hook: hook.clone(),
                chained,
            }
        }
    };
    crate::os::files::write_atomic(&hook, script.as_bytes(), 0o755)?;
    set_executable(&hook)?;
    Ok(outcome)
}

#[cfg(unix)]
fn set_executable(p: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).at(p)
}

#[cfg(not(unix))]
fn set_executable(_p: &Path) -> Result<()> {
    Ok(())
}

/// A key for a message: the name when it is a valid key name, else a description (the text
/// before `=` of a pasted line may be part of a secret).
fn shown_key(key: &str) -> String {
    if crate::format::dotenv::validate_key(key).is_ok() {
        key.to_string()
    } else {
        "a line whose text before `=` is not a key name".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(dotenv_kind(".env"), Some(DotenvKind::Secret));
        assert_eq!(dotenv_kind("app/.env.production"), Some(DotenvKind::Secret));
        assert_eq!(
            dotenv_kind(".env.production.local"),
            Some(DotenvKind::Local)
        );
        assert_eq!(dotenv_kind(".env.example"), Some(DotenvKind::Example));
        assert_eq!(dotenv_kind("env.txt"), None);
        assert_eq!(dotenv_kind(".envrc"), None);
    }

    #[test]
    fn plaintext_file_and_public_keys() {
        let mut out = Vec::new();
        let encrypted = check_dotenv_blob(
            ".env",
            b"PORT_unencrypted=1\nSECRET=x\n",
            None,
            None,
            &mut out,
        );
        assert!(!encrypted, "a file without metadata is plaintext");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].line, Some(2));
        assert!(out[0].message.contains("SECRET"), "{}", out[0].message);
        out.clear();
        check_dotenv_blob(
            ".env",
            b"PORT_unencrypted=1\nEMPTY=\n",
            None,
            None,
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn minutes() {
        let t = time::macros::datetime!(2026-11-20 18:30 UTC); // a Friday
        assert_eq!(minute_of_week(t), 4 * 1440 + 18 * 60 + 30);
    }
}
