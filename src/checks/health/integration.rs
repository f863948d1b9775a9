//! Whether the pre-commit hook and git's diff and merge setup are installed (for `status`).

use super::*;

/// Whether the pre-commit hook and the git diff/merge setup are installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitIntegration {
    /// The hooks folder git uses (`core.hooksPath` honoured).
    pub hooks_dir: PathBuf,
    /// `pre-commit` in that folder runs `envv hook pre-commit`.
    pub hook: bool,
    /// `diff.envv.textconv` is configured.
    pub textconv: bool,
    /// `.gitattributes` routes some file through `diff=envv`.
    pub attributes: bool,
}

/// The git integration state of the repository containing `root`, or `None` outside git.
pub fn git_integration(root: &Path) -> Option<GitIntegration> {
    let repo = crate::git::open(root)?;
    let workdir = repo
        .workdir()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| root.to_path_buf());
    let hooks_dir = match crate::git::config_string(root, "core.hooksPath") {
        Some(p) if !p.trim().is_empty() => {
            let p = expand_tilde(p.trim());
            if p.is_absolute() {
                p
            } else {
                workdir.join(p)
            }
        }
        _ => repo.commondir().join("hooks"),
    };
    let hook = std::fs::read_to_string(hooks_dir.join("pre-commit"))
        .is_ok_and(|t| t.contains("envv hook pre-commit"));
    let textconv =
        crate::git::config_string(root, "diff.envv.textconv").is_some_and(|v| !v.trim().is_empty());
    let attributes = std::fs::read_to_string(workdir.join(".gitattributes")).is_ok_and(|t| {
        t.lines()
            .any(|l| !l.trim_start().starts_with('#') && l.contains("diff=envv"))
    });
    Some(GitIntegration {
        hooks_dir,
        hook,
        textconv,
        attributes,
    })
}

fn expand_tilde(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), dirs::home_dir()) {
        (Some(rest), Some(h)) => h.join(rest),
        _ => PathBuf::from(p),
    }
}
