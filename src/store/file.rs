//! One encrypted `.env` file: open, decrypt, change, seal and save it.
//!
//! An [`EnvFile`] keeps the stored lines as they are (order, blank lines, ciphertexts) plus the
//! parsed sops metadata. Decrypting gives an [`Opened`] file, which holds each line's plaintext
//! and is the only way to change values. Changes re-encrypt only the values that changed, so
//! unchanged values keep their ciphertext byte for byte; [`Opened::seal`] recomputes the MAC and
//! timestamp; [`EnvFile::save`] writes atomically.

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::format::dotenv::{self, Entry, Line};
use crate::format::sops::{
    self, CryptRule, DataKey, EncValue, KeyEntry, MacBuilder, Metadata, ValueType,
};
use crate::keys::{Keyring, Recipient};
use crate::secret::Secret;

/// Largest file envv reads (a dotenv file this size is almost certainly a mistake).
pub const MAX_FILE_BYTES: u64 = crate::os::paths::MAX_READ_BYTES;

/// A stored file split the way the sops dotenv store splits it: data lines, and the `sops_`
/// metadata lines. The one place that tells them apart, for envv reading a file, the hook
/// reading a staged blob and the history reading old versions.
#[derive(Debug, Default)]
pub struct StoredFile {
    /// Data lines in file order, without the blank lines left at the end where the metadata
    /// followed.
    pub lines: Vec<Line>,
    /// The `sops_*` lines: key and stored text, in file order.
    pub meta_pairs: Vec<(String, String)>,
    /// The line number of each `sops_*` key, for messages.
    pub key_lines: Vec<(String, usize)>,
}

impl StoredFile {
    /// Parses stored bytes (see [`dotenv::parse_stored`]) and splits them.
    pub fn parse(file: &str, bytes: &[u8]) -> Result<Self> {
        Ok(Self::split(dotenv::parse_stored(file, bytes)?))
    }

    /// Splits parsed stored lines into data and metadata.
    pub fn split(all: Vec<Line>) -> Self {
        let mut s = StoredFile {
            lines: Vec::with_capacity(all.len()),
            ..Default::default()
        };
        for l in all {
            match l {
                Line::Pair { key, stored, line } if key.starts_with("sops_") => {
                    s.key_lines.push((key.clone(), line));
                    s.meta_pairs.push((key, stored))
                }
                other => s.lines.push(other),
            }
        }
        while matches!(s.lines.last(), Some(Line::Blank)) {
            s.lines.pop();
        }
        s
    }

    /// Whether there are metadata lines (an encrypted file).
    pub fn has_metadata(&self) -> bool {
        !self.meta_pairs.is_empty()
    }

    /// The metadata the `sops_` lines describe.
    pub fn metadata(&self) -> std::result::Result<Metadata, sops::MetadataError> {
        let mut meta = Metadata::from_pairs(
            self.meta_pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        )?;
        meta.key_lines = self.key_lines.clone();
        Ok(meta)
    }
}

/// An encrypted (or not yet encrypted) dotenv file.
#[derive(Debug, Clone)]
pub struct EnvFile {
    path: PathBuf,
    /// The name used in messages (path relative to the repository root).
    name: String,
    /// Data lines in file order (metadata lines excluded).
    lines: Vec<Line>,
    /// sops metadata; `None` for a plaintext file.
    meta: Option<Metadata>,
}

impl EnvFile {
    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The name used in messages (path relative to the repository root).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Data lines in file order (metadata lines excluded).
    pub fn lines(&self) -> &[Line] {
        &self.lines
    }

    /// sops metadata; `None` for a plaintext file.
    pub fn meta(&self) -> Option<&Metadata> {
        self.meta.as_ref()
    }

    /// The metadata, to change key entries or the rule line by hand.
    pub fn meta_mut(&mut self) -> Option<&mut Metadata> {
        self.meta.as_mut()
    }

    /// Reads a file. A missing file is [`Error::MissingFile`].
    /// Only a regular file is read, and at most [`MAX_FILE_BYTES`] of it.
    pub fn open(path: &Path, name: &str) -> Result<Self> {
        let bytes = match crate::os::paths::read_bounded(path, name) {
            Ok(b) => b,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::MissingFile { file: name.into() })
            }
            Err(e) => return Err(e),
        };
        Self::from_bytes(path, name, &bytes)
    }

    /// Reads the file `rel` that the policy in `root` names, refusing paths that leave the
    /// working tree (see [`crate::os::paths::resolve`]).
    pub fn open_in(root: &Path, rel: &str) -> Result<Self> {
        let path = crate::os::paths::resolve(root, rel)?;
        Self::open(&path, rel.trim_start_matches("./"))
    }

    /// An encrypted file assembled from stored lines and metadata (another sops store's
    /// document, read as the dotenv store would write it).
    pub fn from_stored(path: &Path, name: &str, lines: Vec<Line>, meta: Metadata) -> Self {
        EnvFile {
            path: path.to_path_buf(),
            name: name.into(),
            lines,
            meta: Some(meta),
        }
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
                    Entry::Comment(c) => Line::Comment(c.expose_str().unwrap_or_default().into()),
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
        check_stored_lines(name, &all)?;
        let stored = StoredFile::split(all);
        let meta = stored
            .metadata()
            .map_err(|e| Error::format(name, e.to_string()))?;
        Ok(EnvFile {
            path: path.to_path_buf(),
            name: name.into(),
            lines: stored.lines,
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

    /// Names of the keys whose value is encrypted, in file order, each once.
    pub fn encrypted_keys(&self) -> Vec<String> {
        let plan = self.plan();
        let mut out: Vec<String> = Vec::new();
        for (i, l) in self.lines.iter().enumerate() {
            if let Line::Pair { key, stored, .. } = l {
                if plan[i] && sops::is_enc(stored) && !out.contains(key) {
                    out.push(key.clone());
                }
            }
        }
        out
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

    /// The same file with no lines: its name and metadata, enough to [`EnvFile::unlock`] it on
    /// another thread.
    pub fn without_lines(&self) -> EnvFile {
        EnvFile {
            path: self.path.clone(),
            name: self.name.clone(),
            lines: Vec::new(),
            meta: self.meta.clone(),
        }
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
        let meta = self.meta.as_ref().ok_or_else(|| Error::NotEncrypted {
            file: self.name.clone(),
        })?;
        let unwrapped = keyring.unwrap(meta).map_err(|e| match e {
            Error::Crypto(m) if m.contains("sops_shamir_threshold") => Error::format(&self.name, m),
            other => other,
        })?;
        match unwrapped {
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
            None => match keyring.groups_opened() {
                Some(opened) if opened > 0 => Err(Error::TooFewGroups {
                    file: self.name.clone(),
                    needed: meta.groups_needed(),
                    groups: meta.groups.len(),
                    opened,
                    readers: readers(),
                    tried: keyring.tried(),
                }),
                _ => Err(Error::NoIdentity {
                    file: self.name.clone(),
                    readers: readers(),
                    tried: keyring.tried(),
                }),
            },
        }
    }

    /// Decrypts every value and comment and verifies the MAC (unless `verify_mac` is false).
    /// A value in plain text where the file's rule wants ciphertext (a line added by hand, not
    /// covered by the MAC) is refused when the MAC is verified: it could override a real value.
    pub fn decrypt(self, key: &DataKey, verify_mac: bool) -> Result<Opened> {
        let slots = self.decrypt_inner(key, verify_mac, !verify_mac)?;
        Ok(Opened {
            file: self,
            dk: key.clone(),
            slots,
        })
    }

    /// Like [`EnvFile::decrypt`] with the MAC verified over the encrypted values only, keeping
    /// plaintext lines added by hand as pending (for `envv encrypt`, which encrypts them).
    pub fn decrypt_allowing_pending(self, key: &DataKey) -> Result<Opened> {
        let slots = self.decrypt_inner(key, true, true)?;
        Ok(Opened {
            file: self,
            dk: key.clone(),
            slots,
        })
    }

    fn decrypt_inner(
        &self,
        key: &DataKey,
        verify_mac: bool,
        allow_pending: bool,
    ) -> Result<Vec<Slot>> {
        let meta = self.meta.as_ref().ok_or_else(|| Error::NotEncrypted {
            file: self.name.clone(),
        })?;
        let plan = meta.rule.plan(&self.lines);
        let cipher = key.cipher();
        let mut slots: Vec<Slot> = Vec::with_capacity(self.lines.len());
        let mut mac = MacBuilder::new(meta.mac_only_encrypted);
        // A plaintext value ending in CR: sops covers the CR in its MAC when it encrypted a CRLF
        // file; a file converted to CRLF afterwards (git autocrlf) was covered without it. The
        // second MAC is built only when such a value exists.
        let mut mac_lf = self
            .lines
            .iter()
            .any(|l| matches!(l, Line::Pair { stored, .. } if stored.ends_with('\r')))
            .then(|| MacBuilder::new(meta.mac_only_encrypted));
        let mut cr_values = Vec::new();
        let mut aad = Vec::with_capacity(64);
        for (i, line) in self.lines.iter().enumerate() {
            let mut state = State::Sealed;
            let v = match line {
                Line::Blank => None,
                Line::Comment(text) => {
                    if plan[i] && sops::is_enc(text) {
                        let enc = EncValue::parse(text)
                            .map_err(|m| self.line_err(i, format!("encrypted comment: {m}")))?;
                        let ty = enc.ty;
                        let v = cipher.open(enc, b":").ok_or_else(|| Error::Tampered {
                            file: self.name.clone(),
                            line: self.line_no(i),
                            key: "a comment".into(),
                        })?;
                        // sops leaves `comment`-typed comments out of the MAC but hashes a
                        // comment stored as `str`; any other type is an error in sops too.
                        match ty {
                            ValueType::Comment => {}
                            ValueType::Str => {
                                mac.add(v.expose());
                                if let Some(m) = &mut mac_lf {
                                    m.add(v.expose());
                                }
                                state = State::Retype;
                            }
                            _ => {
                                return Err(self.line_err(
                                    i,
                                    format!(
                                        "encrypted comment has type {}; sops reads only comment or str there",
                                        ty.as_str()
                                    ),
                                ))
                            }
                        }
                        Some(v)
                    } else {
                        if plan[i] && !text.is_empty() {
                            state = State::Pending;
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
                            match ty {
                                ValueType::Str => v,
                                ValueType::Comment => {
                                    // sops leaves a comment-typed value out of the MAC: nothing
                                    // would authenticate it.
                                    return Err(self.line_err(
                                        i,
                                        format!("value of {k} has type comment, which sops leaves out of the MAC; refusing it (restore the file with `git checkout -- {}`)", self.name),
                                    ));
                                }
                                _ => {
                                    let typed = sops::decode_typed(ty, &v).map_err(|m| {
                                        self.line_err(i, format!("value of {k} {m}"))
                                    })?;
                                    mac.add(typed.mac.expose());
                                    if let Some(m) = &mut mac_lf {
                                        m.add(typed.mac.expose());
                                    }
                                    state = State::Retype;
                                    slots.push(Slot {
                                        value: Some(typed.shown),
                                        state,
                                    });
                                    continue;
                                }
                            }
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
                            state = State::Pending;
                            let parsed = parse_plain_value(&self.name, self.line_no(i), k, stored)?;
                            slots.push(Slot {
                                value: Some(parsed),
                                state,
                            });
                            continue;
                        }
                    } else {
                        Secret::new(dotenv::unescape_stored(stored))
                    };
                    if !meta.mac_only_encrypted || plan[i] {
                        mac.add(value.expose());
                        if let Some(m) = &mut mac_lf {
                            let v = value.expose();
                            let mut lf = v.len();
                            if !sops::is_enc(stored) {
                                lf -= v.iter().rev().take_while(|&&b| b == b'\r').count();
                                if lf < v.len() {
                                    cr_values.push((i, lf));
                                }
                            }
                            m.add(&v[..lf]);
                        }
                    }
                    Some(value)
                }
            };
            slots.push(Slot { value: v, state });
        }
        if verify_mac {
            let computed = mac.finish();
            let ok = self.stored_mac(key);
            let mut lf_ok = |stored: &Secret| {
                mac_lf
                    .take()
                    .is_some_and(|m| stored.expose() == m.finish().as_bytes())
            };
            match ok {
                Some(stored) if stored.expose() == computed.as_bytes() => {}
                Some(stored) if lf_ok(&stored) => {
                    for (i, lf) in cr_values {
                        if let Some(v) = &slots[i].value {
                            slots[i].value = Some(Secret::new(v.expose()[..lf].to_vec()));
                        }
                    }
                }
                _ => {
                    return Err(Error::Mac {
                        file: self.name.clone(),
                    })
                }
            }
        }
        Ok(slots)
    }

    /// `value` as the text after `=`: encrypted under `dk` when `encrypt`, else escaped.
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
                return Err(Error::refused(format!(
                    "the value for {key} is not valid UTF-8 text"
                )));
            }
            let mut aad = key.as_bytes().to_vec();
            aad.push(b':');
            Ok(dk.cipher().encrypt(value.expose(), &aad, ValueType::Str))
        } else {
            dotenv::escape_stored(value.expose()).ok_or_else(|| {
                Error::refused(format!("{key} is public (kept in plain text) but its value has a CR or the text \\n, which the sops format cannot store unencrypted"))
            })
        }
    }

    /// The MAC stored in the file, decrypted with `dk`; `None` when `dk` is not the file's data
    /// key (or the MAC line is missing or malformed).
    fn stored_mac(&self, dk: &DataKey) -> Option<Secret> {
        let meta = self.meta.as_ref()?;
        let aad = sops::canonical_time(&meta.lastmodified)?;
        let enc = EncValue::parse(&meta.mac).ok()?;
        dk.cipher().decrypt(&enc, aad.as_bytes())
    }

    /// Whether `dk` is this file's data key: it opens the stored MAC. (The values are not
    /// checked; [`EnvFile::decrypt`] checks them.)
    pub fn opens_mac(&self, dk: &DataKey) -> bool {
        self.stored_mac(dk).is_some()
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

    /// Wraps `dk` for `recipients`, replacing all key entries. Values untouched. A file with key
    /// groups keeps them (see [`EnvFile::regroup`]); `flatten` makes one group instead.
    pub fn rewrap(&mut self, dk: &DataKey, recipients: &[Recipient], flatten: bool) -> Result<()> {
        let groups = self.regroup(recipients, flatten)?;
        let meta = self.meta.as_mut().expect("rewrap needs metadata");
        if groups.len() == 1 {
            meta.groups = vec![wrap_all(dk, &groups[0])?];
            meta.key_groups_form = false;
            meta.shamir_threshold = None;
            return Ok(());
        }
        // One Shamir share per group, as sops splits it; the threshold stays what it was.
        let needed = meta.groups_needed();
        // The groups a recipient is in come from the file, which anyone can edit.
        meta.groups = split_into_groups(&self.name, dk, &groups, needed)?;
        meta.key_groups_form = true;
        meta.shamir_threshold = Some(needed);
        Ok(())
    }

    /// Whether the file's key groups are exactly `groups` (each as a set, in any order) with
    /// threshold `k`: the layout a threshold environment's policy asks for.
    pub fn has_layout(&self, groups: &[Vec<Recipient>], k: u8) -> bool {
        let Some(meta) = &self.meta else {
            return false;
        };
        if meta.groups.len() != groups.len() || meta.groups_needed() != u64::from(k) {
            return false;
        }
        let same = |g: &[KeyEntry], want: &[Recipient]| {
            g.len() == want.len()
                && want.iter().all(|r| {
                    g.iter()
                        .any(|e| crate::keys::same_recipient(&e.recipient, &r.text))
                })
        };
        let mut used = vec![false; groups.len()];
        meta.groups.iter().all(|g| {
            match (0..groups.len()).find(|&i| !used[i] && same(g, &groups[i])) {
                Some(i) => {
                    used[i] = true;
                    true
                }
                None => false,
            }
        })
    }

    /// Wraps `dk` as one Shamir share per group, any `k` of which recover it (sops key groups
    /// with `shamir_threshold`), as a threshold environment's policy lays them out. Values and
    /// MAC untouched. Lowering the number of groups a file needs is refused unless `flatten`.
    pub fn rewrap_groups(
        &mut self,
        dk: &DataKey,
        groups: &[Vec<Recipient>],
        k: u8,
        flatten: bool,
    ) -> Result<()> {
        let meta = self.meta.as_mut().expect("rewrap needs metadata");
        let before = meta.groups_needed();
        if u64::from(k) < before && !flatten {
            return Err(Error::key_groups(
                &self.name,
                format!("needs {before} key groups to decrypt; the policy asks for {k}"),
                Some("lowering a threshold needs --flatten"),
            ));
        }
        if groups.len() < 2 || usize::from(k) > groups.len() || k < 2 {
            return Err(Error::key_groups(
                &self.name,
                format!(
                    "a threshold of {k} needs at least {k} key groups (has {})",
                    groups.len()
                ),
                None,
            ));
        }
        let groups = split_into_groups(&self.name, dk, groups, u64::from(k))?;
        let meta = self.meta.as_mut().expect("rewrap needs metadata");
        meta.groups = groups;
        meta.key_groups_form = true;
        meta.shamir_threshold = Some(u64::from(k));
        Ok(())
    }

    /// The key groups the file gets for `recipients`: one group for a file with one; for a file
    /// with several, each recipient stays in the group(s) it is in. Refused (unless `flatten`)
    /// when a recipient is in no group (nothing says which group it joins) or a group would lose
    /// all its recipients: both would drop or lower what it takes to decrypt.
    pub fn regroup(&self, recipients: &[Recipient], flatten: bool) -> Result<Vec<Vec<Recipient>>> {
        let meta = self.meta.as_ref().expect("regroup needs metadata");
        if meta.groups.len() <= 1 || flatten {
            return Ok(vec![recipients.to_vec()]);
        }
        let n = meta.groups.len();
        let needed = meta.groups_needed();
        let layout = format!("{n} key groups, any {needed} of which open it");
        let in_group = |g: &[KeyEntry], r: &Recipient| {
            g.iter()
                .any(|e| crate::keys::same_recipient(&e.recipient, &r.text))
        };
        let unplaced: Vec<String> = recipients
            .iter()
            .filter(|r| !meta.groups.iter().any(|g| in_group(g, r)))
            .map(|r| crate::keys::short_key(&r.text))
            .collect();
        if !unplaced.is_empty() {
            return Err(Error::key_groups(&self.name, format!("has {layout}; envv cannot tell which group {} should join", unplaced.join(", ")), Some("add them with sops (key_groups in creation_rules, then `sops updatekeys`), or pass --flatten to make one group that any single reader opens")));
        }
        let groups: Vec<Vec<Recipient>> = meta
            .groups
            .iter()
            .map(|g| {
                recipients
                    .iter()
                    .filter(|r| in_group(g, r))
                    .cloned()
                    .collect()
            })
            .collect();
        if let Some(i) = groups.iter().position(Vec::is_empty) {
            return Err(Error::key_groups(&self.name, format!("has {layout}; this change leaves key group {} with no recipient, which lowers what it takes to decrypt it", i + 1), Some("pass --flatten to make one group that any single reader opens")));
        }
        Ok(groups)
    }

    /// Re-wraps keeping the wrapped entries of recipients that stay (so their lines do not
    /// change) and wrapping only for new ones. Key groups are kept (a new recipient in a file
    /// with several groups is refused, see [`EnvFile::regroup`]) unless `flatten`.
    pub fn rewrap_incremental(
        &mut self,
        dk: &DataKey,
        recipients: &[Recipient],
        flatten: bool,
    ) -> Result<()> {
        let groups = self.regroup(recipients, flatten)?;
        let meta = self.meta.as_mut().expect("rewrap needs metadata");
        if groups.len() > 1 {
            // Same data key and every recipient already in its group: keep their entries.
            for (g, keep) in meta.groups.iter_mut().zip(&groups) {
                g.retain(|e| {
                    keep.iter()
                        .any(|r| crate::keys::same_recipient(&e.recipient, &r.text))
                });
            }
            return Ok(());
        }
        if meta.groups.len() > 1 {
            // Flattening: the data key itself is wrapped for everyone (shares are not).
            return self.rewrap(dk, recipients, true);
        }
        let old: Vec<KeyEntry> = meta.groups.first().cloned().unwrap_or_default();
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

    /// Saves atomically (temp file, fsync, rename), keeping the file's mode.
    pub fn save(&self) -> Result<()> {
        crate::os::files::write_atomic(&self.path, &self.to_bytes(), 0o644)
    }
}

/// A decrypted file: the stored file, its data key, and each line's plaintext.
///
/// The only way to change a file's values. Every method keeps the stored lines and their
/// plaintext in step; values that change are left to be encrypted by [`Opened::seal`], and
/// values that do not keep their ciphertext byte for byte.
#[derive(Clone)]
pub struct Opened {
    file: EnvFile,
    dk: DataKey,
    /// One per line of `file`, in the same order.
    slots: Vec<Slot>,
}

/// The plaintext of one line and whether the next seal must encrypt it.
#[derive(Debug, Clone, Default)]
struct Slot {
    /// A pair's value or a comment's text; `None` for blank lines and empty values.
    value: Option<Secret>,
    state: State,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum State {
    /// Stored as the file's rule wants it.
    #[default]
    Sealed,
    /// Plaintext where the rule wants ciphertext (added by hand, or changed): encrypted by the
    /// next seal.
    Pending,
    /// Ciphertext with a non-string sops type: re-encrypted as a string by the next seal.
    Retype,
}

/// A comment typed in plain text, waiting for the seal to encrypt it. The rule decides from a
/// comment's text whether it is encrypted, so the line holds the text until the seal wipes it
/// and stores the ciphertext instead.
fn pending_comment(text: Secret) -> (Line, Slot) {
    let shown = text.expose_str().unwrap_or_default().to_string();
    (Line::Comment(shown), Slot::new(Some(text), State::Pending))
}

impl Slot {
    fn new(value: Option<Secret>, state: State) -> Self {
        Slot { value, state }
    }
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("file", &self.file.name)
            .field("lines", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl Opened {
    /// The stored file (ciphertexts and metadata) as it is now.
    pub fn file(&self) -> &EnvFile {
        &self.file
    }

    /// The stored file, giving up the plaintext.
    pub fn into_file(self) -> EnvFile {
        self.file
    }

    /// The name used in messages.
    pub fn name(&self) -> &str {
        &self.file.name
    }

    /// The data key the values are encrypted with.
    pub fn data_key(&self) -> &DataKey {
        &self.dk
    }

    /// The value of `key` (its last line).
    pub fn get(&self, key: &str) -> Option<&Secret> {
        self.file
            .find(key)
            .and_then(|i| self.slots[i].value.as_ref())
    }

    /// Each stored line with its plaintext (a pair's value, a comment's text).
    pub fn entries(&self) -> impl Iterator<Item = (&Line, Option<&Secret>)> {
        self.file
            .lines
            .iter()
            .zip(&self.slots)
            .map(|(l, s)| (l, s.value.as_ref()))
    }

    /// [`Opened::entries`], giving up the file: each stored line with its plaintext.
    pub fn into_entries(self) -> impl Iterator<Item = (Line, Option<Secret>)> {
        self.file
            .lines
            .into_iter()
            .zip(self.slots)
            .map(|(l, s)| (l, s.value))
    }

    /// How many lines hold plaintext that the next seal encrypts (lines added by hand).
    pub fn pending(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.state == State::Pending)
            .count()
    }

    /// Sets `key` to `value`. Returns false when the value was already that (nothing changes).
    /// A new key is appended after the last line.
    pub fn set(&mut self, key: &str, value: Secret) -> Result<bool> {
        let idx = self.file.find(key);
        if let Some(i) = idx {
            if self.slots[i].value.as_ref() == Some(&value) && self.slots[i].state == State::Sealed
            {
                return Ok(false);
            }
        }
        let i = match idx {
            Some(i) => i,
            None => self.push_placeholder(key),
        };
        let encrypt = self.file.rule().plan(&self.file.lines)[i];
        let stored = self.file.store_value(&self.dk, key, &value, encrypt)?;
        if let Line::Pair { stored: s, .. } = &mut self.file.lines[i] {
            *s = stored;
        }
        self.slots[i] = Slot::new(Some(value), State::Sealed);
        Ok(true)
    }

    /// Removes every line of `key`. Returns false when it was not there.
    pub fn remove(&mut self, key: &str) -> bool {
        let before = self.file.lines.len();
        let lines = std::mem::take(&mut self.file.lines);
        let slots = std::mem::take(&mut self.slots);
        let (lines, slots): (Vec<Line>, Vec<Slot>) = lines
            .into_iter()
            .zip(slots)
            .filter(|(l, _)| !matches!(l, Line::Pair { key: k, .. } if k == key))
            .unzip();
        self.file.lines = lines;
        self.slots = slots;
        self.file.lines.len() != before
    }

    /// Makes the file hold the edited entries (`envv edit`). Values and comments whose text did
    /// not change keep their stored line (their ciphertext) byte for byte; the others are left
    /// for the next [`Opened::seal`] to encrypt. Returns whether anything changed.
    pub fn apply_edit(&mut self, edited: Vec<Entry>) -> bool {
        use std::collections::{HashMap, VecDeque};
        let old_lines = std::mem::take(&mut self.file.lines);
        let old_slots = std::mem::take(&mut self.slots);
        let mut old_pairs: HashMap<String, usize> = HashMap::new();
        let mut old_comments: HashMap<Vec<u8>, VecDeque<usize>> = HashMap::new();
        for (i, (l, s)) in old_lines.iter().zip(&old_slots).enumerate() {
            if s.state != State::Sealed {
                continue;
            }
            match l {
                Line::Pair { key, .. } => {
                    old_pairs.insert(key.clone(), i);
                }
                Line::Comment(_) => {
                    if let Some(v) = &s.value {
                        old_comments
                            .entry(dotenv::comment_text(v.expose()).to_vec())
                            .or_default()
                            .push_back(i);
                    }
                }
                Line::Blank => {}
            }
        }
        let mut lines = Vec::with_capacity(edited.len());
        let mut slots = Vec::with_capacity(edited.len());
        let mut changed = false;
        let mut push_comment =
            |text: Secret, lines: &mut Vec<Line>, slots: &mut Vec<Slot>| -> bool {
                if let Some(i) = old_comments
                    .get_mut(text.expose())
                    .and_then(|q| q.pop_front())
                {
                    lines.push(old_lines[i].clone());
                    slots.push(old_slots[i].clone());
                    false
                } else {
                    let (line, slot) = pending_comment(text);
                    lines.push(line);
                    slots.push(slot);
                    true
                }
            };
        for e in edited {
            match e {
                Entry::Blank => {
                    lines.push(Line::Blank);
                    slots.push(Slot::default());
                }
                Entry::Comment(text) => changed |= push_comment(text, &mut lines, &mut slots),
                Entry::Pair {
                    key,
                    value,
                    comment,
                    ..
                } => {
                    if let Some(c) = comment {
                        changed |= push_comment(c, &mut lines, &mut slots);
                    }
                    let same = old_pairs
                        .get(&key)
                        .filter(|&&i| old_slots[i].value.as_ref() == Some(&value));
                    match same {
                        Some(&i) => {
                            lines.push(old_lines[i].clone());
                            slots.push(Slot::new(Some(value), State::Sealed));
                        }
                        None => {
                            lines.push(Line::Pair {
                                key,
                                stored: String::new(),
                                line: 0,
                            });
                            slots.push(Slot::new(Some(value), State::Pending));
                            changed = true;
                        }
                    }
                }
            }
        }
        while matches!(lines.last(), Some(Line::Blank)) {
            lines.pop();
            slots.pop();
        }
        let changed = changed || lines != old_lines;
        self.file.lines = lines;
        self.slots = slots;
        changed
    }

    /// Takes on `rule` (the policy's `public` patterns) as the file's rule: every line whose
    /// stored form disagrees with it is left for the next seal to re-encrypt or store in plain
    /// text. Returns the keys that were in plain text and will be encrypted (they were exposed).
    pub fn adopt_rule(&mut self, rule: CryptRule) -> Vec<String> {
        let meta = self
            .file
            .meta
            .as_mut()
            .expect("an opened file is encrypted");
        meta.rule = rule;
        meta.mac_only_encrypted = false;
        let plan = self.file.plan();
        let mut exposed = Vec::new();
        for (i, l) in self.file.lines.iter().enumerate() {
            let (stored, key) = match l {
                Line::Pair { key, stored, .. } => (stored, Some(key)),
                Line::Comment(text) => (text, None),
                Line::Blank => continue,
            };
            if stored.is_empty() || plan[i] == sops::is_enc(stored) {
                continue;
            }
            if let (true, Some(k)) = (plan[i], key) {
                exposed.push(k.clone());
            }
            self.slots[i].state = State::Pending;
        }
        exposed
    }

    /// Gives `key` the stored text `stored` (a ciphertext under this file's data key, taken from
    /// another version of the file) for the plaintext `value`, adding the key when missing.
    pub fn adopt_stored(&mut self, key: &str, stored: String, value: Secret) {
        let i = match self.file.find(key) {
            Some(i) => i,
            None => self.push_placeholder(key),
        };
        self.file.lines[i] = Line::Pair {
            key: key.into(),
            stored,
            line: 0,
        };
        self.slots[i] = Slot::new(Some(value), State::Sealed);
    }

    /// Appends an empty line for `key` (outside the MAC until a value is set): where a new key
    /// goes, or the place of a merge conflict's half. Returns its index.
    pub fn push_placeholder(&mut self, key: &str) -> usize {
        self.file.lines.push(Line::Pair {
            key: key.into(),
            stored: String::new(),
            line: 0,
        });
        self.slots.push(Slot::default());
        self.file.lines.len() - 1
    }

    /// `value` stored for `key` as this file's rule and data key want it (the text after `=`).
    /// (The rule is applied to the key on a line of its own, as for a new key.)
    pub fn stored_form(&self, key: &str, value: &Secret) -> Result<String> {
        let probe = [Line::Pair {
            key: key.into(),
            stored: String::new(),
            line: 0,
        }];
        let encrypt = self.file.rule().plan(&probe)[0];
        self.file.store_value(&self.dk, key, value, encrypt)
    }

    /// The metadata, to change key entries by hand (a merge keeps recipients both sides added).
    pub fn meta_mut(&mut self) -> &mut Metadata {
        self.file
            .meta
            .as_mut()
            .expect("an opened file is encrypted")
    }

    /// Encrypts pending plaintext lines, recomputes the MAC and stamps the time.
    pub fn seal(&mut self) -> Result<()> {
        let plan = self.file.plan();
        let cipher = self.dk.cipher();
        // By index: each step reads the file (its rule, to encrypt) and then writes one line.
        #[allow(clippy::needless_range_loop)]
        for i in 0..self.file.lines.len() {
            if self.slots[i].state == State::Sealed {
                continue;
            }
            self.slots[i].state = State::Sealed;
            let Some(v) = self.slots[i].value.as_ref() else {
                continue;
            };
            let new_text = match &self.file.lines[i] {
                Line::Comment(_) if v.is_empty() => continue,
                Line::Comment(_) if plan[i] => cipher.encrypt(v.expose(), b":", ValueType::Comment),
                // A comment the rule keeps in plain text already holds its text.
                Line::Comment(_) => continue,
                Line::Pair { key, .. } => self.file.store_value(&self.dk, key, v, plan[i])?,
                Line::Blank => continue,
            };
            match &mut self.file.lines[i] {
                Line::Comment(text) => {
                    zeroize::Zeroize::zeroize(text);
                    *text = new_text;
                }
                Line::Pair { stored, .. } => *stored = new_text,
                Line::Blank => {}
            }
        }
        let meta = self.file.meta.as_mut().expect("seal needs metadata");
        let mut mac = MacBuilder::new(meta.mac_only_encrypted);
        for (i, (l, s)) in self.file.lines.iter().zip(&self.slots).enumerate() {
            if let (Line::Pair { .. }, Some(v)) = (l, &s.value) {
                if !meta.mac_only_encrypted || plan[i] {
                    mac.add(v.expose());
                }
            }
        }
        let now = sops::now_timestamp();
        // A rotation proof covers one MAC: a new MAC makes it meaningless.
        meta.foreign.retain(|(k, _)| k != sops::ROTATION_PROOF_KEY);
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
    ) -> Result<Self> {
        let entries = dotenv::parse_plain(name, text)?;
        refuse_duplicate_entries(name, &entries)?;
        let dk = DataKey::generate();
        let file = EnvFile {
            path: path.to_path_buf(),
            name: name.into(),
            lines: Vec::new(),
            meta: Some(Metadata::new(vec![wrap_all(&dk, recipients)?], rule)),
        };
        let mut o = Opened {
            file,
            dk,
            slots: Vec::new(),
        };
        for e in entries {
            match e {
                Entry::Blank => {
                    o.file.lines.push(Line::Blank);
                    o.slots.push(Slot::default());
                }
                Entry::Comment(c) => {
                    let (line, slot) = pending_comment(c);
                    o.file.lines.push(line);
                    o.slots.push(slot);
                }
                Entry::Pair {
                    key,
                    value,
                    comment,
                    ..
                } => {
                    if let Some(c) = comment {
                        let (line, slot) = pending_comment(c);
                        o.file.lines.push(line);
                        o.slots.push(slot);
                    }
                    o.file.lines.push(Line::Pair {
                        key,
                        stored: String::new(),
                        line: 0,
                    });
                    o.slots.push(Slot::new(Some(value), State::Pending));
                }
            }
        }
        o.seal()?;
        Ok(o)
    }

    /// Wraps the data key for `recipients` (see [`EnvFile::rewrap`]).
    pub fn rewrap(&mut self, recipients: &[Recipient], flatten: bool) -> Result<()> {
        self.file.rewrap(&self.dk, recipients, flatten)
    }

    /// Splits the data key into the key groups `groups` with threshold `k` (see
    /// [`EnvFile::rewrap_groups`]).
    pub fn rewrap_groups(&mut self, groups: &[Vec<Recipient>], k: u8, flatten: bool) -> Result<()> {
        self.file.rewrap_groups(&self.dk, groups, k, flatten)
    }

    /// New data key: every value and comment re-encrypted, wrapped for `recipients` (key groups
    /// kept, as [`EnvFile::rewrap`]). The file gets a rotation proof under the previous data
    /// key, so that a reader of the previous version can tell this rotation from a replacement
    /// of the file.
    pub fn rotate(&mut self, recipients: &[Recipient]) -> Result<()> {
        self.rotate_with(recipients, false)
    }

    /// [`Opened::rotate`]; `flatten` makes one key group.
    pub fn rotate_with(&mut self, recipients: &[Recipient], flatten: bool) -> Result<()> {
        // The new key is wrapped first: a refusal (key groups) or a failed wrap leaves the file
        // as it was.
        let dk = DataKey::generate();
        self.file.rewrap(&dk, recipients, flatten)?;
        let previous = std::mem::replace(&mut self.dk, dk);
        let plan = self.file.plan();
        for (i, l) in self.file.lines.iter().enumerate() {
            let encrypted_now = match l {
                Line::Pair { stored, .. } => sops::is_enc(stored),
                Line::Comment(t) => sops::is_enc(t),
                Line::Blank => false,
            };
            if plan[i] && encrypted_now {
                self.slots[i].state = State::Pending;
            }
        }
        self.seal()?;
        let meta = self.file.meta.as_mut().expect("rotate needs metadata");
        let proof = sops::rotation_proof(&previous, &meta.mac, &meta.lastmodified);
        meta.foreign
            .push((sops::ROTATION_PROOF_KEY.to_string(), proof));
        Ok(())
    }

    /// The file as bytes (see [`EnvFile::to_bytes`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.file.to_bytes()
    }

    /// Saves atomically (see [`EnvFile::save`]).
    pub fn save(&self) -> Result<()> {
        self.file.save()
    }
}

/// Splits `dk` into one Shamir share per group, any `needed` of which recover it, and wraps
/// each share for its group's recipients (as sops does with key groups). Refused when a group
/// is empty or when one recipient sits in `needed` groups or more: that reader alone would hold
/// enough shares, whether the groups came from a file (anyone can edit it) or a policy.
fn split_into_groups(
    name: &str,
    dk: &DataKey,
    groups: &[Vec<Recipient>],
    needed: u64,
) -> Result<Vec<Vec<KeyEntry>>> {
    if groups.iter().any(Vec::is_empty) {
        return Err(Error::key_groups(
            name,
            "a key group has no recipient",
            None,
        ));
    }
    for r in groups.iter().flatten() {
        let n = groups
            .iter()
            .filter(|g| {
                g.iter()
                    .any(|o| crate::keys::same_recipient(&o.text, &r.text))
            })
            .count() as u64;
        if n >= needed.max(2) {
            return Err(Error::key_groups(name, format!("{} is in {n} key groups, any {needed} of which open it, so that reader alone would open it", crate::keys::fingerprint(&r.text)), Some("give each reader fewer groups (the policy's reader entries, or `sops updatekeys`), or pass --flatten to make one group")));
        }
    }
    let shares = Zeroizing::new(sops::shamir::split(
        dk.bytes(),
        groups.len() as u8,
        needed as u8,
    ));
    groups
        .iter()
        .zip(shares.iter())
        .map(|(group, share)| {
            group
                .iter()
                .map(|r| {
                    Ok(KeyEntry {
                        recipient: r.text.clone(),
                        enc: r.wrap(share)?,
                    })
                })
                .collect::<Result<Vec<_>>>()
        })
        .collect()
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
    /// Whether the file's recipients are exactly what the policy wants.
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
    // Key groups are not drift: the policy names readers, a file may split its key among them.
    RecipientDrift { missing, extra }
}

/// Wraps a data key for each recipient.
pub fn wrap_all(dk: &DataKey, recipients: &[Recipient]) -> Result<Vec<KeyEntry>> {
    if recipients.is_empty() {
        return Err(Error::refused(
            "no recipients: the policy gives this file no readers",
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

/// Checks what the MAC cannot: a key (or `sops_` metadata key) that appears on two lines (only
/// one of them is the value the MAC was computed for, and an empty one is not covered at all;
/// the error names both lines), and text after the closing `]` of an `ENC[...]` value.
pub fn check_stored_lines(file: &str, lines: &[Line]) -> Result<()> {
    refuse_duplicate_keys(file, lines)?;
    for (i, l) in lines.iter().enumerate() {
        let (what, stored, at) = match l {
            Line::Pair { key, stored, line } => (key.as_str(), stored.as_str(), *line),
            Line::Comment(text) => ("a comment", text.as_str(), i + 1),
            Line::Blank => continue,
        };
        // Base64 has no `]`: the first one closes the value and must be its last byte.
        if sops::is_enc(stored) && memchr::memchr(b']', stored.as_bytes()) != Some(stored.len() - 1)
        {
            let at = if at > 0 { at } else { i + 1 };
            let what = if what.starts_with("sops_") || what == "a comment" {
                what.to_string()
            } else {
                format!("{what}'s value")
            };
            return Err(Error::Parse {
                file: file.into(),
                line: at,
                msg: format!("text after the closing ] of {what} (sops ignores it, nothing authenticates it); restore the file with `git checkout -- {file}`"),
            });
        }
    }
    Ok(())
}

/// Refuses plaintext dotenv input (to encrypt, or from `edit`) that sets a key twice: the
/// encrypted file may hold each key once.
pub fn refuse_duplicate_entries(file: &str, entries: &[Entry]) -> Result<()> {
    let mut seen: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for e in entries {
        if let Entry::Pair { key, line, .. } = e {
            if let Some(first) = seen.insert(key.as_str(), *line) {
                return Err(Error::Parse {
                    file: file.into(),
                    line: *line,
                    msg: format!("{key} appears twice (lines {first} and {line}); keep the one you mean and delete the other"),
                });
            }
        }
    }
    Ok(())
}

/// The duplicate-key half of [`check_stored_lines`].
fn refuse_duplicate_keys(file: &str, lines: &[Line]) -> Result<()> {
    let mut seen: std::collections::HashMap<&str, usize> =
        std::collections::HashMap::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate() {
        if let Line::Pair { key, line, .. } = l {
            let at = if *line > 0 { *line } else { i + 1 };
            if let Some(first) = seen.insert(key.as_str(), at) {
                return Err(Error::Parse {
                    file: file.into(),
                    line: at,
                    msg: format!(
                        "{key} appears twice (lines {first} and {at}); an encrypted file holds each key once and the MAC does not say which one is real: remove the line you did not write (`git log -p -- {file}` shows who added it)"
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Where a file's stored encryption rule disagrees with the policy's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleConflict {
    /// The metadata line (`sops_unencrypted_regex`, `sops_mac_only_encrypted`, ...).
    pub key: String,
    /// Its line in the file, when known.
    pub line: Option<usize>,
    /// The line the policy gives (`sops_unencrypted_suffix=_unencrypted`, ...).
    pub wanted: String,
    /// What is wrong, in words.
    pub why: String,
    /// The policy's `public` patterns that the file's own rule does not have, when the file is
    /// stricter than the policy (the policy widened what stays plain since it was written).
    pub widened: Vec<String>,
}

impl RuleConflict {
    /// The message for errors and findings (names the line, never its regex text).
    pub fn message(&self) -> String {
        let at = self
            .line
            .map(|l| format!(" (line {l})"))
            .unwrap_or_default();
        if !self.widened.is_empty() {
            return format!("its {} line{at} {}", self.key, self.why);
        }
        format!(
            "its {} line{at} {}; what stays plain text is decided by the policy's `public` patterns",
            self.key, self.why
        )
    }

    /// How to fix it.
    pub fn fix(&self, file: &str) -> String {
        if !self.widened.is_empty() {
            return format!(
                "if you did not widen `public` in .sops.yaml, restore it (`git log -p -- .sops.yaml` shows who did); to store those keys in plain text, run `envv encrypt -f {file} --fix-rule` (it asks you to confirm the patterns)"
            );
        }
        format!(
            "if you did not make this change, restore the file with `git checkout -- {file}`; to re-encrypt it under the policy's rule ({}), run `envv encrypt -f {file} --fix-rule`",
            self.wanted
        )
    }
}

impl EnvFile {
    /// Whether the file's own rule lines would leave in plain text something `wanted` (the
    /// policy's rule) encrypts, or leave public values outside the MAC. `None` when they agree.
    pub fn rule_conflict(&self, wanted: &CryptRule) -> Option<RuleConflict> {
        rule_conflict(self.meta.as_ref()?, wanted)
    }
}

/// [`EnvFile::rule_conflict`] on metadata alone (the pre-commit hook has no [`EnvFile`]).
pub fn rule_conflict(meta: &Metadata, wanted: &CryptRule) -> Option<RuleConflict> {
    {
        let wanted_line = format!("sops_{}={}", wanted.meta_name(), wanted.meta_value());
        if !meta.rule.covers(wanted) {
            let key = format!("sops_{}", meta.rule.meta_name());
            let line = meta.line_of(meta.rule.meta_name());
            let widened = widened_patterns(&meta.rule, wanted);
            let why = if !widened.is_empty() {
                format!(
                    "encrypts every key, but the policy's `public` now also leaves in plain text keys matching {}: the policy widened what stays plain since the file was written",
                    quote_patterns(&widened)
                )
            } else if line.is_none() {
                "is missing, so sops's default applies, which leaves in plain text keys the policy encrypts".to_string()
            } else {
                "leaves in plain text keys the policy encrypts".to_string()
            };
            return Some(RuleConflict {
                key,
                line,
                wanted: wanted_line,
                why,
                widened,
            });
        }
        if meta.mac_only_encrypted {
            return Some(RuleConflict {
                key: "sops_mac_only_encrypted".into(),
                line: meta.line_of("mac_only_encrypted"),
                wanted: wanted_line,
                why: "leaves the plain-text values outside the MAC".into(),
                widened: Vec::new(),
            });
        }
        None
    }
}

/// The policy's patterns a file under sops's default rule (every key encrypted, but for the
/// `_unencrypted` suffix that envv never writes) lacks: the policy is the wider one. Empty when
/// the file's rule is anything else.
fn widened_patterns(have: &CryptRule, wanted: &CryptRule) -> Vec<String> {
    if !have.is_default() {
        return Vec::new();
    }
    wanted.public_patterns()
}

/// Patterns for a message: quoted, control characters escaped (they are a pusher's text).
pub fn quote_patterns(patterns: &[String]) -> String {
    patterns
        .iter()
        .map(|p| format!("{p:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl EnvFile {
    /// [`EnvFile::rule_conflict`] as an error (for every command that writes the file).
    pub fn refuse_rule_conflict(&self, wanted: &CryptRule) -> Result<()> {
        match self.rule_conflict(wanted) {
            None => Ok(()),
            Some(c) => Err(Error::refused_hint(
                format!("refusing to write {}: {}", self.name, c.message()),
                c.fix(&self.name),
            )),
        }
    }
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
        let mut f = Opened::encrypt_new(
            Path::new("x"),
            ".env",
            "# top\nA=1\n\nB='two # x'\nC=three # note\n",
            &[r],
            CryptRule::default(),
        )
        .unwrap();
        let dk = f.data_key().clone();
        let bytes = f.to_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(!text.contains("two"), "{text}");
        assert!(text.contains("\n\nB=ENC["), "blank line kept: {text}");
        let reread = EnvFile::from_bytes(Path::new("x"), ".env", &bytes).unwrap();
        let p2 = reread.clone().decrypt(&dk, true).unwrap();
        assert_eq!(p2.get("B").unwrap().expose(), b"two # x");
        assert_eq!(p2.get("C").unwrap().expose(), b"three");
        let stored = |l: &Line| match l {
            Line::Pair { stored, .. } => stored.clone(),
            _ => String::new(),
        };
        let old_a = stored(&reread.lines()[1]);
        assert!(f.set("B", Secret::from_str("new")).unwrap());
        assert!(!f.set("A", Secret::from_str("1")).unwrap());
        f.seal().unwrap();
        assert_eq!(stored(&f.file().lines()[1]), old_a);
        assert!(f.remove("C"));
        f.seal().unwrap();
        let back = EnvFile::from_bytes(Path::new("x"), ".env", &f.to_bytes()).unwrap();
        let p3 = back.clone().decrypt(&dk, true).unwrap();
        assert_eq!(p3.get("B").unwrap().expose(), b"new");
        assert!(p3.get("C").is_none());
    }

    #[test]
    fn encrypted_values_without_metadata_are_refused() {
        let (_id, r) = recipient();
        let f = Opened::encrypt_new(
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
        let f =
            Opened::encrypt_new(Path::new("x"), ".env", text, &[r], CryptRule::default()).unwrap();
        let bytes = f.to_bytes();
        assert_eq!(bytes.len(), bytes.capacity());
        assert!(bytes.ends_with(b"\n") && !bytes.ends_with(b"\n\n"));
    }

    #[test]
    fn crlf_public_values_verify_with_or_without_their_cr() {
        let (_id, r) = recipient();
        let f = Opened::encrypt_new(
            Path::new("x"),
            ".env",
            "A=1\nP_unencrypted=x\n",
            &[r],
            CryptRule::default(),
        )
        .unwrap();
        let dk = f.data_key().clone();
        // Converted to CRLF after sops or envv wrote it (git autocrlf): the MAC covered `x`.
        let crlf = String::from_utf8(f.to_bytes())
            .unwrap()
            .replace('\n', "\r\n");
        let g = EnvFile::from_bytes(Path::new("x"), ".env", crlf.as_bytes()).unwrap();
        let p = g.clone().decrypt(&dk, true).unwrap();
        assert_eq!(p.get("P_unencrypted").unwrap().expose(), b"x");
        // A CR the MAC does not cover either way is tampering.
        let edited = crlf.replace("P_unencrypted=x\r", "P_unencrypted=x\r\r\ry");
        let g = EnvFile::from_bytes(Path::new("x"), ".env", edited.as_bytes()).unwrap();
        assert!(matches!(
            g.clone().decrypt(&dk, true),
            Err(Error::Mac { .. })
        ));
    }

    #[test]
    fn mac_detects_plaintext_edit_and_swap() {
        let (_id, r) = recipient();
        let f = Opened::encrypt_new(
            Path::new("x"),
            ".env",
            "A=1\nB=2\nP_unencrypted=x\n",
            &[r],
            CryptRule::default(),
        )
        .unwrap();
        let dk = f.data_key().clone();
        let text = String::from_utf8(f.to_bytes()).unwrap();
        let edited = text.replace("P_unencrypted=x", "P_unencrypted=y");
        let g = EnvFile::from_bytes(Path::new("x"), ".env", edited.as_bytes()).unwrap();
        assert!(matches!(
            g.clone().decrypt(&dk, true),
            Err(Error::Mac { .. })
        ));
        assert!(g.clone().decrypt(&dk, false).is_ok());
        let a = text.lines().find(|l| l.starts_with("A=")).unwrap()[2..].to_string();
        let b = text.lines().find(|l| l.starts_with("B=")).unwrap()[2..].to_string();
        let swapped = text.replace(&a, "@@").replace(&b, &a).replace("@@", &b);
        let g = EnvFile::from_bytes(Path::new("x"), ".env", swapped.as_bytes()).unwrap();
        assert!(matches!(
            g.clone().decrypt(&dk, true),
            Err(Error::Tampered { .. })
        ));
    }

    #[test]
    fn apply_edit_keeps_unchanged_ciphertexts_and_order() {
        let r = Recipient::parse("age1y7hpnjewjmlg9hz7yycl7mendl9zfzlgr7gh56px4tdrn7fvxehscrzh38")
            .unwrap();
        let text = "# top\nA=1\nB=2\n\nC=3\n";
        let mut f =
            Opened::encrypt_new(Path::new(".env"), ".env", text, &[r], Default::default()).unwrap();
        let before = f.file().lines().to_vec();
        // Reorder, change B, drop C, add a comment and D.
        let edited = dotenv::parse_plain("e", "# top\nB=two\nA=1\n# new\nD='x y' # why\n").unwrap();
        assert!(f.apply_edit(edited));
        f.seal().unwrap();
        let lines = f.file().lines();
        assert_eq!(
            lines[0], before[0],
            "unchanged comment keeps its ciphertext"
        );
        assert_eq!(lines[2], before[1], "A keeps its ciphertext after a move");
        assert_ne!(lines[1], before[2]);
        let keys: Vec<&str> = f.file().keys().collect();
        assert_eq!(keys, ["B", "A", "D"]);
        let dk = f.data_key().clone();
        let again = f.file().clone().decrypt(&dk, true).unwrap();
        assert_eq!(again.get("B").unwrap().expose(), b"two");
        assert_eq!(again.get("D").unwrap().expose(), b"x y");
        assert_eq!(lines.len(), 6, "# top, B, A, # new, # why, D");

        // The same text again changes nothing.
        let mut g = again.clone();
        let shown = dotenv::parse_plain("e", "# top\nB=two\nA=1\n# new\n# why\nD='x y'\n").unwrap();
        assert!(!g.apply_edit(shown));
        assert_eq!(g.file().lines(), f.file().lines());
    }

    #[test]
    fn remove_keeps_every_other_line_with_its_value() {
        let r = Recipient::parse("age1y7hpnjewjmlg9hz7yycl7mendl9zfzlgr7gh56px4tdrn7fvxehscrzh38")
            .unwrap();
        let mut f = Opened::encrypt_new(
            Path::new(".env"),
            ".env",
            "A=1\nB=2\nC=4\n",
            &[r],
            Default::default(),
        )
        .unwrap();
        f.push_placeholder("A");
        assert!(f.remove("A"));
        assert!(!f.remove("A"));
        assert_eq!(f.get("B").unwrap().expose(), b"2");
        assert_eq!(f.get("C").unwrap().expose(), b"4");
        let entries: Vec<_> = f
            .entries()
            .map(|(_, v)| v.map(|v| v.expose().to_vec()))
            .collect();
        assert_eq!(entries, [Some(b"2".to_vec()), Some(b"4".to_vec())]);
    }
}
