//! `envv check`, `envv diff`, `envv status`: what is wrong, what differs, where you stand.

use super::CliResult;
use clap::Args;
use serde_json::json;

use super::Ctx;
use crate::checks::health::{self, Finding, Level};
use crate::error::Error;
use crate::keys;
use crate::store::diff::{self, Side, Status};
use crate::store::file::EnvFile;

const CHECK_EXAMPLES: &str = "\
Examples:
  envv check
  envv check -e production --json --strict     # in CI, with the CI identity
  envv check --trusted-ref origin/main         # CI on pull requests";

/// Check secrets against the policy: schema, drift, age, expiry, recipients
///
/// Finds required keys that are missing, values not matching their pattern and bad key names
/// (`schema` in .sops.yaml), drift between environments, secrets older than their `max_age`
/// (from git history), expired members, and files out of sync with the policy.
///
/// Exit 0 when clean, 1 on any error-level finding (warnings too with --strict). Pattern
/// checks need to decrypt: an environment you cannot read gets a warning, never silence.
/// `--json` prints {"findings": [{"level", "kind", "env", "file", "key", "message", "hint",
/// "commit", "date"}], "summary": {"errors", "warnings", "notes", "environments", "ok",
/// "policy"}}.
///
/// Without --trusted-ref, the schema (patterns included), readers and environments come from
/// the working tree's .sops.yaml: on a pull request that is the author's text, and a pattern
/// they edit learns something about a value from each run. On pull requests pass
/// --trusted-ref with the base branch: the policy is then read from that commit.
#[derive(Args, Debug)]
#[command(after_long_help = CHECK_EXAMPLES)]
pub struct CheckArgs {
    /// Print JSON (shape above).
    #[arg(long)]
    pub json: bool,
    /// Fail on warnings too (drift, missing files, expired members, unchecked patterns).
    #[arg(long)]
    pub strict: bool,
    /// Take schema, readers and freeze windows from .sops.yaml at this commit or branch (e.g.
    /// origin/main), not from the working tree; its own schema findings are not reported.
    #[arg(long, value_name = "REF")]
    pub trusted_ref: Option<String>,
}

pub fn check(ctx: &Ctx, a: CheckArgs) -> CliResult<i32> {
    // check reads every file's history, then decrypts every file: versions freed in the heap
    // would stay resident under the decrypted files.
    crate::os::memory::return_large_buffers();
    let (policy, source) = match &a.trusted_ref {
        Some(r) => {
            let p = crate::policy::trust::policy_at(&ctx.ws.root, r)?;
            eprintln!(
                "policy from {r}:{} (the working tree's copy is not used for this check)",
                crate::policy::POLICY_FILE
            );
            (p, format!("{r}:{}", crate::policy::POLICY_FILE))
        }
        None => (
            ctx.ws.require_policy()?.policy.clone(),
            crate::policy::POLICY_FILE.to_string(),
        ),
    };
    let only = match (&ctx.file, &ctx.env) {
        (Some(f), _) => {
            let rel = ctx.ws.rel(f);
            Some(
                policy
                    .env_for_file(&rel)
                    .map(str::to_string)
                    .ok_or_else(|| Error::UndeclaredFile {
                        file: rel.clone(),
                        policy: source.to_string(),
                    })?,
            )
        }
        (None, e) => e.clone(),
    };
    let mut ring = ctx.keyring();
    let report = health::check(
        &ctx.ws.root,
        &policy,
        only.as_deref(),
        &mut ring,
        crate::policy::today(),
    )?;
    let failed = report.failed(a.strict);
    let (errors, warnings, notes) = (
        report.count(Level::Error),
        report.count(Level::Warning),
        report.count(Level::Note),
    );
    if a.json {
        let findings: Vec<serde_json::Value> = report.findings.iter().map(finding_json).collect();
        let out = json!({
            "findings": findings,
            "summary": { "errors": errors, "warnings": warnings, "notes": notes, "environments": report.environments, "ok": !failed, "policy": source },
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(i32::from(failed));
    }
    let mut groups: Vec<Option<&str>> = vec![None];
    groups.extend(report.environments.iter().map(|e| Some(e.as_str())));
    for g in groups {
        let items: Vec<&Finding> = report
            .findings
            .iter()
            .filter(|f| f.env.as_deref() == g)
            .collect();
        match g {
            None if items.is_empty() => continue,
            None => println!("policy ({source})"),
            Some(e) => println!("{e} ({})", policy.environments[e].file),
        }
        if items.is_empty() {
            println!("  ok");
        }
        for f in items {
            println!("  {:7}  {}", f.level.as_str(), f.message);
            if let Some(h) = &f.hint {
                println!("           next: {h}");
            }
        }
    }
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    let envs = plural(report.environments.len(), "environment");
    if errors + warnings + notes == 0 {
        println!("check passed: {envs}, no findings");
    } else {
        println!(
            "check {}: {}, {}, {} in {envs}{}",
            if failed { "failed" } else { "passed" },
            plural(errors, "error"),
            plural(warnings, "warning"),
            plural(notes, "note"),
            if !failed && warnings > 0 {
                " (warnings fail only with --strict)"
            } else {
                ""
            }
        );
    }
    Ok(i32::from(failed))
}

fn finding_json(f: &Finding) -> serde_json::Value {
    json!({
        "level": f.level.as_str(),
        "kind": f.kind.as_str(),
        "env": f.env,
        "file": f.file,
        "key": f.key,
        "message": f.message,
        "hint": f.hint,
        "commit": f.commit,
        "date": f.date,
    })
}

const DIFF_EXAMPLES: &str = "\
Examples:
  envv diff staging production
  envv diff default production --json --exit-code";

/// Compare two environments by key, showing keyed hashes, never values
///
/// Lists keys only in one of them and keys whose values differ. Values are never shown:
/// each gets a short keyed hash, so equal values show equal hashes (the hash key is derived
/// from both files' data keys; it reveals nothing without them).
///
/// Without access to both files only key names are compared. `--json` prints
/// {"a","b","values_compared","keys":[{"key","status","hash_a","hash_b"}],"summary":{...}}
/// with status only_a, only_b, different, same or not_compared.
#[derive(Args, Debug)]
#[command(after_long_help = DIFF_EXAMPLES)]
pub struct DiffArgs {
    /// First environment.
    #[arg(value_name = "ENV1")]
    pub a: String,
    /// Second environment.
    #[arg(value_name = "ENV2")]
    pub b: String,
    /// Print JSON (shape above).
    #[arg(long)]
    pub json: bool,
    /// Also list the keys whose values are the same.
    #[arg(long)]
    pub all: bool,
    /// Exit 1 when the environments differ (as `git diff --exit-code`).
    #[arg(long)]
    pub exit_code: bool,
}

pub fn diff(ctx: &Ctx, a: DiffArgs) -> CliResult<i32> {
    ctx.ws.require_policy()?;
    let ta = ctx.ws.target(Some(&a.a), None)?;
    let tb = ctx.ws.target(Some(&a.b), None)?;
    let fa = EnvFile::open(&ta.path, &ta.name)?;
    let fb = EnvFile::open(&tb.path, &tb.name)?;
    let mut ring = ctx.keyring();
    let mut unlock = |f: &EnvFile,
                      t: &crate::workspace::Target|
     -> crate::Result<Option<crate::format::sops::DataKey>> {
        if !f.is_encrypted() {
            return Err(Error::NotEncrypted {
                file: t.name.clone(),
            });
        }
        match f.unlock(&mut ring, || ctx.ws.readers(t)) {
            Ok(k) => Ok(Some(k)),
            Err(Error::NoIdentity { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    };
    let (dka, dkb) = (unlock(&fa, &ta)?, unlock(&fb, &tb)?);
    let (pa, pb) = match (&dka, &dkb) {
        (Some(x), Some(y)) => (
            Some(fa.clone().decrypt(x, true)?),
            Some(fb.clone().decrypt(y, true)?),
        ),
        _ => (None, None),
    };
    let hk = match (&dka, &dkb) {
        (Some(x), Some(y)) => Some(zeroize::Zeroizing::new(diff::hash_key(x, y))),
        _ => None,
    };
    let compared = hk.is_some();
    let rows = diff::compare(
        &Side {
            file: &fa,
            plain: pa.as_ref(),
        },
        &Side {
            file: &fb,
            plain: pb.as_ref(),
        },
        hk.as_deref(),
    );
    let count = |s: Status| rows.iter().filter(|r| r.status == s).count();
    let differs = rows.iter().any(|r| r.status != Status::Same);
    let code = i32::from(a.exit_code && differs);
    if !compared {
        let cannot: Vec<&str> = [(&dka, &ta), (&dkb, &tb)]
            .iter()
            .filter(|(k, _)| k.is_none())
            .map(|(_, t)| t.name.as_str())
            .collect();
        eprintln!("warning: values not compared: none of your identities can decrypt {} (only key names are compared)", cannot.join(", "));
    }
    if a.json {
        let keys: Vec<serde_json::Value> = rows
            .iter()
            .filter(|r| a.all || r.status != Status::Same)
            .map(|r| json!({ "key": r.key, "status": r.status.as_str(), "hash_a": r.hash_a, "hash_b": r.hash_b }))
            .collect();
        let out = json!({
            "a": a.a, "b": a.b, "file_a": ta.name, "file_b": tb.name, "values_compared": compared,
            "keys": keys,
            "summary": { "only_a": count(Status::OnlyA), "only_b": count(Status::OnlyB), "different": count(Status::Different), "same": count(Status::Same), "not_compared": count(Status::NotCompared) },
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(code);
    }
    println!("{} ({}) vs {} ({})", a.a, ta.name, a.b, tb.name);
    let width = rows.iter().map(|r| r.key.len()).max().unwrap_or(0);
    let h = |x: &Option<String>| x.clone().unwrap_or_else(|| "-".into());
    for r in &rows {
        let line = match r.status {
            Status::OnlyA => format!("only in {}", a.a),
            Status::OnlyB => format!("only in {}", a.b),
            Status::Different => format!("different  {} ≠ {}", h(&r.hash_a), h(&r.hash_b)),
            Status::Same if a.all => format!("same       {}", h(&r.hash_a)),
            Status::Same => continue,
            Status::NotCompared => continue,
        };
        let tail = match r.status {
            Status::OnlyA => format!("  {}", h(&r.hash_a)),
            Status::OnlyB => format!("  {}", h(&r.hash_b)),
            _ => String::new(),
        };
        println!(
            "  {:width$}  {line}{}",
            r.key,
            if compared { tail } else { String::new() }
        );
    }
    let mut summary = format!(
        "{} only in {}, {} only in {}",
        count(Status::OnlyA),
        a.a,
        count(Status::OnlyB),
        a.b
    );
    if compared {
        summary.push_str(&format!(
            ", {} different, {} same",
            count(Status::Different),
            count(Status::Same)
        ));
    } else {
        summary.push_str(&format!(
            ", {} in both (values not compared)",
            count(Status::NotCompared)
        ));
    }
    println!("{summary}");
    Ok(code)
}

const STATUS_EXAMPLES: &str = "\
Example:
  envv status";

/// Where this repository stands and what to run next.
///
/// One screen for a newcomer: the environments, their files, who reads each, whether you
/// can, how many keys, whether the git hook and diff setup are installed, and the next
/// command to run for anything missing. Needs no decryption.
#[derive(Args, Debug)]
#[command(after_long_help = STATUS_EXAMPLES)]
pub struct StatusArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

struct EnvRow {
    name: String,
    file: String,
    exists: bool,
    keys: Option<usize>,
    readers: Vec<String>,
    you_read_policy: bool,
    you_read_file: Option<bool>,
    in_sync: Option<bool>,
    problem: Option<String>,
    /// Proposals waiting in `<file>.proposals`.
    proposals: usize,
}

pub fn status(ctx: &Ctx, a: StatusArgs) -> CliResult<i32> {
    super::edit::report_swept();
    let mut ring = ctx.keyring();
    let publics = ring.all_publics();
    let Some(pf) = ctx.ws.policy()? else {
        let next = if publics.is_empty() {
            "`envv keygen`, then `envv init`"
        } else {
            "`envv init`"
        };
        if a.json {
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &json!({ "root": ctx.ws.root, "policy": false, "next": [next] })
                )?
            );
        } else {
            println!(
                "no .sops.yaml in {} or its parents: envv is not set up here",
                ctx.ws.cwd.display()
            );
            println!("next: {next}");
        }
        return Ok(0);
    };
    let policy = &pf.policy;
    let mine = |key: &str| publics.iter().any(|(p, _)| keys::same_recipient(key, p));
    let me: Vec<String> = policy
        .members
        .iter()
        .filter(|(_, m)| mine(&m.key))
        .map(|(n, _)| n.clone())
        .collect();
    let me_pending: Vec<String> = policy
        .pending
        .iter()
        .filter(|(_, m)| mine(&m.key))
        .map(|(n, _)| n.clone())
        .collect();

    let mut rows = Vec::new();
    for (name, decl) in &policy.environments {
        let rel = decl.file.trim_start_matches("./").to_string();
        let readers = policy.reader_names(name);
        let you_read_policy = readers
            .iter()
            .any(|r| me.contains(r) && !policy.is_expired(r));
        let mut row = EnvRow {
            name: name.clone(),
            file: rel.clone(),
            exists: false,
            keys: None,
            readers,
            you_read_policy,
            you_read_file: None,
            in_sync: None,
            problem: None,
            proposals: crate::store::proposals::load(&ctx.ws.root.join(&rel), &rel)
                .map(|p| p.len())
                .unwrap_or(0),
        };
        match EnvFile::open_in(&ctx.ws.root, &rel) {
            Ok(f) => {
                row.exists = true;
                row.keys = Some(f.keys().collect::<std::collections::BTreeSet<_>>().len());
                if let Some(meta) = &f.meta() {
                    row.you_read_file = Some(meta.recipients().iter().any(|r| mine(r)));
                    row.in_sync = Some(
                        crate::store::file::recipient_drift(meta, &policy.recipients(name))
                            .is_empty(),
                    );
                } else if row.keys != Some(0) {
                    row.problem = Some("not encrypted".into());
                }
            }
            Err(Error::MissingFile { .. }) => {}
            Err(e) => row.problem = Some(e.to_string()),
        }
        rows.push(row);
    }
    let git = health::git_integration(&ctx.ws.root);

    // Next steps, most important first.
    let mut next: Vec<(String, String)> = Vec::new();
    if publics.is_empty() {
        next.push(("envv keygen".into(), "you have no identity yet".into()));
        next.push((
            "envv join".into(),
            "then ask to join; a reader approves with `envv member approve`".into(),
        ));
    } else if me.is_empty() && me_pending.is_empty() {
        next.push((
            "envv join".into(),
            "your key is not a member of this repository".into(),
        ));
    } else if !me_pending.is_empty() && me.is_empty() {
        next.push((
            format!("envv member approve {}", me_pending[0]),
            "to be run by a reader: you are waiting for approval".into(),
        ));
    }
    let out_of_sync: Vec<&str> = rows
        .iter()
        .filter(|r| r.in_sync == Some(false))
        .map(|r| r.file.as_str())
        .collect();
    if !out_of_sync.is_empty() {
        next.push((
            "envv updatekeys".into(),
            format!("{} out of sync with .sops.yaml", out_of_sync.join(", ")),
        ));
    }
    for r in rows
        .iter()
        .filter(|r| r.problem.as_deref() == Some("not encrypted"))
    {
        next.push((
            format!("envv encrypt -f {}", r.file),
            format!("{} holds plain text", r.file),
        ));
    }
    for r in rows.iter().filter(|r| !r.exists && r.you_read_policy) {
        next.push((
            format!("envv set -e {} KEY", r.name),
            format!("{} does not exist yet", r.file),
        ));
    }
    for r in rows.iter().filter(|r| r.proposals > 0) {
        let who = if r.you_read_file.unwrap_or(r.you_read_policy) {
            "review them"
        } else {
            "to be run by a reader"
        };
        next.push((
            format!("envv accept -e {}", r.name),
            format!("{} proposals pending for {} ({who})", r.proposals, r.file),
        ));
    }
    if let Some(g) = &git {
        if !g.hook {
            next.push((
                "envv hook install".into(),
                "no pre-commit hook guards against committing plaintext".into(),
            ));
        }
        if !(g.textconv && g.attributes) {
            next.push((
                "envv git setup".into(),
                "git diff shows ciphertext instead of changed keys; merges are not key by key"
                    .into(),
            ));
        }
    }

    if a.json {
        let envs: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                json!({
                    "name": r.name, "file": r.file, "exists": r.exists, "keys": r.keys, "readers": r.readers,
                    "you_can_read": r.you_read_file.unwrap_or(r.you_read_policy), "in_sync": r.in_sync, "problem": r.problem, "proposals": r.proposals,
                })
            })
            .collect();
        let out = json!({
            "root": ctx.ws.root,
            "policy": true,
            "you": { "members": me, "pending": me_pending, "public_keys": publics.iter().map(|(p, _)| p).collect::<Vec<_>>() },
            "environments": envs,
            "git": git.as_ref().map(|g| json!({ "hook": g.hook, "hooks_dir": g.hooks_dir, "diff_setup": g.textconv && g.attributes })),
            "next": next.iter().map(|(c, why)| json!({ "command": c, "why": why })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }

    println!("repository: {}", ctx.ws.root.display());
    match (publics.is_empty(), me.is_empty()) {
        (true, _) => println!("you:        no identity found"),
        (false, false) => println!(
            "you:        {} ({})",
            me.join(", "),
            publics
                .iter()
                .map(|(p, s)| format!("{} from {s}", keys::short_key(p)))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        (false, true) if !me_pending.is_empty() => {
            println!("you:        {} (pending approval)", me_pending.join(", "))
        }
        (false, true) => println!(
            "you:        not a member ({})",
            publics
                .iter()
                .map(|(p, _)| keys::short_key(p))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
    println!();
    let w_name = rows.iter().map(|r| r.name.len()).max().unwrap_or(0).max(11);
    let w_file = rows.iter().map(|r| r.file.len()).max().unwrap_or(0).max(4);
    println!(
        "{:w_name$}  {:w_file$}  {:>5}  {:11}  READERS",
        "ENVIRONMENT", "FILE", "KEYS", "YOU"
    );
    for r in &rows {
        let keys = r.keys.map(|k| k.to_string()).unwrap_or_else(|| "-".into());
        let you = match (r.exists, r.you_read_file, r.you_read_policy) {
            (_, Some(true), _) => "can read",
            (_, Some(false), true) => "after updatekeys",
            (false, None, true) => "can read",
            _ => "cannot read",
        };
        let readers = r
            .readers
            .iter()
            .map(|n| {
                if policy.is_expired(n) {
                    format!("{n} (expired)")
                } else {
                    n.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mut notes = String::new();
        if !r.exists {
            notes.push_str("  [no file yet]");
        }
        if r.in_sync == Some(false) {
            notes.push_str("  [out of sync]");
        }
        if let Some(p) = &r.problem {
            notes.push_str(&format!("  [{p}]"));
        }
        if r.proposals > 0 {
            notes.push_str(&format!("  [{} proposals]", r.proposals));
        }
        println!(
            "{:w_name$}  {:w_file$}  {keys:>5}  {you:11}  {readers}{notes}",
            r.name, r.file
        );
    }
    println!();
    match &git {
        None => println!("git:        not a git repository"),
        Some(g) => {
            println!(
                "pre-commit hook:  {}",
                if g.hook { "installed" } else { "not installed" }
            );
            println!(
                "git diff/merge:   {}",
                if g.textconv && g.attributes {
                    "set up"
                } else {
                    "not set up"
                }
            );
        }
    }
    println!();
    if next.is_empty() {
        println!("all set. `envv check` validates the secrets against the schema.");
    } else {
        println!("next:");
        let w = next.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
        for (c, why) in &next {
            println!("  {c:w$}  # {why}");
        }
    }
    Ok(0)
}
