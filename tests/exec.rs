//! exec, export, edit, completions and man, through the built binary.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;
use std::process::Stdio;

use crate::support::*;

/// Values that break naive quoting.
const TRICKY: &[(&str, &str)] = &[
    ("MULTI", "line one\nline two\n"),
    ("DOLLAR", "p@$$w0rd${HOME}$USER"),
    ("QUOTES", "it's \"quoted\" `tick`"),
    ("PERCENT", "50%25 off %0A"),
    ("SPACES", "  padded  "),
    ("EMPTY", ""),
    ("UNICODE", "héllo ✓ 🔑"),
];

fn with_tricky() -> Sandbox {
    with_tricky_and(|_| {})
}

/// Like `with_tricky`, with `prepare` run after `init` (before the file exists).
fn with_tricky_and(prepare: impl FnOnce(&Sandbox)) -> Sandbox {
    let s = Sandbox::new();
    s.init_alice();
    prepare(&s);
    for (k, v) in TRICKY {
        s.ok(&["set", k, v]);
    }
    s
}

/// Parses `env -0` output.
fn env0(out: &[u8]) -> BTreeMap<String, String> {
    out.split(|&b| b == 0)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let e = String::from_utf8(e.to_vec()).unwrap();
            let (k, v) = e.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// The environment `envv exec [args] -- env -0` gives the child.
fn child_env(s: &Sandbox, args: &[&str], outer: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut c = s.envv();
    c.arg("exec").args(args).args(["--", "env", "-0"]);
    for (k, v) in outer {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "exec failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    env0(&out.stdout)
}

/// Declares an environment read by the default group, by editing the policy by hand.
fn add_env(s: &Sandbox, name: &str) {
    let policy = s.read(".sops.yaml");
    let decl = format!(
        "  environments:\n    {name}:\n      file: \".env.{name}\"\n      readers: [team]\n"
    );
    assert!(policy.contains("  environments:\n"), "{policy}");
    s.write(".sops.yaml", policy.replacen("  environments:\n", &decl, 1));
}

fn write_script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn exec_injects_exact_values() {
    let s = with_tricky();
    let env = child_env(&s, &[], &[]);
    for (k, v) in TRICKY {
        assert_eq!(env.get(*k).map(String::as_str), Some(*v), "{k}");
    }
}

#[test]
fn exec_layers_and_existing_environment() {
    let s = Sandbox::new();
    s.init_alice();
    add_env(&s, "production");
    s.ok(&["set", "A=env", "B=env", "C=env", "D=env", "OUTER=file"]);
    s.ok(&["set", "-e", "production", "B=prod", "C=prod", "D=prod"]);
    s.write(".env.local", "C=local\nD='local'\n");
    s.write(".env.production.local", "export D=\"prod local\"\n");
    let env = child_env(&s, &["-e", "production"], &[("OUTER", "outer")]);
    let got: Vec<&str> = ["A", "B", "C", "D", "OUTER"]
        .iter()
        .map(|k| env[*k].as_str())
        .collect();
    assert_eq!(got, ["env", "prod", "local", "prod local", "outer"]);

    // Default environment: no production files.
    let env = child_env(&s, &[], &[]);
    assert_eq!((env["B"].as_str(), env["D"].as_str()), ("env", "local"));

    // --override: the file wins over the environment.
    let env = child_env(&s, &["--override"], &[("OUTER", "outer")]);
    assert_eq!(env["OUTER"], "file");

    // ENVV_ENV selects the environment like -e.
    let env = child_env(&s, &[], &[("ENVV_ENV", "production")]);
    assert_eq!(env["B"], "prod");

    // --only limits what is injected; an unknown key is an error naming it.
    let env = child_env(&s, &["--only", "A,C"], &[]);
    assert!(
        env.contains_key("A")
            && env.contains_key("C")
            && !env.contains_key("B")
            && !env.contains_key("D")
    );
    let err = s.fails(&["exec", "--only", "NOPE", "--", "true"], 1);
    assert!(err.contains("NOPE"), "{err}");
}

#[test]
fn exec_expand_is_opt_in() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&[
        "set",
        "HOST=db",
        "URL=postgres://${HOST}:$PORT/x",
        "LIT=\\$HOST",
    ]);
    let env = child_env(&s, &[], &[("PORT", "5432")]);
    assert_eq!(env["URL"], "postgres://${HOST}:$PORT/x");
    let env = child_env(&s, &["--expand"], &[("PORT", "5432")]);
    assert_eq!(env["URL"], "postgres://db:5432/x");
    assert_eq!(env["LIT"], "$HOST");
}

#[test]
fn exec_exit_codes_propagate() {
    let s = with_tricky();
    s.ok(&["exec", "--", "true"]);
    let err = s.fails(&["exec", "--", "sh", "-c", "exit 3"], 3);
    assert!(err.is_empty(), "{err}");
    let err = s.fails(&["exec", "--", "definitely-not-a-command-envv"], 127);
    assert!(
        err.contains("definitely-not-a-command-envv: command not found"),
        "{err}"
    );
    s.write("notexec.sh", "#!/bin/sh\necho hi\n");
    let err = s.fails(&["exec", "--", "./notexec.sh"], 126);
    assert!(
        err.contains("notexec.sh") && err.contains("chmod +x"),
        "{err}"
    );
    for (_, v) in TRICKY.iter().filter(|(_, v)| v.len() > 3) {
        assert!(!err.contains(v.trim()), "a value leaked into the error");
    }
    // Without an identity: exit 1, names the file and the readers, runs nothing.
    std::fs::remove_file(s.default_key()).unwrap();
    let err = s.fails(&["exec", "--", "sh", "-c", "echo ran"], 1);
    assert!(err.contains(".env") && err.contains("alice"), "{err}");
}

#[test]
fn exec_replaces_the_process_and_signals_reach_cmd() {
    let s = with_tricky();
    // Same pid: envv became the command.
    let child = s
        .std_envv()
        .args(["exec", "--", "sh", "-c", "echo $$"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        pid.to_string()
    );

    // SIGTERM sent to the pid envv started with reaches the command's trap.
    let marker = s.tmp.path().join("got-term");
    let script = format!(
        "trap 'echo term > {}; exit 7' TERM; echo ready; while :; do sleep 0.02; done",
        marker.display()
    );
    let mut child = s
        .std_envv()
        .args(["exec", "--", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(7));
    assert_eq!(std::fs::read_to_string(&marker).unwrap().trim(), "term");
}

/// Reads a `$GITHUB_ENV` file as the Actions runner does: `NAME=value` lines and
/// `NAME<<DELIM` ... `DELIM` heredocs, value lines joined with `\n`.
fn parse_github_env(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut lines = text.split('\n');
    while let Some(line) = lines.next() {
        if line.is_empty() {
            continue;
        }
        let eq = line.find('=');
        let heredoc = line.find("<<");
        match (eq, heredoc) {
            (Some(e), h) if h.is_none_or(|h| e < h) => {
                out.insert(line[..e].to_string(), line[e + 1..].to_string());
            }
            (_, Some(h)) => {
                let name = &line[..h];
                let delim = &line[h + 2..];
                assert!(!delim.is_empty());
                let mut value: Vec<&str> = Vec::new();
                loop {
                    let l = lines
                        .next()
                        .unwrap_or_else(|| panic!("{name}: heredoc delimiter not found"));
                    if l == delim {
                        break;
                    }
                    value.push(l);
                }
                out.insert(name.to_string(), value.join("\n"));
            }
            _ => panic!("invalid line {line:?}"),
        }
    }
    out
}

/// Unescapes workflow-command data as the runner does.
fn unescape_command(s: &str) -> String {
    s.replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%25", "%")
}

#[test]
fn export_github_round_trips_and_masks_every_line() {
    let s = with_tricky_and(|s| {
        let policy = s.read(".sops.yaml");
        s.write(
            ".sops.yaml",
            policy.replacen("envv:\n", "envv:\n  public: [\"^PORT$\"]\n", 1),
        );
        // A pattern written by hand is confirmed once.
        s.ok(&["--yes", "set", "PORT", "8080"]);
    });
    let gh = s.tmp.path().join("github_env");
    std::fs::write(&gh, "EARLIER=1\n").unwrap();
    let out = s
        .envv()
        .args(["export", "--format", "github"])
        .env("GITHUB_ENV", &gh)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let masks: Vec<String> = stdout
        .lines()
        .map(|l| {
            unescape_command(
                l.strip_prefix("::add-mask::")
                    .unwrap_or_else(|| panic!("unexpected stdout line {l:?}")),
            )
        })
        .collect();
    let parsed = parse_github_env(&std::fs::read_to_string(&gh).unwrap());
    assert_eq!(parsed["EARLIER"], "1");
    for (k, v) in TRICKY {
        assert_eq!(parsed.get(*k).map(String::as_str), Some(*v), "{k}");
        for line in v.split('\n').filter(|l| !l.trim().is_empty()) {
            assert!(masks.iter().any(|m| m == line), "{k}: line not masked");
        }
    }
    assert_eq!(parsed["PORT"], "8080");
    assert!(
        !masks.iter().any(|m| m == "8080"),
        "a public value was masked"
    );

    // Outside Actions: a clear error, nothing printed.
    let err = s.fails(&["export", "--format", "github"], 2);
    assert!(err.contains("GITHUB_ENV"), "{err}");
}

#[test]
fn export_shell_dotenv_and_json_read_back_the_same_values() {
    let s = with_tricky();
    // shell: eval'd by sh.
    let shell = s.ok(&["export", "--format", "shell"]);
    s.write("exported.sh", &shell);
    let out = std::process::Command::new("sh")
        .args(["-c", ". ./exported.sh && env -0"])
        .current_dir(&s.repo)
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success());
    let env = env0(&out.stdout);
    for (k, v) in TRICKY {
        assert_eq!(env.get(*k).map(String::as_str), Some(*v), "shell {k}");
    }
    // dotenv: read back by envv's own parser (exec -f on a plaintext file).
    let dotenv = s.ok(&["export", "--format", "dotenv"]);
    s.write("exported.env", &dotenv);
    let env = child_env(&s, &["-f", "exported.env"], &[]);
    for (k, v) in TRICKY {
        assert_eq!(env.get(*k).map(String::as_str), Some(*v), "dotenv {k}");
    }
    // json: an object of strings.
    let json: BTreeMap<String, String> =
        serde_json::from_str(&s.ok(&["export", "--format", "json", "--only", "MULTI,EMPTY"]))
            .unwrap();
    assert_eq!(json.len(), 2);
    assert_eq!(json["MULTI"], "line one\nline two\n");
    assert_eq!(json["EMPTY"], "");
}

#[test]
fn export_docker_and_k8s() {
    let s = with_tricky();
    let err = s.fails(&["export", "--format", "docker"], 2);
    assert!(
        err.contains("MULTI") && err.contains("line break") && !err.contains("line one"),
        "{err}"
    );
    let docker = s.ok(&[
        "export",
        "--format",
        "docker",
        "--only",
        "DOLLAR,QUOTES,SPACES",
    ]);
    assert_eq!(
        docker,
        "DOLLAR=p@$$w0rd${HOME}$USER\nQUOTES=it's \"quoted\" `tick`\nSPACES=  padded  \n"
    );

    let err = s.fails(&["export", "--format", "k8s"], 2);
    assert!(err.contains("--name"), "{err}");
    s.fails(&["export", "--format", "k8s", "--name", "Bad_Name"], 2);
    let manifest = s.ok(&[
        "export",
        "--format",
        "k8s",
        "--name",
        "app-secrets",
        "--namespace",
        "prod",
    ]);
    assert!(manifest.starts_with("apiVersion: v1\nkind: Secret\nmetadata:\n  name: app-secrets\n  namespace: \"prod\"\ntype: Opaque\ndata:\n"), "{manifest}");
    use base64::Engine;
    for (k, v) in TRICKY {
        let line = manifest
            .lines()
            .find(|l| l.starts_with(&format!("  {k}: ")))
            .unwrap_or_else(|| panic!("{k} missing"));
        let b64 = line.split_once(": ").unwrap().1.trim_matches('"');
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        assert_eq!(decoded, v.as_bytes(), "{k}");
    }
}

/// Stored line of `key` in the encrypted file.
fn stored_line(s: &Sandbox, file: &str, key: &str) -> Option<String> {
    s.read(file)
        .lines()
        .find(|l| l.starts_with(&format!("{key}=")))
        .map(str::to_string)
}

/// An editor script that records its last argument (the file, "$f"), the modes, then runs `body`.
fn editor(s: &Sandbox, body: &str) -> std::path::PathBuf {
    let rec = s.tmp.path().join("rec");
    std::fs::create_dir_all(&rec).unwrap();
    let path = s.tmp.path().join("editor.sh");
    let r = rec.display();
    write_script(
        &path,
        &format!("for f; do :; done\necho \"$f\" > {r}/path\nstat -c %a \"$f\" > {r}/file_mode\nstat -c %a \"$(dirname \"$f\")\" > {r}/dir_mode\ncp \"$f\" {r}/seen\n{body}\n"),
    );
    path
}

fn rec(s: &Sandbox, name: &str) -> String {
    std::fs::read_to_string(s.tmp.path().join("rec").join(name))
        .unwrap()
        .trim_end_matches('\n')
        .to_string()
}

#[test]
fn edit_reencrypts_only_what_changed() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&[
        "set",
        "KEEP=same",
        "CHANGE=old",
        "DROP=gone",
        "MULTI=\"a\\nb\"",
    ]);
    let keep_before = stored_line(&s, ".env", "KEEP").unwrap();
    let multi_before = stored_line(&s, ".env", "MULTI").unwrap();
    let ed = editor(&s, "sed -i -e 's/^CHANGE=.*/CHANGE=\"new value\"/' -e '/^DROP=/d' \"$f\"\nprintf '# a note\\nADDED=\"x $y\"\\n' >> \"$f\"");
    let out = s.envv().arg("edit").env("EDITOR", &ed).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What the editor saw: the decrypted file as dotenv, in a private file and folder.
    assert_eq!(
        rec(&s, "seen"),
        "KEEP=same\nCHANGE=old\nDROP=gone\nMULTI=\"a\\nb\""
    );
    assert_eq!(rec(&s, "file_mode"), "600");
    assert_eq!(rec(&s, "dir_mode"), "700");
    let temp = rec(&s, "path");
    if Path::new("/dev/shm").is_dir() {
        assert!(temp.starts_with("/dev/shm/"), "{temp}");
    }
    assert!(
        !Path::new(&temp).exists() && !Path::new(&temp).parent().unwrap().exists(),
        "temp file left behind"
    );

    assert_eq!(stored_line(&s, ".env", "KEEP").unwrap(), keep_before);
    assert_eq!(stored_line(&s, ".env", "MULTI").unwrap(), multi_before);
    assert!(stored_line(&s, ".env", "DROP").is_none());
    assert_eq!(s.ok(&["get", "CHANGE"]), "new value");
    assert_eq!(s.ok(&["get", "ADDED"]), "x $y");
    assert!(
        s.read(".env").lines().any(|l| l.starts_with("#ENC[")),
        "the comment is encrypted"
    );
    assert!(!s.read(".env").contains("a note"));
    let decrypted = s.ok(&["decrypt"]);
    assert!(decrypted.contains("# a note\nADDED="), "{decrypted}");

    // Saving without changes writes nothing.
    let before = s.read(".env");
    let ed = editor(&s, "true");
    let out = s.envv().arg("edit").env("EDITOR", &ed).output().unwrap();
    assert!(out.status.success());
    assert_eq!(s.read(".env"), before);
}

#[test]
fn edit_with_a_bad_line_aborts_and_keeps_the_file() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A=1", "B=2"]);
    let before = s.read(".env");
    let ed = editor(&s, "echo '1BAD=x' >> \"$f\"");
    let out = s
        .envv()
        .arg("edit")
        .env("VISUAL", format!("{} --flag-ignored", ed.display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(".env (edited):3:")
            && !err.contains("1BAD")
            && err.contains("starts with a digit")
            && err.contains("nothing changed"),
        "{err}"
    );
    assert_eq!(s.read(".env"), before);
    assert!(!Path::new(&rec(&s, "path")).exists());
}

#[test]
fn edit_removes_the_temp_file_when_the_editor_is_killed() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A=1"]);
    let before = s.read(".env");
    let ed = editor(&s, "echo 'A=2' > \"$f\"\nkill -KILL $$");
    let out = s.envv().arg("edit").env("EDITOR", &ed).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("killed by signal 9") && err.contains("nothing changed"),
        "{err}"
    );
    assert_eq!(s.read(".env"), before);
    assert!(!Path::new(&rec(&s, "path")).exists());
}

#[test]
fn edit_removes_the_temp_file_on_sigterm() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A=1"]);
    let before = s.read(".env");
    let ed = editor(&s, "echo 'A=2' > \"$f\"\necho ready\nexec sleep 30");
    let mut child = s
        .std_envv()
        .arg("edit")
        .env("EDITOR", &ed)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let temp = rec(&s, "path");
    assert!(Path::new(&temp).exists());
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!Path::new(&temp).exists(), "temp file left behind");
    assert_eq!(s.read(".env"), before);
}

#[test]
fn completions_and_man_page() {
    let s = Sandbox::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = s.ok(&["completions", shell]);
        assert!(out.contains("envv") && out.contains("export"), "{shell}");
    }
    let man = s.ok(&["man"]);
    assert!(man.contains(".TH envv 1") && man.contains("exec"), "{man}");
    let man = s.ok(&["man", "export"]);
    assert!(
        man.contains(".TH envv-export") && man.contains("github"),
        "{man}"
    );
    s.fails(&["man", "nope"], 2);
}

#[test]
fn examples_use_only_the_test_key_and_decrypt_with_it() {
    let s = Sandbox::new();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let key = fixtures().join("keys.txt");
    for (dir, env, probe) in [
        ("node-app", None, "GREETING"),
        ("docker", None, "DATABASE_URL"),
        ("github-actions", Some("production"), "DEPLOY_TOKEN"),
    ] {
        let d = examples.join(dir);
        let policy = std::fs::read_to_string(d.join(".sops.yaml")).unwrap();
        let keys: Vec<&str> = policy
            .split_whitespace()
            .filter(|w| w.starts_with("age1"))
            .collect();
        assert!(
            !keys.is_empty() && keys.iter().all(|k| *k == TEST_KEY_A_PUBLIC),
            "{dir}: only the TEST key may be used"
        );
        assert!(d.join("README.md").is_file(), "{dir}: README");
        let mut c = s.envv_in(&d);
        c.env("ENVV_AGE_KEY_FILE", &key).arg("exec");
        if let Some(e) = env {
            c.args(["-e", e]);
        }
        let out = c.args(["--", "printenv", probe]).output().unwrap();
        assert!(
            out.status.success(),
            "{dir}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stdout.is_empty(), "{dir}");
    }
}

#[test]
fn edit_creates_a_new_file_only_when_something_was_entered() {
    let s = Sandbox::new();
    s.init_alice();
    add_env(&s, "staging");
    let ed = editor(&s, "true");
    let out = s
        .envv()
        .args(["edit", "-e", "staging"])
        .env("EDITOR", &ed)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not created"));
    assert!(!s.repo.join(".env.staging").exists());
    assert_eq!(rec(&s, "seen"), "");

    let ed = editor(&s, "printf 'TOKEN=\"a b\"\\n' > \"$f\"");
    let out = s
        .envv()
        .args(["edit", "-e", "staging"])
        .env("EDITOR", &ed)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.ok(&["get", "-e", "staging", "TOKEN"]), "a b");
    // exec -e staging warns when the environment's file is missing, and still runs.
    std::fs::remove_file(s.repo.join(".env.staging")).unwrap();
    let out = s
        .envv()
        .args(["exec", "-e", "staging", "--", "true"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains(".env.staging (environment staging) does not exist"));
}

#[test]
fn edit_on_a_terminal_reopens_the_editor_after_a_bad_line() {
    // util-linux `script` gives envv a TTY.
    let Ok(script) = which("script") else {
        missing_tool("script", "util-linux");
        return;
    };
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A=1"]);
    let count = s.tmp.path().join("count");
    let ed = editor(
        &s,
        &format!(
            "n=$(cat {c} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {c}\nif [ $n = 1 ]; then echo '1BAD=x' >> \"$f\"; else sed -i 's/^1BAD=/GOOD=/' \"$f\"; fi",
            c = count.display()
        ),
    );
    let bin = assert_cmd::cargo::cargo_bin("envv");
    let out = s
        .command(script)
        .args(["-qec", &format!("{} edit", bin.display()), "/dev/null"])
        .env("EDITOR", &ed)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(b"y\n")?;
            child.wait_with_output()
        })
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(".env (edited):2:") && text.contains("reopen the editor"),
        "{text}"
    );
    assert_eq!(std::fs::read_to_string(&count).unwrap().trim(), "2");
    assert_eq!(s.ok(&["get", "GOOD"]), "x");
    assert_eq!(s.ok(&["get", "A"]), "1");
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    let path = std::env::var_os("PATH").ok_or(())?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}

#[test]
fn exec_with_env_skips_a_base_file_the_caller_cannot_read() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "BASE", "team only"]);
    s.ok(&["env", "add", "production", "--readers", "alice"]);
    s.ok(&["set", "-e", "production", "P", "prod value"]);
    let (bob, bob_pub) = s.identity("bob");
    s.ok(&["member", "add", "bob", &bob_pub, "--to", "production"]);
    let out = s
        .envv()
        .args([
            "exec",
            "-e",
            "production",
            "--",
            "sh",
            "-c",
            "printf '%s|%s' \"$P\" \"${BASE-unset}\"",
        ])
        .env("ENVV_AGE_KEY_FILE", &bob)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "prod value|unset");
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("skipped .env"));
    // Without -e the base file is the target itself: not readable is an error.
    let out = s
        .envv()
        .args(["exec", "--", "true"])
        .env("ENVV_AGE_KEY_FILE", &bob)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn exec_loads_several_files_in_order() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A=base", "B=base"]);
    s.write("extra.env", "B=extra\nC=extra\n");
    let out = s.ok(&[
        "exec",
        "-f",
        ".env",
        "-f",
        "extra.env",
        "--",
        "sh",
        "-c",
        "printf '%s %s %s' \"$A\" \"$B\" \"$C\"",
    ]);
    assert_eq!(out, "base extra extra");
    let err = s.fails(&["get", "-f", ".env", "-f", "extra.env", "A"], 2);
    assert!(err.contains("once"), "{err}");
}
