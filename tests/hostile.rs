//! A hostile repository: paths that reach out of it, a pre-commit hook that must see every
//! policy and file name, crashes that must leave no plaintext, and errors that must not echo
//! a pasted secret. The attacker pushes commits and holds no private key.

use crate::support::*;

/// A hand-pasted connection string (a secret) on a line of its own in an encrypted file.
const PASTED: &str = "postgres://app:hunter2@db.example.com:5432/app?sslmode=require";

fn all_output(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn errors_never_echo_a_pasted_line() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A=1"]);
    let mut text = s.read(".env");
    let line = text.lines().count() + 1;
    text.push_str(PASTED);
    text.push('\n');
    s.write(".env", text);
    for args in [
        &["get", "A"][..],
        &["exec", "--", "true"],
        &["decrypt"],
        &["set", "C=2"],
        &["check"],
        &["ls"],
        &["ls", "--json"],
    ] {
        let out = s.run(args);
        let shown = all_output(&out);
        for part in ["hunter2", "postgres", "db.example", "sslmode"] {
            assert!(
                !shown.contains(part),
                "envv {args:?} printed part of the pasted line ({part}):\n{shown}"
            );
        }
        if !["ls"].contains(&args[0]) {
            assert!(
                shown.contains(&format!(".env:{line}")),
                "envv {args:?} names the file and line {line}:\n{shown}"
            );
        }
    }
}

#[test]
fn a_pasted_private_key_is_not_echoed_as_a_recipient() {
    let s = Sandbox::new();
    s.init_alice();
    let keys = std::fs::read_to_string(fixtures().join("keys.txt")).unwrap();
    let secret = keys
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .expect("the TEST identity in fixtures");
    let err = s.fails(&["member", "add", "bob", secret], 2);
    let body = &secret["AGE-SECRET-KEY-1".len()..];
    for i in 0..body.len() - 3 {
        assert!(
            !err.contains(&body[i..i + 4]),
            "the error shows part of the private key:\n{err}"
        );
    }
    assert!(err.contains("not a recipient"), "{err}");
}

fn symlink(target: impl AsRef<std::path::Path>, at: impl AsRef<std::path::Path>) {
    std::os::unix::fs::symlink(target, at).unwrap();
}

/// envv with the sandbox environment under `sh -c "PREFIX envv ARGS"`, where PREFIX sets
/// limits and ends in `exec` (or `exec timeout N`).
fn envv_limited(s: &Sandbox, prefix: &str, args: &[&str]) -> std::process::Output {
    s.command("sh")
        .arg("-c")
        .arg(format!("{prefix} \"$0\" \"$@\""))
        .arg(assert_cmd::cargo::cargo_bin("envv"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_committed_symlink_to_another_projects_file_is_refused() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["env", "add", "shared"]);
    s.ok(&["set", "-e", "shared", "TOKEN=theirs"]);
    let other = s.tmp.path().join("other-project");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::rename(s.repo.join(".env.shared"), other.join(".env")).unwrap();
    symlink("../other-project/.env", s.repo.join(".env.shared"));
    let before = std::fs::read(other.join(".env")).unwrap();
    for args in [
        &["updatekeys"][..],
        &["updatekeys", "--check"],
        &["check"],
        &["get", "-e", "shared", "TOKEN"],
        &["ls", "-e", "shared"],
        &["set", "-e", "shared", "X=1"],
        &["get", "-f", ".env.shared", "TOKEN"],
    ] {
        let out = s.run(args);
        let shown = all_output(&out);
        assert!(!out.status.success(), "envv {args:?} succeeded:\n{shown}");
        assert!(
            shown.contains(".env.shared") && shown.contains("out of the repository"),
            "envv {args:?} names the link:\n{shown}"
        );
        assert!(!shown.contains("theirs"), "{shown}");
    }
    assert_eq!(std::fs::read(other.join(".env")).unwrap(), before);
    assert!(std::fs::symlink_metadata(s.repo.join(".env.shared"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn a_symlinked_folder_is_not_written_through() {
    let s = Sandbox::new();
    s.init_alice();
    std::fs::create_dir_all(s.repo.join("sib")).unwrap();
    s.ok(&["env", "add", "sib", "--file", "sib/.env"]);
    s.ok(&["set", "-e", "sib", "A=1"]);
    let other = s.tmp.path().join("other");
    std::fs::rename(s.repo.join("sib"), &other).unwrap();
    symlink("../other", s.repo.join("sib"));
    let before = std::fs::read(other.join(".env")).unwrap();
    for args in [
        &["set", "-e", "sib", "A=2"][..],
        &["rm", "-e", "sib", "A"],
        &["updatekeys"],
        &["get", "-e", "sib", "A"],
        &["encrypt", "-e", "sib"],
    ] {
        let out = s.run(args);
        let shown = all_output(&out);
        assert!(!out.status.success(), "envv {args:?} succeeded:\n{shown}");
        assert!(
            shown.contains("sib") && shown.contains("out of the repository"),
            "envv {args:?} names the folder:\n{shown}"
        );
    }
    assert_eq!(std::fs::read(other.join(".env")).unwrap(), before);
}

#[test]
#[cfg(target_os = "linux")] // /proc, GNU timeout
fn devices_and_fifos_are_refused_with_bounded_memory() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["env", "add", "zero"]);
    s.ok(&["env", "add", "fifo"]);
    symlink("/dev/zero", s.repo.join(".env.zero"));
    let fifo = std::process::Command::new("mkfifo")
        .arg(s.repo.join(".env.fifo"))
        .status()
        .unwrap();
    assert!(fifo.success());
    // 1 GiB of address space and 60 s: reading /dev/zero to the end exceeds both.
    let limits = "ulimit -v 1048576; ulimit -t 60";
    for (args, want) in [
        (&["check"][..], &[".env.zero", ".env.fifo"][..]),
        (&["ls", "-e", "zero"], &[".env.zero"]),
        (&["updatekeys", "--check"], &[".env.zero", ".env.fifo"]),
        (&["ls", "-e", "fifo"], &["FIFO"]),
        (&["get", "-f", "/dev/zero", "A"], &["device"]),
        (&["exec", "-f", "/dev/zero", "--", "true"], &["device"]),
    ] {
        let out = envv_limited(&s, &format!("{limits}; exec timeout 60"), args);
        let shown = all_output(&out);
        assert!(
            matches!(out.status.code(), Some(1) | Some(2)),
            "envv {args:?} exited {:?} (killed, out of memory or hung?):\n{shown}",
            out.status
        );
        assert!(
            want.iter().any(|w| shown.contains(w)),
            "envv {args:?} names {want:?}:\n{shown}"
        );
    }
}

#[test]
fn policy_paths_that_climb_out_or_are_absolute_are_refused() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["env", "add", "shared"]);
    let policy = s.read(".sops.yaml");
    for bad in ["../other/.env", "/etc/passwd", "sub/../../x.env"] {
        s.write(
            ".sops.yaml",
            policy.replace("file: \".env.shared\"", &format!("file: \"{bad}\"")),
        );
        for args in [
            &["get", "-e", "shared", "A"][..],
            &["check"],
            &["updatekeys"],
        ] {
            let out = s.run(args);
            let shown = all_output(&out);
            assert!(!out.status.success(), "envv {args:?} with {bad}:\n{shown}");
            assert!(shown.contains(bad), "envv {args:?} names {bad}:\n{shown}");
        }
    }
    // An explicit file outside the repository stays readable.
    let outside = s.tmp.path().join("x.env");
    std::fs::write(&outside, "A=outside\n").unwrap();
    s.write(".sops.yaml", policy);
    let out = s.ok(&[
        "exec",
        "-f",
        outside.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "printf %s \"$A\"",
    ]);
    assert_eq!(out, "outside");
}

fn write_script(path: &std::path::Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// An editor that records the scratch path, its own pid and envv's core limit in `rec/`,
/// says `ready` on stdout, and waits.
fn waiting_editor(s: &Sandbox) -> (std::path::PathBuf, std::path::PathBuf) {
    let rec = s.tmp.path().join("rec");
    std::fs::create_dir_all(&rec).unwrap();
    let path = s.tmp.path().join("editor.sh");
    let r = rec.display();
    write_script(
        &path,
        &format!("for f; do :; done\necho \"$f\" > {r}/path\necho $$ > {r}/editor_pid\ncat /proc/$PPID/limits > {r}/limits\necho ready\nexec sleep 30\n"),
    );
    (path, rec)
}

fn read_ready(child: &mut std::process::Child) {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
}

/// `sh -c "ulimit -c unlimited; exec envv ARGS"` with the sandbox environment, spawned, stdout
/// and stderr piped.
fn spawn_with_cores(
    s: &Sandbox,
    args: &[&str],
    extra: &[(&str, &std::path::Path)],
) -> std::process::Child {
    let mut c = s.command("sh");
    c.arg("-c")
        // Where the hard limit forbids `unlimited`, as high as it allows.
        .arg("ulimit -c unlimited 2>/dev/null || ulimit -c \"$(ulimit -H -c)\"; exec \"$0\" \"$@\"")
        .arg(assert_cmd::cargo::cargo_bin("envv"))
        .args(args);
    for (k, v) in extra {
        c.env(k, v);
    }
    c.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn kill(sig: &str, pid: u32) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Core files in `dir` (for a plain `core_pattern` such as `core` or `core.%p`).
fn core_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n == "core" || n.starts_with("core."))
        .collect()
}

#[test]
#[cfg(target_os = "linux")] // /proc, GNU timeout
fn sigquit_during_edit_leaves_no_core_and_no_scratch_file() {
    use std::os::unix::process::ExitStatusExt;
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A=hunter2"]);
    let (ed, rec) = waiting_editor(&s);
    let mut child = spawn_with_cores(&s, &["edit"], &[("EDITOR", &ed)]);
    read_ready(&mut child);
    let scratch = std::fs::read_to_string(rec.join("path")).unwrap();
    let scratch = std::path::Path::new(scratch.trim());
    assert!(scratch.exists());
    // The core size limit of envv itself (read by its child, the editor, from /proc).
    let limits = std::fs::read_to_string(rec.join("limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    let soft = core.split_whitespace().nth(4).unwrap();
    assert_eq!(soft, "0", "core limit of envv edit: {core}");
    kill("-QUIT", child.id());
    let out = child.wait_with_output().unwrap();
    let editor_pid = std::fs::read_to_string(rec.join("editor_pid")).unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-KILL", editor_pid.trim()])
        .status();
    assert!(
        !out.status.core_dumped(),
        "a core was dumped: {:?}",
        out.status
    );
    assert_eq!(
        out.status.code(),
        Some(128 + 3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!scratch.exists(), "scratch file left behind");
    assert!(
        !scratch.parent().unwrap().exists(),
        "scratch folder left behind"
    );
    assert_eq!(core_files(&s.repo), Vec::<String>::new());
}

#[test]
#[cfg(target_os = "linux")] // /proc, GNU timeout
fn sigquit_of_a_decrypting_command_dumps_no_core() {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    let s = Sandbox::new();
    s.init_alice();
    // More plaintext than a pipe holds: `decrypt` blocks writing it while nobody reads.
    let big: Vec<String> = (0..4)
        .map(|i| format!("BIG{i}={}", "s".repeat(100_000)))
        .collect();
    let mut args = vec!["set"];
    args.extend(big.iter().map(String::as_str));
    s.ok(&args);
    let mut child = spawn_with_cores(&s, &["decrypt"], &[]);
    let mut first = [0u8; 16];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    // It has decrypted and is writing; give it time to fill the pipe and block.
    std::thread::sleep(std::time::Duration::from_millis(300));
    kill("-QUIT", child.id());
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(3), "{status:?}");
    assert!(!status.core_dumped(), "a core holding plaintext was dumped");
    assert_eq!(core_files(&s.repo), Vec::<String>::new());
}

#[test]
#[cfg(target_os = "linux")] // /proc, GNU timeout
fn scratch_folders_of_killed_edits_are_swept_and_reported() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A=hunter2"]);
    let (ed, rec) = waiting_editor(&s);
    for sweeper in [&["status"][..], &["edit"]] {
        let mut child = s
            .std_envv()
            .arg("edit")
            .env("EDITOR", &ed)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        read_ready(&mut child);
        let scratch = std::fs::read_to_string(rec.join("path")).unwrap();
        let folder = std::path::Path::new(scratch.trim())
            .parent()
            .unwrap()
            .to_path_buf();
        kill("-KILL", child.id());
        child.wait().unwrap();
        let editor_pid = std::fs::read_to_string(rec.join("editor_pid")).unwrap();
        kill("-KILL", editor_pid.trim().parse().unwrap());
        assert!(
            folder.exists(),
            "SIGKILL cannot be caught: the folder is left"
        );
        let out = s
            .envv()
            .args(sweeper)
            .env("EDITOR", "true")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !folder.exists(),
            "envv {sweeper:?} removes {}",
            folder.display()
        );
        assert!(
            err.contains("removed") && err.contains(&folder.display().to_string()),
            "envv {sweeper:?} says so:\n{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
    }
}

/// `git ARGS` in `dir` with the hook able to find envv; not asserted.
fn git_in(s: &Sandbox, dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    s.git_out(dir, args)
}

const ALWAYS: &str = "      freeze: [\"Mon 00:00 - Sun 23:59\"]";

#[test]
fn the_hook_sees_a_policy_in_a_subfolder() {
    let s = Sandbox::new();
    let app = s.repo.join("app");
    std::fs::create_dir_all(&app).unwrap();
    s.ok(&["keygen"]);
    let ok = |args: &[&str]| {
        let out = s.envv_in(&app).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", all_output(&out));
    };
    ok(&["init", "--name", "alice"]);
    // init writes the policy at the top of the work tree; this project keeps it in app/.
    std::fs::rename(s.repo.join(".sops.yaml"), app.join(".sops.yaml")).unwrap();
    ok(&["hook", "install"]);
    ok(&["env", "add", "prod", "--file", "secrets/prod.env"]);
    ok(&["set", "A=1"]);
    let out = git_in(&s, &s.repo, &["add", "app"]);
    assert!(out.status.success());
    let out = git_in(&s, &s.repo, &["commit", "-qm", "app policy"]);
    assert!(out.status.success(), "{}", all_output(&out));
    // Then the default environment of app/ is frozen the whole week.
    let policy = std::fs::read_to_string(app.join(".sops.yaml")).unwrap();
    let frozen = policy.replacen(
        "      readers: [team]",
        &format!("      readers: [team]\n{ALWAYS}"),
        1,
    );
    assert_ne!(frozen, policy);
    std::fs::write(app.join(".sops.yaml"), frozen).unwrap();
    git_in(&s, &s.repo, &["add", "app/.sops.yaml"]);
    let out = git_in(&s, &s.repo, &["commit", "-qm", "freeze"]);
    assert!(out.status.success(), "{}", all_output(&out));

    // A plaintext file the policy names (not a .env name), committed from the top.
    std::fs::create_dir_all(app.join("secrets")).unwrap();
    std::fs::write(app.join("secrets/prod.env"), "DB_PASSWORD=hunter2\n").unwrap();
    git_in(&s, &s.repo, &["add", "app/secrets/prod.env"]);
    let out = git_in(&s, &s.repo, &["commit", "-qm", "plaintext"]);
    let shown = all_output(&out);
    assert!(
        !out.status.success(),
        "a plaintext file was committed:\n{shown}"
    );
    assert!(
        shown.contains("app/secrets/prod.env") && shown.contains("not encrypted"),
        "{shown}"
    );
    assert!(!shown.contains("hunter2"), "{shown}");
    git_in(
        &s,
        &s.repo,
        &["rm", "-q", "--cached", "app/secrets/prod.env"],
    );

    // A change inside the freeze window, committed from the top.
    ok(&["set", "A=2"]);
    git_in(&s, &s.repo, &["add", "app/.env"]);
    let out = git_in(&s, &s.repo, &["commit", "-qm", "frozen change"]);
    let shown = all_output(&out);
    assert!(
        !out.status.success(),
        "a frozen change was committed:\n{shown}"
    );
    assert!(
        shown.contains("app/.env") && shown.contains("environment default is frozen"),
        "{shown}"
    );
}

#[test]
fn the_hook_checks_names_that_are_not_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["hook", "install"]);
    s.git(&["add", "-A"]);
    s.git(&["commit", "-qm", "policy"]);
    let keys = std::fs::read_to_string(fixtures().join("keys.txt")).unwrap();
    let secret = keys
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .unwrap();
    let name = std::ffi::OsStr::from_bytes(b"notes-\xff.txt");
    std::fs::write(s.repo.join(name), format!("my TEST key\n{secret}\n")).unwrap();
    let out = git_in(&s, &s.repo, &["add", "-A"]);
    assert!(out.status.success(), "{}", all_output(&out));
    let out = git_in(&s, &s.repo, &["commit", "-qm", "notes"]);
    let shown = all_output(&out);
    assert!(!out.status.success(), "an identity was committed:\n{shown}");
    assert!(
        shown.contains("notes-\\xff.txt:2") && shown.contains("age secret key"),
        "{shown}"
    );
    assert!(!shown.contains(&secret[16..24]), "{shown}");
    // A plaintext dotenv file with such a name.
    git_in(&s, &s.repo, &["rm", "-q", "--cached", "-r", "."]);
    std::fs::remove_file(s.repo.join(name)).unwrap();
    let name = std::ffi::OsStr::from_bytes(b".env.\xfe");
    std::fs::write(s.repo.join(name), "TOKEN=hunter2\n").unwrap();
    git_in(&s, &s.repo, &["add", "-A"]);
    let out = git_in(&s, &s.repo, &["commit", "-qm", "env"]);
    let shown = all_output(&out);
    assert!(
        !out.status.success(),
        "a plaintext file was committed:\n{shown}"
    );
    assert!(
        shown.contains(".env.\\xfe") && shown.contains("not encrypted"),
        "{shown}"
    );
}

#[test]
fn removing_the_freeze_window_with_the_frozen_change_does_not_pass() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["hook", "install"]);
    s.ok(&["set", "A=1"]);
    s.git(&["add", "-A"]);
    s.git(&["commit", "-qm", "secrets"]);
    let policy = s.read(".sops.yaml");
    let frozen = policy.replacen(
        "      readers: [team]",
        &format!("      readers: [team]\n{ALWAYS}"),
        1,
    );
    s.write(".sops.yaml", &frozen);
    s.git(&["add", "-A"]);
    s.git(&["commit", "-qm", "frozen"]);
    s.ok(&["set", "A=2"]);
    // The same commit drops the window (by hand) ...
    s.write(".sops.yaml", &policy);
    git_in(&s, &s.repo, &["add", "-A"]);
    let out = git_in(&s, &s.repo, &["commit", "-qm", "unfreeze and change"]);
    let shown = all_output(&out);
    assert!(!out.status.success(), "the frozen change passed:\n{shown}");
    assert!(
        shown.contains("environment default is frozen") && shown.contains("committed policy"),
        "{shown}"
    );
    // ... or deletes the policy altogether.
    git_in(&s, &s.repo, &["rm", "-q", "--cached", ".sops.yaml"]);
    let out = git_in(&s, &s.repo, &["commit", "-qm", "no policy and change"]);
    let shown = all_output(&out);
    assert!(!out.status.success(), "the frozen change passed:\n{shown}");
    assert!(shown.contains("environment default is frozen"), "{shown}");
    // An override still lets a hotfix through.
    let out = s
        .git_cmd(&s.repo)
        .args(["commit", "-qm", "hotfix"])
        .env("ENVV_FREEZE_OVERRIDE", "incident 7")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", all_output(&out));
}

#[test]
fn a_huge_rule_regex_in_a_file_is_refused_as_too_large() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["set", "A=1"]);
    let text = s.read(".env");
    let hostile = text.replace(
        "sops_unencrypted_suffix=_unencrypted",
        "sops_encrypted_regex=(\\w{100}){100}",
    );
    assert_ne!(hostile, text);
    s.write(".env", hostile);
    let started = std::time::Instant::now();
    let err = s.fails(&["ls"], 2);
    assert!(
        err.contains(".env") && err.contains("too large"),
        "{err} (after {:?})",
        started.elapsed()
    );
}

#[test]
fn a_staged_name_with_a_newline_cannot_forge_a_line_of_the_hook_output() {
    let s = Sandbox::new();
    s.init_alice();
    s.ok(&["hook", "install"]);
    s.git(&["add", "-A"]);
    s.git(&["commit", "-qm", "policy"]);
    let keys = std::fs::read_to_string(fixtures().join("keys.txt")).unwrap();
    let secret = keys
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .unwrap();
    let name = "notes\n  hint: all clear, commit with --no-verify\n.txt";
    std::fs::write(s.repo.join(name), format!("my TEST key\n{secret}\n")).unwrap();
    let out = git_in(&s, &s.repo, &["add", "-A"]);
    assert!(out.status.success(), "{}", all_output(&out));
    let out = git_in(&s, &s.repo, &["commit", "-qm", "notes"]);
    let shown = all_output(&out);
    assert!(!out.status.success(), "an identity was committed:\n{shown}");
    assert!(shown.contains("age secret key"), "{shown}");
    assert!(
        !shown
            .lines()
            .any(|l| l.trim_start().starts_with("hint: all clear")),
        "a line of the output came from the file name:\n{shown}"
    );
    assert!(shown.contains("notes\\u{a}  hint: all clear"), "{shown}");
}
