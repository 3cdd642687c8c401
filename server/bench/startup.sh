#!/usr/bin/env bash
# Prints: time from process start to /readyz OK (fresh SQLite database, i.e. including
# migrations and demo seeding), the same on an existing database, idle RSS after start, and
# the size of the WASM and JS bundles (raw, gzipped, and the brotli copy the server sends).
# Usage: server/bench/startup.sh [SERVER_BIN]   (default: target/release/server)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="${1:-${CARGO_TARGET_DIR:-target}/release/server}"
PORT="${BENCH_PORT:-3931}"
DATA="$(mktemp -d)"
trap 'rm -rf "$DATA"' EXIT
export DATA_DIR="$DATA" LEPTOS_SITE_ADDR="127.0.0.1:$PORT" RUST_LOG=warn DATABASE_URL=""

start_and_time() {
  local t0 t1 pid
  t0=$(date +%s%N)
  "$BIN" serve >"$DATA/server.log" 2>&1 &
  pid=$!
  until curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; do sleep 0.005; done
  t1=$(date +%s%N)
  echo "$pid $(( (t1 - t0) / 1000000 ))"
}

read -r pid ms < <(start_and_time)
echo "start to /readyz, empty database (migrate + seed demo): ${ms} ms"
sleep 3
echo "idle RSS after start: $(awk '/VmRSS/{printf "%.1f MiB", $2/1024}' /proc/$pid/status)"
kill "$pid"; wait "$pid" 2>/dev/null || true
read -r pid ms < <(start_and_time)
echo "start to /readyz, existing database: ${ms} ms"
kill "$pid"; wait "$pid" 2>/dev/null || true

size_line() {
  local name="$1"; shift
  local raw gz br=0
  raw=$(cat "$@" | wc -c)
  gz=0; for f in "$@"; do gz=$(( gz + $(gzip -9c "$f" | wc -c) )); done
  local line="$name: $(numfmt --to=iec-i "$raw") raw, $(numfmt --to=iec-i "$gz") gzip -9"
  # `make build` precompresses: what the server actually sends to a browser that takes brotli.
  if [ -f "$1.br" ]; then
    for f in "$@"; do br=$(( br + $(stat -c %s "$f.br") )); done
    line="$line, $(numfmt --to=iec-i "$br") brotli (served)"
  fi
  echo "$line"
}
# The console: what every page loads (glue, main module, the split loader), then the lazily
# loaded chunks of `cargo leptos --split` together (per page: end2end/release/smoke.test.js).
PKG=target/site/pkg
for f in "$PKG"/agent-platform.js "$PKG"/agent-platform.wasm "$PKG"/__wasm_split.*.js; do
  if [ -f "$f" ]; then size_line "$f" "$f"; fi
done
chunks=("$PKG"/chunk_*.wasm "$PKG"/split_*.wasm)
if [ -f "${chunks[0]}" ]; then size_line "$PKG: ${#chunks[@]} lazy chunks together" "${chunks[@]}"; fi
