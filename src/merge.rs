//! Three-way merge of encrypted dotenv files, key by key (the git merge driver).
//!
//! Line-based merges of sops files always conflict on `sops_mac` and `sops_lastmodified`, and
//! they cannot tell a changed value from a re-encrypted one. Here each side is decrypted, values
//! are merged per key, and the result is sealed once: one data key, a fresh MAC, valid
//! metadata. Only a key changed differently on both sides conflicts, with markers around that
//! key alone.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::format::dotenv::{self, Line};
use crate::format::sops::KeyEntry;
use crate::keys::{Keyring, Recipient};
use crate::secret::Secret;
use crate::store::file::{EnvFile, Opened};

/// The result of a merge.
#[derive(Debug)]
pub struct Merged {
    /// The bytes to write to the "ours" file.
    pub bytes: Vec<u8>,
    /// Keys changed differently on both sides (written with conflict markers).
    pub conflicts: Vec<String>,
    /// Notes for the user (a data key change, recipients taken from both sides).
    pub notes: Vec<String>,
}

/// One decrypted side.
struct Version {
    file: EnvFile,
    /// The decrypted file (`None` for an empty base).
    opened: Option<Opened>,
    /// key → value (last occurrence wins, as dotenv loaders do).
    values: HashMap<String, Secret>,
    /// key → stored text (to reuse ciphertexts under the same data key).
    stored: HashMap<String, String>,
    order: Vec<String>,
}

fn open_side(label: &str, name: &str, bytes: &[u8], ring: &mut Keyring) -> Result<Version> {
    let file = EnvFile::from_bytes(Path::new(name), name, bytes)?;
    if !file.is_encrypted() && !bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::usage(format!(
            "{name} ({label}) is not an encrypted file"
        )));
    }
    let opened = if file.is_encrypted() {
        let dk = file.unlock(ring, Vec::new)?;
        Some(file.clone().decrypt(&dk, true)?)
    } else {
        None
    };
    let mut values = HashMap::new();
    let mut stored = HashMap::new();
    let mut order = Vec::new();
    for (l, v) in opened.iter().flat_map(|o| o.entries()) {
        if let Line::Pair { key, stored: s, .. } = l {
            if !values.contains_key(key) {
                order.push(key.clone());
            }
            values.insert(key.clone(), v.cloned().unwrap_or_default());
            stored.insert(key.clone(), s.clone());
        }
    }
    Ok(Version {
        file,
        opened,
        values,
        stored,
        order,
    })
}

/// What a key becomes.
enum Pick {
    Keep,
    Take(Secret),
    Remove,
    Conflict(Option<Secret>),
}

/// Merges `base`, `ours` and `theirs` (file contents; `base` may be empty for an add/add).
/// `name` is the file's path for messages. Fails (without a result) when a side cannot be
/// decrypted or read; the caller then falls back to a plain conflict. When the sides use
/// different data keys, the new one is wrapped only for shared recipients that `confirmed`
/// accepts: a recipient entry in a file proves nothing (anyone can add one), so a merge that
/// makes a new data key must not hand it to whoever the files list.
pub fn merge(
    name: &str,
    base: &[u8],
    ours: &[u8],
    theirs: &[u8],
    ring: &mut Keyring,
    confirmed: &dyn Fn(&str) -> bool,
) -> Result<Merged> {
    let o = open_side("base", name, base, ring)?;
    let mut a = open_side("ours", name, ours, ring)?;
    let b = open_side("theirs", name, theirs, ring)?;
    let dk = |s: &Version| s.opened.as_ref().map(|o| o.data_key().clone());
    let (Some(dk_a), Some(dk_b)) = (dk(&a), dk(&b)) else {
        return Err(Error::usage(format!(
            "{name}: one side of the merge is empty or not encrypted"
        )));
    };
    let mut notes = Vec::new();
    let same_key = dk_a.bytes() == dk_b.bytes();
    // Key groups and thresholds are kept, never lowered: sides that disagree on them are left to
    // a person (`envv updatekeys --flatten` or sops).
    let layout = |s: &Version| {
        s.file
            .meta()
            .map(|m| (m.groups.len().max(1), m.groups_needed()))
    };
    if layout(&a) != layout(&b) || (o.opened.is_some() && layout(&o) != layout(&a)) {
        return Err(Error::key_groups(name, "the sides have different key groups or thresholds; envv does not merge them (that could lower what it takes to decrypt the file)", None));
    }

    let mut union: Vec<String> = a.order.clone();
    for k in b.order.iter().chain(o.order.iter()) {
        if !union.contains(k) {
            union.push(k.clone());
        }
    }
    let mut picks: Vec<(String, Pick)> = Vec::new();
    for k in &union {
        let (vo, va, vb) = (o.values.get(k), a.values.get(k), b.values.get(k));
        let pick = if va == vb || vb == vo {
            Pick::Keep
        } else if va == vo {
            match vb {
                Some(v) => Pick::Take(v.clone()),
                None => Pick::Remove,
            }
        } else {
            Pick::Conflict(vb.cloned())
        };
        picks.push((k.clone(), pick));
    }

    // The result's data key: ours, unless the sides use different keys (a rotation on one
    // side, e.g. after `member rm`): then a fresh key, so a removed member's key opens nothing.
    let mut f = a.opened.take().expect("ours is encrypted");
    let mut rotated = false;
    let mut conflicts = Vec::new();
    let mut theirs_lines: Vec<(String, Option<String>)> = Vec::new(); // conflicted key → theirs stored
    let mut ours_missing: Vec<String> = Vec::new();
    for (k, pick) in picks {
        match pick {
            Pick::Keep => {}
            Pick::Remove => {
                f.remove(&k);
            }
            Pick::Take(v) => match b.stored.get(&k) {
                // Keep theirs' ciphertext byte for byte (it decrypts with the same key), unless
                // it has a non-string sops type: the MAC covers such a value in another spelling
                // than the one decrypted, so it is encrypted again as a string.
                Some(s) if same_key && !typed(s) => f.adopt_stored(&k, s.clone(), v),
                _ => {
                    f.set(&k, v)?;
                }
            },
            Pick::Conflict(vb) => {
                conflicts.push(k.clone());
                if f.file().find(&k).is_none() {
                    // Removed on our side, changed on theirs: a placeholder line (outside the
                    // MAC) marks where theirs goes; our half of the conflict is empty.
                    f.push_placeholder(&k);
                    ours_missing.push(k.clone());
                }
                let theirs_stored = match vb {
                    Some(v) => Some(f.stored_form(&k, &v)?),
                    None => None,
                };
                theirs_lines.push((k.clone(), theirs_stored));
            }
        }
    }

    // Recipients: ours plus any theirs added (same data key, so their entries are valid).
    let meta_b = b.file.meta().cloned().expect("encrypted");
    if same_key {
        let meta = f.meta_mut();
        if meta.groups.len() == 1 && meta_b.groups.len() == 1 {
            let extra: Vec<KeyEntry> = meta_b.groups[0]
                .iter()
                .filter(|e| {
                    !meta.groups[0]
                        .iter()
                        .any(|m| crate::keys::same_recipient(&m.recipient, &e.recipient))
                })
                .cloned()
                .collect();
            if !extra.is_empty() {
                notes.push(format!("kept {} recipient(s) added by theirs", extra.len()));
                meta.groups[0].extend(extra);
            }
        }
    } else {
        let meta_a = f.file().meta().cloned().expect("encrypted");
        if meta_a.has_foreign_master_keys() || meta_b.has_foreign_master_keys() {
            // A new data key could not be wrapped for the pgp/kms/... entries: their holders
            // would lose the file. Leave it to a person (and sops).
            return Err(Error::refused_hint("the two sides use different data keys and the file also has pgp/kms keys envv cannot re-wrap", "resolve this merge with sops"));
        }
        let shared: Vec<Recipient> = meta_a
            .recipients()
            .into_iter()
            .filter(|r| {
                meta_b
                    .recipients()
                    .iter()
                    .any(|x| crate::keys::same_recipient(r, x))
            })
            .filter_map(|r| Recipient::parse(r).ok())
            .collect();
        let recipients = if shared.is_empty() {
            meta_a
                .recipients()
                .into_iter()
                .filter_map(|r| Recipient::parse(r).ok())
                .collect()
        } else {
            shared
        };
        let listed = recipients.len();
        let recipients: Vec<Recipient> = recipients
            .into_iter()
            .filter(|r| confirmed(&r.text))
            .collect();
        if recipients.is_empty() {
            return Err(Error::refused_hint(format!("{name}: the two sides use different data keys and none of their recipients is confirmed in this clone"), "merge it by hand, then `envv updatekeys`"));
        }
        if recipients.len() < listed {
            notes.push(format!(
                "left out {} recipient(s) not confirmed in this clone; `envv updatekeys` asks about them",
                listed - recipients.len()
            ));
        }
        f.rotate(&recipients)?;
        rotated = true;
        // The conflict halves must decrypt with the new key too.
        for (k, s) in theirs_lines.iter_mut() {
            if s.is_some() {
                let v = b.values.get(k).cloned().unwrap_or_default();
                *s = Some(f.stored_form(k, &v)?);
            }
        }
        notes.push(format!(
            "the two sides use different data keys (a rotation): the result has a new data key for the {} recipient(s) both sides share; run `envv updatekeys` after the merge",
            recipients.len()
        ));
    }
    // With conflicts, the MAC line is a conflict too: ours is valid when every conflict keeps
    // our side, theirs when every conflict keeps their side (both under one timestamp).
    let theirs_mac = if theirs_lines.is_empty() {
        // A rotation sealed the file already; sealing again would drop its rotation proof (it
        // covers one MAC), and the merge would read as a replacement of the file.
        if !rotated {
            f.seal()?;
        }
        None
    } else {
        let mut attempt = 0;
        loop {
            let mut t = f.clone();
            for (k, stored) in &theirs_lines {
                match (stored, b.values.get(k)) {
                    (Some(st), Some(v)) => t.adopt_stored(k, st.clone(), v.clone()),
                    _ => {
                        t.remove(k);
                    }
                }
            }
            t.seal()?;
            f.seal()?;
            let (tm, fm) = (
                t.file().meta().expect("encrypted"),
                f.file().meta().expect("encrypted"),
            );
            if tm.lastmodified == fm.lastmodified || attempt == 3 {
                break Some(tm.mac.clone());
            }
            attempt += 1;
        }
    };

    let mut bytes = Vec::with_capacity(ours.len() + theirs.len() / 4);
    for l in f.file().lines() {
        if let Line::Pair { key, .. } = l {
            if let Some((_, theirs_stored)) = theirs_lines.iter().find(|(k, _)| k == key) {
                bytes.extend_from_slice(b"<<<<<<< ours\n");
                if !ours_missing.contains(key) {
                    dotenv::emit_stored(std::slice::from_ref(l), &mut bytes);
                }
                bytes.extend_from_slice(b"=======\n");
                if let Some(s) = theirs_stored {
                    dotenv::emit_stored(
                        &[Line::Pair {
                            key: key.clone(),
                            stored: s.clone(),
                            line: 0,
                        }],
                        &mut bytes,
                    );
                }
                bytes.extend_from_slice(b">>>>>>> theirs\n");
                continue;
            }
        }
        dotenv::emit_stored(std::slice::from_ref(l), &mut bytes);
    }
    if let Some(m) = f.file().meta() {
        for l in m.to_lines() {
            match (&l, &theirs_mac) {
                (Line::Pair { key, .. }, Some(tmac)) if key == "sops_mac" => {
                    bytes.extend_from_slice(b"<<<<<<< ours\n");
                    dotenv::emit_stored(std::slice::from_ref(&l), &mut bytes);
                    bytes.extend_from_slice(b"=======\n");
                    let theirs_line = Line::Pair {
                        key: key.clone(),
                        stored: tmac.clone(),
                        line: 0,
                    };
                    dotenv::emit_stored(std::slice::from_ref(&theirs_line), &mut bytes);
                    bytes.extend_from_slice(b">>>>>>> theirs\n");
                }
                _ => dotenv::emit_stored(std::slice::from_ref(&l), &mut bytes),
            }
        }
    }
    Ok(Merged {
        bytes,
        conflicts,
        notes,
    })
}

/// Whether a stored value is a ciphertext of a non-string sops type (int, bool, ...).
fn typed(stored: &str) -> bool {
    crate::format::sops::is_enc(stored)
        && crate::format::sops::EncValue::parse(stored)
            .is_ok_and(|e| e.ty != crate::format::sops::ValueType::Str)
}

/// A plain conflict for when the caller cannot decrypt: both files whole between markers.
pub fn plain_conflict(ours: &[u8], theirs: &[u8]) -> Vec<u8> {
    let mut out = b"<<<<<<< ours\n".to_vec();
    out.extend_from_slice(ours);
    if !ours.ends_with(b"\n") && !ours.is_empty() {
        out.push(b'\n');
    }
    out.extend_from_slice(b"=======\n");
    out.extend_from_slice(theirs);
    if !theirs.ends_with(b"\n") && !theirs.is_empty() {
        out.push(b'\n');
    }
    out.extend_from_slice(b">>>>>>> theirs\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::sops::CryptRule;

    fn keyring(dir: &Path, name: &str) -> (Keyring, Recipient) {
        let path = dir.join(name);
        let public = crate::keys::keygen(&path).unwrap();
        (Keyring::new(&[path]), Recipient::parse(&public).unwrap())
    }

    fn file(text: &str, r: &Recipient) -> Opened {
        Opened::encrypt_new(
            Path::new(".env"),
            ".env",
            text,
            std::slice::from_ref(r),
            CryptRule::default(),
        )
        .unwrap()
    }

    fn values(bytes: &[u8], ring: &mut Keyring) -> Vec<(String, String)> {
        let f = EnvFile::from_bytes(Path::new(".env"), ".env", bytes).unwrap();
        let dk = f.unlock(ring, Vec::new).unwrap();
        let plain = f.clone().decrypt(&dk, true).unwrap();
        f.keys()
            .map(|k| {
                (
                    k.to_string(),
                    String::from_utf8(plain.get(k).unwrap().expose().to_vec()).unwrap(),
                )
            })
            .collect()
    }

    fn with(f: &Opened, changes: &[(&str, Option<&str>)]) -> Vec<u8> {
        let mut f = f.clone();
        for (k, v) in changes {
            match v {
                Some(v) => {
                    f.set(k, Secret::from_str(v)).unwrap();
                }
                None => {
                    f.remove(k);
                }
            }
        }
        f.seal().unwrap();
        f.to_bytes()
    }

    #[test]
    fn one_sided_changes_merge_and_keep_ciphertexts() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut ring, r) = keyring(tmp.path(), "k.txt");
        let f = file("A=1\nB=2\nC=3\n", &r);
        let base = f.to_bytes();
        let ours = with(&f, &[("A", Some("a")), ("C", None)]);
        let theirs = with(&f, &[("B", Some("b")), ("D", Some("d"))]);
        let m = merge(".env", &base, &ours, &theirs, &mut ring, &|_| true).unwrap();
        assert!(m.conflicts.is_empty());
        let v = values(&m.bytes, &mut ring);
        let want: Vec<(String, String)> = [("A", "a"), ("B", "b"), ("D", "d")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(v, want);
        // theirs' B ciphertext is reused byte for byte (same data key).
        let theirs_b = String::from_utf8(theirs)
            .unwrap()
            .lines()
            .find(|l| l.starts_with("B="))
            .unwrap()
            .to_string();
        assert!(String::from_utf8(m.bytes).unwrap().contains(&theirs_b));
    }

    #[test]
    fn a_rotation_on_one_side_gives_a_fresh_data_key() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut ring, r) = keyring(tmp.path(), "k.txt");
        let f = file("A=1\nB=2\n", &r);
        let base = f.to_bytes();
        let ours = with(&f, &[("A", Some("a"))]);
        let mut g = f.clone();
        g.rotate(std::slice::from_ref(&r)).unwrap();
        let (dk, new_dk) = (f.data_key(), g.data_key());
        let theirs = g.to_bytes();
        let m = merge(".env", &base, &ours, &theirs, &mut ring, &|_| true).unwrap();
        assert!(m.conflicts.is_empty() && !m.notes.is_empty());
        let merged = EnvFile::from_bytes(Path::new(".env"), ".env", &m.bytes).unwrap();
        let got = merged.unlock(&mut ring, Vec::new).unwrap();
        assert!(got.bytes() != dk.bytes() && got.bytes() != new_dk.bytes());
        assert_eq!(
            values(&m.bytes, &mut ring)[0],
            ("A".to_string(), "a".to_string())
        );
        // The result proves that its writer held ours' data key (a rotation, not a
        // replacement of the file).
        let meta = merged.meta().unwrap();
        let proof = meta
            .foreign
            .iter()
            .find(|(k, _)| k == crate::format::sops::ROTATION_PROOF_KEY)
            .map(|(_, v)| v.clone());
        assert_eq!(
            proof,
            Some(crate::format::sops::rotation_proof(
                dk,
                &meta.mac,
                &meta.lastmodified
            ))
        );
    }

    #[test]
    fn a_typed_value_taken_from_theirs_is_stored_as_a_string() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut ring, r) = keyring(tmp.path(), "k.txt");
        let f = file("A=1\nB=2\n", &r);
        let base = f.to_bytes();
        let ours = with(&f, &[("A", Some("a"))]);
        // Theirs holds B as sops writes a bool (the MAC covers `True`, envv shows `true`).
        let mut g = f.clone();
        let typed =
            g.data_key()
                .cipher()
                .encrypt(b"true", b"B:", crate::format::sops::ValueType::Bool);
        g.adopt_stored("B", typed, Secret::from_str("True"));
        g.seal().unwrap();
        let theirs = g.to_bytes();
        assert_eq!(values(&theirs, &mut ring)[1].1, "true");
        let m = merge(".env", &base, &ours, &theirs, &mut ring, &|_| true).unwrap();
        assert!(m.conflicts.is_empty());
        let v = values(&m.bytes, &mut ring);
        assert_eq!(v, [("A".into(), "a".into()), ("B".into(), "true".into())]);
    }

    #[test]
    fn conflicts_and_unreadable_sides() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut ring, r) = keyring(tmp.path(), "k.txt");
        let f = file("A=1\nB=2\n", &r);
        let base = f.to_bytes();
        let ours = with(&f, &[("A", Some("x"))]);
        let theirs = with(&f, &[("A", None)]);
        let m = merge(".env", &base, &ours, &theirs, &mut ring, &|_| true).unwrap();
        assert_eq!(m.conflicts, vec!["A".to_string()]);
        let text = String::from_utf8(m.bytes).unwrap();
        assert!(text.starts_with("<<<<<<< ours\nA=ENC["), "{text}");
        assert!(
            text.contains("=======\n>>>>>>> theirs\nB=ENC["),
            "theirs removed A: {text}"
        );
        let (mut stranger, _) = keyring(tmp.path(), "other.txt");
        assert!(matches!(
            merge(".env", &base, &ours, &theirs, &mut stranger, &|_| true),
            Err(Error::NoIdentity { .. })
        ));
    }
}
