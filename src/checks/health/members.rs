//! Members whose `expires:` date has passed, and join requests waiting for approval.

use super::*;

/// Expired members (readers of `only`, or of any environment) and pending join requests (when
/// every environment is checked).
pub(super) fn check(report: &mut Report, policy: &Policy, only: Option<&str>) {
    for (name, m) in &policy.members {
        if policy.is_expired(name) && only.is_none_or(|o| policy.reader_names(o).contains(name)) {
            let envs = policy.envs_of(name);
            report.findings.push(
                Finding::new(
                    Level::Warning,
                    Kind::ExpiredMember,
                    None,
                    format!(
                        "member {name} expired on {} and no longer receives new data keys{}",
                        m.expires.as_deref().unwrap_or("?"),
                        if envs.is_empty() {
                            String::new()
                        } else {
                            format!(" (was a reader of {})", envs.join(", "))
                        }
                    ),
                )
                .hint(format!(
                    "`envv member rm {name}` removes them and rotates what they could read"
                )),
            );
        }
    }
    if only.is_none() {
        for name in policy.pending.keys() {
            report.findings.push(
                Finding::new(
                    Level::Note,
                    Kind::PendingMember,
                    None,
                    format!("{name} asked to join and waits for approval"),
                )
                .hint(format!("a reader runs `envv member approve {name}`")),
            );
        }
    }
}
