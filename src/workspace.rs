//! Where a command runs: the repository root, its policy, and which file `-e`/`-f` mean.
//!
//! The root is the nearest folder holding `.sops.yaml` (as sops finds it), else the git work
//! tree root. The policy is parsed only when a command needs it.

use std::cell::OnceCell;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::keys::Recipient;
use crate::policy::{PolicyFile, DEFAULT_ENV, POLICY_FILE};

/// The repository a command works in.
pub struct Workspace {
    /// Where the repository starts: the nearest folder at or above `cwd` holding `.sops.yaml` or
    /// `.git` (see [`crate::git::find_root`]).
    pub root: PathBuf,
    /// The folder the command was run from.
    pub cwd: PathBuf,
    policy: OnceCell<Option<PolicyFile>>,
}

/// A file a command reads or writes.
#[derive(Debug, Clone)]
pub struct Target {
    /// Where the file is on disk.
    pub path: PathBuf,
    /// Path relative to the root, for messages and policy lookup.
    pub name: String,
    /// The environment whose file this is, if any.
    pub env: Option<String>,
}

impl Workspace {
    /// Finds the workspace from the current directory.
    pub fn discover() -> Result<Self> {
        let cwd = std::env::current_dir().at(".")?;
        Ok(Self::at(&cwd))
    }

    /// The workspace containing `dir`.
    pub fn at(dir: &Path) -> Self {
        Workspace {
            root: crate::git::find_root(dir),
            cwd: dir.to_path_buf(),
            policy: OnceCell::new(),
        }
    }

    /// Where `.sops.yaml` is (or would be): at `root`.
    pub fn policy_path(&self) -> PathBuf {
        self.root.join(POLICY_FILE)
    }

    /// The policy, if `.sops.yaml` exists (errors if it is invalid).
    pub fn policy(&self) -> Result<Option<&PolicyFile>> {
        if self.policy.get().is_none() {
            let path = self.policy_path();
            let loaded = if path.is_file() {
                Some(PolicyFile::load(&path)?)
            } else {
                None
            };
            let _ = self.policy.set(loaded);
        }
        Ok(self.policy.get().and_then(|p| p.as_ref()))
    }

    /// The policy, or an error naming `envv init`.
    pub fn require_policy(&self) -> Result<&PolicyFile> {
        self.policy()?.ok_or_else(|| Error::NoPolicy {
            dir: self.cwd.display().to_string(),
            parents: true,
        })
    }

    /// Replaces the cached policy (after a command changed it).
    pub fn set_policy(&mut self, p: PolicyFile) {
        self.policy = OnceCell::new();
        let _ = self.policy.set(Some(p));
    }

    /// A path relative to the root (as written in the policy).
    pub fn rel(&self, path: &Path) -> String {
        let abs = if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.cwd.join(path)
        };
        let abs = normalize(&abs);
        abs.strip_prefix(&self.root)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| abs.display().to_string())
    }

    /// Resolves `-e ENV` / `-f FILE` (file wins) to a target file.
    pub fn target(&self, env: Option<&str>, file: Option<&Path>) -> Result<Target> {
        if let Some(f) = file {
            let path = normalize(&if f.is_absolute() {
                f.to_path_buf()
            } else {
                self.cwd.join(f)
            });
            // Inside the working tree the same rules hold as for a policy path (a committed
            // link must not lead out); a path outside it is the user's explicit choice.
            crate::os::paths::check_inside(&self.root, &path)?;
            let name = self.rel(&path);
            let env = self
                .policy()?
                .and_then(|p| p.policy.env_for_file(&name).map(str::to_string));
            return Ok(Target { path, name, env });
        }
        let policy = self.policy()?;
        match (env, policy) {
            (Some(e), Some(p)) => match p.policy.environments.get(e) {
                Some(decl) => self.target_file(&decl.file, Some(e)),
                None => Err(Error::UnknownEnv {
                    env: e.to_string(),
                    declared: p.policy.environments.keys().cloned().collect(),
                }),
            },
            (Some(e), None) if e != DEFAULT_ENV => Err(Error::usage_hint(
                format!("environment \"{e}\" needs a policy"),
                format!("run `envv init`, then `envv env add {e}`"),
            )),
            (_, Some(p)) => match p.policy.environments.get(DEFAULT_ENV) {
                Some(decl) => self.target_file(&decl.file, Some(DEFAULT_ENV)),
                None => self.target_file(".env", p.policy.env_for_file(".env")),
            },
            (_, None) => self.target_file(".env", None),
        }
    }

    /// A file named relative to the root (by the policy): confined to the working tree.
    fn target_file(&self, rel: &str, env: Option<&str>) -> Result<Target> {
        Ok(Target {
            path: crate::os::paths::resolve(&self.root, rel)?,
            name: rel.trim_start_matches("./").to_string(),
            env: env.map(str::to_string),
        })
    }

    /// Member names that read a target (for "who can decrypt" messages).
    pub fn readers(&self, t: &Target) -> Vec<String> {
        match (self.policy(), &t.env) {
            (Ok(Some(p)), Some(e)) => p.policy.reader_names(e),
            _ => Vec::new(),
        }
    }

    /// The recipients a target must be encrypted for, from the policy.
    pub fn recipients(&self, t: &Target) -> Result<Vec<Recipient>> {
        let p = self.require_policy()?;
        let env = t.env.as_deref().ok_or_else(|| Error::UndeclaredFile {
            file: t.name.clone(),
            policy: POLICY_FILE.to_string(),
        })?;
        let r = p.policy.recipients(env);
        if r.is_empty() {
            return Err(Error::NoReaders {
                env: env.to_string(),
            });
        }
        Ok(r)
    }
}

/// Removes `.` and `..` components without touching the file system.
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}
