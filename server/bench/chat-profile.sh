#!/usr/bin/env bash
# Where the server's CPU goes in a chat turn: `server bench chat` on SQLite under `perf record`
# (Debian's linux-perf; software clock sampling works in VMs without hardware counters), the
# samples summed by stage (perf-stages.py), the load generator's threads left out.
# Usage: server/bench/chat-profile.sh [SERVER_BIN]   (CONVERSATIONS, TURNS as for chat.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="${1:-${CARGO_TARGET_DIR:-target}/release/server}"
CONVERSATIONS="${CONVERSATIONS:-50}"
TURNS="${TURNS:-20}"
command -v perf >/dev/null || { apt-get update -qq && apt-get install -y -qq linux-perf; }
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
RUST_LOG=warn DEMO_TENANT=false DATA_DIR="$WORK" JOBS_IN_PROCESS=false DATABASE_URL= \
  perf record -q -F 999 -o "$WORK/perf.data" "$BIN" bench chat \
  --conversations "$CONVERSATIONS" --turns "$TURNS" | tee "$WORK/bench.txt"
# "server CPU: X ms per turn (Y s for N JSON + M streamed turns, ...)"
read -r SECONDS_CPU JSON STREAMED < <(sed -nE \
  's/.*server CPU: [0-9.]+ ms per turn \(([0-9.]+) s for ([0-9]+) JSON \+ ([0-9]+) streamed.*/\1 \2 \3/p' \
  "$WORK/bench.txt")
perf report -i "$WORK/perf.data" --stdio --no-children --sort comm,dso,sym 2>/dev/null \
  | python3 server/bench/perf-stages.py "$((JSON + STREAMED))" "$SECONDS_CPU"
