#!/usr/bin/env bash
# Starts a built server on a scratch data dir and runs browser tests against it, signing in with
# the demo credentials the server printed. Arguments: test files or folders (default: tests/).
#   SERVER_BIN=target/release/server end2end/run.sh release/
set -euo pipefail
cd "$(dirname "$0")/.."
SERVER_BIN="${SERVER_BIN:-target/debug/server}"
PORT="${E2E_PORT:-3917}"
DATA_DIR="$(mktemp -d)"
# The widget test's fake LLM provider listens on loopback, which tenants' endpoints may not use
# unless FETCH_ALLOW_PRIVATE is set.
export DATA_DIR LEPTOS_SITE_ADDR="127.0.0.1:$PORT" DATABASE_URL="" LOGIN_ATTEMPTS_PER_MINUTE=100 FETCH_ALLOW_PRIVATE=true
# The platform's Google client points at the fake Google the console test starts on this port.
export E2E_GOOGLE_PORT="${E2E_GOOGLE_PORT:-3919}"
export GOOGLE_CLIENT_ID=e2e-client GOOGLE_CLIENT_SECRET=e2e-secret \
  GOOGLE_AUTH_URL="http://127.0.0.1:$E2E_GOOGLE_PORT/auth" GOOGLE_TOKEN_URL="http://127.0.0.1:$E2E_GOOGLE_PORT/token" \
  GOOGLE_REVOKE_URL="http://127.0.0.1:$E2E_GOOGLE_PORT/revoke" GOOGLE_API_URL="http://127.0.0.1:$E2E_GOOGLE_PORT"
# The model `make models` fetched, as `make run` uses it (the scratch data dir has none).
export EMBEDDING_MODEL_DIR="${EMBEDDING_MODEL_DIR:-$PWD/data/models/all-MiniLM-L6-v2}"
"$SERVER_BIN" serve > "$DATA_DIR/server.log" 2>&1 &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null || true; rm -rf "$DATA_DIR"' EXIT
for _ in $(seq 1 150); do
  curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null || { cat "$DATA_DIR/server.log"; exit 1; }
export BASE_URL="http://127.0.0.1:$PORT"
DEMO_EMAIL="$(awk '$1 == "email:" {print $2; exit}' "$DATA_DIR/server.log")"
DEMO_PASSWORD="$(awk '$1 == "password:" {print $2; exit}' "$DATA_DIR/server.log")"
[ -n "$DEMO_EMAIL" ] && [ -n "$DEMO_PASSWORD" ] || { echo "the server printed no demo credentials:"; cat "$DATA_DIR/server.log"; exit 1; }
export DEMO_EMAIL DEMO_PASSWORD
status=0
(cd end2end && node --test --test-concurrency=1 "${@:-tests/}") || status=$?
if [ "$status" -ne 0 ]; then echo "--- server log"; tail -n 100 "$DATA_DIR/server.log"; fi
exit "$status"
