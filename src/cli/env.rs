//! `envv env add|ls|readers` and `envv group add|rm|ls`: declare environments and who reads
//! them. A change of readers re-wraps or rotates files like `member add`/`rm`.

use super::CliResult;
use clap::{Args, Subcommand};

use super::member::commit;
use super::Ctx;
use crate::error::Error;
use crate::policy::membership::Mode;
use crate::policy::{Environment, Policy, DEFAULT_ENV, DEFAULT_GROUP};
use crate::store::file::{recipient_drift, EnvFile};

const ENV_EXAMPLES: &str = "\
Example:
  envv env add production --readers ops";

/// Declare environments and who reads them.
#[derive(Args, Debug)]
#[command(after_long_help = ENV_EXAMPLES)]
pub struct EnvArgs {
    #[command(subcommand)]
    pub command: EnvCommand,
}

#[derive(Subcommand, Debug)]
pub enum EnvCommand {
    Add(EnvAddArgs),
    Ls(EnvLsArgs),
    Readers(EnvReadersArgs),
}

const ENV_ADD_EXAMPLES: &str = "\
Examples:
  envv env add staging --file config/.env.staging --readers dev,ci
  envv env add vault --readers ops,security,cto --threshold 2";

/// Declare an environment: its file (-f/--file PATH, default .env.NAME; .env for `default`)
/// and its readers (default: team).
///
/// With --threshold K each reader entry (a member or a group) becomes one sops key group, and
/// any K of them together are needed to decrypt (break-glass: no one alone can).
#[derive(Args, Debug)]
#[command(after_long_help = ENV_ADD_EXAMPLES)]
pub struct EnvAddArgs {
    /// Environment name (`envv set -e NAME` uses it).
    pub name: String,
    /// Groups or members that read it (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', value_name = "GROUP|MEMBER")]
    pub readers: Vec<String>,
    /// Key groups needed together to decrypt (each reader entry is one group).
    #[arg(long, value_name = "K")]
    pub threshold: Option<u8>,
}

const ENV_LS_EXAMPLES: &str = "\
Example:
  envv env ls";

/// List environments: file, readers, and whether the file matches the policy.
#[derive(Args, Debug)]
#[command(after_long_help = ENV_LS_EXAMPLES)]
pub struct EnvLsArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

const ENV_READERS_EXAMPLES: &str = "\
Examples:
  envv env readers production ops,ci
  envv env readers vault ops,security,cto,legal --threshold 3";

/// Set who reads an environment (replaces its readers); files are re-wrapped or rotated.
///
/// Members you name are confirmed by this command; members reached through a group whom you
/// have not confirmed yet are listed and need --yes (or a yes on a terminal).
#[derive(Args, Debug)]
#[command(after_long_help = ENV_READERS_EXAMPLES)]
pub struct EnvReadersArgs {
    /// The environment.
    pub name: String,
    /// Groups or members (comma-separated or several arguments).
    #[arg(required = true, value_delimiter = ',', value_name = "GROUP|MEMBER")]
    pub readers: Vec<String>,
    /// Key groups needed together to decrypt (each reader entry is one group); a threshold
    /// environment keeps its threshold when this is not given. Lowering it needs --flatten.
    #[arg(long, value_name = "K")]
    pub threshold: Option<u8>,
}

const GROUP_EXAMPLES: &str = "\
Example:
  envv group add ops alice bob";

/// Manage groups of members.
#[derive(Args, Debug)]
#[command(after_long_help = GROUP_EXAMPLES)]
pub struct GroupArgs {
    #[command(subcommand)]
    pub command: GroupCommand,
}

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    Add(GroupAddArgs),
    Rm(GroupRmArgs),
    Ls(GroupLsArgs),
}

const GROUP_ADD_EXAMPLES: &str = "\
Example:
  envv group add ops alice bob";

/// Create a group and/or add members to it (files it reads are re-wrapped for them).
#[derive(Args, Debug)]
#[command(after_long_help = GROUP_ADD_EXAMPLES)]
pub struct GroupAddArgs {
    /// The group.
    pub group: String,
    /// Members (or groups) to add.
    pub members: Vec<String>,
}

const GROUP_RM_EXAMPLES: &str = "\
Example:
  envv group rm ops bob";

/// Remove members from a group (files it reads are rotated), or the whole group when no member
/// is given (it must not be a reader anywhere).
#[derive(Args, Debug)]
#[command(after_long_help = GROUP_RM_EXAMPLES)]
pub struct GroupRmArgs {
    /// The group.
    pub group: String,
    /// Members to remove from it.
    pub members: Vec<String>,
}

const GROUP_LS_EXAMPLES: &str = "\
Example:
  envv group ls --json";

/// List groups and their members.
#[derive(Args, Debug)]
#[command(after_long_help = GROUP_LS_EXAMPLES)]
pub struct GroupLsArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn env(ctx: &Ctx, a: EnvArgs) -> CliResult<i32> {
    match a.command {
        EnvCommand::Add(a) => env_add(ctx, a),
        EnvCommand::Ls(a) => env_ls(ctx, a),
        EnvCommand::Readers(a) => env_readers(ctx, a),
    }
}

pub fn group(ctx: &Ctx, a: GroupArgs) -> CliResult<i32> {
    match a.command {
        GroupCommand::Add(a) => group_add(ctx, a),
        GroupCommand::Rm(a) => group_rm(ctx, a),
        GroupCommand::Ls(a) => group_ls(ctx, a),
    }
}

fn clean(list: Vec<String>) -> Vec<String> {
    list.into_iter()
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .collect()
}

fn env_add(ctx: &Ctx, a: EnvAddArgs) -> CliResult<i32> {
    let mut s = ctx.transaction()?;
    let mut new = s.policy.clone();
    if let Some(e) = new.environments.get(&a.name) {
        return Err(Error::usage_hint(
            format!("environment {} already exists (file {})", a.name, e.file),
            format!("`envv env readers {} ...` changes its readers", a.name),
        )
        .into());
    }
    let file = match &ctx.file {
        Some(p) => ctx.ws.rel(p),
        None if a.name == DEFAULT_ENV => ".env".into(),
        None => format!(".env.{}", a.name),
    };
    let mut readers = clean(a.readers);
    if readers.is_empty() {
        if !new.groups.contains_key(DEFAULT_GROUP) {
            return Err(Error::usage(format!(
                "there is no group {DEFAULT_GROUP}: say who reads it with --readers GROUP|MEMBER,..."
            ))
            .into());
        }
        readers.push(DEFAULT_GROUP.into());
    }
    let named = super::confirm::named_members(ctx, &new, &readers);
    new.environments.insert(
        a.name.clone(),
        Environment {
            file: file.clone(),
            readers,
            threshold: a.threshold,
            ..Default::default()
        },
    );
    commit(ctx, &mut s, &new, Mode::Sync, &named)?;
    eprintln!(
        "added environment {} ({file}); `envv set -e {} KEY` adds its first secret",
        a.name, a.name
    );
    Ok(0)
}

fn env_readers(ctx: &Ctx, a: EnvReadersArgs) -> CliResult<i32> {
    let mut s = ctx.transaction()?;
    let mut new = s.policy.clone();
    let Some(e) = new.environments.get_mut(&a.name) else {
        return Err(Error::UnknownEnv {
            env: a.name.clone(),
            declared: new.environments.keys().cloned().collect(),
        }
        .into());
    };
    e.readers = clean(a.readers);
    if a.threshold.is_some() {
        e.threshold = a.threshold;
    }
    let named = super::confirm::named_members(ctx, &new, &new.environments[&a.name].readers);
    commit(ctx, &mut s, &new, Mode::Sync, &named)?;
    Ok(0)
}

fn env_ls(ctx: &Ctx, a: EnvLsArgs) -> CliResult<i32> {
    let p = &ctx.ws.require_policy()?.policy;
    let mut rows = Vec::new();
    for (name, e) in &p.environments {
        let rel = e.file.trim_start_matches("./");
        let path = ctx.ws.root.join(rel);
        let state = if std::fs::symlink_metadata(&path).is_err() {
            "no file yet".to_string()
        } else {
            match EnvFile::open_in(&ctx.ws.root, rel) {
                Ok(f) => match &f.meta() {
                    None => "plaintext (`envv encrypt`)".into(),
                    Some(m) if recipient_drift(m, &p.recipients(name)).is_empty() => {
                        "in sync".into()
                    }
                    Some(_) => "out of sync (`envv updatekeys`)".into(),
                },
                Err(e) => format!("unreadable: {e}"),
            }
        };
        let readers: Vec<String> = p
            .reader_names(name)
            .into_iter()
            .filter(|n| !p.is_expired(n))
            .collect();
        rows.push((
            name.clone(),
            e.file.clone(),
            e.readers.clone(),
            readers,
            state,
        ));
    }
    if a.json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(n, f, r, m, st)| serde_json::json!({ "name": n, "file": f, "readers": r, "members": m, "state": st }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    for (n, f, r, m, st) in rows {
        println!(
            "{n}  {f}  readers: {}  ({})  {st}",
            r.join(","),
            m.join(", ")
        );
    }
    Ok(0)
}

fn group_add(ctx: &Ctx, a: GroupAddArgs) -> CliResult<i32> {
    let mut s = ctx.transaction()?;
    let mut new = s.policy.clone();
    let members = clean(a.members);
    let g = new.groups.entry(a.group.clone()).or_default();
    for m in &members {
        if !g.contains(m) {
            g.push(m.clone());
        }
    }
    let named = super::confirm::named_members(ctx, &new, &members);
    commit(ctx, &mut s, &new, Mode::Sync, &named)?;
    eprintln!("group {}: {}", a.group, new.groups[&a.group].join(", "));
    Ok(0)
}

fn group_rm(ctx: &Ctx, a: GroupRmArgs) -> CliResult<i32> {
    let mut s = ctx.transaction()?;
    let mut new = s.policy.clone();
    let Some(g) = new.groups.get_mut(&a.group) else {
        return Err(Error::usage(format!(
            "no group named {} (groups: {})",
            a.group,
            new.groups.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
        .into());
    };
    let members = clean(a.members);
    if members.is_empty() {
        let users = users_of(&new, &a.group);
        if !users.is_empty() {
            return Err(Error::refused_hint(
                format!("group {} is still used by {}", a.group, users.join(", ")),
                "change those first (`envv env readers ENV ...`)",
            )
            .into());
        }
        new.groups.remove(&a.group);
    } else {
        for m in &members {
            if !g.contains(m) {
                return Err(Error::usage(format!("{m} is not in group {}", a.group)).into());
            }
        }
        g.retain(|m| !members.contains(m));
    }
    let orphans = crate::policy::membership::newly_unreadable_envs(&s.policy, &new);
    if !orphans.is_empty() {
        return Err(Error::refused_hint(
            format!("nobody would be left to read {}", orphans.join(", ")),
            "add readers first",
        )
        .into());
    }
    commit(ctx, &mut s, &new, Mode::Sync, &[])?;
    Ok(0)
}

fn users_of(p: &Policy, group: &str) -> Vec<String> {
    let mut out: Vec<String> = p
        .environments
        .iter()
        .filter(|(_, e)| e.readers.iter().any(|r| r == group))
        .map(|(n, _)| format!("environment {n}"))
        .collect();
    out.extend(
        p.groups
            .iter()
            .filter(|(_, ms)| ms.iter().any(|m| m == group))
            .map(|(n, _)| format!("group {n}")),
    );
    out
}

fn group_ls(ctx: &Ctx, a: GroupLsArgs) -> CliResult<i32> {
    let p = &ctx.ws.require_policy()?.policy;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&p.groups)?);
        return Ok(0);
    }
    if p.groups.is_empty() {
        eprintln!("no groups yet: `envv group add NAME MEMBER...`");
    }
    for (g, ms) in &p.groups {
        println!("{g}: {}", ms.join(", "));
    }
    Ok(0)
}
