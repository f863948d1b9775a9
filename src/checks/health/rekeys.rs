//! Files whose data key changed without a rotation proof: replaced by someone without the
//! previous key, or rotated by sops. Told only when the identities at hand open the version
//! before.

use super::*;

/// Files whose current data key came from a change without a rotation proof, when the
/// identities at hand can tell (they open the version before).
pub(super) fn rekeys(
    report: &mut Report,
    root: &Path,
    loaded: &[Loaded],
    only: Option<&str>,
    keyring: &mut Keyring,
) {
    let sel: Vec<&Loaded> = loaded
        .iter()
        .filter(|l| only.is_none_or(|o| o == l.name))
        .filter(|l| l.encrypted)
        .collect();
    let rels: Vec<String> = sel.iter().map(|l| l.rel.clone()).collect();
    let Ok(found) = crate::git::history::unproven_rekeys(root, &rels, keyring) else {
        return;
    };
    for (l, c) in sel.iter().zip(found) {
        let Some(c) = c else { continue };
        let mut f = Finding::new(
            Level::Warning,
            Kind::Rekeyed,
            Some(&l.name),
            format!(
                "{}: the data key was changed in commit {} by {} on {} without a rotation proof: the file was replaced by someone without the previous key, or rotated by sops rotate",
                l.rel, c.short(), c.author, c.date()
            ),
        )
        .file(&l.rel)
        .hint(format!(
            "`git show {} -- {}`; if nobody you trust rotated it, restore the version before and run `envv rotate`",
            c.short(),
            l.rel
        ));
        f.commit = Some(c.id.clone());
        f.date = Some(c.date());
        report.findings.push(f);
    }
}
