//! The trust boundary: what a pusher who holds every public key and no private key can make a
//! reader's envv do by committing `.sops.yaml` (or `.env.local`). alice is the sandbox's
//! default identity and the victim; mallory pushes.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::*;

/// Runs envv with only `key` as identity (no default key file).
fn run_as(s: &Sandbox, key: &Path, args: &[&str]) -> Output {
    s.envv()
        .env("XDG_CONFIG_HOME", s.tmp.path().join("no-keys"))
        .arg("-i")
        .arg(key)
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Commits everything as `author` ("Name <mail>"); returns the short commit id (8).
fn commit_as(s: &Sandbox, author: &str, msg: &str) -> String {
    s.git(&["add", "-A"]);
    s.git(&["commit", "-q", "--author", author, "-m", msg]);
    s.git(&["rev-parse", "HEAD"]).trim()[..8].to_string()
}

/// alice's repository with a secret, committed; then mallory's commit adding herself to the
/// members and to group `team` (what every file of the repository is read by). Returns
/// mallory's identity, public key and the short id of her commit.
fn poisoned(s: &Sandbox) -> (PathBuf, String, String) {
    poisoned_by(s, "Mallory <mallory@example.com>")
}

/// [`poisoned`] with the given commit author.
fn poisoned_by(s: &Sandbox, author: &str) -> (PathBuf, String, String) {
    s.init_alice();
    s.ok(&["set", "API_KEY=sk_live_0123456789"]);
    commit_as(s, "Test User <test@example.com>", "secrets");
    let (mallory, mallory_pub) = s.identity("mallory");
    let policy = s.read(".sops.yaml");
    let poisoned = policy
        .replace(
            "  members:\n",
            &format!("  members:\n    mallory:\n      key: {mallory_pub}\n"),
        )
        .replace("team: [alice]", "team: [alice, mallory]");
    assert_ne!(policy, poisoned);
    s.write(".sops.yaml", poisoned);
    let c = commit_as(s, author, "docs: typo");
    (mallory, mallory_pub, c)
}

fn mallory_reads(s: &Sandbox, mallory: &Path, env: &[&str]) -> bool {
    let mut args = env.to_vec();
    args.extend(["get", "API_KEY"]);
    run_as(s, mallory, &args).status.success()
}

#[test]
fn poisoned_policy_updatekeys_asks_and_remembers() {
    let s = Sandbox::new();
    let (mallory, mallory_pub, commit) = poisoned(&s);
    let before = s.read(".env");

    // No terminal, no --yes: the reader is listed with key, commit and author; nothing changes.
    let out = s.run(&["updatekeys"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let short = &mallory_pub[..8];
    assert!(
        err.contains("mallory")
            && err.contains(short)
            && err.contains(&commit)
            && err.contains("by Mallory")
            && err.contains(".env (default)")
            && err.contains("--yes"),
        "{err}"
    );
    assert_eq!(before, s.read(".env"), "nothing was changed");
    assert!(!mallory_reads(&s, &mallory, &[]));
    assert!(!s.repo.join(".git/envv/trusted").exists());

    // --yes confirms her: wrapped, and remembered in the clone's trust file (not committed).
    s.ok(&["updatekeys", "--yes"]);
    assert!(mallory_reads(&s, &mallory, &[]));
    let trusted = std::fs::read_to_string(s.repo.join(".git/envv/trusted")).unwrap();
    assert!(
        trusted.contains(&mallory_pub) && trusted.contains("mallory"),
        "{trusted}"
    );
    assert!(s.git(&["status", "--porcelain"]).contains(".env"));
    assert!(!s.git(&["status", "--porcelain"]).contains("trusted"));

    // Second run: the file is back without her (a pull), and she is remembered: no question.
    s.git(&["checkout", "--", ".env"]);
    assert!(!mallory_reads(&s, &mallory, &[]));
    let out = s.run(&["updatekeys"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("not confirmed"));
    assert!(mallory_reads(&s, &mallory, &[]));
}

#[test]
fn rotate_does_not_wrap_the_new_key_for_an_unconfirmed_reader() {
    let s = Sandbox::new();
    let (mallory, _, _) = poisoned(&s);
    let before = s.read(".env");
    let err = s.fails(&["rotate"], 1);
    assert!(err.contains("mallory") && err.contains("--yes"), "{err}");
    assert_eq!(before, s.read(".env"));
    assert!(!mallory_reads(&s, &mallory, &[]));
}

#[test]
fn member_add_adds_the_named_member_and_nobody_else() {
    let s = Sandbox::new();
    let (mallory, _, _) = poisoned(&s);
    let (bob, bob_pub) = s.identity("bob");
    let out = s.run(&["member", "add", "bob", &bob_pub]);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(run_as(&s, &bob, &["get", "API_KEY"]).status.success());
    assert!(!mallory_reads(&s, &mallory, &[]), "{err}");
    assert!(
        err.contains("left alone")
            && err.contains(".env (default): not wrapped for mallory")
            && err.contains("envv updatekeys"),
        "{err}"
    );
    assert!(
        err.contains("re-wrapped for bob (values unchanged)") && !err.contains("mallory, bob"),
        "{err}"
    );
    // The policy keeps mallory's request for review; the file does not give her anything.
    assert_eq!(s.run(&["updatekeys", "--check"]).status.code(), Some(1));
}

#[test]
fn a_new_environment_is_not_created_for_an_unconfirmed_reader() {
    let s = Sandbox::new();
    let (mallory, mallory_pub, commit) = poisoned(&s);
    let before = s.read(".env");

    // env add declares the environment; it does not sync the other files to the policy.
    let out = s.run(&["env", "add", "staging"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(before, s.read(".env"));
    assert!(!mallory_reads(&s, &mallory, &[]));

    // The first set would create the file for every reader: mallory is not confirmed.
    let out = s
        .envv()
        .args(["set", "-e", "staging", "STAGING_TOKEN"])
        .write_stdin("tok_staging")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("mallory")
            && err.contains(&mallory_pub[..8])
            && err.contains(".env.staging (staging)")
            && err.contains(&commit),
        "{err}"
    );
    assert!(!s.repo.join(".env.staging").exists());

    // encrypt of a plaintext file is held to the same rule.
    s.write(".env.staging", "STAGING_TOKEN=tok_plain\n");
    let err = s.fails(&["encrypt", ".env.staging"], 1);
    assert!(err.contains("mallory"), "{err}");
    assert_eq!(s.read(".env.staging"), "STAGING_TOKEN=tok_plain\n");
    std::fs::remove_file(s.repo.join(".env.staging")).unwrap();

    // Confirmed with --yes, the file is made for her too.
    s.ok(&["set", "--yes", "-e", "staging", "API_KEY=staging_key"]);
    assert!(mallory_reads(&s, &mallory, &["-e", "staging"]));
}

#[test]
fn readers_reached_through_a_group_are_not_named_by_env_readers() {
    let s = Sandbox::new();
    let (mallory, _, _) = poisoned(&s);
    s.ok(&["env", "add", "production", "--readers", "alice"]);
    s.ok(&["set", "-e", "production", "API_KEY=prod"]);
    // Naming the group `team` names alice, not the member the pusher put into it.
    let err = s.fails(&["env", "readers", "production", "team"], 1);
    assert!(
        err.contains("mallory") && err.contains(".env.production"),
        "{err}"
    );
    assert!(!mallory_reads(&s, &mallory, &["-e", "production"]));
    assert!(s.read(".sops.yaml").contains("readers: [alice]"));
    // Named directly, a member is still asked about: the pushed policy says which key the
    // name stands for. Confirmed with --yes, she reads it.
    let err = s.fails(&["env", "readers", "production", "alice,mallory"], 1);
    assert!(
        err.contains("mallory") && err.contains("not confirmed"),
        "{err}"
    );
    assert!(!mallory_reads(&s, &mallory, &["-e", "production"]));
    s.ok(&["env", "readers", "production", "alice,mallory", "--yes"]);
    assert!(mallory_reads(&s, &mallory, &["-e", "production"]));
}

#[test]
fn check_and_updatekeys_check_in_a_fresh_clone_name_the_commit() {
    let s = Sandbox::new();
    let (_, _, commit) = poisoned(&s);
    let clone = s.tmp.path().join("ci");
    let out = s
        .git_cmd(s.tmp.path())
        .args(["clone", "-q"])
        .arg(&s.repo)
        .arg(&clone)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ci = |args: &[&str]| {
        s.envv_in(&clone)
            .envs([
                ("XDG_CONFIG_HOME", s.tmp.path().join("no-keys")),
                ("HOME", s.tmp.path().join("ci-home")),
            ])
            .args(args)
            .output()
            .unwrap()
    };
    let out = ci(&["updatekeys", "--check"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("missing: mallory")
            && stdout.contains(&format!("commit {commit} by Mallory")),
        "{stdout}"
    );
    let out = ci(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "recipients_out_of_sync")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(f["level"], "error");
    assert!(f["commit"].as_str().unwrap().starts_with(&commit), "{f}");
    let msg = f["message"].as_str().unwrap();
    assert!(
        msg.contains("not readable yet by mallory") && msg.contains(&commit),
        "{msg}"
    );
}

#[test]
fn a_yes_typed_on_a_terminal_confirms() {
    let s = Sandbox::new();
    let (mallory, _, _) = poisoned(&s);
    // `script` gives envv a terminal; the answer comes from our stdin.
    let bin = assert_cmd::cargo::cargo_bin("envv");
    let run = |answer: &str| {
        let mut c = s.command("script");
        c.args([
            "-qec",
            &format!("{} updatekeys", bin.display()),
            "/dev/null",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().expect("script (util-linux) is installed");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(answer.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run("n\n");
    assert!(
        text(&out.stdout).contains("give them access? [y/N]"),
        "{}",
        text(&out.stdout)
    );
    assert!(!mallory_reads(&s, &mallory, &[]));
    let out = run("y\n");
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(mallory_reads(&s, &mallory, &[]));
    assert!(std::fs::read_to_string(s.repo.join(".git/envv/trusted"))
        .unwrap()
        .contains("mallory"));
}

/// Puts `schema` (YAML under `envv:`, indented by two) into the policy.
fn with_schema(s: &Sandbox, schema: &str) {
    let policy = s.read(".sops.yaml");
    let (head, rules) = policy.split_once("# creation_rules").unwrap();
    s.write(
        ".sops.yaml",
        format!("{head}{schema}# creation_rules{rules}"),
    );
}

#[test]
fn check_with_a_trusted_ref_is_no_pattern_oracle() {
    let s = Sandbox::new();
    s.init_alice();
    with_schema(
        &s,
        "  schema:\n    keys:\n      API_KEY: { pattern: \"^sk_\" }\n",
    );
    s.ok(&["set", "API_KEY=sk_live_b7"]);
    commit_as(&s, "Test User <test@example.com>", "secrets and schema");
    s.git(&["checkout", "-q", "-b", "pr"]);

    // The pull request guesses the value one character at a time through the pattern.
    let guess = |prefix: &str, trusted: bool| {
        let policy = s.git(&["show", "main:.sops.yaml"]);
        s.write(
            ".sops.yaml",
            policy
                .replace("\"^sk_\"", &format!("\"^{prefix}\""))
                .replace("  schema:\n", "  schema:\n    required: [PR_ONLY_KEY]\n"),
        );
        commit_as(&s, "Mallory <mallory@example.com>", "tweak schema");
        let mut args = vec!["check", "--json"];
        if trusted {
            args.extend(["--trusted-ref", "main"]);
        }
        let out = s.run(&args);
        (out.status.code(), text(&out.stdout))
    };
    let (hit, miss) = (guess("sk_live_b", false), guess("sk_live_a", false));
    assert_ne!(
        hit, miss,
        "without a trusted ref the working tree's pattern decides"
    );
    let (hit, miss) = (guess("sk_live_b", true), guess("sk_live_a", true));
    assert_eq!(
        hit, miss,
        "with a trusted ref the pull request's pattern is not used"
    );
    assert_eq!(hit.0, Some(0), "{}", hit.1);
    let v: serde_json::Value = serde_json::from_str(&hit.1).unwrap();
    assert_eq!(v["summary"]["policy"], "main:.sops.yaml");
    assert!(
        !hit.1.contains("PR_ONLY_KEY"),
        "the working tree's schema is not reported"
    );

    // main's own pattern still applies.
    s.git(&["checkout", "-q", "main"]);
    s.ok(&["set", "API_KEY=not_a_stripe_key"]);
    let out = s.run(&["check", "--trusted-ref", "main"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("the value of API_KEY does not match its pattern \"^sk_\""),
        "{}",
        text(&out.stdout)
    );

    let err = s.fails(&["check", "--trusted-ref", "no-such-branch"], 2);
    assert!(
        err.contains("no-such-branch") && err.contains("git fetch"),
        "{err}"
    );
    let help = s.ok(&["check", "--help"]);
    assert!(help.contains("working tree's .sops.yaml"), "{help}");
}

#[test]
fn committed_local_files_and_policy_expansion_import_no_attacker_text() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "API_KEY=sk_live_0123456789"]);
    commit_as(&s, "Test User <test@example.com>", "secrets");
    // The pusher turns expansion on for everyone and commits a ".local override".
    let policy = s.read(".sops.yaml");
    s.write(
        ".sops.yaml",
        policy.replace("  version: 1\n", "  version: 1\n  expand: true\n"),
    );
    s.write(".env.local", "WEBHOOK=https://evil.example/?k=${API_KEY}\n");
    s.git(&["add", "-f", ".env.local"]);
    commit_as(&s, "Mallory <mallory@example.com>", "local defaults");

    let out = s.run(&["exec", "--", "sh", "-c", "printf %s \"${WEBHOOK-unset}\""]);
    let err = text(&out.stderr);
    assert_eq!(text(&out.stdout), "unset", "{err}");
    assert!(
        err.contains("not loading .env.local: git tracks it") && err.contains("expand: true"),
        "{err}"
    );
    let out = s.run(&["export", "--format", "json"]);
    assert!(!text(&out.stdout).contains("evil.example"));
    assert!(text(&out.stderr).contains("not loading .env.local"));

    // The same text in the reader's own (untracked) .local file is loaded, and stays literal
    // unless the reader asks for expansion.
    s.git(&["rm", "-q", "--cached", ".env.local"]);
    s.write(".env.local", "URL=https://api.example/?k=${API_KEY}\n");
    let url = |extra: &[&str], env: Option<&str>| {
        let mut c = s.envv();
        if let Some(v) = env {
            c.env("ENVV_EXPAND", v);
        }
        let out = c
            .arg("exec")
            .args(extra)
            .args(["--", "sh", "-c", "printf %s \"$URL\""])
            .output()
            .unwrap();
        text(&out.stdout)
    };
    assert_eq!(url(&[], None), "https://api.example/?k=${API_KEY}");
    assert_eq!(
        url(&["--expand"], None),
        "https://api.example/?k=sk_live_0123456789"
    );
    assert_eq!(
        url(&[], Some("1")),
        "https://api.example/?k=sk_live_0123456789"
    );
    assert_eq!(url(&[], Some("0")), "https://api.example/?k=${API_KEY}");
}

#[test]
fn the_author_name_shown_cannot_drive_the_terminal() {
    let s = Sandbox::new();
    poisoned_by(&s, "Mal\u{1b}[2J\u{1b}]0;owned\u{7}lory <m@example.com>");
    let err = s.fails(&["updatekeys"], 1);
    assert!(err.contains("by Mal[2J]0;ownedlory"), "{err:?}");
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "{err:?}");
    let out = s.run(&["updatekeys", "--check"]);
    assert!(!text(&out.stdout).contains('\u{1b}'));
}

#[test]
fn a_removed_or_expired_member_brought_back_by_a_commit_is_asked_about_again() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "API_KEY=sk_live_0123456789"]);
    let (bob, bob_pub) = s.identity("bob");
    s.ok(&["member", "add", "bob", &bob_pub]);
    commit_as(&s, "Test User <test@example.com>", "bob joins");
    let with_bob = s.read(".sops.yaml");
    let trusted = || std::fs::read_to_string(s.repo.join(".git/envv/trusted")).unwrap_or_default();
    assert!(trusted().contains(&bob_pub));

    // Removed: forgotten. His own commit putting himself back is a question, not a re-grant.
    s.ok(&["member", "rm", "bob"]);
    commit_as(&s, "Test User <test@example.com>", "bob leaves");
    assert!(!trusted().contains(&bob_pub), "{}", trusted());
    s.write(".sops.yaml", &with_bob);
    let c = commit_as(&s, "Bob <bob@example.com>", "restore config");
    let err = s.fails(&["updatekeys"], 1);
    assert!(err.contains("bob") && err.contains(&c), "{err}");
    assert!(!run_as(&s, &bob, &["get", "API_KEY"]).status.success());

    // Expired: rotated out by updatekeys and forgotten; an extended date is a question too.
    s.ok(&["updatekeys", "--yes"]);
    assert!(run_as(&s, &bob, &["get", "API_KEY"]).status.success());
    let expired = s.read(".sops.yaml").replace(
        &format!("      key: {bob_pub}\n"),
        &format!("      key: {bob_pub}\n      expires: 2020-01-01\n"),
    );
    s.write(".sops.yaml", &expired);
    s.ok(&["updatekeys"]);
    assert!(!run_as(&s, &bob, &["get", "API_KEY"]).status.success());
    assert!(!trusted().contains(&bob_pub), "{}", trusted());
    s.write(".sops.yaml", expired.replace("2020-01-01", "2099-01-01"));
    let err = s.fails(&["updatekeys"], 1);
    assert!(err.contains("bob"), "{err}");
    assert!(!run_as(&s, &bob, &["get", "API_KEY"]).status.success());
}

/// `.env` with a forged age entry for `key` (a copy of the first entry's `enc`: it opens
/// nothing, but the file now lists `key`).
fn forged_entry(file: &str, key: &str) -> String {
    let enc = file
        .lines()
        .find_map(|l| l.strip_prefix("sops_age__list_0__map_enc="))
        .unwrap();
    file.replace(
        "sops_lastmodified=",
        &format!("sops_age__list_9__map_enc={enc}\nsops_age__list_9__map_recipient={key}\nsops_lastmodified="),
    )
}

#[test]
fn merge_of_two_rotations_leaves_out_a_forged_shared_entry() {
    let s = Sandbox::new();
    let (mallory, mallory_pub, _) = poisoned(&s);
    let base = s.read(".env");
    // Both branches rotated (alice's own key only), and both list mallory by a forged entry.
    s.write(".sops.yaml", s.git(&["show", "HEAD~1:.sops.yaml"]));
    s.ok(&["rotate"]);
    let ours = forged_entry(&s.read(".env"), &mallory_pub);
    s.write(".env", &base);
    s.ok(&["rotate"]);
    let theirs = forged_entry(&s.read(".env"), &mallory_pub);
    s.git(&["checkout", "-q", "--", ".sops.yaml"]);
    for (n, t) in [("O", &base), ("A", &ours), ("B", &theirs)] {
        std::fs::write(s.repo.join(n), t).unwrap();
    }
    let out = s.run(&["merge-driver", "O", "A", "B", ".env"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("left out 1 recipient"),
        "{}",
        text(&out.stderr)
    );
    std::fs::copy(s.repo.join("A"), s.repo.join(".env")).unwrap();
    assert_eq!(s.ok(&["get", "API_KEY"]), "sk_live_0123456789");
    assert!(
        !mallory_reads(&s, &mallory, &[]),
        "the merge wrapped the new data key for her"
    );
}

#[test]
fn member_rm_does_not_rotate_for_a_forged_entry_the_policy_never_named() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "API_KEY=sk_live_0123456789"]);
    let (_bob, bob_pub) = s.identity("bob");
    s.ok(&["member", "add", "bob", &bob_pub]);
    commit_as(&s, "Test User <test@example.com>", "bob joins");
    // No policy change at all: only an entry in `.env` naming mallory's key.
    let (mallory, mallory_pub) = s.identity("mallory");
    s.write(".env", forged_entry(&s.read(".env"), &mallory_pub));
    commit_as(&s, "Mallory <mallory@example.com>", "chore: bump deps");
    let out = s.run(&["member", "rm", "bob"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not confirmed") && err.contains(&mallory_pub),
        "{err}"
    );
    assert!(!mallory_reads(&s, &mallory, &[]));
}
