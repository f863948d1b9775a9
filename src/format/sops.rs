//! The sops v3 encrypted format: `ENC[...]` values, `sops_*` metadata, the MAC, Shamir shares.
//!
//! Everything here follows sops 3.11's dotenv store byte for byte so that files envv writes
//! decrypt with `sops` and the other way round. Age wrapping of the data key lives in
//! [`crate::keys`]; reading and writing whole files lives in [`crate::store::file`].

use std::collections::BTreeMap;

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{aes::Aes256, AesGcm};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::RngCore;
use regex::Regex;
use sha2::{Digest, Sha256, Sha512};
use zeroize::Zeroizing;

use crate::format::dotenv::{unescape_stored, Line};
use crate::secret::Secret;

/// The sops format version envv writes into new files.
pub const SOPS_VERSION: &str = "3.11.0";
/// The metadata line envv's own rotations add: a keyed hash, under the previous data key, of
/// the new MAC (proof that the writer held the previous key). sops ignores it.
pub const ROTATION_PROOF_KEY: &str = "sops_envv_rotation_proof";

/// The rotation proof of a file whose stored `sops_mac` is `mac` and `sops_lastmodified` is
/// `lastmodified`, written by a holder of `previous`: HMAC-SHA256 under the previous data key,
/// hex. Only a holder of the previous key can write it; a reader of the previous version can
/// check it without the new key.
pub fn rotation_proof(previous: &DataKey, mac: &str, lastmodified: &str) -> String {
    use hmac::Mac;
    let mut h = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(previous.bytes())
        .expect("HMAC takes any key length");
    h.update(b"envv rotation proof v1\0");
    h.update(mac.as_bytes());
    h.update(b"\0");
    h.update(lastmodified.as_bytes());
    h.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
const ENC_PREFIX: &str = "ENC[AES256_GCM,data:";

/// The 32-byte key that encrypts every value of one file.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; 32]>);

/// Largest compiled size of a rule's regular expression. A pusher writes these lines: without
/// a bound, `sops_encrypted_regex=(\w{100}){100}` costs every command that reads the file a large
/// compile (seconds and hundreds of MB under a sanitizer). Real rules are a few KB.
const RULE_REGEX_SIZE_LIMIT: usize = 256 << 10;

/// Compiles the regular expression of an encryption rule (a file's `sops_*_regex` line or the
/// policy's `public`), bounded in size, and remembered for the process: every file one creation
/// rule made carries the same rule, so `check`, `updatekeys` and the hook compile it once.
/// Refusals are remembered too: a pattern over the bound costs a compile up to the bound
/// (about 1.5 ms for `\w{10}`, 20 ms under AddressSanitizer), which a file read again, or
/// every file of a hostile commit carrying the same line, would otherwise pay each time.
pub fn rule_regex(pattern: &str) -> std::result::Result<Regex, regex::Error> {
    static RECENT: RecentRegexes = RecentRegexes::new();
    RECENT.get_or_compile(pattern, |p| {
        regex::RegexBuilder::new(p)
            .size_limit(RULE_REGEX_SIZE_LIMIT)
            .build()
    })
}

/// The last few patterns compiled and what compiling them gave (a regex or the refusal).
struct RecentRegexes(std::sync::Mutex<Vec<(String, std::result::Result<Regex, regex::Error>)>>);

impl RecentRegexes {
    const KEEP: usize = 8;

    const fn new() -> Self {
        RecentRegexes(std::sync::Mutex::new(Vec::new()))
    }

    fn get_or_compile(
        &self,
        pattern: &str,
        compile: impl FnOnce(&str) -> std::result::Result<Regex, regex::Error>,
    ) -> std::result::Result<Regex, regex::Error> {
        if let Ok(recent) = self.0.lock() {
            if let Some((_, r)) = recent.iter().find(|(p, _)| p == pattern) {
                return r.clone();
            }
        }
        let r = compile(pattern);
        if let Ok(mut recent) = self.0.lock() {
            if recent.len() >= Self::KEEP {
                let _evicted = recent.remove(0);
            }
            recent.push((pattern.to_string(), r.clone()));
        }
        r
    }
}

impl DataKey {
    /// A fresh random data key.
    pub fn generate() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut *k);
        DataKey(k)
    }

    /// From exactly 32 bytes.
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        let arr: [u8; 32] = b.try_into().ok()?;
        Some(DataKey(Zeroizing::new(arr)))
    }

    /// The key bytes (for wrapping).
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A value cipher for this key.
    pub fn cipher(&self) -> ValueCipher {
        ValueCipher(AesGcm::<Aes256, U32>::new_from_slice(&self.0[..]).expect("32-byte key"))
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// What the plaintext of an `ENC[...]` value means (its `type:` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    /// `str`: text, used as is.
    Str,
    /// `comment`: the text of an encrypted comment line.
    Comment,
    /// `float`: a number as Go's `strconv.ParseFloat` reads it.
    Float,
    /// `bool`: `true` or `false` as Go's `strconv.ParseBool` reads it.
    Bool,
    /// `int`: an integer as Go's `strconv.Atoi` reads it.
    Int,
    /// `time`: an RFC 3339 timestamp.
    Time,
    /// `bytes`: raw bytes, not necessarily UTF-8.
    Bytes,
}

impl ValueType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "str" => Self::Str,
            "comment" => Self::Comment,
            "float" => Self::Float,
            "bool" => Self::Bool,
            "int" => Self::Int,
            "time" => Self::Time,
            "bytes" => Self::Bytes,
            _ => return None,
        })
    }

    /// The `type:` field text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Str => "str",
            Self::Comment => "comment",
            Self::Float => "float",
            Self::Bool => "bool",
            Self::Int => "int",
            Self::Time => "time",
            Self::Bytes => "bytes",
        }
    }
}

/// A parsed `ENC[AES256_GCM,data:...,iv:...,tag:...,type:...]` string.
#[derive(Debug, Clone)]
pub struct EncValue {
    /// The AES-256-GCM ciphertext (base64-decoded), without the tag.
    pub data: Vec<u8>,
    /// The GCM nonce (base64-decoded); sops writes 32 bytes, and envv decrypts only those.
    pub iv: Vec<u8>,
    /// The GCM authentication tag.
    pub tag: [u8; 16],
    /// What the plaintext means.
    pub ty: ValueType,
}

/// Whether a stored value is an `ENC[...]` string.
pub fn is_enc(stored: &str) -> bool {
    stored.starts_with(ENC_PREFIX)
}

/// Why a stored `ENC[...]` string cannot be read. The messages name the part that is wrong and
/// never the content: the text is ciphertext or, typed by mistake, a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EncValueError {
    /// The text does not start with `ENC[AES256_GCM,data:`.
    #[error("not an ENC[AES256_GCM,...] value")]
    NotEnc,
    /// A field (`iv`, `tag` or `type`) is missing.
    #[error("ENC value has no {0} field")]
    MissingField(&'static str),
    /// There is no closing `]`.
    #[error("ENC value is not closed by ]")]
    Unclosed,
    /// The `type:` is not one of str, int, float, bool, time, bytes.
    #[error("ENC value has an unknown type")]
    UnknownType,
    /// Text follows the closing `]`: sops ignores and drops it, nothing authenticates it.
    #[error("text after the closing ] of the ENC value (not covered by the MAC)")]
    TrailingText,
    /// A field (`data`, `iv` or `tag`) is not valid base64.
    #[error("ENC value has invalid base64 in {0}")]
    BadBase64(&'static str),
    /// The `iv` field is empty.
    #[error("ENC value has an empty iv")]
    EmptyIv,
    /// The `tag` field does not decode to 16 bytes.
    #[error("ENC value tag is not 16 bytes")]
    TagLength,
}

impl EncValue {
    /// Parses an ENC string. The error says which part is wrong, never the content.
    pub fn parse(s: &str) -> Result<Self, EncValueError> {
        use EncValueError as E;
        let rest = s.strip_prefix(ENC_PREFIX).ok_or(E::NotEnc)?;
        // Base64 has no `,`: each field ends at the next comma (a byte search; no substring
        // searcher is built per value, and this runs once per value of a file).
        let (data, rest) = next_field(rest, "iv:").ok_or(E::MissingField("iv"))?;
        let (iv, rest) = next_field(rest, "tag:").ok_or(E::MissingField("tag"))?;
        let (tag, rest) = next_field(rest, "type:").ok_or(E::MissingField("type"))?;
        let end = rest.bytes().position(|b| b == b']').ok_or(E::Unclosed)?;
        let ty = ValueType::parse(&rest[..end]).ok_or(E::UnknownType)?;
        // sops ignores text after the `]` (its pattern is not anchored) and drops it on the next
        // write; nothing authenticates it, so envv refuses it instead of guessing what it means.
        if end + 1 != rest.len() {
            return Err(E::TrailingText);
        }
        let dec =
            |field: &str, what: &'static str| B64.decode(field).map_err(|_| E::BadBase64(what));
        let data = dec(data, "data")?;
        let iv = dec(iv, "iv")?;
        if iv.is_empty() {
            return Err(E::EmptyIv);
        }
        // The tag is decoded on the stack (room for any 24-character field), not into a Vec.
        let mut buf = [0u8; 18];
        let n = B64.decode_slice(tag, &mut buf).map_err(|e| match e {
            base64::DecodeSliceError::OutputSliceTooSmall => E::TagLength,
            base64::DecodeSliceError::DecodeError(_) => E::BadBase64("tag"),
        })?;
        let tag: [u8; 16] = buf[..n].try_into().map_err(|_| E::TagLength)?;
        Ok(EncValue { data, iv, tag, ty })
    }
}

/// Splits `field,name:rest` at the first comma followed by `name`, as `(field, rest)`
/// (memchr: SIMD search, the same crate regex uses).
fn next_field<'a>(s: &'a str, name: &str) -> Option<(&'a str, &'a str)> {
    let mut from = 0;
    while let Some(at) = memchr::memchr(b',', &s.as_bytes()[from..]) {
        let comma = from + at;
        if let Some(rest) = s[comma + 1..].strip_prefix(name) {
            return Some((&s[..comma], rest));
        }
        from = comma + 1;
    }
    None
}

/// AES-256-GCM with sops's 32-byte IVs, bound to one data key.
pub struct ValueCipher(AesGcm<Aes256, U32>);

impl ValueCipher {
    /// Encrypts `plain` with a fresh IV; `aad` is the key name + `:` (or `:` for comments).
    pub fn encrypt(&self, plain: &[u8], aad: &[u8], ty: ValueType) -> String {
        let mut iv = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut iv);
        let mut buf = Zeroizing::new(plain.to_vec());
        let tag = self
            .0
            .encrypt_in_place_detached((&iv).into(), aad, &mut buf)
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        format!(
            "{ENC_PREFIX}{},iv:{},tag:{},type:{}]",
            B64.encode(&buf[..]),
            B64.encode(iv),
            B64.encode(tag),
            ty.as_str()
        )
    }

    /// Decrypts; `None` when authentication fails (wrong key, wrong AAD, edited bytes).
    pub fn decrypt(&self, enc: &EncValue, aad: &[u8]) -> Option<Secret> {
        self.open(enc.clone(), aad)
    }

    /// Like [`ValueCipher::decrypt`] (AEAD "open"), but decrypts in the value's own buffer (no
    /// copy). The tag is checked before anything is decrypted: on failure it holds ciphertext.
    pub fn open(&self, enc: EncValue, aad: &[u8]) -> Option<Secret> {
        // Only sops's 32-byte IVs are produced by any known writer.
        let iv: &[u8; 32] = enc.iv.as_slice().try_into().ok()?;
        let mut buf = enc.data;
        match self
            .0
            .decrypt_in_place_detached(iv.into(), aad, &mut buf, (&enc.tag).into())
        {
            Ok(()) => Some(Secret::new(buf)),
            Err(_) => None,
        }
    }
}

/// A non-string value decrypted as sops decrypts it: `mac` is what sops's MAC covers (Go's
/// `ToBytes` of the parsed value), `shown` what `sops decrypt` prints in dotenv output (and what
/// envv injects). For `bytes` both are the raw plaintext (sops would print Go's `[104 105]`).
#[derive(Debug)]
pub struct Typed {
    /// The bytes the MAC covers for this value.
    pub mac: Secret,
    /// The text shown and injected for this value.
    pub shown: Secret,
}

/// Parses the plaintext of a typed value as sops 3.11 does (`strconv.ParseBool`, `Atoi`,
/// `ParseFloat`, `time.UnmarshalText`) and returns the MAC bytes and the printed form. A
/// plaintext that does not parse as its type is an error (sops fails on it too). `str` and
/// `comment` are not handled here: a string is its own bytes, and a *value* typed `comment` is
/// left out of sops's MAC, so envv refuses it (see [`crate::store::file`]).
pub fn decode_typed(ty: ValueType, plain: &Secret) -> Result<Typed, &'static str> {
    let text = std::str::from_utf8(plain.expose()).map_err(|_| "is not UTF-8 text");
    let both = |s: String| Typed {
        mac: Secret::from_str(&s),
        shown: Secret::new(s.into_bytes()),
    };
    match ty {
        ValueType::Bool => {
            let b = match text? {
                "1" | "t" | "T" | "TRUE" | "true" | "True" => true,
                "0" | "f" | "F" | "FALSE" | "false" | "False" => false,
                _ => return Err("is typed bool but its plaintext is not a boolean"),
            };
            Ok(Typed {
                mac: Secret::from_str(if b { "True" } else { "False" }),
                shown: Secret::from_str(if b { "true" } else { "false" }),
            })
        }
        ValueType::Int => {
            let n: i64 = text?
                .parse()
                .map_err(|_| "is typed int but its plaintext is not a 64-bit integer")?;
            Ok(both(n.to_string()))
        }
        ValueType::Float => {
            let f =
                go_parse_float(text?).ok_or("is typed float but its plaintext is not a number")?;
            Ok(Typed {
                mac: Secret::new(go_format_float(f, false).into_bytes()),
                shown: Secret::new(go_format_float(f, true).into_bytes()),
            })
        }
        ValueType::Time => {
            let (mac, shown) =
                go_time(text?).ok_or("is typed time but its plaintext is not an RFC 3339 time")?;
            Ok(Typed {
                mac: Secret::new(mac.into_bytes()),
                shown: Secret::new(shown.into_bytes()),
            })
        }
        ValueType::Bytes => Ok(Typed {
            mac: plain.clone(),
            shown: plain.clone(),
        }),
        ValueType::Str | ValueType::Comment => Ok(Typed {
            mac: plain.clone(),
            shown: plain.clone(),
        }),
    }
}

/// Go's `strconv.ParseFloat(s, 64)` for decimal input: optional sign, digits with an optional
/// point and exponent, `inf`/`infinity`/`nan` in any case (no sign on `nan`). Out of range is an
/// error, as in Go. Hexadecimal floats (which Go also reads) are refused: no writer makes them.
fn go_parse_float(s: &str) -> Option<f64> {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = unsigned.to_ascii_lowercase();
    if lower == "nan" {
        return (unsigned.len() == s.len()).then_some(f64::NAN);
    }
    if lower == "inf" || lower == "infinity" {
        return Some(if s.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    let ok_chars = unsigned
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if !ok_chars || !unsigned.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let f: f64 = s.parse().ok()?;
    f.is_finite().then_some(f)
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)` (`g = false`: what sops's MAC covers) or sops's
/// dotenv spelling, `FormatFloat(f, 'G', -1, 64)` with `.0` added to integers (`g = true`).
fn go_format_float(f: f64, g: bool) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    // Shortest round-trip digits and exponent, from Rust's own shortest formatting.
    let e = format!("{:e}", f.abs());
    let (mant, exp) = e.split_once('e').expect("{:e} has an exponent");
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let exp: i64 = exp.parse().expect("{:e} exponent is an integer");
    let sign = if f.is_sign_negative() { "-" } else { "" };
    let nd = digits.len() as i64;
    let dp = exp + 1; // position of the decimal point within `digits`
    if g && !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}E{esign}{:02}", exp.unsigned_abs());
    }
    let fixed = if dp <= 0 {
        format!("0.{}{digits}", "0".repeat((-dp) as usize))
    } else if dp >= nd {
        format!("{digits}{}", "0".repeat((dp - nd) as usize))
    } else {
        format!("{}.{}", &digits[..dp as usize], &digits[dp as usize..])
    };
    if g && !fixed.contains('.') {
        return format!("{sign}{fixed}.0");
    }
    format!("{sign}{fixed}")
}

/// Go's `time.Time.UnmarshalText` then `MarshalText` (RFC 3339 with the fraction trimmed: what
/// the MAC covers) and `Format(time.RFC3339)` (what sops prints).
fn go_time(s: &str) -> Option<(String, String)> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    if !(0..=9999).contains(&t.year()) {
        return None;
    }
    let shown = canonical_time(s)?;
    let nanos = t.nanosecond();
    if nanos == 0 {
        return Some((shown.clone(), shown));
    }
    let frac = format!("{nanos:09}");
    let frac = frac.trim_end_matches('0');
    // Insert the fraction after the seconds (the 19th character: YYYY-MM-DDTHH:MM:SS).
    let mac = format!("{}.{frac}{}", &shown[..19], &shown[19..]);
    Some((mac, shown))
}

/// Which values of a file are encrypted: the one crypt rule of a file (sops allows one).
#[derive(Debug, Clone)]
pub enum CryptRule {
    /// `unencrypted_suffix`: pairs whose key ends with the suffix stay plaintext.
    UnencryptedSuffix(String),
    /// `encrypted_suffix`: only pairs whose key ends with the suffix are encrypted.
    EncryptedSuffix(String),
    /// `unencrypted_regex`: pairs whose key matches stay plaintext.
    UnencryptedRegex(Regex),
    /// `encrypted_regex`: only pairs whose key matches are encrypted.
    EncryptedRegex(Regex),
    /// `unencrypted_comment_regex`: a pair below a comment run with a matching line stays
    /// plaintext, as do the comments of the run from the matching one on.
    UnencryptedCommentRegex(Regex),
    /// `encrypted_comment_regex`: only a pair below a comment run with a matching line is
    /// encrypted, with the comments of the run after the matching one.
    EncryptedCommentRegex(Regex),
}

impl Default for CryptRule {
    fn default() -> Self {
        CryptRule::UnencryptedSuffix("_unencrypted".into())
    }
}

impl CryptRule {
    /// The metadata key of the rule, without `sops_` (`unencrypted_suffix`, ...).
    pub fn meta_name(&self) -> &'static str {
        match self {
            CryptRule::UnencryptedSuffix(_) => "unencrypted_suffix",
            CryptRule::EncryptedSuffix(_) => "encrypted_suffix",
            CryptRule::UnencryptedRegex(_) => "unencrypted_regex",
            CryptRule::EncryptedRegex(_) => "encrypted_regex",
            CryptRule::UnencryptedCommentRegex(_) => "unencrypted_comment_regex",
            CryptRule::EncryptedCommentRegex(_) => "encrypted_comment_regex",
        }
    }

    /// The rule's suffix or regex source.
    pub fn meta_value(&self) -> &str {
        match self {
            CryptRule::UnencryptedSuffix(s) | CryptRule::EncryptedSuffix(s) => s,
            CryptRule::UnencryptedRegex(r)
            | CryptRule::EncryptedRegex(r)
            | CryptRule::UnencryptedCommentRegex(r)
            | CryptRule::EncryptedCommentRegex(r) => r.as_str(),
        }
    }

    /// Whether this (stored) rule encrypts every key and comment that `wanted` encrypts. It is
    /// judged on the rules themselves, not on the keys a file has now, so keys added later count
    /// too: the same rule, or an unencrypted suffix that ends with the wanted one.
    pub fn covers(&self, wanted: &CryptRule) -> bool {
        match (self, wanted) {
            (CryptRule::UnencryptedSuffix(have), CryptRule::UnencryptedSuffix(want)) => {
                !have.is_empty() && have.ends_with(want.as_str())
            }
            // `public` patterns added since the file was written: the file's patterns are some
            // of the policy's, so it leaves plain no more than the policy does.
            (CryptRule::UnencryptedRegex(have), CryptRule::UnencryptedRegex(want)) => {
                let parts = |r: &Regex| {
                    union_parts(r.as_str()).unwrap_or_else(|| vec![r.as_str().to_string()])
                };
                let want = parts(want);
                parts(have).iter().all(|p| want.contains(p))
            }
            (have, want) => {
                have.meta_name() == want.meta_name() && have.meta_value() == want.meta_value()
            }
        }
    }

    /// The regex source, for comparing with the policy.
    pub fn describe(&self) -> String {
        format!("{}={}", self.meta_name(), self.meta_value())
    }

    /// For every line, whether it is (or must be) encrypted. Comment runs are judged on the
    /// stored comment text, as sops does when decrypting.
    pub fn plan(&self, lines: &[Line]) -> Vec<bool> {
        let mut out = Vec::with_capacity(lines.len());
        let mut run_match = false; // a comment in the current run matched (comment regex rules)
        for line in lines {
            let enc = match line {
                Line::Blank => false,
                Line::Comment(text) => match self {
                    CryptRule::UnencryptedSuffix(_) | CryptRule::UnencryptedRegex(_) => {
                        !text.is_empty()
                    }
                    CryptRule::EncryptedSuffix(_) | CryptRule::EncryptedRegex(_) => false,
                    CryptRule::UnencryptedCommentRegex(r) => {
                        if !run_match && r.is_match(text) {
                            run_match = true;
                        }
                        !run_match && !text.is_empty()
                    }
                    CryptRule::EncryptedCommentRegex(r) => {
                        let enc = run_match && !text.is_empty();
                        if r.is_match(text) {
                            run_match = true;
                        }
                        enc
                    }
                },
                Line::Pair { key, .. } => {
                    let enc = match self {
                        CryptRule::UnencryptedSuffix(s) => !key.ends_with(s.as_str()),
                        CryptRule::EncryptedSuffix(s) => key.ends_with(s.as_str()),
                        CryptRule::UnencryptedRegex(r) => !r.is_match(key),
                        CryptRule::EncryptedRegex(r) => r.is_match(key),
                        CryptRule::UnencryptedCommentRegex(_) => !run_match,
                        CryptRule::EncryptedCommentRegex(_) => run_match,
                    };
                    run_match = false;
                    enc
                }
            };
            out.push(enc);
        }
        out
    }

    /// The `public` patterns an `unencrypted_regex` rule is made of (the parts of envv's union
    /// form, else the whole regex); none for any other rule.
    pub fn public_patterns(&self) -> Vec<String> {
        match self {
            CryptRule::UnencryptedRegex(r) => {
                union_parts(r.as_str()).unwrap_or_else(|| vec![r.as_str().to_string()])
            }
            _ => Vec::new(),
        }
    }

    /// Whether this is sops's default rule (`unencrypted_suffix=_unencrypted`).
    pub fn is_default(&self) -> bool {
        matches!(self, CryptRule::UnencryptedSuffix(s) if s == "_unencrypted")
    }

    /// Whether one key (outside any comment run) is encrypted.
    pub fn encrypts_key(&self, key: &str) -> bool {
        self.plan(&[Line::Pair {
            key: key.into(),
            stored: String::new(),
            line: 0,
        }])[0]
    }
}

/// The patterns of a regex written as envv writes several `public` patterns,
/// `(?:p1)|(?:p2)|...`, when each part is a valid regex on its own (so the whole matches exactly
/// what one of them matches). `None` for any other regex.
fn union_parts(re: &str) -> Option<Vec<String>> {
    let inner = re.strip_prefix("(?:")?.strip_suffix(')')?;
    let parts: Vec<String> = inner.split(")|(?:").map(str::to_string).collect();
    if parts.len() < 2 || parts.iter().any(|p| Regex::new(p).is_err()) {
        return None;
    }
    Some(parts)
}

/// One age recipient entry of a file: the recipient text and its armored wrapped key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEntry {
    /// The recipient the data key is wrapped for, as stored (`age1…`, SSH or plugin).
    pub recipient: String,
    /// ASCII-armored age file, LF line endings (unescaped).
    pub enc: String,
}

/// The `sops_*` metadata of a file.
#[derive(Debug, Clone)]
pub struct Metadata {
    /// Key groups; a file with a top-level `sops_age__list_*` has exactly one group.
    pub groups: Vec<Vec<KeyEntry>>,
    /// Stored as `sops_key_groups__...` (two or more groups).
    pub key_groups_form: bool,
    /// `sops_lastmodified`: the timestamp text as stored (it is the MAC's AAD); empty until
    /// sealed.
    pub lastmodified: String,
    /// The stored (encrypted) MAC.
    pub mac: String,
    /// `sops_mac_only_encrypted`: the MAC covers only encrypted values (after a SHA-256 of
    /// `sops`).
    pub mac_only_encrypted: bool,
    /// `sops_shamir_threshold`: how many key groups must be opened; `None` when not stored.
    pub shamir_threshold: Option<u64>,
    /// The crypt rule stored in the metadata (sops's default `_unencrypted` suffix when none).
    pub rule: CryptRule,
    /// `sops_version`: the sops version the file claims to be written by.
    pub version: String,
    /// Other `sops_*` lines (pgp, kms, unknown), kept verbatim.
    pub foreign: Vec<(String, String)>,
    /// Where each `sops_*` line was in the file read (for messages); empty for new metadata.
    pub key_lines: Vec<(String, usize)>,
}

/// sops metadata keys naming master keys envv cannot wrap for.
const FOREIGN_MASTER_KEYS: [&str; 6] = ["pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "hckms"];

impl Metadata {
    /// New metadata for a file encrypted by envv.
    pub fn new(groups: Vec<Vec<KeyEntry>>, rule: CryptRule) -> Self {
        Metadata {
            key_groups_form: groups.len() > 1,
            groups,
            lastmodified: String::new(),
            mac: String::new(),
            mac_only_encrypted: false,
            shamir_threshold: None,
            rule,
            version: SOPS_VERSION.into(),
            foreign: Vec::new(),
            key_lines: Vec::new(),
        }
    }

    /// Whether the file also has master keys of other kinds (pgp, kms, ...).
    pub fn has_foreign_master_keys(&self) -> bool {
        self.foreign.iter().any(|(k, _)| {
            let rest = k.trim_start_matches("sops_");
            FOREIGN_MASTER_KEYS
                .iter()
                .any(|m| rest.starts_with(&format!("{m}__list_")))
                || rest.starts_with("key_groups__")
        })
    }

    /// The line of the stored `sops_NAME` metadata line, when the metadata was read from a file.
    pub fn line_of(&self, name: &str) -> Option<usize> {
        self.key_lines
            .iter()
            .find(|(k, _)| k.strip_prefix("sops_") == Some(name))
            .map(|(_, l)| *l)
    }

    /// The number of key groups needed to recover the data key (1 for a single group). Never
    /// below 2 with several groups: sops cannot split or combine with fewer, so a stored 1 (or 0,
    /// "all groups") is not taken to mean that one group suffices.
    pub fn groups_needed(&self) -> u64 {
        if self.groups.len() <= 1 {
            return 1;
        }
        self.shamir_threshold
            .filter(|t| *t > 0)
            .unwrap_or(self.groups.len() as u64)
            .max(2)
    }

    /// All recipients, in group order.
    pub fn recipients(&self) -> Vec<&str> {
        self.groups
            .iter()
            .flatten()
            .map(|e| e.recipient.as_str())
            .collect()
    }

    /// Reads metadata from the `sops_*` pairs of a file. The error does not name the file: the
    /// caller adds it (and the line, when it knows it).
    pub fn from_pairs<'a>(
        pairs: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, MetadataError> {
        // Maps, not lists searched for each line: a pusher's file of 1.5 million entries (64 MB)
        // made the search quadratic (40,000 took seconds).
        let mut top: BTreeMap<u64, KeyEntryParts> = BTreeMap::new();
        let mut grouped: BTreeMap<(u64, u64), KeyEntryParts> = BTreeMap::new();
        let mut lastmodified = None;
        let mut mac = String::new();
        let mut version = None;
        let mut mac_only = false;
        let mut threshold = None;
        let mut rules: Vec<CryptRule> = Vec::new();
        let mut foreign = Vec::new();
        for (key, stored) in pairs {
            let name = &key["sops_".len()..];
            let value = String::from_utf8(unescape_stored(stored)).expect("utf-8 in, utf-8 out");
            let bad = |problem: MetadataLineError| MetadataError::BadLine {
                key: crate::format::dotenv::shown_key(key).into_owned(),
                problem,
            };
            if let Some(rest) = name.strip_prefix("age__list_") {
                let (idx, field) =
                    list_field(rest).ok_or_else(|| bad(MetadataLineError::NotAListField))?;
                top.entry(idx).or_default().set(field, value).map_err(bad)?;
                continue;
            }
            if let Some(rest) = name.strip_prefix("key_groups__list_") {
                if let Some((g, rest)) = rest.split_once("__map_age__list_") {
                    if let (Ok(g), Some((idx, field))) = (g.parse::<u64>(), list_field(rest)) {
                        grouped
                            .entry((g, idx))
                            .or_default()
                            .set(field, value)
                            .map_err(bad)?;
                        continue;
                    }
                }
                foreign.push((key.to_string(), stored.to_string()));
                continue;
            }
            let regex = |v: &str| rule_regex(v).map_err(|_| bad(MetadataLineError::BadRegex));
            match name {
                "lastmodified" => lastmodified = Some(value),
                "mac" => mac = value,
                "version" => version = Some(value),
                "mac_only_encrypted" => mac_only = value == "true",
                "shamir_threshold" => {
                    let t = value
                        .parse::<u64>()
                        .ok()
                        .or_else(|| {
                            value
                                .parse::<f64>()
                                .ok()
                                .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                                .map(|f| f as u64)
                        })
                        .ok_or_else(|| bad(MetadataLineError::NotANumber))?;
                    threshold = Some(t);
                }
                // An empty rule value counts as absent, as in sops (all absent: `_unencrypted`).
                "unencrypted_suffix"
                | "encrypted_suffix"
                | "unencrypted_regex"
                | "encrypted_regex"
                | "unencrypted_comment_regex"
                | "encrypted_comment_regex"
                    if value.is_empty() => {}
                "unencrypted_suffix" => rules.push(CryptRule::UnencryptedSuffix(value)),
                "encrypted_suffix" => rules.push(CryptRule::EncryptedSuffix(value)),
                "unencrypted_regex" => rules.push(CryptRule::UnencryptedRegex(regex(&value)?)),
                "encrypted_regex" => rules.push(CryptRule::EncryptedRegex(regex(&value)?)),
                "unencrypted_comment_regex" => {
                    rules.push(CryptRule::UnencryptedCommentRegex(regex(&value)?))
                }
                "encrypted_comment_regex" => {
                    rules.push(CryptRule::EncryptedCommentRegex(regex(&value)?))
                }
                _ => foreign.push((key.to_string(), stored.to_string())),
            }
        }
        let lastmodified = lastmodified.ok_or(MetadataError::Missing("sops_lastmodified"))?;
        canonical_time(&lastmodified).ok_or(MetadataError::BadLastModified)?;
        let version = version.ok_or(MetadataError::Missing("sops_version"))?;
        if rules.len() > 1 {
            return Err(MetadataError::SeveralRules);
        }
        let finish = |parts: KeyEntryParts, entry: String| -> Result<KeyEntry, MetadataError> {
            match (parts.recipient, parts.enc) {
                (Some(recipient), Some(enc)) => Ok(KeyEntry { recipient, enc }),
                _ => Err(MetadataError::IncompleteEntry { entry }),
            }
        };
        let (groups, key_groups_form) = if !top.is_empty() {
            let g = top
                .into_iter()
                .map(|(i, p)| finish(p, format!("age {i}")))
                .collect::<Result<Vec<_>, _>>()?;
            (vec![g], false)
        } else if !grouped.is_empty() {
            let mut groups: Vec<(u64, Vec<KeyEntry>)> = Vec::new();
            for ((g, i), p) in grouped {
                let e = finish(p, format!("group {g} age {i}"))?;
                match groups.last_mut() {
                    Some((gg, v)) if *gg == g => v.push(e),
                    _ => groups.push((g, vec![e])),
                }
            }
            (groups.into_iter().map(|(_, v)| v).collect(), true)
        } else {
            let has_other = foreign.iter().any(|(k, _)| {
                let rest = k.trim_start_matches("sops_");
                FOREIGN_MASTER_KEYS
                    .iter()
                    .any(|m| rest.starts_with(&format!("{m}__list_")))
            });
            if !has_other {
                return Err(MetadataError::NoRecipients);
            }
            (Vec::new(), false)
        };
        Ok(Metadata {
            groups,
            key_groups_form,
            lastmodified,
            mac,
            mac_only_encrypted: mac_only,
            shamir_threshold: threshold,
            rule: rules.pop().unwrap_or_default(),
            version,
            foreign,
            key_lines: Vec::new(),
        })
    }

    /// The metadata as sorted `sops_*` lines (key, stored value).
    pub fn to_lines(&self) -> Vec<Line> {
        let mut kv: Vec<(String, String)> = Vec::new();
        // Every value is read through `unescape_stored`, so every value is escaped back.
        let esc = |s: &str| s.replace('\n', "\\n");
        if self.key_groups_form {
            for (g, group) in self.groups.iter().enumerate() {
                for (i, e) in group.iter().enumerate() {
                    let p = format!("sops_key_groups__list_{g}__map_age__list_{i}__map_");
                    kv.push((format!("{p}enc"), esc(&e.enc)));
                    kv.push((format!("{p}recipient"), esc(&e.recipient)));
                }
            }
        } else if let Some(group) = self.groups.first() {
            for (i, e) in group.iter().enumerate() {
                kv.push((format!("sops_age__list_{i}__map_enc"), esc(&e.enc)));
                kv.push((
                    format!("sops_age__list_{i}__map_recipient"),
                    esc(&e.recipient),
                ));
            }
        }
        kv.push(("sops_lastmodified".into(), self.lastmodified.clone()));
        if !self.mac.is_empty() {
            kv.push(("sops_mac".into(), esc(&self.mac)));
        }
        if self.mac_only_encrypted {
            kv.push(("sops_mac_only_encrypted".into(), "true".into()));
        }
        if let Some(t) = self.shamir_threshold.filter(|t| *t > 0) {
            kv.push(("sops_shamir_threshold".into(), t.to_string()));
        }
        kv.push((
            format!("sops_{}", self.rule.meta_name()),
            esc(self.rule.meta_value()),
        ));
        kv.push(("sops_version".into(), esc(&self.version)));
        kv.extend(self.foreign.iter().cloned());
        kv.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        kv.into_iter()
            .map(|(key, stored)| Line::Pair {
                key,
                stored,
                line: 0,
            })
            .collect()
    }
}

/// Why the `sops_*` lines of a file are not usable metadata. The file is not named: the caller
/// adds it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// One `sops_*` line cannot be read. `key` follows [`crate::format::dotenv::shown_key`]: a line whose
    /// text before `=` is not a name is described, not shown.
    #[error("invalid metadata line {key}: {problem}")]
    BadLine {
        /// The line's key, or a description of it when it is not a name.
        key: String,
        /// What is wrong with it.
        problem: MetadataLineError,
    },
    /// A line every sops file has is absent (`sops_lastmodified`, `sops_version`).
    #[error("sops metadata has no {0} (truncated or not a sops file?)")]
    Missing(&'static str),
    /// `sops_lastmodified` is not an RFC 3339 time (it is the MAC's associated data).
    #[error("sops_lastmodified is not an RFC 3339 time")]
    BadLastModified,
    /// More than one of the `*_suffix` / `*_regex` rules is set.
    #[error("sops metadata has more than one encryption rule")]
    SeveralRules,
    /// A recipient entry has its `enc` or its `recipient` line but not both. `entry` says which
    /// (`age 0`, `group 1 age 0`).
    #[error("recipient entry {entry} is incomplete (needs both enc and recipient)")]
    IncompleteEntry {
        /// The entry's position.
        entry: String,
    },
    /// There is no age recipient and no other kind of master key.
    #[error("sops metadata lists no recipients (no sops_age__ lines)")]
    NoRecipients,
}

/// What is wrong with one `sops_*` metadata line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataLineError {
    /// `sops_age__list_…` without a number and a field.
    #[error("expected age__list_N__map_enc or _recipient")]
    NotAListField,
    /// A recipient entry field other than `enc` and `recipient`; `field` is shown only when it
    /// is made of name characters.
    #[error("unknown field {field}")]
    UnknownField {
        /// The field name, or a description.
        field: String,
    },
    /// A `*_regex` rule that does not compile (or compiles too large).
    #[error("invalid (or too large) regular expression")]
    BadRegex,
    /// `sops_shamir_threshold` is not a whole number.
    #[error("not a number")]
    NotANumber,
}

#[derive(Default)]
struct KeyEntryParts {
    recipient: Option<String>,
    enc: Option<String>,
}

impl KeyEntryParts {
    fn set(&mut self, field: &str, value: String) -> Result<(), MetadataLineError> {
        match field {
            "enc" => self.enc = Some(value),
            "recipient" => self.recipient = Some(value.trim().to_string()),
            _ => {
                let named = field
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_');
                return Err(MetadataLineError::UnknownField {
                    field: if named { field } else { "(not a field name)" }.into(),
                });
            }
        }
        Ok(())
    }
}

fn list_field(rest: &str) -> Option<(u64, &str)> {
    let (idx, field) = rest.split_once("__map_")?;
    Some((idx.parse().ok()?, field))
}

/// SHA-512 over the plaintext values, sops style, as 128 uppercase hex characters.
pub struct MacBuilder(Sha512);

impl MacBuilder {
    /// Starts a MAC; with `mac_only_encrypted` it first hashes SHA-256 of `sops`, as sops does.
    pub fn new(mac_only_encrypted: bool) -> Self {
        let mut h = Sha512::new();
        if mac_only_encrypted {
            h.update(Sha256::digest(b"sops"));
        }
        MacBuilder(h)
    }

    /// Feeds the MAC bytes of one pair's value (pairs in file order).
    pub fn add(&mut self, value: &[u8]) {
        self.0.update(value);
    }

    /// The MAC as 128 uppercase hex characters.
    pub fn finish(self) -> String {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let d = self.0.finalize();
        let mut s = String::with_capacity(128);
        for b in d {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 15)]));
        }
        s
    }
}

/// The current UTC time as sops writes it: `YYYY-MM-DDTHH:MM:SSZ`.
pub fn now_timestamp() -> String {
    let t = time::OffsetDateTime::now_utc();
    t.format(&time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
    ))
    .expect("formatting a UTC time cannot fail")
}

/// sops's canonical form of a timestamp (used as the MAC's AAD): fractional seconds dropped,
/// a zero offset written `Z`, other offsets `+hh:mm`.
pub fn canonical_time(s: &str) -> Option<String> {
    let t = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
        .ok()?;
    let base = t
        .format(&time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]"
        ))
        .ok()?;
    let off = t.offset();
    if off.is_utc() {
        Some(format!("{base}Z"))
    } else {
        let (h, m, _) = off.as_hms();
        let sign = if off.is_negative() { '-' } else { '+' };
        Some(format!(
            "{base}{sign}{:02}:{:02}",
            h.unsigned_abs(),
            m.unsigned_abs()
        ))
    }
}

/// Shamir secret sharing over GF(2^8) with the AES polynomial, as sops uses for key groups.
pub mod shamir {
    fn tables() -> &'static ([u8; 256], [u8; 256]) {
        static T: std::sync::OnceLock<([u8; 256], [u8; 256])> = std::sync::OnceLock::new();
        T.get_or_init(|| {
            let mut exp = [0u8; 256];
            let mut log = [0u8; 256];
            let mut x: u8 = 1;
            for i in 0..255u16 {
                exp[i as usize] = x;
                log[x as usize] = i as u8;
                // multiply by the generator 3
                let hi = x & 0x80;
                let mut x2 = x << 1;
                if hi != 0 {
                    x2 ^= 0x1B;
                }
                x ^= x2;
            }
            exp[255] = exp[0];
            (exp, log)
        })
    }

    fn mul(a: u8, b: u8) -> u8 {
        if a == 0 || b == 0 {
            return 0;
        }
        let (exp, log) = tables();
        exp[(log[a as usize] as usize + log[b as usize] as usize) % 255]
    }

    fn div(a: u8, b: u8) -> u8 {
        let (exp, log) = tables();
        if a == 0 {
            return 0;
        }
        exp[(log[a as usize] as usize + 255 - log[b as usize] as usize) % 255]
    }

    /// Why shares cannot be combined.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
    pub enum ShamirError {
        /// One share (or none): at least two are needed.
        #[error("fewer than two shares")]
        TooFewShares,
        /// The shares are not all the same length (or too short to hold a value and an index).
        #[error("shares have different lengths")]
        LengthMismatch,
        /// Two shares have the same x index, or one has index 0 (which would be the secret).
        #[error("duplicate or zero share index")]
        BadIndex,
    }

    /// Recovers the secret from shares (each = values followed by its x byte).
    pub fn combine(shares: &[Vec<u8>]) -> Result<Vec<u8>, ShamirError> {
        if shares.len() < 2 {
            return Err(ShamirError::TooFewShares);
        }
        let len = shares[0].len();
        if len < 2 || shares.iter().any(|s| s.len() != len) {
            return Err(ShamirError::LengthMismatch);
        }
        let xs: Vec<u8> = shares.iter().map(|s| s[len - 1]).collect();
        for (i, x) in xs.iter().enumerate() {
            if *x == 0 || xs[..i].contains(x) {
                return Err(ShamirError::BadIndex);
            }
        }
        let mut out = vec![0u8; len - 1];
        for (j, share) in shares.iter().enumerate() {
            // Lagrange basis at 0: prod over m != j of x_m / (x_m - x_j)
            let mut basis = 1u8;
            for (m, &xm) in xs.iter().enumerate() {
                if m != j {
                    basis = mul(basis, div(xm, xm ^ xs[j]));
                }
            }
            for (o, &y) in out.iter_mut().zip(&share[..len - 1]) {
                *o ^= mul(y, basis);
            }
        }
        Ok(out)
    }

    /// Splits a secret into `n` shares, any `threshold` of which recover it.
    pub fn split(secret: &[u8], n: u8, threshold: u8) -> Vec<Vec<u8>> {
        use rand::RngCore;
        let mut shares = vec![Vec::with_capacity(secret.len() + 1); n as usize];
        let mut coeffs = vec![0u8; threshold.saturating_sub(1) as usize];
        for &byte in secret {
            rand::rngs::OsRng.fill_bytes(&mut coeffs);
            for (i, share) in shares.iter_mut().enumerate() {
                let x = i as u8 + 1;
                // Horner: byte + c1 x + c2 x^2 ...
                let mut y = 0u8;
                for &c in coeffs.iter().rev() {
                    y = mul(y, x) ^ c;
                }
                y = mul(y, x) ^ byte;
                share.push(y);
            }
        }
        for (i, share) in shares.iter_mut().enumerate() {
            share.push(i as u8 + 1);
        }
        shares
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_recipient_entries_in_any_order_read_in_linear_time() {
        // A pusher's file with tens of thousands of entries (each line searched the ones before
        // it: 40,000 entries took seconds, a 64 MB file hours). Written in reverse order.
        let n = 50_000u64;
        let mut lines: Vec<(String, String)> = Vec::new();
        for i in (0..n).rev() {
            lines.push((
                format!("sops_age__list_{i}__map_recipient"),
                format!("age1r{i}"),
            ));
            lines.push((format!("sops_age__list_{i}__map_enc"), format!("E{i}")));
        }
        lines.push(("sops_lastmodified".into(), "2026-01-01T00:00:00Z".into()));
        lines.push(("sops_version".into(), "3.11.0".into()));
        let m = Metadata::from_pairs(lines.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(m.groups.len(), 1);
        assert_eq!(m.groups[0].len(), n as usize);
        assert!(m.groups[0]
            .iter()
            .enumerate()
            .all(|(i, e)| e.recipient == format!("age1r{i}") && e.enc == format!("E{i}")));

        let mut lines: Vec<(String, String)> = Vec::new();
        for i in (0..n).rev() {
            let g = i % 3;
            let p = format!("sops_key_groups__list_{g}__map_age__list_{i}__map_");
            lines.push((format!("{p}recipient"), format!("age1r{i}")));
            lines.push((format!("{p}enc"), format!("E{i}")));
        }
        lines.push(("sops_lastmodified".into(), "2026-01-01T00:00:00Z".into()));
        lines.push(("sops_version".into(), "3.11.0".into()));
        let m = Metadata::from_pairs(lines.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(m.groups.len(), 3);
        for (g, group) in m.groups.iter().enumerate() {
            let want: Vec<String> = (0..n)
                .filter(|i| i % 3 == g as u64)
                .map(|i| format!("age1r{i}"))
                .collect();
            let got: Vec<&String> = group.iter().map(|e| &e.recipient).collect();
            assert_eq!(got.len(), want.len());
            assert!(
                got.iter().zip(&want).all(|(a, b)| *a == b),
                "group {g} in index order"
            );
        }
    }

    #[test]
    fn rule_regexes_over_the_bound_are_refused_and_the_refusal_is_remembered() {
        let pattern = "(\\w{100}){100}";
        assert!(rule_regex(pattern).is_err());
        assert!(
            rule_regex(pattern).is_err(),
            "a remembered refusal is still a refusal"
        );
        assert_eq!(rule_regex("^A$").unwrap().as_str(), "^A$");
        let recent = RecentRegexes::new();
        let compiles = std::cell::Cell::new(0);
        let compile = |p: &str| {
            compiles.set(compiles.get() + 1);
            regex::RegexBuilder::new(p)
                .size_limit(RULE_REGEX_SIZE_LIMIT)
                .build()
        };
        for _ in 0..3 {
            assert!(recent.get_or_compile(pattern, compile).is_err());
            assert!(recent.get_or_compile("^A$", compile).is_ok());
        }
        assert_eq!(
            compiles.get(),
            2,
            "each pattern compiled once, refused or not"
        );
        for i in 0..RecentRegexes::KEEP {
            let _ = recent.get_or_compile(&format!("^K{i}$"), compile);
        }
        let _ = recent.get_or_compile(pattern, compile);
        assert_eq!(
            compiles.get(),
            3 + RecentRegexes::KEEP,
            "only the last few are kept"
        );
    }

    #[test]
    fn enc_round_trip_and_aad_binding() {
        let k = DataKey::generate();
        let c = k.cipher();
        let s = c.encrypt(b"hello", b"A:", ValueType::Str);
        let e = EncValue::parse(&s).unwrap();
        assert_eq!(c.decrypt(&e, b"A:").unwrap().expose(), b"hello");
        assert!(c.decrypt(&e, b"B:").is_none());
        assert!(DataKey::generate().cipher().decrypt(&e, b"A:").is_none());
    }

    #[test]
    fn enc_parse_errors_are_specific() {
        use EncValueError as E;
        let err = |s: &str| EncValue::parse(s).unwrap_err();
        let tag16 = "AAAAAAAAAAAAAAAAAAAAAA==";
        assert_eq!(err("sk_live_51Hx"), E::NotEnc);
        assert_eq!(
            err("ENC[AES256_GCM,data:!!,iv:AA==,tag:AA==,type:str]"),
            E::BadBase64("data")
        );
        assert_eq!(
            err("ENC[AES256_GCM,data:AA==,iv:AA=="),
            E::MissingField("tag")
        );
        assert_eq!(
            err("ENC[AES256_GCM,data:AA==,tag:AA==,type:str]"),
            E::MissingField("iv")
        );
        assert_eq!(
            err(&format!(
                "ENC[AES256_GCM,data:AA==,iv:AA==,tag:{tag16},type:str"
            )),
            E::Unclosed
        );
        assert_eq!(
            err(&format!(
                "ENC[AES256_GCM,data:AA==,iv:,tag:{tag16},type:str]"
            )),
            E::EmptyIv
        );
        let long_tag = format!(
            "ENC[AES256_GCM,data:AA==,iv:AA==,tag:{},type:str]",
            "A".repeat(44)
        );
        assert_eq!(err(&long_tag), E::TagLength);
        assert_eq!(
            err("ENC[AES256_GCM,data:AA==,iv:AA==,tag:AAAA,type:str]"),
            E::TagLength
        );
        assert_eq!(
            err("ENC[AES256_GCM,data:AA==,iv:AA==,tag:!!!!,type:str]"),
            E::BadBase64("tag")
        );
        assert_eq!(
            err(&format!(
                "ENC[AES256_GCM,data:AA==,iv:AA==,tag:{tag16},type:zzz]"
            )),
            E::UnknownType
        );
        // The messages are the ones users saw before the errors were typed, and name no content.
        assert_eq!(
            E::BadBase64("tag").to_string(),
            "ENC value has invalid base64 in tag"
        );
        assert_eq!(
            E::MissingField("iv").to_string(),
            "ENC value has no iv field"
        );
        assert_eq!(E::TagLength.to_string(), "ENC value tag is not 16 bytes");
        let secretish = "ENC[AES256_GCM,data:c2VjcmV0,iv:!!hunter2,tag:AA==,type:str]";
        let m = err(secretish).to_string();
        assert!(!m.contains("hunter2") && !m.contains("c2VjcmV0"), "{m}");
    }

    #[test]
    fn typed_values_as_sops_hashes_and_prints_them() {
        let t = |ty, s: &str| {
            decode_typed(ty, &Secret::from_str(s))
                .map(|t| {
                    (
                        t.mac.expose_str().unwrap().to_string(),
                        t.shown.expose_str().unwrap().to_string(),
                    )
                })
                .map_err(|_| ())
        };
        let pair = |a: &str, b: &str| Ok((a.to_string(), b.to_string()));
        // Go's FormatFloat(f, 'f', -1) for the MAC, sops's %G (+ ".0") for dotenv output.
        for (input, mac, shown) in [
            ("123", "123", "123.0"),
            ("1.5", "1.5", "1.5"),
            ("0.00001", "0.00001", "1E-05"),
            ("0.0001", "0.0001", "0.0001"),
            ("1e21", "1000000000000000000000", "1E+21"),
            ("1234567", "1234567", "1.234567E+06"),
            ("123456", "123456", "123456.0"),
            ("-2.50", "-2.5", "-2.5"),
            ("0", "0", "0.0"),
            ("-0", "-0", "-0.0"),
            ("NaN", "NaN", "NaN"),
            ("-Inf", "-Inf", "-Inf"),
            ("infinity", "+Inf", "+Inf"),
            (".5", "0.5", "0.5"),
        ] {
            assert_eq!(t(ValueType::Float, input), pair(mac, shown), "{input}");
        }
        for bad in ["", "1e400", "+nan", "0x1p3", "1_000", "abc", "1.2.3"] {
            assert!(t(ValueType::Float, bad).is_err(), "{bad}");
        }
        assert_eq!(t(ValueType::Bool, "true"), pair("True", "true"));
        assert_eq!(t(ValueType::Bool, "0"), pair("False", "false"));
        assert!(t(ValueType::Bool, "yes").is_err());
        assert_eq!(t(ValueType::Int, "+007"), pair("7", "7"));
        assert_eq!(t(ValueType::Int, "-42"), pair("-42", "-42"));
        assert!(t(ValueType::Int, "1.0").is_err());
        assert!(t(ValueType::Int, "99999999999999999999").is_err());
        assert_eq!(
            t(ValueType::Time, "2026-11-21T22:44:12.500Z"),
            pair("2026-11-21T22:44:12.5Z", "2026-11-21T22:44:12Z")
        );
        assert_eq!(t(ValueType::Bytes, "raw"), pair("raw", "raw"));
    }

    #[test]
    fn rule_cover() {
        let def = CryptRule::default();
        assert!(def.covers(&def));
        assert!(CryptRule::UnencryptedSuffix("_x_unencrypted".into()).covers(&def));
        assert!(!CryptRule::UnencryptedSuffix("_KEY".into()).covers(&def));
        let r = |s: &str| CryptRule::UnencryptedRegex(Regex::new(s).unwrap());
        assert!(r("^PORT$").covers(&r("^PORT$")));
        assert!(!r("^(GITHUB|AWS)_").covers(&def));
        assert!(!r("^P").covers(&r("^PORT$")));
        // `public` widened after the file was written (envv's union form): still covered.
        let wide = r("(?:^PORT$)|(?:^NEXT_PUBLIC_)");
        assert!(r("^PORT$").covers(&wide));
        assert!(wide.covers(&wide));
        assert!(!wide.covers(&r("^PORT$")));
        assert!(!r("(?:^PORT$)|(?:^AWS_)").covers(&wide));
        // Parts that are not regexes on their own are not split.
        assert!(!r("(?:(a)|(?:b))").covers(&r("(?:(a)|(?:c))")));
        assert!(!CryptRule::EncryptedRegex(Regex::new(".").unwrap()).covers(&def));
    }

    #[test]
    fn enc_text_after_the_bracket_is_refused() {
        let k = DataKey::generate();
        let s = k.cipher().encrypt(b"v", b"A:", ValueType::Str);
        assert!(EncValue::parse(&s).is_ok());
        let e = EncValue::parse(&format!("{s} # note")).unwrap_err();
        assert_eq!(e, EncValueError::TrailingText);
        assert!(e.to_string().contains("after the closing ]"), "{e}");
    }

    #[test]
    fn canonical_times() {
        assert_eq!(
            canonical_time("2026-11-21T22:44:12Z").unwrap(),
            "2026-11-21T22:44:12Z"
        );
        assert_eq!(
            canonical_time("2026-11-21T22:44:12.000Z").unwrap(),
            "2026-11-21T22:44:12Z"
        );
        assert_eq!(
            canonical_time("2026-11-21T22:44:12+00:00").unwrap(),
            "2026-11-21T22:44:12Z"
        );
        assert_eq!(
            canonical_time("2026-11-21T22:44:12+02:00").unwrap(),
            "2026-11-21T22:44:12+02:00"
        );
        assert!(canonical_time("yesterday").is_none());
    }

    #[test]
    fn shamir_round_trip() {
        let secret: Vec<u8> = (0..32).collect();
        let shares = shamir::split(&secret, 3, 2);
        assert_eq!(shamir::combine(&shares[..2]).unwrap(), secret);
        assert_eq!(
            shamir::combine(&[shares[0].clone(), shares[2].clone()]).unwrap(),
            secret
        );
        assert_eq!(shamir::combine(&shares).unwrap(), secret);
    }

    #[test]
    fn metadata_sorts_like_sops() {
        let entries: Vec<KeyEntry> = (0..12)
            .map(|i| KeyEntry {
                recipient: format!("r{i}"),
                enc: "x\ny\n".into(),
            })
            .collect();
        let mut m = Metadata::new(vec![entries], CryptRule::default());
        m.lastmodified = "2026-01-01T00:00:00Z".into();
        let lines = m.to_lines();
        let keys: Vec<String> = lines
            .iter()
            .map(|l| match l {
                Line::Pair { key, .. } => key.clone(),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(keys[0], "sops_age__list_0__map_enc");
        assert_eq!(keys[2], "sops_age__list_10__map_enc");
        assert!(keys.ends_with(&[
            "sops_lastmodified".into(),
            "sops_unencrypted_suffix".into(),
            "sops_version".into()
        ]));
        let pairs: Vec<(String, String)> = lines
            .iter()
            .map(|l| match l {
                Line::Pair { key, stored, .. } => (key.clone(), stored.clone()),
                _ => unreachable!(),
            })
            .collect();
        let back =
            Metadata::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
        assert_eq!(back.groups[0].len(), 12);
        assert_eq!(back.groups[0][11].recipient, "r11");
        assert_eq!(back.groups[0][11].enc, "x\ny\n");
    }

    #[test]
    fn comment_rules() {
        let lines = vec![
            Line::Comment("plain".into()),
            Line::Comment("sops:nope".into()),
            Line::Pair {
                key: "A".into(),
                stored: String::new(),
                line: 1,
            },
            Line::Pair {
                key: "B".into(),
                stored: String::new(),
                line: 2,
            },
        ];
        let r = CryptRule::UnencryptedCommentRegex(Regex::new("sops:nope").unwrap());
        assert_eq!(r.plan(&lines), vec![true, false, false, true]);
        let r = CryptRule::EncryptedCommentRegex(Regex::new("plain").unwrap());
        assert_eq!(r.plan(&lines), vec![false, true, true, false]);
    }

    #[test]
    fn metadata_errors_name_the_line_and_not_the_file() {
        let read = |pairs: &[(&str, &str)]| Metadata::from_pairs(pairs.iter().copied());
        let base = [
            ("sops_age__list_0__map_enc", "x"),
            ("sops_age__list_0__map_recipient", "age1x"),
            ("sops_lastmodified", "2026-01-01T00:00:00Z"),
            ("sops_version", "3.11.0"),
        ];
        assert!(read(&base).is_ok());
        let with = |extra: (&'static str, &'static str)| {
            let mut v = base.to_vec();
            v.push(extra);
            read(&v).unwrap_err()
        };
        let e = with(("sops_shamir_threshold", "two"));
        assert_eq!(
            e.to_string(),
            "invalid metadata line sops_shamir_threshold: not a number"
        );
        let e = with(("sops_age__list_0__map_colour", "x"));
        assert_eq!(
            e.to_string(),
            "invalid metadata line sops_age__list_0__map_colour: unknown field colour"
        );
        // A key that is not a name (a pasted secret after `sops_`) is described, not shown.
        let e = with(("sops_age__list_0__map_pw:hunter2", "x"));
        let m = e.to_string();
        assert!(!m.contains("hunter2"), "{m}");
        assert!(matches!(
            e,
            MetadataError::BadLine {
                problem: MetadataLineError::UnknownField { .. },
                ..
            }
        ));
        assert_eq!(
            with(("sops_age__list_x", "1")),
            MetadataError::BadLine {
                key: "sops_age__list_x".into(),
                problem: MetadataLineError::NotAListField
            }
        );
        assert!(matches!(
            with(("sops_encrypted_regex", "(")),
            MetadataError::BadLine {
                problem: MetadataLineError::BadRegex,
                ..
            }
        ));
        assert_eq!(
            read(&base[..3]).unwrap_err().to_string(),
            "sops metadata has no sops_version (truncated or not a sops file?)"
        );
        assert_eq!(
            read(&[base[0], base[1], base[3]]).unwrap_err(),
            MetadataError::Missing("sops_lastmodified")
        );
        assert_eq!(
            read(&[
                base[0],
                base[1],
                ("sops_lastmodified", "yesterday"),
                base[3]
            ])
            .unwrap_err(),
            MetadataError::BadLastModified
        );
        assert_eq!(
            read(&[base[0], base[2], base[3]]).unwrap_err().to_string(),
            "recipient entry age 0 is incomplete (needs both enc and recipient)"
        );
        assert_eq!(read(&base[2..]).unwrap_err(), MetadataError::NoRecipients);
        let mut two_rules = base.to_vec();
        two_rules.push(("sops_encrypted_suffix", "_secret"));
        two_rules.push(("sops_unencrypted_suffix", "_plain"));
        assert_eq!(read(&two_rules).unwrap_err(), MetadataError::SeveralRules);
    }

    #[test]
    fn shamir_refuses_unusable_shares() {
        let shares = shamir::split(&[9u8; 32], 3, 2);
        assert_eq!(
            shamir::combine(&shares[..1]),
            Err(shamir::ShamirError::TooFewShares)
        );
        let short = vec![shares[0].clone(), shares[1][1..].to_vec()];
        assert_eq!(
            shamir::combine(&short),
            Err(shamir::ShamirError::LengthMismatch)
        );
        let twice = vec![shares[0].clone(), shares[0].clone()];
        assert_eq!(
            shamir::combine(&twice).unwrap_err().to_string(),
            "duplicate or zero share index"
        );
    }
}
