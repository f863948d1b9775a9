//! `public` patterns are confirmed like readers: a pattern a commit widened stores nothing in
//! plain text until the person running envv says yes.

use crate::support::*;

/// alice's repository with `API_KEY` encrypted in `.env`, committed; then a commit by
/// "Mallory" widens `public` to every `*_KEY`.
fn widened_repo() -> Sandbox {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "API_KEY=sk_test_existing_value"]);
    s.git(&["add", "-A"]);
    s.git(&["commit", "-qm", "secrets"]);
    let policy = s.read(".sops.yaml");
    s.write(
        ".sops.yaml",
        policy.replacen(
            "  environments:",
            "  public: [\"^PORT$\", \".*_KEY$\"]\n  environments:",
            1,
        ),
    );
    s.git(&["add", "-A"]);
    s.git(&[
        "commit",
        "-qm",
        "ci: PORT is public",
        "--author",
        "Mallory <mallory@example.com>",
    ]);
    s
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn new_file_under_unconfirmed_pattern_names_commit_and_needs_yes() {
    let s = widened_repo();
    s.ok(&["env", "add", "staging"]);
    let err = s.fails(&["set", "-e", "staging", "STRIPE_KEY=sk_test_future"], 1);
    assert!(err.contains("\".*_KEY$\""), "{err}");
    assert!(err.contains("Mallory"), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert!(!s.repo.join(".env.staging").exists());

    let out = s.run(&["-y", "set", "-e", "staging", "STRIPE_KEY=sk_test_future"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("set STRIPE_KEY in .env.staging as plain text"),
        "{}",
        stderr(&out)
    );
    assert!(s.read(".env.staging").contains("sk_test_future"));
    // Confirmed once in this clone: not asked again, still told.
    let out = s.run(&["set", "-e", "staging", "OTHER_KEY=sk_test_other"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("as plain text"), "{}", stderr(&out));
    let trusted = std::fs::read_to_string(s.repo.join(".git/envv/trusted")).unwrap();
    assert!(trusted.contains("public\t.*_KEY$\t"), "{trusted}");
    // Encrypted values are not announced as plain text.
    let out = s.run(&["set", "-e", "staging", "DB_PASS=pw_test"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("plain text"), "{}", stderr(&out));
}

#[test]
fn stricter_file_says_the_policy_widened_and_fix_rule_asks() {
    let s = widened_repo();
    let before = s.read(".env");
    let err = s.fails(&["set", "PORT=8080"], 2);
    assert!(err.contains("widened"), "{err}");
    assert!(err.contains("\".*_KEY$\""), "{err}");
    assert!(
        !err.contains("leaves in plain text keys the policy encrypts"),
        "{err}"
    );

    // --fix-rule would turn the encrypted API_KEY into plain text: asked first.
    let err = s.fails(&["encrypt", "-f", ".env", "--fix-rule"], 1);
    assert!(err.contains("API_KEY"), "{err}");
    assert!(err.contains("Mallory"), "{err}");
    assert_eq!(s.read(".env"), before, "nothing is written without a yes");

    s.ok(&["-y", "encrypt", "-f", ".env", "--fix-rule"]);
    assert!(s.read(".env").contains("sk_test_existing_value"));
}

#[test]
fn unconfirmed_pattern_asks_on_a_terminal() {
    let s = widened_repo();
    s.ok(&["env", "add", "staging"]);
    let Some((ok, transcript)) = s.pty("set -e staging STRIPE_KEY=sk_test_tty", "n\n") else {
        return;
    };
    assert!(!ok, "{transcript}");
    assert!(
        transcript.contains("store them in plain text?"),
        "{transcript}"
    );
    assert!(!s.repo.join(".env.staging").exists());
    let (ok, transcript) = s
        .pty("set -e staging STRIPE_KEY=sk_test_tty", "y\n")
        .unwrap();
    assert!(ok, "{transcript}");
    assert!(s.read(".env.staging").contains("sk_test_tty"));
}

#[test]
fn first_use_asks_nothing_and_a_hand_written_pattern_is_asked_once() {
    // First use stays one command: `init` writes no pattern, so nothing is asked.
    let s = Sandbox::new();
    s.init_alice();
    let out = s.run(&["set", "DB_URL=postgres://test"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("plain text"), "{}", stderr(&out));
    // A pattern written by hand and not committed: asked once, then remembered.
    let policy = s.read(".sops.yaml");
    s.write(
        ".sops.yaml",
        policy.replacen(
            "  environments:",
            "  public: [\"^PORT$\"]\n  environments:",
            1,
        ),
    );
    s.ok(&["env", "add", "dev"]);
    let err = s.fails(&["set", "-e", "dev", "PORT=3000"], 1);
    assert!(err.contains("not committed"), "{err}");
    s.ok(&["--yes", "set", "-e", "dev", "PORT=3000"]);
    s.ok(&["set", "-e", "dev", "PORT=3001"]);
}
