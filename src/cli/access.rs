//! `envv access`: who can read each environment, who granted it and when, who lost access and
//! whether the data key was rotated since. Read from git history and the files' metadata: no
//! identity needed, nothing decrypted.

use super::CliResult;
use std::path::PathBuf;

use clap::Args;

use super::Ctx;
use crate::error::Error;
use crate::git::history::{self, AccessEvent};
use crate::keys::same_recipient;
use crate::policy::Policy;
use crate::store::file::EnvFile;

const ACCESS_EXAMPLES: &str = "\
Examples:
  envv access
  envv access -e production --json";

/// Who can read each environment, since which commit, and who could before.
///
/// Lists current readers with the commit that gave them the data key (the grant), their group
/// path and `expires:`; past readers with the commit that removed them and whether the data
/// key was rotated afterwards; readers named in .sops.yaml that the file does not wrap the
/// data key for yet (unconfirmed). Needs no identity.
#[derive(Args, Debug)]
#[command(after_long_help = ACCESS_EXAMPLES)]
pub struct AccessArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn access(ctx: &Ctx, a: AccessArgs) -> CliResult<i32> {
    let pf = ctx.ws.policy()?.ok_or_else(|| Error::NoPolicy {
        dir: ctx.ws.cwd.display().to_string(),
        parents: true,
    })?;
    let policy = &pf.policy;
    let envs: Vec<String> = match &ctx.env {
        Some(e) if !policy.environments.contains_key(e) => {
            return Err(Error::UnknownEnv {
                env: e.clone(),
                declared: policy.environments.keys().cloned().collect(),
            }
            .into())
        }
        Some(e) => vec![e.clone()],
        None => policy.environments.keys().cloned().collect(),
    };
    let rels: Vec<String> = envs
        .iter()
        .map(|e| {
            policy.environments[e]
                .file
                .trim_start_matches("./")
                .to_string()
        })
        .collect();
    let repo = crate::git::open(&ctx.ws.root);
    let paths: Vec<PathBuf> = match &repo {
        Some(r) => rels
            .iter()
            .map(|f| history::repo_path(r, &ctx.ws.root, f))
            .collect(),
        None => Vec::new(),
    };
    let w = match &repo {
        Some(r) => history::walk(r, &paths, history::MAX_COMMITS)?,
        None => history::Walk {
            versions: vec![Vec::new(); rels.len()],
            ..history::Walk::default()
        },
    };
    let mut out_json = Vec::new();
    let mut text = String::new();
    for (i, env) in envs.iter().enumerate() {
        let rel = &rels[i];
        let events = match &repo {
            Some(r) => history::file_events(r, &w, i, &paths[i]),
            None => Vec::new(),
        };
        let wrapped: Vec<String> = match EnvFile::open(&ctx.ws.root.join(rel), rel) {
            Ok(f) => f
                .meta()
                .map(|m| m.recipients().iter().map(|s| s.to_string()).collect())
                .unwrap_or_default(),
            Err(Error::MissingFile { .. }) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let (now, past) = history::readers(&w, &events, &wrapped);
        let wanted = policy.recipients(env);
        let unconfirmed: Vec<String> = wanted
            .iter()
            .filter(|r| !wrapped.iter().any(|x| same_recipient(x, &r.text)))
            .map(|r| r.text.clone())
            .collect();
        let queries: Vec<(String, String)> = unconfirmed
            .iter()
            .map(|k| (env.clone(), k.clone()))
            .collect();
        let intros = crate::policy::trust::introductions(&ctx.ws.root, &queries);

        let ev_json = |e: &Option<AccessEvent>| {
            e.as_ref().map(|e| {
                serde_json::json!({ "commit": e.commit.id, "author": e.commit.author, "date": e.commit.date(), "at_least": e.at_least })
            })
        };
        let member = |r: &str| member_of(policy, r);
        let former = if past.iter().any(|p| member(&p.recipient).is_none()) {
            crate::policy::trust::former_members(&ctx.ws.root)
        } else {
            Vec::new()
        };
        let former_name = |r: &str| {
            former
                .iter()
                .find(|(_, k)| same_recipient(k, r))
                .map(|(n, _)| n.clone())
        };
        if a.json {
            out_json.push(serde_json::json!({
                "environment": env,
                "file": rel,
                "readers": now.iter().map(|(r, g)| {
                    let m = member(r);
                    serde_json::json!({
                        "member": m, "recipient": r, "granted": ev_json(g),
                        "path": m.as_deref().map(|m| group_path(policy, env, m)),
                        "expires": m.as_deref().and_then(|m| policy.members.get(m)).and_then(|x| x.expires.clone()),
                    })
                }).collect::<Vec<_>>(),
                "past_readers": past.iter().map(|p| serde_json::json!({
                    "member": member(&p.recipient).or_else(|| former_name(&p.recipient)), "recipient": p.recipient,
                    "removed": ev_json(&Some(p.removed.clone())),
                    "rotated": p.rotated.as_ref().map(|c| serde_json::json!({ "commit": c.id, "author": c.author, "date": c.date() })),
                })).collect::<Vec<_>>(),
                "unconfirmed": unconfirmed.iter().zip(&intros).map(|(r, i)| serde_json::json!({
                    "member": member(r), "recipient": r,
                    "made_reader": i.as_ref().map(|i| serde_json::json!({ "commit": i.commit, "author": i.author, "date": i.date() })),
                })).collect::<Vec<_>>(),
            }));
            continue;
        }
        let label = |r: &str| {
            member(r)
                .or_else(|| former_name(r))
                .unwrap_or_else(|| crate::keys::short_key(r))
        };
        let when = |e: &AccessEvent| {
            format!(
                "{} {} by {}",
                if e.at_least {
                    format!("on or before {}", e.commit.date())
                } else {
                    e.commit.date()
                },
                e.commit.short(),
                e.commit.author
            )
        };
        text.push_str(&format!("{env} ({rel})\n"));
        if now.is_empty() {
            text.push_str("  no reader: the file does not exist or is not encrypted\n");
        }
        for (r, g) in &now {
            let m = member(r);
            let mut line = format!("  reader    {:<12}", label(r));
            match g {
                Some(g) => line.push_str(&format!("  granted {}", when(g))),
                None => line.push_str("  granted: not committed"),
            }
            if let Some(m) = &m {
                line.push_str(&format!("  via {}", group_path(policy, env, m)));
                if let Some(x) = policy.members.get(m).and_then(|x| x.expires.as_deref()) {
                    line.push_str(&format!("  expires: {x}"));
                }
            } else {
                line.push_str("  (not a member in .sops.yaml)");
            }
            text.push_str(&line);
            text.push('\n');
        }
        for p in &past {
            text.push_str(&format!(
                "  removed   {:<12}  {}  {}\n",
                label(&p.recipient),
                when(&p.removed),
                match &p.rotated {
                    Some(c) => format!("rotated in {}", c.short()),
                    None => "NOT rotated: values they could read are still valid".into(),
                }
            ));
        }
        for (r, i) in unconfirmed.iter().zip(&intros) {
            text.push_str(&format!(
                "  unconfirmed {:<10}  named in .sops.yaml, the data key is not wrapped for them{}\n",
                label(r),
                match i {
                    Some(i) => format!(" (made a reader in {} by {} on {})", i.short(), i.author, i.date()),
                    None => " (not committed)".into(),
                }
            ));
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out_json)?);
    } else {
        print!("{text}");
        if let Some(n) = history::cut_note(&w) {
            eprintln!("note: {n}");
        }
    }
    Ok(0)
}

/// The member whose key is `recipient`.
fn member_of(policy: &Policy, recipient: &str) -> Option<String> {
    policy
        .members
        .iter()
        .find(|(_, m)| same_recipient(&m.key, recipient))
        .map(|(n, _)| n.clone())
}

/// How `member` reads `env`: `team > ops > alice`, or `alice` when named directly.
fn group_path(policy: &Policy, env: &str, member: &str) -> String {
    fn find(
        policy: &Policy,
        name: &str,
        member: &str,
        depth: usize,
        path: &mut Vec<String>,
    ) -> bool {
        path.push(name.to_string());
        if name == member && policy.members.contains_key(name) {
            return true;
        }
        if depth < 8 {
            if let Some(g) = policy.groups.get(name) {
                for m in g {
                    if find(policy, m, member, depth + 1, path) {
                        return true;
                    }
                }
            }
        }
        path.pop();
        false
    }
    let mut path = Vec::new();
    for r in policy
        .environments
        .get(env)
        .map(|e| e.readers.as_slice())
        .unwrap_or_default()
    {
        if find(policy, r, member, 0, &mut path) {
            return path.join(" > ");
        }
    }
    "(not a reader in .sops.yaml)".into()
}
