#!/usr/bin/env bash
# The step of action.yml: install envv into $RUNNER_TEMP/envv/bin, put it on the job's PATH, and
# (export: github) load one environment into $GITHUB_ENV with every secret line masked.
#
# Inputs arrive as ENVV_ACTION_* variables (see action.yml). The identity is given to envv only,
# as ENVV_AGE_KEY in this step's environment: it is masked, never written to a file, and not
# passed on to later steps.
set -euo pipefail

fail() { echo "::error title=envv::$*"; exit 1; }
: "${RUNNER_TEMP:?RUNNER_TEMP is not set: this runs inside a GitHub Actions job}"
: "${GITHUB_PATH:?GITHUB_PATH is not set: this runs inside a GitHub Actions job}"
: "${GITHUB_ENV:?GITHUB_ENV is not set: this runs inside a GitHub Actions job}"

src=${ENVV_ACTION_PATH:-$(cd "$(dirname "$0")/.." && pwd)}
version=${ENVV_ACTION_VERSION:-}
mode=${ENVV_ACTION_EXPORT:-github}
environment=${ENVV_ACTION_ENVIRONMENT:-}
identity=${ENVV_ACTION_IDENTITY:-}
unset ENVV_ACTION_IDENTITY

case "$mode" in
  github | none) ;;
  *) fail "export must be github or none, not '$mode'" ;;
esac
if [ "$mode" = github ] && [ -z "$identity" ]; then
  fail "the identity input is empty: pass the age key of a reader, e.g. identity: \${{ secrets.ENVV_AGE_KEY }}"
fi
# Mask the identity line by line before anything else can print (GitHub masks secrets it
# knows, but the input may come from elsewhere).
while IFS= read -r line; do
  case "$line" in "" | "#"*) ;; *) echo "::add-mask::$line" ;; esac
done <<<"$identity"

root="$RUNNER_TEMP/envv"
bin="$root/bin/envv"
mkdir -p "$root/bin"

wanted=$version
[ -n "$wanted" ] || wanted=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$src/Cargo.toml" | head -1)

release_target() {
  case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) echo x86_64-unknown-linux-gnu ;;
    Linux-aarch64) echo aarch64-unknown-linux-gnu ;;
    Darwin-x86_64) echo x86_64-apple-darwin ;;
    Darwin-arm64) echo aarch64-apple-darwin ;;
    *) fail "no envv release for $(uname -s) $(uname -m): leave version empty to build it" ;;
  esac
}

# Release assets, once releases are published: envv-X.Y.Z-TARGET.tar.gz (holding `envv`) and
# envv-X.Y.Z-TARGET.tar.gz.sha256, under .../releases/download/vX.Y.Z/.
install_release() {
  local target base asset tmp
  target=$(release_target)
  base=${ENVV_RELEASE_BASE_URL:-${GITHUB_SERVER_URL:-https://github.com}/${ENVV_ACTION_REPOSITORY:-envv/envv}/releases/download}
  asset="envv-$version-$target.tar.gz"
  tmp=$(mktemp -d)
  echo "envv: downloading $asset"
  curl -fsSL --retry 3 -o "$tmp/$asset" "$base/v$version/$asset" || fail "cannot download $base/v$version/$asset"
  curl -fsSL --retry 3 -o "$tmp/$asset.sha256" "$base/v$version/$asset.sha256" || fail "cannot download the checksum of $asset"
  (cd "$tmp" && echo "$(cut -d' ' -f1 "$asset.sha256")  $asset" | sha256sum -c --quiet -) || fail "$asset does not match its SHA-256"
  tar -xzf "$tmp/$asset" -C "$root/bin" envv
  rm -rf "$tmp"
}

install_source() {
  command -v cargo >/dev/null || fail "cargo is not on PATH: add a Rust toolchain step, or set version"
  echo "envv: building $wanted from $src with cargo"
  cargo install --locked --quiet --path "$src" --root "$root" --bin envv
}

if [ -x "$bin" ] && [ "$("$bin" --version 2>/dev/null)" = "envv $wanted" ]; then
  echo "envv: $wanted already installed in $root/bin"
elif [ -n "$version" ]; then
  install_release
else
  install_source
fi
[ "$("$bin" --version)" = "envv $wanted" ] || fail "installed $("$bin" --version), expected envv $wanted"
echo "$root/bin" >>"$GITHUB_PATH"
echo "envv=$bin" >>"${GITHUB_OUTPUT:-/dev/null}"
echo "envv: $("$bin" --version)"

if [ "$mode" = github ]; then
  args=(export --format github)
  [ -n "$environment" ] && args=(-e "$environment" "${args[@]}")
  # `envv export --format github` prints ::add-mask:: for every line of every secret, then
  # appends NAME<<delimiter heredocs with random delimiters to $GITHUB_ENV.
  ENVV_AGE_KEY="$identity" "$bin" "${args[@]}"
fi
