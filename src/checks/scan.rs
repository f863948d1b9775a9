//! Finding the repository's own secrets where they do not belong.
//!
//! envv holds the real values, so it does not guess with regexes or entropy: it searches for
//! each managed value and the forms a value takes when it is copied into code, configuration or
//! logs (base64 in every alignment and both alphabets, percent-encoding, JSON/shell escapes).
//! All forms of all values go into one multi-pattern automaton (Aho-Corasick), which reads
//! every byte once, in fixed-size chunks, so memory stays bounded on large files.
//!
//! Three sources can be searched: the working tree (tracked files and untracked ones git does
//! not ignore), the index, and every blob of every reachable commit (a finding is reported by
//! the commit that introduced it). Files holding sops-encrypted dotenv content are never
//! searched: the values are meant to be there, encrypted.
//!
//! The automaton holds the encoded forms in memory for as long as the search runs; the
//! buffers envv builds them in are zeroized, the automaton's own copy is not (it is an
//! external crate's allocation). Nothing here prints, and a [`Hit`] carries only where a value
//! was found and which one, never the bytes.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine;
use zeroize::Zeroizing;

use crate::error::{Error, IoContext, Result};
use crate::secret::Secret;

/// Values shorter than this (in bytes) are not searched unless `--min-length` says otherwise:
/// short values match ordinary text.
pub const DEFAULT_MIN_LENGTH: usize = 8;
/// Files up to this size are read whole; larger ones are streamed in chunks.
const WHOLE_FILE_BYTES: u64 = 4 << 20;
/// Binary files (a NUL in their first 8 KiB) larger than this are skipped; smaller binaries
/// are searched (secrets leak into binaries too).
pub const BINARY_SKIP_BYTES: u64 = 16 << 20;
/// Blobs (index, history) larger than this are not read: libgit2 inflates a blob whole.
pub const MAX_BLOB_BYTES: u64 = 256 << 20;
/// Bytes searched per step when streaming.
const CHUNK: usize = 1 << 20;

/// The form in which a value was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Encoding {
    /// The value's bytes as they are.
    Plain,
    /// Standard-alphabet base64 (`+/`), at any of the three byte alignments.
    Base64,
    /// URL-safe-alphabet base64 (`-_`), at any of the three byte alignments.
    Base64Url,
    /// Percent-encoding of every byte outside RFC 3986's unreserved set, hex in either case.
    UrlEncoded,
    /// JSON string escapes, or those plus `\$` and `` \` `` as in a double-quoted shell string.
    Escaped,
}

impl Encoding {
    /// The name shown to users and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Plain => "plain",
            Encoding::Base64 => "base64",
            Encoding::Base64Url => "base64url",
            Encoding::UrlEncoded => "url-encoded",
            Encoding::Escaped => "escaped",
        }
    }
}

/// One managed value to search for.
#[derive(Debug, Clone)]
pub struct Value {
    /// The dotenv key holding the value (a placeholder naming the line when the name is invalid).
    pub key: String,
    /// The environment (or file name) the value belongs to.
    pub env: String,
    /// The decrypted value whose forms are searched for.
    pub value: Secret,
}

/// The searchable forms of one value (plain first), without duplicates.
pub fn forms(value: &[u8]) -> Vec<(Encoding, Zeroizing<Vec<u8>>)> {
    let mut out: Vec<(Encoding, Zeroizing<Vec<u8>>)> =
        vec![(Encoding::Plain, Zeroizing::new(value.to_vec()))];
    let mut add = |enc: Encoding, form: Zeroizing<Vec<u8>>| {
        if form.len() >= 4 && !out.iter().any(|(_, f)| *f == form) {
            out.push((enc, form));
        }
    };
    for (enc, engine) in [
        (
            Encoding::Base64,
            &base64::engine::general_purpose::STANDARD_NO_PAD,
        ),
        (
            Encoding::Base64Url,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ),
    ] {
        for offset in 0..3 {
            add(enc, base64_core(engine, value, offset));
        }
    }
    add(Encoding::UrlEncoded, percent_encode(value, false));
    add(Encoding::UrlEncoded, percent_encode(value, true));
    add(Encoding::Escaped, escape(value, false));
    add(Encoding::Escaped, escape(value, true));
    out
}

/// The base64 characters that depend only on `value` when it starts `offset` bytes (0..3) into
/// a longer base64-encoded stream: the characters that straddle a neighbouring byte are cut.
fn base64_core(
    engine: &base64::engine::GeneralPurpose,
    value: &[u8],
    offset: usize,
) -> Zeroizing<Vec<u8>> {
    let mut input = Zeroizing::new(vec![0u8; offset]);
    input.extend_from_slice(value);
    let encoded = Zeroizing::new(engine.encode(&input[..]).into_bytes());
    let first = (8 * offset).div_ceil(6);
    let last = (8 * (offset + value.len())) / 6;
    Zeroizing::new(encoded[first.min(last)..last].to_vec())
}

/// Percent-encoding of every byte outside RFC 3986's unreserved set (upper- or lower-case hex).
fn percent_encode(value: &[u8], lower: bool) -> Zeroizing<Vec<u8>> {
    let hex: &[u8; 16] = if lower {
        b"0123456789abcdef"
    } else {
        b"0123456789ABCDEF"
    };
    let mut out = Zeroizing::new(Vec::with_capacity(value.len() * 3));
    for &b in value {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', hex[(b >> 4) as usize], hex[(b & 15) as usize]]);
        }
    }
    out
}

/// JSON string escapes (`\"`, `\\`, `\n`, `\r`, `\t`); with `shell`, also `\$` and `` \` ``
/// as in a double-quoted shell or dotenv string.
fn escape(value: &[u8], shell: bool) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(value.len() + 8));
    for &b in value {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'$' | b'`' if shell => out.extend_from_slice(&[b'\\', b]),
            _ => out.push(b),
        }
    }
    out
}

/// Bytes of a form the [`Prefilter`] looks up.
const HEAD: usize = 8;

/// Which values could be in a known haystack, before any search is built: every 8-byte window
/// of the haystack goes into a Bloom filter, and a value is kept when the first 8 bytes of one
/// of its [`forms`] may be a window. No form of a value that is not kept occurs in the
/// haystack, so the automaton needs only the values kept. This makes a search of a small
/// haystack (the hook's staged files) cost a lookup per form instead of an automaton over
/// every form of every value.
pub struct Prefilter {
    bits: Vec<u64>,
    shift: u32,
}

impl Prefilter {
    /// A filter sized for `bytes` bytes of haystack: 32 bits per window, three per lookup (a
    /// value's eleven lookups pass by chance about once in 150), 16 MiB at most.
    pub fn with_capacity(bytes: u64) -> Prefilter {
        let wanted = bytes.saturating_mul(32).clamp(1 << 16, 1 << 27);
        let log2 = 64 - (wanted - 1).leading_zeros();
        Prefilter {
            bits: vec![0; 1usize << (log2 - 6)],
            shift: 64 - log2,
        }
    }

    fn slots(&self, head: u64) -> [usize; 3] {
        let a = head.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let b = (head ^ (a >> 29)).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        let c = (head ^ (b >> 31)).wrapping_mul(0x1656_67B1_9E37_79F9);
        [a, b, c].map(|h| (h >> self.shift) as usize)
    }

    /// Adds every window of `haystack`.
    pub fn add(&mut self, haystack: &[u8]) {
        for w in haystack.windows(HEAD) {
            let head = u64::from_le_bytes(w.try_into().expect("8-byte window"));
            for s in self.slots(head) {
                self.bits[s / 64] |= 1 << (s % 64);
            }
        }
    }

    fn may_hold_head(&self, head: &[u8]) -> bool {
        let Ok(head) = <[u8; HEAD]>::try_from(head) else {
            return true; // a form shorter than a window: not filtered
        };
        let head = u64::from_le_bytes(head);
        self.slots(head)
            .iter()
            .all(|&s| self.bits[s / 64] & (1 << (s % 64)) != 0)
    }

    /// Whether a form of `value` may be in the haystack (false: certainly none is).
    pub fn may_hold(&self, value: &[u8]) -> bool {
        form_heads(value, |head| self.may_hold_head(head))
    }
}

/// Calls `f` with the first [`HEAD`] bytes (fewer for a short form) of each of `value`'s
/// [`forms`], until it returns true; whether it did. Built in buffers on the stack, wiped after.
fn form_heads(value: &[u8], mut f: impl FnMut(&[u8]) -> bool) -> bool {
    use zeroize::Zeroize;
    if f(&value[..value.len().min(HEAD)]) {
        return true;
    }
    let mut input = [0u8; 12];
    let mut encoded = [0u8; 16];
    let mut out = [0u8; HEAD + 2];
    let mut found = false;
    'forms: {
        // Base64 in each alignment: the characters whose bits all come from the value. Those
        // of the first 8 characters come from its first 12 bytes at most.
        for engine in [
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            for offset in 0..3 {
                let n = offset + value.len().min(12 - offset);
                input[..offset].fill(0);
                input[offset..n].copy_from_slice(&value[..n - offset]);
                let written = engine
                    .encode_slice(&input[..n], &mut encoded)
                    .expect("16 bytes hold the base64 of 12");
                let first = (8 * offset).div_ceil(6);
                let last = ((8 * n) / 6).min(written);
                if f(&encoded[first.min(last)..last.min(first + HEAD)]) {
                    found = true;
                    break 'forms;
                }
            }
        }
        // Percent-encoded (both cases of hex) and JSON/shell-escaped, byte by byte.
        for variant in 0..4 {
            let mut len = 0;
            for &b in value {
                if len >= HEAD {
                    break;
                }
                let hex: &[u8; 16] = if variant == 0 {
                    b"0123456789ABCDEF"
                } else {
                    b"0123456789abcdef"
                };
                let piece: &[u8] = match variant {
                    0 | 1 if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => &[b],
                    0 | 1 => &[b'%', hex[(b >> 4) as usize], hex[(b & 15) as usize]],
                    _ => match b {
                        b'"' => b"\\\"",
                        b'\\' => b"\\\\",
                        b'\n' => b"\\n",
                        b'\r' => b"\\r",
                        b'\t' => b"\\t",
                        b'$' | b'`' if variant == 3 => &[b'\\', b],
                        _ => &[b],
                    },
                };
                out[len..len + piece.len()].copy_from_slice(piece);
                len += piece.len();
            }
            if f(&out[..len.min(HEAD)]) {
                found = true;
                break 'forms;
            }
        }
    }
    input.zeroize();
    encoded.zeroize();
    out.zeroize();
    found
}

/// Where one form of one value was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hit {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in bytes.
    pub column: usize,
    /// Index into [`Matcher::labels`].
    pub value: usize,
    /// The form the value was found in.
    pub encoding: Encoding,
}

/// All forms of all values in one automaton.
pub struct Matcher {
    ac: Option<AhoCorasick>,
    /// Per pattern: the values (index, form) it stands for (several keys may share a value).
    targets: Vec<Vec<(usize, Encoding)>>,
    labels: Vec<(String, String)>,
    /// Bytes carried from one chunk to the next so a match across the boundary is found.
    keep: usize,
}

impl Matcher {
    /// Builds the automaton for the values at least `min_len` bytes long.
    pub fn new(values: &[Value], min_len: usize) -> Result<Matcher> {
        let mut entries: Vec<(Zeroizing<Vec<u8>>, usize, Encoding)> = Vec::new();
        let mut labels = Vec::new();
        for v in values {
            if v.value.len() < min_len.max(1) {
                continue;
            }
            let id = labels.len();
            labels.push((v.key.clone(), v.env.clone()));
            for (enc, form) in forms(v.value.expose()) {
                entries.push((form, id, enc));
            }
        }
        // One pattern per distinct form (several keys may hold the same value).
        entries.sort_by(|a, b| a.0[..].cmp(&b.0[..]));
        let mut patterns: Vec<Zeroizing<Vec<u8>>> = Vec::new();
        let mut targets: Vec<Vec<(usize, Encoding)>> = Vec::new();
        for (form, id, enc) in entries {
            if patterns.last().is_none_or(|p| p[..] != form[..]) {
                patterns.push(form);
                targets.push(Vec::new());
            }
            let t = targets.last_mut().expect("pushed above");
            if !t.contains(&(id, enc)) {
                t.push((id, enc));
            }
        }
        let keep = patterns.iter().map(|p| p.len()).max().unwrap_or(1) - 1;
        let ac = if patterns.is_empty() {
            None
        } else {
            // The crate's own choice: a DFA for small sets, else a contiguous NFA. A DFA for
            // thousands of forms took ~150 ms to build (the hook's budget is 100 ms) and
            // searched a 40 MB tree no faster (scripts/bench-scan.sh).
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::Standard)
                    .build(patterns.iter().map(|p| &p[..]))
                    .map_err(|e| Error::usage(format!("cannot build the value search: {e}")))?,
            )
        };
        Ok(Matcher {
            ac,
            targets,
            labels,
            keep,
        })
    }

    /// Whether no value is searched for.
    pub fn is_empty(&self) -> bool {
        self.ac.is_none()
    }

    /// `(key, environment)` of every value searched for, by [`Hit::value`].
    pub fn labels(&self) -> &[(String, String)] {
        &self.labels
    }

    /// Every hit in `bytes`, sorted, one per (line, value, form).
    pub fn search_bytes(&self, bytes: &[u8]) -> Vec<Hit> {
        let mut pos = Position::default();
        let mut hits = Vec::new();
        self.search_window(bytes, 0, &mut pos, &mut hits);
        finish(hits)
    }

    /// Every hit in what `r` yields, read in chunks (memory stays bounded).
    pub fn search_reader(&self, mut r: impl Read) -> std::io::Result<Vec<Hit>> {
        let mut buf = vec![0u8; CHUNK + self.keep];
        let mut carried = 0;
        let mut pos = Position::default();
        let mut hits = Vec::new();
        loop {
            let mut filled = carried;
            while filled < buf.len() {
                match r.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            let eof = filled < buf.len();
            self.search_window(&buf[..filled], carried, &mut pos, &mut hits);
            if eof {
                break;
            }
            // Keep the tail: a match may start in it and end in the next chunk.
            let tail = self.keep.min(filled);
            pos.advance(&buf[..filled - tail]);
            buf.copy_within(filled - tail..filled, 0);
            carried = tail;
        }
        Ok(finish(hits))
    }

    /// Hits in `window` ending after its first `skip` bytes (those were searched before).
    fn search_window(&self, window: &[u8], skip: usize, pos: &mut Position, out: &mut Vec<Hit>) {
        let Some(ac) = &self.ac else {
            return;
        };
        let mut found: Vec<(usize, usize)> = ac
            .find_overlapping_iter(window)
            .filter(|m| m.end() > skip)
            .map(|m| (m.start(), m.pattern().as_usize()))
            .collect();
        if found.is_empty() {
            return;
        }
        found.sort_unstable();
        // Line and column of each start, counting newlines once across the window.
        let mut at = 0;
        let mut line = pos.line;
        let mut line_start: Option<usize> = None;
        for (start, pattern) in found {
            for nl in memchr::memchr_iter(b'\n', &window[at..start]) {
                line += 1;
                line_start = Some(at + nl + 1);
            }
            at = start;
            let column = match line_start {
                Some(s) => start - s + 1,
                None => pos.column + start + 1,
            };
            for &(value, encoding) in &self.targets[pattern] {
                out.push(Hit {
                    line,
                    column,
                    value,
                    encoding,
                });
            }
        }
    }
}

/// Line (1-based) and column (0-based bytes) of the first byte of a window.
#[derive(Debug, Clone, Copy)]
struct Position {
    line: usize,
    column: usize,
}

impl Default for Position {
    fn default() -> Self {
        Position { line: 1, column: 0 }
    }
}

impl Position {
    fn advance(&mut self, passed: &[u8]) {
        let newlines = memchr::memchr_iter(b'\n', passed).count();
        if newlines == 0 {
            self.column += passed.len();
        } else {
            self.line += newlines;
            self.column = passed.len() - 1 - memchr::memrchr(b'\n', passed).unwrap_or(0);
        }
    }
}

/// Sorted, one hit per (line, value, form): the first column.
fn finish(mut hits: Vec<Hit>) -> Vec<Hit> {
    hits.sort_unstable_by_key(|h| (h.line, h.value, h.encoding, h.column));
    hits.dedup_by_key(|h| (h.line, h.value, h.encoding));
    hits.sort_unstable();
    hits
}

/// Whether `bytes` is a sops-encrypted dotenv file (its values are meant to be there).
pub fn is_encrypted_dotenv(bytes: &[u8]) -> bool {
    may_be_encrypted_dotenv(bytes)
        && crate::store::file::EnvFile::from_bytes(Path::new(""), "", bytes)
            .is_ok_and(|f| f.is_encrypted())
}

/// The checks of [`is_encrypted_dotenv`] that come before the parse: sops metadata among the
/// last 64 lines, no NUL byte, not above the size limit. A blob that passes them and whose
/// stored lines, structure and metadata are valid (what the hook's index checks verify) is
/// encrypted content.
pub fn may_be_encrypted_dotenv(bytes: &[u8]) -> bool {
    bytes
        .rsplit(|&b| b == b'\n')
        .take(64)
        .any(|l| l.starts_with(b"sops_mac=") || l.starts_with(b"sops_version="))
        && bytes.len() as u64 <= crate::store::file::MAX_FILE_BYTES
        && memchr::memchr(0, bytes).is_none()
}

fn looks_binary(head: &[u8]) -> bool {
    head.iter().take(8192).any(|&b| b == 0)
}

/// What searching one file gave.
#[derive(Debug)]
pub enum FileOutcome {
    /// The hits found; empty also when the path is not a regular file.
    Hits(Vec<Hit>),
    /// An encrypted dotenv file: not searched.
    Encrypted,
    /// A binary larger than [`BINARY_SKIP_BYTES`] (or a blob above [`MAX_BLOB_BYTES`]): not
    /// searched.
    SkippedBinary,
}

/// Searches one file of the file system (a symlink is not followed: the caller lists files).
pub fn search_file(m: &Matcher, path: &Path) -> Result<FileOutcome> {
    let meta = std::fs::symlink_metadata(path).at(path)?;
    if !meta.is_file() {
        return Ok(FileOutcome::Hits(Vec::new()));
    }
    let mut open = std::fs::OpenOptions::new();
    open.read(true);
    #[cfg(unix)]
    {
        // Not through a symlink swapped in after the check above.
        use std::os::unix::fs::OpenOptionsExt;
        open.custom_flags(libc::O_NOFOLLOW);
    }
    let f = open.open(path).at(path)?;
    // Bounded by the bytes read, not by the size reported above (the file may grow).
    let mut head = Zeroizing::new(Vec::with_capacity(
        meta.len().min(WHOLE_FILE_BYTES) as usize + 1,
    ));
    (&f).take(WHOLE_FILE_BYTES + 1)
        .read_to_end(&mut head)
        .at(path)?;
    if head.len() as u64 <= WHOLE_FILE_BYTES {
        return Ok(search_blob(m, &head));
    }
    if meta.len() > BINARY_SKIP_BYTES && looks_binary(&head) {
        return Ok(FileOutcome::SkippedBinary);
    }
    let rest = std::io::Cursor::new(&head[..]).chain(f);
    Ok(FileOutcome::Hits(m.search_reader(rest).at(path)?))
}

/// Searches bytes held in memory (a blob, a small file).
pub fn search_blob(m: &Matcher, bytes: &[u8]) -> FileOutcome {
    not_searched(bytes).unwrap_or_else(|| FileOutcome::Hits(m.search_bytes(bytes)))
}

/// Why bytes held in memory are not searched (encrypted dotenv content, a large binary).
fn not_searched(bytes: &[u8]) -> Option<FileOutcome> {
    if is_encrypted_dotenv(bytes) {
        return Some(FileOutcome::Encrypted);
    }
    if bytes.len() as u64 > BINARY_SKIP_BYTES && looks_binary(bytes) {
        return Some(FileOutcome::SkippedBinary);
    }
    None
}

/// A file of the working tree to search.
#[derive(Debug, Clone)]
pub struct TreeFile {
    /// Path relative to the git work tree, `/`-separated (for messages and globs).
    pub name: String,
    /// Where the file is read on disk.
    pub path: PathBuf,
}

#[cfg(unix)]
fn path_of_bytes(b: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(b))
}

#[cfg(not(unix))]
fn path_of_bytes(b: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(b).into_owned())
}

/// The files of the working tree: every tracked file present on disk (regular files only,
/// no symlinks, no submodules) and every untracked file git does not ignore.
pub fn worktree_files(repo: &git2::Repository) -> Result<Vec<TreeFile>> {
    let workdir = repo
        .workdir()
        .ok_or_else(|| Error::usage("a bare repository has no working tree to scan"))?
        .to_path_buf();
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut out = Vec::new();
    let mut push = |raw: &[u8]| {
        if seen.insert(raw.to_vec()) {
            let path = workdir.join(path_of_bytes(raw));
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
                out.push(TreeFile {
                    name: String::from_utf8_lossy(raw).into_owned(),
                    path,
                });
            }
        }
    };
    let index = repo.index()?;
    for e in index.iter() {
        let mode = e.mode & 0o170000;
        if (e.flags >> 12) & 0x3 == 0 && mode == 0o100000 {
            push(&e.path);
        }
    }
    let mut opts = git2::StatusOptions::new();
    opts.include_untracked(true)
        .recurse_untracked_dirs(true)
        .include_ignored(false)
        .include_unmodified(false)
        .exclude_submodules(true)
        .show(git2::StatusShow::Workdir);
    for s in repo.statuses(Some(&mut opts))?.iter() {
        if s.status().contains(git2::Status::WT_NEW) {
            push(s.path_bytes());
        }
    }
    Ok(out)
}

/// Tracked files whose name is a dotenv file's (`.env`, `.env.<name>`): where encrypted
/// values live, also in other folders of a monorepo. Read from the index only (fast).
pub fn tracked_dotenv_files(repo: &git2::Repository) -> Result<Vec<TreeFile>> {
    let Some(workdir) = repo.workdir() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for e in repo.index()?.iter() {
        let name = String::from_utf8_lossy(&e.path).into_owned();
        if e.mode & 0o170000 == 0o100000
            && crate::git::hook::dotenv_kind(&name) == Some(crate::git::hook::DotenvKind::Secret)
        {
            out.push(TreeFile {
                path: workdir.join(path_of_bytes(&e.path)),
                name,
            });
        }
    }
    Ok(out)
}

/// Every regular file under `dir` (symlinks are not followed; `.git` folders are skipped).
pub fn walk_dir(dir: &Path, base: &Path) -> Result<Vec<TreeFile>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).at(&d)? {
            let entry = entry.at(&d)?;
            let ft = entry.file_type().at(entry.path())?;
            let p = entry.path();
            if ft.is_dir() {
                if entry.file_name() != ".git" {
                    stack.push(p);
                }
            } else if ft.is_file() {
                let name = p
                    .strip_prefix(base)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .into_owned();
                out.push(TreeFile { name, path: p });
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The outcome of each file, searched on all cores (`files[i]` ↔ result `i`).
pub fn search_files(m: &Matcher, files: &[TreeFile]) -> Vec<Result<FileOutcome>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(8)
        .min(files.len().max(1));
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<Result<FileOutcome>>> = (0..files.len()).map(|_| None).collect();
    let parts: Vec<Vec<(usize, Result<FileOutcome>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= files.len() {
                            break;
                        }
                        mine.push((i, search_file(m, &files[i].path)));
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("search thread"))
            .collect()
    });
    for (i, r) in parts.into_iter().flatten() {
        results[i] = Some(r);
    }
    results
        .into_iter()
        .map(|r| r.expect("every file searched"))
        .collect()
}

/// A staged file: its path (lossy UTF-8) and blob.
#[derive(Debug, Clone)]
pub struct StagedFile {
    /// Path relative to the repository root, `/`-separated, lossy UTF-8.
    pub name: String,
    /// The staged blob, the content the next commit would record.
    pub blob: git2::Oid,
}

/// Staged regular files; with `changed_only`, those whose staged blob differs from HEAD's.
pub fn staged_files(repo: &git2::Repository, changed_only: bool) -> Result<Vec<StagedFile>> {
    let index = crate::git::staged_index(repo)?;
    let head = if changed_only {
        repo.head().ok().and_then(|h| h.peel_to_tree().ok())
    } else {
        None
    };
    let mut out = Vec::new();
    for e in index.iter() {
        if (e.flags >> 12) & 0x3 != 0 || e.mode & 0o170000 != 0o100000 {
            continue;
        }
        if let Some(t) = &head {
            let same = t
                .get_path(&path_of_bytes(&e.path))
                .is_ok_and(|te| te.id() == e.id);
            if same {
                continue;
            }
        }
        out.push(StagedFile {
            name: String::from_utf8_lossy(&e.path).into_owned(),
            blob: e.id,
        });
    }
    Ok(out)
}

/// The blob, unless it is above [`MAX_BLOB_BYTES`] (libgit2 inflates a blob whole, so past
/// that size it is not read and memory stays bounded).
fn read_blob(repo: &git2::Repository, id: git2::Oid) -> Result<Option<git2::Blob<'_>>> {
    if let Ok((size, _)) = repo.odb().and_then(|o| o.read_header(id)) {
        if size as u64 > MAX_BLOB_BYTES {
            return Ok(None);
        }
    }
    Ok(Some(repo.find_blob(id)?))
}

/// Reads a blob for searching.
fn blob_outcome(repo: &git2::Repository, m: &Matcher, id: git2::Oid) -> Result<FileOutcome> {
    Ok(match read_blob(repo, id)? {
        Some(blob) => search_blob(m, blob.content()),
        None => FileOutcome::SkippedBinary,
    })
}

/// The blob, when [`search_staged`] would search it: not above [`MAX_BLOB_BYTES`], not
/// encrypted dotenv content, not a binary above [`BINARY_SKIP_BYTES`].
pub fn searchable_blob(repo: &git2::Repository, id: git2::Oid) -> Result<Option<git2::Blob<'_>>> {
    Ok(read_blob(repo, id)?.filter(|b| not_searched(b.content()).is_none()))
}

/// Searches staged blobs.
pub fn search_staged(
    repo: &git2::Repository,
    m: &Matcher,
    files: &[StagedFile],
) -> Result<Vec<FileOutcome>> {
    files
        .iter()
        .map(|f| blob_outcome(repo, m, f.blob))
        .collect()
}

/// A hit in history: the commit that introduced it, and the path.
#[derive(Debug, Clone)]
pub struct HistoryHit {
    /// A commit whose version of the path holds this form of the value and no parent's does.
    pub commit: git2::Oid,
    /// Commit time (seconds since the epoch).
    pub time: i64,
    /// Path in that commit's tree, `/`-separated, lossy UTF-8.
    pub path: String,
    /// Where in that blob the value was found.
    pub hit: Hit,
}

/// Totals of a history search.
#[derive(Debug, Default, Clone)]
pub struct HistoryStats {
    /// Commits read (every commit reachable from any ref, each once).
    pub commits: usize,
    /// Distinct blobs examined, each once, including encrypted and skipped ones.
    pub blobs: usize,
    /// Blobs not searched: binaries above [`BINARY_SKIP_BYTES`], blobs above [`MAX_BLOB_BYTES`].
    pub skipped_binaries: usize,
}

/// Searches every blob of every commit reachable from any ref (and HEAD). A hit is reported
/// by each commit whose version of a path has it (same value, same form) while the parents'
/// versions of that path do not: once per introducing commit, not once per later commit that
/// still holds it. `keep(path)` filters paths (the allow-list).
pub fn search_history(
    repo: &git2::Repository,
    m: &Matcher,
    keep: impl Fn(&str) -> bool,
) -> Result<(Vec<HistoryHit>, HistoryStats)> {
    git2::opts::strict_hash_verification(false);
    let walk = crate::git::history::every_commit(repo)?;
    let mut stats = HistoryStats::default();

    // 1. What each commit changes (tree diffs only: no blob is read yet).
    struct Change {
        commit: git2::Oid,
        time: i64,
        path: String,
        new: git2::Oid,
        before: Vec<git2::Oid>,
    }
    let mut changes = Vec::new();
    for oid in walk {
        let commit = repo.find_commit(oid?)?;
        stats.commits += 1;
        let tree = commit.tree()?;
        let parents: Vec<git2::Tree> = commit
            .parents()
            .map(|p| p.tree())
            .collect::<std::result::Result<_, _>>()?;
        let diff = repo.diff_tree_to_tree(parents.first(), Some(&tree), None)?;
        for d in diff.deltas() {
            if !matches!(
                d.status(),
                git2::Delta::Added
                    | git2::Delta::Modified
                    | git2::Delta::Renamed
                    | git2::Delta::Copied
                    | git2::Delta::Typechange
            ) {
                continue;
            }
            let nf = d.new_file();
            if nf.mode() != git2::FileMode::Blob && nf.mode() != git2::FileMode::BlobExecutable {
                continue;
            }
            let Some(raw) = nf.path_bytes() else {
                continue;
            };
            let path = String::from_utf8_lossy(raw).into_owned();
            if !keep(&path) {
                continue;
            }
            // What the parents have at this path (in a merge, every parent).
            let before = parents
                .iter()
                .filter_map(|pt| pt.get_path(&path_of_bytes(raw)).ok())
                .filter(|e| e.kind() == Some(git2::ObjectType::Blob))
                .map(|e| e.id())
                .collect();
            changes.push(Change {
                commit: commit.id(),
                time: commit.time().seconds(),
                path,
                new: nf.id(),
                before,
            });
        }
    }

    // 2. Every new blob searched once, on all cores; then the parents' versions of the paths
    // that had hits.
    let mut hits: HashMap<git2::Oid, Vec<Hit>> = HashMap::new();
    // In commit order: packed blobs are deltas of each other, and libgit2's delta-base cache
    // works when neighbours are read together (in object id order it took 3x the time).
    let mut seen = HashSet::new();
    let wanted: Vec<git2::Oid> = changes
        .iter()
        .map(|c| c.new)
        .filter(|id| seen.insert(*id))
        .collect();
    search_blobs_parallel(repo, m, &wanted, &mut hits, &mut stats)?;
    let wanted: Vec<git2::Oid> = changes
        .iter()
        .filter(|c| hits.get(&c.new).is_some_and(|h| !h.is_empty()))
        .flat_map(|c| c.before.iter().copied())
        .filter(|id| !hits.contains_key(id) && seen.insert(*id))
        .collect();
    search_blobs_parallel(repo, m, &wanted, &mut hits, &mut stats)?;

    // 3. A hit is introduced where no parent's version of the path had it.
    let mut out = Vec::new();
    for c in &changes {
        let Some(new_hits) = hits.get(&c.new).filter(|h| !h.is_empty()) else {
            continue;
        };
        let before: HashSet<(usize, Encoding)> = c
            .before
            .iter()
            .filter_map(|id| hits.get(id))
            .flatten()
            .map(|h| (h.value, h.encoding))
            .collect();
        for h in new_hits {
            if !before.contains(&(h.value, h.encoding)) {
                out.push(HistoryHit {
                    commit: c.commit,
                    time: c.time,
                    path: c.path.clone(),
                    hit: *h,
                });
            }
        }
    }
    Ok((out, stats))
}

/// Searches `ids` on all cores (one repository handle per thread: libgit2 handles are not
/// shared between threads) into `hits`.
fn search_blobs_parallel(
    repo: &git2::Repository,
    m: &Matcher,
    ids: &[git2::Oid],
    hits: &mut HashMap<git2::Oid, Vec<Hit>>,
    stats: &mut HistoryStats,
) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8)
        .min(ids.len());
    let git_dir = repo.path().to_path_buf();
    type Part = Result<Vec<(git2::Oid, FileOutcome)>>;
    // One contiguous run of ids per thread, read in order (see the caller).
    let per = ids.len().div_ceil(workers);
    let parts: Vec<Part> = std::thread::scope(|s| {
        let handles: Vec<_> = ids
            .chunks(per)
            .map(|run| {
                let git_dir = &git_dir;
                s.spawn(move || -> Part {
                    let repo = git2::Repository::open(git_dir)?;
                    run.iter()
                        .map(|&id| Ok((id, blob_outcome(&repo, m, id)?)))
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("search thread"))
            .collect()
    });
    for part in parts {
        for (id, outcome) in part? {
            stats.blobs += 1;
            let found = match outcome {
                FileOutcome::Hits(h) => h,
                FileOutcome::Encrypted => Vec::new(),
                FileOutcome::SkippedBinary => {
                    stats.skipped_binaries += 1;
                    Vec::new()
                }
            };
            hits.insert(id, found);
        }
    }
    Ok(())
}

/// A glob of the allow-list, matched against `/`-separated paths relative to the repository
/// root: `*` and `?` stay within one path segment, `**` crosses segments, a pattern without
/// `/` matches a file or folder name at any depth, and a pattern matching a folder covers
/// everything under it.
#[derive(Debug, Clone)]
pub struct Glob {
    pattern: Vec<u8>,
    anchored: bool,
}

impl Glob {
    /// Compiles an allow-list pattern; a leading `./` or `/` and a trailing `/` are ignored.
    pub fn new(pattern: &str) -> Glob {
        let p = pattern.trim_start_matches("./");
        let anchored = p.trim_end_matches('/').contains('/');
        Glob {
            pattern: p
                .trim_start_matches('/')
                .trim_end_matches('/')
                .as_bytes()
                .to_vec(),
            anchored,
        }
    }

    /// Whether `path` (or one of its parent folders) matches.
    pub fn matches(&self, path: &str) -> bool {
        let path = path.trim_start_matches("./").as_bytes();
        // The path itself and each parent folder (`a/b/c` → `a/b/c`, `a/b`, `a`).
        let mut candidates = vec![path];
        for (i, &b) in path.iter().enumerate().rev() {
            if b == b'/' {
                candidates.push(&path[..i]);
            }
        }
        candidates.into_iter().any(|c| {
            if self.anchored {
                wildmatch(&self.pattern, c)
            } else {
                let name = c.rsplit(|&b| b == b'/').next().unwrap_or(c);
                wildmatch(&self.pattern, name)
            }
        })
    }
}

/// Glob matching with memoisation (the policy is untrusted: no exponential backtracking).
fn wildmatch(p: &[u8], s: &[u8]) -> bool {
    let mut memo = vec![0u8; (p.len() + 1) * (s.len() + 1)];
    wild(p, s, 0, 0, &mut memo)
}

fn wild(p: &[u8], s: &[u8], pi: usize, si: usize, memo: &mut [u8]) -> bool {
    let slot = pi * (s.len() + 1) + si;
    if memo[slot] != 0 {
        return memo[slot] == 2;
    }
    let (pp, ss) = (&p[pi..], &s[si..]);
    let r = match pp.first() {
        None => ss.is_empty(),
        Some(b'*') if pp.get(1) == Some(&b'*') => {
            let after = &pp[2..];
            if after.is_empty() {
                true
            } else if after.first() == Some(&b'/') {
                // `**/`: zero or more whole segments.
                wild(p, s, pi + 3, si, memo)
                    || (0..ss.len()).any(|i| ss[i] == b'/' && wild(p, s, pi + 3, si + i + 1, memo))
            } else {
                (0..=ss.len()).any(|i| wild(p, s, pi + 2, si + i, memo))
            }
        }
        Some(b'*') => {
            let mut ok = false;
            for i in 0..=ss.len() {
                if wild(p, s, pi + 1, si + i, memo) {
                    ok = true;
                    break;
                }
                if i < ss.len() && ss[i] == b'/' {
                    break;
                }
            }
            ok
        }
        Some(b'?') => !ss.is_empty() && ss[0] != b'/' && wild(p, s, pi + 1, si + 1, memo),
        Some(&c) => !ss.is_empty() && ss[0] == c && wild(p, s, pi + 1, si + 1, memo),
    };
    memo[slot] = if r { 2 } else { 1 };
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(vals: &[(&str, &str)]) -> Matcher {
        let values: Vec<Value> = vals
            .iter()
            .map(|(k, v)| Value {
                key: k.to_string(),
                env: "default".into(),
                value: Secret::from_str(v),
            })
            .collect();
        Matcher::new(&values, DEFAULT_MIN_LENGTH).unwrap()
    }

    fn encodings(m: &Matcher, text: &[u8]) -> Vec<&'static str> {
        m.search_bytes(text)
            .iter()
            .map(|h| h.encoding.name())
            .collect()
    }

    /// Values of every length from 1 to 40 over bytes that every form treats differently.
    fn awkward_values() -> Vec<Vec<u8>> {
        let alphabet: &[u8] = b"aZ9-._~ %\"\\\n\r\t$`+/=\x00\xff\xc3\xa9";
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut out = Vec::new();
        for len in 1..=40 {
            for _ in 0..40 {
                let v: Vec<u8> = (0..len)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        alphabet[(state % alphabet.len() as u64) as usize]
                    })
                    .collect();
                out.push(v);
            }
        }
        out
    }

    #[test]
    fn form_heads_begin_every_form() {
        for v in awkward_values() {
            let mut heads: Vec<Vec<u8>> = Vec::new();
            form_heads(&v, |h| {
                heads.push(h.to_vec());
                false
            });
            for (enc, form) in forms(&v) {
                let head = &form[..form.len().min(HEAD)];
                assert!(
                    heads.iter().any(|h| h == head),
                    "{enc:?} form of {v:?} begins {head:?}, not among {heads:?}"
                );
            }
        }
    }

    #[test]
    fn prefilter_keeps_every_value_in_the_haystack() {
        let values = awkward_values();
        let mut haystack = Vec::new();
        for (i, v) in values.iter().enumerate().filter(|(i, _)| i % 7 == 0) {
            let (_, form) = &forms(v)[i % forms(v).len()];
            haystack.extend_from_slice(b"x = ");
            haystack.extend_from_slice(form);
            haystack.push(b'\n');
        }
        let mut p = Prefilter::with_capacity(haystack.len() as u64);
        p.add(&haystack);
        // Absent values kept although none of their heads is in the haystack: the filter's
        // false positives (a head that is there, such as a run of `%2` in a percent-encoded
        // form, is a true one).
        let (mut absent, mut kept_by_chance) = (0, 0);
        for (i, v) in values.iter().enumerate() {
            if i % 7 == 0 {
                assert!(p.may_hold(v), "value {i} is in the haystack");
                continue;
            }
            if v.len() < HEAD {
                continue;
            }
            absent += 1;
            let mut literal = false;
            form_heads(v, |h| {
                literal |= haystack.windows(h.len()).any(|w| w == h);
                false
            });
            if p.may_hold(v) && !literal {
                kept_by_chance += 1;
            }
        }
        assert!(absent > 1000);
        assert!(
            kept_by_chance * 100 <= absent,
            "{kept_by_chance} of {absent}"
        );
    }

    #[test]
    fn base64_inside_a_longer_blob_in_every_alignment() {
        let secret = "s3cr3t-Value+/?x";
        let m = matcher(&[("K", secret)]);
        let std = base64::engine::general_purpose::STANDARD;
        let url = base64::engine::general_purpose::URL_SAFE;
        for pre in ["", "a", "ab", "abc", "abcd"] {
            for post in ["", "z", "zz"] {
                let blob = format!("{pre}{secret}{post}");
                let e = std.encode(blob.as_bytes());
                assert_eq!(encodings(&m, e.as_bytes()), ["base64"], "{pre}|{post}");
                // Where the URL-safe core has no `-`/`_`, it is the standard one.
                let e = url.encode(blob.as_bytes());
                let found = encodings(&m, e.as_bytes());
                assert!(
                    found == ["base64url"] || found == ["base64"],
                    "{pre}|{post}: {found:?}"
                );
            }
        }
    }

    #[test]
    fn url_and_escaped_forms() {
        let m = matcher(&[("K", "p@ss w/\"q\"\nend$")]);
        assert_eq!(
            encodings(&m, b"x?pw=p%40ss%20w%2F%22q%22%0Aend%24&y"),
            ["url-encoded"]
        );
        assert_eq!(
            encodings(&m, b"{\"pw\":\"p@ss w/\\\"q\\\"\\nend$\"}"),
            ["escaped"]
        );
        assert_eq!(
            encodings(&m, b"P=\"p@ss w/\\\"q\\\"\\nend\\$\""),
            ["escaped"]
        );
    }

    #[test]
    fn short_values_are_not_searched_and_lines_are_counted() {
        let m = matcher(&[("SHORT", "abc1234"), ("LONG", "abcdefgh12")]);
        assert_eq!(m.labels().len(), 1);
        let hits = m.search_bytes(b"abc1234\nxx\n  abcdefgh12\n");
        assert_eq!(hits.len(), 1);
        assert_eq!((hits[0].line, hits[0].column), (3, 3));
    }

    #[test]
    fn streaming_finds_matches_across_chunks() {
        let secret = "needle-0123456789";
        let m = matcher(&[("K", secret)]);
        let mut text = vec![b'.'; CHUNK - 5];
        text.push(b'\n');
        text.extend_from_slice(b"ab");
        text.extend_from_slice(secret.as_bytes());
        text.extend(std::iter::repeat_n(b'-', CHUNK * 2));
        text.extend_from_slice(b"\n\n  ");
        text.extend_from_slice(secret.as_bytes());
        let hits = m.search_reader(&text[..]).unwrap();
        assert_eq!(hits.len(), 2, "{hits:?}");
        assert_eq!((hits[0].line, hits[0].column), (2, 3));
        assert_eq!((hits[1].line, hits[1].column), (4, 3));
        assert_eq!(hits, m.search_bytes(&text));
    }

    #[test]
    #[cfg(unix)]
    fn large_files_are_streamed_and_symlinks_not_followed() {
        let secret = "needle-0123456789";
        let m = matcher(&[("K", secret)]);
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.txt");
        let mut text = vec![b'x'; WHOLE_FILE_BYTES as usize - 4];
        text.extend_from_slice(secret.as_bytes());
        text.extend(std::iter::repeat_n(b'y', CHUNK + 10));
        std::fs::write(&big, &text).unwrap();
        match search_file(&m, &big).unwrap() {
            FileOutcome::Hits(h) => assert_eq!(h.len(), 1, "{h:?}"),
            other => panic!("{other:?}"),
        }
        let link = dir.path().join("link.txt");
        std::os::unix::fs::symlink(&big, &link).unwrap();
        assert!(matches!(search_file(&m, &link).unwrap(), FileOutcome::Hits(h) if h.is_empty()));
    }

    #[test]
    fn encrypted_files_are_recognised() {
        assert!(!is_encrypted_dotenv(b"A=1\nsops_version=3\n"));
        assert!(!is_encrypted_dotenv(b"just text"));
    }

    #[test]
    fn globs() {
        let g = Glob::new("tests/fixtures/**");
        assert!(g.matches("tests/fixtures/a.txt"));
        assert!(g.matches("tests/fixtures/x/y.txt"));
        assert!(!g.matches("tests/other.txt"));
        assert!(!g.matches("src/tests/fixtures/a"));
        let g = Glob::new("*.pem");
        assert!(g.matches("a/b/key.pem") && g.matches("key.pem") && !g.matches("a.pem.txt"));
        let g = Glob::new("docs");
        assert!(g.matches("docs/x.md") && g.matches("a/docs/y") && !g.matches("docsy"));
        let g = Glob::new("src/*.js");
        assert!(g.matches("src/a.js") && !g.matches("src/x/a.js"));
        let g = Glob::new("**/snap/*.txt");
        assert!(g.matches("snap/a.txt") && g.matches("x/y/snap/a.txt"));
    }
}
