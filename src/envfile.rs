//! One encrypted `.env` file: open, decrypt, change, seal and save it.
//!
//! An [`EnvFile`] keeps the stored lines as they are (order, blank lines, ciphertexts) plus the
//! parsed sops metadata. Decrypting gives a [`Plain`] view aligned with the lines. Changes
//! re-encrypt only the values that changed, so unchanged values keep their ciphertext byte for
//! byte; [`EnvFile::seal`] recomputes the MAC and timestamp; [`EnvFile::save`] writes atomically.

use std::path::{Path, PathBuf};

use crate::dotenv::{self, Entry, Line};
use crate::error::{Error, Result};
use crate::keys::{Keyring, Recipient};
use crate::secret::Secret;
use crate::sops::{self, CryptRule, DataKey, EncValue, KeyEntry, MacBuilder, Metadata, ValueType};

/// Largest file envv reads (a dotenv file this size is almost certainly a mistake).
pub const MAX_FILE_BYTES: u64 = crate::paths::MAX_READ_BYTES;

/// An encrypted (or not yet encrypted) dotenv file.
#[derive(Debug, Clone)]
pub struct EnvFile {
    pub path: PathBuf,
    /// The name used in messages (path relative to the repository root).
    pub name: String,
    /// Data lines in file order (metadata lines excluded).
    pub lines: Vec<Line>,
    /// sops metadata; `None` for a plaintext file.
    pub meta: Option<Metadata>,
}

/// The decrypted view of a file: one entry per line (pairs and comments), aligned with
/// [`EnvFile::lines`].
#[derive(Debug, Default)]
pub struct Plain {
    pub values: Vec<Option<Secret>>,
    /// Lines holding plaintext where the file's rule wants ciphertext (added by hand); they are
    /// encrypted by the next seal.
    pub pending: Vec<usize>,
    /// Lines whose ciphertext has a non-string sops type; re-encrypted as strings on seal.
    pub retype: Vec<usize>,
}

impl EnvFile {
    /// Reads a file. A missing file is [`Error::MissingFile`].
    /// Only a regular file is read, and at most [`MAX_FILE_BYTES`] of it.
    pub fn open(path: &Path, name: &str) -> Result<Self> {
        let bytes = match crate::paths::read_bounded(path, name) {
            Ok(b) => b,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::MissingFile { file: name.into() })
            }
            Err(e) => return Err(e),
        };
        Self::from_bytes(path, name, &bytes)
    }

    /// Reads the file `rel` that the policy in `root` names, refusing paths that leave the
    /// working tree (see [`crate::paths::resolve`]).
    pub fn open_in(root: &Path, rel: &str) -> Result<Self> {
        let path = crate::paths::resolve(root, rel)?;
        Self::open(&path, rel.trim_start_matches("./"))
    }

    /// An empty, not yet encrypted file at `path`.
    pub fn empty(path: &Path, name: &str) -> Self {
        EnvFile {
            path: path.to_path_buf(),
            name: name.into(),
            lines: Vec::new(),
            meta: None,
        }
    }

    /// Parses file bytes. Files with `sops_*` lines are encrypted files; others are plaintext
    /// dotenv files, parsed with dotenv semantics.
    pub fn from_bytes(path: &Path, name: &str, bytes: &[u8]) -> Result<Self> {
        if bytes.contains(&0) {
            let line = bytes[..bytes.iter().position(|&b| b == 0).unwrap()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            return Err(Error::Parse {
                file: name.into(),
                line,
                msg: "NUL byte: this is not a text file".into(),
            });
        }
        // From the end: sops writes its metadata last, so an encrypted file answers at once.
        let is_sops = bytes
            .rsplit(|&b| b == b'\n')
            .any(|l| l.starts_with(b"sops_") && l.contains(&b'='));
        if !is_sops {
            // Plaintext file: parse it with dotenv semantics (errors come with lines). These lines
            // are for listing only; `encrypt` re-reads the text itself.
            let text = dotenv::decode_utf8(name, bytes)?;
            let mut enc_line = None;
            let lines = dotenv::parse_plain(name, text)?
                .into_iter()
                .map(|e| match e {
                    Entry::Blank => Line::Blank,
                    Entry::Comment(c) => Line::Comment(c),
                    Entry::Pair {
                        key, value, line, ..
                    } => {
                        if sops::is_enc(value.expose_str().unwrap_or_default()) {
                            enc_line.get_or_insert(line);
                        }
                        let stored = if value.is_empty() {
                            String::new()
                        } else {
                            "(plaintext)".to_string()
                        };
                        Line::Pair { key, stored, line }
                    }
                })
                .collect();
            // ENC values without metadata: an encrypted file that lost its sops_ lines
            // (truncated, or deleted by hand). Refused, so it is not read or encrypted as
            // plaintext.
            if let Some(line) = enc_line {
                return Err(Error::format(
                    name,
                    format!("line {line} holds an encrypted value but the file has no sops metadata (sops_ lines): it was truncated or its metadata removed; restore it with `git checkout -- {name}`"),
                ));
            }
            return Ok(EnvFile {
                path: path.to_path_buf(),
                name: name.into(),
                lines,
                meta: None,
            });
        }
        let all = dotenv::parse_stored(name, bytes)?;
        let mut lines = Vec::with_capacity(all.len());
        let mut meta_pairs: Vec<(String, String)> = Vec::new();
        for l in all {
            match l {
                Line::Pair { key, stored, .. } if key.starts_with("sops_") => {
                    meta_pairs.push((key, stored))
                }
                other => lines.push(other),
            }
        }
        // Drop trailing blank lines left where metadata used to follow.
        while matches!(lines.last(), Some(Line::Blank)) {
            lines.pop();
        }
        let meta = Metadata::from_pairs(
            name,
            meta_pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .map_err(|m| Error::Format {
            file: name.into(),
            msg: m.trim_start_matches(&format!("{name}: ")).to_string(),
        })?;
        Ok(EnvFile {
            path: path.to_path_buf(),
            name: name.into(),
            lines,
            meta: Some(meta),
        })
    }

    /// Whether the file has sops metadata.
    pub fn is_encrypted(&self) -> bool {
        self.meta.is_some()
    }

    /// The file as bytes: data lines, then sorted metadata lines.
    pub fn to_bytes(&self) -> Vec<u8> {
        let meta = self
            .meta
            .as_ref()
            .map(Metadata::to_lines)
            .unwrap_or_default();
        // Exact size: one allocation, no copy while growing.
        let size = |l: &Line| match l {
            Line::Blank => 1,
            Line::Comment(c) => c.len() + 2,
            Line::Pair { key, stored, .. } => key.len() + stored.len() + 2,
        };
        let mut out = Vec::with_capacity(self.lines.iter().chain(&meta).map(size).sum());
        dotenv::emit_stored(&self.lines, &mut out);
        dotenv::emit_stored(&meta, &mut out);
        out
    }

    /// Keys in file order (duplicates included).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().filter_map(|l| match l {
            Line::Pair { key, .. } => Some(key.as_str()),
            _ => None,
        })
    }

    /// Index of the last line holding `key`.
    pub fn find(&self, key: &str) -> Option<usize> {
        self.lines
            .iter()
            .rposition(|l| matches!(l, Line::Pair { key: k, .. } if k == key))
    }

    fn rule(&self) -> CryptRule {
        self.meta
            .as_ref()
            .map(|m| m.rule.clone())
            .unwrap_or_default()
    }

    /// Which lines are encrypted under the file's rule.
    pub fn plan(&self) -> Vec<bool> {
        self.rule().plan(&self.lines)
    }

    /// Unwraps the data key. `readers` names who can decrypt, for the error.
    pub fn unlock(
        &self,
        keyring: &mut Keyring,
        readers: impl FnOnce() -> Vec<String>,
    ) -> Result<DataKey> {
        let meta = self.meta.as_ref().ok_or_else(|| {
            Error::Usage(format!(
                "{} is not encrypted yet: run `envv encrypt -f {}`",
                self.name, self.name
            ))
        })?;
        match keyring.unwrap(meta)? {
            Some(k) => Ok(k),
            None if !keyring.damaged().is_empty() => {
                let whose: Vec<String> = keyring
                    .damaged()
                    .iter()
                    .map(|r| crate::keys::short_key(r))
                    .collect();
                Err(Error::format(
                    &self.name,
                    format!(
                        "the data key wrapped for {} does not open with the matching identity: its sops_age lines were edited or damaged (restore them with `git checkout -- {}`)",
                        whose.join(", "),
                        self.name
                    ),
                ))
            }
            None => Err(Error::NoIdentity {
                file: self.name.clone(),
                readers: readers(),
                tried: keyring.tried(),
            }),
        }
    }

    /// Decrypts every value and comment and verifies the MAC (unless `verify_mac` is false).
    /// A value in plain text where the file's rule wants ciphertext (a line added by hand, not
    /// covered by the MAC) is refused when the MAC is verified: it could override a real value.
    pub fn decrypt(&self, key: &DataKey, verify_mac: bool) -> Result<Plain> {
        self.decrypt_inner(key, verify_mac, !verify_mac)
    }

    /// Like [`EnvFile::decrypt`] with the MAC verified over the encrypted values only, keeping
    /// plaintext lines added by hand as pending (for `envv encrypt`, which encrypts them).
    pub fn decrypt_allowing_pending(&self, key: &DataKey) -> Result<Plain> {
        self.decrypt_inner(key, true, true)
    }

    fn decrypt_inner(&self, key: &DataKey, verify_mac: bool, allow_pending: bool) -> Result<Plain> {
        let meta = self
            .meta
            .as_ref()
            .ok_or_else(|| Error::Usage(format!("{} is not encrypted", self.name)))?;
        let plan = meta.rule.plan(&self.lines);
        let cipher = key.cipher();
        let mut plain = Plain {
            values: Vec::with_capacity(self.lines.len()),
            ..Default::default()
        };
        let mut mac = MacBuilder::new(meta.mac_only_encrypted);
        let mut aad = Vec::with_capacity(64);
        for (i, line) in self.lines.iter().enumerate() {
            let v = match line {
                Line::Blank => None,
                Line::Comment(text) => {
                    if plan[i] && sops::is_enc(text) {
                        let enc = EncValue::parse(text)
                            .map_err(|m| self.line_err(i, format!("encrypted comment: {m}")))?;
                        let v = cipher.open(enc, b":").ok_or_else(|| Error::Tampered {
                            file: self.name.clone(),
                            line: self.line_no(i),
                            key: "a comment".into(),
                        })?;
                        Some(v)
                    } else {
                        if plan[i] && !text.is_empty() {
                            plain.pending.push(i);
                        }
                        Some(Secret::from_str(text))
                    }
                }
                Line::Pair { key: k, stored, .. } => {
                    let value = if plan[i] && !stored.is_empty() {
                        if sops::is_enc(stored) {
                            let enc = EncValue::parse(stored).map_err(|m| {
                                self.line_err(i, format!("value of {}: {m}", dotenv::shown_key(k)))
                            })?;
                            aad.clear();
                            aad.extend_from_slice(k.as_bytes());
                            aad.push(b':');
                            let ty = enc.ty;
                            let v = cipher.open(enc, &aad).ok_or_else(|| Error::Tampered {
                                file: self.name.clone(),
                                line: self.line_no(i),
                                key: dotenv::shown_key(k).into_owned(),
                            })?;
                            if ty != ValueType::Str {
                                mac.add(v.expose());
                                plain.retype.push(i);
                                plain.values.push(Some(sops::display_typed(ty, v)));
                                continue;
                            }
                            v
                        } else {
                            // Plaintext typed in by hand: dotenv-parse it; the next seal encrypts it.
                            if !allow_pending {
                                return Err(Error::Parse {
                                    file: self.name.clone(),
                                    line: self.line_no(i),
                                    msg: format!(
                                        "{} is in plain text in an encrypted file and not covered by its MAC (added by hand?); refusing to use it: `envv encrypt -f {}` encrypts it if it is yours",
                                        dotenv::shown_key(k),
                                        self.name
                                    ),
                                });
                            }
                            plain.pending.push(i);
                            let parsed = parse_plain_value(&self.name, self.line_no(i), k, stored)?;
                            plain.values.push(Some(parsed));
                            continue;
                        }
                    } else {
                        Secret::new(dotenv::unescape_stored(stored))
                    };
                    if !meta.mac_only_encrypted || plan[i] {
                        mac.add(value.expose());
                    }
                    Some(value)
                }
            };
            plain.values.push(v);
        }
        if verify_mac {
            let computed = mac.finish();
            let ok = canonical_mac_aad(meta).and_then(|aad| {
                let enc = EncValue::parse(&meta.mac).ok()?;
                cipher.decrypt(&enc, aad.as_bytes())
            });
            match ok {
                Some(stored) if stored.expose() == computed.as_bytes() => {}
                _ => {
                    return Err(Error::Mac {
                        file: self.name.clone(),
                    })
                }
            }
        }
        Ok(plain)
    }

    fn line_no(&self, i: usize) -> usize {
        match &self.lines[i] {
            Line::Pair { line, .. } if *line > 0 => *line,
            _ => i + 1,
        }
    }

    fn line_err(&self, i: usize, msg: String) -> Error {
        Error::Parse {
            file: self.name.clone(),
            line: self.line_no(i),
            msg,
        }
    }

    /// Value of `key` from a decrypted view.
    pub fn get<'a>(&self, plain: &'a Plain, key: &str) -> Option<&'a Secret> {
        self.find(key).and_then(|i| plain.values[i].as_ref())
    }

    /// Sets `key` to `value`. Returns false when the value was already that (nothing changes).
    /// A new key is appended after the last line.
    pub fn set(
        &mut self,
        plain: &mut Plain,
        dk: &DataKey,
        key: &str,
        value: Secret,
    ) -> Result<bool> {
        let idx = self.find(key);
        if let Some(i) = idx {
            if plain.values[i].as_ref() == Some(&value)
                && !plain.pending.contains(&i)
                && !plain.retype.contains(&i)
            {
                return Ok(false);
            }
        }
        let i = match idx {
            Some(i) => i,
            None => {
                self.lines.push(Line::Pair {
                    key: key.into(),
                    stored: String::new(),
                    line: 0,
                });
                plain.values.push(None);
                self.lines.len() - 1
            }
        };
        let encrypt = self.rule().plan(&self.lines)[i];
        let stored = self.store_value(dk, key, &value, encrypt)?;
        if let Line::Pair { stored: s, .. } = &mut self.lines[i] {
            *s = stored;
        }
        plain.values[i] = Some(value);
        plain.pending.retain(|&p| p != i);
        plain.retype.retain(|&p| p != i);
        Ok(true)
    }

    fn store_value(
        &self,
        dk: &DataKey,
        key: &str,
        value: &Secret,
        encrypt: bool,
    ) -> Result<String> {
        if value.is_empty() {
            return Ok(String::new());
        }
        if encrypt {
            if std::str::from_utf8(value.expose()).is_err() {
                return Err(Error::Usage(format!(
                    "the value for {key} is not valid UTF-8 text"
                )));
            }
            let mut aad = key.as_bytes().to_vec();
            aad.push(b':');
            Ok(dk.cipher().encrypt(value.expose(), &aad, ValueType::Str))
        } else {
            dotenv::escape_stored(value.expose()).ok_or_else(|| {
                Error::Usage(format!(
                    "{key} is public (kept in plain text) but its value has a CR or the text \\n, which the sops format cannot store unencrypted"
                ))
            })
        }
    }

    /// Removes every line of `key`. Returns false when it was not there.
    pub fn remove(&mut self, plain: &mut Plain, key: &str) -> bool {
        let before = self.lines.len();
        let mut keep_lines = Vec::with_capacity(before);
        let mut keep_values = Vec::with_capacity(before);
        let mut remap = vec![usize::MAX; before];
        for (i, (l, v)) in std::mem::take(&mut self.lines)
            .into_iter()
            .zip(std::mem::take(&mut plain.values))
            .enumerate()
        {
            if matches!(&l, Line::Pair { key: k, .. } if k == key) {
                continue;
            }
            remap[i] = keep_lines.len();
            keep_lines.push(l);
            keep_values.push(v);
        }
        self.lines = keep_lines;
        plain.values = keep_values;
        plain.pending = plain
            .pending
            .iter()
            .filter_map(|&p| remap.get(p).copied().filter(|&x| x != usize::MAX))
            .collect();
        plain.retype = plain
            .retype
            .iter()
            .filter_map(|&p| remap.get(p).copied().filter(|&x| x != usize::MAX))
            .collect();
        self.lines.len() != before
    }

    /// Encrypts pending plaintext lines, recomputes the MAC and stamps the time.
    pub fn seal(&mut self, plain: &mut Plain, dk: &DataKey) -> Result<()> {
        let plan = self.plan();
        let cipher = dk.cipher();
        let todo: Vec<usize> = plain
            .pending
            .iter()
            .chain(plain.retype.iter())
            .copied()
            .collect();
        for i in todo {
            let Some(v) = plain.values[i].as_ref() else {
                continue;
            };
            let new_text = match &self.lines[i] {
                Line::Comment(_) if v.is_empty() => continue,
                Line::Comment(_) if plan[i] => cipher.encrypt(v.expose(), b":", ValueType::Comment),
                Line::Comment(_) => continue,
                Line::Pair { key, .. } => self.store_value(dk, key, v, plan[i])?,
                Line::Blank => continue,
            };
            match &mut self.lines[i] {
                Line::Comment(text) => *text = new_text,
                Line::Pair { stored, .. } => *stored = new_text,
                Line::Blank => {}
            }
        }
        plain.pending.clear();
        plain.retype.clear();
        let meta = self.meta.as_mut().expect("seal needs metadata");
        let mut mac = MacBuilder::new(meta.mac_only_encrypted);
        for (i, l) in self.lines.iter().enumerate() {
            if let (Line::Pair { .. }, Some(v)) = (l, &plain.values[i]) {
                if !meta.mac_only_encrypted || plan[i] {
                    mac.add(v.expose());
                }
            }
        }
        let now = sops::now_timestamp();
        meta.mac = cipher.encrypt(mac.finish().as_bytes(), now.as_bytes(), ValueType::Str);
        meta.lastmodified = now;
        Ok(())
    }

    /// Turns plaintext dotenv text into an encrypted file for `recipients` (a new data key).
    /// Inline comments become encrypted comment lines above their key.
    pub fn encrypt_new(
        path: &Path,
        name: &str,
        text: &str,
        recipients: &[Recipient],
        rule: CryptRule,
    ) -> Result<(Self, DataKey, Plain)> {
        let entries = dotenv::parse_plain(name, text)?;
        let dk = DataKey::generate();
        let mut file = EnvFile {
            path: path.to_path_buf(),
            name: name.into(),
            lines: Vec::new(),
            meta: None,
        };
        file.meta = Some(Metadata::new(vec![wrap_all(&dk, recipients)?], rule));
        let mut plain = Plain::default();
        for e in entries {
            match e {
                Entry::Blank => {
                    file.lines.push(Line::Blank);
                    plain.values.push(None);
                }
                Entry::Comment(c) => {
                    file.lines.push(Line::Comment(c.clone()));
                    plain.pending.push(file.lines.len() - 1);
                    plain.values.push(Some(Secret::from_str(&c)));
                }
                Entry::Pair {
                    key,
                    value,
                    comment,
                    ..
                } => {
                    if let Some(c) = comment {
                        file.lines.push(Line::Comment(c.clone()));
                        plain.pending.push(file.lines.len() - 1);
                        plain.values.push(Some(Secret::from_str(&c)));
                    }
                    file.lines.push(Line::Pair {
                        key,
                        stored: String::new(),
                        line: 0,
                    });
                    plain.pending.push(file.lines.len() - 1);
                    plain.values.push(Some(value));
                }
            }
        }
        file.seal(&mut plain, &dk)?;
        Ok((file, dk, plain))
    }

    /// Wraps `dk` for `recipients`, replacing all key entries (one group). Values untouched.
    pub fn rewrap(&mut self, dk: &DataKey, recipients: &[Recipient]) -> Result<()> {
        let entries = wrap_all(dk, recipients)?;
        let meta = self.meta.as_mut().expect("rewrap needs metadata");
        meta.groups = vec![entries];
        meta.key_groups_form = false;
        meta.shamir_threshold = None;
        Ok(())
    }

    /// Re-wraps keeping the wrapped entries of recipients that stay (so their lines do not
    /// change) and wrapping only for new ones.
    pub fn rewrap_incremental(&mut self, dk: &DataKey, recipients: &[Recipient]) -> Result<()> {
        let meta = self.meta.as_mut().expect("rewrap needs metadata");
        let old: Vec<KeyEntry> = if meta.groups.len() == 1 {
            meta.groups[0].clone()
        } else {
            Vec::new()
        };
        let mut entries = Vec::with_capacity(recipients.len());
        for r in recipients {
            match old.iter().find(|e| e.recipient == r.text) {
                Some(e) => entries.push(e.clone()),
                None => entries.push(KeyEntry {
                    recipient: r.text.clone(),
                    enc: r.wrap(dk.bytes())?,
                }),
            }
        }
        meta.groups = vec![entries];
        meta.key_groups_form = false;
        meta.shamir_threshold = None;
        Ok(())
    }

    /// New data key: every value and comment re-encrypted, wrapped for `recipients`.
    pub fn rotate(&mut self, plain: &mut Plain, recipients: &[Recipient]) -> Result<DataKey> {
        let dk = DataKey::generate();
        let plan = self.plan();
        for (i, l) in self.lines.iter().enumerate() {
            let encrypted_now = match l {
                Line::Pair { stored, .. } => sops::is_enc(stored),
                Line::Comment(t) => sops::is_enc(t),
                Line::Blank => false,
            };
            if plan[i] && encrypted_now {
                plain.pending.push(i);
            }
        }
        plain.pending.sort_unstable();
        plain.pending.dedup();
        self.rewrap(&dk, recipients)?;
        self.seal(plain, &dk)?;
        Ok(dk)
    }

    /// Saves atomically (temp file, fsync, rename), keeping the file's mode.
    pub fn save(&self) -> Result<()> {
        crate::fsutil::write_atomic(&self.path, &self.to_bytes(), 0o644)
    }
}

/// How a file's recipients differ from what the policy wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecipientDrift {
    /// In the policy, missing from the file (need a re-wrap).
    pub missing: Vec<String>,
    /// In the file, not in the policy (need a rotation).
    pub extra: Vec<String>,
}

impl RecipientDrift {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty()
    }
}

/// Compares a file's recipients with the wanted ones (SSH comments ignored; order ignored).
pub fn recipient_drift(meta: &Metadata, wanted: &[Recipient]) -> RecipientDrift {
    let have = meta.recipients();
    let missing = wanted
        .iter()
        .filter(|w| !have.iter().any(|h| crate::keys::same_recipient(h, &w.text)))
        .map(|w| w.text.clone())
        .collect();
    let extra = have
        .iter()
        .filter(|h| {
            !wanted
                .iter()
                .any(|w| crate::keys::same_recipient(h, &w.text))
        })
        .map(|h| h.to_string())
        .collect();
    let mut d = RecipientDrift { missing, extra };
    if meta.groups.len() > 1 && d.is_empty() {
        // Several key groups where the policy has one: the layout differs too.
        d.extra.push("(key groups)".into());
    }
    d
}

/// Wraps a data key for each recipient.
pub fn wrap_all(dk: &DataKey, recipients: &[Recipient]) -> Result<Vec<KeyEntry>> {
    if recipients.is_empty() {
        return Err(Error::Usage(
            "no recipients: the policy gives this file no readers".into(),
        ));
    }
    recipients
        .iter()
        .map(|r| {
            Ok(KeyEntry {
                recipient: r.text.clone(),
                enc: r.wrap(dk.bytes())?,
            })
        })
        .collect()
}

fn canonical_mac_aad(meta: &Metadata) -> Option<String> {
    sops::canonical_time(&meta.lastmodified)
}

/// Parses a stored plaintext value with dotenv quoting (for values typed into an encrypted file).
fn parse_plain_value(file: &str, line: usize, key: &str, stored: &str) -> Result<Secret> {
    let text = format!(
        "{}={}\n",
        if dotenv::validate_key(key).is_ok() {
            key
        } else {
            "K"
        },
        stored
    );
    let entries = dotenv::parse_plain(file, &text).map_err(|e| match e {
        Error::Parse { msg, .. } => Error::Parse {
            file: file.into(),
            line,
            msg,
        },
        other => other,
    })?;
    for e in entries {
        if let Entry::Pair { value, .. } = e {
            return Ok(value);
        }
    }
    Ok(Secret::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipient() -> (age::x25519::Identity, Recipient) {
        let id = age::x25519::Identity::generate();
        let r = Recipient::parse(&id.to_public().to_string()).unwrap();
        (id, r)
    }

    #[test]
    fn encrypt_set_remove_keep_other_ciphertexts() {
        let (_id, r) = recipient();
        let (mut f, dk, mut plain) = EnvFile::encrypt_new(
            Path::new("x"),
            ".env",
            "# top\nA=1\n\nB='two # x'\nC=three # note\n",
            &[r],
            CryptRule::default(),
        )
        .unwrap();
        let bytes = f.to_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(!text.contains("two"), "{text}");
        assert!(text.contains("\n\nB=ENC["), "blank line kept: {text}");
        let reread = EnvFile::from_bytes(Path::new("x"), ".env", &bytes).unwrap();
        let p2 = reread.decrypt(&dk, true).unwrap();
        assert_eq!(reread.get(&p2, "B").unwrap().expose(), b"two # x");
        assert_eq!(reread.get(&p2, "C").unwrap().expose(), b"three");
        let stored = |l: &Line| match l {
            Line::Pair { stored, .. } => stored.clone(),
            _ => String::new(),
        };
        let old_a = stored(&reread.lines[1]);
        assert!(f
            .set(&mut plain, &dk, "B", Secret::from_str("new"))
            .unwrap());
        assert!(!f.set(&mut plain, &dk, "A", Secret::from_str("1")).unwrap());
        f.seal(&mut plain, &dk).unwrap();
        assert_eq!(stored(&f.lines[1]), old_a);
        assert!(f.remove(&mut plain, "C"));
        f.seal(&mut plain, &dk).unwrap();
        let back = EnvFile::from_bytes(Path::new("x"), ".env", &f.to_bytes()).unwrap();
        let p3 = back.decrypt(&dk, true).unwrap();
        assert_eq!(back.get(&p3, "B").unwrap().expose(), b"new");
        assert!(back.get(&p3, "C").is_none());
    }

    #[test]
    fn encrypted_values_without_metadata_are_refused() {
        let (_id, r) = recipient();
        let (f, _, _) = EnvFile::encrypt_new(
            Path::new("x"),
            ".env",
            "A=1\nB=2\n",
            &[r],
            CryptRule::default(),
        )
        .unwrap();
        let text = String::from_utf8(f.to_bytes()).unwrap();
        let data: String = text
            .lines()
            .filter(|l| !l.starts_with("sops_"))
            .map(|l| format!("{l}\n"))
            .collect();
        let e = EnvFile::from_bytes(Path::new("x"), ".env", data.as_bytes()).unwrap_err();
        assert!(matches!(e, Error::Format { .. }), "{e}");
        assert!(e.to_string().contains("no sops metadata"), "{e}");
        // A truncated last line is refused the same way.
        let cut = &data[..data.len() - 20];
        assert!(EnvFile::from_bytes(Path::new("x"), ".env", cut.as_bytes()).is_err());
    }

    #[test]
    fn to_bytes_allocates_exactly_once() {
        let (_id, r) = recipient();
        let text = "# c\nA=1\n\nB=two\nP_unencrypted=x\n";
        let (f, _, _) =
            EnvFile::encrypt_new(Path::new("x"), ".env", text, &[r], CryptRule::default()).unwrap();
        let bytes = f.to_bytes();
        assert_eq!(bytes.len(), bytes.capacity());
        assert!(bytes.ends_with(b"\n") && !bytes.ends_with(b"\n\n"));
    }

    #[test]
    fn mac_detects_plaintext_edit_and_swap() {
        let (_id, r) = recipient();
        let (f, dk, _) = EnvFile::encrypt_new(
            Path::new("x"),
            ".env",
            "A=1\nB=2\nP_unencrypted=x\n",
            &[r],
            CryptRule::default(),
        )
        .unwrap();
        let text = String::from_utf8(f.to_bytes()).unwrap();
        let edited = text.replace("P_unencrypted=x", "P_unencrypted=y");
        let g = EnvFile::from_bytes(Path::new("x"), ".env", edited.as_bytes()).unwrap();
        assert!(matches!(g.decrypt(&dk, true), Err(Error::Mac { .. })));
        assert!(g.decrypt(&dk, false).is_ok());
        let a = text.lines().find(|l| l.starts_with("A=")).unwrap()[2..].to_string();
        let b = text.lines().find(|l| l.starts_with("B=")).unwrap()[2..].to_string();
        let swapped = text.replace(&a, "@@").replace(&b, &a).replace("@@", &b);
        let g = EnvFile::from_bytes(Path::new("x"), ".env", swapped.as_bytes()).unwrap();
        assert!(matches!(g.decrypt(&dk, true), Err(Error::Tampered { .. })));
    }
}
