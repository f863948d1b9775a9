//! Recovery phrases: keygen --phrase, keygen --show-phrase, recover.

use std::io::Write;
use std::process::Stdio;

use crate::support::{fixtures, missing_tool, Sandbox, TEST_KEY_A_PUBLIC, TEST_KEY_B_PUBLIC};

/// The `AGE-SECRET-KEY-1…` line of a key file.
fn secret_line(path: &std::path::Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .unwrap()
        .to_string()
}

/// Runs `envv recover ARGS` with `stdin` piped in; returns (exit code, stdout, stderr).
fn recover(s: &Sandbox, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = s
        .std_envv()
        .arg("recover")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // envv may exit before reading (an existing key file): a closed pipe is not a failure.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn keygen_phrase_recovers_the_same_identity() {
    let s = Sandbox::new();
    let out = s.ok(&["keygen", "--phrase"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    let public = lines[0];
    assert!(public.starts_with("age1"), "{out}");
    let words: Vec<&str> = lines[1].split(' ').collect();
    assert_eq!(words.len(), 24, "{out}");
    let original = secret_line(&s.default_key());

    let restored = s.tmp.path().join("restored/keys.txt");
    let (code, stdout, stderr) = recover(
        &s,
        &["-o", restored.to_str().unwrap()],
        &format!("{}\n", lines[1]),
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), public);
    assert_eq!(secret_line(&restored), original);
    assert!(!stderr.contains(lines[1]) && !stderr.contains(&original));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&restored).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // The recovered identity decrypts what the original could.
    s.ok(&["init", "--name", "alice"]);
    s.envv()
        .args(["set", "TOKEN"])
        .write_stdin("recovered-value-123")
        .assert()
        .success();
    std::fs::remove_file(s.default_key()).unwrap();
    let got = s.ok(&["get", "TOKEN", "-i", restored.to_str().unwrap()]);
    assert_eq!(got.trim_end(), "recovered-value-123");
}

#[test]
fn phrases_match_the_reference_implementation() {
    let s = Sandbox::new();
    for (key, phrase, public) in [
        ("keys.txt", "phrase/keys.phrase", TEST_KEY_A_PUBLIC),
        ("keys_b.txt", "phrase/keys_b.phrase", TEST_KEY_B_PUBLIC),
    ] {
        let words = std::fs::read_to_string(fixtures().join(phrase)).unwrap();
        let out = s.tmp.path().join(format!("{key}.recovered"));
        let (code, stdout, stderr) = recover(&s, &["-o", out.to_str().unwrap()], &words);
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(stdout.trim(), public);
        assert_eq!(secret_line(&out), secret_line(&fixtures().join(key)));

        let Some((ok, screen)) = s.pty(
            &format!(
                "keygen --show-phrase {}",
                fixtures().join(key).to_str().unwrap()
            ),
            "yes\n",
        ) else {
            continue;
        };
        assert!(ok, "{screen}");
        assert!(screen.contains(words.trim()), "{screen}");
        assert!(screen.contains(public), "{screen}");
    }
}

#[test]
fn age_keygen_identities_have_a_phrase() {
    let s = Sandbox::new();
    let key = s.tmp.path().join("age-keygen.txt");
    match std::process::Command::new("age-keygen")
        .args(["-o", key.to_str().unwrap()])
        .output()
    {
        Ok(o) if o.status.success() => {}
        _ => {
            missing_tool("age-keygen", "the age package");
            return;
        }
    }
    let Some((ok, screen)) = s.pty(&format!("keygen --show-phrase {}", key.display()), "yes\n")
    else {
        return;
    };
    assert!(ok, "{screen}");
    let phrase = screen
        .lines()
        .find(|l| l.split(' ').count() == 24)
        .unwrap_or_else(|| panic!("no phrase in {screen}"))
        .to_string();
    let back = s.tmp.path().join("back.txt");
    let (code, _, stderr) = recover(&s, &["-o", back.to_str().unwrap()], &phrase);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(secret_line(&back), secret_line(&key));
}

#[test]
fn show_phrase_asks_first_and_needs_a_terminal() {
    let s = Sandbox::new();
    let key = fixtures().join("keys.txt");
    let words = std::fs::read_to_string(fixtures().join("phrase/keys.phrase")).unwrap();
    let out = s
        .envv()
        .args(["keygen", "--show-phrase", key.to_str().unwrap()])
        .write_stdin("yes\n")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("terminal"), "{all}");
    assert!(!all.contains(words.split(' ').next().unwrap()), "{all}");

    // On a terminal, anything but "yes" shows nothing.
    if let Some((ok, screen)) = s.pty(&format!("keygen --show-phrase {}", key.display()), "no\n") {
        assert!(!ok);
        assert!(screen.contains("nothing shown"), "{screen}");
        assert!(!screen.contains(words.trim()), "{screen}");
    }
}

#[test]
fn mistyped_word_is_named_with_position_and_neighbours() {
    let s = Sandbox::new();
    let words = std::fs::read_to_string(fixtures().join("phrase/keys.phrase")).unwrap();
    // word 5 is "van": type "vam"
    let typo = words.replacen(" van ", " vam ", 1);
    let out = s.tmp.path().join("typo.txt");
    let (code, stdout, stderr) = recover(&s, &["-o", out.to_str().unwrap()], &typo);
    assert_eq!(code, 2, "{stderr}");
    assert!(stdout.is_empty());
    assert!(stderr.contains("word 5"), "{stderr}");
    assert!(stderr.contains("van"), "{stderr}");
    assert!(
        !stderr.contains("vam"),
        "the typed word is not echoed: {stderr}"
    );
    assert!(!out.exists());

    // Two words swapped: every word is valid, the checksum is not.
    let mut list: Vec<&str> = words.split_whitespace().collect();
    list.swap(0, 1);
    let (code, _, stderr) = recover(&s, &["-o", out.to_str().unwrap()], &list.join(" "));
    assert_eq!(code, 2);
    assert!(stderr.contains("checksum"), "{stderr}");
    assert!(!out.exists());

    // Too few words.
    let (code, _, stderr) = recover(&s, &["-o", out.to_str().unwrap()], "post extra draft");
    assert_eq!(code, 2);
    assert!(stderr.contains("24 words"), "{stderr}");
}

#[test]
fn recover_never_overwrites() {
    let s = Sandbox::new();
    s.ok(&["keygen"]);
    let before = std::fs::read(s.default_key()).unwrap();
    let words = std::fs::read_to_string(fixtures().join("phrase/keys.phrase")).unwrap();
    let (code, _, stderr) = recover(&s, &[], &words);
    assert_eq!(code, 2);
    assert!(stderr.contains("never overwrites"), "{stderr}");
    assert_eq!(std::fs::read(s.default_key()).unwrap(), before);
}
