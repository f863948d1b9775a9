//! `envv import`: bring the secrets of a dotenvx, sops or plaintext dotenv file into an
//! environment, through the same write path as `envv set`.

use super::CliResult;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use super::Ctx;
use crate::error::Error;
use crate::format::import::{self, Format};
use crate::secret::Secret;

const IMPORT_EXAMPLES: &str = "\
Examples:
  mv .env .env.dotenvx && envv import .env.dotenvx
  envv import -e production secrets.prod.yaml --from sops
  envv import old.env --overwrite";

/// Import secrets from a dotenvx, sops (JSON, YAML, dotenv) or plaintext dotenv file.
///
/// The values are encrypted for the readers of the environment (`-e ENV`, default `.env`). A key
/// that is already set to another value needs --overwrite. Only key names are printed.
/// dotenvx keys come from DOTENV_PRIVATE_KEY[_ENV] or the .env.keys file beside FILE; sops files
/// open with your identities and their MAC is checked.
#[derive(Args, Debug)]
#[command(after_long_help = IMPORT_EXAMPLES)]
pub struct ImportArgs {
    /// The file to import.
    #[arg(value_name = "FILE")]
    pub source: PathBuf,
    /// Its format (detected when not given).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub from: Option<FromArg>,
    /// Replace keys that are already set to other values.
    #[arg(long)]
    pub overwrite: bool,
}

/// `--from` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FromArg {
    Dotenvx,
    Sops,
    Dotenv,
}

impl From<FromArg> for Format {
    fn from(f: FromArg) -> Format {
        match f {
            FromArg::Dotenvx => Format::Dotenvx,
            FromArg::Sops => Format::Sops,
            FromArg::Dotenv => Format::Dotenv,
        }
    }
}

pub fn import(ctx: &Ctx, a: ImportArgs) -> CliResult<i32> {
    let t = ctx.target()?;
    let source_abs = crate::workspace::normalize(&if a.source.is_absolute() {
        a.source.clone()
    } else {
        std::env::current_dir()?.join(&a.source)
    });
    let source_name = ctx.ws.rel(&source_abs);
    if source_abs == t.path {
        return Err(Error::usage_hint(format!("{source_name} is the file of the environment being imported into"), format!("rename it first (`mv {source_name} {source_name}.old`), then `envv import {source_name}.old`"))
        .into());
    }
    let mut ring = ctx.keyring();
    let env = |name: &str| std::env::var(name).ok();
    let got = import::read(
        &source_abs,
        &source_name,
        a.from.map(Format::from),
        &mut ring,
        &env,
    )?;
    if got.pairs.is_empty() {
        return Err(Error::usage(format!("{source_name} has no keys to import")).into());
    }
    let overwrite = a.overwrite;
    let pairs = got.pairs;
    let target = t.name.clone();
    let outcome = super::values::update(ctx, &t, true, move |f| {
        let mut out = Outcome::default();
        let mut conflicts = Vec::new();
        for (k, v) in &pairs {
            match f.get(k) {
                Some(old) if old == v => out.unchanged.push(k.clone()),
                Some(_) if !overwrite => conflicts.push(k.clone()),
                Some(_) => out.replaced.push(k.clone()),
                None => out.added.push(k.clone()),
            }
        }
        if !conflicts.is_empty() {
            return Err(Error::refused_hint(
                format!(
                    "{} already set in {target} to other values: nothing imported",
                    conflicts.join(", ")
                ),
                "`--overwrite` replaces them; `envv diff` or `envv get` compares",
            ));
        }
        let mut changed = false;
        for (k, v) in pairs {
            let v: Secret = v;
            changed |= f.set(&k, v)?;
        }
        Ok((changed, out))
    })?;
    report(&source_name, &t.name, got.format, &outcome, &got.skipped);
    // dotenvx and dotenv loaders with expansion would have replaced `${VAR}`; sops never does.
    if !got.has_dollar.is_empty() && got.format != Format::Sops {
        eprintln!(
            "note: {} contain `$`: envv keeps values literally (dotenvx expands `${{VAR}}`; `envv exec --expand` does too)",
            got.has_dollar.join(", ")
        );
    }
    advise(ctx, &source_abs, &source_name, got.format);
    Ok(0)
}

#[derive(Default)]
struct Outcome {
    added: Vec<String>,
    replaced: Vec<String>,
    unchanged: Vec<String>,
}

fn report(source: &str, target: &str, format: Format, o: &Outcome, skipped: &[String]) {
    let n = o.added.len() + o.replaced.len();
    eprintln!(
        "imported {n} key{} from {source} ({}) into {target}",
        if n == 1 { "" } else { "s" },
        format.name()
    );
    for (what, keys) in [
        ("added", &o.added),
        ("replaced", &o.replaced),
        ("unchanged", &o.unchanged),
    ] {
        if !keys.is_empty() {
            eprintln!("  {what}: {}", keys.join(", "));
        }
    }
    if !skipped.is_empty() {
        eprintln!(
            "  skipped: {} (dotenvx public key, not a secret)",
            skipped.join(", ")
        );
    }
}

/// What to do with the source now: delete it, and find its plaintext in git history.
fn advise(ctx: &Ctx, source: &Path, name: &str, format: Format) {
    let keys = source.parent().map(|d| d.join(".env.keys"));
    let also_keys = format == Format::Dotenvx && keys.as_ref().is_some_and(|k| k.is_file());
    eprintln!(
        "next: check with `envv ls`, then delete {name}{}",
        if also_keys {
            " and the .env.keys beside it (it holds the private keys)"
        } else {
            ""
        }
    );
    if format != Format::Dotenv {
        return;
    }
    if let Some(commit) = commit_with(&ctx.ws.root, source) {
        eprintln!(
            "warning: {name} was committed in plain text (in commit {commit}): its values stay in git history; rotate them at their providers, and `envv scan --history` finds where they appear"
        );
    }
}

/// A commit reachable from any ref that contains `path`, if the file was ever committed.
fn commit_with(root: &Path, path: &Path) -> Option<String> {
    let repo = crate::git::open(root)?;
    let workdir = repo.workdir()?.canonicalize().ok()?;
    let abs = path.canonicalize().ok()?;
    let rel = abs.strip_prefix(&workdir).ok()?.to_path_buf();
    crate::git::history::commit_holding(&repo, &rel).map(|oid| oid.to_string()[..8].to_string())
}
