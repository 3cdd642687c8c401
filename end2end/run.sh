#!/usr/bin/env bash
# Starts the built server on a scratch database and runs the browser tests against it.
set -euo pipefail
cd "$(dirname "$0")/.."
SERVER_BIN="${SERVER_BIN:-target/debug/server}"
PORT="${E2E_PORT:-3917}"
DATA_DIR="$(mktemp -d)"
export DATA_DIR LEPTOS_SITE_ADDR="127.0.0.1:$PORT" DATABASE_URL="" LOGIN_ATTEMPTS_PER_MINUTE=100 RUST_LOG=warn
"$SERVER_BIN" serve > "$DATA_DIR/server.log" 2>&1 &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null || true; rm -rf "$DATA_DIR"' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null || { cat "$DATA_DIR/server.log"; exit 1; }
export BASE_URL="http://127.0.0.1:$PORT"
export DEMO_EMAIL="admin@demo.local"
DEMO_PASSWORD="$(awk '/password:/{print $2}' "$DATA_DIR/demo-credentials.txt")"
export DEMO_PASSWORD
cd end2end && npm test
