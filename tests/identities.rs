//! Identities beyond plain key files, run end to end: passphrase-protected (`age -p`) files on
//! a pseudo-terminal and without one.

use std::path::PathBuf;

use age::secrecy::ExposeSecret;

use crate::support::{missing_tool, Sandbox};

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
    let mut c = s.command("setsid");
    c.arg("-w")
        .arg(assert_cmd::cargo::cargo_bin("envv"))
        .args(["get", "A", "-i"])
        .arg(&id)
        .stdin(std::process::Stdio::null());
    let out = match c.output() {
        Ok(o) => o,
        Err(_) => {
            missing_tool("setsid", "util-linux");
            return;
        }
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("passphrase-protected"), "{err}");
    assert!(err.contains("no terminal"), "{err}");
    assert!(out.stdout.is_empty());
}

/// The TEST plugin binary (`tests/plugin/age-plugin-envvtest.rs`, a cargo example), built on
/// demand when the test run did not build examples, in a folder of its own for PATH.
fn test_plugin_dir() -> PathBuf {
    let bin_dir = assert_cmd::cargo::cargo_bin("envv")
        .parent()
        .unwrap()
        .to_path_buf();
    let built = bin_dir.join("examples/age-plugin-envvtest");
    if !built.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = std::process::Command::new(cargo)
            .args(["build", "--quiet", "--example", "age-plugin-envvtest"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(st.success(), "cannot build the test plugin");
    }
    built.parent().unwrap().to_path_buf()
}

/// (identity line, recipient) printed by the TEST plugin.
fn test_plugin_keys(dir: &std::path::Path) -> (String, String) {
    let out = std::process::Command::new(dir.join("age-plugin-envvtest"))
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let identity = text
        .lines()
        .find(|l| l.starts_with("AGE-PLUGIN-ENVVTEST-1"))
        .unwrap()
        .to_string();
    let recipient = text
        .lines()
        .find_map(|l| l.strip_prefix("# recipient: "))
        .unwrap()
        .to_string();
    (identity, recipient)
}

fn path_with(dir: &std::path::Path) -> std::ffi::OsString {
    let mut parts = vec![dir.to_path_buf()];
    parts.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(parts).unwrap()
}

#[test]
fn plugin_recipient_is_added_decrypts_and_survives_rotation() {
    let s = Sandbox::new();
    let plugins = test_plugin_dir();
    let (identity, recipient) = test_plugin_keys(&plugins);
    assert!(recipient.starts_with("age1envvtest1"), "{recipient}");
    let id_file = s.tmp.path().join("plugin-identity.txt");
    std::fs::write(&id_file, format!("# TEST plugin identity\n{identity}\n")).unwrap();
    let path = path_with(&plugins);

    s.init_alice();
    s.envv()
        .args(["set", "TOKEN"])
        .write_stdin("plugin-visible-value")
        .assert()
        .success();
    // member add wraps the data key through the plugin (its recipient half).
    s.envv()
        .env("PATH", &path)
        .args(["member", "add", "yubi", &recipient])
        .assert()
        .success();
    assert!(s.read(".env").contains("age1envvtest1"));
    // The plugin identity decrypts (its identity half), alone.
    let out = s
        .envv()
        .env("PATH", &path)
        .args(["get", "TOKEN", "-i", id_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        "plugin-visible-value"
    );

    // member rm of someone else rotates the data key and wraps the new one through the plugin.
    let (_, carol) = s.identity("carol");
    s.envv()
        .env("PATH", &path)
        .args(["member", "add", "carol", &carol])
        .assert()
        .success();
    let before = s.read(".env");
    s.envv()
        .env("PATH", &path)
        .args(["member", "rm", "carol"])
        .assert()
        .success();
    let after = s.read(".env");
    let enc = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("TOKEN="))
            .unwrap()
            .to_string()
    };
    assert_ne!(enc(&before), enc(&after), "member rm did not rotate");
    let out = s
        .envv()
        .env("PATH", &path)
        .args(["get", "TOKEN", "-i", id_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        "plugin-visible-value"
    );

    // member rm of the plugin member: its identity no longer opens the file.
    s.envv()
        .env("PATH", &path)
        .args(["member", "rm", "yubi"])
        .assert()
        .success();
    let out = s
        .envv()
        .env("PATH", &path)
        .args(["get", "TOKEN", "-i", id_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn missing_plugin_names_it_and_how_to_install() {
    let s = Sandbox::new();
    let plugins = test_plugin_dir();
    let (identity, recipient) = test_plugin_keys(&plugins);
    let id_file = s.tmp.path().join("plugin-identity.txt");
    std::fs::write(&id_file, format!("{identity}\n")).unwrap();
    s.init_alice();
    s.envv()
        .args(["set", "TOKEN"])
        .write_stdin("v")
        .assert()
        .success();
    // PATH without the plugin: adding its recipient fails and says what to install.
    let err = s.fails(&["member", "add", "yubi", &recipient], 2);
    assert!(err.contains("age-plugin-envvtest"), "{err}");
    assert!(err.contains("PATH"), "{err}");
    assert!(!s.read(".sops.yaml").contains("yubi"), "nothing half-done");

    s.envv()
        .env("PATH", path_with(&plugins))
        .args(["member", "add", "yubi", &recipient])
        .assert()
        .success();
    // Decrypting through the identity without its plugin.
    let out = s
        .envv()
        .args(["get", "TOKEN", "-i", id_file.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(err.contains("age-plugin-envvtest"), "{err}");
    assert!(err.contains("install"), "{err}");
}
