//! `envv propose`, `envv accept`, `envv reject`: values from contributors who cannot read.

use super::CliResult;
use std::collections::BTreeSet;

use clap::Args;

use super::Ctx;
use crate::error::Error;
use crate::keys::{self, Recipient};
use crate::secret::Secret;
use crate::store::file::EnvFile;
use crate::store::proposals::{self, Proposal};
use crate::workspace::Target;

const PROPOSE_EXAMPLES: &str = "\
Examples:
  envv propose -e production STRIPE_KEY          # prompts (hidden)
  printf %s \"$TOKEN\" | envv propose -e staging API_TOKEN";

/// Propose a value for an environment you cannot read (no identity or membership needed).
///
/// The value is encrypted with age to the readers the environment's file already has (from
/// the file itself, not from .sops.yaml) and written to `<file>.proposals` beside it, for a
/// pull request. You cannot read any existing value. Without VALUE it is read from a hidden
/// prompt on a terminal, else from stdin. A reader folds it in with `envv accept`.
#[derive(Args, Debug)]
#[command(after_long_help = PROPOSE_EXAMPLES)]
pub struct ProposeArgs {
    /// The key to propose a value for.
    pub key: String,
    /// The value (else a hidden prompt, or stdin). On the command line it lands in shell history.
    pub value: Option<String>,
}

const ACCEPT_EXAMPLES: &str = "\
Examples:
  envv accept -e production                 # review and confirm each
  envv accept -e production STRIPE_KEY      # accept this one
  envv accept -e production --show --yes";

/// Fold proposed values into the environment's file (you must be a reader).
///
/// Shows each proposal (key, proposer, date; the value only with --show), then stores the
/// accepted ones as `envv set` would (minimal diff) and removes them from the proposal file.
/// On a terminal each one is confirmed; otherwise name the keys or pass --yes.
#[derive(Args, Debug)]
#[command(after_long_help = ACCEPT_EXAMPLES)]
pub struct AcceptArgs {
    /// Keys to accept (default: all pending proposals).
    pub keys: Vec<String>,
    /// Also print each proposed value.
    #[arg(long)]
    pub show: bool,
    /// Accept without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

const REJECT_EXAMPLES: &str = "\
Examples:
  envv reject -e production STRIPE_KEY
  envv reject -e production --all";

/// Drop proposals without accepting them (needs no identity).
#[derive(Args, Debug)]
#[command(after_long_help = REJECT_EXAMPLES)]
pub struct RejectArgs {
    /// Keys whose proposals to drop.
    #[arg(required_unless_present = "all")]
    pub keys: Vec<String>,
    /// Drop every pending proposal.
    #[arg(long, conflicts_with = "keys")]
    pub all: bool,
}

fn env_name(t: &Target) -> String {
    t.env.clone().unwrap_or_else(|| "default".into())
}

fn env_opt(t: &Target) -> Option<&str> {
    t.env.as_deref()
}

/// Member names (from the policy) of the given recipients, else their short keys.
fn names(ctx: &Ctx, recipients: &[&str]) -> Vec<String> {
    let policy = ctx.ws.policy().ok().flatten();
    recipients
        .iter()
        .map(|r| {
            policy
                .and_then(|pf| {
                    pf.policy
                        .members
                        .iter()
                        .find(|(_, m)| keys::same_recipient(&m.key, r))
                        .map(|(n, _)| n.clone())
                })
                .unwrap_or_else(|| keys::short_key(r))
        })
        .collect()
}

pub fn propose(ctx: &Ctx, a: ProposeArgs) -> CliResult<i32> {
    let t = ctx.target()?;
    crate::format::dotenv::validate_key(&a.key)?;
    let env = env_name(&t);
    let f = match EnvFile::open(&t.path, &t.name) {
        Err(Error::MissingFile { .. }) => {
            return Err(Error::refused_hint(
                format!(
                    "{} does not exist yet, so it has no readers to encrypt to",
                    t.name
                ),
                format!("a reader creates it with `envv set -e {env} KEY`"),
            )
            .into())
        }
        other => other?,
    };
    let Some(meta) = f.meta().filter(|_| f.is_encrypted()) else {
        return Err(Error::usage(format!(
            "{} is not encrypted, so it has no readers to encrypt to",
            t.name
        ))
        .into());
    };
    if meta.groups.len() > 1 {
        return Err(Error::usage(format!(
            "{} needs several key groups together (a threshold environment): a proposal readable by one reader would weaken it; ask a reader to set the value",
            t.name
        ))
        .into());
    }
    let texts = meta.recipients();
    // The file's recipient entries are not authenticated: anyone can add one for themselves.
    // Encrypt only when every one of them is a reader the committed policy names.
    let committed = crate::policy::trust::policy_at_head(&ctx.ws.root)
        .or_else(|| ctx.ws.policy().ok().flatten().map(|pf| pf.policy.clone()))
        .ok_or_else(|| Error::usage("no .sops.yaml to check the readers against"))?;
    let readers = committed.recipients(&env);
    let unknown: Vec<String> = texts
        .iter()
        .filter(|t| !readers.iter().any(|r| keys::same_recipient(&r.text, t)))
        .map(|t| t.to_string())
        .collect();
    if !unknown.is_empty() {
        return Err(Error::refused_hint(format!("{} wraps its data key for {} whom .sops.yaml (as committed) does not list as readers of {env}: a proposal would be readable by them; nothing was written", t.name, unknown.join(", ")), "ask a reader to run `envv check` and `envv updatekeys`")
        .into());
    }
    let recipients = texts
        .iter()
        .map(|r| Recipient::parse(r).map_err(|e| Error::format(&t.name, e.to_string())))
        .collect::<crate::Result<Vec<_>>>()?;
    if recipients.is_empty() {
        return Err(Error::format(&t.name, "no age recipients to encrypt a proposal to").into());
    }
    let value = match a.value {
        Some(v) => {
            super::values::warn_history();
            Secret::from_str(&v)
        }
        None => super::values::read_value(&a.key)?,
    };
    if value.len() > proposals::MAX_VALUE {
        return Err(Error::usage(format!(
            "the value for {} is larger than {} KiB, the limit for a proposal",
            a.key,
            proposals::MAX_VALUE / 1024
        ))
        .into());
    }
    let armored = keys::encrypt_armored(&recipients, value.expose())?;
    drop(value);
    let by = match (
        crate::git::config_string(&ctx.ws.root, "user.name"),
        crate::git::config_string(&ctx.ws.root, "user.email"),
    ) {
        (Some(n), Some(e)) => format!("{n} <{e}>"),
        (Some(n), None) => n,
        (None, Some(e)) => format!("<{e}>"),
        (None, None) => "unknown (git user.name is not set)".into(),
    };
    let _lock = crate::os::files::lock_for(&t.path)?;
    let mut all = proposals::load(&t.path, &t.name)?;
    if let Some(old) = all.iter().find(|p| p.key == a.key) {
        eprintln!(
            "replaces the earlier proposal for {} by {} ({})",
            a.key,
            old.by_shown(),
            old.date_shown()
        );
    }
    all.retain(|p| p.key != a.key);
    all.push(Proposal {
        key: a.key.clone(),
        by,
        date: crate::format::sops::now_timestamp(),
        armored,
    });
    proposals::save(&t.path, &t.name, env_opt(&t), &all)?;
    let file = format!("{}{}", t.name, proposals::SUFFIX);
    eprintln!(
        "proposed {} for {} in {file}, encrypted to its readers:",
        a.key, t.name
    );
    for (name, key) in names(ctx, &texts).iter().zip(&texts) {
        eprintln!("  {name}  {key}");
    }
    eprintln!("  next: `git add {file}`, commit and open a pull request; a reader runs `envv accept -e {env}`");
    Ok(0)
}

/// The proposals selected by `keys` (all when empty); an unknown key is an error.
fn select(all: &[Proposal], keys: &[String], file: &str) -> crate::Result<Vec<Proposal>> {
    for k in keys {
        if !all.iter().any(|p| &p.key == k) {
            return Err(Error::KeyNotFound {
                key: k.clone(),
                file: file.to_string(),
            });
        }
    }
    Ok(all
        .iter()
        .filter(|p| keys.is_empty() || keys.contains(&p.key))
        .cloned()
        .collect())
}

fn confirm(question: &str) -> bool {
    eprint!("{question} [y/N] ");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).is_ok()
        && matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

pub fn accept(ctx: &Ctx, a: AcceptArgs) -> CliResult<i32> {
    let t = ctx.target()?;
    let env = env_name(&t);
    let file = format!("{}{}", t.name, proposals::SUFFIX);
    let all = proposals::load(&t.path, &t.name)?;
    if all.is_empty() {
        eprintln!("no proposals for {} ({file} does not exist)", t.name);
        return Ok(0);
    }
    let chosen = select(&all, &a.keys, &file)?;
    let tty = super::stdin_is_tty();
    if !a.yes && !tty && a.keys.is_empty() {
        for p in &chosen {
            eprintln!("  {}  by {}  {}", p.key, p.by_shown(), p.date_shown());
        }
        return Err(Error::usage_hint(
            format!("{} proposals pending for {}", chosen.len(), t.name),
            "name the keys to accept, or pass --yes to accept them all",
        )
        .into());
    }
    // Open every chosen value first: nothing is written unless all of them open.
    let mut ring = ctx.keyring();
    let mut opened: Vec<(Proposal, Secret)> = Vec::new();
    for p in chosen {
        let bytes = ring.open_armored(&p.armored, proposals::MAX_VALUE).ok_or_else(|| {
            Error::usage(format!(
                "cannot open the proposal for {} in {file}: it is not encrypted to any of your identities (not a reader, or proposed to earlier readers: ask for it again)",
                p.key
            ))
        })?;
        if std::str::from_utf8(&bytes).is_err() {
            return Err(Error::refused_hint(
                format!("the proposal for {} in {file} is not UTF-8 text", p.key),
                format!("reject it with `envv reject -e {env} {}`", p.key),
            )
            .into());
        }
        opened.push((p, Secret::new(bytes.to_vec())));
    }
    let current: BTreeSet<String> = EnvFile::open(&t.path, &t.name)
        .map(|f| f.keys().map(str::to_string).collect())
        .unwrap_or_default();
    let mut accepted: Vec<(String, Secret)> = Vec::new();
    for (p, v) in opened {
        let replaces = if current.contains(&p.key) {
            "  (replaces the current value)"
        } else {
            ""
        };
        eprintln!(
            "{}  by {}  {}{replaces}",
            p.key,
            p.by_shown(),
            p.date_shown()
        );
        if a.show {
            println!("{}={}", p.key, v.expose_str().unwrap_or_default());
        }
        if a.yes || (!a.keys.is_empty() && !tty) || confirm(&format!("accept {}?", p.key)) {
            accepted.push((p.key.clone(), v));
        }
    }
    if accepted.is_empty() {
        eprintln!("nothing accepted");
        return Ok(0);
    }
    let keys: Vec<String> = accepted.iter().map(|(k, _)| k.clone()).collect();
    super::values::update(ctx, &t, false, move |f| {
        let mut changed = false;
        for (k, v) in accepted {
            changed |= f.set(&k, v)?;
        }
        Ok((changed, ()))
    })?;
    let _lock = crate::os::files::lock_for(&t.path)?;
    let left: Vec<Proposal> = proposals::load(&t.path, &t.name)?
        .into_iter()
        .filter(|p| !keys.contains(&p.key))
        .collect();
    proposals::save(&t.path, &t.name, env_opt(&t), &left)?;
    eprintln!("accepted {} into {}", keys.join(", "), t.name);
    if left.is_empty() {
        eprintln!("  {file} is now empty and was removed: commit both files");
    } else {
        eprintln!("  {} proposals still pending in {file}", left.len());
    }
    Ok(0)
}

pub fn reject(ctx: &Ctx, a: RejectArgs) -> CliResult<i32> {
    let t = ctx.target()?;
    let file = format!("{}{}", t.name, proposals::SUFFIX);
    let _lock = crate::os::files::lock_for(&t.path)?;
    let all = proposals::load(&t.path, &t.name)?;
    let dropped = if a.all {
        all.clone()
    } else {
        select(&all, &a.keys, &file)?
    };
    let left: Vec<Proposal> = all.into_iter().filter(|p| !dropped.contains(p)).collect();
    proposals::save(&t.path, &t.name, env_opt(&t), &left)?;
    for p in &dropped {
        eprintln!("rejected the proposal for {} by {}", p.key, p.by_shown());
    }
    Ok(0)
}

/// The environment whose file a proposal file sits beside (from the policy), for messages.
fn env_of_proposal_file(ctx: &Ctx, name: &str) -> Option<String> {
    let env_file = name.strip_suffix(proposals::SUFFIX)?;
    let pf = ctx.ws.policy().ok().flatten()?;
    let rel = ctx
        .ws
        .root
        .join(env_file)
        .strip_prefix(&ctx.ws.root)
        .ok()?
        .to_string_lossy()
        .into_owned();
    pf.policy.env_for_file(&rel).map(str::to_string)
}

/// `envv merge-driver` for a proposal file: proposals merged key by key. Returns the exit code
/// git expects (0 merged, 1 conflict).
pub(crate) fn merge_driver(
    ctx: &Ctx,
    name: &str,
    base: &[u8],
    ours: &[u8],
    theirs: &[u8],
    out: &std::path::Path,
) -> CliResult<i32> {
    let parse = |b: &[u8]| proposals::parse(name, b);
    let (b, o, t) = (parse(base)?, parse(ours)?, parse(theirs)?);
    match proposals::merge3(&b, &o, &t) {
        Ok(merged) => {
            let env = env_of_proposal_file(ctx, name);
            let env_file = name.strip_suffix(proposals::SUFFIX).unwrap_or(name);
            let text = proposals::render(env_file, env.as_deref(), &merged);
            std::fs::write(out, text).map_err(|e| Error::io(out, e))?;
            Ok(0)
        }
        Err(keys) => {
            eprintln!(
                "envv merge-driver: {name}: {} proposed differently on both sides; every other proposal is merged\n  hint: keep one side with `git checkout --ours/--theirs {name}`, then propose again",
                keys.join(", ")
            );
            std::fs::write(out, crate::merge::plain_conflict(ours, theirs))
                .map_err(|e| Error::io(out, e))?;
            Ok(1)
        }
    }
}

/// `decrypt --textconv` of a proposal file: one line per proposal with its proposer and date;
/// readers see the value (escaped: it comes from someone outside the readers), others a
/// fingerprint of the ciphertext.
pub(crate) fn textconv(ctx: &Ctx, name: &str, bytes: &[u8]) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    let props = proposals::parse(name, bytes).ok()?;
    let mut ring = ctx.keyring();
    let mut out = zeroize::Zeroizing::new(Vec::new());
    for p in props {
        out.extend_from_slice(
            format!("# proposed by {} on {}\n", p.by_shown(), p.date_shown()).as_bytes(),
        );
        match ring.open_armored(&p.armored, proposals::MAX_VALUE) {
            Some(v) => {
                let shown =
                    zeroize::Zeroizing::new(String::from_utf8_lossy(&v).escape_debug().to_string());
                out.extend_from_slice(format!("{}=\"{}\"\n", p.key, &*shown).as_bytes());
            }
            None => {
                use sha2::Digest;
                let h = sha2::Sha256::digest(p.armored.as_bytes());
                let fp: String = h[..6].iter().map(|b| format!("{b:02x}")).collect();
                out.extend_from_slice(
                    format!("{}=<proposed, encrypted: {fp}>\n", p.key).as_bytes(),
                );
            }
        }
    }
    Some(out)
}
