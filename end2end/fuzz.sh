#!/usr/bin/env bash
# Schemathesis (PyPI) against the REST API: starts a built server on a scratch data dir, makes
# an all-scopes key for the demo tenant with the CLI, and runs a bounded number of generated
# requests per operation. It fails on any 5xx and any answer that breaks the documented schema.
# The fuzzer may not revoke the key it works with (it would only see 401s afterwards).
#   SERVER_BIN=target/debug/server FUZZ_EXAMPLES=10 end2end/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SERVER_BIN="${SERVER_BIN:-target/debug/server}"
PORT="${FUZZ_PORT:-3919}"
EXAMPLES="${FUZZ_EXAMPLES:-10}"
DATA_DIR="$(mktemp -d)"
# Budgets high enough for the fuzzer; sign-in, uploads and the rest stay as configured.
export DATA_DIR LEPTOS_SITE_ADDR="127.0.0.1:$PORT" DATABASE_URL="" \
  RATE_LIMIT_READ_PER_MINUTE=100000 RATE_LIMIT_WRITE_PER_MINUTE=100000 \
  RATE_LIMIT_TENANT_PER_MINUTE=100000 RATE_LIMIT_PUBLIC_PER_MINUTE=100000 \
  FETCH_ALLOW_PRIVATE=false
export EMBEDDING_MODEL_DIR="${EMBEDDING_MODEL_DIR:-$PWD/data/models/all-MiniLM-L6-v2}"
"$SERVER_BIN" serve > "$DATA_DIR/server.log" 2>&1 &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null || true; rm -rf "$DATA_DIR"' EXIT
for _ in $(seq 1 150); do
  curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null || { cat "$DATA_DIR/server.log"; exit 1; }
KEY="$("$SERVER_BIN" apikey create --tenant demo --name fuzz | tail -n 1)"
status=0
st run "http://127.0.0.1:$PORT/api/v1/openapi.json" \
  --header "Authorization: Bearer $KEY" \
  --checks not_a_server_error,response_schema_conformance,content_type_conformance \
  --max-examples "$EXAMPLES" --seed 20261129 --workers 2 \
  --exclude-operation-id revoke_api_key \
  --report junit --report-dir "$DATA_DIR/report" || status=$?
if grep -q ' 5[0-9][0-9] \| panicked' "$DATA_DIR/server.log"; then
  echo "--- server log (errors)"; grep -E ' 5[0-9][0-9] |panicked|ERROR' "$DATA_DIR/server.log" | tail -n 40
fi
exit "$status"
