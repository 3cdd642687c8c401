#!/usr/bin/env bash
# Chat-turn figures on SQLite and on PostgreSQL: server-side time per turn and time to the first
# streamed token with a fake LLM that answers at once, N conversations at the same time.
# Usage: server/bench/chat.sh [SERVER_BIN]   (make bench-chat builds it)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="${1:-${CARGO_TARGET_DIR:-target}/release/server}"
CONVERSATIONS="${CONVERSATIONS:-50}"
TURNS="${TURNS:-10}"
PG_ADMIN="${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
DATA="$(mktemp -d)"
DB="bench_chat_$(date +%s)"
cleanup() { psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true; rm -rf "$DATA"; }
trap cleanup EXIT
export RUST_LOG=warn DEMO_TENANT=false DATA_DIR="$DATA" JOBS_IN_PROCESS=false

DATABASE_URL= "$BIN" bench chat --conversations "$CONVERSATIONS" --turns "$TURNS"
psql "$PG_ADMIN" -qc "CREATE DATABASE $DB" >/dev/null
DATABASE_URL="${PG_ADMIN%/*}/$DB" "$BIN" bench chat --conversations "$CONVERSATIONS" --turns "$TURNS"
