//! `envv import`: plaintext dotenv, dotenvx-encrypted files and sops JSON / YAML / dotenv files,
//! each checked against what the real tool prints (recorded fixtures always, the live tools
//! when found; under CI=true a missing dotenvx or sops fails).

use std::path::{Path, PathBuf};

use crate::support::*;

fn import_fixtures() -> PathBuf {
    fixtures().join("import")
}

/// The values of a JSON object as envv stores them (numbers as written, booleans lower case).
fn json_values(text: &str) -> Vec<(String, String)> {
    let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).unwrap();
    v.into_iter()
        .map(|(k, v)| {
            let s = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            (k, s)
        })
        .collect()
}

/// A sandbox where alice (the sandbox's own key) reads `.env` and `.env.production`.
fn with_production() -> Sandbox {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["env", "add", "production"]);
    s
}

/// Runs envv with extra environment variables.
fn run_env(s: &Sandbox, vars: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut c = s.envv();
    for (k, v) in vars {
        c.env(k, v);
    }
    c.args(args).output().unwrap()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_code(o: &std::process::Output, code: i32, what: &str) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "{what}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        stderr(o)
    );
}

#[test]
fn plaintext_dotenv_imports_and_prints_key_names_only() {
    let s = with_production();
    s.write(
        "old.env",
        "export DATABASE_URL=\"postgres://u:imp0rt-secret-1@db/app\"\nGREETING='hello world'  # inline\nMULTI=\"one\\ntwo\"\n",
    );
    let out = s.run(&["import", "-e", "production", "old.env"]);
    assert_code(&out, 0, "import");
    let err = stderr(&out);
    assert!(
        err.contains("imported 3 keys from old.env (dotenv) into .env.production"),
        "{err}"
    );
    assert!(err.contains("DATABASE_URL, GREETING, MULTI"), "{err}");
    assert!(err.contains("delete old.env"), "{err}");
    assert!(!err.contains("imp0rt-secret-1") && !err.contains("hello world"));
    assert!(out.stdout.is_empty(), "nothing on stdout");
    assert!(!err.contains("git history"), "never committed: {err}");
    assert_eq!(
        s.ok(&["get", "-e", "production", "DATABASE_URL"]),
        "postgres://u:imp0rt-secret-1@db/app"
    );
    assert_eq!(
        s.ok(&["get", "-e", "production", "GREETING"]),
        "hello world"
    );
    assert_eq!(s.ok(&["get", "-e", "production", "MULTI"]), "one\ntwo");
    assert!(!s.read(".env.production").contains("imp0rt-secret-1"));
}

#[test]
fn a_committed_plaintext_source_points_at_history() {
    let s = with_production();
    s.write("legacy.env", "TOKEN=committed-token\n");
    s.git(&["add", "legacy.env"]);
    s.git(&["commit", "-qm", "legacy secrets"]);
    s.git(&["rm", "-q", "--cached", "legacy.env"]);
    s.git(&["commit", "-qm", "untrack"]);
    let err = stderr(&s.run(&["import", "-e", "production", "legacy.env"]));
    assert!(
        err.contains("was committed in plain text") && err.contains("envv scan --history"),
        "{err}"
    );
    assert!(!err.contains("committed-token"));
}

#[test]
fn existing_keys_need_overwrite_and_a_refusal_writes_nothing() {
    let s = with_production();
    s.ok(&["set", "-e", "production", "A=old", "KEEP=same"]);
    let before = s.read(".env.production");
    s.write("in.env", "A=new\nB=added\nKEEP=same\n");
    let out = s.run(&["import", "-e", "production", "in.env"]);
    assert_code(&out, 2, "conflict without --overwrite");
    let err = stderr(&out);
    assert!(
        err.contains("A already set in .env.production") && err.contains("--overwrite"),
        "{err}"
    );
    assert!(!err.contains("old") && !err.contains("new"), "{err}");
    assert_eq!(s.read(".env.production"), before, "all or nothing");

    let err = stderr(&s.run(&["import", "-e", "production", "in.env", "--overwrite"]));
    assert!(
        err.contains("added: B") && err.contains("replaced: A") && err.contains("unchanged: KEEP"),
        "{err}"
    );
    assert_eq!(s.ok(&["get", "-e", "production", "A"]), "new");
    assert_eq!(s.ok(&["get", "-e", "production", "B"]), "added");
    // Importing the same values again changes nothing and needs no --overwrite.
    let after = s.read(".env.production");
    s.ok(&["import", "-e", "production", "in.env"]);
    assert_eq!(s.read(".env.production"), after);
}

#[test]
fn import_writes_through_the_trust_checks_of_set() {
    // A member removed by a hand edit can still decrypt the file: set refuses to add secrets
    // to it until updatekeys rotates it, and so must import.
    let s = with_production();
    let (_bob, bob_pub) = s.identity("bob");
    s.ok(&["member", "add", "bob", &bob_pub]);
    s.ok(&["set", "SHARED=1"]);
    let policy = s.read(".sops.yaml");
    let edited = policy.replace(
        &format!("      key: {bob_pub}\n"),
        &format!("      key: {bob_pub}\n      expires: 2020-01-31\n"),
    );
    assert_ne!(policy, edited);
    s.write(".sops.yaml", &edited);
    let before = s.read(".env");
    s.write("in.env", "NEW_SECRET=x\n");
    let out = s.run(&["import", "in.env"]);
    assert_code(&out, 2, "stale reader");
    assert!(stderr(&out).contains("envv updatekeys"), "{}", stderr(&out));
    assert_eq!(s.read(".env"), before);
}

#[test]
fn importing_a_file_into_itself_is_refused() {
    let s = with_production();
    s.write(".env.production", "A=1\n");
    let out = s.run(&["import", "-e", "production", ".env.production"]);
    assert_code(&out, 2, "self import");
    assert!(stderr(&out).contains("rename it first"), "{}", stderr(&out));
}

#[test]
fn ciphertext_is_never_imported_as_a_plain_value() {
    let s = with_production();
    s.write("x.env", "A=encrypted:BAAAAAAA\n");
    let out = s.run(&["import", "--from", "dotenv", "x.env"]);
    assert_code(&out, 2, "--from dotenv with dotenvx values");
    assert!(stderr(&out).contains("--from dotenvx"), "{}", stderr(&out));
    s.write(
        "y.env",
        "A=\"ENC[AES256_GCM,data:AA==,iv:AA==,tag:AA==,type:str]\"\n",
    );
    let out = s.run(&["import", "--from", "dotenv", "y.env"]);
    assert_code(&out, 2, "--from dotenv with sops values");
    assert!(!s.repo.join(".env").exists(), "nothing written");
}

// --- dotenvx -------------------------------------------------------------------------------

/// Copies the dotenvx fixture (made by dotenvx 2.38.2) into `repo/legacy/`.
fn dotenvx_fixture(s: &Sandbox, with_keys: bool) {
    let dir = s.repo.join("legacy");
    std::fs::create_dir_all(&dir).unwrap();
    let src = import_fixtures().join("dotenvx");
    std::fs::copy(src.join(".env.production"), dir.join(".env.production")).unwrap();
    if with_keys {
        std::fs::copy(src.join(".env.keys"), dir.join(".env.keys")).unwrap();
    }
}

fn dotenvx_fixture_key() -> String {
    let keys = std::fs::read_to_string(import_fixtures().join("dotenvx/.env.keys")).unwrap();
    keys.lines()
        .find_map(|l| l.strip_prefix("DOTENV_PRIVATE_KEY_PRODUCTION="))
        .unwrap()
        .to_string()
}

/// Checks that every key of `dotenvx get --format json` output has that value in envv, except
/// the ones dotenvx expanded (`$`), which envv keeps literally, and the public key line.
fn assert_same_as_dotenvx(s: &Sandbox, env: &str, expected_json: &str, literal: &[(&str, &str)]) {
    let ls = s.ok(&["ls", "-e", env]);
    for (k, v) in json_values(expected_json) {
        if k.starts_with("DOTENV_PUBLIC_KEY") {
            assert!(!ls.contains(&k), "{k} must not be imported: {ls}");
            continue;
        }
        let got = s.ok(&["get", "-e", env, &k]);
        match literal.iter().find(|(lk, _)| *lk == k) {
            Some((_, lv)) => assert_eq!(got, *lv, "{k} is kept literally"),
            None => assert_eq!(got, v, "{k}"),
        }
    }
}

#[test]
fn dotenvx_fixture_imports_to_the_values_dotenvx_get_printed() {
    let s = with_production();
    dotenvx_fixture(&s, true);
    let out = s.run(&["import", "-e", "production", "legacy/.env.production"]);
    assert_code(&out, 0, "dotenvx import");
    let err = stderr(&out);
    assert!(err.contains("(dotenvx)"), "detected: {err}");
    assert!(
        err.contains("skipped: DOTENV_PUBLIC_KEY_PRODUCTION"),
        "{err}"
    );
    assert!(err.contains("REF") && err.contains("literally"), "{err}");
    assert!(
        err.contains(".env.keys"),
        "suggests deleting the keys: {err}"
    );
    assert!(!err.contains("p%40ss") && !err.contains(&dotenvx_fixture_key()));
    let expected =
        std::fs::read_to_string(import_fixtures().join("dotenvx/expected.json")).unwrap();
    assert_same_as_dotenvx(&s, "production", &expected, &[("REF", "${HOME}/x")]);
}

#[test]
fn dotenvx_private_key_from_the_environment_and_its_errors() {
    let s = with_production();
    dotenvx_fixture(&s, false);
    let args = ["import", "-e", "production", "legacy/.env.production"];

    let out = s.run(&args);
    assert_code(&out, 2, "no key anywhere");
    assert!(
        stderr(&out).contains("DOTENV_PRIVATE_KEY_PRODUCTION is neither set"),
        "{}",
        stderr(&out)
    );
    assert!(!s.repo.join(".env.production").exists());

    // Another file's key: the first encrypted value names its line and key, never a value.
    let wrong = "ab".repeat(32);
    let out = run_env(&s, &[("DOTENV_PRIVATE_KEY_PRODUCTION", &wrong)], &args);
    assert_code(&out, 2, "wrong key");
    let err = stderr(&out);
    assert!(
        err.contains("legacy/.env.production:")
            && err.contains("DATABASE_URL does not decrypt with $DOTENV_PRIVATE_KEY_PRODUCTION"),
        "{err}"
    );
    assert!(!err.contains(&wrong));

    let out = run_env(&s, &[("DOTENV_PRIVATE_KEY_PRODUCTION", "not-hex")], &args);
    assert_code(&out, 2, "malformed key");
    assert!(stderr(&out).contains("64 hexadecimal"), "{}", stderr(&out));

    // Several keys separated by commas (dotenvx rotation): the right one is found.
    let keys = format!("{wrong},{}", dotenvx_fixture_key());
    let out = run_env(&s, &[("DOTENV_PRIVATE_KEY_PRODUCTION", &keys)], &args);
    assert_code(&out, 0, "key from the environment");
    assert_eq!(
        s.ok(&["get", "-e", "production", "API_TOKEN"]),
        "tok with spaces # not a comment"
    );
}

#[test]
fn a_dotenvx_value_edited_by_hand_is_refused() {
    let s = with_production();
    dotenvx_fixture(&s, true);
    let path = s.repo.join("legacy/.env.production");
    let text = std::fs::read_to_string(&path).unwrap();
    // Flip one base64 character of the HASH ciphertext (AES-GCM must reject it).
    let at = text.find("HASH=encrypted:").unwrap() + "HASH=encrypted:".len() + 80;
    let mut bytes = text.into_bytes();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    std::fs::write(&path, bytes).unwrap();
    let out = s.run(&["import", "-e", "production", "legacy/.env.production"]);
    assert_code(&out, 2, "edited value");
    assert!(
        stderr(&out).contains("HASH does not decrypt"),
        "{}",
        stderr(&out)
    );
    assert!(!s.repo.join(".env.production").exists(), "nothing written");
}

/// The real dotenvx: `$ENVV_TEST_DOTENVX`, `dotenvx` on PATH, or the peers cache. Under CI=true
/// a missing dotenvx fails the test.
fn dotenvx() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("ENVV_TEST_DOTENVX").map(PathBuf::from),
        std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("dotenvx"))
                .find(|p| p.is_file())
        }),
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/envv-peers/bin/dotenvx")),
    ];
    let found = candidates.into_iter().flatten().find(|p| p.is_file());
    if found.is_none() {
        missing_tool("dotenvx", "set ENVV_TEST_DOTENVX or put dotenvx on PATH");
    }
    found
}

fn run_tool(tool: &Path, dir: &Path, home: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(tool)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{tool:?} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_file_the_real_dotenvx_encrypts_imports_to_what_dotenvx_get_prints() {
    let Some(dx) = dotenvx() else { return };
    let s = with_production();
    s.ok(&["env", "add", "staging"]);
    let dir = s.tmp.path().join("dx");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(".env.staging"),
        "URL=https://user:pw@api.example.test/v1?x=1&y=2\nQUOTED=\"a \\\"quoted\\\" word\"\nSINGLE='it''s $LITERAL'\nMULTI=\"first\nsecond\"\nUNICODE=Grüße ✓\nEQUALS=a=b=c\nEMPTY=\nSPACES=\"  padded  \"\nTRAILING=value # comment\n",
    )
    .unwrap();
    run_tool(&dx, &dir, &s.home, &["encrypt", "-f", ".env.staging"]);
    let encrypted = std::fs::read_to_string(dir.join(".env.staging")).unwrap();
    assert!(encrypted.contains("URL=encrypted:"), "dotenvx encrypted it");
    let expected = run_tool(
        &dx,
        &dir,
        &s.home,
        &["get", "-f", ".env.staging", "--format", "json"],
    );
    let src = dir.join(".env.staging");
    let out = s.run(&["import", "-e", "staging", src.to_str().unwrap()]);
    assert_code(&out, 0, "import of dotenvx output");
    assert_same_as_dotenvx(&s, "staging", &expected, &[]);
}

// --- sops ----------------------------------------------------------------------------------

/// Imports a sops fixture with TEST key A (through SOPS_AGE_KEY_FILE, which joins the user's
/// own key) into a new environment and compares with sops's JSON output.
fn check_sops_import(s: &Sandbox, source: &Path, env: &str, expected_json: &str) {
    let key = fixtures().join("keys.txt");
    let out = run_env(
        s,
        &[("SOPS_AGE_KEY_FILE", key.to_str().unwrap())],
        &["import", "-e", env, source.to_str().unwrap()],
    );
    assert_code(&out, 0, &format!("import {source:?}"));
    let err = stderr(&out);
    assert!(err.contains("(sops)"), "{err}");
    let expected = json_values(expected_json);
    for (k, v) in &expected {
        assert!(
            !err.contains(v.as_str()) || v.len() < 4,
            "value of {k} printed: {err}"
        );
        assert_eq!(&s.ok(&["get", "-e", env, k]), v, "{source:?} {k}");
    }
    let ls = s.ok(&["ls", "-e", env, "--json"]);
    let ls: serde_json::Value = serde_json::from_str(&ls).unwrap();
    assert_eq!(ls["keys"].as_array().unwrap().len(), expected.len(), "{ls}");
}

#[test]
fn sops_json_yaml_and_dotenv_fixtures_import_with_their_mac_checked() {
    let s = with_production();
    for (i, name) in ["flat.json", "flat.yaml", "flat.env"].iter().enumerate() {
        let env = format!("e{i}");
        s.ok(&["env", "add", &env]);
        let src = import_fixtures().join(format!("sops_{name}"));
        let expected =
            std::fs::read_to_string(import_fixtures().join(format!("expected_{name}.json")))
                .unwrap();
        check_sops_import(&s, &src, &env, &expected);
    }
}

#[test]
fn a_tampered_sops_source_is_refused_before_anything_is_written() {
    let s = with_production();
    let key = fixtures().join("keys.txt");
    for name in ["flat.json", "flat.yaml", "flat.env"] {
        let text = std::fs::read_to_string(import_fixtures().join(format!("sops_{name}"))).unwrap();
        // The unencrypted value is in the MAC: changing it must be detected.
        let edited = text.replace("https://example.test", "https://attacker.test");
        assert_ne!(text, edited);
        let src = s.tmp.path().join(format!("tampered_{name}"));
        std::fs::write(&src, edited).unwrap();
        let out = run_env(
            &s,
            &[("SOPS_AGE_KEY_FILE", key.to_str().unwrap())],
            &["import", "-e", "production", src.to_str().unwrap()],
        );
        assert_code(&out, 2, name);
        assert!(
            stderr(&out).contains("MAC does not match"),
            "{name}: {}",
            stderr(&out)
        );
        assert!(!s.repo.join(".env.production").exists(), "{name}");
    }
}

#[test]
fn a_sops_source_key_that_is_not_a_name_is_not_shown() {
    let s = with_production();
    let key = fixtures().join("keys.txt");
    let text = std::fs::read_to_string(import_fixtures().join("sops_flat.json")).unwrap();
    let edited = text.replacen('{', "{\n\t\"postgres://u:hunter2pass@db\": \"x\",", 1);
    let src = s.tmp.path().join("pasted_key.json");
    std::fs::write(&src, edited).unwrap();
    let out = run_env(
        &s,
        &[("SOPS_AGE_KEY_FILE", key.to_str().unwrap())],
        &["import", "-e", "production", src.to_str().unwrap()],
    );
    assert_code(&out, 2, "pasted key");
    let err = stderr(&out);
    assert!(err.contains("invalid key name"), "{err}");
    assert!(!err.contains("hunter2pass"), "{err}");
    assert!(!s.repo.join(".env.production").exists());
}

#[test]
fn a_nested_sops_document_names_the_nested_path() {
    let s = with_production();
    let key = fixtures().join("keys.txt");
    let src = import_fixtures().join("sops_nested.json");
    let out = run_env(
        &s,
        &[("SOPS_AGE_KEY_FILE", key.to_str().unwrap())],
        &["import", src.to_str().unwrap()],
    );
    assert_code(&out, 2, "nested");
    let err = stderr(&out);
    assert!(err.contains("db.host is nested"), "{err}");
}

#[test]
fn a_sops_source_the_caller_cannot_read_fails_with_its_readers() {
    let s = with_production();
    let src = import_fixtures().join("sops_flat.yaml");
    let out = s.run(&["import", "--from", "sops", src.to_str().unwrap()]);
    assert_code(&out, 1, "not a reader");
    assert!(stderr(&out).contains("cannot decrypt"), "{}", stderr(&out));
    // --from sops on a file without sops metadata says so.
    s.write("plain.env", "A=1\n");
    let out = s.run(&["import", "--from", "sops", "plain.env"]);
    assert_code(&out, 2, "not a sops file");
    assert!(
        stderr(&out).contains("no sops metadata"),
        "{}",
        stderr(&out)
    );
    // A JSON document without sops metadata is named as such, not parsed as dotenv.
    s.write("config.json", "{\"A\": \"1\"}\n");
    let out = s.run(&["import", "config.json"]);
    assert_code(&out, 2, "plain JSON");
    assert!(
        stderr(&out).contains("config.json: has no `sops` map"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn files_the_real_sops_encrypts_import_to_what_sops_decrypts() {
    let Some(sops) = sops() else { return };
    let s = with_production();
    let key = fixtures().join("keys.txt");
    let dir = s.tmp.path().join("sops-live");
    std::fs::create_dir_all(&dir).unwrap();
    let inputs = [
        (
            "live.json",
            "{\"URL\": \"https://u:p@h/x?a=1&b=2\", \"N\": 42, \"F\": 2.5, \"ON\": false, \"ML\": \"a\\nb\", \"Q\": \"\\\"q\\\"\", \"NOTE_unencrypted\": \"public\"}\n",
        ),
        (
            "live.yaml",
            "URL: https://u:p@h/x?a=1&b=2\nN: 42\nON: true\nML: |\n  a\n  b\nQ: '\"q\" #x'\n",
        ),
        ("live.env", "URL=https://u:p@h/x?a=1&b=2\nEQ=a=b\nSP=two words\n"),
    ];
    for (i, (name, text)) in inputs.iter().enumerate() {
        std::fs::write(dir.join(format!("plain_{name}")), text).unwrap();
        let enc = run_sops(
            &sops,
            &dir,
            &key,
            &[
                "--config",
                "/dev/null",
                "encrypt",
                "--age",
                TEST_KEY_A_PUBLIC,
                &format!("plain_{name}"),
            ],
        );
        assert!(
            enc.status.success(),
            "{}",
            String::from_utf8_lossy(&enc.stderr)
        );
        std::fs::write(dir.join(name), &enc.stdout).unwrap();
        let dec = run_sops(
            &sops,
            &dir,
            &key,
            &["decrypt", "--output-type", "json", name],
        );
        assert!(
            dec.status.success(),
            "{}",
            String::from_utf8_lossy(&dec.stderr)
        );
        let env = format!("live{i}");
        s.ok(&["env", "add", &env]);
        check_sops_import(
            &s,
            &dir.join(name),
            &env,
            &String::from_utf8(dec.stdout).unwrap(),
        );
    }
}
