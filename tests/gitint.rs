//! Git integration through the real `git` CLI: the pre-commit hook, textconv diffs, the
//! key-by-key merge driver, and per-key history.

use std::process::Output;

use crate::support::*;

/// Runs git in the repo with the sandbox environment (envv on PATH); returns the output
/// without asserting (for commands expected to fail).
fn git_run(s: &Sandbox, args: &[&str], envs: &[(&str, &str)]) -> Output {
    s.git_cmd(&s.repo)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// alice's repo with the hook installed and git set up, `.env` holding A=1, B=2, committed.
fn repo_with_secrets() -> Sandbox {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["hook", "install"]);
    s.ok(&["git", "setup"]);
    s.ok(&["set", "A=1", "B=2", "C=3"]);
    s.git(&["add", ".sops.yaml", ".gitignore", ".gitattributes", ".env"]);
    s.git(&["commit", "-qm", "secrets"]);
    s
}

#[test]
fn hook_refuses_plaintext_and_accepts_encrypted() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["hook", "install"]);
    s.write(".env", "PORT_unencrypted=8080\nDB_PASSWORD=hunter2\n");
    s.git(&["add", ".sops.yaml", ".env"]);
    let out = git_run(&s, &["commit", "-qm", "plain"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(".env:2") && err.contains("DB_PASSWORD") && err.contains("envv encrypt"),
        "{err}"
    );
    assert!(
        !err.contains("hunter2"),
        "a finding must not print the value: {err}"
    );
    s.ok(&["encrypt", ".env"]);
    s.git(&["add", ".env"]);
    let out = git_run(&s, &["commit", "-qm", "encrypted"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn hook_checks_the_index_not_the_working_tree() {
    let s = repo_with_secrets();
    // Stage a plaintext value, then encrypt only the working tree copy.
    let enc = s.read(".env");
    s.write(".env", format!("NEW=plaintext\n{enc}"));
    s.git(&["add", ".env"]);
    s.ok(&["encrypt", ".env"]);
    assert!(!s.read(".env").contains("NEW=plaintext"));
    let out = git_run(&s, &["commit", "-qm", "sneaky"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("NEW has a plaintext value"),
        "{}",
        stderr(&out)
    );
    // Staging the encrypted version fixes it.
    s.git(&["add", ".env"]);
    s.ok(&["hook", "pre-commit"]);
    // `git commit -a` and `git commit FILE` stage into a temporary index (GIT_INDEX_FILE).
    let enc = s.read(".env");
    s.write(".env", format!("LATE=plaintext\n{enc}"));
    for args in [
        &["commit", "-qam", "all"][..],
        &["commit", "-qm", "path", ".env"][..],
    ] {
        let out = git_run(&s, args, &[]);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("LATE has a plaintext value"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn hook_finds_local_files_identities_and_recipient_drift() {
    let s = repo_with_secrets();
    s.write(".env.production.local", "X=1\n");
    s.write(
        "notes.txt",
        format!(
            "oops {}\n",
            std::fs::read_to_string(s.default_key())
                .unwrap()
                .lines()
                .find(|l| l.starts_with("AGE-SECRET-KEY-"))
                .unwrap()
        ),
    );
    s.git(&["add", "-f", ".env.production.local", "notes.txt"]);
    let err = s.fails(&["hook", "pre-commit"], 1);
    assert!(
        err.contains(".env.production.local: a .local file is staged"),
        "{err}"
    );
    assert!(
        err.contains("notes.txt:1: contains an age secret key"),
        "{err}"
    );
    assert!(
        !err.contains("AGE-SECRET-KEY-1"),
        "the key itself is never printed: {err}"
    );
    s.git(&["rm", "-q", "--cached", ".env.production.local", "notes.txt"]);
    s.ok(&["hook", "pre-commit"]);
    // A second member added to the staged policy by hand, files not re-wrapped.
    let policy = s
        .read(".sops.yaml")
        .replace("    team: [alice]", "    team: [alice, bob]")
        .replace(
            "  groups:",
            &format!("    bob:\n      key: {TEST_KEY_B_PUBLIC}\n  groups:"),
        );
    s.write(".sops.yaml", policy);
    s.git(&["add", ".sops.yaml"]);
    let err = s.fails(&["hook", "pre-commit"], 1);
    assert!(
        err.contains(".env: recipients disagree") && err.contains("envv updatekeys"),
        "{err}"
    );
}

#[test]
fn hook_install_chains_an_existing_hook_and_is_idempotent() {
    let s = Sandbox::new();
    let hooks = s.tmp.path().join("myhooks");
    std::fs::create_dir_all(&hooks).unwrap();
    s.git(&["config", "core.hooksPath", hooks.to_str().unwrap()]);
    let marker = s.tmp.path().join("old-hook-ran");
    std::fs::write(
        hooks.join("pre-commit"),
        format!("#!/bin/sh\ntouch {}\n", marker.display()),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            hooks.join("pre-commit"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }
    let err =
        String::from_utf8(s.envv().args(["hook", "install"]).output().unwrap().stderr).unwrap();
    assert!(err.contains("still runs first"), "{err}");
    assert!(hooks.join("pre-commit.envv-chained").is_file());
    let err =
        String::from_utf8(s.envv().args(["hook", "install"]).output().unwrap().stderr).unwrap();
    assert!(err.contains("already installed"), "{err}");
    s.write("README", "hi\n");
    s.git(&["add", "README"]);
    s.git(&["commit", "-qm", "first"]);
    assert!(marker.exists(), "the chained hook ran");
    assert!(std::fs::read_to_string(hooks.join("pre-commit"))
        .unwrap()
        .contains("envv hook pre-commit"));
}

#[test]
fn freeze_window_refuses_changes_unless_overridden() {
    let s = repo_with_secrets();
    // A window covering the whole week, so the test does not depend on the clock.
    let policy = s.read(".sops.yaml").replace(
        "      readers: [team]",
        "      readers: [team]\n      freeze: [\"Mon 00:00 - Sun 23:59\"]",
    );
    s.write(".sops.yaml", policy);
    s.git(&["add", ".sops.yaml"]);
    s.git(&["commit", "-qm", "freeze"]);
    s.ok(&["set", "A", "changed"]);
    s.git(&["add", ".env"]);
    let out = git_run(&s, &["commit", "-qm", "during freeze"], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("environment default is frozen"),
        "{}",
        stderr(&out)
    );
    let out = git_run(
        &s,
        &["commit", "-qm", "hotfix"],
        &[("ENVV_FREEZE_OVERRIDE", "incident 42")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("freeze override") && stderr(&out).contains("incident 42"),
        "{}",
        stderr(&out)
    );
    // Deleting a frozen environment's file is a change too.
    s.git(&["rm", "-q", ".env"]);
    let err = s.fails(&["hook", "pre-commit"], 1);
    assert!(err.contains(".env: environment default is frozen"), "{err}");
}

#[test]
fn git_setup_is_idempotent_and_diff_shows_changed_keys() {
    let s = repo_with_secrets();
    let attrs = s.read(".gitattributes");
    let err = String::from_utf8(s.envv().args(["git", "setup"]).output().unwrap().stderr).unwrap();
    assert!(err.contains("nothing changed"), "{err}");
    assert_eq!(s.read(".gitattributes"), attrs);
    assert!(attrs.contains(".env.*.local !diff !merge"), "{attrs}");
    s.ok(&["set", "B", "two"]);
    let diff = s.git(&["diff", ".env"]);
    assert!(diff.contains("-B=2") && diff.contains("+B=two"), "{diff}");
    assert!(
        !diff.contains("A=1") || diff.contains(" A=1"),
        "A is unchanged context: {diff}"
    );
    assert!(!diff.contains("sops_mac"), "{diff}");
    // Someone without a key sees which key changed, not the value.
    let out = s
        .envv_as(s.tmp.path())
        .args(["decrypt", "--textconv", ".env"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("B=<encrypted: ") && !text.contains("two"),
        "{text}"
    );
    let again = String::from_utf8(
        s.envv_as(s.tmp.path())
            .args(["decrypt", "--textconv", ".env"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(text, again, "fingerprints are stable");
}

fn branch_edits(s: &Sandbox, ours: &[&str], theirs: &[&str]) -> Output {
    s.git(&["checkout", "-qb", "feature"]);
    s.ok(&[&["set"], theirs].concat());
    s.git(&["commit", "-qam", "theirs"]);
    s.git(&["checkout", "-q", "main"]);
    s.ok(&[&["set"], ours].concat());
    s.git(&["commit", "-qam", "ours"]);
    git_run(s, &["merge", "-q", "--no-edit", "feature"], &[])
}

#[test]
fn merge_of_different_keys_has_no_conflict_and_decrypts_with_sops() {
    let s = repo_with_secrets();
    let out = branch_edits(&s, &["A=ours"], &["B=theirs", "NEW=added"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = s.read(".env");
    assert!(!text.contains("<<<<<<<"), "{text}");
    assert_eq!(s.ok(&["get", "A"]), "ours");
    assert_eq!(s.ok(&["get", "B"]), "theirs");
    assert_eq!(s.ok(&["get", "C"]), "3");
    assert_eq!(s.ok(&["get", "NEW"]), "added");
    assert_eq!(text.matches("sops_mac=").count(), 1);
    if let Some(sops) = sops() {
        let out = run_sops(
            &sops,
            &s.repo,
            &s.default_key(),
            &["decrypt", "--output-type", "json", ".env"],
        );
        assert!(
            out.status.success(),
            "sops: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["A"], "ours");
        assert_eq!(v["B"], "theirs");
        assert_eq!(v["NEW"], "added");
    }
}

#[test]
fn same_key_changed_on_both_sides_conflicts_on_that_key_only() {
    let s = repo_with_secrets();
    let out = branch_edits(
        &s,
        &["A=ours", "C=same"],
        &["A=theirs", "B=theirs", "C=same"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("conflict on A"), "{}", stderr(&out));
    let text = s.read(".env");
    // One conflict on A, and the MAC line (one MAC per side).
    assert_eq!(text.matches("<<<<<<< ours").count(), 2, "{text}");
    let start = text.find("<<<<<<< ours").unwrap();
    let end = text.find(">>>>>>> theirs").unwrap();
    let block = &text[start..end];
    assert_eq!(block.matches("A=ENC[").count(), 2, "both A lines: {block}");
    assert!(!block.contains("B=") && !block.contains("C="), "{block}");
    let mac_block = &text[text.rfind("<<<<<<< ours").unwrap()..];
    assert_eq!(mac_block.matches("sops_mac=").count(), 2, "{mac_block}");
    // Keeping one side of every conflict gives a valid file, with theirs' B merged in.
    for (side, want) in [(1, "ours"), (2, "theirs")] {
        s.write(".env", resolve(&text, side));
        assert_eq!(s.ok(&["get", "A"]), want);
        assert_eq!(s.ok(&["get", "B"]), "theirs");
        assert_eq!(s.ok(&["get", "C"]), "same");
    }
}

/// Keeps side 1 (ours) or 2 (theirs) of every conflict.
fn resolve(text: &str, side: u8) -> String {
    let mut state = 0;
    let mut out = String::new();
    for l in text.lines() {
        match l {
            "<<<<<<< ours" => state = 1,
            "=======" => state = 2,
            ">>>>>>> theirs" => state = 0,
            _ if state == 0 || state == side => {
                out.push_str(l);
                out.push('\n');
            }
            _ => {}
        }
    }
    out
}

#[test]
fn log_lists_the_commits_that_touched_a_key() {
    let s = repo_with_secrets();
    s.ok(&["set", "A", "2"]);
    s.git(&["commit", "-qam", "change A"]);
    s.ok(&["set", "B", "3"]);
    s.git(&["commit", "-qam", "change B"]);
    s.ok(&["rm", "A"]);
    s.git(&["commit", "-qam", "drop A"]);
    let out = s.ok(&["log", "A"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].contains("removed A") && lines[0].contains("(drop A)"),
        "{out}"
    );
    assert!(
        lines[1].contains("changed A") && lines[1].contains("(change A)"),
        "{out}"
    );
    assert!(
        lines[2].contains("added A") && lines[2].contains("Test User"),
        "{out}"
    );
    assert!(!out.contains("change B"), "{out}");
    let json: serde_json::Value = serde_json::from_str(&s.ok(&["log", "--json"])).unwrap();
    let commits = json.as_array().unwrap();
    assert_eq!(commits.len(), 4);
    assert_eq!(commits[1]["changed"], serde_json::json!(["B"]));
    assert_eq!(commits[3]["added"], serde_json::json!(["A", "B", "C"]));
}

#[test]
fn log_shows_a_sops_rotation_as_rotated() {
    let Some(sops) = sops() else { return };
    let s = repo_with_secrets();
    let out = run_sops(&sops, &s.repo, &s.default_key(), &["rotate", "-i", ".env"]);
    assert!(
        out.status.success(),
        "sops rotate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.git(&["commit", "-qam", "rotate"]);
    let log = s.ok(&["log"]);
    let first = log.lines().next().unwrap();
    // sops writes no rotation proof: a reader cannot tell it from a replacement of the file.
    assert!(
        first.contains("rekeyed (no proof: replaced by someone without the previous key, or by sops rotate; no value changed)")
            && first.contains("(rotate)"),
        "{log}"
    );
    // A reader knows A did not change in the rotation; someone without a key cannot tell.
    assert_eq!(s.ok(&["log", "A"]).lines().count(), 1);
    let out = s.envv_as(s.tmp.path()).args(["log", "A"]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains("re-encrypted"), "{text}");
}

#[test]
fn pre_commit_framework_manifest_runs_the_hook() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".pre-commit-hooks.yaml"),
    )
    .unwrap();
    let hooks: Vec<serde_json::Value> = serde_saphyr::from_str(&text).unwrap();
    assert!(hooks.iter().any(|h| h["id"] == "envv"));
    for h in &hooks {
        assert_eq!(h["entry"], "envv hook pre-commit");
        assert_eq!(h["pass_filenames"], false);
    }
    let s = Sandbox::new();
    s.ok(&["hook", "pre-commit"]);
}

#[test]
fn hook_install_in_a_worktree_uses_the_shared_hooks() {
    let s = Sandbox::new();
    s.write("README", "hi\n");
    s.git(&["add", "README"]);
    s.git(&["commit", "-qm", "first"]);
    s.ok(&["hook", "install"]);
    let wt = s.tmp.path().join("wt2");
    s.git(&["worktree", "add", "-q", wt.to_str().unwrap()]);
    let out = s.envv_in(&wt).args(["hook", "install"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already installed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(s.repo.join(".git/hooks/pre-commit").is_file());
}

#[test]
fn merge_driver_without_access_leaves_a_whole_file_conflict() {
    let s = repo_with_secrets();
    let base = s.read(".env");
    s.ok(&["set", "A", "ours"]);
    let ours = s.read(".env");
    s.write("O", &base);
    s.write("A", &ours);
    s.write("B", &base);
    let out = s
        .envv_as(s.tmp.path())
        .args(["merge-driver", "O", "A", "B", ".env"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot merge key by key") && err.contains("ask a reader"),
        "{err}"
    );
    let merged = s.read("A");
    assert!(
        merged.starts_with("<<<<<<< ours\n") && merged.contains(&ours) && merged.contains(&base),
        "{merged}"
    );
    // With the key, the same call merges cleanly (theirs did not change anything).
    s.write("A", &ours);
    s.ok(&["merge-driver", "O", "A", "B", ".env"]);
    assert!(!s.read("A").contains("<<<<<<<"));
}

/// Values whose spelling is twice their length (line breaks) take more room than their
/// ciphertext: textconv sizes its buffer for them (a debug binary panics if it grows).
#[test]
fn textconv_of_values_longer_spelled_than_stored() {
    let s = Sandbox::new();
    s.init_alice();
    let breaks = "\\n".repeat(1000);
    let pairs: Vec<String> = (0..6).map(|n| format!("V{n}=\"{breaks}\"")).collect();
    let mut args = vec!["set"];
    args.extend(pairs.iter().map(String::as_str));
    s.ok(&args);
    let out = s.run(&["decrypt", "--textconv", ".env"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.matches(&format!("=\"{breaks}\"\n")).count(), 6);
}

#[test]
fn the_hook_reads_the_staged_blob_of_a_file_git_converts() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A=test-value-one"]);
    s.git(&["add", "-A"]);
    s.git(&["commit", "-qm", "values"]);
    // Checked out as UTF-16 from now on: the working file's bytes are not the staged blob's,
    // although git's stat test says the file is unchanged.
    s.write(".gitattributes", ".env working-tree-encoding=UTF-16LE\n");
    s.git(&["add", ".gitattributes"]);
    s.git(&["commit", "-qm", "attributes"]);
    std::fs::remove_file(s.repo.join(".env")).unwrap();
    s.git(&["checkout", "--", ".env"]);
    assert!(std::fs::read(s.repo.join(".env")).unwrap().contains(&0));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    s.git(&["update-index", "--refresh"]);
    s.write("notes.txt", "nothing secret\n");
    s.git(&["add", "notes.txt"]);
    let out = s.run(&["hook", "pre-commit"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
