#!/usr/bin/env bash
# Builds envv's npm tarballs into OUTDIR, in the layout esbuild and biome use:
#   envv-VERSION.tgz             launcher: `bin` entry + a JS shim that runs the platform binary
#                                 (npm/envv/bin/envv.js); no postinstall, nothing downloaded
#   envv-linux-x64-VERSION.tgz   @envv/linux-x64: the binary, with "os"/"cpu" so npm installs
#                                 it only on that platform; an optionalDependency of the launcher
#
# Usage: scripts/npm-pack.sh OUTDIR
#   ENVV_BIN=path/to/envv      the binary to pack (default: `cargo build --release`, then
#                              target/release/envv)
#   ENVV_NPM_TARGET=linux-x64  the platform package that binary goes in (default: this machine)
#   ENVV_NPM_TARGETS="..."     the platform packages the launcher lists (default: ENVV_NPM_TARGET).
#                              A release packs each target's binary with its own ENVV_NPM_TARGET
#                              and lists them all: linux-x64 linux-arm64 darwin-x64 darwin-arm64
#                              win32-x64 (see README "Install").
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: scripts/npm-pack.sh OUTDIR" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -1)

bin=${ENVV_BIN:-}
if [ -z "$bin" ]; then
  (cd "$root" && cargo build --release --locked --bin envv)
  bin="$root/target/release/envv"
fi
[ -x "$bin" ] || { echo "npm-pack: $bin is not an executable" >&2; exit 2; }
got=$("$bin" --version)
[ "$got" = "envv $version" ] || { echo "npm-pack: $bin is '$got', Cargo.toml says $version" >&2; exit 2; }

host_target() {
  local os cpu
  case "$(uname -s)" in Linux) os=linux ;; Darwin) os=darwin ;; *) os=win32 ;; esac
  case "$(uname -m)" in x86_64 | amd64) cpu=x64 ;; aarch64 | arm64) cpu=arm64 ;; *) cpu=$(uname -m) ;; esac
  echo "$os-$cpu"
}
target=${ENVV_NPM_TARGET:-$(host_target)}
targets=${ENVV_NPM_TARGETS:-$target}
exe=envv
[ "${target%-*}" = win32 ] && exe=envv.exe

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# package.json files are written by node (JSON.stringify), so no value needs shell quoting.
json() { node -e "process.stdout.write(JSON.stringify($1, null, 2) + '\n')"; }
common="description: 'Encrypted .env files in git, readable by exactly the people a committed policy names; sops-compatible.',
  license: 'MIT OR Apache-2.0', version: '$version'"

plat="$stage/platform"
mkdir -p "$plat/bin"
cp "$bin" "$plat/bin/$exe"
chmod 0755 "$plat/bin/$exe"
cp "$root/LICENSE" "$plat/"
json "{ name: '@envv/$target', $common, os: ['${target%-*}'], cpu: ['${target#*-}'],
  files: ['bin/$exe', 'LICENSE'], preferUnplugged: true }" > "$plat/package.json"
printf '# @envv/%s\n\nThe envv binary for %s. Install `envv` instead: it picks this package on this platform.\n' \
  "$target" "$target" > "$plat/README.md"

launch="$stage/launcher"
mkdir -p "$launch/bin"
cp "$root/npm/envv/bin/envv.js" "$launch/bin/envv.js"
chmod 0755 "$launch/bin/envv.js"
cp "$root/LICENSE" "$launch/"
deps=""
for t in $targets; do deps="$deps'@envv/$t': '$version', "; done
json "{ name: 'envv', $common, bin: { envv: 'bin/envv.js' }, files: ['bin/envv.js', 'LICENSE'],
  optionalDependencies: { $deps }, engines: { node: '>=16' } }" > "$launch/package.json"
cp "$root/npm/envv/README.md" "$launch/README.md"

for d in "$plat" "$launch"; do
  (cd "$d" && npm pack --silent --pack-destination "$out" >/dev/null)
done
ls "$out"/envv-"$version".tgz "$out"/envv-"$target"-"$version".tgz
