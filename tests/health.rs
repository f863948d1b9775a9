//! `envv check`, `envv diff`, `envv status` on temp repositories with crafted git history.

use crate::support::*;

/// A policy with alice (the sandbox's default identity), bob (TEST key B) and the given
/// environments and schema, written by hand as a user would.
fn write_policy(s: &Sandbox, alice: &str, bob_extra: &str, envs: &str, schema: &str) {
    let text = format!(
        "envv:\n  version: 1\n  members:\n    alice: {{ key: {alice} }}\n    bob: {{ key: {TEST_KEY_B_PUBLIC}{bob_extra} }}\n  environments:\n{envs}{schema}"
    );
    s.write(".sops.yaml", text);
}

/// `git add -A && git commit` with author and committer dates set; returns the commit id.
fn commit_at(s: &Sandbox, date: &str, msg: &str) -> String {
    s.git(&["add", "-A"]);
    let out = s
        .git_cmd(&s.repo)
        .args(["commit", "-q", "-m", msg])
        .env("GIT_AUTHOR_DATE", date)
        .env("GIT_COMMITTER_DATE", date)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "commit failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.git(&["rev-parse", "HEAD"]).trim().to_string()
}

/// Runs `envv ARGS --json` expecting exit `code`; returns the parsed JSON.
fn json(s: &Sandbox, args: &[&str], code: i32) -> serde_json::Value {
    let out = s.run(args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "envv {args:?}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// (level, kind, env, key) of every finding.
fn kinds(v: &serde_json::Value) -> Vec<(String, String, String, String)> {
    let s = |x: &serde_json::Value| x.as_str().unwrap_or("").to_string();
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (s(&f["level"]), s(&f["kind"]), s(&f["env"]), s(&f["key"])))
        .collect()
}

fn has(v: &serde_json::Value, level: &str, kind: &str, env: &str, key: &str) -> bool {
    kinds(v)
        .iter()
        .any(|(l, k, e, y)| l == level && k == kind && e == env && y == key)
}

#[test]
fn clean_repository_passes_with_a_stable_json_shape() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A=1", "B=2"]);
    let out = s.ok(&["check"]);
    assert!(
        out.contains("default (.env)\n  ok\n")
            && out.contains("check passed: 1 environment, no findings"),
        "{out}"
    );
    let v = json(&s, &["check", "--json"], 0);
    assert_eq!(v["findings"], serde_json::json!([]));
    assert_eq!(
        v["summary"],
        serde_json::json!({ "errors": 0, "warnings": 0, "notes": 0, "environments": ["default"], "ok": true, "policy": ".sops.yaml" })
    );
    assert!(s
        .fails(&["check", "-e", "nope"], 2)
        .contains("not declared"));
}

#[test]
fn schema_violations_are_errors_and_never_show_values() {
    let s = Sandbox::new();
    let alice = s.init_alice();
    write_policy(
        &s,
        &alice,
        "",
        "    default: { file: .env, readers: [alice] }\n",
        "  schema:\n    required: [DATABASE_URL, STRIPE_KEY]\n    naming: \"^[A-Z][A-Z0-9_]*$\"\n    keys:\n      STRIPE_KEY: { pattern: \"^sk_(live|test)_\", description: Stripe secret key }\n      PORT: { pattern: \"^[0-9]+$\" }\n",
    );
    s.ok(&[
        "set",
        "STRIPE_KEY=pk_live_leakme",
        "PORT=8080",
        "lower_key=x",
        "DATABASE_URL=",
    ]);
    let v = json(&s, &["check", "--json"], 1);
    assert!(
        has(&v, "error", "missing_required", "default", "DATABASE_URL"),
        "{v:#}"
    );
    assert!(
        has(&v, "error", "pattern", "default", "STRIPE_KEY"),
        "{v:#}"
    );
    assert!(has(&v, "error", "naming", "default", "lower_key"), "{v:#}");
    assert!(!has(&v, "error", "pattern", "default", "PORT"), "{v:#}");
    assert_eq!(v["summary"]["errors"], 3);
    assert_eq!(v["summary"]["ok"], false);
    let f = &v["findings"][0];
    for field in [
        "level", "kind", "env", "file", "key", "message", "hint", "commit", "date",
    ] {
        assert!(f.get(field).is_some(), "finding lacks {field}: {f}");
    }
    let out = s.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("STRIPE_KEY does not match its pattern")
            && text.contains("(Stripe secret key)"),
        "{text}"
    );
    assert!(
        text.contains(".env:3: key name lower_key does not match schema.naming"),
        "{text}"
    );
    assert!(
        text.contains("check failed: 3 errors, 0 warnings, 0 notes in 1 environment"),
        "{text}"
    );
    assert!(!text.contains("leakme") && !v.to_string().contains("leakme"));
    s.ok(&["set", "STRIPE_KEY=sk_test_ok", "DATABASE_URL=postgres://x"]);
    s.ok(&["rm", "lower_key"]);
    s.ok(&["check"]);
}

#[test]
fn invalid_schema_is_rejected_with_the_field() {
    let s = Sandbox::new();
    let alice = s.init_alice();
    write_policy(
        &s,
        &alice,
        "",
        "    default: { file: .env, readers: [alice] }\n",
        "  schema:\n    keys:\n      A: { pattern: \"([\" }\n",
    );
    let err = s.fails(&["check"], 2);
    assert!(
        err.contains(".sops.yaml:10")
            && err.contains("schema.keys.A.pattern: invalid regex: unclosed"),
        "{err}"
    );
    write_policy(
        &s,
        &alice,
        "",
        "    default: { file: .env, readers: [alice] }\n",
        "  schema:\n    keys:\n      A: { environments: [prod] }\n",
    );
    assert!(s
        .fails(&["check"], 2)
        .contains("schema.keys.A.environments: unknown environment \"prod\""));
}

#[test]
fn drift_and_missing_files_are_warnings_that_fail_only_with_strict() {
    let s = Sandbox::new();
    let alice = s.init_alice();
    write_policy(
        &s,
        &alice,
        "",
        "    default: { file: .env, readers: [alice] }\n    staging: { file: .env.staging, readers: [alice] }\n    preview: { file: .env.preview, readers: [alice] }\n",
        "  schema:\n    keys:\n      DEBUG_ONLY: { environments: [default] }\n",
    );
    s.ok(&["set", "A=1", "B=2", "DEBUG_ONLY=1"]);
    s.ok(&["set", "-e", "staging", "A=1", "C=3"]);
    let v = json(&s, &["check", "--json"], 0);
    assert!(has(&v, "warning", "drift", "staging", "B"), "{v:#}");
    assert!(has(&v, "warning", "drift", "default", "C"), "{v:#}");
    assert!(has(&v, "warning", "missing_file", "preview", ""), "{v:#}");
    assert!(
        !kinds(&v).iter().any(|f| f.3 == "DEBUG_ONLY"),
        "a key scoped to one environment is not drift: {v:#}"
    );
    assert_eq!(v["summary"]["warnings"], 3);
    let out = s.ok(&["check"]);
    assert!(
        out.contains("B is set in default but not in .env.staging")
            && out.contains("warnings fail only with --strict"),
        "{out}"
    );
    json(&s, &["check", "--json", "--strict"], 1);
    let v = json(&s, &["check", "-e", "staging", "--json"], 0);
    assert_eq!(
        kinds(&v),
        vec![(
            "warning".into(),
            "drift".into(),
            "staging".into(),
            "B".into()
        )]
    );
}

#[test]
fn max_age_uses_the_commit_that_last_changed_each_value() {
    let s = Sandbox::new();
    let alice = s.init_alice();
    write_policy(
        &s,
        &alice,
        "",
        "    default: { file: .env, readers: [alice] }\n",
        "  schema:\n    keys:\n      OLD: { max_age: 30d }\n      MID: { max_age: 30d }\n      FRESH: { max_age: 30d }\n      EDITED: { max_age: 30d }\n      NO_LIMIT: {}\n",
    );
    s.ok(&["set", "OLD=1", "MID=1", "EDITED=1", "NO_LIMIT=1", "FRESH=1"]);
    let old = commit_at(&s, "2020-01-02T10:00:00Z", "first secrets");
    s.ok(&["set", "MID=2"]);
    let mid = commit_at(&s, "2021-06-01T10:00:00Z", "rotate MID");
    // Recent commits that change FRESH only: OLD and MID keep their ciphertext, so their age stays.
    let recent = format!(
        "{} +0000",
        time::OffsetDateTime::now_utc().unix_timestamp() - 2 * 86400
    );
    for v in ["FRESH=2", "FRESH=3", "FRESH=4"] {
        s.ok(&["set", v]);
        commit_at(&s, &recent, "rotate FRESH");
    }
    let max_age = |k: &str| {
        (
            "error".to_string(),
            "max_age".to_string(),
            "default".to_string(),
            k.to_string(),
        )
    };
    let v = json(&s, &["check", "--json"], 1);
    assert_eq!(
        kinds(&v),
        vec![max_age("EDITED"), max_age("MID"), max_age("OLD")],
        "{v:#}"
    );
    // EDITED changed in the working tree, not committed yet: new, not old.
    s.ok(&["set", "EDITED=2"]);
    let v = json(&s, &["check", "--json"], 1);
    assert_eq!(kinds(&v), vec![max_age("MID"), max_age("OLD")], "{v:#}");
    assert_eq!(v["findings"][0]["commit"], mid.as_str());
    assert_eq!(v["findings"][0]["date"], "2021-06-01");
    let f = &v["findings"][1];
    assert_eq!(f["commit"], old.as_str());
    assert_eq!(f["date"], "2020-01-02");
    let out = s.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!(
            "OLD last changed 2020-01-02 in commit {} by Test User",
            &old[..8]
        )) && text.contains("max_age 30d"),
        "{text}"
    );
    // Outside git there is no history: said so, not silently passed.
    std::fs::remove_dir_all(s.repo.join(".git")).unwrap();
    let v = json(&s, &["check", "--json"], 0);
    assert_eq!(
        kinds(&v),
        vec![(
            "note".into(),
            "not_checked".into(),
            "default".into(),
            "".into()
        )],
        "{v:#}"
    );
    assert!(v["findings"][0]["message"]
        .as_str()
        .unwrap()
        .contains("not a git repository"));
}

#[test]
fn expired_members_and_files_out_of_sync_with_the_policy() {
    let s = Sandbox::new();
    let alice = s.init_alice();
    let envs = "    default: { file: .env, readers: [alice, bob] }\n    archive: { file: .env.archive, readers: [bob] }\n";
    write_policy(&s, &alice, "", envs, "");
    s.ok(&["set", "--yes", "A=1"]);
    s.ok(&["check"]);
    // bob's access ends: the policy says so, the file still has him.
    write_policy(&s, &alice, ", expires: 2020-01-01", envs, "");
    let v = json(&s, &["check", "--json"], 1);
    assert!(has(&v, "warning", "expired_member", "", ""), "{v:#}");
    assert!(
        has(&v, "error", "recipients_out_of_sync", "default", ""),
        "{v:#}"
    );
    assert!(has(&v, "error", "no_readers", "archive", ""), "{v:#}");
    let out = String::from_utf8(s.run(&["check"]).stdout).unwrap();
    assert!(
        out.contains("policy (.sops.yaml)") && out.contains("member bob expired on 2020-01-01"),
        "{out}"
    );
    assert!(
        out.contains(".env is out of sync with .sops.yaml: still readable by bob")
            && out.contains("next: `envv updatekeys`"),
        "{out}"
    );
}

#[test]
fn an_environment_the_caller_cannot_read_is_reported_not_skipped() {
    let s = Sandbox::new();
    let alice = s.init_alice();
    write_policy(
        &s,
        &alice,
        "",
        "    default: { file: .env, readers: [alice] }\n    production: { file: .env.production, readers: [bob] }\n",
        "  schema:\n    keys:\n      TOKEN: { pattern: \"^tok_\" }\n",
    );
    s.ok(&["set", "TOKEN=tok_1"]);
    // alice can create production's file (for bob) but not read it back.
    s.ok(&["set", "--yes", "-e", "production", "TOKEN=bad"]);
    let v = json(&s, &["check", "--json"], 0);
    assert_eq!(
        kinds(&v),
        vec![(
            "warning".into(),
            "not_checked".into(),
            "production".into(),
            "".into()
        )],
        "{v:#}"
    );
    assert!(v["findings"][0]["message"]
        .as_str()
        .unwrap()
        .contains("readers: bob"));
    json(&s, &["check", "--json", "--strict"], 1);
    // With bob's identity the pattern is checked.
    let bob = fixtures().join("keys_b.txt");
    let v = json(
        &s,
        &[
            "check",
            "--json",
            "-e",
            "production",
            "-i",
            bob.to_str().unwrap(),
        ],
        1,
    );
    assert!(has(&v, "error", "pattern", "production", "TOKEN"), "{v:#}");
    // diff falls back to key names.
    let out = s.run(&["diff", "default", "production"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("values not compared"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 in both (values not compared)"));
}

#[test]
fn diff_lists_keys_and_keyed_hashes_never_values() {
    let s = Sandbox::new();
    let alice = s.init_alice();
    write_policy(&s, &alice, "", "    default: { file: .env, readers: [alice] }\n    staging: { file: .env.staging, readers: [alice, bob] }\n", "");
    s.ok(&[
        "set",
        "SAME=shared-secret",
        "DIFF=value-one",
        "ONLY_A=only-in-a",
    ]);
    s.ok(&[
        "set",
        "--yes",
        "-e",
        "staging",
        "SAME=shared-secret",
        "DIFF=value-two",
        "ONLY_B=only-in-b",
    ]);
    let out = s.ok(&["diff", "default", "staging"]);
    for v in [
        "shared-secret",
        "value-one",
        "value-two",
        "only-in-a",
        "only-in-b",
    ] {
        assert!(!out.contains(v), "value {v} shown: {out}");
    }
    assert!(
        out.contains("ONLY_A")
            && out.contains("only in default")
            && out.contains("only in staging"),
        "{out}"
    );
    assert!(
        out.contains("1 only in default, 1 only in staging, 1 different, 1 same"),
        "{out}"
    );
    assert!(!out.contains("SAME"), "same keys only with --all: {out}");
    let v = json(&s, &["diff", "default", "staging", "--json", "--all"], 0);
    let row = |k: &str| {
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["key"] == k)
            .unwrap()
            .clone()
    };
    assert_eq!(row("SAME")["status"], "same");
    assert_eq!(row("SAME")["hash_a"], row("SAME")["hash_b"]);
    assert_eq!(row("DIFF")["status"], "different");
    assert_ne!(row("DIFF")["hash_a"], row("DIFF")["hash_b"]);
    assert_eq!(row("ONLY_A")["status"], "only_a");
    assert_eq!(row("ONLY_B")["status"], "only_b");
    assert_eq!(v["values_compared"], true);
    assert_eq!(
        v["summary"],
        serde_json::json!({ "only_a": 1, "only_b": 1, "different": 1, "same": 1, "not_compared": 0 })
    );
    // Same hashes in the other direction; --exit-code reports differences.
    let back = json(
        &s,
        &[
            "diff",
            "staging",
            "default",
            "--json",
            "--all",
            "--exit-code",
        ],
        1,
    );
    let h = back["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == "SAME")
        .unwrap()["hash_a"]
        .clone();
    assert_eq!(h, row("SAME")["hash_a"]);
    s.ok(&["diff", "default", "default", "--exit-code"]);
    assert!(s
        .fails(&["diff", "default", "nope"], 2)
        .contains("not declared"));
}

#[test]
fn status_shows_access_counts_and_next_steps() {
    let s = Sandbox::new();
    let alice = s.init_alice();
    write_policy(
        &s,
        &alice,
        "",
        "    default: { file: .env, readers: [alice] }\n    production: { file: .env.production, readers: [bob] }\n    staging: { file: .env.staging, readers: [alice] }\n",
        "",
    );
    s.ok(&["set", "A=1", "B=2"]);
    s.ok(&["set", "--yes", "-e", "production", "P=1"]);
    let out = s.ok(&["status"]);
    assert!(out.contains("you:        alice"), "{out}");
    let line = |env: &str| {
        out.lines()
            .find(|l| l.starts_with(env))
            .unwrap_or_else(|| panic!("no {env} row: {out}"))
            .to_string()
    };
    assert!(
        line("default").contains("    2  can read") && line("default").ends_with("alice"),
        "{out}"
    );
    assert!(
        line("production").contains("    1  cannot read") && line("production").contains("bob"),
        "{out}"
    );
    assert!(line("staging").contains("[no file yet]"), "{out}");
    assert!(
        out.contains("pre-commit hook:  not installed") && out.contains("envv hook install"),
        "{out}"
    );
    assert!(
        out.contains("envv git setup") && out.contains("envv set -e staging KEY"),
        "{out}"
    );
    // Hook in core.hooksPath, textconv configured: nothing left to set up.
    s.git(&["config", "core.hooksPath", ".githooks"]);
    s.write(
        ".githooks/pre-commit",
        "#!/bin/sh\nexec envv hook pre-commit\n",
    );
    s.git(&["config", "diff.envv.textconv", "envv decrypt --textconv"]);
    s.write(".gitattributes", ".env* diff=envv merge=envv\n");
    let out = s.ok(&["status"]);
    assert!(
        out.contains("pre-commit hook:  installed") && out.contains("git diff/merge:   set up"),
        "{out}"
    );
    assert!(
        !out.contains("envv hook install") && !out.contains("envv git setup"),
        "{out}"
    );
    let v = json(&s, &["status", "--json"], 0);
    assert_eq!(v["git"]["hook"], true);
    let envs = v["environments"].as_array().unwrap();
    assert_eq!(envs[1]["name"], "production");
    assert_eq!(envs[1]["you_can_read"], false);
    assert_eq!(envs[0]["keys"], 2);
}

#[test]
fn status_for_a_newcomer_without_an_identity() {
    let s = Sandbox::new();
    let out = s.ok(&["status"]);
    assert!(
        out.contains("envv is not set up here") && out.contains("`envv keygen`, then `envv init`"),
        "{out}"
    );
    s.init_alice();
    std::fs::remove_file(s.default_key()).unwrap();
    let out = s.ok(&["status"]);
    assert!(
        out.contains("no identity found")
            && out.contains("envv keygen")
            && out.contains("envv join"),
        "{out}"
    );
}

#[test]
fn a_data_key_rotation_does_not_reset_secret_age() {
    let s = Sandbox::new();
    let alice = s.init_alice();
    write_policy(
        &s,
        &alice,
        "",
        "    default: { file: .env, readers: [alice] }\n",
        "  schema:\n    keys:\n      TOKEN: { max_age: 30d }\n",
    );
    s.ok(&["set", "TOKEN=old", "OTHER=x"]);
    let first = commit_at(&s, "2020-01-02T10:00:00Z", "secrets");
    json(&s, &["check", "--json"], 1);
    // Rotation (as `member rm` does): every ciphertext changes, no value does.
    s.ok(&["rotate"]);
    let recent = format!(
        "{} +0000",
        time::OffsetDateTime::now_utc().unix_timestamp() - 86400
    );
    commit_at(&s, &recent, "rotate");
    let v = json(&s, &["check", "--json"], 1);
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "max_age")
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(f["commit"], first.as_str());
    let ls = s.ok(&["ls"]);
    assert!(
        ls.contains("2020-01-02"),
        "ls dates TOKEN from before the rotation: {ls}"
    );
    // A real change afterwards makes it fresh.
    s.ok(&["set", "TOKEN=new"]);
    commit_at(&s, &recent, "new token");
    let v = json(&s, &["check", "--json"], 0);
    assert!(!v.to_string().contains("max_age\""), "{v:#}");
}
