//! Values that do not match their `schema` pattern (needs an identity; a file whose MAC fails
//! is an error here too).

use super::*;

/// Decrypts `f` when the caller can (MAC verified: a mismatch is an error) and checks the
/// patterned keys; without an identity, says which patterns went unchecked.
pub(super) fn check_patterns(
    report: &mut Report,
    policy: &Policy,
    env: &str,
    f: &EnvFile,
    patterned: &[(&String, Regex)],
    keyring: &mut Keyring,
) {
    let rel = f.name();
    let Some(meta) = &f.meta() else {
        return;
    };
    let dk = match keyring.unwrap(meta) {
        Ok(Some(dk)) => dk,
        Ok(None) | Err(_) if patterned.is_empty() => return,
        Ok(None) | Err(_) => {
            let keys = patterned
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            report.findings.push(
                Finding::new(
                    Level::Warning,
                    Kind::NotChecked,
                    Some(env),
                    format!("patterns not checked for {keys}: none of your identities can decrypt {rel} (readers: {})", policy.reader_names(env).join(", ")),
                )
                .file(rel)
                .hint("run `envv check` where a reader's identity is available (CI), or ask a reader to add you".into()),
            );
            return;
        }
    };
    let plain = match f.clone().decrypt(&dk, true) {
        Ok(p) => p,
        Err(e) => {
            report.findings.push(
                Finding::new(Level::Error, Kind::Tampered, Some(env), e.to_string())
                    .file(rel)
                    .hint(format!("`git diff {rel}` shows what changed")),
            );
            return;
        }
    };
    for (k, rx) in patterned {
        let Some(v) = plain.get(k) else { continue };
        let matches = std::str::from_utf8(v.expose()).is_ok_and(|s| rx.is_match(s));
        if !matches {
            let desc = policy.schema.keys[*k]
                .description
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            report.findings.push(
                Finding::new(
                    Level::Error,
                    Kind::Pattern,
                    Some(env),
                    format!(
                        "the value of {k} does not match its pattern \"{}\"{desc}",
                        rx.as_str()
                    ),
                )
                .file(rel)
                .key(k)
                .hint(format!(
                    "`envv set -e {env} {k}` with a value of the right form"
                )),
            );
        }
    }
}
