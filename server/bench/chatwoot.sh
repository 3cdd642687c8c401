#!/usr/bin/env bash
# Chatwoot webhook figures on SQLite and on PostgreSQL + Redis: how fast signed webhooks are
# acknowledged at a steady rate while the turns they start run in the same process (fake LLM
# and fake Chatwoot on loopback).
# Usage: server/bench/chatwoot.sh [SERVER_BIN]   (make bench-chatwoot builds it)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="${1:-${CARGO_TARGET_DIR:-target}/release/server}"
WEBHOOKS="${WEBHOOKS:-1000}"
RATE="${RATE:-200}"
PG_ADMIN="${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
REDIS="${TEST_REDIS_URL:-redis://127.0.0.1:6379}"
DATA="$(mktemp -d)"
DB="bench_chatwoot_$(date +%s)"
cleanup() { psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true; rm -rf "$DATA"; }
trap cleanup EXIT
export RUST_LOG=warn DEMO_TENANT=false DATA_DIR="$DATA"

DATABASE_URL= "$BIN" bench chatwoot --webhooks "$WEBHOOKS" --rate "$RATE"
psql "$PG_ADMIN" -qc "CREATE DATABASE $DB" >/dev/null
DATABASE_URL="${PG_ADMIN%/*}/$DB" REDIS_URL="$REDIS" KV_NAMESPACE="$DB" \
  "$BIN" bench chatwoot --webhooks "$WEBHOOKS" --rate "$RATE"
