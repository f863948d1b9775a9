#!/bin/sh
# Stand-in for a deploy script: uses the variables, never prints their values.
set -eu
: "${DEPLOY_TOKEN:?DEPLOY_TOKEN is missing: run envv export or envv exec first}"
: "${TLS_KEY:?TLS_KEY is missing}"
echo "deploying as ${DEPLOY_USER:-unknown} (NODE_ENV=${NODE_ENV:-unset}, PORT=${PORT:-unset})"
echo "token: ${#DEPLOY_TOKEN} chars; TLS key: $(printf '%s' "$TLS_KEY" | wc -l) lines"
