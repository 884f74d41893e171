#!/usr/bin/env bash
# The GPU checks and benchmarks, for a session lent a GPU machine (the `device` tool).
#
# Build the carry folder here first (scripts/device-carry.sh), then one device call per part
# (each under the 10-minute limit and the 64 MiB carry), from the repository root:
#   t: carry device_carry/whl device_carry/site/seqeval device_carry/data/mnist
#      the environment and the GPU test tier (its own call: compile tests take minutes)
#   a: carry as t; bench micro, LeNet train (with --ablate) / infer / compare, MNIST examples
#   b: carry device_carry/whl device_carry/site device_carry/data/conll2003
#      the GPU tests that need minilm and CoNLL (skipped in t), bench train --ablate and
#      bench infer for minilm-ner and bert-base-ner
#   c: carry as b; CoNLL time to F1 (examples/conll2003-minilm.yaml) and export --device cuda
# Results come back as $OUT/results-<part>.tar.gz plus the part's log. The tarball is rewritten
# after every step, so a part stopped at the 10-minute limit still returns what it finished.
# Smoke test on a CPU: DEVICE=cpu EXTRA=--quick TRAIN_SET="--set train.max_steps=20" \
#   NO_INSTALL=1 PY=.venv/bin/python OUT=/tmp/out scripts/gpu-session.sh a
set -uo pipefail
part=${1:?usage: scripts/gpu-session.sh t|a|b|c}
PY=${PY:-python3}
OUT=${OUT:-/tmp/tensorfab-gpu-out}
DEVICE=${DEVICE:-cuda}
EXTRA=${EXTRA:-}
TRAIN_SET=${TRAIN_SET:-}
mkdir -p "$OUT"
res=$(mktemp -d)
data=device_carry/data
export PYTHONUNBUFFERED=1
if [ -z "${NO_INSTALL:-}" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site device_carry/whl/*.whl || exit 1
  export PYTHONPATH=$PWD/src:/tmp/site:$PWD/device_carry/site${PYTHONPATH:+:$PYTHONPATH}
fi
tf() { "$PY" -m tensorfab.cli.main "$@"; }
save() {  # written whole, then renamed: a kill mid-write leaves the previous tarball
  tar -czf "$OUT/results-$part.tgz.part" -C "$res" . && mv "$OUT/results-$part.tgz.part" \
    "$OUT/results-$part.tar.gz"
}
step() { save; echo "== $(date -u +%H:%M:%S) $*"; }
# `time` is bash's keyword, not /usr/bin/time (GNU time is often missing from images); its
# report goes to the log beside the run's last lines. A run folder left by an earlier call
# on a warm machine would make `train` refuse to start, so each is removed first.
run_train() {
  local name=$1; shift
  rm -rf "runs/$name"
  time -p "$PY" -m tensorfab.cli.main train "$@" --name "$name" --quiet 2>&1 | tail -3
}

case "$part" in
  t)
    step environment; nvidia-smi -L 2>&1; tf info --json > "$res/info.json"
    step gpu tests; "$PY" -m pytest -q -p no:cacheprovider tests/gpu 2>&1 | tee "$res/gpu-tests.log"
    ;;
  a)
    step environment; tf info --json > "$res/info.json"
    step bench micro; tf bench micro --device "$DEVICE" $EXTRA --out "$res/micro.json"
    step bench train lenet; tf bench train --device "$DEVICE" $EXTRA --ablate \
      --workloads lenet-mnist --data-dir "$data" --out "$res/train-lenet.json"
    step bench infer lenet; tf bench infer --device "$DEVICE" $EXTRA \
      --workloads lenet-mnist --data-dir "$data" --out "$res/infer-lenet.json"
    step bench compare; tf bench compare --device "$DEVICE" $EXTRA \
      --workloads lenet-mnist --data-dir "$data" --out "$res/compare-lenet.json"
    step mnist example; run_train "mnist-$DEVICE" examples/mnist-lenet.yaml \
      --set "data.path=$data/mnist" --set "train.device=$DEVICE" $TRAIN_SET
    cp "runs/mnist-$DEVICE/report.json" "$res/mnist-report.json"
    step mnist batch 512; run_train "mnist-b512-$DEVICE" examples/mnist-lenet-b512.yaml \
      --set "data.path=$data/mnist" --set "train.device=$DEVICE" $TRAIN_SET
    cp "runs/mnist-b512-$DEVICE/report.json" "$res/mnist-b512-report.json"
    ;;
  b)
    step gpu tests ner; "$PY" -m pytest -q -p no:cacheprovider tests/gpu -k "minilm or text_shapes" \
      2>&1 | tee "$res/gpu-tests-ner.log"
    step bench train ner; tf bench train --device "$DEVICE" $EXTRA --ablate \
      --workloads minilm-ner,bert-base-ner --data-dir "$data" --out "$res/train-ner.json"
    step bench infer ner; tf bench infer --device "$DEVICE" $EXTRA \
      --workloads minilm-ner,bert-base-ner --data-dir "$data" --out "$res/infer-ner.json"
    ;;
  c)
    step conll train; run_train "conll-$DEVICE" examples/conll2003-minilm.yaml \
      --set "data.path=$data/conll2003/train.txt" \
      --set "data.eval_path=$data/conll2003/valid.txt" --set "train.device=$DEVICE" $TRAIN_SET
    cp "runs/conll-$DEVICE/report.json" "$res/conll-report.json"
    step export; tf export "runs/conll-$DEVICE" --repo "$res/repo" --name ner --device "$DEVICE" \
      --variants fp32,int8-dynamic,torch-fp16,torch-bf16,torch-cudagraphs \
      --data "$data/conll2003/valid.txt" --samples 500 --latency --json > "$res/export.json"
    rm -rf "$res/repo"/*/[0-9]*  # the models themselves stay on the machine
    ;;
  *) echo "unknown part $part: t, a, b or c" >&2; exit 2 ;;
esac
step done; ls -la "$OUT"
