//! Test helpers: one hermetic sandbox (a temp HOME and git repository), the built binary,
//! the real sops.
//!
//! Every child process a test starts (envv, git, sh, script, setsid ...) goes through
//! [`Sandbox::apply`]: the environment is cleared and only an allowlist is set, as jj's
//! `cli/tests/common/test_environment.rs` does. Nothing of the developer's or CI's
//! environment takes part: not their keys (`SOPS_AGE_KEY_FILE`, `~/.config/envv`), not their
//! git config, not `GIT_DIR`/`GIT_INDEX_FILE` of a hook that runs `cargo test`, not an
//! `ENVV_FREEZE_OVERRIDE` or `ENVV_FAULT_INJECT` left in a shell. A test that needs more says
//! so on the command (`.env(K, V)`) or once with [`Sandbox::add_env`].
#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

/// The fixed author and committer date of every commit a test makes (unless it sets its own).
pub const GIT_DATE: &str = "2001-02-03T04:05:06Z";

/// A temp folder with a HOME and a git repository `repo/`.
pub struct Sandbox {
    pub tmp: tempfile::TempDir,
    pub home: PathBuf,
    pub repo: PathBuf,
    /// Variables this test adds to every child (after the allowlist).
    extra: Vec<(OsString, OsString)>,
}

/// The public key of the TEST identity in `tests/fixtures/keys.txt` (A).
pub const TEST_KEY_A_PUBLIC: &str =
    "age1y7hpnjewjmlg9hz7yycl7mendl9zfzlgr7gh56px4tdrn7fvxehscrzh38";
/// The public key of the TEST identity in `tests/fixtures/keys_b.txt` (B).
pub const TEST_KEY_B_PUBLIC: &str =
    "age1j3s3hf8gl7ml3vkdu5nqtslaj4jp3uxvhs2cf002pmew2c3pnvzqmyh8jj";

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The variables every child gets for a user whose home is `home`: the XDG folders under it.
fn home_vars(home: &Path) -> [(&'static str, PathBuf); 5] {
    [
        ("HOME", home.to_path_buf()),
        ("XDG_CONFIG_HOME", home.join(".config")),
        ("XDG_DATA_HOME", home.join(".local/share")),
        ("XDG_STATE_HOME", home.join(".local/state")),
        ("XDG_CACHE_HOME", home.join(".cache")),
    ]
}

impl Sandbox {
    /// A fresh sandbox with an empty git repository (user "Test User", branch `main`).
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let repo = tmp.path().join("repo");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&repo).unwrap();
        // The global git config is this file, never the developer's. envv reads user.name from
        // it (`init`, `join`, `propose`), so it is a file of the sandbox, not /dev/null.
        std::fs::write(
            tmp.path().join("gitconfig"),
            "[user]\n\tname = Test User\n\temail = test@example.com\n[init]\n\tdefaultBranch = main\n[commit]\n\tgpgsign = false\n[tag]\n\tgpgsign = false\n",
        )
        .unwrap();
        let s = Sandbox {
            tmp,
            home,
            repo,
            extra: Vec::new(),
        };
        s.git(&["init", "-q", "."]);
        s
    }

    /// Adds a variable to every child this sandbox starts from now on.
    pub fn add_env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) {
        self.extra
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
    }

    /// The whole environment of a child: the allowlist, then [`Sandbox::add_env`]'s additions.
    pub fn vars(&self) -> Vec<(OsString, OsString)> {
        let mut v: Vec<(OsString, OsString)> = home_vars(&self.home)
            .into_iter()
            .map(|(k, p)| (k.into(), p.into_os_string()))
            .collect();
        let fixed = [
            ("PATH", OsString::from(path_with_envv())),
            ("TMPDIR", self.tmp_dir().into_os_string()),
            ("LANG", "C".into()),
            ("LC_ALL", "C".into()),
            ("TZ", "UTC".into()),
            ("TERM", "dumb".into()),
            // clap wraps help at COLUMNS when no terminal is attached.
            ("COLUMNS", "100".into()),
            ("NO_COLOR", "1".into()),
            ("GIT_CONFIG_GLOBAL", self.gitconfig().into_os_string()),
            ("GIT_CONFIG_NOSYSTEM", "1".into()),
            ("GIT_AUTHOR_NAME", "Test User".into()),
            ("GIT_AUTHOR_EMAIL", "test@example.com".into()),
            ("GIT_AUTHOR_DATE", GIT_DATE.into()),
            ("GIT_COMMITTER_NAME", "Test User".into()),
            ("GIT_COMMITTER_EMAIL", "test@example.com".into()),
            ("GIT_COMMITTER_DATE", GIT_DATE.into()),
        ];
        v.extend(fixed.into_iter().map(|(k, val)| (k.into(), val)));
        v.extend(self.extra.iter().cloned());
        v
    }

    /// Clears `c`'s environment and sets the sandbox's; runs it in `repo/`.
    pub fn apply(&self, c: &mut std::process::Command) {
        c.env_clear().envs(self.vars()).current_dir(&self.repo);
    }

    /// Any program with the sandbox environment, run in `repo/`.
    pub fn command(&self, program: impl AsRef<OsStr>) -> std::process::Command {
        let mut c = std::process::Command::new(program);
        self.apply(&mut c);
        c
    }

    /// The sandbox's global git config file.
    pub fn gitconfig(&self) -> PathBuf {
        self.tmp.path().join("gitconfig")
    }

    /// The envv binary, run in `repo/` with the sandbox's environment.
    pub fn envv(&self) -> Command {
        self.envv_in(&self.repo)
    }

    /// The envv binary run in `dir`.
    pub fn envv_in(&self, dir: &Path) -> Command {
        let mut c = Command::cargo_bin("envv").unwrap();
        self.hermetic(&mut c);
        c.current_dir(dir);
        c
    }

    /// The envv binary run in `repo/` as another user whose home is `home` (no keys unless
    /// the test puts some there).
    pub fn envv_as(&self, home: &Path) -> Command {
        let mut c = self.envv();
        for (k, v) in home_vars(home) {
            c.env(k, v);
        }
        c
    }

    /// The envv binary as a std Command (for spawning without waiting: pids, signals,
    /// concurrency), with the same environment as [`Sandbox::envv`], run in `repo/`.
    pub fn std_envv(&self) -> std::process::Command {
        self.command(assert_cmd::cargo::cargo_bin("envv"))
    }

    /// Applies the sandbox environment to an assert_cmd command.
    pub fn hermetic(&self, c: &mut Command) {
        c.env_clear().envs(self.vars());
    }

    /// A private TMPDIR inside the sandbox (tests grep it for leaked plaintext).
    pub fn tmp_dir(&self) -> PathBuf {
        let d = self.tmp.path().join("tmp");
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Runs envv with args and returns the output (no assertion).
    pub fn run(&self, args: &[&str]) -> Output {
        self.envv().args(args).output().unwrap()
    }

    /// Runs envv, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "envv {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs envv, asserts the exit code, returns stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "envv {args:?}: expected exit {code}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// git (the real CLI, as a user would, envv on PATH for hooks and drivers) in `dir`, with
    /// the sandbox environment; not run yet.
    pub fn git_cmd(&self, dir: &Path) -> std::process::Command {
        let mut c = self.command("git");
        c.current_dir(dir);
        c
    }

    /// Runs git with `args` in `dir`; returns the output without asserting.
    pub fn git_out(&self, dir: &Path, args: &[&str]) -> Output {
        self.git_cmd(dir).args(args).output().unwrap()
    }

    /// Runs git in `dir`; asserts success; returns stdout.
    pub fn git_in(&self, dir: &Path, args: &[&str]) -> String {
        let out = self.git_out(dir, args);
        assert!(
            out.status.success(),
            "git {args:?} in {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs git in the repo; asserts success; returns stdout.
    pub fn git(&self, args: &[&str]) -> String {
        self.git_in(&self.repo, args)
    }

    /// Writes a file relative to the repo.
    pub fn write(&self, rel: &str, text: impl AsRef<[u8]>) {
        let p = self.repo.join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(p, text).unwrap();
    }

    /// Reads a file relative to the repo.
    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.repo.join(rel)).unwrap()
    }

    /// Creates an identity file `name.key` outside the repo and returns (path, public key).
    pub fn identity(&self, name: &str) -> (PathBuf, String) {
        let path = self.tmp.path().join(format!("{name}.key"));
        let out = self.run(&["keygen", "-o", path.to_str().unwrap()]);
        assert!(out.status.success());
        (
            path,
            String::from_utf8(out.stdout).unwrap().trim().to_string(),
        )
    }

    /// `envv keygen` into the default key file, then `envv init --name alice`.
    /// Returns alice's public key.
    pub fn init_alice(&self) -> String {
        let public = self.ok(&["keygen"]).trim().to_string();
        self.ok(&["init", "--name", "alice"]);
        public
    }

    /// Runs `envv ARGS` on a pseudo-terminal (util-linux `script`) with the sandbox's
    /// environment, typing `input`. Returns (success, transcript without CRs), or None when
    /// `script` is not installed (a failure under `CI=true`).
    pub fn pty(&self, args: &str, input: &str) -> Option<(bool, String)> {
        self.pty_with(args, input, &[])
    }

    /// [`Sandbox::pty`] with extra environment variables.
    pub fn pty_with(
        &self,
        args: &str,
        input: &str,
        envs: &[(&str, &std::ffi::OsStr)],
    ) -> Option<(bool, String)> {
        use std::io::Write;
        if std::process::Command::new("script")
            .arg("--version")
            .output()
            .is_err()
        {
            missing_tool("script", "util-linux; it gives envv a terminal");
            return None;
        }
        let bin = assert_cmd::cargo::cargo_bin("envv");
        let mut c = self.command("script");
        c.args(["-qec", &format!("{} {args}", bin.display()), "/dev/null"]);
        c.envs(envs.iter().copied());
        c.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        Some((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).replace('\r', ""),
        ))
    }

    /// The default key file of the sandbox user.
    pub fn default_key(&self) -> PathBuf {
        self.home.join(".config/envv/keys.txt")
    }
}

/// PATH with the built envv first (for git hooks, textconv and merge drivers), then sops.
pub fn path_with_envv() -> String {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(build_path).clone()
}

fn build_path() -> String {
    let bin = assert_cmd::cargo::cargo_bin("envv");
    let dir = bin.parent().unwrap().to_path_buf();
    let mut parts = vec![dir];
    if let Some(s) = sops_dir() {
        parts.push(s);
    }
    let old = std::env::var_os("PATH").unwrap_or_default();
    parts.extend(std::env::split_paths(&old));
    std::env::join_paths(parts).unwrap().into_string().unwrap()
}

fn sops_dir() -> Option<PathBuf> {
    find_sops().and_then(|p| p.parent().map(Path::to_path_buf))
}

/// Whether this run is CI's (`CI=true`), where no test may skip for a missing tool.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A test part that needs `tool` cannot run: under `CI=true` this fails the test; elsewhere
/// it prints one line to stderr (visible in a plain `cargo test`) naming the test, the tool and
/// `how` to get it, and the caller skips that part.
pub fn missing_tool(tool: &str, how: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_string();
    assert!(
        !in_ci(),
        "{test}: {tool} is required under CI=true but was not found ({how})"
    );
    // Written to the real stderr, not through eprintln!, which the test harness captures and
    // hides for a passing test.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIP {test}: {tool} not found ({how}), the steps that need it did not run; under CI=true this fails"
    );
}

/// The real sops binary: `$ENVV_TEST_SOPS`, `sops` on PATH, or the peers cache. When it is
/// missing, [`missing_tool`] fails the test under `CI=true` and says that the caller skips.
pub fn sops() -> Option<PathBuf> {
    let found = find_sops();
    if found.is_none() {
        missing_tool("sops", "set ENVV_TEST_SOPS or put sops 3.11 on PATH");
    }
    found
}

fn find_sops() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("ENVV_TEST_SOPS").map(PathBuf::from),
        std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("sops"))
                .find(|p| p.is_file())
        }),
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/envv-peers/bin/sops")),
    ];
    candidates.into_iter().flatten().find(|p| p.is_file())
}

/// Runs the real sops with `SOPS_AGE_KEY_FILE=key` in `dir` (also its HOME), with nothing
/// else of the caller's environment but PATH; returns the output.
pub fn run_sops(sops: &Path, dir: &Path, key: &Path, args: &[&str]) -> Output {
    std::process::Command::new(sops)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("TZ", "UTC")
        .env("SOPS_AGE_KEY_FILE", key)
        .output()
        .unwrap()
}
