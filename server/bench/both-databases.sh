#!/usr/bin/env bash
# Runs one `server bench` on SQLite and then on PostgreSQL, each on a fresh database (a
# temporary data folder; a database made and dropped on the local PostgreSQL).
# Usage: server/bench/both-databases.sh SERVER_BIN BENCH [ARGS…]
#   e.g. server/bench/both-databases.sh target/release/server jobs --count 5000
#   (make bench-jobs and make bench-workflows build the binary and call this)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="$1"
shift
PG_ADMIN="${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
DATA="$(mktemp -d)"
DB="bench_$1_$(date +%s)"
cleanup() { psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true; rm -rf "$DATA"; }
trap cleanup EXIT
export RUST_LOG=warn DEMO_TENANT=false DATA_DIR="$DATA"

DATABASE_URL= "$BIN" bench "$@"
psql "$PG_ADMIN" -qc "CREATE DATABASE $DB" >/dev/null
DATABASE_URL="${PG_ADMIN%/*}/$DB" "$BIN" bench "$@"
