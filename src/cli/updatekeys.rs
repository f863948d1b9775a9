//! `envv updatekeys` and `envv rotate`: make files match the policy, and renew data keys.

use super::CliResult;
use clap::Args;

use super::member::report;
use super::{confirm, Ctx};
use crate::error::Error;
use crate::policy::membership::{Action, Mode, Transaction};
use crate::policy::{Policy, POLICY_FILE};

const UPDATEKEYS_EXAMPLES: &str = "\
Example:
  envv updatekeys --check";

/// Make every encrypted file's recipients match .sops.yaml (after a hand edit or a git pull).
///
/// Readers added get the data key wrapped for them (values untouched); readers removed or
/// expired cause a rotation (new data key, all values re-encrypted). A reader you have not
/// confirmed in this clone is listed first (key, and the commit that made them a reader): the
/// change goes on only with --yes or a yes typed on a terminal. --check changes nothing, needs
/// no identity, lists each file out of sync with the commit that added each missing reader,
/// and exits 1 (for CI and pre-commit).
#[derive(Args, Debug)]
#[command(after_long_help = UPDATEKEYS_EXAMPLES)]
pub struct UpdatekeysArgs {
    /// Only report files out of sync; exit 1 when there is one.
    #[arg(long)]
    pub check: bool,
}

const ROTATE_EXAMPLES: &str = "\
Example:
  envv rotate -e production";

/// Give the file(s) a new data key: every value re-encrypted, wrapped for the policy's readers.
///
/// Without -e/-f every environment file is rotated. Readers you have not confirmed are listed
/// first and need --yes (or a yes on a terminal), as for `envv updatekeys`.
#[derive(Args, Debug)]
#[command(after_long_help = ROTATE_EXAMPLES)]
pub struct RotateArgs {}

/// The environments selected by `-e`/`-f`, or all (`None`).
fn selected(ctx: &Ctx, policy: &Policy) -> crate::Result<Option<Vec<String>>> {
    if let Some(f) = &ctx.file {
        let rel = ctx.ws.rel(f);
        let env = policy
            .env_for_file(&rel)
            .ok_or_else(|| Error::UndeclaredFile {
                file: rel.clone(),
                policy: POLICY_FILE.to_string(),
            })?;
        return Ok(Some(vec![env.to_string()]));
    }
    if let Some(e) = &ctx.env {
        if !policy.environments.contains_key(e) {
            return Err(Error::UnknownEnv {
                env: e.clone(),
                declared: policy.environments.keys().cloned().collect(),
            });
        }
        return Ok(Some(vec![e.clone()]));
    }
    Ok(None)
}

pub fn updatekeys(ctx: &Ctx, a: UpdatekeysArgs) -> CliResult<i32> {
    if a.check {
        let s = Transaction::read_only(&ctx.ws.root)?;
        let only = selected(ctx, &s.policy)?;
        let plan = s.plan(&s.policy, Mode::Sync, only.as_deref())?;
        let mut out = 0;
        if only.is_none() && s.creation_rules_stale() {
            out += 1;
            println!("{POLICY_FILE}: creation_rules do not match the envv: section (edited by hand?); `envv updatekeys` regenerates them");
        }
        let rule = s.policy.crypt_rule();
        for c in plan.files.iter().filter(|c| c.path.is_file()) {
            match crate::store::file::EnvFile::open(&c.path, &c.name) {
                Ok(f) => {
                    if let Some(conflict) = f.rule_conflict(&rule) {
                        out += 1;
                        println!("{} ({}): {}", c.name, c.env, conflict.message());
                        println!("  fix: {}", conflict.fix(&c.name));
                    }
                }
                Err(e) => {
                    out += 1;
                    println!("{} ({}): {e}", c.name, c.env);
                }
            }
        }
        for c in plan.changing() {
            out += 1;
            println!(
                "{} ({}): recipients differ from {POLICY_FILE}",
                c.name, c.env
            );
            if !c.added.is_empty() {
                println!("  missing: {}  (a re-wrap adds them)", c.added.join(", "));
                let queries: Vec<(String, String)> = c
                    .missing_recipients()
                    .into_iter()
                    .map(|r| (c.env.clone(), r.text.clone()))
                    .collect();
                let intros = crate::policy::trust::introductions(&s.root, &queries);
                for ((_, key), intro) in queries.iter().zip(intros) {
                    let who = s.label(&s.policy, key);
                    match intro {
                        Some(i) => println!(
                            "    {who} ({}) made a reader in commit {} by {} on {}",
                            crate::keys::fingerprint(key),
                            i.short(),
                            i.author,
                            i.date()
                        ),
                        None => println!(
                            "    {who} ({}) not committed: only the working tree's {POLICY_FILE} names them",
                            crate::keys::fingerprint(key)
                        ),
                    }
                }
            }
            if !c.removed.is_empty() {
                println!(
                    "  extra:   {}  (their removal rotates the data key)",
                    c.removed.join(", ")
                );
            }
        }
        if out > 0 {
            eprintln!("{out} file(s) out of sync with {POLICY_FILE}: a reader of them runs `envv updatekeys`");
            return Ok(1);
        }
        let n = plan
            .files
            .iter()
            .filter(|c| c.action == Action::Unchanged)
            .count();
        eprintln!("all {n} encrypted file(s) match {POLICY_FILE}");
        return Ok(0);
    }
    let mut s = ctx.transaction()?;
    let only = selected(ctx, &s.policy)?;
    let policy = s.policy.clone();
    let plan = s.plan(&policy, Mode::Sync, only.as_deref())?;
    let stale = s.creation_rules_stale();
    if plan.changing().next().is_none() && !stale {
        eprintln!("every file already matches {POLICY_FILE}; nothing to do");
        return Ok(0);
    }
    let confirmed = confirm::confirm(ctx, &policy, &confirm::grants_of(&plan), &[])?;
    if let Err(e) = s.apply(&plan, stale.then_some(&policy), &mut ctx.keyring()) {
        eprintln!("nothing was changed");
        return Err(e.into());
    }
    confirmed.settle(ctx, &plan, None, &policy);
    if stale {
        eprintln!("regenerated the creation_rules of {POLICY_FILE} from its envv: section");
    }
    report(&plan, false);
    Ok(0)
}

pub fn rotate(ctx: &Ctx, _a: RotateArgs) -> CliResult<i32> {
    let mut s = ctx.transaction()?;
    let only = selected(ctx, &s.policy)?;
    let policy = s.policy.clone();
    let plan = s.plan(&policy, Mode::RotateAll, only.as_deref())?;
    if plan.changing().next().is_none() {
        eprintln!("no encrypted file to rotate");
        return Ok(0);
    }
    let confirmed = confirm::confirm(ctx, &policy, &confirm::grants_of(&plan), &[])?;
    if let Err(e) = s.apply(&plan, None, &mut ctx.keyring()) {
        eprintln!("nothing was changed");
        return Err(e.into());
    }
    confirmed.settle(ctx, &plan, None, &policy);
    report(&plan, false);
    Ok(0)
}
