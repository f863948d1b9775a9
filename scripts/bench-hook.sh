#!/usr/bin/env bash
# Times the pre-commit hook (`envv hook pre-commit`) on a large commit: 51 staged encrypted
# files of 10,000 keys each, no value shared between files (goal: under 0.5 s), with hyperfine.
#
# Usage:
#   scripts/bench-hook.sh                          # builds envv --release, prints hyperfine's table
#   ENVV_BIN=path/to/envv scripts/bench-hook.sh    # use an existing binary (no build)
#   BASELINE_BIN=path/to/old/envv scripts/bench-hook.sh   # also time another build, same data
#   BENCH_QUICK=1 scripts/bench-hook.sh            # fewer runs
#
# Needs hyperfine and git. The data set lives in a temp folder with its own HOME and git config,
# removed at the end.
set -euo pipefail

name=bench-hook
# shellcheck source=scripts/bench-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
mkdir -p "$work/repo"
cd "$work/repo"
git init -q .
"$envv" keygen >/dev/null 2>&1
"$envv" init --name bench >/dev/null 2>&1

files=51 keys=10000
log "making $files files of $keys keys"
# Every file has values of its own (no two files share a value), each encrypted separately.
plain() { awk -v n=$keys -v f="$1" 'BEGIN { for (i = 0; i < n; i++) printf "KEY_%05d=value-%s-%05d-0123456789abcdefghijklmnopqrstuvwxyz\n", i, f, i }'; }
plain e0 >.env
"$envv" encrypt >/dev/null 2>&1
for i in $(seq 1 $((files - 1))); do
  "$envv" env add "e$i" >/dev/null 2>&1
  plain "e$i" >".env.e$i"
  "$envv" encrypt -e "e$i" >/dev/null 2>&1
done
git add -A
staged=$(git diff --cached --name-only | grep -c '^\.env')
[ "$staged" = "$files" ] || { log "expected $files staged files, found $staged"; exit 1; }
"$envv" hook pre-commit || { log "the hook refused the data set"; exit 1; }

runs=20; [ -n "${BENCH_QUICK:-}" ] && runs=5
cmds=("$envv hook pre-commit")
names=(-n "envv hook pre-commit")
if [ -n "${BASELINE_BIN:-}" ]; then
  cmds+=("$BASELINE_BIN hook pre-commit")
  names+=(-n "baseline hook pre-commit")
fi
hyperfine -N --warmup 2 --runs $runs "${names[@]}" "${cmds[@]}"
