#!/usr/bin/env bash
# Builds the chat widget's frame into the site: WASM (size-optimised profile), wasm-bindgen's
# glue, wasm-opt, the boot script and the stylesheet, with gzip copies the file server sends
# to browsers that accept them.   LEPTOS_SITE_ROOT=target/site frontend/widget/build.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
SITE="${LEPTOS_SITE_ROOT:-target/site}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
OUT="$SITE/widget/pkg"
cargo build -p widget --target wasm32-unknown-unknown --profile wasm-release
mkdir -p "$OUT"
wasm-bindgen --target web --no-typescript --out-dir "$OUT" --out-name widget \
  "$TARGET_DIR/wasm32-unknown-unknown/wasm-release/widget.wasm"
wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int --enable-reference-types \
  --enable-sign-ext --enable-mutable-globals --enable-multivalue \
  "$OUT/widget_bg.wasm" -o "$OUT/widget_bg.wasm"
cp frontend/widget/assets/boot.js style/widget.css "$OUT/"
for f in "$OUT"/*.js "$OUT"/*.css "$OUT"/*.wasm; do gzip -9 -k -f "$f"; done
ls -l "$OUT"
