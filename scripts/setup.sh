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
# sam2 (the SAM 2 family, in the dev extra) is an sdist whose build requires torch: build it
# against the pinned torch above (build isolation would fetch a second one) and without its CUDA
# extension (used only by a mask post-processing step this project never runs).
python -m pip install -q setuptools wheel
SAM2_BUILD_CUDA=0 python -m pip install -q --no-build-isolation "sam2==1.1.0"
python -m pip install -q -e ".[notebooks,dev]"
echo "setup: ok ($(python -c 'import torch, segment_anything; print("torch", torch.__version__)'))"
