//! Test helpers: a hermetic temp HOME and git repository, the built binary, the real sops.
//!
//! Every test gets its own folder with `HOME`, `XDG_CONFIG_HOME` and `GIT_CONFIG_GLOBAL`
//! pointing inside it, and the `ENVV_*` / `SOPS_*` variables of the caller removed, so a
//! developer's own keys never take part.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;

/// Variables removed from every child process.
const CLEARED: &[&str] = &[
    "ENVV_ENV",
    "ENVV_AGE_KEY",
    "ENVV_AGE_KEY_FILE",
    "ENVV_EXPAND",
    "SOPS_AGE_KEY",
    "SOPS_AGE_KEY_FILE",
    "SOPS_AGE_KEY_CMD",
    "SOPS_AGE_RECIPIENTS",
    "SOPS_CONFIG",
    "GITHUB_ENV",
    "VISUAL",
    "EDITOR",
    "XDG_CONFIG_HOME",
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
];

/// A temp folder with a HOME and a git repository `repo/`.
pub struct Sandbox {
    pub tmp: tempfile::TempDir,
    pub home: PathBuf,
    pub repo: PathBuf,
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

impl Sandbox {
    /// A fresh sandbox with an empty git repository (user "Test User").
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let repo = tmp.path().join("repo");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&repo).unwrap();
        std::fs::write(
            tmp.path().join("gitconfig"),
            "[user]\n\tname = Test User\n\temail = test@example.com\n[init]\n\tdefaultBranch = main\n[commit]\n\tgpgsign = false\n",
        )
        .unwrap();
        let s = Sandbox { tmp, home, repo };
        s.git(&["init", "-q", "."]);
        s
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

    /// The envv binary as a std Command (for spawning without waiting: pids, signals,
    /// concurrency), with the same environment as [`Sandbox::envv`], run in `repo/`.
    pub fn std_envv(&self) -> std::process::Command {
        let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("envv"));
        for v in CLEARED {
            c.env_remove(v);
        }
        c.env("HOME", &self.home)
            .env("GIT_CONFIG_GLOBAL", self.tmp.path().join("gitconfig"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("TMPDIR", self.tmp_dir())
            .env("NO_COLOR", "1")
            .current_dir(&self.repo);
        c
    }

    /// Applies the sandbox environment to any command.
    pub fn hermetic(&self, c: &mut Command) {
        for v in CLEARED {
            c.env_remove(v);
        }
        c.env("HOME", &self.home)
            .env("GIT_CONFIG_GLOBAL", self.tmp.path().join("gitconfig"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("TMPDIR", self.tmp_dir())
            .env("NO_COLOR", "1");
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

    /// Runs git in the repo (the real CLI, as a user would); asserts success; returns stdout.
    pub fn git(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(&self.repo)
            .env("HOME", &self.home)
            .env("GIT_CONFIG_GLOBAL", self.tmp.path().join("gitconfig"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("PATH", path_with_envv())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
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
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "util-linux `script` is needed for the terminal tests under CI=true"
            );
            eprintln!("skipping the terminal part: util-linux `script` is not installed");
            return None;
        }
        let bin = assert_cmd::cargo::cargo_bin("envv");
        let mut c = std::process::Command::new("script");
        c.args(["-qec", &format!("{} {args}", bin.display()), "/dev/null"]);
        for (k, v) in self.std_envv().get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.envs(envs.iter().copied());
        c.current_dir(&self.repo)
            .stdin(std::process::Stdio::piped())
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

/// PATH with the built envv first (for git hooks, textconv and merge drivers).
pub fn path_with_envv() -> String {
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
    sops().and_then(|p| p.parent().map(Path::to_path_buf))
}

/// The real sops binary: `$ENVV_TEST_SOPS`, `sops` on PATH, or the peers cache. Under
/// `CI=true` a missing sops fails the test; elsewhere the caller skips.
pub fn sops() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("ENVV_TEST_SOPS").map(PathBuf::from),
        std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("sops"))
                .find(|p| p.is_file())
        }),
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/envv-peers/bin/sops")),
    ];
    let found = candidates.into_iter().flatten().find(|p| p.is_file());
    if found.is_none() && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("sops is required in CI (CI=true) but was not found: .ci/run installs it");
    }
    found
}

/// Runs the real sops with `SOPS_AGE_KEY_FILE=key` in `dir`; returns the output.
pub fn run_sops(sops: &Path, dir: &Path, key: &Path, args: &[&str]) -> Output {
    std::process::Command::new(sops)
        .args(args)
        .current_dir(dir)
        .env_remove("SOPS_AGE_KEY")
        .env_remove("SOPS_AGE_KEY_CMD")
        .env("SOPS_AGE_KEY_FILE", key)
        .env("HOME", dir)
        .output()
        .unwrap()
}
