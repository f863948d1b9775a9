# Shared by the bench scripts (sourced, not run): finds or builds the envv binary and gives the
# run a sandbox of its own (a temp folder with its own HOME and git config, removed at the end,
# and none of the caller's envv, sops or git variables).
#
# Before sourcing, set `name` (for log lines). After it: $here (the checkout), $envv (an
# absolute path to the binary), $work (the temp folder), log().

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { echo "$name: $*" >&2; }
command -v hyperfine >/dev/null || { log "hyperfine is missing (apt-get install hyperfine)"; exit 2; }

if [ -z "${ENVV_BIN:-}" ]; then
  log "cargo build --release"
  (cd "$here" && cargo build --release --quiet)
  ENVV_BIN="$here/target/release/envv"
fi
envv=$(cd "$(dirname "$ENVV_BIN")" && pwd)/$(basename "$ENVV_BIN")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export HOME="$work/home" GIT_CONFIG_GLOBAL="$work/gitconfig" GIT_CONFIG_NOSYSTEM=1
unset ENVV_ENV ENVV_AGE_KEY ENVV_AGE_KEY_FILE SOPS_AGE_KEY SOPS_AGE_KEY_FILE GIT_DIR GIT_INDEX_FILE XDG_CONFIG_HOME
mkdir -p "$HOME"
printf '[user]\n\tname = Bench\n\temail = bench@example.com\n[init]\n\tdefaultBranch = main\n' >"$GIT_CONFIG_GLOBAL"
