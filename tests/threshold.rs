//! Threshold (break-glass) environments: `env add --threshold`, key groups in the file and in
//! creation_rules, K identities together, sops at K and K−1, and the layout kept by writers.

use std::path::{Path, PathBuf};

use crate::support::{run_sops, sops, Sandbox};

struct Vault {
    s: Sandbox,
    bob: PathBuf,
    carol: PathBuf,
    dave: (PathBuf, String),
}

/// alice (default key), bob (in group ops) and carol; `vault` is read by alice, ops and carol
/// with threshold 2 and holds ROOT.
fn vault() -> Vault {
    let s = Sandbox::new();
    s.init_alice();
    let (bob, bob_pub) = s.identity("bob");
    let (carol, carol_pub) = s.identity("carol");
    let dave = s.identity("dave");
    s.ok(&["member", "add", "bob", &bob_pub, "--to", "team"]);
    s.ok(&["member", "add", "carol", &carol_pub]);
    s.ok(&["group", "add", "ops", "bob"]);
    s.ok(&[
        "env",
        "add",
        "vault",
        "--readers",
        "alice,ops,carol",
        "--threshold",
        "2",
    ]);
    s.envv()
        .args(["--yes", "set", "-e", "vault", "ROOT"])
        .write_stdin("break-glass-root-password")
        .assert()
        .success();
    Vault {
        s,
        bob,
        carol,
        dave,
    }
}

fn alice(v: &Vault) -> PathBuf {
    v.s.default_key()
}

fn get_with(v: &Vault, key: &str, ids: &[&Path]) -> std::process::Output {
    let mut c = v.s.envv();
    for i in ids {
        c.arg("-i").arg(i);
    }
    c.args(["get", "-e", "vault", key]).output().unwrap()
}

fn groups_and_threshold(text: &str) -> (usize, Option<String>) {
    let mut groups = std::collections::BTreeSet::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("sops_key_groups__list_") {
            groups.insert(rest.split("__").next().unwrap().to_string());
        }
    }
    let t = text
        .lines()
        .find_map(|l| l.strip_prefix("sops_shamir_threshold="))
        .map(str::to_string);
    (groups.len(), t)
}

#[test]
fn threshold_environment_needs_k_identities() {
    let v = vault();
    let policy = v.s.read(".sops.yaml");
    assert!(policy.contains("threshold: 2"), "{policy}");
    assert!(policy.contains("shamir_threshold: 2"), "{policy}");
    assert!(policy.contains("key_groups:"), "{policy}");
    assert_eq!(
        groups_and_threshold(&v.s.read(".env.vault")),
        (3, Some("2".into()))
    );

    // One identity: told how many groups it takes.
    let out = get_with(&v, "ROOT", &[&alice(&v)]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs 2 of 3 key groups; your identities open 1"),
        "{err}"
    );
    assert!(out.stdout.is_empty());

    // Two identities, given as two -i.
    let out = get_with(&v, "ROOT", &[&alice(&v), &v.bob]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "break-glass-root-password"
    );

    // Two identities in one key file.
    let both = v.s.tmp.path().join("bob-and-carol.key");
    let text = format!(
        "{}{}",
        std::fs::read_to_string(&v.bob).unwrap(),
        std::fs::read_to_string(&v.carol).unwrap()
    );
    std::fs::write(&both, text).unwrap();
    let out = get_with(&v, "ROOT", &[&both]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sops_opens_a_threshold_file_with_k_identities_and_not_with_fewer() {
    let Some(sops) = sops() else { return };
    let v = vault();
    let both = v.s.tmp.path().join("alice-and-carol.key");
    std::fs::write(
        &both,
        format!(
            "{}{}",
            std::fs::read_to_string(alice(&v)).unwrap(),
            std::fs::read_to_string(&v.carol).unwrap()
        ),
    )
    .unwrap();
    let args = [
        "decrypt",
        "--input-type",
        "dotenv",
        "--output-type",
        "dotenv",
        ".env.vault",
    ];
    let out = run_sops(&sops, &v.s.repo, &both, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ROOT=break-glass-root-password"));
    let out = run_sops(&sops, &v.s.repo, &v.carol, &args);
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("break-glass"));

    // A file sops creates under envv's generated creation_rules gets the same layout.
    v.s.write("plain.vault", "NEW=from-sops\n");
    let out = run_sops(
        &sops,
        &v.s.repo,
        &both,
        &[
            "encrypt",
            "--input-type",
            "dotenv",
            "--output-type",
            "dotenv",
            "--filename-override",
            ".env.vault",
            "plain.vault",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        groups_and_threshold(&String::from_utf8_lossy(&out.stdout)),
        (3, Some("2".into()))
    );
}

#[test]
fn a_new_group_member_is_placed_in_its_group_and_the_threshold_stays() {
    let v = vault();
    let (dave_key, dave_pub) = &v.dave;
    // alice alone cannot re-split the data key: it takes two groups.
    let err =
        v.s.fails(&["member", "add", "dave", dave_pub, "--to", "ops"], 1);
    assert!(err.contains("needs 2 of 3 key groups"), "{err}");
    let mut c = v.s.envv();
    c.arg("-i").arg(alice(&v)).arg("-i").arg(&v.bob);
    c.args(["member", "add", "dave", dave_pub, "--to", "ops"]);
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        groups_and_threshold(&v.s.read(".env.vault")),
        (3, Some("2".into()))
    );
    // dave holds ops's share: with carol's he opens it; alone he does not.
    let out = get_with(&v, "ROOT", &[dave_key, &v.carol]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = get_with(&v, "ROOT", &[dave_key]);
    assert_eq!(out.status.code(), Some(1));
    // dave and bob are the same group: together still one share.
    let out = get_with(&v, "ROOT", &[dave_key, &v.bob]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn lowering_the_threshold_needs_flatten() {
    let v = vault();
    let mut c = v.s.envv();
    c.arg("-i").arg(alice(&v)).arg("-i").arg(&v.bob);
    c.args([
        "env",
        "readers",
        "vault",
        "alice,ops,carol",
        "--threshold",
        "3",
    ]);
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        groups_and_threshold(&v.s.read(".env.vault")),
        (3, Some("3".into()))
    );
    let before = v.s.read(".env.vault");
    let mut c = v.s.envv();
    c.args(["-i"])
        .arg(alice(&v))
        .arg("-i")
        .arg(&v.bob)
        .arg("-i")
        .arg(&v.carol)
        .args([
            "env",
            "readers",
            "vault",
            "alice,ops,carol",
            "--threshold",
            "2",
        ]);
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--flatten"));
    assert_eq!(v.s.read(".env.vault"), before);
    assert!(v.s.read(".sops.yaml").contains("threshold: 3"));

    let mut c = v.s.envv();
    c.args(["--flatten", "-i"])
        .arg(alice(&v))
        .arg("-i")
        .arg(&v.bob)
        .arg("-i")
        .arg(&v.carol)
        .args([
            "env",
            "readers",
            "vault",
            "alice,ops,carol",
            "--threshold",
            "2",
        ]);
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        groups_and_threshold(&v.s.read(".env.vault")),
        (3, Some("2".into()))
    );
}

#[test]
fn a_threshold_survives_a_merge() {
    let v = vault();
    let s = &v.s;
    s.ok(&["git", "setup"]);
    s.git(&["add", "-A"]);
    s.git(&["commit", "-qm", "vault"]);
    let both = s.tmp.path().join("alice-and-bob.key");
    std::fs::write(
        &both,
        format!(
            "{}{}",
            std::fs::read_to_string(alice(&v)).unwrap(),
            std::fs::read_to_string(&v.bob).unwrap()
        ),
    )
    .unwrap();
    let set = |key: &str, value: &str| {
        s.envv()
            .env("ENVV_AGE_KEY_FILE", &both)
            .args(["set", "-e", "vault", key])
            .write_stdin(value)
            .assert()
            .success();
    };
    s.git(&["checkout", "-qb", "one"]);
    set("FROM_ONE", "value-one");
    s.git(&["commit", "-qam", "one"]);
    s.git(&["checkout", "-q", "main"]);
    set("FROM_MAIN", "value-main");
    s.git(&["commit", "-qam", "main"]);
    let out = s
        .git_cmd(&s.repo)
        .args(["merge", "-q", "--no-edit", "one"])
        .env("ENVV_AGE_KEY_FILE", &both)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = s.read(".env.vault");
    assert_eq!(groups_and_threshold(&text), (3, Some("2".into())));
    for (k, want) in [("FROM_ONE", "value-one"), ("FROM_MAIN", "value-main")] {
        let out = get_with(&v, k, &[&both]);
        assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    }
}

#[test]
fn a_threshold_needs_enough_entries() {
    let s = Sandbox::new();
    s.init_alice();
    let err = s.fails(
        &[
            "env",
            "add",
            "vault",
            "--readers",
            "alice",
            "--threshold",
            "2",
        ],
        2,
    );
    assert!(err.contains("threshold"), "{err}");
    assert!(!s.read(".sops.yaml").contains("vault"));
}

#[test]
fn one_reader_in_enough_groups_to_open_alone_is_refused() {
    let v = vault();
    let before = v.s.read(".env.vault");
    // bob is in ops, and named again: two of the groups, and two open the file.
    let mut c = v.s.envv();
    c.arg("-i").arg(alice(&v)).arg("-i").arg(&v.bob);
    c.args(["--yes", "env", "readers", "vault", "ops,bob,carol"]);
    let out = c.output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is in 2 key groups"), "{err}");
    assert_eq!(v.s.read(".env.vault"), before);
}
