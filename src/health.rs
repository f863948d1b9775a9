//! The health of a repository's secrets, computed from the repository alone (no server).
//!
//! [`check`] turns the policy's `schema` and the environment files into [`Finding`]s: missing
//! required keys, values that do not match their pattern, key names that break the naming
//! rules, drift between environments, secrets older than their `max_age` (from git history),
//! expired members and files whose recipients disagree with the policy. [`git_integration`]
//! tells whether the pre-commit hook and the git diff/merge setup are installed, for `status`.
//! Nothing here prints: the CLI renders the findings.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use regex::Regex;

use crate::dotenv::{self, Line};
use crate::envfile::EnvFile;
use crate::error::{Error, Result};
use crate::keys::Keyring;
use crate::policy::{parse_duration_days, Policy, POLICY_FILE};

/// How serious a finding is. Errors fail `check`; warnings fail it only with `--strict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warning,
    Note,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Note => "note",
        }
    }
}

/// What kind of problem a finding is (stable names, used in `--json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A member whose `expires` date has passed is still in the policy.
    ExpiredMember,
    /// A member asked to join and waits for approval.
    PendingMember,
    /// Every reader of the environment has expired: nobody can be given its data key.
    NoReaders,
    /// The environment's file does not exist.
    MissingFile,
    /// The file cannot be read (bad line, bad metadata).
    InvalidFile,
    /// The file has no sops metadata: plaintext where ciphertext belongs.
    NotEncrypted,
    /// The file's recipients differ from the policy's readers.
    RecipientsOutOfSync,
    /// A key name breaks the default rule or `schema.naming`.
    Naming,
    /// A required key is absent or empty.
    MissingRequired,
    /// A value does not match its `schema.keys.K.pattern`.
    Pattern,
    /// Checks could not run: patterns when the caller cannot decrypt, ages outside git.
    NotChecked,
    /// The file does not authenticate (MAC or a value's tag).
    Tampered,
    /// A secret's last change in git history is older than its `max_age`.
    MaxAge,
    /// A key set in other environments is missing here.
    Drift,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ExpiredMember => "expired_member",
            Kind::PendingMember => "pending_member",
            Kind::NoReaders => "no_readers",
            Kind::MissingFile => "missing_file",
            Kind::InvalidFile => "invalid_file",
            Kind::NotEncrypted => "not_encrypted",
            Kind::RecipientsOutOfSync => "recipients_out_of_sync",
            Kind::Naming => "naming",
            Kind::MissingRequired => "missing_required",
            Kind::Pattern => "pattern",
            Kind::NotChecked => "not_checked",
            Kind::Tampered => "tampered",
            Kind::MaxAge => "max_age",
            Kind::Drift => "drift",
        }
    }
}

/// One problem found by [`check`]. Messages name keys, files and members, never values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub kind: Kind,
    /// The environment, or `None` for findings about the policy itself.
    pub env: Option<String>,
    pub file: Option<String>,
    pub key: Option<String>,
    pub message: String,
    /// The next command to run, when there is one.
    pub hint: Option<String>,
    /// For `max_age`: the commit that last changed the value, and its date (`YYYY-MM-DD`).
    pub commit: Option<String>,
    pub date: Option<String>,
}

impl Finding {
    fn new(level: Level, kind: Kind, env: Option<&str>, message: String) -> Self {
        Finding {
            level,
            kind,
            env: env.map(str::to_string),
            file: None,
            key: None,
            message,
            hint: None,
            commit: None,
            date: None,
        }
    }
    fn file(mut self, f: &str) -> Self {
        self.file = Some(f.to_string());
        self
    }
    fn key(mut self, k: &str) -> Self {
        self.key = Some(k.to_string());
        self
    }
    fn hint(mut self, h: String) -> Self {
        self.hint = Some(h);
        self
    }
}

/// The result of [`check`].
#[derive(Debug, Default)]
pub struct Report {
    /// Sorted: policy findings first, then by environment, level and kind.
    pub findings: Vec<Finding>,
    /// The environments checked, in name order.
    pub environments: Vec<String>,
}

impl Report {
    pub fn count(&self, level: Level) -> usize {
        self.findings.iter().filter(|f| f.level == level).count()
    }

    /// Whether `check` should fail: any error, or any warning under `strict`.
    pub fn failed(&self, strict: bool) -> bool {
        self.count(Level::Error) > 0 || (strict && self.count(Level::Warning) > 0)
    }
}

/// One environment as loaded for the check.
struct Loaded {
    name: String,
    rel: String,
    file: Option<EnvFile>,
    /// Key → stored text (last occurrence wins, as in [`EnvFile::find`]).
    stored: HashMap<String, String>,
}

/// Checks the repository at `root` against `policy`: every environment, or only `only`.
/// `keyring` decrypts files for pattern checks; environments it cannot open get a
/// [`Kind::NotChecked`] warning instead of silence. `today` is the date ages are measured at.
pub fn check(
    root: &Path,
    policy: &Policy,
    only: Option<&str>,
    keyring: &mut Keyring,
    today: time::Date,
) -> Result<Report> {
    if let Some(e) = only {
        if !policy.environments.contains_key(e) {
            return Err(Error::Usage(format!(
                "environment \"{e}\" is not declared in {POLICY_FILE} (declared: {})",
                policy
                    .environments
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let mut report = Report::default();
    let selected: Vec<&str> = policy
        .environments
        .keys()
        .map(String::as_str)
        .filter(|e| only.is_none_or(|o| o == *e))
        .collect();
    report.environments = selected.iter().map(|s| s.to_string()).collect();

    // Policy-level findings.
    for (name, m) in &policy.members {
        if policy.is_expired(name) && only.is_none_or(|o| policy.reader_names(o).contains(name)) {
            let envs = policy.envs_of(name);
            report.findings.push(
                Finding::new(
                    Level::Warning,
                    Kind::ExpiredMember,
                    None,
                    format!(
                        "member {name} expired on {} and no longer receives new data keys{}",
                        m.expires.as_deref().unwrap_or("?"),
                        if envs.is_empty() {
                            String::new()
                        } else {
                            format!(" (was a reader of {})", envs.join(", "))
                        }
                    ),
                )
                .hint(format!(
                    "`envv member rm {name}` removes them and rotates what they could read"
                )),
            );
        }
    }
    if only.is_none() {
        for name in policy.pending.keys() {
            report.findings.push(
                Finding::new(
                    Level::Note,
                    Kind::PendingMember,
                    None,
                    format!("{name} asked to join and waits for approval"),
                )
                .hint(format!("a reader runs `envv member approve {name}`")),
            );
        }
    }

    // Load every environment (drift compares against all of them, even with `only`).
    let mut loaded = Vec::new();
    for (name, decl) in &policy.environments {
        let rel = decl.file.trim_start_matches("./").to_string();
        let want = only.is_none_or(|o| o == name);
        let mut l = Loaded {
            name: name.clone(),
            rel: rel.clone(),
            file: None,
            stored: HashMap::new(),
        };
        match EnvFile::open_in(root, &rel) {
            Ok(f) => {
                for line in &f.lines {
                    if let Line::Pair { key, stored, .. } = line {
                        l.stored.insert(key.clone(), stored.clone());
                    }
                }
                l.file = Some(f);
            }
            Err(Error::MissingFile { .. }) => {
                if want {
                    report.findings.push(
                        Finding::new(
                            Level::Warning,
                            Kind::MissingFile,
                            Some(name),
                            format!("{rel} does not exist yet"),
                        )
                        .file(&rel)
                        .hint(format!("`envv set -e {name} KEY` creates it")),
                    );
                }
            }
            Err(e) => {
                if want {
                    report.findings.push(
                        Finding::new(Level::Error, Kind::InvalidFile, Some(name), e.to_string())
                            .file(&rel),
                    );
                }
            }
        }
        loaded.push(l);
    }

    let naming = policy
        .schema
        .naming
        .as_deref()
        .and_then(|n| Regex::new(n).ok());
    let applies =
        |key: &str, env: &str| {
            policy.schema.keys.get(key).is_none_or(|s| {
                s.environments.is_empty() || s.environments.iter().any(|e| e == env)
            })
        };
    let mut age_queries: Vec<AgeQuery> = Vec::new();
    let mut age_meta: Vec<(String, Vec<(String, u64)>)> = Vec::new();

    // Ages are resolved by a walk over git history, in a thread while the files are decrypted.
    for l in loaded.iter().filter(|l| only.is_none_or(|o| o == l.name)) {
        let env = l.name.as_str();
        let aged: Vec<(String, u64)> = policy
            .schema
            .keys
            .iter()
            .filter(|(k, _)| l.stored.contains_key(*k) && applies(k, env))
            .filter_map(|(k, s)| {
                s.max_age
                    .as_deref()
                    .and_then(parse_duration_days)
                    .map(|d| (k.clone(), d))
            })
            .collect();
        if !aged.is_empty() {
            age_queries.push(AgeQuery {
                rel: l.rel.clone(),
                current: aged
                    .iter()
                    .map(|(k, _)| (k.clone(), l.stored[k].clone()))
                    .collect(),
            });
            age_meta.push((env.to_string(), aged));
        }
    }
    let in_git = crate::git::open(root).is_some();
    let history = std::thread::scope(|scope| {
        let walk = (in_git && !age_queries.is_empty())
            .then(|| scope.spawn(|| last_value_changes(root, &age_queries)));
        for l in loaded.iter().filter(|l| only.is_none_or(|o| o == l.name)) {
            let env = l.name.as_str();
            if policy.recipients(env).is_empty() {
                report.findings.push(
                    Finding::new(
                        Level::Error,
                        Kind::NoReaders,
                        Some(env),
                        format!("every reader of {env} has expired ({}): nobody can receive its data key", policy.reader_names(env).join(", ")),
                    )
                    .hint(format!("extend an `expires:` date or add a reader to environments.{env}.readers in {POLICY_FILE}")),
                );
            }
            let Some(f) = &l.file else {
                for k in required_keys(policy, env) {
                    report.findings.push(
                        Finding::new(
                            Level::Error,
                            Kind::MissingRequired,
                            Some(env),
                            format!("required key {k} is missing ({} does not exist)", l.rel),
                        )
                        .file(&l.rel)
                        .key(&k)
                        .hint(format!("`envv set -e {env} {k}`")),
                    );
                }
                continue;
            };
            let rel = l.rel.as_str();
            match &f.meta {
                None if !l.stored.is_empty() => report.findings.push(
                    Finding::new(
                        Level::Error,
                        Kind::NotEncrypted,
                        Some(env),
                        format!("{rel} holds plain text: it is not encrypted"),
                    )
                    .file(rel)
                    .hint(format!("`envv encrypt -f {rel}`")),
                ),
                None => {}
                Some(meta) => {
                    let drift = crate::envfile::recipient_drift(meta, &policy.recipients(env));
                    if !drift.is_empty() {
                        let who = |keys: &[String]| {
                            keys.iter()
                                .map(|k| member_name(policy, k))
                                .collect::<Vec<_>>()
                                .join(", ")
                        };
                        let mut parts = Vec::new();
                        if !drift.missing.is_empty() {
                            parts.push(format!("not readable yet by {}", who(&drift.missing)));
                        }
                        if !drift.extra.is_empty() {
                            parts.push(format!("still readable by {}", who(&drift.extra)));
                        }
                        report.findings.push(
                            Finding::new(
                                Level::Error,
                                Kind::RecipientsOutOfSync,
                                Some(env),
                                format!(
                                    "{rel} is out of sync with {POLICY_FILE}: {}",
                                    parts.join("; ")
                                ),
                            )
                            .file(rel)
                            .hint("`envv updatekeys`".into()),
                        );
                    }
                }
            }

            // Naming, in file order, each key once.
            let mut seen = HashSet::new();
            for key in f.keys() {
                if !seen.insert(key) {
                    continue;
                }
                let problem = match dotenv::validate_key(key) {
                    Err(m) => Some(m),
                    Ok(()) => match &naming {
                        Some(rx) if !rx.is_match(key) => Some(format!(
                            "key name {key} does not match schema.naming \"{}\"",
                            rx.as_str()
                        )),
                        _ => None,
                    },
                };
                if let Some(m) = problem {
                    let line = f.lines.iter().find_map(|x| match x {
                        Line::Pair { key: k, line, .. } if k == key => Some(*line),
                        _ => None,
                    });
                    let at = line.map(|n| format!("{rel}:{n}: ")).unwrap_or_default();
                    report.findings.push(
                        Finding::new(Level::Error, Kind::Naming, Some(env), format!("{at}{m}"))
                            .file(rel)
                            .key(key)
                            .hint(format!("rename it: `envv set -e {env} NEW_NAME` then `envv rm -e {env} OLD_NAME`")),
                    );
                }
            }

            // Required keys.
            for k in required_keys(policy, env) {
                match l.stored.get(&k) {
                    None => report.findings.push(
                        Finding::new(
                            Level::Error,
                            Kind::MissingRequired,
                            Some(env),
                            format!("required key {k} is missing from {rel}"),
                        )
                        .file(rel)
                        .key(&k)
                        .hint(format!("`envv set -e {env} {k}`")),
                    ),
                    Some(s) if s.is_empty() => report.findings.push(
                        Finding::new(
                            Level::Error,
                            Kind::MissingRequired,
                            Some(env),
                            format!("required key {k} is empty in {rel}"),
                        )
                        .file(rel)
                        .key(&k)
                        .hint(format!("`envv set -e {env} {k}`")),
                    ),
                    Some(_) => {}
                }
            }

            // Patterns (need the values).
            let patterned: Vec<(&String, Regex)> = policy
                .schema
                .keys
                .iter()
                .filter(|(k, s)| {
                    s.pattern.is_some() && l.stored.contains_key(*k) && applies(k, env)
                })
                .filter_map(|(k, s)| {
                    Regex::new(s.pattern.as_deref().unwrap_or_default())
                        .ok()
                        .map(|r| (k, r))
                })
                .collect();
            if !patterned.is_empty() {
                check_patterns(&mut report, policy, env, f, &patterned, keyring);
            }
        }
        walk.map(|h| {
            h.join()
                .unwrap_or_else(|_| Err(Error::Git("the history walk failed".into())))
        })
    });

    if !age_queries.is_empty() && !in_git {
        for (env, aged) in &age_meta {
            let keys = aged
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            report.findings.push(Finding::new(
                Level::Note,
                Kind::NotChecked,
                Some(env),
                format!("max_age not checked for {keys}: not a git repository, so no history"),
            ));
        }
    } else if !age_queries.is_empty() {
        let changes = history.transpose()?.unwrap_or_default();
        for ((q, (env, aged)), found) in age_queries.iter().zip(&age_meta).zip(changes) {
            for (k, days) in aged {
                let Some(c) = found.get(k) else { continue };
                let Ok(when) = time::OffsetDateTime::from_unix_timestamp(c.time) else {
                    continue;
                };
                let age = (today - when.date()).whole_days();
                if age > *days as i64 {
                    let date = format_date(when.date());
                    let short = &c.commit[..c.commit.len().min(8)];
                    let max = policy.schema.keys[k].max_age.clone().unwrap_or_default();
                    let mut fnd = Finding::new(
                        Level::Error,
                        Kind::MaxAge,
                        Some(env),
                        format!("{k} last changed {date} in commit {short} by {} ({age} days ago; max_age {max})", c.author),
                    )
                    .file(&q.rel)
                    .key(k)
                    .hint(format!("rotate it at its provider, then `envv set -e {env} {k}`"));
                    fnd.commit = Some(c.commit.clone());
                    fnd.date = Some(date);
                    report.findings.push(fnd);
                }
            }
        }
    }

    drift(&mut report, policy, &loaded, only);

    let env_rank: BTreeMap<&str, usize> = policy
        .environments
        .keys()
        .enumerate()
        .map(|(i, e)| (e.as_str(), i))
        .collect();
    report.findings.sort_by(|a, b| {
        let ra = a
            .env
            .as_deref()
            .map(|e| env_rank.get(e).copied().unwrap_or(usize::MAX - 1) + 1)
            .unwrap_or(0);
        let rb = b
            .env
            .as_deref()
            .map(|e| env_rank.get(e).copied().unwrap_or(usize::MAX - 1) + 1)
            .unwrap_or(0);
        (ra, a.level, a.kind).cmp(&(rb, b.level, b.kind))
    });
    Ok(report)
}

/// `schema.required` plus the environment's own `required`, in order, each once.
pub fn required_keys(policy: &Policy, env: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let own = policy
        .environments
        .get(env)
        .map(|e| e.required.as_slice())
        .unwrap_or_default();
    for k in policy.schema.required.iter().chain(own) {
        let applies =
            policy.schema.keys.get(k).is_none_or(|s| {
                s.environments.is_empty() || s.environments.iter().any(|e| e == env)
            });
        let explicit = own.contains(k);
        if (applies || explicit) && !out.contains(k) {
            out.push(k.clone());
        }
    }
    out
}

/// The member name owning a recipient text, else the shortened key.
fn member_name(policy: &Policy, recipient: &str) -> String {
    policy
        .members
        .iter()
        .find(|(_, m)| crate::keys::same_recipient(&m.key, recipient))
        .map(|(n, _)| n.clone())
        .unwrap_or_else(|| crate::keys::short_key(recipient))
}

fn check_patterns(
    report: &mut Report,
    policy: &Policy,
    env: &str,
    f: &EnvFile,
    patterned: &[(&String, Regex)],
    keyring: &mut Keyring,
) {
    let rel = f.name.as_str();
    let Some(meta) = &f.meta else {
        return;
    };
    let dk = match keyring.unwrap(meta) {
        Ok(Some(dk)) => dk,
        Ok(None) | Err(_) => {
            let keys = patterned
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            report.findings.push(
                Finding::new(
                    Level::Warning,
                    Kind::NotChecked,
                    Some(env),
                    format!("patterns not checked for {keys}: none of your identities can decrypt {rel} (readers: {})", policy.reader_names(env).join(", ")),
                )
                .file(rel)
                .hint("run `envv check` where a reader's identity is available (CI), or ask a reader to add you".into()),
            );
            return;
        }
    };
    let plain = match f.decrypt(&dk, true) {
        Ok(p) => p,
        Err(e) => {
            report.findings.push(
                Finding::new(Level::Error, Kind::Tampered, Some(env), e.to_string())
                    .file(rel)
                    .hint(format!("`git diff {rel}` shows what changed")),
            );
            return;
        }
    };
    for (k, rx) in patterned {
        let Some(v) = f.get(&plain, k) else { continue };
        let matches = std::str::from_utf8(v.expose()).is_ok_and(|s| rx.is_match(s));
        if !matches {
            let desc = policy.schema.keys[*k]
                .description
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            report.findings.push(
                Finding::new(
                    Level::Error,
                    Kind::Pattern,
                    Some(env),
                    format!(
                        "the value of {k} does not match its pattern \"{}\"{desc}",
                        rx.as_str()
                    ),
                )
                .file(rel)
                .key(k)
                .hint(format!(
                    "`envv set -e {env} {k}` with a value of the right form"
                )),
            );
        }
    }
}

/// Drift: a key set in some environments' files and missing from others. Keys whose schema
/// limits them to some environments are compared among those only; environments without a
/// file and keys already reported as missing-required are left out.
fn drift(report: &mut Report, policy: &Policy, loaded: &[Loaded], only: Option<&str>) {
    let present: Vec<&Loaded> = loaded.iter().filter(|l| l.file.is_some()).collect();
    if present.len() < 2 {
        return;
    }
    let mut all: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for l in &present {
        for k in l.stored.keys() {
            all.entry(k.as_str()).or_default().push(l.name.as_str());
        }
    }
    for l in present.iter().filter(|l| only.is_none_or(|o| o == l.name)) {
        let required: BTreeSet<String> = required_keys(policy, &l.name).into_iter().collect();
        for (k, holders) in &all {
            if l.stored.contains_key(*k) || required.contains(*k) {
                continue;
            }
            let scope = policy
                .schema
                .keys
                .get(*k)
                .map(|s| s.environments.as_slice())
                .unwrap_or_default();
            if !scope.is_empty() && !scope.contains(&l.name) {
                continue;
            }
            let holders: Vec<&str> = holders
                .iter()
                .copied()
                .filter(|h| scope.is_empty() || scope.iter().any(|e| e == h))
                .collect();
            if holders.is_empty() {
                continue;
            }
            let shown = if holders.len() > 4 {
                format!("{} and {} more", holders[..3].join(", "), holders.len() - 3)
            } else {
                holders.join(", ")
            };
            report.findings.push(
                Finding::new(
                    Level::Warning,
                    Kind::Drift,
                    Some(&l.name),
                    format!("{k} is set in {shown} but not in {}", l.rel),
                )
                .file(&l.rel)
                .key(k)
                .hint(format!(
                    "`envv set -e {} {k}`, or limit it with schema.keys.{k}.environments",
                    l.name
                )),
            );
        }
    }
}

/// `YYYY-MM-DD`.
pub fn format_date(d: time::Date) -> String {
    d.format(&time::macros::format_description!("[year]-[month]-[day]"))
        .unwrap_or_default()
}

/// Which keys of one file to date, with their current (working tree) stored text.
#[derive(Debug, Clone)]
pub struct AgeQuery {
    /// Path relative to the workspace root.
    pub rel: String,
    pub current: HashMap<String, String>,
}

/// For each query, the commit on HEAD's first-parent chain that set each key's current stored
/// value. Keys whose working-tree value differs from HEAD's (changed, not committed) and keys
/// never committed are absent: they are new.
///
/// History is read without decrypting and without reading every blob: one walk lists, per
/// file, the commits where its blob id changed (tree lookups only); then, for each key, a
/// binary search over those versions finds the oldest one still holding the current
/// ciphertext. That is exact because an encryption never repeats a ciphertext (random IV),
/// so a value's versions are contiguous; only a `git revert` back to an old ciphertext breaks
/// this, and then the age counts from a commit that introduced that same ciphertext. Each blob
/// read is parsed once, keeping only the asked keys.
pub fn last_value_changes(
    root: &Path,
    queries: &[AgeQuery],
) -> Result<Vec<HashMap<String, crate::git::KeyChange>>> {
    let mut out: Vec<HashMap<String, crate::git::KeyChange>> = vec![HashMap::new(); queries.len()];
    let Some(repo) = crate::git::open(root) else {
        return Ok(out);
    };
    // Objects are only read here, to date values: re-hashing every blob read (libgit2's
    // default) would cost more than the rest of `check`.
    git2::opts::strict_hash_verification(false);
    let workdir = repo.workdir().map(Path::to_path_buf).unwrap_or_default();
    let root_abs = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let workdir_abs = workdir.canonicalize().unwrap_or(workdir);
    let paths: Vec<PathBuf> = queries
        .iter()
        .map(|q| {
            let abs = root_abs.join(&q.rel);
            abs.strip_prefix(&workdir_abs)
                .map(Path::to_path_buf)
                .unwrap_or_else(|_| PathBuf::from(&q.rel))
        })
        .collect();
    let Ok(head) = repo.head() else {
        return Ok(out);
    };
    let Some(head) = head.target() else {
        return Ok(out);
    };
    let entry_at = |tree: &git2::Tree, i: usize| tree.get_path(&paths[i]).ok().map(|e| e.id());

    // Versions of each file, newest first: (blob id, index of the commit that wrote it).
    let mut commits: Vec<crate::git::KeyChange> = Vec::new();
    let mut versions: Vec<Vec<(Option<git2::Oid>, usize)>> = vec![Vec::new(); queries.len()];
    let mut walk = repo.revwalk()?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::TIME)?;
    walk.push(head)?;
    walk.simplify_first_parent()?;
    for oid in walk {
        let commit = repo.find_commit(oid?)?;
        let tree = commit.tree()?;
        let parent_tree = commit.parent(0).ok().and_then(|p| p.tree().ok());
        let mut idx = None;
        for (i, vs) in versions.iter_mut().enumerate() {
            let now = entry_at(&tree, i);
            if now != parent_tree.as_ref().and_then(|t| entry_at(t, i)) {
                let c = *idx.get_or_insert_with(|| {
                    let sig = commit.author();
                    commits.push(crate::git::KeyChange {
                        commit: commit.id().to_string(),
                        author: sig.name().unwrap_or("?").to_string(),
                        time: commit.time().seconds(),
                    });
                    commits.len() - 1
                });
                vs.push((now, c));
            }
        }
    }

    let finders: Vec<Option<regex::bytes::Regex>> =
        queries.iter().map(|q| key_finder(&q.current)).collect();
    let mut cache: HashMap<(usize, git2::Oid), std::rc::Rc<HashMap<String, String>>> =
        HashMap::new();
    let mut parsed = |i: usize, oid: Option<git2::Oid>| -> std::rc::Rc<HashMap<String, String>> {
        let Some(oid) = oid else {
            return Default::default();
        };
        cache
            .entry((i, oid))
            .or_insert_with(|| {
                let map = repo
                    .find_blob(oid)
                    .map(|b| stored_values(b.content(), &queries[i].current, finders[i].as_ref()))
                    .unwrap_or_default();
                std::rc::Rc::new(map)
            })
            .clone()
    };
    // Whether the version `after` (written over `before`) is a data-key rotation.
    let mut rotations: HashMap<(git2::Oid, git2::Oid), bool> = HashMap::new();
    let mut is_rotation =
        |_i: usize, before: Option<git2::Oid>, after: Option<git2::Oid>| -> bool {
            let (Some(b), Some(a)) = (before, after) else {
                return false;
            };
            *rotations.entry((b, a)).or_insert_with(|| {
                let snap = |oid| {
                    repo.find_blob(oid)
                        .map(|blob| crate::history::Snapshot::parse(blob.content()))
                        .unwrap_or_default()
                };
                let (sb, sa) = (snap(b), snap(a));
                !crate::history::compare(Some(&sb), &sa).3.is_empty()
            })
        };
    for (i, q) in queries.iter().enumerate() {
        let vs = &versions[i];
        // The newest version must be HEAD's blob; otherwise the file is not committed.
        let Some(&(Some(head_blob), _)) = vs.first() else {
            continue;
        };
        // When git sees no change in the file (index stat cache), HEAD holds the working values.
        let clean = repo.status_file(&paths[i]).is_ok_and(|st| st.is_empty());
        let at_head = if clean {
            None
        } else {
            Some(parsed(i, Some(head_blob)))
        };
        for (k, current) in &q.current {
            if at_head.as_ref().is_some_and(|m| m.get(k) != Some(current)) {
                continue; // changed in the working tree: new
            }
            // First version (from the newest) that no longer holds `current`. Most values never
            // change: try the oldest version first, then search between.
            let n = vs.len();
            let (mut lo, mut hi) = (1, n);
            if n > 1 && parsed(i, vs[n - 1].0).get(k) == Some(current) {
                lo = n;
            } else {
                hi = n.saturating_sub(1).max(1);
            }
            while lo < hi {
                let mid = (lo + hi) / 2;
                if parsed(i, vs[mid].0).get(k) == Some(current) {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            // A data-key rotation re-encrypts every value without changing it: date the value
            // from before the rotation (conservatively: a value changed in the same commit as a
            // rotation counts as older), else `member rm` would hide every stale secret.
            let mut guard = 0;
            while lo < n && guard < 64 && is_rotation(i, vs[lo].0, vs[lo - 1].0) {
                guard += 1;
                let before = parsed(i, vs[lo].0);
                let Some(old) = before.get(k).cloned() else {
                    break;
                };
                let mut j = lo + 1;
                while j < n && parsed(i, vs[j].0).get(k) == Some(&old) {
                    j += 1;
                }
                lo = j;
            }
            out[i].insert(k.clone(), commits[vs[lo - 1].1].clone());
        }
    }
    Ok(out)
}

/// A regex finding the lines `KEY=` of the wanted keys, or `None` when too large to build.
fn key_finder(wanted: &HashMap<String, String>) -> Option<regex::bytes::Regex> {
    let alternation = wanted
        .keys()
        .map(|k| regex::escape(k))
        .collect::<Vec<_>>()
        .join("|");
    regex::bytes::RegexBuilder::new(&format!("(?m)^(?:{alternation})="))
        .unicode(false)
        .build()
        .ok()
}

/// The stored text of the `wanted` keys in a blob of an encrypted dotenv file, read the way
/// [`dotenv::parse_stored`] reads lines (last occurrence wins), without parsing other lines.
fn stored_values(
    bytes: &[u8],
    wanted: &HashMap<String, String>,
    finder: Option<&regex::bytes::Regex>,
) -> HashMap<String, String> {
    let mut out = HashMap::new();
    if let Some(rx) = finder {
        // Fast path: jump straight to the wanted keys' lines (literal prefilter).
        for m in rx.find_iter(bytes) {
            let key = String::from_utf8_lossy(&m.as_bytes()[..m.len() - 1]).into_owned();
            let rest = &bytes[m.end()..];
            let line = &rest[..rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len())];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            out.insert(key, String::from_utf8_lossy(line).into_owned());
        }
        return out;
    }
    for raw in bytes.split(|&b| b == b'\n') {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.first().is_none_or(|&b| b == b'#') {
            continue;
        }
        let Some(eq) = raw.iter().position(|&b| b == b'=') else {
            continue;
        };
        let Ok(key) = std::str::from_utf8(&raw[..eq]) else {
            continue;
        };
        if wanted.contains_key(key) {
            out.insert(
                key.to_string(),
                String::from_utf8_lossy(&raw[eq + 1..]).into_owned(),
            );
        }
    }
    out
}

/// Whether the pre-commit hook and the git diff/merge setup are installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitIntegration {
    /// The hooks folder git uses (`core.hooksPath` honoured).
    pub hooks_dir: PathBuf,
    /// `pre-commit` in that folder runs `envv hook pre-commit`.
    pub hook: bool,
    /// `diff.envv.textconv` is configured.
    pub textconv: bool,
    /// `.gitattributes` routes some file through `diff=envv`.
    pub attributes: bool,
}

/// The git integration state of the repository containing `root`, or `None` outside git.
pub fn git_integration(root: &Path) -> Option<GitIntegration> {
    let repo = crate::git::open(root)?;
    let workdir = repo
        .workdir()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| root.to_path_buf());
    let hooks_dir = match crate::git::config_string(root, "core.hooksPath") {
        Some(p) if !p.trim().is_empty() => {
            let p = expand_tilde(p.trim());
            if p.is_absolute() {
                p
            } else {
                workdir.join(p)
            }
        }
        _ => repo.commondir().join("hooks"),
    };
    let hook = std::fs::read_to_string(hooks_dir.join("pre-commit"))
        .is_ok_and(|t| t.contains("envv hook pre-commit"));
    let textconv =
        crate::git::config_string(root, "diff.envv.textconv").is_some_and(|v| !v.trim().is_empty());
    let attributes = std::fs::read_to_string(workdir.join(".gitattributes")).is_ok_and(|t| {
        t.lines()
            .any(|l| !l.trim_start().starts_with('#') && l.contains("diff=envv"))
    });
    Some(GitIntegration {
        hooks_dir,
        hook,
        textconv,
        attributes,
    })
}

fn expand_tilde(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), dirs::home_dir()) {
        (Some(rest), Some(h)) => h.join(rest),
        _ => PathBuf::from(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_values_reads_like_parse_stored() {
        let mut wanted = HashMap::new();
        wanted.insert("A".to_string(), String::new());
        wanted.insert("B".to_string(), String::new());
        let blob = b"#ENC[AES256_GCM,data:x=,type:comment]\nA=1\r\nC=3\nB=first\nB=second\nsops_version=3.11.0\n";
        for finder in [None, key_finder(&wanted)] {
            let got = stored_values(blob, &wanted, finder.as_ref());
            assert_eq!(got.get("A").map(String::as_str), Some("1"));
            assert_eq!(got.get("B").map(String::as_str), Some("second"));
            assert!(!got.contains_key("C"));
        }
        wanted.insert("AB".to_string(), String::new());
        let got = stored_values(
            b"ABC=1\nAB=2\n#AB=3\n",
            &wanted,
            key_finder(&wanted).as_ref(),
        );
        assert_eq!(got.get("AB").map(String::as_str), Some("2"));
        assert!(!got.contains_key("A"));
    }

    #[test]
    fn required_keys_merge_global_and_env_and_respect_scope() {
        let text = format!(
            "envv:\n  members:\n    alice: {{ key: {} }}\n  groups:\n    team: [alice]\n  environments:\n    default: {{ file: .env, readers: [team] }}\n    production: {{ file: .env.production, readers: [team], required: [STRIPE, DB] }}\n  schema:\n    required: [DB, ONLY_PROD]\n    keys:\n      ONLY_PROD: {{ environments: [production] }}\n",
            "age1y7hpnjewjmlg9hz7yycl7mendl9zfzlgr7gh56px4tdrn7fvxehscrzh38"
        );
        let p = crate::policy::parse(".sops.yaml", text.as_bytes()).unwrap();
        assert_eq!(required_keys(&p, "default"), vec!["DB"]);
        assert_eq!(
            required_keys(&p, "production"),
            vec!["DB", "ONLY_PROD", "STRIPE"]
        );
    }

    #[test]
    fn report_fails_on_errors_and_strict_warnings() {
        let mut r = Report::default();
        assert!(!r.failed(true));
        r.findings.push(Finding::new(
            Level::Warning,
            Kind::Drift,
            Some("x"),
            "m".into(),
        ));
        assert!(!r.failed(false));
        assert!(r.failed(true));
        r.findings.push(Finding::new(
            Level::Error,
            Kind::Pattern,
            Some("x"),
            "m".into(),
        ));
        assert!(r.failed(false));
    }
}
