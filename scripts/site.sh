#!/usr/bin/env bash
# Build the course site: every notebook executed (outputs cached), the README, the teacher's
# guide and the library reference, as static HTML in OUT_DIR (OUT_DIR/index.html is the front
# page). --teacher adds the solutions. Sources are staged into $BASAM_SITE_WORK (default
# build/site); executed outputs are cached in $BASAM_SITE_CACHE (default build/site-cache), so a
# rebuild after a change of text executes nothing. The cache is keyed by the notebooks' code only:
# after a change to basam_lite that changes their outputs, rebuild with --fresh (CI starts
# without a cache). Nothing is written into notebooks/.
#   bash scripts/site.sh OUT_DIR [--teacher] [--fresh]
set -euo pipefail
here=$PWD
cd "$(dirname "$0")/.."
usage="usage: bash scripts/site.sh OUT_DIR [--teacher] [--fresh]"
out="" teacher="" fresh=""
for arg in "$@"; do
  case "$arg" in
    --teacher) teacher=1 ;;
    --fresh) fresh=1 ;;
    -h|--help) echo "$usage"; exit 0 ;;
    -*) echo "error: unknown option $arg; $usage" >&2; exit 2 ;;
    *) [ -z "$out" ] || { echo "error: one OUT_DIR only; $usage" >&2; exit 2; }; out="$arg" ;;
  esac
done
[ -n "$out" ] || { echo "error: no OUT_DIR given; $usage" >&2; exit 2; }
case "$out" in /*) ;; *) out="$here/$out" ;; esac  # OUT_DIR is relative to where you called
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x .venv/bin/python ]; then source .venv/bin/activate; fi
PY=${PYTHON:-python}
mode=${teacher:+teacher}; mode=${mode:-student}
work=${BASAM_SITE_WORK:-build/site}/$mode
export BASAM_SITE_ROOT="$PWD"
export BASAM_SITE_CACHE=${BASAM_SITE_CACHE:-$PWD/build/site-cache}
# No MPLBACKEND here: the kernels must use matplotlib's inline backend, or no figure is rendered.
unset MPLBACKEND
export PYTHONHASHSEED=0
if [ -n "$fresh" ]; then rm -rf "$BASAM_SITE_CACHE" "${BASAM_SITE_WORK:-build/site}"/*/_build; fi
mkdir -p "$work" "$out"
"$PY" site/stage.py "$work" ${teacher:+--teacher}
start=$(date +%s)
"$PY" -m sphinx -b html -q -j 1 ${teacher:+-t teacher} -d "$work/_build/doctrees" "$work" "$out"
echo "site: built $out/index.html ($mode) in $(( $(date +%s) - start )) s"
