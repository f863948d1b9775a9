#!/usr/bin/env bash
# Times how fast envv refuses hostile or oversized input (the test suite only checks that they
# are refused, with a hang guard; BENCH_LIMIT_MS turns a budget into a failure here):
#   - a 100 MB .env (sparse: the size check comes before any read) for encrypt, get, set, decrypt
#   - 1,000,000 plaintext lines with a duplicate key on the last line (parsed whole, refused)
#   - hostile .sops.yaml files: an alias bomb, 100,000-deep flow nesting, 200-deep block
#     nesting, a 2 MB file
#
# Usage:
#   scripts/bench-limits.sh                          # builds envv --release, prints hyperfine's table
#   ENVV_BIN=path/to/envv scripts/bench-limits.sh    # use an existing binary (no build)
#   BENCH_QUICK=1 scripts/bench-limits.sh            # fewer runs
#   BENCH_LIMIT_MS=1000 scripts/bench-limits.sh      # exit 1 when a case's mean is above it
#
# Needs hyperfine, git and python3 (to read hyperfine's JSON). Data lives in a temp folder with
# its own HOME and git config, removed at the end.
set -euo pipefail

name=bench-limits
# shellcheck source=scripts/bench-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
"$envv" keygen >/dev/null 2>&1

# One repository per case, each with a policy and one secret.
repo() {
  mkdir -p "$work/$1" && (cd "$work/$1" && git init -q . && "$envv" init --name bench >/dev/null 2>&1 \
    && "$envv" set A=1 >/dev/null 2>&1)
  echo "$work/$1"
}
big=$(repo big)
rm "$big/.env" && truncate -s 100M "$big/.env"
many=$(repo many)
awk 'BEGIN { for (i = 0; i < 1000000; i++) printf "K%d=v\n", i; print "K0=dup" }' >"$many/.env"
bomb=$(repo bomb)
python3 - "$bomb/.sops.yaml" <<'PY'
import sys
lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
prev = "a"
for c in "bcdefghijk":
    lines.append(f"{c}: &{c} [" + ", ".join([f"*{prev}"] * 9) + "]")
    prev = c
lines.append("envv: {}")
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY
deep=$(repo deep)
python3 -c 'import sys; open(sys.argv[1], "w").write("envv: " + "[" * 100000 + "]" * 100000 + "\n")' "$deep/.sops.yaml"
block=$(repo block)
python3 -c 'import sys; open(sys.argv[1], "w").write("envv:\n" + "\n".join(" " * (d * 2 + 2) + f"k{d}:" for d in range(200)) + "\n")' "$block/.sops.yaml"
huge=$(repo huge)
head -c $((2 << 20)) /dev/zero | tr '\0' '#' >"$huge/.sops.yaml"

# Every case must be refused (exit 2): hyperfine -i ignores the exit code, so check first.
cases=(
  "cd $big && $envv encrypt"
  "cd $big && $envv get A"
  "cd $big && $envv set A 1"
  "cd $big && $envv decrypt"
  "cd $many && $envv encrypt"
  "cd $bomb && $envv get A"
  "cd $deep && $envv get A"
  "cd $block && $envv get A"
  "cd $huge && $envv get A"
)
for c in "${cases[@]}"; do
  set +e; sh -c "$c" >/dev/null 2>&1; code=$?; set -e
  [ "$code" = 2 ] || { log "expected exit 2 from: $c (got $code)"; exit 1; }
done

runs=10; [ -n "${BENCH_QUICK:-}" ] && runs=3
hyperfine -i --warmup 1 --runs "$runs" --export-json "$work/limits.json" "${cases[@]}"
if [ -n "${BENCH_LIMIT_MS:-}" ]; then
  python3 - "$work/limits.json" "$BENCH_LIMIT_MS" <<'PY'
import json, sys
limit = float(sys.argv[2]) / 1000
slow = [(r["command"], r["mean"]) for r in json.load(open(sys.argv[1]))["results"] if r["mean"] > limit]
for cmd, mean in slow:
    print(f"bench-limits: {mean * 1000:.0f} ms > {limit * 1000:.0f} ms: {cmd}", file=sys.stderr)
sys.exit(1 if slow else 0)
PY
fi
