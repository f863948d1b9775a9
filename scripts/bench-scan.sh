#!/usr/bin/env bash
# Benchmarks `envv scan` against ripgrep, the hook's value scan, and `exec --redact`.
#
# Usage:
#   scripts/bench-scan.sh                  # builds envv --release, makes the data, runs hyperfine
#   ENVV_BIN=path/to/envv scripts/bench-scan.sh
#   BENCH_QUICK=1 scripts/bench-scan.sh    # fewer runs
#   BENCH_DIR=/tmp/scan-bench scripts/bench-scan.sh   # keep the data there, reuse it next time
#
# Needs hyperfine, rg (ripgrep), git and python3 on PATH. Data (TEST values only, made fresh in
# a temp folder, removed at the end):
#   tree:    ~40 MB of text in ~4,000 tracked files, a repository with 1,000 managed values;
#            envv searches every value in all its forms (plain, base64 x6, url, escaped),
#            `rg -F -f` the 1,000 plain values, both over the same files.
#   history: 1,000 commits, each changing 3 files of ~8 KB; `envv scan --history` against
#            `git log -p --all | rg -F -f` of the plain values.
#   hook:    a commit of 50 ordinary files with 1,000 managed values: `envv hook pre-commit`
#            with the value scan and with ENVV_HOOK_SCAN=0 (the difference is the scan).
#   exec:    `envv exec -- true` and `envv exec --redact -- true` (1,000 values).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { echo "bench: $*" >&2; }
for t in hyperfine rg git python3; do
  command -v "$t" >/dev/null || { log "missing $t (hyperfine and rg: apt-get install hyperfine ripgrep)"; exit 2; }
done
if [ -z "${ENVV_BIN:-}" ]; then
  log "cargo build --release"
  (cd "$here" && cargo build --release --quiet)
  ENVV_BIN="$here/target/release/envv"
fi
runs=(--warmup 2 --min-runs 10)
[ -n "${BENCH_QUICK:-}" ] && runs=(--warmup 1 --runs 3)

if [ -n "${BENCH_DIR:-}" ]; then # keep the data there (and reuse it on the next run)
  work=$BENCH_DIR; mkdir -p "$work"
else
  work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
fi
export HOME="$work/home" GIT_CONFIG_GLOBAL="$work/gitconfig" GIT_CONFIG_NOSYSTEM=1
unset ENVV_ENV ENVV_AGE_KEY ENVV_AGE_KEY_FILE SOPS_AGE_KEY SOPS_AGE_KEY_FILE GIT_DIR GIT_INDEX_FILE
mkdir -p "$HOME"
printf '[user]\n\tname = Bench\n\temail = bench@example.test\n[init]\n\tdefaultBranch = main\n' >"$GIT_CONFIG_GLOBAL"
[ -f "$HOME/.config/envv/keys.txt" ] || "$ENVV_BIN" keygen >/dev/null 2>&1

# 1,000 TEST values and their dotenv lines; the plain values for rg.
python3 - "$work" <<'EOF'
import random, sys
random.seed(7)
w = sys.argv[1]
alnum = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'
vals = ['test_' + ''.join(random.choice(alnum) for _ in range(random.randint(16, 40))) for _ in range(1000)]
open(f'{w}/values.txt', 'w').write('\n'.join(vals) + '\n')
open(f'{w}/pairs.txt', 'w').write(''.join(f'K{i:04d}={v}\n' for i, v in enumerate(vals)))
EOF

new_repo() { # dir: a repository with the 1,000 values in .env
  mkdir -p "$1" && cd "$1" && git init -q . && "$ENVV_BIN" init --name bench >/dev/null 2>&1
  xargs -a "$work/pairs.txt" -d '\n' "$ENVV_BIN" set >/dev/null 2>&1
  git add -A && git commit -qm secrets
}

# ---------------------------------------------------------------- tree
if [ ! -d "$work/tree" ]; then
log "making a 40 MB tree"
new_repo "$work/tree"
python3 - "$work/tree" "$work/values.txt" <<'EOF'
import os, random, sys
random.seed(11)
root, vals = sys.argv[1], open(sys.argv[2]).read().split()
words = ('const let function return if else for while import export from default class new this '
         'value config user request response error data result item list map key name type id').split()
for d in range(40):
    os.makedirs(f'{root}/src/m{d:02d}', exist_ok=True)
    for f in range(100):
        lines = []
        while sum(len(l) + 1 for l in lines) < 10000:
            lines.append('  '.join(random.choice(words) for _ in range(random.randint(3, 12))) + ';')
        if d == 7 and f < 3:  # a few real leaks
            lines.insert(5, f'const token = "{vals[f * 100]}";')
        open(f'{root}/src/m{d:02d}/f{f:03d}.js', 'w').write('\n'.join(lines) + '\n')
EOF
(cd "$work/tree" && git add -A && git commit -qm tree)
fi
size=$(du -sm --exclude=.git "$work/tree" | cut -f1)
log "tree: ${size} MB, $(cd "$work/tree" && git ls-files | wc -l) files"
cd "$work/tree"
hyperfine "${runs[@]}" -i -N --export-markdown "$work/tree.md" \
  -n "envv scan" "$ENVV_BIN scan" \
  -n "rg -F -f (plain values)" "rg -F -f $work/values.txt --hidden -n ."

# ---------------------------------------------------------------- history
if [ ! -d "$work/hist" ]; then
log "making 1,000 commits"
new_repo "$work/hist"
python3 - "$work/values.txt" <<'EOF' | git -C "$work/hist" fast-import --quiet
import random, sys
random.seed(13)
vals = open(sys.argv[1]).read().split()
words = 'alpha beta gamma delta value config user request response error data result item'.split()
def body():
    return '\n'.join(' '.join(random.choice(words) for _ in range(10)) for _ in range(120)) + '\n'
out = sys.stdout
for c in range(1000):
    out.write(f'commit refs/heads/main\ncommitter Bench <b@example.test> {1700000000 + c} +0000\n')
    msg = f'change {c}'
    out.write(f'data {len(msg)}\n{msg}\n')
    if c == 0:
        out.write('from refs/heads/main^0\n')
    for k in range(3):
        text = body()
        if c % 100 == 5 and k == 0:
            text += f'leak {vals[c]}\n'
        out.write(f'M 100644 inline docs/f{(c * 3 + k) % 300:03d}.txt\ndata {len(text)}\n{text}\n')
EOF
cd "$work/hist" && git reset -q --hard main
fi
cd "$work/hist"
log "history: $(git rev-list --count HEAD) commits"
hyperfine "${runs[@]}" -i --export-markdown "$work/hist.md" \
  -n "envv scan --history" "$ENVV_BIN scan --history" \
  -n "git log -p | rg -F -f" "git log -p --all | rg -F -f $work/values.txt -n"

# ---------------------------------------------------------------- hook
if [ ! -d "$work/hook" ]; then
log "staging 50 files"
new_repo "$work/hook"
cd "$work/hook"
for i in $(seq 1 50); do head -c 6000 "$work/tree/src/m01/f$(printf %03d "$i").js" >"file$i.js"; done
git add -A
fi
cd "$work/hook"
hyperfine "${runs[@]}" -N --export-markdown "$work/hook.md" \
  -n "hook pre-commit (value scan)" "$ENVV_BIN hook pre-commit" \
  -n "hook pre-commit (ENVV_HOOK_SCAN=0)" "env ENVV_HOOK_SCAN=0 $ENVV_BIN hook pre-commit"

# ---------------------------------------------------------------- exec
hyperfine "${runs[@]}" -N --export-markdown "$work/exec.md" \
  -n "exec -- true" "$ENVV_BIN exec -- true" \
  -n "exec --redact -- true" "$ENVV_BIN exec --redact -- true"

echo
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) core(s)"
for f in tree hist hook exec; do echo; cat "$work/$f.md"; done
