//! Core commands: keygen, whoami, init, set, get, rm, ls, encrypt, decrypt.

use crate::support::*;

#[test]
fn set_then_get_round_trips_tricky_values() {
    let s = Sandbox::new();
    s.init_alice();
    let values = [
        ("EQ", "a=b=c"),
        ("SPACES", "  padded  "),
        ("QUOTES", "it's \"quoted\""),
        ("HASH", "abc # not a comment"),
        ("DOLLAR", "p@$$w0rd${HOME}"),
        ("UNICODE", "héllo ✓ 日本語 🔑"),
        ("MULTI", "line one\nline two\n"),
        ("BACKSLASH_N", "C:\\temp\\new"),
    ];
    for (k, v) in values {
        s.ok(&["set", k, v]);
    }
    for (k, v) in values {
        assert_eq!(s.ok(&["get", k]), v, "{k}");
    }
}

#[test]
fn big_value_and_pairs_with_dotenv_quoting() {
    let s = Sandbox::new();
    s.init_alice();
    let big = "x".repeat(64 * 1024);
    s.ok(&["set", "BIG", &big]);
    assert_eq!(s.ok(&["get", "BIG"]), big);
    s.ok(&[
        "set",
        "A=1",
        "B='single $x'",
        "C=\"two\\nlines\"",
        "D=plain # comment",
    ]);
    assert_eq!(s.ok(&["get", "A"]), "1");
    assert_eq!(s.ok(&["get", "B"]), "single $x");
    assert_eq!(s.ok(&["get", "C"]), "two\nlines");
    assert_eq!(s.ok(&["get", "D"]), "plain");
    // Empty values are stored as sops stores them: KEY= with no ciphertext.
    s.ok(&["set", "EMPTY", ""]);
    assert!(s.read(".env").lines().any(|l| l == "EMPTY="));
    assert_eq!(s.ok(&["get", "EMPTY"]), "");
}

#[test]
fn set_reads_stdin_and_trims_one_newline() {
    let s = Sandbox::new();
    s.init_alice();
    s.envv()
        .args(["set", "PEM"])
        .write_stdin("-----BEGIN-----\nabc\n-----END-----\n")
        .assert()
        .success();
    assert_eq!(s.ok(&["get", "PEM"]), "-----BEGIN-----\nabc\n-----END-----");
}

#[test]
fn set_changes_only_its_line_mac_and_timestamp() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A=1", "B=2", "C=3"]);
    let before = s.read(".env");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    s.ok(&["set", "B", "changed"]);
    let after = s.read(".env");
    let b: Vec<&str> = before.lines().collect();
    let a: Vec<&str> = after.lines().collect();
    assert_eq!(a.len(), b.len());
    let changed: Vec<String> = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| x != y)
        .map(|(x, _)| x.split('=').next().unwrap().to_string())
        .collect();
    assert_eq!(
        changed,
        vec!["B", "sops_lastmodified", "sops_mac"],
        "{before}\n---\n{after}"
    );
    // Setting the same value again changes nothing at all.
    s.ok(&["set", "B", "changed"]);
    assert_eq!(s.read(".env"), after);
}

#[test]
fn get_rm_and_missing_keys() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A=1", "B=2"]);
    let err = s.fails(&["get", "NOPE"], 1);
    assert!(err.contains("NOPE is not set in .env"), "{err}");
    s.ok(&["rm", "A"]);
    s.fails(&["get", "A"], 1);
    assert_eq!(s.ok(&["get", "B"]), "2");
    let err = s.fails(&["rm", "A"], 1);
    assert!(err.contains("A is not set"), "{err}");
}

#[test]
fn missing_file_bad_key_and_undeclared_env() {
    let s = Sandbox::new();
    s.init_alice();
    let err = s.fails(&["get", "A"], 2);
    assert!(err.contains(".env does not exist"), "{err}");
    let err = s.fails(&["set", "1BAD", "x"], 2);
    assert!(err.contains("invalid key name"), "{err}");
    let err = s.fails(&["set", "-e", "production", "A", "x"], 2);
    assert!(err.contains("envv env add production"), "{err}");
    assert!(!s.repo.join(".env.production").exists());
}

#[test]
fn works_from_a_subfolder() {
    let s = Sandbox::new();
    s.init_alice();
    std::fs::create_dir_all(s.repo.join("deep/er")).unwrap();
    s.envv_in(&s.repo.join("deep/er"))
        .args(["set", "K", "v"])
        .assert()
        .success();
    assert!(s.repo.join(".env").exists());
    let out = s
        .envv_in(&s.repo.join("deep/er"))
        .args(["get", "K"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"v");
}

#[test]
fn ls_lists_keys_state_and_git_history() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A=1", "B=", "PORT_unencrypted=80"]);
    let out = s.ok(&["ls"]);
    assert!(
        out.contains("A") && out.contains("encrypted") && out.contains("not committed"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("PORT_unencrypted") && l.contains("plain")),
        "{out}"
    );
    s.git(&["add", "-A"]);
    s.git(&["commit", "-qm", "secrets"]);
    let v: serde_json::Value = serde_json::from_str(&s.ok(&["ls", "--json"])).unwrap();
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3);
    assert_eq!(keys[0]["key"], "A");
    assert_eq!(keys[0]["encrypted"], true);
    assert_eq!(keys[1]["empty"], true);
    assert_eq!(keys[2]["encrypted"], false);
    assert_eq!(keys[0]["last_changed"]["author"], "Test User");
}

#[test]
fn encrypt_plaintext_file_keeps_comments_blank_lines_and_is_idempotent() {
    let s = Sandbox::new();
    s.init_alice();
    let plain = "# database\nexport DB_URL=postgres://u:p@h/db\n\nQUOTED=\"a \\\"b\\\" c\"\nSINGLE='lit $HOME'\nINLINE=value # note here\nMULTI=\"l1\nl2\"\n";
    s.write(".env", plain);
    s.ok(&["encrypt"]);
    let enc = s.read(".env");
    for secret in [
        "postgres://",
        " database",
        "lit $HOME",
        "note here",
        "l1\nl2",
    ] {
        assert!(!enc.contains(secret), "{secret} in {enc}");
    }
    assert!(enc.contains("\n\nQUOTED=ENC["), "blank line kept: {enc}");
    assert!(
        enc.lines().any(|l| l.starts_with("DB_URL=ENC[")),
        "export prefix dropped: {enc}"
    );
    s.ok(&["encrypt"]);
    assert_eq!(s.read(".env"), enc, "second encrypt changes nothing");
    assert_eq!(s.ok(&["get", "QUOTED"]), "a \"b\" c");
    assert_eq!(s.ok(&["get", "SINGLE"]), "lit $HOME");
    assert_eq!(s.ok(&["get", "INLINE"]), "value");
    assert_eq!(s.ok(&["get", "MULTI"]), "l1\nl2");
    let dec = s.ok(&["decrypt"]);
    assert!(
        dec.starts_with("# database\nDB_URL=postgres://u:p@h/db\n\nQUOTED="),
        "{dec}"
    );
    assert!(dec.contains("# note here\nINLINE=value\n"), "{dec}");
    // The printed dotenv reads back to the same values.
    s.write("roundtrip.env", &dec);
    s.write(
        ".sops.yaml",
        s.read(".sops.yaml")
            .replace("file: \".env\"", "file: roundtrip.env"),
    );
    s.ok(&["encrypt", "roundtrip.env"]);
    for k in ["DB_URL", "QUOTED", "SINGLE", "INLINE", "MULTI"] {
        assert_eq!(
            s.ok(&["get", "-f", "roundtrip.env", k]),
            s.ok(&["get", "-f", ".env", k]),
            "{k}"
        );
    }
}

#[test]
fn encrypt_picks_up_lines_added_in_plaintext() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A", "1"]);
    let mut text = s.read(".env");
    let a_line = text
        .lines()
        .find(|l| l.starts_with("A="))
        .unwrap()
        .to_string();
    text = text.replacen(&a_line, &format!("{a_line}\nNEW='added by hand'"), 1);
    s.write(".env", &text);
    s.ok(&["encrypt"]);
    let after = s.read(".env");
    assert!(!after.contains("added by hand"));
    assert!(after.contains(&a_line), "A keeps its ciphertext");
    assert_eq!(s.ok(&["get", "NEW"]), "added by hand");
}

#[test]
fn bad_plaintext_line_is_an_error_with_file_and_line_and_nothing_written() {
    let s = Sandbox::new();
    s.init_alice();
    let plain = "A=1\nB=2\nthis line has no equals sign\n";
    s.write(".env", plain);
    let err = s.fails(&["encrypt"], 2);
    assert!(err.contains(".env:3:"), "{err}");
    assert!(
        !err.contains("equals sign"),
        "the line's text is not echoed: {err}"
    );
    assert_eq!(s.read(".env"), plain);
    s.write(".env", "A=1\nA=2\n");
    let err = s.fails(&["encrypt"], 2);
    assert!(err.contains(".env:2:") && err.contains("line 1"), "{err}");
}

#[test]
fn decrypt_to_private_file() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A", "secret value"]);
    let out = s.tmp.path().join("plain.env");
    s.ok(&["decrypt", "-o", out.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "A='secret value'\n");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

#[test]
fn wrong_identity_names_readers_and_tried_sources() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A", "1"]);
    let (other, _) = s.identity("mallory");
    std::fs::remove_file(s.default_key()).unwrap();
    let out = s
        .envv()
        .args(["get", "A"])
        .env("ENVV_AGE_KEY_FILE", &other)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("cannot decrypt .env"), "{err}");
    assert!(err.contains("readers: alice"), "{err}");
    assert!(err.contains("$ENVV_AGE_KEY_FILE"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn tampered_value_and_mac_are_refused_and_ignore_mac_recovers() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A=1", "B=2", "P_unencrypted=public"]);
    let good = s.read(".env");
    // Swap two ciphertexts: the AAD binds each to its key.
    let a = good.lines().find(|l| l.starts_with("A=")).unwrap()[2..].to_string();
    let b = good.lines().find(|l| l.starts_with("B=")).unwrap()[2..].to_string();
    s.write(
        ".env",
        good.replace(&a, "@").replace(&b, &a).replace('@', &b),
    );
    let err = s.fails(&["get", "A"], 2);
    assert!(
        err.contains(".env") && err.contains("does not authenticate"),
        "{err}"
    );
    // Edit a plaintext value: only the MAC catches it.
    let edited = good.replace("P_unencrypted=public", "P_unencrypted=evil");
    s.write(".env", &edited);
    let err = s.fails(&["get", "A"], 2);
    assert!(err.contains("MAC does not match"), "{err}");
    let err = s.fails(&["set", "A", "x"], 2);
    assert!(err.contains("MAC"), "{err}");
    assert_eq!(s.read(".env"), edited, "nothing written");
    assert_eq!(s.ok(&["get", "--ignore-mac", "A"]), "1");
}

#[test]
fn keygen_is_private_and_never_overwrites() {
    let s = Sandbox::new();
    let public = s.ok(&["keygen"]);
    assert!(public.starts_with("age1"));
    let key = s.default_key();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let before = std::fs::read(&key).unwrap();
    let err = s.fails(&["keygen"], 2);
    assert!(err.contains("never overwrites"), "{err}");
    assert_eq!(std::fs::read(&key).unwrap(), before);
}

#[test]
fn whoami_shows_key_and_member_name() {
    let s = Sandbox::new();
    let public = s.init_alice();
    let out = s.ok(&["whoami"]);
    assert!(
        out.contains(&public) && out.contains("member alice"),
        "{out}"
    );
    let v: serde_json::Value = serde_json::from_str(&s.ok(&["whoami", "--json"])).unwrap();
    assert_eq!(v[0]["members"][0], "alice");
}

#[test]
fn init_writes_policy_gitignore_and_offers_encryption() {
    let s = Sandbox::new();
    s.write(".env", "TOKEN=plain\n");
    s.write(".env.production", "TOKEN=prod\n");
    s.ok(&["keygen"]);
    let out = s.envv().args(["init"]).output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("`envv encrypt .env`"),
        "no prompt without a TTY, but a hint: {err}"
    );
    assert!(
        err.contains("`envv env add production && envv encrypt .env.production`"),
        "{err}"
    );
    assert_eq!(
        s.read(".env"),
        "TOKEN=plain\n",
        "not encrypted without consent"
    );
    let policy = s.read(".sops.yaml");
    assert!(
        policy.contains("test-user:") && policy.contains("creation_rules"),
        "name from git user.name: {policy}"
    );
    let ignore = s.read(".gitignore");
    assert!(
        ignore.lines().any(|l| l == ".env.local") && ignore.lines().any(|l| l == ".env.*.local")
    );
    // Running again is harmless.
    s.ok(&["init"]);
    assert_eq!(s.read(".gitignore"), ignore);
    // The hints work as printed.
    s.ok(&["encrypt", ".env"]);
    s.ok(&["env", "add", "production"]);
    s.ok(&["encrypt", ".env.production"]);
    assert_eq!(s.ok(&["get", "-e", "production", "TOKEN"]), "prod");

    let s = Sandbox::new();
    s.write(".env", "TOKEN=plain\n");
    s.write(".env.production", "TOKEN=prod\n");
    s.ok(&["init", "--name", "bob", "--encrypt"]);
    assert!(s.read(".env").contains("TOKEN=ENC["));
    assert!(s.read(".env.production").contains("TOKEN=ENC["));
    assert_eq!(s.ok(&["get", "-e", "production", "TOKEN"]), "prod");
}

#[test]
fn identity_sources_in_order() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A", "1"]);
    let key = s.default_key();
    let moved = s.tmp.path().join("alice.key");
    std::fs::rename(&key, &moved).unwrap();
    s.fails(&["get", "A"], 1);
    let text = std::fs::read_to_string(&moved).unwrap();
    let secret_line = text
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap()
        .to_string();
    let get = |var: &str, val: &str| {
        let out = s.envv().args(["get", "A"]).env(var, val).output().unwrap();
        assert!(
            out.status.success(),
            "{var}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, b"1");
    };
    get("ENVV_AGE_KEY", &secret_line);
    get("ENVV_AGE_KEY_FILE", moved.to_str().unwrap());
    get("SOPS_AGE_KEY", &secret_line);
    get("SOPS_AGE_KEY_FILE", moved.to_str().unwrap());
    get("SOPS_AGE_KEY_CMD", &format!("cat {}", moved.display()));
    s.ok(&["get", "--identity", moved.to_str().unwrap(), "A"]);
    // sops's default key file is read too.
    let sops_file = s.home.join(".config/sops/age/keys.txt");
    std::fs::create_dir_all(sops_file.parent().unwrap()).unwrap();
    std::fs::copy(&moved, &sops_file).unwrap();
    assert_eq!(s.ok(&["get", "A"]), "1");
    // A wrong key in a sops variable does not hide the right one in a default key file
    // (sops users often export SOPS_AGE_KEY_FILE globally)...
    let (wrong, _) = s.identity("wrong");
    let out = s
        .envv()
        .args(["get", "A"])
        .env("SOPS_AGE_KEY_FILE", &wrong)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ...but envv's own explicit identity replaces every other source.
    let out = s
        .envv()
        .args(["get", "A"])
        .env("ENVV_AGE_KEY_FILE", &wrong)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let out = s
        .envv()
        .args(["get", "--identity", wrong.to_str().unwrap(), "A"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn ssh_ed25519_member_decrypts_with_ssh_key() {
    let s = Sandbox::new();
    let ssh_dir = s.home.join(".ssh");
    std::fs::create_dir_all(&ssh_dir).unwrap();
    let key = ssh_dir.join("id_ed25519");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "bob@laptop", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    let public = std::fs::read_to_string(ssh_dir.join("id_ed25519.pub"))
        .unwrap()
        .trim()
        .to_string();
    s.write(
        ".sops.yaml",
        format!("envv:\n  members:\n    bob: {{ key: \"{public}\" }}\n  groups:\n    team: [bob]\n  environments:\n    default: {{ file: .env, readers: [team] }}\n"),
    );
    s.ok(&["set", "A", "via ssh"]);
    assert!(s
        .read(".env")
        .contains(&format!("sops_age__list_0__map_recipient={public}")));
    // Found through ~/.ssh/id_ed25519 because the file has an SSH recipient.
    assert_eq!(s.ok(&["get", "A"]), "via ssh");
    assert_eq!(
        s.ok(&["get", "--identity", key.to_str().unwrap(), "A"]),
        "via ssh"
    );
}

#[test]
fn public_keys_stay_plain() {
    let s = Sandbox::new();
    s.init_alice();
    let policy = s.read(".sops.yaml").replace(
        "  environments:",
        "  public: [\"^PORT$\", \"^NEXT_PUBLIC_\"]\n  environments:",
    );
    s.write(".sops.yaml", policy);
    // Patterns written by hand are confirmed once, like readers added by hand.
    let err = s.fails(&["set", "PORT=8080"], 1);
    assert!(err.contains("\"^PORT$\""), "{err}");
    s.ok(&[
        "--yes",
        "set",
        "PORT=8080",
        "NEXT_PUBLIC_URL=https://x.example",
        "SECRET=s",
    ]);
    let text = s.read(".env");
    assert!(
        text.contains("PORT=8080\n") && text.contains("NEXT_PUBLIC_URL=https://x.example\n"),
        "{text}"
    );
    assert!(
        text.contains("SECRET=ENC[") && text.contains("sops_unencrypted_regex="),
        "{text}"
    );
    assert_eq!(s.ok(&["get", "SECRET"]), "s");
}

#[test]
fn corrupt_metadata_is_an_error_naming_the_file() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A", "1"]);
    let text = s.read(".env");
    let cut: String = text
        .lines()
        .filter(|l| !l.starts_with("sops_lastmodified"))
        .map(|l| format!("{l}\n"))
        .collect();
    s.write(".env", cut);
    let err = s.fails(&["get", "A"], 2);
    assert!(
        err.contains(".env") && err.contains("sops_lastmodified"),
        "{err}"
    );
    s.write(".env", "A=ENC[AES256_GCM,data:zz\nsops_version=3.11.0\n");
    let err = s.fails(&["get", "A"], 2);
    assert!(err.contains(".env"), "{err}");
}

#[test]
fn example_policy_is_valid() {
    let text =
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".sops.yaml.example"))
            .unwrap();
    let p = envv::policy::parse(".sops.yaml.example", &text).unwrap();
    assert_eq!(p.reader_names("production"), vec!["alice", "ci"]);
}

#[test]
fn a_closed_stdout_pipe_is_not_a_panic() {
    let s = Sandbox::new();
    s.init_alice();
    let pairs: Vec<String> = (0..3000).map(|i| format!("KEY_NUMBER_{i}=v")).collect();
    let mut args = vec!["set"];
    args.extend(pairs.iter().map(String::as_str));
    s.ok(&args);
    let bin = assert_cmd::cargo::cargo_bin("envv");
    let mut child = s
        .command(bin)
        .args(["ls"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_ne!(
        out.status.code(),
        Some(101),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

#[test]
fn plaintext_line_added_to_an_encrypted_file_is_not_used() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "DATABASE_URL", "postgres://real"]);
    let text = s.read(".env");
    let line = text
        .lines()
        .find(|l| l.starts_with("DATABASE_URL="))
        .unwrap()
        .to_string();
    // A pull request appends an override in plain text below the real value.
    s.write(
        ".env",
        text.replacen(&line, &format!("{line}\nDATABASE_URL=postgres://evil"), 1),
    );
    let err = s.fails(&["get", "DATABASE_URL"], 2);
    assert!(
        err.contains(".env:2:") && err.contains("DATABASE_URL appears twice (lines 1 and 2)"),
        "{err}"
    );
    assert!(!err.contains("evil"), "{err}");
    s.fails(&["exec", "--", "true"], 2);
    s.fails(&["set", "OTHER", "x"], 2);
    // Not even `envv encrypt` takes a second line for a key.
    s.fails(&["encrypt"], 2);
    // A new key typed in plain text is refused until `envv encrypt` accepts it.
    s.write(".env", format!("{text}NEW_URL=postgres://typed\n"));
    let err = s.fails(&["get", "NEW_URL"], 2);
    assert!(err.contains("plain text"), "{err}");
    assert!(!err.contains("typed"), "{err}");
    s.ok(&["encrypt"]);
    assert_eq!(s.ok(&["get", "NEW_URL"]), "postgres://typed");
}

#[test]
fn keys_that_are_not_names_never_reach_a_shell() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A", "1"]);
    // An empty value adds nothing to the MAC and keys are not hashed: a crafted key line.
    let text = s.read(".env");
    s.write(".env", text.replacen("A=", "X;touch pwned;Y=\nA=", 1));
    // The line is left out with a warning naming it; the valid keys are exported.
    let out = s
        .envv()
        .args(["export", "--format", "shell"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "export A='1'\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains(".env:1: left out"));
    assert!(!s.repo.join("pwned").exists());
}

#[test]
fn set_refuses_a_file_readable_by_someone_the_policy_dropped() {
    let s = Sandbox::new();
    s.init_alice();
    let (bob, bob_pub) = s.identity("bob");
    s.ok(&["member", "add", "bob", &bob_pub]);
    s.ok(&["set", "A", "1"]);
    // A hand edit (or a merged pull request) drops bob from the policy.
    let policy = s.read(".sops.yaml");
    let cut: String = policy
        .lines()
        .filter(|l| !l.contains(&bob_pub) && !l.trim_start().starts_with("bob:"))
        .map(|l| format!("{}\n", l.replace("[alice, bob]", "[alice]")))
        .collect();
    s.write(".sops.yaml", cut);
    let err = s.fails(&["set", "NEW", "secret"], 2);
    assert!(err.contains("envv updatekeys"), "{err}");
    let out = s
        .envv()
        .args(["get", "NEW"])
        .env("ENVV_AGE_KEY_FILE", &bob)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    s.ok(&["updatekeys"]);
    s.ok(&["set", "NEW", "secret"]);
    let out = s
        .envv()
        .args(["get", "NEW"])
        .env("ENVV_AGE_KEY_FILE", &bob)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn decrypt_output_over_a_readable_file_is_private_from_the_start() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A", "1"]);
    let out = s.tmp.path().join("out.env");
    std::fs::write(&out, "old").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).unwrap();
        s.ok(&["decrypt", "-o", out.to_str().unwrap()]);
        assert_eq!(
            std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}

/// Every child a test starts sees the sandbox's allowlist and nothing of the caller's
/// environment (cargo's own variables, a developer's keys, a `GIT_INDEX_FILE` or
/// `ENVV_FAULT_INJECT` left in a shell).
#[test]
fn children_get_the_sandbox_environment_and_nothing_else() {
    use std::collections::BTreeSet;
    let s = Sandbox::new();
    let allowed: BTreeSet<String> = s
        .vars()
        .into_iter()
        .map(|(k, _)| k.into_string().unwrap())
        .collect();
    let names = |out: &[u8]| -> BTreeSet<String> {
        out.split(|b| *b == 0)
            .filter_map(|kv| std::str::from_utf8(kv).ok()?.split_once('='))
            .map(|(k, _)| k.to_string())
            .collect()
    };
    let out = s.command("env").arg("-0").output().unwrap();
    assert_eq!(names(&out.stdout), allowed);
    // envv's own child: the sandbox, plus the file's secrets.
    s.init_alice();
    s.ok(&["set", "A_SECRET=1"]);
    let out = s.ok(&["exec", "--", "env", "-0"]);
    let extra: Vec<String> = names(out.as_bytes())
        .difference(&allowed)
        .cloned()
        .collect();
    assert_eq!(extra, ["A_SECRET"]);
}
