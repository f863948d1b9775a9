//! Git integration commands: `hook install`, `hook pre-commit`, `git setup`, `merge-driver`,
//! `log`, and the `decrypt --textconv` rendering git diff uses.

use super::{CliError, CliResult};
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use sha2::{Digest, Sha256};

use super::Ctx;
use crate::error::Error;
use crate::format::dotenv::{self, Line};
use crate::git::history;
use crate::git::{hook, setup as gitsetup};
use crate::merge;
use crate::store::file::EnvFile;

fn repo(ctx: &Ctx) -> crate::Result<git2::Repository> {
    crate::git::open(&ctx.ws.root).ok_or_else(|| Error::NotARepo {
        dir: ctx.ws.cwd.display().to_string(),
    })
}

const INSTALL_EXAMPLES: &str = "\
Example:
  envv hook install";

const PRE_COMMIT_EXAMPLES: &str = "\
Examples:
  envv hook pre-commit       # what the hook runs before each commit
  ENVV_FREEZE_OVERRIDE=\"incident 4711: rotate leaked key\" git commit";

const SETUP_EXAMPLES: &str = "\
Example:
  envv git setup && git add .gitattributes";

const HOOK_EXAMPLES: &str = "\
Examples:
  envv hook install          # once per clone
  envv hook pre-commit       # what the hook runs (checks the index, not the working tree)";

/// The pre-commit guard for staged .env files.
#[derive(Args, Debug)]
#[command(after_long_help = HOOK_EXAMPLES)]
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
    #[command(after_long_help = INSTALL_EXAMPLES)]
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
    #[command(after_long_help = PRE_COMMIT_EXAMPLES)]
    PreCommit,
}

pub fn hook_cmd(ctx: &Ctx, a: HookArgs) -> CliResult<i32> {
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
            let mut report = hook::check_index(&repo, &ctx.ws.root, &opts)?;
            report.findings.extend(super::scan::hook_findings(
                ctx,
                &repo,
                &report.encrypted_blobs,
            ));
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
                CliError::failed(f.to_string()).print();
            }
            eprintln!(
                "envv pre-commit: {} problem(s) in staged files; nothing was committed (`git commit --no-verify` skips this check)",
                report.findings.len()
            );
            Ok(1)
        }
    }
}

const GIT_EXAMPLES: &str = "\
Example:
  envv git setup";

/// Git integration setup.
#[derive(Args, Debug)]
#[command(after_long_help = GIT_EXAMPLES)]
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
    #[command(after_long_help = SETUP_EXAMPLES)]
    Setup,
}

pub fn git_cmd(ctx: &Ctx, a: GitArgs) -> CliResult<i32> {
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

const MERGE_DRIVER_EXAMPLES: &str = "\
Examples:
  envv git setup            # configures the driver for this clone, as:
  git config merge.envv.driver \"envv merge-driver %O %A %B %P\"";

/// Git merge driver: three-way merge of an encrypted .env file, key by key.
///
/// Installed by `envv git setup`; git calls it as `envv merge-driver %O %A %B %P`. A key
/// changed on one side takes that side; the same key changed differently on both sides is a
/// conflict with markers around that key only (and the sops_mac line: one MAC per side), exit 1.
/// The result has one data key, a fresh MAC and valid metadata.
#[derive(Args, Debug)]
#[command(after_long_help = MERGE_DRIVER_EXAMPLES)]
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

pub fn merge_driver(ctx: &Ctx, a: MergeDriverArgs) -> CliResult<i32> {
    let read = |p: &Path| crate::os::paths::read_bounded(p, &p.display().to_string());
    let (base, ours, theirs) = (read(&a.base)?, read(&a.ours)?, read(&a.theirs)?);
    let name = a
        .path
        .clone()
        .unwrap_or_else(|| a.ours.display().to_string());
    if crate::store::proposals::is_proposal_path(&name) {
        return super::propose::merge_driver(ctx, &name, &base, &ours, &theirs, &a.ours);
    }
    let mut ring = ctx.keyring();
    // A merge that makes a new data key wraps it only for recipients confirmed in this clone.
    let store = crate::policy::trust::TrustStore::open(&ctx.ws.root);
    let mine: Vec<String> = ring.all_publics().into_iter().map(|(p, _)| p).collect();
    let confirmed =
        |k: &str| store.contains(k) || mine.iter().any(|m| crate::keys::same_recipient(m, k));
    // A side whose own rule lines leave plain what the policy encrypts is never merged into.
    let rule = super::values::policy_rule(ctx).unwrap_or_default();
    let guard = |bytes: &[u8]| {
        crate::store::file::EnvFile::from_bytes(Path::new(&name), &name, bytes)?
            .refuse_rule_conflict(&rule)
    };
    let merged = guard(&base)
        .and_then(|()| guard(&ours))
        .and_then(|()| guard(&theirs))
        .and_then(|()| merge::merge(&name, &base, &ours, &theirs, &mut ring, &confirmed));
    match merged {
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
            let mut err = CliError::from(e);
            err.message = format!(
                "envv merge-driver: {name}: cannot merge key by key: {}",
                err.message
            );
            err.hints.push(super::Hint::Next(format!(
                "the whole file is left as a conflict: ask a reader of {name} to merge it, or pick one side with `git checkout --ours/--theirs {name}`"
            )));
            err.print();
            Ok(1)
        }
    }
}

const LOG_EXAMPLES: &str = "\
Examples:
  envv log DATABASE_URL
  envv log -e production --json
  envv log --since 2026-01-01 --author alice
  envv log --access            # grants and revocations only";

/// Per-key history from git, without decrypting.
///
/// Shows who added, changed or removed which key in which commit, who was granted or lost
/// access, and when the data key changed.
///
/// Without -e/-f, every environment's file in .sops.yaml is read. History is HEAD's
/// first-parent chain (a merge counts when it landed).
#[derive(Args, Debug)]
#[command(after_long_help = LOG_EXAMPLES)]
pub struct LogArgs {
    /// Only commits that touched this key.
    pub key: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Read at most this many commits.
    #[arg(short = 'n', long = "max-count", default_value_t = crate::git::history::MAX_COMMITS)]
    pub max_count: usize,
    /// Only commits made on or after this date (YYYY-MM-DD, UTC).
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Only commits whose author name or email contains this text (case-insensitive).
    #[arg(long, value_name = "NAME")]
    pub author: Option<String>,
    /// Only grants and revocations of readers.
    #[arg(long)]
    pub access: bool,
}

/// One event of `log`, ready to print.
struct Entry<'a> {
    file: &'a str,
    commit: &'a history::CommitInfo,
    order: usize,
    event: history::FileEvent,
    /// For a data-key change read by a reader: the values that really changed.
    real: Option<Vec<String>>,
    /// For a data-key change: what the identities at hand tell about it.
    proof: Option<history::Proof>,
}

pub fn log(ctx: &Ctx, a: LogArgs) -> CliResult<i32> {
    let repo = repo(ctx)?;
    let policy = ctx.ws.policy()?.map(|p| p.policy.clone());
    let files: Vec<String> = if ctx.env.is_some() || ctx.file.is_some() {
        vec![ctx.target()?.name]
    } else {
        match &policy {
            Some(p) => {
                let mut v: Vec<String> = p
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
    let since = match &a.since {
        None => None,
        Some(d) => Some(
            crate::policy::parse_date(d)
                .ok_or_else(|| Error::usage(format!("--since {d}: expected a date YYYY-MM-DD")))?
                .midnight()
                .assume_utc()
                .unix_timestamp(),
        ),
    };
    let author = a.author.as_deref().map(str::to_lowercase);
    let paths: Vec<PathBuf> = files
        .iter()
        .map(|f| history::repo_path(&repo, &ctx.ws.root, f))
        .collect();
    let w = history::walk(&repo, &paths, a.max_count)?;
    let mut ring = ctx.keyring();
    let mut all: Vec<Entry> = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let events = history::file_events(&repo, &w, i, &paths[i]);
        for (n, e) in events.into_iter().enumerate() {
            let c = &w.commits[e.commit];
            if since.is_some_and(|t| c.time < t)
                || author.as_ref().is_some_and(|x| {
                    !c.author.to_lowercase().contains(x) && !c.email.to_lowercase().contains(x)
                })
                || (a.access && !e.is_access())
            {
                continue;
            }
            // For a data-key change, a reader learns whether it was a rotation (proof) and
            // which values really changed.
            let rekey = match (
                e.data_key_changed,
                history::blob_before(&w, i, n),
                w.versions[i][n].blob,
            ) {
                (true, Some(b), Some(af)) => Some(history::examine_rekey(&repo, b, af, &mut ring)),
                _ => None,
            };
            let real = rekey.as_ref().and_then(|r| r.value_changes.clone());
            let proof = rekey.map(|r| r.proof);
            if let Some(k) = &a.key {
                let keep = match &real {
                    Some(v) if e.rekeyed.contains(k) => {
                        v.contains(k)
                            || e.added.contains(k)
                            || e.changed.contains(k)
                            || e.removed.contains(k)
                    }
                    _ => e.touches(k),
                };
                if !keep {
                    continue;
                }
            }
            all.push(Entry {
                file: f,
                commit: c,
                order: e.commit,
                event: e,
                real,
                proof,
            });
        }
    }
    all.sort_by_key(|e| e.order);
    let former = if all.iter().any(|x| x.event.is_access()) {
        crate::policy::trust::former_members(&ctx.ws.root)
    } else {
        Vec::new()
    };
    let name = |r: &str| -> String {
        policy
            .as_ref()
            .and_then(|p| {
                p.members
                    .iter()
                    .find(|(_, m)| crate::keys::same_recipient(&m.key, r))
                    .map(|(n, _)| n.clone())
            })
            .or_else(|| {
                former
                    .iter()
                    .find(|(_, k)| crate::keys::same_recipient(k, r))
                    .map(|(n, _)| format!("{n} (former member)"))
            })
            .unwrap_or_else(|| crate::keys::short_key(r))
    };
    if let Some(n) = history::cut_note(&w) {
        eprintln!("note: {n}");
    }
    if a.json {
        let v: Vec<serde_json::Value> = all
            .iter()
            .map(|x| {
                let (c, e) = (x.commit, &x.event);
                let mut events: Vec<serde_json::Value> = Vec::new();
                if !a.access {
                    for (kind, keys) in [("added", &e.added), ("changed", &e.changed), ("removed", &e.removed)] {
                        for k in keys {
                            events.push(serde_json::json!({ "kind": kind, "key": k }));
                        }
                    }
                    if e.data_key_changed {
                        let kind = x.proof.unwrap_or(history::Proof::Unknown).as_str();
                        events.push(serde_json::json!({ "kind": kind, "reencrypted": e.rekeyed, "value_changes": x.real }));
                    }
                }
                for (kind, rs) in [("recipient_added", &e.recipients_added), ("recipient_removed", &e.recipients_removed)] {
                    for r in rs {
                        events.push(serde_json::json!({ "kind": kind, "recipient": r, "member": name(r) }));
                    }
                }
                serde_json::json!({
                    "commit": c.id, "author": c.author, "email": c.email, "date": rfc3339(c.time),
                    "file": x.file, "summary": c.summary, "added": e.added, "changed": e.changed,
                    "removed": e.removed, "rotated": e.data_key_changed, "reencrypted": e.rekeyed,
                    "rotation_value_changes": x.real,
                    "recipients_changed": e.is_access(),
                    "recipients_added": e.recipients_added, "recipients_removed": e.recipients_removed,
                    "boundary": e.boundary,
                    "events": events,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    if all.is_empty() {
        match &a.key {
            Some(k) => eprintln!("no commit touched {k} in {}", files.join(", ")),
            None if a.access || a.since.is_some() || a.author.is_some() => {
                eprintln!("no commit in {} matches", files.join(", "))
            }
            None => eprintln!(
                "no committed history for {} yet: `git add` and `git commit` them",
                files.join(", ")
            ),
        }
        return Ok(0);
    }
    let mut out = std::io::stdout().lock();
    for x in &all {
        let (c, e) = (x.commit, &x.event);
        let mut what = Vec::new();
        let only = |v: &Vec<String>| -> Vec<String> {
            match &a.key {
                Some(k) => v.iter().filter(|y| *y == k).cloned().collect(),
                None => v.clone(),
            }
        };
        if !a.access {
            let (added, changed, removed) = (only(&e.added), only(&e.changed), only(&e.removed));
            if e.boundary {
                what.push("present at the start of the shallow history".into());
            }
            if !added.is_empty() {
                what.push(format!("added {}", added.join(" ")));
            }
            if !changed.is_empty() {
                what.push(format!("changed {}", changed.join(" ")));
            }
            if !removed.is_empty() {
                what.push(format!("removed {}", removed.join(" ")));
            }
            if e.data_key_changed {
                let changes = match &x.real {
                    Some(v) if v.is_empty() => "; no value changed".to_string(),
                    Some(v) => format!("; values changed: {}", only(v).join(" ")),
                    None => String::new(),
                };
                match x.proof.unwrap_or(history::Proof::Unknown) {
                    history::Proof::Verified => what.push(format!("rotated (new data key{changes})")),
                    history::Proof::Missing => what.push(format!(
                        "rekeyed (no proof: replaced by someone without the previous key, or by sops rotate{changes})"
                    )),
                    history::Proof::Unknown => what.push(format!(
                        "data key changed ({} value(s) re-encrypted)",
                        e.rekeyed.len()
                    )),
                }
            }
        }
        if a.key.is_none() {
            let names = |rs: &[String]| rs.iter().map(|r| name(r)).collect::<Vec<_>>().join(", ");
            if !e.recipients_added.is_empty() {
                what.push(format!("granted {}", names(&e.recipients_added)));
            }
            if !e.recipients_removed.is_empty() {
                what.push(format!("revoked {}", names(&e.recipients_removed)));
            }
        }
        if e.deleted {
            what.push("file deleted".into());
        }
        if what.is_empty() {
            what.push("metadata only".into());
        }
        writeln!(
            out,
            "{}  {}  {}  {}  {}  ({})",
            c.short(),
            date(c.time),
            c.author,
            x.file,
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
pub fn textconv(ctx: &Ctx, path: &Path) -> CliResult<i32> {
    let bytes = match crate::os::paths::read_bounded(path, &path.display().to_string()) {
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
    if crate::store::proposals::is_proposal_path(&name) {
        if let Some(out) = super::propose::textconv(ctx, &name, bytes) {
            return out;
        }
    }
    let Ok(f) = EnvFile::from_bytes(path, &name, bytes) else {
        return zeroize::Zeroizing::new(bytes.to_vec());
    };
    if !f.is_encrypted() {
        return zeroize::Zeroizing::new(bytes.to_vec());
    }
    let mut ring = ctx.keyring();
    let decrypted =
        f.unlock(&mut ring, Vec::new)
            .ok()
            .and_then(|dk| match f.clone().decrypt(&dk, true) {
                Ok(p) => Some((p, true)),
                Err(_) => f.clone().decrypt(&dk, false).ok().map(|p| (p, false)),
            });
    let text = decrypted
        .as_ref()
        .map(|(o, _)| crate::render::file(o, crate::render::FileMode::Textconv));
    // The stored bytes hold more than the lines added after the values (the metadata is longer
    // than its summary): with the text, the buffer never grows.
    let room = bytes.len() + text.as_ref().map_or(0, |t| t.bytes.len()) + 64;
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(room));
    let plaintext = text.is_some();
    match (decrypted, text) {
        (Some((_, mac_ok)), Some(text)) => {
            out.extend_from_slice(&text.bytes);
            if !mac_ok {
                out.extend_from_slice(
                    b"# envv: the MAC does not match (edited outside envv/sops?)\n",
                );
            }
        }
        _ => {
            let plan = f.plan();
            for (i, l) in f.lines().iter().enumerate() {
                match l {
                    Line::Blank => out.push(b'\n'),
                    Line::Comment(t) if plan[i] && crate::format::sops::is_enc(t) => {
                        out.extend_from_slice(
                            format!("# <encrypted comment: {}>\n", fingerprint(t)).as_bytes(),
                        );
                    }
                    Line::Comment(t) => {
                        out.push(b'#');
                        out.extend_from_slice(&dotenv::comment_text(t.as_bytes()));
                        out.push(b'\n');
                    }
                    Line::Pair { key, line, .. } if dotenv::validate_key(key).is_err() => {
                        let n = if *line > 0 { *line } else { i + 1 };
                        out.extend_from_slice(
                            format!("# envv: line {n} left out: not a key name\n").as_bytes(),
                        );
                    }
                    Line::Pair { key, stored, .. } if crate::format::sops::is_enc(stored) => {
                        out.extend_from_slice(
                            format!("{key}=<encrypted: {}>\n", fingerprint(stored)).as_bytes(),
                        );
                    }
                    Line::Pair { key, stored, .. } => {
                        out.extend_from_slice(key.as_bytes());
                        out.push(b'=');
                        out.extend_from_slice(&dotenv::quote(&dotenv::unescape_stored(stored)));
                        out.push(b'\n');
                    }
                }
            }
        }
    }
    if let Some(m) = &f.meta() {
        let mut r: Vec<String> = m
            .recipients()
            .iter()
            .map(|r| crate::keys::short_key(r))
            .collect();
        r.sort();
        out.extend_from_slice(format!("# envv: recipients {}\n", r.join(", ")).as_bytes());
    }
    debug_assert!(
        !plaintext || out.capacity() == room,
        "the textconv buffer grew"
    );
    out
}

/// A short stable fingerprint of a stored ciphertext (not of the value).
fn fingerprint(stored: &str) -> String {
    let h = Sha256::digest(stored.as_bytes());
    h[..6].iter().map(|b| format!("{b:02x}")).collect()
}
