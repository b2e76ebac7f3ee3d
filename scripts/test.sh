#!/usr/bin/env bash
# The test command: unit tests, then every notebook under nbval (golden cells compared).
set -euo pipefail
cd "$(dirname "$0")/.."
source .venv/bin/activate
export MPLBACKEND=Agg PYTHONHASHSEED=0
ruff check basam_lite tests notebooks
# --durations=30: every log names the slowest unit tests (CI time is watched).
python -m pytest tests --durations=30 "$@"
if compgen -G "notebooks/*.ipynb" >/dev/null; then
  python -m pytest --nbval-lax --nbval-sanitize-with notebooks/sanitize.cfg notebooks \
    -p no:cacheprovider "$@"
fi
