//! Lossless dotenv parsing and emitting.
//!
//! Two grammars live here, because a file is read two ways:
//!
//! * **Plaintext dotenv** ([`parse_plain`]): what people type. `export KEY=`, single quotes
//!   (literal), double quotes (escapes `\n \r \t \" \\ \$ \` \(`, real newlines allowed),
//!   backticks (literal), unquoted values with ` #` inline comments; a CR ends a line. Used by
//!   `encrypt`, `edit`, `set KEY=VALUE` and imports. [`spell`] is its inverse for output: it
//!   writes each value so that this parser and the common dotenv consumers ([`Consumer`]) read the
//!   same bytes back without expanding or running anything, and says which cannot when no
//!   spelling suits them all.
//! * **Stored lines** ([`parse_stored`], [`emit_stored`]): the sops v3 dotenv store, which splits
//!   each line at the first `=` and gives the value no quoting semantics (only `\n` is an escape).
//!   Encrypted files are read and written this way, keeping blank lines and order so rewrites
//!   produce minimal diffs.

use crate::error::{Error, Result};
use crate::secret::Secret;

/// Longest key name accepted in plaintext input.
pub const MAX_KEY_LEN: usize = 256;

/// One entry of a plaintext dotenv file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// An empty (or whitespace-only) line.
    Blank,
    /// A `#` comment; the text after `#` (a comment can hold a secret too).
    Comment(Secret),
    /// `KEY=value`, with the parsed value and an inline comment if there was one.
    Pair {
        /// The key name.
        key: String,
        /// The value, unquoted and unescaped.
        value: Secret,
        /// The text after the `#` of an inline comment; `None` when there is none.
        comment: Option<Secret>,
        /// 1-based line where the pair starts.
        line: usize,
    },
}

/// Appended to messages about a line whose text is withheld.
pub const NOT_SHOWN: &str = " (the text is not shown: it may be a pasted secret)";

/// A key for a message: the key itself when it is a valid name, else a description. The text
/// before `=` of a hand-pasted line may be a secret, so an invalid key is never printed.
pub fn shown_key(key: &str) -> std::borrow::Cow<'_, str> {
    if validate_key(key).is_ok()
        || (key.starts_with("sops_") && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    {
        std::borrow::Cow::Borrowed(key)
    } else {
        std::borrow::Cow::Borrowed(
            "the text before `=` (not a key name; not shown: it may be a pasted secret)",
        )
    }
}

/// Why a key name is refused. The messages never show the name unless it is a valid word of
/// name characters (a reserved `sops_` name): the text where a key should be may be a pasted
/// secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyNameError {
    /// The name is empty.
    #[error("empty key name")]
    Empty,
    /// The name is longer than [`MAX_KEY_LEN`] bytes.
    #[error("key name longer than {MAX_KEY_LEN} characters")]
    TooLong,
    /// The name starts with a digit.
    #[error("invalid key name (it starts with a digit): use A-Z a-z 0-9 _, not starting with a digit{NOT_SHOWN}")]
    StartsWithDigit,
    /// The name holds a character other than `A-Z a-z 0-9 _`.
    #[error("invalid key name (it holds a character other than A-Z a-z 0-9 _){NOT_SHOWN}")]
    BadChar,
    /// The name starts with `sops_`, the prefix of sops metadata lines. `key` is shown: it is
    /// made of name characters only.
    #[error("key name {key} is reserved: names starting with sops_ hold sops metadata")]
    Reserved {
        /// The refused name.
        key: String,
    },
}

/// Checks a key name: 1–256 of `[A-Za-z0-9_]`, not starting with a digit.
pub fn validate_key(key: &str) -> std::result::Result<(), KeyNameError> {
    if key.is_empty() {
        return Err(KeyNameError::Empty);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(KeyNameError::TooLong);
    }
    // The text is never shown: a line pasted by mistake (`postgres://app:pw@db…`) puts a
    // secret where the key should be.
    if key.as_bytes()[0].is_ascii_digit() {
        return Err(KeyNameError::StartsWithDigit);
    }
    if !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(KeyNameError::BadChar);
    }
    if key.starts_with("sops_") {
        return Err(KeyNameError::Reserved { key: key.into() });
    }
    Ok(())
}

/// Why `key` (the text before `=` on a line of a file) is not a valid key name. The text is
/// shown only when it is a short word of name characters: text before an `=` can be part of a
/// secret (base64 padding, a URL with a password). The line number points at it.
pub fn key_problem(key: &str) -> String {
    const RULE: &str = "keys start with a letter or _ and use only A-Z a-z 0-9 _";
    if key.is_empty() {
        return "empty key name before `=`".into();
    }
    if key.len() > MAX_KEY_LEN {
        return format!(
            "the text before `=` is longer than {MAX_KEY_LEN} characters, so it is not a key name"
        );
    }
    // Short words of name characters are shown (`1ST`, `sops_x`): that is a key someone typed.
    // Anything else may be part of a secret and is only described.
    if key.len() <= 24 && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        if let Err(m) = validate_key(key) {
            return m.to_string();
        }
    }
    if key.starts_with("sops_") {
        return "key names starting with sops_ are reserved for sops metadata".into();
    }
    if let Some((col, bad)) = key
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        let bad = if bad.is_ascii_graphic() {
            format!("`{bad}`")
        } else {
            format!("{bad:?}")
        };
        return format!(
            "the text before `=` is not a key name: character {bad} at column {} ({RULE}; the text is not shown as it may be part of a secret)",
            col + 1
        );
    }
    format!("the key name starts with a digit ({RULE})")
}

/// Decodes file bytes as UTF-8, naming the line of the first invalid byte.
pub fn decode_utf8<'a>(file: &str, bytes: &'a [u8]) -> Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|e| {
        let upto = e.valid_up_to();
        let line = bytes[..upto].iter().filter(|&&b| b == b'\n').count() + 1;
        Error::Parse {
            file: file.into(),
            line,
            msg: "not valid UTF-8 text".into(),
        }
    })
}

/// Parses plaintext dotenv text. Accepts a leading BOM and CRLF line endings.
/// Duplicate keys are an error naming both lines.
pub fn parse_plain(file: &str, text: &str) -> Result<Vec<Entry>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // A CR ends a line as LF does (CRLF, and old Mac files with CR alone), as node dotenv and
    // python-dotenv read it: a CR never hides a line inside another line's value.
    let normalized;
    let text = if text.contains('\r') {
        // One pass into a buffer of the final size: no un-zeroized intermediate copy.
        let mut n = zeroize::Zeroizing::new(String::with_capacity(text.len()));
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\r' {
                chars.next_if_eq(&'\n');
                n.push('\n');
            } else {
                n.push(c);
            }
        }
        normalized = n;
        normalized.as_str()
    } else {
        text
    };
    let mut entries = Vec::new();
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut p = Parser {
        s: text,
        pos: 0,
        line: 1,
        file,
    };
    while !p.at_end() {
        let start_line = p.line;
        let entry = p.entry()?;
        if let Entry::Pair { key, line, .. } = &entry {
            if let Some(first) = seen.insert(key.clone(), *line) {
                return Err(Error::Parse {
                    file: file.into(),
                    line: *line,
                    msg: format!("duplicate key {key} (first set on line {first})"),
                });
            }
        }
        debug_assert!(p.line > start_line || p.at_end());
        entries.push(entry);
    }
    Ok(entries)
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
    line: usize,
    file: &'a str,
}

impl<'a> Parser<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn err(&self, line: usize, msg: impl Into<String>) -> Error {
        Error::Parse {
            file: self.file.into(),
            line,
            msg: msg.into(),
        }
    }

    /// The rest of the current line (without its terminator); advances past the terminator.
    fn take_line(&mut self) -> &'a str {
        let rest = &self.s[self.pos..];
        let (line, adv) = match rest.find('\n') {
            Some(i) => (&rest[..i], i + 1),
            None => (rest, rest.len()),
        };
        self.pos += adv;
        if adv > line.len() {
            self.line += 1;
        }
        // Every trailing CR goes (CRLF input, and stray CRs a rewrite could not reproduce).
        line.trim_end_matches('\r')
    }

    fn entry(&mut self) -> Result<Entry> {
        let line_no = self.line;
        let rest = &self.s[self.pos..];
        let first_line_end = rest.find('\n').unwrap_or(rest.len());
        let first = rest[..first_line_end].trim_end_matches('\r');
        let trimmed = first.trim_start_matches([' ', '\t']);
        if trimmed.trim_end().is_empty() {
            self.take_line();
            return Ok(Entry::Blank);
        }
        if let Some(c) = trimmed.strip_prefix('#') {
            let c = Secret::from_str(c);
            self.take_line();
            return Ok(Entry::Comment(c));
        }
        if first.contains('\0') {
            return Err(self.err(line_no, "NUL byte in line"));
        }
        let mut body = trimmed;
        if let Some(after) = body.strip_prefix("export") {
            if after.starts_with([' ', '\t']) {
                body = after.trim_start_matches([' ', '\t']);
            }
        }
        let Some(eq) = body.find('=') else {
            // The line's text is not shown: it may be a pasted secret.
            return Err(self.err(
                line_no,
                "expected KEY=VALUE, found a line without `=` (a comment must start with #)",
            ));
        };
        let key = body[..eq].trim_end_matches([' ', '\t']);
        validate_key(key).map_err(|_| self.err(line_no, key_problem(key)))?;
        let key = key.to_string();
        // Position (in self.s) where the value starts.
        let value_start = self.pos + (first.len() - body.len()) + eq + 1;
        let after_eq = &self.s[value_start..];
        let lead = after_eq.len() - after_eq.trim_start_matches(inline_space).len();
        let vpos = value_start + lead;
        let quote = self.s[vpos..].chars().next();
        match quote {
            Some(q @ ('\'' | '"' | '`')) => {
                let (value, end) = self.quoted(vpos, q, line_no)?;
                // Rest of the closing line: whitespace and an optional comment.
                self.advance_to(end);
                let close_line = self.line;
                let tail = self.take_line();
                let t = tail.trim_start_matches([' ', '\t']);
                let comment = if t.is_empty() {
                    None
                } else if let Some(c) = t.strip_prefix('#') {
                    Some(Secret::from_str(c))
                } else {
                    return Err(self.err(
                        close_line,
                        format!("unexpected text after the closing quote of {key} (quote the whole value, or start a comment with ` #`)"),
                    ));
                };
                Ok(Entry::Pair {
                    key,
                    value,
                    comment,
                    line: line_no,
                })
            }
            _ => {
                self.advance_to(vpos);
                let raw = self.take_line();
                // `KEY= # note`: after whitespace, a `#` starts a comment at once (the value is
                // empty), as node dotenv, python-dotenv and a shell read it.
                let comment_at = if lead > 0 && raw.starts_with('#') {
                    Some(0)
                } else {
                    find_inline_comment(raw)
                };
                let (value, comment) = match comment_at {
                    Some(i) => (&raw[..i], Some(Secret::from_str(&raw[i + 1..]))),
                    None => (raw, None),
                };
                // Unicode spaces (NBSP, EM SPACE, ...) at the edges go too, as node and python
                // trim them.
                let value = value.trim_end_matches(inline_space);
                Ok(Entry::Pair {
                    key,
                    value: Secret::from_str(value),
                    comment,
                    line: line_no,
                })
            }
        }
    }

    fn advance_to(&mut self, pos: usize) {
        self.line += self.s[self.pos..pos].matches('\n').count();
        self.pos = pos;
    }

    /// Parses a quoted value starting at `start` (the opening quote). Returns the value and the
    /// position just after the closing quote.
    fn quoted(&self, start: usize, q: char, line_no: usize) -> Result<(Secret, usize)> {
        let bytes = self.s.as_bytes();
        let mut out: Vec<u8> = Vec::new();
        let mut i = start + 1;
        while i < bytes.len() {
            let b = bytes[i];
            if b == q as u8 {
                return Ok((Secret::new(out), i + 1));
            }
            if q == '"' && b == b'\\' && i + 1 < bytes.len() {
                let n = bytes[i + 1];
                match n {
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'"' => out.push(b'"'),
                    b'\\' => out.push(b'\\'),
                    // Unlike node and python (which keep the backslash), `\$` is a `$`, as
                    // in godotenv and a shell; `\`` and `\(` are what envv writes to keep
                    // shells and dotenvx from running a value.
                    b'$' => out.push(b'$'),
                    b'`' => out.push(b'`'),
                    b'(' => out.push(b'('),
                    // An escaped NUL must not slip past the NUL check below.
                    0 => return Err(self.err(line_no, "NUL byte in value")),
                    _ => {
                        out.push(b'\\');
                        out.push(n);
                    }
                }
                i += 2;
                continue;
            }
            if b == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
                // CRLF inside a multi-line value is a line break.
                i += 1;
                continue;
            }
            if b == 0 {
                return Err(self.err(line_no, "NUL byte in value"));
            }
            out.push(b);
            i += 1;
        }
        let zeroize = Secret::new(out);
        drop(zeroize);
        Err(self.err(
            line_no,
            format!("unterminated {q} quote: the value has no closing {q}"),
        ))
    }
}

/// Whitespace inside a line: Unicode white space except the line feed.
fn inline_space(c: char) -> bool {
    c != '\n' && c.is_whitespace()
}

/// Index of the `#` that starts an inline comment in an unquoted value (` #` or `\t#`).
fn find_inline_comment(raw: &str) -> Option<usize> {
    let b = raw.as_bytes();
    (1..b.len()).find(|&i| b[i] == b'#' && (b[i - 1] == b' ' || b[i - 1] == b'\t'))
}

/// The dotenv readers envv's plaintext output is written for (and tested against).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumer {
    /// npm `dotenv` (`dotenv.parse`).
    Node,
    /// python-dotenv `dotenv_values(..., interpolate=False)`.
    Python,
    /// python-dotenv `dotenv_values(...)` with its default `interpolate=True`.
    PythonInterpolate,
    /// Go `github.com/joho/godotenv` (docker compose's parser is a fork of it).
    Godotenv,
    /// `dotenvx run` (expands `$VAR` and runs `$(...)` outside single quotes).
    Dotenvx,
}

impl Consumer {
    /// Every reader, in the order messages list them.
    pub const ALL: [Consumer; 5] = [
        Consumer::Node,
        Consumer::Python,
        Consumer::PythonInterpolate,
        Consumer::Godotenv,
        Consumer::Dotenvx,
    ];

    /// The reader's name as messages print it.
    pub fn name(self) -> &'static str {
        match self {
            Consumer::Node => "node dotenv",
            Consumer::Python => "python-dotenv",
            Consumer::PythonInterpolate => "python-dotenv (interpolate=True)",
            Consumer::Godotenv => "godotenv",
            Consumer::Dotenvx => "dotenvx",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of [`Consumer`]s (those that would not read a value back exactly).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Consumers(u8);

impl Consumers {
    /// The empty set.
    pub const NONE: Consumers = Consumers(0);

    /// The set of every reader in [`Consumer::ALL`].
    pub fn all() -> Consumers {
        Consumers(Consumer::ALL.iter().fold(0, |m, r| m | r.bit()))
    }

    /// This set with `r` added.
    pub fn with(self, r: Consumer) -> Consumers {
        Consumers(self.0 | r.bit())
    }

    /// Whether `r` is in the set.
    pub fn contains(self, r: Consumer) -> bool {
        self.0 & r.bit() != 0
    }

    /// Whether the set has no reader.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    fn count(self) -> u32 {
        self.0.count_ones()
    }

    /// The names, comma separated ("node dotenv, godotenv").
    pub fn names(self) -> String {
        Consumer::ALL
            .iter()
            .filter(|r| self.contains(**r))
            .map(|r| r.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// How a value is written in plaintext dotenv output, and who would misread it.
pub struct Spelling {
    /// The text after `KEY=` (may span lines only inside single quotes).
    pub text: zeroize::Zeroizing<Vec<u8>>,
    /// Consumers that would not get the value back exactly (empty: every reader does).
    pub misread_by: Consumers,
}

/// Characters written without quotes: every dotenv reader takes them literally, and a POSIX
/// shell sourcing the file neither splits, expands nor runs anything (`*?[]{}` are not globbed
/// in an assignment; a trailing `\` only joins the next line into the value).
fn bare_ok(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || "_-.,:/@%+=^*?[]{}!\\".contains(c)
        || (!c.is_ascii() && !c.is_whitespace() && c != '\u{feff}')
}

/// Whether python-dotenv's interpolation would replace part of `v` (`${NAME}` or
/// `${NAME:-default}`; it does so inside every kind of quotes).
fn python_interpolates(v: &str) -> bool {
    let b = v.as_bytes();
    let mut i = 0;
    while let Some(p) = v[i..].find("${") {
        let mut j = i + p + 2;
        while j < b.len() && b[j] != b'}' && b[j] != b':' {
            j += 1;
        }
        if j < b.len() && b[j] == b'}' {
            return true;
        }
        if j + 1 < b.len() && b[j] == b':' && b[j + 1] == b'-' && v[j..].contains('}') {
            return true;
        }
        i = i + p + 2;
    }
    false
}

/// Chooses, for one value, a spelling that every [`Consumer`] reads back byte for byte and that
/// expands or executes nothing in them or in a POSIX shell sourcing the file:
///
/// 1. bare, when every character is literal everywhere (`bare_ok`);
/// 2. double quotes without escapes (a line break written `\n`, a CR `\r`) for values with a
///    line break and none of `" \ $ ``;
/// 3. single quotes when the value has no `'`, no CR, does not end in `\` and no `\\` (which
///    python-dotenv halves) nor `${...}` (which python-dotenv interpolates even there);
/// 4. double quotes without escapes for what is left with none of `" \ $ ``.
///
/// Otherwise no spelling works for all: the one with the fewest misreaders among single quotes
/// and fully escaped double quotes (`\\ \" \$ \` \n \r`, and `$(` as `\$\(` so that dotenvx
/// runs nothing) is chosen, and [`Spelling::misread_by`] names the others. `portable` adds a
/// closing guard (` #"`) after a double-quoted value ending in `\`, without which godotenv
/// would take the closing quote as escaped and swallow the next lines; `edit` needs none.
pub fn spell(value: &[u8], portable: bool) -> Spelling {
    let Ok(v) = std::str::from_utf8(value) else {
        // Not text: no dotenv reader takes it; write it as safely as possible.
        let has = |c: u8| value.contains(&c);
        let text = if !has(b'\'') && !has(b'\r') && value.last() != Some(&b'\\') {
            single(value)
        } else {
            escaped(value, portable)
        };
        return Spelling {
            text,
            misread_by: Consumers::all(),
        };
    };
    if v.chars().all(bare_ok) {
        return Spelling {
            text: zeroize::Zeroizing::new(value.to_vec()),
            misread_by: Consumers::NONE,
        };
    }
    let plain_double_ok = !v.contains(['"', '\\', '$', '`']);
    if plain_double_ok && v.contains(['\n', '\r']) {
        return Spelling {
            text: plain_double(v),
            misread_by: Consumers::NONE,
        };
    }
    let single_ok = !v.contains(['\'', '\r']) && !v.ends_with('\\');
    let single_misread = {
        let mut m = Consumers::NONE;
        if v.contains("\\\\") {
            m = m.with(Consumer::Python).with(Consumer::PythonInterpolate);
        }
        if python_interpolates(v) {
            m = m.with(Consumer::PythonInterpolate);
        }
        m
    };
    if single_ok && single_misread.is_empty() {
        return Spelling {
            text: single(value),
            misread_by: Consumers::NONE,
        };
    }
    if plain_double_ok {
        return Spelling {
            text: plain_double(v),
            misread_by: Consumers::NONE,
        };
    }
    let escaped_misread = {
        let mut m = Consumers::NONE;
        if v.contains(['"', '\\', '$', '`']) {
            m = m.with(Consumer::Node);
        }
        // dotenvx takes `\$` as a `$` (but runs `$(` even so, hence `\(`).
        if v.contains(['"', '\\', '`']) || v.contains("$(") {
            m = m.with(Consumer::Dotenvx);
        }
        if v.contains(['$', '`']) {
            m = m.with(Consumer::Python).with(Consumer::PythonInterpolate);
        }
        if python_interpolates(v) {
            m = m.with(Consumer::PythonInterpolate);
        }
        if v.ends_with(['"', '\\']) {
            m = m.with(Consumer::Godotenv);
        }
        m
    };
    if single_ok && single_misread.count() <= escaped_misread.count() {
        return Spelling {
            text: single(value),
            misread_by: single_misread,
        };
    }
    Spelling {
        text: escaped(value, portable),
        misread_by: escaped_misread,
    }
}

/// Writes a value so that dotenv readers get the same bytes back where a spelling allows it
/// (see [`spell`]).
pub fn quote(value: &[u8]) -> zeroize::Zeroizing<Vec<u8>> {
    spell(value, true).text
}

fn single(value: &[u8]) -> zeroize::Zeroizing<Vec<u8>> {
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(value.len() + 2));
    out.push(b'\'');
    out.extend_from_slice(value);
    out.push(b'\'');
    out
}

fn plain_double(v: &str) -> zeroize::Zeroizing<Vec<u8>> {
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(2 * v.len() + 2));
    out.push(b'"');
    for &b in v.as_bytes() {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
    out.push(b'"');
    out
}

fn escaped(value: &[u8], portable: bool) -> zeroize::Zeroizing<Vec<u8>> {
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(2 * value.len() + 6));
    out.push(b'"');
    for (i, &b) in value.iter().enumerate() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'$' => out.extend_from_slice(b"\\$"),
            b'`' => out.extend_from_slice(b"\\`"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'(' if i > 0 && value[i - 1] == b'$' => out.extend_from_slice(b"\\("),
            _ => out.push(b),
        }
    }
    out.push(b'"');
    if portable && value.last() == Some(&b'\\') {
        out.extend_from_slice(b" #\"");
    }
    out
}

/// Text safe to print after `#` in a comment line: every line break a dotenv reader or a
/// shell honours (CR, LF, VT, FF, NEL, U+2028, U+2029) and every other control character
/// becomes a space, so a comment can never start a new line holding a key.
pub fn comment_text(text: &[u8]) -> zeroize::Zeroizing<Vec<u8>> {
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(text.len()));
    let Ok(s) = std::str::from_utf8(text) else {
        out.extend(text.iter().map(|&b| {
            if (b < 0x20 && b != b'\t') || b == 0x7f {
                b' '
            } else {
                b
            }
        }));
        return out;
    };
    for c in s.chars() {
        if (c.is_control() && c != '\t') || c == '\u{2028}' || c == '\u{2029}' {
            out.push(b' ');
        } else {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    out
}

/// One line of an encrypted (sops dotenv store) file, kept as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// An empty line (kept by envv; sops drops these when it rewrites a file).
    Blank,
    /// `#` + text; the text may be an `ENC[...]` comment.
    Comment(String),
    /// `KEY=stored`; `stored` is the text after the first `=`, with `\n` still escaped.
    Pair {
        /// The key, as stored (the text before the first `=`).
        key: String,
        /// The text after the first `=`, as stored (an `ENC[...]` value or plaintext).
        stored: String,
        /// 1-based line number in the file read.
        line: usize,
    },
}

/// One line of a stored file, borrowed from the text read (see [`each_stored`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineRef<'a> {
    /// An empty line.
    Blank,
    /// `#` + text.
    Comment(&'a str),
    /// `KEY=stored`, as [`Line::Pair`].
    Pair {
        /// The key, as stored.
        key: &'a str,
        /// The text after the first `=`, as stored.
        stored: &'a str,
        /// 1-based line number.
        line: usize,
    },
}

impl LineRef<'_> {
    /// The owned line.
    pub fn to_line(self) -> Line {
        match self {
            LineRef::Blank => Line::Blank,
            LineRef::Comment(c) => Line::Comment(c.to_string()),
            LineRef::Pair { key, stored, line } => Line::Pair {
                key: key.to_string(),
                stored: stored.to_string(),
                line,
            },
        }
    }
}

/// Splits a stored file into lines (sops semantics: the first `=` splits key and value, nothing
/// is unquoted). A trailing CR on a line is dropped (files are written with LF only).
pub fn parse_stored(file: &str, bytes: &[u8]) -> Result<Vec<Line>> {
    let mut lines = Vec::with_capacity(bytes.len() / 64 + 1);
    each_stored(file, bytes, |l| lines.push(l.to_line()))?;
    Ok(lines)
}

/// [`parse_stored`] without copying: gives each line to `f`, in order, as it is read. On an
/// error the lines before it have been given: a caller keeps nothing of them.
pub fn each_stored<'a>(file: &str, bytes: &'a [u8], mut f: impl FnMut(LineRef<'a>)) -> Result<()> {
    let text = decode_utf8(file, bytes)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.starts_with('\u{feff}') {
        // Found by fuzzing: the second mark became part of a key, and writing the file back
        // put it first, where the next read dropped it (the file changed meaning).
        return Err(Error::Parse {
            file: file.into(),
            line: 1,
            msg: "two byte-order marks at the start of the file".into(),
        });
    }
    let body = text.strip_suffix('\n').unwrap_or(text);
    if text.is_empty() {
        return Ok(());
    }
    for (i, untrimmed) in body.split('\n').enumerate() {
        // Trailing CRs go from comments, blank lines, ciphertexts and metadata (all of them, so
        // that a rewrite is a fixed point). A plaintext value keeps them: sops reads a CRLF file's
        // value with its CR, and its MAC covers it.
        let raw = untrimmed.trim_end_matches('\r');
        let line = i + 1;
        if raw.starts_with('\u{feff}') {
            // Found by fuzzing: `sops_…` lines first, then `\u{feff}KEY=…`. A rewrite puts the
            // metadata last, the mark becomes the file's first bytes, and the next read drops
            // it: the key changed name (and no longer matched its ciphertext).
            return Err(Error::Parse {
                file: file.into(),
                line,
                msg: "byte-order mark at the start of a line (only the file may start with one)"
                    .into(),
            });
        }
        if raw.is_empty() {
            f(LineRef::Blank);
        } else if let Some(c) = raw.strip_prefix('#') {
            f(LineRef::Comment(c));
        } else if let Some(eq) = raw.find('=') {
            if raw.contains('\0') {
                return Err(Error::Parse {
                    file: file.into(),
                    line,
                    msg: "NUL byte in line".into(),
                });
            }
            let trimmed = &raw[eq + 1..];
            let stored = if trimmed.is_empty()
                || crate::format::sops::is_enc(trimmed)
                || raw.starts_with("sops_")
            {
                trimmed
            } else {
                &untrimmed[eq + 1..]
            };
            f(LineRef::Pair {
                key: &raw[..eq],
                stored,
                line,
            });
        } else if raw.trim().is_empty() {
            f(LineRef::Blank);
        } else {
            // The line's text is not shown: it may be a pasted secret.
            return Err(Error::Parse {
                file: file.into(),
                line,
                msg: "expected KEY=VALUE or a # comment, found a line without `=`".into(),
            });
        }
    }
    Ok(())
}

/// Writes stored lines, one per LF-terminated line.
pub fn emit_stored(lines: &[Line], out: &mut Vec<u8>) {
    for l in lines {
        match l {
            Line::Blank => {}
            Line::Comment(c) => {
                out.push(b'#');
                out.extend_from_slice(c.as_bytes());
            }
            Line::Pair { key, stored, .. } => {
                out.extend_from_slice(key.as_bytes());
                out.push(b'=');
                out.extend_from_slice(stored.as_bytes());
            }
        }
        out.push(b'\n');
    }
}

/// sops's only escape: the two characters `\n` stand for a line feed.
pub fn unescape_stored(stored: &str) -> Vec<u8> {
    stored.replace("\\n", "\n").into_bytes()
}

/// Inverse of [`unescape_stored`]; `None` when the value cannot be stored in plain text
/// (it contains the text `\n` or a CR, which sops would read back differently).
pub fn escape_stored(value: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(value).ok()?;
    if s.contains("\\n") || s.contains('\r') {
        return None;
    }
    Some(s.replace('\n', "\\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_name_errors_say_why_and_never_show_the_text() {
        assert_eq!(validate_key(""), Err(KeyNameError::Empty));
        assert_eq!(validate_key(&"A".repeat(257)), Err(KeyNameError::TooLong));
        assert!(validate_key(&"A".repeat(256)).is_ok());
        let secret = "9sk_live_51Hx";
        let e = validate_key(secret).unwrap_err();
        assert_eq!(e, KeyNameError::StartsWithDigit);
        assert!(e.to_string().contains("starts with a digit"), "{e}");
        assert!(!e.to_string().contains(secret), "{e}");
        let pasted = "postgres://app:pw@db";
        let e = validate_key(pasted).unwrap_err();
        assert_eq!(e, KeyNameError::BadChar);
        assert!(!e.to_string().contains("pw@db"), "{e}");
        assert!(e.to_string().ends_with(NOT_SHOWN), "{e}");
        let e = validate_key("sops_mac").unwrap_err();
        assert_eq!(
            e.to_string(),
            "key name sops_mac is reserved: names starting with sops_ hold sops metadata"
        );
    }

    fn pairs(text: &str) -> Vec<(String, String, Option<String>)> {
        let text_of = |s: Secret| String::from_utf8(s.expose().to_vec()).unwrap();
        parse_plain("t.env", text)
            .unwrap()
            .into_iter()
            .filter_map(|e| match e {
                Entry::Pair {
                    key,
                    value,
                    comment,
                    ..
                } => Some((
                    key,
                    String::from_utf8(value.expose().to_vec()).unwrap(),
                    comment.map(text_of),
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn dotenv_semantics() {
        let p = pairs(
            "export A=1\nB='x # $y'\nC=\"l1\\nl2 \\\"q\\\" \\\\\"\nD=plain value # note\nE=a#b\nF=\nG=\"multi\nline\"\n  H = spaced  \nI=`tick'\"`\n",
        );
        let got: Vec<(&str, &str)> = p.iter().map(|(k, v, _)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            vec![
                ("A", "1"),
                ("B", "x # $y"),
                ("C", "l1\nl2 \"q\" \\"),
                ("D", "plain value"),
                ("E", "a#b"),
                ("F", ""),
                ("G", "multi\nline"),
                ("H", "spaced"),
                ("I", "tick'\""),
            ]
        );
        assert_eq!(p[3].2.as_deref(), Some(" note"));
    }

    #[test]
    fn a_second_byte_order_mark_is_refused() {
        assert!(parse_stored("x.env", "\u{feff}A=1\n".as_bytes()).is_ok());
        let e = parse_stored("x.env", "\u{feff}\u{feff}#c=d\n".as_bytes()).unwrap_err();
        assert!(e.to_string().starts_with("x.env:1:"), "{e}");
    }

    #[test]
    fn a_byte_order_mark_starting_a_later_line_is_refused() {
        // The metadata first, then a key behind a mark: rewritten, the mark would lead the file.
        let text = "sops_version=3.11.0\n\u{feff}KEY=ENC[x]\n";
        let e = parse_stored("x.env", text.as_bytes()).unwrap_err();
        assert!(e.to_string().starts_with("x.env:2:"), "{e}");
        assert!(!e.to_string().contains("KEY"), "the line is not shown: {e}");
        let e = parse_stored("x.env", "A=1\n\u{feff}#c\n".as_bytes()).unwrap_err();
        assert!(e.to_string().starts_with("x.env:2:"), "{e}");
        assert!(parse_stored("x.env", "\u{feff}A=1\nB=\u{feff}\n".as_bytes()).is_ok());
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse_plain("x.env", "A=1\n\nnot a pair\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("x.env:3:"), "{e}");
        let e = parse_plain("x.env", "1ST=a\n").unwrap_err().to_string();
        assert!(e.contains("x.env:1:") && !e.contains("1ST"), "{e}");
        let long = format!("1{}=a\n", "x".repeat(30));
        let e = parse_plain("x.env", &long).unwrap_err().to_string();
        assert!(
            e.contains("starts with a digit") && !e.contains("xxxx"),
            "{e}"
        );
        // Text from the file is never echoed: it may be part of a secret.
        let e = parse_plain("x.env", "A=1\npostgres://u:hunter2@db/x?a=1\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x.env:2:") && e.contains("column 9") && !e.contains("hunter2"),
            "{e}"
        );
        let e = parse_plain("x.env", "A=1\nMIIEv+abc/hunter2=\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.env:2:") && !e.contains("hunter2"), "{e}");
        let e = parse_plain("x.env", "A=\"open\nB=2\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.env:1:") && e.contains("unterminated"), "{e}");
        let e = parse_plain("x.env", "A=1\nB=2\nA=3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.env:3:") && e.contains("line 1"), "{e}");
        let e = parse_plain("x.env", "A='x' y\n").unwrap_err().to_string();
        assert!(e.contains("after the closing quote"), "{e}");
    }

    #[test]
    fn fuzz_findings() {
        // An escaped NUL inside double quotes was accepted (found by cargo fuzz).
        let e = parse_plain("x.env", "A=\"a\nb\\\0c\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.env:1:") && e.contains("NUL"), "{e}");
        // Trailing CRs: reading is a fixed point after one read (found by cargo fuzz). A
        // plaintext value keeps its CRs (sops's MAC covers them), a comment does not.
        let once =
            parse_stored("x.env", b"#c\r\r\nA=v\r\r\r\nB=ENC[AES256_GCM,data:x]\r\n").unwrap();
        let mut out = Vec::new();
        emit_stored(&once, &mut out);
        assert_eq!(out, b"#c\nA=v\r\r\r\nB=ENC[AES256_GCM,data:x]\n");
        let twice = parse_stored("x.env", &out).unwrap();
        assert_eq!(twice, once);
    }

    #[test]
    fn stray_carriage_returns_at_line_ends_are_dropped() {
        // Found by fuzzing: `#\r\r` read as a comment "\r", written back as "#\r\n", read again
        // as an empty comment.
        assert_eq!(
            parse_plain("f", "#\r\r").unwrap(),
            vec![Entry::Comment(Secret::from_str("")), Entry::Blank]
        );
        let p = pairs("A=1\r\r\nB='x'\r\r\n");
        assert_eq!((p[0].1.as_str(), p[1].1.as_str()), ("1", "x"));
    }

    #[test]
    fn crlf_and_bom() {
        let p = pairs("\u{feff}A=1\r\nB=\"x\r\ny\"\r\n");
        assert_eq!(p[0].1, "1");
        assert_eq!(p[1].1, "x\ny");
    }

    #[test]
    fn quote_round_trips() {
        for v in [
            "",
            "simple",
            "with space",
            "it's",
            "a\nb",
            "q\"uote",
            "back\\slash\\n",
            " lead",
            "#hash",
            "$HOME",
            "tab\tx",
            "ü",
        ] {
            let line = format!(
                "K={}\n",
                String::from_utf8(quote(v.as_bytes()).to_vec()).unwrap()
            );
            let p = pairs(&line);
            assert_eq!(p[0].1, v, "line {line:?}");
        }
    }

    #[test]
    fn every_spelling_reads_back_in_envv() {
        // The edit scratch file and `encrypt` of decrypt's output rely on this.
        for v in [
            "it's \"fine\"",
            "C:\\Users\\me\\",
            "\\\\server\\share",
            "it's $(x) `y` ${Z} \\",
            "a\rb\nc",
            "\u{a0}pad\u{2003}",
            "'\"`$\\",
            "{\n  \"a\": 1\n}",
            "x #y",
            "#x",
            "\\n",
            "$",
            "it's \\",
        ] {
            for portable in [true, false] {
                let s = spell(v.as_bytes(), portable);
                let line = format!("K={}\n", String::from_utf8(s.text.to_vec()).unwrap());
                let p = pairs(&line);
                assert_eq!(p[0].1, v, "line {line:?}");
            }
        }
    }

    #[test]
    fn spellings_by_value() {
        let sp = |v: &str| String::from_utf8(spell(v.as_bytes(), true).text.to_vec()).unwrap();
        assert_eq!(sp("plain"), "plain");
        assert_eq!(sp("\\\\server\\share"), "\\\\server\\share");
        assert_eq!(sp("C:\\Users\\me\\"), "C:\\Users\\me\\");
        assert_eq!(sp("a b"), "'a b'");
        assert_eq!(sp("$HOME"), "'$HOME'");
        assert_eq!(sp("it's"), "\"it's\"");
        assert_eq!(sp("a\nb"), "\"a\\nb\"");
        assert_eq!(sp("it's $(x)"), "\"it's \\$\\(x)\"");
        assert_eq!(sp("it's \\"), "\"it's \\\\\" #\"");
        let m = spell(b"it's \"fine\"", true).misread_by;
        assert_eq!(m.names(), "node dotenv, godotenv, dotenvx");
        assert!(spell(b"${A}", true)
            .misread_by
            .contains(Consumer::PythonInterpolate));
    }

    #[test]
    fn comments_never_span_lines() {
        let c = comment_text("a\rB=1\nC=2\u{2028}D\u{85}E\x0bF".as_bytes());
        assert_eq!(&c[..], "a B=1 C=2 D E F".as_bytes());
    }

    #[test]
    fn stored_lines_round_trip() {
        let text = "# c\n\nexport X=ENC[a]\nK= v \n#\n";
        let lines = parse_stored("f", text.as_bytes()).unwrap();
        assert_eq!(lines[1], Line::Blank);
        assert!(matches!(&lines[2], Line::Pair { key, .. } if key == "export X"));
        let mut out = Vec::new();
        emit_stored(&lines, &mut out);
        assert_eq!(String::from_utf8(out).unwrap(), text);
    }

    #[test]
    fn stored_rejects_garbage_with_line() {
        let e = parse_stored("f.env", b"A=1\ngarbage\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f.env:2:"), "{e}");
        let e = parse_stored("f.env", b"A=1\nB=\xff\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f.env:2:"), "{e}");
    }
}
