//! A hostile repository: paths that reach out of it, a pre-commit hook that must see every
//! policy and file name, crashes that must leave no plaintext, and errors that must not echo
//! a pasted secret. The attacker pushes commits and holds no private key.

use crate::support::*;

/// A hand-pasted connection string (a secret) on a line of its own in an encrypted file.
const PASTED: &str = "postgres://app:hunter2@db.example.com:5432/app?sslmode=require";

fn all_output(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn errors_never_echo_a_pasted_line() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A=1"]);
    let mut text = s.read(".env");
    let line = text.lines().count() + 1;
    text.push_str(PASTED);
    text.push('\n');
    s.write(".env", text);
    for args in [
        &["get", "A"][..],
        &["exec", "--", "true"],
        &["decrypt"],
        &["set", "C=2"],
        &["check"],
        &["ls"],
        &["ls", "--json"],
    ] {
        let out = s.run(args);
        let shown = all_output(&out);
        for part in ["hunter2", "postgres", "db.example", "sslmode"] {
            assert!(
                !shown.contains(part),
                "envv {args:?} printed part of the pasted line ({part}):\n{shown}"
            );
        }
        if !["ls"].contains(&args[0]) {
            assert!(
                shown.contains(&format!(".env:{line}")),
                "envv {args:?} names the file and line {line}:\n{shown}"
            );
        }
    }
}

#[test]
fn a_pasted_private_key_is_not_echoed_as_a_recipient() {
    let s = Sandbox::new();
    s.init_alice();
    let keys = std::fs::read_to_string(fixtures().join("keys.txt")).unwrap();
    let secret = keys
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .expect("the TEST identity in fixtures");
    let err = s.fails(&["member", "add", "bob", secret], 2);
    let body = &secret["AGE-SECRET-KEY-1".len()..];
    for i in 0..body.len() - 3 {
        assert!(
            !err.contains(&body[i..i + 4]),
            "the error shows part of the private key:\n{err}"
        );
    }
    assert!(err.contains("not a recipient"), "{err}");
}
