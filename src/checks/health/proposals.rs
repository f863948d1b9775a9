//! Proposals from write-only contributors waiting beside an environment file.

use super::*;

/// Proposals waiting beside an environment's file (a note), or a proposal file that does not
/// parse (an error).
pub(super) fn pending_proposals(report: &mut Report, root: &Path, env: &str, rel: &str) {
    let file = format!("{rel}{}", crate::store::proposals::SUFFIX);
    match crate::store::proposals::load(&root.join(rel), rel) {
        Ok(props) if props.is_empty() => {}
        Ok(props) => {
            let list: Vec<String> = props
                .iter()
                .map(|p| format!("{} (by {})", p.key, p.by_shown()))
                .collect();
            report.findings.push(
                Finding::new(
                    Level::Note,
                    Kind::PendingProposals,
                    Some(env),
                    format!("{} proposals pending in {file}: {}", props.len(), list.join(", ")),
                )
                .file(&file)
                .hint(format!("a reader runs `envv accept -e {env}` (or `envv reject -e {env} KEY`)")),
            );
        }
        Err(e) => report.findings.push(
            Finding::new(Level::Error, Kind::InvalidFile, Some(env), e.to_string())
                .file(&file)
                .hint(format!("proposals are written by `envv propose -e {env} KEY`; remove {file} if it holds anything else")),
        ),
    }
}
