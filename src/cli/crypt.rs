//! `envv encrypt` and `envv decrypt`: whole files.

use super::CliResult;
use std::path::PathBuf;

use clap::Args;

use super::Ctx;
use crate::format::dotenv;
use crate::store::file::{EnvFile, Opened};
use crate::workspace::Target;

const ENCRYPT_EXAMPLES: &str = "\
Example:
  envv encrypt .env.production";

/// Encrypt a plaintext dotenv file in place, for the readers the policy gives it.
///
/// Values are parsed as dotenv (quotes, escapes, `export`, inline comments); comments are
/// encrypted too. On an encrypted file, lines added in plain text are encrypted and the rest is
/// left alone, so running it twice changes nothing.
#[derive(Args, Debug)]
#[command(after_long_help = ENCRYPT_EXAMPLES)]
pub struct EncryptArgs {
    /// The file (default: the -e/-f selection).
    pub path: Option<PathBuf>,
    /// Replace the file's own rule lines (`sops_unencrypted_*`, `sops_encrypted_*`,
    /// `sops_mac_only_encrypted`) with the policy's `public` rule, encrypting every value it
    /// treats as secret. Needs the data key; the MAC is verified first.
    #[arg(long)]
    pub fix_rule: bool,
}

pub fn encrypt(ctx: &Ctx, a: EncryptArgs) -> CliResult<i32> {
    let t = match &a.path {
        Some(p) => ctx.ws.target(None, Some(p))?,
        None => ctx.target()?,
    };
    let f = EnvFile::open(&t.path, &t.name)?;
    if a.fix_rule && f.is_encrypted() {
        return fix_rule(ctx, &t);
    }
    if !f.is_encrypted() {
        encrypt_plain_file(ctx, &t)?;
        eprintln!("encrypted {} for {}", t.name, ctx.ws.readers(&t).join(", "));
        return Ok(0);
    }
    let n = super::values::update_with(ctx, &t, false, true, |f| {
        let n = f.pending();
        Ok((n > 0, n))
    })?;
    if n == 0 {
        eprintln!("{} is already encrypted; nothing to do", t.name);
    } else {
        eprintln!("encrypted {n} plaintext line(s) in {}", t.name);
    }
    Ok(0)
}

/// `envv encrypt --fix-rule`: the policy's rule replaces the file's own, every value is stored
/// as that rule says (MAC verified first, values re-encrypted only where their state changes).
fn fix_rule(ctx: &Ctx, t: &Target) -> CliResult<i32> {
    let _lock = crate::os::files::lock_for(&t.path)?;
    let rule = super::values::policy_rule(ctx)?;
    let f = EnvFile::open(&t.path, &t.name)?;
    if f.rule_conflict(&rule).is_none() {
        eprintln!(
            "{} already follows the policy's rule; nothing to do",
            t.name
        );
        return Ok(0);
    }
    let dk = f.unlock(&mut ctx.keyring(), || ctx.ws.readers(t))?;
    let before = super::public::Before::of(&f);
    let had: Vec<String> = f
        .meta()
        .map(|m| m.rule.public_patterns())
        .unwrap_or_default();
    let adopted: Vec<String> = rule
        .public_patterns()
        .into_iter()
        .filter(|p| !had.contains(p))
        .collect();
    // The values are authenticated under the file's own rule (a file sops wrote under other
    // creation_rules) or, when only the rule line was swapped, under the policy's.
    let mut o = match f.clone().decrypt(&dk, true) {
        Ok(o) => o,
        Err(own) => {
            let mut g = f;
            let meta = g.meta_mut().expect("encrypted");
            meta.rule = rule.clone();
            meta.mac_only_encrypted = false;
            match g.decrypt(&dk, true) {
                Ok(o) => o,
                Err(_) => return Err(own.into()),
            }
        }
    };
    let exposed = o.adopt_rule(rule);
    o.seal()?;
    let plain_ok = super::public::confirm_plain(ctx, &before, o.file(), &adopted)?;
    o.save()?;
    plain_ok.remember(ctx);
    eprintln!("{} now follows the policy's rule", t.name);
    if !exposed.is_empty() {
        eprintln!(
            "warning: {} were stored in plain text (in git history too): rotate them at their providers",
            exposed.join(", ")
        );
    }
    Ok(0)
}

/// Encrypts a plaintext file in place (under the folder lock).
pub(crate) fn encrypt_plain_file(ctx: &Ctx, t: &Target) -> crate::Result<()> {
    let _lock = crate::os::files::lock_for(&t.path)?;
    crate::os::files::clean_stale_temps(&t.path);
    let bytes = crate::os::paths::read_bounded(&t.path, &t.name)?;
    let text = dotenv::decode_utf8(&t.name, &bytes)?;
    let recipients = ctx.ws.recipients(t)?;
    let confirmed = super::confirm::confirm_new_file(ctx, t, &recipients)?;
    let rule = ctx.ws.require_policy()?.policy.crypt_rule();
    let adopted = rule.public_patterns();
    let mut f = Opened::encrypt_new(&t.path, &t.name, text, &recipients, rule)?;
    if let Some((groups, k)) = super::values::threshold_layout(ctx, t) {
        f.rewrap_groups(&groups, k, false)?;
    }
    let plain_ok =
        super::public::confirm_plain(ctx, &super::public::Before::none(), f.file(), &adopted)?;
    f.save()?;
    confirmed.remember(ctx);
    plain_ok.remember(ctx);
    Ok(())
}

const DECRYPT_EXAMPLES: &str = "\
Examples:
  envv decrypt -e production
  envv decrypt -o /tmp/app.env";

/// Print the decrypted file as dotenv, spelled so dotenv parsers read the same values.
///
/// Encrypted comments and blank lines come back; `-o FILE` writes a 0600 file instead of stdout.
/// Values are spelled so that dotenv parsers read them literally; a warning names the key when
/// no spelling suits every parser (`envv export --format json` is exact).
#[derive(Args, Debug)]
#[command(after_long_help = DECRYPT_EXAMPLES)]
pub struct DecryptArgs {
    /// The file (default: the -e/-f selection).
    pub path: Option<PathBuf>,
    /// Write to this file (mode 0600) instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Skip the MAC check (recovery only).
    #[arg(long)]
    pub ignore_mac: bool,
    /// For git diff (`envv git setup` configures it): KEY=value lines for readers,
    /// KEY=<encrypted: fingerprint> for others; never fails.
    #[arg(long, requires = "path", conflicts_with = "output")]
    pub textconv: bool,
}

pub fn decrypt(ctx: &Ctx, a: DecryptArgs) -> CliResult<i32> {
    if let (true, Some(p)) = (a.textconv, &a.path) {
        return super::git::textconv(ctx, p);
    }
    let t = match &a.path {
        Some(p) => ctx.ws.target(None, Some(p))?,
        None => ctx.target()?,
    };
    let f = super::values::open_decrypted(ctx, &t, a.ignore_mac)?;
    let out = crate::render::file(&f, crate::render::FileMode::Decrypt);
    for w in &out.warnings {
        eprintln!("warning: {w}");
    }
    super::write_plaintext(a.output.as_deref(), &out.bytes)?;
    Ok(0)
}
