//! Asking before a value is stored in plain text because of a `public` pattern that the person
//! running envv has not confirmed.
//!
//! `public` in `.sops.yaml` is a pusher's text just as the readers are: a commit that widens it
//! (`.*_KEY$`) would put the next secret into git unencrypted. A pattern counts once this person
//! confirmed it in this clone (`crate::policy::trust`: a yes on a terminal or `--yes`) or wrote it through
//! envv. A write that would store a new key, or a key now encrypted, in plain text through other
//! patterns, and a new file or `encrypt --fix-rule` taking on a rule with other patterns, lists
//! them with the commit that added them and goes on only once they are confirmed.

use std::collections::HashMap;

use regex::Regex;

use super::Ctx;
use crate::error::Error;
use crate::format::dotenv::Line;
use crate::policy::trust::{pattern_introductions, TrustStore};
use crate::policy::POLICY_FILE;
use crate::store::file::{quote_patterns, EnvFile};

/// How a file stored its values before a write: per key, whether the value is encrypted
/// (`true`) or plain text (`false`). Keys without a value are absent.
pub(crate) struct Before(HashMap<String, bool>);

impl Before {
    /// The state of `f` now.
    pub fn of(f: &EnvFile) -> Self {
        let mut m = HashMap::new();
        for l in f.lines() {
            if let Line::Pair { key, stored, .. } = l {
                if !stored.is_empty() {
                    m.insert(key.clone(), encrypted(f, stored));
                }
            }
        }
        Before(m)
    }

    /// A file that did not exist.
    pub fn none() -> Self {
        Before(HashMap::new())
    }
}

/// Whether `key` holds a non-empty plain-text value in `f`.
pub(crate) fn stored_plain(f: &EnvFile, key: &str) -> bool {
    f.find(key).is_some_and(|i| {
        matches!(&f.lines()[i], Line::Pair { stored, .. }
            if !stored.is_empty() && !encrypted(f, stored))
    })
}

fn encrypted(f: &EnvFile, stored: &str) -> bool {
    f.is_encrypted() && crate::format::sops::is_enc(stored)
}

/// The `public` patterns of `f`'s rule that match `key`.
pub(crate) fn matching(f: &EnvFile, key: &str) -> Vec<String> {
    let Some(meta) = &f.meta() else {
        return Vec::new();
    };
    meta.rule
        .public_patterns()
        .into_iter()
        .filter(|p| Regex::new(p).is_ok_and(|r| r.is_match(key)))
        .collect()
}

/// Patterns confirmed by a command, remembered once its change is written.
#[must_use]
pub(crate) struct Confirmed(Vec<String>);

impl Confirmed {
    /// Writes them to this clone's trust file; a failure is a warning (the change is made).
    pub fn remember(self, ctx: &Ctx) {
        if self.0.is_empty() {
            return;
        }
        let mut store = TrustStore::open(&ctx.ws.root);
        if let Err(e) = store.record_patterns(&self.0) {
            eprintln!("warning: could not remember the confirmed `public` patterns: {e}");
        }
    }
}

/// Patterns a user wrote through envv (the policy `envv init` writes): confirmed as written.
pub(crate) fn written_by_user(patterns: &[String]) -> Confirmed {
    Confirmed(patterns.to_vec())
}

/// Checks a write that turns a file stored as `before` into `after`: every key it stores in
/// plain text that was not plain before, and every pattern of `adopted` (the rule a new file or
/// `--fix-rule` takes on), must be public through a confirmed pattern. The others are listed
/// with the commit that added them to `public`; the command goes on only with `--yes` or a
/// yes typed on a terminal, else nothing is written and the error exits 1.
pub(crate) fn confirm_plain(
    ctx: &Ctx,
    before: &Before,
    after: &EnvFile,
    adopted: &[String],
) -> crate::Result<Confirmed> {
    let store = TrustStore::open(&ctx.ws.root);
    // Pattern → keys it alone would store in plain text.
    let mut open: Vec<(String, Vec<String>)> = Vec::new();
    let mut add = |p: &str, key: Option<&str>| {
        let i = match open.iter().position(|(q, _)| q == p) {
            Some(i) => i,
            None => {
                open.push((p.to_string(), Vec::new()));
                open.len() - 1
            }
        };
        if let Some(k) = key {
            open[i].1.push(k.to_string());
        }
    };
    // Compiled once: files hold thousands of keys.
    let compiled: Vec<(String, Regex)> = after
        .meta()
        .map(|m| m.rule.public_patterns())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| Regex::new(&p).ok().map(|r| (p, r)))
        .collect();
    for l in after.lines() {
        let Line::Pair { key, stored, .. } = l else {
            continue;
        };
        if before.0.get(key) == Some(&false) || stored.is_empty() || encrypted(after, stored) {
            continue;
        }
        let pats: Vec<&String> = compiled
            .iter()
            .filter(|(_, r)| r.is_match(key))
            .map(|(p, _)| p)
            .collect();
        if pats.iter().any(|p| store.contains_pattern(p)) {
            continue;
        }
        for p in &pats {
            add(p, Some(key));
        }
    }
    for p in adopted {
        if !store.contains_pattern(p) {
            add(p, None);
        }
    }
    if open.is_empty() {
        return Ok(Confirmed(Vec::new()));
    }
    let patterns: Vec<String> = open.iter().map(|(p, _)| p.clone()).collect();
    let intros = pattern_introductions(&ctx.ws.root, &patterns);
    eprintln!(
        "{} of {POLICY_FILE} {} not confirmed by you in this clone; envv would store in plain text in {}:",
        if open.len() == 1 {
            "this `public` pattern"
        } else {
            "these `public` patterns"
        },
        if open.len() == 1 { "is" } else { "are" },
        after.name()
    );
    let mut first_commit = None;
    for ((p, keys), intro) in open.iter().zip(&intros) {
        let what = if keys.is_empty() {
            "every key it matches, from now on".to_string()
        } else {
            keys.join(", ")
        };
        let origin = match intro {
            Some(i) => {
                first_commit.get_or_insert_with(|| i.short().to_string());
                format!(
                    "added in commit {} by {} on {}",
                    i.short(),
                    i.author,
                    i.date()
                )
            }
            None => format!("not committed ({POLICY_FILE} in the working tree)"),
        };
        eprintln!(
            "  {}  {what}  {origin}",
            quote_patterns(std::slice::from_ref(p))
        );
    }
    let yes = ctx.yes
        || (super::stdin_is_tty() && super::confirm::ask("store them in plain text? [y/N] "));
    if !yes {
        let look = match &first_commit {
            Some(c) => format!("`git show {c} -- {POLICY_FILE}` shows who added it"),
            None => format!("`git diff -- {POLICY_FILE}` shows the change"),
        };
        return Err(Error::CheckFailed(format!(
            "nothing was changed: {} not confirmed; {look}; rerun with --yes if those keys are meant to be plain text (or remove the pattern from `public` in {POLICY_FILE})",
            if open.len() == 1 {
                "a `public` pattern is"
            } else {
                "`public` patterns are"
            }
        )));
    }
    Ok(Confirmed(patterns))
}
