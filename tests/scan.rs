//! `envv scan`, the hook's value scan and `exec --redact`, through the built binary.
//!
//! Every output of every run is collected and searched for every test value in every form
//! envv knows (and a few computed here independently): a finding names where, never what.

use std::io::{BufRead, Read};
use std::process::{Output, Stdio};

use base64::Engine;

use crate::support::*;

/// TEST values (not real secrets).
const TOKEN: &str = "test-token-0f9e8d7c6b5a";
/// Reserved URL characters, so its percent-encoding differs from the plain form.
const DB_PASS: &str = "p@ss:w0rd/test+only";
/// A double quote and a backslash, so its JSON form differs.
const QUOTED: &str = "say \"hi\" to C:\\test";
/// Shorter than the default minimum length.
const SHORT: &str = "abc1234";
/// A key the policy marks public.
const PUBLIC: &str = "https://public.example.test/app";

struct Scan {
    s: Sandbox,
    outputs: Vec<u8>,
}

impl Scan {
    /// alice's repo with the test values in `.env`, `PUBLIC_*` keys public, committed.
    fn new() -> Scan {
        let s = Sandbox::new();
        s.init_alice();
        let policy = s.read(".sops.yaml");
        s.write(
            ".sops.yaml",
            policy.replacen(
                "envv:\n  version: 1\n",
                "envv:\n  version: 1\n  public: [\"^PUBLIC_\"]\n",
                1,
            ),
        );
        // The hand-written `public` pattern is confirmed once, as a reader would.
        s.ok(&[
            "--yes",
            "set",
            &format!("API_TOKEN={TOKEN}"),
            &format!("DB_PASS={DB_PASS}"),
        ]);
        s.ok(&["set", "QUOTED", QUOTED]);
        s.ok(&[
            "set",
            &format!("SHORT={SHORT}"),
            &format!("PUBLIC_URL={PUBLIC}"),
        ]);
        s.git(&["add", "-A"]);
        s.git(&["commit", "-qm", "secrets"]);
        Scan {
            s,
            outputs: Vec::new(),
        }
    }

    fn run(&mut self, args: &[&str]) -> Output {
        let out = self.s.run(args);
        self.record(&out);
        out
    }

    fn record(&mut self, out: &Output) {
        self.outputs.extend_from_slice(&out.stdout);
        self.outputs.extend_from_slice(&out.stderr);
    }

    /// Runs `envv ARGS`, asserts the exit code, returns stdout.
    fn expect(&mut self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "envv {args:?}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// No output of any run holds a test value in any form.
    fn assert_no_value_shown(&self) {
        assert!(!self.outputs.is_empty());
        for v in [TOKEN, DB_PASS, QUOTED] {
            let mut forms: Vec<Vec<u8>> = envv::checks::scan::forms(v.as_bytes())
                .into_iter()
                .map(|(_, f)| f.to_vec())
                .collect();
            forms.push(
                base64::engine::general_purpose::STANDARD
                    .encode(v)
                    .into_bytes(),
            );
            forms.push(pct(v).into_bytes());
            for f in forms {
                assert!(
                    !self.outputs.windows(f.len()).any(|w| w == f.as_slice()),
                    "an output holds a form of a value"
                );
            }
        }
    }
}

/// Percent-encoding of everything but RFC 3986 unreserved characters (computed here).
fn pct(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn lines(stdout: &str) -> Vec<&str> {
    stdout.lines().collect()
}

#[test]
fn scan_finds_plain_base64_url_and_escaped_leaks_and_never_prints_them() {
    let mut t = Scan::new();
    t.s.write(
        "src/config.js",
        format!("// settings\nconst url = 'https://api.test';\nconst token = '{TOKEN}';\n"),
    );
    // Inside a longer base64 blob, not at a 3-byte boundary.
    let blob = base64::engine::general_purpose::STANDARD.encode(format!(
        "{{\"user\":\"app\",\"token\":\"{TOKEN}\",\"n\":1}}"
    ));
    t.s.write("deploy/values.yaml", format!("secret:\n  config: {blob}\n"));
    t.s.write(
        "docs/connect.md",
        format!(
            "Connect with postgres://app:{}@db.internal/app\n",
            pct(DB_PASS)
        ),
    );
    t.s.write(
        "fixtures/settings.json",
        serde_json::to_string(&serde_json::json!({ "greeting": QUOTED })).unwrap(),
    );
    // Values that are not managed, or not searched: an AWS documentation example key, the
    // public value, the short value.
    t.s.write(
        "aws.txt",
        format!(
            "AKIAIOSFODNN7EXAMPLE\nwJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n{PUBLIC}\n{SHORT}\n"
        ),
    );
    let out = t.expect(&["scan"], 1);
    let col = "const token = '".len() + 1;
    let blob_col = "  config: ".len() + 1;
    let found = lines(&out);
    assert_eq!(found.len(), 4, "{out}");
    assert_eq!(
        found[1],
        format!(
            "docs/connect.md:1:{}: DB_PASS (environment default, url-encoded)",
            "Connect with postgres://app:".len() + 1
        )
    );
    assert_eq!(
        found[2],
        format!(
            "fixtures/settings.json:1:{}: QUOTED (environment default, escaped)",
            "{\"greeting\":\"".len() + 1
        )
    );
    assert_eq!(
        found[3],
        format!("src/config.js:3:{col}: API_TOKEN (environment default, plain)")
    );
    // Inside the blob: the column depends on the alignment, within the blob.
    let deploy = found[0];
    assert!(deploy.starts_with("deploy/values.yaml:2:"), "{deploy}");
    let deploy_col: usize = deploy.split(':').nth(2).unwrap().parse().unwrap();
    assert!(
        deploy_col > blob_col && deploy_col < blob_col + blob.len(),
        "{deploy}"
    );
    assert!(
        deploy.ends_with("API_TOKEN (environment default, base64)"),
        "{deploy}"
    );

    // JSON: the same findings and a summary.
    let json: serde_json::Value = serde_json::from_str(&t.expect(&["scan", "--json"], 1)).unwrap();
    let findings = json["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 4);
    assert_eq!(findings[3]["file"], "src/config.js");
    assert_eq!(findings[3]["line"], 3);
    assert_eq!(findings[3]["column"], col);
    assert_eq!(findings[3]["key"], "API_TOKEN");
    assert_eq!(findings[3]["environment"], "default");
    assert_eq!(findings[3]["encoding"], "plain");
    assert_eq!(json["summary"]["findings"], 4);
    assert_eq!(
        json["summary"]["values"], 3,
        "SHORT and PUBLIC_URL are not searched"
    );

    // A shorter minimum finds the short value; given PATHs limit the search.
    let out = t.expect(&["scan", "--min-length", "4", "aws.txt"], 1);
    assert_eq!(
        lines(&out),
        ["aws.txt:4:1: SHORT (environment default, plain)"]
    );
    t.expect(&["scan", "aws.txt"], 0);

    // The allow-list in the policy.
    let policy = t.s.read(".sops.yaml");
    t.s.write(
        ".sops.yaml",
        policy.replacen(
            "envv:\n  version: 1\n",
            "envv:\n  version: 1\n  scan:\n    ignore: [\"deploy/**\", \"*.md\", fixtures]\n",
            1,
        ),
    );
    let out = t.expect(&["scan"], 1);
    assert_eq!(
        lines(&out),
        [format!(
            "src/config.js:3:{col}: API_TOKEN (environment default, plain)"
        )]
    );
    t.assert_no_value_shown();
}

#[test]
fn scan_of_a_clean_tree_is_quiet_and_ignores_gitignored_and_encrypted_files() {
    let mut t = Scan::new();
    t.s.write("src/app.js", "console.log(process.env.API_TOKEN);\n");
    t.s.write(
        "aws.txt",
        "AKIAIOSFODNN7EXAMPLE wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
    );
    // Ignored by git: not part of the tree.
    t.s.write(".gitignore", "/build/\n");
    t.s.write("build/out.log", format!("{TOKEN}\n"));
    let out = t.run(&["scan"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no managed value found"), "{err}");
    // The encrypted .env is searched neither in the tree nor in history.
    t.expect(&["scan", "--history"], 0);
    t.expect(&["scan", "--staged"], 0);
    // A folder given is searched as git sees it; an ignored file is searched when named.
    t.expect(&["scan", "build"], 0);
    t.expect(&["scan", "build/out.log"], 1);
    t.assert_no_value_shown();
}

#[test]
fn scan_history_reports_a_deleted_leak_once_with_its_commit() {
    let mut t = Scan::new();
    t.s.write("notes.txt", format!("debug: {TOKEN}\n"));
    t.s.git(&["add", "notes.txt"]);
    t.s.git(&["commit", "-qm", "add notes"]);
    let introducing = t.s.git(&["rev-parse", "HEAD"]).trim().to_string();
    // Still there after an unrelated edit: not a new finding.
    t.s.write("notes.txt", format!("more\ndebug: {TOKEN}\n"));
    t.s.git(&["commit", "-qam", "edit notes"]);
    t.s.git(&["rm", "-q", "notes.txt"]);
    t.s.git(&["commit", "-qm", "remove notes"]);

    t.expect(&["scan"], 0);
    let out = t.expect(&["scan", "--history"], 1);
    assert_eq!(
        lines(&out),
        [format!(
            "notes.txt:1:8: API_TOKEN (environment default, plain) in commit {} ({})",
            &introducing[..12],
            t.s.git(&["log", "-1", "--format=%cs", &introducing]).trim()
        )]
    );
    let json: serde_json::Value =
        serde_json::from_str(&t.expect(&["scan", "--history", "--json"], 1)).unwrap();
    assert_eq!(json["findings"].as_array().unwrap().len(), 1);
    assert_eq!(json["findings"][0]["commit"], introducing.as_str());
    assert_eq!(json["summary"]["commits_searched"], 4);
    t.assert_no_value_shown();
}

#[test]
fn scan_staged_searches_the_index_not_the_working_tree() {
    let mut t = Scan::new();
    t.s.write("config.ini", format!("password = {DB_PASS}\n"));
    t.s.git(&["add", "config.ini"]);
    t.s.write("config.ini", "password = ${DB_PASS}\n");
    t.expect(&["scan"], 0);
    let out = t.expect(&["scan", "--staged"], 1);
    assert_eq!(
        lines(&out),
        ["config.ini:1:12: DB_PASS (environment default, plain)"]
    );
    t.assert_no_value_shown();
}

#[test]
fn scan_errors_exit_2_and_without_an_identity_there_is_nothing_to_search() {
    let mut t = Scan::new();
    std::fs::remove_file(t.s.default_key()).unwrap();
    let out = t.run(&["scan"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(".env is not searched for") && err.contains("envv whoami"),
        "{err}"
    );
    let out = t.run(&["scan", "no-such-dir"]);
    assert_eq!(out.status.code(), Some(2));
    t.assert_no_value_shown();
}

/// Runs git with envv on PATH (the hook) and `envs`; returns the output.
fn git_with(s: &Sandbox, args: &[&str], envs: &[(&str, &str)]) -> Output {
    s.git_cmd(&s.repo)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn hook_refuses_a_staged_leak_and_can_be_turned_off() {
    let mut t = Scan::new();
    t.s.ok(&["hook", "install"]);
    t.s.write("app.js", format!("\nconst t = \"{TOKEN}\";\n"));
    t.s.git(&["add", "app.js"]);
    let out = git_with(&t.s, &["commit", "-qm", "leak"], &[]);
    t.record(&out);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("app.js:2: holds the value of API_TOKEN (environment default, plain"),
        "{err}"
    );
    assert!(t
        .s
        .git(&["log", "--format=%s"])
        .lines()
        .all(|l| l != "leak"));

    // ENVV_HOOK_SCAN=0 turns the value scan off (the other checks still run).
    let out = git_with(&t.s, &["commit", "-qm", "leak"], &[("ENVV_HOOK_SCAN", "0")]);
    t.record(&out);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // So does the policy.
    t.s.write("other.txt", format!("{DB_PASS}\n"));
    t.s.git(&["add", "other.txt"]);
    let out = git_with(&t.s, &["commit", "-qm", "leak 2"], &[]);
    t.record(&out);
    assert_eq!(out.status.code(), Some(1));
    let policy = t.s.read(".sops.yaml");
    t.s.write(
        ".sops.yaml",
        policy.replacen(
            "envv:\n  version: 1\n",
            "envv:\n  version: 1\n  scan: { hook: false }\n",
            1,
        ),
    );
    let out = git_with(&t.s, &["commit", "-qm", "leak 2"], &[]);
    t.record(&out);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Without an identity: said once, and the commit goes through.
    t.s.write(".sops.yaml", policy);
    std::fs::remove_file(t.s.default_key()).unwrap();
    t.s.write("third.txt", format!("{QUOTED}\n"));
    t.s.git(&["add", "third.txt"]);
    let out = git_with(&t.s, &["commit", "-qm", "no identity"], &[]);
    t.record(&out);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.matches("not searched for secret values").count(),
        1,
        "{err}"
    );
    t.assert_no_value_shown();
}

#[test]
fn hook_finds_every_form_in_a_commit_of_many_encrypted_files_and_nothing_in_them() {
    let mut t = Scan::new();
    t.s.ok(&["hook", "install"]);
    // Two more environments with values of their own, and a commit of every encrypted file
    // and the policy (as `member add` makes): nothing in it is a finding.
    for env in ["e1", "e2"] {
        t.s.ok(&["env", "add", env]);
        let mut plain = String::new();
        for i in 0..300 {
            plain.push_str(&format!(
                "{}_KEY_{i}=test-{env}-value-{i:04}-only\n",
                env.to_uppercase()
            ));
        }
        t.s.write(&format!(".env.{env}"), plain);
        t.s.ok(&["encrypt", "-e", env]);
    }
    t.s.ok(&["set", "API_TOKEN", &format!("{TOKEN}-v2")]);
    t.s.git(&["add", "-A"]);
    let out = git_with(&t.s, &["commit", "-qm", "two environments"], &[]);
    t.record(&out);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Each form, in a commit that also changes every encrypted file and the policy.
    t.s.ok(&["set", "E1_KEY_7", "test-e1-rotated-value-7"]);
    t.s.ok(&["-e", "e1", "set", "E1_KEY_7", "test-e1-rotated-value-7"]);
    let policy = t.s.read(".sops.yaml");
    t.s.write(".sops.yaml", format!("{policy}# reviewed\n"));
    let blob = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode("{\"k\":\"test-e2-value-0299-only\",\"n\":1}");
    t.s.write(
        "deploy/values.yaml",
        format!(
            "a: 1\nconfig: {blob}\nurl: postgres://app:{}@db\n",
            pct(DB_PASS)
        ),
    );
    t.s.write(
        "settings.json",
        serde_json::to_string(&serde_json::json!({ "q": QUOTED, "e1": "test-e1-value-0150-only" }))
            .unwrap(),
    );
    t.s.git(&["add", "-A"]);
    let out = git_with(&t.s, &["commit", "-qm", "leaks"], &[]);
    t.record(&out);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "deploy/values.yaml:2: holds the value of E2_KEY_299 (environment e2, base64,",
        "deploy/values.yaml:3: holds the value of DB_PASS (environment default, url-encoded",
        "settings.json:1: holds the value of QUOTED (environment default, escaped",
        "settings.json:1: holds the value of E1_KEY_150 (environment e1, plain",
    ] {
        assert!(err.contains(want), "{want}\n{err}");
    }
    assert_eq!(err.matches("holds the value of").count(), 4, "{err}");
    t.assert_no_value_shown();
}

/// The hook skips a staged blob only when its bytes are encrypted dotenv content as the value
/// scan defines it (`is_encrypted_dotenv`), the same test as before the index checks told the
/// scan which blobs are encrypted: a file that merely parses with valid sops metadata is still
/// searched (here its metadata is not within its last 64 lines, or it holds a NUL byte).
#[test]
fn hook_searches_a_dotenv_blob_that_is_not_encrypted_content_for_the_scan() {
    let mut t = Scan::new();
    t.s.ok(&["hook", "install"]);
    let encrypted = t.s.read(".env");
    // Metadata, then 70 comment lines: one holds a value.
    let mut trailing = encrypted.clone();
    trailing.push_str(&format!("# the old token was {TOKEN}\n"));
    for i in 0..70 {
        trailing.push_str(&format!("# note {i}\n"));
    }
    t.s.write(".env", trailing);
    // A copy of the encrypted file with a NUL byte in a comment and a value after it.
    t.s.write(".env.copy", format!("# \0 {DB_PASS}\n{encrypted}"));
    t.s.git(&["add", "-A"]);
    let out = t.run(&["hook", "pre-commit"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for (file, want) in [
        (
            "error: .env:",
            "holds the value of API_TOKEN (environment default, plain",
        ),
        (
            "error: .env.copy:1:",
            "holds the value of DB_PASS (environment default, plain",
        ),
    ] {
        assert!(
            err.lines().any(|l| l.starts_with(file) && l.contains(want)),
            "{file} {want}\n{err}"
        );
    }
    t.assert_no_value_shown();
}

/// The value scan reads the staged blob, not the working-tree file that the index checks may
/// read instead when its size, inode and modification time match the index entry: a plaintext
/// staged file whose working copy was overwritten in place with the encrypted file (same
/// size, modification time put back) is still found.
#[cfg(unix)]
#[test]
fn hook_value_scan_reads_the_staged_blob_not_a_stat_identical_working_file() {
    use std::io::Write;
    let mut t = Scan::new();
    let encrypted = t.s.read(".env");
    let mut plain = format!("API_TOKEN={TOKEN}\n#");
    plain.push_str(&"x".repeat(encrypted.len() - plain.len() - 1));
    plain.push('\n');
    assert_eq!(plain.len(), encrypted.len());
    t.s.write(".env", &plain);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    t.s.git(&["add", ".env"]);
    let path = t.s.repo.join(".env");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    f.write_all(encrypted.as_bytes()).unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    assert_eq!(t.s.git(&["show", ":.env"]), plain);
    let out = t.run(&["hook", "pre-commit"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(".env:1: holds the value of API_TOKEN (environment default, plain"),
        "{err}"
    );
    t.assert_no_value_shown();
}

#[test]
fn exec_redact_filters_split_values_and_stderr_and_keeps_the_exit_code() {
    let mut t = Scan::new();
    let (a, b) = TOKEN.split_at(9);
    let json = serde_json::to_string(QUOTED).unwrap();
    let script = format!(
        "printf 'start\\n'; printf 'token: {a}'; sleep 0.1; printf '{b} done\\n'; \
         printf 'err %s\\n' \"$DB_PASS\" >&2; printf '%s\\n' '{json}'; exit 3"
    );
    let out = t.s.run(&["exec", "--redact", "--", "sh", "-c", &script]);
    t.record(&out);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "start\ntoken: [redacted:API_TOKEN] done\n\"[redacted:QUOTED]\"\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "err [redacted:DB_PASS]\n"
    );

    // Without --redact nothing is filtered (exec is still exec).
    let out =
        t.s.run(&["exec", "--", "sh", "-c", "printf %s \"$API_TOKEN\""]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), TOKEN);
    t.assert_no_value_shown();
}

#[test]
fn exec_redact_streams_lines_and_forwards_signals() {
    let t = Scan::new();
    let script = "trap 'echo got-term; exit 7' TERM; echo \"ready $API_TOKEN\"; \
         while :; do sleep 0.02; done";
    let mut child =
        t.s.std_envv()
            .args(["exec", "--redact", "--", "sh", "-c", script])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    // The line arrives while the command still runs.
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready [redacted:API_TOKEN]\n");
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "got-term\n");
    assert_eq!(status.code(), Some(7));

    // SIGINT too, when envv has no terminal (CI).
    let mut child =
        t.s.std_envv()
            .args(["exec", "--redact", "--", "sh", "-c"])
            .arg("trap 'echo got-int; exit 9' INT; echo ready; while :; do sleep 0.02; done")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(child.wait().unwrap().code(), Some(9));
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "got-int\n");

    // A command ended by a signal: 128 + N.
    let out =
        t.s.run(&["exec", "--redact", "--", "sh", "-c", "kill -KILL $$"]);
    assert_eq!(out.status.code(), Some(137));
}

#[test]
fn github_actions_example_scans_history_and_redacts_test_output() {
    let s = Sandbox::new();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/github-actions");
    let workflow = std::fs::read_to_string(dir.join(".github/workflows/deploy.yml")).unwrap();
    assert!(workflow.contains("run: envv scan --history"), "{workflow}");
    assert!(workflow.contains("fetch-depth: 0"), "{workflow}");
    assert!(workflow.contains("--redact -- npm test"), "{workflow}");
    let key = fixtures().join("keys.txt");
    let run = |args: &[&str]| {
        s.envv_in(&dir)
            .env("ENVV_AGE_KEY_FILE", &key)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["scan", "."]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let token =
        String::from_utf8(run(&["get", "-e", "production", "DEPLOY_TOKEN"]).stdout).unwrap();
    assert!(token.len() >= 8);
    let out = run(&[
        "exec",
        "-e",
        "production",
        "--redact",
        "--",
        "sh",
        "-c",
        "./deploy.sh && echo \"$DEPLOY_TOKEN\"",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("deploying as") && stdout.contains("[redacted:DEPLOY_TOKEN]"),
        "{stdout}"
    );
    assert!(!stdout.contains(token.trim_end_matches('\n')));
}

#[test]
fn hostile_names_and_globs_from_git_cannot_inject_or_escape() {
    let mut t = Scan::new();
    // A file name with a terminal escape sequence: shown escaped.
    t.s.write("evil\u{1b}[2Jname.txt", format!("{TOKEN}\n"));
    let out = t.run(&["scan"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!out.stdout.contains(&0x1b), "raw escape in the output");
    assert!(String::from_utf8_lossy(&out.stdout).contains("evil\\u{1b}[2Jname.txt:1:1: API_TOKEN"));
    // A glob that leaves the repository is refused.
    let policy = t.s.read(".sops.yaml");
    t.s.write(
        ".sops.yaml",
        policy.replacen(
            "envv:\n  version: 1\n",
            "envv:\n  version: 1\n  scan: { ignore: [\"../**\"] }\n",
            1,
        ),
    );
    let out = t.run(&["scan"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("envv.scan.ignore"));
    // A symlink to a file outside the repository is not followed.
    t.s.write(".sops.yaml", policy);
    std::fs::remove_file(t.s.repo.join("evil\u{1b}[2Jname.txt")).unwrap();
    let outside = t.s.tmp.path().join("outside.txt");
    std::fs::write(&outside, format!("{TOKEN}\n")).unwrap();
    std::os::unix::fs::symlink(&outside, t.s.repo.join("link.txt")).unwrap();
    t.expect(&["scan"], 0);
    t.assert_no_value_shown();
}

#[test]
fn values_of_a_subfolder_policy_are_searched_too() {
    let mut t = Scan::new();
    let api = t.s.repo.join("services/api");
    std::fs::create_dir_all(&api).unwrap();
    std::fs::copy(t.s.repo.join(".sops.yaml"), api.join(".sops.yaml")).unwrap();
    let set =
        t.s.envv_in(&api)
            .args(["set", "SVC_SECRET=svc-secret-value-123"])
            .output()
            .unwrap();
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    t.s.write("ops/notes.txt", "svc-secret-value-123\n");
    t.s.git(&["add", "-A"]);
    t.s.git(&["commit", "-qm", "api"]);
    let out = t.expect(&["scan"], 1);
    assert_eq!(
        lines(&out),
        ["ops/notes.txt:1:1: SVC_SECRET (environment services/api/.env, plain)"]
    );
    let out = t.expect(&["scan", "--history"], 1);
    assert!(out.starts_with("ops/notes.txt:1:1: SVC_SECRET"), "{out}");
    t.assert_no_value_shown();
}
