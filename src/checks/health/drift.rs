//! Drift: a key set in some environments and missing from others.

use super::*;

/// Drift: a key set in some environments' files and missing from others. Keys whose schema
/// limits them to some environments are compared among those only; environments without a
/// file and keys already reported as missing-required are left out.
pub(super) fn drift(report: &mut Report, policy: &Policy, loaded: &[Loaded], only: Option<&str>) {
    let present: Vec<&Loaded> = loaded.iter().filter(|l| l.present).collect();
    if present.len() < 2 {
        return;
    }
    let mut all: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for l in &present {
        for k in l.stored.keys() {
            all.entry(k).or_default().push(l.name.as_str());
        }
    }
    for l in present.iter().filter(|l| only.is_none_or(|o| o == l.name)) {
        let required: BTreeSet<String> = required_keys(policy, &l.name).into_iter().collect();
        for (k, holders) in &all {
            if l.stored.contains_key(k) || required.contains(*k) {
                continue;
            }
            let scope = policy
                .schema
                .keys
                .get(*k)
                .map(|s| s.environments.as_slice())
                .unwrap_or_default();
            if !scope.is_empty() && !scope.contains(&l.name) {
                continue;
            }
            let holders: Vec<&str> = holders
                .iter()
                .copied()
                .filter(|h| scope.is_empty() || scope.iter().any(|e| e == h))
                .collect();
            if holders.is_empty() {
                continue;
            }
            let shown = if holders.len() > 4 {
                format!("{} and {} more", holders[..3].join(", "), holders.len() - 3)
            } else {
                holders.join(", ")
            };
            report.findings.push(
                Finding::new(
                    Level::Warning,
                    Kind::Drift,
                    Some(&l.name),
                    format!("{k} is set in {shown} but not in {}", l.rel),
                )
                .file(&l.rel)
                .key(k)
                .hint(format!(
                    "`envv set -e {} {k}`, or limit it with schema.keys.{k}.environments",
                    l.name
                )),
            );
        }
    }
}
