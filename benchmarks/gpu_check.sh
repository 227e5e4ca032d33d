#!/usr/bin/env bash
# device=cuda end to end on a machine with a GPU (run once per session that has one; see README):
# the tutorial, an MNIST-format pair, a sweep, a vectorized sweep, and the tests that use the GPU.
# Expects the project's Python dependencies importable (PYTHONPATH), and writes its logs to $OUT or /tmp.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-check}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
nvidia-smi -L
python3 - <<'PY'
from pathlib import Path
from tests.helpers import write_fake_dataset
write_fake_dataset(Path("/tmp/gpu-data"), train_count=2000, test_count=400)
PY
status=0
step() { echo "== $*"; "$@" || { echo "FAILED: $*"; status=1; }; }
step python3 -m src.train device=cuda hydra.run.dir=/tmp/gpu-runs/toy
step python3 -m src.train device=cuda dataset=mnist_binary dataset.root=/tmp/gpu-data hydra.run.dir=/tmp/gpu-runs/pair
step python3 -m src.train -m device=cuda loss=bce,ce optimizer.lr=0.01,0.1 trainer.epochs=200 hydra.sweep.dir=/tmp/gpu-runs/sweep
step python3 -m src.train -m hydra/launcher=vectorized device=cuda dataset=mnist_binary dataset.root=/tmp/gpu-data \
    optimizer.lr=0.003,0.01,0.03,0.1 seed=0,1 hydra.sweep.dir=/tmp/gpu-runs/vectorized
step python3 -m src.evaluate ckpt_path=/tmp/gpu-runs/toy/checkpoints/last.pt x=4
step python3 -m pytest -q -p no:cacheprovider -n 0 tests/test_cuda.py tests/test_stack.py tests/test_train.py
cp /tmp/gpu-runs/vectorized/summary.md "$OUT/vectorized_summary.md" 2>/dev/null
exit $status
