//! The health of a repository's secrets, computed from the repository alone (no server).
//!
//! [`check`] turns the policy's `schema` and the environment files into [`Finding`]s: missing
//! required keys, values that do not match their pattern, key names that break the naming
//! rules, drift between environments, secrets older than their `max_age` (from git history),
//! expired members and files whose recipients disagree with the policy. [`git_integration`]
//! tells whether the pre-commit hook and the git diff/merge setup are installed, for `status`.
//! Nothing here prints: the CLI renders the findings. Each check is a file of its own; this one
//! holds the finding types and the order they run in.

mod ages;
mod drift;
mod integration;
mod members;
mod naming;
mod patterns;
mod proposals;
mod recipients;
mod rekeys;
mod required;

use drift::drift;
pub use integration::{git_integration, GitIntegration};
use patterns::check_patterns;
use proposals::pending_proposals;
use rekeys::rekeys;

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
    /// Something is wrong: `check` exits 1.
    Error,
    /// Worth fixing; fails `check` only with `--strict`.
    Warning,
    /// For information (a pending join request, a check that could not run).
    Note,
}

impl Level {
    /// The level as `check --json` writes it (`error`, `warning`, `note`).
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
    /// The kind as `check --json` writes it (`expired_member`, `max_age`, ...).
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
    /// How serious it is.
    pub level: Level,
    /// Which check found it.
    pub kind: Kind,
    /// The environment, or `None` for findings about the policy itself.
    pub env: Option<String>,
    /// The file, relative to the repository root, when the finding is about one.
    pub file: Option<String>,
    /// The key, when the finding is about one.
    pub key: Option<String>,
    /// What is wrong, in one line (names only, never a value).
    pub message: String,
    /// The next command to run, when there is one.
    pub hint: Option<String>,
    /// For `max_age`: the commit that last changed the value, and its date (`YYYY-MM-DD`);
    /// for `recipients_out_of_sync`: the commit that made a missing reader a reader.
    pub commit: Option<String>,
    /// The date of [`Finding::commit`] (`YYYY-MM-DD`).
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
    /// How many findings have `level`.
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
    members::check(&mut report, policy, only);

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
    // The history walk runs before the files are decrypted, not beside them: each holds a whole
    // version of a file at a time, and together they doubled the peak memory.
    let history =
        (in_git && !age_queries.is_empty()).then(|| crate::git::history::dates(root, &age_queries));
    {
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
                    recipients::check(&mut report, root, policy, env, rel, meta);
                }
            }

            // Naming, in file order, each key once.
            naming::check(&mut report, f, env, rel, naming.as_ref());

            // Required keys.
            required::check(&mut report, policy, env, rel, &l.stored);

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
    }

    ages::check(
        &mut report,
        policy,
        today,
        in_git,
        &age_queries,
        &age_meta,
        history,
    )?;

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

/// The member name owning a recipient text, else its fingerprint ([`crate::keys::fingerprint`]).
fn member_name(policy: &Policy, recipient: &str) -> String {
    policy
        .members
        .iter()
        .find(|(_, m)| crate::keys::same_recipient(&m.key, recipient))
        .map(|(n, _)| n.clone())
        .unwrap_or_else(|| crate::keys::fingerprint(recipient))
}

/// `YYYY-MM-DD`.
pub fn format_date(d: time::Date) -> String {
    d.format(&time::macros::format_description!("[year]-[month]-[day]"))
        .unwrap_or_default()
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
