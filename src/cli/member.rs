//! `envv member add|rm|ls|approve|deny` and `envv join`: who can read, and the re-encryption
//! every change of it needs (planned and applied by `crate::policy::membership`).

use super::CliResult;
use clap::{Args, Subcommand};

use super::{confirm, Ctx};
use crate::error::Error;
use crate::keys::{self, same_recipient, short_key};
use crate::policy::membership::{self, Action, Mode, Plan, Transaction};
use crate::policy::{self, Member, Policy, DEFAULT_GROUP, POLICY_FILE};

const MEMBER_EXAMPLES: &str = "\
Example:
  envv member add bob age1... --to ops";

/// Manage who can read: add, remove, list members; approve or deny join requests.
#[derive(Args, Debug)]
#[command(after_long_help = MEMBER_EXAMPLES)]
pub struct MemberArgs {
    #[command(subcommand)]
    pub command: MemberCommand,
}

#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    Add(AddArgs),
    Rm(RmArgs),
    Ls(LsArgs),
    Approve(ApproveArgs),
    Deny(DenyArgs),
}

const ADD_EXAMPLES: &str = "\
Example:
  envv member add bob \"ssh-ed25519 AAAA... bob@laptop\" --to ops,staging";

/// Add a member and wrap the data key of every file they can now read for their key.
///
/// No value is re-encrypted: only recipient entries are added. You must be able to decrypt each
/// affected file. Without --to the member joins the group `team`. --to takes groups or
/// environments (repeatable or comma-separated). Only this member is added: other differences
/// between the files and .sops.yaml (a hand edit, a pull) are left alone and listed for
/// `envv updatekeys`.
#[derive(Args, Debug)]
#[command(after_long_help = ADD_EXAMPLES)]
pub struct AddArgs {
    /// Member name (letters, digits, - _ .).
    pub name: String,
    /// Public key: age1..., "ssh-ed25519 ...", "ssh-rsa ..." or an age plugin recipient.
    pub key: String,
    /// Groups or environments the member joins (default: team).
    #[arg(long = "to", value_delimiter = ',', value_name = "GROUP|ENV")]
    pub to: Vec<String>,
    /// Email, for the policy's readers.
    #[arg(long)]
    pub email: Option<String>,
    /// Last day of access (YYYY-MM-DD); `envv updatekeys` removes the member from then on.
    #[arg(long)]
    pub expires: Option<String>,
}

const RM_EXAMPLES: &str = "\
Example:
  envv member rm bob";

/// Remove a member: every file they could read gets a new data key (all values re-encrypted),
/// and the keys they could read are listed: rotate those at their providers.
///
/// Removing yourself, or the last reader of an environment, is refused unless --force (with
/// --force an environment nobody can read any more is removed from the policy and its file
/// deleted; it stays in git history).
#[derive(Args, Debug)]
#[command(after_long_help = RM_EXAMPLES)]
pub struct RmArgs {
    /// Member (or pending request) to remove.
    pub name: String,
    /// Only drop their key entries, keeping the data key (they may still hold it: weaker).
    #[arg(long)]
    pub no_rotate: bool,
    /// Allow removing yourself or the last reader of an environment.
    #[arg(long)]
    pub force: bool,
}

const LS_EXAMPLES: &str = "\
Example:
  envv member ls --json";

/// List members, their keys, groups, the environments each can read, expiry, and pending
/// join requests. Needs no identity.
#[derive(Args, Debug)]
#[command(after_long_help = LS_EXAMPLES)]
pub struct LsArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

const APPROVE_EXAMPLES: &str = "\
Example:
  envv member approve carol --to dev";

/// Approve a join request (`envv join`): the member is added as `member add` does, after you
/// confirm the key the request holds (compare it with the one they send you; `--yes` skips
/// the question).
#[derive(Args, Debug)]
#[command(after_long_help = APPROVE_EXAMPLES)]
pub struct ApproveArgs {
    /// Name of the pending request.
    pub name: String,
    /// Groups or environments the member joins (default: team).
    #[arg(long = "to", value_delimiter = ',', value_name = "GROUP|ENV")]
    pub to: Vec<String>,
}

const DENY_EXAMPLES: &str = "\
Example:
  envv member deny mallory";

/// Deny (drop) a join request.
#[derive(Args, Debug)]
#[command(after_long_help = DENY_EXAMPLES)]
pub struct DenyArgs {
    /// Name of the pending request.
    pub name: String,
}

const JOIN_EXAMPLES: &str = "\
Example:
  envv join --name carol";

/// Ask to join: adds your public key to `pending:` in .sops.yaml.
///
/// Commit it and open a pull request; a reader then runs `envv member approve NAME`. Your name comes from --name, else git's user.name, else $USER; your key from --key, else
/// your first identity (as `envv whoami` shows).
#[derive(Args, Debug)]
#[command(after_long_help = JOIN_EXAMPLES)]
pub struct JoinArgs {
    /// Your member name.
    #[arg(long)]
    pub name: Option<String>,
    /// The public key to join with (default: your identity's).
    #[arg(long)]
    pub key: Option<String>,
}

pub fn run(ctx: &Ctx, a: MemberArgs) -> CliResult<i32> {
    match a.command {
        MemberCommand::Add(a) => add(ctx, a),
        MemberCommand::Rm(a) => rm(ctx, a),
        MemberCommand::Ls(a) => ls(ctx, a),
        MemberCommand::Approve(a) => approve(ctx, a),
        MemberCommand::Deny(a) => deny(ctx, a),
    }
}

fn targets(policy: &Policy, to: Vec<String>) -> crate::Result<Vec<String>> {
    let to: Vec<String> = to
        .into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    if !to.is_empty() {
        return Ok(to);
    }
    if policy.groups.contains_key(DEFAULT_GROUP) {
        return Ok(vec![DEFAULT_GROUP.into()]);
    }
    Err(Error::usage(format!(
        "there is no group {DEFAULT_GROUP}: say where the member goes with --to GROUP|ENV"
    )))
}

fn add(ctx: &Ctx, a: AddArgs) -> CliResult<i32> {
    let mut s = ctx.transaction()?;
    let mut new = s.policy.clone();
    if new.members.contains_key(&a.name) {
        return Err(Error::usage_hint(
            format!("{} is already a member", a.name),
            format!("`envv member rm {}` first to change their key", a.name),
        )
        .into());
    }
    let r = membership::check_new_key(&new, &a.name, &a.key)?;
    if let Some(d) = &a.expires {
        if policy::parse_date(d).is_none() {
            return Err(Error::usage(format!("--expires {d}: not a date (YYYY-MM-DD)")).into());
        }
    }
    new.pending.remove(&a.name);
    new.members.insert(
        a.name.clone(),
        Member {
            key: r.text.clone(),
            email: a.email,
            expires: a.expires,
        },
    );
    let to = targets(&new, a.to)?;
    membership::add_to(&mut new, &a.name, &to)?;
    commit(
        ctx,
        &mut s,
        &new,
        Mode::Sync,
        &[(a.name.clone(), r.text.clone())],
    )?;
    eprintln!(
        "added {} ({}) to {}",
        a.name,
        keys::fingerprint(&r.text),
        to.join(", ")
    );
    Ok(0)
}

fn approve(ctx: &Ctx, a: ApproveArgs) -> CliResult<i32> {
    let mut s = ctx.transaction()?;
    let mut new = s.policy.clone();
    let Some(m) = new.pending.remove(&a.name) else {
        return Err(Error::usage(format!(
            "no pending request named {} (pending: {})",
            a.name,
            names(new.pending.keys())
        ))
        .into());
    };
    if new.members.contains_key(&a.name) {
        return Err(Error::usage_hint(
            format!("{} is already a member", a.name),
            format!("`envv member deny {}` drops the request", a.name),
        )
        .into());
    }
    let r = membership::check_new_key(&new, &a.name, &m.key)?;
    new.members.insert(a.name.clone(), m);
    let to = targets(&new, a.to)?;
    membership::add_to(&mut new, &a.name, &to)?;
    // The request's key comes from the policy (anyone who can push can swap it): the name
    // confirms nothing, the key is shown and asked about like any other new reader.
    let named = confirm::named_members(ctx, &new, std::slice::from_ref(&a.name));
    commit(ctx, &mut s, &new, Mode::Sync, &named)?;
    eprintln!(
        "approved {} ({}) into {}",
        a.name,
        keys::fingerprint(&r.text),
        to.join(", ")
    );
    Ok(0)
}

fn deny(ctx: &Ctx, a: DenyArgs) -> CliResult<i32> {
    let mut s = ctx.transaction()?;
    let mut new = s.policy.clone();
    if new.pending.remove(&a.name).is_none() {
        return Err(Error::usage(format!(
            "no pending request named {} (pending: {})",
            a.name,
            names(new.pending.keys())
        ))
        .into());
    }
    s.apply(&Plan::default(), Some(&new), &mut ctx.keyring())?;
    eprintln!(
        "denied the join request of {}; commit {POLICY_FILE}",
        a.name
    );
    Ok(0)
}

fn rm(ctx: &Ctx, a: RmArgs) -> CliResult<i32> {
    let mut s = ctx.transaction()?;
    let old = s.policy.clone();
    let mut new = old.clone();
    if !old.members.contains_key(&a.name) {
        if new.pending.remove(&a.name).is_some() {
            s.apply(&Plan::default(), Some(&new), &mut ctx.keyring())?;
            eprintln!("removed the pending request of {}", a.name);
            return Ok(0);
        }
        return Err(Error::usage(format!(
            "{} is not a member (members: {})",
            a.name,
            names(old.members.keys())
        ))
        .into());
    }
    let key = old.members[&a.name].key.clone();
    let mut ring = ctx.keyring();
    let mine = ring
        .all_publics()
        .iter()
        .any(|(p, _)| same_recipient(p, &key));
    if mine && !a.force {
        return Err(Error::usage(format!(
            "{} is you (one of your identities has this key): removing yourself locks you out; pass --force to do it anyway",
            a.name
        ))
        .into());
    }
    // What they could read: every environment file that lists their key (or that the policy
    // gave them, for files not created yet).
    let mut could_read: Vec<(String, String, Vec<String>)> = Vec::new();
    for (env, decl) in &old.environments {
        let secrets = membership::readable_secrets(&s.root, &old, env, &key)?;
        if secrets.is_some() || old.reader_names(env).contains(&a.name) {
            could_read.push((env.clone(), decl.file.clone(), secrets.unwrap_or_default()));
        }
    }
    membership::remove_member(&mut new, &a.name);
    let orphans = membership::newly_unreadable_envs(&old, &new);
    if !orphans.is_empty() {
        if !a.force {
            let list: Vec<String> = orphans
                .iter()
                .map(|e| format!("{e} ({})", old.environments[e].file))
                .collect();
            return Err(Error::refused_hint(format!("{} is the last current reader of {}", a.name, list.join(", ")), "add another reader first (`envv env readers ENV GROUP,...` or `envv member add ... --to ENV`), or pass --force to remove the environment and delete its file")
            .into());
        }
        membership::drop_envs(&mut new, &orphans);
        eprintln!(
            "warning: removing environment(s) {} (nobody left to read them); their files are deleted",
            orphans.join(", ")
        );
    }
    let mode = if a.no_rotate {
        Mode::NoRotate
    } else {
        Mode::Sync
    };
    if a.no_rotate {
        eprintln!(
            "warning: --no-rotate keeps the data keys: {} can still decrypt new values with a data key from an old revision; run `envv rotate` soon",
            a.name
        );
    }
    commit_with(ctx, &mut s, &new, mode, &[], &mut ring)?;
    eprintln!("removed {}", a.name);
    let any = could_read.iter().any(|(_, _, k)| !k.is_empty());
    if any {
        eprintln!(
            "{} could read these secrets: rotate them at their providers (new passwords, API keys):",
            a.name
        );
        for (env, file, secrets) in &could_read {
            if !secrets.is_empty() {
                println!("{env} ({file}): {}", secrets.join(", "));
            }
        }
    } else {
        eprintln!("{} could read no secrets yet", a.name);
    }
    Ok(0)
}

fn ls(ctx: &Ctx, a: LsArgs) -> CliResult<i32> {
    let p = &ctx.ws.require_policy()?.policy;
    if a.json {
        let members: Vec<serde_json::Value> = p
            .members
            .iter()
            .map(|(n, m)| {
                serde_json::json!({
                    "name": n, "key": m.key, "fingerprint": short_key(&m.key), "email": m.email,
                    "expires": m.expires, "expired": p.is_expired(n), "groups": p.groups_of(n), "environments": p.envs_of(n),
                })
            })
            .collect();
        let pending: Vec<serde_json::Value> = p
            .pending
            .iter()
            .map(|(n, m)| serde_json::json!({ "name": n, "key": m.key, "fingerprint": short_key(&m.key), "email": m.email }))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "members": members, "pending": pending, "groups": p.groups })
            )?
        );
        return Ok(0);
    }
    let w = p
        .members
        .keys()
        .chain(p.pending.keys())
        .map(String::len)
        .max()
        .unwrap_or(4)
        .max(4);
    for (n, m) in &p.members {
        let expiry = match &m.expires {
            Some(d) if p.is_expired(n) => {
                format!("  EXPIRED {d} (`envv updatekeys` removes their access)")
            }
            Some(d) => format!("  expires {d}"),
            None => String::new(),
        };
        let groups = p.groups_of(n);
        let envs = p.envs_of(n);
        println!(
            "{n:w$}  {}  groups: {}  reads: {}{expiry}",
            short_key(&m.key),
            if groups.is_empty() {
                "-".into()
            } else {
                groups.join(",")
            },
            if envs.is_empty() {
                "-".into()
            } else {
                envs.join(",")
            },
        );
    }
    if !p.pending.is_empty() {
        println!("pending (approve with `envv member approve NAME`):");
        for (n, m) in &p.pending {
            println!("{n:w$}  {}", short_key(&m.key));
        }
    }
    Ok(0)
}

pub fn join(ctx: &Ctx, a: JoinArgs) -> CliResult<i32> {
    let mut s = ctx.transaction()?;
    let mut new = s.policy.clone();
    let key = match a.key {
        Some(k) => k,
        None => {
            let mut ring = ctx.keyring();
            keys::my_public_key(&mut ring)
                .or_else(|| ring.all_publics().into_iter().next().map(|(p, _)| p))
                .ok_or_else(|| {
                    Error::usage_hint(
                        "no identity found",
                        "run `envv keygen` first (or pass --key)",
                    )
                })?
        }
    };
    if let Some((n, _)) = new
        .members
        .iter()
        .find(|(_, m)| same_recipient(&m.key, &key))
    {
        eprintln!("your key is already member {n}; nothing to do");
        return Ok(0);
    }
    let name = match a.name {
        Some(n) => n,
        None => {
            let from_git = crate::git::config_string(&ctx.ws.root, "user.name")
                .map(|n| policy::slug(&n))
                .filter(|s| !s.is_empty());
            let user = std::env::var("USER")
                .map(|u| policy::slug(&u))
                .unwrap_or_default();
            from_git
                .or(Some(user))
                .filter(|s| !s.is_empty())
                .ok_or_else(|| Error::usage_hint("cannot tell your name", "pass --name NAME"))?
        }
    };
    if new.members.contains_key(&name) || new.groups.contains_key(&name) {
        return Err(Error::usage_hint(
            format!("the name {name} is taken in {POLICY_FILE}"),
            "pass --name OTHER",
        )
        .into());
    }
    let r = membership::check_new_key(&new, &name, &key)?;
    new.pending.insert(
        name.clone(),
        Member {
            key: r.text.clone(),
            email: None,
            expires: None,
        },
    );
    s.apply(&Plan::default(), Some(&new), &mut ctx.keyring())?;
    eprintln!(
        "added {name} ({}) to pending in {POLICY_FILE}",
        keys::fingerprint(&r.text)
    );
    eprintln!("next: commit {POLICY_FILE} and open a pull request; a reader runs `envv member approve {name}`");
    Ok(0)
}

fn names<'a>(it: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = it.map(String::as_str).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// Plans and applies a policy change with the caller's identities, then reports it.
///
/// Only the change from the policy as it was to `new` is applied (see
/// [`Transaction::narrow`]); other differences between files and policy are left alone and
/// listed. Readers the command gives a data key to must be confirmed (`named` by the command,
/// or see [`confirm::confirm`]).
pub(crate) fn commit(
    ctx: &Ctx,
    s: &mut Transaction,
    new: &Policy,
    mode: Mode,
    named: &[(String, String)],
) -> crate::Result<Plan> {
    commit_with(ctx, s, new, mode, named, &mut ctx.keyring())
}

/// [`commit`] with a given keyring.
pub(crate) fn commit_with(
    ctx: &Ctx,
    s: &mut Transaction,
    new: &Policy,
    mode: Mode,
    named: &[(String, String)],
    ring: &mut keys::Keyring,
) -> crate::Result<Plan> {
    let mut approver = Confirmations {
        ctx,
        named,
        confirmed: None,
    };
    let plan = match s.change(new, mode, &mut approver, ring) {
        Ok(plan) => plan,
        Err(e) => {
            if approver.confirmed.is_some() {
                eprintln!("nothing was changed: not {POLICY_FILE}, not any file");
                if let crate::Error::NoIdentity { file, .. } = &e {
                    eprintln!("every affected file must be decrypted to re-wrap it: a reader of {file} runs this command");
                }
            }
            return Err(e);
        }
    };
    report(&plan, true);
    report_left_alone(s);
    Ok(plan)
}

/// A policy change's confirmations on the command line ([`confirm::confirm`]), remembered in
/// this clone's trust file once the change is written.
struct Confirmations<'a> {
    ctx: &'a Ctx,
    named: &'a [(String, String)],
    confirmed: Option<confirm::Confirmed>,
}

impl membership::Approver for Confirmations<'_> {
    fn approve(&mut self, new: &Policy, plan: &Plan) -> crate::Result<()> {
        self.confirmed = Some(confirm::confirm(
            self.ctx,
            new,
            &confirm::grants_of(plan),
            self.named,
        )?);
        Ok(())
    }

    fn applied(&mut self, plan: &Plan, old: &Policy, new: &Policy) {
        if let Some(c) = self.confirmed.take() {
            c.settle(self.ctx, plan, Some(old), new);
        }
    }
}

/// Lists files whose recipients still differ from the (just written) policy: drift this
/// command did not cause and did not touch.
fn report_left_alone(s: &Transaction) {
    let rows = s.left_alone();
    if rows.is_empty() {
        return;
    }
    eprintln!("left alone (not part of this change; review, then `envv updatekeys`):");
    for c in rows {
        let mut parts = Vec::new();
        if !c.added.is_empty() {
            parts.push(format!("not wrapped for {}", c.added.join(", ")));
        }
        if !c.removed.is_empty() {
            parts.push(format!("still wrapped for {}", c.removed.join(", ")));
        }
        eprintln!(
            "  {} ({}): {} as {POLICY_FILE} asks",
            c.name,
            c.env,
            parts.join("; ")
        );
    }
}

/// Prints what a plan did, then the resulting readers of each environment.
pub(crate) fn report(plan: &Plan, policy_written: bool) {
    for c in &plan.files {
        let what = match c.action {
            Action::Rewrap if c.removed.is_empty() => {
                format!("re-wrapped for {} (values unchanged)", c.added.join(", "))
            }
            Action::Rewrap => format!(
                "re-wrapped without {} (data key kept: not rotated)",
                c.removed.join(", ")
            ),
            Action::Rotate if c.removed.is_empty() && c.added.is_empty() => {
                "rotated: new data key, all values re-encrypted".into()
            }
            Action::Rotate => {
                let mut parts = Vec::new();
                if !c.removed.is_empty() {
                    parts.push(format!("removed {}", c.removed.join(", ")));
                }
                if !c.added.is_empty() {
                    parts.push(format!("added {}", c.added.join(", ")));
                }
                format!(
                    "rotated ({}): new data key, all values re-encrypted",
                    parts.join("; ")
                )
            }
            Action::Delete => "deleted (nobody may read it any more; still in git history)".into(),
            _ => continue,
        };
        eprintln!("{} ({}): {what}", c.name, c.env);
        if c.action == Action::Rotate && !c.removed.is_empty() {
            // Whoever lost access may have copied these: they need new values at their source.
            let keys = crate::store::file::EnvFile::open(&c.path, &c.name)
                .map(|f| f.encrypted_keys())
                .unwrap_or_default();
            if !keys.is_empty() {
                eprintln!(
                    "  {} could read: {} — rotate these at their providers (new passwords, API keys)",
                    c.removed.join(", "),
                    keys.join(", ")
                );
            }
        }
    }
    if policy_written {
        eprintln!("updated {POLICY_FILE}");
    }
    print_readers(plan);
}

/// `readers: ENV (FILE): a, b` for every environment of a plan.
pub(crate) fn print_readers(plan: &Plan) {
    let rows: Vec<&membership::FileChange> = plan
        .files
        .iter()
        .filter(|c| c.action != Action::Delete)
        .collect();
    if rows.is_empty() {
        return;
    }
    eprintln!("readers now:");
    for c in rows {
        let note = match c.action {
            Action::Missing => "  (no file yet)",
            Action::Plaintext => "  (plaintext: `envv encrypt` it)",
            _ => "",
        };
        eprintln!("  {} ({}): {}{note}", c.env, c.name, c.readers.join(", "));
    }
}
