//! `envv keygen` (with recovery phrases), `envv recover` and `envv whoami`.

use super::{CliError, CliResult};
use std::path::PathBuf;

use clap::Args;

use std::io::Read;

use zeroize::Zeroizing;

use super::Ctx;
use crate::keys::{self, phrase};

const KEYGEN_EXAMPLES: &str = "\
Examples:
  envv keygen
  envv keygen --phrase               # public key, then the 24 words
  envv keygen --show-phrase          # the phrase of your existing key file (asks first)";

/// Create your age identity (X25519) in ~/.config/envv/keys.txt (mode 0600); never overwrites.
///
/// Prints the public key: give it to a teammate, or use it with `envv init` / `envv join`.
/// With --phrase it also prints the identity's 24-word recovery phrase (BIP39, English) on the
/// next line: write it on paper, and `envv recover` rebuilds the same identity from it.
#[derive(Args, Debug)]
#[command(after_long_help = KEYGEN_EXAMPLES)]
pub struct KeygenArgs {
    /// Write the identity here instead of the default key file.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Also print the new identity's 24-word recovery phrase.
    #[arg(long, conflicts_with = "show_phrase")]
    pub phrase: bool,

    /// Print the recovery phrase of an existing key file (default: ~/.config/envv/keys.txt)
    /// instead of creating one; asks for confirmation on the terminal.
    #[arg(long, value_name = "FILE", num_args = 0..=1, conflicts_with = "output")]
    pub show_phrase: Option<Option<PathBuf>>,
}

fn default_key_path() -> CliResult<PathBuf> {
    keys::default_key_file()
        .ok_or_else(|| CliError::usage("cannot find your home folder").hint("pass --output FILE"))
}

pub fn keygen(_ctx: &Ctx, a: KeygenArgs) -> CliResult<i32> {
    if let Some(file) = a.show_phrase {
        return show_phrase(file);
    }
    let path = match a.output {
        Some(p) => p,
        None => default_key_path()?,
    };
    let public = keys::keygen(&path)?;
    eprintln!("wrote a new identity to {} (mode 0600)", path.display());
    println!("{public}");
    if a.phrase {
        let lines = keys::x25519_lines(&path)?;
        let line = lines.first().ok_or_else(|| {
            CliError::usage(format!("{}: no identity after writing it", path.display()))
        })?;
        let words = phrase::phrase_of(line)?;
        println!("{}", &*words);
        eprintln!(
            "the line above is your recovery phrase: anyone who has it can decrypt what you can."
        );
        eprintln!("  write it down offline; `envv recover` rebuilds the identity from it");
    }
    Ok(0)
}

fn show_phrase(file: Option<PathBuf>) -> CliResult<i32> {
    let path = match file {
        Some(p) => p,
        None => default_key_path()?,
    };
    let lines = keys::x25519_lines(&path)?;
    if lines.is_empty() {
        return Err(CliError::usage(format!(
            "{}: no plain X25519 identity (AGE-SECRET-KEY-1…) in this file; only those have a recovery phrase",
            path.display()
        )));
    }
    if !super::stdin_is_tty() || !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        return Err(CliError::usage(
            "--show-phrase prints your secret key as words and asks first",
        )
        .hint("run it in a terminal"));
    }
    eprint!(
        "This prints the secret identity in {} as words: anyone who sees them can decrypt what you can.\nType yes to show it: ",
        path.display()
    );
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if answer.trim() != "yes" {
        eprintln!("nothing shown");
        return Ok(1);
    }
    for line in &lines {
        let id: age::x25519::Identity = line.parse().map_err(|_| {
            CliError::usage(format!(
                "{}: an identity line does not parse",
                path.display()
            ))
        })?;
        println!("# public key: {}", id.to_public());
        println!("{}", &*phrase::phrase_of(line)?);
    }
    Ok(0)
}

const RECOVER_EXAMPLES: &str = "\
Examples:
  envv recover                        # type the 24 words at the hidden prompt
  envv recover -o ~/new-keys.txt < phrase.txt";

/// Rebuild your identity from its 24-word recovery phrase (from `envv keygen --phrase`).
///
/// Reads the phrase on stdin (a hidden prompt on a terminal), checks every word and the
/// checksum, and writes the identity with mode 0600 to ~/.config/envv/keys.txt or -o FILE.
/// Never overwrites a file. Prints the public key, which matches your membership.
#[derive(Args, Debug)]
#[command(after_long_help = RECOVER_EXAMPLES)]
pub struct RecoverArgs {
    /// Write the identity here instead of the default key file.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn recover(_ctx: &Ctx, a: RecoverArgs) -> CliResult<i32> {
    let path = match a.output {
        Some(p) => p,
        None => default_key_path()?,
    };
    if path.exists() || path.is_symlink() {
        return Err(CliError::usage(format!(
            "{} already exists; envv never overwrites a key file",
            path.display()
        ))
        .hint("pass -o FILE for the recovered identity"));
    }
    let typed = if super::stdin_is_tty() {
        Zeroizing::new(rpassword::prompt_password(
            "recovery phrase (24 words, hidden): ",
        )?)
    } else {
        let mut buf = Zeroizing::new(Vec::new());
        std::io::Read::read_to_end(&mut std::io::stdin().take(4096), &mut buf)?;
        let text = std::str::from_utf8(&buf)
            .map_err(|_| CliError::usage("the phrase on stdin is not text"))?;
        Zeroizing::new(text.to_string())
    };
    let identity = phrase::identity_of(&typed)?;
    let public = keys::write_identity(&path, &identity, "recovered")?;
    eprintln!(
        "wrote the recovered identity to {} (mode 0600)",
        path.display()
    );
    println!("{public}");
    Ok(0)
}

const WHOAMI_EXAMPLES: &str = "\
Example:
  envv whoami --json";

/// Show your public keys and which members of this repository's policy they are.
#[derive(Args, Debug)]
#[command(after_long_help = WHOAMI_EXAMPLES)]
pub struct WhoamiArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn whoami(ctx: &Ctx, a: WhoamiArgs) -> CliResult<i32> {
    let mut ring = ctx.keyring();
    let publics = ring.all_publics();
    let policy = ctx.ws.policy().ok().flatten();
    let member_of = |p: &str| -> Vec<String> {
        policy
            .map(|pf| {
                pf.policy
                    .members
                    .iter()
                    .filter(|(_, m)| keys::same_recipient(&m.key, p))
                    .map(|(n, _)| n.clone())
                    .collect()
            })
            .unwrap_or_default()
    };
    if a.json {
        let v: Vec<serde_json::Value> = publics
            .iter()
            .map(|(p, src)| serde_json::json!({ "public_key": p, "source": src, "members": member_of(p) }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(if publics.is_empty() { 1 } else { 0 });
    }
    if publics.is_empty() {
        eprintln!("no identity found (looked at --identity, $ENVV_AGE_KEY, $ENVV_AGE_KEY_FILE, $SOPS_AGE_KEY*, ~/.config/envv/keys.txt, ~/.config/sops/age/keys.txt, ~/.ssh)");
        eprintln!("  hint: `envv keygen` creates one");
        for p in &ring.problems {
            eprintln!("  problem: {p}");
        }
        return Ok(1);
    }
    for (p, src) in &publics {
        let names = member_of(p);
        let who = if names.is_empty() {
            if policy.is_some() {
                "not a member of this repository (`envv join`)".to_string()
            } else {
                "no policy here".to_string()
            }
        } else {
            format!("member {}", names.join(", "))
        };
        println!("{p}\t{src}\t{who}");
    }
    Ok(0)
}
