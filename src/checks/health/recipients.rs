//! Files whose recipients disagree with the policy: readers the file does not wrap for yet
//! (with the commit that made them readers, for the reviewer), and people it still wraps for.

use super::*;

/// The out-of-sync finding for `rel` (environment `env`), if its key entries in `meta` differ
/// from the policy's readers.
pub(super) fn check(
    report: &mut Report,
    root: &Path,
    policy: &Policy,
    env: &str,
    rel: &str,
    meta: &crate::format::sops::Metadata,
) {
    let drift = crate::store::file::recipient_drift(meta, &policy.recipients(env));
    if !drift.is_empty() {
        let who = |keys: &[String]| {
            keys.iter()
                .map(|k| member_name(policy, k))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut parts = Vec::new();
        // Readers the file does not wrap for: where each came from, so that a
        // reviewer sees who asked for access (nobody gets it until a reader
        // confirms them with `envv updatekeys`).
        let queries: Vec<(String, String)> = drift
            .missing
            .iter()
            .map(|k| (env.to_string(), k.clone()))
            .collect();
        let intros = crate::policy::trust::introductions(root, &queries);
        if !drift.missing.is_empty() {
            let named: Vec<String> = drift
                .missing
                .iter()
                .zip(&intros)
                .map(|(k, i)| match i {
                    Some(i) => format!(
                        "{} (made a reader in commit {} by {} on {})",
                        member_name(policy, k),
                        i.short(),
                        i.author,
                        i.date()
                    ),
                    None => format!("{} (not committed)", member_name(policy, k)),
                })
                .collect();
            parts.push(format!("not readable yet by {}", named.join(", ")));
        }
        if !drift.extra.is_empty() {
            parts.push(format!("still readable by {}", who(&drift.extra)));
        }
        let mut finding = Finding::new(
            Level::Error,
            Kind::RecipientsOutOfSync,
            Some(env),
            format!(
                "{rel} is out of sync with {POLICY_FILE}: {}",
                parts.join("; ")
            ),
        )
        .file(rel)
        .hint(match intros.iter().flatten().next() {
            _ if drift.missing.is_empty() => "`envv updatekeys`".into(),
            Some(i) => format!(
                "make sure you know them (`git show {} -- {POLICY_FILE}`), then `envv updatekeys`",
                i.short()
            ),
            None => format!(
                "make sure you know them (`git diff -- {POLICY_FILE}`), then `envv updatekeys`"
            ),
        });
        if let Some(i) = intros.iter().flatten().next() {
            finding.commit = Some(i.commit.clone());
            finding.date = Some(i.date());
        }
        report.findings.push(finding);
    }
}
