//! The health of a repository's secrets, computed from the repository alone (no server).
//!
//! [`check`] turns the policy's `schema` and the environment files into [`Finding`]s: missing
//! required keys, values that do not match their pattern, key names that break the naming
//! rules, drift between environments, secrets older than their `max_age` (from git history),
//! expired members and files whose recipients disagree with the policy. [`git_integration`]
//! tells whether the pre-commit hook and the git diff/merge setup are installed, for `status`.
//! Nothing here prints: the CLI renders the findings.
// Documented in a follow-up.
#![allow(missing_docs)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use regex::Regex;

use crate::error::{Error, Result};
use crate::format::dotenv::{self, Line};
use crate::keys::Keyring;
use crate::policy::{parse_duration_days, Policy, POLICY_FILE};
use crate::store::file::EnvFile;

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
    /// Values proposed by non-readers wait to be accepted or rejected.
    PendingProposals,
    /// The file's own rule lines leave plain what the policy encrypts (or public values
    /// outside the MAC).
    WeakRule,
    /// The file's data key was changed without a rotation proof (a replacement of the file?).
    Rekeyed,
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
            Kind::PendingProposals => "pending_proposals",
            Kind::WeakRule => "weak_rule",
            Kind::Rekeyed => "rekeyed",
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
    /// For `max_age`: the commit that last changed the value, and its date (`YYYY-MM-DD`);
    /// for `recipients_out_of_sync`: the commit that made a missing reader a reader.
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
    /// The file exists and parses (it is opened again when checked: holding every
    /// environment's file at once would cost memory in proportion to all of them).
    present: bool,
    encrypted: bool,
    /// Key → stored text (last occurrence wins, as in [`EnvFile::find`]) for keys with a
    /// `max_age`; other keys map to `""` when empty and `"-"` otherwise.
    stored: Stored,
}

/// The keys of one environment's file, compactly: every environment of a repository usually
/// holds the same names, so each name is held once ([`Names`]) and an environment keeps a
/// sorted list of shared names (20 environments of 10,000 keys took 16 MiB as hash maps).
#[derive(Default)]
struct Stored {
    /// (name, value): [`Stored::EMPTY`], [`Stored::SET`] or `SET + 1 + i` for `aged[i]`.
    keys: Vec<(std::sync::Arc<str>, u32)>,
    aged: Vec<String>,
}

/// Key names shared by the [`Stored`] of every environment.
#[derive(Default)]
struct Names(HashSet<std::sync::Arc<str>>);

impl Names {
    fn get(&mut self, k: &str) -> std::sync::Arc<str> {
        if let Some(n) = self.0.get(k) {
            return n.clone();
        }
        let n: std::sync::Arc<str> = k.into();
        self.0.insert(n.clone());
        n
    }
}

impl Stored {
    const EMPTY: u32 = 0;
    const SET: u32 = 1;

    /// Builds from (name, value) in file order; the last occurrence of a name wins.
    fn from_pairs(mut keys: Vec<(std::sync::Arc<str>, u32)>, aged: Vec<String>) -> Self {
        keys.reverse();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        keys.dedup_by(|a, b| a.0 == b.0);
        keys.shrink_to_fit();
        Stored { keys, aged }
    }

    fn get(&self, k: &str) -> Option<&str> {
        let i = self.keys.binary_search_by(|e| (*e.0).cmp(k)).ok()?;
        Some(match self.keys[i].1 {
            Self::EMPTY => "",
            Self::SET => "-",
            n => &self.aged[(n - Self::SET - 1) as usize],
        })
    }

    fn contains_key(&self, k: &str) -> bool {
        self.get(k).is_some()
    }

    fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn keys(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|e| &*e.0)
    }
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
            return Err(Error::UnknownEnv {
                env: e.to_string(),
                declared: policy.environments.keys().cloned().collect(),
            });
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
    let mut names = Names::default();
    for (name, decl) in &policy.environments {
        let rel = decl.file.trim_start_matches("./").to_string();
        let want = only.is_none_or(|o| o == name);
        let mut l = Loaded {
            name: name.clone(),
            rel: rel.clone(),
            present: false,
            encrypted: false,
            stored: Stored::default(),
        };
        match EnvFile::open_in(root, &rel) {
            Ok(f) => {
                if let Some(c) = f.rule_conflict(&policy.crypt_rule()).filter(|_| want) {
                    report.findings.push(
                        Finding::new(Level::Error, Kind::WeakRule, Some(name), c.message())
                            .file(&rel)
                            .hint(c.fix(&rel)),
                    );
                }
                let (mut keys, mut aged_values) = (Vec::new(), Vec::new());
                for line in f.lines() {
                    if let Line::Pair { key, stored, .. } = line {
                        let aged = policy
                            .schema
                            .keys
                            .get(key)
                            .is_some_and(|k| k.max_age.is_some());
                        let kept = match () {
                            _ if aged => {
                                aged_values.push(stored.clone());
                                Stored::SET + aged_values.len() as u32
                            }
                            _ if stored.is_empty() => Stored::EMPTY,
                            _ => Stored::SET,
                        };
                        keys.push((names.get(key), kept));
                    }
                }
                l.stored = Stored::from_pairs(keys, aged_values);
                l.present = true;
                l.encrypted = f.is_encrypted();
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
        if want {
            pending_proposals(&mut report, root, name, &rel);
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
    let mut age_queries: Vec<(String, HashMap<String, String>)> = Vec::new();
    let mut age_meta: Vec<(String, Vec<(String, u64)>)> = Vec::new();

    // Ages are resolved by a walk over git history, in a thread while the files are decrypted.
    for l in loaded.iter().filter(|l| only.is_none_or(|o| o == l.name)) {
        let env = l.name.as_str();
        let aged: Vec<(String, u64)> = policy
            .schema
            .keys
            .iter()
            .filter(|(k, _)| l.stored.contains_key(k) && applies(k, env))
            .filter_map(|(k, s)| {
                s.max_age
                    .as_deref()
                    .and_then(parse_duration_days)
                    .map(|d| (k.clone(), d))
            })
            .collect();
        if !aged.is_empty() {
            age_queries.push((
                l.rel.clone(),
                aged.iter()
                    .map(|(k, _)| (k.clone(), l.stored.get(k).unwrap_or_default().to_string()))
                    .collect(),
            ));
            age_meta.push((env.to_string(), aged));
        }
    }
    let in_git = crate::git::open(root).is_some();
    let history = std::thread::scope(|scope| {
        let walk = (in_git && !age_queries.is_empty())
            .then(|| scope.spawn(|| crate::git::history::dates(root, &age_queries)));
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
            let reopened = l
                .present
                .then(|| EnvFile::open(&root.join(&l.rel), &l.rel).ok())
                .flatten();
            let Some(f) = &reopened else {
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
            match &f.meta() {
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
                    let drift = crate::store::file::recipient_drift(meta, &policy.recipients(env));
                    if !drift.is_empty() {
                        let who = |keys: &[String]| {
                            keys.iter()
                                .map(|k| member_name(policy, k))
                                .collect::<Vec<_>>()
                                .join(", ")
                        };
                        let mut parts = Vec::new();
                        // Readers the file does not wrap for: where each came from, so that a
                        // reviewer sees who asked for access (nobody gets it until a reader
                        // confirms them with `envv updatekeys`).
                        let queries: Vec<(String, String)> = drift
                            .missing
                            .iter()
                            .map(|k| (env.to_string(), k.clone()))
                            .collect();
                        let intros = crate::policy::trust::introductions(root, &queries);
                        if !drift.missing.is_empty() {
                            let named: Vec<String> = drift
                                .missing
                                .iter()
                                .zip(&intros)
                                .map(|(k, i)| match i {
                                    Some(i) => format!(
                                        "{} (made a reader in commit {} by {} on {})",
                                        member_name(policy, k),
                                        i.short(),
                                        i.author,
                                        i.date()
                                    ),
                                    None => format!("{} (not committed)", member_name(policy, k)),
                                })
                                .collect();
                            parts.push(format!("not readable yet by {}", named.join(", ")));
                        }
                        if !drift.extra.is_empty() {
                            parts.push(format!("still readable by {}", who(&drift.extra)));
                        }
                        let mut finding = Finding::new(
                            Level::Error,
                            Kind::RecipientsOutOfSync,
                            Some(env),
                            format!(
                                "{rel} is out of sync with {POLICY_FILE}: {}",
                                parts.join("; ")
                            ),
                        )
                        .file(rel)
                        .hint(match intros.iter().flatten().next() {
                            _ if drift.missing.is_empty() => "`envv updatekeys`".into(),
                            Some(i) => format!("make sure you know them (`git show {} -- {POLICY_FILE}`), then `envv updatekeys`", i.short()),
                            None => format!("make sure you know them (`git diff -- {POLICY_FILE}`), then `envv updatekeys`"),
                        });
                        if let Some(i) = intros.iter().flatten().next() {
                            finding.commit = Some(i.commit.clone());
                            finding.date = Some(i.date());
                        }
                        report.findings.push(finding);
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
                    Err(m) => Some(m.to_string()),
                    Ok(()) => match &naming {
                        Some(rx) if !rx.is_match(key) => Some(format!(
                            "key name {key} does not match schema.naming \"{}\"",
                            rx.as_str()
                        )),
                        _ => None,
                    },
                };
                if let Some(m) = problem {
                    let line = f.lines().iter().find_map(|x| match x {
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
                    Some("") => report.findings.push(
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
                .filter(|(k, s)| s.pattern.is_some() && l.stored.contains_key(k) && applies(k, env))
                .filter_map(|(k, s)| {
                    Regex::new(s.pattern.as_deref().unwrap_or_default())
                        .ok()
                        .map(|r| (k, r))
                })
                .collect();
            // Always when the caller can decrypt: a file whose MAC fails (a line removed by
            // someone without a key) must not pass `check`.
            check_patterns(&mut report, policy, env, f, &patterned, keyring);
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
        let (changes, note) = history.transpose()?.unwrap_or_default();
        if let Some(n) = note {
            report
                .findings
                .push(Finding::new(Level::Note, Kind::NotChecked, None, n));
        }
        for ((q, (env, aged)), found) in age_queries.iter().zip(&age_meta).zip(changes) {
            for (k, days) in aged {
                let Some(d) = found.get(k) else { continue };
                let c = &d.commit;
                let Ok(when) = time::OffsetDateTime::from_unix_timestamp(c.time) else {
                    continue;
                };
                let age = (today - when.date()).whole_days();
                if age > *days as i64 {
                    let date = format_date(when.date());
                    let short = c.short();
                    let max = policy.schema.keys[k].max_age.clone().unwrap_or_default();
                    let mut fnd = Finding::new(
                        Level::Error,
                        Kind::MaxAge,
                        Some(env),
                        format!("{k} last changed {}{date} in commit {short} by {} ({age} days ago; max_age {max})", if d.at_least { "on or before " } else { "" }, c.author),
                    )
                    .file(&q.0)
                    .key(k)
                    .hint(format!("rotate it at its provider, then `envv set -e {env} {k}`"));
                    fnd.commit = Some(c.id.clone());
                    fnd.date = Some(date);
                    report.findings.push(fnd);
                }
            }
        }
    }

    rekeys(&mut report, root, &loaded, only, keyring);
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

/// Files whose current data key came from a change without a rotation proof, when the
/// identities at hand can tell (they open the version before).
fn rekeys(
    report: &mut Report,
    root: &Path,
    loaded: &[Loaded],
    only: Option<&str>,
    keyring: &mut Keyring,
) {
    let sel: Vec<&Loaded> = loaded
        .iter()
        .filter(|l| only.is_none_or(|o| o == l.name))
        .filter(|l| l.encrypted)
        .collect();
    let rels: Vec<String> = sel.iter().map(|l| l.rel.clone()).collect();
    let Ok(found) = crate::git::history::unproven_rekeys(root, &rels, keyring) else {
        return;
    };
    for (l, c) in sel.iter().zip(found) {
        let Some(c) = c else { continue };
        let mut f = Finding::new(
            Level::Warning,
            Kind::Rekeyed,
            Some(&l.name),
            format!(
                "{}: the data key was changed in commit {} by {} on {} without a rotation proof: the file was replaced by someone without the previous key, or rotated by sops rotate",
                l.rel, c.short(), c.author, c.date()
            ),
        )
        .file(&l.rel)
        .hint(format!(
            "`git show {} -- {}`; if nobody you trust rotated it, restore the version before and run `envv rotate`",
            c.short(),
            l.rel
        ));
        f.commit = Some(c.id.clone());
        f.date = Some(c.date());
        report.findings.push(f);
    }
}

/// `schema.required` plus the environment's own `required`, in order, each once.
/// Proposals waiting beside an environment's file (a note), or a proposal file that does not
/// parse (an error).
fn pending_proposals(report: &mut Report, root: &Path, env: &str, rel: &str) {
    let file = format!("{rel}{}", crate::store::proposals::SUFFIX);
    match crate::store::proposals::load(&root.join(rel), rel) {
        Ok(props) if props.is_empty() => {}
        Ok(props) => {
            let list: Vec<String> = props
                .iter()
                .map(|p| format!("{} (by {})", p.key, p.by_shown()))
                .collect();
            report.findings.push(
                Finding::new(
                    Level::Note,
                    Kind::PendingProposals,
                    Some(env),
                    format!("{} proposals pending in {file}: {}", props.len(), list.join(", ")),
                )
                .file(&file)
                .hint(format!("a reader runs `envv accept -e {env}` (or `envv reject -e {env} KEY`)")),
            );
        }
        Err(e) => report.findings.push(
            Finding::new(Level::Error, Kind::InvalidFile, Some(env), e.to_string())
                .file(&file)
                .hint(format!("proposals are written by `envv propose -e {env} KEY`; remove {file} if it holds anything else")),
        ),
    }
}

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

/// The member name owning a recipient text, else its fingerprint ([`crate::keys::fingerprint`]).
fn member_name(policy: &Policy, recipient: &str) -> String {
    policy
        .members
        .iter()
        .find(|(_, m)| crate::keys::same_recipient(&m.key, recipient))
        .map(|(n, _)| n.clone())
        .unwrap_or_else(|| crate::keys::fingerprint(recipient))
}

/// Decrypts `f` when the caller can (MAC verified: a mismatch is an error) and checks the
/// patterned keys; without an identity, says which patterns went unchecked.
fn check_patterns(
    report: &mut Report,
    policy: &Policy,
    env: &str,
    f: &EnvFile,
    patterned: &[(&String, Regex)],
    keyring: &mut Keyring,
) {
    let rel = f.name();
    let Some(meta) = &f.meta() else {
        return;
    };
    let dk = match keyring.unwrap(meta) {
        Ok(Some(dk)) => dk,
        Ok(None) | Err(_) if patterned.is_empty() => return,
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
    let plain = match f.clone().decrypt(&dk, true) {
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
        let Some(v) = plain.get(k) else { continue };
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
    let present: Vec<&Loaded> = loaded.iter().filter(|l| l.present).collect();
    if present.len() < 2 {
        return;
    }
    let mut all: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for l in &present {
        for k in l.stored.keys() {
            all.entry(k).or_default().push(l.name.as_str());
        }
    }
    for l in present.iter().filter(|l| only.is_none_or(|o| o == l.name)) {
        let required: BTreeSet<String> = required_keys(policy, &l.name).into_iter().collect();
        for (k, holders) in &all {
            if l.stored.contains_key(k) || required.contains(*k) {
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
