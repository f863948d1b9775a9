//! Every plaintext output format, written into zeroizing buffers.
//!
//! Decrypted values leave envv in one of these shapes: the file as dotenv text (`decrypt`, the
//! `edit` scratch file, git's textconv) or a list of variables (`export` as dotenv, shell, JSON,
//! docker `--env-file`, a Kubernetes Secret, GitHub Actions' `$GITHUB_ENV`). Each renderer sizes
//! its buffer for the worst case before writing, because a growing `Vec` leaves copies of the
//! plaintext behind in freed memory, and returns the warnings for the caller to print: this
//! module never prints.

use base64::Engine;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::exec::Var;
use crate::format::dotenv::{self, Line};
use crate::store::file::{EnvFile, Opened};

/// Rendered plaintext and the warnings that go with it.
pub struct Rendered {
    /// The text, wiped when dropped.
    pub bytes: Zeroizing<Vec<u8>>,
    /// One line each, for stderr (never a value).
    pub warnings: Vec<String>,
}

/// Who reads a rendered file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileMode {
    /// `decrypt`: other programs. Only authenticated text: comments that were not encrypted
    /// are dropped; values are spelled for the dotenv readers ([`dotenv::spell`]).
    Decrypt,
    /// `edit`'s scratch file, read back by envv: plaintext comments are shown (on one line) so
    /// that saving keeps them.
    Edit,
    /// `decrypt --textconv`, shown by git diff: like `Edit`, with the portable spellings.
    Textconv,
}

/// The decrypted file as dotenv text: comments, blank lines, spelled values. Lines whose key is
/// not a key name (a sops file may hold any text before `=`) are left out, with a warning.
pub fn file(o: &Opened, mode: FileMode) -> Rendered {
    let f = o.file();
    // Room for the worst case (every value double-quoted with every byte escaped), so the buffer
    // never grows.
    let cap = o.entries().map(|(l, v)| {
        let key = if let Line::Pair { key, .. } = l {
            key.len()
        } else {
            0
        };
        // At least the textconv note that replaces a line whose key is not a name.
        (key + v.as_ref().map_or(0, |v| 2 * v.len()) + 8).max(NOTE_ROOM)
    });
    let mut out = Zeroizing::new(Vec::with_capacity(cap.sum::<usize>() + 64));
    let room = out.capacity();
    let mut warnings = Vec::new();
    let plan = f.plan();
    for (i, (l, value)) in o.entries().enumerate() {
        match l {
            Line::Blank => out.push(b'\n'),
            Line::Comment(text) => {
                let authenticated = plan[i] && crate::format::sops::is_enc(text);
                if !authenticated && mode == FileMode::Decrypt {
                    continue;
                }
                out.push(b'#');
                if let Some(v) = value {
                    // A comment spanning lines would turn into data lines: keep it on one.
                    out.extend_from_slice(&dotenv::comment_text(v.expose()));
                }
                out.push(b'\n');
            }
            Line::Pair { key, line, .. } => {
                let n = if *line > 0 { *line } else { i + 1 };
                // sops keeps `export ` in a key it read from `export KEY=v`; every dotenv
                // reader and shell takes that line as written.
                let name = key.strip_prefix("export ").unwrap_or(key);
                let mut shown = key.as_str();
                if dotenv::validate_key(name).is_err() {
                    let why = dotenv::key_problem(key);
                    match (mode, edit_name(f, key)) {
                        (FileMode::Edit, Some(fixed)) => {
                            warnings.push(format!("{}:{n}: shown as {fixed} (the file stores it with `export ` or spaces); saving stores it under that name", f.name()));
                            shown = fixed;
                        }
                        (FileMode::Edit, None) => {
                            warnings.push(format!(
                                "{}:{n}: not shown, and removed when you save: {why}",
                                f.name()
                            ));
                            continue;
                        }
                        (FileMode::Decrypt, _) => {
                            warnings.push(format!("{}:{n}: left out: {why}", f.name()));
                            continue;
                        }
                        (FileMode::Textconv, _) => {
                            out.extend_from_slice(
                                format!("# envv: line {n} left out: not a key name\n").as_bytes(),
                            );
                            continue;
                        }
                    }
                }
                out.extend_from_slice(shown.as_bytes());
                out.push(b'=');
                if let Some(v) = value {
                    let s = dotenv::spell(v.expose(), mode != FileMode::Edit);
                    out.extend_from_slice(&s.text);
                    if mode == FileMode::Decrypt && !s.misread_by.is_empty() {
                        warnings.push(format!(
                            "{}: {}",
                            f.name(),
                            misread_warning(key, s.misread_by)
                        ));
                    }
                }
                out.push(b'\n');
            }
        }
    }
    unmoved(&out, room);
    Rendered {
        bytes: out,
        warnings,
    }
}

/// Room for `# envv: line N left out: not a key name` with any line number.
const NOTE_ROOM: usize = 64;

/// Checks (in debug builds, so every test does) that a buffer sized for the worst case did not
/// have to grow: growing copies the plaintext and frees the old block unwiped.
fn unmoved(out: &Zeroizing<Vec<u8>>, room: usize) {
    debug_assert_eq!(out.capacity(), room, "a plaintext buffer grew");
}

/// The name a stored key written by hand means (`export FOO`, ` FOO `), when it is a valid name
/// no other line of the file uses.
fn edit_name<'a>(f: &EnvFile, key: &'a str) -> Option<&'a str> {
    let t = key.trim();
    let t = match t.strip_prefix("export") {
        Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start(),
        _ => t,
    };
    (dotenv::validate_key(t).is_ok() && f.find(t).is_none()).then_some(t)
}

/// The warning for a value that no dotenv spelling carries to every reader.
pub fn misread_warning(key: &str, by: dotenv::Consumers) -> String {
    format!(
        "{key} has no dotenv spelling that every reader takes literally; {} would read it differently (`envv export --format json` and `envv exec` carry it exactly)",
        by.names()
    )
}

fn buffer(vars: &[Var], per_byte: usize, per_var: usize) -> Zeroizing<Vec<u8>> {
    let cap: usize = vars
        .iter()
        .map(|v| v.key.len() + per_byte * v.value.len() + per_var)
        .sum();
    Zeroizing::new(Vec::with_capacity(cap + 64))
}

/// `KEY=value` lines spelled for the dotenv readers; a warning names each value that no spelling
/// carries to all of them.
pub fn dotenv(vars: &[Var]) -> Rendered {
    let mut out = buffer(vars, 2, 8);
    let room = out.capacity();
    let mut warnings = Vec::new();
    for v in vars {
        out.extend_from_slice(v.key.as_bytes());
        out.push(b'=');
        let s = dotenv::spell(v.value.expose(), true);
        out.extend_from_slice(&s.text);
        out.push(b'\n');
        if !s.misread_by.is_empty() {
            warnings.push(misread_warning(&v.key, s.misread_by));
        }
    }
    unmoved(&out, room);
    Rendered {
        bytes: out,
        warnings,
    }
}

/// `export KEY='value'` lines for a POSIX shell.
pub fn shell(vars: &[Var]) -> Zeroizing<Vec<u8>> {
    let mut out = buffer(vars, 4, 12);
    let room = out.capacity();
    for v in vars {
        out.extend_from_slice(b"export ");
        out.extend_from_slice(v.key.as_bytes());
        out.extend_from_slice(b"='");
        for &b in v.value.expose() {
            if b == b'\'' {
                out.extend_from_slice(b"'\\''");
            } else {
                out.push(b);
            }
        }
        out.extend_from_slice(b"'\n");
    }
    unmoved(&out, room);
    out
}

fn utf8(v: &Var) -> Result<&str> {
    v.value.expose_str().ok_or_else(|| {
        Error::refused(format!(
            "the value of {} is not UTF-8 text; this format cannot carry it",
            v.key
        ))
    })
}

/// Writes `s` as a JSON string (quotes included).
fn json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut b = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// One JSON object of strings, keys sorted, two-space indented.
pub fn json(vars: &[Var]) -> Result<Zeroizing<Vec<u8>>> {
    let mut sorted: Vec<&Var> = Vec::with_capacity(vars.len());
    for v in vars {
        utf8(v)?;
        sorted.push(v);
    }
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    // A later layer's key wins, as in the environment.
    sorted.dedup_by(|later, earlier| {
        if later.key == earlier.key {
            std::mem::swap(later, earlier);
            true
        } else {
            false
        }
    });
    let mut out = buffer(vars, 6, 12);
    let room = out.capacity();
    if sorted.is_empty() {
        out.extend_from_slice(b"{}\n");
        return Ok(out);
    }
    out.extend_from_slice(b"{\n");
    for (n, v) in sorted.iter().enumerate() {
        out.extend_from_slice(b"  ");
        json_string(&mut out, &v.key);
        out.extend_from_slice(b": ");
        json_string(&mut out, utf8(v)?);
        if n + 1 < sorted.len() {
            out.push(b',');
        }
        out.push(b'\n');
    }
    out.extend_from_slice(b"}\n");
    unmoved(&out, room);
    Ok(out)
}

/// `KEY=value` lines as docker's `--env-file` reads them (no quoting, no line breaks).
pub fn docker(vars: &[Var]) -> Result<Zeroizing<Vec<u8>>> {
    let mut out = buffer(vars, 1, 2);
    let room = out.capacity();
    for v in vars {
        if v.value.expose().iter().any(|&b| b == b'\n' || b == b'\r') {
            return Err(Error::refused_hint(
                format!("{} has a line break, which docker's --env-file cannot carry", v.key),
                "run the container with `envv exec` as entrypoint, or use --format dotenv with compose's env_file",
            ));
        }
        out.extend_from_slice(v.key.as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.value.expose());
        out.push(b'\n');
    }
    unmoved(&out, room);
    Ok(out)
}

/// Checks a Kubernetes object name (RFC 1123 subdomain).
pub fn check_k8s_name(name: Option<&str>) -> Result<()> {
    let name = name.ok_or_else(|| {
        Error::usage("--format k8s needs --name NAME (the Secret's metadata.name)")
    })?;
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(Error::usage_hint(
            format!("--name \"{}\" is not a valid Kubernetes name", name.escape_debug()),
            "use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit",
        ));
    }
    Ok(())
}

/// A Kubernetes `Secret` manifest with every value base64-encoded under `data:`.
pub fn k8s(vars: &[Var], name: &str, namespace: Option<&str>) -> Zeroizing<Vec<u8>> {
    // Room for the header too (a name of up to 253 bytes, an escaped namespace).
    let header = 96 + name.len() + namespace.map_or(0, |n| 6 * n.len());
    let mut out = buffer(vars, 2, 12);
    let want = out.capacity() + header;
    out.reserve_exact(want);
    let room = out.capacity();
    out.extend_from_slice(b"apiVersion: v1\nkind: Secret\nmetadata:\n");
    out.extend_from_slice(format!("  name: {name}\n").as_bytes());
    if let Some(ns) = namespace {
        out.extend_from_slice(b"  namespace: ");
        json_string(&mut out, ns);
        out.push(b'\n');
    }
    out.extend_from_slice(b"type: Opaque\n");
    if vars.is_empty() {
        out.extend_from_slice(b"data: {}\n");
        unmoved(&out, room);
        return out;
    }
    out.extend_from_slice(b"data:\n");
    let engine = base64::engine::general_purpose::STANDARD;
    for v in vars {
        out.extend_from_slice(b"  ");
        out.extend_from_slice(v.key.as_bytes());
        out.extend_from_slice(b": \"");
        let start = out.len();
        out.resize(
            start + base64::encoded_len(v.value.len(), true).unwrap_or(0),
            0,
        );
        let n = engine
            .encode_slice(v.value.expose(), &mut out[start..])
            .expect("sized above");
        out.truncate(start + n);
        out.extend_from_slice(b"\"\n");
    }
    unmoved(&out, room);
    out
}

/// Escapes workflow-command data as the runner unescapes it (`%`, CR, LF).
fn escape_command_data(out: &mut Vec<u8>, line: &[u8]) {
    for &b in line {
        match b {
            b'%' => out.extend_from_slice(b"%25"),
            b'\r' => out.extend_from_slice(b"%0D"),
            b'\n' => out.extend_from_slice(b"%0A"),
            _ => out.push(b),
        }
    }
}

/// For GitHub Actions: `::add-mask::` lines (for stdout) and `$GITHUB_ENV` heredoc entries.
pub fn github(vars: &[Var]) -> (Zeroizing<Vec<u8>>, Zeroizing<Vec<u8>>) {
    use rand::Rng;
    // A mask line per value line: `%` alone on a line is 16 bytes of masks for 2 of value.
    let mut masks = buffer(vars, 8, 16);
    let mut entries = buffer(vars, 1, 112);
    let rooms = (masks.capacity(), entries.capacity());
    for v in vars {
        let value = v.value.expose();
        if v.secret {
            for line in value.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                masks.extend_from_slice(b"::add-mask::");
                escape_command_data(&mut masks, line);
                masks.push(b'\n');
            }
        }
        let delimiter = loop {
            let d = format!("ghadelimiter_{:032x}", rand::thread_rng().gen::<u128>());
            if !value.windows(d.len()).any(|w| w == d.as_bytes()) {
                break d;
            }
        };
        entries.extend_from_slice(v.key.as_bytes());
        entries.extend_from_slice(b"<<");
        entries.extend_from_slice(delimiter.as_bytes());
        entries.push(b'\n');
        if !value.is_empty() {
            entries.extend_from_slice(value);
            entries.push(b'\n');
        }
        entries.extend_from_slice(delimiter.as_bytes());
        entries.push(b'\n');
    }
    unmoved(&masks, rooms.0);
    unmoved(&entries, rooms.1);
    (masks, entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn var(k: &str, v: &str) -> Var {
        Var {
            key: k.into(),
            value: Secret::from_str(v),
            secret: true,
            layer: 0,
        }
    }

    #[test]
    fn shell_quoting_survives_single_quotes() {
        let out = shell(&[var("A", "it's")]);
        assert_eq!(&out[..], b"export A='it'\\''s'\n");
    }

    #[test]
    fn k8s_names_are_checked() {
        assert!(check_k8s_name(Some("my-app.v1")).is_ok());
        assert!(check_k8s_name(Some("My_App")).is_err());
        assert!(check_k8s_name(None).is_err());
    }

    #[test]
    fn github_masks_each_line_and_escapes_percent() {
        let (masks, _) = github(&[var("A", "one\n50%\n")]);
        assert_eq!(&masks[..], b"::add-mask::one\n::add-mask::50%25\n");
    }

    #[test]
    fn json_matches_serde_json_and_never_grows_its_buffer() {
        let vars = [
            var("B", "q\"uote\\ \u{1} \n\t é 😀"),
            var("A", ""),
            var("B", "later wins"),
        ];
        let out = json(&vars).unwrap();
        let cap = out.capacity();
        let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(parsed["A"], "");
        assert_eq!(parsed["B"], "later wins");
        let mut map = serde_json::Map::new();
        map.insert("A".into(), "".into());
        map.insert("B".into(), "q\"uote\\ \u{1} \n\t é 😀".into());
        let want = serde_json::to_vec_pretty(&serde_json::Value::Object(map)).unwrap();
        let one = json(&vars[..2]).unwrap();
        assert_eq!(&one[..one.len() - 1], &want[..]);
        assert_eq!(out.capacity(), cap);
        assert_eq!(&json(&[]).unwrap()[..], b"{}\n");
    }

    // Each renderer checks, in debug builds, that its buffer never grew: these inputs are the
    // worst cases of each format.
    #[test]
    fn buffers_hold_the_worst_case_without_growing() {
        let short_lines = "%\n".repeat(200);
        let (masks, _) = github(&[var("A", &short_lines), var("B", "a\nb\nc")]);
        assert_eq!(masks.iter().filter(|&&b| b == b'\n').count(), 203);
        let name = format!("{}.{}", "a".repeat(126), "b".repeat(126));
        let out = k8s(&[var("A", "x")], &name, Some(&"\u{1}".repeat(40)));
        assert!(out.ends_with(b"  A: \"eA==\"\n"));
        let controls: String = (0u8..0x20).map(char::from).collect();
        let out = json(&[var("A", &controls)]).unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&out).unwrap()["A"],
            controls.as_str()
        );
        shell(&[var("A", &"'".repeat(100))]);
        dotenv(&[var("A", &"\"$\\`\n".repeat(50))]);
    }

    #[test]
    fn textconv_notes_fit_the_buffer() {
        let tmp = tempfile::tempdir().unwrap();
        let public = crate::keys::keygen(&tmp.path().join("test-key.txt")).unwrap();
        let r = crate::keys::Recipient::parse(&public).unwrap();
        let f = Opened::encrypt_new(
            std::path::Path::new(".env"),
            ".env",
            "A=1\n",
            &[r],
            crate::format::sops::CryptRule::default(),
        )
        .unwrap();
        // Lines whose key is not a name (empty values, outside the MAC), each replaced by a
        // note longer than the line.
        let mut text = String::from_utf8(f.to_bytes()).unwrap();
        let at = text.find("sops_").unwrap();
        let odd: String = (0..20).map(|n| format!("a {n}=\n")).collect();
        text.insert_str(at, &odd);
        let g = EnvFile::from_bytes(std::path::Path::new(".env"), ".env", text.as_bytes()).unwrap();
        let o = g.decrypt(f.data_key(), true).unwrap();
        let out = file(&o, FileMode::Textconv);
        let shown = String::from_utf8(out.bytes.to_vec()).unwrap();
        assert_eq!(
            shown.matches("left out: not a key name").count(),
            20,
            "{shown}"
        );
    }

    #[test]
    fn k8s_values_are_base64() {
        let out = k8s(&[var("A", "hi")], "app", Some("ns"));
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(text.contains("  A: \"aGk=\"\n"), "{text}");
        assert!(text.contains("  namespace: \"ns\"\n"), "{text}");
    }
}
