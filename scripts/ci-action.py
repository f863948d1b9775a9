#!/usr/bin/env python3
"""Runs action.yml the way a GitHub runner runs a composite action, on this machine.

Each step's `env:`, `working-directory:` and `run:` are taken from action.yml with the
`${{ inputs.* }}` and `${{ github.* }}` expressions filled in, and run with bash in a simulated
runner environment (RUNNER_TEMP, GITHUB_ENV, GITHUB_PATH, GITHUB_OUTPUT as temp files). Then the
file commands are checked: the PATH entry, the NAME<<DELIMITER entries in GITHUB_ENV, and the
::add-mask:: lines on stdout.

Usage: ENVV_BIN=target/release/envv python3 scripts/ci-action.py   (needs PyYAML)
"""
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.abspath(os.environ.get("ENVV_BIN", os.path.join(ROOT, "target/release/envv")))
VERSION = re.search(r'^version = "(.*)"$', open(os.path.join(ROOT, "Cargo.toml")).read(), re.M).group(1)
FAILED = []


def check(cond, what, detail=""):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        if detail:
            print(detail)
        FAILED.append(what)


def expand(text, inputs, github):
    def sub(m):
        scope, name = m.group(1), m.group(2)
        return {"inputs": inputs, "github": github}[scope].get(name, "")

    return re.sub(r"\$\{\{\s*(inputs|github)\.([A-Za-z_-]+)\s*\}\}", sub, str(text))


def run_action(with_, workspace, runner_temp, extra_env=None):
    """Runs every step of action.yml; returns (exit code, stdout, GITHUB_ENV, GITHUB_PATH, output)."""
    action = yaml.safe_load(open(os.path.join(ROOT, "action.yml")))
    inputs = {k: str(v.get("default", "")) for k, v in action["inputs"].items()}
    unknown = set(with_) - set(inputs)
    assert not unknown, f"not inputs of action.yml: {unknown}"
    inputs.update(with_)
    files = {n: os.path.join(runner_temp, n) for n in ("env", "path", "output")}
    for f in files.values():
        open(f, "w").close()
    github = {"action_path": ROOT, "action_repository": "OWNER/envv", "workspace": workspace}
    base_env = {
        "PATH": os.environ["PATH"],
        "HOME": os.path.join(runner_temp, "home"),
        "RUNNER_TEMP": runner_temp,
        "GITHUB_ENV": files["env"],
        "GITHUB_PATH": files["path"],
        "GITHUB_OUTPUT": files["output"],
        "GITHUB_ACTION_PATH": ROOT,
        "GITHUB_WORKSPACE": workspace,
        "GITHUB_ACTIONS": "true",
        "CI": "true",
    }
    # The toolchain stays where it is although HOME moves (rustup and cargo look under HOME).
    real_home = os.path.expanduser("~")
    base_env["RUSTUP_HOME"] = os.environ.get("RUSTUP_HOME", os.path.join(real_home, ".rustup"))
    base_env["CARGO_HOME"] = os.environ.get("CARGO_HOME", os.path.join(real_home, ".cargo"))
    base_env.update(extra_env or {})
    os.makedirs(base_env["HOME"], exist_ok=True)
    assert action["runs"]["using"] == "composite"
    out = ""
    code = 0
    for step in action["runs"]["steps"]:
        env = dict(base_env)
        env.update({k: expand(v, inputs, github) for k, v in step.get("env", {}).items()})
        cwd = os.path.join(workspace, expand(step.get("working-directory", "."), inputs, github))
        assert step["shell"] == "bash"
        p = subprocess.run(["bash", "-e", "-c", expand(step["run"], inputs, github)], cwd=cwd,
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out += p.stdout
        code = p.returncode
        if code:
            break
    read = lambda n: open(files[n]).read()
    return code, out, read("env"), read("path"), read("output")


def parse_github_env(text):
    """NAME<<DELIM / value lines / DELIM entries, as the runner reads them."""
    out, lines, i = {}, text.split("\n"), 0
    while i < len(lines):
        line = lines[i]
        if not line:
            i += 1
            continue
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)<<(.+)", line)
        if not m:
            name, _, value = line.partition("=")
            out[name] = value
            i += 1
            continue
        name, delim, value = m.group(1), m.group(2), []
        i += 1
        while lines[i] != delim:
            value.append(lines[i])
            i += 1
        out[name] = "\n".join(value)
        i += 1
    return out


def envv(args, cwd, home, stdin=None):
    env = {"PATH": os.environ["PATH"], "HOME": home, "GIT_CONFIG_NOSYSTEM": "1"}
    p = subprocess.run([BIN] + args, cwd=cwd, env=env, input=stdin, text=True, capture_output=True)
    assert p.returncode == 0, f"envv {args}: {p.stderr}"
    return p.stdout


def make_repo(tmp):
    """A repository with .env.production readable by a CI identity; returns (repo, identity)."""
    repo, home = os.path.join(tmp, "repo"), os.path.join(tmp, "devhome")
    os.makedirs(repo)
    os.makedirs(home)
    subprocess.run(["git", "init", "-q", repo], check=True)
    envv(["keygen"], repo, home)
    envv(["init", "--name", "dev"], repo, home)
    envv(["env", "add", "production"], repo, home)
    ci_key = os.path.join(tmp, "ci.key")
    ci_pub = envv(["keygen", "-o", ci_key], repo, home).strip()
    envv(["member", "add", "ci", ci_pub, "--to", "production"], repo, home)
    envv(["set", "-e", "production", "API_TOKEN=tok-123-secret", "PORT=8080"], repo, home)
    envv(["set", "-e", "production", "TLS_KEY"], repo, home, stdin="-----BEGIN KEY-----\nline-two-secret\n-----END KEY-----\n")
    return repo, open(ci_key).read()


def main():
    tmp = tempfile.mkdtemp(prefix="envv-action-")
    try:
        repo, identity = make_repo(tmp)
        expected = {"API_TOKEN": "tok-123-secret", "PORT": "8080",
                    "TLS_KEY": "-----BEGIN KEY-----\nline-two-secret\n-----END KEY-----"}
        identity_line = next(l for l in identity.splitlines() if l.startswith("AGE-SECRET-KEY-"))

        # 1. envv already in $RUNNER_TEMP/envv/bin (a cache hit): export into GITHUB_ENV.
        rt = os.path.join(tmp, "rt1")
        os.makedirs(os.path.join(rt, "envv/bin"))
        shutil.copy(BIN, os.path.join(rt, "envv/bin/envv"))
        code, out, genv, gpath, gout = run_action(
            {"environment": "production", "identity": identity}, repo, rt)
        check(code == 0, f"action runs (exit {code})", out)
        check(gpath.strip() == os.path.join(rt, "envv/bin"), "GITHUB_PATH gets the envv folder")
        check(gout.strip() == "envv=" + os.path.join(rt, "envv/bin/envv"), "output envv is the binary path")
        got = parse_github_env(genv)
        for k, v in expected.items():
            check(got.get(k) == v, f"GITHUB_ENV carries {k}")
        check(re.search(r"^API_TOKEN<<ghadelimiter_", genv, re.M) is not None, "values are heredoc entries")
        masks = {l[len("::add-mask::"):] for l in out.splitlines() if l.startswith("::add-mask::")}
        check(identity_line in masks, "the identity is masked")
        for v in ["tok-123-secret", "-----BEGIN KEY-----", "line-two-secret", "-----END KEY-----"]:
            check(v in masks, f"secret line masked: {v[:12]}...")
        leaked = [l for l in out.splitlines() if not l.startswith("::add-mask::")
                  and any(s in l for s in ["tok-123-secret", "line-two-secret", identity_line])]
        check(not leaked, "no secret outside ::add-mask:: lines")

        # 2. export: none installs only.
        code, out, genv, gpath, _ = run_action(
            {"environment": "production", "identity": identity, "export": "none"}, repo, rt)
        check(code == 0 and genv == "" and gpath.strip(), "export: none installs and exports nothing")

        # 3. version: X.Y.Z downloads the release asset and checks its SHA-256.
        rel = os.path.join(tmp, "releases", "v" + VERSION)
        os.makedirs(rel)
        target = {"x86_64": "x86_64-unknown-linux-gnu", "aarch64": "aarch64-unknown-linux-gnu"}[os.uname().machine]
        asset = os.path.join(rel, f"envv-{VERSION}-{target}.tar.gz")
        with tarfile.open(asset, "w:gz") as t:
            t.add(BIN, arcname="envv")
        digest = hashlib.sha256(open(asset, "rb").read()).hexdigest()
        open(asset + ".sha256", "w").write(f"{digest}  {os.path.basename(asset)}\n")
        base = {"ENVV_RELEASE_BASE_URL": "file://" + os.path.join(tmp, "releases")}
        rt = os.path.join(tmp, "rt2")
        os.makedirs(rt)
        code, out, genv, _, _ = run_action(
            {"environment": "production", "identity": identity, "version": VERSION}, repo, rt, base)
        check(code == 0 and "downloading" in out, "release download installs envv", out)
        check(parse_github_env(genv).get("API_TOKEN") == expected["API_TOKEN"], "release install exports too")
        open(asset + ".sha256", "w").write("0" * 64 + "  x\n")
        rt = os.path.join(tmp, "rt3")
        os.makedirs(rt)
        code, out, _, _, _ = run_action(
            {"identity": identity, "version": VERSION}, repo, rt, base)
        check(code != 0 and "does not match its SHA-256" in out, "a bad checksum fails")

        # 4. version empty, nothing installed: cargo builds the action's own checkout (with
        # CARGO_TARGET_DIR pointing at this checkout's target/, the release build is reused).
        rt = os.path.join(tmp, "rt4")
        os.makedirs(rt)
        code, out, genv, gpath, _ = run_action(
            {"environment": "production", "identity": identity}, repo, rt,
            {"CARGO_TARGET_DIR": os.path.join(ROOT, "target")})
        check(code == 0 and "with cargo" in out, "version empty: cargo install from the action's checkout", out)
        check(os.access(os.path.join(rt, "envv/bin/envv"), os.X_OK), "cargo installed envv into RUNNER_TEMP")
        check(parse_github_env(genv).get("API_TOKEN") == expected["API_TOKEN"], "source install exports too")

        # 5. Wrong inputs fail with an ::error:: and export nothing.
        code, out, genv, _, _ = run_action({"identity": identity, "export": "yaml"}, repo, os.path.join(tmp, "rt1"))
        check(code != 0 and "::error" in out and genv == "", "an unknown export mode fails")
        code, out, genv, _, _ = run_action({"identity": "", "environment": "production"}, repo, os.path.join(tmp, "rt1"))
        check(code != 0 and "identity input is empty" in out and genv == "", "an empty identity fails")
        code, out, genv, _, _ = run_action(
            {"identity": "AGE-SECRET-KEY-1" + "Q" * 58, "environment": "production"}, repo, os.path.join(tmp, "rt1"))
        check(code != 0 and genv == "", "an identity that is not a reader fails, exports nothing")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if FAILED:
        print(f"action: {len(FAILED)} checks failed")
        sys.exit(1)
    print("action: all checks passed")


if __name__ == "__main__":
    main()
