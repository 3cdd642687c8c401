#!/usr/bin/env python3
"""Where a `server bench chat` run spends the server's CPU, by stage.

Reads `perf report --stdio --no-children --sort comm,dso,sym` of a `perf record` of the bench
(see chat-profile.sh), leaves out the load generator's and the fake LLM's threads (named
`bench-load`), and sums the server's samples into stages by symbol. Prints each stage's share
and, given the number of turns, its CPU per turn.

Usage: perf report ... | perf-stages.py TURNS SECONDS_OF_SERVER_CPU
"""
import re
import sys

# First match wins: the more specific patterns come first.
STAGES = [
    ("SQLite (the engine)", r"sqlite3|^pcache|^btree|^vdbe|^sqlite"),
    ("sqlx + sea-orm (queries, rows, pool)", r"sqlx|sea_orm|sea_query"),
    ("JSON (serde_json)", r"serde_json|serde::|ryu|itoa"),
    ("LLM client (async-openai, SSE, reqwest)", r"async_openai|eventsource|reqwest"),
    ("HTTP (hyper, axum, tower)", r"hyper|axum|tower|http::|httparse|h2::"),
    ("tracing and metrics", r"tracing|metrics"),
    ("hashing and crypto (API keys, ids)", r"sha2|ring::|aws_lc|uuid|rand"),
    ("the agents and the engine", r"server::agents|server::engine|server::llm"),
    ("rest of the server's code", r"server::|app::"),
    ("tokio (scheduler, timers, I/O)", r"tokio|mio::|parking_lot|crossbeam|futures"),
    ("memory (malloc, copies)", r"malloc|free|memcpy|memmove|memset|realloc|alloc::|_int_|cfree"),
    ("kernel (syscalls, loopback TCP, futexes)", r"^\[k\]"),
]

LINE = re.compile(r"^\s*([\d.]+)%\s+(\S+)\s+(\S+)\s+\[(.)\]\s+(.*)$")


def main() -> None:
    turns = float(sys.argv[1])
    server_seconds = float(sys.argv[2])
    totals: dict[str, float] = {}
    load = 0.0
    server = 0.0
    for line in sys.stdin:
        m = LINE.match(line)
        if not m:
            continue
        share, comm, _dso, kind, sym = float(m[1]), m[2], m[3], m[4], m[5]
        if comm.startswith("bench-load"):
            load += share
            continue
        server += share
        name = "[k] " + sym if kind == "k" else sym
        stage = next((s for s, p in STAGES if re.search(p, name)), "other")
        totals[stage] = totals.get(stage, 0.0) + share
    if server == 0:
        sys.exit("no samples of the server's threads")
    print(f"server threads: {server:.1f}% of samples, load generator and fake: {load:.1f}%")
    print("| stage | share of server CPU | µs per turn |")
    print("|---|---:|---:|")
    for stage, share in sorted(totals.items(), key=lambda kv: -kv[1]):
        part = share / server
        print(f"| {stage} | {100 * part:.1f} % | {part * server_seconds * 1e6 / turns:.0f} |")


if __name__ == "__main__":
    main()
