//! Write-only contributors: propose (no identity), accept and reject (readers), and how
//! proposal files go through status, check, the hook, textconv and the merge driver.

use std::path::PathBuf;

use crate::support::Sandbox;

/// alice (default key) reads `production`, which holds EXISTING; everything committed.
/// Returns an empty HOME for a contributor who has no identity at all.
fn setup(s: &Sandbox) -> PathBuf {
    s.init_alice();
    s.ok(&["env", "add", "production"]);
    s.envv()
        .args(["set", "-e", "production", "EXISTING"])
        .write_stdin("existing-secret-value")
        .assert()
        .success();
    s.git(&["add", "-A"]);
    s.git(&["commit", "-qm", "production"]);
    let outsider = s.tmp.path().join("outsider-home");
    std::fs::create_dir_all(&outsider).unwrap();
    outsider
}

/// `envv propose -e production KEY` as the outsider, value on stdin.
fn propose(
    s: &Sandbox,
    outsider: &std::path::Path,
    key: &str,
    value: &str,
) -> std::process::Output {
    s.envv_as(outsider)
        .args(["propose", "-e", "production", key])
        .write_stdin(value)
        .output()
        .unwrap()
}

#[test]
fn outsider_proposes_and_reader_accepts() {
    let s = Sandbox::new();
    let outsider = setup(&s);
    let before = s.read(".env.production");

    let out = propose(&s, &outsider, "STRIPE_KEY", "sk_test_proposed_value");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let proposals = s.read(".env.production.proposals");
    assert!(proposals.contains("key = STRIPE_KEY"), "{proposals}");
    assert!(
        proposals.contains("by = Test User <test@example.com>"),
        "{proposals}"
    );
    assert!(!proposals.contains("sk_test_proposed_value"));
    assert_eq!(
        s.read(".env.production"),
        before,
        "propose never touches the file"
    );

    // The outsider still cannot read anything.
    let out = s
        .envv_as(&outsider)
        .args(["get", "-e", "production", "EXISTING"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("existing-secret-value"));

    // status and check list the pending proposal.
    let status = s.ok(&["status"]);
    assert!(status.contains("[1 proposals]"), "{status}");
    assert!(status.contains("envv accept -e production"), "{status}");
    let check = s.envv().args(["check", "--json"]).output().unwrap();
    let check = String::from_utf8_lossy(&check.stdout);
    assert!(check.contains("pending_proposals"), "{check}");
    assert!(check.contains("STRIPE_KEY"), "{check}");

    // Without a terminal, accepting everything needs --yes or the key names.
    let err = s.fails(&["accept", "-e", "production"], 2);
    assert!(err.contains("--yes"), "{err}");
    assert!(s.repo.join(".env.production.proposals").exists());

    let err = String::from_utf8(
        s.envv()
            .args(["accept", "-e", "production", "STRIPE_KEY"])
            .output()
            .unwrap()
            .stderr,
    )
    .unwrap();
    assert!(err.contains("accepted STRIPE_KEY"), "{err}");
    assert!(!err.contains("sk_test_proposed_value"), "{err}");
    assert_eq!(
        s.ok(&["get", "-e", "production", "STRIPE_KEY"]),
        "sk_test_proposed_value"
    );
    assert!(!s.repo.join(".env.production.proposals").exists());
    // A minimal diff, as `set`: the new key, the MAC and the date.
    let diff = s.git(&["diff", "-U0", "--no-textconv", "--", ".env.production"]);
    let changed: Vec<&str> = diff
        .lines()
        .filter(|l| {
            (l.starts_with('+') || l.starts_with('-'))
                && !l.starts_with("+++")
                && !l.starts_with("---")
        })
        .filter(|l| !l[1..].starts_with("sops_mac=") && !l[1..].starts_with("sops_lastmodified="))
        .collect();
    assert_eq!(changed.len(), 1, "{diff}");
    assert!(changed[0].starts_with("+STRIPE_KEY=ENC["), "{diff}");
}

#[test]
fn proposals_follow_the_files_readers_not_a_poisoned_policy() {
    let s = Sandbox::new();
    let outsider = setup(&s);
    // A pusher adds mallory to the policy by hand; the file itself is not re-wrapped.
    let (mallory_key, mallory) = s.identity("mallory");
    let policy = s.read(".sops.yaml");
    let poisoned = policy.replacen(
        "  members:\n",
        &format!("  members:\n    mallory:\n      key: {mallory}\n"),
        1,
    );
    let poisoned = poisoned.replacen("    - alice\n", "    - alice\n    - mallory\n", 1);
    assert_ne!(
        poisoned, policy,
        "the policy layout changed: update this test"
    );
    s.write(".sops.yaml", poisoned);

    let out = propose(&s, &outsider, "NEW_TOKEN", "proposed-for-readers-only");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("alice") && !err.contains("mallory"), "{err}");

    // mallory cannot open it; alice can.
    let out = s
        .envv()
        .args([
            "accept",
            "-e",
            "production",
            "NEW_TOKEN",
            "--show",
            "-i",
            mallory_key.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("proposed-for-readers-only"));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not encrypted to any of your identities")
    );
}

#[test]
fn reject_drops_and_reproposing_replaces() {
    let s = Sandbox::new();
    let outsider = setup(&s);
    assert!(propose(&s, &outsider, "A_KEY", "first-value-1")
        .status
        .success());
    assert!(propose(&s, &outsider, "B_KEY", "second-value-2")
        .status
        .success());
    let out = propose(&s, &outsider, "A_KEY", "first-value-again");
    assert!(String::from_utf8_lossy(&out.stderr).contains("replaces the earlier proposal"));
    assert_eq!(
        s.read(".env.production.proposals")
            .matches("[proposal]")
            .count(),
        2
    );

    s.ok(&["reject", "-e", "production", "B_KEY"]);
    let left = s.read(".env.production.proposals");
    assert!(left.contains("A_KEY") && !left.contains("B_KEY"), "{left}");
    s.fails(&["reject", "-e", "production", "NOPE"], 1);
    s.envv()
        .args(["accept", "-e", "production", "--yes"])
        .assert()
        .success();
    assert_eq!(
        s.ok(&["get", "-e", "production", "A_KEY"]),
        "first-value-again"
    );
}

#[test]
fn propose_needs_an_existing_encrypted_file() {
    let s = Sandbox::new();
    let outsider = setup(&s);
    s.ok(&["env", "add", "staging"]);
    let out = s
        .envv_as(&outsider)
        .args(["propose", "-e", "staging", "K"])
        .write_stdin("v")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist yet"));
    assert!(!s.repo.join(".env.staging.proposals").exists());
}

#[test]
fn hook_refuses_a_proposal_file_with_plaintext() {
    let s = Sandbox::new();
    let outsider = setup(&s);
    assert!(propose(&s, &outsider, "GOOD", "a-good-proposal")
        .status
        .success());
    s.git(&["add", ".env.production.proposals"]);
    s.ok(&["hook", "pre-commit"]);

    let good = s.read(".env.production.proposals");
    s.write(
        ".env.production.proposals",
        format!("{good}\n[proposal]\nkey = LEAK\nvalue = hunter2-plaintext\n"),
    );
    s.git(&["add", ".env.production.proposals"]);
    let err = s.fails(&["hook", "pre-commit"], 1);
    assert!(err.contains(".env.production.proposals"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");

    s.write(".env.production.proposals", "API_KEY=hunter2-plaintext\n");
    s.git(&["add", ".env.production.proposals"]);
    let err = s.fails(&["hook", "pre-commit"], 1);
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn proposals_merge_key_by_key_and_diff_for_readers() {
    let s = Sandbox::new();
    let outsider = setup(&s);
    s.ok(&["git", "setup"]);
    s.git(&["add", "-A"]);
    s.git(&["commit", "-qm", "git setup"]);

    s.git(&["checkout", "-qb", "one"]);
    assert!(propose(&s, &outsider, "FROM_ONE", "value-from-branch-one")
        .status
        .success());
    s.git(&["add", "-A"]);
    s.git(&["commit", "-qm", "one"]);
    s.git(&["checkout", "-q", "main"]);
    s.git(&["checkout", "-qb", "two"]);
    assert!(propose(&s, &outsider, "FROM_TWO", "value-from-branch-two")
        .status
        .success());
    s.git(&["add", "-A"]);
    s.git(&["commit", "-qm", "two"]);

    // git diff (textconv): readers see the proposed key and value, escaped.
    let diff = s.git(&["diff", "main", "two"]);
    assert!(
        diff.contains("+FROM_TWO=\"value-from-branch-two\""),
        "{diff}"
    );
    assert!(diff.contains("proposed by Test User"), "{diff}");

    s.git(&["merge", "-q", "--no-edit", "one"]);
    let merged = s.read(".env.production.proposals");
    assert!(merged.contains("key = FROM_ONE"), "{merged}");
    assert!(merged.contains("key = FROM_TWO"), "{merged}");
    assert!(!merged.contains("<<<<<<<"), "{merged}");
    s.envv()
        .args(["accept", "-e", "production", "--yes"])
        .assert()
        .success();
    assert_eq!(
        s.ok(&["get", "-e", "production", "FROM_ONE"]),
        "value-from-branch-one"
    );
    assert_eq!(
        s.ok(&["get", "-e", "production", "FROM_TWO"]),
        "value-from-branch-two"
    );
}
