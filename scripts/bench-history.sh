#!/usr/bin/env bash
# Benchmarks envv's history reads (ls, log, check) against `git log -p` on the same files.
#
# Usage:
#   scripts/bench-history.sh                 # builds envv --release, builds both repositories, measures
#   ENVV_BIN=path/to/envv scripts/bench-history.sh
#   BENCH_QUICK=1 scripts/bench-history.sh   # smaller repositories and fewer runs (a rough check)
#   BENCH_KEEP=DIR scripts/bench-history.sh  # keep (and reuse) the repositories in DIR
#
# Repositories (built by this script with envv itself, real encrypted files, one commit at a
# time, each commit changing a few keys of one environment):
#   medium: 3 environments x 1,000 keys x 1,000 commits
#   big:    20 environments x 10,000 keys x 200 commits
# Measured in one hyperfine run per repository: `envv ls -e ENV`, `envv log KEY` (with the
# history cache of .git/envv/history warm, and deleted before each run), `envv check` (50 keys
# have a max_age) and `git log -p --format=%H -- FILES` over the same files (the environment's
# file for ls and log, every file for check). Wall time and CPU time (user+sys) are both given:
# on a loaded machine CPU time is the steadier figure. Peak RSS comes from /usr/bin/time -v.
# Tools: hyperfine, git, /usr/bin/time.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { echo "bench: $*" >&2; }
for t in hyperfine git /usr/bin/time; do
  command -v "$t" >/dev/null || { log "missing: $t"; exit 2; }
done
if [ -z "${ENVV_BIN:-}" ]; then
  log "cargo build --release"
  (cd "$here" && cargo build --release --quiet)
  ENVV_BIN="$here/target/release/envv"
fi
ENVV_BIN=$(cd "$(dirname "$ENVV_BIN")" && pwd)/$(basename "$ENVV_BIN")

work=${BENCH_KEEP:-$(mktemp -d)}
mkdir -p "$work"
[ -n "${BENCH_KEEP:-}" ] || trap 'rm -rf "$work"' EXIT
runs=${BENCH_RUNS:-10}
quick=${BENCH_QUICK:-}
[ -z "$quick" ] || runs=3

export HOME="$work/home" GIT_CONFIG_GLOBAL="$work/gitconfig" GIT_CONFIG_NOSYSTEM=1
mkdir -p "$HOME"
printf '[user]\n\tname = Bench\n\temail = bench@example.com\n[init]\n\tdefaultBranch = main\n[commit]\n\tgpgsign = false\n[gc]\n\tauto = 0\n' >"$GIT_CONFIG_GLOBAL"
[ -f "$HOME/.config/envv/keys.txt" ] || "$ENVV_BIN" keygen >/dev/null 2>&1

# Gives 50 keys a max_age, so that `check` dates them from history.
add_schema() {
  python3 -c '
s = open(".sops.yaml").read()
keys = "".join(f"      KEY_{k}: {{ max_age: 3650d }}\n" for k in range(1, 51))
open(".sops.yaml", "w").write(s.replace("# creation_rules", "  schema:\n    keys:\n" + keys + "# creation_rules", 1))
'
}

# build NAME ENVS KEYS COMMITS: a repository of ENVS environments with KEYS keys each and
# COMMITS commits after the first (each sets 3 keys of one environment).
build() {
  local dir="$work/$1" envs=$2 keys=$3 commits=$4
  if [ -f "$dir/.built" ]; then return; fi
  rm -rf "$dir"; mkdir -p "$dir"; cd "$dir"
  git init -q .
  "$ENVV_BIN" init --name bench >/dev/null 2>&1
  for e in $(seq 1 $((envs - 1))); do "$ENVV_BIN" env add "env$e" --readers bench >/dev/null 2>&1; done
  local args=()
  for k in $(seq 1 "$keys"); do args+=("KEY_$k=value-$k-initial-0123456789abcdef"); done
  "$ENVV_BIN" set -e default "${args[@]}" >/dev/null 2>&1
  for e in $(seq 1 $((envs - 1))); do "$ENVV_BIN" set -e "env$e" "${args[@]}" >/dev/null 2>&1; done
  add_schema
  git add -A && git commit -qm "initial secrets"
  local c e name
  for c in $(seq 1 "$commits"); do
    e=$((c % envs))
    name=default; [ "$e" = 0 ] || name="env$e"
    "$ENVV_BIN" set -e "$name" "KEY_$(( (c * 7) % keys + 1 ))=v$c-a" "KEY_$(( (c * 13) % keys + 1 ))=v$c-b" "KEY_$(( (c * 31) % keys + 1 ))=v$c-c" >/dev/null 2>&1
    git commit -qam "change $c"
  done
  git gc -q
  touch .built
  cd - >/dev/null
}

# peak RSS (KiB) of a command
rss() { /usr/bin/time -v "$@" 2>&1 >/dev/null | awk -F: '/Maximum resident/ {gsub(/ /, "", $2); print $2}'; }

measure() {
  local name=$1 env=$2 file=$3 key=$4
  local dir="$work/$name"
  cd "$dir"
  local all
  all=$(ls .env .env.* | tr '\n' ' ')
  log "$name: hyperfine ($runs runs)"
  # --prepare is given once per command, in order: only the "no cache" runs delete the cache.
  local cold="rm -rf $dir/.git/envv/history"
  hyperfine -N --warmup 1 --runs "$runs" --export-json "$work/$name.json" \
    --prepare true --prepare true --prepare true --prepare "$cold" --prepare "$cold" \
    --prepare true --prepare true --prepare "$cold" \
    -n "git log -p $file" "git log -p --format=%H -- $file" \
    -n "envv ls -e $env" "$ENVV_BIN ls -e $env" \
    -n "envv log $key" "$ENVV_BIN log -e $env $key" \
    -n "envv ls -e $env (no cache)" "$ENVV_BIN ls -e $env" \
    -n "envv log $key (no cache)" "$ENVV_BIN log -e $env $key" \
    -n "git log -p (all files)" "git log -p --format=%H -- $all" \
    -n "envv check" "$ENVV_BIN check" \
    -n "envv check (no cache)" "$ENVV_BIN check" >&2 || true
  python3 - "$work/$name.json" "$name" <<'EOF'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
git = next(v for k, v in r.items() if k.startswith("git log -p .env"))
gall = r["git log -p (all files)"]
cpu = lambda x: x["user"] + x["system"]
for k, v in r.items():
    base = gall if k.startswith("envv check") or k == "git log -p (all files)" else git
    print(f"| {sys.argv[2]} | `{k}` | {v['mean']*1000:.0f} ms | {v['mean']/base['mean']:.2f}x | {cpu(v)*1000:.0f} ms | {cpu(v)/cpu(base):.2f}x |")
EOF
  rm -rf "$dir/.git/envv/history"
  echo "| $name | peak RSS ls / log / check, no cache | $(rss "$ENVV_BIN" ls -e "$env") / $(rss "$ENVV_BIN" log -e "$env" "$key") / $(rss "$ENVV_BIN" check) KiB | | | |"
  echo "| $name | peak RSS ls / log / check, cache | $(rss "$ENVV_BIN" ls -e "$env") / $(rss "$ENVV_BIN" log -e "$env" "$key") / $(rss "$ENVV_BIN" check) KiB | | | |"
  cd - >/dev/null
}

if [ -n "$quick" ]; then
  build medium 3 200 200
  build big 4 2000 50
else
  build medium 3 1000 1000
  build big 20 10000 200
fi
echo "| repository | command | wall (mean) | wall vs git | CPU (user+sys) | CPU vs git |"
echo "|---|---|---|---|---|---|"
measure medium env1 .env.env1 KEY_8
measure big env1 .env.env1 KEY_8
