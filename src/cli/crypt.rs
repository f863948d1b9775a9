//! `envv encrypt` and `envv decrypt`: whole files.

use std::path::PathBuf;

use clap::Args;

use super::Ctx;
use crate::dotenv::{self, Line};
use crate::envfile::EnvFile;
use crate::workspace::Target;

/// Encrypt a plaintext dotenv file in place, for the readers the policy gives it.
///
/// Values are parsed as dotenv (quotes, escapes, `export`, inline comments); comments are
/// encrypted too. On an encrypted file, lines added in plain text are encrypted and the rest is
/// left alone, so running it twice changes nothing.
///
/// Example: envv encrypt .env.production
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct EncryptArgs {
    /// The file (default: the -e/-f selection).
    pub path: Option<PathBuf>,
}

pub fn encrypt(ctx: &Ctx, a: EncryptArgs) -> anyhow::Result<i32> {
    let t = match &a.path {
        Some(p) => ctx.ws.target(None, Some(p))?,
        None => ctx.target()?,
    };
    let f = EnvFile::open(&t.path, &t.name)?;
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

/// Encrypts a plaintext file in place (under the folder lock).
pub(crate) fn encrypt_plain_file(ctx: &Ctx, t: &Target) -> crate::Result<()> {
    let _lock = crate::fsutil::lock_for(&t.path)?;
    crate::fsutil::clean_stale_temps(&t.path);
    let bytes = crate::paths::read_bounded(&t.path, &t.name)?;
    let text = dotenv::decode_utf8(&t.name, &bytes)?;
    let recipients = ctx.ws.recipients(t)?;
    let rule = ctx.ws.require_policy()?.policy.crypt_rule();
    let (f, _dk, _plain) = EnvFile::encrypt_new(&t.path, &t.name, text, &recipients, rule)?;
    f.save()
}

/// Print the decrypted file as dotenv (quoted so dotenv parsers read the same values).
///
/// Comments and blank lines come back; `-o FILE` writes a 0600 file instead of stdout.
///
/// Examples:
///   envv decrypt -e production
///   envv decrypt -o /tmp/app.env
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
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
    let out = zeroize::Zeroizing::new(render_dotenv(&f, &plain));
    super::write_plaintext(a.output.as_deref(), &out)?;
    Ok(0)
}

/// The decrypted file as dotenv text: comments, blank lines, quoted values.
pub(crate) fn render_dotenv(f: &EnvFile, plain: &crate::envfile::Plain) -> Vec<u8> {
    // Room for the worst case (every value double-quoted with every byte escaped), so the buffer
    // never grows: growing would leave un-zeroized copies of the plaintext on the heap.
    let cap = f.lines.iter().zip(&plain.values).map(|(l, v)| {
        let key = if let Line::Pair { key, .. } = l {
            key.len()
        } else {
            0
        };
        key + v.as_ref().map_or(0, |v| 2 * v.len()) + 4
    });
    let mut out = Vec::with_capacity(cap.sum());
    for (i, l) in f.lines.iter().enumerate() {
        match l {
            Line::Blank => out.push(b'\n'),
            Line::Comment(_) => {
                out.push(b'#');
                if let Some(v) = &plain.values[i] {
                    // A comment spanning lines would turn into data lines: keep it on one.
                    out.extend(
                        v.expose()
                            .iter()
                            .map(|&b| if b == b'\n' { b' ' } else { b }),
                    );
                }
                out.push(b'\n');
            }
            Line::Pair { key, .. } => {
                out.extend_from_slice(key.as_bytes());
                out.push(b'=');
                if let Some(v) = &plain.values[i] {
                    out.extend_from_slice(&zeroize::Zeroizing::new(dotenv::quote(v.expose())));
                }
                out.push(b'\n');
            }
        }
    }
    out
}
