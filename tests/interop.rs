//! Interoperability with the real sops 3.11, both directions, and with its recorded vectors.
//!
//! The vectors in `tests/fixtures/` were made by sops 3.11.0; they are decrypted by envv and
//! compared with sops's own JSON output. Live tests run the real sops (found by
//! `support::sops()`; under CI=true a missing sops fails, elsewhere they are skipped).

use std::path::Path;

use crate::support::*;

fn expected(name: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(fixtures().join(format!("expected/{name}.json"))).unwrap();
    let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    v.into_iter()
        .map(|(k, v)| (k, v.as_str().unwrap().to_string()))
        .collect()
}

/// A sandbox with the vector copied in (no policy: decryption needs none).
fn with_vector(name: &str) -> Sandbox {
    let s = Sandbox::new();
    std::fs::copy(fixtures().join(name), s.repo.join(name)).unwrap();
    s
}

fn key_a() -> String {
    fixtures().join("keys.txt").to_str().unwrap().to_string()
}

fn key_b() -> String {
    fixtures().join("keys_b.txt").to_str().unwrap().to_string()
}

#[test]
fn sops_vectors_decrypt_to_the_same_values() {
    for (vector, ids) in [
        ("basic.env", vec![key_a()]),
        ("two_recipients.env", vec![key_a()]),
        ("two_recipients.env", vec![key_b()]),
        ("key_groups.env", vec![key_a(), key_b()]),
        ("public_regex.env", vec![key_a()]),
        ("mac_only.env", vec![key_a()]),
    ] {
        let s = with_vector(vector);
        let name = vector.trim_end_matches(".env");
        for (k, v) in expected(name) {
            let mut args = vec!["get".to_string(), "-f".into(), vector.into(), k.clone()];
            for id in &ids {
                args.push("--identity".into());
                args.push(id.clone());
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            assert_eq!(s.ok(&args), v, "{vector} {k}");
        }
    }
}

#[test]
fn key_groups_need_every_group() {
    let s = with_vector("key_groups.env");
    let err = s.fails(
        &[
            "get",
            "-f",
            "key_groups.env",
            "--identity",
            &key_a(),
            "OTHER",
        ],
        1,
    );
    assert!(err.contains("cannot decrypt key_groups.env"), "{err}");
    assert!(
        err.contains("needs 2 of 2 key groups; your identities open 1"),
        "{err}"
    );
}

#[test]
fn typed_and_key_group_files_sops_made_read_like_sops_json() {
    // The exact values sops decrypts (its JSON output), for files with bool/int/float/time
    // values and with 2-of-3 key groups; strings compare as text, the others as sops prints
    // them in dotenv (`tests/fixtures/typed/*.expected.env`, made by sops too).
    let typed = fixtures().join("typed");
    for name in ["sops_set", "from_yaml"] {
        let s = Sandbox::new();
        std::fs::copy(typed.join(format!("{name}.env")), s.repo.join("t.env")).unwrap();
        let json: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
            &std::fs::read_to_string(typed.join(format!("{name}.expected.json"))).unwrap(),
        )
        .unwrap();
        let dotenv = std::fs::read_to_string(typed.join(format!("{name}.expected.env"))).unwrap();
        for (k, v) in json {
            let got = s.ok(&["get", "-f", "t.env", "--identity", &key_a(), &k]);
            let shown = dotenv
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap();
            assert_eq!(got, shown, "{name} {k}");
            if let Some(text) = v.as_str() {
                assert_eq!(got, text, "{name} {k}");
            }
        }
    }
    let s = Sandbox::new();
    std::fs::copy(typed.join("groups_2_of_3.env"), s.repo.join("g.env")).unwrap();
    let c = fixtures().join("keys_c.txt");
    let got = s.ok(&[
        "get",
        "-f",
        "g.env",
        "--identity",
        &key_b(),
        "--identity",
        c.to_str().unwrap(),
        "API_KEY",
    ]);
    assert_eq!(got, "three groups, any two");
}

#[test]
fn sops_vector_decrypt_output_matches_sops_values() {
    // `envv decrypt` prints dotenv that dotenv parsers read back to sops's exact values.
    let s = with_vector("basic.env");
    let out = s.ok(&["decrypt", "-f", "basic.env", "--identity", &key_a()]);
    assert!(
        out.starts_with("# TEST VECTOR - not a real secret\n"),
        "comments come back: {out}"
    );
    assert!(
        out.contains("\nMULTILINE=\"line one\\nline two\"\n"),
        "{out}"
    );
    assert!(
        out.contains("\nSPACES='  leading and trailing spaces  '\n"),
        "{out}"
    );
    assert!(
        out.contains("\nexport EXPORTED_KEY='exported value'\n"),
        "{out}"
    );
}

#[test]
fn negative_vectors_are_refused() {
    let s = Sandbox::new();
    for (name, what) in [
        ("bad_mac.env", "MAC does not match"),
        ("swapped_values.env", "does not authenticate"),
    ] {
        std::fs::copy(fixtures().join("negative").join(name), s.repo.join(name)).unwrap();
        let err = s.fails(&["decrypt", "-f", name, "--identity", &key_a()], 2);
        assert!(err.contains(what) && err.contains(name), "{name}: {err}");
    }
}

#[test]
fn envv_changes_keep_sops_vector_ciphertexts() {
    // set on a file sops wrote: the other values keep their ENC strings and sops still reads it.
    let s = with_vector("basic.env");
    let before = s.read("basic.env");
    s.write(".sops.yaml", format!("envv:\n  members:\n    a: {{ key: {TEST_KEY_A_PUBLIC} }}\n  environments:\n    v: {{ file: basic.env, readers: [a] }}\n"));
    s.ok(&[
        "set",
        "-f",
        "basic.env",
        "--identity",
        &key_a(),
        "LAST",
        "changed",
    ]);
    let after = s.read("basic.env");
    for line in before
        .lines()
        .filter(|l| l.contains("=ENC[") && !l.starts_with("LAST=") && !l.starts_with("sops_mac"))
    {
        assert!(after.contains(line), "kept: {line}");
    }
    assert!(after.contains("\nEMPTY=\n") && after.contains("export EXPORTED_KEY=ENC["));
    if let Some(sops) = sops() {
        let out = run_sops(
            &sops,
            &s.repo,
            Path::new(&key_a()),
            &["decrypt", "--output-type", "json", "basic.env"],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["LAST"], "changed");
        assert_eq!(v["WINDOWS_PATH"], "C:\\temp\new");
    }
}

const TRICKY: &[(&str, &str)] = &[
    ("EQUALS", "a=b=c=="),
    ("EMPTY", ""),
    ("SPACES", "  two spaces  "),
    ("QUOTES", "\"double\" and 'single'"),
    ("HASH", "value # not a comment"),
    ("DOLLAR", "pa$$word ${HOME} $1"),
    ("UNICODE", "héllo wörld ✓ 日本語 🔑"),
    ("MULTI", "-----BEGIN KEY-----\nabc\n-----END KEY-----"),
    ("BACKSLASH", "C:\\temp\\x"),
];

fn tricky_sandbox(recipients: usize) -> (Sandbox, Vec<std::path::PathBuf>) {
    let s = Sandbox::new();
    let mut keys = Vec::new();
    let mut members = String::new();
    let mut names = Vec::new();
    for i in 0..recipients {
        let (path, public) = s.identity(&format!("m{i}"));
        members.push_str(&format!("    m{i}: {{ key: {public} }}\n"));
        names.push(format!("m{i}"));
        keys.push(path);
    }
    let publics: Vec<String> = members
        .lines()
        .map(|l| {
            l.split("key: ")
                .nth(1)
                .unwrap()
                .trim_end_matches(" }")
                .to_string()
        })
        .collect();
    s.write(
        ".sops.yaml",
        format!(
            "envv:\n  members:\n{members}  environments:\n    default: {{ file: .env, readers: [{}] }}\ncreation_rules:\n  - path_regex: (^|/)\\.env$\n    age: {}\n",
            names.join(", "),
            publics.join(",")
        ),
    );
    (s, keys)
}

#[test]
fn files_envv_writes_decrypt_with_real_sops() {
    let Some(sops) = sops() else { return };
    for n in [1, 3] {
        let (s, keys) = tricky_sandbox(n);
        let big = "0123456789abcdef".repeat(4096);
        let mut args: Vec<String> = vec!["set".into()];
        for (k, v) in TRICKY {
            // The hand-written policy names every member: the first set confirms them.
            s.envv()
                .args(["set", "--yes", k, v])
                .env("ENVV_AGE_KEY_FILE", &keys[0])
                .assert()
                .success();
        }
        args.clear();
        s.envv()
            .args(["set", "BIG", &big])
            .env("ENVV_AGE_KEY_FILE", &keys[0])
            .assert()
            .success();
        s.envv()
            .args(["set", "PORT_unencrypted", "8080"])
            .env("ENVV_AGE_KEY_FILE", &keys[0])
            .assert()
            .success();
        for key in &keys {
            let out = run_sops(
                &sops,
                &s.repo,
                key,
                &["decrypt", "--output-type", "json", ".env"],
            );
            assert!(
                out.status.success(),
                "sops failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            for (k, val) in TRICKY {
                assert_eq!(v[k], *val, "{k} with {n} recipients");
            }
            assert_eq!(v["BIG"], big.as_str());
            assert_eq!(v["PORT_unencrypted"], "8080");
        }
    }
}

#[test]
fn files_sops_writes_decrypt_with_envv() {
    let Some(sops) = sops() else { return };
    let (s, keys) = tricky_sandbox(2);
    // sops's dotenv input has no quoting: values are written raw, with \n for newlines.
    let mut plain = String::from("# made by sops\n");
    for (k, v) in TRICKY {
        if v.contains('\\') {
            continue; // sops would read `\t` fine but `\n` as a newline: skip backslashes here
        }
        plain.push_str(&format!("{k}={}\n", v.replace('\n', "\\n")));
    }
    let big = "z".repeat(64 * 1024);
    plain.push_str(&format!("BIG={big}\n"));
    s.write("plain.env", &plain);
    let publics: Vec<String> = keys
        .iter()
        .map(|k| {
            std::fs::read_to_string(k)
                .unwrap()
                .lines()
                .find(|l| l.starts_with("# public key: "))
                .unwrap()[14..]
                .to_string()
        })
        .collect();
    std::fs::remove_file(s.repo.join(".sops.yaml")).unwrap();
    let out = run_sops(
        &sops,
        &s.repo,
        &keys[0],
        &["encrypt", "--age", &publics.join(","), "plain.env"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.write("sops.env", &out.stdout);
    for key in &keys {
        for (k, v) in TRICKY.iter().filter(|(_, v)| !v.contains('\\')) {
            let got = s
                .envv()
                .args(["get", "-f", "sops.env", k])
                .env("ENVV_AGE_KEY_FILE", key)
                .output()
                .unwrap();
            assert!(
                got.status.success(),
                "{}",
                String::from_utf8_lossy(&got.stderr)
            );
            assert_eq!(String::from_utf8(got.stdout).unwrap(), *v, "{k}");
        }
        let got = s
            .envv()
            .args(["get", "-f", "sops.env", "BIG"])
            .env("ENVV_AGE_KEY_FILE", key)
            .output()
            .unwrap();
        assert_eq!(got.stdout, big.as_bytes());
    }
}

#[test]
fn sops_set_updatekeys_and_rotate_leave_files_envv_reads() {
    let Some(sops) = sops() else { return };
    let (s, keys) = tricky_sandbox(1);
    s.envv()
        .args(["set", "A=1", "B=two words"])
        .env("ENVV_AGE_KEY_FILE", &keys[0])
        .assert()
        .success();
    let out = run_sops(
        &sops,
        &s.repo,
        &keys[0],
        &["set", ".env", "[\"C\"]", "\"from sops\""],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let get = |k: &str| {
        let o = s
            .envv()
            .args(["get", k])
            .env("ENVV_AGE_KEY_FILE", &keys[0])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    assert_eq!(get("C"), "from sops");
    assert_eq!(get("B"), "two words");
    let out = run_sops(&sops, &s.repo, &keys[0], &["rotate", "-i", ".env"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(get("A"), "1");
    let out = run_sops(&sops, &s.repo, &keys[0], &["updatekeys", "-y", ".env"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(get("B"), "two words");
    // And envv writes after sops keep working with sops.
    s.envv()
        .args(["set", "D", "after sops"])
        .env("ENVV_AGE_KEY_FILE", &keys[0])
        .assert()
        .success();
    let out = run_sops(
        &sops,
        &s.repo,
        &keys[0],
        &["decrypt", "--output-type", "json", ".env"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["D"], "after sops");
    assert_eq!(v["C"], "from sops");
}

#[test]
fn non_default_env_file_decrypts_with_sops_input_type() {
    let Some(sops) = sops() else { return };
    let (s, keys) = tricky_sandbox(1);
    let policy = s
        .read(".sops.yaml")
        .replace("file: .env,", "file: .env.production,")
        .replace("    default:", "    production:");
    s.write(".sops.yaml", policy);
    s.envv()
        .args(["set", "-e", "production", "DB", "postgres://prod"])
        .env("ENVV_AGE_KEY_FILE", &keys[0])
        .assert()
        .success();
    let out = run_sops(
        &sops,
        &s.repo,
        &keys[0],
        &[
            "decrypt",
            "--input-type",
            "dotenv",
            "--output-type",
            "dotenv",
            ".env.production",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "DB=postgres://prod\n"
    );
}

#[test]
fn files_sops_encrypts_under_envv_creation_rules_read_and_write() {
    // `public` becomes the generated rule's unencrypted_regex; sops writes it into the file,
    // and envv, which compares a file's rule with the policy's, reads and writes that file.
    let Some(sops) = sops() else { return };
    let (s, keys) = tricky_sandbox(1);
    let policy = s.read(".sops.yaml").replace(
        "creation_rules:",
        "  public: ['^PORT$', '^NEXT_PUBLIC_']\ncreation_rules:",
    );
    s.write(".sops.yaml", policy);
    s.envv()
        .args(["updatekeys"])
        .env("ENVV_AGE_KEY_FILE", &keys[0])
        .assert()
        .success();
    assert!(s.read(".sops.yaml").contains("unencrypted_regex"));
    s.write(".env", "PORT=8080\nNEXT_PUBLIC_URL=https://x\nDB=secret\n");
    let out = run_sops(&sops, &s.repo, &keys[0], &["encrypt", "-i", ".env"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        s.read(".env").starts_with("PORT=8080\n"),
        "sops left PORT plain"
    );
    s.envv()
        .args(["set", "NEW", "from envv"])
        .env("ENVV_AGE_KEY_FILE", &keys[0])
        .assert()
        .success();
    let check = s
        .envv()
        .args(["check"])
        .env("ENVV_AGE_KEY_FILE", &keys[0])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&check.stdout).contains("weak_rule"));
    let out = run_sops(
        &sops,
        &s.repo,
        &keys[0],
        &["decrypt", "--output-type", "json", ".env"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["NEW"], "from envv");
    assert_eq!(v["DB"], "secret");
}
