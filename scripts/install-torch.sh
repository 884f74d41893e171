#!/usr/bin/env sh
# Install torch into the given interpreter's environment without ever pulling the
# multi-GB CUDA build onto a machine that has no GPU.
#   - a torch that is already importable is left alone;
#   - with an NVIDIA driver present, the default (CUDA) build from the package index;
#   - otherwise the CPU build: torch==2.13.0 (a local CPU wheel on our CI machines),
#     or PyTorch's CPU wheel index where that pin is not available.
set -eu
PY="$1"
if "$PY" -c "import torch" 2>/dev/null; then
  echo "torch already installed: $("$PY" -c 'import torch; print(torch.__version__)')"
  exit 0
fi
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  "$PY" -m pip install -q torch
elif ! "$PY" -m pip install -q torch==2.13.0 2>/dev/null; then
  "$PY" -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
fi
