// Starts the widget's WASM (wasm-bindgen's `--target web` output beside this file).
import init from "./widget.js";
init({ module_or_path: new URL("widget_bg.wasm", import.meta.url) });
