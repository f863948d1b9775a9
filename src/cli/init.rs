//! `envv init`: the policy with you as its first member, `.gitignore` entries, and the offer to
//! encrypt plaintext `.env*` files already in the folder.

use super::{CliError, CliResult};
use std::io::Write;

use clap::Args;

use super::Ctx;
use crate::error::IoContext;
use crate::keys;
use crate::policy::{self, Environment, Policy, PolicyFile, DEFAULT_GROUP};
use crate::store::file::EnvFile;

const INIT_EXAMPLES: &str = "\
Example:
  envv init --name alice --encrypt";

/// Set up envv here: a .sops.yaml policy with you as its first member.
///
/// Writes .sops.yaml, adds the .env.local files to .gitignore, and offers to encrypt existing
/// plaintext .env files.
///
/// Your member name comes from --name, else git's user.name, else $USER. Without a key, one is
/// generated (as `envv keygen`). When stdin is not a terminal nothing is asked: pass --encrypt
/// to encrypt existing files.
#[derive(Args, Debug)]
#[command(after_long_help = INIT_EXAMPLES)]
pub struct InitArgs {
    /// Your member name.
    #[arg(long)]
    pub name: Option<String>,
    /// Encrypt existing plaintext .env files without asking.
    #[arg(long)]
    pub encrypt: bool,
    /// Replace a .sops.yaml that has no envv: section (its creation_rules are regenerated).
    #[arg(long)]
    pub force: bool,
}

const IGNORE_LINES: [&str; 2] = [".env.local", ".env.*.local"];

pub fn run(mut ctx: Ctx, a: InitArgs) -> CliResult<i32> {
    // init works at the git root (or here), not at some parent that has a policy of its own.
    let root = crate::git::open(&ctx.ws.cwd)
        .and_then(|r| r.workdir().map(|p| p.to_path_buf()))
        .unwrap_or_else(|| ctx.ws.cwd.clone());
    ctx.ws.root = root.clone();
    let policy_path = ctx.ws.policy_path();
    if policy_path.exists() {
        let bytes = std::fs::read(&policy_path).at(&policy_path)?;
        match policy::parse(".sops.yaml", &bytes) {
            Ok(_) => {
                eprintln!(
                    "{} already has an envv policy; nothing to do (`envv status` shows it)",
                    policy_path.display()
                );
                return Ok(0);
            }
            Err(crate::Error::Policy { msg, .. })
                if msg.contains("no envv: section") && a.force => {}
            Err(crate::Error::Policy { msg, .. }) if msg.contains("no envv: section") => {
                return Err(CliError::usage(format!(
                    "{} exists without an envv: section",
                    policy_path.display()
                ))
                .hint("`envv init --force` rewrites it (its creation_rules are regenerated from the policy)"));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut ring = ctx.keyring();
    let key = match keys::my_public_key(&mut ring) {
        Some(k) => k,
        None => {
            let path = keys::default_key_file()
                .ok_or_else(|| CliError::usage("cannot find your home folder"))?;
            let k = keys::keygen(&path)?;
            eprintln!(
                "no identity found: created {} (public key {k})",
                path.display()
            );
            k
        }
    };
    let name = member_name(&ctx, a.name.as_deref())?;
    let mut pf = PolicyFile {
        path: policy_path.clone(),
        policy: Policy::initial(&name, &key),
    };

    // Existing plaintext files.
    let mut plain_files = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&root) {
        let mut names: Vec<String> = rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for n in names {
            if !(n == ".env" || n.starts_with(".env."))
                || n.ends_with(".local")
                || n.ends_with(".example")
                || n.ends_with(".sample")
                || n.ends_with(".template")
                || n.ends_with(".envv-tmp")
                || n.ends_with(crate::store::proposals::SUFFIX)
            {
                continue;
            }
            // A link that leads out of the tree (or a device) is not this project's file.
            let Ok(path) = crate::os::paths::resolve(&root, &n) else {
                continue;
            };
            if !path.is_file() {
                continue;
            }
            if let Ok(f) = EnvFile::open(&path, &n) {
                if !f.is_encrypted() {
                    plain_files.push(n);
                }
            }
        }
    }
    let encrypt = if plain_files.is_empty() {
        false
    } else if a.encrypt {
        true
    } else if super::stdin_is_tty() {
        eprint!(
            "encrypt {} in place for you now? [y/N] ",
            plain_files.join(", ")
        );
        std::io::stderr().flush().ok();
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).ok();
        matches!(line.trim(), "y" | "Y" | "yes")
    } else {
        false
    };
    if encrypt {
        for n in &plain_files {
            if let Some(env) = n.strip_prefix(".env.") {
                pf.policy
                    .environments
                    .entry(env.to_string())
                    .or_insert_with(|| Environment {
                        file: n.clone(),
                        readers: vec![DEFAULT_GROUP.into()],
                        ..Default::default()
                    });
            }
        }
    }
    pf.save()?;
    // The `public` patterns written here are this user's own.
    super::public::written_by_user(&pf.policy.public).remember(&ctx);
    eprintln!(
        "wrote {} with you ({name}, {}) as first member of group {DEFAULT_GROUP}",
        policy_path.display(),
        keys::short_key(&key)
    );
    ensure_gitignore(&root)?;
    ctx.ws.set_policy(pf);
    if encrypt {
        for n in &plain_files {
            let t = ctx
                .ws
                .target(None, Some(std::path::Path::new(&root.join(n))))?;
            super::crypt::encrypt_plain_file(&ctx, &t)?;
            eprintln!("encrypted {n} for {}", ctx.ws.readers(&t).join(", "));
        }
    } else if !plain_files.is_empty() {
        eprintln!("plaintext files found, not encrypted yet:");
        for n in &plain_files {
            match n.strip_prefix(".env.") {
                Some(env) => eprintln!("  {n}: `envv env add {env} && envv encrypt {n}`"),
                None => eprintln!("  {n}: `envv encrypt {n}`"),
            }
        }
    }
    eprintln!("environment default (.env) is read by: {name}");
    eprintln!("next: `envv set KEY` to add a secret, `envv hook install` to guard commits");
    Ok(0)
}

fn member_name(ctx: &Ctx, given: Option<&str>) -> CliResult<String> {
    if let Some(n) = given {
        return Ok(n.to_string());
    }
    let from_git = crate::git::config_string(&ctx.ws.root, "user.name")
        .map(|n| policy::slug(&n))
        .filter(|s| !s.is_empty());
    if let Some(n) = from_git {
        return Ok(n);
    }
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_default();
    let s = policy::slug(&user);
    if s.is_empty() {
        return Err(CliError::usage("cannot tell your name").hint("pass --name NAME"));
    }
    Ok(s)
}

/// Adds the `.local` patterns to `.gitignore` (creating it), once.
pub fn ensure_gitignore(root: &std::path::Path) -> crate::Result<()> {
    let path = root.join(".gitignore");
    let existing = std::fs::read_to_string(&path).unwrap_or_default();
    let have: Vec<&str> = existing.lines().map(str::trim).collect();
    let missing: Vec<&str> = IGNORE_LINES
        .iter()
        .copied()
        .filter(|l| !have.contains(l))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut text = existing.clone();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("# personal plaintext overrides (envv)\n");
    for m in missing {
        text.push_str(m);
        text.push('\n');
    }
    crate::os::files::write_atomic(&path, text.as_bytes(), 0o644)
}
