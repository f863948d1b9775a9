//! Proposals: values written by someone who cannot read the environment.
//!
//! A write-only contributor (no identity, no membership) encrypts a value with age to the
//! recipients that the environment's file already wraps its data key for, taken from that
//! file's own metadata, never from `.sops.yaml`, whose new readers could be unconfirmed. The
//! result goes into a proposal file beside the environment file (`.env.production.proposals`),
//! which is committed and reviewed like any change. A reader later folds accepted proposals
//! into the environment file through the normal write path, or drops them.
//!
//! The file format is line based and strict, so that the pre-commit hook can tell a proposal
//! file from one holding plaintext:
//!
//! ```text
//! # envv proposals for .env.production: ...
//!
//! [proposal]
//! key = STRIPE_KEY
//! by = Jane Doe <jane@example.com>
//! date = 2026-12-01T19:40:00Z
//! -----BEGIN AGE ENCRYPTED FILE-----
//! ...
//! -----END AGE ENCRYPTED FILE-----
//! ```
//!
//! Everything in it arrives through git and is untrusted: key names are validated, the
//! proposer and date are shown with control characters removed, and values are opened only
//! by a reader's identity.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Suffix of a proposal file, after the environment file's own name.
pub const SUFFIX: &str = ".proposals";
/// Largest value a proposal may carry, in bytes.
pub const MAX_VALUE: usize = 64 * 1024;
/// Largest proposal file envv reads.
const MAX_FILE: usize = 4 * 1024 * 1024;

const BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
const END: &str = "-----END AGE ENCRYPTED FILE-----";

/// One proposed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// The key the value is for (a valid key name).
    pub key: String,
    /// Who proposed it (git `user.name <user.email>` of the proposer; untrusted).
    pub by: String,
    /// When (RFC 3339, UTC; untrusted).
    pub date: String,
    /// The value, as an armored age file encrypted to the environment's readers.
    pub armored: String,
}

impl Proposal {
    /// `by`, with control characters removed, for terminals.
    pub fn by_shown(&self) -> String {
        printable(&self.by)
    }

    /// `date`, with control characters removed, for terminals.
    pub fn date_shown(&self) -> String {
        printable(&self.date)
    }
}

fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// The proposal file of an environment file: `<file>.proposals`.
pub fn path_for(env_file: &Path) -> PathBuf {
    let mut s = env_file.as_os_str().to_owned();
    s.push(SUFFIX);
    PathBuf::from(s)
}

/// Whether a repository path names a proposal file.
pub fn is_proposal_path(path: &str) -> bool {
    path.ends_with(SUFFIX)
}

/// Reads the proposals of an environment file; none when the proposal file does not exist.
pub fn load(env_file: &Path, name: &str) -> Result<Vec<Proposal>> {
    let path = path_for(env_file);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&path, e)),
    };
    parse(&format!("{name}{SUFFIX}"), &bytes)
}

/// A proposal being read: where it starts and the fields seen so far.
#[derive(Default)]
struct Draft {
    start: usize,
    key: Option<String>,
    by: Option<String>,
    date: Option<String>,
}

/// Parses a proposal file. Any line that is not part of the format is an error naming the line
/// (never its text: it could be a pasted secret).
pub fn parse(file: &str, bytes: &[u8]) -> Result<Vec<Proposal>> {
    let err = |line: usize, msg: &str| Error::Parse {
        file: file.to_string(),
        line,
        msg: format!("{msg} (the line's text is not shown)"),
    };
    if bytes.len() > MAX_FILE {
        return Err(Error::format(
            file,
            "larger than 4 MiB: not a proposal file",
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| Error::format(file, "not UTF-8 text"))?;
    let mut out = Vec::new();
    let mut cur: Option<Draft> = None;
    let mut armor: Option<String> = None;
    for (i, raw) in text.split('\n').enumerate() {
        let n = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(a) = armor.as_mut() {
            if line == END {
                a.push_str(END);
                a.push('\n');
                let d = cur
                    .take()
                    .ok_or_else(|| err(n, "armor outside a proposal"))?;
                let key = d
                    .key
                    .ok_or_else(|| err(d.start, "proposal without `key =`"))?;
                out.push(Proposal {
                    key,
                    by: d.by.unwrap_or_default(),
                    date: d.date.unwrap_or_default(),
                    armored: armor.take().unwrap_or_default(),
                });
            } else if !line.is_empty()
                && line.len() <= 64
                && line
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
            {
                a.push_str(line);
                a.push('\n');
            } else {
                return Err(err(n, "not base64 inside an age armor block"));
            }
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            if line.starts_with('#') && cur.is_some() {
                return Err(err(n, "a comment inside a proposal"));
            }
            continue;
        }
        if line == "[proposal]" {
            if let Some(d) = cur {
                return Err(err(d.start, "proposal without an encrypted value"));
            }
            cur = Some(Draft {
                start: n,
                ..Draft::default()
            });
            continue;
        }
        let Some(c) = cur.as_mut() else {
            return Err(err(n, "text outside a [proposal] section"));
        };
        if line == BEGIN {
            armor = Some(format!("{BEGIN}\n"));
            continue;
        }
        let Some((field, value)) = line.split_once(" = ") else {
            return Err(err(
                n,
                "expected `key = `, `by = `, `date = ` or an age armor block",
            ));
        };
        let slot = match field {
            "key" => {
                crate::format::dotenv::validate_key(value).map_err(|m| err(n, &m.to_string()))?;
                &mut c.key
            }
            "by" => &mut c.by,
            "date" => &mut c.date,
            _ => return Err(err(n, "unknown field")),
        };
        if slot.is_some() {
            return Err(err(n, "field given twice"));
        }
        *slot = Some(value.to_string());
    }
    if armor.is_some() {
        return Err(Error::format(file, "an age armor block is not closed"));
    }
    if let Some(d) = cur {
        return Err(err(d.start, "proposal without an encrypted value"));
    }
    Ok(out)
}

/// Writes a proposal file for the environment file `name`, of environment `env` when known.
pub fn render(name: &str, env: Option<&str>, proposals: &[Proposal]) -> String {
    let target = match env {
        Some(e) => format!("-e {e}"),
        None => format!("-f {name}"),
    };
    let mut s = format!(
        "# envv proposals for {name}: values encrypted to its readers by people who cannot read it.\n\
         # A reader folds them in with `envv accept {target}` or drops them with `envv reject {target} KEY`.\n"
    );
    for p in proposals {
        s.push_str(&format!(
            "\n[proposal]\nkey = {}\nby = {}\ndate = {}\n{}",
            p.key,
            printable(&p.by),
            printable(&p.date),
            p.armored
        ));
        if !p.armored.ends_with('\n') {
            s.push('\n');
        }
    }
    s
}

/// Three-way merge of proposal files, key by key: a key changed on one side only takes that
/// side; the same key proposed differently on both sides is a conflict (its name returned).
pub fn merge3(
    base: &[Proposal],
    ours: &[Proposal],
    theirs: &[Proposal],
) -> std::result::Result<Vec<Proposal>, Vec<String>> {
    let find = |list: &[Proposal], k: &str| list.iter().find(|p| p.key == k).cloned();
    let mut keys: Vec<String> = Vec::new();
    for p in ours.iter().chain(theirs).chain(base) {
        if !keys.contains(&p.key) {
            keys.push(p.key.clone());
        }
    }
    let mut out = Vec::new();
    let mut conflicts = Vec::new();
    for k in keys {
        let (b, o, t) = (find(base, &k), find(ours, &k), find(theirs, &k));
        let pick = if o == t || t == b {
            o
        } else if o == b {
            t
        } else {
            conflicts.push(k);
            continue;
        };
        out.extend(pick);
    }
    if conflicts.is_empty() {
        Ok(out)
    } else {
        Err(conflicts)
    }
}

/// Saves proposals atomically beside `env_file`, or removes the file when none are left.
pub fn save(env_file: &Path, name: &str, env: Option<&str>, proposals: &[Proposal]) -> Result<()> {
    let path = path_for(env_file);
    if proposals.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&path, e)),
            _ => Ok(()),
        };
    }
    crate::os::files::write_atomic(&path, render(name, env, proposals).as_bytes(), 0o644)
}

/// Problems that make a staged proposal file unsafe to commit (for the pre-commit hook): it
/// must parse, and every value must be an age file. Never includes any of the file's text.
pub fn staged_problem(path: &str, bytes: &[u8]) -> Option<String> {
    match parse(path, bytes) {
        Ok(props) => props.iter().find_map(|p| {
            age::Decryptor::new(age::armor::ArmoredReader::new(p.armored.as_bytes()))
                .err()
                .map(|_| format!("{path}: the proposal for {} is not a valid age file", p.key))
        }),
        Err(e) => Some(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Proposal {
        let id = age::x25519::Identity::generate();
        let r = crate::keys::Recipient::parse(&id.to_public().to_string()).unwrap();
        Proposal {
            key: "STRIPE_KEY".into(),
            by: "Jane <jane@example.com>".into(),
            date: "2026-12-01T19:40:00Z".into(),
            armored: crate::keys::encrypt_armored(&[r], b"sk_test_123").unwrap(),
        }
    }

    #[test]
    fn render_then_parse_round_trips() {
        let props = vec![
            sample(),
            Proposal {
                key: "OTHER".into(),
                ..sample()
            },
        ];
        let text = render(".env.production", Some("production"), &props);
        assert_eq!(parse("p", text.as_bytes()).unwrap(), props);
        assert!(staged_problem("p", text.as_bytes()).is_none());
    }

    #[test]
    fn plaintext_and_stray_lines_are_refused() {
        let ok = render(".env", None, &[sample()]);
        for bad in [
            "API_KEY=hunter2\n".to_string(),
            ok.replace("key = STRIPE_KEY", "key = 1BAD"),
            ok.replace("[proposal]\n", "[proposal]\nvalue = hunter2\n"),
            ok.replace(END, "hunter2 in the armor"),
            ok.replace(
                "-----BEGIN AGE ENCRYPTED FILE-----\n",
                "-----BEGIN AGE ENCRYPTED FILE-----\nhunter2 with spaces\n",
            ),
            format!("{ok}\n[proposal]\nkey = X\n"),
        ] {
            let e = parse("p", bad.as_bytes()).unwrap_err().to_string();
            assert!(!e.contains("hunter2"), "{e}");
            assert!(staged_problem("p", bad.as_bytes()).is_some());
        }
    }

    #[test]
    fn armor_that_is_not_age_is_a_staged_problem() {
        let text = "[proposal]\nkey = K\n-----BEGIN AGE ENCRYPTED FILE-----\naGVsbG8=\n-----END AGE ENCRYPTED FILE-----\n";
        assert!(parse("p", text.as_bytes()).is_ok());
        assert!(staged_problem("p", text.as_bytes()).is_some());
    }

    #[test]
    fn merge_is_key_by_key() {
        let a = sample();
        let b = Proposal {
            key: "B".into(),
            ..sample()
        };
        let c = Proposal {
            key: "C".into(),
            ..sample()
        };
        // each side adds one: both kept
        let m = merge3(
            std::slice::from_ref(&a),
            &[a.clone(), b.clone()],
            &[a.clone(), c.clone()],
        )
        .unwrap();
        assert_eq!(m, vec![a.clone(), b.clone(), c.clone()]);
        // one side accepted (removed) a, the other added c: a gone, c kept
        let m = merge3(std::slice::from_ref(&a), &[], &[a.clone(), c.clone()]).unwrap();
        assert_eq!(m, vec![c.clone()]);
        // both proposed B differently
        let b2 = Proposal {
            by: "someone else".into(),
            ..b.clone()
        };
        assert_eq!(
            merge3(&[], std::slice::from_ref(&b), &[b2]).unwrap_err(),
            vec!["B".to_string()]
        );
    }

    #[test]
    fn shown_fields_have_no_control_characters() {
        let p = Proposal {
            by: "evil\x1b[2J\r\nname".into(),
            ..sample()
        };
        assert_eq!(p.by_shown(), "evil[2Jname");
        assert!(!render(".env", None, &[p]).contains('\x1b'));
    }
}
