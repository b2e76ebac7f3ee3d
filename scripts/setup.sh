#!/usr/bin/env bash
# Set up everything on a fresh machine: a virtual environment in .venv with the pinned torch pair,
# segment-anything and this project (notebook and development extras included). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
source .venv/bin/activate
python -m pip install -q --upgrade pip
# Pin the pair: an unpinned torch pulls a multi-GB build, and torchvision must match torch.
python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
python -m pip install -q -e ".[notebooks,dev]"
echo "setup: ok ($(python -c 'import torch, segment_anything; print("torch", torch.__version__)'))"
