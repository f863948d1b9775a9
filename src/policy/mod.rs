//! The policy file `.sops.yaml`: who may read which environment.
//!
//! The `envv:` section is the source of truth (members, pending requests, groups, environments,
//! public key patterns, schema). `creation_rules` is generated from it on every write so that
//! plain `sops` encrypts new files for the same recipients. The file arrives in pull requests,
//! so it is parsed as untrusted input: size and nesting limits, alias-bomb protection, duplicate
//! keys refused, unknown fields refused inside `envv:`, and every error names the field.

pub mod membership;
pub mod trust;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::keys::Recipient;

/// File name of the policy, at the repository root.
pub const POLICY_FILE: &str = ".sops.yaml";
/// Largest policy file accepted.
const MAX_POLICY_BYTES: usize = 1 << 20;

/// One person or machine that can read secrets.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Public key: `age1...`, `ssh-ed25519 ...`, `ssh-rsa ...` or an age plugin recipient.
    pub key: String,
    #[serde(default)]
    /// Contact address, shown by `member ls`; access never depends on it.
    pub email: Option<String>,
    /// `YYYY-MM-DD`; from that day on the member is treated as removed.
    #[serde(default)]
    pub expires: Option<String>,
}

/// One environment: a file and who reads it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// The dotenv file of this environment, relative to the repository root.
    pub file: String,
    #[serde(default)]
    /// Member and group names that can decrypt this environment.
    pub readers: Vec<String>,
    /// Windows in which changes are refused by the pre-commit hook (`"Fri 18:00 - Sun 23:59"`).
    #[serde(default)]
    pub freeze: Vec<String>,
    /// Keys that must exist in this environment (in addition to `schema.required`).
    #[serde(default)]
    pub required: Vec<String>,
    /// Break-glass: each reader entry (a member or a group) is one sops key group, and this
    /// many of them together are needed to decrypt (sops `shamir_threshold`).
    #[serde(default)]
    pub threshold: Option<u8>,
}

/// Rules for one key.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeySchema {
    #[serde(default)]
    /// A regex the decrypted value must match (anywhere in it, unless anchored); checked by
    /// `envv check`.
    pub pattern: Option<String>,
    #[serde(default)]
    /// Longest time since the value last changed in git history, as `90d`, `12w` or `6m`.
    pub max_age: Option<String>,
    #[serde(default)]
    /// What the key is for; `envv check` shows it when the value breaks `pattern`.
    pub description: Option<String>,
    /// Environments this key applies to (all when empty).
    #[serde(default)]
    pub environments: Vec<String>,
}

/// What the values of the repository must look like.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Schema {
    #[serde(default)]
    /// Keys that must exist in every environment (only in those a key's `environments` lists,
    /// when it lists some).
    pub required: Vec<String>,
    #[serde(default)]
    /// Rules per key name.
    pub keys: BTreeMap<String, KeySchema>,
    /// Extra naming rule for keys (a regex every key must match).
    #[serde(default)]
    pub naming: Option<String>,
}

/// The `envv:` section.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default = "one")]
    /// Format version of the `envv:` section; only 1 is read.
    pub version: u32,
    #[serde(default)]
    /// Members by name: people or machines that can be readers.
    pub members: BTreeMap<String, Member>,
    #[serde(default)]
    /// People who asked to join (`envv join`) and cannot decrypt until approved.
    pub pending: BTreeMap<String, Member>,
    #[serde(default)]
    /// Groups by name, each a list of member (or other group) names.
    pub groups: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    /// Environments by name.
    pub environments: BTreeMap<String, Environment>,
    /// Regexes of key names kept in plain text (sops `unencrypted_regex`).
    #[serde(default)]
    pub public: Vec<String>,
    #[serde(default)]
    /// Rules on key names and values.
    pub schema: Schema,
    /// Read so that older policies still load, and ignored (with a warning): expansion is
    /// chosen by whoever runs envv, never by a committed file.
    #[serde(default)]
    pub expand: bool,
    /// `envv scan` and the hook's value scan.
    #[serde(default)]
    pub scan: ScanPolicy,
}

/// The `scan:` settings: paths never searched for leaked values, and the hook's value scan.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ScanPolicy {
    /// Globs of paths (relative to the repository root) that are never findings
    /// (`tests/fixtures/**`).
    #[serde(default)]
    pub ignore: Vec<String>,
    /// `false` turns off the pre-commit hook's search for managed values.
    #[serde(default)]
    pub hook: Option<bool>,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize)]
struct Document {
    #[serde(default)]
    envv: Option<Policy>,
}

/// The name of the default group created by `init`.
pub const DEFAULT_GROUP: &str = "team";
/// The name of the default environment created by `init`.
pub const DEFAULT_ENV: &str = "default";

impl Policy {
    /// A policy with one member in the default group reading the default environment.
    pub fn initial(name: &str, key: &str) -> Self {
        let mut p = Policy {
            version: 1,
            members: BTreeMap::new(),
            pending: BTreeMap::new(),
            groups: BTreeMap::new(),
            environments: BTreeMap::new(),
            public: Vec::new(),
            schema: Schema::default(),
            expand: false,
            scan: ScanPolicy::default(),
        };
        p.members.insert(
            name.into(),
            Member {
                key: key.into(),
                email: None,
                expires: None,
            },
        );
        p.groups.insert(DEFAULT_GROUP.into(), vec![name.into()]);
        p.environments.insert(
            DEFAULT_ENV.into(),
            Environment {
                file: ".env".into(),
                readers: vec![DEFAULT_GROUP.into()],
                ..Default::default()
            },
        );
        p
    }

    /// Whether a member's `expires` date has passed (today counts as expired).
    pub fn is_expired(&self, name: &str) -> bool {
        self.members
            .get(name)
            .and_then(|m| m.expires.as_deref())
            .and_then(parse_date)
            .is_some_and(|d| d <= today())
    }

    /// Member names that read `env` (through groups or directly), sorted, expired included.
    pub fn reader_names(&self, env: &str) -> Vec<String> {
        let mut out = BTreeSet::new();
        if let Some(e) = self.environments.get(env) {
            for r in &e.readers {
                self.expand_reader(r, &mut out, 0);
            }
        }
        out.into_iter().collect()
    }

    fn expand_reader(&self, name: &str, out: &mut BTreeSet<String>, depth: usize) {
        if let Some(g) = self.groups.get(name) {
            if depth < 8 {
                for m in g {
                    self.expand_reader(m, out, depth + 1);
                }
            }
        } else if self.members.contains_key(name) {
            out.insert(name.to_string());
        }
    }

    /// The recipients of an environment: keys of its non-expired readers, sorted by member name,
    /// without duplicates.
    pub fn recipients(&self, env: &str) -> Vec<Recipient> {
        let mut out: Vec<Recipient> = Vec::new();
        for name in self.reader_names(env) {
            if self.is_expired(&name) {
                continue;
            }
            if let Ok(r) = Recipient::parse(&self.members[&name].key) {
                if !out
                    .iter()
                    .any(|o| crate::keys::same_recipient(&o.text, &r.text))
                {
                    out.push(r);
                }
            }
        }
        out
    }

    /// The key groups of a threshold environment, one per reader entry (a member, or a group's
    /// non-expired members), with the threshold; `None` for an environment without one.
    pub fn key_groups(&self, env: &str) -> Option<(Vec<Vec<Recipient>>, u8)> {
        let e = self.environments.get(env)?;
        let k = e.threshold?;
        let groups = e
            .readers
            .iter()
            .map(|entry| {
                let mut names = BTreeSet::new();
                self.expand_reader(entry, &mut names, 0);
                let mut out: Vec<Recipient> = Vec::new();
                for n in names.iter().filter(|n| !self.is_expired(n)) {
                    if let Ok(r) = Recipient::parse(&self.members[n].key) {
                        if !out
                            .iter()
                            .any(|o| crate::keys::same_recipient(&o.text, &r.text))
                        {
                            out.push(r);
                        }
                    }
                }
                out
            })
            .collect();
        Some((groups, k))
    }

    /// Environments a member can read.
    pub fn envs_of(&self, member: &str) -> Vec<String> {
        self.environments
            .keys()
            .filter(|e| self.reader_names(e).iter().any(|m| m == member))
            .cloned()
            .collect()
    }

    /// Groups a member belongs to.
    pub fn groups_of(&self, member: &str) -> Vec<String> {
        self.groups
            .iter()
            .filter(|(_, ms)| ms.iter().any(|m| m == member))
            .map(|(g, _)| g.clone())
            .collect()
    }

    /// The environment whose file is `rel` (a path relative to the repository root).
    pub fn env_for_file(&self, rel: &str) -> Option<&str> {
        let rel = rel.trim_start_matches("./");
        self.environments
            .iter()
            .find(|(_, e)| e.file.trim_start_matches("./") == rel)
            .map(|(n, _)| n.as_str())
    }

    /// The combined `public` regex, as stored in files (`sops_unencrypted_regex`).
    pub fn public_regex(&self) -> Option<String> {
        match self.public.len() {
            0 => None,
            1 => Some(self.public[0].clone()),
            _ => Some(
                self.public
                    .iter()
                    .map(|p| format!("(?:{p})"))
                    .collect::<Vec<_>>()
                    .join("|"),
            ),
        }
    }

    /// The crypt rule for files this policy creates.
    pub fn crypt_rule(&self) -> crate::format::sops::CryptRule {
        match self.public_regex() {
            Some(r) => crate::format::sops::CryptRule::UnencryptedRegex(
                crate::format::sops::rule_regex(&r).expect("validated"),
            ),
            None => crate::format::sops::CryptRule::default(),
        }
    }

    /// Checks references, names, keys, dates and regexes. `text` is the file text for line
    /// numbers.
    pub fn validate(&self, file: &str, text: &str) -> Result<()> {
        let err = |path: &[&str], msg: String| Error::Policy {
            file: file.into(),
            line: locate(text, path),
            msg,
        };
        if self.version != 1 {
            return Err(err(
                &["envv", "version"],
                format!(
                    "envv.version: unsupported version {} (this envv reads version 1)",
                    self.version
                ),
            ));
        }
        for (name, m) in self.members.iter().chain(self.pending.iter()) {
            let section = if self.members.contains_key(name) {
                "members"
            } else {
                "pending"
            };
            check_name(name)
                .map_err(|m| err(&[section, name], format!("envv.{section}.{name}: {m}")))?;
            Recipient::parse(&m.key)
                .map_err(|e| err(&[section, name], format!("envv.{section}.{name}.key: {e}")))?;
            if let Some(d) = &m.expires {
                if parse_date(d).is_none() {
                    return Err(err(
                        &[section, name, "expires"],
                        format!(
                            "envv.{section}.{name}.expires: \"{d}\" is not a date (YYYY-MM-DD)"
                        ),
                    ));
                }
            }
        }
        for (g, ms) in &self.groups {
            check_name(g).map_err(|m| err(&["groups", g], format!("envv.groups.{g}: {m}")))?;
            if self.members.contains_key(g) {
                return Err(err(
                    &["groups", g],
                    format!("envv.groups.{g}: a member has the same name; rename the group"),
                ));
            }
            let mut seen = BTreeSet::new();
            for m in ms {
                if !self.members.contains_key(m) && !self.groups.contains_key(m) {
                    return Err(err(
                        &["groups", g, m],
                        format!("envv.groups.{g}: unknown member \"{m}\""),
                    ));
                }
                if !seen.insert(m) {
                    return Err(err(
                        &["groups", g, m],
                        format!("envv.groups.{g}: \"{m}\" is listed twice"),
                    ));
                }
            }
        }
        let mut files = BTreeMap::new();
        for (name, e) in &self.environments {
            check_name(name).map_err(|m| {
                err(
                    &["environments", name],
                    format!("envv.environments.{name}: {m}"),
                )
            })?;
            if e.file.is_empty() || e.file.contains("..") || Path::new(&e.file).is_absolute() {
                return Err(err(
                    &["environments", name, "file"],
                    format!("envv.environments.{name}.file: {:?} must be a relative path inside the repository (no `..`, not absolute)", e.file),
                ));
            }
            if e.file.ends_with(".local") {
                return Err(err(&["environments", name, "file"], format!("envv.environments.{name}.file: .local files are personal and never encrypted")));
            }
            if let Some(other) = files.insert(e.file.trim_start_matches("./").to_string(), name) {
                return Err(err(&["environments", name, "file"], format!("envv.environments.{name}.file: {} is already the file of environment {other}", e.file)));
            }
            if e.readers.is_empty() {
                return Err(err(
                    &["environments", name],
                    format!("envv.environments.{name}.readers: empty; nobody could read it"),
                ));
            }
            for r in &e.readers {
                if !self.members.contains_key(r) && !self.groups.contains_key(r) {
                    return Err(err(
                        &["environments", name, r],
                        format!(
                            "envv.environments.{name}.readers: unknown member or group \"{r}\""
                        ),
                    ));
                }
            }
            if self.reader_names(name).is_empty() {
                return Err(err(
                    &["environments", name],
                    format!("envv.environments.{name}.readers: the groups listed have no members"),
                ));
            }
            if let Some(k) = e.threshold {
                let n = e.readers.len();
                if k < 2 || usize::from(k) > n {
                    return Err(err(
                        &["environments", name, "threshold"],
                        format!("envv.environments.{name}.threshold: {k} must be between 2 and the number of reader entries ({n}): each entry is one key group"),
                    ));
                }
                let mut seen = BTreeSet::new();
                for r in &e.readers {
                    if !seen.insert(r) {
                        return Err(err(
                            &["environments", name, "readers"],
                            format!("envv.environments.{name}.readers: \"{r}\" is listed twice; with a threshold each entry is one key group"),
                        ));
                    }
                }
                if let Some((groups, _)) = self.key_groups(name) {
                    if let Some(i) = groups.iter().position(Vec::is_empty) {
                        return Err(err(
                            &["environments", name, "readers"],
                            format!("envv.environments.{name}.readers: \"{}\" has no current member, so its key group would have no recipient", e.readers[i]),
                        ));
                    }
                }
            }
            for f in &e.freeze {
                parse_freeze(f).map_err(|m| {
                    err(
                        &["environments", name, "freeze"],
                        format!("envv.environments.{name}.freeze: \"{f}\": {m}"),
                    )
                })?;
            }
            for k in &e.required {
                crate::format::dotenv::validate_key(k).map_err(|m| {
                    err(
                        &["environments", name, "required"],
                        format!("envv.environments.{name}.required: {m}"),
                    )
                })?;
            }
        }
        for p in &self.public {
            crate::format::sops::rule_regex(p).map_err(|e| {
                err(
                    &["public"],
                    format!("envv.public: invalid regex \"{p}\": {}", regex_msg(&e)),
                )
            })?;
        }
        for g in &self.scan.ignore {
            if g.is_empty() || g.len() > 512 || g.contains("..") || g.starts_with('/') {
                return Err(err(
                    &["scan", "ignore"],
                    format!("envv.scan.ignore: \"{}\" is not a glob of paths inside the repository (at most 512 characters, no `..`, not absolute)", g.chars().take(64).collect::<String>().escape_debug()),
                ));
            }
        }
        // Files store the patterns as one rule (`crypt_rule`), which must compile too.
        if let Some(all) = self.public_regex() {
            crate::format::sops::rule_regex(&all).map_err(|e| {
                err(
                    &["public"],
                    format!("envv.public: the patterns together: {}", regex_msg(&e)),
                )
            })?;
        }
        for k in &self.schema.required {
            crate::format::dotenv::validate_key(k).map_err(|m| {
                err(
                    &["schema", "required"],
                    format!("envv.schema.required: {m}"),
                )
            })?;
        }
        if let Some(n) = &self.schema.naming {
            let rx = Regex::new(n).map_err(|e| {
                err(
                    &["schema", "naming"],
                    format!("envv.schema.naming: invalid regex: {}", regex_msg(&e)),
                )
            })?;
            // Keys the schema itself names must follow the project's naming rule.
            let named = self
                .schema
                .required
                .iter()
                .map(|k| (vec!["schema", "required"], k))
                .chain(
                    self.schema
                        .keys
                        .keys()
                        .map(|k| (vec!["schema", "keys", k.as_str()], k)),
                );
            let per_env = self.environments.iter().flat_map(|(e, d)| {
                d.required
                    .iter()
                    .map(move |k| (vec!["environments", e.as_str(), "required"], k))
            });
            for (path, k) in named.chain(per_env) {
                if !rx.is_match(k) {
                    return Err(err(
                        &path,
                        format!(
                            "envv.{}: key {k} does not match schema.naming \"{n}\"",
                            path.join(".")
                        ),
                    ));
                }
            }
        }
        for (k, s) in &self.schema.keys {
            crate::format::dotenv::validate_key(k)
                .map_err(|m| err(&["schema", "keys", k], format!("envv.schema.keys: {m}")))?;
            if let Some(p) = &s.pattern {
                Regex::new(p).map_err(|e| {
                    err(
                        &["schema", "keys", k, "pattern"],
                        format!(
                            "envv.schema.keys.{k}.pattern: invalid regex: {}",
                            regex_msg(&e)
                        ),
                    )
                })?;
            }
            if let Some(a) = &s.max_age {
                parse_duration_days(a).ok_or_else(|| err(&["schema", "keys", k, "max_age"], format!("envv.schema.keys.{k}.max_age: \"{a}\" is not a duration like 90d, 12w or 6m")))?;
            }
            for e in &s.environments {
                if !self.environments.contains_key(e) {
                    return Err(err(
                        &["schema", "keys", k, "environments"],
                        format!("envv.schema.keys.{k}.environments: unknown environment \"{e}\""),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The whole `.sops.yaml` text: the `envv:` section and the generated `creation_rules`.
    pub fn to_yaml(&self) -> String {
        let mut y = String::new();
        y.push_str("# envv policy: who can read which environment. Edit with `envv member|env|group ...`\n");
        y.push_str("# or by hand (then run `envv updatekeys`). Docs: `envv --help`.\n");
        y.push_str("envv:\n  version: 1\n");
        let members = |y: &mut String, title: &str, map: &BTreeMap<String, Member>| {
            if map.is_empty() {
                return;
            }
            y.push_str(&format!("  {title}:\n"));
            for (n, m) in map {
                y.push_str(&format!("    {}:\n      key: {}\n", q(n), q(&m.key)));
                if let Some(e) = &m.email {
                    y.push_str(&format!("      email: {}\n", q(e)));
                }
                if let Some(e) = &m.expires {
                    y.push_str(&format!("      expires: {}\n", q(e)));
                }
            }
        };
        members(&mut y, "members", &self.members);
        members(&mut y, "pending", &self.pending);
        if !self.groups.is_empty() {
            y.push_str("  groups:\n");
            for (g, ms) in &self.groups {
                y.push_str(&format!("    {}: {}\n", q(g), flow(ms)));
            }
        }
        if !self.environments.is_empty() {
            y.push_str("  environments:\n");
            for (n, e) in &self.environments {
                y.push_str(&format!(
                    "    {}:\n      file: {}\n      readers: {}\n",
                    q(n),
                    q(&e.file),
                    flow(&e.readers)
                ));
                if !e.freeze.is_empty() {
                    y.push_str(&format!("      freeze: {}\n", flow(&e.freeze)));
                }
                if !e.required.is_empty() {
                    y.push_str(&format!("      required: {}\n", flow(&e.required)));
                }
                if let Some(k) = e.threshold {
                    y.push_str(&format!("      threshold: {k}\n"));
                }
            }
        }
        if !self.public.is_empty() {
            y.push_str(&format!("  public: {}\n", flow(&self.public)));
        }
        if self.expand {
            y.push_str("  expand: true\n");
        }
        if !self.scan.ignore.is_empty() || self.scan.hook.is_some() {
            y.push_str("  scan:\n");
            if !self.scan.ignore.is_empty() {
                y.push_str(&format!("    ignore: {}\n", flow(&self.scan.ignore)));
            }
            if let Some(h) = self.scan.hook {
                y.push_str(&format!("    hook: {h}\n"));
            }
        }
        let s = &self.schema;
        if !s.required.is_empty() || !s.keys.is_empty() || s.naming.is_some() {
            y.push_str("  schema:\n");
            if !s.required.is_empty() {
                y.push_str(&format!("    required: {}\n", flow(&s.required)));
            }
            if let Some(n) = &s.naming {
                y.push_str(&format!("    naming: {}\n", q(n)));
            }
            if !s.keys.is_empty() {
                y.push_str("    keys:\n");
                for (k, ks) in &s.keys {
                    y.push_str(&format!("      {}:\n", q(k)));
                    let mut any = false;
                    for (f, v) in [
                        ("pattern", &ks.pattern),
                        ("max_age", &ks.max_age),
                        ("description", &ks.description),
                    ] {
                        if let Some(v) = v {
                            y.push_str(&format!("        {f}: {}\n", q(v)));
                            any = true;
                        }
                    }
                    if !ks.environments.is_empty() {
                        y.push_str(&format!(
                            "        environments: {}\n",
                            flow(&ks.environments)
                        ));
                        any = true;
                    }
                    if !any {
                        y.truncate(y.len() - 1);
                        y.push_str(" {}\n");
                    }
                }
            }
        }
        y.push_str("# creation_rules is generated by envv from the envv: section; edits here are overwritten.\n");
        y.push_str("creation_rules:\n");
        let public = self.public_regex();
        for (name, e) in &self.environments {
            let recipients = self.recipients(name);
            if recipients.is_empty() {
                continue;
            }
            let rx = format!("(^|/){}$", regex::escape(e.file.trim_start_matches("./")));
            y.push_str(&format!("  - path_regex: {}\n", q(&rx)));
            if let Some((groups, k)) = self.key_groups(name) {
                y.push_str(&format!("    shamir_threshold: {k}\n    key_groups:\n"));
                for g in &groups {
                    y.push_str("      - age:\n");
                    for r in g {
                        y.push_str(&format!("          - {}\n", q(&r.text)));
                    }
                }
            } else {
                y.push_str("    age:\n");
                for r in &recipients {
                    y.push_str(&format!("      - {}\n", q(&r.text)));
                }
            }
            if let Some(p) = &public {
                y.push_str(&format!("    unencrypted_regex: {}\n", q(p)));
            }
        }
        if self.environments.values().all(|_| false) || self.environments.is_empty() {
            y.push_str("  []\n");
        }
        y
    }
}

/// A loaded policy file.
#[derive(Debug, Clone)]
pub struct PolicyFile {
    /// Where the policy file is.
    pub path: PathBuf,
    /// Its parsed `envv:` section.
    pub policy: Policy,
}

impl PolicyFile {
    /// Reads and validates `.sops.yaml`. A file without an `envv:` section is an error naming
    /// `envv init`.
    pub fn load(path: &Path) -> Result<Self> {
        let shown = display_name(path);
        let bytes = crate::os::paths::read_bounded(path, &shown)?;
        let policy = parse(&shown, &bytes)?;
        Ok(PolicyFile {
            path: path.to_path_buf(),
            policy,
        })
    }

    /// Writes the policy atomically (validated first).
    pub fn save(&self) -> Result<()> {
        let text = self.policy.to_yaml();
        self.policy.validate(&display_name(&self.path), &text)?;
        crate::os::files::write_atomic(&self.path, text.as_bytes(), 0o644)
    }
}

fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Parses policy text (untrusted): limits, duplicate keys refused, then [`Policy::validate`].
pub fn parse(file: &str, bytes: &[u8]) -> Result<Policy> {
    if bytes.len() > MAX_POLICY_BYTES {
        return Err(Error::Policy {
            file: file.into(),
            line: None,
            msg: format!(
                "larger than {} KiB; refusing to parse",
                MAX_POLICY_BYTES / 1024
            ),
        });
    }
    let text = crate::format::dotenv::decode_utf8(file, bytes).map_err(|e| Error::Policy {
        file: file.into(),
        line: None,
        msg: e.to_string(),
    })?;
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: 32,
            max_aliases: 100,
            max_anchors: 100,
            max_nodes: 100_000,
            max_events: 200_000,
            max_documents: 1,
        },
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        // Only the first line of an error is kept, so no source snippet is cut out and drawn
        // (15 % of the time spent on a malformed policy; over a third under a sanitizer).
        with_snippet: false,
    };
    let doc: Document = serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let msg = e.to_string();
        let line = e.location().map(|l| l.line() as usize);
        Error::Policy {
            file: file.into(),
            line,
            msg: first_line(&msg).to_string(),
        }
    })?;
    let policy = doc.envv.ok_or_else(|| Error::Policy {
        file: file.into(),
        line: None,
        msg: "no envv: section (a plain sops config); run `envv init` to add one".into(),
    })?;
    policy.validate(file, text)?;
    Ok(policy)
}

/// The useful part of a regex error: its last line (`unclosed group`), not `regex parse error:`.
fn regex_msg(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .trim_start_matches("error: ")
        .to_string()
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// Line (1-based) where a path of names appears, found by scanning for each name in turn.
fn locate(text: &str, path: &[&str]) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut start = 0;
    let mut found = None;
    for seg in path {
        let pos = lines[start..].iter().position(|l| {
            let t = l.trim_start().trim_start_matches("- ");
            t.starts_with(&format!("{seg}:"))
                || t.starts_with(&format!("\"{seg}\":"))
                || l.contains(&format!(" {seg},"))
                || l.contains(&format!("[{seg}"))
                || l.contains(&format!(" {seg}]"))
                || t == *seg
        });
        if let Some(p) = pos {
            start += p;
            found = Some(start + 1);
        }
    }
    found
}

/// A member, group or environment name that the policy cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty, longer than 64 bytes, starting with `-` or `.`, or holding a character other than
    /// letters, digits, `-`, `_` and `.`. `shown` is the name's first 64 characters with control
    /// characters escaped (a name is public policy text, never a secret).
    #[error("invalid name \"{shown}\": use letters, digits, - _ . (at most 64)")]
    Invalid {
        /// The refused name, shortened and escaped for a message.
        shown: String,
    },
}

fn check_name(name: &str) -> std::result::Result<(), NameError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        && !name.starts_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(NameError::Invalid {
            shown: name
                .chars()
                .take(64)
                .collect::<String>()
                .escape_debug()
                .to_string(),
        })
    }
}

/// Slugs a person's name into a member name (`Dana Dev` → `dana-dev`).
pub fn slug(name: &str) -> String {
    let mut s = String::new();
    for c in name.trim().chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('-') && !s.is_empty() {
            s.push('-');
        }
    }
    s.trim_end_matches('-').chars().take(64).collect()
}

/// `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Option<time::Date> {
    time::Date::parse(
        s.trim(),
        &time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()
}

/// Today's date (UTC).
pub fn today() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}

/// `90d`, `12w`, `6m` (30 days), `1y` (365 days) → days.
pub fn parse_duration_days(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        "d" => 1,
        "w" => 7,
        "m" => 30,
        "y" => 365,
        _ => return None,
    };
    Some(n * mult)
}

/// A weekly freeze window: start and end as minutes since Monday 00:00.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreezeWindow {
    /// First minute of the window.
    pub start: u32,
    /// Last minute of the window (inclusive); smaller than `start` when the window wraps past
    /// Sunday midnight.
    pub end: u32,
}

impl FreezeWindow {
    /// Whether `minute_of_week` (Monday 00:00 = 0) is inside the window (wrapping over Sunday).
    pub fn contains(&self, minute_of_week: u32) -> bool {
        if self.start <= self.end {
            (self.start..=self.end).contains(&minute_of_week)
        } else {
            minute_of_week >= self.start || minute_of_week <= self.end
        }
    }
}

/// Why a freeze window (`"Fri 18:00 - Sun 23:59"`) cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FreezeError {
    /// There is no `-` between the start and the end.
    #[error("expected \"Day HH:MM - Day HH:MM\"")]
    NoRange,
    /// A start or end has no day.
    #[error("missing day")]
    MissingDay,
    /// A start or end has a day but no time.
    #[error("missing time")]
    MissingTime,
    /// The day is not one of mon..sun (any case, any suffix: `Friday`). `day` is policy text.
    #[error("unknown day \"{day}\"")]
    UnknownDay {
        /// The word where the day should be.
        day: String,
    },
    /// The time has no `:`.
    #[error("time must be HH:MM")]
    NoColon,
    /// The hour is not a number.
    #[error("bad hour")]
    BadHour,
    /// The minute is not a number.
    #[error("bad minute")]
    BadMinute,
    /// The hour is above 23 or the minute above 59.
    #[error("time out of range")]
    OutOfRange,
}

/// Parses `"Fri 18:00 - Sun 23:59"`.
pub fn parse_freeze(s: &str) -> std::result::Result<FreezeWindow, FreezeError> {
    let (a, b) = s.split_once('-').ok_or(FreezeError::NoRange)?;
    let point = |p: &str| -> std::result::Result<u32, FreezeError> {
        let mut it = p.split_whitespace();
        let day = it.next().ok_or(FreezeError::MissingDay)?;
        let hm = it.next().ok_or(FreezeError::MissingTime)?;
        let d = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            .iter()
            .position(|x| day.to_ascii_lowercase().starts_with(x))
            .ok_or_else(|| FreezeError::UnknownDay { day: day.into() })? as u32;
        let (h, m) = hm.split_once(':').ok_or(FreezeError::NoColon)?;
        let h: u32 = h.parse().map_err(|_| FreezeError::BadHour)?;
        let m: u32 = m.parse().map_err(|_| FreezeError::BadMinute)?;
        if h > 23 || m > 59 {
            return Err(FreezeError::OutOfRange);
        }
        Ok(d * 1440 + h * 60 + m)
    };
    Ok(FreezeWindow {
        start: point(a)?,
        end: point(b)?,
    })
}

/// YAML scalar: plain when unambiguous, else double-quoted (JSON escaping is valid YAML).
fn q(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./@+".contains(&b))
        && !s.starts_with(['-', '.', '@'])
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "null" | "on" | "off" | "y" | "n"
        )
        && s.parse::<f64>().is_err()
        && !s.bytes().all(|b| b.is_ascii_digit() || b == b'-');
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).expect("string serialises")
    }
}

fn flow(items: &[String]) -> String {
    format!(
        "[{}]",
        items.iter().map(|i| q(i)).collect::<Vec<_>>().join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "age1y7hpnjewjmlg9hz7yycl7mendl9zfzlgr7gh56px4tdrn7fvxehscrzh38";
    const BOB: &str = "age1j3s3hf8gl7ml3vkdu5nqtslaj4jp3uxvhs2cf002pmew2c3pnvzqmyh8jj";

    #[test]
    fn round_trip_yaml() {
        let mut p = Policy::initial("alice", ALICE);
        p.members.insert(
            "bob".into(),
            Member {
                key: BOB.into(),
                email: Some("b@x.org".into()),
                expires: Some("2027-03-31".into()),
            },
        );
        p.groups.insert("ops".into(), vec!["bob".into()]);
        p.environments.insert(
            "production".into(),
            Environment {
                file: ".env.production".into(),
                readers: vec!["ops".into()],
                freeze: vec!["Fri 18:00 - Sun 23:59".into()],
                required: vec![],
                threshold: None,
            },
        );
        p.public = vec!["^PORT$".into(), "^NEXT_PUBLIC_".into()];
        p.scan.ignore = vec!["tests/fixtures/**".into(), "docs/*.md".into()];
        p.scan.hook = Some(false);
        p.schema.keys.insert(
            "STRIPE".into(),
            KeySchema {
                pattern: Some("^sk_".into()),
                max_age: Some("90d".into()),
                ..Default::default()
            },
        );
        let y = p.to_yaml();
        let back = parse(".sops.yaml", y.as_bytes()).unwrap();
        assert_eq!(back, p);
        assert!(
            y.contains("path_regex: \"(^|/)\\\\.env\\\\.production$\""),
            "{y}"
        );
    }

    #[test]
    fn errors_name_field_and_line() {
        let y = format!("envv:\n  members:\n    alice: {{ key: {ALICE} }}\n  groups:\n    team: [alice, ghost]\n  environments:\n    default: {{ file: .env, readers: [team] }}\n");
        let e = parse(".sops.yaml", y.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("ghost") && e.contains(".sops.yaml:5"), "{e}");
        let y = format!("envv:\n  members:\n    alice: {{ key: {ALICE} }}\n  environments:\n    default: {{ file: .env, readers: [] }}\n");
        let e = parse(".sops.yaml", y.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("readers") && e.contains("empty"), "{e}");
        let y = "envv:\n  members:\n    alice: { key: age1bad }\n";
        let e = parse(".sops.yaml", y.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("alice.key") && e.contains(":3"), "{e}");
        let y = format!(
            "envv:\n  members:\n    alice: {{ key: {ALICE} }}\n    alice: {{ key: {BOB} }}\n"
        );
        assert!(parse(".sops.yaml", y.as_bytes()).is_err());
        let y = "envv:\n  memebrs: {}\n";
        let e = parse(".sops.yaml", y.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("memebrs"), "{e}");
    }

    #[test]
    fn schema_errors_name_the_field() {
        let base = format!("envv:\n  members:\n    alice: {{ key: {ALICE} }}\n  environments:\n    default: {{ file: .env, readers: [alice] }}\n");
        let bad = |schema: &str| {
            parse(
                ".sops.yaml",
                format!("{base}  schema:\n{schema}").as_bytes(),
            )
            .unwrap_err()
            .to_string()
        };
        let e = bad("    keys:\n      A: { pattern: \"(\" }\n");
        assert!(
            e.contains("schema.keys.A.pattern") && e.contains("invalid regex"),
            "{e}"
        );
        let e = bad("    keys:\n      A: { environments: [staging] }\n");
        assert!(e.contains("unknown environment \"staging\""), "{e}");
        let e = bad("    keys:\n      A: { max_age: soon }\n");
        assert!(e.contains("schema.keys.A.max_age"), "{e}");
        let e = bad("    naming: \"[\"\n");
        assert!(e.contains("schema.naming"), "{e}");
        let e = bad("    naming: \"^[A-Z_]+$\"\n    required: [lower_case]\n");
        assert!(
            e.contains("envv.schema.required") && e.contains("lower_case"),
            "{e}"
        );
        let e = bad("    naming: \"^[A-Z_]+$\"\n    keys:\n      bad_one: {}\n");
        assert!(
            e.contains("envv.schema.keys.bad_one") && e.contains(":9"),
            "{e}"
        );
        let ok = format!("{base}  schema:\n    naming: \"^[A-Z_]+$\"\n    required: [GOOD]\n");
        assert!(parse(".sops.yaml", ok.as_bytes()).is_ok());
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut y = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
        let mut prev = 'a';
        for c in 'b'..='k' {
            y.push_str(&format!("{c}: &{c} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
            prev = c;
        }
        y.push_str("envv: {}\n");
        assert!(parse(".sops.yaml", y.as_bytes()).is_err());
        let deep = format!("envv: {}{}\n", "[".repeat(5000), "]".repeat(5000));
        assert!(parse(".sops.yaml", deep.as_bytes()).is_err());
    }

    #[test]
    fn freeze_windows() {
        let w = parse_freeze("Fri 18:00 - Sun 23:59").unwrap();
        assert!(w.contains(4 * 1440 + 18 * 60));
        assert!(!w.contains(0));
        let w = parse_freeze("Sun 22:00 - Mon 06:00").unwrap();
        assert!(w.contains(60) && w.contains(6 * 1440 + 23 * 60));
        assert!(parse_freeze("someday").is_err());
    }

    #[test]
    fn freeze_errors_name_the_part_that_is_wrong() {
        assert_eq!(parse_freeze("someday"), Err(FreezeError::NoRange));
        assert_eq!(parse_freeze(" - Sun 23:59"), Err(FreezeError::MissingDay));
        assert_eq!(
            parse_freeze("Fri - Sun 23:59"),
            Err(FreezeError::MissingTime)
        );
        let e = parse_freeze("Caturday 18:00 - Sun 23:59").unwrap_err();
        assert_eq!(e.to_string(), "unknown day \"Caturday\"");
        assert_eq!(
            parse_freeze("Fri 1800 - Sun 23:59"),
            Err(FreezeError::NoColon)
        );
        assert_eq!(
            parse_freeze("Fri xx:00 - Sun 23:59"),
            Err(FreezeError::BadHour)
        );
        assert_eq!(
            parse_freeze("Fri 18:yy - Sun 23:59"),
            Err(FreezeError::BadMinute)
        );
        assert_eq!(
            parse_freeze("Fri 18:00 - Sun 24:00"),
            Err(FreezeError::OutOfRange)
        );
        assert_eq!(
            parse_freeze("Fri 18:00 - Sun 23:60")
                .unwrap_err()
                .to_string(),
            "time out of range"
        );
    }

    #[test]
    fn bad_names_are_shown_escaped_and_cut_at_64() {
        assert!(check_name("prod-eu.1_a").is_ok());
        for bad in ["", "-x", ".x", "a b", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        let e = check_name("a\u{1b}[2Jb").unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid name \"a\\u{1b}[2Jb\": use letters, digits, - _ . (at most 64)"
        );
        let e = check_name(&format!("{}!", "n".repeat(80)))
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("\"{}\"", "n".repeat(64))), "{e}");
    }

    #[test]
    fn slugs() {
        assert_eq!(slug("Dana Dev"), "dana-dev");
        assert_eq!(slug("  Émile  O'Neil "), "mile-o-neil");
    }
}
