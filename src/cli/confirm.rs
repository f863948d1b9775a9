//! Asking before a data key is wrapped for a recipient the person running envv has not
//! confirmed (`crate::policy::trust`): who they are, their key, and the commit that made them a reader.
//! Every command that wraps for recipients taken from the policy goes through [`confirm`].

use std::io::Write;

use super::Ctx;
use crate::error::Error;
use crate::keys::{fingerprint, same_recipient};
use crate::policy::membership::Plan;
use crate::policy::trust::{introductions, TrustStore};
use crate::policy::{Policy, POLICY_FILE};

/// A recipient a command would wrap a file's data key for.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub env: String,
    pub file: String,
    pub key: String,
}

/// The grants of a plan: per file, the recipients it gives key material they could not open
/// before ([`crate::policy::membership::FileChange::new_recipients`]: all of them on a rotation).
pub(crate) fn grants_of(plan: &Plan) -> Vec<Grant> {
    let mut out = Vec::new();
    for c in &plan.files {
        for r in c.new_recipients() {
            out.push(Grant {
                env: c.env.clone(),
                file: c.name.clone(),
                key: r.text.clone(),
            });
        }
    }
    out
}

/// Confirmed recipients to remember once the change is written.
#[must_use]
pub(crate) struct Confirmed(Vec<(String, String)>);

impl Confirmed {
    /// Writes them to this clone's trust file; a failure is a warning (the change is made).
    pub fn remember(self, ctx: &Ctx) {
        if self.0.is_empty() {
            return;
        }
        let mut store = TrustStore::open(&ctx.ws.root);
        if let Err(e) = store.record(&self.0) {
            eprintln!("warning: could not remember the confirmed readers: {e}");
        }
    }

    /// [`Confirmed::remember`], after which the readers that are gone (removed from a file by
    /// `plan`, or readers under `old`, and readers of nothing under `new`) are forgotten: a
    /// commit that brings a removed or expired member back is asked about again.
    pub fn settle(self, ctx: &Ctx, plan: &Plan, old: Option<&Policy>, new: &Policy) {
        let readers: Vec<String> = new
            .environments
            .keys()
            .flat_map(|e| new.recipients(e))
            .map(|r| r.text)
            .collect();
        let mut gone: Vec<String> = plan
            .files
            .iter()
            .flat_map(|c| c.dropped_recipients())
            .collect();
        if let Some(old) = old {
            gone.extend(
                old.environments
                    .keys()
                    .flat_map(|e| old.recipients(e))
                    .map(|r| r.text),
            );
        }
        gone.retain(|k| !readers.iter().any(|r| same_recipient(r, k)));
        self.remember(ctx);
        if gone.is_empty() {
            return;
        }
        let mut store = TrustStore::open(&ctx.ws.root);
        if let Err(e) = store.forget(&gone) {
            eprintln!("warning: could not update the confirmed readers: {e}");
        }
    }
}

/// Checks that every grant goes to a confirmed recipient: one `named` by this command with
/// their key (`member add NAME KEY`, or a name whose key this clone confirmed), one of the
/// caller's own identities, or one confirmed before in this clone. A recipient a file lists
/// is no confirmation: [`grants_of`] holds them too when the change makes new key material.
/// The others are listed with their key and the commit that made them readers; the command
/// goes on for them only with `--yes` or a yes typed on a terminal, else nothing is changed
/// and the error exits 1.
pub(crate) fn confirm(
    ctx: &Ctx,
    policy: &Policy,
    grants: &[Grant],
    named: &[(String, String)],
) -> crate::Result<Confirmed> {
    let mut remember: Vec<(String, String)> = named.to_vec();
    let is_named = |k: &str| named.iter().any(|(_, n)| same_recipient(n, k));
    let store = TrustStore::open(&ctx.ws.root);
    let mut open: Vec<&Grant> = grants
        .iter()
        .filter(|g| !is_named(&g.key) && !store.contains(&g.key))
        .collect();
    if !open.is_empty() {
        let mine: Vec<String> = ctx
            .keyring()
            .all_publics()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        open.retain(|g| !mine.iter().any(|m| same_recipient(m, &g.key)));
    }
    if open.is_empty() {
        return Ok(Confirmed(remember));
    }
    let name_of = |k: &str| {
        policy
            .members
            .iter()
            .chain(policy.pending.iter())
            .find(|(_, m)| same_recipient(&m.key, k))
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| "(no member name)".into())
    };
    let queries: Vec<(String, String)> = open
        .iter()
        .map(|g| (g.env.clone(), g.key.clone()))
        .collect();
    let intros = introductions(&ctx.ws.root, &queries);
    eprintln!(
        "{} not confirmed by you in this clone; envv would give them the data key of:",
        if open.len() == 1 {
            "this reader is"
        } else {
            "these readers are"
        }
    );
    let mut first_commit = None;
    for (g, intro) in open.iter().zip(&intros) {
        let origin = match intro {
            Some(i) => {
                first_commit.get_or_insert_with(|| i.short().to_string());
                format!(
                    "made a reader in commit {} by {} on {}",
                    i.short(),
                    i.author,
                    i.date()
                )
            }
            None => format!("not committed ({POLICY_FILE} in the working tree)"),
        };
        let name = name_of(&g.key);
        eprintln!(
            "  {name}  {}  {} ({})  {origin}",
            fingerprint(&g.key),
            g.file,
            g.env
        );
        if let Some(old) = store.key_of(&name).filter(|k| !same_recipient(k, &g.key)) {
            eprintln!(
                "    {name}'s key changed from {} to {}",
                fingerprint(old),
                fingerprint(&g.key)
            );
        }
    }
    let yes = ctx.yes || (super::stdin_is_tty() && ask("give them access? [y/N] "));
    if !yes {
        let look = match &first_commit {
            Some(c) => format!("`git show {c} -- {POLICY_FILE}` shows who added them"),
            None => format!("`git diff -- {POLICY_FILE}` shows the change"),
        };
        return Err(Error::CheckFailed(format!(
            "nothing was changed: {} not confirmed; {look}; rerun with --yes once you know them (or remove them from {POLICY_FILE})",
            if open.len() == 1 { "a reader is" } else { "readers are" }
        )));
    }
    for g in open {
        if !remember.iter().any(|(_, k)| same_recipient(k, &g.key)) {
            remember.push((name_of(&g.key), g.key.clone()));
        }
    }
    Ok(Confirmed(remember))
}

/// [`confirm`] for a file about to be created for `recipients`: none of them reads it yet.
pub(crate) fn confirm_new_file(
    ctx: &Ctx,
    t: &crate::workspace::Target,
    recipients: &[crate::keys::Recipient],
) -> crate::Result<Confirmed> {
    let policy = &ctx.ws.require_policy()?.policy;
    let grants: Vec<Grant> = recipients
        .iter()
        .map(|r| Grant {
            env: t.env.clone().unwrap_or_default(),
            file: t.name.clone(),
            key: r.text.clone(),
        })
        .collect();
    confirm(ctx, policy, &grants, &[])
}

/// Members named on the command line (not groups) whose key in `policy` is the one this clone
/// confirmed under that name: `(name, key)`. A name alone confirms nothing: the policy that
/// maps it to a key may come from anyone who can push, who may have swapped the key.
pub(crate) fn named_members(ctx: &Ctx, policy: &Policy, names: &[String]) -> Vec<(String, String)> {
    let store = TrustStore::open(&ctx.ws.root);
    names
        .iter()
        .filter_map(|n| {
            let key = &policy.members.get(n)?.key;
            let confirmed = store.key_of(n)?;
            same_recipient(confirmed, key).then(|| (n.clone(), key.clone()))
        })
        .collect()
}

pub(super) fn ask(question: &str) -> bool {
    eprint!("{question}");
    std::io::stderr().flush().ok();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).ok();
    matches!(line.trim(), "y" | "Y" | "yes")
}
