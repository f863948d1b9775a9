//! Identities beyond plain key files, run end to end: passphrase-protected (`age -p`) files on
//! a pseudo-terminal and without one.

use std::path::PathBuf;

use age::secrecy::ExposeSecret;

use crate::support::Sandbox;

const TEST_PASSPHRASE: &str = "test-passphrase-not-secret";

/// A repository read by a fresh TEST identity, with `A` in `.env` and `B` in
/// `.env.production`; the identity is then moved into a passphrase-protected file (scrypt,
/// as `age -p` writes it) and the plain key file removed. Returns that file.
fn repo_with_passphrase_identity(s: &Sandbox) -> PathBuf {
    let id = age::x25519::Identity::generate();
    let key = s.default_key();
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    std::fs::write(
        &key,
        format!("# TEST identity\n{}\n", id.to_string().expose_secret()),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    s.ok(&["init", "--name", "alice"]);
    s.ok(&["env", "add", "production"]);
    s.envv()
        .args(["set", "A"])
        .write_stdin("value-a")
        .assert()
        .success();
    s.envv()
        .args(["set", "-e", "production", "B"])
        .write_stdin("value-b")
        .assert()
        .success();
    std::fs::remove_file(&key).unwrap();

    let mut recipient = age::scrypt::Recipient::new(TEST_PASSPHRASE.to_string().into());
    recipient.set_work_factor(10); // fast for tests; `age -p` uses ~1 s
    let enc = age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
        .unwrap();
    let mut out = Vec::new();
    let armor =
        age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor).unwrap();
    let mut w = enc.wrap_output(armor).unwrap();
    std::io::Write::write_all(
        &mut w,
        format!("{}\n", id.to_string().expose_secret()).as_bytes(),
    )
    .unwrap();
    w.finish().unwrap().finish().unwrap();
    let path = s.tmp.path().join("identity.age");
    std::fs::write(&path, out).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    path
}

fn prompts(screen: &str) -> usize {
    screen.matches("Type passphrase").count()
}

#[test]
fn passphrase_identity_prompts_once_for_several_files() {
    let s = Sandbox::new();
    let id = repo_with_passphrase_identity(&s);
    let Some((ok, screen)) = s.pty(
        &format!(
            "exec -i {} -f .env -f .env.production -- sh -c 'echo \"got:$A:$B\"'",
            id.display()
        ),
        &format!("{TEST_PASSPHRASE}\n"),
    ) else {
        return;
    };
    assert!(ok, "{screen}");
    assert!(screen.contains("got:value-a:value-b"), "{screen}");
    assert_eq!(prompts(&screen), 1, "{screen}");
}

#[test]
fn passphrase_identity_works_with_edit() {
    let s = Sandbox::new();
    let id = repo_with_passphrase_identity(&s);
    let editor = s.tmp.path().join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nprintf 'C=from-editor\\n' >> \"$1\"\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&editor, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let Some((ok, screen)) = s.pty_with(
        &format!("edit -i {}", id.display()),
        &format!("{TEST_PASSPHRASE}\n"),
        &[("EDITOR", editor.as_os_str())],
    ) else {
        return;
    };
    assert!(ok, "{screen}");
    assert_eq!(prompts(&screen), 1, "{screen}");
    let Some((ok, screen)) = s.pty(
        &format!("get C -i {}", id.display()),
        &format!("{TEST_PASSPHRASE}\n"),
    ) else {
        return;
    };
    assert!(ok, "{screen}");
    assert!(screen.contains("from-editor"), "{screen}");
}

#[test]
fn wrong_passphrase_is_an_error_not_a_loop() {
    let s = Sandbox::new();
    let id = repo_with_passphrase_identity(&s);
    let Some((ok, screen)) = s.pty(
        &format!(
            "exec -i {} -f .env -f .env.production -- true",
            id.display()
        ),
        "not-the-passphrase\n",
    ) else {
        return;
    };
    assert!(!ok, "{screen}");
    assert_eq!(prompts(&screen), 1, "{screen}");
    assert!(screen.contains("cannot decrypt"), "{screen}");
}

#[test]
fn passphrase_identity_without_a_terminal_fails_clearly() {
    let s = Sandbox::new();
    let id = repo_with_passphrase_identity(&s);
    // setsid: no controlling terminal at all, as in CI (a developer's terminal must not be used).
    let mut c = s.std_envv();
    let bin = c.get_program().to_owned();
    let mut setsid = std::process::Command::new("setsid");
    setsid.arg("-w").arg(bin).args(["get", "A", "-i"]).arg(&id);
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => setsid.env(k, v),
            None => setsid.env_remove(k),
        };
    }
    c = setsid;
    c.current_dir(&s.repo).stdin(std::process::Stdio::null());
    let out = match c.output() {
        Ok(o) => o,
        Err(_) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "util-linux setsid is needed under CI=true"
            );
            return;
        }
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("passphrase-protected"), "{err}");
    assert!(err.contains("no terminal"), "{err}");
    assert!(out.stdout.is_empty());
}
