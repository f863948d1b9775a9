//! `envv set`, `get`, `rm`, `ls`: one value at a time.

use super::CliResult;
use std::io::{Read, Write};

use clap::Args;

use super::Ctx;
use crate::error::Error;
use crate::format::dotenv::{self, Entry};
use crate::secret::Secret;
use crate::store::file::{EnvFile, Opened};
use crate::store::{self, Store};
use crate::workspace::Target;

/// Opens and decrypts the target (MAC verified unless `ignore_mac`).
pub(crate) fn open_decrypted(ctx: &Ctx, t: &Target, ignore_mac: bool) -> crate::Result<Opened> {
    store::open_decrypted(&ctx.ws, &mut ctx.keyring(), t, ignore_mac)
}

/// [`Store::update`] with the command line's confirmations, creating the file when missing if
/// `create`.
pub(crate) fn update<T>(
    ctx: &Ctx,
    t: &Target,
    create: bool,
    change: impl FnOnce(&mut Opened) -> crate::Result<(bool, T)>,
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
    change: impl FnOnce(&mut Opened) -> crate::Result<(bool, T)>,
) -> crate::Result<T> {
    let mut gate = Prompts::new(ctx);
    let how = store::Open {
        create,
        allow_pending,
    };
    Store::new(&ctx.ws, ctx.keyring(), &mut gate).update(t, how, change)
}

/// The store's confirmations on the command line: new readers and new plain-text values are
/// confirmed against this clone's trust file, else with `--yes` or a yes typed on a terminal.
struct Prompts<'a> {
    ctx: &'a Ctx,
    readers: Option<super::confirm::Confirmed>,
    before: Option<super::public::Before>,
    adopted: Vec<String>,
    patterns: Option<super::public::Confirmed>,
}

impl<'a> Prompts<'a> {
    fn new(ctx: &'a Ctx) -> Self {
        Prompts {
            ctx,
            readers: None,
            before: None,
            adopted: Vec::new(),
            patterns: None,
        }
    }
}

impl store::Gate for Prompts<'_> {
    fn new_file(&mut self, t: &Target, recipients: &[crate::keys::Recipient]) -> crate::Result<()> {
        self.readers = Some(super::confirm::confirm_new_file(self.ctx, t, recipients)?);
        Ok(())
    }

    fn opened(&mut self, f: &EnvFile, adopted: &[String]) {
        self.before = Some(super::public::Before::of(f));
        self.adopted = adopted.to_vec();
    }

    fn before_save(&mut self, f: &EnvFile) -> crate::Result<()> {
        let before = self.before.as_ref().expect("opened before saving");
        self.patterns = Some(super::public::confirm_plain(
            self.ctx,
            before,
            f,
            &self.adopted,
        )?);
        Ok(())
    }

    fn saved(&mut self) {
        if let Some(c) = self.readers.take() {
            c.remember(self.ctx);
        }
        if let Some(c) = self.patterns.take() {
            c.remember(self.ctx);
        }
    }
}

/// What the policy leaves in plain text (its `public` patterns; sops's default without a policy).
pub(crate) fn policy_rule(ctx: &Ctx) -> crate::Result<crate::format::sops::CryptRule> {
    store::policy_rule(&ctx.ws)
}

/// The key groups and threshold the policy gives the target's environment.
pub(crate) fn threshold_layout(
    ctx: &Ctx,
    t: &Target,
) -> Option<(Vec<Vec<crate::keys::Recipient>>, u8)> {
    store::threshold_layout(&ctx.ws, t)
}

const SET_EXAMPLES: &str = "\
Examples:
  envv set STRIPE_KEY                        # prompts
  printf %s \"$TOKEN\" | envv set API_TOKEN
  envv set -e production PORT=8080 'GREETING=\"hello world\"'";

/// Encrypt and store values: `envv set KEY [VALUE]` or `envv set KEY=VALUE...`.
///
/// Without VALUE the value is read from a hidden prompt on a terminal, else from stdin (one
/// trailing newline removed). `KEY=VALUE` pairs are parsed as dotenv (quotes, escapes); a
/// separate VALUE argument is taken literally. Other values keep their ciphertext.
#[derive(Args, Debug)]
#[command(after_long_help = SET_EXAMPLES)]
pub struct SetArgs {
    /// KEY, or KEY=VALUE pairs.
    #[arg(
        required = true,
        allow_hyphen_values = true,
        value_name = "KEY [VALUE] | KEY=VALUE..."
    )]
    pub args: Vec<String>,
}

pub fn set(ctx: &Ctx, a: SetArgs) -> CliResult<i32> {
    let t = ctx.target()?;
    let pairs = parse_set_args(&a.args)?;
    let names: Vec<String> = pairs.iter().map(|(k, _)| k.clone()).collect();
    let changed = update(ctx, &t, true, move |f| {
        let mut changed = Vec::new();
        for (k, v) in pairs {
            if f.set(&k, v)? {
                // Said every time: a value in plain text is in git for good once pushed.
                let why = super::public::stored_plain(f.file(), &k).then(|| {
                    let pats = super::public::matching(f.file(), &k);
                    if pats.is_empty() {
                        "its name ends with the file's unencrypted suffix".to_string()
                    } else {
                        format!(
                            "`public` in .sops.yaml matches it: {}",
                            crate::store::file::quote_patterns(&pats)
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
        return Err(Error::usage_hint(format!("`{flag}` after the key would be stored as a value"), format!("put options before the key (`envv set {flag} KEY`), or pipe a value that looks like an option on stdin")));
    }
    if args[0].contains('=') {
        let mut out: Vec<(String, Secret)> = Vec::new();
        for (n, arg) in args.iter().enumerate() {
            if !arg.contains('=') {
                return Err(Error::usage(format!("argument {} is not KEY=VALUE (mixing KEY VALUE and KEY=VALUE forms is not allowed)", n + 1)));
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
    dotenv::validate_key(key)?;
    let value = match args.len() {
        1 => read_value(key)?,
        2 => {
            warn_history();
            Secret::from_str(&args[1])
        }
        _ => {
            return Err(Error::usage_hint(
                "too many arguments",
                "`envv set KEY VALUE` (quote the value) or `envv set K1=V1 K2=V2`",
            ))
        }
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
        return Err(Error::usage(format!(
            "the value for {key} read from stdin is not UTF-8 text"
        )));
    }
    Ok(s)
}

const GET_EXAMPLES: &str = "\
Example:
  envv get DATABASE_URL -e production";

/// Print one decrypted value (exactly, no quoting; a newline is added only on a terminal).
#[derive(Args, Debug)]
#[command(after_long_help = GET_EXAMPLES)]
pub struct GetArgs {
    /// The key to print.
    pub key: String,
    /// Skip the MAC check (recovery only).
    #[arg(long)]
    pub ignore_mac: bool,
}

pub fn get(ctx: &Ctx, a: GetArgs) -> CliResult<i32> {
    let t = ctx.target()?;
    let f = open_decrypted(ctx, &t, a.ignore_mac)?;
    let v = f.get(&a.key).ok_or_else(|| Error::KeyNotFound {
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

const RM_EXAMPLES: &str = "\
Example:
  envv rm OLD_TOKEN -e staging";

/// Remove keys from the file.
#[derive(Args, Debug)]
#[command(after_long_help = RM_EXAMPLES)]
pub struct RmArgs {
    /// Keys to remove.
    #[arg(required = true)]
    pub keys: Vec<String>,
}

pub fn rm(ctx: &Ctx, a: RmArgs) -> CliResult<i32> {
    let t = ctx.target()?;
    let keys = a.keys.clone();
    let missing = update(ctx, &t, false, move |f| {
        let mut missing = Vec::new();
        let mut any = false;
        for k in &keys {
            if f.remove(k) {
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

const LS_EXAMPLES: &str = "\
Example:
  envv ls --json";

/// List the keys of a file: whether each is encrypted and when it last changed (from git).
///
/// Needs no identity.
#[derive(Args, Debug)]
#[command(after_long_help = LS_EXAMPLES)]
pub struct LsArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn ls(ctx: &Ctx, a: LsArgs) -> CliResult<i32> {
    let t = ctx.target()?;
    // The file's history is read while the file itself is parsed.
    let (root, name) = (&ctx.ws.root, &t.name);
    let (histories, f) = std::thread::scope(|s| {
        let h = s.spawn(move || {
            crate::git::history::FileHistories::read(root, std::slice::from_ref(name))
        });
        let f = EnvFile::open(&t.path, &t.name);
        (h.join().expect("history thread"), f)
    });
    let f = f?;
    let plan = f.plan();
    let mut rows = Vec::new();
    for (i, l) in f.lines().iter().enumerate() {
        if let crate::format::dotenv::Line::Pair { key, stored, line } = l {
            let encrypted = f.is_encrypted() && plan[i] && crate::format::sops::is_enc(stored);
            // A hand-pasted line's text before `=` may be a secret: never listed.
            let key = match crate::format::dotenv::validate_key(key) {
                Ok(()) => key.clone(),
                Err(_) => format!("(line {line}: not a key name, text not shown)"),
            };
            rows.push((key, encrypted, stored.is_empty()));
        }
    }
    let current = f.lines().iter().filter_map(|l| match l {
        crate::format::dotenv::Line::Pair { key, stored, .. } => {
            Some((key.as_str(), stored.as_str()))
        }
        _ => None,
    });
    let (mut changes, note) = histories
        .map(|h| h.finish(vec![h.date_pairs(0, current)]))
        .unwrap_or_default();
    let changes = changes.pop().unwrap_or_default();
    let date = crate::git::history::date;
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
    // Most keys share the few commits that set them: each commit's text is made once.
    let mut said =
        std::collections::HashMap::<(*const crate::git::history::CommitInfo, bool), String>::new();
    for (k, enc, empty) in &rows {
        let state = if *empty {
            "empty"
        } else if *enc {
            "encrypted"
        } else {
            "plain"
        };
        let when = match changes.get(k) {
            Some(d) => said
                .entry((std::sync::Arc::as_ptr(&d.commit), d.at_least))
                .or_insert_with(|| {
                    format!(
                        "{}  {}  {}{}",
                        date(d.commit.time),
                        d.commit.short(),
                        d.commit.author,
                        if d.at_least { "  (or older)" } else { "" }
                    )
                })
                .as_str(),
            None => "not committed",
        };
        writeln!(out, "{k:width$}  {state:9}  {when}")?;
    }
    out.flush()?;
    if let Some(n) = note {
        eprintln!("note: {n}");
    }
    Ok(0)
}
