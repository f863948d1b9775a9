//! `envv scan`: the repository's own secrets, searched for where they leaked; the hook's
//! value scan; the values `exec --redact` hides.

use super::CliResult;
use std::path::{Path, PathBuf};

use clap::Args;

use super::Ctx;
use crate::checks::scan::{self, FileOutcome, Glob, Matcher, TreeFile, Value};
use crate::error::Error;
use crate::git::hook::{self, DotenvKind};
use crate::secret::Secret;
use crate::store::file::EnvFile;

const SCAN_EXAMPLES: &str = "\
Examples:
  envv scan                      # working tree
  envv scan --history            # every commit (CI)
  envv scan --staged --json
  envv scan deploy/ --min-length 12";

/// Search the working tree, the index or the whole history for the managed values.
///
/// Decrypts every file you can read, then looks for each value (at least --min-length bytes,
/// keys the policy marks public excepted) in plain text, base64 (standard and URL-safe, also
/// inside a longer blob), percent-encoded and JSON/shell-escaped. Searched: the tracked files
/// and the untracked ones git does not ignore (or the PATHs given); with --staged the index;
/// with --history every blob of every reachable commit, each finding reported by the commit
/// that introduced it. Encrypted files are never findings; `scan: { ignore: [GLOB] }` in the
/// envv section of .sops.yaml allow-lists paths. Findings name file, line, column, key,
/// environment and form, never the value.
///
/// Exit codes: 0 clean, 1 found, 2 error.
#[derive(Args, Debug)]
#[command(after_long_help = SCAN_EXAMPLES)]
pub struct ScanArgs {
    /// Files or folders to search instead of the working tree.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Search the index (what the next commit holds).
    #[arg(long)]
    pub staged: bool,
    /// Search every blob of every commit reachable from any ref.
    #[arg(long)]
    pub history: bool,
    /// Print the findings as JSON: {"findings": [...], "summary": {...}}.
    #[arg(long)]
    pub json: bool,
    /// Shortest value searched for, in bytes.
    #[arg(long, value_name = "N", default_value_t = scan::DEFAULT_MIN_LENGTH)]
    pub min_length: usize,
}

/// One finding, as printed.
struct Finding {
    file: String,
    line: usize,
    column: usize,
    value: usize,
    encoding: scan::Encoding,
    commit: Option<(String, i64)>,
}

/// The managed values the caller can decrypt.
pub(super) struct Loaded {
    pub values: Vec<Value>,
    /// How many values were decrypted, including those `keep` left out.
    pub decrypted: usize,
    /// Encrypted files the caller is not a reader of.
    pub unreadable: Vec<String>,
    /// Files that could not be read for another reason (name, reason).
    pub failed: Vec<(String, String)>,
}

/// Which decrypted values [`load_values`] keeps (the others are wiped at once).
pub(super) type Keep<'a> = Option<&'a (dyn Fn(&[u8]) -> bool + Sync)>;

/// A file for a [`load_values`] worker: (order, path, name, label).
type Todo = (usize, PathBuf, String, String);

/// A worker's request to unlock a file it parsed: (order, the file without its lines, where
/// the data key goes).
type UnlockRequest = (
    usize,
    EnvFile,
    std::sync::mpsc::Sender<crate::Result<crate::format::sops::DataKey>>,
);

/// What became of one file.
enum Outcome {
    Values(Vec<Value>, usize),
    Unreadable(String),
    Failed(String, String),
}

/// Decrypts the policy's environment files, `.env`, and the dotenv files in `extra`. Worker
/// threads read, parse and decrypt, each file on one thread from start to end; unlocking stays
/// on this thread (identities are not shared between threads, and a passphrase prompt comes
/// one at a time). `keep` decides which values are kept; the others are wiped at once.
pub(super) fn load_values(ctx: &Ctx, extra: &[TreeFile], keep: Keep) -> crate::Result<Loaded> {
    let policy = ctx.ws.policy()?;
    let mut files: Vec<(PathBuf, String, Option<String>)> = Vec::new();
    if let Some(p) = policy {
        for (env, decl) in &p.policy.environments {
            let rel = decl.file.trim_start_matches("./").to_string();
            files.push((ctx.ws.root.join(&rel), rel, Some(env.clone())));
        }
    }
    files.push((ctx.ws.root.join(".env"), ".env".into(), None));
    for f in extra {
        if hook::dotenv_kind(&f.name) == Some(DotenvKind::Secret) {
            files.push((f.path.clone(), ctx.ws.rel(&f.path), None));
        }
    }
    let public = policy
        .and_then(|p| p.policy.public_regex())
        .and_then(|r| regex::Regex::new(&r).ok());
    let mut seen = std::collections::HashSet::new();
    let mut envs: Vec<Option<String>> = Vec::new();
    let mut todo: std::collections::VecDeque<Todo> = std::collections::VecDeque::new();
    for (path, name, env) in files {
        let Ok(canon) = path.canonicalize() else {
            continue;
        };
        if !seen.insert(canon) || !path.is_file() {
            continue;
        }
        let env =
            env.or_else(|| policy.and_then(|p| p.policy.env_for_file(&name).map(String::from)));
        let label = env.clone().unwrap_or_else(|| name.clone());
        todo.push_back((envs.len(), path, name, label));
        envs.push(env);
    }
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8)
        .min(todo.len().max(1));
    let todo = std::sync::Mutex::new(todo);
    let (requests, unlock_requests) = std::sync::mpsc::channel::<UnlockRequest>();
    let public = public.as_ref();
    let mut ring = ctx.keyring();
    let done: Vec<Vec<(usize, Outcome)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let todo = &todo;
                let requests = requests.clone();
                s.spawn(move || {
                    let mut done = Vec::new();
                    loop {
                        let next = todo.lock().ok().and_then(|mut t| t.pop_front());
                        let Some((order, path, name, label)) = next else {
                            break;
                        };
                        let outcome = match load_one(&path, &name, &label, public, keep, |f| {
                            let (tx, rx) = std::sync::mpsc::channel();
                            requests
                                .send((order, f, tx))
                                .ok()
                                .and_then(|()| rx.recv().ok())
                        }) {
                            Ok(Some((values, decrypted))) => Outcome::Values(values, decrypted),
                            Ok(None) => continue, // a plaintext file
                            Err(Error::NoIdentity { .. }) => Outcome::Unreadable(name),
                            Err(e) => Outcome::Failed(name, e.to_string()),
                        };
                        done.push((order, outcome));
                    }
                    done
                })
            })
            .collect();
        drop(requests);
        // Until every worker is done (each holds a sender).
        for (order, file, reply) in unlock_requests {
            let readers = || match (&envs[order], policy) {
                (Some(e), Some(p)) => p.policy.reader_names(e),
                _ => Vec::new(),
            };
            let _ = reply.send(file.unlock(&mut ring, readers));
        }
        handles
            .into_iter()
            .map(|h| h.join().expect("decrypt thread"))
            .collect()
    });
    // In file order, whichever worker read a file.
    let mut done: Vec<_> = done.into_iter().flatten().collect();
    done.sort_by_key(|(order, _)| *order);
    let mut out = Loaded {
        values: Vec::new(),
        decrypted: 0,
        unreadable: Vec::new(),
        failed: Vec::new(),
    };
    for (_, outcome) in done {
        match outcome {
            Outcome::Values(values, decrypted) => {
                out.values.extend(values);
                out.decrypted += decrypted;
            }
            Outcome::Unreadable(name) => out.unreadable.push(name),
            Outcome::Failed(name, why) => out.failed.push((name, why)),
        }
    }
    Ok(out)
}

/// Reads, unlocks (through `unlock`, given the file without its lines) and decrypts one file:
/// its values that `keep` keeps and how many were decrypted; `None` for a plaintext file.
fn load_one(
    path: &Path,
    name: &str,
    label: &str,
    public: Option<&regex::Regex>,
    keep: Keep,
    unlock: impl FnOnce(EnvFile) -> Option<crate::Result<crate::format::sops::DataKey>>,
) -> crate::Result<Option<(Vec<Value>, usize)>> {
    let file = EnvFile::open(path, name)?;
    if !file.is_encrypted() {
        return Ok(None);
    }
    let dk = unlock(file.without_lines())
        .ok_or_else(|| Error::usage("the unlocking thread stopped"))??;
    decrypt_values(file, &dk, label, public, keep).map(Some)
}

/// The values of one unlocked file that `keep` keeps, and how many were decrypted.
fn decrypt_values(
    file: EnvFile,
    dk: &crate::format::sops::DataKey,
    label: &str,
    public: Option<&regex::Regex>,
    keep: Keep,
) -> crate::Result<(Vec<Value>, usize)> {
    let plan = file.plan();
    let opened = file.decrypt(dk, true)?;
    let mut values = Vec::new();
    let mut decrypted = 0;
    for (i, (line, value)) in opened.into_entries().enumerate() {
        if let (crate::format::dotenv::Line::Pair { key, .. }, Some(value)) = (line, value) {
            let is_public = !plan[i] || public.is_some_and(|r| r.is_match(&key));
            if is_public || value.is_empty() {
                continue;
            }
            decrypted += 1;
            if keep.is_some_and(|k| !k(value.expose())) {
                continue;
            }
            // Key names are not in the MAC: only a valid name reaches the output.
            let key = if crate::format::dotenv::validate_key(&key).is_ok() {
                key
            } else {
                format!("(invalid key name, line {})", i + 1)
            };
            values.push(Value {
                key,
                env: label.to_string(),
                value,
            });
        }
    }
    Ok((values, decrypted))
}

/// The allow-list of the policy, and the folder it is relative to.
struct AllowList {
    globs: Vec<Glob>,
    /// The policy folder relative to the git work tree (`""` or `app/`).
    prefix: String,
    /// How many paths the allow-list left out.
    skipped: std::cell::Cell<usize>,
}

impl AllowList {
    fn new(ctx: &Ctx, repo: Option<&git2::Repository>) -> crate::Result<Self> {
        let globs = ctx
            .ws
            .policy()?
            .map(|p| p.policy.scan.ignore.iter().map(|g| Glob::new(g)).collect())
            .unwrap_or_default();
        let prefix = repo
            .and_then(|r| r.workdir())
            .map(|wd| hook::relative_prefix(wd, &ctx.ws.root))
            .unwrap_or_default();
        Ok(AllowList {
            globs,
            prefix,
            skipped: std::cell::Cell::new(0),
        })
    }

    /// Whether a path relative to the work tree is searched.
    fn keeps(&self, name: &str) -> bool {
        let rel = name.strip_prefix(self.prefix.as_str()).unwrap_or(name);
        let kept = !self.globs.iter().any(|g| g.matches(rel));
        if !kept {
            self.skipped.set(self.skipped.get() + 1);
        }
        kept
    }
}

pub fn scan(ctx: &Ctx, a: ScanArgs) -> CliResult<i32> {
    match run(ctx, &a) {
        Ok(code) => Ok(code),
        Err(e) => {
            e.print();
            Ok(2)
        }
    }
}

fn run(ctx: &Ctx, a: &ScanArgs) -> CliResult<i32> {
    if a.min_length == 0 {
        return Err(Error::usage("--min-length must be at least 1").into());
    }
    let repo = crate::git::open(&ctx.ws.root);
    if (a.staged || a.history) && repo.is_none() {
        return Err(Error::usage(format!(
            "--staged and --history need a git repository, and {} is not in one",
            ctx.ws.cwd.display()
        ))
        .into());
    }
    if !a.paths.is_empty() && (a.staged || a.history) {
        return Err(Error::usage(
            "PATHs search files on disk: give them without --staged/--history",
        )
        .into());
    }
    let allow = AllowList::new(ctx, repo.as_ref())?;
    let base = repo
        .as_ref()
        .and_then(|r| r.workdir().map(Path::to_path_buf))
        .unwrap_or_else(|| ctx.ws.root.clone());
    let tree: Vec<TreeFile> = if a.staged || a.history {
        Vec::new()
    } else if a.paths.is_empty() {
        match &repo {
            Some(r) if r.workdir().is_some() => scan::worktree_files(r)?,
            _ => scan::walk_dir(&ctx.ws.root, &base)?,
        }
    } else {
        let all = match &repo {
            Some(r) if r.workdir().is_some() => Some(scan::worktree_files(r)?),
            _ => None,
        };
        let mut out = Vec::new();
        for p in &a.paths {
            let abs = crate::workspace::normalize(&ctx.ws.cwd.join(p));
            let meta = std::fs::symlink_metadata(&abs).map_err(|e| Error::io(&abs, e))?;
            if meta.is_file() {
                let name = abs
                    .strip_prefix(&base)
                    .unwrap_or(&abs)
                    .to_string_lossy()
                    .into_owned();
                out.push(TreeFile { name, path: abs });
            } else if meta.is_dir() {
                match &all {
                    Some(all) if abs.starts_with(&base) => {
                        out.extend(all.iter().filter(|f| f.path.starts_with(&abs)).cloned())
                    }
                    _ => out.extend(scan::walk_dir(&abs, &base)?),
                }
            }
        }
        out
    };
    let loaded = match (&repo, tree.is_empty()) {
        (Some(r), true) => load_values(ctx, &scan::tracked_dotenv_files(r)?, None)?,
        _ => load_values(ctx, &tree, None)?,
    };
    for (name, why) in &loaded.failed {
        eprintln!("warning: could not read {name}, so its values are not searched for: {why}");
    }
    for name in &loaded.unreadable {
        eprintln!("note: {name} is not searched for: you are not one of its readers");
    }
    let matcher = Matcher::new(&loaded.values, a.min_length)?;
    if matcher.is_empty() {
        if loaded.values.is_empty() {
            return Err(Error::usage(if loaded.unreadable.is_empty() {
                "no managed values to search for: no encrypted file here (`envv set KEY` adds one)".to_string()
            } else {
                "none of the encrypted files here opens with your identities, so there is nothing to search for (`envv whoami` shows your key)".to_string()
            })
            .into());
        }
        eprintln!(
            "note: no value is at least {} bytes long (--min-length): nothing to search for",
            a.min_length
        );
    }

    let mut findings: Vec<Finding> = Vec::new();
    let mut searched = 0usize;
    let mut skipped: Vec<String> = Vec::new();
    let mut collect = |name: &str, outcome: FileOutcome, findings: &mut Vec<Finding>| match outcome
    {
        FileOutcome::Hits(hits) => findings.extend(hits.into_iter().map(|h| Finding {
            file: name.to_string(),
            line: h.line,
            column: h.column,
            value: h.value,
            encoding: h.encoding,
            commit: None,
        })),
        FileOutcome::Encrypted => {}
        FileOutcome::SkippedBinary => skipped.push(name.to_string()),
    };
    if !tree.is_empty() {
        let tree: Vec<TreeFile> = tree.into_iter().filter(|f| allow.keeps(&f.name)).collect();
        searched += tree.len();
        for (f, r) in tree.iter().zip(scan::search_files(&matcher, &tree)) {
            collect(&f.name, r?, &mut findings);
        }
    }
    if a.staged {
        let r = repo.as_ref().expect("checked above");
        let files: Vec<scan::StagedFile> = scan::staged_files(r, false)?
            .into_iter()
            .filter(|f| allow.keeps(&f.name))
            .collect();
        searched += files.len();
        for (f, o) in files.iter().zip(scan::search_staged(r, &matcher, &files)?) {
            collect(&f.name, o, &mut findings);
        }
    }
    let mut commits = 0;
    if a.history {
        let r = repo.as_ref().expect("checked above");
        let (hits, stats) = scan::search_history(r, &matcher, |p| allow.keeps(p))?;
        searched += stats.blobs;
        commits = stats.commits;
        if stats.skipped_binaries > 0 {
            skipped.push(format!("{} blob(s) in history", stats.skipped_binaries));
        }
        findings.extend(hits.into_iter().map(|h| Finding {
            file: h.path,
            line: h.hit.line,
            column: h.hit.column,
            value: h.hit.value,
            encoding: h.hit.encoding,
            commit: Some((h.commit.to_string(), h.time)),
        }));
    }
    findings.sort_by(|x, y| {
        (&x.commit.as_ref().map(|c| c.1), &x.file, x.line, x.column).cmp(&(
            &y.commit.as_ref().map(|c| c.1),
            &y.file,
            y.line,
            y.column,
        ))
    });

    let labels = matcher.labels();
    if a.json {
        let list: Vec<serde_json::Value> = findings
            .iter()
            .map(|f| {
                let (key, env) = &labels[f.value];
                let mut o = serde_json::json!({
                    "file": f.file,
                    "line": f.line,
                    "column": f.column,
                    "key": key,
                    "environment": env,
                    "encoding": f.encoding.name(),
                });
                if let Some((c, t)) = &f.commit {
                    o["commit"] = serde_json::Value::String(c.clone());
                    o["commit_time"] = serde_json::Value::from(*t);
                }
                o
            })
            .collect();
        let doc = serde_json::json!({
            "findings": list,
            "summary": {
                "findings": findings.len(),
                "files_searched": searched,
                "commits_searched": commits,
                "values": labels.len(),
                "min_length": a.min_length,
                "unreadable": loaded.unreadable,
                "skipped_binaries": skipped,
                "allow_listed": allow.skipped.get(),
            }
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        use std::io::Write;
        let mut so = std::io::stdout().lock();
        for f in &findings {
            let (key, env) = &labels[f.value];
            let commit = match &f.commit {
                Some((c, t)) => format!(" in commit {} ({})", &c[..12.min(c.len())], date(*t)),
                None => String::new(),
            };
            writeln!(
                so,
                "{}:{}:{}: {key} (environment {env}, {}){commit}",
                shown(&f.file),
                f.line,
                f.column,
                f.encoding.name()
            )?;
        }
        so.flush()?;
    }
    if allow.skipped.get() > 0 && !a.json {
        eprintln!(
            "note: {} path(s) not searched: allow-listed by scan.ignore in {}",
            allow.skipped.get(),
            crate::policy::POLICY_FILE
        );
    }
    if !skipped.is_empty() && !a.json {
        eprintln!(
            "note: not searched (binary, larger than {} MiB): {}",
            scan::BINARY_SKIP_BYTES >> 20,
            skipped.join(", ")
        );
    }
    let what = if a.history {
        format!("{commits} commit(s), {searched} blob(s)")
    } else {
        format!("{searched} file(s)")
    };
    if findings.is_empty() {
        if !a.json {
            eprintln!(
                "envv scan: no managed value found ({} value(s) in {what})",
                labels.len()
            );
        }
        return Ok(0);
    }
    if !a.json {
        let mut keys: Vec<&str> = findings
            .iter()
            .map(|f| labels[f.value].0.as_str())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        eprintln!(
            "envv scan: {} finding(s) of {} value(s) ({}) in {what}",
            findings.len(),
            keys.len(),
            keys.join(", ")
        );
        if a.history {
            eprintln!("  hint: a value in history stays readable by anyone with a clone: rotate it (`envv set [-e ENV] KEY`), then remove the copies");
        } else {
            eprintln!("  hint: remove each copy (read the value from the environment: `envv exec -- CMD`); rotate a value that was committed or pushed (`envv set [-e ENV] KEY`)");
        }
    }
    Ok(1)
}

/// A path for a terminal: control characters (a file name from git may hold escape
/// sequences) are shown escaped.
fn shown(name: &str) -> String {
    if name.chars().any(char::is_control) {
        name.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        name.to_string()
    }
}

fn date(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(time::macros::format_description!("[year]-[month]-[day]"))
                .ok()
        })
        .unwrap_or_default()
}

/// The pre-commit hook's value scan: staged changes searched for the managed values.
/// Off with `ENVV_HOOK_SCAN=0` or `scan: { hook: false }`. Says once when no identity here
/// decrypts, and never blocks a commit because the scan itself could not run.
pub(super) fn hook_findings(
    ctx: &Ctx,
    repo: &git2::Repository,
    known_encrypted: &std::collections::HashSet<git2::Oid>,
) -> Vec<hook::Problem> {
    if std::env::var("ENVV_HOOK_SCAN").is_ok_and(|v| v.trim() == "0") {
        return Vec::new();
    }
    let policy = match ctx.ws.policy() {
        Ok(p) => p,
        Err(_) => return Vec::new(), // the index checks report an invalid policy
    };
    if policy.is_some_and(|p| p.policy.scan.hook == Some(false)) {
        return Vec::new();
    }
    let run = || -> crate::Result<Vec<hook::Problem>> {
        let files = scan::staged_files(repo, true)?;
        if files.is_empty() {
            return Ok(Vec::new());
        }
        let allow = AllowList::new(ctx, Some(repo))?;
        // Encrypted files are never findings: those the index checks read are not read again.
        let files: Vec<scan::StagedFile> = files
            .into_iter()
            .filter(|f| allow.keeps(&f.name) && !known_encrypted.contains(&f.blob))
            .collect();
        // What will be searched, read once into the prefilter before anything is decrypted:
        // only the values that may be in it are kept, and the search is built for those.
        let odb = repo.odb()?;
        let total: u64 = files
            .iter()
            .filter_map(|f| odb.read_header(f.blob).ok())
            .map(|(size, _)| size as u64)
            .sum();
        let mut prefilter = scan::Prefilter::with_capacity(total);
        let mut searched = Vec::new();
        for f in files {
            if let Some(blob) = scan::searchable_blob(repo, f.blob)? {
                prefilter.add(blob.content());
                searched.push(f);
            }
        }
        if searched.is_empty() {
            return Ok(Vec::new());
        }
        let keep = |v: &[u8]| prefilter.may_hold(v);
        let loaded = load_values(ctx, &scan::tracked_dotenv_files(repo)?, Some(&keep))?;
        if loaded.decrypted == 0 {
            let mut why: Vec<String> = Vec::new();
            if !loaded.unreadable.is_empty() {
                why.push(format!(
                    "no identity here decrypts {}",
                    loaded.unreadable.join(", ")
                ));
            }
            for (name, e) in &loaded.failed {
                why.push(format!("{name}: {e}"));
            }
            if !why.is_empty() {
                eprintln!("envv pre-commit: staged files were not searched for secret values: {} (the other checks ran)", why.join("; "));
            }
            return Ok(Vec::new());
        }
        if loaded.values.is_empty() {
            return Ok(Vec::new()); // no value can be in the staged content
        }
        let files = searched;
        let matcher = Matcher::new(&loaded.values, scan::DEFAULT_MIN_LENGTH)?;
        let labels = matcher.labels();
        let mut out = Vec::new();
        for (f, o) in files
            .iter()
            .zip(scan::search_staged(repo, &matcher, &files)?)
        {
            if let FileOutcome::Hits(hits) = o {
                for h in hits {
                    let (key, env) = &labels[h.value];
                    out.push(hook::Problem {
                        file: shown(&f.name),
                        line: Some(h.line),
                        message: format!(
                            "holds the value of {key} (environment {env}, {}, column {})",
                            h.encoding.name(),
                            h.column
                        ),
                        fix: format!("remove it and `git add {}` (read it from the environment with `envv exec`); allow-list the path in .sops.yaml `scan: {{ ignore: [...] }}` if it must stay", f.name),
                    });
                }
            }
        }
        Ok(out)
    };
    match run() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("envv pre-commit: the value scan could not run ({e}); the other checks ran");
            Vec::new()
        }
    }
}

/// The values `exec --redact` hides: every loaded value that was stored encrypted.
pub(super) fn redaction(vars: &[crate::exec::Var]) -> Option<crate::exec::redact::Redaction> {
    let values: Vec<Value> = vars
        .iter()
        .filter(|v| v.secret)
        .map(|v| Value {
            key: v.key.clone(),
            env: String::new(),
            value: Secret::new(v.value.expose().to_vec()),
        })
        .collect();
    crate::exec::redact::Redaction::new(&values)
}
