# Two commands for a fresh machine:  make run  (serve the console with a demo tenant)
#                                    make test (the whole suite)
# Both install what is missing first and are safe to repeat.

SHELL := /bin/bash
CARGO_LEPTOS_VERSION := 0.3.8
WASM_BINDGEN_VERSION := $(shell awk '/^name = "wasm-bindgen"$$/{getline; gsub(/[^0-9.]/,""); print}' Cargo.lock)
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
export DATA_DIR ?= ./data
export LEPTOS_SITE_ADDR ?= 127.0.0.1:3000
export LEPTOS_SITE_ROOT ?= target/site
# binaryen's wasm-opt from npm (frontend/package.json) comes before any older one on the system.
export PATH := $(CURDIR)/frontend/node_modules/.bin:$(PATH)
# The local embedding model; `make models` fetches it (tests use the copy under ./data).
MODEL_DIR := $(DATA_DIR)/models/all-MiniLM-L6-v2

.PHONY: run build widget setup models test test-rust test-e2e test-release e2e-setup fuzz bench bench-load bench-jobs bench-workflows bench-knowledge bench-chat bench-chat-profile bench-chatwoot eval fmt lint clean

run: setup models build
	$(TARGET_DIR)/release/server serve

# Release: every component type-erased, wasm-opt'd WASM, gzip + brotli copies of the static files.
build:
	cargo leptos build --release --precompress --split
	$(MAKE) widget

# The chat widget's frame (frontend/widget): its own small WASM, built beside the console's.
widget:
	frontend/widget/build.sh

# The build tools are installed without their own release profile's fat LTO and single codegen
# unit: they run for seconds per build, and compiling them that way took most of a first run.
TOOL_INSTALL := CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 cargo install

setup:
	@command -v apt-get >/dev/null && { \
	  missing=""; \
	  command -v protoc >/dev/null || missing="$$missing protobuf-compiler"; \
	  [ -z "$$missing" ] || { echo "installing$$missing"; apt-get update -qq && apt-get install -y -qq $$missing; }; } || true
	@rustup target list --installed | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@cargo leptos --version 2>/dev/null | grep -q "$(CARGO_LEPTOS_VERSION)" || $(TOOL_INSTALL) cargo-leptos --version $(CARGO_LEPTOS_VERSION) --locked
	@wasm-bindgen --version 2>/dev/null | grep -q "$(WASM_BINDGEN_VERSION)" || $(TOOL_INSTALL) wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION) --locked
	@cd frontend && { [ -x node_modules/.bin/wasm-opt ] || npm ci --no-audit --no-fund; }

models: $(MODEL_DIR)/model.safetensors

$(MODEL_DIR)/model.safetensors:
	python3 server/bench/fetch-model.py $(MODEL_DIR)

e2e-setup:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium chromium-driver; }
	@cd end2end && { [ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund; }

test: setup models e2e-setup test-rust test-e2e fuzz test-release

# cargo-leptos builds the debug server with `--cfg erase_components`; the tests use the same
# flags so both share one set of compiled dependencies instead of building them twice.
LEPTOS_DEV_RUSTFLAGS := --cfg erase_components

# moto: the S3-compatible server the object-storage test runs on loopback.
MOTO_VERSION := 5.2.1
test-rust:
	cargo fmt --all -- --check
	@python3 -c "import moto; assert moto.__version__ == '$(MOTO_VERSION)'" 2>/dev/null || pip install -q "moto[server]==$(MOTO_VERSION)"
	RUSTFLAGS="$(LEPTOS_DEV_RUSTFLAGS)" cargo test -p server -p minilm -p app -p migration

test-e2e:
	cargo leptos build --split
	$(MAKE) widget
	SERVER_BIN=$(TARGET_DIR)/debug/server end2end/run.sh

# Schemathesis against the REST API with a real key: no 5xx, no answer outside the documented
# schema (a bounded number of generated requests per operation; FUZZ_EXAMPLES to change it).
SCHEMATHESIS_VERSION := 4.32.5
fuzz:
	@st --version 2>/dev/null | grep -q "$(SCHEMATHESIS_VERSION)" || pip install -q "schemathesis==$(SCHEMATHESIS_VERSION)"
	SERVER_BIN=$(TARGET_DIR)/debug/server end2end/fuzz.sh

# What `make run` serves: the release build, started on an empty data dir, used in Chromium.
test-release: build
	SERVER_BIN=$(TARGET_DIR)/release/server end2end/run.sh release/

# The benchmarks measure the binary `make build` makes (the same flags; a plain `cargo build
# --release` has other RUSTFLAGS and would compile every dependency again).

# Start-up time, idle memory and WASM size of the release build.
bench: build
	server/bench/startup.sh $(TARGET_DIR)/release/server

# Requests/s and p99 of GET /api/v1/tenant: full stack vs a bare axum handler (wrk, 50 connections).
bench-load:
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	RUSTFLAGS="$(LEPTOS_DEV_RUSTFLAGS)" cargo build --release -p server --bin server --example bare_axum
	server/bench/load.sh

# No-op jobs per second and idle enqueue-to-start latency, on SQLite and PostgreSQL.
bench-jobs: build
	server/bench/both-databases.sh $(TARGET_DIR)/release/server jobs --count $${COUNT:-5000}

# Workflows: engine overhead per step; runs/s of a 10-step workflow, both databases (the worker
# polls every 10 ms, so the figure is the engine's, not the poll interval's).
bench-workflows: build
	JOB_POLL_MS=10 server/bench/both-databases.sh $(TARGET_DIR)/release/server workflows --runs $${RUNS:-1000}

# Ingestion chunks/s with the local model; search p50/p95/p99 per mode at 10k and 100k chunks.
bench-knowledge: models build
	$(TARGET_DIR)/release/server bench knowledge

# Server-side overhead per chat turn and added time to the first streamed token (fake LLM
# answering at once, 50 concurrent conversations), on SQLite and on PostgreSQL.
bench-chat: build
	server/bench/chat.sh $(TARGET_DIR)/release/server

# Chatwoot webhooks: acknowledgement latency at 200/s while their turns run, both databases.
bench-chatwoot: build
	server/bench/chatwoot.sh $(TARGET_DIR)/release/server

# The server's CPU per chat turn split by stage (perf record of `bench chat` on SQLite).
bench-chat-profile: build
	server/bench/chat-profile.sh $(TARGET_DIR)/release/server

# nDCG@10, Recall@100 and MRR@10 per search mode on the Cranfield collection.
DATASET ?= ../shared/data/cranfield
eval: models build
	$(TARGET_DIR)/release/server eval retrieval --dataset $(DATASET)

fmt:
	cargo fmt --all

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

clean:
	cargo clean
