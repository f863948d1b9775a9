//! `envv git setup`: the `.gitattributes` lines and repository config that route `.env` files
//! through envv's textconv (decrypted diffs) and merge driver (key-by-key merges).
//!
//! Both edits are idempotent: lines and settings already present are left alone.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// The attribute lines envv needs. `.local` and example files are plaintext and take git's
/// default diff and merge (`!diff !merge` = unspecified).
pub const ATTRIBUTE_LINES: &[&str] = &[
    ".env diff=envv merge=envv",
    ".env.* diff=envv merge=envv",
    ".env.local !diff !merge",
    ".env.*.local !diff !merge",
    ".env.example !diff !merge",
    ".env.sample !diff !merge",
    ".env.template !diff !merge",
];

const ATTRIBUTES_HEADER: &str =
    "# envv: decrypted diffs and key-by-key merges of encrypted .env files (`envv git setup`)";

/// The repository config envv sets.
pub const CONFIG: &[(&str, &str)] = &[
    ("diff.envv.textconv", "envv decrypt --textconv"),
    (
        "merge.envv.name",
        "envv key-by-key merge of encrypted .env files",
    ),
    ("merge.envv.driver", "envv merge-driver %O %A %B %P"),
];

/// What `setup` changed.
#[derive(Debug, Default)]
pub struct Setup {
    /// The `.gitattributes` file at the work tree root.
    pub attributes: PathBuf,
    /// Lines appended to it (empty when every line was already there).
    pub lines_added: Vec<String>,
    /// Local git config entries set, as `name = value` (empty when all were already set).
    pub config_set: Vec<String>,
}

/// Writes missing `.gitattributes` lines at the work tree root and sets the repository config.
pub fn setup(repo: &git2::Repository) -> Result<Setup> {
    let workdir = repo
        .workdir()
        .ok_or_else(|| Error::usage("a bare repository has no work tree for .gitattributes"))?;
    let path = workdir.join(".gitattributes");
    let existing = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let have: Vec<String> = existing
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    let missing: Vec<String> = ATTRIBUTE_LINES
        .iter()
        .filter(|l| !have.iter().any(|h| h == *l))
        .map(|l| l.to_string())
        .collect();
    if !missing.is_empty() {
        let mut text = existing.clone();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        if !have.iter().any(|h| h == ATTRIBUTES_HEADER) {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(ATTRIBUTES_HEADER);
            text.push('\n');
        }
        for l in &missing {
            text.push_str(l);
            text.push('\n');
        }
        crate::os::files::write_atomic(&path, text.as_bytes(), 0o644)?;
    }
    let mut cfg = repo
        .config()
        .and_then(|c| c.open_level(git2::ConfigLevel::Local))?;
    let mut config_set = Vec::new();
    for (name, value) in CONFIG {
        if cfg.get_string(name).ok().as_deref() != Some(*value) {
            cfg.set_str(name, value)?;
            config_set.push(format!("{name} = {value}"));
        }
    }
    Ok(Setup {
        attributes: path,
        lines_added: missing,
        config_set,
    })
}
