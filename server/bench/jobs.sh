#!/usr/bin/env bash
# Queue figures on SQLite and on PostgreSQL: no-op jobs per second drained by one worker, and
# enqueue-to-start latency at idle (p50/p95). Each run uses a fresh database.
# Usage: server/bench/jobs.sh [SERVER_BIN]   (make bench-jobs builds it)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="${1:-${CARGO_TARGET_DIR:-target}/release/server}"
COUNT="${COUNT:-5000}"
PG_ADMIN="${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
DATA="$(mktemp -d)"
DB="bench_jobs_$(date +%s)"
cleanup() { psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true; rm -rf "$DATA"; }
trap cleanup EXIT
export RUST_LOG=warn DEMO_TENANT=false DATA_DIR="$DATA"

DATABASE_URL= "$BIN" bench jobs --count "$COUNT"
psql "$PG_ADMIN" -qc "CREATE DATABASE $DB" >/dev/null
DATABASE_URL="${PG_ADMIN%/*}/$DB" "$BIN" bench jobs --count "$COUNT"
