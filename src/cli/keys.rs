//! `envv keygen` and `envv whoami`.

use std::path::PathBuf;

use clap::Args;

use super::Ctx;
use crate::keys;

/// Create your age identity (X25519) in ~/.config/envv/keys.txt (mode 0600); never overwrites.
///
/// Prints the public key: give it to a teammate, or use it with `envv init` / `envv join`.
///
/// Example: envv keygen
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct KeygenArgs {
    /// Write the identity here instead of the default key file.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn keygen(_ctx: &Ctx, a: KeygenArgs) -> anyhow::Result<i32> {
    let path = match a.output {
        Some(p) => p,
        None => keys::default_key_file()
            .ok_or_else(|| anyhow::anyhow!("cannot find your home folder; pass --output FILE"))?,
    };
    let public = keys::keygen(&path)?;
    eprintln!("wrote a new identity to {} (mode 0600)", path.display());
    println!("{public}");
    Ok(0)
}

/// Show your public keys and which members of this repository's policy they are.
///
/// Example: envv whoami --json
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct WhoamiArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn whoami(ctx: &Ctx, a: WhoamiArgs) -> anyhow::Result<i32> {
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
