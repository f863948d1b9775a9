//! `envv encrypt` and `envv decrypt`: whole files.

use std::path::PathBuf;

use clap::Args;

use super::Ctx;
use crate::dotenv::{self, Line};
use crate::envfile::EnvFile;
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

pub fn encrypt(ctx: &Ctx, a: EncryptArgs) -> anyhow::Result<i32> {
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
    let n = super::values::update_with(ctx, &t, false, true, |_f, plain, _dk| {
        let n = plain.pending.len();
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
fn fix_rule(ctx: &Ctx, t: &Target) -> anyhow::Result<i32> {
    let _lock = crate::fsutil::lock_for(&t.path)?;
    let rule = super::values::policy_rule(ctx)?;
    let mut f = EnvFile::open(&t.path, &t.name)?;
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
        .meta
        .as_ref()
        .map(|m| m.rule.public_patterns())
        .unwrap_or_default();
    let adopted: Vec<String> = rule
        .public_patterns()
        .into_iter()
        .filter(|p| !had.contains(p))
        .collect();
    // The values are authenticated under the file's own rule (a file sops wrote under other
    // creation_rules) or, when only the rule line was swapped, under the policy's.
    let mut plain = match f.decrypt(&dk, true) {
        Ok(p) => p,
        Err(own) => {
            let mut g = f.clone();
            let meta = g.meta.as_mut().expect("encrypted");
            meta.rule = rule.clone();
            meta.mac_only_encrypted = false;
            match g.decrypt(&dk, true) {
                Ok(p) => {
                    f = g;
                    p
                }
                Err(_) => return Err(own.into()),
            }
        }
    };
    let meta = f.meta.as_mut().expect("encrypted");
    meta.rule = rule;
    meta.mac_only_encrypted = false;
    let plan = f.plan();
    let mut exposed = Vec::new();
    for (i, l) in f.lines.iter().enumerate() {
        let (stored, key) = match l {
            Line::Pair { key, stored, .. } => (stored, Some(key)),
            Line::Comment(text) => (text, None),
            Line::Blank => continue,
        };
        if stored.is_empty() || plan[i] == crate::sops::is_enc(stored) {
            continue;
        }
        if let (true, Some(k)) = (plan[i], key) {
            exposed.push(k.clone());
        }
        plain.pending.push(i);
    }
    f.seal(&mut plain, &dk)?;
    let plain_ok = super::public::confirm_plain(ctx, &before, &f, &adopted)?;
    f.save()?;
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
    let _lock = crate::fsutil::lock_for(&t.path)?;
    crate::fsutil::clean_stale_temps(&t.path);
    let bytes = crate::paths::read_bounded(&t.path, &t.name)?;
    let text = dotenv::decode_utf8(&t.name, &bytes)?;
    let recipients = ctx.ws.recipients(t)?;
    let confirmed = super::confirm::confirm_new_file(ctx, t, &recipients)?;
    let rule = ctx.ws.require_policy()?.policy.crypt_rule();
    let adopted = rule.public_patterns();
    let (mut f, dk, _plain) = EnvFile::encrypt_new(&t.path, &t.name, text, &recipients, rule)?;
    if let Some((groups, k)) = super::values::threshold_layout(ctx, t) {
        f.rewrap_groups(&dk, &groups, k, false)?;
    }
    let plain_ok = super::public::confirm_plain(ctx, &super::public::Before::none(), &f, &adopted)?;
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

pub fn decrypt(ctx: &Ctx, a: DecryptArgs) -> anyhow::Result<i32> {
    if let (true, Some(p)) = (a.textconv, &a.path) {
        return super::gitint::textconv(ctx, p);
    }
    let t = match &a.path {
        Some(p) => ctx.ws.target(None, Some(p))?,
        None => ctx.target()?,
    };
    let (f, _dk, plain) = super::values::open_decrypted(ctx, &t, a.ignore_mac)?;
    let (out, warnings) = render_dotenv(&f, &plain, Render::Decrypt);
    for w in warnings {
        eprintln!("warning: {w}");
    }
    super::write_plaintext(a.output.as_deref(), &out)?;
    Ok(0)
}

/// Who reads the rendered text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Render {
    /// `decrypt`: other programs. Only authenticated text: comments that were not encrypted
    /// are dropped; values are spelled for the dotenv readers ([`dotenv::spell`]).
    Decrypt,
    /// `edit`'s scratch file, read back by envv: plaintext comments are shown (on one line) so
    /// that saving keeps them.
    Edit,
    /// `decrypt --textconv`, shown by git diff: like `Edit`, with the portable spellings.
    Textconv,
}

/// The decrypted file as dotenv text: comments, blank lines, spelled values. Lines whose key is
/// not a key name (a sops file may hold any text before `=`) are left out. Returns the text and
/// the warnings to print (lines left out, values no spelling carries exactly).
pub(crate) fn render_dotenv(
    f: &EnvFile,
    plain: &crate::envfile::Plain,
    mode: Render,
) -> (zeroize::Zeroizing<Vec<u8>>, Vec<String>) {
    // Room for the worst case (every value double-quoted with every byte escaped), so the buffer
    // never grows: growing would leave un-zeroized copies of the plaintext on the heap.
    let cap = f.lines.iter().zip(&plain.values).map(|(l, v)| {
        let key = if let Line::Pair { key, .. } = l {
            key.len()
        } else {
            0
        };
        key + v.as_ref().map_or(0, |v| 2 * v.len()) + 8
    });
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(cap.sum()));
    let mut warnings = Vec::new();
    let plan = f.plan();
    for (i, l) in f.lines.iter().enumerate() {
        match l {
            Line::Blank => out.push(b'\n'),
            Line::Comment(text) => {
                let authenticated = plan[i] && crate::sops::is_enc(text);
                if !authenticated && mode == Render::Decrypt {
                    continue;
                }
                out.push(b'#');
                if let Some(v) = &plain.values[i] {
                    // A comment spanning lines would turn into data lines: keep it on one.
                    out.extend_from_slice(&dotenv::comment_text(v.expose()));
                }
                out.push(b'\n');
            }
            Line::Pair { key, line, .. } => {
                let n = if *line > 0 { *line } else { i + 1 };
                // sops keeps `export ` in a key it read from `export KEY=v`; every dotenv
                // reader and shell takes that line as written.
                let name = key.strip_prefix("export ").unwrap_or(key);
                let mut shown = key.as_str();
                if dotenv::validate_key(name).is_err() {
                    let why = dotenv::key_problem(key);
                    match (mode, edit_name(f, key)) {
                        (Render::Edit, Some(fixed)) => {
                            warnings.push(format!("{}:{n}: shown as {fixed} (the file stores it with `export ` or spaces); saving stores it under that name", f.name));
                            shown = fixed;
                        }
                        (Render::Edit, None) => {
                            warnings.push(format!(
                                "{}:{n}: not shown, and removed when you save: {why}",
                                f.name
                            ));
                            continue;
                        }
                        (Render::Decrypt, _) => {
                            warnings.push(format!("{}:{n}: left out: {why}", f.name));
                            continue;
                        }
                        (Render::Textconv, _) => {
                            out.extend_from_slice(
                                format!("# envv: line {n} left out: not a key name\n").as_bytes(),
                            );
                            continue;
                        }
                    }
                }
                out.extend_from_slice(shown.as_bytes());
                out.push(b'=');
                if let Some(v) = &plain.values[i] {
                    let s = dotenv::spell(v.expose(), mode != Render::Edit);
                    out.extend_from_slice(&s.text);
                    if mode == Render::Decrypt && !s.misread_by.is_empty() {
                        warnings.push(format!(
                            "{}: {}",
                            f.name,
                            misread_warning(key, s.misread_by)
                        ));
                    }
                }
                out.push(b'\n');
            }
        }
    }
    (out, warnings)
}

/// The name a stored key written by hand means (`export FOO`, ` FOO `), when it is a valid name
/// no other line of the file uses.
fn edit_name<'a>(f: &EnvFile, key: &'a str) -> Option<&'a str> {
    let t = key.trim();
    let t = match t.strip_prefix("export") {
        Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start(),
        _ => t,
    };
    (dotenv::validate_key(t).is_ok() && f.find(t).is_none()).then_some(t)
}

/// The warning for a value that no dotenv spelling carries to every reader.
pub(crate) fn misread_warning(key: &str, by: dotenv::Readers) -> String {
    format!(
        "{key} has no dotenv spelling that every reader takes literally; {} would read it differently (`envv export --format json` and `envv exec` carry it exactly)",
        by.names()
    )
}
