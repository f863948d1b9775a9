//! Reliability and security through the built binary: crashes mid-write, concurrent writers,
//! tampered files, hostile input, plaintext left behind, identity file permissions.
//!
//! Each area keeps its command list in one table (`WRITERS` for fault injection, `READERS` for
//! the tamper matrix, `runs` in the no-plaintext test) so a new command is covered by adding a
//! row. What the sops format itself cannot detect is pinned in
//! `tampering_the_format_cannot_detect_is_documented`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use crate::support::*;

/// A command that rewrites `.env`: its arguments and stdin.
struct Writer {
    name: &'static str,
    args: &'static [&'static str],
    stdin: Option<&'static str>,
    /// Extra environment (e.g. a scripted `$EDITOR`).
    env: &'static [(&'static str, &'static str)],
    /// Prepares the old state (after the base file A/B/C exists).
    prepare: fn(&Sandbox),
}

fn no_prep(_: &Sandbox) {}

/// Appends a plaintext line to the encrypted file, so `envv encrypt` has something to do.
fn add_plain_line(s: &Sandbox) {
    let mut text = s.read(".env");
    text.insert_str(0, "PLAIN_ADDED=typed-by-hand\n");
    s.write(".env", text);
}

/// Every command that writes an encrypted file. Add new writers here.
const WRITERS: &[Writer] = &[
    Writer {
        name: "set KEY VALUE",
        args: &["set", "A", "new-a"],
        stdin: None,
        env: &[],
        prepare: no_prep,
    },
    Writer {
        name: "set KEY=VALUE pairs",
        args: &["set", "A=new-a", "D=four"],
        stdin: None,
        env: &[],
        prepare: no_prep,
    },
    Writer {
        name: "set from stdin",
        args: &["set", "E"],
        stdin: Some("from-stdin\n"),
        env: &[],
        prepare: no_prep,
    },
    Writer {
        name: "rm",
        args: &["rm", "B"],
        stdin: None,
        env: &[],
        prepare: no_prep,
    },
    Writer {
        name: "encrypt (plain lines)",
        args: &["encrypt"],
        stdin: None,
        env: &[],
        prepare: add_plain_line,
    },
    Writer {
        name: "edit (scripted editor)",
        args: &["edit"],
        stdin: None,
        env: &[("EDITOR", EDITOR_APPEND)],
        prepare: no_prep,
    },
];

/// A scripted `$EDITOR` that appends a line to the file it is given.
const EDITOR_APPEND: &str = "sh -c 'printf \"EDITED=by-script\\n\" >> \"$1\"' editor";

/// Commands that read an encrypted file and must refuse a tampered one.
const READERS: &[&[&str]] = &[
    &["get", "A"],
    &["decrypt"],
    &["set", "Z", "z"],
    &["rm", "C"],
    &["encrypt"],
    &["exec", "--", "true"],
    &["export"],
    &["export", "--format", "json"],
    &["edit"],
];

const FAULT_STEPS: &[&str] = &[
    "after-create",
    "after-write",
    "after-fsync",
    "before-rename",
    "after-rename",
];

/// Temp folders of `envv edit` (on /dev/shm when it exists).
fn edit_scratch_base() -> PathBuf {
    if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    }
}

/// Runs envv with optional stdin, extra env and a timeout; kills it when the time is up (a
/// guard against hangs, far above any expected run time: speed goals live in scripts/).
fn run_with(
    s: &Sandbox,
    args: &[&str],
    stdin: Option<&[u8]>,
    env: &[(&str, &str)],
    timeout: Duration,
) -> Output {
    let mut c = s.envv();
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.timeout(timeout);
    c.write_stdin(stdin.unwrap_or(b"").to_vec());
    c.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Temp files left in the repo root by an interrupted write.
fn temps(s: &Sandbox) -> Vec<String> {
    std::fs::read_dir(&s.repo)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".envv-tmp"))
        .collect()
}

/// A repository with alice as the only reader and `.env` holding A, B, C.
fn base() -> Sandbox {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A=old-a", "B=old-b", "C=old-c"]);
    s
}

// ---------------------------------------------------------------------------------------------
// Fault injection

#[test]
fn crash_at_every_write_step_leaves_old_or_new_file() {
    for w in WRITERS {
        let s = base();
        (w.prepare)(&s);
        let old = std::fs::read(s.repo.join(".env")).unwrap();
        // The expected new content: run the writer once without a fault, then restore.
        let o = run_with(
            &s,
            w.args,
            w.stdin.map(str::as_bytes),
            w.env,
            Duration::from_secs(60),
        );
        assert!(o.status.success(), "{}: {}", w.name, stderr(&o));
        let new_plain = s.ok(&["decrypt"]);
        assert_ne!(
            std::fs::read(s.repo.join(".env")).unwrap(),
            old,
            "{}: the writer changes nothing",
            w.name
        );
        for step in FAULT_STEPS {
            std::fs::write(s.repo.join(".env"), &old).unwrap();
            let mut env = w.env.to_vec();
            env.push(("ENVV_FAULT_INJECT", step));
            let o = run_with(
                &s,
                w.args,
                w.stdin.map(str::as_bytes),
                &env,
                Duration::from_secs(60),
            );
            assert_eq!(
                o.status.code(),
                None,
                "{} at {step}: the fault did not abort ({})",
                w.name,
                stderr(&o)
            );
            let now = std::fs::read(s.repo.join(".env")).unwrap();
            // A crash never leaves `envv edit`'s plaintext scratch file behind: it is removed
            // before the encrypted file is written.
            let scratch = files_containing(&edit_scratch_base(), b"EDITED=by-script", &[]);
            assert!(
                scratch.is_empty(),
                "{} at {step}: plaintext left in {scratch:?}",
                w.name
            );
            if *step == "after-rename" {
                assert_ne!(
                    now, old,
                    "{} at {step}: the new file should be in place",
                    w.name
                );
            } else {
                assert_eq!(
                    now, old,
                    "{} at {step}: the old file must stay intact",
                    w.name
                );
                assert_eq!(
                    temps(&s).len(),
                    1,
                    "{} at {step}: one temp file expected",
                    w.name
                );
            }
            if now != old {
                assert_eq!(
                    s.ok(&["decrypt"]),
                    new_plain,
                    "{} at {step}: the new file decrypts to the new values",
                    w.name
                );
            }
            // The next successful write cleans up.
            std::fs::write(s.repo.join(".env"), &old).unwrap();
            let o = run_with(
                &s,
                w.args,
                w.stdin.map(str::as_bytes),
                w.env,
                Duration::from_secs(60),
            );
            assert!(
                o.status.success(),
                "{} after {step}: {}",
                w.name,
                stderr(&o)
            );
            assert_eq!(
                temps(&s),
                Vec::<String>::new(),
                "{} after {step}: temp files left",
                w.name
            );
            assert_eq!(s.ok(&["decrypt"]), new_plain);
        }
    }
}

#[test]
fn crash_while_creating_the_first_file_leaves_no_file() {
    let s = Sandbox::new();
    s.init_alice();
    for step in ["after-write", "before-rename"] {
        let o = run_with(
            &s,
            &["set", "A", "v"],
            None,
            &[("ENVV_FAULT_INJECT", step)],
            Duration::from_secs(60),
        );
        assert_eq!(o.status.code(), None);
        assert!(
            !s.repo.join(".env").exists(),
            "{step}: a partial .env exists"
        );
    }
    s.ok(&["set", "A", "v"]);
    assert_eq!(s.ok(&["get", "A"]), "v");
    assert!(temps(&s).is_empty(), "{:?}", temps(&s));
}

// ---------------------------------------------------------------------------------------------
// Concurrency

/// The envv binary as a std Command (assert_cmd cannot spawn without waiting), with the
/// sandbox environment.
fn spawnable(s: &Sandbox) -> std::process::Command {
    let mut c = s.std_envv();
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

#[test]
fn fifty_concurrent_sets_lose_nothing() {
    let s = Sandbox::new();
    s.init_alice();
    let n = 50;
    let mut children = Vec::new();
    for i in 0..n {
        let mut c = spawnable(&s);
        c.args(["set", &format!("K{i:02}"), &format!("value-{i}")]);
        children.push(c.spawn().unwrap());
    }
    for (i, ch) in children.into_iter().enumerate() {
        let o = ch.wait_with_output().unwrap();
        assert!(o.status.success(), "writer {i}: {}", stderr(&o));
    }
    // `decrypt` verifies the MAC.
    let text = s.ok(&["decrypt"]);
    for i in 0..n {
        assert!(
            text.contains(&format!("K{i:02}=value-{i}\n")),
            "K{i:02} lost:\n{text}"
        );
    }
    assert_eq!(text.lines().count(), n);
    assert!(temps(&s).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Tamper matrix

/// Replaces the stored value of `key` in an encrypted file's text.
fn stored_of(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} not in file"))
        .to_string()
}

fn replace_line(text: &str, prefix: &str, new: Option<String>) -> String {
    let mut out = String::new();
    let mut hit = false;
    for l in text.lines() {
        if !hit && l.starts_with(prefix) {
            hit = true;
            if let Some(n) = &new {
                out.push_str(n);
                out.push('\n');
            }
        } else {
            out.push_str(l);
            out.push('\n');
        }
    }
    assert!(hit, "no line starting with {prefix}");
    out
}

/// Inserts `new` as a line before the first line starting with `prefix`.
fn insert_before(text: &str, prefix: &str, new: &str) -> String {
    let line = text
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix}"));
    replace_line(text, prefix, Some(format!("{new}\n{line}")))
}

/// Flips one base64 character inside the `data:` field of an ENC value.
fn flip_data(enc: &str) -> String {
    let at = enc.find("data:").unwrap() + 6;
    let mut b = enc.as_bytes().to_vec();
    b[at] = if b[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).unwrap()
}

/// Asserts every reader refuses `bytes` as `.env` with exit 2, naming the file, and that the
/// file is unchanged afterwards.
fn assert_refused(s: &Sandbox, case: &str, bytes: &[u8]) {
    for args in READERS {
        s.write(".env", bytes);
        let o = run_with(
            s,
            args,
            None,
            &[("EDITOR", EDITOR_APPEND)],
            Duration::from_secs(60),
        );
        let err = stderr(&o);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{case}: `envv {}` was not refused with exit 2:\n{err}",
            args.join(" ")
        );
        assert!(
            err.contains(".env"),
            "{case}: `envv {}` error does not name the file: {err}",
            args.join(" ")
        );
        assert!(!err.contains("old-"), "{case}: error shows a value: {err}");
        assert!(
            o.stdout.is_empty(),
            "{case}: `envv {}` printed {:?}",
            args.join(" "),
            String::from_utf8_lossy(&o.stdout)
        );
        assert_eq!(
            std::fs::read(s.repo.join(".env")).unwrap(),
            bytes,
            "{case}: `envv {}` changed the file",
            args.join(" ")
        );
    }
}

#[test]
fn tampered_files_are_refused_and_left_alone() {
    let s = base();
    let orig = s.read(".env");
    let a = stored_of(&orig, "A");
    let b = stored_of(&orig, "B");
    // A ciphertext from another file (another data key) under a new key name.
    let other = Sandbox::new();
    other.init_alice();
    other.ok(&["set", "A", "foreign"]);
    let foreign = stored_of(&other.read(".env"), "A");
    let enc_line = orig
        .lines()
        .find(|l| l.starts_with("sops_age__list_0__map_enc="))
        .unwrap()
        .to_string();

    let mut cases: Vec<(String, String)> = vec![
        (
            "value ciphertext edited".into(),
            orig.replace(&a, &flip_data(&a)),
        ),
        (
            "two values swapped".into(),
            orig.replace(&a, "@@A@@")
                .replace(&b, &a)
                .replace("@@A@@", &b),
        ),
        ("a key removed".into(), replace_line(&orig, "B=", None)),
        (
            "a key added with a foreign ciphertext".into(),
            insert_before(&orig, "A=", &format!("X={foreign}")),
        ),
        (
            "a key added with another key's ciphertext".into(),
            insert_before(&orig, "A=", &format!("X={a}")),
        ),
        (
            "a key renamed".into(),
            replace_line(&orig, "B=", Some(format!("B2={b}"))),
        ),
        (
            "a value duplicated under its own key".into(),
            insert_before(&orig, "C=", &format!("A={a}")),
        ),
        ("sops_mac edited".into(), {
            let mac = stored_of(&orig, "sops_mac");
            orig.replace(&mac, &flip_data(&mac))
        }),
        ("sops_lastmodified edited".into(), {
            let t = stored_of(&orig, "sops_lastmodified");
            let year: i32 = t[..4].parse().unwrap();
            orig.replace(
                &format!("sops_lastmodified={t}"),
                &format!("sops_lastmodified={}{}", year - 1, &t[4..]),
            )
        }),
        (
            "sops_lastmodified removed".into(),
            replace_line(&orig, "sops_lastmodified=", None),
        ),
        (
            "sops_mac removed".into(),
            replace_line(&orig, "sops_mac=", None),
        ),
        (
            "recipient stanza removed".into(),
            replace_line(
                &replace_line(&orig, "sops_age__list_0__map_enc=", None),
                "sops_age__list_0__map_recipient=",
                None,
            ),
        ),
        (
            "recipient enc line removed".into(),
            replace_line(&orig, "sops_age__list_0__map_enc=", None),
        ),
        ("recipient stanza corrupted (base64)".into(), {
            let at = enc_line.find("\\n").unwrap() + 12;
            let mut l = enc_line.clone().into_bytes();
            l[at] = if l[at] == b'Q' { b'R' } else { b'Q' };
            orig.replace(&enc_line, &String::from_utf8(l).unwrap())
        }),
        (
            "recipient stanza corrupted (armor)".into(),
            orig.replace(&enc_line, &enc_line.replace("BEGIN AGE", "BEGIN EGA")),
        ),
        (
            "recipient stanza truncated".into(),
            orig.replace(&enc_line, &enc_line[..enc_line.len() / 2]),
        ),
        (
            "plaintext line without =".into(),
            insert_before(&orig, "B=", "garbage"),
        ),
        (
            "all sops_ lines removed".into(),
            orig.lines()
                .filter(|l| !l.starts_with("sops_"))
                .map(|l| format!("{l}\n"))
                .collect(),
        ),
    ];
    let len = orig.len();
    // k = 0 is the empty file: `encrypt`, `exec` and `export` rightly accept that as empty
    // plaintext (they also read plaintext .env.local files); the others refuse it ("not
    // encrypted"); checked separately below.
    for k in 1..10 {
        let cut = len * k / 10;
        let mut cut = cut;
        while !orig.is_char_boundary(cut) {
            cut -= 1;
        }
        cases.push((
            format!("truncated at {k}/10 ({cut} of {len} bytes)"),
            orig[..cut].to_string(),
        ));
    }
    for (case, text) in &cases {
        assert_ne!(text, &orig, "{case}: the tampering did nothing");
        assert_refused(&s, case, text.as_bytes());
    }
    for args in READERS
        .iter()
        .filter(|a| !["encrypt", "exec", "export"].contains(&a[0]))
    {
        s.write(".env", "");
        let o = run_with(&s, args, None, &[], Duration::from_secs(60));
        assert_eq!(
            o.status.code(),
            Some(2),
            "empty file: `envv {}`: {}",
            args.join(" "),
            stderr(&o)
        );
        assert!(stderr(&o).contains(".env"));
    }
    // The untouched file still works (the matrix did not break the setup).
    s.write(".env", &orig);
    assert_eq!(s.ok(&["get", "A"]), "old-a");
}

/// What the sops format cannot detect (SOPS_FORMAT.md §5): empty values and comments are not
/// in the MAC, and metadata other than the MAC and timestamp is not authenticated. These pin
/// the current behaviour so a change is noticed.
#[test]
fn tampering_the_format_cannot_detect_is_documented() {
    let s = base();
    s.ok(&["set", "EMPTY="]);
    let orig = s.read(".env");
    // Removing an empty key: no MAC input changes.
    s.write(".env", replace_line(&orig, "EMPTY=", None));
    assert_eq!(s.ok(&["get", "A"]), "old-a");
    // Adding an empty key: same.
    s.write(".env", insert_before(&orig, "A=", "ADDED="));
    assert_eq!(s.ok(&["get", "ADDED"]), "");
}

// ---------------------------------------------------------------------------------------------
// Bad input

/// Writes `bytes` as a plaintext `.env`, runs `envv encrypt`, and returns the output.
fn encrypt_input(s: &Sandbox, bytes: &[u8]) -> Output {
    std::fs::write(s.repo.join(".env"), bytes).unwrap();
    run_with(s, &["encrypt"], None, &[], Duration::from_secs(60))
}

fn assert_input_error(o: &Output, case: &str, needle: &str) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{case}: expected exit 2, got {:?}:\n{err}",
        o.status.code()
    );
    assert!(
        err.contains(needle),
        "{case}: error should mention {needle:?}: {err}"
    );
    assert!(!err.contains("panicked"), "{case}: {err}");
}

#[test]
fn bad_plaintext_input_is_an_error_with_the_line() {
    let s = Sandbox::new();
    s.init_alice();
    let cases: &[(&str, &[u8], &str)] = &[
        ("invalid UTF-8", b"A=1\nB=caf\xe9\n", ".env:2:"),
        ("NUL byte", b"A=1\nB=x\0y\n", ".env:2:"),
        (
            "line without =",
            b"A=1\nsk_live_SECRETVALUE123\n",
            ".env:2:",
        ),
        ("duplicate keys", b"A=1\nB=2\nA=3\n", "line 1"),
        ("unterminated quote", b"A=\"open\nB=2\n", ".env:1:"),
        ("key with a bad character", b"A=1\nBAD-KEY=2\n", ".env:2:"),
    ];
    for (case, bytes, needle) in cases {
        let o = encrypt_input(&s, bytes);
        assert_input_error(&o, case, needle);
        assert_eq!(
            std::fs::read(s.repo.join(".env")).unwrap(),
            *bytes,
            "{case}: input file changed"
        );
    }
    let o = encrypt_input(&s, b"A=1\nB=2\nA=3\n");
    assert!(
        stderr(&o).contains(".env:3:"),
        "duplicate names the second line too: {}",
        stderr(&o)
    );
}

#[test]
fn errors_never_echo_a_value() {
    let s = Sandbox::new();
    s.init_alice();
    // A pasted PEM body, a URL with a password and a token: none may appear in an error.
    let cases: &[(&str, &str)] = &[
        ("MIIEvQIBADANBgkqhkiG9w0BAQEFAASC/PEMBODY+x\n", "PEMBODY"),
        ("postgres://u:hunter2pass@db/x?a=1\n", "hunter2pass"),
        ("A=1\n  tok_live_abcdef0123456789\n", "tok_live"),
        ("sk-proj/TOKENVALUE=\n", "TOKENVALUE"),
    ];
    for (text, secret) in cases {
        let o = encrypt_input(&s, text.as_bytes());
        assert_eq!(o.status.code(), Some(2), "{text:?}: {}", stderr(&o));
        assert!(
            !stderr(&o).contains(secret),
            "error echoes {secret}: {}",
            stderr(&o)
        );
    }
    // The same for a line without `=` inside an encrypted file.
    std::fs::remove_file(s.repo.join(".env")).unwrap();
    s.ok(&["set", "A", "1"]);
    let text = insert_before(&s.read(".env"), "A=", "tok_live_abcdef0123456789");
    s.write(".env", text);
    let err = s.fails(&["get", "A"], 2);
    assert!(
        !err.contains("tok_live") && err.contains(".env:1:"),
        "{err}"
    );
    // The same for a pasted token after `sops_` among the metadata lines.
    std::fs::remove_file(s.repo.join(".env")).unwrap();
    s.ok(&["set", "A", "1"]);
    let text = insert_before(
        &s.read(".env"),
        "sops_lastmodified=",
        "sops_age__list_0__map_tok:live_abcdef=x",
    );
    s.write(".env", text);
    let err = s.fails(&["get", "A"], 2);
    assert!(
        !err.contains("live_abcdef") && err.contains("invalid metadata line"),
        "{err}"
    );
}

#[test]
fn crlf_and_bom_input_is_accepted_and_written_lf_only() {
    let s = Sandbox::new();
    s.init_alice();
    let o = encrypt_input(
        &s,
        b"\xef\xbb\xbfA=one\r\nB=\"two\r\nlines\"\r\n# note\r\nC='three'\r\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(s.repo.join(".env")).unwrap();
    assert!(!bytes.contains(&b'\r'), "CR in the encrypted file");
    assert!(!bytes.starts_with(b"\xef\xbb\xbf"), "BOM kept");
    assert_eq!(s.ok(&["get", "A"]), "one");
    assert_eq!(s.ok(&["get", "B"]), "two\nlines");
    assert_eq!(s.ok(&["get", "C"]), "three");
}

/// Refused before reading: the timeout only catches a hang (scripts/bench-limits.sh times it).
#[test]
fn oversized_inputs_are_refused() {
    let s = Sandbox::new();
    s.init_alice();
    // 100 MB (sparse: the size check comes before any read).
    let f = std::fs::File::create(s.repo.join(".env")).unwrap();
    f.set_len(100 << 20).unwrap();
    drop(f);
    for args in [
        &["encrypt"][..],
        &["get", "A"],
        &["set", "A", "1"],
        &["decrypt"],
    ] {
        let o = run_with(&s, args, None, &[], Duration::from_secs(60));
        assert_input_error(&o, "100 MB file", "MiB");
    }
}

#[test]
fn big_values_and_many_keys_round_trip() {
    let s = Sandbox::new();
    s.init_alice();
    // A 10 MB single value through stdin.
    let big: String = (0..(10 << 20) / 64)
        .map(|i| format!("{i:063x}\n"))
        .collect();
    let o = run_with(
        &s,
        &["set", "BIG"],
        Some(big.as_bytes()),
        &[],
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let got = run_with(&s, &["get", "BIG"], None, &[], Duration::from_secs(60));
    assert_eq!(got.status.code(), Some(0));
    assert!(
        got.stdout == big.trim_end_matches('\n').as_bytes(),
        "10 MB value changed"
    );
    // Many keys: each value is encrypted separately (see the report for the 1,000,000 case).
    let n = 20_000;
    let text: String = (0..n).map(|i| format!("KEY_{i}=value-{i}\n")).collect();
    std::fs::remove_file(s.repo.join(".env")).unwrap();
    let o = encrypt_input(&s, text.as_bytes());
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run_with(
        &s,
        &["get", &format!("KEY_{}", n - 1)],
        None,
        &[],
        Duration::from_secs(60),
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("value-{}", n - 1),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_million_keys_are_parsed_without_hanging() {
    let s = Sandbox::new();
    s.init_alice();
    // 1,000,000 lines of plaintext (~14 MB) are under the size limit, so they are parsed. The
    // parser is linear but an unoptimised build spends ~10 µs a line (two passes: `encrypt`
    // reads the file, then parses it to encrypt), so debug test builds use 200,000 lines and
    // `cargo test --release` the full million.
    let n: u32 = if cfg!(debug_assertions) {
        200_000
    } else {
        1_000_000
    };
    let mut text = Vec::with_capacity(15 << 20);
    for i in 0..n {
        writeln!(text, "K{i}=v").unwrap();
    }
    // A duplicate on the last line: the whole file is parsed, then refused.
    writeln!(text, "K0=dup").unwrap();
    let o = encrypt_input(&s, &text);
    assert_input_error(
        &o,
        "many keys with a duplicate",
        &format!(".env:{}:", n + 1),
    );
}

#[test]
fn hostile_policy_files_are_refused() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A", "1"]);
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
    let mut prev = 'a';
    for c in 'b'..='k' {
        bomb.push_str(&format!("{c}: &{c} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        prev = c;
    }
    bomb.push_str("envv: {}\n");
    let deep = format!("envv: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    let deep_map = format!(
        "envv:\n{}\n",
        (0..200)
            .map(|d| format!("{}k{d}:", " ".repeat(d * 2 + 2)))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let cases: &[(&str, Vec<u8>)] = &[
        ("alias bomb", bomb.into_bytes()),
        ("deep flow nesting", deep.into_bytes()),
        ("deep block nesting", deep_map.into_bytes()),
        ("invalid UTF-8", b"envv:\n  members: \xff\n".to_vec()),
        ("NUL", b"envv:\n  members: {}\0\n".to_vec()),
        ("2 MB", vec![b'#'; 2 << 20]),
    ];
    for (case, bytes) in cases {
        s.write(".sops.yaml", bytes);
        for args in [&["get", "A"][..], &["set", "B", "2"]] {
            let o = run_with(&s, args, None, &[], Duration::from_secs(60));
            assert_input_error(&o, case, ".sops.yaml");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// No plaintext at rest

/// One leak-check run: arguments, stdin, environment, the exit code expected, and whether
/// stdout is the intended output (then it may hold values).
struct LeakRun {
    args: Vec<String>,
    stdin: Option<String>,
    env: Vec<(String, String)>,
    code: i32,
    stdout_is_output: bool,
}

fn leak_run(args: &[&str], stdin: Option<&str>, stdout_is_output: bool) -> LeakRun {
    LeakRun {
        args: args.iter().map(|a| a.to_string()).collect(),
        stdin: stdin.map(str::to_string),
        env: Vec::new(),
        code: 0,
        stdout_is_output,
    }
}

impl LeakRun {
    fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    fn code(mut self, code: i32) -> Self {
        self.code = code;
        self
    }
}

/// Every file under `dir` (recursively) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8], skip: &[PathBuf]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if skip.contains(&p) {
                continue;
            }
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                if let Ok(b) = std::fs::read(&p) {
                    if b.windows(needle.len()).any(|w| w == needle) {
                        hits.push(p);
                    }
                }
            }
        }
    }
    hits
}

#[test]
fn no_plaintext_left_at_rest_or_in_stderr() {
    let s = Sandbox::new();
    s.init_alice();
    let secrets = [
        "s3cr3t-arg-7f1e9a",
        "s3cr3t-stdin-52bd0c",
        "s3cr3t-pair-c0ffee",
        "s3cr3t-file-9d8e7f",
        "s3cr3t-multi\nline-ab12",
        "s3cr3t-edit-4a4a4a",
    ];
    let out = s.tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let out_file = out.join("plain.env");
    let github_env = out.join("github_env");
    let out_file_s = out_file.to_str().unwrap();
    let edit_append = format!(
        "sh -c 'printf \"EDITED={}\\n\" >> \"$1\"' editor",
        secrets[5]
    );
    // Every command, with values in play. The plaintext `.env` written first is the input of
    // `encrypt`, which replaces it.
    let runs = vec![
        leak_run(&["encrypt"], None, false),
        leak_run(&["set", "ARG", secrets[0]], None, false),
        leak_run(&["set", "STDIN"], Some(secrets[1]), false),
        leak_run(
            &[
                "set",
                &format!("PAIR={}", secrets[2]),
                "MULTI=\"s3cr3t-multi\\nline-ab12\"",
            ],
            None,
            false,
        ),
        leak_run(&["get", "ARG"], None, true),
        leak_run(&["get", "MULTI"], None, true),
        leak_run(&["get", "NOPE"], None, false).code(1),
        leak_run(&["decrypt"], None, true),
        leak_run(&["decrypt", "-o", out_file_s], None, false),
        leak_run(&["ls"], None, false),
        leak_run(&["ls", "--json"], None, false),
        leak_run(
            &["exec", "--", "sh", "-c", "printf %s \"$ARG$MULTI\""],
            None,
            true,
        ),
        leak_run(&["exec", "--", "sh", "-c", "exit 3"], None, false).code(3),
        leak_run(&["export"], None, true),
        leak_run(&["export", "--format", "shell"], None, true),
        leak_run(&["export", "--format", "json"], None, true),
        leak_run(&["export", "--format", "k8s", "--name", "app"], None, true),
        leak_run(&["export", "--format", "github"], None, true)
            .env("GITHUB_ENV", github_env.to_str().unwrap()),
        leak_run(&["edit"], None, false).env("EDITOR", &edit_append),
        leak_run(&["edit"], None, false)
            .env("EDITOR", "sh -c 'kill -9 $$' editor")
            .code(1),
        leak_run(&["edit"], None, false)
            .env("EDITOR", "sh -c 'kill -TERM $PPID; exec sleep 5' editor")
            .code(143),
        leak_run(&["edit"], None, false)
            .env("EDITOR", "sh -c 'printf \"BAD LINE\\n\" >> \"$1\"' editor")
            .code(2),
        leak_run(&["rm", "PAIR"], None, false),
        leak_run(&["get", "FILE"], None, true),
    ];
    s.write(".env", format!("FILE={}\n", secrets[3]));
    for r in &runs {
        let args: Vec<&str> = r.args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = r
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let o = run_with(
            &s,
            &args,
            r.stdin.as_deref().map(str::as_bytes),
            &env,
            Duration::from_secs(60),
        );
        let shown = format!("`envv {}` ({:?})", args.join(" "), r.env);
        assert_eq!(o.status.code(), Some(r.code), "{shown}: {}", stderr(&o));
        for v in secrets {
            for part in v.split('\n') {
                assert!(
                    !stderr(&o).contains(part),
                    "{shown} printed {part:?} to stderr"
                );
                if !r.stdout_is_output {
                    assert!(
                        !String::from_utf8_lossy(&o.stdout).contains(part),
                        "{shown} printed {part:?} to stdout"
                    );
                }
            }
        }
    }
    // The runs did what they should (so the greps below are meaningful).
    assert_eq!(s.ok(&["get", "EDITED"]), secrets[5]);
    assert!(std::fs::read_to_string(&github_env)
        .unwrap()
        .contains(secrets[0]));
    // The intended output of `decrypt -o` is private and holds the values.
    let m = std::fs::metadata(&out_file).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777,
        0o600
    );
    assert!(std::fs::read_to_string(&out_file)
        .unwrap()
        .contains(secrets[0]));
    // Nothing at rest: the sandbox (TMPDIR, HOME, the repository and its .git) and the edit
    // scratch base, apart from the two intended output files.
    let intended = [out_file.clone(), github_env.clone()];
    for v in secrets {
        for part in v.split('\n') {
            let mut hits = files_containing(s.tmp.path(), part.as_bytes(), &intended);
            hits.extend(files_containing(&edit_scratch_base(), part.as_bytes(), &[]));
            assert!(hits.is_empty(), "{part:?} found at rest in {hits:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Identity files

#[test]
fn keygen_writes_0600_and_readable_keys_are_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let s = Sandbox::new();
    s.init_alice();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&s.default_key()), 0o600);
    assert_eq!(mode(s.default_key().parent().unwrap()), 0o700);
    let (explicit, _) = s.identity("bob");
    assert_eq!(mode(&explicit), 0o600);
    s.ok(&["set", "A", "1"]);
    let quiet = run_with(&s, &["get", "A"], None, &[], Duration::from_secs(30));
    assert!(
        !stderr(&quiet).contains("readable by other users"),
        "{}",
        stderr(&quiet)
    );
    for m in [0o640, 0o604, 0o644] {
        std::fs::set_permissions(s.default_key(), std::fs::Permissions::from_mode(m)).unwrap();
        let o = run_with(&s, &["get", "A"], None, &[], Duration::from_secs(30));
        assert!(o.status.success(), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("readable by other users")
                && err.contains("keys.txt")
                && err.contains("chmod 600"),
            "mode {m:o}: {err}"
        );
    }
    // An explicit -i file is checked too.
    std::fs::set_permissions(&explicit, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = run_with(
        &s,
        &["whoami", "-i", explicit.to_str().unwrap()],
        None,
        &[],
        Duration::from_secs(30),
    );
    assert!(
        stderr(&o).contains("readable by other users") && stderr(&o).contains("bob.key"),
        "{}",
        stderr(&o)
    );
}

// ---------------------------------------------------------------------------------------------
// Membership and git under the same checks

#[test]
fn member_add_during_sets_loses_nothing() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A", "first"]);
    let (bob_key, bob_public) = s.identity("bob");
    let mut children = Vec::new();
    for i in 0..10 {
        let mut c = spawnable(&s);
        c.args(["set", &format!("K{i}"), &format!("value-{i}")]);
        children.push((format!("set K{i}"), c.spawn().unwrap()));
        if i == 4 {
            let mut c = spawnable(&s);
            c.args(["member", "add", "bob", &bob_public]);
            children.push(("member add".to_string(), c.spawn().unwrap()));
        }
    }
    for (name, ch) in children {
        let o = ch.wait_with_output().unwrap();
        assert!(o.status.success(), "{name}: {}", stderr(&o));
    }
    // bob (alone: alice's key moved away) reads every value, and the MAC verifies.
    std::fs::rename(s.default_key(), s.tmp.path().join("alice.key")).unwrap();
    let text = s.ok(&["decrypt", "-i", bob_key.to_str().unwrap()]);
    assert!(text.contains("A=first\n"), "{text}");
    for i in 0..10 {
        assert!(
            text.contains(&format!("K{i}=value-{i}\n")),
            "K{i} lost:\n{text}"
        );
    }
}

/// Runs git in the sandbox repo without asserting success.
fn git_raw(s: &Sandbox, args: &[&str]) -> Output {
    s.git_out(&s.repo, args)
}

#[test]
fn git_diff_and_merge_driver_leave_no_plaintext() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["git", "setup"]);
    let secrets = [
        "s3cr3t-base-1a2b3c",
        "s3cr3t-ours-4d5e6f",
        "s3cr3t-theirs-7a8b9c",
        "s3cr3t-other-0d0e0f",
    ];
    s.ok(&["set", "A", secrets[0]]);
    s.git(&["add", "-A"]);
    s.git(&["commit", "-qm", "base"]);
    s.git(&["checkout", "-qb", "other"]);
    s.ok(&["set", "A", secrets[2]]);
    s.ok(&["set", "B", secrets[3]]);
    s.git(&["commit", "-qam", "theirs"]);
    s.git(&["checkout", "-q", "main"]);
    s.ok(&["set", "A", secrets[1]]);
    // `git diff` shows decrypted values (textconv): on stdout only.
    let diff = git_raw(&s, &["diff"]);
    assert!(
        String::from_utf8_lossy(&diff.stdout).contains(secrets[1]),
        "textconv did not run"
    );
    s.git(&["commit", "-qam", "ours"]);
    // A conflicting merge through the driver: A differs on both sides, B only on theirs.
    let merge = git_raw(&s, &["merge", "other", "-m", "merge"]);
    assert!(
        !merge.status.success(),
        "the A conflict should stop the merge"
    );
    let merged = s.read(".env");
    assert!(merged.contains("<<<<<<<"), "{merged}");
    let outputs = [
        merge.stdout.clone(),
        merge.stderr.clone(),
        diff.stderr.clone(),
    ];
    for v in secrets {
        for o in &outputs {
            assert!(!String::from_utf8_lossy(o).contains(v), "{v} in git output");
        }
        let hits = files_containing(s.tmp.path(), v.as_bytes(), &[]);
        assert!(hits.is_empty(), "{v} found at rest in {hits:?}");
    }
    assert!(
        !s.repo.join(".git/refs/notes/textconv").exists(),
        "textconv cache holds plaintext"
    );
}
