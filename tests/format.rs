//! What the sops format leaves unauthenticated (type tags, text after `]`, duplicate and empty
//! lines, rule lines, key groups) cannot change what envv gives a process or how it encrypts.
//!
//! Fixtures in `tests/fixtures/typed/` were made by the real sops 3.11.0 (`make.sh` there).

use std::path::Path;

use crate::support::*;

fn key(name: &str) -> String {
    fixtures().join(name).to_str().unwrap().to_string()
}

fn typed(name: &str) -> std::path::PathBuf {
    fixtures().join("typed").join(name)
}

/// A sandbox with a fixture from `typed/` copied in as `name`.
fn with_typed(fixture: &str, name: &str) -> Sandbox {
    let s = Sandbox::new();
    std::fs::copy(typed(fixture), s.repo.join(name)).unwrap();
    s
}

fn public_of(file: &str) -> String {
    std::fs::read_to_string(fixtures().join(file))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("# public key: ").map(str::to_string))
        .unwrap_or_else(|| match file {
            "keys.txt" => TEST_KEY_A_PUBLIC.into(),
            _ => TEST_KEY_B_PUBLIC.into(),
        })
}

/// `KEY=VALUE` lines of a sops dotenv output.
fn expected_lines(name: &str) -> Vec<(String, String)> {
    std::fs::read_to_string(typed(name))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn typed_values_made_by_sops_read_as_sops_prints_them() {
    for (fixture, expected) in [
        ("sops_set.env", "sops_set.expected.env"),
        ("from_yaml.env", "from_yaml.expected.env"),
    ] {
        let s = with_typed(fixture, "t.env");
        for (k, v) in expected_lines(expected) {
            let got = s.ok(&["get", "-f", "t.env", "--identity", &key("keys.txt"), &k]);
            assert_eq!(got, v, "{fixture} {k}");
        }
    }
    // And exec injects the same text.
    let s = with_typed("sops_set.env", "t.env");
    let out = s.ok(&[
        "exec",
        "-f",
        "t.env",
        "--identity",
        &key("keys.txt"),
        "--",
        "sh",
        "-c",
        "printf '%s|%s|%s|%s' \"$FLAG_ON\" \"$COUNT\" \"$TINY\" \"$HUGE\"",
    ]);
    assert_eq!(out, "true|123.0|1E-05|1E+21");
}

#[test]
fn a_type_tag_edited_by_hand_fails_as_in_sops() {
    // DEBUG holds the string "true"; retagged as bool, sops's MAC covers "True": mismatch.
    let s = with_typed("flipped_bool.env", "t.env");
    let id = key("keys.txt");
    let err = s.fails(&["get", "-f", "t.env", "--identity", &id, "DEBUG"], 2);
    assert!(err.contains("MAC does not match"), "{err}");
    s.fails(&["exec", "-f", "t.env", "--identity", &id, "--", "true"], 2);
    s.fails(&["export", "-f", "t.env", "--identity", &id], 2);
    // SECRET retagged as bool does not even parse as one (sops: exit 25).
    let s2 = with_typed("flipped_secret.env", "t.env");
    let err = s2.fails(&["get", "-f", "t.env", "--identity", &id, "SECRET"], 2);
    assert!(
        err.contains("typed bool") && !err.contains("hunter2"),
        "{err}"
    );
    if let Some(sops) = sops() {
        for (dir, code) in [(&s.repo, 51), (&s2.repo, 25)] {
            let out = run_sops(&sops, dir, Path::new(&id), &["decrypt", "t.env"]);
            assert_eq!(
                out.status.code(),
                Some(code),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn envv_writes_on_a_typed_sops_file_stay_valid_for_sops() {
    let s = with_typed("sops_set.env", "t.env");
    s.write(
        ".sops.yaml",
        format!("envv:\n  members:\n    a: {{ key: {TEST_KEY_A_PUBLIC} }}\n  environments:\n    t: {{ file: t.env, readers: [a] }}\n"),
    );
    let id = key("keys.txt");
    s.ok(&["--identity", &id, "set", "-f", "t.env", "ADDED", "by envv"]);
    assert_eq!(
        s.ok(&["get", "-f", "t.env", "--identity", &id, "TINY"]),
        "1E-05"
    );
    let Some(sops) = sops() else { return };
    let out = run_sops(
        &sops,
        &s.repo,
        Path::new(&id),
        &["decrypt", "--output-type", "json", "t.env"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ADDED"], "by envv");
    assert_eq!(v["FLAG_ON"], "true");
    assert_eq!(v["COUNT"], "123.0");
}

/// alice's repo with API_KEY set, and the `.env` text.
fn alice_with_key() -> (Sandbox, String) {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "API_KEY=sk_live_real", "OTHER=1"]);
    let text = s.read(".env");
    (s, text)
}

#[test]
fn an_empty_duplicate_of_a_key_is_refused_everywhere() {
    let (s, text) = alice_with_key();
    // Below the real value, outside the MAC: every consumer would get an empty API_KEY.
    s.write(".env", text.replacen("\nsops_", "\nAPI_KEY=\nsops_", 1));
    let line_of = |k: &str| {
        s.read(".env")
            .lines()
            .position(|l| l.starts_with(&format!("{k}=")))
            .unwrap()
            + 1
    };
    let first = line_of("API_KEY");
    let both = format!("API_KEY appears twice (lines {first} and 3)");
    for args in [
        vec!["get", "API_KEY"],
        vec!["exec", "--", "true"],
        vec!["export"],
        vec!["decrypt"],
        vec!["set", "NEW", "x"],
    ] {
        let err = s.fails(&args, 2);
        assert!(err.contains(&both), "{args:?}: {err}");
    }
    let out = s.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&both)
            || String::from_utf8_lossy(&out.stderr).contains(&both)
    );
    s.git(&["add", ".sops.yaml", ".env"]);
    let err = s.fails(&["hook", "pre-commit"], 1);
    assert!(err.contains(&both), "{err}");
    // The merge driver leaves such a side to a person.
    std::fs::write(s.repo.join("O"), &text).unwrap();
    std::fs::write(s.repo.join("A"), &text).unwrap();
    std::fs::write(s.repo.join("B"), s.read(".env")).unwrap();
    let out = s.run(&["merge-driver", "O", "A", "B", ".env"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&both));
}

#[test]
fn text_after_an_encrypted_value_is_refused() {
    let (s, text) = alice_with_key();
    let line = text
        .lines()
        .find(|l| l.starts_with("API_KEY="))
        .unwrap()
        .to_string();
    s.write(".env", text.replacen(&line, &format!("{line} # note"), 1));
    let err = s.fails(&["get", "API_KEY"], 2);
    assert!(
        err.contains(".env:1:") && err.contains("text after the closing ]"),
        "{err}"
    );
    assert!(!err.contains("note"), "{err}");
    s.fails(&["exec", "--", "true"], 2);
    s.git(&["add", ".sops.yaml", ".env"]);
    let err = s.fails(&["hook", "pre-commit"], 1);
    assert!(err.contains("text after the closing ]"), "{err}");
}

#[test]
fn a_swapped_rule_line_never_stores_a_secret_in_plain_text() {
    let (s, text) = alice_with_key();
    s.git(&["add", ".sops.yaml", ".env"]);
    s.git(&["commit", "-qm", "secrets"]);
    // A pusher swaps the rule line: the MAC still verifies (rule lines are outside it).
    let swapped = text.replace(
        "sops_unencrypted_suffix=_unencrypted",
        "sops_unencrypted_regex=^(GITHUB|AWS)_",
    );
    assert_ne!(swapped, text);
    s.write(".env", &swapped);
    assert_eq!(
        s.ok(&["get", "API_KEY"]),
        "sk_live_real",
        "reads still work"
    );
    let rule_line = swapped
        .lines()
        .position(|l| l.starts_with("sops_unencrypted_regex="))
        .unwrap()
        + 1;
    for args in [
        vec!["set", "GITHUB_TOKEN", "ghp_secret"],
        vec!["rm", "OTHER"],
        vec!["encrypt"],
        vec!["rotate"],
    ] {
        let err = s.fails(&args, 2);
        assert!(
            err.contains(&format!("sops_unencrypted_regex line (line {rule_line})"))
                && err.contains("--fix-rule"),
            "{args:?}: {err}"
        );
    }
    let out = s
        .envv()
        .args(["edit"])
        .env(
            "EDITOR",
            "sh -c 'printf \"GITHUB_TOKEN=x\\n\" >> \"$1\"' editor",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sops_unencrypted_regex"));
    assert_eq!(s.read(".env"), swapped, "nothing was written");
    let (_, bob) = s.identity("bob");
    let err = s.fails(&["member", "add", "bob", &bob], 2);
    assert!(err.contains("sops_unencrypted_regex"), "{err}");
    // Reported where it is committed and in CI.
    let out = s.run(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("weak_rule"));
    let out = s.run(&["updatekeys", "--check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("sops_unencrypted_regex"));
    s.git(&["add", ".env"]);
    let err = s.fails(&["hook", "pre-commit"], 1);
    assert!(err.contains("sops_unencrypted_regex"), "{err}");
    // The merge driver does not merge into (or from) such a side.
    for (n, t) in [("O", &text), ("A", &text), ("B", &swapped)] {
        std::fs::write(s.repo.join(n), t).unwrap();
    }
    let out = s.run(&["merge-driver", "O", "A", "B", ".env"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sops_unencrypted_regex"));
    // The fix puts the policy's rule back; new keys are then encrypted.
    s.ok(&["encrypt", "--fix-rule"]);
    s.ok(&["set", "GITHUB_TOKEN", "ghp_secret"]);
    let now = s.read(".env");
    assert!(!now.contains("ghp_secret") && now.contains("sops_unencrypted_suffix=_unencrypted"));
}

#[test]
fn other_rule_lines_are_refused_too() {
    for (from, to) in [
        (
            "sops_unencrypted_suffix=_unencrypted",
            "sops_encrypted_regex=^NOTHING$",
        ),
        (
            "sops_unencrypted_suffix=_unencrypted",
            "sops_encrypted_suffix=_secret",
        ),
        (
            "sops_unencrypted_suffix=_unencrypted",
            "sops_unencrypted_suffix=_KEY",
        ),
        (
            "sops_unencrypted_suffix=_unencrypted",
            "sops_unencrypted_comment_regex=.",
        ),
    ] {
        let (s, text) = alice_with_key();
        s.write(".env", text.replace(from, to));
        let err = s.fails(&["set", "NEW_SECRET", "v"], 2);
        assert!(err.contains("refusing to write .env"), "{to}: {err}");
        assert!(!s.read(".env").contains("NEW_SECRET"), "{to}");
        // The values were sealed under the policy's rule: --fix-rule puts it back.
        s.ok(&["encrypt", "--fix-rule"]);
        assert_eq!(s.ok(&["get", "API_KEY"]), "sk_live_real", "{to}");
    }
    // A file sops wrote under another rule (encrypted_regex, MAC over encrypted values only)
    // is converted: its plain values are encrypted and the user is told to rotate them.
    let s = Sandbox::new();
    std::fs::copy(fixtures().join("mac_only.env"), s.repo.join("m.env")).unwrap();
    s.write(
        ".sops.yaml",
        format!("envv:\n  members:\n    a: {{ key: {TEST_KEY_A_PUBLIC} }}\n  environments:\n    m: {{ file: m.env, readers: [a] }}\n"),
    );
    let id = key("keys.txt");
    let err = s.fails(&["--identity", &id, "set", "-f", "m.env", "X", "y"], 2);
    assert!(err.contains("sops_encrypted_regex"), "{err}");
    let out = s.run(&["--identity", &id, "encrypt", "-f", "m.env", "--fix-rule"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("HOST were stored in plain text"));
    let text = s.read("m.env");
    assert!(!text.contains("localhost") && !text.contains("sops_mac_only_encrypted"));
    assert_eq!(
        s.ok(&["--identity", &id, "get", "-f", "m.env", "HOST"]),
        "localhost"
    );
}

#[test]
fn a_file_sops_wrote_under_the_policy_rule_reads_and_writes() {
    // public_regex.env was made by sops under creation_rules with the same regex as `public`.
    let s = Sandbox::new();
    std::fs::copy(fixtures().join("public_regex.env"), s.repo.join("p.env")).unwrap();
    s.write(
        ".sops.yaml",
        format!("envv:\n  members:\n    a: {{ key: {TEST_KEY_A_PUBLIC} }}\n  environments:\n    p: {{ file: p.env, readers: [a] }}\n  public: ['^(PORT|NODE_ENV|NEXT_PUBLIC_.*)$']\n"),
    );
    let id = key("keys.txt");
    s.ok(&[
        "set",
        "-f",
        "p.env",
        "--identity",
        &id,
        "NEW_SECRET",
        "hidden",
    ]);
    s.ok(&[
        "--yes",
        "set",
        "-f",
        "p.env",
        "--identity",
        &id,
        "NEXT_PUBLIC_X",
        "shown",
    ]);
    let text = s.read("p.env");
    assert!(!text.contains("hidden") && text.contains("NEXT_PUBLIC_X=shown"));
    let out = s.run(&["check"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("weak_rule"));
    // mac_only.env (encrypted_regex, MAC over encrypted values only) still reads.
    let s = Sandbox::new();
    std::fs::copy(fixtures().join("mac_only.env"), s.repo.join("m.env")).unwrap();
    assert_eq!(
        s.ok(&["get", "-f", "m.env", "--identity", &id, "PASSWORD"]),
        "hunter2"
    );
}

const GROUPS: &str = "g.env";

/// The 2-of-3 key-group file made by sops, under a policy naming its three recipients.
fn groups_repo() -> Sandbox {
    let s = with_typed("groups_2_of_3.env", GROUPS);
    s.write(
        ".sops.yaml",
        format!(
            "envv:\n  members:\n    a: {{ key: {} }}\n    b: {{ key: {} }}\n    c: {{ key: {} }}\n  groups:\n    team: [a, b, c]\n  environments:\n    g: {{ file: {GROUPS}, readers: [team] }}\n",
            public_of("keys.txt"),
            public_of("keys_b.txt"),
            public_of("keys_c.txt")
        ),
    );
    s
}

fn groups_of(s: &Sandbox) -> (usize, String) {
    let text = s.read(GROUPS);
    let n = text
        .lines()
        .filter(|l| l.starts_with("sops_key_groups__list_") && l.contains("__map_recipient="))
        .count();
    let t = text
        .lines()
        .find_map(|l| l.strip_prefix("sops_shamir_threshold="))
        .unwrap_or("none")
        .to_string();
    (n, t)
}

#[test]
fn too_few_key_groups_says_how_many_are_needed() {
    let s = groups_repo();
    let err = s.fails(
        &[
            "get",
            "-f",
            GROUPS,
            "--identity",
            &key("keys.txt"),
            "API_KEY",
        ],
        1,
    );
    assert!(
        err.contains("needs 2 of 3 key groups; your identities open 1"),
        "{err}"
    );
    assert!(!err.contains("not a reader"), "{err}");
    let got = s.ok(&[
        "get",
        "-f",
        GROUPS,
        "--identity",
        &key("keys.txt"),
        "--identity",
        &key("keys_c.txt"),
        "API_KEY",
    ]);
    assert_eq!(got, "three groups, any two");
}

#[test]
fn key_groups_and_threshold_survive_every_write() {
    let s = groups_repo();
    let (a, b, c) = (key("keys.txt"), key("keys_b.txt"), key("keys_c.txt"));
    let two = ["--identity", a.as_str(), "--identity", b.as_str()];
    let run = |args: &[&str]| {
        let mut v: Vec<&str> = two.to_vec();
        v.extend_from_slice(args);
        s.ok(&v);
    };
    run(&["set", "-f", GROUPS, "NEW", "v"]);
    assert_eq!(groups_of(&s), (3, "2".into()), "set");
    run(&["rm", "-f", GROUPS, "OTHER"]);
    assert_eq!(groups_of(&s), (3, "2".into()), "rm");
    let out = s
        .envv()
        .args(two)
        .args(["edit", "-f", GROUPS])
        .env("EDITOR", "sh -c 'printf \"EDITED=1\\n\" >> \"$1\"' editor")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(groups_of(&s), (3, "2".into()), "edit");
    run(&["updatekeys"]);
    assert_eq!(groups_of(&s), (3, "2".into()), "updatekeys");
    // A rotation gives every reader new key material: c, listed by the file sops made but
    // never confirmed in this clone, is asked about first.
    let mut v: Vec<&str> = two.to_vec();
    v.push("rotate");
    let err = s.fails(&v, 1);
    assert!(
        err.contains("not confirmed") && err.contains("g.env"),
        "{err}"
    );
    run(&["rotate", "--yes"]);
    assert_eq!(groups_of(&s), (3, "2".into()), "rotate");
    // After the rotation one identity still opens nothing; any two do.
    let err = s.fails(&["get", "-f", GROUPS, "--identity", &c, "NEW"], 1);
    assert!(err.contains("needs 2 of 3 key groups"), "{err}");
    assert_eq!(
        s.ok(&[
            "get",
            "-f",
            GROUPS,
            "--identity",
            &b,
            "--identity",
            &c,
            "NEW"
        ]),
        "v"
    );
    if let Some(sops) = sops() {
        let both = s.tmp.path().join("ab.txt");
        std::fs::write(
            &both,
            format!(
                "{}\n{}",
                std::fs::read_to_string(&a).unwrap(),
                std::fs::read_to_string(&b).unwrap()
            ),
        )
        .unwrap();
        let out = run_sops(
            &sops,
            &s.repo,
            &both,
            &["decrypt", "--output-type", "json", GROUPS],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["NEW"], "v");
        assert_eq!(v["API_KEY"], "three groups, any two");
    }
}

#[test]
fn lowering_a_threshold_needs_flatten() {
    let s = groups_repo();
    let (a, b) = (key("keys.txt"), key("keys_b.txt"));
    let before = s.read(GROUPS);
    let (_, dave) = s.identity("dave");
    let add = |extra: &[&str]| {
        let mut v = vec![
            "member",
            "add",
            "dave",
            dave.as_str(),
            "--identity",
            &a,
            "--identity",
            &b,
        ];
        v.extend_from_slice(extra);
        s.run(&v)
    };
    let out = add(&[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("3 key groups") && err.contains("--flatten"),
        "{err}"
    );
    assert_eq!(s.read(GROUPS), before, "nothing was written");
    // Removing the only recipient of a group would lower the threshold too.
    let err = s.fails(
        &["member", "rm", "c", "--identity", &a, "--identity", &b],
        2,
    );
    assert!(
        err.contains("key group 3") && err.contains("--flatten"),
        "{err}"
    );
    assert_eq!(s.read(GROUPS), before, "nothing was written");
    // With --flatten the file becomes one group, as asked; the data key is wrapped anew for
    // every reader, so c (never confirmed in this clone) is confirmed with --yes.
    let out = add(&["--flatten", "--yes"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(groups_of(&s), (0, "none".into()));
    assert_eq!(
        s.ok(&["get", "-f", GROUPS, "--identity", &a, "API_KEY"]),
        "three groups, any two"
    );
}

#[test]
fn merges_keep_key_groups() {
    let s = groups_repo();
    let (a, b) = (key("keys.txt"), key("keys_b.txt"));
    let ids = ["--identity", a.as_str(), "--identity", b.as_str()];
    let base = s.read(GROUPS);
    let with = |args: &[&str]| {
        let mut v: Vec<&str> = ids.to_vec();
        v.extend_from_slice(args);
        s.ok(&v);
        s.read(GROUPS)
    };
    let ours = with(&["set", "-f", GROUPS, "OURS", "1"]);
    s.write(GROUPS, &base);
    let theirs = with(&["set", "-f", GROUPS, "THEIRS", "2"]);
    for (n, t) in [("O", &base), ("A", &ours), ("B", &theirs)] {
        std::fs::write(s.repo.join(n), t).unwrap();
    }
    let mut v: Vec<&str> = ids.to_vec();
    v.extend_from_slice(&["merge-driver", "O", "A", "B", GROUPS]);
    s.ok(&v);
    std::fs::copy(s.repo.join("A"), s.repo.join(GROUPS)).unwrap();
    assert_eq!(groups_of(&s), (3, "2".into()));
    let mut v: Vec<&str> = ids.to_vec();
    v.extend_from_slice(&["get", "-f", GROUPS, "THEIRS"]);
    assert_eq!(s.ok(&v), "2");
    // A side that flattened the groups is not merged with one that kept them.
    s.write(GROUPS, &base);
    let (_, dave) = s.identity("dave");
    let flat = with(&["member", "add", "dave", &dave, "--flatten", "--yes"]);
    assert_eq!(groups_of(&s), (0, "none".into()));
    std::fs::write(s.repo.join("B"), &flat).unwrap();
    std::fs::write(s.repo.join("A"), &ours).unwrap();
    let mut v: Vec<&str> = ids.to_vec();
    v.extend_from_slice(&["merge-driver", "O", "A", "B", GROUPS]);
    let out = s.run(&v);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("different key groups or thresholds"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_threshold_lowered_by_hand_is_not_used() {
    let (a, b, c) = (key("keys.txt"), key("keys_b.txt"), key("keys_c.txt"));
    let all = [
        "--identity",
        a.as_str(),
        "--identity",
        b.as_str(),
        "--identity",
        c.as_str(),
    ];
    let with_all = |s: &Sandbox, args: &[&str]| {
        let mut v: Vec<&str> = all.to_vec();
        v.extend_from_slice(args);
        s.run(&v)
    };
    // Not covered by the MAC: a pusher writes 1 so that the next rotation would split 1-of-3.
    let s = groups_repo();
    let text = s.read(GROUPS);
    s.write(
        GROUPS,
        text.replace("sops_shamir_threshold=2", "sops_shamir_threshold=1"),
    );
    let out = with_all(&s, &["rotate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(groups_of(&s), (3, "2".into()), "never split below 2");
    let err = s.fails(&["get", "-f", GROUPS, "--identity", &a, "API_KEY"], 1);
    assert!(err.contains("needs 2 of 3 key groups"), "{err}");
    // 3-of-3 lowered to 2: the shares show it, and nothing is re-split.
    let s = with_typed("groups_3_of_3.env", GROUPS);
    s.write(".sops.yaml", groups_repo().read(".sops.yaml"));
    let text = s.read(GROUPS);
    s.write(
        GROUPS,
        text.replace("sops_shamir_threshold=3", "sops_shamir_threshold=2"),
    );
    let out = with_all(&s, &["rotate"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("g.env") && err.contains("sops_shamir_threshold"),
        "{err}"
    );
    assert!(
        s.read(GROUPS).contains("sops_shamir_threshold=2"),
        "nothing rotated"
    );
}

#[test]
fn widening_public_keeps_files_writable_narrowing_does_not() {
    let s = Sandbox::new();
    s.init_alice();
    let policy = s.read(".sops.yaml");
    let with_public = |p: &str| {
        policy.replacen(
            "  environments:",
            &format!("  public: [{p}]\n  environments:"),
            1,
        )
    };
    s.write(".sops.yaml", with_public("'^PORT$'"));
    s.ok(&["--yes", "set", "PORT=8080", "DB=secret"]);
    assert!(s.read(".env").contains("\nsops_unencrypted_regex=^PORT$\n"));
    // More public patterns: the file still encrypts everything the policy encrypts.
    s.write(".sops.yaml", with_public("'^PORT$', '^NEXT_PUBLIC_'"));
    s.ok(&["set", "NEW_SECRET", "v"]);
    assert!(!s.ok(&["check", "--json"]).contains("weak_rule"));
    // PORT no longer public: the file would keep it plain, so writes stop.
    s.write(".sops.yaml", policy.clone());
    let err = s.fails(&["set", "OTHER", "v"], 2);
    assert!(err.contains("sops_unencrypted_regex"), "{err}");
    s.ok(&["encrypt", "--fix-rule"]);
    assert!(
        !s.read(".env").contains("PORT=8080"),
        "PORT is now encrypted"
    );
    assert_eq!(s.ok(&["get", "PORT"]), "8080");
}

#[test]
fn a_comment_retyped_as_a_string_fails_the_mac_as_in_sops() {
    // sops hashes a comment stored as `str` (not one stored as `comment`).
    let s = Sandbox::new();
    s.init_alice();
    s.write(".env", "# a note\nA=1\n");
    s.ok(&["encrypt"]);
    let text = s.read(".env");
    let flipped = text.replacen("type:comment]", "type:str]", 1);
    assert_ne!(flipped, text);
    s.write(".env", &flipped);
    let err = s.fails(&["get", "A"], 2);
    assert!(err.contains("MAC does not match"), "{err}");
    if let Some(sops) = sops() {
        let out = run_sops(&sops, &s.repo, &s.default_key(), &["decrypt", ".env"]);
        assert_eq!(
            out.status.code(),
            Some(51),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_rotation_never_gives_one_reader_enough_shares_to_open_alone() {
    let s = groups_repo();
    let (a, b) = (key("keys.txt"), key("keys_b.txt"));
    let (m, m_pub) = s.identity("mallory");
    // A pusher joins the team and lists herself in key groups 1 and 2 by forged entries.
    let policy = s.read(".sops.yaml");
    s.write(
        ".sops.yaml",
        policy
            .replace(
                "  groups:\n",
                &format!("    m: {{ key: {m_pub} }}\n  groups:\n"),
            )
            .replace("team: [a, b, c]", "team: [a, b, c, m]"),
    );
    let mut file = s.read(GROUPS);
    for g in 0..2 {
        let enc = file
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "sops_key_groups__list_{g}__map_age__list_0__map_enc="
                ))
            })
            .unwrap()
            .to_string();
        let anchor = format!("sops_key_groups__list_{g}__map_age__list_0__map_recipient=");
        file = file.replacen(
            &anchor,
            &format!("sops_key_groups__list_{g}__map_age__list_1__map_enc={enc}\nsops_key_groups__list_{g}__map_age__list_1__map_recipient={m_pub}\n{anchor}"),
            1,
        );
    }
    s.write(GROUPS, &file);
    // Even confirmed with --yes, she gets no two shares.
    let err = s.fails(&["rotate", "--yes", "--identity", &a, "--identity", &b], 2);
    assert!(err.contains("alone would open it"), "{err}");
    assert_eq!(s.read(GROUPS), file, "nothing was written");
    let out = s
        .envv()
        .args(["get", "-f", GROUPS, "--identity"])
        .arg(&m)
        .arg("API_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
}
