//! Membership: member add/rm/ls/approve/deny, join, updatekeys, rotate, env and group commands.
//! alice is the sandbox's default identity; bob (age) and carol (ssh-ed25519) use `--identity`
//! with no default key file, so only their own key takes part.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::*;

/// Runs envv with only `key` as identity (no default key files).
fn run_as(s: &Sandbox, key: &Path, args: &[&str]) -> Output {
    s.envv()
        .env("XDG_CONFIG_HOME", s.tmp.path().join("no-keys"))
        .arg("-i")
        .arg(key)
        .args(args)
        .output()
        .unwrap()
}

fn ok_as(s: &Sandbox, key: &Path, args: &[&str]) -> String {
    let out = run_as(s, key, args);
    assert!(
        out.status.success(),
        "envv {args:?} as {}: {}",
        key.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn code_as(s: &Sandbox, key: &Path, args: &[&str]) -> (i32, String) {
    let out = run_as(s, key, args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs envv as alice; returns (code, stdout, stderr).
fn run3(s: &Sandbox, args: &[&str]) -> (i32, String, String) {
    let out = s.run(args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An ssh-ed25519 identity: (private key path, public key line).
fn ssh_identity(s: &Sandbox, name: &str) -> (PathBuf, String) {
    let path = s.tmp.path().join(name);
    let st = std::process::Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            &format!("{name}@test"),
            "-f",
        ])
        .arg(&path)
        .status()
        .expect("ssh-keygen is installed");
    assert!(st.success());
    let public = std::fs::read_to_string(path.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string();
    (path, public)
}

/// The lines of a file that hold values and the MAC/timestamp (all but the recipient entries).
fn value_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with("sops_age__"))
        .map(str::to_string)
        .collect()
}

fn value_of<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap()
}

#[test]
fn add_rewraps_only_and_rm_rotates_and_lists_what_was_readable() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A=1", "B=two", "C=three"]);
    let (bob, bob_pub) = s.identity("bob");
    let (carol, carol_pub) = ssh_identity(&s, "carol");
    let before = s.read(".env");

    let out = s
        .envv()
        .args(["member", "add", "bob", &bob_pub])
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("re-wrapped for bob") && err.contains("default (.env): alice, bob"),
        "{err}"
    );
    let after = s.read(".env");
    assert_eq!(
        value_lines(&before),
        value_lines(&after),
        "values, MAC and timestamp unchanged by a re-wrap"
    );
    assert_ne!(before, after);
    assert_eq!(ok_as(&s, &bob, &["get", "A"]), "1");

    s.ok(&["member", "add", "carol", &carol_pub, "--to", "default"]);
    assert_eq!(value_lines(&before), value_lines(&s.read(".env")));
    assert_eq!(ok_as(&s, &carol, &["get", "B"]), "two");
    assert!(s.read(".sops.yaml").contains("ssh-ed25519"));

    s.git(&["add", "-A"]);
    s.git(&["commit", "-qm", "bob and carol"]);
    let (code, stdout, stderr) = run3(&s, &["member", "rm", "bob"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout, "default (.env): A, B, C\n",
        "exactly the keys bob could read"
    );
    assert!(
        stderr.contains("rotate them at their providers")
            && stderr.contains("default (.env): alice, carol"),
        "{stderr}"
    );
    let rotated = s.read(".env");
    for k in ["A", "B", "C"] {
        assert_ne!(
            value_of(&after, k),
            value_of(&rotated, k),
            "{k} re-encrypted"
        );
    }
    assert_eq!(
        code_as(&s, &bob, &["get", "A"]).0,
        1,
        "bob is locked out of the new file"
    );
    std::fs::write(s.repo.join("old.env"), s.git(&["show", "HEAD:.env"])).unwrap();
    assert_eq!(
        ok_as(&s, &bob, &["-f", "old.env", "get", "A"]),
        "1",
        "the old revision still opens for bob"
    );
    assert_eq!(ok_as(&s, &carol, &["get", "C"]), "three");
    assert_eq!(s.ok(&["get", "A"]), "1");
    s.ok(&["updatekeys", "--check"]);

    if let Some(sops) = sops() {
        let out = run_sops(&sops, &s.repo, &s.default_key(), &["decrypt", ".env"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "A=1\nB=two\nC=three\n"
        );
    }
}

#[test]
fn environments_groups_expiry_and_updatekeys_check() {
    let s = Sandbox::new();
    s.init_alice();
    let (bob, bob_pub) = s.identity("bob");
    s.ok(&["member", "add", "bob", &bob_pub]);
    s.ok(&["group", "add", "ops", "alice"]);
    let out = s
        .envv()
        .args(["env", "add", "production", "--readers", "ops"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("production (.env.production): alice"));
    s.ok(&["set", "SHARED=dev"]);
    s.ok(&["-e", "production", "set", "STRIPE=sk_live"]);
    assert_eq!(ok_as(&s, &bob, &["get", "SHARED"]), "dev");
    let (code, err) = code_as(&s, &bob, &["-e", "production", "get", "STRIPE"]);
    assert_eq!(code, 1, "a member of team cannot read production");
    assert!(
        err.contains("alice") && err.contains(".env.production"),
        "{err}"
    );
    let err = s.fails(&["-e", "staging", "set", "X=1"], 2);
    assert!(err.contains("envv env add staging"), "{err}");
    assert!(s
        .ok(&["env", "ls"])
        .contains("production  .env.production  readers: ops"));
    assert_eq!(s.ok(&["group", "ls"]), "ops: alice\nteam: alice, bob\n");
    s.ok(&["updatekeys", "--check"]);

    // A hand edit drops bob from the policy: the committed policy still names his key.
    s.git(&["add", "-A"]);
    s.git(&["commit", "-qm", "policy"]);
    let policy = s.read(".sops.yaml");
    let dropped = policy
        .replace("team: [alice, bob]", "team: [alice]")
        .replace(&format!("    bob:\n      key: {bob_pub}\n"), "");
    assert!(
        !dropped
            .split("\ncreation_rules:")
            .next()
            .unwrap()
            .contains(&bob_pub),
        "{dropped}"
    );
    s.write(".sops.yaml", dropped);
    let out = s.run(&["updatekeys", "--check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("extra:   bob"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    s.ok(&["updatekeys", "--check", "-e", "production"]);
    s.write(".sops.yaml", &policy);

    // bob's access ends: a hand edit of the policy, then updatekeys.
    let policy = s.read(".sops.yaml");
    let edited = policy.replace(
        &format!("      key: {bob_pub}\n"),
        &format!("      key: {bob_pub}\n      expires: 2020-01-31\n"),
    );
    assert_ne!(policy, edited);
    s.write(".sops.yaml", &edited);
    assert!(s.ok(&["member", "ls"]).contains("EXPIRED 2020-01-31"));
    let ls: serde_json::Value = serde_json::from_str(&s.ok(&["member", "ls", "--json"])).unwrap();
    assert_eq!(ls["members"][1]["name"], "bob");
    assert_eq!(ls["members"][1]["expired"], true);
    let out = s.run(&["updatekeys", "--check"]);
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains(".env (default)")
            && report.contains("extra:   bob")
            && !report.contains(".env.production"),
        "{report}"
    );
    let no_identity = s
        .envv()
        .env("XDG_CONFIG_HOME", s.tmp.path().join("no-keys"))
        .args(["updatekeys", "--check"])
        .output()
        .unwrap();
    assert_eq!(
        no_identity.status.code(),
        Some(1),
        "--check needs no identity"
    );
    assert_eq!(String::from_utf8_lossy(&no_identity.stdout), report);
    assert_eq!(
        ok_as(&s, &bob, &["get", "SHARED"]),
        "dev",
        "nothing changed before updatekeys"
    );
    s.ok(&["updatekeys"]);
    assert_eq!(
        code_as(&s, &bob, &["get", "SHARED"]).0,
        1,
        "expired member removed"
    );
    assert_eq!(s.ok(&["get", "SHARED"]), "dev");
    s.ok(&["updatekeys", "--check"]);

    // rotate: new data key for one environment only.
    let prod = s.read(".env.production");
    let dev = s.read(".env");
    s.ok(&["rotate", "-e", "production"]);
    assert_ne!(
        value_of(&prod, "STRIPE"),
        value_of(&s.read(".env.production"), "STRIPE")
    );
    assert_eq!(dev, s.read(".env"));
    assert_eq!(s.ok(&["-e", "production", "get", "STRIPE"]), "sk_live");
}

#[test]
fn a_refused_change_leaves_every_byte_in_place() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A=1"]);
    let (bob, bob_pub) = s.identity("bob");
    let (_carol, carol_pub) = s.identity("carol");
    s.ok(&["member", "add", "bob", &bob_pub, "--to", "default"]);
    s.ok(&["env", "add", "production", "--readers", "bob"]);
    ok_as(&s, &bob, &["-e", "production", "set", "P=secret"]);
    let snapshot = || [".sops.yaml", ".env", ".env.production"].map(|f| s.read(f));
    let before = snapshot();

    let err = s.fails(&["member", "add", "carol", "age1bad"], 2);
    assert!(err.contains("key of carol"), "{err}");
    let err = s.fails(&["env", "readers", "production", "ghost"], 2);
    assert!(
        err.contains("envv.environments.production.readers") && err.contains("ghost"),
        "{err}"
    );
    s.fails(
        &["member", "add", "carol", &carol_pub, "--to", "nowhere"],
        2,
    );
    s.fails(&["member", "add", "carol", &bob_pub], 2);
    assert_eq!(before, snapshot());

    // alice cannot open .env.production: the whole change is refused, .env included.
    let err = s.fails(
        &[
            "member",
            "add",
            "carol",
            &carol_pub,
            "--to",
            "team,production",
        ],
        1,
    );
    assert!(
        err.contains(".env.production") && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(before, snapshot());

    // A crash after the temp files are written and before any rename changes nothing.
    let out = s
        .envv()
        .env("ENVV_FAULT_INJECT", "membership-before-rename")
        .args(["member", "add", "carol", &carol_pub])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(before, snapshot());
    s.ok(&["member", "add", "carol", &carol_pub]);
    assert!(!std::fs::read_dir(&s.repo)
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().ends_with(".envv-tmp")));

    // Refusals that protect access.
    assert!(s.fails(&["member", "rm", "alice"], 2).contains("is you"));
    assert!(s
        .fails(&["member", "rm", "bob"], 2)
        .contains("last current reader of production"));
    assert_eq!(before[2], s.read(".env.production"));
    let (code, stdout, stderr) = run3(&s, &["member", "rm", "bob", "--force"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        "default (.env): A\nproduction (.env.production): P\n"
    );
    assert!(
        !s.repo.join(".env.production").exists() && !s.read(".sops.yaml").contains("production"),
        "{stderr}"
    );
    s.ok(&["updatekeys", "--check"]);
}

#[test]
fn join_then_approve_or_deny() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A=1"]);
    let (carol, carol_pub) = s.identity("carol");
    let (dave, _) = s.identity("dave");
    let err = String::from_utf8(run_as(&s, &carol, &["join", "--name", "carol"]).stderr).unwrap();
    assert!(err.contains("envv member approve carol"), "{err}");
    ok_as(&s, &dave, &["join", "--name", "dave"]);
    let ls = s.ok(&["member", "ls"]);
    assert!(
        ls.contains("pending") && ls.contains("carol") && ls.contains("dave"),
        "{ls}"
    );
    assert_eq!(
        code_as(&s, &carol, &["get", "A"]).0,
        1,
        "pending is not a reader"
    );
    // The request's key comes from the policy: approving asks about it, shown in full.
    let err = s.fails(&["member", "approve", "carol"], 1);
    assert!(
        err.contains("not confirmed") && err.contains(&carol_pub),
        "{err}"
    );
    assert_eq!(code_as(&s, &carol, &["get", "A"]).0, 1);
    s.ok(&["member", "approve", "carol", "--yes"]);
    assert_eq!(ok_as(&s, &carol, &["get", "A"]), "1");
    let before = s.read(".env");
    let (code, _, stderr) = run3(&s, &["member", "rm", "carol", "--no-rotate"]);
    assert_eq!(code, 0);
    assert!(
        stderr.contains("warning: --no-rotate") && stderr.contains("data key kept"),
        "{stderr}"
    );
    assert_eq!(
        value_lines(&before),
        value_lines(&s.read(".env")),
        "no value re-encrypted"
    );
    assert_eq!(code_as(&s, &carol, &["get", "A"]).0, 1);
    s.ok(&["member", "deny", "dave"]);
    let policy = s.read(".sops.yaml");
    assert!(
        !policy.contains("dave") && !policy.contains("pending"),
        "{policy}"
    );
    assert_eq!(code_as(&s, &dave, &["get", "A"]).0, 1);
}

#[test]
fn sops_reads_envv_membership_changes_and_envv_reads_sops_updatekeys() {
    let Some(sops) = sops() else { return };
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A=1", "B=2"]);
    let alice_only = s.read(".env");
    let (bob, bob_pub) = s.identity("bob");
    s.ok(&["member", "add", "bob", &bob_pub]);
    let out = run_sops(&sops, &s.repo, &bob, &["decrypt", ".env"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A sops user re-syncs a file that lacks bob, from the generated creation_rules.
    s.write(".env", &alice_only);
    assert_eq!(s.run(&["updatekeys", "--check"]).status.code(), Some(1));
    let out = run_sops(
        &sops,
        &s.repo,
        &s.default_key(),
        &["updatekeys", "-y", ".env"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.ok(&["updatekeys", "--check"]);
    assert_eq!(ok_as(&s, &bob, &["get", "B"]), "2");
    assert_eq!(s.ok(&["get", "A"]), "1");
}

#[test]
fn narrowing_readers_lists_the_secrets_to_rotate_at_providers() {
    let s = Sandbox::new();
    s.init_alice();
    let (_bob, bob_pub) = s.identity("bob");
    s.ok(&["member", "add", "bob", &bob_pub]);
    s.ok(&["env", "add", "production"]);
    s.ok(&["set", "-e", "production", "P=1", "Q=2"]);
    s.ok(&["group", "add", "ops", "alice"]);
    let out = s.run(&["env", "readers", "production", "ops"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bob could read: P, Q") && err.contains("rotate these at their providers"),
        "{err}"
    );
}
