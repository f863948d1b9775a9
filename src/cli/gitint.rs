//! Git integration commands: `hook install`, `hook pre-commit`, `git setup`, `merge-driver`,
//! `log`, and the `decrypt --textconv` rendering git diff uses.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use sha2::{Digest, Sha256};

use super::Ctx;
use crate::dotenv::{self, Line};
use crate::envfile::EnvFile;
use crate::error::Error;
use crate::history::{self, FileChange};
use crate::{gitsetup, hook, merge};

fn repo(ctx: &Ctx) -> crate::Result<git2::Repository> {
    crate::git::open(&ctx.ws.root).ok_or_else(|| {
        Error::Usage(format!(
            "{} is not inside a git repository: run `git init` first",
            ctx.ws.cwd.display()
        ))
    })
}

/// The pre-commit guard for staged .env files.
///
/// Examples:
///   envv hook install          # once per clone
///   envv hook pre-commit       # what the hook runs (checks the index, not the working tree)
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct HookArgs {
    #[command(subcommand)]
    pub command: HookCommand,
}

#[derive(Subcommand, Debug)]
pub enum HookCommand {
    /// Install a git pre-commit hook that runs `envv hook pre-commit`.
    ///
    /// Respects core.hooksPath and worktrees. An existing hook is kept: it is renamed to
    /// pre-commit.envv-chained and run first. Re-running changes nothing.
    ///
    /// Example: envv hook install
    Install {
        /// Replace an existing pre-commit hook instead of chaining it.
        #[arg(long)]
        force: bool,
    },
    /// Check the staged files (the git index): plaintext secrets, .local files, age identities,
    /// recipients that disagree with the staged policy, frozen environments. Exit 1 on findings.
    ///
    /// Freeze windows are in UTC; ENVV_FREEZE_OVERRIDE="reason" allows a change inside one
    /// (the reason is printed, so it lands in the CI/hook log).
    ///
    /// Example: ENVV_FREEZE_OVERRIDE="incident 4711: rotate leaked key" git commit
    PreCommit,
}

pub fn hook_cmd(ctx: &Ctx, a: HookArgs) -> anyhow::Result<i32> {
    let repo = repo(ctx)?;
    match a.command {
        HookCommand::Install { force } => {
            match hook::install(&repo, force)? {
                hook::Installed::Created(p) => eprintln!("installed the envv pre-commit hook: {}", p.display()),
                hook::Installed::AlreadyInstalled(p) => eprintln!("the envv pre-commit hook is already installed: {}", p.display()),
                hook::Installed::Chained { hook, chained } => eprintln!(
                    "installed the envv pre-commit hook: {}\n  your existing hook moved to {} and still runs first",
                    hook.display(),
                    chained.display()
                ),
                hook::Installed::Replaced(p) => eprintln!("replaced the pre-commit hook with envv's (--force): {}", p.display()),
            }
            Ok(0)
        }
        HookCommand::PreCommit => {
            let opts = hook::Options::from_env();
            let report = hook::check_index(&repo, &ctx.ws.root, &opts)?;
            if !report.overridden.is_empty() {
                let reason = opts.freeze_override.as_deref().unwrap_or("");
                for f in &report.overridden {
                    eprintln!("envv: freeze override for {f}: {reason}");
                }
            }
            if report.findings.is_empty() {
                return Ok(0);
            }
            for f in &report.findings {
                eprintln!("error: {f}");
            }
            eprintln!(
                "envv pre-commit: {} problem(s) in staged files; nothing was committed (`git commit --no-verify` skips this check)",
                report.findings.len()
            );
            Ok(1)
        }
    }
}

/// Git integration setup.
///
/// Example: envv git setup
#[derive(Args, Debug)]
pub struct GitArgs {
    #[command(subcommand)]
    pub command: GitCommand,
}

#[derive(Subcommand, Debug)]
pub enum GitCommand {
    /// Route .env files through envv in git: .gitattributes lines (`.env`, `.env.*` except
    /// .local and examples: diff=envv merge=envv) and the repository config for the textconv
    /// (`git diff` shows decrypted changes to readers) and the key-by-key merge driver.
    /// Idempotent.
    ///
    /// Example: envv git setup && git add .gitattributes
    Setup,
}

pub fn git_cmd(ctx: &Ctx, a: GitArgs) -> anyhow::Result<i32> {
    let repo = repo(ctx)?;
    match a.command {
        GitCommand::Setup => {
            let s = gitsetup::setup(&repo)?;
            if s.lines_added.is_empty() && s.config_set.is_empty() {
                eprintln!("git is already set up for envv (nothing changed)");
                return Ok(0);
            }
            for l in &s.lines_added {
                eprintln!("{}: added `{l}`", s.attributes.display());
            }
            for c in &s.config_set {
                eprintln!("git config (this repository): {c}");
            }
            if !s.lines_added.is_empty() {
                eprintln!("next: `git add .gitattributes`; every clone runs `envv git setup` once (git config is not committed)");
            }
            Ok(0)
        }
    }
}

/// Git merge driver: three-way merge of an encrypted .env file, key by key.
///
/// Installed by `envv git setup`; git calls it as `envv merge-driver %O %A %B %P`. A key
/// changed on one side takes that side; the same key changed differently on both sides is a
/// conflict with markers around that key only (and the sops_mac line: one MAC per side), exit 1.
/// The result has one data key, a fresh MAC and valid metadata.
///
/// Example: git config merge.envv.driver "envv merge-driver %O %A %B %P"
#[derive(Args, Debug)]
pub struct MergeDriverArgs {
    /// The common ancestor's version (%O).
    pub base: PathBuf,
    /// Our version (%A); the result is written here.
    pub ours: PathBuf,
    /// Their version (%B).
    pub theirs: PathBuf,
    /// The file's path in the repository (%P), for messages.
    pub path: Option<String>,
}

pub fn merge_driver(ctx: &Ctx, a: MergeDriverArgs) -> anyhow::Result<i32> {
    let read = |p: &Path| crate::paths::read_bounded(p, &p.display().to_string());
    let (base, ours, theirs) = (read(&a.base)?, read(&a.ours)?, read(&a.theirs)?);
    let name = a
        .path
        .clone()
        .unwrap_or_else(|| a.ours.display().to_string());
    let mut ring = ctx.keyring();
    match merge::merge(&name, &base, &ours, &theirs, &mut ring) {
        Ok(m) => {
            std::fs::write(&a.ours, &m.bytes).map_err(|e| Error::io(&a.ours, e))?;
            for n in &m.notes {
                eprintln!("envv merge-driver: {name}: {n}");
            }
            if m.conflicts.is_empty() {
                return Ok(0);
            }
            eprintln!(
                "envv merge-driver: {name}: conflict on {keys} (changed differently on both sides); every other key is merged\n  \
                 hint: keep the same side of every conflict, the sops_mac lines included (all ours or all theirs): \
                 the file is then valid; then `envv set -f {name} KEY` to the value you want, and `git add {name}`",
                keys = m.conflicts.join(", ")
            );
            Ok(1)
        }
        Err(e) => {
            std::fs::write(&a.ours, merge::plain_conflict(&ours, &theirs))
                .map_err(|e| Error::io(&a.ours, e))?;
            eprintln!("envv merge-driver: {name}: cannot merge key by key: {e}");
            if let Some(h) = e.hint() {
                eprintln!("  {h}");
            }
            eprintln!("  the whole file is left as a conflict: ask a reader of {name} to merge it, or pick one side with `git checkout --ours/--theirs {name}`");
            Ok(1)
        }
    }
}

/// Per-key history from git, without decrypting: who added, changed or removed which key in
/// which commit. A data-key rotation shows as "rotated".
///
/// Without -e/-f, every environment's file in .sops.yaml is read.
///
/// Examples:
///   envv log DATABASE_URL
///   envv log -e production --json
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct LogArgs {
    /// Only commits that touched this key.
    pub key: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Read at most this many commits per file.
    #[arg(short = 'n', long = "max-count", default_value_t = 10_000)]
    pub max_count: usize,
}

pub fn log(ctx: &Ctx, a: LogArgs) -> anyhow::Result<i32> {
    let repo = repo(ctx)?;
    let workdir = repo.workdir().map(Path::to_path_buf).unwrap_or_default();
    let files: Vec<String> = if ctx.env.is_some() || ctx.file.is_some() {
        vec![ctx.target()?.name]
    } else {
        match ctx.ws.policy()? {
            Some(p) => {
                let mut v: Vec<String> = p
                    .policy
                    .environments
                    .values()
                    .map(|e| e.file.trim_start_matches("./").to_string())
                    .collect();
                v.sort();
                v.dedup();
                v
            }
            None => vec![".env".to_string()],
        }
    };
    let prefix = hook::relative_prefix(&workdir, &ctx.ws.root);
    let mut all: Vec<FileChange> = Vec::new();
    for f in &files {
        all.extend(history::file_history(
            &repo,
            &format!("{prefix}{f}"),
            a.max_count,
        )?);
    }
    // For rotations, a reader learns which values really changed.
    let mut ring = ctx.keyring();
    let mut real: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    for c in all.iter().filter(|c| c.is_rotation()) {
        if let Some(v) = history::rotation_value_changes(&repo, &c.file, &c.commit, &mut ring) {
            real.insert(format!("{}:{}", c.commit, c.file), v);
        }
    }
    let real_of = |c: &FileChange| real.get(&format!("{}:{}", c.commit, c.file));
    if let Some(k) = &a.key {
        all.retain(|c| match real_of(c) {
            Some(v) if c.rotated.contains(k) => {
                v.contains(k)
                    || c.added.contains(k)
                    || c.changed.contains(k)
                    || c.removed.contains(k)
            }
            _ => c.touches(k),
        });
    }
    all.sort_by_key(|c| std::cmp::Reverse(c.time));
    if a.json {
        let v: Vec<serde_json::Value> = all
            .iter()
            .map(|c| {
                serde_json::json!({
                    "commit": c.commit, "author": c.author, "email": c.email, "date": rfc3339(c.time),
                    "file": c.file, "summary": c.summary, "added": c.added, "changed": c.changed,
                    "removed": c.removed, "rotated": c.is_rotation(), "reencrypted": c.rotated,
                    "rotation_value_changes": real_of(c),
                    "recipients_changed": c.recipients_changed,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    if all.is_empty() {
        match &a.key {
            Some(k) => eprintln!("no commit touched {k} in {}", files.join(", ")),
            None => eprintln!(
                "no committed history for {} yet: `git add` and `git commit` them",
                files.join(", ")
            ),
        }
        return Ok(0);
    }
    let mut out = std::io::stdout().lock();
    for c in &all {
        let mut what = Vec::new();
        let only = |v: &Vec<String>| -> Vec<String> {
            match &a.key {
                Some(k) => v.iter().filter(|x| *x == k).cloned().collect(),
                None => v.clone(),
            }
        };
        let (added, changed, removed) = (only(&c.added), only(&c.changed), only(&c.removed));
        if !added.is_empty() {
            what.push(format!("added {}", added.join(" ")));
        }
        if !changed.is_empty() {
            what.push(format!("changed {}", changed.join(" ")));
        }
        if !removed.is_empty() {
            what.push(format!("removed {}", removed.join(" ")));
        }
        if c.is_rotation() {
            match real_of(c) {
                Some(v) if v.is_empty() => {
                    what.push("rotated (new data key; no value changed)".into())
                }
                Some(v) => what.push(format!(
                    "rotated (new data key); values changed: {}",
                    only(v).join(" ")
                )),
                None => what.push(format!(
                    "rotated (new data key; {} value(s) re-encrypted)",
                    c.rotated.len()
                )),
            }
        }
        if c.recipients_changed && a.key.is_none() {
            what.push("recipients changed".into());
        }
        if what.is_empty() {
            what.push("metadata only".into());
        }
        writeln!(
            out,
            "{}  {}  {}  {}  {}  ({})",
            &c.commit[..8],
            date(c.time),
            c.author,
            c.file,
            what.join("; "),
            c.summary
        )?;
    }
    Ok(0)
}

fn rfc3339(ts: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn date(ts: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|d| {
            d.format(&time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]Z"
            ))
            .ok()
        })
        .unwrap_or_default()
}

/// `decrypt --textconv FILE`: what `git diff` shows. Readers see `KEY=value`; anyone else sees
/// `KEY=<encrypted: fingerprint>` (a stable hash of the ciphertext), so a diff still shows which
/// keys changed. Never fails: an unreadable file is printed as it is.
pub fn textconv(ctx: &Ctx, path: &Path) -> anyhow::Result<i32> {
    let bytes = match crate::paths::read_bounded(path, &path.display().to_string()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("envv textconv: cannot read {}: {e}", path.display());
            return Ok(0);
        }
    };
    let out = render_textconv(ctx, path, &bytes);
    let mut so = std::io::stdout().lock();
    so.write_all(&out)?;
    so.flush()?;
    Ok(0)
}

fn render_textconv(ctx: &Ctx, path: &Path, bytes: &[u8]) -> zeroize::Zeroizing<Vec<u8>> {
    let name = path.display().to_string();
    let Ok(f) = EnvFile::from_bytes(path, &name, bytes) else {
        return zeroize::Zeroizing::new(bytes.to_vec());
    };
    if !f.is_encrypted() {
        return zeroize::Zeroizing::new(bytes.to_vec());
    }
    let mut ring = ctx.keyring();
    let decrypted = f
        .unlock(&mut ring, Vec::new)
        .ok()
        .and_then(|dk| match f.decrypt(&dk, true) {
            Ok(p) => Some((p, true)),
            Err(_) => f.decrypt(&dk, false).ok().map(|p| (p, false)),
        });
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(bytes.len()));
    match decrypted {
        Some((plain, mac_ok)) => {
            out.extend_from_slice(&super::crypt::render_dotenv(&f, &plain));
            if !mac_ok {
                out.extend_from_slice(
                    b"# envv: the MAC does not match (edited outside envv/sops?)\n",
                );
            }
        }
        None => {
            let plan = f.plan();
            for (i, l) in f.lines.iter().enumerate() {
                match l {
                    Line::Blank => out.push(b'\n'),
                    Line::Comment(t) if plan[i] && crate::sops::is_enc(t) => {
                        out.extend_from_slice(
                            format!("# <encrypted comment: {}>\n", fingerprint(t)).as_bytes(),
                        );
                    }
                    Line::Comment(t) => {
                        out.push(b'#');
                        out.extend_from_slice(t.as_bytes());
                        out.push(b'\n');
                    }
                    Line::Pair { key, stored, .. } if crate::sops::is_enc(stored) => {
                        out.extend_from_slice(
                            format!("{key}=<encrypted: {}>\n", fingerprint(stored)).as_bytes(),
                        );
                    }
                    Line::Pair { .. } => dotenv::emit_stored(std::slice::from_ref(l), &mut out),
                }
            }
        }
    }
    if let Some(m) = &f.meta {
        let mut r: Vec<String> = m
            .recipients()
            .iter()
            .map(|r| crate::keys::short_key(r))
            .collect();
        r.sort();
        out.extend_from_slice(format!("# envv: recipients {}\n", r.join(", ")).as_bytes());
    }
    out
}

/// A short stable fingerprint of a stored ciphertext (not of the value).
fn fingerprint(stored: &str) -> String {
    let h = Sha256::digest(stored.as_bytes());
    h[..6].iter().map(|b| format!("{b:02x}")).collect()
}
