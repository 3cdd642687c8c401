#!/usr/bin/env bash
# Requests/s and p99 latency of `GET /api/v1/tenant` through the full stack (API-key auth,
# rate limiter, tenant policy, access log, metrics, request id, JSON) versus a bare axum
# handler (server/examples/bare_axum.rs), both release builds, same machine, same run.
# Load: wrk, 2 threads, 50 connections, DURATION seconds (default 15) each. The full stack runs
# twice: on the embedded defaults (SQLite, in-process store) and on PostgreSQL + Redis.
# Usage: server/bench/load.sh   (make bench-load builds what it needs)
set -euo pipefail
cd "$(dirname "$0")/../.."
TARGET="${CARGO_TARGET_DIR:-target}"
BIN="$TARGET/release/server"
BARE="$TARGET/release/examples/bare_axum"
DURATION="${DURATION:-15}"
PORT=3933
PG_ADMIN="${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
REDIS="${TEST_REDIS_URL:-redis://127.0.0.1:6379}"
DATA="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$DATA"
}
trap cleanup EXIT

wait_ready() { until curl -fsS "$1" >/dev/null 2>&1; do sleep 0.05; done; }

# Prints "REQ_PER_SEC P99_MS" for one wrk run.
load() {
  local url="$1" key="${2:-}" out rps p99
  if [ -n "$key" ]; then
    out=$(wrk -t2 -c50 -d"${DURATION}s" --latency -H "Authorization: Bearer $key" "$url")
  else
    out=$(wrk -t2 -c50 -d"${DURATION}s" --latency "$url")
  fi
  if echo "$out" | grep -q "Non-2xx"; then echo "$out" >&2; echo "non-2xx answers: refusing to report" >&2; exit 1; fi
  rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
  p99=$(echo "$out" | awk '$1=="99%"{v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}')
  echo "$rps $p99"
}

# Starts the full stack with the given extra environment; prints "PID KEY".
full_stack() {
  local dir="$DATA/$1"; shift
  mkdir -p "$dir"
  env DATA_DIR="$dir" DEMO_TENANT=false RUST_LOG=warn "$@" "$BIN" tenant create bench >/dev/null
  local key
  key=$(env DATA_DIR="$dir" DEMO_TENANT=false RUST_LOG=warn "$@" "$BIN" apikey create --tenant bench --scopes tenant:read | tail -1)
  env DATA_DIR="$dir" DEMO_TENANT=false RUST_LOG=warn LEPTOS_SITE_ADDR="127.0.0.1:$PORT" \
    RATE_LIMIT_READ_PER_MINUTE=2000000000 RATE_LIMIT_TENANT_PER_MINUTE=2000000000 \
    "$@" "$BIN" serve >"$dir/server.log" 2>&1 &
  echo "$! $key"
}

"$BARE" "$PORT" & PIDS+=($!)
wait_ready "http://127.0.0.1:$PORT/api/v1/tenant"
read -r bare_rps bare_p99 < <(load "http://127.0.0.1:$PORT/api/v1/tenant")
kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true

read -r pid key < <(full_stack embedded DATABASE_URL=)
PIDS+=("$pid"); wait_ready "http://127.0.0.1:$PORT/readyz"
read -r emb_rps emb_p99 < <(load "http://127.0.0.1:$PORT/api/v1/tenant" "$key")
kill "$pid"; wait "$pid" 2>/dev/null || true

DB="bench_$(date +%s)"
psql "$PG_ADMIN" -qc "CREATE DATABASE $DB" >/dev/null
PG_URL="${PG_ADMIN%/*}/$DB"
read -r pid key < <(full_stack scale DATABASE_URL="$PG_URL" REDIS_URL="$REDIS" KV_NAMESPACE="bench-$DB")
PIDS+=("$pid"); wait_ready "http://127.0.0.1:$PORT/readyz"
read -r pg_rps pg_p99 < <(load "http://127.0.0.1:$PORT/api/v1/tenant" "$key")
kill "$pid"; wait "$pid" 2>/dev/null || true
psql "$PG_ADMIN" -qc "DROP DATABASE $DB WITH (FORCE)" >/dev/null

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
printf '\nGET /api/v1/tenant, wrk -t2 -c50 -d%ss, %s cores\n' "$DURATION" "$(nproc)"
printf '%-34s %12s %10s %14s %12s\n' "" "requests/s" "p99 ms" "rps vs bare" "p99 vs bare"
printf '%-34s %12s %10s %14s %12s\n' "bare axum handler" "$bare_rps" "$bare_p99" "1.00" "1.00"
printf '%-34s %12s %10s %14s %12s\n' "full stack, SQLite + in-process" "$emb_rps" "$emb_p99" "$(ratio "$emb_rps" "$bare_rps")" "$(ratio "$emb_p99" "$bare_p99")"
printf '%-34s %12s %10s %14s %12s\n' "full stack, PostgreSQL + Redis" "$pg_rps" "$pg_p99" "$(ratio "$pg_rps" "$bare_rps")" "$(ratio "$pg_p99" "$bare_p99")"
