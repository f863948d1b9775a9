//! `envv set`, `get`, `rm`, `ls`: one value at a time.

use std::io::{Read, Write};

use clap::Args;

use super::Ctx;
use crate::dotenv::{self, Entry};
use crate::envfile::{EnvFile, Plain};
use crate::error::Error;
use crate::secret::Secret;
use crate::sops::DataKey;
use crate::workspace::Target;

/// Opens and decrypts the target (MAC verified unless `ignore_mac`).
pub(crate) fn open_decrypted(
    ctx: &Ctx,
    t: &Target,
    ignore_mac: bool,
) -> crate::Result<(EnvFile, DataKey, Plain)> {
    let f = EnvFile::open(&t.path, &t.name)?;
    if !f.is_encrypted() {
        return Err(Error::Usage(format!(
            "{} is not encrypted: run `envv encrypt -f {}` first",
            t.name, t.name
        )));
    }
    let mut ring = ctx.keyring();
    let dk = f.unlock(&mut ring, || ctx.ws.readers(t))?;
    let plain = f.decrypt(&dk, !ignore_mac)?;
    Ok((f, dk, plain))
}

/// Runs `change` on the target under the folder lock, creating the file when missing, then
/// seals and saves it if anything changed. Returns what `change` returned.
pub(crate) fn update<T>(
    ctx: &Ctx,
    t: &Target,
    create: bool,
    change: impl FnOnce(&mut EnvFile, &mut Plain, &DataKey) -> crate::Result<(bool, T)>,
) -> crate::Result<T> {
    update_with(ctx, t, create, false, change)
}

/// [`update`], optionally keeping plaintext lines added by hand to an encrypted file as pending
/// (only `envv encrypt` asks for that: it encrypts them).
pub(crate) fn update_with<T>(
    ctx: &Ctx,
    t: &Target,
    create: bool,
    allow_pending: bool,
    change: impl FnOnce(&mut EnvFile, &mut Plain, &DataKey) -> crate::Result<(bool, T)>,
) -> crate::Result<T> {
    let _lock = crate::fsutil::lock_for(&t.path)?;
    crate::fsutil::clean_stale_temps(&t.path);
    let mut confirmed = None;
    let mut adopted = Vec::new();
    let (mut f, dk, mut plain) = match EnvFile::open(&t.path, &t.name) {
        Err(Error::MissingFile { .. }) if create => {
            let recipients = ctx.ws.recipients(t)?;
            confirmed = Some(super::confirm::confirm_new_file(ctx, t, &recipients)?);
            let rule = ctx.ws.require_policy()?.policy.crypt_rule();
            adopted = rule.public_patterns();
            let (mut f, dk, plain) = EnvFile::encrypt_new(&t.path, &t.name, "", &recipients, rule)?;
            if let Some((groups, k)) = threshold_layout(ctx, t) {
                f.rewrap_groups(&dk, &groups, k, false)?;
            }
            (f, dk, plain)
        }
        Err(e) => return Err(e),
        Ok(f) if f.is_encrypted() => {
            // Before decrypting: under a swapped rule line the MAC may not even verify.
            f.refuse_rule_conflict(&policy_rule(ctx)?)?;
            let mut ring = ctx.keyring();
            let dk = f.unlock(&mut ring, || ctx.ws.readers(t))?;
            let plain = if allow_pending {
                f.decrypt_allowing_pending(&dk)?
            } else {
                f.decrypt(&dk, true)?
            };
            (f, dk, plain)
        }
        Ok(_) => open_decrypted(ctx, t, false)?,
    };
    refuse_stale_readers(ctx, t, &f)?;
    let existed = t.path.exists();
    let before = super::public::Before::of(&f);
    let (changed, out) = change(&mut f, &mut plain, &dk)?;
    if changed || !existed {
        f.seal(&mut plain, &dk)?;
        let plain_ok = super::public::confirm_plain(ctx, &before, &f, &adopted)?;
        f.save()?;
        if let Some(c) = confirmed {
            c.remember(ctx);
        }
        plain_ok.remember(ctx);
    }
    Ok(out)
}

/// What the policy leaves in plain text (its `public` patterns; sops's default without a policy).
pub(crate) fn policy_rule(ctx: &Ctx) -> crate::Result<crate::sops::CryptRule> {
    Ok(ctx
        .ws
        .policy()?
        .map(|p| p.policy.crypt_rule())
        .unwrap_or_default())
}

/// Refuses to add secrets to a file that someone the policy no longer names can still decrypt
/// (a member removed or expired by a hand edit or a pull): `envv updatekeys` rotates it first.
fn refuse_stale_readers(ctx: &Ctx, t: &Target, f: &EnvFile) -> crate::Result<()> {
    let (Some(meta), Some(env)) = (&f.meta, &t.env) else {
        return Ok(());
    };
    // Read the policy again, now that the folder lock is held: a concurrent `member add`
    // writes the files and then the policy under the same lock.
    let path = ctx.ws.policy_path();
    if !path.is_file() {
        return Ok(());
    }
    let pf = crate::policy::PolicyFile::load(&path)?;
    let drift = crate::envfile::recipient_drift(meta, &pf.policy.recipients(env));
    if drift.extra.is_empty() {
        return Ok(());
    }
    let who: Vec<String> = drift
        .extra
        .iter()
        .map(|r| {
            pf.policy
                .members
                .iter()
                .find(|(_, m)| crate::keys::same_recipient(&m.key, r))
                .map(|(n, _)| n.clone())
                .unwrap_or_else(|| crate::keys::short_key(r))
        })
        .collect();
    Err(Error::Usage(format!(
        "{} can still be decrypted by {} whom .sops.yaml no longer lists as readers: run `envv updatekeys` (rotates its data key) before changing it",
        t.name,
        who.join(", ")
    )))
}

/// The key groups and threshold a new file of a threshold environment gets from the policy.
pub(crate) fn threshold_layout(
    ctx: &Ctx,
    t: &Target,
) -> Option<(Vec<Vec<crate::keys::Recipient>>, u8)> {
    let env = t.env.as_deref()?;
    ctx.ws.require_policy().ok()?.policy.key_groups(env)
}

/// Encrypt and store values: `envv set KEY [VALUE]` or `envv set KEY=VALUE...`.
///
/// Without VALUE the value is read from a hidden prompt on a terminal, else from stdin (one
/// trailing newline removed). `KEY=VALUE` pairs are parsed as dotenv (quotes, escapes); a
/// separate VALUE argument is taken literally. Other values keep their ciphertext.
///
/// Examples:
///   envv set STRIPE_KEY                        # prompts
///   printf %s "$TOKEN" | envv set API_TOKEN
///   envv set -e production PORT=8080 'GREETING="hello world"'
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct SetArgs {
    /// KEY, or KEY=VALUE pairs.
    #[arg(
        required = true,
        allow_hyphen_values = true,
        value_name = "KEY [VALUE] | KEY=VALUE..."
    )]
    pub args: Vec<String>,
}

pub fn set(ctx: &Ctx, a: SetArgs) -> anyhow::Result<i32> {
    let t = ctx.target()?;
    let pairs = parse_set_args(&a.args)?;
    let names: Vec<String> = pairs.iter().map(|(k, _)| k.clone()).collect();
    let changed = update(ctx, &t, true, move |f, plain, dk| {
        let mut changed = Vec::new();
        for (k, v) in pairs {
            if f.set(plain, dk, &k, v)? {
                // Said every time: a value in plain text is in git for good once pushed.
                let why = super::public::stored_plain(f, &k).then(|| {
                    let pats = super::public::matching(f, &k);
                    if pats.is_empty() {
                        "its name ends with the file's unencrypted suffix".to_string()
                    } else {
                        format!(
                            "`public` in .sops.yaml matches it: {}",
                            crate::envfile::quote_patterns(&pats)
                        )
                    }
                });
                changed.push((k, why));
            }
        }
        Ok((!changed.is_empty(), changed))
    })?;
    for k in &names {
        if let Some((_, why)) = changed.iter().find(|(c, _)| c == k) {
            match why {
                Some(why) => {
                    eprintln!("set {k} in {} as plain text, not encrypted ({why})", t.name)
                }
                None => eprintln!("set {k} in {}", t.name),
            }
        } else {
            eprintln!("{k} unchanged in {}", t.name);
        }
    }
    Ok(0)
}

fn parse_set_args(args: &[String]) -> crate::Result<Vec<(String, Secret)>> {
    // Values may start with `-`, so flags after KEY would silently become a value.
    if let Some(flag) = args.iter().skip(1).find(|a| {
        matches!(
            a.as_str(),
            "--yes"
                | "-y"
                | "--flatten"
                | "--expand"
                | "--help"
                | "-h"
                | "-e"
                | "--env"
                | "-f"
                | "--file"
                | "-i"
                | "--identity"
        ) || a.starts_with("--env=")
            || a.starts_with("--file=")
            || a.starts_with("--identity=")
            || (args[0].contains('=') && a.starts_with('-'))
    }) {
        return Err(Error::Usage(format!(
            "`{flag}` after the key would be stored as a value: put options before the key (`envv set {flag} KEY`), or pipe a value that looks like an option on stdin"
        )));
    }
    if args[0].contains('=') {
        let mut out: Vec<(String, Secret)> = Vec::new();
        for (n, arg) in args.iter().enumerate() {
            if !arg.contains('=') {
                return Err(Error::Usage(format!("argument {} is not KEY=VALUE (mixing KEY VALUE and KEY=VALUE forms is not allowed)", n + 1)));
            }
            let entries = dotenv::parse_plain(&format!("argument {}", n + 1), arg)?;
            for e in entries {
                if let Entry::Pair { key, value, .. } = e {
                    out.retain(|(k, _)| *k != key);
                    out.push((key, value));
                }
            }
        }
        warn_history();
        return Ok(out);
    }
    let key = &args[0];
    dotenv::validate_key(key).map_err(Error::Usage)?;
    let value = match args.len() {
        1 => read_value(key)?,
        2 => {
            warn_history();
            Secret::from_str(&args[1])
        }
        _ => return Err(Error::Usage(
            "too many arguments: `envv set KEY VALUE` (quote the value) or `envv set K1=V1 K2=V2`"
                .into(),
        )),
    };
    Ok(vec![(key.clone(), value)])
}

pub(crate) fn warn_history() {
    if super::stdin_is_tty() {
        eprintln!("warning: a value on the command line is saved in your shell history; `envv set KEY` prompts for it instead");
    }
}

pub(crate) fn read_value(key: &str) -> crate::Result<Secret> {
    if super::stdin_is_tty() {
        let v = rpassword::prompt_password(format!("value for {key} (hidden): "))
            .map_err(|e| Error::io("terminal", e))?;
        return Ok(Secret::new(v.into_bytes()));
    }
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .map_err(|e| Error::io("stdin", e))?;
    let mut s = Secret::new(buf);
    let b = s.expose();
    let trim = if b.ends_with(b"\r\n") {
        2
    } else if b.ends_with(b"\n") {
        1
    } else {
        0
    };
    if trim > 0 {
        s = Secret::new(b[..b.len() - trim].to_vec());
    }
    if std::str::from_utf8(s.expose()).is_err() {
        return Err(Error::Usage(format!(
            "the value for {key} read from stdin is not UTF-8 text"
        )));
    }
    Ok(s)
}

/// Print one decrypted value (exactly, no quoting; a newline is added only on a terminal).
///
/// Example: envv get DATABASE_URL -e production
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct GetArgs {
    /// The key to print.
    pub key: String,
    /// Skip the MAC check (recovery only).
    #[arg(long)]
    pub ignore_mac: bool,
}

pub fn get(ctx: &Ctx, a: GetArgs) -> anyhow::Result<i32> {
    let t = ctx.target()?;
    let (f, _dk, plain) = open_decrypted(ctx, &t, a.ignore_mac)?;
    let v = f.get(&plain, &a.key).ok_or_else(|| Error::KeyNotFound {
        key: a.key.clone(),
        file: t.name.clone(),
    })?;
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(v.expose())?;
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(0)
}

/// Remove keys from the file.
///
/// Example: envv rm OLD_TOKEN -e staging
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct RmArgs {
    /// Keys to remove.
    #[arg(required = true)]
    pub keys: Vec<String>,
}

pub fn rm(ctx: &Ctx, a: RmArgs) -> anyhow::Result<i32> {
    let t = ctx.target()?;
    let keys = a.keys.clone();
    let missing = update(ctx, &t, false, move |f, plain, _dk| {
        let mut missing = Vec::new();
        let mut any = false;
        for k in &keys {
            if f.remove(plain, k) {
                any = true;
            } else {
                missing.push(k.clone());
            }
        }
        Ok((any, missing))
    })?;
    for k in &a.keys {
        if !missing.contains(k) {
            eprintln!("removed {k} from {}", t.name);
        }
    }
    if let Some(k) = missing.first() {
        return Err(Error::KeyNotFound {
            key: k.clone(),
            file: t.name.clone(),
        }
        .into());
    }
    Ok(0)
}

/// List the keys of a file: whether each is encrypted and when it last changed (from git).
/// Needs no identity.
///
/// Example: envv ls --json
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct LsArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn ls(ctx: &Ctx, a: LsArgs) -> anyhow::Result<i32> {
    let t = ctx.target()?;
    let f = EnvFile::open(&t.path, &t.name)?;
    let plan = f.plan();
    let mut rows = Vec::new();
    for (i, l) in f.lines.iter().enumerate() {
        if let crate::dotenv::Line::Pair { key, stored, line } = l {
            let encrypted = f.is_encrypted() && plan[i] && crate::sops::is_enc(stored);
            // A hand-pasted line's text before `=` may be a secret: never listed.
            let key = match crate::dotenv::validate_key(key) {
                Ok(()) => key.clone(),
                Err(_) => format!("(line {line}: not a key name, text not shown)"),
            };
            rows.push((key, encrypted, stored.is_empty()));
        }
    }
    let current: std::collections::HashMap<String, String> = f
        .lines
        .iter()
        .filter_map(|l| match l {
            crate::dotenv::Line::Pair { key, stored, .. } => Some((key.clone(), stored.clone())),
            _ => None,
        })
        .collect();
    let (mut changes, note) =
        crate::history::dates(&ctx.ws.root, &[(t.name.clone(), current)]).unwrap_or_default();
    let changes = changes.pop().unwrap_or_default();
    let date = crate::history::date;
    if a.json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(k, enc, empty)| {
                let c = changes.get(k).map(|d| serde_json::json!({ "commit": d.commit.id, "author": d.commit.author, "date": date(d.commit.time), "at_least": d.at_least }));
                serde_json::json!({ "key": k, "encrypted": enc, "empty": empty, "last_changed": c })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "file": t.name, "keys": v }))?
        );
        return Ok(0);
    }
    if rows.is_empty() {
        eprintln!("no secrets in {} yet: `envv set KEY` adds one", t.name);
        return Ok(0);
    }
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    // One write per buffer, not per row (stdout flushes at every newline).
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (k, enc, empty) in &rows {
        let state = if *empty {
            "empty"
        } else if *enc {
            "encrypted"
        } else {
            "plain"
        };
        let when = match changes.get(k) {
            Some(d) => format!(
                "{}  {}  {}{}",
                date(d.commit.time),
                d.commit.short(),
                d.commit.author,
                if d.at_least { "  (or older)" } else { "" }
            ),
            None => "not committed".into(),
        };
        writeln!(out, "{k:width$}  {state:9}  {when}")?;
    }
    out.flush()?;
    if let Some(n) = note {
        eprintln!("note: {n}");
    }
    Ok(0)
}
