#!/usr/bin/env bash
# The families study (python -m basam_lite study --plan families), as it was run here: two
# shards side by side and the attention-entropy study beside them, one torch thread each, then
# the merge, the findings, the figure and the summary. Resumable: rerunning `start` resumes each
# shard's tables; `finish` only reads them.
#
#   bash scripts/families_study.sh start    # detached; logs in runs/families/*.log
#   bash scripts/families_study.sh status   # the last line of each log
#   bash scripts/families_study.sh finish   # once both shards and the mechanism are done
#
# Run it from the repository root, with the bundled tiny SAM 2 checkpoints in data/checkpoints.
set -euo pipefail
PY=${PY:-.venv/bin/python}
RUNS=runs/families
OUT=results/families/sweep.parquet
export PYTHONPATH=${PYTHONPATH:-$PWD} OMP_NUM_THREADS=1

case "${1:-}" in
start)
    mkdir -p "$RUNS" results/families
    for k in 0 1; do
        setsid nohup nice -n 5 "$PY" -m basam_lite study --plan families --shard "$k/2" \
            --threads 1 --mechanism-images 0 --out "$RUNS/sweep-{k}.parquet" \
            >"$RUNS/shard-$k.log" 2>&1 </dev/null &
    done
    setsid nohup nice -n 5 "$PY" -m basam_lite study --plan families --mechanism-only \
        --threads 1 --out "$OUT" >"$RUNS/mechanism.log" 2>&1 </dev/null &
    echo "started: tail -f $RUNS/shard-0.log $RUNS/shard-1.log $RUNS/mechanism.log"
    ;;
status)
    for f in "$RUNS"/shard-0.log "$RUNS"/shard-1.log "$RUNS"/mechanism.log; do
        printf '%s: ' "$f"
        tail -c 300 "$f" | tr '\r' '\n' | tail -n 1
    done
    ;;
finish)
    for table in sweep sweep_extent sweep_base; do
        suffix=${table#sweep}
        "$PY" -m basam_lite sweep --merge "$RUNS/sweep-0$suffix.parquet" \
            "$RUNS/sweep-1$suffix.parquet" --out "results/families/$table.parquet" --no-plot
    done
    "$PY" -m basam_lite study --plan families --findings-only --figure --threads 1 --out "$OUT" \
        ${README:+--readme "$README"}
    ;;
*)
    echo "usage: bash scripts/families_study.sh start|status|finish" >&2
    exit 2
    ;;
esac
