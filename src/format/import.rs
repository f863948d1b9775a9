//! Reading the secrets of another tool's file, for `envv import`.
//!
//! Teams arrive with secrets in dotenvx-encrypted `.env` files, in sops JSON, YAML or dotenv
//! files, or in plaintext dotenv. This module turns such a file into key/value pairs in memory
//! (every value a zeroized [`Secret`]); the CLI then writes them through the ordinary store write
//! path, so an import obeys the same policy and trust checks as `envv set`.
//!
//! * dotenvx: values `encrypted:<base64>` are ECIES over secp256k1 (ephemeral uncompressed key,
//!   HKDF-SHA256, AES-256-GCM with a 16-byte nonce), the scheme of `eciesjs` that dotenvx uses;
//!   the `ecies` crate implements it. The private key comes from `DOTENV_PRIVATE_KEY[_ENV]` in
//!   the environment or from the `.env.keys` file beside the source. `DOTENV_PUBLIC_KEY*` lines
//!   are left out.
//! * sops: the MAC is verified and the caller's identities open the data key. JSON and YAML
//!   documents must be flat maps; a nested value is refused, naming its path.
//! * plaintext dotenv: envv's own dotenv rules.

use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use zeroize::Zeroizing;

use crate::error::{Error, IoContext, Result};
use crate::format::dotenv::{self, Entry, Line};
use crate::format::sops::{self, Metadata};
use crate::keys::Keyring;
use crate::secret::Secret;
use crate::store::file::{EnvFile, MAX_FILE_BYTES};

/// The kinds of file `envv import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A dotenv file with dotenvx `encrypted:` values (plain values allowed too).
    Dotenvx,
    /// A sops-encrypted JSON, YAML or dotenv file.
    Sops,
    /// A plaintext dotenv file.
    Dotenv,
}

impl Format {
    /// The name used on the command line and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Format::Dotenvx => "dotenvx",
            Format::Sops => "sops",
            Format::Dotenv => "dotenv",
        }
    }
}

/// The flavour of a sops file (sops's own `--input-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SopsKind {
    Json,
    Yaml,
    Dotenv,
}

/// What a source file held.
pub struct Imported {
    /// The format the file was read as.
    pub format: Format,
    /// The pairs, in file order, values decrypted.
    pub pairs: Vec<(String, Secret)>,
    /// Keys deliberately left out (dotenvx's public key lines).
    pub skipped: Vec<String>,
    /// Keys whose value holds a `$`: dotenvx and some loaders expand these at run time, envv
    /// stores them literally.
    pub has_dollar: Vec<String>,
}

/// Where to look up `DOTENV_PRIVATE_KEY*` variables (the process environment, in the CLI).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Guesses the format of a file from its name and content.
pub fn detect(path: &Path, bytes: &[u8]) -> Format {
    if sops_kind(path, bytes).is_some() {
        return Format::Sops;
    }
    let text = String::from_utf8_lossy(bytes);
    let dotenvx = text.lines().any(|l| {
        let l = l.trim_start();
        let l = l.strip_prefix("export ").unwrap_or(l).trim_start();
        l.starts_with("DOTENV_PUBLIC_KEY")
            || l.split_once('=').is_some_and(|(_, v)| {
                v.trim_start_matches(['"', '\'', ' '])
                    .starts_with("encrypted:")
            })
    });
    if dotenvx {
        Format::Dotenvx
    } else {
        Format::Dotenv
    }
}

/// Which sops flavour a file is: JSON or YAML by its name or shape, dotenv when it has
/// `sops_` lines; `None` for a dotenv file without sops metadata.
fn sops_kind(path: &Path, bytes: &[u8]) -> Option<SopsKind> {
    let text = String::from_utf8_lossy(bytes);
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    // A JSON or YAML document is never dotenv: it is read as sops, which says so when the
    // `sops` map is missing.
    if trimmed.starts_with('{') || ext == "json" {
        return Some(SopsKind::Json);
    }
    if matches!(ext, "yaml" | "yml")
        || text
            .lines()
            .any(|l| l.starts_with("sops:") || l.starts_with("\"sops\":"))
    {
        return Some(SopsKind::Yaml);
    }
    if text
        .lines()
        .any(|l| l.starts_with("sops_") && l.contains('='))
    {
        return Some(SopsKind::Dotenv);
    }
    None
}

/// Reads `path` (named `name` in messages) as `from`, or as detected when `None`.
pub fn read(
    path: &Path,
    name: &str,
    from: Option<Format>,
    keyring: &mut Keyring,
    env: EnvLookup<'_>,
) -> Result<Imported> {
    let bytes = read_bounded(path, name)?;
    if bytes.contains(&0) {
        return Err(Error::format(name, "NUL byte: this is not a text file"));
    }
    let format = from.unwrap_or_else(|| detect(path, &bytes));
    let mut out = match format {
        Format::Dotenvx => read_dotenvx(path, name, &bytes, env)?,
        Format::Dotenv => read_dotenv(name, &bytes)?,
        Format::Sops => {
            let kind = sops_kind(path, &bytes).ok_or_else(|| {
                Error::format(
                    name,
                    "has no sops metadata (no `sops` map, no sops_ lines): not a sops-encrypted file",
                )
            })?;
            read_sops(path, name, &bytes, kind, keyring)?
        }
    };
    for (k, _) in &out.pairs {
        dotenv::validate_key(k).map_err(|m| Error::format(name, format!("cannot import: {m}")))?;
    }
    out.has_dollar = out
        .pairs
        .iter()
        .filter(|(_, v)| v.expose().contains(&b'$'))
        .map(|(k, _)| k.clone())
        .collect();
    Ok(out)
}

fn read_bounded(path: &Path, name: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::MissingFile { file: name.into() })
        }
        Err(e) => return Err(Error::io(path, e)),
    };
    let meta = f.metadata().at(path)?;
    if !meta.is_file() {
        return Err(Error::usage(format!("{name} is not a regular file")));
    }
    let mut bytes = Vec::new();
    f.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .at(path)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(Error::format(
            name,
            format!(
                "larger than {} MiB; refusing to import it",
                MAX_FILE_BYTES >> 20
            ),
        ));
    }
    Ok(bytes)
}

/// Plain pairs of a dotenv text, in order.
fn plain_pairs(name: &str, bytes: &[u8]) -> Result<Vec<(String, Secret, usize)>> {
    let text = dotenv::decode_utf8(name, bytes)?;
    Ok(dotenv::parse_plain(name, text)?
        .into_iter()
        .filter_map(|e| match e {
            Entry::Pair {
                key, value, line, ..
            } => Some((key, value, line)),
            _ => None,
        })
        .collect())
}

fn read_dotenv(name: &str, bytes: &[u8]) -> Result<Imported> {
    let mut pairs = Vec::new();
    for (key, value, line) in plain_pairs(name, bytes)? {
        let v = value.expose();
        let foreign = if v.starts_with(b"encrypted:") {
            Some("a dotenvx-encrypted value: `--from dotenvx` decrypts it")
        } else if v.starts_with(b"ENC[AES256_GCM,") || key.starts_with("sops_") {
            Some("sops-encrypted: `--from sops` decrypts it")
        } else {
            None
        };
        if let Some(why) = foreign {
            return Err(Error::Parse {
                file: name.into(),
                line,
                msg: format!("{key} is {why}; refusing to import ciphertext as a value"),
            });
        }
        pairs.push((key, value));
    }
    Ok(Imported {
        format: Format::Dotenv,
        pairs,
        skipped: Vec::new(),
        has_dollar: Vec::new(),
    })
}

// ---------------------------------------------------------------------------------------------
// dotenvx

/// The `DOTENV_PRIVATE_KEY*` name that opens `path`: from its `DOTENV_PUBLIC_KEY*` line when it
/// has one, else from the file name as dotenvx names it (`.env.production` → `_PRODUCTION`).
fn private_key_name(path: &Path, public_names: &[String]) -> String {
    if let Some(p) = public_names.first() {
        return p.replacen("DOTENV_PUBLIC_KEY", "DOTENV_PRIVATE_KEY", 1);
    }
    let file = path.file_name().and_then(|f| f.to_str()).unwrap_or("");
    match file.strip_prefix(".env.") {
        Some(rest) if !rest.is_empty() => {
            let suffix: String = rest
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            format!("DOTENV_PRIVATE_KEY_{suffix}")
        }
        _ => "DOTENV_PRIVATE_KEY".into(),
    }
}

/// The private keys (hex, possibly several separated by commas) for `key_name`: the
/// environment first, then `.env.keys` beside the file. Returns them and where they came from.
fn private_keys(
    path: &Path,
    name: &str,
    key_name: &str,
    env: EnvLookup<'_>,
) -> Result<(Vec<Zeroizing<Vec<u8>>>, String)> {
    let (text, origin) = match env(key_name).filter(|v| !v.trim().is_empty()) {
        Some(v) => (Zeroizing::new(v), format!("${key_name}")),
        None => {
            let keys_path: PathBuf = path
                .parent()
                .map(|d| d.join(".env.keys"))
                .unwrap_or_else(|| PathBuf::from(".env.keys"));
            let keys_name = if path.parent().is_some_and(|d| !d.as_os_str().is_empty()) {
                format!("{} beside {name}", keys_path.display())
            } else {
                ".env.keys".to_string()
            };
            let missing = || {
                Error::usage_hint(format!("cannot decrypt {name}: {key_name} is neither set in the environment nor in a .env.keys file beside it"), format!("set {key_name}=<hex key>, or put the .env.keys file next to {name}"))
            };
            let bytes = match read_bounded(&keys_path, &keys_name) {
                Ok(b) => Zeroizing::new(b),
                Err(Error::MissingFile { .. }) => return Err(missing()),
                Err(e) => return Err(e),
            };
            let found = plain_pairs(&keys_name, &bytes)?
                .into_iter()
                .find(|(k, _, _)| k == key_name)
                .ok_or_else(missing)?;
            let v = found.1.expose_str().unwrap_or_default().to_string();
            (Zeroizing::new(v), format!("{key_name} in {keys_name}"))
        }
    };
    let mut keys = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let raw = decode_hex(part).ok_or_else(|| {
            Error::usage(format!(
                "{origin} is not a dotenvx private key (64 hexadecimal characters)"
            ))
        })?;
        keys.push(raw);
    }
    if keys.is_empty() {
        return Err(Error::usage(format!("{origin} is empty")));
    }
    Ok((keys, origin))
}

fn decode_hex(s: &str) -> Option<Zeroizing<Vec<u8>>> {
    if s.len() != 64 {
        return None;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = Zeroizing::new(Vec::with_capacity(32));
    for pair in s.as_bytes().chunks(2) {
        out.push(nib(pair[0])? << 4 | nib(pair[1])?);
    }
    Some(out)
}

fn read_dotenvx(path: &Path, name: &str, bytes: &[u8], env: EnvLookup<'_>) -> Result<Imported> {
    use base64::Engine;
    let entries = plain_pairs(name, bytes)?;
    let (skipped, data): (Vec<_>, Vec<_>) = entries
        .into_iter()
        .partition(|(k, _, _)| k.starts_with("DOTENV_PUBLIC_KEY"));
    let skipped: Vec<String> = skipped.into_iter().map(|(k, _, _)| k).collect();
    let mut keys: Option<(Vec<Zeroizing<Vec<u8>>>, String)> = None;
    let mut pairs = Vec::with_capacity(data.len());
    for (key, value, line) in data {
        let Some(b64) = value.expose().strip_prefix(b"encrypted:") else {
            pairs.push((key, value));
            continue;
        };
        if keys.is_none() {
            let key_name = private_key_name(path, &skipped);
            keys = Some(private_keys(path, name, &key_name, env)?);
        }
        let (sks, origin) = keys.as_ref().expect("set above");
        let bad = |msg: String| Error::Parse {
            file: name.into(),
            line,
            msg,
        };
        // dotenvx reads an unquoted value up to the first `#`, so `encrypted:...==#note` holds
        // the base64 before the `#`; base64 has no `#`, no space and no quote.
        let end = b64
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')))
            .unwrap_or(b64.len());
        let ct = base64::engine::general_purpose::STANDARD
            .decode(&b64[..end])
            .map_err(|_| bad(format!("the dotenvx value of {key} is not valid base64")))?;
        let plain = sks
            .iter()
            .find_map(|sk| ecies::decrypt(sk, &ct).ok())
            .ok_or_else(|| {
                bad(format!(
                    "the dotenvx value of {key} does not decrypt with {origin} (another file's key, or the value was edited)"
                ))
            })?;
        let plain = Secret::new(plain);
        if plain.expose_str().is_none() {
            return Err(bad(format!(
                "the decrypted value of {key} is not UTF-8 text"
            )));
        }
        pairs.push((key, plain));
    }
    Ok(Imported {
        format: Format::Dotenvx,
        pairs,
        skipped,
        has_dollar: Vec::new(),
    })
}

// ---------------------------------------------------------------------------------------------
// sops

fn read_sops(
    path: &Path,
    name: &str,
    bytes: &[u8],
    kind: SopsKind,
    keyring: &mut Keyring,
) -> Result<Imported> {
    let (f, bools) = match kind {
        SopsKind::Dotenv => (EnvFile::from_bytes(path, name, bytes)?, Vec::new()),
        SopsKind::Json | SopsKind::Yaml => structured_file(path, name, bytes, kind)?,
    };
    if f.meta().is_none() {
        return Err(Error::format(
            name,
            "has no sops metadata: not a sops-encrypted file",
        ));
    }
    let meta = f.meta().expect("checked above");
    let recipients: Vec<String> = meta
        .recipients()
        .into_iter()
        .map(crate::keys::short_key)
        .collect();
    let dk = f.unlock(keyring, || recipients)?;
    let opened = f.decrypt(&dk, true)?;
    let mut pairs = Vec::new();
    for (i, (line, v)) in opened.entries().enumerate() {
        if let (Line::Pair { key, .. }, Some(v)) = (line, v) {
            // An unencrypted YAML/JSON boolean is hashed as sops prints it (`True`); the value
            // a dotenv consumer sees is `true`, as for an encrypted one.
            let v = if bools.contains(&i) {
                Secret::from_str(if v.expose() == b"True" {
                    "true"
                } else {
                    "false"
                })
            } else if kind != SopsKind::Dotenv && is_float(line) {
                // sops stores every JSON number as a float, written without a fraction
                // (`5432`); the dotenv view adds `.0`, but the document said `5432`.
                let b = v.expose();
                Secret::new(b.strip_suffix(b".0").unwrap_or(b).to_vec())
            } else {
                Secret::new(v.expose().to_vec())
            };
            pairs.push((key.clone(), v));
        }
    }
    Ok(Imported {
        format: Format::Sops,
        pairs,
        skipped: Vec::new(),
        has_dollar: Vec::new(),
    })
}

/// Whether a line holds an encrypted value of sops type `float`.
fn is_float(line: &Line) -> bool {
    matches!(line, Line::Pair { stored, .. } if sops::is_enc(stored)
        && sops::EncValue::parse(stored).is_ok_and(|e| e.ty == sops::ValueType::Float))
}

/// A top-level value of a sops JSON/YAML document.
enum Node {
    Str(String),
    Int(String),
    Float(f64),
    Bool(bool),
    Null,
    /// A map or list: the first nested path below it (for the error).
    Nested(String),
}

impl<'de> de::Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Node, E> {
                Ok(Node::Str(v.into()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<Node, E> {
                Ok(Node::Str(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Node, E> {
                Ok(Node::Int(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Node, E> {
                Ok(Node::Int(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Node, E> {
                Ok(Node::Float(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Node, E> {
                Ok(Node::Bool(v))
            }
            fn visit_unit<E: de::Error>(self) -> std::result::Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_none<E: de::Error>(self) -> std::result::Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> std::result::Result<Node, A::Error> {
                let first: Option<String> = m.next_key::<KeyName>()?.map(|k| k.0);
                if first.is_some() {
                    m.next_value::<IgnoredAny>()?;
                }
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Node::Nested(
                    first.map(|k| format!(".{k}")).unwrap_or_default(),
                ))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> std::result::Result<Node, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Node::Nested("[0]".into()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A map key that may be a string or a scalar (YAML allows `1: x`).
struct KeyName(String);

impl<'de> de::Deserialize<'de> for KeyName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyName;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<KeyName, E> {
                Ok(KeyName(v.into()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<KeyName, E> {
                Ok(KeyName(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<KeyName, E> {
                Ok(KeyName(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<KeyName, E> {
                Ok(KeyName(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A whole sops JSON/YAML document: the data entries in document order, and the metadata.
struct Document {
    entries: Vec<(String, Node)>,
    sops: Option<serde_json::Value>,
}

impl<'de> de::Deserialize<'de> for Document {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Document;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of keys to values")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Document, A::Error> {
                let mut doc = Document {
                    entries: Vec::new(),
                    sops: None,
                };
                while let Some(KeyName(k)) = m.next_key()? {
                    if k == "sops" {
                        doc.sops = Some(m.next_value()?);
                    } else {
                        let v: Node = m.next_value()?;
                        doc.entries.push((k, v));
                    }
                }
                Ok(doc)
            }
        }
        d.deserialize_map(V)
    }
}

/// YAML limits for a document that may come from anyone: no alias bombs, one document,
/// duplicate keys refused (sops itself would keep one of them silently).
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: 64,
            max_aliases: 100,
            max_anchors: 100,
            max_nodes: 4_000_000,
            max_events: 8_000_000,
            max_documents: 1,
        },
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
    }
}

/// Builds an [`EnvFile`] view of a flat sops JSON/YAML document: the same values, AADs and MAC
/// order as its dotenv twin, so the dotenv decryption path verifies it. Returns the file and the
/// lines holding unencrypted booleans.
fn structured_file(
    path: &Path,
    name: &str,
    bytes: &[u8],
    kind: SopsKind,
) -> Result<(EnvFile, Vec<usize>)> {
    let text = dotenv::decode_utf8(name, bytes)?;
    let doc: Document = match kind {
        SopsKind::Json => serde_json::from_str(text)
            .map_err(|e| Error::format(name, format!("not valid JSON (line {})", e.line())))?,
        _ => serde_saphyr::from_str_with_options(text, yaml_options()).map_err(|e| {
            let at = e
                .location()
                .map(|l| format!(" (line {})", l.line()))
                .unwrap_or_default();
            Error::format(name, format!("not valid YAML{at}"))
        })?,
    };
    let sops_meta = doc
        .sops
        .ok_or_else(|| Error::format(name, "has no `sops` map: not a sops-encrypted file"))?;
    let mut meta_pairs = Vec::new();
    flatten_meta("sops", &sops_meta, &mut meta_pairs);
    let meta: Metadata =
        Metadata::from_pairs(meta_pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(|e| Error::format(name, e.to_string()))?;
    let mut lines = Vec::with_capacity(doc.entries.len());
    let mut bools = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (key, node) in doc.entries {
        let at = |msg: String| Error::format(name, msg);
        // Checked first: a key is named in a message only once it is a valid name.
        dotenv::validate_key(&key).map_err(|m| at(format!("cannot import: {m}")))?;
        if !seen.insert(key.clone()) {
            return Err(at(format!("{key} appears twice")));
        }
        let stored = match node {
            Node::Str(s) if sops::is_enc(&s) => s,
            Node::Str(s) => dotenv::escape_stored(s.as_bytes()).ok_or_else(|| {
                at(format!(
                    "the unencrypted value of {key} holds a carriage return or the text \\n, which cannot be imported as is"
                ))
            })?,
            Node::Int(s) => s,
            Node::Float(f) => format!("{f}"),
            Node::Bool(b) => {
                bools.push(lines.len());
                if b { "True" } else { "False" }.to_string()
            }
            Node::Null => {
                return Err(at(format!(
                    "{key} is null; envv imports string, number and boolean values"
                )))
            }
            Node::Nested(sub) => {
                return Err(at(format!(
                    "{key}{sub} is nested: envv imports flat maps of keys to values only (flatten {key} into keys of its own, then import)"
                )))
            }
        };
        lines.push(Line::Pair {
            key,
            stored,
            line: 0,
        });
    }
    let f = EnvFile::from_stored(path, name, lines, meta);
    Ok((f, bools))
}

/// Flattens sops's metadata tree the way its dotenv store does (`sops_age__list_0__map_enc`),
/// values escaped as stored dotenv values.
fn flatten_meta(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    use serde_json::Value;
    let top = prefix == "sops";
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = if top {
                    format!("sops_{k}")
                } else {
                    format!("{prefix}__map_{k}")
                };
                flatten_meta(&p, v, out);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                flatten_meta(&format!("{prefix}__list_{i}"), v, out);
            }
        }
        Value::String(s) => out.push((prefix.into(), s.replace('\n', "\\n"))),
        Value::Bool(b) => out.push((prefix.into(), b.to_string())),
        Value::Number(n) => out.push((prefix.into(), n.to_string())),
        Value::Null => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_format() {
        let p = Path::new(".env");
        assert_eq!(detect(p, b"A=1\n"), Format::Dotenv);
        assert_eq!(
            detect(p, b"DOTENV_PUBLIC_KEY=\"02ab\"\nA=encrypted:BAA=\n"),
            Format::Dotenvx
        );
        assert_eq!(detect(p, b"A=\"encrypted:BAA=\"\n"), Format::Dotenvx);
        assert_eq!(detect(p, b"A=ENC[x]\nsops_version=3.11.0\n"), Format::Sops);
        assert_eq!(
            detect(Path::new("s.json"), b"{\"A\": \"x\", \"sops\": {}}"),
            Format::Sops
        );
        assert_eq!(
            detect(Path::new("s.yaml"), b"A: x\nsops:\n  version: 3.11.0\n"),
            Format::Sops
        );
    }

    #[test]
    fn private_key_names_follow_dotenvx() {
        assert_eq!(
            private_key_name(Path::new(".env"), &[]),
            "DOTENV_PRIVATE_KEY"
        );
        assert_eq!(
            private_key_name(Path::new("a/.env.production"), &[]),
            "DOTENV_PRIVATE_KEY_PRODUCTION"
        );
        assert_eq!(
            private_key_name(Path::new(".env.x"), &["DOTENV_PUBLIC_KEY_CI".into()]),
            "DOTENV_PRIVATE_KEY_CI"
        );
    }

    proptest::proptest! {
        /// Whatever a source holds, reading it in any format returns a value or an error,
        /// never a panic (the file may come from anyone who can push).
        #[test]
        fn any_bytes_in_any_format_never_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            json_like in "\\{(\"[A-Z_]{1,4}\": ?(\"[a-z=:]{0,6}\"|[0-9.e-]{1,5}|true|null|\\{\\}|\\[\\]),? ?){0,4}(\"sops\": ?\\{\"age\": ?\\[\\{\\}\\]\\})?\\}",
        ) {
            let dir = tempfile::tempdir().unwrap();
            let keyring_dir = dir.path().join("no-keys");
            for (name, data) in [("x.env", bytes.clone()), ("x.json", json_like.clone().into_bytes()), ("x.yaml", bytes)] {
                let path = dir.path().join(name);
                std::fs::write(&path, &data).unwrap();
                for from in [None, Some(Format::Dotenvx), Some(Format::Sops), Some(Format::Dotenv)] {
                    let mut ring = Keyring::new(std::slice::from_ref(&keyring_dir));
                    let key = "ab".repeat(32);
                    let env = |_: &str| Some(key.clone());
                    let _ = read(&path, name, from, &mut ring, &env);
                }
            }
        }
    }

    #[test]
    fn hex_keys_must_be_32_bytes() {
        assert!(decode_hex(&"ab".repeat(32)).is_some());
        assert!(decode_hex(&"ab".repeat(31)).is_none());
        assert!(decode_hex(&"zz".repeat(32)).is_none());
    }
}
