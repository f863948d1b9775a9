//! Key names: valid dotenv names, and `schema.naming` when the policy sets it.

use super::*;

/// A finding for each key of `f` (each once, in file order) whose name is invalid or does not
/// match `naming`.
pub(super) fn check(
    report: &mut Report,
    f: &EnvFile,
    env: &str,
    rel: &str,
    naming: Option<&Regex>,
) {
    let mut seen = HashSet::new();
    for key in f.keys() {
        if !seen.insert(key) {
            continue;
        }
        let problem = match dotenv::validate_key(key) {
            Err(m) => Some(m.to_string()),
            Ok(()) => match naming {
                Some(rx) if !rx.is_match(key) => Some(format!(
                    "key name {key} does not match schema.naming \"{}\"",
                    rx.as_str()
                )),
                _ => None,
            },
        };
        if let Some(m) = problem {
            let line = f.lines().iter().find_map(|x| match x {
                Line::Pair { key: k, line, .. } if k == key => Some(*line),
                _ => None,
            });
            let at = line.map(|n| format!("{rel}:{n}: ")).unwrap_or_default();
            report.findings.push(
                Finding::new(Level::Error, Kind::Naming, Some(env), format!("{at}{m}"))
                    .file(rel)
                    .key(key)
                    .hint(format!(
                        "rename it: `envv set -e {env} NEW_NAME` then `envv rm -e {env} OLD_NAME`"
                    )),
            );
        }
    }
}
