//! Snapshots of what a user sees: the full stdout, stderr and exit status of `--help` for every
//! command, of a first hour with envv, of each class of error, and of the reports (`status`,
//! `check`, `member ls`, `log`, `access`). The snapshot files are `tests/snapshots/*.snap`.
//!
//! Everything that differs between runs is replaced by a placeholder before comparing: the
//! sandbox's temp folder (`[SANDBOX]`), the fixture keys (`[KEY_A]`, `[KEY_B…]` shortened), any
//! other age public key (`[AGE_KEY]`), commit ids and keyed hashes (`[COMMIT]`, `[HEX]`),
//! ciphertext (`ENC[...]`), timestamps and today's date. Identities are the TEST keys of `tests/fixtures` and every commit
//! has the sandbox's fixed date, so what is left is the same on every machine.
//!
//! After an intended change of output, re-bless and review the diff:
//!
//! ```text
//! INSTA_UPDATE=always cargo test --test integration snapshots::
//! git diff tests/snapshots/
//! ```
//!
//! (`cargo insta test --review` does the same interactively where cargo-insta is installed.)
//! A new case writes `tests/snapshots/NAME.snap.new` and fails until it is accepted this way.

use std::path::Path;
use std::process::Output;

use clap::CommandFactory;

use crate::support::*;

/// The public key of the TEST identity in `tests/fixtures/keys_c.txt` (C).
const TEST_KEY_C_PUBLIC: &str = "age1fegtdccq5p3sdyexetszhunsl7fc52c0vg66h3rysrnjvyr7ws6swe6x5e";

/// The insta settings for one sandbox: where snapshots live and what is filtered.
fn settings(s: &Sandbox, shown: &str) -> insta::Settings {
    let mut set = insta::Settings::clone_current();
    set.set_snapshot_path("snapshots");
    set.set_prepend_module_to_snapshot(false);
    set.set_omit_expression(true);
    set.set_description(shown.to_string());
    let mut roots = vec![s.tmp.path().to_path_buf()];
    if let Ok(c) = s.tmp.path().canonicalize() {
        roots.push(c);
    }
    let mut filters: Vec<(String, String)> = roots
        .iter()
        .map(|r| (regex_escape(&r.display().to_string()), "[SANDBOX]".into()))
        .collect();
    let today = time::OffsetDateTime::now_utc().date().to_string();
    filters.extend(
        [
            (regex_escape(TEST_KEY_A_PUBLIC), "[KEY_A]"),
            (regex_escape(TEST_KEY_B_PUBLIC), "[KEY_B]"),
            (regex_escape(TEST_KEY_C_PUBLIC), "[KEY_C]"),
            (regex_escape(&short(TEST_KEY_A_PUBLIC)), "[KEY_A…]"),
            (regex_escape(&short(TEST_KEY_B_PUBLIC)), "[KEY_B…]"),
            (regex_escape(&short(TEST_KEY_C_PUBLIC)), "[KEY_C…]"),
            (r"age1[02-9ac-hj-np-z]{58}".into(), "[AGE_KEY]"),
            // Shortened keys in messages (age1q3…x7).
            (
                r"age1[02-9ac-hj-np-z]{1,8}…[02-9ac-hj-np-z]{1,8}".into(),
                "[AGE_KEY…]",
            ),
            (r"ENC\[[^\]]*\]".into(), "ENC[...]"),
            (r"\b[0-9a-f]{40}\b".into(), "[COMMIT]"),
            // Short commit ids (commits hold random ciphertext) and `diff`'s keyed hashes.
            (r"\b[0-9a-f]{7,12}\b".into(), "[HEX]"),
            (
                r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z".into(),
                "[TIMESTAMP]",
            ),
            (regex_escape(&today), "[TODAY]"),
        ]
        .map(|(r, t)| (r, t.to_string())),
    );
    for (r, t) in &filters {
        set.add_filter(r, t.as_str());
    }
    set
}

/// A key as messages shorten it: the first 8 and the last 4 characters (`age1abcd…wxyz`).
fn short(key: &str) -> String {
    format!("{}…{}", &key[..8], &key[key.len() - 4..])
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .map(|c| {
            if "\\.+*?()|[]{}^$#&-~".contains(c) {
                format!("\\{c}")
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// What a snapshot holds: the exit status, then stdout and stderr in full.
fn transcript(out: &Output) -> String {
    let status = match out.status.code() {
        Some(c) => format!("exit: {c}"),
        None => format!("exit: {:?}", out.status),
    };
    format!(
        "{status}\n----- stdout -----\n{}\n----- stderr -----\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Snapshots `envv ARGS` in the sandbox's repo under `name`.
fn snap(s: &Sandbox, name: &str, args: &[&str]) {
    let out = s.run(args);
    snap_output(s, name, &format!("envv {}", args.join(" ")), &out);
}

/// Snapshots an output already taken, described as `shown` (the command line).
fn snap_output(s: &Sandbox, name: &str, shown: &str, out: &Output) {
    settings(s, shown).bind(|| insta::assert_snapshot!(name.to_string(), transcript(out)));
}

/// A sandbox whose default identity is the TEST key A (deterministic public key).
fn with_key_a() -> Sandbox {
    let s = Sandbox::new();
    install_key(&s.default_key(), "keys.txt");
    s
}

fn install_key(to: &Path, fixture: &str) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(fixtures().join(fixture), to).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// alice (key A) with a policy and two secrets in `.env`, committed.
fn alice_repo() -> Sandbox {
    let s = with_key_a();
    s.ok(&["init", "--name", "alice"]);
    s.ok(&[
        "set",
        "DATABASE_URL=postgres://db.internal/app",
        "API_TOKEN=tok_0123",
    ]);
    s.git(&["add", "-A"]);
    s.git(&["commit", "-qm", "secrets"]);
    s
}

/// Every command and subcommand path, as `["member", "add"]`.
fn command_paths() -> Vec<Vec<String>> {
    fn walk(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
        for sub in cmd.get_subcommands().filter(|c| !c.is_hide_set()) {
            let mut path = prefix.to_vec();
            path.push(sub.get_name().to_string());
            out.push(path.clone());
            walk(sub, &path, out);
        }
    }
    let mut out = Vec::new();
    walk(&envv::cli::Cli::command(), &[], &mut out);
    out
}

#[test]
fn help_of_envv_and_of_every_command() {
    let s = Sandbox::new();
    snap(&s, "help_envv", &["--help"]);
    for path in command_paths() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        snap(&s, &format!("help_{}", path.join("_")), &args);
    }
}

/// Every command's long help has an example that is a command line (a line starting with
/// `envv `), and no line of help is longer than the 100 columns clap wraps at.
#[test]
fn every_help_has_an_envv_example_and_fits_100_columns() {
    let s = Sandbox::new();
    let mut paths = command_paths();
    paths.push(Vec::new());
    for path in paths {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = s.ok(&args);
        let examples = help
            .split_once("\nExample")
            .map(|(_, e)| e)
            .unwrap_or_else(|| panic!("envv {args:?} has no Example(s) section:\n{help}"));
        assert!(
            examples
                .lines()
                .any(|l| l.trim_start().starts_with("envv ")),
            "envv {args:?}: no example line starts with `envv `:\n{help}"
        );
        for line in help.lines() {
            assert!(
                line.chars().count() <= 100,
                "envv {args:?}: line over 100 columns: {line:?}"
            );
        }
    }
}

/// `envv --help` lists every command under exactly one heading, and nothing else.
#[test]
fn envv_help_lists_each_command_under_one_heading() {
    use envv::cli::COMMAND_HEADINGS;
    let mut listed: Vec<&str> = COMMAND_HEADINGS
        .iter()
        .flat_map(|(_, names)| names.iter().copied())
        .collect();
    listed.sort_unstable();
    let mut all: Vec<String> = envv::cli::Cli::command()
        .get_subcommands()
        .filter(|c| !c.is_hide_set())
        .map(|c| c.get_name().to_string())
        .chain(["help".to_string()])
        .collect();
    all.sort_unstable();
    assert_eq!(listed, all);
    let help = Sandbox::new().ok(&["--help"]);
    for (heading, names) in COMMAND_HEADINGS {
        let block = help
            .split_once(&format!("\n{heading}:\n"))
            .unwrap_or_else(|| panic!("no heading {heading}:\n{help}"))
            .1;
        for name in *names {
            assert!(
                block.starts_with(&format!("  {name} ")) || block.contains(&format!("\n  {name} ")),
                "{name} not under {heading}:\n{help}"
            );
        }
    }
    clap::Command::debug_assert(envv::cli::command());
}

#[test]
fn first_use_keygen_init_set_get() {
    let s = Sandbox::new();
    snap(&s, "first_use_1_keygen", &["keygen"]);
    snap(&s, "first_use_2_init", &["init"]);
    snap(
        &s,
        "first_use_3_set",
        &["set", "DATABASE_URL=postgres://db.internal/app"],
    );
    snap(&s, "first_use_4_get", &["get", "DATABASE_URL"]);
    snap(&s, "first_use_5_ls", &["ls"]);
    snap(&s, "first_use_6_status", &["status"]);
}

#[test]
fn reports_status_check_member_ls_log_access() {
    let s = alice_repo();
    s.ok(&["member", "add", "bob", TEST_KEY_B_PUBLIC]);
    s.ok(&["env", "add", "production", "--readers", "alice"]);
    s.ok(&["set", "-e", "production", "STRIPE_KEY=sk_live_0123"]);
    s.git(&["add", "-A"]);
    s.git(&["commit", "-qm", "bob joins; production"]);
    s.ok(&["set", "API_TOKEN=tok_4567"]);
    s.git(&["commit", "-qam", "rotate the API token"]);
    snap(&s, "status", &["status"]);
    snap(&s, "check", &["check"]);
    snap(&s, "member_ls", &["member", "ls"]);
    snap(&s, "whoami", &["whoami"]);
    snap(&s, "log", &["log"]);
    snap(&s, "log_key", &["log", "API_TOKEN"]);
    snap(&s, "access", &["access"]);
    snap(&s, "env_ls", &["env", "ls"]);
    snap(&s, "diff", &["diff", "default", "production"]);
}

#[test]
fn hook_refuses_a_staged_plaintext_file() {
    let s = alice_repo();
    s.write(
        ".env.staging",
        "DATABASE_URL=postgres://db.internal/staging
",
    );
    s.git(&["add", "-f", ".env.staging"]);
    snap(&s, "hook_refuses_plaintext", &["hook", "pre-commit"]);
}

#[test]
fn running_exec_and_export() {
    let s = alice_repo();
    snap(
        &s,
        "exec_printenv",
        &[
            "exec",
            "--only",
            "DATABASE_URL",
            "--",
            "printenv",
            "DATABASE_URL",
        ],
    );
    snap(
        &s,
        "exec_command_not_found",
        &["exec", "--", "no-such-command"],
    );
    snap(&s, "export_shell", &["export", "--format", "shell"]);
}

#[test]
fn version() {
    snap(&Sandbox::new(), "version", &["--version"]);
}

#[test]
fn error_no_policy() {
    let s = with_key_a();
    snap(&s, "status_no_policy", &["status"]);
    snap(&s, "error_no_policy_set", &["set", "A=1"]);
    snap(&s, "error_no_policy_access", &["access"]);
}

#[test]
fn error_unknown_environment() {
    let s = alice_repo();
    snap(
        &s,
        "error_unknown_env",
        &["get", "-e", "prod", "DATABASE_URL"],
    );
}

#[test]
fn error_key_not_found() {
    let s = alice_repo();
    snap(&s, "error_key_not_found", &["get", "DATABSE_URL"]);
}

#[test]
fn error_file_not_encrypted() {
    let s = with_key_a();
    s.ok(&["init", "--name", "alice"]);
    s.write(".env", "DATABASE_URL=postgres://db.internal/app\n");
    snap(&s, "error_not_encrypted", &["get", "DATABASE_URL"]);
}

#[test]
fn error_no_identity() {
    let s = alice_repo();
    let out = s
        .envv_as(&s.tmp.path().join("newcomer"))
        .args(["get", "DATABASE_URL"])
        .output()
        .unwrap();
    snap_output(
        &s,
        "error_no_identity",
        "envv get DATABASE_URL  (as a user without keys)",
        &out,
    );
    // An identity that is not a reader.
    let c = s.tmp.path().join("carol.key");
    install_key(&c, "keys_c.txt");
    let out = s
        .envv_as(&s.tmp.path().join("carol"))
        .args(["-i", c.to_str().unwrap(), "get", "DATABASE_URL"])
        .output()
        .unwrap();
    snap_output(
        &s,
        "error_not_a_reader",
        "envv -i carol.key get DATABASE_URL",
        &out,
    );
}

#[test]
fn error_mac_mismatch() {
    let s = alice_repo();
    let text = s.read(".env");
    let edited: String = text
        .lines()
        .filter(|l| !l.starts_with("API_TOKEN="))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(edited, text);
    s.write(".env", edited);
    snap(&s, "error_mac_mismatch", &["get", "DATABASE_URL"]);
}

#[test]
fn error_parse_error_names_the_line() {
    let s = with_key_a();
    s.ok(&["init", "--name", "alice"]);
    s.write(".env", "A=1\n# a comment\n1BAD=sk_live_not_shown\n");
    snap(&s, "error_parse_line", &["encrypt"]);
    s.write(".env", "A=1\nsk_live_pasted_without_a_key\n");
    snap(&s, "error_parse_line_without_equals", &["encrypt"]);
}

#[test]
fn error_stale_reader() {
    let s = alice_repo();
    s.ok(&["member", "add", "bob", TEST_KEY_B_PUBLIC]);
    let policy = s.read(".sops.yaml");
    let edited = policy.replace(
        &format!("      key: {TEST_KEY_B_PUBLIC}\n"),
        &format!("      key: {TEST_KEY_B_PUBLIC}\n      expires: 2020-01-31\n"),
    );
    assert_ne!(policy, edited);
    s.write(".sops.yaml", edited);
    snap(&s, "error_stale_reader", &["set", "NEW_SECRET=x"]);
}

#[test]
fn error_unconfirmed_reader() {
    let s = alice_repo();
    let policy = s.read(".sops.yaml");
    let poisoned = policy
        .replace(
            "  members:\n",
            &format!("  members:\n    mallory:\n      key: {TEST_KEY_C_PUBLIC}\n"),
        )
        .replace("team: [alice]", "team: [alice, mallory]");
    assert_ne!(policy, poisoned);
    s.write(".sops.yaml", poisoned);
    s.git(&["add", "-A"]);
    s.git(&[
        "commit",
        "-q",
        "--author",
        "Mallory <mallory@example.com>",
        "-m",
        "docs: typo",
    ]);
    // Adding a value gives nobody new the data key; re-wrapping or rotating would.
    snap(&s, "error_unconfirmed_reader_rotate", &["rotate"]);
    snap(&s, "error_unconfirmed_reader_updatekeys", &["updatekeys"]);
    snap(&s, "check_out_of_sync", &["check"]);
}

#[test]
fn usage_errors() {
    let s = alice_repo();
    snap(&s, "usage_missing_argument", &["get"]);
    snap(&s, "usage_unknown_command", &["frobnicate"]);
    snap(&s, "usage_unknown_flag", &["ls", "--colour"]);
    snap(
        &s,
        "usage_two_files",
        &["get", "-f", ".env", "-f", ".env", "A"],
    );
}
