//! Secrets older than their `max_age`, dated by the history engine (the commit where each
//! value last changed, or a note where git cannot tell).

use super::*;

/// Turns the history walk's answers into findings: for each environment of `age_meta`, each key
/// whose value last changed more than its `max_age` days before `today`. `queries` are the
/// walk's questions (file, key → stored text), in the order of `age_meta`.
pub(super) fn check(
    report: &mut Report,
    policy: &Policy,
    today: time::Date,
    in_git: bool,
    age_queries: &[(String, HashMap<String, String>)],
    age_meta: &[(String, Vec<(String, u64)>)],
    history: Option<Result<crate::git::history::FileDates>>,
) -> Result<()> {
    if !age_queries.is_empty() && !in_git {
        for (env, aged) in age_meta {
            let keys = aged
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            report.findings.push(Finding::new(
                Level::Note,
                Kind::NotChecked,
                Some(env),
                format!("max_age not checked for {keys}: not a git repository, so no history"),
            ));
        }
    } else if !age_queries.is_empty() {
        let (changes, note) = history.transpose()?.unwrap_or_default();
        if let Some(n) = note {
            report
                .findings
                .push(Finding::new(Level::Note, Kind::NotChecked, None, n));
        }
        for ((q, (env, aged)), found) in age_queries.iter().zip(age_meta).zip(changes) {
            for (k, days) in aged {
                let Some(d) = found.get(k) else { continue };
                let c = &d.commit;
                let Ok(when) = time::OffsetDateTime::from_unix_timestamp(c.time) else {
                    continue;
                };
                let age = (today - when.date()).whole_days();
                if age > *days as i64 {
                    let date = format_date(when.date());
                    let short = c.short();
                    let max = policy.schema.keys[k].max_age.clone().unwrap_or_default();
                    let mut fnd = Finding::new(
                        Level::Error,
                        Kind::MaxAge,
                        Some(env),
                        format!("{k} last changed {}{date} in commit {short} by {} ({age} days ago; max_age {max})", if d.at_least { "on or before " } else { "" }, c.author),
                    )
                    .file(&q.0)
                    .key(k)
                    .hint(format!("rotate it at its provider, then `envv set -e {env} {k}`"));
                    fnd.commit = Some(c.id.clone());
                    fnd.date = Some(date);
                    report.findings.push(fnd);
                }
            }
        }
    }
    Ok(())
}
