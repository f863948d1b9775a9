//! Required keys (`schema.required` and the environment's own `required`) missing or empty.

use super::*;

/// A finding for each required key of `env` that `stored` (the file `rel`) lacks or leaves
/// empty.
pub(super) fn check(report: &mut Report, policy: &Policy, env: &str, rel: &str, stored: &Stored) {
    for k in required_keys(policy, env) {
        match stored.get(&k) {
            None => report.findings.push(
                Finding::new(
                    Level::Error,
                    Kind::MissingRequired,
                    Some(env),
                    format!("required key {k} is missing from {rel}"),
                )
                .file(rel)
                .key(&k)
                .hint(format!("`envv set -e {env} {k}`")),
            ),
            Some("") => report.findings.push(
                Finding::new(
                    Level::Error,
                    Kind::MissingRequired,
                    Some(env),
                    format!("required key {k} is empty in {rel}"),
                )
                .file(rel)
                .key(&k)
                .hint(format!("`envv set -e {env} {k}`")),
            ),
            Some(_) => {}
        }
    }
}
